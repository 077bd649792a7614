"""The generator interface: (Teff, log g, [M/H]) -> surface flux F_lambda, with coverage flags.

Every spectrum source in the package (the neural models, a released SM-Net checkpoint, a blackbody)
is a :class:`Generator`. Subclasses implement one method, :meth:`Generator._surface_flux_batch`, on a
batch of already validated parameters; this base class does the rest once for all of them:
input validation, coverage flags, streaming in bounded memory, progress bars and astropy units.
"""
from __future__ import annotations

import contextlib
import contextvars
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.utils.masked import Masked

from .constants import BOLTZMANN_K, C_ANGSTROM, FLAM_UNIT, HC_OVER_K, LIGHT_C, PARAMETER_DOMAINS, PLANCK_H
from .progress import want_progress

__all__ = ["CoverageWarning", "ParameterBox", "Generator", "BlackbodyGenerator", "validate_parameters"]


class CoverageWarning(UserWarning):
    """Some requested points lie outside what the generator was trained on."""


# Set inside _quiet_coverage(): this thread's (context's) coverage checks flag points without warning.
_QUIET_COVERAGE = contextvars.ContextVar("smnet_sps_quiet_coverage", default=False)


@contextlib.contextmanager
def _quiet_coverage():
    """No CoverageWarning from the package inside the block, in this thread only: for callers that report
    coverage through the flags themselves (the SSP backend, the Dask tasks). warnings.catch_warnings swaps
    the process-wide filter list and is not thread-safe: threads overlapping in it left every warning of the
    process switched off."""
    token = _QUIET_COVERAGE.set(True)
    try:
        yield
    finally:
        _QUIET_COVERAGE.reset(token)


# A box edge is met within this tolerance [dex] (Teff in log, log g and [M/H] as they are): a Teff from a log
# Teff, as every isochrone table gives it, misses a node by rounding (10**log10(2600) = 2599.9999999999986 K,
# NextGen's coolest; 10**log10(180000) = 180000.00000000017 K, CM87's hottest), which flagged the star outside
# while the SSP backend (snapping keys onto faces) had it inside. 1e-12 dex: ~1e4 ulp, far below a grid step.
BOX_EDGE_TOLERANCE = 1e-12


def box_edges(box):
    """(lo (3,), hi (3,)) in (Teff [K], log g, [M/H]) of a :class:`ParameterBox`, each face moved out by
    :data:`BOX_EDGE_TOLERANCE` dex: the bounds every coverage test compares with (inclusive)."""
    widen = 10.0**BOX_EDGE_TOLERANCE
    lo = np.array([box.teff[0] / widen, box.logg[0] - BOX_EDGE_TOLERANCE, box.logz[0] - BOX_EDGE_TOLERANCE])
    hi = np.array([box.teff[1] * widen, box.logg[1] + BOX_EDGE_TOLERANCE, box.logz[1] + BOX_EDGE_TOLERANCE])
    return lo, hi


@dataclass(frozen=True)
class ParameterBox:
    """A box in (Teff [K], log g [cgs], [M/H] = log10(Z / Zsun) [dex], ``logz``); bounds are inclusive, within
    :data:`BOX_EDGE_TOLERANCE` (:func:`box_edges`)."""

    teff: tuple[float, float]
    logg: tuple[float, float]
    logz: tuple[float, float]

    def contains(self, teff, logg, logz):
        """Whether each point lies in the box (bool array of the broadcast shape). The parameters are taken
        as the generators take them: Teff [K] or a temperature Quantity, log g [cgs] or a dex / acceleration
        Quantity, [M/H] [dex]; table columns with units as their Quantities."""
        # converted as validate_parameters does (np.asarray dropped a unit: 5.777 kK was outside a 2000 K box)
        teff, logg, logz = np.broadcast_arrays(np.asarray(_teff_value(teff), float),
                                               np.asarray(_logg_value(logg), float),
                                               np.asarray(_logz_value(logz), float))
        lo, hi = box_edges(self)
        return ((teff >= lo[0]) & (teff <= hi[0]) & (logg >= lo[1]) & (logg <= hi[1]) & (logz >= lo[2])
                & (logz <= hi[2]))

    def describe(self):
        return (f"Teff {self.teff[0]:g}-{self.teff[1]:g} K, log g {self.logg[0]:g}..{self.logg[1]:g}, "
                f"[M/H] {self.logz[0]:g}..{self.logz[1]:g}")

    def as_dict(self):
        return {"teff": list(self.teff), "logg": list(self.logg), "logz": list(self.logz)}

    @classmethod
    def from_dict(cls, d):
        """A box from ``{"teff": [lo, hi], "logg": [lo, hi], "logz": [lo, hi]}`` (numbers, lo <= hi)."""
        try:
            bounds = [tuple(float(v) for v in d[k]) for k in ("teff", "logg", "logz")]
        except (TypeError, KeyError, ValueError, IndexError):
            bounds = None
        if bounds is None or any(len(b) != 2 or not b[0] <= b[1] for b in bounds):
            raise ValueError('a parameter box is {"teff": [lo, hi], "logg": [lo, hi], "logz": [lo, hi]} with '
                             f"lo <= hi; got {d!r}")
        return cls(*bounds)


