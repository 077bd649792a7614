"""WM-basic O/B stars with winds (Eldridge et al., BPASS v2.2) in FSPS' ``Hot_spectra`` format.

Files: ``Hot_spectra/WMBASIC.teff`` (11 log Teff), ``Hot_spectra/WMBASIC_zlegend.dat`` (12 mass fractions Z)
and ``Hot_spectra/WMBASIC_z<Z>.spec.gz``: rows ``lambda[A]`` + 33 columns = log g 3.5 (11 Teff), 4.0 (11),
4.5 (11). The log g values are not in the files; they are hard-coded in FSPS (``wmb_logg = 3.5, 4.0, 4.5``
in sps_setup.f90) and taken from there. Fluxes are f_nu normalised to unit integral: converted to
F_lambda = f_nu c / lambda^2 and rescaled so that the integral over 1 A - 160 um is exactly sigma Teff^4.
[M/H] = log10(Z / 0.020) (BPASS convention; an assumption).
"""
from __future__ import annotations

import numpy as np

from ..constants import C_ANGSTROM, SIGMA_SB
from ._common import (LibrarySpectra, ZSUN_MASS_FRACTION, check_flux, check_increasing, check_last_number,
                      check_row_count, check_wavelengths, integrate_flux, odd_ones_out, parse_floats,
                      read_text, require_dir, require_file)

NAME = "wmbasic"
FOLDER = "fsps_hot_and_agb"
CITATION = "Eldridge et al. 2017, PASA 34, e058 (BPASS WM-basic); via FSPS (Conroy, Gunn & White 2009)"
CONVENTION = ("f_nu with unit integral -> F_lambda = f_nu c/lambda^2, rescaled to integral sigma Teff^4; "
              "log g 3.5/4.0/4.5 hard-coded in FSPS; [M/H] = log10(Z/0.020) (BPASS convention, assumed)")
#: wavelength medium of the native tabulation (smnet-sps works in vacuum; air would be converted)
MEDIUM = "vacuum"
MEDIUM_NOTE = ("WM-basic model fluxes are tabulated as f_nu against frequency; FSPS lists them at lambda = "
               "c/nu (vacuum)")
LOGG = (3.5, 4.0, 4.5)      # FSPS sps_setup.f90: wmb_logg = (/3.5,4.0,4.5/)


#: wavelength rows of every WMBASIC_z*.spec file (1 A - 160 um); a file with fewer is truncated
N_WAVE = 5508
#: plausible log10 Teff [K] of a hot-star Teff file (1,000 K - 1,000,000 K): linear Teff is a wrong file
LOG_TEFF_RANGE = (3.0, 6.0)


def read_column_lines(path, what):
    """(floats, line of each, counted from 1) of a one-value-per-line file (``*.teff``, ``*_zlegend.dat``)."""
    path = require_file(path, what)
    numbered = [(k, ln) for k, ln in enumerate(read_text(path).splitlines(), 1) if ln.strip()]
    values = parse_floats(" ".join(ln for _, ln in numbered), path)
    if values.size == 0:
        raise ValueError(f"{path}: empty; expected one number per line ({what})")
    if values.size != len(numbered):
        raise ValueError(f"{path}: {values.size} numbers on {len(numbered)} lines; expected one number per "
                         f"line ({what})")
    return values, [k for k, _ in numbered]


def check_log_teff(logt, path):
    """Reject a log Teff file holding linear Teff (or other nonsense), naming the file and line."""
    lo, hi = LOG_TEFF_RANGE
    bad = ~((logt >= lo) & (logt <= hi))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{path}: value {k + 1} is {logt[k]:g}; expected log10 Teff [K] within "
                         f"{lo:g}..{hi:g} (e.g. 4.39794 for 25,000 K), one per line: linear Teff or a "
                         "damaged file")
    check_increasing(logt, path, "log Teff")


