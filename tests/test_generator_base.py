import numpy as np
import pytest
from astropy import units as u

from smnet_sps.constants import SIGMA_SB
from smnet_sps.generator import CoverageWarning, validate_parameters


def test_blackbody_integrates_to_sigma_t4(blackbody):
    teff = np.array([3000.0, 5800.0, 20000.0])
    flux, inside = blackbody.surface_flux(teff, 4.0, 0.0)
    assert inside.all()
    integral = np.trapezoid(flux, blackbody.wavelength, axis=1)
    np.testing.assert_allclose(integral / (SIGMA_SB * teff**4), 1.0, rtol=0.01)


def test_spectra_of_many_stars_hold_the_flux_once(blackbody):
    # Spectrum(flux=flux * unit) copied the (n, n_wave) array: a call's peak memory was twice its result
    # (2.4x for 30,000 stars of the default model, 706 MB for 293 MB); the batches' own work is small
    import tracemalloc
    teff = np.geomspace(3000.0, 30000.0, 4000)
    blackbody.spectra(teff[:2], 4.0, 0.0)          # imports and caches outside the measurement
    tracemalloc.start()
    try:
        spec, _ = blackbody.spectra(teff, 4.0, 0.0, batch_size=128)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    result = spec.flux.nbytes
    assert result == teff.size * blackbody.wavelength.size * 8
    assert peak < 1.5 * result, (peak, result)
    flux, _ = blackbody.surface_flux(teff[:3], 4.0, 0.0)
    np.testing.assert_array_equal(spec.flux.value[:3], flux)


def test_spectra_returns_specutils_with_units(blackbody):
    spec, inside = blackbody.spectra([5000.0, 6000.0] * u.K, 4.4, 0.0)
    assert spec.flux.shape == (2, blackbody.wavelength.size)
    assert spec.flux.unit == u.Unit("erg s-1 cm-2 AA-1")
    assert spec.spectral_axis.unit == u.AA
    assert inside.tolist() == [True, True]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_raise(blackbody, bad):
    with pytest.raises(ValueError, match="non-finite"):
        blackbody.spectra([5000.0, bad], 4.0, 0.0)


def test_masked_values_are_refused_not_computed(blackbody):
    """np.asarray drops a mask: the masked 6000 K was computed as if valid. A masked element is refused (numpy
    or astropy masked arrays, any parameter); a masked array with nothing masked is plain data."""
    from astropy.utils.masked import Masked
    teff = np.ma.masked_array([5000.0, 6000.0], mask=[0, 1])
    with pytest.raises(ValueError, match=r"teff is a masked array with 1 masked value.*not supported: rem"):
        blackbody.spectra(teff, 4.4, 0.0)
    with pytest.raises(ValueError, match="masked values are not supported"):
        blackbody.surface_flux(teff, 4.4, 0.0)
    with pytest.raises(ValueError, match="logg is a masked array"):
        validate_parameters(5000.0, np.ma.masked_array([4.4, 4.5], mask=[1, 0]), 0.0)
    with pytest.raises(ValueError, match="logz is a masked array"):
        validate_parameters(5000.0, 4.4, np.ma.masked)
    with pytest.raises(ValueError, match="teff is a masked array"):
        validate_parameters(Masked([5000.0, 6000.0] * u.K, mask=[False, True]), 4.4, 0.0)
    for unmasked in (np.ma.masked_array([5000.0, 6000.0]), np.ma.masked_array([5000.0, 6000.0], mask=[0, 0]),
                     Masked([5000.0, 6000.0] * u.K, mask=[False, False])):
        np.testing.assert_array_equal(validate_parameters(unmasked, 4.4, 0.0)[0], [5000.0, 6000.0])


def test_negative_teff_raises():
    with pytest.raises(ValueError, match="teff = -10 .*outside the physical domain"):
        validate_parameters(-10.0, 4.0, 0.0)


def test_out_of_box_warns_or_raises():
    from smnet_sps.generator import BlackbodyGenerator
    narrow = BlackbodyGenerator(teff_range=(1000.0, 1e5))
    with pytest.warns(CoverageWarning, match="outside the coverage"):
        _, inside = narrow.spectra([5000.0, 2e5], 4.0, 0.0)
    assert inside.tolist() == [True, False]
    with pytest.raises(ValueError, match="outside the coverage"):
        narrow.spectra([2e5], 4.0, 0.0, strict=True)


