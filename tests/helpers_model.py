"""Helpers of the Model / serialization tests: snapshots of everything training changes.

The snapshots are collected here, independently of the library's own serialization
code (which is itself under test).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpneuralnetwork import to_host


def model_arrays(model: Any) -> dict[str, Any]:
    """Host copies of every parameter, layer state and optimizer state, plus scalar globals."""
    arrays: dict[str, Any] = {}
    for i, layer in enumerate(model.layers):
        for name, (value, _) in layer.params.items():
            arrays[f"param/{i}/{name}"] = to_host(value).copy()
        for name, value in layer.state.items():
            arrays[f"state/{i}/{name}"] = to_host(value).copy()
    for state, per_param in model.optimizer.params.items():
        if isinstance(per_param, dict):
            for key, value in per_param.items():
                arrays[f"optimizer/{state}/{key}"] = to_host(value).copy()
        else:
            arrays[f"optimizer/{state}"] = per_param
    return arrays


def assert_same_arrays(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    """Same keys and bit-identical values."""
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        if isinstance(value, np.ndarray):
            assert actual[key].dtype == value.dtype, key
            np.testing.assert_array_equal(actual[key], value, err_msg=key)
        else:
            assert actual[key] == value, key


def differs(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True when some array (or global) of ``a`` differs from ``b``."""
    if sorted(a) != sorted(b):
        return True
    for key, value in a.items():
        if isinstance(value, np.ndarray):
            if value.shape != b[key].shape or not np.array_equal(value, b[key]):
                return True
        elif value != b[key]:
            return True
    return False


def train_epoch_by_epoch(
    model: Any, x: Any, y: Any, epochs: int, batch_size: int, **kwargs: Any
) -> tuple[list[dict[str, Any]], list[dict[str, float]]]:
    """Train one epoch per ``train`` call (no checkpoint), recording after each epoch.

    With an explicit ``evaluation`` (or ``auto_evaluation=0``) the random stream is the
    same as one ``train(epochs=...)`` call: one shuffle per epoch.

    Returns:
        ``(states, values)``: ``states[k]`` the model arrays after epoch ``k + 1`` and
        ``values[k]`` that epoch's history values (``{"loss": ..., "val_loss": ...}``).
    """
    states, values = [], []
    for _ in range(epochs):
        history = model.train(
            x, y, epochs=1, batch_size=batch_size, model_checkpoint=False, verbose=0, **kwargs
        )
        states.append(model_arrays(model))
        values.append({k: v[0] for k, v in history.history.items()})
    return states, values
