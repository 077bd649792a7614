"""The generator interface: (Teff, log g, [M/H]) -> surface flux F_lambda, with coverage flags.

Every spectrum source in the package (the neural models, a released SM-Net checkpoint, a blackbody)
is a :class:`Generator`. Subclasses implement one method, :meth:`Generator._surface_flux_batch`, on a
batch of already validated parameters; this base class does the rest once for all of them:
input validation, coverage flags, streaming in bounded memory, progress bars and astropy units.
"""
from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
from astropy import units as u

from .constants import C_ANGSTROM, FLAM_UNIT

__all__ = ["CoverageWarning", "ParameterBox", "Generator", "BlackbodyGenerator", "validate_parameters"]


class CoverageWarning(UserWarning):
    """Some requested points lie outside what the generator was trained on."""


@dataclass(frozen=True)
class ParameterBox:
    """A box in (Teff [K], log g [cgs], log Z = [M/H] [dex]); bounds are inclusive."""

    teff: tuple[float, float]
    logg: tuple[float, float]
    logz: tuple[float, float]

    def contains(self, teff, logg, logz):
        teff, logg, logz = np.broadcast_arrays(np.asarray(teff, float), np.asarray(logg, float),
                                               np.asarray(logz, float))
        return ((teff >= self.teff[0]) & (teff <= self.teff[1]) & (logg >= self.logg[0])
                & (logg <= self.logg[1]) & (logz >= self.logz[0]) & (logz <= self.logz[1]))

    def describe(self):
        return (f"Teff {self.teff[0]:g}-{self.teff[1]:g} K, log g {self.logg[0]:g}..{self.logg[1]:g}, "
                f"[M/H] {self.logz[0]:g}..{self.logz[1]:g}")

    def as_dict(self):
        return {"teff": list(self.teff), "logg": list(self.logg), "logz": list(self.logz)}

    @classmethod
    def from_dict(cls, d):
        return cls(tuple(d["teff"]), tuple(d["logg"]), tuple(d["logz"]))


def _strip_unit(value, unit, name):
    if isinstance(value, u.Quantity):
        try:
            return value.to_value(unit, equivalencies=u.temperature())
        except u.UnitConversionError as exc:
            raise ValueError(f"{name} must be in units convertible to {unit}, got {value.unit}") from exc
    return value


