"""Native library readers, on small fixtures cut from the real files (tests/fixtures/libraries)."""
import gzip
import shutil

import numpy as np
import pytest

from smnet_sps.constants import C_ANGSTROM, SIGMA_SB
from smnet_sps.libraries import (DEFAULT_LIBRARIES, DEFAULT_NOTE, LIBRARIES, PHASE_LIBRARIES, UNION_LIBRARIES,
                                 LibrarySpectra, read_library)
from smnet_sps.libraries import basel, ck04, cm87, nextgen, rauch, rauch_pagb


@pytest.fixture(scope="module")
def libdir(fixtures_dir):
    return fixtures_dir / "libraries"


@pytest.fixture(scope="module")
def libs(libdir):
    return {name: read_library(name, libdir) for name in DEFAULT_LIBRARIES}


def test_registry_names_match_contract():
    assert UNION_LIBRARIES == ("ck04", "nextgen", "basel22", "wmbasic", "cm87")
    assert PHASE_LIBRARIES == ("cmfgen_wn", "cmfgen_wc", "rauch_pagb", "tpagb_orich", "tpagb_crich",
                               "tpagb_crich_aringer")
    assert DEFAULT_LIBRARIES == UNION_LIBRARIES + PHASE_LIBRARIES
    # the pystellibs Rauch reader is kept (a corrected file would work) but is not a default library
    assert "rauch_tmap" in LIBRARIES and not LIBRARIES["rauch_tmap"].default
    assert "rauch_tmap" not in DEFAULT_LIBRARIES and "degenerate" in DEFAULT_NOTE


def test_unknown_library_name_lists_valid_names(libdir):
    with pytest.raises(ValueError, match="valid names: ck04"):
        read_library("ipagb", libdir)


def test_ck04_all_zero_columns_dropped_and_counted(libs):
    lib = libs["ck04"]
    # ckp00_40000 has only g45, g50 computed (9 all-zero columns); the two 5750 K files have all 11
    assert lib.n_dropped == 9
    assert len(lib) == 11 + 2 + 11
    hot = lib.teff == 40000
    assert sorted(lib.logg[hot]) == [4.5, 5.0]
    assert set(lib.logz) == {0.0, -1.0}
    assert all(f.any() for f in lib.fluxes[0])          # no dark "stars" left


@pytest.mark.parametrize("name, tol", [("ck04", 0.015), ("nextgen", 0.002), ("basel22", 0.002)])
def test_physical_libraries_integrate_to_sigma_teff4(libs, name, tol):
    """After the unit conversion (x1e-8 for NextGen, x pi for BaSeL) int F dlambda = sigma Teff^4."""
    ratio = libs[name].bolometric_ratio()
    assert np.all(np.abs(ratio - 1) < tol), ratio
    np.testing.assert_allclose(libs[name].raw_ratio, ratio)


def test_nextgen_units_and_two_grids(libs):
    lib = libs["nextgen"]
    sizes = sorted(w.size for w in lib.wavelengths)
    assert sizes[0] == 21312 and sizes[1] > 27000       # the two native grids (repeated points removed)
    assert all(np.all(np.diff(w) > 0) for w in lib.wavelengths)
    # without the per-cm -> per-A factor the integral would be 1e8 sigma Teff^4
    assert np.all(np.abs(lib.bolometric_ratio() - 1) < 0.002)


def test_basel_pi_convention(libs, libdir):
    lib = libs["basel22"]
    raw = np.loadtxt(libdir / "basel22_lejeune_solar/spectra/lej_t05750g04.5.txt.gz")
    i = int(np.flatnonzero(lib.teff == 5750)[0])
    np.testing.assert_allclose(lib.spectrum(i)[1], np.pi * raw[:, 1])
    assert list(lib.logg) == [0.0, 4.5, 4.0]


@pytest.mark.parametrize("name", ["wmbasic", "cmfgen_wn", "cmfgen_wc", "rauch_pagb", "tpagb_orich",
                                  "tpagb_crich", "tpagb_crich_aringer"])
