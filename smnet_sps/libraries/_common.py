"""Shared pieces of the native-library readers: the result dataclass and careful file readers.

Every reader returns a :class:`LibrarySpectra` holding surface flux F_lambda [erg s^-1 cm^-2 A^-1] on the
library's own wavelength grid(s). Any problem with a file (missing, truncated, wrong format, NaN or
negative flux) raises ``FileNotFoundError`` / ``ValueError`` whose message names the file: a corrupt input
never becomes a silent wrong number. NaN flux is *rejected* (not masked): the native libraries are
complete model grids, so a NaN means a damaged file rather than a gap to be skipped. A *degenerate* file, in
which one spectrum is assigned to different parameters (e.g. the same spectrum for every Teff), is rejected
too, by :func:`check_distinct_spectra`, and so is the reverse, two different spectra at the same
parameters (a mislabelled file or index line, which would leave a hole at the true parameters), by
:func:`check_unique_parameters`; every :class:`LibrarySpectra` runs both when it is created, so every reader
gets them.
"""
from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..constants import SIGMA_SB

__all__ = ["LibrarySpectra", "read_text", "read_bytes", "parse_floats", "check_flux",
           "check_distinct_spectra", "check_increasing", "check_wavelengths",
           "check_unique_parameters",
           "check_last_number", "check_row_count", "odd_ones_out", "require_dir",
           "require_file", "integrate_flux", "ZSUN_MASS_FRACTION"]

#: Solar metal mass fraction used to turn a mass fraction Z into [M/H] = log10(Z / 0.020) (the BPASS
#: convention, also FSPS' ``zsol_spec`` for its hot-star spectra). An assumption: the libraries do not
#: state their solar mixture in a way that allows anything better.
ZSUN_MASS_FRACTION = 0.020


@dataclass
class LibrarySpectra:
    """Spectra of one library in surface-flux units on the library's own wavelength grid(s).

    The spectra come in *blocks* sharing one wavelength array (most libraries have a single block;
    NextGen has two grids, 21,312 and 27,391 px). Parameters are concatenated in block order.

    Attributes
    ----------
    name, citation, folder, convention : str
        Registry name, literature reference, folder below the library root, and a sentence describing
        the native flux convention and the conversion applied.
    teff : ndarray (n,)
        Effective temperature [K].
    logg : ndarray (n,)
        Surface gravity log10(g / cm s^-2); NaN for phase libraries that have none (never invented).
    logz : ndarray (n,)
        [M/H] [dex]; NaN where a spectrum is not metallicity specific (empirical TP-AGB spectra).
    wavelengths : list of ndarray
        One increasing wavelength array [Angstrom] per block.
    fluxes : list of ndarray
        One (n_block, n_wave_block) array of F_lambda [erg s^-1 cm^-2 A^-1] per block.
    source_file : list of str
        File each spectrum came from, relative to the library root.
    raw_ratio : ndarray (n,)
        Integral of F_lambda over the native wavelength range divided by sigma Teff^4 *as stored*, after
        the unit conversion but before any renormalisation (normalised libraries: relative to their own
        unit normalisation). ``raw_ratio - 1`` is the bolometric deviation reported in the build log.
    n_dropped : int
        Spectra present in the files but not used (CK04 all-zero "not computed" columns).
    files : list of Path
        Every file read (for provenance hashes).
    extra : dict
        Library-specific extras (e.g. the TP-AGB Teff(Z) table).
    parameter_source : dict
        ``{"teff" / "logg" / "logz": [(file relative to the library root, line counted from 1), ...]}``, one
        entry per spectrum, for parameters read from a file other than the spectrum's own (an index or Teff
        table), so that an impossible value is blamed on the file that holds it. Absent: ``source_file``.
    """

    name: str
    citation: str
    folder: str
    convention: str
    teff: np.ndarray
    logg: np.ndarray
    logz: np.ndarray
    wavelengths: list
    fluxes: list
    source_file: list
    raw_ratio: np.ndarray
    n_dropped: int = 0
    files: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    parameter_source: dict = field(default_factory=dict)

    def __post_init__(self):
        check_distinct_spectra(self)
        check_unique_parameters(self)

    def __len__(self):
        return len(self.teff)

    @property
    def has_logg(self):
        return bool(np.isfinite(self.logg).all())

    def spectrum(self, i):
        """(wavelength [A], F_lambda) of spectrum ``i`` on its native grid."""
        start = 0
        for wave, flux in zip(self.wavelengths, self.fluxes):
            if i < start + len(flux):
                return wave, flux[i - start]
            start += len(flux)
        raise IndexError(f"spectrum index {i} out of range 0..{len(self) - 1}")

    def bolometric_ratio(self):
        """Integral of the stored (converted) F_lambda over the native range / sigma Teff^4, per spectrum."""
        ints = np.concatenate([integrate_flux(w, f) for w, f in zip(self.wavelengths, self.fluxes)])
        return ints / (SIGMA_SB * self.teff ** 4)


