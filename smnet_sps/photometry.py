"""Synthetic photometry with synphot: stars and SSPs, AB / ST / Vega, batched.

The integral is synphot's photon-counting effective stimulus (``Observation.effstim``)::

    <f_lambda> = int f_lambda(l) T(l) l dl / int T(l) l dl          [erg s^-1 cm^-2 A^-1]

on the union of the spectrum's and the filter's wavelengths, with trapezoid integration and linear
interpolation of the throughput and of the photon flux density (synphot's internal PHOTLAM ~ l f_lambda); the
denominator and the pivot wavelength are taken on the same grid (synphot's ``effstim`` takes them on the
filter's own points, which put a flat f_lambda at ST -0.0014 in bessell-R), so the zero-point spectra are
0 mag in every filter; AB and ST magnitudes convert <f_lambda> at the filter's pivot wavelength, Vega
magnitudes are the ratio of the photon-counting integrals of the spectrum and of CALSPEC Vega
(``alpha_lyr_stis_011``, shipped in ``smnet_sps/data/vega``: 0 mag in every band).

Because that integral is linear in the flux, it equals ``flux @ v`` for a weight vector ``v`` that depends
only on the spectrum's wavelength grid and the filter. :func:`bandpass_weights` builds ``v`` once per
(grid, filter); :func:`magnitudes` then needs one matrix product for any number of spectra
(``method="vectorised"``, the default). ``method="synphot"`` calls ``Observation.effstim`` spectrum by
spectrum and is the reference: the tests require both to agree to 1e-6 mag. Before either, steps between
samples wider than 5 % of their wavelength that a filter reaches (the default grid's far infrared) get points
on the power law through their two samples (:func:`_power_law_steps`): straight lines there counted 0.2-0.3
mag too much light in W3 / W4.

What the flux unit of the input means
--------------------------------------
* **Flux density** (anything convertible to erg s^-1 cm^-2 A^-1, e.g. a generator's surface flux, Jy):
  used as the flux at the observer, unchanged, unless ``radius=`` is given; then it is a surface flux
  and is scaled by (radius / distance)^2 (``distance`` defaults as for a luminosity density, below).
* **Luminosity density** (convertible to erg s^-1 A^-1 or erg s^-1 Hz^-1, or photons s^-1 A^-1, e.g. an
  SSP in L_sun/A per M_sun formed): placed at ``distance`` (default 10 pc; at redshift > 0 the luminosity
  distance of ``cosmology``): f = L / (4 pi d^2). Magnitudes of an SSP are then per M_sun formed. A luminosity
  density per unit mass (L_sun / A / M_sun, as ``smnet-sps ssp --out`` writes it into FITS) is taken for
  1 M_sun formed, the same numbers.
* **Wavelengths** are vacuum, as the filter curves are taken: a Spectrum whose ``meta["wavelength_medium"]``
  is "air" is converted to vacuum first (:func:`smnet_sps.medium.convert_spectrum_medium`); a
  (wavelength, flux) pair or a synphot spectrum is taken as vacuum.
* ``redshift`` z moves the spectrum to the observed frame: l_obs = l (1 + z) and
  f_obs(l_obs) = f(l) / (1 + z), with ``distance`` the luminosity distance.

Bad input is a ``ValueError`` naming the problem, never a silent NaN or inf: a flux that is not real
(complex), negative flux inside a filter (clip noise yourself, e.g. ``np.clip(flux, 0, None)``), no flux at
all in a filter (the magnitude would be +inf), an unknown filter, a wavelength or flux unit that does not
fit. NaN fluxes inside a filter, or a filter reaching outside the spectrum's wavelengths, raise
``ValueError`` unless ``extrapolate=True``, which treats the spectrum as zero there (documented
zero-extension; the result is then a lower limit on flux, with a warning naming each such filter and its
share of weight outside, ``meta["weight_outside_spectrum"]``, and +inf, with a warning, where no flux is
left). Masked pixels (a specutils ``Spectrum.mask`` or an astropy ``Masked`` flux; True = bad) are NaN
pixels: an error inside a filter, zero with ``extrapolate=True``, ignored outside every filter. Negative
fluxes outside every filter are irrelevant and set to zero. Magnitudes are computed from the flux scaled by
its maximum, so any positive finite flux (1e-300 to 1e308) gives a finite magnitude.
"""
from __future__ import annotations

import functools
import re
import warnings

import numpy as np
from astropy import units as u
from astropy.table import Column, Table

from .constants import FLAM_UNIT, MBOL_SUN, PACKAGE_DATA, PC_CM
from .filters import resolve_filters
from .generator import _FLUX_UNITS, _WAVE_UNITS, _column_unmasked, _refuse_masked, _unmask, check_switch
from .igm import check_redshift, igm_transmission
from .progress import want_progress

__all__ = ["magnitudes", "ssp_magnitudes", "ssp_photometry", "add_colors", "parse_colors", "bandpass_weights",
           "BandWeights", "vega_spectrum", "sun_spectrum", "sun_absolute_magnitudes", "SYSTEMS", "add_cli"]

SYSTEMS = ("AB", "ST", "Vega")
#: the unit of a magnitude column in each system (every table: magnitudes, ssp_magnitudes, points_magnitudes,
#: smnet-sps mags): AB and ST as astropy's function units, which convert to a flux; Vega as a plain ``mag``,
#: as astropy has no Vega-referenced unit (synphot's VEGAMAG needs synphot to read back): the system is in
#: ``meta["system"]`` (FITS keyword SYSTEM) and each column's description
MAG_UNITS = {"AB": u.ABmag, "ST": u.STmag, "Vega": u.mag}
VEGA_FILE = PACKAGE_DATA / "vega" / "alpha_lyr_stis_011.fits"
SUN_FILE = PACKAGE_DATA / "sun" / "sun_reference_stis_001.fits"
AU_CM = (1 * u.au).to_value(u.cm)
_LUM_LAM = u.Unit("erg s-1 AA-1")
_LUM_NU = u.Unit("erg s-1 Hz-1")
_METHODS = ("vectorised", "synphot")


# ---------------------------------------------------------------------------------------------------
# Reference spectra (shipped CALSPEC files; never downloaded)
# ---------------------------------------------------------------------------------------------------
def _read_calspec(path):
    from astropy.io import fits
    with fits.open(path) as hdul:
        # CALSPEC tables carry float TNULL keywords, which astropy warns about when it reads the columns
        # (a float column's null is NaN: they are unused); dropped from the header in memory before that,
        # as warnings.catch_warnings is not thread-safe (it switched off every thread's warnings meanwhile)
        header = hdul[1].header
        for key in list(header["TNULL*"]):
            del header[key]
        data = hdul[1].data
        wave = np.asarray(data["WAVELENGTH"], float)
        flux = np.asarray(data["FLUX"], float)
    good = np.isfinite(flux)
    return wave[good], flux[good]


@functools.lru_cache(maxsize=2)
def _calspec(path):
    """The file read once, as read-only arrays: every Vega and solar magnitude of the process uses them."""
    arrays = _read_calspec(path)
    for a in arrays:
        a.flags.writeable = False
    return arrays


def vega_spectrum():
    """CALSPEC Vega (alpha_lyr_stis_011): ``(wavelength [A], F_lambda [erg s^-1 cm^-2 A^-1])``, the
    caller's own copies (the file is read once)."""
    return tuple(a.copy() for a in _calspec(VEGA_FILE))


def sun_spectrum():
    """CALSPEC Sun (sun_reference_stis_001, at 1 AU): ``(wavelength [A], F_lambda [erg s^-1 cm^-2 A^-1])``,
    the caller's own copies (the file is read once).

    Covers 1195 A - 2.70 micron only; filters with more than 1e-3 of their weight beyond it get no solar
    magnitude.
    """
    return tuple(a.copy() for a in _calspec(SUN_FILE))


def _vega_synphot():
    from synphot import SourceSpectrum
    from synphot.models import Empirical1D
    w, f = _calspec(VEGA_FILE)
    return SourceSpectrum(Empirical1D, points=w * u.AA, lookup_table=f * FLAM_UNIT)


# ---------------------------------------------------------------------------------------------------
# The integral as a weight vector
# ---------------------------------------------------------------------------------------------------
# the largest share of a filter's weight (int T lambda dlambda) beyond the CALSPEC Vega spectrum for which a
# Vega magnitude is given; the same for the Sun's magnitude (the CALSPEC Sun ends at 2.70 micron)
VEGA_OUTSIDE_MAX = 1e-3
SUN_OUTSIDE_MAX = VEGA_OUTSIDE_MAX


def _weight_outside(bp, lo, hi, cut_segments=False):
    """Share of filter ``bp``'s weight (int T lambda dlambda) outside [lo, hi] [A].

    On the filter's points (default; the measure of the Vega and Sun thresholds): a segment across lo or hi
    counts half or nothing of itself. ``cut_segments``: lo and hi join the points, so such a segment counts
    its part beyond them (the default gave 0 for a filter whose last point with throughput lay inside and
    the next, at zero, beyond: the extrapolate warning's measure)."""
    b = np.asarray(bp.waveset.to_value(u.AA), float)
    if cut_segments:
        b = np.union1d(b, [v for v in (lo, hi) if b[0] < v < b[-1]])
    tb = b * bp(b).value
    norm = float(abs(np.trapezoid(tb, x=b)))
    if not cut_segments:
        return float(abs(np.trapezoid(np.where((b < lo) | (b > hi), tb, 0.0), x=b))) / norm
    left, right = b <= lo, b >= hi
    return float(abs(np.trapezoid(tb[left], x=b[left])) + abs(np.trapezoid(tb[right], x=b[right]))) / norm


class BandWeights:
    """Precomputed photon-counting weights of one filter on one wavelength grid.

    Attributes
    ----------
    name : str
    v : ndarray (n_wave,) [A^2]; ``flux @ v`` = int f_lambda T l dl for f_lambda on the grid
    norm : float [A^2], int T l dl on the numerator's grid (the spectrum's and the filter's wavelengths)
    pivot : float [A], the pivot wavelength on that grid (synphot's ``pivot(wavelengths=...)``)
    vega : float [erg s^-1 cm^-2], int f_Vega T l dl (for Vega magnitudes)
    support : (float, float) [A], where the throughput is non-zero (including the ramps to it)
    """

    def __init__(self, name, v, norm, pivot, vega, support):
        self.name, self.v, self.norm, self.pivot = name, v, norm, pivot
        self.vega, self.support = vega, support


def _trapezoid_weights(x):
    w = np.empty_like(x)
    dx = np.diff(x)
    w[0] = dx[0] / 2
    w[-1] = dx[-1] / 2
    w[1:-1] = (dx[:-1] + dx[1:]) / 2
    return w


def _bandpass_support(bp):
    """Wavelength interval [A] outside which the throughput (linearly interpolated) is zero."""
    b = np.asarray(bp.waveset.to_value(u.AA), float)
    t = np.asarray(bp(b).value, float)
    nz = np.flatnonzero(t > 0)
    return float(b[max(nz[0] - 1, 0)]), float(b[min(nz[-1] + 1, b.size - 1)])


def _integration_grid(x, bp):
    """The wavelengths [A] synphot integrates a spectrum sampled on ``x`` through ``bp`` on: the union of
    ``x`` and the filter's own wavelengths (``Observation.waveset``)."""
    from synphot.utils import merge_wavelengths
    return merge_wavelengths(x, np.asarray(bp.waveset.to_value(u.AA), float))


def _norm_and_pivot(wgrid, thr):
    """``(int T l dl, pivot [A])`` by the trapezoid rule on ``wgrid``, the grid the numerator is integrated
    on (``thr``: the throughput there; :func:`_weights_on_grid` returns both): the same rule above and below
    the fraction, so a flat f_lambda has ST 0 and a flat f_nu AB 0 in every filter. (synphot's ``effstim``
    takes the denominator and the pivot on the filter's own points while the numerator is on the union with
    the spectrum's: a filter sampled coarsely against the spectrum was off by a constant, the ST zero-point
    spectrum ST 0.0075 in hipparcos_B, -0.0014 in bessell-R.)"""
    norm = float(abs(np.trapezoid(wgrid * thr, x=wgrid)))
    norm_nu = float(abs(np.trapezoid(thr / wgrid, x=wgrid)))
    return norm, float(np.sqrt(norm / norm_nu))


