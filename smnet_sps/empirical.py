"""Scoring generators against observed stars (MILES): shape residuals after a common degradation.

The procedure (as in shared/data/empirical/miles_calibration/README.md), for each star:

1. the observed spectrum (MILES: air wavelengths, FWHM 2.5 A, arbitrary scale, exact zeros = gaps) is
   converted to **vacuum** wavelengths (:func:`smnet_sps.medium.air_to_vacuum`; the package works in vacuum)
   and averaged, flux-conservingly, onto the prediction's own pixels, so both spectra share one pixelisation
   (pixels left out of the wavelength array, a step > :data:`GAP_FACTOR` x the local step, are a gap too:
   :func:`pixel_bounds`);
2. both are smoothed with the same Gaussian, FWHM = max(40 A, 2 x the prediction's pixel step), evaluated on a
   20 A grid 3610-7350 A (:data:`COMPARISON_GRID`), each point normalised by the kernel weight of its valid
   pixels (a point whose valid pixels carry < 80 % of the kernel is dropped);
3. the smooth, low-order shape errors of flux calibration and reddening are divided out: a 3rd-order
   polynomial in 1/lambda is fitted to log(prediction / observed) with iterative 3-sigma clipping (sigma from
   the MAD);
4. residual = prediction / observed / exp(polynomial) - 1 on the grid; the star's score is the median
   |residual| (NaN if fewer than half of the grid points are valid);
5. a set of stars is summarised by the median (and 90th percentile) of the per-star scores, overall and per
   class: Teff < 4000, 4000-5500, 5500-7000, 7000-10000, >= 10000 K; log g < 3.5 (giants) / >= 3.5 (dwarfs).

Pure functions and small containers only: the ``smnet-sps validate`` command lives in
:mod:`smnet_sps.evaluate`, and the baselines (interpolated libraries, nearest observed star) in
:mod:`smnet_sps.baselines`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .constants import PARAMETER_DOMAINS
from .medium import _as_angstrom, air_to_vacuum

__all__ = ["EmpiricalStars", "load_empirical", "ComparisonOperator", "EmpiricalScore", "COMPARISON_GRID",
           "COMPARISON_FWHM", "SHAPE_ORDER", "CLIP_SIGMA", "TEFF_CLASSES", "LOGG_SPLIT", "CLASS_NAMES",
           "shape_residuals", "remove_shape", "star_score", "score_spectra", "score_generator", "class_stats",
           "teff_class", "kfold_ids", "format_class_table", "class_table", "plot_worst_residuals",
           "MAX_WORST_STARS", "pixel_bounds", "overlap_matrix", "GAP_FACTOR", "observed_fraction",
           "check_scorable", "unscored_lines"]

COMPARISON_STEP = 20.0                                            # [A]
COMPARISON_GRID = 3610.0 + COMPARISON_STEP * np.arange(188)       # 3610 ... 7350 A (vacuum)
COMPARISON_FWHM = 40.0                                            # [A], = 2 x COMPARISON_STEP (Nyquist)
SHAPE_ORDER = 3
CLIP_SIGMA = 3.0
MIN_BIN_COVERAGE = 0.5       # a prediction pixel needs >= half of its width covered by valid observed pixels
MIN_KERNEL_WEIGHT = 0.8      # a grid point needs >= 80 % of its kernel on valid pixels
MIN_VALID_FRACTION = 0.5     # a star needs >= half of the grid to get a score
GAP_FACTOR = 3.0             # an observed step > 3 x the local step on both sides is a gap without data
GAP_WINDOW = 5               # the local step: median of this many steps on each side
DEFAULT_WORST_STARS = 8      # panels of the worst-residual plot unless asked (validate --worst)
MAX_WORST_STARS = 50         # a panel per star: 100 took 10-22 s (a 150-inch figure), 1000 ran for minutes

TEFF_CLASSES = (("Teff<4000", 0.0, 4000.0), ("Teff 4000-5500", 4000.0, 5500.0),
                ("Teff 5500-7000", 5500.0, 7000.0), ("Teff 7000-10000", 7000.0, 10000.0),
                ("Teff>=10000", 10000.0, np.inf))
LOGG_SPLIT = 3.5             # log g < 3.5: giants; >= 3.5: dwarfs
CLASS_NAMES = ("all",) + tuple(c[0] for c in TEFF_CLASSES) + ("giants (logg<3.5)", "dwarfs (logg>=3.5)")


# ------------------------------------------------------------------------------------------------ data
@dataclass
class EmpiricalStars:
    """Observed stars on one wavelength grid.

    Attributes
    ----------
    star_id : ndarray (n,) int, catalogue number (MILES: ``miles_id``)
    teff, logg, logz : ndarray (n,), Teff [K], log g [cgs], [M/H] [dex] (MILES gives [Fe/H]; used as [M/H])
    wavelength : ndarray (n_pix,), **vacuum** wavelength [A]
    flux : ndarray (n, n_pix), relative F_lambda (arbitrary scale per star); NaN in gaps
    name : str
    """

    star_id: np.ndarray
    teff: np.ndarray
    logg: np.ndarray
    logz: np.ndarray
    wavelength: np.ndarray
    flux: np.ndarray
    name: str = "empirical"
    meta: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.star_id)

    def rows(self, ids):
        """Row indices of the stars numbered ``ids`` (ValueError naming unknown numbers)."""
        lookup = {int(s): i for i, s in enumerate(self.star_id)}
        ids = _star_numbers(ids)
        unknown = [int(i) for i in ids if int(i) not in lookup]
        if unknown:
            raise ValueError(f"star numbers {unknown[:10]} are not in {self.name} ({len(self)} stars, "
                             f"numbers {int(self.star_id.min())}..{int(self.star_id.max())})")
        return np.array([lookup[int(i)] for i in ids], int)

    def select(self, ids):
        """The subset of stars numbered ``ids`` (in that order; each star once: a repeated star counted twice
        in every class and was its own nearest other star)."""
        ids = _star_numbers(ids)
        values, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"star numbers {values[counts > 1][:10].tolist()} are given more than once; "
                             "select each star once")
        r = self.rows(ids)
        return EmpiricalStars(self.star_id[r], self.teff[r], self.logg[r], self.logz[r], self.wavelength,
                              self.flux[r], self.name, dict(self.meta))


def _star_numbers(ids):
    """``ids`` as a 1-d integer array; ValueError for anything but whole numbers (star 2.5 was taken as
    star 2, '3' as 3)."""
    arr = np.atleast_1d(np.asarray(ids))
    if arr.dtype.kind in "iu":
        return arr.astype(int)
    if arr.dtype.kind != "f" or arr.ndim != 1 or not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
        raise ValueError(f"star numbers must be whole numbers (integers); got {ids!r}")
    return arr.astype(int)


def _check_star_arrays(path, d):
    """ValueError naming ``path`` and the key unless the arrays of an empirical set fit together:
    ``miles_id``, ``teff``, ``logg``, ``feh`` 1-d of one length n >= 1 (the parameters finite and inside
    :data:`~smnet_sps.constants.PARAMETER_DOMAINS`), ``wave`` 1-d, finite, positive and strictly increasing
    (>= 3 pixels), ``flux`` of shape (n, len(wave)), ``miles_id`` whole numbers (integers, or whole floats).

    Unchecked, a (n, 1) ``miles_id`` made the nearest-star baseline allocate 65 GiB, a flux of the wrong
    shape failed deep in numpy or was blamed on the prediction, and star number 2.5 became 2.
    """
    for key in ("miles_id", "teff", "logg", "feh", "wave"):
        if d[key].ndim != 1:
            what = "one value per pixel" if key == "wave" else "one value per star"
            raise ValueError(f"{path}: '{key}' must be a 1-d array ({what}); got shape {d[key].shape}")
    n = d["miles_id"].size
    if n < 1:
        raise ValueError(f"{path}: holds no stars ('miles_id' is empty); an empirical set needs >= 1 star")
    for key in ("teff", "logg", "feh"):
        if d[key].size != n:
            raise ValueError(f"{path}: '{key}' has {d[key].size} values for {n} stars ('miles_id'); "
                             "each star needs one")
    for key in ("teff", "logg", "feh"):
        # a NaN here failed later inside the generator ("logz has 1 non-finite value(s) (first at index 3)")
        bad = ~np.isfinite(np.asarray(d[key], float))
        if bad.any():
            raise ValueError(f"{path}: '{key}' is not finite for {int(bad.sum())} of {n} stars (miles_id "
                             f"{d['miles_id'][bad][:10].tolist()}); every star needs a finite teff, logg and "
                             "feh: leave such stars out of the set")
    for key, name in (("teff", "teff"), ("logg", "logg"), ("feh", "logz")):
        # outside the generators' domain the model refused the star after loading (calibrate: after the base
        # model too) as "teff = 0 (index 3)": a row of the (--ids) subset, naming neither file nor star
        (lo, hi), unit = PARAMETER_DOMAINS[name]
        v = np.asarray(d[key], float)
        bad = (v < lo) | (v > hi)
        if bad.any():
            raise ValueError(f"{path}: '{key}' is outside the physical domain {lo:g} .. {hi:g} {unit} for "
                             f"{int(bad.sum())} of {n} stars (miles_id {d['miles_id'][bad][:10].tolist()}: "
                             f"{v[bad][:10].tolist()}); leave such stars out of the set")
    wave = np.asarray(d["wave"], float)
    bad = ~np.isfinite(wave) | (wave <= 0)
    if bad.any():
        raise ValueError(f"{path}: 'wave' must hold finite, positive wavelengths [A, air]; {int(bad.sum())} "
                         f"of {wave.size} are not (first at pixel {int(np.argmax(bad))})")
    steps = np.diff(wave)
    if wave.size < 3 or (steps <= 0).any():
        # unchecked, a decreasing 'wave' was called too narrow by calibrate ("covers 7412-3541 A"), a
        # repeated wavelength calibrated a correction without a word, and validate failed after loading the
        # model with "obs_wavelength must be a strictly increasing 1-d array", naming neither file nor key
        k = int(np.argmax(steps <= 0)) if steps.size else 0
        where = (f"pixels {k} and {k + 1} hold {wave[k]:.6g} then {wave[k + 1]:.6g} A" if wave.size >= 3
                 else f"it has {wave.size} pixel(s)")
        raise ValueError(f"{path}: 'wave' must increase strictly over >= 3 pixels, with 'flux' in the same "
                         f"order; {where}")
    expected = (n, d["wave"].size)
    if d["flux"].shape != expected:
        raise ValueError(f"{path}: 'flux' has shape {d['flux'].shape}; expected (stars, pixels) = "
                         f"{expected}: a row per star ('miles_id'), a column per wavelength ('wave')")
    ids = d["miles_id"]
    if np.issubdtype(ids.dtype, np.integer):
        return
    # floats are fine when they are whole (np.savez of a float table); anything else is not a star number
    bad = (ids[~np.isfinite(ids) | (ids != np.round(ids))] if np.issubdtype(ids.dtype, np.floating)
           else ids)
    if bad.size:
        raise ValueError(f"{path}: 'miles_id' must hold whole star numbers (integers); got "
                         f"{bad[:5].tolist()} (dtype {ids.dtype})")


def load_empirical(directory):
    """Read an empirical set: a directory holding one ``.npz`` in the MILES calibration layout (or that file).

    Keys: ``miles_id``, ``teff``, ``logg``, ``feh``, ``wave`` (air, A), ``flux`` (n, n_pix; exact 0 = gap).
    Wavelengths are converted to vacuum; gaps become NaN. A ``miles_id`` given twice is refused
    (ValueError), as are a file that cannot be read (damaged, object arrays: ValueError naming it) and
    arrays that do not fit together (:func:`_check_star_arrays`: n >= 1 stars, one ``miles_id`` / ``teff``
    / ``logg`` / ``feh`` each, finite and in the generators' domain, ``wave`` finite and strictly
    increasing, ``flux`` of shape (n, len(wave)), whole star numbers).
    """
    path = Path(directory)
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.suffix.lower() == ".npz")   # STARS.NPZ too
        if len(files) != 1:
            raise ValueError(f"{path}: expected exactly one .npz file of stars, found {len(files)}")
        path = files[0]
    if not path.is_file():
        raise FileNotFoundError(f"empirical set not found: {directory}")
    import zipfile
    if path.suffix.lower() != ".npz" or not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: an empirical set is a .npz in the MILES calibration layout (or a "
                         "directory holding one); see shared/data/empirical/miles_calibration/README.md")
    from .checksums import read_npz
    need = ("miles_id", "teff", "logg", "feh", "wave", "flux")
    # a damaged member (zlib's error, a bad CRC) or an object array stopped validate / calibrate with a
    # traceback naming neither the file nor the key: read_npz names the file, as for every .npz read here
    d = read_npz(path, "empirical set in the MILES calibration layout",
                 remedy="re-write or re-copy it (numeric arrays, no Python objects)", keys=need)
    missing = [k for k in need if k not in d]
    if missing:
        raise ValueError(f"{path} lacks keys {missing}; an empirical set needs {list(need)}")
    _check_star_arrays(path, d)
    ids, counts = np.unique(d["miles_id"].astype(int), return_counts=True)
    if (counts > 1).any():
        # stars are looked up by number: a repeated one left a row that no lookup reached (calibrate's
        # cross-validation gave it no fold and no score, and trained on it in every fold)
        raise ValueError(f"{path}: star numbers (miles_id) {ids[counts > 1][:10].tolist()} are given more "
                         "than once; each star needs its own number")
    flux = d["flux"].astype(np.float64)
    flux[~np.isfinite(flux) | (flux == 0.0)] = np.nan
    wave_vac = air_to_vacuum(d["wave"].astype(float))
    return EmpiricalStars(d["miles_id"].astype(int), d["teff"].astype(float), d["logg"].astype(float),
                          d["feh"].astype(float), wave_vac, flux, name=path.stem,
                          meta={"file": str(path), "medium_in_file": "air", "medium": "vacuum"})


# -------------------------------------------------------------------------------------- the operator
def _pixel_edges(centres):
    """The n + 1 edges of contiguous pixels centred at ``centres``: midpoints, the end pixels extended by half
    their step (for a model's own grid; observed pixels: :func:`pixel_bounds`)."""
    mid = 0.5 * (centres[1:] + centres[:-1])
    return np.concatenate([[2 * centres[0] - mid[0]], mid, [2 * centres[-1] - mid[-1]]])


def _steps_around(steps, k=GAP_WINDOW):
    """Median of the ``k`` steps before and of the ``k`` steps after each step (NaN where there are none)."""
    from numpy.lib.stride_tricks import sliding_window_view
    pad = np.concatenate([np.full(k, np.nan), steps, np.full(k, np.nan)])
    win = sliding_window_view(pad, k)                 # win[j] = steps[j - k:j]
    return median_of_values(win[:steps.size], 1), median_of_values(win[k + 1:k + 1 + steps.size], 1)


def pixel_bounds(centres):
    """Lower and upper bound [A] of the pixels centred at ``centres`` (increasing), each (n,).

    Pixels meet at the midpoints and the end pixels reach half their step out, except across a gap: a step
    more than :data:`GAP_FACTOR` x the median step on both sides (:data:`GAP_WINDOW` steps each), i.e. pixels
    dropped from the array (a chip gap, a masked band). There each neighbour reaches only half the local step,
    so the gap holds no data, as a gap stored as zeros (midpoint edges stretched the two pixels over 300 A
    each of a 600 A gap, and the comparison 'observed' a flat spectrum across absorption bands).
    """
    c = np.asarray(centres, float)
    edges = _pixel_edges(c)
    lo, hi = edges[:-1].copy(), edges[1:].copy()
    steps = np.diff(c)
    before, after = _steps_around(steps)
    with np.errstate(invalid="ignore"):
        gap = np.flatnonzero(steps > GAP_FACTOR * np.fmax(before, after))       # NaN (no neighbours): none
    hi[gap] = c[gap] + 0.5 * np.where(np.isfinite(before[gap]), before[gap], after[gap])
    lo[gap + 1] = c[gap + 1] - 0.5 * np.where(np.isfinite(after[gap]), after[gap], before[gap])
    return lo, hi


def overlap_matrix(edges_in, edges_out):
    """Sparse (n_out, n_in) matrix of the overlap length [A] of output bin j with input pixel k.

    ``edges_in``: the n_in + 1 edges of contiguous input pixels, or their (lo, hi) bounds (each (n_in,),
    increasing: :func:`pixel_bounds`, where the pixels beside a gap do not meet); ``edges_out``: n_out + 1
    contiguous edges.
    """
    from scipy import sparse
    if isinstance(edges_in, tuple):
        lo_in, hi_in = (np.asarray(a, float) for a in edges_in)
    else:
        lo_in, hi_in = edges_in[:-1], edges_in[1:]
    rows, cols, vals = [], [], []
    k0 = np.searchsorted(hi_in, edges_out[:-1], side="right")       # first input pixel ending after the start
    k1 = np.searchsorted(lo_in, edges_out[1:], side="left")        # past the last one starting before its end
    for j in range(len(edges_out) - 1):
        ks = np.arange(max(k0[j], 0), min(k1[j], lo_in.size))
        if ks.size == 0:
            continue
        ov = np.minimum(hi_in[ks], edges_out[j + 1]) - np.maximum(lo_in[ks], edges_out[j])
        keep = ov > 0
        rows.append(np.full(keep.sum(), j))
        cols.append(ks[keep])
        vals.append(ov[keep])
    shape = (len(edges_out) - 1, lo_in.size)
    if not rows:
        return sparse.csr_matrix(shape)
    return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=shape)


