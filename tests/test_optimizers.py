"""Optimizers against updates worked out by hand, on tiny fake layers.

The fake layers hold float64 arrays so that the comparisons can be tight; the numbers
in the comments were computed by hand from the formulas of the spec.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
import pytest

from mpneuralnetwork import optimizers, to_device, to_host, xp
from mpneuralnetwork.activations import ReLU
from mpneuralnetwork.optimizers import SGD, Adam, Optimizer, RMSprop


class FakeLayer:
    """An object exposing ``params`` like a layer: ``{name: (value, gradient)}``."""

    def __init__(self, **values: list[float]) -> None:
        self.names = list(values)
        for name, value in values.items():
            setattr(self, name, to_device(np.array(value, dtype=np.float64)))
            setattr(self, f"{name}_gradient", to_device(np.zeros(len(value))))

    def set_gradient(self, name: str, gradient: list[float]) -> None:
        setattr(self, f"{name}_gradient", to_device(np.array(gradient, dtype=np.float64)))

    def value(self, name: str) -> np.ndarray:
        return to_host(getattr(self, name)).copy()

    def gradient(self, name: str) -> np.ndarray:
        return to_host(getattr(self, f"{name}_gradient")).copy()

    @property
    def params(self) -> dict[str, tuple[Any, Any]]:
        return {n: (getattr(self, n), getattr(self, f"{n}_gradient")) for n in self.names}


def host(store: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: to_host(v) for k, v in store.items()}


# ------------------------------------------------------------------------ SGD
def test_sgd_two_steps_with_momentum_and_l2() -> None:
    layer = FakeLayer(weights=[1.0, -2.0])
    opt = SGD(learning_rate=0.1, regularization="L2", weight_decay=0.01, momentum=0.9)

    layer.set_gradient("weights", [0.5, 0.5])
    opt.step([layer])
    # g = [0.5 + 0.01, 0.5 - 0.02] = [0.51, 0.48]; v = -0.1 g; w = w + v
    np.testing.assert_allclose(layer.gradient("weights"), [0.51, 0.48], rtol=1e-12)
    np.testing.assert_allclose(layer.value("weights"), [0.949, -2.048], rtol=1e-12)
    np.testing.assert_allclose(
        to_host(opt.velocities["layer_0_weights"]), [-0.051, -0.048], rtol=1e-12
    )

    layer.set_gradient("weights", [0.5, 0.5])
    opt.step([layer])
    # g = [0.5 + 0.00949, 0.5 - 0.02048] = [0.50949, 0.47952]
    # v = 0.9 * [-0.051, -0.048] - 0.1 g = [-0.096849, -0.091152]
    np.testing.assert_allclose(layer.gradient("weights"), [0.50949, 0.47952], rtol=1e-12)
    np.testing.assert_allclose(
        to_host(opt.velocities["layer_0_weights"]), [-0.096849, -0.091152], rtol=1e-12
    )
    np.testing.assert_allclose(layer.value("weights"), [0.852151, -2.139152], rtol=1e-12)


def test_sgd_without_momentum_is_plain_gradient_descent() -> None:
    layer = FakeLayer(weights=[3.0])
    opt = SGD(learning_rate=0.5, weight_decay=0.0, momentum=0.0)
    layer.set_gradient("weights", [2.0])
    opt.step([layer])
    np.testing.assert_allclose(layer.value("weights"), [2.0])
    layer.set_gradient("weights", [-4.0])
    opt.step([layer])
    np.testing.assert_allclose(layer.value("weights"), [4.0])


def test_sgd_l1_adds_the_sign_to_the_gradient() -> None:
    layer = FakeLayer(weights=[2.0, -3.0, 0.0])
    opt = SGD(learning_rate=1.0, regularization="L1", weight_decay=0.25, momentum=0.0)
    layer.set_gradient("weights", [1.0, 1.0, 1.0])
    opt.step([layer])
    # g = 1 + 0.25 * sign(w) = [1.25, 0.75, 1.0]
    np.testing.assert_allclose(layer.gradient("weights"), [1.25, 0.75, 1.0])
    np.testing.assert_allclose(layer.value("weights"), [0.75, -3.75, -1.0])


# -------------------------------------------------------------------- RMSprop
def test_rmsprop_two_steps() -> None:
    layer = FakeLayer(weights=[1.0, -1.0])
    opt = RMSprop(learning_rate=0.01, weight_decay=0.0, decay_rate=0.9, epsilon=1e-8)
    layer.set_gradient("weights", [2.0, -1.0])
    opt.step([layer])
    # c = 0.1 g^2 = [0.4, 0.1]; w -= 0.01 g / sqrt(c)
    c1 = np.array([0.4, 0.1])
    np.testing.assert_allclose(to_host(opt.cache["layer_0_weights"]), c1, rtol=1e-12)
    w1 = np.array([1.0 - 0.02 / (math.sqrt(0.4) + 1e-8), -1.0 + 0.01 / (math.sqrt(0.1) + 1e-8)])
    np.testing.assert_allclose(layer.value("weights"), w1, rtol=1e-12)
    # by hand: 1 - 0.0316227766 and -1 + 0.0316227766
    np.testing.assert_allclose(w1, [0.9683772234, -0.9683772234], rtol=1e-8)

    layer.set_gradient("weights", [2.0, 3.0])
    opt.step([layer])
    # c = 0.9 c1 + 0.1 g^2 = [0.36 + 0.4, 0.09 + 0.9] = [0.76, 0.99]
    np.testing.assert_allclose(to_host(opt.cache["layer_0_weights"]), [0.76, 0.99], rtol=1e-12)
    w2 = w1 - 0.01 * np.array([2.0, 3.0]) / (np.sqrt([0.76, 0.99]) + 1e-8)
    np.testing.assert_allclose(layer.value("weights"), w2, rtol=1e-12)


def test_rmsprop_l2_is_added_to_the_gradient_in_place() -> None:
    layer = FakeLayer(weights=[2.0])
    opt = RMSprop(learning_rate=0.1, regularization="L2", weight_decay=0.5, decay_rate=0.0)
    layer.set_gradient("weights", [1.0])
    opt.step([layer])
    # g = 1 + 0.5 * 2 = 2; c = g^2 = 4; w = 2 - 0.1 * 2 / 2 = 1.9
    np.testing.assert_allclose(layer.gradient("weights"), [2.0])
    np.testing.assert_allclose(to_host(opt.cache["layer_0_weights"]), [4.0])
    np.testing.assert_allclose(layer.value("weights"), [1.9], rtol=1e-9)


# ----------------------------------------------------------------------- Adam
def test_adam_bias_correction_makes_the_first_steps_lr_sized() -> None:
    layer = FakeLayer(weights=[1.0, 1.0])
    opt = Adam(learning_rate=0.1, weight_decay=0.0)
    layer.set_gradient("weights", [0.5, -2.0])
    opt.step([layer])
    assert opt.t == 1
    # m = 0.1 g, v = 0.001 g^2; corrected: m̂ = g, v̂ = g^2 -> step = lr · sign(g)
    np.testing.assert_allclose(to_host(opt.momentums["layer_0_weights"]), [0.05, -0.2])
    np.testing.assert_allclose(to_host(opt.velocities["layer_0_weights"]), [0.00025, 0.004])
    np.testing.assert_allclose(layer.value("weights"), [0.9, 1.1], rtol=1e-6)

    layer.set_gradient("weights", [0.5, -2.0])
    opt.step([layer])
    assert opt.t == 2
    # m = 0.9·0.05 + 0.05 = 0.095 (= 0.19 g); v = 0.999·0.00025 + 0.00025 (= 0.001999 g^2)
    np.testing.assert_allclose(to_host(opt.momentums["layer_0_weights"]), [0.095, -0.38])
    np.testing.assert_allclose(
        to_host(opt.velocities["layer_0_weights"]), [0.00049975, 0.0079960], rtol=1e-12
    )
    np.testing.assert_allclose(layer.value("weights"), [0.8, 1.2], rtol=1e-6)


def reference_adam(
    w: np.ndarray, grads: list[np.ndarray], lr: float, b1: float, b2: float, eps: float
) -> np.ndarray:
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    return w


def test_adam_changing_gradients_match_a_float64_reference() -> None:
    grads = [np.array([0.3, -1.0, 2.0]), np.array([-0.7, 0.2, 2.5]), np.array([0.1, 0.1, -1.0])]
    layer = FakeLayer(weights=[0.5, -0.5, 1.5])
    opt = Adam(learning_rate=0.05, weight_decay=0.0, beta1=0.8, beta2=0.99, epsilon=1e-8)
    for g in grads:
        layer.set_gradient("weights", list(g))
        opt.step([layer])
    expected = reference_adam(np.array([0.5, -0.5, 1.5]), grads, 0.05, 0.8, 0.99, 1e-8)
    np.testing.assert_allclose(layer.value("weights"), expected, rtol=1e-10)
    assert opt.t == 3


def test_adam_l2_is_decoupled_weight_decay() -> None:
    layer = FakeLayer(weights=[1.0, -2.0])
    opt = Adam(learning_rate=0.1, regularization="L2", weight_decay=0.1)
    layer.set_gradient("weights", [0.5, 0.5])
    opt.step([layer])
    # Adam step of lr·sign(g) = -0.1, then w -= lr·wd·w_old = 0.01·[1, -2]
    np.testing.assert_allclose(layer.value("weights"), [1.0 - 0.1 - 0.01, -2.0 - 0.1 + 0.02])
    # the gradient and the moments do not see the decay
    np.testing.assert_allclose(layer.gradient("weights"), [0.5, 0.5])
    np.testing.assert_allclose(to_host(opt.momentums["layer_0_weights"]), [0.05, 0.05])

    w1 = layer.value("weights")  # [0.89, -2.08]
    layer.set_gradient("weights", [0.5, 0.5])
    opt.step([layer])
    # second bias-corrected step is again -0.1 (constant gradient); decay 0.01·w1
    np.testing.assert_allclose(layer.value("weights"), w1 - 0.1 - 0.01 * w1, rtol=1e-6)
    np.testing.assert_allclose(layer.value("weights"), [0.7811, -2.1592], rtol=1e-6)


def test_adam_l1_adds_the_sign_term_to_the_gradient() -> None:
    layer = FakeLayer(weights=[1.0, -1.0])
    opt = Adam(learning_rate=0.1, regularization="L1", weight_decay=0.1)
    layer.set_gradient("weights", [0.5, 0.5])
    opt.step([layer])
    # g = 0.5 + 0.1·sign(w) = [0.6, 0.4]; first step is lr·sign(g), no decoupled term
    np.testing.assert_allclose(layer.gradient("weights"), [0.6, 0.4])
    np.testing.assert_allclose(to_host(opt.momentums["layer_0_weights"]), [0.06, 0.04])
    np.testing.assert_allclose(layer.value("weights"), [0.9, -1.1], rtol=1e-6)


# ------------------------------------------------------- regularization rules
@pytest.mark.parametrize(
    "make",
    [
        lambda: SGD(learning_rate=0.1, weight_decay=0.5, momentum=0.0),
        lambda: RMSprop(learning_rate=0.1, weight_decay=0.5),
        lambda: Adam(learning_rate=0.1, weight_decay=0.5),
        lambda: Adam(learning_rate=0.1, regularization="L1", weight_decay=0.5),
        lambda: SGD(learning_rate=0.1, regularization="L1", weight_decay=0.5),
    ],
)
def test_no_decay_on_bias_beta_gamma(make: Any) -> None:
    layer = FakeLayer(
        weights=[1.0, 2.0], biases=[1.0, 2.0], beta=[1.0, 2.0], gamma=[1.0, 2.0], my_bias=[3.0]
    )
    opt = make()
    opt.step([layer])  # all gradients are zero: only the regularization can move anything
    for name in ("biases", "beta", "gamma"):
        np.testing.assert_array_equal(layer.value(name), [1.0, 2.0], err_msg=name)
    np.testing.assert_array_equal(layer.value("my_bias"), [3.0])
    assert np.all(np.abs(layer.value("weights")) < [1.0, 2.0]), "weights were not decayed"


def test_apply_regularization_values() -> None:
    w = to_device(np.array([2.0, -3.0, 0.0]))
    l2 = Optimizer(0.1, "L2", 0.5)
    l1 = Optimizer(0.1, "L1", 0.5)
    np.testing.assert_allclose(to_host(l2.apply_regularization("weights", w)), [1.0, -1.5, 0.0])
    np.testing.assert_allclose(to_host(l1.apply_regularization("kernels", w)), [0.5, -0.5, 0.0])
    for name in ("biases", "beta", "gamma"):
        assert np.all(to_host(np.asarray(l2.apply_regularization(name, w))) == 0)
        assert np.all(to_host(np.asarray(l1.apply_regularization(name, w))) == 0)


# ---------------------------------------------------------- layers and state
def test_objects_without_params_are_skipped_and_state_is_keyed_by_index() -> None:
    first, second = FakeLayer(weights=[1.0]), FakeLayer(kernels=[1.0, 1.0])
    first.set_gradient("weights", [1.0])
    second.set_gradient("kernels", [1.0, -1.0])
    layers = [object(), first, ReLU(), "not a layer", second]
    for opt, store in (
        (SGD(learning_rate=0.1), "velocities"),
        (RMSprop(), "cache"),
        (Adam(), "momentums"),
    ):
        opt.step(layers)
        assert sorted(getattr(opt, store)) == ["layer_1_weights", "layer_4_kernels"]
        assert getattr(opt, store)["layer_4_kernels"].shape == (2,)


def test_base_optimizer_step_does_nothing() -> None:
    layer = FakeLayer(weights=[1.0, 2.0])
    layer.set_gradient("weights", [5.0, 5.0])
    opt = Optimizer(0.1, "L2", 0.01)
    opt.step([layer])
    np.testing.assert_array_equal(layer.value("weights"), [1.0, 2.0])
    np.testing.assert_array_equal(layer.gradient("weights"), [5.0, 5.0])
    assert opt.params == {}


def test_params_keys_and_they_are_the_live_state() -> None:
    layer = FakeLayer(weights=[1.0])
    layer.set_gradient("weights", [1.0])
    sgd, rms, adam = SGD(), RMSprop(), Adam()
    for opt in (sgd, rms, adam):
        opt.step([layer])
    assert set(sgd.params) == {"velocities"}
    assert set(rms.params) == {"cache"}
    assert set(adam.params) == {"t", "momentums", "velocities"}
    assert sgd.params["velocities"] is sgd.velocities
    assert rms.params["cache"] is rms.cache
    assert adam.params["momentums"] is adam.momentums
    assert adam.params["velocities"] is adam.velocities
    assert adam.params["t"] == 1 and isinstance(adam.params["t"], int)


def test_defaults_and_get_config() -> None:
    assert SGD().get_config() == {
        "type": "SGD",
        "learning_rate": 0.01,
        "regularization": "L2",
        "weight_decay": 0.001,
        "momentum": 0.1,
    }
    assert RMSprop().get_config() == {
        "type": "RMSprop",
        "learning_rate": 0.001,
        "regularization": "L2",
        "weight_decay": 0.001,
        "decay_rate": 0.9,
        "epsilon": 1e-8,
    }
    assert Adam().get_config() == {
        "type": "Adam",
        "learning_rate": 0.001,
        "regularization": "L2",
        "weight_decay": 0.001,
        "beta1": 0.9,
        "beta2": 0.999,
        "epsilon": 1e-8,
    }
    assert Optimizer(0.1, "L1", 0.0).get_config() == {
        "type": "Optimizer",
        "learning_rate": 0.1,
        "regularization": "L1",
        "weight_decay": 0.0,
    }
    # the config rebuilds an equal optimizer
    adam = Adam(learning_rate=0.02, regularization="L1", weight_decay=0.3, beta1=0.7)
    config = adam.get_config()
    assert config.pop("type") == "Adam"
    assert Adam(**config).get_config() == adam.get_config()


@pytest.mark.parametrize(
    ("make", "argument"),
    [
        (lambda: SGD(learning_rate=0.0), "learning_rate"),
        (lambda: Adam(learning_rate=-1.0), "learning_rate"),
        (lambda: RMSprop(regularization="L3"), "regularization"),  # type: ignore[arg-type]
        (lambda: Optimizer(0.1, "L3", 0.1), "regularization"),  # type: ignore[arg-type]
        (lambda: SGD(weight_decay=-0.1), "weight_decay"),
        (lambda: SGD(momentum=1.5), "momentum"),
        (lambda: SGD(momentum=-0.1), "momentum"),
        (lambda: Adam(beta1=1.0), "beta1"),
        (lambda: Adam(beta2=1.2), "beta2"),
        (lambda: RMSprop(decay_rate=1.0), "decay_rate"),
        (lambda: Adam(learning_rate=float("nan")), "learning_rate"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_argument(make: Any, argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        make()


def test_float32_parameters_stay_float32_and_are_updated_in_place() -> None:
    w = to_device(np.array([[1.0, 2.0]], dtype=np.float32))
    g = to_device(np.array([[0.5, 0.5]], dtype=np.float32))

    class Layer32:
        params = property(lambda self: {"weights": (w, g)})

    for opt in (SGD(), RMSprop(), Adam()):
        before = to_host(w).copy()
        opt.step([Layer32()])
        assert w.dtype == np.float32
        assert not np.array_equal(to_host(w), before)


class ArrayLayer:
    """A layer-like object over given float32 arrays (any shape, any memory order)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = {n: to_device(v) for n, v in values.items()}
        self.gradients = {n: xp.zeros_like(v) for n, v in self.values.items()}

    @property
    def params(self) -> dict[str, tuple[Any, Any]]:
        return {n: (self.values[n], self.gradients[n]) for n in self.values}


