"""magnitudes() refuses bad spectra, filters and units with a ValueError naming the problem; any positive
finite flux gives a finite magnitude (no overflow, no silent +inf)."""
import warnings

import astropy.units as u
import numpy as np
import pytest

from smnet_sps import magnitudes
from smnet_sps.constants import FLAM_UNIT
from smnet_sps.generator import planck_surface_flux

W = np.arange(3000.0, 10000.0, 10.0)
F = planck_surface_flux(W, [6000.0])[0]


def _mag(flux, filters="sdss2010-r", **kw):
    return np.asarray(magnitudes((W * u.AA, flux), filters, **kw).columns[0])


@pytest.mark.parametrize("flux, match", [
    (np.full(W.size, np.nan) * FLAM_UNIT, "non-finite flux"),
    (np.full(W.size, np.inf) * FLAM_UNIT, "non-finite flux"),
    (-F * FLAM_UNIT, "negative flux value.*sdss2010-r.*clip"),
    (np.zeros(W.size) * FLAM_UNIT, "no flux in filter 'sdss2010-r'.*inf"),
    ((F + 1j) * FLAM_UNIT, "real numbers.*complex"),
    (F * u.K, "flux unit K"),
    (F * u.m, "flux unit m"),
    (F * u.s, "flux unit s"),
    (F * u.dimensionless_unscaled, "neither a flux density"),
    (np.full(W.size, 1e308) * u.L_sun / u.AA, "flux too large"),
])
def test_bad_spectrum_is_a_named_error(flux, match):
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # and no RuntimeWarning on the way
        with pytest.raises(ValueError, match=match):
            _mag(flux)


def test_negative_flux_outside_every_filter_is_harmless():
    f = F.copy()
    f[W < 4000] = -1.0                          # far below sdss r
    assert np.isfinite(_mag(f * FLAM_UNIT)).all()
    np.testing.assert_allclose(_mag(f * FLAM_UNIT), _mag(F * FLAM_UNIT), atol=1e-12)


