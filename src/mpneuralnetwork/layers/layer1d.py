"""Layers on flat samples: Dense, Dropout, BatchNormalization."""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

from .. import _checks, threads
from ..backend import DTYPE, ArrayType, xp
from .layer import Layer

Lit_W = Literal["auto", "he", "xavier"]
"""The weight initializations: ``"auto"`` lets the Model choose He or Xavier."""
_INITIALIZATIONS: tuple[str, ...] = get_args(Lit_W)


def init_std(method: str, fan_in: int) -> float:
    """Std of the initial weights: He sqrt(2/fan_in), Xavier sqrt(1/fan_in), else 0.1."""
    if method == "he":
        return math.sqrt(2.0 / fan_in)
    if method == "xavier":
        return math.sqrt(1.0 / fan_in)
    return 0.1


class Dense(Layer):
    """Fully connected layer: ``Y = X @ W + b``, on flat samples or on each step of a sequence.

    On sequences (N, T, F) the same weights apply at every step, as in Keras and
    PyTorch: the output is (N, T, output_size).

    Args:
        output_size: Number of output features.
        input_size: Number of input features; when given the layer builds at once.
        initialization: ``"he"``, ``"xavier"``, or ``"auto"`` (the Model picks He
            before ReLU-like activations and Xavier otherwise).
        no_bias: True for a layer without biases.
        input_shape: The per-sample input shape, ``(input_size,)`` or ``(T, F)`` for
            sequences; when given the layer builds at once. With ``input_size`` too,
            its last size must equal ``input_size``.

    Shapes:
        input (N, input_size) -> output (N, output_size);
        input (N, T, F) -> output (N, T, output_size).
        ``weights`` (F, output_size), ``biases`` (1, output_size).
    """

    def __init__(
        self,
        output_size: int,
        input_size: int | None = None,
        initialization: Lit_W = "auto",
        no_bias: bool = False,
        input_shape: int | tuple[int, ...] | None = None,
    ) -> None:
        output_size = _checks.positive_int("Dense", "output_size", output_size)
        if input_size is not None:
            input_size = _checks.positive_int("Dense", "input_size", input_size)
        declared = _checks.shape("Dense", "input_shape", input_shape)
        if declared is not None and input_size is not None and declared[-1] != input_size:
            raise ValueError(
                f"Dense: input_size={input_size} and input_shape={declared} disagree: the "
                f"last size of input_shape is the number of input features"
            )
        if declared is None and input_size is not None:
            declared = (input_size,)
        self.initialization = _checks.choice(
            "Dense", "initialization", initialization, _INITIALIZATIONS
        )
        self.no_bias = _checks.boolean("Dense", "no_bias", no_bias)
        super().__init__(output_shape=output_size)
        self.units = output_size
        self.weights: Any = None
        self.biases: Any = None
        self.weights_gradient: Any = None
        self.biases_gradient: Any = None
        if declared is not None:
            self.build(declared)

    def build(self, input_shape: int | tuple[int, ...]) -> None:
        """Set the input shape, (F,) or (T, F); initialize the weights unless ``"auto"``."""
        shape = _checks.shape("Dense", "input_shape", input_shape)
        assert shape is not None
        _check_dense_input(shape)
        declared = self.input_shape
        self._check_declared(
            shape, "input_size" if declared is None or len(declared) == 1 else "input_shape"
        )
        already = self.weights is not None and self.input_shape == shape
        self.input_shape = shape
        self.output_shape = (*shape[:-1], self.units)
        if self.initialization != "auto" and not already:
            self.init_weights(self.initialization, self.no_bias)

    def array_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """``weights`` (F, output_size) and, with biases, ``biases`` (1, output_size)."""
        _check_dense_input(input_shape)
        out = self.units
        shapes: dict[str, tuple[int, ...]] = {"weights": (input_shape[-1], out)}
        return shapes if self.no_bias else {**shapes, "biases": (1, out)}

    def init_weights(self, method: str, no_bias: bool) -> None:
        """Draw new weights (normal, He / Xavier / 0.1 std) and biases (standard normal).

        The fan-in is the number of input features F (per step, on sequences).

        Args:
            method: ``"he"``, ``"xavier"``, or anything else for a std of 0.1.
            no_bias: True to drop the biases altogether.
        """
        fan_in, fan_out = self._known("input_shape")[-1], self.units
        std = init_std(method, fan_in)
        self.weights = xp.random.normal(0.0, std, (fan_in, fan_out)).astype(DTYPE)
        self.weights_gradient = xp.zeros_like(self.weights)
        self.no_bias = bool(no_bias)
        if self.no_bias:
            self.biases = self.biases_gradient = None
        else:
            self.biases = xp.random.standard_normal((1, fan_out)).astype(DTYPE)
            self.biases_gradient = xp.zeros_like(self.biases)

    def forward(self, input_batch: ArrayType, training: bool = True) -> ArrayType:
        """(N, input_size) -> (N, output_size); (N, T, F) -> (N, T, output_size)."""
        x = self._check_input(input_batch, min_ndim=2)
        if self.weights is None:
            if self.input_shape is None:
                self.build(x.shape[1:])
            self.init_weights(
                "xavier" if self.initialization == "auto" else self.initialization, self.no_bias
            )
        weights = self.weights
        if x.dtype != weights.dtype:
            x = x.astype(weights.dtype)
        self.input = x
        if x.ndim != 2:  # sequences: every step is a row of one product
            return self._forward_steps(x)
        y = threads.matmul(x, weights)
        if self.biases is not None:
            y += self.biases
        self.output = y
        return y

    def _forward_steps(self, x: Any) -> Any:
        """(N, T, F) -> (N, T, output_size) as one (N·T, F) @ (F, output_size) product."""
        y = threads.matmul(x.reshape(-1, x.shape[-1]), self.weights)
        if self.biases is not None:
            y += self.biases
        self.output = y.reshape(*x.shape[:-1], self.units)
        return self.output

    def backward(self, output_gradient_batch: ArrayType) -> ArrayType | None:
        """Store dW = Xᵀ G and db = Σ_batch G; return G Wᵀ (N, input_size).

        On sequences the sums run over the batch and the steps: dW = Σ_{n,t} x_{n,t}ᵀ g_{n,t}.
        """
        g = self._check_gradient(output_gradient_batch)
        x = self.input
        if g.ndim != 2:  # sequences, as (N·T, ·) rows
            g = g.reshape(-1, self.units)
            x = x.reshape(-1, x.shape[-1])
        self.weights_gradient = threads.matmul(x.T, g)
        if self.biases is not None:
            self.biases_gradient = g.sum(axis=0, keepdims=True)
        if not self.needs_input_gradient:
            return None
        d_input = threads.matmul(g, self.weights.T)
        return d_input.reshape(self.input.shape)

    @property
    def params(self) -> dict[str, tuple[ArrayType, ArrayType]]:
        return self._existing_params("weights", "biases")

    def get_config(self) -> dict[str, Any]:
        """The 1.1 keys; ``input_shape`` is added only for a layer built on sequences."""
        shape = self.input_shape
        config: dict[str, Any] = {
            "type": "Dense",
            "output_size": self.units,
            "input_size": None if shape is None else shape[-1],
            "initialization": self.initialization,
            "no_bias": self.no_bias,
        }
        if shape is not None and len(shape) != 1:
            config["input_shape"] = shape
        return config


