"""Training of the generators on the union grid: masked loss, dissimilarity sampling, resumable checkpoints.

``smnet-sps train --grid grid.h5 --out models/NAME [--arch mlp|smnet] [--width W] [--epochs N] [--minutes M]
[--device auto] [--resume]``

The written model directory is read by :func:`smnet_sps.neural.load_generator` (layout: docs/CONTRACTS.md,
details: docs/generator.md).
"""
from __future__ import annotations

import contextlib
import inspect
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .checksums import check_zip_crc, file_sha256
# SIGTERM (a batch system's kill, ``kill PID``) as Ctrl-C: train saves its checkpoint before exiting
from .cli import _file_state, add_note, interrupt_status
from .cli import terminate_as_interrupt as _terminate
from .constants import NODE_STEPS, SIGMA_SB
from .interrupts import interrupts_held
from .mixture import MIXTURE_FILE
from .model import (LOG_RATIO_FLOOR, blackbody_log_ratio, build_model, caller_torch_state_kept, fit_log1p01,
                    log1p01_forward)
from .output_files import atomic_output, json_safe
from .progress import want_progress
from .tail import TAIL_FILE, red_tail_mask, save_table, tabulate_tail, wien_tail_mask

__all__ = ["train", "read_grid", "log_ratio_targets", "split_nodes", "teff_neighbours", "blend_edges",
           "blend_simplices", "blend_reference_shift", "sampling_weights", "line_departures", "jitter_shares",
           "masked_mse", "add_cli", "TrainingGrid", "SPLIT_CODES"]

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


@dataclass
class TrainingGrid:
    """The arrays training needs (a subset of :class:`smnet_sps.grid.UnionGrid`)."""

    wavelength: np.ndarray
    teff: np.ndarray
    logg: np.ndarray
    logz: np.ndarray
    library_id: np.ndarray
    library_names: list
    flux: np.ndarray
    mask: np.ndarray
    path: str = ""
    sha256: str = ""
    libraries: dict = field(default_factory=dict)
    content_sha256: str = ""       # of the grid's data, not its file (smnet_sps.grid.grid_content_sha256)


def read_grid(path):
    """Read a union grid file (:func:`smnet_sps.grid.load_grid`) into a TrainingGrid, with the sha256 of the
    file and of its content (:func:`smnet_sps.grid.grid_content_sha256`: the same for two builds from the
    same library files)."""
    from .grid import grid_content_sha256, load_grid, require_grid_file

    path = require_grid_file(path)      # a missing file or a folder: its own error, not "not readable"
    try:
        g = load_grid(path)
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable union grid file ({exc}); see docs/CONTRACTS.md") from exc
    grid = TrainingGrid(wavelength=np.asarray(g.wavelength), teff=np.asarray(g.teff), logg=np.asarray(g.logg),
                        logz=np.asarray(g.logz), library_id=np.asarray(g.library_id).astype(int),
                        library_names=list(g.library_names), flux=np.asarray(g.flux),
                        mask=np.asarray(g.mask, bool), path=str(path), sha256=file_sha256(path),
                        libraries=dict(g.libraries or {}), content_sha256=grid_content_sha256(g))
    if grid.flux.shape != grid.mask.shape or grid.flux.shape != (grid.teff.size, grid.wavelength.size):
        raise ValueError(f"{path}: inconsistent shapes flux {grid.flux.shape}, mask {grid.mask.shape}, "
                         f"{grid.teff.size} nodes x {grid.wavelength.size} wavelengths")
    return grid


def target_range(target, mask, margin=0.5):
    """Per-pixel [min - margin, max + margin] of standardised targets over known pixels (+-1e6 if none)."""
    lo = np.where(mask, target, np.inf).min(0) - margin
    hi = np.where(mask, target, -np.inf).max(0) + margin
    return np.where(np.isfinite(lo), lo, -1e6), np.where(np.isfinite(hi), hi, 1e6)


def log_ratio_targets(flux, mask, teff):
    """log10(F_lambda / (sigma Teff^4)) [log10 A^-1] floored at LOG_RATIO_FLOOR; NaN where mask is False.

    Known pixels with zero or negative flux (physical zeros far in the Wien tail) get the floor.
    """
    ratio = np.asarray(flux, float) / (SIGMA_SB * np.asarray(teff, float)[:, None] ** 4)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log10(np.where(ratio > 0, ratio, 0.0))
    out = np.maximum(np.nan_to_num(out, nan=LOG_RATIO_FLOOR, neginf=LOG_RATIO_FLOOR), LOG_RATIO_FLOOR)
    return np.where(mask, out, np.nan).astype(np.float32)


def grid_lines(teff, logg, logz, library_id, nodes, axis):
    """The nodes of ``nodes`` on each line of the grid along input ``axis`` (0 Teff, 1 log g, 2 [M/H]):
    those of one library whose other two inputs are equal, sorted along ``axis``; a list of index lists."""
    params = (teff, logg, logz)
    digits = (0, 3, 3)                    # Teff in K; log g and [M/H] in dex
    lines = {}
    for i in nodes:
        key = (int(library_id[i]),) + tuple(round(float(params[b][i]), digits[b])
                                            for b in range(3) if b != axis)
        lines.setdefault(key, []).append(int(i))
    return [sorted(line, key=lambda i: params[axis][i]) for line in lines.values()]


def teff_neighbours(teff, logg, logz, library_id):
    """Each node's neighbours along Teff in its own library at the same log g and [M/H]: (left, right)
    index arrays, -1 where there is none. Nodes with both are the "interior" nodes the test split draws
    from (:func:`split_nodes`)."""
    n = len(teff)
    left = np.full(n, -1)
    right = np.full(n, -1)
    for idx in grid_lines(teff, logg, logz, library_id, range(n), axis=0):
        for a, b, c in zip(idx[:-2], idx[1:-1], idx[2:]):
            left[b], right[b] = a, c
    return left, right


def blend_edges(teff, logg, logz, library_id, nodes):
    """Pairs of neighbouring nodes among ``nodes`` (indices into the grid): along each input (Teff, log g,
    [M/H]) in turn, consecutive nodes of one library whose other two inputs are equal. An (m, 2) index array,
    the segments :func:`train` draws blended spectra from (``node_blend``). A node not in ``nodes`` (held out)
    is spanned by the segment between its neighbours, as linear interpolation spans it."""
    edges = [(a, b) for axis in range(3)
             for line in grid_lines(teff, logg, logz, library_id, np.asarray(nodes, dtype=int), axis)
             for a, b in zip(line[:-1], line[1:])]
    return np.array(edges, dtype=int).reshape(-1, 2)


def blend_simplices(teff, logg, logz, library_id, nodes):
    """The Delaunay simplices of each library's nodes among ``nodes`` (indices into the grid), in the
    coordinates of the interpolation baseline (:class:`smnet_sps.baselines.NodeInterpolator`: log10 Teff,
    log g, [M/H] in grid steps, the inputs a library does not vary left out), so a point drawn in a simplex
    with the barycentric blend of its vertices is the baseline's interpolant there (``node_blend_kind=
    "simplices"``). Returns an (m, 4) index array -- a library varying two inputs gives triangles, one input
    segments, each padded with its first vertex -- and the (m,) vertex counts. Flat simplices (qhull
    triangulates a regular grid with some of zero volume) are left out: they hold no point of the hull. A
    library whose nodes span no simplex (too few, or all on one line or plane) contributes none, as the
    baseline cannot interpolate it either."""
    from math import factorial

    from scipy.spatial import Delaunay, QhullError

    from .baselines import node_coordinates
    nodes = np.asarray(nodes, dtype=int)
    params = np.stack([np.log10(teff), logg, logz], 1)[nodes]
    groups, counts = [], []
    for lib in np.unique(library_id[nodes]):
        mine = library_id[nodes] == lib
        own, (p, _) = nodes[mine], node_coordinates(params[mine])
        dim = p.shape[1]
        if dim == 0 or len(own) <= dim:
            continue
        if dim == 1:
            order = np.argsort(p[:, 0])
            simplices = np.stack([order[:-1], order[1:]], 1)
        else:
            try:
                simplices = Delaunay(p).simplices
            except QhullError:
                continue
        edges = p[simplices[:, 1:]] - p[simplices[:, :1]]
        volume = np.abs(np.linalg.det(edges)) / factorial(dim) if dim > 1 else np.abs(edges[:, 0, 0])
        simplices = simplices[volume > 1e-9 * np.median(volume)]
        padded = np.repeat(simplices[:, :1], 4, axis=1)
        padded[:, :dim + 1] = simplices
        groups.append(own[padded])
        counts.append(np.full(len(simplices), dim + 1))
    if not groups:
        return np.zeros((0, 4), int), np.zeros(0, int)
    return np.concatenate(groups), np.concatenate(counts)


def blend_reference_shift(wavelength, teff_a, teff_b, t, reference="blackbody"):
    """What to add (in log10, per pixel) to the blend (1 - t) y_a + t y_b of two nodes' reference-subtracted
    targets y = log10(F / sigma Teff^4) - reference(Teff) so that it becomes the blended log10(F / sigma
    Teff^4) minus the reference at the blended Teff, 10^((1 - t) log10 Teff_a + t log10 Teff_b). Shape (n,
    n_wave); zero (to rounding) where the two Teff are equal, and with ``reference="none"``."""
    t = np.atleast_1d(np.asarray(t, float))
    return _reference_shift(wavelength, [teff_a, teff_b], [1 - t, t], reference)


def _reference_shift(wavelength, teffs, weights, reference):
    """:func:`blend_reference_shift` for the blend sum_k w_k y_k of any number of nodes (lists of arrays)."""
    teffs = [np.atleast_1d(np.asarray(v, float)) for v in teffs]
    weights = [np.atleast_1d(np.asarray(v, float)) for v in weights]
    if reference != "blackbody":
        return np.zeros((teffs[0].size, len(wavelength)))
    log_teff = sum(w * np.log10(te) for w, te in zip(weights, teffs))
    blend = sum(w[:, None] * blackbody_log_ratio(wavelength, te) for w, te in zip(weights, teffs))
    return blend - blackbody_log_ratio(wavelength, 10 ** log_teff)


def split_nodes(teff, logg, logz, library_id, test_every=10, val_fraction=0.05, seed=0):
    """Deterministic train / validation / test split by grid node; codes in :data:`SPLIT_CODES`.

    Test nodes are interior: per library, a node whose Teff neighbours on both sides (same log g, [M/H],
    library) exist in the grid; every ``test_every``-th of those (after a seeded shuffle) is held out, and no
    two test nodes are Teff neighbours of each other (so each keeps both neighbours in training).
    ``val_fraction`` of the remaining non-edge nodes go to validation.
    """
    rng = np.random.default_rng(seed)
    n = len(teff)
    split = np.zeros(n, np.int8)
    left, right = teff_neighbours(teff, logg, logz, library_id)
    interior = (left >= 0) & (right >= 0)
    cand = rng.permutation(np.flatnonzero(interior))
    blocked = np.zeros(n, bool)
    n_test_target = int(round(interior.sum() / test_every))
    for i in cand:
        if (split == 2).sum() >= n_test_target:
            break
        if blocked[i] or blocked[left[i]] or blocked[right[i]]:
            continue
        split[i] = 2
        blocked[[i, left[i], right[i]]] = True
    rest = np.flatnonzero((split == 0) & interior & ~blocked)
    n_val = int(round(val_fraction * n))
    split[rng.permutation(rest)[:n_val]] = 1
    return split


def sampling_weights(params, log_ratio, library_id, k=6, w_max=5.0):
    """Dissimilarity weights for sampling training nodes, in [1, w_max].

    For each node: mean over its k nearest neighbours (same library, in scaled parameter space) of the mean
    |difference| in log10 flux over pixels both know; divided by the median of that over the library, clipped
    to [1, w_max]. Nodes where the spectrum changes fast (hot/cool edges, molecular onsets) are drawn more
    often, in the spirit of SM-Net's replication of rare, dissimilar spectra.
    """
    from scipy.spatial import cKDTree
    w = np.ones(len(params))
    for lib in np.unique(library_id):
        sel = np.flatnonzero(library_id == lib)
        if sel.size < 3:
            continue
        kk = min(k, sel.size - 1)
        _, nn = cKDTree(params[sel]).query(params[sel], k=kk + 1)
        d = np.empty(sel.size)
        for a in range(sel.size):
            diffs = np.abs(log_ratio[sel[a]][None, :] - log_ratio[sel[nn[a, 1:]]])
            d[a] = np.nanmean(diffs) if np.isfinite(diffs).any() else 0.0
        med = np.median(d[d > 0]) if (d > 0).any() else 1.0
        w[sel] = np.clip(d / med, 1.0, w_max)
    return w



def line_departures(teff, logg, logz, library_id, log_flux, known, nodes):
    """How far each node departs from the straight line through its two neighbours, along each input.

    For every grid line of ``nodes`` along Teff, log g and [M/H] (:func:`grid_lines`): the median over the
    pixels the three nodes know of |log_flux - the line through the neighbours| (linear in log Teff, log g
    or [M/H]), at each node with a neighbour on both sides; a line's end node takes its nearest interior
    node's value (its own departure is unknown, its neighbour's is the best stand-in). An (n, 3) array in
    the units of ``log_flux`` (dex); NaN outside ``nodes`` and on lines of fewer than three nodes.
    """
    coords = (np.log10(np.asarray(teff, float)), np.asarray(logg, float), np.asarray(logz, float))
    out = np.full((len(teff), 3), np.nan)
    for axis in range(3):
        for line in grid_lines(teff, logg, logz, library_id, nodes, axis):
            if len(line) < 3:
                continue
            d = []
            for a, b, c in zip(line[:-2], line[1:-1], line[2:]):
                t = (coords[axis][b] - coords[axis][a]) / (coords[axis][c] - coords[axis][a])
                both = known[a] & known[b] & known[c]
                off = log_flux[b] - (1 - t) * log_flux[a] - t * log_flux[c]
                d.append(float(np.median(np.abs(off[both]))) if both.any() else np.nan)
            out[line, axis] = [d[0], *d, d[-1]]
    return out


