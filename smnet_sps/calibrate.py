"""Calibrating the semi-empirical correction (:mod:`smnet_sps.semi_empirical`) on observed stars.

Procedure (docs/semi_empirical.md):

1. Each observed star (MILES, air wavelengths, 2.5 A FWHM) is converted to vacuum and binned flux-conservingly
   onto the base model's pixels (~20 A in the optical); pixels not fully covered by good data are masked.
2. The target is y = ln(F_obs / F_base) at the star's catalogue parameters.
3. A small MLP c(lambda; log Teff, log g, [M/H]) (:class:`~smnet_sps.semi_empirical.CorrectionNet`) is fitted
   with a loss blind to each star's smooth shape: per star, the residual y - c has a cubic in 1/lambda fitted
   (masked least squares) and removed inside the loss; the loss is a pseudo-Huber of what remains (robust
   to the few peculiar stars). Catalogue parameters carry errors (~60-100 K, 0.2 dex in log g, 0.1 dex in
   [Fe/H]): the inputs are jittered with Gaussian noise of that size each step (plus weight decay), so the
   network learns the correction smoothed over the error ellipsoid instead of memorising stars.
4. k-fold cross-validation by star (stratified by Teff class) scores held-out stars with the shared empirical
   comparison procedure; the final correction is an ensemble fitted on all stars.

Everything is seeded (torch + numpy, one thread): the same inputs give the same weights.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .medium import air_to_vacuum
from .semi_empirical import (FORMAT, CorrectionNet, density_to_weight, file_sha256, kernel_density,
                             low_order_basis, wavelength_taper)

__all__ = ["CalibrationSettings", "load_empirical_set", "bin_onto_pixels", "prepare", "fit_correction",
           "stratified_folds", "cross_validate", "calibrate", "add_cli"]

EMPIRICAL_FILE = "miles_v9.1_calibration_stars.npz"
TEFF_CLASS_EDGES = (4000.0, 5500.0, 7000.0, 10000.0)


@dataclass
class CalibrationSettings:
    """Every choice of the calibration (written to config.json)."""

    taper_lo: float = 3560.0          # A (vacuum): correction 0 below; MILES starts at 3541.5 A (vacuum)
    taper_hi: float = 7400.0          # A: correction 0 above; MILES ends at 7411.6 A (vacuum)
    taper_width: float = 140.0        # A, sin^2 ramp at each end
    basis_order: int = 3              # Legendre order in 1/lambda of the shape the loss / correction ignore
    width: int = 64
    depth: int = 2
    steps: int = 1500
    lr: float = 3e-3
    weight_decay: float = 1e-4
    huber_delta: float = 0.02         # ln flux; pseudo-Huber transition
    noise: tuple = (0.004, 0.1, 0.05)  # input jitter (dex log Teff, dex log g, dex [M/H])
    members: int = 3                  # ensemble size of the final correction
    density_scales: tuple = (0.03, 0.5, 0.3)   # kernel widths (dex log Teff, log g, [M/H])
    density_n_half: float = 1.0       # effective number of stars at which the weight is 0.63
    min_coverage: float = 0.98        # fraction of a pixel covered by good observed data to use it
    seed: int = 0


# ---- data --------------------------------------------------------------------------------------------
def load_empirical_set(path):
    """The calibration stars: dict miles_id, teff, logg, logz (= [Fe/H]), wave_air (n_pix,) [A], flux, good.

    ``path``: the directory holding ``miles_v9.1_calibration_stars.npz`` or that file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / EMPIRICAL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"empirical set not found: {path} (expected a directory with {EMPIRICAL_FILE})")
    with np.load(path) as z:
        need = ("miles_id", "teff", "logg", "feh", "wave", "flux")
        missing = [k for k in need if k not in z.files]
        if missing:
            raise ValueError(f"{path} lacks {missing}; an empirical set has {need}")
        flux = np.asarray(z["flux"], float)
        return {"miles_id": np.asarray(z["miles_id"], int), "teff": np.asarray(z["teff"], float),
                "logg": np.asarray(z["logg"], float), "logz": np.asarray(z["feh"], float),
                "wave_air": np.asarray(z["wave"], float), "flux": flux,
                "good": np.isfinite(flux) & (flux != 0.0), "file": str(path), "sha256": file_sha256(path)}


def _edges(w):
    m = 0.5 * (w[1:] + w[:-1])
    return np.concatenate([[w[0] - (m[0] - w[0])], m, [w[-1] + (w[-1] - m[-1])]])


