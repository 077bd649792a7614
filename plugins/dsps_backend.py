"""DSPS backend: smnet-sps SSP grids as ``dsps.SSPData`` and as the HDF5 file ``dsps.load_ssp_templates``
reads.

DSPS (Hearin et al. 2023) wants ``ssp_lgmet`` = log10 Z (absolute), ``ssp_lg_age_gyr`` = log10(age/Gyr),
``ssp_wave`` [Angstrom] and ``ssp_flux[n_met, n_age, n_wave]`` in L_sun/Hz per M_sun formed; smnet-sps
produces L_sun/A, so the only conversion is L_nu = L_lambda * lambda^2 / c, with vacuum L_lambda and lambda
(a pixel's frequency is c / lambda_vac in either medium, :func:`smnet_sps.medium.per_hz`).
Checked against dsps 0.4.8 (``load_ssp_templates``, ``calc_rest_sed_sfh_table_met_table``).

Wavelengths are vacuum (smnet-sps' medium, as DSPS' FSPS-made templates); ``medium="air"`` converts the axis
only, L_nu being per Hz (the same numbers as the vacuum file). The HDF5
file also holds datasets DSPS ignores: ``lsf_fwhm`` (n_wave) [A] (box LSF, one pixel wide:
:mod:`smnet_sps.lsf`) and ``outside_fraction`` (n_met, n_age) (share of L_bol from stars outside the
generator's coverage), with file attributes ``wavelength_medium`` and ``lsf_shape``.
"""
from __future__ import annotations

from pathlib import Path

from smnet_sps.medium import per_hz
from smnet_sps.output_files import atomic_output

from ._common import (SSPArrays, as_ssp_arrays, in_medium, output_path, smnet_ssp_grid, template_lsf,
                      warn_if_no_young_ssps)

HOST = "dsps"
HOST_VERSIONS = ">=0.4,<0.5"
DESCRIPTION = "SSP grids as dsps.SSPData / the HDF5 file read by dsps.load_ssp_templates (L_sun/Hz per M_sun)"

__all__ = ["HOST", "HOST_VERSIONS", "DESCRIPTION", "llambda_to_lnu", "to_ssp_data", "from_arrays",
           "from_smnet", "write_ssp_templates", "load_ssp_templates"]

# The keys dsps.load_ssp_templates reads (dsps.data_loaders.defaults.DEFAULT_SSP_KEYS).
DSPS_KEYS = ("ssp_lgmet", "ssp_lg_age_gyr", "ssp_wave", "ssp_flux")


def llambda_to_lnu(wave_aa, l_lambda, medium="vacuum"):
    """L_lambda [per A] -> L_nu [per Hz]: multiply by lambda^2 / c (lambda in A, c in A/s), in vacuum; an
    axis and L_lambda in air (per air A) are taken to vacuum first (:func:`smnet_sps.medium.per_hz`)."""
    return per_hz(wave_aa, l_lambda, medium)


def _dsps_arrays(ssp: SSPArrays, medium="vacuum"):
    if ssp.n_age < 3 or ssp.n_met < 3:
        import warnings
        # measured with dsps 0.4.8: calc_rest_sed_sfh_table_met_table / _lognormal_mdf raise an IndexError
        # inside JAX for 1 or 2 ages or metallicities (their bin widths need 3 grid points)
        warnings.warn(f"this grid has {ssp.n_age} age(s) x {ssp.n_met} metallicity(ies); DSPS's "
                      "SED-from-SFH functions need at least 3 of each (with fewer they fail inside JAX with "
                      "an IndexError)", UserWarning, stacklevel=3)
    # DSPS bins the SFH on the SSP ages and renormalises the weights over those bins: mass formed after
    # the youngest bin's lower edge is spread over all of them (measured with dsps 0.4.8)
    warn_if_no_young_ssps(ssp, "DSPS", "the mean light of the older populations (it renormalises its age "
                          "weights over the grid's age bins)", stacklevel=4)
    wave, lnu, _ = in_medium(ssp, medium, per_hz=True)
    return ssp.ssp_lgmet.copy(), ssp.ssp_lg_age_gyr.copy(), wave, lnu


