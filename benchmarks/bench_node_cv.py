"""k-fold cross-validation over one library's grid nodes, for choosing a specialist's training settings.

A library's 15-30 validation nodes cannot tell training levers apart where its nodes scatter (WM-basic,
NextGen). Here every *training* node is held out once: the training nodes are dealt into k folds, and for
each setting and fold a specialist is fine-tuned from the shared model (``smnet_sps.train.train`` with
``init_from``, ``libraries=[LIB]``, ``exclude_nodes=fold``, the settings of docs/generator.md) and scored at
the fold's nodes, against linear interpolation of the other folds' nodes. The test nodes are never used.

``--refit-base`` removes the leak described next: per fold it first retrains the shared model from scratch
without the fold's nodes (with the settings the base records; ~9 min per fold on 2 threads, cached), and the
fold's specialists start from that model, so no network has seen the nodes it is scored at; written to
results_node_cv_refit.md.

Caveat printed with the table without ``--refit-base``: the shared model was trained on these same training
nodes, so the figures are optimistic for the network (``steps 0`` shows how much: the shared model itself,
scored at nodes it saw). They are not a win over interpolation, and even the ranking leans towards settings
that move a specialist little from the shared model (they keep more of its memory of the fold);
docs/experiments.md shows a setting ranked first here that was no better on the test nodes. Figures are given
for all scored nodes, for the interior ones (a Teff neighbour on both sides at the same log g and [M/H]:
the pool the test split draws from) and for the test-like ones (interior, with both Teff neighbours in other
folds, as at a test node, :func:`test_like_nodes`; with random folds a neighbour is often held out with the
node, and interpolation is then handicapped as it never is at a test node).

Usage::

    python benchmarks/bench_node_cv.py --library wmbasic --base smnet_sps/data/default_model --refit-base \\
        --setting jitter0:0:6000 jitter0.15:0.15:6000 jitter0.3:0.3:6000 [--folds 5] [--threads 1] \
        [--fold-scheme teff-lines] [--only-folds 0 1]

With ``--refit-base``, BASE is read for its recorded training settings and split only: the shipped model
records its shared network's (``config.json["training"]``). Without it, BASE must be the shared network itself
(arch ``mlp``, e.g. ``work/models/default_v1``: the leaky mode, kept for the record).

``--fold-scheme teff-lines`` deals the folds so that no two Teff neighbours share one (:func:`folds_of`;
caches named ``..._5tlfoldK``): more of the scored nodes then have both Teff neighbours known, as a test node
has, than with the default random folds.

A setting is NAME:INPUT_JITTER:STEPS[:KEY=VALUE,...] (optimiser steps of batch 64; lr 1e-3 cosine to 2 %,
mixed pixel loss, UV weight 3, sampling weights clipped at 5, no weight average or decay, seed 0 unless
KEY=VALUE replaces them: lr, lr_final, pixel_loss, uv_weight, w_max, ema_decay, weight_decay, seed,
node_loss, node_blend, node_blend_kind, jitter_floor, jitter_quantile);
INPUT_JITTER is one value or three separated by commas (Teff, log g, [M/H]: ``train(input_jitter=...)``).
``soup_of=A+B+C`` trains nothing: each fold's expert is the weight average of settings A, B and C's
specialists of that fold (``build_expert_model`` with several runs per library, ``same_setting=False``:
runs of one setting with different seeds, or of several settings), e.g.
``--setting s0:0,0,0.2:24000 s1:0,0,0.2:24000:seed=1 avg01:0:0:soup_of=s0+s1``;
``ensemble_of=A+B+C`` the geometric mean of their cached predictions (an output ensemble: one network pass
per member, for comparison). ``bases=NAME`` (with ``--refit-base``) starts the setting's specialists from
another set of fold bases, cached as work/node_cv/LIB_NAME_KfoldK (retrained with the current code where
missing; default ``base``): a second realisation of the shared network, for output ensembles across shared
networks (``ensemble_of`` a setting on each set). ``base_node_blend=P`` retrains those fold bases with
``train(node_blend=P)`` (cached as LIB_base-blendP_KfoldK unless ``bases=`` names them), ``base_seed=S`` with
``train(seed=S)`` (LIB_base-seedS_KfoldK): another realisation of the same recipe. ``--only-folds 0 1`` scores
those folds only (a first look at a costly lever, on fewer nodes).
Each fold's predictions and specialist are cached in work/node_cv/ under NAME (a re-run skips what is
there). Writes benchmarks/results_node_cv.md (or results_node_cv_refit.md).
About 1 min per fold and 6k steps on one CPU thread.
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from smnet_sps.baselines import node_coordinates
from smnet_sps.experts import build_expert_model
from smnet_sps.evaluate import UV_FLOOR, UV_RANGE, interpolate_grid_nodes, relative_errors
from smnet_sps.grid import load_grid
from smnet_sps.neural import load_generator
from smnet_sps.train import grid_lines, teff_neighbours, train
from results_file import write_results

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BATCH = 64


FOLD_SCHEMES = ("random", "teff-lines")


def folds_of(train_nodes, k, seed=0, scheme="random", grid=None):
    """Deal the training nodes into k folds (fixed seed): a list of index arrays.

    ``scheme="random"`` deals them at random, so a node is often held out together with a Teff neighbour.
    ``"teff-lines"`` (needs ``grid``) puts the node at position i along its grid's Teff line (same library,
    log g and [M/H]) in fold (i + r) mod k, r drawn per line: no two Teff neighbours share a fold, so every
    interior node whose Teff neighbours are training nodes is scored with both of them known, as a test node
    is."""
    rng = np.random.default_rng(seed)
    if scheme == "random":
        order = rng.permutation(train_nodes)
        return [np.sort(order[i::k]) for i in range(k)]
    if scheme != "teff-lines" or grid is None:
        raise ValueError(f"fold scheme must be one of {FOLD_SCHEMES} (teff-lines with a grid), "
                         f"got {scheme!r}")
    fold_id = np.full(len(grid.teff), -1)
    lines = grid_lines(grid.teff, grid.logg, grid.logz, grid.library_id, range(len(grid.teff)), axis=0)
    for line in lines:
        fold_id[line] = (np.arange(len(line)) + rng.integers(k)) % k
    return [np.sort(train_nodes[fold_id[train_nodes] == i]) for i in range(k)]


def fold_label(n_folds, k, scheme="random"):
    """How fold ``k`` is named in the caches: 5fold2, or 5tlfold2 for the teff-lines scheme."""
    return f"{n_folds}{'tl' if scheme == 'teff-lines' else ''}fold{k}"


def figures(pred, grid, idx):
    """(median, p95) of |dF/F| at 3000-25000 A and the UV median [%] at nodes ``idx``."""
    true, mask = grid.flux[idx].astype(float), grid.mask[idx]
    opt = relative_errors(pred, true, mask, grid.wavelength, (3000.0, 25000.0))
    uv = relative_errors(pred, true, mask, grid.wavelength, UV_RANGE, UV_FLOOR, peak_over="all")
    return 100 * np.median(opt), 100 * np.percentile(opt, 95), 100 * np.median(uv)


def refit_base(base, grid_path, fold, out, node_blend=0.0, seed=0):
    """The shared model retrained from scratch without the fold's nodes, with the settings ``base`` records
    (architecture, epochs, batch, lr, pixel loss, tail floor; the rest at train()'s defaults, ``node_blend``
    and ``seed`` excepted); cached in ``out``. Its specialists then never start from a model that saw the
    fold."""
    out = Path(out)
    if (out / "config.json").is_file():
        cached = json.loads((out / "config.json").read_text())
        cached_blend = cached.get("node_blend") or 0.0       # absent in models older than the option
        cached_seed = cached.get("seed") or 0
        if (cached_blend, cached_seed) != (node_blend, seed):
            # a name reused for bases of another recipe would score the wrong setting without a word
            raise SystemExit(f"{out} holds a shared model trained with node_blend {cached_blend:g} and seed "
                             f"{cached_seed}, not {node_blend:g} and {seed}; name these bases differently "
                             "(bases=NAME)")
        if cached["training"].get("finished"):
            return out
    cfg = json.loads((Path(base) / "config.json").read_text())
    run = cfg["training"]
    # overwrite: what is there is an unfinished base (a finished one was returned above)
    train(grid_path, out, exclude_nodes=fold, epochs=run["epochs_run"], batch_size=run["batch_size"],
          lr=run["lr"], pixel_loss=cfg.get("pixel_loss", "standardised"),
          tail_floor=cfg.get("tail_floor", 1e-6), uv_weight=cfg.get("uv_weight") or 1.0, patience=10**9,
          node_blend=node_blend, seed=seed, progress=False, overwrite=True, **_shape(base))
    return out


# docs/generator.md's specialist settings (the first four), then train()'s defaults, listed so that a
# setting can override them
SPECIALIST = {"lr": 1e-3, "lr_final": 0.02, "pixel_loss": "mixed", "uv_weight": 3.0,
              "w_max": 5.0, "ema_decay": 0.0, "weight_decay": 0.0, "seed": 0, "node_loss": "mse",
              "node_blend": 0.0, "node_blend_kind": "segments", "jitter_floor": 1.0, "jitter_quantile": 0.5}


def fold_cache(cache_dir, library, setting, n_folds, k, refit, scheme="random"):
    """The cached predictions of a setting's specialist of fold ``k`` (its model beside them)."""
    return Path(cache_dir) / (f"{library}_{setting}_{fold_label(n_folds, k, scheme)}"
                              + ("_refit" if refit else "") + ".npz")


