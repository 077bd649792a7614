"""Wavelength medium: vacuum <-> standard air.

smnet-sps works in **vacuum** wavelengths throughout (as FSPS and most SPS codes do). Observed spectra and
templates tabulated in air (MILES, SDSS-era line lists converted for MILES users, ...) are converted with the
IAU standard formula of Morton (2000, ApJS 130, 403), based on the refractive index of Ciddor (1996, Appl.
Opt. 35, 1566) for dry air at 15 C, 101 325 Pa, 450 ppm CO2 -- the same conversion as VALD and SDSS use.

By convention wavelengths shorter than 2,000 A are always vacuum: :func:`vacuum_to_air` and
:func:`air_to_vacuum` (for line and band wavelengths) return them unchanged. A spectrum's wavelength axis
cannot follow that convention across 2,000 A: vacuum 2,000.0 A is 1,999.35 A in air, so the converted axis
would run backwards there (flux densities of the wrong sign, a Spectrum refused). Its axis is therefore
converted by :func:`axis_vacuum_to_air` / :func:`axis_air_to_vacuum`: the formula from 2,000 A (vacuum) up,
and below it the refractive index at 2,000 A (the formula's poles lie at 877 and 1,603 A): ordered,
continuous, a shift of at most 0.65 A below 2,000 A, and :func:`axis_air_to_vacuum` takes such an axis
back. An axis read in air (an observed spectrum, a library file) is converted by :func:`air_to_vacuum`: air ->
vacuum with the convention only opens a 0.65 A gap at 2,000 A, and keeps the order.

Every converter refuses wavelengths that are NaN, infinite, zero or negative (ValueError).
"""
from __future__ import annotations

import copy
import functools
import warnings

import numpy as np
from astropy import units as u

from .constants import C_ANGSTROM, FLAM_UNIT, LLAM_UNIT

__all__ = ["MEDIA", "AIR_CUTOFF_AA", "vacuum_to_air", "air_to_vacuum", "air_to_vacuum_derivative",
           "axis_vacuum_to_air",
           "axis_air_to_vacuum", "convert_medium", "check_medium", "convert_spectrum_medium", "to_medium",
           "is_per_frequency", "FLUX_MEDIUM_KEY", "per_hz", "per_angstrom", "spectral_density_kind",
           "f_lambda_factor", "f_lambda_values", "linear_flux", "DENSITY_PER", "LINEAR_FLUX_UNITS",
           "WAVE_UNIT_SPELLINGS", "spelled_wave_unit"]

MEDIA = ("vacuum", "air")
AIR_CUTOFF_AA = 2000.0   # below this, wavelengths are vacuum by convention


def check_medium(medium):
    """Return ``medium`` if it is one of :data:`MEDIA`, else raise a ValueError naming the allowed values."""
    if medium not in MEDIA:
        raise ValueError(f"medium must be one of {MEDIA}, got {medium!r}")
    return medium


#: how files spell the wavelength units, lower case (a reader compares ``word.lower()``): the one list that
#: text spectra's headers (``# wave[nm] flux``), IRAF's ``WAT1_001 units=``, table units astropy does not
#: know itself (``Angstroms``, ``MICRONS``) and filter files' comment lines (``# wavelength [nm]``) are read
#: with. A bare "a" means Angstrom only where a header puts it in brackets (``wave[a]``); as a table unit
#: astropy reads it (and "aa") as a year.
WAVE_UNIT_SPELLINGS = {
    u.AA: ("angstrom", "angstroms", "angstr\u00f6m", "angstr\u00f6ms", "\u00e5", "aa", "a"),
    u.nm: ("nm", "nanometer", "nanometers", "nanometre", "nanometres"),
    u.micron: ("um", "\u00b5m", "\u03bcm", "micron", "microns", "micrometer", "micrometers", "micrometre",
               "micrometres"),
}


def spelled_wave_unit(word):
    """The wavelength unit (u.AA, u.nm or u.micron) that ``word`` spells in :data:`WAVE_UNIT_SPELLINGS`
    (any case), or None."""
    word = str(word).strip().lower()
    return next((unit for unit, spellings in WAVE_UNIT_SPELLINGS.items() if word in spellings), None)


@functools.lru_cache(maxsize=1)
def _unit_aliases():
    """Spellings of units that files write and astropy's generic format does not know -> the unit: the
    wavelength units' of :data:`WAVE_UNIT_SPELLINGS` and the maggies', each in lower case, capitalised and
    upper case (a spelling astropy knows keeps astropy's meaning: 'a' is a year there). Made once (astropy
    takes ~0.4 s to try them all)."""
    names = {**WAVE_UNIT_SPELLINGS, u.mgy: ("maggy", "maggies"), u.nmgy: ("nanomaggy", "nanomaggies")}
    aliases = {}
    for unit, spellings in names.items():
        for name in spellings:
            for spelling in (name, name.capitalize(), name.upper()):
                if isinstance(u.Unit(spelling, format="generic", parse_strict="silent"), u.UnrecognizedUnit):
                    aliases[spelling] = unit
    return aliases


