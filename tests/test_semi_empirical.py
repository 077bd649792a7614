"""The semi-empirical generator: continuity in wavelength and parameters, luminosity, coverage, base
checks."""
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from smnet_sps.generator import CoverageWarning
from smnet_sps.semi_empirical import (CorrectionNet, SemiEmpiricalGenerator, kernel_density, low_order_basis,
                                      semi_empirical_model_path, wavelength_taper)

# inside the MILES star distribution: Sun, M dwarf, K giant, metal-poor giant, A dwarf, B star
INSIDE = np.array([(5777, 4.44, 0.0), (3600, 4.7, 0.0), (4300, 1.8, -0.3), (5000, 2.5, -1.5),
                   (9000, 4.0, 0.0),
                   (15000, 4.0, 0.0)])


@pytest.fixture(scope="module")
def semi():
    if not (semi_empirical_model_path() / "config.json").is_file():
        pytest.skip("semi-empirical correction not shipped")
    from smnet_sps.neural import load_generator
    return load_generator("semi-empirical", device="cpu")


def _flux(gen, t, g, z):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        return gen.surface_flux(t, g, z)[0]


def test_loads_by_name_and_wraps_the_default(semi):
    from smnet_sps.neural import NeuralGenerator
    assert semi.name == "semi-empirical" and isinstance(semi.base, NeuralGenerator)
    assert np.array_equal(semi.wavelength, semi.base.wavelength)
    spec, inside = semi.spectra(*INSIDE.T)
    w = spec.meta["empirical_weight"]
    assert w.shape == (len(INSIDE),) and np.all(w > 0.5) and inside.all()
    assert spec.meta["generator"] == "semi-empirical"


def test_correction_only_in_the_optical_and_luminosity_conserved(semi):
    t, g, z = INSIDE.T
    f, fb = _flux(semi, t, g, z), _flux(semi.base, t, g, z)
    wl = semi.wavelength
    ratio = f / fb
    outside = (wl < 3560) | (wl > 7400)
    # outside the MILES range only the luminosity rescaling (one number per star) remains
    assert np.allclose(ratio[:, outside], ratio[:, outside][:, :1], rtol=1e-9)
    assert np.all(np.abs(ratio[:, outside][:, 0] - 1) < 0.01)
    # inside, the correction is real (MILES stars differ from the theory by >= 1 % somewhere)
    assert np.all(np.abs(np.log(ratio[:, ~outside])).max(1) > 0.01)
    lum, lum_base = np.trapezoid(f, wl, axis=1), np.trapezoid(fb, wl, axis=1)
    assert np.allclose(lum, lum_base, rtol=1e-10)


def test_no_step_at_the_miles_wavelength_edges(semi):
    """At 3560 / 7400 A (just inside MILES's 3541-7412 A, vacuum) the correction starts from zero and ramps in
    over 140 A: the change across the edge is far below the spectrum's own pixel-to-pixel structure (the
    'noise' a step would have to exceed), and the ramp adds no structure larger than the spectrum's own."""
    t, g, z = INSIDE.T
    f, fb = _flux(semi, t, g, z), _flux(semi.base, t, g, z)
    wl = semi.wavelength
    dc = np.abs(np.diff(np.log(f / fb), axis=1))          # change of the correction between adjacent pixels
    own = np.abs(np.diff(np.log(fb), axis=1))             # the theory spectrum's own
    mid = 0.5 * (wl[1:] + wl[:-1])
    for edge in (3560.0, 7400.0):
        at = np.abs(mid - edge) <= 10.0                   # the pixel pair straddling the edge
        band = np.abs(mid - edge) <= 200.0
        assert at.sum() == 1
        assert np.all(dc[:, at].max(1) < 0.005), (edge, dc[:, at].max(1))
        assert np.all(dc[:, at].max(1) < 0.2 * np.median(own[:, band], axis=1) + 2e-4)
        assert np.all(dc[:, band].max(1) <= own[:, band].max(1))


def _max_step(gen, sweep):
    """Largest change of ln F between neighbouring sweep points, over the optical pixels (3500-7500 A)."""
    optical = (gen.wavelength > 3500) & (gen.wavelength < 7500)
    f = np.log(_flux(gen, *sweep)[:, optical])
    return np.abs(np.diff(f, axis=0)).max()


