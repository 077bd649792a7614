"""Isochrone tables: PARSEC v1.2S and Padova 2007 in FSPS's format, shipped as compact ``.npz`` files.

The tables live in the repository folder ``isochrones/`` (``isochrones/parsec.npz``,
``isochrones/padova.npz``; see ``isochrones/README.md`` for provenance and citations), installed as
``smnet_sps.isochrone_tables``. Each file holds every metallicity and age of one family, losslessly: the
FSPS text files give fixed decimals (8 for initial mass, 4 for the rest), so the columns are stored as
scaled integers, delta-encoded and zip compressed, and decoded back to exactly the printed numbers.

``load_isochrones("parsec")`` returns an :class:`IsochroneSet`; ``iso.isochrone(iz, ia)`` one isochrone.
:func:`convert_fsps_isochrones` rebuilds the tables from FSPS's ``isoc_z*.dat.gz`` files;
:func:`read_cmd_isochrones` reads a file from PARSEC's CMD web form, and :func:`resolve_isochrones` turns a
family name, a set or a file (what ``isochrones=`` takes everywhere in the SSP code) into a set.
"""
from __future__ import annotations

import functools
import io
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checksums import read_npz
from .progress import want_progress

__all__ = ["FAMILIES", "FAMILY_CHOICES", "PHASE_NAMES", "PRE_MS_PHASE", "UNFLAGGED_PHASE", "Isochrone",
           "IsochroneSet", "load_isochrones", "convert_fsps_isochrones", "isochrone_dir", "check_zsun",
           "read_cmd_isochrones", "resolve_isochrones", "CMD_LABEL_PHASES", "CMD_WHITE_DWARF_LABEL"]

# FSPS fsps_ev_phases.txt
PHASE_NAMES = {0: "main sequence", 1: "sub giant branch", 2: "red giant branch",
               3: "core He burning", 4: "early AGB", 5: "TP-AGB", 6: "post-AGB",
               7: "blue stragglers", 8: "blue horizontal branch", 9: "Wolf-Rayet",
               -1: "RGB tip to HB transition"}

#: MIST's name of code -1 (MIST flags the pre-main sequence -1; PARSEC the RGB tip to HB transition)
PRE_MS_PHASE = "pre-main sequence"

#: name of phase 0 in a set whose tables flag none of the giant phases 1-4 (FSPS's Padova 2007 files flag
#: only 0, 5, 6, 9): there code 0 holds everything from the main sequence to the early AGB
UNFLAGGED_PHASE = "not flagged (main sequence to E-AGB)"
_GIANT_PHASES = (1, 2, 3, 4)

FAMILIES = {
    "parsec": {"file": "parsec.npz", "zsun": 0.0152, "source": "fsps_parsec",
               "title": "PARSEC v1.2S (FSPS format)",
               "citation": "Bressan et al. 2012, MNRAS 427, 127; Conroy, Gunn & White 2009, ApJ 699, 486"},
    "padova": {"file": "padova.npz", "zsun": 0.019, "source": "fsps_padova2007",
               "title": "Padova 2007 (FSPS format)",
               "citation": "Marigo et al. 2008, A&A 482, 883; Girardi et al. 2000; "
                           "Conroy, Gunn & White 2009, ApJ 699, 486"},
}
_ALIASES = {"parsec": "parsec", "parsec12s": "parsec", "prsc": "parsec", "padova": "padova",
            "padova2007": "padova", "pdva": "padova"}
FORMAT = "smnet-sps isochrones v1"
#: relative distance within which a metallicity is the tabulated Z (IsochroneSet.check_z): float32's
#: precision (6e-8) with a margin, far below the 0.1-dex steps of the grids
Z_RTOL = 1e-6
#: dex within which an age is the only age of a set of one age, or the first / last of a set
#: (IsochroneSet.check_age): a logAge printed to 4 decimals, as in a CMD file (9.6990 for an age asked as
#: 5e9 yr, log 9.69897), is 5e-5 dex off at most
SINGLE_AGE_DEX = 1e-4

# integer scales of the FSPS columns (decimals printed in the FSPS files)
_SCALES = {"mini": 1e8, "mact": 1e4, "logl": 1e4, "logt": 1e4, "logg": 1e4, "co": 1e4}
_DELTA = ("mini", "mact", "logl", "logt", "logg")
_REBUILD = "rebuild it with smnet_sps.isochrones.convert_fsps_isochrones"   # a missing or damaged table


def isochrone_dir():
    """Folder holding the shipped tables (``isochrones/`` installed as ``smnet_sps.isochrone_tables``).

    Falls back to ``<source checkout>/isochrones`` when run from a source tree that was not installed.
    """
    try:
        from . import isochrone_tables
        return Path(isochrone_tables.ISOCHRONE_DIR)
    except ImportError:
        return Path(__file__).resolve().parents[1] / "isochrones"


def _freeze(iso):
    """Make a set's arrays read-only. The set is cached and shared for the session and ``isochrone()`` hands
    out views of its columns: a caller's ``iso.isochrone(iz, ia).logl += 1`` (a what-if on what looked like
    its own copy) changed that isochrone for every later SSP (PARSEC Z = 0.008, 3 Gyr: log L_bol -0.064 ->
    +0.478); now it raises numpy's "assignment destination is read-only" (copy the array to change it)."""
    for arr in (iso.Z, iso.log_age, iso.start, iso.count, *iso.columns.values()):
        arr.setflags(write=False)


@dataclass(frozen=True)
class Isochrone:
    """One isochrone (one age, one Z). Arrays are in FSPS order (increasing initial mass), read-only views of
    the shared :class:`IsochroneSet` (copy one to change it).

    Attributes
    ----------
    log_age : float, log10(age / yr)
    Z : float, metal mass fraction
    mini, mact : ndarray, initial and current mass [M_sun]
    logl : ndarray, log10(L / L_sun)
    logt : ndarray, log10(Teff / K)
    logg : ndarray, log10(g / cm s^-2)
    co : ndarray, surface C/O ("composition" column of FSPS)
    phase : ndarray of int, FSPS phase code (see :data:`PHASE_NAMES`)
    """

    family: str
    log_age: float
    Z: float
    mini: np.ndarray
    mact: np.ndarray
    logl: np.ndarray
    logt: np.ndarray
    logg: np.ndarray
    co: np.ndarray
    phase: np.ndarray

    def __len__(self):
        return self.mini.size


