"""pPXF backend: the ``.npz`` template file that ``ppxf.sps_util.sps_lib`` reads.

``sps_lib`` (ppxf >= 9.0) loads ``templates[n_pix, n_age, n_met]`` [L_sun/A], ``masses[n_age, n_met]``
(stars + remnants per M_sun formed), ``ages[n_age]`` [Gyr], ``metals[n_met]`` ([M/H], dex), ``lam[n_pix]``
[A] and ``fwhm[n_pix]`` [A, the templates' line-spread FWHM]. Checked against ppxf 9.5.2.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._common import SSPArrays, as_ssp_arrays, resolve_zsun, smnet_ssp_grid

HOST = "ppxf"
HOST_VERSIONS = ">=9.0,<10"
DESCRIPTION = "SSP templates as the .npz file read by ppxf.sps_util.sps_lib (L_sun/A, ages in Gyr, [M/H])"

__all__ = ["HOST", "HOST_VERSIONS", "DESCRIPTION", "default_fwhm", "write_sps_lib", "from_arrays",
           "from_smnet", "load_sps_lib"]


def default_fwhm(wave_aa):
    """Effective FWHM [A] of a sampled spectrum: two local pixel widths (Nyquist), per pixel.

    The generator's grid is coarse (20 A in the optical), so the sampling, not the atmosphere models'
    intrinsic resolution, sets the line width a fit can use.
    """
    wave_aa = np.asarray(wave_aa, float)
    return 2.0 * np.gradient(wave_aa)


def write_sps_lib(path, grid=None, *, zsun=None, fwhm=None, lam_range=None, overwrite=False, **arrays):
    """Write the ``np.savez`` file ``ppxf.sps_util.sps_lib(path, velscale, ...)`` reads.

    Parameters
    ----------
    path : str or Path, output file (``.npz``)
    grid : SSP grid in the DSPS layout (see :func:`smnet_sps.plugins._common.as_ssp_arrays`)
    zsun : float, solar Z used for ``metals`` = [M/H] = log10(Z/zsun); default: grid meta or 0.0152
    fwhm : float or array (n_wave,) [A], template FWHM; default :func:`default_fwhm`
    lam_range : (min, max) [A], optional wavelength cut to keep the file small
    overwrite : bool

    Returns
    -------
    pathlib.Path

    Notes
    -----
    ``masses`` are the surviving mass fractions of the grid; when the grid carries none they are set to 1
    (mass-to-light ratios from ``sps_lib.mass_to_light`` are then per M_sun *formed*), and the file records
    ``masses_are_formed_mass=True``.
    """
    ssp = grid if isinstance(grid, SSPArrays) and not arrays else as_ssp_arrays(grid, **arrays)
    zsun = resolve_zsun(ssp, zsun)
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    wave = ssp.ssp_wave
    keep = np.ones(wave.size, bool)
    if lam_range is not None:
        lo, hi = (float(v) for v in lam_range)
        if not lo < hi:
            raise ValueError(f"lam_range must be (min, max) with min < max in Angstrom; got {lam_range}")
        keep = (wave >= lo) & (wave <= hi)
        if keep.sum() < 2:
            raise ValueError(f"lam_range {lam_range} keeps fewer than 2 pixels of the grid "
                             f"({wave[0]:g}-{wave[-1]:g} A)")
    fwhm_arr = default_fwhm(wave) if fwhm is None else np.broadcast_to(np.asarray(fwhm, float), wave.shape)
    if not np.isfinite(fwhm_arr).all() or (fwhm_arr < 0).any():
        raise ValueError("fwhm must be finite and >= 0 (Angstrom)")
    # sps_lib wants (n_pix, n_age, n_met); ours is (n_met, n_age, n_pix)
    templates = np.transpose(ssp.ssp_flux, (2, 1, 0))[keep]
    masses_are_formed = ssp.surviving_mass is None
    masses = np.ones((ssp.n_age, ssp.n_met)) if masses_are_formed else ssp.surviving_mass.T.copy()
    np.savez_compressed(path, templates=templates, masses=masses, lam=wave[keep], ages=ssp.age_gyr,
                        metals=ssp.logzsol(zsun), fwhm=np.array(fwhm_arr[keep]), zsun=zsun,
                        masses_are_formed_mass=masses_are_formed,
                        flux_unit="L_sun/Angstrom per M_sun formed", creator="smnet_sps.plugins.ppxf_backend")
    # np.savez appends .npz when missing
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


from_arrays = write_sps_lib


def from_smnet(path, ages, Zs, *, zsun=None, fwhm=None, lam_range=None, overwrite=False, **kwargs):
    """Run ``smnet_sps.ssp.ssp_grid(ages, Zs, **kwargs)`` and write its pPXF template file to ``path``."""
    return write_sps_lib(path, smnet_ssp_grid(ages, Zs, **kwargs), zsun=zsun, fwhm=fwhm, lam_range=lam_range,
                         overwrite=overwrite)


def load_sps_lib(path, velscale, **kwargs):
    """``ppxf.sps_util.sps_lib(path, velscale, **kwargs)`` with a clear error for a missing file."""
    import ppxf.sps_util as lib
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no pPXF template file at {path}")
    return lib.sps_lib(str(path), velscale, **kwargs)
