"""A differentiable SSP: interpolation between precomputed SSP spectra, and dust attenuation, in torch.

:class:`SSPInterpolator` holds an :class:`smnet_sps.ssp.SSPGrid` (``ssp_grid``) as a torch tensor and returns
spectra at any (log age, [M/H]) inside the grid by the rule :func:`smnet_sps.ssp.ssp_spectrum` uses between
tabulated SSPs: geometric in log10 age (pixel by pixel, linear where a pixel is 0 at either age, the spectrum
rescaled to the geometric interpolation of the two integrals), then linear in [M/H]. The weights are linear in
both coordinates, so the spectrum is differentiable with respect to age and metallicity through them,
piecewise: the derivative jumps at grid nodes. A grid of one metallicity or one age (a user's isochrone file
of one Z or one age) gives its own spectra on that axis, which takes its one value only.
:func:`calzetti_attenuation` is the Calzetti et al. (2000) starburst curve as a differentiable factor.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
import torch

from .backend import _log_value, _trapz_weights
from .generator import _logz_value, _torch_input, own_wavelength
from .isochrones import FAMILIES as ISOCHRONE_FAMILIES
from .isochrones import check_zsun
from .medium import _as_angstrom
from .neural import resolve_device

__all__ = ["SSPInterpolator", "calzetti_k", "calzetti_attenuation", "CALZETTI_RV"]

CALZETTI_RV = 4.05  # Calzetti et al. 2000, eq. 5
DEFAULT_ZSUN = ISOCHRONE_FAMILIES["parsec"]["zsun"]  # PARSEC's (0.0152), for a grid that states none


def _grid_medium(grid):
    """The medium a grid states (``attrs`` of an SSPGrid, ``meta`` of the plugins' arrays,
    :class:`smnet_sps.ssp.DSPSArrays`' ``wavelength_medium``); none: vacuum (a DSPS ``SSPData``)."""
    from .medium import _stated_medium
    from .ssp import DSPSArrays
    if isinstance(grid, DSPSArrays):
        return grid.wavelength_medium
    stated = getattr(grid, "attrs", None) or getattr(grid, "meta", None) or {}
    return _stated_medium(stated) if isinstance(stated, dict) else "vacuum"


def _grid_zsun(grid):
    """The solar Z a grid states: ``attrs["zsun"]`` of an SSPGrid, ``meta["zsun"]`` of the plugins' arrays,
    ``.zsun`` of :class:`smnet_sps.ssp.DSPSArrays`; PARSEC's 0.0152 (the package's default family) where it
    states none (a ``dsps.SSPData``)."""
    for key in ("attrs", "meta"):
        stated = getattr(grid, key, None)
        if isinstance(stated, dict) and stated.get("zsun") is not None:
            return stated["zsun"]
    stated = getattr(grid, "zsun", None)
    return stated if stated is not None else DEFAULT_ZSUN


def _check_dtype(dtype):
    """The interpolator's dtype: torch.float32 / float64 (or their names, numpy's too). device="auto" and
    dtype="float32" failed inside torch (RuntimeError, TypeError), an integer dtype truncated the SSPs (a
    RuntimeError on the first call), and float16 was taken, which keeps 3 significant digits and flushes
    L_lambda below 6e-8 L_sun / A per M_sun formed (old SSPs' far UV) to 0."""
    from .neural import _resolve_dtype
    try:
        resolved = _resolve_dtype(dtype)
    except ValueError:
        resolved = None
    if resolved not in (torch.float32, torch.float64):
        raise ValueError(f"SSPInterpolator dtype must be float32 or float64; got {dtype!r}")
    return resolved


def _flux_per_angstrom(grid, wave, jacobian=1.0):
    """``grid.ssp_flux`` as L_lambda [L_sun / A per M_sun formed] on ``wave`` (vacuum), from the unit the grid
    states (DSPS's L_sun / Hz converted with ``wave``); a grid that states none must integrate to a plausible
    L_bol per M_sun formed. ``jacobian``: d lambda_grid / d lambda_vacuum, which takes a flux per Angstrom of
    an air grid to one per vacuum Angstrom (a flux per Hz needs none)."""
    from .medium import per_angstrom
    from .ssp import DSPSArrays, check_ssp_flux_scale, is_dsps_ssp_data

    flux = np.asarray(grid.ssp_flux, float)
    # L_nu (SSPGrid.to_dsps_units(), an SSPData, a per-Hz unit): per vacuum A on the vacuum axis ``wave``, a
    # pixel's frequency being c / lambda_vac in either medium
    if isinstance(grid, DSPSArrays) or is_dsps_ssp_data(grid):
        return per_angstrom(wave, flux)
    text = (getattr(grid, "attrs", None) or {}).get("flux_unit")
    if text is not None:
        try:
            unit = u.Unit(str(text).replace("per M_sun formed", "").strip())
        except ValueError:
            unit = None
        if unit is not None and unit.is_equivalent(u.L_sun / u.AA):
            return flux * unit.to(u.L_sun / u.AA) * jacobian
        if unit is not None and unit.is_equivalent(u.L_sun / u.Hz):
            return per_angstrom(wave, flux * unit.to(u.L_sun / u.Hz))
        raise ValueError(f"the grid's attrs['flux_unit'] is {text!r}; allowed: L_sun / Angstrom or "
                         "L_sun / Hz (per M_sun formed)")
    check_ssp_flux_scale(flux, wave, "pass an SSPGrid, SSPGrid.to_dsps_units(), a dsps.SSPData, or "
                         "attrs={'flux_unit': 'L_sun/Angstrom'}")
    return flux * jacobian


def _wave_angstrom(wave):
    """Wavelengths [A] as a float array: a length Quantity converted (its unit was dropped: 550 nm read as
    550 A gave k = 73.0 for 4.05, 0.55 um as 0.55 A k = 1.8e11), another unit, a NaN or a wavelength <= 0
    refused. A table column with a unit counts as its Quantity (np.asarray dropped it: 550 nm gave k = 73).
    The package's one rule, :func:`smnet_sps.medium._as_angstrom` (a frequency is its wavelength)."""
    return _as_angstrom(wave, "wavelengths", positive=True)[0]


def calzetti_k(wave_aa):
    """Calzetti et al. (2000, eq. 4) k(lambda) = A_lambda / E(B-V) for wavelengths [A] (numpy or torch; a
    length Quantity is converted to A, a wavelength <= 0 or NaN is a ``ValueError``).

    Defined on 0.12-2.2 um; the two polynomials are used beyond that as they stand, and k is floored at 0
    (it would turn negative past ~3.1 um).
    """
    is_t = isinstance(wave_aa, torch.Tensor)
    x = 1.0 / ((wave_aa if is_t else _wave_angstrom(wave_aa)) / 1e4)  # 1 / lambda [um^-1]
    blue = 2.659 * (-2.156 + 1.509 * x - 0.198 * x**2 + 0.011 * x**3) + CALZETTI_RV
    red = 2.659 * (-1.857 + 1.040 * x) + CALZETTI_RV
    if is_t:
        return torch.clamp(torch.where(x > 1.0 / 0.63, blue, red), min=0.0)
    return np.clip(np.where(x > 1.0 / 0.63, blue, red), 0.0, None)


def calzetti_attenuation(wave_aa, av):
    """Transmission 10^(-0.4 A_V k(lambda) / R_V), shape (n_av, n_wave) for A_V [mag] (a torch tensor, which
    carries gradients; a number or array is taken as a tensor, as the interpolator's inputs are) and
    wavelengths [A] (one or many; a length Quantity is converted to A)."""
    # a number or array was an AttributeError ('float' object has no attribute 'dtype')
    av = _torch_input(av, "av")
    k = torch.as_tensor(calzetti_k(np.atleast_1d(_wave_angstrom(wave_aa))), dtype=av.dtype, device=av.device)
    return torch.pow(10.0, -0.4 * av.reshape(-1, 1) * k[None, :] / CALZETTI_RV)


class SSPInterpolator:
    """SSP spectra at any (log10 age [yr], [M/H]) inside a precomputed grid, differentiable (torch).

    Parameters
    ----------
    grid : :class:`smnet_sps.ssp.SSPGrid` (``ssp_flux`` (n_met, n_age, n_wave) [L_sun / A per M_sun formed],
        ``ssp_lg_age_gyr``, ``ssp_lgmet`` = log10 Z, ``attrs["zsun"]``). A grid of one metallicity (from an
        isochrone file of one Z, CMD's commonest download) or one age gives its own spectra exactly on that
        axis, which takes its one value only (derivative 0 there), and interpolates along the other.
        Also DSPS's unit, L_nu [L_sun / Hz per M_sun formed] (``SSPGrid.to_dsps_units()``, a ``dsps.SSPData``,
        or ``attrs["flux_unit"]`` saying so), converted to L_sun / A; a grid that states no unit must
        integrate to a plausible L_bol (1e-3..1e6 L_sun per M_sun formed), else ``ValueError``
    zsun : float or None, solar Z for [M/H] = log10(Z / zsun), in (0, 1) (else ``ValueError``); default the
        grid's own (``attrs["zsun"]``, ``meta["zsun"]``, or ``SSPGrid.to_dsps_units().zsun``), 0.0152 (PARSEC)
        for a grid that states none
    dtype : of the stored tensor and the spectra: float64 (default) or float32 (a torch dtype or its name);
        any other is a ``ValueError``
    device : where the tensor lives: "cpu" (default), "auto" (CUDA when available, else the CPU), "cuda"
        or "cuda:N" (as the generators' ``device``)

    ``wavelength`` is always vacuum [A], as the fits' data: a grid whose ``attrs["wavelength_medium"]`` says
    air (``to_medium(grid, "air")``) is converted to vacuum (axis, and L_lambda per vacuum Angstrom);
    ``source_medium`` keeps the medium the grid stated.
    """

    def __init__(self, grid, zsun=None, dtype=torch.float64, device="cpu"):
        dtype, device = _check_dtype(dtype), resolve_device(device)
        # a negative or NaN zsun made every [M/H] NaN: the bounds check passed and every spectrum was NaN
        zsun = (check_zsun(zsun) if zsun is not None else
                check_zsun(_grid_zsun(grid), "the grid's zsun (attrs['zsun'], meta['zsun'] or .zsun)"))
        wave = np.asarray(grid.ssp_wave, float)
        # an air grid used as vacuum shifted every line by ~83 km/s: rv +91 km/s, [M/H] +0.14 on a vacuum SSP
        self.source_medium = _grid_medium(grid)
        jacobian = 1.0
        if self.source_medium == "air":
            from .medium import axis_air_to_vacuum
            self.wavelength = own_wavelength(axis_air_to_vacuum(wave))
            jacobian = np.gradient(wave) / np.gradient(self.wavelength) if wave.size > 1 else 1.0
        else:
            # its own read-only copy: the grid's own array, edited in place by its owner afterwards
            # (grid.ssp_wave[:] *= 1.5), moved the axis fit_ssp reads while the spectra stayed
            self.wavelength = own_wavelength(wave)
        self.log_age = np.asarray(grid.ssp_lg_age_gyr, float) + 9.0  # log10(age / yr)
        self.logz = np.asarray(grid.ssp_lgmet, float) - np.log10(zsun)  # [M/H]
        # DSPS-unit grids (L_sun / Hz) were taken as L_sun / A: log age 8.9 for 9.5, [M/H] on its bound
        flux = _flux_per_angstrom(grid, self.wavelength, jacobian)
        if flux.shape != (self.logz.size, self.log_age.size, self.wavelength.size):
            raise ValueError(
                f"grid.ssp_flux has shape {flux.shape}; expected (n_met, n_age, n_wave) = "
                f"{(self.logz.size, self.log_age.size, self.wavelength.size)}"
            )
        if self.log_age.size == 0 or self.logz.size == 0:
            raise ValueError("the SSP grid holds no ages or no metallicities")
        if np.any(np.diff(self.log_age) <= 0) or np.any(np.diff(self.logz) <= 0):
            raise ValueError("the grid's ages and metallicities must be strictly increasing")
        if not np.all(np.isfinite(flux)):
            raise ValueError("the SSP grid holds NaN or inf fluxes")
        self.zsun = zsun
        self.dtype, self.device = dtype, device
        self.flux = torch.as_tensor(flux, dtype=dtype, device=self.device)
        # constants of the geometric age step (safe logs: 0 where a pixel or integral is 0, unused there)
        weights = _trapz_weights(self.wavelength)
        integral = flux @ weights
        self._pos = self.flux > 0
        self._log_flux = torch.log(torch.where(self._pos, self.flux, torch.ones_like(self.flux)))
        self._wave_weights = torch.as_tensor(weights, dtype=dtype, device=self.device)
        self._int_pos = torch.as_tensor(integral > 0, device=self.device)
        self._log_int = torch.as_tensor(np.log(np.where(integral > 0, integral, 1.0)), dtype=dtype,
                                        device=self.device)
        self._la = torch.as_tensor(self.log_age, dtype=dtype, device=self.device)
        self._lz = torch.as_tensor(self.logz, dtype=dtype, device=self.device)

    @property
    def bounds(self):
        """((log_age_min, log_age_max), (logz_min, logz_max)); min = max on an axis of one node."""
        return (self.log_age[0], self.log_age[-1]), (self.logz[0], self.logz[-1])

    @staticmethod
    def _weights(nodes, x):
        if nodes.numel() == 1:
            # an axis of one node (a grid of one Z or one age): that node, weight 0 for a next one; x stays in
            # the graph with derivative 0 (torch.autograd.grad on it was an error, 'not used in the graph')
            return torch.zeros(x.shape, dtype=torch.long, device=x.device), (x - nodes[0]) * 0.0
        i = torch.clamp(
            torch.searchsorted(nodes, x.detach().contiguous(), right=True) - 1, 0, nodes.numel() - 2
        )
        t = (x - nodes[i]) / (nodes[i + 1] - nodes[i])
        return i, t

    def __call__(self, log_age, logz):
        """Spectra (n, n_wave) [L_sun / A per M_sun formed] at log10(age / yr) and [M/H] tensors (n,).

        Either may have length 1 (one value for every spectrum). Values outside the grid, or lengths that
        differ otherwise, raise ``ValueError`` (no extrapolation).
        """
        log_age = _torch_input(log_age, "log_age",
                               lambda a: _log_value(a, "log_age", u.yr, "log10(age / yr)"))
        logz = _torch_input(logz, "logz", _logz_value)
        # a bound within the rounding of the coarser of the input's and the interpolator's precision is the
        # bound: float32 rounds log t = 10.1 (PARSEC's top, as ``bounds`` gives it) to 10.10000038, which was
        # refused as outside 9.000-10.100 (a float32 interpolator, torch.tensor([10.1]), or a plain float)
        eps = max(torch.finfo(t.dtype).eps for t in (log_age, logz, self.flux) if t.is_floating_point())
        log_age = log_age.to(self.device, self.dtype).reshape(-1)
        logz = logz.to(self.device, self.dtype).reshape(-1)
        if log_age.numel() != logz.numel() and 1 not in (log_age.numel(), logz.numel()):
            # torch failed on them with an IndexError about shapes deep in the interpolation
            raise ValueError(f"log_age and logz must have the same length (or one of them length 1); got "
                             f"{log_age.numel()} log_age and {logz.numel()} logz values")
        (a0, a1), (z0, z1) = self.bounds
        tol_a = 1e-9 + 4 * eps * max(abs(a0), abs(a1))
        tol_z = 1e-9 + 4 * eps * max(abs(z0), abs(z1))
        la, lz = log_age.detach().cpu().numpy(), logz.detach().cpu().numpy()
        for name, x, lo, hi, tol, what in (("log_age", la, a0, a1, tol_a, "log10 yr"),
                                           ("logz", lz, z0, z1, tol_z, "[M/H], dex")):
            if np.any(~np.isfinite(x)) or np.any(x < lo - tol) or np.any(x > hi + tol):
                # 12 digits: the value typed back is taken (7 gave -0.1818436 for -0.18184358794, 1.2e-8 off,
                # refused as "must be that value; got [-0.1818436]"; the bounds' 3 decimals gave -2.182 for
                # -2.18184, refused, and a refused -2.18199992 looked inside "-2.182-0.295")
                where = (f"the SSP grid holds one {name}, {lo:.12g} ({what}): {name} must be that value"
                         if lo == hi else
                         f"{name} must lie inside the SSP grid, {lo:.12g} to {hi:.12g} ({what})")
                raise ValueError(f"{where}; got {x}")
        ia, ta = self._weights(self._la, log_age)
        iz, tz = self._weights(self._lz, logz)
        # linear in flux between ages was up to 13 % off ssp_spectrum (PARSEC, log t 9.025, 1300-2000 A)
        near = (1 - tz[:, None]) * self._age_step(iz, ia, ta)
        if self.logz.size == 1:           # one metallicity: its spectra (weight exactly 1)
            return near
        return near + tz[:, None] * self._age_step(iz + 1, ia, ta)

    def _age_step(self, iz, ia, t):
        """Between ages ``ia`` and ``ia + 1`` at metallicities ``iz``, weight ``t`` (n,), as
        :func:`smnet_sps.ssp._combine`: f0^(1-t) f1^t per pixel (linear where either is 0), rescaled to
        I0^(1-t) I1^t of the integrals I (where both and the result are positive)."""
        f, lf, pos = self.flux, self._log_flux, self._pos
        tw = t[:, None]
        if self.log_age.size == 1:        # one age: its spectra (t is 0: weight exactly 1)
            return f[iz, ia] * (1 - tw)
        geometric = torch.exp((1 - tw) * lf[iz, ia] + tw * lf[iz, ia + 1])
        # both branches are finite everywhere, so where() passes no NaN into the gradient
        val = torch.where(pos[iz, ia] & pos[iz, ia + 1], geometric, (1 - tw) * f[iz, ia] + tw * f[iz, ia + 1])
        got = val @ self._wave_weights
        ok = self._int_pos[iz, ia] & self._int_pos[iz, ia + 1] & (got > 0)
        target = torch.exp((1 - t) * self._log_int[iz, ia] + t * self._log_int[iz, ia + 1])
        factor = torch.where(ok, target / torch.where(ok, got, torch.ones_like(got)), torch.ones_like(got))
        out = val * factor[:, None]
        # at a node (t exactly 0 or 1) the tabulated spectrum bit for bit, as ssp_spectrum gives it:
        # exp(log f) rescaled was f to 8e-15 (float32: 4e-6); ``out - out.detach()`` (0 in value) keeps the
        # interpolation's derivative
        for node, at in ((ia, t == 0), (ia + 1, t == 1)):
            if bool(at.any()):
                out = torch.where(at[:, None], f[iz, node] + (out - out.detach()), out)
        return out
