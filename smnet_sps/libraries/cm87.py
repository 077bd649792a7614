"""Clegg & Middlemass (1987) hot-star spectra in the PEGASE ``stellibCM.dat`` ASCII format.

Format: line 1 ``n_spec n_wave``; n_spec lines ``log10(Teff) logg NHI NHeI NHeII``; n_wave wavelengths [A];
then n_spec x n_wave fluxes normalised to ~unit bolometric flux, multiplied here by sigma Teff^4.
The composition is not stated in the file; [M/H] = 0 (solar) is assumed.
"""
from __future__ import annotations

import numpy as np

from ..constants import SIGMA_SB
from ._common import (LibrarySpectra, check_flux, check_last_number, check_wavelengths, integrate_flux,
                      parse_floats, read_text, require_dir, require_file)

NAME = "cm87"
FOLDER = "pegase_cm87_hotstars"
CITATION = "Clegg & Middlemass 1987, MNRAS 228, 759; via PEGASE (Fioc & Rocca-Volmerange 1997)"
CONVENTION = ("unit bolometric flux x sigma Teff^4; [M/H] = 0 assumed (composition not stated); "
              "Teff = 10**logT rounded to 1000 K")
#: wavelength medium of the native tabulation (smnet-sps works in vacuum; air would be converted)
MEDIUM = "vacuum"
MEDIUM_NOTE = ("PEGASE tabulates stellibCM on the BaSeL/Kurucz 1,221-point c/nu grid (vacuum)")
FILENAME = "stellibCM.dat"


def read(folder, progress=None):
    """Read ``stellibCM.dat``.

    Returns
    -------
    LibrarySpectra
        Surface F_lambda [erg s^-1 cm^-2 A^-1] on the 1,221-px BaSeL grid [A].
    """
    folder = require_dir(folder, "CM87")
    path = require_file(folder / FILENAME, "CM87")
    text = read_text(path)
    values = parse_floats(text, path)
    if values.size < 2:
        raise ValueError(f"{path}: empty file; expected 'n_spec n_wave' on line 1 (PEGASE stellib format)")
    n_spec, n_wave = values[0], values[1]
    if n_spec != int(n_spec) or n_wave != int(n_wave) or not (0 < n_spec < 10 ** 4 and 0 < n_wave < 10 ** 6):
        raise ValueError(f"{path}: line 1 must be 'n_spec n_wave' (PEGASE stellib format), got "
                         f"{n_spec:g} {n_wave:g}")
    n_spec, n_wave = int(n_spec), int(n_wave)
    expected = 2 + 5 * n_spec + n_wave + n_spec * n_wave
    if values.size != expected:
        raise ValueError(f"{path}: expected {expected} numbers for {n_spec} spectra x {n_wave} wavelengths, "
                         f"found {values.size} (file truncated or not in the PEGASE stellib format)")
    # the count still matches when the file is cut inside its last number (.8174E-17 -> .8174: 1e17x)
    check_last_number(text, path)
    params = values[2:2 + 5 * n_spec].reshape(n_spec, 5)
    wave = values[2 + 5 * n_spec:2 + 5 * n_spec + n_wave]
    flux = values[2 + 5 * n_spec + n_wave:].reshape(n_spec, n_wave)
    check_wavelengths(wave, path)
    if not np.all(np.diff(wave) > 0):
        raise ValueError(f"{path}: wavelengths are not increasing (wrong format?)")
    check_flux(flux, path)
    # log Teff has 3 decimals (0.1-0.2 % in Teff); the models sit on a 20 kK grid, so round to 1000 K
    teff = np.round(10 ** params[:, 0], -3)
    raw = integrate_flux(wave, flux)
    flux = flux * (SIGMA_SB * teff ** 4)[:, None]
    if progress:
        progress()
    return LibrarySpectra(NAME, CITATION, FOLDER, CONVENTION, teff, params[:, 1].copy(), np.zeros(n_spec),
                          [wave], [flux], [str(path.relative_to(folder.parent))] * n_spec, raw, 0, [path])
