"""`smnet-sps fit`'s front end, its JSON and the isochrone prior: bad files and settings found by a hunt."""
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest

FIXTURE_MILES = Path(__file__).parent / "fixtures" / "empirical" / "miles_v9.1_fixture_stars.npz"


def _miles_star(miles_id=208):
    """(air wavelengths [A], relative F_lambda) of a MILES fixture star (208: 5117 K, log g 4.54, +0.11)."""
    with np.load(FIXTURE_MILES) as d:
        k = int(np.flatnonzero(d["miles_id"] == miles_id)[0])
        return d["wave"].astype(float), d["flux"][k].astype(float)


@pytest.mark.parametrize("suffix", [".txt", ".csv"])
def test_read_spectrum_refuses_a_negative_error(tmp_path, suffix):
    from astropy.table import Table

    from smnet_sps.fit_cli import read_spectrum

    wave, flux = _miles_star()
    err = 0.01 * flux
    err[::2] *= -1                                  # a sign slip on every other pixel
    path = tmp_path / f"star{suffix}"
    if suffix == ".txt":
        np.savetxt(path, np.column_stack([wave, flux, err]))
    else:
        Table({"wave": wave, "flux": flux, "err": err}).write(path)
    # it was read as ivar 0 at those pixels without a word: half the spectrum dropped
    with pytest.raises(ValueError, match=r"2150 negative error\(s\) \(the first at 3540.5 A") as exc:
        read_spectrum(path)
    assert str(path) in str(exc.value) and ("'err'" in str(exc.value)) == (suffix == ".csv")


def test_read_spectrum_takes_a_zero_or_nan_error_as_no_data(tmp_path):
    from smnet_sps.fit_cli import read_spectrum

    wave, flux = _miles_star()
    err = 0.01 * flux
    err[10], err[20] = 0.0, np.nan
    np.savetxt(tmp_path / "star.txt", np.column_stack([wave, flux, err]))
    w, f, ivar = read_spectrum(tmp_path / "star.txt")
    assert ivar[10] == 0 and ivar[20] == 0
    np.testing.assert_allclose(ivar[:10], 1 / (0.01 * flux[:10]) ** 2)


def test_fit_of_too_scattered_pixels_is_a_value_error(tmp_path, capsys):
    from smnet_sps.cli import main

    wave, flux = _miles_star()
    flux[::2] = np.nan                              # every other pixel without data: 2150 usable of 4300
    np.savetxt(tmp_path / "star.txt", np.column_stack([wave, flux, 0.01 * flux]))
    # no model pixel (~20 A) was 80 % covered by usable data: the fit stopped inside the spectral operator
    # with Python's "max() arg is an empty sequence"
    assert main(["fit", str(tmp_path / "star.txt"), "--medium", "air", "--resolution-fwhm", "2.5"]) == 1
    err = capsys.readouterr().err
    assert "only 0 of the 193 model pixels" in err and "2150 usable of 4300 pixels" in err


def test_fit_json_records_the_prior(tmp_path):
    import json

    from smnet_sps.cli import main

    wave, flux = _miles_star()
    np.savetxt(tmp_path / "star.txt", np.column_stack([wave, flux, 0.01 * flux]))
    assert main(["fit", str(tmp_path / "star.txt"), "--medium", "air", "--resolution-fwhm", "2.5", "--wmin",
                 "5000", "--wmax", "6000", "--degree", "8", "--prior", "parsec",
                 "--out", str(tmp_path / "fit.json")]) == 0
    res = json.loads((tmp_path / "fit.json").read_text())
    # the file said nothing of the prior: a fit with --prior and one without could not be told apart
    assert res["prior"].startswith("IsochronePrior(parsec, kroupa, log age 8-10.1")
    # the flat fit's chi^2_red, >= 1 (S/N 100 against model systematics of a few per cent): the errors'
    # inflation the prior is weighed against
    assert 1.0 < res["chi2_scale"] < 100.0


@pytest.mark.parametrize("kw, name", [
    # NaN compared False in the old checks: every log_prob NaN (logz_width, luminosity_power), or another
    # prior (bandwidth: ln p 0.058 for 0.032 at the Sun), without a word
    (dict(logz_width=np.nan), "logz_width"),
    (dict(luminosity_power=np.nan), "luminosity_power"),
    (dict(bandwidth=(np.nan, 0.15)), "bandwidth"),
    (dict(cell=(np.nan, 0.05)), "cell"),
    (dict(log_age_range=(np.nan, 10.0)), "log_age_range"),
    # stopped in Python or scipy: TypeError, OverflowError, IndexError
    (dict(bandwidth=0.01), "bandwidth"),
    (dict(bandwidth=(np.inf, 0.15)), "bandwidth"),
    (dict(log_age_range=(8.0,)), "log_age_range"),
])
def test_isochrone_prior_refuses_non_finite_or_malformed_settings(kw, name):
    from smnet_sps.stellar_prior import IsochronePrior

    with pytest.raises(ValueError, match=rf"^{name} must be a (pair of finite numbers|finite number)"):
        IsochronePrior(**kw)


@pytest.mark.parametrize("unit, hint", [("A", "FITS reads 'A' as the ampere: write 'Angstrom', e.g. TUNIT "
                                               "'Angstrom' on the wavelength column)"),
                                        ("pix", "no wavelength;"), ("V", "no wavelength;"),
                                        ("C", "no wavelength;")])
