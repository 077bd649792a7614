"""Command line against hostile input: every bad path or option is rc 1 and one line, never a traceback;
outputs are never overwritten without --overwrite and never left half written."""
import os

import numpy as np
import pytest

from smnet_sps.cli import main

SSP = ["ssp", "--age", "10Gyr", "--Z", "0.0152", "--generator", "blackbody"]


def _error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


@pytest.fixture
def never_compute(monkeypatch):
    """Make the slow computations fail loudly: a bad output path must be refused before any of them runs."""
    import smnet_sps.photometry as phot
    import smnet_sps.ssp as sspmod

    def never(*args, **kwargs):
        raise AssertionError("the computation ran although the output path is invalid")

    monkeypatch.setattr(sspmod, "ssp_spectrum", never)
    monkeypatch.setattr(sspmod, "ssp_grid", never)
    monkeypatch.setattr(phot, "ssp_magnitudes", never)


@pytest.mark.parametrize("argv, expected", [
    (SSP + ["--out", "{tmp}/x.txt"], "unknown output format '.txt'"),           # never FITS inside a .txt
    (SSP + ["--out", "{tmp}"], "is a directory"),
    (SSP + ["--out", "{tmp}/plain_file/x.fits"], "is a file, not a folder"),
    (SSP + ["--plot", "{tmp}/x.fits"], "unknown output format '.fits' for the plot"),
    # .pgf needs a TeX engine (none on the test machines): the save failed with a traceback after the work
    pytest.param(SSP + ["--plot", "{tmp}/x.pgf"], "unknown output format '.pgf' for the plot",
                 marks=pytest.mark.skipif(bool(__import__("shutil").which(
                     __import__("matplotlib").rcParams["pgf.texsystem"])),
                     reason="matplotlib's TeX engine is installed: .pgf can be written")),
    (SSP + ["--out", "{tmp}/same.fits", "--plot", "{tmp}/same.fits"], "unknown output format"),
    (["ssp-grid", "--ages", "1Gyr", "--out", "{tmp}/g.txt"], "unknown output format '.txt'"),
    (["ssp-grid", "--ages", "1Gyr", "--out", "{tmp}"], "is a directory"),
    (["ssp-grid", "--ages", "--Z", "0.0152", "--out", "{tmp}/g.h5"], "--ages was given without a value"),
    (["ssp-grid", "--ages", "1Gyr", "--Z", "--out", "{tmp}/g.h5"], "--Z was given without a value"),
    (["mags", "--Z", "0.0152", "--filters", "sdss2010-g", "--out", "{tmp}/m.xyz"], "unknown output format"),
    (["mags", "--Z", "0.0152", "--filters", "sdss2010-g", "--out", "{tmp}/m"], "'(none)'"),
    (["mags", "--Z", "0.0152", "--filters", "sdss2010-g", "--plot", "{tmp}"], "is a directory"),
    (["grid", "build", "--libraries", "{tmp}", "--out", "{tmp}/g.npz"], "use one of .h5, .hdf5"),
    (["grid", "info", "{tmp}/none.h5", "--plot", "{tmp}/c.xyz"], "unknown output format"),
    (["evaluate", "--grid", "{tmp}/none.h5", "--out", "{tmp}/r.txt"], "use one of .json"),
    (["train", "--grid", "{tmp}/none.h5", "--out", "{tmp}/plain_file"], "is a file"),
])
def test_bad_output_path_is_one_line_rc1_before_any_work(argv, expected, tmp_path, capsys, never_compute):
    (tmp_path / "plain_file").write_text("not a folder")
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main(argv) == 1
    err = _error_line(capsys)
    assert expected in err
    assert "--" in err                                    # the message names the option
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain_file"]     # nothing written


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_refused(tmp_path, capsys, never_compute):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main(SSP + ["--out", str(ro / "x.fits")]) == 1
        assert "not writable" in _error_line(capsys)
    finally:
        ro.chmod(0o755)


def test_read_only_folder_check_uses_os_access(tmp_path, monkeypatch):
    """The same check where the tests run as root (which may write anywhere): os.access says no."""
    from smnet_sps.output_files import check_output
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    with pytest.raises(ValueError, match="--out .* is not writable"):
        check_output(tmp_path / "x.fits", (".fits",))


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
@pytest.mark.parametrize("argv", [SSP + ["--out", "/proc/x.fits"], SSP + ["--plot", "/proc/new/x.png"],
                                  ["ssp-grid", "--ages", "1Gyr", "--out", "/proc/g.h5"],
                                  ["mags", "--Z", "0.0152", "--filters", "sdss2010-g",
                                   "--out", "/proc/m.ecsv"],
                                  ["grid", "build", "--libraries", ".", "--out", "/proc/g.h5"]])
def test_folder_where_no_file_can_be_created_is_refused_before_any_work(argv, capsys, never_compute):
    """/proc passes os.access for root, but no file can be created there: the check tries, so the command
    fails in a second instead of after the whole computation."""
    assert main(argv) == 1
    err = _error_line(capsys)
    assert "'/proc'" in err and ("cannot create a file in folder" in err or "is not writable" in err)


def test_write_check_creates_a_real_file_and_leaves_none(tmp_path, monkeypatch):
    """The check does not trust os.access alone (root, read-only mounts): a failed creation is refused, a
    successful one leaves nothing behind."""
    import errno
    import tempfile

    from smnet_sps.output_files import check_output
    assert check_output(tmp_path / "x.fits", (".fits",)) == tmp_path / "x.fits"
    assert list(tmp_path.iterdir()) == []

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(ValueError, match=r"--out .*cannot create a file in folder .*\(Read-only file sys"):
        check_output(tmp_path / "sub" / "x.fits", (".fits",))


@pytest.mark.parametrize("exc", [PermissionError(13, "Permission denied", "/x/y.fits"),
                                 IsADirectoryError(21, "Is a directory", "/x"), OSError(28, "No space left"),
                                 FileNotFoundError(2, "No such file", "grid.h5"),
                                 ValueError("bad value\nsecond line")])
