"""Simple stellar populations: ``ssp_spectrum(age, Z)`` and ``ssp_grid(ages, Zs)`` (DSPS layout).

An SSP is the IMF-weighted sum of the spectra of the stars on one isochrone:

    L_lambda(t, Z) = sum_i w_i L_i f_i(lambda)       [L_sun / A per M_sun formed]

with FSPS's point weights ``w_i`` (:mod:`smnet_sps.imf`), the isochrone luminosities ``L_i``, and the
stellar spectra ``f_i`` from the :class:`~smnet_sps.backend.StellarLibraryBackend`, each integrating to the
share of its star's light a blackbody of its Teff emits on the wavelength grid (so the spectrum integrates to
the isochrone's L_bol minus the luminosity of stars without a spectrum, reported as ``missing_fraction``, and
minus the light beyond the grid, ``beyond_grid_fraction``: < 7.5e-4 on the default 91 A - 160 um grid (at
most 7.37e-4, PARSEC Z = 0.008 at log t 6.5; 6.26e-4 at solar, 3.7e-4 with Padova; < 1e-6 at PARSEC Z <=
0.0005), 0.90 of a 3 Myr SSP on a 3,000 A - 10 um grid). Stars outside the generator's coverage are, by
default (``outside="extrapolate"``), still generated (a smooth, luminosity-conserving extrapolation of the
learned manifold); the fraction of L_bol they carry is always reported as ``outside_fraction``. The
generator's metallicity is [M/H] = log10(Z / Zsun) with the family's Zsun (PARSEC 0.0152, Padova 0.019).

Between tabulated ages and metallicities we interpolate like FSPS, from the four neighbouring tabulated
SSPs: the spectrum and every bookkeeping quantity (L_bol, masses, per-phase luminosity, missing
luminosity) are interpolated log-linearly (geometrically) in log age and masses linearly -- which
reproduces FSPS's own intermediate ages (time_res_incr=2) to 5e-5 dex -- and then linearly in the spectra
with weights linear in log Z. At a tabulated node this is exactly the tabulated SSP.
"""
from __future__ import annotations

import os
import threading
import time
import weakref
from collections import OrderedDict
from typing import NamedTuple

import numpy as np
from astropy import units as u

from .backend import STATUS, StellarLibraryBackend, _trapz_weights
from .constants import C_ANGSTROM, SSP_UNIT
from .generator import _logz_value, _refuse_masked, column_quantity
from .imf import (first_interval_excess, get_imf, imf_weights, imf_weights_many, remnant_mass, tpagb_factor,
                  uncovered_mass)
from .isochrones import PHASE_NAMES, UNFLAGGED_PHASE, resolve_isochrones
from .lsf import lsf_meta
from .medium import _gray_hint
from .progress import want_progress

__all__ = ["ssp_spectrum", "ssp_grid", "SSPGrid", "DSPSArrays", "is_dsps_ssp_data", "check_ssp_flux_scale",
           "get_backend", "parse_age", "save_ssp_grid", "load_ssp_grid", "clear_ssp_cache", "SSP_FLUX_UNIT"]

OUTSIDE_STATUSES = [STATUS[k] for k in ("blackbody", "extrapolated", "missing")]
SSP_FLUX_UNIT = SSP_UNIT                           # L_sun / Angstrom, per M_sun formed
# share of L_bol from stars outside the generator's coverage above which an SSP warns (CoverageWarning):
# the flag meta["outside_fraction"] is always there, but a spectrum made mostly of extrapolations (PARSEC's
# Z = 0.06: all of it) should not pass unnoticed
OUTSIDE_WARN_FRACTION = 0.5
_PHASES = sorted(PHASE_NAMES)                      # FSPS phase codes, -1 .. 9
_PHASE_INDEX = {p: i for i, p in enumerate(_PHASES)}
_BACKENDS = {}
_BACKENDS_LOCK = threading.Lock()
_DEFAULT_GENERATOR = {}
_NAMED_GENERATORS = {}               # key -> (version of the model's files or None, generator)
# Tabulated SSPs, one entry per isochrone (family, iz, ia, IMF, backend, by_phase): a new (age, Z) is
# interpolated from up to four of them, so neighbouring requests share their isochrones, and a full
# ssp_grid() leaves every tabulated SSP of its family here (FSPS likewise tabulates every isochrone's SSP
# once and interpolates between them). Bounded in bytes (a PARSEC grid without by_phase: 14 MB).
_SSP_CACHE = OrderedDict()
_SSP_CACHE_BYTES = 256 * 2**20
_SSP_CACHE_USED = [0]
# threads computing SSPs at once (a thread pool, a multithreaded Dask worker) share the cache and its byte
# count; they are read and changed under this lock (the SSPs themselves are computed outside it)
_SSP_CACHE_LOCK = threading.Lock()
_KEY_LOCKS = {}
_KEY_LOCKS_LOCK = threading.Lock()


def _key_lock(key):
    """The lock of one cache key (a model, a population's grid): the first thread to want it loads it while
    the others wanting the same key wait for that result (two threads loaded two copies, each with caches of
    its own); other keys load in parallel. Re-entrant: a load may resolve another name in the same thread."""
    with _KEY_LOCKS_LOCK:
        return _KEY_LOCKS.setdefault(key, threading.RLock())


# ---- inputs -----------------------------------------------------------------------------------
def parse_age(age):
    """Age -> log10(age / yr). Accepts a time Quantity, a string such as "10 Gyr", or years as a number."""
    if age is None:
        raise ValueError("age is required: give a time such as 10 * u.Gyr, '500 Myr' or 1e9 (years)")
    _refuse_masked(age, "age")           # np.asarray drops the mask: the hidden age would be computed
    # a table column in Gyr was read as years (np.asarray drops units)
    age = column_quantity(age, "age", "a time (e.g. u.Gyr) or a log age (u.dex(u.yr))", time=True)
    if isinstance(age, str):
        try:
            age = u.Quantity(age)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"cannot parse age {age!r}; use e.g. '10 Gyr', '500 Myr' or '1e9 yr'") from exc
        if age.unit == u.dimensionless_unscaled:
            age = age.value
    if isinstance(age, u.Quantity):
        try:
            age = age.to_value(u.yr)
        except u.UnitConversionError as exc:
            raise ValueError(f"age must be a time (e.g. Gyr, Myr, yr); got unit {age.unit}"
                             f"{_gray_hint(age.unit)}") from exc
    if isinstance(age, (list, tuple)) and any(isinstance(a, str) for a in age):
        age = [parse_age(a) for a in age]                # each string as a single age, e.g. "500 Myr"
        return np.asarray(age, float)
    if isinstance(age, (list, tuple)) and any(isinstance(a, u.Quantity) for a in age):
        try:                                   # a list of time Quantities, e.g. [1 * u.Gyr, 500 * u.Myr]
            age = u.Quantity(age).to_value(u.yr)
        except (u.UnitsError, TypeError, ValueError) as exc:
            raise ValueError(f"ages given as a list must all be times (e.g. Gyr, Myr, yr) or all numbers of "
                             f"years; got {age!r}") from exc
    if isinstance(age, (bool, np.bool_)) or (isinstance(age, np.ndarray) and age.dtype == bool):
        raise ValueError("age must be a time or a number of years, not a boolean")
    try:
        age = np.asarray(age, float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"age must be a time or a number of years; got {type(age).__name__}") from exc
    if not np.all(np.isfinite(age)):
        raise ValueError("age must be a finite, positive time; got NaN or inf")
    if (age <= 0).any():
        raise ValueError(f"age must be positive; got {np.atleast_1d(age)[np.atleast_1d(age) <= 0][0]:g} yr")
    return np.log10(age)


def cli_age(text, option="--age"):
    """An age typed on the command line -> a time Quantity; a unit is required (a bare '1' would be 1 yr
    here but 1 Gyr to many users, so neither is guessed)."""
    try:
        age = u.Quantity(str(text))
    except (TypeError, ValueError):
        raise ValueError(f"cannot read {option} {text!r}; give a time with its unit, e.g. 10Gyr, '500 Myr' "
                         "or 1e9yr") from None
    if age.unit == u.dimensionless_unscaled:
        from .cli import bare_age_hint
        raise ValueError(f"{option} {text!r} has no unit; give one, e.g. {bare_age_hint(text, age.value)}")
    return age


def cli_ages(texts, option="--ages", n_ages=None):
    """Ages typed on the command line -> ages [yr] (:func:`smnet_sps.cli.parse_ages_option`, the grammar
    ``mags`` reads too); None stays None (all tabulated)."""
    if texts is None:
        return None
    from .cli import parse_ages_option
    return parse_ages_option(texts, n_ages, option)


def cli_metallicities(args, iso):
    """``--Z`` or ``--logzsol`` values (one, several, or comma lists) -> metal mass fractions checked against
    the family's range by :func:`_resolve_z` (the one rule of every SSP entry point; the command line had its
    own Zsun x 10**logzsol), None for neither. Checked here, in the options' names: ``ssp --Z 0.01 --logzsol
    0`` went on to ``_resolve_z``, whose "give Z ... or logzsol" named no option typed."""
    from .cli import parse_numbers_option
    if args.Z is not None and args.logzsol is not None:
        raise ValueError("give --Z (metal mass fraction) or --logzsol (log10 Z/Zsun), not both")
    if args.Z is None and args.logzsol is None:
        return None
    try:
        Z = None if args.Z is None else parse_numbers_option(args.Z, "--Z")
        logzsol = None if args.logzsol is None else parse_numbers_option(args.logzsol, "--logzsol")
    except ValueError as exc:           # a NaN or a word: the error says what is valid, as _resolve_z's do
        raise ValueError(f"{exc}; valid --Z for {iso.name} is {iso.z_range_text()} (--logzsol "
                         f"{iso.logzsol_range_text()})") from None
    return np.atleast_1d(_resolve_z(iso, Z, logzsol, z_name="--Z", logzsol_name="--logzsol")).astype(float)


def _z_in_grid(iso, logzsol):
    """Whether ``logzsol`` (log10 Z / Zsun) is a Z in ``iso``'s range, as :meth:`check_z` rules."""
    with np.errstate(over="ignore"):
        try:
            iso.check_z(iso.zsun * np.power(10.0, float(logzsol)))
        except ValueError:
            return False
    return True