def _check_dense_input(shape: tuple[int, ...]) -> None:
    """Dense takes flat samples (F,) or sequences (T, F); images must be flattened first."""
    if len(shape) > 2:
        raise ValueError(
            f"Dense: input must be flat (one dimension per sample) or a sequence (T, F); "
            f"got input_shape {shape}. Put a Flatten layer before Dense."
        )


class Dropout(Layer):
    """Inverted dropout: while training, zero each value with probability p and scale by 1/(1-p).

    At inference (``training=False``) the layer is the identity.

    Args:
        probability: Drop probability p, in [0, 1).

    Attributes:
        mask: The last training mask, Bernoulli(1 - p) draws divided by (1 - p).
    """

    def __init__(self, probability: float = 0.5) -> None:
        super().__init__()
        self.probability = _checks.number_in(
            "Dropout", "probability", probability, 0.0, 1.0, high_open=True
        )
        self.mask: Any = None

    def forward(self, input_batch: ArrayType, training: bool = True) -> ArrayType:
        """Same shape in and out."""
        x = self._check_input(input_batch)
        self.input = x
        p = self.probability
        if not training or p == 0.0:
            self.mask = None
            self.output = x
            return x
        keep = xp.random.random_sample(x.shape) >= p
        self.mask = keep.astype(x.dtype)
        self.mask *= 1.0 / (1.0 - p)
        self.output = x * self.mask
        return self.output

    def backward(self, output_gradient_batch: ArrayType) -> ArrayType:
        """G * mask (G itself after an inference forward)."""
        g = self._check_gradient(output_gradient_batch)
        return g if self.mask is None else g * self.mask

    def get_config(self) -> dict[str, Any]:
        return {"type": "Dropout", "probability": self.probability}


