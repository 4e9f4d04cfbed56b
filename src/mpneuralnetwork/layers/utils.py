"""Window extraction for the 2-D layers: ``im2col`` and ``col2im``, adjoint up to an axis order."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import _checks, threads
from ..backend import ArrayType, xp


def output_length(size: int, window: int, stride: int, padding: int = 0) -> int:
    """Number of window positions along one axis: (size − window + 2·padding)//stride + 1."""
    return (size - window + 2 * padding) // stride + 1


def channel_windows(images: ArrayType, window_size: int, stride: int) -> ArrayType:
    """The K×K windows of a (C, N, H, W)-shaped array as a (C, K, K, N, H_out, W_out) view.

    Any strides are accepted (a transposed (N, C, H, W) batch included), so no copy
    is made here; copying the view into a (C·K·K, N·H_out·W_out) array is im2col.
    """
    c, n, h, w = images.shape
    sc, sn, sh, sw = images.strides
    h_out = output_length(h, window_size, stride)
    w_out = output_length(w, window_size, stride)
    shape = (c, window_size, window_size, n, h_out, w_out)
    strides = (sc, sh, sw, sn, sh * stride, sw * stride)
    return xp.lib.stride_tricks.as_strided(images, shape=shape, strides=strides)


def im2col(input_batch: ArrayType, window_size: int, stride: int | None = None) -> ArrayType:
    """Return the K×K windows of an (N, C, H, W) batch as an (N, H_out, W_out, C, K, K) array.

    ``windows[n, i, j]`` is the (C, K, K) block of image ``n`` whose top-left corner
    is at ``(i·stride, j·stride)``. For a C-contiguous backend array the result is a
    strided view that shares its memory (no copy): read it, never write into it.
    Any other input (a list, a transposed or sliced array, a NumPy array on the CuPy
    backend) is first copied into a contiguous array, and the view shares that copy.

    The axes are not those `col2im` takes: ``col2im`` expects (N, C, H_out, W_out,
    K, K), so the adjoint of ``im2col`` is
    ``col2im(cols.transpose(0, 3, 1, 2, 4, 5), x.shape, (C, H_out, W_out), K, stride)``.

    Args:
        input_batch: Array of shape (N, C, H, W).
        window_size: K, the side of the square window.
        stride: Step between windows; None means 1.

    Returns:
        Array of shape (N, H_out, W_out, C, K, K), H_out = (H − K)//stride + 1,
        W_out = (W − K)//stride + 1.
    """
    stride = 1 if stride is None else _checks.positive_int("im2col", "stride", stride)
    k = _checks.positive_int("im2col", "window_size", window_size)
    x = xp.ascontiguousarray(xp.asarray(input_batch))  # no copy: C-contiguous on the backend
    if x.ndim != 4:
        raise ValueError(f"im2col: input_batch must have shape (N, C, H, W); got {tuple(x.shape)}")
    h, w = x.shape[2:]
    if k > h or k > w:
        raise ValueError(f"im2col: window_size {k} is larger than the input ({h}, {w})")
    return channel_windows(x.transpose(1, 0, 2, 3), k, stride).transpose(3, 4, 5, 0, 1, 2)


