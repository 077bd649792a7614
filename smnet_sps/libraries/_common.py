"""Shared pieces of the native-library readers: the result dataclass and careful file readers.

Every reader returns a :class:`LibrarySpectra` holding surface flux F_lambda [erg s^-1 cm^-2 A^-1] on the
library's own wavelength grid(s). Any problem with a file (missing, truncated, wrong format, NaN or
negative flux) raises ``FileNotFoundError`` / ``ValueError`` whose message names the file: a corrupt input
never becomes a silent wrong number. NaN flux is *rejected* (not masked): the native libraries are
complete model grids, so a NaN means a damaged file rather than a gap to be skipped.
"""
from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..constants import SIGMA_SB

__all__ = ["LibrarySpectra", "read_text", "parse_floats", "check_flux", "require_dir", "require_file",
           "integrate_flux", "ZSUN_MASS_FRACTION"]

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


def require_dir(path, what):
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: folder {path} does not exist (give the folder holding the "
                                f"native library files, e.g. ../shared/data/libraries/<library>)")
    return path


def require_file(path, what=""):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what + ': ' if what else ''}file {path} does not exist")
    return path


def read_text(path):
    """Whole text of a plain or gzip-compressed file; a truncated/corrupt gzip raises ValueError naming it."""
    path = require_file(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                data = fh.read()
        else:
            data = path.read_bytes()
    except (EOFError, OSError, zlib.error) as exc:
        raise ValueError(f"{path}: cannot be read, the file is truncated or not valid gzip ({exc})") from exc
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


def check_flux(flux, path, label=""):
    """Reject NaN/inf/negative flux, naming the file (and the spectrum, if given)."""
    flux = np.asarray(flux)
    bad = ~np.isfinite(flux)
    where = f" ({label})" if label else ""
    if bad.any():
        raise ValueError(f"{path}{where}: {int(bad.sum())} NaN/inf flux value(s); the native libraries are "
                         f"complete grids, so this file is damaged. Replace it with the original.")
    if (flux < 0).any():
        raise ValueError(f"{path}{where}: {int((flux < 0).sum())} negative flux value(s); fluxes must be >= 0")
    return flux


def integrate_flux(wave, flux):
    """Trapezoid integral of F_lambda over wavelength along the last axis [erg s^-1 cm^-2]."""
    return np.trapezoid(flux, wave, axis=-1)
