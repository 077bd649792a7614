"""BaSeL 2.2 corrected library (Lejeune, Cuisinier & Buser 1997, 1998), split two-column files.

Layout: ``<root>/lejeune_index.ls`` (``filename Teff logg`` per line) and ``<root>/spectra/<filename>.gz``,
each with 1,221 rows ``wavelength[A] flux``. The flux is F_lambda / pi (Kurucz "astrophysical flux"
convention, erg s^-1 cm^-2 A^-1), so it is multiplied by pi to get surface flux. [M/H] = 0 for all.
"""
from __future__ import annotations

import re

import numpy as np

from ..constants import PACKAGE_DATA
from ._common import (LibrarySpectra, check_flux, check_last_number, check_row_count, parse_floats, read_text,
                      require_dir, require_file)

NAME = "basel22"
FOLDER = "basel22_lejeune_solar"
CITATION = "Lejeune, Cuisinier & Buser 1997, A&AS 125, 229; 1998, A&AS 130, 65"
CONVENTION = "F_lambda/pi (astrophysical flux) x pi -> surface F_lambda"
#: wavelength medium of the native tabulation (smnet-sps works in vacuum; air would be converted)
MEDIUM = "vacuum"
MEDIUM_NOTE = ("tabulated on the Kurucz/ATLAS9 1,221-point grid of c/nu wavelengths (vacuum), the same as "
               "CK04 (Lejeune, Cuisinier & Buser 1997, sect. 2)")
INDEX = "lejeune_index.ls"
#: the BaSeL 2.2 wavelength grid (1,221 points, 91 A - 160 um) of every spectrum file; the package ships it as
#: its default grid, so each file is checked against it rather than against the first file read (which may be
#: the damaged one)
GRID_FILE = PACKAGE_DATA / "wavelength_basel1221.npy"


_NAME_RE = re.compile(r"^lej_t(\d+)g(-?\d+(?:\.\d+)?)\.txt(?:\.gz)?$")


def read_index(path):
    """[(filename, Teff, logg)] from ``lejeune_index.ls``."""
    return [row[:3] for row in _read_index_lines(path)]


def _read_index_lines(path):
    """[(filename, Teff, logg, line counted from 1)] from ``lejeune_index.ls``."""
    rows = []
    for k, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            rows.append((parts[0], float(parts[1]), float(parts[2]), k))
        except (IndexError, ValueError) as exc:
            raise ValueError(f"{path}: line {k} must be 'filename Teff logg', got {line!r}") from exc
    if not rows:
        raise ValueError(f"{path}: empty index")
    for name, teff, logg, k in rows:
        # the file name carries the parameters too (lej_t05000g04.5.txt): an index line that disagrees was
        # taken as it stood (5100 K for that file)
        m = _NAME_RE.match(name)
        if m and (abs(float(m.group(1)) - teff) > 0.5 or abs(float(m.group(2)) - logg) > 1e-6):
            raise ValueError(f"{path}: line {k} gives Teff {teff:g} K, log g {logg:g} for {name}, whose name "
                             f"says {float(m.group(1)):g} K, log g {float(m.group(2)):g}")
    return rows


def read(folder, progress=None):
    """Read the BaSeL 2.2 library listed in ``lejeune_index.ls``.

    Returns
    -------
    LibrarySpectra
        Surface F_lambda [erg s^-1 cm^-2 A^-1] on the 1,221-px BaSeL grid [A], [M/H] = 0.
    """
    folder = require_dir(folder, "BaSeL 2.2")
    index = require_file(folder / INDEX, "BaSeL 2.2 index")
    rows = _read_index_lines(index)
    wave0 = np.load(GRID_FILE)
    flux, teff, logg, src, files, index_lines = [], [], [], [], [index], []
    for name, t, g, line in rows:
        path = require_file(folder / "spectra" / name, f"BaSeL 2.2 spectrum listed in {index.name}")
        text = read_text(path)
        values = parse_floats(text, path)
        if values.size % 2:
            raise ValueError(f"{path}: expected two columns 'wavelength flux', got {values.size} numbers "
                             f"(truncated or wrong format)")
        values = values.reshape(-1, 2)
        check_row_count(len(values), wave0.size, path, "the BaSeL 2.2 grid, 91 A - 160 um")
        check_last_number(text, path, same_line=False)
        if not np.array_equal(values[:, 0], wave0):
            i = int(np.flatnonzero(values[:, 0] != wave0)[0])
            raise ValueError(f"{path}: wavelength {values[i, 0]:g} A in row {i + 1}, expected {wave0[i]:g} A "
                             "(the BaSeL 2.2 1,221-point grid); replace the damaged file with the original")
        f = check_flux(values[:, 1] * np.pi, path)
        flux.append(f)
        teff.append(t)
        logg.append(g)
        src.append(str(path.relative_to(folder.parent)))
        index_lines.append((str(index.relative_to(folder.parent)), line))
        files.append(path)
        if progress:
            progress()
    teff = np.array(teff)
    lib = LibrarySpectra(NAME, CITATION, FOLDER, CONVENTION, teff, np.array(logg), np.zeros(len(teff)),
                         [wave0], [np.array(flux)], src, np.zeros(len(teff)), 0, files,
                         parameter_source={"teff": index_lines, "logg": index_lines})
    lib.raw_ratio = lib.bolometric_ratio()
    return lib