def cli_isochrones(name, option="--isochrones"):
    """An isochrone family named on the command line, or the path of an isochrone file (a CMD output or a
    converted ``.npz``: :func:`smnet_sps.isochrones.resolve_isochrones`) -> its IsochroneSet, loaded before
    any slow work.

    The library raises ImportError when MIST's optional package is missing (the right type for code); on
    the command line that is an input the user can fix, so it becomes a ValueError: one line, exit status 1.
    """
    try:
        return resolve_isochrones(name)
    except ImportError as exc:
        raise ValueError(f"{option} {name}: {exc}") from exc


def _age_range(iso):
    return f"{iso.age_range_text()} for {iso.name}"


def _log_ages(age, iso):
    """Parsed, range-checked log10(age / yr); every error names the family's valid range."""
    try:
        log_age = parse_age(age)
    except ValueError as exc:
        raise ValueError(f"{exc}; valid ages: {_age_range(iso)}") from None
    return iso.check_age(log_age)          # a set of one age: an age within its printed digits is it


def _as_float_array(value, name):
    _refuse_masked(value, name)
    # a table column in percent was read as 1.52 for Z 0.0152
    value = column_quantity(value, name, "a dimensionless one (e.g. u.percent)")
    if isinstance(value, u.Quantity):
        if value.unit.physical_type != "dimensionless":
            raise ValueError(f"{name} is dimensionless; got unit {value.unit}")
        value = value.to_value(u.dimensionless_unscaled)
    if value is None or isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a number; got {value!r}")
    try:
        return np.asarray(value, float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number; got {type(value).__name__}") from exc


def _scalar(value, name):
    """One value: sequences and arrays are refused (ssp_spectrum takes one age and one Z; ssp_grid many)."""
    if isinstance(value, (list, tuple, set, dict)):
        raise ValueError(f"ssp_spectrum takes one {name}; got a {type(value).__name__}. Use "
                         "ssp_grid(ages, Zs) for many ages or metallicities")
    if isinstance(value, (np.ndarray, u.Quantity)) and np.shape(value) != ():
        raise ValueError(f"ssp_spectrum takes one {name}; got an array of shape {np.shape(value)}. Use "
                         "ssp_grid(ages, Zs) for many ages or metallicities")
    return value


def _resolve_z(iso, Z, logzsol, z_name="Z", logzsol_name="logzsol"):
    """Metal mass fraction(s) from ``Z`` or ``logzsol`` (log10 Z / Zsun with the family's Zsun), checked
    against the family's range: the one rule of every SSP entry point (``z_name``, ``logzsol_name``: the
    caller's names, "Zs" for ssp_grid, "--Z" / "--logzsol" on the command line). A logzsol outside the
    range is named as given, not as the Z it makes."""
    if Z is not None and logzsol is not None:
        raise ValueError(f"give {z_name} (metal mass fraction) or {logzsol_name} (log10 Z/Zsun), not both")
    if Z is None and logzsol is None and iso.Z.size == 1:
        Z = iso.Z[0]                  # neither given: solar, but a set of one Z has that Z only
    if Z is None:
        # a table column in dex is its Quantity (it was refused as "logzsol is dimensionless; got unit dex");
        # a masked one is refused first (column_quantity drops the mask)
        _refuse_masked(logzsol, "logzsol")
        logzsol = column_quantity(logzsol, "logzsol", "u.dex")
        if isinstance(logzsol, u.Quantity):
            # a log quantity's number in dex (u.Dex(-1) was read as its linear value 0.1: Z 12.6x too high)
            try:
                logzsol = _logz_value(logzsol)
            except ValueError:
                raise ValueError("logzsol (log10 Z / Zsun) must be a number or a u.dex quantity; got unit "
                                 f"{logzsol.unit}") from None
        logzsol = _as_float_array(0.0 if logzsol is None else logzsol, "logzsol")
        if not np.all(np.isfinite(logzsol)):
            raise ValueError(f"logzsol must be finite; valid logzsol for {iso.name} is "
                             f"{iso.logzsol_range_text()}")
        # speak in the logzsol given: logzsol=-5 was "Z = 1.52e-07 outside the grid", a number never typed
        # (a set of one Z names the logzsol in check_z's own message)
        bad = [v for v in np.atleast_1d(logzsol) if not _z_in_grid(iso, v)]
        if bad and iso.Z.size > 1:
            raise ValueError(f"{logzsol_name} {bad[0]:g} outside the {iso.name} isochrone grid: valid "
                             f"{logzsol_name} is {iso.logzsol_range_text()} ({z_name.rstrip('s')} "  # Zs: Z
                             f"{iso.z_range_text()}, Zsun = {iso.zsun:g})")
        with np.errstate(over="ignore"):
            Z = iso.zsun * 10.0**logzsol
    try:
        Z = _as_float_array(Z, "Z")
    except ValueError as exc:
        # Z = -0.5 * u.dex (meant as logzsol) was refused as "Z is dimensionless; got unit dex", naming
        # neither logzsol nor the valid range
        unit = getattr(Z, "unit", None)
        hint = (f" (a log10(Z / Zsun) in dex is logzsol, not Z: Z = {iso.zsun:g} x 10**logzsol)"
                if unit is not None and (unit == u.dex or isinstance(unit, u.LogUnit)) else "")
        raise ValueError(f"{exc}{hint}; valid Z (metal mass fraction) for {iso.name} is "
                         f"{iso.z_range_text()} (logzsol {iso.logzsol_range_text()})") from None
    return iso.check_z(Z)         # a float32 tabulated Z comes back as the table's


def _generator_names():
    """Names of shipped models accepted as ``generator="name"`` (besides a model directory)."""
    from . import neural
    for attr in ("available_generators", "generator_names", "list_generators"):
        fn = getattr(neural, attr, None)
        if callable(fn):
            return list(fn())
    for attr in ("GENERATORS", "MODEL_NAMES", "MODELS", "REGISTRY"):
        reg = getattr(neural, attr, None)
        if reg:
            return list(reg)
    import importlib.util
    return ["default"] + (["semi-empirical"] if importlib.util.find_spec("smnet_sps.semi_empirical") else [])


def _either(choices):
    """'a, b or c': the choices an error message lists."""
    return ", ".join(choices[:-1]) + " or " + choices[-1] if len(choices) > 1 else choices[0]


def _named_generator(name, device, accepts=("a Generator",)):
    """A generator given by name: 'blackbody', a shipped model name, or a model directory (``accepts``: see
    :func:`resolve_generator`)."""
    if name == "blackbody":
        from .generator import BlackbodyGenerator
        return BlackbodyGenerator()
    from .neural import load_generator
    _check_generator(name, accepts)
    allowed = ["blackbody", *_generator_names()]
    try:
        return load_generator(None if name == "default" else name, device=device)
    except FileNotFoundError as exc:
        raise ValueError(f"generator {name!r} is not installed ({exc}); valid: "
                         f"{', '.join(repr(a) for a in allowed)} or a model directory") from exc


def resolve_generator(generator=None, device="auto", accepts=("a Generator",)):
    """The :class:`~smnet_sps.generator.Generator` meant by ``generator``, each name loaded once per device
    (a model directory again when its files change).

    None or ``"default"`` -> the shipped default model; another string: ``"blackbody"``, a shipped model name
    (``"semi-empirical"``) or a model directory (a str or os.PathLike); a Generator is returned as it is.

    ``device``: where a named model (or the default) is loaded: "auto" (CUDA when available, else CPU),
    "cpu", "cuda" or "cuda:N" (:func:`smnet_sps.neural.resolve_device`); each name is loaded once per
    device. Not used for "blackbody" or a Generator passed in.

    ``accepts``: the objects the caller takes besides None, names and directories, as its error messages
    list them (:func:`get_backend`: ``("a Generator", "a StellarLibraryBackend")``; the default names no
    backend, which StellarLibraryBackend's own constructor does not take).
    """
    if isinstance(generator, os.PathLike):      # a pathlib.Path model directory, as its string
        generator = os.fspath(generator)
    if isinstance(generator, str) and generator in ("default", "blackbody"):
        from .neural import warn_if_model_folder_shadowed      # "semi-empirical": load_generator warns
        warn_if_model_folder_shadowed(generator)
    if isinstance(generator, str) and generator == "default":
        generator = None
    if generator is None:
        with _key_lock(("default", device)):
            if device not in _DEFAULT_GENERATOR:
                from .neural import load_generator
                _DEFAULT_GENERATOR[device] = load_generator(device=device)
        return _DEFAULT_GENERATOR[device]
    if isinstance(generator, str):
        key, version = ("name", generator, device), None
        if generator not in ("blackbody", *_generator_names()) and os.path.isdir(generator):
            # a model directory: by its real path and its files' version (a semi-empirical correction's with
            # its base model's), so that a model retrained or replaced there is loaded again (it was served
            # from the first load for the life of the process)
            from .neural import _model_version
            path, version = _model_version(generator)
            key = ("path", path, device)
        with _key_lock(key):
            hit = _NAMED_GENERATORS.get(key)
            if hit is None or hit[0] != version:
                gen = _named_generator(generator, device, accepts)
                if hit is not None:
                    _forget_generator(hit[1])
                _NAMED_GENERATORS[key] = hit = (version, gen)
        return hit[1]
    _check_generator(generator, accepts)
    return generator


def _check_generator(generator, accepts=("a Generator",)):
    """Refuse, loading nothing, a ``generator`` no call can use: neither None, a name, a model directory
    nor a Generator (a number, a list), or a string that is neither a shipped name nor a directory
    (``accepts``: see :func:`resolve_generator`)."""
    from pathlib import Path

    from .generator import Generator
    if isinstance(generator, os.PathLike):      # a pathlib.Path model directory: its string
        generator = os.fspath(generator)
    if isinstance(generator, str):
        allowed = ["blackbody", *_generator_names()]
        if generator not in allowed and not Path(generator).is_dir():
            valid = _either([*map(repr, allowed), "a model directory", "None (the shipped default)",
                             *accepts])
            raise ValueError(f"unknown generator {generator!r}; valid: {valid}")
    elif generator is not None and not isinstance(generator, Generator):
        names = ", ".join(["blackbody", *_generator_names()])
        valid = _either(["None", f"a name ({names})", "a model directory", *accepts])
        raise ValueError(f"generator must be {valid}; got {type(generator).__name__}")


def _forget_generator(gen):
    """Drop the shared backends and cached SSPs of a generator replaced by a new load of its model."""
    with _BACKENDS_LOCK:
        for key in [k for k, b in _BACKENDS.items() if b.generator is gen]:
            del _BACKENDS[key]
    with _SSP_CACHE_LOCK:
        for key in [k for k, v in _SSP_CACHE.items() if v[0] is gen]:
            _SSP_CACHE_USED[0] -= _SSP_CACHE.pop(key)[2]


def _tail_filled(generator):
    """Whether the generator (or the base model it wraps) fills its untrained tails from its training
    nodes (smnet_sps.tail): the far UV of cool stars and the He+-ionising flux depend on it."""
    for gen in (generator, getattr(generator, "base", None)):
        if getattr(gen, "tail", None) is not None:
            return True
    return False


def _weights_sha256(generator):
    """The sha256 of the generator's weights as its model directory records it (config.json
    ``weights_sha256``: a model trained by smnet-sps, the shipped default), or None (the blackbody, a
    released checkpoint, a semi-empirical correction, whose name holds its folder). A name alone told two
    models apart only by their folder's name: a model retrained into models/mine (--overwrite) wrote SSP
    files under the same GENERATR 'mine' as the one it replaced."""
    config = getattr(generator, "config", None)
    sha = config.get("weights_sha256") if isinstance(config, dict) else None
    return sha if isinstance(sha, str) else None


#: what get_backend takes as ``generator`` besides None, names and model directories (its messages say so)
_BACKEND_ACCEPTS = ("a Generator", "a StellarLibraryBackend")


def _check_backend_option(name, value):
    """Check one of :func:`get_backend`'s arguments (``"generator"``, ``"special_phases"``, ``"outside"`` or
    ``"device"``) alone, as get_backend does and with its messages, loading nothing: a ValueError for an
    unknown value, a device unavailable here, a generator that is no name, directory, Generator or backend.
    What depends on two of them (a device other than a Generator's own, an option other than a backend's
    own) and a model that fails to load are found by get_backend."""
    from .backend import OUTSIDE_MODES, SPECIAL_MODES, _check_device
    if name in ("special_phases", "outside"):
        allowed = SPECIAL_MODES if name == "special_phases" else OUTSIDE_MODES
        if not isinstance(value, str) or value not in allowed:
            raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(allowed)}")
    elif name == "device":
        _check_device(value, None, loaded=True)          # a name no generator runs on, or not available here
    elif name == "generator":
        if not isinstance(value, StellarLibraryBackend):
            _check_generator(value, _BACKEND_ACCEPTS)
    else:
        raise ValueError(f"unknown get_backend option {name!r}; valid: generator, special_phases, outside, "
                         "device")


