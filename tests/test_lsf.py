"""Line-spread function and wavelength medium: declared = measured, carried by every output, convertible."""
import dataclasses

import numpy as np
import pytest
from astropy import units as u

from smnet_sps import lsf
from smnet_sps.medium import MEDIA, air_to_vacuum, axis_vacuum_to_air, to_medium
from smnet_sps.wavegrid import bin_edges, default_wavelength, resample

WAVE = default_wavelength().to_value(u.AA)


def _push_line(centre, wave=WAVE, width=0.02):
    """A narrow absorption line (Gaussian sigma ``width`` A, EW 1 A) binned onto ``wave`` like a library."""
    fine = np.arange(centre - 80, centre + 80, width / 4)
    spec = 1.0 - np.exp(-0.5 * ((fine - centre) / width) ** 2) / (width * np.sqrt(2 * np.pi))
    out, _ = resample(fine, spec, wave)
    return np.where(np.isfinite(out), out, 1.0)


def test_declared_lsf_equals_measured_at_every_pixel():
    declared = lsf.grid_lsf_fwhm(WAVE)
    measured, flatness = lsf.measure_grid_lsf(WAVE)
    inner = slice(1, -1)
    assert np.all(np.abs(measured[inner] / declared[inner] - 1) < 0.10)
    assert np.all(flatness[inner] > 0.99)                       # a box: flat top
    i = int(np.argmin(np.abs(WAVE - 3640.0)))                     # the one 10 A pixel of the optical grid
    assert WAVE[i] == 3640.0 and declared[i] == pytest.approx(10.0)
    assert measured[i] == pytest.approx(10.0, rel=0.1)
    opt = (WAVE > 4000) & (WAVE < 9000)
    assert np.allclose(declared[opt], 20.0)


def test_pixel_response_is_the_box_independently():
    """Independent of measure_grid_lsf: a line anywhere inside a pixel lands only there, with EW conserved."""
    i = int(np.argmin(np.abs(WAVE - 5010.0)))
    lo, hi = bin_edges(WAVE)[i:i + 2]
    for centre in np.linspace(lo + 0.5, hi - 0.5, 9):
        binned = _push_line(centre)
        deficit = 1.0 - binned
        assert np.argmax(deficit) == i
        assert deficit[i] * (hi - lo) == pytest.approx(1.0, rel=1e-3)      # EW 1 A all in pixel i
        assert deficit[i - 1] < 1e-6 and deficit[i + 1] < 1e-6


@pytest.mark.parametrize("centre", [3641.5, 5004.0, 5016.0])
@pytest.mark.parametrize("factor", [1.0, 1.25])
def test_to_gaussian_lsf_gives_the_requested_fwhm(centre, factor):
    native = lsf.grid_lsf_fwhm(WAVE)
    fwhm = factor * native[(WAVE > 3500) & (WAVE < 7000)].max()          # >= native everywhere used
    m = (WAVE > 3400) & (WAVE < 7400)
    lam, out, fwhm_out = lsf.to_gaussian_lsf(WAVE[m], _push_line(centre)[m], fwhm, 30.0, position_share=0.0)
    assert np.allclose(np.diff(np.log(lam)), 30.0 / lsf.C_KMS)
    assert np.allclose(fwhm_out, fwhm)
    prof = 1.0 - out
    near_jump = abs(centre - 3640) < 20          # the 15-10-15 A pixels: edges shared by unequal pixels
    assert np.sum(prof * np.gradient(lam)) == pytest.approx(1.0, rel=1e-3)   # EW kept
    cen = np.sum(prof * lam) / prof.sum()
    x = np.linspace(-2 * fwhm, 2 * fwhm, 4001)
    p = np.interp(x, lam - cen, prof)
    half = x[p >= 0.5 * p.max()]
    assert half[-1] - half[0] == pytest.approx(fwhm, rel=0.10)
    sigma = np.sqrt(np.sum(p * x ** 2) / p.sum())
    assert sigma * lsf.FWHM_PER_SIGMA == pytest.approx(fwhm, rel=0.05 if near_jump else 0.01)   # 2nd moment
    # what the binning loses: the line's place inside its pixel (at most half a pixel)
    i = int(np.argmin(np.abs(WAVE - centre)))
    assert abs(cen - WAVE[i]) < 0.1 and abs(cen - centre) <= 0.5 * native[i]
    flat = lsf.to_gaussian_lsf(WAVE[m], np.ones(m.sum()), fwhm, 30.0)[1]
    assert np.allclose(flat, 1.0, atol=1e-12)


