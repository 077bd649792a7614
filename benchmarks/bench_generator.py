"""Benchmark of the SM-Net generator stage: accuracy vs interpolation, seam smoothness, CPU throughput.

Usage::

    python benchmarks/bench_generator.py [--grid work/grid.h5] [--model DIR] [--quick]

Prints the figures and writes ``benchmarks/results_generator.md`` (accuracy, seams) and
``benchmarks/results_generator_throughput.md`` (end-to-end surface_flux vs the MLP alone, low-precision
accuracy; ``--quick``, without the released-size model: ``results_generator_throughput_quick.md``, not merged
into RESULTS.md, benchmarks/results_file.py). Throughput ratios (achieved GFLOP/s over torch's fp32 matmul
peak) are measured in the same run; absolute times are noisy on a shared machine. ``--throughput-only``
skips the accuracy part, ``--accuracy-only`` the throughput part. Without ``--throughput-only`` the grid must
exist and have the model's nodes (else an error, and results_generator.md is left as it is).
"""
from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

# On a shared machine OpenMP's default spin-waiting lets an idle worker thread compete with the main thread
# for the same cores; passive waiting was measured 15-100x faster for single spectra at 2 threads under load
# 10. Must be set before torch starts OpenMP; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch

from smnet_sps.evaluate import (
    accuracy_table,
    format_accuracy_table,
    grid_split_applies,
    grid_split_note,
    matmul_peak_gflops,
    seam_report,
    throughput,
)
from smnet_sps.generator import CoverageWarning
from smnet_sps.model import SMNet
from smnet_sps.neural import load_generator
from results_file import write_results

HERE = Path(__file__).parent


def _threads(n):
    return f"{n} thread{'' if n == 1 else 's'}"


def _experts_note(cfg):
    """For a library-expert model: the shared network's training (above) plus each specialist's."""
    experts = cfg.get("experts")
    if not experts:
        return ""
    def part(lib, d):
        stages = d.get("earlier_stages", []) + [d]      # a specialist may continue earlier runs of itself
        epochs = " + ".join(str(st["training"]["epochs_run"]) for st in stages)
        minutes = " + ".join(f"{st['training']['wall_seconds'] / 60:.0f}" for st in stages)
        # each stage's own thread count, as train recorded it (the WM-basic expert ran on 2: "1 thread
        # each" was written here for all of them)
        threads = [st["training"].get("torch_threads") for st in stages]
        text = f"{lib} {epochs} epochs in {minutes} min"
        if None not in threads:
            text += " on " + (_threads(threads[0]) if len(set(threads)) == 1
                              else " + ".join(map(str, threads)) + " threads")
        if d.get("input_jitter"):
            last = " in the last stage" if len(stages) > 1 else ""
            j = d["input_jitter"]
            if isinstance(j, (int, float)):
                j = f"{j:g}"
            else:
                j = "(" + ", ".join(f"{v:g}" for v in j) + ") in Teff, log g, [M/H]"
            text += f" (input jitter {j}{last})"
        return text
    parts = [part(lib, d) for lib, d in experts["libraries"].items()]
    return (" That is the shared network; library specialists fine-tuned from it: "
            + "; ".join(parts) + f"; weights stored as {experts.get('weights_dtype', 'float32')}.")


def one_network(gen):
    """The MLP one network pass runs (for a library-expert model: one expert; all have the same shape)."""
    model = gen._model
    return model.experts[0] if hasattr(model, "experts") else model


