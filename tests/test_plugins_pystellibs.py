"""pystellibs-interface adapter: shapes, units, luminosity scaling and coverage, with a blackbody
generator."""
import warnings

import numpy as np
import pytest
from astropy import units as u

from smnet_sps.plugins.pystellibs_backend import SMNetStellib, register
from smnet_sps.constants import L_SUN, R_SUN, SIGMA_SB
from smnet_sps.generator import BlackbodyGenerator, ParameterBox


class BoxedBlackbody(BlackbodyGenerator):
    """Blackbody spectra with two library boxes, like a trained model's coverage."""

    def __init__(self):
        super().__init__(wavelength=np.geomspace(50.0, 1e7, 4000))
        self.box = ParameterBox((2500.0, 50000.0), (-1.0, 6.0), (-2.5, 0.5))
        self.library_boxes = {"cool": ParameterBox((2500.0, 10000.0), (-1.0, 6.0), (-2.5, 0.5)),
                              "hot": ParameterBox((10000.0, 50000.0), (3.0, 5.0), (-2.5, 0.5))}


@pytest.fixture(scope="module")
def lib():
    return SMNetStellib(BoxedBlackbody(), zsun=0.02)


def test_units_and_luminosity_scaling(lib):
    sun = dict(logT=np.log10(5772.0), logg=4.44, logL=0.0, Z=0.02)
    spec = lib.generate_stellar_spectrum(**sun)
    wave = lib.wavelength
    assert wave.unit == u.AA and spec.shape == wave.shape
    # integral of L_lambda = L (the blackbody integrates to sigma T^4 over 50 A - 1 mm to < 1e-4)
    assert abs(np.trapezoid(spec, wave.value) / L_SUN - 1) < 2e-3
    # = 4 pi R^2 F_lambda with R from pystellibs' get_radius (SI metres)
    r_cm = lib.get_radius(0.0, np.log10(5772.0)) * 100
    assert abs(r_cm / R_SUN - 1) < 1e-3
    flux, _ = lib.generator.surface_flux(5772.0, 4.44, 0.0)
    assert np.allclose(spec, 4 * np.pi * r_cm ** 2 * flux[0], rtol=2e-3)
    # scales linearly with L
    assert np.allclose(lib.generate_stellar_spectrum(**{**sun, "logL": 2.0}), 100 * spec, rtol=1e-12)
    assert np.allclose(lib.get_weights(1.0, 4.0, 1.0), 10 * L_SUN)


def test_individual_spectra_shapes_and_null_outside(lib):
    stars = {"logT": np.log10([4000.0, 20000.0, 20000.0, 60000.0]), "logg": [2.0, 4.0, 1.0, 5.0],
             "logL": [1.0, 3.0, 3.0, 4.0], "Z": [0.02, 0.004, 0.02, 0.02]}
    wave, specs = lib.generate_individual_spectra(stars)
    assert specs.unit == u.erg / u.s / u.AA and specs.shape == (4, wave.size)
    good = np.isfinite(specs.value).all(axis=1)
    # 3rd: hot star at log g 1 is outside the 'hot' box; 4th: hotter than any box
    assert good.tolist() == [True, True, False, False]
    teff = 10 ** np.asarray(stars["logT"])
    lum = np.trapezoid(specs.value[good], wave.value, axis=1)
    assert np.allclose(lum / (10 ** np.asarray(stars["logL"])[good] * L_SUN), 1, atol=5e-3)
    assert teff[good].size == 2


def test_boundaries_agree_with_generator_coverage(lib):
    rng = np.random.default_rng(0)
    logt = rng.uniform(3.3, 4.8, 400)
    logg = rng.uniform(-1.5, 6.5, 400)
    inside = lib.points_inside(np.column_stack([logt, logg]), dlogT=0.0, dlogg=0.0)
    assert np.array_equal(inside, lib.generator.in_coverage(10 ** logt, logg, 0.0))
    path = lib.get_boundaries(dlogT=0.0, dlogg=0.0)
    strict = (inside & (np.abs(logt - 4.0) > 1e-3)
              & ~np.isclose(logg, 3.0, atol=1e-3) & ~np.isclose(logg, 5.0, atol=1e-3))
    assert path.contains_points(np.column_stack([logt, logg]))[strict].all()
    # [M/H] outside every box
    assert not lib.points_inside([[3.8, 4.0]], dlogT=0, dlogg=0, Z=0.02 * 10 ** 1.0)[0]
    assert lib.logT.size == lib.logg.size == lib.Z.size and (lib.Teff > 0).all()
    # the representative nodes span every box's metallicities, not solar alone: [M/H] -2.5 .. +0.5
    mh = np.log10(lib.Z / lib.zsun)
    assert np.isclose(mh.min(), -2.5) and np.isclose(mh.max(), 0.5) and np.unique(mh.round(6)).size >= 7
    assert all(np.any(np.isclose(mh, v)) for v in (-2.0, -1.0, 0.0))