@pytest.mark.parametrize("scale", [1e-300, 1e-310 / F.max(), 1e300, 1e308 / F.max()])
def test_extreme_but_valid_flux_gives_finite_exact_magnitudes(scale):
    """Magnitudes are exact in log space: scaling the flux by s shifts every magnitude by -2.5 log10 s."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for system in ("AB", "ST", "Vega"):
            ref = _mag(F * FLAM_UNIT, ["sdss2010-g", "sdss2010-r"], system=system)
            got = _mag(F * scale * FLAM_UNIT, ["sdss2010-g", "sdss2010-r"], system=system)
            assert np.isfinite(got).all()
            np.testing.assert_allclose(got, ref - 2.5 * np.log10(scale),
                                       atol=1e-6 if scale > 1e-300 else 1e-3)


@pytest.mark.parametrize("filters", [None, 3, 1.5, True, b"sdss2010-r", {"a": 1}, [], "", "nonexistent-x",
                                     ["sdss2010-r", None], "sdss2010-R"])
def test_bad_filters_are_named_errors(filters):
    with pytest.raises(ValueError, match="filter"):
        _mag(F * FLAM_UNIT, filters)


@pytest.mark.parametrize("wave", [W * u.K, W * u.s, W, np.r_[W[:-1], np.inf] * u.AA,
                                  W[::-1].copy() * u.AA * 0])
def test_bad_wavelengths_are_named_errors(wave):
    with pytest.raises(ValueError):
        magnitudes((wave, F * FLAM_UNIT), "sdss2010-r")


def test_zero_flux_with_extrapolate_is_a_warned_inf():
    """The one documented non-finite result: extrapolate=True asks for zero-extension, so an empty band is
    +inf (a limit), with a warning."""
    with pytest.warns(UserWarning, match=r"\+inf"):
        assert np.isinf(_mag(np.zeros(W.size) * FLAM_UNIT, extrapolate=True)).all()


@pytest.mark.parametrize("distance", [1e200 * u.Mpc, 1e308 * u.Mpc, "far", 5.0, 1 * u.s, -1 * u.pc])
def test_luminosity_at_absurd_distance_is_a_named_error(distance):
    """1e200 Mpc used to raise OverflowError (d ** 2 of a Python float), 'far' a TypeError."""
    with pytest.raises(ValueError):
        _mag(F * u.L_sun / u.AA, distance=distance)


@pytest.mark.parametrize("ages", ["old", None, [1, "a"], 1 * u.m])
def test_ssp_photometry_bad_ages_are_named_errors(ages):
    from smnet_sps.photometry import ssp_photometry
    with pytest.raises(ValueError, match="ages"):
        ssp_photometry(ages, (W * u.AA, F * u.L_sun / u.AA), "sdss2010-r")


def test_ssp_photometry_checks_mstar_and_log_lbol():
    """mstar in kg was read as M_sun, a negative or NaN mass or log_lbol gave a negative or NaN M/L and M_bol,
    and a wrong length failed with numpy's broadcast message."""
    from smnet_sps.constants import MBOL_SUN
    from smnet_sps.photometry import ssp_photometry
    spectra = (W * u.AA, np.vstack([F, 2 * F]) * u.L_sun / u.AA)
    ages = [1, 2] * u.Gyr

    def table(**kw):
        return ssp_photometry(ages, spectra, "sdss2010-r", **kw)

    per_msun = np.asarray(table(mstar=[1.0, 1.0])["ML_sdss2010-r"])
    in_kg = np.asarray(table(mstar=[1.0, 2.0] * u.kg)["ML_sdss2010-r"])
    np.testing.assert_allclose(in_kg, per_msun * [1.0, 2.0] * (1 * u.kg).to_value(u.M_sun), rtol=1e-12)
    np.testing.assert_allclose(table(mstar=[0.5, 0.6] * u.M_sun)["ML_sdss2010-r"],
                               table(mstar=[0.5, 0.6])["ML_sdss2010-r"], rtol=1e-12)
    np.testing.assert_allclose(table(mstar=0.5)["ML_sdss2010-r"], 0.5 * per_msun, rtol=1e-12)
    np.testing.assert_allclose(table(log_lbol=[0.0, 1.0] * u.dex(u.L_sun))["M_bol"],
                               MBOL_SUN - 2.5 * np.array([0.0, 1.0]), atol=1e-12)
    # a table column with a unit, as an SSP table gives it (Column has no to_value: an AttributeError)
    from astropy.table import Column
    for column in (Column([0.0, 1.0], unit=u.dex(u.L_sun)), Column([1.0, 10.0], unit=u.L_sun)):
        np.testing.assert_allclose(table(log_lbol=column)["M_bol"], MBOL_SUN - 2.5 * np.array([0.0, 1.0]),
                                   atol=1e-12)
    for kw, match in ((dict(mstar=[-1.0, 1.0]), r"mstar must be finite and > 0"),
                      (dict(mstar=[1.0, np.nan]), r"mstar must be finite and > 0"),
                      (dict(mstar=[1.0, 1.0] * u.s), r"mstar must be a mass.*unit s"),
                      (dict(mstar=[1.0, 2.0, 3.0]), r"mstar needs one value per age \(2\).*shape \(3,\)"),
                      (dict(log_lbol=[0.0, np.nan]), r"log_lbol must be finite"),
                      (dict(log_lbol=[0.0, 1.0, 2.0]), r"log_lbol needs one value per age \(2\)"),
                      (dict(log_lbol=[0.0, 1.0] * u.kg), r"log_lbol must be log10 L_bol.*unit kg")):
        with pytest.raises(ValueError, match=match):
            table(**kw)
    # the same rule for values read from the spectra's metadata
    from specutils import Spectrum
    spec = Spectrum(flux=spectra[1], spectral_axis=spectra[0], meta={"mstar": [0.6, -0.6]})
    with pytest.raises(ValueError, match=r"spectra.meta\['mstar'\] must be finite and > 0"):
        ssp_photometry(ages, spec, "sdss2010-r")


def test_a_filter_without_a_finite_wavelength_set_is_a_named_error():
    """SpectralElement(Const1D) has no waveset: an AttributeError ('NoneType' ... 'to_value') from inside
    bandpass_weights; a curve with no throughput an IndexError. Both ValueErrors now; Box1D and Gaussian1D
    elements keep working (ST 16.40 for a flat f_lambda spectrum)."""
    from astropy.modeling.models import Const1D
    from synphot import SpectralElement
    from synphot.models import Box1D, Empirical1D, Gaussian1D
    from smnet_sps.photometry import bandpass_weights
    w = np.linspace(1000.0, 20000.0, 5000)
    flat = np.full(w.size, 1e-15) * FLAM_UNIT
    const = SpectralElement(Const1D, amplitude=1)
    with pytest.raises(ValueError, match="no finite wavelength set"):
        magnitudes((w * u.AA, flat), [const])
    with pytest.raises(ValueError, match="no finite wavelength set"):
        bandpass_weights(w * u.AA, const)
    dark = SpectralElement(Empirical1D, points=[5000.0, 6000.0] * u.AA, lookup_table=[0.0, 0.0])
    with pytest.raises(ValueError, match="throughput must be > 0 somewhere"):
        magnitudes((w * u.AA, flat), [dark])
    for bp in (SpectralElement(Box1D, amplitude=1, x_0=5500, width=100),
               SpectralElement(Gaussian1D, amplitude=1, mean=5500, stddev=100)):
        assert magnitudes((w * u.AA, flat), [bp], system="ST")[0][0] == pytest.approx(16.40, abs=1e-4)