def col2im(
    cols: ArrayType,
    input_shape: tuple[int, int, int, int],
    output_shape: tuple[int, int, int],
    window_size: int,
    stride: int = 1,
) -> ArrayType:
    """Sum windows back into an image, overlapping windows adding up.

    ``cols[n, c, i, j]`` is added to the K×K block of ``image[n, c]`` whose top-left
    corner is at ``(i·stride, j·stride)``. Up to an axis order this is the adjoint
    (transpose) of `im2col`: `im2col` returns (N, H_out, W_out, C, K, K) and this
    function takes (N, C, H_out, W_out, K, K), so for every ``x`` and ``w`` shaped
    like ``im2col(x, K, s)``,
    ``(im2col(x, K, s) * w).sum() == (x * col2im(w.transpose(0, 3, 1, 2, 4, 5),
    x.shape, (C, H_out, W_out), K, s)).sum()``. It is the backward pass of taking
    windows: each input pixel receives the sum of the gradients of the windows
    that read it.

    Args:
        cols: Array (N, C, H_out, W_out, K, K) of per-window values.
        input_shape: (N, C, H, W) of the image to rebuild.
        output_shape: (C_out, H_out, W_out) of the forward pass.
        window_size: K.
        stride: Step between windows.

    Returns:
        Array of shape ``input_shape`` where overlapping windows add up.
    """
    k = _checks.positive_int("col2im", "window_size", window_size)
    s = _checks.positive_int("col2im", "stride", stride)
    image_shape = _checks.shape("col2im", "input_shape", input_shape)
    if image_shape is None or len(image_shape) != 4:
        raise ValueError(f"col2im: input_shape must be (N, C, H, W); got {input_shape!r}")
    windows_shape = _checks.shape("col2im", "output_shape", output_shape)
    if windows_shape is None or len(windows_shape) != 3:
        raise ValueError(
            f"col2im: output_shape must be (C_out, H_out, W_out); got {output_shape!r}"
        )
    cols = xp.asarray(cols)
    n, c, h, w = image_shape
    h_out, w_out = windows_shape[1], windows_shape[2]
    if (h_out - 1) * s + k > h or (w_out - 1) * s + k > w:
        raise ValueError(
            f"col2im: output_shape {tuple(windows_shape)} does not fit input_shape "
            f"{image_shape}: {h_out}x{w_out} windows of size {k} with stride {s} need an image "
            f"of at least ({(h_out - 1) * s + k}, {(w_out - 1) * s + k})"
        )
    if cols.shape != (n, c, h_out, w_out, k, k):
        raise ValueError(
            f"col2im: cols must have shape {(n, c, h_out, w_out, k, k)}; got {tuple(cols.shape)}"
        )
    return add_windows(cols.transpose(1, 4, 5, 0, 2, 3), h, w, s).transpose(1, 0, 2, 3)


def add_windows(windows: ArrayType, height: int, width: int, stride: int) -> ArrayType:
    """The adjoint of `channel_windows`: sum per-window values back into images.

    Args:
        windows: (C, K, K, N, H_out, W_out) values, one K×K block per window.
        height: H of the images.
        width: W of the images.
        stride: Step between windows.

    Returns:
        A (C, N, H, W)-shaped array (channel-major, like the convolution's
        activations) where overlapping windows add up.
    """
    c, k, _, n, h_out, w_out = windows.shape
    s = stride
    image: Any = xp.zeros((c, n, height, width), dtype=windows.dtype)
    if s == k and h_out * k <= height and w_out * k <= width:
        # Windows tile the image without overlap: one reshape instead of K² adds.
        tiles = windows.transpose(0, 3, 4, 1, 5, 2).reshape(c, n, h_out * k, w_out * k)
        image[:, :, : h_out * k, : w_out * k] = tiles
        return image
    for u in range(k):  # a loop over the K² window offsets, never over the batch
        for v in range(k):
            image[:, :, u : u + s * h_out : s, v : v + s * w_out : s] += windows[:, u, v]
    return image


def add_wide_windows(windows: ArrayType, height: int, width: int) -> ArrayType:
    """Stride-1 `add_windows` for windows laid out on rows as wide as the image.

    ``windows[c, u, v, n, i·width + j]`` belongs at ``(i + u, j + v)`` of image ``n``;
    columns ``j >= W_out`` must be zero (they fall on the next row, or past the end).
    Each offset (u, v) is then one contiguous run per image: in the flattened image
    it starts at ``u·width + v``.

    Args:
        windows: (C, K, K, N, H_out·width) values.
        height: H of the images.
        width: W of the images.

    Returns:
        A (C, N, H, W)-shaped array where overlapping windows add up.
    """
    c, k, _, n, length = windows.shape
    flat = xp.zeros((c, n, height * width + k - 1), dtype=windows.dtype)  # room for the spill

    def share(first: int, last: int) -> None:  # channels first to last − 1
        for u in range(k):
            for v in range(k):
                start = u * width + v
                flat[first:last, :, start : start + length] += windows[first:last, u, v]

    threads.run(share, c, 100 * windows.size)
    return flat[:, :, : height * width].reshape(c, n, height, width)


