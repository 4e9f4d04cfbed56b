"""The record of a training run, as returned by ``Model.train``."""

from __future__ import annotations

__all__ = ["History"]


class History:
    """Per-epoch values of one ``train`` call.

    Attributes:
        history: A plain dict of per-epoch lists. Keys: ``"loss"`` (training loss),
            the training metrics when computed (``"accuracy"``, ...), ``"val_loss"``
            and ``"val_<metric>"`` with a validation set, ``"learning_rate"`` and
            ``"epoch_time"`` (seconds).
        epochs: The epoch numbers (1-based) the lists refer to.
        best_epoch: The epoch whose weights the checkpoint kept (or the best
            monitored loss without checkpointing); None before any epoch ends.
        best_loss: The monitored loss at ``best_epoch``.
        stopped_early: True when early stopping ended the run.
    """

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epochs: list[int] = []
        self.best_epoch: int | None = None
        self.best_loss: float | None = None
        self.stopped_early = False

    def append(self, epoch: int, values: dict[str, float]) -> None:
        """Record the values of one epoch."""
        self.epochs.append(epoch)
        for key, value in values.items():
            self.history.setdefault(key, []).append(float(value))

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