def bin_onto_pixels(wave, flux, good, edges):
    """Flux-conserving mean of piecewise-constant pixels (centres ``wave``) over bins ``edges``.

    Returns (mean (n, n_bins), covered fraction (n, n_bins)); masked (``good`` False) pixels do not count.
    """
    we = _edges(np.asarray(wave, float))
    dw = np.diff(we)
    flux = np.atleast_2d(flux)
    good = np.atleast_2d(good)
    cf = np.concatenate([np.zeros((len(flux), 1)), np.cumsum(np.where(good, flux, 0.0) * dw, 1)], 1)
    cm = np.concatenate([np.zeros((len(flux), 1)), np.cumsum(np.where(good, dw, 0.0), 1)], 1)
    F = np.diff(np.stack([np.interp(edges, we, r) for r in cf]), axis=1)
    M = np.diff(np.stack([np.interp(edges, we, r) for r in cm]), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return F / M, M / np.diff(edges)


@dataclass
class CalibrationData:
    params: np.ndarray      # (n, 3) log10 Teff, log g, [M/H]
    y: np.ndarray           # (n, n_pix) ln(F_obs / F_base), 0 where masked
    mask: np.ndarray        # (n, n_pix) bool
    start: int              # first correction pixel on the base grid
    stop: int
    wavelength: np.ndarray  # (n_pix,) vacuum [A]
    taper: np.ndarray
    basis: np.ndarray       # (n_pix, order + 1)


def prepare(stars, base, settings=None):
    """Targets ln(F_obs / F_base) on the base model's pixels inside the observed range (see module doc)."""
    st = settings or CalibrationSettings()
    wl = np.asarray(base.wavelength, float)
    e = _edges(wl)
    wave_vac = air_to_vacuum(stars["wave_air"])
    obs_lo, obs_hi = _edges(wave_vac)[[0, -1]]
    pix = np.flatnonzero((e[:-1] >= obs_lo) & (e[1:] <= obs_hi) & (wl >= st.taper_lo) & (wl <= st.taper_hi))
    start, stop = int(pix[0]), int(pix[-1]) + 1
    mean, cov = bin_onto_pixels(wave_vac, stars["flux"], stars["good"], e[start:stop + 1])
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # a few stars lie outside the base model's coverage
        fbase, _ = base.surface_flux(stars["teff"], stars["logg"], stars["logz"])
    fb = fbase[:, start:stop]
    mask = (cov >= st.min_coverage) & np.isfinite(mean) & (mean > 0) & (fb > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.where(mask, np.log(np.where(mask, mean, 1.0) / np.where(mask, fb, 1.0)), 0.0)
    w = wl[start:stop]
    return CalibrationData(params=np.stack([np.log10(stars["teff"]), stars["logg"], stars["logz"]], 1),
                           y=y, mask=mask, start=start, stop=stop, wavelength=w,
                           taper=wavelength_taper(w, st.taper_lo, st.taper_hi, st.taper_width),
                           basis=low_order_basis(w, st.basis_order))


def _shape_projector(basis, mask):
    """Per star H = (A^T M A)^-1 A^T M: coefficients of the masked least-squares low-order fit. (n, K, P)."""
    A = np.asarray(basis, float)
    m = np.asarray(mask, float)
    G = np.einsum("pk,np,pl->nkl", A, m, A) + 1e-9 * np.eye(A.shape[1])
    return np.linalg.solve(G, np.einsum("pk,np->nkp", A, m))


def fit_correction(data, rows, settings=None, seed=0):
    """Fit one :class:`CorrectionNet` to the stars ``rows`` of ``data`` (deterministic for a given seed)."""
    st = settings or CalibrationSettings()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rows = np.asarray(rows)
    p = data.params[rows]
    net = CorrectionNet(data.y.shape[1], width=st.width, depth=st.depth, taper=data.taper, basis=data.basis,
                        in_lo=p.min(0), in_hi=p.max(0))
    P = torch.as_tensor(p, dtype=torch.float32)
    Y = torch.as_tensor(data.y[rows], dtype=torch.float32)
    M = torch.as_tensor(data.mask[rows], dtype=torch.float32)
    H = torch.as_tensor(_shape_projector(data.basis, data.mask[rows]), dtype=torch.float32)
    A = torch.as_tensor(data.basis, dtype=torch.float32)
    noise = torch.as_tensor(st.noise, dtype=torch.float32)
    opt = torch.optim.AdamW(net.parameters(), lr=st.lr, weight_decay=st.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, st.steps)
    d2 = st.huber_delta ** 2
    n_good = M.sum()
    for _ in range(st.steps):
        jitter = torch.randn(P.shape, generator=gen) * noise
        r = (Y - net(P + jitter)) * M
        coef = torch.einsum("nkp,np->nk", H, r)
        rp = (r - coef @ A.T) * M
        loss = (d2 * (torch.sqrt(1.0 + rp ** 2 / d2) - 1.0)).sum() / n_good
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


def stratified_folds(teff, k, seed=0):
    """Fold index per star: stars sorted by Teff class, shuffled within it (seeded), dealt round-robin."""
    teff = np.asarray(teff, float)
    cls = np.searchsorted(TEFF_CLASS_EDGES, teff, side="right")
    rng = np.random.default_rng(seed)
    fold = np.empty(teff.size, int)
    offset = 0
    for c in np.unique(cls):
        idx = rng.permutation(np.flatnonzero(cls == c))
        fold[idx] = (offset + np.arange(idx.size)) % k
        offset += idx.size
    return fold


def predict_log_correction(nets, data, rows, stars_params, settings):
    """Weighted ensemble correction w * c for ``rows`` of ``data``, with the density from ``stars_params``."""
    st = settings
    with torch.no_grad():
        p = torch.as_tensor(data.params[rows], dtype=torch.float32)
        c = torch.stack([n(p) for n in nets]).mean(0).double().numpy()
    w = density_to_weight(kernel_density(data.params[rows], stars_params, st.density_scales), st.density_n_half)
    return c * w[:, None], w