def mlp_flops(gen):
    """2 x multiply-adds of one MLP forward pass."""
    n = 0
    for m in one_network(gen).modules():
        if isinstance(m, torch.nn.Linear):
            n += m.in_features * m.out_features
    return 2.0 * n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--grid", default=str(HERE.parent / "work" / "grid.h5"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true",
                    help="skip the released-size (B=1024) model; the throughput table goes to "
                         "results_generator_throughput_quick.md (not merged), the full one is left as it is")
    ap.add_argument("--throughput-only", action="store_true",
                    help="only the throughput section (results_generator_throughput.md)")
    ap.add_argument("--accuracy-only", action="store_true",
                    help="only the accuracy and seam sections (results_generator.md)")
    args = ap.parse_args(argv)
    if args.throughput_only and args.accuracy_only:
        ap.error("--throughput-only and --accuracy-only exclude each other")
    # a missing grid used to skip the accuracy and seam tables silently and rewrite results_generator.md
    # with its heading only (which run_all.py then merged)
    if not args.throughput_only and not Path(args.grid).is_file():
        ap.error(f"--grid {args.grid}: no such file; the accuracy and seam sections need the union grid the "
                 "model was trained on (build it with `smnet-sps grid build --libraries DIR --out "
                 "work/grid.h5`, docs/grid.md), or pass --throughput-only")
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", CoverageWarning)
    out = ["## Generator (SM-Net stage)", ""]
    gen = load_generator(args.model, device="cpu")
    cfg = gen.config
    size_mb = sum(f.stat().st_size for f in Path(gen.directory).iterdir() if f.name != "checkpoint.pt") / 1e6
    out += [f"Model `{gen.name}`: {cfg['arch']} {cfg['arch_kwargs']}, {size_mb:.1f} MB on disk, trained "
            f"{cfg['training']['epochs_run']} epochs in {cfg['training']['wall_seconds'] / 60:.1f} min on "
            f"{cfg['training']['device']} ({_threads(cfg['training']['torch_threads'])}); split "
            f"{cfg['split']['n_train']} train / {cfg['split']['n_val']} val / {cfg['split']['n_test']} test "
            "nodes." + _experts_note(cfg), ""]

    grid = None
    if not args.throughput_only:
        from smnet_sps.train import read_grid
        grid = read_grid(args.grid)
        applies = grid_split_applies(gen, grid)
        note = grid_split_note(applies, args.grid)
        if applies is None:       # no table could be made: keep the results file as it is
            raise SystemExit(f"bench_generator.py: {note}; results_generator.md left unchanged")
        if note:
            out += [note, ""]
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

    if not args.throughput_only:
        write_results(HERE / "results_generator.md", "\n".join(out) + "\n")
        print(f"wrote {HERE / 'results_generator.md'}")
    if not args.accuracy_only:
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


