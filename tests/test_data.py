"""DataLoader and GeneratorLoader: order, shuffling, checks, prefetching and shutdown."""

from __future__ import annotations

import gc
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mpneuralnetwork import DTYPE, set_seed, to_device, to_host, xp
from mpneuralnetwork.data import BatchIterator, DataLoader, GeneratorLoader, PrefetchIterator

N = 23  # samples of the small data sets: not a multiple of the batch sizes used


def numbered(n: int = N, features: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """x[i] = (i, i, ...) and y[i] = (-i, 2i): every batch says which samples it holds."""
    index = np.arange(n, dtype=np.float64)
    x = np.repeat(index[:, None], features, axis=1)
    y = np.stack([-index, 2 * index], axis=1)
    return x, y


def samples_of(batches: list[tuple[Any, Any]]) -> list[list[int]]:
    """The sample numbers of each batch (read back from x), checking y stays paired."""
    result = []
    for xb, yb in batches:
        x, y = to_host(xb), to_host(yb)
        ids = x[:, 0].astype(int)
        np.testing.assert_array_equal(y, np.stack([-ids, 2 * ids], axis=1))
        result.append(ids.tolist())
    return result


def flat(batches: list[list[int]]) -> list[int]:
    return [i for batch in batches for i in batch]


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "mpneuralnetwork-prefetch"]


# ================================================================== arrays, in order
@pytest.mark.parametrize("prefetch", [0, 2])
def test_in_order_batches_are_device_arrays_in_dtype(prefetch: int) -> None:
    x, y = numbered()
    loader = DataLoader(x, y, batch_size=5, shuffle=False, prefetch=prefetch)
    batches = list(loader)
    assert len(loader) == len(batches) == 5
    assert samples_of(batches) == [list(range(i, min(i + 5, N))) for i in range(0, N, 5)]
    for xb, yb in batches:
        assert isinstance(xb, xp.ndarray) and isinstance(yb, xp.ndarray)
        assert xb.dtype == DTYPE and yb.dtype == DTYPE
    assert not prefetch_threads()


def test_drop_last_leaves_out_the_short_batch() -> None:
    x, y = numbered()
    loader = DataLoader(x, y, batch_size=5, shuffle=False, drop_last=True)
    assert len(loader) == 4
    assert [len(b) for b in samples_of(list(loader))] == [5, 5, 5, 5]
    shuffled = DataLoader(x, y, batch_size=5, drop_last=True)
    seen = flat(samples_of(list(shuffled)))
    assert len(seen) == 20 and len(set(seen)) == 20


def test_inputs_alone_give_none_targets() -> None:
    x, _ = numbered()
    batches = list(DataLoader(x, batch_size=10, shuffle=False))
    assert [yb for _, yb in batches] == [None, None, None]
    assert to_host(batches[2][0])[:, 0].tolist() == [20, 21, 22]


def test_a_device_array_is_read_on_the_device() -> None:
    x, y = numbered()
    loader = DataLoader(to_device(x), to_device(y), batch_size=4, seed=3)
    seen = samples_of(list(loader))
    assert sorted(flat(seen)) == list(range(N))


# ======================================================================== shuffling
def test_each_epoch_is_a_sorted_chunking_of_the_global_permutation() -> None:
    # seed=None: the permutation is xp.random.permutation(n), as Model.train drew it in 1.2,
    # so numpy.random.seed / set_seed keep scripts repeatable.
    x, y = numbered()
    loader = DataLoader(x, y, batch_size=6, prefetch=2)
    set_seed(7)
    epoch1, epoch2 = samples_of(list(loader)), samples_of(list(loader))
    set_seed(7)
    order1, order2 = to_host(xp.random.permutation(N)), to_host(xp.random.permutation(N))
    for epoch, order in ((epoch1, order1), (epoch2, order2)):
        assert epoch == [sorted(order[i : i + 6].tolist()) for i in range(0, N, 6)]
    assert epoch1 != epoch2


