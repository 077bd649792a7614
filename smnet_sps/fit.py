"""Inverse fitting with the generator: stars (:func:`fit_star`) and populations (:func:`fit_ssp`).

Both fits share one forward model and one optimiser:

1. **Resolution matching** (:class:`SpectralOperator`). The model grid's effective resolution is its sampling:
   FWHM = 2 x the local pixel step (~40 A in the optical; as
   :func:`smnet_sps.plugins.ppxf_backend.default_fwhm`).
   Whichever of data and model is coarser sets the comparison: finer data are averaged, flux-conservingly,
   onto the model's pixels (inverse variances propagated; mode ``"bin"``); coarser data keep their pixels and
   the model is broadened by a Gaussian of FWHM sqrt(FWHM_data^2 - FWHM_model^2) (mode ``"broaden"``). The
   model is evaluated at rest-frame wavelengths lambda_obs / (1 + v/c) by integrating a Gaussian over each
   model pixel and each working pixel's window (in bin mode the data pixels it averages, with the data's
   weights; exact for piecewise-constant pixels, smooth in v and in the width).
2. **A multiplicative Legendre polynomial continuum** of degree ``degree`` in the observed wavelength, solved
   by weighted linear least squares at every step (flux calibration and reddening are not trusted): the chi^2
   is profiled over it.
3. **Gradient optimisation** in torch: a grid of starts (one batched generator pass), Adam from the best few
   distinct starts together, then L-BFGS on the best one.
4. **Uncertainties**: the Laplace approximation -- the Gauss-Newton Hessian J^T W J of chi^2 / 2 over the
   physical parameters *and* the polynomial coefficients (Jacobian by autograd), inverted, so the errors are
   marginal over the continuum -- scaled by sqrt(chi^2_red) when chi^2_red > 1, with the flat prior inside
   the bounds as a Gaussian of its variance (:func:`_with_bounds_prior`); or ``uncertainty="emcee"``
   (emcee ensemble over the profiled likelihood, flat priors inside the bounds; where the errors are scaled,
   the likelihood is tempered by chi^2_red). Coverage of both on
   generator mocks: docs/fit.md.

Wavelengths are vacuum Angstrom (convert air wavelengths with :func:`smnet_sps.medium.air_to_vacuum`).
"""

from __future__ import annotations

import math
import os
import time
import warnings
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch

from .generator import (_FLUX_UNITS, _WAVE_UNITS, _column_unmasked, _quiet_coverage, _unmask, column_quantity,
                        validate_parameters)
from .isochrones import SINGLE_AGE_DEX
from .medium import LINEAR_FLUX_UNITS, _ampere_hint, f_lambda_factor, refuse_logarithmic

__all__ = [
    "fit_star",
    "fit_ssp",
    "StarFit",
    "SSPFit",
    "SpectralOperator",
    "model_fwhm",
    "C_KMS",
    "mock_star",
    "empirical_correction",
    "check_spectrum",
    "STAR_PARAMETERS",
    "SSP_PARAMETERS",
    "PARAMETER_UNITS",
    "FitWarning",
]

C_KMS = 299792.458
_FWHM_PER_SIGMA = math.sqrt(8.0 * math.log(2.0))
_MIN_BIN_COVERAGE = 0.8  # a model pixel needs >= 80 % of its width covered by good data pixels
_MIN_PIXELS = 20
# bin mode: the share of the model's box variance (w^2/12) taken off the data's LSF variance. 0 is exact for
# spectra that are step functions on the model's pixels; measured on four MILES stars degraded from 2.5 to
# 8/12/16 A FWHM, it also keeps their rv most stable (largest drift 109 km/s, against 123 for 0.55 and 171
# for 1); a mock of a perfect NextGen emulator prefers 0.55 for the dispersion (docs/fit.md)
_BIN_BOX_SHARE = 0.0
# shift="data" needs data pixels at most this share of the model's: the moving window edges mix the data's
# noise, which on coarser pixels pulls rv (mocks on the model's own 20-A pixels: -49 +- 95 km/s at rest; 5-A
# pixels: +-90 km/s modes; 1-A pixels unbiased)
_DATA_SHIFT_MAX_PIXEL = 0.1
_SIGMA_FLOOR_PIX = 1e-3  # smallest Gaussian [model pixels]: keeps the kernel finite (0.05 biased rv)
#: dex within which a fixed value is the one value of an axis of one (an SSP grid of one [M/H] or one age): as
#: an isochrone set of one age takes a logAge printed to 4 decimals
SINGLE_VALUE_DEX = SINGLE_AGE_DEX

STAR_PARAMETERS = ("teff", "logg", "logz", "rv")
SSP_PARAMETERS = ("log_age", "logz", "sigma", "av", "rv")
# the unit of each fitted parameter (and of its error), as astropy spells it: as_table's column and the
# "units" of as_dict / the JSON of `smnet-sps fit --out`
PARAMETER_UNITS = {"teff": "K", "logg": "dex(cm / s2)", "logz": "dex", "rv": "km / s", "log_age": "dex(yr)",
                   "sigma": "km / s", "av": "mag"}


class FitWarning(UserWarning):
    """A fit that ended on a bound, left a parameter unconstrained, lay outside the generator's coverage,
    or is older than the universe at its redshift. A poor chi^2 is not warned of: it is in ``chi2`` /
    ``dof`` and, with ``scale_errors``, scales the errors (real stars against any model give
    chi^2_red >> 1 at their quoted errors)."""


def model_fwhm(wavelength):
    """Effective FWHM [A] of a sampled model spectrum: two local pixel widths (Nyquist), per pixel."""
    return 2.0 * np.gradient(np.asarray(wavelength, float))


def _edges(centres):
    mid = 0.5 * (centres[1:] + centres[:-1])
    return np.concatenate([[2 * centres[0] - mid[0]], mid, [2 * centres[-1] - mid[-1]]])


def _fill_gaps(wave, flux, ivar, good, fwhm=None, jump=5.0):
    """A spectrum whose sampling has holes (a removed range, the gap between two arms) with masked pixels
    inserted at the local spacing: pixel edges are set halfway between centres (:func:`_edges`), so the pixel
    on each side of a hole was stretched across half of it and the fit made up data there at full weight
    (600 A cut from a mock: 30 invented working pixels, parameters 2-3 sigma off). A hole is a spacing over
    ``jump`` times the running median of the spacings (21 of them): uneven or jittered sampling and a
    near-duplicate wavelength are no holes. ``fwhm`` (per pixel, or None) follows."""
    from scipy.ndimage import median_filter

    d = np.diff(wave)
    if d.size < 3:
        return wave, flux, ivar, good, fwhm
    ref = median_filter(d, size=min(21, d.size), mode="nearest")
    holes = np.flatnonzero(d > jump * ref)
    if not holes.size:
        return wave, flux, ivar, good, fwhm
    new = [wave]
    for i in holes:
        k = int(round(d[i] / ref[i])) - 1
        new.append(wave[i] + d[i] * np.arange(1, k + 1) / (k + 1))
    filled = np.concatenate(new)
    order = np.argsort(filled, kind="stable")
    real = np.zeros(filled.size, bool)
    real[:wave.size] = True

    def spread(values, fill):
        return np.concatenate([values, np.full(filled.size - wave.size, fill, dtype=values.dtype)])[order]
    if fwhm is not None:
        fwhm = np.interp(filled[order], wave, fwhm)
    return filled[order], spread(flux, 0.0), spread(ivar, 0.0), spread(good, False) & real[order], fwhm


def _window_breaks(weights, sumw, d_edges):
    """Each working pixel's averaging window over observed wavelengths, as steps: (breakpoints [A], jumps
    [1/A]), both (n_work, n_break), padded with zero jumps.

    ``weights`` (n_work, n_data) is the overlap of each working pixel with each usable data pixel [A] divided
    by that pixel's width, ``sumw`` the working pixel's covered width [A]: the window is the sum over data
    pixels of weight / sumw on the whole data pixel, so the model goes through the same weighted mean as the
    data. Data pixels inside the working pixel share their edges at equal height: only the outer ones, the
    pixels across its edges and masked gaps make steps."""
    rows = []
    for j in range(weights.shape[0]):
        lo, hi = weights.indptr[j], weights.indptr[j + 1]
        cols, vals = weights.indices[lo:hi], weights.data[lo:hi] / sumw[j]
        order = np.argsort(cols)
        cols, vals = cols[order], vals[order]
        edge = np.concatenate([cols, cols + 1])
        step = np.concatenate([vals, -vals])
        pos, inv = np.unique(edge, return_inverse=True)
        total = np.bincount(inv, weights=step)
        real = np.abs(total) > 1e-9 * np.abs(vals).max()
        rows.append((d_edges[pos[real]], total[real]))
    n = max(r[0].size for r in rows)
    brk = np.array([np.pad(b, (0, n - b.size), mode="edge") for b, _ in rows])
    jump = np.array([np.pad(d, (0, n - d.size)) for _, d in rows])
    return brk, jump


def _psi(z):
    """Integral of the normal CDF: psi(z) = z Phi(z) + phi(z)."""
    return z * torch.special.ndtr(z) + torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