@pytest.mark.parametrize("axis, lo, hi, fixed", [
    ("teff", 2600.0, 3700.0, (4.8, 0.0)),          # below the coolest MILES dwarfs
    ("teff", 20000.0, 45000.0, (4.0, 0.0)),        # above the hottest MILES stars
    ("logg", 4.0, 7.0, (5777.0, 0.0)),             # denser than any MILES dwarf
    ("logz", -4.5, -1.5, (5000.0, 2.5)),           # below the most metal-poor MILES giants
])
def test_no_step_across_the_edge_of_the_observed_parameter_space(semi, axis, lo, hi, fixed):
    """Sweep across the edge of the MILES star distribution: the largest change between neighbouring points is
    comparable to the theory model's own, and shrinks in proportion to the step (no jump)."""
    def sweep(n):
        v = np.geomspace(lo, hi, n) if axis == "teff" else np.linspace(lo, hi, n)
        if axis == "teff":
            return v, np.full(n, fixed[0]), np.full(n, fixed[1])
        if axis == "logg":
            return np.full(n, fixed[0]), v, np.full(n, fixed[1])
        return np.full(n, fixed[0]), np.full(n, fixed[1]), v
    coarse, fine = sweep(61), sweep(241)
    w = semi.empirical_weight(*coarse)
    assert w.max() > 0.3 and w.min() < 0.05, "the sweep must cross the edge of the observed coverage"
    semi_step, base_step = _max_step(semi, coarse), _max_step(semi.base, coarse)
    assert semi_step <= 1.5 * base_step + 0.01, (semi_step, base_step)
    corr = np.abs(np.diff(np.log(_flux(semi, *coarse) / _flux(semi.base, *coarse)), axis=0)).max()
    corr_fine = np.abs(np.diff(np.log(_flux(semi, *fine) / _flux(semi.base, *fine)), axis=0)).max()
    assert corr_fine < 0.45 * corr + 1e-4, (corr, corr_fine)     # ~1/4 for a smooth correction


def test_correction_is_zero_far_outside_coverage(semi):
    t = np.array([45000.0, 100000.0, 2300.0, 5777.0])
    g = np.array([4.0, 5.5, 5.0, 7.5])
    z = np.array([0.0, 0.0, 0.0, 0.0])
    assert np.all(semi.empirical_weight(t, g, z) == 0)
    assert np.array_equal(_flux(semi, t, g, z), _flux(semi.base, t, g, z))


def test_model_call_does_not_change_state(semi):
    before = {k: v.clone() for k, v in semi._net.state_dict().items()}
    a = _flux(semi, *INSIDE.T)
    b = _flux(semi, *INSIDE.T[:, ::-1])[::-1]
    assert np.allclose(a, b, rtol=1e-6)
    assert all(torch.equal(before[k], v) for k, v in semi._net.state_dict().items())


def test_changed_base_model_is_detected(semi, tmp_path):
    d = tmp_path / "corr"
    shutil.copytree(semi_empirical_model_path(), d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["base"]["weights_sha256"] = "0" * 64
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="base model has changed"):
        SemiEmpiricalGenerator(d, base=semi.base)
    SemiEmpiricalGenerator(d, base=semi.base, check_base=False)        # explicit opt-out works
    # same files, different spectra (here: a 2 % tilt across the optical): caught by the probe spectra
    from smnet_sps.neural import default_model_path, load_generator
    other = load_generator(default_model_path(), device="cpu")
    batch, tilt = other._batch, (other.wavelength / 5500.0) ** 0.05
    other._batch = lambda *args, **kwargs: batch(*args, **kwargs) * tilt
    with pytest.raises(ValueError, match="spectra differ"):
        SemiEmpiricalGenerator(semi_empirical_model_path(), base=other)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        SemiEmpiricalGenerator(tmp_path)


def test_kernel_density_matches_a_direct_sum_in_numpy_and_torch():
    rng = np.random.default_rng(3)
    stars, points, scales = rng.normal(size=(50, 3)), rng.normal(size=(7, 3)), np.array([0.5, 1.0, 2.0])
    direct = np.exp(-0.5 * (((points[:, None] - stars[None]) / scales) ** 2).sum(-1)).sum(1)
    np.testing.assert_allclose(kernel_density(points, stars, scales, chunk=3), direct, rtol=1e-10)
    p = torch.tensor(points, requires_grad=True)
    k = kernel_density(p, stars, scales)
    np.testing.assert_allclose(k.detach().numpy(), direct, rtol=1e-10)
    k.sum().backward()                      # gradient of sum_j exp(-d^2/2): -sum_j (p - s_j) / scale^2 e^..
    e = np.exp(-0.5 * (((points[:, None] - stars[None]) / scales) ** 2).sum(-1))
    grad = -(((points[:, None] - stars[None]) / scales ** 2) * e[..., None]).sum(1)
    np.testing.assert_allclose(p.grad.numpy(), grad, rtol=1e-8, atol=1e-12)


def test_torch_path_is_the_numpy_path_with_gradients(semi):
    t, g, z = INSIDE.T.copy()
    ref = _flux(semi, t, g, z)
    out = semi.torch_surface_flux(torch.tensor(t), torch.tensor(g), torch.tensor(z)).detach().numpy()
    base = _flux(semi.base, t, g, z)
    np.testing.assert_allclose(out, ref, rtol=2e-4)
    # the correction itself (semi / base) agrees far better than the base models' float32 paths do
    base_t = semi.base.torch_surface_flux(torch.tensor(t), torch.tensor(g), torch.tensor(z)).detach().numpy()
    np.testing.assert_allclose(out / base_t, ref / base, rtol=1e-6)


def test_a_stars_spectrum_does_not_depend_on_the_other_stars_of_its_batch(semi):
    """The correction network ran on whatever rows a call had: oneDNN picks its float32 kernel by matrix
    shape, and a star computed alone differed from the same star in a batch of 20 by 6e-8 in the correction,
    1.2e-7 in flux (the base model is bitwise batch-independent: fixed chunks padded to 16 rows)."""
    from smnet_sps.empirical import load_empirical
    stars = load_empirical(Path(__file__).parent / "fixtures" / "empirical")
    t, g, z = stars.teff, stars.logg, stars.logz
    together = _flux(semi, t, g, z)
    alone = np.array([_flux(semi, t[i], g[i], z[i])[0] for i in range(len(t))])
    assert np.array_equal(alone, together)
    # the torch path (for fitting) runs the network the same way: its correction is the same too
    tt = [torch.tensor(v) for v in (t, g, z)]
    one = torch.cat([semi.torch_surface_flux(*(v[i:i + 1] for v in tt)) for i in range(len(t))])
    assert torch.equal(one, semi.torch_surface_flux(*tt))


