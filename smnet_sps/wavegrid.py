"""The common wavelength grid of the union grid, and flux-conserving resampling onto it.

Default grid: the 1,221-pixel BaSeL grid, 91 A - 160 um. Steps: 1-8 A below 1000 A, ~10 A in the UV
(1000-2900 A), 10-20 A in the optical (3000 A - 1 um), 35-55 A in J/H, 75-200 A from 1.6 to 5 um,
200-400 A to 10 um, then only 8 pixels from 20 to 160 um (enough for the bolometric tail, too coarse
for anything but broad-band mid/far-IR work; its 9 pixels from 10 um on are samples at their wavelength, not
bin averages: :data:`POINT_SAMPLE_WIDTH`). Why this grid:

* it is the native grid of BaSeL 2.2, Rauch and CM87, and (to < 0.6 % in the first 33 pixels, identical
  elsewhere) of CK04, so four of the six union libraries need no resampling at all and none is
  *up*-sampled in the optical: it is as fine as the coarsest library there;
* 91 A - 160 um holds > 99 % of the bolometric flux of stars up to ~55,000 K (the union grid's CK04, BaSeL
  and WM-basic spectra there: >= 99.8 % of sigma Teff^4); hotter stars lose 0.2-18 % below 91 A (CM87's
  55-190 kK spectra; a blackbody 3 % at 190 kK), which the grid reports, so luminosities can be checked, and
  it spans GALEX FUV to WISE W4 for photometry;
* 1,221 pixels keep the union grid (~5,000 spectra) at ~25 MB and the network output small.

It is shipped as ``smnet_sps/data/wavelength_basel1221.npy`` (copied from the BaSeL 2.2 files).

**Medium: vacuum.** The 1,221 wavelengths are Kurucz's ATLAS9 frequency grid expressed as lambda = c / nu, so
they are vacuum wavelengths, and every default library is tabulated in vacuum (each reader's ``MEDIUM`` /
``MEDIUM_NOTE``); a library in air would be converted with :func:`smnet_sps.medium.air_to_vacuum` before
resampling (:mod:`smnet_sps.grid`). **Line-spread function**: the bin average makes each pixel's response
a box one pixel wide (FWHM = pixel width: 20 A in the optical); see :mod:`smnet_sps.lsf`.
"""
from __future__ import annotations

import numpy as np
from astropy import units as u

from .constants import PACKAGE_DATA
from .medium import _as_angstrom as as_angstrom

__all__ = ["default_wavelength", "bin_edges", "resample", "check_wavelength_grid", "DEFAULT_GRID_FILE",
           "WAVELENGTH_GRID_DOC", "WAVELENGTH_LIMITS", "POINT_SAMPLE_WIDTH"]

DEFAULT_GRID_FILE = PACKAGE_DATA / "wavelength_basel1221.npy"
WAVELENGTH_GRID_DOC = ("BaSeL 2.2 1221-pixel grid, 91 A - 160 um, VACUUM wavelengths (the Kurucz c/nu grid; "
                       "air libraries are converted before resampling); flux-conserving bin averages (box "
                       "LSF of one pixel width, smnet_sps.lsf), but the 9 pixels of 10-160 um (wider than 5 "
                       "% of their wavelength) are the flux density at their wavelength, as CK04 and BaSeL "
                       "tabulate it; NaN + mask False where a library has no data")

#: pixels wider than this fraction of their wavelength are samples at their centre, not bin averages: the
#: default grid's 9 pixels of 10-160 um (the 10 um pixel spans 10-15 um, the 20 um one 15-30 um), where CK04,
#: BaSeL and CM87 tabulate the flux density at the pixel's wavelength. A bin average there is a different
#: quantity (0.47x the centre value at 10 um for a Rayleigh-Jeans tail), and a library sampled more sparsely
#: than these pixels (NextGen: 21, 71 and 121 um) put its 21 um flux into the 40 um pixel (11x too bright).
#: Every other default pixel is at most 3.5 % wide (the extreme UV), under 1 % longward of 1,050 A.
POINT_SAMPLE_WIDTH = 0.05


#: wavelengths [A] a grid may span: numbers outside are not in Angstrom (a grid in micron is 0.3-1)
WAVELENGTH_LIMITS = (1.0, 1e8)


