"""A toy SSP grid for demonstrations and tests of the adapters (NOT a population synthesis).

Each "SSP" is a luminosity-weighted mix of given stellar spectra around an age-dependent turn-off
temperature, with a fixed red-giant share and a power-law fading of L_bol with age. It has real
absorption features when built from real stellar spectra, which is all the host-code tests need;
use :func:`smnet_sps.ssp.ssp_grid` for science.
"""
from __future__ import annotations

import numpy as np

from smnet_sps.constants import L_SUN, SIGMA_SB

from ._common import as_ssp_arrays

__all__ = ["toy_ssp_arrays"]


def toy_ssp_arrays(lg_age_gyr, star_logz, star_teff, star_flux, wavelength, *, zsun=0.0152):
    """Toy SSP grid from a block of stellar spectra.

    Parameters
    ----------
    lg_age_gyr : array (n_age,), log10(age / Gyr), increasing
    star_logz : array (n_met,), [M/H] of the stellar spectra blocks, increasing
    star_teff : array (n_star,), Teff [K] of the stars in each block
    star_flux : array (n_met, n_star, n_wave), surface flux F_lambda [erg s^-1 cm^-2 A^-1]
    wavelength : array (n_wave,) [Angstrom]
    zsun : float, solar Z used to turn [M/H] into ``ssp_lgmet``

    Returns
    -------
    SSPArrays with L_lambda in L_sun/A per M_sun formed; ``meta["toy"] = True``.
    """
    lg_age_gyr = np.asarray(lg_age_gyr, float)
    star_teff = np.asarray(star_teff, float)
    star_flux = np.asarray(star_flux, float)
    age = 10.0 ** lg_age_gyr
    # per-star spectrum normalised to L_bol = 1 L_sun: F_lambda / (sigma T^4) [1/A] -> L_sun/A
    unit = star_flux / (SIGMA_SB * star_teff[None, :, None] ** 4)
    log_t = np.log10(star_teff)
    log_turnoff = np.log10(np.clip(5800.0 * age ** -0.35, star_teff.min(), star_teff.max()))
    giant = np.argmin(np.abs(star_teff - 4250.0))
    flux = np.empty((star_flux.shape[0], age.size, star_flux.shape[2]))
    for k, (a, lto) in enumerate(zip(age, log_turnoff)):
        w = np.exp(-0.5 * ((log_t - lto) / 0.06) ** 2) * (log_t <= lto + 0.03)
        w = 0.6 * w / w.sum()
        w[giant] += 0.4
        lbol = 2.0 * a ** -0.9                      # L_sun per M_sun formed, fading with age
        flux[:, k] = lbol * np.einsum("s,zsw->zw", w, unit)
    surviving = np.clip(1.0 - 0.12 * np.log10(1.0 + 100.0 * age), 0.5, 1.0)
    return as_ssp_arrays(ssp_lgmet=np.log10(zsun) + np.asarray(star_logz, float), ssp_lg_age_gyr=lg_age_gyr,
                         ssp_wave=wavelength, ssp_flux=flux,
                         surviving_mass=np.broadcast_to(surviving, (star_flux.shape[0], age.size)).copy(),
                         meta={"toy": True, "zsun": zsun, "L_SUN_cgs": L_SUN})
