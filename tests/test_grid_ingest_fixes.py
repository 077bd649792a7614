"""Grid ingest: symlinked library folders, truncated / damaged files named correctly, --phase-out checked
before writing, the wavelength grid checked, a corrupt grid file named. Damaged copies of the fixture files
(cut from the real libraries) in tmp_path; every test reads one small library."""
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from smnet_sps.cli import main
from smnet_sps.grid import build_grid, check_stellar_parameters, load_grid, save_grid
from smnet_sps.libraries import read_library


@pytest.fixture(scope="module")
def libdir(fixtures_dir):
    return fixtures_dir / "libraries"


@pytest.fixture
def copy_lib(libdir, tmp_path):
    """A writable copy of one fixture library folder below tmp_path/libs; returns the libraries root."""
    def _copy(folder):
        shutil.copytree(libdir / folder, tmp_path / "libs" / folder)
        return tmp_path / "libs"
    return _copy


def read_gz(path):
    return gzip.decompress(path.read_bytes()).decode()


def write_gz(path, text):
    path.write_bytes(gzip.compress(text.encode()))


def drop_last_lines(path, n):
    """A gzipped library file cut short by its last ``n`` lines (a truncated download)."""
    write_gz(path, "\n".join(read_gz(path).splitlines()[:-n]) + "\n")


def cut_last_number(path, keep):
    """Cut the file inside its last number, keeping ``keep`` characters of it (as a truncated copy would)."""
    text = read_gz(path).rstrip()
    last = text.split()[-1]
    write_gz(path, text[: len(text) - len(last) + keep])


# ------------------------------------------------------------------------------------------- 1 symlinks
def test_symlinked_library_folders_build(libdir, tmp_path):
    linked = tmp_path / "linked"
    linked.mkdir()
    for folder in libdir.iterdir():
        if folder.is_dir():
            (linked / folder.name).symlink_to(folder.resolve())
    grid = build_grid(linked, only="cm87", progress=False, log=lambda s: None)
    # provenance relative to the folder given, not to where the links point
    assert [line.split()[0] for line in grid.provenance] == ["pegase_cm87_hotstars/stellibCM.dat"]
    assert len(grid) > 0


# ----------------------------------------------------------------------------------- 2 truncated files
@pytest.mark.parametrize("library, file, keep", [
    ("tpagb_crich_aringer", "AGB_spectra/Crich_Aringer.spec.gz", 6),     # 7.3549E-22 -> 7.3549
    ("tpagb_orich", "AGB_spectra/Orich.spec.gz", 6),
    ("rauch_pagb", "Hot_spectra/ipagb_halo.spec.gz", 4),
    ("cmfgen_wc", "Hot_spectra/CMFGEN_WC_Zall.spec.gz", 3)])
def test_a_file_cut_inside_its_last_number_is_an_error(copy_lib, library, file, keep):
    root = copy_lib("fsps_hot_and_agb")
    cut_last_number(root / "fsps_hot_and_agb" / file, keep=keep)
    name = Path(file).name.replace(".", r"\.")
    with pytest.raises(ValueError, match=rf"{name}: the last number .* truncated"):
        read_library(library, root)


def test_tpagb_cut_at_a_row_is_an_error(copy_lib):
    root = copy_lib("fsps_hot_and_agb")
    path = root / "fsps_hot_and_agb/AGB_spectra/Crich.spec.gz"
    drop_last_lines(path, 100)
    with pytest.raises(ValueError, match=r"Crich\.spec\.gz: 6046 wavelength rows, expected 6,146"):
        read_library("tpagb_crich", root)


def test_rauch_pagb_cut_at_a_row_is_an_error(copy_lib):
    root = copy_lib("fsps_hot_and_agb")
    path = root / "fsps_hot_and_agb/Hot_spectra/ipagb_solar.spec.gz"
    drop_last_lines(path, 20)
    with pytest.raises(ValueError, match=r"ipagb_solar\.spec\.gz: wavelengths 10\.1\.\..* truncated"):
        read_library("rauch_pagb", root)


#: log Teff of the full FSPS CMFGEN WN grid (CMFGEN_WN.teff, 12 values)
WN_LOG_TEFF = [4.47712, 4.50515, 4.54407, 4.60206, 4.65321, 4.69897, 4.77815, 4.84510, 4.90309, 4.95424,
               5.00000, 5.07918]


