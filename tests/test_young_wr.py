"""Wolf-Rayet spectra under ``special_phases="dedicated"`` (smnet_sps.backend): WR stars hotter than the
CMFGEN grid's top, and the massive hot stars the isochrones do not flag as WR (docs/ssp.md, "Young
populations")."""
import numpy as np
import pytest

from smnet_sps.backend import STATUS, StellarLibraryBackend


@pytest.fixture(scope="module")
def dedicated_bb():
    return StellarLibraryBackend("blackbody", special_phases="dedicated")


def _unit(ps):
    """Each point's spectrum per unit of its own integral [1/A]."""
    w = ps.wavelength
    return ps.llam / np.trapezoid(ps.llam, w, axis=1)[:, None]


def test_wr_star_hotter_than_the_cmfgen_top_takes_its_hottest_spectrum(dedicated_bb):
    """A phase-9 star above the CMFGEN grid's top (WN 120 kK, WC 140 kK) got the generator's spectrum
    (with the default model a windless CM87 / extrapolated one: log Q(He+)/Q(H) -0.55 at 150 kK, [M/H] +0.3,
    against -8.29 from the +0.3 WN set); it now takes the hottest WR spectrum, as FSPS holds phase-9 stars at
    the grid's edges, keeping its own luminosity and the share of it a blackbody of its Teff puts on the grid.
    A post-AGB star above Rauch's 190 kK top still goes to the generator."""
    from smnet_sps.generator import planck_fraction
    teff = np.array([120e3, 150e3, 200e3, 140e3, 170e3, 195e3])
    phase = np.array([9, 9, 9, 9, 9, 6])
    co = np.array([0.5, 0.5, 0.5, 2.0, 2.0, 0.5])
    ps = dedicated_bb.point_spectra(teff=teff, logg=5.5, logz=0.3, logl=5.0, phase=phase, co=co)
    assert list(ps.status[:5]) == [STATUS["dedicated"]] * 5
    assert ps.status[5] != STATUS["dedicated"]
    assert list(ps.inside[:5]) == [True, False, False, True, False]     # held: outside the grid's range
    unit = _unit(ps)
    np.testing.assert_allclose(unit[1:3], unit[[0, 0]], rtol=1e-6)     # WN: the 120 kK spectrum
    np.testing.assert_allclose(unit[4], unit[3], rtol=1e-6)            # WC: the 140 kK spectrum
    wave = dedicated_bb.wavelength
    integral = np.trapezoid(ps.llam, wave, axis=1) / ps.luminosity
    share = planck_fraction(*dedicated_bb._dedicated_range, teff)
    # (rtol: Teff goes through 1e-4 dex keys)
    np.testing.assert_allclose(integral[1:3] / integral[0], share[1:3] / share[0], rtol=1e-4)
