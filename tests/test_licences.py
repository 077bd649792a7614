"""Packaging hygiene: one top-level import name, a licence, a notice for every shipped data file, and test
fixtures that may ship under MIT (the GPL-3 sourced ones are synthetic and reproducible)."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA_SUFFIXES = {".npz", ".npy", ".pt", ".fits", ".json", ".h5", ".dat", ".gz", ".txt", ".ls", ".spec",
                 ".teff"}


def _run_isolated(code, cwd):
    """Run ``code`` with -I from a folder outside the repository, so only the *installed* package is seen."""
    out = subprocess.run([sys.executable, "-I", "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_installed_distribution_has_one_top_level_name(tmp_path):
    out = _run_isolated("""
        import importlib, importlib.metadata as md
        dist = md.distribution("smnet-sps")
        print("TOP", sorted((dist.read_text("top_level.txt") or "").split()))
        for name in ("plugins", "isochrones"):
            try:
                importlib.import_module(name)
                print("IMPORTABLE", name)
            except ImportError:
                pass
        import smnet_sps.plugins.dsps_backend, smnet_sps.isochrone_tables
        print("EPS", sorted(ep.value.split(".")[0] for ep in dist.entry_points))
    """, tmp_path)
    assert "TOP ['smnet_sps']" in out
    assert "IMPORTABLE" not in out, out
    assert "EPS ['smnet_sps'" in out and "'plugins'" not in out


def test_licence_file_is_mit_and_declared():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "THIRD_PARTY_NOTICES.md" in text
    assert 'license = "MIT"' in (ROOT / "pyproject.toml").read_text()


def _shipped_data_files():
    files = []
    for folder in (ROOT / "smnet_sps" / "data", ROOT / "isochrones"):
        files += [p for p in folder.rglob("*") if p.is_file() and p.suffix in DATA_SUFFIXES]
    return files


def test_every_shipped_data_file_has_a_notice():
    notices = (ROOT / "THIRD_PARTY_NOTICES.md").read_text()
    missing = []
    for p in _shipped_data_files():
        rel = p.relative_to(ROOT).as_posix()
        if rel in notices or f"{p.parent.relative_to(ROOT).as_posix()}/" in notices:
            continue
        missing.append(rel)
    assert missing == []


def test_fixture_table_has_no_gpl_data():
    """Every library fixture row names a licence that fits MIT; GPL-3 sources only as synthetic stand-ins."""
    readme = (ROOT / "tests" / "fixtures" / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    folders = {line.split("`")[1].split("/")[0] for line in rows}
    on_disk = {p.name for p in (ROOT / "tests" / "fixtures" / "libraries").iterdir()
               if p.is_dir() and not p.name.startswith(("_", "."))}
    assert on_disk <= folders, on_disk - folders          # every fixture folder is documented
    for line in rows:
        if "GPL" in line:
            assert "SYNTHETIC" in line and "synthetic, MIT" in line, line


def test_synthetic_fixtures_are_exactly_what_the_script_writes(tmp_path):
    """The committed BaSeL / CM87 fixtures are reproducible from analytic spectra (no GPL bytes left)."""
    script = ROOT / "tests" / "fixtures" / "libraries" / "make_synthetic_fixtures.py"
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, capture_output=True, timeout=120)
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert len(written) == 5
    for rel in written:
        committed = ROOT / "tests" / "fixtures" / "libraries" / rel
        assert committed.read_bytes() == (tmp_path / rel).read_bytes(), rel


@pytest.mark.parametrize("folder", ["basel22_lejeune_solar", "pegase_cm87_hotstars"])
def test_synthetic_fixture_is_not_the_real_library(folder, fixtures_dir):
    """Guard against the real (GPL-3 sourced) files coming back: the real CM87 file's first parameter line
    is '4.778 4.50 .1771E+11 ...' and the real BaSeL 5750 K file starts with zero flux."""
    import gzip
    if folder == "pegase_cm87_hotstars":
        text = (fixtures_dir / "libraries" / folder / "stellibCM.dat").read_text()
        assert ".1771E+11" not in text.splitlines()[1]
    else:
        path = fixtures_dir / "libraries" / folder / "spectra" / "lej_t05750g04.5.txt.gz"
        first = gzip.decompress(path.read_bytes()).decode().splitlines()[0].split()
        assert float(first[1]) > 0
