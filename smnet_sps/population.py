"""``StellarPopulation``: python-fsps's interface on smnet-sps SSPs (star-formation histories, dust, IGM).

A drop-in for ``fsps.StellarPopulation`` for every parameter that applies to a stellar-only population::

    from smnet_sps import StellarPopulation          # instead of: import fsps
    sp = StellarPopulation(compute_vega_mags=False, zcontinuous=1, sfh=0, logzsol=0.0, dust_type=2,
                           dust2=0.2, imf_type=1)
    wave, spec = sp.get_spectrum(tage=13.7, peraa=True)          # L_sun / A per M_sun formed
    mags = sp.get_mags(tage=13.7, bands=["sdss_g", "sdss_r"])    # absolute AB magnitudes (10 pc)

Conventions (FSPS's): ``get_spectrum`` returns the rest-frame spectrum in L_sun / Hz per M_sun formed
(L_sun / A with ``peraa=True``); ``tage`` is in Gyr and ``tage=0`` returns every SSP age (``ssp_ages``,
log10 yr); ``sfh=3`` (tabular) is not normalised (masses in M_sun); ``stellar_mass`` is stars + remnants
(stars only with ``add_stellar_remnants=False``); ``get_mags`` gives absolute magnitudes at z = 0 and apparent
observed-frame magnitudes at z > 0 (luminosity distance of ``cosmology``, default FSPS's flat H0 = 72,
Omega_m = 0.27). Wavelengths are vacuum (air with ``vactoair_flag=True``). Details: ``docs/population.md``.

What differs from FSPS: the stellar spectra come from an smnet-sps generator (default: the shipped model),
isochrones default to Padova 2007 (ages to 14.1 Gyr; ``isochrones="parsec"`` or ``"mist"`` for the others),
and there is no nebular emission, dust emission, AGB dust or AGN: those parameters default to off and
switching them on raises ``ValueError`` (as does any other parameter this class cannot honour), never a
silently different spectrum. FSPS's own default adds dust emission: with dust on and ``add_dust_emission``
never set, ``get_mags`` warns for bands beyond 3 micron in the rest frame, and ``get_spectrum`` once per
population. ``sigma_smooth`` smooths as FSPS does (a Gaussian velocity dispersion in km/s, or a width in A
with ``smooth_velocity=False``, between
``min_wave_smooth`` and ``max_wave_smooth``), on top of the model's own 10-20 A pixels; so do ``smoothspec``
(any spectrum) and ``set_lsf`` with ``smooth_lsf`` (a line-spread function in km/s on the SSPs). ``sfr_avg``
and ``filter_data`` are python-fsps's too (``filter_data`` for ``available_bands``, Vega offsets in this
class's Vega system).
"""
from __future__ import annotations

import copy
import os
import threading
import warnings
from pathlib import Path

import numpy as np
from astropy import units as u

from .constants import C_ANGSTROM, SSP_UNIT
from .dust import DUST_TYPES, attenuate
from .generator import check_switch
from .igm import igm_transmission
from .photometry import as_cosmology
from .sfh import (SFH_TYPES, _in_unit, born_young, check_tabular, parametric_sfh, ssp_weights,
                  table_mass_fraction, tabular_sfh)

__all__ = ["StellarPopulation", "ParameterSet", "FSPS_BANDS", "EMPTY_MAGNITUDE", "fsps_cosmology",
           "prospector_basis"]

# ---- python-fsps's parameters and their defaults ---------------------------------------------------------
_SSP_PARAMS = ["imf_type", "imf_upper_limit", "imf_lower_limit", "imf1", "imf2", "imf3", "vdmc", "mdave",
               "dell", "delt", "sbss", "fbhb", "pagb", "add_stellar_remnants", "tpagb_norm_type",
               "add_agb_dust_model", "agb_dust", "redgb", "agb", "masscut", "fcstar", "evtype",
               "use_wr_spectra", "use_lw_tpagb", "logt_wmb_hot", "add_xrb_emission", "frac_xrb", "smooth_lsf"]
_CSP_PARAMS = ["smooth_velocity", "redshift_colors", "compute_light_ages", "nebemlineinspec", "dust_type",
               "add_dust_emission", "add_neb_emission", "add_neb_continuum", "add_igm_absorption", "zmet",
               "afeindx", "sfh", "wgp1", "wgp2", "wgp3", "tau", "const", "tage", "fburst", "tburst", "dust1",
               "dust2", "dust3", "logzsol", "afe", "zred", "pmetals", "dust_clumps", "frac_nodust",
               "dust_index", "dust_tesc", "frac_obrun", "uvb", "mwr", "dust1_index", "sf_start", "sf_trunc",
               "sf_slope", "duste_gamma", "duste_umin", "duste_qpah", "sigma_smooth", "min_wave_smooth",
               "max_wave_smooth", "gas_logu", "gas_logz", "igm_factor", "fagn", "agn_tau"]
# python-fsps defaults, except the emission components smnet-sps does not model (off here, refused when on)
_DEFAULTS = dict(
    add_agb_dust_model=False, add_dust_emission=False, add_igm_absorption=False, add_neb_emission=False,
    add_neb_continuum=True, add_stellar_remnants=True, redshift_colors=False, compute_light_ages=False,
    nebemlineinspec=True, smooth_velocity=True, smooth_lsf=False, agb_dust=1.0, tpagb_norm_type=2, dell=0.0,
    delt=0.0, redgb=1.0, agb=1.0, fcstar=1.0, fbhb=0.0, sbss=0.0, pagb=1.0, frac_xrb=1.0, zred=0.0, zmet=1,
    logzsol=0.0, pmetals=2.0, afeindx=1, afe=0.0, imf_type=2, imf_upper_limit=120, imf_lower_limit=0.08,
    imf1=1.3, imf2=2.3, imf3=2.3, vdmc=0.08, mdave=0.5, evtype=-1, use_wr_spectra=1, use_lw_tpagb=0,
    logt_wmb_hot=0.0, add_xrb_emission=0, masscut=150.0, sigma_smooth=0.0, min_wave_smooth=1e3,
    max_wave_smooth=1e4, gas_logu=-2, gas_logz=0.0, igm_factor=1.0, sfh=0, tau=1.0, const=0.0, sf_start=0.0,
    sf_trunc=0.0, tage=0.0, dust_tesc=7.0, fburst=0.0, tburst=11.0, sf_slope=0.0, dust_type=0, dust1=0.0,
    dust2=0.0, dust3=0.0, dust_clumps=-99.0, frac_nodust=0.0, frac_obrun=0.0, dust_index=-0.7,
    dust1_index=-1.0, mwr=3.1, uvb=1.0, wgp1=1, wgp2=1, wgp3=1, duste_gamma=0.01, duste_umin=1.0,
    duste_qpah=3.5, fagn=0.0,
    agn_tau=10.0)

# Parameters that must keep a fixed value, and why. Parameters that only act through a component that is off
# (gas_logu with no nebular emission, duste_* with no dust emission, ...) are accepted and have no effect, as
# in FSPS.
_FIXED = {
    "add_neb_emission": (False, "nebular emission (lines and continuum) is not modelled by smnet-sps"),
    "add_dust_emission": (False, "dust emission (Draine & Li 2007) is not modelled by smnet-sps"),
    "add_agb_dust_model": (False, "the AGB circumstellar dust model (Villaume 2014) is not modelled"),
    "add_xrb_emission": (0, "X-ray binary emission is not modelled"),
    "compute_light_ages": (False, "light-weighted ages are not computed"),
    "fagn": (0.0, "AGN emission is not modelled"),
    "dust_clumps": (-99.0, "clumpy dust is not supported (FSPS no longer supports it either)"),
    "afe": (0.0, "alpha enhancement is not available"),
    "afeindx": (1, "alpha enhancement is not available"),
    "imf_upper_limit": (120, "the IMF limits are fixed at 0.08-120 M_sun"),
    "imf_lower_limit": (0.08, "the IMF limits are fixed at 0.08-120 M_sun"),
    "evtype": (-1, "SSPs of a single evolutionary phase are not available (see ssp_spectrum(by_phase=True))"),
    "masscut": (150.0, "masscut is not available"),
    "tpagb_norm_type": (2, "only FSPS's default TP-AGB normalisation (type 2, applied to Padova) is used"),
    "dell": (0.0, "isochrone modifications (dell) are not available"),
    "delt": (0.0, "isochrone modifications (delt) are not available"),
    "redgb": (1.0, "isochrone modifications (redgb) are not available"),
    "agb": (1.0, "isochrone modifications (agb) are not available"),
    "fcstar": (1.0, "isochrone modifications (fcstar) are not available"),
    "fbhb": (0.0, "blue horizontal-branch modifications are not available"),
    "sbss": (0.0, "blue straggler modifications are not available"),
    "pagb": (1.0, "post-AGB weight modifications are not available"),
    "use_wr_spectra": (1, "stellar-library switches do not apply (choose special_phases= instead)"),
    "use_lw_tpagb": (0, "stellar-library switches do not apply (choose special_phases= instead)"),
    "logt_wmb_hot": (0.0, "stellar-library switches do not apply"),
}
IMF_TYPES = {0: "salpeter", 1: "chabrier", 2: "kroupa"}
# Parameters the per-age results do not depend on (the redshift and the IGM act on the output; results are
# keyed by tage), and those that act only after the SSPs are summed (dust, then FSPS's smoothing): a fit that
# moves only these re-used nothing (a new zred or dust2 summed the SFH's SSPs again)
_NOT_IN_RESULTS = frozenset({"tage", "zred", "add_igm_absorption", "igm_factor"})
_AFTER_THE_SUM = frozenset({"dust_type", "dust1", "dust2", "dust3", "dust_index", "dust1_index",
                            "frac_nodust", "frac_obrun", "mwr", "uvb", "sigma_smooth", "smooth_velocity",
                            "min_wave_smooth", "max_wave_smooth"})
