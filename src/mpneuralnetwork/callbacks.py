"""Callbacks: code that ``Model.train`` runs at fixed points of the training loop.

A callback overrides some of the hooks of `Callback`; the loop calls, in order,
``on_train_begin``, then for each epoch ``on_epoch_begin``, ``on_batch_end`` after
every gradient step and ``on_epoch_end``, and finally ``on_train_end``. A callback
reads and changes the model through ``self.model`` and ends training by setting
``self.model.stop_training = True`` (as in Keras).

Epoch indices given to the hooks are 0-based (epoch 1 of the printed lines is
``epoch == 0``); epoch numbers stored in callback state and messages are 1-based,
as in `History`.

Training that starts with ``initial_epoch=0`` is a fresh run: callbacks reset their
counters. With ``initial_epoch > 0`` it resumes: callbacks keep the state they have,
including the state that ``load_model`` restored.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import _checks
from .archive import save_model
from .weights import Snapshot

__all__ = [
    "CSVLogger",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "LambdaCallback",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ReduceLROnPlateau",
    "Schedule",
]

Logs = dict[str, Any]

#: Words of a monitored key that tell its direction when ``mode="auto"``.
_LOWER_IS_BETTER = ("loss", "error", "rmse", "mae", "mse")
_HIGHER_IS_BETTER = ("acc", "f1", "precision", "recall", "r2", "auc")


class Callback:
    """The base callback: every hook does nothing.

    Attributes:
        model: The model being trained, set by ``train`` before ``on_train_begin``.
        params: Facts of the run, set by ``train``: ``epochs`` (the last epoch
            number), ``initial_epoch``, ``steps`` (batches per epoch), ``verbose``
            and ``log_keys`` (the keys every epoch's logs will hold).
    """

    def __init__(self) -> None:
        self.model: Any = None
        self.params: dict[str, Any] = {}

    def set_model(self, model: Any) -> None:
        """Give the callback the model it acts on."""
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        """Give the callback the facts of the run (see ``params``)."""
        self.params = params

    def on_train_begin(self, logs: Logs | None = None) -> None:
        """Called once before the first epoch."""

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        """Called before epoch ``epoch`` (0-based) trains."""

    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """Called after each gradient step; logs hold ``size`` and the batch ``loss``."""

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        """Called after epoch ``epoch`` (0-based); logs hold every value of the epoch."""

    def on_train_end(self, logs: Logs | None = None) -> None:
        """Called once when training ends normally (not after an exception)."""

    @property
    def resuming(self) -> bool:
        """True when this run continues an earlier one (``initial_epoch > 0``)."""
        return bool(self.params.get("initial_epoch", 0))

    def _say(self, message: str) -> None:
        if self.params.get("verbose", 1):
            print(message)

    #: Names of the attributes that make up `state`.
    _STATE: tuple[str, ...] = ()

    @property
    def state(self) -> dict[str, Any]:
        """The counters a resumed run needs (saved with the model); ``{}`` here."""
        return {name: getattr(self, name) for name in self._STATE}

    @state.setter
    def state(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            if name not in self._STATE:
                raise ValueError(
                    f"{type(self).__name__}: unknown state entry {name!r}; "
                    f"expected {list(self._STATE)}"
                )
            if value is not None and not _checks.is_number(value):
                raise ValueError(
                    f"{type(self).__name__}: state entry {name!r} must be a number or None; "
                    f"got {value!r}"
                )
        for name, value in values.items():
            setattr(self, name, value)

    @property
    def wants_batches(self) -> bool:
        """True when this callback does something in ``on_batch_end``."""
        return type(self).on_batch_end is not Callback.on_batch_end

    def get_config(self) -> dict[str, Any]:
        """``{"type": class name}`` plus the constructor arguments."""
        return {"type": type(self).__name__}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "type")
        return f"{type(self).__name__}({args})"


class CallbackList(Callback):
    """Several callbacks seen as one: each hook is forwarded to each callback in order."""

    def __init__(self, callbacks: Sequence[Callback] = ()) -> None:
        super().__init__()
        self.callbacks = list(callbacks)

    def set_model(self, model: Any) -> None:
        super().set_model(model)
        for callback in self.callbacks:
            callback.set_model(model)

    def set_params(self, params: dict[str, Any]) -> None:
        super().set_params(params)
        for callback in self.callbacks:
            callback.set_params(params)

    def on_train_begin(self, logs: Logs | None = None) -> None:
        for callback in self.callbacks:
            callback.on_train_begin(logs)

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        for callback in self.callbacks:
            callback.on_epoch_begin(epoch, logs)

    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        for callback in self.callbacks:
            callback.on_batch_end(batch, logs)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, logs)

    def on_train_end(self, logs: Logs | None = None) -> None:
        for callback in self.callbacks:
            callback.on_train_end(logs)

    @property
    def wants_batches(self) -> bool:
        """True when some callback acts on batches (only then the loop builds batch logs)."""
        return any(c.wants_batches for c in self.callbacks)

    def first(self, kind: type) -> Any:
        """The first callback of class ``kind``, or None."""
        return next((c for c in self.callbacks if isinstance(c, kind)), None)


def check_callbacks(callbacks: Any) -> list[Callback]:
    """``callbacks`` as a list, or a ValueError naming the argument."""
    if not isinstance(callbacks, (list, tuple)):
        raise ValueError(
            f"train: callbacks must be a list of Callback objects; got {type(callbacks).__name__}"
        )
    for i, callback in enumerate(callbacks):
        if not isinstance(callback, Callback):
            raise ValueError(f"train: callbacks[{i}] must be a Callback; got {callback!r}")
    return list(callbacks)


# ------------------------------------------------------------------ monitoring
class _Monitor(Callback):
    """A callback that watches one key of the epoch logs (the shared part of Keras's).

    Args:
        monitor: A key of the epoch logs: ``"loss"``, ``"val_loss"``, ``"val_accuracy"``...
        mode: ``"min"``, ``"max"``, or ``"auto"`` to infer it from the key's name.
        min_delta: The smallest change that counts as an improvement, >= 0.
    """

    _STATE: tuple[str, ...] = ("best", "best_epoch")

    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        super().__init__()
        name = type(self).__name__
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"{name}: monitor must be a key of the logs; got {monitor!r}")
        self.monitor = monitor
        self.mode = _checks.choice(name, "mode", mode, ("auto", "min", "max"))
        self.min_delta = _checks.number_in(name, "min_delta", min_delta, 0.0, math.inf)
        # None: mode="auto" and a key whose name tells no direction; the error waits until
        # the logs' keys are known, so that a misspelt key is reported as such first.
        self._lower_is_better: bool | None = self._direction()
        self.best = self._worst()
        self.best_epoch: int | None = None

    def _direction(self) -> bool | None:
        if self.mode != "auto":
            return self.mode == "min"
        key = self.monitor.lower()
        if any(word in key for word in _LOWER_IS_BETTER):
            return True
        if any(word in key for word in _HIGHER_IS_BETTER):
            return False
        return None

    def _lower(self) -> bool:
        """Whether lower values are better; the monitored key must be in the logs by now."""
        if self._lower_is_better is None:
            raise ValueError(
                f"{type(self).__name__}: mode='auto' cannot tell whether {self.monitor!r} "
                "should go down or up; pass mode='min' or mode='max'"
            )
        return self._lower_is_better

    def _worst(self) -> float:
        return -math.inf if self._lower_is_better is False else math.inf

    def _improves(self, value: float) -> bool:
        if self._lower():
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def _reset(self) -> None:
        self.best, self.best_epoch = self._worst(), None

    def on_train_begin(self, logs: Logs | None = None) -> None:
        keys = self.params.get("log_keys")
        if keys is not None:
            if self.monitor not in keys:
                self._unknown(keys)
            self._lower()
        if not self.resuming:
            self._reset()

    def _value(self, logs: Logs | None) -> float | None:
        """The monitored value; None when it is NaN or infinite (the loop handles that)."""
        logs = logs or {}
        if self.monitor not in logs:
            self._unknown(logs)
        value = float(logs[self.monitor])
        return value if math.isfinite(value) else None

    def _unknown(self, keys: Any) -> None:
        raise ValueError(
            f"{type(self).__name__}: monitor={self.monitor!r} is not a key of the logs; "
            f"the logs hold {sorted(keys)}"
        )

    def _described_best(self) -> str:
        name = "loss" if self.monitor in ("loss", "val_loss") else self.monitor
        return f"best {name} = {self.best:.4f}"

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "monitor": self.monitor, "mode": self.mode}


class EarlyStopping(_Monitor):
    """Stop training when the monitored value has not improved for ``patience`` epochs.

    Args:
        monitor: The key of the epoch logs to watch.
        patience: Epochs without improvement before stopping, >= 0.
        min_delta: The smallest change that counts as an improvement.
        restore_best_weights: When stopping, put back the weights (and layer and
            optimizer state) of the best epoch of this run.
        mode: ``"auto"``, ``"min"`` or ``"max"``.
    """

    _STATE = ("best", "best_epoch", "wait", "stopped_epoch")

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 5,
        min_delta: float = 0.0,
        restore_best_weights: bool = True,
        mode: str = "auto",
    ) -> None:
        super().__init__(monitor, mode, min_delta)
        self.patience = _checks.non_negative_int("EarlyStopping", "patience", patience)
        self.restore_best_weights = _checks.boolean(
            "EarlyStopping", "restore_best_weights", restore_best_weights
        )
        self.wait = 0
        self.stopped_epoch: int | None = None
        self._best_snapshot: Snapshot | None = None

    def _reset(self) -> None:
        super()._reset()
        self.wait, self.stopped_epoch, self._best_snapshot = 0, None, None

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        value = self._value(logs)
        if value is None:
            return
        if self._improves(value):
            self.best, self.best_epoch, self.wait = value, epoch + 1, 0
            if self.restore_best_weights:
                self._best_snapshot = Snapshot.take(self.model.layers, self.model.optimizer)
            return
        self.wait += 1
        if self.wait < self.patience:
            return
        self.stopped_epoch = epoch + 1
        self.model.stop_training = True
        message = (
            f"EARLY STOPPING: no improvement for {self.wait} epochs "
            f"({self._described_best()} at epoch {self.best_epoch})"
        )
        if self._best_snapshot is not None:
            self._best_snapshot.restore(self.model.layers, self.model.optimizer)
            message += f"; restored the weights of epoch {self.best_epoch}"
        self._say(message)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "patience": self.patience,
            "min_delta": self.min_delta,
            "restore_best_weights": self.restore_best_weights,
        }


class ModelCheckpoint(_Monitor):
    """Keep the best model of the run: in memory, or saved to a file.

    Without ``path`` the best weights, layer state and optimizer state are copied
    in memory and restored when training ends (what ``train(model_checkpoint=True)``
    does). With a ``path`` the whole model is saved there with ``save_model``
    (atomically) each time the monitored value improves, and the weights in memory
    stay those of the last epoch.

    Args:
        path: Where to save the best model (``.npz`` appended when missing), or None.
        monitor: The key of the epoch logs to watch.
        mode: ``"auto"``, ``"min"`` or ``"max"``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        monitor: str = "val_loss",
        mode: str = "auto",
    ) -> None:
        super().__init__(monitor, mode, 0.0)
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise ValueError(f"ModelCheckpoint: path must be a file path or None; got {path!r}")
        self.path = None if path is None else os.fspath(path)
        self.snapshot: Snapshot | None = None

    def _reset(self) -> None:
        super()._reset()
        self.snapshot = None

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        value = self._value(logs)
        if value is None or not self._improves(value):
            return
        self.best, self.best_epoch = value, epoch + 1
        if self.path is None:
            self.snapshot = Snapshot.take(self.model.layers, self.model.optimizer)
        else:
            save_model(self.model, self.path)

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self.snapshot is None:
            return
        self.snapshot.restore(self.model.layers, self.model.optimizer)
        self._say(
            f"MODEL CHECKPOINT: restored the weights of epoch {self.best_epoch} "
            f"({self._described_best()})"
        )

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "path": self.path}


