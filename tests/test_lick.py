"""Lick indices on synthetic spectra whose index is known analytically."""
import numpy as np
import pytest

from smnet_sps.lick import LICK_INDICES, index_bands, measure_index, measure_indices
from smnet_sps.medium import air_to_vacuum


def _continuum(wave):
    return 2.0 + 3e-4 * (wave - 5000.0)           # any linear continuum: the pseudo-continuum is exact


@pytest.mark.parametrize("name", sorted(LICK_INDICES))
def test_gaussian_line_equivalent_width(name):
    wave = np.arange(4700.0, 5500.0, 0.05)
    blue, band, red = index_bands(name)
    centre, sigma, depth = 0.5 * (band[0] + band[1]), 2.0, 0.4
    flux = _continuum(wave) * (1 - depth * np.exp(-0.5 * ((wave - centre) / sigma) ** 2))
    expected = depth * sigma * np.sqrt(2 * np.pi)  # tails beyond the band edges are < 1e-9 of it
    assert measure_index(wave, flux, name) == pytest.approx(expected, rel=1e-4)
    assert measure_index(wave, _continuum(wave), name) == pytest.approx(0.0, abs=1e-8)


def test_box_line_and_vacuum_bands():
    wave = np.arange(5000.0, 5400.0, 0.01)
    _, band, _ = index_bands("Mgb")
    lo, hi = band[0] + 5.0, band[0] + 15.0
    flux = _continuum(wave) * np.where((wave >= lo) & (wave < hi), 0.7, 1.0)
    assert measure_index(wave, flux, "Mgb") == pytest.approx(0.3 * 10.0, abs=2e-3)
    # bands are air in the tables, vacuum by default: shifted by air_to_vacuum (~1.4 A here)
    air = index_bands("Mgb", medium="air")[1]
    assert band[0] - air[0] == pytest.approx(float(air_to_vacuum(air[0]) - air[0]))
    assert 1.3 < band[0] - air[0] < 1.6
    # the same line measured in air: the index of a spectrum on an air axis with air bands is identical
    assert measure_index(wave - (band[0] - air[0]), flux, "Mgb", medium="air") == pytest.approx(3.0, abs=5e-3)


def test_vectorised_and_errors():
    wave = np.arange(4700.0, 5500.0, 0.5)
    flux = np.stack([_continuum(wave)] * 3)
    out = measure_indices(wave, flux)
    assert set(out) == set(LICK_INDICES) and all(v.shape == (3,) for v in out.values())
    with pytest.raises(ValueError, match="unknown Lick index"):
        measure_index(wave, flux, "Hgamma")
    with pytest.raises(ValueError, match="needs"):
        measure_index(wave[wave < 5200], flux[:, wave < 5200], "Fe5335")


def test_wavelength_units_and_a_single_name():
    import astropy.units as u
    wave = np.linspace(4000.0, 6500.0, 2000)
    flux = np.ones_like(wave)
    lo, hi = index_bands("Mgb", "vacuum")[1]
    flux[(wave > lo) & (wave < hi)] = 0.5
    ref = measure_index(wave, flux, "Mgb")
    # a Quantity in nm is converted (it was read as Angstrom: a silent -0.08 instead of ~2)
    assert measure_index((wave * u.AA).to(u.nm), flux, "Mgb") == pytest.approx(ref, rel=1e-12)
    with pytest.raises(ValueError, match="must be a wavelength"):
        measure_index(wave * u.s, flux, "Mgb")
    assert list(measure_indices(wave, flux, "Mgb")) == ["Mgb"]          # a name, not its letters
    with pytest.warns(UserWarning, match="no pixel lies inside its central band"):
        coarse = np.arange(4000.0, 6500.0, 100.0)
        measure_index(coarse, np.ones_like(coarse), "Mgb")


@pytest.fixture(scope="module")
def miles_star(fixtures_dir):
    """A MILES v9.1 star (air wavelengths, 0.9 A pixels, 3540-7410 A, F_lambda in arbitrary units)."""
    d = np.load(fixtures_dir / "empirical" / "miles_v9.1_fixture_stars.npz")
    return d["wave"], d["flux"][0].astype(float)


