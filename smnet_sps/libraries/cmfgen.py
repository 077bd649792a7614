"""CMFGEN Wolf-Rayet spectra (Smith, Norris & Crowther 2002) in FSPS' ``CMFGEN_{WN,WC}_Zall.spec`` format.

``Hot_spectra/CMFGEN_<kind>.teff``: 12 log Teff. ``Hot_spectra/CMFGEN_<kind>_Zall.spec.gz``: 1,963 wavelengths
[A], then for 5 Z x 12 Teff (Z outer) a line ``logTeff Z`` and 1,963 fluxes. Fluxes are f_nu normalised to
unit integral: converted to F_lambda and rescaled to integral sigma Teff^4. Teff comes from the ``.teff``
file (the per-spectrum line has it to 2 decimals only). No log g: WR spectra are wind dominated and are a
*phase library* (``logg`` = NaN), never given an invented log g. [M/H] = log10(Z / 0.020) (assumption).
"""
from __future__ import annotations

import numpy as np

from ..constants import C_ANGSTROM, SIGMA_SB
from ._common import (LibrarySpectra, ZSUN_MASS_FRACTION, check_flux, check_last_number, check_wavelengths,
                      integrate_flux, parse_floats, read_text, require_dir, require_file)
from .wmbasic import check_log_teff, read_column_lines

FOLDER = "fsps_hot_and_agb"
CITATION = "Smith, Norris & Crowther 2002, MNRAS 337, 1309; via FSPS (Conroy, Gunn & White 2009)"
#: the FSPS grid: 1,963 wavelengths, 5 Z x 12 Teff per file
N_WAVE, N_Z, N_TEFF = 1963, 5, 12
CONVENTION = ("f_nu with unit integral -> F_lambda, rescaled to integral sigma Teff^4; Teff from "
              "CMFGEN_*.teff; "
              "no log g (phase library); [M/H] = log10(Z/0.020) (assumed)")
#: wavelength medium of the native tabulation (smnet-sps works in vacuum; air would be converted)
MEDIUM = "vacuum"
MEDIUM_NOTE = ("CMFGEN solves the transfer in frequency and FSPS gives f_nu at lambda = c/nu (vacuum); the "
               "FSPS file does not state a medium, and at its 20 A sampling the air-vacuum shift (1.4 A at "
               "5000 A) is 7 % of a pixel")