#: Bytes of one block of windows. A block this small is still in the cache when the
#: matrix product reads it, right after the copy that made it.
BLOCK_BYTES = 4 << 20


def window_blocks(
    images: ArrayType,
    window_size: int,
    stride: int,
    padding: int,
    keep: ArrayType | None = None,
) -> Iterator[tuple[int, int, ArrayType]]:
    """im2col a few samples at a time: yield ``(start, stop, windows)`` per block.

    The images are taken `BLOCK_BYTES` of windows at a time: padded into a small
    reused buffer whose border stays zero, and their windows copied into a
    (C·K·K, count·H_out·W_out) matrix that is still in the cache when the caller
    multiplies it. On a GPU the whole batch is one block (blocks only add launches).

    Args:
        images: (C, N, H, W)-shaped, any strides: a channel-major view of a batch.
        window_size: K.
        stride: Step between windows.
        padding: Zeros added on each side of H and W.
        keep: Optional contiguous (C·K·K, N·H_out·W_out) array that receives every
            window (the yielded blocks are its slices); without it one block-sized
            buffer is reused, so a block is only valid until the next one.

    Yields:
        ``start, stop``, the samples of the block, and its windows as rows.
    """
    c, n, h, w = images.shape
    k, s, p = window_size, stride, padding
    h_out, w_out = output_length(h, k, s, p), output_length(w, k, s, p)
    size = h_out * w_out
    block = max(n, 1)
    if xp.__name__ == "numpy":  # a GPU gains nothing from blocks, only kernel launches
        block = max(1, min(n, BLOCK_BYTES // (c * k * k * size * images.itemsize)))
    if keep is not None:
        windows_of = keep.reshape(c, k, k, n, h_out, w_out)
        rows = keep
    else:
        windows_of = xp.empty((c, k, k, block, h_out, w_out), dtype=images.dtype)
        rows = windows_of.reshape(c * k * k, block * size)
    padded = xp.zeros((c, block, h + 2 * p, w + 2 * p), dtype=images.dtype) if p else None
    for start in range(0, n, block):
        stop = min(n, start + block)
        count = stop - start
        source = images[:, start:stop]
        if padded is not None:  # its border stays zero: only the inside is written
            padded[:, :count, p : p + h, p : p + w] = source
            source = padded[:, :count]
        at = start if keep is not None else 0  # where this block's windows go
        xp.copyto(windows_of[:, :, :, at : at + count], channel_windows(source, k, s))
        yield start, stop, rows[:, at * size : (at + count) * size]


def correlate(
    images: ArrayType,
    weights: ArrayType,
    window_size: int,
    stride: int,
    padding: int,
    out: ArrayType,
    keep: ArrayType | None = None,
    biases: ArrayType | None = None,
) -> None:
    """``out = weights @ im2col(images) (+ biases)``: a convolution as products, by blocks.

    Each block of windows (see `window_blocks`) is multiplied right after the copy
    that made it, while it is in the cache, and the biases are added to the block's
    product while that is in the cache in turn.

    Args:
        images: (C, N, H, W)-shaped, any strides: a channel-major view of a batch.
        weights: (O, C·K·K) kernels as rows.
        window_size: K.
        stride: Step between windows.
        padding: Zeros added on each side of H and W.
        out: (O, N·H_out·W_out) array receiving the product.
        keep: Optional contiguous (C·K·K, N·H_out·W_out) array that receives every
            window (for the kernel gradient).
        biases: Optional (O,) values added to each row of ``out``.
    """
    n, h, w = images.shape[1:]
    size = output_length(h, window_size, stride, padding) * output_length(
        w, window_size, stride, padding
    )

    def share(first: int, last: int) -> None:  # samples first to last − 1
        kept = None if keep is None else keep[:, first * size : last * size]
        for start, stop, rows in window_blocks(
            images[:, first:last], window_size, stride, padding, kept
        ):
            block = out[:, (first + start) * size : (first + stop) * size]
            xp.matmul(weights, rows, out=block)
            if biases is not None:
                block += biases.reshape(-1, 1)

    threads.run(share, n, 2 * weights.size * out.shape[1])
