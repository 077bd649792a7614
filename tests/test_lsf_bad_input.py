"""smnet_sps.lsf refuses widths it cannot use: NaN, negative, or a kernel wider than the spectrum."""
import numpy as np
import pytest
from astropy import units as u

from smnet_sps import lsf

W = np.linspace(4000.0, 5000.0, 1001)            # 1 A pixels, n = 1001
F = np.ones_like(W)


@pytest.mark.parametrize("fwhm_in, fwhm_out, match", [
    (np.nan, 20.0, r"fwhm_in must be finite and >= 0 \[Angstrom\]; got nan"),
    (2.5, np.inf, r"fwhm_out must be finite and >= 0 \[Angstrom\]; got inf"),
    (-2.5, -1.0, r"fwhm_in must be finite and >= 0 \[Angstrom\]; got -2.5"),
    (0.0, np.where(W > 4500, -1.0, 3.0),
     r"fwhm_out must be finite and >= 0 \[Angstrom\]; got -1.0 at 4501 A"),
    (2.5, np.full(5, 20.0), r"fwhm_out must be a number or an array of 1001 numbers .* got shape \(5,\)"),
])
def test_degrade_refuses_non_finite_negative_or_misshaped_widths(fwhm_in, fwhm_out, match):
    with pytest.raises(ValueError, match=match):
        lsf.degrade_to_fwhm(W, F, fwhm_in, fwhm_out)


@pytest.mark.parametrize("fwhm_out", [1e6, 2000.0])
def test_degrade_refuses_a_kernel_wider_than_the_spectrum(fwhm_out):
    """sigma of the kernel <= n/4 pixels: refused at once (1e6 A used to ask for 25 GiB; 2000 A ran)."""
    with pytest.raises(ValueError, match=r"fwhm_out = .* wider than the spectrum can hold: sigma must be <= "
                                         r"n / 4 = 250.25 pixels .* fwhm_out <= 589.299 A there"):
        lsf.degrade_to_fwhm(W, F, 2.5, fwhm_out)


def test_degrade_keeps_valid_uses():
    # right at the limit, fwhm_in = 0 (a velocity dispersion alone), zero widths, Quantities
    limit = np.hypot(2.5, W.size / 4 * lsf.FWHM_PER_SIGMA)
    assert np.allclose(lsf.degrade_to_fwhm(W, F, 2.5, 0.999 * limit), 1.0)
    assert np.allclose(lsf.degrade_to_fwhm(W, F, 0.0, 20.0), 1.0)
    assert np.array_equal(lsf.degrade_to_fwhm(W, F, 0.0, 0.0), F)
    g = lsf.degrade_to_fwhm(W, np.sin(W / 7), 2.5 * u.AA, 0.3 * u.nm)
    assert np.allclose(g, lsf.degrade_to_fwhm(W, np.sin(W / 7), 2.5, 3.0))


def test_to_gaussian_lsf_shares_the_width_check():
    wave = np.arange(3000.0, 9000.0, 20.0)
    with pytest.raises(ValueError, match=r"fwhm must be finite and >= 0 \[Angstrom\]; got -25.0"):
        lsf.to_gaussian_lsf(wave, np.ones(wave.size), -25.0, 30.0)
    with pytest.raises(ValueError, match=r"fwhm must be a number or an array of 300 numbers"):
        lsf.to_gaussian_lsf(wave, np.ones(wave.size), np.full(7, 25.0), 30.0)


def test_a_width_in_frequency_is_refused_not_read_as_a_wavelength():
    """1e8 GHz converted with the spectral equivalency is 30 A: a frequency is not a line width in A."""
    with pytest.raises(u.UnitConversionError):
        lsf.degrade_to_fwhm(W, F, 0.0, 1e8 * u.GHz)
    with pytest.raises(u.UnitConversionError):
        lsf.to_gaussian_lsf(W, F, 1e8 * u.GHz, 60.0)