def test_main_turns_named_errors_into_one_line(exc, monkeypatch, capsys):
    import smnet_sps.ssp as sspmod

    def boom(*args, **kwargs):
        raise exc

    monkeypatch.setattr(sspmod, "ssp_spectrum", boom)
    assert main(SSP) == 1
    err = _error_line(capsys)
    assert err.startswith("smnet-sps ssp: error:")
    if getattr(exc, "filename", None):
        assert exc.filename in err


def test_main_keeps_tracebacks_for_bugs(monkeypatch):
    """A TypeError deep inside is a bug, not a user error: it must not be disguised as one."""
    import smnet_sps.ssp as sspmod
    monkeypatch.setattr(sspmod, "ssp_spectrum", lambda *a, **k: 1 + "x")
    with pytest.raises(TypeError):
        main(SSP)


def test_ssp_never_overwrites_without_flag_and_atomically_with_it(tmp_path, capsys):
    from astropy.io import fits
    out, png = tmp_path / "s.fits", tmp_path / "s.png"
    assert main(SSP + ["--out", str(out), "--plot", str(png)]) == 0
    first, first_png = out.read_bytes(), png.read_bytes()
    capsys.readouterr()
    # second run: refused, both files untouched
    assert main(["ssp", "--age", "1Gyr", "--Z", "0.0152", "--generator", "blackbody", "--out", str(out)]) == 1
    assert "--overwrite" in _error_line(capsys)
    assert main(SSP + ["--plot", str(png)]) == 1
    assert out.read_bytes() == first and png.read_bytes() == first_png
    # with --overwrite: replaced, and no temporary file is left behind
    assert main(["ssp", "--age", "1Gyr", "--Z", "0.0152", "--generator", "blackbody", "--out", str(out),
                 "--overwrite"]) == 0
    with fits.open(out) as h:
        assert h["SSP"].header["LOGAGE"] == pytest.approx(9.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.fits", "s.png"]


def test_failed_write_leaves_the_old_file_and_no_debris(tmp_path, monkeypatch, capsys):
    """A writer that dies half way (disk full) must not leave a truncated file under the target name."""
    import smnet_sps.ssp_cli as ssp_cli
    out = tmp_path / "s.fits"
    out.write_bytes(b"previous result")

    def half_write(spec, path):
        with open(path, "wb") as f:
            f.write(b"SIMPLE  =  T" * 10)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ssp_cli, "_write_fits", half_write)
    assert main(SSP + ["--out", str(out), "--overwrite"]) == 1
    assert "No space left" in _error_line(capsys)
    assert out.read_bytes() == b"previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["s.fits"]


def test_ssp_grid_and_mags_never_overwrite(tmp_path, capsys):
    grid = tmp_path / "g.npz"
    argv = ["ssp-grid", "--ages", "1Gyr", "--Z", "0.002", "--generator", "blackbody", "--out", str(grid)]
    assert main(argv) == 0
    before = grid.read_bytes()
    assert main(argv) == 1 and "--overwrite" in _error_line(capsys)
    assert grid.read_bytes() == before
    assert main(argv + ["--overwrite"]) == 0
    assert np.load(grid)["ssp_flux"].shape[:2] == (1, 1)

    table = tmp_path / "m.ecsv"
    argv = ["mags", "--Z", "0.0152", "--filters", "sdss2010-g", "--ages", "1Gyr", "--model", "blackbody",
            "--out", str(table)]
    assert main(argv) == 0
    before = table.read_bytes()
    capsys.readouterr()
    assert main(argv) == 1 and "--overwrite" in _error_line(capsys)
    assert table.read_bytes() == before
    assert main(argv + ["--overwrite"]) == 0


@pytest.mark.parametrize("suffix, reader", [(".csv", "ascii.csv"), (".txt", "ascii.commented_header"),
                                            (".fits", "fits")])
def test_mags_table_format_follows_extension(suffix, reader, tmp_path):
    from astropy.table import Table
    out = tmp_path / f"m{suffix}"
    assert main(["mags", "--Z", "0.0152", "--filters", "sdss2010-g", "--ages", "1Gyr", "--model", "blackbody",
                 "--out", str(out)]) == 0
    assert "M_sdss2010-g" in Table.read(out, format=reader).colnames


def _filter_file(folder, name):
    """A Gaussian filter curve at 5500 A in ``folder/<name>.dat``."""
    w = np.linspace(5000.0, 6000.0, 50)
    path = folder / f"{name}.dat"
    np.savetxt(path, np.column_stack([w, np.exp(-0.5 * ((w - 5500.0) / 200.0) ** 2)]),
               header="wavelength_AA transmission")
    return str(path)


def test_a_fits_table_refuses_a_filter_name_too_long_for_a_column_before_the_work(tmp_path, capsys,
                                                                                 never_compute):
    """A filter file of a long name (column ML_<name> of 69 characters) ended mags --out .fits, after the
    SSPs were computed, in astropy's AssertionError traceback ('Column name must be a string able to fit in a
    single FITS card'), exit 1 and nothing written; --points tables alike. A shorter one (M_<59 characters>)
    failed there too, its unit keyword HIERARCH UNIT_M_<name> = 'mag(AB)' too long for a card (VerifyError
    'Unparsable card'). Now refused first."""
    stars = tmp_path / "stars.csv"
    stars.write_text("teff,logg,logz,L\n5772,4.44,0.0,1.0\n")
    ssp = ["mags", "--Z", "0.0152", "--ages", "1Gyr", "--model", "blackbody"]
    points = ["mags", "--points", str(stars), "--model", "blackbody"]
    out = tmp_path / "m.fits"
    for argv, name, message in (
            (ssp, "f" * 66, f"cannot hold the column {'ML_' + 'f' * 66!r} (69 characters"),
            (ssp + ["--redshift", "0.1"], "f" * 63, f"cannot hold the column {'m_obs_' + 'f' * 63!r} (69 "),
            (points + ["--system", "Vega"], "f" * 67, f"cannot hold the column {'M_' + 'f' * 67!r} (69 "),
            (ssp, "f" * 59, f"cannot record the unit mag(AB) of the column {'M_' + 'f' * 59!r} (61 "),
            (points, "f" * 59, f"cannot record the unit mag(AB) of the column {'M_' + 'f' * 59!r} (61 ")):
        assert main(argv + ["--filters", _filter_file(tmp_path, name), "--out", str(out)]) == 1
        err = _error_line(capsys)
        assert message in err and ".ecsv" in err, err
        assert not out.exists()


