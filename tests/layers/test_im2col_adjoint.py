"""What the im2col / col2im docstrings promise: the transpose that makes them adjoint, and
when im2col shares memory."""

from __future__ import annotations

import numpy as np
import pytest

from mpneuralnetwork import to_device, to_host, xp
from mpneuralnetwork.layers import col2im, im2col

TO_COL2IM = (0, 3, 1, 2, 4, 5)  # (N, H_out, W_out, C, K, K) -> (N, C, H_out, W_out, K, K)


@pytest.mark.parametrize(("k", "stride"), [(3, 1), (3, 2), (2, 2), (2, 3)])
def test_col2im_of_the_transposed_windows_is_the_adjoint(
    rng: np.random.Generator, k: int, stride: int
) -> None:
    x = rng.normal(size=(2, 3, 7, 8))
    windows = to_host(im2col(to_device(x), k, stride))
    h_out, w_out, c = windows.shape[1:4]
    w = rng.normal(size=windows.shape)
    back = to_host(col2im(to_device(w.transpose(TO_COL2IM)), x.shape, (c, h_out, w_out), k, stride))
    # <im2col(x), w> == <x, col2im(w transposed)>, in float64.
    np.testing.assert_allclose((windows * w).sum(), (x * back).sum(), rtol=1e-12)


def test_without_the_transpose_the_shapes_do_not_match(rng: np.random.Generator) -> None:
    x = to_device(rng.normal(size=(2, 3, 6, 6)))
    with pytest.raises(ValueError, match="cols must have shape"):
        col2im(im2col(x, 3), (2, 3, 6, 6), (3, 4, 4), 3)


def test_tiling_windows_give_the_image_back(rng: np.random.Generator) -> None:
    x = rng.normal(size=(2, 3, 6, 6))
    windows = im2col(to_device(x), 2, 2).transpose(TO_COL2IM)
    np.testing.assert_array_equal(to_host(col2im(windows, x.shape, (3, 3, 3), 2, 2)), x)


def test_im2col_shares_memory_only_with_a_contiguous_input(rng: np.random.Generator) -> None:
    x = to_device(rng.normal(size=(2, 3, 6, 6)))
    assert xp.shares_memory(im2col(x, 3), x)
    transposed = x.transpose(0, 1, 3, 2)  # not C-contiguous: copied first
    assert not xp.shares_memory(im2col(transposed, 3), transposed)
    np.testing.assert_array_equal(
        to_host(im2col(transposed, 3)), to_host(im2col(xp.ascontiguousarray(transposed), 3))
    )
