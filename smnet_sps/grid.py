"""The union training grid: every union library resampled onto one wavelength grid, in one HDF5 file.

Pure functions: :func:`build_grid` (read + convert + resample), :func:`save_grid` / :func:`load_grid`
(the HDF5 format of docs/CONTRACTS.md), :func:`grid_info` (a text summary), :func:`plot_coverage`
(log Teff - log g diagram coloured by library), :func:`export_phase_libraries` /
:func:`load_phase_libraries` (the WR / post-AGB / TP-AGB phase libraries as a small ``.npz`` shipped in
the package), and :func:`add_cli` (``smnet-sps grid build`` / ``smnet-sps grid info``).
"""
from __future__ import annotations

import datetime
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy import units as u

from .checksums import file_sha256, read_npz
from .constants import FLAM_UNIT, PACKAGE_DATA, PARAMETER_DOMAINS, SIGMA_SB
from .libraries import DEFAULT_LIBRARIES, DEFAULT_NOTE, LIBRARIES, PHASE_LIBRARIES, read_library
from .lsf import LSF_DOC, LSF_SHAPE, grid_lsf_fwhm
from .medium import air_to_vacuum, air_to_vacuum_derivative, check_medium
from .output_files import atomic_output, json_attr, save_plot
from .progress import want_progress
from .wavegrid import (POINT_SAMPLE_WIDTH, WAVELENGTH_GRID_DOC, bin_edges, check_wavelength_grid,
                       default_wavelength, resample)

__all__ = ["UnionGrid", "PhaseLibrary", "build_grid", "check_stellar_parameters", "save_grid", "load_grid",
           "grid_info", "skipped_libraries", "plot_coverage", "grid_content_sha256", "BUILD_RECORD_ATTRS",
           "export_phase_libraries", "load_phase_libraries", "PHASE_FILE", "add_cli"]

FORMAT = "smnet-sps union grid"
FORMAT_VERSION = 1
PHASE_FILE = PACKAGE_DATA / "phase_libraries.npz"


@dataclass
class PhaseLibrary:
    """A library without log g (WR, post-AGB, TP-AGB) on the common wavelength grid.

    ``teff`` [K], ``logz`` [dex; NaN = not metallicity specific], ``flux`` (n, n_wave) surface F_lambda
    [erg s^-1 cm^-2 A^-1] (NaN where unknown), ``mask`` (n, n_wave) True where known, ``meta`` dict
    (citation, kind, convention, source files, optional ``teff_table``/``logz_table``).
    """

    teff: np.ndarray
    logz: np.ndarray
    flux: np.ndarray
    mask: np.ndarray
    meta: dict = field(default_factory=dict)


@dataclass
class UnionGrid:
    """The union training grid (see docs/CONTRACTS.md).

    Attributes
    ----------
    wavelength : ndarray (n_wave,)
        Common grid [Angstrom].
    teff, logg, logz : ndarray (n,)
        Teff [K], log g [cgs], [M/H] [dex].
    library_id : ndarray (n,) int16
        Index into ``library_names``.
    library_names : list of str
    flux : ndarray (n, n_wave) float32
        Surface F_lambda [erg s^-1 cm^-2 A^-1]; NaN where unknown.
    mask : ndarray (n, n_wave) bool
        True where the library has data.
    source_file : ndarray (n,) str
        File of each spectrum, relative to the libraries root.
    libraries : dict
        Per library: citation, folder, convention, n_spectra, n_dropped, bolometric_deviation.
    provenance : list of str
        ``"relative/path sha256"`` of every file read.
    phase_libraries : dict of str -> PhaseLibrary
    attrs : dict
        File attributes (created, build time, notes).
    """

    wavelength: np.ndarray
    teff: np.ndarray
    logg: np.ndarray
    logz: np.ndarray
    library_id: np.ndarray
    library_names: list
    flux: np.ndarray
    mask: np.ndarray
    source_file: np.ndarray
    libraries: dict
    provenance: list
    phase_libraries: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.teff)

    @property
    def wavelength_quantity(self):
        """Common wavelength grid as a Quantity [Angstrom]."""
        return self.wavelength * u.AA

    def flux_quantity(self):
        """Surface flux as a Quantity [erg s^-1 cm^-2 A^-1] (NaN where unknown)."""
        return self.flux * FLAM_UNIT

    def select(self, name):
        """Boolean row selector of library ``name``."""
        if name not in self.library_names:
            raise ValueError(f"library {name!r} not in this grid; it holds {', '.join(self.library_names)}")
        return self.library_id == self.library_names.index(name)


# ----------------------------------------------------------------------------------------------- build


def _deviation_stats(ratio):
    dev = np.asarray(ratio, float) - 1.0
    return {"median": float(np.median(dev)), "max_abs": float(np.max(np.abs(dev))),
            "n": int(dev.size)}


def _on_grid_ratio(wave, flux, mask, teff):
    """Integral of the resampled flux over the covered bins / sigma Teff^4 (what a user of the grid sees)."""
    width = np.diff(bin_edges(wave))
    return np.nansum(np.where(mask, flux, 0.0) * width, axis=1) / (SIGMA_SB * teff ** 4)


#: the one wavelength medium of the union grid and of everything the package returns
GRID_MEDIUM = "vacuum"
MEDIUM_CONVERSION = ("air -> vacuum with smnet_sps.medium.air_to_vacuum (Morton 2000 / Ciddor 1996) "
                     "before resampling; no default library needed it (all are vacuum, see each reader's "
                     "MEDIUM_NOTE)")


def _to_vacuum(lib, medium):
    """The library's wavelength blocks in vacuum: converted from air (Morton 2000 / Ciddor 1996) if needed.

    The flux density per Angstrom is rescaled by d(lambda_air)/d(lambda_vac) (~1 / 1.0003; 1 below
    2,000 A), analytic (:func:`~smnet_sps.medium.air_to_vacuum_derivative`) so that the integral is kept
    pixel by pixel: a finite difference across the 2,000 A gap took 25 % off the two pixels beside it.
    Below 2,000 A wavelengths are vacuum by convention and stay as they are (the axis stays ordered: air ->
    vacuum only opens a 0.65 A gap at 2,000 A).
    """
    check_medium(medium)
    if medium == GRID_MEDIUM:
        return lib.wavelengths, lib.fluxes
    waves, fluxes = [], []
    for w, f in zip(lib.wavelengths, lib.fluxes):
        waves.append(air_to_vacuum(w))
        fluxes.append(np.asarray(f) / air_to_vacuum_derivative(w))
    return waves, fluxes


