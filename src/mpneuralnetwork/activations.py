"""Activation functions, as layers without parameters.

The element-wise activations (`Tanh`, `Sigmoid`, `ReLU`, `PReLU`, `Swish`,
`LeakyReLU`, `ELU`, `SELU`, `Softplus`, and `Activation` itself) accept scalars and
arrays of any shape; `Softmax` works over axis 1 and needs arrays of at least two
dimensions, (N, classes). All stay finite and warning-free for any finite float32
input.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy

from . import _checks, threads
from .backend import ArrayType, xp
from .layers.layer import Layer

__all__ = [
    "ELU",
    "SELU",
    "Activation",
    "LeakyReLU",
    "PReLU",
    "ReLU",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Swish",
    "Tanh",
]


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


# ------------------------------------------- LeakyReLU, ELU, SELU, Softplus (PyTorch's)
def _into(out: Any, value: Any) -> Any:
    """``value`` written into ``out``, or ``value`` itself when there is no ``out``."""
    if out is None:
        return value
    out[...] = value
    return out


class _SplitActivation(Activation):
    """An `Activation` whose ``f`` and ``G·f′`` run over shares of the batch (`threads`).

    Worth it where ``f`` costs an exponential or a logarithm per element; the result is
    the same however the batch is cut, since everything is element-wise.
    """

    def forward(self, input_batch: ArrayType, training: bool = True) -> ArrayType:
        """Same shape in and out; scalars are accepted."""
        x = self._check_input(input_batch)
        self.input = x
        f = self.activation
        self.output = _by_samples(lambda out, a: _into(out, f(a)), x, x.dtype, x)
        return self.output

    def backward(self, output_gradient_batch: ArrayType) -> ArrayType:
        g = self._gradient(output_gradient_batch)
        derivative = self._derivative
        if xp.ndim(g) == 0:  # a constant gradient: the result takes the input's shape
            return g * derivative(self.input, self.output)
        dtype = xp.result_type(g.dtype, self.input.dtype)

        def share(out: Any, a: Any, x: Any, y: Any) -> Any:
            return _into(out, a * derivative(x, y))

        return _by_samples(share, self.input, dtype, g, self.input, self.output)

    def _derivative(self, x: ArrayType, y: ArrayType) -> ArrayType:
        """f′(x), given x and y = f(x) (subclasses may find it cheaper from y)."""
        return self.activation_prime(x)


class LeakyReLU(_SplitActivation):
    """x if x > 0 else negative_slope·x (PyTorch's ``nn.LeakyReLU``).

    Derivative 1 where x > 0, else negative_slope (so negative_slope at 0, as in PyTorch).
    Computed as max(x, 0) + negative_slope·min(x, 0): the slope never multiplies a
    positive input, so a slope above 1 cannot overflow there.

    Args:
        negative_slope: The slope for x <= 0, any finite number.
    """

    def __init__(self, negative_slope: float = 0.01) -> None:
        self.negative_slope = _checks.number_in(
            "LeakyReLU", "negative_slope", negative_slope, -float("inf"), float("inf")
        )
        s = self.negative_slope
        super().__init__(
            lambda x: xp.maximum(x, 0.0) + s * xp.minimum(x, 0.0),
            lambda x: xp.where(x > 0, 1.0, s).astype(x.dtype),
        )

    def get_config(self) -> dict[str, Any]:
        return {"type": "LeakyReLU", "negative_slope": self.negative_slope}


def _elu(x: ArrayType, alpha: float) -> ArrayType:
    """x if x > 0 else alpha·(e^x − 1); expm1 of min(x, 0), so that nothing overflows."""
    return xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, 0.0)))


def _elu_prime(x: ArrayType, alpha: float) -> ArrayType:
    """1 if x > 0 else alpha·e^x (alpha at 0, as in PyTorch)."""
    return xp.where(x > 0, 1.0, alpha * xp.exp(xp.minimum(x, 0.0))).astype(x.dtype)


class ELU(_SplitActivation):
    """x if x > 0 else alpha·(e^x − 1) (PyTorch's ``nn.ELU``); derivative 1 / alpha·e^x.

    Args:
        alpha: The value the output tends to for x → −∞ is −alpha; > 0.
    """

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = _checks.number_in("ELU", "alpha", alpha, 0.0, float("inf"), low_open=True)
        a = self.alpha
        super().__init__(lambda x: _elu(x, a), lambda x: _elu_prime(x, a))

    def get_config(self) -> dict[str, Any]:
        return {"type": "ELU", "alpha": self.alpha}


class SELU(_SplitActivation):
    """scale·(max(0, x) + min(0, alpha·(e^x − 1))) (PyTorch's ``nn.SELU``).

    alpha = 1.6732632423543772848170429916717 and scale = 1.0507009873554804934193349852946;
    derivative scale where x > 0, else scale·alpha·e^x. With scale > 1 the output of an
    input near the dtype's largest value would exceed it: such outputs saturate at the
    largest finite value instead of becoming infinite (PyTorch gives inf). A Dense or
    Convolutional layer followed by SELU gets LeCun normal initialization, this
    library's ``"xavier"`` (std √(1/fan_in)), from the Model.
    """

    ALPHA = 1.6732632423543772848170429916717
    SCALE = 1.0507009873554804934193349852946

    def __init__(self) -> None:
        alpha, scale = self.ALPHA, self.SCALE

        def selu(x: ArrayType) -> ArrayType:
            positive = xp.minimum(x, _largest_input(x.dtype, scale))
            return scale * xp.where(x > 0, positive, alpha * xp.expm1(xp.minimum(x, 0.0)))

        def prime(x: ArrayType) -> ArrayType:
            return scale * _elu_prime(x, alpha)

        super().__init__(selu, prime)


@functools.lru_cache
def _largest_input(dtype: Any, scale: float) -> float:
    """The largest x of ``dtype`` whose product with ``scale`` (> 1) stays finite."""
    kind = numpy.dtype(dtype).type
    x = kind(float(numpy.finfo(kind).max) / scale)
    with numpy.errstate(over="ignore"):  # rounding may take the product over: step down
        while not numpy.isfinite(x * kind(scale)):
            x = numpy.nextafter(x, kind(0))
    return float(x)


class Softplus(_SplitActivation):
    """(1/beta)·log(1 + e^(beta·x)), and x where beta·x > threshold (PyTorch's ``nn.Softplus``).

    Derivative σ(beta·x), 1 where linear. z = beta·x is capped at the threshold before
    log(1 + e^z) (computed as max(z, 0) + log(1 + e^−|z|) for a threshold above 80),
    and beta·x of an input near the largest float is computed from a clipped x, so that
    nothing overflows for any finite input; backward takes σ(z) from the output.

    Args:
        beta: The sharpness, > 0 (larger: closer to ReLU).
        threshold: Above ``beta·x > threshold`` the function is taken as linear; finite.
    """

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        self.beta = _checks.number_in("Softplus", "beta", beta, 0.0, float("inf"), low_open=True)
        self.threshold = _checks.number_in(
            "Softplus", "threshold", threshold, -float("inf"), float("inf")
        )
        super().__init__(self._softplus, self._prime)

    def _beta_x(self, x: ArrayType) -> ArrayType:
        """beta·x as PyTorch computes it, x first clipped where beta > 1 could overflow it."""
        if self.beta > 1:
            largest = _largest_input(x.dtype, self.beta)
            x = xp.clip(x, -largest, largest)
        return self.beta * x

    def _softplus(self, x: ArrayType) -> ArrayType:
        z = self._beta_x(x)
        linear = z > self.threshold
        z = xp.minimum(z, self.threshold)  # the linear region's z are not used: keep e^z finite
        if self.threshold <= 80.0:  # e^z <= e^80 is finite even in float32: PyTorch's formula
            soft = xp.log1p(xp.exp(z))
        else:
            soft = xp.maximum(z, 0.0) + xp.log1p(xp.exp(-xp.abs(z)))
        return xp.where(linear, x, soft / self.beta)

    def _prime(self, x: ArrayType) -> ArrayType:
        z = self._beta_x(x)
        return xp.where(z > self.threshold, 1.0, sigmoid(z)).astype(x.dtype)

    def _derivative(self, x: ArrayType, y: ArrayType) -> ArrayType:
        # σ(z) = 1 − e^(−beta·y), since e^(beta·y) = 1 + e^z. y >= 0, and beyond
        # (threshold + 1)/beta lies the linear region only, where y·beta could overflow.
        cap = min((max(self.threshold, 0.0) + 1.0) / self.beta, float(numpy.finfo(y.dtype).max))
        soft = -xp.expm1(xp.minimum(y, cap) * -self.beta)
        return xp.where(self._beta_x(x) > self.threshold, 1.0, soft).astype(x.dtype)

    def get_config(self) -> dict[str, Any]:
        return {"type": "Softplus", "beta": self.beta, "threshold": self.threshold}