def test_read_spectrum_names_a_wavelength_column_in_no_wavelength_unit(tmp_path, unit, hint):
    """The ampere hint is for 'A' only, with a wavelength example (it had a flux unit's, and since c022511
    fired for V and C too: the ampere is among their bases, though no 'A' was written)."""
    from astropy.io import fits

    from smnet_sps.fit_cli import read_spectrum

    wave, flux = _miles_star()
    path = tmp_path / "star.fits"
    fits.BinTableHDU.from_columns([fits.Column(name="WAVE", format="D", array=wave, unit=unit),
                                   fits.Column(name="FLUX", format="D", array=flux)]).writeto(path)
    # astropy's bare "'A' (electrical current) and 'Angstrom' (length) are not convertible" named neither the
    # file nor the column
    with pytest.raises(ValueError, match=rf"star.fits: column 'WAVE' is in {unit}, which is no wavelength") \
            as e:
        read_spectrum(path)
    assert hint in str(e.value) and "allowed: a wavelength, frequency or energy unit" in str(e.value)
    assert ("ampere" in str(e.value)) == (unit == "A") and "erg/s" not in str(e.value)


@pytest.mark.parametrize("kind", ["table", "image"])
def test_read_spectrum_says_fits_reads_a_flux_per_A_as_per_ampere(tmp_path, kind):
    """TUNIT / BUNIT 'erg/s/cm2/A', common in real files, was refused as 'erg / (A s cm2), which is no
    spectral flux density' without saying that FITS's 'A' is the ampere."""
    from astropy.io import fits

    from smnet_sps.fit_cli import read_spectrum

    wave, flux = _miles_star()
    path = tmp_path / "star.fits"
    if kind == "table":
        fits.BinTableHDU.from_columns([fits.Column(name="WAVE", format="D", array=wave, unit="Angstrom"),
                                       fits.Column(name="FLUX", format="D", array=flux,
                                                   unit="erg/s/cm2/A")]).writeto(path)
    else:
        _image(path, flux, CRVAL1=wave[0], CDELT1=0.9, BUNIT="erg/s/cm2/A")
    with pytest.raises(ValueError, match=r"star.fits: column '(FLUX|flux)' is in erg / \(A s cm2\), which is "
                                         r"no spectral flux density \(FITS reads 'A' as the ampere: write "
                                         r"'Angstrom'"):
        read_spectrum(path)
    with pytest.raises(ValueError, match=r"no spectral flux density; allowed"):    # no hint for another unit
        _image(tmp_path / "k.fits", flux, CRVAL1=wave[0], CDELT1=0.9, BUNIT="K")
        read_spectrum(tmp_path / "k.fits")


def test_read_spectrum_reads_a_row_of_arrays_as_eso_phase3_writes_them(tmp_path):
    import astropy.units as u
    from astropy.table import Table

    from smnet_sps.fit_cli import read_spectrum

    wave, flux = _miles_star()
    flat = Table({"WAVE": wave * u.AA, "FLUX": flux, "ERR": 0.01 * flux})
    flat.write(tmp_path / "flat.fits")
    # ESO's Phase 3 layout: one row, each cell an array (plus scalar and other columns); it was refused with
    # "wave and flux must be 1-d arrays; got shapes (1, 4300) and (1, 4300)"
    sdp = Table()
    sdp["WAVE"] = [wave / 10] * u.nm
    sdp["FLUX"], sdp["ERR"] = [flux], [0.01 * flux]
    sdp["QUAL"], sdp["SNR"] = [np.zeros(wave.size, int)], [100.0]
    sdp.write(tmp_path / "sdp.fits")
    for a, b in zip(read_spectrum(tmp_path / "sdp.fits"), read_spectrum(tmp_path / "flat.fits")):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    two = Table({"WAVE": [wave, wave] * u.AA, "FLUX": [flux, flux]})
    two.write(tmp_path / "two.fits")
    with pytest.raises(ValueError, match=r"two.fits: column 'WAVE' holds 2 spectra \(a row of 4300 wave"):
        read_spectrum(tmp_path / "two.fits")


def test_read_spectrum_reverses_a_red_to_blue_file_and_refuses_extra_text_columns(tmp_path):
    """A text file from red to blue was refused as 'wave must be strictly increasing' (no file named); a
    fourth column (e.g. an ivar after the error) was ignored without a word."""
    from smnet_sps.fit_cli import read_spectrum
    wave = np.linspace(4000.0, 6000.0, 50)
    flux = 1.0 + wave / 1e4
    err = 0.01 + 0 * wave
    up, down = tmp_path / "up.txt", tmp_path / "down.txt"
    np.savetxt(up, np.c_[wave, flux, err])
    np.savetxt(down, np.c_[wave, flux, err][::-1])
    for a, b in zip(read_spectrum(up), read_spectrum(down)):
        np.testing.assert_array_equal(a, b)
    mixed = tmp_path / "mixed.txt"
    np.savetxt(mixed, np.c_[wave[[0, 2, 1, 3]], flux[:4]])
    with pytest.raises(ValueError, match="mixed.txt.*increase"):
        read_spectrum(mixed)
    four = tmp_path / "four.txt"
    np.savetxt(four, np.c_[wave, flux, err, 1 / err ** 2])
    with pytest.raises(ValueError, match="four.txt.*has 4"):
        read_spectrum(four)