_LOGG_DEX = u.dex(u.cm / u.s**2)


def _user_stacklevel():
    """The ``stacklevel`` for ``warnings.warn`` called by this function's caller that points at the first
    frame outside the package: the user's line, whichever public method (stream, surface_flux, spectra,
    ...) the call went through."""
    import sys
    package = str(Path(__file__).resolve().parent)
    frame, level = sys._getframe(2), 2            # 1: the warn call's frame, as warnings counts
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def _has_bool(value):
    """True if ``value`` is a bool or a (nested) list / tuple / array holding one."""
    if isinstance(value, (bool, np.bool_)):
        return True
    if isinstance(value, np.ndarray):
        return value.dtype.kind == "b"
    if isinstance(value, (list, tuple)):
        return any(_has_bool(v) for v in value)
    return False


def _has_quantity(value):
    """True for a (nested) list or tuple holding a Quantity."""
    return isinstance(value, (list, tuple)) and any(isinstance(v, u.Quantity) or _has_quantity(v)
                                                    for v in value)


def _first_quantity(value):
    """The first Quantity of a (nested) list or tuple that :func:`_has_quantity` found one in."""
    for v in value:
        if isinstance(v, u.Quantity):
            return v
        if _has_quantity(v):
            return _first_quantity(v)


def _refuse_quantity_list(value, name, unit=None):
    """Refuse a (nested) list or tuple holding Quantities: np.asarray takes their numbers with the units
    dropped (3000 Myr read as 3000 Gyr, [u.Dex(-0.5)] as +0.316) or raises numpy's TypeError. The hint
    names ``unit``, the one the caller expects (its plain numbers are in it), else the list's own unit."""
    if not _has_quantity(value):
        return
    hint = unit if unit is not None else _first_quantity(value).unit
    raise ValueError(f"{name}: a list of Quantities loses their units; give one array Quantity (e.g. "
                     f"np.array([...]) * u.Unit('{hint}')) or plain numbers"
                     + (f" in {unit}" if unit is not None else ""))


def _check_tensor(value, name):
    """Refuse a torch tensor that holds no real numbers: booleans (a logg of True ran as log g 1, where the
    same True in a list or array is refused), complex values (torch dropped the imaginary part with a
    warning) or no data at all (device "meta": torch's NotImplementedError 'Cannot copy out of meta
    tensor')."""
    import torch            # loaded already: value is one of its tensors
    if value.dtype == torch.bool or value.is_complex():
        why = "True is not a stellar parameter" if value.dtype == torch.bool else "a parameter is real"
        raise ValueError(f"{name} must be a tensor of real numbers (floating or integer), got dtype "
                         f"{value.dtype}: {why}")
    if value.device.type == "meta":
        raise ValueError(f"{name} is a tensor on the 'meta' device, which holds no values; give one on the "
                         "CPU or an accelerator")


def _as_float_array(value, name):
    """A float64 array from a number or (nested) sequence of numbers; refuse None, bools, strings, objects."""
    if value is None:
        raise ValueError(f"{name} must be a number or array of numbers, got None")
    if _has_bool(value):
        raise ValueError(f"{name} must be a number or array of numbers, got a boolean ({value!r:.60}); "
                         "True is not a stellar parameter")
    _refuse_quantity_list(value, name)      # ([u.Dex(-0.5)] became +0.316, its linear value)
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        # a torch tensor (one that requires grad, or on a GPU, ended in torch's own RuntimeError): its values;
        # the differentiable path is torch_surface_flux
        _check_tensor(value, name)
        value = value.detach().cpu().double().numpy()        # double: numpy has no bfloat16
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:          # ragged nested sequences
        raise ValueError(f"{name} must be a number or array of numbers: {exc}") from exc
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be a number or array of numbers, got {type(value).__name__} "
                         f"({value!r:.60})")
    return np.atleast_1d(arr.astype(float))


def _unmask(x):
    """(values, mask or None) of a masked array (numpy's or astropy's ``Masked``; True = masked), else
    (x, None): ``np.asarray`` drops a mask, so what lies under it would be used as valid."""
    if isinstance(x, np.ma.MaskedArray):
        return np.ma.getdata(x), np.ma.getmaskarray(x)
    if isinstance(x, Masked):
        return x.unmasked, np.asarray(x.mask, bool)
    return x, None


def _refuse_masked(value, name):
    """Refuse a masked array (numpy's or astropy's ``Masked``) with any masked element: ``np.asarray`` drops
    the mask, so the hidden value under it would be computed as if it were valid."""
    _, mask = _unmask(value)
    if mask is not None and mask.any():
        raise ValueError(f"{name} is a masked array with {int(mask.sum())} masked value(s) (first at flat "
                         f"index {int(np.flatnonzero(mask)[0])}); masked values are not supported: remove "
                         "those points or fill them with valid values (e.g. np.ma.filled) before the call")


#: what a wavelength / flux column's unit may be, as :func:`column_quantity`'s errors name it
_WAVE_UNITS = "a wavelength (e.g. u.AA, u.nm)"
_FLUX_UNITS = "a spectral flux density (e.g. erg / (s cm2 Angstrom), Jy)"


