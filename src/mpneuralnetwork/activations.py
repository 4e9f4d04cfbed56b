"""Activation functions, as layers without parameters.

The element-wise activations (`Tanh`, `Sigmoid`, `ReLU`, `PReLU`, `Swish`, and
`Activation` itself) accept scalars and arrays of any shape; `Softmax` works over
axis 1 and needs arrays of at least two dimensions, (N, classes). All stay finite and
warning-free for any finite float32 input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import _checks, threads
from .backend import ArrayType, xp
from .layers.layer import Layer

__all__ = ["Activation", "PReLU", "ReLU", "Sigmoid", "Softmax", "Swish", "Tanh"]


def sigmoid(x: ArrayType) -> ArrayType:
    """1/(1 + e^−x), computed from e^−|x| so that nothing overflows."""
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0, e) / (1.0 + e)


def _by_samples(function: Callable[..., Any], like: Any, dtype: Any, *arrays: Any) -> Any:
    """``function(out, *arrays)`` for an element-wise ufunc, the batch split across threads.

    ``out`` has the shape and memory order of ``like`` and the given dtype (for a
    scalar ``like``, ``function`` allocates the result itself).
    """
    if xp.ndim(like) == 0:
        return function(None, *arrays)
    out = xp.empty_like(like, dtype=dtype)
    if not threads.active():
        return function(out, *arrays)

    def share(first: int, last: int) -> None:
        function(out[first:last], *(a[first:last] for a in arrays))

    threads.run(share, like.shape[0], 100 * like.size)
    return out


class Activation(Layer):
    """An element-wise activation ``f`` with derivative ``f_prime``.

    Args:
        activation: ``f``, applied element-wise in ``forward``.
        activation_prime: ``f′``; ``backward(G)`` returns ``G * f′(input)``.
    """

    def __init__(
        self,
        activation: Callable[[ArrayType], ArrayType],
        activation_prime: Callable[[ArrayType], ArrayType],
    ) -> None:
        super().__init__()
        self.activation = activation
        self.activation_prime = activation_prime

    def forward(self, input_batch: ArrayType, training: bool = True) -> ArrayType:
        """Same shape in and out; scalars are accepted."""
        x = self._check_input(input_batch)
        self.input = x
        self.output = self.activation(x)
        return self.output

    def __getstate__(self) -> dict[str, Any]:
        """The attributes for pickle, less the functions it cannot write (lambdas and
        local functions, which the subclasses make from their config in ``__init__``).

        Pickling a layer (joblib, multiprocessing, an estimator of
        `mpneuralnetwork.wrappers` and its template layers) then works;
        ``__setstate__`` makes the functions again from `get_config`.
        """
        state = self.__dict__.copy()
        for name in ("activation", "activation_prime"):
            if "<" in getattr(state.get(name), "__qualname__", ""):  # <lambda>, <locals>
                del state[name]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "activation" not in state or "activation_prime" not in state:
            config = {k: v for k, v in self.get_config().items() if k != "type"}
            twin = type(self)(**config)
            self.activation = state.get("activation", twin.activation)
            self.activation_prime = state.get("activation_prime", twin.activation_prime)

    def backward(self, output_gradient_batch: ArrayType) -> ArrayType:
        """``G * f′(input)``; G has the shape of the last output, or is a scalar."""
        g = self._gradient(output_gradient_batch)
        return g * self.activation_prime(self.input)

    def _gradient(self, output_gradient_batch: Any) -> Any:
        """The checked gradient; a scalar stands for a constant gradient of any shape."""
        if self.output is not None and xp.ndim(output_gradient_batch) == 0:
            return xp.asarray(output_gradient_batch, dtype=self.output.dtype)
        return self._check_gradient(output_gradient_batch)


class Tanh(Activation):
    """tanh x; derivative 1 − tanh² x."""

    def __init__(self) -> None:
        super().__init__(xp.tanh, lambda x: 1.0 - xp.tanh(x) ** 2)

    def backward(self, output_gradient_batch: ArrayType) -> ArrayType:
        y = self.output
        return self._gradient(output_gradient_batch) * (1.0 - y * y)


class Sigmoid(Activation):
    """σ(x) = 1/(1 + e^−x); derivative σ(1 − σ)."""

    def __init__(self) -> None:
        def prime(x: ArrayType) -> ArrayType:
            s = sigmoid(x)
            return s * (1.0 - s)

        super().__init__(sigmoid, prime)

    def backward(self, output_gradient_batch: ArrayType) -> ArrayType:
        s = self.output
        return self._gradient(output_gradient_batch) * (s * (1.0 - s))


class ReLU(Activation):
    """max(0, x); derivative 1 where x > 0, else 0."""

    def __init__(self) -> None:
        super().__init__(lambda x: xp.maximum(x, 0.0), lambda x: (x > 0).astype(x.dtype))

    def forward(self, input_batch: ArrayType, training: bool = True) -> ArrayType:
        """Same shape in and out; scalars are accepted."""
        x = self._check_input(input_batch)
        self.input = x
        self.output = _by_samples(lambda out, a: xp.maximum(a, 0.0, out=out), x, x.dtype, x)
        return self.output

    def backward(self, output_gradient_batch: ArrayType) -> ArrayType:
        g = self._gradient(output_gradient_batch)
        if xp.ndim(g) == 0:  # a constant gradient: the result takes the input's shape
            return g * (self.input > 0)

        # In the input's memory order, as every layer hands its gradient back.
        def mask(out: Any, a: Any, b: Any) -> Any:
            return xp.multiply(a, b > 0, out=out)

        return _by_samples(mask, self.input, g.dtype, g, self.input)


class PReLU(Activation):
    """x if x > 0 else alpha·x; derivative alpha where x < 0, else 1.

    Args:
        alpha: The fixed negative slope (a hyper-parameter, not learned).
    """

    def __init__(self, alpha: float = 0.01) -> None:
        self.alpha = _checks.number_in("PReLU", "alpha", alpha, -float("inf"), float("inf"))
        a = self.alpha
        super().__init__(
            lambda x: xp.where(x > 0, x, a * x),
            lambda x: xp.where(x < 0, a, 1.0).astype(x.dtype),
        )

    def get_config(self) -> dict[str, Any]:
        return {"type": "PReLU", "alpha": self.alpha}


class Swish(Activation):
    """x·σ(x); derivative σ(x)·(1 + x·(1 − σ(x))) = (1 + e^−x + x·e^−x)/(1 + e^−x)²."""

    def __init__(self) -> None:
        def prime(x: ArrayType) -> ArrayType:
            s = sigmoid(x)
            return s * (1.0 + x * (1.0 - s))

        super().__init__(lambda x: x * sigmoid(x), prime)


def softmax(x: ArrayType, temperature: float = 1.0, epsilon: float = 1e-8) -> ArrayType:
    """softmax(x / (T + ε)) over axis 1, with the row maximum subtracted first."""
    z = x / (temperature + epsilon)
    z = z - z.max(axis=1, keepdims=True)
    e = xp.exp(z)
    e /= e.sum(axis=1, keepdims=True)
    return e


class Softmax(Activation):
    """softmax(x / (T + ε)) over axis 1 of (N, classes).

    Args:
        temperature: T; larger values flatten the distribution.
        epsilon: ε, keeps the division finite at T = 0.
    """

    def __init__(self, temperature: float = 1.0, epsilon: float = 1e-8) -> None:
        self.temperature = _checks.number_in(
            "Softmax", "temperature", temperature, 0.0, float("inf")
        )
        self.epsilon = _checks.number_in("Softmax", "epsilon", epsilon, 0.0, float("inf"))
        if self.temperature + self.epsilon <= 0:
            raise ValueError("Softmax: temperature + epsilon must be > 0; got 0")
        t, e = self.temperature, self.epsilon
        # The softmax Jacobian is not element-wise, so there is no f′ to give: backward
        # below applies it directly, and activation_prime is never used.
        super().__init__(lambda x: softmax(x, t, e), lambda x: xp.ones_like(x))

    def forward(self, input_batch: ArrayType, training: bool = True) -> ArrayType:
        """(N, classes) -> (N, classes) probabilities."""
        x = self._check_input(input_batch, min_ndim=2)
        self.input = x
        self.output = softmax(x, self.temperature, self.epsilon)
        return self.output

    def backward(self, output_gradient_batch: ArrayType) -> ArrayType:
        """s · (G − Σ_classes(s·G)) / (T + ε)."""
        g = self._gradient(output_gradient_batch)
        s = self.output
        inner = (s * g).sum(axis=1, keepdims=True)
        return s * (g - inner) / (self.temperature + self.epsilon)

    def get_config(self) -> dict[str, Any]:
        return {"type": "Softmax", "temperature": self.temperature, "epsilon": self.epsilon}
