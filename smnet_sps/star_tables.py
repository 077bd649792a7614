"""Stars of a user's table (Teff, log g, [M/H], L) -> absolute magnitudes, in this process.

:func:`points_magnitudes` takes an astropy Table (or a CSV / ECSV / FITS file, a dict of columns, a pandas
DataFrame) and gives each star's magnitudes by the SSP backend's per-star rule (docs/CONTRACTS.md, star:
L_lambda = L f F_lambda / integral(F_lambda), a blackbody for an extrapolation more than 2x off its target,
flagged outside). :func:`stars_block` is that work for one block of rows; :mod:`smnet_sps.distributed` runs
the same function as one Dask task per chunk for Parquet catalogues of 10^8-10^9 stars.
"""
from __future__ import annotations

import csv
import io
import re
import warnings
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.table import Column, Table

from .backend import STATUS, _log_value, _trapz_weights, star_rule
from .constants import L_SUN, LLAM_UNIT, LOGL_DOMAIN
from .generator import (_check_count, _logg_value, _logz_value, _quiet_coverage, _teff_value, column_quantity,
                        validate_parameters)
from .output_files import provenance, suffix_of
from .filters import resolve_filters
from .photometry import MAG_UNITS, _system, add_colors, magnitudes, parse_colors
from .progress import want_progress

__all__ = ["points_magnitudes", "read_points_table", "check_points_columns", "stars_block",
           "POINTS_TABLE_FORMATS", "PARQUET_SUFFIXES"]

#: formats of a table of stars read in this process (``points_magnitudes``, ``smnet-sps mags --points``),
#: gzipped too (astropy reads it); .txt / .dat: whitespace-separated columns (astropy's "ascii" guesses the
#: header). Parquet (:data:`PARQUET_SUFFIXES`, or a folder of them) goes through Dask
#: (smnet_sps.distributed.write_points)
POINTS_TABLE_FORMATS = {".csv": "ascii.csv", ".ecsv": "ascii.ecsv", ".fits": "fits", ".fit": "fits",
                        ".txt": "ascii", ".dat": "ascii", ".csv.gz": "ascii.csv", ".ecsv.gz": "ascii.ecsv",
                        ".fits.gz": "fits", ".fit.gz": "fits", ".txt.gz": "ascii", ".dat.gz": "ascii"}
#: a --points file with one of these extensions (or a folder) is Parquet, read chunk by chunk through Dask
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")   # .parq: fastparquet's
#: the columns of a table of stars, as smnet_sps.distributed.points_array reads them
POINTS_COLUMNS_DOC = ("teff [K], logg [log10 cm s^-2], logz ([M/H], dex) and L [L_sun] or logl "
                      "[log10 L/L_sun] (one of them)")


def read_points_table(path):
    """A table of stars from a CSV, ECSV, FITS or whitespace-separated text file, gzipped or not
    (``astropy.table.Table.read``; the format from the extension, :data:`POINTS_TABLE_FORMATS`); in a CSV or
    text table, the lines that begin with '#' are comments, after the header with a warning unless they read
    as a row (an id '#1', kept with a warning; :func:`_hash_lines`), and a commented header line ('#teff,logg,
    logz,L', '# teff logg logz L') is the header where the table lacks the points columns without it
    (:func:`_commented_header`)."""
    path = Path(path)
    fmt = POINTS_TABLE_FORMATS.get(suffix_of(path))
    if fmt is None:
        raise ValueError(f"a table of stars is read from {', '.join(POINTS_TABLE_FORMATS)} (in this process) "
                         f"or Parquet ({', '.join(PARQUET_SUFFIXES)}, or a folder of them, through Dask); "
                         f"got {str(path)!r}")
    if not path.is_file():
        raise FileNotFoundError(f"points table not found: {path}")
    if fmt == "ascii.csv":
        return _read_csv(path)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=u.UnitsWarning)   # a FITS unit astropy does not parse
        table = Table.read(path, format=fmt)
    return _read_whitespace(path, table) if fmt == "ascii" else table


def _text_lines(path):
    """The lines of a text table (gzipped too: decompressed as Table.read does), with their ends."""
    from astropy.utils.data import get_readable_fileobj
    with get_readable_fileobj(str(path)) as f:
        return f.read().splitlines(keepends=True)


def _first_data_line(lines):
    """The index of the first line that is neither blank nor a '#' comment (len(lines) if none)."""
    start = 0
    while start < len(lines) and (not lines[start].strip() or lines[start].lstrip().startswith("#")):
        start += 1
    return start


