"""A run's record of where its inputs came from: the grid it trained on (by content, not by file), the options
a resume continues with, and the generator behind every output file.

Tiny runs (width 16, depth 1, one or two epochs) on the synthetic grid of test_train.
"""

import json
import warnings

import h5py
import pytest
import torch
from test_train import make_synthetic_grid

from smnet_sps.cli import main
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
    # named by the file hashes the checkpoint and the grid both have (not the content hash only one has)
    expected = (rf"--grid: the checkpoint's has sha256 {old['grid_sha256'][:12]}\.\.\., "
                rf".*other\.h5 {read_grid(other).sha256[:12]}\.\.\.\)")
    with pytest.raises(ValueError, match=expected):
        train(other, out, epochs=3, resume=True, **TINY)



# 2. a resume continues the run's own options

CLI_TINY = ["--device", "cpu", "--no-progress", "--threads", "1"]


def test_cli_resume_takes_the_run_options_and_refuses_other_ones(synth_grid, tmp_path, capsys):
    """`train --resume` needed every non-default option of the run repeated (--width 16 --depth 1 --lr 0.01
    ... and the grid), or was refused: it now reads them from the run and refuses a given one that differs."""
    out = tmp_path / "m"
    assert main(["train", "--grid", str(synth_grid), "--out", str(out), "--width", "16", "--depth", "1",
                 "--batch-size", "32", "--lr", "0.01", "--input-jitter", "0.1", "--w-max", "3",
                 "--library-balance", "0.5", "--seed", "3", "--split-seed", "2", "--keep", "final",
                 "--patience", "40", "--epochs", "1", *CLI_TINY]) == 0
    first = json.loads((out / "config.json").read_text())
    capsys.readouterr()
    # nothing but --resume and a longer run: no --grid, no options
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", *CLI_TINY]) == 0, \
        capsys.readouterr().err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["training"]["epochs_run"] == 2
    for key in ("arch_kwargs", "seed", "split", "input_jitter", "grid_file", "sampling_weights"):
        assert cfg[key] == first[key], key
    assert (cfg["training"]["lr"], cfg["training"]["batch_size"], cfg["training"]["kept"],
            cfg["training"]["patience"]) == (0.01, 32, "final", 40)
    # the same values given again are no conflict; --keep and --patience may change
    assert main(["train", "--grid", str(synth_grid), "--out", str(out), "--resume", "--epochs", "3",
                 "--width", "16", "--lr", "0.01", "--input-jitter", "0.1", "0.1", "0.1", "--keep", "best",
                 "--patience", "50", *CLI_TINY]) == 0, capsys.readouterr().err
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["training"]["epochs_run"], cfg["training"]["kept"], cfg["training"]["patience"]) == \
        (3, "best", 50)
    capsys.readouterr()
    # another value: refused in one line, naming each option with both values
    assert main(["train", "--out", str(out), "--resume", "--epochs", "4", "--width", "256", "--lr", "0.002",
                 "--split-seed", "0", *CLI_TINY]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "--width 256 given, 16 in the run" in err and "--lr 0.002 given, 0.01 in the run" in err
    assert "--split-seed 0 given, 2 in the run" in err and "leave them out" in err
    assert json.loads((out / "config.json").read_text())["training"]["epochs_run"] == 3
    # a new run still needs its grid
    assert main(["train", "--out", str(tmp_path / "new"), "--epochs", "1", *CLI_TINY]) == 1
    assert "--grid is required" in capsys.readouterr().err


def test_cli_resume_after_an_interruption_in_the_first_epoch(synth_grid, tmp_path, monkeypatch, capsys):
    """Only the checkpoint is there (no config.json yet): its record is enough."""
    import smnet_sps.train as train_module
    real = train_module.masked_mse
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "masked_mse", interrupted)
    out = tmp_path / "m"
    assert main(["train", "--grid", str(synth_grid), "--out", str(out), "--width", "8", "--depth", "1",
                 "--batch-size", "16", "--epochs", "2", *CLI_TINY]) == 130
    assert not (out / "config.json").exists() and (out / "checkpoint.pt").exists()
    monkeypatch.setattr(train_module, "masked_mse", real)
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", *CLI_TINY]) == 0, capsys.readouterr().err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["arch_kwargs"]["width"] == 8 and cfg["training"]["batch_size"] == 16
    assert cfg["training"]["epochs_run"] == 2


