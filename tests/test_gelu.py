"""GELU and the error function it is built on: accuracy, derivatives, tails, PyTorch."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from helpers import check_gradients
from mpneuralnetwork import to_device, to_host
from mpneuralnetwork.activations import GELU, erf, normal_cdf

# A dense float64 grid, the interval boundaries of the approximations (0.46875 and 4
# for erf's argument), tiny and subnormal values, the tails and huge values.
_BOUNDARIES = [0.46875, 4.0, 27.0, 0.46875 * math.sqrt(2), 4.0 * math.sqrt(2)]
GRID = np.unique(
    np.concatenate(
        [
            np.linspace(-30.0, 30.0, 60001),
            np.linspace(-1.0, 1.0, 20001),
            [b + d for b in _BOUNDARIES for d in (-1e-12, 0.0, 1e-12)],
            [1e-300, 5e-324, 1e-8, 6.0, 26.5, 40.0, 1e10, 1e300, np.finfo(np.float64).max],
        ]
    )
)
GRID = np.concatenate([GRID, -GRID])


def test_erf_matches_math_erf_to_float64_rounding():
    got = to_host(erf(to_device(GRID)))
    expected = np.array([math.erf(v) for v in GRID])
    # a few units of 1e-16, absolute (the bound the docs state; near 0 the error is
    # absolute, not relative to erf)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15)
    away = np.abs(GRID) >= 0.1
    np.testing.assert_allclose(got[away], expected[away], rtol=4e-15, atol=0)
    assert to_host(erf(to_device(np.array([0.0, -0.0])))).tolist() == [0.0, 0.0]


def test_erf_matches_scipy():
    special = pytest.importorskip("scipy.special", reason="scipy is an optional reference")
    np.testing.assert_allclose(to_host(erf(to_device(GRID))), special.erf(GRID), atol=1e-15)


def test_normal_cdf_keeps_its_lower_tail():
    special = pytest.importorskip("scipy.special", reason="scipy is an optional reference")
    x = np.linspace(-37.0, 8.0, 9001)
    got = to_host(normal_cdf(to_device(x)))
    expected = special.ndtr(x)
    # relative, even at 1e-300: the rounding of z² = x²/2 bounds it, about x²·ε
    np.testing.assert_allclose(got, expected, rtol=2e-13, atol=0)


def test_erf_scalars_shapes_and_float32():
    assert float(to_host(erf(to_device(np.float64(0.5))))) == pytest.approx(math.erf(0.5), 1e-15)
    x = np.linspace(-5, 5, 24, dtype=np.float32).reshape(2, 3, 4)
    out = to_host(erf(to_device(x)))
    assert out.shape == x.shape and out.dtype == np.float32
    expected = np.array([math.erf(v) for v in x.ravel()]).reshape(x.shape)
    np.testing.assert_allclose(out, expected, atol=2e-7, rtol=0)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_against_pytorch(approximate):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference implementation")
    x = np.concatenate([np.linspace(-12.0, 12.0, 4001), GRID[np.abs(GRID) < 1e6]])
    layer = GELU(approximate)
    out = to_host(layer.forward(to_device(x)))
    g = np.random.default_rng(0).standard_normal(x.shape)
    dx = to_host(layer.backward(to_device(g)))
    t = torch.tensor(x, requires_grad=True)
    y = torch.nn.functional.gelu(t, approximate=approximate)
    y.backward(torch.tensor(g))
    np.testing.assert_allclose(out, y.detach().numpy(), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(dx, t.grad.numpy(), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_float32_against_pytorch(approximate):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference implementation")
    x = np.linspace(-8.0, 8.0, 1001, dtype=np.float32)
    layer = GELU(approximate)
    out = to_host(layer.forward(to_device(x)))
    dx = to_host(layer.backward(to_device(np.ones_like(x))))
    assert out.dtype == dx.dtype == np.float32
    t = torch.tensor(x.astype(np.float64), requires_grad=True)
    expected = torch.nn.functional.gelu(t, approximate=approximate)
    expected.sum().backward()
    np.testing.assert_allclose(out, expected.detach().numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dx, t.grad.numpy(), rtol=1e-6, atol=1e-6)


def test_gelu_exact_formula_values():
    points = [-3.0, -0.5, 0.0, 0.25, 2.0]
    layer = GELU()
    out = to_host(layer.forward(to_device(np.array(points))))
    dx = to_host(layer.backward(to_device(np.ones(len(points)))))

    def cdf(v: float) -> float:
        return 0.5 * math.erfc(-v / math.sqrt(2.0))

    np.testing.assert_allclose(out, [v * cdf(v) for v in points], rtol=1e-14, atol=1e-16)
    prime = [cdf(v) + v * math.exp(-v * v / 2) / math.sqrt(2 * math.pi) for v in points]
    np.testing.assert_allclose(dx, prime, rtol=1e-14, atol=1e-16)
    assert out[2] == 0.0 and dx[2] == pytest.approx(0.5, abs=1e-16)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 5)])
def test_gelu_gradients(approximate, shape):
    x = np.random.default_rng(1).standard_normal(shape) * 2.0
    assert check_gradients(GELU(approximate), x) == ["input"]


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_extreme_float32_inputs_are_finite_and_warning_free(approximate):
    top = np.finfo(np.float32).max
    x = np.array([-top, -1e10, -100.0, -9.0, 0.0, 9.0, 100.0, 1e10, top], dtype=np.float32)
    with warnings.catch_warnings(), np.errstate(all="raise", under="ignore"):
        warnings.simplefilter("error")
        layer = GELU(approximate)
        out = to_host(layer.forward(to_device(x)))
        dx = to_host(layer.backward(to_device(np.ones_like(x))))
    assert out.dtype == dx.dtype == np.float32
    assert np.isfinite(out).all() and np.isfinite(dx).all()
    np.testing.assert_array_equal(out[[0, 1, 2]], 0.0)
    np.testing.assert_array_equal(out[[6, 7, 8]], x[[6, 7, 8]])
    np.testing.assert_array_equal(dx[[0, 1, 2, 6, 7, 8]], [0, 0, 0, 1, 1, 1])
    assert out[4] == 0.0 and dx[4] == 0.5


def test_gelu_scalar_config_and_bad_argument():
    layer = GELU("tanh")
    assert layer.get_config() == {"type": "GELU", "approximate": "tanh"}
    assert GELU().get_config() == {"type": "GELU", "approximate": "none"}
    rebuilt = GELU(**{k: v for k, v in layer.get_config().items() if k != "type"})
    assert rebuilt.approximate == "tanh"
    out = to_host(GELU().forward(1.0))
    assert float(out) == pytest.approx(0.5 * (1 + math.erf(1 / math.sqrt(2))), rel=1e-15)
    with pytest.raises(ValueError, match=r"GELU.*approximate.*'sigmoid'"):
        GELU("sigmoid")


def chebyshev_coefficients_of_erfc() -> list[float]:
    """The derivation of the coefficients in the library (also on the Internals page).

    f(t) = log(e^(z²)·erfc(z) / y), y = (t + 1)/2, z = 2/y − 2, interpolated at the 64
    Chebyshev nodes of [−1, 1] with mpmath at 40 digits.
    """
    mp = pytest.importorskip("mpmath", reason="mpmath recomputes the coefficients").mp
    mp.dps = 40
    n = 64

    def f(t):
        y = (t + 1) / 2
        z = 2 / y - 2
        return mp.log(mp.erfc(z) * mp.exp(z * z) / y)

    angles = [mp.pi * (j + mp.mpf(1) / 2) / n for j in range(n)]
    values = [f(mp.cos(a)) for a in angles]
    pairs = list(zip(values, angles, strict=True))
    c = [2 * mp.fsum(v * mp.cos(k * a) for v, a in pairs) / n for k in range(n)]
    c[0] /= 2
    return [float(v) for v in c]


def test_the_erfc_coefficients_are_the_chebyshev_interpolation():
    from mpneuralnetwork.activations import _ERFC_CHEBYSHEV

    c = chebyshev_coefficients_of_erfc()
    assert list(_ERFC_CHEBYSHEV) == c[:28]
    assert sum(abs(v) for v in c[28:]) < 4e-18  # the float64 series' tail
    assert sum(abs(v) for v in c[12:]) < 1.3e-8  # the float32 series' tail
