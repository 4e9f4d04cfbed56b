"""Reshape and UpSampling2D: values, gradients, memory order, errors, configuration."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import check_gradients
from mpneuralnetwork import set_seed, to_device, to_host
from mpneuralnetwork.activations import ReLU
from mpneuralnetwork.layers import Convolutional, Dense, Flatten, Reshape, UpSampling2D
from mpneuralnetwork.losses import MSE
from mpneuralnetwork.model import Model
from mpneuralnetwork.serialization import load_model, save_model

torch = pytest.importorskip("torch", reason="the comparisons against PyTorch need torch")


# ================================================================================ Reshape
@pytest.mark.parametrize(
    ("input_shape", "target", "resolved"),
    [
        ((12,), (3, 4), (3, 4)),
        ((3, 4), (-1,), (12,)),
        ((2, 3, 4), (4, -1, 2), (4, 3, 2)),
        ((2, 3, 4), [6, 4], (6, 4)),  # a list, as read from JSON
        ((6,), (1, 6, 1), (1, 6, 1)),
    ],
)
def test_reshape_resolves_its_shape_and_matches_torch(input_shape, target, resolved):
    layer = Reshape(target)
    layer.build(input_shape)
    assert layer.output_shape == resolved and layer.target_shape == tuple(target)
    x = np.random.default_rng(0).standard_normal((3, *input_shape))
    out = to_host(layer.forward(to_device(x)))
    expected = torch.reshape(torch.from_numpy(x), (3, *target)).numpy()
    np.testing.assert_array_equal(out, expected)
    g = np.random.default_rng(1).standard_normal(out.shape)
    np.testing.assert_array_equal(to_host(layer.backward(to_device(g))), g.reshape(x.shape))


def test_reshape_hand_worked():
    layer = Reshape((2, -1))
    out = to_host(layer.forward(to_device(np.array([[1.0, 2.0, 3.0, 4.0]]))))
    np.testing.assert_array_equal(out, [[[1.0, 2.0], [3.0, 4.0]]])


def test_reshape_gradients():
    layer = Reshape((3, -1, 2), input_shape=(2, 3, 4))
    x = np.random.default_rng(2).standard_normal((2, 2, 3, 4))
    assert check_gradients(layer, x) == ["input"]


def test_reshape_alone_resolves_each_batch():
    layer = Reshape((-1, 2))
    assert layer.forward(to_device(np.zeros((2, 6)))).shape == (2, 3, 2)
    assert layer.forward(to_device(np.zeros((1, 2, 5)))).shape == (1, 5, 2)
    assert layer.input_shape is None  # not built by a forward pass


def test_reshape_backward_keeps_a_channel_major_input_order():
    x = to_device(np.random.default_rng(3).standard_normal((2, 3, 4, 5))).transpose(1, 0, 2, 3)
    layer = Reshape((8, 5))
    layer.forward(x)
    g = np.arange(3 * 40, dtype=np.float64).reshape(3, 8, 5)
    d_input = layer.backward(to_device(g))
    np.testing.assert_array_equal(to_host(d_input), g.reshape(3, 2, 4, 5))
    assert d_input.strides == x.strides


@pytest.mark.parametrize(
    ("target", "input_shape", "message"),
    [
        ((5, -1), (3, 4), r"Reshape: cannot reshape \(3, 4\) \(12 values\) to \(5, -1\)"),
        ((5, 2), (3, 4), r"Reshape: cannot reshape \(3, 4\) \(12 values\) to \(5, 2\)"),
        ((24, -1), (3, 4), r"cannot reshape \(3, 4\) \(12 values\) to \(24, -1\)"),
    ],
)
def test_reshape_size_mismatch(target, input_shape, message):
    with pytest.raises(ValueError, match=message):
        Reshape(target, input_shape=input_shape)
    with pytest.raises(ValueError, match=message):  # used alone: at forward
        Reshape(target).forward(to_device(np.zeros((2, *input_shape))))
    with pytest.raises(ValueError, match=message):  # in a model: at Model(...)
        Model([Dense(int(np.prod(input_shape)), 3), Reshape(input_shape), Reshape(target)], MSE())


@pytest.mark.parametrize("target", [(), (0, 3), (-1, -1), (2.0, 3), "23", 6, (-2, 3), None])
def test_reshape_bad_target(target):
    with pytest.raises(ValueError, match=r"Reshape: target_shape must be"):
        Reshape(target)


def test_reshape_refuses_another_input_shape_than_declared():
    with pytest.raises(ValueError, match=r"Reshape: input_shape=\(12,\) was given, but"):
        Model([Dense(10, 4), Reshape((4, 3), input_shape=(12,))], MSE())


def test_reshape_checks_its_input_shape():
    layer = Reshape((4, 3), input_shape=(12,))
    with pytest.raises(ValueError, match=r"Reshape.forward: input_batch must have shape"):
        layer.forward(to_device(np.zeros((2, 3, 4))))


# =========================================================================== UpSampling2D
def test_upsampling_hand_worked():
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])  # (1, 1, 2, 2)
    layer = UpSampling2D(2)
    out = to_host(layer.forward(to_device(x)))
    np.testing.assert_array_equal(
        out[0, 0],
        [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]],
    )
    g = np.arange(16.0).reshape(1, 1, 4, 4)
    # each input pixel gets the sum of its 2×2 block: 0+1+4+5, 2+3+6+7, ...
    np.testing.assert_array_equal(to_host(layer.backward(to_device(g)))[0, 0], [[10, 18], [42, 50]])
    assert layer.input_shape == (1, 2, 2) and layer.output_shape == (1, 4, 4)


@pytest.mark.parametrize("size", [1, 2, 3, (2, 3), (1, 2), [3, 1]])
def test_upsampling_matches_torch(size):
    x = np.random.default_rng(4).standard_normal((2, 3, 4, 5))
    layer = UpSampling2D(size)
    out = to_host(layer.forward(to_device(x)))
    factor = size if isinstance(size, int) else tuple(size)
    xt = torch.from_numpy(x).requires_grad_(True)
    expected = torch.nn.Upsample(scale_factor=factor, mode="nearest")(xt)
    np.testing.assert_array_equal(out, expected.detach().numpy())
    g = np.random.default_rng(5).standard_normal(out.shape)
    expected.backward(torch.from_numpy(g))
    np.testing.assert_allclose(
        to_host(layer.backward(to_device(g))), xt.grad.numpy(), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("size", [2, (3, 2)])
def test_upsampling_gradients(size):
    layer = UpSampling2D(size)
    layer.build((2, 3, 2))
    x = np.random.default_rng(6).standard_normal((2, 2, 3, 2))
    assert check_gradients(layer, x) == ["input"]


@pytest.mark.parametrize("gradient_major", [False, True])
def test_upsampling_keeps_a_channel_major_input_order(gradient_major):
    # A convolution's output is a (N, C, H, W) view of (C, N, H, W) memory: the output
    # and the input gradient keep that order, whatever the incoming gradient's.
    x_host = np.random.default_rng(7).standard_normal((2, 3, 4, 5))
    x = to_device(np.ascontiguousarray(x_host.transpose(1, 0, 2, 3))).transpose(1, 0, 2, 3)
    layer = UpSampling2D(2)
    out = layer.forward(x)
    assert out.strides[1] > out.strides[0]
    np.testing.assert_array_equal(to_host(out), x_host.repeat(2, axis=2).repeat(2, axis=3))
    g_host = np.random.default_rng(8).standard_normal((2, 3, 8, 10))
    g = to_device(g_host)
    if gradient_major:
        g = to_device(np.ascontiguousarray(g_host.transpose(1, 0, 2, 3))).transpose(1, 0, 2, 3)
    d_input = layer.backward(g)
    assert d_input.strides == x.strides
    expected = g_host.reshape(2, 3, 4, 2, 5, 2).sum(axis=(3, 5))
    np.testing.assert_allclose(to_host(d_input), expected, rtol=1e-12)


@pytest.mark.parametrize("size", [0, -1, 2.0, (2,), (2, 0), (1, 2, 3), "2", None, True])
def test_upsampling_bad_size(size):
    with pytest.raises(ValueError, match=r"UpSampling2D: size must be"):
        UpSampling2D(size)


def test_upsampling_needs_images():
    with pytest.raises(ValueError, match=r"UpSampling2D: input_shape must be \(C, H, W\)"):
        UpSampling2D().build((3, 4))
    with pytest.raises(ValueError, match=r"at least 4 dimensions"):
        UpSampling2D().forward(to_device(np.zeros((2, 3, 4))))


def test_configs_rebuild_the_layers():
    for layer in (Reshape((2, -1)), Reshape((3, 4), input_shape=12), UpSampling2D(3)):
        config = layer.get_config()
        assert type(layer)(**{k: v for k, v in config.items() if k != "type"}).get_config() == (
            config
        )
    assert UpSampling2D((2, 3)).get_config() == {"type": "UpSampling2D", "size": (2, 3)}
    assert Reshape([2, -1]).get_config() == {"type": "Reshape", "target_shape": (2, -1)}
    # JSON turns the tuples into lists: the constructors take them back
    for layer in (Reshape((2, -1)), UpSampling2D((2, 3))):
        config = json.loads(json.dumps(layer.get_config()))
        rebuilt = type(layer)(**{k: v for k, v in config.items() if k != "type"})
        assert rebuilt.get_config() == layer.get_config()


# ================================================================================ in a model
def _model() -> Model:
    return Model(
        [
            Dense(2 * 3 * 3, 5),
            Reshape((2, 3, -1)),
            Convolutional(2, 2, padding=1),
            ReLU(),
            UpSampling2D((2, 1)),
            Flatten(),
            Dense(3),
        ],
        MSE(),
    )


def test_model_round_trip_and_summary(tmp_path, capsys):
    set_seed(0)
    model = _model()
    assert model.layers[1].output_shape == (2, 3, 3)
    assert model.layers[4].output_shape == (2, 8, 4)
    x = np.random.default_rng(9).standard_normal((16, 5))
    y = np.random.default_rng(10).standard_normal((16, 3))
    model.train(x, y, epochs=2, batch_size=4, auto_evaluation=0, verbose=0)
    path = tmp_path / "model.npz"
    save_model(model, path)
    loaded = load_model(path)
    assert [layer.get_config() for layer in loaded.layers] == [
        layer.get_config() for layer in model.layers
    ]
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    model.summary()
    text = capsys.readouterr().out
    assert "(2, 3, 3)" in text and "(2, 8, 4)" in text and "-1" not in text


def test_model_with_reshape_first():
    model = Model([Reshape((1, 4, 4), input_shape=(16,)), UpSampling2D(), Flatten()], MSE())
    assert model.input_shape == (16,) and model.output_shape == (64,)
    x = np.arange(32.0).reshape(2, 16)
    expected = x.reshape(2, 1, 4, 4).repeat(2, axis=2).repeat(2, axis=3).reshape(2, 64)
    np.testing.assert_allclose(model.predict(x), expected)
