"""Rauch (2003) NLTE post-AGB / hot pre-white-dwarf spectra as shipped with FSPS (``Hot_spectra/ipagb_*``).

Files (FSPS ``SPECTRA/Hot_spectra``, format of FSPS ``sps_setup.f90``):

* ``ipagb.teff``: one Teff [K, linear] per line (15 values, 50,000-190,000 K);
* ``ipagb_solar.spec.gz`` and ``ipagb_halo.spec.gz``: 9,281 rows ``lambda[A]`` + one column per Teff
  (10 A - 1 cm), f_nu normalised so that int f_nu dnu = 1 (0.3-1.8 % off in the files).

Choices (all assumptions are stated, nothing is invented):

* **All 15 Teff columns** (50-190 kK) are read, so the grid reaches 190 kK. FSPS itself reads only the
  first 14 (``ndim_pagb = 14`` in ``sps_vars.f90``); ``read(folder, fsps_columns_only=True)`` reproduces
  FSPS' set exactly.
* **No log g**: the files do not give one, so this is a *phase library* (``logg`` = NaN), never given an
  invented log g.
* **[M/H]**: 'solar' -> 0 and 'halo' -> -1. The halo abundance set is metal-poor; treating it as
  [M/H] = -1 is an assumption (FSPS itself uses 'halo' for Z/Zsun <= 0.5 and 'solar' above).
* **Flux**: f_nu -> F_lambda = f_nu c / lambda^2, rescaled so that the integral over the tabulated range
  (10 A - 1 cm, which holds the whole spectrum, EUV included) is exactly sigma Teff^4. ``raw_ratio`` keeps
  the native unit normalisation (1.000-1.018).
* **Repeated wavelengths**: the wavelength column is rounded to 0.1 A, so ~300 neighbouring points share a
  wavelength (with different fluxes); never decreasing. Points with the same wavelength are averaged into
  one (they carry no width in the integral); a decreasing wavelength is an error naming the file.
"""
from __future__ import annotations

import numpy as np

from ..constants import C_ANGSTROM, SIGMA_SB
from ._common import (LibrarySpectra, check_flux, check_last_number, check_wavelengths, integrate_flux,
                      parse_floats, read_text, require_dir, require_file)
from .wmbasic import read_column_lines

NAME = "rauch_pagb"
FOLDER = "fsps_hot_and_agb"
CITATION = "Rauch 2003, A&A 403, 709 (H-Ni NLTE post-AGB models); via FSPS (Conroy, Gunn & White 2009)"
CONVENTION = ("f_nu with unit integral -> F_lambda = f_nu c/lambda^2, rescaled to integral sigma Teff^4 over "
              "10 A - 1 cm; all 15 Teff columns (FSPS uses the first 14); no log g (phase library); "
              "[M/H] = 0 for 'solar', -1 for 'halo' (assumed); repeated wavelengths averaged")
#: wavelength medium of the native tabulation (smnet-sps works in vacuum; air would be converted)
MEDIUM = "vacuum"
MEDIUM_NOTE = ("TMAP NLTE model fluxes (f_nu) computed on a frequency grid; FSPS lists them at lambda = c/nu "
               "(vacuum)")
#: number of Teff columns FSPS reads (``ndim_pagb`` in sps_vars.f90); the 15th (190 kK) column is unused
N_FSPS = 14
#: abundance set -> [M/H] (halo = -1 is an assumption)
SETS = (("solar", 0.0), ("halo", -1.0))
#: tabulated range [A] (10 A - 1 cm: first and last rows 10.1 A and 1.0001e8 A): the unit normalisation, and
#: so the rescaling to sigma Teff^4, needs all of it; a file ending earlier is truncated
WAVE_RANGE = (10.1, 1.0001e8)