def get_backend(generator=None, special_phases="model", outside="extrapolate", device="auto"):
    """A shared :class:`StellarLibraryBackend` per (generator, options), so repeated SSPs hit its cache.

    ``generator``: None or ``"default"`` -> the shipped default model
    (:func:`smnet_sps.neural.load_generator`), loaded once; another string: ``"blackbody"``, a shipped
    model name (``"semi-empirical"``), or a model directory; or a :class:`~smnet_sps.generator.Generator` /
    :class:`StellarLibraryBackend`. ``special_phases``: "model" or "dedicated"; ``outside``: "extrapolate",
    "blackbody" or "exclude" (:mod:`smnet_sps.backend`). ``device``: "auto" (CUDA when available, else CPU),
    "cpu", "cuda" or "cuda:N", where a model named by ``generator`` is loaded; with "blackbody" it
    must only be a valid device, and with a Generator / backend passed in anything but "auto" must be the
    device it runs on (it is not moved), else a ValueError.
    """
    from .backend import _check_device
    # checked before they key the cache (a list raised TypeError: unhashable), and against a backend passed
    # in, whose own options apply (special_phases="dedicated" was ignored silently, "bogus" too)
    _check_backend_option("special_phases", special_phases)
    _check_backend_option("outside", outside)
    if isinstance(generator, StellarLibraryBackend):
        for name, value, default, own in (
                ("special_phases", special_phases, "model", generator.special_phases),
                ("outside", outside, "extrapolate", generator.outside)):
            if value != default and value != own:
                raise ValueError(f"{name}={value!r} differs from the backend's own {name}={own!r}; make the "
                                 f"backend with it (StellarLibraryBackend(..., {name}={value!r})) or pass "
                                 "the generator instead")
        _check_device(device, generator.generator, loaded=False)
        return generator
    given = generator
    generator = resolve_generator(generator, device, accepts=_BACKEND_ACCEPTS)
    # as StellarLibraryBackend(generator, device=...): device="gpu" with a Generator passed in went through
    _check_device(device, generator, loaded=generator is not given)
    key = (id(generator), special_phases, outside)
    backend = _BACKENDS.get(key)
    if backend is None or backend.generator is not generator:
        made = StellarLibraryBackend(generator, special_phases=special_phases, outside=outside)
        # made outside the lock (quick), kept only if no other thread's got there first: two shared
        # backends of one generator each filled a point cache of their own
        with _BACKENDS_LOCK:
            backend = _BACKENDS.get(key)
            if backend is None or backend.generator is not generator:
                _BACKENDS[key] = backend = made
    return backend


# ---- tabulated SSPs -----------------------------------------------------------------------------
def _isochrone_weights(iso, iz, ia, imf, w=None, rem=None):
    """FSPS weights (TP-AGB re-weighted for Padova) and remnant mass of isochrone (iz, ia); ``w``, ``rem``:
    its IMF weights and remnant mass if already computed."""
    sl = iso.rows(iz, ia)
    c = iso.columns
    w = imf_weights(c["mini"][sl], imf) if w is None else w
    if iso.name == "padova":           # FSPS tpagb_norm_type=2 applies to Padova 2007 only
        w = np.where(c["phase"][sl] == 5, w * tpagb_factor(iso.log_age[ia]), w)
    return sl, w, (remnant_mass(c["mini"][sl].max(), imf) if rem is None else rem)


#: phases that do not end a star's life: an isochrone whose most massive points are in one of them stops
#: short of the stars still alive above it (MIST's -1 is its pre-main sequence; PARSEC's -1 comes later)
_EARLY_PHASES = (0, 1, 2)
#: mass (per M_sun formed) of the stars between such a cut and the IMF's upper limit above which an SSP is
#: flagged: Padova's main sequence ends at 104-119 M_sun at young ages (0.3-0.9 % of the mass) by sampling
TOP_CUT_WARN_MASS = 0.01


def _top_cut(iso, sl, imf):
    """The largest initial mass of the isochrone at rows ``sl`` when the isochrone stops there short of
    stars still alive (its most massive points, within 1 %, in an early phase), with more than
    TOP_CUT_WARN_MASS of the stars formed above it; else 0. Those stars are booked as remnants (as FSPS)."""
    c = iso.columns
    mini, phase = c["mini"][sl], c["phase"][sl]
    top = float(mini[-1])
    if top >= imf.m_up or imf.mass(top, imf.m_up) / imf.mass_formed <= TOP_CUT_WARN_MASS:
        return 0.0
    if iso.phase_names[0] == UNFLAGGED_PHASE:
        # code 0 holds the giants too (Padova): no telling; its hot, compact top at 4-6 Myr (42-70 M_sun)
        # is where its massive stars end, not a cut
        return 0.0
    early = _EARLY_PHASES + ((-1,) if iso.name == "mist" else ())
    return top if np.isin(phase[mini >= 0.99 * top], early).all() else 0.0


def _tabulated(iso, pairs, imf, backend, progress=False, by_phase=False, stats=None):
    """Tabulated SSPs for a list of (iz, ia): flux [L_sun/A/M_sun] and linear bookkeeping quantities.

    All points of all requested isochrones go through one :meth:`StellarLibraryBackend.weighted_sum`:
    deduplicated, then streamed through the generator in batches (bounded memory).
    """
    import scipy.sparse as sp

    c = iso.columns
    n = len(pairs)
    n_ph = len(_PHASES)
    out = {"lbol": np.zeros(n), "mass_stars": np.zeros(n), "mass_remnants": np.zeros(n),
           "phase_lum": np.zeros((n, n_ph)), "n_points": np.zeros(n, int)}
    cols, rows, data, logz_pts = [], [], [], []
    slices = [iso.rows(iz, ia) for iz, ia in pairs]
    # IMF weights of every isochrone in one vectorised pass (the same numbers as one call per isochrone)
    all_w = np.split(imf_weights_many(np.concatenate([c["mini"][sl] for sl in slices]),
                                      [sl.stop - sl.start for sl in slices], imf),
                     np.cumsum([sl.stop - sl.start for sl in slices])[:-1])
    rems = remnant_mass(np.array([c["mini"][sl].max() for sl in slices]), imf)
    # stars below an isochrone that starts above the IMF's low masses (MIST): living, but without light
    out["mass_uncovered"], out["uncovered_to"] = uncovered_mass(
        np.concatenate([c["mini"][sl] for sl in slices]), [sl.stop - sl.start for sl in slices], imf)
    out["top_cut"] = np.array([_top_cut(iso, sl, imf) for sl in slices])
    # FSPS's first interval books the stars below the first point at its mass: counted at their own
    excess = first_interval_excess(np.concatenate([c["mini"][sl] for sl in slices]),
                                   np.concatenate([c["mact"][sl] for sl in slices]),
                                   [sl.stop - sl.start for sl in slices], imf)
    for k, (iz, ia) in enumerate(pairs):
        sl, w, rem = _isochrone_weights(iso, iz, ia, imf, all_w[k], rems[k])
        lum = 10.0 ** c["logl"][sl]
        wl = w * lum
        out["lbol"][k] = wl.sum()
        out["mass_stars"][k] = np.dot(w, c["mact"][sl]) - excess[k] + out["mass_uncovered"][k]
        out["mass_remnants"][k] = rem
        ph_idx = np.searchsorted(_PHASES, c["phase"][sl])
        out["phase_lum"][k] = np.bincount(ph_idx, weights=wl, minlength=n_ph)
        keep = np.flatnonzero(w > 0)                # stars above the IMF's upper limit carry no weight
        out["n_points"][k] = keep.size
        cols.append(np.arange(sl.start, sl.stop)[keep])
        rows.append((k * n_ph + ph_idx[keep]) if by_phase else np.full(keep.size, k))
        data.append(wl[keep])
        logz_pts.append(np.full(keep.size, np.log10(iso.Z[iz] / iso.zsun)))
    bounds = np.cumsum([0] + [kept.size for kept in cols])  # per-isochrone point ranges
    cols = np.concatenate(cols)
    logz_pts = np.concatenate(logz_pts)
    # one row per SSP (or per SSP and phase); columns: the points of all requested isochrones
    n_rows = n * n_ph if by_phase else n
    W = sp.csr_matrix((np.concatenate(data), (np.concatenate(rows), np.arange(cols.size))),
                      shape=(n_rows, cols.size))
    keys = backend.point_keys(c["logt"][cols], c["logg"][cols], logz_pts, c["phase"][cols], c["co"][cols],
                              c["mini"][cols], c["mact"][cols])
    # Points go through the backend's per-point cache when they fit in it (a new SSP, a grid block): isochrone
    # points do not repeat between ages, but the same isochrones with another IMF, by_phase or in a later
    # block of a Dask IMF family reuse them; a large grid streams past the cache.
    flux, covered, status, corr = backend.weighted_sum(keys, W, progress=progress, desc="isochrone points",
                                                       stats=stats)
    # light of stars not generated inside the generator's coverage (extrapolated, blackbody or missing)
    outside = np.asarray(W @ np.isin(status, OUTSIDE_STATUSES).astype(float)).ravel()
    if by_phase:
        out["phase_flux"] = flux.reshape(n, n_ph, -1)
        flux = out["phase_flux"].sum(axis=1)
        covered = covered.reshape(n, n_ph).sum(axis=1)
        outside = outside.reshape(n, n_ph).sum(axis=1)
    out["outside_lum"] = outside
    out["flux"] = flux
    missing = out["lbol"] - covered
    # round-off of the sparse sums must not read as missing light
    out["missing_lum"] = np.where(missing > 1e-10 * out["lbol"], missing, 0.0)
    # per-isochrone summary of the luminosity-conservation factor (NaN where no generator spectrum was used)
    corr_stats = np.full((n, 3), np.nan)
    for k in range(n):
        ck = corr[bounds[k]:bounds[k + 1]]
        ck = ck[np.isfinite(ck)]
        if ck.size:
            corr_stats[k] = ck.min(), np.median(ck), ck.max()
    out["correction"] = corr_stats
    return out