def test_a_seeded_loader_repeats_and_leaves_the_global_state_alone() -> None:
    x, y = numbered()
    set_seed(1)
    first = [samples_of(list(DataLoader(x, y, batch_size=4, seed=11))) for _ in range(2)]
    after = to_host(xp.random.random_sample(3))
    set_seed(1)
    expected_after = to_host(xp.random.random_sample(3))
    np.testing.assert_array_equal(after, expected_after)
    assert first[0] == first[1]
    loader = DataLoader(x, y, batch_size=4, seed=11)
    assert samples_of(list(loader)) == first[0]
    assert samples_of(list(loader)) != first[0]  # the next epoch draws a new order
    rng = np.random.default_rng(11)
    order = rng.permutation(N)
    assert first[0] == [sorted(order[i : i + 4].tolist()) for i in range(0, N, 4)]


def test_the_permutation_is_drawn_when_the_epoch_starts_not_in_the_thread() -> None:
    # Dropout draws from the global state while the thread reads ahead: the epoch's
    # order must not depend on when the thread runs.
    x, y = numbered()
    set_seed(3)
    iterator = iter(DataLoader(x, y, batch_size=6, prefetch=3))
    xp.random.random_sample(100)  # the "model" draws meanwhile
    got = samples_of(list(iterator))
    set_seed(3)
    order = to_host(xp.random.permutation(N))
    assert got == [sorted(order[i : i + 6].tolist()) for i in range(0, N, 6)]


# ============================================================ memory-mapped .npy files
def test_from_npy_reads_what_the_arrays_give(tmp_path: Path) -> None:
    x, y = numbered()
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    np.save(tmp_path / "y.npy", y)
    from_files = DataLoader.from_npy(tmp_path / "x.npy", tmp_path / "y.npy", batch_size=5, seed=2)
    in_memory = DataLoader(x, y, batch_size=5, seed=2)
    for (xa, ya), (xb, yb) in zip(from_files, in_memory, strict=True):
        np.testing.assert_array_equal(to_host(xa), to_host(xb))
        np.testing.assert_array_equal(to_host(ya), to_host(yb))


def test_from_npy_refuses_an_npz_archive(tmp_path: Path) -> None:
    np.savez(tmp_path / "data.npz", x=np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"x_path must be a \.npy file"):
        DataLoader.from_npy(tmp_path / "data.npz")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_no_mapping_of_the_file_survives_a_half_read_loader(tmp_path: Path) -> None:
    path = tmp_path / "big.npy"
    np.save(path, np.zeros((4000, 8), dtype=np.float32))
    loader = DataLoader.from_npy(path, batch_size=10, prefetch=4)
    iterator = iter(loader)
    next(iterator)
    assert str(path) in Path("/proc/self/maps").read_text()
    del iterator, loader
    gc.collect()
    assert not prefetch_threads()
    assert str(path) not in Path("/proc/self/maps").read_text()


# ========================================================== subsets, splits, ordering
def test_a_subset_reads_only_its_samples_in_order_without_copying() -> None:
    x = np.arange(400_000, dtype=np.float32).reshape(100_000, 4)
    loader = DataLoader(x, batch_size=1000, shuffle=False)
    tracemalloc.start()
    try:
        subset = loader.subset(np.arange(99_999, -1, -2))  # 50,000 samples, given backwards
        allocated = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert allocated < 2_000_000  # the indices (0.4 MB, sorted copy included), not the data
    assert subset.num_samples == 50_000 and len(subset) == 50
    ids = np.concatenate([to_host(xb)[:, 0] / 4 for xb, _ in subset]).astype(int)
    np.testing.assert_array_equal(ids, np.arange(1, 100_000, 2))
    nested = subset.subset([0, 2, 49_999])  # positions within the subset
    assert [to_host(xb)[:, 0].tolist() for xb, _ in nested] == [[4.0, 20.0, 399_996.0]]


def test_in_order_keeps_the_samples_and_changes_the_batches() -> None:
    x, y = numbered()
    loader = DataLoader(x, y, batch_size=4, drop_last=True).subset([22, 3, 9, 10, 4])
    ordered = loader.in_order(batch_size=2)
    assert (ordered.shuffle, ordered.drop_last, len(ordered)) == (False, False, 3)
    assert samples_of(list(ordered)) == [[3, 4], [9, 10], [22]]