@functools.lru_cache(maxsize=1)
def _time_aliases():
    """Spellings of ages that files write and FITS does not read -> the time: 'Gy', 'My' (astropy's generic
    format reads 'Gy' as the gray, a radiation dose), 'Gyrs', 'GYR', 'Myears', ... Only for a caller that
    expects a time (:func:`_reparse_unit`'s ``time``): elsewhere 'Gy' stays the gray."""
    prefixes = {"": u.yr, "k": u.kyr, "M": u.Myr, "G": u.Gyr}
    aliases = {}
    for prefix, unit in prefixes.items():
        for stem in ("y", "yr", "yrs", "year", "years") if prefix else ("yr", "yrs", "year", "years"):
            for spelling in (prefix + stem, (prefix + stem).upper()):
                aliases[spelling] = unit
    return aliases


def _gray_hint(unit):
    """A hint for a ``unit`` that is a radiation dose where a time was expected, else '': 'Gy' is the gray
    in astropy (an age column's 'Gy' meant Gyr)."""
    try:
        is_dose = u.Unit(unit).is_equivalent(u.Gy)
    except (TypeError, ValueError, AttributeError):
        return ""
    return " ('Gy' was read as the gray, a radiation dose: write 'Gyr' for Gigayears)" if is_dose else ""


def _reparse_unit(unit, time=False):
    """``unit`` as it is, unless it is an ``UnrecognizedUnit``: a unit a file's format did not read -- FITS
    TUNITs such as '1E-17 erg/s/cm^2/Angstrom' (FITS has no numeric factor, no '^'), 'Msun/yr', 'dex',
    'percent', 'micron' -- parsed again in astropy's lenient generic format, knowing the spellings
    'Angstroms', 'ANGSTROM', 'microns', 'nanomaggies' and the like (:func:`_unit_aliases`). With ``time``
    (the caller expects a time, e.g. an age column) the age spellings of :func:`_time_aliases` come first:
    FITS TUNIT 'Gy' is then Gyr, not the gray. Still an ``UnrecognizedUnit`` if all that fails: the caller
    refuses it, naming what it allows."""
    if not isinstance(unit, u.UnrecognizedUnit):
        return unit
    if time and unit.name.strip() in _time_aliases():
        return _time_aliases()[unit.name.strip()]
    with warnings.catch_warnings(), u.add_enabled_aliases(_unit_aliases()):
        warnings.simplefilter("ignore", u.UnitsWarning)        # "multiple slashes" and the like
        return u.Unit(unit.name, format="generic", parse_strict="silent")


def _ampere_hint(unit, example="erg/s/cm2/Angstrom"):
    """A hint for a wavelength or flux ``unit`` with the ampere in it, else '': FITS reads TUNIT 'A' (as in
    the common 'erg/s/cm2/A') as the ampere, not Angstrom. ``example``: the unit to write instead (a flux's
    by default)."""
    try:
        has_ampere = u.A in u.Unit(unit).decompose().bases
    except (TypeError, ValueError, AttributeError):
        return ""
    return f" (FITS reads 'A' as the ampere: write 'Angstrom', e.g. {example})" if has_ampere else ""


def _wavelength_ampere_hint(unit):
    """:func:`_ampere_hint` for a wavelength axis's ``unit``: only for 'A' itself (FITS's TUNIT 'A'; a 'V' or
    'C' axis, the ampere among its bases, was told of an 'A' nobody wrote), with a wavelength's example (it
    had a flux unit's)."""
    try:
        is_ampere = u.Unit(unit) == u.A
    except (TypeError, ValueError):
        return ""
    return _ampere_hint(unit, example="TUNIT 'Angstrom' on the wavelength column") if is_ampere else ""


def _as_angstrom(wavelength, name="wavelength", positive=False):
    """(wavelengths [A] as floats, whether a Quantity was given); a plain array is taken as Angstrom.

    ``positive=True`` refuses NaN, inf, zero and negative wavelengths (ValueError naming ``name``, how many
    and the first): the air index has no meaning there, and a negative one came back converted.
    An astropy table column with a unit (``Table.read`` of a FITS file's TUNIT) counts as a Quantity.
    """
    from .generator import _WAVE_UNITS, column_quantity

    # np.asarray dropped a column's unit: a wavelength column in nm was taken as Angstrom
    wavelength = column_quantity(wavelength, name, _WAVE_UNITS)
    if isinstance(wavelength, u.Quantity):
        try:
            lam, is_quantity = wavelength.to_value(u.AA, equivalencies=u.spectral()), True
        except u.UnitConversionError:
            raise ValueError(f"{name} must be a wavelength (e.g. Angstrom, nm); got unit {wavelength.unit}"
                             f"{_wavelength_ampere_hint(wavelength.unit)}") from None
    else:
        lam, is_quantity = np.asarray(wavelength, dtype=float), False
    if positive:
        bad = ~(np.isfinite(lam) & (lam > 0))
        if bad.any():
            first = float(np.ravel(lam)[np.flatnonzero(bad)[0]])
            raise ValueError(f"{name} must be finite and > 0 [Angstrom]; got {first!r} ({int(bad.sum())} of "
                             f"{lam.size} values are not)")
    return lam, is_quantity


