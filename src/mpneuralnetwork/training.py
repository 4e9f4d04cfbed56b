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
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from . import _checks
from .backend import xp
from .callbacks import Callback, CallbackList, EarlyStopping, ModelCheckpoint, check_callbacks
from .history import History
from .progress import loggers
from .weights import Snapshot

if TYPE_CHECKING:
    from .model import Model

Batches = Iterator[tuple[Any, Any]]


def fit(
    model: Model,
    X_train: Any,
    y_train: Any,
    epochs: int,
    batch_size: int,
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
    batch_size = _checks.positive_int("train", "batch_size", batch_size)
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

    x, y = model._check_xy(X_train, y_train, "X_train", "y_train")
    x, y, x_val, y_val = validation_split(model, x, y, evaluation, auto_evaluation)
    monitor = "loss" if x_val is None else "val_loss"
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
            "steps": -(-x.shape[0] // batch_size),
            "verbose": verbose,
            "log_keys": _log_keys(model, x_val is not None, compute_train_metrics),
        }
    )
    model.history = history
    return _loop(model, hooks, history, (x, y, batch_size), (x_val, y_val), compute_train_metrics)


def _loop(
    model: Model,
    hooks: CallbackList,
    history: History,
    data: tuple[Any, Any, int],
    validation: tuple[Any, Any],
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
            logs = train_epoch(model, shuffled_batches(*data), hooks, compute_train_metrics)
            if validation[0] is not None:
                logs.update(validate(model, *validation))
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
    model: Model, batches: Batches, hooks: CallbackList, keep_logits: bool
) -> dict[str, float]:
    """One pass over the batches: forward, loss, backward, step; returns the epoch's logs."""
    total: Any = 0.0
    count = 0
    kept, seen = [], []
    batch_logs = hooks.wants_batches
    for batch, (xb, yb) in enumerate(batches):
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


def validate(model: Model, x_val: Any, y_val: Any) -> dict[str, float]:
    """The loss and metrics on the validation set, keys prefixed with ``val_``."""
    logits = model._logits(x_val)
    scores = model._scores(y_val, logits, model.loss.direct(logits, y_val))
    return {f"val_{k}": v for k, v in scores.items()}


def shuffled_batches(x: Any, y: Any, batch_size: int) -> Batches:
    """Mini-batches in a new random order (the global random state), the last one smaller.

    Gathering per batch keeps no shuffled copy of the whole data set in memory.
    """
    n = x.shape[0]
    order = xp.random.permutation(n)
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        yield x[index], y[index]


def validation_split(
    model: Model, x: Any, y: Any, evaluation: Any, auto_evaluation: float
) -> tuple[Any, Any, Any, Any]:
    """``(x_train, y_train, x_val, y_val)``; the validation pair is None without one."""
    if evaluation is not None:
        if not isinstance(evaluation, (tuple, list)) or len(evaluation) != 2:
            received = type(evaluation).__name__
            if isinstance(evaluation, (tuple, list)):
                received += f" of length {len(evaluation)}"
            raise ValueError(f"train: evaluation must be a tuple (X_val, y_val); got {received}")
        x_val, y_val = model._check_xy(
            evaluation[0], evaluation[1], "evaluation[0]", "evaluation[1]"
        )
        return x, y, x_val, y_val
    n = x.shape[0]
    n_val = int(n * auto_evaluation)
    if n_val == 0:
        return x, y, None, None
    if n_val >= n:
        raise ValueError(f"train: auto_evaluation={auto_evaluation} leaves no training sample")
    order = xp.random.permutation(n)
    val_idx, train_idx = order[:n_val], order[n_val:]
    return x[train_idx], y[train_idx], x[val_idx], y[val_idx]


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
