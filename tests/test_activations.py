"""Activations: exact values, gradients, extreme inputs, scalars and bad input."""

from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np
import pytest

from helpers import check_gradients, distinct_values
from mpneuralnetwork import DTYPE, to_device, to_host
from mpneuralnetwork.activations import (
    Activation,
    PReLU,
    ReLU,
    Sigmoid,
    Softmax,
    Swish,
    Tanh,
)

POINTS = [-3.0, -0.5, 0.25, 2.0]
EXTREMES = np.array([-1000.0, -100.0, 0.0, 100.0, 1000.0], dtype=np.float32)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


# f and f' straight from the table of the spec, in float64 Python arithmetic
FORMULAS = {
    "Tanh": (Tanh, math.tanh, lambda x: 1.0 - math.tanh(x) ** 2),
    "Sigmoid": (Sigmoid, _sigmoid, lambda x: _sigmoid(x) * (1.0 - _sigmoid(x))),
    "ReLU": (ReLU, lambda x: max(0.0, x), lambda x: 1.0 if x > 0 else 0.0),
    "PReLU": (
        lambda: PReLU(0.2),
        lambda x: x if x > 0 else 0.2 * x,
        lambda x: 0.2 if x < 0 else 1.0,
    ),
    "Swish": (
        Swish,
        lambda x: x * _sigmoid(x),
        lambda x: (1 + math.exp(-x) + x * math.exp(-x)) / (1 + math.exp(-x)) ** 2,
    ),
}
ELEMENTWISE = [Tanh, Sigmoid, ReLU, PReLU, lambda: PReLU(0.3), Swish]


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_exact_values_against_the_formulas(name):
    make, f, f_prime = FORMULAS[name]
    layer = make()
    x = np.array(POINTS, dtype=np.float64)
    out = to_host(layer.forward(to_device(x)))
    np.testing.assert_allclose(out, [f(v) for v in POINTS], rtol=1e-12, atol=1e-15)
    grad = to_host(layer.backward(to_device(np.ones_like(x))))
    np.testing.assert_allclose(grad, [f_prime(v) for v in POINTS], rtol=1e-12, atol=1e-15)


def test_derivatives_at_zero_follow_the_spec():
    for make, expected in (
        (ReLU, 0.0),
        (lambda: PReLU(0.2), 1.0),
        (Sigmoid, 0.25),
        (Tanh, 1.0),
        (Swish, 0.5),
    ):
        layer = make()
        layer.forward(to_device(np.zeros(3)))
        np.testing.assert_allclose(to_host(layer.backward(to_device(np.ones(3)))), expected)
    assert float(to_host(PReLU(0.2).forward(to_device(-2.0)))) == pytest.approx(-0.4)


def test_sigmoid_scalar():
    layer = Sigmoid()
    assert float(to_host(layer.forward(0))) == 0.5
    assert float(to_host(layer.backward(1))) == 0.25
    assert to_host(layer.forward(0)).dtype == DTYPE  # an int input computes in DTYPE


@pytest.mark.parametrize("make", [Tanh, Sigmoid, ReLU, PReLU, Swish])
def test_scalar_inputs(make):
    layer = make()
    out = to_host(layer.forward(1.5))
    assert out.shape == ()
    grad = to_host(layer.backward(2.0))
    assert grad.shape == ()
    reference = make()
    reference.forward(to_device(np.array([1.5])))  # float64, like the Python float
    np.testing.assert_allclose(
        grad, 2.0 * to_host(reference.backward(to_device(np.ones(1))))[0], rtol=1e-12
    )


@pytest.mark.parametrize("make", ELEMENTWISE)
@pytest.mark.parametrize("shape", [(3, 4), (2, 2, 3, 3), (5,)])
def test_elementwise_gradients(make, shape):
    x = distinct_values(shape, seed=len(shape))  # all |x| >= 0.03: no kinks for ReLU/PReLU
    assert check_gradients(make(), x) == ["input"]


@pytest.mark.parametrize(("temperature", "epsilon"), [(1.0, 1e-8), (2.5, 1e-8), (0.5, 1e-3)])
def test_softmax_gradients(temperature, epsilon):
    x = np.random.default_rng(0).standard_normal((4, 5)) * 2
    assert check_gradients(Softmax(temperature, epsilon), x) == ["input"]