def _to_common(lib, wave, medium="vacuum"):
    """Resample every block of a LibrarySpectra onto ``wave``: (flux (n, n_wave), mask (n, n_wave)).

    A library tabulated in air (``medium="air"``) is converted to vacuum first.
    """
    fluxes, masks = [], []
    # on the default grid CK04, BaSeL and CM87 are copied as tabulated: samples at the wide far-infrared
    # pixels, which every other library then takes too (wavegrid.POINT_SAMPLE_WIDTH)
    default = default_wavelength().value
    point_above = POINT_SAMPLE_WIDTH if wave.size == default.size and np.allclose(wave, default) else None
    for w, f in zip(*_to_vacuum(lib, medium)):
        if w.size == wave.size and np.array_equal(w, wave):
            out, m = np.array(f, float), np.ones(wave.size, bool)    # already on the grid: no resampling
        else:
            out, m = resample(w, f, wave, point_above=point_above)
        fluxes.append(out)
        masks.append(np.broadcast_to(m, out.shape))
    return np.concatenate(fluxes), np.concatenate(masks)


_PHYSICAL = {"ck04", "nextgen", "basel22"}   # stored in physical units: the sigma Teff^4 check is a test
# CM87 is stored per unit bolometric flux and multiplied by sigma Teff^4, not divided by its own integral, so
# its integral (0.82-1.00 in the PEGASE file) is a test too: a damaged value would pass with its scale
_SCALE_KEPT = _PHYSICAL | {"cm87"}


def _library_record(lib, flux, mask, wave, medium="vacuum", medium_note=""):
    """The per-library metadata dict stored in the grid file."""
    native = _deviation_stats(lib.raw_ratio)
    native["basis"] = ("integral of the converted native F_lambda over its tabulated range / sigma Teff^4"
                       if lib.name in _PHYSICAL else
                       "integral of the native normalised spectrum over its tabulated range / its unit "
                       "normalisation (before rescaling to sigma Teff^4)")
    on_grid = _deviation_stats(_on_grid_ratio(wave, flux, mask, lib.teff))
    missing = {"missing_files": list(lib.extra["missing_files"])} if lib.extra.get("missing_files") else {}
    return {**missing, "citation": lib.citation, "folder": lib.folder, "convention": lib.convention,
            "n_spectra": int(len(lib)), "n_dropped": int(lib.n_dropped),
            "native_medium": medium, "medium_note": medium_note,
            "medium_conversion": ("none (native vacuum)" if medium == GRID_MEDIUM else MEDIUM_CONVERSION),
            "physical_units": lib.name in _PHYSICAL,
            "bolometric_deviation": native, "bolometric_deviation_on_grid": on_grid,
            "teff_range": [float(lib.teff.min()), float(lib.teff.max())],
            "logg_range": ([float(np.nanmin(lib.logg)), float(np.nanmax(lib.logg))]
                           if lib.has_logg else None),
            "logz_range": ([float(np.nanmin(lib.logz)), float(np.nanmax(lib.logz))]
                           if np.isfinite(lib.logz).any() else None)}


_LABELS = {"teff": "Teff", "logg": "log g", "logz": "[M/H]"}


def check_stellar_parameters(lib, root=None):
    """Refuse a library holding a star outside the physical domain the generators accept.

    The domain is the generators' own (:data:`~smnet_sps.constants.TEFF_DOMAIN`, ``LOGG_DOMAIN``,
    ``LOGZ_DOMAIN``), so the grid never holds a node no generator could be asked about. Checked here, on
    every reader's output, rather than in each reader. NaN log g (phase libraries have none) is allowed in
    phase libraries only, NaN [M/H] ("not metallicity specific") only in those whose registry entry says so
    (``metallicity_specific=False``: the Lancon & Mouhcine TP-AGB spectra); a union library trains the model
    on all three parameters. ``root`` (the libraries folder) makes the file name in the message complete.

    Raises
    ------
    ValueError
        Naming the file, the star (its position in that file, counted from 1), the value and the range; for
        a value read from an index or Teff table (``lib.parameter_source``), that file and its line.
    """
    entry = LIBRARIES.get(lib.name)
    nan_ok = {"teff": False, "logg": entry is not None and entry.kind == "phase",
              "logz": entry is not None and not entry.metallicity_specific}
    for attr, ((lo, hi), unit) in PARAMETER_DOMAINS.items():
        label = _LABELS[attr]
        values = np.asarray(getattr(lib, attr), float)
        bad = (values < lo) | (values > hi) | (np.isnan(values) & ~nan_ok[attr]) | np.isinf(values)
        if not bad.any():
            continue
        i = int(np.flatnonzero(bad)[0])
        allowed = f"the physical range {lo:g} .. {hi:g} {unit}"
        if attr == "logz" and np.isnan(values[i]):
            allowed += ("; NaN (not metallicity specific) is allowed only in "
                        + ", ".join(n for n, e in LIBRARIES.items() if not e.metallicity_specific))
        held = getattr(lib, "parameter_source", {}).get(attr)
        if held:        # the value comes from an index / Teff table, not from the spectrum file: blame that
            source, line = held[i]
            path = Path(root) / source if root is not None else Path(source)
            raise ValueError(f"{path}: line {line} gives {label} = {values[i]:g} (for {lib.source_file[i]}), "
                             f"outside {allowed}; {int(bad.sum())} star(s) "
                             f"of {lib.name} outside, so the file is damaged: replace it with the original")
        source = lib.source_file[i]
        star = sum(1 for other in lib.source_file[:i] if other == source) + 1
        path = Path(root) / source if root is not None else Path(source)
        raise ValueError(f"{path}: star {star} of this file (counted from 1; Teff {lib.teff[i]:g} K) has "
                         f"{label} = {values[i]:g}, outside {allowed}; "
                         f"{int(bad.sum())} star(s) of {lib.name} outside, so the file is damaged: replace "
                         "it with the original")


#: a physical-unit spectrum whose integral is outside [1/2, 2] x sigma Teff^4 is in other units or damaged
#: (the real libraries stay within 4 %: CK04 0.037, NextGen 1e-4, BaSeL 6e-4)
BOLOMETRIC_LIMIT = 2.0


