"""Training's outputs survive interruptions, --resume continues only the run it was given, and clear errors.

Tiny runs (width 16, depth 1, a few epochs) on the synthetic grid of test_train.
"""

import dataclasses
import json

import numpy as np
import pytest
import torch
from test_train import make_synthetic_grid

import smnet_sps.train as train_module
from smnet_sps.train import TrainingGrid, train

TINY = dict(width=16, depth=1, batch_size=32, progress=False, device="cpu", threads=1)


@pytest.fixture(scope="module")
def synth_grid(tmp_path_factory):
    return make_synthetic_grid(tmp_path_factory.mktemp("grid") / "grid.h5")


@pytest.fixture(scope="module")
def trained(synth_grid, tmp_path_factory):
    """A finished two-epoch run; tests copy it before changing anything."""
    out = tmp_path_factory.mktemp("trained") / "m"
    train(synth_grid, out, epochs=2, **TINY)
    return out


@pytest.fixture
def model_copy(trained, tmp_path):
    import shutil
    out = tmp_path / "m"
    shutil.copytree(trained, out)
    return out


def _epoch(ckpt):
    return torch.load(ckpt, weights_only=True)["state"]["epoch"]


# 1. atomic writes and unreadable checkpoints

def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(synth_grid, model_copy, monkeypatch):
    before = {f: (model_copy / f).read_bytes() for f in ("checkpoint.pt", "weights.pt", "config.json")}
    real_save = torch.save

    def dying_save(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:            # a kill part way: some bytes, not the whole file
            fh.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("simulated kill during the write")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(OSError, match="simulated kill"):
        train(synth_grid, model_copy, epochs=4, save_every=1, resume=True, **TINY)
    monkeypatch.setattr(torch, "save", real_save)
    for f, data in before.items():
        assert (model_copy / f).read_bytes() == data, f
    assert not [p.name for p in model_copy.iterdir() if ".part" in p.name]      # no temporary file left
    cfg = train(synth_grid, model_copy, epochs=4, resume=True, **TINY)
    assert cfg["training"]["epochs_run"] == 4


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "wrong_keys", "pickled_object",
                                    "tensor_bytes"])
def test_an_unreadable_checkpoint_is_a_clear_error(synth_grid, model_copy, damage):
    """tensor_bytes: torch.load does not check the tensors' CRC-32, so a checkpoint damaged inside them (a bad
    copy) resumed other weights without a word."""
    ckpt = model_copy / "checkpoint.pt"
    if damage == "tensor_bytes":
        from test_neural import _damage_tensor_bytes
        _damage_tensor_bytes(ckpt, ckpt)
    elif damage == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[:2000])
    elif damage == "garbage":
        ckpt.write_bytes(b"this is not a checkpoint at all" * 10)
    elif damage == "empty":
        ckpt.write_bytes(b"")
    elif damage == "wrong_keys":
        torch.save({"weights": torch.zeros(3)}, ckpt)
    else:                                    # a pickle that would run code: refused, not executed
        torch.save({"model": TrainingGrid}, ckpt)
    with pytest.raises(ValueError, match="checkpoint.pt") as err:
        train(synth_grid, model_copy, epochs=3, resume=True, **TINY)
    message = str(err.value)
    assert "\n" not in message and "put back a good copy" in message and "--overwrite" in message


# 2. the recipe of the run is kept and a resume must match it

def test_resume_refuses_other_training_options_and_lists_them(synth_grid, model_copy):
    before = (model_copy / "checkpoint.pt").read_bytes()
    with pytest.raises(ValueError) as err:
        train(synth_grid, model_copy, epochs=3, resume=True, tail_floor=1e-3, lr=1e-3, libraries=["liba"],
              **TINY)
    message = str(err.value)
    for part in ("--tail-floor 1e-06 in the checkpoint, 0.001 now", "--lr 0.002 in the checkpoint, 0.001 now",
                 "--libraries ['liba', 'libb'] in the checkpoint, ['liba'] now", "train into a new --out"):
        assert part in message
    assert (model_copy / "checkpoint.pt").read_bytes() == before
    for option in (dict(pixel_loss="log"), dict(uv_weight=2.0), dict(input_jitter=0.1), dict(node_blend=0.2),
                   dict(w_max=2.0), dict(seed=1), dict(ema_decay=0.9), dict(exclude_nodes=[3, 4]),
                   dict(init_from=str(model_copy))):
        with pytest.raises(ValueError, match="was trained with other options"):
            train(synth_grid, model_copy, epochs=3, resume=True, **option, **TINY)


def test_resume_may_extend_the_run_and_change_where_and_how_long_it_runs(synth_grid, model_copy):
    # the same recipe spelled otherwise (all libraries named, one jitter width as three) is the same run
    cfg = train(synth_grid, model_copy, epochs=3, resume=True, minutes=30, patience=5, keep="final",
                libraries=["libb", "liba"], input_jitter=[0.0, 0.0, 0.0], **dict(TINY, threads=2))
    assert cfg["training"]["epochs_run"] == 3 and cfg["training"]["kept"] == "final"
    torch.set_num_threads(1)
    # without input jitter, the jitter floor and quantile train nothing: any value resumes the same run
    cfg = train(synth_grid, model_copy, epochs=4, resume=True, jitter_floor=0.5, jitter_quantile=0.9, **TINY)
    assert cfg["training"]["epochs_run"] == 4


def test_options_added_to_the_recipe_later_count_as_their_old_behaviour(synth_grid, tmp_path):
    out = tmp_path / "j"
    train(synth_grid, out, epochs=2, input_jitter=[0.5, 0.0, 0.5], **TINY)
    ckpt = out / "checkpoint.pt"
    old = torch.load(ckpt, weights_only=True)
    for key in ("jitter_floor", "jitter_quantile"):          # as written before the per-node jitter existed
        del old["recipe"][key]
    torch.save(old, ckpt)
    with pytest.raises(ValueError, match="--jitter-floor 1.0 in the checkpoint, 0.2 now"):
        train(synth_grid, out, epochs=3, resume=True, input_jitter=[0.5, 0.0, 0.5], jitter_floor=0.2, **TINY)
    # the quantile means nothing at floor 1 (the old behaviour): resumed as the same run
    cfg = train(synth_grid, out, epochs=3, resume=True, input_jitter=[0.5, 0.0, 0.5], jitter_quantile=0.9,
                **TINY)
    assert cfg["training"]["epochs_run"] == 3


def test_a_checkpoint_without_a_recipe_still_resumes(synth_grid, model_copy):
    ckpt = model_copy / "checkpoint.pt"
    old = torch.load(ckpt, weights_only=True)
    del old["recipe"]                       # as written before the recipe was recorded
    torch.save(old, ckpt)
    cfg = train(synth_grid, model_copy, epochs=3, resume=True, **TINY)
    assert cfg["training"]["epochs_run"] == 3
    assert "recipe" in torch.load(ckpt, weights_only=True)      # recorded from now on
    with pytest.raises(ValueError, match="resume"):             # architecture, grid and split still checked
        train(synth_grid, model_copy, epochs=4, resume=True, **dict(TINY, width=8))


# 3. checkpoints by time and on interruption

def _count_checkpoint_writes(monkeypatch):
    writes = []
    real = train_module.atomic_output

    def counting(path, **kwargs):
        if path.name == "checkpoint.pt":
            writes.append(path)
        return real(path, **kwargs)

    monkeypatch.setattr(train_module, "atomic_output", counting)
    return writes


def test_a_checkpoint_is_written_when_enough_time_has_passed(synth_grid, tmp_path, monkeypatch):
    writes = _count_checkpoint_writes(monkeypatch)
    train(synth_grid, tmp_path / "m", epochs=3, save_every=1000, save_minutes=1e-9, **TINY)
    assert len(writes) == 4                  # after each of the 3 epochs, and the final write
    writes.clear()
    train(synth_grid, tmp_path / "n", epochs=3, save_every=1000, **TINY)
    assert len(writes) == 1                  # default: every 10 minutes; only the final write here


