"""Shared test fixtures. Fixture data cut from ../shared lives in tests/fixtures (see its README)."""
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir():
    return FIXTURES


@pytest.fixture(scope="session")
def blackbody():
    from smnet_sps.generator import BlackbodyGenerator
    return BlackbodyGenerator()


@pytest.fixture(scope="session")
def default_generator():
    """The shipped default model on CPU (skips only while the model has not been trained yet)."""
    from smnet_sps.neural import load_generator, default_model_path
    if not default_model_path().exists():
        pytest.skip("default model not shipped yet")
    return load_generator(device="cpu")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def released_smooth(fixtures_dir, tmp_path_factory):
    """Random weights in the released SM-Net layout (B=2, L=64) with std 0.05 -- spectra over ~2.5 decades, as
    a trained network's are (std 0.2 spans 27 decades, where a float32 fit's gradient overflows) -- beside a
    64-pixel meta (3,000 A - 10 um) cut from the real one, whose box holds [M/H] -4 .. 1.
    Returns (weights path, meta path)."""
    import torch

    from smnet_sps.model import SMNet
    d = tmp_path_factory.mktemp("released_smooth")
    with np.load(FIXTURES / "smnet_official/phoenix_husser_c3k_tmap_OB_all.meta.npz") as m:
        meta = {k: m[k] for k in m.files}
    meta["wave"] = meta["wave"][np.linspace(0, meta["wave"].size - 1, 64).round().astype(int)]
    np.savez(d / "small.meta.npz", **meta)
    torch.manual_seed(3)
    model = SMNet(B=2, L=64)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    torch.save(model.state_dict(), d / "smooth.pt")
    return d / "smooth.pt", d / "small.meta.npz"