def _csv_cells(line):
    return next(csv.reader([line]), [])


def _tab_cells(line):
    """A line of a tab-separated table (a spreadsheet's "Text (Tab delimited)" export): a cell may hold
    blanks, two tabs in a row are an empty cell."""
    return next(csv.reader([line.rstrip("\r\n")], delimiter="\t"), [])


def _whitespace_cells(line):
    """A line of a whitespace-separated table split as astropy's basic reader does (blanks and tabs
    separate, '"a b"' is one cell)."""
    return next(csv.reader([line.replace("\t", " ").strip()], delimiter=" ", skipinitialspace=True), [])


def _join_cells(cells, delimiter):
    """One line of a table with ``cells`` separated by ``delimiter``, quoted where needed."""
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerow(cells)
    return out.getvalue()


def _has_points_columns(cols):
    """Whether ``cols`` hold teff, logg, logz and L or logl (:data:`POINTS_COLUMNS_DOC`)."""
    return {"teff", "logg", "logz"} <= set(cols) and ("L" in cols or "logl" in cols)


def _commented_header(lines, start, columns, split):
    """(index, names) of a commented header line, or None. A table whose header line is itself commented
    ('#teff,logg,logz,L', '# teff logg logz L') was read with its first data row as the header (CSV: "missing
    ... (columns found: 5772, 4.44, ...)") or with columns col1, col2, ... (a text table whose '#' title line
    came first). The LAST '#' line before the data (``lines[start]``) is the header when the table as read
    (``columns``) lacks the points columns, the line splits (``split``: the file's delimiter) into as many
    names as the first data line has cells, those names include the points columns and the first data line
    reads as a row under them (numbers in the points columns, :func:`_hash_line_is_row`); nothing else is
    guessed."""
    if start >= len(lines) or _has_points_columns(columns):
        return None
    notes = [i for i in range(start) if lines[i].lstrip().startswith("#")]
    if not notes:
        return None
    names = [c.strip() for c in split(lines[notes[-1]].lstrip()[1:])]
    cells = split(lines[start])
    if len(names) != len(cells):
        return None
    renamed = [_renames(names).get(name, name) for name in names]
    if not _has_points_columns(names) and _has_points_columns(renamed) and _hash_line_is_row(cells, renamed):
        # '#Teff,logg,logz,L': a commented header but for its names; read with the first star as the header,
        # the error listed the star's numbers as the columns found
        raise ValueError(f"points table: line {notes[-1] + 1}, {lines[notes[-1]].strip()!r}, reads as a "
                         f"commented header whose names are not the points columns {POINTS_COLUMNS_DOC} "
                         f"(names are matched exactly); rename {', '.join(_rename_hints(names))}")
    if not _has_points_columns(names) or not _hash_line_is_row(cells, names):
        return None
    return notes[-1], names


def _hash_lines(path, lines, first, header, split):
    """``lines[first:]``, the lines after a text table's header, less the '#' lines that are comments: a line
    whose first cell begins with '#' (a commented-out row '#6000,4.3,0,1.5', a note '# cluster B' or
    '# cluster B,,,,') is skipped with a warning that counts them, unless it reads as a row
    (:func:`_hash_line_is_row`: an id '#1' or a name '#Vega' in a column that is not a points column,
    numbers in the points columns, not all empty), kept with a warning too. ``split``: a line -> its cells,
    by the file's delimiter. Returns the kept lines and whether a '#' line was kept as a star."""
    kept, skipped, stars = [], [], []
    for number, line in enumerate(lines[first:], first + 1):          # 1-based line numbers
        if line.lstrip().startswith("#"):
            if not _hash_line_is_row(split(line), header):
                skipped.append(number)
                continue
            stars.append(number)
        kept.append(line)
    if skipped:
        warnings.warn(f"{path}: {len(skipped)} line(s) after the header begin with '#' (line {skipped[0]} "
                      "first): read as comments and skipped; quote the value if it is data", UserWarning,
                      stacklevel=4)
    if stars:
        # a commented-out star whose first cell is a name ('#Vega,9600,4.0,-0.5,40') reads as a star: said,
        # as a row kept silently was a star the user meant to leave out
        which = (f"line {stars[0]} begins with '#' but reads as a star: kept; delete it to skip it"
                 if len(stars) == 1 else
                 f"{len(stars)} lines begin with '#' but read as stars (line {stars[0]} first): kept; delete "
                 "them to skip them")
        warnings.warn(f"{path}: {which} (quote the value if it is data)", UserWarning, stacklevel=4)
    return kept, bool(stars)