def test_normalised_libraries_rescaled_to_sigma_teff4(libs, name):
    np.testing.assert_allclose(libs[name].bolometric_ratio(), 1.0, rtol=1e-10)
    # the native normalisation was close to one (an f_nu read as F_lambda would be ~1e-10 off)
    assert np.all(np.abs(libs[name].raw_ratio - 1) < 0.25)


@pytest.mark.parametrize("name", ["cm87"])
def test_unit_bolometric_libraries_times_sigma_teff4(libs, name):
    """~unit bolometric flux x sigma Teff^4: the tabulated range (>= 91 A) misses the EUV below 91 A."""
    lib = libs[name]
    ratio = lib.bolometric_ratio()
    np.testing.assert_allclose(ratio, lib.raw_ratio, rtol=1e-12)
    assert np.all((ratio > 0.8) & (ratio < 1.01)), ratio


def test_hot_star_parameters(libs):
    wmb = libs["wmbasic"]
    assert list(wmb.logg) == [3.5, 3.5, 4.0, 4.0, 4.5, 4.5]       # hard-coded in FSPS, log g major
    np.testing.assert_allclose(wmb.logz, 0.0)                      # Z = 0.020 -> [M/H] = 0 (BPASS convention)
    assert list(wmb.teff) == [25000.0, 26300.0] * 3
    assert list(libs["cm87"].teff) == [60000.0, 100000.0, 180000.0]


def test_phase_libraries_have_no_invented_logg(libs):
    for name in PHASE_LIBRARIES:
        assert np.all(np.isnan(libs[name].logg)), name
        assert not libs[name].has_logg
    np.testing.assert_allclose(libs["cmfgen_wn"].logz, np.log10(0.001 / 0.020))
    np.testing.assert_allclose(libs["cmfgen_wn"].teff, [30000.0, 32000.0])
    orich = libs["tpagb_orich"]
    assert np.all(np.isnan(orich.logz))                            # empirical: not metallicity specific
    assert orich.extra["teff_table"].shape == (2, 22)
    # Teff is the solar (log Z/Zsun = 0) column of the Teff(Z) table
    assert list(orich.teff) == [2457.0, 2832.0]
    np.testing.assert_allclose(libs["tpagb_crich_aringer"].logz, 0.0)


@pytest.mark.parametrize("name, stem", [("tpagb_orich", "Orich"), ("tpagb_crich", "Crich")])
def test_lancon_mouhcine_zero_padding_is_dropped(libs, libdir, name, stem):
    """Orich / Crich.spec hold explicit zeros from 100 to 3,488 A, padding their README calls "extrapolation
    to a nil flux density at 3500A": they reached the grid as 352 known zero pixels per spectrum. Zero means
    unknown here, so the reader drops those rows: the library starts at its first flux, as Aringer's does."""
    raw = np.loadtxt(gzip.open(libdir / f"fsps_hot_and_agb/AGB_spectra/{stem}.spec.gz"))
    first = np.flatnonzero((raw[:, 1:] > 0).any(axis=1))[0]
    assert first > 300 and (raw[:first, 1:] == 0).all()              # the padding is in the file
    wave, flux = libs[name].wavelengths[0], libs[name].fluxes[0]
    np.testing.assert_array_equal(wave, raw[first:, 0])              # only the padding is dropped
    assert wave[0] == 3523.0 and (flux[:, 0] > 0).all()
    # still sigma Teff^4 over what is left (the padding held no flux)
    np.testing.assert_allclose(np.trapezoid(flux, wave), SIGMA_SB * libs[name].teff ** 4, rtol=1e-10)


# ------------------------------------------------------------------------------ degenerate libraries
def test_degenerate_rauch_fits_is_rejected_with_a_clear_error(libdir):
    """The pystellibs Rauch FITS holds one spectrum per Z for every Teff / log g: a corrupt library."""
    with pytest.raises(ValueError, match=r"stellib_Rauch\.grid\.fits: 4 rows but only 1 distinct spectrum.*"
                                         r"different parameters.*degenerate"):
        read_library("rauch_tmap", libdir)
    with pytest.raises(ValueError, match="stellib_Rauch.grid.fits"):
        rauch.read(libdir / "rauch_tmap_pystellibs")