def test_bandpass_weights_refuses_a_grid_it_cannot_follow():
    """bandpass_weights (public) took any grid: a decreasing one was refused as "9998-3000 A" not covering
    the filter, a NaN got synphot's UnsortedWavelength from deep inside, a frequency grid a bare
    UnitConversionError. Each is now a ValueError saying what the grid must be; the grid magnitudes() uses
    still works."""
    from smnet_sps.photometry import bandpass_weights
    for grid, match in [(W[::-1] * u.AA, "strictly increasing.*9990 ... 3000 A"),
                        (np.r_[W[:10], np.nan, W[11:]], "strictly increasing"),
                        (np.r_[W[:100], W[99:]], "strictly increasing"),
                        ((W * u.AA).to(u.THz, u.spectral()), "wavelength grid.*THz")]:
        with pytest.raises(ValueError, match=match):
            bandpass_weights(grid, "sdss2010-r")
    bw = bandpass_weights(W * u.AA, "sdss2010-r")
    assert np.ones(W.size) @ bw.v / bw.norm == pytest.approx(1.0, rel=1e-12)


def test_a_spectral_element_follows_the_negative_throughput_rule_of_files():
    """A SpectralElement built with keep_neg=True and a negative lobe (-0.5 over 5000-5300 A) was integrated
    as it was: a 6000 K blackbody 0.066 mag brighter in AB than through the same curve clipped at zero, and
    a Gaussian of negative amplitude was "zero everywhere". The rule of filter files now holds: negative
    noise down to -1 % of the peak is zero, anything deeper a ValueError."""
    from synphot import SpectralElement
    from synphot.models import Empirical1D, Gaussian1D
    wb = np.linspace(5000.0, 6000.0, 101)
    t = np.exp(-0.5 * ((wb - 5500.0) / 150.0) ** 2)
    data = (W * u.AA, F * FLAM_UNIT)
    lobe = t.copy()
    lobe[:30] -= 0.5
    bp = SpectralElement(Empirical1D, points=wb * u.AA, lookup_table=lobe, keep_neg=True,
                         meta={"name": "lobe"})
    assert bp(wb).value.min() < -0.4
    with pytest.raises(ValueError, match=r"'lobe': 30 throughput value.* below -0.01 x the peak.*keep_neg"):
        magnitudes(data, [bp])
    with pytest.raises(ValueError, match="throughput must be > 0 somewhere.*max -"):
        magnitudes(data, [SpectralElement(Gaussian1D, amplitude=-1, mean=5500, stddev=100)])
    noise = t.copy()
    noise[:30] = -1e-3
    clean = np.where(noise > 0, noise, 0.0)
    noisy = SpectralElement(Empirical1D, points=wb * u.AA, lookup_table=noise, keep_neg=True)
    ref = SpectralElement(Empirical1D, points=wb * u.AA, lookup_table=clean)
    for system in ("AB", "Vega"):
        got = magnitudes(data, [noisy, ref], system=system)
        assert got.columns[0][0] == pytest.approx(got.columns[1][0], abs=1e-12)
        assert magnitudes(data, [noisy], system=system).columns[0][0] == got.columns[0][0]     # cached


@pytest.mark.parametrize("switch", ["False", "True", 0, 1, None, 1.0])
def test_extrapolate_must_be_true_or_false(switch):
    """extrapolate="False" turned extrapolation on (bool("False") is True): sdss z beyond a 3000-9000 A
    spectrum came out 15.87 instead of an error. Only True / False (numpy's too) are accepted, as
    StellarPopulation refuses text for its switches."""
    from smnet_sps.photometry import bandpass_weights, ssp_photometry
    w = np.linspace(3000.0, 9000.0, 601)
    flat = np.full(w.size, 1e-15) * FLAM_UNIT
    with pytest.raises(ValueError, match=rf"extrapolate is a switch: True or False; got {switch!r}"):
        magnitudes((w * u.AA, flat), "sdss2010-z", extrapolate=switch)
    with pytest.raises(ValueError, match="extrapolate is a switch"):
        bandpass_weights(w * u.AA, "sdss2010-z", extrapolate=switch)
    with pytest.raises(ValueError, match="extrapolate is a switch"):
        ssp_photometry([1e9] * u.yr, (w * u.AA, np.ones(w.size) * u.L_sun / u.AA), "sdss2010-r",
                       extrapolate=switch)


