"""smnet-sps mags --points from a CSV / ECSV / FITS table in this process (no Dask, no Parquet), and colour
columns (--colors, colors=) in the SSP and star tables."""
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
from astropy import units as u
from astropy.constants import sigma_sb
from astropy.table import MaskedColumn, Table

from smnet_sps.cli import main
from smnet_sps.photometry import magnitudes, ssp_magnitudes
from smnet_sps.star_tables import points_magnitudes

BANDS = ["bessell-B", "bessell-V", "sdss2010-g", "sdss2010-r"]
STARS = {"name": ["Sun", "Arcturus", "Procyon"], "teff": [5772.0, 4286.0, 6530.0], "logg": [4.44, 1.66, 4.0],
         "logz": [0.0, -0.52, -0.02], "L": [1.0, 170.0, 6.93]}


def _direct(gen, stars):
    """Each star's surface flux x (R / 10 pc)^2, R from L = 4 pi R^2 sigma Teff^4: magnitudes written out
    here from the generator and magnitudes(), independently of the points code."""
    spec, _ = gen.spectra(np.asarray(stars["teff"]) * u.K, logg=stars["logg"], logz=stars["logz"])
    teff = np.asarray(stars["teff"]) * u.K
    radius = np.sqrt(np.asarray(stars["L"]) * u.L_sun / (4 * np.pi * sigma_sb * teff ** 4)).to(u.R_sun)
    return magnitudes(spec, BANDS, system="Vega", radius=radius, distance=10 * u.pc)


def test_points_table_from_csv_ecsv_fits(default_generator, tmp_path):
    """A CSV / ECSV (units) / FITS (logl) table of stars gives absolute magnitudes in this process; the
    Parquet + Dask path was the only one (a CSV was refused)."""
    Table(STARS).write(tmp_path / "stars.csv")
    t = points_magnitudes(tmp_path / "stars.csv", BANDS, "Vega", generator=default_generator)
    direct = _direct(default_generator, STARS)
    for band in BANDS:        # the star rule renormalises to L: within 0.02 mag of surface flux x R^2
        assert np.allclose(t[f"M_{band}"], direct[band], atol=0.02), band
    assert t["M_bessell-V"][0] == pytest.approx(4.81, abs=0.1)          # the Sun's M_V (Vega system)
    assert list(t["name"]) == STARS["name"] and t["inside"].all() and t.meta["system"] == "Vega"
    # ECSV with units (Teff in K, L in W) and FITS with logl: the same magnitudes
    ecsv = Table(STARS)
    ecsv["teff"].unit = u.K
    ecsv["L"] = (np.asarray(STARS["L"]) * u.L_sun).to(u.W)
    ecsv.write(tmp_path / "stars.ecsv")
    fits = Table(STARS)
    fits["logl"] = np.log10(fits["L"])
    del fits["L"], fits["name"]
    fits.write(tmp_path / "stars.fits")
    for path in ("stars.ecsv", "stars.fits"):
        other = points_magnitudes(tmp_path / path, BANDS, "Vega", generator=default_generator)
        assert np.allclose(other["M_bessell-V"], t["M_bessell-V"], rtol=0, atol=1e-9), path


def test_points_table_errors_name_the_columns(blackbody, tmp_path):
    no_logz = {k: v for k, v in STARS.items() if k != "logz"}
    with pytest.raises(ValueError, match=r"missing logz \(columns found: name, teff, logg, L\)"):
        points_magnitudes(Table(no_logz), BANDS, generator=blackbody)
    no_lum = {k: v for k, v in STARS.items() if k != "L"}
    with pytest.raises(ValueError, match="missing L or logl"):
        points_magnitudes(Table(no_lum), BANDS, generator=blackbody)
    bad = dict(STARS, teff=[5772.0, np.nan, 6530.0])
    with pytest.raises(ValueError, match="teff is not finite at row 1"):
        points_magnitudes(Table(bad), BANDS, generator=blackbody)
    with pytest.raises(ValueError, match=r"teff must be a temperature \(K\), got unit m"):
        t = Table(STARS)
        t["teff"].unit = u.m
        points_magnitudes(t, BANDS, generator=blackbody)
    with pytest.raises(ValueError, match=r"\.csv, \.ecsv, \.fits, \.fit.*Parquet"):
        points_magnitudes(tmp_path / "stars.xlsx", BANDS, generator=blackbody)


def test_points_columns_named_as_catalogues_do_get_a_rename_hint(blackbody):
    """'Teff', 'log_g', 'L[Lsun]' are refused (names are matched exactly) with the rename that would work."""
    named = Table({"Teff": STARS["teff"], "log_g": STARS["logg"], "logz": STARS["logz"],
                   "L[Lsun]": STARS["L"]})
    with pytest.raises(ValueError, match=r"rename 'Teff' to 'teff', 'log_g' to 'logg', 'L\[Lsun\]' to 'L'$"):
        points_magnitudes(named, BANDS, generator=blackbody)
    # no hint for a column that only looks alike
    alike = Table({k: STARS[k] for k in ("teff", "logg", "L")} | {"Logz2": STARS["logz"]})
    with pytest.raises(ValueError, match=r"\(columns found: teff, logg, L, Logz2\)$"):
        points_magnitudes(alike, BANDS, generator=blackbody)