def _check_jitter_share_options(floor, quantile):
    for name, value in (("jitter_floor", floor), ("jitter_quantile", quantile)):
        number = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
        if not (number and 0 < value <= 1):
            raise ValueError(f"{name} must be a number in (0, 1], got {value!r}")


def jitter_shares(departures, library_id, floor=1.0, quantile=0.5):
    """The share of ``input_jitter`` each node gets along each input (:func:`train`'s ``jitter_floor``):
    its departure (:func:`line_departures`) over its library's ``quantile`` of them along that input,
    clipped to [floor, 1]; 1 where the departure is unknown, or where the library's quantile is 0. ``floor``
    1: every node the full jitter. ``floor`` and ``quantile`` are numbers in (0, 1]."""
    _check_jitter_share_options(floor, quantile)
    shares = np.ones(departures.shape)
    if floor >= 1.0:
        return shares
    for lib in np.unique(library_id):
        sel = library_id == lib
        for axis in range(departures.shape[1]):
            d = departures[sel, axis]
            known = np.isfinite(d)
            if not known.any():
                continue
            ref = np.quantile(d[known], quantile)
            col = np.where(known, np.clip(d / ref if ref > 0 else 1.0, floor, 1.0), 1.0)
            shares[np.flatnonzero(sel), axis] = col
    return shares

# pixel_loss -> power of each pixel's target variance that weights its squared standardised error
PIXEL_LOSS_POWERS = {"standardised": 0.0, "mixed": 0.5, "log": 1.0}
# the training loss per spectrum (masked_mse): its mean square, or that through a pseudo-Huber
NODE_LOSSES = ("mse", "pseudo_huber")


def _check_node_loss(node_loss):
    if node_loss not in NODE_LOSSES:
        raise ValueError("node_loss must be " + " or ".join(map(repr, NODE_LOSSES)) + f", got {node_loss!r}")


def library_share_factors(library_id, in_training, balance):
    """Per-node factor making each library's total draw share ~ n_library ** balance (see :func:`train`)."""
    library_id = np.asarray(library_id)
    factors = np.ones(library_id.size)
    for lib in np.unique(library_id):
        sel = library_id == lib
        n_lib = max(int((sel & in_training).sum()), 1)
        factors[sel] = n_lib ** (float(balance) - 1.0)
    return factors


def _standardised(log_ratio_ref, mask, mean, std):
    """The training targets: log ratios standardised per pixel (0 where masked), float32."""
    return np.where(mask, (np.nan_to_num(log_ratio_ref) - mean) / std, 0.0).astype(np.float32)


def _pixel_weights(std, pixel_loss, uv_weight, wavelength):
    """Per-pixel loss weights (mean 1): standardised error x std = error in log10 flux, and the pixel loss's
    power picks how far towards that we go; the UV (1000-3000 A) times ``uv_weight``."""
    pw = std ** (2 * PIXEL_LOSS_POWERS[pixel_loss])
    pw = pw / np.mean(pw)
    wl = np.asarray(wavelength)
    pw = np.where((wl >= 1000.0) & (wl < 3000.0), pw * float(uv_weight), pw)
    return pw / np.mean(pw)


def _warm_start_scaling(model, mean, std, log_ratio_ref, mask, train_rows, Y, inv_std):
    """A warm start keeps its own output scaling: the targets ``Y`` (and the node blends' ``inv_std``) are
    standardised with the loaded ``out_mean`` / ``out_std``, and its clamps widened to the targets. On the
    grid it was trained on nothing changes; on a rebuilt grid whose targets moved (the sampled far-infrared
    pixels of 2026-12-03) they were fitted in this grid's standardisation and read out in the old one.
    Returns the per-pixel spread in use (the pixel weights follow it)."""
    loaded_mean, loaded_std = (b.detach().cpu().numpy().astype(np.float64) for b in (model.out_mean,
                                                                                      model.out_std))
    if (np.array_equal(loaded_mean, np.float32(mean).astype(np.float64))
            and np.array_equal(loaded_std, np.float32(std).astype(np.float64))):
        return std
    target = _standardised(log_ratio_ref, mask, loaded_mean, loaded_std)
    Y.copy_(torch.as_tensor(target, device=Y.device))
    lo, hi = target_range(target[train_rows], mask[train_rows])
    with torch.no_grad():
        model.out_lo.copy_(torch.minimum(model.out_lo, torch.as_tensor(lo, dtype=torch.float32,
                                                                       device=model.out_lo.device)))
        model.out_hi.copy_(torch.maximum(model.out_hi, torch.as_tensor(hi, dtype=torch.float32,
                                                                       device=model.out_hi.device)))
    if inv_std is not None:
        inv_std.copy_(torch.as_tensor(1.0 / loaded_std, dtype=inv_std.dtype, device=inv_std.device))
    return loaded_std


def masked_mse(pred, target, mask, weights=None, pixel_weights=None, node_loss="mse"):
    """Mean squared error over known pixels only; masked pixels never enter (even if NaN or inf).

    ``torch.where`` (not multiplication by the mask) so that garbage in masked pixels cannot leak as NaN.
    Each spectrum's mean over its known pixels is weighted by ``weights`` (default 1); ``pixel_weights``
    (n_wave,) weights the squared error of each pixel (default 1). ``node_loss="pseudo_huber"`` replaces each
    spectrum's mean square e by 2 m (sqrt(1 + e / m) - 1), m = the batch median of e (not differentiated):
    ~e for a spectrum at or below the median, ~2 sqrt(m e) for one far above it (a scattered grid node).
    """
    sq = torch.where(mask, (pred - torch.where(mask, target, torch.zeros_like(target))) ** 2,
                     torch.zeros_like(pred))
    if pixel_weights is not None:
        sq = sq * pixel_weights
    per = sq.sum(1) / mask.sum(1).clamp(min=1)
    _check_node_loss(node_loss)
    if node_loss == "pseudo_huber":
        m = per.detach().median().clamp(min=1e-12)
        per = 2.0 * m * (torch.sqrt(1.0 + per / m) - 1.0)
    if weights is None:
        return per.mean()
    return (per * weights).sum() / weights.sum()


def _scaled_inputs(grid, lo, hi):
    p = np.stack([np.log10(grid.teff), grid.logg, grid.logz], 1)
    return ((p - lo) / (hi - lo)).astype(np.float32)


def _boxes(grid):
    from .generator import ParameterBox

    def box(sel):
        return ParameterBox((float(grid.teff[sel].min()), float(grid.teff[sel].max())),
                            (float(grid.logg[sel].min()), float(grid.logg[sel].max())),
                            (float(grid.logz[sel].min()), float(grid.logz[sel].max())))
    all_ = np.ones(grid.teff.size, bool)
    lib = {name: box(grid.library_id == j).as_dict() for j, name in enumerate(grid.library_names)
           if (grid.library_id == j).any()}
    return box(all_).as_dict(), lib


def _jitter_steps(input_jitter):
    """``input_jitter`` (one value or one per input) as three noise widths in grid steps, checked."""
    steps = np.broadcast_to(np.asarray(input_jitter, dtype=float), (3,)) if np.ndim(input_jitter) == 0 \
        else np.asarray(input_jitter, dtype=float)
    if steps.shape != (3,) or not np.all((steps >= 0.0) & (steps < 10.0)):
        raise ValueError(f"input_jitter must be one value or three (Teff, log g, [M/H]), each in [0, 10) "
                         f"grid steps; got {input_jitter!r}")
    return steps.copy()


# what a checkpoint must hold for --resume (checkpoints written before 2026-12 lack "recipe" and still load)
CHECKPOINT_KEYS = ("model", "optimizer", "state", "best_state", "arch", "arch_kwargs", "grid_sha256")
# the options a resume may change: how long and where the run goes on, and which weights it writes; every
# other option shapes the targets, the draws, the loss or the schedule and is kept in the checkpoint's recipe
RESUME_MAY_CHANGE = "--epochs, --minutes, --patience, --keep, --threads, --device"
DEFAULT_EPOCHS = 2000


def _resumed_schedule(ckpt_path, ck, state, epochs, minutes):
    """(epochs, minutes) of a resumed run: the checkpoint's where ``epochs`` / ``minutes`` are None (a resume
    without --epochs / --minutes dropped the budget and ran to 2000 epochs, the cosine lr jumping back up),
    the given ones otherwise (``minutes`` inf: no budget). Prints one line saying which.

    ``epochs`` below what the checkpoint has reached is refused: nothing would train, the log said the
    schedule "stretches to the new total", and with an epoch in progress its record was dropped from the
    checkpoint while its weights were kept, so the next resume trained its first batches twice."""
    in_progress = bool(ck.get("epoch_progress"))
    reached = state["epoch"] + in_progress
    if epochs is not None and epochs < reached:
        now = (f"has run {state['epoch']} epochs" + (f" and is part way into epoch {reached}" if in_progress
                                                     else ""))
        rewrite = "" if in_progress else f" ({reached} rewrites the model files without training)"
        raise ValueError(f"--resume: --epochs {epochs} is fewer than {ckpt_path} has reached (it {now}); "
                         f"give --epochs {reached} or more{rewrite}, or leave --epochs out to keep the "
                         "run's own")
    recorded = ck.get("schedule")
    if recorded is None:            # written before the schedule was kept: the options as given, as then
        epochs = DEFAULT_EPOCHS if epochs is None else epochs
        print(f"--resume: {ckpt_path} predates the recorded schedule; epochs {epochs}, minutes "
              f"{_minutes_text(minutes)} as given (repeat the run's --epochs / --minutes)")
        return epochs, None if minutes == math.inf else minutes
    parts = []
    for name, given, theirs, why in (
            ("epochs", epochs, recorded["epochs"], "the cosine schedule stretches to the new total"),
            ("minutes", minutes, recorded["minutes"], "the total wall time, counting the time already run")):
        text = _minutes_text if name == "minutes" else str
        if given is None or given == theirs:
            parts.append(f"{name} {text(theirs)} as in the checkpoint")
        else:
            parts.append(f"--{name} {text(given)} replaces the checkpoint's {text(theirs)} ({why})")
    print(f"--resume at epoch {state['epoch']}: {'; '.join(parts)}")
    epochs = recorded["epochs"] if epochs is None else epochs
    minutes = recorded["minutes"] if minutes is None else minutes
    # a run that had ended by its budget resumed with the same one trained nothing and said only "wrote OUT:
    # 337 epochs in 60.1 s", as if it had gone on
    spent = []
    if reached >= epochs and not in_progress:
        spent.append(f"it has run its {int(epochs)} epochs: give a larger --epochs")
    if minutes not in (None, math.inf) and state["elapsed"] >= minutes * 60:
        spent.append(f"it has used its {minutes:g}-minute budget ({state['elapsed'] / 60:.2f} min): give a "
                     "larger --minutes (the total, counting the time already run) or --minutes inf")
    if spent:
        print(f"--resume: nothing to train ({'; '.join(spent)}); the model files are written as they are")
    return int(epochs), None if minutes == math.inf else minutes


def _minutes_text(minutes):
    return "none" if minutes is None or minutes == math.inf else f"{minutes:g}"
_CLI_FLAGS = {"tail_floor", "pixel_loss", "uv_weight", "w_max", "library_balance", "libraries", "node_loss",
              "node_blend", "node_blend_kind", "input_jitter", "jitter_floor", "jitter_quantile", "lr",
              "lr_final", "batch_size", "ema_decay", "seed", "init_from"}


def _show(value):
    """A recipe value for a message: long lists (excluded nodes) shortened."""
    if isinstance(value, list) and len(value) > 6:
        return f"[{', '.join(map(str, value[:3]))}, ... ({len(value)} values)]"
    return repr(value)


# options added after a run's record (its checkpoint's recipe, or an older run's config.json) began, with the
# behaviour of the runs before them: a record that lacks one was trained with that value, as the option came
# into train() and config.json in one commit (git log -S): no EMA (ema_decay, b4fe558), the plain MSE
# (node_loss, 248f5b1), no node blending (node_blend, 3756d90), whose draws were on segments until
# node_blend_kind (529ebbe), no warm start (init_from, 368a656), the jitter shares (jitter_floor / _quantile)
_RECIPE_BEFORE = {"jitter_floor": 1.0, "jitter_quantile": 0.5, "ema_decay": 0.0, "node_loss": "mse",
                  "node_blend": 0.0, "node_blend_kind": "segments", "init_from": None}


def _canonical_jitter_shares(input_jitter, floor, quantile):
    """(floor, quantile) as they act on training: (1, None) where they act on nothing -- no input jitter,
    or floor 1 (the quantile then scales nothing). Runs, resumes and averaged specialists compare these."""
    steps = input_jitter if isinstance(input_jitter, (list, tuple)) else [input_jitter or 0.0]
    if floor is None or floor >= 1 or not any(steps):
        return 1.0, None
    return floor, quantile