def test_extrapolate_takes_numpy_booleans():
    w = np.linspace(3000.0, 9000.0, 601)
    flat = np.full(w.size, 1e-15) * FLAM_UNIT
    with pytest.raises(ValueError, match="reaches outside the spectrum"):
        magnitudes((w * u.AA, flat), "sdss2010-z", extrapolate=np.False_)
    on = magnitudes((w * u.AA, flat), "sdss2010-z", extrapolate=np.True_)
    assert on[0][0] == magnitudes((w * u.AA, flat), "sdss2010-z", extrapolate=True)[0][0]
    assert on.meta["extrapolate"] is True


def test_ssp_magnitudes_reads_ages_as_ssp_grid_does(blackbody):
    """ssp_magnitudes ran u.Quantity(ages, u.yr) before ssp_grid's checks: a masked age was computed as if
    valid (ssp_grid refuses it) and ["1 Gyr", "5 Gyr"] (ssp_grid takes it) ended in astropy's TypeError."""
    from smnet_sps.photometry import ssp_magnitudes
    with pytest.raises(ValueError, match=r"age is a masked array with 1 masked value.*valid ages: "):
        ssp_magnitudes(np.ma.masked_array([1e9, 5e9], mask=[False, True]), 0.0152, ["sdss2010-r"],
                       generator=blackbody)
    text = ssp_magnitudes(["5 Gyr", "1 Gyr", "5 Gyr"], 0.0152, ["sdss2010-r"], generator=blackbody)
    quantity = ssp_magnitudes([5, 1, 5] * u.Gyr, 0.0152, ["sdss2010-r"], generator=blackbody)
    np.testing.assert_allclose(text["age"], [5, 1, 5])
    np.testing.assert_array_equal(text["M_sdss2010-r"], quantity["M_sdss2010-r"])
    # ages=None: every tabulated age, as ssp_grid (u.Quantity(None, u.yr) was a TypeError)
    from smnet_sps.isochrones import load_isochrones
    every = ssp_magnitudes(None, 0.0152, ["sdss2010-r"], generator=blackbody)
    np.testing.assert_allclose(np.log10(every["age"]) + 9, load_isochrones("parsec").log_age, rtol=1e-12)


def test_a_float32_luminosity_spectrum_is_converted_in_float64(default_generator):
    """A float32 luminosity spectrum was divided by 4 pi d^2 in float32: faint pixels underflowed, and the
    10 Gyr solar SSP per M_sun formed at z = 1 had 'no flux in filter galex-fuv' (100.15 mag in float64)."""
    from smnet_sps import ssp_spectrum
    ssp = ssp_spectrum(10 * u.Gyr, Z=0.0152, generator=default_generator)
    wave, lum = ssp.spectral_axis.value * u.AA, ssp.flux.value
    filters = ["galex-fuv", "galex-nuv", "sdss2010-r"]
    ref = magnitudes((wave, lum * u.L_sun / u.AA), filters, redshift=1.0)
    assert ref["galex-fuv"][0] == pytest.approx(100.15, abs=0.01)
    single = magnitudes((wave, lum.astype(np.float32) * u.L_sun / u.AA), filters, redshift=1.0)
    for name in filters:              # only the float32 rounding of the input (6e-8) remains
        assert single[name][0] == pytest.approx(ref[name][0], abs=1e-6), name


def test_an_empty_filter_name_in_a_comma_list_is_refused_by_position(capsys):
    """`mags --filters sdss2010-g,,sdss2010-r` (and resolve_filters('a,b,')) skipped the empty name
    silently: a table one column short of the list typed. Now refused, naming the empty position."""
    from smnet_sps.cli import main
    from smnet_sps.filters import resolve_filters

    assert [n for n, _ in resolve_filters("sdss2010-g, sdss2010-r")] == ["sdss2010-g", "sdss2010-r"]
    with pytest.raises(ValueError, match=r"empty name at position 3 of 3"):
        resolve_filters("sdss2010-g,sdss2010-r,")
    assert main(["mags", "--Z", "0.0152", "--filters", "sdss2010-g,,sdss2010-r", "--model", "blackbody",
                 "--ages", "1Gyr"]) == 1
    err = capsys.readouterr().err
    assert "--filters 'sdss2010-g,,sdss2010-r' has an empty name at position 2 of 3" in err, err


