"""Native library readers, on small fixtures cut from the real files (tests/fixtures/libraries)."""
import gzip
import shutil

import numpy as np
import pytest

from smnet_sps.libraries import IGNORED_NOTE, LIBRARIES, PHASE_LIBRARIES, UNION_LIBRARIES, read_library
from smnet_sps.libraries import basel, ck04, cm87, nextgen


@pytest.fixture(scope="module")
def libdir(fixtures_dir):
    return fixtures_dir / "libraries"


@pytest.fixture(scope="module")
def libs(libdir):
    return {name: read_library(name, libdir) for name in LIBRARIES}


def test_registry_names_match_contract():
    assert UNION_LIBRARIES == ("ck04", "nextgen", "basel22", "wmbasic", "rauch_tmap", "cm87")
    assert PHASE_LIBRARIES == ("cmfgen_wn", "cmfgen_wc", "tpagb_orich", "tpagb_crich", "tpagb_crich_aringer")


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


@pytest.mark.parametrize("name", ["wmbasic", "cmfgen_wn", "cmfgen_wc", "tpagb_orich", "tpagb_crich",
                                  "tpagb_crich_aringer"])
def test_normalised_libraries_rescaled_to_sigma_teff4(libs, name):
    np.testing.assert_allclose(libs[name].bolometric_ratio(), 1.0, rtol=1e-10)
    # the native normalisation was close to one (an f_nu read as F_lambda would be ~1e-10 off)
    assert np.all(np.abs(libs[name].raw_ratio - 1) < 0.25)


@pytest.mark.parametrize("name", ["rauch_tmap", "cm87"])
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
    rauch = libs["rauch_tmap"]
    assert set(rauch.teff) == {50000.0, 60000.0} and set(rauch.logg) == {6.0, 7.0}
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


def test_rauch_post_agb_duplicate_not_read(libs):
    """FSPS ipagb = Rauch (2003) again: only the pystellibs grid (rauch_tmap) is used."""
    assert not any("ipagb" in n for n in LIBRARIES)
    for lib in libs.values():
        assert not any("ipagb" in str(p) for p in lib.files)
    assert "ipagb" in IGNORED_NOTE and "rauch_tmap" in IGNORED_NOTE


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