def _canonical_recipe(recipe, reference):
    """``recipe`` with what an older checkpoint left out filled in (where ``reference``, the current recipe,
    has the key) and spellings that train alike made equal (:func:`_canonical_jitter_shares`)."""
    r = dict(recipe)
    for key, before in _RECIPE_BEFORE.items():
        if key in reference and key not in r and r:
            r[key] = before
    if "jitter_floor" in r:
        r["jitter_floor"], r["jitter_quantile"] = _canonical_jitter_shares(
            r.get("input_jitter"), r["jitter_floor"], r.get("jitter_quantile"))
    return r


def _recipe_mismatch(ckpt_path, recorded, recipe):
    """ValueError text listing the options in which ``recipe`` differs from the checkpoint's, or None."""
    recorded, recipe = _canonical_recipe(recorded, recipe), _canonical_recipe(recipe, recipe)
    diffs = [f"{'--' + k.replace('_', '-') if k in _CLI_FLAGS else k} {_show(recorded[k])} in the "
             f"checkpoint, {_show(v)} now" for k, v in recipe.items() if k in recorded and recorded[k] != v]
    if not diffs:
        return None
    return (f"--resume: {ckpt_path} was trained with other options ({'; '.join(diffs)}); resume with the "
            f"checkpoint's options (only {RESUME_MAY_CHANGE} may change) or train into a new --out")


def _grid_hashes(ck, grid):
    """``(name, the checkpoint's, grid's)`` of the hash that tells whether ``grid`` is the one the checkpoint
    ``ck`` was trained on: the grid's content hash where both have one (a rebuild of the same grid from the
    same library files has another file sha256, its build time being an attribute, and was refused), the
    file's sha256 otherwise (checkpoints written before 2026-12-05 record that alone)."""
    theirs = ck.get("grid_content_sha256")
    if theirs and grid.content_sha256:
        return "content sha256", theirs, grid.content_sha256
    return "sha256", ck["grid_sha256"], grid.sha256


def _grid_differs(ck, grid):
    """Whether ``grid`` is not the one the checkpoint ``ck`` was trained on (by :func:`_grid_hashes`)."""
    _, theirs, ours = _grid_hashes(ck, grid)
    return theirs != ours


def _architecture_mismatch(ckpt_path, ck, arch, arch_kwargs, grid):
    """ValueError text for a resume whose network or grid is not the checkpoint's, naming the options to give.

    It printed the two kwargs dicts ("written for mlp {..., 'width': 64, 'depth': 2} ...; now mlp {...,
    'width': 256, 'depth': 3}"), which a user who resumed without repeating --width 64 --depth 2 had to
    translate into options."""
    theirs = ck["arch_kwargs"]
    diffs, give = [], []
    if ck["arch"] != arch:
        diffs.append(f"--arch {ck['arch']} in the checkpoint, {arch} now")
        give.append(f"--arch {ck['arch']}")
    options = (("width", "--width"), ("depth", "--depth"), ("B", "--B"))
    for key, option in options:
        if key in theirs and theirs.get(key) != arch_kwargs.get(key):
            if ck["arch"] == arch:
                diffs.append(f"{option} {theirs[key]} in the checkpoint, {arch_kwargs.get(key)} now")
            give.append(f"{option} {theirs[key]}")
    hash_name, ck_hash, grid_hash = _grid_hashes(ck, grid)
    if ck_hash != grid_hash:
        diffs.append(f"--grid: the checkpoint's has {hash_name} {ck_hash[:12]}..., "
                     f"{grid.path or 'this grid'} {grid_hash[:12]}...")
        give.append("the --grid it was trained on")
    elif not diffs:          # the grid's pixel count or libraries (n_wave, n_libraries) with one hash
        diffs.append(f"{ck['arch']} {theirs} in the checkpoint, {arch} {arch_kwargs} now")
    options_given = " ".join(g for g in give if g.startswith("--"))
    grid_given = [g for g in give if not g.startswith("--")]
    # "resume with --width 16 the --grid it was trained on" read as one option: the grid joined by "and"
    advice = ("resume with " + " and ".join(filter(None, [options_given, *grid_given])) if give
              else "resume with the checkpoint's options")
    return (f"--resume: {ckpt_path} was written for another network or grid ({'; '.join(diffs)}); {advice}, "
            "or train into a new --out")


def _read_checkpoint(ckpt_path, device):
    """The dict of a checkpoint written by :func:`train`; a one-line ValueError naming the file otherwise."""
    remedy = ("remove it and start again (--overwrite instead of --resume), or put back a good copy of it")
    # torch.load does not compare a member's bytes with their CRC-32: a damaged copy resumed other weights
    check_zip_crc(ckpt_path, "--resume: checkpoint", remedy)
    try:
        # plain tensors, dicts, lists, numbers and strings only: no code runs while it is read
        ck = torch.load(ckpt_path, map_location=device, weights_only=True)
    except Exception as exc:                   # noqa: BLE001 - torch raises many types for bad files
        detail = " ".join(str(exc).split()).split(". ")[0][:160]      # torch's first sentence says what
        raise ValueError(f"--resume: cannot read {ckpt_path}: it is truncated, corrupt or not a checkpoint "
                         f"of smnet-sps train ({type(exc).__name__}: {detail}); {remedy}") from None
    missing = [k for k in CHECKPOINT_KEYS if k not in ck] if isinstance(ck, dict) else list(CHECKPOINT_KEYS)
    state = ck.get("state") if isinstance(ck, dict) else None
    if not missing and not (isinstance(state, dict)
                            and all(k in state for k in ("epoch", "elapsed", "best_val", "best_epoch",
                                                         "history"))):
        missing = ["state"]
    if missing:
        raise ValueError(f"--resume: {ckpt_path} is not a checkpoint of smnet-sps train (no valid "
                         f"{', '.join(missing)}); {remedy}")
    return ck


def _checkpoint_draw_rng(ck, ckpt_path):
    """The draw generator's state saved in checkpoint ``ck`` (a CPU byte tensor), or None for a checkpoint
    written before it was saved: that run's draws restart from seed + epoch (with a warning), so the resumed
    run does not repeat the uninterrupted one exactly."""
    saved = ck.get("draw_rng")
    if saved is None:
        import warnings
        warnings.warn(f"--resume: {ckpt_path} predates the saved draw generator state; the draws restart "
                      "from seed + epoch, so the resumed run will not repeat an uninterrupted one exactly",
                      stacklevel=3)
        return None
    return torch.as_tensor(saved).to(device="cpu", dtype=torch.uint8)