def test_points_columns_read_by_the_generators_unit_rules(blackbody, tmp_path):
    """A column's unit is read as the generators read it (column_quantity, _teff_value, _logg_value,
    _log_value): a FITS TUNIT 'Lsun' / 'Kelvin' was refused ("The unit 'Lsun' is unrecognized") and a Teff in
    deg_C "does not convert to K": both give the plain table's magnitudes now; an angle 'deg' or an unknown
    unit is still a ValueError naming the column. A linear unit on a logl / logg column is refused (see
    test_points_linear_unit_on_a_log_column_is_refused)."""
    from astropy.io import fits
    ref = np.asarray(points_magnitudes(Table(STARS), BANDS, generator=blackbody)["M_bessell-V"])

    def mags(table):
        return np.asarray(points_magnitudes(table, BANDS, generator=blackbody)["M_bessell-V"])

    def fits_table(teff_unit, lum_unit, lum=STARS["L"]):
        cols = [fits.Column(name="teff", format="D", array=STARS["teff"], unit=teff_unit),
                fits.Column(name="logg", format="D", array=STARS["logg"], unit="dex"),
                fits.Column(name="logz", format="D", array=STARS["logz"]),
                fits.Column(name="L", format="D", array=lum, unit=lum_unit)]
        fits.BinTableHDU.from_columns(cols).writeto(tmp_path / "s.fits", overwrite=True)
        return tmp_path / "s.fits"

    for teff_unit, lum_unit in (("K", "Lsun"), ("Kelvin", "solLum"), ("K", "L_sun")):
        assert np.allclose(mags(fits_table(teff_unit, lum_unit)), ref, rtol=0, atol=1e-9), teff_unit
    erg = fits_table("K", "erg/s", (np.asarray(STARS["L"]) * u.L_sun).to_value(u.erg / u.s))
    assert np.allclose(mags(erg), ref, rtol=0, atol=1e-9)
    celsius = Table(STARS)
    celsius["teff"] = (np.asarray(STARS["teff"]) * u.K).to(u.deg_C, u.temperature())
    assert np.allclose(mags(celsius), ref, rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match=r"teff must be a temperature \(K\), got unit deg"):
        mags(fits_table("deg", "Lsun"))                              # FITS 'deg' is the angle
    with pytest.raises(ValueError, match=r"L: its column's unit 'Lsol' is not one astropy knows"):
        mags(fits_table("K", "Lsol"))
    log_in_l = Table(STARS)
    log_in_l["L"] = np.log10(STARS["L"]) * u.dex
    with pytest.raises(ValueError, match=r"'L' is in dex, which is not a luminosity.*column 'logl'"):
        mags(log_in_l)


