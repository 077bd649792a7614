"""Run benchmarks of this folder and merge every results_*.md into benchmarks/RESULTS.md.

Each ``bench_<topic>.py`` prints its figures and writes ``results_<topic>.md``; this script runs the named
ones in one process tree, one after another, so the ratios inside each section come from one run on one
machine. Usage: ``python benchmarks/run_all.py [topic ...]`` (default: the core set generator, streaming,
ssp, photometry; name any other bench_<topic>.py to run it, e.g. ``fidelity``). ``--merge-only`` just
rebuilds RESULTS.md. The merge always takes every results_*.md, also those of benchmarks not run this time,
but not a quick run's results_*_quick.md (benchmarks/results_file.py: the convention, notes kept on reruns).
A benchmark that fails (e.g. bench_generator without work/grid.h5) leaves its results file as it was: the
others still run, the merge still happens, and the run ends with exit status 1 naming the failed ones.
"""
import datetime
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["generator", "streaming", "ssp", "photometry"]
CONVENTION = ("Results files (`benchmarks/results_file.py`): each `bench_<topic>.py` writes "
              "`results_<topic>.md`; notes added by hand go between `<!-- notes -->` and `<!-- /notes -->` "
              "lines, which a rerun keeps (anything else in the file is replaced). A `--quick` run writes "
              "`results_<topic>_quick.md`, not merged here, and leaves the full file as it is.")


def merge():
    sections = []
    # a --quick run's results_<topic>_quick.md is not merged: RESULTS.md holds the full runs only
    found = {p.stem[len("results_"):] for p in HERE.glob("results_*.md") if not p.stem.endswith("_quick")}
    for topic in ORDER + sorted(found - set(ORDER)):
        path = HERE / f"results_{topic}.md"
        if path.exists():
            sections.append((path.name, path.read_text().strip()))
    # several runs of one script (e.g. bench_node_cv's experiments) share a heading: name their files
    headings = [text.split("\n", 1)[0] for _, text in sections]
    sections = [text.replace(heading, f"{heading}: `{name}`", 1) if headings.count(heading) > 1 else text
                for (name, text), heading in zip(sections, headings)]
    header = ("# Benchmark results\n\n"
              f"Merged by `benchmarks/run_all.py` on {datetime.date.today()} ({platform.machine()}, "
              f"{platform.python_implementation()} {platform.python_version()}). Each section comes from "
              "one run of its script; compare ratios within a section, not absolute times across "
              "machines.\n\n" + CONVENTION + "\n")
    (HERE / "RESULTS.md").write_text(header + "\n" + "\n\n".join(sections) + "\n")
    print(f"wrote {HERE / 'RESULTS.md'}")


def main(argv):
    import argparse
    # parsed, not filtered: "--help" (or a mistyped option) used to mean "run everything" and overwrite the
    # results files
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("topics", nargs="*", help=f"benchmarks to run (default {' '.join(ORDER)}); one of "
                    f"{sorted(p.stem[6:] for p in HERE.glob('bench_*.py'))}; one that fails leaves its "
                    "results file as it was, the others still run")
    ap.add_argument("--merge-only", action="store_true", help="only rebuild RESULTS.md from results_*.md")
    args = ap.parse_args(argv)
    available = sorted(p.stem[6:] for p in HERE.glob("bench_*.py"))
    if args.merge_only and args.topics:
        ap.error(f"--merge-only runs no benchmark, but {' '.join(args.topics)} was named too: drop one of "
                 "the two")
    topics = args.topics or ORDER
    # all checked before any runs (a typo after 'streaming' was found a minute later, after it had run)
    unknown = [t for t in topics if t not in available]
    if unknown:
        ap.error(f"no benchmark named {', '.join(map(repr, unknown))}; available: {available}")
    failed = []
    if not args.merge_only:
        for topic in topics:
            script = HERE / f"bench_{topic}.py"
            print(f"== {script.name}", flush=True)
            # a benchmark that cannot run (e.g. bench_generator without work/grid.h5 on a fresh checkout)
            # leaves its results file as it was; the others still run and the merge still happens (its
            # CalledProcessError traceback used to stop everything)
            code = subprocess.run([sys.executable, str(script)]).returncode
            if code:
                failed.append(f"{script.name} (exit status {code})")
    merge()
    if failed:
        raise SystemExit(f"run_all.py: failed, their results files left as they were: {', '.join(failed)}")


if __name__ == "__main__":
    main(sys.argv[1:])
