"""Library experts: specialist fine-tunes (train --libraries), combined into one model that routes each
library's passes to its expert."""

import json

import numpy as np
import pytest
import torch

from smnet_sps.experts import build_expert_model, replace_experts
from smnet_sps.model import LibraryExpertMLP, SpectrumMLP
from smnet_sps.neural import load_generator
from smnet_sps.train import train

from test_train import make_synthetic_grid


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("experts")
    grid = make_synthetic_grid(root / "grid.h5")
    kw = dict(width=32, depth=2, threads=1, progress=False, batch_size=32)
    base = root / "base"
    train(grid, base, epochs=40, **kw)
    spec = root / "libb"
    train(grid, spec, epochs=30, init_from=base, libraries=["libb"], keep="final", lr=1e-3, **kw)
    return grid, base, spec, root


def test_specialist_trains_on_its_library_only(models):
    grid, base, spec, _ = models
    cfg = json.loads((spec / "config.json").read_text())
    assert cfg["trained_libraries"] == ["libb"]
    assert cfg["training"]["kept"] == "final"
    # the specialist's weights moved away from the base (it was trained), its output scaling did not
    sd_b, sd_s = (torch.load(d / "weights.pt") for d in (base, spec))
    assert not torch.equal(sd_b["net.0.weight"], sd_s["net.0.weight"])
    assert torch.equal(sd_b["out_mean"], sd_s["out_mean"])


def test_expert_model_routes_each_library_to_its_expert(models):
    _, base, spec, root = models
    out = root / "combined"
    cfg = build_expert_model(base, {"libb": spec}, out)
    assert cfg["arch"] == "mlp_experts" and cfg["arch_kwargs"]["expert_index"] == [0, 1]
    # provenance of each specialist: where it started and how it was trained
    assert cfg["experts"]["libraries"]["libb"]["init_from"] == str(base)
    assert cfg["experts"]["libraries"]["libb"]["input_jitter"] == 0.0
    # the base's Wien-tail table travels with it (it depends on the grid and split, not on the weights)
    assert cfg["tail_file"] == "tail.npz"
    assert (out / "tail.npz").read_bytes() == (base / "tail.npz").read_bytes()
    g_base, g_spec, g_comb = (load_generator(d, device="cpu") for d in (base, spec, out))
    assert g_comb.tail is not None
    teff, logg, logz = np.array([5000.0, 9000.0, 12000.0]), np.array([4.0, 4.0, 4.5]), np.zeros(3)
    for lib, ref in (("liba", g_base), ("libb", g_spec)):
        a, _ = g_comb.surface_flux(teff, logg, logz, library=lib)
        b, _ = ref.surface_flux(teff, logg, logz, library=lib)
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # the default mixture blends the experts' outputs exactly as it blends one network's library passes
    mix = g_comb.mixture(teff, logg, logz)
    assert (mix > 0).sum(1).max() >= 1
    full, _ = g_comb.surface_flux(teff, logg, logz)
    la = np.log(g_base.surface_flux(teff, logg, logz, library="liba")[0])
    lb = np.log(g_spec.surface_flux(teff, logg, logz, library="libb")[0])
    np.testing.assert_allclose(np.log(full), mix[:, :1] * la + mix[:, 1:2] * lb, atol=1e-5)


def test_half_precision_storage_halves_the_file_and_stays_close(models):
    _, base, spec, root = models
    build_expert_model(base, {"libb": spec}, root / "f32")
    build_expert_model(base, {"libb": spec}, root / "f16", half=True)
    s32, s16 = ((root / d / "weights.pt").stat().st_size for d in ("f32", "f16"))
    assert s16 < 0.6 * s32
    teff, logg, logz = np.array([5000.0, 9000.0]), np.array([4.0, 4.0]), np.zeros(2)
    a = load_generator(root / "f32", device="cpu").surface_flux(teff, logg, logz)[0]
    b = load_generator(root / "f16", device="cpu").surface_flux(teff, logg, logz)[0]
    assert np.median(np.abs(b / a - 1)) < 2e-3


