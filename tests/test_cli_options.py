"""The command line as one tool: messages name the options typed, every option says its unit and default,
and an option a combination does not use is refused, not silently dropped."""
import argparse

import numpy as np
import pytest

from smnet_sps.cli import main


def _error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("command", [
    ["ssp", "--age", "10Gyr"],
    ["ssp-grid", "--ages", "1Gyr", "--out", "{tmp}/g.npz"],
    ["mags", "--filters", "sdss2010-g"],
])
def test_z_and_logzsol_together_name_the_options(command, tmp_path, capsys):
    """`ssp --Z 0.01 --logzsol 0` said "give Z (metal mass fraction) or logzsol ...", the Python API's
    parameters, not the options typed (ssp-grid and mags said --Z / --logzsol)."""
    argv = [a.format(tmp=tmp_path) for a in command]
    assert main([*argv, "--Z", "0.01", "--logzsol", "0", "--generator", "blackbody"]) == 1
    err = _error_line(capsys)
    assert "give --Z (metal mass fraction) or --logzsol (log10 Z/Zsun), not both" in err, err


@pytest.mark.parametrize("family", ["parsec", "padova"])
def test_cli_logzsol_follows_the_python_rule(family):
    """--logzsol is converted by ssp_spectrum's own rule (_resolve_z), range-checked by it; a value outside
    is named as typed (--logzsol 5, not the Z = 1520 it makes)."""
    from smnet_sps.isochrones import resolve_isochrones
    from smnet_sps.ssp import _resolve_z, cli_metallicities

    iso = resolve_isochrones(family)
    got = cli_metallicities(argparse.Namespace(Z=None, logzsol=["-0.5,0"]), iso)
    np.testing.assert_array_equal(got, _resolve_z(iso, None, np.array([-0.5, 0.0])))
    assert cli_metallicities(argparse.Namespace(Z=0.004, logzsol=None), iso).tolist() == [0.004]
    assert cli_metallicities(argparse.Namespace(Z=None, logzsol=None), iso) is None
    with pytest.raises(ValueError, match=r"--logzsol 5 outside the .* isochrone grid: valid --logzsol"):
        cli_metallicities(argparse.Namespace(Z=None, logzsol=[5.0]), iso)
    with pytest.raises(ValueError, match=r"Z = 0.5 outside the .* isochrone grid: valid Z"):
        cli_metallicities(argparse.Namespace(Z=0.5, logzsol=None), iso)


@pytest.mark.parametrize("extra, named", [
    (["--arch", "smnet", "--width", "512"], "width=512 (--width): MLP-only"),
    (["--arch", "smnet", "--depth", "4"], "depth=4 (--depth): MLP-only"),
    (["--arch", "smnet", "--uv-weight", "2"], "uv_weight=2.0 (--uv-weight): MLP-only"),
    (["--B", "1024"], "B=1024 (--B): SM-Net-only"),
])
def test_train_refuses_the_other_architectures_options(extra, named, tmp_path, capsys):
    """`train --arch smnet --width 512` trained SM-Net's B=64 layout without a word (width and depth are the
    MLP's), and `--B 1024` of an MLP was dropped alike: refused before the grid is read, naming the option."""
    argv = ["train", "--grid", str(tmp_path / "none.h5"), "--out", str(tmp_path / "m"), *extra]
    assert main(argv) == 1
    err = _error_line(capsys)
    assert named in err, err
    assert not (tmp_path / "m" / "config.json").exists()


def _options(skip=(argparse._HelpAction, argparse._VersionAction)):
    """(command, option strings, action) of every option of every command, but actions of the ``skip``
    types (also used by tests/test_cli_hardening.py)."""
    from smnet_sps.cli import build_parser

    found = []

    def walk(parser, name):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    walk(sub, f"{name} {sub_name}")
            elif not isinstance(action, skip):
                found.append((name, action.option_strings, action))

    walk(build_parser(), "smnet-sps")
    return found


def test_every_option_with_a_default_states_it():
    """`train --help` showed `--B B  SM-Net base width (released: 1024)` (the default is 64), and --seed,
    --tail-floor, --pixel-loss, --uv-weight, --node-loss, --lr-final, --ema-decay, --device (train, ssp,
    ssp-grid, evaluate) and mags --redshift gave no default: every option whose default is a value says it."""
    silent = [f"{name} {'/'.join(strings)} (default {action.default!r})"
              for name, strings, action in _options()
              # a default of 0 is a value to state too (0 == False skipped it here)
              if strings and action.default is not None and action.default is not False
              and action.default != [] and action.default is not argparse.SUPPRESS
              and "default" not in (action.help or "").lower()]
    assert not silent, silent


