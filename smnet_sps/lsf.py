"""Line-spread function (LSF) of the model grid, and templates on a Gaussian LSF for kinematic fits.

Every spectrum smnet-sps returns lives on the union grid's pixels (default: the 1,221-pixel BaSeL grid,
20 A per pixel in the optical). The libraries were put on that grid by flux-conserving bin averages
(:func:`smnet_sps.wavegrid.resample`; CK04, BaSeL and CM87 are tabulated on it already), so the response of
pixel ``i`` to an infinitely narrow line at wavelength ``x`` is a **box**: ``1 / width_i`` when ``x`` lies
between the pixel's edges (midpoints between neighbouring centres), else 0. Its FWHM is the pixel width,

    FWHM_i = (lambda_{i+1} - lambda_{i-1}) / 2        [Angstrom]

which is 20 A from 2,900 A to 1 um except 15, 10, 15 A at 3,630, 3,640, 3,650 A, 10 A in 1,000-2,900 A,
50 A in J, 100-200 A in H/K (:func:`grid_lsf_fwhm`; :func:`measure_grid_lsf` measures it by pushing narrow
lines through the very binning). The generator reproduces the binned libraries, so this is the LSF a fit
should assume; the model cannot know about lines narrower than a pixel. The default grid's 9 pixels of
10-160 um are the exception: 12-75 % of their wavelength wide, they hold samples at their wavelength, not
bin averages (:data:`smnet_sps.wavegrid.POINT_SAMPLE_WIDTH`), so they have no box LSF (their declared FWHM is
their width; nobody fits lines there).

A box is not a Gaussian (its sigma is FWHM / sqrt(12) = 0.29 FWHM; a Gaussian's is 0.42 FWHM), while pPXF
measures a Gaussian line-of-sight velocity dispersion on top of a Gaussian instrumental LSF.
:func:`to_gaussian_lsf` puts templates on a Gaussian LSF of a chosen FWHM (>= the native one) on a
log-lambda grid of chosen ``velscale``: each pixel is a box between its edges, and each edge is blurred by
a Gaussian, so that a flat spectrum stays flat and every pixel keeps its flux. Degrade the observed
spectrum to the same FWHM (:func:`degrade_to_fwhm`).

What the binning loses cannot be put back: a line's position *inside* its pixel. In the templates every
narrow line sits where the pixel is, not where the line is: an offset uniform within +-width/2 (variance
width^2 / 12: rms ~350 km/s at 5,000 A for 20 A pixels), fixed for each line. A least-squares fit answers
such scattered offsets by broadening its kernel: with templates whose line profile has exactly the
requested Gaussian's second moment (``position_share=0``), the fitted dispersion comes out as
sqrt(sigma^2 + ~(width^2/12)) -- a galaxy with sigma = 100 km/s is fitted with ~280 km/s. The templates
therefore carry a share of that position variance themselves: the edge blur is

    s_e^2 = (FWHM / 2.3548)^2 - (1 - position_share) * width^2 / 12

so that every line's profile (box x Gaussian) has variance (FWHM / 2.3548)^2 + position_share * width^2 / 12
around its pixel centre (exact where neighbouring pixels are equal; 3 % low at the 10 A pixel).
``position_share = 1`` is the least-squares optimum for isolated narrow lines; broad features (Balmer wings,
band heads) are already blurred by the binning and want less. :data:`POSITION_SHARE` = 0.45 is calibrated on
observed stars (335 MILES stars of 3,900-6,500 K, half of them held out;
``benchmarks/bench_lsf_position_share.py``): degraded to 20 A with sigma = 100 / 200 / 300 km/s and fitted
with their own binned spectrum, the held-out median fitted sigma is 109 / 198 / 290 km/s
(``position_share=0``: 278 / 322 / 386); ~5 % of the stars with sigma = 100 km/s then reach pPXF's lower bound
(the instrumental sigma at 20 A is ~500 km/s). It does nothing for the *velocities*: each line's offset is
fixed, and a fit averages them only partly; with 20-A pixels expect systematic velocity errors of ~20 km/s,
and far more when the fit loses its anchoring lines (Ca H+K); see docs/plugins.md ("Fitting real galaxies")
for measured figures.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
from astropy import units as u

from .medium import _as_angstrom
from .wavegrid import bin_edges, resample

__all__ = ["LSF_SHAPE", "LSF_DOC", "C_KMS", "FWHM_PER_SIGMA", "POSITION_SHARE", "grid_lsf_fwhm", "lsf_meta",
           "stated_lsf_fwhm", "measure_grid_lsf", "to_gaussian_lsf", "degrade_to_fwhm", "check_velscale",
           "check_position_share"]

C_KMS = 299792.458                       # speed of light [km/s]
FWHM_PER_SIGMA = np.sqrt(8.0 * np.log(2.0))  # 2.3548: Gaussian FWHM / sigma
#: share of a pixel's sub-pixel position variance (width^2 / 12) that :func:`to_gaussian_lsf` adds to the
#: templates' line profiles, calibrated on MILES stars so that a fitted sigma is unbiased (module docstring)
POSITION_SHARE = 0.45
LSF_SHAPE = "box"
LSF_DOC = ("box of full width = pixel width (edges at midpoints between pixel centres): the flux-conserving "
           "bin average that puts every library on the grid; FWHM per pixel [Angstrom]; on the default grid "
           "the 9 pixels of 10-160 um are samples at their wavelength "
           "(smnet_sps.wavegrid.POINT_SAMPLE_WIDTH), their FWHM only their width")


def _as_aa(wave, name="wave"):
    wave = _as_angstrom(wave, name)[0]      # a Quantity or a table column with a unit, converted
    if wave.ndim != 1 or wave.size < 2 or not np.all(np.isfinite(wave)) or not np.all(np.diff(wave) > 0):
        raise ValueError(f"{name} must be a 1-d, finite, strictly increasing array of >= 2 wavelengths "
                         "[Angstrom]")
    return wave


def _as_fwhm(fwhm, name, wave):
    """``fwhm`` [Angstrom] (scalar, array (n,) on ``wave`` or Quantity) as an array (n,), checked.

    Every FWHM must be finite and >= 0 (0: an infinitely narrow LSF, e.g. ``fwhm_in=0`` to convolve with a
    line-of-sight velocity distribution alone); the ValueError names ``name``, the first bad value and
    where it is.
    """
    from .generator import column_quantity

    # a table column's unit (np.asarray dropped it: 2 nm read as 2 A)
    fwhm = column_quantity(fwhm, name, "a wavelength interval (e.g. u.AA, u.nm)")
    if isinstance(fwhm, u.Quantity):
        try:
            fwhm = fwhm.to_value(u.AA)     # a width: no spectral equivalency (1e8 GHz is not 30 A)
        except u.UnitConversionError:
            # still a UnitConversionError (a ValueError), now naming the argument and what is allowed
            raise u.UnitConversionError(f"{name} must be a length [Angstrom] (a float, or a Quantity in "
                                        f"e.g. Angstrom, nm); got unit {fwhm.unit}") from None
    try:
        arr = np.asarray(fwhm, float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or an array of numbers [Angstrom]; got {fwhm!r}") from None
    try:
        out = np.broadcast_to(arr, wave.shape)
    except ValueError:
        raise ValueError(f"{name} must be a number or an array of {wave.size} numbers (one per pixel of the "
                         f"wavelength grid) [Angstrom]; got shape {arr.shape}") from None
    bad = ~(np.isfinite(out) & (out >= 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        where = "" if arr.ndim == 0 else (f" at {wave[i]:g} A" if np.isfinite(wave[i]) else f" (pixel {i})")
        raise ValueError(f"{name} must be finite and >= 0 [Angstrom]; got {float(out[i])!r}{where}")
    return out


def grid_lsf_fwhm(wave):
    """FWHM [Angstrom] of the box-shaped LSF of every pixel of a binned grid: the pixel width.

    Parameters
    ----------
    wave : array-like or Quantity (n,)
        Increasing pixel centres [Angstrom] (e.g. ``Generator.wavelength``, ``SSPGrid.ssp_wave``).

    Returns
    -------
    ndarray (n,)
        Full width [Angstrom] between the pixel's edges (midpoints between neighbouring centres; the outer
        pixels are mirrored), which is the FWHM of the box.
    """
    return np.diff(bin_edges(_as_aa(wave)))


def lsf_meta(wave, medium="vacuum"):
    """The LSF and medium entries every output carries (Spectrum meta, SSPGrid attrs, plugin files).

    Returns
    -------
    dict
        ``lsf_fwhm`` (ndarray (n,) [Angstrom]), ``lsf_shape`` ("box"), ``lsf_doc`` (str),
        ``wavelength_medium`` ("vacuum" or "air").
    """
    from .medium import check_medium
    return {"lsf_fwhm": grid_lsf_fwhm(wave), "lsf_shape": LSF_SHAPE, "lsf_doc": LSF_DOC,
            "wavelength_medium": check_medium(medium)}


def stated_lsf_fwhm(fwhm, n_pixels, name="meta['lsf_fwhm']"):
    """An output's stated LSF FWHM (one number, or one per pixel; [Angstrom] or a Quantity) as an array
    (n_pixels,).

    A per-pixel array of another length no longer describes the axis -- slicing a ``specutils.Spectrum``
    (``spec[3000 * u.AA:9000 * u.AA]``) cuts the flux and the axis but keeps the whole spectrum's meta --
    and is refused (ValueError saying how to set it), not guessed: which pixels were kept is not recorded.
    """
    arr = np.asarray(fwhm.value if isinstance(fwhm, u.Quantity) else fwhm)
    if arr.ndim != 0 and (arr.ndim != 1 or arr.size != n_pixels):
        raise ValueError(
            f"{name} has {arr.size} values but the spectral axis has {n_pixels} pixels: the LSF meta no "
            "longer matches the axis (slicing a Spectrum, spec[a:b], keeps the whole spectrum's meta). Set "
            f"it for this axis: {name} sliced like the flux (the same pixels), or the package's box LSF "
            "smnet_sps.lsf.grid_lsf_fwhm(wave) of the new axis (its two end pixels' widths mirrored)")
    # units, broadcast and range as every FWHM argument (the error names ``name``)
    return np.array(_as_fwhm(fwhm, name, np.full(n_pixels, np.nan)), float)      # no axis: pixel numbers


def measure_grid_lsf(wave, n_positions=40, oversample=50):
    """Measure the LSF of every pixel of ``wave`` by pushing narrow lines through the library binning.

    A line much narrower than any pixel (one fine pixel of ``width / oversample``) is placed at
    ``n_positions`` sub-pixel positions across each pixel and its neighbours and binned onto ``wave`` with
    :func:`smnet_sps.wavegrid.resample` (the very function that puts libraries on the grid). The response of
    pixel ``i`` as a function of line position is its LSF; its FWHM is the width of the positions where the
    response is at least half its maximum.

    Returns
    -------
    fwhm : ndarray (n,)  measured FWHM [Angstrom] (NaN for the two outermost pixels, which have no neighbour)
    flatness : ndarray (n,)  min/max of the response inside the half-maximum region (1 for a box)
    """
    wave = _as_aa(wave)
    edges = bin_edges(wave)
    n = wave.size
    fwhm = np.full(n, np.nan)
    flat = np.full(n, np.nan)
    for i in range(1, n - 1):
        width = edges[i + 1] - edges[i]
        # positions every width/n_positions from one pixel width below to one above the pixel, never
        # closer than half a spacing to an edge, so a line (width/oversample wide) never straddles one
        spacing = width / n_positions
        pos = edges[i] - width + (np.arange(3 * n_positions) + 0.5) * spacing
        step = width / oversample
        fine = np.arange(pos[0] - 4 * step, pos[-1] + 4 * step, step / 4)
        lines = (np.abs(fine[None, :] - pos[:, None]) <= step / 2).astype(float)
        lines /= lines.sum(axis=1, keepdims=True) * (step / 4)          # unit integral
        binned, _ = resample(fine, lines, wave[i - 1:i + 2])
        resp = np.nan_to_num(binned[:, 1])
        half = resp >= 0.5 * resp.max()
        fwhm[i] = half.sum() * spacing
        flat[i] = resp[half].min() / resp.max()
    return fwhm, flat


#: below this sigma [pixels] a Gaussian sampled at whole pixels has less variance than sigma^2 (its relative
#: deficit is ~8 pi^2 sigma^2 exp(-2 pi^2 sigma^2): 2e-7 at 1 pixel, 2 % at 0.6), so its width is solved for
_SAMPLED_EXACT_SIGMA = 1.0
#: the kernel reaches at least this far [pixels]: >= 6 sigma for every solved kernel, so that cutting it
#: loses < 1e-7 of its variance (the +-4 sigma cut of wider kernels loses up to 1e-3)
_MIN_HALF_WIDTH = 6


def _sampled_width(sigma_pix, k):
    """Width s [pixels] of the Gaussian exp(-k^2 / 2 s^2), sampled at whole pixels and normalised, whose
    variance sum k^2 w_k is ``sigma_pix^2`` (bisection over the offsets ``k``, |k| <= 16; s >= sigma,
    s = sigma from :data:`_SAMPLED_EXACT_SIGMA` up).

    Sampled at whole pixels, a Gaussian narrower than ~1 pixel loses most of its variance to the centre
    pixel (sigma 0.34 pixel keeps ~20 %): 2.5 -> 2.6 A on MILES' 0.9-A pixels came out 2.521 A. Widening
    the sampled Gaussian keeps its second moment, and so a line's FWHM, exact; its shape stays
    Gaussian-like (a pixel-integrated Gaussian would instead add the pixel's own variance, 1/12 pixel^2).
    """
    sig = np.asarray(sigma_pix, float)
    s = sig.copy()
    small = (sig > 0) & (sig < _SAMPLED_EXACT_SIGMA)
    if small.any():
        kk = k[np.abs(k) <= 16] ** 2          # s < 1.1 here: offsets beyond 6 weigh < exp(-15)
        target = sig[small] ** 2
        lo, hi = sig[small].copy(), sig[small] + 0.5    # variance(lo) <= target <= variance(hi)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            w = np.exp(-0.5 * kk[None, :] / mid[:, None] ** 2)
            low = (w @ kk) / w.sum(axis=1) < target
            lo, hi = np.where(low, mid, lo), np.where(low, hi, mid)
        s[small] = 0.5 * (lo + hi)
    return s


#: the last kernel sets of :func:`_gaussian_kernels` (a model's 1221 pixels: ~0.1-1 MB each), by their
#: sigma, at most _KERNELS_BYTES in all; a larger set (n x 2n for the widest kernels) is not kept
_KERNELS: OrderedDict = OrderedDict()
_KERNELS_BYTES = 64 * 2**20


def _gaussian_kernels(sig):
    """``(half, k, kern)``: the offsets ``k`` (-half..half) and the normalised kernels (n_pix, n_k) of the
    sigmas ``sig`` [pixels], read-only. Kept for the last few sigmas: a StellarPopulation with sigma_smooth
    asks for the same kernels on every call, and solving the sub-pixel widths cost 4 of its 4.3 ms."""
    key = (sig.shape, sig.tobytes())
    hit = _KERNELS.get(key)
    if hit is not None:
        return hit
    half = max(int(np.ceil(4 * sig.max())), _MIN_HALF_WIDTH)
    k = np.arange(-half, half + 1)
    safe = np.maximum(_sampled_width(sig, k), 1e-3)
    kern = np.exp(-0.5 * (k[None, :] / safe[:, None]) ** 2)      # (n_pix, n_k), one kernel per output pixel
    kern[sig < 1e-3] = (k == 0)
    kern /= kern.sum(axis=1, keepdims=True)
    k.flags.writeable = kern.flags.writeable = False
    if kern.nbytes <= _KERNELS_BYTES // 4:
        _KERNELS[key] = (half, k, kern)
        while sum(v[2].nbytes for v in list(_KERNELS.values())) > _KERNELS_BYTES:
            try:
                _KERNELS.popitem(last=False)
            except KeyError:                # another thread emptied it first
                break
    return half, k, kern


def _gaussian_smooth_variable(flux, sigma_pix, good=None):
    """Convolve the last axis with a normalised Gaussian whose sigma [pixels] varies along it.

    Each output pixel is the kernel-weighted mean of its neighbours with the sigma of that output pixel (a
    "gather"): a flat spectrum stays exactly flat; integrals are kept where sigma varies slowly (an observed
    spectrum's resolution). The kernel is a Gaussian sampled at whole pixels whose variance is sigma^2 also
    below a pixel (:func:`_sampled_width`). The ends are padded with the edge values. With ``good`` (bool,
    flux's shape), the mean is over the good pixels only (normalised convolution: the kernel weights of the
    pixels it covers that are good sum to 1), and bad pixels are NaN in the result.
    """
    half, k, kern = _gaussian_kernels(np.asarray(sigma_pix, float))
    n = flux.shape[-1]

    def smooth(values):
        padded = np.concatenate([np.repeat(values[..., :1], half, -1), values,
                                 np.repeat(values[..., -1:], half, -1)], -1)
        out = np.zeros(values.shape)
        for j, kk in enumerate(k):
            out += kern[:, j] * padded[..., half + kk:half + kk + n]
        return out

    if good is None:
        return smooth(flux)
    weight = good.astype(float)
    # every good pixel's own kernel covers itself: its total good weight is > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(good, smooth(np.where(good, flux, 0.0)) / smooth(weight), np.nan)


def _blurred_boxes(edges, flux, sigma_edge, x, block=4096):
    """Pixels as boxes between ``edges`` whose edges are blurred by Gaussians of ``sigma_edge``, at ``x``.

    The box spectrum sum_i f_i [e_i < x < e_i+1] written as a sum of steps, sum_e (f_e - f_e-1) H(x - e), each
    step blurred by its own Gaussian: sum_e (f_e - f_e-1) Phi((x - e) / s_e). A flat spectrum stays exactly
    flat, every pixel keeps its integral, and pixel i's profile has variance width_i^2/12 + (s_i^2 +
    s_i+1^2)/2. Beyond the ends the first and last values continue.
    """
    from scipy.special import ndtr

    jumps = np.diff(flux, axis=-1)                          # (..., n - 1) at the inner edges
    inner, s_in = edges[1:-1], np.maximum(sigma_edge[1:-1], 1e-6)
    out = np.empty(flux.shape[:-1] + (x.size,))
    reach = 6.0 * s_in.max()
    for start in range(0, x.size, block):
        xb = x[start:start + block]
        use = (inner > xb[0] - reach) & (inner < xb[-1] + reach)
        phi = ndtr((xb[:, None] - inner[None, use]) / s_in[None, use])       # (n_x, n_edges)
        below = inner <= xb[0] - reach                                          # steps fully passed
        out[..., start:start + block] = (flux[..., :1] + jumps[..., below].sum(-1, keepdims=True)
                                         + jumps[..., use] @ phi.T)
    return out


def _flux_values(flux):
    """``(values (float array), unit or None)`` of a flux density: a Quantity's unit is handed back to the
    caller to put on the result (np.asarray dropped it: a flux in Jy came back as bare numbers)."""
    unit = flux.unit if isinstance(flux, u.Quantity) else None
    return np.asarray(flux.value if unit is not None else flux, float), unit


def _with_unit(values, unit):
    return values if unit is None else values * unit


def _check_finite_flux(wave, flux):
    """Refuse NaN / inf flux, naming how many values and the first one's pixel: :func:`_blurred_boxes` sums
    the flux steps along the spectrum, so one such pixel made every output pixel redder of it NaN (also
    outside ``lam_range``). Model grids have none (uncovered pixels are zeros, not NaN)."""
    bad = ~np.isfinite(flux)
    if bad.any():
        first = np.unravel_index(np.flatnonzero(bad)[0], flux.shape)
        where = f" of spectrum {tuple(int(i) for i in first[:-1])}" if flux.ndim > 1 else ""
        raise ValueError(f"flux must be finite: {int(bad.sum())} of {flux.size} values are NaN or inf, the "
                         f"first at {wave[first[-1]]:g} A (pixel {first[-1]}{where}); replace or cut them "
                         "before putting the spectra on a Gaussian LSF")


def _one_float(value):
    """``value`` -- a number, numeric text or a one-element array of any shape -- as one float; NaN for
    anything else (several elements, none, not a number), for the caller's ValueError to name. A Quantity
    must be converted to the caller's unit first (its number would be taken whatever its unit)."""
    try:
        values = np.asarray(value, dtype=float).ravel()
    except (TypeError, ValueError):
        return np.nan
    return float(values[0]) if values.size == 1 else np.nan


def check_velscale(velscale):
    """``velscale`` as one float [km/s] > 0: a number, a one-element array (``c * np.diff(ln_lam[:2])``, as
    pPXF users compute it) or a speed Quantity; anything else is a ValueError naming ``velscale`` (a
    one-element array stopped in float()'s TypeError, a length in astropy's UnitConversionError)."""
    given = velscale
    if isinstance(velscale, u.Quantity):
        try:
            velscale = velscale.to_value(u.km / u.s)
        except u.UnitConversionError:
            raise ValueError(f"velscale must be a velocity step [km/s, or a speed Quantity]; got unit "
                             f"{velscale.unit}") from None
    step = _one_float(velscale)
    if not (np.isfinite(step) and step > 0):
        raise ValueError(f"velscale must be one positive velocity step [km/s]; got {given!r}")
    return step


def check_position_share(position_share):
    """``position_share`` as a float in [0, 1] (share of the sub-pixel position variance): a number, a
    one-element array (as :func:`check_velscale`; np.array([0.4]) was refused as not in [0, 1]) or a
    dimensionless Quantity; else ValueError."""
    share = position_share
    if isinstance(share, u.Quantity):
        try:
            share = share.to_value(u.dimensionless_unscaled)
        except u.UnitConversionError:
            share = np.nan
    share = _one_float(share)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"position_share must be one number in [0, 1] (share of the sub-pixel position "
                         f"variance); got {position_share!r}")
    return share