def _correction_summary(corr_stats):
    """min / median (of the per-isochrone medians) / max of the luminosity-conservation factor."""
    c = np.asarray(corr_stats).reshape(-1, 3)
    c = c[np.isfinite(c[:, 0])]
    if not c.size:
        return {}
    return {"min": float(c[:, 0].min()), "median": float(np.median(c[:, 1])), "max": float(c[:, 2].max())}


def clear_ssp_cache():
    """Forget every cached tabulated SSP (they are also dropped, least recently used first, past 256 MB)."""
    with _SSP_CACHE_LOCK:
        _SSP_CACHE.clear()
        _SSP_CACHE_USED[0] = 0


def _tabulated_cached(iso, pairs, imf_obj, imf, backend, by_phase=False, progress=False, stats=None):
    """Tabulated SSPs of ``pairs`` as :func:`_tabulated` returns them, through the per-isochrone cache.

    Only isochrones not in the cache are computed (in one batched pass). A callable IMF is not cached
    (it has no stable identity).
    """
    cacheable = isinstance(imf, str)
    keys = [(iso.name, iz, ia, imf_obj.name, backend.key, by_phase) for iz, ia in pairs]
    # backend.key holds id(generator): an entry keeps its generator alive and is only used for that very
    # object, so a later generator that reuses a freed id never gets another generator's spectra. Likewise
    # an entry is only used for the isochrone set it was computed from (a weak reference, so that it does
    # not keep a replaced set alive): a table rewritten in the session (convert_fsps_isochrones) is read
    # again by load_isochrones, but its (iz, ia) were served the old table's SSPs (PARSEC rebuilt with
    # Z = 0.014, 0.017 in place of 0.010, 0.014: Z = 0.017 at 1 Gyr gave the old Z = 0.014 SSP)
    found = {}
    if cacheable:
        with _SSP_CACHE_LOCK:
            for p, k in zip(pairs, keys):
                hit = _SSP_CACHE.get(k)
                if hit is not None and hit[0] is backend.generator and hit[3]() is iso:
                    _SSP_CACHE.move_to_end(k)
                    found[p] = hit[1]
    todo = [p for p in pairs if p not in found]
    if stats is not None:
        stats.update(n_isochrones=len(pairs), n_isochrones_cached=len(pairs) - len(todo))
    if todo:
        tab = _tabulated(iso, todo, imf_obj, backend, progress=progress, by_phase=by_phase, stats=stats)
        key_of = dict(zip(pairs, keys))
        for i, p in enumerate(todo):
            found[p] = {key: np.array(val[i]) for key, val in tab.items()}
        if cacheable:
            with _SSP_CACHE_LOCK:
                for p in todo:
                    k = key_of[p]
                    size = sum(v.nbytes for v in found[p].values())
                    old = _SSP_CACHE.pop(k, None)
                    if old is not None:
                        _SSP_CACHE_USED[0] -= old[2]
                    _SSP_CACHE[k] = (backend.generator, found[p], size, weakref.ref(iso))
                    _SSP_CACHE_USED[0] += size
                while _SSP_CACHE_USED[0] > _SSP_CACHE_BYTES and _SSP_CACHE:
                    _SSP_CACHE_USED[0] -= _SSP_CACHE.popitem(last=False)[1][2]
    first = found[pairs[0]]
    return {key: np.stack([found[p][key] for p in pairs]) for key in first}


def _neighbours(grid, x):
    """Bracketing indices and linear weights of x on an increasing grid (exact nodes -> one weight 1).

    A grid of one node (a set of one Z or one age) gives that node, weight 1: the caller has checked that
    x is that node (IsochroneSet.check_z / check_age)."""
    if grid.size == 1:
        return [(0, 1.0)]
    j = int(np.clip(np.searchsorted(grid, x) - 1, 0, grid.size - 2))
    t = (x - grid[j]) / (grid[j + 1] - grid[j])
    if abs(t) < 1e-9:
        return [(j, 1.0)]
    if abs(1 - t) < 1e-9:
        return [(j + 1, 1.0)]
    return [(j, 1.0 - t), (j + 1, t)]


def _plan(iso, log_age, Z):
    """Neighbouring tabulated SSPs of (log_age, Z): [(iz, wz, [(ia, wa), ...]), ...]."""
    return [(iz, wz, _neighbours(iso.log_age, log_age))
            for iz, wz in _neighbours(np.log10(iso.Z), np.log10(Z))]


def _pairs(plan):
    return [(iz, ia) for iz, _, ages in plan for ia, _ in ages]


_LINEAR_KEYS = ("flux", "lbol", "mass_stars", "mass_remnants", "mass_uncovered", "phase_lum", "missing_lum",
                "outside_lum", "phase_flux")


def _interpolated_share(a, b, lbol_a, lbol_b, w0, w1):
    """The light of a part of L_bol (missing, outside coverage) between two ages, ``a`` and ``b`` at L_bol
    ``lbol_a`` and ``lbol_b``: 1 minus the geometric interpolation of the rest's fractions, times the
    geometric interpolation of L_bol -- as the spectrum (the rest) is interpolated, so that spectrum + missing
    still make L_bol (interpolating the missing light itself geometrically left up to 8 % of L_bol in neither,
    at PARSEC's 1.7 Myr, Z = 0.002, outside="exclude")."""
    rest_a, rest_b = 1.0 - a / lbol_a, 1.0 - b / lbol_b
    lbol = np.exp(w0 * np.log(lbol_a) + w1 * np.log(lbol_b))
    if rest_a > 0 and rest_b > 0:
        return lbol * (1.0 - np.exp(w0 * np.log(rest_a) + w1 * np.log(rest_b)))
    return lbol * (w0 * a / lbol_a + w1 * b / lbol_b)         # all light missing at an age: linear


def beyond_grid_fraction(flux, wave_weights, lbol, missing_fraction):
    """Share of L_bol the stars emit outside the wavelength grid (``meta["beyond_grid_fraction"]``).

    ``flux`` (..., n_wave) [L_sun / A per M_sun formed] with the grid's trapezoid ``wave_weights`` [A],
    ``lbol`` the isochrone's L_bol [L_sun per M_sun formed] and ``missing_fraction`` its share without a
    spectrum: the spectrum integrates to L_bol x (1 - missing - beyond); negative rounding is clipped to 0.
    """
    return np.maximum(0.0, 1.0 - (np.asarray(flux, float) @ wave_weights) / lbol - missing_fraction)


def _combine(tab, index, plan, wave_weights):
    """Interpolate tabulated results: in log age, luminosities (spectrum, L_bol, per phase, missing)
    geometrically (log-linear) and masses linearly, then linearly between metallicities with log Z weights.

    This is what FSPS does between its tabulated ages: it reproduces FSPS's time_res_incr=2 Padova ages to
    5e-5 dex in L_bol and mass (linear-in-L would be off by 2.5e-3 dex); between metallicities FSPS combines
    spectra linearly. Pixel by pixel, though, the geometric mean does not keep the spectrum's integral: where
    the shape changes fast between two ages (red supergiants appearing) it held up to 6 % less light than
    either neighbour. So the interpolated spectrum is rescaled to the geometric interpolation of the two
    spectra's integrals (``wave_weights``: the grid's trapezoid weights), as L_bol is, keeping its shape.
    """
    res = {}
    for key in _LINEAR_KEYS:
        if key not in tab:
            continue
        total = 0.0
        for iz, wz, ages in plan:
            if len(ages) == 1:
                val = tab[key][index[(iz, ages[0][0])]]
            elif key.startswith("mass"):       # masses: linear in log age (as FSPS; checked to 5e-5 dex)
                val = sum(w * tab[key][index[(iz, ia)]] for ia, w in ages)
            else:
                (ia0, w0), (ia1, w1) = ages
                a, b = tab[key][index[(iz, ia0)]], tab[key][index[(iz, ia1)]]
                if key in ("missing_lum", "outside_lum"):
                    total = total + wz * _interpolated_share(a, b, tab["lbol"][index[(iz, ia0)]],
                                                             tab["lbol"][index[(iz, ia1)]], w0, w1)
                    continue
                with np.errstate(divide="ignore", invalid="ignore"):
                    # zero stays zero (a pixel or a phase absent at either age); negatives cannot occur
                    val = np.where((a > 0) & (b > 0), np.exp(w0 * np.log(np.where(a > 0, a, 1.0))
                                                             + w1 * np.log(np.where(b > 0, b, 1.0))),
                                   w0 * a + w1 * b)
                if key in ("flux", "phase_flux"):
                    # each spectrum (the SSP's, each phase's) to the geometric interpolation of its
                    # neighbours' integrals: PARSEC's RGB at log t 6.725 (85-219 kK at 6.70, 5-10 kK at 6.75)
                    # held 2.45 L_sun of its 37.6, the rest went to the main sequence
                    ia, ib, got = a @ wave_weights, b @ wave_weights, val @ wave_weights
                    with np.errstate(divide="ignore", invalid="ignore"):
                        ok = (ia > 0) & (ib > 0) & (got > 0)
                        factor = np.where(ok, np.exp(w0 * np.log(np.where(ok, ia, 1.0))
                                                     + w1 * np.log(np.where(ok, ib, 1.0)))
                                          / np.where(ok, got, 1.0), 1.0)
                    val = val * (factor[..., None] if np.ndim(factor) else factor)
            total = total + wz * val
        res[key] = total
    if "phase_lum" in res and res["phase_lum"].sum() > 0:
        # geometric interpolation of each phase does not sum to that of the total: keep the per-phase
        # fractions and make them add up to L_bol
        res["phase_lum"] = res["phase_lum"] * (res["lbol"] / res["phase_lum"].sum())
    if "phase_flux" in res:
        # likewise per pixel (at a tabulated age the sum is already the total; between ages it was off by
        # up to 1e-3): the phases' spectra add up to the SSP's. That moves light between phases (the RGB of
        # the example above lost 4 % of it again), so it alternates with holding each phase's integral at its
        # interpolated share (iterative proportional fitting; three rounds leave < 1e-3 of either)
        phase_flux = res["phase_flux"]
        share = phase_flux @ wave_weights
        share = share / share.sum() if share.sum() > 0 else share
        for _ in range(3):
            phase_sum = phase_flux.sum(axis=0)
            with np.errstate(divide="ignore", invalid="ignore"):
                phase_flux = phase_flux * np.where(phase_sum > 0, res["flux"] / phase_sum, 0.0)
                held = phase_flux @ wave_weights
                target = share * (res["flux"] @ wave_weights)
                phase_flux = phase_flux * np.where(held > 0, target / np.where(held > 0, held, 1.0),
                                                   1.0)[:, None]
        phase_sum = phase_flux.sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            res["phase_flux"] = phase_flux * np.where(phase_sum > 0, res["flux"] / phase_sum, 0.0)
    res["n_points"] = int(sum(tab["n_points"][index[p]] for p in _pairs(plan)))
    return res