def read(folder, kind="WN", progress=None):
    """Read the WN or WC CMFGEN grid (60 spectra: 5 Z x 12 Teff).

    Parameters
    ----------
    folder : path-like
        The FSPS ``fsps_hot_and_agb`` folder.
    kind : {'WN', 'WC'}

    Raises
    ------
    ValueError
        Naming the damaged file: another number of wavelengths than 1,963, a file without spectra, a
        truncated one (not 5 Z x 12 Teff when the Teff file lists the full 12; a last number cut short),
        or a Teff file that does not fit the spectra.

    Returns
    -------
    LibrarySpectra
        Surface F_lambda [erg s^-1 cm^-2 A^-1] on the native 1,963-px grid (91 A - 1 cm); ``logg`` is NaN.
    """
    if kind not in ("WN", "WC"):
        raise ValueError(f"CMFGEN kind must be 'WN' or 'WC', got {kind!r}")
    folder = require_dir(folder, f"CMFGEN {kind}")
    hot = folder / "Hot_spectra"
    teff_path = require_file(hot / f"CMFGEN_{kind}.teff", f"CMFGEN {kind} Teff")
    logt, teff_lines = read_column_lines(teff_path, f"CMFGEN {kind} Teff")
    check_log_teff(logt, teff_path)
    path = require_file(hot / f"CMFGEN_{kind}_Zall.spec.gz", f"CMFGEN {kind}")
    text = read_text(path)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    wave = parse_floats(lines[0], path) if lines else np.array([])
    nw, nt = wave.size, logt.size
    if nw != N_WAVE:
        raise ValueError(f"{path}: the first line holds {nw} wavelengths, expected {N_WAVE:,} (wrong format "
                         "or damaged file)")
    check_wavelengths(wave, path, "wavelength {} of line 1")
    if not np.all(np.diff(wave) > 0):
        raise ValueError(f"{path}: first line is not an increasing wavelength list (wrong format?)")
    n_spec, odd_line = divmod(len(lines) - 1, 2)
    if n_spec == 0:
        raise ValueError(f"{path}: only the wavelength line, no spectra; expected pairs of ('logTeff Z', "
                         f"{N_WAVE:,} fluxes) lines for {N_Z} Z x {nt} Teff: the file is truncated")
    heads = [parse_floats(lines[1 + 2 * i], path) for i in range(n_spec)]
    for i, head in enumerate(heads):
        # NaN fails no comparison: a NaN Z made a Z = 0.001 spectrum [M/H] NaN, 'used at every metallicity'
        if head.size != 2 or not np.isfinite(head).all() or head[1] <= 0:
            raise ValueError(f"{path}: line {2 * i + 2} must be 'logTeff Z' with finite numbers and Z > 0, "
                             f"got {lines[1 + 2 * i]!r}")
    # Teff per metallicity as the file has it (log Teff restarts with each Z): two or more blocks of one size
    # other than the Teff file's count mean the Teff file, not the spectra, has extra or missing lines (a
    # truncated spectra file ends in a shorter block instead)
    starts = [0] + [i for i in range(1, n_spec) if heads[i][0] <= heads[i - 1][0]] + [n_spec]
    blocks = set(np.diff(starts).tolist())
    if len(starts) > 2 and len(blocks) == 1 and blocks != {nt} and not odd_line:
        raise ValueError(f"{teff_path}: {nt} log Teff values, but {path.name} has {blocks.pop()} Teff per "
                         "metallicity: the Teff file has extra or missing lines")
    if odd_line or n_spec % nt:
        raise ValueError(f"{path}: expected a wavelength line then pairs of ('logTeff Z', fluxes) lines in "
                         f"multiples of {nt} Teff ({teff_path.name}); got {len(lines)} lines (truncated or "
                         "wrong format)")
    if nt == N_TEFF and n_spec != N_Z * N_TEFF:     # the full FSPS grid (a cut-down copy has fewer Teff)
        raise ValueError(f"{path}: {n_spec} spectra = {n_spec // nt} metallicities x {nt} Teff, expected "
                         f"{N_Z} x {N_TEFF}: the file is truncated; replace it with the original")
    check_last_number(text, path)
    flux, teff, logz, teff_source = [], [], [], []
    teff_rel = str(teff_path.relative_to(folder.parent))
    for i, head in enumerate(heads):
        j = i % nt
        if abs(head[0] - logt[j]) > 0.01:
            raise ValueError(f"{path}: spectrum {i} has log Teff {head[0]} but {teff_path.name} row "
                             f"{j} is {logt[j]}; files do not belong together")
        f = parse_floats(lines[2 + 2 * i], path, expected=nw)
        flux.append(check_flux(f, path, f"spectrum {i}"))
        teff.append(np.round(10 ** logt[j], -1))    # log Teff has 5 decimals: round to 10 K
        logz.append(np.log10(head[1] / ZSUN_MASS_FRACTION))
        teff_source.append((teff_rel, teff_lines[j]))
    teff = np.array(teff)
    flam = np.array(flux) * C_ANGSTROM / wave ** 2
    integral = integrate_flux(wave, flam)
    if (integral <= 0).any():
        raise ValueError(f"{path}: a spectrum integrates to zero flux")
    flam *= (SIGMA_SB * teff ** 4 / integral)[:, None]
    if progress:
        progress()
    name = f"cmfgen_{kind.lower()}"
    return LibrarySpectra(name, CITATION, FOLDER, CONVENTION, teff, np.full(teff.size, np.nan),
                          np.array(logz),
                          [wave], [flam], [str(path.relative_to(folder.parent))] * teff.size, integral, 0,
                          [teff_path, path], parameter_source={"teff": teff_source})
