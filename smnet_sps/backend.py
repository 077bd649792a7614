"""Stellar library backend: isochrone points (Teff, log g, [M/H], log L, phase) -> L_lambda of each star.

One batched generator call per request, a cache of per-point spectra, coverage flags, and an explicit
rule for every point the generator should not be trusted with.

Luminosity conservation
-----------------------
A star of luminosity L has L_lambda = 4 pi R^2 F_lambda = L F_lambda / (sigma Teff^4). Emulated spectra
carry percent-level bolometric errors, so we **rescale each star so that its integral over the wavelength
grid equals the share of L the grid holds**: L_lambda = L f F_lambda / integral(F_lambda dlambda), where
f = :func:`~smnet_sps.generator.planck_fraction` is the share of a blackbody of the star's Teff between the
grid's first and last wavelength. The default grid (91 A - 160 um) holds f > 0.9997 from 500 K to 100 kK
(0.99990 at 100 kK; 0.969 at 190 kK), so there the SSP's bolometric luminosity is that of the isochrone
(minus the reported missing part); a generator on a shorter grid (a released SM-Net checkpoint, 3,000 A -
10 um) keeps its stars' L_lambda right where it has them instead of piling a hot star's whole L into its
optical (f = 0.055 at 40 kK), and the light beyond the grid is simply not in the spectrum. A dedicated
library's spectrum (91 A - 160 um) holds a blackbody's share of L over its native range, and of that the
part that falls on the grid. How far each raw spectrum was from the bolometric flux its generator aims at
on its grid, ``t sigma Teff^4 / integral(F_lambda)`` with t =
:meth:`~smnet_sps.generator.Generator.target_fraction` (f for most generators; 1 for those that rescale
every spectrum to sigma Teff^4 on their grid: a released SM-Net checkpoint's default
``normalisation="covered"``, a model with ``renormalise=True``), is returned per point
(:attr:`PointSpectra.correction`).

Points outside coverage (``outside=``)
--------------------------------------
``"extrapolate"`` (default): the generator is used anyway and the point is flagged; with luminosity
conservation this is a smooth continuation of the learned manifold (e.g. solar-metallicity-only M giants
of BaSeL used for a [M/H] = -0.3 isochrone), and the SSP reports the share of L_bol such points carry.
An extrapolated spectrum whose integral is off its generator's target (t sigma Teff^4, above) by more than
``EXTRAPOLATION_LIMIT`` (2x) is replaced by a blackbody (status "blackbody");
``"blackbody"``: a Planck spectrum of the same Teff and L is used instead;
``"exclude"``: the star contributes no spectrum and its luminosity is reported as missing.
Points whose generated spectrum is unusable
(any pixel negative or non-finite, or a non-positive integral) are always treated as outside.

Special phases (``special_phases=``)
------------------------------------
``"model"`` (default): TP-AGB (5), post-AGB (6) and Wolf-Rayet (9) stars are generated like any star by
the generator at their (Teff, log g, [M/H]); the union model covers 2,000-180,000 K with log g (above
50 kK only CM87's log g 4.5-8).
``"dedicated"``: WR stars take CMFGEN WN/WC spectra (WC when C/O > 1) -- phase 9, and any star
:func:`wr_like` finds massive (initial mass >= 8 M_sun), hotter than 50 kK and stripped (current mass < 0.8
of the initial: the isochrones' stripped massive stars, which they flag as phases 0-3) --, TP-AGB stars
Lancon & Mouhcine (O-rich) / Aringer (C-rich, C/O > 1) spectra and post-AGB stars Rauch (2003) H-Ni NLTE
spectra (``rauch_pagb``, 50-190 kK), all linearly interpolated in Teff, read with
:func:`smnet_sps.grid.load_phase_libraries` (pixels a library lacks are filled with a Planck spectrum of the
same Teff scaled to the library's nearest covered pixels); the O-rich TP-AGB spectra take their Teff
from the library's Teff(Z) table at the star's [M/H] (as FSPS; clipped to the table's -1.98 .. +0.2). The
metallicity set is the nearest tabulated [M/H], except for post-AGB, which follows FSPS (``getspec.f90``:
the solar set when Z/Zsun > 0.5, else the halo set): halo ([M/H] = -1) when [M/H] <= log10(0.5) = -0.30,
solar otherwise. Outside a library's Teff range the generator is used, except above the CMFGEN WR grid's top
(120 kK WN, 140 kK WC): hotter WR stars take its hottest spectrum, as FSPS holds them there. Why ``"model"``
is the default: it works with every generator (a released SM-Net checkpoint, a blackbody) without the extra
data file, keeps the SSP a smooth function of the isochrone (fits, gradients), and the dedicated libraries
have no log g, a narrow Teff range and a coarse metallicity mapping (two sets for post-AGB). Use
``"dedicated"`` to mimic FSPS's treatment of these phases, whose spectra (C-star bands, WR emission lines,
post-AGB NLTE atmospheres) the union's hydrostatic log g libraries do not represent.
"""
from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass

import numpy as np
from astropy import units as u

from .constants import L_SUN, LLAM_UNIT, LOGL_DOMAIN, SIGMA_SB, TEFF_DOMAIN
from .generator import (_as_float_array, _check_count, _check_finite, _check_in_range, _logg_value,
                        _logz_value, _quiet_coverage, _refuse_masked, _teff_value, check_switch,
                        column_quantity, luminosity_scale, own_wavelength, planck_fraction,
                        planck_surface_flux, validate_parameters)
from .isochrones import PHASE_NAMES
from .progress import want_progress

__all__ = ["StellarLibraryBackend", "PointSpectra", "STATUS", "OUTSIDE_MODES", "SPECIAL_MODES", "KEY_STEP",
           "WR_LIKE_MIN_MASS", "WR_LIKE_MIN_TEFF", "WR_LIKE_MAX_MASS_RATIO", "WR_RULE_VERSION",
           "wr_like"]

OUTSIDE_MODES = ("exclude", "blackbody", "extrapolate")
SPECIAL_MODES = ("model", "dedicated")

# an extrapolated spectrum must integrate to its generator's target (Generator.target_fraction x sigma Teff^4)
# within this factor, else a blackbody replaces it
EXTRAPOLATION_LIMIT = 2.0

# status code of each point: how its spectrum was obtained
STATUS = {"generator": 0, "dedicated": 1, "blackbody": 2, "extrapolated": 3, "missing": -1}

# Quantisation of points before they reach the generator (dedup key): log Teff, log g and [M/H] rounded to
# KEY_STEP dex. FSPS's isochrone files print log Teff and log g to 1e-4 and [M/H] is the exact log of a
# tabulated Z, so at this step two points share a key only when the tables give them the same parameters:
# the dedup is lossless. Coarser steps were measured on PARSEC and the shipped model (docs/ssp.md,
# "Deduplication"): 1e-3 dex in log Teff already changes UV pixels of SSPs by 2 % (Wien tails of turn-off
# stars: d ln F / d ln T = hc / (lambda k T) ~ 10) while removing only 45 % of the points, so no coarser step
# keeps SSPs within 1e-4.
KEY_STEP = 1e-4
_KEY_SCALE = np.array([1.0 / KEY_STEP] * 3)

# Wolf-Rayet-like massive stars (wr_like, special_phases="dedicated" only): the isochrones hold stripped
# massive stars at 80-220 kK, log g 4.4-6 that they flag as phases 0-3 (PARSEC has no phase 9; Padova flags
# only 16-62 kK stars), docs/ssp.md "Young populations".
#: Initial mass [M_sun] from which a star hotter than :data:`WR_LIKE_MIN_TEFF` is WR-like: ~8 M_sun, the
#: smallest initial mass that ends in core collapse rather than as a white dwarf (Smartt 2009, ARA&A 47,
#: 63: 8 +1/-1.5), i.e. the smallest massive star. Every hot star below it is a post-AGB star or white dwarf
#: (shipped Padova tables: phase 6, initial mass <= 4.76 M_sun, log t >= 8.15), which keeps its own spectra;
#: the shipped tables' massive stars above 50 kK have >= 28 M_sun.
WR_LIKE_MIN_MASS = 8.0
#: Teff [K] above which a massive star is WR-like: WM-basic's top, the hottest O-star (wind) spectra of the
#: union and of FSPS (which holds hotter main-sequence stars at it). Above it the union has only CM87's
#: windless planetary-nebula nuclei, whose He+-ionising flux (Q(He+)/Q(H) 0.13-0.29) is ~9 dex above the
#: CMFGEN WR spectra's.
WR_LIKE_MIN_TEFF = 50000.0
#: Current / initial mass below which a massive hot star is WR-like: a WR star has shed its hydrogen
#: envelope, most of its mass; unstripped O stars in the shipped tables keep >= 0.9 of it up to 120 M_sun
#: (the IMF's default top; 265-350 M_sun ones at Z 0.0005-0.02 fall to 0.80-0.84 by 1-2 Myr). Without it
#: the rule caught the zero-age O stars at 50-75 kK of metal-poor isochrones (PARSEC Z 1e-4 - 0.001, Padova
#: 2e-4 - 0.001, log t <= 6.3: 34-349 M_sun, log g 3.6-4.5, >= 0.98 of their mass up to 120 M_sun; [M/H]
#: -1, 1 Myr: 57 % of L_bol). The shipped tables' massive stars above 50 kK, log t <= 7.5, leave a gap
#: there: Padova has none between 0.58 and 0.95; PARSEC 40 of 9246 between 0.8 and 0.9, against 6674 below
#: 0.7 and 2435 above 0.9 (above 70 kK 7 above 0.8).
#: MIST's super-solar main-sequence O stars (50-61 kK) lose 20-50 % on the main sequence and are caught
#: (WNh-like very massive stars; docs/ssp.md).
WR_LIKE_MAX_MASS_RATIO = 0.8
#: Version of special_phases="dedicated"'s Wolf-Rayet rule (wr_like and the CMFGEN sets held at their top),
#: which a distributed SSP store records so that one begun under another rule is not resumed under this
#: one (two rules in one grid). 1: 2026-12 (WR stars held at the CMFGEN top, stripped massive stars WR-like
#: below WR_LIKE_MAX_MASS_RATIO; PARSEC Z 0.0304, 4 Myr: log Q(He+) 45.10 -> 38.07). Bump it whenever a
#: change moves the "dedicated" spectra.
WR_RULE_VERSION = 1

