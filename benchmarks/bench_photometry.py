"""Benchmark: magnitudes of 10,000 stellar spectra in 5 filters, vectorised path vs naive synphot loop.

Spectra come from the shipped default model when present, else from BlackbodyGenerator on the same
1221-pixel BaSeL wavelength grid. The naive loop (one synphot Observation + effstim per spectrum and
filter) is timed on a subset and scaled linearly to the full set; the agreement of the two paths on that
subset is reported too. Writes benchmarks/results_photometry.md.

    python benchmarks/bench_photometry.py [--n 10000] [--n-naive 200]     # 1 <= n-naive <= n
"""
import argparse
import platform
import time
from pathlib import Path

import numpy as np
from results_file import write_results

HERE = Path(__file__).resolve().parent
FILTERS = ["sdss2010-u", "sdss2010-g", "sdss2010-r", "bessell-V", "twomass-Ks"]


def _generator():
    try:
        from smnet_sps.neural import default_model_path, load_generator
        if default_model_path().exists():
            return load_generator(device="cpu")
    except Exception as exc:                       # benchmark must still run without the model
        print(f"default model unavailable ({exc}); using BlackbodyGenerator")
    from smnet_sps.generator import BlackbodyGenerator
    from smnet_sps.constants import PACKAGE_DATA
    grid = PACKAGE_DATA / "wavelength_basel1221.npy"
    return BlackbodyGenerator(wavelength=np.load(grid) if grid.exists() else None)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000, help="spectra for the vectorised path (>= 1)")
    parser.add_argument("--n-naive", type=int, default=200,
                        help="of those, how many the naive loop times (1..--n; scaled to --n)")
    args = parser.parse_args(argv)
    # more than --n timed only --n spectra but scaled as if n-naive (speed-up 2x low at --n 100 --n-naive 200)
    if args.n < 1:
        parser.error(f"--n must be >= 1, got {args.n}")
    if not 1 <= args.n_naive <= args.n:
        parser.error(f"--n-naive must be between 1 and --n ({args.n}), got {args.n_naive}")
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass
    from astropy import units as u
    from smnet_sps.photometry import _WEIGHT_CACHE, magnitudes

    rng = np.random.default_rng(1)
    gen = _generator()
    box = gen.box
    lo_t, hi_t = max(box.teff[0], 3500.0), min(box.teff[1], 30000.0)
    teff = np.exp(rng.uniform(np.log(lo_t), np.log(hi_t), args.n))
    logg = rng.uniform(1.0, 5.0, args.n)
    if np.isfinite(box.logg[0]):
        logg = np.clip(logg, *box.logg)
    logz = rng.uniform(-1.0, 0.3, args.n)
    logz = np.clip(logz, *box.logz) if np.isfinite(box.logz[0]) else np.zeros(args.n)
    t0 = time.perf_counter()
    flux, _ = gen.surface_flux(teff, logg, logz)
    t_gen = time.perf_counter() - t0
    wave = gen.wavelength * u.AA
    data = (wave, flux * u.Unit("erg s-1 cm-2 AA-1"))

    _WEIGHT_CACHE.clear()
    t0 = time.perf_counter()
    fast = magnitudes(data, FILTERS)                       # includes building the weights (cold cache)
    t_fast_cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    fast = magnitudes(data, FILTERS)
    t_fast = time.perf_counter() - t0

    m = args.n_naive
    sub = (wave, flux[:m] * u.Unit("erg s-1 cm-2 AA-1"))
    t0 = time.perf_counter()
    slow = magnitudes(sub, FILTERS, method="synphot")
    t_slow_sub = time.perf_counter() - t0
    t_slow = t_slow_sub * args.n / m
    diff = max(float(np.max(np.abs(np.asarray(fast[c][:m]) - np.asarray(slow[c])))) for c in FILTERS)

    lines = [
        "## Synthetic photometry (smnet_sps.photometry)",
        "",
        f"{args.n} spectra from `{gen.name}` ({gen.wavelength.size} px), {len(FILTERS)} filters "
        f"({', '.join(FILTERS)}), AB, one CPU thread, {platform.processor() or platform.machine()}; one run.",
        "",
        "| path | time [s] | per spectrum x filter [us] | ratio to vectorised (warm) |",
        "|---|---|---|---|",
        f"| vectorised, warm weight cache | {t_fast:.4f} | {t_fast / args.n / len(FILTERS) * 1e6:.3f} | 1 |",
        f"| vectorised, cold (builds weights) | {t_fast_cold:.4f} | "
        f"{t_fast_cold / args.n / len(FILTERS) * 1e6:.3f} | {t_fast_cold / t_fast:.1f} |",
        f"| naive synphot Observation/effstim loop (timed on {m}, scaled x{args.n / m:g}) | {t_slow:.1f} | "
        f"{t_slow / args.n / len(FILTERS) * 1e6:.0f} | {t_slow / t_fast:.0f} |",
        "",
        f"Speed-up of the vectorised path: x{t_slow / t_fast:.0f} (warm), x{t_slow / t_fast_cold:.0f} "
        f"(cold). Max |vectorised - synphot| on the {m} spectra: {diff:.1e} mag. "
        f"(Generating the spectra took {t_gen:.2f} s, not included.)",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    out = HERE / "results_photometry.md"
    write_results(out, text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
