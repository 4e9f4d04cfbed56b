"""SimpleRNN, LSTM and GRU: equations, gradients through time, initialization, configs, errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from helpers import check_gradients, numerical_gradient, random_projection, to_float64
from mpneuralnetwork import DTYPE, set_seed, to_device, to_host
from mpneuralnetwork.layers import GRU, LSTM, Dense, SimpleRNN
from mpneuralnetwork.losses import MSE, CategoricalCrossEntropy
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import SGD, Adam, RMSprop
from mpneuralnetwork.serialization import load_model, save_model

LAYERS = [SimpleRNN, LSTM, GRU]
GATES = {SimpleRNN: 1, LSTM: 4, GRU: 3}


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def reference(layer: Any, x: np.ndarray) -> np.ndarray:
    """PyTorch's equations, step by step in plain NumPy, from the layer's parameters.

    Returns every hidden state, (N, T, units).
    """
    w = to_host(layer.input_weights)
    u = to_host(layer.recurrent_weights)
    b = to_host(layer.biases)
    units = layer.units
    n, steps, _ = x.shape
    h = np.zeros((n, units))
    c = np.zeros((n, units))
    states = []
    for t in range(steps):
        if isinstance(layer, GRU):
            cb = to_host(layer.recurrent_biases)
            gx = x[:, t] @ w + b
            gh = h @ u + cb
            r = sigmoid(gx[:, :units] + gh[:, :units])
            z = sigmoid(gx[:, units : 2 * units] + gh[:, units : 2 * units])
            new = np.tanh(gx[:, 2 * units :] + r * gh[:, 2 * units :])
            h = (1 - z) * new + z * h
        else:
            a = x[:, t] @ w + h @ u + b
            if isinstance(layer, LSTM):
                i, f, g, o = (a[:, k * units : (k + 1) * units] for k in range(4))
                c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
                h = sigmoid(o) * np.tanh(c)
            else:
                h = np.tanh(a)
        states.append(h)
    return np.stack(states, axis=1)


def randomize(layer: Any, seed: int = 0, scale: float = 0.6) -> Any:
    """Float64 parameters with random values (biases included), so every term matters."""
    to_float64(layer)
    rng = np.random.default_rng(seed)
    for _, (value, _) in layer.params.items():
        value[...] = to_device(rng.standard_normal(tuple(value.shape)) * scale)
    return layer


# ============================================================================ equations
@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("return_sequences", [False, True])
def test_forward_matches_pytorch_equations(cls, return_sequences):
    layer = randomize(cls(4, input_shape=(6, 3), return_sequences=return_sequences))
    x = np.random.default_rng(1).standard_normal((5, 6, 3)) * 2
    out = to_host(layer.forward(to_device(x)))
    expected = reference(layer, x)
    if not return_sequences:
        expected = expected[:, -1]
    assert out.shape == expected.shape == (5, *layer.output_shape)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", LAYERS)
def test_forward_matches_torch(cls):
    """The same weights in torch.nn.RNN / LSTM / GRU give the same states and gradients."""
    torch = pytest.importorskip("torch", reason="torch is optional (benchmark extra)")
    layer = randomize(cls(3, input_shape=(5, 2), return_sequences=True), seed=3)
    module = {SimpleRNN: torch.nn.RNN, LSTM: torch.nn.LSTM, GRU: torch.nn.GRU}[cls](
        2, 3, batch_first=True
    ).double()
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(to_host(layer.input_weights).T.copy()))
        module.weight_hh_l0.copy_(torch.from_numpy(to_host(layer.recurrent_weights).T.copy()))
        module.bias_ih_l0.copy_(torch.from_numpy(to_host(layer.biases)))
        hh = to_host(layer.recurrent_biases) if cls is GRU else np.zeros(GATES[cls] * 3)
        module.bias_hh_l0.copy_(torch.from_numpy(hh))
    x = np.random.default_rng(4).standard_normal((2, 5, 2))
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    expected, _ = module(tx)
    r = random_projection((2, 5, 3))
    (expected * torch.from_numpy(r)).sum().backward()
    out = to_host(layer.forward(to_device(x)))
    dx = to_host(layer.backward(to_device(r)))
    np.testing.assert_allclose(out, expected.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        to_host(layer.recurrent_weights_gradient), module.weight_hh_l0.grad.numpy().T, atol=1e-12
    )


# ============================================================================ gradients
@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("steps", [1, 7, 17])  # 17: several chunks of the backward pass
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize(("n", "units"), [(2, 3), (1, 1)])
def test_gradients_through_time(cls, steps, return_sequences, n, units):
    layer = randomize(cls(units, input_shape=(steps, 4), return_sequences=return_sequences))
    x = np.random.default_rng(steps + units).standard_normal((n, steps, 4))
    names = check_gradients(layer, x)
    expected = ["input", "input_weights", "recurrent_weights", "biases"]
    assert names == expected + (["recurrent_biases"] if cls is GRU else [])
    for _, (value, gradient) in layer.params.items():
        assert gradient.dtype == value.dtype == np.float64


def test_lstm_gradients_with_its_initial_forget_bias():
    layer = to_float64(LSTM(3, input_shape=(7, 2)))
    biases = to_host(layer.biases)
    np.testing.assert_array_equal(biases, np.repeat([0.0, 1.0, 0.0, 0.0], 3))
    x = np.random.default_rng(5).standard_normal((3, 7, 2))
    assert check_gradients(layer, x)[0] == "input"


@pytest.mark.parametrize("first", LAYERS)
@pytest.mark.parametrize("second", LAYERS)
def test_stacked_layers_gradients(first, second):
    """A recurrent layer returning sequences under another one: every gradient of both."""
    bottom = randomize(first(3, input_shape=(5, 2), return_sequences=True), seed=1)
    top = randomize(second(2, input_shape=(5, 3)), seed=2)
    x_dev = to_device(np.random.default_rng(6).standard_normal((2, 5, 2)))
    r = random_projection((2, 2))

    def loss() -> float:
        return float(np.sum(to_host(top.forward(bottom.forward(x_dev))) * r))

    loss()
    dx = to_host(bottom.backward(top.backward(to_device(r)))).copy()
    analytic = {
        (k, name): to_host(grad).copy()
        for k, layer in enumerate((bottom, top))
        for name, (_, grad) in layer.params.items()
    }
    np.testing.assert_allclose(dx, numerical_gradient(loss, x_dev), rtol=1e-5, atol=1e-7)
    for k, layer in enumerate((bottom, top)):
        for name, (value, _) in layer.params.items():
            np.testing.assert_allclose(
                analytic[(k, name)],
                numerical_gradient(loss, value),
                rtol=1e-5,
                atol=1e-7,
                err_msg=f"layer {k} {name}",
            )


@pytest.mark.parametrize("cls", LAYERS)
def test_skipping_the_input_gradient_keeps_parameter_gradients(cls):
    x = np.random.default_rng(0).standard_normal((3, 4, 2)).astype(np.float32)
    g = np.random.default_rng(1).standard_normal((3, 5)).astype(np.float32)
    full, lean = cls(5, input_shape=(4, 2)), cls(5, input_shape=(4, 2))
    lean.load_params({name: to_host(value) for name, (value, _) in full.params.items()})
    lean.needs_input_gradient = False
    full.forward(to_device(x))
    lean.forward(to_device(x))
    assert to_host(full.backward(to_device(g))).shape == (3, 4, 2)
    assert lean.backward(to_device(g)) is None
    for name, (_, grad) in full.params.items():
        np.testing.assert_array_equal(to_host(lean.params[name][1]), to_host(grad))


@pytest.mark.parametrize("cls", LAYERS)
def test_float32_end_to_end_and_params_are_the_arrays_used(cls):
    layer = cls(4, input_shape=(3, 2), return_sequences=True)
    x = np.random.default_rng(0).standard_normal((2, 3, 2))  # float64 in: computed in float32
    out = layer.forward(to_device(x))
    assert out.dtype == DTYPE
    dx = layer.backward(to_device(np.ones((2, 3, 4), dtype=np.float32)))
    assert dx.dtype == DTYPE
    for value, gradient in layer.params.values():
        assert value.dtype == gradient.dtype == DTYPE
    # an optimizer updates the arrays of `params` in place: the next forward sees it
    for value, _ in layer.params.values():
        value[...] = 0.0
    np.testing.assert_array_equal(to_host(layer.forward(to_device(x))), np.zeros((2, 3, 4)))


@pytest.mark.parametrize("cls", LAYERS)
def test_a_second_forward_does_not_change_the_first_output(cls):
    layer = cls(3, input_shape=(4, 2), return_sequences=True)
    x1, x2 = np.random.default_rng(0).standard_normal((2, 2, 4, 2))
    first = layer.forward(to_device(x1))
    kept = to_host(first).copy()
    layer.forward(to_device(x2))
    np.testing.assert_array_equal(to_host(first), kept)


# ======================================================================= initialization
@pytest.mark.parametrize("cls", LAYERS)
def test_initialization(cls):
    units, features, gates = 20, 30, GATES[cls]
    layer = cls(units, input_shape=(4, features))
    w, u = to_host(layer.input_weights), to_host(layer.recurrent_weights)
    assert w.shape == (features, gates * units) and u.shape == (units, gates * units)
    assert w.dtype == u.dtype == DTYPE
    limit = np.sqrt(6 / (features + gates * units))
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.9 * limit  # Glorot uniform
    for k in range(gates):  # each gate block is orthogonal
        block = u[:, k * units : (k + 1) * units].astype(np.float64)
        np.testing.assert_allclose(block.T @ block, np.eye(units), atol=1e-5)
    expected_biases = np.zeros(gates * units)
    if cls is LSTM:
        expected_biases[units : 2 * units] = 1.0
    np.testing.assert_array_equal(to_host(layer.biases), expected_biases)
    if cls is GRU:
        np.testing.assert_array_equal(to_host(layer.recurrent_biases), np.zeros(3 * units))
    for name, (value, gradient) in layer.params.items():
        assert gradient.shape == value.shape and not to_host(gradient).any(), name
    he = cls(units, input_shape=(4, 400), initialization="he")
    assert np.std(to_host(he.input_weights)) == pytest.approx(np.sqrt(2 / 400), rel=0.05)
    xavier = cls(units, input_shape=(4, 400), initialization="xavier")
    assert np.std(to_host(xavier.input_weights)) == pytest.approx(np.sqrt(1 / 400), rel=0.05)


@pytest.mark.parametrize("cls", LAYERS)
def test_seeded_initialization_repeats_and_lazy_build(cls):
    set_seed(7)
    a = cls(3, input_shape=(2, 4))
    set_seed(7)
    b = cls(3)
    b.build((2, 4))
    for name, (value, _) in a.params.items():
        np.testing.assert_array_equal(to_host(value), to_host(b.params[name][0]))
    lazy = cls(3, return_sequences=True)
    assert lazy.params == {}
    out = lazy.forward(to_device(np.ones((2, 5, 6), dtype=np.float32)))
    assert lazy.input_shape == (5, 6) and lazy.output_shape == (5, 3)
    assert to_host(out).shape == (2, 5, 3)


# =============================================================================== config
@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("return_sequences", [False, True])
def test_config_round_trip(cls, return_sequences):
    layer = cls(4, input_shape=(3, 2), return_sequences=return_sequences, initialization="he")
    config = layer.get_config()
    assert config == {
        "type": cls.__name__,
        "units": 4,
        "input_shape": (3, 2),
        "return_sequences": return_sequences,
        "initialization": "he",
    }
    kwargs = {k: v for k, v in config.items() if k != "type"}
    rebuilt = cls(**kwargs)
    assert rebuilt.get_config() == config
    rebuilt.load_params({name: to_host(value) for name, (value, _) in layer.params.items()})
    x = to_device(np.random.default_rng(0).standard_normal((2, 3, 2)).astype(np.float32))
    np.testing.assert_array_equal(to_host(rebuilt.forward(x)), to_host(layer.forward(x)))


OPTIMIZERS = {
    "SGD": lambda: SGD(learning_rate=0.05, momentum=0.9),
    "RMSprop": lambda: RMSprop(learning_rate=0.01, regularization="L1"),
    "Adam": lambda: Adam(learning_rate=0.01),
}


def sequence_data(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6, 3)).astype(np.float32)
    labels = (x[:, :3, 0].sum(axis=1) > 0).astype(int) + (x[:, -1, 1] > 0)
    return x, np.eye(3, dtype=np.float32)[labels]


def recurrent_model(optimizer: Any) -> Model:
    return Model(
        [
            GRU(5, input_shape=(6, 3), return_sequences=True),
            SimpleRNN(4, return_sequences=True, initialization="xavier"),
            LSTM(4),
            Dense(3),
        ],
        CategoricalCrossEntropy(),
        optimizer,
    )


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_optimizer_trains_and_the_model_round_trips(name, tmp_path):
    x, y = sequence_data()
    model = recurrent_model(OPTIMIZERS[name]())
    before = model.evaluate(x, y)[1]["loss"]
    model.train(x, y, epochs=8, batch_size=8, auto_evaluation=0, verbose=0)
    assert model.evaluate(x, y)[1]["loss"] < before
    state = model.optimizer.params
    per_param = [v for v in state.values() if isinstance(v, dict)]
    assert per_param and all(len(v) == 3 + 3 + 4 + 2 for v in per_param)  # every parameter
    loaded = load_model(save_model(model, tmp_path / "rnn"))
    assert [layer.get_config() for layer in loaded.layers] == [
        layer.get_config() for layer in model.layers
    ]
    for i, (layer, other) in enumerate(zip(model.layers, loaded.layers, strict=True)):
        for param, (value, _) in layer.params.items():
            np.testing.assert_array_equal(to_host(other.params[param][0]), to_host(value))
            for key, slots in state.items():
                if isinstance(slots, dict):
                    np.testing.assert_array_equal(
                        to_host(loaded.optimizer.params[key][f"layer_{i}_{param}"]),
                        to_host(slots[f"layer_{i}_{param}"]),
                    )
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_summary_counts_recurrent_parameters(capsys):
    model = Model([LSTM(8, input_shape=(5, 3)), Dense(1)], MSE())
    model.summary()
    text = capsys.readouterr().out
    lstm = 3 * 32 + 8 * 32 + 32
    assert f"{lstm:,}" in text and f"Trainable parameters: {lstm + 9:,}" in text


# ============================================================================ bad input
@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"units": 0}, "units"),
        ({"units": 2.0}, "units"),
        ({"units": 3, "return_sequences": 1}, "return_sequences"),
        ({"units": 3, "initialization": "glorot"}, "initialization"),
        ({"units": 3, "input_shape": (5,)}, "input_shape"),
        ({"units": 3, "input_shape": (5, 2, 1)}, "input_shape"),
        ({"units": 3, "input_shape": (0, 2)}, "input_shape"),
    ],
)
def test_bad_arguments(cls, kwargs, name):
    with pytest.raises(ValueError, match=name):
        cls(**kwargs)


@pytest.mark.parametrize("cls", LAYERS)
def test_bad_input_batch(cls):
    layer = cls(3, input_shape=(4, 2))
    for shape in ((2, 4), (2, 5, 2), (2, 4, 3), (2, 4, 2, 1)):
        with pytest.raises(ValueError, match=r"input_batch must have shape \(N, 4, 2\)"):
            layer.forward(to_device(np.zeros(shape, dtype=np.float32)))
    lazy = cls(3)
    for shape in ((2, 4), (2, 4, 2, 1)):
        with pytest.raises(ValueError, match=r"input_batch must have shape \(N, T, F\)"):
            lazy.forward(to_device(np.zeros(shape, dtype=np.float32)))
    with pytest.raises(ValueError, match="previous layer"):
        layer.build((5, 2))


@pytest.mark.parametrize("cls", LAYERS)
def test_backward_errors(cls):
    layer = cls(3, input_shape=(4, 2), return_sequences=True)
    with pytest.raises(ValueError, match="forward"):
        layer.backward(to_device(np.ones((2, 4, 3), dtype=np.float32)))
    layer.forward(to_device(np.ones((2, 4, 2), dtype=np.float32)))
    for bad in ((2, 3), (2, 4, 2), (1, 4, 3)):
        with pytest.raises(ValueError, match="output_gradient_batch"):
            layer.backward(to_device(np.ones(bad, dtype=np.float32)))


def test_model_rejects_sequences_of_the_wrong_length():
    model = Model([LSTM(2, input_shape=(5, 3)), Dense(1)], MSE())
    with pytest.raises(ValueError, match=r"X must have shape \(N, 5, 3\)"):
        model.predict(np.zeros((4, 6, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="previous layer outputs"):
        Model(
            [LSTM(2, input_shape=(5, 3), return_sequences=True), GRU(2, input_shape=(5, 4))], MSE()
        )


@pytest.mark.parametrize("cls", LAYERS)
def test_array_shapes_match_the_built_parameters(cls):
    layer = cls(4, input_shape=(3, 5))
    shapes = layer.array_shapes((3, 5))
    assert shapes == {name: tuple(value.shape) for name, (value, _) in layer.params.items()}
    with pytest.raises(ValueError, match="input_shape"):
        layer.array_shapes((5,))
