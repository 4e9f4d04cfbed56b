"""Model with loaders: the same weights whichever way the data come, inference order,
validation held out by index, per-batch errors and thread shutdown."""

from __future__ import annotations

import threading
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers import ON_STANDIN
from helpers_model import assert_same_arrays, model_arrays
from mpneuralnetwork import set_seed, to_host, xp
from mpneuralnetwork.activations import ReLU
from mpneuralnetwork.callbacks import LambdaCallback
from mpneuralnetwork.data import DataLoader, GeneratorLoader
from mpneuralnetwork.layers import BatchNormalization, Dense, Dropout, Layer
from mpneuralnetwork.losses import MSE, CategoricalCrossEntropy
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import Adam


def classifier(features: int = 6) -> Model:
    set_seed(21)
    layers = [Dense(16, input_size=features), BatchNormalization(), ReLU(), Dropout(0.3)]
    return Model([*layers, Dense(3)], CategoricalCrossEntropy(), Adam(0.01))


def blobs(n: int = 150, features: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, n)
    x = rng.standard_normal((n, features)).astype(np.float32) + labels[:, None]
    return x, np.eye(3, dtype=np.float32)[labels]


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "mpneuralnetwork-prefetch"]


@pytest.fixture
def npy_files(tmp_path: Path) -> tuple[Path, Path]:
    x, y = blobs()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    return tmp_path / "x.npy", tmp_path / "y.npy"


def trained(data: Any, y: Any = None, batch_size: int | None = 16, **kwargs: Any) -> Model:
    model = classifier()
    set_seed(5)  # the shuffles, the validation split and the dropout masks
    model.train(data, y, epochs=3, batch_size=batch_size, verbose=0, **kwargs)
    return model


def test_the_same_seed_gives_the_same_weights_from_every_source(npy_files: Any) -> None:
    # auto_evaluation (by index), shuffling, dropout and batch normalization all in play.
    x, y = blobs()
    x_path, y_path = npy_files
    reference = model_arrays(trained(x, y))
    runs = {
        "memmap": lambda: trained(np.load(x_path, mmap_mode="r"), np.load(y_path, mmap_mode="r")),
        "loader": lambda: trained(DataLoader(x, y, batch_size=16), batch_size=None),
        "loader, no prefetch": lambda: trained(DataLoader(x, y, 16, prefetch=0), batch_size=None),
        "from_npy": lambda: trained(DataLoader.from_npy(x_path, y_path, batch_size=16), None, 16),
        "float64 list": lambda: trained(x.astype(np.float64).tolist(), y),
    }
    for name, run in runs.items():
        model = run()
        assert model.history is not None and "val_loss" in model.history.history, name
        assert_same_arrays(model_arrays(model), reference)
    assert not prefetch_threads()


def test_an_explicit_validation_loader_scores_like_arrays() -> None:
    x, y = blobs()
    xv, yv = blobs(40)
    with_arrays = trained(x, y, evaluation=(xv, yv))
    with_loader = trained(x, y, evaluation=DataLoader(xv, yv, batch_size=7))
    assert_same_arrays(model_arrays(with_loader), model_arrays(with_arrays))
    a, b = with_arrays.history.history, with_loader.history.history  # type: ignore[union-attr]
    np.testing.assert_allclose(b["val_loss"], a["val_loss"], rtol=1e-5)
    np.testing.assert_allclose(b["val_accuracy"], a["val_accuracy"], rtol=1e-6)


def test_predict_and_evaluate_follow_the_loaders_order() -> None:
    x, y = blobs()
    model = trained(x, y)
    loader = DataLoader(x, y, batch_size=32, seed=9)  # shuffled for training only
    np.testing.assert_allclose(model.predict(loader), model.predict(x), rtol=1e-5, atol=1e-6)
    subset = loader.subset([140, 3, 77])
    np.testing.assert_allclose(model.predict(subset), model.predict(x[[3, 77, 140]]), atol=1e-6)
    predictions, scores = model.evaluate(loader)
    expected_predictions, expected = model.evaluate(x, y)
    np.testing.assert_allclose(to_host(predictions), to_host(expected_predictions), atol=1e-6)
    assert scores.keys() == expected.keys()
    for key in scores:
        assert scores[key] == pytest.approx(expected[key], rel=1e-5), key
    assert model.test(loader) == scores