@pytest.mark.parametrize("share", [lsf.POSITION_SHARE, 1.0])
def test_to_gaussian_lsf_adds_the_position_share_of_the_box_variance(share):
    """A line's profile: the requested Gaussian's variance + share x width^2/12 (its unknown place)."""
    fwhm, centre = 20.0, 5004.0
    m = (WAVE > 3400) & (WAVE < 7400)
    lam, out, fwhm_out = lsf.to_gaussian_lsf(WAVE[m], _push_line(centre)[m], fwhm, 30.0, position_share=share)
    assert np.allclose(fwhm_out, fwhm)                     # the Gaussian to degrade the galaxy to
    prof = 1.0 - out
    assert np.sum(prof * np.gradient(lam)) == pytest.approx(1.0, rel=1e-3)        # EW kept
    cen = np.sum(prof * lam) / prof.sum()
    var = np.sum(prof * (lam - cen) ** 2) / prof.sum()
    width = lsf.grid_lsf_fwhm(WAVE)[int(np.argmin(np.abs(WAVE - centre)))]
    assert var == pytest.approx((fwhm / lsf.FWHM_PER_SIGMA) ** 2 + share * width ** 2 / 12, rel=0.01)
    flat = lsf.to_gaussian_lsf(WAVE[m], np.ones(m.sum()), fwhm, 30.0, position_share=share)[1]
    assert np.allclose(flat, 1.0, atol=1e-12)


def test_position_share_takes_a_one_element_array_as_velscale_does():
    """check_position_share(np.array([0.4])) was refused with "must be in [0, 1] ... got array([0.4])" (0.4
    is in range; float() of a 1-d array fails in numpy 2) while check_velscale takes a one-element array.
    Both read one number the same way now; several, none, out of range or a unit stay refused."""
    import astropy.units as u
    assert lsf.check_position_share(np.array([0.4])) == 0.4
    assert lsf.check_position_share(np.array([[0.25]])) == 0.25
    assert lsf.check_position_share(np.array([0.3]) * u.one) == 0.3
    assert lsf.check_position_share(0.45) == 0.45 and lsf.check_velscale(np.array([70.0])) == 70.0
    m = (WAVE > 4000) & (WAVE < 6000)
    as_array = lsf.to_gaussian_lsf(WAVE[m], np.ones(m.sum()), 25.0, 30.0, position_share=np.array([0.4]))
    as_float = lsf.to_gaussian_lsf(WAVE[m], np.ones(m.sum()), 25.0, 30.0, position_share=0.4)
    assert all(np.array_equal(a, b) for a, b in zip(as_array, as_float))
    for bad in ([0.4, 0.5], [], np.array([1.5]), 0.4 * u.m, None, "x"):
        with pytest.raises(ValueError, match=r"position_share must be one number in \[0, 1\]"):
            lsf.check_position_share(bad)


def test_to_gaussian_lsf_and_degrade_refuse_bad_input():
    with pytest.raises(ValueError, match="native box FWHM"):
        lsf.to_gaussian_lsf(WAVE, np.ones(WAVE.size), 15.0, 30.0, lam_range=(4000, 6000))
    with pytest.raises(ValueError, match="velscale"):
        lsf.to_gaussian_lsf(WAVE, np.ones(WAVE.size), 25.0, -1.0)
    with pytest.raises(ValueError, match="position_share"):
        lsf.to_gaussian_lsf(WAVE, np.ones(WAVE.size), 25.0, 30.0, position_share=1.5)
    with pytest.raises(ValueError, match="fwhm_out must be >= fwhm_in"):
        lsf.degrade_to_fwhm(WAVE, np.ones(WAVE.size), 30.0, 20.0)