# ------------------------------------------------------------------------------------- input checks
def _as_values(x, name, unit=None):
    """Floats from an array or Quantity; with ``unit``, a Quantity is converted to it (else ValueError). An
    astropy Table column with a unit counts as its Quantity (np.asarray dropped it: a resolution_fwhm column
    in nm was used as Angstrom)."""
    import astropy.units as u

    expected = "one of its units" if unit is None else f"{unit.physical_type} (e.g. {unit})"
    x = column_quantity(x, name, expected)
    if isinstance(x, u.Quantity):
        if unit is not None:
            try:
                return np.asarray(x.to_value(unit), float)
            except u.UnitConversionError:
                raise ValueError(f"{name} must be in units of {unit.physical_type} (e.g. {unit}); got "
                                 f"{x.unit}") from None
        return np.asarray(x.value, float)
    if x is None:
        raise ValueError(f"{name} is required")
    try:
        return np.asarray(x, float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array; got {type(x).__name__}") from exc


def _check_max_rv(max_rv):
    """``max_rv`` [km/s] as a float, 0 < max_rv < c: a NaN or >= c left the operator no model pixels (an
    IndexError), and a negative one was reported as a bad ``rv_guess``."""
    try:
        value = float(max_rv)
    except (TypeError, ValueError):
        raise ValueError(f"max_rv must be a number [km/s]; got {max_rv!r}") from None
    if not (np.isfinite(value) and 0.0 < value < C_KMS):
        raise ValueError(f"max_rv must be a positive, finite limit below the speed of light (0 < max_rv < "
                         f"{C_KMS} km/s); got {max_rv!r}")
    return value


def _check_number(value, name, meaning):
    """``value`` as a finite float; a string, bool, None or array is refused (a TypeError deep in the fit, or
    a comparison of '10' with a float)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number ({meaning}); got {value!r}")
    return float(value)


def _check_degree(degree):
    """The continuum's degree: an integer >= 0 (None and strings were a TypeError)."""
    if isinstance(degree, (bool, np.bool_)) or not isinstance(degree, (int, float, np.integer, np.floating)) \
            or not np.isfinite(degree) or int(degree) != degree or degree < 0:
        raise ValueError(f"degree must be an integer >= 0 (of the Legendre continuum); got {degree!r}")
    return int(degree)


_UNCERTAINTIES = ("laplace", "emcee")
_EMCEE_KWARGS = ("n_walkers", "n_steps", "n_burn", "seed")


def _check_uncertainty(uncertainty, emcee_kwargs):
    """Checked before the fit (they were refused only after it, 11-14 s, or raised a TypeError there)."""
    if not isinstance(uncertainty, str) or uncertainty not in _UNCERTAINTIES:
        raise ValueError(f"uncertainty must be one of {_UNCERTAINTIES}; got {uncertainty!r}")
    if emcee_kwargs is None:
        return
    if not isinstance(emcee_kwargs, dict):
        raise ValueError(f"emcee_kwargs must be a dict with keys from {_EMCEE_KWARGS}; got "
                         f"{type(emcee_kwargs).__name__}")
    unknown = sorted(set(emcee_kwargs) - set(_EMCEE_KWARGS), key=str)
    if unknown:
        raise ValueError(f"unknown emcee_kwargs {unknown}; the keys are {_EMCEE_KWARGS}")
    for k, v in emcee_kwargs.items():
        least = 0 if k in ("n_burn", "seed") else 1
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < least:
            raise ValueError(f"emcee_kwargs[{k!r}] must be an integer >= {least}; got {v!r}")
    steps, burn = emcee_kwargs.get("n_steps", 400), emcee_kwargs.get("n_burn", 150)
    if burn >= steps:
        raise ValueError(f"emcee_kwargs: n_burn ({burn}) must be below n_steps ({steps}): no samples left")


def _one_value(k, limit, single, fit):
    """What holds ``k`` at one value (``limit[k]`` is (v, v)): ``single[k]`` (e.g. "the SSP grid holds one
    [M/H]") or a plain phrase, with the value."""
    what = (single or {}).get(k, f"{fit}'s range for {k} is one value")
    return f"{what}, {limit[k][0]:.7g}: {k} is held there"


def _check_bounds(bounds, lim, limit, names, fit, single=None):
    """``bounds`` (dict name -> (lo, hi)) applied to ``lim`` in place, each within ``limit``. A parameter
    whose ``limit`` is one value (``single``: name -> what makes it so) cannot be bounded."""
    if bounds is None:
        return
    if not isinstance(bounds, dict):
        raise ValueError(f"bounds must be a dict name -> (lo, hi) for any of {names}; got "
                         f"{type(bounds).__name__}")
    for k, v in bounds.items():
        if k not in lim:
            raise ValueError(f"unknown bound {k!r}; {fit}'s parameters are {names}")
        pair = v if isinstance(v, (tuple, list, np.ndarray)) else None
        if pair is None or len(pair) != 2:
            raise ValueError(f"bounds[{k!r}] must be a pair (lo, hi); got {v!r}")
        lo, hi = (_check_number(x, f"bounds[{k!r}]", "a pair (lo, hi)") for x in pair)
        if limit[k][0] == limit[k][1]:
            if lo <= limit[k][0] <= hi:
                continue        # bounds holding the one value (a script for grids of many Z): held there
            # the message said "must satisfy -0.05 <= lo < hi <= -0.05", a pair that cannot exist
            raise ValueError(f"{_one_value(k, limit, single, fit)}, so bounds[{k!r}] = {v} leave it out: "
                             f"drop them (or pass fixed={{{k!r}: {float(limit[k][0])!r}}})")
        if not (limit[k][0] <= lo < hi <= limit[k][1]):
            raise ValueError(f"bounds[{k!r}] = {v} must satisfy {limit[k][0]} <= lo < hi <= {limit[k][1]}")
        lim[k] = (lo, hi)


def _check_fixed(fixed, bounds, lim, limit, names, fit, single=None):
    """``fixed`` (dict name -> value, in the units of ``bounds``) held in ``lim`` in place as (value, value),
    each within ``limit``; returns {name: value}. A known [M/H], log g or A_V could only be held by passing
    narrow bounds (``bounds`` needs lo < hi). A held parameter gets no walkers, no error and no degree of
    freedom; the free ones' errors are conditional on it (:class:`_Problem`). Where ``limit`` is one value
    (``single``: name -> what makes it so) the value must be that one, to :data:`SINGLE_VALUE_DEX`."""
    if fixed is None:
        return {}
    if not isinstance(fixed, dict):
        raise ValueError(f"fixed must be a dict name -> value for any of {names}; got {type(fixed).__name__}")
    out = {}
    for k, v in fixed.items():
        if k not in lim:
            raise ValueError(f"unknown fixed parameter {k!r}; {fit}'s parameters are {names}")
        if isinstance(bounds, dict) and k in bounds:
            raise ValueError(f"{k!r} is both fixed (fixed[{k!r}] = {v!r}) and bounded (bounds[{k!r}] = "
                             f"{bounds[k]!r}); a parameter is either held at a value or fitted within bounds")
        value = _check_number(v, f"fixed[{k!r}]", "the value to hold it at")
        if limit[k][0] == limit[k][1]:
            if abs(value - limit[k][0]) > SINGLE_VALUE_DEX:
                raise ValueError(f"{_one_value(k, limit, single, fit)}; fixed[{k!r}] = {value:.7g} is not "
                                 f"that value (within {SINGLE_VALUE_DEX:g})")
            value = float(limit[k][0])  # the grid's own value, not its rounding (log10(0.017 / 0.0152))
        if not limit[k][0] <= value <= limit[k][1]:
            raise ValueError(f"fixed[{k!r}] = {value:g} lies outside {fit}'s range for {k}, "
                             f"{limit[k][0]:g} .. {limit[k][1]:g}")
        lim[k] = (value, value)
        out[k] = value
    if len(out) == len(names):
        raise ValueError(f"fixed holds every parameter of {fit} ({names}): nothing is left to fit")
    return out


def _check_rv_fixed(fixed, rv_guess):
    """The start velocity when ``rv`` is fixed: its value. An ``rv_guess`` (a velocity to search from) beside
    a fixed rv asks for a scan the fit cannot make: refused unless 0 (the default) or that value."""
    if "rv" not in fixed:
        return rv_guess
    if rv_guess not in (0.0, fixed["rv"]):
        raise ValueError(f"rv is fixed at {fixed['rv']:g} km/s, so there is no velocity to search: drop "
                         f"rv_guess ({rv_guess:g} km/s; --rv-guess) or leave rv free")
    return fixed["rv"]


def _check_resolution_fwhm(resolution_fwhm, n_pix):
    """Refuse a ``resolution_fwhm`` that is neither one number nor one per pixel (numpy's "operands could not
    be broadcast together" named neither)."""
    shape = np.shape(resolution_fwhm)
    if not (len(shape) == 0 or shape in ((1,), (n_pix,))):
        raise ValueError(f"resolution_fwhm must be one number or one per pixel (shape ({n_pix},), len(wave)) "
                         f"[A]; got shape {shape}")


def _unit_or_none(x):
    """A Quantity's unit, None for plain numbers or a dimensionless Quantity (a relative flux); a magnitude
    unit is kept, even mag(1) (equivalent to dimensionless), for :func:`~smnet_sps.medium.f_lambda_factor`
    to refuse."""
    import astropy.units as u

    unit = getattr(x, "unit", None) if isinstance(x, u.Quantity) else None
    if unit is None or isinstance(unit, u.FunctionUnitBase):
        return unit
    return None if unit.is_equivalent(u.dimensionless_unscaled) else unit


def _to_f_lambda(flux, ivar, flux_unit, ivar_unit, wave):
    """(flux, ivar) in F_lambda (:func:`~smnet_sps.medium.f_lambda_factor`) from values in ``flux_unit`` and
    ``ivar_unit`` (None: plain numbers; a plain ivar beside a flux Quantity is in the flux's unit^-2). A flux
    in Jy was fitted as F_lambda without a word (MILES star 257, 5800 K, log g 4.4, [M/H] -0.9: 4166 K, 2.36,
    -2.5 on the bound, against 6004 K, 4.74, -1.29 for the same flux in erg/s/cm^2/A)."""
    allowed = f"{LINEAR_FLUX_UNITS}, or plain numbers (F_lambda)"
    if flux_unit is None:
        if ivar_unit is not None:
            raise ValueError(f"ivar is in {ivar_unit} but flux has no unit, so the two cannot be related; "
                             "give flux as a Quantity too, or ivar as plain numbers (in flux's units^-2)")
        return flux, ivar
    import astropy.units as u

    try:
        factor = f_lambda_factor(flux_unit, wave)
    except u.UnitConversionError:
        raise ValueError(f"flux must be a spectral flux density: {allowed}; got {flux_unit}"
                         f"{_ampere_hint(flux_unit)}") from None
    if ivar is None:
        return flux * factor, None
    # the API's rule (docs/fit.md): a plain ivar beside a flux Quantity is in the flux's unit^-2
    return flux * factor, ivar * _ivar_factor(flux_unit ** -2 if ivar_unit is None else ivar_unit, wave,
                                              flux_unit)


def _ivar_factor(unit, wave, flux_unit, name="ivar", flux_name="flux"):
    """Per-pixel factor taking an inverse variance in ``unit`` to the F_lambda that a flux in ``flux_unit``
    is converted to (:func:`~smnet_sps.medium.f_lambda_factor`): through the error it implies, unit^-1/2,
    converted as the flux is (an ivar in 1/Jy^2 beside an F_lambda flux was refused while an err in Jy was
    taken). One rule for an ivar Quantity given to :func:`check_spectrum` and an ivar column read by
    ``smnet-sps fit``; ``name`` and ``flux_name`` name the two in a ValueError for a unit that is no inverse
    squared spectral flux density (or a magnitude)."""
    import astropy.units as u

    refuse_logarithmic(unit, name)              # astropy cannot raise it to the power -1/2 below
    try:
        return 1.0 / f_lambda_factor(unit ** -0.5, wave, flux_unit, name=name) ** 2
    except u.UnitConversionError:
        raise ValueError(f"{name} is in {unit}; an inverse variance of {flux_name} needs 1 / (a spectral "
                         f"flux density)^2, e.g. {flux_unit ** -2} or 1 / Jy2") from None


def _reversed_axis(wave_in, wave_aa):
    """Whether a spectrum is read in reverse: ``wave_in`` is a Quantity in frequency, energy or wavenumber
    whose wavelengths ``wave_aa`` [A] decrease (an increasing frequency axis, as the fit CLI's readers take
    it); a wavelength axis is never reversed (red to blue is refused)."""
    import astropy.units as u

    wave_in = column_quantity(wave_in, "wave", _WAVE_UNITS)
    return (isinstance(wave_in, u.Quantity) and not wave_in.unit.is_equivalent("Angstrom")
            and np.ndim(wave_aa) == 1 and bool(np.all(np.diff(wave_aa) < 0)))


def _fwhm_in_wavelength_order(wave, resolution_fwhm):
    """``resolution_fwhm`` as :func:`check_spectrum` orders the pixels: a per-pixel array given with an
    increasing frequency (energy, wavenumber) axis reversed with the spectrum (it stayed in the caller's
    order and was applied mirrored: a mock at 10-60 A FWHM fitted 4,905 K, log g 2.26 for 5,105 K, 4.37)."""
    if resolution_fwhm is None or np.ndim(resolution_fwhm) != 1 or not hasattr(wave, "unit"):
        return resolution_fwhm
    from .medium import _as_angstrom
    try:
        lam = _as_angstrom(_column_unmasked(wave, "wave", _WAVE_UNITS)[0], "wave")[0]
    except (TypeError, ValueError):
        return resolution_fwhm             # check_spectrum names what is wrong with wave
    return resolution_fwhm[::-1] if _reversed_axis(wave, lam) else resolution_fwhm


def check_spectrum(wave, flux, ivar=None, mask=None):
    """Validate an observed spectrum -> (wave [A], flux, ivar, good) as float arrays and a bool array.

    ``mask`` is True where a pixel is bad (the specutils convention). A masked ``flux`` or ``ivar`` (numpy's
    or astropy's ``Masked``) adds its masked pixels to ``mask``; a masked ``wave`` is refused. NaN/inf ivar is
    only allowed on masked pixels, NaN/inf flux on masked pixels or where ivar is 0; ivar must be >= 0
    (0 = ignore the pixel). Raises ``ValueError`` naming the problem.

    ``flux`` is F_lambda in any units, or a Quantity: a spectral flux density, converted to F_lambda at each
    wavelength (:func:`~smnet_sps.medium.f_lambda_factor`: an F_lambda or L_lambda unit is kept, f_nu such as
    Jy becomes erg/s/cm^2/A; also per M_sun or per solid angle, which stay); ``ivar`` follows, by the square
    of the same factor (a plain ``ivar`` beside a flux Quantity is taken in the flux's unit^-2; a Quantity in
    1 / (its flux density)^2 is converted through its error).
    The fit normalises the flux (its ``scale``, the median |flux| in these F_lambda units), so an F_lambda
    Quantity, the same flux in Jy and plain F_lambda numbers give the same fit.
    ``wave`` increases, or is a Quantity in frequency, energy or wavenumber that increases: then every array
    is returned reversed, in increasing wavelength.
    """
    import astropy.units as u

    from .medium import _as_angstrom

    if wave is None:
        raise ValueError("wave is required")
    # a table column (Table.read of a FITS or ECSV spectrum) with a unit is the Quantity it stands for: its
    # unit was dropped (a wavelength column in nm fitted as Angstrom, a flux column in Jy as F_lambda) and a
    # column without one was an AttributeError; a masked column's mask is taken from it first
    wave, wave_mask = _column_unmasked(wave, "wave", _WAVE_UNITS)
    if wave_mask is not None and wave_mask.any():
        raise ValueError(f"wave is a masked array with {int(wave_mask.sum())} masked value(s): a pixel needs "
                         "a wavelength; mask bad pixels in flux (or with mask=) instead")
    flux, flux_mask = _column_unmasked(flux, "flux", _FLUX_UNITS)
    ivar, ivar_mask = _column_unmasked(ivar, "ivar", "1 / (a spectral flux density)**2 (e.g. 1 / Jy2)")
    wave_in = wave
    try:
        wave = _as_angstrom(wave, "wave")[0]
    except TypeError as exc:
        raise ValueError(f"wave must be a numeric array; got {type(wave).__name__}") from exc
    flux_unit, ivar_unit = _unit_or_none(flux), _unit_or_none(ivar)
    flux = _as_values(flux, "flux")
    if wave.ndim != 1 or flux.ndim != 1:
        raise ValueError(f"wave and flux must be 1-d arrays; got shapes {wave.shape} and {flux.shape}")
    if wave.shape != flux.shape:
        raise ValueError(f"wave and flux must have the same shape; got {wave.shape} and {flux.shape}")
    if wave.size < _MIN_PIXELS:
        raise ValueError(f"a spectrum needs at least {_MIN_PIXELS} pixels; got {wave.size}")
    if not np.all(np.isfinite(wave)) or np.any(wave <= 0):
        raise ValueError("wave must be finite and positive (Angstrom)")
    # a frequency, energy or wavenumber increasing is a wavelength decreasing: read in wavelength order (all
    # arrays reversed together), as the fit CLI's readers do; it was refused as "must be strictly increasing"
    reverse = _reversed_axis(wave_in, wave)
    if reverse:
        wave, flux = wave[::-1], flux[::-1]
    if np.any(np.diff(wave) <= 0):
        raise ValueError("wave must be strictly increasing (a spectrum from red to blue: reverse wave, flux, "
                         "ivar and mask)")
    if wave[-1] < 1000.0 and not isinstance(wave_in, u.Quantity):
        # an optical spectrum in nm (or um) read as A lands in the extreme UV and fits without an error
        warnings.warn(f"wave ends at {wave[-1]:g}: read as Angstrom, this spectrum lies below 1000 A; if the "
                      "numbers are nm or um, pass a Quantity (e.g. wave * u.nm)", FitWarning, stacklevel=3)
    ivar = None if ivar is None else _as_values(ivar, "ivar")
    if ivar is not None and ivar.shape != wave.shape:
        raise ValueError(f"ivar must have the shape of wave {wave.shape}; got {ivar.shape}")
    if reverse and ivar is not None:
        ivar = ivar[::-1]
    flux, ivar = _to_f_lambda(flux, ivar, flux_unit, ivar_unit, wave)
    bad = np.zeros(wave.shape, bool)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != wave.shape:
            raise ValueError(f"mask must have the shape of wave {wave.shape}; got {mask.shape}")
        if mask.dtype != bool:
            raise ValueError("mask must be a boolean array (True = bad pixel)")
        bad |= mask[::-1] if reverse else mask
    for name, masked in (("flux", flux_mask), ("ivar", ivar_mask)):
        if masked is not None:
            if masked.shape != wave.shape:
                raise ValueError(f"{name}'s mask must have the shape of wave {wave.shape}; got "
                                 f"{masked.shape}")
            bad |= masked[::-1] if reverse else masked
    if ivar is None:
        # uniform weights in units of the spectrum's typical flux: the fit and its chi^2 then do not depend
        # on the flux unit (ones in raw units left a spectrum stored as ~1e-5 L_sun/A with chi^2 ~ 1e-9, and
        # the optimiser stopped at its start); errors come from the residuals' scatter (chi^2_red scaling).
        # At S/N 100 per pixel, not 1: with chi^2 ~ 1e-3 the optimiser's absolute tolerances stopped short of
        # the minimum (no-ivar fits +68 K, +0.19 dex off on average)
        finite = np.isfinite(flux) & ~bad
        typical = float(np.median(np.abs(flux[finite]))) if finite.any() else 1.0
        ivar = np.full_like(flux, 1.0 / (0.01 * typical) ** 2 if typical > 0 else 1.0)
    else:
        nan_iv = ~np.isfinite(ivar) & ~bad
        if nan_iv.any():
            raise ValueError(f"ivar has {nan_iv.sum()} NaN/inf values at unmasked pixels; mask them")
        if np.any(ivar[~bad] < 0):
            raise ValueError("ivar must be >= 0 (inverse variance; 0 ignores a pixel)")
    # NaN flux where ivar is 0 is the usual survey convention for a pixel without data: ignored like a mask
    nan_f = ~np.isfinite(flux) & ~bad & (ivar != 0)
    if nan_f.any():
        raise ValueError(f"flux has {nan_f.sum()} NaN/inf values at unmasked pixels with ivar > 0; mask them "
                         "(mask=...) or set their ivar to 0")
    good = ~bad & (ivar > 0)
    if good.sum() < _MIN_PIXELS:
        raise ValueError(f"fewer than {_MIN_PIXELS} usable pixels (unmasked, ivar > 0): {good.sum()}")
    if np.all(flux[good] == 0):
        raise ValueError("flux is zero at every usable pixel")
    if np.median(flux[good]) <= 0:
        # the continuum polynomial would absorb the sign and fit a mirrored spectrum without a word
        raise ValueError("flux is negative at most usable pixels (median <= 0); give F_lambda, not a "
                         "sky- or continuum-subtracted spectrum")
    flux = np.where(good, flux, 0.0)
    ivar = np.where(good, ivar, 0.0)
    return wave, flux, ivar, good


# ------------------------------------------------------------------------------------ the operator
_MODE_TOLERANCE = 1e-6   # relative: data pixels this close to the model's count as the model's own


class SpectralOperator:
    """Observed spectrum on its working pixels, and the map from model pixels onto them.

    Parameters
    ----------
    model_wave : ndarray, model pixel centres [A, vacuum, increasing]
    wave, flux, ivar, good : the checked spectrum (:func:`check_spectrum`)
    resolution_fwhm : float, array (n_pix,) or None, the data's line-spread FWHM [A]; None = the data's
        resolution beyond the model's, both 2 pixel widths, in quadrature (none for pixels no wider than the
        model's)
    max_rv : float [km/s], largest |v| the fit may reach (sets the model pixels kept)
    max_sigma : float [km/s], largest velocity dispersion the fit may reach
    degree : int, degree of the multiplicative Legendre polynomial
    shift : ``"model"`` (default: the model is shifted to the observed frame) or ``"data"`` (bin mode with
        data pixels at most a tenth of the model's: the data are re-binned onto the model's rest-frame
        pixels at each trial velocity, :meth:`data_at`, and the model stays on its own pixels; docs/fit.md)

    Attributes
    ----------
    mode : ``"bin"`` (data averaged onto model pixels) or ``"broaden"`` (model broadened to the data)
    wave, flux, ivar : working pixels [A], the data there (normalised to median 1) and its inverse variance
    counts : each working pixel's share of the degrees of freedom (below 1 where it shares data pixels)
    scale : the factor the data were divided by
    """

    def __init__(
        self,
        model_wave,
        wave,
        flux,
        ivar,
        good,
        resolution_fwhm=None,
        *,
        max_rv=1000.0,
        max_sigma=0.0,
        degree=3,
        shift="model",
        dtype=torch.float64,
    ):
        from .empirical import overlap_matrix

        if shift not in ("model", "data"):
            raise ValueError(f"shift must be 'model' or 'data'; got {shift!r}")

        mw = np.asarray(model_wave, float)
        m_edges = _edges(mw)
        lo, hi = wave[good][0], wave[good][-1]
        if lo < m_edges[0] or hi > m_edges[-1]:
            raise ValueError(
                f"the spectrum's wavelengths {lo:.1f}-{hi:.1f} A lie outside the model's range "
                f"{m_edges[0]:.1f}-{m_edges[-1]:.1f} A"
            )
        fwhm_d = None
        if resolution_fwhm is not None:
            import astropy.units as u
            fwhm = _as_values(resolution_fwhm, "resolution_fwhm", u.AA)   # an interval: not spectral()
            _check_resolution_fwhm(fwhm, wave.size)
            fwhm_d = np.broadcast_to(fwhm, wave.shape).astype(float)
            if not np.all(np.isfinite(fwhm_d)) or np.any(fwhm_d <= 0):
                raise ValueError("resolution_fwhm must be finite and > 0 (Angstrom)")
        # holes in the sampling become masked pixels (before the default LSF, which follows the spacing)
        wave, flux, ivar, good, fwhm_d = _fill_gaps(wave, flux, ivar, good, fwhm_d)
        if fwhm_d is None:
            fwhm_d = 2.0 * np.gradient(wave)
        fwhm_m = np.interp(wave, mw, model_fwhm(mw))
        self.data_fwhm = float(np.median(fwhm_d[good]))
        self.model_fwhm = float(np.median(fwhm_m[good]))
        # data on the model's own pixels give equal medians; a rounding above them (air -> vacuum -> air
        # returns the grid to 6e-9 A) switched to broaden mode and its default LSF (2 data pixels): a K giant
        # on the model's pixels came out 350 K cooler, 1.6 dex lower in log g, chi^2 30x
        # and data pixels wider than the model's are never binned onto them (each was spread over two model
        # pixels and counted twice: 40-A pixels with a 30-A LSF gave dof > the data points, rv +295 km/s)
        pix_d = float(np.median(np.gradient(wave)[good]))
        pix_m = float(np.median(np.interp(wave, mw, np.gradient(mw))[good]))
        coarser = pix_d > pix_m * (1 + _MODE_TOLERANCE)
        self.mode = ("broaden" if self.data_fwhm > self.model_fwhm * (1 + _MODE_TOLERANCE) or coarser
                     else "bin")
        # shift="data" (bin mode only): the data are re-binned for each trial rv onto the model's rest-frame
        # pixels (data_at), and the model is compared on its own pixels, unshifted
        if shift == "data" and (self.mode != "bin" or pix_d > _DATA_SHIFT_MAX_PIXEL * pix_m):
            raise ValueError(
                f"shift='data' needs the bin mode (data finer than the model in LSF and pixels) with data "
                f"pixels at most {_DATA_SHIFT_MAX_PIXEL:g} of the model's; here mode {self.mode!r}, median "
                f"pixels {pix_d:.3g} A against {pix_m:.3g} A: re-binning coarser data at each velocity mixes "
                "their noise and biases rv; use shift='model'"
            )
        self.shift = shift
        s_lo, s_hi = (1.0 - max_rv / C_KMS, 1.0 + max_rv / C_KMS) if self.shift == "data" else (1.0, 1.0)
        if self.mode == "bin":
            d_edges = _edges(wave)
            inside = (m_edges[:-1] * s_lo >= d_edges[0]) & (m_edges[1:] * s_hi <= d_edges[-1])
            idx = np.flatnonzero(inside)
            if idx.size < _MIN_PIXELS:
                raise ValueError(
                    f"only {idx.size} model pixels fall inside the spectrum's range "
                    f"{wave[0]:.0f}-{wave[-1]:.0f} A; at least {_MIN_PIXELS} are needed"
                )
            w_edges = m_edges[idx[0] : idx[-1] + 2]
            ov = overlap_matrix(d_edges, w_edges)  # (n_work, n_data) [A]
            width = np.diff(w_edges)
            cov = (ov @ good.astype(float)) / width
            num = ov @ np.where(good, flux, 0.0)
            sumw = ov @ good.astype(float)
            sig2 = np.where(good, 1.0 / np.where(good, ivar, 1.0), 0.0)
            # The mean is flux-conserving: datum i enters working pixel j with its overlap o_ij = f_ij d_i
            # (f_ij = o_ij / d_i its share, d_i its width), and the model goes through the same weights. That
            # mean's variance is V_j = sum o_ij^2 s_i^2 / O_j^2 (s_i^2 = 1 / ivar_i, O_j = sum o_ij), but a
            # datum across a model edge puts the same noise into two working pixels and the chi^2 is
            # diagonal: weighted 1 / V_j, it counted in full in each (10-A data half a pixel off the 20-A
            # model pixels: summed weight 664 for 500 data; Teff, log g, [M/H] errors 1.1x too small). The
            # weight is 1 / (V_j plus its covariances with the other working pixels), what the full chi^2
            # gives a slowly varying quantity: sum_i o_ij d_i s_i^2 / O_j^2, one f_ij of V_j's f_ij^2
            # dropped. For equal errors it is sum_i f_ij ivar_i, each datum's ivar once in total; data on the
            # model's own pixels (o = d) keep 1 / V_j; wider data (30-A pixels on 20-A ones) follow the same
            # rule. Pixel-scale structure is weighted a little low: errors up to 5 % large (10-A pixels)
            with np.errstate(divide="ignore", invalid="ignore"):
                f = num / sumw
                var = (ov.multiply(ov)) @ sig2 / sumw**2          # the mean's own variance
                charged = ov @ (np.diff(d_edges) * sig2) / sumw**2  # with its covariances (>= var)
            if self.shift == "data":
                # covered enough at every velocity the fit may reach (cumulative good width, trial rvs)
                cum_g = np.concatenate([[0.0], np.cumsum(good * np.diff(d_edges))])
                for s_v in np.linspace(s_lo, s_hi, 41):
                    got = np.diff(np.interp(w_edges * s_v, d_edges, cum_g)) / (width * s_v)
                    cov = np.minimum(cov, got)
            keep = (cov >= _MIN_BIN_COVERAGE) & np.isfinite(f) & (var > 0)
            if keep.sum() < _MIN_PIXELS:
                # none kept stopped in _window_breaks with "max() arg is an empty sequence" (a MILES star with
                # every other pixel's ivar 0: each model pixel half covered)
                raise ValueError(
                    f"only {int(keep.sum())} of the {keep.size} model pixels over the spectrum have "
                    f"{100 * _MIN_BIN_COVERAGE:.0f} % of their width covered by usable pixels (unmasked, "
                    f"ivar > 0); at least {_MIN_PIXELS} are needed: {int(good.sum())} usable of "
                    f"{good.size} pixels are too few or too scattered (check the mask, ivar or errors)"
                )
            # each working pixel counts in the degrees of freedom as its expected chi^2 at the truth,
            # var / charged (1 for pixels of whole data pixels; 0.75 for 10-A data straddling each edge)
            with np.errstate(divide="ignore", invalid="ignore"):
                counts = np.where(charged > 0, var / charged, 1.0)
            centres = 0.5 * (w_edges[1:] + w_edges[:-1])
            self.wave, self.edges_lo, self.edges_hi = centres[keep], w_edges[:-1][keep], w_edges[1:][keep]
            self.model_index = idx[keep]  # the model pixel each working pixel is
            flux_w, ivar_w = f[keep], 1.0 / charged[keep]
            self.counts = counts[keep]
            # the model is averaged over the same data pixels, with the same weights, as the data (a data
            # pixel across a model edge enters with its overlap): averaged over the working pixel itself, the
            # model missed the part of such a pixel outside it, and 2-A pixels 0.5 A off the model's edges
            # (no LSF) fitted rv +50 km/s for a true -40 (chi^2_red 97)
            if self.shift == "data":
                # the model is its own pixels (a box each, in the rest frame); the data's cumulative integrals
                # over observed wavelength (piecewise linear, differentiable in rv) give the data on them
                w_lo, w_hi = self.edges_lo, self.edges_hi
                brk = np.stack([w_lo, w_hi], 1)
                jump = np.stack([1.0 / (w_hi - w_lo), -1.0 / (w_hi - w_lo)], 1)
                dd = np.diff(d_edges)
                dens = np.stack([np.where(good, flux, 0.0), good.astype(float),
                                 np.where(good, dd * sig2, 0.0)])
                cum = np.concatenate([np.zeros((3, 1)), np.cumsum(dens * dd, 1)], 1)
                self._cum_d_edges = torch.as_tensor(d_edges, dtype=dtype)
                self._cum = torch.as_tensor(cum, dtype=dtype)
                self._cum_dens = torch.as_tensor(dens, dtype=dtype)
            else:
                weights = ov[keep].multiply(np.where(good, 1.0, 0.0) / np.diff(d_edges)[None, :])
                brk, jump = _window_breaks(weights.tocsr(), sumw[keep], d_edges)
        else:
            d_edges = _edges(wave)
            self.wave, self.edges_lo, self.edges_hi = wave[good], d_edges[:-1][good], d_edges[1:][good]
            self.model_index = None
            flux_w, ivar_w = flux[good], ivar[good]
            self.counts = np.ones(self.wave.size)
            width = self.edges_hi - self.edges_lo
            brk = np.stack([self.edges_lo, self.edges_hi], 1)
            jump = np.stack([1.0 / width, -1.0 / width], 1)
        # The model's own line-spread function is a box one model pixel wide (smnet_sps.lsf; variance w^2/12);
        # the data's is a Gaussian of the given FWHM. Broaden mode: the model is broadened by the difference
        # of their variances (a MILES giant degraded to 30 A FWHM, fitted with the model's LSF taken as two
        # pixels, came out 250 K cooler, 0.8 dex lower in log g, 330 km/s off in rv). Bin mode: the data are
        # averaged over the model's own pixels, the same box the model carries, so the model takes the data's
        # whole Gaussian (the box subtracted a second time left any FWHM below 13.6 A unbroadened: an SSP at
        # 8 A FWHM fitted sigma 249 km/s for 0, 320 for 200; a star's rv moved 70-140 km/s)
        pix = np.interp(self.wave, mw, np.gradient(mw))        # the model's pixel width at each working pixel
        fwhm_w = np.interp(self.wave, wave, fwhm_d)
        box = (_BIN_BOX_SHARE if self.mode == "bin" else 1.0) * pix**2 / 12.0
        lsf_var = (fwhm_w / _FWHM_PER_SIGMA) ** 2  # [observed-frame A^2]
        if resolution_fwhm is None:
            # No LSF given: the data's resolution beyond the model's, both taken as 2 pixels FWHM (Nyquist,
            # model_fwhm), in quadrature: none for data on the model's own pixels (the package's spectra,
            # mocks) and continuous in the pixel width. It was none only for pixels within 1e-6 of the model's
            # and 2 data pixels (40 A) beyond: a mock stretched by 1e-5 or air -> vacuum fitted 5,132 K,
            # log g 2.13, chi^2 2943 / 152 for 5,559 K, 4.17, 120. Observed frame, fixed: taken in the rest
            # frame, the excess bent at rv = 0 for the model's own pixels and a noiseless mock at +35 km/s
            # stopped at -18 (log g 3.57 for 3.6)
            lsf_var = np.maximum(fwhm_w**2 - (2.0 * pix) ** 2, 0.0) / _FWHM_PER_SIGMA**2
            box = np.zeros_like(box)
        sig_inst = np.sqrt(np.maximum(lsf_var - box, 0.0))
        if self.wave.size < _MIN_PIXELS:
            raise ValueError(
                f"fewer than {_MIN_PIXELS} working pixels after matching the resolution "
                f"({self.wave.size}); check the mask and the wavelength range"
            )
        self.scale = float(np.median(np.abs(flux_w)))
        if not self.scale > 0:
            raise ValueError("the spectrum's median |flux| is zero")
        self.flux, self.ivar = flux_w / self.scale, ivar_w * self.scale**2
        # model pixels the shifted, broadened working pixels can reach
        f_lo, f_hi = 1.0 / (1.0 + max_rv / C_KMS), 1.0 / (1.0 - max_rv / C_KMS)
        sig_max = np.sqrt((sig_inst * f_hi) ** 2 + (self.wave * max_sigma / C_KMS) ** 2
                          + (_SIGMA_FLOOR_PIX * pix) ** 2)
        if self.shift == "data":
            f_lo, f_hi = 1.0, 1.0       # the windows are the model's own pixels, never shifted
        win_lo, win_hi = brk.min(1), brk.max(1)      # the window each working pixel averages the model over
        need_lo = np.min(win_lo * f_lo - 6 * sig_max)
        need_hi = np.max(win_hi * f_hi + 6 * sig_max)
        src = np.flatnonzero((m_edges[1:] > need_lo) & (m_edges[:-1] < need_hi))
        if need_lo < m_edges[0] or need_hi > m_edges[-1]:
            raise ValueError(
                f"the spectrum ({self.wave[0]:.1f}-{self.wave[-1]:.1f} A) reaches the edge of the "
                f"model's range {m_edges[0]:.1f}-{m_edges[-1]:.1f} A once shifted by max_rv="
                f"{max_rv} km/s and broadened; trim it"
            )
        self.src = src
        self.model_wave = mw[src]
        def t(a):
            return torch.as_tensor(np.asarray(a, float), dtype=dtype)

        src_edges = m_edges[src[0] : src[-1] + 2]
        # banded kernel: working pixel j only reaches source edges first[j] ... first[j] + band
        reach_lo = win_lo * f_lo - 6 * sig_max
        reach_hi = win_hi * f_hi + 6 * sig_max
        first = np.clip(np.searchsorted(src_edges, reach_lo, side="right") - 1, 0, src_edges.size - 1)
        last = np.clip(np.searchsorted(src_edges, reach_hi, side="left"), 0, src_edges.size - 1)
        band = int(np.max(last - first)) + 1
        self._edge_idx = torch.as_tensor(np.minimum(first[:, None] + np.arange(band + 1), src_edges.size - 1))
        self._pix_idx = torch.as_tensor(np.minimum(first[:, None] + np.arange(band), src.size - 1))
        self._src_edges = t(src_edges)
        self._brk, self._jump = t(brk), t(jump)
        # the data's LSF is in the observed frame, the kernel in the model's rest frame (x f = 1 / (1 + v/c)):
        # applied unscaled, a 20-A FWHM at z = 0.1 fitted sigma 196 km/s for 300. The model's box and the
        # floor are rest-frame model pixels already
        self._lsf_var_obs, self._box_var = t(lsf_var), t(box)
        self._floor_var = t((_SIGMA_FLOOR_PIX * pix) ** 2)
        self._wave_t = t(self.wave)
        x = 2.0 * (self.wave - self.wave[0]) / (self.wave[-1] - self.wave[0]) - 1.0
        degree = _check_degree(degree)
        if degree + 1 > self.wave.size // 4:
            raise ValueError(f"degree {degree} is too high for {self.wave.size} working pixels")
        self.degree = int(degree)
        self.basis = np.polynomial.legendre.legvander(x, self.degree)  # (n_work, degree + 1)
        self.data_t, self.ivar_t, self.basis_t = t(self.flux), t(self.ivar), t(self.basis)
        self.dtype = dtype
        self._window_rv = None      # shift="data": a shift of the model's windows (the data's rv derivative)

    def data_at(self, rv=None):
        """The data and inverse variance on the working pixels (K, n_work) at velocities ``rv`` [km/s] (K,)
        (shift="data": re-binned onto the rest-frame pixels, ``rv`` required), or the fixed data (1, n_work)
        (shift="model": ``rv`` ignored). Clipped pixels (``ivar_t`` 0) stay out. The velocities are an
        argument, not state; the operator's one piece of state, ``_window_rv``, is set only while the Laplace
        error's rv derivative is taken (:func:`_laplace`, reset after it even when interrupted)."""
        if self.shift == "model":
            return self.data_t[None], self.ivar_t[None]
        if rv is None:
            raise ValueError("data_at() of a shift='data' operator needs the velocities rv [km/s] (K,) "
                             "the data are re-binned at")
        s = 1.0 + torch.as_tensor(rv, dtype=self.dtype).reshape(-1, 1) / C_KMS
        e = self._cum_d_edges

        def between(lo, hi):
            # the cumulative integrals (3, ...) at observed wavelengths hi minus at lo: piecewise linear
            out = []
            for x in (lo, hi):
                k = torch.searchsorted(e, x.detach().contiguous(), right=True) - 1
                k = torch.clamp(k, 0, e.numel() - 2)
                out.append(self._cum[:, k] + (x - e[k])[None] * self._cum_dens[:, k])
            return out[1] - out[0]

        lo = torch.as_tensor(self.edges_lo, dtype=self.dtype)[None] * s
        hi = torch.as_tensor(self.edges_hi, dtype=self.dtype)[None] * s
        num, sumw, var = between(lo, hi)
        data = num / sumw / self.scale
        ivar = torch.where(self.ivar_t[None] > 0, sumw**2 / var * self.scale**2, torch.zeros_like(var))
        return data, ivar

    def apply(self, flux_src, rv, sigma_kms=None):
        """Model pixels (K, n_src) -> working pixels (K, n_work), shifted by rv [km/s] (K,), broadened by a
        Gaussian of dispersion ``sigma_kms`` [km/s] (K,) on top of the resolution matching."""
        f = 1.0 / (1.0 + rv.reshape(-1, 1) / C_KMS)  # (K, 1)
        if self.shift == "data":
            # the model stays on its rest-frame pixels: only the data's LSF is scaled into the rest frame
            fw = torch.ones_like(f) if self._window_rv is None else 1.0 / (1.0 + self._window_rv / C_KMS)
        else:
            fw = f
        a = self._brk[None] * fw[..., None]  # rest-frame window breakpoints (K, n_work, n_break)
        jump = self._jump[None] / fw[..., None]  # the window's steps per rest-frame A
        s2 = torch.clamp(self._lsf_var_obs[None, :] * f**2 - self._box_var[None, :], min=0.0)
        s2 = s2 + self._floor_var[None, :]
        if sigma_kms is not None:
            s2 = s2 + (self._wave_t[None, :] * fw * sigma_kms.reshape(-1, 1) / C_KMS) ** 2  # rest-frame A
        s = torch.sqrt(s2)[..., None, None]  # (K, n_work, 1, 1)
        b = self._src_edges[self._edge_idx][None, ..., None]  # (1, n_work, band + 1, 1)
        # the Gaussian-smoothed, piecewise-constant model weighted by the working pixel's window (a box for
        # one pixel; steps at the data's pixel edges in bin mode), integrated up to each model edge
        g = (jump[:, :, None, :] * _psi((b - a[:, :, None, :]) / s)).sum(-1) * s[..., 0]
        kern = g[..., 1:] - g[..., :-1]  # (K, n_work, band)
        return (kern * flux_src[:, self._pix_idx]).sum(-1)


def _profile(m, op, rv=None):
    """chi^2 profiled over the multiplicative polynomial -> (chi2 (K,), model (K, n), coefficients (K, p)).
    ``rv`` [km/s] (K,): the velocities ``m`` was made at (shift="data" re-bins the data there; else unused).
    """
    m = m / m.mean(dim=1, keepdim=True)
    data, ivar = op.data_at(rv)  # (K or 1, n)
    a = m[:, :, None] * op.basis_t[None]  # (K, n, p)
    aw = a * ivar[:, :, None]
    normal = aw.transpose(1, 2) @ a
    normal = (
        normal
        + 1e-12
        * torch.eye(normal.shape[-1], dtype=m.dtype)
        * normal.diagonal(dim1=1, dim2=2).mean(-1)[:, None, None]
    )
    rhs = (aw * data[..., None]).sum(1)
    coef = torch.linalg.solve(normal, rhs)
    model = (a @ coef[..., None])[..., 0]
    chi2 = ((data - model) ** 2 * ivar).sum(1)
    return chi2, model, coef


# ------------------------------------------------------------------------------------- the problem
class _Problem:
    """Parameters, bounds, scales and the (unnormalised) model of one fit."""

    names: tuple
    lo: np.ndarray
    hi: np.ndarray
    scale: np.ndarray  # optimisation units: theta = u * scale

    def __init__(self, op, names, lo, hi, scale, spectrum_fn, penalty=None, chi2_scale=1.0):
        self.op, self.names = op, tuple(names)
        self.lo, self.hi, self.scale = (np.asarray(v, float) for v in (lo, hi, scale))
        self.spectrum_fn = spectrum_fn  # theta (K, P) float64 tensor -> model on working pixels (K, n)
        self.penalty = penalty  # theta (K, P) -> -2 ln prior (K,), or None (flat prior)
        self.chi2_scale = float(chi2_scale)  # chi^2 is divided by this in the objective (>= 1)
        # a parameter whose bounds are one value (a single-metallicity library's [M/H]) is held there: it
        # has no error, no degree of freedom and no walkers
        self.free = self.hi > self.lo

    def rv(self, theta):
        """The velocities [km/s] (K,) of theta (K, P): what shift="data" re-bins the data at."""
        return theta[:, self.names.index("rv")]

    def chi2(self, theta):
        return _profile(self.spectrum_fn(theta), self.op, self.rv(theta))[0]

    def objective(self, theta):
        """-2 ln posterior (up to a constant): chi^2 / chi2_scale + penalty; plain chi^2 without a prior."""
        if self.penalty is None:
            return self.chi2(theta)
        return self.chi2(theta) / self.chi2_scale + self.penalty(theta)


def _optimise(prob, starts, n_adam=60, lr=0.3):
    """Adam from several starts at once (projected onto the bounds), then L-BFGS on the best."""
    sc = torch.as_tensor(prob.scale)
    lo, hi = torch.as_tensor(prob.lo) / sc, torch.as_tensor(prob.hi) / sc
    u = (torch.as_tensor(np.atleast_2d(starts), dtype=torch.float64) / sc).clone().requires_grad_(True)
    opt = torch.optim.Adam([u], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, n_adam, eta_min=lr / 20)
    for _ in range(n_adam):
        opt.zero_grad()
        loss = prob.objective(u * sc).sum()
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            u.copy_(torch.minimum(torch.maximum(u, lo), hi))
    with torch.no_grad():
        chi2 = prob.objective(u * sc)
    best = int(torch.argmin(chi2))
    v = u[best].detach().clone().requires_grad_(True)
    lb = torch.optim.LBFGS(
        [v], lr=1.0, max_iter=40, line_search_fn="strong_wolfe", tolerance_grad=1e-6, tolerance_change=1e-9
    )

    def closure():
        lb.zero_grad()
        theta = torch.minimum(torch.maximum(v, lo), hi) * sc
        loss = prob.objective(theta[None])[0]
        loss.backward()
        return loss

    try:
        lb.step(closure)
    except RuntimeError:  # a singular step; keep Adam's answer
        v = u[best].detach().clone()
    with torch.no_grad():
        theta = torch.minimum(torch.maximum(v, lo), hi) * sc
        chi2_best = float(prob.objective(theta[None])[0])
        if chi2_best > float(chi2[best]):
            theta, chi2_best = u[best] * sc, float(chi2[best])
    return theta.detach().numpy(), chi2_best, (u * sc).detach().numpy(), chi2.numpy()


def _rv_grid(rv_bounds, rv_guess, step):
    """The velocities a start scan tries [km/s]: ``step`` apart over ``rv_bounds``, and ``rv_guess``."""
    lo, hi = float(rv_bounds[0]), float(rv_bounds[1])
    return np.unique(np.r_[np.linspace(lo, hi, max(2, int(np.ceil((hi - lo) / step)) + 1)), float(rv_guess)])


def _scan_rv(op, flux_src, rv_bounds, rv_guess, step=100.0):
    """Each start spectrum's best velocity [km/s] on a grid over ``rv_bounds`` (``step`` apart, with
    ``rv_guess``), and its chi^2 there: the optimiser moves rv by only a few hundred km/s from its start, so a
    star at -800 km/s started at rest ended at -250 with chi^2 20x the truth's."""
    grid = _rv_grid(rv_bounds, rv_guess, step)
    with torch.no_grad():
        k = flux_src.shape[0]
        rv = torch.as_tensor(np.repeat(grid, k), dtype=torch.float64)
        rows = flux_src.repeat(grid.size, 1)
        # in blocks: all at once held spectra x pixels x band kernel values (GBs for thousands of pixels)
        per_spectrum = op.wave.size * op._pix_idx.shape[1] * op._brk.shape[1] / 2
        block = max(1, int(_JACOBIAN_ELEMENTS // per_spectrum))
        chi2 = np.concatenate([_profile(op.apply(rows[i:i + block], rv[i:i + block]), op, rv[i:i + block])[0]
                               .numpy() for i in range(0, rows.shape[0], block)])
    chi2 = chi2.reshape(grid.size, k)
    return grid[np.argmin(chi2, axis=0)], chi2.min(axis=0)


_JACOBIAN_ELEMENTS = 2e6        # kernel values per block of spectra (a few 100 MB with their temporaries)


def _laplace(prob, theta):
    """Covariance of the physical parameters, marginal over the polynomial (Gauss-Newton, autograd J)."""
    th = torch.as_tensor(theta, dtype=torch.float64)
    op = prob.op

    with torch.no_grad():
        m = prob.spectrum_fn(th[None])[0]
        m = m / m.mean()
        _, model, coef = _profile(m[None], op, prob.rv(th[None]))
        ivar = op.data_at(prob.rv(th[None]))[1][0]
    # Jacobian by reverse mode: row j of a batch of copies of theta gives d m_j / d theta. In chunks of
    # copies, so that memory stays bounded (all n copies at once held n^2 x band kernel values: 5 GB for 1,200
    # working pixels in broaden mode, and a MILES star on its 0.9 A pixels was killed for memory)
    n = m.numel()
    band = op._pix_idx.shape[1] * op._brk.shape[1] / 2     # kernel values per working pixel, as 2 breaks
    chunk = max(1, min(n, int(_JACOBIAN_ELEMENTS // (n * band))))
    jac = torch.empty((n, th.numel()), dtype=th.dtype)
    for start in range(0, n, chunk):
        k = min(chunk, n - start)
        rep = th[None].repeat(k, 1).requires_grad_(True)
        mm = prob.spectrum_fn(rep)
        mm = mm / mm.mean(dim=1, keepdim=True)
        rows = torch.arange(k)
        mm[rows, start + rows].sum().backward()
        jac[start:start + k] = rep.grad  # (k, P)
    if op.shift == "data" and "rv" in prob.names:
        # the data move with rv too: their signal as the model's windows would move the other way (the
        # noise's own derivative is no information); central difference of the model with shifted windows
        h = torch.tensor([1.0], dtype=th.dtype)
        with torch.no_grad():
            side = []
            try:
                for w in (h, -h):
                    op._window_rv = w
                    mm = prob.spectrum_fn(th[None])[0]
                    side.append(mm / mm.mean())
            finally:                # an interrupted evaluation left the operator's windows shifted by 1 km/s
                op._window_rv = None
        jac[:, prob.names.index("rv")] += (side[0] - side[1]) / (2.0 * h)
    poly = op.basis_t @ coef[0]
    design = torch.cat([jac * poly[:, None], m[:, None] * op.basis_t], dim=1)  # (n, P + p)
    fisher = design.T @ (design * ivar[:, None])
    npar = len(theta)
    # a parameter the data cannot move (zero column: at a clamp, or a bound) gets an infinite error; compared
    # in the optimisation units (the raw diagonals are in K^-2, dex^-2, (km/s)^-2: a small but interior
    # velocity dispersion was dropped as if unconstrained, its error NaN and the others conditional on it)
    diag = fisher.diagonal()[:npar] * torch.as_tensor(prob.scale, dtype=fisher.dtype) ** 2
    free = (diag > 1e-12 * diag.max()) & torch.as_tensor(prob.free)
    keep = torch.cat([free, torch.ones(fisher.shape[0] - npar, dtype=torch.bool)])
    cov = np.full((npar, npar), np.nan)
    try:
        sub = torch.linalg.inv(fisher[keep][:, keep]).numpy()
        fi = np.flatnonzero(free.numpy())
        cov[np.ix_(fi, fi)] = sub[: fi.size, : fi.size]
    except RuntimeError:
        pass
    return cov, model[0].numpy()


def _emcee(prob, theta, cov, n_walkers=24, n_steps=400, n_burn=150, seed=0, temperature=1.0):
    """emcee over the profiled likelihood, flat priors inside the bounds -> samples (n, P).

    ``temperature``: chi^2 is divided by it (chi^2_red where the errors are scaled), which widens the
    likelihood by sqrt(temperature) and keeps every sample inside the bounds."""
    try:
        import emcee
    except ImportError as exc:
        raise ImportError("uncertainty='emcee' needs the emcee package (pip install emcee)") from exc
    rng = np.random.default_rng(seed)
    free = prob.free            # a held parameter (bounds of one value) gets no walkers: zero spread
    npar = int(free.sum())
    lo, hi, scale = prob.lo[free], prob.hi[free], prob.scale[free]
    sd = np.sqrt(np.diag(cov))[free]
    sd = np.where(np.isfinite(sd) & (sd > 0), sd, scale)
    p0 = theta[free] + 0.3 * sd * rng.standard_normal((n_walkers, npar))
    p0 = np.clip(p0, lo + 1e-9 * scale, hi - 1e-9 * scale)

    def full(p):
        out = np.repeat(np.asarray(theta, float)[None], p.shape[0], axis=0)
        out[:, free] = p
        return out

    def log_prob(p):
        p = np.atleast_2d(p)
        out = np.full(p.shape[0], -np.inf)
        ok = np.all((p >= lo) & (p <= hi), axis=1)
        if ok.any():
            with torch.no_grad():
                out[ok] = -0.5 * prob.objective(torch.as_tensor(full(p[ok]))).numpy() / temperature
        return out

    sampler = emcee.EnsembleSampler(
        n_walkers,
        npar,
        log_prob,
        vectorize=True,
        moves=[(emcee.moves.DEMove(), 0.8), (emcee.moves.DESnookerMove(), 0.2)],
    )
    sampler.random_state = np.random.RandomState(seed).get_state()
    sampler.run_mcmc(p0, n_steps, progress=False)
    return full(sampler.get_chain(discard=n_burn, flat=True))


# ----------------------------------------------------------------------------------------- results
@dataclass
class _FitBase:
    parameters: tuple
    values: np.ndarray
    errors: np.ndarray
    covariance: np.ndarray
    chi2: float
    dof: int
    wave: np.ndarray  # working pixels [A, observed frame; rest-frame model pixels with shift="data"]
    flux: np.ndarray  # data on the working pixels (normalised)
    ivar: np.ndarray
    model: np.ndarray  # best model (continuum included) on the working pixels
    continuum: np.ndarray  # the multiplicative polynomial at the best fit
    mode: str
    method: str
    seconds: float
    scale: float = 1.0  # the data (in F_lambda: check_spectrum converts a flux Quantity) were divided by this
    samples: np.ndarray = None
    starts: np.ndarray = None
    at_bound: tuple = ()
    meta: dict = field(default_factory=dict)

    @property
    def chi2_red(self):
        """chi^2 per degree of freedom."""
        return self.chi2 / max(self.dof, 1)

    @property
    def residual(self):
        """(data - model) * sqrt(ivar) on the working pixels."""
        return (self.flux - self.model) * np.sqrt(self.ivar)

    def __getattr__(self, name):
        params = self.__dict__.get("parameters", ())
        if name in params:
            return float(self.values[params.index(name)])
        if name.endswith("_err") and name[:-4] in params:
            return float(self.errors[params.index(name[:-4])])
        raise AttributeError(name)

    def as_dict(self, json_safe=False):
        """Values, errors and fit statistics as plain floats.

        Parameters
        ----------
        json_safe : bool
            Write non-finite floats (NaN: the error of a parameter without information at the best fit,
            e.g. a velocity dispersion at 0;
            inf) as ``None``, so that ``json.dumps(..., allow_nan=False)`` gives strict JSON (``null``), as
            ``smnet-sps fit --out`` writes. Default False: NaN / inf kept.
        """
        def num(x):
            x = float(x)
            return None if json_safe and not np.isfinite(x) else x

        d = {p: num(v) for p, v in zip(self.parameters, self.values)}
        d.update({p + "_err": num(e) for p, e in zip(self.parameters, self.errors)})
        d.update(
            chi2=num(self.chi2),
            dof=int(self.dof),
            mode=self.mode,
            method=self.method,
            seconds=num(self.seconds),
            at_bound=list(self.at_bound),
            unconstrained=list(self.meta.get("unconstrained", [])),
            held=list(self.meta.get("held", [])),
        )
        # what the fit was made with and how it ended, where the fit recorded it
        # the prior too: a fit with --prior parsec and one without wrote JSON files that said nothing of it;
        # an SSP fit's solar Z too, which its [M/H] is relative to (Padova's 0.019 or PARSEC's 0.0152)
        for key in ("generator", "library", "inside_coverage", "n_clipped", "template_medium", "zsun",
                    "redshift", "age_of_universe", "prior", "chi2_scale", "shift", "fixed"):
            if key in self.meta:
                d[key] = self.meta[key]
        # the units beside the numbers: the JSON gave teff 5730, rv -57 and seconds 8.9 without saying in what
        units = {p: PARAMETER_UNITS.get(p, "") for p in self.parameters}
        units.update({p + "_err": u for p, u in units.items()}, seconds="s")
        if "age_of_universe" in d:
            units["age_of_universe"] = "Gyr"
        d["units"] = units
        return d

    def as_table(self):
        """An astropy QTable with one row per parameter: value and 1-sigma error, with units."""
        import astropy.units as u
        from astropy.table import QTable

        return QTable(
            {
                "parameter": list(self.parameters),
                "value": [float(v) for v in self.values],
                "error": [float(e) for e in self.errors],
                "unit": [str(u.Unit(PARAMETER_UNITS.get(p, ""))) for p in self.parameters],
            }
        )

    def __repr__(self):
        vals = ", ".join(
            f"{p}={v:.4g}+-{e:.2g}" for p, v, e in zip(self.parameters, self.values, self.errors)
        )
        return f"{type(self).__name__}({vals}, chi2={self.chi2:.1f}/{self.dof})"


class StarFit(_FitBase):
    """Result of :func:`fit_star`: ``.teff`` [K], ``.logg`` [cgs dex], ``.logz`` ([M/H], dex), ``.rv`` [km/s]
    and ``.teff_err`` etc. (1 sigma), ``.model`` (best model on ``.wave``), ``.chi2``, ``.dof``,
    ``.covariance``."""


class SSPFit(_FitBase):
    """Result of :func:`fit_ssp`: ``.log_age`` (log10 yr), ``.age`` [Gyr], ``.logz`` ([M/H]), ``.sigma``
    [km/s], ``.av`` [mag, Calzetti], ``.rv`` [km/s], errors ``.log_age_err`` etc., ``.model``, ``.chi2``."""

    @property
    def age(self):
        """Age [Gyr]."""
        return 10 ** (self.log_age - 9.0)


def _with_prior_curvature(prob, theta, cov):
    """Covariance of the posterior: inverse of (the likelihood's precision + the Hessian of -ln prior).

    The prior's Hessian is taken by central differences over steps of 2 optimisation units (it is an
    interpolated table: its curvature is meaningful on the scale of its smoothing, not of one cell); negative
    eigenvalues (where the prior curves upwards) are dropped, so the prior never widens the errors.
    """
    npar = len(theta)
    h = 2.0 * prob.scale
    th = torch.as_tensor(theta, dtype=torch.float64)
    pts = [th.clone()]
    for i in range(npar):
        for j in range(npar):
            for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                d = torch.zeros(npar, dtype=torch.float64)
                d[i] += si * h[i]
                d[j] += sj * h[j]
                pts.append(th + d)
    with torch.no_grad():
        # penalty = -2 ln p; the Hessian of -ln p is half its Hessian
        v = 0.5 * prob.penalty(torch.stack(pts)).numpy()
    hess = np.empty((npar, npar))
    k = 1
    for i in range(npar):
        for j in range(npar):
            pp, pm, mp, mm = v[k : k + 4]
            hess[i, j] = (pp - pm - mp + mm) / (4 * h[i] * h[j])
            k += 4
    hess = 0.5 * (hess + hess.T)
    ev, vec = np.linalg.eigh(hess)
    hess = (vec * np.maximum(ev, 0.0)) @ vec.T
    free = np.isfinite(np.diag(cov))
    out = np.full_like(cov, np.nan)
    if free.any():
        sub = cov[np.ix_(free, free)]
        try:
            out[np.ix_(free, free)] = np.linalg.inv(np.linalg.inv(sub) + hess[np.ix_(free, free)])
        except np.linalg.LinAlgError:
            out[np.ix_(free, free)] = sub
    return out


def _with_bounds_prior(prob, cov):
    """Laplace covariance with the flat prior inside the bounds: each fitted parameter's precision gets
    that of a uniform distribution over its box, 12 / (hi - lo)^2, the Gaussian of the same variance.

    A parameter the data barely constrain was otherwise given a Gaussian far wider than its box, and the
    others marginalised over it: ``fit_ssp`` on 4000-6000 A (A_V degenerate with the degree-3 continuum) gave
    A_V 0.47 +- 510 mag inside 0-3 mag and rv +-60 km/s, where emcee (flat priors inside the bounds, as here)
    gives A_V +-0.85 and rv +-26 km/s. A parameter the data constrain well keeps its error (the box adds
    (error / box width)^2 x 6 to its relative precision). NaN rows (no information, held) stay NaN.
    """
    keep = np.isfinite(np.diag(cov)) & prob.free
    if not keep.any():
        return cov
    out = cov.copy()
    box = 12.0 / (prob.hi[keep] - prob.lo[keep]) ** 2
    try:
        out[np.ix_(keep, keep)] = np.linalg.inv(np.linalg.inv(cov[np.ix_(keep, keep)]) + np.diag(box))
    except np.linalg.LinAlgError:
        pass
    return out


def _reduced_chi2(chi2, prob):
    """(chi^2 / degrees of freedom, dof): the pixels less the fitted (not held) parameters and the
    continuum coefficients."""
    op = prob.op
    # clipped pixels do not count; a working pixel binned from data pixels that also feed its neighbours
    # counts as its expected chi^2 (SpectralOperator.counts: 1 for whole data pixels and in broaden mode)
    n_data = int(round(float(op.counts[op.ivar_t.numpy() > 0].sum())))
    dof = n_data - int(prob.free.sum()) - (op.degree + 1)
    return chi2 / max(dof, 1), dof


_AT_BOUND_UNITS = 0.1      # a value this many optimisation units (_Problem.scale) from a bound is on it
# chi^2 / dof below this with a given ivar: the errors are over 10x the residuals' scatter -- an error (sigma)
# passed as ivar, or a text file's columns wave, err, flux -- and the quoted errors that much too large
_TINY_CHI2_RED = 0.01


def _finish(cls, prob, theta, chi2, starts, t0, uncertainty, scale_errors, samples_kw, meta,
            from_scatter=False):
    op = prob.op
    # a held parameter is reported at its value exactly (the optimiser's clamp in units of its scale,
    # (v / scale) * scale, can differ from it in the last bit)
    theta = np.where(prob.free, np.asarray(theta, float), prob.lo)
    cov, model = _laplace(prob, theta)
    chi2_red, dof = _reduced_chi2(chi2, prob)
    samples = None
    if prob.penalty is not None:
        # the objective already divides chi^2 by chi2_scale (the errors' inflation); add the prior's curvature
        cov = _with_prior_curvature(prob, theta, cov * prob.chi2_scale)
    # Without an ivar the weights are uniform at an arbitrary level (check_spectrum): the errors come from
    # the residuals' scatter, scaled by chi^2_red both ways (only inflating them left them ~100x too large)
    rescale = prob.penalty is None and (from_scatter or (scale_errors and chi2_red > 1))
    if uncertainty == "laplace":
        if rescale:
            cov = cov * chi2_red
        cov = _with_bounds_prior(prob, cov)
        err = np.sqrt(np.diag(cov))
    elif uncertainty == "emcee":
        # errors scaled by sqrt(chi2_red): the likelihood tempered by chi2_red, not the samples stretched
        # about their median afterwards, which put them beyond the bounds (A_V's 2.5 % quantile -0.006 mag)
        temperature = chi2_red if rescale else 1.0
        samples = _emcee(prob, theta, cov * temperature, temperature=temperature, **(samples_kw or {}))
        q16, q84 = np.percentile(samples, [16, 84], axis=0)
        err = 0.5 * (q84 - q16)
        cov = np.cov(samples.T)
    else:
        raise ValueError(f"uncertainty must be 'laplace' or 'emcee'; got {uncertainty!r}")
    # a held parameter is known exactly: error 0, no covariance (the Laplace inverse left it NaN)
    held = ~prob.free
    cov[held, :] = 0.0
    cov[:, held] = 0.0
    err = np.where(held, 0.0, err)
    meta = {**meta, "held": [n for n, h in zip(prob.names, held) if h]}
    # within a tenth of an optimisation unit (Teff: 0.1 % of the start's; log g 0.01 dex; rv 1 km/s): the
    # optimiser clamps onto a bound exactly. 1e-3 of the linear width was 178 K of the 2,000-180,000 K Teff
    # box, and a 2,150 +- 0.7 K fit was flagged at the bound (not with BaSeL's box, 48 K)
    at_bound = tuple(
        n
        for n, v, lo, hi, sc, free in zip(prob.names, theta, prob.lo, prob.hi, prob.scale, prob.free)
        if free and min(v - lo, hi - v) < _AT_BOUND_UNITS * sc
    )
    th = torch.as_tensor(theta, dtype=torch.float64)
    with torch.no_grad():
        m = prob.spectrum_fn(th[None])
        _, _, coef = _profile(m, op, prob.rv(th[None]))
        data, ivar = (x[0].numpy().copy() for x in op.data_at(prob.rv(th[None])))   # shift="data": fit's rv
    continuum = op.basis @ coef[0].numpy()
    res = cls(
        prob.names,
        np.asarray(theta, float),
        err,
        cov,
        float(chi2),
        int(dof),
        op.wave.copy(),
        data,
        ivar,
        model,
        continuum,
        op.mode,
        uncertainty,
        time.perf_counter() - t0,
        op.scale,
        samples,
        starts,
        at_bound,
        meta,
    )
    if not from_scatter and chi2_red < _TINY_CHI2_RED:
        # MILES star 207 (S/N 100) with its error passed as ivar: Teff 5264 +- 4500 K, log g 3.4 +- 2.6,
        # chi^2 0.0 for 182, without a word
        warnings.warn(
            f"chi^2 / dof = {chi2_red:.2g}: the residuals are {1 / np.sqrt(max(chi2_red, 1e-300)):.3g}x "
            "smaller than the errors say, and the quoted errors are that much too large; is ivar an error "
            "(sigma), or in another unit than the flux? (a noise-free mock: expected)",
            FitWarning,
            stacklevel=3,
        )
    if at_bound:
        warnings.warn(
            f"the fit ended on the bound of {', '.join(at_bound)}: the value is a limit and its error "
            "is not meaningful",
            FitWarning,
            stacklevel=3,
        )
    # an interior parameter the data do not move (its Fisher information ~0, e.g. a velocity dispersion far
    # below the resolution): its error is NaN; said so, not left as a silent null
    unconstrained = [n for n, e in zip(prob.names, np.atleast_1d(err))
                     if not np.isfinite(e) and n not in at_bound]
    res.meta["unconstrained"] = unconstrained
    if unconstrained:
        warnings.warn(
            f"the data do not constrain {', '.join(unconstrained)} at the best fit (error undefined, NaN): "
            "its value is not a measurement (e.g. a velocity dispersion far below the resolution)",
            FitWarning,
            stacklevel=3,
        )
    return res


def _check_n_starts(n_starts):
    if isinstance(n_starts, (bool, np.bool_)) or not isinstance(n_starts, (int, np.integer)) or n_starts < 1:
        raise ValueError(f"n_starts must be an integer >= 1 (distinct starting points); got {n_starts!r}")
    return int(n_starts)


# The Balmer lines peak near these Teff [K] at log g 0-5 (the shipped default model: mean depth of Hdelta,
# Hgamma and Hbeta on its 20 A pixels, [M/H] -1.5 and 0 within 0.01 dex of Teff of each other). A star on one
# side has a twin of like Balmer strength on the other: a 7,570 K, [M/H] -1.15 mock was fitted at 11,260 K,
# [M/H] 0 (chi^2 203 against 188) when its three distinct starts all lay on the hot side
_BALMER_MAX_LOGG = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)
_BALMER_MAX_TEFF = (7080.0, 7240.0, 7760.0, 8200.0, 8910.0, 9660.0)
# the other side's best start is added when its chi^2 is within this factor of the best start's (a ratio,
# not a difference: at high S/N the start grid's coarseness alone gives every start a large chi^2)
_BALMER_BRANCH_CHI2_RATIO = 2.0


def _hot_of_balmer_maximum(teff, logg):
    """True where (Teff [K], log g) lies on the hot side of the Balmer-line maximum."""
    return np.asarray(teff, float) > np.interp(logg, _BALMER_MAX_LOGG, _BALMER_MAX_TEFF)


def _with_other_balmer_side(pick, chi2, nodes):
    """The start indices ``pick`` (best first) and, when they all lie on one side of the Balmer maximum, the
    best node on the other side if its chi^2 is within _BALMER_BRANCH_CHI2_RATIO of the best start's."""
    hot = _hot_of_balmer_maximum(nodes[:, 0], nodes[:, 1])
    if hot[pick].any() and not hot[pick].all():       # both sides are among the starts already
        return pick
    other = np.flatnonzero(hot != hot[pick[0]])
    if not other.size:
        return pick
    best = other[np.argmin(chi2[other])]
    if not chi2[best] <= _BALMER_BRANCH_CHI2_RATIO * chi2[pick[0]]:
        return pick
    return np.append(pick, best)


def _distinct_best(chi2, coords, n, min_sep):
    """Indices of the n lowest chi2 whose coords differ from every chosen one by > min_sep in some axis."""
    order = np.argsort(chi2)
    chosen = []
    for i in order:
        if all(np.any(np.abs(coords[i] - coords[j]) > min_sep) for j in chosen):
            chosen.append(i)
        if len(chosen) == n:
            break
    return np.array(chosen)


# ----------------------------------------------------------------------------------------- stars
_STAR_START_GRID = None


def _star_start_grid(gen):
    """A coarse grid of (Teff, log g, [M/H]) inside the generator's box and coverage, with its spectra."""
    box = gen.box
    # from the box's bottom (it began at 2,600 K, above the coverage's 2,000 K: a 2,150 K dwarf was fitted at
    # 2,216 K, log g 5.51, chi^2 270x the truth's); the nodes stay anchored at 2,600 K, as before
    anchor = np.log10(2600.0)
    lt = anchor + 0.035 * np.arange(np.ceil((np.log10(box.teff[0]) - anchor) / 0.035 - 1e-9),
                                    np.floor((np.log10(box.teff[1]) - anchor) / 0.035 + 1e-9) + 1)
    lg = np.arange(max(box.logg[0], 0.0), min(box.logg[1], 8.0) + 1e-9, 1.0)
    lz = np.array([v for v in (-2.0, -1.0, -0.5, 0.0, 0.3) if box.logz[0] <= v <= box.logz[1]])
    T, G, Z = (a.ravel() for a in np.meshgrid(10**lt, lg, lz, indexing="ij"))
    # up to the box's hottest stars (the grid stopped at 40 kK: a 100 kK star fitted as 38 kK, unflagged);
    # log g above 5 only there (hot subdwarfs, central stars), so cooler stars keep the same starts
    keep = (T > 40000.0 * (1 + 1e-9)) | (G <= 5.0)
    T, G, Z = T[keep], G[keep], Z[keep]
    ok = np.asarray(gen.in_coverage(T, G, Z), bool)
    T, G, Z = T[ok], G[ok], Z[ok]
    with _quiet_coverage():          # inside coverage by construction: never a warning of its own
        flux, _ = gen.surface_flux(T, G, Z)
    return np.stack([T, G, Z], 1), flux


def _cached_start_grid(gen):
    global _STAR_START_GRID
    # per generator object, not per model directory: generators of one directory differ in what the grid
    # depends on (default library, tail, dtype; a directory can be retrained in place). The grid goes with
    # its generator; a few are kept (e.g. the folds of a cross-validation)
    if _STAR_START_GRID is None:
        _STAR_START_GRID = weakref.WeakKeyDictionary()
    try:
        weakref.ref(gen)
    except TypeError:                 # an object without weak references (__slots__): not cached
        return _star_start_grid(gen)
    if gen not in _STAR_START_GRID:
        if len(_STAR_START_GRID) >= 8:
            _STAR_START_GRID.pop(next(iter(_STAR_START_GRID.keys())), None)
        _STAR_START_GRID[gen] = _star_start_grid(gen)
    return _STAR_START_GRID[gen]


# steps of the coverage scans along one parameter (_back_into_coverage): log10 Teff [dex], log g, [M/H]
_COVERAGE_SCAN_STEP = (0.002, 0.01, 0.01)


def _back_into_coverage(gen, library, theta, lo, hi, scale):
    """Where a fit outside the generator's coverage ended on its hold (the generator holds its inputs at the
    edge of its training nodes: spectra identical, gradient zero beyond): per axis (Teff, log g, [M/H]), the
    nearest value along that axis, the others fixed, that lies inside coverage. Returns (axis, value) of the
    smallest move in optimisation units, or None if no axis reaches coverage within the bounds."""
    best = None
    for axis, step in enumerate(_COVERAGE_SCAN_STEP):
        if axis == 0:
            line = 10 ** np.arange(np.log10(lo[0]), np.log10(hi[0]) + step, step)
        else:
            line = np.arange(lo[axis], hi[axis] + step, step)
        line = np.clip(line, lo[axis], hi[axis])
        pts = np.repeat(np.asarray(theta[:3], float)[None], line.size, 0)
        pts[:, axis] = line
        ok = np.asarray(gen.in_coverage(pts[:, 0], pts[:, 1], pts[:, 2], library=library), bool)
        if not ok.any():
            continue
        near = line[ok][np.argmin(np.abs(line[ok] - theta[axis]))]
        move = abs(near - theta[axis]) / scale[axis]
        if best is None or move < best[2]:
            best = (axis, float(near), move)
    return None if best is None else best[:2]


def _star_model_fn(gen, op, library, correction=None, dtype=torch.float32):
    src = torch.as_tensor(op.src)
    corr = None if correction is None else torch.as_tensor(np.asarray(correction, float)[op.src])

    def spectrum(theta):
        teff, logg, logz, rv = theta[:, 0], theta[:, 1], theta[:, 2], theta[:, 3]
        flux = gen.torch_surface_flux(teff.to(dtype), logg.to(dtype), logz.to(dtype), library=library)
        flux = flux.to(torch.float64, copy=False).cpu()[:, src]
        if corr is not None:
            flux = flux * corr
        return op.apply(flux / flux.mean(dim=1, keepdim=True), rv)

    return spectrum


_PRIORS = {}


def _resolve_prior(prior):
    """A prior object with ``log_prob`` from fit_star's ``prior=`` (named isochrone priors are cached)."""
    if isinstance(prior, str):
        if prior not in ("parsec", "padova"):
            raise ValueError(
                f"prior must be None, 'parsec', 'padova' or an object with log_prob; got {prior!r}"
            )
        if prior not in _PRIORS:
            from .stellar_prior import IsochronePrior

            _PRIORS[prior] = IsochronePrior(prior)
        return _PRIORS[prior]
    if not callable(getattr(prior, "log_prob", None)):
        raise ValueError(
            f"prior must be None, 'parsec', 'padova' or an object with log_prob(teff, logg, logz); "
            f"got {type(prior).__name__}"
        )
    return prior


def _check_generator(generator):
    """A generator object, or one loaded once by name (``"default"``, ``"semi-empirical"``, a model path)."""
    from .ssp import resolve_generator

    gen = resolve_generator(str(generator) if isinstance(generator, os.PathLike) else generator)
    if not hasattr(gen, "torch_surface_flux"):
        raise ValueError(
            f"generator {getattr(gen, 'name', gen)!r} has no differentiable path (torch_surface_flux; "
            "the blackbody has none): fit with 'default', 'semi-empirical', a model directory trained by "
            "smnet-sps or a released SM-Net checkpoint (smnet_sps.neural.load_generator)"
        )
    return gen


def fit_star(
    wave,
    flux,
    ivar=None,
    *,
    resolution_fwhm=None,
    mask=None,
    generator=None,
    library=None,
    degree=3,
    rv_guess=0.0,
    max_rv=1000.0,
    bounds=None,
    n_starts=3,
    uncertainty="laplace",
    scale_errors=True,
    emcee_kwargs=None,
    model_correction=None,
    prior=None,
    clip=None,
    shift="model",
    fixed=None,
):
    """Fit Teff, log g, [M/H] and radial velocity to an observed spectrum with the generator.

    Parameters
    ----------
    wave : array or Quantity (n,), vacuum wavelengths [A], strictly increasing
    flux : array (n,), F_lambda in any units (the continuum polynomial absorbs scale and shape), or a
        Quantity: a spectral flux density (f_nu such as Jy is converted to F_lambda per pixel;
        :func:`check_spectrum`)
    ivar : array (n,) or None, inverse variance of ``flux`` (None: uniform; errors then come from the scatter
        of the residuals through the chi^2_red scaling); with a flux Quantity, plain numbers in its unit^-2
        or a Quantity, converted alike
    resolution_fwhm : float or array (n,) [A], the data's line-spread FWHM; None = the data's resolution
        beyond the model's, both 2 pixel widths, in quadrature (none for pixels no wider than the model's).
        Not the same fit as giving 2 data pixels explicitly, which subtracts only the model's one-pixel box:
        for coarse data the default broadens less (sigma 12 % less at pixels 2x the model's); give the
        data's true LSF for real spectra
    mask : bool array (n,), True = bad pixel (excluded)
    generator : a :class:`smnet_sps.neural.NeuralGenerator`, or a shipped model name or model directory (e.g.
        ``"semi-empirical"``, loaded once); default: the shipped default model
    library : training library to imitate, or None (the default mixture)
    degree : int, degree of the multiplicative Legendre continuum (default 3)
    rv_guess, max_rv : [km/s], a velocity to try first and the largest |v| (0 < max_rv < c); the start
        velocity is scanned over +-max_rv (or the rv bounds) anyway
    bounds : dict name -> (lo, hi) for any of ``teff`` [K], ``logg``, ``logz``, ``rv`` within the generator's
        training box and +-max_rv (default: that box, or with ``library=`` the imitated library's box)
    fixed : dict name -> value, parameters held at a known value (e.g. ``{"logz": -0.3}`` from a
        spectroscopic [M/H], ``{"logg": 2.45}`` from asteroseismology), in the units of ``bounds`` and within
        the same limits; a name may not be in both. A fixed parameter is not fitted: error 0, out of the
        covariance and the degrees of freedom, no emcee walkers, its value reported exactly; the others'
        errors are conditional on it. A fixed ``rv`` takes no ``rv_guess`` (there is no velocity to search).
        Recorded in ``meta["fixed"]`` (and ``meta["held"]``)
    n_starts : int, number of distinct grid starts optimised together; when they all lie on one side of the
        Balmer maximum (~7,000-9,700 K, rising with log g), the best node on the other side is added if its
        chi^2 is within 2x the best start's (docs/fit.md)
    uncertainty : ``"laplace"`` (default) or ``"emcee"``
    scale_errors : bool, multiply the covariance by chi^2_red when it exceeds 1 (default True); without
        ``ivar`` the covariance is always multiplied by chi^2_red (the errors come from the residuals'
        scatter)
    model_correction : array (n_model_wave,) or None, multiplies the generator's spectrum on its own pixels
        (rest frame) before the comparison, e.g. an empirical calibration (:func:`empirical_correction`)
    prior : None (default: flat inside the bounds), ``"parsec"`` / ``"padova"`` (an
        :class:`smnet_sps.stellar_prior.IsochronePrior` of that family with its default settings: where
        stars are in the Kiel diagram), or any object with a torch-differentiable
        ``log_prob(teff, logg, logz)``. With a prior the fit runs twice: flat first, then the posterior
        -2 ln p = chi^2 / s - 2 ln prior from the flat optimum and the starts, where s = max(1, chi^2_red of
        the flat fit) when ``scale_errors`` (the data's errors inflated to the model's misfit, as for the
        error bars; otherwise s = 1). The errors are then those of the posterior (the prior's curvature
        added). See docs/fit.md for what it does on MILES stars.
    clip : float or None, sigma-clipping of outliers (cosmic rays, bad sky lines): after the fit, working
        pixels whose residual exceeds ``clip`` times their error (inflated by sqrt(chi^2_red) when above 1;
        without ``ivar`` scaled by it both ways, as the errors are) are dropped and the fit is repeated
        from its result, up to 3 times; ``meta["n_clipped"]`` counts them.
        None (default): no clipping (one 100x pixel can then decide the fit)
    shift : ``"model"`` (default) or ``"data"``: which side the velocity moves. ``"model"`` shifts the
        model's 20-A step spectrum to the observed frame, so a working pixel across two model pixels gets a
        mix of two pixel averages and real stars' Teff / log g depend on their velocity (MILES star 85:
        8,250 K at rest, 9,002 K at +150 km/s). ``"data"`` re-bins the data at each trial velocity onto the
        model's rest-frame pixels (data pixels at most a tenth of the model's, e.g. MILES's 0.9 A; else a
        ValueError): the fit then does not depend on the star's velocity, but rv scatters 1.5-3x more on
        mocks (docs/fit.md). ``StarFit.wave`` is then the rest-frame pixel centres, ``flux`` / ``ivar`` the
        data re-binned at the fitted rv

    Returns
    -------
    StarFit

    Raises
    ------
    ValueError for bad input (NaN flux at unmasked pixels, mismatched shapes, wavelengths outside the model's
    range, too few pixels, unknown bounds), or a generator without a differentiable path.
    """
    t0 = time.perf_counter()
    gen = _check_generator(generator)
    _check_n_starts(n_starts)
    max_rv = _check_max_rv(max_rv)      # as fit_ssp
    rv_guess = _check_number(rv_guess, "rv_guess", "a velocity [km/s]")
    _check_degree(degree)
    _check_uncertainty(uncertainty, emcee_kwargs)
    log_prior = None if prior is None else _resolve_prior(prior)     # before the fit, not after it
    from_scatter = ivar is None         # uniform weights: the errors can only come from the residuals
    resolution_fwhm = _fwhm_in_wavelength_order(wave, resolution_fwhm)
    wave, flux, ivar, good = check_spectrum(wave, flux, ivar, mask)
    op = SpectralOperator(
        gen.wavelength, wave, flux, ivar, good, resolution_fwhm, max_rv=max_rv, degree=degree, shift=shift
    )
    box = gen.box
    limit = {"teff": tuple(box.teff), "logg": tuple(box.logg), "logz": tuple(box.logz),
             "rv": (-max_rv, max_rv)}
    # a library imitation is searched inside that library's box unless bounds say otherwise (a 40 kK star
    # fitted with NextGen ran to 180 kK, outside every NextGen model)
    imitated = gen._check_library(library) if hasattr(gen, "_check_library") else library
    own = getattr(gen, "library_boxes", {}).get(imitated) if imitated is not None else None
    lim = dict(limit) if own is None else {"teff": tuple(own.teff), "logg": tuple(own.logg),
                                           "logz": tuple(own.logz), "rv": limit["rv"]}
    _check_bounds(bounds, lim, limit, STAR_PARAMETERS, "fit_star")
    if not abs(rv_guess) < max_rv:
        raise ValueError(f"rv_guess must lie within +-max_rv = {max_rv} km/s; got {rv_guess}")
    fixed = _check_fixed(fixed, bounds, lim, limit, STAR_PARAMETERS, "fit_star")
    rv_guess = _check_rv_fixed(fixed, rv_guess)
    # checked before the fit, not after it
    numeric = isinstance(clip, (int, float, np.number)) and not isinstance(clip, bool)
    if clip is not None and not (numeric and np.isfinite(clip) and clip > 0):
        raise ValueError(f"clip must be a positive number of sigmas; got {clip!r}")
    # optimisation units: log-ish steps (Teff through its relative scale 1 %)
    lo = np.array([lim["teff"][0], lim["logg"][0], lim["logz"][0], lim["rv"][0]])
    hi = np.array([lim["teff"][1], lim["logg"][1], lim["logz"][1], lim["rv"][1]])
    if model_correction is not None:
        model_correction = np.asarray(model_correction, float)
        if (
            model_correction.shape != gen.wavelength.shape
            or not np.all(np.isfinite(model_correction))
            or np.any(model_correction <= 0)
        ):
            raise ValueError(
                f"model_correction must be a positive, finite array of the model's "
                f"{gen.wavelength.size} pixels"
            )
    spectrum = _star_model_fn(gen, op, library, model_correction)
    # scale: Teff enters as 1 % steps around the start, others absolute
    nodes, grid_flux = _cached_start_grid(gen)
    held = [i for i, k in enumerate(STAR_PARAMETERS[:3]) if k in fixed]
    if held:
        # the nodes moved onto the fixed values and ranked by their spectra there, not by the nodes' own
        # (a star the fit cannot reach)
        nodes = nodes.copy()
        nodes[:, held] = lo[held]
        nodes = np.unique(nodes, axis=0)
        ok = np.asarray(gen.in_coverage(*nodes.T), bool)
        if ok.sum() >= _check_n_starts(n_starts):
            nodes = nodes[ok]
        with _quiet_coverage():
            grid_flux, _ = gen.surface_flux(*nodes.T)
    inb = np.all((nodes >= lo[:3]) & (nodes <= hi[:3]), 1)
    if inb.sum() >= _check_n_starts(n_starts):
        nodes_in, flux_in = nodes[inb], grid_flux[inb]
    elif len(nodes):
        # bounds narrower than the start grid (log g 4.2-4.6 holds no node): every node is moved onto the
        # bounds and ranked by its own spectrum; the box centre (91 kK in linear Teff) was a start far away
        nodes_in, flux_in = np.clip(nodes, lo[:3], hi[:3]), grid_flux
    else:
        nodes_in, flux_in = np.array([0.5 * (lo[:3] + hi[:3])]), None

    def pick_starts():
        """The distinct best grid nodes and their velocities, ranked on the working pixels as they are."""
        if flux_in is None:
            return np.column_stack([nodes_in, np.full(len(nodes_in), float(rv_guess))])
        with torch.no_grad():
            f = torch.as_tensor(flux_in[:, op.src], dtype=torch.float64)
            if model_correction is not None:
                f = f * torch.as_tensor(model_correction[op.src])
            f = f / f.mean(1, keepdim=True)
            # the velocity: the 24 best nodes at rv_guess scanned on a coarse grid (20 steps over the rv
            # bounds), every node ranked at rv_guess and at the best velocity found; the starts then on a fine
            # grid (_scan_rv's 100 km/s)
            chi2 = _scan_rv(op, f, (rv_guess, rv_guess), rv_guess)[1]
            top = np.argsort(chi2)[:24]
            span = lim["rv"][1] - lim["rv"][0]
            rv_top, chi2_top = _scan_rv(op, f[top], lim["rv"], rv_guess, step=max(200.0, span / 20))
            rv_best = float(rv_top[np.argmin(chi2_top)])
            if rv_best != float(rv_guess):
                chi2 = np.minimum(chi2, _scan_rv(op, f, (rv_best, rv_best), rv_best)[1])
        coords = np.stack([np.log10(nodes_in[:, 0]) / 0.035, nodes_in[:, 1], nodes_in[:, 2] / 0.5], 1)
        pick = _with_other_balmer_side(_distinct_best(chi2, coords, _check_n_starts(n_starts), 1.01), chi2,
                                       nodes_in)
        return np.column_stack([nodes_in[pick], _scan_rv(op, f[pick], lim["rv"], rv_guess)[0]])

    starts = pick_starts()
    teff_scale = float(np.median(starts[:, 0])) * 0.01
    prob = _Problem(op, STAR_PARAMETERS, lo, hi, np.array([teff_scale, 0.1, 0.05, 10.0]), spectrum)
    theta, chi2, _, _ = _optimise(prob, starts)
    n_clipped = 0
    if clip is not None:
        for _ in range(3):
            with torch.no_grad():
                th = torch.as_tensor(theta, dtype=torch.float64)[None]
                model = _profile(prob.spectrum_fn(th), op, prob.rv(th))[1][0]
                data, ivar_now = (x[0] for x in op.data_at(prob.rv(th)))     # shift="data": at the fit's rv
                z = (data - model) * torch.sqrt(ivar_now)
            # the errors' own scaling: without an ivar the stand-in error (1 % of the median flux) is set by
            # the scatter both ways (only inflated, a 20-sigma spike at S/N 500 was never clipped)
            red = _reduced_chi2(chi2, prob)[0]
            inflate = red if from_scatter else max(1.0, red)
            out = (z.abs() > clip * np.sqrt(inflate)) & (op.ivar_t > 0)
            if not bool(out.any()):
                break
            op.ivar_t = torch.where(out, torch.zeros_like(op.ivar_t), op.ivar_t)     # dropped from chi^2
            op.ivar = op.ivar_t.numpy().copy()
            n_clipped += int(out.sum())
            # the starts re-picked without the outliers: those ranked with a 100x pixel in the data led
            # the refit astray (3,211 K for a 5,200 K star on the model's own pixels)
            starts = pick_starts()
            theta, chi2, _, _ = _optimise(prob, np.vstack([theta[None], starts]))
    inside = bool(np.asarray(gen.in_coverage(*theta[:3], library=library)).ravel()[0])
    back = None if inside else _back_into_coverage(gen, library, theta, lo, hi, prob.scale)
    if back is not None:
        # outside coverage the generator holds its inputs (spectra identical, zero gradient): the optimiser
        # can drift onto that plateau and never come back (3,920 K, log g 4.08, [M/H] -1.36 ended at log g
        # 5.17, chi^2 340 against 221 at the truth). Refit with that axis bounded at the coverage's edge,
        # from there and from the starts, and keep the better chi^2 (a real star beyond coverage stays)
        axis, edge = back
        lo2, hi2 = lo.copy(), hi.copy()
        if theta[axis] > edge:
            hi2[axis] = edge
        else:
            lo2[axis] = edge
        prob2 = _Problem(op, STAR_PARAMETERS, lo2, hi2, prob.scale, spectrum)
        moved = theta.copy()
        moved[axis] = edge
        theta2, chi2_2, _, _ = _optimise(prob2, np.clip(np.vstack([moved[None], starts]), lo2, hi2))
        if chi2_2 < chi2:
            prob, theta, chi2, lo, hi = prob2, theta2, chi2_2, lo2, hi2
    prior_meta = {"n_clipped": n_clipped} if clip is not None else {}
    if prior is not None:
        red = _reduced_chi2(chi2, prob)[0]
        # the data's errors inflated to the model's misfit; without an ivar, set by it (the uniform weights'
        # level is arbitrary: when it was S/N 1 per pixel the prior alone decided)
        s = red if from_scatter else max(1.0, red) if scale_errors else 1.0

        def penalty(th):
            return -2.0 * log_prior.log_prob(th[:, 0], th[:, 1], th[:, 2])

        prob = _Problem(op, STAR_PARAMETERS, lo, hi, prob.scale, spectrum, penalty=penalty, chi2_scale=s)
        starts = np.vstack([theta[None], starts])
        theta, _, _, _ = _optimise(prob, starts)
        with torch.no_grad():
            chi2 = float(prob.chi2(torch.as_tensor(theta, dtype=torch.float64)[None])[0])
        prior_meta.update({"prior": repr(log_prior), "chi2_scale": s})
    res = _finish(
        StarFit,
        prob,
        theta,
        chi2,
        starts,
        t0,
        uncertainty,
        scale_errors,
        emcee_kwargs,
        {
            "generator": getattr(gen, "name", ""),
            "library": library,
            "degree": op.degree,
            "data_fwhm": op.data_fwhm,
            "model_fwhm": op.model_fwhm,
            "shift": op.shift,
            "fixed": fixed,
            **prior_meta,
        },
        from_scatter=from_scatter,
    )
    res.meta["inside_coverage"] = bool(np.asarray(
        gen.in_coverage(theta[0], theta[1], theta[2], library=library)).ravel()[0])
    if not res.meta["inside_coverage"]:
        warnings.warn(
            f"best fit Teff={theta[0]:.0f} K, log g={theta[1]:.2f}, [M/H]={theta[2]:.2f} lies outside "
            "the generator's coverage",
            FitWarning,
            stacklevel=2,
        )
    return res


# ------------------------------------------------------------------------------------- populations
def _ssp_model_fn(interp, op):
    from .ssp_torch import calzetti_attenuation

    src = torch.as_tensor(op.src)
    wave_src = interp.wavelength[op.src]

    def spectrum(theta):
        log_age, logz, sigma, av, rv = (theta[:, i] for i in range(5))
        # the fit works on the host (as fit_star's model): an interpolator on a GPU gives its spectra there,
        # which met the host's dust curve ('Expected all tensors to be on the same device')
        f = interp(log_age, logz)[:, src].cpu()
        f = f * calzetti_attenuation(wave_src, av)
        return op.apply(f / f.mean(dim=1, keepdim=True), rv, sigma)

    return spectrum


def fit_ssp(
    wave,
    flux,
    ivar=None,
    *,
    templates=None,
    resolution_fwhm=None,
    mask=None,
    degree=3,
    rv_guess=0.0,
    max_rv=1000.0,
    max_sigma=1000.0,
    max_av=3.0,
    bounds=None,
    n_starts=3,
    uncertainty="laplace",
    scale_errors=True,
    emcee_kwargs=None,
    shift="model",
    redshift=0.0,
    cosmology=None,
    fixed=None,
):
    """Fit one stellar population: age, [M/H], velocity dispersion, Calzetti dust A_V and velocity.

    Parameters
    ----------
    wave, flux, ivar, resolution_fwhm, mask, degree, rv_guess, max_rv, n_starts, uncertainty, scale_errors,
        shift : as :func:`fit_star`
    templates : :class:`smnet_sps.ssp.SSPGrid` (from :func:`smnet_sps.ssp.ssp_grid`), the path of a file
        :func:`smnet_sps.ssp.save_ssp_grid` wrote, or an :class:`smnet_sps.ssp_torch.SSPInterpolator`;
        required (computing a grid takes ~1 min). A grid of one metallicity (from an isochrone file of one Z)
        or one age holds that parameter at its value (error 0, ``meta["held"]``); ``fixed`` may give that
        value (within :data:`SINGLE_VALUE_DEX`) and ``bounds`` may include it; another value, or bounds that
        leave it out, are a ``ValueError``
    max_sigma : float [km/s], largest velocity dispersion; max_av : largest A_V [mag] (both > 0)
    bounds : dict name -> (lo, hi) for ``log_age`` (log10 yr), ``logz``, ``sigma``, ``av``, ``rv``
    fixed : dict name -> value, parameters held at a known value (e.g. ``{"av": 0.0}``, ``{"sigma": 150.0}``
        from another measurement), within the templates' grid, ``max_sigma``, ``max_av``, ``max_rv``: as
        :func:`fit_star`'s
    redshift : float >= 0, the spectrum's known redshift z (default 0): the fit works in that frame --
        wavelengths and ``resolution_fwhm`` divided by 1 + z -- and ``rv`` (with ``rv_guess``, ``max_rv``
        and its bounds) is the velocity relative to it, 1 + z_total = (1 + z)(1 + rv / c). A galaxy at z 0.5
        fitted through ``rv_guess`` = ``max_rv`` - 1000 = c z took 15 min for 800 pixels (the velocity scan
        and every model pixel's kernel spanning +-c z): with ``redshift`` it takes as long as at rest (1-6 s)
    cosmology : of the age check below, as in :func:`smnet_sps.photometry.magnitudes`: None (Planck18), a
        realization's name, or an ``astropy.cosmology.Cosmology``

    Returns
    -------
    SSPFit (``.log_age``, ``.age`` [Gyr], ``.logz``, ``.sigma``, ``.av``, ``.rv`` and their ``_err``;
    ``meta["template_medium"]``: the medium the templates stated -- air templates (``to_medium(grid,
    "air")``) are converted to vacuum before the fit, as the data's wavelengths are vacuum;
    ``meta["redshift"]``; ``.wave`` is in the observed frame; ``meta["age_of_universe"]`` [Gyr] at the total
    redshift (1 + z)(1 + rv / c) - 1, with a ``FitWarning`` when the fitted age exceeds it)

    Notes
    -----
    The spectrum is the templates' interpolation in (log age, [M/H])
    (:class:`smnet_sps.ssp_torch.SSPInterpolator`: geometric in age, linear in [M/H], as
    :func:`smnet_sps.ssp.ssp_spectrum`), attenuated by Calzetti
    et al. (2000) (A_V, R_V = 4.05) in the rest frame, shifted by rv and broadened by ``sigma`` on top of the
    resolution matching. With the generator's ~40 A effective resolution a dispersion below ~1000 km/s is
    barely resolved, and A_V is partly degenerate with the continuum polynomial: their errors say so.
    """
    from .ssp_torch import SSPInterpolator

    t0 = time.perf_counter()
    if templates is None:
        raise ValueError("fit_ssp needs templates=: an SSPGrid from smnet_sps.ssp.ssp_grid(ages, Zs)")
    for name, value in (("max_sigma", max_sigma), ("max_av", max_av)):
        if not (_check_number(value, name, "a positive limit") > 0):
            raise ValueError(f"{name} must be a positive, finite limit; got {value!r}")
    max_sigma, max_av = float(max_sigma), float(max_av)
    max_rv = _check_max_rv(max_rv)      # as fit_star
    rv_guess = _check_number(rv_guess, "rv_guess", "a velocity [km/s]")
    _check_degree(degree)
    _check_n_starts(n_starts)
    _check_uncertainty(uncertainty, emcee_kwargs)
    if not abs(rv_guess) < max_rv:            # as fit_star: a start outside the bounds was clipped silently
        raise ValueError(f"rv_guess must lie within +-max_rv = {max_rv} km/s; got {rv_guess}")
    if isinstance(templates, (str, os.PathLike)):         # a file from smnet-sps ssp-grid / save_ssp_grid
        from .ssp import load_ssp_grid
        templates = load_ssp_grid(templates)
    interp = templates if isinstance(templates, SSPInterpolator) else SSPInterpolator(templates)
    from_scatter = ivar is None         # uniform weights: the errors can only come from the residuals
    from .igm import check_redshift
    from .photometry import as_cosmology
    redshift = check_redshift(redshift)
    cosmology = as_cosmology(cosmology)
    resolution_fwhm = _fwhm_in_wavelength_order(wave, resolution_fwhm)
    wave, flux, ivar, good = check_spectrum(wave, flux, ivar, mask)
    # the known redshift is taken out first (after check_spectrum: a flux in f_nu is converted at the observed
    # wavelengths); the flux's (1 + z) dimming is a constant, absorbed by the continuum
    wave = wave / (1.0 + redshift)
    if resolution_fwhm is not None and redshift > 0:
        import astropy.units as u
        resolution_fwhm = _as_values(resolution_fwhm, "resolution_fwhm", u.AA) / (1.0 + redshift)
    op = SpectralOperator(
        interp.wavelength,
        wave,
        flux,
        ivar,
        good,
        resolution_fwhm,
        max_rv=max_rv,
        max_sigma=max_sigma,
        degree=degree,
        shift=shift,
    )
    (a0, a1), (z0, z1) = interp.bounds
    lim = {
        "log_age": (a0, a1),
        "logz": (z0, z1),
        "sigma": (0.0, float(max_sigma)),
        "av": (0.0, float(max_av)),
        "rv": (-float(max_rv), float(max_rv)),
    }
    limit = dict(lim)
    # a grid of one [M/H] (an isochrone file of one Z) or one age: that parameter is held at the grid's value
    single = {k: f"the SSP grid holds one {what}"
              for k, what, nodes in (("log_age", "age (log10 yr)", interp.log_age),
                                     ("logz", "[M/H]", interp.logz)) if nodes.size == 1}
    _check_bounds(bounds, lim, limit, SSP_PARAMETERS, "fit_ssp", single)
    fixed = _check_fixed(fixed, bounds, lim, limit, SSP_PARAMETERS, "fit_ssp", single)
    rv_guess = _check_rv_fixed(fixed, rv_guess)
    lo = np.array([lim[k][0] for k in SSP_PARAMETERS])
    hi = np.array([lim[k][1] for k in SSP_PARAMETERS])
    spectrum = _ssp_model_fn(interp, op)
    # starts: every grid node x A_V in {0, 0.5, 1, 2} x sigma in {100, 300, 1000, 3000} km/s (within bounds).
    # A single sigma start (100) ranked the nodes on narrow templates, and a 2000 km/s galaxy then settled on
    # the wrong age and [M/H] (chi^2 160 against 140 at the truth); without A_V 2 a mock at A_V 2.08 ended in
    # the age-[M/H]-dust valley at A_V 1.32, [M/H] +0.19 for -0.28 (chi^2 194.8 against 168.3 at the truth)
    sigmas = np.unique(np.clip([100.0, 300.0, 1000.0, 3000.0], lo[2], hi[2]))
    avs = np.unique(np.clip([0.0, 0.5, 1.0, 2.0], lo[3], hi[3]))
    A, Z, D, S = np.meshgrid(interp.log_age, interp.logz, avs, sigmas, indexing="ij")
    nodes = np.stack([A.ravel(), Z.ravel(), S.ravel(), D.ravel(), np.full(A.size, float(rv_guess))], 1)
    nodes = np.clip(nodes, lo, hi)

    def chi2_of(theta):
        with torch.no_grad():
            rv = SSP_PARAMETERS.index("rv")
            blocks = (torch.as_tensor(theta[s:s + 256]) for s in range(0, len(theta), 256))
            return np.concatenate([_profile(spectrum(t), op, t[:, rv])[0].numpy() for t in blocks])

    def scan_rv(theta, step):
        """Each start's best velocity on a grid over the rv bounds (``step`` apart, with rv_guess), and its
        chi^2 there (as fit_star's _scan_rv: the optimiser moves rv by a few hundred km/s only, so a galaxy
        at -800 km/s started at rest ended with sigma and A_V on their bounds, chi^2 3.5x the truth's)."""
        grid = _rv_grid(lim["rv"], np.clip(float(rv_guess), *lim["rv"]), step)
        trial = np.repeat(theta[None], grid.size, 0)
        trial[:, :, 4] = grid[:, None]
        c = chi2_of(trial.reshape(-1, theta.shape[1])).reshape(grid.size, len(theta))
        return grid[np.argmin(c, 0)], c.min(0)

    chi2 = chi2_of(nodes)
    # the velocity: the best nodes at rv_guess (the 8 best of each A_V start, up to 32, so that a galaxy far
    # from rv_guess, whose best nodes at rv_guess all took A_V = 1 to mimic the shifted continuum, still has
    # its own templates scanned: at 15,000 km/s, degree 0, the fit ended at -12,260 km/s, chi^2 50,000/161)
    # scanned coarsely over the bounds, every node ranked at rv_guess and at the best velocity found; the
    # starts then on a 100 km/s grid
    order = np.argsort(chi2)
    top = np.concatenate([order[nodes[order, 3] == av][:8] for av in np.unique(nodes[:, 3])])
    # the coarse step at most half a template pixel in velocity over the data: coarser, the trials missed the
    # spectrum's lines (bounds +-20,000 km/s: 2,000 km/s steps against ~1,100 km/s pixels at 5,500 A; a galaxy
    # at 15,000 km/s, sigma 300, ended at sigma 0 with chi^2 237 against 141)
    tw = interp.wavelength
    rest = (tw >= wave.min() / (1 + lim["rv"][1] / C_KMS)) & (tw <= wave.max() / (1 + lim["rv"][0] / C_KMS))
    half_pixel = 0.5 * C_KMS * float(np.median(np.diff(np.log(tw[rest])))) if rest.sum() > 2 else np.inf
    rv_top, chi2_top = scan_rv(nodes[top], min(max(200.0, (lim["rv"][1] - lim["rv"][0]) / 20),
                                               max(half_pixel, 100.0)))
    rv_best = float(rv_top[np.argmin(chi2_top)])
    if rv_best != float(rv_guess):
        moved = nodes.copy()
        moved[:, 4] = rv_best
        chi2_moved = chi2_of(moved)
        better = chi2_moved < chi2
        nodes[better], chi2[better] = moved[better], chi2_moved[better]
    # the starts' spacing in units of the grid's steps (any step on an axis of one node: all starts share it)
    da, dz = (float(np.median(np.diff(x))) if x.size > 1 else 1.0 for x in (interp.log_age, interp.logz))
    coords = np.stack([nodes[:, 0] / da, nodes[:, 1] / dz, nodes[:, 3] / 0.5,
                       np.log10(np.maximum(nodes[:, 2], 1.0)) / 0.45], 1)
    starts = nodes[_distinct_best(chi2, coords, _check_n_starts(n_starts), 1.01)]
    starts[:, 4] = scan_rv(starts, 100.0)[0]
    prob = _Problem(op, SSP_PARAMETERS, lo, hi, np.array([0.02, 0.05, 20.0, 0.05, 10.0]), spectrum)
    theta, chi2b, _, _ = _optimise(prob, starts)
    res = _finish(
        SSPFit,
        prob,
        theta,
        chi2b,
        starts,
        t0,
        uncertainty,
        scale_errors,
        emcee_kwargs,
        {"degree": op.degree, "data_fwhm": op.data_fwhm * (1.0 + redshift), "model_fwhm": op.model_fwhm,
         "shift": op.shift, "zsun": interp.zsun, "template_medium": interp.source_medium,
         "redshift": redshift, "fixed": fixed},
        from_scatter=from_scatter,
    )
    res.wave = res.wave * (1.0 + redshift)          # the working pixels in the observed frame, as documented
    _check_age_of_universe(res, redshift, cosmology)
    return res


def _check_age_of_universe(res, redshift, cosmology):
    """Record the age of the universe [Gyr] at the fit's total redshift, (1 + z)(1 + rv / c) - 1 (0 for a
    blueshift), in ``res.meta["age_of_universe"]``, and warn when the fitted age exceeds it: the PARSEC
    templates reach 12.6 Gyr and a galaxy at z 0.4 (9.4 Gyr, Planck18) was given 12 Gyr without a word."""
    z_total = max((1.0 + redshift) * (1.0 + res.rv / C_KMS) - 1.0, 0.0)
    limit = float(cosmology.age(z_total).to_value("Gyr"))
    res.meta["age_of_universe"] = limit
    if res.age > limit:
        warnings.warn(
            f"the fitted age, {res.age:.3g} Gyr (log age {res.log_age:.3f} +- {res.log_age_err:.2g}), "
            f"exceeds the age of the universe at z = {z_total:.4g}, {limit:.3g} Gyr ({cosmology.name}); "
            f"bound it with bounds={{'log_age': (lo, {np.log10(limit * 1e9):.3f})}} if the templates should "
            "not be older",
            FitWarning,
            stacklevel=3,
        )


# ----------------------------------------------------------------------------- mocks and calibration
def mock_star(
    wave, teff, logg, logz, rv=0.0, *, snr=50.0, continuum=None, generator=None, library=None, seed=None
):
    """A noisy mock of the generator's star on the model's own pixels inside ``wave``'s range.

    Made with the same forward model the fit uses (shift by ``rv`` [km/s, finite, |rv| < c] on the model's
    pixels), times a multiplicative Legendre ``continuum`` (coefficients; default 1), plus Gaussian noise of
    sigma = flux / ``snr`` per pixel (finite, > 0). ``wave`` [A or a length Quantity] gives the range, which
    must hold at least 20 of the model's pixels (the fewest a fit takes); ``teff`` [K or a temperature
    Quantity], ``logg`` and ``logz`` are single values, converted as by the generators. Returns
    ``(wave [A], flux, ivar, truth_flux)``; ValueError for input outside these ranges.
    """
    from .medium import _as_angstrom

    gen = _check_generator(generator)
    w = _as_angstrom(wave, "wave")[0]         # np.asarray dropped a Quantity's unit: 380-700 nm was 380-700 A
    teff, logg, logz = (float(v[0]) if v.size == 1 else v for v in validate_parameters(teff, logg, logz))
    if not isinstance(teff, float):
        raise ValueError("mock_star makes one star: teff, logg and logz must be single values")
    rv, snr = float(rv), float(snr)
    if not (np.isfinite(rv) and abs(rv) < C_KMS):      # a NaN or |rv| >= c left no model pixels: IndexError
        raise ValueError(f"rv must be a finite velocity with |rv| < c = {C_KMS} km/s; got {rv!r}")
    if not (np.isfinite(snr) and snr > 0):             # snr 0 gave flux +-inf and ivar 0 without a word
        raise ValueError(f"snr must be a finite signal-to-noise ratio > 0 per pixel; got {snr!r}")
    mw = gen.wavelength
    sel = (mw >= w[0]) & (mw <= w[-1])
    pix = mw[sel]
    if pix.size < _MIN_PIXELS:
        # fewer than 2 failed inside numpy ("Shape of array too small to calculate a numerical gradient"),
        # and a fit needs this many anyway
        step = float(np.interp(0.5 * (w[0] + w[-1]), mw, np.gradient(mw)))
        raise ValueError(f"wave's range {w[0]:.1f}-{w[-1]:.1f} A holds {pix.size} of the model's pixels "
                         f"(~{step:.1f} A apart there); mock_star needs at least {_MIN_PIXELS}: widen it")
    one = np.ones(pix.size)
    # the reach the shift needs, kept below c (1.5 |rv| was >= c for |rv| >= c / 1.5)
    reach = min(max(abs(rv) * 1.5, 1.0), 0.5 * (abs(rv) + C_KMS))
    op = SpectralOperator(mw, pix, one, one, np.ones(pix.size, bool), max_rv=reach, degree=0)
    spec = _star_model_fn(gen, op, library)
    with torch.no_grad():
        theta = torch.tensor([[teff, logg, logz, rv]], dtype=torch.float64)
        m = spec(theta)[0].numpy()
    x = 2.0 * (op.wave - op.wave[0]) / (op.wave[-1] - op.wave[0]) - 1.0
    cont = np.polynomial.legendre.legval(x, continuum) if continuum is not None else 1.0
    truth = m * cont
    sigma = np.abs(truth) / float(snr)
    rng = np.random.default_rng(seed)
    out_wave = pix if op.wave.size == pix.size else op.wave.copy()
    return out_wave, truth + sigma * rng.standard_normal(truth.size), 1.0 / sigma**2, truth


def empirical_correction(
    wave,
    fluxes,
    teff,
    logg,
    logz,
    *,
    ivars=None,
    masks=None,
    resolution_fwhm=None,
    generator=None,
    library=None,
    degree=3,
):
    """An empirical multiplicative correction of the generator on its pixels, from stars of known parameters.

    For each star the model at its catalogue (Teff, log g, [M/H]) is compared, after resolution matching and
    the continuum polynomial, with the data; the correction is the per-pixel median of data / model over the
    stars (1 where no star covers a pixel). Derive it from one set of stars and fit others (docs/fit.md).

    Returns
    -------
    ndarray (n_model_wave,)
    """
    gen = _check_generator(generator)
    # keep a masked array's mask (np.asarray drops it: the data under it were fitted) and parameter units
    fluxes, flux_masks = _unmask(fluxes)
    fluxes = np.atleast_2d(np.asarray(getattr(fluxes, "value", fluxes), float))
    n = fluxes.shape[0]
    if flux_masks is not None:
        flux_masks = np.broadcast_to(np.atleast_2d(flux_masks), fluxes.shape)
        masks = flux_masks if masks is None else np.asarray(masks, bool) | flux_masks
    # all stars' parameters checked once, as the generators check them: a masked Teff was modelled at the
    # value under its mask, and a NaN of star 1 was reported at index 0 (validated one star at a time)
    params = validate_parameters(teff, logg, logz)
    if params[0].size not in (1, n):
        raise ValueError(f"teff, logg, logz give {params[0].size} stars for {n} spectra; give one value per "
                         "spectrum (or one for all)")
    params = [np.broadcast_to(p, (n,)) for p in params]
    ratios = np.full((n, gen.wavelength.size), np.nan)
    resolution_fwhm = _fwhm_in_wavelength_order(wave, resolution_fwhm)
    for i in range(n):
        w, f, iv, good = check_spectrum(
            wave, fluxes[i], None if ivars is None else ivars[i], None if masks is None else masks[i]
        )
        op = SpectralOperator(gen.wavelength, w, f, iv, good, resolution_fwhm, degree=degree)
        spec = _star_model_fn(gen, op, library)
        with torch.no_grad():
            theta = torch.tensor([[params[0][i], params[1][i], params[2][i], 0.0]], dtype=torch.float64)
            _, model, _ = _profile(spec(theta), op)
        if op.model_index is None:
            raise ValueError(
                "empirical_correction needs spectra finer than the model (they are binned onto its "
                "pixels); these are coarser"
            )
        ratios[i, op.model_index] = op.flux / model[0].numpy()
    # the median over the stars that reach each pixel; none: 1
    from .empirical import median_of_values
    corr = median_of_values(ratios, axis=0)
    return np.where(np.isfinite(corr) & (corr > 0), corr, 1.0)