def test_band_mean_refuses_a_band_outside_the_data_and_converts_units(miles_star):
    """band_mean extrapolated the end pixels' line (a 9000-9010 A band on 4000-6000 A data gave 3.50) and
    read a wavelength Quantity in nm as Angstrom (24.0 instead of 1.5025)."""
    import astropy.units as u
    from smnet_sps.lick import band_mean
    wave, flux = miles_star
    ref = band_mean(wave, flux, 5000.0, 5010.0)
    inside = (wave > 4999) & (wave < 5011)
    assert ref == pytest.approx(flux[inside].mean(), rel=0.02)
    assert band_mean((wave * u.AA).to(u.nm), flux, 5000.0, 5010.0) == pytest.approx(ref, rel=1e-12)
    assert band_mean(wave, flux, 500.0 * u.nm, 501.0 * u.nm) == pytest.approx(ref, rel=1e-12)
    q = band_mean(wave, flux * u.erg / u.s / u.cm ** 2 / u.AA, 5000.0, 5010.0)   # the flux's unit is kept
    assert q.unit == u.erg / u.s / u.cm ** 2 / u.AA and q.value == pytest.approx(ref, rel=1e-12)
    lin = np.linspace(1.0, 2.0, 2000)
    assert band_mean(np.arange(4000.0, 6000.0), lin, 5000, 5010) == pytest.approx(1.5025, rel=1e-3)
    with pytest.raises(ValueError, match=r"band 9000.0-9010.0 A lies outside the spectrum's 3540.5-7409.6 A"):
        band_mean(wave, flux, 9000.0, 9010.0)
    with pytest.raises(ValueError, match=r"band 3500.0-3560.0 A of index Hx lies outside"):
        band_mean(wave, flux, 3500.0, 3560.0, name="Hx")
    with pytest.raises(ValueError, match=r"lo < hi"):
        band_mean(wave, flux, 5010.0, 5000.0)


def test_a_per_hz_flux_is_measured_as_f_lambda(miles_star):
    """measure_index took the value of any flux Quantity as F_lambda: an L_sun/Hz SSP gave Fe5270 2.641 A
    instead of 2.626 A. F_nu is converted (F_lambda = F_nu c / lambda^2), photon densities too."""
    import astropy.units as u
    wave, flux = miles_star
    flam = flux * 1e-15 * u.erg / u.s / u.cm ** 2 / u.AA
    fnu = flam.to(u.mJy, equivalencies=u.spectral_density(wave * u.AA))
    ref = measure_indices(wave, flux, medium="air")
    for f in (flam, fnu, fnu / u.arcsec ** 2, (fnu.value * u.L_sun / u.Hz / u.M_sun)):
        got = measure_indices(wave, f, medium="air")
        for name in ref:
            assert got[name] == pytest.approx(ref[name], rel=1e-9, abs=1e-12), (f.unit, name)
    # the F_nu numbers read as F_lambda are measurably off: the test would see the old behaviour
    raw = measure_indices(wave, fnu.value, medium="air")
    assert max(abs(raw[n] - ref[n]) for n in ref) > 5e-3
    # photon flux densities (synphot PHOTLAM, PHOTNU) are spectral densities too: converted, not refused
    for unit in (u.photon / u.s / u.cm ** 2 / u.AA, u.photon / u.s / u.cm ** 2 / u.Hz):
        f = flam.to(unit, equivalencies=u.spectral_density(wave * u.AA))
        got = measure_indices(wave, f, medium="air")
        for name in ref:
            assert got[name] == pytest.approx(ref[name], rel=1e-9, abs=1e-12), (unit, name)