def test_isochrone_prior_holds_an_infinite_metallicity_at_the_table_edge():
    """An infinite [M/H] gave NaN while an infinite Teff or log g was held at the table's edge."""
    import torch
    from smnet_sps.stellar_prior import IsochronePrior
    prior = IsochronePrior("parsec")
    lp = prior.log_prob([5000.0] * 4, [4.5] * 4, [np.inf, 10.0, -np.inf, -10.0])
    assert np.all(np.isfinite(lp))
    assert lp[0] == lp[1] and lp[2] == lp[3]
    z = torch.tensor([0.0, 0.3], dtype=torch.float64, requires_grad=True)
    out = prior.log_prob(torch.tensor([5000.0, 5000.0], dtype=torch.float64),
                         torch.tensor([4.5, 4.5], dtype=torch.float64), z)
    out.sum().backward()
    assert torch.all(torch.isfinite(z.grad)) and torch.any(z.grad != 0)     # inside: gradients as before


@pytest.mark.parametrize("header, comments", [("wave flux ivar", "# "), ("wave flux ivar", ""),
                                              ("wave flux err", "# ")])
def test_read_spectrum_takes_a_text_column_named_ivar_as_an_inverse_variance(tmp_path, header, comments):
    """A header '# wave flux ivar' was ignored and the ivar read as an error (1 / ivar^2 as the ivar: MILES
    star 208 at S/N 100 fitted 5455 +- 1.9e6 K, log g on its bound, chi^2 0.0); without '#' it was refused."""
    from smnet_sps.fit_cli import read_spectrum

    wave, flux = _miles_star()
    err = 0.01 * flux
    third = 1 / err ** 2 if "ivar" in header else err
    path = tmp_path / "star.txt"
    np.savetxt(path, np.column_stack([wave, flux, third]), header=f"MILES 208\n{header}", comments=comments)
    if not comments:                       # the names as the first line
        path.write_text("\n".join(path.read_text().splitlines()[1:]))
    w, f, ivar = read_spectrum(path)
    np.testing.assert_allclose(w, wave)
    np.testing.assert_allclose(ivar, 1 / err ** 2, rtol=1e-12)


def test_fit_medium_air_is_refused_for_a_frequency_column(tmp_path, capsys):
    """c / nu is the vacuum wavelength: `--medium air` with a column in Hz converted it once more (MILES star
    208's first pixel, 3541.51 A vacuum, fitted at 3542.52 A: 2.9e-4, 86 km/s to the red)."""
    import astropy.units as u
    from astropy.table import QTable

    from smnet_sps.cli import main
    from smnet_sps.fit_cli import read_spectrum
    from smnet_sps.medium import air_to_vacuum

    wave_air, flux = _miles_star()
    vac = air_to_vacuum(wave_air)
    nu = (vac * u.AA).to(u.Hz, equivalencies=u.spectral())
    path = tmp_path / "star_hz.ecsv"
    QTable({"wave": nu[::-1], "flux": flux[::-1], "err": 0.01 * flux[::-1]}).write(path)
    np.testing.assert_allclose(read_spectrum(path)[0], vac, rtol=1e-12)
    np.testing.assert_allclose(read_spectrum(path, medium="vacuum")[0], vac, rtol=1e-12)
    with pytest.raises(ValueError, match=r"star_hz.ecsv: column 'wave' is in Hz.*same in air and vacuum"):
        read_spectrum(path, medium="air")
    assert main(["fit", str(path), "--medium", "air"]) == 1
    assert "same in air and vacuum" in capsys.readouterr().err
    # a wavelength column in air is still converted, once
    txt = tmp_path / "star_air.txt"
    np.savetxt(txt, np.column_stack([wave_air, flux]))
    np.testing.assert_allclose(read_spectrum(txt, medium="air")[0], vac, rtol=1e-12)
    np.testing.assert_allclose(read_spectrum(txt)[0], wave_air, rtol=1e-12)


def _image(path, data, extra=(), **keys):
    """Write ``data`` as a FITS primary image with header ``keys`` (DC_FLAG -> DC-FLAG) and image extensions
    ``extra`` ((EXTNAME, data, BUNIT), ...); returns the path."""
    from astropy.io import fits

    hdu = fits.PrimaryHDU(np.asarray(data, np.float64))
    for key, value in keys.items():
        hdu.header[key.replace("DC_FLAG", "DC-FLAG")] = value
    ext = [fits.ImageHDU(np.asarray(d, float), fits.Header({"BUNIT": b}), name=n) for n, d, b in extra]
    fits.HDUList([hdu] + ext).writeto(path)
    return path