def _comments(lines):
    """The '#' lines before a table's header, without the '#' (``meta["comments"]``)."""
    return [line.strip()[1:].strip() for line in lines if line.strip()]


def _read_csv(path):
    """A CSV table of stars (gzipped too). Its '#' lines before the header are comments (``meta["comments"]``;
    astropy's CSV reader took them as the header: "Number of header columns (2) inconsistent with data
    columns"); the last one is the header where it names the columns and the first line does not
    (:func:`_commented_header`). After the header, a '#' line is a comment too, skipped with a counted
    warning, unless it reads as a row, kept with a warning (:func:`_hash_lines`); a quoted value ('"#1"') is
    always data. astropy's ``comment="#"`` dropped every '#' line, ids '#1', '#2' too (a table of 0 rows, no
    error)."""
    lines = _text_lines(path)
    start = _first_data_line(lines)
    header = [c.strip() for c in _csv_cells(lines[start])] if start < len(lines) else []
    found = _commented_header(lines, start, header, _csv_cells)
    if found:
        at, header = found
        head, first = [_join_cells(header, ",")], start
    else:
        at, head, first = start, lines[start:start + 1], start + 1
    kept, _ = _hash_lines(path, lines, first, header, _csv_cells)
    body = "".join(head + kept)
    # a string with a newline is the table itself for Table.read (without one, a file name)
    table = Table.read(body if body.endswith("\n") else body + "\n", format="ascii.csv")
    comments = _comments(lines[:at])
    if comments:
        table.meta["comments"] = comments
    return table


def _read_whitespace(path, table):
    """A whitespace-separated (.txt / .dat) table of stars, ``table`` as astropy's guessing reader read it.
    Where its header is a plain line (astropy's basic layout) or a '#' line (commented header), the '#' lines
    after it, which astropy dropped without a word (ids '#1', '#2' too: a table of 0 rows), are the CSV's
    (:func:`_hash_lines`: comments skipped with a counted warning, a row kept with a warning); a commented
    header that astropy missed ('# my sample' first, then '# teff logg logz L': columns col1, col2, ...) is
    read as in a CSV (:func:`_commented_header`). Other layouts (IPAC, CDS, fixed width) are astropy's."""
    lines = _text_lines(path)
    start = _first_data_line(lines)
    if start >= len(lines):
        return table
    # tabs where the first line has one: split and re-read by tabs alone (blanks in a name, '' cells); by
    # blanks too, 'Alpha Cen' was two cells and a '#' row kept as a star made the re-read fail
    tabbed = "\t" in lines[start]
    split, cols = (_tab_cells if tabbed else _whitespace_cells), list(table.colnames)
    found = _commented_header(lines, start, cols, split)
    if found:
        at, names, first = found[0], found[1], start
    elif [c.strip() for c in split(lines[start])] == cols:               # basic: the header line
        at, names, first = start, cols, start + 1
    else:                                                                  # astropy's commented header
        at = next((i for i in range(start) if lines[i].lstrip().startswith("#")
                   and [c.strip() for c in split(lines[i].lstrip()[1:])] == cols), None)
        if at is None:
            return table
        names, first = cols, start
    kept, stars = _hash_lines(path, lines, first, names, split)
    if not (found or stars):
        return table               # astropy dropped the same '#' lines, now counted
    # '#' is data here: the kept '#' rows are stars
    table = Table.read(_join_cells(names, "\t" if tabbed else " ") + "".join(kept),
                       format="ascii.tab" if tabbed else "ascii.basic", comment=None)
    comments = _comments(lines[:at])
    if comments:
        table.meta["comments"] = comments
    return table


def _hash_line_is_row(cells, header):
    """Whether a CSV line after the header whose first cell begins with '#' is a row of stars: as many cells
    as the header, a number (or an empty cell, a missing value) in each points column (teff, logg, logz, L,
    logl) and not all of them empty. An id '#1' in an 'id' column is a row; a commented-out row ('#6000' in
    teff) or a note ('# cluster B', or a spreadsheet's '# cluster B,,,,' under a name column) is not."""
    if len(cells) != len(header):
        return False
    points = {"teff", "logg", "logz", "L", "logl"}
    values = [cell.strip() for name, cell in zip(header, cells) if name in points]
    return any(values) and all(not cell or _is_number(cell) for cell in values)


