"""Lick/IDS absorption-line indices (equivalent widths in Angstrom).

Bandpasses of Worthey et al. (1994, ApJS 94, 687) as tabulated by Trager et al. (1998, ApJS 116, 1), which are
**air** wavelengths; smnet-sps spectra are in vacuum, so by default the bandpasses are converted to vacuum
(:func:`smnet_sps.medium.air_to_vacuum`, a shift of ~1.4 A at 5000 A).

Index = integral over the central band of (1 - F / F_c) d lambda, with F_c the straight line through the mean
flux of the blue and red pseudo-continuum bands at their mid-points (Worthey et al. 1994, eq. 2). The flux is
taken as linear between pixel centres. The indices depend on resolution: to compare two spectra, measure both
at the same resolution (e.g. two SSPs on the same model grid). On the ~20 A pixels of the shipped models the
absolute values are NOT on the Lick/IDS system (8-11 A FWHM); only differences between models on the same grid
are meaningful.
"""
from __future__ import annotations

import numpy as np
from astropy import units as u

from .generator import _FLUX_UNITS, _WAVE_UNITS, _refuse_masked, _unmask, column_quantity
from .medium import _as_angstrom, _reparse_unit, air_to_vacuum, check_medium, f_lambda_values

__all__ = ["LICK_INDICES", "index_bands", "band_mean", "measure_index", "measure_indices"]

# name: (blue pseudo-continuum, central band, red pseudo-continuum), air wavelengths [A] (Trager et al. 1998)
LICK_INDICES = {
    "Hbeta": ((4827.875, 4847.875), (4847.875, 4876.625), (4876.625, 4891.625)),
    "Mgb": ((5142.625, 5161.375), (5160.125, 5192.625), (5191.375, 5206.375)),
    "Fe5270": ((5233.150, 5248.150), (5245.650, 5285.650), (5285.650, 5318.150)),
    "Fe5335": ((5304.625, 5315.875), (5312.125, 5352.125), (5353.375, 5363.375)),
}


def index_bands(name, medium="vacuum"):
    """(blue, central, red) bandpasses of index ``name`` [A] in ``medium`` ("vacuum" default, or "air")."""
    if name not in LICK_INDICES:
        raise ValueError(f"unknown Lick index {name!r}; known: {sorted(LICK_INDICES)}")
    check_medium(medium)
    bands = LICK_INDICES[name]
    if medium == "air":
        return bands
    return tuple(tuple(float(x) for x in air_to_vacuum(np.asarray(b))) for b in bands)


def _integral(wave, flux, lo, hi):
    """Integral over [lo, hi] of the piecewise-linear interpolant of flux (n, n_wave) -> (n,)."""
    inner = (wave > lo) & (wave < hi)
    x = np.concatenate([[lo], wave[inner], [hi]])
    y = np.concatenate([_interp_rows(lo, wave, flux), flux[:, inner], _interp_rows(hi, wave, flux)], axis=1)
    return np.trapezoid(y, x, axis=1)


def _interp_rows(x0, wave, flux):
    j = int(np.clip(np.searchsorted(wave, x0) - 1, 0, wave.size - 2))
    t = (x0 - wave[j]) / (wave[j + 1] - wave[j])
    return ((1 - t) * flux[:, j] + t * flux[:, j + 1])[:, None]


