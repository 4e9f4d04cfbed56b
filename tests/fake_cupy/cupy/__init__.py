"""A CuPy stand-in for the tests: NumPy arrays behind a wall that NumPy cannot cross.

With ``PYTHONPATH=tests/fake_cupy MPNN_BACKEND=cupy`` the library imports this module as
``cupy`` and runs on it. It imitates CuPy where CuPy bites: a device array cannot be
turned into a NumPy array implicitly (``numpy.asarray(a)`` raises ``TypeError``), NumPy
functions and ufuncs refuse it, and mixing it with a ``numpy.ndarray`` in an operator
or a module function raises ``TypeError``. ``a.get()`` and :func:`asnumpy` are the way
back to the host; :func:`asarray` / :func:`array` the way there.

It is deliberately stricter than CuPy in places (no NumPy array is accepted anywhere
but in ``asarray``/``array``), so code that runs on it does not lean on NumPy
interoperation that CuPy may not offer.
"""

from __future__ import annotations

import operator
import types
from collections.abc import Callable, Iterator
from typing import Any

import numpy as _np

#: Marks the stand-in, so tests can tell it from a real CuPy.
IS_FAKE = True

__version__ = "0.0.0+fake"


def _refuse_numpy(value: Any) -> None:
    raise TypeError(
        f"Unsupported type {type(value)!r}: the CuPy stand-in does not mix NumPy arrays "
        "with device arrays; move them with cupy.asarray first"
    )


def _unwrap(value: Any) -> Any:
    """Device arrays to their NumPy data, recursively in lists, tuples and dicts."""
    if isinstance(value, ndarray):
        return value._data
    if isinstance(value, _np.ndarray):
        _refuse_numpy(value)
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_unwrap(v) for v in value)
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    return value


def _wrap(value: Any) -> Any:
    """NumPy arrays and NumPy scalars to device arrays (CuPy returns 0-d arrays, not scalars)."""
    if isinstance(value, _np.ndarray):
        return ndarray(value)
    if isinstance(value, _np.generic):
        return ndarray(_np.asarray(value))
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    return value


