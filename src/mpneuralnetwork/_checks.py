"""Argument checks shared by the library: each raises ValueError naming the argument."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

Shape = tuple[int, ...]


def is_int(value: Any) -> bool:
    """True for Python and NumPy integers, False for bools."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_number(value: Any) -> bool:
    """True for real Python and NumPy numbers, False for bools."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def positive_int(owner: str, name: str, value: Any) -> int:
    """Check that ``value`` is an integer >= 1 and return it as an int."""
    if not is_int(value) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive integer; got {value!r}")
    return int(value)


def non_negative_int(owner: str, name: str, value: Any) -> int:
    """Check that ``value`` is an integer >= 0 and return it as an int."""
    if not is_int(value) or value < 0:
        raise ValueError(f"{owner}: {name} must be a non-negative integer; got {value!r}")
    return int(value)


def number_in(
    owner: str,
    name: str,
    value: Any,
    low: float,
    high: float,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Check that ``value`` is a finite number in the interval and return it as a float."""
    ok = is_number(value) and np.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high
        )
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{owner}: {name} must be a number in {interval}; got {value!r}")
    return float(value)


def choice(owner: str, name: str, value: Any, options: Iterable[str]) -> str:
    """Check that ``value`` is one of ``options``."""
    options = tuple(options)
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{owner}: {name} must be one of {options}; got {value!r}")
    return value


def boolean(owner: str, name: str, value: Any) -> bool:
    """Check that ``value`` is a bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{owner}: {name} must be True or False; got {value!r}")
    return bool(value)


def shape(owner: str, name: str, value: Any) -> Shape | None:
    """Normalize a shape: None stays None, an int becomes a 1-tuple; every size must be >= 1."""
    if value is None:
        return None
    if is_int(value):
        value = (value,)
    if not isinstance(value, (tuple, list)) or not value or not all(is_int(v) for v in value):
        raise ValueError(
            f"{owner}: {name} must be a positive int or a tuple of positive ints; got {value!r}"
        )
    if any(v < 1 for v in value):
        raise ValueError(f"{owner}: {name} sizes must all be >= 1; got {tuple(value)!r}")
    return tuple(int(v) for v in value)