def test_errors_are_explicit(lib):
    with pytest.raises(RuntimeError, match="Outside"):
        lib.generate_stellar_spectrum(np.log10(80000.0), 5.0, 1.0, 0.02)
    assert np.isnan(lib.generate_stellar_spectrum(np.log10(80000.0), 5.0, 1.0, 0.02,
                                                  raise_extrapolation=False)).all()
    with pytest.raises(ValueError, match="NaN"):
        lib.generate_stellar_spectrum(np.nan, 4.0, 0.0, 0.02)
    with pytest.raises(ValueError, match="Z must be positive"):
        lib.generate_stellar_spectrum(3.7, 4.0, 0.0, -0.01)
    with pytest.raises(ValueError, match="columns"):
        lib.generate_individual_spectra({"logT": [3.7]})
    # a Teff in K given as logT: named as logT, not an overflow refused as a non-finite 'teff'
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(ValueError, match=r"logT = 5777 \(index 1\) is outside 2.69897 .. 6"):
            lib.generate_individual_spectra({"logT": [3.7, 5777.0], "logg": [4.0, 4.4], "logL": [0.0, 0.0],
                                             "Z": [0.02, 0.02]})
    with pytest.raises(ValueError, match="zsun"):
        SMNetStellib(BoxedBlackbody(), zsun=2.0)


def test_register_is_guarded():
    try:
        import pystellibs  # noqa: F401
    except ImportError:
        assert register(BoxedBlackbody()) is None
    else:                                    # pragma: no cover - pystellibs is not on PyPI
        cls = register(BoxedBlackbody())
        assert cls is not None and cls().generate_stellar_spectrum(3.76, 4.4, 0.0, 0.02).size > 0


def test_sigma_constant_consistency():
    # pystellibs' own constants (W, SI) differ from IAU 2015 by < 0.3%: documented, not hidden
    assert abs(3.839e33 / L_SUN - 1) < 3e-3 and abs(5.67037321e-5 / SIGMA_SB - 1) < 1e-6


class DimBlackbody(BoxedBlackbody):
    """A generator whose spectra integrate to 0.91 sigma Teff^4 (as the default model's at 150,000 K)."""

    def _surface_flux_batch(self, teff, logg, logz, dtype=None):
        return 0.91 * super()._surface_flux_batch(teff, logg, logz, dtype)


def test_spectra_carry_the_stars_luminosity_whatever_the_generators_integral():
    """L_lambda was 4 pi R^2 F_lambda: a generator 9 % short of sigma Teff^4 gave stars 9 % short of L
    (docs/plugins.md: normalised to L_bol = 1 times L, as the SSP backend scales its stars)."""
    dim = SMNetStellib(DimBlackbody(), zsun=0.02)
    stars = {"logT": np.log10([5772.0, 30000.0]), "logg": [4.44, 4.0], "logL": [0.0, 4.0], "Z": [0.02, 0.02]}
    wave, specs = dim.generate_individual_spectra(stars)
    lum = np.trapezoid(specs.value, wave.value, axis=1) / (10 ** np.asarray(stars["logL"]) * L_SUN)
    np.testing.assert_allclose(lum, 1.0, rtol=1e-9)


def test_coverage_with_z_is_the_shipped_generators_own():
    """With Z and no margins the adapter answers as ``generator.in_coverage``: an M giant 0.04 dex below
    solar is covered (BaSeL covers +-0.25 dex around its one metallicity) and gets a spectrum; a hot
    supergiant in the grids' hole is not, and gets NaN rather than a silent extrapolation."""
    from smnet_sps.neural import load_generator
    gen = load_generator(device="cpu")
    lib = SMNetStellib(gen, zsun=0.02)
    rng = np.random.default_rng(1)
    logt, logg = rng.uniform(3.4, 4.8, 3000), rng.uniform(-0.5, 5.5, 3000)
    z = 0.02 * 10 ** rng.uniform(-2.0, 0.4, 3000)
    inside = lib.points_inside(np.column_stack([logt, logg]), 0, 0, Z=z)
    assert np.array_equal(inside, gen.in_coverage(10 ** logt, logg, np.log10(z / 0.02)))
    assert 0.2 < inside.mean() < 0.95
    assert lib.points_inside([[3.5, 0.5]], 0, 0, Z=0.019)[0]
    assert np.isfinite(lib.generate_stellar_spectrum(3.5, 0.5, 2.0, 0.019)).all()
    assert not lib.points_inside([[4.5, 1.0]], 0, 0, Z=0.02)[0]
    _, specs = lib.generate_individual_spectra({"logT": [3.5, 4.5], "logg": [0.5, 1.0], "logL": [2.0, 5.0],
                                                "Z": [0.019, 0.02]})
    assert np.isfinite(specs.value[0]).all() and np.isnan(specs.value[1]).all()
    # margins keep pystellibs' widened-box test, with BaSeL's +-0.25 dex
    assert lib.points_inside([[3.5, 0.5]], 0.01, 0.01, Z=0.019)[0]


