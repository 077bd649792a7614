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