def _weights_on_grid(x, bp):
    """v such that flux(x) @ v reproduces synphot's trapezoid over merge(x, band waveset); returns
    (v, that grid [A], the throughput on it)."""
    wgrid = _integration_grid(x, bp)
    thr = np.asarray(bp(wgrid).value, float)
    # synphot stores a source in PHOTLAM (proportional to l * f_lambda) and interpolates *that* linearly,
    # so the integrand l f_lambda T on wgrid is interp(x * f)(wgrid) * T. The interpolation is written as
    # weights on the source pixels; outside x Empirical1D holds the end value, so t is clipped to [0, 1].
    j = np.clip(np.searchsorted(x, wgrid, side="right") - 1, 0, x.size - 2)
    t = np.clip((wgrid - x[j]) / (x[j + 1] - x[j]), 0.0, 1.0)
    g = _trapezoid_weights(wgrid) * thr
    v = np.bincount(j, g * (1 - t), minlength=x.size) + np.bincount(j + 1, g * t, minlength=x.size)
    return v * x, wgrid, thr


def _pad_for_zero_extension(x, lo, hi):
    """Grid with zero-flux points added so a filter beyond [x0, x-1] sees a (step to) zero spectrum."""
    left, right = [], []
    eps = 1e-9
    if lo < x[0]:
        left = [lo] + ([x[0] * (1 - eps)] if x[0] * (1 - eps) > lo else [])
    if hi > x[-1]:
        right = ([x[-1] * (1 + eps)] if x[-1] * (1 + eps) < hi else []) + [hi]
    return np.concatenate([left, x, right]), len(left), len(right)


#: points per wide step of a spectrum (:func:`_power_law_steps`): 1e-4 mag of the exact power-law integral
POWER_LAW_POINTS = 32

_WEIGHT_CACHE: dict = {}


def _curve_token(bp):
    """A digest of a bandpass's throughput: its model's parameters and, for sampled curves (Empirical1D),
    their points and values. The weight caches know a filter by identity; a caller's own bandpass edited in
    place afterwards (``bp.model.lookup_table[:] = ...``) kept the weights of its old curve (a 150 A wide
    Gaussian narrowed to 30 A: 5800 K AB -38.40033 for -38.40284). Named filters are read-only."""
    import hashlib
    h = hashlib.blake2b(digest_size=16)
    model = bp.model
    parts = list(model.traverse_postorder()) if hasattr(model, "traverse_postorder") else [model]
    for part in parts:
        if not hasattr(part, "parameters"):
            continue
        h.update(np.asarray(part.parameters, float).tobytes())
        for arr in (getattr(part, "lookup_table", None), *(getattr(part, "points", None) or ())):
            if arr is not None:
                h.update(np.ascontiguousarray(u.Quantity(arr).value, float).tobytes())
    return h.digest()


def bandpass_weights(wavelength, bandpass, name=None, extrapolate=False, *, _redshift=0.0, _resolved=False):
    """Weights for :func:`magnitudes`' vectorised path (cached per grid and filter).

    Parameters
    ----------
    wavelength : ndarray or Quantity [A], strictly increasing spectrum grid
    bandpass : synphot.SpectralElement (or anything :func:`smnet_sps.filters.get_bandpass` accepts)
    extrapolate : bool (True / False; anything else raises ValueError)
        If the filter reaches beyond the grid, treat the spectrum as zero there instead of raising.

    Returns
    -------
    BandWeights (a new object per call; its ``v`` is the cache's array, read-only)
    """
    from .filters import get_bandpass
    extrapolate = check_switch(extrapolate, "extrapolate")
    try:
        x = np.asarray(u.Quantity(wavelength, u.AA).value, float)
    except (u.UnitsError, TypeError, ValueError) as exc:
        raise ValueError(f"bandpass_weights needs a wavelength grid (a length Quantity, or numbers in A), "
                         f"increasing, with the flux in that order; got {getattr(wavelength, 'unit', None)} "
                         f"({exc})") from exc
    # the weights follow the grid's order: a decreasing grid was refused as "9998-3000 A" not covering the
    # filter, a NaN got synphot's UnsortedWavelength from deep inside
    if x.ndim != 1 or x.size < 2 or not np.all(np.isfinite(x)) or x[0] <= 0 or np.any(np.diff(x) <= 0):
        raise ValueError(f"bandpass_weights needs >= 2 finite, positive, strictly increasing wavelengths "
                         f"(a 1-d grid); got shape {x.shape}"
                         + (f", {x[0]:.6g} ... {x[-1]:.6g} A" if x.ndim == 1 and x.size else ""))
    # _resolved: ``bandpass`` came from get_bandpass already (magnitudes' resolve_filters); checking it again
    # evaluated the synphot element twice per band and call, ~1 ms per band of a fitter's get_mags
    bname, bp = (name, bandpass) if _resolved else get_bandpass(bandpass)
    name = name or bname
    key = (hash(x.tobytes()), x.size, id(bp), _curve_token(bp), extrapolate)
    hit = _WEIGHT_CACHE.get(key)
    if hit is not None and hit[0] is bp:
        bw = hit[1]
        # a BandWeights of the caller's own (its attributes may be set), with the name asked for (the same
        # filter may come under another name: a duplicate gets a suffix) and the cache's read-only weights
        return BandWeights(name, bw.v, bw.norm, bw.pivot, bw.vega, bw.support)
    lo, hi = _bandpass_support(bp)
    if lo < x[0] or hi > x[-1]:
        if not extrapolate:
            # at z > 0 the range is the observed frame's, which is not the range of the spectrum as given
            frame = (f", observed frame at z={_redshift:g}: {x[0] / (1 + _redshift):.6g}-"
                     f"{x[-1] / (1 + _redshift):.6g} A at rest" if _redshift > 0 else "")
            raise ValueError(f"filter {name!r} ({lo:.6g}-{hi:.6g} A) reaches outside the spectrum's "
                             f"wavelengths ({x[0]:.6g}-{x[-1]:.6g} A{frame}); use a filter inside that "
                             "range or pass extrapolate=True (--extrapolate on the command line) to treat "
                             "the spectrum as zero outside it")
        xp, nl, nr = _pad_for_zero_extension(x, lo, hi)
        v, wgrid, thr = _weights_on_grid(xp, bp)
        v = v[nl:xp.size - nr]                             # padded points carry zero flux: drop them
    else:
        v, wgrid, thr = _weights_on_grid(x, bp)
    # on the numerator's grid (the whole filter, padded where it reaches beyond the spectrum), not the
    # filter's own points as synphot's effstim: _norm_and_pivot
    norm, pivot = _norm_and_pivot(wgrid, thr)
    wv, fv = _calspec(VEGA_FILE)
    # NaN where more than VEGA_OUTSIDE_MAX of the filter's weight lies beyond the CALSPEC Vega spectrum: its
    # end value was held there (SPIRE 500 um 1.6 mag off); magnitudes() refuses Vega magnitudes for such a
    # filter (SPIRE 250 um has 8e-4 of its weight beyond 300 um: kept, ~1 mmag)
    outside = _weight_outside(bp, wv[0], wv[-1])
    vega = float(fv @ _weights_on_grid(wv, bp)[0]) if outside <= VEGA_OUTSIDE_MAX else np.nan
    v.flags.writeable = False            # cached: shared by every later call for this grid and filter
    bw = BandWeights(name, v, norm, pivot, vega, (lo, hi))
    if len(_WEIGHT_CACHE) > 512:
        _WEIGHT_CACHE.clear()
    _WEIGHT_CACHE[key] = (bp, bw)
    return BandWeights(name, v, norm, pivot, vega, (lo, hi))


# ---------------------------------------------------------------------------------------------------
# Input handling
# ---------------------------------------------------------------------------------------------------
def _positive_length(value, name, n=None):
    """``value`` [cm]: one positive finite length (a float); with ``n`` (the number of spectra) also one per
    spectrum, returned as an (n, 1) array that scales each spectrum's row (a catalogue's radii and distances
    were refused: 'must be one positive finite length')."""
    _refuse_masked(value, name)         # u.Quantity drops a mask: a masked radius was used as if valid
    try:
        q = u.Quantity(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a length Quantity (e.g. 10 * u.pc, 1 * u.R_sun); "
                         f"got {value!r}") from exc
    if q.unit == u.dimensionless_unscaled:
        raise ValueError(f"{name} needs a length unit (e.g. 10 * u.pc, 1 * u.R_sun); got {value!r}")
    try:
        cm = q.to_value(u.cm)
    except u.UnitConversionError as exc:
        raise ValueError(f"{name} must be a length (e.g. u.pc, u.R_sun), got unit {q.unit}") from exc
    if n is not None and np.ndim(cm) == 1 and np.size(cm) == n:
        if not np.all(np.isfinite(cm)) or np.any(cm <= 0):
            i = int(np.flatnonzero(~(np.isfinite(cm) & (cm > 0)))[0])
            raise ValueError(f"{name} must be positive finite lengths; spectrum {i} has {q[i]!r}")
        return np.asarray(cm, float).reshape(-1, 1)
    if np.ndim(cm) != 0 or not np.isfinite(cm) or cm <= 0:
        per = "" if n is None else f", or one per spectrum ({n} values)"
        raise ValueError(f"{name} must be one positive finite length{per}; got {value!r}")
    return float(cm)


def as_cosmology(cosmology, default=None):
    """An astropy cosmology: None -> ``default`` (None: Planck18), a realization's name ("Planck18",
    "WMAP9", ...) -> that realization, an ``astropy.cosmology.Cosmology`` as it is; anything else a
    ValueError (a string or a number crashed deep inside with an AttributeError), which says what None
    means here (the default's name)."""
    from astropy.cosmology import Cosmology, realizations
    default = realizations.Planck18 if default is None else default
    if cosmology is None:
        return default
    if isinstance(cosmology, Cosmology):
        return cosmology
    if isinstance(cosmology, str) and cosmology in realizations.available:
        return getattr(realizations, cosmology)
    raise ValueError(f"cosmology must be an astropy.cosmology.Cosmology (e.g. astropy.cosmology.Planck18, "
                     f"FlatLambdaCDM(H0=70, Om0=0.3)), the name of an astropy realization "
                     f"({', '.join(realizations.available)}) or None (the default: "
                     f"{getattr(default, 'name', None) or default}); got {cosmology!r}")


def per_mass_formed(flux):
    """A spectral density per unit mass formed (L_sun / A / M_sun, the unit ``smnet-sps ssp --out`` writes
    into FITS) as the density of 1 M_sun formed (L_sun / A, as :func:`~smnet_sps.ssp.ssp_spectrum` returns
    it; :func:`~smnet_sps.medium.spectral_density_kind`); any other unit as it is."""
    from .medium import spectral_density_kind
    kind, per = spectral_density_kind(flux.unit, per=(u.M_sun,))
    return flux if kind is None else flux * per


def _masked_as_nan(flux, masks):
    """Flux with masked pixels (True = bad, in any of ``masks``) set to NaN, so that they follow the NaN rule
    of :func:`_clean_flux` (an error inside a filter, zero with extrapolate=True); they were integrated as
    good pixels (garbage under a mask made sdss r 12 mag too bright)."""
    bad = np.zeros(flux.shape, bool)
    for mask in masks:
        if mask is None:
            continue
        mask = np.asarray(mask)
        try:
            # specutils' convention: any non-zero value marks a bad pixel
            bad |= np.broadcast_to(mask != 0, flux.shape)
        except ValueError as exc:
            raise ValueError(f"the flux mask's shape {mask.shape} does not fit the flux {flux.shape}; it "
                             "needs one value per flux pixel (True = bad)") from exc
    if not bad.any():
        return flux
    return u.Quantity(np.where(bad, np.nan, flux.value), flux.unit)


