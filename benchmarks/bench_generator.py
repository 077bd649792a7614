"""Benchmark of the SM-Net generator stage: accuracy vs interpolation, seam smoothness, CPU throughput.

Usage::

    python benchmarks/bench_generator.py [--grid work/grid.h5] [--model DIR] [--quick]

Prints the figures and writes ``benchmarks/results_generator.md`` (accuracy, seams) and
``benchmarks/results_generator_throughput.md`` (end-to-end surface_flux vs the MLP alone, low-precision
accuracy). Throughput ratios (achieved GFLOP/s over torch's fp32 matmul peak) are measured in the same run;
absolute times are noisy on a shared machine. ``--throughput-only`` skips the accuracy part.
"""
from __future__ import annotations

import argparse
import os
import time
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
    ap.add_argument("--throughput-only", action="store_true",
                    help="only the throughput section (results_generator_throughput.md)")
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
            f"{cfg['split']['n_train']} train / {cfg['split']['n_val']} val / {cfg['split']['n_test']} test nodes.", ""]

    grid = None
    if Path(args.grid).is_file() and not args.throughput_only:
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
                    "Baseline = linear interpolation of the same library's training nodes in (log Teff, log g, [M/H]).",
                    "", format_accuracy_table(table), ""]
            print(label)
            print(format_accuracy_table(table))
        seams = seam_report(gen, grid)
        out += ["### Seam smoothness (Teff sweeps in 1 % steps; jump = mean |d ln F| over 3000-10000 A)", "",
                "| sweep | log g | [M/H] | model max jump (at Teff) | model median | raw max jump | raw jump at "
                "library switch (Teff) |", "|---|---|---|---|---|---|---|"]
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

    if not args.throughput_only:
        (HERE / "results_generator.md").write_text("\n".join(out) + "\n")
        print(f"wrote {HERE / 'results_generator.md'}")
    throughput_section(gen, args)


def _best_time(fn, repeats=3):
    fn()
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def random_stars(n, seed=0):
    """Random points as in issue 11: Teff 3-40 kK (log-uniform), log g 2-5, [M/H] -1.5..0.3."""
    rng = np.random.default_rng(seed)
    return (10 ** rng.uniform(np.log10(3000), np.log10(40000), n), rng.uniform(2.0, 5.0, n),
            rng.uniform(-1.5, 0.3, n))