def test_split_holds_out_the_first_indices_of_a_global_permutation() -> None:
    x, y = numbered()
    loader = DataLoader(x, y, batch_size=4)
    set_seed(5)
    kept, held_out = loader.split(0.3)
    set_seed(5)
    order = to_host(xp.random.permutation(N))
    assert held_out.num_samples == 6 and kept.num_samples == 17
    assert not held_out.shuffle and kept.shuffle
    assert flat(samples_of(list(held_out))) == sorted(order[:6].tolist())
    assert sorted(flat(samples_of(list(kept)))) == sorted(order[6:].tolist())


@pytest.mark.parametrize("fraction", [0.0, 0.01, 1.0, float("nan")])
def test_split_refuses_fractions_that_leave_a_side_empty(fraction: float) -> None:
    x, y = numbered()
    with pytest.raises(ValueError, match="fraction"):
        DataLoader(x, y).split(fraction)


@pytest.mark.parametrize(
    ("indices", "message"),
    [
        ([0, 23], r"in \[0, 22\]; got values in \[0, 23\]"),
        ([-1], r"in \[0, 22\]"),
        ([0.5], "integers"),
        ([[0, 1]], "1-D"),
        ([], "at least one"),
    ],
)
def test_subset_refuses_bad_indices(indices: list[Any], message: str) -> None:
    x, y = numbered()
    with pytest.raises(ValueError, match=message):
        DataLoader(x, y).subset(np.array(indices))


# ============================================================================ datasets
class Squares:
    """A dataset made on request: x[i] = (i, i), y[i] = (-i, 2i); records what it is asked."""

    def __init__(self, n: int = N) -> None:
        self.n = n
        self.requests: list[list[int]] = []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, indices: np.ndarray) -> tuple[Any, Any]:
        self.requests.append(indices.tolist())
        x, y = numbered(self.n, features=2)
        return x[indices].tolist(), y[indices]  # a list is accepted too


def test_a_dataset_is_asked_for_sorted_indices() -> None:
    dataset = Squares()
    loader = DataLoader(dataset, batch_size=5, prefetch=1)
    batches = samples_of(list(loader))
    assert dataset.requests == batches
    assert all(batch == sorted(batch) for batch in batches)
    assert sorted(flat(batches)) == list(range(N))


class Broken(Squares):
    """Squares with one defect in the batch holding sample ``at``."""

    def __init__(self, defect: str, at: int = 12) -> None:
        super().__init__()
        self.defect, self.at = defect, at

    def __getitem__(self, indices: np.ndarray) -> Any:
        x, y = super().__getitem__(indices)
        x = np.asarray(x)
        if self.at not in indices:
            return x, y
        if self.defect == "shape":
            return x[:, :1], y
        if self.defect == "count":
            return x, y[:-1]
        if self.defect == "missing":
            return x[:-1], y[:-1]
        if self.defect == "nan":
            x[-1, 0] = np.nan
            return x, y
        if self.defect == "inf_y":
            y = y.copy()
            y[0, 1] = np.inf
            return x, y
        if self.defect == "text":
            return x.astype(str), y
        return x  # "single": not a pair


@pytest.mark.parametrize(
    ("defect", "message"),
    [
        ("shape", r"x of shape \(B, 2\) and y of shape \(B, 2\) like the first; got x \(5, 1\)"),
        ("count", r"x and y must hold as many samples; got 5 and 4"),
        ("missing", r"x must hold 5 samples; got shape \(4, 2\)"),
        ("nan", r"x contains NaN or infinite values"),
        ("inf_y", r"y contains NaN or infinite values"),
        ("text", r"x must hold numbers; got dtype <U"),
        ("single", r"must return a pair \(x_batch, y_batch\); got ndarray"),
    ],
)
@pytest.mark.parametrize("prefetch", [0, 2])
def test_a_bad_batch_is_named(defect: str, message: str, prefetch: int) -> None:
    loader = DataLoader(Broken(defect), batch_size=5, shuffle=False, prefetch=prefetch)
    iterator = iter(loader)
    assert len(samples_of([next(iterator), next(iterator)])) == 2  # samples 0-9 are fine
    with pytest.raises(ValueError, match=message) as caught:
        next(iterator)
    if defect != "single":
        assert "batch 3 of 5 (samples 10 to 14)" in str(caught.value)
    assert not iterator.alive
    with pytest.raises(StopIteration):  # a failed epoch is over
        next(iterator)