def column_quantity(value, name, expected, time=False):
    """An astropy ``Column`` that carries a unit, as the Quantity it stands for (``np.asarray`` drops the
    unit: an isochrone table's Teff column in kK was read as K, an L column in L_sun as log L); anything else
    is returned as it is. A unit the file's format did not read (FITS TUNIT 'Angstroms', 'Msun/yr', 'dex',
    'percent', '1e-17 erg/s/cm2/Angstrom') is parsed again as the fit CLI reads it
    (:func:`smnet_sps.medium._reparse_unit`); one that still cannot be read is refused, the error naming
    ``expected``, what the caller's parameter takes (e.g. "a wavelength (e.g. u.AA, u.nm)"). ``time``: the
    caller expects a time, where an age column's FITS TUNIT 'Gy' means Gyr, not the gray. A Quantity whose
    unit astropy did not read (``QTable.read`` of such a file) is parsed again the same way (it failed in the
    first arithmetic: "The unit 'nanomaggies' is unrecognized")."""
    unit = getattr(value, "unit", None)
    if unit is None:
        return value
    from astropy.table import Column
    unread_quantity = isinstance(value, u.Quantity) and isinstance(unit, u.UnrecognizedUnit)
    if not (isinstance(value, Column) or unread_quantity):
        return value
    if unread_quantity:
        value = value.value
    from .medium import _reparse_unit
    unit = _reparse_unit(unit, time)       # these were refused, where their numbers had been used before
    if isinstance(unit, u.UnrecognizedUnit):
        raise ValueError(f"{name}: its column's unit {unit.to_string()!r} is not one astropy knows; give "
                         f"the column a unit astropy reads, {expected}, or none (plain numbers, in the "
                         "parameter's documented unit)")
    return np.asarray(value) * unit              # a dex unit gives a Dex quantity, as u.dex(u.L_sun) does


def _column_unmasked(value, name, expected):
    """(``value`` as :func:`column_quantity` reads it, without a mask; its mask, True = masked, or None): the
    mask is taken first, as column_quantity's np.asarray drops a MaskedColumn's."""
    _, mask = _unmask(value)
    return _unmask(column_quantity(value, name, expected))[0], mask


def _teff_value(teff):
    teff = column_quantity(teff, "teff", "a temperature (e.g. u.K)")
    if isinstance(teff, u.Quantity):
        try:
            return teff.to_value(u.K, equivalencies=u.temperature())
        except u.UnitConversionError as exc:
            raise ValueError(f"teff must be a temperature (K), got unit {teff.unit}") from exc
    return teff


def _logg_value(logg):
    """log g [dex cgs] from a number, a dex Quantity (u.dex(u.cm / u.s**2), or a plain u.dex: already the
    log, as logt, logz and logl take it) or a linear acceleration."""
    logg = column_quantity(logg, "logg", "u.dex or u.dex(u.cm / u.s**2)")
    if not isinstance(logg, u.Quantity):
        return logg
    if isinstance(logg.unit, u.LogUnit) or isinstance(logg, u.LogQuantity):
        try:
            return np.asarray(logg.to_value(_LOGG_DEX), float)
        except u.UnitConversionError as exc:
            raise ValueError(f"logg as a logarithmic quantity must be in dex of an acceleration "
                             f"(u.dex(u.cm / u.s**2)), got {logg.unit}") from exc
    if logg.unit.physical_type == "acceleration":
        g = np.asarray(logg.to_value(u.cm / u.s**2), float)
        if np.any(~(g > 0)):
            raise ValueError("logg given as an acceleration must be positive (it is converted to "
                             "log10(g / cm s^-2))")
        return np.log10(g)
    # already the log, as _log_value reads logt / logl and _logz_value logz (a FITS column with TUNIT 'dex'
    # was refused for log g only)
    if logg.unit in (u.dimensionless_unscaled, u.dex):
        return np.asarray(logg.value, float)
    raise ValueError(f"logg must be log10(g / cm s^-2) as a number, a u.dex or u.dex(u.cm / u.s**2) quantity "
                     f"or an acceleration quantity; got unit {logg.unit}")


def _logz_value(logz):
    logz = column_quantity(logz, "logz", "u.dex")
    if not isinstance(logz, u.Quantity):
        return logz
    # dex only: a magnitude is a log unit too (u.Magnitude(-0.5) was read as -0.5 dex; it is +0.2)
    if logz.unit in (u.dex, u.dimensionless_unscaled) or (
            isinstance(logz.unit, u.DexUnit) and logz.unit.physical_unit == u.dimensionless_unscaled):
        return np.asarray(logz.value, float)
    raise ValueError(f"logz ([M/H]) must be a number in dex or a u.dex quantity; got unit {logz.unit}")


