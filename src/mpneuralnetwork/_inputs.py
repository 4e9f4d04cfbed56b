"""What a model is given: checks of arrays and batches, and one ordered pass over a loader.

Each error is raised at the user's call and names the argument.

Arrays are checked against the model's input and output shapes (dtype, shape,
sample counts, NaN/inf) and moved to the device in ``DTYPE``; a loader's batches
are checked one by one. ``model`` is any object with ``input_shape``,
``output_shape``, ``loss`` and ``layers`` (a `Model`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._labels import class_ids
from .backend import DTYPE, to_device, xp
from .layers import Layer
from .losses import CategoricalCrossEntropy, Loss, SparseCategoricalCrossEntropy
from .metrics import Metric
from .optimizers import Optimizer

__all__ = [
    "all_finite",
    "check_batch",
    "check_layout",
    "check_model_arguments",
    "check_x",
    "check_xy",
    "class_labels",
    "loader_logits",
    "no_targets_beside",
    "target_shape",
]


def all_finite(a: Any) -> bool:
    """No NaN or inf in ``a``; one fast reduction, the exact test only if the sum overflows."""
    return bool(xp.isfinite(a.sum())) or bool(xp.isfinite(a).all())


def dims(shape: tuple[int, ...]) -> str:
    """``"3, 4"`` for the shape (3, 4), as written after ``N`` in messages."""
    return ", ".join(map(str, shape))


def check_model_arguments(layers: Any, loss: Any, optimizer: Any, metrics: Any) -> None:
    """The arguments of ``Model(...)``; a ValueError naming the first bad one."""
    if isinstance(layers, Layer) or not isinstance(layers, Sequence) or not layers:
        raise ValueError(f"Model: layers must be a non-empty list of layers; got {layers!r}")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise ValueError(f"Model: layers[{i}] must be a Layer; got {layer!r}")
    if not isinstance(loss, Loss):
        raise ValueError(f"Model: loss must be a Loss such as MSE(); got {loss!r}")
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise ValueError(f"Model: optimizer must be an Optimizer such as Adam(); got {optimizer!r}")
    if metrics is not None and (
        not isinstance(metrics, Sequence) or not all(isinstance(m, Metric) for m in metrics)
    ):
        raise ValueError(f"Model: metrics must be a list of Metric objects; got {metrics!r}")


def check_x(model: Any, x: Any, name: str) -> Any:
    """Inputs ``x`` (N, *input_shape) as a device array in DTYPE (ids stay integers)."""
    if x is None:
        raise ValueError(
            f"{name} must be an array of shape (N, {dims(model.input_shape)}); got None"
        )
    x = to_device(x)
    check_layout(model, x, name)
    if x.shape[0] == 0:
        raise ValueError(f"{name} holds no samples")
    if not model.layers[0].integer_input:  # an Embedding reads ids: no cast to float
        x = x.astype(DTYPE, copy=False)
    if not all_finite(x):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def check_layout(model: Any, x: Any, name: str) -> None:
    """The dtype and shape of inputs ``x`` (any array, a memory map too), values unread."""
    if x.dtype.kind not in "fiub":
        raise ValueError(f"{name} must hold numbers; got dtype {x.dtype}")
    if x.shape[1:] != model.input_shape or x.ndim < 2:
        raise ValueError(
            f"{name} must have shape (N, {dims(model.input_shape)}) to match the first "
            f"layer; got {tuple(x.shape)}"
        )


def check_xy(model: Any, x: Any, y: Any, x_name: str, y_name: str) -> tuple[Any, Any]:
    """Inputs and targets, checked and moved to the device, with as many samples each."""
    x = check_x(model, x, x_name)
    if y is None:
        raise ValueError(f"{y_name} must be an array; got None")
    y = to_device(y)
    if y.dtype.kind not in "fiub":
        raise ValueError(f"{y_name} must hold numbers; got dtype {y.dtype}")
    if y.shape[0:1] != x.shape[0:1] or y.ndim == 0:
        raise ValueError(
            f"{x_name} and {y_name} must hold as many samples; got {x.shape[0]} and "
            f"{y.shape[0] if y.ndim else 'a scalar'}"
        )
    y = target_shape(model, y, y_name)
    y = y.astype(DTYPE, copy=False)
    if not all_finite(y):
        raise ValueError(f"{y_name} contains NaN or infinite values")
    return x, y


def target_shape(model: Any, y: Any, y_name: str) -> Any:
    """``y`` of shape (N, *output_shape); a 1-D y is read as one column for one output.

    With a `SparseCategoricalCrossEntropy` loss, ``y`` holds class ids instead: shape
    (N,) (or (N, 1), then read as (N,)), each a whole number in [0, classes).
    """
    if isinstance(model.loss, SparseCategoricalCrossEntropy):
        return class_labels(model, y, y_name)
    if y.ndim == 1 and model.output_shape == (1,):
        y = y.reshape(-1, 1)
    if y.shape[1:] != model.output_shape:
        hint = ""
        if y.ndim == 1 and isinstance(model.loss, CategoricalCrossEntropy):
            hint = (
                " (one-hot encode class labels, e.g. numpy.eye(classes)[labels], or use "
                "SparseCategoricalCrossEntropy for class labels)"
            )
        raise ValueError(
            f"{y_name} must have shape (N, {dims(model.output_shape)}) to match the "
            f"network's output; got {tuple(y.shape)}{hint}"
        )
    return y


def class_labels(model: Any, y: Any, y_name: str) -> Any:
    """Class ids ``y`` (N,) for a model with `SparseCategoricalCrossEntropy`, checked.

    Returned as given (the caller casts them), a (N, 1) column read as (N,).
    """
    classes = model.output_shape[0] if len(model.output_shape) == 1 else None
    if classes is None or y.ndim not in (1, 2) or (y.ndim == 2 and y.shape[1] != 1):
        hint = ""
        if y.ndim == 2 and (y.shape[1],) == model.output_shape:
            hint = " (one-hot targets go with CategoricalCrossEntropy)"
        want = "(N,)" if classes is None else f"(N,), class ids in [0, {classes}),"
        raise ValueError(
            f"{y_name} must have shape {want} for SparseCategoricalCrossEntropy on a "
            f"network's output of shape (N, {dims(model.output_shape)}); got "
            f"{tuple(y.shape)}{hint}"
        )
    class_ids(y, classes, y_name)
    return y.reshape(-1)


def check_batch(
    model: Any, x: Any, y: Any, name: str, number: int, total: int, targets: bool
) -> tuple[Any, Any]:
    """Check the shapes of a loader's batch (the loader checked dtype and values).

    Args:
        model: The model the batch is for.
        x: Inputs (B, ...), device array in DTYPE.
        y: Targets (B, ...) or None.
        name: The argument the loader came in, for messages.
        number: 1-based number of the batch; ``total`` batches in the epoch.
        total: The number of batches of the epoch.
        targets: Whether the batch must have targets.

    Returns:
        ``(x, y)``, with a 1-D ``y`` read as one column for a network with one output.
    """
    where = f"{name} (batch {number} of {total})"
    if x.shape[1:] != model.input_shape:
        raise ValueError(
            f"{where}: x must have shape (B, {dims(model.input_shape)}) to match the "
            f"first layer; got {tuple(x.shape)}"
        )
    if y is None:
        if targets:
            raise ValueError(f"{where}: the loader gives no targets (y); they are needed")
        return x, None
    return x, target_shape(model, y, f"{where}: y")


def no_targets_beside(loader: Any, y: Any, owner: str, x_name: str, y_name: str) -> None:
    """A loader gives its own targets: refuse a second ``y``."""
    if y is not None:
        raise ValueError(
            f"{owner}: {y_name} must be None when {x_name} is a {type(loader).__name__} "
            f"(the loader gives the targets); got {type(y).__name__}"
        )


def loader_logits(
    model: Any, loader: Any, training: bool, name: str, targets: bool
) -> tuple[Any, Any]:
    """One pass over ``loader`` in its order, each batch checked: logits and targets.

    Args:
        model: The model whose logits are computed (``model._logits``).
        loader: A `Loader` (iterated once, as given).
        training: Run the layers in training mode.
        name: The argument the loader came in, for messages.
        targets: Whether batches must have targets (and they are returned).

    Returns:
        ``(logits, y)``: device arrays (N, *output_shape) of every batch, in order;
        ``y`` is None without ``targets``.
    """
    logits, ys = [], []
    with iter(loader) as batches:  # ends a reading thread whatever happens
        for number, (xb, yb) in enumerate(batches, 1):
            xb, yb = check_batch(model, xb, yb, name, number, len(loader), targets)
            logits.append(model._logits(xb, training))
            if targets:
                ys.append(yb)
    return xp.concatenate(logits), (xp.concatenate(ys) if targets else None)
