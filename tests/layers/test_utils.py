"""im2col and its adjoint col2im."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mpneuralnetwork import to_device, to_host
from mpneuralnetwork.layers.utils import col2im, im2col

# (N, C, H, W, K, stride)
CASES = [
    (2, 3, 5, 5, 3, 1),
    (1, 2, 7, 9, 3, 2),  # non-square, stride does not divide
    (2, 1, 6, 8, 2, 2),  # non-overlapping tiles
    (1, 2, 7, 8, 2, 3),  # stride > K: gaps
    (2, 2, 9, 7, 2, 5),  # stride >> K
    (1, 1, 4, 4, 4, 1),  # one window
    (1, 3, 5, 6, 1, 1),  # 1x1 windows
    (2, 2, 8, 9, 4, 3),
    (1, 1, 5, 5, 5, 2),
    (3, 2, 6, 6, 3, 3),  # tiles exactly
]


def _out(size: int, k: int, s: int) -> int:
    return (size - k) // s + 1


@pytest.mark.parametrize(("n", "c", "h", "w", "k", "s"), CASES)
def test_im2col_shape_and_values_match_naive_slicing(n, c, h, w, k, s):
    x = np.random.default_rng(0).standard_normal((n, c, h, w))
    cols = to_host(im2col(to_device(x), k, s))
    h_out, w_out = _out(h, k, s), _out(w, k, s)
    assert cols.shape == (n, h_out, w_out, c, k, k)
    for b, i, j in itertools.product(range(n), range(h_out), range(w_out)):
        np.testing.assert_array_equal(cols[b, i, j], x[b, :, i * s : i * s + k, j * s : j * s + k])


def test_im2col_default_stride_is_one():
    x = np.arange(2 * 4 * 5, dtype=np.float32).reshape(1, 2, 4, 5)
    cols = to_host(im2col(to_device(x), 2))
    assert cols.shape == (1, 3, 4, 2, 2, 2)
    np.testing.assert_array_equal(cols[0, 1, 2, 1], [[27, 28], [32, 33]])  # x[0, 1, 1:3, 2:4]


def test_im2col_non_contiguous_input():
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 5))
    view = to_device(x).transpose(0, 1, 3, 2)  # (2, 3, 5, 6), not C-contiguous
    cols = to_host(im2col(view, 2, 1))
    xt = x.transpose(0, 1, 3, 2)
    np.testing.assert_array_equal(cols[1, 2, 3], xt[1, :, 2:4, 3:5])


@pytest.mark.parametrize(("n", "c", "h", "w", "k", "s"), CASES)
def test_col2im_is_the_adjoint_of_im2col(n, c, h, w, k, s):
    rng = np.random.default_rng(k * 10 + s)
    x = rng.standard_normal((n, c, h, w))
    h_out, w_out = _out(h, k, s), _out(w, k, s)
    cols = rng.standard_normal((n, h_out, w_out, c, k, k))
    lhs = np.sum(to_host(im2col(to_device(x), k, s)) * cols)
    image = to_host(
        col2im(to_device(cols.transpose(0, 3, 1, 2, 4, 5)), (n, c, h, w), (c, h_out, w_out), k, s)
    )
    assert image.shape == (n, c, h, w)
    rhs = np.sum(x * image)
    assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(("n", "c", "h", "w", "k", "s"), CASES)
def test_col2im_matches_naive_accumulation(n, c, h, w, k, s):
    rng = np.random.default_rng(3)
    h_out, w_out = _out(h, k, s), _out(w, k, s)
    cols = rng.standard_normal((n, c, h_out, w_out, k, k))
    expected = np.zeros((n, c, h, w))
    for i, j in itertools.product(range(h_out), range(w_out)):
        expected[:, :, i * s : i * s + k, j * s : j * s + k] += cols[:, :, i, j]
    image = to_host(col2im(to_device(cols), (n, c, h, w), (7, h_out, w_out), k, s))
    np.testing.assert_allclose(image, expected, rtol=1e-12, atol=1e-12)


def test_col2im_counts_overlaps():
    cols = np.ones((1, 1, 2, 2, 2, 2))
    image = to_host(col2im(to_device(cols), (1, 1, 3, 3), (1, 2, 2), 2, 1))
    np.testing.assert_array_equal(image[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    single = col2im(to_device(cols.astype(np.float32)), (1, 1, 3, 3), (1, 2, 2), 2)
    assert single.dtype == np.float32


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda x: im2col(x, 0), "window_size"),
        (lambda x: im2col(x, 6), "window_size"),
        (lambda x: im2col(x, 2, 0), "stride"),
        (lambda x: im2col(x[0], 2), "input_batch"),
        (lambda x: col2im(im2col(x, 2), (1, 2, 5, 5), (2, 4, 4), 2), "cols"),
        (
            lambda x: col2im(to_device(np.zeros((1, 2, 4, 4, 2, 2))), (1, 2, 5, 5), (2, 4, 4), 0),
            "window_size",
        ),
        (
            lambda x: col2im(
                to_device(np.zeros((1, 2, 4, 4, 2, 2))), (1, 2, 5, 5), (2, 4, 4), 2, 0
            ),
            "stride",
        ),
        # windows that do not fit in the image
        (
            lambda x: col2im(
                to_device(np.zeros((1, 2, 4, 4, 2, 2))), (1, 2, 5, 5), (2, 4, 4), 2, 2
            ),
            "output_shape",
        ),
        (
            lambda x: col2im(to_device(np.zeros((1, 2, 6, 4, 2, 2))), (1, 2, 5, 5), (2, 6, 4), 2),
            "output_shape",
        ),
        (
            lambda x: col2im(to_device(np.zeros((1, 2, 4, 4, 2, 2))), (2, 5, 5), (2, 4, 4), 2),
            "input_shape",
        ),
        (
            lambda x: col2im(to_device(np.zeros((1, 2, 4, 4, 2, 2))), (1, 2, 5, 5), (4, 4), 2),
            "output_shape",
        ),
    ],
)
def test_bad_arguments(call, name):
    x = to_device(np.zeros((1, 2, 5, 5)))
    with pytest.raises(ValueError, match=name):
        call(x)
