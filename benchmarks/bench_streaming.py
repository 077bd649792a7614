"""Streaming 10^6 points through the default generator in bounded memory.

Runs the stream in a child process per point count and reads its peak resident memory (ru_maxrss), so
the figure is the whole process: Python, torch, the model and one batch of spectra. Memory must stay flat
as the number of points grows 10x; time should grow linearly. Writes results_streaming.md.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHILD = r"""
import json, resource, sys, time, warnings
import numpy as np, torch
torch.set_num_threads(int(sys.argv[3]))
from smnet_sps.neural import load_generator
n, batch = int(sys.argv[1]), int(sys.argv[2])
gen = load_generator(device="cpu")
rng = np.random.default_rng(1)
teff = 10 ** rng.uniform(np.log10(3000), np.log10(40000), n)
logg = rng.uniform(2.0, 5.0, n)
logz = rng.uniform(-1.5, 0.3, n)
total = 0.0
t0 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")          # random points: some lie between grid nodes' coverage
    for sl, flux, inside in gen.stream(teff, logg, logz, batch_size=batch):
        total += float(flux[:, 500].sum())   # touch the data; keep nothing
dt = time.perf_counter() - t0
rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024     # ru_maxrss is in KiB on Linux
print(json.dumps({"n": n, "seconds": dt, "maxrss_mib": rss_mib}))
"""


def run(n, batch=8192, threads=2):
    out = subprocess.run([sys.executable, "-c", CHILD, str(n), str(batch), str(threads)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    import argparse
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()     # --help; no options
    load_before = os.getloadavg()[0]
    rows = [run(n) for n in (10_000, 100_000, 1_000_000)]
    load_after = os.getloadavg()[0]
    for r in rows:
        print(r)
    text = format_results(rows, load_before, load_after)
    (HERE / "results_streaming.md").write_text(text)
    print(text)


def spectra_memory(n, n_wave=1221):
    """'9,315 MiB (9.8 GB)': what ``n`` float64 spectra of ``n_wave`` pixels take at once."""
    size = n * n_wave * 8
    return f"{size / 2**20:,.0f} MiB ({size / 1e9:,.1f} GB)"


def format_results(rows, load_before, load_after):
    """results_streaming.md from the child runs' {n, seconds, maxrss_mib} (peak RSS in MiB = 2^20 bytes)."""
    base = rows[0]
    lines = ["## Streaming 10^6 points (`benchmarks/bench_streaming.py`)", "",
             "Default model, CPU, batch 8192, 2 threads, OMP_WAIT_POLICY="
             f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}; random (Teff 3-40 kK, log g 2-5, [M/H] "
             "-1.5..0.3). Peak RSS of the whole child process (it includes the coverage lookup of all points "
             "at once, which precedes the batches). One run on the shared machine (1-minute load average "
             f"{load_before:.1f} before, {load_after:.1f} after, on {os.cpu_count()} cores).", "",
             "| points | time [s] | spectra/s | peak RSS [MiB] | RSS / RSS(10^4 points) |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['n']:,} | {r['seconds']:.1f} | {r['n'] / r['seconds']:,.0f} | "
                     f"{r['maxrss_mib']:.0f} | "
                     f"{r['maxrss_mib'] / base['maxrss_mib']:.2f} |")
    lines += ["",
              f"Holding all {rows[-1]['n']:,} spectra at once would need {spectra_memory(rows[-1]['n'])} "
              "of float64; the stream never does."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