# special-phase classes for the key (0 = ordinary star)
_CLASS_TPAGB_O, _CLASS_TPAGB_C, _CLASS_WN, _CLASS_WC, _CLASS_PAGB = 1, 2, 3, 4, 5

# metallicity set of a dedicated library: nearest tabulated [M/H], except where a split is given here:
# the lowest set at [M/H] <= split, the highest above. Rauch post-AGB (halo [M/H] = -1, solar 0) follows
# FSPS getspec.f90 (solar set only when Z/Zsun > 0.5).
_LOGZ_SPLIT = {"rauch_pagb": float(np.log10(0.5))}
# libraries whose hottest spectrum is used for hotter stars (the rest leave stars outside their Teff range to
# the generator): the CMFGEN WR sets (tops 120 kK WN, 140 kK WC), as FSPS getspec.f90 holds phase-9 stars
# at the WR grid's edges ("no extrapolation"). Above the tops the union has only CM87's windless
# planetary-nebula nuclei and extrapolations of them, with no wind to absorb the He+-ionising flux (a 150 kK
# WN star at [M/H] 0 / +0.3: log Q(He+)/Q(H) -0.55 / -0.55 from the model, -1.08 / -8.29 held at 120 kK).
# Not at the cool end: there the union's O-star spectra (WM-basic, with winds) are the better guess, and
# Padova's 16-30 kK phase-9 stars keep them.
_HELD_AT_TOP = ("cmfgen_wn", "cmfgen_wc")


def wr_like(mini, mact, teff):
    """Which stars ``special_phases="dedicated"`` treats as Wolf-Rayet stars (FSPS phase 9, CMFGEN spectra)
    whatever their isochrone phase: massive (initial mass >= :data:`WR_LIKE_MIN_MASS`, 8 M_sun), hotter
    than :data:`WR_LIKE_MIN_TEFF` (50 kK, WM-basic's top) and stripped (current mass below
    :data:`WR_LIKE_MAX_MASS_RATIO`, 0.8, of the initial; unstripped O stars up to 120 M_sun keep >= 0.9).
    Phase-9 stars are WR stars anyway.

    Parameters
    ----------
    mini : array, initial mass [M_sun]
    mact : array, current mass [M_sun]
    teff : array, effective temperature [K] (the three broadcast together)

    Returns
    -------
    ndarray of bool
    """
    mini = np.asarray(mini, float)
    return ((mini >= WR_LIKE_MIN_MASS) & (np.asarray(teff, float) > WR_LIKE_MIN_TEFF)
            & (np.asarray(mact, float) < WR_LIKE_MAX_MASS_RATIO * mini))


@dataclass
class PointSpectra:
    """Spectra of isochrone points.

    Attributes
    ----------
    wavelength : ndarray (n_wave,) [Angstrom]
    llam : ndarray (n, n_wave), L_lambda [erg s^-1 A^-1]; zero rows for missing points
    status : ndarray (n,) int, see :data:`STATUS`
    inside : ndarray (n,) bool, inside the generator's coverage (or the dedicated library's Teff range);
        False where the generated spectrum was unusable (treated as outside)
    correction : ndarray (n,), t sigma Teff^4 / integral(F_lambda): how far the raw spectrum was from its
        generator's target on the grid, t = :meth:`~smnet_sps.generator.Generator.target_fraction` (NaN if
        none)
    luminosity : ndarray (n,) [L_sun]
    grid_fraction : ndarray (n,), f: the share of each star's luminosity on the wavelength grid, which its
        L_lambda integrates to (a blackbody's, :func:`~smnet_sps.generator.planck_fraction`, for the
        generator's spectra; for a dedicated library's, the part of its own spectrum on the grid)
    """

    wavelength: np.ndarray
    llam: np.ndarray
    status: np.ndarray
    inside: np.ndarray
    correction: np.ndarray
    luminosity: np.ndarray
    grid_fraction: np.ndarray = None

    @property
    def missing_fraction(self):
        """Fraction of the total luminosity carried by points without a spectrum."""
        tot = self.luminosity.sum()
        return float(self.luminosity[self.status == STATUS["missing"]].sum() / tot) if tot > 0 else 0.0

    def correction_stats(self):
        c = self.correction[np.isfinite(self.correction)]
        if c.size == 0:
            return {"n": 0}
        return {"n": int(c.size), "min": float(c.min()), "median": float(np.median(c)), "max": float(c.max())}

    def as_spectrum(self):
        """The spectra as a :class:`specutils.Spectrum` [erg s^-1 A^-1] (meta: status, inside, correction, and
        the grid's ``wavelength_medium``, ``lsf_fwhm`` [A], ``lsf_shape`` as every output states them)."""
        from specutils import Spectrum

        from .lsf import lsf_meta
        meta = {"status": self.status, "inside_coverage": self.inside, "correction": self.correction,
                "luminosity_lsun": self.luminosity, **lsf_meta(self.wavelength)}
        return Spectrum(flux=self.llam * LLAM_UNIT, spectral_axis=self.wavelength * u.AA, meta=meta)


def _cache_precision(flux):
    """Unit spectra as the per-point cache holds them: rounded to float32, returned as float64. The one
    rounding every path takes (point_spectra with and without the cache, both of weighted_sum's), so that one
    key gives one answer bit for bit (uncached, point_spectra returned the float64 spectra: 6e-8 apart)."""
    return np.asarray(flux, np.float32).astype(float)


def _trapz_weights(wave):
    """Trapezoid weights so that ``flux @ w`` is the integral over the grid."""
    d = np.diff(wave)
    w = np.zeros_like(wave)
    w[:-1] += 0.5 * d
    w[1:] += 0.5 * d
    return w


def _get(obj, name, index):
    """Field of a phase library given as an object with attributes or a tuple (teff, logz, flux, mask,
    cit)."""
    if hasattr(obj, name):
        return getattr(obj, name)
    if isinstance(obj, dict):
        return obj[name]
    return obj[index]


def _teff_table(name, lib, n_spec):
    """A phase library's Teff(Z) table as (logz_table (m,), teff_table (n_spec, m) [K]), or None without one.

    Lancon & Mouhcine's O-rich spectra are colour classes whose Teff depends on metallicity (FSPS
    ``Orich.teff``: one column per log Z/Zsun); ``teff`` holds only the solar column."""
    has = [_table_field(lib, k) is not None for k in ("teff_table", "logz_table")]
    if not any(has):
        return None
    if not all(has):
        raise ValueError(f"phase library {name!r}: teff_table and logz_table come together; it has only "
                         f"{'teff_table' if has[0] else 'logz_table'}")
    table = np.asarray(u.Quantity(_table_field(lib, "teff_table"), u.K).value, float)
    logz = np.asarray(_table_field(lib, "logz_table"), float)
    if logz.ndim != 1 or logz.size < 1 or not np.all(np.isfinite(logz)) or np.any(np.diff(logz) <= 0):
        raise ValueError(f"phase library {name!r}: logz_table must be finite and increasing log Z/Zsun, "
                         f"got {logz}")
    if table.shape != (n_spec, logz.size):
        raise ValueError(f"phase library {name!r}: teff_table has shape {table.shape}; allowed: (spectra, "
                         f"[M/H] columns) = ({n_spec}, {logz.size})")
    if not np.all(np.isfinite(table) & (table > 0)):
        raise ValueError(f"phase library {name!r}: teff_table must hold finite Teff > 0 K")
    return logz, table


