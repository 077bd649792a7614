"""FSPS backend: write a generator as a stellar library in the binary format FSPS reads from $SPS_HOME.

What FSPS reads for a C3K-type spectral library (``spec_type`` starting with ``c3k``; checked in
cconroy20/fsps ``src/sps_setup.f90``, ``src/spec_bin.f90`` and ``src/getspec.f90``, and the files of
``SPECTRA/C3K/`` in the repository)::

    $SPS_HOME/SPECTRA/C3K/<spec_type>.lambda     n_wave lines: wavelength [A]          (list-directed read)
    $SPS_HOME/SPECTRA/C3K/<spec_type>.res        n_wave lines: resolution per pixel    (list-directed read)
    $SPS_HOME/SPECTRA/C3K/zlegend.dat            one metal mass fraction Z per line; file names use F6.4
    $SPS_HOME/SPECTRA/C3K/<spec_type>_z<Z:F6.4>.spectra.bin
        FORM='UNFORMATTED', ACCESS='DIRECT', one record of n_wave*n_logt*n_logg 4-byte reals (no record
        markers): the Fortran array speclib(n_wave, n_logt, n_logg), i.e. C order (n_logg, n_logt, n_wave),
        flux = Eddington flux H_nu = F_nu / (4 pi) [erg s^-1 cm^-2 Hz^-1] (getspec multiplies by
        16 pi^2 R^2 / L_sun to get L_nu), 0 where the library has no model.

The (log Teff, log g) nodes are read from separate files whose name depends on the FSPS version:
``SPECTRA/BaSeL3.1/basel_logt.dat`` / ``basel_logg.dat`` (3.x) or ``SPECTRA/C3K/logt.dat`` /
``SPECTRA/C3K/logg.dat`` with ``<spec_type>_zlegend.dat`` ([M/H]) (C3K_LR/C3K_HR layout). This writer writes
all of the C3K-folder files; pass the node grid your build was compiled with (``n_logt``, ``n_logg``, and
in older builds ``nspec``/``nzinit`` are compile-time constants in ``sps_vars.f90``): see
:func:`read_fsps_nodes`. Wavelengths are vacuum, as FSPS' own libraries; ``<spec_type>.res`` holds the
measured LSF (box of one pixel width, as a Gaussian sigma in km/s with the same FWHM) and
``<spec_type>_smnet_provenance.json`` the medium, LSF shape and FWHM per pixel. python-fsps is NOT needed to
write or read these files (it needs a Fortran compiler and a full $SPS_HOME to *use* them).
"""
from __future__ import annotations

import json
import warnings
import re
from pathlib import Path

import numpy as np

from smnet_sps.constants import C_ANGSTROM

HOST = "fsps"
HOST_VERSIONS = ">=3.2 (Fortran FSPS; C3K slot)"
DESCRIPTION = "Stellar library as FSPS $SPS_HOME/SPECTRA/C3K binary files (H_nu on a logT x logg x Z grid)"

__all__ = ["HOST", "HOST_VERSIONS", "DESCRIPTION", "C3K_LOGT", "C3K_LOGG", "C3K_LR_LOGZSOL", "C3K_ZSUN",
           "flambda_to_hnu", "hnu_to_flambda", "z_tag", "write_fsps_library", "read_spectra_bin",
           "read_fsps_nodes"]

# C3K's native node grid in FSPS (SPECTRA/C3K/c3k_hr/logt.dat, SPECTRA/C3K/logg.dat, c3k_lr_zlegend.dat).
_C3K_TEFF = np.array([2500, 2800, 3000, 3200] + list(range(3500, 3750, 250)) + list(range(3750, 13001, 250))
                     + list(range(14000, 50001, 1000)), float)
C3K_LOGT = np.round(np.log10(_C3K_TEFF), 4)
C3K_LOGG = np.arange(-1.0, 5.51, 0.5)
C3K_LR_LOGZSOL = np.arange(-2.0, 0.51, 0.25)
C3K_ZSUN = 0.0134        # zsol_spec FSPS assigns to the C3K libraries (sps_setup.f90)



# how far FSPS's F6.4 Z rounding may move a library metallicity in [M/H] and still count as the node [dex]
_ROUNDING_DEX = 0.002