def test_cmfgen_cut_after_four_of_five_metallicities_is_an_error(copy_lib):
    root = copy_lib("fsps_hot_and_agb")
    hot = root / "fsps_hot_and_agb/Hot_spectra"
    lines = read_gz(hot / "CMFGEN_WN_Zall.spec.gz").splitlines()
    (hot / "CMFGEN_WN.teff").write_text("".join(f"{t:12.5f}\n" for t in WN_LOG_TEFF))
    body = [lines[0]]
    for z in (0.001, 0.004, 0.008, 0.020):        # the fifth metallicity (0.040) is missing
        for t in WN_LOG_TEFF:
            body += [f" {t:.2f} {z:.3f}", lines[2]]
    write_gz(hot / "CMFGEN_WN_Zall.spec.gz", "\n".join(body) + "\n")
    with pytest.raises(ValueError, match=r"CMFGEN_WN_Zall\.spec\.gz: 48 spectra = 4 metallicities x 12 Teff, "
                                         r"expected 5 x 12"):
        read_library("cmfgen_wn", root)


def test_cmfgen_with_only_its_wavelength_line_is_a_clear_error(copy_lib):
    root = copy_lib("fsps_hot_and_agb")
    path = root / "fsps_hot_and_agb/Hot_spectra/CMFGEN_WN_Zall.spec.gz"
    write_gz(path, read_gz(path).splitlines()[0] + "\n")
    with pytest.raises(ValueError, match=r"CMFGEN_WN_Zall\.spec\.gz: only the wavelength line, no spectra"):
        read_library("cmfgen_wn", root)


def test_truncated_phase_file_is_skipped_not_built(copy_lib):
    root = copy_lib("fsps_hot_and_agb")
    cut_last_number(root / "fsps_hot_and_agb/AGB_spectra/Crich_Aringer.spec.gz", keep=6)
    grid = build_grid(root, only="tpagb_crich_aringer,tpagb_crich", progress=False, log=lambda s: None)
    assert set(grid.phase_libraries) == {"tpagb_crich"}
    assert "Crich_Aringer.spec.gz" in grid.attrs["skipped_libraries"]["tpagb_crich_aringer"]


# ----------------------------------------------------------------------------- 3 the right file named
def test_basel_damaged_first_file_is_the_one_named(copy_lib):
    root = copy_lib("basel22_lejeune_solar")
    path = root / "basel22_lejeune_solar/spectra/lej_t03500g00.0.txt.gz"      # first in the index
    drop_last_lines(path, 50)
    with pytest.raises(ValueError, match=r"lej_t03500g00\.0\.txt\.gz: 1171 wavelength rows, expected 1,221"):
        read_library("basel22", root)


