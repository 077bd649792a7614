"""A run's record of where its inputs came from: the grid it trained on (by content, not by file), the options
a resume continues with, and the generator behind every output file.

Tiny runs (width 16, depth 1, one or two epochs) on the synthetic grid of test_train.
"""

import json

import h5py
import pytest
import torch
from test_train import make_synthetic_grid

from smnet_sps.grid import build_grid, save_grid
from smnet_sps.train import read_grid, train

TINY = dict(width=16, depth=1, batch_size=32, progress=False, device="cpu", threads=1)


@pytest.fixture(scope="module")
def synth_grid(tmp_path_factory):
    return make_synthetic_grid(tmp_path_factory.mktemp("grid") / "grid.h5")


# 1. the grid by content

def test_resume_onto_a_rebuild_of_the_same_grid(fixtures_dir, tmp_path):
    """Two builds from the same library files differ in the build's time attributes only: the files' sha256
    differed, and `train --resume` onto the rebuilt file was refused as another grid."""
    libdir = fixtures_dir / "libraries"
    grid = build_grid(libdir, only=["cm87"], progress=False, log=lambda s: None)
    first = save_grid(grid, tmp_path / "grid.h5")
    out = tmp_path / "m"
    train(first, out, epochs=1, **TINY)
    rebuilt = build_grid(libdir, only=["cm87"], progress=False, log=lambda s: None)
    rebuilt.attrs.update(created="2031-01-01T00:00:00+00:00", build_seconds=123.4)     # a later, slower build
    second = save_grid(rebuilt, tmp_path / "rebuilt.h5")
    a, b = read_grid(first), read_grid(second)
    assert a.sha256 != b.sha256 and a.content_sha256 == b.content_sha256
    cfg = train(second, out, epochs=2, resume=True, **TINY)
    assert cfg["training"]["epochs_run"] == 2
    assert cfg["grid_content_sha256"] == b.content_sha256
    assert torch.load(out / "checkpoint.pt", weights_only=True)["grid_content_sha256"] == b.content_sha256

    # a grid whose data differ in one value is still another grid, named by both content hashes
    with h5py.File(second, "r+") as f:
        f["teff"][0] = f["teff"][0] + 1.0
    changed = read_grid(second)
    with pytest.raises(ValueError, match="content sha256") as info:
        train(changed, out, epochs=3, resume=True, **TINY)
    assert b.content_sha256[:12] in str(info.value) and changed.content_sha256[:12] in str(info.value)


def test_a_checkpoint_with_the_file_sha256_only_still_resumes_onto_its_file(synth_grid, tmp_path):
    out = tmp_path / "m"
    train(synth_grid, out, epochs=1, **TINY)
    ckpt = out / "checkpoint.pt"
    old = torch.load(ckpt, weights_only=True)
    del old["grid_content_sha256"]             # as written before the content hash was recorded
    torch.save(old, ckpt)
    cfg = train(synth_grid, out, epochs=2, resume=True, **TINY)
    assert cfg["training"]["epochs_run"] == 2
    other = make_synthetic_grid(tmp_path / "other.h5", seed=1)       # another file: still refused
    old = torch.load(ckpt, weights_only=True)
    del old["grid_content_sha256"]
    torch.save(old, ckpt)
    with pytest.raises(ValueError, match="sha256"):
        train(other, out, epochs=3, resume=True, **TINY)


# 3. the grid's path

def test_config_records_the_grid_file_as_an_absolute_path(synth_grid, tmp_path, monkeypatch):
    """config.json's grid_file was the path as typed (`--grid grid.h5`), which names another file, or none,
    from any other folder."""
    import shutil
    (tmp_path / "work").mkdir()
    shutil.copy(synth_grid, tmp_path / "work" / "grid.h5")
    monkeypatch.chdir(tmp_path)
    cfg = train("work/grid.h5", "m", epochs=1, **TINY)
    assert cfg["grid_file"] == str((tmp_path / "work" / "grid.h5").resolve())
    assert cfg["grid_file_given"] == "work/grid.h5"
    assert json.loads((tmp_path / "m" / "config.json").read_text())["grid_file"] == cfg["grid_file"]