class ReduceLROnPlateau(_Monitor):
    """Multiply the learning rate by ``factor`` when the monitored value stops improving.

    Keras's rule: after ``patience`` epochs without an improvement larger than
    ``min_delta``, ``lr ← max(lr·factor, min_lr)`` (only while ``lr > min_lr``),
    then ``cooldown`` epochs during which no epoch counts as waiting.

    Args:
        monitor: The key of the epoch logs to watch.
        factor: The multiplier, in (0, 1).
        patience: Epochs without improvement before a reduction, >= 0.
        min_delta: The smallest change that counts as an improvement.
        cooldown: Epochs to wait after a reduction before counting again, >= 0.
        min_lr: The floor of the learning rate, >= 0.
        mode: ``"auto"``, ``"min"`` or ``"max"``.
    """

    _STATE = ("best", "best_epoch", "wait", "cooldown_counter")

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
        mode: str = "auto",
    ) -> None:
        super().__init__(monitor, mode, min_delta)
        name = "ReduceLROnPlateau"
        self.factor = _checks.number_in(name, "factor", factor, 0.0, 1.0, True, True)
        self.patience = _checks.non_negative_int(name, "patience", patience)
        self.cooldown = _checks.non_negative_int(name, "cooldown", cooldown)
        self.min_lr = _checks.number_in(name, "min_lr", min_lr, 0.0, math.inf)
        self.wait = 0
        self.cooldown_counter = 0

    def _reset(self) -> None:
        super()._reset()
        self.wait = self.cooldown_counter = 0

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        value = self._value(logs)
        if value is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improves(value):
            self.best, self.best_epoch, self.wait = value, epoch + 1, 0
            return
        if self.cooldown_counter > 0:
            return
        self.wait += 1
        optimizer = self.model.optimizer
        if self.wait >= self.patience and optimizer.learning_rate > self.min_lr:
            optimizer.learning_rate = max(optimizer.learning_rate * self.factor, self.min_lr)
            self.cooldown_counter, self.wait = self.cooldown, 0
            self._say(
                f"REDUCE LR ON PLATEAU: learning rate reduced to {optimizer.learning_rate:.4g} "
                f"after epoch {epoch + 1}"
            )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "factor": self.factor,
            "patience": self.patience,
            "min_delta": self.min_delta,
            "cooldown": self.cooldown,
            "min_lr": self.min_lr,
        }