def _synthetic(teff, logg, flux, name="synthetic"):
    flux = np.asarray(flux, float)
    n = len(flux)
    return LibrarySpectra(name, "", "f", "", np.asarray(teff, float), np.asarray(logg, float), np.zeros(n),
                          [np.arange(1.0, flux.shape[1] + 1)], [flux],
                          [f"f/file{i // 2}.dat" for i in range(n)],
                          np.ones(n), 0, [])


def test_distinct_spectra_check_is_general():
    rng = np.random.default_rng(1)
    a, b = rng.random(50), rng.random(50)
    _synthetic([5000, 6000], [4, 4], [a, b])                       # distinct: fine
    with pytest.raises(ValueError, match="the same spectrum twice at Teff 5000 K"):   # a repeated model
        _synthetic([5000, 5000], [4, 4], [a, a])
    with pytest.raises(ValueError,
                       match=r"f/file0.dat, f/file1.dat: 3 rows but only 2 distinct spectra; 1 rows .*row 2 "
                             r".*Teff 7000 K.* is identical to row 0"):
        _synthetic([5000, 6000, 7000], [4, 4, 4], [a, b, a])
    # a rescaled copy (e.g. unit flux x sigma Teff^4) is the same spectrum
    with pytest.raises(ValueError, match="only 1 distinct spectrum"):
        _synthetic([5000, 6000], [4, 4], [a, 3.7 * a])
    # NaN log g (phase libraries) compares equal to NaN: a repeat with the same Teff is a repeat
    with pytest.raises(ValueError, match="the same spectrum twice"):
        _synthetic([5000, 5000], [np.nan, np.nan], [a, a])


# ---------------------------------------------------------------------- Rauch post-AGB (FSPS ipagb)
def test_rauch_pagb_parameters_and_no_logg(libs):
    lib = libs["rauch_pagb"]
    assert list(lib.teff) == [50000.0, 60000.0, 70000.0] * 2       # fixture: first 3 Teff columns
    assert list(lib.logz) == [0.0] * 3 + [-1.0] * 3                 # solar, halo (halo = -1 assumed)
    assert np.isnan(lib.logg).all() and not lib.has_logg             # never invented
    assert [p.name for p in lib.files] == ["ipagb.teff", "ipagb_solar.spec.gz", "ipagb_halo.spec.gz"]
    assert "ipagb_solar" in lib.source_file[0] and "ipagb_halo" in lib.source_file[-1]


def test_rauch_pagb_sigma_teff4_and_fnu_conversion(libs, libdir):
    lib = libs["rauch_pagb"]
    np.testing.assert_allclose(lib.bolometric_ratio(), 1.0, rtol=1e-10)
    wave, flam = lib.spectrum(1)
    assert np.all(np.diff(wave) > 0)                                 # repeated 0.1 A wavelengths merged
    raw = np.loadtxt(libdir / "fsps_hot_and_agb/Hot_spectra/ipagb_solar.spec.gz")
    assert wave.size == np.unique(raw[:, 0]).size < raw.shape[0]
    # an unrepeated wavelength: F_lambda = f_nu c / lambda^2 x (sigma Teff^4 / native integral)
    i = int(np.flatnonzero(raw[:, 0] == 5000.0)[0]) if (raw[:, 0] == 5000.0).any() else raw.shape[0] - 50
    k = int(np.searchsorted(wave, raw[i, 0]))
    expected = raw[i, 2] * C_ANGSTROM / raw[i, 0] ** 2 * SIGMA_SB * 60000.0 ** 4 / lib.raw_ratio[1]
    np.testing.assert_allclose(flam[k], expected, rtol=1e-12)


def test_rauch_pagb_reads_all_columns_or_fsps_set(libdir, monkeypatch):
    """All Teff columns by default; FSPS reads ndim_pagb = 14 (here patched to 2 of 3) on request."""
    assert rauch_pagb.N_FSPS == 14
    assert list(rauch_pagb.read(libdir / "fsps_hot_and_agb").teff) == [50000.0, 60000.0, 70000.0] * 2
    monkeypatch.setattr(rauch_pagb, "N_FSPS", 2)
    lib = rauch_pagb.read(libdir / "fsps_hot_and_agb", fsps_columns_only=True)
    assert list(lib.teff) == [50000.0, 60000.0] * 2