def test_bad_expert_sets_are_refused(models):
    grid, base, spec, root = models
    with pytest.raises(ValueError, match="unknown libraries"):
        build_expert_model(base, {"nosuch": spec}, root / "x1")
    with pytest.raises(ValueError, match="not on"):
        build_expert_model(base, {"liba": spec}, root / "x2")       # trained on libb, offered for liba
    with pytest.raises(ValueError, match="no experts"):
        build_expert_model(base, {}, root / "x3")
    with pytest.raises(ValueError, match="already holds"):
        build_expert_model(base, {"libb": spec}, root / "x4")
        build_expert_model(base, {"libb": spec}, root / "x4")
    corrupt = root / "corrupt"
    corrupt.mkdir()
    for f in ("config.json", "nodes.npz"):
        (corrupt / f).write_bytes((spec / f).read_bytes())
    (corrupt / "weights.pt").write_bytes((spec / "weights.pt").read_bytes()[:500])
    with pytest.raises(ValueError, match="truncated, corrupt"):
        build_expert_model(base, {"libb": corrupt}, root / "x8")
    # a cut config.json: named, not json's bare 'Expecting value: line 1 column ...'
    cut = root / "cut_config"
    cut.mkdir()
    for f in ("weights.pt", "nodes.npz"):
        (cut / f).write_bytes((spec / f).read_bytes())
    (cut / "config.json").write_text((spec / "config.json").read_text()[:100])
    with pytest.raises(ValueError, match=r"cut_config.config\.json is not valid JSON"):
        build_expert_model(base, {"libb": cut}, root / "x11")
    # another split: a warm start refuses it (its test nodes would be trained on), and so does the builder
    with pytest.raises(ValueError, match="another train/validation/test split"):
        train(grid, root / "x9", epochs=1, width=32, depth=2, progress=False, init_from=base,
              libraries=["libb"], split_seed=1, batch_size=32)
    other_split = root / "split1"
    train(grid, other_split, epochs=2, width=32, depth=2, progress=False, libraries=["libb"], split_seed=1,
          batch_size=32)
    with pytest.raises(ValueError, match="split"):
        build_expert_model(base, {"libb": other_split}, root / "x7")
    # another optimisation seed keeps the split: same held-out nodes as the base, accepted by the builder
    seed1 = root / "seed1"
    cfg1 = train(grid, seed1, epochs=2, width=32, depth=2, progress=False, init_from=base, libraries=["libb"],
                 seed=1, batch_size=32)
    assert cfg1["seed"] == 1 and cfg1["split"]["split_seed"] == 0
    with np.load(base / "nodes.npz") as a, np.load(seed1 / "nodes.npz") as b:
        assert np.array_equal(a["split"], b["split"])
    build_expert_model(base, {"libb": seed1}, root / "x10")
    with pytest.raises(ValueError, match="unknown"):
        train(grid, root / "x5", epochs=1, width=8, depth=1, progress=False, libraries=["nosuch"])
    with pytest.raises(ValueError, match="keep"):
        train(grid, root / "x6", epochs=1, width=8, depth=1, progress=False, keep="latest")


def test_expert_module_matches_its_members():
    torch.manual_seed(0)
    m = LibraryExpertMLP(n_wave=7, n_libraries=3, width=8, depth=2, expert_index=[0, 1, 0])
    x = torch.rand(6, 3)
    mix = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 1, 0, 2]), 3).float()
    out = m(x, mix)
    for i, lib in enumerate([0, 1, 2, 1, 0, 2]):
        member = m.expert_for(lib)
        assert isinstance(member, SpectrumMLP)
        torch.testing.assert_close(out[i], member(x[i:i + 1], mix[i:i + 1])[0])
    with pytest.raises(ValueError, match="expert_index"):
        LibraryExpertMLP(n_wave=7, n_libraries=3, width=8, depth=2, expert_index=[0, 1])


def test_expert_records_the_runs_a_specialist_continued(models):
    grid, base, spec, root = models
    stage2 = root / "libb_stage2"
    train(grid, stage2, epochs=3, width=32, depth=2, threads=1, progress=False, batch_size=32,
          init_from=spec, libraries=["libb"], keep="final", lr=1e-4, input_jitter=0.1)
    cfg = build_expert_model(base, {"libb": stage2}, root / "combined2")
    rec = cfg["experts"]["libraries"]["libb"]
    assert rec["input_jitter"] == 0.1 and rec["init_from"] == str(spec)
    # one earlier stage (the first specialist run, which started from the shared model: not a stage)
    assert [st["from"] for st in rec["earlier_stages"]] == [str(spec)]
    assert rec["earlier_stages"][0]["training"]["epochs_run"] == 30