def _table_field(lib, name):
    if isinstance(lib, dict):
        return lib.get(name)
    return getattr(lib, name, None)


def _fill_masked_with_planck(flux, mask, teff, wave):
    """Fill pixels a library does not cover with a Planck spectrum of the star's Teff, scaled to the
    library at the nearest covered pixels (so renormalising to L does not pile the missing light into
    the covered range). Spectra without any covered pixel are left zero."""
    out = flux.copy()
    for i in np.flatnonzero(~mask.all(axis=1) & mask.any(axis=1)):
        bb = planck_surface_flux(wave, [teff[i]])[0]
        ok = mask[i] & (bb > 0)
        if not ok.any():
            continue
        idx = np.arange(wave.size)
        ratio = np.interp(idx, idx[ok], flux[i, ok] / bb[ok])
        out[i, ~mask[i]] = (bb * ratio)[~mask[i]]
    return out


def _unique_rows(keys):
    """``np.unique(keys, axis=0, return_inverse=True)`` for int64 keys, fast: the columns are packed into one
    int64 when their ranges fit in 63 bits (true for every isochrone), else the generic row unique."""
    keys = np.asarray(keys, np.int64)
    if keys.shape[0] == 0:
        return keys.copy(), np.zeros(0, np.int64)
    lo = keys.min(axis=0)
    span = keys.max(axis=0) - lo + 1
    bits = np.ceil(np.log2(span.astype(float) + 1)).astype(int)
    if bits.sum() <= 62:
        packed = np.zeros(keys.shape[0], np.int64)
        for j in range(keys.shape[1]):              # most significant first: sorted like np.unique(axis=0)
            packed = (packed << int(bits[j])) | (keys[:, j] - lo[j])
        _, first, inv = np.unique(packed, return_index=True, return_inverse=True)
        return keys[first], inv.ravel()
    ukeys, inv = np.unique(keys, axis=0, return_inverse=True)
    return ukeys, inv.ravel()


_PACK_BITS = 20                      # per key column (log Teff, log g, [M/H] in KEY_STEP units), signed
_PACK_OFFSET = 1 << (_PACK_BITS - 1)


def _pack_keys(keys):
    """Cache keys (n, 4) -> one int64 each (3 x 20 bits + 3 bits of class) and a mask of the keys that fit
    (|value| < 2^19 KEY_STEPs, i.e. +-52 dex; anything else is computed but not cached)."""
    k = np.asarray(keys, np.int64)
    fits = (np.abs(k[:, :3]) < _PACK_OFFSET).all(axis=1) & (k[:, 3] >= 0) & (k[:, 3] < 8)
    k = np.where(fits[:, None], k, 0)
    off = _PACK_OFFSET
    packed = ((k[:, 0] + off) << 43) | ((k[:, 1] + off) << 23) | ((k[:, 2] + off) << 3) | k[:, 3]
    return packed, fits


def _log_value(value, name, unit, meaning):
    """log10 of a quantity in ``unit`` from a number (already the log), a dex Quantity of ``unit``, or a
    linear Quantity convertible to ``unit`` (e.g. logl = 3.2 L_sun or 1e34 erg/s); an astropy Column with a
    unit as that Quantity."""
    value = column_quantity(value, name, f"one convertible to {unit} or to dex({unit})")
    if not isinstance(value, u.Quantity):
        return value
    try:
        if isinstance(value.unit, u.LogUnit) or isinstance(value, u.LogQuantity):
            return np.asarray(value.to_value(u.dex(unit)), float)
        if value.unit in (u.dimensionless_unscaled, u.dex):          # already the log, as logz takes it
            return np.asarray(value.value, float)
        linear = np.asarray(value.to_value(unit), float)
    except u.UnitConversionError:
        raise ValueError(f"{name} must be {meaning} as a number, a u.dex({unit}) quantity or a quantity in "
                         f"units of {unit}; got unit {value.unit}") from None
    if np.any(~(linear > 0)):
        raise ValueError(f"{name} given as a linear quantity must be positive (it is converted to {meaning})")
    return np.log10(linear)


def check_logl(logl, name="logl"):
    """Refuse a non-finite log10(L / L_sun) or one outside :data:`~smnet_sps.constants.LOGL_DOMAIN`."""
    # e.g. L in L_sun given as logl: 1e5 made an inf spectrum flagged as good
    _check_in_range(logl, name, *LOGL_DOMAIN, after=", log10(L / L_sun)",
                    advice=f"a luminosity in L_sun goes in as {name}=np.log10(L) or as a Quantity "
                           "(L * u.L_sun)")


def check_logt(logt, name="logt"):
    """Refuse a non-finite log10(Teff / K) or one outside log10 of
    :data:`~smnet_sps.constants.TEFF_DOMAIN` (2.69897 .. 6), naming ``name``: a Teff in K given as logt
    (5777) overflowed 10**logt and was refused as a non-finite *teff*, a logt of 2 as "teff = 100"."""
    _check_in_range(logt, name, *np.log10(TEFF_DOMAIN),
                    after=f", log10(Teff / K) of the physical domain {TEFF_DOMAIN[0]:g} .. "
                          f"{TEFF_DOMAIN[1]:g} K",
                    advice=f"a Teff in K goes in as teff=, or as {name}=np.log10(Teff)")


def _mass_value(value, name="mini", meaning="initial"):
    """Masses (``name``: ``mini`` initial, ``mact`` current) in M_sun from numbers (taken as M_sun) or a mass
    Quantity (or an astropy Column with a mass unit); None stays None."""
    if value is None:
        return None
    value = column_quantity(value, name, "a mass unit")
    if not isinstance(value, u.Quantity):
        return value
    try:
        return np.asarray(value.to_value(u.M_sun), float)
    except u.UnitConversionError:
        raise ValueError(f"{name} must be {meaning} masses in M_sun as numbers or a mass quantity; got unit "
                         f"{value.unit}") from None


def _point_codes(values, name, n, meaning):
    """``phase``, ``co``, ``mini`` or ``mact`` as n finite floats (one value or one per point), or None: a
    masked element, text, NaN or a length that is not the points' was used as given or ignored (masked phases
    made TP-AGB stars)."""
    if values is None:
        return None
    _refuse_masked(values, name)
    arr = np.asarray(values)
    if arr.dtype == bool or arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be numbers ({meaning}); got {arr.dtype} values")
    arr = arr.astype(float).ravel()
    if arr.size not in (1, n):
        raise ValueError(f"{name} has {arr.size} values for {n} points; give one value or one per point")
    _check_finite(arr, name)
    # a phase that is no FSPS code (5.5, 15, -3) or a negative C/O made an ordinary star or an O-rich one
    # without a word (special_phases="dedicated": a 3000 K TP-AGB star given 5.5 lost its Lancon & Mouhcine
    # spectrum, F(7000-7200) / F(7400-7600) 0.69 for 0.16)
    if name == "phase":
        bad = ~np.isin(arr, sorted(PHASE_NAMES))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            codes = ", ".join(map(str, sorted(PHASE_NAMES)))
            raise ValueError(f"phase = {arr[i]:g} (index {i}) is not an FSPS phase code; valid: {codes} "
                             f"({int(bad.sum())} value(s) invalid)")
    elif (arr < 0).any():
        i = int(np.flatnonzero(arr < 0)[0])
        raise ValueError(f"{name} = {arr[i]:g} (index {i}) is negative; {meaning} are >= 0 "
                         f"({int((arr < 0).sum())} value(s) negative)")
    return np.broadcast_to(arr, (n,))


def _check_weighted_sum_inputs(keys, weights):
    """``weighted_sum``'s keys as an int64 (n, 4) array and its weights as a CSR matrix (n_rows, n), refusing
    what went through unchecked: float keys were truncated to integers without a word, weights of
    the wrong width ended in scipy's "matmul: dimension mismatch", NaN weights made a NaN spectrum and
    covered = NaN without a word, negative ones a negative spectrum and covered light."""
    import scipy.sparse as sp
    karr = np.asarray(keys)
    if karr.dtype.kind not in "iu":
        raise ValueError(f"keys must be the integer array point_keys returns (rounded log Teff, log g, [M/H] "
                         f"in KEY_STEP units and the special-phase class); got {karr.dtype} values")
    if karr.ndim != 2 or karr.shape[1] != 4:
        raise ValueError(f"keys must have shape (n, 4), as point_keys returns; got shape {karr.shape}")
    n = karr.shape[0]
    if sp.issparse(weights):
        w = sp.csr_matrix(weights, dtype=float)
        values, shape = w.data, w.shape
    else:
        _refuse_masked(weights, "weights")          # np.asarray summed the hidden weights
        values = np.asarray(weights)
        if values.dtype.kind not in "iuf":
            raise ValueError(f"weights must be numbers [L_sun per point]; got {values.dtype} values")
        values = values.astype(float)               # native float64: scipy.sparse refused >f8 (a FITS column)
        w, shape = (values.reshape(1, -1) if values.ndim == 1 else values), values.shape
    if w.ndim != 2 or w.shape[1] != n:
        raise ValueError(f"weights has shape {shape} for {n} keys; give (n_rows, {n}) [L_sun per "
                         "point], one column per key (a 1-d array of n weights is one row)")
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(f"weights has {int(bad.sum())} non-finite value(s); weights must be finite "
                         "[L_sun per point] (use 0 for a point that carries no light)")
    # a negative luminosity made a negative spectrum and a negative 'covered' light without a word
    neg = values < 0
    if neg.any():
        raise ValueError(f"weights has {int(neg.sum())} negative value(s) (the most negative "
                         f"{values[neg].min():g}); weights are luminosities [L_sun per point], >= 0 (use 0 "
                         "for a point that carries no light)")
    return karr.astype(np.int64, copy=False), sp.csr_matrix(w)


