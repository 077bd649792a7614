"""Castelli & Kurucz (2004) ATLAS9 grid in the STScI/CDBS ``ck04models`` FITS-table format.

Layout: ``<root>/ck{m,p}NN/ck{m,p}NN_<Teff>.fits[.gz]``; each file is a binary table with a
``WAVELENGTH`` column [A] and columns ``g00`` .. ``g50`` (log g = 0.0 .. 5.0) of surface F_lambda
[erg s^-1 cm^-2 A^-1]. A column that is all zeros is a model that was not computed: it is dropped and
counted (``n_dropped``), never treated as a dark star. The STScI catalog beside the folders
(``catalog.fits[.gz]``: one row per spectrum, ``FILENAME`` = ``ckm05/ckm05_10000.fits[g00]``) lists every
file of the grid: files it lists that are absent are named in a warning and in ``extra["missing_files"]``
(the grid would otherwise hold a silent hole at their Teff, [M/H] and every log g).
"""
from __future__ import annotations

import io
import re
import warnings

import numpy as np
from astropy.io import fits

from ._common import LibrarySpectra, check_flux, check_wavelengths, odd_ones_out, read_bytes, require_dir

NAME = "ck04"
FOLDER = "ck04_castelli_kurucz"
CITATION = "Castelli & Kurucz 2003, IAU Symp. 210, A20 (astro-ph/0405087)"
CONVENTION = "F_lambda surface flux [erg/s/cm2/A] as stored; all-zero g columns (not computed) dropped"
#: wavelength medium of the native tabulation (smnet-sps works in vacuum; air would be converted)
MEDIUM = "vacuum"
MEDIUM_NOTE = ("ATLAS9 computes fluxes on a frequency grid; its 1,221 wavelengths are c/nu (vacuum), "
               "tabulated as such in the STScI/CDBS ck04models tables (Castelli & Kurucz 2003)")

_DIR_RE = re.compile(r"^ck([mp])(\d\d)$")
_FILE_RE = re.compile(r"^ck([mp])(\d\d)_(\d+)\.fits(\.gz)?$")
#: the STScI/CDBS index of the grid's files, beside the metallicity folders (optional)
CATALOG_NAMES = ("catalog.fits", "catalog.fits.gz")


def _read_table(path):
    content = io.BytesIO(read_bytes(path))
    try:
        with fits.open(content, memmap=False) as hdul:
            if len(hdul) < 2 or not isinstance(hdul[1], fits.BinTableHDU):
                raise ValueError(f"{path}: expected a binary table in extension 1 (CK04 format)")
            data = hdul[1].data
            names = list(data.columns.names)
            if "WAVELENGTH" not in names:
                raise ValueError(f"{path}: no WAVELENGTH column (columns: {names}); not a CK04 table")
            gcols = [n for n in names if re.fullmatch(r"g\d\d", n)]
            if not gcols:
                raise ValueError(f"{path}: no g00..g50 flux columns (columns: {names}); not a CK04 table")
            wave = check_wavelengths(np.array(data["WAVELENGTH"], dtype=float), path,
                                     "WAVELENGTH {} (table row)")
            flux = np.array([np.asarray(data[c], dtype=float) for c in gcols])
            header = {k: hdul[0].header.get(k) for k in ("TEFF", "LOG_Z")}
    except (OSError, TypeError, EOFError, ValueError) as exc:
        if str(path) in str(exc):          # our own message, naming the file
            raise
        # a truncated uncompressed table fails in numpy's reshape, a text column in float(): name the file
        raise ValueError(f"{path}: cannot be read as FITS (truncated or wrong format: {exc})") from exc
    return wave, flux, [int(c[1:]) / 10.0 for c in gcols], header


def _catalog_files(folder):
    """(catalog path, sorted files it lists as 'ckm05/ckm05_10000.fits'); (None, None) without one."""
    for name in CATALOG_NAMES:
        path = folder / name
        if not path.is_file():
            continue
        try:
            with fits.open(io.BytesIO(read_bytes(path)), memmap=False) as hdul:
                names = np.asarray(hdul[1].data["FILENAME"]).astype(str)
        except (OSError, TypeError, KeyError, IndexError, EOFError, ValueError) as exc:
            raise ValueError(f"{path}: cannot be read as the CK04 catalog (a table with a FILENAME column: "
                             f"{exc}); replace it with the original or remove it") from exc
        return path, sorted({re.sub(r"\[.*$", "", n.strip()) for n in names if n.strip()})
    return None, None