def test_several_seeds_of_one_setting_are_averaged_into_one_expert(models):
    import shutil
    grid, base, spec, root = models
    kw = dict(width=32, depth=2, threads=1, progress=False, batch_size=32, epochs=30, init_from=base,
              libraries=["libb"], keep="final", lr=1e-3)
    spec1 = root / "libb_seed1"
    train(grid, spec1, seed=1, **kw)
    out = root / "averaged"
    cfg = build_expert_model(base, {"libb": [spec, spec1]}, out)
    rec = cfg["experts"]["libraries"]["libb"]
    assert rec["weight_average_of_seeds"] == [0, 1] and rec["from"] == [str(spec), str(spec1)]
    assert cfg["arch_kwargs"]["expert_index"] == [0, 1]          # still one network per library
    w = torch.load(out / "weights.pt")
    w0, w1 = (torch.load(d / "weights.pt") for d in (spec, spec1))
    assert not torch.equal(w0["net.0.weight"], w1["net.0.weight"])     # the seeds trained differently
    torch.testing.assert_close(w["experts.1.net.0.weight"], (w0["net.0.weight"] + w1["net.0.weight"]) / 2)
    assert torch.equal(w["experts.1.out_mean"], w0["out_mean"])
    # the average is a working expert: its spectra lie near its members'
    teff, logg, logz = np.array([9000.0, 12000.0]), np.array([4.0, 4.5]), np.zeros(2)
    f = load_generator(out, device="cpu").surface_flux(teff, logg, logz, library="libb")[0]
    f0, f1 = (load_generator(d, device="cpu").surface_flux(teff, logg, logz, library="libb")[0]
              for d in (spec, spec1))
    assert np.all(np.abs(np.log(f / np.sqrt(f0 * f1))) < 0.05)
    # the same from the command line: several directories after one library name
    from smnet_sps.cli import main
    assert main(["experts", "--base", str(base), "--expert", f"libb={spec},{spec1}", "--out",
                 str(root / "averaged_cli")]) == 0
    assert torch.equal(torch.load(root / "averaged_cli" / "weights.pt")["experts.1.net.0.weight"],
                       w["experts.1.net.0.weight"])
    # runs of different settings are not averaged
    other = root / "libb_jitter"
    train(grid, other, input_jitter=0.3, **kw)
    with pytest.raises(ValueError, match="input_jitter"):
        build_expert_model(base, {"libb": [spec, other]}, root / "x11")
    # ... nor runs that differ in any other recorded setting (only five were compared: a pseudo-Huber,
    # blended, other-lr run was averaged with plain ones and recorded as the first run's setting)
    for key, option in (("node_loss", dict(node_loss="pseudo_huber")),
                        ("training.lr_final", dict(lr_final=0.5)),
                        ("jitter_floor", dict(input_jitter=0.3, jitter_floor=0.2))):
        run = root / f"libb_{key}"
        train(grid, run, seed=2, **dict(kw, **option))
        first = other if "input_jitter" in option else spec
        with pytest.raises(ValueError, match=f"differ in '{key}'"):
            build_expert_model(base, {"libb": [first, run]}, root / "x12")
    assert not (root / "x12").exists()
    # ... but runs that trained alike are one setting: a config from before lr_final / weight_decay / the
    # jitter floor were recorded, one jitter width spelled as three, a quantile at floor 1
    old = root / "libb_old_record"
    shutil.copytree(spec, old)
    cfg = json.loads((old / "config.json").read_text())
    for key in ("jitter_floor", "jitter_quantile"):
        del cfg[key]
    for key in ("lr_final", "weight_decay"):
        del cfg["training"][key]
    (old / "config.json").write_text(json.dumps(cfg))
    rec = build_expert_model(base, {"libb": [old, spec1]}, root / "x13")["experts"]["libraries"]["libb"]
    assert rec["weight_average_of_seeds"] == [0, 1] and "seed" not in rec
    three = root / "libb_three"
    train(grid, three, seed=4, **dict(kw, input_jitter=[0.3, 0.3, 0.3], jitter_quantile=0.9))
    build_expert_model(base, {"libb": [other, three]}, root / "x14")
    with pytest.raises(ValueError, match="named twice"):
        build_expert_model(base, {"libb": [spec, root / "libb" / "."]}, root / "x15")
    # experiments may average across settings, and the record says where each run differs
    huber = root / "libb_node_loss"
    rec = build_expert_model(base, {"libb": [spec, huber]}, root / "x16",
                             same_setting=False)["experts"]["libraries"]["libb"]
    assert rec["settings_of_each_run"] == [{}, {"node_loss": "pseudo_huber"}]
    single = build_expert_model(base, {"libb": spec1}, root / "single")["experts"]["libraries"]["libb"]
    assert single["seed"] == 1 and single["training"]["lr_final"] == 0.02 and single["jitter_floor"] == 1.0