# ------------------------------------------------------------------- schedules
class Schedule(Callback):
    """A learning rate set at the beginning of every epoch from a closed form.

    ``base_lr`` is the optimizer's learning rate when this schedule first began
    training; it is kept (and saved with the model), so a resumed or repeated run
    follows the same curve. Subclasses define `rate`.

    Attributes:
        base_lr: The starting rate, None before training.
    """

    _STATE = ("base_lr",)

    def __init__(self) -> None:
        super().__init__()
        self.base_lr: float | None = None

    def rate(self, epoch: int) -> float:
        """The learning rate of epoch ``epoch`` (0-based); ``base_lr`` here."""
        return self._base()

    def _base(self) -> float:
        if self.base_lr is None:
            raise RuntimeError(f"{type(self).__name__}: no base rate before training begins")
        return self.base_lr

    def on_train_begin(self, logs: Logs | None = None) -> None:
        if self.base_lr is None:
            self.base_lr = float(self.model.optimizer.learning_rate)

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        value = self.rate(epoch)
        if not _checks.is_number(value) or not math.isfinite(value) or value <= 0:
            raise ValueError(
                f"{type(self).__name__}: the learning rate of epoch {epoch} must be a "
                f"positive finite number; got {value!r}"
            )
        self.model.optimizer.learning_rate = float(value)