def _as_before_the_recipe(out, drop_config=(), drop_training=()):
    """Make the run in ``out`` look like one trained before 2026-12-02: no recipe (and no grid path) in its
    checkpoint, and config.json without ``drop_config`` / ``drop_training["..."]``."""
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    del ck["recipe"], ck["grid_file"]
    torch.save(ck, out / "checkpoint.pt")
    cfg = json.loads((out / "config.json").read_text())
    for key in drop_config:
        del cfg[key]
    for key in drop_training:
        del cfg["training"][key]
    (out / "config.json").write_text(json.dumps(cfg))


def test_cli_resume_of_a_run_without_a_recipe_takes_config_json_and_refuses_defaults(synth_grid, tmp_path,
                                                                                     capsys):
    """A checkpoint without a recorded recipe (older runs) resumed with the command's defaults: trained with
    --lr 0.01 --batch-size 16, `train --out m --resume` went on with lr 0.002 and batches of 256 (rc 0). Its
    options now come from config.json, and one that neither records is refused by name."""
    out = tmp_path / "m"
    assert main(["train", "--grid", str(synth_grid), "--out", str(out), "--width", "16", "--depth", "1",
                 "--batch-size", "16", "--lr", "0.01", "--lr-final", "0.1", "--w-max", "3",
                 "--library-balance", "0.5", "--seed", "3", "--input-jitter", "0.1", "--epochs", "1",
                 *CLI_TINY]) == 0
    first = json.loads((out / "config.json").read_text())
    _as_before_the_recipe(out)
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--grid", str(synth_grid), "--resume", "--epochs", "2",
                 *CLI_TINY]) == 0, capsys.readouterr().err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["training"]["epochs_run"] == 2
    assert (cfg["training"]["lr"], cfg["training"]["batch_size"], cfg["training"]["lr_final"]) == \
        (0.01, 16, 0.1)
    for key in ("seed", "sampling_weights", "input_jitter", "split"):
        assert cfg[key] == first[key], key
    # an older config.json still: neither records --lr-final, --w-max or --library-balance
    _as_before_the_recipe(out, drop_config=["sampling_weights"], drop_training=["lr_final"])
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--grid", str(synth_grid), "--resume", "--epochs", "3",
                 "--lr-final", "0.1", *CLI_TINY]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "predates recorded options" in err
    assert "records --w-max, --library-balance; give them with the run's values" in err
    assert json.loads((out / "config.json").read_text())["training"]["epochs_run"] == 2
    assert main(["train", "--out", str(out), "--grid", str(synth_grid), "--resume", "--epochs", "3",
                 "--lr-final", "0.1", "--w-max", "3", "--library-balance", "0.5", *CLI_TINY]) == 0, \
        capsys.readouterr().err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["training"]["epochs_run"] == 3 and cfg["sampling_weights"] == first["sampling_weights"]


def test_cli_resume_of_a_run_older_than_an_option_takes_what_its_absence_meant(synth_grid, tmp_path, capsys):
    """A run trained before --ema-decay, --node-loss, --node-blend(-kind) and --init-from existed records none
    of them: `train --resume` refused it ("records --node-loss, --node-blend, --node-blend-kind, --ema-decay,
    --init-from; give them with the run's values"), and no value of --init-from says "none". Each option came
    into train() and config.json in one commit, so a config.json without it was trained as the option's
    absence: no EMA, the MSE, no blending (blends on segments before --node-blend-kind), no warm start."""
    out = tmp_path / "m"
    assert main(["train", "--grid", str(synth_grid), "--out", str(out), "--width", "16", "--depth", "1",
                 "--batch-size", "16", "--epochs", "1", *CLI_TINY]) == 0
    _as_before_the_recipe(out, drop_config=["ema_decay", "node_loss", "node_blend", "node_blend_kind",
                                            "init_from"])
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--grid", str(synth_grid), "--resume", "--epochs", "2",
                 *CLI_TINY]) == 0, capsys.readouterr().err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["training"]["epochs_run"] == 2
    assert (cfg["ema_decay"], cfg["node_loss"], cfg["node_blend"]) == (0.0, "mse", 0.0)
    assert cfg["init_from"] is None
    # a blending run from before --node-blend-kind: its blends were on segments
    blend = tmp_path / "b"
    assert main(["train", "--grid", str(synth_grid), "--out", str(blend), "--width", "16", "--depth", "1",
                 "--batch-size", "16", "--node-blend", "0.25", "--ema-decay", "0.5", "--epochs", "1",
                 *CLI_TINY]) == 0
    _as_before_the_recipe(blend, drop_config=["node_blend_kind", "init_from"])
    capsys.readouterr()
    assert main(["train", "--out", str(blend), "--grid", str(synth_grid), "--resume", "--epochs", "2",
                 *CLI_TINY]) == 0, capsys.readouterr().err
    cfg = json.loads((blend / "config.json").read_text())
    assert cfg["training"]["epochs_run"] == 2
    assert (cfg["node_blend"], cfg["node_blend_kind"], cfg["ema_decay"]) == (0.25, "segments", 0.5)