def test_softmax_values_with_temperature():
    x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    t = 2.0
    out = to_host(Softmax(t).forward(to_device(x)))
    scaled = np.exp(x / (t + 1e-8))
    np.testing.assert_allclose(out, scaled / scaled.sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(out[1], [1 / 3] * 3, rtol=1e-12)
    # backward: s · (G − Σ s·G) / (T + ε)
    layer = Softmax(t)
    s = to_host(layer.forward(to_device(x)))
    g = np.array([[1.0, 0.0, -1.0], [2.0, 3.0, 4.0]])
    expected = s * (g - (s * g).sum(axis=1, keepdims=True)) / (t + 1e-8)
    np.testing.assert_allclose(to_host(layer.backward(to_device(g))), expected, rtol=1e-12)


@contextlib.contextmanager
def no_warnings():
    """Turn every warning and every floating-point error except underflow into an exception.

    Underflow is left alone: e^−1000 rounding to 0 is the right answer and NumPy ignores it
    by default, so users never see it.
    """
    with warnings.catch_warnings(), np.errstate(all="raise", under="ignore"):
        warnings.simplefilter("error")
        yield


def _safe(f, v: float) -> float:
    """The float64 reference, or its limit 0 where the formula itself overflows."""
    try:
        return f(v)
    except OverflowError:
        return 0.0


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_extreme_inputs_are_finite_and_warning_free(name):
    make, f, f_prime = FORMULAS[name]
    with no_warnings():
        layer = make()
        out = to_host(layer.forward(to_device(EXTREMES)))
        grad = to_host(layer.backward(to_device(np.ones_like(EXTREMES))))
    assert out.dtype == grad.dtype == np.float32
    assert np.isfinite(out).all() and np.isfinite(grad).all()
    # float32 subnormals (e^-100 ~ 4e-44) are only approximately representable: atol
    np.testing.assert_allclose(out, [_safe(f, float(v)) for v in EXTREMES], rtol=1e-6, atol=1e-40)
    expected_prime = [_safe(f_prime, float(v)) for v in EXTREMES]
    np.testing.assert_allclose(grad, expected_prime, rtol=1e-5, atol=1e-40)


def test_sigmoid_and_swish_tails():
    sigmoid = to_host(Sigmoid().forward(to_device(EXTREMES)))
    assert sigmoid[0] == 0.0 and 0.0 <= sigmoid[1] < 1e-40
    assert sigmoid[2:].tolist() == [0.5, 1.0, 1.0]
    swish = to_host(Swish().forward(to_device(EXTREMES)))
    assert swish[2:].tolist() == [0.0, 100.0, 1000.0]
    assert swish[0] == 0.0 and -1e-40 < swish[1] <= 0.0


def test_softmax_extreme_inputs():
    x = np.array([[-1000.0, 0.0, 1000.0], [1000.0, 1000.0, -100.0]], dtype=np.float32)
    with no_warnings():
        layer = Softmax()
        out = to_host(layer.forward(to_device(x)))
        grad = to_host(layer.backward(to_device(np.ones_like(x))))
    assert np.isfinite(out).all() and np.isfinite(grad).all()
    np.testing.assert_allclose(out, [[0, 0, 1], [0.5, 0.5, 0]], atol=1e-7)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-6)


def test_float32_stays_float32():
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    for make in (*ELEMENTWISE, Softmax):
        layer = make()
        assert to_host(layer.forward(to_device(x))).dtype == np.float32
        assert to_host(layer.backward(to_device(np.ones_like(x)))).dtype == np.float32


def test_generic_activation():
    layer = Activation(lambda x: x * x, lambda x: 2 * x)
    x = np.array([[1.0, -2.0, 3.0]])
    np.testing.assert_array_equal(to_host(layer.forward(to_device(x))), x * x)
    np.testing.assert_array_equal(to_host(layer.backward(to_device(np.ones_like(x)))), 2 * x)
    assert layer.params == {} and layer.state == {}
    assert check_gradients(layer, x) == ["input"]


@pytest.mark.parametrize("make", [Tanh, Sigmoid, ReLU, PReLU, Swish, Softmax])
def test_backward_gradient_of_wrong_shape(make):
    layer = make()
    layer.forward(to_device(np.ones((2, 3))))
    for bad in ((2, 4), (3,), (2, 3, 1), (1, 3)):
        with pytest.raises(ValueError, match="output_gradient_batch"):
            layer.backward(to_device(np.ones(bad)))


@pytest.mark.parametrize("make", [Tanh, Sigmoid, ReLU, PReLU, Swish, Softmax])
def test_backward_before_forward(make):
    with pytest.raises(ValueError, match="forward"):
        make().backward(to_device(np.ones((2, 3))))


def test_built_activation_checks_the_sample_shape():
    layer = ReLU()
    layer.build((3,))
    with pytest.raises(ValueError, match="input_batch"):
        layer.forward(to_device(np.ones((2, 4))))
    with pytest.raises(ValueError, match="input_batch"):
        layer.forward(to_device(1.0))


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: PReLU("a"), "alpha"),
        (lambda: PReLU(float("inf")), "alpha"),
        (lambda: Softmax(-1.0), "temperature"),
        (lambda: Softmax(float("nan")), "temperature"),
        (lambda: Softmax(1.0, -1e-8), "epsilon"),
        (lambda: Softmax(0.0, 0.0), "temperature"),
        (lambda: Softmax().forward(to_device(np.ones(3))), "input_batch"),
    ],
)
def test_bad_arguments(make, name):
    with pytest.raises(ValueError, match=name):
        make()


@pytest.mark.parametrize(
    "layer", [ReLU(), PReLU(0.3), Sigmoid(), Tanh(), Swish(), Softmax(temperature=2.0)]
)
def test_activations_pickle_and_compute_alike(layer):
    # Their functions are lambdas made in __init__: pickled without them, made again.
    import pickle

    x = to_device(np.linspace(-3.0, 3.0, 12, dtype=np.float32).reshape(3, 4))
    twin = pickle.loads(pickle.dumps(layer))
    assert twin.get_config() == layer.get_config()
    np.testing.assert_array_equal(to_host(twin.forward(x)), to_host(layer.forward(x)))
    g = to_device(np.ones((3, 4), dtype=np.float32))
    np.testing.assert_array_equal(to_host(twin.backward(g)), to_host(layer.backward(g)))