def check_switch(value, name, *, allow_01=False):
    """``value`` as a bool: True / False (numpy's too), or 1 / 0 as a one-element value where ``allow_01``
    (prospector passes its parameters as 1-element arrays). Anything else is refused: bool("False") is True,
    so the text "False" would switch the option on."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if allow_01:
        x = np.asarray(value)
        if x.size == 1 and (x.dtype == bool or (np.issubdtype(x.dtype, np.number) and x.item() in (0, 1))):
            return bool(x.reshape(()).item())
    allowed = "True or False (or 1 / 0)" if allow_01 else "True or False"
    raise ValueError(f"{name} is a switch: {allowed}; got {value!r}")


def _check_finite(values, name):
    """Refuse NaN / inf in a stellar parameter, naming it, the count and the first index."""
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(f"{name} has {int(bad.sum())} non-finite value(s) (first at index "
                         f"{np.flatnonzero(bad)[0]}); NaN and inf are not valid stellar parameters")


def _check_in_range(values, name, lo, hi, before="", after="", advice=None):
    """Refuse NaN / inf (:func:`_check_finite`) and ``values`` outside [lo, hi], naming ``name``, the first
    offender and its index (flat, as :func:`_check_finite`'s, for an array of more than one dimension), how
    many, and the range, as "{before}{lo} .. {hi}{after}", then ``advice``."""
    _check_finite(values, name)
    out = (values < lo) | (values > hi)
    if out.any():
        i = int(np.flatnonzero(out)[0])
        # values[i] of a 2-d array (backend point_spectra(logt=[[3.6, 5777.0]])) was an IndexError
        first = np.ravel(values)[i]
        raise ValueError(f"{name} = {first:g} (index {i}) is outside {before}{lo:g} .. {hi:g}{after} "
                         f"({int(out.sum())} value(s) outside)" + (f"; {advice}" if advice else ""))


def own_wavelength(wavelength):
    """A generator's (or backend's) wavelength grid [A]: its own float copy, read-only. ``gen.wavelength`` is
    handed out as it is, and shared by the backend, the tail fill and every SSP: a caller's in-place
    ``w = gen.wavelength; w /= 1e4`` (to plot in micron) put every later SSP of that generator on a 0.009 A
    axis (its spectra, from constants made at the first call, did not follow)."""
    wavelength = np.array(wavelength, float)
    wavelength.setflags(write=False)
    return wavelength


def validate_parameters(teff, logg, logz):
    """Broadcast (Teff, log g, [M/H]) to 1-d float64 arrays inside the physical domain.

    Inputs of any shape are broadcast together and flattened in C order: a (2, 3) Teff gives 6 points, whose
    spectra come back as (6, n_wave) rows (``reshape(2, 3, -1)`` restores the layout).

    Parameters
    ----------
    teff : number, array or Quantity [K] (temperature equivalencies apply)
    logg : number or array, log10(g / cm s^-2); or a ``u.dex(u.cm / u.s**2)`` or ``u.dex`` Quantity; or a
        linear acceleration Quantity (converted with log10 of cm s^-2)
    logz : number or array, [M/H] [dex]; or a ``u.dex`` Quantity

    Raises
    ------
    ValueError
        None, booleans, strings, masked arrays with a masked element, NaN / inf, or values outside the
        physical domain
        (:data:`~smnet_sps.constants.TEFF_DOMAIN`, ``LOGG_DOMAIN``, ``LOGZ_DOMAIN``); the message names the
        parameter and the allowed range. Points inside the domain but outside a model's training coverage are
        not refused here: the generators flag them (:class:`CoverageWarning`, ``inside`` = False).
    """
    for name, value in (("teff", teff), ("logg", logg), ("logz", logz)):
        _refuse_masked(value, name)
    values = {"teff": _as_float_array(_teff_value(teff), "teff"),
              "logg": _as_float_array(_logg_value(logg), "logg"),
              "logz": _as_float_array(_logz_value(logz), "logz")}
    try:
        arrays = np.broadcast_arrays(*values.values())
    except ValueError as exc:
        shapes = {k: v.shape for k, v in values.items()}
        raise ValueError(f"teff, logg, logz cannot be broadcast together: shapes {shapes}") from exc
    teff, logg, logz = (np.ascontiguousarray(a).ravel() for a in arrays)
    for name, arr in (("teff", teff), ("logg", logg), ("logz", logz)):
        (lo, hi), unit = PARAMETER_DOMAINS[name]
        _check_in_range(arr, name, lo, hi, "the physical domain ", f" {unit} accepted by the generators")
    return teff, logg, logz


def _torch_input(value, name, to_value=None):
    """A differentiable path's input as a torch tensor. A tensor passes through unchanged (autograd flows
    through it); anything else gets the checks ``validate_parameters`` makes: a masked element is refused
    (its hidden value was computed), ``to_value`` converts a Quantity (Teff in kK was read as K), and the
    values become a native-order float array (torch refused big-endian arrays and long doubles). The
    precision stays torch's choice: float64 for numpy float64 (or wider), else torch's default dtype."""
    import torch
    if isinstance(value, torch.Tensor):
        _check_tensor(value, name)
        return value
    _refuse_masked(value, name)
    if to_value is not None:
        value = to_value(value)
    arr = _as_float_array(value, name)
    dtype = value.dtype if isinstance(value, (np.ndarray, np.generic)) else None
    wide = dtype is not None and dtype.kind == "f" and dtype.itemsize >= 8
    return torch.from_numpy(arr).to(torch.float64 if wide else torch.get_default_dtype())


def _torch_parameters(teff, logg, logz):
    """(Teff [K], log g, [M/H]) of ``torch_surface_flux`` as tensors (see :func:`_torch_input`), of shapes
    that broadcast together (else a ValueError naming them, as :func:`validate_parameters`: torch's
    RuntimeError 'The size of tensor a (2) must match ...' named no parameter)."""
    import torch
    tensors = [_torch_input(teff, "teff", _teff_value), _torch_input(logg, "logg", _logg_value),
               _torch_input(logz, "logz", _logz_value)]
    try:
        torch.broadcast_shapes(*(t.shape for t in tensors))
    except RuntimeError:
        shapes = {k: tuple(t.shape) for k, t in zip(("teff", "logg", "logz"), tensors)}
        raise ValueError(f"teff, logg, logz cannot be broadcast together: shapes {shapes}") from None
    return tensors


def _check_count(value, name, minimum, meaning=""):
    """``value`` as an int >= ``minimum``, else a ValueError naming ``name``: a bool, a float (2.7) or text
    is refused, not truncated (batch_size=True was 1 point per batch). ``meaning``: a note for the message."""
    integer = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not integer or int(value) < minimum:
        note = f" ({meaning})" if meaning else ""
        raise ValueError(f"{name} must be an integer >= {minimum}{note}, got {value!r}")
    return int(value)


_OUT_DTYPES = ("float32", "float64")


def _check_out_dtype(out_dtype):
    """``out_dtype`` of :meth:`Generator.stream` / ``surface_flux`` as a numpy dtype, or None: float32 or
    float64 only. An integer dtype truncated the spectra (every tail pixel 0), float16 overflowed (surface
    fluxes reach 1e17 erg s^-1 cm^-2 A^-1, float16 holds 65504: inf pixels)."""
    if out_dtype is None:
        return None
    try:
        dt = np.dtype(out_dtype)
    except (TypeError, ValueError):
        dt = None
    if dt is None or dt.name not in _OUT_DTYPES:
        raise ValueError(f"unsupported out_dtype {out_dtype!r}; allowed: {', '.join(_OUT_DTYPES)} (or "
                         "None: as computed); surface fluxes reach 1e17 erg s^-1 cm^-2 A^-1, beyond float16, "
                         "and an integer dtype truncates them")
    return dt


class Generator(ABC):
    """Base class of every spectrum generator.

    Attributes set by subclasses
    ----------------------------
    name : str
    wavelength : ndarray [Angstrom], increasing
    box : ParameterBox, the overall training box
    library_boxes : dict[str, ParameterBox], one box per training library (may be empty)
    meta : dict, provenance and conventions (e.g. ``meta["flux_normalisation"]``)
    """

    name = "generator"
    wavelength: np.ndarray
    box: ParameterBox
    library_boxes: dict = {}
    meta: dict = {}

    # ---- to implement -------------------------------------------------------------------------
    @abstractmethod
    def _surface_flux_batch(self, teff, logg, logz, dtype=None):
        """Surface flux F_lambda [erg s^-1 cm^-2 A^-1], shape (n, n_wave), for validated 1-d inputs."""

    # ---- coverage -----------------------------------------------------------------------------
    def in_coverage(self, teff, logg, logz, library=None):
        """True where a point lies inside at least one training-library box (or the overall box); with
        ``library`` (generators with library conditioning), inside that library's box."""
        teff, logg, logz = validate_parameters(teff, logg, logz)
        library = self._check_library(library)
        if library is not None:
            return self.library_boxes[library].contains(teff, logg, logz)
        if not self.library_boxes:
            return self.box.contains(teff, logg, logz)
        inside = np.zeros(teff.shape, bool)
        for box in self.library_boxes.values():
            inside |= box.contains(teff, logg, logz)
        return inside

    def _check_coverage(self, teff, logg, logz, strict, library=None):
        """Coverage flags of a call (``library``: the checked library it imitates, or None)."""
        inside = self.in_coverage(teff, logg, logz, library=library)
        if not inside.all():
            n_out = int((~inside).sum())
            i = int(np.flatnonzero(~inside)[0])
            where = self._outside_reason(teff[i], logg[i], logz[i], library)
            msg = (f"{n_out} of {inside.size} point(s) lie outside the coverage of generator '{self.name}'"
                   + (f" imitating {library!r}" if library is not None else "")
                   + f" (first: Teff={teff[i]:g} K, log g={logg[i]:g}, [M/H]={logz[i]:g}); {where}")
            if strict:
                raise ValueError(msg)
            if not _QUIET_COVERAGE.get():
                warnings.warn(msg + ". Their spectra are extrapolations; see the returned coverage flags.",
                              CoverageWarning, stacklevel=_user_stacklevel())
        return inside

    def _coverage_boxes(self):
        """The library boxes as the coverage flags use them (name -> :class:`ParameterBox`)."""
        return self.library_boxes

    def _outside_reason(self, teff, logg, logz, library=None):
        """Why one point outside coverage is outside, with the boxes that count, for the warning / error.

        Coverage is the union of the library boxes (not the overall box, which holds points no library
        covers: 30,000 K, log g 8 lies inside "Teff 2000-180000 K, log g -1..8" and no library's box) and,
        within a box, nearness to that library's training models (a hole of its grid is outside).
        """
        boxes = self._coverage_boxes()
        if library is not None:
            boxes = {library: boxes[library]}
        elif not boxes:
            return f"training box: {self.box.describe()}"
        holding = [name for name, box in boxes.items() if box.contains(teff, logg, logz)]
        listed = (f"library {library!r} box: {boxes[library].describe()}" if library is not None else
                  "library boxes: " + "; ".join(f"{name}: {box.describe()}" for name, box in boxes.items()))
        if holding:
            return (f"it lies inside the box of {', '.join(holding)} but too far from "
                    f"{'its' if len(holding) == 1 else 'their'} training models (a hole of the grid); "
                    f"{listed}")
        if library is not None:
            return f"it lies outside that library's box; {listed}"
        return (f"it lies in no library's box (coverage is their union, not the overall box "
                f"{self.box.describe()}); {listed}")

    # ---- one batch ------------------------------------------------------------------------------
    def _check_library(self, library):
        """The library a call imitates; generators without library conditioning accept only None."""
        if library is not None:
            raise ValueError(f"generator '{self.name}' has no library conditioning; use library=None")
        return None

    def _batch(self, teff, logg, logz, *, dtype=None, library=None, as_tensor=False):
        """F_lambda of one validated batch: ndarray, or a torch tensor with ``as_tensor=True``.

        Neural generators override this to run the whole forward path on their device; analytic ones
        compute :meth:`_surface_flux_batch` on the host. ``library`` has been checked by the caller.
        """
        flux = self._surface_flux_batch(teff, logg, logz, dtype=dtype)
        if as_tensor:       # float32, as the neural generators' tensors (surface_flux's documented dtype)
            import torch
            t = torch.as_tensor(flux)
            return t.float() if t.dtype == torch.float64 else t
        return flux

    def _tensor_dtype(self, dtype=None):
        """The torch dtype of this generator's ``as_tensor`` batches for a call's ``dtype``: float32 for the
        analytic generators (:meth:`_batch`); the neural ones' compute dtype."""
        import torch
        return torch.float32

    # ---- public API -----------------------------------------------------------------------------
    def target_fraction(self, teff):
        """Share of sigma Teff^4 this generator's spectra are made to integrate to over its wavelength grid,
        per Teff [K] (dimensionless, 1-d).

        By default a blackbody's share there (:func:`planck_fraction`), what a physical spectrum holds;
        generators that rescale each spectrum to sigma Teff^4 over their grid (a released SM-Net checkpoint
        with ``normalisation="covered"``, a model with ``renormalise=True``) return 1. The SSP backend judges
        each raw spectrum's integral against this target, not against a blackbody's share.
        """
        teff = np.atleast_1d(np.asarray(teff, float))
        return planck_fraction(self.wavelength[0], self.wavelength[-1], teff)

    @property
    def wavelength_quantity(self):
        return self.wavelength * u.AA

    def stream(self, teff, logg, logz, *, batch_size=8192, strict=False, dtype=None, progress=False,
               library=None, as_tensor=False, out_dtype=np.float64):
        """Yield ``(slice, flux, inside)`` per batch: bounded memory for any number of points.

        ``flux`` is F_lambda [erg s^-1 cm^-2 A^-1] of shape (batch, n_wave): an ndarray of ``out_dtype``
        (float64 by default, or float32; None = as computed, float32 for the neural generators; any other
        dtype is a ValueError), or with ``as_tensor=True`` a torch tensor on the generator's device (no host
        transfer). ``library`` names a training library to imitate (neural generators; None = the model's
        default, usually the smooth mixture). It is passed down the call chain, never stored on the
        generator. ``progress``: a tqdm bar over the batches (False by default); None draws it on a terminal
        or in a notebook only (:func:`smnet_sps.progress.want_progress`).
        """
        teff, logg, logz = validate_parameters(teff, logg, logz)
        batch_size = _check_count(batch_size, "batch_size", 1)
        # switches (strict="False" raised for every point outside, as_tensor="False" returned a tensor)
        strict, as_tensor = check_switch(strict, "strict"), check_switch(as_tensor, "as_tensor")
        progress = want_progress(progress)
        out_dtype = _check_out_dtype(out_dtype)
        library = self._check_library(library)
        inside = self._check_coverage(teff, logg, logz, strict, library)
        return self._stream(teff, logg, logz, inside, batch_size, dtype, progress, library, as_tensor,
                            out_dtype)

    def _stream(self, teff, logg, logz, inside, batch_size, dtype, progress, library, as_tensor, out_dtype):
        starts = range(0, teff.size, batch_size)
        if progress:
            from tqdm.auto import tqdm
            starts = tqdm(starts, desc=f"{self.name} spectra", unit="batch")
        for start in starts:
            sl = slice(start, min(start + batch_size, teff.size))
            flux = self._batch(teff[sl], logg[sl], logz[sl], dtype=dtype, library=library,
                               as_tensor=as_tensor)
            if not as_tensor and out_dtype is not None:
                flux = np.asarray(flux, dtype=out_dtype)
            yield sl, flux, inside[sl]

    def surface_flux(self, teff, logg, logz, *, batch_size=8192, strict=False, dtype=None, progress=False,
                     out_dtype=np.float64, library=None, as_tensor=False):
        """All spectra as one array: (F_lambda [erg s^-1 cm^-2 A^-1] of shape (n, n_wave), inside flags).

        ``out_dtype``: float64 (default) or float32 (None: float64); any other dtype is a ValueError (an
        integer one truncated the spectra, float16 overflowed to inf). With ``as_tensor=True`` the flux is a
        torch tensor on the generator's device, in its compute dtype (float32 unless another ``dtype`` was
        asked for, at load or here); ``inside`` stays an ndarray.
        ``library``: see :meth:`stream`.
        """
        teff, logg, logz = validate_parameters(teff, logg, logz)
        out_dtype = _check_out_dtype(out_dtype)
        out, inside = None, np.empty(teff.size, bool)
        for sl, flux, ins in self.stream(teff, logg, logz, batch_size=batch_size, strict=strict, dtype=dtype,
                                         progress=progress, library=library, as_tensor=as_tensor,
                                         out_dtype=None):
            if out is None:
                if as_tensor:
                    import torch
                    out = torch.empty((teff.size, self.wavelength.size), dtype=flux.dtype, device=flux.device)
                else:
                    out = np.empty((teff.size, self.wavelength.size), dtype=out_dtype)
            out[sl] = flux
            inside[sl] = ins
        if out is None:                                     # no points: an empty (0, n_wave) result
            out = np.empty((0, self.wavelength.size), dtype=out_dtype)
            if as_tensor:
                # as a batch would come, on the device in the compute dtype (it was float32 always, where a
                # float64 model's or dtype=float64's batches are float64)
                import torch
                out = torch.empty((0, self.wavelength.size), dtype=self._tensor_dtype(dtype),
                                  device=getattr(self, "device", "cpu"))
        return out, inside

    def spectra(self, teff, logg, logz, *, batch_size=8192, strict=False, dtype=None, progress=False,
                library=None):
        """Spectra as a :class:`specutils.Spectrum` of shape (n, n_wave) in F_lambda, plus coverage flags.

        Parameters
        ----------
        teff : array-like or Quantity [K] (any shape; broadcast with logg, logz and flattened to n points)
        logg : array-like, log10 surface gravity [cm s^-2] (or a dex / acceleration Quantity)
        logz : array-like, [M/H] [dex relative to solar]
        batch_size : int, points per forward pass
        strict : bool, raise ``ValueError`` (instead of a :class:`CoverageWarning`) for points
            outside coverage
        dtype : compute dtype for neural generators (e.g. ``torch.float32``); ignored by analytic ones
        library : training library to imitate (neural generators only; None = default / mixture)

        Returns
        -------
        spectrum : specutils.Spectrum, flux in erg s^-1 cm^-2 A^-1; ``meta`` holds the inputs and flags
        inside : ndarray of bool, True where the point lies within the training coverage
        """
        from specutils import Spectrum

        teff, logg, logz = validate_parameters(teff, logg, logz)
        flux, inside = self.surface_flux(teff, logg, logz, batch_size=batch_size, strict=strict, dtype=dtype,
                                         progress=progress, library=library)
        meta = {"generator": self.name, "teff": teff, "logg": logg, "logz": logz, "inside_coverage": inside,
                **{k: v for k, v in self.meta.items() if isinstance(v, (str, int, float))}}
        from .lsf import lsf_meta           # wavelength medium (vacuum) and per-pixel LSF of the grid
        for key, value in lsf_meta(self.wavelength).items():
            meta.setdefault(key, value)
        # the flux array as the Quantity's own buffer: ``flux * FLAM_UNIT`` copied it, so the peak memory
        # was twice the result's (2.4x with the batches' work: 706 MB for 293 MB of 30,000 spectra)
        flux = u.Quantity(flux, FLAM_UNIT, copy=False)
        return Spectrum(flux=flux, spectral_axis=self.wavelength_quantity, meta=meta), inside