def _uncovered_range(tab, index, plan, imf_obj):
    """[m_low, m_hi] (M_sun): the initial masses below the first point of any of the plan's isochrones that
    it does not cover (:func:`smnet_sps.imf.uncovered_mass`), or None where all start low enough."""
    m_hi = max(float(tab["uncovered_to"][index[p]]) for p in _pairs(plan))
    return [imf_obj.m_low, m_hi] if m_hi > imf_obj.m_low else None


def _warn_uncovered(mass, mass_range, what):
    """A UserWarning for stars below the isochrone's first point (counted as mass, not as light)."""
    import warnings
    lo, hi = mass_range
    warnings.warn(f"{what}: its isochrone starts above the IMF's lower limit, so the stars of initial "
                  f"mass {lo:.3g}-{hi:.3g} Msun ({mass:.3g} Msun per Msun formed) are not on it: their mass "
                  "is counted as living stars, their light is not (meta['mass_uncovered'], "
                  "meta['uncovered_mass_range'], SSPGrid.mass_uncovered)", UserWarning, stacklevel=3)


def _top_cuts(iso, tab, index, pairs):
    """[(Z, log t, largest initial mass [M_sun]), ...] of the isochrones among ``pairs`` cut off at the top
    (:func:`_top_cut`)."""
    return [(float(iso.Z[iz]), float(iso.log_age[ia]), float(tab["top_cut"][index[(iz, ia)]]))
            for iz, ia in pairs if tab["top_cut"][index[(iz, ia)]] > 0]


def _warn_top_cut(cuts, m_up, what):
    """A UserWarning for isochrones that stop below the IMF's upper limit while their top is still alive."""
    import warnings
    named = "; ".join(f"Z = {z:.4g}, log t = {a:.2f}: above {m:.3g} Msun" for z, a, m in cuts[:4])
    more = f" and {len(cuts) - 4} more" if len(cuts) > 4 else ""
    warnings.warn(f"{what}: {len(cuts)} {'isochrone stops' if len(cuts) == 1 else 'isochrones stop'} while "
                  f"still in an early phase below the IMF's upper limit {m_up:g} Msun ({named}{more}); the "
                  "stars up to that limit are booked as remnants as FSPS books them (too little young light: "
                  "meta['top_cut'], SSPGrid.attrs['top_cut'])", UserWarning, stacklevel=3)


def _require_living_stars(iso, plan, imf_obj, lbol, log_age, Z):
    """Refuse an SSP whose IMF range holds none of the isochrones' living stars: its L_bol is 0, and the
    missing and outside fractions 0 / 0 (log_lbol -inf and NaN, with only numpy's RuntimeWarnings)."""
    if lbol > 0:
        return
    c = iso.columns
    masses = np.concatenate([c["mini"][iso.rows(iz, ia)] for iz, ia in _pairs(plan)])
    if masses.min() > imf_obj.m_up:
        raise ValueError(f"the {iso.name} isochrone at {10**log_age / 1e9:.4g} Gyr, Z = {Z:.4g} starts at "
                         f"{masses.min():.4g} Msun, above the IMF's whole mass range {imf_obj.m_low:g}-"
                         f"{imf_obj.m_up:g} Msun: none of its stars is on the isochrone (no light); give an "
                         "IMF reaching above its first mass or another isochrone family")
    raise ValueError(f"no living star of the {iso.name} isochrone at {10**log_age / 1e9:.4g} Gyr, "
                     f"Z = {Z:.4g} lies in the IMF's mass range {imf_obj.m_low:g}-{imf_obj.m_up:g} Msun: its "
                     f"living stars have initial masses {masses.min():.4g}-{masses.max():.4g} Msun; give an "
                     "IMF whose range overlaps them (a lower m_low) or a younger age")


# ---- public API -----------------------------------------------------------------------------------
def ssp_spectrum(age, Z=None, *, logzsol=None, imf="kroupa", isochrones="parsec", generator=None,
                 special_phases="model", outside="extrapolate", by_phase=False, device="auto"):
    """The spectrum of a simple stellar population of one age and metallicity.

    Parameters
    ----------
    age : Quantity [time], str ("10 Gyr") or float [yr]
        Within the isochrone grid (PARSEC: log t = 5.5-10.1; Padova: 5.5-10.15; MIST: 5.0-10.3).
    Z : float, metal mass fraction (PARSEC 1e-4..0.06; Padova 2e-4..0.03; MIST 1.42e-6..0.0449), or
    logzsol : float, log10(Z / Zsun) [dex] with the family's Zsun (0.0152 PARSEC, 0.019 Padova, 0.0142
        MIST). Neither given -> solar (a set of one Z, e.g. a CMD file for one metallicity: that Z; any
        other Z is a ValueError naming it, as any age but that of a set of one age).
    imf : "kroupa" (default), "salpeter", "chabrier", an :class:`smnet_sps.imf.IMF` (other mass limits), or
        a callable dN/dm(m [M_sun])
    isochrones : "parsec" (default), "padova", or "mist" (needs the optional package lachesis-grids); or
        your own: an :class:`~smnet_sps.isochrones.IsochroneSet` (e.g. from
        :func:`~smnet_sps.isochrones.read_cmd_isochrones`), or the path of a file from PARSEC's CMD web form
        or of a table written by :func:`~smnet_sps.isochrones.convert_fsps_isochrones` (read once per
        session and file version; SSPs are cached per set)
    generator : the stellar spectra: None or "default" (the shipped default model), "semi-empirical" (the
        default model calibrated on MILES stars), "blackbody" (Planck spectra, no model), the path of a model
        directory, a :class:`~smnet_sps.generator.Generator` (e.g. a released checkpoint from
        :func:`smnet_sps.neural.load_generator`) or a :class:`~smnet_sps.backend.StellarLibraryBackend`
    special_phases : "model" (default) or "dedicated"; see :mod:`smnet_sps.backend`
    outside : "extrapolate" (default), "blackbody" or "exclude": what stars outside the generator's coverage
        contribute (see :mod:`smnet_sps.backend`); their share of L_bol is ``meta["outside_fraction"]``
    by_phase : bool, also return per-phase spectra in ``meta["phase_flux"]`` (dict name -> ndarray)
    device : where a model named by ``generator`` (or the default) is loaded and run: "auto" (default: CUDA
        when available, else CPU), "cpu", "cuda" or "cuda:N" (a string or torch.device); not used
        for "blackbody" or a Generator / backend passed in, which run where they were made

    Returns
    -------
    specutils.Spectrum
        flux in L_sun / A **per M_sun formed**; ``meta`` holds: ``log_lbol`` (isochrone, L_sun per M_sun
        formed), ``mass_stars``, ``mass_remnants``, ``log_mass`` (log10 of stars + remnants, as FSPS),
        ``missing_fraction`` (of L_bol from stars without a spectrum), ``beyond_grid_fraction`` (of L_bol
        emitted outside the spectrum's wavelength range: spectrum integral + missing + beyond = L_bol),
        ``phase_luminosity`` (dict phase
        name -> L_sun), ``n_points``, ``generator``, ``tail_filled`` (the generator fills its untrained
        tails from its training nodes: docs/generator.md), ``isochrones``, ``imf`` (its name),
        ``imf_mass_range`` ([m_low, m_up] M_sun: the IMF's limits, 0.08-120 unless given an IMF with others),
        ``log_age``, ``age_yr``, ``Z``, ``logzsol``, ``zsun``, ``special_phases``, ``outside``, ``flux_unit``.
    """
    from specutils import Spectrum

    iso = resolve_isochrones(isochrones)
    log_age = float(_log_ages(_scalar(age, "age"), iso))
    Z = float(_resolve_z(iso, None if Z is None else _scalar(Z, "Z"),
                         None if logzsol is None else _scalar(logzsol, "logzsol")))
    imf_obj = get_imf(imf)
    backend = get_backend(generator, special_phases, outside, device)

    plan = _plan(iso, log_age, Z)
    pairs = _pairs(plan)
    tab = _tabulated_cached(iso, pairs, imf_obj, imf, backend, by_phase=by_phase)
    index = {p: i for i, p in enumerate(pairs)}
    wave_weights = _trapz_weights(backend.wavelength)
    res = _combine(tab, index, plan, wave_weights)
    lbol = float(res["lbol"])
    _require_living_stars(iso, plan, imf_obj, lbol, log_age, Z)
    mass = float(res["mass_stars"] + res["mass_remnants"])
    meta = {
        "log_lbol": float(np.log10(lbol)), "lbol": lbol,
        "mass_stars": float(res["mass_stars"]), "mass_remnants": float(res["mass_remnants"]),
        "mass_total": mass, "log_mass": float(np.log10(mass)),
        # stars below an isochrone's first point (MIST's metal-rich or youngest), inside mass_stars, unlit
        "mass_uncovered": float(res["mass_uncovered"]),
        "uncovered_mass_range": _uncovered_range(tab, index, plan, imf_obj),
        "missing_fraction": float(res["missing_lum"] / lbol),
        "outside_fraction": float(res["outside_lum"] / lbol),
        # light the stars emit beyond the grid (each spectrum holds its blackbody share there): unreported, a
        # 3,000 A - 10 um generator's 3 Myr SSP integrated to 10 % of L_bol with missing_fraction 0
        "beyond_grid_fraction": float(beyond_grid_fraction(res["flux"], wave_weights, lbol,
                                                           res["missing_lum"] / lbol)),
        # the set's names: Padova's unflagged code 0 is not called "main sequence"
        "phase_luminosity": {iso.phase_names[p]: float(res["phase_lum"][i]) for i, p in enumerate(_PHASES)
                             if res["phase_lum"][i] > 0},
        "n_points": res["n_points"], "generator": backend.generator.name,
        "generator_sha256": _weights_sha256(backend.generator),
        "tail_filled": _tail_filled(backend.generator), "isochrones": iso.name,
        "isochrone_file": iso.source_file,     # a user's file is told from the shipped table
        "imf": imf_obj.name, "imf_mass_range": [imf_obj.m_low, imf_obj.m_up],
        "log_age": log_age, "age_yr": 10.0**log_age, "Z": Z,
        "logzsol": float(np.log10(Z / iso.zsun)), "zsun": iso.zsun, "special_phases": backend.special_phases,
        "outside": backend.outside, "flux_unit": "L_sun / Angstrom per M_sun formed",
        "interpolated_from": [(float(iso.Z[iz]), float(iso.log_age[ia]), float(wz * wa))
                              for iz, wz, ages in plan for ia, wa in ages],
        "luminosity_correction": _correction_summary(tab["correction"]),
    }
    meta.update(lsf_meta(backend.wavelength))          # vacuum wavelengths; box LSF FWHM per pixel [A]
    _warn_outside(meta["outside_fraction"], f"the SSP at {10**log_age / 1e9:.4g} Gyr, Z = {Z:.4g}",
                  backend.outside)
    meta["top_cut"] = _top_cuts(iso, tab, index, pairs)
    if meta["top_cut"]:
        _warn_top_cut(meta["top_cut"], imf_obj.m_up, f"the {iso.name} SSP at {10**log_age / 1e9:.4g} Gyr, "
                      f"Z = {Z:.4g}")
    if meta["uncovered_mass_range"] is not None:
        _warn_uncovered(meta["mass_uncovered"], meta["uncovered_mass_range"],
                        f"the {iso.name} SSP at {10**log_age / 1e9:.4g} Gyr, Z = {Z:.4g}")
    if by_phase:
        meta["phase_flux"] = {iso.phase_names[p]: res["phase_flux"][i] for i, p in enumerate(_PHASES)
                              if res["phase_lum"][i] > 0}
    return Spectrum(flux=res["flux"] * SSP_UNIT, spectral_axis=backend.wavelength * u.AA, meta=meta)


