"""Shared input handling for every host adapter: validated DSPS-layout SSP arrays.

All adapters take the same input, the DSPS layout that :func:`smnet_sps.ssp.ssp_grid` returns::

    ssp_lgmet       (n_met,)               log10 Z (absolute metal mass fraction), increasing
    ssp_lg_age_gyr  (n_age,)               log10(age / Gyr), increasing
    ssp_wave        (n_wave,)              wavelength [Angstrom], increasing
    ssp_flux        (n_met, n_age, n_wave) L_lambda [L_sun / Angstrom per M_sun formed]
    surviving_mass  (n_met, n_age)         optional: M(stars + remnants) / M formed,
                                           in (0, MAX_SURVIVING_MASS]
    living_mass     (n_met, n_age)         optional: M(living stars) / M formed (an SSPGrid's
                                           ``mass_stars``), in (0, MAX_SURVIVING_MASS]
    outside_fraction (n_met, n_age)        optional: share of L_bol from stars outside the
                                           generator's coverage

Every writer also records the wavelength medium (smnet-sps: vacuum; ``medium="air"`` converts) and the
line-spread function (box, FWHM = pixel width per pixel, :mod:`smnet_sps.lsf`) in the field its host reads,
else in a documented extra field.

Each host then converts units and layout on its own side.
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from astropy import units as u

from smnet_sps.generator import _WAVE_UNITS, column_quantity
from smnet_sps.medium import check_medium, per_angstrom
from smnet_sps.output_files import json_attr
from smnet_sps.ssp import check_ssp_flux_scale, is_dsps_ssp_data
from smnet_sps.isochrones import FAMILIES as ISOCHRONE_FAMILIES
from smnet_sps.isochrones import check_zsun as _check_zsun

__all__ = ["SSPArrays", "as_ssp_arrays", "smnet_ssp_grid", "resolve_zsun", "check_zsun", "DEFAULT_ZSUN",
           "grid_medium", "template_lsf", "in_medium", "output_path"]

# PARSEC v1.2S solar metallicity (Bressan+2012, 0.0152), the project's default isochrones, from their table
# (smnet_sps.ssp_torch takes the same). Hosts that want [M/H] or Z/Z_sun use it unless the grid's metadata or
# the caller says otherwise.
DEFAULT_ZSUN = ISOCHRONE_FAMILIES["parsec"]["zsun"]
# FSPS's own masses give an isochrone's lowest point the stars from 0.08 M_sun up at that point's mass:
# where PARSEC's youngest isochrones start at 0.10-0.11 M_sun the surviving mass per M_sun formed exceeds 1
# (up to 1.005 with Kroupa, 1.023 with Salpeter; smnet-sps counts those stars at their own masses,
# smnet_sps.imf.first_interval_excess, and stays <= 1); grids made so are accepted, more is an error
MAX_SURVIVING_MASS = 1.05
# Unit slips caught on input: Z above 0.07 is no stellar population of any isochrone set (PARSEC's most
# metal-rich is 0.06; it is [M/H] read as log10 Z: an [M/H] grid of -2 ... -1 passed the former bound 0.1 and
# went to bagpipes as Z/Z_sun 0.5-5 instead of 0.008-0.08; an [M/H] grid wholly below -1.15 cannot be told
# from log10 Z), ages beyond 30 Gyr are log10(age / yr) read as log10(age / Gyr), a grid whose reddest
# wavelength is bluer than the Lyman limit is in microns, and one where an SSP of 1 Gyr or older peaks (in
# L_lambda) blueward of 2000 A is in nm (they peak at 4000-7600 A; a full grid in nm ends at 16,000 "A" and
# passed, its DSPS file 160x too faint at 5500 A)
MAX_LGMET = np.log10(0.07)
MAX_LG_AGE_GYR = np.log10(30.0)
MIN_REDDEST_WAVE = 912.0
MIN_OLD_PEAK_WAVE = 2000.0
# Hosts that build SEDs from a star-formation history (DSPS, bagpipes) need the grid's youngest SSP at most
# this old [yr]: younger stars get another population's light. With a grid from 10 Myr a constant SFH came out
# 57 % (DSPS) / 44 % (bagpipes) low at 1500 A against one from 10^5.5 yr (the isochrones' youngest age);
# from 1 Myr, DSPS's loss is ~4 %
MAX_YOUNGEST_SED_AGE_YR = 1e6

# Names under which a grid may carry the surviving (stars + remnants) mass fraction; the first found wins.
_MASS_KEYS = ("surviving_mass", "ssp_surviving_mass", "ssp_mass", "mass_fraction", "ssp_mstar",
              "mstar_surviving", "remaining_mass")
# Names under which a grid may carry the living-star mass fraction (no remnants; SSPGrid: mass_stars).
_LIVING_MASS_KEYS = ("living_mass", "mass_stars")


@dataclass(frozen=True)
class SSPArrays:
    """A validated SSP grid in the DSPS layout (see the module docstring for shapes and units)."""

    ssp_lgmet: np.ndarray
    ssp_lg_age_gyr: np.ndarray
    ssp_wave: np.ndarray
    ssp_flux: np.ndarray
    surviving_mass: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    outside_fraction: np.ndarray | None = None
    living_mass: np.ndarray | None = None

    @property
    def n_met(self):
        return self.ssp_lgmet.size

    @property
    def n_age(self):
        return self.ssp_lg_age_gyr.size

    @property
    def age_gyr(self):
        return 10.0 ** self.ssp_lg_age_gyr

    def logzsol(self, zsun=None):
        """[M/H] = log10(Z / Z_sun) of every metallicity; ``zsun`` default: the grid's own (``meta["zsun"]``,
        an SSPGrid's ``attrs["zsun"]``), else PARSEC's 0.0152 (:func:`resolve_zsun`; the default was 0.0152
        whatever the grid stated: a Padova grid's [M/H] came out +0.097 dex high)."""
        return self.ssp_lgmet - np.log10(resolve_zsun(self, zsun))


def _is_dsps_arrays(grid):
    """True for smnet-sps' own DSPS-unit arrays (``SSPGrid.to_dsps_units()``: L_nu [L_sun / Hz], on an axis
    whose medium they record, ``wavelength_medium``)."""
    from smnet_sps.ssp import DSPSArrays
    return isinstance(grid, DSPSArrays)


def _get(grid, key):
    if grid is None:
        return None
    if isinstance(grid, Mapping):
        # any mapping: a dict, or an .npz file as np.load opens it (an NpzFile, whose arrays are its keys,
        # was said to miss 'ssp_lgmet')
        return grid.get(key)
    return getattr(grid, key, None)


def _meta_dict(value):
    """A grid's ``attrs`` / ``meta`` as a dict, or None: a dict as it is, the JSON text an ``.npz`` SSP grid
    file stores them as (``save_ssp_grid``; a 0-d string array once read) decoded: it was dropped, and with
    it the grid's solar Z and wavelength medium (a Padova grid's [M/H] came out +0.097 dex high, an air grid
    was converted to air a second time, 1.4 A at 5000 A)."""
    try:
        value = json_attr(value)
    except ValueError:
        raise ValueError("the SSP grid's attrs are text but not JSON; give them as a dict, or read the "
                         "grid file with smnet_sps.ssp.load_ssp_grid(path)") from None
    return value if isinstance(value, dict) else None


def _as_1d_increasing(name, value, unit_hint):
    arr = np.atleast_1d(np.asarray(value, dtype=float))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-d array ({unit_hint}); got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has non-finite values; every entry must be a finite number ({unit_hint})")
    if arr.size > 1 and not (np.diff(arr) > 0).all():
        raise ValueError(f"{name} must be strictly increasing ({unit_hint}); sort the grid first")
    return arr


def as_ssp_arrays(grid=None, *, ssp_lgmet=None, ssp_lg_age_gyr=None, ssp_wave=None, ssp_flux=None,
                  surviving_mass=None, meta=None, living_mass=None):
    """Validate an SSP grid given as a mapping/object (e.g. from ``ssp_grid``) and/or explicit arrays.

    Parameters
    ----------
    grid : mapping or object, optional
        Anything with ``ssp_lgmet``, ``ssp_lg_age_gyr``, ``ssp_wave``, ``ssp_flux`` (keys or attributes);
        explicit keyword arrays override it. An ``.npz`` SSP grid file opened with ``np.load`` (or a dict of
        it) works: its ``attrs``, JSON text there, are read as the grid's (solar Z, medium, LSF). A
        surviving-mass array is picked up under any of the names ``surviving_mass``,
        ``ssp_surviving_mass``, ``ssp_mass``, ``mass_fraction``, ...
    ssp_lgmet : array (n_met,), log10 Z (absolute)
    ssp_lg_age_gyr : array (n_age,), log10(age / Gyr)
    ssp_wave : array or Quantity (n_wave,), [Angstrom]
    ssp_flux : array or Quantity (n_met, n_age, n_wave), [L_sun / Angstrom per M_sun formed]
    surviving_mass : array (n_met, n_age), optional, surviving stellar + remnant mass per M_sun formed
    living_mass : array (n_met, n_age), optional, mass in living stars (no remnants) per M_sun formed;
        taken from the grid's ``living_mass`` or ``mass_stars`` (an SSPGrid's) when not given

    Returns
    -------
    SSPArrays

    Raises
    ------
    ValueError
        Missing arrays, wrong shapes, NaN/inf, negative flux, non-increasing axes, masses outside
        (0, MAX_SURVIVING_MASS], and the usual unit slips: Z above 0.07 ([M/H] given as log10 Z; an [M/H]
        grid wholly below -1.15 cannot be told from log10 Z), ages beyond 30 Gyr (log10 yr given as log10
        Gyr), a wavelength axis ending bluer than 912 A (microns) or one where an SSP of 1 Gyr or older
        peaks blueward of 2000 A (nm), and a
        flux whose brightest SSP integrates to no plausible L_bol per M_sun formed
        (:func:`smnet_sps.ssp.check_ssp_flux_scale`, 1e-3..1e6 L_sun): L_nu [L_sun / Hz] given as L_lambda,
        e.g. the datasets of an ``smnet-sps ssp-grid`` .h5 file read into a dict (read it with
        ``smnet_sps.ssp.load_ssp_grid``). A flux given as a Quantity is taken in its unit, unchecked.

    A ``dsps.SSPData`` (from :func:`plugins.dsps_backend.to_ssp_data` or ``dsps.load_ssp_templates``) holds
    L_nu [L_sun / Hz], as do ``SSPGrid.to_dsps_units()``'s arrays; both are converted back to
    L_lambda here (its wavelengths taken as given; per Angstrom of their medium,
    :func:`smnet_sps.medium.per_angstrom`), so it can be passed to every writer. ``to_dsps_units()`` records
    its medium (``wavelength_medium``, that of the grid). An SSPData cannot: it is taken as vacuum, and a
    writer asked for air refuses it (an SSPData made with ``medium="air"`` would be converted twice, 1.4 A at
    5000 A); pass the SSPGrid itself, or ``meta={"wavelength_medium": "air"}`` for one that is air.
    """
    values = {}
    for key in ("ssp_lgmet", "ssp_lg_age_gyr", "ssp_wave", "ssp_flux"):
        explicit = {"ssp_lgmet": ssp_lgmet, "ssp_lg_age_gyr": ssp_lg_age_gyr, "ssp_wave": ssp_wave,
                    "ssp_flux": ssp_flux}[key]
        values[key] = explicit if explicit is not None else _get(grid, key)
        if values[key] is None:
            raise ValueError(f"SSP grid is missing '{key}'; required: ssp_lgmet, ssp_lg_age_gyr, ssp_wave, "
                             "ssp_flux (DSPS layout)")
    # an astropy Table's columns with units (Table.read of `smnet-sps ssp --out x.fits`) are the Quantities
    # they stand for: np.asarray dropped the units (a flux column in L_sun/A/M_sun was said to state none)
    expected = {"ssp_lgmet": "u.dex", "ssp_lg_age_gyr": "u.dex(u.Gyr)", "ssp_wave": _WAVE_UNITS,
                "ssp_flux": "a spectral luminosity density (e.g. u.L_sun / u.AA / u.M_sun)"}
    values = {k: column_quantity(v, k, expected[k]) for k, v in values.items()}
    wave = values["ssp_wave"]
    if isinstance(wave, u.Quantity):
        wave = wave.to_value(u.AA, equivalencies=u.spectral())
    flux = values["ssp_flux"]
    # a unit known from the input's type (converted here) or its Quantity needs no plausibility check
    flux_has_unit = isinstance(flux, u.Quantity)
    if (is_dsps_ssp_data(grid) or _is_dsps_arrays(grid)) and ssp_flux is None:
        flux_has_unit = True
        # dsps.SSPData (to_ssp_data, dsps.load_ssp_templates) and SSPGrid.to_dsps_units() hold L_nu
        # [L_sun / Hz]: back to L_lambda (the latter was taken as L_lambda: fluxes 1e-11 of the truth), per
        # Angstrom of the medium stated for it, else the one the arrays record (an SSPData none: vacuum)
        own = getattr(grid, "wavelength_medium", "vacuum")
        flux = per_angstrom(wave, flux, check_medium((meta or {}).get("wavelength_medium", own)))
    if isinstance(flux, u.Quantity):
        from smnet_sps.photometry import per_mass_formed
        flux = per_mass_formed(flux)          # L_sun / A / M_sun, as `smnet-sps ssp --out` writes FITS
        try:
            flux = flux.to_value(u.L_sun / u.AA)
        except u.UnitConversionError as exc:
            raise ValueError("ssp_flux must be L_lambda in L_sun/Angstrom per M_sun formed; got unit "
                             f"{flux.unit}") from exc
    lgmet = _as_1d_increasing("ssp_lgmet", values["ssp_lgmet"], "log10 Z, absolute")
    lgage = _as_1d_increasing("ssp_lg_age_gyr", values["ssp_lg_age_gyr"], "log10 age/Gyr")
    wave = _as_1d_increasing("ssp_wave", wave, "Angstrom")
    if (wave <= 0).any():
        raise ValueError("ssp_wave must be positive wavelengths in Angstrom")
    if (lgmet > MAX_LGMET).any():
        # Z itself (0.0001-0.07, all positive) or [M/H] (dex around 0): the hint names the likelier slip
        hint = ("These look like Z itself: pass np.log10(Z)" if (lgmet > 0).all() and lgmet.max() <= 0.07
                else "Did you pass [M/H] instead?")
        raise ValueError(f"ssp_lgmet must be log10 of the metal mass fraction Z (at most log10(0.07) = "
                         f"{MAX_LGMET:.3f}, e.g. log10(0.0152) = -1.82); got maximum {lgmet.max():g} "
                         f"(Z = {10 ** lgmet.max():.3g}). {hint}")
    if lgage.max() > MAX_LG_AGE_GYR:
        # log10(age / yr) of a stellar population is >= 5 (the isochrones' youngest: 5.5); below that the
        # values are ages in Gyr (positive, up to ~14), not their log
        hint = ("These look like ages in Gyr: pass np.log10(age_gyr)" if (lgage > 0).all() and lgage.min() < 5
                else "Did you pass log10(age / yr)?")
        raise ValueError(f"ssp_lg_age_gyr must be log10(age / Gyr) (at most {MAX_LG_AGE_GYR:g}, "
                         f"{10 ** MAX_LG_AGE_GYR:.0f} Gyr); got maximum {lgage.max():g}. {hint}")
    if wave.max() < MIN_REDDEST_WAVE:
        raise ValueError(f"ssp_wave must be in Angstrom; its reddest value is {wave.max():g}, bluer than "
                         f"{MIN_REDDEST_WAVE:g} A (microns given?)")
    flux = np.asarray(flux, dtype=float)
    expected = (lgmet.size, lgage.size, wave.size)
    if flux.shape != expected:
        raise ValueError(f"ssp_flux must have shape (n_met, n_age, n_wave) = {expected}; got {flux.shape}")
    old = flux[:, lgage >= 0.0].reshape(-1, wave.size)           # SSPs of 1 Gyr and older
    old = old[old.max(axis=1) > 0] if np.isfinite(old).all() else old[:0]   # a zeroed (dropped) SSP: no peak
    # only an axis that reaches an old population's peak can tell: a far-UV grid ends below it (nm ends at
    # 16,000 for a full grid)
    if old.size and wave.max() > 2 * MIN_OLD_PEAK_WAVE:
        peak = wave[np.argmax(old, axis=1)].min()
        if peak < MIN_OLD_PEAK_WAVE:
            raise ValueError(f"ssp_wave must be in Angstrom; an SSP of 1 Gyr or older peaks at {peak:g} in "
                             f"these units, where old populations peak at 4000-7600 A (at least "
                             f"{MIN_OLD_PEAK_WAVE:g} A): nm given?")
    if not np.isfinite(flux).all():
        raise ValueError(f"ssp_flux has {int((~np.isfinite(flux)).sum())} non-finite value(s); SSP spectra "
                         "must be finite (mask or drop the bad SSPs first)")
    if (flux < 0).any():
        raise ValueError(f"ssp_flux has negative values (minimum {flux.min():g}); L_lambda must be >= 0")
    if not flux_has_unit:
        check_ssp_flux_scale(flux, wave, "read an .h5 grid with smnet_sps.ssp.load_ssp_grid(path), convert "
                             "(ssp_flux * 2.998e18 / ssp_wave**2, Angstrom), or pass ssp_flux as a Quantity "
                             "in its unit")
    mass = surviving_mass if surviving_mass is not None else _first_found(grid, _MASS_KEYS)
    if mass is None and _get(grid, "log_mass") is not None:       # smnet_sps.ssp.SSPGrid
        mass = 10.0 ** np.asarray(_get(grid, "log_mass"), float)
    mass = _mass_fraction("surviving_mass", mass, expected[:2], "stars + remnants")
    living = living_mass if living_mass is not None else _first_found(grid, _LIVING_MASS_KEYS)
    living = _mass_fraction("living_mass", living, expected[:2], "living stars")
    merged = {}
    for key in ("attrs", "meta"):             # SSPGrid.attrs (units, zsun, provenance) or a plain meta dict
        extra = _meta_dict(_get(grid, key))
        if extra is not None:
            merged.update(extra)
    merged.update(meta or {})
    if is_dsps_ssp_data(grid) and "wavelength_medium" not in merged:
        # an SSPData has nowhere to record its medium: taken as vacuum (to_ssp_data's default), and marked,
        # so that a conversion is refused rather than applied a second time to air wavelengths; a medium
        # the caller states (meta=) is taken as known
        merged["wavelength_medium"] = "vacuum"
        merged["wavelength_medium_assumed"] = True
    if _is_dsps_arrays(grid) and "wavelength_medium" not in merged:
        merged["wavelength_medium"] = grid.wavelength_medium       # the SSPGrid's, which they record
    if _is_dsps_arrays(grid) and grid.zsun is not None and "zsun" not in merged:
        merged["zsun"] = grid.zsun        # the SSPGrid's (else resolve_zsun took 0.0152 for Padova's 0.019)
    outside = _get(grid, "outside_fraction")
    if outside is not None:
        outside = np.asarray(outside, float)
        if outside.shape != expected[:2]:
            raise ValueError(f"outside_fraction must have shape (n_met, n_age) = {expected[:2]}; "
                             f"got {outside.shape}")
        if not np.isfinite(outside).all() or (outside < 0).any() or (outside > 1 + 1e-9).any():
            raise ValueError("outside_fraction must be finite and in [0, 1] (share of L_bol)")
    return SSPArrays(lgmet, lgage, wave, flux, mass, merged, outside, living)


def warn_if_no_young_ssps(ssp, host, younger_stars_get, stacklevel=3):
    """Warn when ``ssp``'s youngest SSP is older than :data:`MAX_YOUNGEST_SED_AGE_YR`: ``host`` builds SEDs
    from star-formation histories, and gives the stars younger than it ``younger_stars_get`` (what the host
    does with them), so a star-forming galaxy's ultraviolet comes out too faint without a word."""
    youngest = float(ssp.age_gyr[0]) * 1e9
    if youngest <= MAX_YOUNGEST_SED_AGE_YR * (1 + 1e-9):     # 1e-9: log10 round trips of 1 Myr
        return
    warnings.warn(f"the youngest SSP of this grid is {youngest / 1e6:.3g} Myr old: {host} gives the stars "
                  f"formed more recently {younger_stars_get}, so the ultraviolet of a star-forming galaxy "
                  "comes out too faint (a constant SFH, grid from 10 Myr: about half the light at 1500 A). "
                  f"Start the grid at {MAX_YOUNGEST_SED_AGE_YR / 1e6:g} Myr or younger, e.g. at the "
                  "isochrones' youngest age: ssp_grid(np.geomspace(10**5.5, 1.25e10, 40), Zs)", UserWarning,
                  stacklevel=stacklevel)


def _first_found(grid, keys):
    """The first of ``keys`` that ``grid`` holds (key or attribute), else None."""
    for key in keys:
        value = _get(grid, key)
        if value is not None:
            return value
    return None


def _mass_fraction(name, mass, shape, what):
    """``mass`` (M_sun per M_sun formed, shape (n_met, n_age)) as a checked float array; None stays None."""
    if mass is None:
        return None
    mass = np.asarray(mass, dtype=float)
    if mass.shape != shape:
        raise ValueError(f"{name} must have shape (n_met, n_age) = {shape}; got {mass.shape}")
    if not np.isfinite(mass).all() or (mass <= 0).any() or (mass > MAX_SURVIVING_MASS).any():
        raise ValueError(f"{name} must be finite and in (0, {MAX_SURVIVING_MASS:g}] ({what} per M_sun "
                         f"formed); got {np.nanmin(mass):g}..{np.nanmax(mass):g}")
    return mass


def grid_medium(ssp):
    """Wavelength medium of an SSP grid: its meta's ``wavelength_medium`` (smnet-sps grids: "vacuum")."""
    return check_medium(ssp.meta.get("wavelength_medium", "vacuum"))


def template_lsf(ssp):
    """(FWHM per pixel [A], shape name) of the grid's line-spread function.

    From the grid's meta (``lsf_fwhm``: one number or one per pixel, ``lsf_shape``) when present, else the
    box LSF of smnet-sps' binned grid: FWHM = pixel width (:func:`smnet_sps.lsf.grid_lsf_fwhm`). A per-pixel
    ``lsf_fwhm`` of another length is refused (ValueError), not replaced by the box without a word.
    """
    from smnet_sps.lsf import LSF_SHAPE, grid_lsf_fwhm, stated_lsf_fwhm
    fwhm = ssp.meta.get("lsf_fwhm")
    if fwhm is not None:
        return (stated_lsf_fwhm(fwhm, ssp.ssp_wave.size, "the SSP grid's meta['lsf_fwhm']"),
                str(ssp.meta.get("lsf_shape", LSF_SHAPE)))
    return grid_lsf_fwhm(ssp.ssp_wave), LSF_SHAPE


def check_conversion(ssp, medium):
    """Check ``medium`` and refuse to convert a grid whose own medium was assumed (a ``dsps.SSPData``)."""
    check_medium(medium)
    if ssp.meta.get("wavelength_medium_assumed") and medium != grid_medium(ssp):
        raise ValueError(f"this SSP grid came as a dsps.SSPData, which does not record its wavelength medium "
                         f"(taken as {grid_medium(ssp)}); converting it to {medium} would be wrong if it is "
                         "not (an SSPData made in air would be shifted a second time). Pass the SSPGrid "
                         "from smnet_sps.ssp_grid, or state its medium: as_ssp_arrays(sspdata, "
                         "meta={'wavelength_medium': 'vacuum' or 'air'})")


def in_medium(ssp, medium, per_hz=False):
    """(wavelength [A], flux (n_met, n_age, n_wave), fwhm [A]) of ``ssp`` in ``medium`` ("vacuum" or
    "air"): L_lambda per Angstrom of ``medium``, or with ``per_hz`` L_nu (L_sun / Hz), the same numbers in
    either medium (:func:`smnet_sps.medium.per_hz`)."""
    from smnet_sps import medium as med
    check_conversion(ssp, medium)
    fwhm, _ = template_lsf(ssp)
    own = grid_medium(ssp)
    flux = med.per_hz(ssp.ssp_wave, ssp.ssp_flux, own) if per_hz else ssp.ssp_flux
    wave, flux = med.convert_spectrum_medium(ssp.ssp_wave, flux, own, medium, per_frequency=per_hz)
    return np.asarray(wave, float), np.asarray(flux, float), fwhm * (np.asarray(wave, float) / ssp.ssp_wave)


def resolve_zsun(ssp, zsun=None):
    """Solar metallicity used to express Z as [M/H] or Z/Z_sun: the argument, the grid's meta, or PARSEC's."""
    if zsun is None:
        zsun = ssp.meta.get("zsun", DEFAULT_ZSUN) if isinstance(ssp, SSPArrays) else DEFAULT_ZSUN
    return check_zsun(zsun)


def check_zsun(zsun, example="0.0152 (PARSEC) or 0.02"):
    """``zsun`` as a float in (0, 1), else a ValueError naming zsun (the package's rule,
    :func:`smnet_sps.isochrones.check_zsun`, with the hosts' example)."""
    return _check_zsun(zsun, "zsun", example)


def check_zsun_and_medium(zsun, medium):
    """A writer's checks of ``zsun`` (:func:`check_zsun`; None: the grid's own, checked with the grid) and
    ``medium`` (:func:`smnet_sps.medium.check_medium`), which need no grid: made before one is computed."""
    if zsun is not None:
        check_zsun(zsun)
    check_medium(medium)


def smnet_ssp_grid(ages, Zs, **kwargs):
    """Compute an SSP grid with :func:`smnet_sps.ssp.ssp_grid` and return it as :class:`SSPArrays`.

    ``ages`` and ``Zs`` and the keyword arguments (``imf=``, ``isochrones=``, ``generator=``) are passed
    unchanged to ``ssp_grid``.
    """
    try:
        from smnet_sps.ssp import ssp_grid
    except ModuleNotFoundError as exc:     # the SSP stage is optional at import time of the plugins
        raise ImportError("smnet_sps.ssp is not available in this installation; build the SSP arrays "
                          "yourself and pass them to the adapter's from_arrays()") from exc
    return as_ssp_arrays(ssp_grid(ages, Zs, **kwargs))


def output_path(path, suffixes, what, overwrite, append=None):
    """``path`` as a Path, checked before anything is written: its extension is one of ``suffixes`` (a
    writer that appended its own to ``x.txt``, or wrote HDF5 into it, would hide the file from the host
    code), and an existing file is replaced only with ``overwrite``. ``append``: the extension a path without
    one gets (``np.savez``'s convention, which pPXF's users know)."""
    from pathlib import Path

    from smnet_sps.output_files import check_output, suffix_of
    path = Path(path)
    if path.is_dir():
        # before ``append``: a folder 'templates' became the file 'templates.npz' beside it
        raise ValueError(f"path {str(path)!r} is a directory; give a {what} name ending in "
                         f"{', '.join(suffixes)}, e.g. {str(path / ('smnet' + suffixes[0]))!r}")
    if append and not re.fullmatch(r"\.[A-Za-z][A-Za-z0-9]*", path.suffix):   # none, or 'tmpl_z0.02'
        path = path.with_name(path.name + append)
    if suffix_of(path) not in suffixes:
        raise ValueError(f"{path}: a {what} must end in {', '.join(suffixes)}; got "
                         f"{suffix_of(path) or 'no extension'!r}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    # the rest of the command line's rules: not a directory, a folder that exists (or can be made), writable
    return check_output(path, suffixes, option="path", overwrite=True, what=what)