def test_cli_points_csv_without_dask_or_pyarrow(tmp_path, capsys):
    """`smnet-sps mags --points stars.csv` runs with dask, distributed, zarr and pyarrow unimportable, and
    writes the input columns, the magnitudes and the colours (system in the meta)."""
    Table(STARS).write(tmp_path / "stars.csv")
    code = ("import sys\n"
            "for name in ('dask', 'distributed', 'zarr', 'pyarrow'):\n"
            "    sys.modules[name] = None\n"
            "from smnet_sps.cli import main\n"
            f"sys.exit(main(['mags', '--points', {str(tmp_path / 'stars.csv')!r}, '--filters', "
            f"{','.join(BANDS)!r}, '--colors', 'g-r,B-V', '--model', 'blackbody']))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    out = Table.read(tmp_path / "stars_mags.ecsv")
    assert out.meta["system"] == "AB" and out.meta["colors"]["B-V"] == "M_bessell-B - M_bessell-V"
    assert np.allclose(out["g-r"], out["M_sdss2010-g"].value - out["M_sdss2010-r"].value, atol=1e-12)
    assert "(AB)" in out["B-V"].description
    assert list(out["name"]) == STARS["name"] and len(out.colnames) == 5 + 4 + 1 + 2
    # the Dask options are refused for a CSV, as the SSP options are
    assert main(["mags", "--points", str(tmp_path / "stars.csv"), "--filters", "bessell-V", "--workers", "2",
                 "--out", str(tmp_path / "x.ecsv")]) != 0
    assert "--workers apply to Parquet --points tables" in capsys.readouterr().err


def test_cli_points_gzipped_and_text_tables_are_read_here_not_as_parquet(tmp_path, capsys):
    """`mags --points s.fits.gz / s.csv.gz / s.txt` went to the Parquet (Dask) path and failed with "Parquet
    magic bytes not found": only .parquet / .pq (or a folder) are Parquet now, gzipped CSV / ECSV / FITS and
    whitespace .txt / .dat tables are read in this process and give the CSV's magnitudes; another extension
    is a ValueError listing the accepted ones."""
    import gzip
    import shutil
    stars = Table(STARS)
    stars.write(tmp_path / "s.csv")
    stars.write(tmp_path / "s.ecsv")
    stars.write(tmp_path / "s.fits")
    stars.write(tmp_path / "s.txt", format="ascii")
    stars.write(tmp_path / "s.dat", format="ascii")
    for name in ("s.csv", "s.ecsv", "s.fits"):
        with open(tmp_path / name, "rb") as src, gzip.open(tmp_path / (name + ".gz"), "wb") as dst:
            shutil.copyfileobj(src, dst)
    ref = None
    for name in ("s.csv", "s.csv.gz", "s.ecsv.gz", "s.fits.gz", "s.txt", "s.dat"):
        out = tmp_path / f"{name.replace('.', '_')}_mags.ecsv"
        assert main(["mags", "--points", str(tmp_path / name), "--filters", "bessell-V,sdss2010-r",
                     "--model", "blackbody", "--out", str(out)]) == 0, capsys.readouterr().err
        t = Table.read(out)
        ref = t if ref is None else ref
        assert len(t) == 3 and np.allclose(t["M_bessell-V"], ref["M_bessell-V"], rtol=0, atol=1e-9), name
        assert list(t["teff"]) == STARS["teff"], name
    # the default output name drops the whole extension: s.fits.gz -> s_mags.ecsv
    assert main(["mags", "--points", str(tmp_path / "s.fits.gz"), "--filters", "bessell-V",
                 "--model", "blackbody"]) == 0
    assert (tmp_path / "s_mags.ecsv").is_file()
    (tmp_path / "s.xlsx").write_bytes(b"PK\x03\x04")
    assert main(["mags", "--points", str(tmp_path / "s.xlsx"), "--filters", "bessell-V",
                 "--model", "blackbody", "--out", str(tmp_path / "x.ecsv")]) != 0
    err = capsys.readouterr().err
    assert "Parquet magic bytes" not in err
    assert ".csv, .ecsv, .fits, .fit, .txt, .dat, .csv.gz, .ecsv.gz, .fits.gz" in err
    assert ".parquet, .pq" in err


def test_ssp_colors_column_and_unknown_band(blackbody, tmp_path):
    """colors= / --colors: g-r = M_g - M_r (and obs_g-r at z > 0), a band not among the filters a ValueError
    naming those available. The table had no colour column."""
    t = ssp_magnitudes([1e9, 1e10] * u.yr, 0.0152, ["sdss2010-g", "sdss2010-r"], generator=blackbody,
                       colors="g-r", redshift=0.1)
    assert np.allclose(t["g-r"], t["M_sdss2010-g"].value - t["M_sdss2010-r"].value, atol=1e-12)
    assert np.allclose(t["obs_g-r"], t["m_obs_sdss2010-g"].value - t["m_obs_sdss2010-r"].value, atol=1e-12)
    assert 0.2 < t["g-r"][0] < t["g-r"][1] < 1.2                    # older is redder
    with pytest.raises(ValueError, match="no band 'B'.*bands available: g, r, sdss2010-g, sdss2010-r"):
        ssp_magnitudes([1e9] * u.yr, 0.0152, ["sdss2010-g", "sdss2010-r"], generator=blackbody, colors="B-V")
    out = tmp_path / "ssp.fits"
    assert main(["mags", "--Z", "0.0152", "--ages", "1Gyr", "10Gyr", "--filters", "sdss2010-g,sdss2010-r",
                 "--colors", "sdss2010-g-sdss2010-r", "--model", "blackbody", "--out", str(out)]) == 0
    back = Table.read(out)
    assert np.allclose(back["sdss2010-g-sdss2010-r"], np.asarray(t["g-r"]), atol=1e-9)


def test_cli_points_parq_goes_to_the_parquet_path(tmp_path, capsys):
    """'.parq' (fastparquet's extension) went to Dask before the in-process tables came, then was refused as
    an unknown table format; it is Parquet again (here: a missing file, named by the Parquet reader)."""
    from smnet_sps.cli import main
    assert main(["mags", "--points", str(tmp_path / "stars.parq"), "--filters", "sdss2010-r"]) == 1
    err = capsys.readouterr().err
    assert "stars.parq" in err and "a table of stars is read from" not in err


def test_points_magnitude_units_are_those_of_every_magnitude_table(blackbody, tmp_path):
    """`mags --points` writes the magnitude units of magnitudes() and the SSP tables (MAG_UNITS): mag(AB),
    mag(ST), and a plain mag for Vega, whose system the meta and each column's description name."""
    from smnet_sps.photometry import MAG_UNITS
    Table(STARS).write(tmp_path / "stars.csv")
    spec, _ = blackbody.spectra(np.asarray(STARS["teff"]) * u.K, logg=STARS["logg"], logz=STARS["logz"])
    for system in ("AB", "ST", "Vega"):
        out = tmp_path / f"{system}.ecsv"
        assert main(["mags", "--points", str(tmp_path / "stars.csv"), "--filters", "bessell-V", "--system",
                     system, "--model", "blackbody", "--out", str(out)]) == 0
        back = Table.read(out)
        assert back["M_bessell-V"].unit == MAG_UNITS[system] == magnitudes(spec, ["bessell-V"],
                                                                            system=system)["bessell-V"].unit
        assert back.meta["system"] == system
        assert f"absolute {system} magnitude" in back["M_bessell-V"].description


def test_points_csv_with_comment_lines(blackbody, tmp_path):
    """A CSV whose first lines are '#' comments (a title, the columns' units) was refused by astropy's CSV
    reader ("Number of header columns (2) inconsistent with data columns in data line 0"), gzipped too; its
    '#' lines are comments now, as in the .txt / .dat tables, and the stars give the plain table's
    magnitudes."""
    import gzip
    ref = points_magnitudes(Table(STARS), BANDS, generator=blackbody)
    lines = ["# my sample: Sun, Arcturus, Procyon", "# columns: name, teff [K], logg, logz, L [Lsun]",
             "name,teff,logg,logz,L"]
    lines += [",".join(str(STARS[c][i]) for c in STARS) for i in range(3)]
    (tmp_path / "s.csv").write_text("\n".join(lines) + "\n")
    with gzip.open(tmp_path / "s.csv.gz", "wt") as f:
        f.write("\n".join(lines) + "\n")
    for name in ("s.csv", "s.csv.gz"):
        t = points_magnitudes(tmp_path / name, BANDS, generator=blackbody)
        assert list(t["name"]) == STARS["name"], name
        assert np.allclose(t["M_bessell-V"], ref["M_bessell-V"], rtol=0, atol=1e-9), name


def test_points_text_cells_name_their_column_and_row(blackbody, tmp_path):
    """A text cell ('n/a', '--') in a numeric column was "could not convert string to float: np.str_('n/a')",
    naming neither the column nor the row; now a ValueError names both, an empty cell is the row check's
    (row named, plain nan), a boolean column is refused and numbers written as text are read."""
    lines = ["teff,logg,logz,L", "5772,4.44,0.0,1.0", "4286,1.66,-0.52,n/a", "6530,4.0,-0.02,--"]
    (tmp_path / "s.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"points column 'L' must hold numbers; row 1 is 'n/a' \(2 such row"):
        points_magnitudes(tmp_path / "s.csv", BANDS, generator=blackbody)
    (tmp_path / "e.csv").write_text("\n".join(lines[:2] + ["4286,1.66,-0.52,"]) + "\n")
    with pytest.raises(ValueError, match=r"row 1 has L = nan$"):
        points_magnitudes(tmp_path / "e.csv", BANDS, generator=blackbody)
    with pytest.raises(ValueError, match="points column 'teff' holds booleans"):
        points_magnitudes(Table(dict(STARS, teff=[True, True, False])), BANDS, generator=blackbody)
    as_text = points_magnitudes(Table(dict(STARS, teff=[str(t) for t in STARS["teff"]])), BANDS,
                                generator=blackbody)
    ref = points_magnitudes(Table(STARS), BANDS, generator=blackbody)
    assert np.allclose(as_text["M_bessell-V"], ref["M_bessell-V"], rtol=0, atol=1e-9)


def test_points_from_a_pandas_dataframe(blackbody):
    """points_magnitudes documents a pandas DataFrame, but Table() refuses one ("Data type <class
    'pandas.DataFrame'> not allowed to init Table"): it is read with Table.from_pandas now and gives the
    Table's magnitudes, its other columns kept; a duplicated column name is a ValueError naming it."""
    pd = pytest.importorskip("pandas")
    ref = points_magnitudes(Table(STARS), BANDS, generator=blackbody)
    t = points_magnitudes(pd.DataFrame(STARS), BANDS, generator=blackbody)
    assert list(t["name"]) == STARS["name"]
    assert np.allclose(t["M_bessell-V"], ref["M_bessell-V"], rtol=0, atol=1e-9)
    frame = pd.DataFrame([[5772.0, 4.44, 0.0, 1.0, 2.0]], columns=["teff", "logg", "logz", "L", "L"])
    with pytest.raises(ValueError, match="more than one column named 'L'"):
        points_magnitudes(frame, BANDS, generator=blackbody)


def _fits_stars(path, units, lum="L"):
    """STARS as a FITS table written by astropy with the TUNIT strings ``units`` (column -> text); ``lum``:
    'L' [L_sun] or 'logl' (log10 L/L_sun)."""
    from astropy.io import fits
    values = dict(STARS, logl=np.log10(STARS["L"]))
    cols = [fits.Column(name=c, format="D", array=values[c], unit=units.get(c))
            for c in ("teff", "logg", "logz", lum)]
    fits.BinTableHDU.from_columns(cols).writeto(path, overwrite=True)
    return path


def test_points_catalogue_log_units_gaia_and_vizier(blackbody, tmp_path):
    """FITS tables of stars as catalogues write them: Gaia DR3 (logg 'log(cm.s**-2)', [M/H] 'dex', L 'solLum')
    and VizieR (CDS brackets '[cm/s2]', '[Sun]', '[-]', '[Lsun]') or 'log(L/Lsun)', '[M/H]'. These units were
    ignored on logg / logz / logl until the columns were read by the generators' unit rules, which refused
    them ("its column's unit 'log(cm.s**-2)' is not one astropy knows"); they are read as the log of their
    unit now: the plain table's magnitudes. A unit no convention reads ('[cgs]') is taken as the log, as
    before, with a UnitsWarning naming it."""
    ref = np.asarray(points_magnitudes(Table(STARS), BANDS, generator=blackbody)["M_bessell-V"])
    tables = {"gaia": ({"teff": "K", "logg": "log(cm.s**-2)", "logz": "dex", "L": "solLum"}, "L"),
              "vizier": ({"teff": "K", "logg": "[cm/s2]", "logz": "[Sun]", "logl": "[Lsun]"}, "logl"),
              "vizier2": ({"logg": "[cm/s2]", "logz": "[-]", "logl": "log(L/Lsun)"}, "logl"),
              "labels": ({"logg": "dex", "logz": "[M/H]", "logl": "[solLum]"}, "logl")}
    for name, (units, lum) in tables.items():
        path = _fits_stars(tmp_path / f"{name}.fits", units, lum)
        t = points_magnitudes(path, BANDS, generator=blackbody)
        assert np.allclose(t["M_bessell-V"], ref, rtol=0, atol=1e-9), name
    cgs = _fits_stars(tmp_path / "cgs.fits", {"logg": "[cgs]"})
    with pytest.warns(u.UnitsWarning, match=r"'logg': its unit '\[cgs\]' is not one.*taken as the log"):
        t = points_magnitudes(cgs, BANDS, generator=blackbody)
    assert np.allclose(t["M_bessell-V"], ref, rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match=r"logg must be log10\(g / cm s\^-2\).*got unit K"):   # linear K
        points_magnitudes(_fits_stars(tmp_path / "k.fits", {"logg": "K"}), BANDS, generator=blackbody)


@pytest.mark.parametrize("units, lum, why", [
    ({"logg": "log(g)"}, "L", r"'logg': its unit 'log\(g\)' is the log of g \(mass\), not of an accel"),
    ({"logg": "[g]"}, "L", r"'logg': its unit '\[g\]' is the log of g \(mass\)"),
    ({"logl": "log(L)"}, "logl", r"'logl': its unit 'log\(L\)' is the log of l \(volume\), not of a lumin"),
    ({"logl": "[L]"}, "logl", r"'logl': its unit '\[L\]' is the log of l \(volume\)"),
    ({"logl": "[Sun]"}, "logl", None), ({"logl": "log(Lsun)"}, "logl", None)])
def test_points_log_unit_naming_the_quantity_is_the_log(blackbody, tmp_path, units, lum, why):
    """'log(g)' / '[g]' on logg and 'log(L)' / '[L]' on logl name the quantity, but astropy reads g as grams
    and L as litres: they were refused ("must be in dex of an acceleration ..., got dex(g)"; at 7eded53 read
    as the log), as was '[Sun]' on logl, which the docs list (VizieR's log L/L_sun). A log form of a unit of
    another kind is taken as the log now, with a UnitsWarning saying what was read; '[Sun]' on logl is
    dex(L_sun), silently: the plain table's magnitudes either way."""
    ref = np.asarray(points_magnitudes(Table(STARS), BANDS, generator=blackbody)["M_bessell-V"])
    path = _fits_stars(tmp_path / "s.fits", dict({"teff": "K"}, **units), lum)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = points_magnitudes(path, BANDS, generator=blackbody)
    said = [str(w.message) for w in caught if issubclass(w.category, u.UnitsWarning)]
    if why is None:
        assert not said
    else:
        assert len(said) == 1 and re.search(why, said[0]) and "taken as the log" in said[0], said
    assert np.allclose(t["M_bessell-V"], ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("units, lum, why", [
    ({"logg": "[K]"}, "L", r"logg as a logarithmic quantity must be in dex of an acceleration.*got dex\(K\)"),
    ({"logg": "[Sun]"}, "L", r"logg as a logarithmic quantity must be in dex of an acceleration.*dex\(Sun\)"),
    ({"logz": "[K]"}, "L", r"logz \(\[M/H\]\) must be a number in dex.*got unit dex\(K\)"),
    ({"logl": "log(g)"}, "logl", r"logl must be log10\(L / L_sun\).*got unit dex\(g\)"),
    ({"logg": "log(L)"}, "L", r"logg as a logarithmic quantity must be in dex of an acceleration.*dex\(l\)")])
def test_points_log_of_another_unit_is_refused(blackbody, tmp_path, units, lum, why):
    """The "taken as the log" fallback is for the quantity's own symbol read as another unit ('g' on logg,
    'L' on logl): '[K]' on logg or logz and '[Sun]' on logg ("the log of Sun (unknown)") were taken as the log
    with only a UnitsWarning, where they had been refused naming the unit the column needs. Refused again."""
    path = _fits_stars(tmp_path / "s.fits", dict({"teff": "K"}, **units), lum)
    with pytest.raises(ValueError, match=why):
        points_magnitudes(path, BANDS, generator=blackbody)


def test_points_linear_unit_on_a_log_column_is_refused(blackbody, tmp_path):
    """A logl column with a linear luminosity unit (FITS TUNIT 'Lsun') was log10'ed: a log L of 1.5 became
    log L = 0.18, 3.3 mag too faint, silently. 1.5 L_sun and log L = 1.5 cannot be told apart, so the column
    is refused, pointing to an L column or a dex(L_sun) unit; likewise an acceleration on logg. The
    catalogue log forms ('[Lsun]', test above) and the L column's linear units still read."""
    with pytest.raises(ValueError, match=r"'logl' is in solLum, a linear lum.*column 'L'.*dex\(L_sun\)"):
        points_magnitudes(_fits_stars(tmp_path / "l.fits", {"logl": "Lsun"}, "logl"), BANDS,
                          generator=blackbody)
    linear = Table(dict(STARS, logl=np.asarray(STARS["L"]) * u.L_sun))
    del linear["L"]
    with pytest.raises(ValueError, match=r"'logl' is in solLum, a linear luminosity"):
        points_magnitudes(linear, BANDS, generator=blackbody)
    accel = Table(STARS)
    accel["logg"] = 10 ** np.asarray(STARS["logg"]) * u.cm / u.s ** 2
    with pytest.raises(ValueError, match=r"'logg' is in cm / s2, a linear acceleration.*dex\(cm / s2\)"):
        points_magnitudes(accel, BANDS, generator=blackbody)
    ref = np.asarray(points_magnitudes(Table(STARS), BANDS, generator=blackbody)["M_bessell-V"])
    erg = Table(STARS)
    erg["L"] = (np.asarray(STARS["L"]) * u.L_sun).to(u.erg / u.s)
    assert np.allclose(points_magnitudes(erg, BANDS, generator=blackbody)["M_bessell-V"], ref, rtol=0,
                       atol=1e-9)


def test_points_csv_hash_lines_after_the_header(blackbody, tmp_path):
    """A CSV's '#' lines after the header: a commented-out row '#6000,4.3,0,1.5', a note '# cluster B'
    between rows and a trailing '# end of table' were read as rows and the table refused ("points column
    'teff' must hold numbers; row 1 is '#6000'"); comment="#" (7eded53) dropped them, and ids '#1,#2,#3' too
    (a table of 0 rows, no error). Now a '#' line is skipped with a warning that counts them and names the
    first, unless it reads as a row (an id '#1', numbers in the points columns); a quoted '#' value is
    data."""
    ref = points_magnitudes(Table(STARS), BANDS, generator=blackbody)
    cols = ("teff", "logg", "logz", "L")
    plain = [",".join(str(STARS[c][i]) for c in cols) for i in range(3)]
    lines = ["# three stars", ",".join(cols), plain[0], "#6000,4.3,0,1.5", plain[1], "# cluster B", plain[2],
             "# end of table"]
    (tmp_path / "commented.csv").write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match=r"3 line\(s\) after the header begin with '#' \(line 4 first\): "
                      r"read as comments and skipped; quote the value if it is data"):
        t = points_magnitudes(tmp_path / "commented.csv", BANDS, generator=blackbody)
    assert len(t) == 3 and list(t["teff"]) == STARS["teff"] and t.meta["comments"] == ["three stars"]
    assert np.allclose(t["M_bessell-V"], ref["M_bessell-V"], rtol=0, atol=1e-9)
    # ids '#1' in an 'id' column (not a points column) are rows, as is a quoted one; a note still skipped
    header = ["# three stars", "id," + ",".join(cols)]
    rows = [f"#{i + 1},{plain[i]}" for i in range(3)]
    (tmp_path / "ids.csv").write_text("\n".join(header + rows) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = points_magnitudes(tmp_path / "ids.csv", BANDS, generator=blackbody)
    said = [str(w.message) for w in caught if "'#'" in str(w.message)]
    assert len(said) == 1 and "3 lines begin with '#' but read as stars (line 3 first): kept" in said[0], said
    assert list(t["id"]) == ["#1", "#2", "#3"] and t.meta["comments"] == ["three stars"]
    assert np.allclose(t["M_bessell-V"], ref["M_bessell-V"], rtol=0, atol=1e-9)
    (tmp_path / "note.csv").write_text("\n".join(header + [f'"#1",{plain[0]}', "# giants, a, b, c, d"]
                                                 + rows[1:] + ["# a, b, c, d, e, f"]) + "\n")
    with pytest.warns(UserWarning, match=r"2 line\(s\) after the header begin with '#' \(line 4 first\)"), \
            pytest.warns(UserWarning, match=r"2 lines begin with '#' but read as stars \(line 5 first\)"):
        t = points_magnitudes(tmp_path / "note.csv", BANDS, generator=blackbody)
    assert list(t["id"]) == ["#1", "#2", "#3"]
    assert np.allclose(t["M_bessell-V"], ref["M_bessell-V"], rtol=0, atol=1e-9)


def test_points_csv_hash_lines_under_a_name_column(blackbody, tmp_path):
    """With a name column first (the docs' stars.csv layout) a commented-out star '#Vega,9600,4.0,-0.5,40'
    was kept as a star without a word, and a spreadsheet's note '# cluster B,,,,' (empty points cells, as
    missing values are allowed) was a row: the table refused, "teff is not finite at row 0". A '#' line
    whose points cells are all empty is skipped with the counted warning; one kept as a star is said."""
    ref = points_magnitudes(Table(STARS), BANDS, generator=blackbody)
    cols = ("name", "teff", "logg", "logz", "L")
    rows = [",".join(str(STARS[c][i]) for c in cols) for i in range(3)]
    (tmp_path / "note.csv").write_text("\n".join([",".join(cols), "# cluster B,,,,", *rows]) + "\n")
    with pytest.warns(UserWarning, match=r"1 line\(s\) after the header begin with '#' \(line 2 first\): "
                      r"read as comments and skipped"):
        t = points_magnitudes(tmp_path / "note.csv", BANDS, generator=blackbody)
    assert list(t["name"]) == STARS["name"]
    assert np.allclose(t["M_bessell-V"], ref["M_bessell-V"], rtol=0, atol=1e-9)
    (tmp_path / "vega.csv").write_text("\n".join([",".join(cols), *rows, "#Vega,9600,4.0,-0.5,40"]) + "\n")
    with pytest.warns(UserWarning, match=r"line 5 begins with '#' but reads as a star: kept; delete it to "
                      r"skip it"):
        t = points_magnitudes(tmp_path / "vega.csv", BANDS, generator=blackbody)
    assert list(t["name"]) == [*STARS["name"], "#Vega"] and list(t["teff"]) == [*STARS["teff"], 9600.0]
    assert np.allclose(t["M_bessell-V"][:3], ref["M_bessell-V"], rtol=0, atol=1e-9)


def test_points_empty_cells_of_a_text_column_are_missing_values(blackbody, tmp_path):
    """An empty cell of a column made text by another cell was filled with "nan" cut to the column's width:
    'na' in a 2-character column, so the empty (allowed) cell was blamed ("row 1 is 'na'") before the real
    text cell. Only unmasked cells are checked now; an empty one is NaN for the row check."""
    lines = ["teff,logg,logz,L", "5772,4.44,0.0,1", "4286,1.66,-0.52,", "6530,4.0,-0.02,xy"]
    (tmp_path / "s.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"'L' must hold numbers; row 2 is 'xy' \(1 such row"):
        points_magnitudes(tmp_path / "s.csv", BANDS, generator=blackbody)
    text = Table(STARS)
    text["L"] = MaskedColumn(["1", "9", "7"], mask=[False, True, False])        # numbers as 1-character text
    with pytest.raises(ValueError, match=r"row 1 has L = nan$"):
        points_magnitudes(text, BANDS, generator=blackbody)
    text["L"].mask[1] = False
    ok = points_magnitudes(text, BANDS, generator=blackbody)
    assert np.allclose(ok["M_bessell-V"], points_magnitudes(Table(dict(STARS, L=[1.0, 9.0, 7.0])), BANDS,
                                                            generator=blackbody)["M_bessell-V"], rtol=0,
                       atol=1e-9)


def test_points_commented_header_line(blackbody, tmp_path):
    """A header line that is itself commented, '#teff,logg,logz,L' (CSV) or '# teff logg logz L' after a
    title line (.txt / .dat), was read with the first star as the header ("missing teff, ... (columns found:
    5772.0, 4.44, ...)") or as columns col1..col4; the last '#' line before the data is the header when it
    names the points columns and the first line reads as a star under it. Nothing else is guessed: a
    commented 'Teff' header is not taken."""
    ref = points_magnitudes(Table(STARS), BANDS, generator=blackbody)
    cols = ("teff", "logg", "logz", "L")
    rows = [[str(STARS[c][i]) for c in cols] for i in range(3)]
    (tmp_path / "s.csv").write_text("\n".join(["#" + ",".join(cols)] + [",".join(r) for r in rows]) + "\n")
    (tmp_path / "s.dat").write_text("\n".join(["# three stars", "# " + " ".join(cols)]
                                              + [" ".join(r) for r in rows]) + "\n")
    named = [f"{STARS['name'][i]},{','.join(r)}" for i, r in enumerate(rows)]
    (tmp_path / "n.csv").write_text("\n".join(["# three stars", "# name, " + ", ".join(cols)] + named) + "\n")
    for name in ("s.csv", "s.dat", "n.csv"):
        t = points_magnitudes(tmp_path / name, BANDS, generator=blackbody)
        assert list(t["teff"]) == STARS["teff"], name
        assert np.allclose(t["M_bessell-V"], ref["M_bessell-V"], rtol=0, atol=1e-9), name
    assert t.meta["comments"] == ["three stars"] and list(t["name"]) == STARS["name"]
    # a commented header but for its names: not taken, the line and the renames named (a review found the
    # star's numbers listed as the columns found, or col1..col4)
    (tmp_path / "upper.txt").write_text("\n".join(["# title", "# Teff logg logz L"]
                                                  + [" ".join(r) for r in rows]) + "\n")
    (tmp_path / "upper.csv").write_text("\n".join(["#Teff,logg,logz,L"] + [",".join(r) for r in rows]) + "\n")
    for name, line in (("upper.txt", 2), ("upper.csv", 1)):
        with pytest.raises(ValueError,
                           match=rf"line {line}, .*reads as a commented header .*rename 'Teff' to 'teff'$"):
            points_magnitudes(tmp_path / name, BANDS, generator=blackbody)


def test_points_tab_separated_text_table(blackbody, tmp_path):
    """A tab-separated .txt (a spreadsheet's "Text (Tab delimited)" export) with a blank inside a name, an
    empty cell and '#' ids read at 7eded53; the '#' rule's re-read split it by blanks too ('Alpha Cen' two
    cells) and failed ("Unable to guess table format"). Tabs alone separate it now."""
    cols = ("teff", "logg", "logz", "L")
    head = "\t".join(("name", *cols, "note"))
    rows = [["Alpha Cen", "5790", "4.3", "0.2", "1.5", ""], ["#Vega", "9600", "4.0", "-0.5", "40", "A0 V"],
            ["#2", "6000", "", "0", "1.5", ""]]
    (tmp_path / "tabs.txt").write_text("\n".join([head, *("\t".join(r) for r in rows)]) + "\n")
    with pytest.warns(UserWarning, match=r"2 lines begin with '#' but read as stars \(line 3 first\)"):
        with pytest.raises(ValueError, match="logg is not finite at row 2"):     # the empty cell, named
            points_magnitudes(tmp_path / "tabs.txt", BANDS, generator=blackbody)
    rows[2][2] = "4.3"
    (tmp_path / "tabs.txt").write_text("\n".join([head, *("\t".join(r) for r in rows)]) + "\n")
    with pytest.warns(UserWarning, match="read as stars"):
        t = points_magnitudes(tmp_path / "tabs.txt", BANDS, generator=blackbody)
    assert list(t["name"]) == ["Alpha Cen", "#Vega", "#2"] and list(t["teff"]) == [5790, 9600, 6000]


def test_points_text_table_hash_lines_after_the_header(blackbody, tmp_path):
    """In a .txt / .dat table astropy dropped the '#' lines after the header without a word: a commented-out
    star, and ids '#1', '#2', '#3' too (a table of 0 rows). They are the CSV's now: comments skipped with the
    counted warning, a '#' line that reads as a star kept with a warning."""
    ref = points_magnitudes(Table(STARS), BANDS, generator=blackbody)
    cols = ("teff", "logg", "logz", "L")
    plain = [" ".join(str(STARS[c][i]) for c in cols) for i in range(3)]
    lines = ["# three stars", " ".join(cols), plain[0], "# 6000 4.3 0 1.5", plain[1], "# cluster B", plain[2]]
    (tmp_path / "commented.txt").write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match=r"2 line\(s\) after the header begin with '#' \(line 4 first\): "
                      r"read as comments and skipped"):
        t = points_magnitudes(tmp_path / "commented.txt", BANDS, generator=blackbody)
    assert list(t["teff"]) == STARS["teff"]
    assert np.allclose(t["M_bessell-V"], ref["M_bessell-V"], rtol=0, atol=1e-9)
    rows = [f"#{i + 1} {plain[i]}" for i in range(3)]
    (tmp_path / "ids.dat").write_text("\n".join(["id " + " ".join(cols), rows[0], "# cluster B", *rows[1:]])
                                      + "\n")
    with pytest.warns(UserWarning, match=r"1 line\(s\) after the header begin with '#' \(line 3 first\)"), \
            pytest.warns(UserWarning, match=r"3 lines begin with '#' but read as stars \(line 2 first\)"):
        t = points_magnitudes(tmp_path / "ids.dat", BANDS, generator=blackbody)
    assert list(t["id"]) == ["#1", "#2", "#3"]
    assert np.allclose(t["M_bessell-V"], ref["M_bessell-V"], rtol=0, atol=1e-9)


def test_points_luminosity_outside_the_backends_range_is_refused(blackbody):
    """L values put in a logl column (150 for a giant of 150 L_sun) were taken as 10^150 L_sun: M_V of
    -369 mag flagged inside, where the backend refuses the same star (logl outside -10 .. 10); a logl past
    308 overflowed to inf and the message blamed 'L = inf' after a RuntimeWarning. The star tables (and the
    Dask path's blocks, stars_block) now refuse L outside 1e-10 .. 1e10 L_sun, naming the row."""
    from smnet_sps.backend import StellarLibraryBackend
    from smnet_sps.star_tables import stars_block
    as_logl = Table({k: v for k, v in STARS.items() if k != "L"} | {"logl": [1.0, 150.0, 6.93]})
    with pytest.raises(ValueError, match=r"L = 1e\+150 L_sun at row 1 is outside 1e-10 \.\. 1e\+10 L_sun.*"
                                         r"column 'logl'"):
        points_magnitudes(as_logl, BANDS, generator=blackbody)
    with pytest.raises(ValueError, match=r"logl = 150 .* is outside -10 \.\. 10"):     # the backend's rule
        StellarLibraryBackend(blackbody).point_spectra(teff=STARS["teff"], logg=STARS["logg"],
                                                       logz=STARS["logz"], logl=as_logl["logl"])
    as_logl["logl"][2] = 400.0                                 # 10**400: inf, no overflow warning
    as_logl["logl"][1] = 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(ValueError, match=r"L = inf L_sun at row 2 is outside"):
            points_magnitudes(as_logl, BANDS, generator=blackbody)
    for lum, row in (([1.0, 1e11, 6.93], 1), ([1.0, 170.0, 1e-12], 2)):
        with pytest.raises(ValueError, match=rf"at row {row} is outside"):
            points_magnitudes(Table(dict(STARS, L=lum)), BANDS, generator=blackbody)
    block = np.column_stack([STARS["teff"], STARS["logg"], STARS["logz"], [1.0, 170.0, 1e30]])
    with pytest.raises(ValueError, match=r"L = 1e\+30 L_sun at row 1002 is outside"):      # a Dask chunk's
        stars_block(block, blackbody, "magnitudes", tuple(BANDS), "AB", None, 10, "f8", offset=1000)
    # the edges of the range are stars
    edge = points_magnitudes(Table(dict(STARS, L=[1e-10, 170.0, 1e10])), BANDS, generator=blackbody)
    assert np.isfinite(edge["M_bessell-V"]).all()
