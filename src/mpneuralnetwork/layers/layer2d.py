"""Layers on images (N, C, H, W): convolution, pooling, upsampling, flattening, reshaping,
batch normalization."""

from __future__ import annotations

import math
from typing import Any

from .. import _checks, threads
from ..backend import DTYPE, ArrayType, xp
from .layer import Layer
from .layer1d import _INITIALIZATIONS, BatchNormalization, Lit_W, init_std
from .utils import add_wide_windows, add_windows, correlate, output_length, window_blocks


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

    splits_work = True  # blocks of samples, one share per thread (see `threads`)

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
        self._check_declared(shape)
        already = self.kernels is not None and self.input_shape == shape
        self.input_shape = shape
        self.output_shape = (
            self.output_depth,
            output_length(h, k, s, p),
            output_length(w, k, s, p),
        )
        if self.initialization != "auto" and not already:
            self.init_weights(self.initialization, self.no_bias)

    def array_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """``kernels`` (output_depth, C, K, K) and, with biases, ``biases`` (output_depth,)."""
        c, _, _ = _image_shape("Convolutional", input_shape)
        k, depth = self.kernel_size, self.output_depth
        shapes: dict[str, tuple[int, ...]] = {"kernels": (depth, c, k, k)}
        return shapes if self.no_bias else {**shapes, "biases": (depth,)}

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
        n, _, h, w = x.shape
        o, k, s, p = self.output_depth, self.kernel_size, self.stride, self.padding
        h_out, w_out = output_length(h, k, s, p), output_length(w, k, s, p)
        rows = xp.empty((o, n * h_out * w_out), dtype=kernels.dtype)
        # Inference needs a block of windows (im2col) at a time; training keeps them
        # for the kernel gradient, unless the backward pass takes that gradient from
        # the windows of the output gradient (see `backward`).
        keep = training and not (self.needs_input_gradient and self._gradient_as_convolution())
        self._cols = self._windows_buffer(n * h_out * w_out) if keep else None
        images = x.transpose(1, 0, 2, 3)
        correlate(images, kernels.reshape(o, -1), k, s, p, rows, self._cols, self.biases)
        # An (N, O, Ho, Wo) view of the (O, N, Ho, Wo) product: element-wise layers
        # keep this memory order, so no transposing copy is made here.
        self.output = rows.reshape(o, n, h_out, w_out).transpose(1, 0, 2, 3)
        return self.output

    def _windows_buffer(self, columns: int) -> ArrayType:
        """The (C·K·K, columns) array of windows, reused from batch to batch."""
        return self._buffer("windows", (self.kernels[0].size, columns), self.kernels.dtype)

    def backward(self, output_gradient_batch: ArrayType) -> ArrayType | None:
        """Store the kernel and bias gradients; return dLoss/dinput (N, C, H, W)."""
        g = self._check_gradient(output_gradient_batch)
        n, o, h_out, w_out = g.shape
        g_rows = g.transpose(1, 0, 2, 3).reshape(o, -1)  # (O, N·Ho·Wo), free when channel-major
        kernels, k, s, p = self.kernels, self.kernel_size, self.stride, self.padding
        if self.biases is not None:
            # Partial sums over the shares' columns (samples, positions).
            self.biases_gradient = threads.total(
                lambda start, stop: g_rows[:, start:stop].sum(axis=1), g_rows.shape[1], 100 * g.size
            )
        if self.needs_input_gradient and self._gradient_as_convolution():
            return self._backward_as_convolution(g)
        if self._cols is None:  # the forward pass ran in inference mode: take the windows now
            self._cols = self._windows_buffer(n * h_out * w_out)
            images = self.input.transpose(1, 0, 2, 3)
            scratch = xp.empty((o, n * h_out * w_out), dtype=kernels.dtype)  # output, unused
            correlate(images, kernels.reshape(o, -1), k, s, p, scratch, self._cols)
        cols, columns = self._cols, g_rows.shape[1]
        # Partial products over the shares of the contracted axis (samples, positions).
        self.kernels_gradient = threads.total(
            lambda start, stop: g_rows[:, start:stop] @ cols[:, start:stop].T,
            columns,
            2 * g_rows.shape[0] * cols.shape[0] * columns,
        ).reshape(kernels.shape)
        if not self.needs_input_gradient:
            return None
        c = kernels.shape[1]
        h, w = self.input.shape[2:]
        h_pad, w_pad = h + 2 * p, w + 2 * p
        if s == 1:
            # Windows as wide as the padded image, the extra columns zero: col2im
            # then adds K² long contiguous runs instead of N·C·Ho short rows each.
            g_wide = xp.zeros((o, n, h_out, w_pad), dtype=g.dtype)
            g_wide[..., :w_out] = g.transpose(1, 0, 2, 3)
            d_cols = threads.matmul(kernels.reshape(o, -1).T, g_wide.reshape(o, -1))
            d_padded = add_wide_windows(d_cols.reshape(c, k, k, n, h_out * w_pad), h_pad, w_pad)
        else:
            d_cols = threads.matmul(kernels.reshape(o, -1).T, g_rows)  # (C·K·K, N·Ho·Wo)
            d_windows = d_cols.reshape(c, k, k, n, h_out, w_out)
            d_padded = add_windows(d_windows, h_pad, w_pad, s)  # col2im, channel-major
        return d_padded[:, :, p : p + h, p : p + w].transpose(1, 0, 2, 3)

    def _gradient_as_convolution(self) -> bool:
        """Whether `backward` takes the input gradient as a convolution (see there)."""
        k, p = self.kernel_size, self.padding
        return self.stride == 1 and p <= k - 1 and self.output_depth <= self.kernels.shape[1]

    def _backward_as_convolution(self, g: ArrayType) -> ArrayType:
        """Both gradients from one im2col of the output gradient (stride 1, O ≤ C).

        With stride 1 the input gradient is itself a convolution: the output gradient
        padded by K − 1 − p, correlated with the kernels flipped in both axes and
        with their channel axes swapped. One im2col and one product replace a
        product and K² overlapping additions (col2im); it copies O·K² values per
        input pixel, so with more output channels than input channels col2im is
        faster (32→64: 13.7 ms against 17.7). The same windows hold the kernel
        gradient: row (o, u, v) of a window matrix times the input's rows gives
        ``kernels_gradient[o, :, K−1−u, K−1−v]``. Both products read each block
        while it is in the cache, and the forward pass keeps no windows.
        """
        kernels, k, p = self.kernels, self.kernel_size, self.padding
        n, o = g.shape[:2]
        c, (h, w) = kernels.shape[1], self.input.shape[2:]
        dtype = xp.result_type(g.dtype, kernels.dtype)
        flipped = kernels[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).reshape(c, -1)
        images = self.input.transpose(1, 0, 2, 3)
        d_rows = xp.empty((c, n * h * w), dtype=dtype)
        gradients = g.transpose(1, 0, 2, 3)
        size = h * w

        def share(first: int, last: int) -> Any:  # samples first to last − 1
            # Returns this share's sum of the kernel gradient, rows (o, K−1−u, K−1−v).
            total = part = None
            for start, stop, rows in window_blocks(gradients[:, first:last], k, 1, k - 1 - p):
                start, stop = first + start, first + stop
                xp.matmul(flipped, rows, out=d_rows[:, start * size : stop * size])
                inputs = images[:, start:stop].reshape(c, -1)  # a view when channel-major
                if total is None:
                    total = rows @ inputs.T
                else:
                    part = xp.matmul(rows, inputs.T, out=part)
                    total += part
            return xp.zeros((o * k * k, c), dtype=dtype) if total is None else total  # no samples

        gradient = threads.total(share, n, 4 * flipped.size * d_rows.shape[1])
        flipped_gradient = gradient.reshape(o, k, k, c)[:, ::-1, ::-1].transpose(0, 3, 1, 2)
        self.kernels_gradient = xp.ascontiguousarray(flipped_gradient)
        return d_rows.reshape(c, n, h, w).transpose(1, 0, 2, 3)

    @property
    def params(self) -> dict[str, tuple[ArrayType, ArrayType]]:
        return self._existing_params("kernels", "biases")

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


