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
from ._common import (LibrarySpectra, ZSUN_MASS_FRACTION, check_flux, integrate_flux, parse_floats, read_text,
                      require_dir, require_file)

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


def read_column_file(path, what):
    """Floats of a one-value-per-line file (``*.teff``, ``*_zlegend.dat``)."""
    path = require_file(path, what)
    values = parse_floats(read_text(path), path)
    if values.size == 0:
        raise ValueError(f"{path}: empty; expected one number per line ({what})")
    return values


def read(folder, progress=None):
    """Read the WM-basic grid from the FSPS ``fsps_hot_and_agb`` folder.

    Returns
    -------
    LibrarySpectra
        Surface F_lambda [erg s^-1 cm^-2 A^-1] on the native 5,508-px grid (1 A - 160 um).
    """
    folder = require_dir(folder, "WM-basic")
    hot = folder / "Hot_spectra"
    logt = read_column_file(hot / "WMBASIC.teff", "WM-basic Teff")
    zs = read_column_file(hot / "WMBASIC_zlegend.dat", "WM-basic metallicities")
    if (zs <= 0).any():
        raise ValueError(f"{hot / 'WMBASIC_zlegend.dat'}: metal mass fractions must be > 0, got {zs}")
    files = [hot / "WMBASIC.teff", hot / "WMBASIC_zlegend.dat"]
    ncol = 1 + len(LOGG) * logt.size
    wave0, flux, teff, logg, logz, src, raw = None, [], [], [], [], [], []
    for z in zs:
        path = hot / f"WMBASIC_z{z:6.4f}.spec.gz"
        if not path.is_file() and path.with_suffix("").is_file():
            path = path.with_suffix("")
        require_file(path, f"WM-basic spectra for Z = {z:g}")
        values = parse_floats(read_text(path), path)
        if values.size % ncol:
            raise ValueError(f"{path}: {values.size} numbers is not a whole number of rows of {ncol} columns "
                             f"(lambda + 3 log g x {logt.size} Teff); truncated or wrong format")
        values = values.reshape(-1, ncol)
        wave = values[:, 0]
        if wave0 is None:
            wave0 = wave
            if not np.all(np.diff(wave0) > 0):
                raise ValueError(f"{path}: wavelength column is not increasing (wrong format?)")
        elif not np.array_equal(wave, wave0):
            raise ValueError(f"{path}: wavelength grid differs from the other WMBASIC files")
        fnu = check_flux(values[:, 1:].T, path)            # (33, n_wave), log g major
        flam = fnu * C_ANGSTROM / wave0 ** 2
        integral = integrate_flux(wave0, flam)           # ~1 (unit normalisation)
        if (integral <= 0).any():
            raise ValueError(f"{path}: a spectrum integrates to zero flux")
        t = np.tile(np.round(10 ** logt, -1), len(LOGG))   # log Teff has 5 decimals: round to 10 K
        flux.append(flam * (SIGMA_SB * t ** 4 / integral)[:, None])
        raw.append(integral)
        teff.append(t)
        logg.append(np.repeat(LOGG, logt.size))
        logz.append(np.full(t.size, np.log10(z / ZSUN_MASS_FRACTION)))
        src += [str(path.relative_to(folder.parent))] * t.size
        files.append(path)
        if progress:
            progress()
    return LibrarySpectra(NAME, CITATION, FOLDER, CONVENTION, np.concatenate(teff), np.concatenate(logg),
                          np.concatenate(logz), [wave0], [np.concatenate(flux)], src, np.concatenate(raw), 0,
                          files)