@pytest.mark.parametrize("regularization", ["L1", "L2"])
@pytest.mark.parametrize("optimizer_class", [SGD, RMSprop, Adam])
def test_blocked_updates_equal_whole_array_updates(
    optimizer_class: type, regularization: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large parameters are updated block by block (CPU cache); the result is the same.

    Element-wise updates give bitwise-equal results however the array is cut, and a
    parameter that is not contiguous is updated whole.
    """
    if optimizers.BLOCK is None:
        pytest.skip("no blocks on this backend: each update is one kernel on a GPU")
    assert optimizers.BLOCK < 300_000
    rng = np.random.default_rng(3)
    values = {
        "weights": rng.standard_normal((600, 500)).astype(np.float32),  # 300,000 > BLOCK
        "biases": rng.standard_normal((1, 500)).astype(np.float32),
        "kernels": rng.standard_normal((500, 600)).astype(np.float32),
    }
    steps = [
        {n: rng.standard_normal(v.shape).astype(np.float32) for n, v in values.items()}
        for _ in range(3)
    ]

    def run(block: int | None) -> dict[str, np.ndarray]:
        monkeypatch.setattr(optimizers, "BLOCK", block)
        layer = ArrayLayer({n: v.copy() for n, v in values.items()})
        layer.values["kernels"] = layer.values["kernels"].T.copy().T  # not C-contiguous
        layer.gradients["kernels"] = xp.zeros_like(layer.values["kernels"])
        optimizer = optimizer_class(regularization=regularization, weight_decay=0.01)
        for gradients in steps:
            for n, g in gradients.items():
                layer.gradients[n][...] = to_device(g)
            optimizer.step([layer])
        return {n: to_host(v) for n, v in layer.values.items()}

    blocked, whole = run(optimizers.BLOCK), run(None)
    for name in values:
        assert not np.array_equal(blocked[name], values[name])
        np.testing.assert_array_equal(blocked[name], whole[name])


def test_adam_advances_t_once_per_step_over_a_layer_with_weights_and_biases() -> None:
    layer = FakeLayer(weights=[1.0, -2.0, 0.5], biases=[0.25])
    g_w, g_b = np.array([0.3, -1.2, 2.0]), np.array([-0.6])
    layer.set_gradient("weights", list(g_w))
    layer.set_gradient("biases", list(g_b))
    opt = Adam(learning_rate=0.1, weight_decay=0.0, beta1=0.8, beta2=0.9, epsilon=1e-3)
    opt.step([layer])
    assert opt.t == 1
    # both parameters take the first step (t = 1), not the second
    expected_w = reference_adam(np.array([1.0, -2.0, 0.5]), [g_w], 0.1, 0.8, 0.9, 1e-3)
    expected_b = reference_adam(np.array([0.25]), [g_b], 0.1, 0.8, 0.9, 1e-3)
    np.testing.assert_allclose(layer.value("weights"), expected_w, rtol=1e-12)
    np.testing.assert_allclose(layer.value("biases"), expected_b, rtol=1e-12)


# ------------------------------------------------ scikit-learn style parameters
@pytest.mark.parametrize("cls", [SGD, RMSprop, Adam])
def test_get_params_are_the_constructor_arguments(cls):
    optimizer = cls(learning_rate=0.05, clipnorm=2.0)
    params = optimizer.get_params(deep=True)
    config = {k: v for k, v in optimizer.get_config().items() if k != "type"}
    # Arguments get_config leaves out at their defaults (clipvalue, nesterov, ...) too.
    left_out = {"clipvalue": None, "nesterov": False, "no_bias_correction": False}
    assert params == {
        **{k: v for k, v in left_out.items() if k in inspect.signature(cls).parameters},
        **config,
    }
    assert params["clipnorm"] == 2.0 and params["learning_rate"] == 0.05
    assert repr(cls(**params)) == repr(optimizer)


def test_set_params_checks_values_and_keeps_the_state():
    optimizer = Adam()
    optimizer.t, optimizer.momentums = 3, {"layer_0_weights": np.ones(2)}
    assert optimizer.set_params(learning_rate=0.5, clipvalue=1.0) is optimizer
    assert optimizer.learning_rate == 0.5 and optimizer.clipvalue == 1.0
    assert optimizer.t == 3 and list(optimizer.momentums) == ["layer_0_weights"]
    with pytest.raises(ValueError, match="Adam: beta1 must be a number in"):
        optimizer.set_params(beta1=1.5)
    assert optimizer.beta1 == 0.9  # a refused value changes nothing
    with pytest.raises(ValueError, match=r"unknown arguments \['momentum'\]"):
        optimizer.set_params(momentum=0.5)


def test_sklearn_clone_copies_an_optimizer():
    base = pytest.importorskip("sklearn.base", reason="scikit-learn's clone")
    optimizer = SGD(learning_rate=np.float64(0.2), momentum=0.3)
    optimizer.velocities["layer_0_weights"] = np.ones(2)
    twin = base.clone(optimizer)
    assert type(twin) is SGD and twin is not optimizer
    assert twin.get_params() == optimizer.get_params() and twin.velocities == {}