def test_basel_first_file_with_a_wrong_wavelength_is_the_one_named(copy_lib):
    root = copy_lib("basel22_lejeune_solar")
    path = root / "basel22_lejeune_solar/spectra/lej_t03500g00.0.txt.gz"
    lines = read_gz(path).splitlines()
    wave, flux = lines[600].split()
    lines[600] = f"{float(wave) + 1:.1f} {flux}"
    write_gz(path, "\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"lej_t03500g00\.0\.txt\.gz: wavelength .* in row 601"):
        read_library("basel22", root)


def test_basel_cut_inside_last_number_is_an_error(copy_lib):
    root = copy_lib("basel22_lejeune_solar")
    cut_last_number(root / "basel22_lejeune_solar/spectra/lej_t30000g04.0.txt.gz", keep=4)
    with pytest.raises(ValueError, match=r"lej_t30000g04\.0\.txt\.gz: the last number"):
        read_library("basel22", root)


def wmbasic_three_metallicities(root):
    """The fixture's one WM-basic file as three metallicities (the readers compare their grids)."""
    hot = root / "fsps_hot_and_agb/Hot_spectra"
    (hot / "WMBASIC_zlegend.dat").write_text(" 0.0100\n 0.0140\n 0.0200\n")
    for z in ("0.0100", "0.0140"):
        shutil.copy(hot / "WMBASIC_z0.0200.spec.gz", hot / f"WMBASIC_z{z}.spec.gz")
    return hot


def test_wmbasic_damaged_first_file_is_the_one_named(copy_lib):
    root = copy_lib("fsps_hot_and_agb")
    hot = wmbasic_three_metallicities(root)
    first = hot / "WMBASIC_z0.0100.spec.gz"
    lines = read_gz(first).splitlines()
    parts = lines[2000].split()
    lines[2000] = " ".join([f"{float(parts[0]) + 0.5:.1f}"] + parts[1:])     # still increasing
    write_gz(first, "\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"WMBASIC_z0\.0100\.spec\.gz: wavelength grid differs") as err:
        read_library("wmbasic", root)
    assert "0.0140" not in str(err.value) and "0.0200" not in str(err.value)


def test_wmbasic_truncated_first_file_is_the_one_named(copy_lib):
    root = copy_lib("fsps_hot_and_agb")
    hot = wmbasic_three_metallicities(root)
    first = hot / "WMBASIC_z0.0100.spec.gz"
    drop_last_lines(first, 8)
    with pytest.raises(ValueError, match=r"WMBASIC_z0\.0100\.spec\.gz: 5500 wavelength rows, expected 5,508"):
        read_library("wmbasic", root)



def test_ck04_damaged_first_file_is_the_one_named(copy_lib):
    """CK04 compared every file's grid with the first one read, so damage there blamed the next, healthy
    file; now the grid most files share is the reference (as for WM-basic)."""
    from astropy.io import fits
    root = copy_lib("ck04_castelli_kurucz")
    first = sorted((root / "ck04_castelli_kurucz").glob("ck*/*.fits.gz"))[0]
    with fits.open(first) as hdul:
        hdul[1].data["WAVELENGTH"] = hdul[1].data["WAVELENGTH"] * 1e-4     # micron instead of Angstrom
        hdul.writeto(first, overwrite=True)
    named = first.name.replace(".", "[.]")
    with pytest.raises(ValueError, match=rf"{named}: wavelength grid differs") as err:
        read_library("ck04", root)
    assert str(err.value).count(".fits.gz") == 1


def test_two_spectra_at_one_grid_point_are_refused(copy_lib):
    """A mislabelled index line put a second spectrum at 5750 K, log g 4.5 and left a hole at 30,000 K: the
    build accepted it even with --strict (the only trace, a 0.4 bolometric deviation in the log)."""
    root = copy_lib("basel22_lejeune_solar")
    index = root / "basel22_lejeune_solar/lejeune_index.ls"
    text = index.read_text()
    index.write_text(text.replace("30000   4.0", " 5750   4.5"))
    # the file's name says otherwise: refused by the index check, naming the line (since 2026-12-02)
    with pytest.raises(ValueError, match=r"lejeune_index\.ls: line 3 gives Teff 5750 K, log g 4\.5 for "
                                         r"lej_t30000g04\.0\.txt, whose name says 30000 K, log g 4"):
        read_library("basel22", root)
    # a file whose name carries no parameters: the duplicate check still finds the second spectrum
    spectra = root / "basel22_lejeune_solar/spectra"
    (spectra / "other.txt.gz").write_bytes((spectra / "lej_t30000g04.0.txt.gz").read_bytes())
    index.write_text(text.replace("lej_t30000g04.0.txt             30000   4.0",
                                  "other.txt             5750   4.5"))
    with pytest.raises(ValueError, match=r"two different spectra at Teff 5750 K, log g 4.5.*other\.txt"
                                         r".*lejeune_index\.ls line 3"):
        read_library("basel22", root)


def test_two_copies_of_one_spectrum_are_refused(copy_lib):
    """gunzip -k leaves ckp00_5750.fits beside ckp00_5750.fits.gz: both were read and the grid held the node
    twice, so the split could test on one copy and train on the other. Refused, naming both files."""
    root = copy_lib("ck04_castelli_kurucz")
    packed = root / "ck04_castelli_kurucz/ckp00/ckp00_5750.fits.gz"
    packed.with_suffix("").write_bytes(gzip.decompress(packed.read_bytes()))
    with pytest.raises(ValueError, match=r"the same spectrum twice at Teff 5750 K.*ckp00_5750\.fits"):
        read_library("ck04", root)


def test_a_spectrum_in_other_flux_units_is_refused(copy_lib, tmp_path):
    """One BaSeL file with its flux x 1e8 (other units) was built into the grid even with --strict, the
    only trace a deviation of 1e8 in the log."""
    from smnet_sps.grid import check_bolometric_flux
    root = copy_lib("basel22_lejeune_solar")
    path = root / "basel22_lejeune_solar/spectra/lej_t05750g04.5.txt.gz"
    rows = [line.split() for line in read_gz(path).splitlines() if line.strip()]
    write_gz(path, "\n".join(f"{w} {float(f) * 1e8:.6E}" for w, f in rows) + "\n")
    lib = read_library("basel22", root)
    with pytest.raises(ValueError, match=r"lej_t05750g04\.5\.txt\.gz: the spectrum at Teff 5750 K.*"
                                         r"1e\+08 x sigma"):
        check_bolometric_flux(lib, root)
    assert main(["grid", "build", "--libraries", str(root), "--only", "basel22", "--strict", "--no-progress",
                 "--out", str(tmp_path / "g.h5")]) == 1
    assert not (tmp_path / "g.h5").exists()

def test_bad_logg_in_basel_index_names_the_index(copy_lib):
    root = copy_lib("basel22_lejeune_solar")
    index = root / "basel22_lejeune_solar/lejeune_index.ls"
    index.write_text(index.read_text().replace("5750   4.5", "5750   45"))
    # caught by the index check against the file's name (since 2026-12-02), naming the line
    with pytest.raises(ValueError, match=r"lejeune_index\.ls: line 2 gives Teff 5750 K, log g 45 for "
                                         r"lej_t05750g04\.5\.txt, whose name says 5750 K, log g 4\.5"):
        read_library("basel22", root)
    # a name without parameters: the physical-range check names the index line
    spectra = root / "basel22_lejeune_solar/spectra"
    (spectra / "lej_t05750g04.5.txt.gz").rename(spectra / "other.txt.gz")
    index.write_text(index.read_text().replace("lej_t05750g04.5.txt", "other.txt"))
    lib = read_library("basel22", root)
    with pytest.raises(ValueError, match=r"lejeune_index\.ls: line 2 gives log g = 45 "
                                         r"\(for basel22_lejeune_solar/spectra/other\.txt\.gz\)"):
        check_stellar_parameters(lib, root)


def test_extra_line_in_wmbasic_teff_names_the_teff_file(copy_lib):
    root = copy_lib("fsps_hot_and_agb")
    teff = root / "fsps_hot_and_agb/Hot_spectra/WMBASIC.teff"
    teff.write_text(teff.read_text() + "      4.44871\n")
    with pytest.raises(ValueError, match=r"WMBASIC\.teff: 3 Teff values, but WMBASIC_z0\.0200\.spec\.gz "
                                         r"has 6 flux columns"):
        read_library("wmbasic", root)


def test_linear_wmbasic_teff_names_the_teff_file(copy_lib):
    root = copy_lib("fsps_hot_and_agb")
    (root / "fsps_hot_and_agb/Hot_spectra/WMBASIC.teff").write_text("  25000.0\n  26300.0\n")
    with pytest.raises(ValueError, match=r"WMBASIC\.teff: value 1 is 25000; expected log10 Teff"):
        read_library("wmbasic", root)


def test_bad_teff_in_tpagb_table_names_the_table(copy_lib):
    root = copy_lib("fsps_hot_and_agb")
    teff = root / "fsps_hot_and_agb/AGB_spectra/Crich_Aringer.teff"
    teff.write_text(teff.read_text().replace("2400.00", "24.00"))      # still increasing: read
    lib = read_library("tpagb_crich_aringer", root)
    with pytest.raises(ValueError, match=r"Crich_Aringer\.teff: line 1 gives Teff = 24 "):
        check_stellar_parameters(lib, root)


@pytest.mark.parametrize("old, line, column", [("-1.98", 2, 2), ("2466", 3, 20)])
def test_nan_in_tpagb_teff_table_names_the_line(copy_lib, old, line, column):
    """A NaN log Z/Zsun in the header row made argmin(|log Z|) pick its column as 'solar' (O-rich Teff 2517 K
    instead of 2457 K); a NaN Teff in another column passed the 'increasing' check (NaN compares False)."""
    root = copy_lib("fsps_hot_and_agb")
    teff = root / "fsps_hot_and_agb/AGB_spectra/Orich.teff"
    lines = teff.read_text().split("\n")
    assert lines[line - 1].split()[column - 1] == old
    lines[line - 1] = lines[line - 1].replace(old, "nan", 1)
    teff.write_text("\n".join(lines))
    with pytest.raises(ValueError, match=rf"Orich\.teff: line {line}, column {column} is 'nan'; the table "
                                         r"must hold finite numbers"):
        read_library("tpagb_orich", root)


def test_nan_metallicity_in_cmfgen_header_names_the_line(copy_lib):
    """A NaN Z passed 'Z > 0' (False for NaN) and made a Z = 0.001 WN spectrum 'any metallicity'."""
    root = copy_lib("fsps_hot_and_agb")
    path = root / "fsps_hot_and_agb/Hot_spectra/CMFGEN_WN_Zall.spec.gz"
    lines = read_gz(path).split("\n")
    assert lines[1].split() == ["4.48", "0.001"]
    lines[1] = lines[1].replace("0.001", "nan")
    write_gz(path, "\n".join(lines))
    with pytest.raises(ValueError, match=r"CMFGEN_WN_Zall\.spec\.gz: line 2 must be 'logTeff Z' with finite "
                                         r"numbers and Z > 0, got ' 4\.48 nan'"):
        read_library("cmfgen_wn", root)


def test_nan_metallicity_only_for_libraries_not_metallicity_specific(libdir):
    """NaN [M/H] means "used at every metallicity": only the Lancon & Mouhcine TP-AGB spectra say so; a NaN
    in any other phase library (CMFGEN, Rauch, Aringer) is damage, refused naming the file."""
    for name in ("tpagb_orich", "tpagb_crich"):
        lib = read_library(name, libdir)
        assert np.isnan(lib.logz).all()
        check_stellar_parameters(lib, libdir)
    for name, source in (("cmfgen_wn", r"CMFGEN_WN_Zall\.spec\.gz"), ("rauch_pagb", r"ipagb_solar\.spec\.gz"),
                         ("tpagb_crich_aringer", r"Crich_Aringer\.spec\.gz")):
        lib = read_library(name, libdir)
        lib.logz[0] = np.nan
        with pytest.raises(ValueError, match=source + r": star 1 of this file .* \[M/H\] = nan, outside "
                                             r".*; NaN \(not metallicity specific\) is allowed only in "
                                             r"tpagb_orich, tpagb_crich"):
            check_stellar_parameters(lib, libdir)


def test_a_library_failing_after_its_reader_is_skipped_not_the_build(copy_lib, monkeypatch):
    """Resampling onto the common grid ran outside the per-library skip: a NaN wavelength that a reader let
    through (rauch_pagb, before it checked) aborted the whole build, losing the libraries read correctly (cm87
    here) with an error naming neither file nor library. It is a SKIPPED line now (or --strict's error)."""
    import smnet_sps.libraries.rauch_pagb as rauch_pagb
    copy_lib("pegase_cm87_hotstars")
    root = copy_lib("fsps_hot_and_agb")
    path = root / "fsps_hot_and_agb/Hot_spectra/ipagb_solar.spec.gz"
    lines = read_gz(path).splitlines()
    lines[40] = " ".join(["NaN"] + lines[40].split()[1:])
    write_gz(path, "\n".join(lines) + "\n")
    monkeypatch.setattr(rauch_pagb, "check_wavelengths", lambda wave, *args, **kwargs: wave)  # a blind reader
    log = []
    grid = build_grid(root, only="cm87,rauch_pagb", progress=False, log=log.append)
    assert grid.library_names == ["cm87"] and not grid.phase_libraries
    assert "rauch_pagb" in grid.attrs["skipped_libraries"]
    assert any(line.startswith("!!! SKIPPED library rauch_pagb: ") for line in log)
    with pytest.raises(ValueError, match="library rauch_pagb cannot be used \\(strict build\\)"):
        build_grid(root, only="cm87,rauch_pagb", progress=False, log=log.append, strict=True)


# ------------------------------------------------------------------------- 4 --phase-out precondition
def test_phase_out_without_phase_libraries_writes_nothing(libdir, tmp_path, capsys):
    out, npz = tmp_path / "o.h5", tmp_path / "o.npz"
    rc = main(["grid", "build", "--libraries", str(libdir), "--only", "cm87", "--out", str(out),
               "--phase-out", str(npz), "--no-progress"])
    assert rc == 1
    assert "--phase-out needs phase libraries" in capsys.readouterr().err
    assert not out.exists() and not npz.exists()


def test_phase_out_with_every_phase_library_skipped_writes_nothing(copy_lib, tmp_path, capsys):
    root = copy_lib("pegase_cm87_hotstars")
    out, npz = tmp_path / "o.h5", tmp_path / "o.npz"
    # tpagb_orich asked for, but its folder is missing: skipped, so there is nothing to export
    rc = main(["grid", "build", "--libraries", str(root), "--only", "cm87,tpagb_orich", "--out", str(out),
               "--phase-out", str(npz), "--no-progress"])
    assert rc == 1
    assert "--phase-out needs phase libraries" in capsys.readouterr().err
    assert not out.exists() and not npz.exists()


def test_phase_out_into_a_missing_folder_is_created(libdir, tmp_path, capsys):
    """--phase-out in a folder that does not exist yet: created like --out's (it failed after --out was
    written, naming a temporary file, and the grid left behind blocked the rerun)."""
    out, npz = tmp_path / "nd1" / "g.h5", tmp_path / "nd2" / "deeper" / "p.npz"
    rc = main(["grid", "build", "--libraries", str(libdir), "--only", "rauch_pagb", "--out", str(out),
               "--phase-out", str(npz), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert out.is_file() and npz.is_file()
    with np.load(npz) as z:
        assert list(z["names"]) == ["rauch_pagb"] and z["rauch_pagb__flux"].shape[0] > 0
    assert sorted(p.name for p in npz.parent.iterdir()) == ["p.npz"]      # no temporary file left


@pytest.mark.filterwarnings("ignore:No artists with labels")      # the plot of a grid without log g stars
def test_a_failed_phase_out_write_leaves_no_grid_file(libdir, tmp_path, capsys, monkeypatch):
    """Whatever makes the --phase-out write fail after the build (here a full disk), --out is not left
    behind for the rerun to trip on."""
    import smnet_sps.grid as grid_module

    def disk_full(grid, path):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(grid_module, "export_phase_libraries", disk_full)
    out, png, npz = tmp_path / "g.h5", tmp_path / "c.png", tmp_path / "p.npz"
    rc = main(["grid", "build", "--libraries", str(libdir), "--only", "rauch_pagb", "--out", str(out),
               "--plot", str(png), "--phase-out", str(npz), "--no-progress"])
    assert rc == 1
    assert "No space left" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.filterwarnings("ignore:No artists with labels")
@pytest.mark.parametrize("failing", ["save_figure", "export_phase_libraries"])
def test_a_failed_write_under_overwrite_keeps_the_old_outputs(libdir, tmp_path, capsys, monkeypatch, failing):
    """The cleanup after a failed --plot / --phase-out write removed --out, which save_grid had already
    renamed over the user's old grid: under --overwrite both the old and the new grid were lost. Every output
    is now renamed into place only once all were written, so the old files stay byte for byte."""
    import smnet_sps.grid as grid_module
    import smnet_sps.output_files as output_files

    out, png, npz = tmp_path / "g.h5", tmp_path / "c.png", tmp_path / "p.npz"
    build = ["grid", "build", "--libraries", str(libdir), "--only", "rauch_pagb", "--out", str(out),
             "--plot", str(png), "--phase-out", str(npz), "--no-progress", "--overwrite"]
    assert main(build) == 0, capsys.readouterr().err
    old = {p.name: p.read_bytes() for p in (out, png, npz)}

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(output_files if failing == "save_figure" else grid_module, failing, disk_full)
    assert main(build) == 1
    assert "No space left" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == old       # no temporary file left either

# ----------------------------------------------------------------------------- 5 the wavelength grid
@pytest.mark.parametrize("wave, match", [
    (np.linspace(0.3, 1.0, 50), r"0\.3\.\.1 is not in Angstrom"),              # micron
    (np.linspace(1e3, 1e9, 50), r"not in Angstrom"),
    (np.array([5000.0, 4000.0, 6000.0]), "strictly increasing"),
    (np.array([4000.0, np.nan, 6000.0]), "finite"),
    (np.array([5000.0]), "at least 2"),
    (np.linspace(2.0, 50.0, 20), r"does not overlap library cm87 \(91\.\."),    # Angstrom, beside it
])
def test_wavelength_grid_is_checked(libdir, wave, match):
    with pytest.raises(ValueError, match=match):
        build_grid(libdir, only="cm87", wavelength=wave, progress=False, log=lambda s: None)


def test_wavelength_grid_as_quantity_in_micron_is_converted(libdir):
    import astropy.units as u
    grid = build_grid(libdir, only="cm87", wavelength=np.linspace(0.3, 1.0, 50) * u.um, progress=False,
                      log=lambda s: None)
    assert grid.wavelength[0] == pytest.approx(3000.0) and grid.mask.all()
    with pytest.raises(ValueError, match="not a wavelength"):
        build_grid(libdir, only="cm87", wavelength=np.linspace(1, 2, 5) * u.s, progress=False)


# --------------------------------------------------------------------------------- 6 corrupt grid file
def test_corrupt_data_chunk_names_the_file(libdir, tmp_path, capsys):
    import h5py

    path = tmp_path / "grid.h5"
    save_grid(build_grid(libdir, only="cm87", progress=False, log=lambda s: None), path)
    with h5py.File(path, "r") as f:
        chunk = f["flux"].id.get_chunk_info(0)
    data = bytearray(path.read_bytes())
    data[chunk.byte_offset:chunk.byte_offset + chunk.size] = b"\xff" * chunk.size
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{path}: union grid file is corrupt"):
        load_grid(path)
    assert main(["grid", "info", str(path)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and "corrupt" in err


def test_cm87_cut_inside_its_last_number_is_an_error(libdir, tmp_path):
    """stellibCM.dat cut from .8174E-17 to .8174 still held the right count of numbers: its 180 kK star's
    160 um pixel came out 1e17x too bright and integrated to 81,740 sigma Teff^4, even with --strict."""
    folder = tmp_path / "pegase_cm87_hotstars"
    folder.mkdir()
    text = (libdir / "pegase_cm87_hotstars" / "stellibCM.dat").read_text().rstrip()
    (folder / "stellibCM.dat").write_text(text[:-4] + "\n")
    with pytest.raises(ValueError, match=r"stellibCM\.dat: the last number .* truncated"):
        read_library("cm87", tmp_path)


def test_cm87_with_a_damaged_flux_value_is_refused(libdir, tmp_path):
    """CM87 is multiplied by sigma Teff^4, not divided by its integral, so one damaged value (a whole exponent
    lost) kept its scale in the grid: the bolometric check now covers it, naming the file."""
    from smnet_sps.grid import build_grid
    folder = tmp_path / "pegase_cm87_hotstars"
    folder.mkdir()
    text = (libdir / "pegase_cm87_hotstars" / "stellibCM.dat").read_text().rstrip()
    last = text.split()[-1]                               # e.g. .3097E-16, the 160 um pixel
    (folder / "stellibCM.dat").write_text(text[: -len(last)] + last.split("E")[0] + "E+03\n")
    with pytest.raises(ValueError, match=r"stellibCM\.dat: the spectrum at Teff .* integrates to"):
        build_grid(tmp_path, only="cm87", progress=False, log=lambda s: None)


# ------------------------------------------------------------------------- labels a file carries itself
def test_a_truncated_uncompressed_ck04_table_is_named(copy_lib):
    """An uncompressed CK04 table cut short failed in numpy's reshape ("cannot reshape array of size 1155")
    with no file named, and the default build then skipped all of CK04 without saying which file."""
    root = copy_lib("ck04_castelli_kurucz")
    packed = root / "ck04_castelli_kurucz/ckp00/ckp00_5750.fits.gz"
    raw = gzip.decompress(packed.read_bytes())
    packed.with_suffix("").write_bytes(raw[:-5000])
    packed.unlink()
    with pytest.raises(ValueError, match=r"ckp00_5750\.fits: cannot be read as FITS"):
        read_library("ck04", root)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_a_truncated_gzipped_ck04_table_is_named_as_truncated(copy_lib, keep):
    """A .fits.gz cut at 50-99.9 %: astropy read it as a file without its table, so the error said
    "expected a binary table in extension 1 (CK04 format)"; it now says the file is truncated."""
    root = copy_lib("ck04_castelli_kurucz")
    packed = root / "ck04_castelli_kurucz/ckp00/ckp00_5750.fits.gz"
    content = packed.read_bytes()
    packed.write_bytes(content[:int(len(content) * keep)])
    with pytest.raises(ValueError, match=r"ckp00_5750\.fits\.gz: cannot be read, the file is truncated"):
        read_library("ck04", root)


def test_a_ck04_file_that_cannot_be_opened_is_not_called_a_bad_gzip(copy_lib, tmp_path):
    """The CK04 reader read the file's bytes inside its gzip try, so a missing file, a directory or a
    permission error was reported as "cannot be read, the file is truncated or not valid gzip"; the OSError
    that says what happened now comes through, naming the file."""
    from smnet_sps.libraries._common import read_bytes       # CK04's reader, shared by every library since
    with pytest.raises(FileNotFoundError, match="No such file") as missing:
        read_bytes(tmp_path / "ckp00_5750.fits.gz")
    root = copy_lib("ck04_castelli_kurucz")
    packed = root / "ck04_castelli_kurucz/ckp00/ckp00_5750.fits.gz"
    packed.unlink()
    packed.mkdir()                      # a folder under a CK04 file's name
    with pytest.raises(IsADirectoryError, match=r"Is a directory: .*ckp00_5750\.fits\.gz") as folder:
        read_library("ck04", root)
    for exc in (missing, folder):
        assert "not valid gzip" not in str(exc.value)


@pytest.mark.parametrize("move, match", [
    (("ckp00/ckp00_5750.fits.gz", "ckm10/ckp00_5750.fits.gz"),
     r"ckp00_5750\.fits\.gz: its name says \[M/H\] \+0\.0 but it lies in the folder for -1\.0"),
    (("ckp00/ckp00_5750.fits.gz", "ckp00/ckp00_5800.fits.gz"),
     r"ckp00_5800\.fits\.gz: its name says Teff 5800 K but its header TEFF = 5750"),
])
def test_a_ck04_file_in_the_wrong_place_or_renamed_is_refused(copy_lib, move, match):
    """The folder alone gave [M/H] (a ckp00 file copied into ckm10 was built as [M/H] -1) and the name alone
    Teff (a renamed file took the new name's Teff); the file's name and header must agree with both."""
    root = copy_lib("ck04_castelli_kurucz") / "ck04_castelli_kurucz"
    (root / move[0]).rename(root / move[1])
    with pytest.raises(ValueError, match=match):
        read_library("ck04", root.parent)


def test_a_renamed_nextgen_file_is_refused(copy_lib):
    root = copy_lib("nextgen_phoenix") / "nextgen_phoenix"
    (root / "Z-0.0/lte58-4.5-0.0.NextGen.spec.gz").rename(root / "Z-0.0/lte59-4.5-0.0.NextGen.spec.gz")
    with pytest.raises(ValueError, match=r"lte59-4\.5-0\.0\.NextGen\.spec\.gz: its header gives Teff 5800 K"):
        read_library("nextgen", root.parent)


@pytest.mark.parametrize("library, path", [("wmbasic", "Hot_spectra/WMBASIC.teff"),
                                           ("tpagb_crich_aringer", "AGB_spectra/Crich_Aringer.teff")])
def test_a_reordered_teff_table_is_refused(copy_lib, library, path):
    """The spectra's columns are in Teff order and nothing else labels them: a reversed WMBASIC.teff gave the
    "25,000 K" spectrum one that peaks at 610 A (Wien 47,500 K); no bolometric check can see it."""
    root = copy_lib("fsps_hot_and_agb")
    teff = root / "fsps_hot_and_agb" / path
    lines = [ln for ln in teff.read_text().splitlines() if ln.strip()]
    teff.write_text("\n".join(reversed(lines)) + "\n")
    with pytest.raises(ValueError, match=r"must increase .* a reordered or damaged file"):
        read_library(library, root)


def test_a_grid_that_leaves_a_spectrum_dark_is_refused_at_build(copy_lib):
    """build_grid(wavelength=91-912 A) wrote BaSeL's cool stars (exactly zero below 912 A in the real
    files; here the fixture's 3,500 K star made so) as all-zero rows, which load_grid then refused as
    "damaged: rebuild it" (the rebuild made the same file)."""
    from smnet_sps.grid import default_wavelength
    root = copy_lib("basel22_lejeune_solar")
    path = root / "basel22_lejeune_solar/spectra/lej_t03500g00.0.txt.gz"
    rows = np.loadtxt(gzip.open(path, "rt"))
    rows[rows[:, 0] < 912, 1] = 0.0
    write_gz(path, "".join(f"{w!r} {f!r}\n" for w, f in rows.tolist()))
    w = default_wavelength().value
    with pytest.raises(ValueError, match=r"leaves 1 spectra of basel22 with no positive known pixel "
                                         r"\(e\.g\. Teff 3500 K"):
        build_grid(root, only="basel22", wavelength=w[(w >= 91) & (w <= 912)])


def test_a_phase_library_dark_on_the_grid_still_builds(copy_lib):
    """The dark-spectrum refusal is for the union grid that load_grid checks; a phase library whose known
    pixels on the grid are all zero still builds (the backend drops its dark spectra). Its zero padding at the
    ends of the table is unknown, not dark (dropped by the reader), so the zeros are put inside it here."""
    root = copy_lib("fsps_hot_and_agb")
    path = root / "fsps_hot_and_agb/AGB_spectra/Orich.spec.gz"
    lines = read_gz(path).splitlines()
    for k, line in enumerate(lines):
        cells = line.split()
        if 20000.0 < float(cells[0]) < 30000.0:
            lines[k] = " " + "  ".join([cells[0]] + ["0.00000E+00"] * (len(cells) - 1))
    write_gz(path, "\n".join(lines) + "\n")
    grid = build_grid(root, only="tpagb_orich", wavelength=np.arange(21000.0, 29000.0, 100.0))
    orich = grid.phase_libraries["tpagb_orich"]
    assert orich.mask.all() and (orich.flux == 0).all()