def test_the_checks_before_the_work_read_each_filter_file_once(tmp_path, capsys, monkeypatch, never_compute):
    """mags --colors ... --out .fits resolved its filters for the colours and again for the FITS column
    names: each filter file read twice before the work (then once more by the work itself)."""
    import smnet_sps.filters as filters_module
    read = []
    real = filters_module.read_filter_file

    def counting(path, *args, **kwargs):
        read.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(filters_module, "read_filter_file", counting)
    long, short = _filter_file(tmp_path, "f" * 66), _filter_file(tmp_path, "g")
    argv = ["mags", "--Z", "0.0152", "--ages", "1Gyr", "--model", "blackbody", "--filters", f"{short},{long}",
            "--colors", "g-" + "f" * 66, "--out", str(tmp_path / "m.fits")]
    assert main(argv) == 1                      # ML_<66 f> is too long: refused before the work
    assert "cannot hold the column" in _error_line(capsys)
    assert sorted(read) == sorted([short, long])


def test_the_longest_filter_names_a_fits_table_takes_are_written_and_read_back(tmp_path):
    """The check refuses no more than FITS does: a Vega table's ML_<65 characters> (68, FITS's limit) and an
    AB table's M_<58 characters> with its unit keyword are written and read back by astropy; .ecsv takes
    longer names."""
    from astropy.table import Table
    argv = ["mags", "--Z", "0.0152", "--ages", "1Gyr", "--model", "blackbody", "--filters"]
    out = tmp_path / "vega.fits"
    assert main(argv + [_filter_file(tmp_path, "f" * 65), "--system", "Vega", "--out", str(out)]) == 0
    assert "ML_" + "f" * 65 in Table.read(out).colnames
    out = tmp_path / "ab.fits"
    assert main(argv + [_filter_file(tmp_path, "f" * 58), "--out", str(out)]) == 0
    assert Table.read(out).meta["UNIT_M_" + "f" * 58] == "mag(AB)"
    out = tmp_path / "m.ecsv"
    assert main(argv + [_filter_file(tmp_path, "f" * 80), "--out", str(out)]) == 0
    assert str(Table.read(out)["M_" + "f" * 80].unit) == "mag(AB)"


def test_mags_text_tables_say_their_system_and_redshift(tmp_path, capsys):
    """A plain-text table used to lose the magnitude system, redshift and units: a Vega table at z = 0.1
    looked like an AB one at z = 0. .txt now carries them as comment lines; .csv says it cannot."""
    from astropy.table import Table
    argv = ["mags", "--Z", "0.0152", "--filters", "sdss2010-g", "--ages", "1Gyr", "--model", "blackbody",
            "--system", "Vega", "--redshift", "0.1", "--out"]
    assert main(argv + [str(tmp_path / "m.txt")]) == 0
    text = (tmp_path / "m.txt").read_text()
    assert "# system: Vega" in text and "# redshift: 0.1" in text and "column M_sdss2010-g: [mag]" in text
    assert Table.read(tmp_path / "m.txt", format="ascii.commented_header")["m_obs_sdss2010-g"].size == 1
    capsys.readouterr()
    assert main(argv + [str(tmp_path / "m.csv")]) == 0
    assert "no units and no metadata" in capsys.readouterr().out


def test_missing_output_folder_is_created(tmp_path):
    out = tmp_path / "new" / "deeper" / "s.fits"
    assert main(SSP + ["--out", str(out)]) == 0
    assert out.stat().st_size > 1000


def test_train_refuses_to_overwrite_a_model(tmp_path, capsys):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    assert main(["train", "--grid", str(tmp_path / "g.h5"), "--out", str(model)]) == 1
    assert "--overwrite" in _error_line(capsys)
    assert (model / "config.json").read_text() == "{}"


EMPIRICAL = os.path.join(os.path.dirname(__file__), "fixtures", "empirical")


@pytest.mark.parametrize("argv, expected", [
    (["calibrate", "--empirical", EMPIRICAL, "--out", "{tmp}/c", "--steps", "0"], "--steps must be >= 1"),
    (["calibrate", "--empirical", EMPIRICAL, "--out", "{tmp}/c", "--members", "0"], "--members must be >= 1"),
    (["calibrate", "--empirical", EMPIRICAL, "--out", "{tmp}/c", "--folds", "1"], "--folds must be 0"),
    (["calibrate", "--empirical", EMPIRICAL, "--out", "{tmp}/plain_file"], "is a file"),
    (["calibrate", "--empirical", EMPIRICAL, "--out", "{tmp}/made"], "already holds a correction"),
    # the baseline's grid was read after the whole fit (minutes), the correction half written
    (["calibrate", "--empirical", EMPIRICAL, "--out", "{tmp}/c", "--grid", "{tmp}/nosuch.h5"],
     "does not exist"),
    # a negative seed stopped in numpy ('expected non-negative integer') after the stars and the base model
    (["calibrate", "--empirical", EMPIRICAL, "--out", "{tmp}/c", "--seed", "-1"],
     "--seed must be an integer from 0 to 2**32 - 1; got -1"),
    (["validate", "--empirical", EMPIRICAL, "--out", "{tmp}/plain_file"], "is a file"),
    (["validate", "--empirical", EMPIRICAL, "--out", "{tmp}/made"], "already holds a validation report"),
    (["validate", "--empirical", EMPIRICAL, "--ids", "{tmp}/plain_file"], "one integer per line"),
])
def test_calibrate_and_validate_check_options_before_any_work(argv, expected, tmp_path, capsys, monkeypatch):
    """calibrate took --steps 0 / --members 0 for the defaults, accepted --steps -5, and found a bad or
    occupied --out only after minutes of fitting; validate replaced an existing report without --overwrite
    and named neither the option nor the file on a bad --ids file."""
    import smnet_sps.calibrate as cal
    import smnet_sps.validate as val

    def never(*args, **kwargs):
        raise AssertionError("the work started although an option is invalid")
    monkeypatch.setattr(cal, "calibrate", never)
    monkeypatch.setattr(val, "load_empirical", never)
    (tmp_path / "plain_file").write_text("not a folder")
    (tmp_path / "made").mkdir()
    for name in ("config.json", "classes.md"):
        (tmp_path / "made" / name).write_text("{}")
    assert main([a.format(tmp=tmp_path) for a in argv]) == 1
    err = _error_line(capsys)
    assert expected in err and "--" in err
    assert (tmp_path / "made" / "config.json").read_text() == "{}"


