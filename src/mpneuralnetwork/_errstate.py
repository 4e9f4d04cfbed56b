"""Floating-point warnings stay inside the library's public calls.

A diverging run overflows (``inf``) and then produces NaN; NumPy reports each such
operation with a ``RuntimeWarning`` ("overflow encountered in matmul", ...). The
library checks the values it computes and reports a divergence itself (the loss
becomes inf or NaN, training stops and restores finite weights), so those warnings
would only repeat its report, from deep inside. `quiet_floating_point` silences them
for the duration of one public call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import numpy

__all__ = ["quiet_floating_point"]

F = TypeVar("F", bound=Callable[..., Any])


def quiet_floating_point(method: F) -> F:
    """Run ``method`` with NumPy's floating-point error reports turned off.

    ``numpy.errstate`` only governs NumPy operations: on CuPy, whose kernels never
    warn, it changes nothing but the host-side NumPy work of the call. It is restored
    when the call returns or raises, and it never hides the library's own warnings.
    """

    @functools.wraps(method)
    def quiet(*args: Any, **kwargs: Any) -> Any:
        with numpy.errstate(all="ignore"):
            return method(*args, **kwargs)

    return quiet  # type: ignore[return-value]
