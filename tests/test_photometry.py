"""Synthetic photometry: analytic blackbodies, the CALSPEC Sun, synphot agreement, error handling,
redshift."""
import warnings

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits

from smnet_sps.constants import C_ANGSTROM, FLAM_UNIT, L_SUN, MBOL_SUN, PC_CM
from smnet_sps.filters import get_bandpass, resolve_filters
from smnet_sps.generator import BlackbodyGenerator, planck_surface_flux
from smnet_sps.photometry import AU_CM, magnitudes, parse_ages, ssp_photometry

FILTERS = ["sdss2010-g", "sdss2010-r", "bessell-V", "twomass-Ks", "galex-nuv", "sdss_i0"]


@pytest.fixture(scope="module")
def sun_10pc(fixtures_dir):
    """CALSPEC Sun (sun_reference_stis_001, at 1 AU) moved to 10 pc."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # float TNULL keywords in the CALSPEC header
        with fits.open(fixtures_dir / "spectra" / "sun_reference_stis_001.fits") as hdul:
            w = np.asarray(hdul[1].data["WAVELENGTH"], float)
            f = np.asarray(hdul[1].data["FLUX"], float)
    return w * u.AA, f * (AU_CM / (10 * PC_CM)) ** 2 * FLAM_UNIT


def _ab_direct(wave, flam, filt):
    """AB magnitude by direct numerical integration, independent of synphot.

    Photon-counting mean f_nu = int f_nu T dnu/nu / int T dnu/nu = int f_lam T lam dlam / int T c/lam dlam,
    evaluated on a fine grid with the analytic spectrum.
    """
    import speclite.filters as sf
    f = sf.load_filter(filt)
    lam = np.linspace(f.wavelength[0], f.wavelength[-1], 200001)
    thr = np.interp(lam, f.wavelength, f.response)
    num = np.trapezoid(flam(lam) * thr * lam, lam)
    den = np.trapezoid(thr * C_ANGSTROM / lam, lam)
    return -2.5 * np.log10(num / den) - 48.60


@pytest.mark.parametrize("teff", [3500.0, 5800.0, 12000.0])
@pytest.mark.parametrize("filt", ["sdss2010-g", "bessell-V", "twomass-Ks"])
def test_blackbody_matches_direct_integration(teff, filt):
    # A fine grid (1 A) so that linear interpolation of the Planck curve is exact to << 1e-3 mag.
    wave = np.arange(1000.0, 30000.0, 1.0)
    flux = planck_surface_flux(wave, [teff])[0] * 1e-20       # some distance, any scale
    got = magnitudes((wave * u.AA, flux * FLAM_UNIT), [filt])[filt][0]
    want = _ab_direct(wave, lambda lam: planck_surface_flux(lam, [teff])[0] * 1e-20, filt)
    assert got == pytest.approx(want, abs=1e-3)


def test_sun_absolute_magnitudes(sun_10pc):
    v = magnitudes(sun_10pc, "bessell-V", system="Vega")["bessell-V"][0]
    r = magnitudes(sun_10pc, "sdss2010-r", system="AB")["sdss2010-r"][0]
    assert v == pytest.approx(4.79, abs=0.03)
    assert r == pytest.approx(4.64, abs=0.03)
    # radius= treats the 1 AU spectrum as a "surface" at 1 AU: same answer at 10 pc.
    w, f = sun_10pc
    f1au = f * (10 * PC_CM / AU_CM) ** 2
    v2 = magnitudes((w, f1au), "bessell-V", system="Vega", radius=1 * u.au,
                    distance=10 * u.pc)["bessell-V"][0]
    assert v2 == pytest.approx(v, abs=1e-9)


@pytest.mark.parametrize("system", ["AB", "ST", "Vega"])
def test_vectorised_equals_synphot(system, rng):
    gen = BlackbodyGenerator()
    teff = rng.uniform(3000, 40000, 5)
    spec, _ = gen.spectra(teff, 4.0, 0.0)
    # Add structure (absorption-like dips) so the test is not only smooth curves.
    flux = spec.flux.value * (1 - 0.5 * rng.random(spec.flux.shape) ** 8)
    data = (spec.spectral_axis, flux * spec.flux.unit)
    fast = magnitudes(data, FILTERS, system=system)
    slow = magnitudes(data, FILTERS, system=system, method="synphot")
    for col in fast.colnames:
        np.testing.assert_allclose(np.asarray(fast[col]), np.asarray(slow[col]), rtol=0, atol=1e-6)
    assert fast[FILTERS[0]].unit == {"AB": u.ABmag, "ST": u.STmag, "Vega": u.mag}[system]
    assert fast.meta["system"] == system and len(fast) == 5


def test_vega_is_zero_in_vega_system():
    from smnet_sps.photometry import vega_spectrum
    w, f = vega_spectrum()
    t = magnitudes((w * u.AA, f * FLAM_UNIT), ["bessell-V", "sdss2010-r", "twomass-Ks"], system="Vega")
    for col in t.colnames:
        assert abs(t[col][0]) < 1e-9


def test_single_1d_spectrum_and_units(sun_10pc):
    w, f = sun_10pc
    t = magnitudes((w, f), ["sdss2010-g", "sdss2010-r"])
    assert len(t) == 1 and t.colnames == ["sdss2010-g", "sdss2010-r"]
    # Same flux in f_nu [Jy] gives the same magnitude.
    fnu = f.to(u.Jy, u.spectral_density(w))
    t2 = magnitudes((w, fnu), ["sdss2010-g", "sdss2010-r"])
    np.testing.assert_allclose(np.asarray(t2["sdss2010-g"]), np.asarray(t["sdss2010-g"]), atol=1e-9)


def test_partial_filter_raises_unless_extrapolate():
    gen = BlackbodyGenerator(wavelength=np.arange(3000.0, 12000.0, 10.0))
    spec, _ = gen.spectra([5800.0], 4.0, 0.0)
    with pytest.raises(ValueError, match=r"galex-fuv.*1330.*3000-11990"):
        magnitudes(spec, ["galex-fuv"])
    with pytest.raises(ValueError, match="sdss2010-u"):
        magnitudes(spec, ["sdss2010-u"])
    t = magnitudes(spec, ["sdss2010-u"], extrapolate=True)
    slow = magnitudes(spec, ["sdss2010-u"], extrapolate=True, method="synphot")
    assert abs(t["sdss2010-u"][0] - slow["sdss2010-u"][0]) < 1e-6
    # Zero-extension makes the spectrum fainter than the full one, never brighter.
    full, _ = BlackbodyGenerator(wavelength=np.arange(2000.0, 12000.0, 10.0)).spectra([5800.0], 4.0, 0.0)
    assert t["sdss2010-u"][0] > magnitudes(full, ["sdss2010-u"])["sdss2010-u"][0]
    with pytest.warns(UserWarning, match="inf"):
        t = magnitudes(spec, ["galex-fuv"], extrapolate=True)
    assert np.isinf(t["galex-fuv"][0])


def test_extrapolated_filters_are_flagged_with_their_share_outside_the_spectrum():
    """extrapolate=True took the spectrum as zero beyond it without a word: a 3540-7410 A (MILES) blackbody's
    sdss u, 37 % of its weight outside it, came out 0.43 mag faint among good magnitudes. It now warns,
    naming each zero-extended filter and its share of weight outside, and meta["weight_outside_spectrum"]
    holds the shares; filters inside the spectrum are not named."""
    w = np.arange(3540.0, 7410.0, 0.9)
    data = (w * u.AA, planck_surface_flux(w, [5800.0])[0] * FLAM_UNIT)
    wide = np.arange(2000.0, 12000.0, 0.9)
    full = magnitudes((wide * u.AA, planck_surface_flux(wide, [5800.0])[0] * FLAM_UNIT), ["sdss2010-u"])
    with pytest.warns(UserWarning, match=r"1 filter\(s\) reach beyond the spectrum \(3540-7409.* sdss2010-u "
                                         r"\(0\.368 of its weight outside\)$") as seen:
        t = magnitudes(data, ["sdss2010-u", "sdss2010-r"], extrapolate=True)
    assert len(seen) == 1 and "sdss2010-r" not in str(seen[0].message)
    assert t["sdss2010-u"][0] - full["sdss2010-u"][0] > 0.4
    assert list(t.meta["weight_outside_spectrum"]) == ["sdss2010-u"]
    assert 0.36 < t.meta["weight_outside_spectrum"]["sdss2010-u"] < 0.38
    with pytest.warns(UserWarning, match=r"observed frame at z=0\.1.*sdss2010-u"):
        magnitudes(data, ["sdss2010-u"], extrapolate=True, redshift=0.1, radius=1 * u.R_sun)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert magnitudes(data, ["sdss2010-r"], extrapolate=True).meta["weight_outside_spectrum"] == {}


def test_a_filter_cut_inside_its_last_segment_is_flagged_with_the_share_cut():
    """The share outside was taken on the filter's own points only: a box filter (points every 200 A, 1 over
    5000-6000 A, 0 at 4800 and 6200) on a flat f_lambda spectrum ending at 6099 A lost 2.4 % of its weight
    (ST -21.074 instead of -21.100) and was not flagged (share 0). The spectrum's end is now a point of the
    share: 0.0235, within 1e-3 of the flux lost."""
    from synphot import SpectralElement
    from synphot.models import Empirical1D
    wb = np.arange(4800.0, 6201.0, 200.0)
    box = SpectralElement(Empirical1D, points=wb * u.AA, lookup_table=np.r_[0.0, np.ones(6), 0.0],
                          meta={"name": "box"})
    w = np.arange(3000.0, 6100.0, 1.0)
    full = np.arange(3000.0, 7000.0, 1.0)
    ref = magnitudes((full * u.AA, np.ones(full.size) * FLAM_UNIT), [box], system="ST")[0][0]
    with pytest.warns(UserWarning, match=r"box \(0\.02\d* of its weight outside\)"):
        t = magnitudes((w * u.AA, np.ones(w.size) * FLAM_UNIT), [box], system="ST", extrapolate=True)
    lost = 1 - 10 ** (-0.4 * (t[0][0] - ref))
    assert lost > 0.02
    assert t.meta["weight_outside_spectrum"]["box"] == pytest.approx(lost, abs=1e-3)


def test_a_filter_beyond_a_redshifted_spectrum_names_the_range_in_both_frames():
    """At z > 0 the coverage error named only the observed-frame range (a 3000-10000 A spectrum at z = 0.5:
    "4500-14997 A"), a range the user never gave; it now also says it is the observed frame and gives the
    range at rest."""
    w = np.arange(3000.0, 10000.0, 2.0)
    data = (w * u.AA, planck_surface_flux(w, [6000.0])[0] * FLAM_UNIT)
    with pytest.raises(ValueError, match=r"'sdss2010-g' .*\(4500-14997 A, observed frame at z=0\.5: "
                                         r"3000-9998 A at rest\)"):
        magnitudes(data, ["sdss2010-g"], redshift=0.5, radius=1 * u.R_sun)
    with pytest.raises(ValueError, match=r"\(3000-9998 A\); use a filter"):
        magnitudes(data, ["galex-nuv"])


def test_unknown_filter_suggests_close_names():
    with pytest.raises(ValueError, match=r"unknown filter 'sdss2010-R'.*sdss2010-r"):
        get_bandpass("sdss2010-R")
    with pytest.raises(ValueError, match=r"galex-nuv"):
        magnitudes((np.arange(1000, 5000.0) * u.AA, np.ones(4000) * FLAM_UNIT), ["galex-NUV"])


@pytest.mark.parametrize("band, expected", [("V", ["bessell-V", "bessell_V"]),
                                            ("Ks", ["twomass-Ks", "twomass_Ks"]), ("U", ["bessell-U"]),
                                            ("r", ["sdss2010-r", "panstarrs-r"])])
def test_a_bare_band_suggests_the_filters_of_that_band(band, expected):
    """A bare band, as a user types it, got no help: "V" suggested only vista_vircam_* (its first letter),
    "Ks" and "" nothing useful ("" got BASS-g, BASS-r, Euclid-*). A bare band now suggests the names of
    that band; an empty name says it is empty."""
    with pytest.raises(ValueError, match="Did you mean") as err:
        get_bandpass(band)
    shown = str(err.value).split("Did you mean: ")[1].split("?")[0].split(", ")
    assert set(expected) <= set(shown), shown
    with pytest.raises(ValueError, match="empty filter name"):
        get_bandpass(" ")


@pytest.mark.parametrize("name, first", [("NIRCam_F150W", "jwst_f150w"), ("JWST/NIRCam.F150W", "jwst_f150w"),
                                         ("nircam_f444w", "jwst_f444w"),
                                         ("HST/ACS_WFC.F814W", "acs_wfc_f814w"),
                                         ("hst_wfc3_f160w", "wfc3_ir_f160w")])
def test_an_instrument_qualified_band_suggests_that_band(name, first):
    """A high-z user's JWST / HST names, as SVO's Filter Profile Service and papers write them, got no hint
    ("NIRCam_F150W", "JWST/NIRCam.F150W", "HST/ACS_WFC.F814W") or another instrument's curve first
    ("nircam_f150w" -> jwst_niriss_f150w). The names ending in that band now come first, sedpy's NIRCam
    curve (jwst_f150w) before NIRISS's."""
    pytest.importorskip("sedpy")
    with pytest.raises(ValueError, match="Did you mean") as err:
        get_bandpass(name)
    shown = str(err.value).split("Did you mean: ")[1].split("?")[0].split(", ")
    assert shown[0] == first, shown