def test_degrade_to_fwhm():
    lam = np.exp(np.arange(np.log(4000), np.log(6000), 1e-4 * np.log(10)))
    f = np.zeros(lam.size)
    i = np.searchsorted(lam, 5000)
    f[i] = 1.0
    g = lsf.degrade_to_fwhm(lam, f, 0.0, 25.0)
    x = lam - lam[i]
    assert np.sqrt(np.sum(g * x ** 2) / g.sum()) * lsf.FWHM_PER_SIGMA == pytest.approx(25.0, rel=0.01)


# ------------------------------------------------------------------------------------- the medium
def test_every_library_states_its_medium():
    from smnet_sps.libraries import LIBRARIES
    for name, entry in LIBRARIES.items():
        assert entry.medium in MEDIA, name
        assert len(entry.medium_note) > 40, name
    # so the shipped grid needs no conversion
    assert all(e.medium == "vacuum" for e in LIBRARIES.values())


def test_grid_file_records_vacuum_and_converts_an_air_library(fixtures_dir, tmp_path, monkeypatch):
    from smnet_sps import grid as gridmod
    from smnet_sps.libraries import LIBRARIES
    libdir = fixtures_dir / "libraries"
    g = gridmod.build_grid(libdir, only="cm87", progress=False, log=lambda s: None)
    gridmod.save_grid(g, tmp_path / "g.h5")
    back = gridmod.load_grid(tmp_path / "g.h5")
    assert back.attrs["wavelength_medium"] == "vacuum" and "Morton" in back.attrs["medium_conversion"]
    assert back.attrs["lsf_shape"] == "box"
    assert np.allclose(back.attrs["lsf_fwhm"], lsf.grid_lsf_fwhm(g.wavelength))
    assert back.libraries["cm87"]["native_medium"] == "vacuum"
    # the same library declared in air is shifted to vacuum before resampling
    monkeypatch.setitem(LIBRARIES, "cm87", dataclasses.replace(LIBRARIES["cm87"], medium="air"))
    g_air = gridmod.build_grid(libdir, only="cm87", progress=False, log=lambda s: None)
    rec = g_air.libraries["cm87"]
    assert rec["native_medium"] == "air" and "air_to_vacuum" in rec["medium_conversion"]
    lib = gridmod.read_library("cm87", libdir)
    vac_wave, _ = gridmod._to_vacuum(lib, "air")
    assert np.allclose(vac_wave[0], air_to_vacuum(lib.wavelengths[0]))
    assert not np.allclose(g_air.flux, g.flux, rtol=1e-6, equal_nan=True)


def test_air_library_flux_density_is_kept_across_2000_A():
    """A flat air library (F_lambda = 1, 1 A steps) taken to vacuum: np.gradient(w) / np.gradient(vac)
    straddled the 0.65 A gap air_to_vacuum opens at 2,000 A, giving 0.755 at the native pixels 1,999 and
    2,000 A and 0.965 / 0.972 on the common grid's 1,995 / 2,005 A pixels; the analytic d lambda_air /
    d lambda_vac keeps 1 below 2,000 A and 1 / 1.00017 .. 1 / 1.00027 above."""
    from types import SimpleNamespace

    from smnet_sps import grid as gridmod
    from smnet_sps.medium import air_to_vacuum_derivative
    from smnet_sps.wavegrid import default_wavelength
    w = np.arange(1500.0, 2500.0, 1.0)
    lib = SimpleNamespace(wavelengths=[w], fluxes=[np.ones((1, w.size))])
    (vac,), (flux,) = gridmod._to_vacuum(lib, "air")
    assert np.array_equal(vac, air_to_vacuum(w))
    np.testing.assert_allclose(flux[0], np.where(w < 2000, 1.0, 1 / air_to_vacuum_derivative(w)), rtol=1e-12)
    assert np.all(flux[0][w < 2000] == 1.0) and np.all((flux[0][w >= 2000] > 0.99972)
                                                        & (flux[0][w >= 2000] < 0.99984))
    wave = default_wavelength().value
    on_grid, mask = gridmod._to_common(lib, wave, medium="air")
    near = (wave > 1960) & (wave < 2040)
    assert mask[0][near].all()
    np.testing.assert_allclose(on_grid[0][near], 1.0, atol=3e-4)