class IsochroneSet:
    """All isochrones of one family: ``Z`` (n_z,), ``log_age`` (n_age,), per-(Z, age) point arrays."""

    def __init__(self, name, arrays, meta):
        self.name = name
        self.meta = meta
        self.zsun = float(meta["zsun"])
        self.citation = meta["citation"]
        self.Z = np.asarray(arrays["Z"], float)
        self.log_age = np.asarray(arrays["log_age"], float)
        self.start = np.asarray(arrays["start"], np.int64)    # (n_z, n_age)
        self.count = np.asarray(arrays["count"], np.int64)
        cols = {}
        for key, scale in _SCALES.items():
            raw = np.asarray(arrays[key]).astype(np.int64)
            if key in _DELTA:
                raw = np.cumsum(raw)
            cols[key] = raw / scale
        cols["phase"] = np.asarray(arrays["phase"]).astype(np.int16)
        self.columns = cols
        self.n_points = int(self.count.sum())
        _freeze(self)

    @property
    def source_file(self):
        """The file the set was read from, '' if none: provenance beside ``name`` (a user's file told from
        the shipped table; ``isochrone_file`` of SSP metadata and stores)."""
        return str(self.meta.get("path", ""))

    @functools.cached_property
    def phase_names(self):
        """Phase code -> name for this set: :data:`PHASE_NAMES`, except that code 0 is
        :data:`UNFLAGGED_PHASE` where the tables flag none of the giant phases 1-4 (Padova), so that a
        per-phase summary does not call red giants "main sequence", and code -1 is :data:`PRE_MS_PHASE` in
        MIST, whose -1 is the pre-main sequence (PARSEC's is the RGB tip to HB transition)."""
        names = dict(PHASE_NAMES)
        if self.name == "mist":
            names[-1] = PRE_MS_PHASE
        if not np.isin(self.columns["phase"], _GIANT_PHASES).any():
            names[0] = UNFLAGGED_PHASE
        return names

    @property
    def logz(self):
        """log10(Z / Zsun) of the tabulated metallicities ([M/H] for the generator)."""
        return np.log10(self.Z / self.zsun)

    def __repr__(self):
        return (f"IsochroneSet({self.name!r}: {self.Z.size} Z in {self.Z.min():g}-{self.Z.max():g}, "
                f"{self.log_age.size} ages log t = {self.log_age.min():.2f}-{self.log_age.max():.2f}, "
                f"{self.n_points} points)")

    def rows(self, iz, ia):
        """Slice of the flat column arrays for isochrone (iz, ia)."""
        s = int(self.start[iz, ia])
        return slice(s, s + int(self.count[iz, ia]))

    def isochrone(self, iz, ia):
        """The :class:`Isochrone` at metallicity index ``iz`` and age index ``ia`` (integers: the positions
        of the tabulated ``Z`` and ``log_age``; anything else is a ValueError naming the valid range)."""
        import numbers
        if not all(isinstance(i, numbers.Integral) and not isinstance(i, (bool, np.bool_)) for i in (iz, ia)):
            # 1.5 or 2.0 failed inside numpy ("only integers, slices ... are valid indices"), True in int()
            raise ValueError(f"isochrone indices must be integers: iz in 0..{self.Z.size - 1} (the position "
                             f"in Z), ia in 0..{self.log_age.size - 1} (in log_age); got ({iz!r}, {ia!r}). "
                             "The index of a value: int(np.argmin(abs(iso.Z - Z)))")
        if not (0 <= iz < self.Z.size and 0 <= ia < self.log_age.size):
            raise ValueError(f"isochrone index out of range: iz must be in 0..{self.Z.size - 1}, "
                             f"ia in 0..{self.log_age.size - 1}; got ({iz}, {ia})")
        sl = self.rows(iz, ia)
        c = self.columns
        return Isochrone(self.name, float(self.log_age[ia]), float(self.Z[iz]), c["mini"][sl], c["mact"][sl],
                         c["logl"][sl], c["logt"][sl], c["logg"][sl], c["co"][sl], c["phase"][sl])

    def age_range_text(self):
        """The tabulated age range in words, e.g. '0.3163 Myr - 12.58 Gyr (log10(age/yr) 5.500-10.100)'.

        The limits are rounded inwards to 4 significant digits, so that an age typed as shown is accepted.
        """
        lo, hi = self.log_age[0], self.log_age[-1]
        if self.log_age.size == 1:            # a set of one age: that age, with the digits to type it
            age = 10.0**lo
            shown = f"{age / 1e9:.7g} Gyr" if age >= 1e9 else f"{age / 1e6:.7g} Myr"
            return f"{shown} only (log10(age/yr) {lo:.6g})"

        def inward(value, up):
            scale = 10.0 ** (np.floor(np.log10(value)) - 3)
            return (np.ceil(value / scale - 1e-9) if up else np.floor(value / scale + 1e-9)) * scale
        return (f"{inward(10**lo / 1e6, True):.4g} Myr - {inward(10**hi / 1e9, False):.4g} Gyr "
                f"(log10(age/yr) {lo:.3f}-{hi:.3f})")

    def check_age(self, log_age):
        """``log_age`` (log10(age / yr)) as a float array of its shape, checked against the tabulated range.

        A set of one age (e.g. a CMD file for one age) has SSPs at that age only: an age within
        :data:`SINGLE_AGE_DEX` of it is that age, any other a ValueError naming it. Likewise an age within
        :data:`SINGLE_AGE_DEX` beyond the first or last age of a set is that end age (ages printed to 4
        decimals)."""
        shape = np.shape(log_age)
        lo, hi = self.log_age[0], self.log_age[-1]
        log_age = np.atleast_1d(np.asarray(log_age, float))
        if not np.all(np.isfinite(log_age)):
            raise ValueError("age must be finite and positive")
        if self.log_age.size == 1:
            off = np.abs(log_age - lo) > SINGLE_AGE_DEX
            if off.any():
                bad = log_age[off][np.argmax(np.abs(log_age[off] - lo))]
                many = f" ({int(off.sum())} of {log_age.size} ages)" if log_age.size > 1 else ""
                raise ValueError(f"the {self.name} isochrones hold one age, {self.age_range_text()}: SSPs "
                                 f"from them are at that age only (an age needs isochrones on both sides "
                                 f"to be interpolated); got {10**bad / 1e9:.4g} Gyr (log10(age/yr) "
                                 f"{bad:.4f}){many}")
            return np.full(shape, lo)
        if (log_age < lo - SINGLE_AGE_DEX).any() or (log_age > hi + SINGLE_AGE_DEX).any():
            outside = log_age[(log_age < lo - SINGLE_AGE_DEX) | (log_age > hi + SINGLE_AGE_DEX)]
            # the farthest one: of a range 0.01-20 Gyr, the 20 Gyr asked for, not the first grid age past 13
            bad = outside[np.argmax(np.maximum(lo - outside, outside - hi))]
            many = f" ({outside.size} of {log_age.size} ages outside)" if log_age.size > 1 else ""
            raise ValueError(f"age outside the {self.name} isochrone grid: valid ages are "
                             f"{self.age_range_text()}; got {10**bad / 1e9:.4g} Gyr (log10(age/yr) "
                             f"{bad:.4f}){many}")
        # within SINGLE_AGE_DEX of an end is that end (a CMD file's top age asked as 13 Gyr holds logAge
        # 10.1139 for 13 Gyr's 10.11394: refused, where a file of that one age took it)
        return np.clip(log_age, lo, hi).reshape(shape)

    def logzsol_range_text(self):
        """The tabulated logzsol (log10 Z / Zsun, dex) range in words, e.g. '-2.18..+0.59' for PARSEC.

        The limits are rounded inwards to 0.01 dex, so that a logzsol typed as shown is accepted
        (PARSEC's top, log10(0.06 / 0.0152) = 0.5963, printed as +0.60 would be refused).
        """
        if self.Z.size == 1:                  # a set of one Z: that logzsol, to Z_RTOL
            return f"{np.log10(self.Z[0] / self.zsun):+.7f} only"
        lz_lo = np.ceil(np.log10(self.Z[0] / self.zsun) * 100 - 1e-9) / 100
        lz_hi = np.floor(np.log10(self.Z[-1] / self.zsun) * 100 + 1e-9) / 100
        return f"{lz_lo:+.2f}..{lz_hi:+.2f}"

    def z_range_text(self):
        """The tabulated Z range in words: '0.0001-0.06', or '0.014 only' for a set of one Z."""
        if self.Z.size == 1:
            return f"{self.Z[0]:.7g} only"
        return f"{self.Z[0]:g}-{self.Z[-1]:g}"

    def check_z(self, Z):
        """``Z`` (metal mass fractions) as a float array of its shape, checked against the tabulated range;
        a value within :data:`Z_RTOL` of a tabulated Z is that Z (float32 rounds the lowest PARSEC Z, 1e-4,
        to 9.99999975e-05: it was refused as outside the grid whose range it printed). A set of one Z (e.g.
        a CMD file for one metallicity) has SSPs at that Z only: any other is a ValueError naming it."""
        Z = np.array(Z, float)
        flat = Z.reshape(-1)
        if not np.all(np.isfinite(flat)) or (flat <= 0).any():
            raise ValueError(f"Z (metal mass fraction) must be finite and > 0; valid Z for {self.name} "
                             f"is {self.z_range_text()}")
        nearest = self.Z[np.argmin(np.abs(np.log(flat[:, None] / self.Z[None, :])), axis=1)]
        flat[:] = np.where(np.abs(flat / nearest - 1) <= Z_RTOL, nearest, flat)
        lo, hi = self.Z[0], self.Z[-1]
        bad = (flat < lo) | (flat > hi)
        if bad.any():
            zb = flat[bad][0]
            if self.Z.size == 1:
                raise ValueError(f"Z = {zb:.7g} (logzsol {np.log10(zb / self.zsun):+.4f}) is not the one "
                                 f"metallicity of the {self.name} isochrones: Z = {lo:.7g} only (logzsol "
                                 f"{np.log10(lo / self.zsun):+.7f}, Zsun = {self.zsun:g}; within {Z_RTOL:g} "
                                 "relative). SSPs from a set of one Z are at that Z only (a Z needs "
                                 "isochrones on both sides to be interpolated)")
            raise ValueError(f"Z = {zb:g} outside the {self.name} isochrone grid: valid Z is {lo:g}-{hi:g} "
                             f"(logzsol {self.logzsol_range_text()}, Zsun = {self.zsun:g})")
        return Z