def _merge_repeated(wave, flux, path):
    """Average the flux of points sharing one wavelength; reject a decreasing wavelength column."""
    if np.any(np.diff(wave) < 0):
        i = int(np.flatnonzero(np.diff(wave) < 0)[0])
        raise ValueError(f"{path}: wavelength column decreases at row {i + 2} ({wave[i]} -> {wave[i + 1]}); "
                         f"wrong format or damaged file")
    uniq, inverse, counts = np.unique(wave, return_inverse=True, return_counts=True)
    if uniq.size == wave.size:
        return wave, flux
    out = np.zeros((flux.shape[0], uniq.size))
    np.add.at(out.T, inverse, flux.T)
    return uniq, out / counts


def read(folder, progress=None, fsps_columns_only=False):
    """Read the FSPS Rauch post-AGB spectra (solar and halo sets).

    Returns
    -------
    LibrarySpectra
        Surface F_lambda [erg s^-1 cm^-2 A^-1] on the native grid (10 A - 1 cm, repeated wavelengths
        averaged); ``logg`` is NaN; solar spectra first, then halo.
    """
    folder = require_dir(folder, "Rauch post-AGB (FSPS ipagb)")
    hot = folder / "Hot_spectra"
    teff_path = require_file(hot / "ipagb.teff", "Rauch post-AGB Teff")
    teff_all, teff_lines = read_column_lines(teff_path, "Rauch post-AGB Teff")
    if np.any(teff_all < 1e4) or np.any(np.diff(teff_all) <= 0):
        raise ValueError(f"{teff_path}: expected increasing linear Teff [K] >= 10,000, got {teff_all}")
    n_use = min(N_FSPS, teff_all.size) if fsps_columns_only else teff_all.size
    teff1 = teff_all[:n_use]
    ncol = 1 + teff_all.size
    waves, fluxes, teff, logz, src, raw, files = [], [], [], [], [], [], [teff_path]
    for label, mh in SETS:
        path = require_file(hot / f"ipagb_{label}.spec.gz", f"Rauch post-AGB {label} spectra")
        text = read_text(path)
        values = parse_floats(text, path)
        if values.size == 0 or values.size % ncol:
            raise ValueError(f"{path}: {values.size} numbers is not a whole number of rows of {ncol} columns "
                             f"(lambda + {teff_all.size} Teff of {teff_path.name}); "
                             "truncated or wrong format")
        values = values.reshape(-1, ncol)
        check_wavelengths(values[:, 0], path, "the wavelength in row {}")
        if values[0, 0] > WAVE_RANGE[0] or values[-1, 0] < WAVE_RANGE[1]:
            raise ValueError(f"{path}: wavelengths {values[0, 0]:g}..{values[-1, 0]:g} A, expected "
                             f"{WAVE_RANGE[0]:g}..{WAVE_RANGE[1]:g} A (10 A - 1 cm): the file is truncated; "
                             "replace it with the original")
        check_last_number(text, path)
        fnu = check_flux(values[:, 1:1 + n_use].T, path)           # (n_use, n_wave)
        wave, fnu = _merge_repeated(values[:, 0], fnu, path)
        flam = fnu * C_ANGSTROM / wave ** 2
        integral = integrate_flux(wave, flam)                        # ~1 (unit normalisation)
        if (integral <= 0).any():
            raise ValueError(f"{path}: a spectrum integrates to zero flux")
        flam *= (SIGMA_SB * teff1 ** 4 / integral)[:, None]
        if waves and np.array_equal(wave, waves[-1]):
            fluxes[-1] = np.vstack([fluxes[-1], flam])
        else:
            waves.append(wave)
            fluxes.append(flam)
        teff.append(teff1)
        logz.append(np.full(n_use, mh))
        raw.append(integral)
        src += [str(path.relative_to(folder.parent))] * n_use
        files.append(path)
        if progress:
            progress()
    teff = np.concatenate(teff)
    teff_rel = str(teff_path.relative_to(folder.parent))
    teff_source = [(teff_rel, k) for k in teff_lines[:n_use]] * len(SETS)
    return LibrarySpectra(NAME, CITATION, FOLDER, CONVENTION, teff, np.full(teff.size, np.nan),
                          np.concatenate(logz), waves, fluxes, src, np.concatenate(raw), 0, files,
                          parameter_source={"teff": teff_source})