def test_mags_fits_at_redshift_has_case_distinct_columns_and_any_case_system(tmp_path, capsys):
    """FITS compares column names without case: absolute M_<f> and apparent m_<f> clashed (astropy: "Ambiguous
    key name", and one UNIT_ keyword overwrote the other). The apparent ones are m_obs_<f> now; --system
    takes any case, as the Python API does."""
    from astropy.io import fits
    out = tmp_path / "m.fits"
    assert main(["mags", "--Z", "0.0152", "--filters", "sdss2010-g", "--ages", "1Gyr", "--model", "blackbody",
                 "--system", "vega", "--redshift", "0.2", "--out", str(out)]) == 0
    with fits.open(out) as hdul:
        names = hdul[1].columns.names
        assert len({n.upper() for n in names}) == len(names)
        absolute, apparent = hdul[1].data["M_SDSS2010-G"], hdul[1].data["m_obs_sdss2010-g"]
        assert np.isfinite(absolute).all() and (apparent > absolute + 30).all()    # z = 0.2: ~40 mag fainter
    capsys.readouterr()
    assert main(["mags", "--Z", "0.0152", "--filters", "sdss2010-g", "--ages", "1Gyr", "--system", "xx",
                 "--out", str(tmp_path / "x.fits")]) == 1
    assert "choose one of AB, ST, Vega" in _error_line(capsys)


def test_mags_age_range_errors_name_what_was_asked(tmp_path, capsys):
    """--ages 0.01-20Gyr was refused naming 13.41 Gyr (the first grid age past the isochrones), not the 20
    Gyr typed; --ages 1-2Gyr --n-ages 1 computed 1 Gyr alone without a word."""
    base = ["mags", "--Z", "0.0152", "--filters", "sdss2010-g", "--model", "blackbody", "--out"]
    assert main(base + [str(tmp_path / "a.ecsv"), "--ages", "0.01-20Gyr"]) == 1
    err = capsys.readouterr().err
    assert "got 20 Gyr" in err and "2 of 20 ages outside" in err
    assert main(base + [str(tmp_path / "b.ecsv"), "--ages", "1-2Gyr", "--n-ages", "1"]) == 1
    assert "--n-ages must be >= 2 for a range" in capsys.readouterr().err
    assert not (tmp_path / "a.ecsv").exists() and not (tmp_path / "b.ecsv").exists()


@pytest.mark.parametrize("argv, option", [
    (["ssp", "--age", "10Gyr", "--Z", "Z=0.0152"], "argument --Z: invalid float value: 'Z=0.0152'"),
    (["ssp", "--age", "10Gyr", "--Z", "0.0152dex"], "argument --Z: invalid float value: '0.0152dex'"),
    (["ssp", "--age", "10Gyr", "--special-phases", "foo"], "--special-phases: invalid choice: 'foo'"),
    (["ssp-grid", "--out", "g.h5", "--n-ages", "x"], "--n-ages"),
    (["ssp"], "the following arguments are required: --age"),
    (["grid", "build", "--out", "g.h5"], "required: --libraries"),
    (["nope"], "argument COMMAND: invalid choice: 'nope'"),
    # every other command alike (a survey of each found none left with argparse's status 2); an unknown
    # option after a command is the top parser's line (argparse: "smnet-sps: error: unrecognized ...")
    (["grid", "info"], "required: file"),
    (["train", "--out", "m", "--arch", "x"], "argument --arch: invalid choice: 'x'"),
    (["experts", "--base", "b", "--out", "e"], "required: --expert"),
    (["tail", "--grid", "g.h5"], "required: --model"),
    (["evaluate", "--model", "m"], "required: --grid"),
    (["validate", "--empirical", "e", "--kfold", "x"], "argument --kfold: invalid int value: 'x'"),
    (["calibrate", "--empirical", "e"], "required: --out"),
    (["mags", "--filters", "g", "--system", "XYZ"], "argument --system: unknown magnitude system 'XYZ'"),
    (["plugins", "--bogus"], "unrecognized arguments: --bogus"),
    (["fit"], "required: spectrum"),
])
def test_argparse_errors_are_one_line_and_status_1(argv, option, capsys):
    """Values argparse refuses (a float 'Z=0.0152', an unknown choice, a missing option) ended with a usage
    block and exit status 2; the README promises status 1 and one line naming the option, as for every
    other bad input."""
    assert main(argv) == 1
    err = _error_line(capsys)
    assert option in err and "usage:" not in err and err.startswith("smnet-sps")


@pytest.mark.parametrize("argv, prefix", [
    (["grid", "build", "--libraries", "{tmp}/none", "--out", "{tmp}/g.h5"], "smnet-sps grid build: error: "),
    (["grid", "info", "{tmp}/none.h5"], "smnet-sps grid info: error: "),
    (["grid", "build", "--out", "{tmp}/g.h5"], "smnet-sps grid build: error: "),    # argparse's, alike
    (["ssp-grid", "--ages", "1Gyr", "--out", "{tmp}/g.txt"], "smnet-sps ssp-grid: error: "),
])
def test_a_sub_command_error_names_the_sub_command(argv, prefix, tmp_path, capsys):
    """`grid build` / `grid info` errors began "smnet-sps grid: error:", while argparse's own for the same
    command said "smnet-sps grid build: error:" and every other command names itself: now the sub-command
    is named too."""
    assert main([a.format(tmp=tmp_path) for a in argv]) == 1
    assert _error_line(capsys).startswith(prefix)