def _index_at_vacuum(lam):
    """Refractive index of standard air at vacuum wavelengths lam [A] (Morton 2000)."""
    s2 = (1e4 / np.where(lam > 0, lam, np.inf)) ** 2
    return 1 + 0.0000834254 + 0.02406147 / (130 - s2) + 0.00015998 / (38.9 - s2)


#: Piskunov's fit n(lambda_air) = 1 + a + b / (B - s^2) + c / (C - s^2), s = 1e4 / lambda_air [A]
_AIR_FIT = (0.00008336624212083, 0.02408926869968, 130.1065924522, 0.0001599740894897, 38.92568793293)


def _index_at_air(lam):
    """Refractive index at air wavelengths lam [A] (Piskunov's fit of the inverse, as in VALD)."""
    a, b, bb, c, cc = _AIR_FIT
    s2 = (1e4 / np.where(lam > 0, lam, np.inf)) ** 2
    return 1 + a + b / (bb - s2) + c / (cc - s2)


def vacuum_to_air(wavelength):
    """Vacuum -> air wavelength (Morton 2000 / Ciddor 1996); below 2,000 A unchanged (vacuum by convention).
    Accepts Angstrom floats or a Quantity. For a spectrum's axis use :func:`axis_vacuum_to_air`."""
    lam, is_quantity = _as_angstrom(wavelength, positive=True)
    out = np.where(lam >= AIR_CUTOFF_AA, lam / _index_at_vacuum(lam), lam)
    return out * u.AA if is_quantity else out


def air_to_vacuum(wavelength):
    """Air -> vacuum wavelength (the inverse of :func:`vacuum_to_air`, Piskunov's fit as in VALD / Morton
    2000); below 2,000 A unchanged.

    Accepts Angstrom floats or a Quantity; agrees with the exact inverse of :func:`vacuum_to_air` to < 1e-4 A,
    except for vacuum 2,000-2,000.65 A: their air wavelengths (1,999.35-2,000 A) lie below the 2,000 A cutoff
    and come back unchanged (up to 0.65 A off; vacuum_to_air(2000.0) = 1999.352). For a spectrum's axis use
    :func:`axis_air_to_vacuum`.
    """
    lam, is_quantity = _as_angstrom(wavelength, positive=True)
    out = np.where(lam >= AIR_CUTOFF_AA, lam * _index_at_air(lam), lam)
    return out * u.AA if is_quantity else out


def air_to_vacuum_derivative(wavelength):
    """d lambda_vac / d lambda_air of :func:`air_to_vacuum` at air wavelengths [A or a Quantity]: 1 below
    2,000 A (unchanged there), n + lambda dn/dlambda from 2,000 A up (1.00017 at 2,000 A, 1.00027 in the
    red). Analytic, so that a flux density per air Angstrom can be taken per vacuum Angstrom pixel by pixel:
    a finite difference straddles the 0.65 A gap that :func:`air_to_vacuum` opens at 2,000 A (np.gradient
    gave 0.755 instead of 0.9998 there)."""
    a, b, bb, c, cc = _AIR_FIT
    lam, _ = _as_angstrom(wavelength, positive=True)
    s2 = (1e4 / lam) ** 2
    # d(lambda n)/d lambda = n + lambda dn/ds2 ds2/dlambda, ds2/dlambda = -2 s2 / lambda
    slope = _index_at_air(lam) - 2 * s2 * (b / (bb - s2) ** 2 + c / (cc - s2) ** 2)
    return np.where(lam >= AIR_CUTOFF_AA, slope, 1.0)


def axis_vacuum_to_air(wavelength):
    """A spectrum's wavelength axis, vacuum -> air: :func:`vacuum_to_air` from 2,000 A up, below it divided
    by the refractive index at 2,000 A, so that an increasing axis stays increasing (see the module notes).
    Angstrom floats or a Quantity."""
    lam, is_quantity = _as_angstrom(wavelength, positive=True)
    n = np.where(lam >= AIR_CUTOFF_AA, _index_at_vacuum(lam), _index_at_vacuum(AIR_CUTOFF_AA))
    out = lam / n
    return out * u.AA if is_quantity else out


def axis_air_to_vacuum(wavelength):
    """A spectrum's wavelength axis, air -> vacuum: the inverse of :func:`axis_vacuum_to_air` (to < 1e-4 A).
    Angstrom floats or a Quantity."""
    lam, is_quantity = _as_angstrom(wavelength, positive=True)
    edge = AIR_CUTOFF_AA / _index_at_vacuum(AIR_CUTOFF_AA)           # air wavelength of vacuum 2,000 A
    out = np.where(lam >= edge, lam * _index_at_air(lam), lam * _index_at_vacuum(AIR_CUTOFF_AA))
    return out * u.AA if is_quantity else out