#: the isochrone families a user can name, for the command line's help texts
FAMILY_CHOICES = "parsec (default), padova, or mist (needs the optional package lachesis-grids)"


def check_zsun(zsun, where="zsun", example="0.0152 (PARSEC), 0.019 (Padova) or 0.0142 (MIST)"):
    """``zsun`` as a float, a metal mass fraction in (0, 1), else a ValueError naming ``where`` and giving
    ``example``: a negative or NaN zsun made every [M/H] NaN, True was taken as Zsun = 1, and 'x' gave
    float()'s "could not convert string to float", which named no argument."""
    try:
        value = float(zsun)
    except (TypeError, ValueError):
        value = np.nan
    if isinstance(zsun, (bool, np.bool_)) or not (0.0 < value < 1.0):
        raise ValueError(f"{where} must be a metal mass fraction in (0, 1), e.g. {example}; got {zsun!r}")
    return value


def _canonical(name):
    if not isinstance(name, str) or name.strip().lower() not in _ALIASES:
        raise ValueError(f"unknown isochrone family {name!r}; valid names are {', '.join(FAMILIES)} and "
                         "mist (needs the optional package lachesis-grids)")
    return _ALIASES[name.strip().lower()]


def _file_version(path):
    """(mtime_ns, size, inode) of a file, or None if it is not one: part of the cache key of :func:`_load`
    (and of :mod:`smnet_sps.mist`'s), so that a table rewritten in the same session (convert_fsps_isochrones
    onto the same path) is read again, while an unchanged one costs only this stat."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino) if stat.S_ISREG(st.st_mode) else None


@functools.lru_cache(maxsize=8)
def _load(name, path, version):
    """The table at ``path`` (resolved); ``version`` (:func:`_file_version`) only keys the cache."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"isochrone table {path} not found; {_REBUILD}")
    arrays = read_npz(path, "smnet-sps isochrone table", _REBUILD)
    need = {"Z", "log_age", "start", "count", "phase", "format", *_SCALES}
    missing = need - set(arrays)
    if missing or str(arrays["format"]) != FORMAT:
        raise ValueError(f"{path} is not an '{FORMAT}' file (missing {sorted(missing)} or wrong format tag)")
    family = str(arrays["family"]) if "family" in arrays else name
    if family != name:
        # a Padova table named "parsec" was cited as PARSEC and lost Padova's TP-AGB re-weighting
        raise ValueError(f"{path} holds {family!r} isochrones, not {name!r}; load it as "
                         f"load_isochrones({family!r}, path=...)")
    meta = dict(FAMILIES.get(name, {}))
    meta.update({"zsun": float(arrays.get("zsun", meta.get("zsun", np.nan))), "path": str(path)})
    return IsochroneSet(name, arrays, meta)