def _help_entries(argv, capsys, monkeypatch):
    """``smnet-sps ARGV --help`` parsed: {option string: its help text on one line}, every option listed."""
    import re
    monkeypatch.setenv("COLUMNS", "1000")          # one line per option: no wrapping inside "0.01-12.5Gyr"
    with pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0
    options = capsys.readouterr().out.split("\noptions:\n", 1)[1]
    entries = {}
    for entry in re.split(r"\n(?=  -)", options):
        names, _, text = entry.strip().partition("  ")
        for name in re.findall(r"--[\w-]+", names):
            entries[name] = " ".join(text.split())
    return entries


def test_every_command_help_parses_and_names_units_and_defaults(capsys, monkeypatch):
    """Every command's --help lists each of its options with a help text; the options that gave no default
    or unit now do: ssp --Z (the solar Z it takes), ssp --logzsol (whose Zsun), fit --wmin / --wmax (no cut),
    fit --redshift (0), fit --fix (logg and logz units), validate --kfold (0: off), train --threads."""
    commands = {}
    for name, strings, action in _options():
        commands.setdefault(tuple(name.split()[1:]), []).extend(s for s in strings if s.startswith("--"))
    for argv, options in commands.items():
        helps = _help_entries(list(argv), capsys, monkeypatch)
        missing = [o for o in options if not helps.get(o)]
        assert not missing, (argv, missing)
    ssp = _help_entries(["ssp"], capsys, monkeypatch)
    assert "0.0152 PARSEC, 0.019 Padova, 0.0142 MIST" in ssp["--Z"]
    assert "[dex] with the family's Zsun" in ssp["--logzsol"]
    fit = _help_entries(["fit"], capsys, monkeypatch)
    for option in ("--wmin", "--wmax"):
        assert "[A, vacuum" in fit[option] and "(default: none" in fit[option], fit[option]
    assert "default 0)" in fit["--redshift"]
    assert "logg [log10 cm s^-2], logz ([M/H], dex)" in fit["--fix"]
    assert "sigma [km/s], av [mag]" in fit["--fix"]
    assert "(default 0: off)" in _help_entries(["validate"], capsys, monkeypatch)["--kfold"]
    assert "(default: torch's own)" in _help_entries(["train"], capsys, monkeypatch)["--threads"]


def test_no_option_but_a_metallicity_is_shown_as_z():
    """`fit --help` showed `--redshift Z`, which reads as a metallicity (the SSP commands' --Z)."""
    shown_as_z = [f"{name} {'/'.join(strings)}" for name, strings, action in _options()
                  if (action.metavar or action.dest) in ("Z", "z") and "--Z" not in strings]
    assert not shown_as_z, shown_as_z
    with pytest.raises(SystemExit) as done:
        main(["fit", "--help"])
    assert done.value.code == 0


