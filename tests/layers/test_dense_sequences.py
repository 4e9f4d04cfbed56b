"""Dense on sequences (N, T, F): the same weights at every step, input_shape, configs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import check_gradients, random_projection, to_float64
from mpneuralnetwork import DTYPE, to_device, to_host
from mpneuralnetwork.activations import ReLU
from mpneuralnetwork.layers import Dense, Flatten
from mpneuralnetwork.losses import MSE
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import Adam
from mpneuralnetwork.serialization import load_model, save_model


def _sequence_dense(no_bias: bool = False, units: int = 3, shape=(4, 5)) -> Dense:
    layer = Dense(units, initialization="xavier", no_bias=no_bias, input_shape=shape)
    if layer.biases is not None:
        layer.biases = to_device(np.random.default_rng(9).standard_normal((1, units)))
    return to_float64(layer)


@pytest.mark.parametrize("no_bias", [False, True])
def test_forward_equals_a_dense_per_step(no_bias):
    layer = _sequence_dense(no_bias)
    x = np.random.default_rng(0).standard_normal((2, 4, 5))
    out = to_host(layer.forward(to_device(x)))
    assert out.shape == (2, 4, 3)
    w = to_host(layer.weights)
    b = 0.0 if no_bias else to_host(layer.biases)
    for t in range(4):
        np.testing.assert_allclose(out[:, t], x[:, t] @ w + b, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("no_bias", [False, True])
def test_gradients_sum_over_batch_and_steps(no_bias):
    layer = _sequence_dense(no_bias)
    x = np.random.default_rng(1).standard_normal((3, 4, 5))
    assert check_gradients(layer, x) == ["input", "weights", *([] if no_bias else ["biases"])]
    g = random_projection((3, 4, 3))
    layer.forward(to_device(x))
    dx = to_host(layer.backward(to_device(g)))
    np.testing.assert_allclose(
        to_host(layer.weights_gradient), np.einsum("ntf,ntu->fu", x, g), rtol=1e-12
    )
    np.testing.assert_allclose(dx, g @ to_host(layer.weights).T, rtol=1e-12)
    if not no_bias:
        np.testing.assert_allclose(to_host(layer.biases_gradient), g.sum(axis=(0, 1))[None])


def test_against_pytorch_linear():
    torch = pytest.importorskip("torch", reason="PyTorch is the reference implementation")
    layer = _sequence_dense()
    x = np.random.default_rng(2).standard_normal((2, 4, 5))
    linear = torch.nn.Linear(5, 3, dtype=torch.float64)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(to_host(layer.weights).T))
        linear.bias.copy_(torch.tensor(to_host(layer.biases)[0]))
    xt = torch.tensor(x, requires_grad=True)
    g = random_projection((2, 4, 3), seed=3)
    yt = linear(xt)
    yt.backward(torch.tensor(g))
    out = to_host(layer.forward(to_device(x)))
    dx = to_host(layer.backward(to_device(g)))
    np.testing.assert_allclose(out, yt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(to_host(layer.weights_gradient), linear.weight.grad.numpy().T)
    np.testing.assert_allclose(to_host(layer.biases_gradient)[0], linear.bias.grad.numpy())


def test_input_shape_argument_and_its_consistency_with_input_size():
    layer = Dense(3, input_shape=(4, 5), initialization="he")
    assert layer.input_shape == (4, 5) and layer.output_shape == (4, 3)
    assert to_host(layer.weights).shape == (5, 3) and to_host(layer.biases).shape == (1, 3)
    assert Dense(3, 5, input_shape=(4, 5)).input_shape == (4, 5)
    assert Dense(3, 5, input_shape=5).input_shape == (5,)
    assert Dense(3, input_shape=[4, 5]).input_shape == (4, 5)  # a list, as JSON gives
    with pytest.raises(ValueError, match=r"input_size=6 and input_shape=\(4, 5\) disagree"):
        Dense(3, 6, input_shape=(4, 5))
    with pytest.raises(ValueError, match=r"Dense: input_shape"):
        Dense(3, input_shape=(4, 0))
    with pytest.raises(ValueError, match=r"input_shape \(2, 4, 5\).*Flatten"):
        Dense(3, input_shape=(2, 4, 5))
    with pytest.raises(ValueError, match=r"input_shape=\(4, 5\) was given.*\(4, 6\)"):
        Dense(3, input_shape=(4, 5)).build((4, 6))
    with pytest.raises(ValueError, match=r"input_size=5 was given.*\(4, 5\)"):
        Dense(3, 5).build((4, 5))
    with pytest.raises(ValueError, match=r"shape \(N, 4, 5\)"):
        Dense(3, input_shape=(4, 5)).forward(to_device(np.zeros((2, 3, 5))))


def test_fan_in_is_the_number_of_features():
    layer = Dense(400, input_shape=(50, 200), initialization="he")
    std = float(np.std(to_host(layer.weights)))
    assert std == pytest.approx(np.sqrt(2.0 / 200), rel=0.02)


def test_unbuilt_dense_builds_on_a_sequence_and_other_batch_sizes_work():
    layer = Dense(2)
    out = layer.forward(to_device(np.ones((3, 4, 5), dtype=np.float32)))
    assert out.shape == (3, 4, 2) and out.dtype == DTYPE
    assert layer.input_shape == (4, 5) and layer.output_shape == (4, 2)
    assert layer.forward(to_device(np.ones((1, 4, 5), dtype=np.float32))).shape == (1, 4, 2)
    d = layer.backward(to_device(np.ones((1, 4, 2), dtype=np.float32)))
    assert d.shape == (1, 4, 5) and d.dtype == DTYPE


def test_configs_flat_unchanged_sequence_with_input_shape():
    flat = Dense(3, 4, "he")
    assert "input_shape" not in flat.get_config()
    seq = Dense(3, input_shape=(6, 4), initialization="he", no_bias=True)
    config = json.loads(json.dumps(seq.get_config()))  # what save_model stores
    assert config == {
        "type": "Dense",
        "output_size": 3,
        "input_size": 4,
        "initialization": "he",
        "no_bias": True,
        "input_shape": [6, 4],
    }
    rebuilt = Dense(**{k: v for k, v in config.items() if k != "type"})
    assert rebuilt.get_config() == seq.get_config()
    assert rebuilt.output_shape == (6, 3)
    # a config written before input_shape existed still loads
    old = {"output_size": 3, "input_size": 4, "initialization": "he", "no_bias": False}
    assert Dense(**old).input_shape == (4,)
    assert seq.array_shapes((6, 4)) == {"weights": (4, 3)}
    assert Dense(3).array_shapes((6, 4)) == {"weights": (4, 3), "biases": (1, 3)}


def test_a_sequence_model_trains_and_round_trips(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((64, 5, 3)).astype(np.float32)
    y = np.tanh(x.sum(axis=(1, 2)))[:, None]
    model = Model(
        [Dense(8, input_shape=(5, 3)), ReLU(), Dense(2), Flatten(), Dense(1)],
        MSE(),
        Adam(learning_rate=0.01),
    )
    assert model.layers[0].initialization == "auto"
    assert model.layers[2].output_shape == (5, 2)
    before = model.evaluate(x, y)[1]["loss"]
    model.train(x, y, epochs=5, batch_size=16, auto_evaluation=0, verbose=0)
    assert model.evaluate(x, y)[1]["loss"] < before
    loaded = load_model(save_model(model, tmp_path / "steps"))
    for mine, theirs in zip(model.layers, loaded.layers, strict=True):
        assert mine.get_config() == theirs.get_config()
        for name, (value, _) in mine.params.items():
            np.testing.assert_array_equal(to_host(theirs.params[name][0]), to_host(value))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
