"""LayerNormalization: per-row statistics, gradients, PyTorch's LayerNorm, configs."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import check_gradients, random_projection, to_float64
from mpneuralnetwork import DTYPE, to_device, to_host
from mpneuralnetwork.layers import LayerNormalization


def _layer_with_random_affine(shape: tuple[int, ...], seed: int = 0) -> LayerNormalization:
    layer = to_float64(LayerNormalization())
    layer.build(shape)
    to_float64(layer)
    rng = np.random.default_rng(seed)
    features = shape[-1]
    layer.gamma = to_device(rng.uniform(0.5, 1.5, features))
    layer.beta = to_device(rng.standard_normal(features))
    return layer


def test_hand_worked_row():
    layer = LayerNormalization(epsilon=1e-5)
    x = np.array([[1.0, 2.0, 3.0, 6.0]])  # mean 3, biased variance (4 + 1 + 0 + 9)/4 = 3.5
    out = to_host(layer.forward(to_device(x)))
    np.testing.assert_allclose(out, (x - 3.0) / np.sqrt(3.5 + 1e-5), rtol=1e-6)
    assert layer.input_shape == (4,)
    assert to_host(layer.gamma).tolist() == [1.0] * 4 and to_host(layer.beta).tolist() == [0.0] * 4
    assert to_host(layer.gamma).shape == (4,) and layer.gamma.dtype == DTYPE


@pytest.mark.parametrize("shape", [(3, 5), (2, 4, 6), (2, 1, 3), (1, 3, 2, 4)])
def test_gradients(shape):
    layer = _layer_with_random_affine(shape[1:])
    x = np.random.default_rng(1).standard_normal(shape) * 3.0 + 1.0
    assert check_gradients(layer, x) == ["input", "gamma", "beta"]


@pytest.mark.parametrize("shape", [(4, 7), (3, 5, 8)])
def test_against_pytorch_layer_norm(shape):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference implementation")
    layer = _layer_with_random_affine(shape[1:], seed=2)
    layer.epsilon = 1e-3
    x = np.random.default_rng(3).standard_normal(shape)
    g = random_projection(shape, seed=4)
    norm = torch.nn.LayerNorm(shape[-1], eps=1e-3, dtype=torch.float64)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor(to_host(layer.gamma)))
        norm.bias.copy_(torch.tensor(to_host(layer.beta)))
    xt = torch.tensor(x, requires_grad=True)
    yt = norm(xt)
    yt.backward(torch.tensor(g))
    out = to_host(layer.forward(to_device(x)))
    dx = to_host(layer.backward(to_device(g)))
    np.testing.assert_allclose(out, yt.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(to_host(layer.gamma_gradient), norm.weight.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(to_host(layer.beta_gradient), norm.bias.grad.numpy(), rtol=1e-12)


def test_inference_equals_training_and_float32_stays_float32():
    x = np.random.default_rng(5).standard_normal((3, 4, 6)).astype(np.float32)
    layer = LayerNormalization()
    train = to_host(layer.forward(to_device(x), training=True))
    infer = to_host(layer.forward(to_device(x), training=False))
    np.testing.assert_array_equal(train, infer)  # no running statistics
    assert train.dtype == np.float32
    np.testing.assert_allclose(train.mean(axis=-1), 0.0, atol=1e-6)
    np.testing.assert_allclose(train.var(axis=-1), 1.0, rtol=1e-3)  # var / (var + ε)
    assert layer.backward(to_device(np.ones_like(x))).dtype == np.float32


def test_constant_rows_stay_finite():
    layer = LayerNormalization()
    x = np.full((2, 5), 7.0, dtype=np.float32)
    out = to_host(layer.forward(to_device(x)))
    dx = to_host(layer.backward(to_device(np.arange(10, dtype=np.float32).reshape(2, 5))))
    assert np.isfinite(out).all() and np.isfinite(dx).all()
    np.testing.assert_array_equal(out, 0.0)


def test_config_array_shapes_and_errors():
    layer = LayerNormalization(1e-3)
    assert layer.get_config() == {"type": "LayerNormalization", "epsilon": 1e-3}
    assert LayerNormalization().epsilon == 1e-5
    assert layer.array_shapes((7, 12)) == {"gamma": (12,), "beta": (12,)}
    layer.build((7, 12))
    assert {n: tuple(v.shape) for n, (v, _) in layer.params.items()} == layer.array_shapes((7, 12))
    for bad in (0.0, -1.0, float("nan"), "1e-5"):
        with pytest.raises(ValueError, match="LayerNormalization: epsilon"):
            LayerNormalization(bad)
    with pytest.raises(ValueError, match=r"shape \(N, 7, 12\)"):
        layer.forward(to_device(np.zeros((2, 7, 11))))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        LayerNormalization().forward(to_device(np.zeros(3)))