def _integrate(flux, weights):
    """``flux @ weights`` (rows' integrals) without BLAS: einsum's own loop is single-threaded, so it does not
    wake OpenBLAS's thread pool between the generator's batches (memory-bound either way)."""
    return np.einsum("ij,j->i", flux, weights)


def star_scale(flux, wavelength, teff, weights=None):
    """The star rule L_lambda = L f F_lambda / integral(F_lambda): the factor f / integral per spectrum.

    One rule for every caller that turns a generator's surface fluxes into stars (the SSP backend, star
    photometry in :mod:`smnet_sps.distributed`, the pystellibs plugin); multiplied by L [erg/s] it gives
    L_lambda [erg s^-1 A^-1]. See :func:`smnet_sps.generator.luminosity_scale` for f.

    Parameters
    ----------
    flux : array (n, n_wave), surface fluxes F_lambda on ``wavelength``
    wavelength : array (n_wave,) [A], increasing
    teff : array (n,) [K]
    weights : array (n_wave,), optional: :func:`_trapz_weights` of ``wavelength`` (a caller that integrates
        on one grid many times passes them once)

    Returns
    -------
    scale : ndarray (n,) [1/A]; NaN where the spectrum is unusable (a negative or non-finite pixel, or a
        non-positive integral)
    integral : ndarray (n,), each spectrum's trapezoid integral over the grid (non-finite ones as they came)
    """
    wavelength = np.asarray(wavelength, float)
    weights = _trapz_weights(wavelength) if weights is None else weights
    # any NaN/inf pixel makes the integral non-finite, which luminosity_scale turns into NaN
    with np.errstate(invalid="ignore", over="ignore"):
        integral = _integrate(flux, weights)
    return luminosity_scale(integral, wavelength, teff, flux), integral


