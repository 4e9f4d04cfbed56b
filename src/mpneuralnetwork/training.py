"""The training loop: mini-batches → forward → loss → backward → optimizer step, with hooks.

`fit` is what ``Model.train`` runs. The loop itself is `_loop`; everything that
is not the loop (printing, early stopping, checkpoints, schedules) is a callback.
Two safety nets stay in the loop because they protect every run: a diverging loss
(NaN or inf) stops training, and any exception (Ctrl-C, a failing callback)
restores the last safe weights before it reaches the user.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _checks
from . import _inputs as inputs
from .backend import xp
from .callbacks import Callback, CallbackList, EarlyStopping, ModelCheckpoint, check_callbacks
from .data import DataLoader, Loader
from .history import History
from .progress import loggers
from .weights import Snapshot

if TYPE_CHECKING:
    from .model import Model

#: Samples per validation batch when the training data are arrays (in memory already).
VALIDATION_BATCH = 4096


class _DefaultBatchSize(int):
    """The default ``batch_size`` of ``Model.train``: the int 32, as in Keras.

    A distinct object, so that ``train`` tells a left-out batch size from an explicit 32:
    a loader's own batch size wins over the default, while an explicit value that
    differs from it is an error.
    """

    __slots__ = ()


DEFAULT_BATCH_SIZE: int = _DefaultBatchSize(32)
"""``Model.train``'s default ``batch_size``: 32 (an int), as in Keras.

