"""Star-formation histories and their weights on an SSP age grid (FSPS conventions).

Times follow FSPS: ``tage``, ``sf_start``, ``sf_trunc``, ``tburst`` and tabular ages are *forward* times in
Gyr (``tage`` is the age of the population, i.e. "now"); internally everything is *lookback* time ``t`` in yr
(t = 0 now, t = tage at the start of time). SFR are in M_sun / yr.

Supported ``sfh`` (FSPS numbering):

* 0 -- simple stellar population (a burst at lookback time ``tage``);
* 1 -- tau model: SFR ~ exp(-s / tau), s = time since ``sf_start``, plus a constant fraction ``const`` and a
  burst of fraction ``fburst`` at forward time ``tburst`` (no burst if ``tburst > tage``); star formation
  stops at ``sf_trunc`` (0: never). Normalised to 1 M_sun formed by ``tage``;
* 3 -- tabular, piecewise linear in time between the points given to ``tabular=(age_gyr, sfr)``; *not*
  normalised (masses in M_sun, as FSPS);
* 4 -- delayed tau: SFR ~ s exp(-s / tau), otherwise as 1.

:func:`ssp_weights` turns an SFH into the mass formed that each tabulated SSP age carries, exactly as FSPS
does: the SSP spectra are interpolated linearly in log age between the grid ages (a "hat" function per
age), stars younger than the first grid age take the first SSP, and the integral of SFR(t) x hat_i(log t)
dt is done per interval between grid ages, SFH break points and the dust split (Gauss-Legendre, exact
to ~1e-12 for these smooth integrands). FSPS assigns young/old light to the birth-cloud dust by grid
age; here the split is made exactly at ``split_yr`` in lookback time.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from astropy import units as u

from .generator import _refuse_masked, _refuse_quantity_list, column_quantity
from .medium import _gray_hint

__all__ = ["SFH_TYPES", "SFHistory", "parametric_sfh", "tabular_sfh", "check_tabular", "ssp_weights",
           "mass_formed_closed_form", "UNRESOLVED_FRACTION", "table_mass_fraction", "LOG_AGE_RANGE"]

SFH_TYPES = {0: "SSP", 1: "tau (+ constant + burst)", 3: "tabular", 4: "delayed tau (+ constant + burst)"}
GYR = 1e9
_GL_X, _GL_W = np.polynomial.legendre.leggauss(16)


@dataclass
class SFHistory:
    """A star-formation history in lookback time t [yr].

    pieces : list of (t_lo, t_hi, f) with f(t) -> SFR [M_sun/yr] (vectorised), smooth on [t_lo, t_hi]
    breaks : extra lookback times [yr] where the quadrature splits (e.g. multiples of tau from the start,
        so that a short burst-like tau model is integrated as exactly as a long one)
    bursts : list of (t, mass) instantaneous bursts [yr, M_sun] (also a tau or a star-forming window too short
        to integrate in lookback time, at its mean time: see ``UNRESOLVED_FRACTION``)
    tage_yr : float, age of the population [yr]
    """

    pieces: list = field(default_factory=list)
    bursts: list = field(default_factory=list)
    tage_yr: float = 0.0
    breaks: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def sfr(self, t):
        """SFR [M_sun/yr] at lookback time(s) t [yr] (bursts excluded)."""
        t = np.asarray(t, float)
        out = np.zeros_like(t)
        for lo, hi, f in self.pieces:
            m = (t >= lo) & (t < hi)
            out[m] += f(t[m])
        return out

    def mass_formed(self):
        """Total mass formed [M_sun] (pieces integrated by Gauss-Legendre, plus bursts)."""
        total = sum(m for _, m in self.bursts)
        for lo, hi, f in self.pieces:
            total += _gl_integral(f, lo, hi, self.breaks)
        return float(total)

    def mass_between(self, t_lo, t_hi):
        """Mass formed [M_sun] at lookback times t_lo <= t < t_hi [yr]: the pieces' integral there, and the
        bursts at t_lo (forward time: the window's end, as python-fsps's sfr_avg counts them) but not at
        t_hi."""
        total = sum(m for t, m in self.bursts if t_lo <= t < t_hi)
        for lo, hi, f in self.pieces:
            total += _gl_integral(f, max(lo, t_lo), min(hi, t_hi), self.breaks)
        return float(total)


def _gl_integral(f, lo, hi, breaks=()):
    if hi <= lo:
        return 0.0
    edges = np.unique(np.concatenate([[lo, hi], [b for b in breaks if lo < b < hi]]))
    total = 0.0
    for a, b in zip(edges[:-1], edges[1:]):
        x = 0.5 * (b - a) * _GL_X + 0.5 * (b + a)
        total += 0.5 * (b - a) * np.dot(_GL_W, f(x))
    return float(total)


def _real(name, value, unit):
    """``value`` as one float in ``unit`` (a Quantity converted): text, True / False and None are refused
    (np.isfinite("5") raised numpy's TypeError), as is more than one value."""
    number = np.asarray(_in_unit(name, value, unit))
    if number.dtype.kind not in "iuf" or number.size != 1:
        in_unit = "" if unit == u.dimensionless_unscaled else f" in {unit}"
        raise ValueError(f"{name} must be a single real number{in_unit}; got {value!r}")
    return float(number.reshape(()))


#: A tau or star-forming window shorter than this fraction of the time since ``sf_start`` is formed as a burst
#: at its mass-weighted mean time, the limit it tends to: lookback times near the start are ~1e-16 of it
#: apart, too coarse for the quadrature (tau = 1e-15 Gyr formed 1.98 M_sun instead of 1, 1e-20 Gyr none).
#: At this length both the quadrature and the burst are off by ~1e-8 in the SSP weights (of 1 M_sun).
UNRESOLVED_FRACTION = 5e-9


def _positive(name, value):
    value = _real(name, value, u.Gyr)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be finite and > 0 (Gyr); got {value!r}")
    return value


def parametric_sfh(sfh, tage, tau=1.0, const=0.0, sf_start=0.0, sf_trunc=0.0, fburst=0.0, tburst=11.0):
    """FSPS ``sfh=1`` (tau) or ``sfh=4`` (delayed tau) with constant and burst parts, 1 M_sun formed by tage.

    Parameters are FSPS's, in Gyr of forward time (``tau``: e-folding time in Gyr; ``const``, ``fburst``:
    mass fractions in [0, 1], const + fburst <= 1); a Quantity is converted. Each must be one finite real
    number (``tburst`` only when ``fburst > 0``), else ValueError. A tau or ``sf_trunc - sf_start`` window
    shorter than ``UNRESOLVED_FRACTION`` of ``tage - sf_start`` is formed as a burst at its mean time (the
    limit it tends to; tau -> 0 is the SSP). ``sf_trunc`` 0 means no truncation (a negative one is
    refused); one at or before ``sf_start`` is ignored with a UserWarning (as FSPS ignores it), one after
    ``tage`` has no effect.
    """
    if isinstance(sfh, (bool, np.bool_)) or sfh not in (1, 4):
        raise ValueError(f"parametric_sfh needs sfh=1 (tau) or sfh=4 (delayed tau); got {sfh!r}")
    tage = _positive("tage", tage)
    tau = _positive("tau", tau)
    const = _real("const", const, u.dimensionless_unscaled)
    fburst = _real("fburst", fburst, u.dimensionless_unscaled)
    sf_start, sf_trunc, tburst = (_real(name, v, u.Gyr) for name, v in
                                  (("sf_start", sf_start), ("sf_trunc", sf_trunc), ("tburst", tburst)))
    for name, v in (("const", const), ("fburst", fburst)):
        if not (0.0 <= v <= 1.0):
            raise ValueError(f"{name} is a mass fraction and must be in [0, 1]; got {v!r}")
    if const + fburst > 1.0 + 1e-12:
        raise ValueError(f"const + fburst must be <= 1 (fractions of the mass formed); got "
                         f"{const + fburst:g}")
    if not np.isfinite(sf_start) or sf_start < 0:
        raise ValueError(f"sf_start must be >= 0 Gyr; got {sf_start!r}")
    if not np.isfinite(sf_trunc) or sf_trunc < 0:
        # NaN failed every comparison below and meant "no truncation"; so did a negative time, silently (a
        # truncation before the Big Bang: sf_trunc = -2 formed the untruncated SFH with no warning, where
        # 2 Gyr before sf_start = 3 gives one)
        raise ValueError(f"sf_trunc must be a finite forward time in Gyr, >= 0 (0: no truncation); got "
                         f"{sf_trunc!r}")
    if fburst > 0 and (not np.isfinite(tburst) or tburst < 0):
        # a forward time: tburst < 0 put the burst before the Big Bang, older than tage (a "1 Gyr" population
        # came out as the 10 Gyr SSP)
        raise ValueError(f"tburst is a forward time in Gyr and must be >= 0 (after tage: no burst); got "
                         f"{tburst!r}")
    if sf_start >= tage:
        raise ValueError(f"tage ({tage:g} Gyr) must be later than sf_start ({sf_start:g} Gyr): no stars "
                         "formed yet")
    if 0 < sf_trunc <= sf_start:
        # FSPS (convert_sfhparams: sf_trunc - sf_start <= 0 -> no truncation) ignores it too, and says so only
        # on stdout for sf_trunc < sf_start; silent here, sf_trunc = sf_start + 1e-6 formed a burst at
        # sf_start while sf_start itself formed the untruncated SFH (0.52 dex in L_bol)
        warnings.warn(f"sf_trunc ({sf_trunc:g} Gyr) is not later than sf_start ({sf_start:g} Gyr): ignored, "
                      "no truncation (as FSPS); use sf_trunc = 0 for no truncation or a time after sf_start",
                      UserWarning, stacklevel=2)
    T = (tage - sf_start) * GYR                        # duration since the start [yr]
    trunc = (sf_trunc - sf_start) * GYR
    s_end = trunc if 0 < trunc <= T else T             # as FSPS: sf_trunc <= sf_start or > tage -> none
    t_lo = T - s_end                                   # lookback time at which star formation stops
    s_end = T - t_lo                                   # the window as lookback times hold it
    tau_yr = tau * GYR
    if sfh == 1:
        def shape(s):
            return np.exp(-s / tau_yr)
    else:
        def shape(s):
            return s * np.exp(-s / tau_yr)
    tb = (tage - tburst) * GYR                         # burst lookback time; < 0: in the future -> none
    f_burst = fburst if tb >= 0 else 0.0
    f_tau = 1.0 - const - f_burst
    pieces = []
    bursts = [(tb, f_burst)] if f_burst > 0 else []
    # quadrature breaks at 1/4 .. 128 e-folding times from the start: exact for tau << the SSP age spacing
    e_folds = tau_yr * np.array([0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128])
    for fraction, f, length in ((f_tau, shape, min(tau_yr, s_end)), (const, np.ones_like, s_end)):
        if fraction <= 0:
            continue
        if length >= UNRESOLVED_FRACTION * T:
            # normalised in time since the start, where a short window or tau keeps its digits
            norm = _gl_integral(f, 0.0, s_end, e_folds)
            pieces.append((t_lo, T, lambda t, a=fraction / norm, f=f: a * f(T - t)))
        else:
            bursts.append((T - _mean_time(f, s_end, e_folds), fraction))
    breaks = T - e_folds
    return SFHistory(pieces, bursts, tage * GYR, breaks[(breaks > t_lo) & (breaks < T)])


def _mean_time(shape, s_end, breaks):
    """Mass-weighted mean time [yr] since the start of an SFR ``shape(s)`` on [0, s_end] yr."""
    mass = _gl_integral(shape, 0.0, s_end, breaks)
    if mass <= 0:
        return 0.0              # underflow (delayed tau = 1e-300 Gyr): the mean is as close to the start
    return _gl_integral(lambda s: s * shape(s), 0.0, s_end, breaks) / mass


def tabular_sfh(age_gyr, sfr, tage):
    """FSPS ``sfh=3``: SFR [M_sun/yr] piecewise linear between forward times ``age_gyr`` [Gyr]; zero outside.

    Only the part formed by ``tage`` counts; the result is not normalised (mass formed in M_sun). The table
    is checked as :func:`check_tabular` does (ValueError otherwise).
    """
    age, rate = check_tabular(age_gyr, sfr)
    tage = _positive("tage", tage)
    T = tage * GYR
    pieces = []
    for j in range(age.size - 1):
        t1, t2 = T - age[j + 1] * GYR, T - age[j] * GYR      # lookback edges of the bin (t1 < t2)
        if t2 <= 0:
            continue                                         # the whole bin is in the future
        r_young, r_old = rate[j + 1], rate[j]
        if r_young == 0 and r_old == 0:
            continue
        lo = max(t1, 0.0)

        def f(t, t1=t1, t2=t2, a=r_young, b=r_old):          # linear in time between the two points
            return a + (b - a) * (t - t1) / (t2 - t1)
        pieces.append((lo, t2, f))
    return SFHistory(pieces, [], T)


def _in_unit(name, value, unit):
    """``value`` as a plain number (array) in ``unit``: a Quantity is converted (its unit was dropped:
    3000 Myr read as 3000 Gyr), a dimensionless one gives its number; any other unit is refused, naming the
    one expected. A masked element is refused (np.asarray used the value under the mask: 5 masked rows of a
    tabular SFR holding 1e3 formed 2.6e12 M_sun instead of 9.9e9)."""
    _refuse_masked(value, name)
    # np.asarray of [1 * u.Gyr, 2 * u.Gyr] raised numpy's TypeError "only dimensionless scalar quantities
    # can be converted to Python scalars" (and took a dimensionless one's number, its unit dropped)
    _refuse_quantity_list(value, name, unit)
    # a table column's unit (np.asarray dropped it: Myr read as Gyr)
    time = not isinstance(unit, u.FunctionUnitBase) and u.Unit(unit).is_equivalent(u.yr)
    value = column_quantity(value, name, f"one convertible to {unit}", time=time)
    if not isinstance(value, u.Quantity):
        return value
    if value.unit == u.dimensionless_unscaled:
        return value.value
    try:
        return value.to_value(unit)
    except u.UnitConversionError:
        raise ValueError(f"{name} is in {unit} (or a Quantity convertible to it); got unit {value.unit}"
                         f"{_gray_hint(value.unit) if time else ''}") from None


def _numbers(name, values):
    """``values`` as a new read-only float array: np.asarray(..., float) kept the caller's array (sfr *= 10
    afterwards changed the stored table behind the result cache) and read ["0", "1"] as numbers."""
    array = np.asarray(values)
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be real numbers (Gyr for ages, M_sun/yr for sfr); got {values!r}")
    array = np.array(array, dtype=float, copy=True)
    array.setflags(write=False)
    return array


# the largest tabular age taken [Gyr]: anything beyond several ages of the universe is a unit slip
TABULAR_AGE_MAX_GYR = 100.0


def check_tabular(age_gyr, sfr):
    """Validate ``set_tabular_sfh`` input (as python-fsps asserts, with clear ValueErrors).

    Returns (age [Gyr], sfr [M_sun/yr]) as read-only float copies (a caller who changes its arrays later does
    not change a stored table); Quantities are converted to these units; text or booleans are refused.
    """
    age = _numbers("tabular age", _in_unit("tabular age", age_gyr, u.Gyr))
    rate = _numbers("tabular sfr", _in_unit("tabular sfr", sfr, u.Msun / u.yr))
    if age.ndim != 1 or rate.shape != age.shape or age.size < 2:
        raise ValueError(f"age and sfr must be 1-d arrays of the same length >= 2; got shapes {age.shape}, "
                         f"{rate.shape}")
    if not (np.all(np.isfinite(age)) and np.all(np.isfinite(rate))):
        raise ValueError("age and sfr must be finite")
    if np.any(np.diff(age) <= 0) or age[0] < 0:
        raise ValueError("tabular ages (Gyr since the big bang) must be >= 0 and strictly increasing")
    if age[-1] > TABULAR_AGE_MAX_GYR:
        # ages in yr (1e8, 1e9, 1e10) read as Gyr: nothing formed by tage, flux 0, magnitudes 99, no word
        raise ValueError(f"tabular ages are Gyr since the big bang (the universe is 13.8 Gyr old); the "
                         f"largest is {age[-1]:.4g} Gyr, above {TABULAR_AGE_MAX_GYR:g} Gyr: were they given "
                         "in yr? Divide by 1e9 or pass a Quantity (age * u.yr)")
    if np.any(rate < 0):
        raise ValueError("sfr cannot be negative")
    if not np.any(rate > 1e-33):
        raise ValueError("at least one sfr must be > 1e-33 M_sun/yr")
    return age, rate


#: log10(age / yr) an SSP age grid may span (1 kyr - 100 Gyr): ages in yr, Myr or Gyr fall outside
LOG_AGE_RANGE = (3.0, 11.0)


def _hat(log_nodes, t):
    """Indices and weights of the linear-in-log-age interpolation at lookback times t [yr] (> 0)."""
    lt = np.log10(np.maximum(t, 1e-300))
    j = np.clip(np.searchsorted(log_nodes, lt, side="right") - 1, 0, log_nodes.size - 2)
    frac = np.clip((lt - log_nodes[j]) / (log_nodes[j + 1] - log_nodes[j]), 0.0, 1.0)
    young = lt < log_nodes[0]                         # younger than the first SSP: nearest neighbour (FSPS)
    frac = np.where(young, 0.0, frac)
    return j, frac


def born_young(lookback_yr, split_yr):
    """Whether stars formed at once ``lookback_yr`` ago (a burst, an SSP) count as young for the birth-cloud
    dust split at ``split_yr`` [yr] (None: nothing is young): at most ``split_yr``, as FSPS counts the SSP at
    exactly ``dust_tesc`` young (csp_gen: i <= locate(time_full, dust_tesc)); 1e-12 relative covers the
    rounding of tage - tburst (a 10 Myr SSP at the default 7 was left unattenuated)."""
    return split_yr is not None and lookback_yr <= split_yr * (1 + 1e-12)


def ssp_weights(history, log_ages, split_yr=None, rtol_outside=1e-9):
    """Mass formed [M_sun] carried by each SSP age of the grid, split into young and old.

    Parameters
    ----------
    history : SFHistory
    log_ages : (n,) increasing log10(age / yr) of the SSP grid, within ``LOG_AGE_RANGE`` (a time Quantity of
        ages is converted)
    split_yr : float [yr] (or a time Quantity), >= 0, or None; lookback time separating "young" (t < split; a
        burst at t <= split, as FSPS counts an SSP at exactly dust_tesc young) from "old" stars (FSPS
        ``10**dust_tesc``); None puts everything in "old"

    Returns
    -------
    young, old : (n,) arrays [M_sun]; ``young + old`` sums to the mass formed

    Raises
    ------
    ValueError
        If stars formed earlier than the oldest SSP age (no spectrum exists for them); if ``log_ages`` are not
        log10(age / yr) in ``LOG_AGE_RANGE`` or ``split_yr`` is not a time >= 0.
    """
    log_ages = np.asarray(_in_unit("log_ages", log_ages, u.dex(u.yr)))
    if log_ages.dtype.kind not in "iuf":
        raise ValueError(f"log_ages must be real numbers, log10(age / yr); got {log_ages!r}")
    log_ages = log_ages.astype(float)
    if log_ages.ndim != 1 or log_ages.size < 2 or not np.all(np.isfinite(log_ages)) \
            or np.any(np.diff(log_ages) <= 0):
        raise ValueError("log_ages must be >= 2 finite, strictly increasing log10(age/yr)")
    lo, hi = LOG_AGE_RANGE
    if log_ages[0] < lo or log_ages[-1] > hi:
        # ages in yr took every star as younger than the first "log age" (a 1 Gyr constant SFH was the
        # 0.3 Myr SSP); ages in Gyr put it on the SSPs that read ~9 (8.9-10 Gyr), without a word
        raise ValueError(f"log_ages are log10(age / yr), within {lo:g}..{hi:g} (1 kyr - 100 Gyr); got "
                         f"{log_ages[0]:.4g}..{log_ages[-1]:.4g}: ages in yr or Gyr? Pass np.log10(age_yr) "
                         "or a time Quantity (ages * u.Gyr)")
    if split_yr is not None:
        split_yr = _real("split_yr", split_yr, u.yr)
        if not np.isfinite(split_yr) or split_yr < 0:
            # NaN and negative times failed every comparison: no star was young, silently
            raise ValueError(f"split_yr is a lookback time in yr, finite and >= 0 (None: nothing is young); "
                             f"got {split_yr!r}")
    t_max = 10.0 ** log_ages[-1]
    young = np.zeros(log_ages.size)
    old = np.zeros(log_ages.size)
    split = -np.inf if split_yr is None else split_yr             # None: nothing is young
    total = history.mass_formed()
    beyond = 0.0
    node_t = 10.0 ** log_ages
    for lo, hi, f in history.pieces:
        if hi <= lo:
            continue
        if hi > t_max * (1 + 1e-9):
            beyond += _gl_integral(f, max(lo, t_max), hi, history.breaks)
        inner = np.concatenate([node_t, history.breaks, [split]])
        edges = np.concatenate([[lo, hi], inner[(inner > lo) & (inner < hi)]])
        edges = np.unique(np.clip(edges, lo, min(hi, t_max)))
        for a, b in zip(edges[:-1], edges[1:]):
            if b <= a:
                continue
            x = 0.5 * (b - a) * _GL_X + 0.5 * (b + a)
            m = 0.5 * (b - a) * _GL_W * f(x)               # mass formed at each quadrature node
            j, frac = _hat(log_ages, x)
            target = young if 0.5 * (a + b) < split else old
            np.add.at(target, j, m * (1 - frac))
            np.add.at(target, j + 1, m * frac)
    for tb, mass in history.bursts:
        if tb > t_max * (1 + 1e-9):
            beyond += mass
            continue
        j, frac = _hat(log_ages, np.array([max(tb, 0.0)]))
        target = young if born_young(tb, split_yr) else old
        target[j[0]] += mass * (1 - frac[0])
        target[j[0] + 1] += mass * frac[0]
    if beyond > rtol_outside * max(total, 1e-300):
        raise ValueError(f"{beyond / total:.3g} of the mass formed is older than the oldest SSP age "
                         f"({t_max / GYR:.4g} Gyr, log t = {log_ages[-1]:.2f}); lower tage (or move the SFH) "
                         "or use isochrones that reach older ages (padova: 14.1 Gyr, mist: 20 Gyr)")
    return young, old


def mass_formed_closed_form(sfh, T_gyr, tau_gyr):
    """Closed-form integral of the unnormalised tau (sfh=1: tau (1 - e^-x)) or delayed-tau
    (sfh=4: tau^2 (1 - (1 + x) e^-x)) SFR over a duration T, x = T / tau (times in Gyr, result in Gyr
    or Gyr^2). A reference for tests and for converting amplitudes to masses. Quantities are converted to
    Gyr; ``T_gyr`` must be finite and >= 0, ``tau_gyr`` finite and > 0 (each one value or an array; they
    broadcast), else ValueError (tau = -1 gave 6.39 "Gyr" for T = 2, tau = 0 a ZeroDivisionError, sfh=True
    the tau model)."""
    if isinstance(sfh, (bool, np.bool_)) or sfh not in (1, 4):
        raise ValueError(f"closed form exists for sfh=1 or 4; got {sfh!r}")
    tau_gyr = np.asarray(_in_unit("tau_gyr", tau_gyr, u.Gyr))
    if tau_gyr.dtype.kind not in "iuf" or not np.all(np.isfinite(tau_gyr)) or np.any(tau_gyr <= 0):
        raise ValueError(f"tau_gyr is an e-folding time in Gyr and must be finite and > 0; got {tau_gyr!r}")
    T_gyr = np.asarray(_in_unit("T_gyr", T_gyr, u.Gyr))
    if T_gyr.dtype.kind not in "iuf" or not np.all(np.isfinite(T_gyr)) or np.any(T_gyr < 0):
        raise ValueError(f"T_gyr is a duration in Gyr and must be finite and >= 0; got {T_gyr!r}")
    tau_gyr = tau_gyr.astype(float) if tau_gyr.ndim else float(tau_gyr)
    x = T_gyr.astype(float) / tau_gyr
    if sfh == 1:
        return tau_gyr * -np.expm1(-x)
    return tau_gyr ** 2 * (-np.expm1(-x) - x * np.exp(-x))


def table_mass_fraction(sfh, age, t_max, tau=1.0, const=0.0, sf_start=0.0, sf_trunc=0.0, fburst=0.0,
                        tburst=11.0):
    """FSPS's ``sfhinfo`` for the ``tage=0`` table of ``sfh=1`` / ``4``: ``(mfrac, sfr)`` at forward time
    ``age`` [Gyr], ``mfrac`` the mass formed by ``age`` over that formed by ``t_max`` (the oldest SSP age,
    Gyr) and ``sfr`` [M_sun/yr] the SFR at ``age`` for 1 M_sun formed by ``t_max``.

    Each part of the SFH counts by its own share of the mass formed by ``t_max``: the tau part by
    (1 - const - fburst) x its mass by ``age`` over its mass by ``t_max``, the constant part by const x the
    elapsed share of its window, the burst by fburst once ``age`` reaches ``tburst`` (as a single ``tage``
    forms it; FSPS's sfhinfo only once past it) (compsp.f90 multiplies
    each row of the table, which is normalised to 1 M_sun formed by its own age, by ``mfrac``). Parameters
    as :func:`parametric_sfh` (already checked there); ``sf_trunc`` 0 or not after ``sf_start``: none.
    """
    from scipy.special import gammainc
    power = 1 if sfh == 1 else 2
    span = t_max - sf_start                                   # FSPS Tmax
    since = age - sf_start                                    # Tprime
    window = span if (sf_trunc <= 0 or sf_trunc <= sf_start) else sf_trunc - sf_start
    total_tau = tau * gammainc(power, min(span, window) / tau)  # Gamma(1) = Gamma(2) = 1: regularised = lower
    if since < 0:
        mass_tau = sfr_tau = 0.0
    else:
        s = min(since, window)
        mass_tau = tau * gammainc(power, s / tau)
        sfr_tau = (s / tau) ** (power - 1) * np.exp(-s / tau)
    sfr_const = 1.0 / min(span, window) if since > 0 else 0.0
    # the burst counts from age = tburst on, as parametric_sfh forms it (tb >= 0) for the row's spectrum;
    # sfhinfo's strict "Tprime > tburst" left its mass out of the row at exactly tburst, a grid age for
    # tburst = 0.1, 1 or 10 Gyr (formed_mass 0.316 beside a spectrum holding a 0.5 M_sun burst)
    mfrac = ((1.0 - const - fburst) * mass_tau / total_tau + const * max(min(since, window), 0.0) * sfr_const
             + fburst * float(age - tburst >= 0))
    sfr = 0.0 if since > window else (1.0 - const - fburst) * sfr_tau / total_tau + const * sfr_const
    return float(mfrac), float(sfr) / GYR                      # FSPS's SFR is per Gyr