def _split_input(spectra):
    """-> (vacuum wavelength [A] 1-d, flux Quantity 2-d, meta dict); masked flux pixels (a specutils
    ``Spectrum.mask`` or an astropy ``Masked`` flux) come back as NaN; a Spectrum stating air is converted
    to vacuum (:func:`_in_vacuum`)."""
    meta, mask = {}, None
    if hasattr(spectra, "spectral_axis") and hasattr(spectra, "flux"):
        wave, flux, meta = spectra.spectral_axis, spectra.flux, dict(spectra.meta or {})
        mask = getattr(spectra, "mask", None)
        if hasattr(wave, "quantity"):
            wave = wave.quantity
    elif hasattr(spectra, "waveset") and hasattr(spectra, "model"):   # synphot SourceSpectrum
        wave = spectra.waveset
        if wave is None:
            raise ValueError("this synphot spectrum has no waveset; sample it and pass (wavelength, flux)")
        flux = spectra(wave, flux_unit=FLAM_UNIT)
    elif isinstance(spectra, (tuple, list)) and len(spectra) == 2:
        wave, flux = spectra
    else:
        raise ValueError("spectra must be a specutils.Spectrum, a synphot SourceSpectrum or a "
                         f"(wavelength Quantity, flux Quantity) pair; got {type(spectra).__name__}")
    # an astropy Table's columns with units (Table.read of a FITS spectrum) are the Quantities they stand
    # for (they were refused as not Quantities); a masked column's mask is taken first
    _, wave_mask = _unmask(wave)
    if wave_mask is not None and wave_mask.any():
        raise ValueError(f"the wavelengths are a masked array with {int(wave_mask.sum())} masked value(s): "
                         "every pixel needs a wavelength; mask bad pixels in the flux instead")
    wave = _column_unmasked(wave, "wavelength", _WAVE_UNITS)[0]
    flux, flux_mask = _column_unmasked(flux, "flux", _FLUX_UNITS)
    if not isinstance(wave, u.Quantity) or not isinstance(flux, u.Quantity):
        raise ValueError("wavelength and flux must be astropy Quantities (e.g. wave * u.AA, "
                         "flux * u.Unit('erg s-1 cm-2 AA-1') or u.L_sun / u.AA)")
    try:
        wave_aa = wave.to(u.AA, equivalencies=u.spectral())
    except u.UnitConversionError as exc:
        from .medium import _wavelength_ampere_hint
        raise ValueError(f"spectral axis unit {wave.unit} is not a wavelength, frequency or energy"
                         f"{_wavelength_ampere_hint(wave.unit)}") from exc
    if flux.dtype.kind not in "fiu" or wave_aa.dtype.kind not in "fiu":
        raise ValueError(f"wavelength and flux must be real numbers; got dtypes {wave_aa.dtype} and "
                         f"{flux.dtype} (complex or object arrays are not spectra)")
    if flux.dtype.kind != "f" or flux.dtype.itemsize < 8:
        # float64 from here: in float32, L / (4 pi d^2) underflowed (a 10 Gyr SSP per M_sun at z = 1 had no
        # flux in GALEX FUV: 100.15 mag in float64); a wider float keeps its precision
        flux = flux.astype(np.float64)
    flux = np.atleast_2d(per_mass_formed(_masked_as_nan(flux, (mask, flux_mask))))
    wave_aa = np.atleast_1d(wave_aa)
    if wave_aa.ndim != 1 or flux.ndim != 2 or flux.shape[-1] != wave_aa.size:
        raise ValueError(f"flux shape {flux.shape} does not match the spectral axis ({wave_aa.size} points); "
                         "expected (n_wave,) or (n_spectra, n_wave)")
    if wave_aa.size > 1 and wave_aa[0] > wave_aa[-1]:       # frequency axes come out decreasing
        wave_aa, flux = wave_aa[::-1], flux[:, ::-1]
    w = wave_aa.value.astype(float)
    if w.size < 2 or not np.all(np.isfinite(w)) or np.any(np.diff(w) <= 0) or w[0] <= 0:
        raise ValueError("the spectral axis must have >= 2 finite, positive, strictly increasing wavelengths")
    return _in_vacuum(w, flux, meta, wave.unit)


def _in_vacuum(w, flux, meta, axis_unit):
    """The filter curves are vacuum: a spectrum whose meta states air (``to_medium``, ``vactoair_flag``) is
    taken back to vacuum (axis, and F_lambda by d lambda_air / d lambda_vac; f_nu unchanged; a flux stated
    per vacuum Angstrom, ``flux_density_medium``, as ``vactoair_flag`` writes it, unchanged). Without a
    stated medium (a pair, a synphot spectrum) the axis is vacuum; a frequency axis has no medium."""
    from .medium import _convert_stated, _stated_medium
    if _stated_medium(meta) != "air" or axis_unit.physical_type != "length":
        return w, flux, meta
    return _convert_stated(w, flux, meta, "vacuum")


def _distance_cm(distance, z, cosmology, n=None):
    """``distance`` [cm] (one, or with ``n`` one per spectrum: :func:`_positive_length`); None: 10 pc
    (absolute magnitudes), at z > 0 the luminosity distance of ``cosmology`` (default Planck18)."""
    if distance is not None:
        return _positive_length(distance, "distance", n)
    if z > 0:
        return float(as_cosmology(cosmology).luminosity_distance(z).to_value(u.cm))
    return 10 * PC_CM


def _observed_flux(spectra, distance, radius, redshift, cosmology):
    """-> (observed-frame wavelength [A], f_lambda [erg s^-1 cm^-2 A^-1] (n, n_wave), meta, kind)."""
    with np.errstate(over="ignore", under="ignore"):     # overflow is detected and named below
        return _observed_flux_unchecked(spectra, distance, radius, redshift, cosmology)


def _observed_flux_unchecked(spectra, distance, radius, redshift, cosmology):
    w, flux, meta = _split_input(spectra)
    z = check_redshift(redshift)
    from .medium import _ampere_hint, f_lambda_values, linear_flux, spectral_density_kind
    flux = linear_flux(flux)                # AB magnitudes per pixel: the flux they stand for
    unit = flux.unit
    kind, _ = spectral_density_kind(unit, per=())       # per M_sun was taken off by _split_input
    if kind == "flux":
        f = f_lambda_values(flux, w, FLAM_UNIT, per=())
        if radius is not None:
            # the same default distance as a luminosity spectrum (a star at z = 1 was put at 10 pc: 44 mag
            # brighter than its luminosity L = 4 pi R^2 F)
            d = _distance_cm(distance, z, cosmology, len(f))
            f = f * (_positive_length(radius, "radius", len(f)) / d) ** 2
        elif distance is not None:
            raise ValueError("distance applies to luminosity spectra (e.g. L_sun/A) or together with radius= "
                             "(surface flux scaled by (radius/distance)^2); a flux spectrum without radius "
                             "is used as the flux at the observer. Drop distance or pass radius")
    elif kind == "luminosity":
        if radius is not None:
            raise ValueError("radius= only applies to surface-flux spectra (erg/s/cm2/A); this spectrum is a "
                             f"luminosity density ({unit})")
        lum = f_lambda_values(flux, w, _LUM_LAM, per=())
        d = _distance_cm(distance, z, cosmology, len(lum))
        f = lum / (4 * np.pi) / d / d           # not d ** 2: a Python float would raise OverflowError
    else:
        raise ValueError(f"flux unit {unit} is neither a flux density (e.g. erg s-1 cm-2 AA-1, Jy) nor a "
                         "luminosity density (e.g. L_sun / AA, erg s-1 AA-1, erg s-1 Hz-1)"
                         f"{_ampere_hint(unit)}")
    f = np.asarray(f, float)
    overflow = np.isfinite(flux.value) & ~np.isfinite(f)
    if overflow.any():
        raise ValueError(f"flux too large: {int(overflow.sum())} finite value(s) overflow float64 when "
                         "converted to erg s-1 cm-2 AA-1 at the observer (largest input "
                         f"{np.nanmax(flux.value):.3g} {unit})")
    if z > 0:
        w, f = w * (1 + z), f / (1 + z)
    return w, f, meta, kind


def _power_law_steps(w, f, supports=None):
    """The spectrum with points added inside steps wider than :data:`~smnet_sps.wavegrid.POINT_SAMPLE_WIDTH`
    of their wavelength that reach into a filter (``supports``: (lo, hi) [A] per filter; None: every such
    step), on the power law through the two samples (log F linear in log lambda; a straight line where either
    is not positive, NaN where either is).

    The photometry joins samples by straight lines, as synphot does; the default grid's 10-160 um are samples
    1.2-2x apart, and a straight line between two samples of a Rayleigh-Jeans tail counted 0.2-0.3 mag too
    much light in WISE W3 / W4 and MIPS 24 um (0.05-0.1 in PACS 70 / 100) for every star and SSP. Steps this
    wide hold no resolved lines; narrower steps, and steps no filter reaches, are left as they are."""
    from .wavegrid import POINT_SAMPLE_WIDTH, _sample
    wide = w[1:] > w[:-1] * (1 + POINT_SAMPLE_WIDTH)
    if supports is not None:
        reached = np.zeros(wide.shape, bool)
        for lo, hi in supports:
            reached |= (w[1:] > lo) & (w[:-1] < hi)
        wide &= reached
    wide = np.flatnonzero(wide)
    if wide.size == 0:
        return w, f
    t = np.arange(1, POWER_LAW_POINTS) / POWER_LAW_POINTS          # interior points, evenly in log lambda
    lo, hi = w[wide][:, None], w[wide + 1][:, None]
    w_new = lo * (hi / lo) ** t                                     # (k, m)
    f_new = _sample(w, f, w_new.ravel()).reshape(f.shape[0], *w_new.shape)       # (n, k, m)
    # spliced in step by step (one copy, no sort of every column)
    cuts = np.concatenate([[0], wide + 1, [w.size]])
    w_parts, f_parts = [], []
    for k in range(wide.size + 1):
        w_parts.append(w[cuts[k]:cuts[k + 1]])
        f_parts.append(f[:, cuts[k]:cuts[k + 1]])
        if k < wide.size:
            w_parts.append(w_new[k])
            f_parts.append(f_new[:, k])
    return np.concatenate(w_parts), np.concatenate(f_parts, axis=1)


def _clean_flux(f, bands, w, extrapolate):
    """Raise on NaN inside a filter (zeroed with extrapolate) and on negative flux inside a filter."""
    used = np.zeros(w.size, bool)
    for bw in bands:
        used |= bw.v != 0
    bad = ~np.isfinite(f)
    if bad.any():
        hit = bad & used[None, :]
        if hit.any() and not extrapolate:
            i, k = np.argwhere(hit)[0]
            names = [bw.name for bw in bands if bw.v[k] != 0]
            nan_w = w[bad[i]]
            raise ValueError(f"spectrum {i} has {int(bad[i].sum())} non-finite flux value(s) (NaN, inf or "
                             f"masked; {nan_w.min():.6g}-{nan_w.max():.6g} A) inside filter {names[0]!r} "
                             f"({bands[[b.name for b in bands].index(names[0])].support[0]:.6g}-"
                             f"{bands[[b.name for b in bands].index(names[0])].support[1]:.6g} A); the "
                             f"spectrum covers {w[0]:.6g}-{w[-1]:.6g} A. Fix the spectrum or pass "
                             "extrapolate=True to treat non-finite and masked flux as zero")
        if hit.any():
            warnings.warn(f"{int(hit.sum())} non-finite flux value(s) (NaN, inf or masked) inside filters "
                          "treated as zero (extrapolate=True)", UserWarning, stacklevel=3)
        f = np.where(bad, 0.0, f)
    negative = (f < 0) & used[None, :]
    if negative.any():
        i, k = np.argwhere(negative)[0]
        names = [bw.name for bw in bands if bw.v[k] != 0]
        raise ValueError(f"spectrum {i} has {int(negative[i].sum())} negative flux value(s) inside filter "
                         f"{names[0]!r} (first at {w[k]:.6g} A): flux must be >= 0. If they are noise, clip "
                         "them first (np.clip(flux, 0, None))")
    return np.maximum(f, 0.0)          # negatives outside every filter do not matter


def _system(system):
    for s in SYSTEMS:
        if str(system).lower() == s.lower():
            return s
    raise ValueError(f"unknown magnitude system {system!r}; choose one of {', '.join(SYSTEMS)}")