def to_ssp_data(grid=None, *, medium="vacuum", **arrays):
    """Convert an smnet-sps SSP grid (L_sun/A) to ``dsps.SSPData`` (L_sun/Hz per M_sun formed).

    Parameters
    ----------
    grid : mapping/object in the DSPS layout (e.g. from ``smnet_sps.ssp.ssp_grid``), or SSPArrays
    medium : "vacuum" (default, smnet-sps' own) or "air": medium of ``ssp_wave``
    **arrays : ``ssp_lgmet``, ``ssp_lg_age_gyr``, ``ssp_wave``, ``ssp_flux`` given explicitly instead

    Returns
    -------
    dsps.SSPData (needs ``dsps`` importable); SSPData has no metadata slot: the medium is the one asked for,
    the LSF is :func:`smnet_sps.lsf.grid_lsf_fwhm` of ``ssp_wave``
    """
    from dsps import SSPData          # lazy: the host is optional
    ssp = grid if isinstance(grid, SSPArrays) and not arrays else as_ssp_arrays(grid, **arrays)
    return SSPData(*_dsps_arrays(ssp, medium))


from_arrays = to_ssp_data


def from_smnet(ages, Zs, **kwargs):
    """Run ``smnet_sps.ssp.ssp_grid(ages, Zs, **kwargs)`` and return the result as ``dsps.SSPData``."""
    return to_ssp_data(smnet_ssp_grid(ages, Zs, **kwargs))


def write_ssp_templates(path, grid=None, *, medium="vacuum", overwrite=False, **arrays):
    """Write the HDF5 file ``dsps.load_ssp_templates(fn=path)`` reads.

    Datasets ``ssp_lgmet``, ``ssp_lg_age_gyr``, ``ssp_wave``, ``ssp_flux`` (L_sun/Hz per M_sun formed), and
    ``lsf_fwhm`` [A] and ``outside_fraction`` (ignored by DSPS); file attributes record units, the medium
    (``medium="air"`` converts the wavelengths) and provenance. Does not need dsps installed.

    Returns
    -------
    pathlib.Path of the written file

    Raises
    ------
    FileExistsError if ``path`` exists and ``overwrite`` is False

    Warns
    -----
    UserWarning when the grid's youngest SSP is older than 1 Myr: DSPS gives younger stars the mean light of
    the older populations (a constant SFH on a grid from 10 Myr: 57 % low at 1500 A); start the grid at the
    isochrones' youngest age, 10^5.5 yr
    """
    import h5py
    from smnet_sps import __version__

    ssp = grid if isinstance(grid, SSPArrays) and not arrays else as_ssp_arrays(grid, **arrays)
    path = output_path(path, (".h5", ".hdf5"), "DSPS template file", overwrite)
    lgmet, lgage, wave, flux = _dsps_arrays(ssp, medium)
    fwhm, shape = template_lsf(ssp)
    with atomic_output(path, overwrite=overwrite, option="path") as tmp, h5py.File(tmp, "w") as hdf:
        for key, value in zip(DSPS_KEYS, (lgmet, lgage, wave, flux)):
            hdf.create_dataset(key, data=value)
        hdf.create_dataset("lsf_fwhm", data=fwhm * (wave / ssp.ssp_wave))
        hdf["lsf_fwhm"].attrs["unit"] = "Angstrom"
        hdf["lsf_fwhm"].attrs["shape"] = shape
        if ssp.outside_fraction is not None:
            hdf.create_dataset("outside_fraction", data=ssp.outside_fraction)
            hdf["outside_fraction"].attrs["doc"] = ("share of L_bol from stars outside the generator's "
                                                    "coverage")
        hdf.attrs["wavelength_medium"] = medium
        hdf.attrs["lsf_shape"] = shape
        hdf.attrs["creator"] = f"smnet-sps {__version__} plugins.dsps_backend"
        hdf.attrs["ssp_flux_unit"] = "L_sun / Hz per M_sun formed"
        hdf.attrs["ssp_wave_unit"] = "Angstrom"
        hdf.attrs["ssp_lgmet"] = "log10 Z (metal mass fraction, absolute)"
        hdf.attrs["ssp_lg_age_gyr"] = "log10(age / Gyr)"
        for key, value in ssp.meta.items():
            # the grid's medium and flux unit are those of the arrays written here (attrs above), not the
            # grid's own (L_sun / A): copying them would state two units for one dataset
            if isinstance(value, (str, int, float, bool)) and key not in ("wavelength_medium", "flux_unit"):
                hdf.attrs[f"meta_{key}"] = value
    return path


def load_ssp_templates(path):
    """Read a file written by :func:`write_ssp_templates` with DSPS's own loader
    (``dsps.load_ssp_templates``)."""
    from dsps import load_ssp_templates as _load
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no DSPS SSP file at {path}")
    return _load(fn=str(path))