def test_masked_radii_distances_ages_and_ssp_quantities_are_refused():
    """u.Quantity and np.asarray drop a mask: a star catalogue's masked radius (a MaskedColumn from a FITS
    table with a null entry) was used as if valid (9.11 mag from the value under the mask), as were
    ssp_photometry's masked ages, log_lbol and mstar. Each is now refused, naming the argument; an unmasked
    MaskedColumn is used as it is."""
    from astropy.table import MaskedColumn
    from astropy.utils.masked import Masked

    from smnet_sps.photometry import ssp_photometry
    two = (W * u.AA, np.vstack([F, F]) * FLAM_UNIT)
    radius = MaskedColumn([1.0, 0.7], mask=[False, True], unit="R_sun")
    with pytest.raises(ValueError, match="radius is a masked array with 1 masked value"):
        magnitudes(two, "sdss2010-r", radius=radius, distance=10 * u.pc)
    with pytest.raises(ValueError, match="distance is a masked array with 1 masked value"):
        magnitudes(two, "sdss2010-r", radius=1 * u.R_sun, distance=Masked([10.0, 20.0] * u.pc, mask=[0, 1]))
    radius.mask[:] = False
    np.testing.assert_array_equal(
        magnitudes(two, "sdss2010-r", radius=radius, distance=10 * u.pc)["sdss2010-r"],
        magnitudes(two, "sdss2010-r", radius=[1.0, 0.7] * u.R_sun, distance=10 * u.pc)["sdss2010-r"])
    lum = (W * u.AA, np.vstack([F, F]) * 1e-30 * u.L_sun / u.AA)
    ages, hidden = [1e9, 1e10], [False, True]
    for kwargs, name in (({"ages": MaskedColumn(ages, mask=hidden)}, "ages"),
                         ({"ages": ages, "log_lbol": np.ma.array([0.0, 0.0], mask=hidden)}, "log_lbol"),
                         ({"ages": ages, "log_lbol": 0.0, "mstar": MaskedColumn([0.6, 0.5], mask=hidden)},
                          "mstar")):
        with pytest.raises(ValueError, match=f"{name} is a masked array with 1 masked value"):
            ssp_photometry(spectra=lum, filters="sdss2010-r", **kwargs)


def test_a_spectrum_given_as_table_columns_with_units(tmp_path):
    """magnitudes((wave, flux)) refused an astropy Table's columns ('wavelength and flux must be astropy
    Quantities') although their units say what they are: a FITS spectrum read with Table.read (big-endian,
    TUNIT nm and Jy) needed .quantity on each. They are now the Quantities they stand for, a MaskedColumn's
    masked pixels NaN as a Masked flux's are; a column without a unit is still refused."""
    from astropy.io import fits
    from astropy.table import Table

    f_jy = (F * FLAM_UNIT).to(u.Jy, equivalencies=u.spectral_density(W * u.AA))
    path = tmp_path / "spec.fits"
    fits.BinTableHDU.from_columns([fits.Column(name="wave", format="D", array=W / 10, unit="nm"),
                                   fits.Column(name="flux", format="D", array=f_jy.value, unit="Jy"),
                                   fits.Column(name="plain", format="D", array=W)]).writeto(path)
    t = Table.read(path)
    assert t["flux"].dtype.byteorder == ">"
    filters = ["sdss2010-g", "sdss2010-r"]
    expected = magnitudes((W * u.AA, F * FLAM_UNIT), filters)
    got = magnitudes((t["wave"], t["flux"]), filters)
    for name in filters:
        assert got[name][0] == pytest.approx(expected[name][0], abs=1e-9), name
    masked = Table(t, masked=True)
    masked["flux"].mask[(W > 6000) & (W < 6100)] = True           # inside sdss2010-r only
    with pytest.raises(ValueError, match="sdss2010-r"):
        magnitudes((masked["wave"], masked["flux"]), "sdss2010-r")
    assert magnitudes((masked["wave"], masked["flux"]), "sdss2010-g")["sdss2010-g"][0] == pytest.approx(
        expected["sdss2010-g"][0], abs=1e-9)
    with pytest.raises(ValueError, match="must be astropy Quantities"):
        magnitudes((t["plain"], t["flux"]), filters)