class LearningRateScheduler(Schedule):
    """The learning rate of each epoch from any callable ``schedule(epoch) -> rate``.

    Args:
        schedule: Called with the 0-based epoch index before each epoch.
    """

    def __init__(self, schedule: Callable[[int], float]) -> None:
        super().__init__()
        if not callable(schedule):
            raise ValueError(
                f"LearningRateScheduler: schedule must be a callable epoch -> learning rate; "
                f"got {schedule!r}"
            )
        self.schedule = schedule

    def rate(self, epoch: int) -> float:
        return self.schedule(epoch)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "schedule": self.schedule}


# --------------------------------------------------------------------- others
class CSVLogger(Callback):
    """Write one row per epoch to a CSV file: ``epoch`` (1-based), then every key of the logs.

    The file is opened and closed at each row, so nothing stays open if training
    fails. A fresh run starts a new file (unless ``append``); a resumed run
    (``initial_epoch > 0``) adds to it.

    Args:
        path: The CSV file.
        separator: The field separator.
        append: Add to an existing file instead of replacing it.
    """

    def __init__(
        self, path: str | os.PathLike[str], separator: str = ",", append: bool = False
    ) -> None:
        super().__init__()
        if not isinstance(path, (str, os.PathLike)):
            raise ValueError(f"CSVLogger: path must be a file path; got {path!r}")
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"CSVLogger: separator must be one character; got {separator!r}")
        self.path = os.fspath(path)
        self.separator = separator
        self.append = _checks.boolean("CSVLogger", "append", append)

    def on_train_begin(self, logs: Logs | None = None) -> None:
        if not self.append and not self.resuming:
            Path(self.path).write_text("")

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        row = {"epoch": epoch + 1, **(logs or {})}
        path = Path(self.path)
        new = not path.exists() or path.stat().st_size == 0
        with path.open("a", newline="") as file:
            writer = csv.writer(file, delimiter=self.separator)
            if new:
                writer.writerow(row)
            writer.writerow(row.values())

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "path": self.path,
            "separator": self.separator,
            "append": self.append,
        }


