"""The pool of threads (mpneuralnetwork.threads) and the layers' work split across it."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

from helpers import check_gradients, to_float64
from mpneuralnetwork import threads, to_device, to_host, xp
from mpneuralnetwork.activations import ReLU
from mpneuralnetwork.layers import (
    AveragePooling2D,
    BatchNormalization,
    BatchNormalization2D,
    Convolutional,
    Dense,
    Flatten,
    MaxPooling2D,
)

ON_NUMPY = xp.__name__ == "numpy"


class FakeBlas:
    """Stands for a threadpoolctl library controller: records the thread counts it is set to."""

    def __init__(self, num_threads: int = 4) -> None:
        self.num_threads = num_threads
        self.calls: list[int] = []

    def set_num_threads(self, count: int) -> None:
        self.calls.append(count)
        self.num_threads = count


@pytest.fixture
def fake_blas(monkeypatch):
    """Two threads and a fake BLAS: `parallel` does not depend on the machine's BLAS."""
    blas = FakeBlas()
    monkeypatch.setenv("MPNN_NUM_THREADS", "2")
    monkeypatch.setattr(threads, "_libraries", [blas])
    return blas


# ------------------------------------------------------------------ thread count
def test_thread_count_follows_the_environment(monkeypatch):
    monkeypatch.setenv("MPNN_NUM_THREADS", "3")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.thread_count() == 3
    monkeypatch.delenv("MPNN_NUM_THREADS")
    affinity = getattr(__import__("os"), "sched_getaffinity", None)
    if affinity is not None:  # Linux: the CPUs this process may run on
        assert threads.thread_count() == len(affinity(0))
    assert threads.thread_count() >= 1


