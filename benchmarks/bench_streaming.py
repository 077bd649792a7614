"""Streaming 10^6 points through the default generator in bounded memory.

Runs the stream in a child process per point count and reads its peak resident memory (ru_maxrss), so
the figure is the whole process: Python, torch, the model and one batch of spectra. Memory must stay flat
as the number of points grows 10x; time should grow linearly. Writes results_streaming.md.

``--quick``: 10^3 and 10^4 points in batches of 512 (seconds instead of a minute; still several batches per
run, so flat memory shows); its figures are printed and written to results_streaming_quick.md (or ``--out``),
not merged into RESULTS.md: a quick run never replaces the 10^6-point results (benchmarks/results_file.py).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

from results_file import write_results

HERE = Path(__file__).resolve().parent
FULL_SIZES, FULL_BATCH = (10_000, 100_000, 1_000_000), 8192
QUICK_SIZES, QUICK_BATCH = (1_000, 10_000), 512
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


def run(n, batch, threads=2):
    out = subprocess.run([sys.executable, "-c", CHILD, str(n), str(batch), str(threads)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help=f"{', '.join(f'{n:,}' for n in QUICK_SIZES)} points in batches of {QUICK_BATCH} "
                         f"instead of {', '.join(f'{n:,}' for n in FULL_SIZES)} in {FULL_BATCH}; written to "
                         "results_streaming_quick.md (or --out)")
    ap.add_argument("--out", default=None,
                    help="results file (default: results_streaming.md; with --quick "
                         "results_streaming_quick.md)")
    args = ap.parse_args(argv)
    out = args.out or HERE / "results_streaming.md"
    load_before = os.getloadavg()[0]
    sizes, batch = (QUICK_SIZES, QUICK_BATCH) if args.quick else (FULL_SIZES, FULL_BATCH)
    rows = [run(n, batch) for n in sizes]
    load_after = os.getloadavg()[0]
    for r in rows:
        print(r)
    text = format_results(rows, load_before, load_after, batch)
    print(text)
    # a quick run without --out: results_streaming_quick.md, the full run's file stays as it is
    print(f"wrote {write_results(out, text, quick=args.quick and not args.out)}")


def spectra_memory(n, n_wave=1221):
    """'9,315 MiB (9.8 GB)': what ``n`` float64 spectra of ``n_wave`` pixels take at once."""
    size = n * n_wave * 8
    return f"{size / 2**20:,.0f} MiB ({size / 1e9:,.1f} GB)"


def _power(n):
    """'10^6' for 1,000,000; '2,000' for what is not a power of ten."""
    k = len(str(n)) - 1
    return f"10^{k}" if n == 10 ** k else f"{n:,}"


def format_results(rows, load_before, load_after, batch=FULL_BATCH):
    """results_streaming.md from the child runs' {n, seconds, maxrss_mib} (peak RSS in MiB = 2^20 bytes)."""
    base = rows[0]
    lines = [f"## Streaming {_power(rows[-1]['n'])} points (`benchmarks/bench_streaming.py`)", "",
             f"Default model, CPU, batch {batch}, 2 threads, OMP_WAIT_POLICY="
             f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}; random (Teff 3-40 kK, log g 2-5, [M/H] "
             "-1.5..0.3). Peak RSS of the whole child process (it includes the coverage lookup of all points "
             "at once, which precedes the batches). One run on the shared machine (1-minute load average "
             f"{load_before:.1f} before, {load_after:.1f} after, on {os.cpu_count()} cores).", "",
             f"| points | time [s] | spectra/s | peak RSS [MiB] | RSS / RSS({_power(base['n'])} points) |",
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
