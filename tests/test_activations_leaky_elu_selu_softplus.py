"""LeakyReLU, ELU, SELU and Softplus: PyTorch's formulas, gradients, extremes, models."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers import check_gradients, distinct_values
from helpers_model import assert_same_arrays, model_arrays
from mpneuralnetwork import threads, to_device, to_host, xp
from mpneuralnetwork.activations import ELU, GELU, SELU, LeakyReLU, ReLU, Softplus
from mpneuralnetwork.layers import Convolutional, Dense, Dropout, Flatten
from mpneuralnetwork.losses import MSE
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import Adam
from mpneuralnetwork.serialization import load_model, save_model
from test_activations import no_warnings

torch = pytest.importorskip("torch", reason="the values are compared with PyTorch's")
F = torch.nn.functional

F32_MAX = float(np.finfo(np.float32).max)
EXTREMES = np.array(
    [-F32_MAX, -1e30, -89.0, -88.0, -1.0, 0.0, 1.0, 88.0, 89.0, 1e30, F32_MAX], dtype=np.float32
)

# name -> (our layer, PyTorch's function): defaults and other arguments
CASES: dict[str, tuple[Any, Any]] = {
    "LeakyReLU": (LeakyReLU, lambda t: F.leaky_relu(t)),
    "LeakyReLU(0.2)": (lambda: LeakyReLU(0.2), lambda t: F.leaky_relu(t, 0.2)),
    "LeakyReLU(-0.5)": (lambda: LeakyReLU(-0.5), lambda t: F.leaky_relu(t, -0.5)),
    "ELU": (ELU, lambda t: F.elu(t)),
    "ELU(0.3)": (lambda: ELU(0.3), lambda t: F.elu(t, 0.3)),
    "SELU": (SELU, lambda t: F.selu(t)),
    "Softplus": (Softplus, lambda t: F.softplus(t)),
    "Softplus(2, 5)": (lambda: Softplus(2.0, 5.0), lambda t: F.softplus(t, 2.0, 5.0)),
    "Softplus(0.5, 3)": (lambda: Softplus(0.5, 3.0), lambda t: F.softplus(t, 0.5, 3.0)),
    "Softplus(3, -1)": (lambda: Softplus(3.0, -1.0), lambda t: F.softplus(t, 3.0, -1.0)),
    "Softplus(1, 100)": (lambda: Softplus(1.0, 100.0), lambda t: F.softplus(t, 1.0, 100.0)),
}


def torch_values(function: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's f(x) and f′(x) (the gradient of sum f)."""
    t = torch.tensor(x, requires_grad=True)
    y = function(t)
    y.sum().backward()
    return y.detach().numpy(), t.grad.numpy()


