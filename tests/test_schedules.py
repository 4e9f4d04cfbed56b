"""Learning-rate schedules: closed forms worked out by hand, and what training records."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from mpneuralnetwork import set_seed
from mpneuralnetwork.layers import Dense
from mpneuralnetwork.losses import MSE
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import SGD
from mpneuralnetwork.schedules import CosineAnnealing, ExponentialDecay, Schedule, StepDecay


def rates(schedule: Schedule, base: float, epochs: int) -> list[float]:
    schedule.base_lr = base
    return [schedule.rate(e) for e in range(epochs)]


def test_step_decay() -> None:
    assert rates(StepDecay(2, gamma=0.5), 0.8, 6) == [0.8, 0.8, 0.4, 0.4, 0.2, 0.2]
    assert rates(StepDecay(3), 1.0, 4) == [1.0, 1.0, 1.0, pytest.approx(0.1)]


def test_exponential_decay() -> None:
    assert rates(ExponentialDecay(0.5), 0.8, 4) == [0.8, 0.4, 0.2, 0.1]


def test_cosine_annealing_without_warmup() -> None:
    # min_lr + (base - min_lr)(1 + cos(pi e / 4)) / 2 with base 0.1, min_lr 0.01
    expected = [
        0.1,
        0.01 + 0.09 * (1 + math.sqrt(0.5)) / 2,
        0.055,
        0.01 + 0.09 * (1 - math.sqrt(0.5)) / 2,
        0.01,
        0.01,  # flat after T_max
    ]
    np.testing.assert_allclose(rates(CosineAnnealing(4, min_lr=0.01), 0.1, 6), expected)


def test_cosine_annealing_with_warmup() -> None:
    # a ramp base (e + 1) / 2 over two epochs, then the cosine over T_max - 2 = 2 epochs
    expected = [0.5, 1.0, 1.0, 0.5, 0.0, 0.0]
    np.testing.assert_allclose(
        rates(CosineAnnealing(4, warmup_epochs=2), 1.0, 6), expected, atol=1e-15
    )


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: CosineAnnealing(0), "T_max must be a positive integer"),
        (lambda: CosineAnnealing(3, warmup_epochs=3), "warmup_epochs must be smaller than T_max"),
        (lambda: CosineAnnealing(3, min_lr=-1), "min_lr must be a number"),
        (lambda: StepDecay(0), "step_size must be a positive integer"),
        (lambda: StepDecay(2, gamma=0), "gamma must be a number in"),
        (lambda: ExponentialDecay(1.5), "gamma must be a number in"),
    ],
)
def test_bad_arguments(make: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_history_holds_the_rate_each_epoch_trained_at() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 2)).astype(np.float32)
    y = x.sum(axis=1, keepdims=True)
    set_seed(0)
    model = Model([Dense(1, input_size=2)], MSE(), SGD(learning_rate=0.2))
    schedule = StepDecay(1, gamma=0.5)
    history = model.train(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[schedule])
    assert history.history["learning_rate"] == [0.2, 0.1, 0.05]
    assert schedule.base_lr == 0.2
    # a second run follows the same curve: the base is kept
    history = model.train(x, y, epochs=2, batch_size=8, verbose=0)
    assert history.history["learning_rate"] == [0.2, 0.1]