def throughput_section(gen, args):
    """End-to-end surface_flux vs the MLP alone, in one run; low-precision accuracy; released-size SMNet."""
    n = 8192
    peak = matmul_peak_gflops()
    load = os.getloadavg()
    fl = mlp_flops(gen)
    out = [f"### CPU throughput ({torch.get_num_threads()} threads; torch fp32 matmul peak measured in this run: "
           f"{peak:.0f} GFLOP/s; load average at start {load[0]:.1f} on {os.cpu_count()} cores)", "",
           "The machine was shared with training runs and other sessions: compare the ratios within this table "
           "(all from one run), not absolute rates. *Fraction of peak* counts one MLP pass per spectrum; "
           "*MLP passes/spectrum* is how many the library blend needed (points in library overlaps get one "
           "pass per library).", "",
           "| what | batch | spectra/s | MLP passes/spectrum | GFLOP/s | fraction of peak | / MLP alone |",
           "|---|---|---|---|---|---|---|"]
    print(out[0])
    x = torch.rand(n, 3 + len(gen.library_names))
    with torch.no_grad():
        t_mlp = _best_time(lambda: gen._model.net(x))
    sps_mlp = n / t_mlp

    def row(label, batch, sps, passes=1.0):
        gf = sps * fl / 1e9
        out.append(f"| {label} | {batch} | {sps:,.0f} | {passes:.2f} | {gf:.1f} | {gf / peak:.1%} | "
                   f"{sps / sps_mlp:.2f} |")
        print(out[-1])

    row("MLP alone (gen._model.net, no post-processing)", n, sps_mlp)
    teff, logg, logz = random_stars(n)
    one = (np.full(n, 5000.0) + np.linspace(0, 15000, n), np.full(n, 4.0), np.full(n, -1.0))   # CK04 only
    passes = float((gen.mixture(teff, logg, logz) > 0).sum(1).mean())
    for label, pts, lib, pp in (("surface_flux, random stars (issue 11 sample; mixture)", (teff, logg, logz),
                                 None, passes),
                                ("surface_flux, CK04-only region (one pass each)", one, None, 1.0),
                                ("surface_flux(..., as_tensor=True), random stars", (teff, logg, logz), "tensor",
                                 passes)):
        t = _best_time(lambda: gen.surface_flux(*pts, as_tensor=lib == "tensor"))
        row(label, n, n / t, pp)
        if lib is None and pp > 1:
            out.append(f"| same, counting the {pp:.2f} MLP passes per spectrum | {n} | {n / t * pp:,.0f} "
                       f"| - | {n / t * pp * fl / 1e9:.1f} | {n / t * pp * fl / 1e9 / peak:.1%} | "
                       f"{n / t * pp / sps_mlp:.2f} |")
            print(out[-1])
    for batch in (1, 64, 1024):
        t = _best_time(lambda: gen.surface_flux(teff[:batch], logg[:batch], logz[:batch], batch_size=batch))
        row("surface_flux, random stars", batch, batch / t,
            float((gen.mixture(teff[:batch], logg[:batch], logz[:batch]) > 0).sum(1).mean()))
    # stages on the host (per 8192 random points)
    t_cov = _best_time(lambda: gen._in_coverage(teff, logg, logz))
    t_mix = _best_time(lambda: gen.mixture(teff, logg, logz))
    out += ["", f"Host-side stages per {n} random points: coverage lookup {t_cov * 1e3:.1f} ms (one k=1 k-d tree "
            f"query, k=16 only for undecided points; remembered per call), mixture weights {t_mix * 1e3:.1f} ms. "
            "Everything else (scaling, network, blend, blackbody, 10**x, sigma T^4) runs in torch on the "
            "generator's device, with one transfer in and one out per batch.", ""]

    # low precision vs float32
    out += ["### Low-precision compute (`dtype=`) vs float32", "",
            f"{n} random stars; relative flux difference |F/F_fp32 - 1| over all pixels, and over pixels brighter "
            "than 1e-4 of each spectrum's peak. Network in the low precision; blend, blackbody and exponentiation "
            "stay float32.", "",
            "| dtype | median (all) | p99 (all) | max (all) | median (> 1e-4 peak) | max (> 1e-4 peak) | "
            "spectra/s / fp32 (this CPU) |", "|---|---|---|---|---|---|---|"]
    ref, _ = gen.surface_flux(teff, logg, logz)
    t_ref = _best_time(lambda: gen.surface_flux(teff, logg, logz), repeats=2)
    bright = ref > 1e-4 * ref.max(1, keepdims=True)
    for dt in ("bfloat16", "float16"):
        low, _ = gen.surface_flux(teff, logg, logz, dtype=dt)
        rel = np.abs(low / ref - 1)
        t_low = _best_time(lambda: gen.surface_flux(teff, logg, logz, dtype=dt), repeats=2)
        out.append(f"| {dt} | {np.median(rel):.2e} | {np.percentile(rel, 99):.2e} | {rel.max():.2e} | "
                   f"{np.median(rel[bright]):.2e} | {rel[bright].max():.2e} | {t_ref / t_low:.2f} |")
        print(out[-1])
    out.append("")
    if torch.cuda.is_available():
        out.append("CUDA: see the GPU table (run on a GPU machine).")
    else:
        out += ["GPU: untested here (no CUDA device on this machine); `tests/test_forward_torch.py::"
                "test_cuda_path_matches_cpu` runs where CUDA exists. SM-Net's published figure is > 14,000 "
                "spectra/s on one GPU for the released B = 1024 model.", ""]

    out += ["### SM-Net architectures (network only)", "", "| model | batch | spectra/s | GFLOP/s | fraction of peak |",
            "|---|---|---|---|---|"]
    models = [("compact SMNet B=256, L=1221", 256, 1221, (16, 256))]
    if not args.quick:
        models.append(("released-size SMNet B=1024, L=11655 (random weights)", 1024, 11655, (2, 8)))
    for label, B, L, batches in models:
        m = SMNet(B, L).eval()
        flops = m.flops_per_spectrum()
        for batch in batches:
            xb = torch.rand(batch, 3)
            with torch.no_grad():
                sps = throughput(lambda b: m(xb[:b]), batch, repeats=2, min_time=0.3)
            out.append(f"| {label} | {batch} | {sps:,.1f} | {sps * flops / 1e9:.1f} | {sps * flops / 1e9 / peak:.1%} |")
            print(out[-1])
        del m
    out.append("")
    text = "## Generator throughput (`benchmarks/bench_generator.py`)\n\n" + "\n".join(out) + "\n"
    (HERE / "results_generator_throughput.md").write_text(text)
    print(f"wrote {HERE / 'results_generator_throughput.md'}")


if __name__ == "__main__":
    main()
