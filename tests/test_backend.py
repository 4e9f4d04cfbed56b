"""The array backend: selection at import, DTYPE, transfers, seeding."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mpneuralnetwork
from mpneuralnetwork import DTYPE, ArrayType, get_backend, set_seed, to_device, to_host, xp
from mpneuralnetwork import backend as backend_module

FAKE_CUPY_DIR = Path(__file__).parent / "fake_cupy"

PROBE = """
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import mpneuralnetwork
print(mpneuralnetwork.xp.__name__)
print(len([w for w in caught if issubclass(w.category, RuntimeWarning)]))
for w in caught:
    print("WARNING:", w.category.__name__, w.message)
"""


def run_python(code: str, backend: str | None, pythonpath: list[Path] | None = None):
    """Run ``code`` in a fresh interpreter with MPNN_BACKEND set (or unset) and PYTHONPATH."""
    env = dict(os.environ)
    env.pop("MPNN_BACKEND", None)
    env.pop("PYTHONPATH", None)
    if backend is not None:
        env["MPNN_BACKEND"] = backend
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def no_cupy(tmp_path: Path) -> Path:
    """A directory whose ``cupy`` package fails to import, hiding any installed CuPy."""
    package = tmp_path / "cupy"
    package.mkdir()
    (package / "__init__.py").write_text('raise ImportError("no CUDA here (test stand-in)")\n')
    return tmp_path


def test_backend_matches_the_environment():
    requested = os.environ.get("MPNN_BACKEND", "numpy").strip().lower()
    expected = "cupy" if requested == "cupy" else "numpy"
    assert xp.__name__ == expected
    assert get_backend() is xp is mpneuralnetwork.xp is backend_module.xp


def test_numpy_by_default_in_a_fresh_interpreter():
    result = run_python(PROBE, backend=None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["numpy", "0"]


def test_dtype_and_array_type():
    assert DTYPE is np.float32
    assert np.dtype(DTYPE) == np.float32
    assert isinstance(to_device(np.zeros(2)), ArrayType)  # the backend's arrays
    assert isinstance(np.zeros(2), ArrayType)  # and NumPy's, on either backend
    if xp is np:
        assert ArrayType is np.ndarray


def test_to_device_and_to_host_round_trip():
    host = np.arange(6, dtype=np.float64).reshape(2, 3)
    device = to_device(host)
    assert isinstance(device, xp.ndarray)
    back = to_host(device)
    assert type(back) is np.ndarray
    assert back.dtype == np.float64  # the dtype is kept
    np.testing.assert_array_equal(back, host)
    from_list = to_device([[1.0, 2.0], [3.0, 4.0]])
    assert isinstance(from_list, xp.ndarray) and tuple(from_list.shape) == (2, 2)
    np.testing.assert_array_equal(to_host(from_list), [[1, 2], [3, 4]])
    assert to_device(device) is device  # already on the device: returned as it is
    f32 = to_host(to_device(np.ones(3, dtype=np.float32)))
    assert f32.dtype == np.float32


def test_to_host_of_host_data():
    host = np.ones(3)
    assert to_host(host) is host
    np.testing.assert_array_equal(to_host([1, 2, 3]), [1, 2, 3])
    assert to_host(2.5).shape == () and float(to_host(2.5)) == 2.5


def test_set_seed_makes_the_backend_random_state_repeat():
    set_seed(42)
    a = to_host(xp.random.standard_normal(5))
    b = to_host(xp.random.random_sample((2, 2)))
    set_seed(42)
    np.testing.assert_array_equal(to_host(xp.random.standard_normal(5)), a)
    np.testing.assert_array_equal(to_host(xp.random.random_sample((2, 2))), b)
    set_seed(43)
    assert not np.array_equal(to_host(xp.random.standard_normal(5)), a)


def test_numpy_seed_reproduces_the_library_on_numpy():
    if xp is not np:
        pytest.skip("numpy.random.seed drives the library only on the NumPy backend")
    np.random.seed(5)  # noqa: NPY002 - the global state is the point
    a = to_host(xp.random.standard_normal(4))
    np.random.seed(5)  # noqa: NPY002
    np.testing.assert_array_equal(to_host(xp.random.standard_normal(4)), a)


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True, None])
def test_set_seed_rejects_bad_seeds(seed):
    with pytest.raises(ValueError, match="seed"):
        set_seed(seed)


def test_cupy_requested_but_missing_falls_back_with_one_warning(no_cupy):
    result = run_python(PROBE, backend="cupy", pythonpath=[no_cupy])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["numpy", "1"], result.stdout
    assert "RuntimeWarning" in lines[2] and "CuPy" in lines[2] and "NumPy" in lines[2]
    assert len(lines) == 3  # nothing else printed


def test_cupy_fallback_does_not_print(no_cupy):
    result = run_python("import mpneuralnetwork", backend="CuPy", pythonpath=[no_cupy])
    assert result.returncode == 0
    assert result.stdout == ""
    assert "RuntimeWarning" in result.stderr


def test_backend_name_is_case_insensitive_and_uses_cupy():
    result = run_python(PROBE, backend=" CuPy ", pythonpath=[FAKE_CUPY_DIR])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["cupy", "0"]


def test_unknown_backend_warns_and_uses_numpy():
    result = run_python(PROBE, backend="tensorflow")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["numpy", "1"]
    assert "tensorflow" in lines[2]


@pytest.mark.parametrize("backend", [None, "numpy", "NumPy"])
def test_import_prints_nothing(backend):
    result = run_python("import mpneuralnetwork", backend=backend)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == ""


def test_import_on_cupy_prints_nothing():
    result = run_python("import mpneuralnetwork", backend="cupy", pythonpath=[FAKE_CUPY_DIR])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
