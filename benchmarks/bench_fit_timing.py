"""Median wall time of one fit_star call (default settings) on generator mocks; used by bench_fit's report.

``python benchmarks/bench_fit_timing.py [--threads 2] [--n 20]`` -> benchmarks/fit_timing.json. The start grid
(cached per model) is built before the clock starts, as in any session that fits more than one star.
"""
import argparse
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from smnet_sps.fit import _cached_start_grid, fit_star, mock_star
    from smnet_sps.neural import load_generator
    gen = load_generator()
    _cached_start_grid(gen)
    rng = np.random.default_rng(11)
    times = []
    for k in range(args.n):
        t, g, z = 10 ** rng.uniform(3.62, 3.85), rng.uniform(2.0, 4.5), rng.uniform(-1.0, 0.2)
        w, f, iv, _ = mock_star(np.array([3600.0, 7400.0]), t, g, z, rng.uniform(-100, 100), snr=50,
                                generator=gen, seed=k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            fit_star(w, f, iv, generator=gen)
            times.append(time.perf_counter() - t0)
    out = {"threads": args.threads, "n": args.n, "median_seconds": float(np.median(times)),
           "min_seconds": float(np.min(times)), "load_average": os.getloadavg(), "cores": os.cpu_count()}
    (HERE / "fit_timing.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