class _DSPSFields(NamedTuple):
    ssp_lgmet: np.ndarray
    ssp_lg_age_gyr: np.ndarray
    ssp_wave: np.ndarray
    ssp_flux: np.ndarray


_UNSET = object()
_DSPS_CLASSES: dict = {}


def _dsps_class(medium, zsun):
    """The class of DSPSArrays with ``medium`` and ``zsun``: DSPSArrays itself for ("vacuum", None), else a
    subclass made once per pair whose class attributes hold them, so that a rebuild from the four fields by
    type -- ``type(a)(*fields)``, which JAX's pytree unflatten does -- keeps them."""
    if medium == "vacuum" and zsun is None:
        return DSPSArrays
    key = (medium, zsun)
    cls = _DSPS_CLASSES.get(key)
    if cls is None:
        cls = type("DSPSArrays", (DSPSArrays,), {"__slots__": (), "__module__": __name__,
                                                  "__qualname__": "DSPSArrays", "wavelength_medium": medium,
                                                  "zsun": zsun})
        _DSPS_CLASSES[key] = cls
    return cls


def _rebuild_dsps_arrays(fields, medium, zsun):
    return DSPSArrays(*fields, medium, zsun=zsun)


class DSPSArrays(_DSPSFields):
    """DSPS's four SSP arrays in DSPS's own unit: ``ssp_flux`` is L_nu [L_sun / Hz per M_sun formed].

    Two attributes, not fields, so that the tuple stays DSPS's four arrays (``SSPData(*arrays)``):

    * ``wavelength_medium`` ("vacuum", default, or "air"): the medium of ``ssp_wave``. L_nu is the same in
      either medium (a pixel's frequency is c / lambda_vac).
    * ``zsun``: the solar Z of the grid's isochrone family ([M/H] = ``ssp_lgmet`` - log10 zsun), None where
      not known.

    They are held by the instance's class (a subclass of DSPSArrays, made once per pair, named DSPSArrays),
    so that everything that rebuilds the tuple from its four fields by its type keeps them: ``_make``,
    ``_replace``, copy, pickle, and JAX's pytree flatten / unflatten (``jax.device_put``, ``jax.jit``,
    ``jax.tree_util.tree_map``; they gave "vacuum" and None). ``DSPSArrays(*four_arrays)`` itself gives
    "vacuum" and None.
    """

    __slots__ = ()
    wavelength_medium = "vacuum"
    zsun = None

    def __new__(cls, ssp_lgmet, ssp_lg_age_gyr, ssp_wave, ssp_flux, wavelength_medium=None, *, zsun=_UNSET):
        from .medium import check_medium
        # unset: the class's own (DSPSArrays: vacuum, None; a subclass rebuilt by type: its pair)
        medium = check_medium(cls.wavelength_medium if wavelength_medium is None else wavelength_medium)
        zsun = cls.zsun if zsun is _UNSET else (None if zsun is None else float(zsun))
        return super().__new__(_dsps_class(medium, zsun), ssp_lgmet, ssp_lg_age_gyr, ssp_wave, ssp_flux)

    @classmethod
    def _make(cls, iterable):
        return cls(*iterable)           # through __new__ (NamedTuple's skips it: no medium at all)

    def _replace(self, **fields):
        medium = fields.pop("wavelength_medium", self.wavelength_medium)
        zsun = fields.pop("zsun", self.zsun)
        return DSPSArrays(*super()._replace(**fields), wavelength_medium=medium, zsun=zsun)

    def __reduce__(self):
        return _rebuild_dsps_arrays, (tuple(self), self.wavelength_medium, self.zsun)

    def __repr__(self):
        return f"{super().__repr__()[:-1]}, wavelength_medium={self.wavelength_medium!r}, zsun={self.zsun!r})"


def is_dsps_ssp_data(grid):
    """True for DSPS's own ``SSPData`` (``dsps.load_ssp_templates``): its flux is L_nu [L_sun / Hz], not
    smnet-sps' L_lambda [L_sun / A], and it records no unit or medium of its own."""
    cls = type(grid)
    return cls.__name__ == "SSPData" and cls.__module__.split(".")[0] == "dsps"


def check_ssp_flux_scale(flux, wave, remedy):
    """Refuse an SSP flux that states no unit when its brightest SSP, integrated over ``wave`` [A], gives no
    plausible L_bol per M_sun formed (:data:`smnet_sps.constants.SSP_LBOL_RANGE`): L_nu [L_sun / Hz] taken
    as L_lambda gives ~1e-11 of it (fitted templates and plugin writers took it without a word), erg/s
    in place of L_sun 3.8e33 times it. ``remedy``: what the caller can pass instead (ends the message)."""
    from .constants import SSP_LBOL_RANGE
    if wave.size < 2 or not flux.size:
        return                        # nothing to integrate over
    brightest = float(np.trapezoid(flux, wave, axis=-1).max())
    low, high = SSP_LBOL_RANGE
    if low <= brightest <= high:
        return
    if brightest < low:
        looks = ("it looks like L_nu in L_sun/Hz (~1e-11 of L_lambda), the unit of the .h5 grids that "
                 "`smnet-sps ssp-grid` and DSPS write (smnet_sps.ssp.load_ssp_grid(path) converts them)")
    else:
        looks = "it looks like erg/s/Angstrom (divide by 3.828e33), or not per M_sun formed"
    raise ValueError(f"ssp_flux states no unit, so it must be L_lambda in L_sun/Angstrom per M_sun formed, "
                     f"but integrated over ssp_wave its brightest SSP gives {brightest:.3g} L_sun per M_sun "
                     f"formed, outside the {low:g}..{high:g} an SSP gives: {looks}; {remedy}")


