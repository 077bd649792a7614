"""Caches and state: a model call or a caller's reference never changes what later calls compute."""
import numpy as np
import pytest
from astropy import units as u

from smnet_sps.backend import StellarLibraryBackend
from smnet_sps.ssp import resolve_generator


@pytest.mark.parametrize("name", ["default", "semi-empirical", "blackbody"])
def test_a_generators_wavelength_grid_cannot_be_edited_through_a_reference(name):
    """``w = gen.wavelength; w /= 1e4`` (to plot in micron) changed the generator's own grid, shared by the
    backend and every later SSP (their axis came out 0.0091-160 A); now the write raises and nothing moved."""
    gen = resolve_generator(name, "cpu")
    before = np.array(gen.wavelength)
    backend = StellarLibraryBackend(gen)
    for owner in (gen, backend):
        w = owner.wavelength
        with pytest.raises(ValueError, match="read-only"):
            w /= 1e4
    assert np.array_equal(gen.wavelength, before) and np.array_equal(backend.wavelength, before)


def test_the_generator_docs_say_the_wavelength_grid_is_read_only_and_their_copy_works():
    """docs/generator.md did not say that gen.wavelength / backend.wavelength are read-only (a user's
    ``w /= 1e4`` raises since the grid is shared): it says so, and the copy it shows can be edited."""
    from pathlib import Path
    doc = " ".join((Path(__file__).parents[1] / "docs" / "generator.md").read_text().split())
    assert "`gen.wavelength` (and a backend's `backend.wavelength`)" in doc and "read-only array" in doc
    gen = resolve_generator("blackbody", "cpu")
    before = np.array(gen.wavelength)
    w_um = gen.wavelength.copy()
    w_um /= 1e4
    np.testing.assert_allclose(w_um, before / 1e4)
    assert np.array_equal(gen.wavelength, before)



def test_an_ssp_interpolator_keeps_its_axis_when_the_grid_is_edited_afterwards():
    """SSPInterpolator kept the grid's own ssp_wave: the owner's later ``grid.ssp_wave[:] *= 1.5`` moved the
    interpolator's axis (91 -> 136.5 A, the one fit_ssp places the model on) while its spectra stayed."""
    import torch

    from smnet_sps.ssp import ssp_grid
    from smnet_sps.ssp_torch import SSPInterpolator
    grid = ssp_grid([1e9, 2e9], [0.008, 0.0152], generator="blackbody", progress=False)
    interp = SSPInterpolator(grid)
    axis, spectra = np.array(interp.wavelength), interp(9.1, -0.2)
    grid.ssp_wave[:] *= 1.5
    assert np.array_equal(interp.wavelength, axis)
    assert torch.equal(interp(9.1, -0.2), spectra)
    with pytest.raises(ValueError, match="read-only"):
        interp.wavelength[0] = 1.0


def test_a_callers_bandpass_edited_in_place_gets_weights_of_its_new_curve():
    """The photometry weight cache (and the Sun's magnitude cache) knew a caller's bandpass by identity: after
    ``bp.model.lookup_table[:] = narrower`` the next magnitudes were the old curve's (5800 K AB -38.40033
    where a new bandpass of the narrow curve gives -38.40284)."""
    from synphot import SpectralElement
    from synphot.models import Empirical1D

    from smnet_sps.generator import planck_surface_flux
    from smnet_sps.photometry import magnitudes, sun_absolute_magnitudes
    wave = np.geomspace(1000.0, 30000.0, 2000)
    spec = (wave * u.AA, planck_surface_flux(wave, np.array([5800.0])) * u.Unit("erg s-1 cm-2 AA-1"))
    x = np.linspace(5000.0, 6000.0, 50)

    def curve(width):
        t = np.exp(-0.5 * ((x - 5500.0) / width) ** 2)
        t[[0, -1]] = 0.0
        return t
    bp = SpectralElement(Empirical1D, points=x, lookup_table=curve(150.0))
    wide = float(magnitudes(spec, [bp]).columns[0][0]), sun_absolute_magnitudes([bp])
    bp.model.lookup_table[:] = curve(30.0)
    fresh = SpectralElement(Empirical1D, points=x, lookup_table=curve(30.0))
    narrow = float(magnitudes(spec, [fresh]).columns[0][0]), sun_absolute_magnitudes([fresh])
    assert abs(narrow[0] - wide[0]) > 1e-3                    # the edit matters
    assert float(magnitudes(spec, [bp]).columns[0][0]) == narrow[0]
    assert list(sun_absolute_magnitudes([bp]).values()) == list(narrow[1].values())


def test_a_speclite_filter_registered_under_a_shipped_name_is_used_whatever_came_first(monkeypatch):
    """A speclite FilterResponse made under a shipped name (sdss2010-r) replaces that curve in speclite's
    registry. smnet-sps cached the element by name: a session that used the name before the registration
    kept the shipped curve for good, one that used it after got the user's (0.11 mag apart on F_lambda ~
    lambda^-4). Now the name is resolved as speclite resolves it at each call, so both orders agree."""
    import speclite.filters as sf

    from smnet_sps.filters import get_bandpass, pivot_wavelength
    from smnet_sps.photometry import magnitudes
    monkeypatch.setattr(sf, "_filter_cache", dict(sf._filter_cache))     # the registry restored afterwards
    wave = np.linspace(1000.0, 30000.0, 5000) * u.AA
    spec = (wave, (wave.value / 5000.0) ** -4 * 1e-15 * u.erg / u.s / u.cm ** 2 / u.AA)

    def mag():
        return float(np.asarray(magnitudes(spec, ["sdss2010-r"])["sdss2010-r"])[0])
    shipped, shipped_pivot = mag(), pivot_wavelength("sdss2010-r")      # the name used first
    lam = np.linspace(6000.0, 7000.0, 50) * u.AA
    box = np.r_[0.0, np.ones(48), 0.0]
    sf.FilterResponse(lam, box, meta=dict(group_name="sdss2010", band_name="r"))
    bp = get_bandpass("sdss2010-r")[1]
    assert bp.waveset.min() == 6000.0 * u.AA and bp.waveset.max() == 7000.0 * u.AA
    mine = mag()
    assert abs(mine - shipped) > 0.05
    assert pivot_wavelength("sdss2010-r") == pytest.approx(float(bp.pivot().to_value(u.AA)), rel=1e-12)
    assert pivot_wavelength("sdss2010-r") != shipped_pivot
    # the registration made before any use: the same magnitude as after one
    monkeypatch.setattr(sf, "_filter_cache", {})
    sf.FilterResponse(lam, box, meta=dict(group_name="sdss2010", band_name="r"))
    assert mag() == mine


def test_a_shipped_speclite_file_is_read_once_also_when_its_curve_registers_under_another_name(monkeypatch):
    """Resolving speclite names at every call (for curves users register under shipped names) re-read the
    files whose curve registers under another name (lsst2016-i as lsst-i: speclite's cache never finds it),
    ~4 ms a band on every get_mags call. The shipped file is read once; a registered curve still wins."""
    import speclite.filters as sf

    from smnet_sps import filters as F
    first = F._named_bandpass("lsst2016-i")
    reads = []
    monkeypatch.setattr(sf, "load_filter", lambda *a, **k: reads.append(a))
    assert F._named_bandpass("lsst2016-i") is first and F._named_pivot("lsst2016-i") > 0
    assert reads == []