def _array_input(wave, flux):
    """``(wave, flux)`` as given by an astropy table or numpy's masked arrays: a column's unit taken (a
    Quantity; np.asarray dropped it: a flux column in Jy was read as F_lambda, a wavelength column in nm as
    Angstrom) and the flux's masked elements NaN, as a Spectrum's masked pixels are (the values under the
    mask were measured as data: garbage under Mgb's line gave 1950 A for 3.76). A masked wavelength is
    refused: every pixel needs one."""
    _refuse_masked(wave, "wave")
    wave = _unmask(column_quantity(wave, "wave", _WAVE_UNITS))[0]
    _, mask = _unmask(flux)
    if isinstance(_reparse_unit(getattr(flux, "unit", None)), u.UnrecognizedUnit):
        # a unit astropy cannot parse even as the package reads file units ('1E-17 erg/cm^2/s/Ang',
        # 'counts'; medium._reparse_unit reads 'nanomaggies', 'Angstroms' as everywhere else, where this
        # branch had taken nanomaggies as F_lambda numbers): plain numbers, as any flux whose unit an index
        # cannot use (it is a ratio of band means); column_quantity refused the column
        flux = np.asarray(flux) if mask is None else np.ma.masked_array(np.ma.getdata(flux), mask)
    flux = _unmask(column_quantity(flux, "flux", _FLUX_UNITS))[0]
    if mask is None or not mask.any():
        return wave, flux
    if isinstance(flux, u.Quantity):
        return wave, u.Quantity(np.where(mask, np.nan, flux.value), flux.unit)
    return wave, np.where(mask, np.nan, np.asarray(flux, float))


def _check_axis(wave, flux):
    """``wave`` [A] as a float array, checked against ``flux`` (..., n_wave): 1-d, as long as flux's last
    axis, finite, strictly increasing (ValueError otherwise)."""
    wave = np.asarray(wave, float)
    if wave.ndim != 1 or np.shape(flux)[-1:] != wave.shape:
        raise ValueError(f"wave must be 1-d and match the last axis of flux; got {wave.shape} and "
                         f"{np.shape(flux)}")
    if wave.size < 2:
        # an empty spectrum was numpy's IndexError ('index 0 is out of bounds for axis 0 with size 0')
        raise ValueError(f"a spectrum needs at least 2 wavelengths to measure a band on; got {wave.size}")
    bad = np.flatnonzero(~np.isfinite(wave))
    if bad.size:
        # NaN passed the order test (NaN <= 0 is False): one in Mgb's blue band gave 0.8241 A for 0.8259
        raise ValueError(f"wave must be finite; {bad.size} value(s) are not (first at pixel {bad[0]}: "
                         f"{wave[bad[0]]})")
    if np.any(np.diff(wave) <= 0):
        raise ValueError("wave must be strictly increasing")
    return wave


def band_mean(wave, flux, lo, hi, name=None):
    """Mean flux over [lo, hi] of the linear interpolant of ``flux`` (..., n_wave) on increasing ``wave``.

    ``wave``, ``lo`` and ``hi`` are Angstrom or Quantities in any spectral unit (converted to Angstrom). A
    flux Quantity keeps its unit. Table columns and masked arrays as in :func:`measure_index`. ``wave`` must
    be 1-d, finite, strictly increasing and as long as the last axis of ``flux`` (ValueError otherwise).
    The band must lie inside ``wave``: nothing is extrapolated (ValueError naming the band, ``name`` -- the
    index it belongs to, if given -- and the spectrum's range).
    """
    wave, flux = _array_input(wave, flux)
    wave = _as_angstrom(wave, "wave")[0]
    lo, hi = (float(_as_angstrom(x, "band edge")[0]) for x in (lo, hi))
    unit = flux.unit if isinstance(flux, u.Quantity) else None
    flux = np.asarray(getattr(flux, "value", flux), float)
    # a flux of another length stopped in numpy ("cannot reshape array of size 1 into shape (4,)"), a
    # decreasing axis read as "outside the spectrum's 5999.0-4000.0 A"
    wave = _check_axis(wave, flux)
    if not lo < hi:
        raise ValueError(f"band must be (lo, hi) with lo < hi; got {lo:g}-{hi:g} A")
    if lo < wave[0] or hi > wave[-1]:
        # the end pixels' straight line continued outward is no flux measurement (9000-9010 A on a
        # 4000-6000 A spectrum gave 3.5 for a flux rising 1 -> 2)
        of = "" if name is None else f" of index {name}"
        raise ValueError(f"band {lo:.1f}-{hi:.1f} A{of} lies outside the spectrum's {wave[0]:.1f}-"
                         f"{wave[-1]:.1f} A; band_mean does not extrapolate")
    out = _integral(wave, flux.reshape(-1, wave.size), lo, hi).reshape(flux.shape[:-1]) / (hi - lo)
    return out if unit is None else out * unit


