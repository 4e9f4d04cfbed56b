"""save_model / load_model round trips, resumed training, atomic saves and refusals."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers_model import assert_same_arrays, differs, model_arrays
from mpneuralnetwork import set_seed, to_host
from mpneuralnetwork.activations import PReLU, ReLU, Sigmoid, Softmax, Swish, Tanh
from mpneuralnetwork.layers import (
    AveragePooling2D,
    BatchNormalization,
    BatchNormalization2D,
    Convolutional,
    Dense,
    Dropout,
    Flatten,
    MaxPooling2D,
)
from mpneuralnetwork.losses import MSE, BinaryCrossEntropy, CategoricalCrossEntropy
from mpneuralnetwork.metrics import MAE, Precision, TopKAccuracy
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import SGD, Adam, RMSprop
from mpneuralnetwork.serialization import (
    get_model_weights,
    layer_from_config,
    load_model,
    restore_model_weights,
    save_model,
)

OPTIMIZERS = {
    "SGD": lambda: SGD(learning_rate=0.05, momentum=0.9, weight_decay=0.01),
    "RMSprop": lambda: RMSprop(learning_rate=0.01, regularization="L1", weight_decay=0.001),
    "Adam": lambda: Adam(learning_rate=0.01, beta1=0.8),
}


def every_layer_model(optimizer: Any) -> Model:
    """A model holding every layer type and every activation."""
    return Model(
        [
            Convolutional(4, 3, input_shape=(2, 10, 10), padding=1, no_bias=True),  # (4, 10, 10)
            BatchNormalization2D(momentum=0.8),
            PReLU(alpha=0.2),
            MaxPooling2D(3, strides=2),  # (4, 4, 4)
            Convolutional(3, 3, padding="same", initialization="he"),  # (3, 4, 4)
            Swish(),
            AveragePooling2D(2),  # (3, 2, 2)
            Flatten(),  # 12
            Dense(10),
            BatchNormalization(epsilon=1e-5),
            Tanh(),
            Dropout(0.2),
            Dense(8, initialization="xavier"),
            ReLU(),
            Dense(6),
            Sigmoid(),
            Dense(5),
            Softmax(temperature=0.5),  # hidden: odd but valid
            Dense(3),
            Softmax(),  # removed: the loss's output activation
        ],
        CategoricalCrossEntropy(temperature=2.0),
        optimizer,
        [Precision(), TopKAccuracy(2)],
    )


def image_data(n: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2, 10, 10)).astype(np.float32)
    labels = (x[:, 0, :5].mean(axis=(1, 2)) > 0).astype(int) + (x[:, 1].mean(axis=(1, 2)) > 0)
    return x, np.eye(3, dtype=np.float32)[labels]


def configs(model: Model) -> dict[str, Any]:
    return {
        "layers": [layer.get_config() for layer in model.layers],
        "loss": model.loss.get_config(),
        "optimizer": model.optimizer.get_config(),
        "metrics": [metric.get_config() for metric in model.metrics],
        "output": None if model.output_activation is None else model.output_activation.get_config(),
    }


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_round_trip_after_training(name: str, tmp_path: Path) -> None:
    x, y = image_data()
    model = every_layer_model(OPTIMIZERS[name]())
    model.train(x, y, epochs=2, batch_size=8, verbose=0)
    before = model_arrays(model)
    assert any(key.startswith("optimizer/") for key in before)  # optimizer state exists

    path = save_model(model, tmp_path / "model.npz")
    assert path == tmp_path / "model.npz"
    loaded = load_model(path)

    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    assert configs(loaded) == configs(model)
    assert_same_arrays(model_arrays(loaded), before)
    assert_same_arrays(model_arrays(model), before)  # saving changed nothing
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    # the pieces the corrections are about
    pool = loaded.layers[3]
    assert isinstance(pool, MaxPooling2D) and (pool.pool_size, pool.stride) == (3, 2)
    assert loaded.layers[0].no_bias and "biases" not in loaded.layers[0].params
    assert loaded.layers[0].padding == 1 and loaded.layers[4].padding_arg == "same"
    assert loaded.layers[2].alpha == 0.2
    assert isinstance(loaded.layers[-2], Softmax) and loaded.layers[-2].temperature == 0.5
    assert isinstance(loaded.output_activation, Softmax)
    assert loaded.output_activation.temperature == 2.0
    assert loaded.loss.temperature == 2.0
    if name == "Adam":
        assert (
            loaded.optimizer.t == model.optimizer.t == 2 * 3
        )  # 20 training samples (4 held out) / 8


def test_round_trip_regression_and_binary_models(tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((16, 3)).astype(np.float32)
    for loss, y, metrics in (
        (MSE(), x[:, :2] * 2, [MAE()]),
        (BinaryCrossEntropy(), (x[:, :1] > 0).astype(np.float32), None),
    ):
        model = Model([Dense(4, input_size=3), ReLU(), Dense(y.shape[1])], loss, Adam(), metrics)
        model.train(x, y, epochs=2, batch_size=5, verbose=0)
        loaded = load_model(save_model(model, tmp_path / "m"))
        assert configs(loaded) == configs(model)
        assert_same_arrays(model_arrays(loaded), model_arrays(model))
        np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_resumed_training_equals_uninterrupted_training(name: str, tmp_path: Path) -> None:
    x, y = image_data()
    kwargs: dict[str, Any] = {"batch_size": 8, "auto_evaluation": 0, "verbose": 0}

    set_seed(21)
    straight = every_layer_model(OPTIMIZERS[name]())
    straight.train(x, y, epochs=2, **kwargs)
    set_seed(99)  # realign the random stream (shuffles, dropout masks) for the last epoch
    straight.train(x, y, epochs=1, **kwargs)

    set_seed(21)
    first = every_layer_model(OPTIMIZERS[name]())
    first.train(x, y, epochs=2, **kwargs)
    path = save_model(first, tmp_path / "half")
    del first
    resumed = load_model(path)
    set_seed(99)
    resumed.train(x, y, epochs=1, **kwargs)

    assert_same_arrays(model_arrays(resumed), model_arrays(straight))


def test_without_the_optimizer_state_resuming_would_differ(tmp_path: Path) -> None:
    """Guards the test above: dropping the saved moments does change the result."""
    x, y = image_data()
    kwargs: dict[str, Any] = {"batch_size": 8, "auto_evaluation": 0, "verbose": 0}
    set_seed(21)
    model = every_layer_model(OPTIMIZERS["Adam"]())
    model.train(x, y, epochs=2, **kwargs)
    resumed = load_model(save_model(model, tmp_path / "m"))
    fresh = load_model(tmp_path / "m.npz")
    fresh.optimizer = Adam(learning_rate=0.01, beta1=0.8)
    set_seed(99)
    resumed.train(x, y, epochs=1, **kwargs)
    set_seed(99)
    fresh.train(x, y, epochs=1, **kwargs)
    params = {k: v for k, v in model_arrays(resumed).items() if k.startswith("param/")}
    fresh_params = {k: v for k, v in model_arrays(fresh).items() if k.startswith("param/")}
    assert differs(params, fresh_params)


# ------------------------------------------------------------------ paths
def small_model() -> Model:
    return Model([Dense(3, input_size=2), ReLU(), Dense(2)], CategoricalCrossEntropy(), Adam())


def test_npz_suffix_is_appended_and_paths_are_accepted(tmp_path: Path) -> None:
    model = small_model()
    written = save_model(model, str(tmp_path / "weights"))
    assert written == tmp_path / "weights.npz"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.npz"]
    for path in (tmp_path / "weights", tmp_path / "weights.npz", str(tmp_path / "weights.npz")):
        assert_same_arrays(model_arrays(load_model(path)), model_arrays(model))
    # a Path without a suffix, and a different suffix, both get .npz appended
    assert save_model(model, tmp_path / "other") == tmp_path / "other.npz"
    assert save_model(model, tmp_path / "model.v2") == tmp_path / "model.v2.npz"


def test_relative_path_in_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    model = small_model()
    save_model(model, "here")
    assert (tmp_path / "here.npz").exists()
    assert_same_arrays(model_arrays(load_model("here")), model_arrays(model))


def test_archive_layout(tmp_path: Path) -> None:
    model = small_model()
    x = np.zeros((4, 2), dtype=np.float32)
    model.train(x, np.eye(2, dtype=np.float32)[[0, 1, 0, 1]], epochs=1, batch_size=4, verbose=0)
    with np.load(save_model(model, tmp_path / "m"), allow_pickle=False) as archive:
        names = set(archive.files)
        architecture = json.loads(str(archive["architecture"]))
        config = json.loads(str(archive["model_config"]))
        dtypes = {name: archive[name].dtype for name in names if name.startswith(("layer", "opt"))}
    params = {"layer_0_weights", "layer_0_biases", "layer_2_weights", "layer_2_biases"}
    optimizer = {f"optimizer_{s}_{p}" for s in ("momentums", "velocities") for p in params}
    assert names == {"architecture", "model_config"} | params | optimizer
    assert all(dtype == np.float32 for dtype in dtypes.values())
    assert [c["type"] for c in architecture] == ["Dense", "ReLU", "Dense"]
    assert config["loss"] == {
        "type": "CategoricalCrossEntropy",
        "temperature": 1.0,
        "epsilon": 1e-8,
    }
    assert config["optimizer"]["type"] == "Adam"
    assert config["optimizer_globals"] == {"t": 1}


# ------------------------------------------------------------------ atomic
def test_failed_save_keeps_the_previous_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = small_model()
    path = save_model(model, tmp_path / "model")
    original = path.read_bytes()
    model.layers[0].weights[...] = 7.0  # something different to save

    def failing_save(file: Any, *args: Any, **kwargs: Any) -> None:
        file.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_model(model, path)
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]
    monkeypatch.undo()
    loaded = load_model(path)
    assert not np.any(to_host(loaded.layers[0].weights) == 7.0)


# --------------------------------------------------------- flat weight dicts
def test_get_and_restore_model_weights(tmp_path: Path) -> None:
    x, y = image_data()
    model = every_layer_model(Adam())
    model.train(x, y, epochs=1, batch_size=8, verbose=0)
    weights = get_model_weights(model.layers, model.optimizer.params)
    assert "layer_0_kernels" in weights and "layer_0_biases" not in weights
    assert "layer_1_state_cache_m" in weights and "layer_9_state_cache_v" in weights
    assert "optimizer_momentums_layer_8_weights" in weights
    assert weights["optimizer_t"].shape == () and int(weights["optimizer_t"]) == model.optimizer.t
    assert all(type(v) is np.ndarray and v.dtype == np.float32 for v in weights.values())
    snapshot = model_arrays(model)
    for value in weights.values():  # copies: changing them leaves the model alone
        value[...] = 0.0
    assert_same_arrays(model_arrays(model), snapshot)

    weights = get_model_weights(model.layers, model.optimizer.params)
    model.train(x, y, epochs=1, batch_size=8, verbose=0)
    assert differs(model_arrays(model), snapshot)
    restore_model_weights(model.layers, weights, model.optimizer)
    assert model.optimizer.t == snapshot["optimizer/t"]  # the step count travels too
    assert_same_arrays(model_arrays(model), snapshot)

    del weights["layer_0_kernels"]
    with pytest.raises(ValueError, match="layer_0_kernels"):
        restore_model_weights(model.layers, weights)


# ------------------------------------------------------------------ refusals
def valid_archive(tmp_path: Path) -> dict[str, np.ndarray]:
    model = small_model()
    x = np.zeros((4, 2), dtype=np.float32)
    model.train(x, np.eye(2, dtype=np.float32)[[0, 1, 0, 1]], epochs=1, batch_size=4, verbose=0)
    with np.load(save_model(model, tmp_path / "valid"), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def write(tmp_path: Path, arrays: dict[str, Any], name: str = "bad.npz") -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def with_json(arrays: dict[str, np.ndarray], key: str, edit: Any) -> dict[str, Any]:
    value = json.loads(str(arrays[key]))
    edit(value)
    return {**arrays, key: np.array(json.dumps(value))}


def test_refuses_a_file_that_is_not_an_archive(tmp_path: Path) -> None:
    path = tmp_path / "noise.npz"
    path.write_bytes(os.urandom(256))
    with pytest.raises(ValueError):
        load_model(path)
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(ValueError):
        load_model(tmp_path / "single.npy")


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nothing.npz")


def test_refuses_an_archive_without_architecture(tmp_path: Path) -> None:
    arrays = valid_archive(tmp_path)
    del arrays["architecture"]
    with pytest.raises(ValueError, match="architecture"):
        load_model(write(tmp_path, arrays))
    with pytest.raises(ValueError, match="architecture"):
        load_model(write(tmp_path, {"a": np.zeros(3)}, "plain.npz"))


def test_refuses_missing_arrays(tmp_path: Path) -> None:
    arrays = valid_archive(tmp_path)
    del arrays["layer_2_biases"]
    with pytest.raises(ValueError, match="layer_2_biases"):
        load_model(write(tmp_path, arrays))


def test_refuses_a_partial_optimizer_state(tmp_path: Path) -> None:
    arrays = valid_archive(tmp_path)
    del arrays["optimizer_momentums_layer_0_weights"]  # would silently restart from zeros
    with pytest.raises(ValueError, match="optimizer_momentums_layer_0_weights"):
        load_model(write(tmp_path, arrays))
    arrays = valid_archive(tmp_path)
    for name in [n for n in arrays if n.startswith("optimizer_velocities_")]:
        del arrays[name]
    with pytest.raises(ValueError, match="optimizer_velocities_layer_2_biases"):
        load_model(write(tmp_path, arrays))
    # no optimizer state at all is fine: the model was never trained
    arrays = {n: v for n, v in valid_archive(tmp_path).items() if not n.startswith("optimizer_")}
    assert load_model(write(tmp_path, arrays)).optimizer.momentums == {}


def test_refuses_extra_arrays(tmp_path: Path) -> None:
    for extra in ("layer_7_weights", "bogus", "optimizer_momentums_layer_9_weights"):
        arrays = valid_archive(tmp_path)
        arrays[extra] = np.zeros((3, 2), dtype=np.float32)
        with pytest.raises(ValueError, match=extra):
            load_model(write(tmp_path, arrays))


def test_refuses_wrong_shapes(tmp_path: Path) -> None:
    for name in ("layer_0_weights", "optimizer_velocities_layer_2_weights"):
        arrays = valid_archive(tmp_path)
        arrays[name] = np.zeros((5, 5), dtype=np.float32)
        with pytest.raises(ValueError, match=name):
            load_model(write(tmp_path, arrays))


def test_refuses_non_float_arrays(tmp_path: Path) -> None:
    arrays = valid_archive(tmp_path)
    arrays["layer_0_weights"] = np.array([["a", "b", "c"], ["d", "e", "f"]])
    with pytest.raises(ValueError, match="layer_0_weights"):
        load_model(write(tmp_path, arrays))


@pytest.mark.parametrize(
    ("key", "edit"),
    [
        ("architecture", lambda a: a[0].update(type="Conv3D")),
        ("architecture", lambda a: a[0].update(type="Model")),
        ("model_config", lambda c: c["loss"].update(type="Hinge")),
        ("model_config", lambda c: c["optimizer"].update(type="Lion")),
        ("model_config", lambda c: c["metrics"][0].update(type="Magic")),
    ],
)
def test_refuses_unknown_class_names(tmp_path: Path, key: str, edit: Any) -> None:
    with pytest.raises(ValueError, match="unknown"):
        load_model(write(tmp_path, with_json(valid_archive(tmp_path), key, edit)))


@pytest.mark.parametrize(
    ("key", "edit"),
    [
        ("architecture", lambda a: a[0].update(output_size="3")),
        ("architecture", lambda a: a[0].update(output_size=-3)),
        ("architecture", lambda a: a[0].update(no_bias="yes")),
        ("architecture", lambda a: a[0].update(unexpected=1)),
        ("architecture", lambda a: a.clear()),
        ("architecture", lambda a: a.append("Dense")),
        ("model_config", lambda c: c["optimizer"].update(learning_rate="fast")),
        ("model_config", lambda c: c["optimizer_globals"].update(t="1")),
        ("model_config", lambda c: c["optimizer_globals"].update(t=True)),
        ("model_config", lambda c: c["optimizer_globals"].update(t=-5)),
        ("model_config", lambda c: c["optimizer_globals"].update(t=1.0)),
        ("model_config", lambda c: c["optimizer_globals"].update(velocities=3)),
        ("model_config", lambda c: c.pop("loss")),
    ],
)
def test_refuses_ill_typed_configs(tmp_path: Path, key: str, edit: Any) -> None:
    with pytest.raises(ValueError):
        load_model(write(tmp_path, with_json(valid_archive(tmp_path), key, edit)))


def test_refuses_invalid_json(tmp_path: Path) -> None:
    arrays = valid_archive(tmp_path)
    arrays["architecture"] = np.array("[{not json")
    with pytest.raises(ValueError, match="JSON"):
        load_model(write(tmp_path, arrays))


class Payload:
    """Unpickling this object creates a folder: the side effect to watch for."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("target", ["layer_0_weights", "architecture", "model_config"])
