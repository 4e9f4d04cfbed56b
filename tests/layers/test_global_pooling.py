"""GlobalAveragePooling1D and GlobalAveragePooling2D: means, spread gradients, shapes, models."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import check_gradients
from mpneuralnetwork import DTYPE, to_device, to_host
from mpneuralnetwork.activations import ReLU
from mpneuralnetwork.layers import (
    Convolutional,
    Dense,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
)
from mpneuralnetwork.losses import MSE
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import SGD
from mpneuralnetwork.serialization import load_model, save_model


def test_1d_hand_worked():
    layer = GlobalAveragePooling1D()
    x = np.array([[[1.0, 10.0], [2.0, 20.0], [6.0, 60.0]]])  # (1, T=3, F=2)
    np.testing.assert_array_equal(to_host(layer.forward(to_device(x))), [[3.0, 30.0]])
    assert layer.input_shape == (3, 2) and layer.output_shape == (2,)
    d = to_host(layer.backward(to_device(np.array([[3.0, -6.0]]))))
    np.testing.assert_array_equal(d, [[[1.0, -2.0]] * 3])


def test_2d_hand_worked():
    layer = GlobalAveragePooling2D()
    x = np.arange(2 * 3 * 2 * 2, dtype=np.float64).reshape(2, 3, 2, 2)
    out = to_host(layer.forward(to_device(x)))
    np.testing.assert_array_equal(out, x.reshape(2, 3, 4).sum(axis=2) / 4)
    assert layer.input_shape == (3, 2, 2) and layer.output_shape == (3,)
    g = np.arange(6, dtype=np.float64).reshape(2, 3) * 4
    d = to_host(layer.backward(to_device(g)))
    np.testing.assert_array_equal(d, np.broadcast_to((g / 4)[:, :, None, None], x.shape))


@pytest.mark.parametrize(
    ("make", "shape"),
    [
        (GlobalAveragePooling1D, (3, 4, 2)),
        (GlobalAveragePooling1D, (2, 1, 3)),
        (GlobalAveragePooling2D, (2, 3, 4, 5)),
        (GlobalAveragePooling2D, (1, 2, 1, 1)),
    ],
)
def test_gradients(make, shape):
    x = np.random.default_rng(1).standard_normal(shape)
    assert check_gradients(make(), x) == ["input"]


def test_float32_stays_float32():
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 4)).astype(np.float32)
    layer = GlobalAveragePooling2D()
    out = layer.forward(to_device(x))
    assert out.dtype == DTYPE
    assert layer.backward(to_device(np.ones((2, 3), dtype=np.float32))).dtype == DTYPE


def test_2d_backward_keeps_a_channel_major_input_order():
    # A convolution's output is a (N, C, H, W) view of (C, N, H, W) memory.
    x = np.random.default_rng(6).standard_normal((3, 2, 4, 5)).astype(np.float32)
    x_dev = to_device(x).transpose(1, 0, 2, 3)
    layer = GlobalAveragePooling2D()
    out = to_host(layer.forward(x_dev))
    np.testing.assert_allclose(out, x.transpose(1, 0, 2, 3).mean(axis=(2, 3)), rtol=1e-6)
    g = np.arange(6, dtype=np.float32).reshape(2, 3)
    d_input = layer.backward(to_device(g))
    assert d_input.strides == x_dev.strides
    np.testing.assert_array_equal(
        to_host(d_input), np.broadcast_to((g / 20)[:, :, None, None], (2, 3, 4, 5))
    )


@pytest.mark.parametrize(
    ("layer", "shape", "message"),
    [
        (GlobalAveragePooling1D(), (3,), r"GlobalAveragePooling1D: input must be sequences"),
        (GlobalAveragePooling1D(), (3, 4, 5), r"2 dimensions; got \(3, 4, 5\)"),
        (GlobalAveragePooling2D(), (3, 4), r"GlobalAveragePooling2D: input must be images"),
    ],
)
def test_build_refuses_other_layouts(layer, shape, message):
    with pytest.raises(ValueError, match=message):
        layer.build(shape)


def test_forward_checks_the_input():
    layer = GlobalAveragePooling1D()
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        layer.forward(to_device(np.zeros((2, 3))))
    layer.build((4, 2))
    with pytest.raises(ValueError, match=r"shape \(N, 4, 2\)"):
        layer.forward(to_device(np.zeros((2, 3, 2))))
    with pytest.raises(ValueError, match="call forward before backward"):
        GlobalAveragePooling2D().backward(to_device(np.zeros((1, 2))))


def test_config_and_array_shapes():
    for cls in (GlobalAveragePooling1D, GlobalAveragePooling2D):
        layer = cls()
        assert layer.get_config() == {"type": cls.__name__}
        assert layer.params == {} and layer.state == {}
        assert layer.array_shapes((2, 3, 4)) == {}


def test_convolution_then_global_pooling_trains_and_round_trips(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, 2, 6, 6)).astype(np.float32)
    y = x.mean(axis=(1, 2, 3)).reshape(-1, 1) * 3
    model = Model(
        [
            Convolutional(4, 3, (2, 6, 6)),
            ReLU(),
            GlobalAveragePooling2D(),
            Dense(1),
        ],
        MSE(),
        SGD(learning_rate=0.05),
    )
    assert model.layers[2].output_shape == (4,)
    before = model.evaluate(x, y)[1]["loss"]
    model.train(x, y, epochs=5, batch_size=8, auto_evaluation=0, verbose=0)
    assert model.evaluate(x, y)[1]["loss"] < before
    loaded = load_model(save_model(model, tmp_path / "gap"))
    assert type(loaded.layers[2]) is GlobalAveragePooling2D
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