def check_wavelength_grid(wave, what="wavelength grid"):
    """A wavelength grid [A] (float array), checked: 1-d, finite, strictly increasing, at least 2 points, in
    Angstrom (within :data:`WAVELENGTH_LIMITS`); ``ValueError`` naming ``what`` otherwise."""
    wave = np.asarray(wave, float)
    if wave.ndim != 1 or wave.size < 2 or not np.isfinite(wave).all() or np.any(np.diff(wave) <= 0):
        raise ValueError(f"{what} must be a 1-d, finite, strictly increasing array of at least 2 wavelengths "
                         f"[Angstrom]; got shape {wave.shape}"
                         + (f", {wave.flat[0]:g}..{wave.flat[-1]:g}" if wave.size else ""))
    lo, hi = WAVELENGTH_LIMITS
    if wave[0] < lo or wave[-1] > hi:
        raise ValueError(f"{what} {wave[0]:g}..{wave[-1]:g} is not in Angstrom: allowed {lo:g} A .. {hi:g} A "
                         "(e.g. 91 A - 1.6e6 A, the default grid); give micron x 1e4, or a Quantity")
    return wave


def default_wavelength():
    """The default common wavelength grid.

    Returns
    -------
    `~astropy.units.Quantity`
        1,221 increasing wavelengths [Angstrom], 91 A - 1.6e6 A.
    """
    return np.load(DEFAULT_GRID_FILE) * u.AA


def _as_angstrom(wave, name):
    """A pixel grid [A] as floats, checked: 1-d, at least 2 pixels, finite, strictly increasing."""
    wave = as_angstrom(wave, name)[0]
    if wave.ndim != 1 or wave.size < 2:
        raise ValueError(f"{name} must be a 1-d array of at least 2 wavelengths, got shape {wave.shape}")
    if not np.all(np.isfinite(wave)) or not np.all(np.diff(wave) > 0):
        raise ValueError(f"{name} must be finite and strictly increasing [Angstrom]")
    return wave


def bin_edges(wave, clip_to_range=False):
    """Pixel edges from the midpoints between pixel centres.

    Parameters
    ----------
    wave : array-like or Quantity (n,)
        Increasing pixel centres [Angstrom].
    clip_to_range : bool
        If True the outer edges are the first and last centres (the range that has data: nothing is
        extrapolated beyond a library's tabulated wavelengths); otherwise they lie half a pixel outside.

    Returns
    -------
    ndarray (n + 1,)
        Edges [Angstrom].
    """
    wave = _as_angstrom(wave, "wave")
    mid = 0.5 * (wave[1:] + wave[:-1])
    if clip_to_range:
        return np.concatenate([[wave[0]], mid, [wave[-1]]])
    return np.concatenate([[wave[0] - (mid[0] - wave[0])], mid, [wave[-1] + (wave[-1] - mid[-1])]])