def _wrap_function(func: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    call.__name__ = getattr(func, "__name__", "function")
    call.__doc__ = getattr(func, "__doc__", None)
    return call


def _binary(op: Callable[[Any, Any], Any], reflected: bool = False) -> Callable[..., Any]:
    def method(self: ndarray, other: Any) -> Any:
        other = _unwrap(other)
        if reflected:
            return _wrap(op(other, self._data))
        return _wrap(op(self._data, other))

    return method


def _inplace(op: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    def method(self: ndarray, other: Any) -> ndarray:
        result = op(self._data, _unwrap(other))
        if result is not self._data:  # NumPy always works in place; keep the contract anyway
            self._data[...] = result
        return self

    return method


def _unary(op: Callable[[Any], Any]) -> Callable[..., Any]:
    def method(self: ndarray) -> Any:
        return _wrap(op(self._data))

    return method


class ndarray:
    """A device array: a NumPy array that NumPy itself is not allowed to see."""

    __slots__ = ("_data",)

    # NumPy must not treat this as an array: ufuncs and array functions refuse it.
    __array_ufunc__ = None
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, data: Any) -> None:
        if isinstance(data, ndarray):
            data = data._data
        if not isinstance(data, _np.ndarray):
            data = _np.asarray(data)
        object.__setattr__(self, "_data", data)

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. "
            "Please use `.get()` to construct a NumPy array explicitly."
        )

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        return NotImplemented  # NumPy then raises TypeError

    # ------------------------------------------------------------ host transfer
    def get(self, stream: Any = None, out: Any = None) -> _np.ndarray:
        """A NumPy copy of the data on the host."""
        if out is not None:
            out[...] = self._data
            return out  # type: ignore[no-any-return]
        return self._data.copy()

    # --------------------------------------------------------------- attributes
    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape

    @shape.setter
    def shape(self, value: tuple[int, ...]) -> None:
        self._data.shape = value

    @property
    def dtype(self) -> _np.dtype[Any]:
        return self._data.dtype

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def size(self) -> int:
        return self._data.size

    @property
    def itemsize(self) -> int:
        return self._data.itemsize

    @property
    def nbytes(self) -> int:
        return self._data.nbytes

    @property
    def strides(self) -> tuple[int, ...]:
        return self._data.strides

    @property
    def flags(self) -> Any:
        return self._data.flags

    @property
    def T(self) -> ndarray:
        return ndarray(self._data.T)

    @property
    def real(self) -> ndarray:
        return ndarray(self._data.real)

    @property
    def imag(self) -> ndarray:
        return ndarray(self._data.imag)

    def __getattr__(self, name: str) -> Any:
        """Every other NumPy method, with its arguments unwrapped and its result wrapped."""
        if name.startswith("__") or name == "_data":
            raise AttributeError(name)
        attribute = getattr(self._data, name)
        if callable(attribute):
            return _wrap_function(attribute)
        return _wrap(attribute)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "shape":
            self._data.shape = value
            return
        raise AttributeError(f"cannot set attribute {name!r} of a device array")

    # ----------------------------------------------------------------- explicit methods
    def astype(self, dtype: Any, copy: bool = True, **kwargs: Any) -> ndarray:
        return ndarray(self._data.astype(dtype, copy=copy, **kwargs))

    def copy(self, order: str = "C") -> ndarray:
        return ndarray(self._data.copy(order=order))

    def fill(self, value: Any) -> None:
        self._data.fill(_unwrap(value))

    def item(self) -> Any:
        return self._data.item()

    def tolist(self) -> Any:
        return self._data.tolist()

    # ------------------------------------------------------------------ indexing
    def __getitem__(self, key: Any) -> Any:
        return _wrap(self._data[_unwrap(key)])

    def __setitem__(self, key: Any, value: Any) -> None:
        self._data[_unwrap(key)] = _unwrap(value)

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[Any]:
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        for i in range(len(self._data)):
            yield _wrap(self._data[i])

    # --------------------------------------------------------------- conversions
    def _scalar(self, kind: type) -> Any:
        if self._data.size != 1:
            raise TypeError(
                f"only size-1 arrays can be converted to Python scalars; got shape {self.shape}"
            )
        return kind(self._data.reshape(()).item())

    def __float__(self) -> float:
        return self._scalar(float)  # type: ignore[no-any-return]

    def __int__(self) -> int:
        return self._scalar(int)  # type: ignore[no-any-return]

    def __complex__(self) -> complex:
        return self._scalar(complex)  # type: ignore[no-any-return]

    def __bool__(self) -> bool:
        return bool(self._data)

    def __format__(self, spec: str) -> str:
        return format(self._data, spec)

    def __repr__(self) -> str:
        return "fake_cupy." + repr(self._data)

    def __str__(self) -> str:
        return str(self._data)

    # ----------------------------------------------------------------- operators
    __add__ = _binary(operator.add)
    __radd__ = _binary(operator.add, reflected=True)
    __sub__ = _binary(operator.sub)
    __rsub__ = _binary(operator.sub, reflected=True)
    __mul__ = _binary(operator.mul)
    __rmul__ = _binary(operator.mul, reflected=True)
    __truediv__ = _binary(operator.truediv)
    __rtruediv__ = _binary(operator.truediv, reflected=True)
    __floordiv__ = _binary(operator.floordiv)
    __rfloordiv__ = _binary(operator.floordiv, reflected=True)
    __mod__ = _binary(operator.mod)
    __rmod__ = _binary(operator.mod, reflected=True)
    __pow__ = _binary(operator.pow)
    __rpow__ = _binary(operator.pow, reflected=True)
    __matmul__ = _binary(operator.matmul)
    __rmatmul__ = _binary(operator.matmul, reflected=True)
    __and__ = _binary(operator.and_)
    __rand__ = _binary(operator.and_, reflected=True)
    __or__ = _binary(operator.or_)
    __ror__ = _binary(operator.or_, reflected=True)
    __xor__ = _binary(operator.xor)
    __rxor__ = _binary(operator.xor, reflected=True)
    __lshift__ = _binary(operator.lshift)
    __rshift__ = _binary(operator.rshift)

    __iadd__ = _inplace(operator.iadd)
    __isub__ = _inplace(operator.isub)
    __imul__ = _inplace(operator.imul)
    __itruediv__ = _inplace(operator.itruediv)
    __ifloordiv__ = _inplace(operator.ifloordiv)
    __imod__ = _inplace(operator.imod)
    __ipow__ = _inplace(operator.ipow)
    __iand__ = _inplace(operator.iand)
    __ior__ = _inplace(operator.ior)
    __ixor__ = _inplace(operator.ixor)

    __eq__ = _binary(operator.eq)  # type: ignore[assignment]
    __ne__ = _binary(operator.ne)  # type: ignore[assignment]
    __lt__ = _binary(operator.lt)
    __le__ = _binary(operator.le)
    __gt__ = _binary(operator.gt)
    __ge__ = _binary(operator.ge)

    __neg__ = _unary(operator.neg)
    __pos__ = _unary(operator.pos)
    __abs__ = _unary(operator.abs)
    __invert__ = _unary(operator.invert)

    def __copy__(self) -> ndarray:
        return ndarray(self._data.copy())

    def __deepcopy__(self, memo: dict[int, Any]) -> ndarray:
        return ndarray(self._data.copy())

    def __reduce__(self) -> Any:
        return (ndarray, (self._data,))


