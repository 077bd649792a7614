"""Shipped isochrone tables: content, losslessness against FSPS's files, and errors."""
import re

import numpy as np
import pytest

from smnet_sps.constants import shared_data_dir
from smnet_sps.isochrones import FAMILIES, PHASE_NAMES, isochrone_dir, load_isochrones, resolve_isochrones
from zip_damage import damage_npy_header, damage_zip_member


@pytest.mark.parametrize("name,nz,na,zsun", [("parsec", 15, 93, 0.0152), ("padova", 22, 94, 0.019)])
def test_families(name, nz, na, zsun):
    iso = load_isochrones(name)
    assert iso.Z.size == nz and iso.log_age.size == na and iso.zsun == zsun
    assert np.all(np.diff(iso.Z) > 0) and np.all(np.diff(iso.log_age) > 0)
    assert iso.log_age[0] == pytest.approx(5.5)
    c = iso.isochrone(nz // 2, na // 2)
    assert len(c) > 50 and np.all(np.diff(c.mini) >= 0)
    assert set(np.unique(c.phase)) <= set(PHASE_NAMES)
    # mact printed to 4 decimals
    assert np.all((c.logt > 3) & (c.logt < 6)) and np.all(c.mact <= c.mini + 1e-4)
    assert (isochrone_dir() / FAMILIES[name]["file"]).stat().st_size < 5e6


def test_aliases_and_unknown_name():
    assert load_isochrones("Padova2007").name == "padova"
    with pytest.raises(ValueError, match="parsec, padova"):
        load_isochrones("basti")          # "mist" is valid (smnet_sps.mist)


@pytest.mark.skipif(shared_data_dir() is None, reason="needs ../shared/data (FSPS isochrone files)")
@pytest.mark.parametrize("name,src,zfile,iz", [("parsec", "fsps_parsec", "isoc_z0.0140.dat.gz", 9),
                                               ("padova", "fsps_padova2007", "isoc_z0.0190.dat.gz", 19)])
def test_lossless_against_fsps_files(name, src, zfile, iz):
    raw = np.loadtxt(shared_data_dir() / "isochrones" / src / zfile)
    iso = load_isochrones(name)
    parts = [iso.isochrone(iz, ia) for ia in range(iso.log_age.size)]
    got = np.column_stack([np.concatenate([np.full(len(p), p.log_age) for p in parts])] +
                          [np.concatenate([getattr(p, k) for p in parts])
                           for k in ("mini", "mact", "logl", "logt", "logg", "co", "phase")])
    assert got.shape == raw.shape
    assert np.allclose(got, raw, rtol=0, atol=1e-9)


def test_corrupt_and_wrong_format(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable"):
        load_isochrones("parsec", path=bad)
    array = tmp_path / "array.npz"             # a .npy under an .npz name: np.load gives an array, no archive
    with open(array, "wb") as fh:
        np.save(fh, np.arange(3))
    with pytest.raises(ValueError, match="not a readable smnet-sps isochrone table .*not an .npz archive"):
        load_isochrones("parsec", path=array)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.arange(3))
    with pytest.raises(ValueError, match="format"):
        load_isochrones("parsec", path=other)
    # a damaged header: zipfile's NotImplementedError (compression method) / RuntimeError (encrypted flag)
    # were raw tracebacks naming no file
    for case, damage in {"method": {"method": 99}, "encrypted": {"encrypted": True}}.items():
        broken = tmp_path / f"{case}.npz"
        damage_zip_member(isochrone_dir() / "parsec.npz", broken, "Z.npy", **damage)
        with pytest.raises(ValueError, match=f"{broken.name} is not a readable smnet-sps isochrone table "
                                             r"\((NotImplementedError|RuntimeError): .*rebuild it"):
            load_isochrones("parsec", path=broken)
    # isochrones=<path> reads the family tag first: the same damage there gets the same message
    tag = tmp_path / "tag.npz"
    damage_zip_member(isochrone_dir() / "parsec.npz", tag, "family.npy", method=99)
    with pytest.raises(ValueError) as direct:
        load_isochrones("parsec", path=tag)
    with pytest.raises(ValueError) as resolved:
        resolve_isochrones(str(tag))
    assert str(resolved.value) == str(direct.value)
    assert "is not a readable smnet-sps isochrone table (NotImplementedError: " in str(direct.value)
    # a damaged .npy header (family.npy's shape "()" read as "( "): numpy's parser raised tokenize.TokenError,
    # a raw traceback from `smnet-sps ssp --isochrones` (it reads the tag first) since ed579c3
    header = tmp_path / "header.npz"
    damage_npy_header(isochrone_dir() / "parsec.npz", header, "family.npy")
    for read in (lambda: load_isochrones("parsec", path=header), lambda: resolve_isochrones(str(header))):
        with pytest.raises(ValueError, match=r"header.npz is not a readable smnet-sps isochrone table "
                                             r"\(TokenError: .*rebuild it"):
            read()
    from smnet_sps.cli import main
    assert main(["ssp", "--age", "1Gyr", "--isochrones", str(header), "--generator", "blackbody"]) == 1
    assert "header.npz is not a readable smnet-sps isochrone table (TokenError: " in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        load_isochrones("parsec", path=tmp_path / "missing.npz")


def test_range_checks():
    iso = load_isochrones("parsec")
    with pytest.raises(ValueError, match=r"5\.500-10\.100"):
        iso.check_age(10.3)
    with pytest.raises(ValueError, match="0.0001-0.06"):
        iso.check_z(0.1)
    with pytest.raises(ValueError, match="> 0"):
        iso.check_z(-0.01)
    with pytest.raises(ValueError, match="index out of range"):
        iso.isochrone(15, 0)


@pytest.mark.parametrize("family", ["parsec", "padova"])
def test_the_logzsol_limits_an_error_prints_are_accepted(family):
    """The message used to round the limits outward (PARSEC '+0.60' for +0.596, Padova '+0.20' for +0.198):
    typed back in, three of the four were refused."""
    import re
    iso = load_isochrones(family)
    with pytest.raises(ValueError, match="logzsol") as err:
        iso.check_z(1.0)
    limits = re.search(r"logzsol ([-+]\d\.\d\d)\.\.([-+]\d\.\d\d)", str(err.value)).groups()
    lo, hi = (float(v) for v in limits)
    iso.check_z(iso.zsun * 10 ** np.array([lo, hi]))
    assert hi > np.log10(iso.Z[-1] / iso.zsun) - 0.01 and lo < np.log10(iso.Z[0] / iso.zsun) + 0.01


def _lbol_departures(family):
    """log10 L_bol per M_sun formed of every isochrone (the SSP's weights: Kroupa, Padova's TP-AGB factor)
    minus the line through its two age neighbours; and each isochrone's E-AGB initial-mass span."""
    from smnet_sps.imf import get_imf
    from smnet_sps.ssp import _isochrone_weights
    iso = load_isochrones(family)
    imf = get_imf("kroupa")
    log_lbol = np.empty((iso.Z.size, iso.log_age.size))
    eagb_span = np.zeros_like(log_lbol)
    for iz in range(iso.Z.size):
        for ia in range(iso.log_age.size):
            sl, w, _ = _isochrone_weights(iso, iz, ia, imf)
            log_lbol[iz, ia] = np.log10(np.sum(w * 10.0 ** iso.columns["logl"][sl]))
            m = iso.columns["mini"][sl][iso.columns["phase"][sl] == 4]
            eagb_span[iz, ia] = np.ptp(m) if m.size else 0.0
    a = iso.log_age
    w = (a[1:-1] - a[:-2]) / (a[2:] - a[:-2])
    departure = log_lbol[:, 1:-1] - ((1 - w) * log_lbol[:, :-2] + w * log_lbol[:, 2:])
    return iso, departure, eagb_span


@pytest.mark.parametrize("family", ["parsec", "padova"])
def test_a_tabulated_z_read_as_float32_is_that_z(family):
    """float32 rounds PARSEC's lowest Z, 1e-4, to 9.99999975e-05 (2.5e-8 below; Padova's 2e-4 likewise):
    check_z's 1e-9 tolerance refused it with 'Z = 0.0001 outside ... valid Z is 0.0001-0.06', in
    ssp_spectrum and ssp_grid alike. A Z within isochrones.Z_RTOL (1e-6) of a tabulated one is that Z now."""
    from smnet_sps.ssp import ssp_grid, ssp_spectrum
    iso = load_isochrones(family)
    z32 = iso.Z.astype(np.float32)
    assert z32[0] < iso.Z[0]
    np.testing.assert_array_equal(iso.check_z(z32), iso.Z)                  # every node, bit for bit
    assert iso.check_z(np.float32(iso.Z[0])).shape == ()
    with pytest.raises(ValueError, match="outside the"):
        iso.check_z(iso.Z[0] * (1 - 1e-5))                                   # beyond float32's reach
    ref = ssp_spectrum(1e10, Z=float(iso.Z[0]), isochrones=family, generator="blackbody")
    low = ssp_spectrum(1e10, Z=np.float32(iso.Z[0]), isochrones=family, generator="blackbody")
    np.testing.assert_array_equal(low.flux, ref.flux)
    grid = ssp_grid([1e10], z32[[0, -1]], isochrones=family, generator="blackbody", progress=False)
    np.testing.assert_array_equal(grid.ssp_flux[0, 0], ref.flux.value)


def test_the_two_parsec_outliers_in_lbol_are_those_documented():
    """isochrones/README.md ("Known features") names the two PARSEC isochrones whose L_bol per M_sun formed
    stands above the line through its age neighbours by > 0.15 dex, and why: an E-AGB spanning several times
    its neighbours' initial-mass range in FSPS's own file; every other PARSEC isochrone (the outliers'
    neighbours aside) within 0.09 dex, Padova's within 0.13. Recomputed here from the tables and the IMF."""
    iso, departure, eagb_span = _lbol_departures("parsec")
    a = iso.log_age
    iz, ja = np.nonzero(departure > 0.15)
    found = {(round(float(iso.Z[i]), 4), round(float(a[j + 1]), 2)): float(departure[i, j])
             for i, j in zip(iz, ja)}
    assert set(found) == {(0.0005, 9.0), (0.017, 7.9)}, found
    assert found[(0.0005, 9.0)] == pytest.approx(0.40, abs=0.01)
    assert found[(0.017, 7.9)] == pytest.approx(0.20, abs=0.01)
    others = np.ones(departure.shape, bool)
    for i, j in zip(iz, ja):
        others[i, max(j - 1, 0):j + 2] = False           # an outlier and its neighbours (a dip of half of it)
        i_z, j_a = int(i), int(j) + 1
        assert eagb_span[i_z, j_a] > 6.0 * max(eagb_span[i_z, j_a - 1], eagb_span[i_z, j_a + 1])
    assert np.abs(departure[others]).max() < 0.09
    _, padova, _ = _lbol_departures("padova")
    assert 0.12 < np.abs(padova).max() < 0.13


def _write_fsps_file(folder, name, Z):
    """A tiny FSPS isochrone file: two ages of three points (log age, Mini, Mact, log L, log Teff, log g,
    C/O, phase), luminosities scaled with Z so that the tables of different Z differ."""
    rows = [(log_age, m, m, np.log10(m) * 4 + 100 * Z, 3.7, 4.4, 0.3, 0)
            for log_age in (9.0, 9.1) for m in (0.5, 0.8, 1.0)]
    np.savetxt(folder / name, rows, fmt="%.4f %.8f %.4f %.4f %.4f %.4f %.4f %d")


def test_a_truncated_fsps_file_is_named(tmp_path):
    """An FSPS isoc_z*.dat.gz cut short (a broken download) made convert_fsps_isochrones fail with a bare
    EOFError ('Compressed file ended before the end-of-stream marker was reached'), naming no file; the CMD
    reader caught it itself. Both now read through libraries._common.read_bytes, which names the file."""
    import gzip

    from smnet_sps.isochrones import convert_fsps_isochrones
    _write_fsps_file(tmp_path, "plain.dat", 0.001)
    packed = gzip.compress((tmp_path / "plain.dat").read_bytes())
    (tmp_path / "plain.dat").unlink()
    (tmp_path / "isoc_z0.0010.dat.gz").write_bytes(packed[:len(packed) // 2])
    with pytest.raises(ValueError, match=r"isoc_z0\.0010\.dat\.gz: cannot be read, the file is truncated"):
        convert_fsps_isochrones(tmp_path, tmp_path / "out.npz", "parsec", progress=False)
    assert not (tmp_path / "out.npz").exists()


def test_a_converted_table_is_the_file_returned_and_replaced_whole(tmp_path, monkeypatch):
    """convert_fsps_isochrones(src, "tables/mine", ...) wrote tables/mine.npz (numpy's appended extension)
    and returned Path("tables/mine"), a file that did not exist: passed on as isochrones= it was 'neither an
    isochrone family nor an existing file'. And the table was written in place: a write that failed half
    way (the README rebuilds the shipped table in place) left a truncated file instead of the old table."""
    from smnet_sps.isochrones import convert_fsps_isochrones, resolve_isochrones
    src = tmp_path / "src"
    src.mkdir()
    for z in (0.001, 0.02):
        _write_fsps_file(src, f"isoc_z{z:.4f}.dat", z)
    (tmp_path / "tables").mkdir()
    out = convert_fsps_isochrones(src, tmp_path / "tables" / "mine", "parsec", progress=False)
    assert out == tmp_path / "tables" / "mine" and out.is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["mine"]
    iso = resolve_isochrones(str(out))
    assert iso.Z.tolist() == [0.001, 0.02] and iso.isochrone(1, 1).logl[0] == pytest.approx(
        np.log10(0.5) * 4 + 2.0, abs=1e-4)
    table = tmp_path / "parsec.npz"
    convert_fsps_isochrones(src, table, "parsec", progress=False)
    before = table.read_bytes()

    def fails_half_way(file, **arrays):          # a full disk or an interruption during the write
        (file if hasattr(file, "write") else open(file, "wb")).write(b"PK\x03\x04 half a table")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(np, "savez_compressed", fails_half_way)
    with pytest.raises(OSError, match="No space left"):
        convert_fsps_isochrones(src, table, "parsec", progress=False)
    assert table.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parsec.npz", "src", "tables"]
    with pytest.raises(ValueError, match=r"out_path .* is a folder; give the table's file name"):
        convert_fsps_isochrones(src, tmp_path / "tables", "parsec", progress=False)


def test_a_table_rewritten_in_the_same_session_is_read_again(tmp_path):
    """load_isochrones(path=...) kept returning the first table read from a path (cached on the path
    only): converted again with a second Z, the file held 2 Z and the loader still gave 1."""
    from smnet_sps.isochrones import convert_fsps_isochrones
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    _write_fsps_file(one, "isoc_z0.0010.dat", 0.001)
    for z in (0.001, 0.02):
        _write_fsps_file(two, f"isoc_z{z:.4f}.dat", z)
    table = tmp_path / "mine.npz"
    convert_fsps_isochrones(one, table, "parsec", progress=False)
    first = load_isochrones("parsec", path=table)
    assert first.Z.tolist() == [0.001]
    assert load_isochrones("parsec", path=table) is first          # unchanged file: served from the cache
    convert_fsps_isochrones(two, table, "parsec", progress=False)
    again = load_isochrones("parsec", path=table)
    assert again.Z.tolist() == [0.001, 0.02]
    assert again.isochrone(1, 0).logl[0] == pytest.approx(np.log10(0.5) * 4 + 2.0, abs=1e-4)


@pytest.mark.filterwarnings("ignore:.*isochrone starts above the IMF's lower limit")
def test_ssps_of_a_table_rewritten_in_the_same_session_are_not_the_old_tables(tmp_path, monkeypatch,
                                                                           blackbody):
    """The tabulated-SSP cache was keyed on the family name and the (iz, ia) indices: after the shipped table
    was rebuilt in the session (isochrones/README.md), load_isochrones read the new one, but its isochrones
    were served the old table's SSPs (Z = 0.001, 0.02 rebuilt as 0.02, 0.03: Z = 0.02 got the old 0.001's,
    L_bol 0.109 for 8.63 L_sun per M_sun formed, and Z = 0.03 the old 0.02's)."""
    import smnet_sps.isochrones as isochrones
    from smnet_sps.isochrones import convert_fsps_isochrones
    from smnet_sps.ssp import clear_ssp_cache, ssp_spectrum
    monkeypatch.setattr(isochrones, "isochrone_dir", lambda: tmp_path)
    old, new = tmp_path / "old", tmp_path / "new"
    for folder, Zs in ((old, (0.001, 0.02)), (new, (0.02, 0.03))):
        folder.mkdir()
        for z in Zs:
            _write_fsps_file(folder, f"isoc_z{z:.4f}.dat", z)

    def lbol(Z):    # (the tiny isochrones start at 0.5 M_sun: the uncovered stars' warning is expected)
        return ssp_spectrum(1e9, Z=Z, generator=blackbody).meta["lbol"]
    try:
        convert_fsps_isochrones(old, tmp_path / "parsec.npz", "parsec", progress=False)
        before = {Z: lbol(Z) for Z in (0.001, 0.02)}
        convert_fsps_isochrones(new, tmp_path / "parsec.npz", "parsec", progress=False)
        after = {Z: lbol(Z) for Z in (0.02, 0.03)}
        clear_ssp_cache()
        fresh = {Z: lbol(Z) for Z in (0.02, 0.03)}
    finally:
        clear_ssp_cache()
    assert after == fresh
    assert after[0.02] == before[0.02]                  # the same isochrones give the same SSP
    # log L of each point is 100 Z above the other table's: the Z = 0.03 SSP is 10^1 = 10x the 0.02 one's
    assert after[0.03] / after[0.02] == pytest.approx(10.0, rel=1e-3)


def test_a_file_the_glob_picks_up_without_a_metallicity_in_its_name_is_refused(tmp_path):
    """isoc_z0.0010_mine.dat.gz matches isoc_z*.dat* but its Z cannot be read from the name: the conversion
    stopped with AttributeError ('NoneType' object has no attribute 'group')."""
    from smnet_sps.isochrones import convert_fsps_isochrones
    _write_fsps_file(tmp_path, "isoc_z0.0010.dat", 0.001)
    _write_fsps_file(tmp_path, "isoc_z0.0010_mine.dat", 0.001)
    with pytest.raises(ValueError, match=r"isoc_z0\.0010_mine\.dat.*isoc_zX\.XXXX\.dat\[\.gz\]"):
        convert_fsps_isochrones(tmp_path, tmp_path / "out.npz", "parsec", progress=False)
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize("name,z", [("isoc_z0190.dat", "190"), ("isoc_z0.0.dat", "0"),
                                    ("isoc_z1.5.dat", "1.5")])
def test_a_file_name_giving_no_metal_mass_fraction_is_refused(tmp_path, name, z):
    """isoc_z0190.dat (0.0190 without its point) was converted into a table of Z = 190 (logzsol +4.1),
    isoc_z0.0.dat into one of Z = 0 (logzsol -inf): Z is read from the name and was not checked."""
    from smnet_sps.isochrones import convert_fsps_isochrones
    _write_fsps_file(tmp_path, name, 0.001)
    expected = rf"{re.escape(name)}: the name gives Z = {re.escape(z)}, not a metal mass fraction in \(0, 1\)"
    with pytest.raises(ValueError, match=expected + r".*isoc_z0\.0190\.dat"):
        convert_fsps_isochrones(tmp_path, tmp_path / "out.npz", "parsec", progress=False)
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize("copy", ["isoc_z0.0010.dat.gz", "isoc_z0.001.dat"])
def test_two_files_of_one_metallicity_are_refused(tmp_path, copy):
    """isoc_z0.0010.dat beside isoc_z0.0010.dat.gz were both read: the table got Z = [0.001, 0.001]."""
    import gzip
    import shutil

    from smnet_sps.isochrones import convert_fsps_isochrones
    _write_fsps_file(tmp_path, "isoc_z0.0010.dat", 0.001)
    if copy.endswith(".gz"):
        with open(tmp_path / "isoc_z0.0010.dat", "rb") as src, gzip.open(tmp_path / copy, "wb") as dst:
            shutil.copyfileobj(src, dst)
    else:
        shutil.copy(tmp_path / "isoc_z0.0010.dat", tmp_path / copy)
    first, second = sorted(["isoc_z0.0010.dat", copy])
    expected = rf"same metallicity twice.*{re.escape(first)} and {re.escape(second)} both give Z = 0\.001\b"
    with pytest.raises(ValueError, match=expected + ".*remove one"):
        convert_fsps_isochrones(tmp_path, tmp_path / "out.npz", "parsec", progress=False)
    assert not (tmp_path / "out.npz").exists()


def _write_mist_file(path, feh):
    """A small LACHESIS 'sparse_v1' MIST grid: 2 ages x 3 points per [Fe/H], log L = 4 log m + [Fe/H]."""
    h5py = pytest.importorskip("h5py")
    ages = np.array([9.0, 9.1])
    rows = [[m, m, np.log10(m) * 4 + z, 3.7, 4.5, 0] for z in feh for _ in ages for m in (0.5, 0.8, 1.0)]
    with h5py.File(path, "w") as f:
        f.attrs["storage"] = "sparse_v1"
        f.attrs["grid_name"] = "MIST"
        f.attrs["columns"] = ["initial_mass", "star_mass", "log_L", "log_Teff", "log_g", "phase"]
        f["feh_values"] = np.array(feh, float)
        f["age_values"] = ages
        f["lengths"] = np.full(len(feh) * ages.size, 3)
        f["values"] = np.array(rows, float)


def test_a_mist_grid_rewritten_in_the_same_session_is_read_again(tmp_path):
    """The MIST loader kept the first grid read from a path (cached on the path only): rewritten with
    [Fe/H] -1 and 0, the file held 2 Z and the loader still gave 1 (Z = [0.0142])."""
    from smnet_sps.mist import MIST_ZSUN
    grid = tmp_path / "mist.h5"
    _write_mist_file(grid, [0.0])
    first = load_isochrones("mist", path=grid)
    assert first.Z == pytest.approx([MIST_ZSUN])
    assert load_isochrones("mist", path=grid) is first             # unchanged file: served from the cache
    _write_mist_file(grid, [-1.0, 0.0])
    again = load_isochrones("mist", path=grid)
    assert again.Z == pytest.approx([MIST_ZSUN / 10, MIST_ZSUN])
    assert again.isochrone(0, 0).logl[0] == pytest.approx(np.log10(0.5) * 4 - 1.0)


def _write_mist_block(path, points, log_age=10.0):
    """A LACHESIS 'sparse_v1' MIST grid of one isochrone ([Fe/H] = 0): ``points`` rows of
    (initial mass, mass, log L, log Teff, log g, phase)."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        f.attrs["storage"] = "sparse_v1"
        f.attrs["grid_name"] = "MIST"
        f.attrs["columns"] = ["initial_mass", "star_mass", "log_L", "log_Teff", "log_g", "phase"]
        f["feh_values"] = np.array([0.0])
        f["age_values"] = np.array([log_age])
        f["lengths"] = np.array([len(points)])
        f["values"] = np.array(points, float)


def test_mist_white_dwarfs_are_remnants_not_stars(tmp_path):
    """MIST's phase 6 runs on down the white-dwarf cooling sequence (10 Gyr, solar: initial masses 1.04-6.5
    M_sun, log g to 8.7): those points were kept as stars, so the isochrone's largest initial mass was 6.5
    M_sun at every age and the remnants were only those above it (0.051 M_sun per M_sun formed at 0.1, 1 and
    10 Gyr; stars 0.546 against PARSEC's 0.454 at 10 Gyr). The cooling sequence is now cut after the
    post-AGB knee."""
    from smnet_sps.imf import imf_weights, remnant_mass
    from smnet_sps.mist import white_dwarf_start
    from smnet_sps.ssp import _isochrone_weights
    knee_mass = 1.04452
    living = [[0.5, 0.5, -1.2, 3.60, 4.7, 0], [0.9, 0.9, -0.1, 3.75, 4.5, 0], [1.0, 1.0, 0.3, 3.76, 4.0, 2],
              [1.04, 0.9, 3.0, 3.50, 0.5, 5],
              [1.0445, 0.55, 3.58, 3.65, 0.2, 6], [1.04451, 0.546, 3.5, 4.50, 3.5, 6],  # post-AGB crossing
              [knee_mass, 0.546, 2.37, 5.03, 6.9, 6]]                                  # its hottest point
    white_dwarfs = [[1.05, 0.546, 0.0, 4.65, 7.7, 6], [1.2, 0.555, -4.05, 3.69, 8.0, 5],  # MIST's phase 5 too
                    [3.0, 0.66, -4.3, 3.65, 8.1, 6], [6.5, 1.017, -4.74, 3.64, 8.7, 6]]
    points = np.array(living + white_dwarfs)
    assert white_dwarf_start(points[:, 5], points[:, 3]) == len(living)
    assert white_dwarf_start(points[:4, 5], points[:4, 3]) == 4                  # no post-AGB: nothing cut
    grid = tmp_path / "mist_wd.h5"
    _write_mist_block(grid, points)
    iso = load_isochrones("mist", path=grid)
    one = iso.isochrone(0, 0)
    np.testing.assert_allclose(one.mini, points[:len(living), 0], rtol=1e-12)
    assert one.logg.max() < 7.0
    _, w, remnants = _isochrone_weights(iso, 0, 0, "kroupa")
    # the white dwarfs born at 1.04-6.5 M_sun are remnants now: 0.48 + 0.077 m each, as FSPS counts them
    assert remnants == pytest.approx(remnant_mass(knee_mass, "kroupa"), rel=1e-12)
    assert remnants > remnant_mass(6.5, "kroupa") + 0.05
    as_stars = np.dot(imf_weights(points[:, 0], "kroupa"), points[:, 1])     # white dwarfs counted as stars
    assert float(np.dot(w, one.mact)) < as_stars - 0.05


def _fsps_rows(n_ages=2):
    """Header and the rows of the first ``n_ages`` ages of FSPS's PARSEC Z = 0.014 file."""
    import gzip
    lines = gzip.open(shared_data_dir() / "isochrones" / "fsps_parsec" / "isoc_z0.0140.dat.gz",
                      "rt").read().splitlines()
    rows = [ln.split() for ln in lines if not ln.startswith("#")]
    ages = sorted({r[0] for r in rows}, key=float)[:n_ages]
    return lines[0], [r for r in rows if r[0] in ages]


def _column(j, f):
    def edit(rows):
        for r in rows:
            r[j] = f(float(r[j]))
    return edit


def _cell(i, j, text):
    def edit(rows):
        rows[i][j] = text
    return edit


@pytest.mark.skipif(shared_data_dir() is None, reason="needs ../shared/data (FSPS isochrone files)")
@pytest.mark.parametrize("edit,match", [
    # NaN log L was stored as 0.0 (1 L_sun); row 5 is line 7 (after the header)
    (_cell(5, 3, "nan"),
     r"line 7: log L = nan \(column 4\); allowed: a finite log10\(L / L_sun\) in -8 \.\. 8"),
    # NaN Mini passed the sort check and became -9.2e10 M_sun
    (_cell(5, 1, "nan"), r"line 7: Mini = nan \(column 2\); allowed: a finite M_sun in 0\.01 \.\. 1000"),
    (_cell(9, 5, "inf"), r"line 11: log g = inf .* -3 \.\. 15"),
    # Mact in grams overflowed the integer cast to 0
    (_column(2, lambda v: f"{v * 1.989e33:.4e}"),
     r"line 2: Mact = 1\.79\d*e\+32 .*0\.01 \.\. 1000 \(\d+ more rows"),
    # Teff in K was stored as log Teff = 2875
    (_column(4, lambda v: f"{10 ** v:.1f}"), r"line 2: log Teff = 2874\.7 .*log10\(Teff / K\) in 3 \.\. 6"),
    # age in yr instead of log age
    (_column(0, lambda v: f"{10 ** v:.1f}"), r"line 2: log age = 316228 .*log10\(t / yr\) in 4 \.\. 11"),
    (_cell(3, 7, "2.5"), r"line 5: phase = 2\.5 \(column 8\); allowed: one of the FSPS phase codes \[-1, 0,"),
    (_cell(3, 7, "12"), r"line 5: phase = 12 .*phase codes"),
])
def test_converting_fsps_files_refuses_bad_values(tmp_path, edit, match):
    """convert_fsps_isochrones checked only the column count and the order of Mini (which NaN passes) before
    casting to integers: every value is now finite and in its column's range, and the error names the file,
    line, column and allowed range (nothing written)."""
    from smnet_sps.isochrones import convert_fsps_isochrones
    header, rows = _fsps_rows()
    good = tmp_path / "good"
    good.mkdir()
    (good / "isoc_z0.0140.dat").write_text("\n".join([header] + [" ".join(r) for r in rows]) + "\n")
    table = convert_fsps_isochrones(good, good / "t.npz", "parsec", progress=False)
    iso = load_isochrones("parsec", path=table)
    assert iso.isochrone(0, 0).logl[5] == pytest.approx(float(rows[5][3]), abs=1e-9)
    edit(rows)
    (tmp_path / "isoc_z0.0140.dat").write_text("\n".join([header] + [" ".join(r) for r in rows]) + "\n")
    with pytest.raises(ValueError, match=r"isoc_z0\.0140\.dat, " + match):
        convert_fsps_isochrones(tmp_path, tmp_path / "t.npz", "parsec", progress=False)
    assert not (tmp_path / "t.npz").exists()


def _set_of(name, rows, zsun=0.0152):
    """An IsochroneSet named ``name`` from ``rows``: one list of Isochrone objects per Z (increasing Z, each
    in increasing age, the same ages), built from decoded columns as the MIST loader builds one."""
    from smnet_sps.mist import _ArrayIsochroneSet
    keys = ("mini", "mact", "logl", "logt", "logg", "co", "phase")
    flat = [c for row in rows for c in row]
    columns = {k: np.concatenate([getattr(c, k) for c in flat]) for k in keys}
    count = np.array([[len(c) for c in row] for row in rows])
    start = (np.cumsum(count) - count.ravel()).reshape(count.shape)
    return _ArrayIsochroneSet(name, [row[0].Z for row in rows], [c.log_age for c in rows[0]], start, count,
                              columns, {"zsun": zsun, "citation": "test"})


def _parsec_rows(Zs, log_ages, edit=lambda c: c):
    """PARSEC's isochrones at the tabulated ``Zs`` x ``log_ages``, each passed through ``edit``."""
    parsec = load_isochrones("parsec")
    def index(grid, x):
        return int(np.argmin(abs(grid - x)))
    return [[edit(parsec.isochrone(index(parsec.Z, z), index(parsec.log_age, a))) for a in log_ages]
            for z in Zs]


def _use_set(monkeypatch, iso):
    """Make ssp_spectrum / ssp_grid read ``iso`` for every family name (its tabulated SSPs not cached)."""
    import smnet_sps.ssp as ssp
    ssp.clear_ssp_cache()
    monkeypatch.setattr(ssp, "resolve_isochrones", lambda isochrones="parsec": iso)


def test_mist_pre_main_sequence_is_called_so(monkeypatch, blackbody):
    """MIST flags the pre-main sequence -1, PARSEC the RGB tip to HB transition: a MIST SSP's
    phase_luminosity called its pre-main-sequence stars (all of a 1 Myr SSP below ~2 M_sun) "RGB tip to HB
    transition". A MIST-named set built from PARSEC's 1 Myr isochrone, its stars below 2 M_sun flagged -1."""
    import dataclasses

    from smnet_sps.isochrones import PRE_MS_PHASE
    from smnet_sps.ssp import clear_ssp_cache, ssp_spectrum
    parsec = load_isochrones("parsec")
    mist = _set_of("mist", _parsec_rows([0.0152, 0.02], [6.0, 6.05], lambda c: dataclasses.replace(
        c, phase=np.where(c.mini < 2.0, -1, c.phase).astype(np.int16))))
    assert mist.phase_names[-1] == PRE_MS_PHASE == "pre-main sequence"
    assert parsec.phase_names[-1] == PHASE_NAMES[-1] == "RGB tip to HB transition"
    _use_set(monkeypatch, mist)
    try:
        lum = ssp_spectrum(1e6, Z=0.0152, isochrones="mist", generator=blackbody,
                           by_phase=True).meta
    finally:
        clear_ssp_cache()
    assert "RGB tip to HB transition" not in lum["phase_luminosity"]
    assert lum["phase_luminosity"]["pre-main sequence"] / lum["lbol"] == pytest.approx(8.8e-4, rel=0.02)
    assert set(lum["phase_flux"]) == set(lum["phase_luminosity"])


def test_every_parsec_and_padova_isochrone_keeps_fsps_first_interval():
    """The rule for isochrones that start above the IMF's low masses applies above COVERED_FIRST_MASS: every
    PARSEC isochrone starts at 0.09-0.12 M_sun and every Padova one at 0.08, so all keep FSPS's rule."""
    from smnet_sps.imf import COVERED_FIRST_MASS, imf_weights_many, uncovered_mass
    for name, (lo, hi) in (("parsec", (0.09, 0.12)), ("padova", (0.08, 0.08))):
        iso = load_isochrones(name)
        first = iso.columns["mini"][iso.start]
        assert first.min() == pytest.approx(lo, abs=1e-4) and first.max() == pytest.approx(hi, abs=1e-4)
        assert first.max() < COVERED_FIRST_MASS
        mass, m_hi = uncovered_mass(iso.columns["mini"], iso.count.ravel())
        assert not mass.any() and np.all(m_hi == 0.08)
    one = iso.isochrone(0, 0)
    w = imf_weights_many(one.mini, [len(one)])
    # FSPS: the first point owns 0.08 M_sun up to the mid-point to the second
    assert w[0] > 0 and one.mini[0] == 0.08


def test_an_isochrone_starting_above_the_imf_low_masses(monkeypatch, blackbody):
    """MIST's [Fe/H] = +0.5 isochrones start at ~0.51 M_sun: FSPS's rule booked every star from 0.08 M_sun up
    at the first point's mass and light (10 Gyr: mass_total 0.997 for ~0.61, the first point 16.6 % of
    L_bol). Here PARSEC's 10 Gyr isochrones with the points below 0.5 M_sun dropped: the first point owns a
    symmetric interval, the stars of 0.08 M_sun to its lower edge count as mass (the IMF's integral), not as
    light, with a warning and meta['mass_uncovered'] / ['uncovered_mass_range'] / SSPGrid.mass_uncovered."""
    import dataclasses

    from smnet_sps.imf import get_imf, imf_weights
    from smnet_sps.ssp import clear_ssp_cache, ssp_grid, ssp_spectrum
    full_rows = _parsec_rows([0.014, 0.017], [10.0, 10.05])

    def cut(c):
        keep = c.mini >= 0.5
        return dataclasses.replace(c, **{k: getattr(c, k)[keep] for k in ("mini", "mact", "logl", "logt",
                                                                            "logg", "co", "phase")})
    cut_rows = [[cut(c) for c in row] for row in full_rows]
    one = cut_rows[0][0]
    edge = 2 * one.mini[0] - 0.5 * (one.mini[0] + one.mini[1])
    w = imf_weights(one.mini)
    imf = get_imf("kroupa")
    assert w[0] == pytest.approx(imf.number(edge, 0.5 * (one.mini[0] + one.mini[1])) / imf.mass_formed)
    assert w[0] * 10 ** one.logl[0] / np.sum(w * 10**one.logl) < 0.01      # was 0.18 of L_bol
    try:
        _use_set(monkeypatch, _set_of("parsec", full_rows))
        full = ssp_spectrum(1e10, Z=0.014, generator=blackbody).meta
        assert full["mass_uncovered"] == 0 and full["uncovered_mass_range"] is None
        _use_set(monkeypatch, _set_of("parsec", cut_rows))
        with pytest.warns(UserWarning, match=r"mass 0\.08-0\.4\d+ Msun \(0\.2\d+ Msun per Msun formed\)"):
            part = ssp_spectrum(1e10, Z=0.014, generator=blackbody).meta
        with pytest.warns(UserWarning, match="4 parsec SSP"):
            grid = ssp_grid([1e10, 10**10.05], [0.014, 0.017], generator=blackbody, progress=False)
    finally:
        clear_ssp_cache()
    lo, hi = part["uncovered_mass_range"]
    assert lo == 0.08 and hi == pytest.approx(edge)
    assert part["mass_uncovered"] == pytest.approx(imf.mass(0.08, edge) / imf.mass_formed, rel=1e-9)
    # the mass budget: as with the whole isochrone (low-mass stars lose no mass), not 0.997 vs 0.61
    assert part["mass_total"] == pytest.approx(full["mass_total"], rel=0.005)
    assert part["mass_total"] < 1.0
    # the light: that of the stars on the isochrone, which the full one has too (those below are faint)
    assert part["lbol"] < full["lbol"] and part["lbol"] == pytest.approx(full["lbol"], rel=0.1)
    assert grid.mass_uncovered[0, 0] == pytest.approx(part["mass_uncovered"], rel=1e-12)
    assert np.all(grid.mass_uncovered > 0.2)