def _checkpoint_progress(ck, ckpt_path, n_draws, batch_size):
    """The epoch an interruption cut short, as checkpoint ``ck`` keeps it (its draws, the batches done, its
    learning rate, the draw generator after them and the last batch's loss), or None (interrupted between
    epochs, or a checkpoint written before this was kept: that epoch is then drawn again from its start, on
    the weights part way into it)."""
    saved = ck.get("epoch_progress")
    if not saved:
        return None
    draw = torch.as_tensor(saved["draw"]).to("cpu", torch.int64)
    done = int(saved["done"])
    if draw.shape != (n_draws,) or not 0 < done <= -(-n_draws // batch_size):
        raise ValueError(f"--resume: {ckpt_path} holds an epoch in progress of {draw.numel()} draws, "
                         f"{done} batches done, which does not fit this run ({n_draws} draws per epoch, "
                         f"batches of {batch_size}); remove it and start again (--overwrite instead of "
                         "--resume), or put back a good copy of it")
    return {"draw": draw.numpy(), "done": done, "lr": float(saved["lr"]),
            "rng": torch.as_tensor(saved["rng"]).to(device="cpu", dtype=torch.uint8),
            "train_loss": float(saved["train_loss"])}


def _progress_record(running):
    """The checkpoint entry of the epoch in progress (plain tensors and numbers), or None between epochs."""
    if running is None:
        return None
    return {"draw": torch.as_tensor(running["draw"], dtype=torch.int64), "done": int(running["done"]),
            "lr": float(running["lr"]), "rng": running["rng"], "train_loss": float(running["loss"].item())}


def _whole_number(name, value, minimum=1):
    """``value`` as an int when it is a whole number >= ``minimum`` (10 and 10.0; not 2.5, "10" or True);
    a ValueError naming ``name`` otherwise."""
    number = value if isinstance(value, (int, float, np.integer, np.floating)) else float("nan")
    if isinstance(value, bool) or not (math.isfinite(number) and number == int(number) and number >= minimum):
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(number)


def _unvalidated_epoch(state):
    """Whether the checkpoint ``state``'s last epoch was trained but never validated (an interruption during
    its validation): its history lacks that epoch's row."""
    history = state["history"]
    return state["epoch"] > 0 and (not history or history[-1][0] != state["epoch"])


def _fit_rows(split, exclude_nodes):
    """Boolean rows of the training nodes (split 0) not in ``exclude_nodes``: what the output scaling and
    the log1p01 fit are computed from, so that an excluded fold's spectra cannot shape the model."""
    rows = split == SPLIT_CODES["train"]
    if exclude_nodes is not None:
        rows[exclude_nodes] = False
    if not rows.any():
        raise ValueError("exclude_nodes leaves no training node")
    return rows


def _node_indices(exclude_nodes):
    """``exclude_nodes`` as an int array of node indices: whole numbers only (1.7 was truncated to node 1; a
    boolean mask would be read as nodes 0 and 1). The range is checked against the grid later."""
    nodes = np.asarray(exclude_nodes)
    whole = nodes.dtype.kind in "iu" or (nodes.dtype.kind == "f" and bool(np.all(np.isfinite(nodes)))
                                         and bool(np.all(nodes == np.round(nodes))))
    if nodes.ndim > 1 or not whole:
        raise ValueError(f"exclude_nodes must be grid node indices (whole numbers >= 0), got "
                         f"{_show(nodes.tolist())}")
    return nodes.astype(int)


@contextlib.contextmanager
def _sole_training_in(out):
    """Hold an exclusive lock on the model folder ``out`` (created if missing) while one training writes it.

    Two trainings started into one folder (two terminals, a job array with one --out) both ran to the end
    with exit status 0, writing checkpoint.pt, weights.pt and config.json in turn: the folder ended with
    the last writer's model, the other run's work lost without a word, and a resume in between took either
    run's checkpoint. The second is now refused at once with a ValueError. The lock is the operating
    system's (``flock`` on the folder), released when the run ends however it ends (a kill included), so no
    stale lock is ever left; where ``fcntl`` is missing (Windows) or the file system cannot lock a
    folder (NFS, which emulates flock with byte-range locks) there is no lock. On every platform, the
    folders this call made (``out`` and its missing parents) are removed again where the run leaves them
    empty (a run refused for a bad option, a time budget that ran out before the first epoch); one the run
    wrote into is kept."""
    import os
    try:
        import fcntl
    except ImportError:
        fcntl = None
    folder = Path(out)
    made, p = [], folder
    while not p.exists() and p != p.parent:
        made.append(p)
        p = p.parent
    fd = None
    try:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if fcntl is not None:
                fd = os.open(folder, os.O_RDONLY)
        except OSError:        # a file, an unwritable parent: train's own check names it
            pass
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                # the folder is the other run's, even if this call saw it missing a moment before it was
                # made (two runs started together): removing it would leave that run writing an unlocked
                # folder
                made = []
                raise ValueError(f"{str(out)!r}: another training (smnet-sps train or train()) is writing "
                                 "this model folder now; two runs in one folder overwrite each other's "
                                 "checkpoint and model files. Wait for it to end (then --resume it or "
                                 "--overwrite it), or train into another folder") from None
            except OSError:    # a file system without flock on a folder (NFS emulates it: EBADF): no lock
                pass
        yield
    finally:
        if fd is not None:
            os.close(fd)
        for folder_made in made:          # deepest first; rmdir removes only an empty folder
            try:
                folder_made.rmdir()
            except OSError:
                break


def _one_training_per_folder(func):
    """``func(grid, out, ...)`` run holding :func:`_sole_training_in` ``out``."""
    import functools

    @functools.wraps(func)
    def wrapper(grid, out, *args, **kwargs):
        with _sole_training_in(out):
            return func(grid, out, *args, **kwargs)
    return wrapper


# torch.manual_seed(seed) and threads= are global: given back afterwards, as calibrate() does (train() left
# its caller reseeded and on `threads` threads)
@_one_training_per_folder
@caller_torch_state_kept()
def train(grid, out, *, arch="mlp", width=256, depth=3, B=64, epochs=None, minutes=None, device="auto",
          resume=False, overwrite=False, batch_size=256, lr=2e-3, weight_decay=0.0, patience=200,
          save_every=50,
          save_minutes=10.0, seed=0,
          test_every=10, w_max=5.0, threads=None, progress=True, name=None, reference="blackbody",
          pixel_loss="standardised", tail_floor=1e-6, init_from=None, library_balance=1.0, uv_weight=1.0,
          lr_final=0.02, ema_decay=0.0, libraries=None, keep="best", input_jitter=0.0, exclude_nodes=None,
          node_loss="mse", node_blend=0.0, node_blend_kind="segments", jitter_floor=1.0, jitter_quantile=0.5,
          split_seed=0):
    """Train a generator on a union grid and write a model directory.

    torch's thread count (``threads``) and random state (``seed``) are set for the run and given back to the
    caller afterwards (CPU, and CUDA devices already in use), whatever the run's outcome.

    Parameters
    ----------
    grid : path or TrainingGrid
    out : path, the model directory to write (config.json, weights.pt, wavelength.npy, nodes.npz,
        checkpoint.pt for --resume)
    arch : ``"mlp"`` (default emulator) or ``"smnet"`` (released architecture, base width ``B``)
    width, depth : MLP hidden width and number of hidden layers
    epochs : int, maximum number of epochs (one epoch = n_train weighted draws); None: 2000
        (:data:`DEFAULT_EPOCHS`), or with ``resume`` the checkpoint's
    minutes : float or None, wall-time budget [min]; training stops at whichever of epochs/minutes comes
        first. None: no budget, or with ``resume`` the checkpoint's (``math.inf`` removes it then). A
        budget that runs out before the first epoch ends is a ValueError: no model is written.
    device : ``"auto"``, ``"cpu"``, ``"cuda"``
    resume : continue from ``out/checkpoint.pt``. The checkpoint records the run's recipe (every option
        that shapes the targets, the draws, the loss or the schedule); a resume with other values is refused
        (give the run's: ``smnet-sps train --resume`` reads them from the checkpoint where they are left out).
        ``epochs`` (e.g. larger, to extend a run: the cosine schedule then stretches to the new total from
        the epoch reached; not below the epochs the checkpoint has run, or the epoch it is part way into:
        a ValueError), ``minutes``, ``patience``, ``keep``, ``threads`` and ``device`` may change;
        ``epochs`` and ``minutes`` left at None keep the checkpoint's (the run's schedule and budget).
        The checkpoint keeps the draw generator's state at the start of the epoch in progress and, for an
        interruption part way into an epoch, that epoch's draws, learning rate, batches done and the
        generator after them: a run interrupted between two batches and resumed repeats the uninterrupted
        one bit for bit on CPU; Ctrl-C / SIGTERM during a batch's optimiser step takes effect once that
        batch's update is complete and counted.
    overwrite : replace a model (config.json, weights.pt) or a checkpoint already in ``out``; without it (and
        without ``resume``) such a folder is refused before any work. The replaced model's library
        preferences (mixture.json) are removed once the new config.json is written.
    seed : int, the optimisation's randomness (initial weights, the order of the draws, input jitter); it
        never moves the held-out nodes
    split_seed : int, the shuffle of :func:`split_nodes` that picks the validation and test nodes (default 0,
        the split of the shipped models). A warm start (``init_from``) must use its model's split: its
        output scaling was fitted on that split's training nodes, and its test nodes must stay unseen.
    patience : early stopping after this many epochs without a better validation loss
    progress : True (default), False or None: a tqdm bar over the epochs with the losses. On by default also
        into a log file (the losses are worth keeping there); None draws it on a terminal or in a Jupyter
        kernel only, the rule of the other long-running functions (:mod:`smnet_sps.progress`)
    reference : ``"blackbody"`` (default) or ``"none"``: the MLP predicts log10(F / sigma T^4) minus this
        reference's log10(pi B_lambda / sigma T^4) (see :func:`smnet_sps.model.blackbody_log_ratio`)
    save_every : write checkpoint + model every this many epochs (a whole number >= 1; so are ``width``,
        ``depth``, ``B``, ``epochs``, ``batch_size`` and ``test_every``)
    save_minutes : also write them when this many minutes have passed since the last write (an epoch of a
        large network takes ~30 s); an interruption (KeyboardInterrupt: Ctrl-C, or SIGTERM under the CLI)
        writes them too (the model files once an epoch is validated), then re-raises; an epoch interrupted
        during its validation is validated when the run is resumed. Every file is written under a temporary
        name and renamed when complete, so a kill during a write leaves the previous checkpoint.
    tail_floor : float in [0, 1), MLP only: pixels fainter than ``tail_floor`` x the spectrum's peak
        F_lambda are left out of the loss and of the per-pixel mean/std (0 keeps all). The far Wien tail of
        cool stars (10^-30 of their peak in the EUV) otherwise dominates those pixels' standard deviation,
        so the standardised loss barely constrains the EUV of hot stars, where most of their luminosity is.
        With the blackbody reference the prediction in such pixels stays a tiny blackbody tail times a
        bounded correction.
    pixel_loss : ``"standardised"`` (MSE of the per-pixel standardised MLP output), ``"log"`` (the same
        errors weighted by each pixel's variance, i.e. MSE in log10 flux: every pixel counts by its relative
        flux error, which is what the accuracy metric |dF/F| measures) or ``"mixed"`` (weighted by each
        pixel's standard deviation: half way between the two). MLP only.
    init_from : model directory or None. Warm start: begin from that model's weights (same architecture and
        the same grid, so the same output scaling); the optimiser and schedule start afresh. The targets are
        standardised with its output scaling (out_mean / out_std), also when the run is resumed.
    library_balance : float in [0, 1]. Each library's share of the training draws is proportional to
        n_library ** library_balance (1: as many draws as nodes, the union's natural mix, dominated by CK04;
        0: every library drawn equally often; 0.5 gives the small libraries more weight without starving
        CK04).
    uv_weight : float >= 1, MLP only: loss weight of the pixels at 1,000-3,000 A (the UV, where young
        populations and UV photometry need the spectra; the far Wien tail stays masked by ``tail_floor``).
    lr_final : the cosine schedule ends at ``lr_final`` x ``lr``.
    w_max : float >= 1, the cap of the sampling weights (:func:`sampling_weights`): a node is drawn up to
        ``w_max`` times as often as the library's typical node where its spectrum changes fast; 1 draws
        every node of a library equally often (the WM-basic expert: its nodes scatter, and up-weighting
        them chases the scatter; docs/generator.md).
    node_loss : "mse" (default) or "pseudo_huber": the training loss per spectrum (:func:`masked_mse`); the
        pseudo-Huber form lets a node far off its neighbours pull less (validation stays plain MSE).
    ema_decay : float in [0, 1). If > 0, validation and the written weights use an exponential moving average
        of the parameters (decay per optimiser step); averaging over the last few hundred steps smooths the
        optimiser's noise at no cost at inference.
    libraries : list of library names or None. Draw training and validation nodes from these libraries only
        (the model keeps its input for every library). With ``init_from`` this fine-tunes a specialist of one
        library, the member of an expert model (:func:`smnet_sps.experts.build_expert_model`).
    keep : ``"best"`` (the weights of the epoch with the lowest validation loss) or ``"final"`` (those at the
        end of the schedule: for a fixed number of epochs chosen beforehand on the validation nodes; the
        validation loss, a mean square in standardised units, need not follow the flux error).
    input_jitter : float >= 0, or three of them (Teff, log g, [M/H]). Gaussian noise added to each training
        draw's inputs, in units of a grid step (0.02 dex in Teff, 0.5 dex in log g and [M/H]:
        :data:`smnet_sps.constants.NODE_STEPS`). The network then has to vary smoothly between the nodes
        instead of threading every node exactly; where a library's nodes scatter (NextGen, WM-basic) that
        lowers the error at nodes it never saw. Three values set each input's noise on its own, for a library
        whose nodes are closer than a step along one axis (WM-basic's [M/H] nodes are 0.1-0.2 dex apart).
        0: off.
    jitter_floor : float in (0, 1]. With 1 (the default) every node gets the whole ``input_jitter``. Below
        1, a node's jitter along each input is scaled by how far its spectrum departs from the straight line
        through its two neighbours along that input (:func:`line_departures`, training nodes only), divided
        by its library's ``jitter_quantile`` of those departures and clipped to [jitter_floor, 1]
        (:func:`jitter_shares`): a node on a smooth stretch of the grid is smoothed less than one that
        scatters (docs/experiments.md, WM-basic, nineteenth round). A blended draw takes its vertices'
        blend of the shares.
    jitter_quantile : float in (0, 1], the quantile of a library's departures that gets the whole jitter.
    exclude_nodes : int array or None, grid node indices left out of training and validation (k-fold
        cross-validation over nodes, e.g. benchmarks/bench_node_cv.py), and of what is fitted to the
        training nodes: the output scaling (out_mean / out_std), the clamp range (out_lo / out_hi), the
        log1p01 fit, the sampling weights and the tail table; recorded in config.json. A warm start
        (``init_from``) keeps its model's output scaling, only widening the clamps to this run's training
        nodes: the fold is left out of it only if that model was trained without the fold too
        (bench_node_cv.py --refit-base).
    node_blend : float in [0, 1), MLP only. This share of the training draws is replaced by blends: with
        ``node_blend_kind="segments"`` (the default), points on the segments between neighbouring training
        nodes (:func:`blend_edges`; segments drawn uniformly), at a uniform position t, with the target the
        same blend of the two nodes' log10(F / sigma Teff^4) (the space linear interpolation works in; the
        blackbody reference is re-evaluated at the blended Teff) and the pixels both nodes know. Between
        nodes the network is then pulled towards the straight line rather than left free to swing. 0: off
        (no random numbers are drawn for it).
    node_blend_kind : "segments" (above) or "simplices": the blended draws are uniform points in the
        Delaunay simplices of each library's training nodes (:func:`blend_simplices`, simplices drawn
        uniformly), with the barycentric blend of the vertices' log10(F / sigma Teff^4) as the target, i.e.
        the interpolation baseline's value at that point (pixels all vertices know).

    Returns
    -------
    dict, the config written to ``out/config.json``
    """
    from .neural import MODEL_FORMAT, resolve_device, weights_sha256

    if reference not in ("blackbody", "none"):
        raise ValueError(f"unknown reference {reference!r}; allowed: ['blackbody', 'none']")
    if pixel_loss not in PIXEL_LOSS_POWERS:
        raise ValueError(f"unknown pixel_loss {pixel_loss!r}; allowed: {sorted(PIXEL_LOSS_POWERS)}")
    if not 0.0 <= float(library_balance) <= 1.0:
        raise ValueError(f"library_balance must be in [0, 1], got {library_balance}")
    if not (np.isfinite(float(uv_weight)) and float(uv_weight) >= 1.0):
        raise ValueError(f"uv_weight must be a finite number >= 1, got {uv_weight}")
    if isinstance(weight_decay, bool) or not (isinstance(weight_decay, (int, float, np.integer, np.floating))
                                              and math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    if not (np.isfinite(float(lr)) and float(lr) > 0):
        raise ValueError(f"lr must be a finite learning rate > 0, got {lr}")
    wait = float(patience) if isinstance(patience, (int, float, np.integer, np.floating)) else float("nan")
    if isinstance(patience, bool) or not (wait >= 1 and (wait == math.inf or wait == int(wait))):
        raise ValueError(f"patience must be a whole number of epochs >= 1 (or inf), got {patience!r}")
    try:
        cap = float(w_max)
    except (TypeError, ValueError):
        cap = float("nan")
    if not (np.isfinite(cap) and cap >= 1.0):
        raise ValueError(f"w_max must be a finite number >= 1, got {w_max!r}")
    w_max = cap
    try:
        floor = float(tail_floor)
    except (TypeError, ValueError):
        floor = float("nan")
    if not 0.0 <= floor < 1.0:          # 1 or more would leave every pixel out of the loss; NaN fails too
        raise ValueError(f"tail_floor must be a number in [0, 1) (a fraction of each spectrum's peak; 0 "
                         f"keeps every pixel in the loss), got {tail_floor!r}")
    tail_floor = floor
    if init_from is not None:
        from .neural import read_model_config
        # present, valid JSON, a model's (a truncated config.json was a bare 'Expecting value: line 6 column
        # 16', naming no file); read once here, before the grid is read or the output folder made
        init_cfg = read_model_config(init_from)
    if init_from is not None and arch == "mlp":
        # its output scaling (out_mean / out_std, loaded with its weights) was fitted to its targets: a
        # warm start must build the same ones (another tail_floor put up to 7 dex between them)
        theirs = (init_cfg.get("reference", "none"), float(init_cfg.get("tail_floor", tail_floor)))
        if theirs != (reference, tail_floor):
            raise ValueError(f"init_from={init_from} was trained with reference={theirs[0]!r}, "
                             f"tail_floor={theirs[1]:g}; a warm start needs the same (got "
                             f"reference={reference!r}, tail_floor={tail_floor:g})")
    if not (isinstance(save_minutes, (int, float)) and save_minutes > 0):
        raise ValueError(f"save_minutes must be a number > 0, got {save_minutes!r}")
    _check_node_loss(node_loss)                 # before the grid is read, not at the first batch
    if not 0.0 <= float(ema_decay) < 1.0:
        raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
    if keep not in ("best", "final"):
        raise ValueError(f"keep must be 'best' or 'final', got {keep!r}")
    if not 0.0 < float(lr_final) <= 1.0:
        raise ValueError(f"lr_final must be in (0, 1], got {lr_final}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be a whole number in 0 .. 2**63 - 1, got {seed!r}")
    seed = int(seed)                            # torch's generators take Python integers only
    jitter_steps = _jitter_steps(input_jitter)
    _check_jitter_share_options(jitter_floor, jitter_quantile)
    jitter_floor, jitter_quantile = float(jitter_floor), float(jitter_quantile)
    try:
        blend = float(node_blend)
    except (TypeError, ValueError):
        blend = float("nan")
    if not 0.0 <= blend < 1.0:
        raise ValueError(f"node_blend must be a number in [0, 1), got {node_blend!r}")
    node_blend = blend
    if node_blend > 0 and arch != "mlp":
        raise ValueError("node_blend needs arch='mlp' (its targets are linear in log10 flux)")
    if node_blend_kind not in ("segments", "simplices"):
        raise ValueError(f"node_blend_kind must be 'segments' or 'simplices', got {node_blend_kind!r}")
    if arch not in ("mlp", "smnet"):
        raise ValueError(f"unknown architecture {arch!r}; allowed: ['mlp', 'smnet']")
    # whole numbers: int() truncated width=32.5 to 32, and range() or the split failed deep (batch_size=2.5,
    # test_every=0) or after the first epoch (save_every=0, an empty model folder)
    epochs_given = epochs is not None                  # on resume, None keeps the checkpoint's
    epochs = DEFAULT_EPOCHS if epochs is None else epochs
    width, depth, epochs, batch_size, B, save_every, test_every = (
        _whole_number(nm, val) for nm, val in (("width", width), ("depth", depth), ("epochs", epochs),
                                               ("batch_size", batch_size), ("B", B),
                                               ("save_every", save_every), ("test_every", test_every)))
    # options of the other architecture would be recorded but never applied: SM-Net trains on log1p-scaled
    # flux with its own loss and has a base width B, the MLP a width and a depth (`train --arch smnet --width
    # 512` trained SM-Net's B=64 layout without a word, `--B 1024` of an MLP was dropped alike). Named as
    # parameter and option, for the Python and the command line alike
    unused = [f"{name}={value!r} (--{name.replace('_', '-')})" for name, value, default in (
        (("uv_weight", uv_weight, 1.0), ("pixel_loss", pixel_loss, "standardised"),
         ("tail_floor", tail_floor, 1e-6), ("width", width, 256), ("depth", depth, 3))
        if arch != "mlp" else (("B", B, 64),)) if value != default]
    if unused:
        kind = "MLP-only" if arch != "mlp" else "SM-Net-only"
        raise ValueError(f"{', '.join(unused)}: {kind} option(s); arch={arch!r} does not use them (leave "
                         "them at their defaults)")
    if exclude_nodes is not None:
        exclude_nodes = _node_indices(exclude_nodes)
    if isinstance(split_seed, bool) or not isinstance(split_seed, (int, np.integer)) or split_seed < 0:
        raise ValueError(f"split_seed must be a non-negative integer, got {split_seed!r}")
    _check_model_folder(out, overwrite=bool(overwrite or resume))
    if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, (int, float, np.integer,
                                                                                     np.floating))
                                or not minutes > 0):
        raise ValueError(f"minutes must be a number > 0 [min] (or None for no time limit), got {minutes!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer))
                                or threads < 1):
        raise ValueError(f"threads must be a whole number >= 1 (or None for torch's default), got "
                         f"{threads!r}")
    if threads:
        torch.set_num_threads(int(threads))
    if not isinstance(grid, TrainingGrid):
        grid = read_grid(grid)
    if grid.teff.size == 0:
        raise ValueError(f"{grid.path or 'the grid'} holds no stellar spectra (0 nodes; a grid of phase-only "
                         "libraries such as cmfgen_wn, built with --only, has none); train on a grid built "
                         "with at least one stellar library")
    out = Path(out)
    dev = resolve_device(device)
    torch.manual_seed(seed)

    n, L = grid.flux.shape
    lo = np.array([np.log10(grid.teff.min()), grid.logg.min(), grid.logz.min()])
    hi = np.array([np.log10(grid.teff.max()), grid.logg.max(), grid.logz.max()])
    hi = np.where(hi > lo, hi, lo + 1.0)          # a constant dimension (single-[M/H] grid) scales to 0
    x_all = _scaled_inputs(grid, lo, hi)
    split = split_nodes(grid.teff, grid.logg, grid.logz, grid.library_id, test_every=test_every,
                        seed=split_seed)
    if exclude_nodes is not None:
        exclude_nodes = np.unique(np.asarray(exclude_nodes, dtype=int))
        if exclude_nodes.size and (exclude_nodes.min() < 0 or exclude_nodes.max() >= n):
            raise ValueError(f"exclude_nodes must be grid node indices in [0, {n}); got "
                             f"{exclude_nodes.min()}..{exclude_nodes.max()}")
    # the nodes the output scaling (out_mean / out_std, the clamp range out_lo / out_hi) and the log1p01 fit
    # are taken from: the training nodes, less a cross-validation fold (until 2026-12-03 the fold's spectra
    # set them too: x3 on a fold moved out_mean by 0.115 dex and x_max 0.00715 -> 0.0182)
    tr = _fit_rows(split, exclude_nodes)
    log_ratio = log_ratio_targets(grid.flux, grid.mask, grid.teff)
    mask = grid.mask & np.isfinite(log_ratio)
    ratio = np.where(mask, 10.0 ** np.nan_to_num(log_ratio), 0.0)
    tau, x_max = fit_log1p01(ratio[tr], mask[tr])
    n_lib = len(grid.library_names)
    known_all = mask
    if arch == "mlp" and tail_floor > 0:
        peak = np.max(np.where(mask, grid.flux, 0.0), axis=1, keepdims=True)
        mask = mask & (grid.flux >= tail_floor * peak)

    if arch == "mlp":
        if reference == "blackbody":
            log_ratio_ref = log_ratio - blackbody_log_ratio(grid.wavelength, grid.teff).astype(np.float32)
        else:
            log_ratio_ref = log_ratio
        known = mask[tr]
        vals = np.where(known, log_ratio_ref[tr], 0.0).astype(np.float64)
        cnt = known.sum(0)
        mean = np.where(cnt > 0, vals.sum(0) / np.maximum(cnt, 1), 0.0)
        var = np.where(known, (vals - mean) ** 2, 0.0).sum(0) / np.maximum(cnt, 1)
        std = np.maximum(np.sqrt(var), 1e-3)       # floor: near-constant pixels must not blow up
        target = _standardised(log_ratio_ref, mask, mean, std)
        arch_kwargs = dict(n_wave=L, n_libraries=n_lib, width=int(width), depth=int(depth))
    else:
        target = np.where(mask, log1p01_forward(ratio, tau, x_max), 0.0).astype(np.float32)
        arch_kwargs = dict(B=int(B), L=L)
    model = build_model(arch, **arch_kwargs)
    if arch == "mlp":
        model.out_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        model.out_std.copy_(torch.as_tensor(std, dtype=torch.float32))
        z_lo, z_hi = target_range(target[tr], mask[tr])
        model.out_lo.copy_(torch.as_tensor(z_lo, dtype=torch.float32))
        model.out_hi.copy_(torch.as_tensor(z_hi, dtype=torch.float32))
    model.to(dev)
    def to_t(a, dtype=torch.float32):
        return torch.as_tensor(a, device=dev, dtype=dtype)
    X, Y, M = to_t(x_all), to_t(target), torch.as_tensor(mask, device=dev)
    MIX = torch.nn.functional.one_hot(torch.as_tensor(grid.library_id, device=dev).long(), n_lib).float()
    chosen = np.ones(n, bool)
    if libraries is not None:
        unknown = sorted(set(libraries) - set(grid.library_names))
        if unknown or not libraries:
            raise ValueError(f"libraries={list(libraries)}: unknown {unknown}; the grid holds "
                             f"{list(grid.library_names)}")
        repeated = sorted({nm for nm in libraries if list(libraries).count(nm) > 1})
        if repeated:
            # config.json recorded the list as given, which `experts` then refused as another library set
            raise ValueError(f"libraries={list(libraries)}: {repeated} named more than once; name each once")
        chosen = np.isin(grid.library_id, [list(grid.library_names).index(nm) for nm in libraries])
    idx_tr, idx_val = np.flatnonzero((split == 0) & chosen), np.flatnonzero((split == 1) & chosen)
    if exclude_nodes is not None:
        idx_tr, idx_val = np.setdiff1d(idx_tr, exclude_nodes), np.setdiff1d(idx_val, exclude_nodes)
        if idx_tr.size == 0:
            raise ValueError("exclude_nodes leaves no training node")
    if idx_val.size == 0:
        idx_val = idx_tr
    tail_table = None
    if arch == "mlp" and reference == "blackbody" and tail_floor > 0:
        # the training nodes' tails (both sides), left out of the loss, filled in at run time
        # (smnet_sps.tail). Nodes excluded from this run (a cross-validation fold) are left out of it too;
        # every library's training nodes are in it, also those outside `libraries` (the table is the
        # library's data, not the network's)
        tail_split = split.copy()
        if exclude_nodes is not None:
            tail_split[exclude_nodes] = -1
        tail_table = tabulate_tail(grid.wavelength, log_ratio_ref,
                                   wien_tail_mask(grid.wavelength, grid.flux, known_all, tail_floor),
                                   grid.library_id, tail_split, grid.library_names,
                                   red_tail=red_tail_mask(grid.wavelength, grid.flux, known_all, tail_floor))
    # Draw weights from the nodes this run trains on only: a held-out node's spectrum must not decide how
    # often its neighbours are drawn (before 2026-12-01 the neighbour search also saw held-out nodes).
    in_training = np.zeros(n, bool)
    in_training[idx_tr] = True
    W = to_t(sampling_weights(x_all[idx_tr] / np.asarray(NODE_STEPS) * (hi - lo), log_ratio[idx_tr],
                              grid.library_id[idx_tr], w_max=w_max)
             * library_share_factors(grid.library_id, in_training, library_balance)[idx_tr])
    PW = None
    if arch == "mlp" and (pixel_loss != "standardised" or uv_weight != 1.0):
        PW = to_t(_pixel_weights(std, pixel_loss, uv_weight, grid.wavelength))

    # one grid step per input, in scaled units (log g and [M/H] share a step; see input_jitter)
    jitter_sigma = to_t(jitter_steps * np.asarray(NODE_STEPS) / (hi - lo))
    node_sigma = None                       # per node and input, with jitter_floor < 1
    if jitter_floor < 1 and jitter_steps.any():
        departures = line_departures(grid.teff, grid.logg, grid.logz, grid.library_id,
                                     log_ratio_ref if arch == "mlp" else log_ratio, mask, idx_tr)
        node_sigma = jitter_sigma * to_t(jitter_shares(departures, grid.library_id, jitter_floor,
                                                       jitter_quantile))

    def forward(x, mix, net=None, jitter=None):
        """The network on scaled inputs ``x`` with one-hot libraries ``mix`` (nodes or blended draws);
        ``jitter``: the noise width per draw and input (node_sigma's rows), or True for ``input_jitter``'s."""
        net = model if net is None else net
        if jitter is not None and jitter is not False and jitter_steps.any():
            sigma = jitter_sigma if jitter is True else jitter
            x = x + sigma * torch.randn(x.shape, generator=gen, device="cpu").to(dev)
        return net(x, mix) if arch == "mlp" else net(x)

    edges = simplices = None
    if node_blend > 0 and node_blend_kind == "segments":
        edges = blend_edges(grid.teff, grid.logg, grid.logz, grid.library_id, idx_tr)
        if edges.size == 0:
            raise ValueError("node_blend > 0 but no two training nodes are neighbours (blend_edges)")
    elif node_blend > 0:
        simplices, n_vertices = blend_simplices(grid.teff, grid.logg, grid.logz, grid.library_id, idx_tr)
        if simplices.size == 0:
            raise ValueError("node_blend > 0 but the training nodes span no simplex (blend_simplices)")
        vertex_used = np.arange(4)[None, :] < n_vertices[:, None]
    inv_std = to_t(1.0 / std) if node_blend > 0 else None

    def blended(rows, x, mix, y, m, sigma, vertices, weights, weights_t):
        """The draws ``rows`` replaced by the blends sum_k weights[k] x node vertices[k] (inputs and
        reference-subtracted log flux alike; the pixels every vertex knows); ``weights_t``: the same
        weights as (n, 1) tensors on the device, made by the caller so that a segment's float32 (1 - t, t)
        keep the exact draws of the runs before simplices existed. ``sigma``: the draws' jitter widths
        (True: input_jitter's, kept), the blended rows given the vertices' blend of them."""
        shift = _reference_shift(grid.wavelength, [grid.teff[v] for v in vertices],
                                 [w[:, 0] for w in weights], reference)
        x, mix, y, m = x.clone(), mix.clone(), y.clone(), m.clone()
        x_b, y_b, m_b = weights_t[0] * X[vertices[0]], weights_t[0] * Y[vertices[0]], M[vertices[0]]
        for v, w in zip(vertices[1:], weights_t[1:]):
            x_b, y_b, m_b = x_b + w * X[v], y_b + w * Y[v], m_b & M[v]
        x[rows], mix[rows], m[rows] = x_b, MIX[vertices[0]], m_b
        y[rows] = y_b + to_t(shift) * inv_std
        if sigma is not True:
            sigma = sigma.clone()
            sigma[rows] = sum(w * node_sigma[v] for v, w in zip(vertices, weights_t))
        return (x, mix), y, m, sigma

    def batch(ix):
        """Inputs, targets, masks and jitter widths of the draws ``ix``, a ``node_blend`` share of them made
        blends."""
        x, mix, y, m = X[ix], MIX[ix], Y[ix], M[ix]
        sigma = True if node_sigma is None else node_sigma[ix]
        if edges is None and simplices is None:
            return (x, mix), y, m, sigma
        rows = np.flatnonzero((torch.rand(len(ix), generator=gen) < node_blend).numpy())
        if rows.size == 0:
            return (x, mix), y, m, sigma
        if edges is not None:
            i, j = edges[torch.randint(len(edges), (rows.size,), generator=gen).numpy()].T
            t = torch.rand(rows.size, 1, generator=gen, dtype=torch.float64).numpy()
            tt = to_t(t)
            return blended(rows, x, mix, y, m, sigma, [i, j], [1 - t, t], [1 - tt, tt])
        pick = torch.randint(len(simplices), (rows.size,), generator=gen).numpy()
        # uniform in the simplex: normalised exponential draws (Dirichlet(1, ..., 1)) over its vertices
        e = -np.log1p(-torch.rand(rows.size, 4, generator=gen, dtype=torch.float64).numpy())
        e = np.where(vertex_used[pick], e, 0.0)
        w = e / e.sum(1, keepdims=True)
        weights = [w[:, k:k + 1] for k in range(4)]
        return blended(rows, x, mix, y, m, sigma, list(simplices[pick].T), weights,
                       [to_t(v) for v in weights])

    # the run's recipe, kept in the checkpoint: a resume continues the same targets (the checkpoint's output
    # scaling was fitted with them), draws, loss and schedule, or is refused. Equivalent spellings compare
    # equal (libraries=None and all of them, one jitter width and three equal ones); MLP-only options are
    # None for SM-Net, which does not use them.
    mlp = arch == "mlp"
    recipe = {"reference": reference if mlp else None, "tail_floor": tail_floor if mlp else None,
              "pixel_loss": pixel_loss if mlp else None, "uv_weight": float(uv_weight) if mlp else None,
              "test_every": int(test_every), "w_max": float(w_max), "library_balance": float(library_balance),
              "libraries": sorted(set(libraries)) if libraries is not None else sorted(grid.library_names),
              "exclude_nodes": [] if exclude_nodes is None else [int(i) for i in exclude_nodes],
              "node_loss": node_loss, "node_blend": node_blend,
              "node_blend_kind": node_blend_kind if node_blend > 0 else None,
              "input_jitter": [float(v) for v in jitter_steps], "batch_size": int(batch_size),
              "jitter_floor": jitter_floor, "jitter_quantile": jitter_quantile,
              "lr": float(lr), "lr_final": float(lr_final), "weight_decay": float(weight_decay),
              "ema_decay": float(ema_decay), "seed": int(seed),
              "init_from": str(Path(init_from).resolve()) if init_from else None}

    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    state = dict(epoch=0, elapsed=0.0, best_val=math.inf, best_epoch=-1, history=[])
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ckpt_path = out / "checkpoint.pt"
    ema_state = {}          # filled after init/resume; empty = no averaging
    draw_rng = None         # the draw generator's state a resume continues from (None: seeded afresh)
    resumed_epoch = None    # the epoch an interruption cut short, continued where it stopped (resume)
    running = None          # the epoch in progress: draws, learning rate, batches done, generator after them

    def use_loaded_scaling():
        """Targets, blends and pixel weights in the loaded weights' output scaling (a warm start's, also
        when its run is resumed); returns the per-pixel spread in use."""
        spread = _warm_start_scaling(model, mean, std, log_ratio_ref, mask, tr, Y, inv_std)
        if PW is not None:         # the pixels' spread is the loaded scaling's too
            PW.copy_(to_t(_pixel_weights(spread, pixel_loss, uv_weight, grid.wavelength)))
        return spread

    if init_from is not None and not resume:
        from .neural import _model_weights
        init_dir = Path(init_from)
        if init_cfg.get("arch") != arch or init_cfg.get("arch_kwargs") != arch_kwargs:
            raise ValueError(f"init_from={init_dir}: its architecture {init_cfg.get('arch')} "
                             f"{init_cfg.get('arch_kwargs')} differs from {arch} {arch_kwargs}")
        theirs = init_cfg.get("library_names")
        if theirs is not None and list(theirs) != list(grid.library_names):
            # its one-hot library inputs and output scaling belong to that grid (the split check below
            # caught it, but blamed the split seed)
            raise ValueError(f"init_from={init_dir} was trained on a grid of libraries {list(theirs)}; "
                             f"this grid holds {list(grid.library_names)}: warm-start from a model of the "
                             "same grid")
        init_nodes = init_dir / "nodes.npz"
        if init_nodes.is_file():
            with np.load(init_nodes) as f:
                same = np.array_equal(f["split"], split)
            if not same:
                raise ValueError(f"init_from={init_dir} was trained on another train/validation/test split "
                                 f"than split_seed={split_seed} gives on this grid; warm-start with its own "
                                 "split (its split_seed, recorded in its config.json) so that its test nodes "
                                 "stay held out")
        # the weights its config.json records (as load_generator checks them): another model's weights.pt
        # copied in was warm-started from without a word
        init_sd = _model_weights(init_dir, init_cfg, f"init_from={init_dir}: weights file")[1]
        model.load_state_dict({k: v.to(dev) for k, v in init_sd.items()})
        if arch == "mlp":
            std = use_loaded_scaling()
        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if resume:
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_path}")
        ck = _read_checkpoint(ckpt_path, dev)
        if ck["arch"] != arch or ck["arch_kwargs"] != arch_kwargs or _grid_differs(ck, grid):
            raise ValueError(_architecture_mismatch(ckpt_path, ck, arch, arch_kwargs, grid))
        if ck.get("split_seed", split_seed) != split_seed:
            raise ValueError(f"--resume: {ckpt_path} was trained with split_seed={ck['split_seed']}; "
                             "resume it with the same split (--split-seed)")
        mismatch = _recipe_mismatch(ckpt_path, ck.get("recipe") or {}, recipe)
        if mismatch:
            raise ValueError(mismatch)
        try:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            model.load_state_dict(ck["best_state"])       # checked only: the live weights go back below
            model.load_state_dict(ck["model"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            detail = " ".join(str(exc).split())[:160]
            raise ValueError(f"--resume: {ckpt_path} holds weights that do not fit this network ({detail}); "
                             "remove it and start again (--overwrite instead of --resume), or put back a "
                             "good copy of it") from None
        epochs, minutes = _resumed_schedule(ckpt_path, ck, state=ck["state"],
                                            epochs=epochs if epochs_given else None, minutes=minutes)
        if arch == "mlp":
            # the checkpoint's weights carry the scaling of the run they continue: a warm start's on a rebuilt
            # grid differs from this grid's fit (skipped, the resumed run trained towards targets up to 0.15
            # dex off beyond 10 um, loss 0.08 -> 1.97)
            std = use_loaded_scaling()
        state = ck["state"]
        best_state = ck["best_state"]
        draw_rng = _checkpoint_draw_rng(ck, ckpt_path)
        resumed_epoch = _checkpoint_progress(ck, ckpt_path, idx_tr.size, batch_size)
        if ck.get("ema"):
            ema_state.update(ck["ema"])
    if ema_decay > 0 and not ema_state:
        ema_state.update({k: v.detach().clone() for k, v in model.state_dict().items()})
    ema_model = None
    if ema_decay > 0:
        import copy
        ema_model = copy.deepcopy(model)

    def current_weights():
        """A copy of the weights that would be written now (the moving average when there is one)."""
        source = ema_state if ema_model is not None else model.state_dict()
        return {k: t.detach().clone() for k, t in source.items()}

    def update_ema():
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                ema_state[k].lerp_(v.detach(), 1.0 - float(ema_decay))
            else:
                ema_state[k].copy_(v)

    cfg_tail = {}            # the tail table is written once per run (it does not depend on the weights)
    # the epoch the checkpoint on disk holds of this run (None: none yet), for the message of a failed write
    saved = {"epoch": state["epoch"] if resume else None}

    def write_checkpoint():
        try:
            _write_checkpoint()
        except OSError as exc:
            _note_what_is_kept(exc, ckpt_path, saved["epoch"])
            raise
        saved["epoch"] = state["epoch"]

    def _write_checkpoint():
        with atomic_output(ckpt_path, overwrite=True, option="checkpoint") as partial:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "state": state,
                        "best_state": best_state, "ema": ema_state, "arch": arch, "arch_kwargs": arch_kwargs,
                        "grid_sha256": grid.sha256, "grid_content_sha256": grid.content_sha256,
                        "split_seed": int(split_seed), "recipe": recipe,
                        "draw_rng": epoch_start_rng, "epoch_progress": _progress_record(running),
                        "schedule": {"epochs": int(epochs), "minutes": minutes, "patience": patience,
                                     "keep": keep},
                        "grid_file": str(Path(grid.path).resolve()) if grid.path else ""}, partial)

    def write(final=False):
        """Checkpoint, then the model files; each under a temporary name, renamed when complete (a kill
        mid-write leaves the previous file, never a truncated one). A failed write (a full disk) says what
        the checkpoint on disk holds."""
        write_checkpoint()
        try:
            return write_model(final)
        except OSError as exc:
            _note_what_is_kept(exc, ckpt_path, saved["epoch"])
            raise

    def write_model(final):
        if state["best_epoch"] < 0 and state["epoch"] > 0:
            # no epoch gave a finite validation loss (the loss is NaN): there is no trained network to write;
            # the untrained weights were written as a valid model, exit status 0
            raise ValueError(f"no epoch gave a finite validation loss after {state['epoch']} epoch(s) (the "
                             "loss is NaN or inf: the network diverged; try a smaller --lr); no model "
                             "written")
        box, lib_boxes = _boxes(grid)
        from . import __version__
        # the package version that trained it, as every output file records (a model folder did not)
        cfg = {"format": MODEL_FORMAT, "format_version": 1, "name": name or out.name,
               "smnet_sps_version": __version__, "arch": arch,
               "arch_kwargs": arch_kwargs, "wavelength_file": "wavelength.npy", "weights_file": "weights.pt",
               "nodes_file": "nodes.npz",
               "input_scaling": {"variables": ["log10_teff", "logg", "logz"], "lo": lo.tolist(),
                                 "hi": hi.tolist()},
               "reference": reference if arch == "mlp" else "none",
               "output": ("per-pixel standardised log10(F_lambda / (sigma Teff^4)) - reference "
                          "log10(pi B_lambda / sigma Teff^4); buffers out_mean/out_std"
                          if arch == "mlp" else "log1p01 of F_lambda / (sigma Teff^4) [A^-1]"),
               "log1p01": {"tau": tau, "x_max": x_max, "fit": "tau = 1% quantile, x_max = max of positive "
                                                              "known F/(sigma T^4) over training nodes"},
               "log_ratio_floor": LOG_RATIO_FLOOR,
               "box": box, "library_names": list(grid.library_names), "library_boxes": lib_boxes,
               # the grid's absolute path (the path as typed named another file, or none, from any other
               # folder), and the path as typed
               "grid_file": str(Path(grid.path).resolve()) if grid.path else "",
               "grid_file_given": str(grid.path), "grid_sha256": grid.sha256,
               "grid_content_sha256": grid.content_sha256,
               "split": {"rule": f"interior nodes, every {test_every}th held out for test "
                                 f"(seed {split_seed}); 5% validation", "n_train": int((split == 0).sum()),
                         "n_val": int((split == 1).sum()), "n_test": int((split == 2).sum()),
                         "split_seed": int(split_seed)},
               "seed": int(seed),
               "pixel_loss": pixel_loss if arch == "mlp" else "log1p01 MSE",
               "tail_floor": tail_floor if arch == "mlp" else 0.0,
               "sampling_weights": f"kNN (k=6, among the training nodes) mean |d log10 F| / library median, "
                                   f"clipped to [1, {w_max}]; "
                                   f"library shares ~ n_library^{library_balance}",
               "uv_weight": float(uv_weight), "ema_decay": float(ema_decay), "node_loss": node_loss,
               "node_blend": node_blend, "node_blend_kind": node_blend_kind,
               "input_jitter": (float(jitter_steps[0]) if np.ndim(input_jitter) == 0
                                else jitter_steps.tolist()),
               "jitter_floor": jitter_floor, "jitter_quantile": jitter_quantile,
               "excluded_nodes": [] if exclude_nodes is None else exclude_nodes.tolist(),
               "init_from": str(Path(init_from).resolve()) if init_from else None,
               "trained_libraries": list(libraries) if libraries is not None else list(grid.library_names),
               "training": {"epochs_run": state["epoch"], "kept": keep, "patience": patience,
                            "wall_seconds": round(state["elapsed"], 1), "best_epoch": state["best_epoch"],
                            "best_val_loss": state["best_val"],
                            "batch_size": batch_size, "lr": lr, "lr_final": float(lr_final),
                            "weight_decay": float(weight_decay), "device": str(dev),
                            "torch_threads": torch.get_num_threads(), "finished": final},
               "history": [list(row) for row in state["history"][-200:]]}
        # the weights kept: the best epoch's, or (keep="final") the latest; best_state itself stays the best
        # epoch's, so that a checkpoint resumed with the other --keep still knows it
        kept = current_weights() if keep == "final" else best_state
        sd = {k: v.detach().cpu().float() for k, v in kept.items()}
        with atomic_output(out / "weights.pt", overwrite=True, option="weights") as partial:
            # through a file object: torch names the zip's folder after a path (here the temporary one), so
            # the same weights gave another sha256 each time; a file object gets the fixed name "archive"
            with open(partial, "wb") as fh:
                torch.save(sd, fh)
            cfg["weights_sha256"] = weights_sha256(partial)   # verified when the model is loaded
        with atomic_output(out / "wavelength.npy", overwrite=True, option="wavelength") as partial:
            np.save(partial, np.asarray(grid.wavelength, float))
            cfg["wavelength_sha256"] = file_sha256(partial)     # verified when the model is loaded
        with atomic_output(out / "nodes.npz", overwrite=True, option="nodes") as partial:
            np.savez(partial, teff=grid.teff, logg=grid.logg, logz=grid.logz,
                     library_id=grid.library_id.astype(np.int16), split=split)
            cfg["nodes_sha256"] = file_sha256(partial)          # verified when the model is loaded
        if tail_table is not None:
            if cfg_tail.get("sha256") is None:
                cfg_tail["sha256"] = save_table(tail_table, out / TAIL_FILE)
            cfg.update(tail_file=TAIL_FILE, tail_sha256=cfg_tail["sha256"])
        # last: a config.json always names weights that are complete; JSON has no NaN or inf (a loss that is
        # not a finite number is written as null)
        cfg = json_safe(cfg)
        with atomic_output(out / "config.json", overwrite=True, option="model config") as partial:
            partial.write_text(json.dumps(cfg, indent=1, allow_nan=False))
        _remove_stale_mixture(out, overwrite=overwrite, resume=resume)
        return cfg

    @torch.no_grad()
    def val_loss():
        net = model
        if ema_model is not None:
            ema_model.load_state_dict(ema_state)
            net = ema_model
        net.eval()
        tot = 0.0
        for s in range(0, idx_val.size, 1024):
            ix = idx_val[s:s + 1024]
            tot += masked_mse(forward(X[ix], MIX[ix], net), Y[ix], M[ix], pixel_weights=PW).item() * ix.size
        model.train()
        return tot / idx_val.size

    def validate():
        """Validate the epoch just trained (state["epoch"]): its history row, and the best epoch. An
        interruption in here leaves it trained but not validated; the resume validates it first."""
        nonlocal best_state
        v = val_loss()
        state["elapsed"] = time.perf_counter() - t0
        state["history"].append([state["epoch"], round(state["elapsed"], 1),
                                 state.get("train_loss", math.nan), v])
        if v < state["best_val"]:
            state["best_val"], state["best_epoch"] = v, state["epoch"]
            best_state = current_weights()
        return v

    # the folder is made (and removed again if left empty) by _sole_training_in, on every platform
    bar = None
    minutes = None if minutes == math.inf else minutes        # inf: no budget (resume's way to drop one)
    if want_progress(progress):
        from tqdm.auto import tqdm
        # with a wall-time budget the epoch count is open-ended: show a counter, not a meaningless total
        bar = tqdm(total=None if minutes else epochs, initial=state["epoch"], desc=f"train {arch}",
                   unit="epoch")
    gen = torch.Generator(device="cpu").manual_seed(seed + state["epoch"])
    if draw_rng is not None:
        gen.set_state(draw_rng)
    # the draws, jitter and blends of the epoch after state["epoch"] start from this state: the checkpoint
    # keeps it, so that a resumed run repeats the uninterrupted one (an interruption mid-epoch also keeps the
    # epoch's draws and the generator after its last batch: the resume goes on from there)
    epoch_start_rng = gen.get_state()
    t0 = time.perf_counter() - state["elapsed"]
    budget = minutes * 60 if minutes else None
    last_write = time.perf_counter()
    model.train()
    try:
        try:
            if _unvalidated_epoch(state):
                # interrupted while its validation ran (the checkpoint holds the weights at its end and the
                # draws of the next): validated now, as the uninterrupted run did (it was lost: no history
                # row, best epoch 39 val 0.36405 instead of 40 val 0.36312)
                validate()
            while state["epoch"] < epochs:
                # tested before an epoch, not only after one: a resumed run that stopped early stays finished
                # (it trained on, 7 epochs with best 4 -> 23 with best 20 -> 52 with best 49)
                if resumed_epoch is None:
                    if state["epoch"] - state["best_epoch"] > patience:
                        break
                    elapsed = time.perf_counter() - t0
                    if budget and elapsed >= budget:
                        break
                    frac = max(state["epoch"] / epochs, elapsed / budget if budget else 0.0)
                    # cosine decay over whichever budget (epochs or minutes) ends first
                    lr_now = lr * (lr_final + (1 - lr_final) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))
                    draw = torch.multinomial(W.cpu(), idx_tr.size, replacement=True, generator=gen).numpy()
                    first = 0
                else:
                    # the epoch an interruption cut short (it had passed the checks above), continued from
                    # the batch it stopped at with its draws, learning rate and generator: as the
                    # uninterrupted run (drawn again from its start, its first batches were trained on twice:
                    # val 2.7375 for 2.7421 six epochs in)
                    draw, first, lr_now = resumed_epoch["draw"], resumed_epoch["done"], resumed_epoch["lr"]
                    gen.set_state(resumed_epoch["rng"])
                    loss = torch.tensor(resumed_epoch["train_loss"])
                    resumed_epoch = None
                for g in opt.param_groups:
                    g["lr"] = lr_now
                for done, s in enumerate(range(first * batch_size, draw.size, batch_size), first + 1):
                    inputs, y, m, sigma = batch(idx_tr[draw[s:s + batch_size]])
                    loss = masked_mse(forward(*inputs, jitter=sigma), y, m, pixel_weights=PW,
                                      node_loss=node_loss)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    # the step, the moving average and the record of it as one: an interruption in between
                    # left a step taken that the checkpoint said was not
                    with interrupts_held():
                        opt.step()
                        if ema_model is not None:
                            update_ema()
                        # what the checkpoint of an interruption keeps of this epoch (the loss read only then)
                        running = {"draw": draw, "done": done, "lr": lr_now, "rng": gen.get_state(),
                                   "loss": loss.detach()}
                running = None
                state["epoch"] += 1
                epoch_start_rng = gen.get_state()
                state["train_loss"] = float(loss.item())
                v = validate()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(train=f"{loss.item():.3g}", val=f"{v:.3g}",
                                    best=f"{state['best_val']:.3g}")
                # by epochs, and by time too: with a large network 50 epochs are half an hour of work
                if state["epoch"] % save_every == 0 or time.perf_counter() - last_write >= save_minutes * 60:
                    write()
                    last_write = time.perf_counter()
        except KeyboardInterrupt as exc:
            # keep the work done: the checkpoint as of now (the weights part way into the next epoch) and,
            # once an epoch is complete, the model; before that there is no validated model to write
            if bar is not None:
                bar.close()
            state["elapsed"] = time.perf_counter() - t0
            # a second Ctrl-C / SIGTERM (an impatient user, a batch system's second signal) waits for the
            # write: landing between weights.pt and config.json it left new weights beside the old config, a
            # model load_generator refuses
            with interrupts_held():
                if state["best_epoch"] >= 0:
                    write()
                else:                       # no validated epoch yet (e.g. Ctrl-C in the first validation)
                    write_checkpoint()
            add_note(exc, f"interrupted after {state['epoch']} epochs; the checkpoint is saved in "
                          f"{ckpt_path}: continue with the same options and --resume")
            raise
        if bar is not None:
            bar.close()
        state["elapsed"] = time.perf_counter() - t0
        if state["epoch"] == 0:
            # the budget ran out inside the first epoch: the untrained network was written as a finished model
            # (exit 0). Nothing is written; a checkpoint already there (a resume) stays as it was
            raise ValueError(f"minutes={minutes:g}: the time budget ran out before the first epoch ended "
                             f"({state['elapsed']:.3g} s); no model written: give more minutes")
        # held as the interruption's write is: a Ctrl-C landing between weights.pt and config.json left
        # new weights beside the old config.json, a model load_generator refuses (weights sha256)
        written = None
        try:
            with interrupts_held():
                written = write(final=True)
        except KeyboardInterrupt as exc:
            if written is not None:     # held during the write, delivered after it: the model is complete
                add_note(exc, f"interrupted after the model was written: {out} holds the finished run "
                              "(nothing to resume)")
            raise
        return written
    except KeyboardInterrupt as exc:
        # the CLI's message: once the loop began, a checkpoint left as it was (an --overwrite run with no
        # periodic write yet) is not 'interrupted before training began'
        exc.training_began = True
        raise