def test_stream_is_batched(blackbody):
    teff = np.linspace(3000, 9000, 25)
    chunks = list(blackbody.stream(teff, 4.0, 0.0, batch_size=10))
    assert [c[1].shape[0] for c in chunks] == [10, 10, 5]


# ---- hardening (issue 12): physical domain, types, units ------------------------------------------
@pytest.mark.parametrize("teff, match", [(1e20, "teff.*outside the physical domain 500 .. 1e\\+06 K"),
                                         (1e-300, "teff.*outside the physical domain"),
                                         (-10.0, "teff.*outside the physical domain"),
                                         (True, "teff.*boolean"), ([5000.0, True], "teff.*boolean"),
                                         (None, "teff must be a number or array of numbers, got None"),
                                         ("5000", "teff must be a number"),
                                         ({"a": 1}, "teff must be a number")])
def test_teff_outside_the_physical_domain_or_of_wrong_type_is_refused(teff, match):
    with pytest.raises(ValueError, match=match):
        validate_parameters(teff, 4.0, 0.0)


@pytest.mark.parametrize("logg, logz, match", [(1e200, 0.0, "logg.*-3 .. 15"), (-4.0, 0.0, "logg.*-3 .. 15"),
                                               (4.0, 3.0, "logz.*-6 .. 2"), (4.0, -1e160, "logz.*-6 .. 2"),
                                               (None, 0.0,
                                                "logg must be a number or array of numbers, got None"),
                                               (4.0, False, "logz.*boolean")])
def test_logg_and_logz_outside_the_physical_domain_are_refused(logg, logz, match):
    with pytest.raises(ValueError, match=match):
        validate_parameters(5777.0, logg, logz)


def test_logg_quantities_dex_or_linear_acceleration():
    _, g, _ = validate_parameters(5777.0, 27542.0 * u.cm / u.s**2, 0.0)
    np.testing.assert_allclose(g, np.log10(27542.0))                     # never log g = 27542
    _, g, _ = validate_parameters(5777.0, 275.42 * u.m / u.s**2, 0.0)
    np.testing.assert_allclose(g, np.log10(27542.0))
    _, g, _ = validate_parameters(5777.0, u.Dex(4.44, u.dex(u.cm / u.s**2)), 0.0)
    np.testing.assert_allclose(g, 4.44)
    _, g, _ = validate_parameters(5777.0, u.Dex(2.44, u.dex(u.m / u.s**2)), 0.0)
    np.testing.assert_allclose(g, 4.44)
    _, _, z = validate_parameters(5777.0, 4.44, -0.5 * u.dex)
    np.testing.assert_allclose(z, -0.5)
    t, _, _ = validate_parameters(5000.0 * u.deg_C, 4.0, 0.0)
    np.testing.assert_allclose(t, 5273.15)
    with pytest.raises(ValueError, match="logg"):
        validate_parameters(5777.0, 4.44 * u.km, 0.0)
    with pytest.raises(ValueError, match="teff"):
        validate_parameters(5777.0 * u.m, 4.44, 0.0)
    with pytest.raises(ValueError, match="positive"):
        validate_parameters(5777.0, -3.0 * u.cm / u.s**2, 0.0)


def test_a_plain_dex_logg_is_the_log_as_for_logt_logz_and_logl(default_generator):
    """A table whose columns all carry the unit 'dex' (a FITS TUNIT): logt, logz and logl were read as the
    log, logg was refused ("got unit dex") in the generators, the SSP backend and the pystellibs plugin. It is
    now the log there too; another unit is still refused, naming what is allowed."""
    from astropy.table import Table

    from smnet_sps.backend import StellarLibraryBackend
    from smnet_sps.plugins.pystellibs_backend import SMNetStellib
    t = Table({"logt": [3.7614], "logg": [4.44], "logz": [0.0], "logl": [0.0]})
    for c in t.colnames:
        t[c].unit = u.dex
    assert validate_parameters(5777.0, 4.44 * u.dex, 0.0)[1].tolist() == [4.44]
    ref = default_generator.surface_flux(5777.0, 4.44, 0.0)[0]
    np.testing.assert_array_equal(default_generator.surface_flux(5777.0, t["logg"], t["logz"])[0], ref)
    be = StellarLibraryBackend(default_generator)
    got = be.point_spectra(logt=t["logt"], logg=t["logg"], logz=t["logz"], logl=t["logl"]).llam
    np.testing.assert_array_equal(got, be.point_spectra(logt=3.7614, logg=4.44, logz=0.0, logl=0.0).llam)
    assert SMNetStellib(default_generator).get_radius(t["logl"], t["logt"]) > 0
    lib = SMNetStellib(default_generator, zsun=0.02)
    spec = lib.generate_stellar_spectrum(t["logt"][0] * u.dex, t["logg"][0] * u.dex, 0.0, 0.02)
    np.testing.assert_array_equal(spec, lib.generate_stellar_spectrum(3.7614, 4.44, 0.0, 0.02))
    allowed = r"logg must be .* u\.dex or u\.dex\(u\.cm / u\.s\*\*2\) quantity .*got unit mag"
    with pytest.raises(ValueError, match=allowed):
        validate_parameters(5777.0, 4.44 * u.mag, 0.0)