def load_isochrones(name="parsec", path=None):
    """Load an isochrone family.

    Parameters
    ----------
    name : {"parsec", "padova", "mist"}
        ("mist": MIST v2.5 from the optional lachesis-grids package, see :mod:`smnet_sps.mist`.)
        PARSEC v1.2S (Bressan+2012; Zsun = 0.0152; 15 Z 1e-4..0.06; log t 5.5-10.1) or Padova 2007
        (Marigo+2008; Zsun = 0.019; 22 Z 2e-4..0.03; log t 5.5-10.15), both as distributed with FSPS.
    path : path-like, optional
        A table written by :func:`convert_fsps_isochrones` (default: the shipped one). Tables are read once
        per session and file version: a file rewritten since (same path) is read again.
    """
    if isinstance(name, str) and name.strip().lower() == "mist":    # optional: read from lachesis-grids
        from .mist import load_mist_isochrones
        return load_mist_isochrones(path)
    key = _canonical(name)
    path = (Path(path) if path is not None else isochrone_dir() / FAMILIES[key]["file"]).resolve()
    return _load(key, str(path), _file_version(path))


#: FSPS isochrone file names: isoc_z<Z>.dat, optionally gzipped
_FSPS_NAME = re.compile(r"isoc_z(\d*\.?\d+)\.dat(\.gz)?")


#: the FSPS columns (name, unit, allowed range): wide enough for every shipped table (Padova's white-dwarf
#: cooling tracks reach log g 13.8 and log L -6.6; PARSEC has Mini up to 349 M_sun), narrow enough to
#: refuse another unit (Teff in K as log Teff, an age in yr, a mass in grams) before the integer cast
_FSPS_COLUMNS = (("log age", "log10(t / yr)", 4.0, 11.0), ("Mini", "M_sun", 0.01, 1000.0),
                 ("Mact", "M_sun", 0.01, 1000.0), ("log L", "log10(L / L_sun)", -8.0, 8.0),
                 ("log Teff", "log10(Teff / K)", 3.0, 6.0), ("log g", "log10(g / cm s^-2)", -3.0, 15.0),
                 ("composition", "surface C/O", 0.0, 1000.0), ("phase", "FSPS code", -1.0, 9.0))


def _open_text(path):
    """A text file as a stream, gzip told by its first two bytes, not its name (a gzipped CMD download saved
    without '.gz' failed with "'utf-8' codec can't decode byte 0x8b", naming no file); a truncated or
    damaged gzip is a ValueError naming the file (an FSPS isoc_z*.dat.gz cut short was a bare EOFError):
    :func:`smnet_sps.libraries._common.read_bytes`, the library readers' rule. A byte that is no UTF-8 (a
    latin-1 '\xb1' in a comment line) is replaced, not fatal: comments are skipped, and a damaged data line
    fails as not a number, naming its line."""
    from .libraries._common import read_bytes
    return io.StringIO(read_bytes(path).decode("utf-8", errors="replace"))


def _line_of_row(path, row):
    """Line number (from 1) of data row ``row`` (from 0) of an FSPS file, as np.loadtxt counts rows:
    blank and comment-only lines are skipped."""
    n = -1
    with _open_text(path) as fh:
        for line_no, line in enumerate(fh, 1):
            if line.split("#", 1)[0].strip():
                n += 1
                if n == row:
                    return line_no
    return None


def _check_fsps_values(path, data):
    """Every value finite and in its column's range, phases FSPS codes: NaN log L was stored as 0 (1 L_sun),
    NaN Mini as -9.2e10, a mass in grams overflowed to 0, Teff in K became log Teff = 2875."""
    bad = ~np.isfinite(data)
    for j, (_, _, lo, hi) in enumerate(_FSPS_COLUMNS):
        with np.errstate(invalid="ignore"):
            bad[:, j] |= (data[:, j] < lo) | (data[:, j] > hi)
    bad[:, 7] |= ~np.isin(data[:, 7], list(PHASE_NAMES))          # also 2.5: not a code
    rows = np.flatnonzero(bad.any(axis=1))
    if rows.size == 0:
        return
    row = rows[0]
    j = int(np.flatnonzero(bad[row])[0])
    name, unit, lo, hi = _FSPS_COLUMNS[j]
    allowed = (f"one of the FSPS phase codes {sorted(PHASE_NAMES)}" if j == 7
               else f"a finite {unit} in {lo:g} .. {hi:g}")
    more = f" ({rows.size - 1} more rows with bad values)" if rows.size > 1 else ""
    raise ValueError(f"{path}, line {_line_of_row(path, row)}: {name} = {data[row, j]:g} (column {j + 1}); "
                     f"allowed: {allowed}{more}. Wrong unit or a damaged file?")


