"""One epoch of batches: read on demand (`BatchIterator`) or ahead by a thread
(`PrefetchIterator`). The loaders of `mpneuralnetwork.data` return them."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["Batch", "BatchIterator", "PrefetchIterator"]

#: ``(x_batch, y_batch)``; ``y_batch`` is None for a loader without targets.
Batch = tuple[Any, Any]


class BatchIterator:
    """One epoch of batches, read on demand in the calling thread.

    ``next()`` returns the next ``(x_batch, y_batch)``. `close` ends the epoch early
    (it is also called at the end of the epoch, on an error, by ``with``, and when the
    iterator is garbage-collected, e.g. after ``break``): it closes the batch
    generator, which closes a user's generator (its ``finally`` clauses run) and drops
    its references to the data.

    Args:
        batches: The epoch's batches (a generator).
    """

    def __init__(self, batches: Iterator[Batch]) -> None:
        self._batches: Iterator[Batch] | None = batches

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> Batch:
        if self._batches is None:
            raise StopIteration
        try:
            return next(self._batches)
        except BaseException:  # StopIteration included: the epoch is over either way
            self.close()
            raise

    def close(self) -> None:
        """Stop reading; idempotent."""
        batches, self._batches = self._batches, None
        close = getattr(batches, "close", None)
        if close is not None:
            close()

    @property
    def alive(self) -> bool:
        """True while a reading thread runs (never, here)."""
        return False

    def __enter__(self) -> BatchIterator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # nothing useful to do during garbage collection
            pass


class PrefetchIterator(BatchIterator):
    """One epoch of batches read ahead by a daemon thread.

    The thread keeps up to ``prefetch`` ready batches in a bounded `queue.Queue`; an
    error raised while reading reaches the consumer at the batch where it happened,
    with its traceback. `close` shuts the thread down in this order: set the *done*
    event, empty the queue so that a blocked ``put`` returns, join the thread; the
    thread closes the batch generator on its way out.

    Args:
        batches: The epoch's batches (a generator, advanced in the reading thread).
        prefetch: Batches read ahead, >= 1.
    """

    #: Seconds between two looks at the done event of a thread blocked on a full queue.
    POLL = 0.05

    def __init__(self, batches: Iterator[Batch], prefetch: int) -> None:
        super().__init__(batches)
        self._batches = None  # the thread's alone from now on
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=prefetch)
        self._done = threading.Event()
        # The thread gets the generator, the queue and the event, never `self`: an
        # iterator dropped half-read can then be garbage-collected, and closed.
        self._thread: threading.Thread | None = threading.Thread(
            target=_produce,
            args=(batches, self._queue, self._done),
            name="mpneuralnetwork-prefetch",
            daemon=True,
        )
        self._thread.start()

    def __next__(self) -> Batch:
        if self._done.is_set():
            raise StopIteration
        item = self._queue.get()
        if item is _END:
            self.close()
            raise StopIteration
        if isinstance(item, _Failure):
            self.close()
            raise item.error
        return item

    def close(self) -> None:
        """Stop reading: done event, queue emptied, thread joined; idempotent."""
        if self._done.is_set():
            return
        self._done.set()
        if self._thread is not None:
            _drain(self._queue)
            self._thread.join()
            _drain(self._queue)  # what the thread put between the two looks
            self._thread = None

    @property
    def alive(self) -> bool:
        """True while the reading thread runs."""
        return self._thread is not None and self._thread.is_alive()


class _Failure:
    """An exception raised in the reading thread, on its way to the consumer."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()  # the sentinel after the last batch


def _produce(batches: Iterator[Batch], out: queue.Queue[Any], done: threading.Event) -> None:
    """Body of the reading thread: put every batch, then the end sentinel, into ``out``."""
    try:
        for batch in batches:
            if not _put(out, batch, done):
                return
        _put(out, _END, done)
    except BaseException as error:  # every failure must reach the consumer
        _put(out, _Failure(error), done)
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def _put(out: queue.Queue[Any], item: Any, done: threading.Event) -> bool:
    """Put ``item``, waiting while the queue is full; False if ``done`` is set meanwhile."""
    while not done.is_set():
        try:
            out.put(item, timeout=PrefetchIterator.POLL)
            return True
        except queue.Full:
            continue
    return False


def _drain(q: queue.Queue[Any]) -> None:
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return
