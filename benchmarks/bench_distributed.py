"""smnet_sps.distributed on a LocalCluster: 1 -> 2 workers, bounded memory per worker, a 10^9-star estimate.

1. Scaling: the same star-photometry run (and a small SSP grid family) on a fresh LocalCluster of 1 and of 2
   worker processes (1 thread each), after a warm-up that loads the generator on every worker.
2. Memory: magnitudes of N stars for growing N on 2 workers, each size on a fresh cluster; peak RSS of each
   worker process (ru_maxrss read inside the worker after the run). It must not grow with N.
3. Estimate of a 10^9-star run from the measured per-chunk cost.

Usage: python benchmarks/bench_distributed.py [--sizes 20000,200000,1000000] [--chunk-rows 50000]
Writes results_distributed.md (benchmarks/run_all.py merges it into RESULTS.md).
"""
import argparse
import json
import math
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import results_file

os.environ.setdefault("OMP_NUM_THREADS", "1")
HERE = Path(__file__).resolve().parent
# results_distributed.json written before the run recorded its CPU count: the 2-core machine it names
LEGACY_CORES = 2
FILTERS = ["sdss2010-u", "sdss2010-g", "sdss2010-r", "sdss2010-i", "sdss2010-z"]


def _warm():
    from smnet_sps.distributed import worker_generator
    worker_generator(None, "auto")           # the model, once per worker (what every task then reuses)
    return 0


def stars(n, seed=1, chunks=100_000):
    """Random stars (Teff 3.2-30 kK, log g 1-5, [M/H] -2..0.4, L 1e-3-1e4 L_sun) as a Dask array (n, 4)."""
    import dask.array as da
    rs = da.random.RandomState(seed)
    chunks = min(n, chunks)
    teff = 10 ** rs.uniform(np.log10(3200), np.log10(30000), size=n, chunks=chunks)
    logg = rs.uniform(1.0, 5.0, size=n, chunks=chunks)
    logz = rs.uniform(-2.0, 0.4, size=n, chunks=chunks)
    lum = 10 ** rs.uniform(-3, 4, size=n, chunks=chunks)
    return da.stack([teff, logg, logz, lum], axis=1)     # generated on the workers: the client holds nothing


def worker_maxrss_mib(client):
    """Peak RSS of each worker [MiB] (ru_maxrss is in KiB on Linux)."""
    return sorted(client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024).values())


def run_mags(n_workers, n, chunk_rows, batch_size, tmp):
    from distributed import Client
    from smnet_sps import distributed as D
    cluster = D.local_cluster(n_workers, dashboard=False)
    client = Client(cluster)
    try:
        # warm-up: every worker loads the model and the filters once
        client.run(_warm)
        D.write_points(stars(200 * n_workers, seed=99), tmp / f"warm{n_workers}_{n}.zarr", FILTERS,
                       client=client, chunk_rows=200, batch_size=batch_size, progress=False)
        rss_warm = worker_maxrss_mib(client)
        t0 = time.perf_counter()
        run = D.write_points(stars(n, chunks=chunk_rows), tmp / f"mags{n_workers}_{n}.zarr", FILTERS,
                             client=client, chunk_rows=chunk_rows, batch_size=batch_size, progress=False)
        wall = time.perf_counter() - t0
        rss = worker_maxrss_mib(client)
        mags, inside, _ = D.load_points_store(run.stores[0]) if n <= 2_000_000 else (None, None, None)
        ok = None if mags is None else bool(np.isfinite(mags).all())
        return {"workers": n_workers, "n": n, "wall": wall, "chunks": run.n_computed, "rss": rss,
                "rss_warm": rss_warm, "finite": ok}
    finally:
        client.close()
        cluster.close()
        shutil.rmtree(tmp / f"mags{n_workers}_{n}.zarr", ignore_errors=True)


