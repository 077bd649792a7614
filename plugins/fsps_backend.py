"""FSPS backend: write a generator as a stellar library in the binary format FSPS reads from $SPS_HOME.

Two layouts, as FSPS's Fortran reads them (``src/sps_setup.f90`` and ``src/sps_vars.f90`` of
cconroy20/fsps at the tags named; ``spec_type`` starting with ``c3k``):

``layout="v4"`` (FSPS 4.0 and its C3K_LR / C3K_HR builds; the default)::

    $SPS_HOME/SPECTRA/C3K/<spec_type>/<spec_type>.lambda    nspec lines: wavelength [A]       (list-directed)
    $SPS_HOME/SPECTRA/C3K/<spec_type>/<spec_type>.res       nspec lines: resolution, sigma [km/s]
    $SPS_HOME/SPECTRA/C3K/<spec_type>/<spec_type>_zlegend.dat   [M/H] per line, read as '(A5)' ("-0.25")
    $SPS_HOME/SPECTRA/C3K/<spec_type>/logt.dat, logg.dat    the node grid (ndim_logt, ndim_logg lines)
    $SPS_HOME/SPECTRA/C3K/<spec_type>/<spec_type>_feh<[M/H]:A5>_afe+0.0.spec.bin

``layout="v3.3"`` (FSPS 3.3's C3K build, ``spec_type='c3k_afe+0.0'``)::

    $SPS_HOME/SPECTRA/C3K/<spec_type>.lambda, <spec_type>.res
    $SPS_HOME/SPECTRA/C3K/zlegend.dat                       metal mass fraction Z per line (shared file)
    $SPS_HOME/SPECTRA/C3K/<spec_type>_z<Z:F6.4>.spectra.bin
    nodes from $SPS_HOME/SPECTRA/BaSeL3.1/basel_logt.dat, basel_logg.dat (BaSeL's 68 x 19 grid)

Each ``.bin`` is FORM='UNFORMATTED', ACCESS='DIRECT', one record of nspec*ndim_logt*ndim_logg 4-byte reals
(no record markers): the Fortran array speclib(nspec, ndim_logt, ndim_logg), i.e. C order (n_logg, n_logt,
n_wave), flux = Eddington flux H_nu = F_nu / (4 pi) [erg s^-1 cm^-2 Hz^-1] (getspec multiplies by 16 pi^2
R^2 / L_sun to get L_nu), 0 where the library has no model. ``nspec``, ``ndim_logt``, ``ndim_logg`` and
``nzinit`` (the zlegend lines read) are compile-time constants: a stock C3K_LR build of 4.0 reads 1,936
wavelengths, 80 x 14 nodes and 11 metallicities, so either pass ``wavelength=`` its ``c3k_lr.lambda`` or
recompile with this library's numbers (the writer warns when they differ from the stock build's).
Wavelengths are vacuum, as FSPS' own libraries; ``<spec_type>.res`` holds the measured LSF (box of one pixel
width, as a Gaussian sigma in km/s with the same FWHM) and ``<spec_type>_smnet_provenance.json`` the medium,
LSF shape and FWHM per pixel. python-fsps is NOT needed to write or read these files (it needs a Fortran
compiler and a full $SPS_HOME to *use* them).

Until 2026-12-02 this writer mixed the two: 4.0's node grid and name with 3.3's flat folder and Z file names,
which no FSPS release reads.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np

from smnet_sps.constants import C_ANGSTROM
from smnet_sps.medium import _as_angstrom
from smnet_sps.progress import want_progress

from ._common import check_zsun

HOST = "fsps"
HOST_VERSIONS = "3.3 (C3K build) and 4.0 (C3K_LR / C3K_HR builds); Fortran FSPS"
DESCRIPTION = "Stellar library as FSPS $SPS_HOME/SPECTRA/C3K binary files (H_nu on a logT x logg x Z grid)"

__all__ = ["HOST", "HOST_VERSIONS", "DESCRIPTION", "LAYOUTS", "C3K_LOGT", "C3K_LOGG", "C3K_LR_LOGZSOL",
           "ZSUN", "STOCK_BUILDS", "flambda_to_hnu", "hnu_to_flambda", "z_tag", "feh_tag",
           "write_fsps_library", "read_spectra_bin", "read_fsps_nodes", "library_files"]

LAYOUTS = ("v4", "v3.3")

# C3K's node grid in FSPS 4.0 (SPECTRA/C3K/c3k_lr/logt.dat, logg.dat and c3k_lr_zlegend.dat)
_C3K_TEFF = np.array([2500, 2800, 3000, 3200] + list(range(3500, 3750, 250)) + list(range(3750, 13001, 250))
                     + list(range(14000, 50001, 1000)), float)
C3K_LOGT = np.round(np.log10(_C3K_TEFF), 4)
C3K_LOGG = np.arange(-1.0, 5.51, 0.5)
C3K_LR_LOGZSOL = np.arange(-2.5, 0.51, 0.25)      # the 13 lines of 4.0's c3k_lr_zlegend.dat
#: zsol_spec FSPS assigns to its C3K libraries (sps_vars.f90): 0.0185 in 4.0, 0.0134 in 3.3
ZSUN = {"v4": 0.0185, "v3.3": 0.0134}
#: what a stock build reads (sps_vars.f90): (nspec, ndim_logt, ndim_logg, nzinit)
STOCK_BUILDS = {("v4", "c3k_lr"): (1936, 80, 14, 11), ("v4", "c3k_hr"): (10992, 80, 14, 11),
                ("v3.3", "c3k_afe+0.0"): (11149, 68, 19, 11)}
_DEFAULT_SPEC_TYPE = {"v4": "c3k_lr", "v3.3": "c3k_afe+0.0"}
_AFE_TAG = "+0.0"                                  # afe_str of the builds without AFE_FLAG

# how far FSPS's F6.4 Z rounding may move a library metallicity in [M/H] and still count as the node [dex]
_ROUNDING_DEX = 0.002
# log10 Teff [K] a node may have (1,000 K to 10^6 K): values beyond it are Teff in K, not its log
_LOGT_RANGE = (3.0, 6.0)


def flambda_to_hnu(wave_aa, f_lambda):
    """Surface F_lambda [erg/s/cm2/A] -> Eddington flux H_nu = F_nu / (4 pi) [erg/s/cm2/Hz]; ``wave_aa`` in A
    or a length Quantity (np.asarray took 500 nm as 500 A: H_nu 100x too small)."""
    return np.asarray(f_lambda, float) * _as_angstrom(wave_aa)[0] ** 2 / C_ANGSTROM / (4.0 * np.pi)


def hnu_to_flambda(wave_aa, h_nu):
    """Inverse of :func:`flambda_to_hnu`."""
    return np.asarray(h_nu, float) * 4.0 * np.pi * C_ANGSTROM / _as_angstrom(wave_aa)[0] ** 2


def z_tag(z):
    """FSPS's file-name tag of a metal mass fraction: Fortran ``F6.4`` (e.g. 0.0134 -> '0.0134')."""
    z = float(z)
    if not (0 < z < 10):
        raise ValueError(f"Z must be a metal mass fraction in (0, 10) to fit FSPS's F6.4 file names; got {z}")
    return f"{z:6.4f}"