def convert_medium(wavelength, from_medium, to_medium):
    """Convert wavelengths between ``"vacuum"`` and ``"air"`` (a no-op when the media are equal)."""
    check_medium(from_medium)
    check_medium(to_medium)
    if from_medium == to_medium:
        return wavelength
    return vacuum_to_air(wavelength) if to_medium == "air" else air_to_vacuum(wavelength)


#: spectral densities per unit wavelength or frequency, of energy or of photons: a flux (per unit area) or a
#: luminosity; u.spectral_density converts each to F_lambda (L_lambda). The per-Hz ones at odd places.
_FLUX_DENSITIES = (FLAM_UNIT, u.Unit("erg s-1 cm-2 Hz-1"), u.Unit("photon s-1 cm-2 AA-1"),
                   u.Unit("photon s-1 cm-2 Hz-1"))
_LUMINOSITY_DENSITIES = (LLAM_UNIT, u.Unit("erg s-1 Hz-1"), u.Unit("photon s-1 AA-1"),
                         u.Unit("photon s-1 Hz-1"))
#: what a spectral density may also be per: a unit mass (L_sun / A per M_sun formed), a solid angle (per sr,
#: per arcsec^2)
DENSITY_PER = (u.M_sun, u.sr)

#: the linear flux units a flux (Quantity or file column) may be in (error messages)
LINEAR_FLUX_UNITS = ("F_lambda (e.g. erg / (s cm2 Angstrom)), f_nu (e.g. Jy, AB nanomaggies), a photon flux "
                     "(e.g. photon / (s cm2 Angstrom)), L_lambda (e.g. solLum / Angstrom) or L_nu (e.g. erg "
                     "/ (s Hz)), also per M_sun or per solid angle (e.g. MJy / sr)")


#: an AB maggy (SDSS's flux unit, astropy's ``mgy``; 1 nanomaggy = 22.5 AB mag): 3631 Jy. astropy keeps it
#: an irreducible unit, convertible only with a ``zero_point_flux`` equivalency, so a flux in maggies was
#: refused as no spectral density (and taken as plain F_lambda numbers by Lick indices)
AB_MAGGY = 3631.0 * u.Jy


def _cached(fn, *args):
    """``fn(*args)`` through its functools cache, or uncached where an argument cannot be a cache key (an
    unhashable unit-like argument)."""
    try:
        return fn(*args)
    except TypeError:
        return fn.__wrapped__(*args)


def _maggies_as_jy(unit):
    """``unit`` with its maggies (u.mgy, u.nmgy, in any power) as AB maggies of 3631 Jy (:data:`AB_MAGGY`);
    any other unit, None or a magnitude as it is."""
    if unit is None or isinstance(unit, u.FunctionUnitBase):
        return unit
    return _cached(_maggies_as_jy_cached, unit)


@functools.lru_cache(maxsize=256)
def _maggies_as_jy_cached(unit):
    """:func:`_maggies_as_jy` of a unit, cached: its decompositions took ~0.3 ms of every magnitudes() call
    (StellarPopulation.get_mags in an SED fitter's loop)."""
    unit = u.Unit(unit)
    bases = unit.decompose().bases
    if u.mgy not in bases:
        return unit
    power = unit.decompose().powers[bases.index(u.mgy)]
    return unit * u.Unit(AB_MAGGY / u.mgy) ** power


def spectral_density_kind(unit, per=DENSITY_PER):
    """``(kind, per_unit)`` of a spectral density: kind "flux" or "luminosity" (per wavelength or frequency,
    energy or photons; AB maggies as 3631 Jy), ``per_unit`` the product of the units of ``per`` (default
    :data:`DENSITY_PER`: M_sun, sr) that ``unit`` is per besides (``u.one`` if none), so that
    ``unit * per_unit`` is the plain density. ``(None, None)`` for any other unit: None, dimensionless,
    counts, per pixel, a magnitude."""
    if unit is None or isinstance(unit, u.FunctionUnitBase):
        return None, None
    # is_equivalent also uses globally enabled equivalencies (u.set_enabled_equivalencies): a result found
    # with them (per sr read as plain under dimensionless_angles) must not serve outside them, so they are
    # part of the key (skipping the cache then made it useless after `import bagpipes`, which enables the
    # redshift equivalency for good)
    enabled = _enabled_equivalencies()
    return _cached(_density_kind, unit, tuple(per), enabled)


def _enabled_equivalencies():
    """A hashable key of astropy's globally enabled equivalencies (they change unit tests and conversions)."""
    return tuple((str(a), str(b), id(f), id(g)) for a, b, f, g in u.get_current_unit_registry().equivalencies)


