"""Issue 24, section 3: every unreadable file gets the library's own message, and a
crafted size is refused before anything is allocated or drawn, for every layer kind."""

from __future__ import annotations

import json
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers_model import assert_same_arrays, model_arrays
from mpneuralnetwork import set_seed
from mpneuralnetwork.layers import (
    GRU,
    LSTM,
    BatchNormalization2D,
    Convolutional,
    Dense,
    Embedding,
    Flatten,
    SimpleRNN,
)
from mpneuralnetwork.losses import MSE
from mpneuralnetwork.model import Model
from mpneuralnetwork.serialization import load_model, save_model


# ------------------------------------------------------------ unreadable files
def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(512))


def _text(path: Path) -> None:
    path.write_text("layer_0_weights = [1, 2, 3]\n")


def _single_array(path: Path) -> None:
    with path.open("wb") as file:
        np.save(file, np.zeros(3))


def _plain_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not an array")


def _truncated_archive(path: Path) -> None:
    model = Model([Dense(2, input_size=3)], MSE())
    whole = save_model(model, path.with_name("whole.npz")).read_bytes()
    path.write_bytes(whole[: len(whole) // 2])


@pytest.mark.parametrize(
    "make",
    [_empty, _random_bytes, _text, _single_array, _plain_zip, _truncated_archive],
    ids=lambda f: f.__name__.strip("_"),
)
def test_an_unreadable_file_gets_the_librarys_message_alone(
    tmp_path: Path, make: Callable[[Path], None]
) -> None:
    path = tmp_path / "model.npz"
    make(path)
    with pytest.raises(ValueError) as caught:
        load_model(path)
    assert str(caught.value) == f"load_model: {path} is not a mpneuralnetwork model archive"
    error = caught.value  # nothing of NumPy's passed on, not even as the context
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    assert "pickle" not in str(caught.value)


# ----------------------------------------------------- crafted sizes, per kind
def _sequence_model() -> Model:
    return Model(
        [
            Embedding(20, 4, input_length=5),
            LSTM(3, return_sequences=True),
            GRU(3, return_sequences=True),
            SimpleRNN(3),
            Dense(2),
        ],
        MSE(),
    )


def _recurrent_first(cls: type) -> Callable[[], Model]:
    return lambda: Model([cls(3, input_shape=(4, 2)), Dense(2)], MSE())


def _image_model() -> Model:
    return Model(
        [Convolutional(2, 3, input_shape=(1, 5, 5)), BatchNormalization2D(), Flatten(), Dense(2)],
        MSE(),
    )


# Each case: a model, the layer to edit, the crafted config values. Built as saved, each
# would allocate (or draw) tens of megabytes at least. (The batch normalizations' sizes
# are the output sizes of the layer before them, refused there.)
CASES: dict[str, tuple[Callable[[], Model], int, dict[str, Any]]] = {
    "Embedding vocabulary_size": (_sequence_model, 0, {"vocabulary_size": 2_000_000}),
    "Embedding output_dim": (_sequence_model, 0, {"output_dim": 2_000_000}),
    "LSTM units": (_sequence_model, 1, {"units": 1500}),
    "GRU units": (_sequence_model, 2, {"units": 1500}),
    "SimpleRNN units": (_sequence_model, 3, {"units": 3000}),
    "SimpleRNN input_shape": (_recurrent_first(SimpleRNN), 0, {"input_shape": [4, 4_000_000]}),
    "LSTM input_shape": (_recurrent_first(LSTM), 0, {"input_shape": [4, 1_000_000]}),
    "GRU input_shape": (_recurrent_first(GRU), 0, {"input_shape": [4, 1_000_000]}),
    "Dense output_size": (_sequence_model, 4, {"output_size": 4_000_000}),
    "Dense input_size": (lambda: Model([Dense(2, input_size=3)], MSE()), 0, {"input_size": 10**7}),
    "Convolutional output_depth": (_image_model, 0, {"output_depth": 1_000_000}),
    "Convolutional input_shape": (_image_model, 0, {"input_shape": [1, 3000, 3000]}),
}


def _crafted(tmp_path: Path, case: str) -> Path:
    make, index, changes = CASES[case]
    path = save_model(make(), tmp_path / "honest")
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    architecture = json.loads(str(arrays["architecture"]))
    architecture[index].update(changes)
    arrays["architecture"] = np.array(json.dumps(architecture))
    crafted = tmp_path / "crafted.npz"
    np.savez(crafted, **arrays)
    return crafted


@pytest.mark.parametrize("case", list(CASES))
def test_a_crafted_size_is_refused_before_allocating_or_drawing(tmp_path: Path, case: str) -> None:
    path = _crafted(tmp_path, case)
    set_seed(3)
    before = np.random.get_state()  # noqa: NPY002 - the global state is the point
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="load_model"):
            load_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    after = np.random.get_state()  # noqa: NPY002
    assert peak < 4_000_000, f"{case}: {peak} bytes allocated before the refusal"
    assert before[0] == after[0] and before[2:] == after[2:], case
    np.testing.assert_array_equal(before[1], after[1])


@pytest.mark.parametrize("make", [_sequence_model, _recurrent_first(LSTM), _image_model])
def test_a_valid_archive_of_every_kind_loads_without_drawing(
    tmp_path: Path, make: Callable[[], Model]
) -> None:
    model = make()
    path = save_model(model, tmp_path / "model")
    set_seed(5)
    before = np.random.get_state()  # noqa: NPY002
    loaded = load_model(path)
    after = np.random.get_state()  # noqa: NPY002
    np.testing.assert_array_equal(before[1], after[1])
    assert before[2:] == after[2:]
    assert_same_arrays(model_arrays(loaded), model_arrays(model))
    assert [c.get_config() for c in loaded.layers] == [c.get_config() for c in model.layers]