def _read_fsps_file(path):
    with _open_text(path) as fh:
        data = np.loadtxt(fh, comments="#", ndmin=2)
    if data.shape[1] != 8:
        raise ValueError(f"{path}: expected 8 FSPS isochrone columns (log age, Mini, Mact, log L, log Teff, "
                         f"log g, composition, phase), found {data.shape[1]}")
    _check_fsps_values(path, data)
    return data


def _as_int(values, dtype, what):
    """``values`` (already integers) as ``dtype``, refusing what it cannot hold instead of wrapping."""
    info = np.iinfo(dtype)
    if values.size and (values.min() < info.min or values.max() > info.max):
        raise ValueError(f"{what}: values {values.min():g} .. {values.max():g} do not fit {np.dtype(dtype)} "
                         f"({info.min} .. {info.max})")
    return values.astype(dtype)


def _check_one_file_per_z(files, src_dir):
    """Refuse two files giving the same Z (isoc_z0.0010.dat beside isoc_z0.0010.dat.gz, or isoc_z0.001.dat):
    both were read, and the table got that Z twice (Z = [0.001, 0.001]), as two metallicity nodes."""
    seen = {}
    for f in files:
        z = float(_FSPS_NAME.fullmatch(f.name).group(1))
        if z in seen:
            raise ValueError(f"the same metallicity twice in {src_dir}: {seen[z].name} and {f.name} both "
                             f"give Z = {z:g}. A copy of a file (e.g. .dat beside .dat.gz); remove one "
                             "(every Z must come from one isoc_zX.XXXX.dat[.gz] file)")
        seen[z] = f


def convert_fsps_isochrones(src_dir, out_path, family, progress=None):
    """Convert FSPS ``isoc_z*.dat(.gz)`` files of one family into one lossless compressed ``.npz``.

    Parameters
    ----------
    src_dir : folder with ``isoc_zX.XXXX.dat.gz`` (e.g. ``shared/data/isochrones/fsps_parsec``); another
        ``isoc_z*.dat*`` file there (``isoc_z0.0010_mine.dat.gz``) is refused (ValueError), and so are a
        name whose Z is not in (0, 1) (``isoc_z0190.dat``) and two files giving the same Z
        (``isoc_z0.0010.dat`` beside ``isoc_z0.0010.dat.gz``); other names are ignored
    out_path : output ``.npz``, written under exactly this name (which the returned Path is; a name without
        ``.npz`` is not given one) and replaced atomically: an existing table (the shipped one, rebuilt in
        place) stays whole until the new one is complete
    family : "parsec" or "padova" (sets Zsun and the citation stored in the file)
    progress : bool or None, a tqdm bar (on stderr) over the files; None (default): when stderr is a
        terminal or in a Jupyter kernel, never into a log file (:mod:`smnet_sps.progress`)

    Every value must be finite and in its column's range (log t 4-11, Mini and Mact 0.01-1000 M_sun,
    log L -8..8, log Teff 3-6, log g -3..15, C/O 0-1000, phase an FSPS code -1..9); otherwise ValueError
    names the file, line, column and allowed range, and nothing is written.
    """
    from tqdm.auto import tqdm

    progress = want_progress(progress)
    key = _canonical(family)
    if Path(out_path).is_dir():
        raise ValueError(f"out_path {str(out_path)!r} is a folder; give the table's file name, e.g. "
                         f"{str(Path(out_path) / (key + '.npz'))!r}")
    files = sorted(Path(src_dir).glob("isoc_z*.dat*"))
    if not files:
        raise FileNotFoundError(f"no isoc_z*.dat[.gz] files in {src_dir}")
    zs, blocks = [], []
    # Z is read from each name, so a file the glob picks up whose name does not give it
    # (isoc_z0.0010_mine.dat) is refused before anything is read rather than left out of the table unseen
    for f in files:
        if _FSPS_NAME.fullmatch(f.name) is None:
            raise ValueError(f"{f}: not an FSPS isochrone file name; every isoc_z* file in {src_dir} must "
                             "be named isoc_zX.XXXX.dat[.gz] (X.XXXX: the metal mass fraction Z); rename or "
                             "move it out of the folder")
        z = float(_FSPS_NAME.fullmatch(f.name).group(1))
        if not 0.0 < z < 1.0:
            # isoc_z0190.dat (0.0190 without its point) made a table of Z = 190, logzsol +4.1; isoc_z0.0.dat
            # one of Z = 0, logzsol -inf
            raise ValueError(f"{f}: the name gives Z = {z:g}, not a metal mass fraction in (0, 1); name the "
                             "file isoc_zX.XXXX.dat[.gz] with its Z, e.g. isoc_z0.0190.dat for Z = 0.019")
    _check_one_file_per_z(files, src_dir)
    for f in tqdm(files, desc=f"reading {key}", disable=not progress):
        zs.append(float(_FSPS_NAME.fullmatch(f.name).group(1)))
        blocks.append(_read_fsps_file(f))
    order = np.argsort(zs)
    zs = np.array(zs)[order]
    blocks = [blocks[i] for i in order]
    ages = np.unique(np.round(blocks[0][:, 0], 4))
    start = np.zeros((zs.size, ages.size), np.int64)
    count = np.zeros_like(start)
    rows, pos = [], 0
    for iz, blk in enumerate(blocks):
        a = np.round(blk[:, 0], 4)
        if not np.array_equal(np.unique(a), ages):
            raise ValueError(f"Z = {zs[iz]}: its ages differ from those of Z = {zs[0]}; a rectangular grid "
                             "is required")
        for ia, age in enumerate(ages):
            sel = blk[a == age]
            # FSPS order is kept as is: it is increasing initial mass, which the weights rely on
            if (np.diff(sel[:, 1]) < 0).any():
                raise ValueError(f"{files[order[iz]].name}, log t = {age}: initial masses are not sorted")
            start[iz, ia], count[iz, ia] = pos, len(sel)
            rows.append(sel)
            pos += len(sel)
    data = np.concatenate(rows)
    out = {"format": np.array(FORMAT), "family": np.array(key), "zsun": np.float64(FAMILIES[key]["zsun"]),
           "citation": np.array(FAMILIES[key]["citation"]), "Z": zs, "log_age": ages,
           "start": start, "count": count.astype(np.int32)}
    for j, col in enumerate(("mini", "mact", "logl", "logt", "logg", "co"), start=1):
        ints = _as_int(np.round(data[:, j] * _SCALES[col]), np.int64, f"column {col}")
        if col in _DELTA:
            ints = np.diff(ints, prepend=0)
        out[col] = ints if col == "mini" else _as_int(ints, np.int32, f"column {col}")
    out["phase"] = _as_int(data[:, 7], np.int8, "column phase")
    from .output_files import atomic_output
    # under a temporary name, renamed when complete (written in place, an interrupted rebuild of the shipped
    # table left it truncated), and through a handle: numpy appends ".npz" to a name without it, and the
    # Path returned named a file that did not exist
    with atomic_output(out_path, overwrite=True, option="out_path") as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **out)
    return Path(out_path)


