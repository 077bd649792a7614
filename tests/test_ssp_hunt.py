"""Bug hunt in the SSP stage (backend, isochrones, ssp, ssp_torch): each test failed before its fix."""

import warnings

import numpy as np
import pytest
import torch

from smnet_sps.ssp import ssp_grid


@pytest.fixture(scope="module")
def padova_grid():
    """A real (shipped Padova isochrones, blackbody stars) 2 ages x 2 Z grid, Zsun = 0.019."""
    from smnet_sps.generator import BlackbodyGenerator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ssp_grid([1e9, 2e9], [0.008, 0.019], isochrones="padova", generator=BlackbodyGenerator(),
                        progress=False)


@pytest.mark.parametrize("zsun", [-0.019, float("nan"), 0.0, float("inf"), 1.5, True, "solar"])
def test_interpolator_refuses_a_zsun_that_is_no_metal_fraction(padova_grid, zsun):
    """SSPInterpolator(grid, zsun=-0.019 or NaN) made every [M/H] NaN: the bounds check passed and every
    spectrum was NaN without a word; zsun=0 / inf failed only at the call ("logz must lie inside the SSP grid,
    inf-inf"), True was taken as Zsun = 1. Now a ValueError at construction naming the valid range."""
    from smnet_sps.ssp_torch import SSPInterpolator
    with pytest.raises(ValueError, match=r"zsun must be a metal mass fraction in \(0, 1\)"):
        SSPInterpolator(padova_grid, zsun=zsun)


def test_interpolator_refuses_a_grid_stating_a_bad_zsun(padova_grid):
    from smnet_sps.ssp_torch import SSPInterpolator
    bad = padova_grid._replace(attrs={**padova_grid.attrs, "zsun": float("nan")})
    with pytest.raises(ValueError, match=r"the grid's zsun .* must be a metal mass fraction"):
        SSPInterpolator(bad)