def test_known_line_through_spectrum_and_ssp_outputs(blackbody):
    spec, _ = blackbody.spectra([5800.0], [4.4], [0.0])
    assert spec.meta["wavelength_medium"] == "vacuum" and spec.meta["lsf_shape"] == "box"
    assert np.allclose(spec.meta["lsf_fwhm"], lsf.grid_lsf_fwhm(spec.spectral_axis.to_value(u.AA)))
    air = to_medium(spec, "air")
    assert air.meta["wavelength_medium"] == "air"
    lam_v, lam_a = spec.spectral_axis.to_value(u.AA), air.spectral_axis.to_value(u.AA)
    # H-alpha: 6564.61 A in vacuum is 6562.80 A in air (NIST)
    assert np.interp(6564.61, lam_v, lam_a) == pytest.approx(6562.80, abs=0.02)
    # the axis stays ordered across 2,000 A (axis_vacuum_to_air), within 0.65 A of vacuum below it
    assert np.array_equal(lam_a, axis_vacuum_to_air(lam_v)) and np.all(np.diff(lam_a) > 0)
    assert np.all(np.abs(lam_a - lam_v)[lam_v < 2000] < 0.66)
    back = to_medium(air, "vacuum")
    assert np.allclose(back.spectral_axis.to_value(u.AA), lam_v, atol=1e-3)
    with pytest.raises(ValueError, match="medium must be one of"):
        to_medium(spec, "water")


def test_ssp_outputs_carry_lsf_medium_and_outside_fraction(default_generator):
    from smnet_sps.ssp import ssp_grid, ssp_spectrum
    g = ssp_grid([1e9, 1e10], [0.0152, 0.03], generator=default_generator, progress=False)
    assert g.attrs["wavelength_medium"] == "vacuum" and g.attrs["lsf_shape"] == "box"
    assert np.allclose(g.attrs["lsf_fwhm"], lsf.grid_lsf_fwhm(g.ssp_wave))
    assert g.outside_fraction.shape == (2, 2)
    assert np.all((g.outside_fraction >= 0) & (g.outside_fraction <= 1))
    air = to_medium(g, "air")
    assert air.attrs["wavelength_medium"] == "air"
    assert np.allclose(air.ssp_wave, axis_vacuum_to_air(g.ssp_wave))
    s = ssp_spectrum(1e10, Z=0.0152, generator=default_generator)
    assert s.meta["wavelength_medium"] == "vacuum" and np.size(s.meta["lsf_fwhm"]) == s.spectral_axis.size


@pytest.fixture(scope="module")
def miles(fixtures_dir):
    """MILES v9.1 stars: 0.9-A pixels, FWHM 2.5 A."""
    d = np.load(fixtures_dir / "empirical" / "miles_v9.1_fixture_stars.npz")
    return d["wave"], d["flux"].astype(float)