def test_correction_net_carries_no_low_order_shape():
    wl = np.arange(3570.0, 7400.0, 20.0)
    taper = wavelength_taper(wl, 3560.0, 7400.0, 140.0)
    basis = low_order_basis(wl, 3)
    torch.manual_seed(1)
    net = CorrectionNet(wl.size, width=16, depth=2, taper=taper, basis=basis)
    torch.nn.init.normal_(net.net[-1].weight, std=1.0)
    c = net(torch.rand(50, 3)).detach().double().numpy()
    assert np.abs(c).max() > 0.1
    assert np.abs(c @ basis).max() < 1e-4 * np.abs(c).sum(1).max()
    assert np.all(c[:, taper == 0] == 0)


def test_calibrate_refuses_more_folds_than_stars_before_the_base_model(tmp_path, capsys, monkeypatch):
    """--folds 1000 on 471 stars was refused only after the stars, the base model and the targets, as "k must
    be between 2 and the number of stars (471); got 1000" (naming neither --folds nor the file), printed
    after the unclosed progress bar; now right after the stars are loaded."""
    from pathlib import Path

    import smnet_sps.neural
    from smnet_sps.cli import main
    fixture = Path(__file__).parent / "fixtures" / "empirical"

    def never(*args, **kwargs):
        raise AssertionError("the base model was loaded although --folds exceeds the number of stars")
    monkeypatch.setattr(smnet_sps.neural, "load_generator", never)
    assert main(["calibrate", "--empirical", str(fixture), "--out", str(tmp_path / "c"),
                 "--folds", "21"]) == 1
    err = capsys.readouterr().err
    assert "--folds must be 0 (no cross-validation) or from 2 to the number of stars in" in err
    assert "miles_v9.1_fixture_stars.npz (20); got 21" in err and "fitting corrections" not in err
    assert not (tmp_path / "c").exists()


def test_calibrate_error_during_the_fit_is_printed_on_its_own_line(tmp_path, capsys, monkeypatch):
    """An error during the fit left the progress bar open: the message was printed on the bar's line."""
    from pathlib import Path

    import smnet_sps.calibrate as cal
    from smnet_sps.cli import main
    fixture = Path(__file__).parent / "fixtures" / "empirical"

    def failing(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(cal, "_fit_members", failing)
    import sys
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)   # bars: on a terminal only
    assert main(["calibrate", "--empirical", str(fixture), "--out", str(tmp_path / "c"), "--folds", "0"]) == 1
    err = capsys.readouterr().err
    assert "fitting corrections" in err and "\nsmnet-sps calibrate: error: disk full" in err