def _system_option(text):
    """``--system``: any case (``vega``), an error naming the choices otherwise."""
    import argparse
    try:
        return _system(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _check_vega_covers(bands):
    """Vega magnitudes need Vega's spectrum over the whole filter."""
    for bw in bands:
        if not np.isfinite(bw.vega):
            wv = _calspec(VEGA_FILE)[0]
            raise ValueError(f"filter {bw.name!r} ({bw.support[0]:.6g}-{bw.support[1]:.6g} A) reaches beyond "
                             f"the CALSPEC Vega spectrum ({wv[0]:.6g}-{wv[-1]:.6g} A; more than "
                             f"{VEGA_OUTSIDE_MAX:g} of its weight outside): no Vega magnitude is defined "
                             "there; use system='AB' or 'ST'")


@functools.lru_cache(maxsize=1024)
def _flam_to_mag(system, pivot):
    """astropy's converter from f_lambda [erg s^-1 cm^-2 A^-1] to AB (at ``pivot`` [A]) or ST magnitudes: the
    function ``Quantity.to_value`` builds and calls, built once. Building it (equivalencies tried, units
    formatted for the exception astropy's short-cut raises) took ~17 ms per band and call, 8 of every 9 ms of
    a StellarPopulation.get_mags in 8 bands; calling it gives the same numbers bit for bit."""
    if system == "AB":
        return FLAM_UNIT.get_converter(u.ABmag, u.spectral_density(pivot * u.AA))
    return FLAM_UNIT.get_converter(u.STmag)


def _to_mag(mean_flam, bw, system):
    """<f_lambda> [erg s^-1 cm^-2 A^-1] -> magnitudes; +inf where the flux is zero."""
    out = np.full(mean_flam.shape, np.inf)
    pos = mean_flam > 0
    if system in ("AB", "ST"):
        out[pos] = _flam_to_mag(system, float(bw.pivot) if system == "AB" else None)(mean_flam[pos])
    else:
        out[pos] = -2.5 * np.log10(mean_flam[pos] * bw.norm / bw.vega)
    return out


def _synphot_mags(w, f, bands, bps, system, extrapolate, progress):
    """Reference path: one synphot Observation.effstim per spectrum and filter."""
    from synphot import Observation, SourceSpectrum, units as su
    from synphot.exceptions import SynphotError
    from synphot.models import Empirical1D
    vega = _vega_synphot() if system == "Vega" else None
    unit = {"AB": u.ABmag, "ST": u.STmag, "Vega": su.VEGAMAG}[system]
    out = np.empty((f.shape[0], len(bands)))
    rows = range(f.shape[0])
    if progress:
        from tqdm.auto import tqdm
        rows = tqdm(rows, desc="synphot effstim", unit="spectrum")
    for k, (bw, bp) in enumerate(zip(bands, bps)):
        lo, hi = bw.support
        if extrapolate and (lo < w[0] or hi > w[-1]):
            xp, nl, nr = _pad_for_zero_extension(w, lo, hi)
        else:
            xp, nl, nr = w, 0, 0
        grid = _integration_grid(xp, bp)
        pivot = bp.pivot(wavelengths=grid * u.AA)
        for i in rows if k == 0 else range(f.shape[0]):
            fp = np.concatenate([np.zeros(nl), f[i], np.zeros(nr)])
            src = SourceSpectrum(Empirical1D, points=xp * u.AA, lookup_table=fp * FLAM_UNIT, keep_neg=True)
            # no warnings.catch_warnings here: it is not thread-safe (other threads' warnings were lost
            # while it was open), and nothing warns: our coverage check leaves no throughput beyond the
            # spectrum, so synphot sees a full overlap and neither extrapolates nor says it does
            obs = Observation(src, bp, force="extrap")
            try:
                if system == "Vega":
                    out[i, k] = obs.effstim(unit, vegaspec=vega).value
                else:
                    # the denominator and the pivot on the numerator's grid (_norm_and_pivot); effstim
                    # takes them on the filter's own points unless given the wavelengths
                    flam = obs.effstim(FLAM_UNIT, wavelengths=grid * u.AA)
                    out[i, k] = (flam.to_value(u.STmag) if system == "ST" else
                                 flam.to_value(u.ABmag, u.spectral_density(pivot)))
            except SynphotError:       # zero integrated flux
                out[i, k] = np.inf
    return out


# ---------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------
def magnitudes(spectra, filters, system="AB", distance=None, redshift=0, extrapolate=False, *, radius=None,
               cosmology=None, igm=False, method="vectorised", progress=False, _dark_is_inf=False,
               _outside_quiet=0.0, _array=False):
    """Synthetic magnitudes of one or many spectra through one or many filters.

    Parameters
    ----------
    spectra : specutils.Spectrum (1-d or (n, n_wave)), synphot.SourceSpectrum, or (wavelength, flux) pair
        of Quantities (or astropy Table columns with units)
        Flux density (erg s^-1 cm^-2 A^-1, Jy, ...) or luminosity density (L_sun / A, erg s^-1 A^-1, ...);
        see the module docstring for what each means. Masked pixels (``Spectrum.mask``, an astropy
        ``Masked`` flux or a ``MaskedColumn``; True = bad) count as NaN.
    filters : str, path, synphot.SpectralElement or a list of them (or "a,b,c")
        speclite names ("sdss2010-r"), sedpy names ("sdss_r0"), two-column files (A, throughput).
    system : {"AB", "ST", "Vega"}
    distance : Quantity [length] (one, or one per spectrum) or None
        Luminosity distance. None: 10 pc (absolute magnitudes) or, at redshift > 0, the luminosity distance
        of ``cosmology``, for luminosity spectra and surface fluxes with ``radius``; for flux spectra only
        meaningful with ``radius``.
    redshift : float >= 0
    extrapolate : bool
        False (default): a filter reaching outside the spectrum, or NaN or masked flux inside a filter, raises
        ValueError. True: the spectrum is taken as zero there; a UserWarning names the filters that reach
        beyond it with their share of weight outside (also ``meta["weight_outside_spectrum"]``). Only True /
        False (numpy's too): the text "False" turned it on; anything else raises ValueError.
    radius : Quantity [length] (one, or one per spectrum) or None
        Stellar radius: turns a surface flux into the flux at ``distance`` (factor (radius/distance)^2).
    cosmology : astropy.cosmology.Cosmology, the name of an astropy realization ("Planck18", "WMAP9", ...;
        ``astropy.cosmology.realizations.available``) or None (Planck18). Used only at z > 0 without
        ``distance``, for luminosity spectra and for surface fluxes with ``radius``; anything else raises
        ValueError.
    igm : bool
        At redshift > 0, multiply the rest-frame spectrum by the mean intergalactic transmission of Madau
        (1995) (:func:`smnet_sps.igm.igm_transmission`, FSPS's ``add_igm_absorption``). Off by default, as in
        FSPS: for a flat L_lambda it makes u 1.2 mag and g 0.2 mag fainter at z = 3, u 5.4, g 1.4 and r 0.26
        mag at z = 4. No effect at z = 0.
    method : {"vectorised", "synphot"}
        Same integral; "synphot" calls ``Observation.effstim`` per spectrum (slow, the reference).
    progress : bool or None, tqdm progress bar for the synphot path (off by default; None: on a terminal or
        in a Jupyter kernel only, :mod:`smnet_sps.progress`)

    Returns
    -------
    astropy.table.Table
        One row per spectrum, one column per filter, unit mag(AB), mag(ST) or mag (Vega; system in
        ``meta["system"]``), always finite; with ``extrapolate=True`` zero flux in a band gives +inf (with a
        warning).

    Raises
    ------
    ValueError
        For an unknown filter or system, a flux or wavelength unit that does not fit, complex flux, NaN or
        negative flux inside a filter, no flux in a filter, or a filter beyond the spectrum (the last three
        not with ``extrapolate=True``).
    """
    system = _system(system)
    if method not in _METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(_METHODS)}")
    extrapolate = check_switch(extrapolate, "extrapolate")
    cosmology = as_cosmology(cosmology)
    named = resolve_filters(filters)
    igm = check_switch(igm, "igm")
    progress = want_progress(progress)
    w, f, meta, kind = _observed_flux(spectra, distance, radius, redshift, cosmology)
    z = check_redshift(redshift)                   # checked by _observed_flux already: its float
    if igm and z > 0:
        # the transmission is a function of the rest wavelength; w is already observed-frame
        f = f * igm_transmission(w / (1 + z), z)
    bands = [bandpass_weights(w, bp, name=name, extrapolate=extrapolate, _redshift=z, _resolved=True)
             for name, bp in named]
    if system == "Vega":
        _check_vega_covers(bands)
    outside = {}
    if extrapolate:
        # the zero-extended bands, by their share of weight beyond the spectrum: extrapolate=True made a
        # 3540-7410 A spectrum's sdss u (37 % of its weight outside it) 0.43 mag faint without a word
        outside = {bw.name: _weight_outside(bp, w[0], w[-1], cut_segments=True)
                   for bw, (_, bp) in zip(bands, named) if bw.support[0] < w[0] or bw.support[1] > w[-1]}
        outside = {k: v for k, v in outside.items() if v > _outside_quiet}
        if outside:
            warnings.warn(f"{len(outside)} filter(s) reach beyond the spectrum ({w[0]:.6g}-{w[-1]:.6g} A"
                          + (f", observed frame at z={z:g}" if z > 0 else "") + "), taken as zero there "
                          "(extrapolate=True), so their magnitudes are too faint (lower limits on the flux): "
                          + ", ".join(f"{k} ({v:.3g} of its weight outside)" for k, v in outside.items()),
                          UserWarning, stacklevel=2)
    f = _clean_flux(f, bands, w, extrapolate)        # on the samples as given: the NaN rule and its message
    w_fine, f = _power_law_steps(w, f, [bw.support for bw in bands])
    if w_fine.size != w.size:
        w = w_fine
        bands = [bandpass_weights(w, bp, name=name, extrapolate=extrapolate, _resolved=True)
                 for name, bp in named]
    # Work with the flux divided by its largest value, and add -2.5 log10(scale) at the end: the integral
    # then neither overflows (1e308) nor underflows (1e-300), and every positive flux has a finite magnitude.
    scale = np.max(f, axis=1, keepdims=True)
    scale = np.where(scale > 0, scale, 1.0)
    f = f / scale
    if method == "vectorised":
        vmat = np.stack([bw.v for bw in bands], axis=1)           # (n_wave, n_filters) [A^2]
        norms = np.array([bw.norm for bw in bands])
        mean_flam = (f @ vmat) / norms                            # photon-weighted <f_lambda>
        mags = np.column_stack([_to_mag(mean_flam[:, k], bw, system) for k, bw in enumerate(bands)])
    else:
        mags = _synphot_mags(w, f, bands, [bp for _, bp in named], system, extrapolate, progress)
    mags = mags - 2.5 * np.log10(scale)
    dark = np.isinf(mags)
    if _dark_is_inf:                    # the caller takes +inf for a band without flux (StellarPopulation)
        dark = np.zeros_like(dark)
    if dark.any() and not extrapolate:
        i, k = np.argwhere(dark)[0]
        raise ValueError(f"spectrum {i} has no flux in filter {bands[k].name!r} "
                         f"({bands[k].support[0]:.6g}-{bands[k].support[1]:.6g} A): its magnitude would be "
                         "+inf. Use a filter where the spectrum is not zero")
    n_inf = int(dark.sum())
    if n_inf:
        warnings.warn(f"{n_inf} magnitude(s) are +inf: zero flux in the band (extrapolate=True)", UserWarning,
                      stacklevel=2)
    if _array:              # the bare (n, n_filters) magnitudes: the Table cost 0.3 ms (StellarPopulation)
        return mags
    unit = MAG_UNITS[system]
    table = Table()
    for k, bw in enumerate(bands):
        table[bw.name] = Column(mags[:, k], unit=unit, description=f"{system} magnitude, photon counting")
    table.meta.update({
        "system": system, "integral": "photon counting (synphot effstim)", "input": kind,
        "redshift": float(redshift), "method": method, "extrapolate": bool(extrapolate),
        # per zero-extended filter, the share of its weight (int T l dl) beyond the spectrum
        "weight_outside_spectrum": outside,
        "igm": "Madau (1995)" if igm and z > 0 else "none",
        "pivot_wavelength_AA": {bw.name: bw.pivot for bw in bands},
    })
    if distance is not None:
        d = _positive_length(distance, "distance", len(table))
        table.meta["distance_cm"] = d if np.ndim(d) == 0 else d.ravel().tolist()
    elif kind == "luminosity" or radius is not None:
        # the default distance the spectrum was placed at: at z > 0 the magnitudes depend on the cosmology
        # (0.04-0.13 mag between Planck18 and FSPS's at z = 0.1-3), which the table did not say
        table.meta["distance_cm"] = _distance_cm(None, z, cosmology)
        if z > 0:
            table.meta.update(_cosmology_meta(cosmology, z))
    return table


def _cosmology_meta(cosmology, z):
    """{"luminosity_distance_Mpc", "cosmology"} of apparent magnitudes at redshift ``z`` > 0."""
    # an unnamed cosmology (FlatLambdaCDM(H0=70, Om0=0.3)) was written "None": its parameters instead
    return {"luminosity_distance_Mpc": float(cosmology.luminosity_distance(z).to_value(u.Mpc)),
            "cosmology": str(cosmology.name) if cosmology.name else repr(cosmology)}


@functools.lru_cache(maxsize=256)
def _sun_mag(name, bp, system, token=None):
    # token: _curve_token(bp), so that a bandpass edited in place is not served its old magnitude
    ws, fs = _calspec(SUN_FILE)
    # a filter with at most SUN_OUTSIDE_MAX of its weight beyond the Sun's spectrum (VISTA's near-IR curves
    # leak a few 1e-4 out to 3.2 micron) sees the Sun as zero there, as Vega: without it M/L was NaN in
    # VISTA Z-Ks (the error is below that share, < 1 mmag)
    nearly_inside = _weight_outside(bp, ws[0], ws[-1]) <= SUN_OUTSIDE_MAX
    table = magnitudes((ws * u.AA, fs * FLAM_UNIT * (AU_CM / (10 * PC_CM)) ** 2), [bp], system=system,
                       extrapolate=nearly_inside, _outside_quiet=SUN_OUTSIDE_MAX)
    return float(table.columns[0][0])            # one filter; its column name may differ from name