def test_rauch_pagb_gets_bluer_with_teff(libs):
    """Teff of the columns is a sensible colour temperature: the flux-weighted mean frequency rises."""
    lib = libs["rauch_pagb"]
    for s in (slice(0, 3), slice(3, 6)):
        wave, flux = lib.wavelengths[0], lib.fluxes[0][s]
        nu_mean = np.trapezoid(flux * C_ANGSTROM / wave, wave, axis=1) / np.trapezoid(flux, wave, axis=1)
        assert np.all(np.diff(nu_mean) > 0), nu_mean


def test_rauch_pagb_decreasing_wavelength_is_named(copy_lib):
    folder = copy_lib("fsps_hot_and_agb")
    path = folder / "Hot_spectra/ipagb_halo.spec.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    lines[30], lines[31] = lines[31], lines[30]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(ValueError, match=r"ipagb_halo\.spec\.gz: wavelength column decreases"):
        rauch_pagb.read(folder)


def test_rauch_pagb_nan_wavelength_is_named(copy_lib):
    """'decreases' (np.diff < 0) and the 10 A - 1 cm range check are blind to NaN: the file was read, all 15
    solar spectra came out NaN, and the build then failed in resampling without naming the file."""
    folder = copy_lib("fsps_hot_and_agb")
    path = folder / "Hot_spectra/ipagb_solar.spec.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    for row in (40, 0):                 # inside the column, then the first row (the range check's value)
        damaged = list(lines)
        damaged[row] = " ".join(["NaN"] + damaged[row].split()[1:])
        path.write_bytes(gzip.compress(("\n".join(damaged) + "\n").encode()))
        with pytest.raises(ValueError, match=rf"ipagb_solar\.spec\.gz: the wavelength in row {row + 1} is "
                                             r"nan \(1 of \d+ wavelengths not finite and > 0 A\)"):
            rauch_pagb.read(folder)


@pytest.mark.parametrize("name, file, row, where", [
    ("cmfgen_wn", "Hot_spectra/CMFGEN_WN_Zall.spec.gz", None, "wavelength 3 of line 1"),
    ("tpagb_orich", "AGB_spectra/Orich.spec.gz", 2, "the wavelength in row 3"),
    ("wmbasic", "Hot_spectra/WMBASIC_z0.0200.spec.gz", 2, "the wavelength in row 3")])
def test_nan_wavelength_is_named_by_every_text_reader(copy_lib, name, file, row, where):
    """One shared check (_common.check_wavelengths): the readers' 'increasing' checks caught a NaN only as
    'not increasing (wrong format?)', and the range / decrease checks not at all."""
    folder = copy_lib("fsps_hot_and_agb")
    path = folder / file
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    tokens = lines[0 if row is None else row].split()
    tokens[2 if row is None else 0] = "nan"
    lines[0 if row is None else row] = " ".join(tokens)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(ValueError, match=rf"{path.name}: {where} is nan \(1 of \d+ wavelengths"):
        read_library(name, folder.parent)


# ------------------------------------------------------------------------------------------- errors
@pytest.fixture
def copy_lib(libdir, tmp_path):
    def _copy(folder):
        shutil.copytree(libdir / folder, tmp_path / folder)
        return tmp_path / folder
    return _copy


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nextgen_phoenix"):
        read_library("nextgen", tmp_path)


def test_missing_file_listed_in_index_is_named(copy_lib):
    folder = copy_lib("basel22_lejeune_solar")
    (folder / "spectra/lej_t05750g04.5.txt.gz").unlink()
    with pytest.raises(FileNotFoundError, match="lej_t05750g04.5.txt"):
        basel.read(folder)