@functools.lru_cache(maxsize=256)
def _factor_target(reference, per, kind, enabled=()):
    """:func:`f_lambda_factor`'s target unit: ``reference * per`` if that is an energy per unit wavelength,
    else F_lambda (``kind`` "flux") or L_lambda; cached as :func:`_plain_scale`."""
    plain_ref = u.Unit(reference) * per
    if plain_ref.is_equivalent(FLAM_UNIT) or plain_ref.is_equivalent(LLAM_UNIT):
        return plain_ref
    return FLAM_UNIT if kind == "flux" else LLAM_UNIT


@functools.lru_cache(maxsize=256)
def _plain_scale(unit, per, target, enabled=()):
    """The factor taking ``unit * per`` to ``target`` when it is a plain scale (no equivalency), else None;
    cached per units and the enabled equivalencies (``enabled``, a key only): the equivalence test and the
    conversion took ~0.4 ms of every magnitudes() call."""
    if not (unit * per).is_equivalent(target):
        return None
    return (1.0 * unit * per).to_value(target)


@functools.lru_cache(maxsize=256)
def _density_kind(unit, per, enabled=()):
    """:func:`spectral_density_kind`, cached per unit and the globally enabled equivalencies (``enabled``, a
    key only: they change the answer): its up to 16 astropy equivalence tests took ~2 ms, on every
    magnitudes() call (four times each) of a fitter's loop."""
    unit = _maggies_as_jy(unit)
    products = [u.one]
    for factor in per:
        products += [p * factor for p in products]
    for p in products:
        plain = unit * p
        for kind, densities in (("flux", _FLUX_DENSITIES), ("luminosity", _LUMINOSITY_DENSITIES)):
            if any(plain.is_equivalent(d) for d in densities):
                return kind, p
    return None, None


def is_per_frequency(unit):
    """True for a spectral density per unit frequency (Jy, erg s^-1 cm^-2 Hz^-1, L_sun / Hz, photons per Hz,
    also per M_sun, per sr: :func:`spectral_density_kind`); False for one per wavelength, a dimensionless
    flux or ``None`` (a plain array, taken as F_lambda)."""
    kind, p = spectral_density_kind(unit)
    if kind is None:
        return False
    densities = _FLUX_DENSITIES if kind == "flux" else _LUMINOSITY_DENSITIES
    return any((_maggies_as_jy(unit) * p).is_equivalent(d) for d in densities[1::2])


def refuse_logarithmic(unit, name="flux"):
    """ValueError for a magnitude or dex unit (astropy's function units, e.g. ABmag, STmag, dex(...)): a
    factor from it multiplied the magnitudes themselves (20 ABmag -> 5.4e-8 erg/s/cm^2/A instead of 6.8e-17,
    and 21 ABmag came out brighter)."""
    if isinstance(unit, u.FunctionUnitBase):
        raise ValueError(f"{name} is in {unit}, a logarithmic unit (magnitudes or dex), not a linear flux; "
                         f"convert the values to a linear flux first (e.g. (m * u.ABmag).to(u.Jy)); allowed: "
                         f"{LINEAR_FLUX_UNITS}")


def f_lambda_factor(unit, wave, reference=None, per=DENSITY_PER, strict=True, name="flux"):
    """Per-pixel factor taking values in ``unit`` at ``wave`` [A] to F_lambda (L_lambda for a luminosity).

    ``unit`` is a spectral density (:func:`spectral_density_kind`: per wavelength or frequency, energy or
    photons, a flux or a luminosity, also per the units of ``per``; maggies are AB, 1 mgy = 3631 Jy). The
    target is ``reference`` (default ``unit``) if that is an energy per unit wavelength, in any scale, else
    erg s^-1 cm^-2 A^-1 (a flux) or erg s^-1 A^-1 (a luminosity), each per the same M_sun / sr as ``unit``:
    the factor keeps those (a surface brightness stays per sr, in any solid-angle unit converted). One rule
    for the fit (a flux, and its ivar through ``reference``), Lick indices and photometry.

    A magnitude or dex unit is a ValueError naming ``name`` (:func:`refuse_logarithmic`). Any other unit --
    counts, electron/s, per pixel, dimensionless, or one that does not convert to ``reference`` -- raises
    astropy's UnitConversionError if ``strict``, else gives 1.0: the values taken as plain numbers per unit
    wavelength (spectra that are not flux-calibrated).
    """
    refuse_logarithmic(unit, name)
    unit, reference = _maggies_as_jy(unit), _maggies_as_jy(reference)
    kind, p = spectral_density_kind(unit, per)
    ref_kind, ref_p = (kind, p) if reference is None else spectral_density_kind(reference, per)
    if kind is None or ref_kind is None or ref_p != p:
        if strict:
            raise u.UnitConversionError(f"{name}: {unit} is no spectral density convertible to "
                                        f"{reference or 'F_lambda'}")
        return 1.0
    enabled = _enabled_equivalencies()
    target = _cached(_factor_target, reference or unit, p, ref_kind, enabled)
    # a plain scale (L_sun / A -> erg s^-1 A^-1) needs no equivalency: astropy takes the scale first anyway,
    # and building u.spectral_density on the pixel axis cost ~2 ms per call (half a fitter's get_mags)
    factor = _cached(_plain_scale, unit, p, target, enabled)
    try:
        if factor is None:
            factor = (1.0 * unit * p).to_value(target,
                                               equivalencies=u.spectral_density(np.asarray(wave) * u.AA))
    except u.UnitConversionError:
        if strict:
            raise
        return 1.0
    return np.asarray(factor, float)