def _window_slice(offset: int, stride: int, count: int) -> slice:
    """The ``count`` positions offset, offset + stride, ... along one axis."""
    return slice(offset, offset + stride * (count - 1) + 1, stride)


class _Pooling2D(Layer):
    """Shared shape logic of the pooling layers (no padding).

    A K×K window reduces separably: first along W (each row's K values), then
    along H, each step a loop over the K offsets of whole-batch slices.
    """

    def __init__(self, pool_size: int = 2, strides: int | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        self.pool_size = _checks.positive_int(name, "pool_size", pool_size)
        self.strides = None if strides is None else _checks.positive_int(name, "strides", strides)
        self.stride = self.pool_size if self.strides is None else self.strides

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

    def _prepare(self, input_batch: ArrayType) -> Any:
        x = self._check_input(input_batch, min_ndim=4)
        if self.input_shape is None:
            self.build(x.shape[1:])
        self.input = x
        return x

    def _slices(self) -> tuple[list[slice], list[slice]]:
        """Per window offset, the slice along H and the slice along W."""
        _, h_out, w_out = self._known("output_shape")
        k, s = self.pool_size, self.stride
        rows = [_window_slice(u, s, h_out) for u in range(k)]
        cols = [_window_slice(v, s, w_out) for v in range(k)]
        return rows, cols

    def _spread(self, g: Any, row_index: Any = None, col_index: Any = None) -> Any:
        """Send per-window gradients (N, C, H_out, W_out) back to the input positions.

        Separably, as the forward pass: along H to the rows of ``row_index`` (every
        row of the window when None), then along W to the columns of ``col_index``.
        """
        rows, cols = self._slices()
        n, c, h, w = self.input.shape
        # In the input's memory order, so the layers below keep theirs (channel-major
        # after a convolution) and a convolution's backward needs no transposing copy.
        channel_major = _is_channel_major(self.input)
        d_input = _zeros_unless_tiled((n, c, h, w), cols, 3, g.dtype, channel_major)

        def share(first: int, last: int) -> None:  # channels first to last − 1
            f = slice(first, last)
            shape = (n, last - first, h, g.shape[3])
            to_rows = _zeros_unless_tiled(shape, rows, 2, g.dtype, channel_major)
            _route(to_rows, rows, g[:, f], _part(row_index, f), axis=2)
            _route(d_input[:, f], cols, to_rows, _part(col_index, f), axis=3)

        threads.run(share, c, 100 * d_input.size)  # every window belongs to one channel
        return d_input

    def get_config(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "pool_size": self.pool_size, "strides": self.strides}


def _part(index: Any, channels: slice) -> Any:
    """The channels of an (N, C, …) index array, or None."""
    return None if index is None else index[:, channels]


def _is_channel_major(x: Any) -> bool:
    """Whether an (N, C, …) array is laid out (C, N, …) in memory, as a convolution's output."""
    return bool(x.strides[1] > x.strides[0])


def _image_array(shape: tuple[int, ...], dtype: Any, channel_major: bool, zeros: bool) -> Any:
    """A new (N, C, …) array, laid out (C, N, …) when ``channel_major``; zeros or empty."""
    make = xp.zeros if zeros else xp.empty
    if channel_major:
        return make((shape[1], shape[0], *shape[2:]), dtype=dtype).swapaxes(0, 1)
    return make(shape, dtype=dtype)


def _channel_major_like(x: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    """An empty (N, C, …) array laid out (C, N, …) in memory when ``x`` is."""
    return _image_array(shape, dtype, _is_channel_major(x), zeros=False)


def _index_dtype(count: int) -> Any:
    """The dtype of the index of the maximum among ``count`` candidates.

    Boolean for two (the usual 2×2 pooling): the first comparison is already the
    answer, one byte per element instead of two.
    """
    return xp.bool_ if count <= 2 else xp.int16


def _max_and_argmax(candidates: list[Any], best: Any, index: Any) -> None:
    """``best`` ← element-wise maximum of same-shape arrays, ``index`` ← that of the first.

    ``index`` has `_index_dtype`: with two candidates it is True where the second wins.
    """
    first, *others = candidates
    if len(others) == 1:
        xp.greater(others[0], first, out=index)  # strictly: a tie keeps the earlier position
        xp.maximum(first, others[0], out=best)
        return
    xp.copyto(best, first)
    index[...] = 0
    for i, candidate in enumerate(others, start=1):
        better = candidate > best  # strictly: a tie keeps the earlier position
        xp.maximum(best, candidate, out=best)
        # i grows with each candidate, so where ``better`` holds, i is the new maximum
        # index: one arithmetic pass instead of a slower masked write.
        xp.maximum(index, better * xp.int16(i), out=index)


class MaxPooling2D(_Pooling2D):
    """Max pooling over K×K windows; each window's gradient goes to one position, its maximum.

    Args:
        pool_size: K, the window side.
        strides: Step between windows; None means ``pool_size``.

    Shapes:
        (N, C, H, W) -> (N, C, (H − K)//s + 1, (W − K)//s + 1).
    """

    def forward(self, input_batch: ArrayType, training: bool = True) -> ArrayType:
        x = self._prepare(input_batch)
        rows, cols = self._slices()
        n, c, h, _ = x.shape
        h_out, w_out = self._known("output_shape")[1:]
        index_dtype = _index_dtype(self.pool_size)
        row_max = _channel_major_like(x, (n, c, h, w_out), x.dtype)
        col_index = _channel_major_like(x, (n, c, h, w_out), index_dtype)
        out = _channel_major_like(x, (n, c, h_out, w_out), x.dtype)
        row_index = _channel_major_like(x, (n, c, h_out, w_out), index_dtype)

        def share(first: int, last: int) -> None:  # channels first to last − 1
            # Row maxima along W, then the maximum of those along H: the first maximum
            # in row-major window order wins, so ties send the gradient to one place.
            f = slice(first, last)
            _max_and_argmax([x[:, f, :, v] for v in cols], row_max[:, f], col_index[:, f])
            _max_and_argmax([row_max[:, f, u, :] for u in rows], out[:, f], row_index[:, f])

        threads.run(share, c, 100 * x.size)  # every window belongs to one channel
        self.output, self._row_index, self._col_index = out, row_index, col_index
        return self.output

    def backward(self, output_gradient_batch: ArrayType) -> ArrayType:
        g = self._check_gradient(output_gradient_batch)
        return self._spread(g, self._row_index, self._col_index)


def _route(target: Any, slices: list[slice], values: Any, index: Any, axis: int) -> None:
    """Send ``values`` to ``target[..., slices[index], ...]`` along ``axis``.

    With ``index`` None every slice receives ``values``. Slices that do not overlap
    (stride >= pool size) are written directly; overlapping ones add up.
    """
    overlap = slices[0].step < len(slices)  # stride < pool size
    where: list[Any] = [slice(None)] * 4
    for offset, part in enumerate(slices):
        where[axis] = part
        view = target[tuple(where)]
        if index is None:
            if overlap:
                view += values
            else:
                view[...] = values
            continue
        if index.dtype == xp.bool_:  # two offsets: True selects the second
            chosen = index if offset else xp.logical_not(index)
        else:
            chosen = index == offset
        if overlap:
            view += values * chosen
        else:
            xp.multiply(values, chosen, out=view)


def _zeros_unless_tiled(
    shape: tuple[int, ...], slices: list[slice], axis: int, dtype: Any, channel_major: bool
) -> Any:
    """An (N, C, H, W) buffer for `_route`: uninitialized when the slices write every entry.

    With ``channel_major`` its memory is laid out (C, N, H, W).
    """
    step, count = slices[0].step, len(slices)
    tiled = step == count and slices[-1].stop == shape[axis]  # windows tile the axis exactly
    return _image_array(shape, dtype, channel_major, zeros=not tiled)


class AveragePooling2D(_Pooling2D):
    """Average pooling over K×K windows; each window's gradient is shared by its K·K inputs.

    Args:
        pool_size: K, the window side.
        strides: Step between windows; None means ``pool_size``.

    Shapes:
        (N, C, H, W) -> (N, C, (H − K)//s + 1, (W − K)//s + 1).
    """

    def forward(self, input_batch: ArrayType, training: bool = True) -> ArrayType:
        x = self._prepare(input_batch)
        rows, cols = self._slices()
        n, c, h, _ = x.shape
        h_out, w_out = self._known("output_shape")[1:]
        # Sums along W, then along H, into arrays in the input's memory order (an
        # operation on strided views may return another order, as CuPy's do).
        row_sum = _channel_major_like(x, (n, c, h, w_out), x.dtype)
        xp.copyto(row_sum, x[:, :, :, cols[0]])
        for col in cols[1:]:
            row_sum += x[:, :, :, col]
        out = _channel_major_like(x, (n, c, h_out, w_out), x.dtype)
        xp.copyto(out, row_sum[:, :, rows[0], :])
        for row in rows[1:]:
            out += row_sum[:, :, row, :]
        out /= self.pool_size * self.pool_size
        self.output = out
        return self.output

    def backward(self, output_gradient_batch: ArrayType) -> ArrayType:
        g = self._check_gradient(output_gradient_batch)
        return self._spread(g / (self.pool_size * self.pool_size))


def _reshaped_back(g: ArrayType, like: ArrayType) -> ArrayType:
    """``g`` with the shape of ``like`` and in its memory order.

    Channel-major after a convolution: the layers below then never mix two orders,
    which halves the speed of their passes.
    """
    d_input = g.reshape(like.shape)
    if d_input.strides == like.strides:
        return d_input
    ordered = xp.empty_like(like, dtype=g.dtype)
    ordered[...] = d_input
    return ordered


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
        return _reshaped_back(self._check_gradient(output_gradient_batch), self.input)


class BatchNormalization2D(BatchNormalization):
    """Batch normalization per channel of (N, C, H, W) inputs, statistics over (N, H, W).

    Args:
        momentum: Weight of the old running statistics.
        epsilon: Added to the variance.

    Attributes:
        gamma: Scale per channel, shape (1, C, 1, 1).
        beta: Shift per channel, shape (1, C, 1, 1).
        cache_m: Running mean per channel, shape (1, C, 1, 1).
        cache_v: Running variance per channel, shape (1, C, 1, 1).
    """

    reduce_axes = (0, 2, 3)

    def param_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """(1, C, 1, 1)."""
        c, _, _ = _image_shape("BatchNormalization2D", input_shape)
        return (1, c, 1, 1)


def _target_shape(value: Any) -> tuple[int, ...]:
    """Check a `Reshape` target: sizes >= 1 and at most one -1 (a tuple or a JSON list)."""
    if (
        not isinstance(value, (tuple, list))
        or not value
        or not all(_checks.is_int(v) and (v >= 1 or v == -1) for v in value)
        or sum(1 for v in value if v == -1) > 1
    ):
        raise ValueError(
            "Reshape: target_shape must be a non-empty tuple of positive ints, one of which "
            f"may be -1; got {value!r}"
        )
    return tuple(int(v) for v in value)


def _resolve(source: tuple[int, ...], target: tuple[int, ...]) -> tuple[int, ...]:
    """``target`` with its -1 inferred from ``source``'s size; a ValueError when they differ."""
    total, known = math.prod(source), math.prod(v for v in target if v != -1)
    if -1 in target:
        if total % known == 0:
            return tuple(total // known if v == -1 else v for v in target)
    elif known == total:
        return target
    raise ValueError(f"Reshape: cannot reshape {source} ({total} values) to {target}")


class Reshape(Layer):
    """Reshape each sample, keeping the batch axis: (N, *input_shape) -> (N, *target_shape).

    As Keras's ``Reshape`` (``torch.reshape`` on each sample): the values keep their
    row-major order.

    Args:
        target_shape: The shape of one output sample, a tuple of ints >= 1 (a list is
            accepted, as a configuration read from JSON gives); one size may be -1, inferred
            from the input's size.
        input_shape: Shape of one input sample; when given the layer builds at once (so it
            can be a model's first layer).

    Raises:
        ValueError: At `build` (so at ``Model(...)``), or at `forward` for a layer used
            alone, when the input's size does not fit ``target_shape``.

    Shapes:
        (N, *input_shape) -> (N, *output_shape), ``output_shape`` being ``target_shape``
        with its -1 resolved once the layer is built.
    """

    def __init__(
        self,
        target_shape: tuple[int, ...] | list[int],
        input_shape: int | tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        self.target_shape = _target_shape(target_shape)
        if input_shape is not None:
            self.build(input_shape)

    def build(self, input_shape: int | tuple[int, ...]) -> None:
        """Set the input shape and the resolved output shape."""
        shape = _checks.shape("Reshape", "input_shape", input_shape)
        assert shape is not None
        self._check_declared(shape)
        self.output_shape = _resolve(shape, self.target_shape)
        self.input_shape = shape

    def forward(self, input_batch: ArrayType, training: bool = True) -> ArrayType:
        x = self._check_input(input_batch, min_ndim=1)
        if self.input_shape is None:  # used alone: the target is resolved on each batch
            shape = _resolve(tuple(x.shape[1:]), self.target_shape)
        else:
            shape = self._known("output_shape")
        self.input = x
        self.output = x.reshape(x.shape[0], *shape)
        return self.output

    def backward(self, output_gradient_batch: ArrayType) -> ArrayType:
        return _reshaped_back(self._check_gradient(output_gradient_batch), self.input)

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"type": "Reshape", "target_shape": self.target_shape}
        if self.input_shape is not None:
            config["input_shape"] = self.input_shape
        return config


def _pair(value: Any) -> tuple[int, int] | None:
    """``(sh, sw)`` from an int >= 1 or a pair of them; None for anything else."""
    if _checks.is_int(value) and value >= 1:
        return int(value), int(value)
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(_checks.is_int(v) and v >= 1 for v in value)
    ):
        return int(value[0]), int(value[1])
    return None


class UpSampling2D(Layer):
    """Nearest-neighbour upsampling of images: each pixel becomes an sh×sw block.

    As Keras's ``UpSampling2D`` and PyTorch's ``nn.Upsample(scale_factor=size,
    mode="nearest")``: ``out[n, c, i, j] = x[n, c, i // sh, j // sw]``. The gradient of
    an input pixel is the sum of its block's gradients.

    Args:
        size: The factor along H and W, an int >= 1, or a pair ``(sh, sw)`` (a list is
            accepted, as a configuration read from JSON gives).

    Shapes:
        (N, C, H, W) -> (N, C, H·sh, W·sw).
    """

    def __init__(self, size: int | tuple[int, int] | list[int] = 2) -> None:
        super().__init__()
        factors = _pair(size)
        if factors is None:
            raise ValueError(
                f"UpSampling2D: size must be an int >= 1 or a pair of them (sh, sw); got {size!r}"
            )
        # An int stays an int (its configuration reads as Keras's), a pair a tuple.
        self.size: int | tuple[int, int] = factors[0] if _checks.is_int(size) else factors
        self._factors = factors

    def build(self, input_shape: int | tuple[int, ...]) -> None:
        """Set the input shape (C, H, W) and the output shape (C, H·sh, W·sw)."""
        shape = _checks.shape("UpSampling2D", "input_shape", input_shape)
        assert shape is not None
        c, h, w = _image_shape("UpSampling2D", shape)
        sh, sw = self._factors
        self.input_shape = shape
        self.output_shape = (c, h * sh, w * sw)

    def forward(self, input_batch: ArrayType, training: bool = True) -> ArrayType:
        x = self._check_input(input_batch, min_ndim=4)
        if self.input_shape is None:
            self.build(tuple(x.shape[1:]))
        self.input = x
        sh, sw = self._factors
        # One broadcast copy into (A, B, H, sh, W, sw), A×B being (N, C) in the input's
        # memory order (C, N after a convolution), then a free reshape to (…, H·sh, W·sw).
        major = _is_channel_major(x)
        source = x.swapaxes(0, 1) if major else x
        a, b, h, w = source.shape
        blocks = xp.empty((a, b, h, sh, w, sw), dtype=x.dtype)
        blocks[...] = source[:, :, :, None, :, None]
        out = blocks.reshape(a, b, h * sh, w * sw)
        self.output = out.swapaxes(0, 1) if major else out
        return self.output

    def backward(self, output_gradient_batch: ArrayType) -> ArrayType:
        g = self._check_gradient(output_gradient_batch)
        sh, sw = self._factors
        major = _is_channel_major(g)
        source = g.swapaxes(0, 1) if major else g
        a, b, h_out, w_out = source.shape
        sums = source.reshape(a, b, h_out // sh, sh, w_out // sw, sw).sum(axis=(3, 5))
        d_input = sums.swapaxes(0, 1) if major else sums
        if major == _is_channel_major(self.input):
            return d_input
        # In the input's memory order, so the layers below keep theirs.
        ordered = _channel_major_like(self.input, tuple(d_input.shape), g.dtype)
        ordered[...] = d_input
        return ordered

    def get_config(self) -> dict[str, Any]:
        return {"type": "UpSampling2D", "size": self.size}
