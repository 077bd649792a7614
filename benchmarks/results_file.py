"""The one writer of the benchmarks' results files (``results_<topic>.md``), shared by every bench_*.py.

Convention (benchmarks/RESULTS.md says it too):

* Notes added by hand go between ``<!-- notes -->`` and ``<!-- /notes -->`` lines. A rerun keeps that block
  from the old file (where the new text holds an empty block, there; else at the end). Anything else in the
  file is the script's output and is replaced. A block opened but never closed is kept to the end of the old
  file (and closed): a note is never lost to a missing marker.
* A ``--quick`` run (smaller, not the documented settings) writes ``results_<topic>_quick.md`` beside the
  full file and leaves the full file untouched; run_all.py does not merge the ``_quick`` files into
  RESULTS.md.
"""
from __future__ import annotations

import re
from pathlib import Path

NOTES_START, NOTES_END = "<!-- notes -->", "<!-- /notes -->"
QUICK_SUFFIX = "_quick"
_BLOCK = re.compile(re.escape(NOTES_START) + r".*?(?:" + re.escape(NOTES_END) + r"|\Z)", re.DOTALL)


def quick_path(path):
    """``results_x.md`` -> ``results_x_quick.md`` (the file a quick run writes)."""
    path = Path(path)
    return path if is_quick(path) else path.with_name(path.stem + QUICK_SUFFIX + path.suffix)


def is_quick(path):
    """Whether ``path`` is a quick run's results file (not merged into RESULTS.md)."""
    return Path(path).stem.endswith(QUICK_SUFFIX)


def notes_blocks(text):
    """The hand-written note blocks of a results file, markers included (each closed)."""
    blocks = []
    for m in _BLOCK.finditer(text):
        block = m.group(0).rstrip()
        blocks.append(block if block.endswith(NOTES_END) else block + "\n" + NOTES_END)
    return blocks


def write_results(path, text, *, quick=False):
    """Write a benchmark's results ``text`` to ``path`` (``quick``: to :func:`quick_path` instead), keeping
    the old file's notes blocks. Returns the path written."""
    path = quick_path(path) if quick else Path(path)
    old = notes_blocks(path.read_text()) if path.is_file() else []
    if old:
        kept = "\n\n".join(old)
        if _BLOCK.search(text):             # the script's placeholder: the notes go there
            text = _BLOCK.sub(lambda m: kept, text, count=1)
        else:
            text = text.rstrip("\n") + "\n\n" + kept + "\n"
    path.write_text(text)
    return path