def _count(x: Any, axes: tuple[int, ...]) -> int:
    """Number of values each statistic is taken over."""
    return math.prod(x.shape[a] for a in axes)


def _sum_of_products(a: Any, b: Any, axes: tuple[int, ...]) -> Any:
    """Σ a·b over ``axes``, kept as size-1 axes, without writing the product.

    One read of each array (``einsum``) instead of a product array written and read again.
    """
    letters = "abcdefgh"[: a.ndim]
    kept = "".join(letter for i, letter in enumerate(letters) if i not in axes)
    total = xp.einsum(f"{letters},{letters}->{kept}", a, b)
    return total.reshape(tuple(1 if i in axes else n for i, n in enumerate(a.shape)))


class BatchNormalization(Layer):
    """Batch normalization over the batch axis of (N, F) inputs.

    ``y = gamma · (x − mean) / sqrt(var + epsilon) + beta``, with the batch mean and
    biased variance while training and the running statistics at inference.

    Args:
        momentum: Weight of the old running statistics,
            ``cache = momentum · cache + (1 − momentum) · batch_stat``.
        epsilon: Added to the variance.

    Attributes:
        gamma: Scale, shape (1, F), ones at build.
        beta: Shift, shape (1, F), zeros at build.
        cache_m: Running mean, shape (1, F), zeros at build.
        cache_v: Running variance, shape (1, F), ones at build.
    """

    #: Axes the statistics are taken over.
    reduce_axes: tuple[int, ...] = (0,)

    def __init__(self, momentum: float = 0.9, epsilon: float = 1e-8) -> None:
        super().__init__()
        name = type(self).__name__
        self.momentum = _checks.number_in(name, "momentum", momentum, 0.0, 1.0)
        self.epsilon = _checks.number_in(name, "epsilon", epsilon, 0.0, math.inf, low_open=True)
        self.gamma: Any = None
        self.beta: Any = None
        self.gamma_gradient: Any = None
        self.beta_gradient: Any = None
        self.cache_m: Any = None
        self.cache_v: Any = None
        self._centered: Any = None
        self._inv_std: Any = None
        self._trained_forward = False

    def param_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of gamma, beta and the running statistics: (1, F)."""
        if len(input_shape) != 1:
            raise ValueError(
                f"BatchNormalization: input must be flat (N, F); got input_shape {input_shape}. "
                "Use BatchNormalization2D for (N, C, H, W) inputs."
            )
        return (1, *input_shape)

    def array_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """gamma, beta, and the state cache_m and cache_v, all of `param_shape`."""
        shape = self.param_shape(input_shape)
        return {name: shape for name in ("gamma", "beta", "state_cache_m", "state_cache_v")}

    def build(self, input_shape: int | tuple[int, ...]) -> None:
        """Create gamma (ones), beta (zeros), cache_m (zeros) and cache_v (ones)."""
        super().build(input_shape)
        shape = self.param_shape(self._known("input_shape"))
        self.gamma = xp.ones(shape, dtype=DTYPE)
        self.beta = xp.zeros(shape, dtype=DTYPE)
        self.gamma_gradient = xp.zeros(shape, dtype=DTYPE)
        self.beta_gradient = xp.zeros(shape, dtype=DTYPE)
        self.cache_m = xp.zeros(shape, dtype=DTYPE)
        self.cache_v = xp.ones(shape, dtype=DTYPE)

    def forward(self, input_batch: ArrayType, training: bool = True) -> ArrayType:
        """Same shape in and out."""
        x = self._check_input(input_batch, min_ndim=len(self.reduce_axes) + 1)
        if self.gamma is None:
            self.build(x.shape[1:])
        if x.dtype != self.gamma.dtype:
            x = x.astype(self.gamma.dtype)
        self.input = x
        if training and x.shape[0] == 0:
            raise ValueError(
                f"{type(self).__name__}.forward: input_batch must hold at least one sample "
                "to compute batch statistics; got an empty batch"
            )
        axes = self.reduce_axes
        shape, dtype = self.gamma.shape, x.dtype
        mean, var = xp.empty(shape, dtype=dtype), xp.empty(shape, dtype=dtype)
        inv_std = xp.empty(shape, dtype=dtype)
        centered, out = xp.empty_like(x), xp.empty_like(x)  # in x's memory order

        def share(first: int, last: int) -> None:  # features (channels) first to last − 1
            part, f = x[:, first:last], slice(first, last)
            if training:
                mean[:, f] = part.mean(axis=axes, keepdims=True)
                c = xp.subtract(part, mean[:, f], out=centered[:, f])
                var[:, f] = _sum_of_products(c, c, axes) / _count(part, axes)
            else:
                c = xp.subtract(part, self.cache_m[:, f], out=centered[:, f])
                var[:, f] = self.cache_v[:, f]
            inv_std[:, f] = 1.0 / xp.sqrt(var[:, f] + self.epsilon)
            # gamma·x̂ + beta with x̂ = centered·inv_std: one scale per feature, so x̂
            # itself is never written (backward works from `centered` too).
            y = xp.multiply(c, self.gamma[:, f] * inv_std[:, f], out=out[:, f])
            y += self.beta[:, f]

        # Every statistic belongs to one feature: the features split across threads.
        threads.run(share, x.shape[1], 100 * x.size)
        if training:
            m = self.momentum
            self.cache_m *= m
            self.cache_m += (1.0 - m) * mean
            self.cache_v *= m
            self.cache_v += (1.0 - m) * var
        self._inv_std, self._centered = inv_std, centered
        self._trained_forward = bool(training)
        self.output = out
        return out

    def backward(self, output_gradient_batch: ArrayType) -> ArrayType:
        """dx = inv_std/n · (n·d − Σd − x̂·Σ(d·x̂)) with d = G·gamma; stores dgamma, dbeta.

        With gamma constant over the batch this is
        ``gamma·inv_std · (G − ΣG/n − x̂·Σ(G·x̂)/n)``, and with x̂ = (x − mean)·inv_std
        it is computed from the centered input in one array.
        """
        g = self._check_gradient(output_gradient_batch)
        axes = self.reduce_axes
        centered, inv_std = self._centered, self._inv_std
        dtype = xp.result_type(g.dtype, centered.dtype)
        self.gamma_gradient = xp.empty(inv_std.shape, dtype=dtype)
        self.beta_gradient = xp.empty(inv_std.shape, dtype=dtype)
        d_input = xp.empty_like(centered, dtype=dtype)  # in the input's memory order
        n = _count(g, axes)

        def share(first: int, last: int) -> None:  # features (channels) first to last − 1
            f = slice(first, last)
            part, c, inv = g[:, f], centered[:, f], inv_std[:, f]
            sum_g_centered = _sum_of_products(part, c, axes)  # Σ(G·x̂) / inv_std
            self.gamma_gradient[:, f] = sum_g_centered * inv
            self.beta_gradient[:, f] = part.sum(axis=axes, keepdims=True)
            scale = self.gamma[:, f] * inv
            d = d_input[:, f]
            if not self._trained_forward:  # running statistics are constants
                xp.multiply(part, scale, out=d)
                return
            xp.multiply(c, sum_g_centered * (inv * inv / n), out=d)
            xp.subtract(part, d, out=d)
            d -= self.beta_gradient[:, f] / n
            d *= scale

        threads.run(share, g.shape[1], 100 * g.size)
        return d_input

    @property
    def params(self) -> dict[str, tuple[ArrayType, ArrayType]]:
        return self._existing_params("gamma", "beta")

    @property
    def state(self) -> dict[str, ArrayType]:
        if self.cache_m is None:
            return {}
        return {"cache_m": self.cache_m, "cache_v": self.cache_v}

    @state.setter
    def state(self, values: dict[str, Any]) -> None:
        self._copy_into("state", values)

    def get_config(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "momentum": self.momentum, "epsilon": self.epsilon}


class LayerNormalization(Layer):
    """Layer normalization: each sample normalized over its last axis (PyTorch's ``LayerNorm``).

    ``y = gamma · (x − mean) / sqrt(var + epsilon) + beta``, with the mean and the
    biased variance of each row of the last axis, in training and at inference alike
    (no running statistics): PyTorch's ``LayerNorm(normalized_shape=F, eps=epsilon)``.

    Args:
        epsilon: Added to the variance, > 0.

    Shapes:
        input (N, ..., F) -> output of the same shape; typically (N, F) or (N, T, F).
        ``gamma`` (F,), ones at build; ``beta`` (F,), zeros at build.
    """

    def __init__(self, epsilon: float = 1e-5) -> None:
        super().__init__()
        self.epsilon = _checks.number_in(
            "LayerNormalization", "epsilon", epsilon, 0.0, math.inf, low_open=True
        )
        self.gamma: Any = None
        self.beta: Any = None
        self.gamma_gradient: Any = None
        self.beta_gradient: Any = None
        self._normalized: Any = None  # x̂, kept for backward
        self._inv_std: Any = None  # 1/sqrt(var + ε) per row, (N, ..., 1)

    def array_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """``gamma`` and ``beta``, both (F,): the last size of the input shape."""
        return {"gamma": (input_shape[-1],), "beta": (input_shape[-1],)}

    def build(self, input_shape: int | tuple[int, ...]) -> None:
        """Create gamma (ones) and beta (zeros) of the last axis's size."""
        super().build(input_shape)
        features = self._known("input_shape")[-1]
        self.gamma = xp.ones((features,), dtype=DTYPE)
        self.beta = xp.zeros((features,), dtype=DTYPE)
        self.gamma_gradient = xp.zeros_like(self.gamma)
        self.beta_gradient = xp.zeros_like(self.beta)

    def forward(self, input_batch: ArrayType, training: bool = True) -> ArrayType:
        """Same shape in and out."""
        x = self._check_input(input_batch, min_ndim=2)
        if self.gamma is None:
            self.build(tuple(x.shape[1:]))
        if x.dtype != self.gamma.dtype:
            x = x.astype(self.gamma.dtype)
        self.input = x
        features = x.shape[-1]
        normalized = x - x.mean(axis=-1, keepdims=True)
        variance = xp.einsum("...f,...f->...", normalized, normalized)[..., None]
        variance /= features
        variance += self.epsilon
        inv_std = xp.sqrt(variance, out=variance)
        xp.divide(1.0, inv_std, out=inv_std)
        normalized *= inv_std
        out = normalized * self.gamma
        out += self.beta
        self._normalized, self._inv_std = normalized, inv_std
        self.output = out
        return out

    def backward(self, output_gradient_batch: ArrayType) -> ArrayType:
        """dx = inv_std · (d − mean(d) − x̂ · mean(d · x̂)) per row, with d = G · gamma.

        Stores dgamma = Σ G · x̂ and dbeta = Σ G over every axis but the last.
        """
        g = self._check_gradient(output_gradient_batch)
        normalized, features = self._normalized, g.shape[-1]
        rows = g.reshape(-1, features)
        self.gamma_gradient = xp.einsum("mf,mf->f", rows, normalized.reshape(-1, features))
        self.beta_gradient = rows.sum(axis=0)
        d = g * self.gamma
        projection = xp.einsum("...f,...f->...", d, normalized)[..., None]
        projection /= features
        d -= d.mean(axis=-1, keepdims=True)
        d -= normalized * projection
        d *= self._inv_std
        return d

    @property
    def params(self) -> dict[str, tuple[ArrayType, ArrayType]]:
        return self._existing_params("gamma", "beta")

    def get_config(self) -> dict[str, Any]:
        return {"type": "LayerNormalization", "epsilon": self.epsilon}