class ComparisonOperator:
    """Steps 1-2 of the procedure for one prediction wavelength grid and one observed wavelength grid.

    Parameters
    ----------
    pred_wavelength : ndarray [A] or Quantity, the prediction's pixel centres (vacuum, increasing)
    obs_wavelength : ndarray [A] or Quantity, the observed pixel centres (vacuum, increasing)
    grid : ndarray, comparison points [A] (default :data:`COMPARISON_GRID`)
    fwhm : float or None, Gaussian FWHM [A]; None = max(:data:`COMPARISON_FWHM`, 2 x the prediction's step)
    """

    def __init__(self, pred_wavelength, obs_wavelength, grid=COMPARISON_GRID, fwhm=None):
        from scipy.special import ndtr
        # a Quantity axis in its unit (np.asarray read a Spectrum's axis in nm as Angstrom: scored, wrongly)
        w = _as_angstrom(pred_wavelength, "pred_wavelength")[0]
        ow = _as_angstrom(obs_wavelength, "obs_wavelength")[0]
        if w.ndim != 1 or w.size < 3 or np.any(np.diff(w) <= 0):
            raise ValueError("pred_wavelength must be a strictly increasing 1-d array of >= 3 pixels")
        if ow.ndim != 1 or ow.size < 3 or np.any(np.diff(ow) <= 0):
            raise ValueError("obs_wavelength must be a strictly increasing 1-d array of >= 3 pixels")
        self.grid = np.asarray(grid, float)
        edges, obs_bounds = _pixel_edges(w), pixel_bounds(ow)
        obs_lo, obs_hi = obs_bounds[0][0], obs_bounds[1][-1]
        in_grid = (w >= self.grid[0]) & (w <= self.grid[-1])
        self.pixel_step = (float(np.median(np.diff(w[in_grid]))) if in_grid.sum() > 2
                           else float(np.median(np.diff(w))))
        self.fwhm = float(fwhm) if fwhm is not None else max(COMPARISON_FWHM, 2.0 * self.pixel_step)
        sigma = self.fwhm / np.sqrt(8.0 * np.log(2.0))
        # prediction pixels lying wholly inside the observed range and within 5 sigma of the comparison grid
        use = ((edges[:-1] >= obs_lo) & (edges[1:] <= obs_hi)
               & (w >= self.grid[0] - 5 * sigma) & (w <= self.grid[-1] + 5 * sigma))
        self.pixels = np.flatnonzero(use)
        if self.pixels.size < 3:
            raise ValueError("the prediction has < 3 pixels inside the observed range "
                             f"{ow[0]:.0f}-{ow[-1]:.0f} A")
        if np.any(np.diff(self.pixels) != 1):
            raise ValueError("the prediction's pixels inside the observed range must be contiguous")
        e = np.concatenate([edges[self.pixels], [edges[self.pixels[-1] + 1]]])
        self._overlap = overlap_matrix(obs_bounds, e)             # (n_used, n_obs) [A]
        self._width = np.diff(e)
        # the Gaussian integrated over each (piecewise-constant) prediction pixel
        z = (e[None, :] - self.grid[:, None]) / sigma
        self._kernel = np.diff(ndtr(z), axis=1)                   # (n_grid, n_used)

    def observed_on_pixels(self, obs_flux):
        """Observed spectra (n, n_obs; NaN = gap) averaged onto the used prediction pixels
        -> (mean, coverage)."""
        f = np.atleast_2d(np.asarray(obs_flux, float))
        good = np.isfinite(f)
        num = self._overlap @ np.where(good, f, 0.0).T            # (n_used, n)
        cov = self._overlap @ good.T.astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (num / cov).T, (cov / self._width[:, None]).T

    def smooth_pair(self, pred_flux, obs_flux):
        """Both spectra degraded identically on the grid -> (pred_s, obs_s, valid), each (n, n_grid)."""
        p = np.atleast_2d(np.asarray(pred_flux, float))[:, self.pixels]
        m, cov = self.observed_on_pixels(obs_flux)
        valid = np.isfinite(p) & (p > 0) & np.isfinite(m) & (m > 0) & (cov >= MIN_BIN_COVERAGE)
        wsum = valid.astype(float) @ self._kernel.T
        with np.errstate(invalid="ignore", divide="ignore"):
            ps = (np.where(valid, p, 0.0) @ self._kernel.T) / wsum
            ms = (np.where(valid, m, 0.0) @ self._kernel.T) / wsum
        ok = (wsum >= MIN_KERNEL_WEIGHT) & (ps > 0) & (ms > 0)
        return ps, ms, ok