def test_a_flux_that_is_no_spectral_density_is_taken_as_plain_numbers(miles_star):
    """Lick indices are often measured on spectra that are not flux-calibrated: counts, electron/s, per-pixel
    units were refused (ValueError). Any unit that is not a spectral flux density is now taken as plain
    numbers, as a plain array is (assumed per unit wavelength)."""
    import astropy.units as u
    wave, flux = miles_star
    ref = measure_indices(wave, flux, medium="air")
    for unit in (u.count, u.electron / u.s, 1e-17 * u.erg / u.s / u.cm ** 2 / u.AA / u.pix, u.erg / u.s,
                 u.adu / u.pix):
        got = measure_indices(wave, flux * unit, medium="air")
        for name in ref:
            assert got[name] == pytest.approx(ref[name], rel=1e-12, abs=1e-12), (unit, name)


def test_a_flux_in_magnitudes_per_pixel_is_measured_as_the_flux_it_stands_for(miles_star):
    """lick and photometry read the flux unit by one rule (smnet_sps.medium.f_lambda_values): a spectrum in
    AB magnitudes per pixel, which magnitudes() took as the flux it stands for, stopped measure_index with
    astropy's "Cannot multiply a function unit with a physical dimension"; it is measured as its F_lambda."""
    import astropy.units as u
    wave, flux = miles_star
    ref = measure_indices(wave, flux, medium="air")
    flam = flux * 1e-15 * u.erg / u.s / u.cm ** 2 / u.AA
    for unit in (u.ABmag, u.STmag):
        mags = flam.to(unit, equivalencies=u.spectral_density(wave * u.AA))
        got = measure_indices(wave, mags, medium="air")
        for name in ref:
            assert got[name] == pytest.approx(ref[name], rel=1e-9, abs=1e-12), (unit, name)
    # a bare magnitude unit has no flux behind it: refused, not read as plain numbers
    from smnet_sps.medium import f_lambda_factor
    with pytest.raises(ValueError, match=r"flux is in mag\(AB\), a logarithmic unit"):
        f_lambda_factor(u.ABmag, wave, strict=False)


def test_an_empty_batch_gives_empty_indices(miles_star):
    """measure_index of a (0, n_wave) batch (say, a selection of stars that holds none) stopped with numpy's
    "need at least one array to stack"; band_mean already returned (0,). It returns shape (0,) / (2, 0)."""
    wave, flux = miles_star
    for shape in ((0, wave.size), (2, 0, wave.size)):
        out = measure_indices(wave, np.ones(shape), medium="air")
        assert all(v.shape == shape[:-1] for v in out.values())
    # and a non-empty batch still measures each row as measure_index of that row
    two = measure_index(wave, np.stack([flux, 2 * flux]), "Mgb", medium="air")
    assert two.shape == (2,) and two[1] == pytest.approx(two[0], rel=1e-12)
    assert two[0] == pytest.approx(float(measure_index(wave, flux, "Mgb", medium="air")), rel=1e-12)