def test_inside_domain_outside_coverage_still_answered_with_a_flag(blackbody):
    from smnet_sps.generator import BlackbodyGenerator
    narrow = BlackbodyGenerator(teff_range=(1000.0, 1e5))
    with pytest.warns(CoverageWarning):
        flux, inside = narrow.surface_flux([5000.0, 600.0, 9e5], 4.0, 0.0)
    assert inside.tolist() == [True, False, False] and np.isfinite(flux).all() and (flux.max(1) > 0).all()
    with pytest.raises(ValueError, match="library"):
        blackbody.surface_flux(5000.0, 4.0, 0.0, library="ck04")
    with pytest.raises(ValueError, match="batch_size"):
        blackbody.surface_flux(5000.0, 4.0, 0.0, batch_size=True)


def test_no_points_give_an_empty_result(blackbody):
    flux, inside = blackbody.surface_flux([], 4.0, 0.0)
    assert flux.shape == (0, blackbody.wavelength.size) and inside.shape == (0,)


def test_coverage_warning_points_at_the_callers_line(default_generator):
    """Through surface_flux or spectra the warning was reported at a line inside generator.py; it points at
    the user's call whichever public method the call went through."""
    import warnings
    gen = default_generator
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gen.surface_flux(1000.0, 4.0, 0.0)
        gen.spectra(1000.0, 4.0, 0.0)
        list(gen.stream(1000.0, 4.0, 0.0))
    coverage = [w for w in caught if issubclass(w.category, CoverageWarning)]
    assert len(coverage) == 3 and all(w.filename == __file__ for w in coverage)


@pytest.mark.parametrize("out_dtype", [np.int32, np.float16, "float16", np.complex128, "bfloat16", "no-such"])
def test_out_dtype_must_hold_the_fluxes(blackbody, out_dtype):
    """out_dtype was taken as given: np.int32 returned integers (every tail pixel 0), float16 inf pixels
    (a 190 kK star's surface flux peaks at 3e14 erg s^-1 cm^-2 A^-1, float16 holds 65504). Now float32 and
    float64 only, refused up front in stream and surface_flux like dtype= is."""
    for call in (blackbody.surface_flux, blackbody.stream):
        with pytest.raises(ValueError, match=r"unsupported out_dtype .*; allowed: float32, float64"):
            call([5777.0, 190000.0], 4.0, 0.0, out_dtype=out_dtype)
    for ok in (np.float32, "float64", None):
        flux, _ = blackbody.surface_flux([5777.0, 190000.0], 4.0, 0.0, out_dtype=ok)
        assert np.isfinite(flux).all() and flux.max() > 1e14 and flux.dtype == np.dtype(ok or np.float64)