def test_interpolator_with_a_valid_zsun_reads_metallicity_against_it(padova_grid):
    """The grid's own zsun (Padova 0.019) and the same value given explicitly: [M/H] = log10(Z / 0.019)."""
    from smnet_sps.ssp_torch import SSPInterpolator
    own, given = SSPInterpolator(padova_grid), SSPInterpolator(padova_grid, zsun=0.019)
    np.testing.assert_allclose(own.logz, np.log10(np.array([0.008, 0.019]) / 0.019), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(own.logz, given.logz)
    spec = own(torch.tensor([9.0]), torch.tensor([0.0]))[0].numpy()      # a node: the grid's own SSP
    np.testing.assert_allclose(spec, padova_grid.ssp_flux[1, 0], rtol=1e-12)


@pytest.fixture(scope="module")
def dedicated_backend():
    from smnet_sps.backend import StellarLibraryBackend
    return StellarLibraryBackend("blackbody", special_phases="dedicated")


def _tpagb_points(backend, phase, co=0.5):
    n = np.size(phase)
    return backend.point_spectra(teff=np.full(n, 3000.0), logg=np.zeros(n), logz=np.zeros(n),
                                 logl=np.full(n, 3.0), phase=phase, co=np.full(n, co))


@pytest.mark.parametrize("phase", [5.5, 15, -3])
def test_backend_refuses_a_phase_that_is_no_fsps_code(dedicated_backend, phase):
    """A phase that is no FSPS code was taken as an ordinary star without a word: with special_phases=
    "dedicated" a 3000 K TP-AGB star given phase 5.5 (15, -3) lost its Lancon & Mouhcine spectrum (TiO
    F(7000-7200) / F(7400-7600) 0.69, a blackbody here, instead of 0.16)."""
    with pytest.raises(ValueError, match=r"phase = .* is not an FSPS phase code; valid: -1, 0, 1, .*9"):
        _tpagb_points(dedicated_backend, [5, phase])


def test_backend_refuses_a_negative_co(dedicated_backend):
    with pytest.raises(ValueError, match=r"co = -2 \(index 0\) is negative; surface C/O ratios are >= 0"):
        _tpagb_points(dedicated_backend, [5], co=-2.0)


def test_backend_valid_tpagb_codes_still_take_the_dedicated_spectra(dedicated_backend):
    """Phase 5 (float or int) is a TP-AGB star: status "dedicated" and its TiO band, deep beside the
    blackbody of an ordinary (phase 0) star of the same Teff."""
    from smnet_sps.backend import STATUS
    p = _tpagb_points(dedicated_backend, [5.0, 5, 0])
    assert list(p.status) == [STATUS["dedicated"]] * 2 + [STATUS["generator"]]
    w = p.wavelength
    band = p.llam[:, (w > 7000) & (w < 7200)].sum(1) / p.llam[:, (w > 7400) & (w < 7600)].sum(1)
    assert band[0] == band[1] < 0.5 * band[2]


def test_ssp_fits_keeps_every_phase_name_whole(tmp_path, blackbody):
    """The FITS file named each PHLUMn's phase only in its comment, cut to 47 characters: Padova's code 0,
    "not flagged (main sequence to E-AGB)", read "not flagged (main seque" -- the main sequence its name
    exists to avoid. PHNAMEn now holds each name whole, and the header gives back meta['phase_luminosity']."""
    from astropy.io import fits

    from smnet_sps.ssp import ssp_spectrum
    from smnet_sps.ssp_cli import _write_fits
    spec = ssp_spectrum(1e9, Z=0.008, isochrones="padova", generator=blackbody)
    assert "not flagged (main sequence to E-AGB)" in spec.meta["phase_luminosity"]
    _write_fits(spec, tmp_path / "s.fits")
    h = fits.getheader(tmp_path / "s.fits", "SSP")
    n = len(spec.meta["phase_luminosity"])
    back = {h[f"PHNAME{i}"]: h[f"PHLUM{i}"] for i in range(n)}
    assert back == spec.meta["phase_luminosity"]
    assert f"PHNAME{n}" not in h


def test_ssp_outputs_record_the_imf_mass_limits(tmp_path, blackbody):
    """An IMF with other limits (Kroupa to 40 Msun) was recorded as plain 'kroupa' in meta, SSPGrid.attrs and
    the FITS header, as the 0.08-120 Msun default is, though its SSP differs (10 Myr: log L_bol 2.299 vs
    2.268). Now every output carries the limits: meta / attrs 'imf_mass_range', FITS IMFMLOW / IMFMUP."""
    from astropy.io import fits

    from smnet_sps.imf import get_imf
    from smnet_sps.ssp import load_ssp_grid, save_ssp_grid, ssp_spectrum
    from smnet_sps.ssp_cli import _write_fits
    short = get_imf("kroupa", m_up=40.0)
    default = ssp_spectrum(1e7, Z=0.0152, generator=blackbody)
    spec = ssp_spectrum(1e7, Z=0.0152, generator=blackbody, imf=short)
    assert default.meta["imf_mass_range"] == [0.08, 120.0]
    assert spec.meta["imf"] == "kroupa" and spec.meta["imf_mass_range"] == [0.08, 40.0]
    assert abs(spec.meta["log_lbol"] - default.meta["log_lbol"]) > 0.01       # another SSP, told apart now
    _write_fits(spec, tmp_path / "s.fits")
    h = fits.getheader(tmp_path / "s.fits", "SSP")
    assert (h["IMF"], h["IMFMLOW"], h["IMFMUP"]) == ("kroupa", 0.08, 40.0)
    grid = ssp_grid([1e7], [0.0152], generator=blackbody, imf=short, progress=False)
    assert grid.attrs["imf_mass_range"] == [0.08, 40.0]
    for name in ("g.npz", "g.h5"):
        assert load_ssp_grid(save_ssp_grid(grid, tmp_path / name)).attrs["imf_mass_range"] == [0.08, 40.0]


def _calzetti_eq4(lam_um):
    """Calzetti et al. 2000, eq. 4, written out from the paper (R_V = 4.05)."""
    x = 1.0 / lam_um
    if lam_um < 0.63:
        return 2.659 * (-2.156 + 1.509 * x - 0.198 * x**2 + 0.011 * x**3) + 4.05
    return 2.659 * (-1.857 + 1.040 * x) + 4.05


def test_calzetti_reads_a_wavelength_quantity_in_its_unit():
    """calzetti_k(550 * u.nm) took the number as Angstrom (k = 73.0 for 4.05), 0.55 um gave 1.8e11, and
    calzetti_attenuation of a scalar wavelength raised torch's IndexError: lengths are converted to A now."""
    import astropy.units as u

    from smnet_sps.ssp_torch import calzetti_attenuation, calzetti_k
    for lam_um in (0.15, 0.55, 1.2):
        want = _calzetti_eq4(lam_um)
        for wave in (lam_um * 1e4, lam_um * 1e4 * u.AA, lam_um * 1e3 * u.nm, lam_um * u.um):
            assert float(calzetti_k(wave)) == pytest.approx(want, rel=1e-12), (lam_um, wave)
    av = torch.tensor([1.0], dtype=torch.float64)
    t = calzetti_attenuation(550.0 * u.nm, av)
    assert t.shape == (1, 1)
    assert float(t) == pytest.approx(10 ** (-0.4 * _calzetti_eq4(0.55) / 4.05), rel=1e-12)


def test_calzetti_reads_a_wavelength_table_column_in_its_unit():
    """A wavelength column of an astropy Table (a FITS TUNIT 'nm') lost its unit in calzetti_k and
    calzetti_attenuation: 550 nm gave k = 73.0 for 4.05. A column with a unit is now its Quantity; one
    without is Angstrom, as plain numbers are."""
    import astropy.units as u
    from astropy.table import Table

    from smnet_sps.ssp_torch import calzetti_attenuation, calzetti_k
    t = Table({"nm": [150.0, 550.0, 1200.0], "aa": [1500.0, 5500.0, 12000.0]}, units={"nm": u.nm})
    want = [_calzetti_eq4(x) for x in (0.15, 0.55, 1.2)]
    np.testing.assert_allclose(calzetti_k(t["nm"]), want, rtol=1e-12)
    np.testing.assert_allclose(calzetti_k(t["aa"]), want, rtol=1e-12)
    av = torch.tensor([1.0], dtype=torch.float64)
    np.testing.assert_allclose(calzetti_attenuation(t["nm"], av).numpy(),
                               calzetti_attenuation(t["aa"], av).numpy(), rtol=1e-12)


@pytest.mark.parametrize("wave", [[-5500.0], [0.0], [float("nan")], "time"])
def test_calzetti_refuses_what_is_no_wavelength(wave):
    import astropy.units as u

    from smnet_sps.ssp_torch import calzetti_k
    if wave == "time":
        wave = 5500.0 * u.s
    with pytest.raises(ValueError, match="wavelengths must be"):
        calzetti_k(wave)


def test_an_isochrone_handed_out_cannot_change_the_shared_set(blackbody):
    """iso.isochrone(iz, ia) handed out views of the session's cached set: a caller's in-place what-if
    (I.logl[:] += 1) changed that isochrone for every later SSP (PARSEC Z = 0.008, 3 Gyr: log L_bol -0.064 ->
    +0.478). The set's arrays are read-only now: the write raises, and the SSP is unchanged."""
    from smnet_sps.isochrones import load_isochrones
    from smnet_sps.ssp import clear_ssp_cache, ssp_spectrum
    before = ssp_spectrum(3e9, Z=0.008, generator=blackbody).meta["log_lbol"]
    iso = load_isochrones("parsec")
    iz, ia = int(np.argmin(abs(iso.Z - 0.008))), int(np.argmin(abs(iso.log_age - 9.5)))
    one = iso.isochrone(iz, ia)
    for arr in (one.logl, one.mini, one.logt, iso.Z, iso.log_age, iso.columns["phase"]):
        with pytest.raises(ValueError, match="read-only"):
            arr += 1
    changed = one.logl.copy()                  # a copy is the caller's own
    changed += 1.0
    clear_ssp_cache()
    assert ssp_spectrum(3e9, Z=0.008, generator=blackbody).meta["log_lbol"] == before


def test_isochrone_readme_point_counts_are_the_tables():
    """isochrones/README.md gave PARSEC '590,495 (572,234 below 120 M_sun)': 581,366 points lie below
    120 M_sun; 572,234 is the number with an IMF weight > 0 (what ssp_grid sends on, docs/ssp.md's '572k')."""
    import re
    from pathlib import Path

    from smnet_sps.imf import imf_weights_many
    from smnet_sps.isochrones import load_isochrones
    iso = load_isochrones("parsec")
    c = iso.columns
    below = int((c["mini"] < 120.0).sum())
    weighted = int((imf_weights_many(c["mini"], iso.count.ravel(), "kroupa") > 0).sum())
    readme = (Path(__file__).resolve().parents[1] / "isochrones" / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `parsec.npz`"))
    numbers = {label.strip(): int(n.replace(",", "")) for n, label in
               re.findall(r"([\d,]{5,}) (below 120 M_sun|with Kroupa IMF weight > 0)", row)}
    assert f"{iso.n_points:,}" in row
    assert numbers == {"below 120 M_sun": below, "with Kroupa IMF weight > 0": weighted}
    assert (below, weighted) == (581366, 572234)


@pytest.mark.parametrize("family, zrange", [("parsec", "0.0001-0.06"), ("padova", "0.0002-0.03")])
def test_a_z_with_a_unit_names_logzsol_and_the_valid_range(family, zrange, blackbody):
    """Z = -0.5 * u.dex (a logzsol given as Z) was refused as "Z is dimensionless; got unit dex", naming
    neither logzsol nor the valid Z; now the message gives both, with the family's Zsun."""
    import astropy.units as u

    from smnet_sps.isochrones import load_isochrones
    from smnet_sps.ssp import ssp_spectrum
    zsun = load_isochrones(family).zsun
    with pytest.raises(ValueError, match=rf"got unit dex \(a log10\(Z / Zsun\) in dex is logzsol, not Z: "
                                         rf"Z = {zsun:g} x 10\*\*logzsol\); valid Z .* {family} is {zrange}"):
        ssp_spectrum(1e9, Z=-0.5 * u.dex, isochrones=family, generator=blackbody)
    with pytest.raises(ValueError, match=rf"got unit K; valid Z \(metal mass fraction\) for {family} is "
                                         rf"{zrange}"):
        ssp_grid([1e9], [0.01] * u.K, isochrones=family, generator=blackbody, progress=False)
    # the same value as logzsol is read
    assert ssp_spectrum(1e9, logzsol=-0.5 * u.dex, isochrones=family, generator=blackbody).meta["Z"] == \
        pytest.approx(zsun * 10**-0.5, rel=1e-12)


@pytest.mark.parametrize("index", [(1.5, 2), (1, 2.0), (True, 2)])
def test_isochrone_refuses_indices_that_are_no_integers(index):
    """iso.isochrone(1.5, 2) and (1, 2.0) stopped inside numpy ("only integers, slices ... are valid
    indices"), (True, 2) with "only 0-dimensional arrays can be converted": a ValueError naming the ranges."""
    from smnet_sps.isochrones import load_isochrones
    iso = load_isochrones("parsec")
    with pytest.raises(ValueError, match=r"indices must be integers: iz in 0\.\.14 .* ia in 0\.\.92"):
        iso.isochrone(*index)
    one = iso.isochrone(np.int64(index[0] > 1), 2)          # numpy integers stay valid
    assert one.log_age == iso.log_age[2]
