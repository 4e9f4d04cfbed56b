"""Learning curves with matplotlib (optional: ``pip install matplotlib``, or the ``plot`` extra)."""

from __future__ import annotations

from typing import Any

from .history import History

__all__ = ["plot_history"]


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "mpneuralnetwork.plot needs matplotlib, which is not installed. "
            "Install it with: pip install matplotlib"
        ) from None
    return plt


def plot_history(history: History | dict[str, list[float]], metrics: bool = True) -> Any:
    """Draw the loss and metric curves of a training run, training vs validation.

    One panel for the loss and one per metric; each panel holds the training curve
    (when recorded) and the validation curve (``val_`` keys), and the loss panel
    marks the best epoch.

    Args:
        history: The `History` returned by
            ``Model.train``, or its ``history`` dict.
        metrics: Also draw a panel per metric.

    Returns:
        The `matplotlib.figure.Figure`.

    Raises:
        ImportError: matplotlib is not installed.
        ValueError: The history holds no epoch.
    """
    plt = _pyplot()
    values = history.history if isinstance(history, History) else history
    if not isinstance(values, dict) or not values.get("loss"):
        raise ValueError("plot_history: history holds no epoch (train for at least one epoch)")
    epochs = list(range(1, len(values["loss"]) + 1))
    names = ["loss"]
    if metrics:
        skip = {"loss", "learning_rate", "epoch_time"}
        for key in values:
            name = key[4:] if key.startswith("val_") else key
            if name not in skip and name not in names:
                names.append(name)
    figure, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.6), squeeze=False)
    for axis, name in zip(axes[0], names, strict=True):
        if name in values:
            axis.plot(epochs, values[name], marker="o", markersize=3, label=f"training {name}")
        if f"val_{name}" in values:
            axis.plot(
                epochs, values[f"val_{name}"], marker="o", markersize=3, label=f"validation {name}"
            )
        if name == "loss" and isinstance(history, History) and history.best_epoch is not None:
            axis.axvline(history.best_epoch, color="grey", linestyle="--", label="best epoch")
        axis.set_xlabel("epoch")
        axis.set_title(name)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    return figure
