"""Metrics on small cases worked out by hand."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest

from mpneuralnetwork import to_device
from mpneuralnetwork.metrics import (
    MAE,
    RMSE,
    Accuracy,
    F1Score,
    Precision,
    R2Score,
    Recall,
    TopKAccuracy,
)


def dev(values: Any) -> Any:
    return to_device(np.asarray(values, dtype=np.float32))


# Binary case: rounded predictions [1, 0, 0, 0, 1] against [1, 0, 1, 1, 0].
# Positive class: TP = 1 (sample 0), FP = 1 (sample 4), FN = 2 (samples 2, 3).
# The negative class would give precision 1/3 and recall 1/2 instead.
BIN_TRUE = [[1.0], [0.0], [1.0], [1.0], [0.0]]
BIN_PRED = [[0.9], [0.2], [0.4], [0.1], [0.6]]

# One-hot case, 3 classes: true labels [0, 0, 1, 1, 2, 2], predicted argmax [0, 1, 1, 1, 0, 2].
# class 0: TP 1, predicted 2, actual 2 -> P 1/2, R 1/2
# class 1: TP 2, predicted 3, actual 2 -> P 2/3, R 1
# class 2: TP 1, predicted 1, actual 2 -> P 1,   R 1/2
# macro P = 13/18, macro R = 2/3, F1 = 2PR/(P+R) = 468/675
TRUE_LABELS = [0, 0, 1, 1, 2, 2]
PRED_LABELS = [0, 1, 1, 1, 0, 2]
HOT_TRUE = np.eye(3)[TRUE_LABELS]
HOT_PRED = 0.1 + 0.7 * np.eye(3)[PRED_LABELS]  # argmax is the predicted label


def test_accuracy_binary_and_one_hot() -> None:
    assert Accuracy()(dev(BIN_TRUE), dev(BIN_PRED)) == pytest.approx(2 / 5)
    assert Accuracy()(dev(HOT_TRUE), dev(HOT_PRED)) == pytest.approx(4 / 6)
    # 1-D binary inputs are accepted too
    assert Accuracy()(dev(np.ravel(BIN_TRUE)), dev(np.ravel(BIN_PRED))) == pytest.approx(2 / 5)


def test_precision_recall_f1_binary_measure_the_positive_class() -> None:
    p = Precision()(dev(BIN_TRUE), dev(BIN_PRED))
    r = Recall()(dev(BIN_TRUE), dev(BIN_PRED))
    f1 = F1Score()(dev(BIN_TRUE), dev(BIN_PRED))
    assert p == pytest.approx(1 / 2, abs=1e-7)
    assert r == pytest.approx(1 / 3, abs=1e-7)
    assert f1 == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3 + 1e-8), abs=1e-7)
    assert f1 == pytest.approx(0.4, abs=1e-7)


def test_precision_recall_f1_one_hot_macro_average() -> None:
    p = Precision()(dev(HOT_TRUE), dev(HOT_PRED))
    r = Recall()(dev(HOT_TRUE), dev(HOT_PRED))
    f1 = F1Score()(dev(HOT_TRUE), dev(HOT_PRED))
    assert p == pytest.approx(13 / 18, abs=1e-7)
    assert r == pytest.approx(2 / 3, abs=1e-7)
    assert f1 == pytest.approx(468 / 675, abs=1e-7)


def test_no_check_takes_class_labels() -> None:
    t, q = dev(TRUE_LABELS), dev(PRED_LABELS)
    assert Precision()(t, q, num_classes=3, no_check=True) == pytest.approx(13 / 18, abs=1e-7)
    assert Recall()(t, q, num_classes=3, no_check=True) == pytest.approx(2 / 3, abs=1e-7)
    assert F1Score()(t, q, num_classes=3, no_check=True) == pytest.approx(468 / 675, abs=1e-7)
    # binary labels: num_classes=1, 1 is the positive class
    bt, bq = dev([1, 0, 1, 1, 0]), dev([1, 0, 0, 0, 1])
    assert Precision()(bt, bq, num_classes=1, no_check=True) == pytest.approx(1 / 2, abs=1e-7)
    assert Recall()(bt, bq, num_classes=1, no_check=True) == pytest.approx(1 / 3, abs=1e-7)
    # integer label arrays work as well
    it = to_device(np.array(TRUE_LABELS))
    iq = to_device(np.array(PRED_LABELS))
    assert Recall()(it, iq, num_classes=3, no_check=True) == pytest.approx(2 / 3, abs=1e-7)


def test_f1_is_harmonic_mean_with_epsilon() -> None:
    f1 = F1Score(epsilon=0.5)
    # binary case: P = 1/(2 + 0.5) = 0.4, R = 1/(3 + 0.5) = 2/7
    p, r = 1 / 2.5, 1 / 3.5
    assert f1(dev(BIN_TRUE), dev(BIN_PRED)) == pytest.approx(2 * p * r / (p + r + 0.5), abs=1e-7)


def test_perfect_predictions() -> None:
    t = dev(BIN_TRUE)
    assert Accuracy()(t, t) == 1.0
    for metric in (Precision(), Recall(), F1Score()):
        assert metric(t, t) == pytest.approx(1.0, abs=1e-6)
        assert metric(dev(HOT_TRUE), dev(HOT_TRUE)) == pytest.approx(1.0, abs=1e-6)
    assert RMSE()(t, t) == 0.0
    assert MAE()(t, t) == 0.0
    assert R2Score()(dev([[1.0], [2.0], [4.0]]), dev([[1.0], [2.0], [4.0]])) == 1.0


def test_worst_predictions() -> None:
    t, q = dev([[1.0], [0.0], [1.0], [0.0]]), dev([[0.0], [1.0], [0.0], [1.0]])
    for metric in (Accuracy(), Precision(), Recall(), F1Score()):
        assert metric(t, q) == pytest.approx(0.0, abs=1e-9)
    hot_t = dev(np.eye(3)[[0, 1, 2]])
    hot_q = dev(np.eye(3)[[1, 2, 0]])
    for metric in (Accuracy(), Precision(), Recall(), F1Score()):
        assert metric(hot_t, hot_q) == pytest.approx(0.0, abs=1e-9)


def test_nothing_predicted_positive_is_finite() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = Precision()(dev([[1.0], [0.0]]), dev([[0.1], [0.2]]))
        f1 = F1Score()(dev([[1.0], [0.0]]), dev([[0.1], [0.2]]))
    assert p == 0.0 and f1 == 0.0


def test_regression_metrics() -> None:
    y = dev([[1.0, 2.0], [3.0, 4.0]])
    q = dev([[1.0, 0.0], [0.0, 4.0]])
    # per-sample sums of squares: 4 and 9 -> mean 6.5; abs sums 2 and 3 -> mean 2.5
    assert RMSE()(y, q) == pytest.approx(math.sqrt(6.5))
    assert MAE()(y, q) == pytest.approx(2.5)
    # column means 2 and 3: SS_tot = 4, SS_res = 13
    assert R2Score()(y, q) == pytest.approx(1 - 13 / 4)
    assert RMSE.from_mse(6.25) == 2.5
    assert isinstance(RMSE.from_mse(np.float32(4.0)), float)


def test_r2_uses_each_columns_own_mean() -> None:
    # column 0 around 0, column 1 around 100: a global mean would inflate SS_tot
    y = dev([[-1.0, 99.0], [1.0, 101.0]])
    q = dev([[0.0, 100.0], [0.0, 100.0]])
    assert R2Score()(y, q) == pytest.approx(0.0, abs=1e-6)


def test_r2_with_a_constant_target_is_finite() -> None:
    y = dev([[2.0], [2.0], [2.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        perfect = R2Score()(y, y)
        off = R2Score()(y, dev([[2.0], [2.0], [3.0]]))
    assert perfect == 1.0
    assert math.isfinite(off)
    assert off == pytest.approx(1 - 1 / 1e-8, rel=1e-6)


SCORES = [[0.1, 0.6, 0.3], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5], [0.4, 0.35, 0.25]]
SCORE_LABELS = [2, 0, 0, 1]
# top-1: [1, 0, 2, 0] -> only sample 1 right; top-2 misses only sample 2


@pytest.mark.parametrize(
    "target",
    [
        np.eye(3)[SCORE_LABELS],
        np.array(SCORE_LABELS),
        np.array(SCORE_LABELS, dtype=np.float32).reshape(-1, 1),
    ],
    ids=["one-hot", "labels", "labels-column"],
)
def test_top_k_accuracy(target: np.ndarray) -> None:
    t, q = to_device(target), dev(SCORES)
    assert TopKAccuracy(1)(t, q) == pytest.approx(0.25)
    assert TopKAccuracy(2)(t, q) == pytest.approx(0.75)
    assert TopKAccuracy(3)(t, q) == pytest.approx(1.0)


def test_all_metrics_return_python_floats() -> None:
    values = [
        RMSE()(dev(BIN_TRUE), dev(BIN_PRED)),
        MAE()(dev(BIN_TRUE), dev(BIN_PRED)),
        R2Score()(dev(BIN_TRUE), dev(BIN_PRED)),
        Accuracy()(dev(HOT_TRUE), dev(HOT_PRED)),
        Precision()(dev(HOT_TRUE), dev(HOT_PRED)),
        Recall()(dev(BIN_TRUE), dev(BIN_PRED)),
        F1Score()(dev(HOT_TRUE), dev(HOT_PRED)),
        Precision()(dev(TRUE_LABELS), dev(PRED_LABELS), num_classes=3, no_check=True),
        TopKAccuracy(2)(dev(HOT_TRUE), dev(HOT_PRED)),
    ]
    for value in values:
        assert type(value) is float


@pytest.mark.parametrize(
    "metric",
    [RMSE(), MAE(), R2Score(), Accuracy(), Precision(), Recall(), F1Score(), TopKAccuracy(1)],
    ids=lambda m: type(m).__name__,
)
def test_shape_mismatch_raises_value_error(metric: Any) -> None:
    with pytest.raises(ValueError):
        metric(dev(np.eye(3)), dev(np.ones((3, 2))))
    with pytest.raises(ValueError):
        metric(dev(np.eye(3)), dev(np.ones((4, 3)) / 3))


def test_no_check_label_count_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        Precision()(dev([0, 1, 2]), dev([0, 1]), num_classes=3, no_check=True)


def test_get_config_and_key() -> None:
    assert TopKAccuracy(3).get_config() == {"type": "TopKAccuracy", "k": 3}
    assert F1Score().get_config() == {"type": "F1Score", "epsilon": 1e-8}
    assert R2Score(epsilon=1e-6).get_config() == {"type": "R2Score", "epsilon": 1e-6}
    assert Accuracy().get_config() == {"type": "Accuracy"}
    assert F1Score().key == "f1score"
    with pytest.raises(ValueError, match="k"):
        TopKAccuracy(0)
