"""Loading generators: released SM-Net checkpoints (layout, scaling, errors) and our trained models."""
import json
import re
import warnings

import numpy as np
import pytest
import torch
from astropy import units as u

from smnet_sps.constants import SIGMA_SB, shared_data_dir
from smnet_sps.generator import CoverageWarning
from smnet_sps.model import SMNet
from smnet_sps.neural import _PAD_ROWS, NeuralGenerator, ReleasedSMNetGenerator, load_generator
from smnet_sps.semi_empirical import semi_empirical_model_path

META = "smnet_official/phoenix_husser_c3k_tmap_OB_all.meta.npz"


@pytest.fixture(scope="module")
def released(fixtures_dir, tmp_path_factory):
    """Random weights in the released layout (B=2, L=64) + a small-L meta cut from the real one."""
    d = tmp_path_factory.mktemp("released")
    with np.load(fixtures_dir / META) as m:
        meta = {k: m[k] for k in m.files}
    idx = np.linspace(0, meta["wave"].size - 1, 64).round().astype(int)
    small = dict(meta, wave=meta["wave"][idx])
    np.savez(d / "small.meta.npz", **small)
    torch.manual_seed(3)
    model = SMNet(B=2, L=64)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    sd = model.state_dict()
    torch.save(sd, d / "plain.pt")
    torch.save({"state_dict": dict(sd, **{"refine.pos_encoding": torch.zeros(3, 64)}), "epoch": 3},
               d / "wrapped.pt")
    return d, model.eval(), small


@pytest.mark.parametrize("fname", ["plain.pt", "wrapped.pt"])
def test_released_checkpoint_loads_and_scales_like_hand_computation(released, fname):
    d, model, meta = released
    gen = load_generator(d / fname, meta=d / "small.meta.npz", device="cpu")
    assert isinstance(gen, ReleasedSMNetGenerator) and (gen.B, gen.L) == (2, 64)
    teff, logg, logz = np.array([5777.0, 30000.0]), np.array([4.44, 4.0]), np.array([0.0, -1.0])
    flux, inside = gen.surface_flux(teff, logg, logz)
    assert inside.all()
    # hand computation, straight from CHECKPOINT_FORMAT.md
    lo = np.array([meta["Teff_min"], meta["logG_min"], meta["logZ_min"]])
    hi = np.array([meta["Teff_max"], meta["logG_max"], meta["logZ_max"]])
    xs = np.clip((np.stack([teff, logg, logz], 1) - lo) / (hi - lo), 0, 1)
    with torch.no_grad():
        # padded as the generator does (oneDNN rounds a 2-row batch differently, ~1e-6 in y, which log1p01
        # amplifies x32)
        padded = np.concatenate([xs, np.zeros((_PAD_ROWS - 2, 3))])
        y = model(torch.tensor(padded, dtype=torch.float32))[:2].double().numpy()
    tau, xmax = float(meta["tau"]), float(meta["x_max"])
    x = tau * (np.exp(y * np.log1p(xmax / tau)) - 1)
    wave = meta["wave"].astype(float)
    expected = x * (SIGMA_SB * teff**4 / np.trapezoid(x, wave, axis=1))[:, None]
    np.testing.assert_allclose(flux, expected, rtol=1e-5)
    np.testing.assert_allclose(np.trapezoid(flux, wave, axis=1), SIGMA_SB * teff**4, rtol=1e-6)
    assert "sigma*Teff^4" in gen.meta["flux_normalisation"]
    spec, _ = gen.spectra(5777 * u.K, 4.44, 0.0)
    assert spec.flux.unit == u.Unit("erg s-1 cm-2 AA-1")


def test_released_out_of_box_is_flagged_not_silently_clipped(released):
    d, _, _ = released
    gen = load_generator(d / "plain.pt", meta=d / "small.meta.npz", device="cpu")
    with pytest.warns(CoverageWarning, match="outside"):
        _, inside = gen.surface_flux([5000.0, 250000.0], 4.0, 0.0)
    assert inside.tolist() == [True, False]
    with pytest.raises(ValueError, match="outside"):
        gen.surface_flux(250000.0, 4.0, 0.0, strict=True)
    bb = ReleasedSMNetGenerator(d / "plain.pt", d / "small.meta.npz", device="cpu", normalisation="blackbody")
    f, _ = bb.surface_flux(30000.0, 4.0, 0.0)
    # a 30 kK star has most of its flux below 3000 A: the blackbody option puts < sigma T^4 in range
    assert np.trapezoid(f[0], bb.wavelength) < 0.5 * SIGMA_SB * 30000.0**4


def test_released_union_model_covers_its_libraries_boxes_not_its_whole_meta_box(released, tmp_path):
    """The union checkpoint's meta box (2,000-190,000 K, log g -1..9, [M/H] -4..1) is the bounding box of
    Husser, C3K, TMAP and OB-PoWR; half of it (48.7 % of uniform points) lies in no library's box -- a
    5,000 K star at log g 8, a 100 kK one at log g 1 -- and was flagged inside: such spectra came back
    as covered."""
    d, _, meta = released
    gen = load_generator(d / "plain.pt", meta=d / "small.meta.npz", device="cpu")
    assert sorted(gen.library_boxes) == ["c3k", "husser", "ob_powr", "tmap"]
    teff = [5777.0, 40000.0, 100000.0, 30000.0, 5000.0, 100000.0, 30000.0]
    logg = [4.44, 4.0, 8.0, 8.0, 8.0, 1.0, 4.5]
    logz = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -3.0]
    expected = [True, True, True, True, False, False, False]     # the last: C3K stops at -2.1, OB-PoWR at 4.2
    assert gen.in_coverage(teff, logg, logz).tolist() == expected
    with pytest.warns(CoverageWarning, match="3 of 7 point.*in no library's box.*tmap: Teff 20000-190000 K"):
        _, inside = gen.surface_flux(teff, logg, logz)
    assert inside.tolist() == expected
    with pytest.raises(ValueError, match="Teff=5000 K, log g=8"):
        gen.surface_flux(5000.0, 8.0, 0.0, strict=True)
    # a single-library release covers its meta box (here C3K's flux scaling and box: no library boxes)
    c3k = dict(meta, tau=np.float64(3.1264769419225846e-13), Teff_min=np.float32(2000),
               Teff_max=np.float32(5e4), logG_min=np.float32(-1), logG_max=np.float32(5.5),
               logZ_min=np.float32(-2.1), logZ_max=np.float32(0.5))
    np.savez(tmp_path / "c3k.meta.npz", **c3k)
    single = load_generator(d / "plain.pt", meta=tmp_path / "c3k.meta.npz", device="cpu")
    assert single.library_boxes == {}
    assert single.in_coverage([5000.0, 5000.0], [5.5, 5.6], [-2.1, 0.0]).tolist() == [True, False]


def test_released_mismatched_meta_names_both(released, fixtures_dir):
    d, _, _ = released
    with pytest.raises(ValueError, match=r"L = 64.*11655"):
        load_generator(d / "plain.pt", meta=fixtures_dir / META, device="cpu")


def test_released_checkpoint_with_another_releases_meta_is_refused(released, tmp_path):
    """Seven of the release's eight meta files share the 11,655 wavelengths, so the L check passed another
    release's meta: lookup_model_best_C3K.pt with the union's meta loaded, its spectra scaled with the union's
    tau / x_max (log1p(x_max / tau) 31.9 instead of C3K's 21.0) and box, without a word (the union checkpoint
    with the TMAP+C3K+Husser meta, same box and wavelengths: pixels 0.80-1.59x off)."""
    import shutil
    d, _, _ = released
    meta = d / "small.meta.npz"                       # the union model's meta (its tau), wavelengths cut
    for name in ("lookup_model_best_C3K.pt", "lookup_model_TMAP_C3K_husser_combined.pt"):
        shutil.copy(d / "plain.pt", tmp_path / name)
        with pytest.raises(ValueError, match=rf"small.meta.npz is the release's phoenix_husser_c3k_tmap_OB_"
                           rf"all.meta.npz \(its tau = 3.76506e-17 .*{name} was released with"):
            load_generator(tmp_path / name, meta=meta, device="cpu")
    # the right pair, and a checkpoint the release does not list, load as before
    shutil.copy(d / "plain.pt", tmp_path / "lookup_model_TMAP_C3K_husser_OB_combined.pt")
    load_generator(tmp_path / "lookup_model_TMAP_C3K_husser_OB_combined.pt", meta=meta, device="cpu")
    load_generator(d / "plain.pt", meta=meta, device="cpu")
    # on the command line: a clear error, no traceback
    from smnet_sps.cli import main
    assert main(["ssp", "--age", "1Gyr", "--generator", str(tmp_path / "lookup_model_best_C3K.pt"),
                 "--meta", str(meta)]) == 1


@pytest.mark.skipif(shared_data_dir() is None or not (shared_data_dir().parent / "smnet_official").is_dir(),
                    reason="needs ../shared/smnet_official (the release's meta files)")
def test_released_meta_files_pair_with_their_checkpoints_only(tmp_path):
    """Every released meta file is recognised: with its own checkpoint's name it loads, with another's it is
    refused naming the right one (real meta files; random weights in the released layout)."""
    from smnet_sps.neural import RELEASED_CHECKPOINT_META
    official = shared_data_dir().parent / "smnet_official"
    L = {}
    for meta in sorted(set(RELEASED_CHECKPOINT_META.values())):
        with np.load(official / meta) as m:
            L[meta] = m["wave"].size
    for ckpt, own in RELEASED_CHECKPOINT_META.items():
        torch.manual_seed(0)
        model = SMNet(B=1, L=L[own])
        for p in model.parameters():
            torch.nn.init.normal_(p, std=0.05)
        torch.save(model.state_dict(), tmp_path / ckpt)
        load_generator(tmp_path / ckpt, meta=official / own, device="cpu")
        for other in set(RELEASED_CHECKPOINT_META.values()) - {own}:
            with pytest.raises(ValueError, match=rf"release's {other}, but the checkpoint {ckpt} was "
                               rf"released with {own}"):
                load_generator(tmp_path / ckpt, meta=official / other, device="cpu")


def test_truncated_or_corrupt_weights_raise_clear_error(released, tmp_path):
    d, _, _ = released
    data = (d / "plain.pt").read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.pt.*truncated, corrupt"):
        load_generator(bad, meta=d / "small.meta.npz", device="cpu")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="junk.pt"):
        load_generator(junk, meta=d / "small.meta.npz", device="cpu")
    with pytest.raises(ValueError, match="meta"):
        load_generator(d / "plain.pt", device="cpu")
    with pytest.raises(FileNotFoundError):
        load_generator(tmp_path / "nothing.pt", meta=d / "small.meta.npz")


