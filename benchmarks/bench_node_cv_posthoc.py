"""Post-hoc levers on a node cross-validation's cached fold predictions (no training): WM-basic's 17th round.

Reads the fold predictions that ``bench_node_cv.py --refit-base --fold-scheme teff-lines`` cached for one or
more settings and scores two ways of constraining them afterwards, on the same test-like nodes:

* **projection** onto the fold's training spectra: log10(F / sigma Teff^4) of the prediction replaced by
  its projection on the mean and the first K principal components of the training nodes of that fold
  (pixels known at every training node; the rest untouched). Linear interpolation's answer always lies in
  the span of the training spectra; the network's need not.
* **blend with interpolation**: the geometric mean (1 - W) log F_network + W log F_interpolation, W the
  interpolation's share. If the two made independent errors, a blend would beat both.

Usage (the caches of docs/experiments.md's sixteenth round, teff-lines folds 0 and 1)::

    python benchmarks/bench_node_cv_posthoc.py --setting b75-mh0.3 b75-mh0.3-bs1 --only-folds 0 1

Writes benchmarks/results_node_cv_posthoc.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench_node_cv import figures, fold_cache, folds_of, test_like_nodes
from smnet_sps.constants import SIGMA_SB
from smnet_sps.evaluate import interpolate_grid_nodes
from smnet_sps.grid import load_grid
from results_file import write_results

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
COMPONENTS = (8, 16, 32, 64, 128, 200)
INTERP_SHARES = (0.25, 0.5)
INTERPOLATION = "linear interpolation"


def log_ratio(flux, teff):
    """log10(F / sigma Teff^4): the space of the interpolation baseline."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log10(flux / (SIGMA_SB * teff[:, None] ** 4))


def project(pred, grid, idx, others, n_components):
    """``pred`` at nodes ``idx`` with log10(F / sigma Teff^4) projected on the mean and first
    ``n_components`` principal components of the training nodes ``others`` (pixels known at all of them)."""
    flux = grid.flux[others].astype(float)
    cols = (grid.mask[others] & (flux > 0)).all(0)
    train = log_ratio(flux[:, cols], grid.teff[others])
    mean = train.mean(0)
    basis = np.linalg.svd(train - mean, full_matrices=False)[2][:n_components]
    coeff = (log_ratio(pred[:, cols], grid.teff[idx]) - mean) @ basis.T
    out = pred.copy()
    out[:, cols] = 10 ** (mean + coeff @ basis) * SIGMA_SB * grid.teff[idx][:, None] ** 4
    return out


def error_agreement(pred, interp, true, mask, wavelength):
    """How alike the network's and interpolation's errors are at >= 3000 A: the correlation of their
    log(F / F_true) over the pixels, the share of pixels where both err the same way, and the share of nodes
    where the network's median |dF/F| is the smaller."""
    sel = (wavelength >= 3000.0) & (wavelength <= 25000.0)
    ok = (mask & (true > 0))[:, sel]
    with np.errstate(divide="ignore", invalid="ignore"):
        e_net = np.where(ok, np.log(pred[:, sel] / true[:, sel]), np.nan)
        e_int = np.where(ok, np.log(interp[:, sel] / true[:, sel]), np.nan)
    both = np.isfinite(e_net) & np.isfinite(e_int)
    wins = np.nanmedian(np.abs(e_net), 1) < np.nanmedian(np.abs(e_int), 1)
    same_sign = np.mean(np.sign(e_net[both]) == np.sign(e_int[both]))
    return np.corrcoef(e_net[both], e_int[both])[0, 1], same_sign, wins.mean()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--library", default="wmbasic")
    ap.add_argument("--base", default=str(ROOT / "smnet_sps" / "data" / "default_model"),
                    help="the model whose split defines the training nodes")
    ap.add_argument("--grid", default=str(ROOT / "work" / "grid.h5"))
    ap.add_argument("--setting", nargs="+", required=True, help="names of cached settings")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--only-folds", type=int, nargs="+", default=None, metavar="K")
    ap.add_argument("--cache", default=str(ROOT / "work" / "node_cv"))
    ap.add_argument("--out", default=str(HERE / "results_node_cv_posthoc.md"))
    args = ap.parse_args(argv)
    grid = load_grid(args.grid)
    split = np.load(Path(args.base) / "nodes.npz")["split"]
    lib_id = list(grid.library_names).index(args.library)
    train_nodes = np.flatnonzero((split == 0) & (grid.library_id == lib_id))
    folds = folds_of(train_nodes, args.folds, scheme="teff-lines", grid=grid)
    fold_ids = range(args.folds) if args.only_folds is None else sorted(set(args.only_folds))

    lines = [f"## Post-hoc levers on cached fold predictions: {args.library} "
             "(`benchmarks/bench_node_cv_posthoc.py`)", "",
             f"Teff-lines folds {', '.join(map(str, fold_ids))} of {args.folds}; median / p95 of |dF/F| at "
             ">= 3000 A and UV median [%] on the test-like nodes (both Teff neighbours in other folds).", "",
             "| setting | constraint | median | p95 | UV |", "|---|---|---|---|---|"]
    interp_row = None
    agreement = []
    for name in args.setting:
        rows = {}
        idx_all, like_all = [], []
        for k in fold_ids:
            cache = fold_cache(args.cache, args.library, name, args.folds, k, True, "teff-lines")
            if not cache.exists():
                raise SystemExit(f"no cached predictions at {cache}; run bench_node_cv.py for {name!r} first")
            idx, pred = np.load(cache)["idx"], np.load(cache)["pred"]
            others = np.setdiff1d(train_nodes, folds[k])
            interp = interpolate_grid_nodes(grid, others, idx)
            like_all.append(np.isfinite(interp).any(1) & test_like_nodes(grid, idx, others))
            idx_all.append(idx)
            variants = {"none (the network)": pred, INTERPOLATION: interp}
            variants.update({f"projection, K = {n}": project(pred, grid, idx, others, n) for n in COMPONENTS})
            with np.errstate(divide="ignore", invalid="ignore"):
                variants.update({f"blend with interpolation, W = {w:g}":
                                 np.exp((1 - w) * np.log(pred) + w * np.log(interp)) for w in INTERP_SHARES})
            for label, values in variants.items():
                rows.setdefault(label, []).append(values)
        idx, like = np.concatenate(idx_all), np.concatenate(like_all)
        net, interp = (np.concatenate(rows[label])[like] for label in ("none (the network)", INTERPOLATION))
        agreement.append((name, *error_agreement(net, interp, grid.flux[idx[like]].astype(float),
                                                 grid.mask[idx[like]], grid.wavelength)))
        for label, values in rows.items():
            med, p95, uv = figures(np.concatenate(values)[like], grid, idx[like])
            figs = f"{med:.3f} | {p95:.2f} | {uv:.2f} |"
            if label == INTERPOLATION:
                interp_row = f"| interpolation of the other folds | - | {figs}"
            else:
                lines.append(f"| `{name}` | {label} | {figs}")
        print(f"{name}: {like.sum()} test-like nodes")
    lines.insert(6, interp_row)
    lines += ["", "How alike the network's and interpolation's errors are (>= 3000 A, test-like nodes):", "",
              "| setting | correlation of log(F / F_true) | same sign | nodes where the network is better |",
              "|---|---|---|---|"]
    lines += [f"| `{name}` | {corr:.2f} | {same:.0%} | {wins:.0%} |" for name, corr, same, wins in agreement]
    write_results(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