def test_switches_are_true_or_false(default_generator, blackbody):
    """strict, progress and as_tensor were taken by truth value: strict="False" refused every point
    outside coverage ('1 of 1 point(s) lie outside ...'), as_tensor="False" returned a torch tensor,
    progress="no" drew a bar. Now each is True / False (numpy's too) or a ValueError naming it (progress
    also None: a bar on a terminal only, tests/test_progress.py); the backend's use_cache and progress the
    same (use_cache="False" used the cache)."""
    from smnet_sps.backend import StellarLibraryBackend
    for gen in (default_generator, blackbody):
        for name in ("strict", "progress", "as_tensor"):
            allowed = "True, False or None" if name == "progress" else "True or False;"
            for bad in ("False", "no", 0) + ((None,) if name != "progress" else ()):
                with pytest.raises(ValueError, match=rf"{name} is a switch: {allowed}.* got"):
                    gen.surface_flux(5777.0, 4.44, 0.0, **{name: bad})
        flux, inside = gen.surface_flux(5777.0, 4.44, 0.0, strict=np.False_, as_tensor=False)
        assert isinstance(flux, np.ndarray) and inside.tolist() == [True]
    be = StellarLibraryBackend(blackbody)
    with pytest.raises(ValueError, match="use_cache is a switch"):
        be.point_spectra(teff=5777.0, logg=4.44, logz=0.0, logl=0.0, use_cache="False")
    assert be.misses == 0                             # refused before any work
    keys = be.point_keys(np.log10(5777.0), 4.44, 0.0)
    for name in ("use_cache", "progress"):
        with pytest.raises(ValueError, match=f"{name} is a switch"):
            be.weighted_sum(keys, [1.0], **{name: "no"})
    flux, covered, _, _ = be.weighted_sum(keys, [1.0], use_cache=None, progress=False)
    assert covered.tolist() == [1.0]


def test_parameter_box_contains_takes_parameters_as_the_generators_do(blackbody):
    """ParameterBox.contains took np.asarray of its arguments: a Teff of 5.777 kK (or a table column in kK)
    was 5.777 K, outside every box, while the generator computed the same star as inside; a log g given as
    an acceleration Quantity was its linear value. They are now converted as validate_parameters converts
    them, so contains() agrees with the generator's own coverage flag."""
    from astropy.table import Table

    box = blackbody.box
    t = Table({"teff": [5.777, 3.0]}, units={"teff": u.kK})
    for teff in (np.array([5777.0, 3000.0]), [5.777, 3.0] * u.kK, t["teff"], [5503.85, 2726.85] * u.deg_C):
        np.testing.assert_array_equal(box.contains(teff, 4.44, 0.0),
                                      blackbody.surface_flux(teff, 4.44, 0.0)[1], err_msg=str(teff))
        assert box.contains(teff, 4.44, 0.0).all(), teff
    from smnet_sps.generator import ParameterBox
    box = ParameterBox(teff=(2000.0, 180000.0), logg=(-1.0, 8.0), logz=(-2.5, 0.5))
    assert box.contains(t["teff"], 4.44, 0.0).all() and not box.contains(1.5 * u.kK, 4.44, 0.0)
    assert box.contains(5777.0, 10**4.44 * u.cm / u.s**2, 0.0 * u.dex)
    assert not box.contains(5777.0, 10**9 * u.cm / u.s**2, 0.0)          # log g 9: above the box
    assert not box.contains(5777.0, 4.44, 2.0 * u.dex)


def test_a_list_of_quantities_has_one_message_naming_the_right_unit(blackbody):
    """The generator said a list of Quantities "loses their units" with the hint "np.array([...]) * u.dex"
    for every parameter (teff=[5000 K] too), while sfh wrote its own text naming the unit it expects. Now one
    helper: the caller's name, the unit it expects (sfh) or else the list's own unit (teff -> K)."""
    from smnet_sps.sfh import _in_unit

    with pytest.raises(ValueError) as teff:
        blackbody.surface_flux([5000.0 * u.K], 4.4, 0.0)
    with pytest.raises(ValueError) as logz:
        blackbody.surface_flux(5000.0, 4.4, [u.Dex(-0.5)])
    with pytest.raises(ValueError) as times:
        _in_unit("times", [1 * u.Myr, 2 * u.Myr], u.Gyr)
    text = ("{}: a list of Quantities loses their units; give one array Quantity (e.g. np.array([...]) * "
            "u.Unit('{}')) or plain numbers")
    assert str(teff.value) == text.format("teff", "K")
    assert str(logz.value) == text.format("logz", "dex")
    assert str(times.value) == text.format("times", "Gyr") + " in Gyr"
    # the array Quantity the hint suggests gives the answer
    np.testing.assert_array_equal(blackbody.surface_flux(np.array([5000.0]) * u.K, 4.4, 0.0)[0],
                                  blackbody.surface_flux(5000.0, 4.4, 0.0)[0])