def linear_flux(flux):
    """A magnitude Quantity (ABmag, STmag, per pixel) as the flux it stands for (astropy's ``.physical``): its
    values are known, unlike a bare magnitude unit (a file column, an ivar), which
    :func:`f_lambda_factor` refuses. Anything else as it is."""
    if isinstance(flux, u.Quantity) and isinstance(flux.unit, u.FunctionUnitBase):
        return flux.physical
    return flux


def f_lambda_values(flux, wave, reference=None, per=DENSITY_PER, strict=True, name="flux"):
    """A flux Quantity's values (plain numbers as they are; magnitudes through :func:`linear_flux`) times
    :func:`f_lambda_factor` of its unit."""
    if not isinstance(flux, u.Quantity):
        return np.asarray(flux, float)
    flux = linear_flux(flux)
    return np.asarray(flux.value, float) * f_lambda_factor(flux.unit, wave, reference, per, strict, name)


def convert_spectrum_medium(wavelength, flux_density, from_medium, to_medium, per_frequency=None,
                            flux_medium=None):
    """Wavelengths and flux densities (last axis) in another medium.

    The axis is converted with :func:`axis_vacuum_to_air` / :func:`axis_air_to_vacuum` (ordered across
    2,000 A). A flux density per wavelength (F_lambda; a plain array is taken as one) is multiplied by
    d(lambda_from)/d(lambda_to) (for vacuum -> air 1.00027 in the red and near-IR, 1.00025 at
    3,000 A, 1.00017 at 2,000 A) so that integrals are kept. A flux density per frequency (f_nu, L_nu:
    :func:`is_per_frequency`) keeps its values: frequency does not depend on the medium.
    ``per_frequency``: None (default) decides from ``flux_density``'s unit (a Quantity), or True / False
    for a plain array whose unit the caller knows. ``flux_medium``: the medium whose Angstrom a flux density
    per wavelength is per (default ``from_medium``, the axis'); when it is ``to_medium`` already
    (``StellarPopulation(vactoair_flag=True)``: an air axis, flux per vacuum Angstrom, taken to vacuum) only
    the axis changes. Returns ``(wavelength, flux_density)``, the flux then per ``to_medium`` Angstrom; a
    no-op when the media are equal.
    """
    check_medium(from_medium)
    check_medium(to_medium)
    flux_medium = check_medium(from_medium if flux_medium is None else flux_medium)
    if from_medium == to_medium:
        return wavelength, flux_density
    if per_frequency is None:
        per_frequency = is_per_frequency(getattr(flux_density, "unit", None))
    lam, is_quantity = _as_angstrom(wavelength, positive=True)
    new = np.asarray(axis_vacuum_to_air(lam) if to_medium == "air" else axis_air_to_vacuum(lam), float)
    if per_frequency or flux_medium == to_medium:
        flux = flux_density * 1.0           # a new array, values per Hz (or per to_medium A) unchanged
    else:
        jac = np.gradient(lam) / np.gradient(new) if lam.size > 1 else np.ones_like(lam)
        flux = flux_density * jac
    return (new * u.AA if is_quantity else new), flux


def _vacuum_axis(wavelength, medium):
    """A spectrum's axis [A, floats] in vacuum, from one in ``medium``."""
    lam, _ = _as_angstrom(wavelength, positive=True)
    return lam if check_medium(medium) == "vacuum" else np.asarray(axis_air_to_vacuum(lam), float)


def per_hz(wavelength, flux_density, medium="vacuum"):
    """L_lambda (per Angstrom of ``medium``, on an axis in ``medium``; last axis) -> L_nu (per Hz).

    A pixel's frequency is c / lambda_vac in either medium, so L_nu = L_lambda_vac lambda_vac^2 / c with the
    flux first taken to per vacuum Angstrom (:func:`convert_spectrum_medium`); lambda_air^2 / c on an air
    axis would be 2.8e-4 (9,000 A) to 3.3e-4 (3,000 A) low. Plain numbers (e.g. L_sun / A -> L_sun / Hz);
    the result does not depend on the medium."""
    lam_vac = _vacuum_axis(wavelength, medium)
    _, flux = convert_spectrum_medium(wavelength, np.asarray(flux_density, float), medium, "vacuum", False)
    return flux * lam_vac ** 2 / C_ANGSTROM


