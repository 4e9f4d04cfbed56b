"""Shared test helpers: central-difference gradients and float64 copies of layers.

Every helper works on both backends: arrays go to the library with ``to_device`` and
come back with ``to_host``; NumPy never touches a library array directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mpneuralnetwork import to_device, to_host, xp

#: True when the library runs on the CuPy stand-in of tests/fake_cupy.
ON_STANDIN = bool(getattr(xp, "IS_FAKE", False))

#: Array attributes a layer computes with (parameters and running statistics).
FLOAT64_ATTRIBUTES = (
    "weights",
    "biases",
    "kernels",
    "gamma",
    "beta",
    "cache_m",
    "cache_v",
    "input_weights",
    "recurrent_weights",
    "recurrent_biases",
    "embeddings",
    "input_biases",
    "output_weights",
    "output_biases",
)

EPS = 1e-6
RTOL = 1e-5
ATOL = 1e-7


def to_float64(layer: Any) -> Any:
    """Reassign the layer's parameters and state as float64 arrays; return the layer."""
    for name in FLOAT64_ATTRIBUTES:
        value = getattr(layer, name, None)
        if value is not None:
            setattr(layer, name, value.astype(np.float64))
    return layer


def numerical_gradient(loss: Callable[[], float], array: Any, eps: float = EPS) -> np.ndarray:
    """Central differences of ``loss()`` w.r.t. each entry of ``array`` (perturbed in place).

    ``array`` is a backend array that ``loss`` reads (a layer input or parameter); it is
    restored entry by entry.
    """
    host = to_host(array).copy()
    grad = np.zeros(host.shape, dtype=np.float64)
    for index in np.ndindex(*host.shape):
        original = float(host[index])
        array[index] = original + eps
        plus = loss()
        array[index] = original - eps
        minus = loss()
        array[index] = original
        grad[index] = (plus - minus) / (2.0 * eps)
    return grad


def random_projection(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A fixed random array R; the checked loss is L = sum(out * R), so dL/dout = R."""
    return np.random.default_rng(seed).standard_normal(shape)


def check_gradients(
    layer: Any,
    x: np.ndarray,
    training: bool = True,
    rtol: float = RTOL,
    atol: float = ATOL,
    seed: int = 0,
) -> list[str]:
    """Check ``layer.backward`` against central differences, in float64.

    The layer must already hold float64 parameters (see :func:`to_float64`). Checks the
    input gradient and the gradient of every entry of ``layer.params``.

    Returns:
        The names checked: ``"input"`` followed by the parameter names.
    """
    x_dev = to_device(np.asarray(x, dtype=np.float64))
    out = to_host(layer.forward(x_dev, training=training))
    assert out.dtype == np.float64, f"{type(layer).__name__} did not compute in float64"
    r = random_projection(out.shape, seed)
    dx = to_host(layer.backward(to_device(r))).copy()
    assert dx.shape == x.shape
    analytic = {name: to_host(grad).copy() for name, (_, grad) in layer.params.items()}

    def loss() -> float:
        return float(np.sum(to_host(layer.forward(x_dev, training=training)) * r))

    np.testing.assert_allclose(
        dx, numerical_gradient(loss, x_dev), rtol=rtol, atol=atol, err_msg="input gradient"
    )
    for name, (value, _) in layer.params.items():
        assert analytic[name].shape == tuple(value.shape)
        np.testing.assert_allclose(
            analytic[name],
            numerical_gradient(loss, value),
            rtol=rtol,
            atol=atol,
            err_msg=f"gradient of {name}",
        )
    return ["input", *layer.params]


def distinct_values(shape: tuple[int, ...], seed: int = 0, gap: float = 0.1) -> np.ndarray:
    """Float64 values that are all distinct (pairwise >= ``gap`` apart) and away from 0."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    values = (rng.permutation(size) - size // 2 + 0.5) * gap  # ..., -gap/2, +gap/2, ...
    values += rng.uniform(-0.2, 0.2, size) * gap  # keep the gaps >= 0.6·gap and |v| >= 0.3·gap
    return values.reshape(shape)