def ours(make: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    layer = make()
    out = to_host(layer.forward(to_device(x)))
    return out, to_host(layer.backward(to_device(np.ones_like(x))))


def grid() -> np.ndarray:
    """-30..30 by 0.05, the thresholds of CASES exactly (beta·x == threshold) and around."""
    points = [np.linspace(-30.0, 30.0, 1201), [0.0, 2.5, 6.0, -1 / 3, 20.0]]
    for x in (2.5, 6.0, -1 / 3, 20.0):
        points.append([np.nextafter(x, -np.inf), np.nextafter(x, np.inf), x - 1e-3, x + 1e-3])
    return np.concatenate(points)


@pytest.mark.parametrize("name", list(CASES))
def test_float64_values_and_derivatives_equal_pytorch(name: str) -> None:
    make, function = CASES[name]
    x = grid()
    out, grad = ours(make, x)
    expected_out, expected_grad = torch_values(function, x)
    np.testing.assert_allclose(out, expected_out, rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("name", list(CASES))
def test_float32_values_and_derivatives_equal_pytorch(name: str) -> None:
    make, function = CASES[name]
    x = grid().astype(np.float32)
    out, grad = ours(make, x)
    assert out.dtype == grad.dtype == np.float32
    expected_out, expected_grad = torch_values(function, x)
    np.testing.assert_allclose(out, expected_out, rtol=2e-6, atol=1e-37)
    np.testing.assert_allclose(grad, expected_grad, rtol=2e-6, atol=1e-37)


def test_exact_values_worked_by_hand() -> None:
    x = np.array([-2.0, -0.5, 0.0, 1.5])
    e2, e5 = math.exp(-2.0), math.exp(-0.5)
    cases = [
        (LeakyReLU(0.1), [-0.2, -0.05, 0.0, 1.5], [0.1, 0.1, 0.1, 1.0]),
        (ELU(2.0), [2 * (e2 - 1), 2 * (e5 - 1), 0.0, 1.5], [2 * e2, 2 * e5, 2.0, 1.0]),
        (
            SELU(),
            [SELU.SCALE * SELU.ALPHA * (e - 1) for e in (e2, e5, 1.0)] + [SELU.SCALE * 1.5],
            [SELU.SCALE * SELU.ALPHA * e for e in (e2, e5, 1.0)] + [SELU.SCALE],
        ),
        (
            # beta = 2, threshold = 3: 2·1.5 = 3 is not above it, so still the soft branch
            Softplus(2.0, 3.0),
            [math.log1p(math.exp(2 * v)) / 2 for v in x],
            [1 / (1 + math.exp(-2 * v)) for v in x],
        ),
        (
            Softplus(2.0, 2.9),
            [*(math.log1p(math.exp(2 * v)) / 2 for v in x[:3]), 1.5],
            [*(1 / (1 + math.exp(-2 * v)) for v in x[:3]), 1.0],
        ),
    ]
    for layer, values, derivatives in cases:
        out = to_host(layer.forward(to_device(x)))
        np.testing.assert_allclose(out, values, rtol=1e-14, err_msg=repr(layer))
        grad = to_host(layer.backward(to_device(np.ones_like(x))))
        np.testing.assert_allclose(grad, derivatives, rtol=1e-14, err_msg=repr(layer))
    assert SELU.ALPHA == 1.6732632423543772848170429916717
    assert SELU.SCALE == 1.0507009873554804934193349852946


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("shape", [(3, 4), (2, 2, 3, 3), (5,)])
def test_finite_difference_gradients(name: str, shape: tuple[int, ...]) -> None:
    # scaled by 8: both sides of Softplus's thresholds (x = 2.5, 6, -1/3) and the kinks at 0
    x = distinct_values(shape, seed=len(shape)) * 8
    assert check_gradients(CASES[name][0](), x) == ["input"]


@pytest.mark.parametrize("name", list(CASES))
def test_extreme_inputs_are_finite_warning_free_and_match_pytorch(name: str) -> None:
    make, function = CASES[name]
    with no_warnings():
        out, grad = ours(make, EXTREMES)
    assert out.dtype == grad.dtype == np.float32
    assert np.isfinite(out).all() and np.isfinite(grad).all()
    # float64 references: in float32, PyTorch's own SELU and Softplus(1, 100) overflow here
    expected_out, expected_grad = torch_values(function, EXTREMES.astype(np.float64))
    if name == "SELU":  # 1.0507·3.4e38 is beyond float32: the output saturates there
        assert expected_out[-1] > F32_MAX and out[-1] == F32_MAX
        out, expected_out = out[:-1], expected_out[:-1]
    np.testing.assert_allclose(out, expected_out, rtol=1e-6, atol=1e-40)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-40)


@pytest.mark.parametrize("beta", [1e30, 1e-30])
def test_softplus_with_extreme_betas_stays_finite(beta: float) -> None:
    # PyTorch's beta·x overflows to ±inf here (no harm in the end: same results)
    with no_warnings():
        out, grad = ours(lambda: Softplus(beta=beta, threshold=20.0), EXTREMES)
    assert np.isfinite(out).all() and np.isfinite(grad).all()
    expected_out, expected_grad = torch_values(lambda t: F.softplus(t, beta, 20.0), EXTREMES)
    np.testing.assert_allclose(out, expected_out, rtol=1e-6, atol=1e-40)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-40)
    if beta > 1:
        assert out[5] == pytest.approx(math.log(2) / beta, rel=1e-6)  # log(2)/beta at 0


