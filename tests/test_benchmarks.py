"""The benchmark scripts (benchmarks/bench_*.py, run_all.py): argument checks and the text they write."""
import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_bench(name, results_dir=None):
    """benchmarks/<name>.py as a module; its results files go to ``results_dir`` when given."""
    if str(BENCHMARKS) not in sys.path:         # as when run as a script: its folder's modules importable
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if results_dir is not None:
        module.HERE = Path(results_dir)
    return module


def test_bench_generator_refuses_a_missing_or_foreign_grid_and_keeps_its_results(tmp_path, capsys):
    """A mistyped --grid exited 0 and rewrote results_generator.md with its heading only."""
    bench = load_bench("bench_generator", tmp_path)
    with pytest.raises(SystemExit) as exc:
        bench.main(["--accuracy-only", "--grid", str(tmp_path / "typo.h5")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"--grid {tmp_path / 'typo.h5'}: no such file" in err and "smnet-sps grid build" in err
    assert "--throughput-only" in err
    # a grid that is not the model's: no table can be made, the results file is left alone
    from test_train import make_synthetic_grid
    make_synthetic_grid(tmp_path / "other.h5")
    with pytest.raises(SystemExit, match="not the model's training grid.*left unchanged"):
        bench.main(["--accuracy-only", "--grid", str(tmp_path / "other.h5")])
    assert not (tmp_path / "results_generator.md").exists()


def test_bench_fidelity_without_the_grid_keeps_the_committed_tables(tmp_path, capsys):
    """Run without work/grid.h5 (a fresh checkout), bench_fidelity.py rewrote results_fidelity.md from 145
    lines to 56: the held-out grid tables, the resampling table, the SSP colours and the notes added by hand
    were gone and the observed-stars tables lost their interpolation column. Sections it cannot compute are
    now kept as they are and named; a run that computes nothing, or a file of another model, is refused."""
    bench = load_bench("bench_fidelity")
    committed = (BENCHMARKS / "results_fidelity.md").read_text()
    stars = Path(__file__).parent / "fixtures" / "empirical"        # 20 real MILES stars
    common = ["--grid", str(tmp_path / "none.h5"), "--empirical", str(stars), "--kfold", "2"]
    # everything it could make without the grid is already there, complete: nothing is written
    out = tmp_path / "results_fidelity.md"
    out.write_text(committed)
    with pytest.raises(SystemExit, match="nothing to compute.*left unchanged"):
        bench.main([*common, "--out", str(out)])
    assert out.read_text() == committed
    # a file without its observed-stars section: that section is written, every other one kept verbatim
    preamble, sections = bench.split_sections(committed)
    assert [h for h, _ in sections][0] == bench.GRID_HEADING and len(sections) >= 3
    out.write_text("\n".join(preamble + [line for h, lines in sections if h != bench.EMPIRICAL_HEADING
                                         for line in lines]) + "\n")
    bench.main([*common, "--out", str(out)])
    capsys.readouterr()
    text = out.read_text()
    new_preamble, new_sections = bench.split_sections(text)
    new_sections = dict(new_sections)
    for heading, lines in sections:
        if heading == bench.EMPIRICAL_HEADING:
            assert "20 stars;" in "\n".join(new_sections[heading])
            continue
        kept = [line for line in new_sections[heading] if line.strip()]
        old = [line for line in lines if line.strip()]
        if heading == bench.GRID_HEADING:       # the old run's note on its grid goes with its tables
            old = [old[0], *[p for p in preamble if p.startswith("(grid ")], *old[1:]]
        assert kept == old, heading
    assert ("not recomputed by this run: \"Held-out grid nodes (the model's test split)\" (no grid file "
            f"at {tmp_path / 'none.h5'})") in text
    assert _accuracy_rows(text) == _accuracy_rows(committed)
    # another model's results file: nothing of it may sit beside this model's tables
    out.write_text(committed.replace("Model `", "Model `another ", 1))
    with pytest.raises(SystemExit, match="another model.*left unchanged"):
        bench.main([*common, "--out", str(out)])


def test_bench_tail_refuses_a_missing_grid_before_loading_anything(tmp_path, capsys):
    """Without work/grid.h5 bench_tail.py loaded the model twice and died in h5py (FileNotFoundError
    traceback); it now says what is missing and how to build it, and writes nothing."""
    bench = load_bench("bench_tail")
    out = tmp_path / "results_tail.md"
    with pytest.raises(SystemExit) as exc:
        bench.main(["--grid", str(tmp_path / "none.h5"), "--out", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"--grid {tmp_path / 'none.h5'}: no such file" in err and "smnet-sps grid build" in err
    assert "results_tail.md left unchanged" in err and not out.exists()


def _accuracy_rows(text):
    """library -> row of the first held-out accuracy table (format_accuracy_table) in a results file."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| library | test nodes"):
            rows = {}
        elif rows is not None and line.startswith("| ") and " % |" in line:
            rows.setdefault(line.split("|")[1].strip(), line)
        elif rows:
            return rows
    return rows


def test_fidelity_and_generator_sections_report_the_same_held_out_figures():
    """results_fidelity.md kept CM87's row from before the tail hold (MSE 2.48e-06, >= 3000 A 0.25 / 3.45 %)
    while results_generator.md had today's (2.61e-08, 0.15 / 1.78 %): both come from accuracy_table on the
    same model, split and grid, so their rows must agree."""
    fidelity = _accuracy_rows((BENCHMARKS / "results_fidelity.md").read_text())
    generator = _accuracy_rows((BENCHMARKS / "results_generator.md").read_text())
    assert set(fidelity) == set(generator) and "cm87" in fidelity
    for lib in fidelity:
        assert fidelity[lib] == generator[lib], lib


def test_run_all_docs_say_which_benchmarks_it_runs_by_default():
    """README said run_all.py runs every bench_*.py and its docstring '(default: all)'; it runs ORDER."""
    run_all = load_bench("run_all")
    readme = (BENCHMARKS.parent / "README.md").read_text()
    sentence = readme[readme.index("Benchmarks: `python benchmarks/run_all.py`"):]
    sentence = sentence[:sentence.index("RESULTS.md)")]
    assert "runs every" not in sentence and "default: all" not in run_all.__doc__
    assert set(run_all.ORDER) < {p.stem[6:] for p in BENCHMARKS.glob("bench_*.py")}    # not all of them
    for topic in run_all.ORDER:
        assert f"bench_{topic}" in sentence and topic in run_all.__doc__


def test_run_all_goes_on_past_a_benchmark_that_cannot_run_and_checks_topics_first(tmp_path, capfd):
    """On a fresh checkout (no work/grid.h5) `python benchmarks/run_all.py` stopped at bench_generator with a
    CalledProcessError traceback: nothing else ran and RESULTS.md was not merged. A typo in the last topic
    was found only after the others had run, and --merge-only silently ignored named topics."""
    import shutil
    bench_dir = tmp_path / "benchmarks"
    bench_dir.mkdir()
    shutil.copy(BENCHMARKS / "bench_generator.py", bench_dir)       # needs ../work/grid.h5: exits 2
    shutil.copy(BENCHMARKS / "results_file.py", bench_dir)          # the benchmarks' results writer
    (bench_dir / "bench_after.py").write_text(
        "from pathlib import Path\n"
        "Path(__file__).with_name('results_after.md').write_text('## After\\n\\nran\\n')\n")
    (bench_dir / "results_generator.md").write_text("## Generator\n\nkept\n")
    run_all = load_bench("run_all", bench_dir)
    for argv, shown in ((["generator", "aftr"], "no benchmark named 'aftr'"),
                        (["--merge-only", "after"], "--merge-only runs no benchmark")):
        with pytest.raises(SystemExit) as exc:
            run_all.main(argv)
        assert exc.value.code == 2 and shown in capfd.readouterr().err
    assert not (bench_dir / "results_after.md").exists() and not (bench_dir / "RESULTS.md").exists()
    with pytest.raises(SystemExit, match=r"left as they were: bench_generator.py \(exit status 2\)"):
        run_all.main(["generator", "after"])
    assert "no such file" in capfd.readouterr().err
    merged = (bench_dir / "RESULTS.md").read_text()
    assert "## Generator\n\nkept" in merged and "## After\n\nran" in merged


def test_bench_photometry_refuses_a_naive_subset_outside_1_to_n(tmp_path, capsys):
    """--n-naive 0 raised ZeroDivisionError; --n 100 --n-naive 200 timed 100 spectra but scaled x0.5 as if
    200 (naive time and speed-up 2x low)."""
    bench = load_bench("bench_photometry", tmp_path)
    for argv, shown in ((["--n", "10", "--n-naive", "0"], "got 0"),
                        (["--n", "100", "--n-naive", "200"], "between 1 and --n (100), got 200"),
                        (["--n", "0", "--n-naive", "0"], "--n must be >= 1, got 0")):
        with pytest.raises(SystemExit) as exc:
            bench.main(argv)
        assert exc.value.code == 2 and shown in capsys.readouterr().err
    assert not (tmp_path / "results_photometry.md").exists()


def test_bench_streaming_labels_mebibytes_as_mib():
    """'would need 9,315 MB' was MiB (/2^20; 10^6 x 1221 x 8 B = 9,768 MB), as was the peak RSS column
    (ru_maxrss / 1024)."""
    bench = load_bench("bench_streaming")
    assert bench.spectra_memory(1_000_000) == "9,315 MiB (9.8 GB)"
    rows = [{"n": 10_000, "seconds": 0.5, "maxrss_mib": 400.0},
            {"n": 1_000_000, "seconds": 30.0, "maxrss_mib": 600.0}]
    text = bench.format_results(rows, 0.1, 0.2)
    assert "| peak RSS [MiB] |" in text and "| 600 | 1.50 |" in text
    assert "need 9,315 MiB (9.8 GB) of float64" in text and " MB" not in text
    saved = (BENCHMARKS / "results_streaming.md").read_text()
    assert "| peak RSS [MiB] |" in saved and "9,315 MiB (9.8 GB)" in saved and "9,315 MB" not in saved


def test_bench_streaming_quick_runs_small_and_keeps_the_full_results(tmp_path, capsys):
    """bench_streaming.py had no quick setting (its only run streams 10^4-10^6 points, a minute or more); its
    --quick streams 10^3 and 10^4 in batches of 512, prints the table and writes it to
    results_streaming_quick.md (or --out), never over the 10^6-point results."""
    bench = load_bench("bench_streaming", tmp_path)
    calls = []

    def child(n, batch, threads=2):            # the child's record, without starting it
        calls.append((n, batch))
        return {"n": n, "seconds": n / 1000.0, "maxrss_mib": 400.0 + n / 1e3}
    bench.run = child
    bench.main(["--quick"])
    assert calls == [(1_000, 512), (10_000, 512)]
    printed = capsys.readouterr().out
    assert "## Streaming 10^4 points" in printed and "batch 512," in printed
    assert "| RSS / RSS(10^3 points) |" in printed and "results_streaming_quick.md" in printed
    assert not (tmp_path / "results_streaming.md").exists()       # the quick table: its own file
    assert "| RSS / RSS(10^3 points) |" in (tmp_path / "results_streaming_quick.md").read_text()
    bench.main(["--quick", "--out", str(tmp_path / "quick.md")])
    assert "| 10,000 | 10.0 | 1,000 | 410 | 1.02 |" in (tmp_path / "quick.md").read_text()
    calls.clear()
    bench.main([])                              # the full run: as before, into results_streaming.md
    assert calls == [(10_000, 8192), (100_000, 8192), (1_000_000, 8192)]
    text = (tmp_path / "results_streaming.md").read_text()
    assert text.startswith("## Streaming 10^6 points") and "| RSS / RSS(10^4 points) |" in text
    assert "batch 8192," in text


def test_bench_distributed_rewrite_keeps_the_quiet_run_and_reads_the_streaming_rate(tmp_path):
    """--rewrite wrote a hard-coded 'about 7,900 spectra/s on 2 threads' (results_streaming.md: 34,355) and
    dropped the 10^7-star run from the markdown."""
    import shutil
    bench = load_bench("bench_distributed", tmp_path)
    shutil.copy(BENCHMARKS / "results_distributed.json", tmp_path)
    streaming = (BENCHMARKS / "results_streaming.md").read_text()
    (tmp_path / "results_streaming.md").write_text(
        streaming.replace(streaming.split("| 1,000,000 |")[1].split("|")[1], " 12,345 "))
    bench.main(["--rewrite"])
    text = (tmp_path / "results_distributed.md").read_text()
    assert "generated 12,345 spectra/s on 2 threads" in text and "7,900" not in text
    assert "### 10^7 stars, run (quiet machine" in text
    assert "| 10,000,000 | 500 | 585.9 | 17,069 | 540 / 541 | 381 / 381 |" in text
    assert "10^7 stars here (2 workers): run above on the quiet machine, 9.8 min." in text
    assert "peak RSS per worker [MiB]" in text and "[MB]" not in text
    assert bench.streaming_rate(BENCHMARKS / "results_streaming.md")[1] == 2


def test_bench_distributed_names_the_cores_of_the_machine_that_ran(tmp_path):
    """The text said "load average ... after the run (2 cores)" whatever the machine (a 16-core run read
    "this machine (16 cores, ...) ... (2 cores)"), and --rewrite took the rewriting machine's count: the CPU
    count is now recorded with the run and used in both places (2 for the JSON recorded before it was)."""
    import argparse
    import json
    bench = load_bench("bench_distributed", tmp_path)
    raw = json.loads((BENCHMARKS / "results_distributed.json").read_text())
    assert "cores" not in raw and bench.LEGACY_CORES == 2       # the committed run: the 2-core machine
    bench.write_results(argparse.Namespace(**raw["args"]), raw["scaling"], raw["ssp"], raw["memory"],
                        raw["load"], raw["load_after"], quiet=raw.get("quiet_runs"), cores=16)
    text = (tmp_path / "results_distributed.md").read_text()
    assert "this machine (16 cores," in text and "after the run (16 cores)" in text
    assert "2 cores" not in text


def test_docs_give_the_laplace_errors_coverage_on_miles_stars():
    """docs/fit.md called the chi^2_red-scaled errors 'honest for real data'; on MILES stars the 1-sigma
    interval holds the catalogue value for a quarter of them. The figures it now gives, recomputed from the
    benchmark's per-star results."""
    import json
    import re

    import numpy as np

    root = BENCHMARKS.parent
    docs = " ".join((root / "docs" / "fit.md").read_text().split())
    assert "honest for real data" not in docs

    def covered(truth, fit, err, extra=0.0):
        t, v, e = (np.asarray(a, float) for a in (truth, fit, err))
        return np.round(100 * (np.abs(v - t) < np.hypot(e, extra)).mean(0)).astype(int)

    cat = np.array([80.0, 0.2, 0.1])
    rows = [r for r in json.loads((root / "benchmarks" / "fit_miles_full.json").read_text())["rows"]
            if 4500 <= r["truth"][0] < 6500]
    assert len(rows) == 259
    args = ([r["truth"] for r in rows], [r["raw"][:3] for r in rows], [r["raw"][4:7] for r in rows])
    raw, raw_cat = covered(*args), covered(*args, cat)
    semi = json.loads((root / "benchmarks" / "fit_floor_cut.json").read_text())["semi_prior+deg8"]["rows"]
    args = ([r["truth"] for r in semi], [r["fit"][:3] for r in semi], [r["err"][:3] for r in semi])
    best, best_cat = covered(*args), covered(*args, cat)
    n3 = r"(\d+) / (\d+) / (\d+) %"
    m = re.search(r"holds the catalogue value for (\d+) % / (\d+) % / (\d+) % of the stars .*? " + n3
                  + r" with the catalogue's .*?`semi_prior\+deg8`, " + n3 + r" \(" + n3, docs)
    assert m, "the coverage sentence is gone from docs/fit.md"
    got = np.array(m.groups(), int).reshape(4, 3)
    np.testing.assert_array_equal(got, [raw, raw_cat, best, best_cat])
    assert (raw < 68).all() and (best < 68).all()


def test_fit_docs_floor_cut_figures_are_those_of_the_rows():
    """docs/fit.md said that with the smoothing floor cut the MILES velocities improved to median -0.3 km/s,
    scatter 55 km/s (and Teff / log g / [M/H] 2.08 % / 0.298 / 0.216), figures of a run since replaced:
    benchmarks/fit_floor_cut.json["deg8"] gives -8.3 and 71 km/s (2.06 % / 0.286 / 0.203). The bullet's
    old -> new figures are checked against the rows of both floors, the velocities included."""
    import json
    import re

    import numpy as np

    robust = load_bench("fit_levers").robust
    text = " ".join((BENCHMARKS.parent / "docs" / "fit.md").read_text().split())
    bullet = text[text.index("**The smoothing floor cut from 0.05 to 0.001"):]
    bullet = bullet[:bullet.index(" * ")]
    number = r"(-?[\d.]+)"
    doc = {
        "teff": re.search(rf"Teff {number} -> {number} %", bullet),
        "logg": re.search(rf"log g {number} -> {number} ", bullet),
        "logz": re.search(rf"\[M/H\] {number} -> {number} ", bullet),
        "rv_median": re.search(rf"median {number} -> {number} km/s", bullet),
        "rv_scatter": re.search(rf"scatter \(1.4826 MAD\) {number} -> {number} km/s", bullet),
    }
    assert all(doc.values()), {k: v is not None for k, v in doc.items()}
    for side, name in enumerate(("fit_levers_s3.json", "fit_floor_cut.json")):
        rows = [r for r in json.loads((BENCHMARKS / name).read_text())["deg8"]["rows"]
                if 4500 <= r["truth"][0] < 6500]
        truth, fit = np.array([r["truth"] for r in rows]), np.array([r["fit"] for r in rows])
        assert len(rows) == 259
        rv = robust(fit[:, 3])
        figures = {"teff": 100 * robust(fit[:, 0] / truth[:, 0] - 1)[1],
                   "logg": robust(fit[:, 1] - truth[:, 1])[1], "logz": robust(fit[:, 2] - truth[:, 2])[1],
                   "rv_median": rv[0], "rv_scatter": rv[1]}
        for key, value in figures.items():
            stated = doc[key].group(side + 1)
            decimals = len(stated.split(".")[1]) if "." in stated else 0
            assert float(stated) == pytest.approx(round(value, decimals), abs=1e-9), (name, key, value)


def _stated(text, value):
    """Whether a figure written in the docs as ``text`` (e.g. '4.1e-4', '1.7', '0.38') is ``value`` rounded to
    the digits it shows."""
    import decimal

    exponent = decimal.Decimal(text).as_tuple().exponent
    return abs(float(text) - value) <= 0.5 * 10.0 ** exponent * (1 + 1e-9)


def _table_rows(text, first_cells):
    """{first cell: [other cells]} of the markdown table rows of ``text`` that start with ``first_cells``."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] in first_cells:
            rows.setdefault(cells[0], cells[1:])
    return rows


def test_generator_docs_low_precision_figures_are_those_of_the_results_file():
    """docs/generator.md's low-precision table kept the first shipped model's figures of 2026-11-30 (bf16 p99
    4.3 %, max 29 %; fp16 max 5.4 %) while results_generator_throughput.md has 1.71e-02 / 1.45e-01 / 1.28e-02,
    and it said bf16 ran 1.2-2x faster than float32 where the latest run has it at 0.38x: every figure of the
    table and the latest run's speed ratios must be the results file's, rounded as written."""
    import re

    doc = (BENCHMARKS.parent / "docs" / "generator.md").read_text()
    section = doc[doc.index("### Low precision (`dtype=`)"):doc.index("### Differentiable path")]
    results = (BENCHMARKS / "results_generator_throughput.md").read_text()
    measured = _table_rows(results[results.index("### Low-precision compute"):], ("bfloat16", "float16"))
    stated = _table_rows(section, ("bfloat16", "float16"))
    assert set(measured) == set(stated) == {"bfloat16", "float16"}
    for dtype, cells in stated.items():
        median, p99, worst, bright = cells
        p99_bright, max_bright = bright.split("/")
        res = [float(c) for c in measured[dtype][:6]]
        pairs = [(median, res[0], 1), (p99, res[1], 100), (worst, res[2], 100), (p99_bright, res[4], 100),
                 (max_bright, res[5], 100)]
        for written, value, scale in pairs:
            number = written.replace("%", "").strip()
            assert _stated(number, value * scale), (dtype, written, value)
    speed = " ".join(section.split())
    latest = re.search(r"latest run \([^)]*\) bf16 ran at ([\d.]+)x and fp16 at ([\d.]+)x", speed)
    assert latest, "the latest run's speed ratios are not stated"
    assert float(latest.group(1)) == float(measured["bfloat16"][6])
    assert float(latest.group(2)) == float(measured["float16"][6])


def test_generator_docs_latest_throughput_run_is_that_of_the_results_file():
    """docs/generator.md called a run of 2026-12-02 the latest (MLP alone 53,592 spectra/s at 2 threads, 78 %
    of peak; random stars 0.33 of it, 0.50 at 1 thread) after results_generator_throughput.md had been re-run
    (44,990, 71.5 %, 0.34, 0.56): the figures it gives for the latest run must be the results file's."""
    import re

    doc = " ".join((BENCHMARKS.parent / "docs" / "generator.md").read_text().split())
    bullet = doc[doc.index("the latest run of this benchmark"):]
    bullet = bullet[:bullet.index("thread speeds the network only")]
    found = re.search(r"MLP alone ([\d,]+) spectra/s at 2 threads \(([\d.]+) % of peak\) and random stars "
                      r"([\d.]+) of it end to end \(([\d,]+) spectra/s; .*?\), ([\d.]+) at 1 thread", bullet)
    assert found, bullet
    results = (BENCHMARKS / "results_generator_throughput.md").read_text()
    split = results.index("### CPU throughput (2 threads")
    one, two = results[results.index("### CPU throughput (1 threads"):split], results[split:]
    mlp_2 = _table_rows(two, ("MLP alone (one network, no post-processing)",))
    random_1 = _table_rows(one, ("surface_flux, random stars (issue 11 sample; library mixture)",))
    random_2 = _table_rows(two, ("surface_flux, random stars (issue 11 sample; library mixture)",))
    (mlp_2,), (random_1,), (random_2,) = mlp_2.values(), random_1.values(), random_2.values()
    assert found.group(1) == mlp_2[1] and found.group(2) == mlp_2[3].rstrip("%")
    assert found.group(3) == random_2[4] and found.group(4) == random_2[1]
    assert found.group(5) == random_1[4]


def test_ssp_docs_speed_figures_are_those_of_the_results_file():
    """docs/ssp.md said RESULTS.md showed a run of 21.5 s (projected 16.9 s) and gave a new (age, Z) ~0.7
    ms after the warm-up, ~15 ms of CPU outside the generator and ~43 ms projected, with 2.8 s of CPU outside
    the generator for the full grid, after results_ssp.md had been re-run (33.5 s, 17.8 s, 1.15 ms, 24.6 ms,
    52 ms, 3.6 s): the figures it gives for the run RESULTS.md shows must be that file's, rounded as
    written."""
    import re

    doc = " ".join((BENCHMARKS.parent / "docs" / "ssp.md").read_text().split())
    results = (BENCHMARKS / "results_ssp.md").read_text()

    def cell(name, column=0):
        (row,) = _table_rows(results, (name,)).values()
        return float(re.search(r"[\d.]+", row[column].replace(",", "")).group())

    shown = re.search(r"The run that RESULTS.md now shows \([^)]*\) took ([\d.]+) s: ([\d.]+) s in the "
                      r"generator \(([\d,]+) spectra/s\), ([\d.]+) s of CPU outside it, ([\d.]+) s projected",
                      doc)
    assert shown, "the run RESULTS.md shows is not described"
    assert _stated(shown.group(1), cell("wall time"))
    generator = _table_rows(results, ("in `generator.surface_flux` (network, its coverage lookup and "
                                      "post-processing)",))
    (generator,) = generator.values()
    assert _stated(shown.group(2), float(generator[0].split()[0]))
    assert shown.group(3) in generator[0]
    outside = cell("all outside the generator, CPU time of this process")
    projected = cell("projected with the generator at 40,000 spectra/s")
    assert _stated(shown.group(4), outside) and _stated(shown.group(5), projected)
    cost = re.search(r"\*\*Cost outside the generator\*\* \([^)]*\): ([\d.]+) s of CPU", doc)
    assert cost and _stated(cost.group(1), outside)
    warm = re.search(r"the warm-up, as FSPS tabulates all its SSPs first\): ~([\d.]+) ms median", doc)
    assert warm and _stated(warm.group(1), cell("after `ssp_grid()` with the same generator (warm-up)"))
    cold = re.search(r"plus ~([\d.]+) ms of CPU outside the generator: ~([\d.]+) ms with the generator at "
                     r"40k", doc)
    (request,) = _table_rows(results, ("no grid, requests 41-80",)).values()
    request_cpu = float(re.search(r"([\d.]+) ms CPU outside", request[2]).group(1))
    assert cold and abs(float(cold.group(1)) - request_cpu) <= 5
    assert _stated(cold.group(2), cell("no grid, requests 41-80, projected with the generator at 40,000 "
                                       "spectra/s"))


def test_generator_docs_tail_ssp_figures_are_those_of_the_results_file():
    """docs/generator.md's tail paragraphs said the fill made GALEX FUV fainter by '2.5-4.9 mag at 3-12.5 Gyr
    and Z = 0.03-0.06', NUV move by '<= 0.008 mag', the 100 um pixel by '-0.01 to +0.45 mag (fainter at most
    ages)' and 10 Myr solar log Q(He+) go '39.6 -> 32.2', while results_tail.md has 0.52 / 1.49 mag at 3 Gyr
    (2.54-4.89 at 10-12.5 Gyr), NUV <= 0.004, 100 um +0.030 .. +0.452 (fainter at every age) and 39.68 ->
    32.21: each figure must be the results file's, rounded as written."""
    import re

    doc = " ".join((BENCHMARKS.parent / "docs" / "generator.md").read_text().split())
    results = (BENCHMARKS / "results_tail.md").read_text()
    header = next(line for line in results.splitlines() if line.startswith("| Z | age [Gyr] | dgalex-fuv"))
    names = [c.strip() for c in header.strip().strip("|").split("|")]
    rows = []
    for line in results.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == len(names) and re.fullmatch(r"[\d.]+", cells[0]):
            rows.append(dict(zip(names, cells)))
    assert len(rows) == 24

    def column(name, where=lambda r: True):
        return [float(r[name]) for r in rows if where(r)]

    fuv = re.search(r"GALEX FUV is fainter by ([\d.]+) mag at 10 Gyr solar, ([\d.]+) mag at 3 Gyr solar, "
                    r"([\d.]+)-([\d.]+) mag at 3 Gyr and ([\d.]+)-([\d.]+) mag at 10-12.5 Gyr for "
                    r"Z = 0.03-0.06, <= ([\d.]+) mag at Z = 0.002", doc)
    assert fuv, "the FUV sentence is gone or changed"
    solar = lambda age: lambda r: r["Z"] == "0.0152" and r["age [Gyr]"] == age  # noqa: E731
    rich = lambda ages: lambda r: r["Z"] in ("0.03", "0.06") and r["age [Gyr]"] in ages  # noqa: E731
    assert _stated(fuv.group(1), column("dgalex-fuv", solar("10"))[0])
    assert _stated(fuv.group(2), column("dgalex-fuv", solar("3"))[0])
    at3, old = column("dgalex-fuv", rich(("3",))), column("dgalex-fuv", rich(("10", "12.5")))
    assert _stated(fuv.group(3), min(at3)) and _stated(fuv.group(4), max(at3))
    assert _stated(fuv.group(5), min(old)) and _stated(fuv.group(6), max(old))
    assert max(map(abs, column("dgalex-fuv", lambda r: r["Z"] == "0.002"))) <= float(fuv.group(7))
    nuv = re.search(r"NUV moves by <= ([\d.]+) mag", doc)
    assert nuv and _stated(nuv.group(1), max(map(abs, column("dgalex-nuv"))))
    far = re.search(r"the 100 um pixel by \+([\d.]+) to \+([\d.]+) mag \(fainter at every age", doc)
    assert far and min(column("d100 um")) > 0
    assert _stated(far.group(1), min(column("d100 um"))) and _stated(far.group(2), max(column("d100 um")))
    q = re.search(r"10 Myr solar: log Q ([\d.]+) -> ([\d.]+) s\^-1", doc)
    (alone, filled), = [r["log Q(He+) alone / filled"].split("/") for r in rows if solar("0.01")(r)]
    assert q and _stated(q.group(1), float(alone)) and _stated(q.group(2), float(filled))


def test_ssp_docs_dedup_step_figures_are_those_of_the_results_file():
    """docs/ssp.md said rounding log Teff to 1e-3 dex 'removes 45 % of the points but changes SSP pixels by
    2-20 % at worst', the maxima of a run before the tail fill (1.96e-2 at 5e-4 dex, 2.04e-1 at 1e-3);
    results_ssp.md's re-measured "Dedup step" table has 44.5 % removed and 1.71e-2 / 2.04e-2: the figures
    must be that table's, rounded as written."""
    import re

    doc = " ".join((BENCHMARKS.parent / "docs" / "ssp.md").read_text().split())
    results = (BENCHMARKS / "results_ssp.md").read_text()
    table = results[results.index("### Dedup step"):]
    rows = _table_rows(table, ("0.0005", "0.001"))
    points = float(rows["0.001"][0].replace(",", ""))
    kept = float(rows["0.001"][1].split()[0].replace(",", ""))
    said = re.search(r"rounding log Teff to 1e-3 dex \(log g 1e-2\) removes ([\d.]+) % of the points but "
                     r"changes SSP pixels by ([\d.]+) % at worst \(median ([\d.e-]+); ([\d.]+) % already at "
                     r"5e-4 dex\)", doc)
    assert said, "the dedup-step sentence is gone or changed"
    assert _stated(said.group(1), 100 * (1 - kept / points))
    assert _stated(said.group(2), 100 * float(rows["0.001"][2]))
    assert _stated(said.group(3), float(rows["0.001"][3]))
    assert _stated(said.group(4), 100 * float(rows["0.0005"][2]))


def test_results_writer_keeps_the_notes_added_by_hand(tmp_path):
    """A full rerun of a benchmark rewrote its results file whole: a paragraph added by hand (the before /
    after note of results_generator_throughput.md, 9 lines) was gone. The shared writer keeps the block
    between the notes markers: at the end, or where the new text holds the markers."""
    writer = load_bench("results_file")
    NOTES_START, NOTES_END, notes_blocks, write_results = (writer.NOTES_START, writer.NOTES_END,
                                                           writer.notes_blocks, writer.write_results)
    path = tmp_path / "results_x.md"
    note = f"{NOTES_START}\nRe-run on Tuesday: the second row is the busy machine's.\n{NOTES_END}"
    path.write_text(f"## X\n\n| a | 1 |\n\n{note}\n")
    assert write_results(path, "## X\n\n| a | 2 |\n") == path
    assert path.read_text() == f"## X\n\n| a | 2 |\n\n{note}\n"
    # the script's own (empty) block: the notes go there, not at the end
    write_results(path, f"## X\n\n{NOTES_START}\n{NOTES_END}\n\n| a | 3 |\n")
    assert path.read_text() == f"## X\n\n{note}\n\n| a | 3 |\n"
    # a block never closed is kept to the old file's end, and closed
    path.write_text(f"## X\n\n{NOTES_START}\nhalf a note\n")
    write_results(path, "## X\n")
    assert path.read_text() == f"## X\n\n{NOTES_START}\nhalf a note\n{NOTES_END}\n"
    assert notes_blocks("## X\n") == []
    saved = (BENCHMARKS / "results_generator_throughput.md").read_text()
    assert any("Before / after the 2026-12-04 speed-ups" in b for b in notes_blocks(saved))


def test_a_quick_run_leaves_the_full_results_and_run_all_merges_full_runs_only(tmp_path, capsys):
    """bench_generator.py --quick rewrote results_generator_throughput.md without the released-size SMNet
    row (and run_all.py merged that into RESULTS.md). A quick run now writes results_<topic>_quick.md; the
    full file, its row and its notes stay; run_all.py merges no _quick file."""
    import argparse

    import torch
    bench = load_bench("bench_generator", tmp_path)
    full = tmp_path / "results_generator_throughput.md"
    committed = (BENCHMARKS / "results_generator_throughput.md").read_text()
    full.write_text(committed)
    # the timings themselves are not what is tested: stand-ins, so that the run takes no time
    bench.throughput_table = lambda gen: ["### Throughput (stand-in)", ""]
    bench.low_precision_table = lambda gen: []
    bench.matmul_peak_gflops = lambda: 100.0
    bench.throughput = lambda fn, batch, **kw: 1000.0
    threads = torch.get_num_threads()
    try:
        bench.throughput_section(None, argparse.Namespace(threads=1, quick=True))
    finally:
        torch.set_num_threads(threads)
    assert full.read_text() == committed
    quick = (tmp_path / "results_generator_throughput_quick.md").read_text()
    assert "compact SMNet B=256" in quick and "released-size" not in quick
    assert "wrote " + str(tmp_path / "results_generator_throughput_quick.md") in capsys.readouterr().out
    (tmp_path / "results_generator.md").write_text("## Generator\n\nfull\n")
    run_all = load_bench("run_all", tmp_path)
    run_all.merge()
    merged = (tmp_path / "RESULTS.md").read_text()
    assert committed.strip() in merged and "## Generator\n\nfull" in merged
    assert "(stand-in)" not in merged                                        # the quick table is not
    assert run_all.CONVENTION in merged and "<!-- notes -->" in run_all.CONVENTION


def test_every_benchmark_writes_its_results_through_the_shared_writer():
    """Each bench_*.py wrote its results file itself (Path.write_text): notes added by hand were lost on a
    rerun. Every results_*.md is now written by results_file.write_results; only JSON is written directly."""
    for script in sorted(BENCHMARKS.glob("bench_*.py")):
        for line in script.read_text().splitlines():
            assert ".write_text(" not in line or "json" in line, f"{script.name}: {line.strip()}"


def test_generator_results_give_each_experts_recorded_threads():
    """results_generator.md said the library specialists were fine-tuned on '1 thread each' (a fixed phrase of
    bench_generator.py) although the shipped config records the WM-basic expert's run on 2 threads: each
    stage's thread count must be the one train recorded, in the script and in the committed results."""
    import json

    bench = load_bench("bench_generator")
    cfg = json.loads((BENCHMARKS.parent / "smnet_sps" / "data" / "default_model" / "config.json").read_text())
    note = bench._experts_note(cfg)
    assert "1 thread each" not in note
    for lib, d in cfg["experts"]["libraries"].items():
        threads = {st["training"]["torch_threads"] for st in d.get("earlier_stages", []) + [d]}
        (n,) = threads                                  # every shipped expert ran its stages alike
        part = note[note.index(f"{lib} "):]
        assert part.split(";")[0].split(" (")[0].endswith(f" on {n} thread{'' if n == 1 else 's'}"), part
    header = (BENCHMARKS / "results_generator.md").read_text().split("\n")[2]
    assert note in header, header