def test_readme_checkpoint_example_without_the_download_says_where_it_comes_from(
        released, fixtures_dir, capsys, monkeypatch, tmp_path):
    """A new user runs README's released-checkpoint line before downloading the 2.2 GB file: the answer was
    "no model named or at ...: the shipped models are ['default', 'semi-empirical']", nothing on where the
    file comes from; and the meta file given as the model was answered "needs its meta file"."""
    from smnet_sps.neural import ModelNotFoundError
    d, _, _ = released
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFoundError, match=r"no released SM-Net checkpoint at "
                       r"'lookup_model_TMAP_C3K_husser_OB_combined.pt' \(file not found.*not shipped.*"
                       r"Zenodo, DOI 10.5281/zenodo.18883385"):
        load_generator("lookup_model_TMAP_C3K_husser_OB_combined.pt", meta=fixtures_dir / META)
    absolute = tmp_path / "models" / "lookup_model_TMAP_C3K_husser_OB_combined.pt"
    with pytest.raises(ModelNotFoundError) as info:           # an absolute path: no "looked in <cwd>"
        load_generator(absolute, meta=fixtures_dir / META)
    assert str(absolute) in str(info.value) and "looked in" not in str(info.value)
    for meta in (None, d / "small.meta.npz"):
        with pytest.raises(ValueError, match=r"small.meta.npz is a released checkpoint's meta file, not its "
                           r"weights: give the checkpoint \(.pt"):
            load_generator(d / "small.meta.npz", meta=meta, device="cpu")
    with pytest.raises(ModelNotFoundError, match=r"shipped models are \['default'"):
        load_generator("lookup_model")                           # not a .pt: the shipped names, as before
    # the command line: --generator CHECKPOINT.pt --meta META.npz was answered "give it with --generator
    # CHECKPOINT.pt", which is what the user had done
    from smnet_sps.cli import main
    assert main(["ssp", "--age", "1Gyr", "--generator", "lookup_model_TMAP_C3K_husser_OB_combined.pt",
                 "--meta", str(fixtures_dir / META)]) == 1
    err = capsys.readouterr().err
    assert "no released SM-Net checkpoint at 'lookup_model_TMAP_C3K_husser_OB_combined.pt'" in err
    assert "Zenodo" in err and "give it with" not in err


def test_released_nan_input_and_bad_dtype(released):
    d, _, _ = released
    gen = load_generator(d / "plain.pt", meta=d / "small.meta.npz", device="cpu")
    with pytest.raises(ValueError, match="non-finite"):
        gen.surface_flux([5000.0, np.nan], 4.0, 0.0)
    with pytest.raises(ValueError, match="allowed"):
        gen.surface_flux(5000.0, 4.0, 0.0, dtype="int8")
    f32, _ = gen.surface_flux(5000.0, 4.0, 0.0)
    bf16, _ = gen.surface_flux(5000.0, 4.0, 0.0, dtype="bfloat16")
    # bf16 keeps ~3 significant digits of y; log1p01 amplifies dy by log1p(x_max/tau) ~ 32, so bf16 flux is
    # only good to tens of per cent with these random weights: finite, positive, same order of magnitude.
    assert np.isfinite(bf16).all() and (bf16 > 0).all()
    assert np.all(np.abs(np.log(bf16 / f32)) < np.log(3.0))
    # a tensor that requires grad is read for its values (it ended in torch's RuntimeError)
    t = torch.tensor([5000.0], requires_grad=True)
    np.testing.assert_array_equal(gen.surface_flux(t, 4.0, 0.0)[0], f32)
    # a bfloat16 tensor too (numpy has no bfloat16: it was torch's TypeError); 5120 K is exact in bfloat16
    np.testing.assert_array_equal(gen.surface_flux(torch.tensor([5120.0]).bfloat16(), 4.0, 0.0)[0],
                                  gen.surface_flux(5120.0, 4.0, 0.0)[0])


# ---- our trained models -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from test_train import make_synthetic_grid
    from smnet_sps.train import train
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("tiny")
    grid = make_synthetic_grid(d / "grid.h5")
    train(grid, d / "model", width=64, depth=2, epochs=200, batch_size=32, lr=3e-3, progress=False,
          device="cpu")
    return d / "model"


def test_trained_model_library_choice_and_mixture(tiny_model):
    # raw output: the synthetic libb is 3 % brighter (not sigma T^4), which renormalisation would remove
    gen = load_generator(tiny_model, device="cpu", renormalise=False)
    assert isinstance(gen, NeuralGenerator) and gen.library_names == ["liba", "libb"]
    # 7500 K, log g 4, [M/H] 0 lies in both boxes; libb is 3 % brighter by construction
    fa, _ = gen.surface_flux(7500.0, 4.0, 0.0, library="liba")
    fb, _ = gen.surface_flux(7500.0, 4.0, 0.0, library="libb")
    fm, _ = gen.surface_flux(7500.0, 4.0, 0.0)
    sel = (gen.wavelength > 3000) & (gen.wavelength < 20000)
    ratio = np.median(fb[0, sel] / fa[0, sel])
    assert 1.005 < ratio < 1.06
    lo, hi = np.minimum(fa, fb)[0, sel] * 0.98, np.maximum(fa, fb)[0, sel] * 1.02
    assert np.all((fm[0, sel] >= lo) & (fm[0, sel] <= hi))
    with pytest.raises(ValueError, match="liba"):
        gen.surface_flux(7500.0, 4.0, 0.0, library="ck04")
    g2 = load_generator(tiny_model, device="cpu", library="libb", renormalise=False)
    np.testing.assert_allclose(g2.surface_flux(7500.0, 4.0, 0.0)[0], fb, rtol=1e-6)


def test_trained_model_coverage_flags_holes_and_out_of_box(tiny_model):
    gen = load_generator(tiny_model, device="cpu")
    # in liba's box near nodes; libb's box has no [M/H] = -1 models (box logz is 0..0) -> outside at 15 kK
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        inside = gen.in_coverage([5000.0, 15000.0, 15000.0, 30000.0], [4.0, 4.5, 4.5, 4.0],
                                 [0.0, 0.0, -1.0, 0.0])
    assert inside.tolist() == [True, True, False, False]
    with pytest.warns(CoverageWarning):
        gen.surface_flux(30000.0, 4.0, 0.0)
    with pytest.raises(ValueError, match="outside"):
        gen.surface_flux(30000.0, 4.0, 0.0, strict=True)
    with pytest.raises(ValueError, match="non-finite"):
        gen.spectra(np.nan, 4.0, 0.0)


def test_imitation_coverage_is_its_own_librarys(tiny_model, default_generator):
    # 12 kK, log g 4 lies only in libb's box, 5 kK at [M/H] -1 only in liba's: an imitation of the other
    # library there is an extrapolation and must say so (it used to report the union's coverage: inside)
    gen = load_generator(tiny_model, device="cpu")
    teff, logg, logz = [12000.0, 5000.0], [4.0, 3.0], [0.0, -1.0]
    assert gen.in_coverage(teff, logg, logz).tolist() == [True, True]
    assert gen.in_coverage(teff, logg, logz, library="liba").tolist() == [False, True]
    assert gen.in_coverage(teff, logg, logz, library="libb").tolist() == [True, False]
    with pytest.warns(CoverageWarning, match="imitating 'liba'"):
        _, inside = gen.surface_flux(teff, logg, logz, library="liba")
    assert inside.tolist() == [False, True]
    with pytest.raises(ValueError, match="library 'liba' box: Teff 4000-8000 K"):
        gen.surface_flux(teff, logg, logz, library="liba", strict=True)
    # a model loaded with a default library flags by that library
    assert load_generator(tiny_model, device="cpu", library="libb").in_coverage(teff, logg, logz).tolist() \
        == [True, False]
    # the shipped model: CK04 stops at 50 kK, NextGen at 10 kK; the default hands 100 kK to CM87
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        assert default_generator.in_coverage(1e5, 4.5, 0.0).tolist() == [True]
        assert default_generator.in_coverage(1e5, 4.5, 0.0, library="ck04").tolist() == [False]
        assert default_generator.in_coverage(3e4, 4.0, 0.0, library="nextgen").tolist() == [False]
        assert default_generator.in_coverage(5777.0, 4.44, 0.0, library="ck04").tolist() == [True]


def test_outside_coverage_message_says_why_the_point_is_outside(default_generator):
    # a hot white dwarf (30 kK, log g 8) lies inside the overall box "Teff 2000-180000 K, log g -1..8", which
    # the message quoted as if it were the coverage: it is in no library's box (CK04 and BaSeL stop at log g
    # 5 / 5.5, CM87 starts at 60 kK), and the message must say so and list the boxes that count
    with pytest.raises(ValueError) as err:
        default_generator.surface_flux(30000.0, 8.0, 0.0, strict=True)
    msg = str(err.value)
    assert "in no library's box" in msg and "ck04: Teff 3500-50000 K, log g 0..5" in msg
    assert "cm87: Teff 60000-180000 K, log g 4.5..8, [M/H] -0.25..0.25" in msg      # as coverage widens it
    with pytest.warns(CoverageWarning, match="in no library's box"):
        default_generator.surface_flux(30000.0, 8.0, 0.0)
    # inside CK04's and BaSeL's boxes but in their hot low-gravity hole: named as a hole, not as "outside"
    with pytest.raises(ValueError, match=r"inside the box of ck04, basel22 but too far from their training"):
        default_generator.surface_flux(30000.0, 2.0, 0.0, strict=True)
    with pytest.raises(ValueError, match=r"inside the box of ck04 but too far .*library 'ck04' box: Teff"):
        default_generator.surface_flux(30000.0, 2.0, 0.0, strict=True, library="ck04")
    with pytest.raises(ValueError, match=r"outside that library's box; library 'ck04' box"):
        default_generator.surface_flux(30000.0, 8.0, 0.0, strict=True, library="ck04")
    with pytest.raises(ValueError, match="unknown library"):
        default_generator.in_coverage(5777.0, 4.44, 0.0, library="kurucz")


def test_trained_model_streams_many_points_in_batches(tiny_model):
    gen = load_generator(tiny_model, device="cpu")
    n = 200_000
    rng = np.random.default_rng(0)
    teff = rng.uniform(4200, 7800, n)
    total, sizes = 0, set()
    for sl, flux, inside in gen.stream(teff, 4.0, 0.0, batch_size=50_000):
        total += flux.shape[0]
        sizes.add(flux.shape[0])
        assert np.isfinite(flux).all() and inside.all()
    assert total == n and max(sizes) == 50_000