def planck_surface_flux(wavelength_aa, teff):
    """pi * B_lambda(T): the surface flux of a blackbody [erg s^-1 cm^-2 A^-1], shape (n_teff, n_wave)."""
    h, c, k = PLANCK_H, LIGHT_C, BOLTZMANN_K
    lam_cm = np.asarray(wavelength_aa, float)[None, :] * 1e-8
    x = h * c / (lam_cm * np.asarray(teff, float)[:, None] * k)
    with np.errstate(over="ignore"):
        b_lam = 2 * h * c**2 / lam_cm**5 / np.expm1(x)      # erg s^-1 cm^-2 cm^-1 sr^-1
    return np.pi * b_lam * 1e-8                             # per Angstrom



def _planck_fraction_shortward(x):
    """Share of sigma T^4 a blackbody emits at wavelengths below lambda, x = h c / (lambda k T) (array).

    (15 / pi^4) times the integral of t^3 / (e^t - 1) from x to infinity: the exponential series for x >= 1
    (about 40 / x terms), one minus the Bernoulli series of the integral from 0 to x below (error < 1e-12)."""
    x = np.asarray(x, float)
    out = np.empty_like(x)
    big = x >= 1.0
    if big.any():
        xb = x[big]
        n = np.arange(1, int(np.ceil(40.0 / xb.min())) + 2, dtype=float)[:, None]
        out[big] = (np.exp(-n * xb) * (xb**3 / n + 3 * xb**2 / n**2 + 6 * xb / n**3 + 6 / n**4)).sum(0)
    xs = x[~big]
    # integral_0^x t^3 / (e^t - 1) dt = sum_k B_k x^(k+3) / (k! (k+3))
    below = (xs**3 / 3 - xs**4 / 8 + xs**5 / 60 - xs**7 / 5040 + xs**9 / 272160 - xs**11 / 13305600
             + xs**13 / 622702080)
    out[~big] = np.pi**4 / 15 - below
    return np.clip(out * 15 / np.pi**4, 0.0, 1.0)