def check_bolometric_flux(lib, root=None):
    """Refuse a library whose scale is kept (CK04, NextGen, BaSeL in physical units; CM87 per unit flux)
    with a spectrum whose integral over its native range is off sigma Teff^4 by more than
    :data:`BOLOMETRIC_LIMIT` (a file in other flux units, scaled, or damaged): it would pass into the grid
    with its wrong scale.
    Libraries normalised per spectrum are rescaled to sigma Teff^4 anyway.

    Raises
    ------
    ValueError
        Naming the file, the star and its integral in units of sigma Teff^4.
    """
    if lib.name not in _SCALE_KEPT:
        return
    ratio = np.asarray(lib.raw_ratio, float)
    bad = ~((ratio >= 1.0 / BOLOMETRIC_LIMIT) & (ratio <= BOLOMETRIC_LIMIT))
    if not bad.any():
        return
    i = int(np.flatnonzero(bad)[0])
    path = Path(root) / lib.source_file[i] if root is not None else Path(lib.source_file[i])
    n_bad = int(bad.sum())
    raise ValueError(f"{path}: the spectrum at Teff {lib.teff[i]:g} K, log g {lib.logg[i]:g}, [M/H] "
                     f"{lib.logz[i]:g} integrates to {ratio[i]:.4g} x sigma Teff^4 (the {lib.name} models "
                     f"hold it to a few per cent); {n_bad} spectr{'um' if n_bad == 1 else 'a'} of {lib.name} "
                     f"outside 1/{BOLOMETRIC_LIMIT:g}..{BOLOMETRIC_LIMIT:g}: the file is in other flux units "
                     "or damaged; replace it with the original")

def _relative_to_root(path, root):
    """``path`` relative to the libraries folder as given, for the provenance list.

    Not resolved: library folders linked into ``root`` (symlinks) resolve outside it, and the path the user
    gave is the meaningful one. A file that is not below ``root`` at all keeps its absolute path.
    """
    path = Path(path)
    try:
        return str(path.relative_to(root))
    except ValueError:
        pass
    try:
        return str(path.resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path.resolve())


def _parse_only(only):
    if only is None:
        return list(DEFAULT_LIBRARIES)
    names = [n.strip() for n in (only.split(",") if isinstance(only, str) else only) if n.strip()]
    bad = [n for n in names if n not in LIBRARIES]
    if bad or not names:
        raise ValueError(f"unknown library name(s) {bad or names}; valid names: {', '.join(LIBRARIES)}")
    return [n for n in LIBRARIES if n in names]


def _checked_wavelength(wavelength):
    """The common wavelength grid [A] as a float array (a Quantity converted), checked by
    :func:`~smnet_sps.wavegrid.check_wavelength_grid`."""
    if isinstance(wavelength, u.Quantity):
        try:
            wavelength = wavelength.to_value(u.AA)
        except u.UnitConversionError as exc:
            raise ValueError(f"wavelength grid in {wavelength.unit} is not a wavelength (give Angstrom, or a "
                             "Quantity in a length unit)") from exc
    try:
        wave = np.asarray(wavelength, float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"wavelength grid must be an array of numbers [Angstrom]: {exc}") from exc
    return check_wavelength_grid(wave)


