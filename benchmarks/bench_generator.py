"""Benchmark of the SM-Net generator stage: accuracy vs interpolation, seam smoothness, CPU throughput.

Usage::

    python benchmarks/bench_generator.py [--grid work/grid.h5] [--model DIR] [--quick]

Prints the figures and writes ``benchmarks/results_generator.md``. Throughput ratios (achieved GFLOP/s over
torch's fp32 matmul peak) are measured in the same run; absolute times are noisy on a shared machine.
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch

from smnet_sps.evaluate import (accuracy_table, format_accuracy_table, matmul_peak_gflops, seam_report,
                                throughput)
from smnet_sps.generator import CoverageWarning
from smnet_sps.model import SMNet
from smnet_sps.neural import load_generator

HERE = Path(__file__).parent


def mlp_flops(gen):
    """2 x multiply-adds of one MLP forward pass."""
    n = 0
    for m in gen._model.modules():
        if isinstance(m, torch.nn.Linear):
            n += m.in_features * m.out_features
    return 2.0 * n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--grid", default=str(HERE.parent / "work" / "grid.h5"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="skip the released-size (B=1024) model")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", CoverageWarning)
    out = ["## Generator (SM-Net stage)", ""]
    gen = load_generator(args.model, device="cpu")
    cfg = gen.config
    size_mb = sum(f.stat().st_size for f in Path(gen.directory).iterdir() if f.name != "checkpoint.pt") / 1e6
    out += [f"Model `{gen.name}`: {cfg['arch']} {cfg['arch_kwargs']}, {size_mb:.1f} MB on disk, trained "
            f"{cfg['training']['epochs_run']} epochs in {cfg['training']['wall_seconds'] / 60:.1f} min on "
            f"{cfg['training']['device']} ({cfg['training']['torch_threads']} threads); split "
            f"{cfg['split']['n_train']} train / {cfg['split']['n_val']} val / {cfg['split']['n_test']} test "
            "nodes.", ""]

    grid = None
    if Path(args.grid).is_file():
        from smnet_sps.train import read_grid
        grid = read_grid(args.grid)
        if grid.sha256 != cfg.get("grid_sha256"):
            out += [f"(grid {args.grid} differs from the training grid; accuracy skipped)", ""]
            grid = None
    if grid is not None:
        renorm = load_generator(args.model, device="cpu", renormalise=True)
        for label, g in (("default generator: raw network output (renormalise=False)", gen),
                         ("renormalise=True (each spectrum rescaled to sigma Teff^4)", renorm)):
            table = accuracy_table(g, grid)
            out += [f"### Accuracy on held-out interior grid nodes, {label}", "",
                    "1,000-25,000 A (and >= 3000 A), pixels > 1e-4 of peak; library= the node's library. "
                    "Baseline = linear interpolation of the same library's training nodes in (log Teff, log "
                    "g, [M/H]).",
                    "", format_accuracy_table(table), ""]
            print(label)
            print(format_accuracy_table(table))
        seams = seam_report(gen, grid)
        out += ["### Seam smoothness (Teff sweeps in 1 % steps; jump = mean |d ln F| over 3000-10000 A)", "",
                "| sweep | log g | [M/H] | model max jump (at Teff) | model median | raw max jump | raw "
                "jump at library switch (Teff) |", "|---|---|---|---|---|---|---|"]
        for r in seams:
            if r.get("skipped"):
                out.append(f"| {r['sweep']} | {r.get('logg', '-')} | {r.get('logz', '-')} | not built: "
                           f"{r['skipped']} | - | - | - |")
                continue
            sw = ", ".join(f"{j:.4f} ({t:.0f} K)" for j, t in zip(r["raw_jump_at_library_switch"],
                                                                  r["library_switches_at_teff"])) or "-"
            raw = f"{r['raw_max_jump']:.4f}" if r["raw_max_jump"] is not None else "-"
            out.append(f"| {r['sweep']} | {r['logg']} | {r['logz']} | {r['model_max_jump']:.4f} "
                       f"({r['model_max_at_teff']:.0f} K) | {r['model_median_jump']:.4f} | {raw} | {sw} |")
            print(r)
        out.append("")

    # ---- throughput ----------------------------------------------------------------------------
    peak = matmul_peak_gflops()
    out += [f"### CPU throughput ({torch.get_num_threads()} threads; torch fp32 matmul peak measured in "
            f"this run: {peak:.0f} GFLOP/s)", "",
            "| model | batch | spectra/s | GFLOP/s | fraction of peak |",
            "|---|---|---|---|---|"]
    print(f"matmul peak {peak:.1f} GFLOP/s")
    rng = np.random.default_rng(0)
    fl = mlp_flops(gen)
    for batch in (1, 64, 1024, 8192):
        t = rng.uniform(4000, 30000, batch)
        sps = throughput(lambda b: gen._surface_flux_batch(t[:b], np.full(b, 4.0), np.zeros(b)), batch)
        out.append(f"| default ({cfg['arch']}) incl. scaling to F_lambda | {batch} | {sps:,.0f} | "
                   f"{sps * fl / 1e9:.1f} | {sps * fl / 1e9 / peak:.1%} |")
        print(out[-1])
    models = [("compact SMNet B=256, L=1221", 256, 1221, (16, 256))]
    if not args.quick:
        models.append(("released-size SMNet B=1024, L=11655 (random weights)", 1024, 11655, (2, 8)))
    for label, B, L, batches in models:
        m = SMNet(B, L).eval()
        flops = m.flops_per_spectrum()
        for batch in batches:
            x = torch.rand(batch, 3)
            with torch.no_grad():
                sps = throughput(lambda b, m=m, x=x: m(x[:b]), batch, repeats=2, min_time=0.3)
            out.append(f"| {label} | {batch} | {sps:,.1f} | {sps * flops / 1e9:.1f} | "
                       f"{sps * flops / 1e9 / peak:.1%} |")
            print(out[-1])
        del m
    out.append("")
    (HERE / "results_generator.md").write_text("\n".join(out) + "\n")
    print(f"wrote {HERE / 'results_generator.md'}")


if __name__ == "__main__":
    main()