def test_help_and_a_missing_command_still_show_the_usage(capsys):
    with pytest.raises(SystemExit) as done:
        main(["ssp", "--help"])
    assert done.value.code == 0 and "--age" in capsys.readouterr().out
    assert main([]) == 2 and "COMMAND" in capsys.readouterr().out
    assert main(["grid"]) == 2 and "{build,info}" in capsys.readouterr().out     # a command's own, alike


def test_ssp_into_a_closed_pipe_is_quiet(tmp_path):
    """`smnet-sps ssp ... --out pipe.fits | head -1` wrote the file but ended with "error: [Errno 32] Broken
    pipe" and status 1; a closed stdout now ends any command quietly with status 141 (as SIGPIPE)."""
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "pipe.fits"
    proc = subprocess.Popen([sys.executable, "-m", "smnet_sps.cli", *SSP, "--out", str(out)], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 141, err
    assert err == "" and out.stat().st_size > 0


MAGS = ["mags", "--Z", "0.0152", "--filters", "sdss2010-g,sdss2010-r", "--generator", "blackbody",
        "--n-ages", "20"]


def test_mags_into_a_closed_pipe_writes_its_files(tmp_path):
    """`smnet-sps mags ... --out m.ecsv | head -1` printed the table before writing: status 141, no m.ecsv
    (nor the plot) and nothing on stderr. The files are now written first."""
    import subprocess
    import sys
    from pathlib import Path

    from astropy.table import Table
    out, png = tmp_path / "m.ecsv", tmp_path / "m.png"
    proc = subprocess.Popen([sys.executable, "-m", "smnet_sps.cli", *MAGS, "--out", str(out), "--plot",
                             str(png)], cwd=Path(__file__).resolve().parents[1],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 141, err
    assert "error" not in err and len(Table.read(out)) == 20 and png.stat().st_size > 0


@pytest.mark.parametrize("existing", [False, True])
def test_a_closed_pipe_before_the_files_is_reported(existing, monkeypatch, tmp_path, capsys):
    """The quiet status 141 only when every output asked for was written: a command whose stdout closes
    before its files (new or to be replaced) are written ends with status 1, naming them."""
    import smnet_sps.cli as cli
    import smnet_sps.photometry as photometry

    def closed_pipe(*args, **kwargs):
        raise BrokenPipeError(32, "Broken pipe")

    out = tmp_path / "m.ecsv"
    if existing:
        out.write_text("an older table")
    monkeypatch.setattr(photometry, "ssp_magnitudes", closed_pipe)
    monkeypatch.setattr(cli, "_stdout_reader_gone", lambda: True)
    monkeypatch.setattr(cli, "_silence_stdout", lambda: None)
    assert main([*MAGS, "--out", str(out), "--overwrite"]) == 1
    err = _error_line(capsys)
    assert "stdout was closed" in err and err.endswith(f"not written: --out {out}")
    # and quiet where the files were written: the fixed command order
    monkeypatch.undo()
    monkeypatch.setattr(cli, "_stdout_reader_gone", lambda: True)
    monkeypatch.setattr(cli, "_silence_stdout", lambda: None)

    def print_then_close(table, **kwargs):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(photometry.Table, "pprint", print_then_close, raising=False)
    assert main([*MAGS, "--out", str(out), "--overwrite"]) == cli.PIPE_CLOSED_STATUS
    assert "error" not in capsys.readouterr().err and out.read_text() != "an older table"


def test_a_broken_pipe_that_is_not_stdout_stays_an_error(monkeypatch, capsys):
    """Only stdout's closed pipe is quiet: a BrokenPipeError from elsewhere is reported (status 1)."""
    import smnet_sps.ssp as sspmod

    def broken(*args, **kwargs):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sspmod, "ssp_spectrum", broken)
    assert main(SSP) == 1
    assert "error: [Errno 32] Broken pipe" in _error_line(capsys)


def _gzip_stored_name(path):
    """The FNAME field of a gzip member's header (RFC 1952), None without one."""
    data = path.read_bytes()
    assert data[:2] == b"\x1f\x8b"
    flags, pos = data[3], 10
    if flags & 0x04:                                 # FEXTRA
        pos += 2 + int.from_bytes(data[pos:pos + 2], "little")
    if not flags & 0x08:                             # no FNAME
        return None
    return data[pos:data.index(b"\0", pos)].decode("latin-1")


def test_fits_gz_output_names_itself_in_the_gzip_header(tmp_path, capsys):
    """`ssp --out a.fits.gz` stored the temporary name in the gzip header (gzip -lN:
    .a.fits.gz.XXXX.part.fits; gunzip -N restored that hidden name); the header now names a.fits, and the file
    reads back."""
    from astropy.io import fits
    out = tmp_path / "a.fits.gz"
    assert main([*SSP, "--out", str(out)]) == 0
    assert _gzip_stored_name(out) == "a.fits"
    with fits.open(out) as hdul:
        assert hdul["SSP"].data["FLUX"].size > 100 and hdul["SSP"].header["LOGAGE"] == 10.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.fits.gz"]           # no temporary files left


def test_json_safe_turns_numpy_booleans_and_arrays_into_strict_json():
    """json_safe promised Python values for numpy ones, but a numpy bool and a numpy array passed through
    unchanged, so json.dumps raised TypeError ("Object of type bool_ / ndarray is not JSON serializable"); a
    NaN inside an array also has to become null."""
    import json

    from smnet_sps.output_files import json_safe
    result = {"converged": np.bool_(True), "flags": np.array([True, False]),
              "theta": np.array([[5777.0, np.nan], [np.inf, 4.5]], np.float32), "n": np.int64(3),
              "scalar": np.array(2.5), "nested": [np.bool_(False), (np.float64(np.nan),)]}
    text = json.dumps(json_safe(result), allow_nan=False)
    assert json.loads(text) == {"converged": True, "flags": [True, False],
                                "theta": [[5777.0, None], [None, 4.5]], "n": 3, "scalar": 2.5,
                                "nested": [False, [None]]}


def test_svgz_plot_names_itself_in_the_gzip_header(tmp_path):
    """`--plot a.svgz` (matplotlib compressing it) stored the temporary name in the gzip header
    (.a.svgz.XXXX.part.svgz), as .fits.gz did; the header now names a.svg, for `ssp --plot` and for outputs
    staged together (`grid build`'s staged_outputs), and the file still reads back as an SVG."""
    import gzip

    from smnet_sps.output_files import staged_outputs
    plot = tmp_path / "a.svgz"
    assert main([*SSP, "--plot", str(plot)]) == 0
    assert _gzip_stored_name(plot) == "a.svg"
    assert b"<svg" in gzip.decompress(plot.read_bytes())[:2000]
    targets = {"plot": tmp_path / "b.svgz", "out": tmp_path / "b.fits.gz"}
    with staged_outputs(targets) as staged:
        for tmp in staged.values():
            tmp.write_text("<svg/>")
    assert [_gzip_stored_name(targets[k]) for k in ("plot", "out")] == ["b.svg", "b.fits"]
    assert gzip.decompress(targets["plot"].read_bytes()) == b"<svg/>"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.svgz", "b.fits.gz", "b.svgz"]


@pytest.mark.parametrize("argv, out_name", [(SSP, "s.fits"), (MAGS, "s.ecsv")])
def test_a_failed_plot_leaves_no_out_and_keeps_old_ones(argv, out_name, tmp_path, monkeypatch, capsys):
    """`ssp` / `mags --out X --plot Y` renamed X into place before drawing Y: a plot that failed (disk full)
    left X behind with status 1, and the rerun was refused ('already exists; pass --overwrite'); under
    --overwrite the old X was replaced although the command failed. Both are now renamed together."""
    from matplotlib.figure import Figure
    out, png = tmp_path / out_name, tmp_path / "s.png"
    real_savefig = Figure.savefig

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", disk_full)
    assert main([*argv, "--out", str(out), "--plot", str(png)]) == 1
    assert "No space left" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(Figure, "savefig", real_savefig)
    assert main([*argv, "--out", str(out), "--plot", str(png)]) == 0              # the rerun is not refused
    old = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    monkeypatch.setattr(Figure, "savefig", disk_full)
    capsys.readouterr()
    assert main([*argv, "--Z", "0.004", "--out", str(out), "--plot", str(png), "--overwrite"]) == 1
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == old


def test_ages_and_metallicities_read_alike_in_ssp_grid_and_mags(tmp_path, capsys):
    """ssp-grid took `--ages 1Gyr 3Gyr --Z 0.002 0.0152` and refused '1,3Gyr' / '0.1-1Gyr' ("cannot read
    --ages"); mags took only one '1,3Gyr' or 'lo-hi<unit>' string ("unrecognized arguments: 3Gyr"), one --Z,
    and failed on 1e-2-1Gyr and 100Myr-1Gyr. Both now read one grammar (smnet_sps.cli.parse_ages_option)."""
    from smnet_sps.cli import parse_ages_option
    from smnet_sps.ssp import load_ssp_grid

    for text, years in ((["1Gyr", "3Gyr"], [1e9, 3e9]), ("1,3Gyr", [1e9, 3e9]), (["500 Myr"], [5e8]),
                        ("100Myr,1Gyr", [1e8, 1e9]), ("1e-2-1Gyr", [1e7, 1e8, 1e9]),
                        ("100Myr-1Gyr", [1e8, np.sqrt(10) * 1e8, 1e9]),
                        (["0.01-1Gyr", "5Gyr"], [1e7, 1e8, 1e9, 5e9])):
        np.testing.assert_allclose(parse_ages_option(text, 3), years, rtol=1e-12, err_msg=str(text))
    with pytest.raises(ValueError, match=r"lo <= hi \(got 5e\+09 yr > 1e\+09 yr\)"):
        parse_ages_option("5-1Gyr", 3)              # came out decreasing, though documented increasing
    grid = tmp_path / "g.npz"
    assert main(["ssp-grid", "--ages", "0.1-1Gyr", "3Gyr", "--n-ages", "3", "--Z", "0.002,0.0152",
                 "--generator", "blackbody", "--out", str(grid)]) == 0
    g = load_ssp_grid(grid)
    np.testing.assert_allclose(10 ** g.ssp_lg_age_gyr, [0.1, np.sqrt(0.1), 1, 3], rtol=1e-9)
    np.testing.assert_allclose(g.ssp_lgmet, np.log10([0.002, 0.0152]))
    assert main(["ssp-grid", "--ages", "1,3Gyr", "--logzsol", "-0.5", "0", "--generator", "blackbody",
                 "--out", str(tmp_path / "l.npz")]) == 0
    np.testing.assert_allclose(load_ssp_grid(tmp_path / "l.npz").ssp_lgmet,
                               np.log10(0.0152) + np.array([-0.5, 0]))
    capsys.readouterr()
    mags = ["mags", "--filters", "sdss2010-g", "--model", "blackbody", "--n-ages", "3"]
    for ages in (["1Gyr", "3Gyr"], ["100Myr-1Gyr"], ["1e-2-1Gyr"]):
        assert main([*mags, "--Z", "0.0152", "--ages", *ages]) == 0, capsys.readouterr().err
    assert main([*mags, "--logzsol", "0", "--ages", "1Gyr"]) == 0
    capsys.readouterr()
    assert main([*mags, "--Z", "0.0152", "0.002", "--ages", "1Gyr"]) == 1
    assert "one table per metallicity; got --Z with 2 values" in _error_line(capsys)
    assert main([*mags, "--Z", "0.0152", "--logzsol", "0"]) == 1
    assert "not both" in _error_line(capsys)


def test_warnings_are_one_line_naming_the_command():
    """`mags --redshift 20` printed ".../photometry.py:926: UserWarning: 1 age(s) exceed ..." and the source
    line of the call: main never formatted warnings. Now "smnet-sps mags: warning: <message>", one line, and
    the caller's formatter is back after main (it may be called from Python)."""
    import subprocess
    import sys
    import warnings
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "smnet_sps.cli", "mags", "--Z", "0.0152", "--filters",
                           "sdss2010-g", "--ages", "1Gyr", "--redshift", "20", "--model", "blackbody"],
                          cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["smnet-sps mags: warning: 1 age(s) exceed the age of the universe at "
                                        "z=20 (0.178 Gyr in Planck18)"]
    before = warnings.formatwarning
    assert main(["mags", "--Z", "0.0152", "--filters", "sdss2010-g", "--ages", "1Gyr", "--model",
                 "blackbody"]) == 0
    assert warnings.formatwarning is before