def _duplicate_labels(flux):
    """Label per row: the index of the first row with the same spectral *shape* (row / its max, to 1e-9).

    Rows are compared after dividing by their maximum, so a spectrum that was merely rescaled (e.g. a
    unit-normalised native spectrum x sigma Teff^4) still counts as the same spectrum. Candidates come from a
    random projection (sorted), each confirmed element by element: O(n n_wave), fine for 3,500 x 1,221.
    """
    f = np.asarray(flux, float)
    n = len(f)
    labels = np.arange(n)
    if n < 2:
        return labels
    scale = np.max(np.abs(f), axis=1)
    scale[scale == 0] = 1.0
    shape = f / scale[:, None]
    proj = shape @ np.random.default_rng(12345).random(shape.shape[1])
    order = np.argsort(proj, kind="stable")
    for a, b in zip(order[:-1], order[1:]):
        if (abs(proj[b] - proj[a]) <= 1e-9 * max(abs(proj[a]), 1e-300)
                and np.allclose(shape[a], shape[b], rtol=1e-9, atol=0.0)):
            labels[b] = labels[a]
    for root in np.unique(labels):          # label each group by its first row
        members = labels == root
        labels[members] = np.flatnonzero(members)[0]
    return labels


def check_distinct_spectra(lib):
    """Reject a degenerate library: the same spectrum assigned to *different* (Teff, log g, [M/H]).

    A model grid in which e.g. every Teff row holds one identical spectrum is corrupt (a packaging error),
    and a model trained on it learns a spectrum that does not change with Teff. Spectra are compared within
    each wavelength block (a file, or the files sharing one grid), as shapes (row / row max, to 1e-9
    relative), so a rescaled copy counts too. Identical spectra with identical parameters are allowed.

    Raises
    ------
    ValueError
        Naming the file(s), the number of rows and of distinct spectra, and one example pair.
    """
    params = np.column_stack([np.asarray(lib.teff, float), np.asarray(lib.logg, float),
                              np.asarray(lib.logz, float)])
    start = 0
    for flux in lib.fluxes:
        n = len(flux)
        rows = slice(start, start + n)
        labels = _duplicate_labels(flux)
        p = params[rows]
        bad = [i for i in range(n) if labels[i] != i
               and not np.array_equal(p[i], p[labels[i]], equal_nan=True)]
        if bad:
            # the most telling example: a pair whose Teff differs, if there is one
            i = next((k for k in bad if p[k, 0] != p[labels[k], 0]), bad[0])
            j = labels[i]
            src = sorted({lib.source_file[start + k] for k in bad + [int(labels[k]) for k in bad]})
            full = [next((str(f) for f in lib.files if str(f).endswith(s)), s) for s in src]

            def fmt(k):
                return f"Teff {p[k, 0]:.0f} K, log g {p[k, 1]:g}, [M/H] {p[k, 2]:g}"

            nd = len(np.unique(labels))
            where = ", ".join(full[:3]) + (f" (+{len(full) - 3} more files)" if len(full) > 3 else "")
            raise ValueError(
                f"{where}: {n} rows but only {nd} distinct spectr{'um' if nd == 1 else 'a'}; {len(bad)} "
                "rows repeat a spectrum assigned to different parameters "
                f"(e.g. row {start + i} [{fmt(i)}] is identical to "
                f"row {start + j} [{fmt(j)}]). The {lib.name} library is degenerate/corrupt (its spectra do "
                f"not change with its parameters); replace the file with a correct one.")
        start += n