def test_the_validation_split_copies_no_data() -> None:
    # 1.2 gathered x[train_idx] and x[val_idx]: a copy of the whole data set.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((80_000, 64), dtype=np.float32)  # 20 MiB
    y = x[:, :1] * 2.0
    model = Model([Dense(1, input_size=64)], MSE())
    tracemalloc.start()
    try:
        model.train(x, y, epochs=1, batch_size=256, verbose=0)  # auto_evaluation=0.2
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # indices (0.6 MiB, sorted copies), a validation chunk of 4096 samples (1 MiB), batches;
    # on the CuPy stand-in also the one copy of the arrays on the "device"
    device_copy = x.nbytes + y.nbytes if ON_STANDIN else 0
    assert peak < 0.25 * x.nbytes + device_copy
    assert model.history is not None and len(model.history.history["val_loss"]) == 1


def test_a_memmap_is_read_batch_by_batch(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "x.npy"
    np.save(path, rng.standard_normal((160_000, 32), dtype=np.float32))  # 20 MiB
    x = np.load(path, mmap_mode="r")
    y = np.asarray(x[:, :1]) * 2.0
    model = Model([Dense(1, input_size=32)], MSE(), Adam(0.01))
    tracemalloc.start()
    try:
        model.train(x, y, epochs=2, batch_size=512, verbose=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.4 * x.nbytes  # batches read 16 at a time, some queued: not the data set
    assert model.history is not None
    assert model.history.history["val_loss"][-1] < 0.5 * model.history.history["val_loss"][0]


def test_a_generator_loader_trains_with_a_validation_loader() -> None:
    x, y = blobs()
    rng = np.random.default_rng(1)

    def noisy_batches() -> Any:
        while True:
            index = rng.integers(0, len(x), 20)
            yield x[index] + 0.1 * rng.standard_normal((20, 6)), y[index]

    model = classifier()
    history = model.train(
        GeneratorLoader(noisy_batches, batches_per_epoch=8),
        epochs=6,
        evaluation=DataLoader(x, y, batch_size=50),
        verbose=0,
    )
    values = history.history
    assert len(values["val_loss"]) == 6
    assert values["val_loss"][-1] < 0.7 * values["val_loss"][0]
    assert values["val_accuracy"][-1] > 0.6  # chance: 1/3
    assert not prefetch_threads()


def test_ctrl_c_during_a_prefetching_epoch_ends_the_thread() -> None:
    x, y = blobs()
    model = classifier()
    before = model_arrays(model)

    def interrupt(batch: int, logs: Any) -> None:
        if batch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), pytest.warns(RuntimeWarning, match="INTERRUPTED"):
        model.train(
            DataLoader(x, y, batch_size=8, prefetch=3),
            epochs=2,
            auto_evaluation=0,
            callbacks=[LambdaCallback(on_batch_end=interrupt)],
            verbose=0,
        )
    assert not prefetch_threads()
    assert_same_arrays(model_arrays(model), before)  # the safe weights: epoch 0


def test_a_dataset_batch_of_the_wrong_shape_names_the_batch() -> None:
    x, y = blobs()

    class Shifted:
        def __len__(self) -> int:
            return 150

        def __getitem__(self, indices: np.ndarray) -> tuple[Any, Any]:
            if indices[0] >= 100:  # a defect in the last batches: 7 features, not 6
                return np.ones((len(indices), 7)), y[indices]
            return x[indices], y[indices]

    model = classifier()
    loader = DataLoader(Shifted(), batch_size=50, shuffle=False)
    with (
        pytest.raises(ValueError, match=r"DataLoader: batch 3 of 3 \(samples 100 to 149\)"),
        pytest.warns(RuntimeWarning, match="STOPPED BY AN ERROR"),
    ):
        model.train(loader, epochs=1, auto_evaluation=0, verbose=0)
    wrong = DataLoader(np.ones((10, 7)), np.ones((10, 3)), batch_size=5)
    message = r"X_train \(batch 1 of 2\): x must have shape \(B, 6\) to match the first layer"
    with pytest.raises(ValueError, match=message), pytest.warns(RuntimeWarning):
        model.train(wrong, epochs=1, auto_evaluation=0, verbose=0)
    with pytest.raises(ValueError, match=r"X \(batch 1 of 1\): y must have shape \(N, 3\)"):
        model.evaluate(DataLoader(x[:5], y[:5, :2], batch_size=5))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda m, x, y: m.train(DataLoader(x, y), y, epochs=1),
            "y_train must be None when X_train is a DataLoader",
        ),
        (
            lambda m, x, y: m.train(DataLoader(x, y, batch_size=8), epochs=1, batch_size=16),
            r"batch_size comes from the DataLoader \(8\)",
        ),
        (lambda m, x, y: m.train(DataLoader(x), epochs=1), "gives no targets"),
        (
            lambda m, x, y: m.train(GeneratorLoader(lambda: iter([(x, y)]), 1), epochs=1),
            "auto_evaluation=0.2 holds samples out by index, which a GeneratorLoader",
        ),
        (
            lambda m, x, y: m.train(DataLoader(x, y), epochs=1, evaluation=DataLoader(x)),
            "the DataLoader of evaluation gives no targets",
        ),
        (  # an explicit 32 is not the default: the loader's 16 stays
            lambda m, x, y: m.train(DataLoader(x, y, batch_size=16), epochs=1, batch_size=32),
            r"batch_size comes from the DataLoader \(16\); leave it out or pass the same; got 32",
        ),
        (lambda m, x, y: m.train(x, y, epochs=1, batch_size=0), "batch_size must be a positive"),
        (lambda m, x, y: m.train(DataLoader(x, y)), "epochs must be a non-negative integer"),
        (lambda m, x, y: m.evaluate(DataLoader(x, y), y), "y must be None when X is a"),
        (lambda m, x, y: m.test(DataLoader(x, y), y), "y_test must be None when X_test is a"),
    ],
)
def test_loader_arguments_are_checked(call: Any, message: str) -> None:
    x, y = blobs(30)
    with pytest.raises(ValueError, match=message):
        call(classifier(), x, y)