def run_ssp(n_workers, tmp):
    from distributed import Client
    from smnet_sps import distributed as D
    ages = np.geomspace(1e7, 1.2e10, 12)
    configs = [("parsec", imf, None, ages, [0.002, 0.0152]) for imf in ("kroupa", "salpeter")]
    cluster = D.local_cluster(n_workers, dashboard=False)
    client = Client(cluster)
    try:
        client.run(_warm)
        t0 = time.perf_counter()
        run = D.ssp_grids(configs, client=client, store=tmp / f"ssp{n_workers}", progress=False)
        return {"workers": n_workers, "wall": time.perf_counter() - t0, "tasks": run.n_computed}
    finally:
        client.close()
        cluster.close()


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="20000,200000,1000000")
    ap.add_argument("--scaling-n", type=int, default=40_000)
    ap.add_argument("--chunk-rows", type=int, default=20_000)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--skip-ssp", action="store_true")
    ap.add_argument("--ssp-only", action="store_true", help="rerun only the SSP rows (updates the JSON)")
    ap.add_argument("--rewrite", action="store_true",
                    help="only rewrite the .md from results_distributed.json")
    args = ap.parse_args(argv)
    if args.ssp_only:          # rerun the SSP scaling rows only, into the saved raw numbers
        raw = json.loads((HERE / "results_distributed.json").read_text())
        tmp = Path(tempfile.mkdtemp(prefix="bench_distributed_"))
        raw.setdefault("ssp_before_grouping", raw["ssp"])
        try:
            raw["ssp"] = [run_ssp(w, tmp) for w in (1, 2)]
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        raw["ssp_note"] = (f"SSP rows rerun on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load "
                           f"{os.getloadavg()[0]:.1f}")
        (HERE / "results_distributed.json").write_text(json.dumps(raw, indent=1))
        args.rewrite = True
    if args.rewrite:
        raw = json.loads((HERE / "results_distributed.json").read_text())
        args = argparse.Namespace(**raw["args"])
        return write_results(args, raw["scaling"], raw["ssp"], raw["memory"], raw["load"], raw["load_after"],
                             raw.get("ssp_note"), raw.get("ssp_before_grouping"), raw.get("quiet_runs"),
                             raw.get("cores", LEGACY_CORES))
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="bench_distributed_"))
    load = os.getloadavg()
    try:
        chunk = min(args.chunk_rows, args.scaling_n // 4)
        scaling = [run_mags(w, args.scaling_n, chunk, args.batch_size, tmp) for w in (1, 2)]
        for r in scaling:
            print("scaling", r, flush=True)
        ssp = [] if args.skip_ssp else [run_ssp(w, tmp) for w in (1, 2)]
        for r in ssp:
            print("ssp", r, flush=True)
        memory = []
        for n in sizes:
            memory.append(run_mags(2, n, args.chunk_rows, args.batch_size, tmp))
            print("memory", memory[-1], flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()
    raw = {"args": vars(args), "scaling": scaling, "ssp": ssp, "memory": memory, "load": load,
           "load_after": load_after, "cores": os.cpu_count()}
    # runs this invocation did not repeat (the quiet 10^7-star run) stay in the file and in the text
    previous = HERE / "results_distributed.json"
    quiet = json.loads(previous.read_text()).get("quiet_runs") if previous.exists() else None
    if quiet:
        raw["quiet_runs"] = quiet
    previous.write_text(json.dumps(raw, indent=1))
    write_results(args, scaling, ssp, memory, load, load_after, quiet=quiet, cores=raw["cores"])


def streaming_rate(path=None):
    """(spectra/s, threads) of the 10^6-point row of results_streaming.md, or None where it has none."""
    import re
    path = HERE / "results_streaming.md" if path is None else Path(path)
    if not path.exists():
        return None
    text = path.read_text()
    row = re.search(r"^\| 1,000,000 \| [\d.]+ \| ([\d,]+) \|", text, re.M)
    threads = re.search(r"(\d+) threads", text)
    if row is None or threads is None:
        return None
    return float(row.group(1).replace(",", "")), int(threads.group(1))


def memory_rows(memory):
    """Markdown rows of the bounded-memory table (peak RSS per worker in MiB)."""
    return [f"| {r['n']:,} | {r['chunks']} | {r['wall']:.1f} | {r['n'] / r['wall']:,.0f} | "
            f"{' / '.join(f'{x:.0f}' for x in r['rss'])} | "
            f"{' / '.join(f'{x:.0f}' for x in r['rss_warm'])} |" for r in memory]


def quiet_section(quiet, loaded, per_star, nf):
    """The section of the quiet-machine run kept in results_distributed.json ("quiet_runs")."""
    q = quiet["args"]
    big = quiet["memory"][-1]
    q_per_star = big["wall"] * big["workers"] / big["n"]
    return [
        "", f"### 10^7 stars, run (quiet machine, {quiet['when']})", "",
        f"The same `run_mags` as above ({big['workers']} workers, chunks of {q['chunk_rows']:,} stars, "
        f"generator batches of {q['batch_size']:,}, {nf} SDSS filters, magnitudes written chunk by chunk to "
        f"Zarr), on a fresh cluster, load average {quiet['load'][0]:.1f} before and "
        f"{quiet['load_after'][0]:.1f} after:", "",
        "| stars | chunks | wall [s] | stars/s | peak RSS per worker [MiB] | after warm-up [MiB] |",
        "|---|---|---|---|---|---|", *memory_rows(quiet["memory"]), "",
        f"Peak RSS per worker at {big['n']:,} stars ({max(big['rss']):.0f} MiB) against "
        f"{max(loaded['rss']):.0f} MiB for the loaded {loaded['n']:,}-star run: memory does not grow with N. "
        f"Holding the {big['n']:,} spectra would take {big['n'] * 1221 * 8 / 1e9:,.0f} GB (float64); the "
        f"magnitudes take {big['n'] * nf * 8 / 1e6:,.0f} MB on disk. On the quiet machine the per-star cost "
        f"is {q_per_star * 1e6:.0f} us per worker core, {per_star / q_per_star:.0f}x less than the loaded "
        "figure used below. Rerun with "
        f"`python benchmarks/bench_distributed.py --sizes {q['sizes']} --skip-ssp`."]


def write_results(args, scaling, ssp, memory, load, load_after, ssp_note=None, before=None, quiet=None,
                  cores=None):
    """results_distributed.md; ``cores``: CPUs of the machine that ran (recorded in the JSON), not of this
    one (the text said "(2 cores)" whatever the machine, and a --rewrite took this machine's count)."""
    nf = len(FILTERS)
    cores = cores or os.cpu_count()
    s1, s2 = scaling
    big = memory[-1]
    # per-chunk cost on one worker core, from the largest run (steady state: many chunks per worker)
    per_star = big["wall"] * big["workers"] / big["n"]
    per_chunk = per_star * args.chunk_rows
    lines = [
        "## More than one machine: Dask (`benchmarks/bench_distributed.py`)", "",
        "`smnet_sps.distributed` on a `distributed.LocalCluster` of worker processes (1 thread each) on "
        f"this machine ({cores} cores, {platform.machine()}), default model on CPU, "
        f"{nf} SDSS filters, "
        f"chunks of {args.chunk_rows:,} stars, generator batches of {args.batch_size:,}. The machine was "
        f"shared: load average {load[0]:.1f} before and {load_after[0]:.1f} after the run ({cores} cores), "
        "so absolute times are pessimistic and the 1 -> 2 worker ratio is what the other jobs left over. "
        "One run.", "",
        "### Scaling 1 -> 2 workers", "",
        "| workload | 1 worker [s] | 2 workers [s] | speed-up |", "|---|---|---|---|",
        f"| magnitudes of {s1['n']:,} stars ({s1['chunks']} chunks) | {s1['wall']:.1f} | {s2['wall']:.1f} | "
        f"{s1['wall'] / s2['wall']:.2f}x |",
    ]
    if ssp:
        lines.append(f"| 2 SSP grids (Kroupa, Salpeter) x 2 Z x 12 ages ({ssp[0]['tasks']} blocks) | "
                     f"{ssp[0]['wall']:.1f} | {ssp[1]['wall']:.1f} | "
                     f"{ssp[0]['wall'] / ssp[1]['wall']:.2f}x |")
    rate1 = s1["n"] / s1["wall"]
    rate2 = big["n"] / big["wall"]
    lines += [
        "", f"The scaling row has only {s1['chunks']} chunks (start-up and the last chunk dominate); the "
        f"{big['n']:,}-star run below ({big['chunks']} chunks, 2 workers) reached {rate2:,.0f} stars/s, "
        f"{rate2 / rate1:.2f}x the 1-worker rate of the scaling row ({rate1:,.0f} stars/s) -- measured "
        "minutes apart on a machine whose load changed, so treat it as indicative.",
    ]
    if ssp:
        lines += ["", "SSP grids: one task computes the blocks of all grids that share generator, "
                  "isochrones, Z and ages (here Kroupa and Salpeter at one Z), so their stellar spectra are "
                  "generated once, by one worker's backend cache; the 4 blocks are 2 tasks."
                  + (f" ({ssp_note}.)" if ssp_note else "")]
        if before:
            lines[-1] += (" Before this grouping (one task per block, first run of this script) the family "
                          f"took {before[0]['wall']:.1f} s on 1 worker and {before[1]['wall']:.1f} s on 2 "
                          f"({before[0]['wall'] / before[1]['wall']:.2f}x), likely because both workers "
                          "generated the same spectra while one worker reused them from its cache (the load "
                          "differed between the two runs: compare ratios, not times). With only 2 tasks the "
                          "2-worker time is the slower task's, on cores other jobs were also using.")
    lines += [
        "", "### Bounded memory: magnitudes of N stars on 2 workers", "",
        "Peak RSS of each worker process (Python, torch, the model, filters, one chunk of inputs and "
        "outputs, one batch of spectra); each N on a fresh cluster. Stars are generated on the workers "
        "(`dask.array.random`), magnitudes written chunk by chunk to Zarr.", "",
        "| stars | chunks | wall [s] | stars/s | peak RSS per worker [MiB] | after warm-up [MiB] |",
        "|---|---|---|---|---|---|", *memory_rows(memory)]
    growth = max(memory[-1]["rss"]) / max(memory[0]["rss"])
    spectra_gb = big["n"] * 1221 * 8 / 1e9
    n7 = 10**7
    t7 = n7 * per_star / 2
    lines += [
        "", f"Peak RSS grows {growth:.2f}x while N grows {memory[-1]['n'] / memory[0]['n']:.0f}x; "
        f"holding the {big['n']:,} spectra at once would take {spectra_gb:,.1f} GB (float64), the magnitudes "
        f"{big['n'] * nf * 8 / 1e6:,.0f} MB. Memory per worker is set by chunk and batch size, not by N.",
    ]
    quiet_big = quiet["memory"][-1] if quiet else None
    if quiet:
        lines += quiet_section(quiet, big, per_star, nf)
    lines += [
        "", "### 10^9 stars (estimates from the measured cost, not runs)" if quiet else
        "### 10^7 and 10^9 stars (estimates from the measured cost, not runs)", "",
        f"Measured cost per worker core: {per_star * 1e6:.0f} us per star, {per_chunk:.1f} s per chunk of "
        f"{args.chunk_rows:,} (the {big['n']:,}-star run: wall x workers / stars, so it includes scheduling, "
        "Zarr writes and the machine's load).",
        f"- 10^7 stars here (2 workers): run above on the quiet machine, {quiet_big['wall'] / 60:.1f} min."
        if quiet_big and quiet_big["n"] >= n7 else
        f"- 10^7 stars here (2 workers): about {t7 / 3600:.1f} h at this rate; memory per worker as in the "
        "table (it does not depend on N)."
        + (" Not run today: the machine was shared by other jobs." if big["n"] < n7 else ""),
    ]
    for nodes, cores in ((10, 32), (100, 32)):
        n_cores = nodes * cores
        # chunks of at most 10^6 stars and at least 4 tasks per core, so the last round is short
        chunk9 = int(min(1_000_000, 1e9 / (4 * n_cores)))
        n_tasks = math.ceil(1e9 / chunk9)
        t_task = chunk9 * per_star
        t9 = math.ceil(n_tasks / n_cores) * t_task
        lines.append(f"- 10^9 stars on {nodes} nodes x {cores} worker cores: chunks of {chunk9:,} stars, "
                     f"{n_tasks:,} tasks of {t_task / 60:.1f} min, {math.ceil(n_tasks / n_cores)} rounds: "
                     f"about {t9 / 3600:.2f} h at the per-core CPU cost measured here; output "
                     f"{1e9 * nf * 8 / 1e9:.0f} GB of float64 magnitudes + 1 GB of coverage flags. Memory "
                     "per worker: the model, one batch of spectra and the chunk "
                     f"({chunk9 * (4 + nf + 1) * 8 / 1e6:.0f} MB of inputs and outputs), never N.")
    # the comparison figures are read from where they are recorded (a hard-coded streaming rate went stale)
    last = "- The per-core cost above was measured on a loaded machine"
    if quiet_big:
        q_per_star = quiet_big["wall"] * quiet_big["workers"] / quiet_big["n"]
        last += (f"; the quiet {quiet_big['n']:,}-star run measured {q_per_star * 1e6:.0f} us per star per "
                 f"core ({per_star / q_per_star:.0f}x less), so these estimates are pessimistic by about "
                 "that factor")
    stream = streaming_rate()
    if stream:
        last += (f"; the streaming benchmark (results_streaming.md: spectra only, no photometry or Zarr) "
                 f"generated {stream[0]:,.0f} spectra/s on {stream[1]} threads")
    lines.append(last + ". A GPU worker was not measured. Dask's own overhead (of order 1 ms per task, Dask "
                 "docs) is negligible at these task counts.")
    text = "\n".join(lines) + "\n"
    results_file.write_results(HERE / "results_distributed.md", text)
    print(text)


if __name__ == "__main__":
    main()