def check_unique_parameters(lib):
    """Reject two spectra at the same (Teff, log g, [M/H]) (NaN equal to NaN).

    A mislabelled file or index line puts a second spectrum at one grid point and leaves a hole where it
    belongs; trained on, the network learns an average of the two. Two copies of one spectrum (``x.fits`` and
    ``x.fits.gz`` side by side, a backup in a sub-folder, a repeated index line) are refused too: the split
    could put one copy among the test nodes and the other among the training nodes, and the copy would count
    as a neighbour at distance 0. No real library holds either.

    Raises
    ------
    ValueError
        Naming both rows' files (and the files their parameters were read from, where those differ).
    """
    params = np.column_stack([np.asarray(lib.teff, float), np.asarray(lib.logg, float),
                              np.asarray(lib.logz, float)])
    if len(params) < 2:
        return
    key = np.where(np.isnan(params), np.inf, params)          # NaN (no log g) as one value
    order = np.lexsort(key.T[::-1])
    same = (key[order[1:]] == key[order[:-1]]).all(1)
    if not same.any():
        return
    block = np.concatenate([np.full(len(f), b) for b, f in enumerate(lib.fluxes)])
    for a, b in zip(order[:-1][same], order[1:][same]):
        copies = False
        if block[a] == block[b]:
            _, fa = lib.spectrum(int(a))
            _, fb = lib.spectrum(int(b))
            ra, rb = fa / max(np.max(np.abs(fa)), 1e-300), fb / max(np.max(np.abs(fb)), 1e-300)
            copies = (np.allclose(ra, rb, rtol=1e-9, atol=0.0)
                      and np.allclose(np.max(fa), np.max(fb), rtol=1e-9))

        def origin(k):
            read_from = {}                  # (file, line) -> the parameters read there
            for name, entries in lib.parameter_source.items():
                if k < len(entries) and entries[k][0] != lib.source_file[k]:
                    read_from.setdefault(tuple(entries[k]), []).append(name)
            return "; ".join([lib.source_file[k]] + [f"{', '.join(names)} from {where} line {line}"
                                                      for (where, line), names in read_from.items()])

        t, g, z = params[a]
        if copies:
            raise ValueError(
                f"{lib.name}: the same spectrum twice at Teff {t:.0f} K, log g {g:g}, [M/H] {z:g}: row {a} "
                f"({origin(a)}) and row {b} ({origin(b)}). A copy of a file (e.g. .fits beside .fits.gz, a "
                "backup in a sub-folder) or a repeated index line; remove one (a duplicate node could be "
                "split into both the test and the training nodes).")
        raise ValueError(
            f"{lib.name}: two different spectra at Teff {t:.0f} K, log g {g:g}, [M/H] {z:g}: row {a} "
            f"({origin(a)}) and row {b} ({origin(b)}). A file or index line is mislabelled (the grid would "
            "have a hole where the other spectrum belongs); correct it.")


def require_dir(path, what):
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: folder {path} does not exist (give the folder holding the "
                                f"native library files, e.g. ../shared/data/libraries/<library>)")
    return path


def require_file(path, what=""):
    """``path``, or its gzip twin (``x.gz`` for ``x``, ``x`` for ``x.gz``) when only that one exists: every
    text file is read plain or gzip-compressed, so a copy gzipped (or gunzipped) file by file reads alike.
    Callers use the path returned (it is the file read, hashed and named). FileNotFoundError if neither."""
    path = Path(path)
    if path.is_file():
        return path
    twin = path.with_name(path.name[:-3] if path.name.endswith(".gz") else path.name + ".gz")
    if twin.is_file():
        return twin
    raise FileNotFoundError(f"{what + ': ' if what else ''}file {path} does not exist (nor {twin.name})")


#: the first two bytes of every gzip stream (RFC 1952)
GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path):
    """The file's bytes, decompressed if it is gzip by its magic number, whatever its name: a plain file named
    ``.gz`` (a browser download, decompressed on the fly) was refused as "not valid gzip" by every reader but
    CK04's, and a gzip file without ``.gz`` read as binary. A truncated or corrupt gzip raises ValueError
    naming the file; one that cannot be opened (missing, a directory, no permission) the OSError that says
    so: it is not a damaged gzip."""
    raw = Path(path).read_bytes()
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"{path}: cannot be read, the file is truncated or not valid gzip ({exc})") from exc


def read_text(path):
    """Whole text of a plain or gzip-compressed file (:func:`read_bytes`: gzip by content, not by name)."""
    path = require_file(path)
    data = read_bytes(path)
    try:
        return data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not an ASCII text file (wrong format?)") from exc


def parse_floats(text, path, expected=None):
    """Fast whitespace-separated float parsing (Fortran 'D' exponents accepted) with a clear error."""
    try:
        values = np.array(text.replace("D", "E").replace("d", "e").split(), dtype=float)
    except ValueError as exc:
        raise ValueError(f"{path}: non-numeric token where numbers were expected (wrong format?): "
                         f"{exc}") from exc
    if expected is not None and values.size != expected:
        raise ValueError(f"{path}: expected {expected} numbers, found {values.size} "
                         f"(file truncated or not in the expected format)")
    return values


def _number_layout(token):
    """How a number is written, whatever its digits and signs: '7.2557E-05' -> '9.9999E+99'."""
    token = re.sub(r"[EeDd][+-]?", "E+", token.lstrip("+-"))
    return re.sub(r"\d", "9", token)


