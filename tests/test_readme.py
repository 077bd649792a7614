"""Every ```python block of README.md runs as written, in order, in one namespace (like a notebook), in a
temporary folder.

A block may be skipped only with a marker comment on the line right above its fence, saying why:

    <!-- readme-test: skip (needs the 2.2 GB SM-Net checkpoint from Zenodo) -->

(an HTML comment: invisible on GitHub). A block that needs an optional host package (``import dsps``) is
skipped when that package is not installed. Nothing here knows what the blocks contain, so new README
sections are tested as soon as they are written.
"""
import re
from pathlib import Path


README = Path(__file__).resolve().parents[1] / "README.md"
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


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    import importlib.util

    import matplotlib
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    matplotlib.use("Agg")                 # a snippet that plots must not need a display
    namespace = {"__name__": "__readme__"}
    ran, skipped = 0, []
    for line, code, skip in readme_blocks(README.read_text()):
        if skip:
            skipped.append(f"README.md:{line}: {skip}")
            continue
        missing = [name for name in IMPORT.findall(code) if importlib.util.find_spec(name) is None]
        if missing:
            skipped.append(f"README.md:{line}: {', '.join(missing)} not installed")
            continue
        try:
            exec(compile(code, f"README.md:{line}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"README.md block at line {line} failed: {type(exc).__name__}: {exc}\n"
                                 f"{code}") from exc
        ran += 1
    assert ran >= 3, skipped
    print(f"ran {ran} README blocks; skipped: {skipped}")
