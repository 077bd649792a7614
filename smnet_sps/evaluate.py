"""Evaluation of generators: held-out accuracy vs an interpolation baseline, seam smoothness, throughput.

``smnet-sps evaluate --model DIR --grid grid.h5 [--out report.json]``

Metrics (docs/generator.md):

* accuracy on the held-out test nodes of the model's split: MSE in SM-Net's log1p01 space (the paper's metric;
  tau, x_max as stored with the model) and the median / 95th percentile of |F_model / F_true - 1| over
  1,000-25,000 A (pixels the library knows and brighter than 1e-4 of the spectrum's peak there), over
  >= 3000 A (3,000-25,000 A, the floor from the peak within that range), and in the UV (1,000-3,000 A,
  pixels brighter than 1e-6 of the spectrum's peak), per library and optionally per Teff band, for the
  library imitation and optionally the default mixture;
* the same numbers for the baseline: linear interpolation of the TRAINING nodes of the same library in
  (log Teff, log g, [M/H]) (scipy's LinearNDInterpolator on log flux; test nodes outside the convex hull of
  the training nodes are skipped for the baseline and counted);
* seam smoothness: Teff sweeps in 1 % steps through library overlaps; the jump between neighbouring steps
  is the mean |d ln F| over 3,000-10,000 A; compared with the same sweep through the raw libraries.

The grid must have the model's wavelength grid (else ValueError). ``--out`` writes strict JSON: a figure
with no pixel or step to count (NaN) is ``null``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .constants import SIGMA_SB
from .model import log1p01_forward

__all__ = ["accuracy_table", "interpolation_baseline", "interpolate_grid_nodes", "relative_errors",
           "error_metrics", "teff_sweep", "seam_report", "default_sweeps", "SEAM_SWEEPS", "throughput",
           "matmul_peak_gflops", "format_accuracy_table", "format_band_table", "format_seam_lines", "add_cli",
           "UV_RANGE", "UV_FLOOR", "TEFF_BANDS", "grid_split_applies",
           "grid_split_note", "check_grid_wavelength"]


def grid_split_applies(gen, grid):
    """Whether the model's train/validation/test split can be used on ``grid``: "same file" (the grid the
    model was trained on, by sha256), "same content" (another file holding the same data,
    by :func:`smnet_sps.grid.grid_content_sha256` and the model's ``grid_content_sha256``: a rebuild from the
    same library files, whose build time differs), "same nodes" (another build of it with the same nodes in
    the same order, e.g. rebuilt after a reader change: a new hash, the same split) or None (another grid).
    ``grid`` from :func:`smnet_sps.train.read_grid` carries both hashes; one without them is compared by its
    nodes only."""
    sha = getattr(grid, "sha256", None)
    if sha and gen.config.get("grid_sha256") == sha:
        return "same file"
    content = getattr(grid, "content_sha256", None)
    if content and gen.config.get("grid_content_sha256") == content:
        return "same content"
    nodes = getattr(gen, "nodes", None)
    if nodes is not None and len(nodes["teff"]) == len(grid.teff) and all(
            np.array_equal(nodes[k], np.asarray(getattr(grid, k))) for k in ("teff", "logg", "logz")):
        return "same nodes"
    return None


def check_grid_wavelength(gen, grid):
    """Raise ValueError unless ``grid`` has the model's wavelength grid [A] (same pixels to 1e-6 relative):
    a model's spectra cannot be scored on another grid's pixels (the node check of
    :func:`grid_split_applies` does not see the wavelengths)."""
    model_wl = np.asarray(gen.wavelength, float)
    grid_wl = np.asarray(grid.wavelength, float)
    if model_wl.shape == grid_wl.shape and np.allclose(grid_wl, model_wl, rtol=1e-6, atol=0.0):
        return

    def describe(wl):
        return f"{wl.size} pixels, {wl.min():g}-{wl.max():g} A" if wl.size else "0 pixels"
    raise ValueError(f"the grid's wavelength grid ({describe(grid_wl)}) is not the model's "
                     f"({describe(model_wl)}): evaluate a model on the grid it was trained on")


def grid_split_note(applies, grid_path):
    """One line for a report on what :func:`grid_split_applies` found for the grid at ``grid_path``, or None
    where the grid is the model's own file or holds its data ("same content")."""
    if applies == "same nodes":
        return (f"(grid {grid_path} differs from the training grid file by its hash but has the same nodes: "
                "the model's split applies)")
    if applies is None:
        return f"(grid {grid_path} is not the model's training grid: held-out node accuracy skipped)"
    return None


