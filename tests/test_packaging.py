"""What ``pip install smnet-sps`` (a wheel, not an editable checkout) gets: the pyproject configuration a
current setuptools reads without deprecations, one version, and a wheel holding every file the package reads
at run time (weights, isochrone tables, Vega / Sun spectra, plugins) plus the licences and the README."""
import email
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# repository folder -> the package folder it installs as (pyproject's [tool.setuptools.package-dir])
INSTALLED_AS = {"smnet_sps": "smnet_sps", "plugins": "smnet_sps/plugins",
                "isochrones": "smnet_sps/isochrone_tables"}
LICENCE_FILES = ["LICENSE", "THIRD_PARTY_NOTICES.md", "isochrones/LICENSE_FSPS_MIT.txt"]


def _distribution():
    """setuptools' Distribution as configured by pyproject.toml, with setuptools' deprecations as errors."""
    setuptools = pytest.importorskip("setuptools", minversion="77")
    from setuptools.config.pyprojecttoml import apply_configuration
    with warnings.catch_warnings():
        # a deprecated field builds today and stops building on setuptools' due date (2027-02-18 for the
        # TOML-table `license` and `tool.setuptools.license-files`), for every user of `pip install`
        warnings.simplefilter("error", setuptools.SetuptoolsDeprecationWarning)
        return apply_configuration(setuptools.Distribution(), ROOT / "pyproject.toml")


def test_pyproject_uses_no_deprecated_setuptools_fields():
    dist = _distribution()
    assert dist.metadata.license_expression == "MIT"
    assert sorted(dist.metadata.license_files) == sorted(LICENCE_FILES)


def _tracked_files():
    """Files of the checkout that git tracks, relative to the root (None outside a git checkout)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        return None
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [f for f in out.stdout.split("\0") if f and (ROOT / f).is_file()]


def test_wheel_ships_every_runtime_file_licence_and_readme(tmp_path):
    """Build the wheel (no network: --no-build-isolation) from a copy of the tracked files, as a fresh clone
    holds them, and check that every tracked file of smnet_sps/, plugins/ and isochrones/ is in it where the
    code looks for it (PACKAGE_DATA, isochrone_dir(), smnet_sps.plugins), with licences and README."""
    pytest.importorskip("setuptools", minversion="77")
    tracked = _tracked_files()
    if tracked is None:
        pytest.skip("not a git checkout")
    src = tmp_path / "src"
    for rel in tracked:
        if rel.split("/")[0] in INSTALLED_AS or "/" not in rel:
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation",
                          "--no-index", "-w", str(tmp_path / "dist")], cwd=src, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    [wheel] = (tmp_path / "dist").glob("smnet_sps-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        [meta_name] = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = email.message_from_string(z.read(meta_name).decode("utf-8"))
    expected = set()
    for rel in tracked:
        top, _, rest = rel.partition("/")
        if top in INSTALLED_AS and rest:
            expected.add(f"{INSTALLED_AS[top]}/{rest}")
    missing = sorted(expected - names)
    assert missing == [], f"tracked files not in the wheel: {missing}"

    import smnet_sps
    assert meta["Version"] == smnet_sps.__version__
    assert meta["License-Expression"] == "MIT"
    dist_info = meta_name.rsplit("/", 1)[0]
    assert {f"{dist_info}/licenses/{f}" for f in LICENCE_FILES} <= names
    assert meta["Description-Content-Type"] == "text/markdown"
    assert meta.get_payload().strip() == (ROOT / "README.md").read_text().strip()


def test_version_has_one_source():
    """pyproject's version is read from smnet_sps.__version__ (what `smnet-sps --version` and the FITS / JSON
    provenance headers print), so a release bump of one cannot leave pip's metadata saying another."""
    import smnet_sps
    dist = _distribution()
    assert dist.metadata.version == smnet_sps.__version__
    try:
        import tomllib
    except ModuleNotFoundError:                  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project.get("dynamic", [])