def check_points_columns(columns):
    """The column names of a table of stars as a list, checked: ``teff``, ``logg``, ``logz`` and one of ``L``
    and ``logl`` (:data:`POINTS_COLUMNS_DOC`); a ValueError names the missing ones and the columns found, or
    says both L and logl are there (L was used and a disagreeing logl ignored). The one rule of the tables
    read here and of the Parquet / DataFrame ones of smnet_sps.distributed.points_array."""
    cols = [str(c) for c in columns]
    missing = [c for c in ("teff", "logg", "logz") if c not in cols]
    if not ("L" in cols or "logl" in cols):
        missing.append("L or logl")
    if missing:
        renames = _rename_hints(cols)
        hint = f"; rename {', '.join(renames)}" if renames else ""
        raise ValueError(f"points table needs columns {POINTS_COLUMNS_DOC}; missing {', '.join(missing)} "
                         f"(columns found: {', '.join(cols) or 'none'}){hint}")
    if "L" in cols and "logl" in cols:
        raise ValueError("points table has both an L [L_sun] and a logl [log10 L/L_sun] column; give one of "
                         "them")
    return cols


def _renames(cols):
    """{column: points column} for columns that are a points column but for case, a unit in brackets
    ('Teff[K]', 'L (Lsun)') or an underscore ('log_g'), where that points column is not there already."""
    wanted = {"teff": "teff", "logg": "logg", "logz": "logz", "l": "L", "logl": "logl"}
    renames = {}
    for col in cols:
        key = re.sub(r"\s*[\[(].*$", "", col).replace("_", "").replace(" ", "").lower()
        if key in wanted and col != wanted[key] and wanted[key] not in cols:
            renames[col] = wanted[key]
    return renames


def _rename_hints(cols):
    """Hints such as "'Teff' to 'teff'" (:func:`_renames`); names are matched exactly, never renamed
    silently."""
    return [f"{col!r} to {name!r}" for col, name in _renames(cols).items()]


def _as_table(points):
    """An astropy Table of a dict of columns, a pandas DataFrame (``Table()`` refuses one: "Data type
    DataFrame not allowed to init Table"; ``Table.from_pandas``) or anything else ``Table()`` takes."""
    if type(points).__module__.split(".")[0] == "pandas" and hasattr(points, "columns"):
        names = [str(c) for c in points.columns]
        twice = sorted({c for c in names if names.count(c) > 1})
        if twice:                        # from_pandas failed with an AttributeError on them
            raise ValueError(f"points table has more than one column named {', '.join(map(repr, twice))}; "
                             "keep one")
        return Table.from_pandas(points)
    return Table(points)


def _is_number(value):
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


#: a catalogue's log unit written out: 'log(cm.s**-2)' (Gaia DR3's logg), 'log(L/Lsun)', 'log10(Lsun)'
_LOG_FORM = re.compile(r"log(?:10)?\s*\((.+)\)", re.IGNORECASE)
#: what a logg / logl / logz column is the log of (logz, [M/H], is the log of a ratio)
_LOG_OF = {"logg": u.cm / u.s ** 2, "logl": u.L_sun, "logz": u.dimensionless_unscaled}
#: the quantity of each, for the warning on a log unit of another one ('log(g)': g read as grams)
_LOG_KIND = {"logg": "an acceleration", "logl": "a luminosity", "logz": "a ratio"}
#: the quantity's own symbol, which astropy reads as a unit of another kind ('g' grams, 'L' litres): its log
#: form names the quantity, and the values are taken as the log
_OWN_SYMBOL = {"logg": "g", "logl": "l"}
#: why a linear unit on a logg / logl column is refused, and what to give instead
_LINEAR_ON_LOG = {
    "logl": "a linear luminosity, on a column of log10(L / L_sun): 1.5 L_sun cannot be told from a log L of "
            "1.5 (its log10 was 3.3 mag off); give a luminosity as a column 'L' [L_sun], or the log with "
            "the unit dex(L_sun) ('[Lsun]' in CDS), dex or none",
    "logg": "a linear acceleration, on a column of log10(g / cm s^-2): 4.44 cm / s2 cannot be told from a "
            "log g of 4.44; give the log with the unit dex(cm / s2) ('[cm/s2]' in CDS, Gaia's "
            "'log(cm.s**-2)'), dex or none"}