def add_cli(sub):
    p = sub.add_parser("train", help="train a generator on a union grid file",
                       description="Train a neural stellar-spectrum generator on a union grid (HDF5).")
    p.add_argument("--grid", default=None,
                   help="union grid file (smnet-sps grid build); required, except with --resume: the run's")
    p.add_argument("--out", required=True, help="model directory to write, e.g. models/NAME")
    p.add_argument("--arch", choices=["mlp", "smnet"], default=None,
                   help="mlp: the emulator the shipped model uses (default); smnet: the released SM-Net "
                        "architecture, base width --B")
    p.add_argument("--width", type=int, default=None, help="MLP hidden width (default 256)")
    p.add_argument("--depth", type=int, default=None, help="MLP hidden layers (default 3)")
    p.add_argument("--B", type=int, default=None, help="SM-Net base width (default 64; released: 1024)")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"most epochs (default {DEFAULT_EPOCHS}; with --resume the checkpoint's)")
    p.add_argument("--minutes", type=float, default=None,
                   help="wall-time budget [min] (default none; with --resume the checkpoint's: inf "
                        "removes it)")
    p.add_argument("--batch-size", type=int, default=None, help="spectra per optimiser step (default 256)")
    p.add_argument("--lr", type=float, default=None,
                   help="Adam's learning rate at the start of the cosine schedule (default 0.002)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available; the default), cpu, cuda")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    p.add_argument("--patience", type=int, default=None,
                   help="early stopping: epochs without a better validation loss (default 200)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in OUT (OUT/checkpoint.pt) with its own options and grid: they "
                        "need not be given again, and one given with another value is refused (only "
                        + RESUME_MAY_CHANGE + " may change)")
    p.add_argument("--overwrite", action="store_true", help="replace a model already in OUT")
    p.add_argument("--seed", type=int, default=None,
                   help="randomness of the optimisation (initial weights, draws, jitter); not of the split "
                        "(default 0)")
    p.add_argument("--split-seed", type=int, default=None,
                   help="shuffle that picks the validation and test nodes (default 0, the shipped models' "
                        "split; a warm start must use its model's)")
    p.add_argument("--tail-floor", type=float, default=None,
                   help="MLP: leave pixels fainter than this fraction of the spectrum's peak out of the loss "
                        "(in [0, 1); 0 keeps every pixel; default 1e-6)")
    p.add_argument("--pixel-loss", choices=sorted(PIXEL_LOSS_POWERS), default=None,
                   help="MLP loss: standardised per-pixel MSE (default), MSE in log10 flux (log), or half "
                        "way (mixed)")
    p.add_argument("--init-from", default=None, help="warm start from this model directory's weights")
    p.add_argument("--library-balance", type=float, default=None,
                   help="library draw shares ~ n_library^BALANCE (1 natural mix, 0 equal; default 1)")
    p.add_argument("--uv-weight", type=float, default=None,
                   help="MLP loss weight of 1000-3000 A pixels (default 1)")
    p.add_argument("--w-max", type=float, default=None,
                   help="cap of the sampling weights: fast-changing nodes are drawn up to W_MAX times as "
                        "often (default 5; 1: every node of a library equally often)")
    p.add_argument("--node-loss", choices=NODE_LOSSES, default=None,
                   help="training loss per spectrum: mse (default), or pseudo_huber (a node far off the "
                        "others pulls less)")
    p.add_argument("--node-blend", type=float, default=None,
                   help="share of the draws replaced by blends of neighbouring training nodes (inputs and "
                        "log flux blended alike; where: --node-blend-kind; default 0)")
    p.add_argument("--node-blend-kind", choices=("segments", "simplices"), default=None,
                   help="where the blends lie: on segments between neighbouring nodes (default), or in the "
                        "Delaunay simplices of the nodes with the interpolation baseline's value as target")
    p.add_argument("--lr-final", type=float, default=None,
                   help="cosine schedule ends at LR_FINAL x lr (default 0.02)")
    p.add_argument("--ema-decay", type=float, default=None,
                   help="validate and write an exponential moving average of the weights (e.g. 0.999; "
                        "default 0: off)")
    p.add_argument("--libraries", nargs="+", default=None, metavar="NAME",
                   help="train on these libraries' nodes only (e.g. a specialist: --init-from MODEL "
                        "--libraries nextgen)")
    p.add_argument("--keep", choices=["best", "final"], default=None,
                   help="write the best-validation weights (default) or those at the end of the schedule")
    p.add_argument("--input-jitter", type=float, nargs="+", default=None, metavar="STEPS",
                   help="Gaussian noise on the training inputs, in grid steps (0.02 dex Teff, 0.5 dex log g "
                        "and [M/H]); one value, or three for Teff, log g and [M/H] on their own; smooths the "
                        "network between scattered nodes (default 0: off)")
    p.add_argument("--jitter-floor", type=float, default=None, metavar="F",
                   help="scale each node's --input-jitter by its departure from the line through its "
                        "neighbours, over its library's --jitter-quantile of them, clipped to [F, 1] "
                        "(default 1: every node the whole jitter)")
    p.add_argument("--jitter-quantile", type=float, default=None, metavar="Q",
                   help="the quantile of a library's departures that gets the whole jitter (default 0.5)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (the bar shows the epoch and the training / validation losses)")
    p.set_defaults(func=_cli)