# ---- PARSEC's CMD web form (http://stev.oapd.inaf.it/cgi-bin/cmd) -----------------------------------------
#: CMD's evolutionary ``label`` (CMD's legend) -> FSPS phase code (:data:`PHASE_NAMES`), as FSPS's own PARSEC
#: files code them up to the TP-AGB: 0 pre-MS and 1 MS -> 0 (FSPS flags no pre-main sequence in PARSEC),
#: 2 SGB -> 1, 3 RGB -> 2, 4-6 core He burning (start, blue loop, red clump) -> 3, 7 E-AGB -> 4, 8 TP-AGB
#: -> 5; 9 post-AGB -> 6 (FSPS's PARSEC files, and the shipped table, stop before it: kept, as MIST's are)
CMD_LABEL_PHASES = {0: 0, 1: 0, 2: 1, 3: 2, 4: 3, 5: 3, 6: 3, 7: 4, 8: 5, 9: 6}
#: CMD labels from this one up are white dwarfs: dropped, like MIST's
#: (:func:`smnet_sps.mist.white_dwarf_start`), so that the stars above the largest surviving initial mass are
#: booked as remnants
CMD_WHITE_DWARF_LABEL = 10
#: Zsun of PARSEC v1.2S, the tracks CMD serves by default ([M/H] = log10(Z / 0.0152) for the generator)
CMD_ZSUN = 0.0152
#: CMD column -> (IsochroneSet column, unit, allowed range); ``Mact`` is older CMD versions' ``Mass``
_CMD_COLUMNS = {"Zini": ("Z", "metal mass fraction", 0.0, 1.0),
                "logAge": ("log_age", "log10(t / yr)", 4.0, 11.0),
                "Mini": ("mini", "M_sun", 0.01, 1000.0), "Mass": ("mact", "M_sun", 0.01, 1000.0),
                "logL": ("logl", "log10(L / L_sun)", -8.0, 8.0),
                "logTe": ("logt", "log10(Teff / K)", 3.0, 6.0),
                "logg": ("logg", "log10(g / cm s^-2)", -3.0, 15.0),
                "label": ("label", "CMD label", 0.0, 99.0), "C_O": ("co", "surface C/O", 0.0, 1000.0)}
_CMD_ALIASES = {"Mact": "Mass", "logT": "logTe", "logG": "logg", "stage": "label"}
#: CMD 2.x column names (``#\tZ\tlog(age/yr)\tM_ini\tM_act\tlogL/Lo\tlogTe\tlogG\tmbol ... C/O ... int_IMF
#: stage``; its ``stage`` is 3.x's ``label``, CMD's FAQ) -> 3.x's. Only for a 2.x header: a 3.x file has a
#: column ``Z`` too (the current surface Z, not Zini)
_CMD2_ALIASES = {"Z": "Zini", "log(age/yr)": "logAge", "M_ini": "Mini", "M_act": "Mass", "logL/Lo": "logL",
                 "C/O": "C_O"}
_CMD_OPTIONAL = ("C_O",)


def _cmd_header_names(words):
    """The CMD 3.x names of a column header line's ``words`` (after any '#'), or None if it is no header:
    CMD 3.x's starts with ``Zini``, CMD 2.x's with ``Z log(age/yr)``."""
    if words[:1] == ["Zini"]:
        return [_CMD_ALIASES.get(w, w) for w in words]
    if words[:2] == ["Z", "log(age/yr)"]:
        return [_CMD_ALIASES.get(w, w) for w in (_CMD2_ALIASES.get(w, w) for w in words)]
    return None


#: what a MIST isochrone file given as ``isochrones=`` is told (:func:`_cmd_table`)
_MIST_FILE_HINT = (". This is a MIST isochrone file (MIST's web interpolator, .iso / .cmd), which is not "
                   "read as a file: isochrones='mist' is the MIST v2.5 grid (optional package "
                   "lachesis-grids: pip install 'smnet-sps[mist]')")