def to_gaussian_lsf(wave, flux, fwhm, velscale, lam_range=None, position_share=POSITION_SHARE):
    """Put grid spectra on a Gaussian LSF of FWHM ``fwhm`` on a log-lambda grid of ``velscale`` km/s.

    Parameters
    ----------
    wave : array-like or Quantity (n,)
        Pixel centres of the model grid [Angstrom] (e.g. ``SSPGrid.ssp_wave``).
    flux : array-like or Quantity (..., n)
        Flux densities per Angstrom on ``wave`` (any unit, kept: a Quantity comes back in its unit), any
        leading shape.
    fwhm : float, array (n,) on ``wave``, or Quantity
        Target Gaussian FWHM [Angstrom]; must be >= the native box FWHM (:func:`grid_lsf_fwhm`) at every kept
        pixel: information finer than a pixel does not exist in the templates.
    velscale : float, one-element array or Quantity
        Pixel size of the output grid [km/s] (ln-lambda step x c), e.g. the galaxy's velscale or a fraction
        (:func:`check_velscale`).
    lam_range : (min, max) [Angstrom] or Quantities (any spectral unit), optional
        Output range (default: the whole input range minus 3 native pixels at each end).
    position_share : float in [0, 1], default :data:`POSITION_SHARE` (0.45)
        Share of the sub-pixel position variance width^2 / 12 added to every line's profile, so that a
        pPXF sigma fitted against a galaxy degraded to ``fwhm`` is the galaxy's own and not inflated by the
        lines' unknown places inside their pixels (module docstring). 0: every line's profile has exactly
        the second moment of the requested Gaussian (the fitted sigma is then inflated by ~width/sqrt(12),
        ~350 km/s at 5,000 A for 20 A pixels).

    Returns
    -------
    wave_out : ndarray (m,)  log-spaced wavelengths [Angstrom]
    flux_out : ndarray or Quantity (..., m)  flux density on the Gaussian LSF, same unit as ``flux``
    fwhm_out : ndarray (m,)  the Gaussian FWHM [Angstrom] at each output pixel

    Raises
    ------
    ValueError
        ``fwhm`` smaller than the native FWHM, non-positive ``velscale``, a ``lam_range`` outside ``wave``,
        ``position_share`` outside [0, 1], or NaN / inf in ``flux`` (anywhere: it would spoil every output
        pixel redder of it).
    """
    wave = _as_aa(wave)
    flux, unit = _flux_values(flux)
    if flux.shape[-1] != wave.size:
        raise ValueError(f"flux must have last axis of length {wave.size} (the wavelength grid); got "
                         f"{flux.shape}")
    _check_finite_flux(wave, flux)
    velscale = check_velscale(velscale)
    fwhm_in = _as_fwhm(fwhm, "fwhm", wave)
    position_share = check_position_share(position_share)
    native = grid_lsf_fwhm(wave)
    if lam_range is None:
        lam_range = (wave[3], wave[-4])
    # a Quantity (400 * u.nm) stopped in float()'s TypeError "only dimensionless scalar quantities ..."
    try:
        lo, hi = (float(v.to_value(u.AA, equivalencies=u.spectral()) if isinstance(v, u.Quantity) else v)
                  for v in lam_range)
    except u.UnitConversionError:
        raise ValueError(f"lam_range must be wavelengths (Angstrom, or Quantities in e.g. nm); got "
                         f"{lam_range}") from None
    if not (wave[0] <= lo < hi <= wave[-1]):
        raise ValueError(f"lam_range must satisfy {wave[0]:g} <= min < max <= {wave[-1]:g} Angstrom; "
                         f"got {lam_range}")
    dln = velscale / C_KMS
    ln_out = np.arange(np.log(lo), np.log(hi), dln)
    lam_out = np.exp(ln_out)
    used = (wave >= lo - native) & (wave <= hi + native)
    short = used & (fwhm_in < native * (1 - 1e-9))
    if short.any():
        i = np.flatnonzero(short)[0]
        raise ValueError(f"fwhm must be >= the native box FWHM of the grid (the pixel width) at every pixel; "
                         f"at {wave[i]:g} A it is {fwhm_in[i]:g} A < {native[i]:g} A")
    # each native pixel is a box between its edges; every edge is blurred by a Gaussian chosen so that the
    # pixel's profile (box x Gaussian) has the variance of the requested Gaussian plus position_share of the
    # box variance W^2/12 (the unknown place of a line inside its pixel): s_e^2 = sigma_t^2 - (1 - share) x
    # the mean W^2/12 of the two pixels that share the edge (exact where neighbours are equal)
    shape = flux.shape
    edges = bin_edges(wave)
    w2 = native ** 2 / 12.0
    box_edge = np.concatenate([[w2[0]], 0.5 * (w2[1:] + w2[:-1]), [w2[-1]]])
    target_edge = np.interp(edges, wave, fwhm_in) / FWHM_PER_SIGMA
    sigma_edge = np.sqrt(np.clip(target_edge ** 2 - (1.0 - position_share) * box_edge, 1e-12, None))
    out = _blurred_boxes(edges, flux.reshape(-1, wave.size), sigma_edge, lam_out)
    target_sigma = np.interp(lam_out, wave, fwhm_in) / FWHM_PER_SIGMA
    return (lam_out, _with_unit(out.reshape(shape[:-1] + (lam_out.size,)), unit),
            target_sigma * FWHM_PER_SIGMA)