def _check_model_dir(args):
    """``--out`` of train: a folder (created if missing); an existing model in it is kept unless asked."""
    from .output_files import check_output_folder
    check_output_folder(args.out, ("config.json", "weights.pt"), overwrite=args.resume or args.overwrite,
                        what="a model", remedy="pass --resume to continue it or --overwrite to replace it")


def _check_model_folder(out, overwrite):
    """``out`` of :func:`train`: a folder (created if missing); a model or a checkpoint in it is only replaced
    with ``overwrite`` (or continued with ``resume``), as build_expert_model does."""
    from .output_files import check_output_folder
    check_output_folder(out, ("config.json", "weights.pt", "checkpoint.pt"), option="out",
                        overwrite=overwrite, what="a model or its checkpoint",
                        remedy="pass resume=True (--resume) to continue it or overwrite=True (--overwrite) "
                               "to replace it")


def _remove_stale_mixture(out, overwrite, resume):
    """After ``overwrite`` wrote a new model: the replaced model's measured library preferences go (the new
    network would otherwise be mixed by them). Only once the new config.json is there and does not record
    them: removed up front, a run that then failed (a mistyped --grid) left the old model unloadable."""
    stale = Path(out) / MIXTURE_FILE
    cfg_path = Path(out) / "config.json"
    if not (overwrite and not resume and stale.is_file() and cfg_path.is_file()):
        return
    try:
        recorded = "mixture_sha256" in json.loads(cfg_path.read_text())
    except (OSError, ValueError):
        return
    if not recorded:
        stale.unlink()
        print(f"removed {stale}: the library preferences measured for the model that was replaced")


