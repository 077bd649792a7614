"""Depth of the shared MLP: accuracy on the validation nodes and MLP throughput of models of different depth.

The models are trained beforehand with the shipped shared network's command (smnet_sps/data/default_model/
README.md), changing only ``--depth``, e.g. two at once on one thread each::

    smnet-sps train --grid work/grid.h5 --out work/models/depth3 --arch mlp --width 512 --depth 3 \\
        --batch-size 128 --lr 2e-3 --minutes 27 --threads 1 --device cpu --patience 100000 --tail-floor 1e-6
    (the same with --depth 4 --out work/models/depth4)
    python benchmarks/bench_depth.py --model work/models/depth3 --model work/models/depth4

Prints and writes ``benchmarks/results_depth.md``: per library median / p95 of |dF/F| at >= 3000 A and the UV
median on the split's validation nodes (the test nodes are not used), beside linear interpolation of the
training nodes; then each network's MLP-alone throughput, measured in interleaved rounds with the matmul peak.
"""
from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")       # as bench_generator.py: see the reason there

import numpy as np
import torch

from bench_generator import _interleaved_best, mlp_flops, one_network
from smnet_sps.evaluate import accuracy_table
from smnet_sps.generator import CoverageWarning
from smnet_sps.grid import load_grid
from smnet_sps.neural import load_generator
from results_file import write_results

HERE = Path(__file__).resolve().parent
LISTED = ("ck04", "nextgen", "basel22", "wmbasic")       # the libraries of issue 9


def validation_scores(gen, grid):
    """accuracy_table on the model's validation nodes, scored as test nodes; the test nodes are left out."""
    split = np.asarray(gen.nodes["split"])
    as_test = np.where(split == 2, -1, np.where(split == 1, 2, split))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        return accuracy_table(gen, grid, split=as_test)


def mlp_speed(gens, n=8192, rounds=6):
    """{label: spectra/s of the MLP alone} and the fp32 matmul peak [GFLOP/s], in one interleaved run."""
    x = torch.rand(n, 3 + len(next(iter(gens.values())).library_names))
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    fns = {"peak": lambda: a @ b}
    for label, gen in gens.items():
        fns[label] = (lambda net: (lambda: net(x)))(one_network(gen).net)
    with torch.no_grad():
        best = _interleaved_best(fns, rounds=rounds)
    return {label: n / best[label] for label in gens}, 2 * 2048**3 / best["peak"] / 1e9


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", default=None,
                    help="a trained mlp model directory (repeat; default work/models/depth3 and depth4)")
    ap.add_argument("--grid", default=str(HERE.parent / "work" / "grid.h5"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(HERE / "results_depth.md"))
    args = ap.parse_args(argv)
    args.model = args.model or [str(HERE.parent / "work" / "models" / f"depth{d}") for d in (3, 4)]
    missing = [m for m in args.model if not (Path(m) / "config.json").is_file()]
    if missing:
        raise SystemExit(f"no trained model at {missing}: train them first (the commands at the top of "
                         f"{Path(__file__).name})")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    grid = load_grid(args.grid)
    gens = {Path(m).name: load_generator(m, device="cpu") for m in args.model}
    for label, gen in gens.items():
        if gen.config.get("arch") != "mlp":
            raise SystemExit(f"{label}: a plain 'mlp' model is needed, not {gen.config.get('arch')!r}")
    scores = {label: validation_scores(gen, grid) for label, gen in gens.items()}
    speed, peak = mlp_speed(gens)
    first = next(iter(scores.values()))

    def cells(r):
        return f"{100 * r['median_ge3000']:.3f} / {100 * r['p95_ge3000']:.2f} / {100 * r['median_uv']:.2f}"

    lines = ["## Depth of the shared MLP (`benchmarks/bench_depth.py`)", "",
             "Median / p95 of |dF/F| at >= 3000 A and UV median (1000-3000 A), %, on the split's validation "
             "nodes (test nodes not used); interpolation: linear, of the library's training nodes.", "",
             "| model | depth | epochs (kept) | training s | " + " | ".join(LISTED)
             + " | median of the medians |",
             "|---|---|---|---|" + "---|" * len(LISTED) + "---|"]
    for label, gen in gens.items():
        tr = gen.config.get("training", {})
        med = np.median([scores[label][lib]["median_ge3000"] for lib in LISTED]) * 100
        lines.append(f"| {label} | {gen.config['arch_kwargs']['depth']} | {tr.get('epochs_run')} "
                     f"({tr.get('best_epoch')}) | {tr.get('wall_seconds', float('nan')):.0f} | "
                     + " | ".join(cells(scores[label][lib]) for lib in LISTED) + f" | {med:.3f} |")
    lines.append("| interpolation | | | | " + " | ".join(
        f"{100 * first[lib]['baseline_median_ge3000']:.3f} / {100 * first[lib]['baseline_p95_ge3000']:.2f} / "
        f"{100 * first[lib]['baseline_median_uv']:.2f}" for lib in LISTED) + " | |")
    lines += ["", "Validation nodes: " + ", ".join(f"{lib} {first[lib]['n_test']}" for lib in LISTED) + ".",
              "", f"MLP alone ({args.threads} threads, batch 8192, interleaved rounds; fp32 matmul peak "
              f"in this run {peak:.0f} GFLOP/s):", "",
              "| model | spectra/s | MFLOP/spectrum | fraction of peak | / first |", "|---|---|---|---|---|"]
    ref = next(iter(speed.values()))
    for label, gen in gens.items():
        flops = mlp_flops(gen)
        lines.append(f"| {label} | {speed[label]:,.0f} | {flops / 1e6:.2f} | "
                     f"{speed[label] * flops / 1e9 / peak:.1%} | {speed[label] / ref:.2f} |")
    lines += ["", f"This run: {time.perf_counter() - t0:.0f} s."]
    write_results(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
