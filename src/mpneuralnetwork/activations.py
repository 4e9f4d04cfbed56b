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
    "GELU",
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


# ---------------------------------------------------------------------------- GELU
# erfc by a Chebyshev series, branch-free (no masks: masked indexing costs more than
# the whole series): for z >= 0, with y = 2/(2 + z) in (0, 1] and t = 2y − 1,
#     erfc(z) = y · exp(−z² + f(t)),   f(t) = log(e^(z²)·erfc(z) / y) = Σ_k c_k·T_k(t),
# the form of Numerical Recipes' erfccheb. f is smooth on [−1, 1] (it tends to
# −log(2√π) as z → ∞), so its Chebyshev coefficients fall fast. They were computed for
# this library by Chebyshev interpolation at 64 nodes with mpmath at 40 digits (the
# Internals page "Attention" has the script): 28 terms leave a tail below 4e-18, 12
# (enough for float32) below 1.3e-8.
_ERFC_CHEBYSHEV = (
    -0.6513268598908547, 0.6419697923564902, 0.019476473204185836, -0.009561514786808632,
    -0.0009465953444820369, 0.00036683949785276145, 4.252332480690777e-05,
    -2.0278578112534242e-05, -1.6242900046470256e-06, 1.3036558355805232e-06,
    1.5626441722066142e-08, -8.523809591492654e-08, 6.5290544390988515e-09,
    5.059343495551469e-09, -9.91364156493033e-10, -2.273651222931836e-10,
    9.646791102015527e-11, 2.3940380830391146e-12, -6.886027526497553e-12,
    8.944879273090725e-13, 3.130921399342958e-13, -1.1270822361367252e-13,
    3.810905255189232e-16, 7.106097613609237e-15, -1.5230282014571043e-15,
    -9.457494571291233e-17, 1.210237189224279e-16, -2.816663087747177e-17,
)  # fmt: skip
_ERFC_ZERO = 27.0  # erfc(z) < 1e-317 beyond: z is clipped there, so z² never overflows
_SQRT1_2 = 0.70710678118654752440
_INV_SQRT_2PI = 0.39894228040143267794
_SQRT_2_OVER_PI = 0.79788456080286535588
_TANH_CUBIC = 0.044715
_TANH_CLIP = 20.0  # σ(2u) is 0 or 1 in float64 beyond |x| = 20 (2u > 400)


def _half_erfc(z: Any) -> Any:
    """½·erfc(z) for z >= 0 (a new array of z's dtype), to a few units in the last place.

    float32 and smaller sum 12 terms of the series, other dtypes all 28.
    """
    terms = _ERFC_CHEBYSHEV[: 12 if z.dtype.itemsize <= 4 else 28]
    z = xp.minimum(z, _ERFC_ZERO)
    denominator = z + 2.0  # 2/y
    t = xp.divide(4.0, denominator)  # t = 2y − 1
    t -= 1.0
    # Clenshaw's recurrence b_k = 2t·b_(k+1) − b_(k+2) + c_k, in three rotating arrays
    two_t = t + t
    later = xp.zeros_like(t)  # b_(k+2)
    current = xp.full_like(t, terms[-1])  # b_(k+1)
    new = xp.empty_like(t)
    for c in terms[-2:0:-1]:
        xp.multiply(two_t, current, out=new)
        new -= later
        new += c
        later, current, new = current, new, later
    series = xp.multiply(t, current, out=new)  # f = t·b_1 − b_2 + c_0
    series -= later
    series += terms[0]
    series -= xp.square(z, out=later)
    xp.exp(series, out=series)
    series /= denominator  # ½·y = 1/(2 + z)
    return series


def erf(x: ArrayType) -> ArrayType:
    """The error function, element-wise, in the dtype of ``x``.

    Accurate to a few units of 1e-16 in absolute terms in float64 (and to float32
    rounding in float32); near 0 the error is absolute, not relative to erf(x).

    Args:
        x: A floating array (or scalar) of any shape.

    Returns:
        erf(x) = sign(x)·(1 − erfc(|x|)), same shape and dtype.
    """
    z = xp.asarray(x)
    out = _half_erfc(xp.abs(z))
    out *= -2.0
    out += 1.0
    out *= xp.sign(z)
    return out


def normal_cdf(x: ArrayType) -> ArrayType:
    """Φ(x), the standard normal distribution function, ½·erfc(−x/√2), element-wise.

    With h = ½·erfc(|x|/√2): Φ = h for x <= 0 and 1 − h for x > 0, so the lower tail
    keeps its relative accuracy where ½·(1 + erf(x/√2)) would round to 0.

    Args:
        x: A floating array (or scalar) of any shape.

    Returns:
        Φ(x), same shape and dtype.
    """
    x = xp.asarray(x)
    half = _half_erfc(xp.abs(x) * _SQRT1_2)
    upper = xp.multiply(half, -2.0)  # 1 − 2h where x > 0, else 0: Φ = h + that
    upper += 1.0
    upper *= x > 0
    half += upper
    return half


