"""A small pool of threads for the CPU: large products and copies split across the cores.

NumPy runs element-wise work and copies on one core, and hands matrix products to
its BLAS, which runs them on all cores but keeps its worker threads spinning for
about 0.1 s after each product, so a thread of ours started meanwhile finds no free
core. Inside `parallel` the library therefore takes the cores itself: BLAS is set
to one thread, and the layers split their large work (a convolution's blocks of
samples, a large dense product) into one share per thread, each a copy and a
product that NumPy runs without the GIL. Small work stays on the calling thread:
handing a share to a thread costs 30 to 100 µs.

`Model.train`, `Model.evaluate` and `Model.predict` enter `parallel` for a model
with a layer whose ``splits_work`` is True (convolutions, attention). A model of dense
layers keeps BLAS's own threads, faster for products alone, and the recurrent
layers take them back for their loops of small products (`blas_threads`).

The thread count is the number of CPUs this process may run on
(``os.sched_getaffinity``); the environment variable ``MPNN_NUM_THREADS`` overrides
it, and 1 turns the pool off. Without it, ``OMP_NUM_THREADS`` sets the count: the
per-process thread limit that a Dask worker's nanny and joblib's workers set for
BLAS, so that several workers on one machine keep to their share of the cores.
The pool is off on the CuPy backend (a GPU has its own parallelism) and without
the optional package ``threadpoolctl``, which sets the BLAS thread count
(``pip install mpneuralnetwork[threads]``): a pool beside a spinning BLAS is slower
than no pool.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .backend import xp

__all__ = [
    "MIN_WORK",
    "active",
    "blas_threads",
    "matmul",
    "parallel",
    "run",
    "shares",
    "thread_count",
    "total",
]

T = TypeVar("T")

#: Work below this many floating-point operations (or copied values × 100) stays on
#: the calling thread: a share must take long enough to repay waking a thread.
MIN_WORK = 20_000_000

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_threads = 1  # threads in use while `parallel` is active
_depth = 0
_blas: list[tuple[Any, int]] = []  # (BLAS library controller, its own count), while active
_libraries: list[Any] | None = None  # the BLAS libraries threadpoolctl found, once


def thread_count() -> int:
    """Threads the pool uses: ``MPNN_NUM_THREADS``, else ``OMP_NUM_THREADS``, else the
    CPUs this process may use.

    ``OMP_NUM_THREADS`` is the thread limit of the process's BLAS as well: Dask's
    workers (``OMP_NUM_THREADS=1``) and joblib's (``inner_max_num_threads``) get it,
    so a parallel sweep does not run several pools of all the cores at once. A value
    that is not an integer >= 1 is left to OpenMP and ignored here.

    Raises:
        ValueError: ``MPNN_NUM_THREADS`` is not an integer >= 1.
    """
    value = os.environ.get("MPNN_NUM_THREADS", "").strip()
    if value:
        try:
            count = int(value)
        except ValueError:
            count = 0
        if count < 1:
            raise ValueError(f"MPNN_NUM_THREADS must be an integer >= 1; got {value!r}")
        return count
    limit = os.environ.get("OMP_NUM_THREADS", "").strip()
    if limit.isdigit() and int(limit) >= 1:
        return int(limit)
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def _blas_libraries() -> list[Any]:
    """threadpoolctl's controllers of the loaded BLAS libraries ([] without it), found once."""
    global _libraries
    if _libraries is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            return []
        _libraries = list(ThreadpoolController().select(user_api="blas").lib_controllers)
    return _libraries


def _set_blas_threads(single: bool) -> None:
    """BLAS on one thread, or on each library's own count (one C call each, ~1 µs)."""
    for library, own in _blas:
        library.set_num_threads(1 if single else own)


def active() -> bool:
    """Whether work is split across threads now (inside `parallel`, with a pool)."""
    return _depth > 0 and _threads > 1


@contextlib.contextmanager
def parallel() -> Iterator[None]:
    """Split large work across `thread_count` threads, BLAS single-threaded, until exit.

    Re-entrant; a no-op on the CuPy backend, with one thread, or without
    ``threadpoolctl``. BLAS gets its thread count back on exit. The pool serves one
    model call at a time: two threads of the user training two models at once would
    set the BLAS thread count against each other.
    """
    global _pool, _pool_size, _threads, _depth, _blas
    if _depth == 0:
        count = thread_count() if xp.__name__ == "numpy" else 1
        libraries = _blas_libraries() if count > 1 else []
        _threads = count if libraries else 1
        if _threads > 1:
            _blas = [(library, library.num_threads) for library in libraries]
            _set_blas_threads(single=True)
            if _pool_size != _threads - 1:
                _pool = ThreadPoolExecutor(_threads - 1, thread_name_prefix="mpnn")
                _pool_size = _threads - 1
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _blas:
            _set_blas_threads(single=False)
            _blas = []


@contextlib.contextmanager
def blas_threads() -> Iterator[None]:
    """Give BLAS its own threads back inside `parallel` (for many small products)."""
    if not _blas:
        yield
        return
    _set_blas_threads(single=False)
    try:
        yield
    finally:
        _set_blas_threads(single=True)


def shares(count: int, work: float) -> list[tuple[int, int]]:
    """``[(start, stop), ...]``: ``range(count)`` cut into one share per thread.

    One share (no split) outside `parallel`, or when ``work`` (floating-point
    operations, or copied values × 100) is below `MIN_WORK`.
    """
    parts = min(count, _threads) if active() and work >= MIN_WORK else 1
    step = -(-count // parts) if count else 1
    return [(start, min(count, start + step)) for start in range(0, count, step)] or [(0, 0)]


def run(task: Callable[[int, int], T], count: int, work: float) -> list[T]:
    """``[task(start, stop) for each share of range(count)]``, the shares on the threads.

    The first share runs on the calling thread, the others on the pool; the
    results come back in order, and an exception in any share is raised here.
    """
    parts = shares(count, work)
    if len(parts) == 1 or _pool is None:  # _pool exists whenever `active` holds
        return [task(start, stop) for start, stop in parts]
    # Each share runs in a copy of the caller's context: NumPy's error state
    # (``numpy.errstate``) is a context variable, and a pool thread has its own.
    futures = [
        _pool.submit(contextvars.copy_context().run, task, start, stop) for start, stop in parts[1:]
    ]
    first = task(*parts[0])
    return [first, *(future.result() for future in futures)]


def total(task: Callable[[int, int], Any], count: int, work: float) -> Any:
    """The sum of `run`'s results: for a reduction whose shares give partial sums.

    The partial sums are added in share order, into the first one.
    """
    first, *others = run(task, count, work)
    for other in others:
        first += other
    return first


def matmul(a: Any, b: Any) -> Any:
    """``a @ b`` of 2-D arrays, cut along the longer side of the result when large.

    Rows of ``a`` or columns of ``b`` go to the shares: each thread then runs a
    product of the full depth, the shape BLAS runs at speed.
    """
    rows, columns = a.shape[0], b.shape[1]
    out = xp.empty((rows, columns), dtype=xp.result_type(a.dtype, b.dtype))

    def by_rows(start: int, stop: int) -> None:
        xp.matmul(a[start:stop], b, out=out[start:stop])

    def by_columns(start: int, stop: int) -> None:
        xp.matmul(a, b[:, start:stop], out=out[:, start:stop])

    work = 2 * rows * a.shape[1] * columns
    if rows >= columns:
        run(by_rows, rows, work)
    else:
        run(by_columns, columns, work)
    return out
