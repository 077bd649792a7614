"""Training: masked loss, split, sampling weights, a tiny run that learns, resume, model directory layout."""

import json

import numpy as np
import pytest
import torch

from smnet_sps.constants import SIGMA_SB
from smnet_sps.generator import planck_surface_flux
from smnet_sps.train import (log_ratio_targets, masked_mse, read_grid, sampling_weights, split_nodes, train)


def make_synthetic_grid(path, seed=0):
    """A small union grid in the docs/CONTRACTS.md layout: blackbodies with absorption lines, two libraries,
    the second one not covering the far UV (masked, NaN) plus a few random unknown pixels."""
    rng = np.random.default_rng(seed)
    wave = np.geomspace(1000.0, 50000.0, 240)
    rows = []
    for t in np.arange(4000, 8001, 250):
        for g in (3.0, 4.0, 5.0):
            for z in (-1.0, 0.0):
                rows.append((t, g, z, 0))
    for t in np.arange(7000, 20001, 1000):
        for g in (4.0, 5.0):
            rows.append((t, g, 0.0, 1))
    p = np.array(rows, float)
    teff, logg, logz, lib = p[:, 0], p[:, 1], p[:, 2], p[:, 3].astype(np.int16)
    flux = planck_surface_flux(wave, teff)
    for centre, width in ((3934.0, 15.0), (4861.0, 30.0), (6563.0, 40.0), (8542.0, 20.0)):
        depth = 0.5 * np.exp(-((np.log10(teff) - 3.9) / 0.2) ** 2) * 10 ** (0.3 * logz) * (logg / 4) ** 0.3
        flux *= 1 - depth[:, None] * np.exp(-0.5 * ((wave - centre) / width) ** 2)[None]
    flux *= 1 + 0.03 * (lib[:, None] == 1)          # the libraries disagree a little, as real ones do
    mask = np.ones(flux.shape, bool)
    mask[lib == 1, :20] = False                      # library 1 lacks the far UV
    mask[rng.integers(0, len(teff), 15), rng.integers(0, wave.size, 15)] = False
    flux = np.where(mask, flux, np.nan).astype(np.float32)
    from smnet_sps.grid import UnionGrid, save_grid
    libs = {n: {"citation": "synthetic test grid", "folder": "-", "convention": "surface F_lambda",
                "n_spectra": int((lib == j).sum()), "n_dropped": 0, "bolometric_deviation": {}}
            for j, n in enumerate(["liba", "libb"])}
    save_grid(UnionGrid(wavelength=wave, teff=teff, logg=logg, logz=logz, library_id=lib,
                        library_names=["liba", "libb"], flux=flux, mask=mask,
                        source_file=np.array([f"synthetic/{i}" for i in range(len(teff))]), libraries=libs,
                        provenance=[]), path)
    return path


@pytest.fixture(scope="module")
def synth_grid(tmp_path_factory):
    return make_synthetic_grid(tmp_path_factory.mktemp("grid") / "grid.h5")


def test_masked_mse_ignores_garbage_in_masked_pixels():
    torch.manual_seed(0)
    pred = torch.randn(4, 50, requires_grad=True)
    target = torch.randn(4, 50)
    mask = torch.rand(4, 50) > 0.3
    loss_a = masked_mse(pred, target, mask)
    ga, = torch.autograd.grad(loss_a, pred)
    garbage = target.clone()
    garbage[~mask] = torch.tensor([1e30, float("nan"), float("inf")]).repeat(100)[: int((~mask).sum())]
    loss_b = masked_mse(pred, garbage, mask)
    gb, = torch.autograd.grad(loss_b, pred)
    assert torch.isfinite(loss_b)
    assert loss_a.item() == loss_b.item()
    assert torch.equal(ga, gb)
    assert (gb[~mask] == 0).all()                   # no gradient through unknown pixels
    # hand computation on known pixels
    per = [((pred[i] - target[i])[mask[i]] ** 2).mean() for i in range(4)]
    assert abs(loss_a.item() - torch.stack(per).mean().item()) < 1e-6


def test_log_ratio_targets_floor_and_mask():
    flux = np.array([[1.0, 0.0, np.nan]]) * SIGMA_SB * 5000.0**4
    out = log_ratio_targets(flux, np.array([[True, True, False]]), np.array([5000.0]))
    assert out[0, 0] == 0.0 and out[0, 1] == -30.0 and np.isnan(out[0, 2])


def test_split_holds_out_interior_nodes_only(synth_grid):
    g = read_grid(synth_grid)
    split = split_nodes(g.teff, g.logg, g.logz, g.library_id, test_every=5)
    assert (split == 2).sum() > 3
    for i in np.flatnonzero(split == 2):
        same = ((g.library_id == g.library_id[i]) & (g.logg == g.logg[i]) & (g.logz == g.logz[i])
                & (split == 0))
        assert (g.teff[same] < g.teff[i]).any() and (g.teff[same] > g.teff[i]).any()
    np.testing.assert_array_equal(split, split_nodes(g.teff, g.logg, g.logz, g.library_id, test_every=5))


