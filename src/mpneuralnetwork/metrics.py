"""Metrics: each is called as ``metric(y_true, y_pred)`` and returns a Python float.

``y_pred`` holds activated predictions (probabilities for classification), with
the shape of ``y_true``: (N, features), or (N, classes) one-hot. The classification
metrics (`Accuracy`, `Precision`, `Recall`, `F1Score`, `TopKAccuracy`) also take
integer class labels (class ids) as ``y_true``, shape (N,), beside predictions
(N, classes > 1): their results equal those on the one-hot rows of the labels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from . import _checks
from ._labels import class_ids, is_labels_for
from .backend import ArrayType, xp

__all__ = [
    "MAE",
    "RMSE",
    "Accuracy",
    "F1Score",
    "Metric",
    "Precision",
    "R2Score",
    "Recall",
    "TopKAccuracy",
]


def _pair(owner: str, y_true: Any, y_pred: Any) -> tuple[Any, Any]:
    """Both arguments as backend arrays of one shape, (N, features) for 1-D inputs."""
    y_true = y_true if isinstance(y_true, xp.ndarray) else xp.asarray(y_true)
    y_pred = y_pred if isinstance(y_pred, xp.ndarray) else xp.asarray(y_pred)
    if y_true.ndim == 1:
        y_true = y_true.reshape(-1, 1)
    if y_pred.ndim == 1:
        y_pred = y_pred.reshape(-1, 1)
    if y_true.shape != y_pred.shape or y_true.shape[0] == 0:
        raise ValueError(
            f"{owner}: y_true and y_pred must have the same non-empty shape; got "
            f"{tuple(y_true.shape)} and {tuple(y_pred.shape)}"
        )
    return y_true, y_pred


def _ratio(numerator: Any, denominator: Any) -> Any:
    """numerator / denominator, and 0 where the denominator is 0.

    A denominator of 0 needs ε = 0 and a count of 0, whose numerator is then 0 as well:
    0 is the limit of the ε > 0 formula as ε → 0 (for floats and backend arrays alike).
    """
    if isinstance(denominator, float):
        return numerator / denominator if denominator != 0.0 else 0.0
    zero = denominator == 0
    return xp.where(zero, 0.0, numerator / xp.where(zero, 1.0, denominator))


def _is_one_hot(y: Any) -> bool:
    return y.ndim == 2 and y.shape[1] > 1


def _class_labels(owner: str, y_true: Any, y_pred: Any) -> tuple[Any, Any] | None:
    """``(true class ids (N,), y_pred)`` when ``y_true`` holds class ids, else None.

    Class ids are a ``y_true`` of shape (N,) or (N, 1) beside ``y_pred`` of shape
    (N, classes > 1); each must be a whole number in [0, classes) (a ValueError names
    the first that is not).
    """
    y_true = y_true if isinstance(y_true, xp.ndarray) else xp.asarray(y_true)
    y_pred = y_pred if isinstance(y_pred, xp.ndarray) else xp.asarray(y_pred)
    if not is_labels_for(y_true, y_pred):
        return None
    return class_ids(y_true, y_pred.shape[1], f"{owner}: y_true"), y_pred


class Metric:
    """Base of the metrics: ``__call__(y_true, y_pred) -> float``."""

    def __call__(self, y_true: ArrayType, y_pred: ArrayType) -> float:
        raise NotImplementedError(f"{type(self).__name__} does not implement __call__")

    def get_config(self) -> dict[str, Any]:
        """``{"type": class name, **constructor arguments}``."""
        return {"type": type(self).__name__}

    @property
    def key(self) -> str:
        """The name of the metric in logs, results and `History`: the lower-cased class name.

        A model refuses two metrics with the same key (a `ValueError` when the model is built).
        """
        return type(self).__name__.lower()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "type")
        return f"{type(self).__name__}({args})"


class RMSE(Metric):
    """√(mean over the batch of Σ_features (y − ŷ)²)."""

    def __call__(self, y_true: ArrayType, y_pred: ArrayType) -> float:
        y_true, y_pred = _pair("RMSE", y_true, y_pred)
        diff = y_true - y_pred
        return math.sqrt(float((diff * diff).sum()) / y_true.shape[0])

    @staticmethod
    def from_mse(mse: float) -> float:
        """√mse: the RMSE from an MSE loss value."""
        return math.sqrt(float(mse))


class MAE(Metric):
    """Mean over the batch of Σ_features |y − ŷ|."""

    def __call__(self, y_true: ArrayType, y_pred: ArrayType) -> float:
        y_true, y_pred = _pair("MAE", y_true, y_pred)
        return float(xp.abs(y_true - y_pred).sum()) / y_true.shape[0]


class R2Score(Metric):
    """1 − SS_res/(SS_tot + ε), SS_tot taken around each column's mean.

    Args:
        epsilon: Keeps the division finite for a constant target. With ε = 0 and a
            constant target, the score is the limit as ε → 0: 1.0 for exact
            predictions, −inf otherwise.
    """

    def __init__(self, epsilon: float = 1e-8) -> None:
        self.epsilon = _checks.number_in("R2Score", "epsilon", epsilon, 0.0, math.inf)

    def __call__(self, y_true: ArrayType, y_pred: ArrayType) -> float:
        y_true, y_pred = _pair("R2Score", y_true, y_pred)
        residual = y_true - y_pred
        centered = y_true - y_true.mean(axis=0, keepdims=True)
        ss_res = float((residual * residual).sum())
        ss_tot = float((centered * centered).sum())
        if ss_tot + self.epsilon == 0.0:
            return 1.0 if ss_res == 0.0 else -math.inf
        return 1.0 - ss_res / (ss_tot + self.epsilon)

    def get_config(self) -> dict[str, Any]:
        return {"type": "R2Score", "epsilon": self.epsilon}


class Accuracy(Metric):
    """Fraction of correct predictions.

    One-hot targets (2-D, more than one column): argmax agreement; class ids (N,)
    beside predictions (N, classes): agreement with the argmax. Otherwise the
    predictions are rounded at 0.5 and compared with the targets.
    """

    def __call__(self, y_true: ArrayType, y_pred: ArrayType) -> float:
        labels = _class_labels("Accuracy", y_true, y_pred)
        if labels is not None:
            ids, probabilities = labels
            return float((ids == probabilities.argmax(axis=1)).mean())
        y_true, y_pred = _pair("Accuracy", y_true, y_pred)
        if _is_one_hot(y_true):
            return float((y_true.argmax(axis=1) == y_pred.argmax(axis=1)).mean())
        return float(((y_pred >= 0.5) == (y_true >= 0.5)).mean())


class _ClassScore(Metric):
    """Shared counting of Precision and Recall (macro average for one-hot targets).

    With ε = 0, a class never predicted (Precision) or never present (Recall) scores 0,
    the limit of the ε > 0 formula.
    """

    def __init__(self, epsilon: float = 1e-8) -> None:
        self.epsilon = _checks.number_in(type(self).__name__, "epsilon", epsilon, 0.0, math.inf)

    def __call__(
        self,
        y_true: ArrayType,
        y_pred: ArrayType,
        num_classes: int = 1,
        no_check: bool = False,
    ) -> float:
        """Score of ``y_pred`` against ``y_true``.

        Args:
            y_true: One-hot (N, classes) or binary (N, 1) targets, or class ids (N,)
                beside ``y_pred`` (N, classes); class labels (N,) with ``no_check=True``.
            y_pred: Probabilities with the shape of ``y_true``; labels with ``no_check``.
            num_classes: With ``no_check``, the number of classes (1 means binary labels
                with 1 the positive class).
            no_check: True when both inputs are already class labels.
        """
        owner = type(self).__name__
        if no_check:
            true_labels = xp.asarray(y_true).reshape(-1)
            pred_labels = xp.asarray(y_pred).reshape(-1)
            if true_labels.shape != pred_labels.shape:
                raise ValueError(
                    f"{owner}: y_true and y_pred must hold as many labels; got "
                    f"{true_labels.shape[0]} and {pred_labels.shape[0]}"
                )
            classes = _checks.positive_int(owner, "num_classes", num_classes)
        elif (labels := _class_labels(owner, y_true, y_pred)) is not None:
            true_labels, y_pred = labels
            classes, pred_labels = y_pred.shape[1], y_pred.argmax(axis=1)
        else:
            y_true, y_pred = _pair(owner, y_true, y_pred)
            if _is_one_hot(y_true):
                classes = y_true.shape[1]
                true_labels, pred_labels = y_true.argmax(axis=1), y_pred.argmax(axis=1)
            else:
                classes = 1
                true_labels, pred_labels = (y_true >= 0.5).ravel(), (y_pred >= 0.5).ravel()
        if classes == 1:  # binary: the positive class only
            true_positive = float((true_labels.astype(bool) & pred_labels.astype(bool)).sum())
            return self._score(
                true_positive,
                float(true_labels.astype(bool).sum()),
                float(pred_labels.astype(bool).sum()),
            )
        ids = xp.arange(classes)
        true_hot = true_labels.reshape(-1, 1) == ids
        pred_hot = pred_labels.reshape(-1, 1) == ids
        true_positive = (true_hot & pred_hot).sum(axis=0)
        scores = self._score(true_positive, true_hot.sum(axis=0), pred_hot.sum(axis=0))
        return float(scores.mean())

    def _score(self, true_positive: Any, actual: Any, predicted: Any) -> Any:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "epsilon": self.epsilon}


class Precision(_ClassScore):
    """TP/(TP + FP + ε); macro average over classes for one-hot targets.

    On binary targets (one column) it measures the positive class, label 1.

    Called as ``precision(y_true, y_pred, num_classes=1, no_check=False)``:

    - ``y_true``: one-hot (N, classes) or binary (N, 1) targets, or class ids (N,)
      beside ``y_pred`` (N, classes); with ``no_check=True``, class labels (N,).
    - ``y_pred``: probabilities with the shape of ``y_true``; with ``no_check=True``,
      class labels (N,).
    - ``num_classes``: with ``no_check=True``, the number of classes (1: binary labels,
      1 the positive class; more: the macro average over that many classes).
    - ``no_check``: True when both inputs are already class labels.

    Args:
        epsilon: Keeps the division finite when nothing is predicted.
    """

    def _score(self, true_positive: Any, actual: Any, predicted: Any) -> Any:
        return _ratio(true_positive, predicted + self.epsilon)


class Recall(_ClassScore):
    """TP/(TP + FN + ε); macro average over classes for one-hot targets.

    On binary targets (one column) it measures the positive class, label 1.

    Called as ``recall(y_true, y_pred, num_classes=1, no_check=False)``, with the
    arguments described under `Precision`.

    Args:
        epsilon: Keeps the division finite when a class is absent.
    """

    def _score(self, true_positive: Any, actual: Any, predicted: Any) -> Any:
        return _ratio(true_positive, actual + self.epsilon)


class F1Score(Metric):
    """2PR/(P + R + ε) from `Precision` and `Recall`.

    Called as ``f1(y_true, y_pred, num_classes=1, no_check=False)``, with the
    arguments described under `Precision`.

    Args:
        epsilon: Used by the three divisions; with ε = 0, F1 is 0 when P + R = 0.
    """

    def __init__(self, epsilon: float = 1e-8) -> None:
        self.epsilon = _checks.number_in("F1Score", "epsilon", epsilon, 0.0, math.inf)
        self._precision = Precision(self.epsilon)
        self._recall = Recall(self.epsilon)

    def __call__(
        self,
        y_true: ArrayType,
        y_pred: ArrayType,
        num_classes: int = 1,
        no_check: bool = False,
    ) -> float:
        p = self._precision(y_true, y_pred, num_classes, no_check)
        r = self._recall(y_true, y_pred, num_classes, no_check)
        return float(_ratio(2.0 * p * r, p + r + self.epsilon))

    def get_config(self) -> dict[str, Any]:
        return {"type": "F1Score", "epsilon": self.epsilon}


class TopKAccuracy(Metric):
    """Fraction of samples whose true class is among the k highest scores.

    Its key holds k (``top5accuracy`` for ``TopKAccuracy(5)``), so a model can report
    several k side by side. ``y_true`` is one-hot (N, classes) or holds class ids (N,)
    or (N, 1), whole numbers in [0, classes).

    Args:
        k: How many of the highest scores count, >= 1.
    """

    def __init__(self, k: int) -> None:
        self.k = _checks.positive_int("TopKAccuracy", "k", k)

    @property
    def key(self) -> str:
        """``top{k}accuracy``, e.g. ``top5accuracy``."""
        return f"top{self.k}accuracy"

    def __call__(self, y_true: ArrayType, y_pred: ArrayType) -> float:
        y_pred = y_pred if isinstance(y_pred, xp.ndarray) else xp.asarray(y_pred)
        y_true = y_true if isinstance(y_true, xp.ndarray) else xp.asarray(y_true)
        if y_pred.ndim != 2:
            raise ValueError(
                f"TopKAccuracy: y_pred must be (N, classes); got {tuple(y_pred.shape)}"
            )
        if y_true.shape == y_pred.shape:
            labels = y_true.argmax(axis=1)
        elif y_true.shape in ((y_pred.shape[0],), (y_pred.shape[0], 1)):
            labels = class_ids(y_true, y_pred.shape[1], "TopKAccuracy: y_true")
        else:
            raise ValueError(
                f"TopKAccuracy: y_true must be one-hot {tuple(y_pred.shape)} or labels "
                f"({y_pred.shape[0]},); got {tuple(y_true.shape)}"
            )
        true_scores = xp.take_along_axis(y_pred, labels.reshape(-1, 1), axis=1)
        higher = (y_pred > true_scores).sum(axis=1)  # ties count in the sample's favour
        return float((higher < self.k).mean())

    def get_config(self) -> dict[str, Any]:
        return {"type": "TopKAccuracy", "k": self.k}


#: The key of every TopKAccuracy in 1.1, whatever its k.
_LEGACY_TOPK_KEY = "topkaccuracy"


def _check_keys(metrics: Sequence[Metric]) -> None:
    """Refuse metrics whose keys collide: each value is reported under its key.

    Raises:
        ValueError: Two metrics share a key, or a metric's key is ``"loss"``.
    """
    owners: dict[str, Metric] = {}
    for metric in metrics:
        key = metric.key
        if key == "loss":
            raise ValueError(f"Model: metric {metric!r} has the key 'loss', which the loss holds")
        if key in owners:
            raise ValueError(
                f"Model: metrics {owners[key]!r} and {metric!r} have the same key {key!r}; "
                "give each metric once"
            )
        owners[key] = metric


class _Scores(dict[str, float]):
    """The loss and metric values by key, as `Model.evaluate` and `Model.test` return them.

    A plain dict, with one addition for 1.1 scripts: when the model has exactly one
    `TopKAccuracy`, its value can also be read under the 1.1 key ``"topkaccuracy"``
    (``scores["topkaccuracy"]``). That alias is not listed among the keys.

    Args:
        values: ``{key: value}``, ``"loss"`` first.
        metrics: The model's metrics.
    """

    def __init__(self, values: dict[str, float], metrics: Sequence[Metric]) -> None:
        super().__init__(values)
        top = [m.key for m in metrics if isinstance(m, TopKAccuracy)]
        self._legacy = top[0] if len(top) == 1 else None

    def __missing__(self, key: str) -> float:
        if key == _LEGACY_TOPK_KEY and self._legacy is not None:
            return self[self._legacy]
        raise KeyError(key)