#: ages [Gyr] whose results a StellarPopulation keeps (each ~30 KB): a fit moving tage alone keeps its results
#: (they are keyed by age), so without a bound an MCMC's 10^5 distinct tage values held gigabytes; the
#: oldest is dropped first, and tage=0's table (~100 ages) still fits
CACHED_AGES = 256
#: get_mags of a population with no stars yet (FSPS getmags.f90 writes 99 where the band flux is ~0)
EMPTY_MAGNITUDE = 99.0
#: rest-frame pivot wavelength [A] from which FSPS's default dust emission (Draine & Li 2007: the 3.3 micron
#: PAH feature and the warm dust beyond) adds light to get_mags; smnet-sps models none (see
#: StellarPopulation._warn_no_dust_emission)
DUST_EMISSION_FROM = 3.0e4

# ---- FSPS band names -> smnet-sps filter names (speclite "group-band" or astro-sedpy names) ---------------
FSPS_BANDS = {
    "v": "bessell-V", "u": "bessell-U", "b": "bessell-B", "cousins_r": "bessell-R", "cousins_i": "bessell-I",
    "2mass_j": "twomass_J", "2mass_h": "twomass_H", "2mass_ks": "twomass_Ks",
    **{f"sdss_{b}": f"sdss_{b}0" for b in "ugriz"},
    **{f"wfc_acs_{f}": f"acs_wfc_{f}"
       for f in ("f435w", "f475w", "f555w", "f606w", "f625w", "f775w", "f814w", "f850lp")},
    **{f"wfc3_uvis_{f}": f"wfc3_uvis_{f}"
       for f in ("f225w", "f275w", "f336w", "f390w", "f475w", "f555w", "f606w", "f814w")},
    **{f"wfc3_ir_{f}": f"wfc3_ir_{f}" for f in ("f098m", "f105w", "f110w", "f125w", "f140w", "f160w")},
    **{f"irac_{i}": f"spitzer_irac_ch{i}" for i in range(1, 5)},
    "isaac_ks": "vlt_isaac_Ks", "galex_fuv": "galex_FUV", "galex_nuv": "galex_NUV",
    "des_g": "decam_g", "des_r": "decam_r", "des_i": "decam_i", "des_z": "decam_z", "des_y": "decam_Y",
    "wfcam_j": "ukirt_wfcam_J", "wfcam_h": "ukirt_wfcam_H", "wfcam_k": "ukirt_wfcam_K",
    "megacam_u": "cfht_megacam_us_9301", "megacam_g": "cfht_megacam_gs_9401",
    "megacam_r": "cfht_megacam_rs_9601", "megacam_i": "cfht_megacam_is_9701",
    "megacam_z": "cfht_megacam_zs_9801",
    **{f"wise_w{i}": f"wise_w{i}" for i in range(1, 5)},
    "uvot_w2": "uvot_w2", "uvot_m2": "uvot_m2", "uvot_w1": "uvot_w1", "mips_24": "spitzer_mips_24",
    "pacs_70": "herschel_pacs_70", "pacs_100": "herschel_pacs_100",
    **{f"stromgren_{b}": f"stromgren_{b}" for b in "uvby"},
    **{f"jwst_{f}": f"jwst_{f}" for f in ("f070w", "f090w", "f115w", "f150w", "f200w", "f277w", "f356w",
                                          "f444w")},
    **{f"newfirm_{b}": f"mayall_newfirm_{b.upper()}" for b in ("j1", "j2", "j3", "h1", "h2", "k")},
    "vista_y": "vista_vircam_Y", "vista_j": "vista_vircam_J", "vista_h": "vista_vircam_H",
    "vista_k": "vista_vircam_Ks",
    "suprimecam_b": "subaru_suprimecam_B", "suprimecam_v": "subaru_suprimecam_V",
    "suprimecam_r": "subaru_suprimecam_rp", "suprimecam_i": "subaru_suprimecam_ip",
    "suprimecam_z": "subaru_suprimecam_zp",
    **{f"ps1_{b}": f"panstarrs_{b}" for b in "grizy"},
    **{f"lsst_{b}": f"lsst_baseline_{b}" for b in "ugrizy"},
    **{f"roman_{f}": f"roman_wfi_{f}" for f in ("f062", "f087", "f106", "f129", "f158", "f184")},
}

_GRID_CACHE: dict = {}
_UNSET = object()


def fsps_cosmology():
    """FSPS's cosmology for apparent magnitudes: flat, H0 = 72 km/s/Mpc, Omega_m = 0.27, Omega_Lambda = 0.73,
    no radiation (sps_vars.f90 om0, ol0, H0, read by get_lumdist.f90 and getmags.f90; python-fsps keeps them).
    Flat 70 / 0.3, used until 2026-12-03, made apparent magnitudes 0.06 mag fainter at z = 0.05, 0.02 at
    z = 1."""
    from astropy.cosmology import FlatLambdaCDM
    return FlatLambdaCDM(H0=72.0, Om0=0.27, name="FSPS (flat, H0=72, Om0=0.27)")


# ---- parameters ------------------------------------------------------------------------------------------
# FSPS's units of the parameters a Quantity may be given for (the others are numbers or fractions)
_PARAMETER_UNITS = {"tage": u.Gyr, "tau": u.Gyr, "sf_start": u.Gyr, "sf_trunc": u.Gyr, "tburst": u.Gyr,
                    "dust_tesc": u.dex(u.yr), "logzsol": u.dex, "gas_logz": u.dex, "gas_logu": u.dex}
# parameters FSPS holds as a logarithm: a Quantity in plain dex is their number (dust_tesc = 7 dex: 10^7 yr)
_LOGARITHMIC = frozenset({"dust_tesc", "logzsol", "gas_logz", "gas_logu"})


def _plain_value(name, value):
    """A parameter as python-fsps holds it, a plain number in FSPS's units: a Quantity is converted (its unit
    was dropped: tage = 5 Myr computed 5 Gyr), a dimensionless one gives its number, one in dex only for a
    logarithmic parameter (tau = 2 dex was read as 2 Gyr); any other unit is refused, naming the one
    expected."""
    if not isinstance(value, u.Quantity):
        return value
    unit = _PARAMETER_UNITS.get(name)
    if value.unit == u.dimensionless_unscaled or (value.unit == u.dex and name in _LOGARITHMIC):
        return value.value                                       # already the number in FSPS's unit
    try:
        if unit is not None:
            return value.to_value(unit)
    except u.UnitConversionError:
        pass
    raise ValueError(f"parameter {name!r} is in {unit if unit is not None else 'no unit (a plain number)'}; "
                     f"got the Quantity {value}")


def _own_value(value):
    """A parameter value the set holds as its own: an array copied and made read-only, another mutable
    container deep-copied (the caller's array, changed after it was set, changed the parameter past the
    dirty flag: ages computed before kept the old value, later ones took the new)."""
    if isinstance(value, np.ndarray):
        value = np.array(value)
        value.flags.writeable = False
        return value
    return copy.deepcopy(value) if isinstance(value, (list, dict, set)) else value


def _remember(cache, key, value):
    """``cache[key] = value``, dropping the oldest entries beyond :data:`CACHED_AGES`."""
    cache[key] = value
    while len(cache) > CACHED_AGES:
        del cache[next(iter(cache))]


class ParameterSet:
    """python-fsps's dict-like parameter set with a dirty flag.

    ``params[k] = v`` marks the set dirty only when the value changes (``dirtiness`` 2 for SSP-level
    parameters, 1 for CSP-level ones); results are recomputed on the next request. Unknown names raise
    ``KeyError``. ``all_params``, ``ssp_params``, ``csp_params``, ``dirty``, ``iteritems``, ``keys``,
    ``items`` behave as in python-fsps.
    """

    ssp_params = list(_SSP_PARAMS)
    csp_params = list(_CSP_PARAMS)

    def __init__(self, **kwargs):
        self.dirtiness = 2
        # names changed since StellarPopulation last looked: which of its cached results they make stale
        self.changed = set()
        # names the user gave (StellarPopulation(**params), params[k] = v), even at their default value:
        # a default smnet-sps differs from FSPS's on (add_dust_emission) is warned about only when unset
        self.user_set = set()
        self._params = {k: _own_value(_plain_value(k, v)) for k, v in kwargs.items()}
        self.iteritems = self._params.items

    def __setstate__(self, state):
        # a set pickled before user_set existed: nothing recorded as given (params[k] = v raised
        # AttributeError on it)
        state.setdefault("user_set", set())
        self.__dict__.update(state)

    @property
    def all_params(self):
        return self.ssp_params + self.csp_params

    @property
    def dirty(self):
        return self.dirtiness > 0

    def __getitem__(self, k):
        return self._params[k]

    def __setitem__(self, k, v):
        if k not in self._params:
            raise KeyError(f"{k!r} is not a python-fsps parameter; see StellarPopulation.params.all_params")
        v = _plain_value(k, v)
        self.user_set.add(k)
        changed = np.any(np.asarray(self._params[k] != v))
        if changed:
            if k in self.ssp_params:
                self.dirtiness = 2
            else:
                self.dirtiness = max(1, self.dirtiness)
            self._params[k] = _own_value(v)
            self.changed.add(k)

    def __contains__(self, k):
        return k in self._params

    def __iter__(self):
        return iter(self._params)

    def __len__(self):
        return len(self._params)

    def keys(self):
        return self._params.keys()

    def items(self):
        return self._params.items()

    def __repr__(self):
        return f"ParameterSet({len(self._params)} parameters, dirtiness={self.dirtiness})"