def _read_unit(text):
    """``text`` as a unit: astropy's generic format with the spellings a FITS TUNIT needs
    (:func:`smnet_sps.medium._reparse_unit`: 'Lsun', 'dex(L_sun)'), then FITS ('cm.s**-2'), then CDS; None
    where none reads it."""
    from .medium import _reparse_unit
    for fmt in ("generic", "fits", "cds"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", u.UnitsWarning)
            unit = u.Unit(text, format=fmt, parse_strict="silent")
        if fmt == "generic":
            unit = _reparse_unit(unit)
        if not isinstance(unit, u.UnrecognizedUnit):
            return unit
    return None


def _log_column_unit(name, text):
    """The unit a catalogue means by ``text`` on a ``logg`` / ``logz`` / ``logl`` column that astropy's
    reader did not read, and None or why the values are taken as the log instead. CDS brackets (VizieR)
    '[cm/s2]', '[Lsun]' and log forms 'log(cm.s**-2)' (Gaia DR3), 'log(L/Lsun)' -> the dex of that unit ('L/'
    names the quantity); on logz '[Sun]', '[-]', '[dex]', '[M/H]', '[Fe/H]' -> dex; on logl '[Sun]' ->
    dex(L_sun).
    A bracket or log form of the quantity's own symbol ('log(g)' / '[g]' on logg, g read as grams; 'log(L)'
    / '[L]' on logl, L as litres) names the quantity, not its unit: (None, why). One of another unit ('[K]'
    on logg or logz, '[Sun]' on logg) is its dex, which :func:`_log_column` refuses. Any other text is read
    as a unit ('dex', or a linear one, refused too); (None, None) where nothing reads it."""
    text = text.strip()
    if name == "logz" and re.fullmatch(r"\[\s*(sun|-+|dex|\w+\s*/\s*h)?\s*\]", text, re.IGNORECASE):
        return u.dex, None
    if name == "logl" and re.fullmatch(r"\[\s*sun\s*\]", text, re.IGNORECASE):    # VizieR: log L/L_sun
        return u.dex(u.L_sun), None
    form = re.fullmatch(r"\[(.+)\]", text) or _LOG_FORM.fullmatch(text)
    if form is None:
        return _read_unit(text), None
    inner = form.group(1).strip()
    read = [unit for unit in map(_read_unit, [inner] + inner.split("/", 1)[1:]) if unit is not None]
    fits = [unit for unit in read if unit.is_equivalent(_LOG_OF[name])]
    if fits:
        return u.dex(fits[0]), None
    if not read:
        return None, None
    if inner.lower() == _OWN_SYMBOL.get(name):
        return None, f"the log of {read[0]} ({read[0].physical_type}), not of {_LOG_KIND[name]}"
    # the log of another unit ('[K]' on logg): refused by the column's rule, as a wrong unit is anywhere
    return u.dex(read[0]), None


def _log_column(name, values, unit):
    """The values of a ``logg`` / ``logz`` / ``logl`` column with ``unit`` (astropy's reading of its file,
    or None) as the generators' rules take them: a unit astropy did not read is read as a catalogue writes
    it (:func:`_log_column_unit`); where none reads it, or it is the log form of the quantity's own symbol
    ('log(g)', '[L]', read as grams, litres), the values are taken as already the log, as they were before
    units were read (a UnitsWarning names it); the log of another unit ('[K]' on logg) is refused. A linear
    luminosity on ``logl`` or acceleration on ``logg`` is refused (:data:`_LINEAR_ON_LOG`): 1.5 L_sun and
    log L = 1.5 cannot be told apart; a linear unit of another kind ('K' on logg) too, by the generators'
    rules."""
    if isinstance(unit, u.UnrecognizedUnit):
        text = unit.name
        unit, why = _log_column_unit(name, text)
        if unit is None:
            why = f"is {why}" if why else "is not one astropy or a catalogue convention reads"
            warnings.warn(f"points column {name!r}: its unit {text!r} {why}; its values are taken as the "
                          "log, as a column without a unit", u.UnitsWarning, stacklevel=4)
    if name in ("logg", "logl") and unit is not None and not isinstance(unit, u.FunctionUnitBase) \
            and unit.is_equivalent(_LOG_OF[name]):
        raise ValueError(f"points column {name!r} is in {unit}, {_LINEAR_ON_LOG[name]}")
    values = values if unit is None else values * unit
    if name == "logg":
        return np.asarray(_logg_value(values), float)
    if name == "logz":
        return np.asarray(_logz_value(values), float)
    return np.asarray(_log_value(values, "logl", u.L_sun, "log10(L / L_sun)"), float)


def _points_column(table, name):
    """Column ``name`` of a table of stars as floats: ``teff`` [K], ``logg`` [log10 cm s^-2], ``logz`` [dex],
    ``logl`` [log10 L/L_sun] or ``L`` [L_sun]. A column with a unit is read by the generators' own rules
    (:func:`smnet_sps.generator.column_quantity`: a FITS TUNIT astropy does not parse, 'Kelvin', 'Lsun',
    'solLum', is parsed again; on teff and L one that still cannot be read, or does not convert, is a
    ValueError naming the column; on logg, logz and logl see :func:`_log_column`); a plain number is in the
    unit above. A masked entry (an empty CSV cell) is NaN, which the row check then names."""
    col = table[name]
    unit = getattr(col, "unit", None)
    kind = np.asarray(col).dtype.kind
    if kind == "b":
        raise ValueError(f"points column {name!r} holds booleans (True / False), not numbers")
    mask = np.ma.getmaskarray(np.ma.asarray(col)) if hasattr(col, "mask") else np.zeros(len(col), bool)
    if kind not in "iuf":
        # a text cell ('n/a', '--') made the whole column text: "could not convert string to float", which
        # named neither the column nor the row. Masked cells (empty) are not text: filling them with "nan"
        # was cut to the column's width ('na'), and the empty cell blamed
        cells = np.asarray(np.ma.getdata(col))
        rows = [i for i, v in enumerate(cells) if not mask[i] and not _is_number(v)]
        if rows:
            raise ValueError(f"points column {name!r} must hold numbers; row {rows[0]} is '{cells[rows[0]]}' "
                             f"({len(rows)} such row(s)): leave a missing value empty or write nan (the "
                             "row check then names it), or remove the row")
        values = np.array([np.nan if m else float(v) for v, m in zip(cells, mask)])   # '5772' read too
    else:               # column_quantity's np.asarray would use what lies under the mask
        values = np.where(mask, np.nan, np.asarray(np.ma.getdata(col), float))
    if name in ("logg", "logz", "logl"):
        return _log_column(name, values, unit)
    col = Column(values, unit=unit)
    if name == "teff":                    # temperature equivalencies: deg_C converts, angle 'deg' is refused
        return np.asarray(_teff_value(col), float)
    lum = column_quantity(col, "L", "a luminosity (e.g. u.L_sun, erg / s)")
    if not isinstance(lum, u.Quantity) or lum.unit == u.dimensionless_unscaled:
        return np.asarray(lum, float)     # plain numbers: L_sun
    try:                                  # a linear luminosity, or a dex(L_sun) one (a log L in this column)
        return np.asarray(lum.to_value(u.L_sun), float)
    except u.UnitConversionError:
        raise ValueError(f"points column 'L' is in {lum.unit}, which is not a luminosity (L_sun, erg / s, "
                         "W, or dex(L_sun)); a log10(L / L_sun) in plain dex goes in a column "
                         "'logl'") from None


def points_magnitudes(points, filters, system="AB", *, generator=None, colors=None, batch_size=4096,
                      device="auto", progress=None):
    """Absolute magnitudes (10 pc) of the stars of a table, in this process (no Dask, no Parquet).

    Each star's spectrum follows the SSP backend's rule, as in :func:`smnet_sps.distributed.magnitudes`
    (the same function does the work: ``L_lambda = L f F_lambda / integral(F_lambda)``, a blackbody for an
    extrapolation more than 2x off its target, flagged outside).

    Parameters
    ----------
    points : astropy Table (or anything ``Table()`` takes: a dict of columns, a pandas DataFrame), or the
        path of a CSV, ECSV or FITS table; columns ``teff`` [K], ``logg``, ``logz`` ([M/H], dex) and ``L``
        [L_sun] or ``logl`` = log10 L/L_sun (one of them). A column with a unit (ECSV, FITS) is converted
        as the generators read it (``teff`` to K, ``L`` to L_sun; :func:`_points_column`); ``logg``, ``logz``
        and ``logl`` take dex or a catalogue's log unit ('[cm/s2]', 'log(cm.s**-2)', '[Lsun]'; one none reads,
        or the quantity's symbol 'log(g)' / '[L]', is taken as the log, with a UnitsWarning), never a linear
        one nor the log of another unit ('[K]' on logg) (:func:`_log_column`). Other columns
        are kept in the result.
    filters : filter names, files or ``SpectralElement``s (a list, or a comma-separated string)
    system : "AB", "ST" or "Vega"
    generator : None / "default" (the shipped model), "blackbody", a model path, or a loaded Generator
    colors : colours to add, e.g. ``"g-r,B-V"`` or ``["g-r"]``: see :func:`add_colors`
    batch_size : stars per generator pass (memory ~ batch_size x n_wave x 8 bytes)
    progress : bool or None, a tqdm bar over the generator's batches (none for a table of one batch); None:
        on a terminal or in a notebook only (:func:`smnet_sps.progress.want_progress`), as ``ssp_grid``

    Returns
    -------
    astropy.table.Table
        The input columns, then ``M_<filter>`` (absolute magnitude at 10 pc, unit mag(AB) / mag(ST) / a plain
        mag for Vega, :data:`smnet_sps.photometry.MAG_UNITS`),
        ``inside`` (True where the star lies inside the generator's coverage; NaN magnitudes where its
        spectrum is unusable) and the colours; ``meta["system"]`` names the magnitude system.

    Raises
    ------
    ValueError
        A missing column (named, with the columns found), both ``L`` and ``logl``, a non-finite parameter
        or an L that is not positive or lies outside 1e-10 .. 1e10 L_sun (naming its row), an unknown
        filter or system.
    """
    if not isinstance(points, Table):
        is_path = isinstance(points, str) or hasattr(points, "__fspath__")
        points = read_points_table(points) if is_path else _as_table(points)
    cols = check_points_columns(points.colnames)
    taken = [c for c in cols if c.startswith("M_") or c == "inside"]
    system = _system(system)
    named = resolve_filters(filters)
    if colors:
        parse_colors(colors, [name for name, _ in named])        # an unknown band before the generator
    clash = [c for c in taken if c == "inside" or c[2:] in {name for name, _ in named}]
    if clash:
        raise ValueError(f"points table already has column(s) {', '.join(clash)}, which the result adds; "
                         "rename them")
    if "L" in cols:
        lum = _points_column(points, "L")
    else:
        with np.errstate(over="ignore"):    # a logl past 308 is inf, which check_luminosity names
            lum = 10.0 ** _points_column(points, "logl")
    block = np.column_stack([_points_column(points, "teff"), _points_column(points, "logg"),
                             _points_column(points, "logz"), lum]) if len(points) else np.empty((0, 4))
    batch_size = _check_count(batch_size, "batch_size", 1, "stars per generator pass")
    progress = want_progress(progress)
    from .ssp import _weights_sha256, resolve_generator
    gen = resolve_generator(generator, device)
    out = stars_block(block, gen, "magnitudes", tuple(bp for _, bp in named), system, None, batch_size, "f8",
                      progress=progress)
    table = Table(points, copy=True)
    unit = MAG_UNITS[system]                     # the unit magnitudes() and ssp_magnitudes give
    for k, (fname, _) in enumerate(named):
        table[f"M_{fname}"] = Column(out[:, k], unit=unit,
                                     description=f"absolute {system} magnitude (10 pc), photon counting")
    table["inside"] = Column(out[:, -1].astype(bool),
                             description="True where the star lies inside the generator's coverage")
    table.meta.update({"system": system, "distance": "10 pc (absolute magnitudes)",
                       "star_rule": "smnet_sps.backend.star_rule (L f F_lambda / integral F_lambda)",
                       **provenance(gen.name, _weights_sha256(gen))})
    if colors:
        add_colors(table, colors)
    return table


def check_luminosity(lum, offset=0):
    """Refuse an L [L_sun] that is not positive, or outside 10** :data:`~smnet_sps.constants.LOGL_DOMAIN`
    (1e-10 .. 1e10 L_sun, the range the backend takes as logl), naming the row of the table (``offset``:
    the block's first row). L values in a logl column (10**150 L_sun, or inf past 10**308) made magnitudes
    of -369 mag flagged inside, where the backend refused the same star."""
    lum = np.asarray(lum, float)
    bad = ~(lum > 0)                    # NaN, zero, negative; +inf is out of range below
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"L must be a positive finite luminosity [L_sun]; row {offset + i} has "
                         f"L = {float(lum[i])!r}")
    lo, hi = 10.0 ** np.asarray(LOGL_DOMAIN)
    out = (lum < lo) | (lum > hi)
    if out.any():
        i = int(np.flatnonzero(out)[0])
        raise ValueError(f"L = {float(lum[i]):g} L_sun at row {offset + i} is outside {lo:g} .. {hi:g} L_sun "
                         f"(log10(L / L_sun) {LOGL_DOMAIN[0]:g} .. {LOGL_DOMAIN[1]:g}, the backend's range; "
                         f"{int(out.sum())} such row(s)): a log10(L / L_sun) goes in a column 'logl', a "
                         "luminosity in L_sun in a column 'L'")