def degrade_to_fwhm(wave, flux, fwhm_in, fwhm_out, mask=None):
    """Degrade an observed spectrum from a Gaussian LSF of FWHM ``fwhm_in`` to one of ``fwhm_out``.

    Use it to bring a galaxy spectrum (e.g. SDSS, FWHM ~2.5-3 A) to the FWHM of templates made with
    :func:`to_gaussian_lsf`, so that a fitted velocity dispersion is the galaxy's own.

    Parameters
    ----------
    wave : array (n,) [Angstrom] or Quantity, increasing (any sampling; log-lambda is typical)
    flux : array or Quantity (..., n) (any unit, kept)
    mask : bool array (..., n) or (n,), optional
        True at bad pixels (masked sky lines, a -99 sentinel, no data). Bad pixels -- these, NaN / inf flux,
        and the masked entries of a ``numpy.ma.MaskedArray`` ``flux`` -- take no part in the smoothing: each
        output pixel is the kernel-weighted mean of its good neighbours (normalised convolution), and a bad
        pixel is NaN in the result (masked, for a MaskedArray).
    fwhm_in, fwhm_out : float, array (n,) or Quantity [Angstrom]
        Finite and >= 0 (``fwhm_in=0``: the spectrum has no LSF yet, e.g. to convolve with a velocity
        dispersion alone), ``fwhm_out >= fwhm_in`` everywhere, and ``fwhm_out`` no wider than the spectrum
        can hold: the smoothing Gaussian's sigma, in pixels of ``wave``, must be at most n / 4 at every
        pixel, so that the kernel (cut at +-4 sigma) spans at most twice the spectrum. A wider kernel would
        only average the whole spectrum with its edge padding, and its weights (n x kernel pixels) would not
        fit in memory.

    Returns
    -------
    ndarray (..., n), the smoothed flux (a Quantity in ``flux``'s unit if it was one; the convolution
    kernel is a Gaussian of sigma^2 = (fwhm_out^2 - fwhm_in^2) / 2.3548^2, whose width varies along the
    spectrum). It is sampled at the pixels of ``wave``;
    below 1 pixel its width is widened so that the sampled kernel still has variance sigma^2 (a Gaussian
    sampled at its own sigma keeps only ~20 % of it at 0.34 pixel: 2.5 -> 2.6 A on 0.9-A pixels gave
    2.521 A), so a line's FWHM (second moment) comes out as ``fwhm_out`` also for small steps. Wider
    kernels are cut at +-4 sigma (up to 1e-3 of the variance lost).

    Raises
    ------
    ValueError
        ``fwhm_in`` or ``fwhm_out`` not finite, negative, of the wrong length, ``fwhm_out < fwhm_in``, or a
        kernel wider than n / 4 pixels (sigma), with the value, where, and the allowed range.
    """
    wave = _as_aa(wave)
    # a masked pixel's value (SDSS's -99 sentinel under a MaskedArray's mask) and a NaN were smoothed into
    # their neighbours: a -99 pixel in a flux of 1 made its neighbours -9.8 .. -3.3 at 2.5 -> 5 A on 0.5-A
    # pixels, one NaN 31 pixels NaN, and the mask was dropped
    masked = np.ma.isMaskedArray(flux)
    bad = np.ma.getmaskarray(flux) if masked else np.zeros(np.shape(flux), bool)
    flux, unit = _flux_values(np.ma.getdata(flux))
    if flux.shape[-1] != wave.size:
        raise ValueError(f"flux must have last axis of length {wave.size}; got {flux.shape}")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.shape not in (flux.shape, (wave.size,)):
            raise ValueError(f"mask must be a bool array (True at bad pixels) of flux's shape {flux.shape} "
                             f"or ({wave.size},); got {mask.dtype} {mask.shape}")
        bad = bad | mask
    bad = bad | ~np.isfinite(flux)
    fin = _as_fwhm(fwhm_in, "fwhm_in", wave)
    fout = _as_fwhm(fwhm_out, "fwhm_out", wave)
    if (fout < fin * (1 - 1e-9)).any():
        i = np.flatnonzero(fout < fin * (1 - 1e-9))[0]
        raise ValueError(f"fwhm_out must be >= fwhm_in everywhere; at {wave[i]:g} A {fout[i]:g} < {fin[i]:g} "
                         "A")
    sigma_aa = np.sqrt(np.clip(fout ** 2 - fin ** 2, 0, None)) / FWHM_PER_SIGMA
    step = np.gradient(wave)
    sigma_pix = sigma_aa / step
    max_pix = wave.size / 4.0               # kernel cut at +-4 sigma: at most twice the spectrum's length
    if (sigma_pix > max_pix).any():
        i = int(np.argmax(sigma_pix > max_pix))
        limit = np.hypot(fin[i], max_pix * step[i] * FWHM_PER_SIGMA)
        raise ValueError(f"fwhm_out = {fout[i]:g} A (fwhm_in = {fin[i]:g} A) at {wave[i]:g} A needs a "
                         f"Gaussian kernel of sigma {sigma_pix[i]:.4g} pixels, wider than the spectrum can "
                         f"hold: sigma must be <= n / 4 = {max_pix:g} pixels ({wave.size} pixels), i.e. "
                         f"fwhm_out <= {limit:.6g} A there")
    out = _gaussian_smooth_variable(flux, sigma_pix, ~bad if bad.any() else None)
    if masked:
        out = np.ma.masked_array(out, mask=np.broadcast_to(bad, out.shape).copy())     # a writable mask
    return _with_unit(out, unit)
