"""Integer class labels (class ids): their check and their one-hot encoding.

Labels may come as integers or as floats holding whole numbers: a `Model` casts
every target to `DTYPE`, so the labels a loss or a metric receives from it are
floats (exact up to 2**24 classes in float32).
"""

from __future__ import annotations

from typing import Any

from .backend import xp

__all__ = ["class_ids", "is_labels_for", "one_hot"]


def is_labels_for(y_true: Any, y_pred: Any) -> bool:
    """Whether ``y_true`` holds one class id per row of the (N, classes > 1) ``y_pred``.

    True for ``y_true`` of shape (N,) or (N, 1) beside ``y_pred`` of shape (N, C), C > 1.
    """
    n = y_pred.shape[0] if y_pred.ndim else -1
    return y_pred.ndim == 2 and y_pred.shape[1] > 1 and tuple(y_true.shape) in ((n,), (n, 1))


def class_ids(labels: Any, classes: int, what: str) -> Any:
    """Labels (N,) or (N, 1) as an int64 backend array (N,), each checked in [0, classes).

    Args:
        labels: Class ids: integers, or floats holding whole numbers.
        classes: The number of classes.
        what: The subject of the error message, e.g. ``"y_train"`` or
            ``"Accuracy: y_true"``.

    Raises:
        ValueError: For a label that is not a whole number in [0, classes), naming the
            first such label and its position; for labels that are not numbers.
    """
    labels = labels if isinstance(labels, xp.ndarray) else xp.asarray(labels)
    labels = labels.reshape(-1)
    kind = labels.dtype.kind
    if kind not in "iuf":
        raise ValueError(
            f"{what} must hold class ids (integers in [0, {classes})); got dtype {labels.dtype}"
        )
    bad = (labels < 0) | (labels >= classes)
    if kind == "f":  # NaN and inf fail this test too
        bad |= labels != xp.floor(labels)
    if bool(bad.any()):  # one reduction; the details only for the message
        position = int(bad.argmax())
        value = labels[position].item()
        raise ValueError(
            f"{what} must hold class ids, whole numbers in [0, {classes}); got {value!r} at "
            f"position {position}"
        )
    return labels.astype(xp.int64)


def one_hot(ids: Any, classes: int, dtype: Any) -> Any:
    """The (N, classes) one-hot rows of int64 class ids (N,), in ``dtype``."""
    return (ids.reshape(-1, 1) == xp.arange(classes)).astype(dtype)
