"""Architectures and the pure functions of smnet_sps.model."""
import numpy as np
import pytest
import torch

from smnet_sps.model import (SMNet, SpectrumMLP, build_model, fit_log1p01, infer_smnet_shape,
                             load_smnet_state_dict, log1p01_forward, log1p01_inverse, mixture_weights)

# The released layout (CHECKPOINT_FORMAT.md) for B, L: key -> weight shape.
def released_shapes(B, L):
    h1, h2 = 4 * B, 16 * B
    return {"layer1.fc1.weight": (h1, 3), "layer1.fc2.weight": (h1, h1), "layer2.fc1.weight": (h2, h1),
            "layer2.fc2.weight": (h2, h2), "input_proj_1.weight": (h1, 3), "input_proj_2.weight": (h2, 3),
            "input_proj_3.weight": (L, 3), "layer3.weight": (L, h2), "refine.cond_proj.weight": (L, 3),
            "refine.branch3_conv.weight": (16, 5, 7), "refine.branch5_conv.weight": (16, 5, 15),
            "refine.branch7_conv.weight": (16, 5, 23), "refine.fuse_conv1.weight": (16, 48, 3),
            "refine.fuse_conv2.weight": (1, 16, 3), "baseline": (L,)}


def test_smnet_state_dict_matches_released_layout():
    m = SMNet(B=3, L=40)
    sd = m.state_dict()
    for k, shape in released_shapes(3, 40).items():
        assert tuple(sd[k].shape) == shape, k
    assert not any(k.endswith("pos_encoding") for k in sd)
    # released parameter count formula at B=1024, L=11655 (~543.5 M) from the same code path
    n = sum(int(np.prod(s)) for s in released_shapes(1024, 11655).values())
    assert 5.3e8 < n < 5.5e8


def test_smnet_forward_shape_positive_and_starts_at_baseline():
    torch.manual_seed(0)
    m = SMNet(B=2, L=64).eval()
    x = torch.rand(5, 3)
    y = m(x)
    assert y.shape == (5, 64) and (y > 0).all()
    # zero-initialised heads: every input gives the baseline softplus
    expected = torch.nn.functional.softplus(torch.zeros(64), beta=2) + 1e-8
    assert torch.allclose(y, expected.expand(5, -1), atol=1e-6)


def test_load_state_dict_plain_wrapped_and_pos_encoding():
    torch.manual_seed(1)
    src = SMNet(B=2, L=32)
    for p in src.parameters():
        torch.nn.init.normal_(p, std=0.1)
    sd = src.state_dict()
    sd_pos = dict(sd, **{"refine.pos_encoding": torch.zeros(3, 32)})
    x = torch.rand(4, 3)
    for obj in (sd, {"state_dict": sd_pos}):
        m = load_smnet_state_dict(obj).eval()
        assert (m.B, m.L) == (2, 32)
        assert torch.allclose(m(x), src.eval()(x))
    assert infer_smnet_shape(sd) == (2, 32)
    with pytest.raises(ValueError, match="missing key"):
        infer_smnet_shape({"foo": torch.zeros(2)})
    with pytest.raises(ValueError, match="state_dict"):
        load_smnet_state_dict([1, 2, 3])
    # released key names but a layer of another shape (corrupt, or another variant): a ValueError naming it,
    # not torch's RuntimeError from load_state_dict
    bad = dict(sd, **{"layer2.fc2.weight": torch.zeros(5, 5)})
    with pytest.raises(ValueError, match="size mismatch for layer2.fc2.weight"):
        load_smnet_state_dict(bad)


def test_log1p01_roundtrip_and_range():
    x = np.array([0.0, 1e-17, 1e-10, 1e-3, 2.5e-3])
    tau, xmax = 3.765e-17, 2.568e-3
    y = log1p01_forward(x, tau, xmax)
    assert y[0] == 0 and abs(log1p01_forward(xmax, tau, xmax) - 1) < 1e-12
    np.testing.assert_allclose(log1p01_inverse(y, tau, xmax), x, rtol=1e-9, atol=1e-30)
    yt = torch.tensor(y, dtype=torch.float64)
    np.testing.assert_allclose(log1p01_inverse(yt, tau, xmax).numpy(), x, rtol=1e-9, atol=1e-30)
    tau2, xmax2 = fit_log1p01(np.array([0.0, 1.0, 2.0, 3.0]))
    assert xmax2 == 3.0 and 1.0 <= tau2 <= 1.1
    with pytest.raises(ValueError, match="positive"):
        fit_log1p01(np.zeros(3))


BOXES = [((3.5, 4.0), (0.0, 5.0), (-2.5, 0.5)), ((3.9, 4.7), (3.5, 4.5), (-2.0, 0.5))]


def test_mixture_is_partition_of_unity_and_continuous():
    lt = np.linspace(3.4, 4.8, 2801)
    w = mixture_weights(lt, 4.0, 0.0, BOXES)
    np.testing.assert_allclose(w.sum(1), 1.0)
    assert w[lt < 3.88, 1].max() == 0 and w[(lt > 4.02) & (lt < 4.7), 0].max() == 0
    # continuous: no jumps larger than the linear taper slope allows over one step
    step = lt[1] - lt[0]
    assert np.abs(np.diff(w, axis=0)).max() <= step / 0.02 + 1e-9
    # outside every box -> nearest library, one-hot
    far = mixture_weights([5.5, 3.0], [4.0, 4.0], [0.0, 0.0], BOXES)
    np.testing.assert_array_equal(far, [[0, 1], [1, 0]])


def test_spectrum_mlp_and_build_model():
    m = SpectrumMLP(n_wave=10, n_libraries=3, width=8, depth=2)
    m.out_mean.fill_(-4.0)
    m.out_std.fill_(2.0)
    x, mix = torch.rand(6, 3), torch.eye(3)[[0, 1, 2, 0, 1, 2]]
    z = m(x, mix)
    assert z.shape == (6, 10)
    assert torch.allclose(m.log_ratio(x, mix), -4.0 + 2.0 * z)
    with pytest.raises(ValueError, match="allowed"):
        build_model("resnet")
    with pytest.raises(ValueError, match=">= 1"):
        SpectrumMLP(n_wave=0)