def _cmd_table(path):
    """The needed columns of a CMD file as {CMD name: float array} and the line number of each row.

    Comment lines ('#') are skipped; the column header is the line whose first word (after any '#') is
    ``Zini`` (CMD 3.x) or whose first two are ``Z log(age/yr)`` (CMD 2.x, :data:`_CMD2_ALIASES`): CMD repeats
    it before every isochrone, and every copy must be the same."""
    header, idx, cols, line_nos, mist = None, None, [], [], False
    with _open_text(path) as fh:
        for line_no, line in enumerate(fh, 1):
            words = line.lstrip("#").split()
            # a MIST web-interpolator file (.iso, .cmd: '# MIST version number', 'log10_isochrone_age_yr')
            # was told only that it is "not a CMD output"
            mist = mist or "log10_isochrone_age_yr" in words or "MIST version" in line
            names = _cmd_header_names(words)
            if names is not None:
                if header is None:
                    header = names
                    missing = [c for c in _CMD_COLUMNS if c not in names and c not in _CMD_OPTIONAL]
                    if missing:
                        raise ValueError(f"{path}, line {line_no}: the CMD column header lacks {missing}; an "
                                         f"isochrone set needs {[c for c in _CMD_COLUMNS if c != 'C_O']} "
                                         f"(C_O optional; CMD 2.x: Z, log(age/yr), M_ini, M_act, logL/Lo, "
                                         f"logTe, logG, stage), found {words}")
                    idx = {c: names.index(c) for c in _CMD_COLUMNS if c in names}
                elif names != header:
                    raise ValueError(f"{path}, line {line_no}: a second column header differs from the "
                                     "first; one file must hold one CMD output (the same columns throughout)")
                continue
            if not words or line.lstrip().startswith("#"):
                continue
            if header is None:
                raise ValueError(f"{path}, line {line_no}: data before the column header; not a CMD output "
                                 "file (a CMD file has '#' comment lines, then a header line starting with "
                                 "'# Zini' or 'Zini': Zini MH logAge Mini int_IMF Mass logL logTe logg label "
                                 "... (CMD 3.x), or with '# Z log(age/yr)': Z log(age/yr) M_ini M_act "
                                 "logL/Lo logTe logG ... stage (CMD 2.x)). A table in FSPS's format: "
                                 "convert_fsps_isochrones" + (_MIST_FILE_HINT if mist else ""))
            if len(words) != len(header):
                raise ValueError(f"{path}, line {line_no}: {len(words)} values for the header's "
                                 f"{len(header)} columns; a damaged or hand-edited file?")
            try:
                cols.append([float(words[j]) for j in idx.values()])
            except ValueError:
                raise ValueError(f"{path}, line {line_no}: a value that is not a number in columns "
                                 f"{list(idx)}") from None
            line_nos.append(line_no)
    if header is None:
        raise ValueError(f"{path}: no CMD column header (a line starting with '# Zini' or 'Zini', CMD 3.x, "
                         "or '# Z log(age/yr)', CMD 2.x); not an output of PARSEC's CMD web form "
                         "(http://stev.oapd.inaf.it/cgi-bin/cmd)" + (_MIST_FILE_HINT if mist else ""))
    if not cols:
        raise ValueError(f"{path}: a CMD header but no isochrone rows")
    data = np.array(cols, float)
    return {c: data[:, k] for k, c in enumerate(idx)}, np.array(line_nos)


