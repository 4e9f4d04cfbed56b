"""The CuPy stand-in of tests/fake_cupy, and the whole suite run on it."""

from __future__ import annotations

import copy
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import ON_STANDIN
from mpneuralnetwork import to_device, to_host, xp

ROOT = Path(__file__).resolve().parent.parent
FAKE_CUPY_DIR = Path(__file__).resolve().parent / "fake_cupy"
#: The suite re-run on the stand-in: everything but the examples and the notebook, which
#: start their own processes, the documentation pages, the real-data trainings, and this
#: test itself. The pages are written for a CPU user, and the outputs they show are those
#: of the NumPy backend:
#: they print the backend's name and call NumPy functions on the arrays they get back
#: (which CuPy, and so the stand-in, refuses); the library code they run is covered on
#: the stand-in by the rest of the suite.
STANDIN_RUN = [
    "tests",
    "--ignore=tests/test_examples.py",
    "--ignore=tests/test_notebook.py",
    "--ignore=tests/test_docs.py",
    # Whole trainings to an accuracy (47 s on the stand-in): the library code they run is
    # covered here by the gradient and training-step tests of every layer and optimizer.
    "--ignore=tests/test_real_data.py",
    "--deselect=tests/test_fake_cupy.py::test_the_suite_passes_on_the_standin",
]