def resample(wave_in, flux_in, wave_out, point_above=None):
    """Flux-conserving resampling (bin-integrated averages) of many spectra at once.

    Each input pixel holds its flux density constant between its edges (midpoints between centres;
    the outer edges are the first and last tabulated wavelengths, so nothing is extrapolated). Each
    output pixel gets the integral of that step function over its own edges divided by the width that
    the input covers. An output pixel whose whole bin lies outside the input range is *unknown*: NaN
    flux and mask False (never 0). A partly covered bin is the average over the covered part. A non-finite
    input pixel (NaN, inf) is unknown too: the output bins that overlap it (for a sampled pixel, whose centre
    it neighbours) are NaN with mask False, and no others.

    Parameters
    ----------
    wave_in : array-like or Quantity (n_in,)
        Increasing input wavelengths [Angstrom].
    flux_in : array-like or Quantity (n_in,) or (n_spec, n_in)
        Flux densities per Angstrom (any unit; a Quantity's unit is kept). Masked elements (numpy's masked
        array, astropy's ``Masked``) are unknown, as NaN; a masked wavelength is a ValueError.
    wave_out : array-like or Quantity (n_out,)
        Increasing output pixel centres [Angstrom].
    point_above : float, optional
        Output pixels wider than this fraction of their wavelength take the input's flux density *at* their
        centre instead of the bin average: the straight line between the two input points around it in log
        lambda - log F (in F where either is not positive). Such a pixel whose centre lies outside the input
        range is unknown. :mod:`smnet_sps.grid` passes :data:`POINT_SAMPLE_WIDTH` for the default grid's far
        infrared (see there). None (default): every pixel is a bin average.

    Returns
    -------
    flux_out : ndarray or Quantity (n_out,) or (n_spec, n_out)
        Bin-averaged flux density (or sampled, see ``point_above``), NaN where unknown.
    mask : ndarray of bool (n_out,)
        True where the input covers (part of) the output bin (its centre, for a sampled pixel) with finite
        flux. One mask for all spectra: a pixel unknown in one of them is NaN in all (resample spectra with
        non-finite pixels one at a time to keep the others' values there).

    Notes
    -----
    The integral of the output over the covered, averaged bins equals the integral of the input over the same
    wavelength interval to rounding error, so bolometric fluxes are conserved.
    """
    from .generator import _refuse_masked, _unmask
    for name, grid in (("wave_in", wave_in), ("wave_out", wave_out)):
        _refuse_masked(grid, name)
    win = _as_angstrom(_unmask(wave_in)[0], "wave_in")
    wout = _as_angstrom(_unmask(wave_out)[0], "wave_out")
    # a masked flux element is unknown, as NaN: np.asarray dropped the mask and binned what lay under it
    flux_in, flux_mask = _unmask(flux_in)
    unit = flux_in.unit if isinstance(flux_in, u.Quantity) else None
    flux = np.asarray(flux_in.value if unit is not None else flux_in, dtype=float)
    if flux_mask is not None and flux_mask.any():
        flux = np.where(flux_mask, np.nan, flux)
    squeeze = flux.ndim == 1
    flux = np.atleast_2d(flux)
    if flux.ndim != 2 or flux.shape[1] != win.size:
        raise ValueError(f"flux_in must have shape (n_in,) or (n_spec, n_in) with n_in = {win.size}, "
                         f"got {np.shape(flux_in)}")
    e_in = bin_edges(win, clip_to_range=True)
    width_in = np.diff(e_in)
    edges_out = bin_edges(wout)
    e_out = np.clip(edges_out, e_in[0], e_in[-1])
    idx = np.clip(np.searchsorted(e_in, e_out, side="right") - 1, 0, win.size - 1)
    # a non-finite input pixel is unknown: integrated as 0 (a NaN in the running sum made every output pixel
    # redward of it NaN), and the width of unknown input inside each output bin is integrated alongside
    unknown_in = ~np.isfinite(flux)
    known_flux = np.where(unknown_in, 0.0, flux)
    covered = np.diff(e_out)
    mask = covered > 0
    out = np.full((flux.shape[0], wout.size), np.nan)
    integral = np.diff(_integral_at(known_flux, width_in, e_in, e_out, idx), axis=1)
    out[:, mask] = integral[:, mask] / covered[mask]
    if unknown_in.any():
        unknown_width = np.diff(_integral_at(unknown_in.astype(float), width_in, e_in, e_out, idx), axis=1)
        out[unknown_width > 0] = np.nan
    if point_above is not None:
        try:
            share = float(point_above)
        except (TypeError, ValueError):
            share = float("nan")
        if not (np.isfinite(share) and share > 0):
            raise ValueError(f"point_above must be a number > 0 (a pixel's width / its wavelength, e.g. "
                             f"{POINT_SAMPLE_WIDTH}), or None; got {point_above!r}")
        wide = np.diff(edges_out) > share * wout
        inside = wide & (wout >= win[0]) & (wout <= win[-1])
        out[:, wide] = np.nan
        mask = mask & ~wide | inside
        out[:, inside] = _sample(win, flux, wout[inside])
    # one mask for all spectra: a pixel unknown in any of them is unknown (NaN) in all
    mask = mask & np.isfinite(out).all(axis=0)
    out[:, ~mask] = np.nan
    if unit is not None:
        out = out * unit
    return (out[0] if squeeze else out), mask


def _integral_at(flux, width_in, e_in, e_out, idx):
    """Integral of the step function ``flux`` (n_spec, n_in) from the first input edge ``e_in[0]`` to each
    edge in ``e_out`` (inside the input range; ``idx``: the input pixel holding each): (n_spec, n_out + 1)."""
    cum = np.zeros((flux.shape[0], width_in.size + 1))
    np.cumsum(flux * width_in, axis=1, out=cum[:, 1:])
    return cum[:, idx] + (e_out - e_in[idx]) * flux[:, idx]


def _sample(win, flux, x):
    """Flux densities (n_spec, n_in) on ``win`` at wavelengths ``x`` inside it, on the power law through the
    two neighbouring input points (linear in log lambda - log F; a straight line in lambda - F where either is
    not positive or not finite, so NaN stays NaN). The one rule for sampling between samples: the grid's wide
    far-infrared pixels and the photometry's power-law steps (:mod:`smnet_sps.photometry`)."""
    hi = np.clip(np.searchsorted(win, x, side="right"), 1, win.size - 1)
    lo = hi - 1
    t = np.log(x / win[lo]) / np.log(win[hi] / win[lo])
    f0, f1 = flux[:, lo], flux[:, hi]
    positive = (f0 > 0) & (f1 > 0) & np.isfinite(f0) & np.isfinite(f1)
    with np.errstate(divide="ignore", invalid="ignore"):
        log0, log1 = np.log(np.where(positive, f0, 1.0)), np.log(np.where(positive, f1, 1.0))
        logged = np.exp(log0 * (1 - t) + log1 * t)
    return np.where(positive, logged, f0 + (f1 - f0) * ((x - win[lo]) / (win[hi] - win[lo])))
