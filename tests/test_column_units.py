"""Astropy Table columns (``Table.read`` of a FITS file, TUNIT as the unit) given to the Python API: each is
the Quantity it stands for (``generator.column_quantity``), including a TUNIT that astropy's FITS reader
cannot parse ('Angstroms', 'Msun/yr', 'dex', 'percent'), which is read once more as the fit CLI reads it."""
import warnings

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.table import Table


def _fits_table(path, **columns):
    """Write ``name=(values, tunit)`` as a FITS binary table whose TUNITn cards are set by hand (the exact
    string, as a survey's file has it) and read it back with Table.read."""
    names = list(columns)
    hdu = fits.BinTableHDU.from_columns(
        [fits.Column(name=n, format="D", array=np.asarray(columns[n][0], float)) for n in names])
    for i, n in enumerate(names, start=1):
        if columns[n][1] is not None:
            hdu.header[f"TUNIT{i}"] = columns[n][1]
    hdu.writeto(path, overwrite=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", u.UnitsWarning)        # "did not parse as fits unit"
        return Table.read(path)


WAVE = np.linspace(4000.0, 7000.0, 500)


@pytest.mark.parametrize("tunit, factor", [("Angstroms", 1.0), ("ANGSTROM", 1.0), ("micron", 1e-4)])
def test_a_wavelength_column_whose_tunit_fits_cannot_parse_is_read_by_every_entry_point(tmp_path, tunit,
                                                                                         factor):
    """'Angstroms', 'ANGSTROM' and 'micron' are UnrecognizedUnits to astropy's FITS reader; column_quantity
    refused them ("not one astropy knows"), where the numbers had been used (as Angstrom). Read again in
    astropy's generic format with the package's spellings, each entry point gives the numbers of the same
    wavelengths in Angstrom (a micron column was read as Angstrom before: now converted)."""
    from smnet_sps import dust, lsf
    from smnet_sps.fit import check_spectrum
    from smnet_sps.igm import igm_transmission
    from smnet_sps.medium import vacuum_to_air

    t = _fits_table(tmp_path / "s.fits", wave=(WAVE * factor, tunit), flux=(np.full(WAVE.size, 2.0), None))
    assert isinstance(t["wave"].unit, u.UnrecognizedUnit)
    col = t["wave"]
    np.testing.assert_allclose(igm_transmission(col, 3.0), igm_transmission(WAVE, 3.0), rtol=1e-12)
    np.testing.assert_allclose(u.Quantity(vacuum_to_air(col)).to_value(u.AA), vacuum_to_air(WAVE), rtol=1e-12)
    np.testing.assert_allclose(lsf.grid_lsf_fwhm(col), lsf.grid_lsf_fwhm(WAVE), rtol=1e-9)
    np.testing.assert_allclose(dust.attenuation_curve(col), dust.attenuation_curve(WAVE), rtol=1e-12)
    got, want = check_spectrum(col, t["flux"]), check_spectrum(WAVE, np.full(WAVE.size, 2.0))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12)


def test_a_flux_column_with_a_numeric_factor_in_its_tunit_gives_the_numbers_it_gave_before(tmp_path):
    """TUNIT '1e-17 erg/s/cm2/Angstrom' (FITS has no numeric factor): an F_lambda, so the fit uses its
    numbers as they are, as it did before the column's unit was taken (a flux in any F_lambda unit)."""
    from smnet_sps.fit import check_spectrum

    flux = 1.0 + 0.1 * np.sin(WAVE / 100.0)
    t = _fits_table(tmp_path / "s.fits", wave=(WAVE, "Angstrom"), flux=(flux, "1e-17 erg/s/cm2/Angstrom"),
                    ivar=(np.full(WAVE.size, 4.0), None))
    assert isinstance(t["flux"].unit, u.UnrecognizedUnit)
    got = check_spectrum(t["wave"], t["flux"], np.asarray(t["ivar"]))
    want = check_spectrum(WAVE, flux, np.full(WAVE.size, 4.0))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12)


@pytest.mark.parametrize("tunit", ["Msun/yr", "M_sun/yr"])
def test_a_tabular_sfh_column_in_msun_per_yr_is_read(tmp_path, tunit):
    """An sfr column with TUNIT 'Msun/yr' was refused by tabular_sfh; the mass formed is that of the same
    table as plain numbers (M_sun/yr)."""
    from smnet_sps.sfh import tabular_sfh

    age, sfr = np.array([0.0, 1.0, 5.0, 13.0]), np.array([1.0, 2.0, 0.5, 1.0])
    t = _fits_table(tmp_path / "sfh.fits", age=(age, "Gyr"), sfr=(sfr, tunit))
    assert isinstance(t["sfr"].unit, u.UnrecognizedUnit)
    want = tabular_sfh(age, sfr, 13.0).mass_formed()
    assert want > 0
    assert tabular_sfh(t["age"], t["sfr"], 13.0).mass_formed() == pytest.approx(want, rel=1e-12)