def test_nan_flux_raises():
    w = np.arange(3000.0, 10000.0, 10.0)
    f = planck_surface_flux(w, [6000.0])[0]
    f[np.searchsorted(w, 6200.0)] = np.nan          # inside sdss r
    with pytest.raises(ValueError, match=r"non-finite.*sdss2010-r"):
        magnitudes((w * u.AA, f * FLAM_UNIT), ["sdss2010-r"])
    # NaN outside every requested filter is harmless; inside, extrapolate=True zero-fills it.
    ok = magnitudes((w * u.AA, f * FLAM_UNIT), ["sdss2010-g"])
    assert np.isfinite(ok["sdss2010-g"][0])
    with pytest.warns(UserWarning, match="non-finite"):
        magnitudes((w * u.AA, f * FLAM_UNIT), ["sdss2010-r"], extrapolate=True)


def _spectrum_with_masked_garbage():
    """A power law with garbage (1e5 x the flux) at 6000-6500 A, inside sdss r, and a mask over it."""
    w = np.geomspace(900.0, 3e5, 5000)
    f = (w / 5000.0) ** -2 * 1e-15
    bad = (w > 6000) & (w < 6500)
    garbage = np.where(bad, 1e-10, f)
    return w, f, garbage, bad


def test_masked_flux_is_treated_like_nan():
    """A Spectrum.mask or an astropy Masked flux marks bad pixels: they were integrated as good (the garbage
    under the mask made sdss r 4.51 instead of 16.60 mag)."""
    from astropy.utils.masked import Masked
    from specutils import Spectrum
    w, f, garbage, bad = _spectrum_with_masked_garbage()
    as_nan = np.where(bad, np.nan, f)
    with pytest.warns(UserWarning, match="non-finite"):
        want = magnitudes((w * u.AA, as_nan * FLAM_UNIT), ["sdss2010-g", "sdss2010-r"], extrapolate=True)
    clean = magnitudes((w * u.AA, f * FLAM_UNIT), ["sdss2010-g", "sdss2010-r"])
    for masked in (Spectrum(flux=garbage * FLAM_UNIT, spectral_axis=w * u.AA, mask=bad),
                   (w * u.AA, Masked(garbage * FLAM_UNIT, mask=bad))):
        with pytest.raises(ValueError, match=r"masked.*inside filter 'sdss2010-r'"):
            magnitudes(masked, ["sdss2010-r"])
        # outside every requested filter a masked pixel does not matter
        np.testing.assert_allclose(magnitudes(masked, ["sdss2010-g"])["sdss2010-g"], clean["sdss2010-g"],
                                   atol=1e-12)
        with pytest.warns(UserWarning, match="masked"):
            got = magnitudes(masked, ["sdss2010-g", "sdss2010-r"], extrapolate=True)
        for col in got.colnames:
            np.testing.assert_allclose(got[col], want[col], atol=1e-12)
        assert got["sdss2010-r"][0] > clean["sdss2010-r"][0]     # the masked light is missing, not added
    # a batch: the mask of the second spectrum does not touch the first
    batch = Spectrum(flux=np.vstack([f, garbage]) * FLAM_UNIT, spectral_axis=w * u.AA,
                     mask=np.vstack([np.zeros_like(bad), bad]))
    with pytest.raises(ValueError, match=f"spectrum 1 has {int(bad.sum())} non-finite"):
        magnitudes(batch, ["sdss2010-r"])
    with pytest.warns(UserWarning, match="masked"):
        got = magnitudes(batch, ["sdss2010-r"], extrapolate=True)["sdss2010-r"]
    np.testing.assert_allclose(got, [clean["sdss2010-r"][0], want["sdss2010-r"][0]], atol=1e-12)
    # a masked wavelength has no place to put its pixel
    with pytest.raises(ValueError, match="wavelengths are a masked array"):
        magnitudes((Masked(w * u.AA, mask=bad), f * FLAM_UNIT), ["sdss2010-r"])


def test_bad_inputs_raise_clearly():
    w = np.arange(3000.0, 10000.0, 10.0) * u.AA
    f = np.ones(w.size) * FLAM_UNIT
    with pytest.raises(ValueError, match="system.*AB, ST, Vega"):
        magnitudes((w, f), "sdss2010-r", system="johnson")
    with pytest.raises(ValueError, match="neither a flux density"):
        magnitudes((w, np.ones(w.size) * u.m), "sdss2010-r")
    with pytest.raises(ValueError, match="distance applies"):
        magnitudes((w, f), "sdss2010-r", distance=10 * u.pc)
    with pytest.raises(ValueError, match="redshift"):
        magnitudes((w, f), "sdss2010-r", redshift=-1)
    with pytest.raises(ValueError, match="does not match"):
        magnitudes((w, np.ones(10) * FLAM_UNIT), "sdss2010-r")
    with pytest.raises(ValueError, match="method"):
        magnitudes((w, f), "sdss2010-r", method="fast")


def test_filter_file_and_bad_file(tmp_path):
    import speclite.filters as sf
    r = sf.load_filter("sdss2010-r")
    path = tmp_path / "myr.dat"
    np.savetxt(path, np.column_stack([r.wavelength, r.response]), header="wavelength_A throughput")
    w = np.arange(3000.0, 10000.0, 10.0)
    data = (w * u.AA, planck_surface_flux(w, [6000.0])[0] * FLAM_UNIT)
    t = magnitudes(data, [str(path), "sdss2010-r"])
    assert t.colnames == ["myr", "sdss2010-r"]
    assert abs(t["myr"][0] - t["sdss2010-r"][0]) < 1e-9
    bad = tmp_path / "bad.dat"
    bad.write_text("4000 0.5\n3000 0.2\n")
    with pytest.raises(ValueError, match="strictly increasing"):
        resolve_filters([str(bad)])
    bad.write_text("not a filter\n")
    with pytest.raises(ValueError, match="two-column"):
        resolve_filters([str(bad)])
    # an empty file, or one of comments only, was said to have "1 column(s)"
    bad.write_text("# wavelength [A]  throughput\n")
    with pytest.warns(UserWarning, match="no data"), pytest.raises(ValueError, match="holds no data rows"):
        resolve_filters([str(bad)])


