"""Rauch (2003) H-Ni NLTE hot compact-star grid (TMAP-type) in the pystellibs FITS format.

``stellib_Rauch.grid.fits``: primary HDU (n+1, 1221) float64 with rows 0..n-1 the spectra and the last
row the wavelength [A]; extension ``TGZ`` with ``logT``, ``logg``, ``Z`` (+ ionising photon rates).
Fluxes are normalised to ~unit bolometric flux (0.93-0.99 of it falls inside 91 A - 160 um, the rest is
below 91 A), so they are multiplied by sigma Teff^4 (not divided by the tabulated integral, which would
put the missing EUV flux back into the tabulated range). [M/H] = log10(Z / 0.02).

**Not a default library.** The shipped ``stellib_Rauch.grid.fits`` is degenerate: its 102 rows hold only
2 distinct spectra (every Z = 0.002 row is identical, every Z = 0.02 row too) although the TGZ table claims
Teff 50-190 kK and log g 5-8; the reader rejects it (``check_distinct_spectra``), and ``grid build`` skips it
when it is named with ``--only``. The reader is kept so that a corrected file works. The Rauch (2003)
models are used from FSPS' ``ipagb_*.spec`` instead (``rauch_pagb.py``, a phase library without log g).
"""
from __future__ import annotations

import numpy as np
from astropy.io import fits

from ..constants import SIGMA_SB
from ._common import (LibrarySpectra, ZSUN_MASS_FRACTION, check_flux, check_wavelengths, integrate_flux,
                      require_dir, require_file)

NAME = "rauch_tmap"
FOLDER = "rauch_tmap_pystellibs"
CITATION = "Rauch 2003, A&A 403, 709; grid as packaged by pystellibs (Fouesneau, Zenodo)"
CONVENTION = "unit bolometric flux x sigma Teff^4; [M/H] = log10(Z/0.02); Teff = 10**logT rounded to 1000 K"
#: wavelength medium of the native tabulation (smnet-sps works in vacuum; air would be converted)
MEDIUM = "vacuum"
MEDIUM_NOTE = ("TMAP NLTE model fluxes computed on a frequency grid; lambda = c/nu (vacuum)")
FILENAME = "stellib_Rauch.grid.fits"


def read(folder, progress=None):
    """Read the pystellibs Rauch grid.

    Returns
    -------
    LibrarySpectra
        Surface F_lambda [erg s^-1 cm^-2 A^-1] on the 1,221-px BaSeL grid [A].
    """
    folder = require_dir(folder, "Rauch")
    path = require_file(folder / FILENAME, "Rauch")
    try:
        with fits.open(path, memmap=False) as hdul:
            data = np.array(hdul[0].data, dtype=float)
            tgz = hdul["TGZ"].data
            logt = np.array(tgz["logT"], dtype=float)
            logg = np.array(tgz["logg"], dtype=float)
            z = np.array(tgz["Z"], dtype=float)
    except (OSError, KeyError, TypeError, EOFError) as exc:
        raise ValueError(f"{path}: not a pystellibs Rauch grid (needs a 2-d primary image and a TGZ table "
                         f"with logT, logg, Z): {exc}") from exc
    if data.ndim != 2 or data.shape[0] != logt.size + 1:
        raise ValueError(f"{path}: primary image shape {data.shape} does not match {logt.size} TGZ rows + "
                         f"1 wavelength row")
    wave, flux = check_wavelengths(data[-1], path, "wavelength {} of the last image row"), data[:-1]
    if not np.all(np.diff(wave) > 0):
        raise ValueError(f"{path}: last image row is not an increasing wavelength array")
    check_flux(flux, path)
    if (z <= 0).any():
        raise ValueError(f"{path}: non-positive metal mass fraction Z in the TGZ table")
    # logT has 3 decimals (0.1-0.2 % in Teff); the models sit on a 10 kK grid, so round to 1000 K
    teff = np.round(10 ** logt, -3)
    raw = integrate_flux(wave, flux)        # ~0.93-0.99 of the unit normalisation
    flux = flux * (SIGMA_SB * teff ** 4)[:, None]
    if progress:
        progress()
    return LibrarySpectra(NAME, CITATION, FOLDER, CONVENTION, teff, logg, np.log10(z / ZSUN_MASS_FRACTION),
                          [wave], [flux], [str(path.relative_to(folder.parent))] * len(teff), raw, 0, [path])