def test_a_nan_in_an_array_names_its_batch() -> None:
    x, y = numbered()
    x[17, 1] = np.nan
    with pytest.raises(ValueError, match=r"DataLoader: batch 4 of 5 \(samples 15 to 19\)"):
        list(DataLoader(x, y, batch_size=5, shuffle=False))


# ========================================================================== generators
def counting_generator(log: list[str], batches: int | None = None) -> Any:
    """A generator function yielding (x, y) batches of varying size; logs start and close."""

    def generate() -> Any:
        log.append("start")
        rng = np.random.default_rng(0)
        try:
            i = 0
            while batches is None or i < batches:
                size = 3 + i % 2
                x = rng.standard_normal((size, 2))
                yield x, x.sum(axis=1, keepdims=True)
                i += 1
        finally:
            log.append("closed")

    return generate


@pytest.mark.parametrize("prefetch", [0, 2])
def test_a_generator_gives_its_batches_per_epoch_and_is_closed(prefetch: int) -> None:
    log: list[str] = []
    loader = GeneratorLoader(counting_generator(log), batches_per_epoch=4, prefetch=prefetch)
    assert len(loader) == 4
    for _ in range(2):
        batches = list(loader)
        assert [xb.shape[0] for xb, _ in batches] == [3, 4, 3, 4]
        for xb, yb in batches:
            assert xb.dtype == DTYPE and yb.dtype == DTYPE
            np.testing.assert_allclose(to_host(yb), to_host(xb).sum(axis=1, keepdims=True), 1e-6)
    assert log == ["start", "closed", "start", "closed"]
    assert not prefetch_threads()


def test_a_generator_that_stops_early_is_reported() -> None:
    log: list[str] = []
    loader = GeneratorLoader(counting_generator(log, batches=2), batches_per_epoch=3)
    with pytest.raises(ValueError, match="stopped after 2 batches; batches_per_epoch=3"):
        list(loader)


def test_a_generator_batch_of_another_shape_is_named() -> None:
    def generate() -> Any:
        yield np.ones((2, 3)), np.ones((2, 1))
        yield np.ones((2, 4)), np.ones((2, 1))

    with pytest.raises(ValueError, match=r"GeneratorLoader: batch 2 of 2: every batch .*\(2, 4\)"):
        list(GeneratorLoader(generate, 2))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"generator_fn": 3, "batches_per_epoch": 1}, "generator_fn must be a function"),
        ({"generator_fn": list, "batches_per_epoch": 0}, "batches_per_epoch must be a positive"),
        ({"generator_fn": list, "batches_per_epoch": 1, "prefetch": -1}, "prefetch must be"),
    ],
)
def test_generator_loader_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GeneratorLoader(**kwargs)


def test_a_generator_function_must_return_an_iterator() -> None:
    with pytest.raises(ValueError, match="must return an iterator"):
        iter(GeneratorLoader(list, 1))


# ========================================================================= prefetching
class Slow(Squares):
    def __getitem__(self, indices: np.ndarray) -> tuple[Any, Any]:
        time.sleep(0.005)
        return super().__getitem__(indices)


def test_prefetch_reads_ahead_a_bounded_number_of_batches() -> None:
    dataset = Slow(200)
    iterator = iter(DataLoader(dataset, batch_size=2, shuffle=False, prefetch=3))
    next(iterator)
    time.sleep(0.3)  # ample time to read far ahead, were the queue unbounded
    # one taken, three queued, one read and waiting for room
    assert len(dataset.requests) == 5
    iterator.close()
    assert not iterator.alive and not prefetch_threads()