@pytest.mark.parametrize("make", [LeakyReLU, ELU, SELU, Softplus])
def test_scalar_inputs(make: Any) -> None:
    layer = make()
    out = to_host(layer.forward(-1.5))
    assert out.shape == ()
    grad = to_host(layer.backward(2.0))
    assert grad.shape == ()
    reference = make()
    expected = to_host(reference.forward(to_device(np.array([-1.5]))))[0]
    assert float(out) == pytest.approx(float(expected), rel=1e-12)
    expected_grad = 2.0 * to_host(reference.backward(to_device(np.ones(1))))[0]
    assert float(grad) == pytest.approx(float(expected_grad), rel=1e-12)


@pytest.mark.parametrize("make", [LeakyReLU, ELU, SELU, Softplus])
def test_a_scalar_gradient_stands_for_a_constant_one(make: Any) -> None:
    x = to_device(np.linspace(-2, 2, 12).reshape(3, 4))
    layer = make()
    layer.forward(x)
    constant = to_host(layer.backward(0.5))
    assert constant.shape == (3, 4)
    np.testing.assert_allclose(constant, 0.5 * to_host(layer.backward(xp.ones_like(x))))


@pytest.mark.parametrize("make", [LeakyReLU, ELU, SELU, Softplus])
def test_gradient_of_wrong_shape_and_backward_before_forward(make: Any) -> None:
    with pytest.raises(ValueError, match="forward"):
        make().backward(to_device(np.ones((2, 3))))
    layer = make()
    layer.forward(to_device(np.ones((2, 3))))
    for bad in ((2, 4), (3,), (2, 3, 1)):
        with pytest.raises(ValueError, match="output_gradient_batch"):
            layer.backward(to_device(np.ones(bad)))


@pytest.mark.parametrize(
    "layer",
    [LeakyReLU(), LeakyReLU(0.3), ELU(), ELU(alpha=0.5), SELU(), Softplus(), Softplus(3.0, 7.5)],
    ids=repr,
)
def test_get_config_rebuilds_the_layer(layer: Any) -> None:
    config = layer.get_config()
    kind = config.pop("type")
    assert kind == type(layer).__name__
    rebuilt = type(layer)(**config)
    assert rebuilt.get_config() == layer.get_config()
    x = to_device(np.linspace(-5, 5, 11))
    np.testing.assert_array_equal(to_host(rebuilt.forward(x)), to_host(layer.forward(x)))