def test_every_output_records_the_generator_and_the_version(tmp_path):
    """`ssp` FITS recorded GENERATR but no version; `mags` tables only the option string ("generator:
    default"), no version; ssp-grid files no version. Every output now holds the generator's name and
    smnet_sps.__version__ under the same keys (FITS: GENERATR, SMNETVER)."""
    from astropy.io import fits
    from astropy.table import Table
    from smnet_sps import __version__
    from smnet_sps.ssp import load_ssp_grid

    assert main([*SSP, "--out", str(tmp_path / "s.fits")]) == 0
    header = fits.getheader(tmp_path / "s.fits", 1)
    assert (header["GENERATR"], header["SMNETVER"]) == ("blackbody", __version__)
    mags = ["mags", "--Z", "0.0152", "--filters", "bessell-V", "--ages", "1Gyr", "--model", "blackbody",
            "--out"]
    for suffix in (".ecsv", ".fits", ".txt"):
        assert main([*mags, str(tmp_path / f"m{suffix}")]) == 0
    meta = Table.read(tmp_path / "m.ecsv").meta
    assert (meta["generator"], meta["smnet_sps_version"]) == ("blackbody", __version__)
    header = fits.getheader(tmp_path / "m.fits", 1)
    assert (header["GENERATR"], header["SMNETVER"]) == ("blackbody", __version__)
    text = (tmp_path / "m.txt").read_text()
    assert "# generator: blackbody\n" in text and f"# smnet_sps_version: {__version__}\n" in text
    assert main(["ssp-grid", "--ages", "1Gyr", "--Z", "0.0152", "--generator", "blackbody", "--out",
                 str(tmp_path / "g.npz")]) == 0
    attrs = load_ssp_grid(tmp_path / "g.npz").attrs
    assert (attrs["generator"], attrs["smnet_sps_version"]) == ("blackbody", __version__)


