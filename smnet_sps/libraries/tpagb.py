"""TP-AGB spectra shipped with FSPS (``AGB_spectra``): Lancon & Mouhcine 2002 O-rich / C-rich empirical
averages and Aringer et al. 2009 C-star models.

``Orich.spec.gz`` (9 spectra) and ``Crich.spec.gz`` (5): rows ``lambda[A]`` + one column per spectrum,
F_lambda. AGB_spectra/README says they integrate to 1 including the flux beyond 3500-50000 A, with the
coolest O-rich / second-coolest and coolest C-rich spectra divided by 1.05 / 1.10 / 1.25 for flux the
extrapolation misses; the files FSPS ships are tabulated over 100 A - 1 cm and integrate there to 1.02-1.20
(O-rich, coolest first: 1.18, 1.20, 1.13, ... 1.02) and 0.91-1.02 (C-rich). ``Crich_Aringer.spec.gz`` (9):
f_nu integrating to 0.999. Columns are ordered from coolest to hottest, as the ``.teff`` tables.

Teff: ``Orich.teff`` is a colour x metallicity table (first row: log Z/Zsun); the returned ``teff`` is the
solar column and ``extra['teff_table']`` / ``extra['logz_table']`` keep the whole Teff(Z) table.
``Crich.teff`` (colour, Teff) and ``Crich_Aringer.teff`` (Teff) hold one Teff per spectrum.
Rows that are zero in every spectrum at either end (Lancon & Mouhcine: 100-3,488 A) are padding and dropped:
those wavelengths are unknown, not dark.
All three are rescaled so that the integral over the tabulated range is exactly sigma Teff^4, so a star's
spectrum carries exactly its isochrone luminosity. FSPS instead multiplies the files as they are by L_bol
(getspec.f90), i.e. 2-20 % more light for the O-rich spectra; and the rescaling removes the README's
1.05 / 1.10 / 1.25 corrections from the coolest spectra.
No log g (phase libraries). ``logz`` is NaN for the Lancon & Mouhcine spectra (empirical, used at every
metallicity: NaN means "not metallicity specific") and 0 for the solar-metallicity Aringer models.
"""
from __future__ import annotations

import numpy as np

from ..constants import C_ANGSTROM, SIGMA_SB
from ._common import (LibrarySpectra, check_flux, check_increasing, check_last_number, check_row_count,
                      check_wavelengths, integrate_flux, parse_floats, read_text, require_dir, require_file)

FOLDER = "fsps_hot_and_agb"
CITE_LM = "Lancon & Mouhcine 2002, A&A 393, 167; via FSPS (Conroy, Gunn & White 2009)"
CITE_AR = "Aringer et al. 2009, A&A 503, 913; via FSPS (Conroy, Gunn & White 2009)"
#: wavelength medium per kind (smnet-sps works in vacuum) and the evidence
MEDIUM = {"tpagb_orich": "vacuum", "tpagb_crich": "vacuum", "tpagb_crich_aringer": "vacuum"}
_LM_NOTE = ("ASSUMED vacuum, not documented: observed averages of Lancon & Wood 2000 (ground-based, R ~ 1100 "
            "in the near-IR, lower in the optical); neither the FSPS README nor the CDS ReadMe "
            "(J/A+A/393/167) states the medium. If they are air, the error is 1.4-6.6 A at 0.5-2.4 um: < "
            "0.07 of an output pixel (20-200 A) and below the data's own resolution")
_AR_NOTE = ("COMARCS opacity-sampling synthetic spectra (Aringer et al. 2009), computed on a wavenumber grid "
            "and tabulated at constant ln-lambda steps (R ~ 2000): vacuum")
MEDIUM_NOTE = {"tpagb_orich": _LM_NOTE, "tpagb_crich": _LM_NOTE, "tpagb_crich_aringer": _AR_NOTE}
#: False: empirical averages used at every metallicity, ``logz`` NaN ("not metallicity specific"); only
#: these may hold a NaN [M/H] (grid.check_stellar_parameters refuses it elsewhere as a damaged file)
METALLICITY_SPECIFIC = {"tpagb_orich": False, "tpagb_crich": False, "tpagb_crich_aringer": True}
KINDS = {
    "tpagb_orich": ("Orich", CITE_LM, False),
    "tpagb_crich": ("Crich", CITE_LM, False),
    "tpagb_crich_aringer": ("Crich_Aringer", CITE_AR, True),
}
#: wavelength rows of each file (FSPS AGB_spectra): a file with fewer is truncated
N_WAVE = {"Orich": 6146, "Crich": 6146, "Crich_Aringer": 9032}


def _read_teff(path, n_spec):
    """(teff (n_spec,), teff_table or None, logz_table or None, line of each Teff) of a ``.teff`` file,
    Teff increasing down the file (the spectra are in that order; a reversed file was accepted)."""
    teff, table, logz_table, line_of = _read_teff_table(path, n_spec)
    for column in (teff[:, None] if table is None else table).T:
        check_increasing(column, path, "Teff", where=line_of)
    return teff, table, logz_table, line_of