@pytest.mark.parametrize("target", [2.525, 2.6, 2.8, 3.0, 3.75, 5.0])
def test_degrade_to_fwhm_keeps_the_variance_of_a_kernel_below_one_pixel(miles, target):
    """The Gaussian was sampled at whole pixels: on MILES' 0.9-A pixels a kernel sigma below ~0.8 pixel lost
    most of its variance (2.5 -> 2.6 A gave 2.521 A, 2.5 -> 2.8 gave 2.793, 2.5 -> 2.525 nothing)."""
    wave, flux = miles
    var = (target ** 2 - 2.5 ** 2) / lsf.FWHM_PER_SIGMA ** 2                   # [A^2]
    sigma_pix = np.sqrt(var) / 0.9
    i = np.searchsorted(wave, 5000.0)
    impulse = np.zeros(wave.size)
    impulse[i] = 1.0
    kern = lsf.degrade_to_fwhm(wave, impulse, 2.5, target)                     # the kernel itself
    x = wave - wave[i]
    assert kern.sum() == pytest.approx(1.0, rel=1e-12) and np.sum(kern * x) == pytest.approx(0.0, abs=1e-12)
    # truncated at +-4 sigma (cut at whole pixels) once sigma exceeds ~1 pixel: 1e-3 of the variance at most
    assert np.sum(kern * x ** 2) == pytest.approx(var, rel=1e-9 if sigma_pix < 1 else 1.2e-3)
    # a 2.5-A Gaussian line (between two pixels) comes out with the requested FWHM (its second moment)
    line = np.exp(-0.5 * ((wave - 5000.45) / (2.5 / lsf.FWHM_PER_SIGMA)) ** 2)
    out = lsf.degrade_to_fwhm(wave, line, 2.5, target)
    m = np.sum(out * wave) / out.sum()
    assert np.sqrt(np.sum(out * (wave - m) ** 2) / out.sum()) * lsf.FWHM_PER_SIGMA == pytest.approx(target,
                                                                                                      rel=2e-4)
    # on the stars, a kernel of sigma >= 1 pixel is the plain sampled Gaussian it always was
    if sigma_pix >= 1:
        half = int(np.ceil(4 * sigma_pix))
        k = np.arange(-half, half + 1)
        g = np.exp(-0.5 * (k / sigma_pix) ** 2)
        inner = slice(half, wave.size - half)
        ref = np.stack([np.convolve(f, g / g.sum(), mode="same")[inner] for f in flux])
        assert np.allclose(lsf.degrade_to_fwhm(wave, flux, 2.5, target)[:, inner], ref, rtol=1e-6, atol=0)


def test_a_sliced_spectrum_whose_lsf_meta_no_longer_matches_is_refused_by_name(blackbody, tmp_path):
    """specutils slicing keeps the meta: spec[3000 A:9000 A] of the default model has 301 pixels and lsf_fwhm
    still 1221 values,
    and to_medium crashed inside numpy ("operands could not be broadcast together with shapes (1221,)
    (301,)"). Now a ValueError says the meta no longer matches the axis and how to set it; sliced like the
    flux (or a single FWHM), it converts."""
    spec, _ = blackbody.spectra([5800.0], [4.4], [0.0])
    cut = spec[3000 * u.AA:9000 * u.AA]
    n = cut.spectral_axis.size
    assert 100 < n < 1221 and np.size(cut.meta["lsf_fwhm"]) == 1221
    with pytest.raises(ValueError, match=rf"lsf_fwhm.* 1221 values .* {n} pixels.*no longer matches"):
        to_medium(cut, "air")
    lam = spec.spectral_axis.to_value(u.AA)
    keep = (lam >= cut.spectral_axis[0].value) & (lam <= cut.spectral_axis[-1].value)
    cut.meta["lsf_fwhm"] = np.asarray(spec.meta["lsf_fwhm"])[keep]        # sliced like the flux
    air = to_medium(cut, "air")
    whole = to_medium(spec, "air").meta["lsf_fwhm"]
    np.testing.assert_allclose(air.meta["lsf_fwhm"], whole[keep], rtol=1e-12)
    cut.meta["lsf_fwhm"] = 2.5                                             # one FWHM for every pixel
    one = to_medium(cut, "air").meta["lsf_fwhm"]
    assert one.shape == (n,) and np.allclose(one, 2.5 / 1.00027, rtol=1e-4)
    grid = lsf.lsf_meta(WAVE)                                              # an SSPGrid's attrs alike
    from smnet_sps.ssp import SSPGrid
    g = SSPGrid(np.array([-2.0]), np.array([0.0]), WAVE[:100], np.ones((1, 1, 100)), *[np.zeros((1, 1))] * 5,
                attrs={**grid, "lsf_fwhm": list(grid["lsf_fwhm"])})
    with pytest.raises(ValueError, match=r"attrs\['lsf_fwhm'\] has 1221 values .* 100 pixels"):
        to_medium(g, "air")


