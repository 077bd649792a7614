"""pPXF backend: the ``.npz`` template file that ``ppxf.sps_util.sps_lib`` reads.

``sps_lib`` (ppxf >= 9.0) loads ``templates[n_pix, n_age, n_met]`` [L_sun/A], ``masses[n_age, n_met]``
(stars + remnants per M_sun formed), ``ages[n_age]`` [Gyr], ``metals[n_met]`` ([M/H], dex), ``lam[n_pix]``
[A] and ``fwhm[n_pix]`` [A, the templates' line-spread FWHM]. Checked against ppxf 9.5.2.

``fwhm`` is the measured LSF of the model grid: a box one pixel wide (20 A in the optical, 10 A at
3,640 A; :mod:`smnet_sps.lsf`), not the 2-pixel Nyquist guess of earlier versions. ``lam`` is in vacuum
(smnet-sps' medium) unless ``medium="air"``; ``wavelength_medium`` in the file says which. For velocity
dispersions, write the templates on a Gaussian LSF (``gaussian_fwhm=``, ``velscale=``) and degrade the galaxy
to the same FWHM (see docs/plugins.md, "Fitting real galaxies").
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy import units as u

from smnet_sps.output_files import atomic_output, ssp_provenance

from ._common import (SSPArrays, as_ssp_arrays, check_conversion, check_zsun_and_medium, grid_medium,
                      output_path, resolve_zsun, smnet_ssp_grid, template_lsf)

HOST = "ppxf"
HOST_VERSIONS = ">=9.0,<10"
DESCRIPTION = "SSP templates as the .npz file read by ppxf.sps_util.sps_lib (L_sun/A, ages in Gyr, [M/H])"

__all__ = ["HOST", "HOST_VERSIONS", "DESCRIPTION", "default_fwhm", "write_sps_lib", "from_arrays",
           "from_smnet", "load_sps_lib"]


def default_fwhm(wave_aa):
    """Line-spread FWHM [A] per pixel of smnet-sps templates: the pixel width (box LSF, measured).

    Every library was put on the grid by flux-conserving bin averages, so a pixel responds to a narrow line
    as a box one pixel wide (:mod:`smnet_sps.lsf`): 20 A from 2,900 A to 1 um, 10 A at 3,640 A.
    """
    from smnet_sps.lsf import grid_lsf_fwhm
    return grid_lsf_fwhm(np.asarray(wave_aa, float))


def write_sps_lib(path, grid=None, *, zsun=None, fwhm=None, lam_range=None, medium="vacuum",
                  gaussian_fwhm=None, velscale=None, position_share=None, overwrite=False, **arrays):
    """Write the ``np.savez`` file ``ppxf.sps_util.sps_lib(path, velscale, ...)`` reads.

    Parameters
    ----------
    path : str or Path, output file (``.npz``)
    grid : SSP grid in the DSPS layout (see :func:`smnet_sps.plugins._common.as_ssp_arrays`)
    zsun : float, solar Z used for ``metals`` = [M/H] = log10(Z/zsun); default: grid meta or 0.0152
    fwhm : float, array (n_wave,) [A] or length Quantity, template FWHM written to ``fwhm`` (in A);
        default the measured LSF of the grid (:func:`default_fwhm`, box of one pixel width; ignored with
        ``gaussian_fwhm``)
    lam_range : (min, max) [A] (numbers, or length Quantities such as nm), optional wavelength cut to keep
        the file small
    medium : "vacuum" (default, smnet-sps' own) or "air": the medium of ``lam``. pPXF compares templates and
        galaxy in whatever medium they share: keep SDSS-like vacuum spectra in vacuum with the default, or
        write ``medium="air"`` when the galaxy was converted to air (as pPXF's MILES examples do).
    gaussian_fwhm : float, array on the grid [A] or length Quantity, optional
        Put the templates on a Gaussian LSF of this FWHM (>= the native one) on a log-lambda grid of
        ``velscale`` km/s (:func:`smnet_sps.lsf.to_gaussian_lsf`), so that pPXF's sigma is the galaxy's own
        dispersion once the galaxy is degraded to the same FWHM. ``fwhm`` in the file is then this FWHM.
        A grid with NaN flux (an unfinished SSP store read with ``allow_incomplete``) is refused.
    velscale : float [km/s], the log-lambda step for ``gaussian_fwhm`` (e.g. the galaxy's velscale); only with
        ``gaussian_fwhm`` (refused without it: sps_lib rebins the native grid with its own velscale)
    position_share : float in [0, 1], optional (with ``gaussian_fwhm``)
        Share of the sub-pixel position variance (pixel width^2 / 12) added to the templates' line profiles
        so that the fitted sigma is not inflated by the lines' unknown places inside the 20-A pixels;
        default :data:`smnet_sps.lsf.POSITION_SHARE` (calibrated on MILES stars); 0 gives line profiles of
        exactly the requested Gaussian's second moment (sigma then comes out ~300 km/s too high for a
        100 km/s galaxy). Written to the file as ``lsf_position_share``.
    overwrite : bool

    Returns
    -------
    pathlib.Path

    Notes
    -----
    ``masses`` are the surviving mass fractions of the grid; when the grid carries none they are set to 1
    (mass-to-light ratios from ``sps_lib.mass_to_light`` are then per M_sun *formed*), and the file records
    ``masses_are_formed_mass=True``. Extra fields that ``sps_lib`` ignores: ``wavelength_medium``,
    ``lsf_shape`` ("box" or "gaussian"), ``lsf_position_share`` (NaN for "box"), ``outside_fraction``
    [n_age, n_met] (share of L_bol from stars outside the generator's coverage; NaN when the grid does not
    carry it), ``zsun``, ``flux_unit``.
    """
    from smnet_sps.lsf import POSITION_SHARE, _as_fwhm, to_gaussian_lsf
    from smnet_sps.medium import convert_spectrum_medium

    ssp = grid if isinstance(grid, SSPArrays) and not arrays else as_ssp_arrays(grid, **arrays)
    path, cut = _check_arguments(path, zsun, fwhm, lam_range, medium, gaussian_fwhm, velscale, position_share,
                                 overwrite)
    zsun = resolve_zsun(ssp, zsun)
    check_conversion(ssp, medium)
    wave = ssp.ssp_wave
    if cut is not None:
        keep = (wave >= cut[0]) & (wave <= cut[1])
        if keep.sum() < 2:
            raise ValueError(f"lam_range {lam_range} keeps fewer than 2 pixels of the grid "
                             f"({wave[0]:g}-{wave[-1]:g} A)")
    else:
        keep = np.ones(wave.size, bool)
    # sps_lib wants (n_pix, n_age, n_met); ours is (n_met, n_age, n_pix)
    if gaussian_fwhm is not None:
        sel = wave[keep]
        rng = (max(sel[0], wave[3]), min(sel[-1], wave[-4]))
        share = POSITION_SHARE if position_share is None else float(position_share)
        lam, flux, fwhm_arr = to_gaussian_lsf(wave, ssp.ssp_flux, gaussian_fwhm, velscale, lam_range=rng,
                                              position_share=share)
        shape = "gaussian"
    else:
        share = np.nan
        native, shape = template_lsf(ssp)
        if fwhm is None:
            fwhm_arr = native
        else:
            if np.shape(fwhm) not in ((), wave.shape):
                raise ValueError(f"fwhm must be a number or an array of the grid's {wave.size} pixels "
                                 f"(before lam_range is applied) [A]; got shape {np.shape(fwhm)}")
            fwhm_arr = _as_fwhm(fwhm, "fwhm", wave)     # a Quantity converted to A, as gaussian_fwhm is
        lam, flux, fwhm_arr = wave[keep], ssp.ssp_flux[..., keep], np.array(fwhm_arr[keep], float)
    if not np.isfinite(fwhm_arr).all() or (fwhm_arr < 0).any():
        raise ValueError("fwhm must be finite and >= 0 (Angstrom)")
    lam_out, flux = convert_spectrum_medium(lam, flux, grid_medium(ssp), medium)
    fwhm_arr = fwhm_arr * (np.asarray(lam_out) / lam)
    templates = np.transpose(flux, (2, 1, 0))
    masses_are_formed = ssp.surviving_mass is None
    masses = np.ones((ssp.n_age, ssp.n_met)) if masses_are_formed else ssp.surviving_mass.T.copy()
    outside = (np.full((ssp.n_age, ssp.n_met), np.nan) if ssp.outside_fraction is None
               else ssp.outside_fraction.T.copy())
    # how the grid was made (generator, its sha256, isochrones, IMF, options; as the DSPS file's meta_*
    # attributes): the file named only its creator, so templates from two models could not be told apart
    record = {k: np.asarray(v if isinstance(v, (list, tuple, int, float, np.generic)) else str(v))
              for k, v in ssp_provenance(ssp.meta).items()}
    with atomic_output(path, overwrite=overwrite, option="path") as tmp:     # never a half-written file
        np.savez_compressed(tmp, **record, templates=templates, masses=masses, lam=np.asarray(lam_out, float),
                            ages=ssp.age_gyr, metals=ssp.logzsol(zsun), fwhm=np.asarray(fwhm_arr, float),
                            zsun=zsun, masses_are_formed_mass=masses_are_formed, wavelength_medium=medium,
                            lsf_shape=shape, lsf_position_share=share, outside_fraction=outside,
                            flux_unit="L_sun/Angstrom per M_sun formed",
                            creator="smnet_sps.plugins.ppxf_backend")
    return path


def _check_arguments(path, zsun, fwhm, lam_range, medium, gaussian_fwhm, velscale, position_share, overwrite):
    """:func:`write_sps_lib`'s checks that need no grid, so that :func:`from_smnet` makes them before the
    grid is computed (minutes for a full one): the output path, ``zsun``, ``medium``, ``lam_range``, the LSF
    options and a single-number ``fwhm`` / ``gaussian_fwhm`` (an array needs the grid's pixels).
    Returns (the output path, ``lam_range`` as (min, max) [A] or None)."""
    from smnet_sps.lsf import _as_fwhm

    check_zsun_and_medium(zsun, medium)
    cut = None
    if lam_range is not None:
        cut = _lam_range(lam_range)
        if not cut[0] < cut[1]:
            raise ValueError(f"lam_range must be (min, max) with min < max in Angstrom; got {lam_range}")
    _check_lsf_options(gaussian_fwhm, velscale, position_share)
    # fwhm is ignored with gaussian_fwhm
    for name, value in (("fwhm", fwhm if gaussian_fwhm is None else None), ("gaussian_fwhm", gaussian_fwhm)):
        if value is not None and np.ndim(value) == 0:
            _as_fwhm(value, name, np.ones(1))
    return output_path(path, (".npz",), "pPXF sps_lib file", overwrite, append=".npz"), cut


def _check_lsf_options(gaussian_fwhm, velscale, position_share):
    """ValueError for ``velscale`` / ``position_share`` without ``gaussian_fwhm``, ``gaussian_fwhm``
    without ``velscale`` (the options of templates on a Gaussian LSF go together), or a value of theirs
    :func:`smnet_sps.lsf.to_gaussian_lsf` would refuse."""
    from smnet_sps.lsf import check_position_share, check_velscale
    if gaussian_fwhm is not None:
        if velscale is None:
            raise ValueError("gaussian_fwhm needs velscale [km/s], the step of the log-lambda output grid")
        # their values too, before from_smnet computes the grid (a bad velscale was refused only after it)
        check_velscale(velscale)
        if position_share is not None:
            check_position_share(position_share)
        return
    if position_share is not None:
        raise ValueError("position_share applies only with gaussian_fwhm (templates on a Gaussian LSF)")
    if velscale is not None:        # sps_lib rebins with its own velscale: this one would do nothing
        raise ValueError("velscale applies only with gaussian_fwhm (the log-lambda step of templates on "
                         "a Gaussian LSF); without it give velscale to ppxf.sps_util.sps_lib / "
                         "load_sps_lib")


def _lam_range(lam_range):
    """``lam_range`` as two floats [A]: numbers are Angstrom, length Quantities are converted (as ``fwhm`` and
    ``gaussian_fwhm`` are); anything else is a ValueError naming ``lam_range``."""
    if isinstance(lam_range, u.Quantity):
        lam_range = list(np.atleast_1d(lam_range))
    try:
        values = list(lam_range)
    except TypeError:
        values = None
    if values is None or len(values) != 2:
        raise ValueError(f"lam_range must be (min, max), two wavelengths [Angstrom, or length Quantities]; "
                         f"got {lam_range!r}")
    out = []
    for v in values:
        if isinstance(v, u.Quantity):
            try:
                v = v.to_value(u.AA)
            except u.UnitConversionError:
                raise ValueError(f"lam_range must be wavelengths [Angstrom, or length Quantities, e.g. nm]; "
                                 f"got unit {v.unit}") from None
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            raise ValueError(f"lam_range must be (min, max), two wavelengths [Angstrom]; got {lam_range!r}") \
                from None
    return out


from_arrays = write_sps_lib


def from_smnet(path, ages, Zs, *, zsun=None, fwhm=None, lam_range=None, medium="vacuum", gaussian_fwhm=None,
               velscale=None, position_share=None, overwrite=False, **kwargs):
    """Run ``smnet_sps.ssp.ssp_grid(ages, Zs, **kwargs)`` and write its pPXF template file to ``path``.

    ``generator="semi-empirical"`` (passed on to ``ssp_grid``) gives templates whose optical lines are
    calibrated on MILES stars: the better choice for kinematic fits (docs/plugins.md, "Fitting real
    galaxies")."""
    # before the grid is computed (minutes for a full one), not after it
    _check_arguments(path, zsun, fwhm, lam_range, medium, gaussian_fwhm, velscale, position_share, overwrite)
    return write_sps_lib(path, smnet_ssp_grid(ages, Zs, **kwargs), zsun=zsun, fwhm=fwhm, lam_range=lam_range,
                         medium=medium, gaussian_fwhm=gaussian_fwhm, velscale=velscale,
                         position_share=position_share, overwrite=overwrite)


def load_sps_lib(path, velscale, **kwargs):
    """``ppxf.sps_util.sps_lib(path, velscale, **kwargs)`` with a clear error for a missing file."""
    import ppxf.sps_util as lib
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no pPXF template file at {path}")
    return lib.sps_lib(str(path), velscale, **kwargs)