def specialist_dir(cache):
    """Where a fold's specialist is kept beside its cached predictions (for weight averages)."""
    return cache.with_name(cache.stem + "_model")


def _predict(gen, grid, fold, library):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gen.surface_flux(grid.teff[fold], grid.logg[fold], grid.logz[fold], library=library)[0]


def fold_prediction(grid, grid_path, base, library, fold, others, jitter, steps, cache, **overrides):
    """The fold's nodes predicted by a specialist trained without them (cached, with the specialist);
    ``overrides`` replace entries of :data:`SPECIALIST`."""
    if cache.exists():
        return np.load(cache)["pred"]
    epochs = max(1, math.ceil(steps * BATCH / others.size))
    if steps > 0:
        model = specialist_dir(cache)
        train(grid_path, model, init_from=base, libraries=[library], exclude_nodes=fold,
              input_jitter=jitter, epochs=epochs, batch_size=BATCH, keep="final", patience=10**9,
              progress=False, overwrite=True, **{**SPECIALIST, **overrides}, **_shape(base))
        (model / "checkpoint.pt").unlink(missing_ok=True)      # the optimiser state is not needed
    else:
        model = base
    pred = _predict(load_generator(model, device="cpu"), grid, fold, library)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, idx=fold, pred=pred)
    return pred


