"""Benchmark: one SSP cold / warm, the full PARSEC grid, and a per-star baseline (SPISEA-style).

Run: python benchmarks/bench_ssp.py [--threads N] [--device cpu]
Writes benchmarks/results_ssp.md. Uses the shipped default model when present, else the blackbody
generator (said so in the output). Ratios measured in one run are the meaningful figures.
"""
import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-grid", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from smnet_sps import ssp as sspmod
    from smnet_sps.backend import StellarLibraryBackend
    from smnet_sps.generator import BlackbodyGenerator
    from smnet_sps.isochrones import load_isochrones
    from smnet_sps.neural import default_model_path

    if (default_model_path() / "config.json").is_file():
        from smnet_sps.neural import load_generator
        gen = load_generator(device=args.device)
        gen_note = f"shipped default model `{gen.name}` on {args.device}"
    else:
        gen = BlackbodyGenerator()
        gen_note = "BlackbodyGenerator (the default model was not installed when this ran)"
    print("generator:", gen_note)
    lines = []

    def timeit(fn, repeat=1):
        best = np.inf
        for _ in range(repeat):
            t0 = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t0)
        return best, out

    age, Z = 10**9.5, 0.0152
    sspmod.ssp_spectrum(1e9, 0.002, generator=BlackbodyGenerator())     # imports, isochrone loading
    load_isochrones("parsec")
    backend = StellarLibraryBackend(gen)
    t_cold, spec = timeit(lambda: sspmod.ssp_spectrum(age, Z, generator=backend))
    t_warm, _ = timeit(lambda: sspmod.ssp_spectrum(age, Z, generator=backend), repeat=20)

    def point_cache_only():
        sspmod._SSP_CACHE.clear()                         # SSP memo off: weights + cached point spectra
        return sspmod.ssp_spectrum(age, Z, generator=backend)
    t_pc, _ = timeit(point_cache_only, repeat=10)

    # baseline: one generator call per star (what an SPISEA-style loop over isochrone points costs)
    iso = load_isochrones("parsec")
    plan = sspmod._plan(iso, np.log10(age), Z)
    cols = np.concatenate([np.arange(iso.rows(iz, ia).start, iso.rows(iz, ia).stop)
                           for iz, ia in sspmod._pairs(plan)])
    c = iso.columns
    lz = np.concatenate([np.full(iso.count[iz, ia], np.log10(iso.Z[iz] / iso.zsun))
                         for iz, ia in sspmod._pairs(plan)])

    def per_star():
        out = 0.0
        for i, j in enumerate(cols):
            f, _ = gen.surface_flux(10 ** c["logt"][j], c["logg"][j], lz[i])
            out = out + f[0]
        return out
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_star, _ = timeit(per_star)
    print(f"SSP cold {t_cold * 1e3:.1f} ms; warm {t_warm * 1e3:.2f} ms; warm (point cache only) "
          f"{t_pc * 1e3:.2f} ms; per-star baseline {t_star * 1e3:.0f} ms ({cols.size} stars)")
    lines += [
        "## SSP synthesis (`benchmarks/bench_ssp.py`)", "",
        f"Generator: {gen_note}. torch threads: {args.threads}. Machine: "
        f"{platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads. One run; ratios are the meaningful numbers.", "",
        "| task | time | note |", "|---|---|---|",
        f"| one SSP, cold (PARSEC, 10^9.5 yr, Z=0.0152: {len(sspmod._pairs(plan))} isochrones, {cols.size} "
        f"points) | {t_cold * 1e3:.1f} ms | one batched generator call |",
        f"| same SSP, warm | {t_warm * 1e3:.2f} ms | SSP memo (best of 20) |",
        f"| same SSP, warm point cache only | {t_pc * 1e3:.2f} ms | weights + cache lookups + one matrix "
        "product |",
        f"| same SSP, one generator call per star (SPISEA-style baseline) | {t_star * 1e3:.0f} ms | "
        f"{t_star / t_cold:.0f}x the cold batched SSP, {t_star / t_pc:.0f}x the warm one |",
    ]
    if not args.skip_grid:
        sspmod._SSP_CACHE.clear()
        t_grid, g = timeit(lambda: sspmod.ssp_grid(generator=StellarLibraryBackend(gen), progress=True))
        n = g.attrs["n_points"]
        print(f"full PARSEC grid {g.ssp_flux.shape}: {t_grid:.1f} s, {n} points, "
              f"max missing fraction {g.missing_fraction.max():.3g}")
        lines.append(f"| full PARSEC grid ({g.ssp_flux.shape[0]} Z x {g.ssp_flux.shape[1]} ages, {n} "
                     f"points) | {t_grid:.1f} s | {n / t_grid:.0f} points/s; max missing L_bol fraction "
                     f"{g.missing_fraction.max():.3g}, median {np.median(g.missing_fraction):.3g} |")
        corr = g.attrs["luminosity_correction"]
        if corr:
            lines += ["",
                      "Luminosity-conservation rescaling sigma T^4 / integral(F_lambda) over the grid's "
                      f"points: min {corr['min']:.4f}, median {corr['median']:.4f}, max {corr['max']:.4f}."]
    lines += ["", "Targets (2 cores): warm SSP < 10 ms, full grid < 1 minute.", ""]
    out = Path(__file__).with_name("results_ssp.md")
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
