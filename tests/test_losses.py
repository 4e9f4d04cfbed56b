"""Losses: hand-worked values, gradients by finite differences, stability, config."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from helpers import numerical_gradient
from mpneuralnetwork import to_device, to_host, xp
from mpneuralnetwork.losses import MSE, BinaryCrossEntropy, CategoricalCrossEntropy, Loss


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


# ==================================================================================== MSE
def test_mse_hand_worked():
    out = np.array([[1.0, 2.0], [3.0, 4.0]])
    y = np.array([[0.0, 2.0], [1.0, 1.0]])
    # per sample: 1 + 0 = 1 and 4 + 9 = 13 -> mean 7
    assert MSE().direct(to_device(out), to_device(y)) == pytest.approx(7.0, rel=1e-12)
    np.testing.assert_allclose(
        to_host(MSE().prime(to_device(out), to_device(y))), [[1.0, 0.0], [2.0, 3.0]], rtol=1e-12
    )


def test_direct_returns_a_python_float():
    value = MSE().direct(to_device(np.ones((2, 2), dtype=np.float32)), to_device(np.zeros((2, 2))))
    assert type(value) is float and value == 2.0


# ==================================================================================== BCE
def test_bce_hand_worked():
    z = np.array([[0.0, 2.0], [-1.0, 3.0]])
    y = np.array([[1.0, 0.0], [0.0, 1.0]])
    # −[y log σ(z) + (1 − y) log(1 − σ(z))] summed per sample, averaged over 2 samples
    terms = [
        -math.log(_sigmoid(0.0)),
        -math.log(1 - _sigmoid(2.0)),
        -math.log(1 - _sigmoid(-1.0)),
        -math.log(_sigmoid(3.0)),
    ]
    assert BinaryCrossEntropy().direct(to_device(z), to_device(y)) == pytest.approx(
        sum(terms) / 2, rel=1e-12
    )
    expected_prime = [
        [(_sigmoid(0.0) - 1) / 2, _sigmoid(2.0) / 2],
        [_sigmoid(-1.0) / 2, (_sigmoid(3.0) - 1) / 2],
    ]
    np.testing.assert_allclose(
        to_host(BinaryCrossEntropy().prime(to_device(z), to_device(y))), expected_prime, rtol=1e-12
    )
    # z = 0, y = 1: log 2 exactly
    one = BinaryCrossEntropy().direct(to_device(np.zeros((1, 1))), to_device(np.ones((1, 1))))
    assert one == pytest.approx(math.log(2.0), rel=1e-12)


def test_bce_extreme_logits_are_finite_and_warning_free():
    z = np.array([[-1000.0, 1000.0, -1000.0, 1000.0, 0.0]], dtype=np.float32)
    y = np.array([[1.0, 0.0, 0.0, 1.0, 1.0]], dtype=np.float32)
    loss = BinaryCrossEntropy()
    with warnings.catch_warnings(), np.errstate(all="raise", under="ignore"):
        warnings.simplefilter("error")
        value = loss.direct(to_device(z), to_device(y))
        grad = to_host(loss.prime(to_device(z), to_device(y)))
    assert math.isfinite(value)
    assert value == pytest.approx(2000.0 + math.log(2.0), rel=1e-6)
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(grad, [[-1.0, 1.0, 0.0, 0.0, -0.5]], atol=1e-7)
    with warnings.catch_warnings(), np.errstate(all="raise", under="ignore"):
        warnings.simplefilter("error")
        z = to_device(np.full((1, 1), -1000.0, np.float32))
        right = loss.direct(z, to_device(np.zeros((1, 1))))
    assert right == 0.0


# ==================================================================================== CCE
def _softmax(row, t, eps=1e-8):
    scaled = [math.exp(v / (t + eps)) for v in row]
    total = sum(scaled)
    return [v / total for v in scaled]


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_cce_hand_worked(temperature):
    z = np.array([[1.0, 2.0, 3.0], [0.5, -0.5, 0.0]])
    y = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    loss = CategoricalCrossEntropy(temperature)
    p0, p1 = _softmax(z[0], temperature), _softmax(z[1], temperature)
    expected = -(math.log(p0[2] + 1e-8) + math.log(p1[0] + 1e-8)) / 2
    assert loss.direct(to_device(z), to_device(y)) == pytest.approx(expected, rel=1e-12)
    t = temperature + 1e-8
    expected_prime = (np.array([p0, p1]) - y) / t / 2
    np.testing.assert_allclose(
        to_host(loss.prime(to_device(z), to_device(y))), expected_prime, rtol=1e-12
    )


def test_cce_temperature_changes_the_value():
    z = to_device(np.array([[1.0, 2.0, 3.0]]))
    y = to_device(np.array([[0.0, 0.0, 1.0]]))
    one = CategoricalCrossEntropy(1.0).direct(z, y)
    three = CategoricalCrossEntropy(3.0).direct(z, y)
    assert one == pytest.approx(-math.log(_softmax([1, 2, 3], 1.0)[2] + 1e-8), rel=1e-12)
    assert three == pytest.approx(-math.log(_softmax([1, 2, 3], 3.0)[2] + 1e-8), rel=1e-12)
    assert three > one


def test_cce_extreme_logits():
    z = np.array([[-1000.0, 0.0, 1000.0]], dtype=np.float32)
    y = np.array([[0.0, 0.0, 1.0]], dtype=np.float32)
    with warnings.catch_warnings(), np.errstate(all="raise", under="ignore"):
        warnings.simplefilter("error")
        value = CategoricalCrossEntropy().direct(to_device(z), to_device(y))
        grad = to_host(CategoricalCrossEntropy().prime(to_device(z), to_device(y)))
    assert math.isfinite(value) and value == pytest.approx(0.0, abs=1e-6)
    assert np.isfinite(grad).all()


def test_cce_config_keeps_temperature_and_epsilon():
    loss = CategoricalCrossEntropy(temperature=2.5, epsilon=1e-6)
    config = loss.get_config()
    assert config == {"type": "CategoricalCrossEntropy", "temperature": 2.5, "epsilon": 1e-6}
    rebuilt = CategoricalCrossEntropy(**{k: v for k, v in config.items() if k != "type"})
    assert (rebuilt.temperature, rebuilt.epsilon) == (2.5, 1e-6)
    assert CategoricalCrossEntropy().get_config() == {
        "type": "CategoricalCrossEntropy",
        "temperature": 1.0,
        "epsilon": 1e-8,
    }


def test_config_of_the_other_losses():
    assert MSE().get_config() == {"type": "MSE"}
    assert BinaryCrossEntropy().get_config() == {"type": "BinaryCrossEntropy"}
    assert Loss().get_config() == {"type": "Loss"}
    for loss in (MSE(), BinaryCrossEntropy()):
        assert type(loss)(**{k: v for k, v in loss.get_config().items() if k != "type"})


# ============================================================= prime vs finite differences
def _targets(name: str, shape, rng):
    if name == "MSE":
        return rng.standard_normal(shape)
    if name == "BinaryCrossEntropy":
        return rng.uniform(0, 1, shape)  # soft labels too
    return np.eye(shape[1])[rng.integers(0, shape[1], shape[0])]  # one-hot


LOSS_MAKERS = {
    "MSE": MSE,
    "BCE": BinaryCrossEntropy,
    "CCE": CategoricalCrossEntropy,
    "CCE(T=2)": lambda: CategoricalCrossEntropy(2.0),
    "CCE(T=0.7, eps=1e-9)": lambda: CategoricalCrossEntropy(0.7, 1e-9),
}
SHAPES = [(1, 3), (4, 5), (3, 1)]
PRIME_CASES = [
    (name, shape)
    for name in LOSS_MAKERS
    for shape in SHAPES
    if not (name.startswith("CCE") and shape[1] == 1)  # one class: the softmax is constant
]


@pytest.mark.parametrize(("maker", "shape"), PRIME_CASES)
def test_prime_matches_finite_differences(maker, shape):
    loss = LOSS_MAKERS[maker]()
    name = type(loss).__name__
    rng = np.random.default_rng(shape[0] * 10 + shape[1])
    z = to_device(rng.standard_normal(shape))
    y = to_device(_targets(name, shape, rng))
    analytic = to_host(loss.prime(z, y)).copy()
    numeric = numerical_gradient(lambda: loss.direct(z, y), z)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("make", [MSE, BinaryCrossEntropy, lambda: CategoricalCrossEntropy(2.0)])
def test_value_and_gradient_agree_with_direct_and_prime(make):
    loss = make()
    rng = np.random.default_rng(0)
    z = to_device(rng.standard_normal((4, 3)))
    y = to_device(np.eye(3)[[0, 2, 1, 1]])
    value, grad = loss.value_and_gradient(z, y)
    assert float(value) == pytest.approx(loss.direct(z, y), rel=1e-12)
    np.testing.assert_allclose(to_host(grad), to_host(loss.prime(z, y)), rtol=1e-12)


def test_float32_in_float32_out():
    z = to_device(np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32))
    y = to_device(np.eye(4, dtype=np.float32)[[0, 1, 3]])
    for loss in (MSE(), BinaryCrossEntropy(), CategoricalCrossEntropy()):
        grad = loss.prime(z, y)
        assert isinstance(grad, xp.ndarray) and to_host(grad).dtype == np.float32


# ============================================================================= bad input
@pytest.mark.parametrize("make", [MSE, BinaryCrossEntropy, CategoricalCrossEntropy])
@pytest.mark.parametrize(
    ("out_shape", "y_shape"), [((2, 3), (2, 4)), ((2, 3), (3, 3)), ((2, 3), (6,)), ((), ())]
)
def test_shape_mismatch_raises(make, out_shape, y_shape):
    z, y = to_device(np.zeros(out_shape)), to_device(np.zeros(y_shape))
    with pytest.raises(ValueError, match="output and expected"):
        make().direct(z, y)
    with pytest.raises(ValueError, match="output and expected"):
        make().prime(z, y)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 0.0, "epsilon": 0.0}, "epsilon"),  # T + ε divides the logits
        ({"epsilon": -1e-3}, "epsilon"),
    ],
)
def test_cce_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        CategoricalCrossEntropy(**kwargs)


@pytest.mark.parametrize("make", [MSE, BinaryCrossEntropy, CategoricalCrossEntropy])
def test_empty_batch_raises(make):
    with pytest.raises(ValueError, match="no sample"):
        make().direct(to_device(np.zeros((0, 3))), to_device(np.zeros((0, 3))))


def test_cce_needs_two_dimensional_input():
    z, y = to_device(np.zeros(3)), to_device(np.array([0.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match="output and expected"):
        CategoricalCrossEntropy().direct(z, y)
    with pytest.raises(ValueError, match="output and expected"):
        CategoricalCrossEntropy().prime(z, y)