def read(folder, progress=None):
    """Read the WM-basic grid from the FSPS ``fsps_hot_and_agb`` folder.

    Returns
    -------
    LibrarySpectra
        Surface F_lambda [erg s^-1 cm^-2 A^-1] on the native 5,508-px grid (1 A - 160 um).
    """
    folder = require_dir(folder, "WM-basic")
    hot = folder / "Hot_spectra"
    teff_path = require_file(hot / "WMBASIC.teff", "WM-basic Teff")
    z_path = require_file(hot / "WMBASIC_zlegend.dat", "WM-basic metallicities")
    logt, teff_lines = read_column_lines(teff_path, "WM-basic Teff")
    check_log_teff(logt, teff_path)
    zs, z_lines = read_column_lines(z_path, "WM-basic metallicities")
    if (zs <= 0).any():
        raise ValueError(f"{z_path}: metal mass fractions must be > 0, got {zs}")
    files = [teff_path, z_path]
    ncol = 1 + len(LOGG) * logt.size
    waves, paths, flux, teff, logg, logz, src, raw, zsource = [], [], [], [], [], [], [], [], []
    for z, z_line in zip(zs, z_lines):
        path = require_file(hot / f"WMBASIC_z{z:6.4f}.spec.gz", f"WM-basic spectra for Z = {z:g}")
        text = read_text(path)
        values = parse_floats(text, path)
        first = len(text.split("\n", 1)[0].split())
        if first != ncol and first > 1 and (first - 1) % len(LOGG) == 0 and values.size % first == 0:
            # whole rows of another number of Teff: the Teff file is the odd one out, not the spectra
            raise ValueError(f"{teff_path}: {logt.size} Teff values, but {path.name} has {first - 1} flux "
                             f"columns = {len(LOGG)} log g x {(first - 1) // len(LOGG)} Teff: the Teff file "
                             "has extra or missing lines")
        if values.size % ncol:
            raise ValueError(f"{path}: {values.size} numbers is not a whole number of rows of {ncol} columns "
                             f"(lambda + 3 log g x {logt.size} Teff); truncated or wrong format")
        values = values.reshape(-1, ncol)
        check_row_count(len(values), N_WAVE, path, "WM-basic, 1 A - 160 um")
        check_last_number(text, path)
        wave = check_wavelengths(values[:, 0], path, "the wavelength in row {}")
        if not np.all(np.diff(wave) > 0):
            raise ValueError(f"{path}: wavelength column is not increasing (wrong format?)")
        fnu = check_flux(values[:, 1:].T, path)            # (33, n_wave), log g major
        flam = fnu * C_ANGSTROM / wave ** 2
        integral = integrate_flux(wave, flam)           # ~1 (unit normalisation)
        if (integral <= 0).any():
            raise ValueError(f"{path}: a spectrum integrates to zero flux")
        t = np.tile(np.round(10 ** logt, -1), len(LOGG))   # log Teff has 5 decimals: round to 10 K
        waves.append(wave)
        paths.append(path)
        flux.append(flam * (SIGMA_SB * t ** 4 / integral)[:, None])
        raw.append(integral)
        teff.append(t)
        logg.append(np.repeat(LOGG, logt.size))
        logz.append(np.full(t.size, np.log10(z / ZSUN_MASS_FRACTION)))
        src += [str(path.relative_to(folder.parent))] * t.size
        zsource += [(str(z_path.relative_to(folder.parent)), z_line)] * t.size
        files.append(path)
        if progress:
            progress()
    odd = odd_ones_out(waves)        # the damaged file, not whichever file happens to come second
    if odd:
        raise ValueError(f"{', '.join(str(paths[i]) for i in odd)}: wavelength grid differs from the other "
                         f"WMBASIC files ({len(waves) - len(odd)} of {len(waves)} share one grid); replace "
                         "the damaged file with the original")
    teff_rel = str(teff_path.relative_to(folder.parent))
    teff_source = [(teff_rel, k) for k in teff_lines] * (len(LOGG) * len(zs))
    return LibrarySpectra(NAME, CITATION, FOLDER, CONVENTION, np.concatenate(teff), np.concatenate(logg),
                          np.concatenate(logz), [waves[0]], [np.concatenate(flux)], src, np.concatenate(raw),
                          0, files, parameter_source={"teff": teff_source, "logz": zsource})