def test_calibrate_writes_a_loadable_deterministic_correction(tmp_path):
    """`smnet-sps calibrate` on the 20 fixture MILES stars (few steps): CV report, loadable,
    bit-reproducible."""
    from pathlib import Path

    from smnet_sps.calibrate import CalibrationSettings, calibrate
    from smnet_sps.cli import main
    fixture = Path(__file__).parent / "fixtures" / "empirical"
    st = CalibrationSettings(steps=40, members=1)
    scores = calibrate(fixture, tmp_path / "a", folds=2, settings=st, progress=False)
    assert {"semi-empirical (CV)", "default (theory)", "nearest other MILES star"} <= set(scores)
    assert np.isfinite(scores["semi-empirical (CV)"].score).sum() >= 15
    assert "semi-empirical (CV)" in (tmp_path / "a" / "cv_report.md").read_text()
    assert not list((tmp_path / "a").glob("*.part"))                    # staged files all renamed
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert len(cfg["network"]["weights_sha256"]) == 1 and cfg["density"]["stars_sha256"]
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "cv_report.md").write_text("an earlier correction's report")
    assert main(["calibrate", "--empirical", str(fixture), "--out", str(tmp_path / "b"), "--folds", "0",
                 "--steps", "40", "--members", "1"]) == 1                  # an occupied folder: --overwrite
    assert main(["calibrate", "--empirical", str(fixture), "--out", str(tmp_path / "b"), "--folds", "0",
                 "--steps", "40", "--members", "1", "--overwrite"]) == 0
    assert not (tmp_path / "b" / "cv_report.md").exists()            # no CV this time: no stale report
    a = torch.load(tmp_path / "a" / "correction_0.pt")
    b = torch.load(tmp_path / "b" / "correction_0.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)                    # same seed, same data: same weights
    gen = SemiEmpiricalGenerator(tmp_path / "b")
    f = _flux(gen, 5777.0, 4.44, 0.0)
    assert f.shape == (1, gen.wavelength.size) and np.all(np.isfinite(f))



def test_calibrate_gives_back_the_callers_threads_and_random_state(tmp_path):
    """calibrate ran on one torch thread and reseeded torch for every member, and left the caller so: on 1
    thread, its random numbers those of the last member's seed."""
    from pathlib import Path

    from smnet_sps.calibrate import CalibrationSettings, calibrate
    fixture = Path(__file__).parent / "fixtures" / "empirical"
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        torch.manual_seed(123)
        state = torch.get_rng_state()
        calibrate(fixture, tmp_path / "c", folds=0, settings=CalibrationSettings(steps=5, members=2),
                  progress=False)
        assert torch.get_num_threads() == threads + 1
        assert torch.equal(torch.get_rng_state(), state)
    finally:
        torch.set_num_threads(threads)

def test_usable_by_name_in_ssp_photometry_and_cli(semi, tmp_path):
    import astropy.units as u

    from smnet_sps.cli import main
    from smnet_sps.photometry import ssp_magnitudes
    from smnet_sps.ssp import ssp_spectrum
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = ssp_spectrum(10 * u.Gyr, Z=0.0152, generator="semi-empirical")
        b = ssp_spectrum(10 * u.Gyr, Z=0.0152, generator="default")
        mags = ssp_magnitudes([10e9], 0.0152, ["sdss2010-g"], generator="semi-empirical")
    assert a.meta["generator"] == "semi-empirical" and mags.meta["generator"] == "semi-empirical"
    w = a.spectral_axis.to_value(u.AA)
    r = a.flux.value / b.flux.value
    optical = (w > 3560) & (w < 7400)
    assert np.abs(r[~optical] - 1).max() < 0.005              # luminosity kept: < 0.5 % outside
    assert np.abs(r[optical] - 1).max() > 0.02
    assert a.meta["log_lbol"] == pytest.approx(b.meta["log_lbol"], abs=1e-9)
    out = tmp_path / "ssp.fits"
    assert main(["ssp", "--age", "10Gyr", "--Z", "0.0152", "--generator", "semi-empirical",
                 "--out", str(out)]) == 0
    assert out.is_file()


def test_renormalised_variant_integrates_to_sigma_teff4():
    from smnet_sps.constants import SIGMA_SB
    from smnet_sps.neural import load_generator
    gen = load_generator("semi-empirical", device="cpu", renormalise=True)
    t, g, z = INSIDE.T
    f = _flux(gen, t, g, z)
    # the forward path runs in float32 on the device: exact to float32 rounding (measured ~7e-8)
    assert np.allclose(np.trapezoid(f, gen.wavelength, axis=1), SIGMA_SB * t ** 4, rtol=1e-6)
    with pytest.raises(ValueError, match="takes only"):
        load_generator("semi-empirical", library="ck04")


def test_a_correction_directory_loads_by_path():
    """`load_generator(path)` of a folder written by `smnet-sps calibrate --out` failed ("format is 'smnet-sps
    semi-empirical correction', expected 'smnet-sps model'"); it loads as the semi-empirical generator."""
    from smnet_sps.neural import PACKAGE_DATA, load_generator
    from smnet_sps.semi_empirical import SemiEmpiricalGenerator
    by_path = load_generator(PACKAGE_DATA / "semi_empirical_model", device="cpu")
    assert isinstance(by_path, SemiEmpiricalGenerator)
    by_name = load_generator("semi-empirical", device="cpu")
    star = (5800.0, 4.4, 0.0)
    np.testing.assert_array_equal(by_path.surface_flux(*star)[0], by_name.surface_flux(*star)[0])
    with pytest.raises(ValueError, match="semi-empirical correction"):
        load_generator(PACKAGE_DATA / "semi_empirical_model", library="ck04")


def test_correction_files_are_checked_against_their_config(tmp_path):
    """An interrupted calibration wrote new weights beside the old config and stars, and the folder loaded
    silently (spectra up to 76 % off). The files are now written aside and renamed at the end, and the config
    records their sha256: a member from elsewhere is refused."""
    import shutil

    from smnet_sps.semi_empirical import SemiEmpiricalGenerator, semi_empirical_model_path
    copy = tmp_path / "se"
    shutil.copytree(semi_empirical_model_path(), copy)
    SemiEmpiricalGenerator(copy)                                  # as shipped: loads
    first, second = copy / "correction_0.pt", copy / "correction_1.pt"
    first.write_bytes(second.read_bytes())
    with pytest.raises(ValueError, match="correction_0.pt does not match its config.json"):
        SemiEmpiricalGenerator(copy)


@pytest.mark.parametrize("edit, match", [
    (lambda c: c["network"].update(weights_sha256=c["network"]["weights_sha256"][:1]),
     "one sha256 per weights file"),
    (lambda c: c["density"].update(n_half=0), "density.n_half must be a positive number"),
    (lambda c: c["density"].update(scales=[0, 0, 0]), "density.scales must be three positive numbers"),
    (lambda c: c.pop("base"), "missing or malformed field .KeyError: 'base'"),
    (lambda c: c.pop("density"), "missing or malformed field .KeyError: 'density'"),
    (lambda c: c["network"].update(depth="two"), "network.depth must be a whole number"),
    (lambda c: c["density"].update(weight_floor=2), r"density.weight_floor must be a number in \[0, 1\)"),
    (lambda c: c["pixels"].update(wavelength=c["pixels"]["wavelength"][:-1]),
     r"pixels.n \(\d+\) must equal stop - start \(\d+\) and the length of pixels.wavelength"),
])
def test_a_corrupt_correction_config_is_named(tmp_path, edit, match):
    """A shorter weights_sha256 list silently dropped ensemble members (spectra 0.49 % off), n_half 0 gave
    full empirical weight at 45 kK, zero scales a NaN weight that dropped the correction, and a missing key
    was a KeyError (a CLI traceback)."""
    copy = tmp_path / "se"
    shutil.copytree(semi_empirical_model_path(), copy)
    cfg = json.loads((copy / "config.json").read_text())
    edit(cfg)
    (copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=match):
        SemiEmpiricalGenerator(copy, device="cpu")


def test_tensors_come_in_the_base_models_compute_dtype():
    """surface_flux(as_tensor=True) gave float32 on the host whatever the base model ran in (the docs: on the
    generator's device, in its compute dtype)."""
    from smnet_sps.neural import load_generator
    t64 = load_generator("semi-empirical", dtype="float64", device="cpu").surface_flux(5777, 4.4, 0,
                                                                                      as_tensor=True)[0]
    t32 = load_generator("semi-empirical", device="cpu").surface_flux(5777, 4.4, 0, as_tensor=True)[0]
    assert t64.dtype == torch.float64 and t32.dtype == torch.float32
    np.testing.assert_allclose(t64.numpy(), t32.numpy(), rtol=2e-3)


def test_calibrate_on_a_model_directory_of_ones_own(tmp_path):
    """--base takes a trained model's directory as well as 'default': the correction records its absolute
    path and its path relative to the correction (a project folder holding both can move), loads and checks
    its base from there, and scores it under its own name; a correction or any other folder is refused by
    name, and a base that is gone says what to do."""
    import shutil
    from pathlib import Path

    from smnet_sps.calibrate import CalibrationSettings, calibrate
    from smnet_sps.cli import main
    from smnet_sps.neural import default_model_path, load_generator
    fixture = Path(__file__).parent / "fixtures" / "empirical"
    project = tmp_path / "project"
    mine = project / "my_model"
    shutil.copytree(default_model_path(), mine)
    cfg = json.loads((mine / "config.json").read_text())
    cfg["name"] = "my-model"
    (mine / "config.json").write_text(json.dumps(cfg))
    scores = calibrate(fixture, project / "c", base=str(mine), folds=2,
                       settings=CalibrationSettings(steps=20, members=1), progress=False)
    assert "my-model (theory)" in scores and "default (theory)" not in scores
    assert "my-model (theory)" in (project / "c" / "cv_report.md").read_text()
    recorded = json.loads((project / "c" / "config.json").read_text())["base"]
    assert recorded["name"] == str(mine.resolve()) and recorded["relative_path"] == "../my_model"
    assert recorded["model_name"] == "my-model"
    gen = SemiEmpiricalGenerator(project / "c")
    assert Path(gen.base.directory).resolve() == mine.resolve()
    flux = _flux(gen, 5777.0, 4.44, 0.0)
    assert np.all(np.isfinite(flux))
    moved = tmp_path / "elsewhere"                               # the whole project moves: found again
    project.rename(moved)
    gen = SemiEmpiricalGenerator(moved / "c")
    assert Path(gen.base.directory).resolve() == (moved / "my_model").resolve()
    assert Path(gen.meta["base_model"]).resolve() == (moved / "my_model").resolve()   # where it was loaded
    np.testing.assert_allclose(_flux(gen, 5777.0, 4.44, 0.0), flux, rtol=1e-6)
    shutil.move(moved / "my_model", tmp_path / "apart")          # the base alone goes: what to do
    with pytest.raises(ValueError, match=r"no model is there.*base=load_generator") as err:
        SemiEmpiricalGenerator(moved / "c")
    assert "my-model" in str(err.value)
    gen = SemiEmpiricalGenerator(moved / "c", base=load_generator(tmp_path / "apart"))
    assert np.all(np.isfinite(_flux(gen, 5777.0, 4.44, 0.0)))
    shutil.move(tmp_path / "apart", moved / "my_model")
    (moved / "my_model" / "weights.pt").write_bytes(b"retrained")     # the base changed under it
    with pytest.raises(ValueError, match="base model has changed") as err:
        SemiEmpiricalGenerator(moved / "c")
    assert f"--base {(moved / 'my_model').resolve()} --out" in str(err.value)     # the hint's base is there
    # the shipped model named by its path is 'default'; a correction or another folder is refused by name
    from smnet_sps.calibrate import _base_info
    assert _base_info(str(default_model_path()), tmp_path / "d")[1]["name"] == "default"
    for base, why in ((str(moved / "c"), "is a semi-empirical correction, not a model"),
                      (str(tmp_path / "nowhere"), "is not a model directory")):
        with pytest.raises(ValueError, match=why):
            calibrate(fixture, tmp_path / "d", base=base, folds=0, progress=False)
        assert main(["calibrate", "--empirical", str(fixture), "--out", str(tmp_path / "d"),
                     "--base", base, "--folds", "0"]) == 1


def test_a_users_correction_is_named_apart_from_the_shipped_one(semi, tmp_path):
    """Every correction, the shipped one or one a user made with `smnet-sps calibrate`, was named
    "semi-empirical", and an SSP file records only the name (FITS GENERATR, .h5/.npz attributes): the two,
    whose fluxes differ by up to 5.8 %, could not be told apart. Another directory's correction is now
    "semi-empirical:<its absolute directory>"; the shipped one keeps its name."""
    import shutil

    import astropy.units as u
    from astropy.io import fits

    from smnet_sps.cli import main
    from smnet_sps.semi_empirical import SemiEmpiricalGenerator, semi_empirical_model_path
    from smnet_sps.ssp import ssp_spectrum
    mine = tmp_path / "my_correction"
    shutil.copytree(semi_empirical_model_path(), mine)
    user = SemiEmpiricalGenerator(mine, device="cpu")
    assert user.name == f"semi-empirical:{mine.resolve()}" and user.meta["model"] == user.name
    assert SemiEmpiricalGenerator(device="cpu").name == semi.name == "semi-empirical"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert ssp_spectrum(10 * u.Gyr, Z=0.0152, generator=user).meta["generator"] == user.name
    out = tmp_path / "ssp.fits"
    assert main(["ssp", "--age", "10Gyr", "--Z", "0.0152", "--generator", str(mine), "--out", str(out)]) == 0
    assert fits.getheader(out, "SSP")["GENERATR"] == user.name


def test_calibrate_on_stars_sharing_one_metallicity(tmp_path):
    """Stars that all share one [M/H] (here 0) gave the network's input scaling a zero span: (p - lo) / 0 =
    NaN at exactly that [M/H], so 37 of 40 held-out stars had NaN spectra and the CV report's 'all' cell
    counted 3 stars, silently. The constant input is now held fixed: every spectrum is finite, every star is
    scored, and stars without a score (here one whose spectrum is all gaps) are named in the report."""
    from pathlib import Path

    from smnet_sps.calibrate import CalibrationSettings, calibrate
    fixture = next((Path(__file__).parent / "fixtures" / "empirical").glob("*.npz"))
    stars = dict(np.load(fixture))
    stars["feh"] = np.zeros_like(stars["feh"], dtype=float)
    stars["flux"] = stars["flux"].copy()
    stars["flux"][0] = 0.0                                   # exact zeros are gaps: this star has no data
    (tmp_path / "solar").mkdir()
    np.savez(tmp_path / "solar" / "stars.npz", **stars)
    scores = calibrate(tmp_path / "solar", tmp_path / "out", folds=2,
                       settings=CalibrationSettings(steps=20, members=1), progress=False)
    n = len(stars["feh"])
    for name in ("semi-empirical (CV)", "default (theory)"):
        assert np.isfinite(scores[name].score).sum() == n - 1, name
    gen = SemiEmpiricalGenerator(tmp_path / "out", device="cpu")
    teff, logg = np.full(3, stars["teff"][1]), np.full(3, stars["logg"][1])   # at a calibration star
    logz = np.array([0.0, -0.2, 0.2])
    assert gen.empirical_weight(teff, logg, logz)[0] > 0.5
    assert np.all(np.isfinite(_flux(gen, teff, logg, logz)))
    assert np.abs(gen.correction(teff, logg, logz)[0]).max() > 1e-3      # the correction is applied there
    report = (tmp_path / "out" / "cv_report.md").read_text()
    assert f"- semi-empirical (CV): 1 of {n} stars (numbers {int(stars['miles_id'][0])})" in report
    assert f"| all | {100 * np.nanmedian(scores['semi-empirical (CV)'].score):.2f} ({n - 1}) |" in report


def test_calibrate_never_writes_over_a_model(tmp_path, capsys):
    """calibrate(..., out=<a model's folder>) replaced the model's config.json (the model was gone); the CLI
    with --base m2 --out m2 said "already holds a correction (config.json)", and with --overwrite wrote a
    correction that recorded itself as its own base (relative_path "."), so that nothing loaded. A folder
    holding a model, the base's own included, is now refused before the fit, --overwrite or not; --overwrite
    replaces only a correction."""
    from pathlib import Path

    from smnet_sps.calibrate import calibrate
    from smnet_sps.cli import main
    from smnet_sps.neural import MODEL_FORMAT, default_model_path, load_generator
    fixture = Path(__file__).parent / "fixtures" / "empirical"
    model = tmp_path / "m2"
    shutil.copytree(default_model_path(), model)
    before = (model / "config.json").read_text()
    with pytest.raises(ValueError, match=r"holds a model \(config.json of format 'smnet-sps model'\)"):
        calibrate(fixture, model, folds=0, progress=False)
    common = ["calibrate", "--empirical", str(fixture), "--folds", "0", "--steps", "2", "--members", "1"]
    for extra in ([], ["--overwrite"]):
        assert main(common + ["--base", str(model), "--out", str(model)] + extra) == 1
        assert "is the base model's own folder" in capsys.readouterr().err
        assert main(common + ["--out", str(model)] + extra) == 1
        err = capsys.readouterr().err
        assert "holds a model" in err and "already holds a correction" not in err
    assert (model / "config.json").read_text() == before
    assert json.loads(before)["format"] == MODEL_FORMAT and not list(model.glob("correction_*.pt"))
    assert load_generator(model, device="cpu").name == load_generator(device="cpu").name


def test_a_supplied_base_is_checked_as_it_was_loaded():
    """SemiEmpiricalGenerator(base=load_generator(dtype="bfloat16")) raised "the base model has changed" (max
    |change of ln F| 0.018 > 0.002: bfloat16 rounding, checked as if float32), while load_generator(
    "semi-empirical", dtype="bfloat16") loaded; a base loaded with library="nextgen" read as changed too,
    though its files were not: it is refused for what it is."""
    from smnet_sps.neural import load_generator
    reference = _flux(load_generator("semi-empirical", device="cpu", dtype="bfloat16"), *INSIDE.T)
    supplied = SemiEmpiricalGenerator(base=load_generator(device="cpu", dtype="bfloat16"))
    np.testing.assert_array_equal(_flux(supplied, *INSIDE.T), reference)
    with pytest.raises(ValueError, match="imitates the library 'nextgen'.*load the base without library="):
        SemiEmpiricalGenerator(base=load_generator(device="cpu", library="nextgen"))



def _restamp(directory, fname, key):
    """Record ``fname``'s sha256 in config.json again (so that only its content, not a checksum, is wrong)."""
    from smnet_sps.checksums import file_sha256
    cfg = json.loads((directory / "config.json").read_text())
    if key == "stars_sha256":
        cfg["density"][key] = file_sha256(directory / fname)
    else:
        cfg["network"][key][cfg["network"]["weights_files"].index(fname)] = file_sha256(directory / fname)
    (directory / "config.json").write_text(json.dumps(cfg))


def _edit_stars(edit):
    def apply(directory):
        with np.load(directory / "stars.npz") as z:
            stars = {k: z[k] for k in z.files}
        edit(stars)
        np.savez_compressed(directory / "stars.npz", **stars)
        _restamp(directory, "stars.npz", "stars_sha256")
    return apply


def _nan_weight(directory):
    sd = torch.load(directory / "correction_0.pt")
    key = next(k for k in sd if k.endswith("weight"))
    sd[key] = sd[key].clone()
    sd[key][0, 0] = float("nan")
    torch.save(sd, directory / "correction_0.pt")
    _restamp(directory, "correction_0.pt", "weights_sha256")


@pytest.mark.parametrize("corrupt, match", [
    (lambda d: (d / "config.json").write_text(""), r"config.json: not valid JSON"),
    (lambda d: (d / "config.json").write_text("[]"), r"config.json: holds a JSON list, not an object"),
    (_edit_stars(lambda s: s.pop("logz")), r"stars.npz: lacks \['logz'\]"),
    (_edit_stars(lambda s: s.update(logg=s["logg"][:-3])), r"stars.npz: log_teff, logg, logz must be 1-d "
                                                           r"arrays of one length"),
    (_edit_stars(lambda s: s.update(log_teff=np.where(np.arange(s["log_teff"].size) == 5, np.nan,
                                                      s["log_teff"]))),
     r"stars.npz: log_teff must hold finite numbers; 1 of \d+ are NaN"),
    (_edit_stars(lambda s: s.update({k: s[k][:0] for k in ("log_teff", "logg", "logz")})),
     r"stars.npz: .*>= 1 star"),
    (_nan_weight, r"correction_0.pt holds NaN or inf values"),
])
def test_a_corrupt_correction_folder_is_named(tmp_path, corrupt, match):
    """A corrupt correction folder failed with a JSONDecodeError (empty config.json), an AttributeError (a
    JSON list), a KeyError (stars.npz without logz) or a numpy error (ragged star arrays), or loaded with the
    correction silently off (a NaN star coordinate: NaN weights; no stars) or NaN spectra (NaN network
    weights); each is now a ValueError naming the file and what is wrong."""
    copy = tmp_path / "se"
    shutil.copytree(semi_empirical_model_path(), copy)
    corrupt(copy)
    with pytest.raises(ValueError, match=match):
        SemiEmpiricalGenerator(copy, device="cpu")


def test_a_correction_by_path_is_loaded_again_once_its_base_model_changed(tmp_path):
    """A correction directory was versioned by its own files only: after its base model was retrained in
    place, ssp_spectrum(generator=CORRECTION_DIR) kept serving the old base times the correction (the check
    that its base is the one it was calibrated on never ran again). The version holds the base model's
    files now: the next call loads it again, and that says the base has changed."""
    from smnet_sps.neural import default_model_path
    from smnet_sps.ssp import resolve_generator

    from test_ssp import _retrain_in_place

    base, corr = tmp_path / "base", tmp_path / "corr"
    shutil.copytree(default_model_path(), base)
    shutil.copytree(semi_empirical_model_path(), corr)
    cfg = json.loads((corr / "config.json").read_text())
    cfg["base"].update(name=str(base), relative_path="../base")
    (corr / "config.json").write_text(json.dumps(cfg))
    gen = resolve_generator(str(corr), "cpu")
    assert isinstance(gen, SemiEmpiricalGenerator) and gen.base.directory.resolve() == base.resolve()
    assert resolve_generator(str(corr), "cpu") is gen                      # unchanged: loaded once
    _retrain_in_place(base)
    with pytest.raises(ValueError, match="base model has changed"):
        resolve_generator(str(corr), "cpu")


def test_calibration_targets_leave_a_gap_in_the_wavelength_array_out(tmp_path, default_generator):
    """prepare() stretched the pixels beside a gap in the wavelength array (5000-5600 A dropped) over half of
    it: on MILES 13,659 gap pixel-star values became targets. The gap is now masked, as the same gap stored as
    zeros is, and the targets elsewhere are the same."""
    from pathlib import Path

    from smnet_sps.calibrate import prepare
    from smnet_sps.empirical import load_empirical
    raw = dict(np.load(next((Path(__file__).parent / "fixtures" / "empirical").glob("*.npz"))))
    cut = (raw["wave"] > 5000) & (raw["wave"] < 5600)
    np.savez(tmp_path / "zeros.npz", **{**raw, "flux": np.where(cut, 0.0, raw["flux"])})
    np.savez(tmp_path / "dropped.npz", **{**raw, "wave": raw["wave"][~cut], "flux": raw["flux"][:, ~cut]})
    a = prepare(load_empirical(tmp_path / "zeros.npz"), default_generator)
    b = prepare(load_empirical(tmp_path / "dropped.npz"), default_generator)
    gap = (b.wavelength > 5010) & (b.wavelength < 5600)
    assert gap.sum() > 20 and not b.mask[:, gap].any()
    assert (a.start, a.stop) == (b.start, b.stop)
    np.testing.assert_array_equal(b.mask, a.mask)
    np.testing.assert_allclose(b.y, a.y, rtol=1e-12, atol=1e-12)


def _cut_fixture(tmp_path, keep):
    from pathlib import Path
    raw = dict(np.load(next((Path(__file__).parent / "fixtures" / "empirical").glob("*.npz"))))
    k = keep(raw["wave"])
    np.savez(tmp_path / "stars.npz", **{**raw, "wave": raw["wave"][k], "flux": raw["flux"][:, k]})
    return tmp_path / "stars.npz"


def test_calibrating_a_set_narrower_than_the_taper_leaves_no_step(tmp_path):
    """A set ending inside the fixed 3560-7400 A taper (MILES cut at 6000 A) had the correction cut off where
    the taper was still 1: -0.0141 at 5990 A -> 0 at 6010 A, a 1.4 % step. The taper now ends at the last
    corrected pixel (the full range keeps 3560-7400 A); a set too narrow for the two ramps is refused."""
    from smnet_sps.calibrate import CalibrationSettings, calibrate, prepare
    from smnet_sps.empirical import load_empirical
    from smnet_sps.neural import load_generator
    base = load_generator(device="cpu")
    full = prepare(load_empirical(_cut_fixture(tmp_path, lambda w: w > 0)), base)
    assert np.array_equal(full.taper, wavelength_taper(full.wavelength, 3560.0, 7400.0, 140.0))
    st = CalibrationSettings(steps=60, members=1)
    cut = _cut_fixture(tmp_path, lambda w: w < 6000)
    calibrate(cut, tmp_path / "c", folds=0, settings=st, progress=False)
    g = SemiEmpiricalGenerator(tmp_path / "c", device="cpu")
    assert 5950 < g.wavelength[g._i1 - 1] < 6002
    c = g.correction(*INSIDE.T)
    assert np.abs(c).max() > 1e-3                              # a correction, ramped to 0 at the set's end
    assert np.abs(c[:, g._i1 - 1]).max() < 1e-6 and np.abs(c[:, g._i1:]).max() == 0
    assert json.loads((tmp_path / "c" / "config.json").read_text())["taper"]["hi"] == g.wavelength[g._i1 - 1]
    with pytest.raises(ValueError, match=r"stars.npz: covers 3541-3801 A .*2 x 140 A"):
        prepare(load_empirical(_cut_fixture(tmp_path, lambda w: w < 3800)), base)


def test_calibrate_refuses_to_cross_validate_a_set_it_cannot_score(tmp_path, capsys):
    """`smnet-sps calibrate --folds 2` on stars observed only at 6500-7410 A (air; under half of the
    3610-7350 A comparison grid, so no star can be scored) fitted every fold and wrote a cv_report.md of '-'
    cells and a cv_per_star.csv of nan, exit status 0. It is refused before the fit, naming the set's range
    and --folds 0; --folds 0 (no report) still fits the correction."""
    from smnet_sps.cli import main
    cut = _cut_fixture(tmp_path, lambda w: w >= 6500)
    common = ["calibrate", "--empirical", str(cut), "--steps", "2", "--members", "1"]
    assert main(common + ["--out", str(tmp_path / "cv"), "--folds", "2"]) == 1
    err = capsys.readouterr().err
    assert "stars.npz: no star can be scored: the set covers 6502-7412 A (vacuum), the comparison grid is " \
           "3610-7350 A" in err
    assert "--folds 2 would write a cross-validation report without a score" in err and "--folds 0" in err
    assert "fitting corrections" not in err
    assert not (tmp_path / "cv" / "cv_report.md").exists() and not (tmp_path / "cv" / "config.json").exists()
    assert main(common + ["--out", str(tmp_path / "fit"), "--folds", "0"]) == 0
    assert (tmp_path / "fit" / "config.json").exists() and not (tmp_path / "fit" / "cv_report.md").exists()