def _as_flambda(flux, wave):
    """``flux`` (..., n) as floats proportional to F_lambda on ``wave`` [A] (any scale: an index is a ratio).

    A spectral density -- per wavelength or per frequency, energy or photons (FLAM, FNU, Jy, PHOTLAM,
    PHOTNU), a flux or a luminosity, also per unit mass or per solid angle -- is converted with
    ``u.spectral_density`` (:func:`~smnet_sps.medium.f_lambda_factor`; F_lambda = F_nu c / lambda^2: Fe5270
    of a 10 Gyr SSP read as per-Angstrom was 2.641 A instead of 2.626); magnitudes (ABmag) as the flux they
    stand for.
    Anything else -- a plain array, a dimensionless Quantity, counts, electron/s, a per-pixel unit (spectra
    that are not flux-calibrated) -- is taken as plain numbers, assumed per unit wavelength.
    """
    return f_lambda_values(flux, wave, strict=False)


def _spectrum_input(wave, flux, name, medium):
    """(wave, flux, name, medium) with a ``specutils.Spectrum`` passed as ``wave`` taken apart: its axis, its
    flux (masked pixels NaN), the name given in ``flux``'s place (``measure_index(spec, "Mgb")``) and the
    medium its meta states (``wavelength_medium``, as ``to_medium`` and ``vactoair_flag`` write it), which a
    ``medium`` given must match. Arrays: as given, ``medium`` None meaning vacuum."""
    if not (hasattr(wave, "spectral_axis") and hasattr(wave, "flux")):
        if isinstance(flux, str) and name is None:
            raise ValueError(f"measure_index(wave, flux, name): got the name {flux!r} in flux's place; the "
                             "short form measure_index(spectrum, name) needs a specutils.Spectrum")
        return wave, flux, name, "vacuum" if medium is None else medium
    from .medium import _stated_medium
    spec = wave
    if isinstance(flux, str) or (isinstance(flux, (list, tuple)) and all(isinstance(n, str) for n in flux)):
        flux, name = None, flux if name is None else name
    if flux is not None:
        raise ValueError("a specutils.Spectrum carries its own flux: pass measure_index(spectrum, name), "
                         "not a flux as well")
    stated = _stated_medium(dict(spec.meta or {}))
    if medium is not None and check_medium(medium) != stated:
        raise ValueError(f"medium={medium!r} but the spectrum's meta states {stated!r} wavelengths; leave "
                         "medium out (the meta's is used) or convert with smnet_sps.medium.to_medium")
    axis = spec.spectral_axis
    flux = spec.flux
    if getattr(spec, "mask", None) is not None and np.any(spec.mask):
        flux = u.Quantity(np.where(np.asarray(spec.mask) != 0, np.nan, flux.value), flux.unit)
    return u.Quantity(axis), flux, name, stated