def feh_tag(mh):
    """FSPS 4.0's [M/H] tag in C3K file names and zlegend files: 5 characters, read as '(A5)' (e.g. -0.25 ->
    '-0.25', 0 -> '+0.00'). FSPS then reads the value from the tag as '(F4.2)', i.e. from its first four
    characters (-0.25 -> -0.2): its own files carry the same quirk."""
    mh = float(mh)
    if not -9.995 < mh < 9.995:
        raise ValueError(f"[M/H] must lie within +-9.99 to fit FSPS's 5-character tags; got {mh}")
    return f"{mh:+.2f}"


def library_files(sps_home, spec_type="c3k_lr", logzsol=C3K_LR_LOGZSOL, layout="v4", zsun=None):
    """The paths FSPS opens for a C3K-slot library (``layout`` as :func:`write_fsps_library`): a dict with
    ``lambda``, ``res``, ``zlegend``, ``logt``, ``logg`` and ``spectra`` (a list, one per metallicity)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}; got {layout!r}")
    spectra = Path(sps_home) / "SPECTRA"
    if layout == "v4":
        d = spectra / "C3K" / spec_type
        return {"lambda": d / f"{spec_type}.lambda", "res": d / f"{spec_type}.res",
                "zlegend": d / f"{spec_type}_zlegend.dat", "logt": d / "logt.dat", "logg": d / "logg.dat",
                "spectra": [d / f"{spec_type}_feh{feh_tag(m)}_afe{_AFE_TAG}.spec.bin" for m in logzsol]}
    d = spectra / "C3K"
    zsun = ZSUN["v3.3"] if zsun is None else check_zsun(zsun, ZSUN["v3.3"])
    return {"lambda": d / f"{spec_type}.lambda", "res": d / f"{spec_type}.res", "zlegend": d / "zlegend.dat",
            "logt": spectra / "BaSeL3.1" / "basel_logt.dat", "logg": spectra / "BaSeL3.1" / "basel_logg.dat",
            "spectra": [d / f"{spec_type}_z{z_tag(zsun * 10.0 ** m)}.spectra.bin" for m in logzsol]}


def _check_sps_home(sps_home):
    """``sps_home`` must be a folder or a path a folder can be made at: a file there (or above it) raised
    NotADirectoryError from mkdir, after the checks, naming no argument."""
    home = Path(sps_home)
    for p in (home, *home.parents):
        if p.exists():
            if not p.is_dir():
                which = "is" if p == home else f"lies under {str(p)!r}, which is"
                raise ValueError(f"sps_home {str(home)!r} {which} a file, not a folder; give FSPS's data "
                                 "root ($SPS_HOME, a copy of it) or a new folder")
            return


def _check_axis(name, values, unit):
    arr = np.asarray(values, float)
    if arr.ndim == 2 and arr.shape[1] == 2:
        # FSPS 4's .lambda files hold two columns (wavelength, resolution); FSPS reads the first
        raise ValueError(f"{name} has two columns, shape {arr.shape}: FSPS's .lambda files hold the "
                         "wavelength and a resolution; pass the first column (np.loadtxt(path, usecols=0))")
    if arr.ndim != 1 or arr.size < 2 or not np.isfinite(arr).all() or not (np.diff(arr) > 0).all():
        raise ValueError(f"{name} must be a strictly increasing 1-d array of >= 2 finite values ({unit})")
    return arr


def _check_logt_range(logt):
    """``logt`` (already a checked axis) holds log10 Teff [K] within :data:`_LOGT_RANGE`."""
    lo, hi = _LOGT_RANGE
    outside = (logt < lo) | (logt > hi)
    if outside.any():
        hint = "; did you pass Teff instead of log10 Teff?" if (logt > hi).any() else ""
        raise ValueError(f"logt must be log10 Teff [K] within {lo:g}-{hi:g} (Teff 1,000 K - 1e6 K); "
                         f"{int(outside.sum())} of {logt.size} values lie outside it, e.g. "
                         f"{logt[outside][0]:g}{hint}")
    return logt


def _resolution_per_pixel(resolution_kms, n_wave):
    """``resolution_kms`` [km/s] as one value per wavelength. Negative values are kept: FSPS uses the
    absolute value, and stock C3K .res files mark an undefined resolution with a negative sign."""
    res = np.asarray(resolution_kms, float)
    if res.ndim > 1 or res.size not in (1, n_wave):
        raise ValueError(f"resolution_kms must be one value or one per wavelength ({n_wave}) [km/s]; got "
                         f"shape {res.shape}")
    bad = np.flatnonzero(~np.isfinite(res.reshape(-1)))
    if bad.size:
        where = f" at {bad.size} of {n_wave} wavelengths, first index {bad[0]}" if res.size > 1 else ""
        raise ValueError(f"resolution_kms must be finite [km/s] (a negative value marks it undefined); got "
                         f"{res.reshape(-1)[bad[0]]}{where}")
    return np.broadcast_to(res, (n_wave,))


def write_fsps_library(sps_home, generator=None, *, layout="v4", spec_type=None, logt=None, logg=None,
                       logzsol=None, zsun=None, wavelength=None, resolution_kms=None, overwrite=False,
                       progress=False, batch_size=8192):
    """Write ``generator``'s spectra as an FSPS C3K-slot library under ``<sps_home>/SPECTRA/C3K``.

    Parameters
    ----------
    sps_home : str or Path, the FSPS data root ($SPS_HOME; a copy of yours, or a new folder)
    generator : Generator, default ``smnet_sps.neural.load_generator()``
    layout : "v4" (FSPS 4.0, default) or "v3.3" (FSPS 3.3's C3K build): see the module docstring
    spec_type : str, FSPS library name, starting with ``c3k``; default ``c3k_lr`` (v4) or ``c3k_afe+0.0``
        (v3.3)
    logt, logg : node grids (log10 Teff [K] within 3-6, log g [cgs]) your FSPS build interpolates on;
        default C3K's 80 x 14 (v4), or for v3.3 the BaSeL nodes read from ``sps_home``
        (:func:`read_fsps_nodes`)
    logzsol : [M/H] of the metallicity nodes, default 4.0's 13 (-2.5 to +0.5 in 0.25). v4 names files by
        [M/H] to 0.01 dex (values are rounded to that); v3.3 by Z = zsun 10^[M/H] to 4 decimals, and the
        spectra are computed at the [M/H] of that rounded Z (``logzsol`` in the returned dict)
    zsun : float, FSPS's solar Z for the library (default :data:`ZSUN`: 0.0185 in 4.0, 0.0134 in 3.3)
    wavelength : array [A] or a length Quantity (or table column with a unit), optional output grid (linear
        interpolation of F_lambda; 0 outside the generator's range); default the generator's own grid. A
        stock build reads exactly ``nspec`` points (:data:`STOCK_BUILDS`): pass its ``<spec_type>.lambda``
        or recompile FSPS
    resolution_kms : float or array of one value per wavelength [km/s], finite, written to
        ``<spec_type>.res``; default the Gaussian sigma whose FWHM is the measured LSF FWHM of the
        generator's grid (one pixel: a box, :mod:`smnet_sps.lsf`). Negative values are written as given
        (FSPS uses the absolute value; stock C3K files mark an undefined resolution with a negative sign)
    overwrite : bool, replace an existing library of that name
    progress : bool or None, tqdm bar over metallicities (off by default; None: on a terminal or in a
        Jupyter kernel only, :mod:`smnet_sps.progress`)

    Returns
    -------
    dict with ``directory``, ``files`` (list of Paths), ``n_uncovered`` (nodes written as zeros), ``z`` and
    ``logzsol`` (the metallicities actually written), ``wavelength`` and ``layout``
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS} (FSPS 4.0 or 3.3); got {layout!r}")
    _check_sps_home(sps_home)
    spec_type = _DEFAULT_SPEC_TYPE[layout] if spec_type is None else str(spec_type)
    if not re.fullmatch(r"c3k[A-Za-z0-9_+.\-]*", spec_type):
        raise ValueError(f"spec_type must start with 'c3k' (FSPS only reads C3K-type libraries from "
                         "SPECTRA/C3K) and contain only letters, digits, '_', '+', '-', '.'; got "
                         f"{spec_type!r}")
    if logt is None and logg is None and layout == "v3.3":
        try:
            logt, logg = read_fsps_nodes(sps_home, layout="v3.3")
        except FileNotFoundError as exc:
            raise ValueError(f"{exc}; FSPS 3.3 reads its C3K library on BaSeL's nodes: pass logt= and logg= "
                             "(they are written there if absent)") from None
    logt = _check_logt_range(_check_axis("logt", C3K_LOGT if logt is None else logt, "log10 K"))
    logg = _check_axis("logg", C3K_LOGG if logg is None else logg, "cgs")
    requested = C3K_LR_LOGZSOL if logzsol is None else logzsol
    if layout == "v3.3" and logzsol is None:
        requested = np.arange(-2.0, 0.51, 0.25)     # 11 nodes, as the build's nzinit
    logzsol = _check_axis("logzsol", requested, "dex")
    zsun = ZSUN[layout] if zsun is None else check_zsun(zsun, ZSUN[layout])
    if layout == "v4":
        tags = [feh_tag(m) for m in logzsol]
        if len(set(tags)) != len(tags):
            raise ValueError(f"metallicities {logzsol.tolist()} collide in FSPS's [M/H] file names {tags} "
                             "(0.01 dex); use distinct nodes")
        logzsol = np.array([float(t) for t in tags])
        zs = zsun * 10.0 ** logzsol
    else:
        tags = [z_tag(z) for z in zsun * 10.0 ** logzsol]
        if len(set(tags)) != len(tags) or float(tags[0]) <= 0:
            raise ValueError(f"metallicities zsun*10**logzsol collide or round to 0 in FSPS's F6.4 file "
                             f"names {tags}; use fewer / higher logzsol nodes (Z >= 0.0001)")
        # FSPS knows each library metallicity only through its F6.4 tag, so the spectra are computed at the
        # [M/H] of the rounded Z it will read (e.g. -2.0 -> Z 0.0001 -> -2.127), never mislabelled
        zs = np.array([float(t) for t in tags])
        logzsol = np.log10(zs / zsun)
    gen = _default_generator(generator)
    gen_wave = np.asarray(gen.wavelength, float)
    # a Quantity's (or a table column's) unit: np.asarray dropped it, and 300-900 nm was written as 300-900 A
    wave = gen_wave if wavelength is None else _check_axis("wavelength", _as_angstrom(wavelength)[0],
                                                           "Angstrom")
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
    _warn_if_not_stock(layout, spec_type, wave.size, logt.size, logg.size, logzsol.size)
    from smnet_sps.lsf import FWHM_PER_SIGMA, LSF_SHAPE, grid_lsf_fwhm
    lsf_fwhm = np.interp(wave, gen_wave, grid_lsf_fwhm(gen_wave))
    if resolution_kms is None:
        resolution_kms = lsf_fwhm / wave * (C_ANGSTROM * 1e-13) / FWHM_PER_SIGMA
    res = _resolution_per_pixel(resolution_kms, wave.size)

    final = library_files(sps_home, spec_type, logzsol, layout, zsun)
    provenance = final["lambda"].with_name(f"{spec_type}_smnet_provenance.json")
    ours = [final["lambda"], final["res"], provenance] + final["spectra"]
    if layout == "v4":
        ours += [final["zlegend"], final["logt"], final["logg"]]
    existing = [f for f in ours if f.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists (and {len(existing) - 1} more); pass overwrite=True")
    node_files = _v33_node_files(final, logt, logg) if layout == "v3.3" else {}
    # every file this call writes: its own, and for 3.3 the shared zlegend and any node files it adds
    files = ours + ([final["zlegend"]] if layout == "v3.3" else []) + [final[n] for n in node_files]
    zlegend_text = "".join(f"{t}\n" for t in tags)       # [M/H] '(A5)' (v4) or Z 'F6.4' (v3.3)
    if layout == "v3.3" and final["zlegend"].is_file() and final["zlegend"].read_text() != zlegend_text:
        warnings.warn(f"{final['zlegend']} lists other metallicities and is shared by every C3K library of "
                      "FSPS 3.3 in that folder; it is replaced (the other libraries' Z files no longer match "
                      "it)", UserWarning, stacklevel=2)

    # everything is written into a staging folder first and moved into place at the end: an interruption
    # leaves the previous library, never half of one
    staging = final["lambda"].parent / f".{spec_type}.partial-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        def staged(path):
            return staging / path.name
        np.savetxt(staged(final["lambda"]), wave, fmt="%.10g")
        np.savetxt(staged(final["res"]), res, fmt="%.6e")
        staged(final["zlegend"]).write_text(zlegend_text)
        if layout == "v4":
            staged(final["logt"]).write_text("".join(f"{t:7.4f} {10 ** t:8.0f}\n" for t in logt))
            staged(final["logg"]).write_text("".join(f"{g:5.2f}\n" for g in logg))
        n_uncovered, covered = _write_spectra(gen, staged, final["spectra"], tags, logt, logg, logzsol, wave,
                                              wavelength is not None, gen_wave, batch_size, progress)
        staged(provenance).write_text(json.dumps({
            "generator": getattr(gen, "name", "generator"), "spec_type": spec_type, "fsps_layout": layout,
            "flux": "Eddington flux H_nu = F_nu/(4 pi) [erg s^-1 cm^-2 Hz^-1], 0 where outside coverage",
            "layout": "float32 little-endian, C order (n_logg, n_logt, n_wave) = Fortran "
                      "speclib(nspec,ndim_logt,ndim_logg)",
            "n_wave": int(wave.size), "n_logt": int(logt.size), "n_logg": int(logg.size), "n_z": int(zs.size),
            "zsun": zsun, "z": zs.tolist(), "logzsol_effective": logzsol.tolist(),
            "fsps_reads_logzsol": ([float(t[:4]) for t in tags] if layout == "v4" else logzsol.tolist()),
            "n_uncovered_nodes": n_uncovered,
            "resolution_file": "Gaussian sigma [km/s] with FWHM = the measured (box) LSF FWHM unless given",
            "wavelength_medium": "vacuum (as FSPS expects; FSPS' vactoair_flag converts its outputs to air)",
            "lsf_shape": LSF_SHAPE, "lsf_fwhm_aa": [round(float(v), 4) for v in lsf_fwhm],
            "outside_fraction": "per-SSP out-of-coverage light is computed by FSPS, not here; nodes outside "
                                "the generator's coverage are written as 0 (n_uncovered_nodes)",
        }, indent=1))
        for name, values in node_files.items():         # v3.3: BaSeL's node files, only where absent
            staged(final[name]).write_text(values)
        # into place
        for path in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged(path), path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    # C3K's grid has corners no library covers (about half its nodes at every Z): a metallicity is flagged
    # when it has less than half the covered nodes of the best-covered one (e.g. beyond the [M/H] range)
    thin = [t for t, n in covered.items() if n < 0.5 * max(covered.values(), default=0)]
    if thin:
        label = "[M/H]" if layout == "v4" else "Z"
        warnings.warn(f"metallicities {label} = {', '.join(thin)} have less than half the covered nodes of "
                      f"the best one ({max(covered.values())} of {logt.size * logg.size}); their other nodes "
                      "are written as zeros, which FSPS reads as no light", UserWarning, stacklevel=2)
    return {"directory": final["lambda"].parent, "files": files, "n_uncovered": n_uncovered, "z": zs,
            "logzsol": logzsol, "wavelength": wave, "layout": layout}


def _default_generator(generator):
    if generator is None:
        from smnet_sps.neural import load_generator
        return load_generator()
    return generator


def _warn_if_not_stock(layout, spec_type, n_wave, n_logt, n_logg, n_z):
    """A stock build of ``spec_type`` reads its compiled numbers of wavelengths, nodes and metallicities."""
    stock = STOCK_BUILDS.get((layout, spec_type))
    if stock is None:
        return
    nspec, nlogt, nlogg, nzinit = stock
    differ = [f"{what} {have} (the stock build reads {want})" for what, have, want in
              (("wavelengths", n_wave, nspec), ("logt nodes", n_logt, nlogt), ("logg nodes", n_logg, nlogg))
              if have != want]
    if n_z < nzinit:
        differ.append(f"metallicities {n_z} (the stock build reads the first {nzinit})")
    if differ:
        warnings.warn(f"a stock FSPS {layout} build of {spec_type!r} will not read this library as it is: "
                      + "; ".join(differ) + ". Recompile FSPS with these numbers (sps_vars.f90), or pass "
                      "the stock grid (wavelength= its .lambda, logt=/logg= via read_fsps_nodes)",
                      UserWarning, stacklevel=3)


def _v33_node_files(final, logt, logg):
    """FSPS 3.3 reads the C3K library on BaSeL's nodes: the node files to write (where absent), after
    checking that present ones hold the grid asked for."""
    out = {}
    for name, grid, fmt in (("logt", logt, "{:.4f}\n"), ("logg", logg, "{:.2f}\n")):
        path = final[name]
        if path.is_file():
            have = np.loadtxt(path, ndmin=2)[:, 0]
            if have.shape != grid.shape or not np.allclose(have, grid, atol=1e-4):
                raise ValueError(f"{path} holds {have.size} nodes other than the {grid.size} asked for; FSPS "
                                 "3.3 reads the C3K library on these nodes: pass them (read_fsps_nodes)")
        else:
            out[name] = "".join(fmt.format(v) for v in grid)
    return out


def _write_spectra(gen, staged, paths, tags, logt, logg, logzsol, wave, resample, gen_wave, batch_size,
                   progress):
    """One direct-access record per metallicity; returns (nodes written as zeros, covered nodes per tag)."""
    T, G = np.meshgrid(logt, logg, indexing="xy")      # (n_logg, n_logt): C order of the Fortran array
    teff, grav = 10.0 ** T.ravel(), G.ravel()
    n_uncovered, covered = 0, {}
    iterator = list(zip(logzsol, tags, paths))
    if want_progress(progress):
        from tqdm.auto import tqdm
        iterator = tqdm(iterator, desc="FSPS library", unit="Z")
    box_mh = getattr(getattr(gen, "box", None), "logz", (-np.inf, np.inf))
    for mh, tag, path in iterator:
        # F6.4 rounding can push an edge node just past the box (logzsol +0.5 -> Z 0.0424 -> +0.50026):
        # computed on the edge (< 0.002 dex away) instead of written as zeros
        mh = float(np.clip(mh, box_mh[0], box_mh[1])) if min(abs(mh - box_mh[0]), abs(mh - box_mh[1])) \
            < _ROUNDING_DEX else mh
        inside = gen.in_coverage(teff, grav, np.full(teff.size, mh))
        covered[tag] = int(inside.sum())
        block = np.zeros((teff.size, wave.size), np.float32)
        if inside.any():
            flux, _ = gen.surface_flux(teff[inside], grav[inside], np.full(int(inside.sum()), mh),
                                       batch_size=batch_size)
            if resample:
                flux = np.stack([np.interp(wave, gen_wave, f, left=0.0, right=0.0) for f in flux])
            block[inside] = flambda_to_hnu(wave, flux)
        n_uncovered += int((~inside).sum())
        # (n_logg, n_logt, n_wave) in C order == speclib(n_wave, n_logt, n_logg) in Fortran order
        block.reshape(logg.size, logt.size, wave.size).astype("<f4").tofile(staged(path))
    return n_uncovered, covered


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


def read_fsps_nodes(sps_home, spec_type="c3k_lr", layout=None):
    """The (logt, logg) nodes an FSPS installation interpolates its C3K library on: 4.0's
    ``SPECTRA/C3K/<spec_type>/log{t,g}.dat``, or 3.3's ``SPECTRA/BaSeL3.1/basel_log{t,g}.dat``
    (``layout`` None: whichever exists, 4.0's first). Returns ``(logt, logg)`` arrays."""
    spectra = Path(sps_home) / "SPECTRA"
    places = {"v4": (spectra / "C3K" / spec_type / "logt.dat", spectra / "C3K" / spec_type / "logg.dat"),
              "v3.3": (spectra / "BaSeL3.1" / "basel_logt.dat", spectra / "BaSeL3.1" / "basel_logg.dat")}
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS} or None; got {layout!r}")
    for key in ([layout] if layout else list(places)):
        t_file, g_file = places[key]
        if t_file.is_file() and g_file.is_file():
            logt = np.loadtxt(t_file, ndmin=2)[:, 0]      # C3K logt.dat has a second column (Teff)
            return logt.astype(float), np.loadtxt(g_file, ndmin=2)[:, 0].astype(float)
    looked = ", ".join(str(p) for key in ([layout] if layout else list(places)) for p in places[key])
    raise FileNotFoundError(f"no FSPS node files under {spectra} (looked for {looked})")
