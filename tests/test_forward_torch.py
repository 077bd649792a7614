"""The generator's torch forward path: equal to the old numpy path, batch-size independent, tensors out,
differentiable, low-precision options, the vectorised coverage rule, and a CUDA run where there is one."""
import warnings

import numpy as np
import pytest
import torch

from _reference_old import old_in_coverage, old_surface_flux
from smnet_sps.generator import CoverageWarning
from smnet_sps.neural import load_generator


def random_points(n, seed=0):
    """Random stars over the whole training box and a bit beyond: many points in library overlaps."""
    rng = np.random.default_rng(seed)
    teff = 10 ** rng.uniform(np.log10(2000.0), np.log10(200000.0), n)
    return teff, rng.uniform(-1.5, 8.5, n), rng.uniform(-3.0, 1.0, n)


@pytest.fixture(scope="module")
def renorm_generator():
    return load_generator(device="cpu", renormalise=True, fill_tail=False)


@pytest.fixture(scope="module")
def raw_generator():
    """The network's own output everywhere (no Wien-tail fill, which the old numpy path did not have)."""
    return load_generator(device="cpu", fill_tail=False)


def test_fp32_matches_the_old_numpy_path(raw_generator, renorm_generator):
    teff, logg, logz = random_points(500)
    teff[:20], logg[:20], logz[:20] = 5777.0, 4.44, 0.0          # the Sun: a blend of several libraries
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        for gen in (raw_generator, renorm_generator):
            new, _ = gen.surface_flux(teff, logg, logz)
            old = old_surface_flux(gen, teff, logg, logz)
            assert new.dtype == np.float64 and np.isfinite(new).all()
            np.testing.assert_allclose(new, old, rtol=1e-5, atol=0)
        gen = raw_generator
        for lib in gen.library_names:
            new, _ = gen.surface_flux(teff[:60], logg[:60], logz[:60], library=lib)
            np.testing.assert_allclose(new, old_surface_flux(gen, teff[:60], logg[:60], logz[:60], lib),
                                       rtol=1e-5)
    # the test has teeth: several libraries really were blended in this sample
    assert ((gen.mixture(teff, logg, logz) > 0).sum(1) > 1).mean() > 0.05


def test_results_do_not_depend_on_batch_size(default_generator):
    gen = default_generator
    teff, logg, logz = random_points(40, seed=3)
    teff[:10], logg[:10], logz[:10] = 5777.0, 4.44, 0.0          # the Sun: CK04 + NextGen + BaSeL blend
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        ref, _ = gen.surface_flux(teff, logg, logz, batch_size=8192)
        for bs in (1, 3, 7, 16, 33):
            f, _ = gen.surface_flux(teff, logg, logz, batch_size=bs)
            assert np.abs(f / ref - 1).max() < 1e-6, bs
        # a point's spectrum does not depend on the other points of its batch either
        alone, _ = gen.surface_flux(teff[5], logg[5], logz[5])
    assert np.abs(alone[0] / ref[5] - 1).max() < 1e-6



@pytest.mark.parametrize("library", [None, "ck04"])
def test_cache_sized_row_blocks_change_no_bit(default_generator, monkeypatch, library):
    """On one CPU thread the steps after the network (tail fill, blend, blackbody, exponentiation) run in
    blocks of CACHE_ROWS rows: the same operations per element, so bit for bit the one-pass result."""
    import smnet_sps.tail as tail_module
    teff, logg, logz = random_points(300, seed=5)
    teff[:10], logg[:10], logz[:10] = 5777.0, 4.44, 0.0          # the Sun: a blend of several libraries
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CoverageWarning)
            flux = {}
            for rows in (48, 10**9):                   # blocks with a short last one; one pass (as before)
                monkeypatch.setattr(tail_module, "CACHE_ROWS", rows)
                flux[rows] = default_generator.surface_flux(teff, logg, logz, library=library)[0]
    finally:
        torch.set_num_threads(threads)
    assert np.isfinite(flux[48]).all() and np.array_equal(flux[48], flux[10**9])
    # with several threads (each step a parallel region) and on an accelerator: one pass
    if threads > 1:
        assert tail_module.rows_per_pass(torch.device("cpu"), 5000) == 5000