def test_a_width_given_as_a_table_column_is_read_in_its_unit():
    """An LSF FWHM column of an astropy Table (a FITS TUNIT 'nm', one value per pixel) lost its unit: 0.2 nm
    was convolved as 0.2 A, and fwhm_out 0.5 nm beside fwhm_in 2 A was refused as '0.5 < 2 A'. A column with
    a unit is now its Quantity; one without is Angstrom, as plain numbers are."""
    from astropy.table import Table

    flux = 1.0 + 0.5 * np.sin(W / 3.0)
    t = Table({"nm": np.full(W.size, 0.2), "out_nm": np.full(W.size, 0.5), "aa": np.full(W.size, 2.0)},
              units={"nm": u.nm, "out_nm": u.nm})
    expected = lsf.degrade_to_fwhm(W, flux, 2.0, 5.0)
    np.testing.assert_allclose(lsf.degrade_to_fwhm(W, flux, t["nm"], 5.0), expected, rtol=1e-12)
    np.testing.assert_allclose(lsf.degrade_to_fwhm(W, flux, t["aa"], t["out_nm"]), expected, rtol=1e-12)


def test_to_gaussian_lsf_refuses_non_finite_flux():
    """One NaN pixel anywhere made every output pixel redder of it NaN, even outside lam_range (911 of 911
    pixels for a NaN at 3100 A and lam_range 5000-6000 A): the edges' flux steps are summed along the
    spectrum. NaN / inf flux is refused, naming how many values and the first one's place."""
    wg = np.arange(3000.0, 8000.0, 20.0)
    flux = np.ones((2, wg.size))
    _, good, _ = lsf.to_gaussian_lsf(wg, flux, 30.0, 60.0, lam_range=(5000, 6000))
    assert good.shape == (2, 911) and np.allclose(good, 1.0, rtol=0, atol=1e-12)
    flux[1, 5] = np.nan
    with pytest.raises(ValueError, match=r"flux must be finite: 1 of 500 values are NaN or inf, the first "
                                         r"at 3100 A \(pixel 5 of spectrum \(1,\)\)"):
        lsf.to_gaussian_lsf(wg, flux, 30.0, 60.0, lam_range=(5000, 6000))
    one = np.ones(wg.size)
    one[[100, 200]] = np.inf
    with pytest.raises(ValueError, match=r"2 of 250 values are NaN or inf, the first at 5000 A \(pixel 100\)"
                                         r"; replace or cut them"):
        lsf.to_gaussian_lsf(wg, one, 30.0, 60.0)


def test_flux_quantities_keep_their_unit_and_lam_range_takes_quantities():
    """to_gaussian_lsf promised flux_out 'same unit as flux' and degrade_to_fwhm took any unit, but both
    returned bare numbers for a Quantity (np.asarray dropped Jy); a lam_range in nm stopped in float()'s
    TypeError. Now the unit comes back with the same numbers, and lam_range (400 nm, 600 nm) is (4000 A,
    6000 A)."""
    import astropy.units as u
    from smnet_sps.lsf import degrade_to_fwhm, to_gaussian_lsf
    from smnet_sps.wavegrid import default_wavelength

    wave = default_wavelength().value
    flux = np.random.default_rng(1).random((2, wave.size)) + 1.0
    lam, plain, fwhm = to_gaussian_lsf(wave, flux, 40.0, 50.0, lam_range=(4000.0, 6000.0))
    lam_q, with_unit, fwhm_q = to_gaussian_lsf(wave * u.AA, flux * u.Jy, 40.0, 50.0,
                                               lam_range=(400.0 * u.nm, 600.0 * u.nm))
    assert isinstance(with_unit, u.Quantity) and with_unit.unit == u.Jy
    np.testing.assert_array_equal(with_unit.value, plain)
    np.testing.assert_array_equal(lam_q, lam)
    with pytest.raises(ValueError, match="lam_range must be wavelengths"):
        to_gaussian_lsf(wave, flux, 40.0, 50.0, lam_range=(4.0 * u.kg, 6.0 * u.kg))
    log_lam = np.exp(np.arange(np.log(4000.0), np.log(6000.0), 1e-4))
    spec = np.random.default_rng(2).random(log_lam.size)
    flam = u.erg / u.s / u.cm ** 2 / u.AA
    out = degrade_to_fwhm(log_lam, spec * flam, 2.5, 5.0)
    assert isinstance(out, u.Quantity) and out.unit == flam
    np.testing.assert_array_equal(out.value, degrade_to_fwhm(log_lam, spec, 2.5, 5.0))
