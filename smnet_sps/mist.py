"""MIST isochrones (v2.5, v/v_crit = 0.4) read at run time from the optional ``lachesis-grids`` package.

``load_isochrones("mist")`` (and ``isochrones="mist"`` anywhere in smnet-sps) lands here. Nothing is copied
into smnet-sps: the HDF5 grid shipped inside ``lachesis-grids`` (``pip install lachesis-grids``, or
``pip install smnet-sps[mist]``) is read once per process (again if the file changes) and turned into an
:class:`~smnet_sps.isochrones.IsochroneSet`.

The file (LACHESIS "sparse_v1" layout) holds 15 [Fe/H] (-4 .. +0.5) x 107 ages (log t = 5.0 .. 10.3) x EEPs;
each (Fe/H, age) block is a contiguous EEP range (``offsets`` = first EEP, ``lengths`` = number of EEPs) whose
missing EEPs are NaN rows. Conversion:

* Z = Zsun 10^[Fe/H] with Zsun = 0.0142 (MIST's protosolar Asplund et al. 2009 scale);
* points are sorted by initial mass (FSPS's IMF weights need it); NaN rows and phase -9 rows are dropped;
* the white-dwarf cooling sequence is dropped (:func:`white_dwarf_start`): MIST's phase 6 runs on past the
  post-AGB knee down the whole cooling sequence (10 Gyr, solar: 262 of its 265 points, log g up to 8.7, log
  L down to -4.7, initial masses 1.04-6.5 M_sun), which would count white dwarfs as surviving stars and
  leave :func:`smnet_sps.imf.remnant_mass` only the stars above 6.5 M_sun at every age. Cut at the post-AGB
  track's hottest point, the largest surviving initial mass is the white-dwarf progenitor limit and the
  remnants are counted as for PARSEC, whose FSPS tables stop before the white dwarfs, and Padova (FSPS's
  tables keep some of the cooling sequence as phase 6, 14,104 points with log g > 6 over the set, up to 13.8;
  kept as FSPS keeps them, they move an SSP's stellar mass by <= 0.0011 M_sun and its L_bol by < 1e-3)
  (10 Gyr, solar: stars 0.546 -> 0.455 M_sun, remnants 0.051 -> 0.143, PARSEC 0.453 / 0.144; the light
  dropped, the white dwarfs', is at most 0.09 % of an SSP's, 0.07 % at 10 Gyr solar);
* phases are MIST's, which FSPS also uses (-1 pre-MS, 0 MS, 2 RGB, 3 core-He, 4 E-AGB, 5 TP-AGB,
  6 post-AGB, 9 WR); the set's ``phase_names`` call -1 "pre-main sequence" (:data:`PHASE_NAMES` names it
  after PARSEC's usage, the RGB tip to HB transition);
* MIST gives no surface C/O here: ``co`` is 0 (all TP-AGB stars O-rich for ``special_phases="dedicated"``).

Citations: Choi et al. 2016, ApJ 823, 102; Dotter 2016, ApJS 222, 8; MIST v2.5 (Dotter et al., in prep.).
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from .isochrones import IsochroneSet, _file_version, _freeze

__all__ = ["MIST_FILE", "MIST_ZSUN", "load_mist_isochrones", "mist_available", "white_dwarf_start"]

MIST_FILE = "mist_v2.5_vvcrit0.4.h5"
MIST_ZSUN = 0.0142
CITATION = ("Choi et al. 2016, ApJ 823, 102; Dotter 2016, ApJS 222, 8; MIST v2.5 via the lachesis-grids "
            "package")
_INSTALL_HINT = ("MIST isochrones need the optional package 'lachesis-grids' (about 75 MB): "
                 "pip install lachesis-grids   (or: pip install 'smnet-sps[mist]')")


def mist_available():
    """True when ``lachesis-grids`` (and so the MIST grid) is installed."""
    try:
        _grid_file()
    except ImportError:
        return False
    return True


def _grid_file():
    try:
        import lachesis_grids
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    try:
        return Path(lachesis_grids.grid_path(MIST_FILE))
    except FileNotFoundError as exc:
        raise ImportError(f"lachesis-grids is installed but has no {MIST_FILE}; {_INSTALL_HINT}") from exc


def white_dwarf_start(phase, log_teff):
    """Index of the first white-dwarf cooling point of one isochrone sorted by initial mass (``phase.size``
    when it has none).

    The cooling sequence starts after the hottest post-AGB (MIST phase 6) point, the knee of the post-AGB
    track where the star stops heating at nearly constant luminosity and fades: everything beyond it in
    initial mass is a white dwarf (log g 6.7-8.7 over the whole grid), whatever its phase (MIST flags some at
    [Fe/H] = -2.5 as TP-AGB, phase 5). ``log_teff``: log10(Teff / K).
    """
    post_agb = np.flatnonzero(np.asarray(phase) == 6)
    if post_agb.size == 0:
        return len(phase)
    return int(post_agb[np.argmax(np.asarray(log_teff)[post_agb])]) + 1


class _ArrayIsochroneSet(IsochroneSet):
    """An IsochroneSet built from decoded float columns (the shipped tables decode scaled integers)."""

    def __init__(self, name, Z, log_age, start, count, columns, meta):
        self.name = name
        self.meta = meta
        self.zsun = float(meta["zsun"])
        self.citation = meta["citation"]
        self.Z = np.array(Z, float)
        self.log_age = np.array(log_age, float)
        self.start = np.array(start, np.int64)
        self.count = np.array(count, np.int64)
        self.columns = columns
        self.n_points = int(self.count.sum())
        _freeze(self)            # cached and shared, as the shipped sets


@functools.lru_cache(maxsize=2)
def _load(path, version):
    """The MIST set in the grid file ``path`` (resolved); ``version``
    (:func:`smnet_sps.isochrones._file_version`) only keys the cache: a file rewritten in the same session
    is read again."""
    import h5py
    with h5py.File(path, "r") as f:
        if f.attrs.get("storage") != "sparse_v1" or str(f.attrs.get("grid_name")) != "MIST":
            raise ValueError(f"{path} is not a LACHESIS 'sparse_v1' MIST grid")
        cols = [str(c) for c in f.attrs["columns"]]
        feh = f["feh_values"][:].astype(float)
        ages = f["age_values"][:].astype(float)
        lengths = f["lengths"][:].astype(np.int64)
        values = f["values"][:]
    if lengths.size != feh.size * ages.size:
        raise ValueError(f"{path}: {lengths.size} blocks for {feh.size} [Fe/H] x {ages.size} ages")
    idx = {c: cols.index(c) for c in ("initial_mass", "star_mass", "log_L", "log_Teff", "log_g", "phase")}
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    keep_rows, start, count, pos = [], np.zeros((feh.size, ages.size), np.int64), \
        np.zeros((feh.size, ages.size), np.int64), 0
    for k in range(lengths.size):
        iz, ia = divmod(k, ages.size)
        block = values[starts[k]:starts[k] + lengths[k]]
        ok = np.all(np.isfinite(block[:, list(idx.values())]), axis=1) & (block[:, idx["phase"]] != -9)
        rows = np.flatnonzero(ok) + starts[k]
        order = np.argsort(values[rows, idx["initial_mass"]], kind="stable")
        rows = rows[order]
        mini = values[rows, idx["initial_mass"]]
        rows = rows[np.concatenate([[True], np.diff(mini) > 0])]      # strictly increasing initial mass
        # white dwarfs are remnants (ssp: remnant_mass above the largest initial mass), not stars
        rows = rows[:white_dwarf_start(values[rows, idx["phase"]], values[rows, idx["log_Teff"]])]
        if rows.size == 0:
            raise ValueError(f"{path}: no valid points at [Fe/H] = {feh[iz]}, log t = {ages[ia]}")
        start[iz, ia], count[iz, ia] = pos, rows.size
        keep_rows.append(rows)
        pos += rows.size
    rows = np.concatenate(keep_rows)
    v = values[rows].astype(float)
    columns = {"mini": v[:, idx["initial_mass"]], "mact": v[:, idx["star_mass"]], "logl": v[:, idx["log_L"]],
               "logt": v[:, idx["log_Teff"]], "logg": v[:, idx["log_g"]], "co": np.zeros(rows.size),
               "phase": v[:, idx["phase"]].astype(np.int16)}
    meta = {"zsun": MIST_ZSUN, "citation": CITATION, "title": "MIST v2.5 (vvcrit 0.4) from lachesis-grids",
            "source": "lachesis-grids", "path": str(path), "feh": feh}
    return _ArrayIsochroneSet("mist", MIST_ZSUN * 10.0 ** feh, ages, start, count, columns, meta)


def load_mist_isochrones(path=None):
    """The MIST isochrone set (see the module docstring); ``path`` overrides the lachesis-grids file.

    The grid is read once per session and file version: a file rewritten since (same path) is read again.

    Raises
    ------
    ImportError
        With installation instructions when ``lachesis-grids`` is not installed.
    """
    path = (Path(path) if path is not None else _grid_file()).resolve()
    return _load(str(path), _file_version(path))
