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

__all__ = ["GELU", "Activation", "PReLU", "ReLU", "Sigmoid", "Softmax", "Swish", "Tanh"]


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


# ---------------------------------------------------------------------------- GELU
# The error function by W. J. Cody's rational Chebyshev approximations ("Rational
# Chebyshev approximations for the error function", Math. Comp. 23, 1969, pp. 631-638;
# the coefficients of his CALERF routine, netlib specfun): erf on |z| <= 0.46875,
# exp(z²)·erfc(z) on 0.46875 < z <= 4 and on z > 4. Near-minimax to about 18 digits,
# so float64 results are exact to within a few roundings. NumPy has no erf, and SciPy
# is not a dependency.
_ERF_P = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
          3.20937758913846947e03, 1.85777706184603153e-1)  # fmt: skip
_ERF_Q = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
          2.84423683343917062e03)  # fmt: skip
_ERFC_P = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
           2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
           2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)  # fmt: skip
_ERFC_Q = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
           1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
           3.43936767414372164e03, 1.23033935480374942e03)  # fmt: skip
_TAIL_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
           1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)  # fmt: skip
_TAIL_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
           6.05183413124413191e-2, 2.33520497626869185e-3)  # fmt: skip
_ERF_SMALL = 0.46875  # the first interval: erf itself
_ERF_MIDDLE = 4.0  # the second interval: erfc
_ERFC_ZERO = 27.0  # erfc(z) < 1e-317 beyond: z is clipped there, so z² never overflows
_INV_SQRT_PI = 0.56418958354775628695
_SQRT1_2 = 0.70710678118654752440
_INV_SQRT_2PI = 0.39894228040143267794
_SQRT_2_OVER_PI = 0.79788456080286535588
_TANH_CUBIC = 0.044715
_TANH_CLIP = 20.0  # σ(2u) is 0 or 1 in float64 beyond |x| = 20 (2u > 400)


def _cody_ratio(y: Any, numerator: tuple[float, ...], denominator: tuple[float, ...]) -> Any:
    """Cody's ratio (((n_k·y + n_0)·y + n_1)·y …) / ((y + d_0)·y + d_1)·y …), in place.

    ``numerator`` lists n_0 … n_(m−1) then the leading n_k; the two polynomials are
    evaluated by Horner's rule in two arrays, each step in place.
    """
    top = y * numerator[-1]
    bottom = y + denominator[0]
    for n in numerator[:-3]:
        top += n
        top *= y
    for d in denominator[1:-1]:
        bottom *= y
        bottom += d
    top += numerator[-3]
    top *= y
    top += numerator[-2]
    bottom *= y
    bottom += denominator[-1]
    top /= bottom
    return top


def _erf_pieces(z: Any) -> tuple[Any, Any, Any, Any]:
    """erf where |z| <= 0.46875, erfc(|z|) elsewhere, each on its own values only.

    Returns:
        ``(small, erf_small, large, erfc_large)``: the boolean mask of |z| <= 0.46875
        and erf(z) there (1-D, in mask order); the mask of the other values and
        erfc(|z|) there.
    """
    y = xp.abs(z)
    small = y <= _ERF_SMALL
    large = ~small
    zs = z[small]
    erf_small = zs * _cody_ratio(zs * zs, _ERF_P, _ERF_Q)
    yl = xp.minimum(y[large], _ERFC_ZERO)
    middle = yl <= _ERF_MIDDLE
    scaled = xp.empty_like(yl)  # exp(y²)·erfc(y)
    scaled[middle] = _cody_ratio(yl[middle], _ERFC_P, _ERFC_Q)
    yt = yl[~middle]
    r = 1.0 / (yt * yt)
    tail = _cody_ratio(r, _TAIL_P, _TAIL_Q)
    tail *= r
    scaled[~middle] = (_INV_SQRT_PI - tail) / yt
    erfc_large = xp.square(yl)
    xp.negative(erfc_large, out=erfc_large)
    xp.exp(erfc_large, out=erfc_large)
    erfc_large *= scaled
    return small, erf_small, large, erfc_large


def erf(x: ArrayType) -> ArrayType:
    """The error function, element-wise, in the dtype of ``x`` (float64 within a few ulp).

    Args:
        x: A floating array (or scalar) of any shape.

    Returns:
        erf(x), same shape and dtype.
    """
    z = xp.asarray(x)
    out = xp.empty_like(z)
    small, erf_small, large, erfc_large = _erf_pieces(z)
    out[small] = erf_small
    one_minus = 1.0 - erfc_large
    out[large] = xp.where(z[large] < 0, -one_minus, one_minus)
    return out


def normal_cdf(x: ArrayType) -> ArrayType:
    """Φ(x), the standard normal distribution function: ½·erfc(−x/√2), element-wise.

    The lower tail is computed from erfc, so it keeps its relative accuracy where
    ½·(1 + erf(x/√2)) would round to 0.

    Args:
        x: A floating array (or scalar) of any shape.

    Returns:
        Φ(x), same shape and dtype.
    """
    z = xp.asarray(x) * _SQRT1_2
    out = xp.empty_like(z)
    small, erf_small, large, erfc_large = _erf_pieces(z)
    erf_small *= 0.5
    erf_small += 0.5
    out[small] = erf_small
    erfc_large *= 0.5
    out[large] = xp.where(z[large] < 0, erfc_large, 1.0 - erfc_large)
    return out


_GELU_APPROXIMATIONS = ("none", "tanh")


class GELU(Activation):
    """Gaussian error linear unit, x·Φ(x) (PyTorch's ``GELU(approximate=...)``).

    ``approximate="none"``: x·Φ(x) with Φ(x) = ½·(1 + erf(x/√2)), computed with an
    error function exact to float64 rounding (`erf`); derivative Φ(x) + x·φ(x), with
    φ(x) = e^(−x²/2)/√(2π).

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

    @staticmethod
    def _exact(x: ArrayType) -> ArrayType:
        cdf = normal_cdf(x)
        cdf *= x
        return cdf

    @staticmethod
    def _exact_prime(x: ArrayType) -> ArrayType:
        # x clipped where φ(x) is 0 anyway, so x² never overflows.
        clipped = xp.clip(x, -40.0, 40.0)
        pdf = xp.square(clipped)
        pdf *= -0.5
        xp.exp(pdf, out=pdf)
        pdf *= _INV_SQRT_2PI
        pdf *= clipped
        pdf += normal_cdf(x)
        return pdf

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
        return sigmoid(u), clipped

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
