"""The CUDA code paths on a CPU-only machine, under a fake CUDA device (tests/fake_accelerator.py): every
tensor the package combines with the model's device tensors must be made there, never on the host, and no
device tensor may go to numpy without ``.cpu()``. The numbers are the CPU's, so each entry point is also
compared with its CPU run. tests/test_forward_torch.py::test_cuda_path_matches_cpu runs on a real GPU."""
import warnings

import numpy as np
import pytest
import torch

from fake_accelerator import FAKE, DeviceMismatch, FakeCuda, OnDevice, fake_cuda
from smnet_sps.generator import CoverageWarning
from smnet_sps.neural import load_generator

T = np.array([5777.0, 4500.0, 9000.0, 25000.0, 3500.0])
G = np.array([4.44, 2.0, 4.0, 4.0, 0.5])
Z = np.array([0.0, -0.5, 0.2, -1.0, -2.0])


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_the_fake_device_catches_host_tensors_in_a_device_path(default_generator, monkeypatch):
    """The check itself: a host tensor mixed into device arithmetic, and numpy of a device tensor, raise as
    on CUDA; and a constant built without device= inside the generator (as a future edit might) fails the
    generator's own call."""
    with FakeCuda():
        a = torch.ones(3, device="cuda")
        assert isinstance(a, OnDevice) and a.device == FAKE and a.is_cuda
        assert (a + torch.tensor(2.0)).device == FAKE          # a host scalar is fine, as on CUDA
        assert a[torch.tensor([0, 2])].device == FAKE          # host indices too
        assert a.cpu().device.type == "cpu" and not isinstance(a.cpu(), OnDevice)
        with pytest.raises(DeviceMismatch):
            a + torch.ones(3)
        with pytest.raises(TypeError, match="Use Tensor.cpu"):
            a.numpy()
        with pytest.raises(TypeError, match="Use Tensor.cpu"):
            np.asarray(a)
    from smnet_sps.neural import NeuralGenerator
    real = NeuralGenerator._constants

    def on_the_host(self, device, dtype):           # what a missing device= would do
        return real(self, torch.device("cpu"), dtype)
    with fake_cuda(monkeypatch):
        gen = load_generator(device="cuda")
        gen.surface_flux(T, G, Z)                   # the clean path passes
        monkeypatch.setattr(NeuralGenerator, "_constants", on_the_host)
        with pytest.raises(DeviceMismatch):
            gen.surface_flux(T, G, Z)


@pytest.mark.parametrize("library", [None, "ck04"])
def test_the_shipped_model_runs_on_the_device(default_generator, monkeypatch, library):
    """surface_flux (numpy and as_tensor), float64 and bfloat16 runs, and torch_surface_flux with its
    gradient: no host tensor in the device path, the CPU's numbers."""
    kw = {} if library is None else {"library": library}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        ref, inside = default_generator.surface_flux(T, G, Z, **kw)
        ref64 = default_generator.surface_flux(T, G, Z, dtype="float64", **kw)[0]
        with fake_cuda(monkeypatch):
            gen = load_generator(device="cuda")
            assert gen.device.type == "cuda"
            f, inside_dev = gen.surface_flux(T, G, Z, **kw)
            t, _ = gen.surface_flux(T, G, Z, as_tensor=True, **kw)
            f64 = gen.surface_flux(T, G, Z, dtype="float64", **kw)[0]
            bf16 = gen.surface_flux(T, G, Z, dtype="bfloat16", **kw)[0]
            x = torch.tensor(T, dtype=torch.float64, requires_grad=True)
            flux = gen.torch_surface_flux(x, torch.tensor(G), torch.tensor(Z), **kw)
            flux.sum().backward()
            empty, _ = gen.surface_flux([], [], [], as_tensor=True)
            assert t.device == FAKE and flux.device == FAKE and empty.device == FAKE
    np.testing.assert_array_equal(inside_dev, inside)
    np.testing.assert_allclose(f, ref, rtol=1e-5)
    np.testing.assert_allclose(t.cpu().numpy(), ref, rtol=1e-5)
    np.testing.assert_allclose(f64, ref64, rtol=1e-10)
    np.testing.assert_allclose(bf16, ref, rtol=0.2)
    np.testing.assert_allclose(flux.detach().cpu().numpy(), ref64, rtol=1e-6)
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("normalisation", ["covered", "blackbody"])
def test_a_released_checkpoint_runs_on_the_device(released_smooth, monkeypatch, normalisation):
    weights, meta = released_smooth
    ref = load_generator(weights, meta=meta, device="cpu", normalisation=normalisation)
    t, g, z = T[:3], G[:3], Z[:3]
    want = ref.surface_flux(t, g, z)[0]
    x = torch.tensor(t, dtype=torch.float64, requires_grad=True)
    ref.torch_surface_flux(x, torch.tensor(g), torch.tensor(z)).sum().backward()
    with fake_cuda(monkeypatch):
        gen = load_generator(weights, meta=meta, device="cuda", normalisation=normalisation)
        got = gen.surface_flux(t, g, z)[0]
        xd = torch.tensor(t, dtype=torch.float64, requires_grad=True)
        flux = gen.torch_surface_flux(xd, torch.tensor(g), torch.tensor(z))
        flux.sum().backward()
        assert flux.device == FAKE
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(xd.grad.numpy(), x.grad.numpy(), rtol=1e-6)


