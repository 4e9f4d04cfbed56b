"""Resuming is exact: state of schedules and callbacks saved and restored with the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers_model import assert_same_arrays, model_arrays
from mpneuralnetwork import set_seed
from mpneuralnetwork.activations import ReLU
from mpneuralnetwork.callbacks import Callback, EarlyStopping, ReduceLROnPlateau
from mpneuralnetwork.layers import BatchNormalization, Dense
from mpneuralnetwork.losses import MSE
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import Adam
from mpneuralnetwork.schedules import CosineAnnealing
from mpneuralnetwork.serialization import load_model, save_model


def data() -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((48, 4)).astype(np.float32)
    y = np.tanh(x @ rng.standard_normal((4, 2))).astype(np.float32)
    return x[:36], y[:36], x[36:], y[36:]


def build() -> Model:
    return Model(
        [Dense(16, input_size=4), BatchNormalization(), ReLU(), Dense(2)],
        MSE(),
        Adam(learning_rate=0.05, clipnorm=1.0),
    )


CALLBACKS = {
    "cosine": lambda: [CosineAnnealing(10, min_lr=0.001, warmup_epochs=2)],
    "plateau": lambda: [ReduceLROnPlateau(factor=0.5, patience=1, min_delta=0.0)],
    "both": lambda: [
        ReduceLROnPlateau(factor=0.5, patience=1, min_delta=0.0),
        CosineAnnealing(10, min_lr=0.001),
        EarlyStopping(patience=8),
    ],
}


@pytest.mark.parametrize("name", sorted(CALLBACKS))
def test_five_plus_five_epochs_through_a_file_equal_ten(name: str, tmp_path: Path) -> None:
    x, y, xv, yv = data()
    kwargs: dict[str, Any] = {
        "batch_size": 8,
        "evaluation": (xv, yv),
        "model_checkpoint": False,
        "verbose": 0,
    }
    set_seed(11)
    straight = build()
    history = straight.train(x, y, epochs=10, callbacks=CALLBACKS[name](), **kwargs)

    set_seed(11)
    first = build()
    first.train(x, y, epochs=5, callbacks=CALLBACKS[name](), **kwargs)
    save_model(first, tmp_path / "half")
    resumed = load_model(tmp_path / "half.npz")
    assert [type(c) for c in resumed.callbacks] == [type(c) for c in first.callbacks]
    assert [c.state for c in resumed.callbacks] == [c.state for c in first.callbacks]
    second = resumed.train(x, y, epochs=10, initial_epoch=5, **kwargs)

    assert second.epochs == [6, 7, 8, 9, 10]
    rates = history.history["learning_rate"]
    assert second.history["learning_rate"] == rates[5:]
    assert second.history["val_loss"] == history.history["val_loss"][5:]
    assert len(set(rates)) > 1  # the schedule did change the rate
    assert_same_arrays(model_arrays(resumed), model_arrays(straight))
    assert [c.state for c in resumed.callbacks] == [c.state for c in straight.callbacks]


def test_callbacks_holding_code_are_not_saved_and_say_so(tmp_path: Path) -> None:
    x, y, _, _ = data()
    model = build()

    class Mine(Callback):
        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "function": print}

    model.train(x, y, epochs=1, batch_size=36, verbose=0, callbacks=[Mine(), EarlyStopping()])
    with pytest.warns(RuntimeWarning, match="Mine holds Python code and is not saved"):
        save_model(model, tmp_path / "m")
    assert [type(c) for c in load_model(tmp_path / "m.npz").callbacks] == [EarlyStopping]


def test_initial_epoch_is_checked() -> None:
    x, y, _, _ = data()
    with pytest.raises(ValueError, match="initial_epoch must be <= epochs=3"):
        build().train(x, y, epochs=3, initial_epoch=4, batch_size=8)
    with pytest.raises(ValueError, match="initial_epoch must be a non-negative integer"):
        build().train(x, y, epochs=3, initial_epoch=-1, batch_size=8)