def sun_absolute_magnitudes(filters, system="AB"):
    """Absolute magnitudes of the Sun (CALSPEC sun_reference_stis_001 at 10 pc) per filter.

    Returns a dict name -> magnitude; NaN (with a warning) for filters with more than
    :data:`SUN_OUTSIDE_MAX` (1e-3) of their weight outside 1195 A - 2.70 micron (below it the Sun counts as
    zero there).
    """
    system = _system(system)
    return {name: _sun_mag_or_nan(name, bp, system) for name, bp in resolve_filters(filters)}


def _sun_mag_or_nan(name, bp, system):
    try:
        return _sun_mag(name, bp, system, _curve_token(bp))
    except ValueError as exc:
        ws, _ = _calspec(SUN_FILE)
        share = _weight_outside(bp, ws[0], ws[-1])
        if share <= SUN_OUTSIDE_MAX:                # not the Sun's range: say what failed
            reason = f"{exc}; so its M/L is NaN"
        else:
            # magnitudes' own text named the Sun's range as "the spectrum's" and advised extrapolate=True,
            # which applies to the population's spectrum: the Sun has no flux model there, nothing can help
            reason = (f"{share:.0%} of the filter's weight lies outside the Sun's flux model (CALSPEC "
                      f"sun_reference_stis_001, {ws[0]:.0f} A - {ws[-1] / 1e4:.2f} micron), so its M/L "
                      "cannot be computed and is NaN (extrapolate=True / --extrapolate does not change "
                      "that: it applies to the population's spectrum, not the Sun's); its magnitudes are "
                      "unaffected")
        warnings.warn(f"no solar magnitude for {name!r}: {reason}", UserWarning, stacklevel=3)
        return np.nan


# surviving stars only; not "stellar_mass", which FSPS (and StellarPopulation) count with the remnants
_MASS_KEYS = ("mstar", "mass_stars", "surviving_mass", "mass_surviving", "log_mstar", "log_mass_stars",
              "log_surviving_mass")


def _find(meta, keys):
    for k in keys:
        if meta is not None and k in meta and meta[k] is not None:
            val = np.atleast_1d(np.asarray(meta[k], float))
            return (10 ** val if k.startswith("log_") else val), k
    return None, None


def _one_per_age(values, name, n_ages):
    """``values`` as a float array (n_ages,): one value per age, or one for all."""
    try:
        arr = np.asarray(values, float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numbers, one per age ({n_ages}); got {values!r}") from exc
    if arr.size == 1:
        return np.full(n_ages, float(arr.ravel()[0]))
    if arr.shape != (n_ages,):
        raise ValueError(f"{name} needs one value per age ({n_ages}), or one for all; got shape {arr.shape}")
    return arr


def _stellar_mass_per_age(mstar, name, n_ages):
    """Surviving stellar mass [M_sun per M_sun formed], finite and > 0, one per age. A Quantity is converted
    to M_sun (1 kg was read as 1 M_sun); plain numbers and a dimensionless ratio are M_sun per M_sun
    formed."""
    _refuse_masked(mstar, name)         # u.Quantity and np.asarray drop a mask: the hidden mass was used
    unit = getattr(mstar, "unit", None)
    if unit is not None and unit != u.dimensionless_unscaled:
        try:
            mstar = u.Quantity(mstar).to_value(u.M_sun)
        except u.UnitConversionError as exc:
            raise ValueError(f"{name} must be a mass (e.g. u.M_sun) or numbers in M_sun per M_sun formed; "
                             f"got unit {unit}") from exc
    elif unit is not None:
        mstar = u.Quantity(mstar).value
    values = _one_per_age(mstar, name, n_ages)
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        # a negative or NaN mass gave a negative or NaN M/L without a word
        raise ValueError(f"{name} must be finite and > 0 (M_sun per M_sun formed); got {values}")
    return values


def _log_lbol_per_age(log_lbol, name, n_ages):
    """log10 L_bol / L_sun per M_sun formed, finite, one per age; a Quantity in dex(L_sun) (or a luminosity,
    taken to dex(L_sun)) is converted."""
    _refuse_masked(log_lbol, name)      # .quantity and np.asarray drop a mask: the hidden L_bol was used
    log_lbol = getattr(log_lbol, "quantity", log_lbol)       # a table Column with a unit: its Quantity
    unit = getattr(log_lbol, "unit", None)
    if unit is not None and unit != u.dimensionless_unscaled:
        try:
            log_lbol = log_lbol.to_value(u.dex(u.L_sun))
        except (u.UnitsError, ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"{name} must be log10 L_bol / L_sun (numbers or dex(L_sun)); got unit "
                             f"{unit}") from exc
    elif unit is not None:
        log_lbol = u.Quantity(log_lbol).value
    values = _one_per_age(log_lbol, name, n_ages)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} must be finite (log10 L_bol / L_sun per M_sun formed); got {values}")
    return values


def ssp_photometry(ages, spectra, filters, system="AB", *, log_lbol=None, mstar=None, redshift=0,
                   cosmology=None, extrapolate=False, igm=False, colors=None):
    """Photometry of SSPs given their spectra: absolute magnitudes, M/L, M_bol, apparent magnitudes at z.

    Parameters
    ----------
    ages : Quantity [time] or array [yr], one per spectrum
    spectra : specutils.Spectrum (n_age, n_wave) or (wavelength, L_lambda) pair, L_sun / A per M_sun formed
    filters, system : as in :func:`magnitudes`
    log_lbol : array (n_age,) or one value, log10 L_bol / L_sun per M_sun formed (numbers, or a Quantity in
        dex(L_sun)), finite; default ``spectra.meta["log_lbol"]``
    mstar : array (n_age,) or one value, stellar mass per M_sun formed for M/L: a mass Quantity (converted
        to M_sun) or numbers in M_sun, finite and > 0; default from ``meta`` (keys tried: mstar, mass_stars,
        surviving_mass, ...; log_ keys are un-logged; not ``stellar_mass``, which counts remnants in FSPS),
        else 1 (mass formed)
    redshift : float >= 0; > 0 adds observed-frame apparent magnitudes ``m_obs_<filter>`` per M_sun formed
        at the luminosity distance of ``cosmology`` (default Planck18)
    cosmology : as in :func:`magnitudes`: a Cosmology, a realization's name ("Planck18") or None (Planck18)
    igm : bool, Madau (1995) IGM absorption in the apparent magnitudes (as in :func:`magnitudes`; off by
        default, as FSPS's ``add_igm_absorption``)
    colors : colours to add, e.g. ``"g-r,B-V"`` (bands of ``filters``, by full or unique short name):
        columns ``g-r`` = M_g - M_r [mag] in ``system`` (and ``obs_g-r`` at z > 0), see :func:`add_colors`

    Returns
    -------
    astropy.table.Table
        Columns ``age`` [Gyr], ``log_age`` [log10 yr], ``M_bol``, and per filter ``M_<f>`` (absolute,
        rest frame), ``ML_<f>`` (M*/L in M_sun/L_sun,<f>; NaN where no solar magnitude exists) and,
        at z > 0, ``m_obs_<f>`` (not ``m_<f>``: FITS compares column names without case); then the colours.
    """
    _refuse_masked(ages, "ages")        # u.Quantity drops a mask: a masked age was computed as if valid
    try:
        ages_yr = np.atleast_1d(u.Quantity(ages, u.yr).value).astype(float)
    except (TypeError, ValueError, u.UnitsError) as exc:
        raise ValueError("ages must be times (a Quantity in yr, Myr, Gyr, or numbers in yr); "
                         f"got {ages!r}") from exc
    if not np.all(np.isfinite(ages_yr)) or np.any(ages_yr <= 0):
        raise ValueError(f"ages must be positive and finite (yr or a time Quantity); got {ages!r}")
    system = _system(system)
    z = check_redshift(redshift)
    cosmology = as_cosmology(cosmology)
    extrapolate = check_switch(extrapolate, "extrapolate")
    igm = check_switch(igm, "igm")
    w, lum, meta = _split_input(spectra)
    if not (lum.unit.is_equivalent(_LUM_LAM) or lum.unit.is_equivalent(_LUM_NU)):
        raise ValueError("SSP spectra must be luminosity densities (L_sun / A per M_sun formed), got "
                         f"{lum.unit}")
    if lum.shape[0] != ages_yr.size:
        raise ValueError(f"{ages_yr.size} age(s) for {lum.shape[0]} spectra; give one age per spectrum")
    named = resolve_filters(filters)
    if colors:
        parse_colors(colors, [name for name, _ in named])        # an unknown band before any integral
    absolute = magnitudes((w * u.AA, lum), [bp for _, bp in named], system=system, extrapolate=extrapolate)
    table = Table()
    table["age"] = Column(ages_yr / 1e9, unit=u.Gyr)
    table["log_age"] = Column(np.log10(ages_yr), unit=u.dex(u.yr), description="log10 age [yr]")
    lbol_source = "log_lbol"
    if log_lbol is None:
        log_lbol, lbol_source = meta.get("log_lbol"), "spectra.meta['log_lbol']"
    if log_lbol is not None:
        log_lbol = _log_lbol_per_age(log_lbol, lbol_source, ages_yr.size)
        table["M_bol"] = Column(MBOL_SUN - 2.5 * log_lbol, unit=u.mag,
                                description="4.74 - 2.5 log10(L_bol / L_sun) per M_sun formed")
    if mstar is None:
        mstar, mass_key = _find(meta, _MASS_KEYS)
    else:
        mass_key = "argument"
    if mstar is None:
        mstar, mass_key = np.ones(ages_yr.size), "none (1 M_sun formed)"
    mstar = _stellar_mass_per_age(mstar, "mstar" if mass_key == "argument" else f"spectra.meta[{mass_key!r}]",
                                  ages_yr.size)
    msun = {name: _sun_mag_or_nan(name, bp, system) for name, bp in named}
    apparent = None
    if z > 0:
        age_universe = cosmology.age(z).to_value(u.yr)
        if np.any(ages_yr > age_universe):
            warnings.warn(f"{int((ages_yr > age_universe).sum())} age(s) exceed the age of the universe at "
                          f"z={z:g} ({age_universe / 1e9:.3g} Gyr in {cosmology.name})", UserWarning,
                          stacklevel=2)
        apparent = magnitudes((w * u.AA, lum), [bp for _, bp in named], system=system, redshift=z,
                              cosmology=cosmology, extrapolate=extrapolate, igm=igm)
        table.meta.update(_cosmology_meta(cosmology, z))
    for (name, bp), col in zip(named, absolute.colnames):
        table[f"M_{name}"] = Column(np.asarray(absolute[col]), unit=absolute[col].unit,
                                    description=f"absolute {system} magnitude per M_sun formed")
        table[f"ML_{name}"] = Column(mstar * 10 ** (0.4 * (np.asarray(absolute[col]) - msun[name])),
                                     unit=u.M_sun / u.L_sun, description=f"M*/L in {name}")
        if apparent is not None:
            table[f"m_obs_{name}"] = Column(np.asarray(apparent[col]), unit=apparent[col].unit,
                                        description=f"apparent {system} magnitude at z={z:g} "
                                                    "per M_sun formed")
    table.meta.update({"system": system, "redshift": z, "mass_for_ML": mass_key,
                       "igm": "Madau (1995)" if igm and z > 0 else "none",
                       "M_sun": msun,
                       "M_sun_source": "CALSPEC sun_reference_stis_001 at 10 pc", "Mbol_sun": MBOL_SUN})
    if colors:
        add_colors(table, colors)
    return table


