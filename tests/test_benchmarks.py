"""The benchmark scripts (benchmarks/bench_*.py, run_all.py): argument checks and the text they write."""
import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_bench(name, results_dir=None):
    """benchmarks/<name>.py as a module; its results files go to ``results_dir`` when given."""
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
