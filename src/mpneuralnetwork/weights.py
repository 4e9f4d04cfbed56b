"""Flat dictionaries of a model's arrays, and on-device snapshots of them (checkpoints).

Names: ``layer_{i}_{param}`` for parameters, ``layer_{i}_state_{name}`` for layer
state (BatchNorm running statistics), ``optimizer_{state}_layer_{i}_{param}`` for
per-parameter optimizer state and ``optimizer_{name}`` for scalar optimizer state
such as Adam's ``t``. A layer inside a container is named by its path: the
parameters and state of the second layer inside the model's fourth are
``layer_3_1_{param}`` and ``layer_3_1_state_{name}``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .backend import DTYPE, to_host, xp
from .layers.containers import leaves
from .optimizers import Optimizer

__all__ = ["Snapshot", "get_model_weights", "restore_model_weights"]


def _collect(
    layer_list: Sequence[Any], optimizer_params: dict[str, Any] | None, copy: Callable[[Any], Any]
) -> dict[str, Any]:
    weights: dict[str, Any] = {}
    for prefix, layer in leaves(layer_list, "layer_"):
        for name, (value, _) in layer.params.items():
            weights[f"{prefix}{name}"] = copy(value)
        for name, value in layer.state.items():
            weights[f"{prefix}state_{name}"] = copy(value)
    for state, per_param in (optimizer_params or {}).items():
        if isinstance(per_param, dict):
            for key, value in per_param.items():
                weights[f"optimizer_{state}_{key}"] = copy(value)
        else:  # a scalar such as Adam's step count t, as a 0-d array
            weights[f"optimizer_{state}"] = copy(xp.asarray(per_param))
    return weights


def get_model_weights(
    layers: Sequence[Any], optimizer_params: dict[str, Any] | None = None
) -> dict[str, np.ndarray]:
    """A flat dict of host float32 copies of every parameter, state and optimizer array.

    Args:
        layers: The model's layers.
        optimizer_params: An optimizer's ``params`` (its state), or None.

    Returns:
        ``{"layer_{i}_{param}": ..., "layer_{i}_state_{name}": ...,
        "optimizer_{state}_layer_{i}_{param}": ...}``, plus scalar optimizer state
        such as Adam's ``t`` as 0-d arrays named ``optimizer_{name}``.
    """
    return _collect(layers, optimizer_params, lambda a: np.array(to_host(a), dtype=np.float32))


def restore_model_weights(
    layers: Sequence[Any], weights: dict[str, Any], optimizer: Optimizer | None = None
) -> None:
    """Write arrays named as by `get_model_weights` back into layers and optimizer.

    Parameters are copied into the existing arrays. With an ``optimizer``, its
    per-parameter state is replaced by the ``optimizer_*`` arrays.

    Raises:
        ValueError: An array of a layer is missing or has the wrong shape.
    """
    for path, layer in leaves(layers, "layer_"):
        for kind, names in (("params", list(layer.params)), ("state", list(layer.state))):
            prefix = path if kind == "params" else f"{path}state_"
            missing = [prefix + name for name in names if prefix + name not in weights]
            if missing:
                raise ValueError(f"restore_model_weights: weights lack {missing}")
            values = {name: weights[prefix + name] for name in names}
            if kind == "params":
                layer.load_params(values)
            else:
                layer.state = values
    if optimizer is not None:
        for state, per_param in optimizer.params.items():
            if not isinstance(per_param, dict):
                if f"optimizer_{state}" in weights:  # a scalar such as Adam's t
                    setattr(optimizer, state, type(per_param)(weights[f"optimizer_{state}"]))
                continue
            prefix = f"optimizer_{state}_"
            per_param.clear()
            for key, value in weights.items():
                if key.startswith(prefix):
                    per_param[key[len(prefix) :]] = xp.array(value, dtype=DTYPE)  # a copy


class Snapshot:
    """An on-device copy of the weights, layer state and optimizer state (checkpoints)."""

    def __init__(self, arrays: dict[str, Any]) -> None:
        self.arrays = arrays

    @classmethod
    def take(cls, layer_list: Sequence[Any], optimizer: Optimizer) -> Snapshot:
        """Copy everything that training changes."""
        return cls(_collect(layer_list, optimizer.params, lambda a: a.copy()))

    def restore(self, layer_list: Sequence[Any], optimizer: Optimizer) -> None:
        """Write the copy back (the snapshot stays usable)."""
        restore_model_weights(layer_list, self.arrays, optimizer)