class LambdaCallback(Callback):
    """A callback made of functions, for quick hooks: ``LambdaCallback(on_epoch_end=f)``.

    Each argument is None or a callable with the hook's arguments: ``on_train_begin(logs)``,
    ``on_epoch_begin(epoch, logs)``, ``on_batch_end(batch, logs)``,
    ``on_epoch_end(epoch, logs)``, ``on_train_end(logs)``.
    """

    _HOOKS = ("on_train_begin", "on_epoch_begin", "on_batch_end", "on_epoch_end", "on_train_end")

    def __init__(
        self,
        on_train_begin: Callable[..., Any] | None = None,
        on_epoch_begin: Callable[..., Any] | None = None,
        on_batch_end: Callable[..., Any] | None = None,
        on_epoch_end: Callable[..., Any] | None = None,
        on_train_end: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__()
        given = (on_train_begin, on_epoch_begin, on_batch_end, on_epoch_end, on_train_end)
        for hook, function in zip(self._HOOKS, given, strict=True):
            if function is not None and not callable(function):
                raise ValueError(f"LambdaCallback: {hook} must be callable; got {function!r}")
            if function is not None:
                setattr(self, hook, function)  # the instance attribute shadows the no-op

    @property
    def wants_batches(self) -> bool:
        return "on_batch_end" in vars(self)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            **{hook: vars(self)[hook] for hook in self._HOOKS if hook in vars(self)},
        }
