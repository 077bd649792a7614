"""The isochrone prior (smnet_sps.stellar_prior) called as a fit calls it: tensors beside plain numbers."""
import numpy as np
import pytest
import torch

from smnet_sps.stellar_prior import IsochronePrior


@pytest.fixture(scope="module")
def prior():
    return IsochronePrior("parsec")


def test_log_prob_takes_a_tensor_beside_plain_numbers(prior):
    """A tensor Teff with a fixed [M/H] as a float stopped in AttributeError ('float' object has no
    attribute 'double'); a tensor log g that needs its gradient beside a float Teff in numpy's RuntimeError.
    Any tensor argument now makes the others tensors on its device: the same values as all-tensor input, a
    float64 tensor back, and the gradients."""
    teff, logg, logz = [5772.0, 4800.0], [4.44, 2.5], [0.0, 0.0]
    expected = prior.log_prob(np.array(teff), np.array(logg), np.array(logz))
    t = torch.tensor(teff, dtype=torch.float64, requires_grad=True)
    out = prior.log_prob(t, torch.tensor(logg, dtype=torch.float64), 0.0)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-12)
    out.sum().backward()
    assert torch.all(torch.isfinite(t.grad)) and torch.any(t.grad != 0)
    g = torch.tensor([4.44], dtype=torch.float64, requires_grad=True)
    out = prior.log_prob(5772.0, g, np.array([0.0]))
    assert isinstance(out, torch.Tensor)
    assert float(out) == pytest.approx(float(expected[0]), rel=1e-12)
    out.sum().backward()
    assert torch.isfinite(g.grad).all()
