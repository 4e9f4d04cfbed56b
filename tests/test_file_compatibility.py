"""Files written before container layers existed load exactly as they did.

tests/data holds two models saved by mpneuralnetwork 1.2.0 (a CNN with batch
normalizations and Adam state, an Embedding → LSTM with RMSprop state; written by
tests/data/write_1_2_0_files.py) and their predictions then.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mpneuralnetwork.serialization import get_model_weights, load_model, save_model

DATA = Path(__file__).resolve().parent / "data"


@pytest.mark.parametrize("name", ["cnn", "lstm"])
def test_a_1_2_0_file_loads_every_array_and_predicts_as_then(name: str, tmp_path: Path) -> None:
    path = DATA / f"{name}-1.2.0.npz"
    model = load_model(path)
    with np.load(path) as stored:
        arrays = {k: stored[k] for k in stored.files if k not in ("architecture", "model_config")}
        architecture = json.loads(str(stored["architecture"]))
    loaded = get_model_weights(model.layers, model.optimizer.params)
    loaded.pop("optimizer_t", None)  # Adam's step count: in the file's JSON config
    assert sorted(loaded) == sorted(arrays)
    for key, value in loaded.items():
        np.testing.assert_array_equal(value, arrays[key], err_msg=key)
    configs = json.loads(json.dumps([layer.get_config() for layer in model.layers]))
    assert configs == architecture
    with np.load(DATA / "expected-1.2.0.npz") as expected:
        x, y = expected[f"{name}_x"], expected[f"{name}_y"]
    # The same arithmetic; the last bits may differ under another BLAS kernel.
    np.testing.assert_allclose(model.predict(x), y, rtol=1e-5, atol=1e-6)
    again = save_model(model, tmp_path / name)
    with np.load(again) as saved, np.load(path) as stored:
        assert sorted(saved.files) == sorted(stored.files)
        assert str(saved["architecture"]) == str(stored["architecture"])


def test_a_first_layer_without_parameters_keeps_its_declared_input(tmp_path: Path) -> None:
    from mpneuralnetwork.layers import Dense, Flatten, Layer
    from mpneuralnetwork.losses import MSE
    from mpneuralnetwork.model import Model

    model = Model([Flatten(input_shape=(1, 4, 4)), Dense(2)], MSE())
    assert model.layers[0].get_config() == {"type": "Flatten", "input_shape": (1, 4, 4)}
    assert Flatten().get_config() == {"type": "Flatten"} and Layer().get_config() == {
        "type": "Layer"
    }
    loaded = load_model(save_model(model, tmp_path / "flat"))
    x = np.random.default_rng(0).standard_normal((3, 1, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