def per_angstrom(wavelength, flux_density, medium="vacuum"):
    """L_nu (per Hz; last axis) -> L_lambda per Angstrom of ``medium`` on an axis in ``medium``: the inverse
    of :func:`per_hz`, to float64 rounding."""
    lam_vac = _vacuum_axis(wavelength, medium)
    flux = np.asarray(flux_density, float) * C_ANGSTROM / lam_vac ** 2          # per vacuum Angstrom
    lam, _ = _as_angstrom(wavelength, positive=True)
    if medium == "vacuum" or lam.size < 2:
        return flux
    # d lambda_vac / d lambda_air on the given axis: the reciprocal of per_hz's factor (from the vacuum axis
    # converted back, whose round-off is 1e-9 A, the round trip was 2e-10 off)
    return flux * (np.gradient(lam_vac) / np.gradient(lam))


def _stated_medium(meta):
    """The medium a meta / attrs mapping states: ``wavelength_medium`` (every output's key,
    docs/CONTRACTS.md), else a bare ``medium`` key (StellarPopulation wrote only that, and its air spectra
    were taken as vacuum), else vacuum (the package's medium)."""
    key = "wavelength_medium" if "wavelength_medium" in meta else "medium"
    stated = meta.get(key, "vacuum")
    if stated not in MEDIA:
        raise ValueError(f"the object's {key} must be one of {MEDIA}; got {stated!r}")
    return stated


#: meta / attrs key: the medium whose Angstrom a flux density per wavelength is per, where it differs from
#: the axis' (StellarPopulation(vactoair_flag=True): "vacuum" on an air axis, as FSPS); absent: the axis'
FLUX_MEDIUM_KEY = "flux_density_medium"


def _stated_flux_medium(meta, axis_medium):
    """The medium a meta / attrs mapping states for the flux density (:data:`FLUX_MEDIUM_KEY`), else
    ``axis_medium``."""
    stated = meta.get(FLUX_MEDIUM_KEY, axis_medium)
    if stated not in MEDIA:
        raise ValueError(f"the object's {FLUX_MEDIUM_KEY} must be one of {MEDIA}; got {stated!r}")
    return stated


def _convert_stated(wavelength, flux_density, meta, medium, per_frequency=None):
    """A spectrum whose medium ``meta`` states (:func:`_stated_medium`, :func:`_stated_flux_medium`) in
    ``medium``: ``(wavelength, flux_density, meta)``, the meta a new dict with the medium keys updated (the
    flux then per ``medium`` Angstrom). The one conversion :func:`to_medium` and ``magnitudes()`` use."""
    current = _stated_medium(meta)
    new_lam, flux = convert_spectrum_medium(wavelength, flux_density, current, medium, per_frequency,
                                            _stated_flux_medium(meta, current))
    meta = {**meta, "wavelength_medium": medium}
    if FLUX_MEDIUM_KEY in meta and current != medium:
        meta[FLUX_MEDIUM_KEY] = medium
    return new_lam, flux, meta


def _stated_per_frequency(attrs):
    """Whether an SSPGrid's ``attrs["flux_unit"]`` ("L_sun / Angstrom per M_sun formed", ...) is per Hz."""
    text = attrs.get("flux_unit")
    if text is None:
        return False                     # an SSPGrid's own unit, L_sun / A
    try:
        return is_per_frequency(str(text).replace("per M_sun formed", "").strip())
    except ValueError:
        raise ValueError(f"the SSP grid's attrs['flux_unit'] is {text!r}, not a unit astropy reads; allowed: "
                         "a flux density per wavelength (L_sun / Angstrom) or per frequency (L_sun / Hz)") \
            from None


# how an uncertainty scales with its flux: the power of the flux's factor each astropy kind takes
_UNCERTAINTY_POWER = {"std": 1, "var": 2, "ivar": -2}


def _scaled_uncertainty(uncertainty, factor):
    """A Spectrum's uncertainty for its flux multiplied by ``factor`` (a new object; None stays None)."""
    if uncertainty is None:
        return None
    power = _UNCERTAINTY_POWER.get(getattr(uncertainty, "uncertainty_type", None))
    if power is None:
        raise ValueError(f"to_medium scales a Spectrum's uncertainty as its flux: StdDevUncertainty, "
                         f"VarianceUncertainty or InverseVariance; got {type(uncertainty).__name__}")
    return type(uncertainty)(np.asarray(uncertainty.array, float) * factor ** power, unit=uncertainty.unit)