def _load_standin():
    """The stand-in module; a private copy when the library does not run on it.

    The copy is not registered as ``cupy`` in ``sys.modules``, so nothing else sees it.
    """
    if ON_STANDIN:
        return xp
    spec = importlib.util.spec_from_file_location(
        "fake_cupy_standin", FAKE_CUPY_DIR / "cupy" / "__init__.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cp = _load_standin()


# ========================================================================= the wall
def test_numpy_cannot_see_device_arrays():
    a = cp.asarray(np.arange(4.0))
    with pytest.raises(TypeError):
        np.asarray(a)
    with pytest.raises(TypeError):
        np.array(a)
    with pytest.raises(TypeError):
        np.sum(a)  # an array function
    with pytest.raises(TypeError):
        np.exp(a)  # a ufunc
    with pytest.raises(TypeError):
        np.testing.assert_array_equal(a, np.arange(4.0))


def test_mixing_with_numpy_arrays_raises():
    a = cp.asarray(np.arange(4.0))
    host = np.arange(4.0)
    for op in (
        lambda: a + host,
        lambda: host + a,
        lambda: a * host,
        lambda: host @ a,
        lambda: a < host,
        lambda: cp.maximum(a, host),
        lambda: cp.concatenate([a, host]),
    ):
        with pytest.raises(TypeError):
            op()
    with pytest.raises(TypeError):
        a[...] = host


def test_get_and_asnumpy_return_numpy_copies():
    a = cp.asarray(np.arange(6.0).reshape(2, 3))
    host = a.get()
    assert type(host) is np.ndarray
    np.testing.assert_array_equal(host, np.arange(6.0).reshape(2, 3))
    host[0, 0] = 100.0
    assert float(a[0, 0]) == 0.0  # a copy, not a view
    assert type(cp.asnumpy(a)) is np.ndarray
    np.testing.assert_array_equal(cp.asnumpy(a), a.get())


def test_asarray_copies_host_data_and_keeps_device_arrays():
    host = np.ones(3)
    a = cp.asarray(host)
    assert isinstance(a, cp.ndarray) and not isinstance(a, np.ndarray)
    host[0] = 5.0
    assert float(a[0]) == 1.0
    assert cp.asarray(a) is a
    assert cp.asarray(a, dtype=np.float32).dtype == np.float32
    assert cp.asarray([1, 2]).dtype == np.asarray([1, 2]).dtype
    assert cp.array(a) is not a


# ===================================================================== the imitation
def test_operators_and_attributes():
    x = np.arange(1.0, 7.0).reshape(2, 3)
    a = cp.asarray(x)
    checks = {
        "add": (a + 1, x + 1),
        "radd": (1 + a, 1 + x),
        "sub": (a - a, x - x),
        "rsub": (2.0 - a, 2.0 - x),
        "mul": (a * np.float32(2), x * 2),
        "div": (a / 2, x / 2),
        "rdiv": (1 / a, 1 / x),
        "pow": (a**2, x**2),
        "rpow": (2**a, 2**x),
        "matmul": (a @ a.T, x @ x.T),
        "neg": (-a, -x),
        "abs": (abs(-a), x),
        "eq": (a == 2.0, x == 2.0),
        "ge": (a >= 3, x >= 3),
        "lt": (a < 3, x < 3),
        "floordiv": (a // 2, x // 2),
        "mod": (a % 2, x % 2),
    }
    for name, (got, expected) in checks.items():
        assert isinstance(got, cp.ndarray), name
        np.testing.assert_array_equal(got.get(), expected, err_msg=name)
    assert a.shape == (2, 3) and a.ndim == 2 and a.size == 6 and len(a) == 2
    assert a.dtype == np.float64 and a.itemsize == 8 and a.nbytes == 48
    assert a.strides == x.strides and a.flags.c_contiguous
    assert a.T.shape == (3, 2)


def test_in_place_operators_keep_identity():
    a = cp.asarray(np.ones((2, 2)))
    before = a
    a += 1
    a *= cp.asarray(np.full((2, 2), 3.0))
    a -= 1
    a /= 5
    assert a is before
    np.testing.assert_array_equal(a.get(), np.ones((2, 2)))


def test_indexing_and_views():
    a = cp.asarray(np.arange(12.0).reshape(3, 4))
    row = a[1]
    assert isinstance(row, cp.ndarray)
    row[...] = 0  # a view, as in CuPy
    np.testing.assert_array_equal(a.get()[1], np.zeros(4))
    a[:, 0] = cp.asarray(np.array([7.0, 8.0, 9.0]))
    a[a > 10] = -1
    np.testing.assert_array_equal(a.get()[:, 0], [7, 8, 9])
    assert (a.get() <= 10).all()
    a[0, 1] += 5
    assert float(a[0, 1]) == 6.0
    element = a[2, 2]
    assert isinstance(element, cp.ndarray) and element.shape == ()  # 0-d, like CuPy
    assert [r.shape for r in a] == [(4,)] * 3


def test_scalar_conversions():
    one = cp.asarray(np.array([2.5]))
    assert float(one) == 2.5 and int(one) == 2 and bool(one)
    assert f"{cp.asarray(np.float64(0.125)):.2f}" == "0.12"
    with pytest.raises(TypeError):
        float(cp.asarray(np.ones(2)))
    with pytest.raises(ValueError):
        bool(cp.asarray(np.ones(2)))


def test_methods_delegate_and_wrap():
    x = np.arange(6.0).reshape(2, 3)
    a = cp.asarray(x)
    total = a.sum()
    assert isinstance(total, cp.ndarray) and total.shape == () and float(total) == 15.0
    for got, expected in (
        (a.reshape(3, 2), x.reshape(3, 2)),
        (a.transpose(1, 0), x.transpose(1, 0)),
        (a.mean(axis=0), x.mean(axis=0)),
        (a.max(axis=1, keepdims=True), x.max(axis=1, keepdims=True)),
        (a.min(), x.min()),
        (a.argmax(axis=1), x.argmax(axis=1)),
        (a.astype(np.float32), x.astype(np.float32)),
        (a.copy(), x),
        (a.ravel(), x.ravel()),
        (a.dot(a.T), x.dot(x.T)),
        (a.any(), x.any()),
        (a.all(), x.all()),
    ):
        assert isinstance(got, cp.ndarray)
        np.testing.assert_array_equal(got.get(), expected)
        assert got.get().dtype == np.asarray(expected).dtype
    b = a.copy()
    b.fill(3.0)
    np.testing.assert_array_equal(b.get(), np.full((2, 3), 3.0))
    assert a.tolist() == x.tolist() and a[0, 0].item() == 0.0
    assert isinstance(copy.deepcopy(a), cp.ndarray)
    np.testing.assert_array_equal(copy.deepcopy(a).get(), x)


def test_module_functions_wrap_and_unwrap():
    a = cp.asarray(np.array([[1.0, -2.0], [3.0, -4.0]]))
    assert cp.ndarray is type(a)
    assert cp.float32 is np.float32 and cp.float64 is np.float64
    for got, expected in (
        (cp.exp(a), np.exp(a.get())),
        (cp.maximum(a, 0.0), np.maximum(a.get(), 0.0)),
        (cp.where(a > 0, a, 0.0), np.where(a.get() > 0, a.get(), 0.0)),
        (cp.concatenate([a, a], axis=0), np.concatenate([a.get(), a.get()])),
        (cp.stack((a, a)), np.stack((a.get(), a.get()))),
        (cp.zeros((2, 3), dtype=cp.float32), np.zeros((2, 3), dtype=np.float32)),
        (cp.zeros_like(a), np.zeros_like(a.get())),
        (cp.sum(a, axis=1), a.get().sum(axis=1)),
        (cp.take_along_axis(a, cp.asarray(np.array([[1], [0]])), axis=1), [[-2.0], [3.0]]),
        (cp.ascontiguousarray(a.T), a.get().T),
        (cp.broadcast_to(a[:1], (3, 2)), np.broadcast_to(a.get()[:1], (3, 2))),
    ):
        assert isinstance(got, cp.ndarray)
        np.testing.assert_array_equal(got.get(), expected)
    assert cp.ndim(a) == 2 and cp.ndim(1.0) == 0
    assert isinstance(cp.sqrt(a * a).sum(), cp.ndarray)


def test_random_uses_numpys_global_state():
    np.random.seed(11)  # noqa: NPY002 - the global state is the point
    expected = np.random.standard_normal(4)  # noqa: NPY002
    cp.random.seed(11)
    got = cp.random.standard_normal(4)
    assert isinstance(got, cp.ndarray)
    np.testing.assert_array_equal(got.get(), expected)
    sample = cp.random.random_sample((2, 3))
    assert isinstance(sample, cp.ndarray) and sample.shape == (2, 3)
    assert cp.random.normal(0.0, 1.0, (5,)).shape == (5,)


def test_as_strided():
    a = cp.asarray(np.arange(10.0))
    s = a.strides[0]
    windows = cp.lib.stride_tricks.as_strided(a, shape=(4, 3), strides=(2 * s, s))
    assert isinstance(windows, cp.ndarray)
    np.testing.assert_array_equal(windows.get(), [[0, 1, 2], [2, 3, 4], [4, 5, 6], [6, 7, 8]])


def test_library_transfers_accept_standin_arrays():
    a = cp.asarray(np.arange(3.0))
    host = to_host(a)  # .get()
    assert type(host) is np.ndarray
    np.testing.assert_array_equal(host, [0, 1, 2])
    if ON_STANDIN:
        assert to_device(a) is a
    elif xp is np:  # a "CuPy" array while the backend is NumPy comes back to the host
        device = to_device(a)
        assert type(device) is np.ndarray
        np.testing.assert_array_equal(device, [0, 1, 2])
    # On the real CuPy a stand-in array is a foreign object, like any other host type.


# ============================================================ the suite on the stand-in
@pytest.mark.skipif(
    ON_STANDIN,
    reason="already running on the CuPy stand-in: this test launches the suite on the "
    "stand-in itself, and running it again from there would recurse",
)
def test_the_suite_passes_on_the_standin():
    env = dict(os.environ)
    env["MPNN_BACKEND"] = "cupy"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(FAKE_CUPY_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *STANDIN_RUN],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        print(result.stdout[-20000:])
        print(result.stderr[-5000:])
    assert result.returncode == 0, "the suite fails on the CuPy stand-in (output above)"
    assert "passed" in result.stdout
