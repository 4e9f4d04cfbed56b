"""Callbacks: the hooks the loop calls, and each built-in callback against hand-worked cases."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers_model import assert_same_arrays, model_arrays, train_epoch_by_epoch
from mpneuralnetwork import set_seed
from mpneuralnetwork.activations import ReLU
from mpneuralnetwork.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    LambdaCallback,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
)
from mpneuralnetwork.layers import Dense
from mpneuralnetwork.losses import MSE, CategoricalCrossEntropy
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import SGD, Adam
from mpneuralnetwork.serialization import load_model


def regression(seed: int = 0) -> tuple[Model, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-1.0], [2.0]], dtype=np.float32)
    set_seed(seed)
    model = Model([Dense(8, input_size=3), ReLU(), Dense(1)], MSE(), Adam(learning_rate=0.01))
    return model, x, y


class Recorder(Callback):
    """Records every hook call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []

    def on_train_begin(self, logs: Any = None) -> None:
        self.calls.append(("train_begin",))

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.calls.append(("epoch_begin", epoch))

    def on_batch_end(self, batch: int, logs: Any = None) -> None:
        self.calls.append(("batch_end", batch, logs["size"], logs["loss"]))

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.calls.append(("epoch_end", epoch, dict(logs)))

    def on_train_end(self, logs: Any = None) -> None:
        self.calls.append(("train_end",))


class FakeModel:
    """What the monitoring callbacks touch: an optimizer's rate and ``stop_training``."""

    def __init__(self, learning_rate: float = 1.0) -> None:
        self.optimizer = SGD(learning_rate=learning_rate)
        self.layers: list[Any] = []
        self.stop_training = False


def drive(callback: Callback, values: list[float], monitor: str = "val_loss") -> list[float]:
    """Feed ``values`` as the monitored key; returns the learning rate after each epoch."""
    model = FakeModel()
    callback.set_model(model)
    callback.set_params({"epochs": len(values), "initial_epoch": 0, "verbose": 0})
    callback.on_train_begin()
    rates = []
    for epoch, value in enumerate(values):
        callback.on_epoch_end(epoch, {monitor: value})
        rates.append(model.optimizer.learning_rate)
        if model.stop_training:
            break
    return rates


# ---------------------------------------------------------------- the hooks
def test_hooks_are_called_in_order_with_0_based_epochs_and_batch_logs() -> None:
    model, x, y = regression()
    recorder = Recorder()
    history = model.train(
        x, y, epochs=2, batch_size=16, auto_evaluation=0, verbose=0, callbacks=[recorder]
    )
    kinds = [c[0] for c in recorder.calls]
    per_epoch = ["epoch_begin", "batch_end", "batch_end", "batch_end", "epoch_end"]
    assert kinds == ["train_begin", *per_epoch, *per_epoch, "train_end"]
    assert [c[1] for c in recorder.calls if c[0] == "epoch_begin"] == [0, 1]
    sizes = [c[2] for c in recorder.calls[1:6] if c[0] == "batch_end"]
    assert sizes == [16, 16, 8]
    # the epoch loss is the size-weighted mean of the batch losses
    batches = [c for c in recorder.calls[1:6] if c[0] == "batch_end"]
    mean = sum(c[2] * c[3] for c in batches) / 40
    epoch_logs = recorder.calls[5][2]
    assert epoch_logs["loss"] == pytest.approx(mean, rel=1e-6)
    assert epoch_logs["loss"] == history.history["loss"][0]
    assert set(epoch_logs) == {"loss", "learning_rate", "epoch_time"}
    assert recorder.model is model
    assert recorder.params["steps"] == 3 and recorder.params["epochs"] == 2


def test_a_callback_can_stop_training() -> None:
    model, x, y = regression()

    def stop_at_second(epoch: int, logs: Any) -> None:
        if epoch == 1:
            model.stop_training = True

    history = model.train(
        x,
        y,
        epochs=10,
        batch_size=16,
        verbose=0,
        callbacks=[LambdaCallback(on_epoch_end=stop_at_second)],
    )
    assert history.epochs == [1, 2]
    assert history.stopped_early


def test_lambda_callback_calls_each_function() -> None:
    model, x, y = regression()
    seen: list[str] = []
    callback = LambdaCallback(
        on_train_begin=lambda logs: seen.append("begin"),
        on_epoch_begin=lambda epoch, logs: seen.append(f"e{epoch}"),
        on_batch_end=lambda batch, logs: seen.append("b"),
        on_epoch_end=lambda epoch, logs: seen.append(f"end{epoch}"),
        on_train_end=lambda logs: seen.append("done"),
    )
    model.train(x, y, epochs=1, batch_size=20, auto_evaluation=0, verbose=0, callbacks=[callback])
    assert seen == ["begin", "e0", "b", "b", "end0", "done"]
    with pytest.raises(ValueError, match="on_epoch_end must be callable"):
        LambdaCallback(on_epoch_end=3)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [Recorder(), "EarlyStopping", [Recorder(), 3]])