def ssp_magnitudes(ages, Z=None, filters=None, system="AB", imf="kroupa", isochrones="parsec", generator=None,
                   redshift=0, cosmology=None, extrapolate=False, igm=False, progress=None, colors=None, *,
                   logzsol=None, special_phases="model", outside="extrapolate", device="auto"):
    """SSP magnitudes vs age at metallicity Z from :func:`smnet_sps.ssp.ssp_grid` (one batched pass).

    Parameters
    ----------
    ages : as ``ssp_grid`` takes them (Quantity [time], array [yr], strings such as "1 Gyr", or None for all
        tabulated ages); the table has one row per age, in the order given
    Z : float, metal mass fraction (e.g. 0.0152 = solar for PARSEC), or
    logzsol : float, log10(Z / Zsun) [dex] with the family's Zsun, as :func:`smnet_sps.ssp.ssp_spectrum`
        takes them (both given: ValueError; neither: solar, or the one Z of a set of one Z)
    filters : required, as :func:`magnitudes` takes them
    imf, isochrones, generator, special_phases, outside, device : passed to ``ssp_grid`` (as
        :func:`smnet_sps.ssp.ssp_spectrum` takes them; the table's meta records special_phases and outside)
    colors : e.g. ``"g-r,B-V"``: colour columns, as :func:`ssp_photometry`
    progress : bool or None, ``ssp_grid``'s tqdm progress bar over the generator batches (on stderr);
        None (default): on a terminal or in a Jupyter kernel only, never into a log file
        (:mod:`smnet_sps.progress`)
    Other parameters and the returned table: see :func:`ssp_photometry`.
    """
    from .isochrones import resolve_isochrones
    from .ssp import _resolve_z, parse_age, ssp_grid   # here: photometry must not depend on the SSP stage
    if filters is None:
        raise ValueError("ssp_magnitudes needs filters, e.g. ['sdss2010-g', 'sdss2010-r'] "
                         "(smnet_sps.filters.available_filter_names())")
    named = resolve_filters(filters)    # fail on a bad filter name before the (slow) SSP grid is computed
    if colors:
        parse_colors(colors, [name for name, _ in named])        # and on a colour of an unknown band
    _system(system)
    check_redshift(redshift)
    cosmology = as_cosmology(cosmology)
    extrapolate = check_switch(extrapolate, "extrapolate")
    igm = check_switch(igm, "igm")
    for name, value in (("Z", Z), ("logzsol", logzsol)):
        if np.ndim(value) != 0:
            raise ValueError(f"ssp_magnitudes takes one metallicity {name} (a number); got {value!r}: call "
                             f"it once per {name}, or use ssp_grid(ages, Zs) with ssp_photometry for several")
    iso = resolve_isochrones(isochrones)
    Z = float(_resolve_z(iso, Z, logzsol))      # ssp_spectrum's rule: Z or logzsol, one of them
    # ssp_grid parses the ages itself (u.Quantity(ages, u.yr) first computed masked ages and failed on
    # ["1 Gyr", "5 Gyr"]); its errors name the family's valid range
    grid = ssp_grid(ages, [Z], imf=imf, isochrones=iso, generator=generator, progress=progress,
                    special_phases=special_phases, outside=outside, device=device)
    get = (lambda k: grid.get(k)) if isinstance(grid, dict) else (lambda k: getattr(grid, k, None))
    wave = np.asarray(get("ssp_wave"), float)
    flux = np.asarray(get("ssp_flux"), float)[0]                 # (n_age, n_wave) L_sun/A per M_sun formed
    ages_out = 10 ** np.asarray(get("ssp_lg_age_gyr"), float) * 1e9
    meta = {k: (np.asarray(get(k))[0] if np.ndim(get(k)) == 2 else get(k))
            for k in ("log_lbol",) + _MASS_KEYS if get(k) is not None}
    mstar, _ = _find(meta, _MASS_KEYS)
    table = ssp_photometry(ages_out * u.yr, (wave * u.AA, flux * u.L_sun / u.AA), filters, system=system,
                           log_lbol=meta.get("log_lbol"), mstar=mstar, redshift=redshift, cosmology=cosmology,
                           extrapolate=extrapolate, igm=igm, colors=colors)
    if get("missing_fraction") is not None:
        table["missing_fraction"] = Column(np.asarray(get("missing_fraction"), float)[0],
                                           description="fraction of L_bol from isochrone points without a "
                                                       "spectrum (left out of the SSP)")
    if get("outside_fraction") is not None:
        table["outside_fraction"] = Column(np.asarray(get("outside_fraction"), float)[0],
                                           description="fraction of L_bol from stars outside the generator's "
                                                       "coverage (extrapolated, blackbody or missing)")
    # the light beyond the spectrum's wavelengths (ssp_spectrum's meta["beyond_grid_fraction"]; 0.90 at
    # 3 Myr on a 3,000 A - 10 um grid): no band lacks it (one reaching beyond is refused, or warned about
    # with extrapolate=True) and M_bol is the isochrone's, but the spectrum behind the table does
    if get("log_lbol") is not None and get("missing_fraction") is not None:
        from .backend import _trapz_weights
        from .ssp import beyond_grid_fraction
        table["beyond_grid_fraction"] = Column(
            beyond_grid_fraction(flux, _trapz_weights(wave), 10 ** np.asarray(get("log_lbol"), float)[0],
                                 np.asarray(get("missing_fraction"), float)[0]),
            description="fraction of L_bol emitted outside the spectrum's wavelength grid (left out of the "
                        "SSP)")
    # ssp_grid's ages are sorted and distinct; the rows follow the ages as given (repeats repeated)
    if ages is not None:
        unique, given_order = np.unique(np.atleast_1d(parse_age(ages)), return_inverse=True)
        if unique.size == len(table):
            table = table[given_order.ravel()]
    table.meta["mass_for_ML"] = ("mass_stars: surviving stellar mass per M_sun formed (ssp_grid)"
                                 if mstar is not None else table.meta["mass_for_ML"])
    # the generator that made the spectra, by its name (the option string "default" said nothing of it)
    attrs = get("attrs") or {}
    name = attrs.get("generator") or getattr(generator, "name", None) or str(generator)
    from .output_files import provenance
    from .ssp import _weights_sha256
    # and by its weights' sha256 (ssp_grid's attrs record it): a name alone told a model retrained into the
    # same folder from the one it replaced only by nothing
    sha = attrs.get("generator_sha256") if attrs else _weights_sha256(generator)
    # the set's name (an IsochroneSet or a file passed as isochrones= printed as its repr / path)
    # the IMF's limits, as ssp_grid used them (its attrs; `ssp --out .fits` writes them): the name alone
    # left a Kroupa IMF to 40 M_sun reading as the 0.08-120 default
    mass_range, imf_name = attrs.get("imf_mass_range"), attrs.get("imf")
    if mass_range is None or imf_name is None:
        from .imf import get_imf
        imf_obj = get_imf(imf)
        mass_range, imf_name = [imf_obj.m_low, imf_obj.m_up], imf_obj.name
    # the IMF's name, as `ssp --out .fits` writes it: str() of an IMF passed in wrote its repr,
    # "IMF('kroupa', 0.08-40 Msun)", of a callable "<function f at 0x...>"
    table.meta.update({"Z": Z, "logzsol": float(np.log10(Z / iso.zsun)), "zsun": iso.zsun, "imf": imf_name,
                       "imf_mass_range": [float(m) for m in mass_range],
                       "isochrones": attrs.get("isochrones") or str(isochrones),
                       # the backend's rules (a Generator / backend passed in: its own)
                       "special_phases": attrs.get("special_phases", special_phases),
                       "outside": attrs.get("outside", outside), **provenance(name, sha)})
    return table


# ---------------------------------------------------------------------------------------------------
# Colours of a magnitude table
# ---------------------------------------------------------------------------------------------------
def _band_aliases(names):
    """{name or its unique short form: name} of a table's bands: the short form is what follows the
    filter's group (``sdss2010-g`` -> ``g``, ``bessell-V`` -> ``V``, ``sdss_r0`` -> ``r0``), kept only where
    no other band of the table has it."""
    short = {}
    for name in names:
        tail = re.split(r"[-_./]", name)[-1]
        if tail and tail != name:
            short.setdefault(tail, []).append(name)
    aliases = {tail: found[0] for tail, found in short.items() if len(found) == 1 and tail not in names}
    aliases.update({name: name for name in names})
    return aliases


def parse_colors(colors, bands):
    """``[(text, band_a, band_b)]`` of colours ``"a-b"`` (text, or a list of them) among ``bands`` (filter
    names); each side a full name or its unique short form (``g`` for ``sdss2010-g``). A ValueError names
    an unknown band and the bands available, or an ambiguous split."""
    aliases = _band_aliases(list(bands))
    if isinstance(colors, str):
        colors = [c.strip() for c in colors.split(",") if c.strip()]
    try:
        colors = list(colors)
    except TypeError:
        raise ValueError(f"colors must be text such as 'g-r,B-V' or a list of such colours; got {colors!r}") \
            from None
    available = ", ".join(sorted(set(aliases) - set(bands)) + list(bands))
    out = []
    for text in colors:
        if not isinstance(text, str) or "-" not in text:
            raise ValueError(f"a colour is two bands joined by '-', e.g. 'g-r'; got {text!r}")
        dashes = [i for i, ch in enumerate(text) if ch == "-"]
        splits = {(aliases[text[:i]], aliases[text[i + 1:]]) for i in dashes
                  if text[:i] in aliases and text[i + 1:] in aliases}
        if not splits:
            unknown = [part for part in text.split("-") if part and part not in aliases]
            raise ValueError(f"colour {text!r}: no band {', '.join(map(repr, unknown)) or 'pair'} among the "
                             f"magnitudes; bands available: {available}")
        if len(splits) > 1:
            raise ValueError(f"colour {text!r} splits into two bands in more than one way "
                             f"({'; '.join(f'{a} - {b}' for a, b in sorted(splits))}); give full filter "
                             "names")
        out.append((text, *splits.pop()))
    return out


def add_colors(table, colors):
    """Add colour columns to a table of ``M_<filter>`` magnitudes (:func:`ssp_magnitudes`,
    :func:`ssp_photometry`, :func:`smnet_sps.star_tables.points_magnitudes`), in place; returns the table.

    ``colors``: ``"g-r,B-V"`` or a list such as ``["g-r", "sdss2010-u-sdss2010-g"]``. Each band is a
    filter of the table, by its full name or by its short form when that is unique in the table
    (``sdss2010-g`` -> ``g``, ``bessell-B`` -> ``B``). A colour ``a-b`` is ``M_a - M_b`` [mag], in the
    table's magnitude system (``meta["system"]``, also in each column's description); column named as
    given (``g-r``). At z > 0 an SSP table's observed-frame colour ``m_obs_a - m_obs_b`` is added too, as
    ``obs_<a-b>``. ``meta["colors"]`` records each colour's definition.

    Raises
    ------
    ValueError
        A band that is not in the table (naming the bands available), a colour that does not split into
        two bands, or one that splits into two bands in more than one way.
    """
    bands = [c[2:] for c in table.colnames if c.startswith("M_") and c != "M_bol"]
    system = table.meta.get("system")
    defined = dict(table.meta.get("colors") or {})
    for text, a, b in parse_colors(colors, bands):
        if (text in table.colnames or f"obs_{text}" in table.colnames) and text not in defined:
            raise ValueError(f"the table already has a column {text!r}; not replaced by the colour")
        where = f" ({system})" if system else ""
        table[text] = Column(np.asarray(table[f"M_{a}"], float) - np.asarray(table[f"M_{b}"], float),
                             unit=u.mag, description=f"colour M_{a} - M_{b}{where}")
        defined[text] = f"M_{a} - M_{b}"
        if f"m_obs_{a}" in table.colnames and f"m_obs_{b}" in table.colnames:
            table[f"obs_{text}"] = Column(np.asarray(table[f"m_obs_{a}"], float)
                                          - np.asarray(table[f"m_obs_{b}"], float), unit=u.mag,
                                          description=f"observed-frame colour m_obs_{a} - m_obs_{b}{where}")
            defined[f"obs_{text}"] = f"m_obs_{a} - m_obs_{b}"
    table.meta["colors"] = defined
    return table


# ---------------------------------------------------------------------------------------------------
# Command line: smnet-sps mags
# ---------------------------------------------------------------------------------------------------
def parse_ages(text, n_ages=None):
    """"0.01-13Gyr" -> n_ages log-spaced ages [yr]; "0.1,1,10Gyr" -> a list; a unit is required: the
    command line's grammar, :func:`smnet_sps.cli.parse_ages_option` (also lists of such strings)."""
    from .cli import parse_ages_option
    return parse_ages_option(text, n_ages)


