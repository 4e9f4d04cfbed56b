"""Learning-rate schedules: callbacks that set the rate of every epoch in closed form.

Each schedule sets ``model.optimizer.learning_rate`` at the beginning of every
epoch from ``base`` (the optimizer's learning rate when the schedule first began
training) and ``e``, the 0-based epoch index (epoch 1 trains at ``e = 0``), with
PyTorch's closed forms. ``history.history["learning_rate"]`` then holds the rate
each epoch trained at. ``base`` is saved with the model, so a resumed run
(``train(..., initial_epoch=k)``) continues the same curve.
"""

from __future__ import annotations

import math
from typing import Any

from . import _checks
from .callbacks import LearningRateScheduler, Schedule

__all__ = ["CosineAnnealing", "ExponentialDecay", "LearningRateScheduler", "Schedule", "StepDecay"]


class StepDecay(Schedule):
    """``base · gamma^(e // step_size)``: the rate drops by ``gamma`` every ``step_size`` epochs.

    Args:
        step_size: Epochs between two drops, >= 1.
        gamma: The factor of each drop, in (0, 1].
    """

    def __init__(self, step_size: int, gamma: float = 0.1) -> None:
        super().__init__()
        self.step_size = _checks.positive_int("StepDecay", "step_size", step_size)
        self.gamma = _checks.number_in("StepDecay", "gamma", gamma, 0.0, 1.0, low_open=True)

    def rate(self, epoch: int) -> float:
        return self._base() * self.gamma ** (epoch // self.step_size)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "step_size": self.step_size, "gamma": self.gamma}


class ExponentialDecay(Schedule):
    """``base · gamma^e``: the rate shrinks by ``gamma`` every epoch.

    Args:
        gamma: The factor per epoch, in (0, 1].
    """

    def __init__(self, gamma: float) -> None:
        super().__init__()
        self.gamma = _checks.number_in("ExponentialDecay", "gamma", gamma, 0.0, 1.0, low_open=True)

    def rate(self, epoch: int) -> float:
        return self._base() * self.gamma**epoch

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "gamma": self.gamma}


class CosineAnnealing(Schedule):
    """Half a cosine from ``base`` down to ``min_lr`` over ``T_max`` epochs, then flat.

    Without warm-up: ``min_lr + (base − min_lr) · (1 + cos(π · min(e, T_max) / T_max)) / 2``.
    With ``warmup_epochs = W > 0``: a linear ramp ``base · (e + 1) / W`` over the first
    ``W`` epochs (epoch ``W`` trains at ``base``), then the same cosine over the remaining
    ``T_max − W`` epochs, with ``e − W`` in place of ``e``.

    Args:
        T_max: Epochs from the start (warm-up included) to ``min_lr``, >= 1.
        min_lr: The final rate, >= 0.
        warmup_epochs: Epochs of linear warm-up, in [0, T_max).
    """

    def __init__(self, T_max: int, min_lr: float = 0.0, warmup_epochs: int = 0) -> None:
        super().__init__()
        self.T_max = _checks.positive_int("CosineAnnealing", "T_max", T_max)
        self.min_lr = _checks.number_in("CosineAnnealing", "min_lr", min_lr, 0.0, math.inf)
        self.warmup_epochs = _checks.non_negative_int(
            "CosineAnnealing", "warmup_epochs", warmup_epochs
        )
        if self.warmup_epochs >= self.T_max and self.warmup_epochs > 0:
            raise ValueError(
                f"CosineAnnealing: warmup_epochs must be smaller than T_max={self.T_max}; "
                f"got {warmup_epochs!r}"
            )

    def rate(self, epoch: int) -> float:
        base, warmup = self._base(), self.warmup_epochs
        if epoch < warmup:
            return base * (epoch + 1) / warmup
        span = self.T_max - warmup
        progress = min(epoch - warmup, span) / span
        return self.min_lr + (base - self.min_lr) * (1.0 + math.cos(math.pi * progress)) / 2.0

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "T_max": self.T_max,
            "min_lr": self.min_lr,
            "warmup_epochs": self.warmup_epochs,
        }