class SSPGrid(NamedTuple):
    """SSP templates in DSPS's layout (first four fields), plus bookkeeping.

    **Unit:** ``ssp_flux`` is L_lambda in **L_sun / Angstrom per M_sun formed** (:attr:`flux_unit`), not
    DSPS's L_sun / Hz: use :meth:`ssp_flux_per_hz` or :meth:`to_dsps_units` (or
    ``smnet_sps.plugins.dsps_backend.to_ssp_data``) before handing the arrays to DSPS.

    ssp_lgmet : (n_met,) log10 Z (absolute metal mass fraction, DSPS's layout; not [M/H]: :meth:`logzsol`
        gives log10 Z / Zsun with the grid's ``attrs["zsun"]``)
    ssp_lg_age_gyr : (n_age,) log10(age / Gyr)
    ssp_wave : (n_wave,) [Angstrom]
    ssp_flux : (n_met, n_age, n_wave) [L_sun / A per M_sun formed]
    log_lbol, log_mass, mass_stars, mass_remnants, missing_fraction : (n_met, n_age)
    attrs : dict of units and provenance (``attrs["flux_unit"]`` repeats the unit as text); also
        ``wavelength_medium`` ("vacuum"), ``lsf_shape`` ("box") and ``lsf_fwhm`` (list, n_wave) [A], the
        line-spread FWHM per pixel (:mod:`smnet_sps.lsf`)
    outside_fraction : (n_met, n_age) L_bol fraction of stars outside the generator's coverage
    mass_uncovered : (n_met, n_age) [M_sun per M_sun formed] stars below an isochrone that starts above the
        IMF's low masses (:func:`smnet_sps.imf.uncovered_mass`): inside ``mass_stars``, without light
    """

    ssp_lgmet: np.ndarray
    ssp_lg_age_gyr: np.ndarray
    ssp_wave: np.ndarray
    ssp_flux: np.ndarray
    log_lbol: np.ndarray
    log_mass: np.ndarray
    mass_stars: np.ndarray
    mass_remnants: np.ndarray
    missing_fraction: np.ndarray
    attrs: dict
    outside_fraction: np.ndarray = None
    mass_uncovered: np.ndarray = None

    @property
    def flux_unit(self):
        """Unit of ``ssp_flux``: L_sun / Angstrom (per M_sun formed), an astropy Unit."""
        return SSP_FLUX_UNIT

    @property
    def flux(self):
        """``ssp_flux`` as a Quantity [L_sun / Angstrom], per M_sun formed."""
        return self.ssp_flux * SSP_FLUX_UNIT

    @property
    def wavelength_medium(self):
        """Medium of ``ssp_wave``, as ``attrs`` state it ("vacuum" unless ``to_medium(grid, "air")``)."""
        from .medium import _stated_medium
        return _stated_medium(self.attrs or {})

    def logzsol(self, zsun=None):
        """(n_met,) [M/H] = log10(Z / Zsun) [dex] of ``ssp_lgmet``, as ``ssp_grid(logzsol=)`` and
        ``ssp_spectrum``'s ``meta["logzsol"]`` state it; ``zsun`` default: the grid's ``attrs["zsun"]`` (its
        isochrone family's), PARSEC's 0.0152 where it states none (as the plugins' ``SSPArrays.logzsol``)."""
        from .isochrones import FAMILIES, check_zsun
        if zsun is None:
            zsun = (self.attrs or {}).get("zsun")
            zsun = FAMILIES["parsec"]["zsun"] if zsun is None else zsun
        return np.asarray(self.ssp_lgmet, float) - np.log10(check_zsun(zsun))

    def ssp_flux_per_hz(self):
        """``ssp_flux`` as L_nu [L_sun / Hz per M_sun formed] (DSPS's unit): L_lambda lambda^2 / c in vacuum.
        An air grid gives the same numbers as the vacuum one: a pixel's frequency is c / lambda_vac
        (:func:`smnet_sps.medium.per_hz`; L_lambda_air lambda_air^2 / c is 2.8e-4 to 3.3e-4 low)."""
        from .medium import per_hz
        return per_hz(self.ssp_wave, self.ssp_flux, self.wavelength_medium)

    def to_dsps_units(self):
        """:class:`DSPSArrays` (ssp_lgmet, ssp_lg_age_gyr, ssp_wave [A], ssp_flux [L_sun/Hz per M_sun]), on
        the grid's own axis, which ``wavelength_medium`` records, carrying ``attrs["zsun"]`` as ``.zsun``
        (without it SSPInterpolator took a Padova grid's [M/H] from 0.0152 for 0.019, +0.097 dex)."""
        zsun = (self.attrs or {}).get("zsun")
        return DSPSArrays(np.array(self.ssp_lgmet, float), np.array(self.ssp_lg_age_gyr, float),
                          np.array(self.ssp_wave, float), self.ssp_flux_per_hz(), self.wavelength_medium,
                          zsun=zsun)


def _is_empty(values):
    if isinstance(values, (str, u.Quantity)):
        return isinstance(values, u.Quantity) and values.size == 0
    if isinstance(values, (list, tuple)):
        return len(values) == 0
    try:
        return np.size(values) == 0
    except (TypeError, ValueError):
        return False                    # not array-like: the parser names the problem


def _age_array(ages, iso):
    if ages is None:
        return iso.log_age.copy()
    if _is_empty(ages):
        raise ValueError(f"ages is empty; give at least one age ({_age_range(iso)}) or ages=None for all "
                         f"{iso.log_age.size} tabulated ages")
    return np.atleast_1d(_log_ages(ages, iso)).astype(float).ravel()


def _z_array(Zs, iso, logzsol=None):
    if Zs is None and logzsol is None:
        return iso.Z.copy()
    for name, values, what in (("Zs", Zs, f"metal mass fraction ({iso.z_range_text()}"),
                               ("logzsol", logzsol, f"log10 Z / Zsun ({iso.logzsol_range_text()}")):
        if values is not None and _is_empty(values):
            raise ValueError(f"{name} is empty; give at least one {what} for {iso.name}) or Zs=None, "
                             f"logzsol=None for all {iso.Z.size} tabulated Z")
    return np.atleast_1d(_resolve_z(iso, Zs, logzsol, z_name="Zs")).astype(float).ravel()


def ssp_grid(ages=None, Zs=None, *, logzsol=None, imf="kroupa", isochrones="parsec", generator=None,
             special_phases="model", outside="extrapolate", progress=None, device="auto"):
    """A grid of SSP spectra (DSPS layout), from ONE batched, deduplicated generator pass.

    Every isochrone point the grid needs is deduplicated (:data:`smnet_sps.backend.KEY_STEP`) and streamed
    through the generator in batches (memory: one batch of spectra plus the result). The tabulated SSPs
    are kept in the per-isochrone cache, so later :func:`ssp_spectrum` calls with the same generator,
    options and IMF at any (age, Z) inside the grid are interpolations without a generator call.

    Parameters
    ----------
    ages : Quantity array, array of years, or None (all tabulated ages of the family); sorted, repeats
        dropped (the layout's axes increase)
    Zs : array of metal mass fractions, or None (all tabulated Z of the family); sorted, repeats dropped
    logzsol : array of log10(Z / Zsun) [dex] (numbers or a u.dex Quantity) with the family's Zsun, instead of
        ``Zs``, as :func:`ssp_spectrum` takes it (Zs = Zsun x 10**logzsol; both given: ValueError)
    imf, isochrones, generator, special_phases, outside, device : as :func:`ssp_spectrum` (generator: None /
        "default", "semi-empirical", "blackbody", a model directory, a Generator or a StellarLibraryBackend;
        device: "auto", "cpu", "cuda" or "cuda:N", for a model loaded by name)
    progress : bool or None, a tqdm bar (on stderr) over the generator batches; None (default): drawn when
        stderr is a terminal or in a Jupyter kernel, never into a log file (:mod:`smnet_sps.progress`)

    Returns
    -------
    SSPGrid (``ssp_flux`` in L_sun / A per M_sun formed: :attr:`SSPGrid.flux_unit`). ``attrs`` holds units,
    provenance, and the cost: ``n_points`` (isochrone points), ``n_unique`` (sent to the generator),
    ``seconds`` and ``timing`` (generator, coverage, dedup, accumulation seconds).
    """
    progress = want_progress(progress)
    iso = resolve_isochrones(isochrones)
    # the DSPS layout (and every host code's) wants increasing, distinct axes: sorted, repeats dropped
    log_ages = np.unique(_age_array(ages, iso))
    Zs = np.unique(_z_array(Zs, iso, logzsol))
    imf_obj = get_imf(imf)
    backend = get_backend(generator, special_phases, outside, device)
    plans = [_plan(iso, la, z) for z in Zs for la in log_ages]
    pairs = sorted({p for plan in plans for p in _pairs(plan)})
    t0 = time.perf_counter()
    stats = {}
    tab = _tabulated_cached(iso, pairs, imf_obj, imf, backend, progress=progress, stats=stats)
    index = {p: i for i, p in enumerate(pairs)}
    shape = (Zs.size, log_ages.size)
    flux = np.empty(shape + (backend.wavelength.size,))
    lbol, mst, mrem, miss, outf, munc = (np.empty(shape) for _ in range(6))
    wave_weights = _trapz_weights(backend.wavelength)
    for k, plan in enumerate(plans):
        i, j = divmod(k, log_ages.size)
        r = _combine(tab, index, plan, wave_weights)
        _require_living_stars(iso, plan, imf_obj, float(r["lbol"]), log_ages[j], Zs[i])
        flux[i, j] = r["flux"]
        lbol[i, j], mst[i, j], mrem[i, j] = r["lbol"], r["mass_stars"], r["mass_remnants"]
        miss[i, j] = r["missing_lum"] / r["lbol"]
        outf[i, j] = r["outside_lum"] / r["lbol"]
        munc[i, j] = r["mass_uncovered"]
    timing = {k: float(stats[k]) for k in ("generator_s", "generator_cpu_s", "coverage_s", "dedup_s",
                                           "accumulate_s", "cpu_s") if k in stats}
    attrs = {"flux_unit": "L_sun / Angstrom per M_sun formed", "wavelength_unit": "Angstrom",
             "ssp_lgmet": "log10 Z (metal mass fraction)", "ssp_lg_age_gyr": "log10(age / Gyr)",
             "generator": backend.generator.name, "generator_sha256": _weights_sha256(backend.generator),
             "tail_filled": _tail_filled(backend.generator),
             "isochrones": iso.name, "isochrone_file": iso.source_file, "zsun": iso.zsun,
             "imf": imf_obj.name, "imf_mass_range": [imf_obj.m_low, imf_obj.m_up],
             "special_phases": backend.special_phases, "outside": backend.outside,
             "n_points": int(tab["n_points"].sum()), "n_unique": int(stats.get("n_unique", 0)),
             "n_isochrones": len(pairs), "n_isochrones_cached": int(stats.get("n_isochrones_cached", 0)),
             "seconds": time.perf_counter() - t0, "timing": timing,
             "citation": iso.citation, "luminosity_correction": _correction_summary(tab["correction"])}
    # medium and LSF (a list, so that the attrs stay JSON/HDF5 friendly)
    attrs.update({k: (v.tolist() if isinstance(v, np.ndarray) else v)
                  for k, v in lsf_meta(backend.wavelength).items()})
    worst = np.unravel_index(np.argmax(outf), outf.shape)           # a grid has at least one SSP
    where = f"worst: Z = {Zs[worst[0]]:.4g}, {10**log_ages[worst[1]] / 1e9:.4g} Gyr"
    _warn_outside(float(outf[worst]), f"{int((outf > OUTSIDE_WARN_FRACTION).sum())} SSP(s) of the grid "
                  f"({where})", backend.outside)
    attrs["top_cut"] = [list(cut) for cut in _top_cuts(iso, tab, index, pairs)]
    if attrs["top_cut"]:
        _warn_top_cut(attrs["top_cut"], imf_obj.m_up, f"the {iso.name} grid")
    if (munc > 0).any():
        worst = np.unravel_index(np.argmax(munc), munc.shape)
        plan = plans[worst[0] * log_ages.size + worst[1]]
        _warn_uncovered(float(munc[worst]), _uncovered_range(tab, index, plan, imf_obj),
                        f"{int((munc > 0).sum())} {iso.name} SSP(s) of the grid (most: "
                        f"Z = {Zs[worst[0]]:.4g}, {10**log_ages[worst[1]] / 1e9:.4g} Gyr)")
    return SSPGrid(np.log10(Zs), log_ages - 9.0, backend.wavelength.copy(), flux, np.log10(lbol),
                   np.log10(mst + mrem), mst, mrem, miss, attrs, outf, munc)