With arrays it is 32 samples per step. A loader keeps its own batch size when
``batch_size`` is left out: this default is its own object, told apart from an
explicit 32 (which must then equal the loader's)."""


def fit(
    model: Model,
    X_train: Any,
    y_train: Any,
    epochs: int | None,
    batch_size: int | None,
    evaluation: Any = None,
    auto_evaluation: float = 0.2,
    early_stopping: int | None = None,
    model_checkpoint: bool = True,
    compute_train_metrics: bool = False,
    verbose: int = 1,
    callbacks: Sequence[Callback] | None = None,
    initial_epoch: int = 0,
) -> History:
    """Check the arguments of ``Model.train``, assemble its callbacks and run the loop."""
    epochs = _checks.non_negative_int("train", "epochs", epochs)
    auto_evaluation = _checks.number_in(
        "train", "auto_evaluation", auto_evaluation, 0.0, 1.0, high_open=True
    )
    if early_stopping is not None:
        early_stopping = _checks.positive_int("train", "early_stopping", early_stopping)
    model_checkpoint = _checks.boolean("train", "model_checkpoint", model_checkpoint)
    compute_train_metrics = _checks.boolean("train", "compute_train_metrics", compute_train_metrics)
    if verbose not in (0, 1, 2):
        raise ValueError(f"train: verbose must be 0, 1 or 2; got {verbose!r}")
    initial_epoch = _checks.non_negative_int("train", "initial_epoch", initial_epoch)
    if initial_epoch > epochs:
        raise ValueError(
            f"train: initial_epoch must be <= epochs={epochs} (epochs is the number of the "
            f"last epoch, as in Keras); got {initial_epoch}"
        )
    if callbacks is not None:
        model.callbacks = check_callbacks(callbacks)

    data = training_loader(model, X_train, y_train, batch_size)
    # Held-out arrays are scored in large batches, a user's loader in its own.
    held_out_batch = None if isinstance(X_train, Loader) else VALIDATION_BATCH
    data, validation = validation_data(model, data, evaluation, auto_evaluation, held_out_batch)
    monitor = "loss" if validation is None else "val_loss"
    shortcuts: list[Callback] = []
    user = model.callbacks
    if early_stopping is not None and not any(isinstance(c, EarlyStopping) for c in user):
        shortcuts.append(
            EarlyStopping(monitor, patience=early_stopping, restore_best_weights=False)
        )
    if model_checkpoint and not any(isinstance(c, ModelCheckpoint) for c in user):
        shortcuts.append(ModelCheckpoint(monitor=monitor))
    history = History()
    hooks = CallbackList([history, *loggers(verbose), *user, *shortcuts])
    hooks.set_model(model)
    hooks.set_params(
        {
            "epochs": epochs,
            "initial_epoch": initial_epoch,
            "steps": len(data),
            "verbose": verbose,
            "log_keys": _log_keys(model, validation is not None, compute_train_metrics),
        }
    )
    model.history = history
    return _loop(model, hooks, history, data, validation, compute_train_metrics)


def _loop(
    model: Model,
    hooks: CallbackList,
    history: History,
    data: Loader,
    validation: tuple[Any, Any] | Loader | None,
    compute_train_metrics: bool,
) -> History:
    """The loop of the textbook, each hook call in sight."""
    params = hooks.params
    safety = _Safety(model, hooks, params["initial_epoch"])
    model.stop_training = False
    hooks.on_train_begin()
    try:
        for epoch in range(params["initial_epoch"], params["epochs"]):
            hooks.on_epoch_begin(epoch)
            start, rate = time.perf_counter(), model.optimizer.learning_rate
            logs = train_epoch(model, data, hooks, compute_train_metrics)
            if validation is not None:
                logs.update(validate(model, validation))
            logs.update(learning_rate=rate, epoch_time=time.perf_counter() - start)
            hooks.on_epoch_end(epoch, logs)
            if _diverged(logs):
                _report(
                    params["verbose"],
                    f"TRAINING STOPPED: {_divergence(logs)} at epoch {epoch + 1} (diverging; "
                    f"try a smaller learning rate). Restored the weights of epoch "
                    f"{safety.restore()}.",
                )
                break
            safety.keep(epoch)
            if model.stop_training:
                history.stopped_early = True
                break
    except BaseException as error:
        what = "INTERRUPTED" if isinstance(error, KeyboardInterrupt) else "STOPPED BY AN ERROR"
        _report(
            params["verbose"],
            f"TRAINING {what}: restored the weights of epoch {safety.restore()}.",
        )
        raise
    hooks.on_train_end()
    return history


def train_epoch(
    model: Model, data: Loader, hooks: CallbackList, keep_logits: bool
) -> dict[str, float]:
    """One pass over the batches: forward, loss, backward, step; returns the epoch's logs."""
    total: Any = 0.0
    count = 0
    kept, seen = [], []
    batch_logs = hooks.wants_batches
    with iter(data) as batches:  # ends a reading thread, whatever happens
        for batch, (x_batch, y_batch) in enumerate(batches):
            xb, yb = inputs.check_batch(
                model, x_batch, y_batch, "X_train", batch + 1, len(data), True
            )
            logits = model._forward(xb, True)
            value, gradient = model.loss.value_and_gradient(logits, yb)
            model._backward(gradient)
            model.optimizer.step(model.layers)
            size = xb.shape[0]
            total, count = total + value * size, count + size
            if keep_logits:
                kept.append(logits.copy())
                seen.append(yb)
            if batch_logs:
                hooks.on_batch_end(batch, {"batch": batch, "size": size, "loss": float(value)})
    loss = float(total) / count
    logs = {"loss": loss}
    if keep_logits:
        scores = model._scores(xp.concatenate(seen), xp.concatenate(kept), loss)
        logs.update({k: v for k, v in scores.items() if k != "loss"})
    return logs


def validate(model: Model, validation: tuple[Any, Any] | Loader) -> dict[str, float]:
    """The loss and metrics on the validation set, keys prefixed with ``val_``."""
    if isinstance(validation, Loader):
        logits, y_val = inputs.loader_logits(model, validation, False, "evaluation", True)
    else:
        x_val, y_val = validation
        logits = model._logits(x_val)
    scores = model._scores(y_val, logits, model.loss.direct(logits, y_val))
    return {f"val_{k}": v for k, v in scores.items()}


def training_loader(model: Model, X: Any, y: Any, batch_size: int | None) -> Loader:
    """The loader the loop reads: the given one, or a `DataLoader` over the arrays.

    Arrays go through the same loader as user data (a per-epoch permutation from the
    global random state, the indices of a batch sorted), so the same seed gives the
    same weights whichever way the data come. In-memory arrays are checked whole
    and moved to the device once; a memory-mapped array is read batch by batch.

    ``batch_size`` left out (`DEFAULT_BATCH_SIZE`) or None means 32 with arrays and the
    loader's own batch size with a loader; an explicit one must equal the loader's.
    """
    left_out = batch_size is None or batch_size is DEFAULT_BATCH_SIZE
    if isinstance(X, Loader):
        if y is not None:
            raise ValueError(
                f"train: y_train must be None when X_train is a {type(X).__name__} "
                f"(the loader gives the targets); got {type(y).__name__}"
            )
        own = getattr(X, "batch_size", None)
        if not left_out and batch_size != own:
            raise ValueError(
                f"train: batch_size comes from the {type(X).__name__} ({own}); leave it "
                f"out or pass the same; got {batch_size!r}"
            )
        if not X.has_targets:
            raise ValueError(
                f"train: the {type(X).__name__} of X_train gives no targets; create it with y"
            )
        return X
    batch_size = _checks.positive_int(
        "train", "batch_size", DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    )
    if isinstance(X, np.memmap):
        _check_memmap(model, X, y)
        return DataLoader(X, y, batch_size)
    x, y = inputs.check_xy(model, X, y, "X_train", "y_train")
    return DataLoader._checked_arrays(x, y, batch_size)


def _check_memmap(model: Model, x: np.memmap, y: Any) -> None:
    """Check a memory-mapped X_train without reading it (its values: batch by batch)."""
    inputs.check_layout(model, x, "X_train")
    if y is None:
        raise ValueError("y_train must be an array; got None")
    y = np.asarray(y) if not hasattr(y, "shape") else y
    if y.ndim == 0 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"X_train and y_train must hold as many samples; got {x.shape[0]} and "
            f"{y.shape[0] if y.ndim else 'a scalar'}"
        )


