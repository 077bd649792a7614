"""Every ```python block of README.md and of each docs/*.md runs as written, in order, in one namespace per
file (like a notebook), in a temporary folder.

A block may be skipped only with a marker comment on the line right above its fence, saying why:

    <!-- readme-test: skip (needs the 2.2 GB SM-Net checkpoint from Zenodo) -->

(an HTML comment: invisible on GitHub). A block that needs an optional host package (``import dsps``) is
skipped when that package is not installed. Nothing here knows what the blocks contain, so new README
sections are tested as soon as they are written.
"""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*\((.+?)\)\s*-->\s*$")
IMPORT = re.compile(r"^\s*(?:import|from)\s+([A-Za-z_][\w]*)", re.M)


def readme_blocks(text):
    """[(line number, code, skip reason or None)] for every ```python block, in order."""
    blocks = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = SKIP.search(before)
        blocks.append((line, m.group(1), skip.group(1) if skip else None))
    return blocks


def test_readme_block_parser():
    text = ("intro\n```python\na = 1\n```\n<!-- readme-test: skip (no data here) -->\n```python\nb = 2\n```\n"
            "```bash\nls\n```\n```python\nc = a\n```\n")
    blocks = readme_blocks(text)
    assert [(code, skip) for _, code, skip in blocks] == [("a = 1\n", None), ("b = 2\n", "no data here"),
                                                          ("c = a\n", None)]
    assert [line for line, _, _ in blocks] == [2, 6, 12]


def test_readme_has_python_blocks():
    assert len(readme_blocks(README.read_text())) >= 3


def run_blocks(path, tmp_path, monkeypatch):
    """Run the ```python blocks of ``path`` in one namespace; returns (ran, skipped reasons)."""
    import importlib.util

    import matplotlib
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    matplotlib.use("Agg")                 # a snippet that plots must not need a display
    namespace = {"__name__": "__readme__"}
    ran, skipped = 0, []
    for line, code, skip in readme_blocks(path.read_text()):
        where = f"{path.relative_to(ROOT)}:{line}"
        if skip:
            skipped.append(f"{where}: {skip}")
            continue
        missing = [name for name in IMPORT.findall(code) if importlib.util.find_spec(name) is None]
        if missing:
            skipped.append(f"{where}: {', '.join(missing)} not installed")
            continue
        try:
            exec(compile(code, where, "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"{where}: block failed: {type(exc).__name__}: {exc}\n{code}") from exc
        ran += 1
    print(f"ran {ran} blocks of {path.name}; skipped: {skipped}")
    return ran, skipped


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    ran, skipped = run_blocks(README, tmp_path, monkeypatch)
    assert ran >= 3, skipped


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_docs_python_blocks_run(doc, tmp_path, monkeypatch):
    # fails when a block raises; every skip carries its reason (a marker or a missing host package)
    run_blocks(doc, tmp_path, monkeypatch)


def test_docs_have_runnable_blocks():
    runnable = [b for d in DOCS for b in readme_blocks(d.read_text()) if b[2] is None]
    assert len(runnable) >= 10