def test_parameter_box_contains_reads_logg_and_logz_columns_in_dex(tmp_path):
    """ParameterBox.contains with logg / logz columns whose TUNIT is 'dex' (unrecognised by the FITS reader)
    refused them; they are the numbers in dex, as plain numbers are."""
    from smnet_sps.generator import ParameterBox

    box = ParameterBox(teff=(2000.0, 180000.0), logg=(-1.0, 8.0), logz=(-2.5, 0.5))
    t = _fits_table(tmp_path / "p.fits", teff=([5777.0, 5777.0], "K"), logg=([4.44, 4.44], "dex"),
                    logz=([0.0, 1.0], "dex"))
    assert isinstance(t["logz"].unit, u.UnrecognizedUnit)
    np.testing.assert_array_equal(box.contains(t["teff"], t["logg"], t["logz"]),
                                  box.contains([5777.0, 5777.0], [4.44, 4.44], [0.0, 1.0]))
    np.testing.assert_array_equal(box.contains(t["teff"], t["logg"], t["logz"]), [True, False])


def test_a_metallicity_column_in_percent_is_its_mass_fraction(tmp_path):
    """Z with TUNIT 'percent' (unrecognised by the FITS reader) was refused; 1.52 % is Z = 0.0152."""
    from smnet_sps.ssp import ssp_grid

    t = _fits_table(tmp_path / "z.fits", Z=([1.52], "percent"))
    assert isinstance(t["Z"].unit, u.UnrecognizedUnit)
    g = ssp_grid([1e9], t["Z"], generator="blackbody", progress=False)
    assert g.ssp_lgmet == pytest.approx([np.log10(0.0152)], abs=1e-12)


def test_a_column_whose_unit_cannot_be_read_at_all_is_still_refused(tmp_path):
    """Only a unit that astropy's generic format with the package's spellings cannot read either is refused,
    naming the argument and the unit."""
    from smnet_sps.igm import igm_transmission

    t = _fits_table(tmp_path / "s.fits", wave=(WAVE, "furlongs per fortnight"))
    with pytest.raises(ValueError, match=r"wave_rest: its column's unit 'furlongs per fortnight'"):
        igm_transmission(t["wave"], 3.0)


def test_a_wavelength_or_flux_unit_with_the_ampere_says_fits_reads_a_as_the_ampere(tmp_path):
    """FITS reads TUNIT 'A' as the ampere: a wavelength column in 'A' or a flux in 'erg/s/cm2/A' is refused
    with the fit CLI's hint to write 'Angstrom' (it only said 'got unit A')."""
    from smnet_sps.fit import check_spectrum
    from smnet_sps.igm import igm_transmission
    from smnet_sps.photometry import magnitudes

    t = _fits_table(tmp_path / "s.fits", wave=(WAVE, "A"), wave_aa=(WAVE, "Angstrom"),
                    flux=(np.full(WAVE.size, 1e-16), "erg/s/cm2/A"))
    hint = "FITS reads 'A' as the ampere: write 'Angstrom'"
    with pytest.raises(ValueError, match=hint):
        igm_transmission(t["wave"], 3.0)
    with pytest.raises(ValueError, match=hint):
        check_spectrum(t["wave_aa"], t["flux"])
    with pytest.raises(ValueError, match=hint):
        magnitudes((t["wave_aa"], t["flux"]), "sdss2010-r")


@pytest.mark.parametrize("unit", ["A", "V", "C", "mA"])
def test_the_ampere_hint_of_a_wavelength_is_for_A_alone_with_a_wavelength_example(tmp_path, unit):
    """medium._as_angstrom and magnitudes' spectral axis gave the hint for any unit with the ampere among its
    bases (a 'V' axis was told "FITS reads 'A' as the ampere", though no 'A' was written), and a flux unit
    (erg/s/cm2/Angstrom) as the example for a wavelength (fit_cli's reader was fixed in e65c327)."""
    from smnet_sps.igm import igm_transmission
    from smnet_sps.photometry import magnitudes

    t = _fits_table(tmp_path / "s.fits", wave=(WAVE, unit), flux=(np.full(WAVE.size, 1e-16), "erg/s/cm2/nm"))
    for call in (lambda: igm_transmission(t["wave"], 3.0), lambda: magnitudes((t["wave"], t["flux"]),
                                                                                "sdss2010-r")):
        with pytest.raises(ValueError, match=f"got unit {unit}|axis unit {unit} is not") as err:
            call()
        said = str(err.value)
        assert ("ampere" in said) == (unit == "A"), said
        assert "erg/s" not in said
        if unit == "A":
            assert "write 'Angstrom', e.g. TUNIT 'Angstrom' on the wavelength column" in said