def _wcs_wave(path):
    """Pixel wavelengths [A] of a 1-d FITS image by astropy.wcs (SI for WAVE/AWAV/WAVE-LOG: metres)."""
    import warnings

    from astropy.io import fits
    from astropy.wcs import WCS

    header = fits.getheader(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = WCS(header)
    return w.all_pix2world(np.arange(header["NAXIS1"]), 0)[0] * 1e10


def test_read_spectrum_reads_a_1d_fits_image(tmp_path):
    """A 1-d FITS image spectrum (SDSS, IRAF, ESO: the flux in the primary HDU, the wavelengths in CRVAL1,
    CDELT1 / CD1_1, CRPIX1) was refused: 'cannot read a spectrum from this file (No table found)'."""
    from smnet_sps.fit_cli import read_spectrum
    from smnet_sps.medium import air_to_vacuum

    wave, flux = _miles_star()                      # air, 0.9-A pixels from 3540.5 A
    # ESO style: CD1_1 with a reference pixel inside, in nm, air (AWAV), an F_lambda BUNIT, ERR extension
    unit = "1E-17 erg/s/cm^2/Angstrom"
    eso = _image(tmp_path / "eso.fits", flux, extra=[("ERR", 0.01 * flux, unit)], CTYPE1="AWAV", CUNIT1="nm",
                 CRVAL1=wave[100] / 10, CD1_1=0.09, CRPIX1=101, BUNIT=unit)
    np.testing.assert_allclose(_wcs_wave(eso), wave, rtol=1e-12)          # the file is what it should be
    w, f, ivar = read_spectrum(eso)                                        # AWAV: air, taken to vacuum
    np.testing.assert_allclose(w, air_to_vacuum(wave), rtol=1e-12)
    np.testing.assert_allclose(f, flux, rtol=1e-12)
    np.testing.assert_allclose(ivar, 1 / (0.01 * flux) ** 2, rtol=1e-12)
    with pytest.raises(ValueError, match="AWAV' states air"):
        read_spectrum(eso, medium="vacuum")
    # IRAF / SDSS log10-linear (DC-FLAG 1): lambda = 10^(CRVAL1 + CD1_1 i), as SDSS's COEFF0, COEFF1
    loglam = np.log10(3600.0) + 1e-4 * np.arange(3000)
    iraf = _image(tmp_path / "iraf.fits", np.interp(10 ** loglam, wave, flux), CTYPE1="LINEAR", DC_FLAG=1,
                  CRVAL1=loglam[0], CD1_1=1e-4, CDELT1=1e-4, CRPIX1=1)
    np.testing.assert_allclose(read_spectrum(iraf)[0], 10 ** loglam, rtol=1e-12)
    # the FITS standard's logarithmic axis
    log = _image(tmp_path / "log.fits", np.interp(10 ** loglam, wave, flux), CTYPE1="WAVE-LOG",
                 CUNIT1="Angstrom", CRVAL1=3600.0, CDELT1=3600.0 * 1e-4 * np.log(10), CRPIX1=1)
    np.testing.assert_allclose(read_spectrum(log)[0], _wcs_wave(log), rtol=1e-12)
    np.testing.assert_allclose(read_spectrum(log)[0], 10 ** loglam, rtol=1e-9)
    # what stays unsupported is named
    two = _image(tmp_path / "two.fits", np.vstack([flux, flux]), CRVAL1=wave[0], CDELT1=0.9)
    with pytest.raises(ValueError, match=r"two.fits: HDU 0 is an image of shape \(2, 4300\).*more than one"):
        read_spectrum(two)
    bare = _image(tmp_path / "bare.fits", flux)
    with pytest.raises(ValueError, match="bare.fits: HDU 0, a 1-d image, has no wavelength keywords"):
        read_spectrum(bare)


@pytest.mark.parametrize("layout", ["eso", "ecsv"])
def test_read_spectrum_leaves_out_pixels_flagged_by_a_quality_column(tmp_path, layout):
    """A quality column (ESO Phase 3's QUAL, nonzero = bad) was ignored: MILES star 208 with 3 % of its pixels
    x4 and flagged fitted 4716 +- 500 K, log g 2.87, chi^2 294800 for 130 (4978 +- 53 K, 4.51, 6536 clean)."""
    from astropy.table import Table

    from smnet_sps.fit_cli import read_spectrum

    wave, flux = _miles_star()
    flagged = np.zeros(flux.size, bool)
    flagged[np.random.default_rng(3).choice(flux.size, 130, replace=False)] = True
    hit = np.where(flagged, 4 * flux, flux)                 # cosmic rays, bad columns
    err = 0.01 * flux
    if layout == "eso":                                     # one row of array cells, QUAL an integer
        path = tmp_path / "star.fits"
        Table({"WAVE": [wave], "FLUX": [hit], "ERR": [err], "QUAL": [flagged.astype(np.int32)]}).write(path)
    else:                                                   # specutils' boolean mask, True = bad
        path = tmp_path / "star.ecsv"
        Table({"wave": wave, "flux": hit, "err": err, "mask": flagged}).write(path)
    w, f, ivar = read_spectrum(path)
    assert np.all(np.isnan(f[flagged])) and np.all(ivar[flagged] == 0)
    np.testing.assert_allclose(f[~flagged], flux[~flagged], rtol=1e-12)
    np.testing.assert_allclose(ivar[~flagged], 1 / err[~flagged] ** 2, rtol=1e-12)


def test_read_spectrum_reads_an_sdss_spec_table_by_its_loglam(tmp_path):
    """SDSS's spec files (HDU 1 COADD: flux, loglam = log10 vacuum wavelength [A], ivar, and_mask) were
    refused: 'needs a wavelength column (wave, wavelength, lambda, lam, wl)'."""
    from astropy.table import Table

    from smnet_sps.fit_cli import read_spectrum
    from smnet_sps.medium import air_to_vacuum

    wave, flux = _miles_star()
    vac = air_to_vacuum(wave)
    and_mask = np.zeros(flux.size, np.int32)
    and_mask[100] = 2 ** 23                                    # BRIGHTSKY
    path = tmp_path / "spec-0266-51602-0001.fits"
    Table({"flux": flux.astype(np.float32), "loglam": np.log10(vac).astype(np.float32),
           "ivar": (1 / (0.01 * flux) ** 2).astype(np.float32), "and_mask": and_mask}).write(path)
    w, f, ivar = read_spectrum(path)
    np.testing.assert_allclose(w, vac, rtol=1e-6)             # float32 log10: 3e-7 relative
    assert ivar[100] == 0 and np.isnan(f[100]) and np.all(ivar[:100] > 0)


def test_a_text_spectrum_in_nm_is_read_by_its_header_unit_and_refused_without_one(tmp_path, capsys):
    """A text file in nm (354-741) was read as Angstrom: a warning the command line cannot act on, then an
    extreme-UV fit with exit status 0 (MILES star 208: Teff 64,653 K, log g 8)."""
    from smnet_sps.cli import main
    from smnet_sps.fit_cli import read_spectrum
    wave, flux = _miles_star()
    in_angstrom = tmp_path / "a.txt"
    np.savetxt(in_angstrom, np.column_stack([wave, flux]))
    for name, header, factor in (("nm.txt", "wave[nm] flux", 10.0), ("um.txt", "wave(um) flux", 1e4),
                                 ("aa.txt", "wave[A] flux", 1.0)):
        np.savetxt(tmp_path / name, np.column_stack([wave / factor, flux]), header=header)
        w, f, _ = read_spectrum(tmp_path / name)
        np.testing.assert_allclose(w, wave, rtol=1e-9)
    bare = tmp_path / "bare_nm.txt"
    np.savetxt(bare, np.column_stack([wave / 10, flux]))
    with pytest.raises(ValueError, match=r"end at 74.* wave\[nm\]"):
        read_spectrum(bare)
    assert main(["fit", str(bare), "--out", str(tmp_path / "fit.json")]) == 1
    assert "wave[nm]" in capsys.readouterr().err and not (tmp_path / "fit.json").exists()
    np.savetxt(tmp_path / "pc.txt", np.column_stack([wave, flux]), header="wave[pc] flux")
    with pytest.raises(ValueError, match="unit 'pc'"):
        read_spectrum(tmp_path / "pc.txt")
    np.testing.assert_array_equal(read_spectrum(in_angstrom)[0], wave)     # no header: Angstrom as before


def test_a_table_with_a_negative_ivar_is_refused_naming_the_file_and_column(tmp_path):
    """A negative ivar in a table reached fit_star, whose 'ivar must be >= 0' named no file or column."""
    from astropy.table import Table

    from smnet_sps.fit_cli import read_spectrum
    wave, flux = _miles_star()
    ivar = np.full(wave.size, 1e4)
    ivar[[10, 20]] = -1.0
    path = tmp_path / "neg.ecsv"
    Table({"wave": wave, "flux": flux, "ivar": ivar}).write(path)
    with pytest.raises(ValueError, match=r"neg\.ecsv: column 'ivar' has 2 negative inverse variance"):
        read_spectrum(path)
    ivar[[10, 20]] = 0.0
    Table({"wave": wave, "flux": flux, "ivar": ivar}).write(path, overwrite=True)
    assert np.count_nonzero(read_spectrum(path)[2] == 0) == 2


def test_a_flux_in_ab_maggies_is_read_as_3631_jy(tmp_path):
    """astropy's maggy is an irreducible unit (it needs a zero_point_flux equivalency): a flux in nanomaggies
    was refused by fit_star and `smnet-sps fit` as no spectral flux density, and taken as plain F_lambda by
    measure_index (MILES star 4's Fe5270 1.3761 A instead of 1.3735); the plural TUNIT 'nanomaggies' was not
    recognised at all."""
    import astropy.units as u
    from astropy.io import fits

    from smnet_sps.fit import check_spectrum
    from smnet_sps.fit_cli import read_spectrum
    from smnet_sps.lick import measure_index
    from smnet_sps.medium import air_to_vacuum

    wave_air, flam = _miles_star(4)
    wave = air_to_vacuum(wave_air)
    flam_q = flam * u.erg / u.s / u.cm ** 2 / u.AA
    jy = flam_q.to_value(u.Jy, equivalencies=u.spectral_density(wave * u.AA))
    nmgy = jy / 3631e-9                                     # AB: 1 maggy = 3631 Jy
    good = flam > 0
    f = check_spectrum(wave, nmgy * u.nmgy, ivar=np.where(good, 1e-4, 0.0) / u.nmgy ** 2)
    np.testing.assert_allclose(f[1], flam, rtol=1e-9)
    np.testing.assert_allclose(f[2][good], 1e-4 / (flam / nmgy)[good] ** 2, rtol=1e-9)
    np.testing.assert_allclose(measure_index(wave, nmgy * u.nmgy, "Fe5270"),
                               measure_index(wave, flam_q, "Fe5270"), rtol=1e-9)
    # a file: FITS TUNITs as SDSS-style tables write them
    path = tmp_path / "star.fits"
    fits.BinTableHDU.from_columns([
        fits.Column("wave", "D", array=wave, unit="Angstrom"),
        fits.Column("flux", "D", array=nmgy, unit="nanomaggies"),
        fits.Column("ivar", "D", array=np.full(wave.size, 1e-4), unit="nanomaggies-2"),
    ]).writeto(path)
    w, f_read, iv = read_spectrum(path)
    np.testing.assert_allclose(f_read, flam, rtol=1e-9)
    np.testing.assert_allclose(iv, 1e-4 / (flam / nmgy) ** 2, rtol=1e-9)


@pytest.mark.parametrize("name, unit", [("freq", "GHz"), ("FREQUENCY", "Hz"), ("nu", "THz"),
                                        ("energy", "eV")])
def test_read_spectrum_reads_a_frequency_column_named_as_one(tmp_path, name, unit):
    """A column 'freq' in Hz was refused as 'needs a wavelength column', while the same values as column
    'wave' with the unit Hz were read; one without a unit cannot be Angstrom and is refused."""
    import astropy.units as u
    from astropy.table import QTable

    from smnet_sps.fit_cli import read_spectrum
    from smnet_sps.medium import air_to_vacuum

    wave_air, flux = _miles_star()
    vac = air_to_vacuum(wave_air)
    axis = (vac * u.AA).to(unit, equivalencies=u.spectral())[::-1]
    path = tmp_path / "star.fits"
    QTable({name: axis, "flux": flux[::-1], "err": 0.01 * flux[::-1]}).write(path)
    w, f, ivar = read_spectrum(path)
    np.testing.assert_allclose(w, vac, rtol=1e-12)
    np.testing.assert_allclose(f, flux, rtol=1e-6)
    np.testing.assert_allclose(ivar[flux > 0], 1 / (0.01 * flux[flux > 0]) ** 2, rtol=1e-6)
    QTable({name: axis.value, "flux": flux[::-1]}).write(tmp_path / "bare.ecsv")
    with pytest.raises(ValueError, match=rf"bare.ecsv: column '{name}' names a frequency .* has no unit"):
        read_spectrum(tmp_path / "bare.ecsv")


@pytest.mark.parametrize("wave_unit, scale", [("Angstroms", 1.0), ("ANGSTROM", 1.0), ("microns", 1e-4)])
def test_read_spectrum_reads_plural_and_upper_case_unit_spellings(tmp_path, wave_unit, scale):
    """A TUNIT / CUNIT1 'Angstroms' (as IRAF and many archives write it), 'ANGSTROM' or 'microns' was
    refused: 'has the unit 'Angstroms', which astropy does not recognise'."""
    from astropy.io import fits

    from smnet_sps.fit_cli import read_spectrum

    wave, flux = _miles_star()
    flux_unit = "1E-17 erg/s/cm^2/Angstroms"
    table = tmp_path / "table.fits"
    fits.BinTableHDU.from_columns([
        fits.Column("wave", "D", array=wave * scale, unit=wave_unit),
        fits.Column("flux", "D", array=flux, unit=flux_unit),
        fits.Column("err", "D", array=0.01 * flux, unit=flux_unit),
    ]).writeto(table)
    image = _image(tmp_path / "image.fits", flux, CUNIT1=wave_unit, CRVAL1=wave[0] * scale,
                   CDELT1=(wave[1] - wave[0]) * scale, CRPIX1=1, BUNIT=flux_unit)
    for path in (table, image):
        w, f, ivar = read_spectrum(path)
        np.testing.assert_allclose(w, wave, rtol=1e-9)
        np.testing.assert_allclose(f, flux, rtol=1e-12)
    np.testing.assert_allclose(read_spectrum(table)[2], 1 / (0.01 * flux) ** 2, rtol=1e-12)


# Every wavelength-unit spelling a reader accepted before one table (smnet_sps.medium.WAVE_UNIT_SPELLINGS)
# held them, with its factor to Angstrom: fit_cli's text header ('# wave[nm] flux'), IRAF's WAT1_001
# 'units=' of a FITS image, a table column's unit that astropy does not know itself, and a filter file's
# comment line ('# wavelength [nm]'). Each must still be read so, by every one of those readers.
_A, _NM, _UM = 1.0, 10.0, 1e4
_SPELLINGS_BEFORE = {
    "text header": {"a": _A, "aa": _A, "angstrom": _A, "angstroms": _A, "nm": _NM, "um": _UM, "micron": _UM,
                    "microns": _UM},
    "iraf units=": {"angstroms": _A, "angstrom": _A, "nanometers": _NM, "microns": _UM, "micrometers": _UM},
    "table unit": {**{s: _A for s in ("angstrom", "Angstrom", "ANGSTROM", "angstroms", "Angstroms",
                                      "ANGSTROMS", "AA", "\u00c5")},
                   **{s: _NM for s in ("nm", "nanometer")},
                   **{s: _UM for s in ("micron", "Micron", "MICRON", "microns", "Microns", "MICRONS", "um",
                                       "\u00b5m", "\u03bcm", "micrometer")}},
    "filter file": {**{s: _A for s in ("angstrom", "angstroms", "angstr\u00f6m", "angstr\u00f6ms", "\u00c5",
                                       "aa", "a")},
                    **{s: _NM for s in ("nm", "nanometer", "nanometers", "nanometre", "nanometres")},
                    **{s: _UM for s in ("um", "\u00b5m", "\u03bcm", "micron", "microns", "micrometer",
                                        "micrometers", "micrometre", "micrometres")}},
}


def _read_wave_in(reader, spelling, wave, tmp_path):
    """``wave`` [A] / factor written with the unit ``spelling`` in the way ``reader`` states it, read back in
    Angstrom (by read_spectrum, or as a filter's wavelength set)."""
    from astropy.table import QTable, Table

    from smnet_sps.filters import read_filter_file
    from smnet_sps.fit_cli import read_spectrum

    flux = np.ones_like(wave)
    path = tmp_path / f"{reader.split()[0]}_{len(list(tmp_path.iterdir()))}"          # a new file each
    if reader == "text header":
        np.savetxt(path.with_suffix(".txt"), np.column_stack([wave, flux]), header=f"wave[{spelling}] flux",
                   encoding="utf-8")
        return read_spectrum(path.with_suffix(".txt"))[0]
    if reader == "iraf units=":
        _image(path.with_suffix(".fits"), flux, CRVAL1=wave[0], CDELT1=wave[1] - wave[0], CRPIX1=1,
               WAT0_001="system=equispec", WAT1_001=f"wtype=linear label=Wavelength units={spelling}")
        return read_spectrum(path.with_suffix(".fits"))[0]
    if reader == "table unit":
        t = Table({"wave": wave, "flux": flux})
        t["wave"].unit = u.Unit(spelling, parse_strict="silent")
        t.write(path.with_suffix(".ecsv"))
        assert QTable.read(path.with_suffix(".ecsv"))["wave"].unit is not None
        return read_spectrum(path.with_suffix(".ecsv"))[0]
    np.savetxt(path.with_suffix(".dat"), np.column_stack([wave, np.hanning(wave.size) + 0.1]),
               header=f"wavelength [{spelling}] throughput", encoding="utf-8")
    return read_filter_file(path.with_suffix(".dat")).waveset.to_value(u.AA)


@pytest.mark.parametrize("reader", sorted(_SPELLINGS_BEFORE))
def test_every_wavelength_unit_spelling_accepted_before_is_still_read(tmp_path, reader):
    """Each reader had its own table of spellings (fit_cli's _TEXT_WAVE_UNITS, _IRAF_UNITS, _unit_aliases,
    filters' _UNIT_WORDS); what each accepted must still be read, with the same factor."""
    import warnings

    wave = np.linspace(4000.0, 7000.0, 301)
    for spelling, factor in _SPELLINGS_BEFORE[reader].items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", u.UnitsWarning)
            got = _read_wave_in(reader, spelling, wave / factor, tmp_path)
        np.testing.assert_allclose(got, wave, rtol=1e-9, err_msg=f"{reader} {spelling!r}")


@pytest.mark.parametrize("reader", sorted(_SPELLINGS_BEFORE))
def test_every_reader_reads_every_wavelength_unit_spelling(tmp_path, reader):
    """One table of spellings for all readers: a text header '# wave[nanometers] flux', IRAF's 'units=nm' or
    a filter's '# wavelength [microns]' was refused or read as Angstrom, because another reader's table had
    it and this one's did not. Exceptions: a FITS header is ASCII (IRAF), and astropy's own 'a' (annum) and
    'aa' (atto-annum) keep their meaning as a table unit (no wavelength: refused there)."""
    import warnings

    union = {s.lower(): f for spellings in _SPELLINGS_BEFORE.values() for s, f in spellings.items()}
    wave = np.linspace(4000.0, 7000.0, 301)
    for spelling, factor in union.items():
        if (reader == "iraf units=" and not spelling.isascii()) or (reader == "table unit" and
                                                                     spelling in ("a", "aa")):
            continue
        for written in {spelling, spelling.capitalize(), spelling.upper()}:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", u.UnitsWarning)
                got = _read_wave_in(reader, written, wave / factor, tmp_path)
            np.testing.assert_allclose(got, wave, rtol=1e-9, err_msg=f"{reader} {written!r}")


def test_iraf_units_key_in_capitals_is_read(tmp_path):
    """The one table of spellings read IRAF's 'units=' key case-sensitively, where the old reader lower-cased
    the whole WAT1_001 string: 'UNITS=NANOMETERS' (nm) was then taken as no unit, i.e. Angstrom (the
    review)."""
    from smnet_sps.fit_cli import read_spectrum

    wave_nm = np.linspace(400.0, 700.0, 301)
    path = tmp_path / "upper.fits"
    _image(path, np.ones_like(wave_nm), CRVAL1=wave_nm[0], CDELT1=wave_nm[1] - wave_nm[0], CRPIX1=1,
           WAT0_001="SYSTEM=EQUISPEC", WAT1_001="WTYPE=LINEAR LABEL=WAVELENGTH UNITS=NANOMETERS")
    np.testing.assert_allclose(read_spectrum(path)[0], wave_nm * 10.0, rtol=1e-9)


def test_fit_loads_the_model_on_device(tmp_path, capsys):
    """`smnet-sps fit` had no --device (ssp, ssp-grid, mags, evaluate have it): a star fit loaded the shipped
    model on "auto", a GPU if there was one, whatever the user needed. Now the same option as theirs: the
    model is loaded on it, a device the generators do not run on is refused, and with --ssp-grid (no model
    loaded) a --device other than auto is refused as the other star-only options are."""
    import json

    import torch

    from smnet_sps import ssp
    from smnet_sps.cli import main

    wave, flux = _miles_star()
    path = tmp_path / "star.txt"
    np.savetxt(path, np.column_stack([wave, flux, 0.01 * flux]))
    ssp._DEFAULT_GENERATOR.pop("cpu", None)
    out = tmp_path / "fit.json"
    assert main(["fit", str(path), "--medium", "air", "--resolution-fwhm", "2.5", "--device", "cpu",
                 "--out", str(out)]) == 0
    gen = ssp._DEFAULT_GENERATOR["cpu"]                          # loaded for this device
    assert gen.device.type == "cpu"
    record = json.loads(out.read_text())
    assert 4800 < record["teff"] < 5600 and record["generator_sha256"] == gen.config["weights_sha256"]
    capsys.readouterr()
    assert main(["fit", str(path), "--medium", "air", "--device", "mps"]) == 1
    assert "no float64" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["fit", str(path), "--medium", "air", "--device", "cuda"]) == 1
        assert "CUDA is not available" in capsys.readouterr().err
    grid = tmp_path / "grid.npz"
    assert main(["fit", str(path), "--ssp-grid", str(grid), "--device", "cpu"]) == 1
    assert "--device applies to star fits only" in capsys.readouterr().err