def plot_colour_evolution(table, path=None, filter_names=None):
    """Magnitudes and colours vs log age, from an :func:`ssp_magnitudes` table.

    The colour panel shows the table's rest-frame colour columns (:func:`add_colors`, ``mags --colors``,
    recorded in ``meta["colors"]``), else the colour of the first two filters; in the table's magnitude
    system, which its axis names.

    Parameters
    ----------
    table : astropy.table.Table with ``log_age`` and ``M_<filter>`` columns
    path : path-like, optional; also save the figure there (PNG or any matplotlib format, from the extension;
        a missing folder is created: :func:`~smnet_sps.output_files.save_plot`)
    filter_names : list of str, optional; default every ``M_<filter>`` column except ``M_bol``

    Returns
    -------
    matplotlib.figure.Figure
        Drawn with the caller's matplotlib backend, which is left unchanged; close it with
        ``matplotlib.pyplot.close(fig)`` when done.
    """
    import matplotlib.pyplot as plt
    if filter_names is None:
        filter_names = [c[2:] for c in table.colnames if c.startswith("M_") and c != "M_bol"]
    # checked before the figure exists (a KeyError after it left an orphan figure in pyplot)
    missing = [name for name in filter_names if f"M_{name}" not in table.colnames]
    if "log_age" not in table.colnames:
        raise ValueError("plot_colour_evolution needs a log_age column")
    if not filter_names or missing:
        problem = f"no M_ column for {missing}" if missing else "no filters"
        raise ValueError(f"plot_colour_evolution needs an ssp_magnitudes table with log_age and M_<filter> "
                         f"columns; {problem}")
    # the colours asked for (mags --colors g-r,nuv-r): the panel showed the first two filters' colour instead
    # name -> "M_a - M_b" (observed frame: "m_obs_..."); read back from .fits / .txt it is JSON text (these
    # fell back to the first two filters' colour); an older .txt holds Python's repr: the fallback
    from .output_files import json_attr
    try:
        defined = json_attr(_mags_meta(table, "colors")) or {}
    except ValueError:
        defined = {}
    if not isinstance(defined, dict):      # a hand-made table's list of colours: no rules, the fallback
        defined = {}
    colours = [(name, np.asarray(table[name], float)) for name, rule in defined.items()
               if name in table.colnames and str(rule).startswith("M_")]
    if not colours and len(filter_names) >= 2:
        a, b = filter_names[:2]
        colours = [(f"{a} - {b}", np.asarray(table[f"M_{a}"], float) - np.asarray(table[f"M_{b}"], float))]
    n_panels = 2 if colours else 1
    fig, axes = plt.subplots(1, n_panels, figsize=(5.5 * n_panels, 4.2), squeeze=False)
    ax = axes[0, 0]
    for name in filter_names:
        ax.plot(table["log_age"], table[f"M_{name}"], marker="o", ms=3, label=name)
    show_bol = "M_bol" in table.colnames
    if show_bol:
        # bolometric (M_bol = MBOL_SUN - 2.5 log L_bol), in no filter's system: the curve and axis say so
        ax.plot(table["log_age"], table["M_bol"], "k--",
                label=f"M$_{{\\rm bol}}$ (bolometric, M$_{{\\rm bol,\\odot}}$ = {MBOL_SUN:g})")
    ax.invert_yaxis()
    ax.set_xlabel("log age [yr]")
    system = _magnitude_system(table, filter_names)
    ylabel = "absolute magnitude per M$_\\odot$ formed [mag]"
    if show_bol:      # the axis said "(AB)" of an M_bol curve that is no AB magnitude
        ylabel += "\n" + (f"filters: {system}; " if system else "") + "M$_{\\rm bol}$: bolometric"
    elif system:
        ylabel += f" ({system})"
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    if colours:
        ax2 = axes[0, 1]
        for k, (name, values) in enumerate(colours):
            ax2.plot(table["log_age"], values, f"C{k}o-", ms=3, label=name)
        ax2.set_xlabel("log age [yr]")
        where = f" ({system})" if system else ""
        ax2.set_ylabel(f"{colours[0][0]} [mag]{where}" if len(colours) == 1 else f"colour [mag]{where}")
        if len(colours) > 1:
            ax2.legend(fontsize=8)
    z = table.meta.get("Z")
    gen = table.meta.get("generator")
    fig.suptitle("SSP colour evolution" + (f", Z = {z:g}" if z is not None else "")
                 + (f", {table.meta.get('isochrones')} + {gen}" if gen else ""))
    fig.tight_layout()
    from .output_files import save_plot
    return save_plot(fig, path, dpi=110)


def _mags_meta(table, key):
    """``meta[key]`` of an :func:`ssp_magnitudes` table, also as read back from the files of ``smnet-sps mags
    --out``: under the key in any case (FITS writes upper case), else a ``key: value`` comment line (.txt);
    None where neither has it. Dicts and lists come back from .fits and .txt as JSON text:
    :func:`~smnet_sps.output_files.json_attr` decodes them."""
    key = key.lower()
    meta = {str(k).lower(): v for k, v in table.meta.items()}
    value = meta.get(key)
    if value is not None and not (isinstance(value, str) and not value.strip()):
        return value
    for line in meta.get("comments") or []:
        name, sep, value = str(line).partition(":")
        if sep and name.strip().lower() == key and value.strip():
            return value.strip()
    return None


def _magnitude_system(table, filter_names):
    """The magnitude system of an :func:`ssp_magnitudes` table, also as read back from the files of
    ``smnet-sps mags --out``: ``meta["system"]`` in any case (FITS writes SYSTEM), a ``system: ...`` comment
    line (.txt), else the M_ columns' unit (mag(AB), mag(ST); FITS keeps it in UNIT_M_<filter>). None where
    nothing says (a .csv; Vega magnitudes in plain mag without metadata): a guessed "AB" labelled Vega
    magnitudes AB."""
    system = _mags_meta(table, "system")
    if system:
        return str(system)
    systems = set()
    for name in filter_names:
        unit = _mags_meta(table, f"unit_m_{name}"[:68]) or table[f"M_{name}"].unit
        found = re.fullmatch(r"mag\((\w+)\)", str(unit)) if unit is not None else None
        systems.add(found.group(1) if found else None)
    return systems.pop() if len(systems) == 1 else None


# extension of `smnet-sps mags --out` -> astropy format (explicit, so a name never picks a surprising format)
TABLE_FORMATS = {".ecsv": "ascii.ecsv", ".csv": "ascii.csv", ".txt": "ascii.commented_header",
                 ".fits": "fits", ".fit": "fits"}