def _note_what_is_kept(exc, ckpt_path, epoch):
    """A note for the one-line message of a failed write ``exc`` (a full disk, a quota): what the checkpoint
    ``ckpt_path`` holds of the run (``epoch``: None where it holds none of it) and how to go on. The message
    was "[Errno 28] No space left on device" alone: no file named, nor that the run could be resumed."""
    if epoch is None:
        add_note(exc, f"writing in {ckpt_path.parent} failed; no checkpoint of this run was saved: free "
                      "space and run it again")
    else:
        add_note(exc, f"writing in {ckpt_path.parent} failed; {ckpt_path} holds the run at epoch {epoch}: "
                      "free space, then continue with the same options and --resume")


# the options of `smnet-sps train` that a resume takes from the run where they are left out, with their
# defaults for a new run (None in the parser, so that a given value is told from a default); every one but
# --keep and --patience, which may change, is refused with a value other than the run's
# the command's defaults are train()'s own (one source; the command takes --input-jitter as a list)
_CLI_DEFAULTS = {**{name: inspect.signature(train).parameters[name].default for name in (
    "arch", "width", "depth", "B", "batch_size", "lr", "patience", "seed", "split_seed", "tail_floor",
    "pixel_loss", "library_balance", "uv_weight", "w_max", "node_loss", "node_blend", "node_blend_kind",
    "lr_final", "ema_decay", "keep", "jitter_floor", "jitter_quantile", "init_from", "libraries")},
    "input_jitter": [0.0]}