def test_the_semi_empirical_model_runs_on_the_device(monkeypatch):
    from smnet_sps.semi_empirical import SemiEmpiricalGenerator
    ref = SemiEmpiricalGenerator(device="cpu")
    want = ref.surface_flux(T[:3], G[:3], Z[:3])[0]
    with fake_cuda(monkeypatch):
        gen = SemiEmpiricalGenerator(device="cuda")
        got = gen.surface_flux(T[:3], G[:3], Z[:3])[0]
        t, _ = gen.surface_flux(T[:3], G[:3], Z[:3], as_tensor=True)
        x = torch.tensor(T[:3], dtype=torch.float64, requires_grad=True)
        flux = gen.torch_surface_flux(x, torch.tensor(G[:3]), torch.tensor(Z[:3]))
        flux.sum().backward()
        assert t.device == FAKE and flux.device == FAKE and torch.isfinite(x.grad).all()
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_an_ssp_and_a_star_fit_run_with_a_generator_on_the_device(default_generator, monkeypatch):
    """The backend (StellarLibraryBackend on the generator's device) and fit_star's model call
    (torch_surface_flux on the device, the fit on the host)."""
    from smnet_sps.fit import fit_star
    from smnet_sps.ssp import ssp_spectrum
    wl = default_generator.wavelength
    sel = (wl > 4000) & (wl < 6000)
    star = default_generator.surface_flux(5600.0, 4.3, -0.2)[0][0][sel]
    ref_fit = fit_star(wl[sel], star, n_starts=1, generator=default_generator)
    ref_ssp = ssp_spectrum(5e9, 0.0152, generator=default_generator)
    with fake_cuda(monkeypatch):
        gen = load_generator(device="cuda")
        got_fit = fit_star(wl[sel], star, n_starts=1, generator=gen)
        got_ssp = ssp_spectrum(5e9, 0.0152, generator=gen, device="cuda")
    assert got_fit.teff == pytest.approx(ref_fit.teff, rel=1e-5)
    np.testing.assert_allclose(got_ssp.flux.value, ref_ssp.flux.value, rtol=1e-5)


def test_fit_ssp_takes_templates_on_the_device(monkeypatch):
    """fit_ssp(templates=SSPInterpolator(grid, device="cuda")): the interpolator's spectra stayed on the
    device and were multiplied by the dust curve made on the host (the fit's parameters are host tensors):
    'Expected all tensors to be on the same device' before the first chi^2. The spectra now come to the host,
    as fit_star's do, and the fit is the CPU's."""
    from test_fit import _toy_galaxy, _toy_ssp_grid

    from smnet_sps.fit import fit_ssp
    from smnet_sps.ssp_torch import SSPInterpolator
    grid = _toy_ssp_grid(None)
    wave, flux = _toy_galaxy(grid)
    ref = fit_ssp(wave, flux, (300 / flux) ** 2, templates=grid, n_starts=1)
    with fake_cuda(monkeypatch):
        interp = SSPInterpolator(grid, device="cuda")
        assert interp.flux.device == FAKE
        got = fit_ssp(wave, flux, (300 / flux) ** 2, templates=interp, n_starts=1)
    assert got.log_age == pytest.approx(ref.log_age, abs=1e-6)
    assert got.logz == pytest.approx(ref.logz, abs=1e-6)
    assert got.chi2 == pytest.approx(ref.chi2, rel=1e-6)


def test_training_runs_on_the_device_and_its_model_loads_on_a_cpu(tmp_path, monkeypatch):
    """Epochs on the device (moving average, node blends, jitter): the same losses as on the CPU; weights.pt
    holds host tensors (a model trained on a GPU loads on a laptop, with or without map_location) and loads
    with load_generator(device="cpu")."""
    from test_train import make_synthetic_grid

    from smnet_sps.train import train
    grid = make_synthetic_grid(tmp_path / "grid.h5")
    kw = dict(width=16, depth=1, epochs=2, batch_size=32, progress=False, ema_decay=0.9, node_blend=0.3,
              input_jitter=0.5)
    ref = train(grid, tmp_path / "cpu", device="cpu", **kw)
    with fake_cuda(monkeypatch):
        cfg = train(grid, tmp_path / "cuda", device="cuda", **kw)
    assert cfg["training"]["device"] == "cuda"
    assert cfg["training"]["best_val_loss"] == pytest.approx(ref["training"]["best_val_loss"], rel=1e-5)
    sd = torch.load(tmp_path / "cuda" / "weights.pt", weights_only=True)      # no OnDevice class inside
    assert all(type(v) is torch.Tensor for v in sd.values())
    got = load_generator(tmp_path / "cuda", device="cpu").surface_flux(6000.0, 4.0, 0.0)[0]
    want = load_generator(tmp_path / "cpu", device="cpu").surface_flux(6000.0, 4.0, 0.0)[0]
    np.testing.assert_allclose(got, want, rtol=1e-4)
