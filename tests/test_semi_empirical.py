"""The semi-empirical generator: continuity in wavelength and parameters, luminosity, coverage, base checks."""
import json
import shutil
import warnings

import numpy as np
import pytest
import torch

from smnet_sps.generator import CoverageWarning
from smnet_sps.semi_empirical import (CorrectionNet, SemiEmpiricalGenerator, low_order_basis,
                                      semi_empirical_model_path, wavelength_taper)

# inside the MILES star distribution: Sun, M dwarf, K giant, metal-poor giant, A dwarf, B star
INSIDE = np.array([(5777, 4.44, 0.0), (3600, 4.7, 0.0), (4300, 1.8, -0.3), (5000, 2.5, -1.5), (9000, 4.0, 0.0),
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
    with pytest.raises(FileNotFoundError, match="no config.json"):
        SemiEmpiricalGenerator(tmp_path)


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