def _scalar(name, v, kind=float):
    # text and (for a number) True were converted: redshift="0.5" ran at 0.5, redshift=True at z = 1
    if isinstance(v, (str, bytes)) or (kind is float and isinstance(v, (bool, np.bool_))):
        raise ValueError(f"parameter {name!r} must be a single {kind.__name__}; got {v!r}")
    if kind is int and np.asarray(v).dtype == bool:
        # a code (sfh, imf_type, dust_type, zmet) given as a switch: sfh=True ran as sfh=1 (tau model)
        raise ValueError(f"parameter {name!r} is an integer code, not a switch (True / False); got {v!r}")
    try:
        arr = np.asarray(v)
        if arr.size != 1:
            raise TypeError
        item = arr.reshape(()).item()
        x = kind(item)
        # a switch (imf_type, sfh, dust_type, zmet) was cut to an integer: imf_type=1.9 ran as Chabrier
        if kind is int and x != item:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"parameter {name!r} must be a single {kind.__name__}; got {v!r}") from None
    if kind is float and not np.isfinite(x):
        raise ValueError(f"parameter {name!r} must be finite; got {v!r}")
    return x


def _numbers_in(name, value, unit):
    """``value`` (a number, an array or a Quantity) as a float array in ``unit``; text and booleans are
    refused (np.asarray(..., float) read "0.1" as a number), as are NaN and infinities."""
    arr = np.asarray(_in_unit(name, value, unit))
    if arr.dtype.kind not in "iuf" or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite real numbers in {unit} (or a Quantity); got {value!r}")
    return arr.astype(float)


def _number_in(name, value, unit):
    """One number in ``unit`` as a float: a number, a Quantity or a size-1 array, which python-fsps
    broadcasts (float() of a 1-d array is a TypeError in numpy 2); more than one is a ValueError."""
    arr = _numbers_in(name, value, unit)
    if arr.size != 1:
        raise ValueError(f"{name} must be one number in {unit} (or a Quantity); got {arr.size}: {value!r}")
    return arr.item()


def _gaussian_smooth(wave, flux, sigma, velocity, lo, hi):
    """FSPS's smoothspec: ``flux`` (..., n) on ``wave`` [A] convolved with a Gaussian of dispersion ``sigma``
    [km/s] (sigma_lambda = lambda sigma / c) or, with ``velocity`` False, ``sigma`` [A], at the pixels inside
    [lo, hi] [A], the pixels outside unchanged; smnet_sps.lsf.degrade_to_fwhm does the convolution."""
    from .lsf import C_KMS, FWHM_PER_SIGMA, degrade_to_fwhm
    wave = np.asarray(wave, float)
    sigma_aa = wave * sigma / C_KMS if velocity else np.full(wave.shape, sigma)
    inside = (wave >= lo) & (wave <= hi)
    return degrade_to_fwhm(wave, flux, 0.0, np.where(inside, sigma_aa * FWHM_PER_SIGMA, 0.0))


# ---- the population ----------------------------------------------------------------------------------------
def _backend_attribute(name, what):
    """A StellarPopulation model attribute that is also a backend option (generator, special_phases,
    outside, device): read as stored, set through ``_model_changed`` (checked, old results dropped)."""
    return property(lambda self: self.__dict__["_" + name],
                    lambda self, value: self._model_changed(name, value, backend=True),
                    doc=f"{what}; set it to change it (the next call recomputes).")