def _read_teff_table(path, n_spec):
    numbered = [(k, ln.split()) for k, ln in
                enumerate(read_text(require_file(path, "TP-AGB Teff table")).splitlines(), 1)
                if ln.strip() and not ln.lstrip().startswith("#")]
    rows = [r for _, r in numbered]
    line_of = [k for k, _ in numbered]
    try:
        table = np.array(rows, dtype=float)
    except ValueError as exc:
        raise ValueError(f"{path}: expected a numeric table (rows of equal length), got {rows[:2]}") from exc
    bad = np.argwhere(~np.isfinite(np.atleast_2d(table)))
    if bad.size:        # NaN compares False: it passed as 'solar' (argmin |log Z|) and as 'increasing'
        r, c = bad[0]
        raise ValueError(f"{path}: line {line_of[r]}, column {c + 1} is {rows[r][c]!r}; the table must hold "
                         "finite numbers (a damaged file): replace it with the original")
    if table.ndim == 1 or table.shape[1] == 1:              # Teff per line
        teff = table.ravel()
        if teff.size != n_spec:
            raise ValueError(f"{path}: {teff.size} Teff values for {n_spec} spectra")
        return teff, None, None, line_of
    if table.shape[1] == 2 and table.shape[0] == n_spec:     # colour, Teff
        return table[:, 1], None, None, line_of
    if table.shape[0] == n_spec + 1:                         # header row of log Z/Zsun, then colour + Teff(Z)
        logz_table = table[0, 1:]
        teff_table = table[1:, 1:]
        solar = int(np.argmin(np.abs(logz_table)))
        if abs(logz_table[solar]) > 1e-6:
            raise ValueError(f"{path}: no log Z/Zsun = 0 column in the header row {logz_table}")
        return teff_table[:, solar].copy(), teff_table, logz_table, line_of[1:]
    raise ValueError(f"{path}: table shape {table.shape} does not fit {n_spec} spectra")


def _drop_zero_padding(wave, flux):
    """Rows at either end of the table that are zero in every spectrum are padding, not data: Lancon &
    Mouhcine's files hold explicit zeros from 100 to 3,488 A (their README: "extrapolation to a nil flux
    density at 3500A"). Zero flux means unknown here (as in SM-Net): they are dropped, so the library starts
    at 3,523 A like Aringer's and the common grid marks those pixels unknown instead of a known zero."""
    has_flux = np.flatnonzero((flux > 0).any(axis=0))
    if has_flux.size == 0:
        return wave, flux          # all dark: the integral check names the file
    keep = slice(has_flux[0], has_flux[-1] + 1)
    return wave[keep], flux[:, keep]


def read(folder, name="tpagb_orich", progress=None):
    """Read one TP-AGB library.

    Parameters
    ----------
    folder : path-like
        The FSPS ``fsps_hot_and_agb`` folder.
    name : {'tpagb_orich', 'tpagb_crich', 'tpagb_crich_aringer'}

    Returns
    -------
    LibrarySpectra
        Surface F_lambda [erg s^-1 cm^-2 A^-1] on the native grid; ``logg`` is NaN.
    """
    if name not in KINDS:
        raise ValueError(f"unknown TP-AGB library {name!r}; choose one of {sorted(KINDS)}")
    stem, citation, is_fnu = KINDS[name]
    folder = require_dir(folder, "TP-AGB")
    agb = folder / "AGB_spectra"
    path = require_file(agb / f"{stem}.spec.gz", f"TP-AGB {stem}")
    text = read_text(path)
    first = text.split("\n", 1)[0].split()
    ncol = len(first)
    if ncol < 2:
        raise ValueError(f"{path}: first line must be 'lambda flux1 flux2 ...', got {first}")
    values = parse_floats(text, path)
    if values.size % ncol:
        raise ValueError(f"{path}: {values.size} numbers is not a whole number of {ncol}-column rows "
                         f"(truncated or wrong format)")
    values = values.reshape(-1, ncol)
    check_row_count(len(values), N_WAVE[stem], path, f"TP-AGB {stem} spectra")
    check_last_number(text, path)
    wave = check_wavelengths(values[:, 0], path, "the wavelength in row {}")
    if not np.all(np.diff(wave) > 0):
        raise ValueError(f"{path}: wavelength column is not increasing (wrong format?)")
    flux = check_flux(values[:, 1:].T, path)
    wave, flux = _drop_zero_padding(wave, flux)
    teff_path = require_file(agb / f"{stem}.teff", "TP-AGB Teff table")
    teff, teff_table, logz_table, teff_lines = _read_teff(teff_path, flux.shape[0])
    if is_fnu:
        flux = flux * C_ANGSTROM / wave ** 2
    integral = integrate_flux(wave, flux)
    if (integral <= 0).any():
        raise ValueError(f"{path}: a spectrum integrates to zero flux")
    flux = flux * (SIGMA_SB * teff ** 4 / integral)[:, None]
    extra = {}
    if teff_table is not None:
        extra = {"teff_table": teff_table, "logz_table": logz_table}
    logz = np.zeros(teff.size) if METALLICITY_SPECIFIC[name] else np.full(teff.size, np.nan)
    conv = (("f_nu" if is_fnu else "F_lambda") + " with unit integral -> F_lambda rescaled to integral "
            "sigma Teff^4; no log g (phase library); "
            + ("[M/H] = 0 (solar models)" if is_fnu else "logz NaN = empirical, not metallicity specific")
            + ("; Teff = solar column of the Teff(Z) table" if teff_table is not None else ""))
    if progress:
        progress()
    teff_rel = str(teff_path.relative_to(folder.parent))
    return LibrarySpectra(name, citation, FOLDER, conv, teff, np.full(teff.size, np.nan), logz, [wave],
                          [flux],
                          [str(path.relative_to(folder.parent))] * teff.size, integral, 0, [path, teff_path],
                          extra, {"teff": [(teff_rel, k) for k in teff_lines]})