def test_fit_warns_when_the_errors_are_far_larger_than_the_residuals(tmp_path):
    """MILES star 208 (5,000-6,000 A) with its error (1 % of the flux) passed as ivar, or a text file's
    columns in the order wave, err, flux: Teff came out 4990 +- 3180 K, log g +- 2.6, chi^2 0.002 for 42 dof,
    without a word.
    Now a FitWarning says the residuals are far smaller than the errors say; the right ivar gives none."""
    import warnings

    import torch

    from smnet_sps.cli import main
    from smnet_sps.fit import FitWarning, fit_star
    from smnet_sps.medium import air_to_vacuum

    torch.set_num_threads(1)
    wave, flux = _miles_star()
    keep = (wave > 5000) & (wave < 6000)
    wave, flux = air_to_vacuum(wave[keep]), flux[keep]
    err = 0.01 * flux
    with pytest.warns(FitWarning, match="smaller than the errors say") as caught:
        slip = fit_star(wave, flux, err, resolution_fwhm=2.5, degree=1)
    assert slip.chi2 / slip.dof < 0.01 and slip.teff_err > 500          # what the warning is about
    assert any("is ivar an error" in str(w.message) for w in caught)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FitWarning)
        right = fit_star(wave, flux, 1 / err ** 2, resolution_fwhm=2.5, degree=1)
    assert right.chi2 / right.dof > 1 and right.teff_err < 200
    np.savetxt(tmp_path / "swapped.txt", np.column_stack([wave, err, flux]))
    with pytest.warns(FitWarning, match="smaller than the errors say"):
        assert main(["fit", str(tmp_path / "swapped.txt"), "--resolution-fwhm", "2.5", "--degree", "1"]) == 0