def soup_prediction(grid, base, library, fold, members, cache):
    """The fold's nodes predicted by the weight average of the member settings' specialists of this fold
    (``members``: their cache paths); cached."""
    if cache.exists():
        return np.load(cache)["pred"]
    dirs = [specialist_dir(m) for m in members]
    missing = [str(d) for d in dirs if not (d / "weights.pt").is_file()]
    if missing:
        raise SystemExit(f"soup_of: no cached specialist at {missing}; run those settings first (this "
                         "version keeps them)")
    with tempfile.TemporaryDirectory() as tmp:
        # the experiments average seeds of one setting and, in the tenth round, two settings
        build_expert_model(base, {library: dirs}, tmp, overwrite=True, same_setting=False)
        pred = _predict(load_generator(tmp, device="cpu"), grid, fold, library)
    np.savez(cache, idx=fold, pred=pred)
    return pred


def interior_nodes(grid, idx):
    """True for nodes ``idx`` with a Teff neighbour on both sides in their library's grid (same log g and
    [M/H]): the pool the test split draws from (``smnet_sps.train.split_nodes``)."""
    left, right = teff_neighbours(grid.teff, grid.logg, grid.logz, grid.library_id)
    return (left[idx] >= 0) & (right[idx] >= 0)


def test_like_nodes(grid, fold, others):
    """True for the fold's nodes whose Teff neighbours on both sides are among ``others`` (the nodes the fold
    is trained and interpolated on), as at a test node. Random folds also hold out some nodes together with a
    Teff neighbour, a wider gap for interpolation than any test node has. (The interpolation also uses the
    log g and [M/H] neighbours where the library spans them, and a fold holds out a fifth of the nodes where
    the test split holds out a tenth: even these nodes have a sparser neighbourhood than a test node.)"""
    left, right = teff_neighbours(grid.teff, grid.logg, grid.logz, grid.library_id)
    return np.isin(left[fold], others) & np.isin(right[fold], others)


