"""What users meet beyond the built-in classes.

Their own layers, losses and metrics (training, saving, ``load_model(custom_objects=)``),
and the permissions of saved files.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mpneuralnetwork import DTYPE, to_device, to_host, xp
from mpneuralnetwork.activations import ReLU
from mpneuralnetwork.callbacks import Callback
from mpneuralnetwork.layers import Dense, Layer
from mpneuralnetwork.losses import MSE, Loss
from mpneuralnetwork.metrics import Metric
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import SGD, Adam
from mpneuralnetwork.serialization import load_model, save_model


class Scale(Layer):
    """y = x · a, one learnable factor per feature (the Internals page's example)."""

    def __init__(self, initial: float = 1.0) -> None:
        super().__init__()
        self.initial = initial

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        self.a = xp.full((1, *self.input_shape), self.initial, dtype=DTYPE)
        self.a_gradient = xp.zeros_like(self.a)

    def forward(self, input_batch: Any, training: bool = True) -> Any:
        self.input = input_batch
        return input_batch * self.a

    def backward(self, output_gradient_batch: Any) -> Any:
        self.a_gradient = (output_gradient_batch * self.input).sum(axis=0, keepdims=True)
        return output_gradient_batch * self.a

    @property
    def params(self) -> dict[str, Any]:
        return {"a": (self.a, self.a_gradient)}

    def get_config(self) -> dict[str, Any]:
        return {"type": "Scale", "initial": self.initial}


class MeanError(Metric):
    """Mean of y_pred − y_true (a custom metric)."""

    def __call__(self, y_true: Any, y_pred: Any) -> float:
        return float((xp.asarray(y_pred) - xp.asarray(y_true)).mean())


def trained_model(rng: np.random.Generator) -> tuple[Model, np.ndarray]:
    x = rng.normal(size=(32, 3)).astype(np.float32)
    y = rng.normal(size=(32, 2)).astype(np.float32)
    model = Model(
        [Dense(4, input_size=3), ReLU(), Scale(0.5), Dense(2)], MSE(), Adam(), [MeanError()]
    )
    model.train(x, y, epochs=2, batch_size=8, auto_evaluation=0, verbose=0)
    return model, x


def test_custom_classes_load_with_custom_objects(tmp_path: Path, rng: np.random.Generator) -> None:
    model, x = trained_model(rng)
    path = save_model(model, tmp_path / "custom")
    restored = load_model(path, custom_objects={"Scale": Scale, "MeanError": MeanError})
    assert isinstance(restored.layers[2], Scale) and restored.layers[2].initial == 0.5
    np.testing.assert_array_equal(to_host(restored.layers[2].a), to_host(model.layers[2].a))
    assert not np.all(to_host(model.layers[2].a) == 0.5)  # it was trained, then restored
    assert [type(m) for m in restored.metrics] == [MeanError]
    assert restored.optimizer.t == model.optimizer.t
    np.testing.assert_array_equal(restored.predict(x), model.predict(x))


def test_unknown_class_names_custom_objects(tmp_path: Path, rng: np.random.Generator) -> None:
    model, _ = trained_model(rng)
    path = save_model(model, tmp_path / "custom.npz")
    with pytest.raises(ValueError, match=r"unknown layer class 'Scale'.*custom_objects"):
        load_model(path)
    with pytest.raises(ValueError, match="unknown metric class 'MeanError'"):
        load_model(path, custom_objects={"Scale": Scale})


@pytest.mark.parametrize(
    ("custom_objects", "message"),
    [
        ([Scale], "custom_objects must be a dict"),
        ({"Scale": Scale()}, r"custom_objects\['Scale'\] must be a subclass"),
        ({"Scale": dict}, r"custom_objects\['Scale'\] must be a subclass"),
        ({3: Scale}, "keys must be class names"),
    ],
)
def test_bad_custom_objects_are_refused(
    tmp_path: Path, rng: np.random.Generator, custom_objects: Any, message: str
) -> None:
    model, _ = trained_model(rng)
    path = save_model(model, tmp_path / "custom.npz")
    with pytest.raises(TypeError, match=message):
        load_model(path, custom_objects=custom_objects)


# ------------------------------------------------------------------- permissions
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes and umask")


@pytest.fixture
def umask() -> Iterator[Any]:
    """Set the process umask for one test, then put the old one back."""
    old = os.umask(0o022)
    os.umask(old)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@posix_only
@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_a_new_file_gets_the_umask_mode(tmp_path: Path, umask: Any, mask: int) -> None:
    umask(mask)
    model = Model([Dense(2, input_size=3)], MSE())
    path = save_model(model, tmp_path / "new")
    assert _mode(path) == 0o666 & ~mask
    assert [p.name for p in tmp_path.iterdir()] == ["new.npz"]  # no temporary file left


@posix_only
def test_an_overwrite_keeps_the_old_mode(tmp_path: Path, umask: Any) -> None:
    umask(0o077)
    path = tmp_path / "shared.npz"
    model = Model([Dense(2, input_size=3)], MSE())
    save_model(model, path)
    path.chmod(0o664)
    before = path.stat().st_ino
    save_model(model, path)
    assert path.stat().st_ino != before  # replaced by a new file (atomic rename) ...
    assert _mode(path) == 0o664  # ... with the old file's permissions
    path.chmod(0o400)  # read-only: the folder allows the replacement, the mode stays
    save_model(model, path)
    assert _mode(path) == 0o400
    assert [p.name for p in tmp_path.iterdir()] == ["shared.npz"]


# ------------------------------------------------------------------ a user's own loss
class HalfSquared(Loss):
    """A loss written as users write one: only the public direct and prime."""

    def direct(self, output: Any, expected: Any) -> float:
        diff = xp.asarray(output) - xp.asarray(expected)
        return float((diff * diff).sum()) / (2 * diff.shape[0])

    def prime(self, output: Any, expected: Any) -> Any:
        return (xp.asarray(output) - xp.asarray(expected)) / output.shape[0]


def test_a_loss_with_only_direct_and_prime_trains_and_loads(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    x = rng.normal(size=(16, 3)).astype(np.float32)
    y = rng.normal(size=(16, 1)).astype(np.float32)
    model = Model([Dense(1, input_size=3)], HalfSquared(), SGD(learning_rate=0.1))
    xb, yb = to_device(x[:4]), to_device(y[:4])
    value, gradient = model.loss.value_and_gradient(xb[:, :1], yb)
    assert float(value) == model.loss.direct(xb[:, :1], yb)
    np.testing.assert_array_equal(to_host(gradient), (x[:4, :1] - y[:4]) / 4)
    history = model.train(x, y, epochs=3, batch_size=16, auto_evaluation=0, verbose=0)
    # One batch per epoch: the reported loss is the loss before that epoch's step.
    assert history["loss"][1] < history["loss"][0]
    restored = load_model(
        save_model(model, tmp_path / "m"), custom_objects={"HalfSquared": HalfSquared}
    )
    np.testing.assert_array_equal(restored.predict(x), model.predict(x))
    with pytest.raises(NotImplementedError, match="Loss does not implement direct"):
        Loss().value_and_gradient(to_device(x), to_device(x))


# ------------------------------------------------------------ the random stream
@pytest.mark.skipif(
    xp is not np, reason="CuPy's generator has no state to read back: loading draws on CuPy"
)
def test_loading_leaves_the_global_random_state_alone(tmp_path: Path) -> None:
    # Building the loaded model draws initial weights that the archive replaces; the
    # script's next draws (shuffling, dropout) must be those it would have made anyway.
    path = save_model(Model([Dense(8, input_size=3), ReLU(), Dense(1)], MSE()), tmp_path / "m")
    np.random.seed(3)  # noqa: NPY002 - the global state is what is checked
    expected = np.random.random_sample(4)  # noqa: NPY002
    np.random.seed(3)  # noqa: NPY002
    load_model(path)
    np.testing.assert_array_equal(np.random.random_sample(4), expected)  # noqa: NPY002


class EpochCounter(Callback):
    """A callback of the user's, with state that a resumed run needs."""

    _STATE = ("seen",)

    def __init__(self, step: int = 1) -> None:
        super().__init__()
        self.step, self.seen = step, 0

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.seen += self.step

    def get_config(self) -> dict[str, Any]:
        return {"type": "EpochCounter", "step": self.step}


def test_a_callback_of_the_users_loads_with_its_state(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    x = rng.normal(size=(16, 3)).astype(np.float32)
    y = rng.normal(size=(16, 1)).astype(np.float32)
    model = Model([Dense(1, input_size=3)], MSE())
    model.train(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[EpochCounter(step=2)])
    path = save_model(model, tmp_path / "m")
    with pytest.raises(ValueError, match="unknown callback class 'EpochCounter'"):
        load_model(path)
    (counter,) = load_model(path, custom_objects={"EpochCounter": EpochCounter}).callbacks
    assert isinstance(counter, EpochCounter) and (counter.step, counter.seen) == (2, 6)