def test_the_last_chunk_is_padded_as_documented():
    """The network sees a multiple of _PAD_ROWS rows, and docs/generator.md says so (it said "a multiple of 4
    rows" while the code padded to 16)."""
    from pathlib import Path

    from smnet_sps.neural import _PAD_ROWS, _padded_net
    seen = []

    def net(t):
        seen.append(t.shape[0])
        return t
    for rows in (1, 7, 17, 2048):
        out = _padded_net(net, torch.ones((rows, 3)))
        assert out.shape == (rows, 3) and seen[-1] % _PAD_ROWS == 0 and seen[-1] - rows < _PAD_ROWS
    text = " ".join((Path(__file__).parents[1] / "docs" / "generator.md").read_text().split())
    assert f"multiple of {_PAD_ROWS} (`_PAD_ROWS`" in text and "multiple of 4 " not in text

def test_as_tensor_stays_on_the_device(default_generator):
    gen = default_generator
    teff, logg, logz = [5777.0, 30000.0], [4.44, 4.0], [0.0, -0.5]
    t, inside = gen.surface_flux(teff, logg, logz, as_tensor=True)
    assert isinstance(t, torch.Tensor) and t.device == gen.device and t.dtype == torch.float32
    assert isinstance(inside, np.ndarray) and inside.all()
    ref, _ = gen.surface_flux(teff, logg, logz)
    np.testing.assert_allclose(t.numpy(), ref, rtol=1e-6)
    chunks = list(gen.stream(teff, logg, logz, batch_size=1, as_tensor=True))
    assert all(isinstance(c[1], torch.Tensor) for c in chunks)
    f32 = next(gen.stream(teff, logg, logz, out_dtype=np.float32))[1]
    assert f32.dtype == np.float32


def test_an_empty_tensor_result_has_the_dtype_of_a_batch(default_generator):
    """surface_flux(as_tensor=True) of no points was float32 always, where the batches of a float64 model (or
    of dtype=float64 in the call) are float64: concatenating or comparing results then mixed dtypes."""
    from smnet_sps.generator import BlackbodyGenerator
    gen64 = load_generator(device="cpu", dtype="float64")
    for gen, kw in ((default_generator, {}), (default_generator, {"dtype": torch.float64}), (gen64, {}),
                    (default_generator, {"dtype": "bfloat16"}), (BlackbodyGenerator(), {})):
        full, _ = gen.surface_flux([5777.0], [4.44], [0.0], as_tensor=True, **kw)
        empty, inside = gen.surface_flux([], [], [], as_tensor=True, **kw)
        assert empty.shape == (0, gen.wavelength.size) and inside.shape == (0,)
        assert (empty.dtype, empty.device) == (full.dtype, full.device)
    assert gen64.surface_flux([], [], [], as_tensor=True)[0].dtype == torch.float64