def test_a_filter_file_in_nm_or_micron_is_read_in_the_unit_its_header_states(tmp_path):
    """Every filter file was read as Angstrom: sdss2010-r in nm with LSST's header '# Wavelength(nm)
    Throughput(0-1)' gave a 5800 K blackbody's surface flux AB -8.32 instead of -38.56 (the curve at
    538-704 A), without a word. A unit stated in a comment line is now followed; a curve stating none below
    912 A warns."""
    import speclite.filters as sf
    r = sf.load_filter("sdss2010-r")
    wr, thr = np.asarray(r.wavelength, float), np.asarray(r.response, float)
    w = np.geomspace(91.0, 1.6e6, 20000)                      # a generator's range: the nm curve fits in
    data = (w * u.AA, planck_surface_flux(w, [5800.0])[0] * FLAM_UNIT)
    ref = magnitudes(data, ["sdss2010-r"])[0][0]
    np.savetxt(tmp_path / "old.dat", np.column_stack([wr / 10, thr]), header="wavelength [A]")
    assert magnitudes(data, [str(tmp_path / "old.dat")])[0][0] - ref > 25     # what the nm file gave
    files = {"nm.dat": (wr / 10, "Wavelength(nm)  Throughput(0-1)"),
             "nmin.dat": (wr / 10, "wavelength in nm"), "um.dat": (wr / 1e4, "lambda (micron) T"),
             "aa.dat": (wr, ' Units:\n  "lambda" is in Angstroms')}
    for fname, (wave, header) in files.items():
        np.savetxt(tmp_path / fname, np.column_stack([wave, thr]), header=header)
        assert magnitudes(data, [str(tmp_path / fname)])[0][0] == pytest.approx(ref, abs=1e-9), fname
    # no unit stated: Angstrom, as before; one that looks like a built-in filter in micron is refused
    np.savetxt(tmp_path / "plain_um.dat", np.column_stack([wr / 1e4, thr]))
    with pytest.raises(ValueError, match=r"states no wavelength unit.*as micron it looks like.*'sdss2010-r'"):
        get_bandpass(str(tmp_path / "plain_um.dat"))
    np.savetxt(tmp_path / "plain_aa.dat", np.column_stack([wr, thr]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get_bandpass(str(tmp_path / "plain_aa.dat"))[1].waveset.to_value(u.AA)[0] == wr[0]


def test_a_filter_file_without_a_unit_is_read_by_the_built_in_filter_it_looks_like(tmp_path):
    """A header-less file of twomass-Ks in nm (1927-2399) was read as 1927-2399 A, the far UV, without a
    warning; the fix for it refused every header-less curve below 3200 A read as Angstrom, and with it SVO's
    Angstrom downloads of GALEX, Swift UVOT, HST UV filters (read correctly before), while wise2010-W1 in nm
    (2600-3990) passed silently as a U-like curve. A file stating no unit is now compared with the built-in
    curves read as Angstrom, nm and micron: GALEX in Angstrom gives the built-in's magnitude, Ks and W1 in
    nm are refused naming the filter they look like (and read right with wave_unit='nm'), and a custom box at
    2000 A is Angstrom, as before."""
    import speclite.filters as sf
    w = np.geomspace(91.0, 1.6e6, 20000)
    data = (w * u.AA, planck_surface_flux(w, [5800.0])[0] * FLAM_UNIT)
    for band, scale, word in (("galex-nuv", 1.0, "A"), ("galex-fuv", 1.0, "A"), ("twomass-Ks", 10.0, "nm"),
                              ("wise2010-W1", 10.0, "nm"), ("sdss2010-r", 1e4, "micron")):
        f = sf.load_filter(band)
        wave, thr = np.asarray(f.wavelength, float), np.asarray(f.response, float)
        ref = magnitudes(data, [band])[0][0]
        plain = tmp_path / f"{band}_{word}.dat"
        np.savetxt(plain, np.column_stack([wave / scale, thr]))
        if word == "A":
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                assert magnitudes(data, [str(plain)])[0][0] == pytest.approx(ref, abs=1e-9), band
        else:
            with pytest.raises(ValueError, match=rf"states no wavelength unit.*read as Angstrom looks like "
                                                 rf"no built-in filter, while read as {word} it looks like "
                                                 rf"the built-in '{band}'.*'# wavelength \[{word}\]'.*"
                                                 rf"wave_unit='{word}'.*by name \('{band}'\)"):
                get_bandpass(str(plain))
            bp = get_bandpass(str(plain), wave_unit=word)[1]
            assert magnitudes(data, [bp])[0][0] == pytest.approx(ref, abs=1e-9), band
        # the unit stated in the file gives the same, each spelling of the argument too
        stated = tmp_path / f"{band}_{word}_stated.dat"
        np.savetxt(stated, np.column_stack([wave / scale, thr]), header=f"wavelength [{word}]")
        assert magnitudes(data, [str(stated)])[0][0] == pytest.approx(ref, abs=1e-9), band
        unit = {"A": u.AA, "nm": u.nm, "micron": u.micron}[word]
        bp = get_bandpass(str(plain), wave_unit=unit)[1]
        assert magnitudes(data, [bp])[0][0] == pytest.approx(ref, abs=1e-9), band
    # a custom box filter at 1800-2200 A (its nm reading has NIRISS F200W's pivot and width, not its shape):
    # Angstrom, with a warning that a 1800-2200 nm box would read the same (it was read silently)
    box = tmp_path / "box.dat"
    np.savetxt(box, np.column_stack([[1799.0, 1800.0, 2200.0, 2201.0], [0.0, 1.0, 1.0, 0.0]]))
    with pytest.warns(UserWarning, match=r"looks like no built-in filter.*infrared curve in nm lands too"):
        assert get_bandpass(str(box))[1].waveset.to_value(u.AA)[0] == 1799.0
    np.savetxt(box, np.column_stack([[1799.0, 1800.0, 2200.0, 2201.0], [0.0, 1.0, 1.0, 0.0]]),
               header="wavelength [A]")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get_bandpass(str(box))[1].waveset.to_value(u.AA)[0] == 1799.0
    # both readings look like a built-in filter (MIRI F1500W in nm reads as NIRCam F150W in Angstrom, and
    # back): the reading whose shape is clearly closer wins (in A with a warning, F1500W in nm was 10x off;
    # then, refused as ambiguous, so was NIRCam F150W in A, as SVO's downloads are)
    import sedpy.observate as so
    for band, scale, word in (("jwst_f1500w", 10.0, "nm"), ("jwst_f150w", 1.0, "A")):
        f = so.Filter(band)
        np.savetxt(tmp_path / "amb.dat", np.column_stack([f.wavelength / scale, f.transmission]))
        ref = magnitudes(data, [band])[0][0]
        if word == "A":
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                assert magnitudes(data, [str(tmp_path / "amb.dat")])[0][0] == pytest.approx(ref, abs=1e-6)
        else:
            with pytest.raises(ValueError, match=rf"read as nm it looks like the built-in '{band}'"):
                get_bandpass(str(tmp_path / "amb.dat"))
    # a custom curve below the Lyman limit is Angstrom with the old warning
    np.savetxt(tmp_path / "euv.dat", np.column_stack([[500.0, 510.0, 700.0, 710.0], [0.0, 1.0, 1.0, 0.0]]))
    with pytest.warns(UserWarning, match=r"states no wavelength unit.*below the Lyman limit"):
        get_bandpass(str(tmp_path / "euv.dat"))
    # the argument against the file's statement, a non-length unit, and a unit for a name
    with pytest.raises(ValueError, match=r"states its wavelength unit as nm, but wave_unit='micron'"):
        get_bandpass(str(tmp_path / "twomass-Ks_nm_stated.dat"), wave_unit="micron")
    with pytest.raises(ValueError, match="wave_unit must be a wavelength unit"):
        get_bandpass(str(plain), wave_unit="kg")
    with pytest.raises(ValueError, match="is not an existing file"):
        get_bandpass("sdss2010-r", wave_unit="nm")


def test_a_csv_filter_file_is_read_with_the_text_files_unit_rules(tmp_path):
    """A CSV filter file (commas, a header line naming the columns) was refused: 'is not a two-column numeric
    table ... could not convert string 'wavelength' to float64'. It is read as a text file is: Angstrom unless
    a comment or its header line states the unit."""
    import speclite.filters as sf
    r = sf.load_filter("sdss2010-r")
    wr, thr = np.asarray(r.wavelength, float), np.asarray(r.response, float)
    w = np.geomspace(91.0, 1.6e6, 20000)
    data = (w * u.AA, planck_surface_flux(w, [5800.0])[0] * FLAM_UNIT)
    ref = magnitudes(data, ["sdss2010-r"])[0][0]
    files = {"nm.csv": (wr / 10, "wavelength [nm],throughput", ""),
             "lsst.csv": (wr / 10, "Wavelength(nm),Throughput(0-1)", ""),
             "um_comment.csv": (wr / 1e4, "wavelength [micron], throughput", "# "),
             "plain.csv": (wr, "wave,throughput", ""), "bare.csv": (wr, "", "")}
    for fname, (wave, header, comments) in files.items():
        np.savetxt(tmp_path / fname, np.column_stack([wave, thr]), delimiter=",", header=header,
                   comments=comments)
        assert magnitudes(data, [str(tmp_path / fname)])[0][0] == pytest.approx(ref, abs=1e-9), fname
    # no unit stated and the curve looks like a built-in filter in micron: refused, as a text file is
    np.savetxt(tmp_path / "um.csv", np.column_stack([wr / 1e4, thr]), delimiter=",", header="wave,thr",
               comments="")
    with pytest.raises(ValueError, match=r"states no wavelength unit.*as micron it looks like.*'sdss2010-r'"):
        get_bandpass(str(tmp_path / "um.csv"))
    # a header but no numbers is still no table
    (tmp_path / "words.csv").write_text("wavelength,throughput\nred,blue\n")
    with pytest.raises(ValueError, match="two-column"):
        get_bandpass(str(tmp_path / "words.csv"))


def test_sedpy_files_with_negative_noise_are_read_and_a_negative_lobe_is_refused(tmp_path):
    """17 of sedpy's own .par files hold tiny negative throughputs (sdss_r0: -0.0013 for a peak of 0.48;
    VISTA's down to -0.4 % of the peak), and every one was refused when given as a path, while sedpy reads
    them by name. Noise down to -1 % of the peak is now zero;
    Vega by path and by name agree to < 1 mmag."""
    import os

    import sedpy

    from smnet_sps.photometry import vega_spectrum
    folder = os.path.join(os.path.dirname(sedpy.__file__), "data", "filters")
    wv, fv = vega_spectrum()
    data = (wv * u.AA, fv * FLAM_UNIT)
    for name in ("sdss_r0", "vista_vircam_Z_FILTER", "spitzer_irs_16"):
        path = os.path.join(folder, f"{name}.par")
        assert np.genfromtxt(path, usecols=1).min() < 0                  # the file as it is: negative noise
        bp = get_bandpass(path)[1]
        assert np.asarray(bp(bp.waveset).value).min() == 0.0
        t = magnitudes(data, [path, name])
        assert abs(t[name][0] - t[t.colnames[0]][0]) < 1e-3, name
    # a real negative lobe (2 % of the peak) is no noise: refused, naming the value and the rule
    wave = np.linspace(5000.0, 6000.0, 101)
    thr = np.exp(-0.5 * ((wave - 5500.0) / 150.0) ** 2)
    thr[5] = -0.02
    np.savetxt(tmp_path / "lobe.dat", np.column_stack([wave, thr]), header="wavelength [A]")
    with pytest.raises(ValueError, match=r"1 throughput value\(s\) below -0.01 x the peak.*-0.02"):
        get_bandpass(str(tmp_path / "lobe.dat"))


def test_every_filter_gets_its_own_column_when_a_suffix_meets_a_files_name(tmp_path):
    """Duplicates got "_1", "_2" without looking at the other names: sdss2010-r twice and a g-band file named
    sdss2010-r_1.dat gave two columns for three filters (the second r's magnitude replaced by the g one's)."""
    import speclite.filters as sf
    g = sf.load_filter("sdss2010-g")
    path = tmp_path / "sdss2010-r_1.dat"
    np.savetxt(path, np.column_stack([g.wavelength, g.response]), header="wavelength [A]")
    names = [n for n, _ in resolve_filters(["sdss2010-r", "sdss2010-r", str(path)])]
    assert len(set(names)) == 3 and names[:2] == ["sdss2010-r", "sdss2010-r_1"]
    assert [n for n, _ in resolve_filters(["sdss2010-r"] * 3)] == ["sdss2010-r", "sdss2010-r_1",
                                                                    "sdss2010-r_2"]
    w = np.geomspace(1000.0, 1e5, 3000)
    t = magnitudes((w * u.AA, planck_surface_flux(w, [5800.0])[0] * FLAM_UNIT),
                   ["sdss2010-r", "sdss2010-r", str(path), "sdss2010-g"])
    assert len(t.colnames) == 4
    row = [t[c][0] for c in t.colnames]
    assert row[1] == pytest.approx(row[0], abs=1e-12) and row[2] == pytest.approx(row[3], abs=1e-9)
    assert abs(row[2] - row[0]) > 0.1


def test_redshift_flat_fnu_is_analytic():
    """A flat f_nu source (L_lambda ~ 1/lambda^2) at fixed luminosity distance brightens by 2.5 log(1+z)."""
    w = np.geomspace(500.0, 60000.0, 4000)
    lum = 1e20 * C_ANGSTROM / w ** 2 * u.Unit("erg s-1 AA-1")       # L_nu = 1e20 erg/s/Hz everywhere
    d = 100 * u.Mpc
    m0 = magnitudes((w * u.AA, lum), ["sdss2010-r", "twomass-J"], distance=d)
    want0 = -2.5 * np.log10(1e20 / (4 * np.pi * d.to_value(u.cm) ** 2)) - 48.60
    for z in (0.1, 0.5, 1.0):
        mz = magnitudes((w * u.AA, lum), ["sdss2010-r", "twomass-J"], distance=d, redshift=z)
        for col in mz.colnames:
            assert m0[col][0] == pytest.approx(want0, abs=1e-4)
            assert mz[col][0] - m0[col][0] == pytest.approx(-2.5 * np.log10(1 + z), abs=1e-4)
    # Without a distance, a luminosity spectrum at z > 0 sits at the Planck18 luminosity distance.
    from astropy.cosmology import Planck18
    mz = magnitudes((w * u.AA, lum), ["sdss2010-r"], redshift=0.5)
    dl = Planck18.luminosity_distance(0.5).to_value(u.cm)
    want = -2.5 * np.log10(1e20 * 1.5 / (4 * np.pi * dl ** 2)) - 48.60
    assert mz["sdss2010-r"][0] == pytest.approx(want, abs=1e-4)


def test_surface_flux_with_radius_at_redshift_sits_at_the_luminosity_distance():
    """radius= at z > 0 without distance: at d_L of the cosmology, like the same star given as a luminosity
    (it was put at 10 pc: sdss r 6.02 against 50.18 mag at z = 1)."""
    from astropy.cosmology import FlatLambdaCDM, Planck18
    spec, _ = BlackbodyGenerator().spectra(teff=[5800.0], logg=4.4, logz=0.0)
    radius = 1 * u.R_sun
    lum = (spec.flux * 4 * np.pi * radius ** 2).to(u.erg / u.s / u.AA)
    band = ["sdss2010-r"]
    for cosmology in (None, FlatLambdaCDM(H0=60, Om0=0.4)):         # None: Planck18
        d_l = (Planck18 if cosmology is None else cosmology).luminosity_distance(1.0)
        surface = magnitudes(spec, band, radius=radius, redshift=1, cosmology=cosmology)["sdss2010-r"][0]
        luminous = magnitudes((spec.spectral_axis, lum), band, redshift=1,
                              cosmology=cosmology)["sdss2010-r"][0]
        assert surface == pytest.approx(luminous, abs=1e-6)
        at_10pc = magnitudes(spec, band, radius=radius, distance=10 * u.pc, redshift=1)["sdss2010-r"][0]
        assert surface - at_10pc == pytest.approx(5 * np.log10(d_l.to_value(u.pc) / 10), abs=1e-6)
        explicit = magnitudes(spec, band, radius=radius, distance=d_l, redshift=1)["sdss2010-r"][0]
        assert surface == pytest.approx(explicit, abs=1e-6)
    # at z = 0 the default stays 10 pc (absolute magnitudes)
    assert magnitudes(spec, band, radius=radius)["sdss2010-r"][0] == pytest.approx(
        magnitudes(spec, band, radius=radius, distance=10 * u.pc)["sdss2010-r"][0], abs=1e-12)



def test_radius_and_distance_one_per_spectrum_as_in_a_star_catalogue():
    """A catalogue's radii and distances, one per star, scale each spectrum as the same star alone (they were
    refused: 'distance must be one positive finite length'); a luminosity batch takes one distance per
    spectrum too; a count that matches no spectrum count, or a bad value, names what is allowed."""
    spec, _ = BlackbodyGenerator().spectra(teff=[3500.0, 5800.0, 9600.0], logg=4.4, logz=0.0)
    radius, distance = [0.5, 1.0, 2.4] * u.R_sun, [1.8, 10.0, 7.7] * u.pc
    band = ["bessell-V", "twomass-Ks"]
    both = magnitudes(spec, band, system="Vega", radius=radius, distance=distance)
    for i in range(3):
        alone = magnitudes(spec[i], band, system="Vega", radius=radius[i], distance=distance[i])
        for col in band:
            assert both[col][i] == pytest.approx(alone[col][0], abs=1e-9)
    assert both.meta["distance_cm"] == pytest.approx(distance.to_value(u.cm))
    # one radius per star at the default 10 pc: absolute magnitudes, 5 log10 R apart from 1 R_sun stars
    absolute = magnitudes(spec, band, radius=radius)
    unit = magnitudes(spec, band, radius=1 * u.R_sun)
    assert np.asarray(unit["bessell-V"] - absolute["bessell-V"]) == pytest.approx(
        5 * np.log10(radius.to_value(u.R_sun)), abs=1e-9)
    lum = (spec.flux * 4 * np.pi * (1 * u.R_sun) ** 2).to(u.erg / u.s / u.AA)
    at_d = magnitudes((spec.spectral_axis, lum), band, distance=distance)
    assert np.asarray(at_d["bessell-V"] - unit["bessell-V"]) == pytest.approx(
        5 * np.log10(distance.to_value(u.pc) / 10), abs=1e-9)
    with pytest.raises(ValueError, match="one per spectrum \\(3 values\\)"):
        magnitudes(spec, band, radius=[1.0, 2.0] * u.R_sun)
    with pytest.raises(ValueError, match="spectrum 1 has"):
        magnitudes(spec, band, radius=radius, distance=[1.0, -2.0, 3.0] * u.pc)

def _fake_ssps(n=4):
    """SSP-like spectra: sums of blackbodies in L_sun/A per M_sun formed, with log_lbol in meta."""
    from specutils import Spectrum
    from smnet_sps.constants import SIGMA_SB
    w = np.geomspace(91.0, 1.6e6, 1221)
    ages = np.geomspace(1e7, 1e10, n)
    lum = np.zeros((n, w.size))
    lbol = np.zeros(n)
    for i, age in enumerate(ages):
        for teff, l_sun in ((30000.0 / (1 + age / 1e7), 100.0 / (1 + age / 1e8)), (4500.0, 1.0)):
            f = planck_surface_flux(w, [teff])[0]
            lum[i] += l_sun * f / (SIGMA_SB * teff ** 4)       # L_sun / A, integrates to l_sun
            lbol[i] += l_sun
    meta = {"log_lbol": np.log10(lbol), "mstar": np.full(n, 0.6)}
    return ages, Spectrum(flux=lum * u.L_sun / u.AA, spectral_axis=w * u.AA, meta=meta)


def test_ssp_photometry_on_ssp_like_spectra():
    ages, spec = _fake_ssps()
    with pytest.warns(UserWarning, match="no solar magnitude for 'wise2010-W3'"):
        t = ssp_photometry(ages * u.yr, spec, ["sdss2010-g", "sdss2010-r", "wise2010-W3"], redshift=0.3)
    np.testing.assert_allclose(t["M_bol"], MBOL_SUN - 2.5 * spec.meta["log_lbol"], atol=1e-12)
    np.testing.assert_allclose(t["age"], ages / 1e9)
    # M/L from the definition: M* / (L_band / L_sun,band), using the CALSPEC Sun's magnitude.
    msun = t.meta["M_sun"]["sdss2010-r"]
    assert msun == pytest.approx(4.64, abs=0.03)
    np.testing.assert_allclose(t["ML_sdss2010-r"], 0.6 * 10 ** (0.4 * (t["M_sdss2010-r"] - msun)))
    # W3 (12 micron) is beyond the CALSPEC Sun (2.7 micron): no M/L, stated in a warning, not a guess.
    assert np.all(np.isnan(t["ML_wise2010-W3"]))
    assert np.all(np.isfinite(t["m_obs_sdss2010-r"])) and t.meta["luminosity_distance_Mpc"] > 1000
    # Ages: young SSP bluer than old.
    gr = np.asarray(t["M_sdss2010-g"]) - np.asarray(t["M_sdss2010-r"])
    assert gr[0] < gr[-1]
    with pytest.raises(ValueError, match="ages must be positive"):
        ssp_photometry([-1, 1, 2, 3], spec, ["sdss2010-r"])
    with pytest.raises(ValueError, match="luminosity densities"):
        ssp_photometry(ages, (spec.spectral_axis, spec.flux.value * FLAM_UNIT), ["sdss2010-r"])


def test_ssp_luminosity_is_placed_at_10pc():
    ages, spec = _fake_ssps(1)
    t = magnitudes(spec, ["sdss2010-r"])
    w = spec.spectral_axis.value
    flam = spec.flux.value[0] * L_SUN / (4 * np.pi * (10 * PC_CM) ** 2)
    t2 = magnitudes((w * u.AA, flam * FLAM_UNIT), ["sdss2010-r"])
    assert t["sdss2010-r"][0] == pytest.approx(t2["sdss2010-r"][0], abs=1e-9)


def test_real_ssp_mbol_matches_metadata(default_generator):
    ssp = pytest.importorskip("smnet_sps.ssp", reason="smnet_sps.ssp not written yet")
    spec = ssp.ssp_spectrum(1 * u.Gyr, 0.0152, generator=default_generator)
    t = ssp_photometry([1e9], spec, ["sdss2010-r"], log_lbol=spec.meta["log_lbol"])
    assert t["M_bol"][0] == pytest.approx(MBOL_SUN - 2.5 * float(spec.meta["log_lbol"]), abs=0.01)
    # The bolometric flux of the spectrum itself agrees with log_lbol: independent check of units.
    lbol = np.trapezoid(spec.flux.to_value(u.L_sun / u.AA).ravel(), spec.spectral_axis.to_value(u.AA))
    assert MBOL_SUN - 2.5 * np.log10(lbol) == pytest.approx(t["M_bol"][0], abs=0.05)


def test_parse_ages():
    np.testing.assert_allclose(parse_ages("0.01-13Gyr", 3), [1e7, np.sqrt(0.01 * 13) * 1e9, 1.3e10])
    np.testing.assert_allclose(parse_ages("10,100Myr"), [1e7, 1e8])
    with pytest.raises(ValueError, match="unit"):
        parse_ages("1-2parsec")
    with pytest.raises(ValueError, match="positive"):
        parse_ages("0-1Gyr", 3)


def test_cli_mags_registered():
    from smnet_sps.cli import build_parser
    args = build_parser().parse_args(["mags", "--Z", "0.0152", "--filters", "sdss2010-g,sdss2010-r"])
    assert args.func.__name__ == "_cli_mags" and args.system == "AB"


def test_cli_mags_end_to_end(tmp_path, capsys):
    """`smnet-sps mags` through the real ssp_grid, with the analytic blackbody generator (no trained
    model)."""
    pytest.importorskip("smnet_sps.ssp", reason="smnet_sps.ssp not written yet")
    from astropy.table import Table
    from smnet_sps.cli import main
    out, png = tmp_path / "m.ecsv", tmp_path / "c.png"
    rc = main(["mags", "--Z", "0.0152", "--filters", "sdss2010-g,sdss2010-r", "--ages", "0.1-10Gyr",
               "--n-ages", "3", "--model", "blackbody", "--out", str(out), "--plot", str(png)])
    assert rc == 0 and png.stat().st_size > 10000
    t = Table.read(out)
    assert len(t) == 3 and {"M_bol", "M_sdss2010-g", "ML_sdss2010-r"} <= set(t.colnames)
    np.testing.assert_allclose(t["age"], [0.1, 1.0, 10.0], rtol=1e-9)
    gr = np.asarray(t["M_sdss2010-g"]) - np.asarray(t["M_sdss2010-r"])
    assert np.all(np.diff(gr) > 0)                    # populations redden with age
    assert "M_sdss2010-r" in capsys.readouterr().out
    assert main(["mags", "--Z", "0.0152", "--filters", "sdss2010-G", "--model", "blackbody"]) == 1
    assert "sdss2010-g" in capsys.readouterr().err
    # FITS keeps what it cannot hold natively: log units as text, dict metadata as JSON
    import json
    fits_out = tmp_path / "m.fits"
    assert main(["mags", "--Z", "0.0152", "--filters", "sdss2010-g,sdss2010-r", "--ages", "0.1-10Gyr",
                 "--n-ages", "3", "--model", "blackbody", "--out", str(fits_out)]) == 0
    f = Table.read(fits_out)
    np.testing.assert_allclose(f["log_age"], np.asarray(t["log_age"].value if hasattr(t["log_age"], "value")
                                                         else t["log_age"], float), rtol=1e-12)
    assert f.meta["UNIT_log_age"] == "dex(yr)"
    # magnitudes keep FITS's own unit 'mag' (they had none; the system is in UNIT_<column>)
    assert f["M_sdss2010-g"].unit == u.mag and f.meta["UNIT_M_sdss2010-g"] == "mag(AB)"
    assert set(json.loads(f.meta["M_SUN"])) == {"sdss2010-g", "sdss2010-r"}


def test_duplicate_filter_keeps_every_column():
    """resolve_filters suffixes a repeated filter ("sdss2010-r_1"); the cached band weights must not bring
    back the first name, which silently dropped a column (and misaligned ssp_photometry's columns)."""
    spec, _ = BlackbodyGenerator().spectra([5800.0, 4000.0], 4.4, 0.0)
    t = magnitudes(spec, ["sdss2010-r", "sdss2010-g", "sdss2010-r"], radius=1 * u.R_sun)
    assert t.colnames == ["sdss2010-r", "sdss2010-g", "sdss2010-r_1"]
    assert np.array_equal(t["sdss2010-r"], t["sdss2010-r_1"])
    lum = (spec.flux * 4 * np.pi * (1 * u.R_sun) ** 2).to(u.L_sun / u.AA)
    p = ssp_photometry([1e9, 2e9], (spec.spectral_axis, lum), ["sdss2010-r", "sdss2010-g", "sdss2010-r"])
    assert np.array_equal(p["M_sdss2010-r"], p["M_sdss2010-r_1"])
    assert not np.array_equal(p["M_sdss2010-r"], p["M_sdss2010-g"])


def test_ssp_magnitudes_report_the_light_outside_coverage(default_generator):
    """Z = 0.06 lies beyond every library's [M/H] box, so all of its light is extrapolated: the table said
    'missing_fraction ... outside coverage' = 0 (it held the light *without a spectrum*) and had no
    outside_fraction."""
    from smnet_sps.generator import CoverageWarning
    from smnet_sps.photometry import ssp_magnitudes
    from smnet_sps.ssp import ssp_grid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        table = ssp_magnitudes([1e9, 1e10] * u.yr, 0.06, ["sdss2010-r"], generator=default_generator)
        grid = ssp_grid([1e9, 1e10] * u.yr, [0.06], generator=default_generator, progress=False)
    np.testing.assert_allclose(table["outside_fraction"], grid.outside_fraction[0])
    assert np.all(table["outside_fraction"] > 0.99)
    np.testing.assert_allclose(table["missing_fraction"], grid.missing_fraction[0])
    assert "without a spectrum" in table["missing_fraction"].description


def test_ssp_magnitudes_report_the_light_beyond_the_wavelength_grid():
    """A 3,000 A - 10 um generator's table had missing_fraction 0 and nothing of the 0.90 of L_bol its 3 Myr
    SSP emits beyond the grid (ssp_spectrum's meta["beyond_grid_fraction"]): the column gives the same
    share, in the order the ages were given; the bands inside the grid lack nothing of it."""
    from smnet_sps.photometry import ssp_magnitudes
    from smnet_sps.ssp import ssp_spectrum
    short = BlackbodyGenerator(np.geomspace(3000, 1e5, 4000))
    ages = ["1 Gyr", "3 Myr"]                               # unsorted, and 3 Myr lies between tabulated ages
    table = ssp_magnitudes(ages, 0.0152, ["sdss2010-r"], generator=short)
    full = ssp_magnitudes(ages, 0.0152, ["sdss2010-r"], generator=BlackbodyGenerator())
    expected = [ssp_spectrum(a, 0.0152, generator=short).meta["beyond_grid_fraction"] for a in ages]
    np.testing.assert_allclose(table["beyond_grid_fraction"], expected, atol=1e-6)
    assert table["beyond_grid_fraction"][1] > 0.8
    assert np.all(full["beyond_grid_fraction"] < 1e-3)
    assert "wavelength grid" in table["beyond_grid_fraction"].description
    # at a tabulated age the short grid's r magnitude is the full grid's: no band lacks the light beyond
    assert table["M_sdss2010-r"][0] == pytest.approx(full["M_sdss2010-r"][0], abs=1e-4)


def test_a_photon_luminosity_density_and_magnitudes_per_pixel_are_read_as_their_flux():
    """magnitudes() refused a photon luminosity density (photon / s / A: 'neither a flux density nor a
    luminosity density') that measure_index converted; one rule (smnet_sps.medium.f_lambda_factor) reads it
    as the L_lambda it is. A flux per M_sun formed is the flux of 1 M_sun, as a luminosity per M_sun; AB
    magnitudes per pixel stay the flux they stand for."""
    wave = np.linspace(2500.0, 12000.0, 2000) * u.AA
    llam = 6e22 * planck_surface_flux(wave.value, [5800.0])[0] * u.erg / u.s / u.AA   # 4 pi R_sun^2 F
    bands = ["sdss2010-g", "sdss2010-r"]
    ref = magnitudes((wave, llam), bands)
    photons = llam.to(u.photon / u.s / u.AA, equivalencies=u.spectral_density(wave))
    got = magnitudes((wave, photons), bands)
    for band in bands:
        assert float(np.ravel(got[band])[0]) == pytest.approx(float(np.ravel(ref[band])[0]), abs=1e-9)
    flam = (llam / (4 * np.pi * (10 * u.pc) ** 2)).to(FLAM_UNIT)
    for flux in (flam / u.M_sun, flam.to(u.ABmag, equivalencies=u.spectral_density(wave))):
        got = magnitudes((wave, flux), bands)
        for band in bands:
            assert float(np.ravel(got[band])[0]) == pytest.approx(float(np.ravel(ref[band])[0]), abs=1e-9), \
                flux.unit


def test_the_ssp_fits_file_feeds_photometry_and_the_adapters(tmp_path):
    """`smnet-sps ssp --out x.fits` writes FLUX in L_sun / A / M_sun (per M_sun formed). magnitudes(),
    ssp_photometry() and the adapters refused it ('neither a flux density nor a luminosity density'); they
    now take it for 1 M_sun formed, the numbers of the same SSP from ssp_spectrum."""
    from astropy.table import QTable
    from smnet_sps.cli import main
    from smnet_sps.plugins._common import as_ssp_arrays
    from smnet_sps.ssp import ssp_spectrum
    out = tmp_path / "ssp.fits"
    assert main(["ssp", "--age", "1Gyr", "--Z", "0.0152", "--generator", "blackbody", "--out", str(out)]) == 0
    t = QTable.read(out)
    assert t["FLUX"].unit == u.L_sun / u.AA / u.M_sun
    spec = ssp_spectrum(1 * u.Gyr, Z=0.0152, generator="blackbody")
    bands = ["sdss2010-g", "sdss2010-r"]
    direct = magnitudes(spec, bands)
    from_file = magnitudes((t["WAVELENGTH"], t["FLUX"]), bands)
    def first(column):
        return float(np.ravel(column)[0])
    for band in bands:
        assert first(from_file[band]) == pytest.approx(first(direct[band]), abs=1e-6)
    table = ssp_photometry([1] * u.Gyr, (t["WAVELENGTH"], t["FLUX"][None, :]), bands)
    assert first(table["M_sdss2010-r"]) == pytest.approx(first(direct["sdss2010-r"]), abs=1e-6)
    grid = as_ssp_arrays(ssp_lgmet=[np.log10(0.0152)], ssp_lg_age_gyr=[0.0], ssp_wave=t["WAVELENGTH"],
                         ssp_flux=t["FLUX"][None, None, :])
    np.testing.assert_allclose(grid.ssp_flux[0, 0], spec.flux.to_value(u.L_sun / u.AA), rtol=1e-6)


def test_the_ssp_fits_file_read_with_table_read_feeds_photometry_and_the_adapters(tmp_path):
    """Table.read (not QTable.read) of `smnet-sps ssp --out x.fits` gives big-endian Columns with units:
    magnitudes() and ssp_photometry() refused them ('must be astropy Quantities') and the adapters'
    as_ssp_arrays dropped the units ('ssp_flux states no unit ... 1e-3..1e6', or, per nm, 'nm given?').
    They are now the Quantities they stand for: the same numbers as from ssp_spectrum."""
    from astropy.table import Table
    from smnet_sps.cli import main
    from smnet_sps.photometry import ssp_photometry
    from smnet_sps.plugins._common import as_ssp_arrays
    from smnet_sps.ssp import ssp_spectrum
    out = tmp_path / "ssp.fits"
    assert main(["ssp", "--age", "1Gyr", "--Z", "0.0152", "--generator", "blackbody", "--out", str(out)]) == 0
    t = Table.read(out)
    assert t["FLUX"].dtype.byteorder == ">" and t["FLUX"].unit == u.L_sun / u.AA / u.M_sun
    spec = ssp_spectrum(1 * u.Gyr, Z=0.0152, generator="blackbody")
    bands = ["sdss2010-g", "sdss2010-r"]
    direct = magnitudes(spec, bands)
    from_file = magnitudes((t["WAVELENGTH"], t["FLUX"]), bands)
    table = ssp_photometry([1] * u.Gyr, (t["WAVELENGTH"], t["FLUX"]), bands)
    for band in bands:
        assert float(from_file[band][0]) == pytest.approx(float(direct[band][0]), abs=1e-6)
        assert float(table[f"M_{band}"][0]) == pytest.approx(float(direct[band][0]), abs=1e-6)
    in_nm = Table({"w": t["WAVELENGTH"].quantity.to_value(u.nm)}, units={"w": u.nm})["w"]
    for wave in (t["WAVELENGTH"], in_nm):
        grid = as_ssp_arrays(ssp_lgmet=[np.log10(0.0152)], ssp_lg_age_gyr=[0.0], ssp_wave=wave,
                             ssp_flux=t["FLUX"][None, None, :])
        np.testing.assert_allclose(grid.ssp_wave, spec.spectral_axis.to_value(u.AA), rtol=1e-9)
        np.testing.assert_allclose(grid.ssp_flux[0, 0], spec.flux.to_value(u.L_sun / u.AA), rtol=1e-6)


def test_ssp_magnitudes_rows_follow_the_ages_given(blackbody):
    """ssp_grid sorts and merges ages; ssp_magnitudes([10, 1, 1] Gyr) used to return two rows, ascending,
    no longer lined up with the ages passed."""
    from smnet_sps.photometry import ssp_magnitudes
    t = ssp_magnitudes([10, 1, 1] * u.Gyr, 0.0152, ["sdss2010-g"], generator=blackbody)
    np.testing.assert_allclose(t["age"], [10, 1, 1])
    one = ssp_magnitudes([1] * u.Gyr, 0.0152, ["sdss2010-g"], generator=blackbody)
    assert t["M_sdss2010-g"][1] == t["M_sdss2010-g"][2] == pytest.approx(one["M_sdss2010-g"][0], abs=1e-9)
    assert t["M_sdss2010-g"][0] > t["M_sdss2010-g"][1]            # 10 Gyr is fainter


def test_mags_csv_keeps_full_precision(tmp_path):
    """`mags --out x.csv` wrote the screen's 4-digit format (ages 3e-4 off, M/L 0.2 %)."""
    from astropy.table import Table
    from smnet_sps.cli import main
    base = ["mags", "--Z", "0.0152", "--filters", "bessell-V", "--ages", "0.01-12.5Gyr", "--n-ages", "5",
            "--model", "blackbody", "--out"]
    assert main(base + [str(tmp_path / "m.csv")]) == 0 and main(base + [str(tmp_path / "m.ecsv")]) == 0
    csv, ecsv = Table.read(tmp_path / "m.csv"), Table.read(tmp_path / "m.ecsv")
    for col in ("age", "ML_bessell-V", "M_bessell-V"):
        np.testing.assert_allclose(np.asarray(csv[col], float), np.asarray(ecsv[col], float), rtol=1e-12)


def test_a_filter_curve_ending_above_zero_is_zero_beyond_it():
    """134 named filters (decam_*, hsc_*, jwst_*, ...) end above zero; synphot held the end value beyond the
    curve, so decam_u (3330-4150 A, last throughput 9e-5) took in the spectrum out to the grid's end: a 10 Gyr
    SSP came out 0.34 mag too bright (sedpy 8.895, the package 8.556). A flat f_nu = 3631 Jy source with a
    1e6x brighter infrared must give AB 0 whatever lies outside the filter."""
    _, bp = get_bandpass("decam_u")
    assert float(bp(bp.waveset[-1]).value) > 0                     # the curve does end above zero
    assert np.all(bp([5000.0, 1e4, 1e5, 1e6] * u.AA).value == 0)
    w = np.geomspace(1000.0, 1e6, 20000)
    fnu = np.where(w < 8000.0, 3631e-23, 3631e-17)                   # erg s^-1 cm^-2 Hz^-1
    flam = fnu * C_ANGSTROM / w**2 * FLAM_UNIT
    for method in ("vectorised", "synphot"):
        m = magnitudes((w * u.AA, flam), ["decam_u", "hsc_g"], method=method)
        assert m["decam_u"][0] == pytest.approx(0.0, abs=2e-3)
        assert m["hsc_g"][0] == pytest.approx(0.0, abs=2e-3)


def test_a_user_spectral_element_ending_above_zero_is_zero_beyond_it(tmp_path):
    """A user's SpectralElement was used as given, so synphot held its end values beyond the curve: a flat
    curve over 5000-6000 A took in a flat f_lambda spectrum over 1000-20000 A (ST 12.50, expected 16.40), and
    decam_u as SpectralElement.from_file a 10 Gyr SSP's light to 160 um (8.556 vs 8.889 by name). It now
    gets zero throughput beyond its curve, as the same curve by name or file, for both methods."""
    from synphot import SpectralElement
    from synphot.models import Empirical1D
    w = np.linspace(1000.0, 20000.0, 5000)
    flat = np.full(w.size, 1e-15) * FLAM_UNIT                        # ST 16.40 through any filter
    box = SpectralElement(Empirical1D, points=[5000.0, 5500.0, 6000.0] * u.AA, lookup_table=[1.0, 1.0, 1.0])
    path = tmp_path / "box.dat"
    np.savetxt(path, np.column_stack([[5000.0, 5500.0, 6000.0], [1.0, 1.0, 1.0]]))
    for method in ("vectorised", "synphot"):
        user = magnitudes((w * u.AA, flat), [box, box * 0.5], system="ST", method=method)
        by_file = magnitudes((w * u.AA, flat), [str(path)], system="ST", method=method)
        # 2e-3: the throughput ramps to zero over one spectrum sample beyond each end, as for a named filter
        assert user[0][0] == pytest.approx(16.40, abs=2e-3)
        assert user[0][0] == pytest.approx(by_file[0][0], abs=1e-9)
        assert user[0][1] == pytest.approx(by_file[0][0], abs=1e-9)    # a product of curves too
    # sedpy's decam_u (ends at 9e-5) as a SpectralElement: as by name, AB 0 for flat f_nu with a bright IR
    _, named = get_bandpass("decam_u")
    curve = named.model
    user_u = SpectralElement(Empirical1D, points=curve.points[0] * u.AA, lookup_table=curve.lookup_table)
    assert float(user_u(1e5 * u.AA).value) > 0                      # synphot holds the end value
    wg = np.geomspace(1000.0, 1e6, 20000)
    flam = np.where(wg < 8000.0, 3631e-23, 3631e-17) * C_ANGSTROM / wg**2 * FLAM_UNIT
    m = magnitudes((wg * u.AA, flam), [user_u, "decam_u"])
    assert m[0][0] == pytest.approx(m[0][1], abs=1e-9)
    assert m[0][0] == pytest.approx(0.0, abs=2e-3)


def test_vega_magnitudes_need_vega_over_the_whole_filter(tmp_path):
    """Vega's end values were held beyond the CALSPEC spectrum (900 A - 300 um): SPIRE 500 um Vega magnitudes
    1.6 mag off, a 400-800 A filter -11.8 mag, silently. Refused, naming Vega's range; AB still works."""
    euv = tmp_path / "euv.dat"
    np.savetxt(euv, np.column_stack([np.linspace(400.0, 800.0, 41), np.r_[0.0, np.ones(39), 0.0]]),
               header="wavelength [A]")
    w = np.geomspace(100.0, 1e8, 5000)
    flam = planck_surface_flux(w, np.array([10000.0]))[0] * FLAM_UNIT
    for band in (str(euv), "herschel_spire_500"):
        with pytest.raises(ValueError, match="reaches beyond the CALSPEC Vega spectrum"):
            magnitudes((w * u.AA, flam), [band], system="Vega")
        assert np.isfinite(magnitudes((w * u.AA, flam), [band], system="AB")[0][0])
    assert np.isfinite(magnitudes((w * u.AA, flam), ["herschel_spire_250"], system="Vega")[0][0])


@pytest.mark.parametrize("z", ["0.5", True])
def test_redshift_as_text_or_boolean_is_refused(z):
    w = np.geomspace(1000.0, 1e5, 2000)
    with pytest.raises(ValueError, match="redshift must be a number"):
        magnitudes((w * u.AA, np.ones(w.size) * FLAM_UNIT), ["sdss2010-r"], distance=10 * u.pc, redshift=z)


def test_an_unnamed_cosmology_is_recorded_by_its_parameters():
    """meta["cosmology"] held the text "None" for a cosmology made without a name."""
    from astropy.cosmology import FlatLambdaCDM
    ages, spec = _fake_ssps()
    cosmo = FlatLambdaCDM(H0=70, Om0=0.3)
    t = ssp_photometry(ages * u.yr, spec, ["sdss2010-r"], redshift=0.3, cosmology=cosmo)
    assert t.meta["cosmology"].startswith("FlatLambdaCDM(") and "Om0=0.3" in t.meta["cosmology"]
    assert ssp_photometry(ages * u.yr, spec, ["sdss2010-r"], redshift=0.3).meta["cosmology"] == "Planck18"


def test_a_cosmology_by_name_is_used_and_anything_else_is_a_named_error():
    """cosmology="Planck18" (text) or 70 crashed with an AttributeError (no luminosity_distance / age); an
    astropy realization's name now means that realization, anything else is a ValueError naming them."""
    from astropy.cosmology import WMAP9, Planck18
    ages, spec = _fake_ssps()
    lum = np.ones(2000) * u.L_sun / u.AA
    w = np.geomspace(1000.0, 1e5, 2000) * u.AA
    for name, cosmo in (("Planck18", Planck18), ("WMAP9", WMAP9)):
        by_name = magnitudes((w, lum), ["sdss2010-r"], redshift=0.5, cosmology=name)["sdss2010-r"][0]
        by_object = magnitudes((w, lum), ["sdss2010-r"], redshift=0.5, cosmology=cosmo)["sdss2010-r"][0]
        assert by_name == by_object
        t = ssp_photometry(ages * u.yr, spec, ["sdss2010-r"], redshift=0.3, cosmology=name)
        assert t.meta["cosmology"] == name
        assert t.meta["luminosity_distance_Mpc"] == pytest.approx(cosmo.luminosity_distance(0.3).value,
                                                                   rel=1e-12)
    wmap9 = magnitudes((w, lum), ["sdss2010-r"], redshift=0.5, cosmology="WMAP9")["sdss2010-r"][0]
    assert wmap9 != magnitudes((w, lum), ["sdss2010-r"], redshift=0.5)["sdss2010-r"][0]
    for bad in ("planck18", "LCDM", 70, 70 * u.km / u.s / u.Mpc):
        with pytest.raises(ValueError, match="cosmology must be an astropy.cosmology.Cosmology.*Planck18"):
            magnitudes((w, lum), ["sdss2010-r"], redshift=0.5, cosmology=bad)
        with pytest.raises(ValueError, match="cosmology must be"):
            ssp_photometry(ages * u.yr, spec, ["sdss2010-r"], redshift=0.3, cosmology=bad)
    with pytest.raises(ValueError, match="cosmology must be"):           # before the (slow) SSP grid
        from smnet_sps.photometry import ssp_magnitudes
        ssp_magnitudes([1] * u.Gyr, 0.0152, ["sdss2010-r"], redshift=0.3, cosmology=70)


def test_the_far_infrared_samples_are_joined_by_power_laws():
    """The default grid's 10-160 um are samples 2x apart: joined by straight lines, a blackbody's W3 / W4 came
    out 0.24 / 0.20 mag too bright (MIPS 24 um 0.31); on the power law through each pair they match the
    integral on a fine grid."""
    from smnet_sps.generator import planck_surface_flux
    from smnet_sps.photometry import _power_law_steps
    from smnet_sps.wavegrid import default_wavelength
    flam = u.Unit("erg s-1 cm-2 AA-1")
    grid = default_wavelength().value
    fine = np.geomspace(1e3, 2e6, 200001)
    bands = ["wise2010-W3", "wise2010-W4"]
    for teff in (5000.0, 30000.0):
        coarse = magnitudes((grid * u.AA, planck_surface_flux(grid, np.array([teff])) * flam), bands)
        exact = magnitudes((fine * u.AA, planck_surface_flux(fine, np.array([teff])) * flam), bands)
        for b in bands:
            assert abs(float(coarse[b][0] - exact[b][0])) < 0.005, (teff, b)
    # the power law through two samples, exact for one; a straight line where a sample is 0, NaN kept
    w = np.array([1e4, 1e5, 2e5, 2.05e5])
    f = np.vstack([3.0 * w ** -4.0, [1.0, 2.0, 0.0, 1.0], [1.0, np.nan, 1.0, 1.0]])
    w2, f2 = _power_law_steps(w, f)
    added = ~np.isin(w2, w)
    np.testing.assert_allclose(f2[0, added], 3.0 * w2[added] ** -4.0, rtol=1e-12)
    between = added & (w2 > 1e5) & (w2 < 2e5)
    np.testing.assert_allclose(f2[1, between], 2.0 - 2.0 * (w2[between] - 1e5) / 1e5, rtol=1e-12)
    assert np.isnan(f2[2, added & (w2 < 2e5)]).all()
    assert not ((w2 > 2e5) & (w2 < 2.05e5)).any()                 # a 2.5 % step is left as it is


def test_wide_steps_are_refined_after_the_nan_rule_and_only_where_a_filter_reaches():
    """A NaN sample is judged as given (one value named, not the 63 points refined around it; zeroed with
    extrapolate=True, not a blanked 40 um step: W4 2.3 mag faint), and optical filters leave the far-infrared
    steps as they are (no cost)."""
    import warnings

    from smnet_sps.generator import planck_surface_flux
    from smnet_sps.photometry import _power_law_steps
    from smnet_sps.wavegrid import default_wavelength
    flam = u.Unit("erg s-1 cm-2 AA-1")
    grid = default_wavelength().value
    flux = planck_surface_flux(grid, np.array([5000.0]))
    holed = flux.copy()
    holed[0, np.argmin(np.abs(grid - 4e5))] = np.nan
    with pytest.raises(ValueError, match=r"has 1 non-finite flux value"):
        magnitudes((grid * u.AA, holed * flam), "wise2010-W4")
    clean = magnitudes((grid * u.AA, flux * flam), "wise2010-W4")["wise2010-W4"][0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zeroed = magnitudes((grid * u.AA, holed * flam), "wise2010-W4", extrapolate=True)["wise2010-W4"][0]
    assert abs(float(zeroed - clean)) < 0.5
    w2, f2 = _power_law_steps(grid, flux, [(5000.0, 7000.0)])
    assert w2 is grid and f2 is flux


@pytest.mark.filterwarnings("ignore")
def test_colour_plot_labels_the_system_the_table_says_never_a_guessed_ab(tmp_path):
    """plot_colour_evolution labelled `mags --system Vega` magnitudes read back from .fits (meta key SYSTEM:
    FITS upper-cases it) or .txt (the system in a comment line) as AB (meta.get('system', 'AB')); it now reads
    the system in any case, from the .txt comment, else from the M_ columns' unit (mag(ST), mag(AB)), and
    names none where nothing says (.csv)."""
    import matplotlib.pyplot as plt
    from astropy.table import Table

    from smnet_sps.cli import main
    from smnet_sps.photometry import TABLE_FORMATS, plot_colour_evolution, ssp_magnitudes
    label = "absolute magnitude per M$_\\odot$ formed [mag]\n"           # M_bol is drawn too: bolometric
    vega = "filters: Vega; "
    for ext, system in ((".fits", vega), (".txt", vega), (".ecsv", vega), (".csv", "")):
        out = tmp_path / f"m{ext}"
        assert main(["mags", "--Z", "0.0152", "--filters", "sdss2010-g,sdss2010-r", "--ages", "1,3Gyr",
                     "--generator", "blackbody", "--system", "Vega", "--out", str(out)]) == 0
        fig = plot_colour_evolution(Table.read(out, format=TABLE_FORMATS[ext]))
        assert fig.axes[0].get_ylabel() == label + system + "M$_{\\rm bol}$: bolometric", ext
        plt.close(fig)
    table = ssp_magnitudes([1.0, 3.0] * u.Gyr, 0.0152, ["sdss2010-g", "sdss2010-r"], system="ST",
                           generator="blackbody")
    del table.meta["system"]                                   # the units still say: mag(ST)
    fig = plot_colour_evolution(table)
    assert fig.axes[0].get_ylabel() == label + "filters: ST; M$_{\\rm bol}$: bolometric"
    plt.close(fig)


def test_colour_plot_calls_m_bol_bolometric_not_the_filters_system():
    """`mags --plot` drew the dashed M_bol curve, labelled "M_bol", on the axis "absolute magnitude per M_sun
    formed (AB)": M_bol (4.74 - 2.5 log L_bol) is bolometric, in no filter's system. The curve now says
    bolometric with M_bol,sun = 4.74 (constants.MBOL_SUN), the axis names the filters' system apart."""
    import matplotlib.pyplot as plt

    from smnet_sps.constants import MBOL_SUN
    from smnet_sps.photometry import plot_colour_evolution, ssp_magnitudes
    table = ssp_magnitudes([1.0, 3.0] * u.Gyr, 0.0152, ["sdss2010-g", "sdss2010-r"], generator="blackbody")
    fig = plot_colour_evolution(table)
    ax = fig.axes[0]
    assert MBOL_SUN == 4.74
    assert [t.get_text() for t in ax.get_legend().get_texts()][-1] == (
        "M$_{\\rm bol}$ (bolometric, M$_{\\rm bol,\\odot}$ = 4.74)")
    assert ax.get_ylabel() == ("absolute magnitude per M$_\\odot$ formed [mag]\nfilters: AB; "
                               "M$_{\\rm bol}$: bolometric")
    plt.close(fig)
    del table["M_bol"]                                      # no M_bol: the filters' system alone
    fig = plot_colour_evolution(table)
    assert fig.axes[0].get_ylabel() == "absolute magnitude per M$_\\odot$ formed [mag] (AB)"
    plt.close(fig)


def test_the_cached_reference_spectra_and_weights_cannot_be_changed_by_a_caller():
    """vega_spectrum() / sun_spectrum() handed out their cache's own arrays, and bandpass_weights its cached
    BandWeights: a caller's f *= 2 changed every later Vega and solar magnitude of the process (an SSP's B-V
    0.974 -> 1.726, M_B(Sun) 5.324 -> 4.571). The spectra now come as copies, the cached weights read-only
    in a new BandWeights per call."""
    from smnet_sps.photometry import bandpass_weights, sun_absolute_magnitudes, sun_spectrum, vega_spectrum

    bb = BlackbodyGenerator()
    grid = bb.wavelength
    w0, f0 = (a.copy() for a in vega_spectrum())
    ws0, fs0 = (a.copy() for a in sun_spectrum())
    vega_b = bandpass_weights(grid, "bessell-B").vega
    w, f = vega_spectrum()
    f *= 2.0                                         # a caller scaling "its" Vega in place
    w[:] = 0.0
    ws, fs = sun_spectrum()
    fs *= 2.0
    assert np.array_equal(vega_spectrum()[1], f0) and np.array_equal(vega_spectrum()[0], w0)
    assert np.array_equal(sun_spectrum()[1], fs0) and np.array_equal(sun_spectrum()[0], ws0)
    # a new grid computes new weights from Vega: the same integral as before
    assert bandpass_weights(grid[::2], "bessell-B").vega == pytest.approx(vega_b, rel=1e-3)
    # the Sun at 10 pc, M_B from the untouched spectrum (not 0.753 mag brighter)
    ref = magnitudes((ws0 * u.AA, fs0 * FLAM_UNIT * (AU_CM / (10 * PC_CM)) ** 2), ["bessell-B"])
    assert sun_absolute_magnitudes(["bessell-B"])["bessell-B"] == pytest.approx(ref["bessell-B"][0], abs=1e-9)
    # the cached weights: read-only, and each call's BandWeights its own
    bw = bandpass_weights(grid, "bessell-V")
    with pytest.raises(ValueError, match="read-only"):
        bw.v *= 2.0
    bw.vega = 1.0
    assert bandpass_weights(grid, "bessell-V").vega != 1.0


def test_no_solar_magnitude_beyond_the_sun_says_so_and_no_option_helps():
    """wise2010-W4: the warning named the Sun's range (1195-26957.4 A) as "the spectrum's" and advised
    extrapolate=True (--extrapolate), which leaves M/L NaN: the Sun has no flux model in that band."""
    ages, spec = _fake_ssps(2)
    with pytest.warns(UserWarning) as caught:
        t = ssp_photometry(ages * u.yr, spec, ["wise2010-W4"], extrapolate=True)
    assert np.all(np.isnan(t["ML_wise2010-W4"])) and np.all(np.isfinite(t["M_wise2010-W4"]))
    text = " ".join(str(w.message) for w in caught)
    assert ("no solar magnitude for 'wise2010-W4': 100% of the filter's weight lies outside the Sun's flux "
            "model (CALSPEC sun_reference_stis_001, 1195 A - 2.70 micron)") in text
    assert "does not change that" in text
    assert "spectrum's wavelengths" not in text and "pass extrapolate=True" not in text


def test_sun_magnitude_in_filters_with_a_faint_red_leak():
    # VISTA's near-IR curves leak a few 1e-4 of their weight out to 3.2 micron, beyond the CALSPEC Sun
    # (2.70 micron): the Sun had no magnitude there (M/L NaN), though 99.9 % of the band is covered.
    # FSPS's magsun.dat: M_sun(VISTA J) = 4.56 AB, 3.65 Vega; 2MASS J (inside the Sun) must agree closely.
    import warnings as _w
    from smnet_sps.photometry import sun_absolute_magnitudes
    with _w.catch_warnings():
        _w.simplefilter("error")                                 # no "no solar magnitude" warning
        ab = sun_absolute_magnitudes(["vista_vircam_J", "vista_vircam_Ks", "twomass_J"], "AB")
        vega = sun_absolute_magnitudes(["vista_vircam_J"], "Vega")
    assert ab["vista_vircam_J"] == pytest.approx(4.56, abs=0.03)
    assert vega["vista_vircam_J"] == pytest.approx(3.65, abs=0.03)
    assert ab["vista_vircam_J"] == pytest.approx(ab["twomass_J"], abs=0.05)
    assert np.isfinite(ab["vista_vircam_Ks"])
    # a filter far beyond the Sun still has none
    with pytest.warns(UserWarning, match="no solar magnitude"):
        assert np.isnan(sun_absolute_magnitudes(["wise2010-W3"], "AB")["wise2010-W3"])


def test_a_named_filter_handed_out_cannot_be_edited_in_place():
    """get_bandpass("sdss2010-r") handed every caller the one cached SpectralElement, its curve speclite's
    own cached array: a caller's in-place edit (bp.model.lookup_table[:n // 2] = 0) changed sdss2010-r for
    the rest of the process on new grids (a 6000 K star's r 0.053 mag brighter) but not on grids whose
    weights were cached, so one filter gave two answers. The cached curve is a read-only copy now."""
    import speclite.filters as sf

    star = planck_surface_flux(np.linspace(3000.0, 11000.0, 3001), [6000.0])[0]
    w = np.linspace(3000.0, 11000.0, 3001) * u.AA
    before = magnitudes((w, star * FLAM_UNIT), ["sdss2010-r"]).columns[0][0]
    _, bp = get_bandpass("sdss2010-r")
    table = bp.model.lookup_table
    with pytest.raises(ValueError, match="read-only"):
        table[: table.size // 2] = 0.0
    with pytest.raises(ValueError, match="read-only"):
        bp.model.points[0][0] = 0.0
    assert sf.load_filter("sdss2010-r").response.flags.writeable       # speclite's curve left as it was
    assert get_bandpass("sdss2010-r")[1] is bp                          # one object (the weights' cache)
    w2 = np.linspace(3000.0, 11000.0, 3002) * u.AA                      # a new grid: new weights
    star2 = planck_surface_flux(w2.value, [6000.0])[0]
    assert abs(magnitudes((w2, star2 * FLAM_UNIT), ["sdss2010-r"]).columns[0][0] - before) < 1e-4


def test_photometry_loses_no_other_threads_warning_and_shows_none_of_its_own():
    """Reading CALSPEC and the synphot path silenced warnings with warnings.catch_warnings, which swaps the
    process-wide filter list: while one thread was inside, another thread's warnings were dropped (here
    1,606 of 2,470 warned during one synphot magnitude run). Neither uses it now: the TNULL keywords astropy
    warned about are dropped from the header before the columns are read, and synphot is never asked to
    extrapolate (the coverage check) -- and still nothing of theirs is shown."""
    import threading
    import time

    from smnet_sps.photometry import VEGA_FILE, _read_calspec

    spec, _ = BlackbodyGenerator().spectra(np.linspace(4000.0, 9000.0, 6), 4.0, 0.0)
    data = (spec.spectral_axis, spec.flux)
    done = threading.Event()

    def work():
        try:
            _read_calspec(VEGA_FILE)                   # what the lru_cache's first call does
            magnitudes(data, FILTERS, system="Vega", method="synphot")
        finally:
            done.set()

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        thread = threading.Thread(target=work)
        thread.start()
        n = 0
        while not done.is_set():
            warnings.warn(f"another thread's warning {n}", UserWarning)
            n += 1
            time.sleep(1e-4)
        thread.join()
    messages = [str(w.message) for w in seen]
    assert n > 10 and messages == [f"another thread's warning {i}" for i in range(n)]


def test_an_air_spectrum_is_integrated_on_its_vacuum_wavelengths(default_generator):
    """magnitudes() ignored meta["wavelength_medium"]: a 10 Gyr SSP converted to air (to_medium) went
    through the vacuum filter curves as if its axis were vacuum, 3.3 mmag brighter in GALEX NUV and 0.5-0.9
    mmag in u, g, V. A Spectrum stating air is now taken back to vacuum first (also in ssp_photometry); a
    (wavelength, flux) pair states no medium and is taken as vacuum, as documented."""
    from smnet_sps.medium import to_medium
    from smnet_sps.ssp import ssp_spectrum
    bands = ["galex-nuv", "sdss2010-u", "sdss2010-g", "bessell-V"]
    vac = ssp_spectrum(10 * u.Gyr, Z=0.0152, generator=default_generator)
    air = to_medium(vac, "air")
    m_vac, m_air = magnitudes(vac, bands), magnitudes(air, bands)
    for b in bands:
        assert m_air[b][0] == pytest.approx(m_vac[b][0], abs=2e-5), b
    l_nu = vac.flux.to(u.L_sun / u.Hz, u.spectral_density(vac.spectral_axis))   # per Hz: medium-free
    per_hz = type(air)(flux=l_nu, spectral_axis=air.spectral_axis, meta=air.meta)
    assert magnitudes(per_hz, ["galex-nuv"])["galex-nuv"][0] == pytest.approx(m_vac["galex-nuv"][0], abs=2e-5)
    t_vac = ssp_photometry([1e10], vac, bands, log_lbol=vac.meta["log_lbol"])
    t_air = ssp_photometry([1e10], air, bands, log_lbol=vac.meta["log_lbol"])
    assert t_air["M_galex-nuv"][0] == pytest.approx(t_vac["M_galex-nuv"][0], abs=2e-5)
    pair = magnitudes((air.spectral_axis, air.flux), ["galex-nuv"])     # no medium stated: vacuum
    assert pair["galex-nuv"][0] - m_vac["galex-nuv"][0] < -0.002


def test_apparent_magnitudes_record_the_distance_and_cosmology_they_used():
    """magnitudes() of a luminosity spectrum at z > 0 places it at the luminosity distance of ``cosmology``
    (Planck18 by default), but the table said neither: meta had 'redshift' only, while WMAP9 or FSPS's
    cosmology move the magnitudes by 0.04-0.13 mag. Now ``distance_cm``, ``luminosity_distance_Mpc`` and
    ``cosmology`` (as ssp_photometry's tables have them), also the 10 pc of absolute magnitudes."""
    from astropy.cosmology import FlatLambdaCDM, Planck18
    fsps = FlatLambdaCDM(H0=72, Om0=0.27)         # StellarPopulation's default, unnamed
    w = np.geomspace(900.0, 1e5, 3000)
    lum = (w * u.AA, planck_surface_flux(w, [8000.0])[0] / 1e10 * u.L_sun / u.AA)
    t = magnitudes(lum, ["sdss2010-r"], redshift=3)
    assert t.meta["cosmology"] == "Planck18"
    assert t.meta["luminosity_distance_Mpc"] == pytest.approx(Planck18.luminosity_distance(3).to_value(u.Mpc))
    assert t.meta["distance_cm"] == pytest.approx(Planck18.luminosity_distance(3).to_value(u.cm))
    t9 = magnitudes(lum, ["sdss2010-r"], redshift=3, cosmology=fsps)
    assert "FlatLambdaCDM" in t9.meta["cosmology"] and "72" in t9.meta["cosmology"]
    # the recorded distances account for the whole difference between the two tables
    dm = 5 * np.log10(t9.meta["luminosity_distance_Mpc"] / t.meta["luminosity_distance_Mpc"])
    assert t9["sdss2010-r"][0] - t["sdss2010-r"][0] == pytest.approx(dm, abs=1e-9)
    assert abs(dm) > 0.01
    assert t9.meta["distance_cm"] == pytest.approx(fsps.luminosity_distance(3).to_value(u.cm))
    absolute = magnitudes(lum, ["sdss2010-r"])
    assert absolute.meta["distance_cm"] == pytest.approx(10 * PC_CM) and "cosmology" not in absolute.meta
    # a flux at the observer was placed nowhere: no distance to record
    flux = magnitudes((w * u.AA, planck_surface_flux(w, [8000.0])[0] * FLAM_UNIT), ["sdss2010-r"], redshift=3)
    assert "distance_cm" not in flux.meta and "cosmology" not in flux.meta


def test_repeated_magnitudes_reuse_the_unit_converter_bit_for_bit(monkeypatch):
    """A fitter calls magnitudes() thousands of times with the same filters: astropy's f_lambda -> AB / ST
    converter is built once per filter (building it cost ~17 ms per band and call, 8 of the 9 ms of an
    8-band StellarPopulation.get_mags), and the magnitudes are astropy's own to the last bit."""
    from smnet_sps.photometry import _to_mag, bandpass_weights
    wave = np.geomspace(2000.0, 30000.0, 3000)
    flam = planck_surface_flux(wave, [4000.0, 6000.0, 9000.0]) * 1e-20
    filters = ["sdss2010-u", "sdss2010-r", "twomass-Ks"]
    for system in ("AB", "ST"):
        magnitudes((wave * u.AA, flam * FLAM_UNIT), filters, system=system)      # converters built
        built = []
        real = u.Unit.get_converter

        def counting(self, *args, **kwargs):
            built.append(self)
            return real(self, *args, **kwargs)

        monkeypatch.setattr(u.UnitBase, "get_converter", counting)
        table = magnitudes((wave * u.AA, flam * FLAM_UNIT), filters, system=system)
        monkeypatch.undo()
        assert not [b for b in built if b == FLAM_UNIT]
        mean = 10.0 ** np.random.default_rng(1).uniform(-25.0, -5.0, 200)      # <f_lambda> [erg/s/cm2/A]
        for name, bp in resolve_filters(filters):
            bw = bandpass_weights(wave, bp, name=name)
            equiv = u.spectral_density(bw.pivot * u.AA) if system == "AB" else []
            direct = (mean * FLAM_UNIT).to_value(u.ABmag if system == "AB" else u.STmag, equiv)
            assert np.array_equal(_to_mag(mean, bw, system), direct)
            assert np.isfinite(table[name]).all()


def test_magnitudes_check_each_filter_once_per_call(monkeypatch):
    """resolve_filters checks each filter; bandpass_weights checked the same element again (two synphot
    evaluations per band and call, 24 -> 21 ms of an 8-band get_mags), with the same result."""
    import smnet_sps.filters as filters_module
    wave = np.geomspace(2000.0, 30000.0, 3000)
    flam = planck_surface_flux(wave, [5000.0]) * 1e-20 * FLAM_UNIT
    names = ["sdss2010-g", "twomass-J"]
    first = magnitudes((wave * u.AA, flam), names)
    calls = []
    real = filters_module._user_element
    monkeypatch.setattr(filters_module, "_user_element",
                        lambda bp, name: calls.append(name) or real(bp, name))
    again = magnitudes((wave * u.AA, flam), names)
    assert calls == []                       # named filters: resolved from their cache, not re-checked
    assert all(np.array_equal(first[c], again[c]) for c in first.colnames)
    # a user's element is still checked, once per call
    bp = get_bandpass("sdss2010-g")[1]
    magnitudes((wave * u.AA, flam), [bp])
    assert len(calls) == 1


def test_repeated_magnitudes_classify_the_flux_unit_once(monkeypatch):
    """Which kind of spectral density a unit is (flux or luminosity, per M_sun or sr) was found anew by ~20
    astropy equivalence tests on every magnitudes() call: an 8-band StellarPopulation.get_mags 7.9 -> 2.4
    ms. The answer is cached per unit; the kinds are unchanged."""
    from smnet_sps.constants import SSP_UNIT
    from smnet_sps.medium import spectral_density_kind
    wave = np.geomspace(2000.0, 30000.0, 3000)
    spec = (wave * u.AA, planck_surface_flux(wave, [5000.0]) * 1e-3 * SSP_UNIT)
    first = magnitudes(spec, ["sdss2010-g"], redshift=0.5)
    tests = []
    real = u.UnitBase.is_equivalent
    monkeypatch.setattr(u.UnitBase, "is_equivalent",
                        lambda self, *a, **k: tests.append(self) or real(self, *a, **k))
    again = magnitudes(spec, ["sdss2010-g"], redshift=0.5)
    monkeypatch.undo()
    assert len(tests) <= 4
    assert np.array_equal(first["sdss2010-g"], again["sdss2010-g"])
    # also with an equivalency enabled for good, as `import bagpipes` does (the redshift one): the cache was
    # skipped whenever any was enabled, so the full suite (bagpipes imported earlier) saw 23 tests here
    with u.add_enabled_equivalencies(u.dimensionless_angles()):
        magnitudes(spec, ["sdss2010-g"], redshift=0.5)
        tests.clear()
        monkeypatch.setattr(u.UnitBase, "is_equivalent",
                            lambda self, *a, **k: tests.append(self) or real(self, *a, **k))
        magnitudes(spec, ["sdss2010-g"], redshift=0.5)
        monkeypatch.undo()
    assert len(tests) <= 4
    assert spectral_density_kind(SSP_UNIT) == ("luminosity", u.one)
    assert spectral_density_kind(SSP_UNIT / u.M_sun) == ("luminosity", u.M_sun)
    assert spectral_density_kind(u.Unit("MJy / sr")) == ("flux", u.sr)
    assert spectral_density_kind(u.nmgy) == ("flux", u.one)
    assert spectral_density_kind(u.Unit("ct / s")) == (None, None)
    assert spectral_density_kind(u.ABmag) == (None, None)
    assert spectral_density_kind("erg s-1 cm-2 AA-1") == ("flux", u.one)


def test_a_luminosity_spectrum_is_scaled_without_a_per_pixel_equivalency(monkeypatch):
    """L_sun / A -> erg s^-1 A^-1 is one scale: u.spectral_density was built on the whole pixel axis for it on
    every magnitudes() call (8-band get_mags 2.46 -> 1.83 ms). f_nu and photon spectra still get it, and every
    magnitude is what it was."""
    import smnet_sps.medium as medium
    from smnet_sps.constants import C_ANGSTROM, SSP_UNIT
    wave = np.geomspace(2000.0, 30000.0, 3000)
    llam = planck_surface_flux(wave, [5000.0]) * 1e-3
    lnu = llam * wave ** 2 / C_ANGSTROM                  # L_sun / Hz
    built = []
    real = u.spectral_density
    # on the pixel axis, not at one pivot wavelength (magnitudes' AB converter)
    monkeypatch.setattr(u, "spectral_density", lambda w, *a, **k: (np.size(w) > 1 and built.append(w))
                        or real(w, *a, **k))
    by_lam = magnitudes((wave * u.AA, llam * SSP_UNIT), ["sdss2010-g", "twomass-Ks"], redshift=0.5)
    assert built == []
    by_nu = magnitudes((wave * u.AA, lnu * u.L_sun / u.Hz), ["sdss2010-g", "twomass-Ks"], redshift=0.5)
    assert built                                       # f_nu needs the per-pixel conversion
    for c in by_lam.colnames:
        assert by_nu[c][0] == pytest.approx(by_lam[c][0], abs=1e-9)
    factor = medium.f_lambda_factor(SSP_UNIT, wave, u.Unit("erg s-1 AA-1"))
    assert np.ndim(factor) == 0 and factor == (1.0 * SSP_UNIT).to_value(u.Unit("erg s-1 AA-1"))
    per_hz = medium.f_lambda_factor(u.Unit("erg s-1 Hz-1"), wave)
    assert per_hz.shape == wave.shape and np.allclose(per_hz, C_ANGSTROM / wave ** 2, rtol=1e-12)


def test_colour_plot_shows_the_colours_asked_for(tmp_path):
    """`mags --filters sdss2010-u,sdss2010-g,sdss2010-r --colors g-r --plot p.png` drew u-g, the first two
    filters' colour, in its colour panel (the g-r asked for, a column of the table, nowhere), labelled
    without the magnitude system. The panel now draws the table's colour columns, each labelled, in the
    system the table says (also read back from .ecsv, .fits and .txt: these two drew u-g, their colours being
    JSON text in meta COLORS / a Python repr in a `colors:` comment line), and the first two filters' colour
    only without any."""
    import matplotlib.pyplot as plt
    from astropy.table import Table

    from smnet_sps.photometry import TABLE_FORMATS, _write_table, plot_colour_evolution, ssp_magnitudes
    filters = ["sdss2010-u", "sdss2010-g", "sdss2010-r"]
    table = ssp_magnitudes([0.1, 1.0, 3.0] * u.Gyr, 0.0152, filters, system="Vega", generator="blackbody",
                           colors="g-r,u-r")
    fig = plot_colour_evolution(table)
    ax = fig.axes[1]
    assert [line.get_label() for line in ax.get_lines()] == ["g-r", "u-r"]
    for line, name in zip(ax.get_lines(), ("g-r", "u-r")):
        assert np.allclose(line.get_ydata(), table[name])
    assert ax.get_ylabel() == "colour [mag] (Vega)"
    plt.close(fig)
    for ext in (".ecsv", ".fits", ".txt"):
        path = tmp_path / f"m{ext}"
        _write_table(table, path, TABLE_FORMATS[ext])         # as `mags --out m.<ext>` writes it
        fig = plot_colour_evolution(Table.read(path, format=TABLE_FORMATS[ext]))
        assert [line.get_label() for line in fig.axes[1].get_lines()] == ["g-r", "u-r"], ext
        for line, name in zip(fig.axes[1].get_lines(), ("g-r", "u-r")):
            assert np.allclose(line.get_ydata(), table[name]), ext
        assert fig.axes[1].get_ylabel() == "colour [mag] (Vega)", ext
        plt.close(fig)
    table.meta["colors"] = {"g-r": table.meta["colors"]["g-r"]}      # one colour: the axis names it
    del table["u-r"]
    fig = plot_colour_evolution(table)
    assert fig.axes[1].get_ylabel() == "g-r [mag] (Vega)"
    assert np.allclose(fig.axes[1].get_lines()[0].get_ydata(), table["g-r"])
    plt.close(fig)
    plain = Table(table, copy=True)                         # no colour columns: the first two filters'
    del plain["g-r"], plain.meta["colors"]
    u_g = np.asarray(plain["M_sdss2010-u"]) - np.asarray(plain["M_sdss2010-g"])
    listed = Table(plain, copy=True)                # a hand-made table naming its colours in a list, not
    listed.meta["colors"] = ["g-r"]                 # the rules' dict: the same fallback (was AttributeError)
    for tab in (plain, listed):
        fig = plot_colour_evolution(tab)
        line, = fig.axes[1].get_lines()
        assert np.allclose(line.get_ydata(), u_g)
        assert fig.axes[1].get_ylabel() == "sdss2010-u - sdss2010-g [mag] (Vega)"
        plt.close(fig)


def test_mags_fits_metadata_is_strict_json_where_the_sun_does_not_cover_a_band(tmp_path):
    """The Sun's CALSPEC spectrum ends at 2.7 um, so M_sun in WISE W4 (22 um) is NaN: the FITS card M_SUN was
    the JSON text '{"wise2010-W4": NaN}', which JSON parsers other than Python's refuse. Now null."""
    import json

    from astropy.io import fits
    from smnet_sps.cli import main
    out = tmp_path / "m.fits"
    assert main(["mags", "--Z", "0.0152", "--filters", "sdss2010-r,wise2010-W4", "--ages", "1Gyr", "10Gyr",
                 "--model", "blackbody", "--out", str(out)]) == 0
    with fits.open(out) as hdul:
        hdul.verify("exception")
        text = hdul[1].header["M_SUN"]

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")
    m_sun = json.loads(text, parse_constant=refuse)
    assert m_sun["wise2010-W4"] is None and 4.0 < m_sun["sdss2010-r"] < 5.0