def measure_index(wave, flux=None, name=None, medium=None, n_sub=400):
    """Lick index ``name`` [A] of spectra ``flux`` (..., n_wave) F_lambda on ``wave`` [A, increasing]: a float
    for one spectrum, an array of ``flux.shape[:-1]`` for several.

    ``wave`` may also be a ``specutils.Spectrum`` (``measure_index(spectrum, "Mgb")``): its axis and flux
    (masked pixels NaN), and the medium its meta states (``wavelength_medium``: ``to_medium(spec, "air")``,
    ``StellarPopulation(vactoair_flag=True)``; none: vacuum). Passing its axis and flux instead took an air
    spectrum's axis as vacuum (MILES star Fe5335 1.152 A for 1.486).

    ``medium``: medium of ``wave`` ("vacuum" for smnet-sps spectra, "air" for e.g. MILES); None (default):
    vacuum, or the Spectrum's stated medium (a ``medium`` that contradicts it is a ValueError). ``wave``
    may be a Quantity in any spectral unit (converted to Angstrom; a plain array is taken as Angstrom).
    ``flux``: a spectral flux density Quantity (per wavelength or per frequency, energy or photons: L_sun/A,
    L_sun/Hz, Jy, PHOTLAM, PHOTNU, also per M_sun or per arcsec^2) is converted to F_lambda
    (``u.spectral_density``); a magnitude Quantity (ABmag, STmag) as the flux it stands for; anything else
    (a plain array, counts, electron/s, a per-pixel unit: spectra that are not flux-calibrated) is taken as
    plain numbers, assumed per unit wavelength (an index is a ratio of band means: the scale does not
    matter, the per-wavelength slope does).
    An astropy table column counts as the Quantity its unit makes it; a masked flux (numpy's masked array,
    astropy's ``Masked``, a ``MaskedColumn``) has its masked elements NaN, as a Spectrum's masked pixels, so
    an index using them is NaN; a masked wavelength is a ValueError.
    ``n_sub``: points spread evenly over the central band, its two edges included, besides the pixel centres
    inside it, on which 1 - F / F_c is integrated (>= 2; ValueError otherwise: 0 dropped the band's edges,
    an Mgb of 8.95 A on 20 A pixels came out 0.0).
    """
    if isinstance(n_sub, bool) or not isinstance(n_sub, (int, np.integer)) or n_sub < 2:
        raise ValueError(f"n_sub must be a whole number >= 2 (the central band's two edges); got {n_sub!r}")
    wave, flux, name, medium = _spectrum_input(wave, flux, name, medium)
    if flux is None or name is None:
        raise ValueError("measure_index needs (wave, flux, name) or (specutils.Spectrum, name)")
    wave, flux = _array_input(wave, flux)
    wave = _check_axis(_as_angstrom(wave, "wave")[0], flux)
    flux = _as_flambda(flux, wave)
    blue, band, red = index_bands(name, medium)
    if wave[0] > blue[0] or wave[-1] < red[1]:
        raise ValueError(f"index {name} needs {blue[0]:.1f}-{red[1]:.1f} A; the spectrum covers "
                         f"{wave[0]:.1f}-{wave[-1]:.1f} A")
    if not np.any((wave > band[0]) & (wave < band[1])):
        import warnings
        warnings.warn(f"index {name}: no pixel lies inside its central band {band[0]:.1f}-{band[1]:.1f} A "
                      "(pixels coarser than the band); the value only interpolates the neighbouring pixels",
                      UserWarning, stacklevel=2)
    f = flux.reshape(-1, wave.size)
    fb, fr = band_mean(wave, f, *blue, name=name), band_mean(wave, f, *red, name=name)
    lb, lr = 0.5 * (blue[0] + blue[1]), 0.5 * (red[0] + red[1])
    # sub-grid including the pixel centres: the linear interpolant of F is exact on it
    x = np.union1d(np.linspace(band[0], band[1], n_sub), wave[(wave > band[0]) & (wave < band[1])])
    # (0, n_wave) -> (0,): np.stack of no rows raised numpy's "need at least one array to stack"
    fx = np.array([np.interp(x, wave, row) for row in f]).reshape(len(f), x.size)
    fc = fb[:, None] + (fr - fb)[:, None] * (x[None, :] - lb) / (lr - lb)
    ew = np.trapezoid(1.0 - fx / fc, x, axis=1)
    # one spectrum -> a numpy float, not a 0-d array (which round() and json.dumps refuse)
    return ew.reshape(flux.shape[:-1])[()]


def measure_indices(wave, flux=None, names=None, medium=None):
    """{name: index [A]} for ``names`` (one name or a list; None, the default: all of :data:`LICK_INDICES`;
    an empty list: none); each a float for one spectrum, an array of ``flux.shape[:-1]`` for several.
    ``wave`` may be a ``specutils.Spectrum`` (``measure_indices(spectrum)``, its
    stated medium used), as for :func:`measure_index`."""
    wave, flux, names, medium = _spectrum_input(wave, flux, names, medium)
    if isinstance(names, str):
        names = [names]
    # an empty list asked for no index (it gave all four: ``names or LICK_INDICES``)
    return {n: measure_index(wave, flux, n, medium) for n in (LICK_INDICES if names is None else names)}