def validate_parameters(teff, logg, logz):
    """Broadcast (Teff [K or Quantity], log g, [M/H]) to 1-d float64 arrays; reject NaN, inf and Teff <= 0."""
    teff = _strip_unit(teff, u.K, "teff")
    arrays = np.broadcast_arrays(np.atleast_1d(np.asarray(teff, dtype=float)),
                                 np.atleast_1d(np.asarray(logg, dtype=float)),
                                 np.atleast_1d(np.asarray(logz, dtype=float)))
    teff, logg, logz = (np.ascontiguousarray(a).ravel() for a in arrays)
    for name, arr in (("teff", teff), ("logg", logg), ("logz", logz)):
        bad = ~np.isfinite(arr)
        if bad.any():
            raise ValueError(f"{name} has {bad.sum()} non-finite value(s) (first at index "
                             f"{np.flatnonzero(bad)[0]}); NaN and inf are not valid stellar parameters")
    if (teff <= 0).any():
        raise ValueError(f"teff must be positive (Kelvin); got minimum {teff.min():g}")
    return teff, logg, logz


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
    def in_coverage(self, teff, logg, logz):
        """True where a point lies inside at least one training-library box (or the overall box)."""
        teff, logg, logz = validate_parameters(teff, logg, logz)
        if not self.library_boxes:
            return self.box.contains(teff, logg, logz)
        inside = np.zeros(teff.shape, bool)
        for box in self.library_boxes.values():
            inside |= box.contains(teff, logg, logz)
        return inside

    def _check_coverage(self, teff, logg, logz, strict):
        inside = self.in_coverage(teff, logg, logz)
        if not inside.all():
            n_out = int((~inside).sum())
            i = int(np.flatnonzero(~inside)[0])
            msg = (f"{n_out} of {inside.size} point(s) lie outside the coverage of generator '{self.name}' "
                   f"(first: Teff={teff[i]:g} K, log g={logg[i]:g}, [M/H]={logz[i]:g}); "
                   f"training box: {self.box.describe()}")
            if strict:
                raise ValueError(msg)
            warnings.warn(msg + ". Their spectra are extrapolations; see the returned coverage flags.",
                          CoverageWarning, stacklevel=3)
        return inside

    # ---- public API -----------------------------------------------------------------------------
    @property
    def wavelength_quantity(self):
        return self.wavelength * u.AA

    def stream(self, teff, logg, logz, *, batch_size=8192, strict=False, dtype=None, progress=False):
        """Yield ``(slice, flux, inside)`` per batch: bounded memory for any number of points.

        ``flux`` is F_lambda [erg s^-1 cm^-2 A^-1] of shape (batch, n_wave).
        """
        teff, logg, logz = validate_parameters(teff, logg, logz)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        inside = self._check_coverage(teff, logg, logz, strict)
        starts = range(0, teff.size, int(batch_size))
        if progress:
            from tqdm.auto import tqdm
            starts = tqdm(starts, desc=f"{self.name} spectra", unit="batch")
        for start in starts:
            sl = slice(start, min(start + int(batch_size), teff.size))
            yield sl, self._surface_flux_batch(teff[sl], logg[sl], logz[sl], dtype=dtype), inside[sl]

    def surface_flux(self, teff, logg, logz, *, batch_size=8192, strict=False, dtype=None, progress=False,
                     out_dtype=np.float64):
        """All spectra as one array: (F_lambda [erg s^-1 cm^-2 A^-1] of shape (n, n_wave), inside flags)."""
        teff, logg, logz = validate_parameters(teff, logg, logz)
        out = np.empty((teff.size, self.wavelength.size), dtype=out_dtype)
        inside = np.empty(teff.size, bool)
        for sl, flux, ins in self.stream(teff, logg, logz, batch_size=batch_size, strict=strict, dtype=dtype,
                                         progress=progress):
            out[sl] = flux
            inside[sl] = ins
        return out, inside

    def spectra(self, teff, logg, logz, *, batch_size=8192, strict=False, dtype=None, progress=False):
        """Spectra as a :class:`specutils.Spectrum` of shape (n, n_wave) in F_lambda, plus coverage flags.

        Parameters
        ----------
        teff : array-like or Quantity [K]
        logg : array-like, log10 surface gravity [cm s^-2]
        logz : array-like, [M/H] [dex relative to solar]
        batch_size : int, points per forward pass
        strict : bool, raise ``ValueError`` (instead of a :class:`CoverageWarning`) for points outside coverage
        dtype : compute dtype for neural generators (e.g. ``torch.float32``); ignored by analytic ones

        Returns
        -------
        spectrum : specutils.Spectrum, flux in erg s^-1 cm^-2 A^-1; ``meta`` holds the inputs and flags
        inside : ndarray of bool, True where the point lies within the training coverage
        """
        from specutils import Spectrum

        teff, logg, logz = validate_parameters(teff, logg, logz)
        flux, inside = self.surface_flux(teff, logg, logz, batch_size=batch_size, strict=strict, dtype=dtype,
                                         progress=progress)
        meta = {"generator": self.name, "teff": teff, "logg": logg, "logz": logz, "inside_coverage": inside,
                **{k: v for k, v in self.meta.items() if isinstance(v, (str, int, float))}}
        from .lsf import lsf_meta           # wavelength medium (vacuum) and per-pixel LSF of the grid
        for key, value in lsf_meta(self.wavelength).items():
            meta.setdefault(key, value)
        return Spectrum(flux=flux * FLAM_UNIT, spectral_axis=self.wavelength_quantity, meta=meta), inside


def planck_surface_flux(wavelength_aa, teff):
    """pi * B_lambda(T): the surface flux of a blackbody [erg s^-1 cm^-2 A^-1], shape (n_teff, n_wave)."""
    h, c, k = 6.62607015e-27, 2.99792458e10, 1.380649e-16
    lam_cm = np.asarray(wavelength_aa, float)[None, :] * 1e-8
    x = h * c / (lam_cm * np.asarray(teff, float)[:, None] * k)
    with np.errstate(over="ignore"):
        b_lam = 2 * h * c**2 / lam_cm**5 / np.expm1(x)      # erg s^-1 cm^-2 cm^-1 sr^-1
    return np.pi * b_lam * 1e-8                             # per Angstrom


class BlackbodyGenerator(Generator):
    """Planck spectra: an exact reference for tests and a documented fallback outside coverage."""

    name = "blackbody"

    def __init__(self, wavelength=None, teff_range=(500.0, 1e6)):
        if wavelength is None:
            wavelength = np.geomspace(91.0, 1.6e6, 1221)
        self.wavelength = np.asarray(u.Quantity(wavelength, u.AA).value, float)
        self.box = ParameterBox(tuple(teff_range), (-np.inf, np.inf), (-np.inf, np.inf))
        self.library_boxes = {}
        self.meta = {"flux_normalisation": "pi * B_lambda(Teff); integral -> sigma*Teff^4 over all wavelengths"}

    def _surface_flux_batch(self, teff, logg, logz, dtype=None):
        return planck_surface_flux(self.wavelength, teff)


def frequency_to_wavelength_flux(f_nu, wavelength_aa):
    """Convert f_nu [per Hz] to f_lambda [per A] at the given wavelengths [A]."""
    return np.asarray(f_nu) * C_ANGSTROM / np.asarray(wavelength_aa) ** 2
