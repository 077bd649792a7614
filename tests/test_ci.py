"""CI runs exactly the README's test command, and that command lints before it tests."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_test_command():
    text = (ROOT / "README.md").read_text()
    commands = re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M)
    lines = [ln for block in commands for ln in block.splitlines() if "pytest" in ln]
    assert len(lines) == 1, lines
    return lines[0].strip()


def test_ci_runs_the_readme_test_command():
    script = (ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in script                      # any failing step fails CI
    assert _readme_test_command() in [ln.strip() for ln in script.splitlines()]


def test_lint_runs_before_the_tests():
    command = _readme_test_command()
    assert "ruff check smnet_sps plugins tests benchmarks" in command
    assert command.index("ruff check") < command.index("pytest")


def test_ruff_config_uses_the_project_line_length():
    try:
        import tomllib
    except ModuleNotFoundError:                  # Python 3.10
        import pytest
        tomllib = pytest.importorskip("tomli")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["tool"]["ruff"]["line-length"] == 110
    assert any(dep.startswith("ruff") for dep in config["project"]["optional-dependencies"]["test"])
