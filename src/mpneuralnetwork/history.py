"""The record of a training run, as returned by ``Model.train``."""

from __future__ import annotations

import math
from typing import Any

from .callbacks import Callback

__all__ = ["History"]


class History(Callback):
    """Per-epoch values of one ``train`` call (a callback that ``train`` always adds).

    Attributes:
        history: A plain dict of per-epoch lists. Keys: ``"loss"`` (training loss),
            the training metrics when computed (``"accuracy"``, ...), ``"val_loss"``
            and ``"val_<metric>"`` with a validation set, ``"learning_rate"`` (the
            rate the epoch trained at) and ``"epoch_time"`` (seconds).
        epochs: The epoch numbers (1-based) the lists refer to.
        best_epoch: The epoch of the lowest monitored loss (the validation loss,
            else the training loss), whose weights ``model_checkpoint`` keeps; None
            before any epoch ends.
        best_loss: The monitored loss at ``best_epoch``.
        stopped_early: True when a callback (early stopping) ended the run.
    """

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epochs: list[int] = []
        self.best_epoch: int | None = None
        self.best_loss: float | None = None
        self.stopped_early = False

    def append(self, epoch: int, values: dict[str, float]) -> None:
        """Record the values of one epoch (``epoch`` 1-based)."""
        self.epochs.append(epoch)
        for key, value in values.items():
            self.history.setdefault(key, []).append(float(value))
        monitored = values.get("val_loss", values.get("loss"))
        if monitored is not None and math.isfinite(monitored):
            if self.best_loss is None or monitored < self.best_loss:
                self.best_epoch, self.best_loss = epoch, float(monitored)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.append(epoch + 1, logs or {})

    def __getitem__(self, key: str) -> list[float]:
        return self.history[key]

    def __contains__(self, key: object) -> bool:
        return key in self.history

    def __len__(self) -> int:
        return len(self.epochs)

    def __repr__(self) -> str:
        return (
            f"History(epochs={len(self.epochs)}, keys={sorted(self.history)}, "
            f"best_epoch={self.best_epoch})"
        )
