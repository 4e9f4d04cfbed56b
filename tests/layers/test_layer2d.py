"""Convolutional, MaxPooling2D, AveragePooling2D, Flatten and BatchNormalization2D."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from helpers import check_gradients, distinct_values, random_projection, to_float64
from mpneuralnetwork import DTYPE, to_device, to_host, xp
from mpneuralnetwork.layers import (
    AveragePooling2D,
    BatchNormalization2D,
    Convolutional,
    Flatten,
    MaxPooling2D,
)

PADDING_MESSAGE = "Padding must be 'valid', 'same', or an integer."


# --------------------------------------------------------------------------- references
def naive_conv(x: np.ndarray, kernels: np.ndarray, biases, stride: int, pad: int) -> np.ndarray:
    """Cross-correlation by explicit loops over every output position."""
    n, c, h, w = x.shape
    o, _, k, _ = kernels.shape
    padded = np.zeros((n, c, h + 2 * pad, w + 2 * pad))
    padded[:, :, pad : pad + h, pad : pad + w] = x
    h_out = (h - k + 2 * pad) // stride + 1
    w_out = (w - k + 2 * pad) // stride + 1
    out = np.zeros((n, o, h_out, w_out))
    for b, f, i, j in itertools.product(range(n), range(o), range(h_out), range(w_out)):
        total = 0.0 if biases is None else float(biases[f])
        for ch, u, v in itertools.product(range(c), range(k), range(k)):
            total += padded[b, ch, i * stride + u, j * stride + v] * kernels[f, ch, u, v]
        out[b, f, i, j] = total
    return out


def naive_pool(x: np.ndarray, k: int, stride: int, reduce) -> np.ndarray:
    n, c, h, w = x.shape
    h_out, w_out = (h - k) // stride + 1, (w - k) // stride + 1
    out = np.zeros((n, c, h_out, w_out))
    for b, ch, i, j in itertools.product(range(n), range(c), range(h_out), range(w_out)):
        window = x[b, ch, i * stride : i * stride + k, j * stride : j * stride + k]
        out[b, ch, i, j] = reduce(window)
    return out


def conv_padding(padding, k: int) -> int:
    return {"valid": 0, "same": (k - 1) // 2}.get(padding, padding)


# ============================================================================ Convolutional
CONV_GRID = [
    (k, s, padding, no_bias)
    for k in (1, 2, 3, 4, 5)
    for s in (1, 2, 3)
    for padding in ("valid", "same", 0, 1, 2)
    for no_bias in (False, True)
]


@pytest.mark.parametrize(("k", "s", "padding", "no_bias"), CONV_GRID)
def test_conv_gradients(k, s, padding, no_bias):
    layer = Convolutional(2, k, (2, 7, 9), "he", no_bias=no_bias, padding=padding, stride=s)
    to_float64(layer)
    x = np.random.default_rng(k * 100 + s).standard_normal((2, 2, 7, 9))
    checked = check_gradients(layer, x)
    assert checked == (["input", "kernels"] if no_bias else ["input", "kernels", "biases"])


@pytest.mark.parametrize(("k", "s", "padding"), [g[:3] for g in CONV_GRID if not g[3]])
def test_conv_forward_matches_loops_and_shape_formula(k, s, padding):
    layer = Convolutional(3, k, (2, 7, 9), "xavier", padding=padding, stride=s)
    p = conv_padding(padding, k)
    assert layer.padding == p
    assert layer.output_shape == (3, (7 - k + 2 * p) // s + 1, (9 - k + 2 * p) // s + 1)
    to_float64(layer)
    x = np.random.default_rng(1).standard_normal((2, 2, 7, 9))
    out = to_host(layer.forward(to_device(x)))
    assert out.shape == (2, *layer.output_shape)
    expected = naive_conv(x, to_host(layer.kernels), to_host(layer.biases), s, p)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("samples_per_block", [1, 2])
@pytest.mark.parametrize("depth", [1, 3])  # input gradient as a convolution (O <= C) or col2im
@pytest.mark.parametrize(("k", "s", "padding"), [(3, 1, "same"), (3, 2, 1), (2, 1, "valid")])
def test_conv_in_blocks_of_samples(monkeypatch, samples_per_block, depth, k, s, padding):
    # The windows are copied and multiplied a few samples at a time; 5 samples in
    # blocks of 1 or 2 (the last one short) must give the loops' values and exact
    # gradients, the input gradient's own blocked convolution included.
    from mpneuralnetwork.layers import utils

    layer = to_float64(Convolutional(depth, k, (2, 6, 7), "he", padding=padding, stride=s))
    rows = 2 * k * k * (layer.output_shape[1] * layer.output_shape[2])
    monkeypatch.setattr(utils, "BLOCK_BYTES", samples_per_block * rows * 8)
    x = np.random.default_rng(4).standard_normal((5, 2, 6, 7))
    expected = naive_conv(
        x, to_host(layer.kernels), to_host(layer.biases), s, conv_padding(padding, k)
    )
    np.testing.assert_allclose(
        to_host(layer.forward(to_device(x))), expected, rtol=1e-12, atol=1e-12
    )
    assert check_gradients(layer, x) == ["input", "kernels", "biases"]


def test_conv_backward_after_inference_forward_and_any_memory_order():
    # Inference keeps no windows: backward takes them then. A channel-major input
    # (the memory order convolutions hand on) gives the same numbers as (N, C, H, W).
    rng = np.random.default_rng(5)
    layer = to_float64(Convolutional(2, 3, (3, 6, 6), "he", padding="same"))
    x = rng.standard_normal((2, 3, 6, 6))
    g = rng.standard_normal((2, 2, 6, 6))
    out = to_host(layer.forward(to_device(x)))
    dx = to_host(layer.backward(to_device(g)))
    dk = to_host(layer.kernels_gradient)
    channel_major = to_device(np.ascontiguousarray(x.transpose(1, 0, 2, 3))).transpose(1, 0, 2, 3)
    np.testing.assert_allclose(
        to_host(layer.forward(channel_major, training=False)), out, rtol=1e-13
    )
    np.testing.assert_allclose(to_host(layer.backward(to_device(g))), dx, rtol=1e-13)
    np.testing.assert_allclose(to_host(layer.kernels_gradient), dk, rtol=1e-13)


@pytest.mark.parametrize(
    ("depth", "stride", "needs_input_gradient", "keeps"),
    [(2, 1, True, False), (4, 1, True, True), (2, 2, True, True), (2, 1, False, True)],
)
def test_conv_keeps_windows_only_where_backward_reads_them(
    depth, stride, needs_input_gradient, keeps
):
    # Stride 1 with O <= C takes the kernel gradient from the windows of the output
    # gradient, so its training forward keeps no window matrix; the other routes do.
    layer = to_float64(Convolutional(depth, 3, (3, 6, 6), "he", padding="same", stride=stride))
    layer.needs_input_gradient = needs_input_gradient
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 6, 6))
    g = rng.standard_normal((2, depth, *layer.output_shape[1:]))
    layer.forward(to_device(x))
    assert (layer._cols is not None) == keeps
    layer.backward(to_device(g))
    # dL/dkernels[o, c, u, v] = Σ g[n, o, i, j] · x_pad[n, c, i·s + u, j·s + v]
    h_out, w_out = layer.output_shape[1:]
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected = np.zeros((depth, 3, 3, 3))
    for u, v in itertools.product(range(3), range(3)):
        window = padded[:, :, u : u + stride * h_out : stride, v : v + stride * w_out : stride]
        expected[:, :, u, v] = np.einsum("noij,ncij->oc", g, window)
    np.testing.assert_allclose(to_host(layer.kernels_gradient), expected, rtol=1e-12)


@pytest.mark.parametrize(("depth", "stride"), [(2, 1), (4, 1), (2, 2)])  # each route
def test_conv_empty_batch_gives_empty_outputs_and_zero_gradients(depth, stride):
    layer = Convolutional(depth, 3, (3, 5, 5), "he", padding="same", stride=stride)
    out = layer.forward(to_device(np.zeros((0, 3, 5, 5), dtype=np.float32)))
    assert out.shape == (0, *layer.output_shape)
    dx = layer.backward(to_device(np.zeros(out.shape, dtype=np.float32)))
    assert dx.shape == (0, 3, 5, 5)
    np.testing.assert_array_equal(to_host(layer.kernels_gradient), np.zeros((depth, 3, 3, 3)))
    np.testing.assert_array_equal(to_host(layer.biases_gradient), np.zeros(depth))


def test_conv_batch_of_one_and_single_channel():
    layer = to_float64(Convolutional(1, 3, (1, 5, 6), "he", padding=1, stride=2))
    check_gradients(layer, np.random.default_rng(2).standard_normal((1, 1, 5, 6)))


def test_conv_3x3_hand_worked():
    # 1 sample, 1 channel, 4x4 input 0..15; kernel [[1,0,0],[0,1,0],[0,0,-1]] + bias 0.5.
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    kernel = np.array([[1, 0, 0], [0, 1, 0], [0, 0, -1]], dtype=np.float32)
    layer = Convolutional(1, 3, (1, 4, 4))
    layer.kernels = to_device(kernel.reshape(1, 1, 3, 3))
    layer.biases = to_device(np.array([0.5], dtype=np.float32))
    out = to_host(layer.forward(to_device(x)))
    # x[i, j] = 4i + j; out[i, j] = x[i,j] + x[i+1,j+1] - x[i+2,j+2] + 0.5 = 4i + j - 5 + 0.5
    expected = np.array([[-4.5, -3.5], [-0.5, 0.5]], dtype=np.float32)
    np.testing.assert_array_equal(out, expected.reshape(1, 1, 2, 2))
    assert out.dtype == DTYPE


def test_conv_3x3_explicit_loops_multichannel():
    rng = np.random.default_rng(3)
    x = rng.integers(-3, 4, (2, 2, 5, 4)).astype(np.float32)
    kernels = rng.integers(-2, 3, (3, 2, 3, 3)).astype(np.float32)
    biases = np.array([1.0, -1.0, 0.25], dtype=np.float32)
    layer = Convolutional(3, 3, (2, 5, 4), padding="same")
    layer.kernels, layer.biases = to_device(kernels), to_device(biases)
    expected = np.zeros((2, 3, 5, 4), dtype=np.float32)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    for n in range(2):
        for o in range(3):
            for i in range(5):
                for j in range(4):
                    expected[n, o, i, j] = biases[o] + sum(
                        padded[n, c, i + u, j + v] * kernels[o, c, u, v]
                        for c in range(2)
                        for u in range(3)
                        for v in range(3)
                    )
    np.testing.assert_array_equal(to_host(layer.forward(to_device(x))), expected)


def test_conv_backward_hand_worked():
    # 1x1x3x3 input, one 2x2 kernel of ones, no bias, G = ones: every input position gets
    # the number of windows covering it; dK[u, v] = sum of the window sums.
    layer = Convolutional(1, 2, (1, 3, 3), no_bias=True)
    layer.kernels = to_device(np.ones((1, 1, 2, 2), dtype=np.float32))
    x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    out = to_host(layer.forward(to_device(x)))
    np.testing.assert_array_equal(out[0, 0], [[8, 12], [20, 24]])
    dx = to_host(layer.backward(to_device(np.ones((1, 1, 2, 2), dtype=np.float32))))
    np.testing.assert_array_equal(dx[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    # dK[u, v] = sum_{i,j} x[i+u, j+v]
    np.testing.assert_array_equal(to_host(layer.kernels_gradient)[0, 0], [[8, 12], [20, 24]])
    assert "biases" not in layer.params


def test_conv_padding_attributes():
    assert Convolutional(2, 5, padding="same").padding == 2
    assert Convolutional(2, 4, padding="same").padding == 1
    valid = Convolutional(2, 3)
    assert (valid.padding, valid.padding_arg, valid.stride) == (0, "valid", 1)
    same = Convolutional(2, 3, padding="same", stride=2)
    assert (same.padding, same.padding_arg, same.stride) == (1, "same", 2)
    explicit = Convolutional(2, 3, padding=3)
    assert (explicit.padding, explicit.padding_arg) == (3, 3)
    assert explicit.get_config()["padding"] == 3
    assert same.get_config()["padding"] == "same"


def test_conv_same_padding_keeps_size_for_odd_kernels():
    for k in (1, 3, 5):
        layer = Convolutional(4, k, (3, 7, 9), padding="same")
        assert layer.output_shape == (4, 7, 9)


def test_conv_initialization_std_and_dtype():
    layer = Convolutional(64, 3, (8, 9, 9), initialization="he")
    kernels = to_host(layer.kernels)
    assert kernels.shape == (64, 8, 3, 3) and kernels.dtype == DTYPE
    assert to_host(layer.biases).shape == (64,)
    assert np.std(kernels) == pytest.approx(np.sqrt(2 / 72), rel=0.05)
    xavier = to_host(Convolutional(64, 3, (8, 9, 9), initialization="xavier").kernels)
    assert np.std(xavier) == pytest.approx(np.sqrt(1 / 72), rel=0.05)
    auto = Convolutional(64, 3, (8, 9, 9))
    assert auto.kernels is None and auto.params == {}
    auto.init_weights("something else", no_bias=False)
    assert np.std(to_host(auto.kernels)) == pytest.approx(0.1, rel=0.05)


def test_conv_float32_by_default():
    layer = Convolutional(2, 3, (1, 5, 5), "he", padding=1)
    out = layer.forward(to_device(np.ones((2, 1, 5, 5))))  # float64 input, float32 layer
    assert to_host(out).dtype == DTYPE
    assert to_host(layer.backward(out)).dtype == DTYPE


def test_conv_no_bias_has_no_biases():
    layer = Convolutional(3, 3, (2, 5, 5), "he", no_bias=True)
    assert set(layer.params) == {"kernels"}
    assert layer.biases is None
    layer.forward(to_device(np.ones((1, 2, 5, 5))))
    layer.backward(to_device(np.ones((1, 3, 3, 3))))
    layer.load_params({"kernels": np.zeros((3, 2, 3, 3))})
    with pytest.raises(ValueError, match="biases"):
        layer.load_params({"biases": np.zeros(3)})
    rebuilt = Convolutional(**{k: v for k, v in layer.get_config().items() if k != "type"})
    assert set(rebuilt.params) == {"kernels"}


def test_conv_unbuilt_builds_on_first_forward():
    layer = Convolutional(2, 3)
    out = layer.forward(to_device(np.ones((4, 3, 6, 5))))
    assert layer.input_shape == (3, 6, 5)
    assert layer.output_shape == (2, 4, 3)
    assert to_host(out).shape == (4, 2, 4, 3)


# ================================================================================ pooling
POOL_GRID = [
    # (pool_size, strides, n, h, w)
    (2, None, 2, 7, 9),  # does not divide 7 nor 9
    (2, 2, 1, 6, 8),  # divides: non-overlapping tiles, batch of 1
    (3, None, 1, 7, 9),
    (3, 1, 2, 5, 6),  # overlapping
    (3, 2, 1, 7, 9),  # overlapping, not dividing
    (2, 1, 2, 4, 5),  # overlapping
    (2, 3, 1, 7, 8),  # stride > pool: gaps between windows
    (1, None, 1, 3, 4),
    (4, 3, 2, 7, 9),
]


@pytest.mark.parametrize("cls", [MaxPooling2D, AveragePooling2D])
@pytest.mark.parametrize(("k", "strides", "n", "h", "w"), POOL_GRID)
def test_pooling_gradients(cls, k, strides, n, h, w):
    layer = cls(k, strides)
    x = distinct_values((n, 2, h, w), seed=k * 10 + h)
    assert check_gradients(layer, x) == ["input"]


@pytest.mark.parametrize(("cls", "reduce"), [(MaxPooling2D, np.max), (AveragePooling2D, np.mean)])
@pytest.mark.parametrize(("k", "strides", "n", "h", "w"), POOL_GRID)
def test_pooling_forward_matches_loops(cls, reduce, k, strides, n, h, w):
    layer = cls(k, strides)
    s = k if strides is None else strides
    layer.build((2, h, w))
    assert layer.output_shape == (2, (h - k) // s + 1, (w - k) // s + 1)
    x = np.random.default_rng(4).standard_normal((n, 2, h, w))
    out = to_host(layer.forward(to_device(x)))
    assert out.shape == (n, *layer.output_shape)
    np.testing.assert_allclose(out, naive_pool(x, k, s, reduce), rtol=1e-12, atol=1e-15)


def test_pooling_2x2_hand_worked():
    x = np.array(
        [[1, 2, 5, 6], [3, 4, 8, 7], [9, 10, 13, 14], [12, 11, 16, 15]], dtype=np.float32
    ).reshape(1, 1, 4, 4)
    max_layer, avg_layer = MaxPooling2D(), AveragePooling2D()
    max_out = to_host(max_layer.forward(to_device(x)))
    avg_out = to_host(avg_layer.forward(to_device(x)))
    np.testing.assert_array_equal(max_out[0, 0], [[4, 8], [12, 16]])
    np.testing.assert_array_equal(avg_out[0, 0], [[2.5, 6.5], [10.5, 14.5]])
    g = np.array([[1, 2], [3, 4]], dtype=np.float32).reshape(1, 1, 2, 2)
    dx_max = to_host(max_layer.backward(to_device(g)))[0, 0]
    np.testing.assert_array_equal(dx_max, [[0, 0, 0, 0], [0, 1, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0]])
    dx_avg = to_host(avg_layer.backward(to_device(g)))[0, 0]
    np.testing.assert_array_equal(
        dx_avg,
        [[0.25, 0.25, 0.5, 0.5], [0.25, 0.25, 0.5, 0.5], [0.75, 0.75, 1, 1], [0.75, 0.75, 1, 1]],
    )


def test_average_pooling_overlap_accumulates():
    # 1x1x3x3, pool 2, stride 1: four windows; G = ones -> each input gets (#windows)/4.
    layer = AveragePooling2D(2, strides=1)
    layer.forward(to_device(np.zeros((1, 1, 3, 3))))
    dx = to_host(layer.backward(to_device(np.ones((1, 1, 2, 2)))))[0, 0]
    np.testing.assert_array_equal(dx, np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 4)


def test_pooling_uncovered_border_gets_zero_gradient():
    layer = MaxPooling2D(2)  # 5x5 input: the last row and column are never in a window
    x = distinct_values((1, 1, 5, 5))
    layer.forward(to_device(x))
    dx = to_host(layer.backward(to_device(np.ones((1, 1, 2, 2)))))
    assert dx.shape == (1, 1, 5, 5)
    assert not dx[0, 0, 4, :].any() and not dx[0, 0, :, 4].any()


@pytest.mark.parametrize("strides", [None, 1])
def test_max_pooling_ties_send_gradient_to_one_position(strides):
    layer = MaxPooling2D(2, strides)
    x = np.ones((2, 3, 4, 4), dtype=np.float32)  # every window is one big tie
    out = to_host(layer.forward(to_device(x)))
    np.testing.assert_array_equal(out, np.ones_like(out))
    g = random_projection(out.shape).astype(np.float32)
    dx = to_host(layer.backward(to_device(g)))
    s = 2 if strides is None else strides
    # window by window: the gradient lands in exactly one position of the window
    h_out, w_out = out.shape[2:]
    for n, c, i, j in itertools.product(range(2), range(3), range(h_out), range(w_out)):
        single = MaxPooling2D(2, strides)
        single.forward(to_device(x[n : n + 1, c : c + 1]))
        only = np.zeros((1, 1, *out.shape[2:]), dtype=np.float32)
        only[0, 0, i, j] = g[n, c, i, j]
        d = to_host(single.backward(to_device(only)))[0, 0]
        assert np.count_nonzero(d) == 1
        assert d.sum() == pytest.approx(g[n, c, i, j])
        nz = np.argwhere(d)[0]
        assert i * s <= nz[0] < i * s + 2 and j * s <= nz[1] < j * s + 2
    # and the total gradient is conserved (not multiplied by the number of ties)
    assert dx.sum() == pytest.approx(g.sum(), rel=1e-5)


def naive_max_pool_with_ties(x, g, k):
    """Loops: forward maxima, and each window's gradient sent to its first maximum in
    row-major window order (``argmax`` of the flattened window), as PyTorch does."""
    n, c, h, w = x.shape
    h_out, w_out = h // k, w // k
    out = np.zeros((n, c, h_out, w_out), dtype=x.dtype)
    dx = np.zeros_like(x)
    for b, ch, i, j in itertools.product(range(n), range(c), range(h_out), range(w_out)):
        window = x[b, ch, i * k : i * k + k, j * k : j * k + k]
        first = int(np.argmax(window))  # the first maximum, row-major
        out[b, ch, i, j] = window.max()
        dx[b, ch, i * k + first // k, j * k + first % k] += g[b, ch, i, j]
    return out, dx


@pytest.mark.parametrize("channel_major", [False, True])
@pytest.mark.parametrize(("k", "h", "w"), [(2, 6, 8), (2, 7, 9), (3, 9, 6), (3, 10, 11)])
def test_max_pooling_matches_loops_with_ties(k, h, w, channel_major):
    # Few distinct values make ties common: the first maximum of each window in
    # row-major order must get its gradient, in either memory order of the input.
    rng = np.random.default_rng(k * 100 + h)
    x = rng.integers(0, 3, size=(3, 4, h, w)).astype(np.float32)
    if channel_major:  # a convolution's memory order: (C, N, H, W)
        x = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    layer = MaxPooling2D(k)
    out = layer.forward(to_device(x))
    g = rng.standard_normal(out.shape).astype(np.float32)
    dx = to_host(layer.backward(to_device(g)))
    expected_out, expected_dx = naive_max_pool_with_ties(x, g, k)
    np.testing.assert_array_equal(to_host(out), expected_out)
    np.testing.assert_array_equal(dx, expected_dx)
    if xp.__name__ == "numpy":  # the gradient keeps the input's memory order
        assert (dx.strides[1] > dx.strides[0]) == channel_major


def test_pooling_config_round_trip_keeps_pool_size_and_strides():
    for cls in (MaxPooling2D, AveragePooling2D):
        layer = cls(3, strides=1)
        config = layer.get_config()
        assert config == {"type": cls.__name__, "pool_size": 3, "strides": 1}
        rebuilt = cls(**{k: v for k, v in config.items() if k != "type"})
        assert (rebuilt.pool_size, rebuilt.strides, rebuilt.stride) == (3, 1, 1)
        default = cls(3)
        assert default.get_config() == {"type": cls.__name__, "pool_size": 3, "strides": None}
        again = cls(**{k: v for k, v in default.get_config().items() if k != "type"})
        assert (again.pool_size, again.stride) == (3, 3)
        rebuilt.build((2, 7, 9))
        layer.build((2, 7, 9))
        assert rebuilt.output_shape == layer.output_shape == (2, 5, 7)


@pytest.mark.parametrize("cls", [MaxPooling2D, AveragePooling2D])
def test_pooling_forward_keeps_per_sample_input_shape(cls):
    built = cls(2)
    built.build((3, 6, 8))
    built.forward(to_device(np.zeros((5, 3, 6, 8))))
    assert built.input_shape == (3, 6, 8)
    assert built.output_shape == (3, 3, 4)
    unbuilt = cls(2)
    unbuilt.forward(to_device(np.zeros((5, 3, 6, 8))))
    assert unbuilt.input_shape == (3, 6, 8)
    unbuilt.forward(to_device(np.zeros((2, 3, 6, 8))))  # another batch size is fine
    assert unbuilt.input_shape == (3, 6, 8)


# ================================================================================ Flatten
def test_flatten_forward_backward_and_gradients():
    layer = Flatten()
    layer.build((2, 3, 4))
    assert layer.output_shape == (24,)
    assert (layer.input_size, layer.output_size) == (24, 24)
    x = np.random.default_rng(5).standard_normal((3, 2, 3, 4))
    out = to_host(layer.forward(to_device(x)))
    np.testing.assert_array_equal(out, x.reshape(3, 24))
    g = np.arange(72, dtype=np.float64).reshape(3, 24)
    np.testing.assert_array_equal(to_host(layer.backward(to_device(g))), g.reshape(3, 2, 3, 4))
    assert check_gradients(layer, x) == ["input"]


def test_flatten_backward_keeps_a_channel_major_input_order():
    # A convolution's output is a (N, C, H, W) view of (C, N, H, W) memory; the
    # gradient Flatten hands back has the same values and that memory order.
    x = np.random.default_rng(6).standard_normal((2, 3, 4, 5)).astype(np.float32)
    x = to_device(x).transpose(1, 0, 2, 3)
    layer = Flatten()
    layer.forward(x)
    g = np.arange(3 * 40, dtype=np.float32).reshape(3, 40)
    d_input = layer.backward(to_device(g))
    np.testing.assert_array_equal(to_host(d_input), g.reshape(3, 2, 4, 5))
    assert d_input.strides == x.strides and d_input.dtype == np.float32


# ===================================================================== BatchNormalization2D
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(3, 2, 4, 5), (1, 3, 3, 2), (4, 1, 2, 3)])
def test_batchnorm2d_gradients(training, shape):
    layer = BatchNormalization2D(momentum=0.7)
    layer.build(shape[1:])
    rng = np.random.default_rng(6)
    c = shape[1]
    # non-trivial parameters and running statistics
    layer.gamma = to_device(rng.uniform(0.5, 2.0, (1, c, 1, 1)))
    layer.beta = to_device(rng.standard_normal((1, c, 1, 1)))
    layer.cache_m = to_device(rng.standard_normal((1, c, 1, 1)))
    layer.cache_v = to_device(rng.uniform(0.5, 2.0, (1, c, 1, 1)))
    to_float64(layer)
    x = rng.standard_normal(shape) * 2 + 1
    assert check_gradients(layer, x, training=training) == ["input", "gamma", "beta"]


def test_batchnorm2d_hand_worked_and_running_stats():
    layer = BatchNormalization2D(momentum=0.9, epsilon=1e-8)
    x1 = np.array(
        [[[[1, 3]], [[0, 0]]], [[[5, 7]], [[2, 2]]]], dtype=np.float32
    )  # (N=2, C=2, H=1, W=2)
    layer.build((2, 1, 2))
    assert to_host(layer.gamma).shape == (1, 2, 1, 1)
    out = to_host(layer.forward(to_device(x1)))
    # channel 0: values 1, 3, 5, 7 -> mean 4, var (9+1+1+9)/4 = 5
    # channel 1: values 0, 0, 2, 2 -> mean 1, var 1
    mean = np.array([4.0, 1.0]).reshape(1, 2, 1, 1)
    var = np.array([5.0, 1.0]).reshape(1, 2, 1, 1)
    np.testing.assert_allclose(out, (x1 - mean) / np.sqrt(var + 1e-8), rtol=1e-6)
    x2 = np.array([[[[2, 2]], [[1, 3]]], [[[2, 2]], [[1, 3]]]], dtype=np.float32)
    layer.forward(to_device(x2))
    # channel 0: mean 2, var 0; channel 1: mean 2, var 1
    m1 = 0.1 * np.array([4.0, 1.0])
    v1 = 0.9 * 1 + 0.1 * np.array([5.0, 1.0])
    m2 = 0.9 * m1 + 0.1 * np.array([2.0, 2.0])
    v2 = 0.9 * v1 + 0.1 * np.array([0.0, 1.0])
    np.testing.assert_allclose(to_host(layer.cache_m).ravel(), m2, rtol=1e-6)
    np.testing.assert_allclose(to_host(layer.cache_v).ravel(), v2, rtol=1e-6)
    # inference uses the running statistics
    inference = to_host(layer.forward(to_device(x1), training=False))
    expected = (x1 - m2.reshape(1, 2, 1, 1)) / np.sqrt(v2.reshape(1, 2, 1, 1) + 1e-8)
    np.testing.assert_allclose(inference, expected, rtol=1e-5)
    # and leaves them alone
    np.testing.assert_allclose(to_host(layer.cache_m).ravel(), m2, rtol=1e-6)


# ============================================================================ bad input
def test_padding_foo_message_is_exact():
    for bad in ("foo", "SAME", 1.5, None, True):
        with pytest.raises(ValueError, match=re.escape(PADDING_MESSAGE)) as info:
            Convolutional(2, 3, padding=bad)
        assert str(info.value) == PADDING_MESSAGE


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: Convolutional(0, 3), "output_depth"),
        (lambda: Convolutional(-2, 3), "output_depth"),
        (lambda: Convolutional(2, 0), "kernel_size"),
        (lambda: Convolutional(2, 2.5), "kernel_size"),
        (lambda: Convolutional(2, 3, stride=0), "stride"),
        (lambda: Convolutional(2, 3, padding=-1), "padding"),
        (lambda: Convolutional(2, 3, initialization="glorot"), "initialization"),
        (lambda: Convolutional(2, 3, no_bias="yes"), "no_bias"),
        (lambda: Convolutional(2, 3, input_shape=(3, 5)), "input_shape"),
        (lambda: Convolutional(2, 3, input_shape=(3, 0, 5)), "input_shape"),
        (lambda: Convolutional(2, 5, input_shape=(1, 4, 9)), "kernel_size"),
        (lambda: Convolutional(2, 5, input_shape=(1, 2, 9), padding=1), "kernel_size"),
        (lambda: MaxPooling2D(0), "pool_size"),
        (lambda: AveragePooling2D(2, strides=0), "strides"),
        (lambda: MaxPooling2D(2, strides=-1), "strides"),
        (lambda: MaxPooling2D(5).build((1, 4, 9)), "pool_size"),
        (lambda: AveragePooling2D(3).build((1, 9, 2)), "pool_size"),
        (lambda: MaxPooling2D(2).build((4, 4)), "input_shape"),
        (lambda: BatchNormalization2D().build((4,)), "input_shape"),
        (lambda: BatchNormalization2D(momentum=1.5), "momentum"),
        (lambda: BatchNormalization2D(epsilon=0), "epsilon"),
        (lambda: Flatten().build((2, 0)), "input_shape"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(make, name):
    with pytest.raises(ValueError, match=name):
        make()


@pytest.mark.parametrize(
    ("layer", "x"),
    [
        (Convolutional(2, 3, (1, 5, 5), "he"), np.zeros((4, 25))),  # 2-D batch
        (Convolutional(2, 3), np.zeros((4, 25))),  # 2-D batch, unbuilt
        (Convolutional(2, 3, (1, 5, 5), "he"), np.zeros((4, 2, 5, 5))),  # wrong channels
        (Convolutional(2, 3, (1, 5, 5), "he"), np.zeros((4, 1, 5, 6))),
        (Convolutional(2, 3, (1, 5, 5), "he"), np.zeros((1, 5, 5))),  # missing batch axis
        (MaxPooling2D(2), np.zeros((3, 8))),
        (AveragePooling2D(2), np.zeros((3, 8))),
        (BatchNormalization2D(), np.zeros((3, 8))),
        (Flatten(), np.float64(3.0)),
    ],
)
def test_bad_input_batch(layer, x):
    with pytest.raises(ValueError, match="input_batch"):
        layer.forward(to_device(x))


@pytest.mark.parametrize(
    ("make", "x", "name"),
    [
        (lambda: Convolutional(2, 5), np.zeros((2, 1, 4, 9)), "kernel_size"),
        (lambda: Convolutional(2, 3), np.zeros((2, 1, 4, 4, 4)), "input_shape"),
        (lambda: MaxPooling2D(3), np.zeros((2, 1, 2, 9)), "pool_size"),
        (lambda: AveragePooling2D(3), np.zeros((2, 1, 9, 2)), "pool_size"),
        (lambda: BatchNormalization2D(), np.zeros((2, 3, 4, 4, 4)), "input_shape"),
    ],
)
def test_bad_input_batch_unbuilt(make, x, name):
    with pytest.raises(ValueError, match=name):
        make().forward(to_device(x))


def test_shape_checks_after_build():
    for layer in (MaxPooling2D(2), AveragePooling2D(2), Flatten(), BatchNormalization2D()):
        layer.build((2, 4, 4))
        with pytest.raises(ValueError, match="input_batch"):
            layer.forward(to_device(np.zeros((3, 2, 4, 5))))
        layer.forward(to_device(np.zeros((3, 2, 4, 4))))


@pytest.mark.parametrize(
    "layer",
    [
        Convolutional(2, 3, (1, 5, 5), "he"),
        Convolutional(2, 3, (1, 5, 5), "he", no_bias=True, padding="same", stride=2),
        MaxPooling2D(2),
        AveragePooling2D(2, 1),
        Flatten(),
        BatchNormalization2D(),
    ],
)
def test_backward_gradient_of_wrong_shape(layer):
    out = layer.forward(to_device(np.random.default_rng(0).standard_normal((2, 1, 5, 5))))
    shape = to_host(out).shape
    for bad in ((shape[0] + 1, *shape[1:]), (*shape[:-1], shape[-1] + 1), shape[1:], (1,)):
        with pytest.raises(ValueError, match="output_gradient_batch"):
            layer.backward(to_device(np.ones(bad, dtype=np.float32)))


@pytest.mark.parametrize(
    "layer",
    [Convolutional(2, 3, (1, 5, 5), "he"), MaxPooling2D(2), AveragePooling2D(2), Flatten()],
)
def test_backward_before_forward(layer):
    with pytest.raises(ValueError, match="forward"):
        layer.backward(to_device(np.ones((2, 2, 2, 2))))


def test_layers_are_backend_arrays():
    layer = Convolutional(2, 3, (1, 5, 5), "he")
    out = layer.forward(to_device(np.zeros((1, 1, 5, 5))))
    assert isinstance(out, xp.ndarray)
    assert isinstance(layer.kernels, xp.ndarray)


@pytest.mark.parametrize("no_bias", [False, True])
def test_conv_skipping_the_input_gradient_keeps_parameter_gradients(no_bias):
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 5)).astype(np.float32)
    full = Convolutional(3, 3, (2, 6, 5), "he", no_bias=no_bias, padding=1, stride=2)
    lean = Convolutional(3, 3, (2, 6, 5), "he", no_bias=no_bias, padding=1, stride=2)
    lean.load_params({name: to_host(value) for name, (value, _) in full.params.items()})
    lean.needs_input_gradient = False
    g = to_host(full.forward(to_device(x))).copy()
    lean.forward(to_device(x))
    assert to_host(full.backward(to_device(g))).shape == x.shape
    assert lean.backward(to_device(g)) is None
    for name, (_, grad) in full.params.items():
        np.testing.assert_array_equal(to_host(lean.params[name][1]), to_host(grad))