def _interleaved_best(fns, rounds=4):
    """Best wall time of each callable, measured in interleaved rounds so that load swings hit all alike."""
    best = {k: np.inf for k in fns}
    for f in fns.values():
        f()                                            # warm-up
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def throughput_section(gen, args):
    """End-to-end surface_flux vs the MLP alone, in one run; low-precision accuracy; released-size SMNet."""
    out = []
    for threads in sorted({1, args.threads}):
        torch.set_num_threads(threads)
        out += throughput_table(gen)
    peak = matmul_peak_gflops()
    out += low_precision_table(gen)
    out += ["### SM-Net architectures (network only)", "",
            "| model | batch | spectra/s | GFLOP/s | fraction of peak |",
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
                sps = throughput(lambda b, m=m, xb=xb: m(xb[:b]), batch, repeats=2, min_time=0.3)
            out.append(f"| {label} | {batch} | {sps:,.1f} | {sps * flops / 1e9:.1f} | "
                       f"{sps * flops / 1e9 / peak:.1%} |")
            print(out[-1])
    out.append("")
    text = "## Generator throughput (`benchmarks/bench_generator.py`)\n\n" + "\n".join(out) + "\n"
    # --quick leaves out a row: results_generator_throughput_quick.md, the full table stays as it is
    path = write_results(HERE / "results_generator_throughput.md", text, quick=args.quick)
    print(f"wrote {path}")


def _old_path():
    """The pre-torch forward path and coverage rule (kept in tests/ as the reference), for a same-run
    ratio."""
    import sys
    tests = HERE.parent / "tests"
    if not (tests / "_reference_old.py").is_file():
        return None
    sys.path.insert(0, str(tests))
    from _reference_old import old_in_coverage, old_surface_flux

    def run(gen, teff, logg, logz):
        old_in_coverage(gen, teff, logg, logz)
        return old_surface_flux(gen, teff, logg, logz)
    return run


def throughput_table(gen):
    n = 8192
    load = os.getloadavg()
    fl = mlp_flops(gen)
    x = torch.rand(n, 3 + len(gen.library_names))
    net = one_network(gen).net
    a_mat, b_mat = torch.randn(2048, 2048), torch.randn(2048, 2048)
    # fresh random points per call (so the remembered coverage answer never helps), a CK04-only strip
    sets = [random_stars(n, seed) for seed in range(8)]
    counter = iter(range(10**6))
    one = (np.full(n, 5000.0) + np.linspace(0, 15000, n), np.full(n, 4.0), np.full(n, -1.0))
    passes = float(np.mean([(gen.mixture(*s_) > 0).sum(1).mean() for s_ in sets]))

    def fresh():
        return sets[next(counter) % len(sets)]

    def fresh_one():
        k = next(counter)
        return (one[0] * (1 + 1e-9 * k), one[1], one[2])

    fns = {"peak": lambda: a_mat @ b_mat, "mlp": lambda: net(x),
           "random": lambda: gen.surface_flux(*fresh()),
           "random_tensor": lambda: gen.surface_flux(*fresh(), as_tensor=True),
           "one": lambda: gen.surface_flux(*fresh_one()),
           "one_tensor": lambda: gen.surface_flux(*fresh_one(), as_tensor=True)}
    old = _old_path()
    if old is not None:
        fns["old"] = lambda: old(gen, *fresh())
    with torch.no_grad():
        best = _interleaved_best(fns)
    peak = 2 * 2048**3 / best["peak"] / 1e9
    sps_mlp = n / best["mlp"]
    out = [f"### CPU throughput ({torch.get_num_threads()} threads, "
           f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; torch fp32 matmul peak measured in this "
           f"run: {peak:.0f} GFLOP/s; load average at start {load[0]:.1f} on {os.cpu_count()} cores)", "",
           "The machine was shared with training runs and other sessions (load average above): every figure "
           "in this table comes from one run, measured in interleaved rounds (best of 4 each), so compare "
           "the ratios, not absolute rates. *Fraction of peak* counts one MLP pass per spectrum; points in "
           "library overlaps need one pass per library (*MLP passes/spectrum*), so the last column also "
           "gives the rate per network pass. Fresh points each call (the coverage lookup is never a "
           "remembered answer).", "",
           "| what | batch | spectra/s | MLP passes/spectrum | fraction of peak | / MLP alone | "
           "network passes/s / MLP alone |", "|---|---|---|---|---|---|---|"]

    def row(label, batch, sps, pp=1.0):
        out.append(f"| {label} | {batch} | {sps:,.0f} | {pp:.2f} | {sps * fl / 1e9 / peak:.1%} | "
                   f"{sps / sps_mlp:.2f} | {sps * pp / sps_mlp:.2f} |")
        print(out[-1])

    row("MLP alone (one network, no post-processing)", n, sps_mlp)
    row("surface_flux, random stars (issue 11 sample; library mixture)", n, n / best["random"], passes)
    row("surface_flux(as_tensor=True), random stars", n, n / best["random_tensor"], passes)
    row("surface_flux, CK04-only strip (5-20 kK, log g 4, [M/H] -1)", n, n / best["one"])
    row("surface_flux(as_tensor=True), CK04-only strip", n, n / best["one_tensor"])
    if "old" in best:
        row("previous numpy path (tests/_reference_old.py: coverage + forward), random stars", n,
            n / best["old"],
            passes)
    small = {b: (lambda b=b: gen.surface_flux(*[a[:b] for a in fresh()], batch_size=b))
             for b in (1, 64, 1024)}
    best_small = _interleaved_best(small, rounds=3)
    for b, t in best_small.items():
        row("surface_flux, random stars", b, b / t,
            float((gen.mixture(*[a[:b] for a in sets[0]]) > 0).sum(1).mean()))
    teff, logg, logz = sets[0]
    t_cov = _best_time(lambda: gen._in_coverage(teff, logg, logz))
    t_mix = _best_time(lambda: gen.mixture(teff, logg, logz))
    hold = ""
    if hasattr(gen, "_held_inputs"):
        # the hold on each library's node hull and the tail lookup (qhull point location, hull projection):
        # host-side too, and once the largest of these stages (161 ms per 8192 points before 2026-12-03)
        mix = gen.mixture(teff, logg, logz)
        t_hold = _best_time(lambda: gen._held_inputs(teff, logg, logz, mix))
        hold = (f", hold on the libraries' node hulls and tail lookup {t_hold * 1e3:.1f} ms (qhull point "
                "location of the points inside each hull, projection of those outside)")
    out += ["", f"Host-side stages per {n} random points: coverage lookup {t_cov * 1e3:.1f} ms (per library "
            "whose box holds points, a k=1 k-d tree query bounded by its nodes' largest reach, k=16 only for "
            "the undecided points), mixture "
            f"weights {t_mix * 1e3:.1f} ms{hold}. Everything else (scaling, network, blend, tail fill, "
            "blackbody, exponentiation, sigma T^4) runs in torch on the generator's device, one transfer in "
            "and one out per batch.", ""]

    return out


def _low_precision_hardware():
    """What this CPU offers for bf16 / fp16 matmuls, from its flags (Linux), in words."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "CPU flags unknown"
    have = [name for flag, name in (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16"),
                                    ("avx512_fp16", "AVX512-FP16")) if flag in flags]
    return "native " + ", ".join(have) if have else "no native bf16/fp16 matmul here"


def low_precision_table(gen):
    n = 8192
    teff, logg, logz = random_stars(n)
    out = ["### Low-precision compute (`dtype=`) vs float32", "",
            f"{n} random stars; |F/F_fp32 - 1| over all pixels, and over pixels brighter than 1e-4 of each "
            "spectrum's peak. The network runs in the low precision; blend, blackbody and exponentiation "
            f"stay float32. Speed ratio on this CPU ({_low_precision_hardware()}; meant for "
            "accelerators).", "",
            "| dtype | median (all) | p99 (all) | max (all) | median (> 1e-4 peak) | p99 (> 1e-4 peak) | "
            "max (> 1e-4 peak) | spectra/s / fp32 |", "|---|---|---|---|---|---|---|---|"]
    ref, _ = gen.surface_flux(teff, logg, logz)
    bright = ref > 1e-4 * ref.max(1, keepdims=True)
    speed = _interleaved_best({dt: (lambda dt=dt: gen.surface_flux(teff, logg, logz, dtype=dt))
                               for dt in ("float32", "bfloat16", "float16")}, rounds=2)
    for dt in ("bfloat16", "float16"):
        low, _ = gen.surface_flux(teff, logg, logz, dtype=dt)
        rel = np.abs(low / ref - 1)
        out.append(f"| {dt} | {np.median(rel):.2e} | {np.percentile(rel, 99):.2e} | {rel.max():.2e} | "
                   f"{np.median(rel[bright]):.2e} | {np.percentile(rel[bright], 99):.2e} | "
                   f"{rel[bright].max():.2e} | {speed['float32'] / speed[dt]:.2f} |")
        print(out[-1])
    out.append("")
    if torch.cuda.is_available():
        out.append("CUDA available: run `tests/test_forward_torch.py::test_cuda_path_matches_cpu`.")
    else:
        out += ["GPU: untested (no CUDA device on this machine); `tests/test_forward_torch.py::"
                "test_cuda_path_matches_cpu` runs where CUDA exists. SM-Net's published figure is > 14,000 "
                "spectra/s on one GPU for the released B = 1024 model.", ""]

    return out


if __name__ == "__main__":
    main()