def check_last_number(text, path, same_line=True):
    """Reject a file cut inside its last number (``7.2557E-05`` cut to ``7.2557`` still parses).

    The tabulated files write every flux in one fixed Fortran format, so the last number must be written like
    the one before it: on the same line (``same_line``, rows of several fluxes) or at the end of the line
    above (two-column files, whose previous token on the line is a wavelength).
    """
    body = text.rstrip()
    cut = body.rfind("\n")
    last = body[cut + 1:].split()
    if same_line:
        reference = last[-2] if len(last) > 1 else None
    else:
        above = body[:max(cut, 0)].rstrip()
        reference = (above[above.rfind("\n") + 1:].split() or [None])[-1]
    if last and reference is not None and _number_layout(last[-1]) != _number_layout(reference):
        raise ValueError(f"{path}: the last number {last[-1]!r} is not written like the others (e.g. "
                         f"{reference!r}): the file is truncated; replace it with the original")


def check_increasing(values, path, what, where=None):
    """Refuse a table that labels a file's columns (or rows) by Teff and does not increase down the file, as
    those columns do: nothing else labels them, so a reversed or shuffled table gave every spectrum another's
    Teff (the "25,000 K" WM-basic one peaking at 610 A, Wien 47,500 K), unseen by any flux check. ``where``:
    the line of each value (default: its position, counted from 1)."""
    down = np.flatnonzero(np.diff(values) <= 0)
    if down.size:
        k = int(down[0])
        place = f"line {where[k + 1]}" if where is not None else f"value {k + 2}"
        raise ValueError(f"{path}: {what} must increase down the file, as the spectra do; {place} "
                         f"({values[k + 1]:g}) follows {values[k]:g}: a reordered or damaged file")


def check_wavelengths(wave, path, where="wavelength {}"):
    """Refuse NaN, infinite, zero or negative wavelengths read from ``path``, naming the first one.

    The readers' ordering checks (``np.diff(wave) > 0``, ``< 0``) and range checks are blind to NaN: a NaN
    wavelength passed, and then dropped a good point, turned every spectrum NaN or failed in resampling
    without naming the file. ``where``: how value k (counted from 1) is found in the file, e.g.
    ``"the wavelength in row {}"``. Returns ``wave``.
    """
    wave = np.asarray(wave, float)
    bad = ~(np.isfinite(wave) & (wave > 0))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{path}: {where.format(k + 1)} is {wave[k]:g} ({int(bad.sum())} of {wave.size} "
                         "wavelengths not finite and > 0 A): a damaged file; replace it with the original")
    return wave


def check_row_count(n_rows, expected, path, what):
    """Reject a file with other than the documented number of wavelength rows (truncated or wrong file)."""
    if n_rows != expected:
        raise ValueError(f"{path}: {n_rows} wavelength rows, expected {expected:,} ({what}); the file is "
                         "truncated or not in the expected format: replace it with the original")


def odd_ones_out(arrays):
    """Indices of the arrays that differ from the one most of them share; all of them if no majority.

    Used to name the damaged file among files that must share one wavelength grid, whichever file that is
    (comparing against the first file would blame a healthy second file when the first one is damaged).
    """
    groups = {}
    for i, a in enumerate(arrays):
        groups.setdefault(np.ascontiguousarray(a).tobytes(), []).append(i)
    if len(groups) < 2:
        return []
    sizes = sorted((len(g) for g in groups.values()), reverse=True)
    if sizes[0] == sizes[1]:                   # no majority: every file is suspect
        return list(range(len(arrays)))
    common = set(max(groups.values(), key=len))
    return [i for i in range(len(arrays)) if i not in common]


def check_flux(flux, path, label=""):
    """Reject NaN/inf/negative flux, naming the file (and the spectrum, if given)."""
    flux = np.asarray(flux)
    bad = ~np.isfinite(flux)
    where = f" ({label})" if label else ""
    if bad.any():
        raise ValueError(f"{path}{where}: {int(bad.sum())} NaN/inf flux value(s); the native libraries are "
                         f"complete grids, so this file is damaged. Replace it with the original.")
    if (flux < 0).any():
        raise ValueError(f"{path}{where}: {int((flux < 0).sum())} negative flux value(s); "
                         "fluxes must be >= 0")
    return flux


def integrate_flux(wave, flux):
    """Trapezoid integral of F_lambda over wavelength along the last axis [erg s^-1 cm^-2]."""
    return np.trapezoid(flux, wave, axis=-1)