def test_the_split_is_drawn_over_the_whole_grid_and_a_models_stored_split_is_kept():
    """split_nodes shuffles the interior nodes of every library at once, so a library's split depends on the
    grid's other libraries (docs/generator.md, "Split"): CK04 alone gets 337 test nodes, 61 of them among its
    339 in the shipped five-library grid. Kept on purpose: a per-library shuffle would give the shipped grid
    another split than the one the shipped model stores, which split_nodes reproduces bit for bit here (warm
    starts from it check that). A model's split is never redrawn on another grid: on CK04's nodes alone
    grid_split_applies says no (held-out accuracy skipped), on the same nodes the stored split applies."""
    from types import SimpleNamespace

    from smnet_sps.constants import PACKAGE_DATA
    from smnet_sps.evaluate import grid_split_applies
    from smnet_sps.neural import load_generator
    with np.load(PACKAGE_DATA / "default_model" / "nodes.npz") as f:
        nodes = {k: f[k] for k in f.files}
    split = split_nodes(nodes["teff"], nodes["logg"], nodes["logz"], nodes["library_id"])
    np.testing.assert_array_equal(split, nodes["split"])
    assert np.bincount(split).tolist() == [4149, 242, 452]
    ck04 = nodes["library_id"] == 0
    alone = split_nodes(*(nodes[k][ck04] for k in ("teff", "logg", "logz")), np.zeros(ck04.sum(), int))
    in_union = np.flatnonzero(split[ck04] == 2)
    # the documented limitation (docs/generator.md "Split"), not its exact counts: CK04 alone gets another
    # test set than CK04 in the union, and leaving CM87 out relabels other libraries' nodes
    assert not np.array_equal(np.flatnonzero(alone == 2), in_union)
    no_cm87 = nodes["library_id"] != 4
    assert np.any(split_nodes(*(nodes[k][no_cm87] for k in ("teff", "logg", "logz", "library_id")))
                  != split[no_cm87])
    gen = load_generator(device="cpu")
    assert grid_split_applies(gen, SimpleNamespace(**{k: nodes[k] for k in ("teff", "logg", "logz")})) \
        == "same nodes"
    assert grid_split_applies(gen, SimpleNamespace(**{k: nodes[k][ck04] for k in ("teff", "logg", "logz")})) \
        is None


def test_teff_neighbours_are_the_adjacent_nodes_of_the_same_row():
    from smnet_sps.train import teff_neighbours
    teff = np.array([5000.0, 4000.0, 6000.0, 5000.0, 7000.0, 4500.0])
    logg = np.array([4.0, 4.0, 4.0, 3.0, 4.0, 4.0])
    logz = np.zeros(6)
    lib = np.array([0, 0, 0, 0, 0, 1])           # the last node is another library's
    left, right = teff_neighbours(teff, logg, logz, lib)
    np.testing.assert_array_equal(left, [1, -1, 0, -1, -1, -1])
    np.testing.assert_array_equal(right, [2, -1, 4, -1, -1, -1])


def test_sampling_weights_favour_fast_changing_nodes(synth_grid):
    g = read_grid(synth_grid)
    lr = log_ratio_targets(g.flux, g.mask, g.teff)
    p = np.stack([np.log10(g.teff) / 0.02, g.logg / 0.5, g.logz / 0.5], 1)
    w = sampling_weights(p, lr, g.library_id, w_max=4.0)
    assert w.min() >= 1.0 and w.max() <= 4.0 and w.max() > 1.5