def test_a_short_grid_keeps_each_stars_l_lambda():
    """As the SSP backend: on a generator grid holding only part of sigma Teff^4 (3,000 A - 10 um) a hot
    star's L_lambda is L pi B_lambda / sigma T^4, not its whole L piled into the grid."""
    from smnet_sps.constants import L_SUN, SIGMA_SB
    from smnet_sps.generator import BlackbodyGenerator, planck_surface_flux
    from smnet_sps.plugins.pystellibs_backend import SMNetStellib
    wave = np.geomspace(3000.0, 1e5, 600)
    lib = SMNetStellib(BlackbodyGenerator(wave))
    _, spec = lib.generate_individual_spectra({"logT": [3.76, 4.6], "logg": [4.4, 4.0], "logL": [0.0, 3.0],
                                               "Z": [0.02, 0.02]})
    teff = 10 ** np.array([3.76, 4.6])
    lum = np.array([1.0, 1e3])[:, None] * L_SUN
    truth = lum * planck_surface_flux(wave, teff) / (SIGMA_SB * teff[:, None] ** 4)
    np.testing.assert_allclose(np.asarray(getattr(spec, "value", spec)), truth, rtol=1e-3)


def test_margins_of_none_are_pystellibs_defaults(lib):
    """pystellibs' CompositeStellib (lib_a + SMNet without bounds) passes dlogT = dlogg = None, which its own
    Stellib.get_boundaries reads as 0.1 / 0.3; ours raised a TypeError (float - None)."""
    xy = np.array([[3.76, 4.4], [5.5, 4.0], [3.4, 9.0]])
    np.testing.assert_array_equal(lib.points_inside(xy, dlogT=None, dlogg=None),
                                  lib.points_inside(xy, dlogT=0.1, dlogg=0.3))
    assert lib.get_boundaries(None, None).vertices.tolist() == lib.get_boundaries(0.1, 0.3).vertices.tolist()


class FaultyPixelBlackbody(BoxedBlackbody):
    """Pixel 600 at -5x its value (or NaN) above 10 kK; pixel 0 at zero below (a masked tail, legitimate)."""

    def __init__(self, fault):
        super().__init__()
        self.fault = fault

    def _surface_flux_batch(self, teff, logg, logz, dtype=None):
        f = super()._surface_flux_batch(teff, logg, logz, dtype)
        f[teff > 1e4, 600] = -5.0 * f[teff > 1e4, 600] if self.fault == "negative" else np.nan
        f[teff <= 1e4, 0] = 0.0
        return f


@pytest.mark.parametrize("fault", ["negative", "nan"])
def test_an_unusable_generated_spectrum_is_treated_as_outside(fault):
    """A negative pixel came back as negative light (L_lambda -5.1e30 erg/s/A at 20 kK, log L 2) and a NaN
    one as a NaN spectrum even under null=0 or raise_extrapolation; as in the SSP backend, either makes the
    spectrum unusable: null in generate_individual_spectra, RuntimeError (or null) in
    generate_stellar_spectrum. A zero pixel keeps it usable."""
    lib = SMNetStellib(FaultyPixelBlackbody(fault), zsun=0.02)
    stars = {"logT": np.log10([5000.0, 20000.0]), "logg": [4.0, 4.0], "logL": [0.0, 2.0], "Z": [0.02, 0.02]}
    wave, specs = lib.generate_individual_spectra(stars, null=0.0)
    assert specs.value.min() == 0.0 and not specs.value[1].any()
    np.testing.assert_allclose(np.trapezoid(specs.value[0], wave.value), L_SUN, rtol=2e-3)
    assert np.isnan(lib.generate_individual_spectra(stars)[1].value[1]).all()
    hot = dict(logT=np.log10(20000.0), logg=4.0, logL=2.0, Z=0.02)
    with pytest.raises(RuntimeError, match=r"unusable generated spectrum .*logT=4\.30103, logg=4, Z=0\.02"):
        lib.generate_stellar_spectrum(**hot)
    assert np.isnan(lib.generate_stellar_spectrum(**hot, raise_extrapolation=False)).all()
    cool = lib.generate_stellar_spectrum(np.log10(5000.0), 4.0, 0.0, 0.02)
    np.testing.assert_array_equal(cool, specs.value[0])