def test_refuses_pickled_objects_without_running_them(tmp_path: Path, target: str) -> None:
    marker = tmp_path / "pwned"
    payload = np.empty(1, dtype=object)
    payload[0] = Payload(marker)
    arrays: dict[str, Any] = {**valid_archive(tmp_path), target: payload}
    path = tmp_path / "evil.npz"
    np.savez(path, allow_pickle=True, **arrays)
    # the payload does work when unpickled (so the test can tell)
    with np.load(path, allow_pickle=True) as archive:
        archive[target]
    assert marker.exists()
    marker.rmdir()

    with pytest.raises(ValueError):
        load_model(path)
    assert not marker.exists()


# ------------------------------------------------------------- layer_from_config
@pytest.mark.parametrize(
    "layer",
    [
        Dense(4, initialization="he"),
        Dense(3, input_size=5, no_bias=True),
        Convolutional(2, 3, input_shape=(1, 6, 6), initialization="xavier"),
        PReLU(0.2),
        Softmax(temperature=2.0),
        Dropout(0.25),
    ],
)
def test_layer_from_config_makes_an_untrained_twin(layer: Any) -> None:
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    twin = layer_from_config(layer.get_config())
    assert type(twin) is type(layer) and twin is not layer
    assert twin.get_config() == layer.get_config()
    assert all(value is None for value, _ in twin.params.values()) or not twin.params
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # noqa: NPY002 (no draw)


def test_layer_from_config_takes_custom_classes_and_names_itself() -> None:
    class Doubler(ReLU):
        pass

    config = {"type": "Doubler"}
    with pytest.raises(ValueError, match=r"layer_from_config: unknown layer class 'Doubler'"):
        layer_from_config(config)
    assert type(layer_from_config(config, {"Doubler": Doubler})) is Doubler
    with pytest.raises(ValueError, match="layer_from_config: bad arguments for Dense"):
        layer_from_config({"type": "Dense", "units": 3})