def test_truncated_gzip_is_named(copy_lib):
    folder = copy_lib("nextgen_phoenix")
    path = folder / "Z-0.0/lte58-4.5-0.0.NextGen.spec.gz"
    path.write_bytes(path.read_bytes()[:20000])
    with pytest.raises(ValueError, match=r"lte58-4\.5-0\.0\.NextGen\.spec\.gz.*truncated"):
        nextgen.read(folder)


def test_unreadable_file_is_a_permission_error_not_a_damaged_file(copy_lib, monkeypatch):
    """A file the user may not read was reported as 'truncated or not valid gzip'. (Tests run as root, which
    reads any file, so the refusal is simulated.)"""
    from pathlib import Path

    folder = copy_lib("nextgen_phoenix")

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(PermissionError, match="Permission denied"):
        nextgen.read(folder)


def test_nextgen_reads_super_solar_files_with_a_plus_sign(copy_lib):
    """PHOENIX names [M/H] > 0 with '+' (lte58-4.5+0.3): such files were skipped without a word."""
    folder = copy_lib("nextgen_phoenix")
    src = folder / "Z-0.0/lte58-4.5-0.0.NextGen.spec.gz"
    head, count, body = gzip.decompress(src.read_bytes()).decode().split("\n", 2)
    teff, logg = head.split()[:2]
    n = int(count.split()[0])
    values = np.array(body.split(), float)
    values[n:2 * n] *= 1.02                 # a spectrum of its own (a copy would be refused as degenerate)
    rest = f"{count}\n" + "\n".join(f"{v:.7e}" for v in values) + "\n"
    (folder / "Z+0.3").mkdir()
    plus = folder / "Z+0.3/lte58-4.5+0.3.NextGen.spec.gz"
    plus.write_bytes(gzip.compress(f"{teff} {logg} 0.3\n{rest}".encode()))
    lib = nextgen.read(folder)
    assert 0.3 in set(np.round(lib.logz, 6)) and (lib.logz <= 0).sum() == len(lib) - 1
    # the sign counts when the name is checked against the header
    plus.write_bytes(gzip.compress(f"{teff} {logg} -0.3\n{rest}".encode()))
    with pytest.raises(ValueError, match="name says otherwise"):
        nextgen.read(folder)


@pytest.mark.parametrize("k", [500, 0])
def test_nextgen_nan_wavelength_is_named(copy_lib, k):
    """A NaN wavelength passed 'decrease' (NaN < 0 is False) and the repeat filter (step > 0) dropped it with
    the good point after it, silently; a NaN first wavelength was reported as a flux-unit problem."""
    folder = copy_lib("nextgen_phoenix")
    path = folder / "Z-0.0/lte58-4.5-0.0.NextGen.spec.gz"
    head, count, body = gzip.decompress(path.read_bytes()).decode().split("\n", 2)
    tokens = body.split()
    tokens[k] = "NaN"
    path.write_bytes(gzip.compress(f"{head}\n{count}\n{' '.join(tokens)}\n".encode()))
    with pytest.raises(ValueError, match=rf"lte58-4\.5-0\.0\.NextGen\.spec\.gz: wavelength {k + 1} is nan "
                                         r"\(1 of \d+ wavelengths not finite"):
        nextgen.read(folder)