def to_medium(obj, medium="air"):
    """Return a copy of a package output with its wavelengths in ``medium`` ("vacuum" or "air").

    Everything smnet-sps returns is in vacuum unless asked otherwise
    (``StellarPopulation(vactoair_flag=True)``); ``meta["wavelength_medium"]`` /
    ``attrs["wavelength_medium"]`` say which (without it, a ``medium`` key; without either, vacuum). This
    helper converts, with Morton (2000) / Ciddor (1996), a

    * ``specutils.Spectrum`` (``Generator.spectra`` or ``ssp_spectrum`` output): spectral axis, flux density
      per Angstrom, and ``meta`` (``wavelength_medium``, ``lsf_fwhm`` scaled with the axis); its mask is
      kept and its uncertainty (standard deviation, variance or inverse variance) scaled as the flux;
    * :class:`smnet_sps.ssp.SSPGrid` (or any NamedTuple with ``ssp_wave``, ``ssp_flux``, ``attrs``);
    * :class:`smnet_sps.ssp.DSPSArrays` (``SSPGrid.to_dsps_units()``): L_nu, so only the axis and
      ``wavelength_medium`` change.

    A flux density per wavelength is multiplied by d lambda_old / d lambda_new, so that its integral is kept;
    one per frequency (a Spectrum in Jy or L_sun / Hz, an SSPGrid whose ``attrs["flux_unit"]`` is per Hz)
    keeps its values (:func:`convert_spectrum_medium`). ``StellarPopulation(vactoair_flag=True)`` differs:
    as FSPS, it relabels the axis only (docs/population.md) and its meta says so
    (``flux_density_medium`` "vacuum", :data:`FLUX_MEDIUM_KEY`): converted to vacuum, only the axis changes.

    The copy shares no array with ``obj`` (also when ``obj`` is already in ``medium``): editing it leaves
    ``obj`` as it was.

    Parameters
    ----------
    obj : specutils.Spectrum, SSPGrid or DSPSArrays
    medium : "air" or "vacuum"

    Raises
    ------
    ValueError
        Unknown medium (asked for or stated by the object), an object that is neither of the above, a
        Spectrum uncertainty of another kind (it could not be scaled), or an
        ``lsf_fwhm`` with one value per pixel of another axis (a sliced Spectrum keeps its whole meta:
        :func:`smnet_sps.lsf.stated_lsf_fwhm`).
    """
    from .lsf import stated_lsf_fwhm
    check_medium(medium)
    if hasattr(obj, "spectral_axis"):
        from specutils import Spectrum
        meta = copy.deepcopy(dict(obj.meta))      # a copy, not views (lsf_fwhm, inside_coverage, ...)
        current = _stated_medium(meta)
        lam = obj.spectral_axis.to_value(u.AA)
        # the factor the flux is multiplied by (ones in its unit converted): the uncertainty takes it too
        new_lam, factor, meta = _convert_stated(lam, np.ones(obj.flux.shape) * obj.flux.unit, meta, medium)
        factor = u.Quantity(factor).to_value(obj.flux.unit)
        if "lsf_fwhm" in meta and current != medium:
            fwhm = stated_lsf_fwhm(meta["lsf_fwhm"], lam.size)     # refuses a meta a slice left behind
            meta["lsf_fwhm"] = fwhm * (np.asarray(new_lam) / lam)
        # every array a copy (same medium: the factor is 1, and Spectrum would not copy its input)
        return Spectrum(flux=obj.flux * factor, spectral_axis=np.array(new_lam, float) * u.AA, meta=meta,
                        uncertainty=_scaled_uncertainty(obj.uncertainty, factor),
                        mask=None if obj.mask is None else np.array(obj.mask, copy=True))
    from .ssp import DSPSArrays
    if isinstance(obj, DSPSArrays):
        # L_nu per Hz: the axis alone changes (a pixel's frequency is c / lambda_vac), and the recorded medium
        new_lam, flux = convert_spectrum_medium(np.asarray(obj.ssp_wave, float),
                                                np.asarray(obj.ssp_flux, float), obj.wavelength_medium,
                                                medium, per_frequency=True)
        return DSPSArrays(np.array(obj.ssp_lgmet, float), np.array(obj.ssp_lg_age_gyr, float),
                          np.array(new_lam, float), np.array(flux, float), wavelength_medium=medium,
                          zsun=obj.zsun)
    if hasattr(obj, "ssp_wave") and hasattr(obj, "_replace"):
        attrs = copy.deepcopy(dict(getattr(obj, "attrs", {}) or {}))
        current = _stated_medium(attrs)
        new_lam, flux, attrs = _convert_stated(np.asarray(obj.ssp_wave, float), np.asarray(obj.ssp_flux),
                                               attrs, medium, _stated_per_frequency(attrs))
        if "lsf_fwhm" in attrs and current != medium:
            wave = np.asarray(obj.ssp_wave, float)
            attrs["lsf_fwhm"] = list(stated_lsf_fwhm(attrs["lsf_fwhm"], wave.size, "attrs['lsf_fwhm']")
                                     * (new_lam / wave))
        # every array copied (same medium: ssp_wave and ssp_flux are the input's own)
        arrays = {k: np.array(v, copy=True) for k, v in obj._asdict().items() if isinstance(v, np.ndarray)}
        return obj._replace(**{**arrays, "ssp_wave": np.array(new_lam, float, copy=True),
                               "ssp_flux": np.array(flux, copy=True), "attrs": attrs})
    raise ValueError(f"to_medium takes a specutils.Spectrum, an SSPGrid or DSPSArrays; "
                     f"got {type(obj).__name__}")