def _log_flux_fn(gen, library):
    """log F at 25 pixels across the whole range, and one random projection of all pixels (cheap Jacobian)."""
    pix = torch.arange(0, gen.wavelength.size, gen.wavelength.size // 24)
    proj = torch.from_numpy(np.random.default_rng(0).normal(size=gen.wavelength.size) / gen.wavelength.size)

    def fn(teff, logg, logz):
        logf = torch.log(gen.torch_surface_flux(teff, logg, logz, library=library))
        return torch.cat([logf[:, pix], logf @ proj[:, None]], 1)
    return fn


@pytest.mark.parametrize("library, point", [("ck04", (5777.0, 4.44, 0.0)), ("nextgen", (3900.0, 4.6, -0.2)),
                                            (None, (20150.0, 4.03, -0.97))])
def test_torch_surface_flux_gradients_match_finite_differences(default_generator, library, point):
    """float64 gradcheck of log F_lambda w.r.t. (Teff, log g, [M/H]); (20 kK, 4, -1) is CK04 alone.

    Off the grid nodes: where the Wien tail is filled from the nodes (pixel 0 at 20 kK) the spectrum is linear
    between them, with a kink at each node and simplex face, where no derivative exists."""
    gen = default_generator
    args = [torch.tensor([v], dtype=torch.float64, requires_grad=True) for v in point]
    assert torch.autograd.gradcheck(_log_flux_fn(gen, library), args, eps=1e-6, atol=1e-5, rtol=1e-3)
    # and the values are those of the fast path
    f = gen.torch_surface_flux(*[a.detach().float() for a in args], library=library)
    assert f.requires_grad is False and f.dtype == torch.float32
    ref, _ = gen.surface_flux(*point, library=library)
    # plain float32 here (autograd), the f64-assisted reference in the fast path: a few 1e-5 at most
    np.testing.assert_allclose(f.numpy(), ref, rtol=3e-5)


@pytest.mark.parametrize("point", [(26430.0, 3.57, -1.31), (7840.0, 4.94, -0.08), (35140.0, 5.82, -1.36)])
def test_torch_surface_flux_differentiates_the_mixture_weights(default_generator, point):
    """Where the default mixture blends libraries (CK04 / WM-basic 0.18 / 0.82 at 26,430 K; CK04 / NextGen at
    7,840 K; the fallback beyond CK04's log g 5 at 35 kK, outside coverage) the weights carry their
    derivative: taken as constants, d sum ln F / d log g was -270 by autograd against 3,040 by finite
    differences at the first point."""
    gen = default_generator
    mix = gen.mixture(*point)[0]
    assert ((mix > 0) & (mix < 1)).sum() >= 2                 # a blend, where the weights vary
    args = [torch.tensor([v], dtype=torch.float64, requires_grad=True) for v in point]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        assert torch.autograd.gradcheck(_log_flux_fn(gen, None), args, eps=1e-6, atol=1e-5, rtol=1e-3)
    # the values stay those of the fast path (the derivative terms are zero-valued)
    f = gen.torch_surface_flux(*[a.detach() for a in args])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        ref, _ = gen.surface_flux(*point, dtype=torch.float64)
    np.testing.assert_allclose(f.detach().numpy(), ref, rtol=1e-10)


def test_torch_surface_flux_backpropagates_from_float32(default_generator):
    teff = torch.tensor([5000.0, 8000.0], requires_grad=True)
    logg = torch.tensor([4.0, 4.0], requires_grad=True)
    flux = default_generator.torch_surface_flux(teff, logg, torch.tensor(0.0))
    flux[:, 600].sum().backward()
    assert torch.isfinite(teff.grad).all() and (teff.grad != 0).all() and torch.isfinite(logg.grad).all()
    with pytest.raises(ValueError, match="teff"):
        default_generator.torch_surface_flux(torch.tensor([1e9]), logg[:1], torch.tensor(0.0))


@pytest.mark.parametrize("dtype, median_tol", [("bfloat16", 5e-3), ("float16", 1e-3)])
def test_low_precision_is_close_to_float32(default_generator, dtype, median_tol):
    gen = default_generator
    teff, logg, logz = random_points(64, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        ref, _ = gen.surface_flux(teff, logg, logz)
        low, _ = gen.surface_flux(teff, logg, logz, dtype=dtype)
    assert np.isfinite(low).all() and (low > 0).all()
    rel = np.abs(low / ref - 1)
    assert 0 < np.median(rel) < median_tol


def test_coverage_equals_the_documented_rule(default_generator):
    """in_coverage (bounded, two-stage queries) equals the rule written out plainly, per library. The points
    include the 32-42 kK, log g 3.25-3.5 strip where one tree of all libraries gave another answer (WM-basic's
    nodes crowded CK04's out of the 16 nearest: 52 of the 2,000 there), which the random points miss."""
    gen = default_generator
    teff, logg, logz = random_points(3000, seed=7)
    # plus points right on the grid and just off it
    nodes = gen.nodes
    pick = np.random.default_rng(1).choice(nodes["teff"].size, 300, replace=False)
    strip = np.random.default_rng(3)
    teff = np.concatenate([teff, nodes["teff"][pick], nodes["teff"][pick] * 1.03,
                           strip.uniform(32000.0, 42000.0, 2000), [32930.0]])
    logg = np.concatenate([logg, nodes["logg"][pick], nodes["logg"][pick] + 0.3,
                           strip.uniform(3.25, 3.5, 2000), [3.407]])
    logz = np.concatenate([logz, nodes["logz"][pick], nodes["logz"][pick] - 0.2,
                           strip.uniform(-2.5, 0.5, 2000), [-0.239]])
    new = gen.in_coverage(teff, logg, logz)
    np.testing.assert_array_equal(new, old_in_coverage(gen, teff, logg, logz))
    assert 0.1 < new.mean() < 0.9
    assert new[-1]          # the CK04 star of commit 49ad975, which the mixture takes from CK04 alone
    new[:] = False                                     # the remembered answer is not shared with callers
    assert gen.in_coverage(teff, logg, logz).any()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_path_matches_cpu(default_generator):
    gen = load_generator(device="cuda")
    teff, logg, logz = random_points(2000, seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CoverageWarning)
        ref, _ = default_generator.surface_flux(teff, logg, logz)
        f, _ = gen.surface_flux(teff, logg, logz)
        t, _ = gen.surface_flux(teff, logg, logz, as_tensor=True)
    assert t.device.type == "cuda"
    np.testing.assert_allclose(f, ref, rtol=1e-4)
    x = torch.tensor([5777.0], device="cuda", dtype=torch.float64, requires_grad=True)
    flux = gen.torch_surface_flux(x, torch.tensor([4.44]), torch.tensor([0.0]), library="ck04")
    flux.sum().backward()
    assert torch.isfinite(x.grad).all()