def parse_setting(text):
    """NAME:INPUT_JITTER:STEPS[:KEY=VALUE,...] -> (name, jitter, steps, overrides of SPECIALIST)."""
    fields = text.split(":")
    if len(fields) not in (3, 4):
        raise SystemExit(f"setting {text!r}: expected NAME:INPUT_JITTER:STEPS[:KEY=VALUE,...]")
    name, jitter, steps, *rest = fields
    jitter = [float(v) for v in jitter.split(",")]
    overrides = {}
    for item in (rest[0].split(",") if rest else []):
        key, _, value = item.partition("=")
        if key in ("soup_of", "ensemble_of"):
            overrides[key] = value.split("+")
            continue
        if key in ("base_node_blend", "base_seed"):
            overrides[key] = float(value) if key == "base_node_blend" else int(value)
            continue
        if key == "bases":
            if not value:
                raise SystemExit(f"setting {text!r}: bases= needs a name (the fold bases' cache name)")
            overrides[key] = value
            continue
        if key not in SPECIALIST:
            raise SystemExit(f"setting {text!r}: unknown key {key!r}; allowed: {sorted(SPECIALIST)}, "
                             "soup_of, ensemble_of, bases, base_node_blend and base_seed")
        overrides[key] = type(SPECIALIST[key])(value)
    return name, jitter[0] if len(jitter) == 1 else jitter, int(steps), overrides


def _steps_text(jitter):
    return f"{jitter:g}" if np.ndim(jitter) == 0 else "(" + ", ".join(f"{v:g}" for v in jitter) + ")"