def test_configs_hold_the_constructor_arguments() -> None:
    assert LeakyReLU().get_config() == {"type": "LeakyReLU", "negative_slope": 0.01}
    assert ELU(2).get_config() == {"type": "ELU", "alpha": 2.0}
    assert SELU().get_config() == {"type": "SELU"}
    assert Softplus().get_config() == {"type": "Softplus", "beta": 1.0, "threshold": 20.0}
    assert repr(Softplus(2.0, 5.0)) == "Softplus(beta=2.0, threshold=5.0)"


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: LeakyReLU("a"), "negative_slope"),
        (lambda: LeakyReLU(float("inf")), "negative_slope"),
        (lambda: LeakyReLU(float("nan")), "negative_slope"),
        (lambda: LeakyReLU(True), "negative_slope"),
        (lambda: ELU(0.0), "alpha"),
        (lambda: ELU(-1.0), "alpha"),
        (lambda: ELU(float("inf")), "alpha"),
        (lambda: Softplus(beta=0.0), "beta"),
        (lambda: Softplus(beta=-2.0), "beta"),
        (lambda: Softplus(beta=float("nan")), "beta"),
        (lambda: Softplus(threshold=float("inf")), "threshold"),
        (lambda: Softplus(threshold=None), "threshold"),
    ],
)
def test_bad_arguments(make: Any, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        make()


class _FakeBlas:
    """Stands for a threadpoolctl controller, so that `threads.parallel` turns on."""

    num_threads = 4

    def set_num_threads(self, count: int) -> None:
        self.num_threads = count


@pytest.mark.parametrize("make", [LeakyReLU, ELU, SELU, Softplus, GELU])
@pytest.mark.parametrize("channel_major", [False, True])
def test_split_across_threads_matches_one_thread(
    make: Any, channel_major: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 3, 4, 5)) * 3
    g = rng.standard_normal(x.shape)
    reference = make()
    expected = to_host(reference.forward(to_device(x))), to_host(reference.backward(to_device(g)))
    device_x = to_device(x)
    if channel_major:
        device_x = xp.ascontiguousarray(device_x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    monkeypatch.setenv("MPNN_NUM_THREADS", "2")
    monkeypatch.setattr(threads, "_libraries", [_FakeBlas()])
    monkeypatch.setattr(threads, "MIN_WORK", 0)
    layer = make()
    with threads.parallel():
        assert threads.active() == (xp.__name__ == "numpy")  # a no-op on a GPU
        assert len(threads.shares(6, 1.0)) == (2 if threads.active() else 1)
        out = layer.forward(device_x)
        dx = layer.backward(to_device(g))
    for array in (out, dx):
        assert (array.strides[1] > array.strides[0]) == channel_major
    np.testing.assert_array_equal(to_host(out), expected[0])
    np.testing.assert_array_equal(to_host(dx), expected[1])


# ------------------------------------------------------------ smart initialization
def _first_std(*following: Any) -> float:
    model = Model([Dense(1000, input_size=1000), *following], MSE())
    return float(np.std(to_host(model.layers[0].weights).astype(np.float64)))


@pytest.mark.parametrize(
    ("following", "method"),
    [
        ([LeakyReLU()], "he"),
        ([LeakyReLU(0.3)], "he"),
        ([ELU()], "he"),
        ([Dropout(0.3), ELU(0.5)], "he"),
        ([SELU()], "xavier"),  # LeCun normal: std √(1/fan_in)
        ([Dropout(0.2), SELU(), ReLU()], "xavier"),  # SELU ends the search
        ([Softplus()], "xavier"),
    ],
    ids=lambda v: "-".join(type(layer).__name__ for layer in v) if isinstance(v, list) else v,
)
def test_dense_auto_initialization(following: list[Any], method: str) -> None:
    expected = math.sqrt((2.0 if method == "he" else 1.0) / 1000)
    assert abs(_first_std(*following) - expected) < 0.05 * expected


@pytest.mark.parametrize(("activation", "method"), [(ELU(), "he"), (SELU(), "xavier")])
def test_convolutional_auto_initialization(activation: Any, method: str) -> None:
    model = Model([Convolutional(64, 3, input_shape=(32, 5, 5)), activation, Flatten()], MSE())
    expected = math.sqrt((2.0 if method == "he" else 1.0) / 288)  # fan-in 32·3·3
    kernels = to_host(model.layers[0].kernels).astype(np.float64)
    assert abs(float(np.std(kernels)) - expected) < 0.05 * expected


# ------------------------------------------------------------------ save and load
def test_save_load_round_trip_of_a_model_using_each(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 4)).astype(np.float32)
    y = np.tanh(x[:, :2] * 2)
    model = Model(
        [
            Dense(8, input_size=4),
            LeakyReLU(0.2),
            Dense(8),
            ELU(alpha=0.5),
            Dense(8),
            SELU(),
            Dense(8),
            Softplus(beta=2.0, threshold=5.0),
            Dense(2),
        ],
        MSE(),
        Adam(learning_rate=0.01),
    )
    model.train(x, y, epochs=2, batch_size=8, verbose=0)
    loaded = load_model(save_model(model, tmp_path / "model"))
    assert [layer.get_config() for layer in loaded.layers] == [
        layer.get_config() for layer in model.layers
    ]
    assert loaded.layers[1].negative_slope == 0.2 and loaded.layers[3].alpha == 0.5
    assert (loaded.layers[7].beta, loaded.layers[7].threshold) == (2.0, 5.0)
    assert_same_arrays(model_arrays(loaded), model_arrays(model))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


@pytest.mark.parametrize("name", list(CASES))
def test_activation_prime_is_the_derivative_backward_uses(name: str) -> None:
    """`activation_prime` (the `Activation` interface) agrees with backward's shortcut."""
    layer = CASES[name][0]()
    x = to_device(grid())
    layer.forward(x)
    np.testing.assert_allclose(
        to_host(layer.activation_prime(x)), to_host(layer.backward(xp.ones_like(x))), rtol=1e-13
    )