def test_a_logzsol_column_in_dex_is_its_metallicity(tmp_path):
    """logzsol given as a Table column in u.dex (ECSV) or with TUNIT 'dex' (FITS) was refused as "logzsol is
    dimensionless; got unit dex" (only a Quantity was read as the log); it gives the Z of the same numbers, as
    plain numbers and a dex Quantity do. A masked entry is refused, not used."""
    from smnet_sps.isochrones import resolve_isochrones
    from smnet_sps.ssp import _resolve_z, ssp_grid

    iso = resolve_isochrones("parsec")
    Table({"logzsol": [-0.5, 0.0]}, units={"logzsol": u.dex}).write(tmp_path / "lz.ecsv")
    ecsv = Table.read(tmp_path / "lz.ecsv")["logzsol"]
    fits_col = _fits_table(tmp_path / "lz.fits", logzsol=([-0.5, 0.0], "dex"))["logzsol"]
    want = iso.zsun * 10.0 ** np.array([-0.5, 0.0])
    for col in (ecsv, fits_col):
        np.testing.assert_allclose(_resolve_z(iso, None, col), want, rtol=1e-12)
    g = ssp_grid([1e9], logzsol=ecsv[:1], generator="blackbody", progress=False)
    assert g.ssp_lgmet == pytest.approx([np.log10(want[0])], abs=1e-12)
    from astropy.table import MaskedColumn
    with pytest.raises(ValueError, match="logzsol is a masked array"):
        _resolve_z(iso, None, MaskedColumn([-0.5, 0.0], unit=u.dex, mask=[False, True]))


def test_a_column_unit_that_cannot_be_read_is_refused_naming_what_the_parameter_takes(tmp_path):
    """column_quantity's error named isochrone units ('e.g. u.K, u.dex(u.L_sun), u.L_sun') for a wavelength,
    flux, age, SFR or Z column as well; each caller now names the kind its parameter takes."""
    from smnet_sps.fit import check_spectrum
    from smnet_sps.generator import validate_parameters
    from smnet_sps.igm import igm_transmission
    from smnet_sps.sfh import tabular_sfh
    from smnet_sps.ssp import parse_age, ssp_grid

    bad = "furlongs per fortnight"
    t = _fits_table(tmp_path / "bad.fits", x=(np.linspace(4000.0, 7000.0, 50), bad),
                    ok=(np.linspace(4000.0, 7000.0, 50), "Angstrom"))
    cases = [(lambda: igm_transmission(t["x"], 3.0), r"wave_rest: .*a wavelength \(e\.g\. u\.AA, u\.nm\)"),
             (lambda: check_spectrum(t["ok"], t["x"]), r"flux: .*a spectral flux density \(e\.g\."),
             (lambda: parse_age(t["x"][:1]), r"age: .*a time \(e\.g\. u\.Gyr\) or a log age"),
             (lambda: tabular_sfh([0.0, 1.0], t["x"][:2], 1.0),
              r"tabular sfr: .*convertible to solMass / yr"),
             (lambda: ssp_grid([1e9], t["x"][:1], generator="blackbody", progress=False),
              r"Z: .*a dimensionless one \(e\.g\. u\.percent\)"),
             (lambda: validate_parameters(t["x"][:1], 4.4, 0.0), r"teff: .*a temperature \(e\.g\. u\.K\)")]
    for call, match in cases:
        with pytest.raises(ValueError, match=match) as err:
            call()
        assert "u.dex(u.L_sun)" not in str(err.value)


def test_calzetti_reads_its_wavelengths_by_the_packages_one_rule(tmp_path):
    """ssp_torch._wave_angstrom had its own conversion (a length only); it is medium._as_angstrom now: the
    same k for Angstrom, nm and a FITS column in 'Angstroms', and a frequency axis is its wavelengths (it was
    refused as 'must be lengths'), as everywhere else in the package."""
    from smnet_sps.ssp_torch import calzetti_k

    wave = np.array([1500.0, 5500.0, 12000.0])
    want = calzetti_k(wave)
    t = _fits_table(tmp_path / "w.fits", wave=(wave, "Angstroms"))
    np.testing.assert_array_equal(calzetti_k(t["wave"]), want)
    np.testing.assert_allclose(calzetti_k((wave / 10) * u.nm), want, rtol=1e-12)
    freq = (wave * u.AA).to(u.THz, equivalencies=u.spectral())
    np.testing.assert_allclose(calzetti_k(freq), want, rtol=1e-12)
    with pytest.raises(ValueError, match=r"wavelengths must be finite and > 0"):
        calzetti_k([-5500.0])