def _shape(base):
    """The shared model's MLP width and depth (a specialist has the same shape)."""
    kw = json.loads((Path(base) / "config.json").read_text())["arch_kwargs"]
    return {"width": kw["width"], "depth": kw["depth"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--library", default="wmbasic")
    ap.add_argument("--base", default=str(ROOT / "work" / "models" / "default_v1"),
                    help="the shared model the specialists start from (same grid nodes and split)")
    ap.add_argument("--grid", default=str(ROOT / "work" / "grid.h5"))
    ap.add_argument("--setting", nargs="+", default=["jitter0:0:6000", "jitter0.15:0.15:6000",
                                                     "jitter0.3:0.3:6000"],
                    help="NAME:INPUT_JITTER:STEPS (steps 0: the base model itself)")
    ap.add_argument("--refit-base", action="store_true",
                    help="no leak: per fold, first retrain the shared model without the fold's nodes (BASE's "
                         "recorded settings; ~9 min per fold on 2 threads), and start the fold's specialists "
                         "from it")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--fold-scheme", choices=FOLD_SCHEMES, default="random",
                    help="random (a node may be held out with a Teff neighbour), or teff-lines: no two Teff "
                         "neighbours in one fold, so an interior node whose Teff neighbours are training "
                         "nodes is scored with both known, as a test node is")
    ap.add_argument("--only-folds", type=int, nargs="+", default=None, metavar="K",
                    help="score these folds only (0-based; e.g. 0 1), for a first look at a costly lever")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default=str(ROOT / "work" / "node_cv"))
    ap.add_argument("--out", default=None,
                    help="default benchmarks/results_node_cv.md (results_node_cv_refit.md with --refit-base)")
    args = ap.parse_args(argv)
    fold_ids = list(range(args.folds)) if args.only_folds is None else sorted(set(args.only_folds))
    if not set(fold_ids) <= set(range(args.folds)):
        raise SystemExit(f"--only-folds {args.only_folds}: folds are numbered 0 to {args.folds - 1}")
    if args.out is None:
        args.out = str(HERE / ("results_node_cv_refit.md" if args.refit_base else "results_node_cv.md"))
    torch.set_num_threads(args.threads)
    grid = load_grid(args.grid)
    if args.library not in grid.library_names:
        raise SystemExit(f"unknown library {args.library!r}; the grid holds {list(grid.library_names)}")
    split = np.load(Path(args.base) / "nodes.npz")["split"]
    lib_id = list(grid.library_names).index(args.library)
    train_nodes = np.flatnonzero((split == 0) & (grid.library_id == lib_id))
    folds = folds_of(train_nodes, args.folds, scheme=args.fold_scheme, grid=grid)
    settings = [parse_setting(s) for s in args.setting]

    t0 = time.perf_counter()
    idx = np.concatenate([folds[k] for k in fold_ids])
    base_pred = np.concatenate([interpolate_grid_nodes(grid, np.setdiff1d(train_nodes, folds[k]), folds[k])
                                for k in fold_ids])
    inside = np.isfinite(base_pred).any(1)                 # inside the other folds' hull
    interior = inside & interior_nodes(grid, idx)
    test_like = inside & np.concatenate([test_like_nodes(grid, folds[k], np.setdiff1d(train_nodes, folds[k]))
                                         for k in fold_ids])

    def scores(pred):
        return sum((figures(pred[s], grid, idx[s]) for s in (inside, interior, test_like)), ())
    rows = [("linear interpolation of the other folds", scores(base_pred))]
    n_cached = 0
    for name, jitter, steps, overrides in settings:
        base_blend = overrides.pop("base_node_blend", 0.0)
        base_seed = int(overrides.pop("base_seed", 0))
        default_bases = "base" + (f"-blend{base_blend:g}" if base_blend else "") + (
            f"-seed{base_seed}" if base_seed else "")
        bases = overrides.pop("bases", default_bases)
        preds = []
        for k in fold_ids:
            fold = folds[k]
            def cache_of(setting):
                return fold_cache(args.cache, args.library, setting, args.folds, k, args.refit_base,
                                  args.fold_scheme)
            cache = cache_of(name)
            n_cached += cache.exists() or "ensemble_of" in overrides     # an ensemble trains nothing
            base = args.base
            # an output ensemble only reads cached predictions: it needs no base model
            if args.refit_base and not cache.exists() and "ensemble_of" not in overrides:
                where = f"{args.library}_{bases}_{fold_label(args.folds, k, args.fold_scheme)}"
                base = refit_base(args.base, args.grid, fold, Path(args.cache) / where,
                                  node_blend=base_blend, seed=base_seed)
            if "ensemble_of" in overrides:
                members = [cache_of(m) for m in overrides["ensemble_of"]]
                missing = [str(m) for m in members if not m.exists()]
                if missing:
                    raise SystemExit(f"ensemble_of: no cached predictions at {missing}; run those first")
                preds.append(np.exp(np.mean([np.log(np.load(m)["pred"]) for m in members], axis=0)))
            elif "soup_of" in overrides:
                preds.append(soup_prediction(grid, base, args.library, fold,
                                             [cache_of(m) for m in overrides["soup_of"]], cache))
            else:
                preds.append(fold_prediction(grid, args.grid, base, args.library, fold,
                                             np.setdiff1d(train_nodes, fold), jitter, steps, cache,
                                             **overrides))
            print(f"{name} fold {k}: done ({time.perf_counter() - t0:.0f} s)", flush=True)
        pred = np.concatenate(preds)
        combined = {"soup_of": "weight average", "ensemble_of": "output ensemble (geometric mean)"}
        kind = next((k for k in combined if k in overrides), None)
        label = (f"`{name}` ({combined[kind]} of " + ", ".join(f"`{m}`" for m in overrides[kind]) + ")"
                 if kind else
                 f"`{name}` (input jitter {_steps_text(jitter)}, {steps} steps" + "".join(
                     f", {k} {v}" for k, v in overrides.items()) + ("" if bases == "base" else
                                                                   f", fold bases `{bases}`") + (
                     f" retrained with node_blend {base_blend:g}" if base_blend else "") + (
                     f" retrained with seed {base_seed}" if base_seed else "") + ")")
        rows.append((label, scores(pred)))
    if args.refit_base:
        start = (f"from a shared model retrained without the fold's nodes (the settings of "
                 f"`{Path(args.base).name}`; `0 steps` = that model itself). **No leak**: no network saw the "
                 "nodes it is scored at.")
    else:
        start = (f"from the shared model (`{Path(args.base).name}`). **Optimistic for the network**: the "
                 "shared model was trained on these nodes (`0 steps` = the shared model itself). Even the "
                 "ranking leans towards settings that move a specialist little from the shared model (they "
                 "keep more of its memory of the fold); docs/experiments.md gives a WM-basic setting ranked "
                 "first here that was no better on the test nodes. `--refit-base` removes the leak.")
    kind = "no leak" if args.refit_base else "specialists from the shared model"
    # the baseline interpolates over the axes the library's nodes span (CM87: one [M/H], so Teff and log g)
    _, axes = node_coordinates(np.stack([np.log10(grid.teff), grid.logg, grid.logz], 1)[train_nodes])
    spanned = [name for name, kept in zip(("log g", "[M/H]"), axes[1:]) if kept]
    interp_dims = f"{axes.sum()}D" + (f" ({' and '.join(spanned)} neighbours too)" if spanned else "")
    lines = [f"## Node cross-validation: {args.library} specialists, {kind} (`benchmarks/bench_node_cv.py`)",
             "",
             f"{args.folds}-fold ({args.fold_scheme} folds"
             + ("" if args.only_folds is None else f"; folds {', '.join(map(str, fold_ids))} only") +
             f") over the library's {train_nodes.size} training "
             f"nodes ({inside.sum()} inside "
             "the other folds' hull, scored); |dF/F| pooled over all folds [%]; the test nodes are not used. "
             "Each fold's specialist is fine-tuned without the fold's nodes, " + start, "",
             f"Interior: the {interior.sum()} of them with a Teff neighbour on both sides at the same log g "
             "and [M/H], the pool the test split draws from. Test-like: the "
             f"{test_like.sum()} of those whose two Teff neighbours are both in other folds, as at a test "
             "node (at the other interior nodes a Teff neighbour was held out with the node, a wider gap for "
             "interpolation than any test node has). The interpolation is " + interp_dims + " and a fold "
             "holds out a fifth of the nodes, the test split a tenth, so even the test-like "
             "nodes have sparser neighbourhoods than the test nodes.", "",
             "| setting | median >= 3000 A | p95 >= 3000 A | UV median | interior: median | p95 | UV "
             "| test-like: median | p95 | UV |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += ["| " + label + " | " + " | ".join(f"{v:.3f}" if i % 3 == 0 else f"{v:.2f}"
                                                for i, v in enumerate(figs)) + " |"
              for label, figs in rows]
    lines += ["", f"This run: {time.perf_counter() - t0:.0f} s on {args.threads} thread(s), "
              f"{len(settings) * len(fold_ids) - n_cached} fold(s) computed and {n_cached} read from "
              f"{Path(args.cache).name}/ (a fold takes ~1 min per 6k steps on one thread)."]
    write_results(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
