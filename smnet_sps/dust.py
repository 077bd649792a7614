"""Dust attenuation curves and the Charlot & Fall (2000) two-component screen, in FSPS's conventions.

Every curve is returned as tau_lambda / tau_V (FSPS ``attn_curve`` with tau_V = 1, V at 5500 A), so that
``exp(-dust2 * curve)`` attenuates the light. Wavelengths are in Angstrom (vacuum, like the rest of the
package). FSPS ``dust_type``:

* 0 -- power law, (lambda / 5500 A)^dust_index;
* 1 -- Milky Way, Cardelli, Clayton & Mathis (1989) with R_V = ``mwr``: ``dust_extinction.CCM89`` inside its
  range (1,000 A - 3.3 um); CCM89's own IR power law (x^1.61) beyond 3.3 um and its far-UV polynomial up to
  x = 12 um^-1, constant beyond (as FSPS). Only ``uvb = 1`` (the standard bump) is available;
* 2 -- Calzetti et al. (2000): k'(lambda) / R_V with R_V = 4.05, the UV branch below 0.63 um, the optical
  branch above, extrapolated (as FSPS) and set to zero where k' < 0 (beyond ~3.1 um);
* 4 -- Kriek & Conroy (2013): (Calzetti + Drude bump / 4.05) x (lambda / 5500 A)^dust_index, bump strength
  0.85 - 1.9 dust_index;
* 5 -- SMC bar, Gordon et al. (2003), ``dust_extinction.G03_SMCBar`` (A_lambda / A_V) inside 1,000 A -
  3.3 um, the x^1.61 IR power law beyond and constant below 1,000 A (FSPS interpolates the table's points
  instead, zero beyond 2.198 um: A_lambda / A_V 0.016 there against 0.110 here; docs/population.md);
* 6 -- Reddy et al. (2015), as FSPS (constant below 1,500 A, zero beyond 2.85 um; clipped at >= 0).

Dust type 3 (Witt & Gordon 2000 tables) is not available and raises ``ValueError``.

The birth-cloud (Charlot & Fall) screen: stars younger than ``dust_tesc`` (log yr) see
exp(-dust1 (lambda / 5500)^dust1_index) in addition to the diffuse dust; :func:`attenuate` combines the
young and old light exactly as FSPS ``add_dust.f90`` does, including ``dust3``, ``frac_nodust`` and
``frac_obrun``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["DUST_TYPES", "LAMBDA_V", "power_law", "ccm89", "calzetti2000", "kriek_conroy2013", "smc_bar",
           "reddy2015", "attenuation_curve", "attenuate"]

LAMBDA_V = 5500.0            # A, FSPS's normalisation wavelength
R_V_CALZETTI = 4.05
DUST_TYPES = {0: "power law", 1: "Milky Way (CCM89)", 2: "Calzetti et al. 2000", 4: "Kriek & Conroy 2013",
              5: "SMC bar (Gordon et al. 2003)", 6: "Reddy et al. 2015"}
_X_LO, _X_HI = 0.3, 10.0     # dust_extinction's CCM89 / G03_SMCBar range [1/um]


def _wave(wave):
    from .medium import _as_angstrom

    # a Quantity or a table column with a unit, converted (a column was an AttributeError: no to_value);
    # NaN, inf and wavelengths <= 0 refused
    return _as_angstrom(wave, "wave", positive=True)[0]


def power_law(wave, index=-0.7):
    """(lambda / 5500 A)^index (FSPS dust_type 0; ``dust_index``, default -0.7)."""
    return (_wave(wave) / LAMBDA_V) ** float(index)


def _extend(wave, inside_x, far_uv=None):
    """A_lambda / A_V from ``inside_x(x [1/um])`` on [0.3, 10] um^-1 (dust_extinction's range), extended with
    an IR x^1.61 power law below x = 0.3 and ``far_uv(x)`` (or a constant) above x = 10. Any shape of ``wave``
    (dust_extinction's G03_SMCBar takes 1-d input only: a 2-d one raised "too many values to unpack")."""
    shape = np.shape(wave)
    x = 1e4 / np.ravel(wave)
    xc = np.clip(x, _X_LO, _X_HI)
    out = inside_x(xc)
    ir = x < _X_LO
    out[ir] = out[ir] * (x[ir] / _X_LO) ** 1.61
    if far_uv is not None:
        uv = x > _X_HI
        out[uv] = far_uv(x[uv])
    return out.reshape(shape)


def ccm89(wave, mwr=3.1):
    """Cardelli, Clayton & Mathis (1989) A_lambda / A_V with R_V = ``mwr`` (FSPS dust_type 1, ``uvb = 1``)."""
    from astropy import units as u
    from dust_extinction.parameter_averages import CCM89
    w = _wave(wave)
    lo, hi = CCM89.Rv_range
    if not lo <= float(mwr) <= hi:        # dust_extinction's own error names its Rv, not this option
        raise ValueError(f"mwr (R_V of the Milky Way curve, dust_type 1) must be within {lo:g}-{hi:g} "
                         f"(CCM89); got {mwr!r}")
    model = CCM89(Rv=float(mwr))

    def far_uv(x):                                   # CCM89 far-UV polynomial, held constant beyond x = 12
        y = np.minimum(x, 12.0) - 8.0
        a = -1.073 - 0.628 * y + 0.137 * y ** 2 - 0.070 * y ** 3
        b = 13.67 + 4.257 * y - 0.42 * y ** 2 + 0.374 * y ** 3
        return a + b / float(mwr)
    return _extend(w, lambda x: np.asarray(model(x / u.micron), float), far_uv)


def smc_bar(wave):
    """SMC bar A_lambda / A_V of Gordon et al. (2003) (FSPS dust_type 5) from ``dust_extinction``."""
    from astropy import units as u
    from dust_extinction.averages import G03_SMCBar
    w = _wave(wave)
    model = G03_SMCBar()
    return _extend(w, lambda x: np.asarray(model(x / u.micron), float))


def _calzetti_k(w_um):
    """Calzetti et al. (2000) eq. 4, k'(lambda) with R_V = 4.05: UV branch below 0.63 um, optical above."""
    x = 1.0 / w_um
    uv = 2.659 * (-2.156 + 1.509 * x - 0.198 * x ** 2 + 0.011 * x ** 3) + R_V_CALZETTI
    opt = 2.659 * (-1.857 + 1.040 * x) + R_V_CALZETTI
    return np.where(w_um < 0.63, uv, opt)


def calzetti2000(wave):
    """Calzetti et al. (2000) attenuation k'(lambda) / R_V (FSPS dust_type 2), zero where k' < 0."""
    w = _wave(wave)
    return np.maximum(_calzetti_k(w / 1e4), 0.0) / R_V_CALZETTI


def kriek_conroy2013(wave, dust_index=0.0):
    """Kriek & Conroy (2013) (FSPS dust_type 4): Calzetti with a 2175 A Drude bump, tilted by dust_index."""
    w = _wave(wave)
    eb = 0.85 - 1.9 * float(dust_index)
    dlam, lam0 = 350.0, 2175.0
    drude = eb * (w * dlam) ** 2 / ((w ** 2 - lam0 ** 2) ** 2 + (w * dlam) ** 2)
    return (calzetti2000(w) + drude / R_V_CALZETTI) * (w / LAMBDA_V) ** float(dust_index)


def reddy2015(wave):
    """Reddy et al. (2015) eq. 8 as FSPS dust_type 6 (A_lambda / A_V with R_V = 2.505)."""
    w = _wave(wave)
    x = 1e4 / w
    k = np.zeros_like(w)
    blue = -5.726 + 4.004 * x - 0.525 * x ** 2 + 0.029 * x ** 3 + 2.505
    red = -2.672 - 0.010 * x + 1.532 * x ** 2 - 0.412 * x ** 3 + 2.505 - 0.036221981
    x1500 = 1e4 / 1500.0
    k = np.where(w < 1500, -5.726 + 4.004 * x1500 - 0.525 * x1500 ** 2 + 0.029 * x1500 ** 3 + 2.505, k)
    k = np.where((w >= 1500) & (w < 6000), blue, k)
    k = np.where((w >= 6000) & (w <= 28500), red, k)
    return np.maximum(k, 0.0) / 2.505           # the red fit dips below 0 near 2.85 um: no amplification


def _one_number(name, value, what, lo=-np.inf, hi=np.inf):
    """``value`` as one finite float in [lo, hi], else a ValueError naming ``name``, ``what`` it is, the
    allowed range and the value got. A bool, text, an array (even of one element) or a Quantity is refused:
    the dust and IGM parameters are plain numbers (an A_V in u.mag is not an optical depth)."""
    ok = not isinstance(value, (str, bytes, bool, np.bool_)) and not hasattr(value, "unit")
    try:
        x = float(value) if ok and np.ndim(value) == 0 else np.nan
    except (TypeError, ValueError):
        x = np.nan
    if not (np.isfinite(x) and lo <= x <= hi):
        bounds = ("" if lo == -np.inf and hi == np.inf else f" >= {lo:g}" if hi == np.inf
                  else f" <= {hi:g}" if lo == -np.inf else f" in [{lo:g}, {hi:g}]")
        raise ValueError(f"{name} is {what} and must be one finite number{bounds}; got {value!r}")
    return x


def _check_index(name, value):
    """A power-law index (dust_index, dust1_index) as one finite float: NaN or inf gave a NaN spectrum."""
    return _one_number(name, value, f"the power-law index of an attenuation curve (lambda / 5500 A)^{name}")


def attenuation_curve(wave, dust_type=0, dust_index=-0.7, mwr=3.1, uvb=1.0):
    """tau_lambda / tau_V of FSPS ``dust_type`` at ``wave`` [A] (see the module docstring).

    ``dust_index`` (used by dust_type 0 and 4) must be finite (``ValueError`` otherwise)."""
    if isinstance(dust_type, (bool, np.bool_)):
        # True == 1 in Python: dust_type=True ran as the MW curve (StellarPopulation refuses it too)
        raise ValueError(f"dust_type must be one of {sorted(DUST_TYPES)} ({DUST_TYPES}); got {dust_type!r}")
    if dust_type in (0, 4):
        dust_index = _check_index("dust_index", dust_index)
    if dust_type == 0:
        return power_law(wave, dust_index)
    if dust_type == 1:
        if uvb != 1.0:
            raise ValueError(f"dust_type=1 (MW, CCM89 from dust_extinction) supports only uvb=1.0 (standard "
                             f"2175 A bump); got uvb={uvb!r}")
        return ccm89(wave, mwr)
    if dust_type == 2:
        return calzetti2000(wave)
    if dust_type == 4:
        return kriek_conroy2013(wave, dust_index)
    if dust_type == 5:
        return smc_bar(wave)
    if dust_type == 6:
        return reddy2015(wave)
    if dust_type == 3:
        raise ValueError("dust_type=3 (Witt & Gordon 2000 tables) is not available in smnet-sps; use "
                         f"one of {sorted(DUST_TYPES)}: {DUST_TYPES}")
    raise ValueError(f"dust_type must be one of {sorted(DUST_TYPES)} ({DUST_TYPES}); got {dust_type!r}")


def attenuate(wave, young, old, *, dust_type=0, dust1=0.0, dust2=0.0, dust3=0.0, dust_index=-0.7,
              dust1_index=-1.0, frac_nodust=0.0, frac_obrun=0.0, mwr=3.1, uvb=1.0):
    """Attenuated total spectrum from the young (age < dust_tesc) and old light, as FSPS ``add_dust``.

    ``young * [exp(-dust1 (l/5500)^dust1_index) (1 - frac_obrun) + frac_obrun] + old * exp(-dust3 curve)``,
    then times ``(1 - frac_nodust) exp(-dust2 curve) + frac_nodust``. Any units (the result has those of the
    inputs); ``young``/``old`` are (..., n_wave). ``dust_index`` and ``dust1_index`` one finite number each;
    ``dust1``, ``dust2``, ``dust3`` are optical depths at 5500 A (tau_V = A_V / 1.086), one plain number >= 0
    each, and ``frac_nodust``, ``frac_obrun`` one number in [0, 1] (ValueError otherwise).
    """
    dust_index, dust1_index = (_check_index(name, v) for name, v in (("dust_index", dust_index),
                                                                      ("dust1_index", dust1_index)))
    # one plain number each: None or text raised a TypeError, an array numpy's "truth value ... ambiguous",
    # an A_V in u.mag an astropy UnitTypeError from exp, none of them naming the parameter
    dust1, dust2, dust3 = (_one_number(name, v, "an optical depth at 5500 A (tau_V = A_V / 1.086, a plain "
                                             "number, not magnitudes)", 0.0, np.inf)
                           for name, v in (("dust1", dust1), ("dust2", dust2), ("dust3", dust3)))
    frac_nodust, frac_obrun = (_one_number(name, v, "a fraction", 0.0, 1.0)
                               for name, v in (("frac_nodust", frac_nodust), ("frac_obrun", frac_obrun)))
    w = _wave(wave)
    if dust1 == 0 and dust2 == 0 and dust3 == 0:
        return young + old
    curve = attenuation_curve(w, dust_type, dust_index, mwr, uvb)
    birth = np.exp(-dust1 * (w / LAMBDA_V) ** dust1_index) if dust1 > 0 else np.ones_like(w)
    total = young * (birth * (1 - frac_obrun) + frac_obrun) + old * np.exp(-dust3 * curve)
    return total * ((1 - frac_nodust) * np.exp(-dust2 * curve) + frac_nodust)