def relative_errors(pred, true, mask, wavelength, wave_range=(1000.0, 25000.0), rel_floor=1e-4,
                    peak_over="range"):
    """|pred/true - 1| on the known pixels in ``wave_range`` brighter than ``rel_floor`` x the peak.

    ``peak_over``: "range" -- the peak inside ``wave_range``; "all" -- the spectrum's peak over all its
    known pixels (the UV metric: 1000-3000 A, pixels > 1e-6 of the peak). Returns a 1-d array (all spectra
    pooled). The floor keeps meaningless ratios of ~0/~0 far in a cool star's Wien tail out of the statistics.
    """
    if peak_over not in ("range", "all"):
        raise ValueError(f"peak_over must be 'range' or 'all', got {peak_over!r}")
    inr = (wavelength >= wave_range[0]) & (wavelength <= wave_range[1])
    known = np.where(mask, true, np.nan)
    true = known[:, inr]
    ref = true if peak_over == "range" else known
    peak = np.nanmax(np.where(np.isfinite(ref), ref, -np.inf), axis=1, keepdims=True)
    ok = np.isfinite(true) & (true > rel_floor * peak) & np.isfinite(pred[:, inr])
    return np.abs(pred[:, inr][ok] / true[ok] - 1)


#: the UV metric of the fidelity issue: 1000-3000 A, pixels brighter than 1e-6 of the spectrum's peak
UV_RANGE = (1000.0, 3000.0)
UV_FLOOR = 1e-6
#: Teff bands [K] of the per-band accuracy rows
TEFF_BANDS = ((0.0, 4000.0), (4000.0, 5500.0), (5500.0, 7000.0), (7000.0, 10000.0), (10000.0, 25000.0),
              (25000.0, np.inf))


def band_name(lo, hi):
    """'Teff<4000', '4000-5500', ..., 'Teff>=25000' for a band [lo, hi) in K."""
    if lo <= 0:
        return f"Teff<{hi:g}"
    return f"Teff>={lo:g}" if not np.isfinite(hi) else f"{lo:g}-{hi:g}"


def error_metrics(pred, true, mask, wavelength, wave_range=(1000.0, 25000.0)):
    """median / p95 of |pred/true - 1| over ``wave_range`` (peak floor 1e-4), over >= 3000 A, and in the UV
    (:data:`UV_RANGE`, floor :data:`UV_FLOOR` of the spectrum's peak); fractions. NaN where no pixel
    counts."""
    def stats(e):
        return (float(np.median(e)), float(np.percentile(e, 95))) if e.size else (np.nan, np.nan)
    out = {}
    for key, err in (("", relative_errors(pred, true, mask, wavelength, wave_range)),
                     ("_ge3000", relative_errors(pred, true, mask, wavelength,
                                                 (max(3000.0, wave_range[0]), wave_range[1]))),
                     ("_uv", relative_errors(pred, true, mask, wavelength, UV_RANGE, UV_FLOOR,
                                             peak_over="all"))):
        out[f"median{key}"], out[f"p95{key}"] = stats(err)
    return out


def interpolation_baseline(params, log_flux, query):
    """Linear interpolation of ``log_flux`` (n, n_wave) given at ``params`` (n, 3) to ``query`` (m, 3):
    :class:`smnet_sps.baselines.NodeInterpolator` (axes in nominal grid steps, constant axes dropped).
    Returns (m, n_wave) with NaN rows outside the convex hull.
    """
    from .baselines import NodeInterpolator
    return NodeInterpolator(params, log_flux)(query)