def test_breaking_out_of_a_loop_ends_the_thread_and_closes_the_generator() -> None:
    log: list[str] = []
    loader = GeneratorLoader(counting_generator(log), batches_per_epoch=50, prefetch=2)
    for i, _ in enumerate(loader):
        if i == 3:
            break
    gc.collect()
    assert not prefetch_threads()
    assert log == ["start", "closed"]


def test_an_interrupt_in_the_loop_body_ends_the_thread() -> None:
    log: list[str] = []
    loader = GeneratorLoader(counting_generator(log), batches_per_epoch=50, prefetch=2)
    with pytest.raises(KeyboardInterrupt):
        with iter(loader) as batches:
            for i, _ in enumerate(batches):
                if i == 2:
                    raise KeyboardInterrupt
    assert not prefetch_threads()
    assert log == ["start", "closed"]


def test_an_error_while_reading_reaches_the_consumer_with_its_traceback() -> None:
    def generate() -> Any:
        yield np.ones((2, 2)), np.ones((2, 1))
        raise OSError("disk gone")

    iterator = iter(GeneratorLoader(generate, 5, prefetch=2))
    next(iterator)
    with pytest.raises(OSError, match="disk gone") as caught:
        next(iterator)
    assert "generate" in {entry.name for entry in caught.traceback}
    assert not iterator.alive and not prefetch_threads()


def test_close_is_idempotent_and_ends_iteration() -> None:
    x, y = numbered()
    iterator = iter(DataLoader(x, y, batch_size=2, prefetch=2))
    assert isinstance(iterator, PrefetchIterator) and iterator.alive
    assert type(iter(DataLoader(x, y, prefetch=0))) is BatchIterator
    iterator.close()
    iterator.close()
    with pytest.raises(StopIteration):
        next(iterator)


# ========================================================================== arguments
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"batch_size": 0}, ValueError, r"batch_size must be a positive integer; got 0"),
        ({"prefetch": -1}, ValueError, r"prefetch must be a non-negative integer; got -1"),
        ({"shuffle": "yes"}, ValueError, r"shuffle must be True or False; got 'yes'"),
        ({"drop_last": 1}, ValueError, r"drop_last must be True or False"),
        ({"seed": -3}, ValueError, r"seed must be a non-negative integer; got -3"),
        ({"seed": 1, "shuffle": False}, ValueError, r"seed only applies with shuffle=True"),
        ({"batch_size": 30, "drop_last": True}, ValueError, r"23 samples and batch_size=30"),
    ],
)
def test_options_are_checked(kwargs: dict[str, Any], error: type, message: str) -> None:
    x, y = numbered()
    with pytest.raises(error, match=message):
        DataLoader(x, y, **kwargs)


@pytest.mark.parametrize(
    ("X", "y", "error", "message"),
    [
        (None, None, ValueError, "X must be an array of shape"),
        (np.ones(5), None, ValueError, r"X must have shape \(N, ...\) with N first; got \(5,\)"),
        (np.ones((5, 2)), np.ones(4), ValueError, "as many samples; got 5 and 4"),
        (np.array([["a"]]), None, ValueError, "X must hold numbers; got dtype <U1"),
        (np.ones((5, 2)), np.array(["a"] * 5), ValueError, "y must hold numbers"),
        (Squares(), np.ones(3), ValueError, "y must be None when X is a dataset"),
        ("x.npy", None, TypeError, "got the path 'x.npy' .*from_npy"),
        (3.5, None, TypeError, "X must be an array .* or a dataset .*; got float"),
        (np.ones((0, 2)), None, ValueError, "hold no samples"),
    ],
)
def test_data_are_checked(X: Any, y: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        DataLoader(X, y)


def test_a_bad_shuffled_batch_lists_its_samples() -> None:
    x, y = numbered()
    x[17, 1] = np.inf
    set_seed(0)
    order = to_host(xp.random.permutation(N))
    batch = next(i for i in range(0, N, 3) if 17 in order[i : i + 3]) // 3 + 1
    shown = ", ".join(map(str, sorted(order[(batch - 1) * 3 : batch * 3].tolist())))
    set_seed(0)
    with pytest.raises(ValueError, match=rf"batch {batch} of 8 \(samples {shown}\): x contains"):
        list(DataLoader(x, y, batch_size=3))