def test_a_stated_lsf_in_the_wrong_unit_is_named():
    # stated_lsf_fwhm repeated _as_fwhm's conversion without its message: meta['lsf_fwhm'] = 60 km/s gave
    # astropy's bare "'km / s' and 'Angstrom' are not convertible"; a negative one was accepted
    from smnet_sps.lsf import stated_lsf_fwhm
    with pytest.raises(u.UnitConversionError, match=r"meta\['lsf_fwhm'\] must be a length"):
        stated_lsf_fwhm(60 * u.km / u.s, 4)
    with pytest.raises(ValueError, match=r"must be finite and >= 0 .*pixel 2"):
        stated_lsf_fwhm([1.0, 2.0, -1.0, 3.0], 4)
    np.testing.assert_allclose(stated_lsf_fwhm(2 * u.nm, 3), [20.0, 20.0, 20.0], rtol=1e-12)


@pytest.mark.parametrize("how", ["masked array", "mask", "nan"])
def test_degrade_to_fwhm_keeps_bad_pixels_out_of_their_neighbours(miles, how):
    """A bad pixel was smoothed into its neighbours: a -99 sentinel under a MaskedArray's mask made its
    neighbours (flux ~1) -9.8 .. -3.3 at 2.5 -> 5 A (the mask dropped), one NaN made 31 pixels NaN. Bad pixels
    (masked, ``mask=True``, NaN) now take no part: each output pixel is the mean of its good neighbours."""
    wave, flux = miles
    flux = flux[:3] / np.median(flux[:3], axis=1, keepdims=True)
    clean = lsf.degrade_to_fwhm(wave, flux, 2.5, 5.0)
    bad = np.zeros(wave.size, bool)
    bad[[400, 401, 1500, 3000]] = True                  # a two-pixel sky line and two lone pixels
    dirty = np.where(bad, np.nan if how == "nan" else -99.0, flux)
    if how == "masked array":
        out = lsf.degrade_to_fwhm(wave, np.ma.masked_array(dirty, mask=np.broadcast_to(bad, dirty.shape)),
                                  2.5, 5.0)
        assert np.ma.isMaskedArray(out) and np.array_equal(np.ma.getmaskarray(out)[0], bad)
        out[0, 10] = np.ma.masked          # the result's mask is the caller's to change (the review:
        out.mask[0, 10] = False            # a read-only broadcast view refused both)
        out = out.filled(np.nan)
    else:
        out = lsf.degrade_to_fwhm(wave, dirty, 2.5, 5.0, mask=bad if how == "mask" else None)
    assert np.all(np.isnan(out[:, bad])) and np.all(np.isfinite(out[:, ~bad]))
    # beyond the kernel's reach (+-4 sigma, sigma = 1.84 A = 2.0 pixels) nothing changed
    reach = np.convolve(bad, np.ones(2 * 9 + 1), mode="same") > 0
    np.testing.assert_allclose(out[:, ~reach], clean[:, ~reach], rtol=1e-12)
    # next to them, the mean of the good neighbours: within 3 % of the clean result (2.2 % on the steep blue
    # end next to the two-pixel gap; was 10x off, or NaN)
    near = reach & ~bad
    assert np.max(np.abs(out[:, near] / clean[:, near] - 1)) < 0.03
    # a flat spectrum stays exactly flat at every good pixel (the good kernel weights sum to 1)
    flat = lsf.degrade_to_fwhm(wave, np.where(bad, -99.0, 3.0), 2.5, 5.0, mask=bad)
    np.testing.assert_allclose(flat[~bad], 3.0, rtol=1e-12)
    with pytest.raises(ValueError, match=r"mask must be a bool array .* got int64 \(4,\)"):
        lsf.degrade_to_fwhm(wave, flux, 2.5, 5.0, mask=np.arange(4))