def star_rule(flux, wavelength, teff, status, target_fraction, weights=None, blackbody_unusable=False):
    """The whole per-star rule, one for every caller that turns generated surface fluxes into stars (the SSP
    backend, star photometry in :mod:`smnet_sps.distributed`, the pystellibs plugin), so that one star gets
    one spectrum on every path: scale to L (:func:`star_scale`), replace an extrapolation whose integral is
    off its generator's target by more than :data:`EXTRAPOLATION_LIMIT` with a blackbody of the same Teff,
    and give no spectrum (NaN scale, status "missing") where the spectrum is unusable.

    Parameters
    ----------
    flux : array (n, n_wave), float, changed in place: the generator's surface fluxes F_lambda on
        ``wavelength`` (a dedicated library's rows already per unit L); rows replaced by a blackbody are
        overwritten with a unit-integral Planck spectrum
    wavelength : array (n_wave,) [A], increasing
    teff : array (n,) [K]
    status : array (n,) of :data:`STATUS` codes as generated: "generator" (inside the coverage),
        "extrapolated" (outside, generated anyway), "dedicated", "missing" (no spectrum)
    target_fraction : array (n,), :meth:`~smnet_sps.generator.Generator.target_fraction` of ``teff``: the
        share of sigma Teff^4 the generator aims its spectra at on its grid
    weights : array (n_wave,), optional: :func:`_trapz_weights` of ``wavelength``
    blackbody_unusable : bool, also give a blackbody to rows without a usable spectrum
        (``outside="blackbody"``)

    Returns
    -------
    scale : ndarray (n,) [1/A]: ``flux * scale[:, None]`` is the star's spectrum per unit L (times L [erg/s]:
        L_lambda [erg s^-1 A^-1]); NaN where the star has no spectrum (status "missing")
    status : ndarray (n,) int8, updated: "missing" where unusable, "blackbody" where replaced
    correction : ndarray (n,), t sigma Teff^4 / integral(F_lambda) of the generator's spectrum (NaN where it
        was not used: dedicated, blackbody, missing)
    usable : ndarray (n,) bool, the spectrum as generated was usable (a caller counts the others as outside)
    """
    wavelength = np.asarray(wavelength, float)
    weights = _trapz_weights(wavelength) if weights is None else weights
    status = np.array(status, np.int8)
    teff = np.asarray(teff, float)
    # f / integral: f the share of sigma Teff^4 the grid holds (what a spectrum on it integrates to);
    # a spectrum with a negative or non-finite pixel is unusable (NaN)
    unit_scale, integ = star_scale(flux, wavelength, teff, weights)
    usable = (status != STATUS["missing"]) & np.isfinite(unit_scale)
    status[~usable] = STATUS["missing"]
    # how far each raw spectrum is from what its generator aims at on the grid (a released checkpoint's
    # "covered" normalisation: sigma Teff^4, not a blackbody's share; judged against that share, its
    # extrapolated stars above ~13 kK all became blackbodies although exactly on target)
    target = SIGMA_SB * teff**4 * np.asarray(target_fraction, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        correction = np.where(usable, target / np.where(usable, integ, 1.0), np.nan)
    dedicated = status == STATUS["dedicated"]
    correction[dedicated] = np.nan              # dedicated spectra are unit-normalised
    scale = np.where(usable, unit_scale, np.nan)
    scale[usable & dedicated] = 1.0             # already per unit L, with their own share
    # An extrapolation whose bolometric flux is off its generator's target by more than 2x is not a
    # spectrum to trust (measured: 16x at 80 kK, log g 5, [M/H] -0.75, 0.75 dex off CM87's one
    # metallicity): a blackbody replaces it.
    implausible = ((status == STATUS["extrapolated"]) & usable
                   & ((correction < 1.0 / EXTRAPOLATION_LIMIT) | (correction > EXTRAPOLATION_LIMIT)))
    fill = implausible | (~usable if blackbody_unusable else False)
    if fill.any():
        bb = planck_surface_flux(wavelength, teff[fill])
        flux[fill] = bb / _integrate(bb, weights)[:, None]      # already unit-integral
        scale[fill] = planck_fraction(wavelength[0], wavelength[-1], teff[fill])
        status[fill] = STATUS["blackbody"]
        correction[fill] = np.nan               # the generator's spectrum was not used
    return scale, status, correction, usable


def _check_device(device, generator, loaded):
    """Refuse a ``device`` the backend would ignore: a name no generator runs on (device="gpu" with
    "blackbody" or a Generator passed in went through), or, for a Generator passed in (``loaded`` False),
    another device than the one it runs on (device="cuda" with a CPU generator computed on the CPU)."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return
    from .neural import resolve_device
    want = resolve_device(device)              # unknown or unavailable here: a ValueError naming it
    if loaded or getattr(generator, "device", None) is None:
        # loaded by name on that device; an analytic generator (the blackbody) has none and computes on
        # the host for any device (`--generator blackbody --device cuda` loads it as an object first)
        return
    import torch
    have = torch.device(generator.device)
    if want.type != have.type or None not in (want.index, have.index) and want.index != have.index:
        raise ValueError(f"device={device!r}: the generator given ({generator.name!r}) runs on {have}, and "
                         "the backend does not move it; load it on that device (load_generator(..., "
                         f"device={str(device)!r})) or leave device='auto'")


def _scipy_csc_matvecs():
    """scipy's kernel of ``csc @ x`` (private: ``scipy.sparse._sparsetools.csc_matvecs``), or None where a
    scipy release no longer has it (then :func:`_add_product` adds column by column in numpy, the same
    order)."""
    try:
        from scipy.sparse import _sparsetools
        return _sparsetools.csc_matvecs
    except (ImportError, AttributeError):
        return None


def _add_product(out, csc, x):
    """``out += csc @ x`` (out C-contiguous float64 (n_rows, n_wave), ``csc`` a CSC matrix (n_rows, n),
    ``x`` float64 (n, n_wave)), added into ``out`` point after point in column order: scipy's own kernel of
    ``csc @ x`` (``csc_matvecs``), writing into ``out`` instead of zeros. A batch's product added to ``out``
    grouped each row's sum by batch, so a sum streamed in batches differed from one made at once; added
    point after point, it is the same bit for bit however the columns are batched."""
    x = np.ascontiguousarray(x, float)
    if not (out.flags.c_contiguous and out.dtype == np.float64):
        raise ValueError("_add_product needs a C-contiguous float64 out")
    csc = csc.astype(float, copy=False)
    csc.sum_duplicates()                   # one entry per (row, point): the column loop below adds each once
    kernel = _scipy_csc_matvecs()
    if kernel is not None:
        try:
            kernel(csc.shape[0], csc.shape[1], x.shape[1], csc.indptr, csc.indices, csc.data, x.ravel(),
                   out.ravel())
            return
        except TypeError:                  # another signature in a later scipy: refused before adding
            pass
    for j in range(csc.shape[1]):          # the same order, in numpy: point after point
        lo, hi = csc.indptr[j], csc.indptr[j + 1]
        if hi > lo:
            out[csc.indices[lo:hi]] += csc.data[lo:hi, None] * x[j]


def _new_timing():
    return {"generator_s": 0.0, "generator_cpu_s": 0.0, "coverage_s": 0.0, "n_generated": 0}


class StellarLibraryBackend:
    """Turns isochrone points into stellar spectra L_lambda with one batched generator call.

    Parameters
    ----------
    generator : Generator, str or None
        None -> :func:`smnet_sps.neural.load_generator` (the shipped default model); a name (``"default"``,
        ``"semi-empirical"``, ``"blackbody"``) or a model directory is resolved as ``ssp_spectrum`` resolves
        it (:func:`smnet_sps.ssp.resolve_generator`). Anything else is a ValueError.
    special_phases : {"model", "dedicated"}
        How TP-AGB, post-AGB and Wolf-Rayet stars are treated (see the module docstring; default "model").
    outside : {"exclude", "blackbody", "extrapolate"}
        Rule for points outside the generator's coverage (default "extrapolate": generated and flagged).
    device : str, passed to ``load_generator`` when ``generator`` is None or a name; with a Generator,
        anything but ``"auto"`` must be the device it runs on (the backend does not move it; else a
        ValueError).
    cache_size : int >= 0
        Maximum number of per-point spectra kept (float32; 20,000 x 1,221 px = 98 MB); 0: no cache.
    batch_size : int >= 1 or None
        Points per generator forward pass, and per streamed chunk of a large request. None: 4,096 on the
        CPU (measured on the shipped model: peak memory +0.27 GB at 4,096 against +0.4-0.9 GB at 8,192, same
        speed), 16,384 on a GPU.
    """

    def __init__(self, generator=None, special_phases="model", outside="extrapolate", device="auto",
                 cache_size=20000, batch_size=None, phase_libraries=None):
        if special_phases not in SPECIAL_MODES:
            raise ValueError(f"unknown special_phases {special_phases!r}; valid: {', '.join(SPECIAL_MODES)}")
        if outside not in OUTSIDE_MODES:
            raise ValueError(f"unknown outside rule {outside!r}; valid: {', '.join(OUTSIDE_MODES)}")
        cache_size = _check_count(cache_size, "cache_size", 0, "0: no per-point cache")
        if batch_size is not None:
            batch_size = _check_count(batch_size, "batch_size", 1)
        if generator is None:
            from .neural import load_generator
            generator = load_generator(device=device)
        else:
            # a name, as ssp_spectrum takes it (a str had no attribute 'wavelength'), or a Generator; anything
            # else a ValueError saying what is accepted
            from .ssp import resolve_generator
            given = generator
            generator = resolve_generator(os.fspath(generator) if isinstance(generator, os.PathLike)
                                          else generator, device)
            _check_device(device, generator, loaded=generator is not given)
        if batch_size is None:
            batch_size = 16384 if str(getattr(generator, "device", "cpu")).startswith("cuda") else 4096
        self.generator = generator
        self.special_phases = special_phases
        self.outside = outside
        self.cache_size = cache_size
        self.batch_size = batch_size
        self.wavelength = own_wavelength(generator.wavelength)     # a user generator's may be writable
        if self.wavelength.ndim != 1 or self.wavelength.size < 2 or not np.all(np.diff(self.wavelength) > 0):
            name = getattr(generator, "name", generator)
            raise ValueError(f"generator {name!r} has no strictly increasing wavelength grid [A]; the "
                             "backend integrates its spectra over it")
        self._wint = _trapz_weights(self.wavelength)
        # per-point cache, vectorised: packed key -> slot of a ring buffer of unit spectra (float32), filled
        # first in, first out; allocated on first use. Threads share a backend (get_backend, a Dask worker's
        # threads): the index, the ring buffer and the counters are read and changed under one lock
        self._slot_of = {}
        self._store = None
        self._next_slot = 0
        self._lock = threading.Lock()
        self._phase_libs = phase_libraries
        # in key: None for the shipped libraries; custom ones by a hash of their spectra as read (an id of
        # the dict served one backend's SSPs to another made from the same dict edited in place)
        self._phase_libs_token = None
        self.hits = self.misses = 0
        self._face_cache = None            # the box faces keys snap onto (_faces), on first use
        if special_phases == "dedicated":
            self._load_phase_libraries()

    # ---- identity -------------------------------------------------------------------------------
    def __getstate__(self):
        # a lock cannot be pickled (prospector's and emcee's process pools pickle the population holding this
        # backend; copy.deepcopy too): a copy gets a lock of its own
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def key(self):
        """Identity of the backend's spectra: generator + options (used by SSP-level caches), and the phase
        libraries when they are not the shipped ones (another backend's SSPs were served from the cache)."""
        return (self.generator.name, id(self.generator), self.special_phases, self.outside,
                self._phase_libs_token)

    def __repr__(self):
        return (f"StellarLibraryBackend(generator={self.generator.name!r}, "
                f"special_phases={self.special_phases!r},"
                f" outside={self.outside!r}, cached={len(self._slot_of)})")

    def clear_cache(self):
        with self._lock:
            self._slot_of.clear()
            self._store = None
            self._next_slot = 0
            self.hits = self.misses = 0

    # ---- dedicated phase libraries --------------------------------------------------------------
    def _load_phase_libraries(self):
        shipped = self._phase_libs is None
        if shipped:
            try:
                from .grid import load_phase_libraries
            except ImportError as exc:
                raise ValueError("special_phases='dedicated' needs smnet_sps.grid.load_phase_libraries "
                                 "(smnet_sps/data/phase_libraries.npz), which is not available; use "
                                 "special_phases='model'") from exc
            try:
                libs = load_phase_libraries()
            except FileNotFoundError as exc:
                raise ValueError(f"special_phases='dedicated' needs the phase libraries file, not found "
                                 f"({exc}); use special_phases='model' or build it with `smnet-sps grid "
                                 f"build`") from exc
            self._phase_libs = libs
        raw = dict(self._phase_libs)
        src_wave = raw.pop("wavelength", None)
        if src_wave is not None:
            src_wave = np.asarray(u.Quantity(src_wave, u.AA).value, float)
        libs, tables = {}, {}
        for name, lib in raw.items():
            teff = np.asarray(u.Quantity(_get(lib, "teff", 0), u.K).value, float)
            logz = np.asarray(_get(lib, "logz", 1), float)
            flux = _get(lib, "flux", 2)
            flux = np.array(flux.value if isinstance(flux, u.Quantity) else flux, float)
            mask = np.asarray(_get(lib, "mask", 3), bool) & np.isfinite(flux)
            if flux.ndim != 2 or flux.shape[0] != teff.size:
                raise ValueError(f"phase library {name!r}: flux shape {flux.shape} does not match its "
                                 f"{teff.size} Teff values")
            flux = np.where(mask, np.maximum(flux, 0.0), 0.0)
            flux = _fill_masked_with_planck(flux, mask, teff, src_wave if src_wave is not None
                                            else self.wavelength)
            # the part of each library spectrum's light that lands on the generator's grid (1 on its own grid)
            on_grid = np.ones(teff.size)
            if src_wave is not None and not (src_wave.size == self.wavelength.size
                                             and np.allclose(src_wave, self.wavelength, rtol=1e-6)):
                # onto the generator's grid (linear; zero outside the library's range), keeping the share of
                # its light the library puts there: a blackbody's share (what the generator's spectra get)
                # made a WC star on 3,000 A - 10 um 0.58x too faint, a post-AGB star 1.28x too bright
                native = _integrate(flux, _trapz_weights(src_wave))
                flux = np.array([np.interp(self.wavelength, src_wave, f, left=0.0, right=0.0) for f in flux])
                with np.errstate(invalid="ignore", divide="ignore"):
                    on_grid = np.where(native > 0, _integrate(flux, self._wint) / native, 0.0)
            elif flux.shape[1] != self.wavelength.size:
                raise ValueError(f"phase library {name!r} has {flux.shape[1]} pixels and no wavelength grid; "
                                 f"the generator has {self.wavelength.size}")
            # NaN [M/H] = not metallicity specific: one group, used at every metallicity
            logz = np.where(np.isfinite(logz), logz, 0.0)
            integ = _integrate(flux, self._wint)
            good = integ > 0
            libs[name] = (teff[good], logz[good], flux[good] / integ[good, None], on_grid[good])
            table = _teff_table(name, lib, teff.size)
            if table is not None:
                tables[name] = (table[0], table[1][good])
        need = {"cmfgen_wn", "cmfgen_wc", "tpagb_orich", "rauch_pagb"}
        if not need <= set(libs):
            raise ValueError(f"phase libraries lack {sorted(need - set(libs))}; found {sorted(libs)}")
        self._dedicated = libs
        self._dedicated_teff_tables = tables
        # the libraries hold sigma Teff^4 over their native range; as for the generator's stars, that range
        # is taken to hold a blackbody's share of L (on the default grid, the libraries' own, as before)
        native = src_wave if src_wave is not None else self.wavelength
        self._dedicated_range = (float(native[0]), float(native[-1]))
        if not shipped:
            h = hashlib.sha1(repr(self._dedicated_range).encode())
            for name in sorted(libs):
                h.update(name.encode())
                for a in libs[name] + tables.get(name, ()):
                    h.update(f"{a.dtype}{a.shape}".encode())
                    h.update(np.ascontiguousarray(a).tobytes())
            self._phase_libs_token = h.hexdigest()

    def _dedicated_name(self, cls):
        if cls == _CLASS_WN:
            return "cmfgen_wn"
        if cls == _CLASS_WC:
            return "cmfgen_wc"
        if cls == _CLASS_TPAGB_O:
            return "tpagb_orich"
        if cls == _CLASS_PAGB:
            return "rauch_pagb"
        for name in ("tpagb_crich_aringer", "tpagb_crich"):
            if name in self._dedicated:
                return name
        return "tpagb_orich"

    def _library_teff(self, name, logz):
        """Teff [K] of each spectrum of library ``name`` for a star of [M/H] ``logz``: its own Teff, or for a
        library with a Teff(Z) table (O-rich TP-AGB) the table linearly interpolated in log Z/Zsun, clipped
        to the table's range. FSPS (sps_setup.f90 -> agb_logt_o(z,:), used by getspec.f90) interpolates the
        same table linearly between the enclosing columns, but extrapolates beyond them; an empirical
        colour-Teff relation is not extrapolated here (the edge columns are [M/H] -1.98 and +0.2)."""
        table = self._dedicated_teff_tables.get(name)
        if table is None:
            return self._dedicated[name][0]
        lzt, tt = table
        if lzt.size == 1:
            return tt[:, 0]
        z = float(np.clip(logz, lzt[0], lzt[-1]))
        j = int(np.clip(np.searchsorted(lzt, z) - 1, 0, lzt.size - 2))
        x = (z - lzt[j]) / (lzt[j + 1] - lzt[j])
        return (1 - x) * tt[:, j] + x * tt[:, j + 1]

    def _dedicated_spectra(self, cls, teff, logz):
        """Spectra per unit luminosity from a dedicated library: [M/H] set by :data:`_LOGZ_SPLIT` or nearest,
        linear in Teff (the spectra's Teff at the star's [M/H] for a library with a Teff(Z) table, see
        :meth:`_library_teff`), each integrating to its share of L on the grid (a blackbody's over the
        library's native range, times the part of the library's spectrum on the grid). Outside the Teff range
        -> NaN, used and inside False; except that a WR star hotter than its library's top
        (:data:`_HELD_AT_TOP`) takes the hottest spectrum: used, not inside.

        Returns
        -------
        out : ndarray (n, n_wave) [1/A]; used : bool (n,), a spectrum was made; inside : bool (n,), within
        the library's Teff range
        """
        name = self._dedicated_name(cls)
        _, lz, lf, part = self._dedicated[name]
        share = np.zeros(teff.size)
        out = np.full((teff.size, self.wavelength.size), np.nan)
        used = np.zeros(teff.size, bool)
        inside = np.zeros(teff.size, bool)
        zs = np.unique(lz)
        split = _LOGZ_SPLIT.get(name)
        for i in range(teff.size):
            if split is None:
                z = zs[np.argmin(np.abs(zs - logz[i]))]
            else:
                z = zs[0] if logz[i] <= split else zs[-1]
            lt = self._library_teff(name, logz[i])
            sel = np.flatnonzero(lz == z)
            order = sel[np.argsort(lt[sel])]
            t = lt[order]
            if t.size == 0 or teff[i] < t[0]:
                continue
            inside[i] = teff[i] <= t[-1]
            if not inside[i] and name not in _HELD_AT_TOP:
                continue
            ti = min(teff[i], t[-1])
            j = int(np.clip(np.searchsorted(t, ti) - 1, 0, max(t.size - 2, 0)))
            if t.size == 1:
                out[i], share[i] = lf[order[0]], part[order[0]]
            else:
                x = (ti - t[j]) / (t[j + 1] - t[j]) if t[j + 1] > t[j] else 0.0
                out[i] = (1 - x) * lf[order[j]] + x * lf[order[j + 1]]
                share[i] = (1 - x) * part[order[j]] + x * part[order[j + 1]]
            used[i] = True
        # the share of L on the grid is the star's own Teff's (a held spectrum keeps the star's L accounting)
        share = share * planck_fraction(*self._dedicated_range, teff)
        out = out * share[:, None]
        return out, used, inside

    # ---- keys -----------------------------------------------------------------------------------
    def _classes(self, phase, co, teff, mini=None, mact=None):
        n = teff.size
        phase = _point_codes(phase, "phase", n, "FSPS phase codes")
        co = _point_codes(co, "co", n, "surface C/O ratios")
        mini = _point_codes(_mass_value(mini), "mini", n, "initial masses [M_sun]")
        mact = _point_codes(_mass_value(mact, "mact", "current"), "mact", n, "current masses [M_sun]")
        cls = np.zeros(n, np.int64)
        if self.special_phases != "dedicated" or (phase is None and mini is None and mact is None):
            return cls
        if (mini is None) != (mact is None):
            # one of the two would leave the rule half-applied: initial mass alone gave zero-age O stars WR
            # spectra, and dropping the rule without a word would not give what the caller asked for
            given, missing = ("mini", "mact") if mact is None else ("mact", "mini")
            raise ValueError(f"{given} given without {missing}: special_phases='dedicated' needs both the "
                             "initial (mini) and current (mact) masses [M_sun] to find the Wolf-Rayet-like "
                             "stars (wr_like); give both, or neither (then only phase-9 stars are WR)")
        if mini is not None:
            # massive, stripped stars hotter than WM-basic reach the WR spectra as phase-9 stars do (wr_like)
            phase = np.where(wr_like(mini, mact, teff), 9.0, 0.0 if phase is None else phase)
        crich = (co if co is not None else np.zeros(n)) > 1.0
        cls[(phase == 5) & ~crich] = _CLASS_TPAGB_O
        cls[(phase == 5) & crich] = _CLASS_TPAGB_C
        cls[(phase == 9) & ~crich] = _CLASS_WN
        cls[(phase == 9) & crich] = _CLASS_WC
        cls[phase == 6] = _CLASS_PAGB
        return cls

    def _keys(self, logt, logg, logz, cls):
        k = np.empty((logt.size, 4), np.int64)
        k[:, 0] = np.rint(logt * _KEY_SCALE[0])
        k[:, 1] = np.rint(logg * _KEY_SCALE[1])
        k[:, 2] = np.rint(logz * _KEY_SCALE[2])
        k[:, 3] = cls
        return k

    def _faces(self):
        """Per parameter (log Teff, log g, [M/H]), the box faces of the generator, its libraries and the
        dedicated libraries' Teff ranges, and the physical domain: the values a key is snapped onto."""
        if self._face_cache is None:
            from .constants import LOGG_DOMAIN, LOGZ_DOMAIN, TEFF_DOMAIN
            from .mixture import widen_single_metallicity
            boxes = [self.generator.box, *getattr(self.generator, "library_boxes", {}).values()]
            teff, logg, logz = set(TEFF_DOMAIN), set(LOGG_DOMAIN), set(LOGZ_DOMAIN)
            for box in boxes:
                bounds = widen_single_metallicity((box.teff, box.logg, box.logz))
                for values, pair in zip((teff, logg, logz), bounds):
                    values.update(pair)
            for lt, *_ in (getattr(self, "_dedicated", None) or {}).values():
                teff.update((float(np.min(lt)), float(np.max(lt))))
            for _, table in (getattr(self, "_dedicated_teff_tables", None) or {}).values():
                teff.update(table.min(0).tolist() + table.max(0).tolist())   # each tabulated [M/H]'s range
            self._face_cache = tuple(np.array(sorted(v for v in values if np.isfinite(v)), float)
                                     for values in (teff, logg, logz))
        return self._face_cache

    def _key_parameters(self, keys):
        """(Teff [K], log g, [M/H]) a key stands for: the rounded values, except that a value within half a
        key step of a box face (a library's, the generator's, a dedicated library's Teff range) is that face.
        Rounding moved stars on a face outside it (50,000 K, CK04's top and a CK04 node, became 50,003 K:
        outside="exclude" dropped it); snapped, every point of a key gets the same answer in every path."""
        logt, logg, logz = (keys[:, j] / _KEY_SCALE[j] for j in range(3))
        teff = 10.0**logt
        half = 0.5 * KEY_STEP * (1 + 1e-9)
        faces_t, faces_g, faces_z = self._faces()
        columns = ((teff, logt, faces_t, np.log10(faces_t)), (logg, logg, faces_g, faces_g),
                   (logz, logz, faces_z, faces_z))
        for values, key_values, faces, probe in columns:
            if faces.size and values.size:
                dist = np.abs(key_values[:, None] - probe[None, :])       # (n keys, a few dozen faces)
                nearest = dist.argmin(1)
                snap = dist[np.arange(values.size), nearest] <= half
                values[snap] = faces[nearest[snap]]
        return teff, logg, logz

    # ---- computing unit spectra ----------------------------------------------------------------
    def _compute(self, keys, progress=False, timing=None):
        """Unit-integral spectra (n, n_wave) [1/A] + status, inside, correction for rounded keys.

        ``timing`` (dict, optional) accumulates ``generator_s`` (inside the generator's ``stream``),
        ``coverage_s`` and ``n_generated``.
        """
        timing = _new_timing() if timing is None else timing
        teff, logg, logz = self._key_parameters(keys)
        cls = keys[:, 3]
        n = keys.shape[0]
        flux = np.zeros((n, self.wavelength.size))       # rows never computed stay zero (missing)
        status = np.full(n, STATUS["missing"], np.int8)
        inside = np.zeros(n, bool)
        ordinary = cls == 0
        for c in np.unique(cls[~ordinary]):
            idx = np.flatnonzero(cls == c)
            f, use, ins = self._dedicated_spectra(int(c), teff[idx], logz[idx])
            flux[idx[use]] = f[use]
            status[idx[use]] = STATUS["dedicated"]
            inside[idx[use]] = ins[use]
            ordinary[idx[~use]] = True        # outside the library's Teff range (not held): use the model
        if ordinary.any():
            idx = np.flatnonzero(ordinary)
            if self.outside == "extrapolate":
                run = idx                  # every point is generated; coverage comes back with the spectra
            else:
                t0 = time.perf_counter()
                cov = self.generator.in_coverage(teff[idx], logg[idx], logz[idx])
                timing["coverage_s"] += time.perf_counter() - t0
                inside[idx] = cov
                run = idx[cov]
            if run.size:
                t0, c0 = time.perf_counter(), time.process_time()
                with _quiet_coverage():
                    # coverage is reported through the status flags, not one warning per call
                    batches = self.generator.stream(teff[run], logg[run], logz[run],
                                                    batch_size=self.batch_size, progress=progress)
                    for sl, f, cov in batches:
                        if sl.start == 0 and sl.stop == n:
                            flux = np.asarray(f, float)   # one batch of all points: no copy of the block
                        else:
                            flux[run[sl]] = f
                        inside[run[sl]] = cov
                timing["generator_s"] += time.perf_counter() - t0
                timing["generator_cpu_s"] += time.process_time() - c0
                timing["n_generated"] += run.size
                status[run] = np.where(inside[run], STATUS["generator"], STATUS["extrapolated"])
        # the one per-star rule (star_rule): scale to L, blackbody for an implausible extrapolation (or any
        # unusable spectrum with outside="blackbody"); unusable spectra become outside points
        scale, status, correction, usable = star_rule(flux, self.wavelength, teff, status,
                                                      self.generator.target_fraction(teff), self._wint,
                                                      blackbody_unusable=self.outside == "blackbody")
        inside[~usable] = False        # an unusable spectrum counts as outside (it kept inside=True)
        bad = status == STATUS["missing"]
        if bad.any():
            flux[bad] = 0.0                      # NaN rows must not leak through a product with weight 0
            scale[bad] = 0.0
        flux *= scale[:, None]
        return flux, status, inside, correction

    def _unit_spectra_keys(self, ukeys, use_cache=True, timing=None):
        """Unit spectra for unique keys, through the per-point cache (vectorised lookups and stores)."""
        n = ukeys.shape[0]
        if not use_cache or self.cache_size == 0:
            return self._compute(ukeys, timing=timing)
        packed, fits = _pack_keys(ukeys)
        out = np.empty((n, self.wavelength.size), np.float32)
        status = np.empty(n, np.int8)
        inside = np.empty(n, bool)
        corr = np.empty(n)
        with self._lock:          # the hits are copied out before another thread can reuse their slots
            slot_of = self._slot_of
            slots = np.fromiter((slot_of.get(k, -1) for k in packed.tolist()), np.int64, n)
            slots[~fits] = -1
            hit = slots >= 0
            if hit.any():
                st = self._store
                src = slots[hit]
                out[hit], status[hit], inside[hit], corr[hit] = st[0][src], st[1][src], st[2][src], st[3][src]
            todo = np.flatnonzero(~hit)
            self.hits += n - todo.size
            self.misses += todo.size
        if todo.size:
            f, s, ins, c = self._compute(ukeys[todo], timing=timing)      # outside the lock: threads overlap
            out[todo], status[todo], inside[todo], corr[todo] = f, s, ins, c
            keep = todo[fits[todo]][-self.cache_size:]        # what fits the key packing and the cache
            with self._lock:
                self._store_rows(packed[keep], out[keep], status[keep], inside[keep], corr[keep])
        return out, status, inside, corr

    def _store_rows(self, packed, flux, status, inside, corr):
        """Put rows into the ring buffer, replacing the oldest entries (called holding ``self._lock``)."""
        if not packed.size:
            return
        if self._store is None:
            size = self.cache_size
            self._store = (np.empty((size, self.wavelength.size), np.float32), np.empty(size, np.int8),
                           np.empty(size, bool), np.empty(size), np.full(size, -1, np.int64))
        store, st_status, st_inside, st_corr, st_key = self._store
        slots = (self._next_slot + np.arange(packed.size)) % self.cache_size
        self._next_slot = int((self._next_slot + packed.size) % self.cache_size)
        for old, slot in zip(st_key[slots].tolist(), slots.tolist()):      # evict what those slots held
            # (only if the index still points there: another thread may have stored that key again since)
            if old != -1 and self._slot_of.get(old) == slot:
                del self._slot_of[old]
        store[slots], st_status[slots], st_inside[slots], st_corr[slots] = flux, status, inside, corr
        st_key[slots] = packed
        self._slot_of.update(zip(packed.tolist(), slots.tolist()))

    # ---- public API -----------------------------------------------------------------------------
    def _prepare(self, teff, logt, logg, logz, logl, phase, co, mini=None, mact=None):
        if (teff is None) == (logt is None):
            raise ValueError("give exactly one of teff [K] or logt [log10 K]")
        # the generator's own checks: a string, a boolean (logl=True was taken as 10 L_sun) or a masked
        # element (its hidden value was used) is refused, not converted
        for name, value in (("teff", teff), ("logt", logt), ("logg", logg), ("logz", logz), ("logl", logl)):
            _refuse_masked(value, name)
        # units as the generators read them (a Quantity's unit was dropped: logl = 1 L_sun came out 10 L_sun)
        logl = _as_float_array(_log_value(logl, "logl", u.L_sun, "log10(L / L_sun)"), "logl")
        if teff is None:
            logt = _as_float_array(_log_value(logt, "logt", u.K, "log10(Teff / K)"), "logt")
            check_logt(logt)
            # clipped: logt = log10(500) gave 499.99999999999994 K, refused as "teff = 500 is outside 500 .."
            teff = np.clip(10.0**logt, *TEFF_DOMAIN)
        else:
            teff = _as_float_array(_teff_value(teff), "teff")
        logg, logz = _as_float_array(_logg_value(logg), "logg"), _as_float_array(_logz_value(logz), "logz")
        given = {"teff" if logt is None else "logt": teff, "logg": logg, "logz": logz, "logl": logl}
        try:
            arrays = np.broadcast_arrays(*given.values())
        except ValueError:
            shapes = ", ".join(f"{k} {np.shape(v)}" for k, v in given.items())
            raise ValueError(f"the points' parameters cannot be broadcast together: {shapes}") from None
        teff, logg, logz, logl = (np.ascontiguousarray(a).ravel() for a in arrays)
        # the generators' physical domain, checked here on the values given (not on the rounded, deduplicated
        # keys: the index and value named were the keys'; and dedicated spectra never reached the check)
        teff, logg, logz = validate_parameters(teff, logg, logz)
        check_logl(logl)
        cls = self._classes(phase, co, teff, mini, mact)
        return teff, logg, logz, logl, cls

    def point_spectra(self, *, logg, logz, logl, teff=None, logt=None, phase=None, co=None, mini=None,
                      mact=None, use_cache=True):
        """L_lambda of isochrone points, in one batched generator call.

        Each point is generated at (log Teff, log g, [M/H]) rounded to :data:`KEY_STEP` (1e-4 dex; a value
        within half a step of a library's box face is put on the face) -- lossless for PARSEC / Padova
        tables (4 decimals), up to ~0.5 % in bright UV pixels for continuous inputs (9,000 K: log Teff moves
        by <= 5e-5 dex); docs/ssp.md, "Deduplication". Call the generator itself for exact parameters.

        Parameters
        ----------
        logg : array, log10 surface gravity [cm s^-2] (or a Quantity, as the generators take it)
        logz : array, [M/H] [dex]
        logl : array, log10(L / L_sun); or a ``u.dex(u.L_sun)`` or luminosity Quantity (converted)
        teff : array or Quantity [K], or ``logt`` : array, log10(Teff / K) (give exactly one)
        phase : array of FSPS phase codes, -1 .. 9 (optional; used by ``special_phases="dedicated"``; another
            value is a ValueError)
        co : array of surface C/O >= 0 (optional; C/O > 1 selects WC / C-rich spectra)
        mini, mact : arrays of initial and current masses [M_sun] (or mass Quantities; optional, both or
            neither: one without the other is a ValueError under ``special_phases="dedicated"``; there a
            star that :func:`wr_like` finds massive, hotter than 50 kK and stripped (mact < 0.8 mini) gets
            the WR spectra of a phase-9 star, whatever its ``phase``; without them only phase 9 does)

        Returns
        -------
        PointSpectra (``.as_spectrum()`` gives a specutils.Spectrum in erg s^-1 A^-1)
        """
        use_cache = check_switch(use_cache, "use_cache")      # "False" was truthy: the cache was used
        teff, logg, logz, logl, cls = self._prepare(teff, logt, logg, logz, logl, phase, co, mini, mact)
        keys = self._keys(np.log10(teff), logg, logz, cls)
        ukeys, inv = _unique_rows(keys)
        nu, bs = ukeys.shape[0], self.batch_size
        lum = 10.0**logl
        lum_erg = lum * L_SUN
        # batch after batch of unique points, each written straight into the output: the peak is the output
        # plus one batch (all points in one float64 block, then float32 and float64 copies, made 100,000
        # points' 0.98 GB of output peak at +2.6 GB)
        llam = np.empty((inv.size, self.wavelength.size))
        s, ins, c, integ = np.empty(nu, np.int8), np.empty(nu, bool), np.empty(nu), np.empty(nu)
        by_key = np.argsort(inv, kind="stable")                      # the points, batch after batch
        first = np.searchsorted(inv[by_key], np.arange(0, nu + bs, bs))
        for b, s0 in enumerate(range(0, nu, bs)):
            sl = slice(s0, min(s0 + bs, nu))
            f, s[sl], ins[sl], c[sl] = self._unit_spectra_keys(ukeys[sl], use_cache)
            f = _cache_precision(f)       # the float32 of the cache also without it (use_cache=False)
            integ[sl] = _integrate(f, self._wint)
            points = by_key[first[b]:first[b + 1]]
            for p0 in range(0, points.size, bs):            # a batch's points: duplicates may be many
                p = points[p0:p0 + bs]
                llam[p] = f[inv[p] - s0] * lum_erg[p, None]
            del f
        status = s[inv]
        # the share of each star's light on the grid: what its unit spectrum integrates to (a blackbody's
        # share for the generator's spectra, a dedicated library's own; none for a point without a spectrum)
        on_grid = np.where(status == STATUS["missing"], 0.0, integ[inv])
        return PointSpectra(self.wavelength, llam, status, ins[inv], c[inv], lum, on_grid)

    def weighted_sum(self, keys, weights, *, progress=False, use_cache=None, desc="stellar spectra",
                     stats=None):
        """Sum of unit spectra with per-row weights: ``weights @ unit_spectra(keys)``.

        Points are deduplicated on their keys (:data:`KEY_STEP`) first, so each distinct point reaches the
        generator once. Without the cache the unique points are streamed through the generator in batches
        of ``batch_size``: memory is bounded by one batch of spectra plus the (n_rows, n_wave) result.

        Parameters
        ----------
        keys : int array (n, 4) from :meth:`point_keys` (anything else is a ValueError)
        weights : scipy.sparse or dense (n_rows, n) [L_sun per point], finite and >= 0 (a 1-d array of n:
            one row); another shape or a NaN / inf / negative weight is a ValueError
        progress : bool or None, a tqdm bar over the generator's batches (none for work done in one batch);
            None: on a terminal or in a notebook only (:func:`smnet_sps.progress.want_progress`)
        use_cache : bool or None; None -> cache when the unique points fit in the cache
        stats : dict or None; if given, filled with ``n_points``, ``n_unique`` (points sent to the generator
            or found in the cache), ``n_generated``, ``seconds`` (wall) and ``cpu_s`` (this process's CPU
            time), and the wall time spent in ``generator_s`` (the generator's ``stream``; its CPU time in
            ``generator_cpu_s``), ``coverage_s``, ``dedup_s`` and ``accumulate_s`` (weights @ spectra)

        Returns
        -------
        flux : ndarray (n_rows, n_wave) [L_sun / A] (weights' unit per A)
        covered : ndarray (n_rows,) luminosity with a spectrum (generator, dedicated or blackbody)
        status : ndarray (n,) int8 per input point
        correction : ndarray (n,) per input point
        """
        import scipy.sparse as sp

        t_start, c_start = time.perf_counter(), time.process_time()
        timing = _new_timing()
        progress = want_progress(progress)
        if use_cache is not None:
            use_cache = check_switch(use_cache, "use_cache")
        keys, weights = _check_weighted_sum_inputs(keys, weights)
        ukeys, inv = _unique_rows(keys)
        n, nu = keys.shape[0], ukeys.shape[0]
        proj = sp.csr_matrix((np.ones(n), (np.arange(n), inv)), shape=(n, nu))
        W = weights @ proj                                   # (n_rows, n_unique), duplicates summed
        t_dedup = time.perf_counter() - t_start
        t_acc = 0.0
        if use_cache is None:
            use_cache = nu <= self.cache_size
        n_rows = W.shape[0]
        flux = np.zeros((n_rows, self.wavelength.size))
        status = np.empty(nu, np.int8)
        corr = np.empty(nu)
        # Both paths give the same numbers bit for bit, so that a result does not depend on which one made
        # it (an SSP cached from a large grid's streamed pass differed from the same SSP made alone by up to
        # 5e-8): the unit spectra as the per-point cache holds them (float32), and each row's sum taken point
        # after point in key order, batch after batch (_add_product)
        Wc = W.tocsc()
        if use_cache:
            f, status, _, corr = self._unit_spectra_keys(ukeys, True, timing=timing)
            t0 = time.perf_counter()
            # sparse product (about one weight per point), single-threaded: a dense BLAS product here woke
            # OpenBLAS's threads, measured +40 ms of CPU per new SSP next to the generator's own threads
            # (float32 also without a cache, cache_size=0)
            _add_product(flux, Wc, _cache_precision(f))
            t_acc += time.perf_counter() - t0
        else:
            bar = None
            if progress and nu > self.batch_size:        # no bar for work done in one batch
                from tqdm.auto import tqdm
                bar = tqdm(total=nu, desc=f"{self.generator.name} {desc}", unit="star", unit_scale=True)
            try:
                for s0 in range(0, nu, self.batch_size):
                    sl = slice(s0, min(s0 + self.batch_size, nu))
                    f, status[sl], _, corr[sl] = self._compute(ukeys[sl], timing=timing)
                    t0 = time.perf_counter()
                    unit = _cache_precision(f)                 # as the per-point cache holds them
                    _add_product(flux, Wc[:, sl], unit)
                    t_acc += time.perf_counter() - t0
                    del f, unit                             # one batch of spectra alive at a time
                    if bar is not None:
                        bar.update(sl.stop - sl.start)
            finally:        # also on Ctrl-C or an error: the bar's line ends before the error's line
                if bar is not None:
                    bar.close()
        has = (status != STATUS["missing"]).astype(float)
        covered = np.asarray(W @ has).ravel()
        if stats is not None:
            stats.update(n_points=int(n), n_unique=int(nu), dedup_s=t_dedup, accumulate_s=t_acc,
                         seconds=time.perf_counter() - t_start, cpu_s=time.process_time() - c_start, **timing)
        return flux, covered, status[inv], corr[inv]

    def point_keys(self, logt, logg, logz, phase=None, co=None, mini=None, mact=None):
        """Cache keys (rounded log Teff, log g, [M/H], special-phase class) of points, shape (n, 4);
        ``phase``, ``co``, ``mini`` and ``mact`` [M_sun] as :meth:`point_spectra` takes them."""
        teff, logg, logz, _, cls = self._prepare(None, logt, logg, logz, 0.0, phase, co, mini, mact)
        return self._keys(np.log10(teff), logg, logz, cls)