def _interrupt_after(monkeypatch, n_batches):
    """Ctrl-C during the training batch number ``n_batches`` (validation passes are not counted)."""
    calls = []
    real = train_module.masked_mse

    def interrupted(*args, **kwargs):
        if "node_loss" in kwargs:
            calls.append(1)
            if len(calls) == n_batches:
                raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "masked_mse", interrupted)


def test_an_interruption_saves_a_checkpoint_and_resume_continues(synth_grid, tmp_path, monkeypatch):
    out = tmp_path / "m"
    _interrupt_after(monkeypatch, 10)        # in the third epoch (4 batches each)
    with pytest.raises(KeyboardInterrupt) as err:
        train(synth_grid, out, epochs=50, **TINY)
    assert "after 2 epochs" in err.value.__notes__[-1]
    assert _epoch(out / "checkpoint.pt") == 2
    cfg = json.loads((out / "config.json").read_text())            # the model so far, valid JSON
    assert cfg["training"]["epochs_run"] == 2 and not cfg["training"]["finished"]
    monkeypatch.undo()
    assert train(synth_grid, out, epochs=3, resume=True, **TINY)["training"]["epochs_run"] == 3


def test_a_model_of_an_unfinished_training_loads_with_a_warning(synth_grid, tmp_path, monkeypatch):
    """The model files an interrupted run leaves (its weights after 2 of 50 epochs) loaded without a word, as
    if trained: a run never resumed was used silently. Now a warning says so and how to finish it; the
    finished run loads without one."""
    import warnings

    from smnet_sps.neural import load_generator
    out = tmp_path / "m"
    _interrupt_after(monkeypatch, 10)        # in the third epoch (4 batches each)
    with pytest.raises(KeyboardInterrupt):
        train(synth_grid, out, epochs=50, **TINY)
    monkeypatch.undo()
    with pytest.warns(UserWarning, match=r"training has not finished \(2 epochs run.*--resume"):
        load_generator(out, device="cpu")
    train(synth_grid, out, epochs=3, resume=True, **TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_generator(out, device="cpu")


def test_a_second_ctrl_c_during_the_interruptions_write_leaves_a_loadable_model(synth_grid, tmp_path,
                                                                               monkeypatch):
    """Ctrl-C pressed again while the first one's checkpoint and model were written (landing right after
    weights.pt was renamed) left the new weights beside the old config.json: a model load_generator refuses
    (weights sha256). The write now finishes first; the folder holds the model of the checkpoint's epoch."""
    import os
    import signal

    from smnet_sps.neural import load_generator
    out = tmp_path / "m"
    _interrupt_after(monkeypatch, 10)        # in the third epoch (4 batches each), after two written epochs
    real_replace, weights_written = os.replace, []

    def second_ctrl_c(src, dst):
        real_replace(src, dst)
        if os.path.basename(dst) == "weights.pt":
            weights_written.append(dst)
            if len(weights_written) == 3:           # epochs 1 and 2, then the first Ctrl-C's write
                os.kill(os.getpid(), signal.SIGINT)          # Python's handler runs at once, here

    monkeypatch.setattr(os, "replace", second_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        train(synth_grid, out, epochs=50, save_every=1, keep="final", **TINY)     # new weights each write
    monkeypatch.undo()
    assert len(weights_written) == 3
    with pytest.warns(UserWarning, match="has not finished"):                  # 2 of 50 epochs
        assert load_generator(out, device="cpu") is not None   # weights.pt and config.json match
    assert json.loads((out / "config.json").read_text())["training"]["epochs_run"] == 2


def test_an_interruption_in_the_first_epoch_saves_the_checkpoint_only(synth_grid, tmp_path, monkeypatch):
    out = tmp_path / "m"
    _interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train(synth_grid, out, epochs=50, **TINY)
    assert _epoch(out / "checkpoint.pt") == 0 and not (out / "config.json").exists()
    monkeypatch.undo()
    assert train(synth_grid, out, epochs=1, resume=True, **TINY)["training"]["epochs_run"] == 1


def test_cli_interruption_is_one_line_and_says_how_to_continue(synth_grid, tmp_path, monkeypatch, capsys):
    from smnet_sps.cli import main
    _interrupt_after(monkeypatch, 3)         # the CLI batch (256) is one per epoch
    out = tmp_path / "m"
    try:
        code = main(["train", "--grid", str(synth_grid), "--out", str(out), "--width", "16", "--depth", "1",
                     "--epochs", "50", "--device", "cpu", "--no-progress", "--threads", "1"])
    except KeyboardInterrupt:               # escaping, it would stop the whole pytest session
        pytest.fail("the CLI let the interruption through as a traceback")
    assert code == 130
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "interrupted after 2 epochs" in err and "--resume" in err
    assert _epoch(out / "checkpoint.pt") == 2


@pytest.mark.parametrize("failing_save, kept", [(1, None), (2, 50)])
def test_a_full_disk_says_what_is_kept_and_resume_gives_the_straight_run(synth_grid, tmp_path, monkeypatch,
                                                                         capsys, failing_save, kept):
    """A full disk at a periodic write (the 1st: the checkpoint of epoch 50; the 2nd: the model files after
    it) said only "train: error: [Errno 28] No space left on device": no file named, nor that the checkpoint
    on disk continues the run. The resume gives the uninterrupted run's weights."""
    import errno
    import os

    from smnet_sps.cli import main
    argv = ["train", "--grid", str(synth_grid), "--width", "16", "--depth", "1", "--epochs", "60",
            "--device", "cpu", "--no-progress", "--threads", "1"]
    assert main([*argv, "--out", str(tmp_path / "straight")]) == 0
    real_save, calls = torch.save, []

    def full_disk(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) == failing_save:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    out = tmp_path / "m"
    assert main([*argv, "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "No space left on device" in err, err
    assert not [p.name for p in tmp_path.rglob("*") if ".part" in p.name]        # no temporary file left
    if kept is None:
        assert err.endswith("no checkpoint of this run was saved: free space and run it again"), err
        return
    assert err.endswith(f"{out / 'checkpoint.pt'} holds the run at epoch {kept}: free space, then continue "
                        "with the same options and --resume"), err
    assert _epoch(out / "checkpoint.pt") == kept
    monkeypatch.undo()
    assert main(["train", "--out", str(out), "--resume", "--no-progress", "--threads", "1",
                 "--device", "cpu"]) == 0
    straight = torch.load(tmp_path / "straight" / "weights.pt", weights_only=True)
    resumed = torch.load(out / "weights.pt", weights_only=True)
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_ctrl_c_before_an_overwriting_run_trains_offers_no_old_checkpoint(synth_grid, model_copy, monkeypatch,
                                                                          capsys):
    """`train --overwrite` into a model folder, interrupted before training began (reading the grid), said
    "OUT/checkpoint.pt holds the last checkpoint: continue it with --resume": the replaced run's checkpoint,
    whose resume went on with that run's options, not the ones just given. It now says nothing was written
    and the old model is as it was."""
    from smnet_sps.cli import main
    before = {p.name: p.read_bytes() for p in model_copy.iterdir()}

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "read_grid", ctrl_c)
    capsys.readouterr()
    assert main(["train", "--grid", str(synth_grid), "--out", str(model_copy), "--overwrite", "--width", "16",
                 "--depth", "1", "--batch-size", "16", "--epochs", "5", "--device", "cpu", "--no-progress",
                 "--threads", "1"]) == 130
    err = capsys.readouterr().err.strip()
    assert err == (f"smnet-sps train: interrupted before training began; nothing written: {model_copy} holds "
                   "the model --overwrite was to replace, as it was"), err
    assert {p.name: p.read_bytes() for p in model_copy.iterdir()} == before



def test_a_ctrl_c_during_the_final_write_leaves_the_finished_model(synth_grid, model_copy, monkeypatch):
    """Ctrl-C during the model write at the end of training (landing right after weights.pt was renamed)
    left the new weights beside the replaced model's config.json: load_generator refused it ("weights file
    ... does not match its config.json: sha256"). The write now finishes first: the new model loads."""
    import os
    import signal

    from smnet_sps.neural import load_generator
    real_replace = os.replace

    def ctrl_c(src, dst):
        real_replace(src, dst)
        if os.path.basename(dst) == "weights.pt":           # only the final write (no periodic one)
            os.kill(os.getpid(), signal.SIGINT)          # Python's handler runs at once, here

    monkeypatch.setattr(os, "replace", ctrl_c)
    with pytest.raises(KeyboardInterrupt) as stopped:
        train(synth_grid, model_copy, epochs=3, overwrite=True, seed=5, **TINY)
    monkeypatch.undo()
    # the line the command prints (its last note): the model is complete, not "continue it with --resume"
    assert stopped.value.__notes__[-1] == (f"interrupted after the model was written: {model_copy} holds the "
                                           "finished run (nothing to resume)")
    assert load_generator(model_copy, device="cpu") is not None       # weights.pt and config.json match
    cfg = json.loads((model_copy / "config.json").read_text())
    assert cfg["seed"] == 5 and cfg["training"]["epochs_run"] == 3 and cfg["training"]["finished"]


def test_ctrl_c_at_an_overwriting_runs_first_checkpoint_is_not_before_training(synth_grid, model_copy,
                                                                               monkeypatch, capsys):
    """`train --overwrite` that trained (3 epochs, no periodic write) and was interrupted while its final
    checkpoint was written said "interrupted before training began": the checkpoint's stamp was unchanged.
    It now says the run was interrupted with nothing of it saved, the replaced model as it was."""
    import os

    from smnet_sps.cli import main
    before = {p.name: p.read_bytes() for p in model_copy.iterdir()}
    real_save = torch.save

    def ctrl_c_at_the_checkpoint(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)) and "checkpoint" in os.fspath(f):
            raise KeyboardInterrupt
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", ctrl_c_at_the_checkpoint)
    capsys.readouterr()
    assert main(["train", "--grid", str(synth_grid), "--out", str(model_copy), "--overwrite", "--width", "16",
                 "--depth", "1", "--batch-size", "32", "--epochs", "3", "--seed", "6", "--device", "cpu",
                 "--no-progress", "--threads", "1"]) == 130
    err = capsys.readouterr().err.strip()
    assert err == (f"smnet-sps train: interrupted; nothing of this run was saved: {model_copy} holds the "
                   "model --overwrite was to replace, as it was"), err
    assert {p.name: p.read_bytes() for p in model_copy.iterdir()} == before


# 4. clear errors for bad options and grids

@pytest.mark.parametrize("threads", [-1, 0, 1.5, True])
def test_threads_must_be_a_positive_whole_number(synth_grid, tmp_path, threads):
    with pytest.raises(ValueError, match="threads must be a whole number >= 1"):
        train(synth_grid, tmp_path / "m", **dict(TINY, threads=threads))


def test_cli_threads_minus_one_is_a_one_line_error(synth_grid, tmp_path, capsys):
    from smnet_sps.cli import main
    assert main(["train", "--grid", str(synth_grid), "--out", str(tmp_path / "m"), "--threads", "-1",
                 "--no-progress"]) == 1
    assert "threads must be a whole number >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("floor", [2.0, 1.0, -1.0, float("nan"), float("inf"), "x"])
def test_tail_floor_must_be_a_fraction_below_one(synth_grid, tmp_path, floor):
    with pytest.raises(ValueError, match=r"tail_floor must be a number in \[0, 1\)"):
        train(synth_grid, tmp_path / "m", epochs=1, tail_floor=floor, **TINY)
    assert not (tmp_path / "m" / "config.json").exists()


def test_tail_floor_zero_keeps_every_pixel_and_writes_valid_json(synth_grid, tmp_path):
    cfg = train(synth_grid, tmp_path / "m", epochs=1, tail_floor=0.0, **TINY)
    assert cfg["tail_floor"] == 0.0 and "tail_file" not in cfg
    json.loads((tmp_path / "m" / "config.json").read_text(), parse_constant=lambda c: pytest.fail(c))


def test_a_grid_without_stellar_spectra_is_refused(tmp_path):
    wave = np.geomspace(1000.0, 50000.0, 20)
    empty = TrainingGrid(wavelength=wave, teff=np.zeros(0), logg=np.zeros(0), logz=np.zeros(0),
                         library_id=np.zeros(0, int), library_names=[], flux=np.zeros((0, 20)),
                         mask=np.zeros((0, 20), bool), path="phase_only.h5")
    with pytest.raises(ValueError, match="phase_only.h5 holds no stellar spectra"):
        train(empty, tmp_path / "m", epochs=1, **TINY)


# 5. smnet-sps tail and the nodes a run left out

def test_tail_rebuild_leaves_out_the_excluded_nodes(synth_grid, tmp_path):
    from smnet_sps.tail import TAIL_FILE, write_tail_table
    from smnet_sps.train import read_grid, split_nodes
    g = read_grid(synth_grid)
    split = split_nodes(g.teff, g.logg, g.logz, g.library_id)
    held_out = np.flatnonzero(split == 0)[:12]
    out = tmp_path / "cv"
    train(synth_grid, out, epochs=1, exclude_nodes=held_out, **TINY)

    def tabulated():
        with np.load(out / TAIL_FILE) as f:
            return np.concatenate([f[k] for k in f.files if k.startswith("node:")])

    assert not np.isin(held_out, tabulated()).any()
    write_tail_table(out, synth_grid)
    nodes = tabulated()
    assert nodes.size and not np.isin(held_out, nodes).any()


@pytest.mark.parametrize("damage", ["truncated", "method", "encrypted", "npy_header"])
def test_tail_with_a_truncated_nodes_file_is_a_clear_error(synth_grid, model_copy, capsys, damage):
    """A damaged header (compression method, 'encrypted' flag) was zipfile's raw NotImplementedError /
    RuntimeError, which the hand-written reader did not catch; a damaged .npy header numpy's
    tokenize.TokenError, which read_npz did not."""
    from zip_damage import damage_npy_header, damage_zip_member
    from smnet_sps.cli import main
    from smnet_sps.tail import write_tail_table
    nodes = model_copy / "nodes.npz"
    if damage == "truncated":
        nodes.write_bytes(nodes.read_bytes()[:300])
    elif damage == "npy_header":
        damage_npy_header(nodes, nodes, "split.npy", old=b",)", new=b", ")
    else:
        damage_zip_member(nodes, nodes, "split.npy",
                          **({"method": 99} if damage == "method" else {"encrypted": True}))
    with pytest.raises(ValueError, match="nodes.npz is not a readable nodes file"):
        write_tail_table(model_copy, synth_grid)
    assert main(["tail", "--model", str(model_copy), "--grid", str(synth_grid), "--overwrite"]) == 1
    assert "nodes.npz is not a readable nodes file" in capsys.readouterr().err


def test_resuming_a_keep_final_run_with_keep_best_writes_the_best_epoch(synth_grid, tmp_path):
    """keep="final" overwrote the checkpoint's best weights with the final ones, so a resume with keep="best"
    (--keep may change) wrote the final weights labelled as the best epoch's."""
    out = tmp_path / "m"
    train(synth_grid, out, epochs=15, lr=0.05, keep="final", **TINY)
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    final = torch.load(out / "weights.pt", weights_only=True)
    best = {k: v.float() for k, v in ck["best_state"].items()}
    assert ck["state"]["best_epoch"] < 15, "the test needs a best epoch before the last"
    assert all(torch.equal(final[k], ck["model"][k].float()) for k in final)      # keep="final": the latest
    assert not all(torch.equal(final[k], best[k]) for k in final)
    train(synth_grid, out, epochs=15, lr=0.05, keep="best", resume=True, **TINY)
    kept = torch.load(out / "weights.pt", weights_only=True)
    assert all(torch.equal(kept[k], best[k]) for k in kept)
    assert json.loads((out / "config.json").read_text())["training"]["kept"] == "best"


def test_a_replaced_model_does_not_pass_on_its_library_mixture(synth_grid, model_copy, capsys):
    """`train --overwrite` into a folder holding another model used to leave that model's mixture.json, and
    the new network was then mixed by the old model's measured library preferences (optical flux up to 84 %
    off a fresh run of the same weights). The CLI removes it; a mixture.json not recorded in config.json
    is ignored with a warning."""
    import shutil
    import warnings

    from smnet_sps.cli import main
    from smnet_sps.neural import default_model_path, load_generator
    shutil.copy(default_model_path() / "mixture.json", model_copy / "mixture.json")
    with pytest.warns(UserWarning, match="not recorded"):
        assert load_generator(model_copy, device="cpu").mixture_policy is None
    args = ["--width", "16", "--depth", "1", "--epochs", "1", "--device", "cpu", "--no-progress",
            "--threads", "1"]
    assert main(["train", "--grid", str(synth_grid), "--out", str(model_copy), *args, "--overwrite"]) == 0
    assert "removed" in capsys.readouterr().out and not (model_copy / "mixture.json").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_generator(model_copy, device="cpu").mixture_policy is None


def test_a_failed_overwrite_leaves_the_old_model_loadable(tmp_path, capsys):
    """`train --overwrite` removed the old model's mixture.json before checking anything: a mistyped --grid
    then failed and left a model whose config.json names a missing mixture.json (unloadable)."""
    import shutil

    from smnet_sps.cli import main
    from smnet_sps.neural import default_model_path, load_generator
    old = tmp_path / "model"
    shutil.copytree(default_model_path(), old)
    assert main(["train", "--grid", str(tmp_path / "nosuch.h5"), "--out", str(old), "--overwrite",
                 "--device", "cpu", "--no-progress", "--threads", "1"]) == 1
    assert (old / "mixture.json").is_file()
    assert load_generator(old, device="cpu").mixture_policy is not None


@pytest.mark.parametrize("bad, match", [(dict(uv_weight=float("inf")), "uv_weight must be a finite"),
                                        (dict(lr=float("inf")), "lr must be a finite"),
                                        (dict(lr=0.0), "lr must be a finite"),
                                        (dict(patience=-5), "patience must be a whole number"),
                                        (dict(patience="200"), "patience must be a whole number")])
def test_options_that_make_the_loss_nan_or_stop_at_once_are_refused(synth_grid, tmp_path, bad, match):
    """--uv-weight inf / --lr inf trained on NaN losses and wrote the untrained weights as a model with exit
    status 0; --lr 0 and a negative --patience were accepted."""
    with pytest.raises(ValueError, match=match):
        train(synth_grid, tmp_path / "m", epochs=1, **(TINY | bad))
    assert not (tmp_path / "m" / "weights.pt").exists()


def test_a_diverged_run_writes_no_model(synth_grid, tmp_path):
    with pytest.raises(ValueError, match="no epoch gave a finite validation loss"):
        train(synth_grid, tmp_path / "m", epochs=2, **(TINY | dict(lr=1e30)))
    assert not (tmp_path / "m" / "weights.pt").exists()


def test_a_warm_start_needs_the_same_output_scaling(synth_grid, trained, tmp_path):
    """train --init-from BASE --tail-floor 0 (BASE: 1e-6) loaded BASE's out_mean / out_std over the ones
    fitted to this run's targets: de-standardised with scalings up to 7 dex apart."""
    with pytest.raises(ValueError, match="tail_floor=1e-06; a warm start needs the same"):
        train(synth_grid, tmp_path / "w", epochs=1, init_from=trained, **(TINY | dict(tail_floor=0.0)))


def test_a_warm_start_checks_the_files_of_its_model(synth_grid, trained, tmp_path):
    """--init-from BASE read BASE's weights.pt without the weights_sha256 its config.json records (which
    load_generator checks): another model's weights copied in were warm-started from without a word; and a
    truncated config.json was a bare 'Expecting value: line 6 column 16 (char 100)', naming no file."""
    import shutil
    base = tmp_path / "base"
    shutil.copytree(trained, base)
    other = tmp_path / "other"
    train(synth_grid, other, epochs=1, **(TINY | dict(seed=5)))
    (base / "weights.pt").write_bytes((other / "weights.pt").read_bytes())
    with pytest.raises(ValueError, match=r"init_from=.*base: weights file .*weights\.pt does not match its "
                                         r"config\.json: sha256 .* != recorded weights_sha256"):
        train(synth_grid, tmp_path / "w", epochs=1, init_from=base, **TINY)
    assert not (tmp_path / "w").exists()
    shutil.copy(trained / "weights.pt", base / "weights.pt")
    cfg = base / "config.json"
    cfg.write_text(cfg.read_text()[:100])
    with pytest.raises(ValueError, match=r"base/config\.json is not valid JSON"):
        train(synth_grid, tmp_path / "w", epochs=1, init_from=base, **TINY)
    shutil.copy(trained / "config.json", cfg)
    assert train(synth_grid, tmp_path / "w", epochs=1, init_from=base, **TINY)["training"]["epochs_run"] == 1


def test_a_refused_run_leaves_no_empty_model_folder(synth_grid, tmp_path, capsys):
    """A training refused by its checks (an unknown library, --resume without a checkpoint) left an empty
    --out folder behind; the folder is made once every check has passed."""
    from smnet_sps.cli import main
    for extra in (["--libraries", "nosuch"], ["--resume"]):
        out = tmp_path / f"model{len(extra)}"
        assert main(["train", "--grid", str(synth_grid), "--out", str(out), "--epochs", "1", *extra]) == 1
        assert not out.exists(), capsys.readouterr().err


@pytest.mark.parametrize("lock", ["flock", "no fcntl"])
def test_a_failed_run_into_new_folders_leaves_none_empty_and_keeps_what_it_wrote(synth_grid, tmp_path, lock,
                                                                                monkeypatch):
    """The folder was made and removed on two paths: by the lock where fcntl exists, with its missing
    parents; by train itself where it is missing (Windows), ``out`` only: a time budget that ran out before
    the first epoch left models/new behind there (out = models/new/m). One path now, on every platform: the
    folders the run made are removed where it leaves them empty, and kept where it wrote into them."""
    import sys
    if lock == "no fcntl":
        monkeypatch.setitem(sys.modules, "fcntl", None)        # `import fcntl` fails, as on Windows
    else:
        pytest.importorskip("fcntl")
    runs = {"unknown library": dict(libraries=["nosuch"]), "no checkpoint": dict(resume=True),
            "time budget": dict(minutes=1e-7)}
    for what, options in runs.items():
        top = tmp_path / what.replace(" ", "_")
        with pytest.raises((ValueError, FileNotFoundError)):
            train(synth_grid, top / "new" / "m", **{"epochs": 5, **TINY, **options})
        assert not top.exists(), what
    # interrupted in its first epoch: the checkpoint it wrote keeps the folder (and the folders above it)
    _interrupt_after(monkeypatch, 2)
    out = tmp_path / "kept" / "new" / "m"
    with pytest.raises(KeyboardInterrupt):
        train(synth_grid, out, epochs=2, **TINY)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"]


def _rebuilt_grid(synth_grid, path):
    """The synthetic grid rebuilt with its far infrared (> 20,000 A) 1.5 x brighter: same nodes, moved
    targets, so a warm start's output scaling differs from this grid's fit."""
    import shutil

    import h5py
    shutil.copy(synth_grid, path)
    with h5py.File(path, "r+") as f:
        far = f["wavelength"][...] > 2e4
        flux = f["flux"][...]
        flux[:, far] *= 1.5
        f["flux"][...] = flux
    return path


def test_a_resumed_warm_start_keeps_the_warm_start_scaling(synth_grid, trained, tmp_path, monkeypatch):
    """Resuming a warm start on a rebuilt grid skipped its re-standardisation: the resumed epochs trained
    towards targets standardised with this grid's fit but read out with the loaded out_mean / out_std
    (hunter's CK04 grid: loss 0.08 -> 1.97 after the resume, 0.155 dex off beyond 10 um instead of 0.009)."""
    grid_b = _rebuilt_grid(synth_grid, tmp_path / "rebuilt.h5")
    run = dict(TINY, epochs=30, init_from=trained, keep="final", save_every=1000, lr=0.02)
    straight = train(grid_b, tmp_path / "w1", **run)
    _interrupt_after(monkeypatch, 4 * 10 + 1)       # at the start of epoch 11 (4 batches each)
    with pytest.raises(KeyboardInterrupt):
        train(grid_b, tmp_path / "w2", **run)
    monkeypatch.undo()
    resumed = train(grid_b, tmp_path / "w2", resume=True, **run)
    # the epochs before the interruption (losses; the wall times differ)
    assert [r[2:] for r in straight["history"][:10]] == [r[2:] for r in resumed["history"][:10]]
    from smnet_sps.grid import load_grid
    from smnet_sps.neural import load_generator
    g = load_grid(grid_b)
    far = g.wavelength > 2e4
    flux = {}
    for run_dir in ("w1", "w2"):
        gen = load_generator(tmp_path / run_dir, device="cpu", fill_tail=False)
        flux[run_dir] = gen.surface_flux(g.teff, g.logg, g.logz)[0][:, far]
    off = {d: np.nanmedian(np.abs(np.log10(flux[d] / g.flux[:, far]))) for d in flux}
    assert off["w1"] < 0.03                             # 0.014 dex: the straight run learnt the rebuilt grid
    # the resumed run too: 0.144 dex off (it trained towards the old grid's far infrared) without the fix
    assert abs(off["w2"] - off["w1"]) < 0.005
    assert np.median(np.abs(np.log10(flux["w2"] / flux["w1"]))) < 0.005


def test_train_refuses_to_replace_a_model_unless_asked(synth_grid, model_copy, tmp_path, capsys):
    """train() from Python replaced weights.pt and checkpoint.pt without a word (only the CLI refused);
    it now refuses as build_expert_model does, and overwrite=True replaces the model and drops the old
    one's mixture.json."""
    import shutil

    from smnet_sps.neural import default_model_path
    before = {f: (model_copy / f).read_bytes() for f in ("weights.pt", "checkpoint.pt", "config.json")}
    with pytest.raises(ValueError, match=r"already holds a model or its checkpoint .*overwrite=True"):
        train(synth_grid, model_copy, epochs=1, seed=1, **TINY)
    assert {f: (model_copy / f).read_bytes() for f in before} == before
    only_checkpoint = tmp_path / "interrupted"          # an interruption in the first epoch leaves just this
    only_checkpoint.mkdir()
    shutil.copy(model_copy / "checkpoint.pt", only_checkpoint / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"\(checkpoint.pt\); pass resume=True"):
        train(synth_grid, only_checkpoint, epochs=1, **TINY)
    shutil.copy(default_model_path() / "mixture.json", model_copy / "mixture.json")
    cfg = train(synth_grid, model_copy, epochs=1, seed=1, overwrite=True, **TINY)
    assert cfg["seed"] == 1 and (model_copy / "weights.pt").read_bytes() != before["weights.pt"]
    assert not (model_copy / "mixture.json").exists() and "removed" in capsys.readouterr().out


def test_an_interrupted_and_resumed_run_repeats_the_straight_run_exactly(synth_grid, tmp_path, monkeypatch):
    """The draw generator was re-seeded with seed + epoch on resume instead of continuing: resumed at epoch
    11 (a clean epoch boundary) the losses and weights drifted from the straight run's (hunter: loss 0.996
    vs 0.841, weights up to 7.9e-3 apart). Its state is now saved in the checkpoint."""
    run = dict(TINY, epochs=20, save_every=10, patience=1000, input_jitter=0.5, node_blend=0.3)
    straight = train(synth_grid, tmp_path / "a", **run)
    _interrupt_after(monkeypatch, 4 * 10 + 1)       # the first batch of epoch 11 (4 batches each)
    with pytest.raises(KeyboardInterrupt):
        train(synth_grid, tmp_path / "b", **run)
    monkeypatch.undo()
    assert _epoch(tmp_path / "b" / "checkpoint.pt") == 10
    resumed = train(synth_grid, tmp_path / "b", resume=True, **run)
    assert [r[2:] for r in straight["history"]] == [r[2:] for r in resumed["history"]]
    wa = torch.load(tmp_path / "a" / "weights.pt", weights_only=True)
    wb = torch.load(tmp_path / "b" / "weights.pt", weights_only=True)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_checkpoint_without_the_draw_state_resumes_with_a_warning(synth_grid, model_copy):
    ck = torch.load(model_copy / "checkpoint.pt", weights_only=True)
    del ck["draw_rng"]                               # as written before the state was saved
    torch.save(ck, model_copy / "checkpoint.pt")
    with pytest.warns(UserWarning, match="predates the saved draw generator state"):
        cfg = train(synth_grid, model_copy, epochs=3, resume=True, **TINY)
    assert cfg["training"]["epochs_run"] == 3


@pytest.mark.parametrize("bad, match", [
    (dict(save_every=0), r"save_every must be a whole number >= 1, got 0"),
    (dict(save_every=-1), r"save_every must be a whole number >= 1, got -1"),
    (dict(test_every=0), r"test_every must be a whole number >= 1, got 0"),
    (dict(batch_size=2.5), r"batch_size must be a whole number >= 1, got 2.5"),
    (dict(epochs="10"), r"epochs must be a whole number >= 1, got '10'"),
    (dict(width=32.5), r"width must be a whole number >= 1, got 32.5"),
    (dict(depth=1.5), r"depth must be a whole number >= 1, got 1.5"),
    (dict(B=0.5), r"B must be a whole number >= 1, got 0.5"),
    (dict(minutes="5"), r"minutes must be a number > 0 \[min\] \(or None for no time limit\), got '5'"),
    (dict(exclude_nodes=[1.7]), r"exclude_nodes must be grid node indices \(whole numbers >= 0\), got "
                                r"\[1.7\]"),
    (dict(weight_decay=float("nan")), r"weight_decay must be a finite number >= 0, got nan"),
    (dict(exclude_nodes=[True, False]), r"exclude_nodes must be grid node indices")])
def test_python_arguments_that_crashed_deep_or_were_truncated_are_refused(synth_grid, tmp_path, bad, match):
    """save_every=0 raised ZeroDivisionError after the first epoch (an empty model folder), test_every=0 an
    OverflowError in split_nodes, batch_size=2.5 / epochs="10" / minutes="5" TypeErrors; save_every=-1 was
    accepted, width=32.5 and depth=1.5 truncated, exclude_nodes=[1.7] read as node 1."""
    with pytest.raises(ValueError, match=match):
        train(synth_grid, tmp_path / "m", **(TINY | dict(epochs=1) | bad))
    assert not (tmp_path / "m").exists()


def test_whole_numbers_given_as_floats_still_train(synth_grid, tmp_path):
    cfg = train(synth_grid, tmp_path / "m", **(TINY | dict(epochs=2.0, width=16.0, save_every=1.0,
                                                          exclude_nodes=np.array([3.0, 5.0]))))
    assert cfg["training"]["epochs_run"] == 2 and cfg["arch_kwargs"]["width"] == 16
    assert cfg["excluded_nodes"] == [3, 5]


def test_a_run_that_ends_before_any_epoch_writes_no_model(synth_grid, tmp_path, capsys):
    """--minutes 1e-7 wrote the untrained network as a finished model ("0 epochs ... best validation loss
    none finite (epoch -1)", finished true, loadable) with exit status 0."""
    from smnet_sps.cli import main
    with pytest.raises(ValueError, match=r"minutes=1e-07: the time budget ran out before the first epoch"):
        train(synth_grid, tmp_path / "m", epochs=5, minutes=1e-7, **TINY)
    assert not (tmp_path / "m").exists()
    out = tmp_path / "cli"
    assert main(["train", "--grid", str(synth_grid), "--out", str(out), "--minutes", "1e-7", "--width", "16",
                 "--depth", "1", "--device", "cpu", "--no-progress", "--threads", "1"]) != 0
    assert "before the first epoch" in capsys.readouterr().err
    assert not (out / "config.json").exists() and not (out / "weights.pt").exists()


def test_resuming_a_run_that_stopped_early_trains_no_further(synth_grid, tmp_path):
    """Early stopping was tested only after an epoch: --resume of a finished early-stopped run with the same
    options trained on (7 epochs, best 4 -> 23, best 20 -> 52, best 49). The stop test now comes before an
    epoch: the resume finds the run finished and leaves its weights and history as they are."""
    kw = dict(epochs=100, patience=1, lr=0.05, **TINY)
    first = train(synth_grid, tmp_path / "m", **kw)
    assert first["training"]["finished"] and first["training"]["epochs_run"] < 100       # stopped early
    weights = (tmp_path / "m" / "weights.pt").read_bytes()
    again = train(synth_grid, tmp_path / "m", resume=True, **kw)
    assert again["training"]["epochs_run"] == first["training"]["epochs_run"]
    assert again["training"]["best_epoch"] == first["training"]["best_epoch"]
    assert again["history"] == first["history"]
    assert (tmp_path / "m" / "weights.pt").read_bytes() == weights
    # a larger patience on resume (allowed to change) continues the run
    longer = train(synth_grid, tmp_path / "m", resume=True, **{**kw, "patience": 3})
    assert longer["training"]["epochs_run"] > first["training"]["epochs_run"]


def _interrupt_in_validation(monkeypatch, n_validations):
    """Ctrl-C during validation pass number ``n_validations`` (that epoch's, training batches not counted)."""
    calls = []
    real = train_module.masked_mse

    def interrupted(*args, **kwargs):
        if "node_loss" not in kwargs:
            calls.append(1)
            if len(calls) == n_validations:
                raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "masked_mse", interrupted)


@pytest.mark.parametrize("epoch", [1, 3])
def test_an_interruption_during_validation_is_validated_on_resume(synth_grid, tmp_path, monkeypatch, epoch):
    """Ctrl-C while an epoch was validated checkpointed it as done but never validated: no history row,
    best epoch not updated, and the resume went on to the next (best epoch 39 val 0.36405 against 40 val
    0.36312 uninterrupted). The resume now validates it first and repeats the uninterrupted run; in the
    first epoch's validation only the checkpoint is written (there is no validated model yet)."""
    run = dict(TINY, epochs=5, lr=0.01)
    straight = train(synth_grid, tmp_path / "a", **run)
    _interrupt_in_validation(monkeypatch, epoch)
    with pytest.raises(KeyboardInterrupt):
        train(synth_grid, tmp_path / "b", **run)
    monkeypatch.undo()
    assert _epoch(tmp_path / "b" / "checkpoint.pt") == epoch
    assert (tmp_path / "b" / "config.json").exists() == (epoch > 1)
    resumed = train(synth_grid, tmp_path / "b", resume=True, **run)
    assert [r[0] for r in resumed["history"]] == [1, 2, 3, 4, 5]
    assert [r[2:] for r in straight["history"]] == [r[2:] for r in resumed["history"]]
    assert resumed["training"]["best_epoch"] == straight["training"]["best_epoch"]
    wa = torch.load(tmp_path / "a" / "weights.pt", weights_only=True)
    wb = torch.load(tmp_path / "b" / "weights.pt", weights_only=True)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_resume_without_epochs_keeps_the_runs_schedule(synth_grid, tmp_path, monkeypatch, capsys):
    """--resume without --epochs ran to the default 2000 epochs (the cosine lr jumping back up, since it
    decays over epochs): the checkpoint now keeps the run's epochs, and the resumed run repeats the
    uninterrupted one. A different --epochs given on resume still extends it, and says so."""
    run = dict(TINY, save_every=1)
    straight = train(synth_grid, tmp_path / "a", epochs=6, **run)
    _interrupt_after(monkeypatch, 4 * 3 + 1)       # the first batch of epoch 4 (4 batches each)
    with pytest.raises(KeyboardInterrupt):
        train(synth_grid, tmp_path / "b", epochs=6, **run)
    monkeypatch.undo()
    capsys.readouterr()
    resumed = train(synth_grid, tmp_path / "b", resume=True, **run)
    assert resumed["training"]["epochs_run"] == 6
    assert "epochs 6 as in the checkpoint" in capsys.readouterr().out
    assert [r[2:] for r in straight["history"]] == [r[2:] for r in resumed["history"]]
    longer = train(synth_grid, tmp_path / "b", resume=True, epochs=8, **run)
    assert "--epochs 8 replaces the checkpoint's 6" in capsys.readouterr().out
    assert longer["training"]["epochs_run"] == 8
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["schedule"]["epochs"] == 8


class _Clock:
    """time for train(): perf_counter advances one second per call (a run's wall time, reproducibly)."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        self.now += 1.0
        return self.now


def test_a_resume_without_minutes_keeps_the_time_budget(synth_grid, tmp_path, monkeypatch, capsys):
    """--resume without --minutes dropped the budget (an interrupted 0.5 min run went on to 2000 epochs,
    with its cosine lr jumping back up): the checkpoint now keeps it, and the resumed run ends where the
    uninterrupted one did; minutes=inf removes it."""
    monkeypatch.setattr(train_module, "time", _Clock())
    straight = train(synth_grid, tmp_path / "a", minutes=0.5, **TINY)
    n = straight["training"]["epochs_run"]
    assert 5 < n < 20                                # stopped by the budget (30 clock seconds)
    monkeypatch.setattr(train_module, "time", _Clock())
    _interrupt_after(monkeypatch, 4 * 3 + 1)
    with pytest.raises(KeyboardInterrupt):
        train(synth_grid, tmp_path / "b", minutes=0.5, **TINY)
    monkeypatch.undo()
    monkeypatch.setattr(train_module, "time", _Clock())         # the resume runs later, on its own clock
    capsys.readouterr()
    resumed = train(synth_grid, tmp_path / "b", resume=True, **TINY)
    assert abs(resumed["training"]["epochs_run"] - n) <= 1
    assert "minutes 0.5 as in the checkpoint" in capsys.readouterr().out
    ck = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert ck["schedule"] == {"epochs": 2000, "minutes": 0.5, "patience": 200, "keep": "best"}
    more = train(synth_grid, tmp_path / "b", resume=True, minutes=float("inf"), epochs=n + 3, **TINY)
    assert "--minutes none replaces the checkpoint's 0.5" in capsys.readouterr().out
    assert more["training"]["epochs_run"] == n + 3


@pytest.mark.parametrize("batch", [2, 4 * 2 + 3])      # in the first epoch, and part way into the third
def test_a_run_interrupted_mid_epoch_resumes_as_the_uninterrupted_run(synth_grid, tmp_path, monkeypatch,
                                                                      batch):
    """Ctrl-C / SIGTERM part way into an epoch (where it nearly always lands) checkpointed the weights after
    the batches done but the draws of the epoch's start: the resume drew the epoch again and trained on its
    first batches twice (6 epochs, cut in the 4th: val 2.7375 for 2.7421, weights 1e-3 apart). The epoch's
    draws, learning rate and generator after the last batch done are kept: the resumed run repeats the
    uninterrupted one bit for bit (draws, blends, jitter and the moving average alike)."""
    run = dict(TINY, epochs=4, save_every=1000, node_blend=0.3, input_jitter=0.5, ema_decay=0.9, lr=0.01)
    straight = train(synth_grid, tmp_path / "a", **run)
    _interrupt_after(monkeypatch, batch)
    with pytest.raises(KeyboardInterrupt):
        train(synth_grid, tmp_path / "b", **run)
    progress = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True).get("epoch_progress")
    monkeypatch.undo()
    resumed = train(synth_grid, tmp_path / "b", resume=True, **run)
    assert [r[2:] for r in resumed["history"]] == [r[2:] for r in straight["history"]]
    wa, wb = (torch.load(tmp_path / d / "weights.pt", weights_only=True) for d in ("a", "b"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert progress["done"] == (batch - 1) % 4                  # the batches completed in that epoch
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["epoch_progress"] is None


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_an_interruption_during_the_optimizer_step_is_recorded_with_it(synth_grid, tmp_path, signame):
    """Ctrl-C / SIGTERM arriving while the optimizer stepped raised KeyboardInterrupt right after the step,
    before the moving average and the record of the batches done: the checkpoint said 1 batch of epoch 2
    done with the weights of 2, and the resume trained on the 2nd again (val 2.5559 for 2.6037 after 4
    epochs, weights 6.3e-3 apart). The signal now takes effect once the batch's update is complete."""
    import os
    import signal

    from torch.optim.optimizer import register_optimizer_step_post_hook
    run = dict(TINY, epochs=4, save_every=1000, ema_decay=0.9, lr=0.01, node_blend=0.3, input_jitter=0.5)
    straight = train(synth_grid, tmp_path / "a", **run)
    steps = []

    def signal_during_step(optimizer, args, kwargs):
        steps.append(1)
        if len(steps) == 6:                        # the 2nd batch of epoch 2 (4 batches each)
            os.kill(os.getpid(), getattr(signal, signame))

    previous = signal.signal(signal.SIGTERM, train_module._terminate)     # as the command installs it
    hook = register_optimizer_step_post_hook(signal_during_step)
    try:
        with pytest.raises(KeyboardInterrupt):
            train(synth_grid, tmp_path / "b", **run)
    finally:
        hook.remove()
        signal.signal(signal.SIGTERM, previous)
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["epoch_progress"]["done"] == 2
    resumed = train(synth_grid, tmp_path / "b", resume=True, **run)
    assert [r[2:] for r in resumed["history"]] == [r[2:] for r in straight["history"]]
    wa, wb = (torch.load(tmp_path / d / "weights.pt", weights_only=True) for d in ("a", "b"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_resume_with_fewer_epochs_than_reached_is_refused(synth_grid, tmp_path, monkeypatch, model_copy):
    """--resume --epochs N below what the checkpoint had reached trained nothing, logged that the schedule
    'stretches to the new total', recorded N as the run's schedule and, with an epoch in progress, dropped
    that epoch's record but kept its weights: the next resume trained its first batches again (cut in epoch
    4 of 6, resumed with --epochs 3 then 6: val 1.8089 for 1.9468, weights 1.2e-2 apart). Refused now,
    the checkpoint untouched, and the run then resumes as the uninterrupted one."""
    run = dict(TINY, save_every=1000, lr=0.01, patience=1000)
    straight = train(synth_grid, tmp_path / "a", epochs=6, **run)
    _interrupt_after(monkeypatch, 4 * 3 + 3)           # the 3rd batch of epoch 4 (4 batches each)
    with pytest.raises(KeyboardInterrupt):
        train(synth_grid, tmp_path / "b", epochs=6, **run)
    monkeypatch.undo()
    ckpt = tmp_path / "b" / "checkpoint.pt"
    before = ckpt.read_bytes()
    with pytest.raises(ValueError, match=r"--epochs 3 is fewer .* has run 3 epochs and is part way into "
                                         r"epoch 4\); give --epochs 4 or more"):
        train(synth_grid, tmp_path / "b", epochs=3, resume=True, **run)
    assert ckpt.read_bytes() == before
    resumed = train(synth_grid, tmp_path / "b", epochs=6, resume=True, **run)
    assert [r[2:] for r in resumed["history"]] == [r[2:] for r in straight["history"]]
    # a finished run: fewer epochs than it ran is refused; as many rewrites its model without training
    with pytest.raises(ValueError, match=r"--epochs 1 is fewer .* has run 2 epochs\); give --epochs 2 or "
                                         r"more \(2 rewrites"):
        train(synth_grid, model_copy, epochs=1, resume=True, **TINY)
    assert train(synth_grid, model_copy, epochs=2, resume=True, **TINY)["training"]["epochs_run"] == 2


def test_tail_on_a_grid_of_other_wavelengths_is_a_clear_error(synth_grid, model_copy, tmp_path, capsys):
    """The same nodes on every 2nd pixel (build_grid(wavelength=...)): `smnet-sps tail` failed with numpy's
    "operands could not be broadcast together with shapes (120,) (240,)"."""
    from smnet_sps.cli import main
    from smnet_sps.grid import load_grid, save_grid
    from smnet_sps.tail import write_tail_table
    g = load_grid(synth_grid)
    other = tmp_path / "half.h5"
    save_grid(dataclasses.replace(g, wavelength=g.wavelength[::2], flux=g.flux[:, ::2], mask=g.mask[:, ::2]),
              other)
    with pytest.raises(ValueError, match=r"wavelength grid \(120 pixels, .*\) differs from the model's "
                                         r"\(240 pixels"):
        write_tail_table(model_copy, other)
    assert main(["tail", "--model", str(model_copy), "--grid", str(other), "--overwrite"]) == 1
    assert "differs from the model's (240 pixels" in capsys.readouterr().err


def test_a_second_training_into_the_same_folder_is_refused_while_the_first_runs(synth_grid, tmp_path):
    """Two trainings into one folder at once (two terminals, a job array with one --out) both ran to the end,
    writing checkpoint.pt, weights.pt and config.json in turn: the folder ended with the last writer's model
    and the other run's work was lost without a word (`smnet-sps train --out mc` twice, 1 s apart: both
    'wrote mc', exit 0; config.json from the second, width 48, the first's width 32 gone)."""
    import threading
    import time
    out = tmp_path / "shared_out"
    first = {}

    def run_first():
        try:
            first["cfg"] = train(synth_grid, out, epochs=100_000, minutes=0.1, **TINY)
        except Exception as exc:        # noqa: BLE001 -- reported by the assertion below
            first["error"] = exc

    thread = threading.Thread(target=run_first)
    thread.start()
    try:
        deadline = time.time() + 60
        while not (out / "checkpoint.pt").exists() and thread.is_alive() and time.time() < deadline:
            time.sleep(0.05)
        assert thread.is_alive(), "the first run ended before the second could start"
        with pytest.raises(ValueError, match="another training .* is writing this model folder now"):
            train(synth_grid, out, epochs=3, width=24, overwrite=True,
                  **{k: v for k, v in TINY.items() if k != "width"})
        with pytest.raises(ValueError, match="another training"):
            train(synth_grid, out, resume=True, **TINY)
    finally:
        thread.join()
    assert "error" not in first, first.get("error")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["arch_kwargs"]["width"] == TINY["width"]                 # the first run's model, whole
    assert cfg["training"]["epochs_run"] == first["cfg"]["training"]["epochs_run"] > 3
    from smnet_sps.neural import load_generator
    load_generator(out, device="cpu")
    # once it has ended the folder is free again
    resumed = train(synth_grid, out, resume=True, **TINY)
    assert resumed["training"]["epochs_run"] == cfg["training"]["epochs_run"]


def test_a_refused_training_leaves_no_folder_behind(synth_grid, tmp_path):
    out = tmp_path / "new" / "model"
    with pytest.raises(ValueError, match="width"):
        train(synth_grid, out, epochs=1, width=2.5, **{k: v for k, v in TINY.items() if k != "width"})
    assert not (tmp_path / "new").exists()


def test_a_resume_with_another_network_or_grid_names_the_options_to_give(synth_grid, model_copy, tmp_path,
                                                                         capsys):
    """A run trained with --width 16 --depth 1 and resumed without them was refused with the two kwargs dicts
    ("written for mlp {'n_wave': 240, 'n_libraries': 2, 'width': 16, 'depth': 1} on grid ...; now mlp {...
    'width': 256, 'depth': 3} on ..."), which the user had to translate into options."""
    from test_train import make_synthetic_grid

    from smnet_sps.cli import main
    # the command line takes the run's own (a resume without them is the run it was); given, the defaults
    # are other values, refused by name
    assert main(["train", "--grid", str(synth_grid), "--out", str(model_copy), "--resume", "--device", "cpu",
                 "--no-progress", "--threads", "1", "--width", "256", "--depth", "3"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "--width 256 given, 16 in the run; --depth 3 given, 1 in the run" in err
    with pytest.raises(ValueError, match=r"--width 16 in the checkpoint, 256 now; --depth 1 in the "
                                         r"checkpoint, 3 now.*resume with --width 16 --depth 1, or train"):
        train(synth_grid, model_copy, resume=True, **dict(TINY, width=256, depth=3))
    with pytest.raises(ValueError, match=r"\(--arch mlp in the checkpoint, smnet now\); "
                                         r"resume with --arch mlp --width 16 --depth 1,"):
        train(synth_grid, model_copy, arch="smnet", resume=True,
              **{k: v for k, v in TINY.items() if k not in ("width", "depth")})
    other = make_synthetic_grid(tmp_path / "other.h5", seed=1)      # same nodes, other unknown pixels
    with pytest.raises(ValueError, match=r"--grid: the checkpoint's has content sha256 [0-9a-f]{12}\.\.\., "
                                         r".*other\.h5 [0-9a-f]{12}\.\.\.\); "
                                         r"resume with the --grid it was"):
        train(other, model_copy, resume=True, **TINY)
    # both at once: the options, then "and" the grid (it read "resume with --width 16 the --grid it was ...")
    bare = {k: v for k, v in TINY.items() if k not in ("width", "depth")}
    with pytest.raises(ValueError, match=r"resume with --width 16 --depth 1 and the --grid it was trained"):
        train(other, model_copy, resume=True, **bare)


def test_a_model_folder_named_like_a_shipped_generator_is_not_taken_silently(trained, tmp_path, monkeypatch):
    """`smnet-sps train --out default` then `smnet-sps ssp --generator default` made the SSP with the shipped
    model without a word (the name wins over the folder): now a warning says so and how to use the folder."""
    import shutil
    import warnings

    from smnet_sps.neural import generator_spec_option, load_generator, load_generator_option
    from smnet_sps.ssp import resolve_generator
    monkeypatch.chdir(tmp_path)
    for name in ("default", "semi-empirical", "blackbody"):
        shutil.copytree(trained, tmp_path / name)
    mine = json.loads((trained / "config.json").read_text())["name"]
    folder = r"not the model folder '.*{0}' here; to use that folder give it as a path: '\./{0}'"
    with pytest.warns(UserWarning, match="generator 'default' means the shipped model 'default', "
                                         + folder.format("default")):
        assert load_generator("default", device="cpu").name != mine
    with pytest.warns(UserWarning, match="generator 'semi-empirical' means the shipped model "
                                         "'semi-empirical', " + folder.format("semi-empirical")):
        load_generator("semi-empirical", device="cpu")
    with pytest.warns(UserWarning, match="generator 'blackbody' means the analytic blackbody, "
                                         + folder.format("blackbody")):
        assert load_generator_option("blackbody").name == "blackbody"
    for name in ("default", "blackbody"):
        with pytest.warns(UserWarning, match=f"generator '{name}' means"):
            resolve_generator(name, device="cpu")
        with pytest.warns(UserWarning, match=f"generator '{name}' means"):
            generator_spec_option(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert load_generator("./default", device="cpu").name == mine          # the folder, as a path
        monkeypatch.chdir(tmp_path / "default")                                 # no such folder here
        load_generator_option("blackbody")


def test_ssp_outputs_tell_a_retrained_model_from_the_one_it_replaced(synth_grid, tmp_path):
    """GENERATR holds the model's name, its folder's: a model retrained into models/mine (--overwrite) wrote
    SSP files that could not be told from those of the model it replaced. The weights' sha256 is now recorded
    (FITS GENSHA, meta / attrs generator_sha256)."""
    import astropy.units as u
    from astropy.io import fits

    from smnet_sps.cli import main
    from smnet_sps.ssp import load_ssp_grid, save_ssp_grid, ssp_grid
    out = tmp_path / "models" / "mine"
    headers, shas = [], []
    for seed in (0, 1):
        train(synth_grid, out, epochs=2, seed=seed, overwrite=True, **TINY)
        shas.append(json.loads((out / "config.json").read_text())["weights_sha256"])
        fits_out = tmp_path / f"ssp{seed}.fits"
        with pytest.warns(Warning):          # the synthetic model covers 4,000-20,000 K only
            assert main(["ssp", "--age", "1Gyr", "--generator", str(out), "--device", "cpu",
                         "--out", str(fits_out)]) == 0
        headers.append(fits.getheader(fits_out, 1))
    assert shas[0] != shas[1]
    from smnet_sps import __version__      # and the model folder records the version that trained it
    assert json.loads((out / "config.json").read_text())["smnet_sps_version"] == __version__
    assert [h["GENERATR"] for h in headers] == ["mine", "mine"]
    assert [h["GENSHA"] for h in headers] == shas
    with pytest.warns(Warning):
        grid = ssp_grid([1.0] * u.Gyr, [0.0152], generator=str(out), device="cpu")
    assert grid.attrs["generator_sha256"] == shas[1]
    for ext in ("h5", "npz"):
        assert load_ssp_grid(save_ssp_grid(grid, tmp_path / f"g.{ext}")).attrs["generator_sha256"] == shas[1]
    bb = ssp_grid([1.0] * u.Gyr, [0.0152], generator="blackbody")
    assert bb.attrs["generator_sha256"] is None


def test_a_folder_that_cannot_be_locked_still_trains(synth_grid, tmp_path, monkeypatch):
    """NFS emulates flock with byte-range locks, which a folder opened read-only cannot take (EBADF): that
    is no other training, and must not be reported as one."""
    import errno
    fcntl = pytest.importorskip("fcntl")

    def no_lock(fd, operation):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(fcntl, "flock", no_lock)
    cfg = train(synth_grid, tmp_path / "nfs" / "m", epochs=1, **TINY)
    assert cfg["training"]["epochs_run"] == 1


def test_a_resume_with_nothing_left_to_train_says_so(synth_grid, tmp_path, capsys):
    """A run ended by its --minutes (or --epochs) resumed without a larger one trained nothing and reported
    only 'wrote m3c: 337 epochs in 60.1 s', as if it had gone on."""
    out = tmp_path / "m"
    train(synth_grid, out, epochs=3, **TINY)
    capsys.readouterr()
    assert train(synth_grid, out, resume=True, **TINY)["training"]["epochs_run"] == 3
    assert ("--resume: nothing to train (it has run its 3 epochs: give a larger --epochs)"
            in capsys.readouterr().out)
    timed = tmp_path / "timed"
    run = train(synth_grid, timed, epochs=100_000, minutes=0.005, **TINY)["training"]["epochs_run"]
    capsys.readouterr()
    assert train(synth_grid, timed, resume=True, **TINY)["training"]["epochs_run"] == run
    text = capsys.readouterr().out
    assert "--resume: nothing to train (it has used its 0.005-minute budget (" in text
    assert "give a larger --minutes (the total, counting the time already run) or --minutes inf)" in text
    capsys.readouterr()
    assert train(synth_grid, timed, resume=True, minutes=float("inf"), epochs=run + 2,
                 **TINY)["training"]["epochs_run"] == run + 2
    assert "nothing to train" not in capsys.readouterr().out


def test_a_refused_training_never_removes_the_folder_the_running_one_holds(tmp_path, monkeypatch):
    """Two runs started together: B saw the folder missing, A made and locked it, B was refused on the lock
    and then removed the (still empty) folder as one it had made, so A wrote an unlocked folder and a third
    run got in. A refused run now leaves the folder alone."""
    pytest.importorskip("fcntl")
    from pathlib import Path

    from smnet_sps.train import _sole_training_in
    out = tmp_path / "race" / "model"
    with _sole_training_in(out):                      # run A holds the lock on the folder it made
        real_exists = Path.exists
        # run B's look before A made the folder: both missing
        monkeypatch.setattr(Path, "exists", lambda p: False if p in (out, out.parent) else real_exists(p))
        with pytest.raises(ValueError, match="another training"):
            with _sole_training_in(out):
                pass
        monkeypatch.setattr(Path, "exists", real_exists)
        assert out.is_dir()                           # A's folder is still there, still locked
        with pytest.raises(ValueError, match="another training"):
            with _sole_training_in(out):
                pass
