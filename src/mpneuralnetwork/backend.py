"""The array backend: one module ``xp`` that is NumPy on the CPU or CuPy on a GPU.

The backend is chosen once, at import time, from the environment variable
``MPNN_BACKEND`` (``numpy`` by default, ``cupy`` for the GPU, case-insensitive).
If CuPy is asked for but cannot be imported, the library falls back to NumPy and
says so once with a `RuntimeWarning`.

Every array operation of the library goes through ``xp``; `to_host` is the
only way back to NumPy.
"""

from __future__ import annotations

import os
import warnings
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

__all__ = ["DTYPE", "ArrayType", "get_backend", "set_seed", "to_device", "to_host", "xp"]


def _select_backend() -> ModuleType:
    requested = os.environ.get("MPNN_BACKEND", "numpy").strip().lower()
    if requested in ("", "numpy"):
        return np
    if requested == "cupy":
        try:
            import cupy
        except Exception as exc:  # ImportError, or a CUDA library that fails to load
            warnings.warn(
                f"MPNN_BACKEND=cupy but CuPy could not be imported ({exc}); "
                "mpneuralnetwork falls back to NumPy on the CPU.",
                RuntimeWarning,
                stacklevel=3,
            )
            return np
        return cupy
    warnings.warn(
        f"MPNN_BACKEND must be 'numpy' or 'cupy'; got {requested!r}. Using NumPy.",
        RuntimeWarning,
        stacklevel=3,
    )
    return np


xp: Any = _select_backend()
"""The active array module: `numpy`, or `cupy` with ``MPNN_BACKEND=cupy``.

Chosen once, when the package is first imported. Library code does all its array
work through it: ``xp.zeros``, ``xp.exp``, ``xp.random``...
"""

DTYPE: type[np.float32] = np.float32
"""The dtype of every computation: ``numpy.float32``, on both backends."""

if TYPE_CHECKING:
    ArrayType: TypeAlias = np.ndarray
    """A NumPy or a CuPy array, for annotations.

    ``numpy.ndarray | cupy.ndarray`` at run time on the CuPy backend, ``numpy.ndarray``
    on the NumPy backend and for type checkers (which cannot know the backend chosen
    at import time).
    """
else:
    ArrayType = np.ndarray if xp is np else np.ndarray | xp.ndarray


def get_backend() -> ModuleType:
    """Return the active array module (`numpy` or `cupy`)."""
    return xp


def to_device(a: Any) -> Any:
    """Return ``a`` (a list, scalar, NumPy or CuPy array) as an array of the active backend.

    The dtype is kept; arrays already on the device are returned as they are.
    """
    if xp is np and not isinstance(a, np.ndarray) and hasattr(a, "get"):
        a = a.get()  # a CuPy array while the backend is NumPy
    return xp.asarray(a)


def to_host(a: Any) -> np.ndarray:
    """Return ``a`` (any array, list or scalar) as a `numpy.ndarray` on the host."""
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "get"):  # CuPy arrays copy back with .get()
        return np.asarray(a.get())
    return np.asarray(a)


def set_seed(seed: int) -> None:
    """Seed the backend's global random state.

    Weight initialization, dropout masks, shuffling and the automatic validation
    split all draw from ``xp.random``, so two runs seeded alike repeat exactly on
    the same backend.

    Args:
        seed: A non-negative integer.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"set_seed: seed must be a non-negative integer; got {seed!r}")
    xp.random.seed(int(seed))
    if xp is not np:
        np.random.seed(int(seed))
