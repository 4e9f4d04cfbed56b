"""Where batches come from: arrays, memory-mapped files, datasets and generators.

A loader hands the training loop ``len(loader)`` batches per epoch; iterating over it
yields ``(x_batch, y_batch)`` pairs already checked, cast to `DTYPE` and moved to the
device with `to_device`, so only one batch at a time has to fit in memory (host or GPU).

- `DataLoader` reads samples by index from NumPy arrays, memory-mapped arrays
  (`DataLoader.from_npy`) or a `Dataset` object. Shuffling draws a permutation of the
  indices per epoch and never copies the data; the indices of one batch are read in
  increasing order, so a memory-mapped file is read forward.
- `GeneratorLoader` takes the batches a generator function makes on the fly
  (augmentation), a given number of them per epoch.

With ``prefetch > 0`` a background thread prepares the next batches while the model
computes on the current one (`PrefetchIterator`; `BatchIterator` reads on demand).
The thread ends when the epoch ends, when the consumer stops early (``break``, an
exception, Ctrl-C) or when the iterator is closed or garbage-collected.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from typing import Any, Protocol, runtime_checkable

import numpy as np

from . import _checks
from ._batches import Batch, BatchIterator, PrefetchIterator
from ._inputs import all_finite
from .backend import DTYPE, to_device, to_host, xp

__all__ = [
    "BatchIterator",
    "DataLoader",
    "Dataset",
    "GeneratorLoader",
    "Loader",
    "PrefetchIterator",
]

#: At most this many batches of arrays are read at once (then split into views) ...
READ_BATCHES = 16
#: ... and at most this many bytes: the Python work per batch shrinks, the memory not much.
READ_BYTES = 2 * 2**20


@runtime_checkable
class Dataset(Protocol):
    """A data set that is not one array: ``len(dataset)`` samples, read by index.

    ``dataset[indices]`` receives a sorted 1-D ``numpy.int64`` array of sample indices
    and returns ``(x_batch, y_batch)``: arrays (or array-likes) with ``len(indices)``
    samples each, e.g. x of shape (B, *input_shape) and y of shape (B, *output_shape).
    ``y_batch`` may be None for inputs alone (prediction). With prefetching it is called
    from a background thread.
    """

    def __len__(self) -> int: ...

    def __getitem__(self, indices: np.ndarray) -> tuple[Any, Any]: ...


# ======================================================================= the loaders
class Loader:
    """What the training loop reads: ``len(loader)`` batches per epoch.

    ``iter(loader)`` starts an epoch and returns a `BatchIterator` of ``(x_batch,
    y_batch)`` device arrays in `DTYPE`. Whatever an epoch draws from the global
    random state (the shuffling permutation) is drawn in the calling thread when the
    epoch starts, so reading ahead in a thread never changes the random sequence the
    model sees (dropout masks draw from the same state).

    Args:
        prefetch: Batches read ahead by a background thread, >= 0 (0: none).
    """

    def __init__(self, prefetch: int = 2) -> None:
        self.prefetch = _checks.non_negative_int(type(self).__name__, "prefetch", prefetch)
        # Per-sample shapes (x, y) every batch must have; learned from the first
        # batch when the source does not declare them.
        self._sample_shapes: tuple[tuple[int, ...], tuple[int, ...] | None] | None = None
        # True for device arrays in DTYPE checked whole already (see _checked_arrays).
        self._trusted = False

    def __len__(self) -> int:
        raise NotImplementedError

    def __iter__(self) -> BatchIterator:
        if self.prefetch == 0:
            return BatchIterator(self._epoch())
        return PrefetchIterator(self._epoch(), self.prefetch)

    @property
    def sample_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...] | None] | None:
        """``(x_shape, y_shape)`` of one sample (``y_shape`` None without targets).

        Known from the start for arrays; for a dataset or a generator, once a batch
        has been read (None before).
        """
        return self._sample_shapes

    @property
    def has_targets(self) -> bool:
        """False when the batches come without targets (as far as is known)."""
        return self._sample_shapes is None or self._sample_shapes[1] is not None

    def in_order(self, batch_size: int | None = None) -> Loader:
        """A loader giving the same samples once, in a fixed order (for inference)."""
        raise NotImplementedError

    def _epoch(self) -> Iterator[Batch]:
        """The batches of one epoch; draws its randomness before returning."""
        raise NotImplementedError

    def _ready(self, number: int, x: Any, y: Any, expected: int | None, index: Any) -> Batch:
        """Check one batch, cast it to DTYPE and move it to the device.

        Args:
            number: 1-based number of the batch in its epoch.
            x: Inputs (B, *sample_shape).
            y: Targets (B, ...) or None.
            expected: The number of samples the batch must hold, if known.
            index: The samples read (a slice or indices), for messages; or None.
        """
        if self._trusted:  # arrays checked whole and moved to the device by Model.train
            return x, y

        def name() -> str:  # built only for an error: it costs as much as the checks
            where = "" if index is None else _where(index)
            return f"{type(self).__name__}: batch {number} of {len(self)}{where}"

        x = _batch_array(x, name, "x")
        y = None if y is None else _batch_array(y, name, "y")
        n = x.shape[0]
        if expected is not None and n != expected:
            raise ValueError(
                f"{name()}: x must hold {expected} samples; got shape {tuple(x.shape)}"
            )
        if y is not None and y.shape[0] != n:
            raise ValueError(
                f"{name()}: x and y must hold as many samples; got {n} and {y.shape[0]}"
            )
        if n == 0:
            raise ValueError(f"{name()}: the batch holds no samples")
        shapes = (tuple(x.shape[1:]), None if y is None else tuple(y.shape[1:]))
        if self._sample_shapes is None:
            self._sample_shapes = shapes
        elif shapes != self._sample_shapes:
            want_x, want_y = self._sample_shapes
            raise ValueError(
                f"{name()}: every batch must have x of shape {_batch_shape(want_x)} and "
                f"{'no y' if want_y is None else f'y of shape {_batch_shape(want_y)}'} like the "
                f"first; got x {tuple(x.shape)} and "
                f"{'no y' if y is None else f'y {tuple(y.shape)}'}"
            )
        x = to_device(x).astype(DTYPE, copy=False)
        if not all_finite(x):
            raise ValueError(f"{name()}: x contains NaN or infinite values")
        if y is not None:
            y = to_device(y).astype(DTYPE, copy=False)
            if not all_finite(y):
                raise ValueError(f"{name()}: y contains NaN or infinite values")
        return x, y


class DataLoader(Loader):
    """Mini-batches read by index from arrays, memory-mapped arrays or a `Dataset`.

    ``X`` and ``y`` may be NumPy arrays, memory-mapped arrays
    (``numpy.load(path, mmap_mode="r")``, ``numpy.memmap``) or backend arrays; or ``X``
    is one `Dataset` object (``__len__`` and ``__getitem__(indices) -> (x_batch,
    y_batch)``) and ``y`` is None. Nothing is copied at construction: a batch is read
    when it is needed.

    Each epoch (each ``iter(loader)``) draws a permutation of the sample indices when
    ``shuffle`` is True: from the backend's global random state
    (``xp.random.permutation``, so ``numpy.random.seed`` makes runs repeat) when
    ``seed`` is None, else from the loader's own generator seeded with ``seed``. The
    indices of one batch are sorted before they are read.

    Args:
        X: Inputs (N, *input_shape), or a `Dataset`.
        y: Targets (N, *output_shape), or None (a dataset, or inputs alone).
        batch_size: Samples per batch, >= 1.
        shuffle: Draw a new order every epoch; False reads the samples in order.
        drop_last: Leave out the last batch when it is smaller than ``batch_size``.
        prefetch: Batches read ahead by a background thread, >= 0 (0: none).
        seed: Seed of the loader's own shuffling generator (needs ``shuffle=True``);
            None draws from the global random state.

    Raises:
        ValueError: For an argument out of range, arrays whose sample counts differ,
            or non-numeric arrays.
        TypeError: For an ``X`` that is neither an array nor a `Dataset`.

    Example:
        >>> loader = DataLoader(X, y, batch_size=64)      # doctest: +SKIP
        >>> model.train(loader, epochs=5)                 # doctest: +SKIP
    """

    def __init__(
        self,
        X: Any,
        y: Any = None,
        batch_size: int = 32,
        shuffle: bool = True,
        drop_last: bool = False,
        prefetch: int = 2,
        seed: int | None = None,
    ) -> None:
        super().__init__(prefetch)
        self._x, self._y, self._dataset = _sources(X, y)
        self._size = len(self._dataset) if self._dataset is not None else int(self._x.shape[0])
        if self._dataset is None:
            self._sample_shapes = (
                tuple(self._x.shape[1:]),
                None if self._y is None else tuple(self._y.shape[1:]),
            )
        #: Indices of the samples this loader reads (sorted, but for the kept part of a
        #: `split`, which is only read shuffled), or None for all of them.
        self._indices: np.ndarray | None = None
        self._configure(batch_size, shuffle, drop_last, prefetch, seed)

    def _configure(
        self, batch_size: int, shuffle: bool, drop_last: bool, prefetch: int, seed: int | None
    ) -> None:
        """Check and set the options (shared by the constructor and `subset`)."""
        self.prefetch = _checks.non_negative_int("DataLoader", "prefetch", prefetch)
        self.batch_size = _checks.positive_int("DataLoader", "batch_size", batch_size)
        self.shuffle = _checks.boolean("DataLoader", "shuffle", shuffle)
        self.drop_last = _checks.boolean("DataLoader", "drop_last", drop_last)
        if seed is not None:
            seed = _checks.non_negative_int("DataLoader", "seed", seed)
            if not self.shuffle:
                raise ValueError(
                    "DataLoader: seed only applies with shuffle=True; got shuffle=False"
                )
        self.seed = seed
        self._rng = None if seed is None else np.random.default_rng(seed)
        if self.num_samples == 0:
            raise ValueError("DataLoader: the data hold no samples")
        if len(self) == 0:
            raise ValueError(
                f"DataLoader: drop_last=True with {self.num_samples} samples and "
                f"batch_size={self.batch_size} leaves no batch"
            )

    # ------------------------------------------------------------ construction
    @classmethod
    def from_npy(
        cls,
        x_path: str | os.PathLike[str],
        y_path: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> DataLoader:
        """A loader over ``.npy`` files opened as memory maps (nothing read at once).

        Args:
            x_path: The inputs, an array (N, *input_shape) saved with ``numpy.save``.
            y_path: The targets (N, *output_shape), or None.
            **kwargs: ``batch_size``, ``shuffle``, ``drop_last``, ``prefetch``, ``seed``.

        Returns:
            A `DataLoader` reading the files with ``numpy.load(path, mmap_mode="r")``.
        """
        x = _load_npy("x_path", x_path)
        y = None if y_path is None else _load_npy("y_path", y_path)
        return cls(x, y, **kwargs)

    @classmethod
    def _checked_arrays(cls, x: Any, y: Any, batch_size: int) -> DataLoader:
        """A loader over device arrays in DTYPE whose values are already checked.

        ``Model.train`` checks in-memory arrays whole and moves them to the device once;
        their batches then skip the per-batch checks. Not for user data.
        """
        loader = cls(x, y, batch_size, prefetch=0)
        loader._trusted = True
        return loader

    def subset(self, indices: Any, **options: Any) -> DataLoader:
        """A loader over some of this loader's samples; the data are not copied.

        Args:
            indices: 1-D integer positions among this loader's samples, in
                ``[0, num_samples)`` (for a subset of a subset, positions in the
                subset). They are sorted: a subset lists its samples in increasing order.
            **options: ``batch_size``, ``shuffle``, ``drop_last``, ``prefetch`` or
                ``seed`` to change; the others are kept.

        Returns:
            A new `DataLoader` sharing the arrays (or the dataset) of this one.
        """
        positions = _index_array(indices, self.num_samples)
        chosen = positions if self._indices is None else self._indices[positions]
        return self._copy(np.sort(chosen), options)

    def in_order(self, batch_size: int | None = None) -> DataLoader:
        """The same samples in their order, unshuffled, the last smaller batch kept.

        Args:
            batch_size: Samples per batch; None keeps this loader's.
        """
        options: dict[str, Any] = {"shuffle": False, "drop_last": False, "seed": None}
        if batch_size is not None:
            options["batch_size"] = batch_size
        indices = None if self._indices is None else np.sort(self._indices)
        return self._copy(indices, options)

    def split(self, fraction: float) -> tuple[DataLoader, DataLoader]:
        """Hold a random ``fraction`` of the samples out (for validation), by index.

        The held-out samples are drawn like one shuffle: from the global random state
        (``xp.random.permutation(n)``), or from the loader's generator with a seed.

        Args:
            fraction: Share of the samples held out, in (0, 1).

        Returns:
            ``(kept, held_out)``: two subsets; ``held_out`` is unshuffled; ``in_order``
            lists the samples of either in increasing order.

        Raises:
            ValueError: If the fraction holds out no sample.
        """
        fraction = _checks.number_in(
            "DataLoader.split", "fraction", fraction, 0.0, 1.0, low_open=True, high_open=True
        )
        n = self.num_samples
        n_out = int(n * fraction)
        if n_out == 0:  # int() rounds down, so a fraction below 1 always keeps one
            raise ValueError(f"DataLoader.split: fraction={fraction} of {n} samples holds out none")
        order = self._permutation(n)
        held_out = self.subset(order[:n_out], shuffle=False, drop_last=False, seed=None)
        # The kept samples stay in the order drawn: with the epoch's permutation over
        # them, each batch holds the samples Model.train drew before loaders existed.
        kept = order[n_out:] if self._indices is None else self._indices[order[n_out:]]
        return self._copy(kept, {}), held_out

    def _copy(self, indices: np.ndarray | None, options: dict[str, Any]) -> DataLoader:
        unknown = set(options) - {"batch_size", "shuffle", "drop_last", "prefetch", "seed"}
        if unknown:
            raise ValueError(f"DataLoader: unknown option(s) {sorted(unknown)}")
        settings = {
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
            "prefetch": self.prefetch,
            "seed": None if self._rng is None else int(self._rng.integers(2**63)),
            **options,
        }
        if not settings["shuffle"]:
            settings["seed"] = None
        new = DataLoader.__new__(DataLoader)
        new._x, new._y, new._dataset, new._size = self._x, self._y, self._dataset, self._size
        new._sample_shapes, new._trusted = self._sample_shapes, self._trusted
        new._indices = indices
        new._configure(**settings)
        return new

    # ------------------------------------------------------------- properties
    @property
    def num_samples(self) -> int:
        """Samples this loader reads per epoch (before ``drop_last``)."""
        return self._size if self._indices is None else int(self._indices.size)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def __repr__(self) -> str:
        source = "dataset" if self._dataset is not None else "arrays"
        return (
            f"DataLoader({source}, samples={self.num_samples}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, prefetch={self.prefetch}, "
            f"seed={self.seed})"
        )

    # ---------------------------------------------------------------- reading
    def _permutation(self, n: int) -> np.ndarray:
        if self._rng is not None:
            return self._rng.permutation(n)
        return to_host(xp.random.permutation(n))

    def _epoch(self) -> Iterator[Batch]:
        n = self.num_samples
        order = self._permutation(n) if self.shuffle else None  # drawn now, in this thread
        return self._read(order, n)

    def _read(self, order: np.ndarray | None, n: int) -> Iterator[Batch]:
        total = len(self)
        per_read = self._batches_per_read()
        for first in range(0, total, per_read):
            numbers = range(first, min(first + per_read, total))
            indexes = [self._batch_index(order, b, n) for b in numbers]
            if self._dataset is not None:  # a dataset is asked one batch at a time
                for b, index in zip(numbers, indexes, strict=True):
                    x, y = self._take(index)
                    yield self._ready(b + 1, x, y, _size(index), index)
                continue
            # Arrays: one read, one check and one transfer for several batches (fewer
            # calls per batch), then a view per batch.
            if all(isinstance(index, slice) for index in indexes):
                joined: Any = slice(indexes[0].start, indexes[-1].stop)
            else:
                joined = np.concatenate(indexes)
            x, y = self._take(joined)
            bounds = np.cumsum([0] + [_size(index) for index in indexes]).tolist()
            parts = list(zip(numbers, indexes, bounds[:-1], bounds[1:], strict=True))
            try:
                x, y = self._ready(first + 1, x, y, None, None)
            except ValueError:
                for b, index, a, z in parts:  # name the batch at fault
                    self._ready(b + 1, x[a:z], None if y is None else y[a:z], z - a, index)
                raise
            for _, _, a, z in parts:
                yield x[a:z], None if y is None else y[a:z]

    def _batch_index(self, order: np.ndarray | None, b: int, n: int) -> Any:
        """The samples of batch ``b`` (0-based): a slice, or sorted indices."""
        start, stop = b * self.batch_size, min((b + 1) * self.batch_size, n)
        if order is None and self._indices is None:
            return slice(start, stop)  # in order over everything: a view of an array
        chunk = order[start:stop] if order is not None else np.arange(start, stop)
        return np.sort(chunk if self._indices is None else self._indices[chunk])

    def _batches_per_read(self) -> int:
        """Batches read together from arrays: up to READ_BATCHES, within READ_BYTES."""
        if self._dataset is not None:
            return 1
        sample = self._x.itemsize * math.prod(self._x.shape[1:])
        if self._y is not None:
            sample += self._y.itemsize * math.prod(self._y.shape[1:])
        return max(1, min(READ_BATCHES, READ_BYTES // max(1, sample * self.batch_size)))

    def _take(self, index: Any) -> Batch:
        if self._dataset is not None:
            if isinstance(index, slice):
                index = np.arange(index.start, index.stop)
            batch = self._dataset[index]
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise ValueError(
                    f"DataLoader: dataset[indices] must return a pair (x_batch, y_batch); "
                    f"got {type(batch).__name__}"
                )
            return batch[0], batch[1]
        return _gather(self._x, index), None if self._y is None else _gather(self._y, index)


class GeneratorLoader(Loader):
    """Batches made on the fly by a generator function (augmentation, synthetic data).

    Each epoch calls ``generator_fn()`` and takes ``batches_per_epoch`` batches from
    the iterator it returns; the iterator is then closed (an infinite generator is
    fine). Each item must be a pair ``(x_batch, y_batch)`` with as many samples in both;
    sizes may vary from batch to batch, per-sample shapes may not.

    With ``prefetch > 0`` the generator runs in a background thread: give it its own
    random generator (``numpy.random.default_rng(seed)``) rather than the global
    state, which dropout draws from at the same time, to keep runs repeatable.

    Args:
        generator_fn: A function of no argument returning an iterator of batches.
        batches_per_epoch: Batches taken per epoch, >= 1.
        prefetch: Batches made ahead by a background thread, >= 0 (0: none).

    Raises:
        ValueError: If ``generator_fn`` is not callable, or ``batches_per_epoch`` is
            not a positive integer; while iterating, if the generator runs out early
            or yields a malformed batch (the message names the batch).
    """

    def __init__(
        self,
        generator_fn: Callable[[], Iterator[tuple[Any, Any]]],
        batches_per_epoch: int,
        prefetch: int = 2,
    ) -> None:
        super().__init__(prefetch)
        if not callable(generator_fn):
            raise ValueError(
                f"GeneratorLoader: generator_fn must be a function returning an iterator of "
                f"(x_batch, y_batch); got {generator_fn!r}"
            )
        self.generator_fn = generator_fn
        self.batches_per_epoch = _checks.positive_int(
            "GeneratorLoader", "batches_per_epoch", batches_per_epoch
        )

    def in_order(self, batch_size: int | None = None) -> GeneratorLoader:
        """This loader: one epoch of a generator is its order (``batch_size`` is ignored)."""
        return self

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __repr__(self) -> str:
        return (
            f"GeneratorLoader({getattr(self.generator_fn, '__name__', self.generator_fn)!r}, "
            f"batches_per_epoch={self.batches_per_epoch}, prefetch={self.prefetch})"
        )

    def _epoch(self) -> Iterator[Batch]:
        source = self.generator_fn()
        if not isinstance(source, Iterator):
            raise ValueError(
                f"GeneratorLoader: generator_fn() must return an iterator (a generator); "
                f"got {type(source).__name__}"
            )
        return self._read(source)

    def _read(self, source: Iterator[Any]) -> Iterator[Batch]:
        try:
            for number in range(1, self.batches_per_epoch + 1):
                try:
                    item = next(source)
                except StopIteration:
                    raise ValueError(
                        f"GeneratorLoader: the generator stopped after {number - 1} batches; "
                        f"batches_per_epoch={self.batches_per_epoch}"
                    ) from None
                if not isinstance(item, (tuple, list)) or len(item) != 2:
                    raise ValueError(
                        f"GeneratorLoader: batch {number} of {len(self)} must be a pair "
                        f"(x_batch, y_batch); got {type(item).__name__}"
                    )
                yield self._ready(number, item[0], item[1], None, None)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()


# ========================================================================== helpers
def _sources(X: Any, y: Any) -> tuple[Any, Any, Any]:
    """``(x, y, dataset)``: the arrays, or the dataset object (then x and y are None)."""
    if X is None:
        raise ValueError("DataLoader: X must be an array of shape (N, ...) or a dataset; got None")
    if isinstance(X, (str, bytes, os.PathLike)):
        raise TypeError(
            f"DataLoader: X must be an array or a dataset; got the path {X!r} "
            f"(DataLoader.from_npy opens .npy files)"
        )
    if not _is_array(X) and not isinstance(X, (list, tuple)):
        if isinstance(X, Dataset):
            if y is not None:
                raise ValueError(
                    "DataLoader: y must be None when X is a dataset (dataset[indices] "
                    "returns (x_batch, y_batch))"
                )
            if not _checks.is_int(len(X)):
                raise ValueError(f"DataLoader: len(dataset) must be an integer; got {len(X)!r}")
            return None, None, X
        raise TypeError(
            f"DataLoader: X must be an array (NumPy, memory-mapped or backend) or a dataset "
            f"with __len__ and __getitem__(indices); got {type(X).__name__}"
        )
    x = _source_array(X, "X")
    if x.ndim < 2:
        raise ValueError(f"DataLoader: X must have shape (N, ...) with N first; got {x.shape}")
    if y is not None:
        y = _source_array(y, "y")
        if y.ndim == 0 or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"DataLoader: X and y must hold as many samples; got {x.shape[0]} and "
                f"{y.shape[0] if y.ndim else 'a scalar'}"
            )
    return x, y, None


def _gather(a: Any, index: Any) -> Any:
    """``a[index]``; a device array is indexed with device indices."""
    if not isinstance(index, slice) and not isinstance(a, np.ndarray):
        index = xp.asarray(index)
    return a[index]


def _is_array(a: Any) -> bool:
    return isinstance(a, (np.ndarray, xp.ndarray))


def _source_array(a: Any, name: str) -> Any:
    if not _is_array(a):
        a = np.asarray(a)  # a list: there is no data set to spare a copy of
    if a.dtype.kind not in "fiub":
        raise ValueError(f"DataLoader: {name} must hold numbers; got dtype {a.dtype}")
    if isinstance(a, np.memmap):
        # A plain view of the same mapping: indexing it skips np.memmap's per-call
        # subclass overhead, and it keeps the mapping alive as long as it lives.
        a = a.view(np.ndarray)
    return a


def _batch_array(a: Any, name: Callable[[], str], which: str) -> Any:
    if not _is_array(a):
        try:
            a = np.asarray(a)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"{name()}: {which} must be an array; got {type(a).__name__}"
            ) from error
    if a.dtype.kind not in "fiub":
        raise ValueError(f"{name()}: {which} must hold numbers; got dtype {a.dtype}")
    if a.ndim < (2 if which == "x" else 1):
        raise ValueError(f"{name()}: {which} must have shape (B, ...) with B first; got {a.shape}")
    return a


def _load_npy(name: str, path: str | os.PathLike[str]) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"DataLoader.from_npy: {name} must be a .npy file of numbers; {path!s}: {error}"
        ) from error
    if not isinstance(array, np.ndarray):  # an .npz archive opens as an NpzFile
        if hasattr(array, "close"):
            array.close()
        raise ValueError(
            f"DataLoader.from_npy: {name} must be a .npy file (one array); got "
            f"{type(array).__name__} from {path!s}"
        )
    return array


def _index_array(indices: Any, n: int) -> np.ndarray:
    array = to_host(indices)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise ValueError(
            f"DataLoader.subset: indices must be a 1-D array of integers; got "
            f"{array.dtype} of shape {array.shape}"
        )
    array = array.astype(np.int64, copy=False)
    if array.size == 0:
        raise ValueError("DataLoader.subset: indices must name at least one sample; got none")
    low, high = int(array.min()), int(array.max())
    if low < 0 or high >= n:
        raise ValueError(
            f"DataLoader.subset: indices must be in [0, {n - 1}]; got values in [{low}, {high}]"
        )
    return array


def _size(index: Any) -> int:
    return index.stop - index.start if isinstance(index, slice) else len(index)


def _where(index: Any) -> str:
    """The samples of a batch, for error messages."""
    if isinstance(index, slice):
        return f" (samples {index.start} to {index.stop - 1})"
    shown = ", ".join(str(int(i)) for i in index[:5])
    return f" (samples {shown}{', ...' if len(index) > 5 else ''})"


def _batch_shape(shape: tuple[int, ...] | None) -> str:
    """``(B, 3, 4)`` for the per-sample shape (3, 4)."""
    return "(B" + "".join(f", {d}" for d in shape or ()) + ")"
