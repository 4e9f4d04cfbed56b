"""SGD(nesterov=True), Adagrad and Adam(no_bias_correction=True): PyTorch, hand-worked
steps, configuration, clipping, blocks, and their state through save/load."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers_model import assert_same_arrays, model_arrays
from mpneuralnetwork import optimizers, set_seed, to_device, to_host, xp
from mpneuralnetwork.activations import ReLU
from mpneuralnetwork.layers import Dense
from mpneuralnetwork.losses import MSE
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import SGD, Adagrad, Adam
from mpneuralnetwork.serialization import load_model, save_model
from test_optimizers import ArrayLayer, FakeLayer, reference_adam

W0 = [0.5, -1.5, 2.0, 0.0]


def gradients(steps: int = 10) -> list[np.ndarray]:
    """Changing gradients: signs flip, sizes vary (a constant gradient hides mistakes)."""
    rng = np.random.default_rng(7)
    return [rng.standard_normal(4) * rng.uniform(0.1, 3.0) for _ in range(steps)]


def run_ours(optimizer: Any, grads: list[np.ndarray]) -> np.ndarray:
    layer = FakeLayer(weights=W0)
    for g in grads:
        layer.set_gradient("weights", list(g))
        optimizer.step([layer])
    return layer.value("weights")


def run_torch(make: Any, grads: list[np.ndarray]) -> np.ndarray:
    torch = pytest.importorskip("torch", reason="the updates are compared with PyTorch's")
    w = torch.tensor(W0, dtype=torch.float64, requires_grad=True)
    optimizer = make(torch.optim, [w])
    for g in grads:
        optimizer.zero_grad()
        w.grad = torch.tensor(g, dtype=torch.float64)
        optimizer.step()
    return w.detach().numpy()


# ---------------------------------------------------------------- SGD, Nesterov
@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize(("momentum", "weight_decay"), [(0.9, 0.0), (0.5, 0.05), (0.0, 0.01)])
def test_sgd_equals_pytorch(nesterov: bool, momentum: float, weight_decay: float) -> None:
    grads = gradients()
    ours = run_ours(SGD(0.05, "L2", weight_decay, momentum, nesterov=nesterov), grads)
    # PyTorch refuses Nesterov without momentum; it is then plain gradient descent
    with_nesterov = nesterov and momentum > 0
    theirs = run_torch(
        lambda o, p: o.SGD(
            p, lr=0.05, momentum=momentum, weight_decay=weight_decay, nesterov=with_nesterov
        ),
        grads,
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)


def test_nesterov_two_steps_by_hand() -> None:
    layer = FakeLayer(weights=[1.0])
    opt = SGD(learning_rate=0.1, weight_decay=0.0, momentum=0.5, nesterov=True)
    layer.set_gradient("weights", [2.0])
    opt.step([layer])
    # v = -0.2; w = 1 + 0.5·(-0.2) - 0.2 = 0.7
    np.testing.assert_allclose(to_host(opt.velocities["layer_0_weights"]), [-0.2])
    np.testing.assert_allclose(layer.value("weights"), [0.7], rtol=1e-14)
    layer.set_gradient("weights", [-1.0])
    opt.step([layer])
    # v = 0.5·(-0.2) + 0.1 = 0; w = 0.7 + 0 + 0.1 = 0.8
    np.testing.assert_allclose(to_host(opt.velocities["layer_0_weights"]), [0.0], atol=1e-15)
    np.testing.assert_allclose(layer.value("weights"), [0.8], rtol=1e-14)


def test_nesterov_is_the_last_argument_and_off_by_default() -> None:
    positional = SGD(0.1, "L1", 0.01, 0.9, 2.0, 0.5)  # 1.1's order still works
    assert positional.nesterov is False
    assert (positional.clipnorm, positional.clipvalue) == (2.0, 0.5)
    assert "nesterov" not in SGD().get_config()  # the 1.1 configuration
    config = SGD(momentum=0.9, nesterov=True).get_config()
    assert config["nesterov"] is True
    config.pop("type")
    assert SGD(**config).get_config() == {"type": "SGD", **config}
    assert repr(SGD(nesterov=True)).endswith("momentum=0.1, nesterov=True)")
    # without it, the same gradients give a different path
    grads = gradients(3)
    assert not np.allclose(
        run_ours(SGD(0.1, momentum=0.9), grads),
        run_ours(SGD(0.1, momentum=0.9, nesterov=True), grads),
    )


# ---------------------------------------------------------------------- Adagrad
@pytest.mark.parametrize(("lr", "weight_decay", "eps"), [(0.1, 0.0, 1e-10), (0.5, 0.05, 1e-3)])
def test_adagrad_equals_pytorch(lr: float, weight_decay: float, eps: float) -> None:
    grads = gradients()
    ours = run_ours(Adagrad(lr, "L2", weight_decay, eps), grads)
    theirs = run_torch(lambda o, p: o.Adagrad(p, lr=lr, weight_decay=weight_decay, eps=eps), grads)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)


def test_adagrad_two_steps_by_hand() -> None:
    layer = FakeLayer(weights=[1.0, -1.0])
    opt = Adagrad(learning_rate=0.1, weight_decay=0.0, epsilon=1e-10)
    layer.set_gradient("weights", [3.0, -4.0])
    opt.step([layer])
    # s = [9, 16]; w -= 0.1·g/√s = 0.1·[1, -1]
    np.testing.assert_allclose(to_host(opt.accumulators["layer_0_weights"]), [9.0, 16.0])
    np.testing.assert_allclose(layer.value("weights"), [0.9, -0.9], rtol=1e-9)
    layer.set_gradient("weights", [4.0, 3.0])
    opt.step([layer])
    # s = [25, 25]; w -= 0.1·g/5 = [0.08, 0.06]
    np.testing.assert_allclose(to_host(opt.accumulators["layer_0_weights"]), [25.0, 25.0])
    np.testing.assert_allclose(layer.value("weights"), [0.82, -0.96], rtol=1e-9)


def test_adagrad_regularization_goes_through_the_gradient() -> None:
    layer = FakeLayer(weights=[2.0, -2.0], biases=[2.0])
    opt = Adagrad(learning_rate=1.0, regularization="L1", weight_decay=0.5)
    layer.set_gradient("weights", [1.0, 1.0])
    opt.step([layer])
    # g = 1 + 0.5·sign(w) = [1.5, 0.5]: a step of lr·sign(g) = 1 each; biases not decayed
    np.testing.assert_allclose(layer.gradient("weights"), [1.5, 0.5])
    np.testing.assert_allclose(layer.value("weights"), [1.0, -3.0], rtol=1e-9)
    np.testing.assert_array_equal(layer.value("biases"), [2.0])


def test_adagrad_defaults_params_and_config() -> None:
    assert Adagrad().get_config() == {
        "type": "Adagrad",
        "learning_rate": 0.01,
        "regularization": "L2",
        "weight_decay": 0.001,
        "epsilon": 1e-10,
    }
    opt = Adagrad(0.2, "L1", 0.0, 1e-6, clipnorm=1.0, clipvalue=0.5)
    config = opt.get_config()
    config.pop("type")
    assert Adagrad(**config).get_config() == opt.get_config()
    layer = FakeLayer(weights=[1.0])
    layer.set_gradient("weights", [1.0])
    opt.step([layer])
    assert set(opt.params) == {"accumulators"}
    assert opt.params["accumulators"] is opt.accumulators
    assert sorted(opt.accumulators) == ["layer_0_weights"]


# ------------------------------------------------------- Adam, no bias correction
def test_adam_without_bias_correction_by_hand() -> None:
    layer = FakeLayer(weights=[1.0, 1.0])
    opt = Adam(learning_rate=0.1, weight_decay=0.0, epsilon=1e-8, no_bias_correction=True)
    layer.set_gradient("weights", [0.5, -2.0])
    opt.step([layer])
    # m = 0.1·g = [0.05, -0.2]; v = 0.001·g² = [0.00025, 0.004];
    # w -= 0.1·m/(√v + ε): √v = [0.0158114, 0.0632456] -> steps ±0.1·3.16228 = ±0.316228
    step1 = 0.1 * np.array([0.05, -0.2]) / (np.sqrt([0.00025, 0.004]) + 1e-8)
    np.testing.assert_allclose(step1, [0.316227766, -0.316227766], rtol=1e-6)
    np.testing.assert_allclose(layer.value("weights"), 1.0 - step1, rtol=1e-12)
    layer.set_gradient("weights", [0.5, -2.0])
    opt.step([layer])
    # m = 0.19·g = [0.095, -0.38]; v = 0.001999·g² = [0.00049975, 0.007996]
    step2 = 0.1 * np.array([0.095, -0.38]) / (np.sqrt([0.00049975, 0.007996]) + 1e-8)
    np.testing.assert_allclose(step2, [0.424957, -0.424957], rtol=1e-5)
    np.testing.assert_allclose(layer.value("weights"), 1.0 - step1 - step2, rtol=1e-12)
    assert opt.t == 2


def test_adam_without_bias_correction_keeps_the_decoupled_decay() -> None:
    layer = FakeLayer(weights=[1.0])
    opt = Adam(learning_rate=0.1, weight_decay=0.1, no_bias_correction=True)
    layer.set_gradient("weights", [0.5])
    opt.step([layer])
    # w·(1 − lr·wd) = 0.99, then the uncorrected step 0.1·0.05/(√0.00025 + 1e-8)
    expected = 0.99 - 0.1 * 0.05 / (math.sqrt(0.00025) + 1e-8)
    np.testing.assert_allclose(layer.value("weights"), [expected], rtol=1e-12)
    np.testing.assert_allclose(layer.gradient("weights"), [0.5])


def test_adam_default_is_unchanged_and_the_option_is_in_the_config() -> None:
    grads = gradients(4)
    opt = Adam(learning_rate=0.05, weight_decay=0.0, beta1=0.8, beta2=0.99)
    expected = reference_adam(np.array(W0), grads, 0.05, 0.8, 0.99, 1e-8)
    np.testing.assert_allclose(run_ours(opt, grads), expected, rtol=1e-10)
    assert opt.no_bias_correction is False
    assert "no_bias_correction" not in Adam().get_config()  # the 1.1 configuration
    config = Adam(no_bias_correction=True).get_config()
    assert config["no_bias_correction"] is True
    config.pop("type")
    assert Adam(**config).no_bias_correction is True
    positional = Adam(0.01, "L2", 0.0, 0.9, 0.999, 1e-8, None, 0.5)
    assert positional.clipvalue == 0.5 and positional.no_bias_correction is False


# -------------------------------------------------------------- all three options
def nesterov() -> SGD:
    return SGD(learning_rate=0.05, momentum=0.9, nesterov=True)


def adagrad() -> Adagrad:
    return Adagrad(learning_rate=0.05, regularization="L1", weight_decay=0.001)


def uncorrected() -> Adam:
    return Adam(learning_rate=0.01, no_bias_correction=True)


NEW = {"nesterov": nesterov, "adagrad": adagrad, "uncorrected": uncorrected}


@pytest.mark.parametrize(
    ("make", "argument"),
    [
        (lambda: SGD(nesterov="yes"), "nesterov"),
        (lambda: SGD(nesterov=1), "nesterov"),
        (lambda: Adam(no_bias_correction=None), "no_bias_correction"),
        (lambda: Adagrad(learning_rate=0.0), "learning_rate"),
        (lambda: Adagrad(epsilon=0.0), "epsilon"),
        (lambda: Adagrad(epsilon=float("inf")), "epsilon"),
        (lambda: Adagrad(weight_decay=-1.0), "weight_decay"),
        (lambda: Adagrad(regularization="L3"), "regularization"),  # type: ignore[arg-type]
        (lambda: Adagrad(clipnorm=0.0), "clipnorm"),
    ],
)
def test_bad_arguments(make: Any, argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        make()


@pytest.mark.parametrize("name", list(NEW))
def test_clipping_applies(name: str) -> None:
    optimizer = type(NEW[name]())(**{**_arguments(NEW[name]()), "clipvalue": 0.25})
    layer = FakeLayer(weights=[0.0, 0.0])
    layer.set_gradient("weights", [5.0, -0.1])
    optimizer.step([layer])
    np.testing.assert_allclose(layer.gradient("weights"), [0.25, -0.1])
    reference = FakeLayer(weights=[0.0, 0.0])
    reference.set_gradient("weights", [0.25, -0.1])
    NEW[name]().step([reference])
    np.testing.assert_array_equal(layer.value("weights"), reference.value("weights"))


def _arguments(optimizer: Any) -> dict[str, Any]:
    config = optimizer.get_config()
    config.pop("type")
    return config


@pytest.mark.parametrize("name", list(NEW))
def test_blocked_updates_equal_whole_array_updates(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if optimizers.BLOCK is None:
        pytest.skip("no blocks on this backend: each update is one kernel on a GPU")
    rng = np.random.default_rng(5)
    weights = rng.standard_normal((60, 50)).astype(np.float32)
    steps = [rng.standard_normal(weights.shape).astype(np.float32) for _ in range(3)]

    def run(block: int | None) -> np.ndarray:
        monkeypatch.setattr(optimizers, "BLOCK", block)
        layer = ArrayLayer({"weights": weights.copy()})
        optimizer = NEW[name]()
        for g in steps:
            layer.gradients["weights"][...] = to_device(g)
            optimizer.step([layer])
        return to_host(layer.values["weights"])

    blocked, whole = run(700), run(None)  # 5 blocks, the last one short
    assert not np.array_equal(blocked, weights)
    np.testing.assert_array_equal(blocked, whole)


def _model(optimizer: Any) -> Model:
    return Model([Dense(6, input_size=3), ReLU(), Dense(2)], MSE(), optimizer)


def _data() -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(0).standard_normal((40, 3)).astype(np.float32)
    return x, np.stack([x[:, 0] * x[:, 1], x[:, 2] - x[:, 0]], axis=1)


@pytest.mark.parametrize("name", list(NEW))
def test_save_load_restores_the_configuration_and_the_state(name: str, tmp_path: Path) -> None:
    x, y = _data()
    model = _model(NEW[name]())
    model.train(x, y, epochs=2, batch_size=8, verbose=0)
    before = model_arrays(model)
    state = {k for k in before if k.startswith("optimizer/")}
    store = {"nesterov": "velocities", "adagrad": "accumulators", "uncorrected": "momentums"}
    assert any(k.startswith(f"optimizer/{store[name]}/") for k in state)
    loaded = load_model(save_model(model, tmp_path / "m"))
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert_same_arrays(model_arrays(loaded), before)


@pytest.mark.parametrize("name", list(NEW))
def test_resumed_training_equals_uninterrupted_training(name: str, tmp_path: Path) -> None:
    x, y = _data()
    kwargs: dict[str, Any] = {"batch_size": 8, "auto_evaluation": 0, "verbose": 0}
    set_seed(3)
    straight = _model(NEW[name]())
    straight.train(x, y, epochs=2, **kwargs)
    set_seed(4)
    straight.train(x, y, epochs=1, **kwargs)

    set_seed(3)
    first = _model(NEW[name]())
    first.train(x, y, epochs=2, **kwargs)
    resumed = load_model(save_model(first, tmp_path / "half"))
    set_seed(4)
    resumed.train(x, y, epochs=1, **kwargs)
    assert_same_arrays(model_arrays(resumed), model_arrays(straight))


def test_adagrad_state_is_float32_in_a_model() -> None:
    x, y = _data()
    model = _model(Adagrad())
    model.train(x, y, epochs=1, batch_size=8, verbose=0)
    assert model.optimizer.accumulators
    for value in model.optimizer.accumulators.values():
        assert value.dtype == np.float32 and bool(xp.all(value > 0))
