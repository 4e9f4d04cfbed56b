"""Layers on images (N, C, H, W): convolution, pooling, flattening, batch normalization."""

from __future__ import annotations

import math
from typing import Any

from .. import _checks
from ..backend import DTYPE, ArrayType, xp
from .layer import Layer
from .layer1d import _INITIALIZATIONS, BatchNormalization, Lit_W, init_std
from .utils import col2im, im2col, output_length


def _image_shape(owner: str, shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ValueError(f"{owner}: input_shape must be (C, H, W); got {shape}")
    return shape[0], shape[1], shape[2]


class Convolutional(Layer):
    """2-D cross-correlation (no kernel flip) with square kernels, padding and stride.

    ``out[n,o,i,j] = b[o] + Σ_{c,u,v} xpad[n, c, i·s+u, j·s+v] · kernels[o,c,u,v]``,
    computed as im2col followed by one matrix product.

    Args:
        output_depth: Number of output channels (kernels).
        kernel_size: K, the side of each square kernel.
        input_shape: (C, H, W) of one input sample; when given the layer builds at once.
        initialization: ``"he"``, ``"xavier"`` or ``"auto"`` (chosen by the Model).
        no_bias: True for a layer without biases.
        padding: ``"valid"`` (0), ``"same"`` ((K − 1)//2) or a number of zeros per side.
        stride: Step between windows, >= 1.

    Shapes:
        input (N, C, H, W) -> output (N, output_depth, H_out, W_out) with
        H_out = (H − K + 2p)//s + 1. ``kernels`` (output_depth, C, K, K),
        ``biases`` (output_depth,).
    """

    def __init__(
        self,
        output_depth: int,
        kernel_size: int,
        input_shape: tuple[int, int, int] | None = None,
        initialization: Lit_W = "auto",
        no_bias: bool = False,
        padding: str | int = "valid",
        stride: int = 1,
    ) -> None:
        self.output_depth = _checks.positive_int("Convolutional", "output_depth", output_depth)
        self.kernel_size = _checks.positive_int("Convolutional", "kernel_size", kernel_size)
        self.initialization = _checks.choice(
            "Convolutional", "initialization", initialization, _INITIALIZATIONS
        )
        self.no_bias = _checks.boolean("Convolutional", "no_bias", no_bias)
        self.stride = _checks.positive_int("Convolutional", "stride", stride)
        self.padding_arg = padding
        if padding == "valid":
            self.padding = 0
        elif padding == "same":
            self.padding = (self.kernel_size - 1) // 2
        elif isinstance(padding, int) and _checks.is_int(padding):
            if padding < 0:
                raise ValueError(f"Convolutional: padding must be >= 0; got {padding!r}")
            self.padding = int(padding)
        else:
            raise ValueError("Padding must be 'valid', 'same', or an integer.")
        super().__init__()
        self.kernels: Any = None
        self.biases: Any = None
        self.kernels_gradient: Any = None
        self.biases_gradient: Any = None
        self._cols: Any = None
        self._padded_shape: tuple[int, int, int, int] = (0, 0, 0, 0)
        if input_shape is not None:
            self.build(input_shape)

    def build(self, input_shape: int | tuple[int, ...]) -> None:
        """Set the input shape (C, H, W) and the output shape; initialize unless ``"auto"``."""
        shape = _checks.shape("Convolutional", "input_shape", input_shape)
        assert shape is not None
        _, h, w = _image_shape("Convolutional", shape)
        k, p, s = self.kernel_size, self.padding, self.stride
        if k > h + 2 * p or k > w + 2 * p:
            raise ValueError(
                f"Convolutional: kernel_size {k} is larger than the padded input "
                f"({h + 2 * p}, {w + 2 * p}) (input_shape {shape}, padding {p})"
            )
        if self.input_shape is not None and self.input_shape != shape:
            raise ValueError(
                f"Convolutional: input_shape={self.input_shape} was given, but the previous "
                f"layer outputs {shape}"
            )
        already = self.kernels is not None and self.input_shape == shape
        self.input_shape = shape
        self.output_shape = (
            self.output_depth,
            output_length(h, k, s, p),
            output_length(w, k, s, p),
        )
        if self.initialization != "auto" and not already:
            self.init_weights(self.initialization, self.no_bias)

    def init_weights(self, method: str, no_bias: bool) -> None:
        """Draw kernels (normal, std from fan-in C·K·K) and biases (standard normal).

        Args:
            method: ``"he"``, ``"xavier"``, or anything else for a std of 0.1.
            no_bias: True to drop the biases altogether.
        """
        c = self._known("input_shape")[0]
        k = self.kernel_size
        std = init_std(method, c * k * k)
        self.kernels = xp.random.normal(0.0, std, (self.output_depth, c, k, k)).astype(DTYPE)
        self.kernels_gradient = xp.zeros_like(self.kernels)
        self.no_bias = bool(no_bias)
        if self.no_bias:
            self.biases = self.biases_gradient = None
        else:
            self.biases = xp.random.standard_normal(self.output_depth).astype(DTYPE)
            self.biases_gradient = xp.zeros_like(self.biases)

    def forward(self, input_batch: ArrayType, training: bool = True) -> ArrayType:
        """(N, C, H, W) -> (N, output_depth, H_out, W_out)."""
        x = self._check_input(input_batch, min_ndim=4)
        if self.kernels is None:
            if self.input_shape is None:
                self.build(x.shape[1:])
            method = "xavier" if self.initialization == "auto" else self.initialization
            self.init_weights(method, self.no_bias)
        kernels = self.kernels
        if x.dtype != kernels.dtype:
            x = x.astype(kernels.dtype)
        self.input = x
        p, k = self.padding, self.kernel_size
        if p:
            n, c, h, w = x.shape
            padded = xp.zeros((n, c, h + 2 * p, w + 2 * p), dtype=x.dtype)
            padded[:, :, p : p + h, p : p + w] = x
            x = padded
        self._padded_shape = x.shape
        windows = im2col(x, k, self.stride)  # (N, Ho, Wo, C, K, K) view
        n, h_out, w_out = windows.shape[:3]
        self._cols = windows.reshape(n * h_out * w_out, -1)  # the one im2col copy
        out = self._cols @ kernels.reshape(self.output_depth, -1).T  # (N·Ho·Wo, O)
        if self.biases is not None:
            out += self.biases
        self.output = xp.ascontiguousarray(
            out.reshape(n, h_out, w_out, self.output_depth).transpose(0, 3, 1, 2)
        )
        return self.output

    def backward(self, output_gradient_batch: ArrayType) -> ArrayType | None:
        """Store the kernel and bias gradients; return dLoss/dinput (N, C, H, W)."""
        g = self._check_gradient(output_gradient_batch)
        n, o, h_out, w_out = g.shape
        g_rows = g.transpose(0, 2, 3, 1).reshape(-1, o)  # (N·Ho·Wo, O)
        kernels = self.kernels
        self.kernels_gradient = (g_rows.T @ self._cols).reshape(kernels.shape)
        if self.biases is not None:
            self.biases_gradient = g_rows.sum(axis=0)
        if not self.needs_input_gradient:
            return None
        c, k = kernels.shape[1], self.kernel_size
        d_cols = (g_rows @ kernels.reshape(o, -1)).reshape(n, h_out, w_out, c, k, k)
        d_padded = col2im(
            d_cols.transpose(0, 3, 1, 2, 4, 5),
            self._padded_shape,
            (o, h_out, w_out),
            k,
            self.stride,
        )
        p = self.padding
        if p:
            h, w = self.input.shape[2:]
            return d_padded[:, :, p : p + h, p : p + w]
        return d_padded

    @property
    def params(self) -> dict[str, tuple[ArrayType, ArrayType]]:
        if self.kernels is None:
            return {}
        params = {"kernels": (self.kernels, self.kernels_gradient)}
        if self.biases is not None:
            params["biases"] = (self.biases, self.biases_gradient)
        return params

    def get_config(self) -> dict[str, Any]:
        return {
            "type": "Convolutional",
            "output_depth": self.output_depth,
            "kernel_size": self.kernel_size,
            "input_shape": self.input_shape,
            "initialization": self.initialization,
            "no_bias": self.no_bias,
            "stride": self.stride,
            "padding": self.padding_arg,
        }


class _Pooling2D(Layer):
    """Shared shape logic of the pooling layers (no padding)."""

    def __init__(self, pool_size: int = 2, strides: int | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        self.pool_size = _checks.positive_int(name, "pool_size", pool_size)
        self.strides = None if strides is None else _checks.positive_int(name, "strides", strides)
        self.stride = self.pool_size if self.strides is None else self.strides
        self._input_batch_shape: tuple[int, int, int, int] = (0, 0, 0, 0)

    def build(self, input_shape: int | tuple[int, ...]) -> None:
        """Set the input shape (C, H, W) and the output shape (C, H_out, W_out)."""
        name = type(self).__name__
        shape = _checks.shape(name, "input_shape", input_shape)
        assert shape is not None
        c, h, w = _image_shape(name, shape)
        k, s = self.pool_size, self.stride
        if k > h or k > w:
            raise ValueError(f"{name}: pool_size {k} is larger than the input ({h}, {w})")
        self.input_shape = shape
        self.output_shape = (c, output_length(h, k, s), output_length(w, k, s))

    def _windows(self, input_batch: ArrayType) -> Any:
        """Check the input and return its windows as (N, C, H_out, W_out, K·K) (a copy)."""
        x = self._check_input(input_batch, min_ndim=4)
        if self.input_shape is None:
            self.build(x.shape[1:])
        self.input = x
        self._input_batch_shape = x.shape
        windows = im2col(x, self.pool_size, self.stride).transpose(0, 3, 1, 2, 4, 5)
        n, c, h_out, w_out = windows.shape[:4]
        return windows.reshape(n, c, h_out, w_out, -1)

    def _scatter(self, d_windows: ArrayType) -> ArrayType:
        """Sum per-window gradients (N, C, H_out, W_out, K·K) back into the input shape."""
        n, c, h_out, w_out = d_windows.shape[:4]
        k = self.pool_size
        return col2im(
            d_windows.reshape(n, c, h_out, w_out, k, k),
            self._input_batch_shape,
            (c, h_out, w_out),
            k,
            self.stride,
        )

    def get_config(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "pool_size": self.pool_size, "strides": self.strides}


class MaxPooling2D(_Pooling2D):
    """Max pooling over K×K windows; each window's gradient goes to one position, its maximum.

    Args:
        pool_size: K, the window side.
        strides: Step between windows; None means ``pool_size``.

    Shapes:
        (N, C, H, W) -> (N, C, (H − K)//s + 1, (W − K)//s + 1).
    """

    def forward(self, input_batch: ArrayType, training: bool = True) -> ArrayType:
        windows = self._windows(input_batch)
        self._argmax = windows.argmax(axis=-1)  # first maximum: ties get one position
        self.output = xp.take_along_axis(windows, self._argmax[..., None], axis=-1)[..., 0]
        return self.output

    def backward(self, output_gradient_batch: ArrayType) -> ArrayType:
        g = self._check_gradient(output_gradient_batch)
        k2 = self.pool_size * self.pool_size
        one_hot = self._argmax[..., None] == xp.arange(k2)
        return self._scatter(one_hot * g[..., None])


class AveragePooling2D(_Pooling2D):
    """Average pooling over K×K windows; each window's gradient is shared by its K·K inputs.

    Args:
        pool_size: K, the window side.
        strides: Step between windows; None means ``pool_size``.

    Shapes:
        (N, C, H, W) -> (N, C, (H − K)//s + 1, (W − K)//s + 1).
    """

    def forward(self, input_batch: ArrayType, training: bool = True) -> ArrayType:
        self.output = self._windows(input_batch).mean(axis=-1)
        return self.output

    def backward(self, output_gradient_batch: ArrayType) -> ArrayType:
        g = self._check_gradient(output_gradient_batch)
        k2 = self.pool_size * self.pool_size
        share = (g / k2)[..., None]
        return self._scatter(xp.broadcast_to(share, (*g.shape, k2)))


class Flatten(Layer):
    """Flatten each sample: (N, ...) -> (N, product of the rest)."""

    def build(self, input_shape: int | tuple[int, ...]) -> None:
        """Set the input shape; the output shape is its product, as a 1-tuple."""
        self.input_shape = _checks.shape("Flatten", "input_shape", input_shape)
        self.output_shape = (math.prod(self._known("input_shape")),)

    def forward(self, input_batch: ArrayType, training: bool = True) -> ArrayType:
        x = self._check_input(input_batch, min_ndim=1)
        self.input = x
        self.output = x.reshape(x.shape[0], -1)
        return self.output

    def backward(self, output_gradient_batch: ArrayType) -> ArrayType:
        g = self._check_gradient(output_gradient_batch)
        return g.reshape(self.input.shape)


class BatchNormalization2D(BatchNormalization):
    """Batch normalization per channel of (N, C, H, W) inputs, statistics over (N, H, W).

    Args:
        momentum: Weight of the old running statistics.
        epsilon: Added to the variance.

    Attributes:
        gamma, beta, cache_m, cache_v: shape (1, C, 1, 1).
    """

    reduce_axes = (0, 2, 3)

    def param_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """(1, C, 1, 1)."""
        c, _, _ = _image_shape("BatchNormalization2D", input_shape)
        return (1, c, 1, 1)