def flambda_to_hnu(wave_aa, f_lambda):
    """Surface F_lambda [erg/s/cm2/A] -> Eddington flux H_nu = F_nu / (4 pi) [erg/s/cm2/Hz]."""
    return np.asarray(f_lambda, float) * np.asarray(wave_aa, float) ** 2 / C_ANGSTROM / (4.0 * np.pi)


def hnu_to_flambda(wave_aa, h_nu):
    """Inverse of :func:`flambda_to_hnu`."""
    return np.asarray(h_nu, float) * 4.0 * np.pi * C_ANGSTROM / np.asarray(wave_aa, float) ** 2


def z_tag(z):
    """FSPS's file-name tag of a metal mass fraction: Fortran ``F6.4`` (e.g. 0.0134 -> '0.0134')."""
    z = float(z)
    if not (0 < z < 10):
        raise ValueError(f"Z must be a metal mass fraction in (0, 10) to fit FSPS's F6.4 file names; got {z}")
    return f"{z:6.4f}"


def _check_axis(name, values, unit):
    arr = np.asarray(values, float)
    if arr.ndim != 1 or arr.size < 2 or not np.isfinite(arr).all() or not (np.diff(arr) > 0).all():
        raise ValueError(f"{name} must be a strictly increasing 1-d array of >= 2 finite values ({unit})")
    return arr