def _check_cmd_values(path, table, line_nos):
    """Every value finite and in its column's range (the ranges of the FSPS conversion), labels integers."""
    for c, values in table.items():
        _, unit, lo, hi = _CMD_COLUMNS[c]
        bad = ~np.isfinite(values) | (values < lo) | (values > hi) | ((values <= 0) if c == "Zini" else False)
        if c == "label":
            bad |= values != np.round(values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            allowed = ("a whole number >= 0 (CMD's evolutionary label)" if c == "label" else
                       f"a finite {unit} in {lo:g} .. {hi:g}" + (" (> 0)" if c == "Zini" else ""))
            raise ValueError(f"{path}, line {line_nos[row]}: {c} = {values[row]:g}; allowed: {allowed} "
                             f"({int(bad.sum())} bad values in {c}). Wrong unit or a damaged file?")


@functools.lru_cache(maxsize=8)
def _read_cmd(path, version, zsun):
    """The set of the CMD file ``path`` (resolved); ``version`` (:func:`_file_version`) only keys the cache,
    so the same unchanged file gives the same set object (the SSP cache is keyed on the set)."""
    from .mist import _ArrayIsochroneSet, white_dwarf_start
    table, line_nos = _cmd_table(path)
    _check_cmd_values(path, table, line_nos)
    zs, iz = np.unique(table["Zini"], return_inverse=True)
    ages, ia = np.unique(table["logAge"], return_inverse=True)
    # one contiguous block per (Z, age), in file order (CMD lists each isochrone by increasing Mini)
    block = iz * ages.size + ia
    runs = np.flatnonzero(np.diff(block)) + 1
    firsts = np.concatenate([[0], runs])
    if np.unique(block[firsts]).size != firsts.size:
        seen = {}
        for f in firsts:
            if block[f] in seen:
                raise ValueError(f"{path}: the isochrone Z = {zs[iz[f]]:g}, logAge = {ages[ia[f]]:g} appears "
                                 f"twice (from lines {line_nos[seen[block[f]]]} and {line_nos[f]}); two CMD "
                                 "outputs pasted together? Keep one copy of each isochrone")
            seen[block[f]] = f
    have = np.zeros(zs.size * ages.size, bool)
    have[block[firsts]] = True
    if not have.all():
        gaps = [(zs[k // ages.size], ages[k % ages.size]) for k in np.flatnonzero(~have)]
        listed = ", ".join(f"(Z {z:g}, logAge {a:g})" for z, a in gaps[:4])
        raise ValueError(f"{path}: {len(gaps)} of the {have.size} (Z, age) isochrones are missing: {listed}"
                         f"{' ...' if len(gaps) > 4 else ''}; the set interpolates on a full grid, so it "
                         f"needs every age at every Z ({zs.size} Z x {ages.size} ages)")
    order = np.argsort(block, kind="stable")
    start = np.zeros((zs.size, ages.size), np.int64)
    count = np.zeros_like(start)
    keep, pos = [], 0
    for k in range(have.size):
        rows = order[np.searchsorted(block[order], k):np.searchsorted(block[order], k, side="right")]
        z, a = zs[k // ages.size], ages[k % ages.size]
        rows = rows[table["label"][rows] < CMD_WHITE_DWARF_LABEL]   # white dwarfs: remnants, not stars
        mini = table["Mini"][rows]
        if (np.diff(mini) < 0).any():
            j = rows[int(np.flatnonzero(np.diff(mini) < 0)[0]) + 1]
            raise ValueError(f"{path}, line {line_nos[j]}: Mini decreases within the isochrone Z = {z:g}, "
                             f"logAge = {a:g}; the IMF weights need each isochrone in increasing "
                             "initial mass, as CMD writes it")
        phase = np.array([CMD_LABEL_PHASES[int(v)] for v in table["label"][rows]], np.int16)
        rows = rows[:white_dwarf_start(phase, table["logTe"][rows])]   # a cooling track labelled post-AGB
        if rows.size == 0:
            raise ValueError(f"{path}: the isochrone Z = {z:g}, logAge = {a:g} has no star left after its "
                             "white dwarfs (label >= 10) are dropped")
        start[k // ages.size, k % ages.size], count[k // ages.size, k % ages.size] = pos, rows.size
        keep.append(rows)
        pos += rows.size
    rows = np.concatenate(keep)
    columns = {_CMD_COLUMNS[c][0]: table[c][rows] for c in ("Mini", "Mass", "logL", "logTe", "logg")}
    columns["co"] = table["C_O"][rows] if "C_O" in table else np.zeros(rows.size)
    columns["phase"] = np.array([CMD_LABEL_PHASES[int(v)] for v in table["label"][rows]], np.int16)
    meta = {"zsun": zsun, "title": f"PARSEC from CMD ({Path(path).name})", "source": "cmd", "path": str(path),
            "has_co": "C_O" in table,
            "citation": "Bressan et al. 2012, MNRAS 427, 127 (PARSEC; see the references in the file's "
                        "header); CMD: http://stev.oapd.inaf.it/cgi-bin/cmd"}
    return _ArrayIsochroneSet(f"cmd:{Path(path).name}", zs, ages, start, count, columns, meta)


def read_cmd_isochrones(path, zsun=CMD_ZSUN):
    """An :class:`IsochroneSet` from a file of PARSEC's CMD web form (http://stev.oapd.inaf.it/cgi-bin/cmd).

    Parameters
    ----------
    path : path-like, the CMD output as downloaded (optionally gzipped: ``.gz``): '#' comment lines, a
        column header line starting with ``# Zini`` or ``Zini`` (repeated before each isochrone or not), and
        one block of rows per (Z, age). Needed columns: ``Zini``, ``logAge``, ``Mini``, ``Mass`` (or
        ``Mact``), ``logL``, ``logTe``, ``logg``, ``label``; ``C_O`` (surface C/O, which sets C-rich vs
        O-rich TP-AGB spectra for ``special_phases="dedicated"``) is used when present, else 0 (O-rich).
        Other columns (``MH``, ``int_IMF``, magnitudes ...) are ignored. CMD 2.x's layout is read too: a
        header starting with ``# Z log(age/yr)`` (tab-separated, with or without the '#'), whose ``Z``,
        ``log(age/yr)``, ``M_ini``, ``M_act``, ``logL/Lo``, ``logG``, ``C/O`` and ``stage`` are the columns
        above (a 2.x file of tracks without ``stage``, Padova's before PARSEC, is refused: no phases).
    zsun : float, the solar metal mass fraction of the tracks (default 0.0152, PARSEC v1.2S's):
        [M/H] = log10(Z / zsun) for the spectra and ``logzsol`` arguments.

    The Z grid is the distinct ``Zini``, the ages the distinct ``logAge``; the file must hold every age at
    every Z. SSPs interpolate between neighbouring Z and ages; a file of one Z (or one age), CMD's most
    common download, gives SSPs at that Z (age) only, any other being a ValueError that names it
    (:meth:`IsochroneSet.check_z`, :meth:`IsochroneSet.check_age`). Labels become FSPS phase codes by
    :data:`CMD_LABEL_PHASES`; white dwarfs (label >= :data:`CMD_WHITE_DWARF_LABEL`, and any cooling track
    past the hottest post-AGB point) are dropped, so that they count as remnants. Values are checked as in
    :func:`convert_fsps_isochrones`. Anything else is a ValueError naming the line or isochrone.

    The file is read once per session and file version (a file rewritten since is read again); the same
    file gives the same set object, so SSPs computed from it are cached (:func:`smnet_sps.ssp.ssp_spectrum`).
    """
    zsun = check_zsun(zsun, "zsun (of the CMD tracks)", "0.0152 (PARSEC v1.2S)")
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"CMD isochrone file {path} not found")
    return _read_cmd(str(path), _file_version(path), zsun)


def _npz_family(path):
    """The family tag of a table written by :func:`convert_fsps_isochrones`, or None if ``path`` is no zip."""
    import zipfile
    if not zipfile.is_zipfile(path):
        return None
    # only the tag (the whole table takes ~0.1 s); damage is named as _load names it
    tag = read_npz(path, "smnet-sps isochrone table", _REBUILD, keys=("family",))
    if "family" not in tag:
        raise ValueError(f"{path} is not an '{FORMAT}' table (no family tag); write one with "
                         "convert_fsps_isochrones")
    return str(tag["family"])


def is_family_name(value):
    """True where ``isochrones=`` names a family (its aliases included), not a set or a file."""
    return isinstance(value, str) and value.strip().lower() in (*_ALIASES, "mist")


def resolve_isochrones(isochrones):
    """What ``isochrones=`` takes anywhere in the SSP code -> an :class:`IsochroneSet`.

    ``isochrones``: an :class:`IsochroneSet` (used as is), a family name ("parsec", "padova", "mist"), or
    the path of a file: a table written by :func:`convert_fsps_isochrones` (``.npz``) or an output of
    PARSEC's CMD web form (:func:`read_cmd_isochrones`, with PARSEC's Zsun 0.0152; for another Zsun, pass
    ``read_cmd_isochrones(path, zsun=...)``). A family name wins over a file of that name."""
    if isinstance(isochrones, IsochroneSet):
        return isochrones
    if is_family_name(isochrones):
        return load_isochrones(isochrones)
    if isinstance(isochrones, (str, os.PathLike)) and not isinstance(isochrones, bytes):
        path = Path(isochrones)
        if path.is_file():
            family = _npz_family(path)
            return read_cmd_isochrones(path) if family is None else load_isochrones(family, path)
        raise ValueError(f"isochrones {str(isochrones)!r}: neither an isochrone family ({FAMILY_CHOICES}) "
                         "nor an existing file (an output of PARSEC's CMD web form, or a table written by "
                         "convert_fsps_isochrones)")
    raise ValueError(f"isochrones must be a family name ({FAMILY_CHOICES}), an IsochroneSet or the path "
                     f"of an isochrone file; got {type(isochrones).__name__}")