# ---------------------------------------------------------------------------------- shape removal
def _shape_abscissa(grid):
    """1/lambda mapped linearly onto [-1, 1] (extinction and Wien slopes are near-polynomial in 1/lambda)."""
    x = 1.0 / np.asarray(grid, float)
    return 2.0 * (x - x.min()) / (x.max() - x.min()) - 1.0


def remove_shape(log_ratio, x, order=SHAPE_ORDER, clip_sigma=CLIP_SIGMA, max_iter=10):
    """Fit a polynomial of ``order`` in ``x`` to ``log_ratio`` (NaN = unusable) with iterative sigma clipping.

    Returns (fitted polynomial values on x, mask of the points kept by the final fit); NaN values if fewer
    than 2 (order + 1) points are usable. Sigma = 1.4826 x the MAD of the kept residuals.
    """
    y = np.asarray(log_ratio, float)
    usable = np.isfinite(y)
    if usable.sum() < 2 * (order + 1):
        return np.full(y.shape, np.nan), usable
    V = np.vander(x, order + 1)
    keep = usable.copy()
    for _ in range(max_iter):
        coef = np.linalg.lstsq(V[keep], y[keep], rcond=None)[0]
        r = y - V @ coef
        rk = r[keep]
        sigma = 1.4826 * np.median(np.abs(rk - np.median(rk)))
        if not sigma > 0:
            break
        new = usable & (np.abs(r) <= clip_sigma * sigma)
        if new.sum() < 2 * (order + 1) or np.array_equal(new, keep):
            break
        keep = new
    coef = np.linalg.lstsq(V[keep], y[keep], rcond=None)[0]
    return V @ coef, keep