def write_fsps_library(sps_home, generator=None, *, spec_type="c3k_lr", logt=C3K_LOGT, logg=C3K_LOGG,
                       logzsol=C3K_LR_LOGZSOL, zsun=C3K_ZSUN, wavelength=None, resolution_kms=None,
                       overwrite=False, progress=False, batch_size=8192):
    """Write ``generator``'s spectra as an FSPS C3K-slot library under ``<sps_home>/SPECTRA/C3K``.

    Parameters
    ----------
    sps_home : str or Path, the FSPS data root ($SPS_HOME); ``SPECTRA/C3K`` is created inside
    generator : Generator, default ``smnet_sps.neural.load_generator()``
    spec_type : str, FSPS library name; must start with ``c3k`` for FSPS to look in ``SPECTRA/C3K``
    logt, logg : node grids (log10 Teff [K], log g [cgs]); must be the ones your FSPS build interpolates on
    logzsol : requested [M/H] of the metallicity nodes; Z = zsun * 10**logzsol is rounded to FSPS's F6.4
        file-name precision and the spectra are computed at the [M/H] of that rounded Z (``logzsol`` in the
        returned dict)
    zsun : float, solar Z of the library (FSPS assumes 0.0134 for C3K)
    wavelength : array [A], optional output grid (linear interpolation of F_lambda; 0 outside the
        generator's range); default the generator's own grid. Builds with a compiled ``nspec`` need
        exactly that many points.
    resolution_kms : float or array, written to ``<spec_type>.res``; default the Gaussian sigma [km/s] whose
        FWHM is the measured LSF FWHM of the generator's grid (one pixel: a box, :mod:`smnet_sps.lsf`)
    overwrite : bool
    progress : bool, tqdm bar over metallicities

    Returns
    -------
    dict with ``directory``, ``files`` (list of Paths), ``n_uncovered`` (nodes written as zeros), ``z`` and
    ``logzsol`` (the metallicities actually written) and ``wavelength``
    """
    if not re.fullmatch(r"c3k[A-Za-z0-9_+.\-]*", str(spec_type)):
        raise ValueError(f"spec_type must start with 'c3k' (FSPS only reads C3K-type libraries from "
                         "SPECTRA/C3K) and contain only letters, digits, '_', '+', '-', '.'; got "
                         f"{spec_type!r}")
    if generator is None:
        from smnet_sps.neural import load_generator
        generator = load_generator()
    logt = _check_axis("logt", logt, "log10 K")
    logg = _check_axis("logg", logg, "cgs")
    logzsol = _check_axis("logzsol", logzsol, "dex")
    zsun = float(zsun)
    if not 0 < zsun < 1:
        raise ValueError(f"zsun must be in (0, 1); got {zsun}")
    tags = [z_tag(z) for z in zsun * 10.0 ** logzsol]
    if len(set(tags)) != len(tags) or float(tags[0]) <= 0:
        raise ValueError(f"metallicities zsun*10**logzsol collide or round to 0 in FSPS's F6.4 file names "
                         f"{tags}; use fewer / higher logzsol nodes (Z >= 0.0001)")
    # FSPS knows each library metallicity only through its F6.4 tag, so the spectra are computed at the
    # [M/H] of the rounded Z it will read (e.g. -2.0 -> Z 0.0001 -> -2.127), never mislabelled
    zs = np.array([float(t) for t in tags])
    logzsol = np.log10(zs / zsun)
    gen_wave = np.asarray(generator.wavelength, float)
    wave = gen_wave if wavelength is None else _check_axis("wavelength", wavelength, "Angstrom")
    beyond = (wave < gen_wave[0]) | (wave > gen_wave[-1])
    if beyond.mean() > 0.5:
        # e.g. microns for Angstrom: the spectra would be written as zeros without a word
        raise ValueError(f"wavelength must be in Angstrom and lie mostly within the generator's "
                         f"{gen_wave[0]:g}-{gen_wave[-1]:g} A; {int(beyond.sum())} of {wave.size} points "
                         f"({wave[0]:g}-{wave[-1]:g}) lie outside it (microns given?)")
    if beyond.any():
        warnings.warn(f"{int(beyond.sum())} of {wave.size} wavelengths lie outside the generator's "
                      f"{gen_wave[0]:g}-{gen_wave[-1]:g} A; their spectra are written as 0", UserWarning,
                      stacklevel=2)
    from smnet_sps.lsf import FWHM_PER_SIGMA, LSF_SHAPE, grid_lsf_fwhm
    lsf_fwhm = np.interp(wave, gen_wave, grid_lsf_fwhm(gen_wave))
    if resolution_kms is None:
        resolution_kms = lsf_fwhm / wave * (C_ANGSTROM * 1e-13) / FWHM_PER_SIGMA
    res = np.broadcast_to(np.asarray(resolution_kms, float), wave.shape)

    out = Path(sps_home) / "SPECTRA" / "C3K"
    out.mkdir(parents=True, exist_ok=True)
    names = [f"{spec_type}.lambda", f"{spec_type}.res", "zlegend.dat", f"{spec_type}_zlegend.dat",
             "logt.dat", "logg.dat", f"{spec_type}_smnet_provenance.json"] + \
            [f"{spec_type}_z{t}.spectra.bin" for t in tags]
    files = [out / n for n in names]
    existing = [f for f in files if f.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists (and {len(existing) - 1} more); pass overwrite=True")

    np.savetxt(files[0], wave, fmt="%.10g")
    np.savetxt(files[1], res, fmt="%.6e")
    # list-directed reads accept full precision; F6.4 formatted reads take the first 6 characters,
    # so values are written with 4 decimals after a leading '0.' when Z < 1
    files[2].write_text("".join(f"{t}\n" for t in tags))
    files[3].write_text("".join(f"{m:+.2f}\n" for m in logzsol))
    files[4].write_text("".join(f"{t:7.4f} {10 ** t:8.0f}\n" for t in logt))
    files[5].write_text("".join(f"{g:5.2f}\n" for g in logg))

    T, G = np.meshgrid(logt, logg, indexing="xy")      # (n_logg, n_logt): C order of the Fortran array
    teff, grav = 10.0 ** T.ravel(), G.ravel()
    n_uncovered = 0
    covered = {}
    iterator = list(zip(logzsol, tags))
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(iterator, desc="FSPS library", unit="Z")
    box_mh = getattr(getattr(generator, "box", None), "logz", (-np.inf, np.inf))
    for mh, tag in iterator:
        # F6.4 rounding can push an edge node just past the box (logzsol +0.5 -> Z 0.0424 -> +0.50026):
        # computed on the edge (< 0.002 dex away) instead of written as zeros
        mh = float(np.clip(mh, box_mh[0], box_mh[1])) if min(abs(mh - box_mh[0]), abs(mh - box_mh[1])) \
            < _ROUNDING_DEX else mh
        inside = generator.in_coverage(teff, grav, np.full(teff.size, mh))
        covered[tag] = int(inside.sum())
        block = np.zeros((teff.size, wave.size), np.float32)
        if inside.any():
            flux, _ = generator.surface_flux(teff[inside], grav[inside], np.full(int(inside.sum()), mh),
                                             batch_size=batch_size)
            if wavelength is not None:
                flux = np.stack([np.interp(wave, gen_wave, f, left=0.0, right=0.0) for f in flux])
            block[inside] = flambda_to_hnu(wave, flux)
        n_uncovered += int((~inside).sum())
        # (n_logg, n_logt, n_wave) in C order == speclib(n_wave, n_logt, n_logg) in Fortran order
        cube = block.reshape(logg.size, logt.size, wave.size).astype("<f4")
        cube.tofile(out / f"{spec_type}_z{tag}.spectra.bin")

    # C3K's grid has corners no library covers (about half its nodes at every Z): a metallicity is flagged
    # when it has less than half the covered nodes of the best-covered one (e.g. beyond the [M/H] range)
    thin = [t for t, n in covered.items() if n < 0.5 * max(covered.values(), default=0)]
    if thin:
        warnings.warn(f"metallicities Z = {', '.join(thin)} have less than half the covered nodes of the "
                      f"best one ({max(covered.values())} of {teff.size}); their other nodes are written as "
                      "zeros, which FSPS reads as no light", UserWarning, stacklevel=2)
    files[6].write_text(json.dumps({
        "generator": getattr(generator, "name", "generator"), "spec_type": spec_type,
        "flux": "Eddington flux H_nu = F_nu/(4 pi) [erg s^-1 cm^-2 Hz^-1], 0 where outside coverage",
        "layout": "float32 little-endian, C order (n_logg, n_logt, n_wave) = Fortran "
                  "speclib(nspec,ndim_logt,ndim_logg)",
        "n_wave": int(wave.size), "n_logt": int(logt.size), "n_logg": int(logg.size), "n_z": int(zs.size),
        "zsun": zsun, "z": zs.tolist(), "logzsol_effective": logzsol.tolist(),
        "n_uncovered_nodes": n_uncovered,
        "resolution_file": "Gaussian sigma [km/s] with FWHM = the measured (box) LSF FWHM unless given",
        "wavelength_medium": "vacuum (as FSPS expects; FSPS' vactoair_flag converts its outputs to air)",
        "lsf_shape": LSF_SHAPE, "lsf_fwhm_aa": [round(float(v), 4) for v in lsf_fwhm],
        "outside_fraction": "per-SSP out-of-coverage light is computed by FSPS, not here; nodes outside the "
                            "generator's coverage are written as 0 (n_uncovered_nodes)",
    }, indent=1))
    return {"directory": out, "files": files, "n_uncovered": n_uncovered, "z": zs, "logzsol": logzsol,
            "wavelength": wave}


def read_spectra_bin(path, *, n_wave, n_logt, n_logg):
    """Read one ``.spectra.bin`` as an array (n_logg, n_logt, n_wave) of H_nu [erg/s/cm2/Hz].

    Raises ``ValueError`` when the file size does not match the given dimensions (wrong grid or file).
    """
    path = Path(path)
    expected = 4 * int(n_wave) * int(n_logt) * int(n_logg)
    size = path.stat().st_size
    if size != expected:
        raise ValueError(f"{path} has {size} bytes; a (n_wave={n_wave}, n_logt={n_logt}, n_logg={n_logg}) "
                         f"float32 record has {expected}")
    return np.fromfile(path, dtype="<f4").reshape(int(n_logg), int(n_logt), int(n_wave))


def read_fsps_nodes(sps_home):
    """The (logt, logg) nodes an FSPS installation interpolates on, from
    ``SPECTRA/BaSeL3.1/basel_log{t,g}.dat``
    or, when those are absent, ``SPECTRA/C3K/log{t,g}.dat``. Returns ``(logt, logg)`` arrays."""
    spectra = Path(sps_home) / "SPECTRA"
    for t_file, g_file in ((spectra / "BaSeL3.1" / "basel_logt.dat", spectra / "BaSeL3.1" / "basel_logg.dat"),
                           (spectra / "C3K" / "logt.dat", spectra / "C3K" / "logg.dat")):
        if t_file.is_file() and g_file.is_file():
            logt = np.loadtxt(t_file, ndmin=2)[:, 0]      # C3K logt.dat has a second column (Teff)
            return logt.astype(float), np.loadtxt(g_file, ndmin=1).astype(float).ravel()
    raise FileNotFoundError(f"no basel_logt.dat/basel_logg.dat or C3K/logt.dat/logg.dat under {spectra}")