class _Namespace(types.ModuleType):
    """A NumPy submodule whose functions take and return device arrays."""

    def __init__(self, name: str, wrapped: types.ModuleType) -> None:
        super().__init__(name)
        self._wrapped = wrapped

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_wrapped":
            raise AttributeError(name)
        return _translate(f"{self.__name__}.{name}", getattr(self._wrapped, name))


def _translate(qualified_name: str, attribute: Any) -> Any:
    if isinstance(attribute, types.ModuleType):
        return _Namespace(qualified_name, attribute)
    if isinstance(attribute, type) or isinstance(attribute, _np.dtype):
        return attribute  # dtypes (float32, ...) and other classes as they are
    if callable(attribute):
        return _wrap_function(attribute)
    return _wrap(attribute)


# ------------------------------------------------------------------- module level
def asarray(a: Any, dtype: Any = None, order: Any = None) -> ndarray:
    """An array on the "device": device arrays as they are (or cast), anything else copied."""
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == _np.dtype(dtype) else a.astype(dtype)
    host = _np.asarray(a, dtype=dtype, order=order)
    # As CuPy (seen on an H100): a host array in neither C nor Fortran order arrives in C order.
    contiguous = host.flags.c_contiguous or host.flags.f_contiguous
    return ndarray(_np.array(host, order="K" if contiguous else "C"))


def array(a: Any, dtype: Any = None, copy: bool = True, order: Any = "K", ndmin: int = 0) -> Any:
    """A new device array from anything (a host-to-device copy for NumPy input)."""
    if isinstance(a, ndarray):
        a = a._data
    elif isinstance(a, (list, tuple)):
        a = _np.asarray(_unwrap_loose(a))
    return ndarray(_np.array(a, dtype=dtype, copy=copy, order=order, ndmin=ndmin))


def _unwrap_loose(value: Any) -> Any:
    if isinstance(value, ndarray):
        return value._data
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap_loose(v) for v in value)
    return value


def asnumpy(a: Any, stream: Any = None, out: Any = None) -> _np.ndarray:
    """A NumPy copy of a device array; other inputs through numpy.asarray."""
    if isinstance(a, ndarray):
        return a.get(out=out)
    result = _np.asarray(a)
    if out is not None:
        out[...] = result
        return out  # type: ignore[no-any-return]
    return result


def get_array_module(*args: Any) -> types.ModuleType:
    """This module if any argument is a device array, else NumPy."""
    import sys

    if any(isinstance(a, ndarray) for a in args):
        return sys.modules[__name__]
    return _np


random = _Namespace(f"{__name__}.random", _np.random)
lib = _Namespace(f"{__name__}.lib", _np.lib)
linalg = _Namespace(f"{__name__}.linalg", _np.linalg)


def __getattr__(name: str) -> Any:
    """Any other NumPy name: functions unwrap their arguments and wrap their results."""
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        attribute = getattr(_np, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    return _translate(f"{__name__}.{name}", attribute)
