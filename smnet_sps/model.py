"""Network architectures and the pure functions around them (scalings, library mixtures).

Two architectures:

* :class:`SMNet` -- the released SM-Net architecture (Anwar et al. 2026, arXiv:2603.23899), layer for layer,
  so that a released checkpoint's ``state_dict`` loads unchanged (see ``load_smnet_state_dict``).
* :class:`SpectrumMLP` -- the default emulator, in the style of The Payne (Ting et al. 2019): a small MLP
  from (scaled log Teff, log g, [M/H]) plus a library-mixture vector to the per-pixel standardised
  ``log10(F_lambda / (sigma Teff^4))``.

Everything else here is a small pure function (numpy in, numpy out) so it can be tested on its own.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from .constants import BOLTZMANN_K, LIGHT_C, PLANCK_H

__all__ = ["SMNet", "SpectrumMLP", "LibraryExpertMLP", "build_model", "load_smnet_state_dict",
           "infer_smnet_shape", "log1p01_forward", "log1p01_inverse", "fit_log1p01", "mixture_weights",
           "MIXTURE_TAPER", "LOG_RATIO_FLOOR", "blackbody_log_ratio", "blackbody_constants",
           "caller_torch_state_kept"]

@contextmanager
def caller_torch_state_kept():
    """Give torch's thread count and random state (CPU, and CUDA devices already in use) back as they were:
    a library call (train, calibrate) must not reseed its caller's random numbers or leave it on one
    thread. Also a decorator (``@caller_torch_state_kept()``)."""
    threads = torch.get_num_threads()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        torch.set_num_threads(threads)


# Tapers of the library partition of unity, per dimension (log10 Teff [dex], log g [dex], [M/H] [dex]).
# 0.02 dex in Teff is about one grid step of CK04; 0.25 dex in log g / [M/H] is half a step.
MIXTURE_TAPER = (0.02, 0.25, 0.25)

# Floor of log10(F_lambda / (sigma Teff^4)) [log10 A^-1]. The peak of F/(sigma T^4) is ~1e-4..1e-1 A^-1;
# 1e-25 below that is far beyond any photometric use and keeps the far-UV of cool stars (often stored as
# exact zeros) finite in log space.
LOG_RATIO_FLOOR = -30.0


def blackbody_log_ratio(wavelength, teff):
    """log10(pi B_lambda(Teff) / (sigma Teff^4)) [log10 A^-1], floored at LOG_RATIO_FLOOR; shape (n, n_wave).

    The reference the default emulator predicts against: subtracting the blackbody removes most of the
    Teff dependence (the Wien tail spans tens of dex over 2,000-190,000 K), so the network only learns the
    departures from it (line blanketing, Balmer/Lyman jumps, molecules), a range of a few dex.
    """
    from .constants import SIGMA_SB
    h, c, k = PLANCK_H, LIGHT_C, BOLTZMANN_K
    teff = np.atleast_1d(np.asarray(teff, float))
    lam_cm = np.asarray(wavelength, float) * 1e-8
    # log10(pi * 2hc^2 / lam^5 / (e^x - 1) * 1e-8 / (sigma T^4)) in logs throughout: no under/overflow, and
    # ln(e^x - 1) = x + ln(1 - e^-x) is exact for every x > 0
    x = (h * c / k / lam_cm)[None, :] / teff[:, None]
    ln_expm1 = x + np.log1p(-np.exp(-x))
    lr = (np.log10(2 * np.pi * h * c**2 * 1e-8 / SIGMA_SB) - 5 * np.log10(lam_cm)[None, :]
          - 4 * np.log10(teff)[:, None] - ln_expm1 / np.log(10.0))
    return np.maximum(lr, LOG_RATIO_FLOOR)


def blackbody_constants(wavelength):
    """Per-pixel constants of the blackbody log ratio (float64 ndarrays, shape (n_wave,)).

    Returns ``(a, b)`` with a = log10(2 pi h c^2 1e-8 / sigma) - 5 log10(lam_cm) [log10 A^-1 K^4] and
    b = h c / (k lam_cm) [K], so that log10(pi B_lambda / sigma T^4) = a - 4 log10 T -
    ln(e^(b/T) - 1) / ln 10. Computed once per model in float64; the generators' torch path
    (``NeuralGenerator._finish_``) uses them as ln(pi B / sigma T^4) = ln10 a - 4 ln T - x - ln(-expm1(-x))
    with x = b / T.
    """
    from .constants import SIGMA_SB
    h, c, k = PLANCK_H, LIGHT_C, BOLTZMANN_K
    lam_cm = np.asarray(wavelength, float) * 1e-8
    a = np.log10(2 * np.pi * h * c**2 * 1e-8 / SIGMA_SB) - 5 * np.log10(lam_cm)
    return a, h * c / k / lam_cm


# ------------------------------------------------------------------------------------------------
# Released SM-Net
# ------------------------------------------------------------------------------------------------
class _ResidualBlock(nn.Module):
    """h = fc1(x); out = ReLU(fc2(dropout(ReLU(h))) + h)  (released block)."""

    def __init__(self, n_in, n_out, dropout=0.0):
        super().__init__()
        self.fc1 = nn.Linear(n_in, n_out)
        self.fc2 = nn.Linear(n_out, n_out)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        h = self.fc1(x)
        return torch.relu(self.fc2(self.dropout(torch.relu(h))) + h)


class _Refine(nn.Module):
    """Multi-scale 1-d convolutional refinement of the coarse spectrum (released layout)."""

    def __init__(self, L, channels=16):
        super().__init__()
        self.L = L
        self.cond_proj = nn.Linear(3, L)
        self.branch3_conv = nn.Conv1d(5, channels, 7)
        self.branch5_conv = nn.Conv1d(5, channels, 15)
        self.branch7_conv = nn.Conv1d(5, channels, 23)
        self.fuse_conv1 = nn.Conv1d(3 * channels, channels, 3)
        self.fuse_conv2 = nn.Conv1d(channels, 1, 3)
        p = torch.linspace(0.0, 1.0, L)
        # Non-persistent (the release drops it from the state_dict too).
        self.register_buffer("pos_encoding", torch.stack([p, torch.sin(2 * math.pi * p),
                                                          torch.cos(2 * math.pi * p)]), persistent=False)

    @staticmethod
    def _conv(conv, x):
        k = conv.kernel_size[0]
        # "replicate" padding keeps the length; odd kernels -> symmetric padding.
        return conv(nn.functional.pad(x, (k // 2, k // 2), mode="replicate"))

    def forward(self, coarse, x):
        n = coarse.shape[0]
        pos = self.pos_encoding.to(coarse.dtype).unsqueeze(0).expand(n, -1, -1)
        inp = torch.cat([coarse.unsqueeze(1), self.cond_proj(x).unsqueeze(1), pos], dim=1)   # (n, 5, L)
        gelu = nn.functional.gelu
        branches = torch.cat([gelu(self._conv(self.branch3_conv, inp)),
                              gelu(self._conv(self.branch5_conv, inp)),
                              gelu(self._conv(self.branch7_conv, inp))], dim=1)
        fused = self._conv(self.fuse_conv2, gelu(self._conv(self.fuse_conv1, branches)))
        return coarse + fused.squeeze(1)


class SMNet(nn.Module):
    """The released SM-Net: (scaled Teff, log g, [M/H]) in [0, 1]^3 -> y >= 0 in log1p01 space, shape (n, L).

    Parameters
    ----------
    B : int
        Base width (1024 in the released models); hidden widths are 4B and 16B.
    L : int
        Number of output wavelength pixels.
    dropout : float
        Dropout inside the residual blocks (training only).
    """

    def __init__(self, B=1024, L=11655, dropout=0.0):
        super().__init__()
        if int(B) < 1 or int(L) < 8:
            raise ValueError(f"SMNet needs B >= 1 and L >= 8 (the refinement kernels); got B={B}, L={L}")
        self.B, self.L = int(B), int(L)
        h1, h2 = 4 * self.B, 16 * self.B
        self.layer1 = _ResidualBlock(3, h1, dropout)
        self.layer2 = _ResidualBlock(h1, h2, dropout)
        self.layer3 = nn.Linear(h2, self.L)
        self.input_proj_1 = nn.Linear(3, h1)
        self.input_proj_2 = nn.Linear(3, h2)
        self.input_proj_3 = nn.Linear(3, self.L)
        self.refine = _Refine(self.L)
        self.baseline = nn.Parameter(torch.zeros(self.L))
        # Zero init so training starts from the learned baseline (as the release does).
        for mod in (self.layer3, self.input_proj_1, self.input_proj_2, self.input_proj_3,
                    self.refine.fuse_conv2):
            nn.init.zeros_(mod.weight)
            nn.init.zeros_(mod.bias)

    def forward(self, x):
        h1 = self.layer1(x) + self.input_proj_1(x)
        h2 = self.layer2(h1) + self.input_proj_2(x)
        coarse = self.layer3(h2) + self.input_proj_3(x)
        refined = self.refine(coarse, x)
        return nn.functional.softplus(refined + self.baseline, beta=2, threshold=20) + 1e-8

    def flops_per_spectrum(self):
        """Approximate multiply-adds x 2 of one forward pass (matmuls and convolutions)."""
        h1, h2, L = 4 * self.B, 16 * self.B, self.L
        dense = 3 * h1 + h1 * h1 + h1 * h2 + h2 * h2 + h2 * L + 3 * (h1 + h2 + 2 * L)
        conv = L * 16 * 5 * (7 + 15 + 23) + L * 16 * 48 * 3 + L * 16 * 3
        return 2.0 * (dense + conv)


def _strip_state_dict(obj):
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError("not an SM-Net checkpoint: expected a state_dict (str -> tensor) or a dict with key "
                         "'state_dict'")
    # Some trainers wrap modules (DataParallel / torch.compile): strip those prefixes.
    out = {}
    for k, v in obj.items():
        for prefix in ("module.", "_orig_mod."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        if not k.endswith("pos_encoding"):
            out[k] = v
    return out


def infer_smnet_shape(state_dict):
    """(B, L) of a released-layout state_dict, from ``layer1.fc1.weight`` [4B, 3] and ``baseline`` [L]."""
    sd = _strip_state_dict(state_dict)
    try:
        h1 = sd["layer1.fc1.weight"].shape[0]
        L = sd["baseline"].shape[0]
    except KeyError as exc:
        raise ValueError(f"not an SM-Net checkpoint: missing key {exc.args[0]!r} (need the released layout, "
                         "see CHECKPOINT_FORMAT.md)") from None
    if h1 % 4:
        raise ValueError(f"layer1.fc1.weight has {h1} rows; the released layout needs 4*B")
    return h1 // 4, int(L)


def load_smnet_state_dict(state_dict, dropout=0.0):
    """Build an :class:`SMNet` with B, L inferred from the weights and load them (strict key match)."""
    sd = _strip_state_dict(state_dict)
    B, L = infer_smnet_shape(sd)
    with caller_torch_state_kept():     # its random initial weights, replaced below, keep the caller's RNG
        model = SMNet(B, L, dropout=dropout)
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except RuntimeError as exc:          # a layer of another shape: corrupt, or another SM-Net variant
        shapes = [line.strip() for line in str(exc).splitlines() if "size mismatch" in line]
        raise ValueError(f"SM-Net state_dict does not match the released layout (B={B}, L={L} inferred from "
                         f"its first layers): {'; '.join(shapes[:3]) or exc}") from None
    if missing or unexpected:
        raise ValueError(f"SM-Net state_dict does not match the released layout (B={B}, L={L}): missing keys "
                         f"{sorted(missing)[:5]}, unexpected keys {sorted(unexpected)[:5]}")
    return model


# ------------------------------------------------------------------------------------------------
# The default emulator
# ------------------------------------------------------------------------------------------------
class SpectrumMLP(nn.Module):
    """MLP emulator: [3 scaled parameters, n_libraries mixture weights] -> standardised log spectrum.

    Parameters
    ----------
    n_wave : int
        Output pixels.
    n_libraries : int
        Length of the library-mixture vector.
    width : int
        Hidden width.
    depth : int
        Number of hidden layers.

    Notes
    -----
    The output ``z`` is per-pixel standardised ``log10(F_lambda / (sigma Teff^4))``; the buffers ``out_mean``
    and ``out_std`` (per pixel, over the known training pixels) turn it back:
    ``log10(F / sigma T^4) = out_mean + out_std * z`` (see :meth:`log_ratio`).
    """

    def __init__(self, n_wave, n_libraries=1, width=256, depth=3):
        super().__init__()
        if min(int(n_wave), int(n_libraries), int(width), int(depth)) < 1:
            raise ValueError(f"SpectrumMLP sizes must be >= 1; got n_wave={n_wave}, "
                             f"n_libraries={n_libraries}, width={width}, depth={depth}")
        self.n_wave, self.n_libraries = int(n_wave), int(n_libraries)
        self.width, self.depth = int(width), int(depth)
        layers, n_in = [], 3 + self.n_libraries
        for _ in range(self.depth):
            layers += [nn.Linear(n_in, self.width), nn.SiLU()]
            n_in = self.width
        layers.append(nn.Linear(n_in, self.n_wave))
        self.net = nn.Sequential(*layers)
        self.register_buffer("out_mean", torch.zeros(self.n_wave))
        self.register_buffer("out_std", torch.ones(self.n_wave))
        # per-pixel range of the standardised training targets (+ margin): pixels left out of the loss (the
        # far Wien tail of cool stars) are never pushed outside what the data ever showed there
        self.register_buffer("out_lo", torch.full((self.n_wave,), -1e6))
        self.register_buffer("out_hi", torch.full((self.n_wave,), 1e6))

    def forward(self, x, mixture):
        """Standardised log spectrum z, shape (n, n_wave), for scaled params x (n, 3) and
        mixture (n, n_lib)."""
        return self.net(torch.cat([x, mixture], dim=1))

    def log_ratio(self, x, mixture):
        """log10(F_lambda / (sigma Teff^4)) [log10 A^-1], shape (n, n_wave)."""
        z = torch.maximum(torch.minimum(self.forward(x, mixture), self.out_hi), self.out_lo)
        return self.out_mean + self.out_std * z

    def load_state_dict(self, state_dict, strict=True, **kwargs):
        # models saved before out_lo/out_hi existed load unchanged (no clamp)
        state_dict = dict(state_dict)
        state_dict.setdefault("out_lo", self.out_lo)
        state_dict.setdefault("out_hi", self.out_hi)
        return super().load_state_dict(state_dict, strict=strict, **kwargs)


class LibraryExpertMLP(nn.Module):
    """One :class:`SpectrumMLP` per library ("expert"): a pass for library j runs expert ``expert_index[j]``.

    Each expert is the shared model fine-tuned on one library's nodes only (``smnet-sps train --init-from
    BASE --libraries NAME``), so it spends all its capacity on that library; several libraries may share one
    expert (e.g. a library too small to fine-tune keeps the shared model). Every pass runs one network of
    the shared size: the cost per spectrum is that of one :class:`SpectrumMLP`. Inputs, outputs and the
    output scaling are those of :class:`SpectrumMLP`.

    Parameters
    ----------
    n_wave, n_libraries, width, depth : as :class:`SpectrumMLP` (every expert has this shape)
    expert_index : sequence of int, length n_libraries: the expert of each library
    """

    def __init__(self, n_wave, n_libraries, width, depth, expert_index):
        super().__init__()
        expert_index = [int(e) for e in expert_index]
        if len(expert_index) != int(n_libraries) or min(expert_index, default=-1) < 0:
            raise ValueError(f"expert_index needs one expert number >= 0 per library ({n_libraries}); got "
                             f"{expert_index}")
        n_experts = max(expert_index) + 1
        self.n_wave, self.n_libraries = int(n_wave), int(n_libraries)
        self.expert_index = expert_index
        self.experts = nn.ModuleList(SpectrumMLP(n_wave, n_libraries, width, depth) for _ in range(n_experts))

    def expert_for(self, library_id):
        """The :class:`SpectrumMLP` that library number ``library_id`` runs."""
        return self.experts[self.expert_index[int(library_id)]]

    def route(self, fn, libs, out):
        """Fill ``out`` (n, n_wave): the rows of library j with ``fn(expert of j, their row indices)``.

        Returns the filled tensor (``index_copy``, not in place, so autograd flows through), or where one
        library holds every row, ``fn``'s own output for them.
        """
        present = torch.unique(libs).tolist()
        if len(present) == 1:             # one library: its expert's output as it is (no copy into out)
            return fn(self.expert_for(present[0]), torch.arange(libs.numel(), device=libs.device))
        for j in present:
            rows = torch.nonzero(libs == j).squeeze(1)
            out = out.index_copy(0, rows, fn(self.expert_for(j), rows))
        return out

    def forward(self, x, mixture):
        """Standardised log spectrum z (n, n_wave) for one-hot ``mixture`` rows (each row runs its
        library's expert)."""
        return self.route(lambda expert, rows: expert(x[rows], mixture[rows]), mixture.argmax(1),
                          x.new_empty((x.shape[0], self.n_wave)))

    def log_ratio(self, x, mixture):
        """log10(F_lambda / (sigma Teff^4)) [log10 A^-1] (n, n_wave), each row from its library's expert."""
        return self.route(lambda expert, rows: expert.log_ratio(x[rows], mixture[rows]), mixture.argmax(1),
                          x.new_empty((x.shape[0], self.n_wave)))


def build_model(arch, **kwargs):
    """Instantiate an architecture by name: ``"mlp"`` (:class:`SpectrumMLP`), ``"mlp_experts"``
    (:class:`LibraryExpertMLP`) or ``"smnet"`` (:class:`SMNet`)."""
    archs = {"mlp": SpectrumMLP, "mlp_experts": LibraryExpertMLP, "smnet": SMNet}
    if arch not in archs:
        raise ValueError(f"unknown architecture {arch!r}; allowed: {sorted(archs)}")
    return archs[arch](**kwargs)


# ------------------------------------------------------------------------------------------------
# Scalings (pure functions)
# ------------------------------------------------------------------------------------------------
def log1p01_forward(x, tau, x_max):
    """SM-Net's flux scaling: y = log1p(x / tau) / log1p(x_max / tau); y in [0, 1] for 0 <= x <= x_max."""
    return np.log1p(np.asarray(x, float) / tau) / np.log1p(x_max / tau)


def log1p01_inverse(y, tau, x_max):
    """Inverse of :func:`log1p01_forward`: x = tau * (exp(y * log1p(x_max / tau)) - 1). Works on numpy or
    torch."""
    if isinstance(y, torch.Tensor):
        return tau * torch.expm1(y * math.log1p(x_max / tau))
    return tau * np.expm1(np.asarray(y, float) * np.log1p(x_max / tau))


def fit_log1p01(x, mask=None, tau_quantile=0.01):
    """Fit (tau, x_max) to flux values x >= 0: x_max = max, tau = the ``tau_quantile`` quantile of positive x.

    Our choice (the release does not document its fit): tau sets where the scaling turns from linear to
    logarithmic, so a low quantile of the positive fluxes keeps the faint UV resolved in log space.
    """
    x = np.asarray(x, float)
    vals = x[mask] if mask is not None else x.ravel()
    vals = vals[np.isfinite(vals) & (vals > 0)]
    if vals.size == 0:
        raise ValueError("cannot fit log1p01 scaling: no positive finite flux values")
    return float(np.quantile(vals, tau_quantile)), float(vals.max())


def mixture_weights(log_teff, logg, logz, boxes, taper=MIXTURE_TAPER):
    """Smooth partition of unity over libraries, shape (n, n_libraries); rows sum to 1.

    Parameters
    ----------
    log_teff, logg, logz : array-like (n,)
        log10 Teff [K], log g [cgs], [M/H] [dex].
    boxes : sequence of ((lo, hi), (lo, hi), (lo, hi))
        Per library, its box in (log10 Teff, log g, [M/H]).
    taper : three floats [dex]
        Per dimension, the distance outside a box over which that library's weight falls linearly to 0.

    Notes
    -----
    factor_d = clip(1 - dist_d / taper_d, 0, 1), with dist_d the distance outside the box along dimension d
    (0 inside); weight = product of the three factors, normalised over libraries. A point outside every
    tapered box gets the library whose box is nearest (in taper units); such points are flagged as outside
    coverage by the generator anyway. The weights are continuous wherever at least one is non-zero.
    """
    p = np.stack([np.atleast_1d(np.asarray(a, float)) for a in np.broadcast_arrays(log_teff, logg, logz)], 1)
    lo = np.array([[b[d][0] for d in range(3)] for b in boxes], float)      # (n_lib, 3)
    hi = np.array([[b[d][1] for d in range(3)] for b in boxes], float)
    tap = np.asarray(taper, float)
    dist = np.maximum(lo[None] - p[:, None], 0) + np.maximum(p[:, None] - hi[None], 0)   # (n, n_lib, 3)
    w = np.prod(np.clip(1 - dist / tap, 0, 1), axis=2)
    total = w.sum(1, keepdims=True)
    out = np.where(total > 0, w / np.where(total > 0, total, 1), 0.0)
    none = total[:, 0] <= 0
    if none.any():
        nearest = np.argmin(np.sqrt(((dist[none] / tap) ** 2).sum(2)), axis=1)
        out[np.flatnonzero(none), nearest] = 1.0
    return out