def test_thread_count_follows_omp_num_threads_without_its_own_variable(monkeypatch):
    # A Dask worker's nanny sets OMP_NUM_THREADS=1, joblib's workers their share:
    # the pool keeps to it, and MPNN_NUM_THREADS still wins.
    monkeypatch.delenv("MPNN_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.thread_count() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert threads.thread_count() == 5
    monkeypatch.setenv("MPNN_NUM_THREADS", "2")
    assert threads.thread_count() == 2
    monkeypatch.delenv("MPNN_NUM_THREADS")
    for ignored in ("0", "two", "4,2"):  # OpenMP's own syntax (nested levels) or junk
        monkeypatch.setenv("OMP_NUM_THREADS", ignored)
        assert threads.thread_count() >= 1


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_thread_count_refuses_a_bad_environment_value(monkeypatch, value):
    monkeypatch.setenv("MPNN_NUM_THREADS", value)
    message = rf"MPNN_NUM_THREADS must be an integer >= 1; got '{value}'"
    with pytest.raises(ValueError, match=message):
        threads.thread_count()


# ------------------------------------------------------------------ parallel
@pytest.mark.skipif(not ON_NUMPY, reason="the pool is off on the CuPy backend (checked below)")
def test_parallel_sets_blas_to_one_thread_and_restores_it(fake_blas):
    assert not threads.active()
    with threads.parallel():
        assert threads.active()
        assert fake_blas.num_threads == 1
        with threads.parallel():  # re-entrant: the inner exit keeps the pool
            pass
        assert threads.active() and fake_blas.num_threads == 1
        with threads.blas_threads():  # the recurrent layers' loops
            assert fake_blas.num_threads == 4
        assert fake_blas.num_threads == 1
    assert not threads.active()
    assert fake_blas.calls == [1, 4, 1, 4]


@pytest.mark.skipif(not ON_NUMPY, reason="the pool is off on the CuPy backend (checked below)")
def test_parallel_restores_blas_when_the_work_raises(fake_blas):
    with pytest.raises(KeyError), threads.parallel():
        raise KeyError("boom")
    assert not threads.active()
    assert fake_blas.num_threads == 4


def test_parallel_is_off_with_one_thread_without_blas_control_and_on_a_gpu(monkeypatch):
    blas = FakeBlas()
    monkeypatch.setattr(threads, "_libraries", [blas])
    monkeypatch.setenv("MPNN_NUM_THREADS", "1")
    with threads.parallel():
        assert not threads.active()
    monkeypatch.setenv("MPNN_NUM_THREADS", "2")
    monkeypatch.setattr(threads, "_libraries", None)
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # as if it were not installed
    with threads.parallel():
        assert not threads.active()
    assert blas.calls == []
    if not ON_NUMPY:
        monkeypatch.setattr(threads, "_libraries", [blas])
        with threads.parallel():
            assert not threads.active()
        assert blas.calls == []


# ------------------------------------------------------------------ shares and run
@pytest.mark.skipif(not ON_NUMPY, reason="the pool is off on the CuPy backend")
def test_shares_cut_large_work_only_and_cover_the_range(fake_blas):
    assert threads.shares(10, 1e12) == [(0, 10)]  # outside `parallel`
    with threads.parallel():
        assert threads.shares(10, 1e12) == [(0, 5), (5, 10)]
        assert threads.shares(7, 1e12) == [(0, 4), (4, 7)]
        assert threads.shares(1, 1e12) == [(0, 1)]
        assert threads.shares(10, threads.MIN_WORK - 1) == [(0, 10)]


@pytest.mark.skipif(not ON_NUMPY, reason="the pool is off on the CuPy backend")
def test_run_uses_the_pool_keeps_order_errors_and_error_state(fake_blas):
    def where(start, stop):
        return start, stop, threading.current_thread().name, np.geterr()["over"]

    with threads.parallel(), np.errstate(over="ignore"):
        first, second = threads.run(where, 10, 1e12)
    assert first[:2] == (0, 5) and second[:2] == (5, 10)
    assert first[2] == threading.main_thread().name and second[2].startswith("mpnn")
    assert first[3] == second[3] == "ignore"  # the caller's numpy.errstate reaches the pool

    def fail(start, stop):
        if start:
            raise RuntimeError("in the pool")
        return start

    with threads.parallel(), pytest.raises(RuntimeError, match="in the pool"):
        threads.run(fail, 10, 1e12)


@pytest.mark.parametrize("shape", [(7, 3, 2), (2, 3, 7)])  # split by rows, by columns
def test_matmul_and_total_split_across_threads(shape, fake_blas, monkeypatch):
    rows, depth, columns = shape
    rng = np.random.default_rng(12)
    a_host, b_host = rng.standard_normal((rows, depth)), rng.standard_normal((depth, columns))
    a, b = to_device(a_host), to_device(b_host)
    monkeypatch.setattr(threads, "MIN_WORK", 0)
    with threads.parallel():
        shares = threads.shares(max(rows, columns), 1)
        assert len(shares) == (2 if ON_NUMPY else 1)
        np.testing.assert_allclose(to_host(threads.matmul(a, b)), a_host @ b_host, rtol=1e-14)
        summed = threads.total(lambda start, stop: a[:, start:stop] @ b[start:stop], depth, 1)
        np.testing.assert_allclose(to_host(summed), a_host @ b_host, rtol=1e-14)
        assert threads.total(lambda start, stop: stop - start, 9, 1) == 9


# ------------------------------------------------------------------ the layers, split
@pytest.fixture
def split_everything(fake_blas, monkeypatch):
    """Inside `parallel`, with every piece of work large enough to be split."""
    monkeypatch.setattr(threads, "MIN_WORK", 0)
    with threads.parallel():
        yield


# (output channels, stride): the input gradient as a convolution (O <= C), col2im on
# wide rows (O > C, stride 1), col2im with stride 2.
@pytest.mark.parametrize(("depth", "stride"), [(2, 1), (4, 1), (2, 2)])
def test_conv_split_across_threads_gives_the_loops_values_and_exact_gradients(
    depth, stride, split_everything
):
    assert threads.active() == ON_NUMPY
    layer = to_float64(Convolutional(depth, 3, (3, 6, 7), "he", padding="same", stride=stride))
    x = np.random.default_rng(7).standard_normal((5, 3, 6, 7))  # shares of 3 and 2 samples
    out = to_host(layer.forward(to_device(x)))
    kernels, biases = to_host(layer.kernels), to_host(layer.biases)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    h_out, w_out = out.shape[2:]
    expected = np.zeros_like(out) + biases.reshape(1, -1, 1, 1)
    for u in range(3):
        for v in range(3):
            window = padded[:, :, u : u + stride * h_out : stride, v : v + stride * w_out : stride]
            expected += np.einsum("ncij,oc->noij", window, kernels[:, :, u, v])
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    assert check_gradients(layer, x) == ["input", "kernels", "biases"]


def test_dense_split_across_threads_gives_exact_gradients(split_everything):
    layer = to_float64(Dense(3, 4, "he"))
    x = np.random.default_rng(9).standard_normal((7, 4))
    assert check_gradients(layer, x) == ["input", "weights", "biases"]
    expected = x @ to_host(layer.weights) + to_host(layer.biases)
    np.testing.assert_allclose(to_host(layer.forward(to_device(x))), expected, rtol=1e-12)


@pytest.mark.skipif(not ON_NUMPY, reason="the pool is off on the CuPy backend")
def test_model_calls_run_inside_parallel_and_leave_blas_as_it_was(fake_blas):
    from mpneuralnetwork.callbacks import Callback
    from mpneuralnetwork.losses import MSE
    from mpneuralnetwork.model import Model

    seen = []

    class Watch(Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append((threads.active(), fake_blas.num_threads))

    model = Model([Convolutional(2, 3, (1, 4, 4), "he"), Flatten(), Dense(3, 8, "he")], MSE())
    x = np.random.default_rng(0).standard_normal((8, 1, 4, 4)).astype(np.float32)
    y = np.random.default_rng(1).standard_normal((8, 3)).astype(np.float32)
    model.train(x, y, epochs=1, batch_size=4, verbose=0, callbacks=[Watch()], auto_evaluation=0)
    assert seen == [(True, 1), (True, 1)]
    model.predict(x)
    model.evaluate(x, y)
    assert not threads.active()
    assert fake_blas.num_threads == 4
    assert fake_blas.calls == [1, 4, 1, 4, 1, 4]
    # a model without such a layer keeps BLAS's threads
    Model([Dense(3, 4, "he")], MSE()).train(
        x.reshape(8, -1)[:, :4], y, epochs=1, batch_size=4, verbose=0, auto_evaluation=0
    )
    assert fake_blas.calls == [1, 4, 1, 4, 1, 4]


def _float64(layer, input_shape):
    layer.build(input_shape)
    return to_float64(layer)


def _serial(make, x, g, training=True):
    """Forward output, backward result and parameter gradients of a fresh layer, no pool."""
    layer = make()
    out = to_host(layer.forward(to_device(x), training=training))
    dx = to_host(layer.backward(to_device(g)))
    return out, dx, {name: to_host(grad).copy() for name, (_, grad) in layer.params.items()}


@pytest.mark.parametrize(
    ("make", "shape", "training"),
    [
        (lambda: MaxPooling2D(2), (5, 3, 6, 6), True),  # two candidates: boolean indices
        (lambda: MaxPooling2D(3, 2), (5, 3, 7, 7), True),  # overlapping, int16 indices
        (lambda: AveragePooling2D(2, 1), (5, 3, 5, 5), True),
        (lambda: _float64(BatchNormalization2D(), (3, 4, 4)), (5, 3, 4, 4), True),
        (lambda: _float64(BatchNormalization2D(), (3, 4, 4)), (5, 3, 4, 4), False),
        (lambda: _float64(BatchNormalization(), (3,)), (5, 3), True),
        (ReLU, (5, 3, 4, 4), True),
    ],
)
@pytest.mark.parametrize("channel_major", [False, True])
def test_element_wise_layers_split_across_threads_match_one_thread(
    make, shape, training, channel_major, fake_blas, monkeypatch
):
    # Without ties (distinct values): the pool must give the one-thread numbers, keep the
    # memory order, and pass the finite-difference check.
    rng = np.random.default_rng(10)
    x = (rng.permutation(np.arange(np.prod(shape), dtype=np.float64)).reshape(shape) + 0.5) / 7 - 3
    if channel_major and len(shape) == 4:
        x = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    layer = make()
    if isinstance(layer, BatchNormalization) and not training:
        layer.forward(to_device(x))  # running statistics that are not the initial ones
    out_shape = to_host(layer.forward(to_device(x), training=training)).shape
    g = rng.standard_normal(out_shape)
    reference = make()
    if isinstance(layer, BatchNormalization):
        reference.forward(to_device(x), training=False)  # builds it; no statistics change
        reference.state = {key: value.copy() for key, value in layer.state.items()}
    expected = _serial(lambda: reference, x, g, training)
    device_x = to_device(x)
    if channel_major and len(shape) == 4:  # CuPy copies a host array into C order
        device_x = xp.ascontiguousarray(device_x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    monkeypatch.setattr(threads, "MIN_WORK", 0)
    with threads.parallel():
        assert threads.active() == ON_NUMPY
        out = layer.forward(device_x, training=training)
        dx = layer.backward(to_device(g))
        if len(shape) == 4:
            assert (out.strides[1] > out.strides[0]) == channel_major
            assert (dx.strides[1] > dx.strides[0]) == channel_major
        np.testing.assert_allclose(to_host(out), expected[0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(to_host(dx), expected[1], rtol=1e-12, atol=1e-12)
        for name, (_, grad) in layer.params.items():
            np.testing.assert_allclose(to_host(grad), expected[2][name], rtol=1e-12)
        if isinstance(layer, BatchNormalization) and not training:
            return  # the finite differences would move the running statistics
        check_gradients(layer, x, training=training)


@pytest.mark.parametrize("optimizer", ["SGD", "RMSprop", "Adam"])
def test_optimizer_blocks_split_across_threads_update_bit_for_bit(
    optimizer, fake_blas, monkeypatch
):
    from mpneuralnetwork import optimizers

    monkeypatch.setattr(optimizers, "BLOCK", 7)  # 5 blocks of a 4x8 weight, the last short
    layers = [to_float64(Dense(8, 4, "he")) for _ in range(2)]
    layers[1].weights[...] = layers[0].weights
    layers[1].biases[...] = layers[0].biases
    rng = np.random.default_rng(11)
    for layer in layers:
        layer.weights_gradient = to_device(rng.standard_normal((4, 8)))
        layer.biases_gradient = to_device(rng.standard_normal((1, 8)))
    layers[1].weights_gradient[...] = layers[0].weights_gradient
    layers[1].biases_gradient[...] = layers[0].biases_gradient
    serial, split = getattr(optimizers, optimizer)(), getattr(optimizers, optimizer)()
    if optimizers.BLOCK is not None:  # None on the GPU: one update per parameter
        for _ in range(2):
            serial.step([layers[0]])
        monkeypatch.setattr(threads, "MIN_WORK", 0)
        with threads.parallel():
            assert threads.shares(5, 100 * 32) == ([(0, 3), (3, 5)] if ON_NUMPY else [(0, 5)])
            for _ in range(2):
                split.step([layers[1]])
        np.testing.assert_array_equal(to_host(layers[1].weights), to_host(layers[0].weights))
        np.testing.assert_array_equal(to_host(layers[1].biases), to_host(layers[0].biases))