class StellarPopulation:
    """A stellar population with python-fsps's parameters, methods and units (see the module docstring).

    Parameters
    ----------
    compute_vega_mags : bool, Vega (True) or AB (False, default) magnitudes. Vega is
        CALSPEC's at 0 mag in every band, not FSPS's V-anchored Kurucz Vega: against FSPS -0.02 to -0.045
        mag in the IR, +0.07 to +0.12 below 3,000 A and +0.24 in GALEX FUV (docs/population.md); compare
        with FSPS in AB
    vactoair_flag : bool, report wavelengths in air (default vacuum). As FSPS's, it
        relabels the axis only (L_lambda per vacuum A); ``to_medium`` also rescales L_lambda
        (docs/population.md)
    zcontinuous : 0 (use the tabulated metallicity ``zmet``, 1-based) or 1 (interpolate to ``logzsol``)
    cloudy_dust : must be False (no nebular emission)
    generator : None or "default" (the shipped default model), "semi-empirical", "blackbody", a model
        directory, or a smnet-sps Generator / StellarLibraryBackend (as :func:`smnet_sps.ssp.ssp_spectrum`)
    isochrones : "padova" (default; Z 2e-4..0.03, Zsun 0.019, 0.3 Myr - 14.1 Gyr), "parsec" (to 12.58 Gyr) or
        "mist" (needs the optional ``lachesis-grids`` package); or your own, as
        :func:`smnet_sps.ssp.ssp_spectrum` takes them: an :class:`~smnet_sps.isochrones.IsochroneSet` or the
        path of a file from PARSEC's CMD web form or written by
        :func:`~smnet_sps.isochrones.convert_fsps_isochrones` (``zlegend`` and ``ssp_ages`` are then the
        file's Z and ages)
    special_phases, outside, device : passed to :func:`smnet_sps.ssp.ssp_grid` (device: "auto", "cpu",
        "cuda" or "cuda:N", where a model named by ``generator`` runs)
    cosmology : astropy cosmology for apparent magnitudes and observed spectra, or the name of an astropy
        realization ("Planck18", "WMAP9", ...) (default :func:`fsps_cosmology`); anything else a ValueError
    **params : any python-fsps parameter (``params.all_params``)

    ``compute_vega_mags``, ``vactoair_flag``, ``generator``, ``isochrone_set`` (``isochrones=``),
    ``special_phases``, ``outside``, ``device`` and ``cosmology`` are also attributes, each checked when set
    as at creation (a ValueError then); a change takes effect on the next call, as a changed parameter's
    (the results of the old model are dropped). What depends on two of them (a ``device``, ``outside`` or
    ``special_phases`` other than that of a Generator / backend passed in; ``zmet`` beyond a new set's Z)
    or on loading a model directory is found by the next call, as are the values of ``params`` (a name or
    unit, wrong, is refused when set). ``zcontinuous`` and ``cloudy_dust`` are fixed at creation.

    Threads may share a population to compute different ages (python-fsps's may not be shared): one
    computation runs at a time, and each call returns its own result. The properties (``stellar_mass``,
    ``log_lbol``, ...) describe the last call of any thread; a model attribute set by one thread while
    another computes waits for that computation, and ``params`` changed meanwhile apply to it or to the
    next call (never lost); give each thread its own population for different parameters.

    python-fsps's methods: ``get_spectrum``, ``get_mags``, ``set_tabular_sfh``, ``sfr_avg`` (also for
    sfh=3 and ``sf_trunc``, which python-fsps refuses), ``smoothspec``, ``set_lsf`` (with ``smooth_lsf``
    and ``smooth_velocity``) and ``filter_data`` (``(lambda_eff, magvega, magsun)`` for
    ``available_bands``, alphabetical; ``magvega`` not V-relative: this class's Vega is 0 in every band).
    """

    def __init__(self, compute_vega_mags=False, vactoair_flag=False, zcontinuous=0, cloudy_dust=False, *,
                 generator=None, isochrones="padova", special_phases="model", outside="extrapolate",
                 device="auto", cosmology=None, **kwargs):
        # one computation at a time: each writes tage into the shared params and syncs the caches on its
        # dirty flags, so two threads computing ages at once read each other's tage (a spectrum of the
        # other age) or emptied each other's rows (KeyError)
        self._lock = threading.RLock()
        self.params = ParameterSet(**_DEFAULTS)
        for k in list(kwargs):
            if k in self.params:
                self.params._params[k] = _own_value(_plain_value(k, kwargs.pop(k)))
                self.params.user_set.add(k)
        if kwargs:
            raise TypeError(f"__init__() got an unexpected keyword argument {next(iter(kwargs))!r} (not a "
                            "python-fsps parameter; see StellarPopulation().params.all_params)")
        if isinstance(zcontinuous, (bool, np.bool_)) or zcontinuous not in (0, 1):
            # True was taken as 1
            raise ValueError(f"zcontinuous must be 0 (tabulated zmet) or 1 (interpolate to logzsol); got "
                             f"{zcontinuous!r} (metallicity distributions, 2 and 3, are not available)")
        if cloudy_dust:
            raise ValueError("cloudy_dust=True needs nebular emission, which smnet-sps does not model")
        # checked by their setters (bool() read the string "False" as True: Vega magnitudes, air wavelengths)
        self.compute_vega_mags = compute_vega_mags
        self.vactoair_flag = vactoair_flag
        self._zcontinuous = int(zcontinuous)
        self._backend = None
        # a family name, a set or an isochrone file (a CMD output, a converted .npz), as in ssp_spectrum
        self.isochrone_set = isochrones
        self.generator = generator
        self.special_phases = special_phases
        self.outside = outside
        self.device = device
        self.cosmology = cosmology
        self._tabular = None
        self._lsf = None                 # set_lsf's (wave [A], sigma [km/s], wmin, wmax)
        self._results = {}
        self._unattenuated = {}          # per tage: the summed young / old light before dust, and its figures
        self._last_basis = None          # (Z, IMF, generator key), isochrone set, SSPs at that Z
        self._last = None
        self._backend = None
        self._spectrum_dust_warned = False      # get_spectrum's no-dust-emission warning: said once

    def __getstate__(self):                 # a lock does not pickle (process pools, copy.deepcopy)
        state = self.__dict__.copy()
        state.pop("_lock", None)
        return state

    def __setstate__(self, state):
        # a population pickled before the model attributes became properties held them under their names
        for name in ("generator", "special_phases", "outside", "device", "isochrone_set", "cosmology",
                     "compute_vega_mags", "vactoair_flag"):
            if name in state:
                state["_" + name] = state.pop(name)
        state.setdefault("_lsf", None)          # one pickled before set_lsf existed
        state.setdefault("_spectrum_dust_warned", False)
        self.__dict__.update(state)
        self._lock = threading.RLock()

    # ---- the model: set at creation, and a change takes effect on the next call (as a parameter's) ----
    def _model_changed(self, name, value, backend=False):
        """Store a model attribute; if it changed, drop every result computed with the old one (the next
        call recomputes, as after a changed SSP parameter). ``sp.generator = other`` after a first call
        returned the old generator's spectra silently: the cached results, the blended SSPs and the backend
        were kept. Under the lock: a computation running in another thread finishes with the old model
        first (set in the middle of one, the change was half seen). A backend option is checked alone
        first, as the next call's get_backend would (``sp.outside = "bogus"`` was taken and failed only on
        that call)."""
        if backend:
            from .ssp import _check_backend_option
            _check_backend_option(name, value)
        with self._lock:
            old = self.__dict__.get("_" + name, _UNSET)
            self.__dict__["_" + name] = value
            if old is value or (isinstance(value, str) and isinstance(old, str) and old == value):
                return
            if backend:
                self._backend = None
            self._last_basis = self._last = None
            self.params.changed.add(name)          # _sync empties the cached results (the name is not in
            self.params.dirtiness = 2              # _NOT_IN_RESULTS) and checks zmet against a new set

    generator = _backend_attribute("generator", "The stellar spectra (as ``generator=``)")
    special_phases = _backend_attribute("special_phases", "``special_phases=`` of the backend")
    outside = _backend_attribute("outside", "``outside=`` of the backend")
    device = _backend_attribute("device", "Where a model named by ``generator`` runs")

    @property
    def isochrone_set(self):
        """The :class:`~smnet_sps.isochrones.IsochroneSet` in use; set it (a set, a family name or a file, as
        ``isochrones=``) to change it (the next call recomputes). Changing a set in place is not seen."""
        return self._isochrone_set

    @isochrone_set.setter
    def isochrone_set(self, value):
        from .isochrones import resolve_isochrones
        self._model_changed("isochrone_set", resolve_isochrones(value))

    @property
    def cosmology(self):
        """The astropy cosmology of apparent magnitudes and observed spectra (a realization's name is taken;
        anything else is a ValueError, as at creation)."""
        return self._cosmology

    @cosmology.setter
    def cosmology(self, value):
        # read at every call (results do not depend on it): nothing to recompute, only to check
        self._cosmology = as_cosmology(value, default=fsps_cosmology())

    @property
    def compute_vega_mags(self):
        """Vega (True) or AB (False) magnitudes from :meth:`get_mags`; read at every call."""
        return self._compute_vega_mags

    @compute_vega_mags.setter
    def compute_vega_mags(self, value):
        # bool() read the string "False" as True (Vega magnitudes)
        self._compute_vega_mags = check_switch(value, "compute_vega_mags", allow_01=True)

    @property
    def vactoair_flag(self):
        """Report wavelengths in air (True) or vacuum (False); read at every call."""
        return self._vactoair_flag

    @vactoair_flag.setter
    def vactoair_flag(self, value):
        self._vactoair_flag = check_switch(value, "vactoair_flag", allow_01=True)

    # ---- static properties ----
    def _get_backend(self):
        if self._backend is None:
            from .ssp import get_backend
            self._backend = get_backend(self.generator, self.special_phases, self.outside, self.device)
        return self._backend

    @property
    def wavelengths(self):
        """Rest-frame wavelengths [A], vacuum (air with ``vactoair_flag=True``)."""
        w = np.asarray(self._get_backend().wavelength, float).copy()
        if self.vactoair_flag:
            from .medium import axis_vacuum_to_air
            w = axis_vacuum_to_air(w)
        return w

    @property
    def ssp_ages(self):
        """log10(age / yr) of the tabulated SSPs (the ages of ``get_spectrum(tage=0)``)."""
        return self.isochrone_set.log_age.copy()

    @property
    def zlegend(self):
        """Tabulated metallicities Z (metal mass fraction); ``zmet`` is a 1-based index into it."""
        return self.isochrone_set.Z.copy()

    @property
    def solar_metallicity(self):
        """Zsun of the isochrone family (``logzsol`` is log10 Z / Zsun)."""
        return self.isochrone_set.zsun

    @property
    def libraries(self):
        """(isochrones, stellar library, dust emission) names, as bytes like python-fsps."""
        return (self.isochrone_set.name.encode(), self._get_backend().generator.name.encode(), b"none")

    @property
    def isoc_library(self):
        return self.libraries[0]

    @property
    def spec_library(self):
        return self.libraries[1]

    @property
    def emline_wavelengths(self):
        """Nebular emission is not modelled: an empty array [A]."""
        return np.zeros(0)

    @property
    def emline_luminosity(self):
        """Nebular emission is not modelled: an empty array [L_sun per M_sun formed]."""
        return np.zeros(0)

    @property
    def available_bands(self):
        """FSPS band names accepted by :meth:`get_mags` (any speclite / sedpy filter name works as well)."""
        return sorted(FSPS_BANDS)

    # ---- checks ----
    def _check_params(self):
        p = self.params
        for name, (value, why) in _FIXED.items():
            v = p[name]
            same = ((check_switch(v, name, allow_01=True) == value) if isinstance(value, bool)
                    else (_scalar(name, v) == float(value)))
            if not same:
                raise ValueError(f"{name}={v!r} is not supported: {why}. Keep the default {name}={value!r}.")
        for name in ("add_igm_absorption", "add_stellar_remnants"):     # refused before any work
            check_switch(p[name], name, allow_01=True)
        imf_type = _scalar("imf_type", p["imf_type"], int)
        if imf_type not in IMF_TYPES:
            raise ValueError(f"imf_type={imf_type} is not supported; use 0 (Salpeter), 1 (Chabrier) or 2 "
                             "(Kroupa)")
        if imf_type == 2 and (p["imf1"], p["imf2"], p["imf3"]) != (1.3, 2.3, 2.3):
            raise ValueError("imf_type=2 supports only Kroupa's slopes imf1=1.3, imf2=2.3, imf3=2.3; got "
                             f"{p['imf1']}, {p['imf2']}, {p['imf3']}")
        sfh = _scalar("sfh", p["sfh"], int)
        if sfh not in SFH_TYPES:
            raise ValueError(f"sfh={sfh} is not supported; use one of {SFH_TYPES}")
        dust_type = _scalar("dust_type", p["dust_type"], int)
        if dust_type not in DUST_TYPES:
            raise ValueError(f"dust_type={dust_type} is not supported; use one of {DUST_TYPES}")
        if dust_type == 1 and _scalar("uvb", p["uvb"]) != 1.0:
            raise ValueError("dust_type=1 (CCM89 from dust_extinction) supports only uvb=1.0")
        for name in ("dust1", "dust2", "dust3"):
            if _scalar(name, p[name]) < 0:
                raise ValueError(f"{name} is an optical depth and must be >= 0; got {p[name]!r}")
        zred = _scalar("zred", p["zred"])
        if zred < 0:
            raise ValueError(f"zred must be >= 0; got {zred}")
        self._smoothing()                     # a negative / NaN sigma_smooth or an empty window refused
        self._lsf_fwhm()                      # smooth_lsf without set_lsf, or with smooth_velocity off
        if self._zcontinuous == 0:
            zmet = _scalar("zmet", p["zmet"], int)
            if not 1 <= zmet <= self.zlegend.size:
                raise ValueError(f"zmet={zmet} out of range: it is a 1-based index into zlegend, "
                                 f"1..{self.zlegend.size}")

    def _smoothing(self):
        """(sigma [km/s, or A with smooth_velocity=False], smooth_velocity, min_wave, max_wave [A]) of
        FSPS's smoothing, checked; sigma 0 is no smoothing."""
        p = self.params
        sigma = _scalar("sigma_smooth", p["sigma_smooth"])       # NaN / inf refused there
        velocity = check_switch(p["smooth_velocity"], "smooth_velocity", allow_01=True)
        unit = "km/s" if velocity else "Angstrom"
        if sigma < 0:
            raise ValueError(f"sigma_smooth is a Gaussian dispersion (sigma, not FWHM) in {unit} and must be "
                             f">= 0 (0: no smoothing); got {sigma!r}")
        lo, hi = _scalar("min_wave_smooth", p["min_wave_smooth"]), _scalar("max_wave_smooth",
                                                                          p["max_wave_smooth"])
        if sigma > 0 and not 0 <= lo < hi:
            raise ValueError(f"min_wave_smooth and max_wave_smooth [Angstrom] must satisfy 0 <= min < max; "
                             f"got {lo!r}, {hi!r}")
        return sigma, velocity, lo, hi

    def _smooth(self, flux):
        """FSPS's smoothspec on the rest-frame L_lambda ``flux`` (..., n_wave) with sigma_smooth between
        min_wave_smooth and max_wave_smooth (:func:`_gaussian_smooth`). It adds to the model's own box LSF
        (as FSPS adds to its library's resolution)."""
        sigma, velocity, lo, hi = self._smoothing()
        if sigma == 0:
            return flux
        return _gaussian_smooth(self._get_backend().wavelength, flux, sigma, velocity, lo, hi)

    def _lsf_fwhm(self):
        """FWHM [A] at each model pixel of the set_lsf Gaussian (0 outside its wmin..wmax), or None when
        smooth_lsf is off; checked (smooth_lsf needs set_lsf and smooth_velocity)."""
        p = self.params
        if not check_switch(p["smooth_lsf"], "smooth_lsf", allow_01=True):
            return None
        lsf = self._lsf
        if lsf is None:
            raise ValueError("smooth_lsf=True needs a line-spread function: call set_lsf(wave, sigma) first")
        if not check_switch(p["smooth_velocity"], "smooth_velocity", allow_01=True):
            # FSPS's SSP smoothing with smooth_velocity off is a 99 A Gaussian whatever set_lsf gave
            raise ValueError("smooth_lsf=True needs smooth_velocity=True (set_lsf's sigma is in km/s; FSPS "
                             "would smooth by a fixed 99 A instead)")
        from .lsf import C_KMS, FWHM_PER_SIGMA
        wave, sigma, lo, hi = lsf
        w = self.wavelengths                       # the axis the caller sees (air with vactoair_flag)
        kms = np.where((w >= lo) & (w <= hi), np.interp(w, wave, sigma), 0.0)
        return np.asarray(self._get_backend().wavelength, float) * kms / C_KMS * FWHM_PER_SIGMA

    # ---- SSP basis ----
    def _metallicity(self):
        iso = self.isochrone_set
        if self._zcontinuous == 0:
            return float(iso.Z[_scalar("zmet", self.params["zmet"], int) - 1])
        from .ssp import _resolve_z        # the SSP functions' rule: a logzsol out of range named as given
        return float(_resolve_z(iso, None, _scalar("logzsol", self.params["logzsol"])))

    def _imf(self):
        return IMF_TYPES[_scalar("imf_type", self.params["imf_type"], int)]

    def _tabulated(self, iz):
        """All tabulated ages at tabulated metallicity iz (cached per generator, IMF, isochrone set)."""
        from .ssp import _key_lock, ssp_grid
        backend = self._get_backend()
        # keyed on the set itself (its id, the set held in the entry): two CMD files of one name, or a family
        # table rebuilt in the session, are different sets under the same name
        iso = self.isochrone_set
        key = (id(iso), iso.name, iz, self._imf(), backend.key)
        # threads wanting the same grid wait for the first one's (each computed all of it again)
        with _key_lock(("population grid", *key)):
            hit = _GRID_CACHE.get(key)
            if hit is not None and hit[0] is backend.generator and hit[2] is iso:
                return hit[1]
            from .generator import _quiet_coverage
            with _quiet_coverage():
                # the tabulation covers every age; a few sub-2-Myr SSPs of metal-poor PARSEC sets are mostly
                # extrapolated, and their share of a composite population is what matters, not theirs alone
                g = ssp_grid(None, [iso.Z[iz]], imf=self._imf(), isochrones=iso, generator=backend,
                             progress=False)
            tab = {"flux": g.ssp_flux[0], "mass_stars": g.mass_stars[0], "mass_remnants": g.mass_remnants[0],
                   "lbol": 10.0 ** g.log_lbol[0]}
            if len(_GRID_CACHE) > 64:
                _GRID_CACHE.clear()
            _GRID_CACHE[key] = (backend.generator, tab, iso)
        return tab

    def _basis(self, Z):
        """SSPs at every tabulated age and metallicity Z, linear in log Z between tabulated Z (as ssp.py)."""
        from .ssp import _neighbours
        iso = self.isochrone_set
        # the last one kept: a fit moving tau or tage at one Z blended the two tabulated grids
        # (n_age x n_wave) again on every call
        key = (Z, self._imf(), self._get_backend().key)
        if self._last_basis is not None and self._last_basis[0] == key and self._last_basis[1] is iso:
            return self._last_basis[2]
        out = None
        for iz, wz in _neighbours(np.log10(iso.Z), np.log10(Z)):
            tab = self._tabulated(iz)
            part = {k: wz * v for k, v in tab.items()}
            out = part if out is None else {k: out[k] + part[k] for k in out}
        self._last_basis = (key, iso, out)
        return out

    # ---- computation ----
    def _sync(self):
        p = self.params
        # a name still in changed is pending even at dirtiness 0 (as python-fsps, dirtiness may be set by
        # hand): the caches must not outlive a change
        if p.dirty or p.changed:
            # the names seen now are the ones synced: one added meanwhile (params[k] = v from another
            # thread, which the lock does not hold) stays pending for the next call
            seen = set(p.changed)
            self._check_params()
            # a change of unknown names (dirtiness set directly, a new tabular SFH) makes everything stale
            changed = seen or {None}
            if changed - _NOT_IN_RESULTS:
                self._results = {}
            if changed - _NOT_IN_RESULTS - _AFTER_THE_SUM:
                self._unattenuated = {}
            self._synced(seen)

    def _synced(self, names):
        """Mark ``names`` as seen by the caches; the set stays dirty while a change made meanwhile is pending
        (zeroing dirtiness outright lost it for good: sp.generator = other set by another thread between
        a call's sync and its tage write was never seen, every later call returned the old results)."""
        p = self.params
        p.changed.difference_update(names)
        if not p.changed:
            p.dirtiness = 0

    def _compute(self, tage):
        """Dict with the attenuated rest-frame L_lambda (before IGM) and bookkeeping at one tage [Gyr]."""
        p = self.params

        def val(name):
            return _scalar(name, p[name])
        key = float(tage)
        if key not in self._unattenuated:
            _remember(self._unattenuated, key, self._sum_ssps(tage))
        young, old, res = self._unattenuated[key]
        res = dict(res)                                   # the cached figures stay as they are
        wave = self._get_backend().wavelength
        res["flux"] = attenuate(wave, young, old, dust_type=_scalar("dust_type", p["dust_type"], int),
                                **{k: val(k) for k in ("dust1", "dust2", "dust3", "dust_index", "dust1_index",
                                                       "frac_nodust", "frac_obrun", "mwr", "uvb")})
        # FSPS smooths the attenuated spectrum before IGM absorption and magnitudes (compsp.f90): every
        # output (get_spectrum, get_observed_spectrum, get_mags) sees the smoothed spectrum
        res["flux"] = self._smooth(res["flux"])
        remnants = check_switch(p["add_stellar_remnants"], "add_stellar_remnants", allow_01=True)
        mass = res["mass_stars"] + (res["mass_remnants"] if remnants else 0.0)
        res["stellar_mass"] = mass
        res["tage"] = tage
        return res

    def _sum_ssps(self, tage):
        """(young, old, figures) at one tage [Gyr]: the rest-frame L_lambda of the stars younger / older than
        dust_tesc, summed over the SFH before any dust, and their masses, L_bol, mass formed and SFR."""
        p = self.params

        def val(name):
            return _scalar(name, p[name])
        sfh = _scalar("sfh", p["sfh"], int)
        Z = self._metallicity()
        tesc = 10.0 ** val("dust_tesc")
        if sfh == 0:
            from .ssp import ssp_spectrum
            s = ssp_spectrum(tage * u.Gyr, Z=Z, imf=self._imf(), isochrones=self.isochrone_set,
                             generator=self._get_backend())
            flux = np.asarray(s.flux.value, float)
            young_is = born_young(tage * 1e9, tesc)
            young, old = (flux, 0.0 * flux) if young_is else (0.0 * flux, flux)
            m = s.meta
            res = {"mass_stars": m["mass_stars"], "mass_remnants": m["mass_remnants"], "lbol": m["lbol"],
                   "formed": 1.0, "sfr": 0.0}
        else:
            history = self._history(sfh, tage)
            if self.ssp_ages.size < 2:
                # ssp_weights said "log_ages must be >= 2 ...", naming neither the set nor sfh
                iso = self.isochrone_set
                raise ValueError(f"sfh={sfh} sums SSPs of many ages, but the {iso.name} isochrones hold one "
                                 f"age ({iso.age_range_text()}): only sfh=0 (one SSP, at that age) works "
                                 "with them; for a history, give isochrones of a range of ages")
            wy, wo = ssp_weights(history, self.ssp_ages, split_yr=tesc)     # raises before the SSPs are made
            basis = self._basis(Z)
            w = wy + wo
            young, old = wy @ basis["flux"], wo @ basis["flux"]
            res = {"mass_stars": float(w @ basis["mass_stars"]),
                   "mass_remnants": float(w @ basis["mass_remnants"]),
                   "lbol": float(w @ basis["lbol"]), "formed": float(w.sum()),
                   "sfr": float(history.sfr(np.array([0.0]))[0])}
        fwhm = self._lsf_fwhm()
        if fwhm is not None:     # FSPS smooths each SSP (ssp_gen.f90), before dust: the sums alike (linear)
            from .lsf import degrade_to_fwhm
            wave = self._get_backend().wavelength
            young, old = (degrade_to_fwhm(wave, f, 0.0, fwhm) for f in (young, old))
        return young, old, res

    def _history(self, sfh, tage):
        """The star-formation history (:class:`smnet_sps.sfh.SFHistory`) of ``sfh`` 1, 3 or 4 observed at
        ``tage`` [Gyr]: set_tabular_sfh's table for sfh 3, else the parametric parameters."""
        if sfh == 3:
            if self._tabular is None:
                raise ValueError("sfh=3 needs a tabular SFH: call set_tabular_sfh(age, sfr) first")
            return tabular_sfh(*self._tabular, tage)
        names = ("tau", "const", "sf_start", "sf_trunc", "fburst", "tburst")
        return parametric_sfh(sfh, tage, **{k: _scalar(k, self.params[k]) for k in names})

    def _ages(self, tage):
        """tage [Gyr] -> list of ages to compute (tage=0: every SSP age), and whether the output is 2-d."""
        tage = _scalar("tage", tage)
        if tage < 0:
            raise ValueError(f"tage must be > 0 Gyr (or 0 for every SSP age); got {tage}")
        if tage >= 1e3:         # no isochrone reaches 1000 Gyr: an age in years or Myr given as a number
            raise ValueError(f"tage is in Gyr (or a time Quantity such as 1e9 * u.yr); got {tage:g}, i.e. "
                             f"{tage:g} Gyr -- in years that is tage={tage / 1e9:g}, in Myr "
                             f"tage={tage / 1e3:g}")
        if tage == 0:
            return list(10.0 ** self.ssp_ages / 1e9), True
        return [tage], False

    def _results_for(self, tage):
        with self._lock:
            return self._results_for_unlocked(tage)

    def _results_for_unlocked(self, tage):
        # a call that fails leaves no properties behind: stellar_mass & co. described the previous model
        # after a ValueError (logzsol outside the isochrones, tage beyond them)
        self._last = None
        self._sync()                    # the caller's own changes: checked, cached results emptied
        # results are keyed by age (_compute takes it as an argument), so a new tage alone makes none of them
        # stale: asking for a second age used to empty the cache of the first
        self.params["tage"] = tage
        tage = self.params["tage"]              # as stored: a Quantity converted to Gyr
        self._synced({"tage"})                  # tage's own mark only: another change stays pending
        ages, full = self._ages(tage)
        out = []
        for a in ages:
            # in the tage=0 table an age before sf_start is an empty population; asked for alone it is an
            # error (_compute says so), so the empty row is kept under its own key
            empty = (full and _scalar("sfh", self.params["sfh"], int) in (1, 4)
                     and a <= _scalar("sf_start", self.params["sf_start"]))
            key = ("before sf_start", float(a)) if empty else float(a)
            if key not in self._results:
                _remember(self._results, key, self._empty(a) if empty else self._compute(a))
            out.append(self._results[key])
        if full and _scalar("sfh", self.params["sfh"], int) in (1, 4):
            out = self._as_one_history(out)
        self._last = (out, full)
        return out, full

    def _as_one_history(self, rows):
        """The ``tage=0`` table of a tau / delayed-tau SFH as FSPS writes it (compsp.f90): 1 M_sun formed by
        the oldest SSP age (one galaxy's history when ``const`` and ``fburst`` are 0; with them each row keeps
        its own single-``tage`` split, as in FSPS: docs/population.md). Each row, computed for 1 M_sun
        formed by its own age (as a single ``tage`` gives it), is scaled by the mass formed by then
        (``formed_mass`` = sfhinfo's mfrac), and ``sfr`` is that history's (python-fsps: "normalized such
        that one solar mass of stars is formed over the full SFH"). Each row was 1 M_sun: M_V 1.45 mag too
        bright at 1 Gyr for tau = 1, 5.8 at 0.1 Gyr. Copies: the cached rows stay as a single tage needs
        them."""
        p = self.params
        names = ("tau", "const", "sf_start", "sf_trunc", "fburst", "tburst")
        kwargs = {k: _scalar(k, p[k]) for k in names}
        t_max = 10.0 ** self.ssp_ages[-1] / 1e9
        out = []
        for row in rows:
            mfrac, sfr = table_mass_fraction(_scalar("sfh", p["sfh"], int), row["tage"], t_max, **kwargs)
            scaled = dict(row)
            for key in ("flux", "mass_stars", "mass_remnants", "lbol", "stellar_mass"):
                scaled[key] = row[key] * mfrac
            scaled["formed"], scaled["sfr"] = mfrac, sfr
            out.append(scaled)
        return out

    def _empty(self, tage):
        n = self._get_backend().wavelength.size
        return {"flux": np.zeros(n), "mass_stars": 0.0, "mass_remnants": 0.0, "lbol": 0.0, "formed": 0.0,
                "sfr": 0.0, "stellar_mass": 0.0, "tage": tage}

    def _warn_older_than_universe(self, tage, z, cosmology=None):
        """As ssp_photometry does (FSPS says nothing): a UserWarning for a population older than the
        universe at z (get_spectrum at zred, get_observed_spectrum, get_mags alike)."""
        tage = _plain_value("tage", tage)
        if z > 0 and np.ndim(tage) == 0 and float(tage) > 0:
            cosmology = as_cosmology(cosmology, default=self.cosmology)
            age_universe = float(cosmology.age(z).to_value(u.Gyr))
            if float(tage) > age_universe:
                warnings.warn(f"tage = {float(tage):g} Gyr exceeds the age of the universe at z = {z:g} "
                              f"({age_universe:.3g} Gyr in {cosmology.name})", UserWarning, stacklevel=3)

    def _fsps_would_add_dust_emission(self):
        """Whether FSPS, with these parameters, would add dust emission that smnet-sps does not model: dust
        absorbs light (dust1, dust2 or dust3 > 0) and ``add_dust_emission`` was never set (FSPS's default is
        True; False, given, says the starlight alone is meant)."""
        p = self.params
        return ("add_dust_emission" not in p.user_set
                and any(_scalar(k, p[k]) > 0 for k in ("dust1", "dust2", "dust3")))

    def _warn_no_dust_emission_in_spectrum(self, method="get_spectrum"):
        """The spectra's form of :meth:`_warn_no_dust_emission`: a UserWarning (at the caller of ``method``,
        get_spectrum or get_observed_spectrum) that the spectrum beyond :data:`DUST_EMISSION_FROM` (rest
        frame) is the attenuated starlight alone where FSPS would add Draine & Li (2007) emission, once per
        population for both: prospector calls get_spectrum at every likelihood step (with its own filters,
        so get_mags' warning never showed) and leaves add_dust_emission at FSPS's default unless the model
        names it."""
        if self._spectrum_dust_warned or not self._fsps_would_add_dust_emission():
            return
        if self._get_backend().wavelength[-1] <= DUST_EMISSION_FROM:
            return
        self._spectrum_dust_warned = True
        warnings.warn(
            f"{method}: no dust emission beyond {DUST_EMISSION_FROM / 1e4:g} micron (rest frame): FSPS "
            "adds Draine & Li (2007) dust emission there by default (add_dust_emission=True), the light the "
            "dust absorbs re-emitted, but smnet-sps models none, so the spectrum's mid- and far-infrared "
            "(and magnitudes computed from it) are the attenuated starlight alone, possibly magnitudes "
            "fainter than FSPS's. Set add_dust_emission=False to say that is what you want (and silence this "
            "warning); said once per StellarPopulation", UserWarning, stacklevel=3)

    def _warn_no_dust_emission(self, names, filters, z):
        """A UserWarning (at the caller of get_mags) naming the ``names`` whose rest-frame pivot (the
        filter's pivot / (1 + ``z``)) is beyond :data:`DUST_EMISSION_FROM` when dust absorbs light (dust1,
        dust2 or dust3 > 0) and ``add_dust_emission`` was never set: FSPS's default (True) re-emits the
        absorbed light there, so a ported script that relies on it got magnitudes several magnitudes fainter
        than FSPS's without a word (a 1 Gyr tau = 1 Gyr population with dust2 = 0.5: W3 / W4 the attenuated
        starlight's, 4.5 / 6.7 mag fainter than that plus energy-balanced Draine & Li 2007 emission).
        Setting ``add_dust_emission=False`` says the starlight alone is meant, and silences it."""
        if not self._fsps_would_add_dust_emission():
            return
        from .filters import pivot_wavelength
        far = [str(n) for n, f in zip(names, filters) if pivot_wavelength(f) / (1 + z) > DUST_EMISSION_FROM]
        if far:
            warnings.warn(
                f"get_mags: no dust emission in {', '.join(far)} (rest-frame pivot beyond "
                f"{DUST_EMISSION_FROM / 1e4:g} micron): FSPS adds Draine & Li (2007) dust emission there "
                "by default (add_dust_emission=True), the light the dust absorbs re-emitted, but smnet-sps "
                "models none, so these magnitudes are the attenuated starlight alone, possibly magnitudes "
                "fainter than FSPS's. Set add_dust_emission=False to say that is what you want (and silence "
                "this warning)", UserWarning, stacklevel=3)

    def _igm(self, redshift):
        igm = check_switch(self.params["add_igm_absorption"], "add_igm_absorption", allow_01=True)
        if not igm or redshift <= 0:
            return 1.0
        factor = _scalar("igm_factor", self.params["igm_factor"])
        return igm_transmission(self._get_backend().wavelength, redshift, factor)

    # ---- python-fsps API ----
    def get_spectrum(self, zmet=None, tage=0.0, peraa=False, *, as_spectrum=False):
        """Rest-frame spectrum of the population.

        Parameters
        ----------
        zmet : int, optional, 1-based index into ``zlegend`` (used when ``zcontinuous=0``)
        tage : float [Gyr]; 0 -> every SSP age (``ssp_ages``)
        peraa : bool, L_sun / A (True) or L_sun / Hz (False, FSPS's default), per M_sun formed
            (per the tabular SFH's mass for ``sfh=3``)
        as_spectrum : bool, return a ``specutils.Spectrum`` (with ``meta``) instead of ``(wave, spec)``

        Returns
        -------
        wavelengths [A] (n_wave,), spectrum (n_wave,) or (n_ages, n_wave). IGM absorption at ``zred`` is
        included when ``add_igm_absorption`` is on, as in FSPS.
        """
        peraa = check_switch(peraa, "peraa", allow_01=True)    # "False" gave L_sun / A as if True
        if zmet is not None:
            self.params["zmet"] = zmet
        results, full = self._results_for(tage)
        self._warn_older_than_universe(tage, _scalar("zred", self.params["zred"]))
        self._warn_no_dust_emission_in_spectrum()
        trans = self._igm(_scalar("zred", self.params["zred"]))
        flam = np.array([r["flux"] for r in results]) * trans        # L_sun / A
        wave = self.wavelengths
        w_rest = self._get_backend().wavelength
        spec = flam if peraa else flam * w_rest ** 2 / C_ANGSTROM    # L_nu = L_lambda lambda^2 / c
        spec = spec if full else spec[0]
        if not as_spectrum:
            return wave, spec
        from specutils import Spectrum
        unit = SSP_UNIT if peraa else u.L_sun / u.Hz
        return Spectrum(flux=spec * unit, spectral_axis=wave * u.AA, meta=self._meta(results, full, wave))

    def _meta(self, results, full, wave):
        """The spectrum's meta: the population's figures, and the medium and LSF of its axis ``wave`` [A]
        under the keys every output uses (``wavelength_medium``, ``lsf_fwhm``, ``lsf_shape``), which
        :func:`smnet_sps.medium.to_medium` reads."""
        from .lsf import lsf_meta
        from .medium import FLUX_MEDIUM_KEY
        pick = (lambda k: np.array([r[k] for r in results])) if full else (lambda k: results[0][k])
        with np.errstate(divide="ignore"):                   # no stars yet (tage <= sf_start): -inf
            log_lbol = np.log10(pick("lbol"))
        # mass_stars (surviving stars only) beside FSPS's stellar_mass (with remnants when
        # add_stellar_remnants): ssp_photometry's M/L is stars only (it read 0.598 for 0.454 M_sun at 10 Gyr)
        # a tabular SFH is not normalised (as FSPS): its spectrum is that of all formed_mass (5e9 M_sun for
        # 1 M_sun/yr over 5 Gyr), which "per M_sun formed" misstated
        units = ("for the tabular SFH's formed mass (meta formed_mass, M_sun), not per M_sun formed"
                 if _scalar("sfh", self.params["sfh"], int) == 3 else "per M_sun formed")
        meta = {"tage_gyr": pick("tage"), "stellar_mass": pick("stellar_mass"),
                "mass_stars": pick("mass_stars"), "mass_remnants": pick("mass_remnants"),
                "formed_mass": pick("formed"),
                "log_lbol": log_lbol, "sfr": pick("sfr"), "units": units,
                "isochrones": self.isochrone_set.name, "generator": self._get_backend().generator.name,
                **lsf_meta(wave, "air" if self.vactoair_flag else "vacuum"),
                # L_lambda per vacuum Angstrom also on vactoair_flag's air axis (relabelled only, as FSPS):
                # to_medium / magnitudes() then change only the axis
                FLUX_MEDIUM_KEY: "vacuum"}
        sigma, velocity, lo, hi = self._smoothing()
        if sigma > 0:         # the LSF is no longer the bare box: say what was added on top of it
            meta.update({"sigma_smooth": sigma, "smooth_velocity": velocity, "min_wave_smooth": lo,
                         "max_wave_smooth": hi,
                         "lsf_shape": "box (lsf_fwhm), convolved with a Gaussian of sigma_smooth ("
                                      + ("km/s" if velocity else "Angstrom") + ") at rest-frame "
                                      "min_wave_smooth-max_wave_smooth"})
        if self._lsf_fwhm() is not None:
            meta["lsf_shape"] = meta["lsf_shape"] + ", convolved with set_lsf's Gaussian (km/s, rest frame)"
        return meta

    def get_observed_spectrum(self, tage=0.0, redshift=None, *, cosmology=None, as_spectrum=True):
        """The spectrum an observer sees: f_lambda [erg s^-1 cm^-2 A^-1] per M_sun formed (for the table's
        formed mass with ``sfh=3``), observed frame.

        At redshift z > 0: lambda_obs = lambda (1 + z), f = L_lambda / (4 pi d_L^2 (1 + z)) with d_L from
        ``cosmology`` (default: this population's), IGM absorption when ``add_igm_absorption`` is on. At z = 0
        the population is placed at 10 pc. Returns a ``specutils.Spectrum`` (or ``(wave, flux)`` arrays).
        """
        from .constants import L_SUN, PC_CM
        z = _scalar("zred", self.params["zred"]) if redshift is None else _scalar("redshift", redshift)
        if z < 0:
            raise ValueError(f"redshift must be >= 0; got {z}")
        results, full = self._results_for(tage)
        cosmo = as_cosmology(cosmology, default=self.cosmology)
        self._warn_older_than_universe(tage, z, cosmo)
        self._warn_no_dust_emission_in_spectrum("get_observed_spectrum")     # the same mid-IR light missing
        d = cosmo.luminosity_distance(z).to_value(u.cm) if z > 0 else 10 * PC_CM
        flam = np.array([r["flux"] for r in results]) * self._igm(z) * L_SUN / (4 * np.pi * d ** 2) / (1 + z)
        wave = np.asarray(self._get_backend().wavelength, float) * (1 + z)      # vacuum, observed frame
        if self.vactoair_flag:        # the air index at the wavelength the light is observed at, not at rest
            from .medium import axis_vacuum_to_air
            wave = axis_vacuum_to_air(wave)
        flam = flam if full else flam[0]
        if not as_spectrum:
            return wave, flam
        from specutils import Spectrum
        meta = self._meta(results, full, wave)
        meta.update({"redshift": z, "luminosity_distance_cm": d,
                     "cosmology": str(getattr(cosmo, "name", cosmo))})
        return Spectrum(flux=flam * u.Unit("erg s-1 cm-2 AA-1"), spectral_axis=wave * u.AA, meta=meta)

    def get_mags(self, zmet=None, tage=0.0, redshift=None, bands=None):
        """Magnitudes per M_sun formed (for the table's formed mass with ``sfh=3``; AB, or Vega with
        ``compute_vega_mags=True``).

        redshift None -> ``zred``. At 0: absolute magnitudes (10 pc); > 0: apparent observed-frame magnitudes
        at the luminosity distance of ``cosmology``. ``bands``: FSPS names (``available_bands``) or any
        speclite / sedpy filter name; None -> every band of ``available_bands`` inside the observed
        spectrum, in that order. Returns (n_bands,) or (n_ages, n_bands); a band without flux (no stars yet:
        the ``tage=0`` table's ages before ``sf_start``, or a tabular SFH before its start; or blanked by the
        IGM at high z) gets :data:`EMPTY_MAGNITUDE` (99, as FSPS). A single ``tage`` before ``sf_start``
        raises ``ValueError``.
        """
        from .photometry import magnitudes
        if zmet is not None:
            self.params["zmet"] = zmet
        z = _scalar("zred", self.params["zred"]) if redshift is None else _scalar("redshift", redshift)
        if redshift is not None and z != _scalar("zred", self.params["zred"]) and self.params["zred"] > 0:
            warnings.warn(f"redshift={z} differs from zred={self.params['zred']}", UserWarning, stacklevel=2)
        tage = _plain_value("tage", tage)
        self._warn_older_than_universe(tage, z)
        if bands is None:                     # every FSPS band that the observed spectrum covers
            from .filters import get_bandpass
            from .photometry import _bandpass_support
            w = self._get_backend().wavelength * (1 + z)
            names = [b for b in self.available_bands
                     if w[0] <= _bandpass_support(get_bandpass(FSPS_BANDS[b])[1])[0]
                     and _bandpass_support(get_bandpass(FSPS_BANDS[b])[1])[1] <= w[-1]]
        elif isinstance(bands, str):
            names = [bands]
        else:
            try:
                names = list(bands)
            except TypeError:               # bands=5 failed with "'int' object is not iterable"
                raise ValueError(f"bands must be a band name or a list of names (available_bands, or "
                                 f"speclite / sedpy filter names); got {bands!r}") from None
        filters = [FSPS_BANDS.get(str(b).lower(), b) for b in names]
        results, full = self._results_for(tage)
        flam = np.array([r["flux"] for r in results]) * self._igm(z)
        wave = self._get_backend().wavelength
        system = "Vega" if self.compute_vega_mags else "AB"
        # a band without flux (no stars formed yet: the tage=0 table before sf_start, a tabular SFH that
        # starts later; or a band the IGM blanks at high z) has no magnitude: EMPTY_MAGNITUDE, as FSPS writes
        # where the band flux is below its tiny_number; magnitudes() refuses zero flux, and one such row or
        # band made the whole table fail
        formed = np.array([r["formed"] > 0 and np.any(r["flux"] > 0) for r in results])
        mags = np.full((len(results), len(filters)), EMPTY_MAGNITUDE)
        if formed.any():
            got = magnitudes((wave * u.AA, flam[formed] * SSP_UNIT), filters, system=system, redshift=z,
                             cosmology=self.cosmology, _dark_is_inf=True, _array=True)
            mags[formed] = np.where(np.isfinite(got) & (got < EMPTY_MAGNITUDE), got, EMPTY_MAGNITUDE)
        self._warn_no_dust_emission(names, filters, z)
        return mags if full else mags[0]

    def set_tabular_sfh(self, age, sfr, Z=None):
        """Tabular SFH for ``sfh=3``: ``age`` [Gyr since the big bang, increasing], ``sfr`` [M_sun/yr];
        piecewise linear in time, zero outside the table; Quantities are converted to these units (another
        unit raises ValueError). Multi-metallicity tables (``Z``) are not available."""
        if Z is not None:
            raise ValueError("multi-metallicity tabular SFHs (Z=...) are not available; the population has "
                             "one metallicity (logzsol / zmet)")
        self._tabular = check_tabular(age, sfr)
        if _scalar("sfh", self.params["sfh"], int) == 3:
            self.params.dirtiness = max(1, self.params.dirtiness)
            self.params.changed.add("set_tabular_sfh")

    def sfr_avg(self, times=None, dt=0.1):
        """python-fsps's sfr_avg: the SFR [M_sun / yr] averaged over the ``dt`` [Gyr] before ``times`` [Gyr,
        forward times as ``tage``; default ``tage``]; the same shape as ``times`` (a float for one).

        sfh 1 and 4: per M_sun formed by ``tage`` (by the oldest SSP age when ``tage`` = 0, as python-fsps);
        sfh 3: the table's own M_sun / yr. As python-fsps: 0 for ``times > tage``, NaN where the window
        starts before ``sf_start`` (sfh 1, 4), a burst counts when ``times - dt < tburst <= times``.
        python-fsps refuses ``sf_trunc > 0`` and sfh 3; here they are averaged as the spectra form them.
        sfh 0 (an SSP) raises ValueError. Quantities are converted to Gyr.
        """
        p = self.params
        sfh = _scalar("sfh", p["sfh"], int)
        if sfh not in (1, 3, 4):
            raise ValueError(f"sfr_avg needs a star-formation history (sfh 1, 3 or 4); got sfh={sfh}, an SSP "
                             "forms all its mass at once")
        tage = _scalar("tage", p["tage"]) or 10.0 ** (self.ssp_ages[-1] - 9)
        dt = _number_in("dt", dt, u.Gyr)           # a size-1 array too (python-fsps broadcasts it)
        times = _numbers_in("times", tage if times is None else times, u.Gyr)
        if not dt > 0:
            raise ValueError(f"dt must be a time interval > 0 [Gyr]; got {dt}")
        history = self._history(sfh, tage)
        window = dt * 1e9                                   # [yr]
        mass = [history.mass_between(t, t + window) for t in (tage - times.ravel()) * 1e9]
        avg = np.where(times > tage, 0.0, np.reshape(mass, times.shape) / window)
        if sfh != 3:
            avg = np.where(times - dt < _scalar("sf_start", p["sf_start"]), np.nan, avg)
        return float(avg) if avg.ndim == 0 else avg

    def smoothspec(self, wave, spec, sigma, minw=None, maxw=None):
        """python-fsps's smoothspec: ``spec`` (n,) or (..., n), any unit (kept), on ``wave`` [A, increasing,
        any sampling] smoothed as ``sigma_smooth`` smooths a spectrum: a Gaussian of dispersion ``sigma``
        [km/s with ``smooth_velocity`` on (sigma_lambda = lambda sigma / c), A with it off] at the pixels
        between ``minw`` and ``maxw`` [A] (default: all of ``wave``; ``minw`` >= ``maxw`` is a ValueError),
        the others unchanged. ``sigma`` 0 gives a copy; negative or NaN is a ValueError. Returns the smoothed
        spectrum on ``wave``."""
        from .lsf import _as_aa
        velocity = check_switch(self.params["smooth_velocity"], "smooth_velocity", allow_01=True)
        wave = _as_aa(wave)
        sigma = _number_in("sigma", sigma, u.km / u.s if velocity else u.AA)
        if sigma < 0:
            raise ValueError(f"sigma is a Gaussian dispersion >= 0 (km/s, or A with smooth_velocity off); "
                             f"got {sigma}")
        lo = wave[0] if minw is None else _number_in("minw", minw, u.AA)
        hi = wave[-1] if maxw is None else _number_in("maxw", maxw, u.AA)
        if not lo < hi:         # FSPS smooths no pixel then (silently); sigma_smooth's window refuses it
            raise ValueError(f"minw must be below maxw [Angstrom] (the window smoothed; by default the ends "
                             f"of wave); got minw={lo!r}, maxw={hi!r}")
        if np.shape(spec)[-1:] != wave.shape:
            raise ValueError(f"spec must have one value per wavelength ({wave.size}) on its last axis; got "
                             f"shape {np.shape(spec)}")
        if sigma == 0:
            return spec.copy() if isinstance(spec, u.Quantity) else np.array(spec, float)
        return _gaussian_smooth(wave, spec, sigma, velocity, lo, hi)

    def filter_data(self):
        """python-fsps's filter_data, for :attr:`available_bands` in that order (alphabetical; FSPS's is its
        filter index): ``(lambda_eff, magvega, magsun)``, each an array (n_bands,).

        * lambda_eff [A]: the pivot wavelength sqrt(int T l dl / int T / l dl), as FSPS's filter_leff.
        * magvega [mag]: the AB magnitude of Vega (CALSPEC alpha_lyr_stis_011), the offset of this class's
          Vega magnitudes: m_Vega = m_AB - magvega (:meth:`get_mags`). FSPS's Vega system keeps V in AB, so
          its magvega is relative to V (V's entry is 0); here V's is V_AB of Vega.
        * magsun [mag]: absolute magnitude of the Sun (CALSPEC sun_reference_stis_001 at 10 pc), AB, or Vega
          with ``compute_vega_mags``; NaN where that spectrum (1195 A - 2.70 micron) does not cover the band
          (IRAC, WISE, MIPS, PACS, JWST F277W-F444W).
        """
        from .filters import pivot_wavelength
        from .photometry import FLAM_UNIT, magnitudes, sun_absolute_magnitudes, vega_spectrum
        names = [FSPS_BANDS[b] for b in self.available_bands]
        lambda_eff = np.array([pivot_wavelength(n) for n in names])
        wv, fv = vega_spectrum()
        magvega = magnitudes((wv * u.AA, fv * FLAM_UNIT), names, system="AB", _array=True)[0]
        with warnings.catch_warnings():        # the bands beyond the Sun's spectrum: NaN, as documented
            warnings.filterwarnings("ignore", message="no solar magnitude")
            sun = sun_absolute_magnitudes(names, "Vega" if self.compute_vega_mags else "AB")
        return lambda_eff, np.asarray(magvega, float), np.array([sun[n] for n in names])

    def set_lsf(self, wave, sigma, wmin=None, wmax=None):
        """python-fsps's set_lsf: a Gaussian line-spread function of dispersion ``sigma`` [km/s, >= 0; 0: none
        there] at ``wave`` [A, increasing, in the medium of :attr:`wavelengths`], interpolated linearly (held
        beyond its ends) and applied between ``wmin`` and ``wmax`` [A] (default: the ends of ``wave``) when
        ``smooth_lsf`` is on (it needs ``smooth_velocity``). As FSPS it smooths every SSP, before dust and
        ``sigma_smooth``, on top of the model's own box LSF (its 10-20 A pixels: sigma ~350 km/s at 5,000 A,
        so a narrower instrumental LSF changes little)."""
        from .lsf import _as_aa
        wave = _as_aa(wave)
        sigma = _numbers_in("sigma", sigma, u.km / u.s)
        if sigma.shape != wave.shape or np.any(sigma < 0):
            raise ValueError(f"sigma [km/s] must be >= 0, one per wavelength ({wave.size}); got shape "
                             f"{sigma.shape}, min {sigma.min() if sigma.size else None}")
        lo = wave[0] if wmin is None else _number_in("wmin", wmin, u.AA)
        hi = wave[-1] if wmax is None else _number_in("wmax", wmax, u.AA)
        if not lo < hi:
            raise ValueError(f"wmin must be below wmax [A]; got {lo}, {hi}")
        # its own read-only copies, as set_tabular_sfh keeps: the caller's wave array was kept, so editing it
        # afterwards (wave /= 1.5) moved the LSF of ages computed later but not of those cached (31 % apart)
        wave, sigma = np.array(wave, float), np.array(sigma, float)
        wave.flags.writeable = sigma.flags.writeable = False
        self._lsf = (wave, sigma, lo, hi)
        self.params.dirtiness = 2                      # SSP-level, as python-fsps: every result is stale
        self.params.changed.add("set_lsf")
        for name in ("smooth_lsf", "smooth_velocity"):
            if not check_switch(self.params[name], name, allow_01=True):
                warnings.warn(f"set_lsf: the LSF takes effect only with {name}=True", UserWarning,
                              stacklevel=2)

    # ---- properties of the last computation (as python-fsps) ----
    def _stat(self, key):
        with self._lock:            # another thread's call starts by clearing _last
            if self._last is None or self.params.dirty:
                self._results_for(self.params["tage"])
            out, full = self._last
        vals = np.array([r[key] for r in out], float)
        return vals if full else float(vals[0])

    @property
    def stellar_mass(self):
        """Surviving stars + remnants [M_sun per M_sun formed; M_sun of the whole ``formed_mass`` for sfh=3,
        whose table is not normalised] (stars only if add_stellar_remnants=False)."""
        return self._stat("stellar_mass")

    @property
    def formed_mass(self):
        """Mass formed by tage [M_sun]: 1 for sfh 0, 1, 4 (in the tage=0 table of sfh 1, 4 the share of the
        history's 1 M_sun formed by each age, as FSPS); the integral of the table for sfh=3."""
        return self._stat("formed")

    @property
    def log_lbol(self):
        """log10 bolometric luminosity of the stars (before dust) [L_sun per M_sun formed; L_sun of the whole
        ``formed_mass`` for sfh=3]."""
        with np.errstate(divide="ignore"):
            return np.log10(self._stat("lbol"))

    @property
    def sfr(self):
        """Current star-formation rate [M_sun / yr per M_sun formed; M_sun / yr, the table's, for sfh=3]
        (0 for an SSP)."""
        return self._stat("sfr")

    @property
    def log_age(self):
        """log10(age / yr) of the last computed population(s)."""
        return np.log10(self._stat("tage") * 1e9)

    @property
    def dust_mass(self):
        return 0.0 * self._stat("lbol")

    def __repr__(self):
        return (f"StellarPopulation(isochrones={self.isochrone_set.name!r}, sfh={self.params['sfh']}, "
                f"zcontinuous={self._zcontinuous}, imf_type={self.params['imf_type']}, "
                f"dust_type={self.params['dust_type']})")