# the recipe's keys that are options of the command (reference, weight_decay, test_every and exclude_nodes are
# the Python API's)
_CLI_RECIPE = ("tail_floor", "pixel_loss", "uv_weight", "w_max", "library_balance", "libraries", "node_loss",
               "node_blend", "node_blend_kind", "input_jitter", "jitter_floor", "jitter_quantile",
               "batch_size", "lr", "lr_final", "ema_decay", "seed", "init_from")


_MLP_ONLY = ("tail_floor", "pixel_loss", "uv_weight")      # options SM-Net does not use
# config.json's record of the sampling weights' options (the recipe's w_max and library_balance)
_SAMPLING_RECORD = re.compile(r"clipped to \[1, (?P<w_max>[^\]]+)\](?:; library shares ~ "
                              r"n_library\^(?P<library_balance>\S+))?$")


def _config_options(cfg, arch):
    """The recipe's options as an older run's config.json records them (its checkpoint, written before
    2026-12-02, records no recipe): ``{dest: value}`` of those it records, None where it records none
    (``init_from``). The MLP-only options are left out for SM-Net."""
    training = cfg.get("training") or {}
    found = {key: training[key] for key in ("batch_size", "lr", "lr_final") if training.get(key) is not None}
    keys = ("seed", "ema_decay", "node_loss", "node_blend", "node_blend_kind", "input_jitter", "jitter_floor",
            "jitter_quantile") + (_MLP_ONLY if arch == "mlp" else ())
    found.update({key: cfg[key] for key in keys if cfg.get(key) is not None})
    if "input_jitter" in found:
        found["input_jitter"] = [float(v) for v in np.atleast_1d(found["input_jitter"])]
    if "init_from" in cfg:                  # recorded since warm starts exist: None is none
        found["init_from"] = cfg["init_from"]
    if cfg.get("trained_libraries") is not None:
        found["libraries"] = sorted(set(cfg["trained_libraries"]))
    # the sampling options are recorded in words only: "..., clipped to [1, 5.0]; library shares ~ ..."
    match = _SAMPLING_RECORD.search(str(cfg.get("sampling_weights", "")))
    for key in ("w_max", "library_balance"):
        with contextlib.suppress(TypeError, ValueError):
            found[key] = float(match[key])
    return found


def _saved_options(out):
    """``({option's dest: value}, [dests not recorded])`` of the run in ``out`` that ``train --resume``
    continues.

    The architecture, split seed and recipe come from its checkpoint: what the resume is checked against,
    and there also when config.json is not (an interruption before the first epoch ended). A checkpoint
    written before the recipe was recorded is not checked against one: its options come from config.json
    (:func:`_config_options`), and those that neither records are listed as not recorded (a default in
    their place resumed another run than the one interrupted, without a word). The grid's path, --keep and
    --patience come from the checkpoint, or for one written before it kept them from config.json. Options
    the run does not use (SM-Net's MLP-only ones, no --init-from) are left out."""
    out = Path(out)
    ckpt_path = out / "checkpoint.pt"
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_path}")
    ck = _read_checkpoint(ckpt_path, "cpu")
    try:
        cfg = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):       # none yet, or unreadable: the checkpoint's record alone
        cfg = {}
    cfg = cfg if isinstance(cfg, dict) else {}
    saved = {"arch": ck["arch"]}
    saved.update({key: int(ck["arch_kwargs"][key]) for key in ("width", "depth", "B")
                  if key in ck["arch_kwargs"]})
    split_seed = ck.get("split_seed", (cfg.get("split") or {}).get("split_seed"))
    if split_seed is not None:
        saved["split_seed"] = int(split_seed)
    unrecorded = [] if split_seed is not None else ["split_seed"]
    recipe = ck.get("recipe") or {}
    if not recipe:                          # none before 2026-12-02: config.json's record
        recipe = _config_options(cfg, ck["arch"])
        if cfg.get("training"):
            # an option absent from a config.json that records the run means the option did not exist yet;
            # absent from one not read (none, unreadable) or reduced to a few keys it means nothing (a run
            # with --ema-decay 0.5 --node-loss pseudo_huber went on with no EMA and the MSE)
            recipe = {**{key: before for key, before in _RECIPE_BEFORE.items() if key not in recipe},
                      **recipe}
        unrecorded += [key for key in _CLI_RECIPE if key not in recipe
                       and not (ck["arch"] != "mlp" and key in _MLP_ONLY)]
    saved.update({key: recipe[key] for key in _CLI_RECIPE if recipe.get(key) is not None})
    if "input_jitter" in saved:             # the option's spelling: one width for three equal ones
        steps = [float(v) for v in saved["input_jitter"]]
        saved["input_jitter"] = steps[:1] if len(set(steps)) == 1 else steps
    if set(saved.get("libraries", [])) == set(cfg.get("library_names") or []):
        saved.pop("libraries", None)        # all the grid's: as trained, without --libraries
    schedule, training = ck.get("schedule") or {}, cfg.get("training") or {}
    for dest, value in (("keep", schedule.get("keep", training.get("kept"))),
                        ("patience", schedule.get("patience", training.get("patience"))),
                        ("grid", ck.get("grid_file") or cfg.get("grid_file"))):
        if value is not None and value != "":
            saved[dest] = value
    return saved, unrecorded


def _same_option(dest, given, saved):
    """Whether an option given on the command line sets what the run's saved value does."""
    if dest == "input_jitter":
        return np.array_equal(_jitter_steps(given[0] if len(given) == 1 else given),
                              _jitter_steps(saved[0] if len(saved) == 1 else saved))
    if dest == "libraries":
        return sorted(set(given)) == sorted(set(saved))
    if dest == "init_from":
        return str(Path(given).resolve()) == str(saved)
    if isinstance(saved, float) or isinstance(given, float):
        return float(given) == float(saved)
    return given == saved


def _cli_options(args):
    """``args`` of ``smnet-sps train`` with the options left out filled in: with --resume the run's own
    (:func:`_saved_options`; a resume needed every non-default option repeated, or was refused), an option
    given with another value than the run's refused (but --keep and --patience); else the defaults."""
    def spelled(value):
        return " ".join(map(str, value)) if isinstance(value, list) else str(value)

    if args.resume:
        saved, unrecorded = _saved_options(args.out)
        conflicts = [f"--{dest.replace('_', '-')} {spelled(getattr(args, dest))} given, {spelled(value)} in "
                     "the run" for dest, value in saved.items()
                     if dest not in ("grid", "keep", "patience") and getattr(args, dest) is not None
                     and not _same_option(dest, getattr(args, dest), value)]
        if conflicts:
            raise ValueError(f"--resume: {args.out} was trained with other options ({'; '.join(conflicts)}); "
                             f"leave them out to continue the run with its own (only {RESUME_MAY_CHANGE} may "
                             "change), or train into a new --out")
        if args.grid is None and "grid" not in saved:
            raise ValueError(f"--resume: {args.out} does not record its grid file (trained before it was "
                             "recorded): give --grid")
        if args.grid is None and not Path(saved["grid"]).is_file():
            # the run's grid, not one the user typed: "build it with 'smnet-sps grid build'" told them to
            # rebuild a file that is there, named relative to another folder
            where = ("its config.json records it relative to the folder the training ran in, not this one"
                     if not Path(saved["grid"]).is_absolute() else "the file has moved or been removed")
            raise ValueError(f"--resume: the grid file {saved['grid']} that {args.out} was trained on is not "
                             f"found ({where}): give --grid with its path")
        for dest, value in saved.items():
            if getattr(args, dest) is None:
                setattr(args, dest, value)
        # an older run whose checkpoint and config.json leave options out: a default in their place resumed
        # another run than the one interrupted (--lr 0.01 --batch-size 16 went on with 0.002 and 256)
        # (not --init-from: no value of it says "none", and a warm start acts at a run's start only, the
        # resume's weights are the checkpoint's)
        missing = [f"--{dest.replace('_', '-')}" for dest in unrecorded if getattr(args, dest) is None
                   and not (dest == "node_blend_kind" and args.node_blend == 0) and dest != "init_from"]
        if missing:
            raise ValueError(f"--resume: {args.out} predates recorded options: neither its checkpoint (no "
                             f"recipe) nor its config.json records {', '.join(missing)}; give them with the "
                             "run's values")
    elif args.grid is None:
        raise ValueError("--grid is required: the union grid file to train on (smnet-sps grid build); only "
                         "--resume takes the run's own")
    for dest, default in _CLI_DEFAULTS.items():
        if getattr(args, dest) is None:
            setattr(args, dest, default)
    return args


def _cli(args):
    import signal
    import sys
    import threading

    _cli_options(args)
    _check_model_dir(args)
    previous = None
    if threading.current_thread() is threading.main_thread():      # signal handlers live in the main thread
        previous = signal.signal(signal.SIGTERM, _terminate)
    ckpt = Path(args.out) / "checkpoint.pt"
    # the checkpoint of the model --overwrite replaces: not this run's, nor one to resume
    replaced = None if args.resume else _file_state(ckpt)
    try:
        cfg = _cli_train(args)
    except KeyboardInterrupt as exc:
        notes = getattr(exc, "__notes__", None)
        # whether the training loop had begun, as train() says: the checkpoint's stamp alone called an
        # --overwrite run interrupted as its first checkpoint was written "interrupted before training began"
        began = getattr(exc, "training_began", False)
        if notes:
            message = notes[-1]
        elif replaced is not None and _file_state(ckpt) == replaced:
            # "OUT/checkpoint.pt holds the last checkpoint: continue it with --resume" named the replaced
            # run's: its resume went on with that run's options, not the ones just given
            message = ("interrupted; nothing of this run was saved" if began else
                       "interrupted before training began; nothing written")
            message += f": {args.out} holds the model --overwrite was to replace, as it was"
        elif ckpt.is_file():          # e.g. during the last write, after the loop: earlier files are kept
            message = f"interrupted; {ckpt} holds the last checkpoint: continue it with --resume"
        else:
            message = ("interrupted; nothing of this run was saved" if began else
                       "interrupted before training began; nothing written")
        with contextlib.suppress(OSError):    # the terminal closed (SIGHUP): EIO, and still its status
            print(f"smnet-sps train: {message}", file=sys.stderr)
        return interrupt_status(exc)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    t = cfg["training"]
    best = "none finite" if t["best_val_loss"] is None else f"{t['best_val_loss']:.4g}"
    print(f"wrote {args.out}: {t['epochs_run']} epochs in {t['wall_seconds']} s, best validation loss "
          f"{best} (epoch {t['best_epoch']})")
    return 0


def _cli_train(args):
    return train(args.grid, args.out, arch=args.arch, width=args.width, depth=args.depth, B=args.B,
                 epochs=args.epochs, minutes=args.minutes, device=args.device, resume=args.resume,
                 overwrite=args.overwrite,
                 batch_size=args.batch_size, lr=args.lr, seed=args.seed, split_seed=args.split_seed,
                 threads=args.threads,
                 patience=args.patience,
                 progress=not args.no_progress, pixel_loss=args.pixel_loss,
                 tail_floor=args.tail_floor, init_from=args.init_from, library_balance=args.library_balance,
                 uv_weight=args.uv_weight, lr_final=args.lr_final, ema_decay=args.ema_decay, w_max=args.w_max,
                 node_loss=args.node_loss, node_blend=args.node_blend, node_blend_kind=args.node_blend_kind,
                 libraries=args.libraries, keep=args.keep,
                 input_jitter=args.input_jitter[0] if len(args.input_jitter) == 1 else args.input_jitter,
                 jitter_floor=args.jitter_floor, jitter_quantile=args.jitter_quantile)