def shape_residuals(pred_s, obs_s, ok, grid=COMPARISON_GRID, order=SHAPE_ORDER):
    """Residual pred/obs/exp(poly) - 1 per star, (n, n_grid), NaN where not ok (steps 3-4)."""
    x = _shape_abscissa(grid)
    out = np.full(np.shape(pred_s), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        lr = np.where(ok, np.log(np.where(ok, pred_s, 1.0) / np.where(ok, obs_s, 1.0)), np.nan)
    for i in range(lr.shape[0]):
        poly, _ = remove_shape(lr[i], x, order)
        out[i] = np.expm1(lr[i] - poly)
    out[~ok] = np.nan
    return out


def median_of_values(values, axis):
    """``np.nanmedian(values, axis)`` of a 2-d array, NaN where a row (axis=1) or column (axis=0) has no
    value, without numpy's all-NaN RuntimeWarning: the median is taken only over the lines that have a
    value (catch_warnings, which would silence it, swaps the process-wide filters: not thread-safe)."""
    values = np.asarray(values, float)
    if values.ndim != 2 or axis not in (0, 1):
        raise ValueError(f"median_of_values takes a 2-d array and axis 0 or 1; got shape {values.shape}, "
                         f"axis {axis!r}")
    seen = ~np.isnan(values).all(axis=axis)
    out = np.full(seen.size, np.nan)
    out[seen] = np.nanmedian(np.compress(seen, values, axis=1 - axis), axis=axis)
    return out


def star_score(residuals):
    """Per star: median |residual| over the valid grid points; NaN if < half of the grid is valid."""
    r = np.atleast_2d(np.asarray(residuals, float))
    finite = np.isfinite(r)
    med = median_of_values(np.abs(r), axis=1)
    return np.where(finite.mean(1) >= MIN_VALID_FRACTION, med, np.nan)


def observed_fraction(stars, pred_wavelength):
    """Per star (n,), the fraction of the comparison grid its observed data can score on ``pred_wavelength``
    [A, vacuum] whatever the prediction (a grid point needs :data:`MIN_KERNEL_WEIGHT` of its kernel on
    observed pixels); a star under :data:`MIN_VALID_FRACTION` gets no score."""
    w, g = stars.wavelength, COMPARISON_GRID
    if w[-1] <= g[0] or w[0] >= g[-1]:
        # no grid point inside the set: 0 for every star (the operator, built on no pixel, failed with "the
        # prediction has < 3 pixels inside the observed range", naming neither the set nor the grid)
        return np.zeros(len(stars))
    op = ComparisonOperator(pred_wavelength, stars.wavelength)
    _, _, ok = op.smooth_pair(np.ones((len(stars), np.size(pred_wavelength))), stars.flux)
    return ok.mean(1)


def check_scorable(stars, pred_wavelength):
    """ValueError naming the set's wavelength range against the comparison grid when no star of ``stars``
    has data on half of the grid (the report was a table of '-' and an all-NaN per_star.csv, exit status 0);
    returns :func:`observed_fraction`."""
    frac = observed_fraction(stars, pred_wavelength)
    if not (frac >= MIN_VALID_FRACTION).any():
        w, g = stars.wavelength, COMPARISON_GRID
        raise ValueError(f"{stars.meta.get('file', stars.name)}: no star can be scored: the set covers "
                         f"{w[0]:.0f}-{w[-1]:.0f} A (vacuum), the comparison grid is {g[0]:.0f}-{g[-1]:.0f} "
                         f"A, and a star needs data on at least {MIN_VALID_FRACTION:.0%} of it (here at most "
                         f"{frac.max():.0%})")
    return frac


def unscored_lines(scores):
    """Markdown lines naming, per source, the stars the tables leave out because their score is NaN (a
    non-finite prediction, or under half of the comparison grid valid): the tables' counts alone hid 37 of
    40 NaN predictions in calibrate's report."""
    lines = []
    for s in scores:
        missing = ~np.isfinite(np.asarray(s.score, float))
        if missing.any():
            shown = ", ".join(str(int(i)) for i in s.star_id[missing][:20])
            more = ", ..." if missing.sum() > 20 else ""
            lines.append(f"- {s.name}: {int(missing.sum())} of {missing.size} stars (numbers {shown}{more})")
    if not lines:
        return ["Every star has a score from every source."]
    return ["Left out of the tables above (a non-finite prediction, or under half of the comparison grid "
            "valid: gaps in the observed spectrum, or a set narrower than the grid):", ""] + lines


# ------------------------------------------------------------------------------------------ scores
@dataclass
class EmpiricalScore:
    """The outcome of scoring one spectrum source against a set of stars.

    ``residual`` (n, n_grid) on ``grid`` [A]; ``score`` (n,) per-star median |residual| (fraction);
    ``inside`` (n,) the generator's coverage flags (all True for sources without any).
    """

    name: str
    star_id: np.ndarray
    teff: np.ndarray
    logg: np.ndarray
    logz: np.ndarray
    residual: np.ndarray
    score: np.ndarray
    inside: np.ndarray
    grid: np.ndarray = field(default_factory=lambda: COMPARISON_GRID.copy())
    fwhm: float = COMPARISON_FWHM

    def stats(self):
        """:func:`class_stats` of the per-star scores."""
        return class_stats(self.score, self.teff, self.logg)

    def subset(self, rows):
        rows = np.asarray(rows)
        return EmpiricalScore(self.name, self.star_id[rows], self.teff[rows], self.logg[rows],
                              self.logz[rows],
                              self.residual[rows], self.score[rows], self.inside[rows], self.grid, self.fwhm)


def score_spectra(name, pred_wavelength, pred_flux, stars, inside=None, fwhm=None):
    """Score predictions ``pred_flux`` (n, n_pix) on ``pred_wavelength`` [A, vacuum; or a Quantity in any
    wavelength unit, e.g. a Spectrum's ``spectral_axis``] against ``stars`` (row i against star i)
    -> :class:`EmpiricalScore`."""
    pred_flux = np.atleast_2d(np.asarray(pred_flux, float))
    if pred_flux.shape[0] != len(stars):
        raise ValueError(f"pred_flux has {pred_flux.shape[0]} rows for {len(stars)} stars")
    op = ComparisonOperator(pred_wavelength, stars.wavelength, fwhm=fwhm)
    ps, ms, ok = op.smooth_pair(pred_flux, stars.flux)
    res = shape_residuals(ps, ms, ok, op.grid)
    inside = np.ones(len(stars), bool) if inside is None else np.asarray(inside, bool)
    return EmpiricalScore(name, stars.star_id.copy(), stars.teff.copy(), stars.logg.copy(), stars.logz.copy(),
                          res, star_score(res), inside, op.grid.copy(), op.fwhm)


def score_generator(gen, stars, library=None, name=None):
    """Score a :class:`~smnet_sps.generator.Generator` at the stars' (Teff, log g, [M/H]).

    ``library`` is passed on to generators that imitate libraries (NeuralGenerator). Points outside the
    generator's coverage are scored too (their flag is kept in ``inside``).
    """
    from .generator import _quiet_coverage
    kw = {"library": library} if library is not None else {}
    with _quiet_coverage():
        flux, inside = gen.surface_flux(stars.teff, stars.logg, stars.logz, **kw)
    label = name or (f"{gen.name} [{library}]" if library else gen.name)
    return score_spectra(label, gen.wavelength, flux, stars, inside)


def teff_class(teff):
    """Index into :data:`TEFF_CLASSES` of each Teff [K]."""
    edges = np.array([c[2] for c in TEFF_CLASSES[:-1]])
    return np.searchsorted(edges, np.asarray(teff, float), side="right")


def _summary(v):
    v = np.asarray(v, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"n": 0, "median": np.nan, "p90": np.nan}
    return {"n": int(v.size), "median": float(np.median(v)), "p90": float(np.percentile(v, 90))}


def class_stats(score, teff, logg):
    """{class name: {n, median, p90}} of per-star scores, for every name in :data:`CLASS_NAMES`."""
    score, teff, logg = (np.asarray(a, float) for a in (score, teff, logg))
    cls = teff_class(teff)
    out = {"all": _summary(score)}
    for k, (name, _, _) in enumerate(TEFF_CLASSES):
        out[name] = _summary(score[cls == k])
    out[CLASS_NAMES[-2]] = _summary(score[logg < LOGG_SPLIT])
    out[CLASS_NAMES[-1]] = _summary(score[logg >= LOGG_SPLIT])
    return out


def class_table(scores):
    """astropy Table: one row per class, per source the number of stars, median and p90 [per cent]."""
    from astropy.table import Table
    t = Table()
    t["class"] = list(CLASS_NAMES)
    for s in scores:
        st = s.stats()
        t[f"{s.name} n"] = [st[c]["n"] for c in CLASS_NAMES]
        t[f"{s.name} median %"] = [100 * st[c]["median"] for c in CLASS_NAMES]
        t[f"{s.name} p90 %"] = [100 * st[c]["p90"] for c in CLASS_NAMES]
    return t


def format_class_table(scores, stat="median"):
    """Markdown: classes x sources, the ``stat`` ("median" or "p90") of per-star scores [per cent] (n
    stars)."""
    head = "| class | " + " | ".join(s.name for s in scores) + " |"
    lines = [head, "|---" * (len(scores) + 1) + "|"]
    stats = [s.stats() for s in scores]
    for c in CLASS_NAMES:
        cells = []
        for st in stats:
            v = st[c]
            cells.append("-" if v["n"] == 0 else f"{100 * v[stat]:.2f} ({v['n']})")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ k-fold
def kfold_ids(star_id, teff, k=5, seed=0):
    """Stratified k-fold split of stars: a list of k (tune_ids, held_out_ids) pairs.

    Stars are shuffled (seeded) within each Teff class of :data:`TEFF_CLASSES` and dealt round-robin into
    the k folds, so every fold holds ~1/k of each class; every star is held out exactly once.
    """
    star_id = np.asarray(star_id, int)
    if int(k) < 2 or int(k) > star_id.size:
        raise ValueError(f"k must be between 2 and the number of stars ({star_id.size}); got {k}")
    rng = np.random.default_rng(seed)
    fold = np.empty(star_id.size, int)
    cls = teff_class(teff)
    offset = 0
    for c in np.unique(cls):
        rows = np.flatnonzero(cls == c)
        rows = rows[rng.permutation(rows.size)]
        fold[rows] = (offset + np.arange(rows.size)) % k
        offset += rows.size             # continue dealing where the last class stopped: balanced fold sizes
    return [(star_id[fold != f], star_id[fold == f]) for f in range(int(k))]


# ------------------------------------------------------------------------------------------ plot
def plot_worst_residuals(score, n=DEFAULT_WORST_STARS):
    """Figure: the ``n`` stars with the largest per-star score, residual (per cent) vs wavelength [A] (stars
    without a score are left out: fewer panels, or one saying so, when fewer than ``n`` have one).

    One panel per star (1.5 inch high), labelled with its number, parameters and score; ``n`` is 1 to
    :data:`MAX_WORST_STARS` (ValueError otherwise).
    """
    import matplotlib.pyplot as plt
    if isinstance(n, (bool, np.bool_)) or int(n) != n or not 1 <= n <= MAX_WORST_STARS:
        raise ValueError(f"n must be a number of stars from 1 to {MAX_WORST_STARS} (one panel each); "
                         f"got {n!r}")
    order = np.argsort(np.where(np.isfinite(score.score), -score.score, np.inf))[:int(n)]
    # a star without a score is not among the worst: it filled the panels past the scored stars, titled
    # "worst 8 stars" and labelled "median |res| nan %"
    order = order[np.isfinite(score.score[order])]
    n = max(len(order), 1)
    fig, axes = plt.subplots(n, 1, figsize=(8, 1.5 * n + 0.8), sharex=True, squeeze=False)
    for ax, i in zip(axes[:, 0], order):
        ax.axhline(0, color="0.6", lw=0.8)
        ax.plot(score.grid, 100 * score.residual[i], color="C3", lw=1.2)
        # the star's label as the panel's title, above the data: written inside the axes (top left) it lay
        # over the residual curve, whose largest excursions are at the blue end, under the label
        ax.set_title(f"#{score.star_id[i]}  Teff {score.teff[i]:.0f} K  log g {score.logg[i]:.2f}  "
                     f"[M/H] {score.logz[i]:+.2f}  median |res| {100 * score.score[i]:.2f} %",
                     loc="left", fontsize=8, pad=2)
        ax.set_ylabel("res [%]")
    if not len(order):
        axes[0, 0].text(0.5, 0.5, "no star has a score", transform=axes[0, 0].transAxes, ha="center")
    axes[-1, 0].set_xlabel("vacuum wavelength [A]")
    fig.suptitle(f"{score.name}: worst {len(order)} stars (shape-normalised, {score.fwhm:g} A FWHM)",
                 fontsize=10)
    fig.tight_layout()
    return fig