@pytest.mark.parametrize("order, scale", [((1, 0, 2), 1.0), ((1, 0, 2), 1e4), ((2, 1, 0), 1.0)])
def test_read_spectrum_names_a_text_file_whose_columns_are_in_another_order(tmp_path, order, scale):
    """MILES star 208 written as flux, wave, err (or err, flux, wave): refused as 'the wavelengths end at
    1.1 ... if they are nm or um' (a flux of ~1), or with a flux above 1000 as a wavelength axis 'neither
    increasing nor decreasing'; neither said the columns were out of order. Now the wavelength column is
    named."""
    from smnet_sps.fit_cli import read_spectrum

    wave, flux = _miles_star()
    cols = [wave, flux * scale, 0.01 * flux * scale]
    np.savetxt(tmp_path / "s.txt", np.column_stack([cols[k] for k in order]))
    where = order.index(0) + 1
    with pytest.raises(ValueError, match=rf"column {where} runs monotonically from 3540.5 to 7409.6.*wave, "
                                         r"flux\[, error\], in that order"):
        read_spectrum(tmp_path / "s.txt")
    np.savetxt(tmp_path / "ok.txt", np.column_stack(cols))                 # the right order reads
    np.testing.assert_allclose(read_spectrum(tmp_path / "ok.txt")[0], wave)