def test_callbacks_must_be_a_list_of_callbacks(bad: Any) -> None:
    model, x, y = regression()
    with pytest.raises(ValueError, match=r"callbacks(\[1\])? must be"):
        model.train(x, y, epochs=1, batch_size=16, verbose=0, callbacks=bad)


def test_the_model_keeps_its_callbacks_until_told_otherwise() -> None:
    model, x, y = regression()
    recorder = Recorder()
    model.train(x, y, epochs=1, batch_size=40, verbose=0, callbacks=[recorder])
    model.train(x, y, epochs=1, batch_size=40, verbose=0)
    assert [c[0] for c in recorder.calls].count("train_begin") == 2
    model.train(x, y, epochs=1, batch_size=40, verbose=0, callbacks=[])
    assert [c[0] for c in recorder.calls].count("train_begin") == 2
    assert model.callbacks == []


def test_a_failing_callback_restores_the_safe_weights_and_the_error_reaches_the_user() -> None:
    model, x, y = regression()
    kwargs = {"evaluation": (x, y)}
    states, _ = train_epoch_by_epoch(model, x, y, 3, 16, **kwargs)

    def fail(epoch: int, logs: Any) -> None:
        if epoch == 2:
            raise RuntimeError("boom")

    model, x, y = regression()
    with pytest.raises(RuntimeError, match="boom"), pytest.warns(RuntimeWarning, match="epoch 2"):
        model.train(
            x,
            y,
            epochs=5,
            batch_size=16,
            model_checkpoint=False,
            verbose=0,
            callbacks=[LambdaCallback(on_epoch_end=fail)],
            **kwargs,
        )
    assert_same_arrays(model_arrays(model), states[1])  # the last epoch that ended well


# ------------------------------------------------------------------ monitors
def test_unknown_monitor_lists_the_keys_before_any_epoch() -> None:
    model, x, y = regression()
    before = model_arrays(model)
    with pytest.raises(ValueError, match=r"monitor='val_acc'.*\['epoch_time', 'learning_rate'"):
        model.train(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[EarlyStopping("val_acc")])
    assert_same_arrays(model_arrays(model), before)


def test_mode_is_inferred_from_the_name_or_given() -> None:
    assert EarlyStopping("val_loss")._lower_is_better
    assert not EarlyStopping("val_accuracy")._lower_is_better
    assert not EarlyStopping("f1score")._lower_is_better
    assert EarlyStopping("val_rmse")._lower_is_better
    assert not EarlyStopping("epoch_time", mode="max")._lower_is_better
    model, x, y = regression()
    with pytest.raises(ValueError, match="mode='min' or mode='max'"):
        model.train(x, y, 1, 16, verbose=0, callbacks=[EarlyStopping("epoch_time")])
    with pytest.raises(ValueError, match="mode must be one of"):
        EarlyStopping(mode="up")


def test_early_stopping_by_hand() -> None:
    stopper = EarlyStopping(patience=2, restore_best_weights=False)
    rates = drive(stopper, [1.0, 0.9, 0.95, 0.9, 0.5])
    # 0.9 at epoch 2 is the best; 0.95 and 0.9 (not < 0.9) make two epochs without improvement
    assert len(rates) == 4
    assert stopper.best == 0.9 and stopper.best_epoch == 2 and stopper.stopped_epoch == 4
    # min_delta: 0.95 -> 0.9 is an improvement of 0.05, not more than min_delta=0.05
    stopper = EarlyStopping(patience=1, min_delta=0.05, restore_best_weights=False)
    assert len(drive(stopper, [1.0, 0.95, 0.9, 0.8])) == 2
    # mode max, patience 0: stops at the first epoch that does not improve
    stopper = EarlyStopping("val_accuracy", patience=0, restore_best_weights=False)
    assert len(drive(stopper, [0.5, 0.6, 0.6, 0.9], "val_accuracy")) == 3