def planck_fraction(wave_lo, wave_hi, teff):
    """Share of sigma Teff^4 that a blackbody emits between ``wave_lo`` and ``wave_hi`` [A], per Teff [K].

    What a spectrum on a grid of that range should integrate to, as a share of the star's bolometric flux
    (91 A - 160 um, the default grid: > 0.9997 from 500 K to 100 kK, 0.99990 at 100 kK, 0.969 at 190 kK;
    3,000 A - 10 um, a released SM-Net grid: 0.97 at 5,777 K, 0.055 at 40 kK).
    """
    if not 0 < float(wave_lo) < float(wave_hi):
        raise ValueError(f"planck_fraction needs 0 < wave_lo < wave_hi [A]; got {wave_lo!r}, {wave_hi!r}")
    teff = np.asarray(teff, float)
    return (_planck_fraction_shortward(HC_OVER_K / (float(wave_hi) * teff))
            - _planck_fraction_shortward(HC_OVER_K / (float(wave_lo) * teff)))


def planck_fraction_derivative(wave_lo, wave_hi, teff):
    """d :func:`planck_fraction` / d Teff [1/K]: how fast a blackbody's share between ``wave_lo`` and
    ``wave_hi`` [A] changes with Teff [K] (the differentiable path of a generator normalised by it).

    With x = h c / (lambda k T), the share shortward of lambda S(x) has dS/dx = -(15 / pi^4) x^3 / (e^x - 1)
    and dx/dT = -x / T, so dS/dT = (15 / pi^4) x^4 / ((e^x - 1) T), taken at ``wave_hi`` minus at ``wave_lo``.
    """
    if not 0 < float(wave_lo) < float(wave_hi):
        raise ValueError(f"planck_fraction_derivative needs 0 < wave_lo < wave_hi [A]; got {wave_lo!r}, "
                         f"{wave_hi!r}")
    teff = np.asarray(teff, float)

    def shortward_rate(wave):
        x = HC_OVER_K / (float(wave) * teff)
        with np.errstate(over="ignore"):            # e^x overflows far on the Wien side: the rate is 0 there
            return 15 / np.pi**4 * x**4 / np.expm1(x) / teff

    return shortward_rate(wave_hi) - shortward_rate(wave_lo)