def test_one_expert_is_replaced_and_every_other_network_kept_bit_for_bit(models):
    grid, base, spec, root = models
    built = root / "to_replace"
    build_expert_model(base, {"libb": spec}, built, half=True)
    stage2 = root / "libb_stage2_r"
    train(grid, stage2, epochs=3, width=32, depth=2, threads=1, progress=False, batch_size=32,
          init_from=spec, libraries=["libb"], keep="final", lr=1e-4)
    out = root / "replaced"
    cfg = replace_experts(built, {"libb": stage2}, out)
    old_cfg = json.loads((built / "config.json").read_text())
    assert cfg["arch_kwargs"]["expert_index"] == [0, 1]
    rec = cfg["experts"]["libraries"]["libb"]
    assert rec["from"] == str(stage2) and rec["init_from"] == str(spec)
    assert rec["replaces"] == {"from": str(spec), "model_weights_sha256": old_cfg["weights_sha256"]}
    # the other files travel with the model; no partial file is left behind
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in built.iterdir())
    w_old, w_new, w_s2 = (torch.load(d / "weights.pt") for d in (built, out, stage2))
    assert w_new.keys() == w_old.keys()
    for key in w_old:
        if key.startswith("experts.0."):                      # liba's network: untouched
            assert torch.equal(w_new[key], w_old[key]) and w_new[key].dtype == w_old[key].dtype
    # libb's network is the new specialist's, stored in the model's dtype (float16 here)
    assert w_new["experts.1.net.0.weight"].dtype == torch.float16
    assert torch.equal(w_new["experts.1.net.0.weight"], w_s2["net.0.weight"].half())
    assert not torch.equal(w_new["experts.1.net.0.weight"], w_old["experts.1.net.0.weight"])
    teff, logg, logz = np.array([5000.0, 9000.0, 12000.0]), np.array([4.0, 4.0, 4.5]), np.zeros(3)
    g_old, g_new, g_s2 = (load_generator(d, device="cpu") for d in (built, out, stage2))
    np.testing.assert_array_equal(g_new.surface_flux(teff, logg, logz, library="liba")[0],
                                  g_old.surface_flux(teff, logg, logz, library="liba")[0])
    a = g_new.surface_flux(teff, logg, logz, library="libb")[0]
    b = g_s2.surface_flux(teff, logg, logz, library="libb")[0]
    assert np.median(np.abs(a / b - 1)) < 2e-3                    # float16 storage, as for a built model
    # replacing an expert by the specialist it came from gives the same file, byte for byte
    again = replace_experts(out, {"libb": spec}, root / "round_trip")
    assert again["weights_sha256"] == old_cfg["weights_sha256"]


def test_in_place_replacement_and_a_library_that_shared_a_network(models):
    grid, base, spec, root = models
    # an expert model whose two libraries both run the shared network (expert 0)
    shared = root / "both_shared"
    build_expert_model(base, {"libb": spec}, shared)
    state = {k: v for k, v in torch.load(shared / "weights.pt").items() if k.startswith("experts.0.")}
    torch.save(state, shared / "weights.pt")
    cfg = json.loads((shared / "config.json").read_text())
    cfg["arch_kwargs"]["expert_index"] = [0, 0]
    del cfg["experts"]["libraries"]["libb"]
    from smnet_sps.neural import weights_sha256
    cfg["weights_sha256"] = weights_sha256(shared / "weights.pt")
    (shared / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="already holds"):
        replace_experts(shared, {"libb": spec}, shared)
    new = replace_experts(shared, {"libb": spec}, shared, overwrite=True)
    # libb gets a network of its own; liba keeps the shared one
    assert new["arch_kwargs"]["expert_index"] == [0, 1]
    assert new["experts"]["libraries"]["libb"]["replaces"]["from"] == "the shared network (expert 0)"
    assert not [p.name for p in shared.iterdir() if p.name.startswith(".")]      # no staging folder left
    teff, logg, logz = np.array([5000.0, 12000.0]), np.array([4.0, 4.5]), np.zeros(2)
    g, g_base, g_spec = (load_generator(d, device="cpu") for d in (shared, base, spec))
    np.testing.assert_allclose(g.surface_flux(teff, logg, logz, library="liba")[0],
                               g_base.surface_flux(teff, logg, logz, library="liba")[0], rtol=1e-6)
    np.testing.assert_allclose(g.surface_flux(teff, logg, logz, library="libb")[0],
                               g_spec.surface_flux(teff, logg, logz, library="libb")[0], rtol=1e-6)