def test_cli_resume_without_a_recipe_or_a_read_config_json_refuses_the_newer_options(synth_grid, tmp_path,
                                                                                    capsys):
    """The options' absence means "before the option" only in a config.json that records the run: trained
    with --node-blend 0.25 --ema-decay 0.5 --node-loss pseudo_huber, a checkpoint without a recipe and a
    config.json reduced to its library names resumed with no EMA, the MSE and no blending (rc 0); with no
    config.json at all the resume raised a bare KeyError 'libraries'. Both now refuse, naming the options."""
    out = tmp_path / "m"
    assert main(["train", "--grid", str(synth_grid), "--out", str(out), "--width", "16", "--depth", "1",
                 "--batch-size", "16", "--node-blend", "0.25", "--ema-decay", "0.5", "--node-loss",
                 "pseudo_huber", "--epochs", "1", *CLI_TINY]) == 0
    _as_before_the_recipe(out)
    names = json.loads((out / "config.json").read_text())["library_names"]
    for config in ({"library_names": names}, None):
        if config is None:
            (out / "config.json").unlink()
        else:
            (out / "config.json").write_text(json.dumps(config))
        capsys.readouterr()
        assert main(["train", "--out", str(out), "--grid", str(synth_grid), "--resume", "--epochs", "2",
                     *CLI_TINY]) == 1
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "predates recorded options" in err, err
        for flag in ("--node-loss", "--node-blend", "--ema-decay", "--jitter-floor", "--batch-size"):
            assert flag in err, (flag, err)
        assert "--init-from" not in err
    # given with the run's values, the run goes on with them
    assert main(["train", "--out", str(out), "--grid", str(synth_grid), "--resume", "--epochs", "2",
                 "--node-blend", "0.25", "--node-blend-kind", "segments", "--ema-decay", "0.5",
                 "--node-loss", "pseudo_huber", "--batch-size", "16", "--lr", "0.002", "--lr-final", "0.02",
                 "--seed", "0", "--input-jitter", "0", "--jitter-floor", "1", "--jitter-quantile", "0.5",
                 "--w-max", "5", "--library-balance", "1", "--tail-floor", "1e-6", "--uv-weight", "1",
                 "--pixel-loss", "standardised", "--libraries", *names, *CLI_TINY]) == 0, \
        capsys.readouterr().err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["training"]["epochs_run"] == 2
    assert (cfg["node_blend"], cfg["ema_decay"], cfg["node_loss"]) == (0.25, 0.5, "pseudo_huber")


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