def interpolate_grid_nodes(grid, known, query):
    """Flux at grid nodes ``query`` by :func:`interpolation_baseline` of log10(F / sigma Teff^4) over nodes
    ``known`` (indices into ``grid``); (len(query), n_wave) in the grid's flux units, NaN rows outside the
    known nodes' hull. Unknown or zero flux at a known node does not enter."""
    params = np.stack([np.log10(grid.teff), grid.logg, grid.logz], 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = grid.mask[known] & (grid.flux[known] > 0)
        lf = np.log10(np.where(ok, grid.flux[known], np.nan) / (SIGMA_SB * grid.teff[known][:, None] ** 4))
    return 10 ** interpolation_baseline(params[known], lf, params[query]) * (
        SIGMA_SB * grid.teff[query][:, None] ** 4)


def accuracy_table(gen, grid, split=None, wave_range=(1000.0, 25000.0), baseline=True, progress=False,
                   default=False, bands=False):
    """Per-library accuracy on the test nodes of ``split`` (default: the model's own split).

    ``split``: one label per grid node (0 train, 1 validation, 2 test), an array or a list. The grid must
    have the model's wavelength grid (:func:`check_grid_wavelength`).

    Returns a dict library -> {n_test, mse_log1p01, median, p95, median_ge3000, p95_ge3000, median_uv, p95_uv,
    baseline_median, baseline_p95, baseline_median_ge3000, baseline_p95_ge3000, baseline_median_uv,
    baseline_p95_uv, n_baseline, model_median_on_baseline_nodes, model_p95_on_baseline_nodes}; fractions, not
    per cent. The UV keys use 1000-3000 A and pixels brighter than 1e-6 of the spectrum's peak.

    ``default=True`` adds ``default_*`` keys: the default mixture (``library=None``) at the same nodes, scored
    against that library. ``bands=True`` adds ``bands``: {Teff band name: the same metrics on the test
    nodes of that band, :data:`TEFF_BANDS`} (model, baseline where it exists, default if asked).
    """
    from .generator import _quiet_coverage
    check_grid_wavelength(gen, grid)
    split = gen.nodes["split"] if split is None else np.asarray(split)
    if split.shape != (len(grid.teff),):
        raise ValueError(f"split must hold one label (0 train, 1 validation, 2 test) per grid node: "
                         f"{len(grid.teff)} values, got shape {split.shape}")
    tau, x_max = gen.log1p01["tau"], gen.log1p01["x_max"]
    wl = grid.wavelength
    out = {}
    for j, lib in enumerate(grid.library_names):
        test = np.flatnonzero((split == 2) & (grid.library_id == j))
        if test.size == 0:
            continue
        train = np.flatnonzero((split == 0) & (grid.library_id == j))
        true, mask = grid.flux[test].astype(float), grid.mask[test]
        pred, _ = gen.surface_flux(grid.teff[test], grid.logg[test], grid.logz[test], library=lib,
                                   progress=progress)
        norm = SIGMA_SB * grid.teff[test][:, None] ** 4
        y_true = log1p01_forward(np.where(mask, np.clip(true, 0, None), 0) / norm, tau, x_max)
        y_pred = log1p01_forward(np.clip(pred, 0, None) / norm, tau, x_max)
        mse = float(np.mean((y_pred - y_true)[mask] ** 2))
        row = {"n_test": int(test.size), "mse_log1p01": mse,
               **error_metrics(pred, true, mask, wl, wave_range)}
        base = None
        if baseline and train.size >= 2:
            base = interpolate_grid_nodes(grid, train, test)
            ok = np.isfinite(base).any(1)
            row["n_baseline"] = int(ok.sum())
            if ok.any():
                bm = error_metrics(base[ok], true[ok], mask[ok], wl, wave_range)
                row.update({f"baseline_{k}": v for k, v in bm.items()})
                me = relative_errors(pred[ok], true[ok], mask[ok], wl, wave_range)
                row.update(model_median_on_baseline_nodes=float(np.median(me)),
                           model_p95_on_baseline_nodes=float(np.percentile(me, 95)))
        dflt = None
        if default:
            with _quiet_coverage():
                dflt, _ = gen.surface_flux(grid.teff[test], grid.logg[test], grid.logz[test], library=None)
            row.update({f"default_{k}": v for k, v in error_metrics(dflt, true, mask, wl,
                                                                    wave_range).items()})
        if bands:
            row["bands"] = {}
            for lo, hi in TEFF_BANDS:
                r = (grid.teff[test] >= lo) & (grid.teff[test] < hi)
                if not r.any():
                    continue
                b = {"n_test": int(r.sum()), **error_metrics(pred[r], true[r], mask[r], wl, wave_range)}
                if base is not None:
                    rb = r & np.isfinite(base).any(1)
                    if rb.any():
                        b["n_baseline"] = int(rb.sum())
                        b.update({f"baseline_{k}": v for k, v in
                                  error_metrics(base[rb], true[rb], mask[rb], wl, wave_range).items()})
                if dflt is not None:
                    b.update({f"default_{k}": v for k, v in error_metrics(dflt[r], true[r], mask[r], wl,
                                                                          wave_range).items()})
                row["bands"][band_name(lo, hi)] = b
        out[lib] = row
    return out


def _percent_pair(r, median, p95):
    """'m % / p %' of two fractions in ``r``, "-" where there is none or no pixel counted (NaN: no UV pixel
    known), as the JSON report's null; it printed "nan % / nan %"."""
    m, p = r.get(median), r.get(p95)
    if m is None or p is None or not (np.isfinite(m) and np.isfinite(p)):
        return "-"
    return f"{100 * m:.2f} % / {100 * p:.2f} %"


def format_accuracy_table(table):
    """Markdown table of :func:`accuracy_table` (per cent; "-" where no pixel counts)."""
    lines = ["| library | test nodes | MSE log1p01 | median | p95 | baseline nodes | model median / p95 "
             "there | baseline median / p95 | model >= 3000 A median / p95 | baseline >= 3000 A | model UV "
             "median / p95 | baseline UV |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for lib, r in table.items():
        b = (f"{_percent_pair(r, 'model_median_on_baseline_nodes', 'model_p95_on_baseline_nodes')} "
             f"| {_percent_pair(r, 'baseline_median', 'baseline_p95')}"
             if "baseline_median" in r else "- | -")
        median_p95 = _percent_pair(r, "median", "p95").replace(" / ", " | ")
        if median_p95 == "-":
            median_p95 = "- | -"
        lines.append(f"| {lib} | {r['n_test']} | {r['mse_log1p01']:.2e} | {median_p95} | "
                     f"{r.get('n_baseline', 0)} | {b} | {_percent_pair(r, 'median_ge3000', 'p95_ge3000')} | "
                     f"{_percent_pair(r, 'baseline_median_ge3000', 'baseline_p95_ge3000')} | "
                     f"{_percent_pair(r, 'median_uv', 'p95_uv')} | "
                     f"{_percent_pair(r, 'baseline_median_uv', 'baseline_p95_uv')} |")
    return "\n".join(lines)


def format_band_table(table):
    """Markdown: per library and Teff band, median / p95 >= 3000 A and UV median, for the library imitation,
    the default mixture (if computed) and the interpolation baseline [per cent]."""
    def cell(b, prefix, key):
        m, p = b.get(f"{prefix}median{key}"), b.get(f"{prefix}p95{key}")
        return "-" if m is None or not np.isfinite(m) else f"{100 * m:.2f} / {100 * p:.2f}"
    lines = ["| library | Teff band | nodes | imitation >= 3000 A | default >= 3000 A | interpolation >= "
             "3000 A | imitation UV | default UV | interpolation UV |",
             "|---|---|---|---|---|---|---|---|---|"]
    for lib, r in table.items():
        for band, b in r.get("bands", {}).items():
            lines.append(f"| {lib} | {band} | {b['n_test']} | {cell(b, '', '_ge3000')} | "
                         f"{cell(b, 'default_', '_ge3000')} | {cell(b, 'baseline_', '_ge3000')} | "
                         f"{cell(b, '', '_uv')} | {cell(b, 'default_', '_uv')} | "
                         f"{cell(b, 'baseline_', '_uv')} |")
    return "\n".join(lines)


# ---- seams ------------------------------------------------------------------------------------------
def _jumps(flux, wavelength, band=(3000.0, 10000.0)):
    sel = (wavelength >= band[0]) & (wavelength <= band[1])
    lf = np.log(np.clip(flux[:, sel], 1e-300, None))
    d = np.abs(np.diff(lf, axis=0))
    n = np.isfinite(d).sum(1)
    # steps where the raw library has no data (NaN) get NaN, not a warning
    return np.where(n > 0, np.nansum(d, axis=1) / np.maximum(n, 1), np.nan)


def teff_sweep(teff_lo, teff_hi, step=0.01):
    """Teff values [K] from ``teff_lo`` in steps of ``step`` (fractional, 1 % default), the last one at most
    ``teff_hi`` (within one step of it)."""
    # floor, not ceil: a last step beyond hi left the sweep's boxes (a spurious library switch at the end)
    n = int(np.floor(np.log(teff_hi / teff_lo) / np.log1p(step) + 1e-9)) + 1
    return teff_lo * (1 + step) ** np.arange(n)


def _raw_sweep(grid, teff, logg, logz):
    """Raw-library sweep with hard library edges: at each Teff, the mean in log flux over the libraries whose
    box contains the point of that library's nodes at the nearest available (log g, [M/H]) plane, linearly
    interpolated in log Teff. Returns (flux, n_libraries_used) per Teff; NaN where no library covers it."""
    logs = np.zeros((teff.size, grid.wavelength.size))
    count = np.zeros((teff.size, grid.wavelength.size))
    nlib = np.zeros(teff.size, int)
    for j, lib in enumerate(grid.library_names):
        sel = np.flatnonzero(grid.library_id == j)
        if sel.size == 0:
            continue
        inbox = ((teff >= grid.teff[sel].min()) & (teff <= grid.teff[sel].max())
                 & (grid.logg[sel].min() <= logg <= grid.logg[sel].max())
                 & (grid.logz[sel].min() <= logz <= grid.logz[sel].max()))
        if not inbox.any():
            continue
        d = np.abs(grid.logg[sel] - logg) / 0.5 + np.abs(grid.logz[sel] - logz) / 0.5
        plane = sel[d <= d.min() + 1e-9]
        plane = plane[np.argsort(grid.teff[plane])]
        if plane.size < 2:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            lf = np.log(np.where(grid.mask[plane] & (grid.flux[plane] > 0), grid.flux[plane], np.nan))
        lt = np.log(grid.teff[plane])
        rows = np.flatnonzero(inbox)
        for k in range(lf.shape[1]):
            v = np.interp(np.log(teff[rows]), lt, lf[:, k], left=np.nan, right=np.nan)
            ok = np.isfinite(v)
            logs[rows[ok], k] += v[ok]
            count[rows[ok], k] += 1
        nlib[rows] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.exp(logs / count), nlib


#: The standard seam sweeps: (name, Teff lo, Teff hi, log g, [M/H], libraries the sweep needs). Each crosses
#: box edges: CK04 starts at 3500 K, NextGen stops at 10,000 K; WM-basic starts at 25 kK; at log g 5.0
#: CK04/BaSeL stop at 50 kK and CM87 starts at 60 kK (CM87 has log g 5.0 at 60, 80, 100 kK; WM-basic has
#: log g <= 4.5, so WM-basic and CM87 never meet). The hot seam used to go through rauch_tmap, which is no
#: longer a union library (its file is degenerate; see docs/grid.md).
SEAM_SWEEPS = (
    ("NextGen/CK04/BaSeL", 3000.0, 12000.0, 4.5, 0.0, ("nextgen", "ck04")),
    ("CK04/WM-basic", 20000.0, 50000.0, 4.0, 0.0, ("ck04", "wmbasic")),
    ("CK04+BaSeL/CM87", 40000.0, 80000.0, 5.0, 0.0, ("ck04", "cm87")),
)


def default_sweeps(gen):
    """The seam sweeps (name, Teff lo, Teff hi, log g, [M/H], required libraries) for this model.

    All of :data:`SEAM_SWEEPS` are returned, also those whose libraries the model lacks, so that
    :func:`seam_report` reports them as not built (with the reason) instead of dropping them silently. If
    the model has the libraries of none of them, a sweep across its whole Teff range at the middle log g and
    [M/H] is added.
    """
    names = set(gen.library_names)
    sweeps = list(SEAM_SWEEPS)
    if not any(set(req) <= names for *_, req in sweeps):
        b = gen.box
        sweeps.append(("full range", float(b.teff[0]), float(b.teff[1]), float(np.mean(b.logg)),
                       float(np.mean(b.logz)), ()))
    return sweeps


def _sweep_problem(gen, grid, lo, hi, g, z, required):
    """Why a sweep cannot be built (str), or None."""
    if not all(np.isfinite(v) for v in (lo, hi, g, z)) or not 0 < lo < hi:
        return f"invalid sweep: Teff {lo}-{hi} K, log g {g}, [M/H] {z} (need finite values, 0 < lo < hi)"
    missing = [n for n in required if n not in gen.library_names]
    if missing:
        return f"model lacks librar{'y' if len(missing) == 1 else 'ies'} {', '.join(missing)} (it has " \
               f"{', '.join(gen.library_names)})"
    missing = [n for n in required if n not in grid.library_names]
    if missing:
        return f"grid lacks librar{'y' if len(missing) == 1 else 'ies'} {', '.join(missing)} (it has " \
               f"{', '.join(grid.library_names)})"
    return None


def seam_report(gen, grid, sweeps=None):
    """Largest and median jump (mean |d ln F| over 3000-10000 A between 1 % Teff steps), model vs raw.

    ``sweeps``: (name, Teff lo, Teff hi, log g, [M/H]) tuples, optionally with a 6th element, the libraries
    the sweep needs (default :func:`default_sweeps`). A sweep that cannot be built (a required library
    missing from the model or the grid, an invalid range) gives a row with ``skipped`` = the reason and no
    jumps; built rows have ``skipped`` None.

    The raw sweep (:func:`_raw_sweep`) averages, with hard box edges, the libraries covering each Teff, each
    interpolated linearly in log Teff between its nodes: its jumps where a library enters or leaves are the
    libraries' own disagreements.
    """
    from .generator import _quiet_coverage

    check_grid_wavelength(gen, grid)
    sweeps = default_sweeps(gen) if sweeps is None else sweeps
    rows = []
    for sw in sweeps:
        if len(sw) not in (5, 6):
            raise ValueError("a seam sweep is (name, Teff lo, Teff hi, log g, [M/H][, libraries]); got "
                             f"{sw!r}")
        name, lo, hi, g, z = sw[:5]
        required = tuple(sw[5]) if len(sw) == 6 else ()
        head = {"sweep": name, "teff": [lo, hi], "logg": g, "logz": z, "requires": list(required)}
        problem = _sweep_problem(gen, grid, lo, hi, g, z, required)
        if problem is not None:
            rows.append({**head, "skipped": problem})
            continue
        t = teff_sweep(lo, hi)
        with _quiet_coverage():
            f, inside = gen.surface_flux(t, g, z)
        mix = gen.mixture(t, g, z)
        raw, nlib = _raw_sweep(grid, t, g, z)
        jm, jr = _jumps(f, gen.wavelength), _jumps(raw, grid.wavelength)
        switch = np.flatnonzero(nlib[1:] != nlib[:-1])
        used = (mix > 0).any(0)
        rows.append({**head, "skipped": None, "n_steps": int(t.size),
                     "model_max_jump": float(np.nanmax(jm)), "model_median_jump": float(np.nanmedian(jm)),
                     "model_max_at_teff": float(t[np.nanargmax(jm)]),
                     "raw_max_jump": float(np.nanmax(jr)) if np.isfinite(jr).any() else None,
                     "raw_median_jump": float(np.nanmedian(jr)) if np.isfinite(jr).any() else None,
                     "raw_jump_at_library_switch": [float(jr[s]) for s in switch],
                     "library_switches_at_teff": [float(t[s]) for s in switch],
                     "libraries": [n for n, u_ in zip(gen.library_names, used) if u_],
                     "fraction_inside": float(inside.mean())})
    return rows


def format_seam_lines(rows):
    """Lines for :func:`seam_report`'s rows: a heading with the unit, then per sweep the model's largest and
    median jump and the raw libraries' largest (4 decimals; "-" where no library spectrum lies along the
    sweep), or why it was not built."""
    lines = ["seams: jump = mean |d ln F| over 3000-10000 A between Teff steps of 1 % (0.01 ~ 1 %), "
             "model vs the raw libraries"]
    for r in rows:
        if r["skipped"]:
            lines.append(f"seam {r['sweep']}: NOT BUILT: {r['skipped']}")
            continue
        raw = "-" if r["raw_max_jump"] is None else f"{r['raw_max_jump']:.4f}"
        lines.append(f"seam {r['sweep']} (log g {r['logg']:g}, [M/H] {r['logz']:g}): model max jump "
                     f"{r['model_max_jump']:.4f} at {r['model_max_at_teff']:.0f} K (median "
                     f"{r['model_median_jump']:.4f}), raw max jump {raw}")
    return "\n".join(lines)


# ---- throughput ------------------------------------------------------------------------------------
def matmul_peak_gflops(n=2048, repeats=5, device="cpu"):
    """Best fp32 matmul throughput of torch on this machine [GFLOP/s] (n x n x n, best of ``repeats``).
    ``device``: a name ("cpu", "cuda:1") or a ``torch.device``."""
    import torch
    device = torch.device(device)      # torch.device("cpu") != "cpu": it was synchronised as a CUDA device

    def sync():                        # an accelerator runs asynchronously: wait for it before reading time
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elif device.type == "mps":
            torch.mps.synchronize()

    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    best = np.inf
    for _ in range(repeats + 1):
        sync()
        t0 = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def throughput(fn, batch, repeats=3, min_time=0.5):
    """Spectra per second of ``fn(batch)`` (best of repeats, each at least ``min_time`` s or one call)."""
    fn(batch)                                   # warm-up
    best = 0.0
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while True:
            fn(batch)
            n += batch
            dt = time.perf_counter() - t0
            if dt >= min_time:
                break
        best = max(best, n / dt)
    return best


# ---- CLI -------------------------------------------------------------------------------------------
def add_cli(sub):
    p = sub.add_parser("evaluate", help="accuracy of a trained model on its held-out grid nodes",
                       description="Held-out accuracy vs linear interpolation, and seam smoothness.")
    p.add_argument("--model", default=None, help="model directory (default: the shipped default model)")
    p.add_argument("--grid", required=True, help="the union grid file the model was trained on")
    p.add_argument("--out", default=None, help="write the report as JSON here (.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report")
    p.add_argument("--device", default="auto", help="auto (CUDA when present; the default), cpu or cuda")
    p.add_argument("--no-seams", action="store_true",
                   help="skip the seam-smoothness sweep (Teff in 1 %% steps across library boundaries)")
    p.set_defaults(func=_cli)


def _cli(args):
    from .cli import show_progress
    from .neural import NeuralGenerator, load_generator
    from .output_files import atomic_output, check_outputs, json_safe
    from .train import read_grid
    outputs = check_outputs(args, {"out": ((".json",), "JSON report")})     # before the slow evaluation
    need = ("evaluate needs a model directory trained by smnet-sps: it scores the held-out test nodes of the "
            "model's own split (nodes.npz)")
    if args.model is not None and Path(args.model).is_file():
        # load_generator's hint for a file (a released checkpoint: give --meta) named an option evaluate
        # does not have, for a model it cannot score
        raise ValueError(f"{need}; --model {args.model} is a file (a released SM-Net checkpoint has no "
                         "split)")
    gen = load_generator(args.model, device=args.device)
    if not isinstance(gen, NeuralGenerator):
        base = getattr(gen, "base", None)
        hint = (f"; evaluate its base model ({getattr(base, 'directory', None) or 'default'})"
                if base is not None else "")
        raise ValueError(f"{need}; --model {args.model} is a {type(gen).__name__}{hint}")
    grid = read_grid(args.grid)
    applies = grid_split_applies(gen, grid)
    if applies is None:
        raise ValueError(f"{args.grid} (sha256 {grid.sha256[:12]}) is not the grid this model was trained on "
                         f"({str(gen.config.get('grid_sha256'))[:12]}) and its nodes differ; its test split "
                         "would not apply")
    note = grid_split_note(applies, args.grid)
    if note:
        print(note)
    table = accuracy_table(gen, grid, progress=show_progress(args))
    report = {"model": str(gen.directory), "grid": str(args.grid), "grid_split": applies,
              "grid_split_note": note,
              "units": "accuracy figures are fractions (|dF/F|: 0.01 = 1 %, as the table prints in %); "
                       "MSE in log1p01 space; seam jumps in ln F; null where no pixel or step counts",
              "accuracy": table}
    if not args.no_seams:
        report["seams"] = seam_report(gen, grid)
    # the report first, then the tables: `| head` closing stdout lost it
    if "out" in outputs:
        with atomic_output(outputs["out"], overwrite=args.overwrite) as tmp:
            # strict JSON (as fit and train write): a metric without pixels (NaN) is null, not NaN
            tmp.write_text(json.dumps(json_safe(report), indent=1, allow_nan=False))
    print(format_accuracy_table(table))
    if not args.no_seams:
        print(format_seam_lines(report["seams"]))
    if "out" in outputs:
        print(f"wrote {args.out}")
    return 0