def test_bad_replacements_are_refused(models, capsys):
    grid, base, spec, root = models
    built = root / "refuse"
    build_expert_model(base, {"libb": spec}, built)
    with pytest.raises(ValueError, match="'mlp_experts' model"):
        replace_experts(base, {"libb": spec}, root / "y1")         # a plain MLP is not an expert model
    with pytest.raises(ValueError, match="unknown libraries"):
        replace_experts(built, {"nosuch": spec}, root / "y2")
    with pytest.raises(ValueError, match="no experts"):
        replace_experts(built, {}, root / "y3")
    with pytest.raises(ValueError, match="not on"):
        replace_experts(built, {"liba": spec}, root / "y4")
    narrow = root / "narrow"
    train(grid, narrow, epochs=2, width=16, depth=2, progress=False, libraries=["libb"], batch_size=32)
    with pytest.raises(ValueError, match="network shape"):
        replace_experts(built, {"libb": narrow}, root / "y5")
    assert not any((root / f"y{i}").exists() for i in range(1, 6))     # nothing written on a refusal
    # a specialist being swapped in is never the output (it was overwritten with the expert model)
    import shutil
    swap = root / "swap_run"
    shutil.copytree(spec, swap)
    before = (swap / "weights.pt").read_bytes()
    with pytest.raises(ValueError, match="is a specialist itself"):
        replace_experts(built, {"libb": swap}, swap, overwrite=True)
    assert (swap / "weights.pt").read_bytes() == before
    from smnet_sps.cli import main
    assert main(["experts", "--model", str(built), "--expert", f"libb={spec}", "--out", str(root / "y6"),
                 "--half"]) == 1
    assert "--half applies to a new model" in capsys.readouterr().err
    assert main(["experts", "--model", str(built), "--expert", f"libb={spec}", "--out",
                 str(root / "y7")]) == 0
    old_cfg = json.loads((built / "config.json").read_text())
    new_cfg = json.loads((root / "y7" / "config.json").read_text())
    assert new_cfg["weights_sha256"] == old_cfg["weights_sha256"]
    # a model with a replaced expert kept the old model's name, so every output (FITS GENERATR, summaries)
    # labelled it as the shipped one; it now says what was replaced, and --name sets a name of one's own
    assert new_cfg["name"] == f"{old_cfg['name']} + new libb expert"
    assert load_generator(root / "y7", device="cpu").name == new_cfg["name"]
    assert main(["experts", "--model", str(built), "--expert", f"libb={spec}", "--out", str(root / "y8"),
                 "--name", "kept name"]) == 0
    assert json.loads((root / "y8" / "config.json").read_text())["name"] == "kept name"


def test_specialists_must_share_the_tail_floor_and_their_held_out_nodes_leave_the_table(models):
    grid, base, spec, root = models
    kw = dict(width=32, depth=2, threads=1, progress=False, batch_size=32, init_from=base, libraries=["libb"])
    learned_tail = root / "libb_floor0"
    # train itself refuses a warm start with another tail_floor (the base's output scaling would be loaded
    # over this run's); a specialist that records one (an older run) is refused by the builder too
    with pytest.raises(ValueError, match="a warm start needs the same"):
        train(grid, learned_tail, epochs=2, tail_floor=0.0, **kw)
    import shutil
    shutil.copytree(spec, learned_tail)
    cfg = json.loads((learned_tail / "config.json").read_text())
    cfg["tail_floor"] = 0.0
    (learned_tail / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="tail_floor 0.0.*--tail-floor 1e-06"):
        build_expert_model(base, {"libb": learned_tail}, root / "t1")
    # a cross-validation fold: nodes this specialist never saw must not come back through the tail table
    with np.load(base / "tail.npz") as table:
        fold = table["node:libb"][:3]
    held_out = root / "libb_fold"
    train(grid, held_out, epochs=2, exclude_nodes=fold, **kw)
    cfg = build_expert_model(base, {"libb": held_out}, root / "t2")
    with np.load(root / "t2" / "tail.npz") as table:
        assert not np.isin(fold, table["node:libb"]).any() and table["node:liba"].size > 0
    assert cfg["experts"]["libraries"]["libb"]["excluded_nodes"] == sorted(fold.tolist())
    assert load_generator(root / "t2", device="cpu").tail is not None       # sha256 updated, loads


