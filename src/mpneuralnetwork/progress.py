"""What ``train`` prints: a line per epoch (``verbose=1``), and a progress bar (``verbose=2``)."""

from __future__ import annotations

import warnings
from typing import Any

from .callbacks import Callback

_NOT_PRINTED = ("loss", "learning_rate", "epoch_time")


def epoch_line(epoch: int, epochs: int, logs: dict[str, float]) -> str:
    """``epoch  3/20   |   [training]   loss = …   |   [evaluation]   loss = …`` (1-based epoch)."""
    width = len(str(epochs))
    train = [f"loss = {logs['loss']:.4f}"] + [
        f"{k} = {v:.4f}"
        for k, v in logs.items()
        if k not in _NOT_PRINTED and not k.startswith("val_")
    ]
    line = f"epoch {epoch:>{width}}/{epochs}   |   [training]   " + "   ".join(train)
    val = [f"{k[4:]} = {v:.4f}" for k, v in logs.items() if k.startswith("val_")]
    if val:
        line += "   |   [evaluation]   " + "   ".join(val)
    return line


class EpochLogger(Callback):
    """Prints `epoch_line` at the end of every epoch."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        print(epoch_line(epoch + 1, self.params["epochs"], logs or {}))


class ProgressBar(Callback):
    """A tqdm bar over the batches of each epoch (the notebook widget in Jupyter).

    The bar shows the running training loss and goes away when the epoch ends;
    the epoch's line (`EpochLogger`) follows it.
    """

    def __init__(self, tqdm: Any) -> None:
        super().__init__()
        self._tqdm = tqdm
        self._bar: Any = None
        self._total = self._seen = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.close()  # the bar of an epoch an exception cut short
        self._bar = self._tqdm(
            total=self.params["steps"],
            desc=f"epoch {epoch + 1}/{self.params['epochs']}",
            unit="batch",
            leave=False,
        )
        self._total = self._seen = 0.0

    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        self._total += logs["loss"] * logs["size"]
        self._seen += logs["size"]
        self._bar.set_postfix(loss=f"{self._total / self._seen:.4f}", refresh=False)
        self._bar.update(1)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.close()

    def close(self) -> None:
        """Close the bar of the current epoch, if any (also after an exception)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def loggers(verbose: int) -> list[Callback]:
    """The printing callbacks of a ``verbose`` level (0, 1 or 2)."""
    if verbose == 0:
        return []
    if verbose == 2:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            warnings.warn(
                "train(verbose=2) needs tqdm for the progress bar (pip install tqdm); "
                "showing one line per epoch instead.",
                RuntimeWarning,
                stacklevel=4,
            )
        else:
            return [ProgressBar(tqdm), EpochLogger()]
    return [EpochLogger()]