def _warn_outside(fraction, what, rule):
    """A CoverageWarning when more than OUTSIDE_WARN_FRACTION of L_bol comes from outside the coverage."""
    from .generator import _QUIET_COVERAGE

    if fraction > OUTSIDE_WARN_FRACTION and not _QUIET_COVERAGE.get():
        import warnings

        from .generator import CoverageWarning
        treated = {"extrapolate": "their spectra are extrapolations", "blackbody": "they are blackbodies",
                   "exclude": "their light is missing"}.get(rule, f"outside={rule!r}")
        warnings.warn(f"{fraction:.0%} of L_bol of {what} comes from stars outside the generator's coverage: "
                      f"{treated} (outside={rule!r}; meta['outside_fraction'] or SSPGrid.outside_fraction "
                      "give the share per SSP)", CoverageWarning, stacklevel=3)


_GRID_FORMATS = (".h5", ".hdf5", ".npz")
_GRID_FORMAT_TAG = "smnet-sps ssp grid v1"


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


# HDF5 attribute that marks ``ssp_flux`` stored in DSPS's unit (L_sun / Hz per M_sun formed)
_H5_FLUX_UNIT_KEY = "ssp_flux_unit"
_H5_FLUX_PER_HZ = "L_sun / Hz per M_sun formed"
_FLUX_PER_AA = "L_sun / Angstrom per M_sun formed"       # the unit in memory and in .npz files
# HDF5 attribute: L_nu was computed at frequency c / lambda_vac (SSPGrid.ssp_flux_per_hz); air files written
# before it took c / lambda_air (L_lambda_air lambda_air^2 / c), and are read back with that same inverse
_H5_FREQUENCY_KEY = "ssp_flux_frequency"
_H5_FREQUENCY = "c / vacuum wavelength"


def save_ssp_grid(grid, path):
    """Write an :class:`SSPGrid` to ``.h5``/``.hdf5`` (datasets + attrs) or ``.npz``; read it back with
    :func:`load_ssp_grid`. Overwrites ``path``.

    The ``.h5`` file is DSPS's template layout in DSPS's unit: ``dsps.load_ssp_templates(fn=path)`` reads it
    as it is, so its ``ssp_flux`` dataset is L_nu [L_sun / Hz per M_sun formed] (HDF5 attribute
    ``ssp_flux_unit``, and ``flux_unit`` in the attributes and in ``attrs_json``; the grid in memory is
    L_sun / Angstrom, and :func:`load_ssp_grid` converts back, to float64 rounding). An air grid
    (``to_medium(grid, "air")``) keeps its air axis and has the vacuum grid's L_nu (a pixel's frequency is
    c / lambda_vac: :meth:`SSPGrid.ssp_flux_per_hz`). The ``.npz`` stores L_sun / Angstrom per M_sun formed,
    as in memory. The file is written under a temporary name in ``path``'s folder (created if missing) and
    renamed over ``path`` once complete: a write that fails leaves the previous file whole.
    """
    import json
    from pathlib import Path

    if isinstance(grid, (str, os.PathLike)) and hasattr(path, "ssp_wave"):
        # the plugin writers take (path, grid): say which order this one wants, not a TypeError from Path
        raise TypeError("save_ssp_grid takes (grid, path); got (path, grid): call save_ssp_grid(grid, "
                        f"{str(grid)!r})")
    path = Path(path)
    if path.suffix.lower() not in _GRID_FORMATS:
        raise ValueError(f"unknown output format {path.suffix!r}; use .h5, .hdf5 or .npz")
    arrays = {k: np.asarray(v) for k, v in grid._asdict().items() if k != "attrs" and v is not None}
    attrs = dict(grid.attrs)
    attrs["format"] = _GRID_FORMAT_TAG
    from .output_files import provenance
    # the version that wrote the file; the generator's name as the grid recorded it
    attrs.update(provenance(attrs.get("generator", "unknown"), attrs.get("generator_sha256")))
    h5 = path.suffix.lower() in (".h5", ".hdf5")
    # the unit of the ssp_flux written below: attrs_json describes the file, and the .h5 holds L_nu
    attrs["flux_unit"] = _H5_FLUX_PER_HZ if h5 else _FLUX_PER_AA
    # all attrs as one JSON text: dicts, numbers and strings round-trip exactly
    encoded = json.dumps(attrs, default=_json_default)
    from .output_files import atomic_output
    # h5py's mode "w" emptied an existing grid at once: an error or Ctrl-C during the write lost it
    with atomic_output(path, overwrite=True, option="path") as tmp:
        _write_ssp_grid_file(tmp, grid, arrays, attrs, encoded, h5)
    return path


def _write_ssp_grid_file(path, grid, arrays, attrs, encoded, h5):
    """The body of :func:`save_ssp_grid`: its arrays and attributes written to ``path``."""
    import json
    if h5:
        import h5py
        # a DSPS reader takes ssp_flux as L_nu: give it L_nu, never L_lambda under DSPS's name
        arrays["ssp_flux"] = grid.ssp_flux_per_hz()
        with h5py.File(path, "w") as f:
            for k, v in arrays.items():
                f.create_dataset(k, data=v, compression="gzip" if v.ndim == 3 else None)
            for k, v in attrs.items():             # also as plain attributes, for other tools
                if isinstance(v, (bool, np.bool_)):
                    # HDF5's boolean (h5py reads np.bool_): the JSON text 'false' was a non-empty string,
                    # which `if f.attrs["tail_filled"]` took as true
                    f.attrs[k] = np.bool_(v)
                    continue
                plain = isinstance(v, (str, int, float, np.number))
                f.attrs[k] = v if plain else json.dumps(v, default=_json_default)
            f.attrs["attrs_json"] = encoded
            f.attrs[_H5_FLUX_UNIT_KEY] = _H5_FLUX_PER_HZ
            f.attrs[_H5_FREQUENCY_KEY] = _H5_FREQUENCY
            f.attrs["flux_unit"] = _H5_FLUX_PER_HZ + " (dataset ssp_flux)"
    else:
        # through a handle: numpy appends ".npz" to a name that does not end in it ("x.NPZ" -> "x.NPZ.npz")
        with open(path, "wb") as handle:
            np.savez_compressed(handle, **arrays, attrs=np.array(encoded))


def load_ssp_grid(path):
    """Read an :class:`SSPGrid` written by :func:`save_ssp_grid` (``.h5``, ``.hdf5`` or ``.npz``).

    Raises ValueError for an unknown extension or a file that is not an smnet-sps SSP grid.
    """
    import json
    from pathlib import Path

    path = Path(path)
    if path.suffix.lower() not in _GRID_FORMATS:
        raise ValueError(f"unknown SSP grid format {path.suffix!r}; use .h5, .hdf5 or .npz")
    if not path.is_file():
        raise FileNotFoundError(f"no SSP grid file at {path}")
    fields = [f for f in SSPGrid._fields if f != "attrs"]
    per_hz = vacuum_frequency = False
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files if k in fields}
                raw = str(f["attrs"]) if "attrs" in f.files else None
        else:
            import h5py
            with h5py.File(path, "r") as f:
                arrays = {k: f[k][()] for k in f if k in fields}
                per_hz = f.attrs.get(_H5_FLUX_UNIT_KEY) == _H5_FLUX_PER_HZ    # absent in files before 2026-12
                vacuum_frequency = f.attrs.get(_H5_FREQUENCY_KEY) == _H5_FREQUENCY
                raw = f.attrs.get("attrs_json")
                if raw is None:                        # a file written before attrs_json existed
                    # booleans were stored there as the JSON text 'true' / 'false'
                    raw = json.dumps({k: (v.item() if hasattr(v, "item") else
                                          v == "true" if v in ("true", "false") else v)
                                      for k, v in f.attrs.items()})
                elif isinstance(raw, bytes):
                    raw = raw.decode()
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable SSP grid ({exc})") from exc
    missing = [k for k in fields if k not in arrays and k not in ("outside_fraction", "mass_uncovered")]
    if missing:
        raise ValueError(f"{path} is not an smnet-sps SSP grid: it lacks {', '.join(missing)}")
    attrs = json.loads(raw) if raw else {}
    if per_hz:          # L_nu on disk (DSPS's unit) -> L_lambda per Angstrom of the file's axis, as in memory
        if vacuum_frequency:
            from .medium import _stated_medium, per_angstrom
            arrays["ssp_flux"] = per_angstrom(arrays["ssp_wave"], arrays["ssp_flux"], _stated_medium(attrs))
        else:           # the inverse of what wrote it (the same in vacuum; in air, c / lambda_air)
            arrays["ssp_flux"] = arrays["ssp_flux"] * C_ANGSTROM / np.asarray(arrays["ssp_wave"], float) ** 2
        attrs["flux_unit"] = _FLUX_PER_AA   # attrs_json says L_sun / Hz (older files: L_sun / A)
    for k, v in list(attrs.items()):       # dicts stored as JSON text by older writers
        if isinstance(v, str) and v[:1] in "{[":
            try:
                attrs[k] = json.loads(v)
            except ValueError:
                pass
    attrs.pop("format", None)
    return SSPGrid(attrs=attrs, **{k: arrays.get(k) for k in fields})


# ---- the command line and the plot live in ssp_cli ------------------------------------------------------
def __getattr__(name):
    """``smnet_sps.ssp.plot_ssp``, as documented before the command line moved to :mod:`smnet_sps.ssp_cli`:
    imported on first use, so ``import smnet_sps.ssp`` loads neither matplotlib nor the command line."""
    if name == "plot_ssp":
        from .ssp_cli import plot_ssp
        return plot_ssp
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