def test_a_rebuilt_expert_model_records_the_mixture_file_it_holds(models, tmp_path):
    """build_expert_model copies the base's config, which records the base's mixture.json, but keeps a
    mixture.json already re-ranked in OUT: the config must record the file that is there, or the model is
    refused at load (sha256 mismatch)."""
    import shutil

    from smnet_sps.mixture import MixturePolicy
    from smnet_sps.validate import write_mixture
    _, base_model, spec, _ = models
    base = tmp_path / "base"
    shutil.copytree(base_model, base)
    names = json.loads((base / "config.json").read_text())["library_names"]
    write_mixture(MixturePolicy.default(names), base)          # the base ranked: its config records it
    out = tmp_path / "combined"
    build_expert_model(base, {"libb": spec}, out)
    assert load_generator(out, device="cpu").mixture_policy is not None
    reranked = MixturePolicy.default(list(reversed(names)))
    write_mixture(reranked, out)                               # re-ranked for the experts, as advised
    build_expert_model(base, {"libb": spec}, out, overwrite=True)          # e.g. a new specialist
    gen = load_generator(out, device="cpu")
    assert gen.mixture_policy.orders == reranked.orders


def test_the_base_is_never_the_output_and_a_replaced_models_mixture_goes(models, tmp_path):
    """`experts --base X --out X --overwrite` replaced X's weights and then failed: the base was lost. And
    --overwrite of another model kept that model's mixture.json, recorded as the new model's own."""
    import shutil

    from smnet_sps.neural import default_model_path
    _, base, spec, root = models
    copy = tmp_path / "base_copy"
    shutil.copytree(base, copy)
    before = (copy / "weights.pt").read_bytes()
    with pytest.raises(ValueError, match="is the base model itself"):
        build_expert_model(copy, {"libb": spec}, copy, overwrite=True)
    assert (copy / "weights.pt").read_bytes() == before
    with pytest.raises(ValueError, match="is a specialist itself"):
        build_expert_model(base, {"libb": copy}, copy, overwrite=True)
    assert (copy / "weights.pt").read_bytes() == before
    other = tmp_path / "replaced"
    shutil.copytree(default_model_path(), other)
    cfg = build_expert_model(base, {"libb": spec}, other, overwrite=True)
    assert not (other / "mixture.json").exists() and "mixture_sha256" not in cfg
    load_generator(other, device="cpu")


def test_a_library_named_twice_is_refused(capsys):
    from smnet_sps.cli import main
    assert main(["experts", "--base", "b", "--expert", "cm87=a", "--expert", "cm87=c", "--out", "o"]) == 1
    assert "names 'cm87' twice" in capsys.readouterr().err


