"""Mean intergalactic-medium transmission of Madau (1995, ApJ 441, 18) as FSPS applies it, in Madau's ranges.

For a source at redshift z, observed wavelength l_obs = l_rest (1 + z):

* Lyman-series line blanketing, for every line j with l_j < l_obs < l_j (1 + z):
  tau += A_j (l_obs / l_j)^3.46 (Madau 1995 eq. 15; A_j = 3.6e-3, 1.7e-3 for Ly alpha, beta and FSPS's
  1.1846e-3, 9.41e-4, ... for Ly gamma to Ly-17), plus metal blanketing 0.0017 (l_obs / 1216 A)^1.68 where
  Ly alpha acts;
* photoelectric absorption below the Lyman limit, 911.75 A < l_obs < 911.75 A (1 + z), the approximation of
  Madau's footnote 3 to his eq. 16, with x_c = l_obs / 911.75 A;
* as FSPS does, tau is held at its maximum bluewards of it (below 912 A rest), where the fit turns over.

The absorbers lie between the source and the observer (0 < z_abs < z): a line absorbs only at
l_obs > l_j and the footnote-3 fit (an integral from z_abs = l_obs / 911.75 A - 1) only holds at
l_obs > 911.75 A. FSPS (and synphot) apply both terms at any l_obs, i.e. with absorbers at negative
redshift, and below z ~ 1.45 FSPS's hold took its maximum from there: the transmission below 500 A rest was
0.776 at z = 0.001 (but 1 at z = 0), 0.742 at z = 0.1, 0.595 at z = 0.5. Here those terms are zero outside
their ranges, so the transmission tends to 1 as z -> 0 (0.9992, 0.917, 0.637 at those redshifts; Inoue et
al. 2014 likewise bound every term to l_obs > l_j), and it is FSPS's unchanged at z >= 1.45.

``igm_factor`` scales tau (FSPS's ``igm_factor``). The transmission multiplies the rest-frame spectrum.
"""
from __future__ import annotations

import numpy as np

from .dust import _one_number
from .medium import _as_angstrom

__all__ = ["LYMAN_LINES", "LYMAN_COEFFS", "check_redshift", "madau_tau", "igm_transmission"]

# FSPS igm_absorb.f90: Lyman series wavelengths [A] and Madau (1995) coefficients (first four: Table 2)
LYMAN_LINES = np.array([1215.67, 1025.72, 972.537, 949.743, 937.803, 930.748, 926.226, 923.150, 920.963,
                        919.352, 918.129, 917.181, 916.429, 915.824, 915.329, 914.919, 914.576])
LYMAN_COEFFS = np.array([0.0036, 0.0017, 0.0011846, 0.0009410, 0.0007960, 0.0006967, 0.0006236, 0.0005665,
                         0.0005200, 0.0004817, 0.0004487, 0.0004200, 0.0003947, 0.000372, 0.000352, 0.0003334,
                         0.00031644])
LYMAN_LIMIT = 911.75
METAL_COEFF = 0.0017


def check_redshift(redshift):
    """``redshift`` as a float, finite and >= 0, else ValueError (also for text and booleans: float() read
    "0.5", and True ran as z = 1 without a word). Shared by the IGM and the photometry's observed frame."""
    if isinstance(redshift, (str, bytes, bool, np.bool_)):
        raise ValueError(f"redshift must be a number >= 0, got {redshift!r}")
    try:
        z = float(redshift)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"redshift must be a number >= 0, got {redshift!r}") from exc
    if not np.isfinite(z) or z < 0:
        raise ValueError(f"redshift must be finite and >= 0 (observed frame), got {redshift!r}")
    return z


def madau_tau(wave_rest, z, n_lines=17, metals=True, cap=True):
    """Effective IGM optical depth at rest-frame wavelengths ``wave_rest`` of a source at redshift z.

    ``wave_rest``: Angstrom, or a Quantity in any spectral unit (converted; its unit was dropped, so 100 nm
    read as 100 A); NaN, inf, zero or negative wavelengths raise ValueError.
    ``n_lines`` (1-17) Lyman lines, ``metals`` the metal-line term, ``cap`` FSPS's hold at the maximum
    (taken on a fixed fine grid below the Lyman limit, so that the value at a wavelength does not depend on
    the other wavelengths asked for: it was the maximum over the points given).
    """
    z = check_redshift(z)
    if not 1 <= int(n_lines) <= LYMAN_LINES.size:
        raise ValueError(f"n_lines must be in 1..{LYMAN_LINES.size}; got {n_lines!r}")
    w = _as_angstrom(wave_rest, "wave_rest", positive=True)[0]
    tau = _tau(w.reshape(-1), z, int(n_lines), metals)
    if cap and z > 0:
        # the footnote-3 fit falls apart far below the Lyman limit: hold tau at its maximum bluewards of it
        grid = np.linspace(1.0, LYMAN_LIMIT, 9112)            # 0.1 A steps
        on_grid = _tau(grid, z, int(n_lines), metals)
        k = int(np.argmax(on_grid))
        tau = np.where(w.reshape(-1) < grid[k], on_grid[k], tau)
    return tau.reshape(w.shape)


def _tau(w, z, n_lines, metals):
    """Madau (1995) effective optical depth at rest wavelengths w (1-d) [A], without FSPS's hold."""
    tau = np.zeros_like(w)
    if z == 0:
        return tau
    z1 = 1.0 + z
    lobs = w * z1
    for j in range(int(n_lines)):
        # absorbers at 0 < z_abs < z only: l_j < l_obs (FSPS also counted l_obs < l_j, absorbers at z_abs < 0)
        below = (w <= LYMAN_LINES[j]) & (lobs > LYMAN_LINES[j])
        tau = tau + np.where(below, LYMAN_COEFFS[j] * (lobs / LYMAN_LINES[j]) ** 3.46, 0.0)
        if j == 0 and metals:
            tau = tau + np.where(below, METAL_COEFF * (lobs / LYMAN_LINES[0]) ** 1.68, 0.0)
    xc = lobs / LYMAN_LIMIT
    lyc = (w <= LYMAN_LIMIT) & (xc > 1.0)       # footnote 3 integrates from z_abs = x_c - 1: needs x_c > 1
    cont = (0.25 * xc ** 3 * (z1 ** 0.46 - xc ** 0.46) + 9.4 * xc ** 1.5 * (z1 ** 0.18 - xc ** 0.18)
            - 0.7 * xc ** 3 * (xc ** -1.32 - z1 ** -1.32) - 0.023 * (z1 ** 1.68 - xc ** 1.68))
    return tau + np.where(lyc, cont, 0.0)


def igm_transmission(wave_rest, z, igm_factor=1.0, **kwargs):
    """exp(-igm_factor * tau_Madau) at rest-frame wavelengths ``wave_rest`` [A, or a spectral Quantity] for a
    source at redshift z (1 at z = 0); see :func:`madau_tau`."""
    # None raised a TypeError from np.isfinite, an array numpy's "truth value of an array ... is ambiguous",
    # neither naming igm_factor
    factor = _one_number("igm_factor", igm_factor, "the factor scaling the optical depth (FSPS's igm_factor)",
                         0.0)
    return np.exp(-factor * madau_tau(wave_rest, z, **kwargs))