def test_tiny_training_run_learns_and_resumes(synth_grid, tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "m"
    cfg = train(synth_grid, out, width=64, depth=2, epochs=40, batch_size=32, lr=3e-3, progress=False,
                save_every=20, device="cpu")
    hist = np.array(cfg["history"])
    assert hist[-1, 3] < 0.2 * hist[0, 3]            # validation loss fell by > 5x
    for f in ("config.json", "weights.pt", "wavelength.npy", "nodes.npz", "checkpoint.pt"):
        assert (out / f).is_file()
    assert cfg["library_names"] == ["liba", "libb"] and len(cfg["grid_sha256"]) == 64
    cfg2 = train(synth_grid, out, width=64, depth=2, epochs=50, batch_size=32, lr=3e-3, progress=False,
                 resume=True, device="cpu")
    assert cfg2["training"]["epochs_run"] == 50
    with pytest.raises(ValueError, match="resume"):
        train(synth_grid, out, width=32, depth=2, epochs=60, resume=True, progress=False, device="cpu")
    with pytest.raises(ValueError, match="split_seed=0"):        # another held-out split is not a resume
        train(synth_grid, out, width=64, depth=2, epochs=60, batch_size=32, resume=True, progress=False,
              device="cpu", split_seed=1)
    for bad in (-1, 1.5, float("nan"), "0"):
        with pytest.raises(ValueError, match="split_seed must be a non-negative integer"):
            train(synth_grid, tmp_path / "bad", width=8, depth=1, epochs=1, progress=False, split_seed=bad)


def test_log_pixel_loss_trains_and_is_recorded(synth_grid, tmp_path):
    torch.set_num_threads(1)
    cfg = train(synth_grid, tmp_path / "lg", width=64, depth=2, epochs=40, batch_size=32, lr=3e-3,
                progress=False, device="cpu", pixel_loss="log")
    hist = np.array(cfg["history"])
    assert hist[-1, 3] < 0.7 * hist[0, 3] and cfg["pixel_loss"] == "log"
    with pytest.raises(ValueError, match="allowed"):
        train(synth_grid, tmp_path / "x", pixel_loss="linear")


def test_smnet_arch_trains_in_log1p01(synth_grid, tmp_path):
    torch.set_num_threads(1)
    cfg = train(synth_grid, tmp_path / "s", arch="smnet", B=4, epochs=6, batch_size=32, progress=False,
                device="cpu")
    hist = np.array(cfg["history"])
    assert hist[-1, 3] < hist[0, 3]
    assert 0 < cfg["log1p01"]["tau"] < cfg["log1p01"]["x_max"]


def test_bad_arguments_raise(synth_grid, tmp_path):
    with pytest.raises(ValueError, match="allowed"):
        train(synth_grid, tmp_path / "x", arch="transformer")
    with pytest.raises(FileNotFoundError):
        train(tmp_path / "missing.h5", tmp_path / "x")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an hdf5 file")
    with pytest.raises(ValueError, match="not a readable union grid"):
        train(bad, tmp_path / "x")
    for w_max in (0.5, float("nan"), float("inf"), "five"):
        with pytest.raises(ValueError, match="w_max must be a finite number >= 1"):
            train(synth_grid, tmp_path / "x", w_max=w_max)
    with pytest.raises(ValueError, match="node_loss must be 'mse' or 'pseudo_huber'"):
        train(synth_grid, tmp_path / "x", node_loss="huber")
    for seed in (-1, 2**63, True, 1.5):
        with pytest.raises(ValueError, match=r"seed must be a whole number in 0 \.\. 2\*\*63 - 1"):
            train(synth_grid, tmp_path / "x", seed=seed)
    for option in (dict(uv_weight=3.0), dict(pixel_loss="log"), dict(tail_floor=1e-3)):
        with pytest.raises(ValueError, match="MLP-only option"):
            train(synth_grid, tmp_path / "x", arch="smnet", **option)
    with pytest.raises(ValueError, match=r"\['liba'\] named more than once"):
        train(synth_grid, tmp_path / "x", libraries=["liba", "liba"])
    assert not (tmp_path / "x").exists()


def test_what_config_json_records_is_what_ran(synth_grid, tmp_path, monkeypatch):
    """The same run twice gives the same weights_sha256 (torch named the zip's folder after the temporary
    file, so it differed every time); init_from is recorded resolved, lr_final and weight_decay with lr; a
    warm start from another grid's model names the grid, not the split seed."""
    torch.set_num_threads(1)
    kw = dict(width=16, depth=1, epochs=2, batch_size=32, progress=False, device="cpu", seed=3)
    a = train(synth_grid, tmp_path / "a", **kw)
    b = train(synth_grid, tmp_path / "b", **dict(kw, seed=np.int64(3)))     # a numpy seed is the same seed
    assert a["weights_sha256"] == b["weights_sha256"]
    monkeypatch.chdir(tmp_path)
    c = train(synth_grid, "c", init_from="a", lr_final=0.5, **kw)
    assert c["init_from"] == str((tmp_path / "a").resolve())
    assert c["training"]["lr_final"] == 0.5 and c["training"]["weight_decay"] == 0.0
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    cfg["library_names"] = ["liba", "libz"]
    (tmp_path / "a" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"trained on a grid of libraries \['liba', 'libz'\]"):
        train(synth_grid, "d", init_from="a", **kw)


def test_train_gives_back_the_callers_threads_and_random_state(synth_grid, tmp_path):
    """train() left its caller on `threads` threads and with torch reseeded to `seed` (the next torch.rand
    repeated the training's own draws); both are given back, as calibrate() does, and the weights are those
    of a run that never had them restored (the same weights_sha256 from two different caller states)."""
    threads = torch.get_num_threads()
    kw = dict(width=16, depth=1, epochs=2, batch_size=32, progress=False, device="cpu", seed=3, threads=1)
    try:
        torch.set_num_threads(threads + 1)
        torch.manual_seed(123)
        state = torch.get_rng_state()
        a = train(synth_grid, tmp_path / "a", **kw)
        assert torch.get_num_threads() == threads + 1
        assert torch.equal(torch.get_rng_state(), state)
        torch.manual_seed(456)
        assert train(synth_grid, tmp_path / "b", **kw)["weights_sha256"] == a["weights_sha256"]
    finally:
        torch.set_num_threads(threads)


def test_train_cli(synth_grid, tmp_path, capsys):
    from smnet_sps.cli import main
    out = tmp_path / "cli_model"
    assert main(["train", "--grid", str(synth_grid), "--out", str(out), "--width", "16", "--depth", "1",
                 "--epochs", "3", "--device", "cpu", "--no-progress", "--threads", "1"]) == 0
    assert "wrote" in capsys.readouterr().out and (out / "config.json").is_file()
    uniform = tmp_path / "uniform"
    assert main(["train", "--grid", str(synth_grid), "--out", str(uniform), "--width", "16", "--depth", "1",
                 "--epochs", "3", "--device", "cpu", "--no-progress", "--threads", "1", "--w-max", "1"]) == 0
    assert "clipped to [1, 1.0]" in json.loads((uniform / "config.json").read_text())["sampling_weights"]
    robust = tmp_path / "robust"
    assert main(["train", "--grid", str(synth_grid), "--out", str(robust), "--width", "16", "--depth", "1",
                 "--epochs", "3", "--device", "cpu", "--no-progress", "--threads", "1",
                 "--node-loss", "pseudo_huber"]) == 0
    assert json.loads((robust / "config.json").read_text())["node_loss"] == "pseudo_huber"
    blended = tmp_path / "blended"
    assert main(["train", "--grid", str(synth_grid), "--out", str(blended), "--width", "16", "--depth", "1",
                 "--epochs", "3", "--device", "cpu", "--no-progress", "--threads", "1",
                 "--node-blend", "0.25", "--node-blend-kind", "simplices"]) == 0
    blended_cfg = json.loads((blended / "config.json").read_text())
    assert blended_cfg["node_blend"] == 0.25 and blended_cfg["node_blend_kind"] == "simplices"
    capsys.readouterr()
    assert main(["train", "--grid", str(synth_grid), "--out", str(tmp_path / "bad_blend"),
                 "--node-blend", "1.5", "--no-progress"]) == 1
    assert "node_blend must be a number in [0, 1)" in capsys.readouterr().err
    # clear error, no crash
    assert main(["train", "--grid", str(tmp_path / "none.h5"), "--out", str(out)]) == 1


def _option_off_and_on(synth_grid, tmp_path, option, value):
    """Train without ``option``, with it at 0 and at ``value`` (tiny runs, same seed): (configs, weights)."""
    torch.set_num_threads(1)
    kw = dict(width=16, depth=1, epochs=4, batch_size=32, progress=False, device="cpu", seed=3)
    cfgs = {"plain": train(synth_grid, tmp_path / "plain", **kw),
            "off": train(synth_grid, tmp_path / "off", **{option: 0.0}, **kw),
            "on": train(synth_grid, tmp_path / "on", **{option: value}, **kw)}
    return cfgs, {n: torch.load(tmp_path / n / "weights.pt") for n in cfgs}, kw


def _same_weights(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_input_jitter_enters_training_only_when_asked(synth_grid, tmp_path):
    cfgs, w, kw = _option_off_and_on(synth_grid, tmp_path, "input_jitter", 0.5)
    assert cfgs["on"]["input_jitter"] == 0.5 and cfgs["plain"]["input_jitter"] == 0.0
    # off: bit-identical to a run without the option (no extra random draws); on: the noise changes the fit
    assert _same_weights(w["plain"], w["off"]) and not _same_weights(w["plain"], w["on"])
    # per input: (Teff, log g, [M/H]); (0.5, 0.5, 0.5) is the single value 0.5 (same random draws)
    same = train(synth_grid, tmp_path / "same", input_jitter=[0.5, 0.5, 0.5], **kw)
    assert same["input_jitter"] == [0.5, 0.5, 0.5]
    assert _same_weights(w["on"], torch.load(tmp_path / "same" / "weights.pt"))
    train(synth_grid, tmp_path / "mh", input_jitter=[0.0, 0.0, 0.5], **kw)
    assert not _same_weights(w["on"], torch.load(tmp_path / "mh" / "weights.pt"))
    for bad in (-1.0, [0.1, 0.2], [0.1, float("nan"), 0.1]):
        with pytest.raises(ValueError, match="input_jitter"):
            train(synth_grid, tmp_path / "bad", input_jitter=bad, **kw)



def test_line_departures_measure_each_node_against_its_neighbours_line():
    """One [M/H] line of five nodes, unevenly spaced, log flux linear in [M/H] but for one node raised by
    0.1 dex: that node departs by 0.1, its two neighbours by 0.05 (half way along their lines), the end nodes
    take their interior neighbours' values; a node left out of ``nodes`` is skipped (the line is drawn over
    it), pixels some node lacks are not counted, and lines of fewer than three nodes give NaN."""
    from smnet_sps.train import line_departures
    logz = np.array([-1.0, -0.5, 0.0, 0.25, 0.5, 0.0, 0.5])
    teff = np.array([30000.0] * 5 + [30000.0, 30000.0])
    logg = np.array([4.0] * 5 + [3.5, 3.5])
    lib = np.zeros(7, int)
    slope = np.linspace(-1, 1, 8)
    log_flux = 0.3 + slope[None, :] * logz[:, None]
    log_flux[2] += 0.1
    known = np.ones(log_flux.shape, bool)
    log_flux[3, 0], known[3, 0] = 50.0, False          # a pixel node 3 lacks: never counted
    d = line_departures(teff, logg, logz, lib, log_flux, known, np.arange(7))
    assert np.allclose(d[:5, 2], [0.05, 0.05, 0.1, 0.05, 0.05], atol=1e-12)
    assert np.isnan(d[5:, 2]).all() and np.isnan(d[:, :2]).all()      # 2-node line; one node per Teff / log g
    held_out = line_departures(teff, logg, logz, lib, log_flux, known, [0, 1, 3, 4])
    assert np.isnan(held_out[2, 2]) and np.allclose(held_out[[0, 1, 3, 4], 2], 0.0, atol=1e-12)
    # along Teff the line is straight in log Teff
    teff_line = np.array([10000.0, 20000.0, 40000.0])
    flux_t = 2.0 * np.log10(teff_line)[:, None] + np.zeros((3, 4))
    flat = line_departures(teff_line, np.full(3, 4.0), np.zeros(3), np.zeros(3, int), flux_t,
                           np.ones((3, 4), bool), np.arange(3))
    assert np.allclose(flat[:, 0], 0.0, atol=1e-12)


def test_jitter_shares_scale_by_departure_within_each_library():
    from smnet_sps.train import jitter_shares
    dep = np.array([[np.nan, 0.0, 0.01], [np.nan, 0.0, 0.02], [np.nan, 0.0, 0.04], [np.nan, 0.0, 0.08],
                    [np.nan, 0.0, 1.0], [np.nan, 0.0, 2.0]])
    lib = np.array([0, 0, 0, 0, 1, 1])
    shares = jitter_shares(dep, lib, floor=0.25, quantile=0.5)
    # library 0: median 0.03 -> 0.01 / 0.03 = 1/3, 2/3, then capped at 1; library 1 on its own median (1.5)
    assert np.allclose(shares[:, 2], [1 / 3, 2 / 3, 1, 1, 2 / 3, 1])
    assert np.allclose(shares[:, :2], 1.0)          # unknown (NaN) and all-zero departures: the whole jitter
    assert np.allclose(jitter_shares(dep, lib, floor=0.5, quantile=0.5)[:2, 2], [0.5, 2 / 3])
    assert np.array_equal(jitter_shares(dep, lib, floor=1.0), np.ones(dep.shape))
    for bad in (dict(floor=0.0), dict(floor=-3), dict(floor=2.0), dict(quantile=1.5), dict(quantile=np.nan)):
        with pytest.raises(ValueError, match=r"must be a number in \(0, 1\]"):
            jitter_shares(dep, lib, **bad)


def test_jitter_floor_enters_training_only_when_asked(synth_grid, tmp_path):
    """jitter_floor 1 (the default) is bit-identical to the plain jitter run; a quantile so low that every
    node reaches the whole jitter is too; a floor below 1 otherwise changes the fit, with node blending too;
    the options are recorded and checked."""
    torch.set_num_threads(1)
    kw = dict(width=16, depth=1, epochs=4, batch_size=32, progress=False, device="cpu", seed=3,
              input_jitter=[0.5, 0.0, 0.5])
    plain = train(synth_grid, tmp_path / "plain", **kw)
    train(synth_grid, tmp_path / "one", jitter_floor=1.0, **kw)
    train(synth_grid, tmp_path / "all_full", jitter_floor=0.1, jitter_quantile=1e-9, **kw)
    on = train(synth_grid, tmp_path / "on", jitter_floor=0.1, jitter_quantile=0.9, **kw)
    w = {n: torch.load(tmp_path / n / "weights.pt") for n in ("plain", "one", "all_full", "on")}
    assert plain["jitter_floor"] == 1.0 and on["jitter_floor"] == 0.1 and on["jitter_quantile"] == 0.9
    assert _same_weights(w["plain"], w["one"]) and _same_weights(w["plain"], w["all_full"])
    assert not _same_weights(w["plain"], w["on"])
    blend = {f: train(synth_grid, tmp_path / f"b{f}", node_blend=0.5, jitter_floor=f, **kw)
             for f in (1.0, 0.1)}
    wb = {f: torch.load(tmp_path / f"b{f}" / "weights.pt") for f in blend}
    assert not _same_weights(wb[1.0], wb[0.1]) and all(torch.isfinite(v).all() for v in wb[0.1].values())
    for key, bad in (("jitter_floor", 0.0), ("jitter_floor", 1.5), ("jitter_floor", float("nan")),
                     ("jitter_quantile", 0.0), ("jitter_floor", "0.5"), ("jitter_quantile", True)):
        with pytest.raises(ValueError, match=f"{key} must be a number in \\(0, 1\\]"):
            train(synth_grid, tmp_path / "bad", **{key: bad}, **kw)
    assert not (tmp_path / "bad").exists()

def test_exclude_nodes_leaves_nodes_out_of_training(synth_grid, tmp_path):
    """k-fold over nodes (benchmarks/bench_node_cv.py): excluded nodes are recorded and never trained on."""
    from smnet_sps.grid import load_grid
    torch.set_num_threads(1)
    kw = dict(width=16, depth=1, epochs=2, batch_size=32, progress=False, device="cpu", libraries=["libb"])
    g = load_grid(synth_grid)
    first = train(synth_grid, tmp_path / "all", **kw)
    split = np.load(tmp_path / "all" / "nodes.npz")["split"]
    libb = np.flatnonzero((split == 0) & (g.library_id == 1))
    cfg = train(synth_grid, tmp_path / "cv", exclude_nodes=libb[::2], **kw)
    assert cfg["excluded_nodes"] == sorted(libb[::2].tolist()) and first["excluded_nodes"] == []
    # excluding every training node of the library leaves nothing to train on: refused, not silently ignored
    with pytest.raises(ValueError, match="no training node"):
        train(synth_grid, tmp_path / "none", exclude_nodes=libb, **kw)
    with pytest.raises(ValueError, match="grid node indices"):
        train(synth_grid, tmp_path / "bad", exclude_nodes=[len(g.teff)], **kw)


def test_held_out_spectra_do_not_steer_training(synth_grid, tmp_path):
    """The spectrum at a test node must not change the trained weights (it once did through the sampling
    weights, whose neighbour search saw held-out nodes): training twice, with one test node's flux changed by
    a factor of 3, gives bit-identical weights. Validation nodes may differ: they choose the epoch kept."""
    from smnet_sps.grid import load_grid, save_grid
    torch.set_num_threads(1)
    kw = dict(width=16, depth=1, epochs=3, batch_size=16, progress=False, device="cpu", keep="final")
    train(synth_grid, tmp_path / "a", **kw)
    split = np.load(tmp_path / "a" / "nodes.npz")["split"]
    g = load_grid(synth_grid)
    test_node = np.flatnonzero(split == 2)[0]
    g.flux[test_node] *= 3.0
    changed = tmp_path / "changed.h5"
    save_grid(g, changed)
    train(changed, tmp_path / "b", **kw)
    wa, wb = (torch.load(tmp_path / n / "weights.pt") for n in ("a", "b"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_pseudo_huber_node_loss_damps_an_outlying_spectrum():
    """node_loss="pseudo_huber": a spectrum 100x further off than the others pulls ~10x less than with the
    mean square, the typical ones 1/sqrt(2) as much (they sit at the batch median); unknown names are
    refused."""
    torch.manual_seed(0)
    target = torch.zeros(8, 20)
    pred = torch.full((8, 20), 0.1, requires_grad=True)
    with torch.no_grad():
        pred[0] = 10.0 * 0.1                                  # 100x the squared error of the others
    mask = torch.ones(8, 20, dtype=torch.bool)
    g_mse, = torch.autograd.grad(masked_mse(pred, target, mask), pred)
    g_ph, = torch.autograd.grad(masked_mse(pred, target, mask, node_loss="pseudo_huber"), pred)
    ratio = (g_ph.abs().sum(1) / g_mse.abs().sum(1)).numpy()
    assert 0.05 < ratio[0] < 0.15 and np.allclose(ratio[1:], ratio[1], rtol=1e-6) and 0.6 < ratio[1] <= 1.0
    with pytest.raises(ValueError, match="node_loss"):
        masked_mse(pred, target, mask, node_loss="huber")


def test_blend_edges_join_neighbours_along_each_input_and_span_held_out_nodes():
    """Segments for node_blend: consecutive nodes of one library along Teff, log g or [M/H] with the other
    two inputs equal; a node left out of ``nodes`` is spanned by its neighbours' segment; never across
    libraries or between nodes that differ in two inputs."""
    from smnet_sps.train import blend_edges
    teff = np.array([4000., 4250., 4500., 4000., 4250., 4000.])
    logg = np.array([4.0, 4.0, 4.0, 4.5, 4.5, 4.0])
    logz = np.zeros(6)
    lib = np.array([0, 0, 0, 0, 0, 1])
    edges = {tuple(e) for e in blend_edges(teff, logg, logz, lib, np.arange(6)).tolist()}
    assert edges == {(0, 1), (1, 2), (3, 4), (0, 3), (1, 4)}
    held_out = {tuple(e) for e in blend_edges(teff, logg, logz, lib, [0, 2, 3, 4, 5]).tolist()}
    assert held_out == {(0, 2), (3, 4), (0, 3)}
    assert blend_edges(teff, logg, logz, lib, [5]).shape == (0, 2)


def test_blend_reference_shift_makes_the_target_the_blend_of_log_flux():
    """Blending two nodes' reference-subtracted targets and adding the shift gives, at the blended Teff, the
    blend of log10(F / sigma Teff^4) -- the space of the interpolation baseline -- not the blend of the
    departures from two different blackbodies."""
    from smnet_sps.model import blackbody_log_ratio
    from smnet_sps.train import blend_reference_shift
    wave = np.geomspace(1000.0, 20000.0, 40)
    teff_a, teff_b, t = np.array([5000.0, 30000.0]), np.array([6000.0, 30000.0]), np.array([0.3, 0.6])
    rng = np.random.default_rng(1)
    lr_a, lr_b = rng.normal(-4, 0.5, (2, 40)), rng.normal(-4, 0.5, (2, 40))    # log10 F / sigma T^4
    y_a, y_b = lr_a - blackbody_log_ratio(wave, teff_a), lr_b - blackbody_log_ratio(wave, teff_b)
    shift = blend_reference_shift(wave, teff_a, teff_b, t)
    teff_t = 10 ** ((1 - t) * np.log10(teff_a) + t * np.log10(teff_b))
    rebuilt = (1 - t[:, None]) * y_a + t[:, None] * y_b + shift + blackbody_log_ratio(wave, teff_t)
    np.testing.assert_allclose(rebuilt, (1 - t[:, None]) * lr_a + t[:, None] * lr_b, atol=1e-9)
    assert np.abs(shift[1]).max() < 1e-12 and np.abs(shift[0]).max() > 0.01   # equal Teff: nothing to move
    assert np.all(blend_reference_shift(wave, teff_a, teff_b, t, reference="none") == 0.0)


def test_blend_simplices_draw_the_interpolation_baselines_value():
    """Simplices for node_blend_kind="simplices": a point drawn in one with the barycentric blend of its
    vertices' values is what the interpolation baseline (NodeInterpolator over the same nodes) gives there;
    simplices never mix libraries, tile the hull without flat ones, and a library varying fewer inputs gets
    triangles or segments, padded with their first vertex."""
    from scipy.spatial import ConvexHull

    from smnet_sps.baselines import NodeInterpolator
    from smnet_sps.constants import NODE_STEPS
    from smnet_sps.train import blend_simplices
    t, g, z = np.meshgrid([20000., 25000., 30000., 36000.], [3.5, 4.0, 4.5], [-1.0, -0.5, 0.0], indexing="ij")
    teff = np.concatenate([t.ravel(), [4000., 4500., 5000., 4000., 4500.], [6000., 7000., 8000.]])
    logg = np.concatenate([g.ravel(), [4.0, 4.0, 4.0, 4.5, 4.5], [2.0, 2.0, 2.0]])
    logz = np.concatenate([z.ravel(), np.zeros(5), np.zeros(3)])
    lib = np.repeat([0, 1, 2], [t.size, 5, 3])
    held_out = 13                                        # an interior node of library 0
    nodes = np.setdiff1d(np.arange(len(teff)), [held_out])
    simplices, counts = blend_simplices(teff, logg, logz, lib, nodes)
    assert simplices.shape == (len(counts), 4) and set(counts) == {2, 3, 4}
    assert held_out not in simplices
    for s_, c in zip(simplices, counts):
        assert len(set(lib[s_])) == 1 and len(set(s_[:c])) == c and set(s_[c:]) <= {s_[0]}
    assert (counts[lib[simplices[:, 0]] == 2] == 2).sum() == 2          # one input varies: two segments
    params = np.stack([np.log10(teff), logg, logz], 1)
    values = np.random.default_rng(3).normal(size=(len(teff), 6))
    rng = np.random.default_rng(4)
    for library in (0, 1):
        own = nodes[lib[nodes] == library]
        rows = np.flatnonzero(lib[simplices[:, 0]] == library)
        pick = rows[rng.integers(len(rows), size=300)]
        w = rng.dirichlet(np.ones(4), size=300) * (np.arange(4) < counts[pick][:, None])
        w /= w.sum(1, keepdims=True)
        point = (w[:, :, None] * params[simplices[pick]]).sum(1)
        blend = (w[:, :, None] * values[simplices[pick]]).sum(1)
        np.testing.assert_allclose(NodeInterpolator(params[own], values[own])(point), blend, atol=1e-10)
    # library 0's tetrahedra, in the baseline's grid-step units, fill its hull exactly, none of them flat
    steps = params / np.asarray(NODE_STEPS)
    corners = steps[simplices[lib[simplices[:, 0]] == 0]]
    volumes = np.abs(np.linalg.det(corners[:, 1:] - corners[:, :1])) / 6
    hull = ConvexHull(steps[nodes[lib[nodes] == 0]]).volume
    assert volumes.min() > 0 and np.isclose(volumes.sum(), hull, rtol=1e-9)


def test_node_blend_kind_simplices_trains_and_is_recorded(synth_grid, tmp_path):
    torch.set_num_threads(1)
    kw = dict(width=16, depth=1, epochs=3, batch_size=32, progress=False, device="cpu", seed=3)
    seg = train(synth_grid, tmp_path / "seg", node_blend=0.5, **kw)
    simp = train(synth_grid, tmp_path / "simp", node_blend=0.5, node_blend_kind="simplices", **kw)
    assert seg["node_blend_kind"] == "segments" and simp["node_blend_kind"] == "simplices"
    w_seg, w_simp = (torch.load(tmp_path / d / "weights.pt") for d in ("seg", "simp"))
    assert not _same_weights(w_seg, w_simp) and all(torch.isfinite(v).all() for v in w_simp.values())
    with pytest.raises(ValueError, match="node_blend_kind must be 'segments' or 'simplices'"):
        train(synth_grid, tmp_path / "bad", node_blend=0.5, node_blend_kind="cells", **kw)


def test_node_blend_enters_training_only_when_asked(synth_grid, tmp_path):
    cfgs, w, kw = _option_off_and_on(synth_grid, tmp_path, "node_blend", 0.5)
    assert cfgs["on"]["node_blend"] == 0.5 and cfgs["plain"]["node_blend"] == 0.0
    assert _same_weights(w["plain"], w["off"]) and not _same_weights(w["plain"], w["on"])
    assert all(torch.isfinite(v).all() for v in w["on"].values())
    for bad in (-0.1, 1.0, float("nan"), "half", None):
        with pytest.raises(ValueError, match="node_blend"):
            train(synth_grid, tmp_path / "bad", node_blend=bad, **kw)
    with pytest.raises(ValueError, match="node_blend needs arch='mlp'"):
        train(synth_grid, tmp_path / "bad", arch="smnet", node_blend=0.5, **kw)


def test_node_cv_test_like_nodes_need_both_teff_neighbours_outside_the_fold(synth_grid, monkeypatch):
    """benchmarks/bench_node_cv.py scores a "test-like" subset: held-out nodes whose two Teff neighbours are
    both among the nodes it trains and interpolates on, as at a test node. A node held out with one of its
    neighbours is not test-like; an edge node never is. (The script imports benchmarks/results_file.py, as
    it does when run: put on the path here, the test ran alone failed, passing only after test_benchmarks.)"""
    import importlib.util
    from pathlib import Path
    from smnet_sps.grid import load_grid
    from smnet_sps.train import teff_neighbours
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_node_cv.py"
    monkeypatch.syspath_prepend(str(path.parent))
    spec = importlib.util.spec_from_file_location("bench_node_cv", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    g = load_grid(synth_grid)
    left, right = teff_neighbours(g.teff, g.logg, g.logz, g.library_id)
    node = np.flatnonzero((left >= 0) & (right >= 0))[0]
    everything = np.arange(len(g.teff))
    others = np.setdiff1d(everything, [node])
    assert bench.test_like_nodes(g, np.array([node]), others).tolist() == [True]
    fold = np.array([node, right[node]])                    # held out with its right neighbour
    assert bench.test_like_nodes(g, fold, np.setdiff1d(everything, fold)).tolist() == [False, False]
    edge = np.flatnonzero(left < 0)[:3]
    assert not bench.test_like_nodes(g, edge, np.setdiff1d(everything, edge)).any()
    # teff-lines folds: a partition in which no two Teff neighbours share a fold, so every interior node is
    # test-like; random folds put some neighbours together
    tl = bench.folds_of(everything, 3, scheme="teff-lines", grid=g)
    assert sorted(np.concatenate(tl).tolist()) == everything.tolist()
    fold_of = np.empty(len(everything), int)
    for k, f in enumerate(tl):
        fold_of[f] = k
    inner = np.flatnonzero((left >= 0) & (right >= 0))
    assert (fold_of[inner] != fold_of[left[inner]]).all() and (fold_of[inner] != fold_of[right[inner]]).all()
    assert sum(bench.test_like_nodes(g, f, np.setdiff1d(everything, f)).sum() for f in tl) == inner.size
    rnd = bench.folds_of(everything, 3)
    assert sum(bench.test_like_nodes(g, f, np.setdiff1d(everything, f)).sum() for f in rnd) < inner.size
    with pytest.raises(ValueError, match="fold scheme"):
        bench.folds_of(everything, 3, scheme="teff-lines")


def test_node_cv_bases_of_another_seed_are_kept_apart(tmp_path, monkeypatch):
    """``base_seed=S`` retrains the fold bases with train(seed=S) under their own cache name; cached bases of
    another seed are refused, not silently reused (they would score the wrong realisation)."""
    import importlib.util
    import json
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_node_cv.py"
    monkeypatch.syspath_prepend(str(path.parent))        # its import of results_file, as when it is run
    spec = importlib.util.spec_from_file_location("bench_node_cv", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    name, _, steps, over = bench.parse_setting("b:0,0,0.3:24000:node_blend=0.75,base_seed=1")
    assert (name, steps, over) == ("b", 24000, {"node_blend": 0.75, "base_seed": 1})
    cached = tmp_path / "wmbasic_base_5tlfold0"
    cached.mkdir()
    (cached / "config.json").write_text(json.dumps({"seed": 0, "training": {"finished": True}}))
    assert bench.refit_base("unused", "unused", np.arange(3), cached) == cached
    with pytest.raises(SystemExit, match="seed 0, not 0 and 1"):
        bench.refit_base("unused", "unused", np.arange(3), cached, seed=1)
    with pytest.raises(SystemExit, match="folds are numbered 0 to 4"):
        bench.main(["--only-folds", "5", "--grid", str(tmp_path / "nosuch.h5")])


def test_a_warm_start_on_a_rebuilt_grid_keeps_its_own_output_scaling(synth_grid, tmp_path):
    """Grid rebuilt with one pixel 10x brighter in every spectrum (as the sampled far infrared moved
    NextGen's): the warm start learns it in its own standardisation. Fitted in the new grid's and read out in
    the loaded one, the pixel stayed ~1 dex off whatever the training."""
    from smnet_sps.grid import load_grid, save_grid
    from smnet_sps.neural import load_generator
    torch.set_num_threads(1)
    kw = dict(width=32, depth=2, batch_size=32, progress=False, device="cpu")
    base = tmp_path / "base"
    train(synth_grid, base, epochs=3, **kw)
    g = load_grid(synth_grid)
    pixel = 150
    g.flux[:, pixel] *= 10.0
    moved = save_grid(g, tmp_path / "moved.h5")
    tuned = tmp_path / "tuned"
    train(moved, tuned, epochs=200, init_from=base, lr=3e-3, keep="final", **kw)
    gen = load_generator(tuned, device="cpu", fill_tail=False)
    rows = np.flatnonzero(g.mask[:, pixel] & (gen.nodes["split"] == 0) & (g.library_id == 0))[:40]
    flux, _ = gen.surface_flux(g.teff[rows], g.logg[rows], g.logz[rows], library=g.library_names[0])
    off = np.abs(np.log10(flux[:, pixel] / g.flux[rows, pixel]))
    assert np.median(off) < 0.3, np.median(off)


def test_a_warm_starts_pixel_weights_come_from_the_loaded_scaling(synth_grid, tmp_path, monkeypatch):
    """pixel_loss='log' weights each pixel by its spread: after a warm start on a rebuilt grid, the loaded
    out_std's spread, not the new grid's (a pixel whose spread grew got 980x its weight)."""
    import smnet_sps.train as train_module
    from smnet_sps.grid import load_grid, save_grid
    from smnet_sps.train import _pixel_weights
    torch.set_num_threads(1)
    kw = dict(width=32, depth=2, batch_size=32, progress=False, device="cpu", pixel_loss="log")
    base = tmp_path / "base"
    train(synth_grid, base, epochs=2, **kw)
    g = load_grid(synth_grid)
    g.flux[:, 150] *= (g.teff / 5000.0) ** 8                 # the spread of this pixel's targets grows
    moved = save_grid(g, tmp_path / "moved.h5")
    seen = []
    real = train_module.masked_mse

    def spy(*args, pixel_weights=None, **kwargs):
        seen.append(pixel_weights.detach().cpu().numpy().copy())
        return real(*args, pixel_weights=pixel_weights, **kwargs)
    monkeypatch.setattr(train_module, "masked_mse", spy)
    train(moved, tmp_path / "tuned", epochs=1, init_from=base, **kw)
    loaded_std = torch.load(base / "weights.pt", weights_only=True)["out_std"].double().numpy()
    np.testing.assert_allclose(seen[0], _pixel_weights(loaded_std, "log", 1.0, g.wavelength), rtol=1e-5)


def _grid_with_fold_changed(synth_grid, path, fold, factor=3.0):
    """The synthetic grid with only the ``fold`` nodes' spectra multiplied by ``factor``."""
    from smnet_sps.grid import load_grid, save_grid
    g = load_grid(synth_grid)
    g.flux[fold] *= factor
    save_grid(g, path)
    return path


def test_an_excluded_fold_does_not_shape_the_model(synth_grid, tmp_path):
    """exclude_nodes (a k-fold fold of bench_node_cv.py) left the fold in the output scaling, its clamp range
    and the log1p01 fit (x3 on a fold of the union grid's training nodes moved out_mean by 0.115 dex, x_max
    0.00715 -> 0.0182): with the fold's spectra x3 the trained model is now bit-identical, also a specialist
    fine-tuned (init_from) from a base trained without the fold."""
    torch.set_num_threads(1)
    kw = dict(width=16, depth=1, epochs=2, batch_size=32, progress=False, device="cpu", keep="final")
    split = split_nodes(*(np.asarray(a) for a in _grid_nodes(synth_grid)))
    fold = np.flatnonzero(split == 0)[::5]
    changed = _grid_with_fold_changed(synth_grid, tmp_path / "changed.h5", fold)
    cfgs = {}
    for name, grid in (("a", synth_grid), ("b", changed)):
        cfgs[name] = train(grid, tmp_path / name, exclude_nodes=fold, **kw)
        train(grid, tmp_path / (name + "_lib"), init_from=tmp_path / name, libraries=["liba"],
              exclude_nodes=fold, **kw)
    assert cfgs["a"]["log1p01"] == cfgs["b"]["log1p01"]
    for model in ("a", "a_lib"):
        wa, wb = (torch.load(tmp_path / m / "weights.pt", weights_only=True)
                  for m in (model, model.replace("a", "b", 1)))
        for k in ("out_mean", "out_std", "out_lo", "out_hi"):
            assert torch.equal(wa[k], wb[k]), (model, k)
        assert _same_weights(wa, wb), model


def _grid_nodes(path):
    from smnet_sps.grid import load_grid
    g = load_grid(path)
    return g.teff, g.logg, g.logz, g.library_id