# ---- prospector -------------------------------------------------------------------------------------------
_PROSPECTOR_HOME = Path(__file__).parent / "data" / "prospector_sps_home"


def prospector_basis(kind="CSPSpecBasis", zcontinuous=1, reserved_params=None, compute_vega_mags=False,
                     vactoair_flag=False, population_kwargs=None, **kwargs):
    """A prospector source basis (``prospect.sources.<kind>``) whose ``.ssp`` is a :class:`StellarPopulation`.

    kind : "CSPSpecBasis" (parametric SFHs, any number of components), "FastStepBasis" (non-parametric
        binned SFH through ``set_tabular_sfh``) or "SSPBasis"
    population_kwargs : dict for :class:`StellarPopulation` (``generator``, ``isochrones``, ...)
    **kwargs : initial parameters, as for prospector's own constructors

    prospector's ``SpecModel`` reads the emission-line list from ``$SPS_HOME/data/emlines_info.dat``; when
    ``SPS_HOME`` is unset it is pointed at an empty list shipped with smnet-sps (no nebular emission).
    """
    from prospect import sources
    if kind not in ("CSPSpecBasis", "FastStepBasis", "SSPBasis"):
        raise ValueError(f"kind must be 'CSPSpecBasis', 'FastStepBasis' or 'SSPBasis'; got {kind!r}")
    os.environ.setdefault("SPS_HOME", str(_PROSPECTOR_HOME))
    cls = getattr(sources, kind)
    basis = cls.__new__(cls)
    basis.ssp = StellarPopulation(compute_vega_mags=compute_vega_mags, vactoair_flag=vactoair_flag,
                                  zcontinuous=zcontinuous, **(population_kwargs or {}))
    if kind == "CSPSpecBasis":
        basis.reserved_params = ["sigma_smooth"] if reserved_params is None else reserved_params
    else:                                   # SSPBasis.__init__ without its fsps import
        basis.interp_type, basis.mint_log, basis.flux_interp = "logarithmic", -3, "linear"
        basis.ssp.params["sfh"] = 0
        basis.reserved_params = ["tage", "sigma_smooth"] if reserved_params is None else reserved_params
    basis.params = {}
    basis.update(**kwargs)
    return basis
