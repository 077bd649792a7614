"""A user's own isochrones: PARSEC's CMD web-form output (read_cmd_isochrones) and isochrones= given as a set
or a file path in ssp_spectrum / ssp_grid / the command line.

The fixture (tests/fixtures/isochrones/cmd_parsec_small.dat.gz, made by make_cmd_fixture.py there) holds four
of the shipped PARSEC isochrones in CMD's layout and labels, so SSPs from it must equal the shipped family's.
"""
import gzip
import re
from pathlib import Path

import numpy as np
import pytest

from smnet_sps.isochrones import (CMD_LABEL_PHASES, PHASE_NAMES, load_isochrones, read_cmd_isochrones,
                                  resolve_isochrones)

CMD_FILE = Path(__file__).parent / "fixtures" / "isochrones" / "cmd_parsec_small.dat.gz"
COLS = ("mini", "mact", "logl", "logt", "logg", "co", "phase")


def _lines():
    with gzip.open(CMD_FILE, "rt") as fh:
        return fh.read().splitlines()


def _write(tmp_path, lines, name="iso.dat"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _data(line):
    return line.strip() and not line.lstrip().startswith("#")


def test_the_cmd_file_gives_the_shipped_parsec_isochrones_back():
    cmd, parsec = read_cmd_isochrones(CMD_FILE), load_isochrones("parsec")
    assert cmd.Z.tolist() == [0.014, 0.017] and cmd.log_age.tolist() == [9.95, 10.0]
    assert cmd.zsun == parsec.zsun == 0.0152
    for iz, z in enumerate(cmd.Z):
        for ia, a in enumerate(cmd.log_age):
            mine = cmd.isochrone(iz, ia)
            ref = parsec.isochrone(int(np.argmin(abs(parsec.Z - z))), int(np.argmin(abs(parsec.log_age - a))))
            for c in COLS:
                np.testing.assert_array_equal(getattr(mine, c), getattr(ref, c), err_msg=c)
    # the same unchanged file is the same set (the SSP cache is keyed on the set object)
    assert read_cmd_isochrones(CMD_FILE) is cmd and resolve_isochrones(str(CMD_FILE)) is cmd


@pytest.mark.parametrize("age, Z", [(10**9.95, 0.014), (9.5e9, 0.0155), (10**10, 0.017)])
def test_an_ssp_from_the_cmd_file_equals_the_shipped_familys(age, Z, blackbody):
    from smnet_sps.ssp import ssp_spectrum
    ref = ssp_spectrum(age, Z=Z, isochrones="parsec", generator=blackbody)
    for given in (CMD_FILE, str(CMD_FILE), read_cmd_isochrones(CMD_FILE)):
        mine = ssp_spectrum(age, Z=Z, isochrones=given, generator=blackbody)
        np.testing.assert_allclose(mine.flux.value, ref.flux.value, rtol=1e-6, atol=0)
        for key in ("lbol", "mass_stars", "mass_remnants", "outside_fraction"):
            assert mine.meta[key] == pytest.approx(ref.meta[key], rel=1e-6), key
        # the labels map onto the same phases: the same light per phase
        assert mine.meta["phase_luminosity"].keys() == ref.meta["phase_luminosity"].keys()
        for k, v in ref.meta["phase_luminosity"].items():
            assert mine.meta["phase_luminosity"][k] == pytest.approx(v, rel=1e-6), k
        assert mine.meta["isochrones"] == "cmd:cmd_parsec_small.dat.gz"


def test_an_ssp_grid_from_the_cmd_file_equals_the_shipped_familys_and_is_cached(blackbody):
    from smnet_sps.ssp import ssp_grid
    ages, Zs = [10**9.95, 9.3e9, 1e10], [0.014, 0.0155, 0.017]
    ref = ssp_grid(ages, Zs, isochrones="parsec", generator=blackbody, progress=False)
    first = ssp_grid(ages, Zs, isochrones=CMD_FILE, generator=blackbody, progress=False)
    again = ssp_grid(ages, Zs, isochrones=str(CMD_FILE), generator=blackbody, progress=False)
    np.testing.assert_allclose(first.ssp_flux, ref.ssp_flux, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(again.ssp_flux, first.ssp_flux)
    assert again.attrs["n_isochrones_cached"] == again.attrs["n_isochrones"] == 4
    assert first.attrs["isochrones"] == "cmd:cmd_parsec_small.dat.gz"
    # the file's grid bounds the request, with its own name in the error
    with pytest.raises(ValueError, match=r"cmd:cmd_parsec_small.dat.gz isochrone grid.*0\.014-0\.017"):
        ssp_grid(ages, [0.02], isochrones=CMD_FILE, generator=blackbody, progress=False)


def test_white_dwarfs_are_dropped(tmp_path):
    """Label >= 10 rows and a cooling track past the hottest post-AGB (label 9) point are remnants."""
    lines = _lines()
    last = max(i for i, line in enumerate(lines) if _data(line) and line.split()[2] == "9.9500"
               and line.startswith("0.0140000"))
    w = lines[last].split()
    extra = []
    # post-AGB heating up (kept), then cooling down at higher initial masses (dropped), then WDs (label 10)
    for k, (logt, label) in enumerate([(4.0, 9), (4.8, 9), (4.6, 9), (4.3, 9), (4.2, 10), (4.0, 11)]):
        row = list(w)
        row[3] = f"{float(w[3]) + 0.01 * (k + 1):.8f}"
        row[6], row[7], row[8], row[9] = "2.0", f"{logt}", "6.0", str(label)
        extra.append(" ".join(row))
    path = _write(tmp_path, lines[:last + 1] + extra + lines[last + 1:])
    iso = read_cmd_isochrones(path)
    ref = read_cmd_isochrones(CMD_FILE)
    one, base = iso.isochrone(0, 0), ref.isochrone(0, 0)
    assert len(one) == len(base) + 2                       # the two heating post-AGB points
    assert one.phase[-2:].tolist() == [CMD_LABEL_PHASES[9]] * 2 and one.logt[-1] == 4.8
    for c in COLS:
        np.testing.assert_array_equal(getattr(one, c)[:len(base)], getattr(base, c))
        np.testing.assert_array_equal(getattr(iso.isochrone(1, 1), c), getattr(ref.isochrone(1, 1), c))


def _without_column(lines, name):
    header = next(line for line in lines if line.startswith("# Zini")).lstrip("#").split()
    j = header.index(name)
    out = []
    for line in lines:
        if line.startswith("# Zini"):
            out.append("# " + " ".join(w for i, w in enumerate(header) if i != j))
        elif _data(line):
            out.append(" ".join(w for i, w in enumerate(line.split()) if i != j))
        else:
            out.append(line)
    return out


def _keep(lines, keep):
    """Lines whose data rows pass keep(Zini, logAge) (comments and headers kept)."""
    return [line for line in lines if not _data(line) or keep(line.split()[0], line.split()[2])]


def _edit_first_row(lines, column, value):
    k = next(i for i, line in enumerate(lines) if _data(line))
    row = lines[k].split()
    row[column] = value
    return lines[:k] + [" ".join(row)] + lines[k + 1:], k + 1


def test_a_missing_column_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"lacks \['logg'\].*needs \['Zini', 'logAge', 'Mini', 'Mass'"):
        read_cmd_isochrones(_write(tmp_path, _without_column(_lines(), "logg")))
    # C_O is optional: without it every star is O-rich (co 0); the rest unchanged
    iso = read_cmd_isochrones(_write(tmp_path, _without_column(_lines(), "C_O"), "no_co.dat"))
    assert not iso.columns["co"].any() and not iso.meta["has_co"]
    np.testing.assert_array_equal(iso.columns["logl"], read_cmd_isochrones(CMD_FILE).columns["logl"])


def test_a_missing_isochrone_of_the_grid_is_refused(tmp_path):
    path = _write(tmp_path, _keep(_lines(), lambda z, a: not (z == "0.0170000" and a == "10.0000")))
    with pytest.raises(ValueError, match=r"1 of the 4 \(Z, age\) isochrones are missing: \(Z 0.017, logAge "
                                         r"10\).*every age at every Z \(2 Z x 2 ages\)"):
        read_cmd_isochrones(path)


def _single(tmp_path, keep, name):
    """A CMD file of one Z and/or one age, cut from the fixture (CMD's commonest download: one Z)."""
    return _write(tmp_path, _keep(_lines(), keep), name)


def _same_ssp(mine, ref):
    np.testing.assert_allclose(mine.flux.value, ref.flux.value, rtol=1e-6, atol=0)
    for key in ("lbol", "mass_stars", "mass_remnants"):
        assert mine.meta[key] == pytest.approx(ref.meta[key], rel=1e-6), key


def test_a_file_of_one_metallicity_gives_the_shipped_ssps_at_that_z(tmp_path, blackbody):
    """One Z, two ages: it was refused ('needs at least two Z and two ages'). At that Z (given as Z, as
    logzsol, or not at all) the SSP is the shipped family's, its isochrones with weight 1; any other Z is
    refused naming the only one."""
    from smnet_sps.ssp import ssp_grid, ssp_spectrum
    path = _single(tmp_path, lambda z, a: z == "0.0170000", "one_z.dat")
    iso = read_cmd_isochrones(path)
    assert iso.Z.tolist() == [0.017] and iso.log_age.tolist() == [9.95, 10.0]
    logzsol = float(np.log10(0.017 / 0.0152))
    for age in (10**9.95, 9.3e9, 1e10):
        ref = ssp_spectrum(age, Z=0.017, isochrones="parsec", generator=blackbody)
        for kwargs in ({"Z": 0.017}, {"logzsol": logzsol}, {"Z": 0.017 * (1 + 5e-7)}, {}):
            mine = ssp_spectrum(age, isochrones=path, generator=blackbody, **kwargs)
            _same_ssp(mine, ref)
            assert mine.meta["Z"] == 0.017 and {z for z, _, _ in mine.meta["interpolated_from"]} == {0.017}
    for kwargs in ({"Z": 0.014}, {"logzsol": 0.0}, {"Z": 0.017 * (1 + 3e-6)}):
        with pytest.raises(ValueError, match=r"is not the one metallicity of the cmd:one_z.dat isochrones: "
                                             r"Z = 0\.017 only \(logzsol \+0\.0486053"):
            ssp_spectrum(9.3e9, isochrones=iso, generator=blackbody, **kwargs)
    ages = [10**9.95, 9.3e9, 1e10]
    grid = ssp_grid(ages, isochrones=path, generator=blackbody, progress=False)
    ref = ssp_grid(ages, [0.017], isochrones="parsec", generator=blackbody, progress=False)
    assert grid.ssp_flux.shape == ref.ssp_flux.shape
    np.testing.assert_allclose(grid.ssp_flux, ref.ssp_flux, rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match=r"Z = 0\.017 only"):
        ssp_grid(ages, [0.014, 0.017], isochrones=path, generator=blackbody, progress=False)


def test_a_file_of_one_age_gives_the_shipped_ssps_at_that_age(tmp_path, blackbody):
    """One age, two Z: at that age (to 1e-4 dex: a logAge printed to 4 decimals) the SSP is the shipped
    family's at any Z between the two; any other age is refused naming the only one."""
    from smnet_sps.ssp import ssp_grid, ssp_spectrum
    path = _single(tmp_path, lambda z, a: a == "9.9500", "one_age.dat")
    iso = read_cmd_isochrones(path)
    assert iso.Z.tolist() == [0.014, 0.017] and iso.log_age.tolist() == [9.95]
    for Z in (0.014, 0.0155):
        ref = ssp_spectrum(10**9.95, Z=Z, isochrones="parsec", generator=blackbody)
        for age in (10**9.95, 10**(9.95 + 8e-5)):
            mine = ssp_spectrum(age, Z=Z, isochrones=iso, generator=blackbody)
            _same_ssp(mine, ref)
            assert mine.meta["log_age"] == 9.95
    for age in (9e9, 10**(9.95 - 2e-4), 1e10):
        with pytest.raises(ValueError, match=r"the cmd:one_age.dat isochrones hold one age, 8\.912509 "
                                             r"Gyr only \(log10\(age/yr\) 9\.95\): SSPs from them are at"):
            ssp_spectrum(age, Z=0.0155, isochrones=iso, generator=blackbody)
    grid = ssp_grid(None, [0.014, 0.0155], isochrones=iso, generator=blackbody, progress=False)
    ref = ssp_grid([10**9.95], [0.014, 0.0155], isochrones="parsec", generator=blackbody, progress=False)
    np.testing.assert_allclose(grid.ssp_flux, ref.ssp_flux, rtol=1e-6, atol=0)
    # one isochrone: one Z and one age
    one = read_cmd_isochrones(_single(tmp_path, lambda z, a: z == "0.0140000" and a == "9.9500", "one.dat"))
    _same_ssp(ssp_spectrum(10**9.95, isochrones=one, generator=blackbody),
              ssp_spectrum(10**9.95, Z=0.014, isochrones="parsec", generator=blackbody))


def test_the_commands_take_a_file_of_one_metallicity(tmp_path, capsys):
    from astropy.table import Table

    from smnet_sps.cli import main
    from smnet_sps.photometry import ssp_magnitudes
    from smnet_sps.ssp import load_ssp_grid, ssp_spectrum
    path = _single(tmp_path, lambda z, a: z == "0.0170000", "one_z.dat")
    # ssp: without --Z / --logzsol the file's one Z (solar is not in it)
    assert main(["ssp", "--age", "9.5Gyr", "--isochrones", str(path), "--generator", "blackbody"]) == 0
    ref = ssp_spectrum(9.5e9, Z=0.017, generator="blackbody")
    printed = capsys.readouterr().out
    assert "Z = 0.017 (logzsol +0.05)" in printed and f"log Lbol = {ref.meta['log_lbol']:.4f}" in printed
    assert main(["ssp", "--age", "9.5Gyr", "--logzsol", "0", "--isochrones", str(path), "--generator",
                 "blackbody"]) == 1
    assert "Z = 0.017 only" in capsys.readouterr().err
    out = tmp_path / "mags.ecsv"
    assert main(["mags", "--Z", "0.017", "--filters", "sdss2010-g", "--ages", "9.5Gyr", "--model",
                 "blackbody", "--isochrones", str(path), "--out", str(out)]) == 0
    ref = ssp_magnitudes([9.5e9], 0.017, ["sdss2010-g"], generator="blackbody")
    assert float(Table.read(out)["M_sdss2010-g"][0]) == pytest.approx(float(ref["M_sdss2010-g"][0]), abs=1e-6)
    assert main(["mags", "--Z", "0.014", "--filters", "sdss2010-g", "--ages", "9.5Gyr", "--model",
                 "blackbody", "--isochrones", str(path)]) == 1
    assert "Z = 0.017 only" in capsys.readouterr().err
    grid = tmp_path / "grid.npz"
    assert main(["ssp-grid", "--isochrones", str(path), "--generator", "blackbody", "--out", str(grid)]) == 0
    g = load_ssp_grid(grid)
    assert g.ssp_flux.shape[:2] == (1, 2) and g.attrs["isochrones"] == "cmd:one_z.dat"
    assert main(["ssp-grid", "--isochrones", str(path), "--Z", "0.02", "--generator", "blackbody",
                 "--out", str(tmp_path / "g2.npz")]) == 1
    assert "Z = 0.017 only" in capsys.readouterr().err


def test_bad_files_are_refused_with_their_line(tmp_path):
    lines = _lines()
    bad, line_no = _edit_first_row(lines, 7, "2317.0")                     # Teff in K as logTe
    with pytest.raises(ValueError, match=rf"line {line_no}: logTe = 2317; allowed: a finite log10\(Teff"):
        read_cmd_isochrones(_write(tmp_path, bad, "teff.dat"))
    bad, line_no = _edit_first_row(lines, 9, "1.5")
    with pytest.raises(ValueError, match=rf"line {line_no}: label = 1.5; allowed: a whole number"):
        read_cmd_isochrones(_write(tmp_path, bad, "label.dat"))
    with pytest.raises(ValueError, match="no CMD column header"):
        read_cmd_isochrones(_write(tmp_path, [line for line in lines if "Zini" not in line or _data(line)]
                                   [:4], "header.dat"))
    with pytest.raises(ValueError, match=r"line 1: data before the column header; not a CMD output"):
        read_cmd_isochrones(_write(tmp_path, ["9.95 0.09 0.09 -3.4 3.36 5.2 0.48 0"], "fsps.dat"))
    k = next(i for i, line in enumerate(lines) if _data(line))
    with pytest.raises(ValueError, match=rf"line {k + 1}: 11 values for the header's 12 columns"):
        read_cmd_isochrones(_write(tmp_path, lines[:k] + [lines[k].rsplit(" ", 1)[0]] + lines[k + 1:],
                                   "short.dat"))
    # an isochrone listed twice (two outputs pasted together)
    first = [line for line in lines if _data(line) and line.startswith("0.0140000 -0.02268 9.9500")]
    with pytest.raises(ValueError, match=r"Z = 0.014, logAge = 9.95 appears twice"):
        read_cmd_isochrones(_write(tmp_path, lines[:-1] + first, "twice.dat"))
    # Mini not increasing within an isochrone
    rows = [i for i, line in enumerate(lines) if _data(line)]
    swapped = list(lines)
    swapped[rows[0]], swapped[rows[1]] = lines[rows[1]], lines[rows[0]]
    with pytest.raises(ValueError, match=rf"line {rows[1] + 1}: Mini decreases within the isochrone Z"):
        read_cmd_isochrones(_write(tmp_path, swapped, "order.dat"))
    with pytest.raises(FileNotFoundError, match="not found"):
        read_cmd_isochrones(tmp_path / "nothing.dat")
    with pytest.raises(ValueError, match=r"zsun \(of the CMD tracks\) must be a metal mass fraction"):
        read_cmd_isochrones(CMD_FILE, zsun=1.52)


def test_resolve_isochrones(tmp_path):
    parsec = load_isochrones("parsec")
    assert resolve_isochrones("parsec") is parsec and resolve_isochrones(parsec) is parsec
    from smnet_sps.isochrones import isochrone_dir
    assert resolve_isochrones(isochrone_dir() / "padova.npz") is load_isochrones("padova")
    with pytest.raises(ValueError, match=r"'parsek': neither an isochrone family \(parsec \(default\), padova"
                                         r".*nor an existing file"):
        resolve_isochrones("parsek")
    with pytest.raises(ValueError, match="got int"):
        resolve_isochrones(3)


def test_the_command_line_takes_a_cmd_file(tmp_path, capsys):
    from smnet_sps.cli import main
    out = tmp_path / "ssp.fits"
    assert main(["ssp", "--age", "9.5Gyr", "--Z", "0.0155", "--isochrones", str(CMD_FILE), "--generator",
                 "blackbody", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "SSP cmd:cmd_parsec_small.dat.gz / kroupa / blackbody: age 9.5 Gyr" in printed
    from smnet_sps.ssp import ssp_spectrum
    ref = ssp_spectrum(9.5e9, Z=0.0155, generator="blackbody")
    assert re.search(rf"log Lbol = {ref.meta['log_lbol']:.4f}", printed)
    # outside the file's grid: refused before any work, naming the file's range
    assert main(["ssp", "--age", "1Gyr", "--isochrones", str(CMD_FILE), "--generator", "blackbody"]) == 1
    assert "valid ages are 8913 Myr - 10 Gyr" in capsys.readouterr().err
    assert main(["ssp", "--age", "1Gyr", "--isochrones", str(tmp_path / "mine.dat"),
                 "--generator", "blackbody"]) == 1
    assert "neither an isochrone family" in capsys.readouterr().err


def test_mags_and_ssp_grid_commands_take_a_cmd_file(tmp_path, capsys):
    from smnet_sps.cli import main
    from smnet_sps.photometry import ssp_magnitudes
    out = tmp_path / "mags.ecsv"
    assert main(["mags", "--Z", "0.0155", "--filters", "sdss2010-g", "--ages", "9.5Gyr", "--model",
                 "blackbody", "--isochrones", str(CMD_FILE), "--out", str(out)]) == 0
    from astropy.table import Table
    mine = Table.read(out)
    ref = ssp_magnitudes([9.5e9], 0.0155, ["sdss2010-g"], generator="blackbody")
    assert mine.colnames == ref.colnames
    assert float(mine["M_sdss2010-g"][0]) == pytest.approx(float(ref["M_sdss2010-g"][0]), abs=1e-6)
    assert mine.meta["isochrones"] == "cmd:cmd_parsec_small.dat.gz" and ref.meta["isochrones"] == "parsec"
    capsys.readouterr()
    grid = tmp_path / "grid.npz"
    assert main(["ssp-grid", "--isochrones", str(CMD_FILE), "--generator", "blackbody",
                 "--out", str(grid)]) == 0
    from smnet_sps.ssp import load_ssp_grid
    assert load_ssp_grid(grid).attrs["isochrones"] == "cmd:cmd_parsec_small.dat.gz"
    # a Dask run loads families by name on its workers: refused up front
    assert main(["ssp-grid", "--isochrones", str(CMD_FILE), "--workers", "2", "--generator", "blackbody",
                 "--out", str(tmp_path / "g2.npz")]) == 1
    assert "--scheduler / --workers take an isochrone family" in capsys.readouterr().err


def test_a_gzipped_file_without_gz_and_a_binary_file(tmp_path):
    """A gzipped CMD download saved without '.gz' failed with "'utf-8' codec can't decode byte 0x8b in
    position 1", naming no file (the review): gzip is told by its magic bytes; a file that is no text at all
    is named."""
    plain_name = tmp_path / "gz_named.dat"
    plain_name.write_bytes(CMD_FILE.read_bytes())
    cmd, ref = read_cmd_isochrones(plain_name), read_cmd_isochrones(CMD_FILE)
    assert cmd.Z.tolist() == ref.Z.tolist() and cmd.log_age.tolist() == ref.log_age.tolist()
    np.testing.assert_array_equal(cmd.isochrone(1, 1).logl, ref.isochrone(1, 1).logl)
    junk = tmp_path / "junk.dat"
    junk.write_bytes(bytes(range(128, 256)) * 4)
    with pytest.raises(ValueError, match=r"junk.dat, line 1: data before the column header; not a CMD "):
        read_cmd_isochrones(junk)


def test_a_stellar_population_takes_a_cmd_file(tmp_path, blackbody):
    """StellarPopulation(isochrones=...) took family names only (a path: 'unknown isochrone family'); a CMD
    file's population is the shipped family's at the file's Z and ages (zmet, logzsol, tage=0 alike)."""
    from smnet_sps import StellarPopulation
    for given in (CMD_FILE, str(CMD_FILE), read_cmd_isochrones(CMD_FILE)):
        sp = StellarPopulation(isochrones=given, generator=blackbody, sfh=0, zcontinuous=0, zmet=2)
        assert sp.zlegend.tolist() == [0.014, 0.017] and sp.ssp_ages.tolist() == [9.95, 10.0]
        assert sp.libraries[0] == b"cmd:cmd_parsec_small.dat.gz"
    ref = StellarPopulation(isochrones="parsec", generator=blackbody, sfh=0, zcontinuous=1)
    for zmet, Z in ((1, 0.014), (2, 0.017)):
        sp.params["zmet"] = zmet
        ref.params["logzsol"] = float(np.log10(Z / 0.0152))
        for tage in (10**9.95 / 1e9, 9.3, 10.0):
            np.testing.assert_allclose(sp.get_spectrum(tage=tage, peraa=True)[1],
                                       ref.get_spectrum(tage=tage, peraa=True)[1], rtol=1e-6, atol=0)
            assert sp.stellar_mass == pytest.approx(ref.stellar_mass, rel=1e-6)
    cont = StellarPopulation(isochrones=CMD_FILE, generator=blackbody, sfh=0, zcontinuous=1,
                             logzsol=float(np.log10(0.0155 / 0.0152)))
    ref.params["logzsol"] = float(np.log10(0.0155 / 0.0152))
    np.testing.assert_allclose(cont.get_spectrum(tage=9.3, peraa=True)[1],
                               ref.get_spectrum(tage=9.3, peraa=True)[1], rtol=1e-6, atol=0)
    # tage=0: the file's two ages, each the shipped family's SSP
    from smnet_sps.ssp import ssp_spectrum
    table = cont.get_spectrum(tage=0, peraa=True)[1]
    assert table.shape[0] == 2
    for row, log_age in zip(table, (9.95, 10.0)):
        np.testing.assert_allclose(row, ssp_spectrum(10**log_age, Z=0.0155, generator=blackbody).flux.value,
                                   rtol=1e-6, atol=0)


def test_populations_of_two_cmd_files_of_one_name_are_not_mixed_up(tmp_path, blackbody):
    """The per-metallicity tabulation was cached on the set's name: a second file called iso.dat (another
    Z) got the first one's SSPs in a star-formation history, silently."""
    from smnet_sps import StellarPopulation, population
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    low = _single(tmp_path / "a", lambda z, a: z == "0.0140000", "iso.dat")
    high = _single(tmp_path / "b", lambda z, a: z == "0.0170000", "iso.dat")
    spectra = []
    for path in (low, high):
        sp = StellarPopulation(isochrones=path, generator=blackbody, sfh=1, tau=1.0)
        spectra.append(sp.get_spectrum(tage=9.99, peraa=True)[1])
    population._GRID_CACHE.clear()
    alone = StellarPopulation(isochrones=high, generator=blackbody, sfh=1, tau=1.0)
    np.testing.assert_array_equal(spectra[1], alone.get_spectrum(tage=9.99, peraa=True)[1])
    assert not np.allclose(spectra[0], spectra[1], rtol=1e-3)


def test_a_stellar_population_of_one_metallicity_or_age(tmp_path, blackbody):
    from smnet_sps import StellarPopulation
    one_z = _single(tmp_path, lambda z, a: z == "0.0170000", "one_z.dat")
    sp = StellarPopulation(isochrones=one_z, generator=blackbody, sfh=1, tau=1.0, zcontinuous=1, logzsol=0.0)
    with pytest.raises(ValueError, match=r"Z = 0\.0152 .*not the one metallicity of the cmd:one_z.dat "
                                         r"isochrones: Z = 0\.017 only"):
        sp.get_spectrum(tage=9.99)
    sp.params["logzsol"] = float(np.log10(0.017 / 0.0152))
    assert np.all(np.isfinite(sp.get_spectrum(tage=9.99)[1]))
    one_age = _single(tmp_path, lambda z, a: a == "9.9500", "one_age.dat")
    sp = StellarPopulation(isochrones=one_age, generator=blackbody, sfh=1, tau=1.0)
    with pytest.raises(ValueError, match=r"sfh=1 sums SSPs of many ages, but the cmd:one_age.dat isochrones "
                                         r"hold one age \(8\.912509 Gyr only"):
        sp.get_spectrum(tage=9.0)
    sp.params["sfh"] = 0
    assert sp.get_spectrum(tage=0)[1].shape[0] == 1
    with pytest.raises(ValueError, match=r"hold one age, 8\.912509 Gyr only"):
        sp.get_spectrum(tage=9.0)


# CMD's legend (http://stev.oapd.inaf.it/cmd_3.7/faq.html): label -> the stage it names
_CMD_LEGEND = {0: "pre-main sequence", 1: "main sequence", 2: "sub giant branch", 3: "red giant branch",
               4: "core He burning", 5: "core He burning", 6: "core He burning", 7: "early AGB", 8: "TP-AGB",
               9: "post-AGB"}


def test_every_cmd_label_becomes_the_phase_it_names():
    """The fixture holds labels 1, 2, 3, 4, 7 and 8 only, so a wrong mapping of 0, 5, 6 or 9 passed every
    test (the review): each label's phase is checked by name against CMD's legend (pre-MS is FSPS's main
    sequence code 0 in PARSEC, which flags no pre-main sequence)."""
    for label, stage in _CMD_LEGEND.items():
        phase = CMD_LABEL_PHASES[label]
        expected = "main sequence" if stage == "pre-main sequence" else stage
        assert PHASE_NAMES[phase] == expected, (label, phase)
    assert sorted(CMD_LABEL_PHASES) == list(range(10))


def test_provenance_names_the_isochrone_file_and_a_dask_run_refuses_any_file(tmp_path, capsys, blackbody):
    """A converted .npz given to ssp-grid --workers started a Dask cluster, then failed there with 'unknown
    isochrone family' (only CMD files were refused up front); and an SSP's meta said 'parsec' for a user's
    .npz as for the shipped table (the review): the file is recorded."""
    import shutil

    from smnet_sps.cli import main
    from smnet_sps.ssp import ssp_spectrum
    mine = tmp_path / "mine.npz"
    shutil.copy(load_isochrones("parsec").meta["path"], mine)
    assert main(["ssp-grid", "--isochrones", str(mine), "--workers", "1", "--generator", "blackbody",
                 "--ages", "1Gyr", "--Z", "0.0152", "--out", str(tmp_path / "g.npz")]) == 1
    err = capsys.readouterr().err
    assert "--scheduler / --workers take an isochrone family" in err and "Dask" not in err
    spec = ssp_spectrum(10**9.95, Z=0.014, isochrones=CMD_FILE, generator=blackbody)
    assert spec.meta["isochrone_file"] == str(CMD_FILE.resolve())
    shipped = ssp_spectrum(10**9.95, Z=0.014, isochrones="parsec", generator=blackbody)
    assert shipped.meta["isochrone_file"] == load_isochrones("parsec").meta["path"]


def test_an_age_within_the_printed_digits_of_a_sets_last_age_is_that_age(blackbody):
    """A one-age file took an age within 1e-4 dex of its logAge, but a file of several ages refused the same
    age at its top end (a 1-13 Gyr CMD download holds logAge 10.1139 for 13 Gyr's 10.11394: 'valid ages are
    ... 12.99 Gyr; got 13 Gyr'; the review): within 1e-4 dex of an end is that end; beyond it refused."""
    from smnet_sps.ssp import ssp_spectrum
    top = ssp_spectrum(10**10.0, Z=0.014, isochrones=CMD_FILE, generator=blackbody)
    near = ssp_spectrum(10**10.00008, Z=0.014, isochrones=CMD_FILE, generator=blackbody)
    np.testing.assert_array_equal(near.flux.value, top.flux.value)
    with pytest.raises(ValueError, match="age outside"):
        ssp_spectrum(10**10.0002, Z=0.014, isochrones=CMD_FILE, generator=blackbody)
    with pytest.raises(ValueError, match="age outside"):
        ssp_spectrum(10**9.9498, Z=0.014, isochrones=CMD_FILE, generator=blackbody)


def test_a_truncated_gzip_and_a_latin1_byte_are_named(tmp_path):
    """A gzipped download cut short failed with a bare EOFError ('Compressed file ended before the
    end-of-stream marker'), naming no file; a plain file with one non-UTF-8 byte in a comment was refused
    ('not a text file', then 'not UTF-8 text'; the reviews): read, its comment skipped."""
    cut = tmp_path / "cut.dat.gz"
    cut.write_bytes(CMD_FILE.read_bytes()[:4000])
    with pytest.raises(ValueError, match=r"cut.dat.gz: cannot be read, the file is truncated"):
        read_cmd_isochrones(cut)
    latin = tmp_path / "latin.dat"
    latin.write_bytes(b"# Z \xb1 0.001\n" + "\n".join(_lines()).encode())
    np.testing.assert_array_equal(read_cmd_isochrones(latin).isochrone(0, 0).logl,
                                  read_cmd_isochrones(CMD_FILE).isochrone(0, 0).logl)


def test_mags_and_dask_grids_of_one_metallicity_file(tmp_path, capsys):
    """mags demanded --Z for a file of one metallicity where ssp took the file's Z (the review)."""
    from smnet_sps.cli import main
    one_z = _write(tmp_path, [ln for ln in _lines() if not _data(ln) or float(ln.split()[0]) == 0.017],
                   "one_z.dat")
    assert read_cmd_isochrones(one_z).Z.tolist() == [0.017]
    assert main(["mags", "--isochrones", str(one_z), "--ages", "9.5Gyr", "--filters", "sdss2010-g",
                 "--generator", "blackbody", "--out", str(tmp_path / "m.ecsv")]) == 0
    from astropy.table import Table
    assert Table.read(tmp_path / "m.ecsv").meta["Z"] == pytest.approx(0.017)
    # and its --help says so (it still said '--Z or --logzsol is required unless --points')
    with pytest.raises(SystemExit):
        main(["mags", "--help"])
    assert "required unless --points (an --isochrones file of one Z: its Z)" in " ".join(
        capsys.readouterr().out.split())


def _cmd2_lines(hashed=True):
    """The fixture in CMD 2.x's layout: tab-separated, a header '#\tZ\tlog(age/yr)\tM_ini ...' (2.x's names,
    its own column order) before each isochrone, under a comment line naming the isochrone."""
    names3 = next(line for line in _lines() if line.startswith("# Zini")).lstrip("#").split()
    cols2 = [("Z", "Zini"), ("log(age/yr)", "logAge"), ("M_ini", "Mini"), ("M_act", "Mass"),
             ("logL/Lo", "logL"), ("logTe", "logTe"), ("logG", "logg"), ("mbol", "mbolmag"), ("C/O", "C_O"),
             ("int_IMF", "int_IMF"), ("stage", "label")]
    header = ("#\t" if hashed else "") + "\t".join(c2 for c2, _ in cols2)
    out, block = ["# Isochrones in the layout of CMD 2.x (http://stev.oapd.inaf.it/cgi-bin/cmd_2.8)"], None
    for line in filter(_data, _lines()):
        w = dict(zip(names3, line.split()))
        if (w["Zini"], w["logAge"]) != block:
            block = (w["Zini"], w["logAge"])
            out += [f"#\tIsochrone  Z = {w['Zini']}\tAge = {10 ** float(w['logAge']):.4e} yr", header]
        out.append("\t".join(w[c3] for _, c3 in cols2))
    return out


@pytest.mark.parametrize("hashed", [True, False])
def test_a_cmd_2x_file_gives_the_same_set_as_its_3x_twin(tmp_path, hashed):
    """CMD 2.x files (header '# Z log(age/yr) M_ini M_act logL/Lo logTe logG ... C/O ... stage', on disk in
    many places) were refused: 'data before the column header; not a CMD output file'. They are read with
    2.x's names mapped onto 3.x's, and give the 3.x file's isochrones value for value."""
    path = _write(tmp_path, _cmd2_lines(hashed), "cmd2.dat")
    two, three = read_cmd_isochrones(path), read_cmd_isochrones(CMD_FILE)
    assert two.Z.tolist() == three.Z.tolist() and two.log_age.tolist() == three.log_age.tolist()
    assert two.meta["has_co"]
    for iz in range(two.Z.size):
        for ia in range(two.log_age.size):
            for c in COLS:
                np.testing.assert_array_equal(getattr(two.isochrone(iz, ia), c),
                                              getattr(three.isochrone(iz, ia), c), err_msg=c)
    # 2.x without its 'stage' column (tracks older than PARSEC): refused, naming what 2.x calls it
    no_stage = [line if line.startswith("# ") else line.rsplit("\t", 1)[0] for line in _cmd2_lines(hashed)]
    with pytest.raises(ValueError, match=r"lacks \['label'\].*CMD 2\.x: .*stage"):
        read_cmd_isochrones(_write(tmp_path, no_stage, "nostage.dat"))


def test_mist_iso_file_is_told_to_use_the_mist_family(tmp_path):
    """A MIST web-interpolator isochrone file (.iso) given as isochrones= was told only "data before the
    column header; not a CMD output file"; the error now says it is a MIST file, not read as a file, and
    that isochrones='mist' is the MIST grid. A non-MIST file gets no such hint."""
    from smnet_sps.isochrones import resolve_isochrones
    names = ["EEP", "log10_isochrone_age_yr", "initial_mass", "star_mass", "log_Teff", "log_g", "log_L",
             "[Fe/H]_init", "[Fe/H]", "phase"]
    iso = ["# MIST version number  = 1.2", "# number of isochrones =    1", "# " + "  ".join(names),
           "   202   9.0   0.5   0.5   3.60   4.7  -1.3  0.0  0.0  0",
           "   300   9.0   1.0   1.0   3.76   4.4   0.0  0.0  0.0  0"]
    (tmp_path / "mist.iso").write_text("\n".join(iso) + "\n")
    with pytest.raises(ValueError, match=r"line 4: data before the column header.*This is a MIST isochrone "
                                         r"file.*isochrones='mist'"):
        resolve_isochrones(tmp_path / "mist.iso")
    (tmp_path / "header_only.iso").write_text("\n".join(iso[:3]) + "\n")
    with pytest.raises(ValueError, match=r"no CMD column header.*This is a MIST isochrone file"):
        resolve_isochrones(tmp_path / "header_only.iso")
    (tmp_path / "hand.csv").write_text("logAge,Z,mass,logL,logTeff,logg\n9.0,0.0152,1.0,0.0,3.76,4.4\n")
    with pytest.raises(ValueError, match="data before the column header") as err:
        resolve_isochrones(tmp_path / "hand.csv")
    assert "MIST" not in str(err.value)


@pytest.mark.parametrize("kind", ["file", "set"])
def test_ssp_grids_refuses_a_file_of_isochrones_naming_where_it_runs(tmp_path, kind):
    """ssp_grids (the Python side of ssp-grid --workers) given a CMD file or an IsochroneSet said "unknown
    isochrone family '.../cmd_parsec_small.dat.gz'; valid names are ...", not that a file is not taken in a
    distributed run nor where it is: refused naming ssp_grid, before any grid's store is made."""
    pytest.importorskip("distributed")
    pytest.importorskip("zarr")
    from smnet_sps.distributed import SSPConfig, ssp_grids
    iso = str(CMD_FILE) if kind == "file" else read_cmd_isochrones(CMD_FILE)
    store = tmp_path / "stores"
    with pytest.raises(ValueError, match=r"a distributed run takes an isochrone family \(parsec .*\); a file "
                                         r"of isochrones .* runs in one process: smnet_sps\.ssp_grid\("):
        ssp_grids([SSPConfig(iso, "kroupa", "blackbody", [1e9], [0.017])], store=store, progress=False)
    assert not list(store.glob("*.zarr"))