@pytest.mark.parametrize("argv", [
    ["ssp-grid", "--ages", "1Gyr", "--Z", "0.0152", "--generator", "blackbody", "--overwrite", "--out"],
    [*SSP, "--overwrite", "--out"],
])
def test_ctrl_c_is_one_line_status_130_and_keeps_the_old_file(argv, monkeypatch, tmp_path, capsys):
    """Ctrl-C during the work printed the ~40-line traceback of wherever the work was (a torch forward pass)
    and ended by SIGINT: now one line naming what was not written, status 130, the older file intact."""
    import smnet_sps.backend as backend

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    # deep in the real work: the generator's batched sum over isochrone points
    monkeypatch.setattr(backend.StellarLibraryBackend, "weighted_sum", ctrl_c)
    out = tmp_path / ("g.h5" if argv[0] == "ssp-grid" else "s.fits")
    out.write_text("an older result")
    assert main([*argv, str(out)]) == 130
    err = _error_line(capsys)
    assert err == f"smnet-sps {argv[0]}: interrupted; not written: --out {out}"
    assert out.read_text() == "an older result" and sorted(os.listdir(tmp_path)) == [out.name]


@pytest.mark.parametrize("existing", ["empty folder", "older report"])
def test_ctrl_c_names_an_existing_report_folder_as_not_written(existing, monkeypatch, tmp_path, capsys):
    """A report folder that existed (made beforehand, or an older report under --overwrite) was left out of
    the line ("validate: interrupted", no "not written: --out DIR"): the output check's probe file had
    changed the folder's mtime, which was all that was compared."""
    from pathlib import Path

    import smnet_sps.validate as validate

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(validate, "score_generator", ctrl_c)       # in the scoring, after the checks
    out = tmp_path / "report"
    out.mkdir()
    if existing == "older report":
        (out / "classes.md").write_text("an older report")
    fixture = Path(__file__).parent / "fixtures" / "empirical"
    assert main(["validate", "--empirical", str(fixture), "--generator", "blackbody", "--overwrite",
                 "--out", str(out)]) == 130
    assert _error_line(capsys) == f"smnet-sps validate: interrupted; not written: --out {out}"
    assert sorted(os.listdir(out)) == ([] if existing == "empty folder" else ["classes.md"])


@pytest.mark.parametrize("argv", [
    ["ssp-grid", "--ages", "0.01-12Gyr", "--n-ages", "24", "--Z", "0.0152", "--generator", "blackbody",
     "--out", "{tmp}/g.h5"],
    [*MAGS, "--ages", "0.01-12Gyr", "--n-ages", "24", "--out", "{tmp}/m.ecsv"],
])
def test_progress_bars_only_on_a_terminal(argv, monkeypatch, tmp_path, capsys):
    """Into a log file (stderr not a terminal) the SSP bar wrote a carriage-return segment per batch (2.3 kB
    for a 40-SSP grid): now bars are drawn on a terminal only, where they still are."""
    import sys

    import smnet_sps.ssp as sspmod

    argv = [a.format(tmp=tmp_path) for a in argv]
    sspmod._SSP_CACHE.clear()          # SSPs computed before draw no bar: the generator is not called
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "isochrone points" not in err and "\r" not in err, err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    sspmod._SSP_CACHE.clear()
    assert main([*argv, "--overwrite"]) == 0
    assert "blackbody isochrone points: 100%" in capsys.readouterr().err


def test_every_option_of_every_command_says_what_it_is():
    """`--help` listed options with no word about them (train --arch, --batch-size, --lr, --no-progress;
    grid info FILE; calibrate --seed; fit --uncertainty): every argument of every command has a help text."""
    import argparse

    from test_cli_options import _options
    silent = [f"{name} {'/'.join(strings) or action.dest}"
              for name, strings, action in _options(skip=(argparse._HelpAction,))
              if not (action.help or "").strip()]
    assert not silent, silent


@pytest.mark.parametrize("argv", [["grid", "info", "{dir}"], ["train", "--grid", "{dir}", "--out", "{tmp}/m"],
                                  ["evaluate", "--grid", "{dir}"]])