def test_memmap_arguments_are_checked_without_reading(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.ones((10, 5), dtype=np.float32))
    x = np.load(tmp_path / "x.npy", mmap_mode="r")
    with pytest.raises(ValueError, match=r"X_train must have shape \(N, 6\) .*got \(10, 5\)"):
        classifier().train(x, np.ones((10, 3)), epochs=1, batch_size=4)
    np.save(tmp_path / "x6.npy", np.ones((10, 6), dtype=np.float32))
    x6 = np.load(tmp_path / "x6.npy", mmap_mode="r")
    with pytest.raises(ValueError, match="X_train and y_train must hold as many samples"):
        classifier().train(x6, np.ones((9, 3)), epochs=1, batch_size=4)


def test_predict_on_a_generator_follows_its_batches() -> None:
    x, y = blobs()
    model = trained(x, y)

    def pieces() -> Any:
        for start in (0, 40, 100):
            yield x[start : start + 40], None  # inputs alone: predict needs no targets

    expected = model.predict(np.concatenate([x[0:40], x[40:80], x[100:140]]))
    np.testing.assert_allclose(model.predict(GeneratorLoader(pieces, 3)), expected, atol=1e-6)


class Recorder(Layer):
    """Identity that records the first feature of every training batch it sees."""

    def __init__(self, size: int) -> None:
        super().__init__(input_shape=size)
        self.seen: list[list[int]] = []

    def forward(self, input_batch: Any, training: bool = True) -> Any:
        if training:
            self.seen.append(to_host(input_batch)[:, 0].astype(int).tolist())
        return input_batch

    def backward(self, output_gradient_batch: Any) -> Any:
        return output_gradient_batch


@pytest.mark.parametrize("auto_evaluation", [0.0, 0.25])
def test_each_batch_holds_the_samples_drawn_as_before_loaders(auto_evaluation: float) -> None:
    # 1.2.0 drew the split, then per epoch x[train_idx][permutation]: the same sets of
    # samples reach each batch now, rows sorted.
    n, batch = 40, 6
    x = np.repeat(np.arange(n, dtype=np.float32)[:, None], 2, axis=1)
    recorder = Recorder(2)
    model = Model([recorder, Dense(1)], MSE())
    set_seed(8)
    model.train(x, x[:, :1], epochs=2, batch_size=batch, auto_evaluation=auto_evaluation, verbose=0)
    set_seed(8)
    train_idx = np.arange(n)
    if auto_evaluation:
        order = to_host(xp.random.permutation(n))
        train_idx = order[int(n * auto_evaluation) :]
    expected = []
    for _ in range(2):
        permutation = to_host(xp.random.permutation(len(train_idx)))
        for start in range(0, len(train_idx), batch):
            expected.append(sorted(train_idx[permutation[start : start + batch]].tolist()))
    assert recorder.seen == expected


@pytest.mark.parametrize("batch_size", ["left out", None, 16])
def test_a_loader_keeps_its_batch_size_when_train_leaves_it_out(batch_size: Any) -> None:
    # Model.train's default (32) never overrides a loader's own batch size.
    x, y = blobs(40)
    sizes: list[int] = []
    record = LambdaCallback(on_batch_end=lambda batch, logs: sizes.append(logs["size"]))
    model = classifier()
    options = {} if batch_size == "left out" else {"batch_size": batch_size}
    model.train(
        DataLoader(x, y, batch_size=16), epochs=1, auto_evaluation=0, verbose=0,
        callbacks=[record], **options,
    )  # fmt: skip
    assert sizes == [16, 16, 8]