def _sigmoid_by_arithmetic(v: Any) -> Any:
    """σ(v) = (1 if v >= 0 else e)/(1 + e) with e = e^−|v|, in place of ``v``.

    As `sigmoid`, nothing overflows; the choice is a product with the sign mask
    instead of ``where``, several times faster on NumPy (``where`` with a mask of
    mixed signs costs more than all the arithmetic here).
    """
    e = xp.abs(v)
    xp.negative(e, out=e)
    xp.exp(e, out=e)
    positive = v >= 0
    xp.subtract(1.0, e, out=v)
    v *= positive
    v += e
    e += 1.0
    v /= e
    return v


_GELU_APPROXIMATIONS = ("none", "tanh")


class GELU(Activation):
    """Gaussian error linear unit, x·Φ(x) (PyTorch's ``GELU(approximate=...)``).

    ``approximate="none"``: x·Φ(x) with Φ(x) = ½·(1 + erf(x/√2)), computed with an
    error function exact to float64 rounding (see `normal_cdf`); derivative
    Φ(x) + x·φ(x), with φ(x) = e^(−x²/2)/√(2π). The forward pass keeps Φ(x) for the
    backward pass.

    ``approximate="tanh"``: ½·x·(1 + tanh(u)) with u = √(2/π)·(x + 0.044715·x³);
    derivative ½·(1 + tanh u) + ½·x·(1 − tanh² u)·√(2/π)·(1 + 3·0.044715·x²).
    Computed as x·σ(2u), the same function, since ½·(1 + tanh u) = σ(2u).

    Args:
        approximate: ``"none"`` (exact) or ``"tanh"``.
    """

    def __init__(self, approximate: str = "none") -> None:
        self.approximate = _checks.choice("GELU", "approximate", approximate, _GELU_APPROXIMATIONS)
        function, prime = (
            (self._exact, self._exact_prime)
            if self.approximate == "none"
            else (self._tanh, self._tanh_prime)
        )
        super().__init__(function, prime)
        self._cdf: Any = None  # Φ(input) of the last exact forward

    def forward(self, input_batch: ArrayType, training: bool = True) -> ArrayType:
        """Same shape in and out; scalars are accepted."""
        if self.approximate != "none":
            self._cdf = None
            return super().forward(input_batch, training)
        x = self._check_input(input_batch)
        self.input = x
        # The erfc series is a few dozen passes: the batch's shares run on the pool.
        self._cdf = _by_samples(lambda out, a: _into(out, normal_cdf(a)), x, x.dtype, x)
        self.output = x * self._cdf
        return self.output

    def backward(self, output_gradient_batch: ArrayType) -> ArrayType:
        """``G · (Φ(x) + x·φ(x))``, with the Φ(x) of the forward pass."""
        if self._cdf is None:
            return super().backward(output_gradient_batch)
        g = self._gradient(output_gradient_batch)
        slope = self._x_times_density(self.input)
        slope += self._cdf
        if xp.ndim(g) == 0:
            return g * slope
        # In the input's memory order (channel-major after a convolution), whatever G's.
        return xp.multiply(g, slope, out=xp.empty_like(slope, dtype=xp.result_type(g, slope)))

    @staticmethod
    def _x_times_density(x: ArrayType) -> ArrayType:
        """x·φ(x), with x clipped where φ(x) is 0 anyway, so x² never overflows."""
        clipped = xp.clip(x, -40.0, 40.0)
        term = xp.square(clipped)
        term *= -0.5
        xp.exp(term, out=term)
        term *= _INV_SQRT_2PI
        term *= clipped
        return term

    @staticmethod
    def _exact(x: ArrayType) -> ArrayType:
        cdf = normal_cdf(x)
        cdf *= x
        return cdf

    @staticmethod
    def _exact_prime(x: ArrayType) -> ArrayType:
        slope = GELU._x_times_density(x)
        slope += normal_cdf(x)
        return slope

    @staticmethod
    def _half_one_plus_tanh(x: ArrayType) -> tuple[Any, Any]:
        """(½·(1 + tanh u) = σ(2u), clipped x).

        σ(2u) keeps its relative accuracy in the lower tail, where 1 + tanh u would
        cancel; x is clipped where σ(2u) is 0 or 1, so x³ never overflows.
        """
        clipped = xp.clip(x, -_TANH_CLIP, _TANH_CLIP)
        u = xp.square(clipped)
        u *= _TANH_CUBIC
        u += 1.0
        u *= clipped
        u *= 2.0 * _SQRT_2_OVER_PI
        return _sigmoid_by_arithmetic(u), clipped

    @staticmethod
    def _tanh(x: ArrayType) -> ArrayType:
        s, _ = GELU._half_one_plus_tanh(x)
        s *= x
        return s

    @staticmethod
    def _tanh_prime(x: ArrayType) -> ArrayType:
        # d/dx x·σ(2u) = σ(2u) + x·2σ(2u)(1 − σ(2u))·u′, u′ = √(2/π)·(1 + 3·0.044715·x²)
        s, clipped = GELU._half_one_plus_tanh(x)
        slope = xp.square(clipped)
        slope *= 3.0 * _TANH_CUBIC
        slope += 1.0
        slope *= 2.0 * _SQRT_2_OVER_PI
        slope *= clipped
        slope *= s * (1.0 - s)
        slope += s
        return slope

    def get_config(self) -> dict[str, Any]:
        return {"type": "GELU", "approximate": self.approximate}