@pytest.mark.parametrize("command", ["ssp", "ssp-grid", "mags"])
def test_logzsol_help_says_dex(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "log10(Z/Zsun) [dex]" in text.split("--logzsol", 2)[2], text


def test_validate_worst_without_out_is_refused(tmp_path, capsys, monkeypatch):
    """`validate --worst 20` without --out ran (exit 0) and drew no plot: --worst sizes the report's
    worst_residuals.png only. Refused before the stars are loaded; with --out it is used."""
    from pathlib import Path

    from smnet_sps import validate

    fixture = Path(__file__).parent / "fixtures" / "empirical"
    real_load = validate.load_empirical

    def never(*args, **kwargs):
        raise AssertionError("the stars were loaded although --worst has no plot to size")
    monkeypatch.setattr(validate, "load_empirical", never)
    base = ["validate", "--empirical", str(fixture), "--generator", "blackbody"]
    assert main([*base, "--worst", "20"]) == 1
    assert "--worst sets how many stars worst_residuals.png shows" in _error_line(capsys)
    assert main([*base, "--rank-libraries", "--worst", "3"]) == 1
    assert "give --out DIR with it" in _error_line(capsys)
    monkeypatch.setattr(validate, "load_empirical", real_load)
    assert main([*base, "--worst", "3", "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "worst_residuals.png").stat().st_size > 0


#: the options of the commands that build SSPs (ssp_spectrum / ssp_grid); `fit --ssp-grid` reads a grid file
SSP_BUILDERS = ("ssp", "ssp-grid", "mags")
SSP_OPTIONS = ("--imf", "--isochrones", "--generator", "--meta", "--special-phases", "--outside", "--device",
               "--Z", "--logzsol")


def test_every_ssp_building_command_has_the_same_backend_options():
    """`mags` had no --special-phases, --outside or --device (ssp and ssp-grid had them): its SSPs were always
    special_phases="model", outside="extrapolate" on the auto device. Each command now has every option of
    SSP_OPTIONS, and the backend options are one definition: the same default, choices and help."""
    by_command = {}
    for name, strings, action in _options():
        command = name.split()[-1]
        if command in SSP_BUILDERS:
            for s in strings:
                by_command.setdefault(command, {})[s] = action
    missing = {c: [o for o in SSP_OPTIONS if o not in by_command[c]] for c in SSP_BUILDERS}
    assert not any(missing.values()), missing
    for option in ("--special-phases", "--outside", "--device"):
        seen = {(a.default, a.choices, a.help) for a in (by_command[c][option] for c in SSP_BUILDERS)}
        assert len(seen) == 1, (option, seen)


def test_mags_checks_the_device_for_points_tables_as_for_ssps(tmp_path, capsys):
    """`mags --points stars.csv --model blackbody --device gpu` wrote the table with status 0 (the blackbody
    never reads --device), while the SSP path said "unknown device 'gpu'": now one check, one message."""
    stars = tmp_path / "stars.csv"
    stars.write_text("teff,logg,logz,L\n5000,4.5,0.0,0.5\n")
    said = {}
    for path, args in (("points", ["--points", str(stars)]), ("ssp", ["--Z", "0.0152", "--ages", "1Gyr"])):
        out = tmp_path / f"{path}.ecsv"
        assert main(["mags", *args, "--filters", "twomass_Ks", "--model", "blackbody", "--device", "gpu",
                     "--out", str(out)]) == 1
        said[path] = _error_line(capsys)
        assert not out.exists()
    assert said["points"] == said["ssp"]
    assert "unknown device 'gpu'; use 'auto', 'cpu', 'cuda' or 'cuda:N'" in said["points"]
    out = tmp_path / "cpu.ecsv"                                     # a device this machine has: written
    assert main(["mags", "--points", str(stars), "--filters", "twomass_Ks", "--model", "blackbody",
                 "--device", "cpu", "--out", str(out)]) == 0 and out.exists()


def test_ssp_and_mags_fits_headers_use_the_same_keywords(tmp_path):
    """`ssp --out .fits` wrote SPECIAL and ISOCHRON, `mags --out .fits` its meta keys as astropy does,
    HIERARCH special_phases and HIERARCH isochrones: one setting, two keywords. Now both write
    output_files.SSP_OPTION_FITS_KEYS."""
    from astropy.io import fits

    common = ["--generator", "blackbody", "--special-phases", "dedicated", "--outside", "exclude",
              "--isochrones", "padova", "--Z", "0.019"]
    ssp, mags = tmp_path / "ssp.fits", tmp_path / "mags.fits"
    assert main(["ssp", "--age", "1Gyr", *common, "--out", str(ssp)]) == 0
    assert main(["mags", "--ages", "1Gyr", "--filters", "twomass_Ks", *common, "--out", str(mags)]) == 0
    headers = {name: fits.getheader(path, 1) for name, path in (("ssp", ssp), ("mags", mags))}
    for key, value in (("SPECIAL", "dedicated"), ("OUTSIDE", "exclude"), ("ISOCHRON", "padova")):
        assert headers["ssp"][key] == headers["mags"][key] == value, key
    assert not {"SPECIAL_PHASES", "ISOCHRONES"} & {k.upper() for k in headers["mags"]}       # no HIERARCH


def test_ssp_and_mags_fits_headers_record_the_same_imf_mass_range(tmp_path, blackbody):
    """`ssp --out .fits` wrote IMFMLOW / IMFMUP, `mags --out .fits` the IMF's name only: a Kroupa IMF to
    40 M_sun read as the 0.08-120 default there. Now mags writes both keywords, from the IMF ssp_grid used."""
    from astropy.io import fits

    from smnet_sps.imf import get_imf
    from smnet_sps.photometry import _write_table, ssp_magnitudes

    common = ["--generator", "blackbody", "--imf", "salpeter", "--isochrones", "padova", "--Z", "0.019"]
    ssp, mags = tmp_path / "ssp.fits", tmp_path / "mags.fits"
    assert main(["ssp", "--age", "1Gyr", *common, "--out", str(ssp)]) == 0
    assert main(["mags", "--ages", "1Gyr", "--filters", "twomass_Ks", *common, "--out", str(mags)]) == 0
    headers = {name: fits.getheader(path, 1) for name, path in (("ssp", ssp), ("mags", mags))}
    imf = get_imf("salpeter")
    for key, value in (("IMF", "salpeter"), ("IMFMLOW", imf.m_low), ("IMFMUP", imf.m_up)):
        assert headers["ssp"][key] == headers["mags"][key] == value, key
    # an IMF with other limits (the API takes one): its limits, not the default's
    short = get_imf("kroupa", m_up=40.0)
    table = ssp_magnitudes([1e7], 0.0152, ["twomass_Ks"], imf=short, generator=blackbody, progress=False)
    assert table.meta["imf_mass_range"] == [0.08, 40.0]
    _write_table(table, tmp_path / "short.fits", "fits")
    h = fits.getheader(tmp_path / "short.fits", 1)
    assert (h["IMFMLOW"], h["IMFMUP"]) == (0.08, 40.0) and "IMF_MASS_RANGE" not in h


def test_ssp_and_mags_fits_headers_name_an_imf_passed_in_alike(tmp_path, blackbody):
    """ssp_magnitudes given an IMF (not a name, which the command line passes) recorded str(imf): the mags
    FITS card IMF read "IMF('kroupa', 0.08-40 Msun)", for a callable "<function steep at 0x...>", where the
    SSP spectrum's FITS (ssp_spectrum, the `ssp` writer) says the IMF's name. Now both say the name."""
    from astropy.io import fits

    from smnet_sps.imf import get_imf
    from smnet_sps.photometry import _write_table, ssp_magnitudes
    from smnet_sps.ssp import ssp_spectrum
    from smnet_sps.ssp_cli import _write_fits

    def steep(m):                                       # a callable dN/dm
        return np.asarray(m, float) ** -2.7

    for imf, name in ((get_imf("kroupa", m_up=40.0), "kroupa"), (steep, "steep")):
        table = ssp_magnitudes([1e9], 0.0152, ["twomass_Ks"], imf=imf, generator=blackbody, progress=False)
        files = tmp_path / f"mags_{name}.fits", tmp_path / f"ssp_{name}.fits"
        _write_table(table, files[0], "fits")
        _write_fits(ssp_spectrum(1e9, 0.0152, imf=imf, generator=blackbody), files[1])
        cards = [fits.getheader(f, 1)["IMF"] for f in files]
        assert table.meta["imf"] == cards[0] == cards[1] == name, cards


def test_mags_backend_options_reach_the_ssps(tmp_path, capsys, default_generator):
    """`mags --special-phases dedicated` was an unknown option; now it makes the SSPs with the dedicated
    TP-AGB spectra, as ssp_magnitudes(special_phases="dedicated") does, and --outside exclude drops the stars
    outside the model's coverage, as ssp_magnitudes(outside="exclude") does (shipped model, 1 Gyr solar: Ks
    3.963 -> 3.986 and 3.973 mag); the table's meta records special_phases and outside. Each run changes one
    option from the defaults (the blackbody covers every star, so outside changed nothing there, and one run
    changing both options could not tell which of them reached the SSPs). With --points (stars, no SSP) the
    two are refused; --device is passed to the generator (a device this machine lacks is named)."""
    from astropy import units as u
    from astropy.table import Table

    from smnet_sps.photometry import ssp_magnitudes
    base = ["mags", "--Z", "0.0152", "--filters", "twomass_Ks", "--ages", "1Gyr", "--generator", "default",
            "--device", "cpu"]
    ks = {}
    for mode, outside in (("model", "extrapolate"), ("dedicated", "extrapolate"), ("model", "exclude")):
        out = tmp_path / f"{mode}_{outside}.ecsv"
        assert main([*base, "--special-phases", mode, "--outside", outside, "--out", str(out)]) == 0
        t = Table.read(out)
        assert (t.meta["special_phases"], t.meta["outside"]) == (mode, outside)
        ref = ssp_magnitudes(1 * u.Gyr, 0.0152, ["twomass_Ks"], generator=default_generator,
                             special_phases=mode, outside=outside, progress=False)
        np.testing.assert_allclose(np.asarray(t["M_twomass_Ks"].value), np.asarray(ref["M_twomass_Ks"].value),
                                   rtol=0, atol=1e-9)
        ks[mode, outside] = float(t["M_twomass_Ks"].value[0])
    default = ks["model", "extrapolate"]
    assert abs(ks["dedicated", "extrapolate"] - default) > 0.01, ks     # the dedicated TP-AGB spectra
    assert abs(ks["model", "exclude"] - default) > 0.005, ks            # the stars outside dropped
    capsys.readouterr()
    stars = tmp_path / "stars.csv"
    stars.write_text("teff,logg,logz,L\n5000,4.5,0.0,0.5\n")
    for extra in (["--special-phases", "dedicated"], ["--outside", "exclude"]):
        assert main(["mags", "--points", str(stars), "--filters", "twomass_Ks", *extra]) == 1
        assert f"{extra[0]} applies to SSP magnitudes only" in _error_line(capsys)
    assert main([*base[:-1], "gpu", "--out", str(tmp_path / "gpu.ecsv")]) == 1
    assert "gpu" in _error_line(capsys)
