"""Pytest configuration shared by the whole suite."""

from __future__ import annotations

import os

# scikit-learn runs its array-API estimator check (on the wrappers) only when SciPy was
# imported with this set; it must be set before anything imports SciPy.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np
import pytest

from mpneuralnetwork import set_seed


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Every test starts from the same global random state (the backend's, and NumPy's)."""
    set_seed(1234)


@pytest.fixture
def rng() -> np.random.Generator:
    """A private NumPy generator for test data (it does not touch the global state)."""
    return np.random.default_rng(0)