def validation_data(
    model: Model,
    data: Loader,
    evaluation: Any,
    auto_evaluation: float,
    held_out_batch: int | None = None,
) -> tuple[Loader, tuple[Any, Any] | Loader | None]:
    """``(training loader, validation set)``: arrays, a loader, or None without one.

    ``auto_evaluation`` holds samples out by index (`DataLoader.split`), drawn from the
    global random state like an epoch's shuffle: the data set is never copied. The
    held-out loader reads ``held_out_batch`` samples at a time (None: the loader's size).
    """
    if evaluation is not None:
        if isinstance(evaluation, Loader):
            if not evaluation.has_targets:
                raise ValueError(
                    f"train: the {type(evaluation).__name__} of evaluation gives no targets"
                )
            return data, evaluation.in_order()
        if not isinstance(evaluation, (tuple, list)) or len(evaluation) != 2:
            received = type(evaluation).__name__
            if isinstance(evaluation, (tuple, list)):
                received += f" of length {len(evaluation)}"
            raise ValueError(
                f"train: evaluation must be a tuple (X_val, y_val) or a DataLoader; got {received}"
            )
        x_val, y_val = inputs.check_xy(
            model, evaluation[0], evaluation[1], "evaluation[0]", "evaluation[1]"
        )
        return data, (x_val, y_val)
    if auto_evaluation == 0:
        return data, None
    if not isinstance(data, DataLoader):
        raise ValueError(
            f"train: auto_evaluation={auto_evaluation} holds samples out by index, which a "
            f"{type(data).__name__} does not have; pass evaluation=(X_val, y_val) or a "
            f"loader, or auto_evaluation=0"
        )
    if int(data.num_samples * auto_evaluation) == 0:
        return data, None
    kept, held_out = data.split(auto_evaluation)
    return kept, held_out.in_order(held_out_batch)


class _Safety:
    """The weights an interruption or a divergence falls back to.

    With an in-memory checkpoint these are the checkpoint's best weights; without
    one, those of the last epoch that ended with a finite loss.
    """

    def __init__(self, model: Model, hooks: CallbackList, initial_epoch: int) -> None:
        self.model = model
        checkpoint = hooks.first(ModelCheckpoint)
        self.checkpoint = checkpoint if checkpoint is not None and checkpoint.path is None else None
        self.snapshot, self.epoch = Snapshot.take(model.layers, model.optimizer), initial_epoch

    def keep(self, epoch: int) -> None:
        """Called after each finite epoch (0-based ``epoch``)."""
        if self.checkpoint is None:
            self.snapshot = Snapshot.take(self.model.layers, self.model.optimizer)
            self.epoch = epoch + 1
        elif self.checkpoint.snapshot is not None:
            self.snapshot, self.epoch = self.checkpoint.snapshot, self.checkpoint.best_epoch

    def restore(self) -> int:
        """Put the safe weights back; returns the (1-based) epoch they come from."""
        self.snapshot.restore(self.model.layers, self.model.optimizer)
        return self.epoch


def _report(verbose: int, message: str) -> None:
    """Print an event of training; when silent, still warn, since it changed the weights."""
    if verbose:
        print(message)
    else:
        warnings.warn(message, RuntimeWarning, stacklevel=5)


def _log_keys(model: Model, validation: bool, train_metrics: bool) -> list[str]:
    """The keys every epoch's logs will hold, in order."""
    metrics = [metric.key for metric in model.metrics]
    keys = ["loss", *(metrics if train_metrics else [])]
    if validation:
        keys += ["val_loss", *(f"val_{k}" for k in metrics)]
    return [*keys, "learning_rate", "epoch_time"]


def _diverged(logs: dict[str, float]) -> bool:
    return not all(math.isfinite(logs[k]) for k in ("loss", "val_loss") if k in logs)


def _divergence(logs: dict[str, float]) -> str:
    key = next(k for k in ("val_loss", "loss") if k in logs and not math.isfinite(logs[k]))
    return f"the {key.replace('val_', 'validation ')} became {logs[key]}"