def test_early_stopping_restores_the_best_weights() -> None:
    model, x, y = regression()
    evaluation = (x, -y)  # the validation loss gets worse after the first steps
    states, values = train_epoch_by_epoch(model, x, y, 12, 8, evaluation=evaluation)
    losses = [v["val_loss"] for v in values]
    best = int(np.argmin(losses))
    model, x, y = regression()
    history = model.train(
        x,
        y,
        epochs=12,
        batch_size=8,
        evaluation=evaluation,
        model_checkpoint=False,
        verbose=0,
        callbacks=[EarlyStopping(patience=2)],
    )
    assert len(history) == best + 3
    assert_same_arrays(model_arrays(model), states[best])


def test_model_checkpoint_with_a_path_saves_the_best_model(tmp_path: Path) -> None:
    model, x, y = regression()
    evaluation = (x[:20], y[:20] * 0.5)
    states, values = train_epoch_by_epoch(model, x, y, 6, 8, evaluation=evaluation)
    losses = [v["val_loss"] for v in values]
    model, x, y = regression()
    path = tmp_path / "best"
    model.train(
        x,
        y,
        epochs=6,
        batch_size=8,
        evaluation=evaluation,
        model_checkpoint=False,
        verbose=0,
        callbacks=[ModelCheckpoint(path, monitor="val_loss")],
    )
    assert_same_arrays(model_arrays(model), states[-1])  # memory keeps the last epoch
    saved = load_model(tmp_path / "best.npz")
    assert_same_arrays(model_arrays(saved), states[int(np.argmin(losses))])
    assert saved.callbacks[0].best == min(losses)


def test_model_checkpoint_in_memory_on_another_key(capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((60, 4)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[(x[:, 0] > 0).astype(int)]
    set_seed(0)
    model = Model([Dense(2, input_size=4)], CategoricalCrossEntropy(), SGD(learning_rate=0.05))
    checkpoint = ModelCheckpoint(monitor="val_accuracy")
    history = model.train(x, y, epochs=6, batch_size=10, evaluation=(x, y), callbacks=[checkpoint])
    best = int(np.argmax(history.history["val_accuracy"]))  # the first of equal maxima
    assert model.callbacks[0].best_epoch == best + 1
    assert "best val_accuracy" in capsys.readouterr().out


# -------------------------------------------------------------------- plateau
def test_reduce_lr_on_plateau_by_hand() -> None:
    plateau = ReduceLROnPlateau(factor=0.5, patience=2, min_delta=0.0, cooldown=2, min_lr=0.1)
    values = [5, 5, 5, 5, 5, 5, 4, 4, 4, 4, 4, 4, 4]
    # Keras's rule: wait counts epochs without improvement, none while cooling down; at
    # patience the rate is halved (not below 0.1). The epoch of a reduction and the two
    # cooldown epochs after it reset wait, so (improvements aside) the rate drops every
    # patience + cooldown - 1 = 3 epochs. A cooldown of 1 would act as 0 (every 2 epochs).
    expected = [1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125, 0.125, 0.125, 0.1, 0.1]
    rates = drive(plateau, [float(v) for v in values])
    assert rates == expected
    drops = [epoch + 1 for epoch in range(1, len(rates)) if rates[epoch] < rates[epoch - 1]]
    assert drops == [3, 6, 9, 12]  # 4 at epoch 7 (in a cooldown) is the best; 0.1 the floor
    assert plateau.best == 4 and plateau.best_epoch == 7
    # the same run without a cooldown drops every patience = 2 epochs
    no_cooldown = ReduceLROnPlateau(factor=0.5, patience=2, min_delta=0.0, min_lr=0.1)
    assert drive(no_cooldown, [5.0] * 6) == [1, 1, 0.5, 0.5, 0.25, 0.25]


def resume(
    callback: Callback, state: dict[str, Any], values: list[float], first: int
) -> list[float]:
    """A new run from epoch ``first`` with ``state`` (as `load_model` gives it); the rates."""
    model = FakeModel()
    callback.state = state
    callback.set_model(model)
    callback.set_params({"epochs": first + len(values), "initial_epoch": first, "verbose": 0})
    callback.on_train_begin()
    rates = []
    for epoch, value in enumerate(values, start=first):
        callback.on_epoch_end(epoch, {"val_loss": value})
        rates.append(model.optimizer.learning_rate)
        if model.stop_training:
            break
    return rates


def test_a_resumed_run_keeps_the_monitors_best_and_wait_mid_patience() -> None:
    # Two epochs without improvement (wait = 2 of 3), then the run stops and resumes.
    stopper = EarlyStopping(patience=3, restore_best_weights=False)
    drive(stopper, [1.0, 1.1, 1.2])
    assert (stopper.best, stopper.wait) == (1.0, 2)
    resumed = EarlyStopping(patience=3, restore_best_weights=False)
    resume(resumed, stopper.state, [1.05, 0.5], first=3)
    # 1.05 is no improvement on the kept best: the third epoch without one stops the run
    assert resumed.stopped_epoch == 4 and resumed.best == 1.0 and resumed.best_epoch == 1

    plateau = ReduceLROnPlateau(factor=0.5, patience=3, min_delta=0.0)
    drive(plateau, [1.0, 1.1, 1.2])
    assert (plateau.best, plateau.wait) == (1.0, 2)
    again = ReduceLROnPlateau(factor=0.5, patience=3, min_delta=0.0)
    assert resume(again, plateau.state, [1.05, 1.05], first=3) == [0.5, 0.5]

    # mid-cooldown: the resumed run's first epoch ends the cooldown and counts (patience 1)
    cooling = ReduceLROnPlateau(factor=0.5, patience=1, min_delta=0.0, cooldown=2)
    drive(cooling, [1.0, 1.1, 1.2])  # reduced after epoch 2, one cooldown epoch spent
    assert cooling.cooldown_counter == 1
    again = ReduceLROnPlateau(factor=0.5, patience=1, min_delta=0.0, cooldown=2)
    assert resume(again, cooling.state, [1.3, 1.3, 1.3], first=3) == [0.5, 0.5, 0.25]

    checkpoint = ModelCheckpoint()
    drive(checkpoint, [1.0, 1.1])
    kept = ModelCheckpoint()
    resume(kept, checkpoint.state, [1.05], first=2)
    assert kept.best == 1.0 and kept.best_epoch == 1 and kept.snapshot is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"factor": 1.0}, "factor must be a number in"),
        ({"factor": 0.0}, "factor must be a number in"),
        ({"factor": 1.5}, "factor must be a number in"),
        ({"patience": -1}, "patience must be a non-negative integer"),
        ({"cooldown": -2}, "cooldown must be a non-negative integer"),
        ({"min_lr": -0.1}, "min_lr must be a number in"),
    ],
)
def test_reduce_lr_on_plateau_refuses_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ReduceLROnPlateau(**kwargs)