def test_truncated_numbers_are_named(copy_lib):
    folder = copy_lib("nextgen_phoenix")
    path = folder / "Z-0.0/lte58-4.5-0.0.NextGen.spec.gz"
    text = gzip.decompress(path.read_bytes()).decode()
    path.write_bytes(gzip.compress(text[: len(text) // 2].encode()))
    with pytest.raises(ValueError, match=r"lte58.*expected .* numbers"):
        nextgen.read(folder)


def test_wrong_format_fits_is_named(copy_lib):
    folder = copy_lib("ck04_castelli_kurucz")
    path = folder / "ckp00/ckp00_5750.fits.gz"
    path.write_bytes(gzip.compress(b"this is not a FITS file\n" * 100))
    with pytest.raises(ValueError, match="ckp00_5750.fits.gz"):
        ck04.read(folder)


def test_wrong_format_text_is_named(copy_lib):
    folder = copy_lib("pegase_cm87_hotstars")
    (folder / "stellibCM.dat").write_text("wavelength flux\n1 2\n3 4\n")
    with pytest.raises(ValueError, match="stellibCM.dat"):
        cm87.read(folder)


def test_truncated_plain_text_is_named(copy_lib):
    folder = copy_lib("pegase_cm87_hotstars")
    path = folder / "stellibCM.dat"
    path.write_text(path.read_text()[:-2000])
    with pytest.raises(ValueError, match="stellibCM.dat.*expected"):
        cm87.read(folder)


def test_nan_flux_is_an_error_naming_the_file(copy_lib):
    folder = copy_lib("basel22_lejeune_solar")
    path = folder / "spectra/lej_t30000g04.0.txt.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    lines[500] = lines[500].split()[0] + "  nan"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(ValueError, match=r"lej_t30000g04\.0\.txt\.gz: 1 NaN"):
        basel.read(folder)


def test_teff_table_mismatch_is_named(copy_lib):
    folder = copy_lib("fsps_hot_and_agb")
    (folder / "Hot_spectra/CMFGEN_WN.teff").write_text("4.9\n5.0\n")
    with pytest.raises(ValueError, match="CMFGEN_WN_Zall.spec.gz.*CMFGEN_WN.teff"):
        read_library("cmfgen_wn", folder.parent)


def _ck04_with_catalog(libdir, tmp_path, listed):
    """The CK04 fixture folder copied, with an STScI-style catalog.fits listing ``listed`` (one row per g)."""
    from astropy.io import fits
    folder = tmp_path / "ck04_castelli_kurucz"
    shutil.copytree(libdir / "ck04_castelli_kurucz", folder)
    rows = [f"{name}[g{g:02d}]" for name in listed for g in range(0, 51, 5)]
    cols = [fits.Column(name="INDEX", format="20A", array=np.array(["-"] * len(rows))),
            fits.Column(name="FILENAME", format="40A", array=np.array(rows))]
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(folder / "catalog.fits")
    return folder


def test_ck04_files_listed_in_its_catalog_but_absent_are_named(libdir, tmp_path):
    """A CK04 copy missing files (the shared one lacks 40 of its catalog's 608, e.g. ckp00_4000: the solar
    4,000 K stars at every log g) was read without a word, leaving holes in the grid; the catalog beside the
    folders lists every file: the absent ones are named in a warning and in extra["missing_files"]."""
    present = ["ckm10/ckm10_5750.fits", "ckp00/ckp00_40000.fits", "ckp00/ckp00_5750.fits"]
    complete = ck04.read(_ck04_with_catalog(libdir, tmp_path / "a", present))
    assert "missing_files" not in complete.extra and len(complete) == 24
    folder = _ck04_with_catalog(libdir, tmp_path / "b", present + ["ckp00/ckp00_4000.fits"])
    with pytest.warns(UserWarning, match=r"1 of the 4 files listed in .*catalog.fits are absent .*_4000"):
        lib = ck04.read(folder)
    assert lib.extra["missing_files"] == ["ckp00/ckp00_4000.fits"] and len(lib) == 24
    assert folder / "catalog.fits" in lib.files                   # read, so in the provenance
    from smnet_sps.grid import build_grid, grid_info
    with pytest.warns(UserWarning, match="absent"):
        grid = build_grid(folder.parent, only="ck04", progress=False, log=lambda line: None)
    assert grid.libraries["ck04"]["missing_files"] == ["ckp00/ckp00_4000.fits"]
    assert "ck04: 1 files listed in its catalog were missing" in grid_info(grid)


def test_ck04_catalog_check_on_the_shared_copy(tmp_path):
    """The shared CK04 copy, one metallicity folder with the real catalog: the files absent from ckp00 are
    those the catalog lists and the folder lacks, found independently of the reader."""
    import os
    import re
    import warnings

    from astropy.io import fits

    from smnet_sps.constants import shared_data_dir
    if shared_data_dir() is None:
        pytest.skip("needs ../shared/data (CK04)")
    real = shared_data_dir() / "libraries" / "ck04_castelli_kurucz"
    folder = tmp_path / "ck04_castelli_kurucz"
    folder.mkdir()
    (folder / "ckp00").symlink_to(real / "ckp00")
    (folder / "catalog.fits.gz").symlink_to(real / "catalog.fits.gz")
    with fits.open(real / "catalog.fits.gz") as hdul:
        listed = {re.sub(r"\[.*", "", str(n)).strip() for n in hdul[1].data["FILENAME"]}
    have = {"ckp00/" + f.removesuffix(".gz") for f in os.listdir(real / "ckp00")}
    absent = sorted(n for n in listed if n.startswith("ckp00/") and n not in have)
    assert "ckp00/ckp00_4000.fits" in absent
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lib = ck04.read(folder)
    assert [n for n in lib.extra["missing_files"] if n.startswith("ckp00/")] == absent
    assert len(lib.extra["missing_files"]) == len(listed) - len(have)
    assert any("absent" in str(w.message) for w in caught)
    assert 4000.0 not in lib.teff and 4250.0 in lib.teff


def test_a_library_gzipped_or_gunzipped_file_by_file_reads_alike(libdir, libs, tmp_path):
    """`gzip -r` on a copy of the libraries: 10 of the 12 readers stopped at 'file ... does not exist' (the
    Teff tables, BaSeL's index, stellibCM.dat, the Rauch FITS were looked for under their plain names only,
    while the readers take either form of the spectra files). Every file is found in either form, read to
    the same spectra, and recorded under the name it has."""
    import subprocess
    for mode in ("gzip", "gunzip"):
        root = tmp_path / mode
        shutil.copytree(libdir, root)
        files = [p for p in root.rglob("*") if p.is_file() and p.suffix not in (".py", ".md")
                 and p.name != "README" and (p.suffix == ".gz") == (mode == "gunzip")]
        subprocess.run([mode, *map(str, files)], check=True)
        for name in (*DEFAULT_LIBRARIES, "rauch_tmap"):
            try:
                want = libs[name] if name in libs else read_library(name, libdir)
            except ValueError:                       # the degenerate Rauch FITS: refused alike
                with pytest.raises(ValueError, match="degenerate"):
                    read_library(name, root)
                continue
            got = read_library(name, root)
            for a, b in zip(got.fluxes, want.fluxes):
                np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(got.teff, want.teff)
            assert all(p.is_file() for p in got.files), name        # the files hashed into a grid's record
            assert all((root / s).is_file() for s in got.source_file), name
            assert all((root / f).is_file() for entries in got.parameter_source.values() for f, _ in entries)


def test_a_plain_file_named_gz_reads_alike_and_other_files_in_ck04_are_named(libdir, libs, tmp_path):
    """A plain-text file named .gz (a browser download, decompressed on the fly) was refused as "not valid
    gzip" by every reader but CK04's, which alone looked at the content: the shared reader now decides by the
    gzip magic bytes. NextGen files in the CK04 folders gave "no computed spectra found": now the expected
    names are given, with the files found."""
    root = tmp_path / "plain"
    shutil.copytree(libdir, root)
    plain = [p for p in root.rglob("*.gz") if p.is_file()]
    for p in plain:
        p.write_bytes(gzip.decompress(p.read_bytes()))
    assert len(plain) >= 16            # CK04, NextGen, BaSeL, CMFGEN, WM-basic, Rauch post-AGB, TP-AGB
    for name in DEFAULT_LIBRARIES:
        got, want = read_library(name, root), libs[name]
        for a, b in zip(got.fluxes, want.fluxes):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(got.teff, want.teff)
    ck = root / "ck04_castelli_kurucz"
    for sub in ck.iterdir():
        for p in sub.iterdir():
            p.unlink()
    shutil.copy(root / "nextgen_phoenix/Z-0.0/lte58-4.5-0.0.NextGen.spec.gz", ck / "ckp00")
    with pytest.raises(ValueError, match=r"no spectrum files named ck<m\|p>NN_<Teff>\.fits .*found 1 other "
                                         r"file\(s\), e.g. lte58-4\.5-0\.0\.NextGen\.spec\.gz"):
        ck04.read(ck)