def test_model_directory_errors(tiny_model, tmp_path):
    import shutil
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_generator(tmp_path)
    bad = tmp_path / "bad"
    shutil.copytree(tiny_model, bad)
    (bad / "weights.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="weights.pt"):
        load_generator(bad, device="cpu")
    with pytest.raises(ValueError, match="device"):
        load_generator(tiny_model, device="tpu")


# ---- the shipped default model --------------------------------------------------------------------
STARS = [(2500.0, 5.0, 0.0), (3500.0, 1.0, 0.0), (5777.0, 4.44, 0.0), (10000.0, 4.0, -1.0),
         (20000.0, 4.0, 0.0), (40000.0, 4.0, 0.0), (100000.0, 6.0, 0.0), (190000.0, 7.0, 0.0)]


def test_default_model_physical_spectra(default_generator):
    gen = default_generator
    # the union's log g libraries reach 180 kK (CM87); up to 190 kK the model still answers, flagged outside
    assert gen.box.teff[0] <= 2000.0 and gen.box.teff[1] >= 180000.0
    with pytest.warns(CoverageWarning):
        hot, hot_inside = gen.surface_flux(190000.0, 6.0, 0.0)
    assert not hot_inside[0] and np.isfinite(hot).all() and (hot > 0).all()
    teff, logg, logz = (np.array(c) for c in zip(*STARS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        spec, inside = gen.spectra(teff, logg, logz)
    flux = spec.flux.to_value(u.Unit("erg s-1 cm-2 AA-1"))
    assert np.isfinite(flux).all() and (flux > 0).all()
    # default: the raw network output, whose integral is sigma T^4 to a few per cent (2,000-40,000 K)
    integral = np.trapezoid(flux, gen.wavelength, axis=1)
    np.testing.assert_allclose(integral[:6] / (SIGMA_SB * teff[:6] ** 4), 1.0, rtol=0.06)
    # renormalise=True makes every integral exact
    norm = load_generator(device="cpu", renormalise=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        f, _ = norm.surface_flux(teff, logg, logz)
    np.testing.assert_allclose(np.trapezoid(f, norm.wavelength, axis=1) / (SIGMA_SB * teff**4), 1.0,
                               rtol=1e-6)
    assert "sigma*Teff^4" in norm.meta["flux_normalisation"]
    raw = gen
    sun, _ = raw.surface_flux(5777.0, 4.44, 0.0)
    # raw: 1.1 % (the training libraries themselves obey sigma T^4 only to ~1.5 %)
    assert abs(np.trapezoid(sun[0], raw.wavelength) / (SIGMA_SB * 5777.0**4) - 1) < 0.015
    # smooth: no pixel-to-pixel spikes in the optical of the Sun beyond what the grid itself shows
    opt = (gen.wavelength > 4000) & (gen.wavelength < 9000)
    assert np.abs(np.diff(np.log(sun[0, opt]))).max() < 0.5


# ---- evaluation -----------------------------------------------------------------------------------
def test_interpolation_baseline_is_exact_for_linear_functions():
    from smnet_sps.evaluate import interpolation_baseline
    lt, g = np.meshgrid(np.linspace(3.6, 3.9, 7), [3.0, 4.0, 5.0])
    p = np.stack([lt.ravel(), g.ravel(), np.zeros(lt.size)], 1)        # constant [M/H] axis is dropped
    f = np.stack([2 * p[:, 0] - 0.3 * p[:, 1], p[:, 1]], 1)
    q = np.array([[3.75, 3.5, 0.0], [3.65, 4.2, 0.0], [4.5, 4.0, 0.0]])
    out = interpolation_baseline(p, f, q)
    np.testing.assert_allclose(out[:2], np.stack([2 * q[:2, 0] - 0.3 * q[:2, 1], q[:2, 1]], 1), atol=1e-9)
    assert np.isnan(out[2]).all()                                        # outside the hull: no baseline


def test_node_interpolator_along_one_axis_and_at_one_point():
    """A library varying one axis only is interpolated along it (Qhull needs two); one node is constant."""
    from smnet_sps.baselines import NodeInterpolator
    p = np.stack([np.linspace(3.6, 3.9, 5), np.full(5, 4.0), np.zeros(5)], 1)
    f = np.stack([3 * p[:, 0], -p[:, 0]], 1)
    q = np.array([[3.63, 4.0, 0.0], [3.88, 4.0, 0.0], [3.95, 4.0, 0.0], [3.5, 4.0, 0.0]])
    out = NodeInterpolator(p, f)(q)
    np.testing.assert_allclose(out[:2], np.stack([3 * q[:2, 0], -q[:2, 0]], 1), atol=1e-12)
    assert np.isnan(out[2:]).all()
    np.testing.assert_array_equal(NodeInterpolator(p[:1], f[:1])(q), np.repeat(f[:1], 4, 0))


def test_accuracy_seams_and_cli_on_tiny_model(tiny_model, tmp_path):
    import json
    from smnet_sps.cli import main
    from smnet_sps.evaluate import accuracy_table, relative_errors, seam_report
    from smnet_sps.train import read_grid
    gen = load_generator(tiny_model, device="cpu")
    grid = read_grid(tiny_model.parent / "grid.h5")
    table = accuracy_table(gen, grid)
    assert set(table) <= {"liba", "libb"} and "liba" in table
    r = table["liba"]
    assert 0 < r["median"] < r["p95"] < 0.5 and r["n_baseline"] >= 1 and r["baseline_median"] < 0.05
    seams = seam_report(gen, grid, sweeps=[("a/b", 6000.0, 10000.0, 4.0, 0.0)])
    assert seams[0]["libraries"] == ["liba", "libb"] and seams[0]["model_max_jump"] > 0
    assert seams[0]["library_switches_at_teff"]          # the raw sweep switches library once in 6-10 kK
    # the standard sweeps need libraries the tiny model lacks: reported as not built, with the reason,
    # plus the whole-range fallback sweep
    rows = seam_report(gen, grid)
    assert [r["sweep"] for r in rows[:-1]] == ["NextGen/CK04/BaSeL", "CK04/WM-basic", "CK04+BaSeL/CM87"]
    assert all("model lacks" in r["skipped"] and "model_max_jump" not in r for r in rows[:-1])
    assert rows[-1]["sweep"] == "full range" and rows[-1]["skipped"] is None
    assert rows[-1]["model_max_jump"] > 0
    err = relative_errors(np.array([[1.1, 2.0, 1e-9]]), np.array([[1.0, 2.0, 1e-8]]), np.ones((1, 3), bool),
                          np.array([2000.0, 3000.0, 4000.0]))
    np.testing.assert_allclose(np.sort(err), [0.0, 0.1])                 # the 1e-8 pixel is below the floor
    out = tmp_path / "report.json"
    assert main(["evaluate", "--model", str(tiny_model), "--grid", str(tiny_model.parent / "grid.h5"),
                 "--out", str(out), "--device", "cpu"]) == 0
    assert "accuracy" in json.loads(out.read_text())


def test_single_metallicity_library_covers_quarter_dex(default_generator):
    """BaSeL's M giants exist only at [M/H] = 0: covered within +-0.25 dex of it, flagged beyond."""
    inside = default_generator.in_coverage([3300.0] * 3, [0.3] * 3, [-0.04, 0.2, -0.5])
    assert inside.tolist() == [True, True, False]


# ---- hardening (issue 12) -------------------------------------------------------------------------
def test_huge_logg_in_a_batch_is_a_named_error_not_an_index_error(default_generator):
    with pytest.raises(ValueError, match=r"logg = 1e\+200 .*physical domain"):
        default_generator.spectra([5777, 5777], [4.44, 1e200], 0.0)
    with pytest.raises(ValueError, match="logz"):
        default_generator.in_coverage([5777, 5777], [4.44, 4.44], [0.0, -1e160])


def test_library_of_one_call_never_leaks_into_the_next(default_generator):
    g = default_generator
    mixture, _ = g.surface_flux(5777.0, 4.44, 0.0)
    nextgen, _ = g.surface_flux(5777.0, 4.44, 0.0, library="nextgen")
    assert np.abs(nextgen / mixture - 1).max() > 1e-3            # the two really differ
    it = g.stream([5777.0, 6000.0], 4.44, 0.0, library="nextgen", batch_size=1)
    next(it)                                                      # left suspended mid-stream
    again, _ = g.surface_flux(5777.0, 4.44, 0.0)
    np.testing.assert_array_equal(again, mixture)
    _, f, _ = next(it)                                            # and the stream keeps its own library
    np.testing.assert_array_equal(f, g.surface_flux(6000.0, 4.44, 0.0, library="nextgen")[0])
    assert not hasattr(g, "_active_library")


def _copy_model(src, dst):
    import shutil
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoint.pt"))
    return dst


def test_weights_checksum_is_recorded_and_verified(tiny_model, tmp_path):
    import json
    from smnet_sps.neural import weights_sha256
    cfg = json.loads((tiny_model / "config.json").read_text())
    assert cfg["weights_sha256"] == weights_sha256(tiny_model / "weights.pt")     # written by train()
    bad = _copy_model(tiny_model, tmp_path / "flipped")
    data = bytearray((bad / "weights.pt").read_bytes())
    for i in range(len(data) - 2048, len(data) - 1024):       # flip bytes inside the tensor data
        data[i] ^= 0xFF
    (bad / "weights.pt").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"weights.pt does not match its config.json: sha256"):
        load_generator(bad, device="cpu")
    # all-NaN weights with a matching checksum: refused as corrupt, never NaN spectra
    nan = _copy_model(tiny_model, tmp_path / "nan")
    sd = torch.load(nan / "weights.pt", weights_only=True)
    torch.save({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in sd.items()},
               nan / "weights.pt")
    cfg["weights_sha256"] = weights_sha256(nan / "weights.pt")
    (nan / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="NaN or inf"):
        load_generator(nan, device="cpu")
    # the shipped model records and passes its checksum
    from smnet_sps.neural import default_model_path
    shipped = json.loads((default_model_path() / "config.json").read_text())
    assert shipped["weights_sha256"] == weights_sha256(default_model_path() / shipped["weights_file"])


def test_damaged_model_files_raise_clear_errors(tiny_model, tmp_path):
    """Each of these used to load: a reversed grid gave spectra integrating to a negative sigma T^4, a
    grid in microns or a missing nodes file silently changed the answer, a library list shorter than the
    network's input crashed inside torch at the first call."""
    import json
    from zip_damage import damage_npy_header, damage_zip_member
    wave = np.load(tiny_model / "wavelength.npy")
    cases = {
        "reversed": (lambda d: np.save(d / "wavelength.npy", wave[::-1]), ValueError, "strictly increasing"),
        "microns": (lambda d: np.save(d / "wavelength.npy", wave * 1e-4), ValueError, "not in Angstrom"),
        "no_wavelength": (lambda d: (d / "wavelength.npy").unlink(), FileNotFoundError, "wavelength.npy"),
        "no_nodes": (lambda d: (d / "nodes.npz").unlink(), FileNotFoundError, "nodes.npz"),
        "truncated_nodes": (lambda d: (d / "nodes.npz").write_bytes((d / "nodes.npz").read_bytes()[:100]),
                            ValueError, "nodes.npz is not a readable"),
        # a damaged header (compression method, 'encrypted' flag): zipfile's raw NotImplementedError and
        # RuntimeError before
        "method_nodes": (lambda d: damage_zip_member(d / "nodes.npz", d / "nodes.npz", "teff.npy", method=99),
                         ValueError, r"nodes.npz is not a readable .*NotImplementedError"),
        "encrypted_nodes": (lambda d: damage_zip_member(d / "nodes.npz", d / "nodes.npz", "teff.npy",
                                                        encrypted=True),
                            ValueError, r"nodes.npz is not a readable .*RuntimeError"),
        # a damaged .npy header (a shape "(n,)" read as "(n, ", left open): numpy's parser raised
        # tokenize.TokenError
        "header_nodes": (lambda d: damage_npy_header(d / "nodes.npz", d / "nodes.npz", "teff.npy",
                                                     old=b",)", new=b", "),
                         ValueError, r"nodes.npz is not a readable .*TokenError"),
    }
    for name, (damage, error, message) in cases.items():
        bad = _copy_model(tiny_model, tmp_path / name)
        damage(bad)
        with pytest.raises(error, match=message):
            load_generator(bad, device="cpu")
    cfg = json.loads((tiny_model / "config.json").read_text())
    for name, change, message in (("one_library", {"library_names": ["liba"]}, "do not match library_names"),
                                  ("one_library_boxes", {"library_names": ["liba"], "library_boxes":
                                                         {"liba": cfg["library_boxes"]["liba"]}},
                                   "n_libraries = 2")):
        bad = _copy_model(tiny_model, tmp_path / name)
        (bad / "config.json").write_text(json.dumps({**cfg, **change}))
        with pytest.raises(ValueError, match=message):
            load_generator(bad, device="cpu")
    with pytest.raises(ValueError, match="renormalise is a switch: True or False"):
        load_generator(tiny_model, device="cpu", renormalise="yes")


def test_config_without_arch_and_unknown_model_names(tiny_model, tmp_path):
    import json
    from smnet_sps.neural import SHIPPED_MODELS, ModelNotFoundError
    d = _copy_model(tiny_model, tmp_path / "noarch")
    cfg = json.loads((d / "config.json").read_text())
    del cfg["arch"]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"lacks the key\(s\) \['arch'\]"):
        load_generator(d, device="cpu")
    for name in ("foo", "semi-empirical-typo"):
        with pytest.raises(ValueError, match=r"shipped models are \['default'"):
            load_generator(name)
    with pytest.raises(ModelNotFoundError):
        load_generator(tmp_path / "nothing")
    with pytest.raises(ValueError, match="shipped model name"):
        load_generator(3.5)
    assert "default" in SHIPPED_MODELS
    gen = load_generator("default", device="cpu")
    assert gen.directory == SHIPPED_MODELS["default"]()


def test_a_rebuilt_grid_with_the_same_nodes_keeps_the_split(tiny_model, tmp_path):
    """`evaluate` scores a grid rebuilt with the same nodes (new hash) on the model's split and refuses a grid
    whose nodes differ; one with the training grid's content in another file is "same content", no note."""
    from smnet_sps.cli import main
    from smnet_sps.evaluate import grid_split_applies, grid_split_note
    from smnet_sps.grid import load_grid, save_grid
    from smnet_sps.neural import load_generator
    from smnet_sps.train import read_grid                   # with the file's sha256
    gen = load_generator(tiny_model, device="cpu")
    assert grid_split_applies(gen, read_grid(tiny_model.parent / "grid.h5")) == "same file"
    assert "split applies" in grid_split_note("same nodes", "g.h5")
    assert grid_split_note("same file", "g.h5") is None
    # a rebuild from the same library files: another file (its build record differs), the same content. It
    # was "same nodes", with a note that it differs from the training grid
    grid = load_grid(tiny_model.parent / "grid.h5")
    grid.attrs["created"] = "2031-01-01T00:00:00"
    save_grid(grid, tmp_path / "same.h5")
    same = read_grid(tmp_path / "same.h5")
    assert same.sha256 != gen.config["grid_sha256"]
    assert same.content_sha256 == gen.config["grid_content_sha256"]
    assert grid_split_applies(gen, same) == "same content" and grid_split_note("same content", "g.h5") is None
    assert main(["evaluate", "--model", str(tiny_model), "--grid", str(tmp_path / "same.h5"),
                 "--out", str(tmp_path / "r0.json"), "--device", "cpu", "--no-seams"]) == 0
    report = json.loads((tmp_path / "r0.json").read_text())
    assert report["grid_split"] == "same content" and report["grid_split_note"] is None
    grid.flux[0] *= 1.01                                     # a rebuild: other fluxes, same nodes
    save_grid(grid, tmp_path / "rebuilt.h5")
    assert grid_split_applies(gen, read_grid(tmp_path / "rebuilt.h5")) == "same nodes"
    assert main(["evaluate", "--model", str(tiny_model), "--grid", str(tmp_path / "rebuilt.h5"),
                 "--out", str(tmp_path / "r.json"), "--device", "cpu", "--no-seams"]) == 0
    grid.teff[0] += 1.0                                      # another grid
    save_grid(grid, tmp_path / "other.h5")
    assert grid_split_applies(gen, read_grid(tmp_path / "other.h5")) is None
    assert "skipped" in grid_split_note(None, "other.h5")
    assert main(["evaluate", "--model", str(tiny_model), "--grid", str(tmp_path / "other.h5"),
                 "--out", str(tmp_path / "r2.json"), "--device", "cpu", "--no-seams"]) == 1


def test_evaluate_report_is_strict_json_with_the_split_note(tiny_model, tmp_path, capsys):
    """A metric without pixels (NaN) was written as the non-standard NaN; a same-nodes grid's note was not
    reported."""
    from smnet_sps.cli import main
    from smnet_sps.grid import load_grid, save_grid
    grid = load_grid(tiny_model.parent / "grid.h5")
    grid.mask[:, np.asarray(grid.wavelength) < 3000] = False        # no UV pixel known: UV metrics NaN
    save_grid(grid, tmp_path / "no_uv.h5")
    out = tmp_path / "r.json"
    assert main(["evaluate", "--model", str(tiny_model), "--grid", str(tmp_path / "no_uv.h5"), "--out",
                 str(out), "--device", "cpu"]) == 0

    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")
    report = json.loads(out.read_text(), parse_constant=refuse)
    assert report["accuracy"]["liba"]["median_uv"] is None
    assert report["accuracy"]["liba"]["median"] > 0
    assert report["grid_split"] == "same nodes" and "split applies" in report["grid_split_note"]
    assert "split applies" in capsys.readouterr().out


def test_evaluate_prints_no_nan_and_gives_the_seams_unit(tiny_model, tmp_path, capsys):
    """The printed table gave "nan % / nan %" where the JSON has null (no UV pixel known), and the seam lines
    gave the raw libraries' jump unrounded (0.067495136186645), "None" where no library covers the sweep,
    and no unit."""
    from smnet_sps.cli import main
    from smnet_sps.evaluate import format_seam_lines, seam_report
    from smnet_sps.grid import load_grid, save_grid
    from smnet_sps.train import read_grid
    grid = load_grid(tiny_model.parent / "grid.h5")
    grid.mask[:, np.asarray(grid.wavelength) < 3000] = False        # no UV pixel known: UV metrics NaN
    save_grid(grid, tmp_path / "no_uv.h5")
    assert main(["evaluate", "--model", str(tiny_model), "--grid", str(tmp_path / "no_uv.h5"),
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| liba ")]
    assert rows and not re.search(r"\bnan\b", out, re.IGNORECASE)
    cells = [c.strip() for c in rows[0].split("|")[1:-1]]
    assert cells[-2:] == ["-", "-"] and cells[3].endswith("%")       # UV: none; all pixels: measured
    assert "mean |d ln F| over 3000-10000 A between Teff steps of 1 %" in out
    seam = next(line for line in out.splitlines() if line.startswith("seam full range"))
    raw = seam.split("raw max jump ")[1]
    assert len(raw.split(".")[1]) == 4 and float(raw) > 0
    gen = load_generator(tiny_model, device="cpu")
    beyond = seam_report(gen, read_grid(tiny_model.parent / "grid.h5"),
                         sweeps=[("beyond", 30000.0, 40000.0, 4.5, 0.0)])      # no library's nodes there
    assert beyond[0]["raw_max_jump"] is None
    assert format_seam_lines(beyond).splitlines()[1].endswith("raw max jump -")


def test_evaluate_on_what_has_no_split_says_why_not_which_option_to_add(tiny_model, tmp_path, capsys):
    """`evaluate --model x.pt` answered load_generator's hint for a released checkpoint, '--meta on the
    command line', an option evaluate does not have (for a model it cannot score); the semi-empirical model
    got 'needs a model directory' without a word of what it was or what to evaluate instead."""
    from smnet_sps.cli import main
    checkpoint = tmp_path / "lookup_model.pt"
    checkpoint.write_bytes(b"not needed")
    grid = str(tiny_model.parent / "grid.h5")
    assert main(["evaluate", "--model", str(checkpoint), "--grid", grid, "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert f"--model {checkpoint} is a file (a released SM-Net checkpoint has no split)" in err
    assert "--meta" not in err
    assert main(["evaluate", "--model", "semi-empirical", "--grid", grid, "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "--model semi-empirical is a SemiEmpiricalGenerator; evaluate its base model" in err
    assert "default_model" in err


def test_evaluate_refuses_a_grid_on_other_wavelengths(tiny_model, tmp_path, capsys):
    """A grid cut to fewer pixels died with numpy's broadcast error; one on wavelengths x1.5 was scored."""
    import dataclasses
    from smnet_sps.cli import main
    from smnet_sps.evaluate import accuracy_table, seam_report
    from smnet_sps.grid import load_grid, save_grid
    from smnet_sps.train import read_grid
    gen = load_generator(tiny_model, device="cpu")
    grid = read_grid(tiny_model.parent / "grid.h5")
    n = gen.wavelength.size - 10
    cut = dataclasses.replace(grid, wavelength=grid.wavelength[:n], flux=grid.flux[:, :n],
                              mask=grid.mask[:, :n])
    with pytest.raises(ValueError, match=rf"wavelength grid \({n} pixels.*is not the model's "
                                         rf"\({gen.wavelength.size} pixels"):
        accuracy_table(gen, cut)
    stretched = load_grid(tiny_model.parent / "grid.h5")
    stretched.wavelength = np.asarray(stretched.wavelength) * 1.5
    save_grid(stretched, tmp_path / "stretched.h5")
    with pytest.raises(ValueError, match="is not the model's"):
        seam_report(gen, read_grid(tmp_path / "stretched.h5"))
    assert main(["evaluate", "--model", str(tiny_model), "--grid", str(tmp_path / "stretched.h5"),
                 "--device", "cpu", "--no-seams"]) == 1
    assert "wavelength grid" in capsys.readouterr().err


def test_accuracy_table_takes_a_list_split_and_checks_its_length(tiny_model):
    """A list split gave {} (list == 2 is False); a short one numpy's broadcast error."""
    from smnet_sps.evaluate import accuracy_table
    from smnet_sps.train import read_grid
    gen = load_generator(tiny_model, device="cpu")
    grid = read_grid(tiny_model.parent / "grid.h5")
    split = gen.nodes["split"]
    as_list = accuracy_table(gen, grid, split=split.tolist(), baseline=False)
    assert as_list and as_list == accuracy_table(gen, grid, split=split, baseline=False)
    with pytest.raises(ValueError, match=rf"split must hold one label .*: {split.size} values, got shape "
                                         rf"\({split.size - 1},\)"):
        accuracy_table(gen, grid, split=split[:-1])


def test_teff_sweep_stays_within_its_range():
    """The last step went past hi (12,081 K for 3000-12000 K): outside the sweep's boxes."""
    from smnet_sps.evaluate import SEAM_SWEEPS, teff_sweep
    for _, lo, hi, *_ in SEAM_SWEEPS:
        t = teff_sweep(lo, hi)
        assert t[0] == lo and hi / 1.01 < t[-1] <= hi
        np.testing.assert_allclose(t[1:] / t[:-1], 1.01)
    np.testing.assert_allclose(teff_sweep(1000.0, 1000.0 * 1.01**10)[-1], 1000.0 * 1.01**10)   # hi on a step


def test_dtype_and_device_arguments_say_what_is_allowed(tiny_model):
    from smnet_sps.neural import _resolve_dtype
    assert _resolve_dtype(np.float32) is torch.float32
    assert _resolve_dtype(np.dtype("float64")) is torch.float64
    with pytest.raises(ValueError, match="allowed: .*float32"):
        _resolve_dtype(np.int32)
    gen = load_generator(tiny_model, device="cpu")
    f32, _ = gen.surface_flux(6000.0, 4.0, 0.0, dtype=np.float32)
    np.testing.assert_array_equal(f32, gen.surface_flux(6000.0, 4.0, 0.0, dtype="float32")[0])


@pytest.mark.parametrize("device", ["meta", torch.device("meta"), "xpu"])
def test_a_device_the_generators_do_not_run_on_is_refused(tiny_model, device):
    """device='meta' was accepted (torch knows it), then the first spectrum failed inside torch
    (NotImplementedError from torch.nonzero)."""
    from smnet_sps.neural import resolve_device
    with pytest.raises(ValueError, match=r"is not one the generators run on; use 'auto', 'cpu', 'cuda' or "
                                         r"'cuda:N'"):
        resolve_device(device)
    with pytest.raises(ValueError, match="not one the generators run on"):
        load_generator(tiny_model, device=device)
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_apple_mps_is_refused_as_it_has_no_float64(tiny_model, monkeypatch, tmp_path):
    """device="mps" was accepted on a Mac where MPS is available, and the first spectrum failed inside torch
    (TypeError "Cannot convert a MPS Tensor to float64 dtype": the forward path's scaling, blackbody
    reference and log1p01 inverse are float64, as is the SSP interpolation's default). MPS is faked
    available here; it is refused up front, by name, for the generators, the SSP interpolator and train."""
    from smnet_sps.neural import resolve_device
    from smnet_sps.ssp_torch import SSPInterpolator
    from smnet_sps.train import train
    if getattr(torch.backends, "mps", None) is not None:
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    for device in ("mps", "mps:0", torch.device("mps")):
        with pytest.raises(ValueError, match=r"Apple's MPS has no float64.*use 'cpu'.*'cuda:N'"):
            resolve_device(device)
    with pytest.raises(ValueError, match="MPS has no float64"):
        load_generator(tiny_model, device="mps")
    with pytest.raises(ValueError, match="MPS has no float64"):
        SSPInterpolator(None, device="mps")
    with pytest.raises(ValueError, match="MPS has no float64"):
        train(tiny_model.parent / "grid.h5", tmp_path / "model", epochs=1, progress=False, device="mps")
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("change, match", [({"wave": "reversed"}, "strictly increasing"),
                                           ({"tau": -1.0}, "tau and x_max must be positive"),
                                           ({"Teff_min": 1e6}, "finite range min < max"),
                                           # the release's logZ is [M/H]: it was called "log Z" (log10 Z?)
                                           ({"logZ_min": 5.0}, r"\[M/H\] \(Teff_, logG_, logZ_min / _max\)")])
def test_a_damaged_released_meta_is_refused(released, tmp_path, change, match):
    """A meta.npz whose 'wave' ran backwards loaded, and every flux came out negative (-1.3e7 .. -6.1e4)."""
    d, _, meta = released
    bad = dict(meta)
    for key, value in change.items():
        bad[key] = meta["wave"][::-1].copy() if value == "reversed" else np.asarray(value)
    np.savez(tmp_path / "bad.meta.npz", **bad)
    with pytest.raises(ValueError, match=match):
        load_generator(d / "plain.pt", meta=tmp_path / "bad.meta.npz", device="cpu")


def test_training_nodes_of_unequal_lengths_are_refused(tmp_path):
    import shutil
    from smnet_sps.constants import PACKAGE_DATA
    model = tmp_path / "model"
    shutil.copytree(PACKAGE_DATA / "default_model", model)
    with np.load(model / "nodes.npz") as f:
        nodes = {k: f[k] for k in f.files}
    nodes["split"] = nodes["split"][:-3]
    np.savez(model / "nodes.npz", **nodes)
    with pytest.raises(ValueError, match=r"nodes.npz: the arrays of training nodes must be 1-d and of one"):
        NeuralGenerator(model, device="cpu")


def test_another_models_nodes_are_refused(tiny_model, tmp_path):
    """A nodes.npz copied from another model loaded silently and moved spectra by up to 1e6x (coverage, the
    hulls the networks are held on and the tail table index it). Refused by the recorded nodes_sha256, and
    for a model without one, by its library ids."""
    import json
    import shutil
    from smnet_sps.constants import PACKAGE_DATA
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    assert json.loads((model / "config.json").read_text())["nodes_sha256"]
    NeuralGenerator(model, device="cpu")                                     # its own nodes: fine
    shutil.copy(PACKAGE_DATA / "default_model" / "nodes.npz", model / "nodes.npz")
    with pytest.raises(ValueError, match=r"nodes.npz does not match its config.json: sha256 .* nodes_sha256"):
        NeuralGenerator(model, device="cpu")
    cfg = json.loads((model / "config.json").read_text())
    del cfg["nodes_sha256"]
    (model / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"library ids 0..4, but the model has 2 libraries"):
        NeuralGenerator(model, device="cpu")


def test_a_released_checkpoint_from_the_command_line(released, tmp_path, capsys):
    """CHECKPOINT_FORMAT asks that a user can point the project at a downloaded checkpoint and its meta
    file; the commands took only --generator and answered "needs its meta file (meta=...)". --meta goes with
    a .pt, and alone it is refused."""
    from smnet_sps.cli import main
    d, _, _ = released
    out = tmp_path / "ssp.fits"
    assert main(["ssp", "--age", "1Gyr", "--generator", str(d / "plain.pt"), "--meta",
                 str(d / "small.meta.npz"), "--out", str(out)]) == 0
    assert out.is_file() and "plain" in capsys.readouterr().out
    assert main(["ssp", "--age", "1Gyr", "--meta", str(d / "small.meta.npz")]) == 1
    assert "give it with --generator CHECKPOINT.pt" in capsys.readouterr().err
    assert main(["mags", "--ages", "1Gyr", "--Z", "0.0152", "--filters", "sdss2010-r", "--generator",
                 str(d / "plain.pt")]) == 1
    assert "needs its meta file (meta='....meta.npz'; --meta on the command line)" in capsys.readouterr().err


def test_a_low_precision_load_keeps_the_float32_network(default_generator):
    """load_generator(dtype="bfloat16") converted the whole network, input layer included (docs: it stays
    float32), and every other precision was then made from the rounded weights: a per-call float32 was
    2.6 % off the float32 model. A low-precision load now equals the per-call low precision, and float32
    from it equals the float32 model."""
    rng = np.random.default_rng(0)
    t = 10 ** rng.uniform(np.log10(3200.0), np.log10(40000.0), 300)
    g, z = rng.uniform(1.0, 5.0, 300), rng.uniform(-2.0, 0.3, 300)
    f32 = default_generator.surface_flux(t, g, z)[0]
    low = load_generator(dtype="bfloat16", device="cpu")
    assert all(e.net[0].weight.dtype == torch.float32 for e in low._model.experts)
    np.testing.assert_array_equal(low.surface_flux(t, g, z)[0],
                                  default_generator.surface_flux(t, g, z, dtype="bfloat16")[0])
    np.testing.assert_array_equal(low.surface_flux(t, g, z, dtype="float32")[0], f32)


@pytest.mark.parametrize("edit, match", [
    (lambda c: c.update(reference="blakbody"), "reference must be 'blackbody' or 'none'; got 'blakbody'"),
    (lambda c: c["input_scaling"].update(lo=c["input_scaling"]["hi"], hi=c["input_scaling"]["lo"]),
     "input_scaling must hold lo and hi"),
    (lambda c: c["input_scaling"].pop("hi"), "input_scaling must hold lo and hi"),
    (lambda c: c.update(box="all"), "box or library_boxes: a parameter box is"),
    (lambda c: c["library_boxes"]["ck04"].update(teff=[3500.0]), "box or library_boxes"),
    (lambda c: c.update(arch="mlp"), "arch 'mlp' cannot be built with arch_kwargs"),
])
def test_a_corrupt_config_field_is_named(tmp_path, edit, match, capsys):
    """A wrong value in config.json loaded silently (a reference typo gave spectra 1e4-1e6x off, swapped
    input bounds 5e4x) or failed deep in Python (TypeError, IndexError, KeyError: a CLI traceback)."""
    import json
    import shutil

    from smnet_sps.cli import main
    from smnet_sps.constants import PACKAGE_DATA
    model = tmp_path / "model"
    shutil.copytree(PACKAGE_DATA / "default_model", model)
    cfg = json.loads((model / "config.json").read_text())
    edit(cfg)
    (model / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=match):
        load_generator(model, device="cpu")
    assert main(["ssp", "--age", "1Gyr", "--generator", str(model)]) == 1
    assert "config.json" in capsys.readouterr().err


def test_log_units_of_metallicity_are_read_as_dex_or_refused(default_generator):
    """u.Magnitude(-0.5) was read as [M/H] -0.5 (it is +0.2 dex) and [u.Dex(-0.5)] as +0.316 (the list's
    linear value)."""
    with pytest.raises(ValueError, match="got unit mag"):
        default_generator.surface_flux(5777.0, 4.44, u.Magnitude(-0.5))
    with pytest.raises(ValueError, match="a list of Quantities loses their units"):
        default_generator.surface_flux(5777.0, 4.44, [u.Dex(-0.5)])
    want = default_generator.surface_flux(5777.0, 4.44, -0.5)[0]
    np.testing.assert_array_equal(default_generator.surface_flux(5777.0, 4.44, u.Dex(-0.5))[0], want)


def test_a_checkpoint_with_python_objects_says_why(tmp_path):
    import argparse
    from smnet_sps.neural import _torch_load
    torch.save({"w": torch.ones(2), "args": argparse.Namespace(a=1)}, tmp_path / "c.pt")
    with pytest.raises(ValueError, match=r"holds Python objects besides tensors .*argparse.Namespace"):
        _torch_load(tmp_path / "c.pt")


def test_a_damaged_pickle_is_not_called_python_objects(released, tmp_path):
    """A weights file whose pickle (data.pkl) was overwritten in part failed torch's weights-only unpickler
    ('Unsupported operand 0') and was reported as "holds Python objects besides tensors (Please file an issue
    ... WeightsUnpickler error:); save its state_dict alone": a damaged file sent off to be re-saved. With its
    CRC-32 recorded, the damaged member is named; without one, the unpickler's own words are given."""
    from smnet_sps.neural import _torch_load
    d, model, _ = released
    torch.serialization.set_crc32_options(False)
    try:
        torch.save(model.state_dict(), tmp_path / "no_crc.pt")
    finally:
        torch.serialization.set_crc32_options(True)
    for name in ("plain.pt", "no_crc.pt"):
        src = d / name if name == "plain.pt" else tmp_path / name
        data = bytearray(src.read_bytes())
        start = data.index(b"data.pkl") + len(b"data.pkl")
        for offset in range(100, 1000, 20):      # zeros where the unpickler meets them as an opcode
            damaged = data[:start + offset] + bytes(8) + data[start + offset + 8:]
            (tmp_path / "zeroed.pt").write_bytes(bytes(damaged))
            try:
                torch.load(tmp_path / "zeroed.pt", weights_only=True)
            except Exception as exc:             # noqa: BLE001
                if "Unsupported operand" in str(exc):
                    break
        else:
            raise AssertionError("no offset gave 'Unsupported operand'")
        with pytest.raises(ValueError) as err:
            _torch_load(tmp_path / "zeroed.pt")
        message = str(err.value)
        assert "Python objects" not in message and "Please file" not in message
        if name == "plain.pt":
            assert "zeroed.pt is damaged: its member" in message and "data.pkl" in message
        else:
            assert "zeroed.pt: it is truncated, corrupt or not a PyTorch checkpoint" in message
            assert "Unsupported operand" in message


def _damage_tensor_bytes(src, dst):
    """Copy the torch zip file ``src`` to ``dst`` with 16 bytes of its largest tensor changed (a bad download
    or copy: the file still opens, only the tensor's bytes differ)."""
    import zipfile
    with zipfile.ZipFile(src) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(src.read_bytes())
    extra = int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")   # local header
    start = info.header_offset + 30 + len(info.filename.encode()) + extra
    data[start:start + 16] = bytes(b ^ 0x55 for b in data[start:start + 16])
    dst.write_bytes(bytes(data))


def test_a_checkpoint_damaged_inside_its_tensors_is_refused(released, tmp_path):
    """torch.load does not check the CRC-32 torch.save records for each tensor: a released checkpoint whose
    tensor bytes were damaged (a bad download; no sha256 is recorded for it) loaded as other weights without a
    word (torch.load gave a state_dict with four values of one layer changed). It is refused, naming the file
    and the member."""
    d, model, _ = released
    _damage_tensor_bytes(d / "plain.pt", tmp_path / "bad.pt")
    loaded = torch.load(tmp_path / "bad.pt", weights_only=True)           # what torch reads back, unchecked
    assert sum(not torch.equal(v, model.state_dict()[k]) for k, v in loaded.items()) == 1
    with pytest.raises(ValueError, match=r"weights file .*bad\.pt is damaged: its member .*data/\d+ does not "
                                         r"read back as written .*download or copy it again"):
        load_generator(tmp_path / "bad.pt", meta=d / "small.meta.npz", device="cpu")
    # the healthy file and one written without CRCs (nothing to compare with) still load
    load_generator(d / "plain.pt", meta=d / "small.meta.npz", device="cpu")
    torch.serialization.set_crc32_options(False)
    try:
        torch.save(model.state_dict(), tmp_path / "no_crc.pt")
    finally:
        torch.serialization.set_crc32_options(True)
    load_generator(tmp_path / "no_crc.pt", meta=d / "small.meta.npz", device="cpu")


def test_a_weights_file_whose_sha256_matched_is_not_read_again_for_its_crcs(released, monkeypatch):
    """The CRC check read every weights file a second time, also right after its recorded sha256 matched
    (the shipped model, a warm start): ~1 s per 2 GB for nothing. It runs where no sha256 is recorded."""
    import smnet_sps.neural as neural
    calls = []
    real = neural.check_zip_crc
    monkeypatch.setattr(neural, "check_zip_crc", lambda path, what: calls.append(path) or real(path, what))
    neural.NeuralGenerator(neural.default_model_path(), device="cpu")        # records weights_sha256
    assert calls == []
    d, _, _ = released                                                      # a released checkpoint: none
    load_generator(d / "plain.pt", meta=d / "small.meta.npz", device="cpu")
    assert [p.name for p in calls] == ["plain.pt"]


def test_meta_reaches_the_distributed_paths(released, tmp_path, capsys):
    """mags --points (and ssp-grid --workers) handed the workers the checkpoint's path alone and dropped
    --meta: they failed with "needs its meta file (...; --meta on the command line)". A released checkpoint
    travels as a picklable partial of load_generator with its meta file; --meta with anything but a file is
    refused on every path."""
    import functools
    import pickle

    import pandas as pd

    from smnet_sps.cli import main
    from smnet_sps.neural import generator_spec_option
    d, _, _ = released
    spec = generator_spec_option(str(d / "plain.pt"), str(d / "small.meta.npz"))
    assert isinstance(spec, functools.partial) and pickle.loads(pickle.dumps(spec)).keywords["meta"]
    assert generator_spec_option("blackbody") == "blackbody" and generator_spec_option("default") is None
    table = tmp_path / "stars.parquet"
    pd.DataFrame({"teff": [5000.0, 6000.0], "logg": [4.0, 4.0], "logz": [0.0, 0.0],
                  "logl": [0.0, 0.5]}).to_parquet(table)
    assert main(["mags", "--points", str(table), "--filters", "sdss2010-r", "--generator",
                 str(d / "plain.pt"), "--meta", str(d / "small.meta.npz")]) == 0
    assert "2 stars" in capsys.readouterr().out
    for argv in (["mags", "--points", str(table), "--filters", "sdss2010-r", "--generator", "blackbody",
                  "--meta", str(d / "small.meta.npz"), "--overwrite"],
                 ["ssp-grid", "--ages", "1Gyr", "--Z", "0.0152", "--generator", "blackbody", "--meta",
                  str(d / "small.meta.npz"), "--workers", "1", "--out", str(tmp_path / "g.h5")],
                 ["fit", "x.txt", "--ssp-grid", "g.npz", "--meta", str(d / "small.meta.npz")]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "--meta" in err, err


def test_released_checkpoints_run_in_small_chunks_keep_float32_inputs_and_their_box(released, tmp_path,
                                                                                   monkeypatch):
    """A released SM-Net holds ~7.7 MB per spectrum in its refinement: a whole batch in one pass needed
    tens of GB (now fixed chunks, results independent of the batch); in bfloat16 its inputs were rounded
    (7 [M/H] values in 0-0.03 gave 2 spectra); float64 came back float32; a meta box stored in float32
    (-2.1 as -2.0999999) put its own face outside."""
    import smnet_sps.neural as neural
    d, _, meta = released
    gen = load_generator(d / "plain.pt", meta=d / "small.meta.npz", device="cpu")
    teff = 5000.0 + 37.0 * np.arange(150)
    whole = gen.surface_flux(teff, 4.4, 0.0)[0]
    monkeypatch.setitem(neural.SMNET_CHUNK, "cpu", 16)
    calls = []
    real = neural._padded_net
    monkeypatch.setattr(neural, "_padded_net", lambda net, inp: calls.append(len(inp)) or real(net, inp))
    parts = np.concatenate([gen.surface_flux(teff[i:i + 41], 4.4, 0.0)[0] for i in range(0, 150, 41)])
    assert max(calls) == 16 and np.array_equal(parts, whole)
    monkeypatch.undo()
    z = np.linspace(0.0, 0.03, 7)
    low = gen.surface_flux(np.full(7, 5777.0), 4.44, z, dtype="bfloat16")[0]
    assert len({row.tobytes() for row in low}) == 7
    as_64 = gen.surface_flux([5777.0, 6000.0], 4.4, 0.0, dtype="float64", as_tensor=True)[0]
    assert as_64.dtype == torch.float64
    # as C3K_all.meta.npz stores it: a float32 number in a float64 field
    np.savez(tmp_path / "f32box.meta.npz", **dict(meta, logZ_min=np.float64(np.float32(-2.1))))
    boxed = load_generator(d / "plain.pt", meta=tmp_path / "f32box.meta.npz", device="cpu")
    assert boxed.box.logz[0] == -2.1 and boxed.in_coverage(5000.0, 4.0, -2.1).all()
    boxed.surface_flux(5000.0, 4.0, -2.1, strict=True)


@pytest.mark.parametrize("normalisation", ["covered", "blackbody"])
def test_released_differentiable_path_is_the_fast_path_with_gradients(released, normalisation):
    """Released checkpoints had no torch_surface_flux, so fit_star refused them. It is the fast path's
    arithmetic (one helper) with autograd: equal values, derivatives that pass gradcheck (through the
    blackbody fraction's Teff derivative too), zero derivative in a coordinate clipped to the meta box."""
    d, _, _ = released
    gen = ReleasedSMNetGenerator(d / "plain.pt", d / "small.meta.npz", device="cpu",
                                 normalisation=normalisation)
    teff, logg, logz = np.array([5777.0, 30000.0, 3000.0]), np.array([4.44, 4.0, 5.0]), np.array([0, -1, 0.3])
    fast, _ = gen.surface_flux(teff, logg, logz)
    t32 = gen.torch_surface_flux(*(torch.tensor(a, dtype=torch.float32) for a in (teff, logg, logz)))
    assert t32.dtype == torch.float32
    np.testing.assert_array_equal(t32.numpy(), fast)
    t64 = gen.torch_surface_flux(*(torch.tensor(a) for a in (teff, logg, logz)))
    np.testing.assert_allclose(t64.detach().numpy(), fast, rtol=1e-4)        # the network in float64
    params = tuple(torch.tensor(a, requires_grad=True) for a in (teff, logg, logz))
    assert torch.autograd.gradcheck(lambda *p: torch.log(gen.torch_surface_flux(*p)), params,
                                    eps=1e-4, atol=1e-5, rtol=1e-3)
    # log g 12 is above the meta box (9): clipped as in the release, so the spectrum does not follow it
    logg_out = torch.tensor([12.0], dtype=torch.float64, requires_grad=True)
    gen.torch_surface_flux(torch.tensor([6000.0], dtype=torch.float64), logg_out,
                           torch.tensor([0.0], dtype=torch.float64)).sum().backward()
    assert logg_out.grad.item() == 0.0
    with pytest.raises(ValueError, match="no library"):
        gen.torch_surface_flux(*(torch.tensor([v]) for v in (6000.0, 4.0, 0.0)), library="ck04")


def test_fit_star_and_the_fit_command_take_a_released_checkpoint(released_smooth, tmp_path, capsys):
    """`smnet-sps fit --generator X.pt --meta M.npz` was refused ("no differentiable path"): a released
    checkpoint now fits like our models; the network's own spectrum gives back its parameters."""
    from smnet_sps.cli import main
    from smnet_sps.fit import fit_star
    weights, meta = released_smooth
    gen = load_generator(weights, meta=meta, device="cpu")
    flux = gen.surface_flux(6000.0, 4.2, -0.5)[0][0]
    keep = (gen.wavelength > 3000.0) & (gen.wavelength < 30000.0)
    wave, flux = gen.wavelength[keep], flux[keep]
    err = 1e-2 * np.median(flux) * np.ones(wave.size)
    res = fit_star(wave, flux, err**-2.0, generator=gen, max_rv=100.0,
                   bounds={"teff": (5000.0, 7000.0), "logg": (3.5, 5.0), "logz": (-1.5, 0.5)})
    assert abs(res.teff - 6000.0) < 30.0 and abs(res.logg - 4.2) < 0.01 and abs(res.logz + 0.5) < 0.01
    np.savetxt(tmp_path / "star.txt", np.c_[wave, flux, err])
    out = tmp_path / "fit.json"
    assert main(["fit", str(tmp_path / "star.txt"), "--generator", str(weights), "--meta", str(meta),
                 "--out", str(out)]) == 0, capsys.readouterr().err
    fitted = json.loads(out.read_text())               # searched over the whole meta box this time
    assert abs(fitted["teff"] - 6000.0) < 60.0 and abs(fitted["logz"] + 0.5) < 0.02, fitted


def _torch_path_generators(default_generator, released):
    d, _, _ = released
    gens = [default_generator, ReleasedSMNetGenerator(d / "plain.pt", d / "small.meta.npz", device="cpu")]
    if (semi_empirical_model_path() / "config.json").is_file():       # the correction is shipped
        gens.append(load_generator("semi-empirical", device="cpu"))
    return gens


def test_torch_surface_flux_checks_non_tensor_inputs_like_surface_flux(default_generator, released):
    """torch_surface_flux (ours, the released checkpoint's, the semi-empirical one) put raw inputs through
    torch.as_tensor: a big-endian array (a FITS column) and a long double were torch's ValueError /
    TypeError, a masked Teff computed the hidden 30000 K spectrum, Teff in kK was read as 5.777 K. Now they
    are checked as surface_flux checks them; tensors still pass through with their gradients."""
    teff, logg, logz = np.array([5777.0, 4500.0]), np.array([4.44, 4.6]), np.zeros(2)
    for gen in _torch_path_generators(default_generator, released):
        ref = gen.torch_surface_flux(*(torch.tensor(a) for a in (teff, logg, logz))).detach().numpy()
        for args in [(teff.astype(">f8"), logg.astype(">f8"), logz.astype(">f8")),
                     (teff.astype(np.longdouble), logg, logz),
                     (teff / 1e3 * u.kK, logg * u.dex(u.cm / u.s**2), logz * u.dex)]:
            out = gen.torch_surface_flux(*args)
            assert out.dtype == torch.float64                      # float64 input: the float64 network
            np.testing.assert_array_equal(out.detach().numpy(), ref)
        with pytest.raises(ValueError, match="teff is a masked array with 1 masked value"):
            gen.torch_surface_flux(np.ma.masked_array([5777.0, 30000.0], mask=[False, True]), logg, logz)
        with pytest.raises(ValueError, match="logz .* got unit K"):
            gen.torch_surface_flux(teff, logg, logz * u.K)
        # a Python number stays torch's default (float32) precision, as before
        t32 = torch.tensor(teff, dtype=torch.float32)
        assert gen.torch_surface_flux(t32, 4.44, 0.0).dtype == torch.float32
        t = torch.tensor(teff, requires_grad=True)
        gen.torch_surface_flux(t, logg, logz).sum().backward()
        assert t.grad is not None and torch.isfinite(t.grad).all()


def test_torch_surface_flux_refuses_shapes_that_do_not_broadcast(default_generator, released):
    """torch_surface_flux (ours, the released checkpoint's, the semi-empirical one) with teff of 2 and logg of
    3 values stopped in torch.broadcast_tensors with 'RuntimeError: The size of tensor a (2) must match the
    size of tensor b (3)', naming no parameter; surface_flux names them. Now the same ValueError; shapes that
    broadcast ((2, 3) with (3,)) still give one spectrum per point."""
    for gen in _torch_path_generators(default_generator, released):
        for teff, logg in (([5777.0, 4500.0], [4.44, 4.6, 4.0]),
                           (torch.tensor([5777.0, 4500.0]), torch.tensor([4.44, 4.6, 4.0]))):
            with pytest.raises(ValueError, match=r"cannot be broadcast together: shapes \{'teff': \(2,\), "
                                                 r"'logg': \(3,\), 'logz': \(1,\)\}"):
                gen.torch_surface_flux(teff, logg, 0.0)
        out = gen.torch_surface_flux(np.full((2, 3), 5777.0), np.array([4.0, 4.2, 4.4]), 0.0)
        assert out.shape == (6, gen.wavelength.size)


def test_tensors_without_real_values_are_refused(default_generator, released):
    """A bool tensor ran as a number (log g True as 1, [M/H] False as 0), where True in a list or array is
    refused; a complex one lost its imaginary part with only torch's warning; one on the 'meta' device stopped
    in torch (NotImplementedError 'Cannot copy out of meta tensor'). Now a ValueError naming the parameter,
    in torch_surface_flux (ours, the released checkpoint's, the semi-empirical one) and surface_flux alike;
    integer tensors are numbers and still pass."""
    teff = torch.tensor([5777.0])
    for gen in _torch_path_generators(default_generator, released):
        for call in (gen.torch_surface_flux, gen.surface_flux):
            with pytest.raises(ValueError, match="logg must be a tensor of real numbers .* torch.bool"):
                call(teff, torch.tensor([True]), torch.tensor([False]))
            with pytest.raises(ValueError, match="teff must be a tensor of real numbers .* torch.complex64"):
                call(torch.tensor([5777.0 + 300j]), 4.44, 0.0)
            with pytest.raises(ValueError, match="logz is a tensor on the 'meta' device"):
                call(teff, 4.44, torch.zeros(1, device="meta"))
        ints = gen.torch_surface_flux(torch.tensor([5777]), torch.tensor([4]), torch.tensor([0]))
        floats = gen.torch_surface_flux(teff, torch.tensor([4.0]), torch.tensor([0.0]))
        assert torch.equal(ints, floats)


def test_trained_smnet_holds_points_outside_its_box_at_the_edge(tmp_path):
    """A model of `train --arch smnet` fed the scaled inputs unclipped (the network extrapolated: 4e6 x
    sigma T^4 at [M/H] +1, inf at -3 on a small grid) and inverted log1p01 in float32 (overflow to inf). Now
    held at the box edge as the MLP path and the released SM-Net are: F / sigma T^4 outside equals its value
    on the edge, surface_flux and torch_surface_flux agree, and the inverse is the float64 one."""
    from test_train import make_synthetic_grid

    from smnet_sps.model import log1p01_inverse
    from smnet_sps.train import train
    torch.set_num_threads(1)
    train(make_synthetic_grid(tmp_path / "grid.h5"), tmp_path / "s", arch="smnet", B=4, epochs=2,
          batch_size=32, progress=False, device="cpu")
    gen = load_generator(tmp_path / "s", device="cpu")
    # box: Teff 4000-20000 K, log g 3-5, [M/H] -1..0
    out_pts = np.array([(5000.0, 4.0, 1.0), (5000.0, 4.0, -3.0), (60000.0, 6.0, -0.5), (3000.0, 4.0, -0.5)])
    edge_pts = np.array([(5000.0, 4.0, 0.0), (5000.0, 4.0, -1.0), (20000.0, 5.0, -0.5), (4000.0, 4.0, -0.5)])
    norm = SIGMA_SB * np.concatenate([out_pts[:, 0], edge_pts[:, 0]]) ** 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        flux, inside = gen.surface_flux(*np.concatenate([out_pts, edge_pts]).T)
    assert not inside[:4].any()
    ratio = flux / norm[:, None]
    assert np.isfinite(ratio).all()
    np.testing.assert_allclose(ratio[:4], ratio[4:], rtol=1e-6)
    t = torch.as_tensor(np.concatenate([out_pts, edge_pts]), dtype=torch.float32).T
    np.testing.assert_allclose(gen.torch_surface_flux(*t).detach().numpy(), flux, rtol=1e-6)
    # the float64 inverse of the float32 network's output (float32 arithmetic was 1e-6 off at this tau)
    box = gen.config["input_scaling"]
    scaled = (np.stack([np.log10(edge_pts[:, 0]), edge_pts[:, 1], edge_pts[:, 2]], 1) - box["lo"]) / (
        np.array(box["hi"]) - box["lo"])
    with torch.no_grad():
        y = gen._float32(torch.as_tensor(scaled, dtype=torch.float32)).double()
    expected = log1p01_inverse(y, gen.log1p01["tau"], gen.log1p01["x_max"]).numpy() * norm[4:, None]
    np.testing.assert_allclose(flux[4:], expected, rtol=2e-7, atol=0)


@pytest.mark.parametrize("kind", ["default", "semi-empirical", "released"])
def test_loading_a_generator_keeps_the_callers_random_numbers(kind, released_smooth):
    """Loading a model built its network with random initial weights (then replaced by the file's), which
    advanced the caller's global torch RNG: after torch.manual_seed(0), torch.rand(3) gave [0.471, 0.247,
    0.583] instead of [0.496, 0.768, 0.088] once a model was loaded. The construction is kept out of it."""
    import torch

    from smnet_sps import load_generator
    args = {"default": ((), {}), "semi-empirical": (("semi-empirical",), {}),
            "released": ((released_smooth[0],), {"meta": released_smooth[1]})}[kind]
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    load_generator(*args[0], device="cpu", **args[1])
    assert torch.equal(torch.rand(3), expected)


def test_a_replaced_wavelength_grid_is_refused(tiny_model, tmp_path):
    """A replaced wavelength.npy (here the same grid in nm) loaded silently: the Sun's peak moved from 4510 to
    5030 A and fluxes at one pixel changed by 1e-26..9e3. train() records wavelength_sha256 now and loading
    checks it; a model saved before (the shipped one) is checked against its tail table's own grid."""
    import json

    from smnet_sps.checksums import file_sha256
    from smnet_sps.neural import default_model_path
    cfg = json.loads((tiny_model / "config.json").read_text())
    assert cfg["wavelength_sha256"] == file_sha256(tiny_model / "wavelength.npy")     # written by train()
    model = _copy_model(tiny_model, tmp_path / "model")
    np.save(model / "wavelength.npy", np.load(tiny_model / "wavelength.npy") / 10.0)
    with pytest.raises(ValueError, match=r"wavelength.npy does not match .*wavelength_sha256"):
        NeuralGenerator(model, device="cpu")
    # the shipped model records no wavelength_sha256: its tail.npz's grid decides
    shipped = json.loads((default_model_path() / "config.json").read_text())
    assert "wavelength_sha256" not in shipped
    old = _copy_model(default_model_path(), tmp_path / "old")
    NeuralGenerator(old, device="cpu", fill_tail=False)                     # its own grid: fine
    np.save(old / "wavelength.npy", np.load(default_model_path() / "wavelength.npy") / 10.0)
    for fill_tail in (True, False):
        with pytest.raises(ValueError, match=r"wavelength grid .*wavelength.npy is not the model's: its tail "
                                             r"table tail.npz .* \(1221 values, 91-1.6e\+06 A\)"):
            NeuralGenerator(old, device="cpu", fill_tail=fill_tail)


def test_trained_smnet_in_bfloat16_reads_its_inputs_in_float32(tmp_path):
    """A model of `train --arch smnet` run with dtype="bfloat16" cast its scaled inputs to bf16 before the
    layers kept float32 for them: Teff 5000-5020 K (scaled log Teff 0.2036-0.2045) all reached the network
    as 0.2041. The inputs go in as float32 now, as the released SM-Net's do (neural._input_dtype)."""
    from test_train import make_synthetic_grid

    from smnet_sps.train import train
    torch.set_num_threads(1)
    train(make_synthetic_grid(tmp_path / "grid.h5"), tmp_path / "s", arch="smnet", B=4, epochs=1,
          batch_size=32, progress=False, device="cpu")
    gen = load_generator(tmp_path / "s", device="cpu")
    seen = []
    gen._model_for("bfloat16")[0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    teff = np.array([5000.0, 5005.0, 5010.0, 5015.0, 5020.0])
    gen.surface_flux(teff, 4.0, -0.5, dtype="bfloat16")
    x = seen[0][:teff.size]
    assert x.dtype == torch.float32
    expected = gen.scale_inputs(teff, np.full(5, 4.0), np.full(5, -0.5))
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("key, value", [("tau", np.array([3.765e-17, 3.765e-17])), ("x_max", np.ones((1, 2))),
                                        ("Teff_max", np.array([1.0e5, 2.0e5])), ("tau", np.array("1e-17"))])
def test_a_released_meta_value_that_is_not_one_number_is_named(released, tmp_path, key, value):
    """A meta.npz whose tau / x_max (or a box bound) is not one number -- per-library arrays, a re-saved file
    -- was a bare TypeError from numpy ("only 0-dimensional arrays can be converted to Python scalars"),
    naming neither the file nor the key. A ValueError names both now; a one-element array still loads."""
    d, _, small = released
    np.savez(tmp_path / "bad.meta.npz", **dict(small, **{key: value}))
    with pytest.raises(ValueError, match=rf"meta file .*bad.meta.npz: '{key}' must be one number"):
        load_generator(d / "plain.pt", meta=tmp_path / "bad.meta.npz", device="cpu")
    np.savez(tmp_path / "one.meta.npz", **dict(small, tau=np.atleast_1d(small["tau"])))
    gen = load_generator(d / "plain.pt", meta=tmp_path / "one.meta.npz", device="cpu")
    assert gen.tau == float(small["tau"])


def test_a_node_on_a_box_face_given_by_its_log_teff_is_inside_on_every_path(default_generator):
    """A Teff from a log Teff misses a face by rounding: 10**log10(2600) = 2599.9999999999986 K (NextGen's
    coolest node, log g 5.0, [M/H] -0.5) and 10**log10(180000) = 180000.00000000017 K (CM87's hottest) were
    outside for in_coverage, distributed and strict=True ("Teff=2600 K ... outside") while the SSP backend
    (snapping its keys onto faces) had them inside. Faces are now met within 1e-12 dex on every path, the
    network's input is unchanged, and 1e-11 beyond a face is still outside."""
    from smnet_sps import distributed as D
    from smnet_sps.backend import StellarLibraryBackend
    from smnet_sps.generator import ParameterBox
    gen = default_generator
    logt, logg, logz = np.log10([2600.0, 180000.0]), np.array([5.0, 7.0]), np.array([-0.5, 0.0])
    teff = 10.0**logt
    # each just beyond its face (numpy's vectorised power gives 180000.00000000015 or ...17 by machine)
    assert teff[0] < 2600.0 and teff[1] > 180000.0
    assert gen.in_coverage(teff, logg, logz).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CoverageWarning)
        flux, inside = gen.surface_flux(teff, logg, logz, strict=True)
    assert inside.all()
    block = D._points_block(np.column_stack([teff, logg, logz, np.ones(2)]), "default", "cpu", "spectra",
                            (), None, None, 64, np.float64)
    assert block[:, -1].tolist() == [1.0, 1.0]
    assert StellarLibraryBackend(gen).point_spectra(logt=logt, logg=logg, logz=logz, logl=0.0).inside.all()
    # the spectrum is the node's: the network's input moved by rounding only
    np.testing.assert_allclose(flux, gen.surface_flux([2600.0, 180000.0], logg, logz)[0], rtol=1e-12)
    beyond = gen.in_coverage([2600.0 * (1 - 1e-11), 180000.0 * (1 + 1e-11)], logg, logz)
    assert not beyond.any()
    box = ParameterBox((2600.0, 180000.0), (5.0, 7.0), (-0.5, 0.0))
    assert box.contains(teff, logg, logz).all()
    assert not box.contains(teff, logg + [-1e-11, 1e-11], logz).any()


def test_blackbody_large_terms_are_the_rank_3_product_bit_for_bit(default_generator):
    """ln10 a - 4 ln T - x, summed elementwise in float64, is the rank-3 product (1/T, 1, -4 ln T) x (-b,
    ln10 a, 1) the reference was computed with, bit for bit, for any number of rows, Teff over the physical
    domain, and with autograd."""
    import torch

    from smnet_sps.neural import _ln_blackbody_large_terms
    c64 = default_generator._constants("cpu", torch.float64)
    rng = np.random.default_rng(2)
    for n in (1, 7, 16, 1495, 2048):
        t = torch.as_tensor(10 ** rng.uniform(np.log10(500.0), 6.0, n))
        rows = torch.stack([1.0 / t, torch.ones_like(t), -4.0 * torch.log(t)], 1)
        assert torch.equal(_ln_blackbody_large_terms(1.0 / t, -4.0 * torch.log(t), c64),
                           torch.mm(rows, c64["bb_cols"]))
    t = torch.tensor([3000.0, 5772.0, 40000.0], dtype=torch.float64, requires_grad=True)
    _ln_blackbody_large_terms(1.0 / t, -4.0 * torch.log(t), c64).sum().backward()
    lam = torch.tensor(default_generator.wavelength)      # a copy: the grid is read-only
    # d/dT (-x - 4 ln T), x = h c / (lambda k T), h c / k = 1.4387769e8 A K
    expected = (1.4387769e8 / lam).sum() / t.detach() ** 2 - 4.0 * lam.numel() / t.detach()
    np.testing.assert_allclose(t.grad.numpy(), expected.numpy(), rtol=1e-6)


def test_matmul_peak_gflops_takes_a_torch_device():
    """matmul_peak_gflops(device=torch.device("cpu")) compared the device with the string "cpu" (never
    equal) and called torch.cuda.synchronize(): 'Torch not compiled with CUDA enabled' on a CPU machine (on
    a GPU one it waited on the GPU around a CPU matmul). The device's type is compared now."""
    from smnet_sps.evaluate import matmul_peak_gflops
    for device in (torch.device("cpu"), "cpu"):
        gflops = matmul_peak_gflops(n=64, repeats=1, device=device)
        assert np.isfinite(gflops) and gflops > 0