def test_a_smooth_flux_written_first_is_named_as_columns_out_of_order(tmp_path):
    """A hot star's smooth continuum with a few lines, written flux, wave[, err], turns back in ~4 % of its
    steps; the rule of 8f03810 (column 1 taken as wavelengths when 90 % of its steps go one way) let it
    through to the misleading 'the wavelengths end at 2.28 ... if they are nm or um' (review B)."""
    from smnet_sps.fit_cli import read_spectrum

    wave = np.linspace(3600.0, 7600.0, 1601)
    flux = (wave / 5000.0) ** -3
    for line in (4102.0, 4341.0, 4861.0, 6563.0):
        flux *= 1 - 0.4 * np.exp(-0.5 * ((wave - line) / 8.0) ** 2)
    for cols in ([flux, wave], [flux, wave, 0.01 * flux]):
        np.savetxt(tmp_path / "s.txt", np.column_stack(cols))
        with pytest.raises(ValueError, match=r"column 2 runs monotonically from 3600 to 7600"):
            read_spectrum(tmp_path / "s.txt")


@pytest.mark.parametrize("case", ["repeated", "two arms", "rounded"])
def test_read_spectrum_names_the_row_of_wavelengths_out_of_order_beside_a_smooth_error(tmp_path, case):
    """Wavelengths with one step out of order (a repeated wavelength; two overlapping arms joined) beside a
    smooth, monotonic error column were refused as columns in another order ('column 3 runs monotonically
    ... reorder them'), which they were not. Now the row out of order is named: 101, the 1-based row of
    wave[100] (it said 100, the row before)."""
    from smnet_sps.fit_cli import read_spectrum

    wave = np.linspace(4000.0, 6000.0, 200)
    if case == "repeated":
        wave[100] = wave[99]
    elif case == "two arms":
        wave = np.concatenate([np.linspace(3700.0, 5600.0, 100), np.linspace(5500.0, 9000.0, 100)])
    else:                               # printed to 1 A at 0.5 A sampling: every other step a tie
        wave = np.round(np.arange(4000.0, 4100.0, 0.5))
    flux = 1 + 0.01 * np.random.default_rng(0).standard_normal(200)
    np.savetxt(tmp_path / "s.txt", np.column_stack([wave, flux, np.linspace(0.01, 0.02, 200)]))
    row = 2 if case == "rounded" else 101
    with pytest.raises(ValueError, match=rf"must increase \(or decrease\) strictly; row {row} \("):
        read_spectrum(tmp_path / "s.txt")