def test_band_mean_checks_the_axis_as_measure_index_does(miles_star):
    """band_mean took any wave: a flux of another length stopped in numpy ("cannot reshape array of size 1
    into shape (4,)") and a decreasing axis was called "outside the spectrum's 7409.6-3540.5 A" though the
    band lies inside it. Both are a ValueError naming the problem, as in measure_index."""
    from smnet_sps.lick import band_mean
    wave, flux = miles_star
    with pytest.raises(ValueError, match="match the last axis of flux"):
        band_mean(wave, np.ones((4, wave.size // 2)), 5000.0, 5010.0)
    with pytest.raises(ValueError, match="match the last axis of flux"):
        band_mean(wave, flux[:-1], 5000.0, 5010.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        band_mean(wave[::-1], flux[::-1], 5000.0, 5010.0)
    # the ordered axis still gives the mean of the MILES pixels in the band (within their spacing)
    inside = (wave > 4999) & (wave < 5011)
    assert band_mean(wave, flux, 5000.0, 5010.0) == pytest.approx(flux[inside].mean(), rel=0.02)


def test_an_empty_list_of_names_measures_no_index(miles_star):
    """measure_indices(wave, flux, []) returned all four indices (``names or LICK_INDICES``), e.g. for a
    filtered list of wanted indices that came out empty; it returns {} and None still means all."""
    wave, flux = miles_star
    assert measure_indices(wave, flux, [], medium="air") == {}
    assert measure_indices(wave, flux, (), medium="air") == {}
    assert set(measure_indices(wave, flux, medium="air")) == set(LICK_INDICES)


def test_n_sub_below_two_is_refused():
    """n_sub = 0 integrated 1 - F/F_c over the pixel centres inside the band only (its edges dropped): a box
    line of depth 0.5 over one 20 A pixel gave Mgb 0.0 instead of ~9 A (n_sub 1: 4.74). Refused now."""
    wave = np.arange(4000.0, 6000.0, 20.0)
    flux = np.where(np.abs(wave - 5180.0) < 1.0, 0.5, 1.0)
    ref = measure_index(wave, flux, "Mgb")
    # the line is linear between pixel centres: a triangle of depth 0.5 and base 40 A, i.e. 10 A on a flat
    # continuum, a little less as both side bands reach into its wings (8.954 A with an independent 0.5 mA
    # trapezoid of the published definition)
    assert ref == pytest.approx(8.954, abs=2e-3)
    assert measure_index(wave, flux, "Mgb", n_sub=2) == pytest.approx(ref, abs=0.05)
    for bad in (0, 1, -5, 2.5, True):
        with pytest.raises(ValueError, match="n_sub must be a whole number >= 2"):
            measure_index(wave, flux, "Mgb", n_sub=bad)


def test_a_spectrum_is_measured_in_the_medium_its_meta_states(miles_star):
    """measure_index took no Spectrum: its axis and flux passed on their own were read as vacuum, so an air
    spectrum (to_medium(spec, "air"), MILES) gave Fe5335 1.152 A instead of 1.486, Mgb 0.965 for 0.826,
    silently. A Spectrum is now measured in the medium its meta states; a contradicting medium is refused."""
    import astropy.units as u
    from specutils import Spectrum
    wave, flux = miles_star
    ref = measure_indices(wave, flux, medium="air")
    spec = Spectrum(flux=flux * u.Unit("erg s-1 cm-2 AA-1"), spectral_axis=wave * u.AA,
                    meta={"wavelength_medium": "air"})
    got = measure_indices(spec)
    for name in ref:
        assert got[name] == pytest.approx(ref[name], rel=1e-12), name
        assert measure_index(spec, name) == pytest.approx(ref[name], rel=1e-12), name
    assert list(measure_indices(spec, "Mgb")) == ["Mgb"]
    assert measure_index(spec, "Mgb", medium="air") == pytest.approx(ref["Mgb"], rel=1e-12)
    # the axis read as vacuum is measurably off: the test sees the old behaviour
    assert abs(measure_index(wave, flux, "Fe5335") - ref["Fe5335"]) > 0.2
    with pytest.raises(ValueError, match="meta states 'air'"):
        measure_index(spec, "Mgb", medium="vacuum")
    with pytest.raises(ValueError, match="carries its own flux"):
        measure_index(spec, flux, "Mgb")
    # no medium stated: vacuum, as the package's spectra; a masked pixel in a band: NaN, not its value
    vac = Spectrum(flux=flux * u.Unit("erg s-1 cm-2 AA-1"), spectral_axis=wave * u.AA)
    assert measure_index(vac, "Mgb") == pytest.approx(measure_index(wave, flux, "Mgb"), rel=1e-12)
    lo, hi = index_bands("Mgb", "air")[1]
    masked = Spectrum(flux=flux * u.Unit("erg s-1 cm-2 AA-1"), spectral_axis=wave * u.AA,
                      meta={"wavelength_medium": "air"}, mask=(wave > lo) & (wave < lo + 3))
    assert np.isnan(measure_index(masked, "Mgb")) and np.isfinite(measure_index(masked, "Hbeta"))


def test_a_non_finite_wavelength_is_refused(miles_star):
    """A NaN wavelength passed the axis check (NaN <= 0 is False): one in Mgb's blue band gave 0.8241 A for
    0.8259, one in its central band NaN, an inf at the end nothing at all. Refused, naming the pixel."""
    from smnet_sps.lick import band_mean
    wave, flux = miles_star
    for pos, value in ((int(np.searchsorted(wave, 5150.0)), np.nan), (wave.size - 1, np.inf), (100, np.nan)):
        bad = wave.copy()
        bad[pos] = value
        with pytest.raises(ValueError, match=f"wave must be finite; 1 value.*pixel {pos}"):
            measure_index(bad, flux, "Mgb", medium="air")
        with pytest.raises(ValueError, match="wave must be finite"):
            band_mean(bad, flux, 5140.0, 5160.0)


def test_table_columns_and_masked_fluxes(miles_star):
    """np.asarray dropped a table column's unit and a masked array's mask: a flux column in mJy was measured
    as F_lambda, a wavelength column in nm as Angstrom (the index refused as outside the spectrum), and the
    values under a mask as data (garbage under Mgb's central band gave an index hundreds of A off). A column
    now counts as its Quantity, masked flux elements are NaN as a Spectrum's masked pixels (the indices that
    use them NaN, the others unchanged), and a masked wavelength is refused."""
    import astropy.units as u
    from astropy.table import Column, MaskedColumn
    from smnet_sps.lick import band_mean
    wave, flux = miles_star
    flam = flux * 1e-15 * u.erg / u.s / u.cm ** 2 / u.AA
    fnu = flam.to(u.mJy, equivalencies=u.spectral_density(wave * u.AA))
    ref = measure_indices(wave, flux, medium="air")
    wave_col, fnu_col = Column(wave / 10.0, unit="nm"), Column(fnu.value, unit="mJy")
    got = measure_indices(wave_col, fnu_col, medium="air")
    for name in ref:
        assert got[name] == pytest.approx(ref[name], rel=1e-9, abs=1e-12), name
    mean = band_mean(wave_col, fnu_col, 5000.0, 5010.0)
    assert mean.unit == u.mJy
    assert mean.value == pytest.approx(band_mean(wave, fnu, 5000.0, 5010.0).value, rel=1e-12)
    # garbage under a mask in Mgb's central band: Mgb NaN, the indices away from it as before
    mgb = index_bands("Mgb", "air")[1]
    hidden = (wave > mgb[0] + 5) & (wave < mgb[1] - 5)
    garbage = np.where(hidden, -99.0, flux)
    for masked in (np.ma.array(garbage, mask=hidden), MaskedColumn(fnu.value * np.where(hidden, -99.0, 1.0),
                                                                   mask=hidden, unit="mJy")):
        got = measure_indices(wave, masked, medium="air")
        assert np.isnan(got["Mgb"])
        for name in ("Hbeta", "Fe5335"):
            assert got[name] == pytest.approx(ref[name], rel=1e-9, abs=1e-12), name
    assert measure_index(wave, np.ma.array(flux), "Mgb", medium="air") == ref["Mgb"]   # nothing masked
    # a flux column whose unit astropy cannot parse (SDSS's '1E-17 erg/cm^2/s/Ang') is plain numbers, as the
    # docs say of any unit an index cannot use; it was refused with a message suggesting u.K
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", u.UnitsWarning)
        sdss = Column(flux, unit="1E-17 erg/cm^2/s/Ang/spaxel")
        sdss_masked = MaskedColumn(garbage, mask=hidden, unit="1E-17 erg/cm^2/s/Ang/spaxel")
    assert isinstance(sdss.unit, u.UnrecognizedUnit)
    assert measure_index(wave, sdss, "Mgb", medium="air") == pytest.approx(ref["Mgb"], rel=1e-12)
    assert np.isnan(measure_index(wave, sdss_masked, "Mgb", medium="air"))
    with pytest.raises(ValueError, match="wave is a masked array with 1 masked value"):
        measure_index(np.ma.array(wave, mask=wave == wave[100]), flux, "Mgb", medium="air")


def test_a_flux_column_in_nanomaggies_is_read_as_the_package_reads_file_units(miles_star):
    """A flux column whose unit astropy cannot parse went to lick's own plain-numbers branch before the
    package's file-unit rule (medium._reparse_unit) was tried: a FITS TUNIT 'nanomaggies' (AB F_nu) was
    measured as F_lambda numbers (Fe5270 off by the F_nu -> F_lambda tilt), where a Quantity in u.nmgy was
    converted. It now reads as u.nmgy, as everywhere else; a unit that still cannot be read stays numbers."""
    import warnings

    import astropy.units as u
    from astropy.table import Column
    wave, flux = miles_star
    flam = flux * 1e-17 * u.erg / u.s / u.cm ** 2 / u.AA
    nmgy = (flam.to(u.Jy, equivalencies=u.spectral_density(wave * u.AA)) / (3631.0 * u.Jy)).decompose() * 1e9
    ref = measure_indices(wave, flux, medium="air")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", u.UnitsWarning)
        col = Column(nmgy.value, unit=u.Unit("nanomaggies", parse_strict="silent"))
    assert isinstance(col.unit, u.UnrecognizedUnit)
    got = measure_indices(wave, col, medium="air")
    assert got == pytest.approx(measure_indices(wave, nmgy.value * u.nmgy, medium="air"), rel=1e-9)
    for name in ref:                              # Mgb was 0.8215 for 0.8259, Hbeta 5.0247 for 5.0299
        assert got[name] == pytest.approx(ref[name], rel=1e-9, abs=1e-12), name
    assert measure_index(wave, Column(flux, unit=u.Unit("blobs", parse_strict="silent")), "Mgb",
                         medium="air") == pytest.approx(ref["Mgb"], rel=1e-12)    # unreadable: numbers
    # a QTable's column is a Quantity holding the unit astropy did not read: the same reading (it failed in
    # astropy's arithmetic: "The unit 'nanomaggies' is unrecognized"), an unreadable one numbers as well
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", u.UnitsWarning)
        unread = u.Quantity(nmgy.value, u.Unit("nanomaggies", parse_strict="silent"))
        blobs = u.Quantity(flux, u.Unit("blobs", parse_strict="silent"))
    assert measure_indices(wave, unread, medium="air") == pytest.approx(got, rel=1e-12)
    assert measure_index(wave, blobs, "Mgb", medium="air") == pytest.approx(ref["Mgb"], rel=1e-12)


def test_one_spectrum_gives_plain_numbers_that_round_and_serialise(miles_star):
    """One spectrum's index was a 0-d ndarray: ``round(v, 2)`` raised "type numpy.ndarray doesn't define
    __round__ method" and ``json.dumps`` of measure_indices' dict "Object of type ndarray is not JSON
    serializable". Now a float; a batch still gives one value per spectrum."""
    import json
    wave, flux = miles_star
    one = measure_indices(wave, flux, medium="air")
    assert all(isinstance(v, float) for v in one.values())
    assert round(one["Mgb"], 2) == pytest.approx(one["Mgb"], abs=5e-3)
    assert json.loads(json.dumps(one)) == pytest.approx(one)
    batch = measure_indices(wave, np.stack([flux, 2 * flux]), medium="air")
    assert all(v.shape == (2,) for v in batch.values())
    assert batch["Fe5270"] == pytest.approx([one["Fe5270"]] * 2, rel=1e-12)


def test_an_empty_spectrum_is_refused_by_name():
    """An empty spectrum (0 pixels: a wavelength cut that kept nothing) ended in numpy's IndexError ('index 0
    is out of bounds for axis 0 with size 0') in measure_index, measure_indices and band_mean; it is now a
    ValueError saying a band needs at least 2 wavelengths."""
    from smnet_sps.lick import band_mean
    empty = np.array([])
    for call in (lambda: measure_index(empty, empty, "Mgb"), lambda: measure_indices(empty, empty),
                 lambda: measure_index(empty, np.zeros((3, 0)), "Mgb"),
                 lambda: band_mean(empty, empty, 5000, 5100)):
        with pytest.raises(ValueError, match="at least 2 wavelengths to measure a band on; got 0"):
            call()