def stars_block(block, gen, what, filters, system, distance_cm, batch_size, out_dtype, offset=0, n_wave=None,
                progress=False):
    """(n, k + 1) for one block of stars (rows Teff [K], log g, [M/H], L [L_sun]) through the generator
    ``gen``: k magnitudes (``what="magnitudes"``: of ``filters`` in ``system``, at ``distance_cm`` or 10 pc)
    or k = n_wave fluxes (``what="spectra"``), then the coverage flag. One Dask task's work
    (:mod:`smnet_sps.distributed`) and the whole of :func:`points_magnitudes`.

    ``offset``: the block's first row in the table (errors name table rows). ``n_wave``: the number of pixels
    the caller sized its output for (surface_flux's ``wavelength``); another generator grid is refused (its
    fluxes were cut and a flux column read as the coverage flag). ``progress``: a bar over the generator's
    batches where there is more than one (a Dask task draws none; :func:`points_magnitudes` does)."""
    if what == "spectra" and n_wave is not None and gen.wavelength.size != n_wave:
        raise ValueError(f"surface_flux: wavelength has {n_wave} values but the generator {gen.name!r} has "
                         f"{gen.wavelength.size} pixels; give its own grid (generator.wavelength) or "
                         "wavelength=None (read from the generator)")
    block = np.asarray(block, float)
    teff, logg, logz, lum = block.T
    # named by the row in the table, not in the chunk (a NaN Teff at row 1500 was "index 500")
    for name, values in (("teff", teff), ("logg", logg), ("logz", logz)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise ValueError(f"{name} is not finite at row {offset + int(bad[0])} ({bad.size} such row(s) in "
                             "its chunk); stellar parameters must be finite")
    try:
        validate_parameters(teff, logg, logz)
    except ValueError as exc:
        raise ValueError(f"{exc} (the index counts from row {offset} of the table)") from None
    if what == "magnitudes":
        check_luminosity(lum, offset)
        k = len(filters)
    else:
        k = gen.wavelength.size
    out = np.empty((block.shape[0], k + 1), dtype=out_dtype)
    wave = np.asarray(gen.wavelength, float) * u.AA
    wint = _trapz_weights(wave.value)
    distance = None if distance_cm is None else distance_cm * u.cm
    with _quiet_coverage():                      # coverage goes into the returned flag column
        # a bar only where there is more than one batch (as the backend's weighted_sum)
        for sl, flux, inside in gen.stream(teff, logg, logz, batch_size=batch_size,
                                           progress=bool(progress) and block.shape[0] > batch_size):
            if what == "magnitudes":
                # CONTRACTS, star: the SSP backend's whole per-star rule (backend.star_rule): L f F /
                # integral(F), and a blackbody for an extrapolation > 2x off its target (the rescaled
                # untrusted spectrum was V 1.1 mag fainter than the SSP's star: Padova post-AGB, 104 kK)
                flux = np.array(flux, float)               # star_rule writes the blackbody rows
                status = np.where(inside, STATUS["generator"], STATUS["extrapolated"])
                scale, _, _, usable = star_rule(flux, wave.value, teff[sl], status,
                                                gen.target_fraction(teff[sl]), wint)
                scale = scale * lum[sl] * L_SUN            # unusable spectrum: NaN magnitudes, outside
                out[sl, :k] = np.nan
                if usable.any():
                    llam = flux[usable] * scale[usable, None]
                    table = magnitudes((wave, llam * LLAM_UNIT), list(filters), system=system,
                                       distance=distance)
                    rows = np.flatnonzero(usable) + sl.start
                    out[rows, :k] = np.column_stack([np.asarray(table[c], float) for c in table.colnames])
                inside = inside & usable
            else:
                out[sl, :k] = flux
            out[sl, k] = inside
    return out
