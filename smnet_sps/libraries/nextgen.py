"""PHOENIX NextGen spectra in the gzip ASCII ``lteTT-G.G-Z.Z.NextGen.spec.gz`` format.

Each file: line 1 ``Teff logg [M/H]``, line 2 ``N``, then N wavelengths [A], N fluxes F_lambda
[erg s^-1 cm^-2 cm^-1] and N blackbody fluxes (ignored). Fluxes are per cm of wavelength, so they are
multiplied by 1e-8 to get per Angstrom. Two wavelength grids exist (21,312 px and, for Teff >= 5000 K,
27,391 px with extra UV points); the spectra are returned in one block per grid.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ._common import LibrarySpectra, check_flux, check_wavelengths, parse_floats, read_text, require_dir

NAME = "nextgen"
FOLDER = "nextgen_phoenix"
CITATION = "Hauschildt, Allard & Baron 1999, ApJ 512, 377; Allard et al. 1997, ARA&A 35, 137"
CONVENTION = "F_lambda per cm [erg/s/cm2/cm] x 1e-8 -> per Angstrom"
#: wavelength medium of the native tabulation (smnet-sps works in vacuum; air would be converted)
MEDIUM = "vacuum"
MEDIUM_NOTE = ("PHOENIX computes and tabulates spectra in vacuum wavelengths (Hauschildt, Allard & Baron "
               "1999; as documented for the PHOENIX grids, e.g. Husser et al. 2013)")
# lte<Teff/100>-<log g><signed [M/H]>: PHOENIX writes solar and sub-solar as -0.0, -0.5, super-solar as +0.3
_FILE_RE = re.compile(r"^lte(\d+)-([\d.]+)([-+][\d.]+)\.NextGen\.spec(\.gz)?$")
PER_CM_TO_PER_A = 1e-8


def read_file(path):
    """(teff, logg, [M/H], wavelength [A], F_lambda [erg s^-1 cm^-2 A^-1]) of one NextGen file."""
    text = read_text(path)
    lines = text.split("\n", 2)
    if len(lines) < 3:
        raise ValueError(f"{path}: fewer than 3 lines; not a NextGen spectrum file (truncated?)")
    try:
        head = lines[0].split()
        teff, logg, mh = float(head[0]), float(head[1]), float(head[2])
        n = int(lines[1].split()[0])
    except (ValueError, IndexError) as exc:
        raise ValueError(f"{path}: header must be 'Teff logg [M/H]' then 'N' (NextGen format); "
                         f"got {lines[0][:60]!r} / {lines[1][:60]!r}") from exc
    if not 1000 < n < 10 ** 6:
        raise ValueError(f"{path}: implausible number of wavelength points {n} (NextGen format)")
    # the name carries the parameters too (lte37-3.5-0.5: 3,700 K in 100s, log g 3.5, [M/H] -0.5): a header
    # that disagrees was taken as it stood, unseen unless it collided with another node
    m = _FILE_RE.match(Path(path).name)
    if m and (abs(100 * float(m.group(1)) - teff) > 50 or abs(float(m.group(2)) - logg) > 1e-6
              or abs(float(m.group(3)) - mh) > 1e-6):
        raise ValueError(f"{path}: its header gives Teff {teff:g} K, log g {logg:g}, [M/H] {mh:g}, but its "
                         "name says otherwise; a renamed or damaged file")
    values = parse_floats(lines[2], path, expected=3 * n)
    wave = check_wavelengths(values[:n], path)
    flux = values[n:2 * n] * PER_CM_TO_PER_A
    step = np.diff(wave)
    if (step < 0).any():
        raise ValueError(f"{path}: wavelengths decrease at {int((step < 0).sum())} place(s) (corrupt file)")
    # The native files repeat a handful of wavelengths (same flux twice); keep the first of each so the
    # grid is strictly increasing for resampling. Repeated points add nothing to the integral.
    keep = np.r_[True, step > 0]
    wave, flux = wave[keep], flux[keep]
    check_flux(flux, path)
    return teff, logg, mh, wave, flux


def read(folder, progress=None):
    """Read every NextGen spectrum under ``folder`` (sub-folders ``Z-0.0``, ``Z-0.5``, ...).

    Returns
    -------
    LibrarySpectra
        Surface F_lambda [erg s^-1 cm^-2 A^-1], one block per native wavelength grid.
    """
    folder = require_dir(folder, "NextGen")
    paths = sorted(p for p in folder.rglob("*") if _FILE_RE.match(p.name))
    if not paths:
        raise FileNotFoundError(f"NextGen: no lte*.NextGen.spec.gz files under {folder}")
    groups = {}     # n_wave -> dict of lists
    for path in paths:
        teff, logg, mh, wave, flux = read_file(path)
        # Files share a few wavelength grids (21,312 / 27,391 px, with small per-file differences):
        # one block per distinct grid keeps the resampling vectorised within each block.
        g = groups.setdefault(wave.tobytes(), {"wave": wave, "rows": []})
        g["rows"].append((teff, logg, mh, flux, str(path.relative_to(folder.parent))))
        if progress:
            progress()
    teff, logg, logz, src, waves, fluxes = [], [], [], [], [], []
    for n in sorted(groups, key=lambda k: (len(k), k)):
        g = groups[n]
        waves.append(g["wave"])
        fluxes.append(np.array([r[3] for r in g["rows"]]))
        for r in g["rows"]:
            teff.append(r[0])
            logg.append(r[1])
            logz.append(r[2])
            src.append(r[4])
    lib = LibrarySpectra(NAME, CITATION, FOLDER, CONVENTION, np.array(teff), np.array(logg),
                         np.array(logz), waves, fluxes, src, np.zeros(len(teff)), 0, paths)
    lib.raw_ratio = lib.bolometric_ratio()
    return lib