def _check_labels(path, folder_z, file_z, teff, header):
    """The file's [M/H] and Teff as its folder, its name and its header give them must agree: the folder
    alone decided (a ckp00 file copied into ckm05 was built as [M/H] -0.5), and a renamed file took the
    name's Teff."""
    if file_z != folder_z:
        raise ValueError(f"{path}: its name says [M/H] {file_z:+.1f} but it lies in the folder for "
                         f"{folder_z:+.1f}; a file moved or copied between metallicity folders")
    h_teff, h_z = header.get("TEFF"), header.get("LOG_Z")
    if h_teff is not None and abs(float(h_teff) - teff) > 0.5:
        raise ValueError(f"{path}: its name says Teff {teff:g} K but its header TEFF = {h_teff}")
    if h_z is not None and abs(float(h_z) - file_z) > 1e-6:
        raise ValueError(f"{path}: its name says [M/H] {file_z:+.1f} but its header LOG_Z = {h_z}")


def read(folder, progress=None):
    """Read the CK04 grid.

    Parameters
    ----------
    folder : path-like
        The ``ck04_castelli_kurucz`` folder (holding ``ckm25`` .. ``ckp05``).
    progress : callable, optional
        Called once per file read (e.g. a tqdm ``update``).

    Returns
    -------
    LibrarySpectra
        Surface F_lambda [erg s^-1 cm^-2 A^-1] on the 1,221-px CK04 wavelength grid [A].
    """
    folder = require_dir(folder, "CK04")
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and _DIR_RE.match(p.name))
    if not subdirs:
        raise FileNotFoundError(f"CK04: no ckm??/ckp?? metallicity folders in {folder}")
    teff, logg, logz, flux, src, files, waves = [], [], [], [], [], [], []
    n_dropped = 0
    catalog, listed = _catalog_files(folder)
    for sub in subdirs:
        sign, digits = _DIR_RE.match(sub.name).groups()
        z = (-1 if sign == "m" else 1) * int(digits) / 10.0
        for path in sorted(sub.iterdir()):
            m = _FILE_RE.match(path.name)
            if not m:
                continue
            wave, fl, gs, header = _read_table(path)
            file_z = (-1 if m.group(1) == "m" else 1) * int(m.group(2)) / 10.0
            _check_labels(path, z, file_z, float(m.group(3)), header)
            check_flux(fl, path)
            files.append(path)
            waves.append(wave)
            for g, f in zip(gs, fl):
                if not f.any():        # model not computed
                    n_dropped += 1
                    continue
                teff.append(float(m.group(3)))
                logg.append(g)
                logz.append(z)
                flux.append(f)
                src.append(str(path.relative_to(folder.parent)))
            if progress:
                progress()
    odd = odd_ones_out(waves)        # the damaged file, even when it is the first one read
    if odd:
        raise ValueError(f"{', '.join(str(files[i]) for i in odd[:5])}"
                         + (f" (+{len(odd) - 5} more)" if len(odd) > 5 else "")
                         + f": wavelength grid differs from the other CK04 files ({len(waves) - len(odd)} of "
                         f"{len(waves)} share one grid); replace the damaged file with the original")
    if not files:
        # e.g. NextGen's lte*.NextGen.spec.gz copied into the CK04 folders: "no computed spectra found" did
        # not say that no file had a CK04 name
        others = sorted(p.name for sub in subdirs for p in sub.iterdir() if p.is_file())
        seen = f"; found {len(others)} other file(s), e.g. {', '.join(others[:3])}" if others else ""
        raise ValueError(f"CK04: no spectrum files named ck<m|p>NN_<Teff>.fits (or .fits.gz, e.g. "
                         f"ckm05_5750.fits) in the ckm??/ckp?? folders of {folder}{seen}")
    if not flux:
        raise ValueError(f"CK04: no computed spectra found under {folder}")
    extra = {}
    if catalog is not None:
        found = {f"{p.parent.name}/{p.name[:-3] if p.name.endswith('.gz') else p.name}" for p in files}
        missing = [name for name in listed if name not in found]
        if missing:
            # a partial copy: every spectrum of those files (all log g at one Teff and [M/H]) is absent from
            # the grid, which read on without a word (the shared copy lacks 40 of the 608 files)
            extra["missing_files"] = missing
            warnings.warn(f"CK04: {len(missing)} of the {len(listed)} files listed in {catalog} are absent "
                          f"from {folder} (e.g. {', '.join(missing[:5])}): the grid has no spectra at "
                          "their Teff and [M/H]; copy them from the original to complete it", stacklevel=2)
        files = files + [catalog]
    wave0 = waves[0]
    flux = np.array(flux)
    teff = np.array(teff)
    lib = LibrarySpectra(NAME, CITATION, FOLDER, CONVENTION, teff, np.array(logg), np.array(logz),
                         [wave0], [flux], src, np.zeros(len(teff)), n_dropped, files, extra)
    lib.raw_ratio = lib.bolometric_ratio()
    return lib