def test_a_folder_given_for_the_grid_file_is_called_a_folder(argv, tmp_path, capsys):
    """`--grid work/` (the folder, not work/grid.h5) was reported as 'grid file work does not exist': now it
    is called a folder, and the grid files in it are named."""
    work = tmp_path / "work"
    work.mkdir()
    argv = [a.format(dir=work, tmp=tmp_path) for a in argv]
    assert main(argv) == 1
    err = _error_line(capsys)
    assert f"grid file {work} is a folder" in err and "does not exist" not in err
    assert "it holds none" in err
    (work / "grid.h5").write_bytes(b"")
    assert main(argv) == 1
    assert _error_line(capsys).endswith(f"give the file, e.g. {work / 'grid.h5'}")


def test_n_ages_has_an_upper_limit_and_is_not_silently_ignored(tmp_path, capsys):
    """`ssp-grid --n-ages 100000000` grew to 14 GB before anything refused it, and --n-ages without a range
    of ages (no --ages in ssp-grid, `--ages 1Gyr` in mags) was silently ignored."""
    from smnet_sps.cli import MAX_N_AGES, parse_ages_option
    from smnet_sps.ssp import load_ssp_grid

    grid = ["ssp-grid", "--Z", "0.0152", "--generator", "blackbody", "--out", str(tmp_path / "g.npz")]
    assert main([*grid, "--ages", "0.01-12Gyr", "--n-ages", "100000000"]) == 1
    assert f"--n-ages must be at most {MAX_N_AGES} per range of ages" in _error_line(capsys)
    assert not (tmp_path / "g.npz").exists()
    assert parse_ages_option("0.01-12Gyr", MAX_N_AGES).size == MAX_N_AGES       # the limit itself is fine
    with pytest.warns(UserWarning, match="--n-ages 3 is ignored.*--ages 1Gyr 2Gyr has no range"):
        np.testing.assert_allclose(parse_ages_option(["1Gyr", "2Gyr"], 3), [1e9, 2e9])
    with pytest.warns(UserWarning, match="--n-ages 5 is ignored.*without --ages every tabulated age"):
        assert main([*grid, "--n-ages", "5"]) == 0
    assert load_ssp_grid(tmp_path / "g.npz").ssp_lg_age_gyr.size == 93          # every tabulated age
    mags = ["mags", "--Z", "0.0152", "--filters", "sdss2010-g", "--model", "blackbody", "--ages", "1Gyr"]
    with pytest.warns(UserWarning, match="--n-ages 3 is ignored.*--ages 1Gyr has no range"):
        assert main([*mags, "--n-ages", "3"]) == 0
    import warnings
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="--n-ages")
        assert main(mags) == 0                                  # not given: no warning


@pytest.mark.parametrize("command", ["ssp", "ssp-grid", "mags"])
def test_every_imf_option_names_the_imfs_in_its_help(command, capsys):
    """`mags --help` said "--imf IMF  IMF name passed to ssp_grid (default kroupa)": a user had to read
    smnet_sps.imf to learn that Salpeter is spelt 'salpeter' (ssp and ssp-grid listed them)."""
    from smnet_sps.imf import IMF_NAMES
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())         # argparse wraps the help text
    assert done.value.code == 0
    imf_help = text.split("--imf IMF ", 1)[1].split(" --", 1)[0]
    assert all(name in imf_help for name in IMF_NAMES), imf_help


@pytest.mark.parametrize("entry", ["console_main(sys.argv[1:])", "main()"])
def test_sigterm_during_the_write_is_one_line_status_143_and_leaves_no_temporary_file(tmp_path, entry):
    """`kill PID` (a batch system's time limit) ended every command but train at once: status -15, no
    message, and a kill during the write left its temporary file (.g.h5.XXXX.part.h5) beside the output
    for good. SIGTERM now acts as Ctrl-C: one line, status 143, the older file intact and nothing else --
    also through ``main()`` reading sys.argv, the console script an install made before console_main
    existed still calls (it lost the handler until reinstalled)."""
    import signal
    import subprocess
    import sys

    out = tmp_path / "g.h5"
    out.write_text("an older result")
    # a real SIGTERM to this process once the write has begun (part of the file on disk)
    code = ("import os, signal, sys, time\nimport smnet_sps.ssp as ssp\n"
            "def save(grid, path):\n"
            "    open(path, 'wb').write(b'half a file')\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n"
            "    time.sleep(30)\n"
            "ssp.save_ssp_grid = save\n"
            f"from smnet_sps.cli import console_main, main\nsys.exit({entry})\n")
    argv = ["ssp-grid", "--ages", "1Gyr", "--Z", "0.0152", "--generator", "blackbody", "--overwrite",
            "--out", str(out)]
    proc = subprocess.run([sys.executable, "-c", code, *argv], env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, proc.stderr)
    assert proc.stderr.strip() == f"smnet-sps ssp-grid: terminated (SIGTERM); not written: --out {out}"
    assert out.read_text() == "an older result" and sorted(os.listdir(tmp_path)) == [out.name]


def test_main_called_from_python_leaves_sigterm_ending_the_script(tmp_path):
    """main() turned SIGTERM into KeyboardInterrupt whenever SIGTERM was at its default, so a script calling
    main([...]) (docs/ssp.md) was no longer ended by `kill`: main returned 143 and the script went on to its
    next call. Only the console command (console_main) does so now; main leaves SIGTERM to the caller."""
    import signal
    import subprocess
    import sys

    code = ("import os, signal, sys, time\nimport smnet_sps.ssp as ssp\n"
            "def save(grid, path):\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n"
            "    time.sleep(30)\n"
            "ssp.save_ssp_grid = save\n"
            "from smnet_sps.cli import main\n"
            "print('main returned', main(sys.argv[1:]), flush=True)\n")
    argv = ["ssp-grid", "--ages", "1Gyr", "--Z", "0.0152", "--generator", "blackbody",
            "--out", str(tmp_path / "g.h5")]
    proc = subprocess.run([sys.executable, "-c", code, *argv], env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGTERM, (proc.returncode, proc.stdout, proc.stderr)
    assert "main returned" not in proc.stdout