def test_early_stopping_refuses_a_negative_patience() -> None:
    with pytest.raises(ValueError, match="EarlyStopping: patience must be a non-negative integer"):
        EarlyStopping(patience=-1)


# ----------------------------------------------------------------- schedulers
def test_learning_rate_scheduler_sets_the_rate_of_each_epoch() -> None:
    model, x, y = regression()
    history = model.train(
        x,
        y,
        epochs=3,
        batch_size=16,
        verbose=0,
        callbacks=[LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1))],
    )
    assert history.history["learning_rate"] == [0.1, 0.05, 0.1 / 3]
    assert model.optimizer.learning_rate == 0.1 / 3


def test_a_schedule_returning_a_bad_rate_stops_training_with_a_clear_error() -> None:
    model, x, y = regression()
    before = model_arrays(model)
    bad = LearningRateScheduler(lambda epoch: -1.0)
    with (
        pytest.raises(ValueError, match="learning rate of epoch 0 must be a positive"),
        pytest.warns(RuntimeWarning, match="restored the weights of epoch 0"),
    ):
        model.train(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[bad])
    assert_same_arrays(model_arrays(model), before)


# ------------------------------------------------------------------ CSVLogger
def test_csv_logger_writes_every_key_of_every_epoch(tmp_path: Path) -> None:
    model, x, y = regression()
    path = tmp_path / "log.csv"
    history = model.train(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[CSVLogger(path)])
    with path.open() as file:
        rows = list(csv.DictReader(file))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert set(rows[0]) == {"epoch", *history.history}
    for key, values in history.history.items():
        assert [float(r[key]) for r in rows] == values
    # a resumed run adds rows; a fresh one starts a new file
    model.train(x, y, epochs=4, initial_epoch=3, batch_size=16, verbose=0)
    assert len(path.read_text().splitlines()) == 5
    model.train(x, y, epochs=1, batch_size=16, verbose=0)
    assert len(path.read_text().splitlines()) == 2


def test_callback_state_is_plain_data() -> None:
    stopper = EarlyStopping(patience=3)
    drive(stopper, [1.0, 2.0])
    assert stopper.state == {"best": 1.0, "best_epoch": 1, "wait": 1, "stopped_epoch": None}
    fresh = EarlyStopping(patience=3)
    fresh.state = stopper.state
    assert fresh.state == stopper.state
    with pytest.raises(ValueError, match="unknown state entry 'nope'"):
        fresh.state = {"nope": 1}
    with pytest.raises(ValueError, match="must be a number or None"):
        fresh.state = {"wait": "3"}
    assert math.isinf(EarlyStopping().best)