def test_a_failed_rebuild_keeps_the_old_model_and_leaves_nothing_behind(models, tmp_path, monkeypatch):
    """`experts --overwrite` wrote weights.pt in place and config.json last: a failure in between (disk full
    here) left new weights beside the old config, a model load_generator refuses, the old one lost; and a
    failed first build left a folder that refused the rerun without --overwrite."""
    from pathlib import Path
    grid, base, spec, root = models
    spec2 = root / "libb_seed1"
    if not spec2.exists():
        train(grid, spec2, epochs=3, width=32, depth=2, threads=1, progress=False, batch_size=32,
              init_from=base, libraries=["libb"], keep="final", lr=1e-3, seed=1)
    out = tmp_path / "experts_model"
    build_expert_model(base, {"libb": spec}, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_write_text = Path.write_text

    def disk_full(self, *args, **kwargs):
        if self.name == "config.json":
            raise OSError(28, "No space left on device", str(self))
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space left"):
        build_expert_model(base, {"libb": spec2}, out, overwrite=True)
    with pytest.raises(OSError, match="No space left"):
        replace_experts(out, {"libb": spec2}, out, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before      # every file as it was, no .partial
    load_generator(out, device="cpu")
    fresh = tmp_path / "new_model"
    for call in (lambda: build_expert_model(base, {"libb": spec}, fresh),
                 lambda: replace_experts(out, {"libb": spec2}, fresh)):
        with pytest.raises(OSError, match="No space left"):
            call()
        assert not fresh.exists()
    monkeypatch.undo()
    cfg = build_expert_model(base, {"libb": spec2}, fresh)                  # the rerun is not refused
    assert load_generator(fresh, device="cpu").name == cfg["name"]
    assert sorted(p.name for p in fresh.iterdir()) == sorted(before)


def test_ctrl_c_during_the_renames_publishes_the_whole_new_model(models, tmp_path, monkeypatch):
    """Ctrl-C landing between the renames of `experts --overwrite` (after weights.pt, before config.json)
    left the new weights beside the old config.json, a model load_generator refuses (weights sha256), the
    old one lost and the rest of the new one removed with the staging folder. The renames now finish first;
    the interruption follows, and the folder holds the whole new model."""
    import os
    import signal
    grid, base, spec, root = models
    out = tmp_path / "experts_model"
    build_expert_model(base, {"libb": spec}, out)
    real_replace, renames = os.replace, []

    def ctrl_c_after_the_first(src, dst):
        real_replace(src, dst)
        renames.append(dst)
        if len(renames) == 1:
            os.kill(os.getpid(), signal.SIGINT)      # Python's handler runs at once, here

    monkeypatch.setattr(os, "replace", ctrl_c_after_the_first)
    old_weights = (out / "weights.pt").read_bytes()
    with pytest.raises(KeyboardInterrupt):
        build_expert_model(base, {"libb": spec}, out, overwrite=True, half=True)     # other weights
    monkeypatch.undo()
    assert len(renames) > 1 and not [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert (out / "weights.pt").read_bytes() != old_weights
    load_generator(out, device="cpu")                   # the new model, whole: its files match its config


def test_a_killed_runs_staging_folder_is_removed_by_the_rerun(models, tmp_path, capsys):
    """`experts` killed by SIGKILL (no cleanup runs) left its .partial.* staging folder, the new weights
    inside, in the model folder for good; every rerun added another. The rerun now removes the ones whose
    process is gone, and says so; one of a process still running, one made on another machine and an
    old-style one (no pid in its name) are left alone."""
    import os
    import re
    import signal
    import socket
    import subprocess
    import sys

    from smnet_sps.cli import main
    _, base, spec, _ = models
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())
    out = tmp_path / "experts_model"
    # a real kill at the last step of the write: the staged files are complete, nothing published
    code = ("import os, signal, sys\nfrom smnet_sps import experts\n"
            "experts._publish = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
            "experts.build_expert_model(sys.argv[1], {'libb': sys.argv[2]}, sys.argv[3])\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(base), str(spec), str(out)],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, err
    (killed,) = out.iterdir()
    assert (killed / "weights.pt").is_file()
    live = out / f".partial.{host}.{os.getpid()}.abc123de"            # this process runs
    elsewhere = out / f".partial.other-machine.{proc.pid}.abc123de"  # its pid means nothing here
    legacy = out / ".partial.x1y2z3ab"                                # before the pid was in the name
    for folder in (live, elsewhere, legacy):
        folder.mkdir()
    assert main(["experts", "--base", str(base), "--expert", f"libb={spec}", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"removed {killed}: the staging folder of an experts run that was killed (process {proc.pid} is " \
           "not running)" in said
    assert f"note: {legacy} looks like a staging folder" in said
    assert killed.name.startswith(f".partial.{host}.{proc.pid}.")        # the pid tells a killed run
    assert not killed.exists() and live.is_dir() and elsewhere.is_dir() and legacy.is_dir()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == sorted(
        p.name for p in (live, elsewhere, legacy))
    load_generator(out, device="cpu")


def test_an_empty_name_in_a_list_of_specialists_is_refused(models, tmp_path, monkeypatch, capsys):
    """`--expert libb=DIR,` (a trailing comma) read the empty name as the current folder: run from inside
    another specialist run, that run was averaged into the expert without a word."""
    import shutil

    from smnet_sps.cli import main
    _, base, spec, _ = models
    here = tmp_path / "another_libb_run"
    shutil.copytree(spec, here)
    monkeypatch.chdir(here)
    for item in (f"libb={spec},", f"libb=,{spec}", f"libb={spec}, "):
        assert main(["experts", "--base", str(base), "--expert", item, "--out", str(tmp_path / "m")]) == 1
        err = capsys.readouterr().err
        assert f"--expert {item!r}: an empty directory in the comma-separated list" in err, err
    assert not (tmp_path / "m").exists()


def test_an_out_that_is_a_file_is_named_before_anything_is_written(models, tmp_path, capsys):
    """`--out` naming a file (or a path below one) ended in the raw "[Errno 17] File exists" /
    "[Errno 20] Not a directory" of the staging folder, with no word of which option was wrong."""
    from smnet_sps.cli import main
    _, base, spec, _ = models
    afile = tmp_path / "report.txt"
    afile.write_text("keep me")
    for out, said in ((afile, f"--out '{afile}' is a file; give a folder for the expert model"),
                      (afile / "model", f"--out '{afile / 'model'}': '{afile}' is a file, not a folder")):
        assert main(["experts", "--base", str(base), "--expert", f"libb={spec}", "--out", str(out)]) == 1
        assert said in capsys.readouterr().err
        with pytest.raises(ValueError, match="is a file"):
            build_expert_model(base, {"libb": spec}, out)
    assert afile.read_text() == "keep me"


def test_a_specialist_trained_on_other_wavelengths_is_refused(models, tmp_path):
    """A specialist fine-tuned (--init-from BASE, which does not compare the wavelengths) on a grid of as many
    pixels at other wavelengths (x1.5) was combined without a word: the expert model kept the base's
    wavelength.npy, so that library's spectra were put 1.5x too blue."""
    from smnet_sps.grid import load_grid, save_grid
    grid, base, spec, root = models
    g = load_grid(grid)
    g.wavelength = np.asarray(g.wavelength) * 1.5
    save_grid(g, tmp_path / "stretched.h5")
    stretched = tmp_path / "libb_stretched"
    train(tmp_path / "stretched.h5", stretched, epochs=2, width=32, depth=2, threads=1, progress=False,
          batch_size=32, init_from=base, libraries=["libb"], keep="final")
    assert np.allclose(np.load(stretched / "wavelength.npy"), 1.5 * np.load(base / "wavelength.npy"))
    with pytest.raises(ValueError, match=r"trained on other wavelengths \(240 pixels, 1500-75000 A\) than "):
        build_expert_model(base, {"libb": stretched}, tmp_path / "m1")
    built = tmp_path / "built"
    build_expert_model(base, {"libb": spec}, built)
    with pytest.raises(ValueError, match="trained on other wavelengths"):
        replace_experts(built, {"libb": stretched}, tmp_path / "m2")
    assert not (tmp_path / "m1").exists() and not (tmp_path / "m2").exists()


def test_rewriting_an_expert_models_tail_table_keeps_its_held_out_nodes_out(models, tmp_path):
    """`smnet-sps tail --overwrite` on an expert model read only the top-level excluded_nodes (the base's,
    none): the nodes a cross-validation-fold specialist never saw, which build_expert_model had left out of
    the table, came back into it."""
    from smnet_sps.cli import main
    grid, base, _, _ = models
    with np.load(base / "tail.npz") as table:
        fold = table["node:libb"][:3]
    held_out = tmp_path / "libb_fold"
    train(grid, held_out, epochs=2, exclude_nodes=fold, width=32, depth=2, threads=1, progress=False,
          batch_size=32, init_from=base, libraries=["libb"])
    model = tmp_path / "experts"
    build_expert_model(base, {"libb": held_out}, model)
    with np.load(model / "tail.npz") as table:
        kept = {k: table[k] for k in ("node:liba", "node:libb")}
    assert not np.isin(fold, kept["node:libb"]).any()
    assert main(["tail", "--model", str(model), "--grid", str(grid), "--overwrite"]) == 0
    with np.load(model / "tail.npz") as table:
        assert not np.isin(fold, table["node:libb"]).any()
        for key, nodes in kept.items():
            np.testing.assert_array_equal(table[key], nodes)
    assert load_generator(model, device="cpu").tail is not None


def test_a_specialist_loaded_alone_warns_of_the_libraries_it_was_not_trained_on(models):
    """A specialist (train --libraries libb) loaded as a generator served liba too, from weights not trained
    for it, with the points flagged covered and no word; now a warning names them, and library='libb' (what
    it was trained for) loads quietly."""
    import warnings
    _, base, spec, _ = models
    with pytest.warns(UserWarning, match=r"trained on libb only \(a specialist\): the default mixture serves "
                                         r"liba spectra it was not trained for"):
        load_generator(spec, device="cpu").surface_flux(9000.0, 4.5, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_generator(spec, device="cpu", library="libb").surface_flux(9000.0, 4.5, 0.0)
        load_generator(spec, device="cpu").surface_flux(9000.0, 4.5, 0.0, library="libb")   # chosen per call
        load_generator(base, device="cpu").surface_flux(9000.0, 4.5, 0.0)
    with pytest.warns(UserWarning, match=r"library='liba' serves liba spectra"):
        load_generator(spec, device="cpu").surface_flux(9000.0, 4.5, 0.0, library="liba")