def _write_table(table, path, fmt):
    """Write a magnitude table in astropy format ``fmt`` (:data:`TABLE_FORMATS`): FITS with its metadata made
    FITS-ready, plain text with the metadata as comment lines."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*cannot be added to FITS Header.*")
        warnings.filterwarnings("ignore", message=".*HIERARCH card will be created.*")
        (_fits_ready(table) if fmt == "fits" else
         _with_comment_header(table) if fmt == "ascii.commented_header" else table).write(path, format=fmt)


def _with_comment_header(table):
    """A copy whose meta is comment lines (``# key: value``, then each column's unit and description): the
    plain-text table keeps the magnitude system, redshift, Z and units, and reads back with astropy."""
    out = table.copy(copy_data=False)
    import json

    from .output_files import json_safe
    # dicts and lists as strict JSON, as in FITS (Python's repr was no format a reader could parse back)
    lines = [f"{k}: " + (json.dumps(json_safe(v), default=str, allow_nan=False)
                         if isinstance(v, (dict, list, tuple)) else f"{v}") for k, v in table.meta.items()]
    lines += [f"column {c}:" + (f" [{table[c].unit}]" if table[c].unit is not None else "")
              + (f" {table[c].description}" if table[c].description else "") for c in table.colnames]
    out.meta = {"comments": lines}
    return out


def _dask_options_given(args):
    """The Dask options of ``mags`` given on the command line (they apply to Parquet --points tables only)."""
    return [name for name, given in (("--workers", getattr(args, "workers", None) is not None),
                                     ("--scheduler", getattr(args, "scheduler", None) is not None),
                                     ("--chunk-rows", args.chunk_rows != 100_000)) if given]


def _cli_points_table(args):
    """``smnet-sps mags --points stars.csv`` (or .ecsv / .fits / .txt, gzipped too): each star's absolute
    magnitudes in this process, written as a table (--out, default <table>_mags.ecsv) beside the input
    columns."""
    from pathlib import Path

    from .distributed import refuse_ssp_options
    from .output_files import check_outputs, suffix_of
    from .star_tables import points_magnitudes, read_points_table
    refuse_ssp_options(args)
    dask_only = _dask_options_given(args)
    if dask_only:
        raise ValueError(f"{', '.join(dask_only)} apply to Parquet --points tables (run on Dask); a CSV, "
                         "ECSV or FITS table is computed in this process")
    points = Path(args.points)
    if args.out is None:
        args.out = str(points.with_name(points.name[:len(points.name) - len(suffix_of(points))]
                                        + "_mags.ecsv"))    # s.fits.gz -> s_mags.ecsv
    outputs = check_outputs(args, {"out": (tuple(TABLE_FORMATS), "magnitude table")})
    table = read_points_table(points)           # a missing file or column fails before the model loads
    from .filters import split_filter_names
    filters = split_filter_names(args.filters, "--filters")
    _check_columns(outputs["out"], filters, args.colors, ("M_",), args.system, kept=table.colnames)
    from .neural import load_generator_option
    generator = load_generator_option(args.model, args.meta, device=args.device)
    from .cli import show_progress
    table = points_magnitudes(table, filters, args.system, generator=generator, colors=args.colors,
                              device=args.device, progress=show_progress(args))
    from .output_files import write_out_and_plot
    fmt = TABLE_FORMATS[suffix_of(outputs["out"])]

    def write_table(path):
        _write_table(table, path, fmt)

    write_out_and_plot(args, outputs, write_table, None)
    n_out = int((~np.asarray(table["inside"])).sum())
    print(f"wrote {args.out}: absolute magnitudes (10 pc, {table.meta['system']}) of {len(table)} stars in "
          f"{', '.join(filters)}" + (f", colours {', '.join(table.meta['colors'])}" if args.colors else "")
          + f"; {n_out} star(s) outside the generator's coverage")
    if fmt == "ascii.csv":
        print("  (a CSV holds no units and no metadata -- magnitude system, generator: .ecsv or .fits keep "
              "them, .txt as comment lines)")
    return 0


def _cli_mags(args):
    from .cli import show_progress
    from .output_files import suffix_of
    if getattr(args, "logzsol", None) is not None and args.points:
        raise ValueError("--logzsol applies to SSP magnitudes only; with --points each star's absolute "
                         "magnitudes (10 pc) are written (a table, or a Zarr store for Parquet)")
    from pathlib import Path

    from .star_tables import PARQUET_SUFFIXES
    # only Parquet goes to Dask: s.fits.gz, s.csv.gz or s.txt was read as Parquet ("Parquet magic bytes not
    # found"); any other extension is read_points_table's (its error lists the formats)
    parquet = args.points and (Path(args.points).is_dir() or suffix_of(args.points) in PARQUET_SUFFIXES)
    from .neural import check_device_name, resolve_device
    if not parquet:
        # both paths run the generator here: one check, one message ('blackbody' on a points table never
        # read --device, so '--device gpu' wrote the table with status 0; the SSP path's backend refused it)
        resolve_device(args.device)
    else:
        # Dask workers run it, and may have CUDA where this client has none: the name only ('--device gpu'
        # wrote the store with status 0, the blackbody never reading it, or failed on each worker)
        check_device_name(args.device)
    if args.points and not parquet:
        return _cli_points_table(args)          # a CSV / ECSV / FITS / text table: here, no Dask or Parquet
    if args.points:                             # Parquet: chunk by chunk on Dask (smnet_sps.distributed)
        from .distributed import cli_points_mags
        return cli_points_mags(args)
    points_only = _dask_options_given(args)
    if points_only:
        # they were silently ignored (an unreachable --scheduler ran in-process with exit status 0)
        raise ValueError(f"{', '.join(points_only)} apply to --points tables only; SSP magnitudes run in "
                         "this process")
    from .output_files import check_outputs, matplotlib_formats, write_out_and_plot
    outputs = check_outputs(args, {"out": (tuple(TABLE_FORMATS), "magnitude table"),
                                   "plot": (matplotlib_formats(), "plot")})
    ages = parse_ages(args.ages, args.n_ages)
    from .ssp import cli_isochrones, cli_metallicities
    iso = cli_isochrones(args.isochrones)       # an unknown or uninstalled family fails before any work
    zs = cli_metallicities(args, iso)           # ssp-grid's grammar; one table is one metallicity
    if zs is None:
        if iso.Z.size != 1:       # a file of one metallicity has its Z (as `ssp` takes it)
            raise ValueError("--Z or --logzsol is required for SSP magnitudes (or give --points "
                             "stars.parquet)")
        zs = iso.Z.copy()
    if zs.size != 1:
        option = "--Z" if args.logzsol is None else "--logzsol"
        raise ValueError(f"mags makes one table per metallicity; got {option} with {zs.size} values "
                         f"({', '.join(f'{z:g}' for z in zs)} as Z): run it once per value (ssp-grid takes "
                         "several)")
    if args.igm and not args.redshift > 0:
        raise ValueError("--igm applies to observed-frame magnitudes: give --redshift > 0 with it")
    from .filters import split_filter_names
    filters = split_filter_names(args.filters, "--filters")
    _check_columns(outputs.get("out"), filters, args.colors,
                   ("M_", "ML_") + (("m_obs_",) if args.redshift > 0 else ()), args.system)
    from .neural import load_generator_option
    # 'blackbody' (analytic) lets the command run without a trained model
    generator = load_generator_option(args.model, args.meta, device=args.device)
    table = ssp_magnitudes(ages * u.yr, float(zs[0]), filters, system=args.system, imf=args.imf,
                           isochrones=iso, generator=generator, redshift=args.redshift,
                           extrapolate=args.extrapolate, igm=args.igm, progress=show_progress(args),
                           colors=args.colors, special_phases=args.special_phases, outside=args.outside,
                           device=args.device)
    # the screen's format on a copy: written with it, .csv / .txt held 4 digits (ages 3e-4 off, M/L 0.2 %)
    shown = table.copy()
    for col in shown.colnames:
        if col not in ("age",):
            shown[col].info.format = ".4f"
    shown["age"].info.format = ".4g"
    fmt = TABLE_FORMATS[suffix_of(outputs["out"])] if "out" in outputs else None

    def write_table(path):
        _write_table(table, path, fmt)

    # the files first, then the table (write_out_and_plot)
    wrote = write_out_and_plot(args, outputs, write_table, lambda: plot_colour_evolution(table))
    notes = []
    for attr, path in wrote.items():
        notes.append(f"wrote {path}")
        if attr == "out" and fmt == "ascii.csv":
            notes.append("  (a CSV holds no units and no metadata -- magnitude system, redshift, Z, IMF: "
                         ".ecsv or .fits keep them, .txt as comment lines)")
    shown.pprint(max_lines=-1, max_width=-1)
    for note in notes:
        print(note)
    return 0


#: the longest column name a FITS table holds: a TTYPEn value on one 80-character card (a quote counts twice)
FITS_COLUMN_NAME_MAX = 68


def _check_columns(out, filters, colors, prefixes, system, kept=()):
    """Before the model loads: a colour of an unknown band (:func:`parse_colors`) and, for a FITS ``out``
    (None: no table written), the columns :func:`_check_fits_columns` refuses. The filters are resolved
    once for both (a filter file read once), and only where one of the checks needs them."""
    from .output_files import suffix_of
    fits = out is not None and TABLE_FORMATS.get(suffix_of(out)) == "fits"
    if not (colors or fits):
        return
    bands = [name for name, _ in resolve_filters(filters)]
    if colors:
        parse_colors(colors, bands)
    if fits:
        _check_fits_columns(out, bands, colors, prefixes, system, kept)


def _check_fits_columns(out, bands, colors, prefixes, system, kept=()):
    """For a FITS ``--out``, refuse before the model loads the columns FITS cannot name: ``<prefix><band>``
    for each of ``prefixes`` and each colour (``obs_<colour>`` too with ``m_obs_``) must be at most
    :data:`FITS_COLUMN_NAME_MAX` printable ASCII characters, as must ``kept`` (the columns of a ``--points``
    table, carried over); and an AB / ST magnitude column's unit keyword (``UNIT_<column>`` = ``mag(AB)``,
    :func:`_fits_ready`) must fit a header card. A filter file of a long name ended, after the work, in
    astropy's AssertionError traceback ('Column name must be a string able to fit in a single FITS card')
    or, for a shorter one (59 characters and more), VerifyError ('Unparsable card'), nothing written.
    ``bands``: the table's band names (:func:`~smnet_sps.filters.resolve_filters`' names, resolved once)."""
    names = list(kept) + [prefix + band for band in bands for prefix in prefixes]
    if colors:
        texts = [text for text, _, _ in parse_colors(colors, bands)]
        names += texts + ([f"obs_{text}" for text in texts] if "m_obs_" in prefixes else [])
    bad = [n for n in names
           if len(n) + n.count("'") > FITS_COLUMN_NAME_MAX or not (n.isascii() and n.isprintable())]
    if bad:
        raise ValueError(f"--out {str(out)!r}: a FITS table cannot hold the column {bad[0]!r} ({len(bad[0])} "
                         f"characters{'' if bad[0].isascii() else ', not ASCII'}"
                         f"{f', and {len(bad) - 1} more' if len(bad) > 1 else ''}): FITS column names are at "
                         f"most {FITS_COLUMN_NAME_MAX} printable ASCII characters; write .ecsv (which keeps "
                         "units and metadata too), or give the filter file (or column) a shorter name")
    # AB / ST magnitudes are a function unit, which FITS lacks: _fits_ready's UNIT_<column> keyword holds it
    unit = {"AB": "mag(AB)", "ST": "mag(ST)"}.get(_system(system))
    if unit is not None:
        bad_units = [prefix + band for band in bands for prefix in prefixes if prefix in ("M_", "m_obs_")
                     and not _card_round_trips(f"UNIT_{prefix}{band}", unit)]
        if bad_units:
            first = bad_units[0]
            raise ValueError(f"--out {str(out)!r}: a FITS table cannot record the unit {unit} of the column "
                             f"{first!r} ({len(first)} characters): its keyword UNIT_{first} does not fit a "
                             "header card; write .ecsv (which keeps units and metadata too), or give the "
                             "filter file a shorter name")


def _card_round_trips(key, value):
    """Whether a FITS header card ``key = value`` (HIERARCH for a long key) is written and read back as it
    is: a key too long for its value on one card made astropy's VerifyError ('Unparsable card', or cut to
    68 characters 'CONTINUE cards must have string values')."""
    from astropy.io import fits
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")         # astropy's "HIERARCH card will be created"
            header = fits.Header()
            header[key] = value
            return fits.Header.fromstring(header.tostring()).get(key) == value
    except (ValueError, fits.VerifyError):
        return False


def _fits_ready(table):
    """A copy FITS can hold without loss: logarithmic units (dex(yr), mag(AB)) become plain numbers with
    the unit as text in a UNIT_<column> keyword, and dict metadata JSON text (FITS has neither). Magnitudes
    keep TUNIT 'mag' (FITS's own unit; the system is in UNIT_<column>), so a FITS reader still sees them."""
    import json

    out = table.copy()
    for name in out.colnames:
        unit = out[name].unit
        if isinstance(unit, u.FunctionUnitBase):
            out[name] = Column(np.asarray(getattr(out[name], "value", out[name]), float), name=name,
                               unit=u.mag if isinstance(unit, u.MagUnit) else None,
                               description=(out[name].description or "") + f" [{unit}]")
            if not _card_round_trips(f"UNIT_{name}", str(unit)):
                # cut to 68 characters (as it was), or whole, the write failed with astropy's VerifyError
                raise ValueError(f"a FITS table cannot record the unit {unit} of the column {name!r}: its "
                                 f"keyword UNIT_{name} does not fit a header card; write .ecsv, or shorten "
                                 "the column's name")
            out.meta[f"UNIT_{name}"] = str(unit)
    from .output_files import (IMF_RANGE_FITS_KEYS, PROVENANCE_FITS_KEYS, SSP_OPTION_FITS_KEYS, fits_text,
                               json_safe)
    # the keywords of every FITS output, `ssp --out .fits`'s (not HIERARCH special_phases)
    for key, fits_key in {**PROVENANCE_FITS_KEYS, **SSP_OPTION_FITS_KEYS}.items():
        if key in out.meta:
            out.meta[fits_key] = out.meta.pop(key)
    if "imf_mass_range" in out.meta:            # two numbers, as `ssp` writes them (not JSON text)
        for fits_key, limit in zip(IMF_RANGE_FITS_KEYS, out.meta.pop("imf_mass_range")):
            out.meta[fits_key] = float(limit)
    for key, value in list(out.meta.items()):
        if isinstance(value, (dict, list, tuple)):
            # strict JSON: a band the Sun's spectrum does not cover (M_sun NaN) wrote the token NaN, which
            # JSON parsers other than Python's refuse; null as in every JSON the package writes
            out.meta[key] = fits_text(json.dumps(json_safe(value), default=str, allow_nan=False))
        elif isinstance(value, str):
            out.meta[key] = fits_text(value)       # a non-ASCII model name was dropped from the header
    return out


def add_cli(subparsers):
    from .neural import add_meta_option
    """Register ``smnet-sps mags``."""
    from .isochrones import FAMILY_CHOICES    # here: photometry does not need the isochrones at import
    from .imf import IMF_CHOICES
    p = subparsers.add_parser(
        "mags", help="SSP magnitudes, M/L and colours vs age through named filters",
        description="Absolute (and, at --redshift > 0, apparent) SSP magnitudes per M_sun formed, M*/L and "
                    "M_bol vs age, via smnet_sps.ssp.ssp_grid and synphot.")
    from .cli import AGES_HELP, DEFAULT_N_AGES, MAX_N_AGES
    p.add_argument("--Z", nargs="+", default=None, help="metal mass fraction, e.g. 0.0152 (PARSEC solar); "
                   "one per run; --Z or --logzsol is required unless --points (an --isochrones file of one "
                   "Z: its Z)")
    p.add_argument("--logzsol", nargs="+", default=None,
                   help="[M/H] = log10(Z/Zsun) [dex] with the family's Zsun, instead of --Z")
    p.add_argument("--filters", required=True,
                   help="comma-separated speclite/sedpy names or files, e.g. sdss2010-g,sdss2010-r")
    # the default stays one string: `mags --points` tells a typed --ages from it
    p.add_argument("--ages", nargs="+", default="0.01-12.5Gyr",
                   help=f"{AGES_HELP}; must lie inside the isochrone grid (PARSEC: 0.3163 Myr - 12.58 Gyr). "
                        "Default 0.01-12.5Gyr")
    p.add_argument("--n-ages", type=int, default=None,
                   help=f"number of ages of each 'lo-hi' range, 2-{MAX_N_AGES} (default {DEFAULT_N_AGES})")
    p.add_argument("--system", default="AB", type=_system_option, metavar="{AB,ST,Vega}",
                   help="magnitude system, any case (default AB)")
    p.add_argument("--redshift", type=float, default=0.0,
                   help="observed-frame magnitudes at this redshift z (Planck18; default 0: absolute "
                        "magnitudes at 10 pc)")
    p.add_argument("--igm", action="store_true",
                   help="with --redshift: Madau (1995) intergalactic absorption in the observed-frame "
                        "magnitudes (FSPS's add_igm_absorption; off by default, as in FSPS)")
    p.add_argument("--imf", default="kroupa", help=f"IMF passed to ssp_grid: {IMF_CHOICES}")
    p.add_argument("--isochrones", default="parsec",
                   help=f"isochrone family passed to ssp_grid: {FAMILY_CHOICES}; or the path of your own "
                        "isochrone file (a CMD output, or a .npz written by convert_fsps_isochrones)")
    p.add_argument("--generator", "--model", dest="model", default=None,
                   help="'default', 'semi-empirical', 'blackbody', a model directory or a released SM-Net "
                        "checkpoint (.pt, with --meta) (default: the shipped default model)")
    add_meta_option(p)
    from .ssp_cli import add_backend_options
    add_backend_options(p)                      # --special-phases, --outside, --device (as ssp, ssp-grid)
    p.add_argument("--extrapolate", action="store_true",
                   help="treat the spectrum as zero where a filter reaches beyond it, with a warning naming "
                        "each such filter and its share of weight outside (default: error)")
    p.add_argument("--out", default=None, help="write the table; format from the extension: "
                   + ", ".join(f"{k} ({v})" for k, v in TABLE_FORMATS.items())
                   + "; .ecsv and .fits keep units and metadata (system, redshift, Z), .txt as comment "
                   "lines, .csv neither")
    p.add_argument("--plot", default=None,
                   help="save a plot of magnitudes and colours (those of --colors, else the first two "
                        "filters') vs log age (e.g. colours.png)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--colors", default=None,
                   help="colours to add as columns, comma-separated, e.g. g-r,B-V: each band a filter of "
                        "--filters by its full name (sdss2010-g) or its short name when unique (g); in "
                        "--system (stated in the table's meta and column descriptions)")
    p.add_argument("--points", default=None,
                   help="table of stars (teff [K], logg, logz ([M/H]), and L [L_sun] or logl, not both): "
                        "absolute magnitudes (10 pc) of each star. A CSV, ECSV, FITS or text table (.csv, "
                        ".ecsv, .fits, .fit, .txt, .dat; gzipped too) is computed in this process and "
                        "written with its columns as a table "
                        "(--out .ecsv/.csv/.txt/.fits, default <table>_mags.ecsv); a Parquet file or folder "
                        "is written chunk by chunk on Dask (smnet-sps[dask]) to the Zarr store --out "
                        "(default <table>_mags.zarr)")
    p.add_argument("--chunk-rows", type=int, default=100_000,
                   help="stars per task with a Parquet --points (default 1e5)")
    from .distributed import add_cluster_args
    add_cluster_args(p)                         # --scheduler / --workers (smnet-sps[dask])
    p.set_defaults(func=_cli_mags)
    return p