def build_grid(library_dir, only=None, wavelength=None, progress=None, log=None, strict=False):
    """Read the native libraries and build the union grid (plus the phase libraries).

    A library that cannot be read (missing, damaged or degenerate file: the readers raise
    ``FileNotFoundError`` / ``ValueError`` naming the file; or a star outside the generators' physical
    domain, see :func:`check_stellar_parameters`) is, by default, **skipped**: a loud
    ``SKIPPED`` line goes to the log and the reason is recorded in ``attrs["skipped_libraries"]``
    (``{name: reason}``, also shown by :func:`grid_info`). Why skip by default: one bad file should not block
    a rebuild of the other libraries, and the record in the file keeps the omission visible to every later
    user of the grid. With ``strict=True`` the first unreadable library fails the build. The build always
    fails if no library (or, when union libraries were asked for, no union library) could be read.

    Parameters
    ----------
    library_dir : path-like
        Folder holding the library folders (``ck04_castelli_kurucz``, ``nextgen_phoenix``, ...).
    only : str or list of str, optional
        Library names to include (comma-separated string or list); default ``DEFAULT_LIBRARIES``: union
        ck04, nextgen, basel22, wmbasic, cm87; phase cmfgen_wn, cmfgen_wc, rauch_pagb, tpagb_orich,
        tpagb_crich, tpagb_crich_aringer. ``rauch_tmap`` is read only when named (its shipped file is
        degenerate and is skipped, or fails the build with ``strict``).
    wavelength : array-like or Quantity, optional
        Common wavelength grid [Angstrom] (1-d, finite, strictly increasing, within 1 A - 1e8 A; a
        ``ValueError`` otherwise, and if it holds no known pixel of a library read); default
        :func:`smnet_sps.wavegrid.default_wavelength`.
    progress : bool or None
        Show a tqdm progress bar on stderr (one step per file); None (default): when stderr is a terminal or
        in a Jupyter kernel, never into a log file (:mod:`smnet_sps.progress`).
    log : callable, optional
        Receives one line of text per library (default: print to stderr).
    strict : bool
        Fail on the first library that cannot be read instead of skipping it.

    Returns
    -------
    UnionGrid
    """
    from tqdm.auto import tqdm

    progress = want_progress(progress)
    log = log or (lambda s: print(s, file=sys.stderr))
    root = Path(library_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"libraries folder {root} does not exist (expected the folder holding "
                                "ck04_castelli_kurucz/, nextgen_phoenix/, ...; e.g. "
                                "../shared/data/libraries)")
    names = _parse_only(only)
    folders = sorted({LIBRARIES[n].folder for n in names})
    if not any((root / f).is_dir() for f in folders):
        # the wrong folder (often one library's own): one line, not a SKIPPED line per library and an error
        # repeating the same 'folder does not exist' for each
        hint = (f"it is the {root.name}/ library folder itself: give its parent, {root.parent}"
                 if root.name in {e.folder for e in LIBRARIES.values()}
                 else "give the folder holding them, e.g. ../shared/data/libraries")
        raise FileNotFoundError(f"libraries folder {root} holds none of the library folders asked for "
                                f"({', '.join(f + '/' for f in folders)}); {hint}")
    wave = _checked_wavelength(default_wavelength() if wavelength is None else wavelength)
    t0 = time.perf_counter()
    rows = {k: [] for k in ("teff", "logg", "logz", "library_id", "flux", "mask", "source_file")}
    union_names, records, phases, prov, skipped = [], {}, {}, {}, {}
    total = sum(LIBRARIES[n].n_files for n in names)
    with tqdm(total=total, desc="grid build", unit="file", disable=not progress, file=sys.stderr) as bar:
        for name in names:
            bar.set_postfix_str(name)
            try:
                lib = read_library(name, root, progress=bar.update)
                check_stellar_parameters(lib, root)     # an impossible star: a bad file, like NaN flux
                check_bolometric_flux(lib, root)        # a file in other flux units
                entry = LIBRARIES[name]
                # resampled inside the skip: a reader's output that cannot be resampled is that library's
                # failure (a SKIPPED line), not the end of the build with every library read so far
                flux, mask = _to_common(lib, wave, entry.medium)
            except (ValueError, FileNotFoundError, OSError) as exc:
                if strict:
                    raise ValueError(f"library {name} cannot be used (strict build): {exc}") from exc
                skipped[name] = f"{type(exc).__name__}: {exc}"
                log(f"!!! SKIPPED library {name}: {exc}")
                continue
            if not mask.any():       # a grid beside the library: it would hold only NaN rows
                lo, hi = min(w[0] for w in lib.wavelengths), max(w[-1] for w in lib.wavelengths)
                raise ValueError(f"wavelength grid {wave[0]:g}..{wave[-1]:g} A does not overlap library "
                                 f"{name} ({lo:g}..{hi:g} A): it would hold no known pixel; give a grid in "
                                 "Angstrom that overlaps it, or leave the library out with only=")
            # (a phase library's dark spectrum is dropped by the backend, as it always was)
            dark = ~(mask & (flux > 0)).any(1) & (LIBRARIES[name].kind != "phase")
            if dark.any():
                # written, then refused by load_grid as "damaged" (BaSeL's cool stars are zero below 912 A)
                i = int(np.flatnonzero(dark)[0])
                raise ValueError(f"wavelength grid {wave[0]:g}..{wave[-1]:g} A leaves {int(dark.sum())} "
                                 f"spectra of {name} with no positive known pixel (e.g. Teff {lib.teff[i]:g} "
                                 f"K, log g {lib.logg[i]:g}: zero flux there); give a grid that reaches "
                                 "their light, or leave the library out with only=")
            for path in lib.files:
                rel = _relative_to_root(path, root)
                if rel not in prov:
                    prov[rel] = file_sha256(path)
            rec = _library_record(lib, flux, mask, wave, entry.medium, entry.medium_note)
            records[name] = rec
            dev, dgrid = rec["bolometric_deviation"], rec["bolometric_deviation_on_grid"]
            log(f"{name:20s} {len(lib):5d} spectra"
                + (f" ({lib.n_dropped} all-zero columns dropped)" if lib.n_dropped else "")
                + (f" !!! {len(rec['missing_files'])} files its catalog lists are MISSING (e.g. "
                   f"{', '.join(rec['missing_files'][:3])}): no spectra at their parameters"
                   if rec.get("missing_files") else "")
                + f"  Teff {lib.teff.min():.0f}-{lib.teff.max():.0f} K"
                + f"  int F dlambda / sigma Teff^4 - 1: native median {dev['median']:+.4f} "
                  f"max|{dev['max_abs']:.4f}|"
                + f", on grid median {dgrid['median']:+.4f} max|{dgrid['max_abs']:.4f}|")
            if LIBRARIES[name].kind == "phase":
                meta = {"citation": lib.citation, "kind": name, "convention": lib.convention,
                        "native_medium": entry.medium, "wavelength_medium": GRID_MEDIUM,
                        "source_file": sorted(set(lib.source_file))}
                meta.update({k: np.asarray(v) for k, v in lib.extra.items()})
                phases[name] = PhaseLibrary(lib.teff, lib.logz, flux.astype(np.float32),
                                            np.array(mask, bool), meta)
                continue
            lid = len(union_names)
            union_names.append(name)
            rows["teff"].append(lib.teff)
            rows["logg"].append(lib.logg)
            rows["logz"].append(lib.logz)
            rows["library_id"].append(np.full(len(lib), lid, np.int16))
            rows["flux"].append(flux.astype(np.float32))
            rows["mask"].append(np.array(mask, bool))
            rows["source_file"].append(np.array(lib.source_file, dtype=object))
    if not union_names and not phases:
        raise ValueError("no library could be read, nothing to build: "
                         + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    asked_union = [n for n in names if LIBRARIES[n].kind == "union"]
    if asked_union and not union_names:
        raise ValueError(f"none of the union libraries {', '.join(asked_union)} could be read: "
                         + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    if skipped:
        log(f"!!! {len(skipped)} librar{'y' if len(skipped) == 1 else 'ies'} SKIPPED (recorded in the file "
            f"attrs 'skipped_libraries'): {', '.join(skipped)}; use --strict to fail instead")
    log(f"note: {DEFAULT_NOTE}")
    cat = {k: (np.concatenate(v) if v else None) for k, v in rows.items()}
    if not union_names:          # only phase libraries requested: an empty union table
        cat = {"teff": np.zeros(0), "logg": np.zeros(0), "logz": np.zeros(0),
               "library_id": np.zeros(0, np.int16), "flux": np.zeros((0, wave.size), np.float32),
               "mask": np.zeros((0, wave.size), bool), "source_file": np.zeros(0, dtype=object)}
    n = len(cat["teff"])
    elapsed = time.perf_counter() - t0
    attrs = {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "build_seconds": round(elapsed, 1), "library_dir": str(root.resolve()),
             "notes": DEFAULT_NOTE, "skipped_libraries": skipped,
             "wavelength_medium": GRID_MEDIUM, "medium_conversion": MEDIUM_CONVERSION}
    grid = UnionGrid(wave, cat["teff"], cat["logg"], cat["logz"], cat["library_id"], union_names, cat["flux"],
                     cat["mask"], cat["source_file"], records,
                     [f"{k} {v}" for k, v in sorted(prov.items())], phases, attrs)
    log(f"union grid: {n} spectra x {wave.size} pixels from {len(union_names)} libraries, "
        f"{len(phases)} phase libraries, {elapsed:.1f} s")
    return grid


# ------------------------------------------------------------------------------------------ save / load
def save_grid(grid, path):
    """Write ``grid`` to an HDF5 file (format of docs/CONTRACTS.md), atomically.

    The file is written under a temporary name in the same folder and then renamed, so a reader never
    sees a half-written file. ``grid.attrs`` (a loaded grid: every attribute of its file) is written too, but
    the format, the units and the library names always come from ``grid`` itself, so a subset or a renamed
    library re-saved from a loaded grid keeps its own names.
    """
    import h5py

    path = Path(path)
    comp = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    sdt = h5py.string_dtype()
    with atomic_output(path, overwrite=True) as tmp:          # a missing folder is created
        with h5py.File(tmp, "w") as f:
            # the grid's other attributes first: a loaded grid carries the file's (stale after a subset or
            # rename) library_names, units and format, which the values written below must replace
            for k, v in grid.attrs.items():
                # numbers, strings and arrays (lsf_fwhm) as they are; dicts and lists as JSON
                plain = isinstance(v, (int, float, str, np.ndarray, np.generic))
                f.attrs[k] = v if plain else json.dumps(v)
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["flux_unit"] = "erg s-1 cm-2 AA-1"
            f.attrs["wavelength_unit"] = "AA"
            f.attrs["wavelength_grid_doc"] = WAVELENGTH_GRID_DOC
            f.attrs["library_names"] = json.dumps(list(grid.library_names))
            f.attrs.setdefault("created", datetime.datetime.now(datetime.timezone.utc).isoformat())
            f.attrs["wavelength_medium"] = GRID_MEDIUM
            f.attrs["medium_conversion"] = MEDIUM_CONVERSION
            f.attrs["lsf_shape"] = LSF_SHAPE
            f.attrs["lsf_doc"] = LSF_DOC
            f.attrs["lsf_fwhm"] = grid_lsf_fwhm(np.asarray(grid.wavelength, float))
            f.attrs["bolometric_deviation"] = json.dumps(
                {k: v["bolometric_deviation"] for k, v in grid.libraries.items()})
            f.create_dataset("wavelength", data=np.asarray(grid.wavelength, float))
            for k in ("teff", "logg", "logz"):
                f.create_dataset(k, data=np.asarray(getattr(grid, k), float))
            f.create_dataset("library_id", data=np.asarray(grid.library_id, np.int16))
            chunks = (max(1, min(len(grid), 64)), len(grid.wavelength)) if len(grid) else None
            f.create_dataset("flux", data=np.asarray(grid.flux, np.float32), chunks=chunks, **comp)
            f.create_dataset("mask", data=np.asarray(grid.mask, bool), chunks=chunks, **comp)
            f.create_dataset("source_file", data=np.asarray(grid.source_file, dtype=object), dtype=sdt)
            g = f.create_group("libraries")
            for k, v in grid.libraries.items():
                g.attrs[k] = json.dumps(v)
            f.create_dataset("provenance", data=np.asarray(grid.provenance, dtype=object), dtype=sdt)
            ph = f.create_group("phase")
            for name, lib in grid.phase_libraries.items():
                pg = ph.create_group(name)
                pg.create_dataset("teff", data=np.asarray(lib.teff, float))
                pg.create_dataset("logz", data=np.asarray(lib.logz, float))
                pg.create_dataset("flux", data=np.asarray(lib.flux, np.float32), **comp)
                pg.create_dataset("mask", data=np.asarray(lib.mask, bool), **comp)
                for mk, mv in lib.meta.items():
                    if isinstance(mv, np.ndarray):
                        pg.create_dataset(mk, data=mv)
                    else:
                        pg.attrs[mk] = mv if isinstance(mv, str) else json.dumps(mv)
    return path


# attributes that record one build, not the data it made: two builds from the same library files differ in
# them (the time, how long it took, where the libraries folder was), so the content hash leaves them out
BUILD_RECORD_ATTRS = ("created", "build_seconds", "library_dir")


def _json_value(value):
    """An attribute or metadata value as JSON-able Python (numpy arrays and scalars, bytes decoded)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"cannot hash a grid attribute of type {type(value).__name__}")


def grid_content_sha256(grid):
    """Hex sha256 of what a union grid holds, not of its file: every array (as the file stores it: float64
    parameters, int16 library ids, float32 flux, bool mask), the library names and records, the provenance,
    the phase libraries and the file attributes, less :data:`BUILD_RECORD_ATTRS`. Two builds from the same
    library files give the same hash though their files' sha256 differ (the build time is an attribute);
    a grid whose data differ in any value gives another. ``grid``: a :class:`UnionGrid` (read with
    :func:`load_grid`)."""
    import hashlib

    h = hashlib.sha256()

    def add_array(name, values, dtype):
        a = np.ascontiguousarray(np.asarray(values, dtype=dtype))
        h.update(f"{name} {a.dtype.str} {a.shape}\n".encode())
        h.update(a.tobytes())

    def add_json(name, value):
        h.update(f"{name} ".encode())
        h.update(json.dumps(value, sort_keys=True, default=_json_value).encode())
        h.update(b"\n")

    add_array("wavelength", grid.wavelength, float)
    for k in ("teff", "logg", "logz"):
        add_array(k, getattr(grid, k), float)
    add_array("library_id", grid.library_id, np.int16)
    add_array("flux", grid.flux, np.float32)
    add_array("mask", grid.mask, bool)
    add_json("source_file", [str(s) for s in np.asarray(grid.source_file, dtype=object)])
    add_json("library_names", list(grid.library_names))
    add_json("libraries", grid.libraries)
    add_json("provenance", [str(s) for s in grid.provenance])
    for name in sorted(grid.phase_libraries):
        lib = grid.phase_libraries[name]
        add_array(f"phase/{name}/teff", lib.teff, float)
        add_array(f"phase/{name}/logz", lib.logz, float)
        add_array(f"phase/{name}/flux", lib.flux, np.float32)
        add_array(f"phase/{name}/mask", lib.mask, bool)
        add_json(f"phase/{name}/meta", lib.meta)
    add_json("attrs", {k: v for k, v in grid.attrs.items() if k not in BUILD_RECORD_ATTRS})
    return h.hexdigest()


def require_grid_file(path):
    """``path`` as a Path if it is a file; else FileNotFoundError, or IsADirectoryError for a folder (which
    was reported as not existing), naming the grid files the folder holds."""
    path = Path(path)
    if path.is_dir():
        held = sorted(str(p) for suffix in GRID_SUFFIXES for p in path.glob(f"*{suffix}"))
        hint = (f"give the file, e.g. {', '.join(held[:3])}" if held else
                f"it holds none (build one with 'smnet-sps grid build --libraries DIR --out "
                f"{path / 'grid.h5'}')")
        raise IsADirectoryError(f"grid file {path} is a folder, not a union grid file; {hint}")
    if not path.is_file():
        raise FileNotFoundError(f"grid file {path} does not exist (build it with 'smnet-sps grid build "
                                f"--libraries DIR --out {path}')")
    return path


def load_grid(path):
    """Read a union grid file written by :func:`save_grid`.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        The file is not an HDF5 union grid (wrong format, other format version, missing datasets), or it is
        corrupt (a data chunk that cannot be read); the message names the file.
    """
    import h5py

    path = require_grid_file(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: not a readable HDF5 file (truncated or wrong format): {exc}") from exc
    with f:
        if f.attrs.get("format") != FORMAT:
            raise ValueError(f"{path}: not a smnet-sps union grid (format attribute "
                             f"{f.attrs.get('format')!r}, expected {FORMAT!r})")
        if int(f.attrs.get("format_version", -1)) != FORMAT_VERSION:
            raise ValueError(f"{path}: union grid format_version {f.attrs.get('format_version')} is not "
                             f"supported (this version reads {FORMAT_VERSION})")
        try:
            names = json.loads(f.attrs["library_names"])
            libraries = {k: json.loads(v) for k, v in f["libraries"].attrs.items()}
            phases = {}
            for name, pg in f["phase"].items():
                meta = {k: v for k, v in pg.attrs.items()}
                for k in ("source_file",):
                    if k in meta:
                        meta[k] = json.loads(meta[k])
                for k in pg:
                    if k not in ("teff", "logz", "flux", "mask"):
                        meta[k] = pg[k][()]
                phases[name] = PhaseLibrary(pg["teff"][()], pg["logz"][()], pg["flux"][()], pg["mask"][()],
                                            meta)
            attrs = {k: v for k, v in f.attrs.items()}
            # files written before the medium was recorded were built from the same (all-vacuum) libraries
            attrs.setdefault("wavelength_medium", GRID_MEDIUM)
            grid = UnionGrid(f["wavelength"][()], f["teff"][()], f["logg"][()], f["logz"][()],
                             f["library_id"][()], names, f["flux"][()], f["mask"][()],
                             np.array(f["source_file"].asstr()[()], dtype=object), libraries,
                             list(f["provenance"].asstr()[()]), phases, attrs)
        except KeyError as exc:
            raise ValueError(f"{path}: union grid file is missing {exc} (damaged or written by another "
                             f"tool)") from exc
        except (OSError, ValueError) as exc:     # h5py: a damaged data chunk or attribute fails to decode
            raise ValueError(f"{path}: union grid file is corrupt, its data cannot be read ({exc}); rebuild "
                             "it with 'smnet-sps grid build' or copy it again") from exc
    n = len(grid.teff)
    if grid.flux.shape != (n, grid.wavelength.size) or grid.mask.shape != grid.flux.shape:
        raise ValueError(f"{path}: flux {grid.flux.shape} / mask {grid.mask.shape} do not match {n} spectra "
                         f"x {grid.wavelength.size} wavelengths")
    check_grid_contents(grid, path)
    return grid


def check_grid_contents(grid, path):
    """Refuse a grid file whose arrays a build could not have written (edited or damaged after the build).

    What the native readers refuse must not come back through the grid file: trained on, a NaN or negative
    flux at a known pixel became the 1e-30 floor, a decreasing wavelength axis made a model that
    ``load_generator`` then refused, and a NaN Teff or a library id beyond the names crashed deep in scipy
    or torch.

    Raises
    ------
    ValueError
        Naming the file, the dataset and the first offending spectrum.
    """
    wave = np.asarray(grid.wavelength, float)
    if wave.ndim != 1 or not (np.all(np.isfinite(wave)) and wave[0] > 0 and np.all(np.diff(wave) > 0)):
        raise ValueError(f"{path}: 'wavelength' must be positive, finite and strictly increasing [A]")
    ids = np.asarray(grid.library_id)
    n_lib = len(grid.library_names)
    for name, values in (("teff", grid.teff), ("logg", grid.logg), ("logz", grid.logz)):
        values = np.asarray(values, float)
        bad = ~np.isfinite(values) | ((values <= 0) if name == "teff" else False)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{path}: '{name}' of spectrum {i} is {float(values[i])!r} "
                             f"({int(bad.sum())} such); the file is damaged: rebuild it with "
                             "'smnet-sps grid build'")
    if ids.size and (not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0 or ids.max() >= n_lib):
        raise ValueError(f"{path}: 'library_id' holds {ids.min()}..{ids.max()}, but the file names {n_lib} "
                         f"libraries {list(grid.library_names)} (ids 0..{n_lib - 1})")
    known = np.asarray(grid.mask, bool)
    flux = np.asarray(grid.flux)
    with np.errstate(invalid="ignore"):
        bad = known & (~(flux >= 0) | np.isinf(flux))      # negative, NaN or inf
    empty = ~(known & (flux > 0)).any(1)
    if bad.any() or empty.any():
        i = int(np.flatnonzero(bad.any(1) | empty)[0])
        what = ("no positive known pixel" if empty[i] else
                f"{int(bad[i].sum())} known pixels that are negative or not finite")
        raise ValueError(f"{path}: spectrum {i} (Teff {grid.teff[i]:g} K, log g {grid.logg[i]:g}, [M/H] "
                         f"{grid.logz[i]:g}, {grid.library_names[ids[i]]}) has {what}; the file is damaged: "
                         "rebuild it with 'smnet-sps grid build'")
    key = np.column_stack([np.asarray(grid.teff, float), np.asarray(grid.logg, float),
                           np.asarray(grid.logz, float), ids.astype(float)])
    _, first, counts = np.unique(key, axis=0, return_index=True, return_counts=True)
    if (counts > 1).any():
        i = int(first[np.flatnonzero(counts > 1)[0]])
        raise ValueError(f"{path}: {int((counts - 1).sum())} spectra repeat the parameters of another of "
                         f"their library, e.g. Teff {grid.teff[i]:g} K, log g {grid.logg[i]:g}, [M/H] "
                         f"{grid.logz[i]:g} ({grid.library_names[ids[i]]}); one node must be one spectrum")


# ------------------------------------------------------------------------------------------- summaries
def grid_info(grid):
    """A text summary: counts per library, parameter ranges, bolometric deviations, pixel coverage."""
    lines = [f"union grid: {len(grid)} spectra x {grid.wavelength.size} pixels "
             f"({grid.wavelength[0]:g}-{grid.wavelength[-1]:g} A), {len(grid.library_names)} libraries",
             f"{'library':20s} {'n':>5s} {'drop':>5s} {'Teff [K]':>15s} {'log g':>11s} {'[M/H]':>11s} "
             f"{'coverage':>8s} {'dev med':>8s} {'max|dev|':>8s} {'grid med':>8s} {'grid max':>8s}"]
    for i, name in enumerate(grid.library_names):
        sel = grid.library_id == i
        rec = grid.libraries.get(name, {})
        dev = rec.get("bolometric_deviation", {})
        dg = rec.get("bolometric_deviation_on_grid", {})
        cov = grid.mask[sel].mean() if sel.any() else 0.0
        if not sel.any():
            continue
        lines.append(f"{name:20s} {sel.sum():5d} {rec.get('n_dropped', 0):5d} "
                     f"{grid.teff[sel].min():7.0f}-{grid.teff[sel].max():<7.0f} "
                     f"{grid.logg[sel].min():5.2f}..{grid.logg[sel].max():<4.2f} "
                     f"{grid.logz[sel].min():5.2f}..{grid.logz[sel].max():<4.2f} {100 * cov:7.1f}% "
                     f"{dev.get('median', np.nan):+8.4f} {dev.get('max_abs', np.nan):8.4f} "
                     f"{dg.get('median', np.nan):+8.4f} {dg.get('max_abs', np.nan):8.4f}")
    if len(grid):
        lines.append(f"total: Teff {grid.teff.min():.0f}-{grid.teff.max():.0f} K, log g "
                     f"{grid.logg.min():g}..{grid.logg.max():g}, [M/H] "
                     f"{grid.logz.min():.2f}..{grid.logz.max():.2f}; "
                     f"{100 * grid.mask.mean():.1f}% of pixels known")
    lines.append("dev = int F dlambda / sigma Teff^4 - 1 over the native range (physical libraries ck04, "
                 "nextgen, basel22) or vs the unit normalisation (others, rescaled to sigma Teff^4); "
                 "grid = on the common grid (missing flux below 91 A / 100 A shows here)")
    if grid.phase_libraries:
        lines.append("phase libraries (no log g):")
        for name, lib in grid.phase_libraries.items():
            z = lib.logz[np.isfinite(lib.logz)]
            zs = f"[M/H] {z.min():.2f}..{z.max():.2f}" if z.size else "[M/H] not metallicity specific"
            lines.append(f"  {name:20s} {len(lib.teff):4d} spectra, Teff "
                         f"{lib.teff.min():.0f}-{lib.teff.max():.0f} K, "
                         f"{zs}, {100 * lib.mask.mean():.1f}% of pixels known")
    for name, rec in grid.libraries.items():
        gone = rec.get("missing_files") if isinstance(rec, dict) else None
        if gone:
            lines.append(f"!!! {name}: {len(gone)} files listed in its catalog were missing from the build "
                         f"(no spectra at their parameters): {', '.join(gone[:6])}"
                         + (f" (+{len(gone) - 6} more)" if len(gone) > 6 else ""))
    skipped = skipped_libraries(grid)
    if skipped:
        lines.append(f"!!! SKIPPED libraries (could not be read; not in this grid): {len(skipped)}")
        for name, reason in skipped.items():
            lines.append(f"  {name}: {reason}")
    for k in ("notes",):
        if k in grid.attrs:
            lines.append(f"note: {grid.attrs[k]}")
    lines.append(f"provenance: {len(grid.provenance)} files with sha256")
    return "\n".join(lines)


def skipped_libraries(grid):
    """``{name: reason}`` of the libraries the build skipped (``attrs["skipped_libraries"]``; {} if none)."""
    value = grid.attrs.get("skipped_libraries", {})
    try:
        value = json_attr(value)
    except ValueError:                  # not JSON: the text as the one reason
        value = {"?": value.decode() if isinstance(value, bytes) else str(value)}
    return dict(value or {})


def plot_coverage(grid, path=None):
    """(log Teff, log g) coverage plot coloured by library, HR-diagram orientation (like SM-Net Fig. 3).

    log Teff increases to the left and log g increases downward. The phase libraries (no log g) are drawn
    as Teff-only rows in a strip above. Returns the :class:`matplotlib.figure.Figure` (drawn with the
    caller's matplotlib backend, which is left unchanged); also saves it to ``path`` when given (format from
    the extension, a missing folder created: :func:`~smnet_sps.output_files.save_plot`). Close it with
    ``matplotlib.pyplot.close(fig)`` when done.
    """
    import matplotlib.pyplot as plt

    phases = {k: v for k, v in grid.phase_libraries.items() if len(v.teff)}
    if phases:
        fig, (top, ax) = plt.subplots(2, 1, figsize=(7, 5.5 + 0.22 * len(phases)), sharex=True,
                                      layout="constrained",
                                      gridspec_kw={"height_ratios": [0.35 + 0.22 * len(phases), 5.5]})
    else:
        fig, ax = plt.subplots(figsize=(7, 5.5))
    markers = "osD^vP*X"
    for i, name in enumerate(grid.library_names):
        sel = grid.library_id == i
        if sel.any():
            # the largest library filled, the others as open symbols so overlapping grids stay visible
            filled = i == 0
            ax.scatter(np.log10(grid.teff[sel]), grid.logg[sel], s=14 if filled else 18,
                       marker=markers[i % len(markers)], label=f"{name} ({sel.sum()})",
                       facecolors=f"C{i}" if filled else "none", edgecolors=f"C{i}", linewidths=0.8,
                       alpha=0.5 if filled else 0.9)
    if phases:
        for k, (name, lib) in enumerate(phases.items()):
            t = np.unique(np.asarray(lib.teff, float))
            top.scatter(np.log10(t), np.full(t.size, k), s=12, marker="|", color=f"C{(k + 3) % 10}",
                        linewidths=1.5)
        top.set_yticks(range(len(phases)))
        top.set_yticklabels([f"{n} ({len(v.teff)})" for n, v in phases.items()], fontsize=7)
        top.set_ylim(len(phases) - 0.5, -0.5)
        top.set_title("phase libraries (no log g; Teff only) and union grid", fontsize=9)
        top.grid(alpha=0.3, axis="x")
        top.tick_params(axis="x", labelbottom=False)
    ax.invert_xaxis()
    ax.invert_yaxis()
    ax.set_xlabel(r"$\log_{10}\,T_\mathrm{eff}$ [K]")
    ax.set_ylabel(r"$\log g$ [cgs]")
    if not phases:
        ax.set_title(f"Union grid coverage: {len(grid)} spectra")
    else:
        # above the axes: inside them, top right (cool, low log g) it lay over the cool giants' nodes
        ax.set_title(f"union grid: {len(grid)} spectra", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", markerscale=1.5)
    ax.grid(alpha=0.3)
    if not phases:
        fig.tight_layout()
    return save_plot(fig, path, dpi=120)


# ------------------------------------------------------------------------------------- phase libraries
def export_phase_libraries(grid, path=PHASE_FILE):
    """Write the phase libraries of ``grid`` to a compressed ``.npz`` (float32 flux on the common grid),
    atomically (temporary file + rename); a missing folder is created."""
    if not grid.phase_libraries:
        raise ValueError("this grid has no phase libraries; build it without --only or include "
                         f"{', '.join(PHASE_LIBRARIES)}")
    data = {"wavelength": np.asarray(grid.wavelength, float), "names": np.array(list(grid.phase_libraries))}
    cites = []
    for name, lib in grid.phase_libraries.items():
        data[f"{name}__teff"] = np.asarray(lib.teff, float)
        data[f"{name}__logz"] = np.asarray(lib.logz, float)
        data[f"{name}__flux"] = np.where(lib.mask, lib.flux, np.nan).astype(np.float32)
        data[f"{name}__mask"] = np.asarray(lib.mask, bool)
        for k in ("teff_table", "logz_table"):
            if k in lib.meta:
                data[f"{name}__{k}"] = np.asarray(lib.meta[k], float)
        cites.append(f"{lib.meta.get('citation', '')} || {lib.meta.get('convention', '')}")
    data["citations"] = np.array(cites)
    path = Path(path)
    with atomic_output(path, overwrite=True) as tmp:          # a missing folder is created
        np.savez_compressed(tmp, **data)
    return path


def load_phase_libraries(path=None):
    """The phase libraries (WR WN/WC, Rauch post-AGB, TP-AGB) on the common wavelength grid, without
    ``../shared``.

    Parameters
    ----------
    path : path-like, optional
        ``.npz`` written by :func:`export_phase_libraries`; default the one shipped in the package.

    Returns
    -------
    dict
        ``{"wavelength": Quantity [A], name: {"teff": Quantity [K], "logz": ndarray (NaN = not
        metallicity specific), "flux": Quantity (n, n_wave) [erg s^-1 cm^-2 A^-1] (NaN where unknown),
        "mask": bool ndarray, "citation": str, "convention": str, optional "teff_table", "logz_table"}}``
        for names cmfgen_wn, cmfgen_wc, rauch_pagb, tpagb_orich, tpagb_crich, tpagb_crich_aringer.
    """
    path = Path(PHASE_FILE if path is None else path)
    if not path.is_file():
        raise FileNotFoundError(f"phase-library file {path} does not exist")
    # a truncated or damaged file was zipfile's bare BadZipFile ('File is not a zip file'), naming no file
    data = read_npz(path, "phase-library .npz", "write it again with export_phase_libraries, or give "
                    "path=None for the package's own")
    if "names" not in data or "wavelength" not in data:
        raise ValueError(f"{path}: not a phase-library .npz (no 'names'/'wavelength' arrays)")
    out = {"wavelength": data["wavelength"] * u.AA}
    for name, cite in zip(data["names"], data["citations"]):
        name = str(name)
        citation, _, convention = str(cite).partition(" || ")
        entry = {"teff": data[f"{name}__teff"] * u.K, "logz": data[f"{name}__logz"],
                 "flux": data[f"{name}__flux"].astype(float) * FLAM_UNIT, "mask": data[f"{name}__mask"],
                 "citation": citation, "convention": convention}
        for k in ("teff_table", "logz_table"):
            if f"{name}__{k}" in data:
                entry[k] = data[f"{name}__{k}"]
        out[name] = entry
    return out


# ------------------------------------------------------------------------------------------------ CLI
GRID_SUFFIXES = (".h5", ".hdf5")


def _grid_outputs(args):
    from .output_files import check_outputs, matplotlib_formats
    return check_outputs(args, {"out": (GRID_SUFFIXES, "union grid (HDF5)"),
                                "plot": (matplotlib_formats(), "coverage plot"),
                                "phase_out": ((".npz",), "phase-library file")})


def _no_phase_libraries(only):
    """The --phase-out error: the grid asked for (or built) holds no phase library to export."""
    asked = f"--only {only}" if only else "this build"
    return ValueError(f"--phase-out needs phase libraries, but {asked} has none (none asked for, or all "
                      f"skipped); include one of {', '.join(PHASE_LIBRARIES)} or drop --phase-out")


def _cmd_build(args):
    from .cli import show_progress
    from .output_files import save_figure, staged_outputs
    outputs = _grid_outputs(args)           # before the (minutes-long) build
    # --phase-out is checked before anything is written: a grid file written and then an error would make
    # the rerun fail on the existing output
    if "phase_out" in outputs and not any(LIBRARIES[n].kind == "phase" for n in _parse_only(args.only)):
        raise _no_phase_libraries(args.only)
    t0 = time.perf_counter()
    grid = build_grid(args.libraries, only=args.only, progress=show_progress(args), strict=args.strict)
    if "phase_out" in outputs and not grid.phase_libraries:      # asked for, but every one was skipped
        raise _no_phase_libraries(args.only)
    # every file first, then the summary: `| head` closing stdout lost the plot and the phase libraries.
    # All are written under temporary names and renamed into place together once every write succeeded:
    # a failed --plot or --phase-out leaves no new --out for a rerun to trip on, and under --overwrite
    # keeps the old files (removing a --out already renamed into place lost the user's old grid)
    with staged_outputs(outputs, overwrite=args.overwrite) as staged:
        save_grid(grid, staged["out"])
        size = staged["out"].stat().st_size / 1e6
        seconds = time.perf_counter() - t0
        if "plot" in outputs:
            save_figure(plot_coverage(grid), staged["plot"], overwrite=True, dpi=120)
        if "phase_out" in outputs:
            export_phase_libraries(grid, staged["phase_out"])
    print(grid_info(grid))
    print(f"wrote {args.out} ({size:.1f} MB) in {seconds:.1f} s")
    for attr in ("plot", "phase_out"):
        if attr in outputs:
            print(f"wrote {getattr(args, attr)}")
    return 0


def _cmd_info(args):
    from .output_files import save_figure
    outputs = _grid_outputs(args)
    grid = load_grid(args.file)
    if "plot" in outputs:                   # before the summary, as in build
        save_figure(plot_coverage(grid), outputs["plot"], overwrite=args.overwrite, dpi=120)
    print(grid_info(grid))
    if "plot" in outputs:
        print(f"wrote {args.plot}")
    return 0


def add_cli(subparsers):
    """Register ``grid build`` and ``grid info`` on the ``smnet-sps`` parser."""
    p = subparsers.add_parser("grid", help="build or inspect the union training grid")
    sub = p.add_subparsers(dest="grid_command", metavar="{build,info}")
    b = sub.add_parser("build", help="read the native libraries and write the union grid (HDF5)")
    b.add_argument("--libraries", required=True, help="folder holding the native library folders "
                   "(e.g. ../shared/data/libraries)")
    b.add_argument("--out", required=True, help="output HDF5 file")
    b.add_argument("--plot", help="also write a (log Teff, log g) coverage plot (PNG)")
    b.add_argument("--only", help=f"comma-separated library names (default {','.join(DEFAULT_LIBRARIES)}; "
                   f"all: {','.join(LIBRARIES)})")
    b.add_argument("--strict", action="store_true",
                   help="fail if any library cannot be read or holds a star outside the physical domain "
                        "(default: skip it with a loud message and record it in the file attrs "
                        "'skipped_libraries')")
    b.add_argument("--phase-out", help="also write the phase libraries as .npz (as shipped in "
                   "smnet_sps/data/phase_libraries.npz)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.add_argument("--overwrite", action="store_true", help="replace existing output files")
    b.set_defaults(func=_cmd_build)
    i = sub.add_parser("info", help="summarise a union grid file")
    i.add_argument("file", help="union grid file (.h5) written by smnet-sps grid build")
    i.add_argument("--plot", help="write a (log Teff, log g) coverage plot (PNG)")
    i.add_argument("--overwrite", action="store_true", help="replace an existing plot")
    i.set_defaults(func=_cmd_info)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