def luminosity_scale(integral, wavelength, teff, flux=None):
    """Factor that turns surface fluxes into spectra per unit bolometric luminosity [1/A], per star.

    f / integral(F_lambda d lambda), f = :func:`planck_fraction` over the grid: a star of luminosity L then
    has L_lambda = L x factor x F_lambda, integrating to f L on the grid. Without f, a generator on a short
    grid (a released SM-Net checkpoint, 3,000 A - 10 um) would put a hot star's whole L into its optical
    (18x too bright at 40 kK). One rule for every caller (the SSP backend, the pystellibs plugin).

    Parameters
    ----------
    integral : array (n,), each spectrum's integral over the grid [erg s^-1 cm^-2]; non-positive or non-finite
        values give NaN (the caller decides what an unusable spectrum becomes)
    wavelength : array, the grid [A] (only its ends are used; increasing)
    teff : array (n,) [K]
    flux : array (n, n_wave), optional: the spectra; one with a negative pixel is unusable too, whatever its
        integral (it went into SSPs as negative light); zero pixels are legitimate (tails a generator masks)
    """
    integral = np.asarray(integral, float)
    on_grid = planck_fraction(wavelength[0], wavelength[-1], teff)
    usable = np.isfinite(integral) & (integral > 0)
    if flux is not None:
        usable &= ~(np.asarray(flux).min(axis=1) < 0)       # min: no (n, n_wave) temporary
    return np.where(usable, on_grid / np.where(usable, integral, 1.0), np.nan)


class BlackbodyGenerator(Generator):
    """Planck spectra: an exact reference for tests and a documented fallback outside coverage."""

    name = "blackbody"

    def __init__(self, wavelength=None, teff_range=(500.0, 1e6)):
        if wavelength is None:
            wavelength = np.geomspace(91.0, 1.6e6, 1221)
        self.wavelength = own_wavelength(u.Quantity(wavelength, u.AA).value)
        self.box = ParameterBox(tuple(teff_range), (-np.inf, np.inf), (-np.inf, np.inf))
        self.library_boxes = {}
        self.meta = {"flux_normalisation": "pi * B_lambda(Teff); integral -> sigma*Teff^4 over all "
                                           "wavelengths"}

    def _surface_flux_batch(self, teff, logg, logz, dtype=None):
        return planck_surface_flux(self.wavelength, teff)


def frequency_to_wavelength_flux(f_nu, wavelength_aa):
    """Convert f_nu [per Hz] to f_lambda [per A] at the given wavelengths [A]."""
    return np.asarray(f_nu) * C_ANGSTROM / np.asarray(wavelength_aa) ** 2