def test_cli_resume_names_the_run_grid_recorded_relative_to_another_folder(synth_grid, tmp_path, monkeypatch,
                                                                            capsys):
    """An older run's config.json kept the grid's path as typed: resumed from another folder, `train --resume`
    said "grid file work/grid.h5 does not exist (build it with 'smnet-sps grid build ...')", of a --grid the
    user never typed. It now says where the path comes from and asks for --grid."""
    import shutil
    (tmp_path / "work").mkdir()
    shutil.copy(synth_grid, tmp_path / "work" / "grid.h5")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--grid", "work/grid.h5", "--out", "m", "--width", "16", "--depth", "1",
                 "--epochs", "1", *CLI_TINY]) == 0
    ck = torch.load(tmp_path / "m" / "checkpoint.pt", weights_only=True)
    del ck["grid_file"]
    torch.save(ck, tmp_path / "m" / "checkpoint.pt")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["grid_file"] = "work/grid.h5"                # as older runs recorded it
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    monkeypatch.chdir(tmp_path / "work")
    capsys.readouterr()
    assert main(["train", "--out", "../m", "--resume", "--epochs", "2", *CLI_TINY]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "grid build" not in err
    assert "its config.json records it relative to the folder the training ran in" in err
    assert "give --grid" in err
    assert main(["train", "--out", "../m", "--resume", "--epochs", "2", "--grid", "grid.h5", *CLI_TINY]) == 0
    assert json.loads((tmp_path / "m" / "config.json").read_text())["training"]["epochs_run"] == 2


# 4. the generator's weights behind every output

@pytest.fixture(scope="module")
def tiny_model(synth_grid, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "mine"
    train(synth_grid, out, epochs=1, **TINY)
    return out, json.loads((out / "config.json").read_text())["weights_sha256"]


def test_mags_tables_record_the_generator_weights_sha256(tiny_model, tmp_path):
    """SSP FITS files carried GENSHA / generator_sha256; the mags tables (SSP ages and --points stars) only
    the generator's name, which a model retrained into the same folder keeps."""
    from astropy.io import fits
    from astropy.table import Table

    from smnet_sps.cli import main
    model, sha = tiny_model
    ecsv, fits_out = tmp_path / "mags.ecsv", tmp_path / "mags.fits"
    for out in (ecsv, fits_out):
        with pytest.warns(Warning):          # the synthetic model covers 4,000-20,000 K only
            assert main(["mags", "--ages", "1Gyr", "--Z", "0.0152", "--filters", "sdss2010-g,sdss2010-r",
                         "--generator", str(model), "--out", str(out)]) == 0
    assert Table.read(ecsv).meta["generator_sha256"] == sha
    assert fits.getheader(fits_out, 1)["GENSHA"] == sha
    stars = tmp_path / "stars.csv"
    stars.write_text("teff,logg,logz,logl\n5800,4.4,0.0,0.0\n9000,4.0,0.0,1.5\n")
    points_out = tmp_path / "stars_mags.ecsv"
    assert main(["mags", "--points", str(stars), "--filters", "sdss2010-g", "--generator", str(model),
                 "--out", str(points_out)]) == 0
    assert Table.read(points_out).meta["generator_sha256"] == sha
    # the blackbody has no weights: no key (as ssp's GENSHA)
    assert main(["mags", "--points", str(stars), "--filters", "sdss2010-g", "--generator", "blackbody",
                 "--out", str(tmp_path / "bb.ecsv")]) == 0
    assert "generator_sha256" not in Table.read(tmp_path / "bb.ecsv").meta


def test_fit_json_records_the_generator_weights_sha256(tiny_model, tmp_path):
    import numpy as np

    from smnet_sps.cli import main
    from smnet_sps.neural import load_generator
    model, sha = tiny_model
    gen = load_generator(model, device="cpu")
    wave = np.asarray(gen.wavelength, float)
    keep = (wave > 3500) & (wave < 9000)
    flux = np.asarray(gen.spectra(6000.0, 4.0, 0.0)[0].flux.value, float).ravel()[keep]
    spec = tmp_path / "star.txt"
    np.savetxt(spec, np.column_stack([wave[keep], flux, 0.01 * flux]))
    out = tmp_path / "fit.json"
    with warnings.catch_warnings():      # a one-epoch model: the fit may end on a bound
        warnings.simplefilter("ignore")
        assert main(["fit", str(spec), "--generator", str(model), "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["generator"] == "mine" and record["generator_sha256"] == sha


def test_zarr_ssp_stores_record_the_generator_weights_sha256(tiny_model, tmp_path):
    pytest.importorskip("zarr")
    import smnet_sps.distributed as D
    model, sha = tiny_model
    run = D.ssp_grids([D.SSPConfig("parsec", "kroupa", str(model), [1e9], [0.0152], name="g")],
                      store=tmp_path, progress=False, device="cpu")
    assert D.load_ssp_store(run.stores[0]).attrs["generator_sha256"] == sha


# 5. the IMF's mass limits of a Dask SSP store

def test_a_zarr_ssp_store_records_the_imf_mass_range_as_ssp_grid_does(tmp_path):
    """A store recorded the IMF's name only (Dask runs take IMF names); ssp_grid's attrs hold its mass
    limits (imf_mass_range), which set the mass formed per M_sun and the most massive stars' light."""
    pytest.importorskip("zarr")
    import smnet_sps.distributed as D
    from smnet_sps.ssp import ssp_grid
    here = ssp_grid([1e9], [0.0152], imf="salpeter", generator="blackbody", progress=False)
    run = D.ssp_grids([D.SSPConfig("parsec", "salpeter", "blackbody", [1e9], [0.0152], name="g")],
                      store=tmp_path, progress=False)
    stored = D.load_ssp_store(run.stores[0]).attrs
    assert stored["imf_mass_range"] == list(here.attrs["imf_mass_range"])
