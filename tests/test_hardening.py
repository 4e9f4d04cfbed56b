"""Issue 10: files that cannot exhaust memory, no stray NumPy warnings, epsilon = 0,
interrupted saves, and the optimizer state after a divergence."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers_model import assert_same_arrays, model_arrays
from mpneuralnetwork import set_seed, to_device, to_host
from mpneuralnetwork.activations import Activation, ReLU, Sigmoid, Softmax, Tanh
from mpneuralnetwork.layers import (
    GRU,
    LSTM,
    BatchNormalization,
    BatchNormalization2D,
    Container,
    Convolutional,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    LayerNormalization,
    MaxPooling2D,
    MultiHeadAttention,
    PositionEmbedding,
    Recurrent,
    SimpleRNN,
)
from mpneuralnetwork.losses import MSE, BinaryCrossEntropy, CategoricalCrossEntropy
from mpneuralnetwork.metrics import F1Score, Precision, R2Score, Recall
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import SGD, Adam
from mpneuralnetwork.serialization import _LAYERS, load_model, save_model

ROOT = Path(__file__).resolve().parent.parent


def trained_model() -> Model:
    model = Model(
        [
            Convolutional(2, 3, input_shape=(1, 6, 6), padding="same"),
            BatchNormalization2D(),
            ReLU(),
            MaxPooling2D(2),
            Flatten(),
            Dense(4),
            BatchNormalization(),
            Tanh(),
            Dense(3),
        ],
        CategoricalCrossEntropy(),
        Adam(learning_rate=0.01),
    )
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 1, 6, 6)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 12)]
    model.train(x, y, epochs=1, batch_size=4, verbose=0)
    return model


def archive_of(model: Model, tmp_path: Path) -> dict[str, np.ndarray]:
    with np.load(save_model(model, tmp_path / "valid"), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def edit_architecture(arrays: dict[str, np.ndarray], index: int, **changes: Any) -> None:
    architecture = json.loads(str(arrays["architecture"]))
    architecture[index].update(changes)
    arrays["architecture"] = np.array(json.dumps(architecture))


def write(tmp_path: Path, arrays: dict[str, Any], **kwargs: Any) -> Path:
    path = tmp_path / "crafted.npz"
    np.savez(path, **arrays, **kwargs)
    return path


def peak_bytes_while(call: Any) -> int:
    """Peak memory traced during ``call()`` (NumPy reports its buffers to tracemalloc)."""
    tracemalloc.start()
    try:
        call()
    except ValueError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


# ---------------------------------------------- 1. shapes before allocation
@pytest.mark.parametrize(
    ("index", "changes", "array"),
    [
        (5, {"output_size": 10**12}, "layer_5_weights"),  # 8 TB if it were drawn
        (0, {"output_depth": 10**10}, "layer_0_kernels"),
        (0, {"kernel_size": 3000, "padding": 3000}, "layer_0_kernels"),
    ],
)
def test_a_huge_configured_layer_is_refused_before_allocating(
    tmp_path: Path, index: int, changes: dict[str, Any], array: str
) -> None:
    arrays = archive_of(trained_model(), tmp_path)
    edit_architecture(arrays, index, **changes)
    with pytest.raises(ValueError, match=f"'{array}' must have shape"):
        load_model(write(tmp_path, arrays))


def test_loading_allocates_no_more_than_the_file_holds(tmp_path: Path) -> None:
    arrays = archive_of(trained_model(), tmp_path)
    path = write(tmp_path, arrays)
    honest = peak_bytes_while(lambda: load_model(path))
    # 2 million outputs: the old loader drew a 16 MB weight matrix (and more) first
    edit_architecture(arrays, 5, output_size=2_000_000)
    crafted = peak_bytes_while(lambda: load_model(write(tmp_path, arrays)))
    assert crafted <= honest + 1_000_000, (crafted, honest)


@pytest.mark.parametrize("explicit", [False, True])
def test_load_model_leaves_the_global_random_state_alone(tmp_path: Path, explicit: bool) -> None:
    # explicit initializations draw at build (even in the constructor), "auto" ones in Model
    model = (
        Model(
            [
                Convolutional(2, 3, input_shape=(1, 4, 4), initialization="he"),
                Flatten(),
                Dense(3, initialization="xavier"),
            ],
            MSE(),
        )
        if explicit
        else trained_model()
    )
    path = save_model(model, tmp_path / "model")
    set_seed(7)
    before = np.random.get_state()  # noqa: NPY002 - the global state is the point
    loaded = load_model(path)
    after = np.random.get_state()  # noqa: NPY002
    assert before[0] == after[0] and before[2:] == after[2:]
    np.testing.assert_array_equal(before[1], after[1])
    assert_same_arrays(model_arrays(loaded), model_arrays(model))
    assert [c.get_config() for c in loaded.layers] == [c.get_config() for c in model.layers]


def test_every_library_layer_states_its_array_shapes_without_allocating() -> None:
    """array_shapes (what the loader compares first) equals what building allocates."""
    examples = {
        "Dense": [Dense(3), Dense(2, no_bias=True)],
        "Convolutional": [Convolutional(2, 2), Convolutional(3, 1, no_bias=True)],
        "BatchNormalization": [BatchNormalization()],
        "BatchNormalization2D": [BatchNormalization2D()],
        "SimpleRNN": [SimpleRNN(3), SimpleRNN(2, return_sequences=True)],
        "LSTM": [LSTM(3)],
        "GRU": [GRU(3)],
        "Embedding": [Embedding(6, 4)],
        "LayerNormalization": [LayerNormalization()],
        "MultiHeadAttention": [MultiHeadAttention(2), MultiHeadAttention(1, causal=True)],
        "PositionEmbedding": [PositionEmbedding(7)],
        "Recurrent": [],  # the base of the three above; it has no cell of its own
    }
    parameterless = {"Dropout", "Flatten", "MaxPooling2D", "AveragePooling2D", "Layer"}
    parameterless |= {"Reshape", "UpSampling2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D"}
    arguments: dict[str, tuple[Any, ...]] = {"Activation": (abs, abs), "Reshape": ((-1,),)}
    for name, cls in _LAYERS.items():
        if name in examples or issubclass(cls, Container):
            continue  # containers: the loader checks each inner layer (test_containers.py)
        assert name in parameterless or issubclass(cls, Activation), (
            f"{name}: add an example here, and array_shapes to the layer if it holds arrays"
        )
        layer = cls(*arguments.get(name, ()))
        assert layer.array_shapes((4,)) == {} and not layer.params and not layer.state
    for name, instances in examples.items():
        for layer in instances:
            input_shape = (2, 5, 5) if "2D" in name or name == "Convolutional" else (5,)
            if isinstance(layer, (Recurrent, MultiHeadAttention, PositionEmbedding)):
                input_shape = (5, 4)  # (T, F)
            shapes = layer.array_shapes(input_shape)
            assert not layer.params, "array_shapes must not allocate"
            layer.build(input_shape)
            if hasattr(layer, "no_bias"):
                layer.init_weights("he", layer.no_bias)
            held = {n: tuple(v.shape) for n, (v, _) in layer.params.items()}
            held.update({f"state_{n}": tuple(v.shape) for n, v in layer.state.items()})
            assert shapes == held, name


# ------------------------------------------------------- 2. non-finite arrays
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("layer_5_weights", np.nan),
        ("layer_6_state_cache_v", np.inf),
        ("optimizer_momentums_layer_0_kernels", -np.inf),
    ],
)
def test_non_finite_arrays_are_refused_by_name(tmp_path: Path, name: str, value: float) -> None:
    arrays = archive_of(trained_model(), tmp_path)
    arrays[name] = arrays[name].copy()
    arrays[name].flat[1] = value
    with pytest.raises(ValueError, match=f"'{name}' holds NaN or infinite values"):
        load_model(write(tmp_path, arrays))


# ---------------------------------------------------------- 3. object arrays
@pytest.mark.parametrize("name", ["architecture", "model_config", "layer_0_kernels", "junk"])
def test_object_arrays_get_the_librarys_message(tmp_path: Path, name: str) -> None:
    arrays: dict[str, Any] = archive_of(trained_model(), tmp_path)
    arrays[name] = np.array([{"a": 1}, None], dtype=object)
    with pytest.raises(ValueError) as raised:
        load_model(write(tmp_path, arrays, allow_pickle=True))
    message = str(raised.value)
    assert f"entry '{name}'" in message and "object array" in message
    assert "allow_pickle" not in message  # not NumPy's own words


def test_an_entry_declaring_more_data_than_it_holds_is_refused(tmp_path: Path) -> None:
    arrays = archive_of(trained_model(), tmp_path)
    path = write(tmp_path, arrays)
    # rewrite the header of one member to claim a huge shape, keeping the data small
    import zipfile

    with zipfile.ZipFile(path) as source:
        members = {info.filename: source.read(info) for info in source.infolist()}
    member = members["layer_8_biases.npy"]
    header_end = member.index(b"\n") + 1
    header = member[:header_end].replace(b"(1, 3)", b"(1, 300000000)")
    members["layer_8_biases.npy"] = header + member[header_end:]
    crafted = tmp_path / "lying.npz"
    with zipfile.ZipFile(crafted, "w") as target:
        for filename, data in members.items():
            target.writestr(filename, data)
    with pytest.raises(ValueError, match=r"'layer_8_biases' .*declares shape"):
        load_model(crafted)


# ---------------------------------------------------- 4. no NumPy warnings
def diverging_run(verbose: int) -> tuple[Model, Any]:
    set_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype(np.float32) * 3
    y = x @ rng.standard_normal((4, 2)).astype(np.float32)
    model = Model([Dense(8, input_size=4), ReLU(), Dense(2)], MSE(), SGD(learning_rate=10))
    return model, model.train(x, y, epochs=5, batch_size=8, verbose=verbose)


@pytest.mark.filterwarnings("error")
def test_a_diverging_run_is_reported_by_the_library_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    model, history = diverging_run(verbose=1)
    assert "TRAINING STOPPED" in capsys.readouterr().out
    assert not math.isfinite(history.history["loss"][-1])
    assert all(np.isfinite(v).all() for v in model_arrays(model).values())


def test_a_silent_diverging_run_warns_once_with_the_librarys_message() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        diverging_run(verbose=0)
    assert [str(w.message)[:16] for w in caught] == ["TRAINING STOPPED"]


@pytest.mark.filterwarnings("error")
def test_overflowing_inference_does_not_warn(capsys: pytest.CaptureFixture[str]) -> None:
    for loss, y in (
        (MSE(), np.zeros((3, 2))),
        (BinaryCrossEntropy(), np.ones((3, 2))),
        (CategoricalCrossEntropy(), np.eye(2)[[0, 1, 0]]),
    ):
        model = Model([Dense(4, input_size=3), Tanh(), Dense(2)], loss)
        model.layers[2].weights[...] = 3e38  # finite, but the products overflow
        x = np.full((3, 3), 1.0, dtype=np.float32)
        model.predict(x)
        model.evaluate(x, y)
        model.test(x, y)
    capsys.readouterr()
    # the state is restored after each call: outside them, NumPy warns as usual
    with pytest.raises(RuntimeWarning):
        np.float32(3e38) * np.float32(10)


# --------------------------------------------------------------- 5. epsilon 0
def test_categorical_cross_entropy_with_epsilon_zero_is_the_exact_loss() -> None:
    logits = np.array([[1000.0, 0.0, -1000.0], [0.5, -0.25, 2.0]], dtype=np.float64)
    y = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    loss = CategoricalCrossEntropy(temperature=2.0, epsilon=0.0)
    # by hand: row 1, −log softmax(z/2)[2] = 500 − (−500) + log(1 + e^−500 + e^−1000) = 1000
    # row 2: z/2 = (0.25, −0.125, 1), −log p1 = 0.125 + log(e^.25 + e^−.125 + e^1)
    row2 = 0.125 + math.log(math.exp(0.25) + math.exp(-0.125) + math.exp(1.0))
    assert loss.direct(to_device(logits), to_device(y)) == pytest.approx((1000 + row2) / 2)
    value, gradient = loss.value_and_gradient(to_device(logits), to_device(y))
    assert float(value) == pytest.approx((1000 + row2) / 2)
    z = logits / 2
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(to_host(gradient), (p - y) / 2 / 2, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(to_host(loss.prime(to_device(logits), to_device(y))), (p - y) / 4)
    # with the default epsilon the confident mistake is capped at −log(1e-8)
    capped = CategoricalCrossEntropy(temperature=2.0).direct(to_device(logits), to_device(y))
    assert capped < 20
    with pytest.raises(ValueError, match="temperature \\+ epsilon"):
        CategoricalCrossEntropy(temperature=0.0, epsilon=0.0)


def test_softmax_with_epsilon_zero_divides_by_the_temperature_alone() -> None:
    x = np.array([[3.0, 1.0, -2.0]])
    s = Softmax(temperature=0.5, epsilon=0.0)
    out = to_host(s.forward(to_device(x)))
    expected = np.exp(x / 0.5 - 6.0) / np.exp(x / 0.5 - 6.0).sum()
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    g = np.array([[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(
        to_host(s.backward(to_device(g))), expected * (g - expected[0, 0]) / 0.5, rtol=1e-12
    )


@pytest.mark.filterwarnings("error")
def test_metrics_with_epsilon_zero_stay_finite_where_they_can() -> None:
    nothing_predicted = (np.array([[1.0], [0.0]]), np.array([[0.2], [0.1]]))
    assert Precision(epsilon=0.0)(*nothing_predicted) == 0.0
    assert Recall(epsilon=0.0)(*nothing_predicted) == 0.0
    assert F1Score(epsilon=0.0)(*nothing_predicted) == 0.0
    # 3 classes; class 2 is never predicted and never present
    y_true = np.eye(3)[[0, 1, 1, 0]]
    y_pred = np.eye(3)[[0, 1, 0, 0]] * 0.8 + 0.05
    # precision per class: 2/3, 1/1, 0 -> mean 5/9; recall: 2/2, 1/2, 0 -> mean 1/2
    assert Precision(epsilon=0.0)(to_device(y_true), to_device(y_pred)) == pytest.approx(5 / 9)
    assert Recall(epsilon=0.0)(to_device(y_true), to_device(y_pred)) == pytest.approx(0.5)
    f1 = 2 * (5 / 9) * 0.5 / (5 / 9 + 0.5)
    assert F1Score(epsilon=0.0)(to_device(y_true), to_device(y_pred)) == pytest.approx(f1)
    constant = np.full((3, 1), 2.0)
    assert R2Score(epsilon=0.0)(constant, constant) == 1.0
    assert R2Score(epsilon=0.0)(constant, constant + 1) == -math.inf
    varied = np.array([[1.0], [2.0], [4.0]])  # SS_tot = 14/3; SS_res = 3
    assert R2Score(epsilon=0.0)(varied, varied + 1) == pytest.approx(1 - 3 / (14 / 3))


def test_a_model_trains_with_epsilon_zero(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[x.argmax(axis=1)]
    model = Model([Dense(3, input_size=3)], CategoricalCrossEntropy(epsilon=0.0), Adam(0.05))
    history = model.train(x, y, epochs=30, batch_size=10, auto_evaluation=0, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    loaded = load_model(save_model(model, tmp_path / "m"))
    assert loaded.loss.epsilon == 0.0 and loaded.output_activation.epsilon == 0.0
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


# ------------------------------------------------------- interrupted saves
def test_an_exception_inside_the_write_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = trained_model()
    path = save_model(model, tmp_path / "model")
    original = path.read_bytes()
    model.layers[5].weights[...] = 7.0

    def interrupted(file: Any, *args: Any, **kwargs: Any) -> None:
        file.write(b"PK partial")
        raise KeyboardInterrupt  # not an Exception: cleaned up all the same

    monkeypatch.setattr(np, "savez_compressed", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_model(model, path)
    monkeypatch.undo()
    assert path.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


KILLED_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from mpneuralnetwork.layers import Dense
    from mpneuralnetwork.losses import MSE
    from mpneuralnetwork.model import Model
    from mpneuralnetwork.serialization import save_model

    model = Model([Dense(2, input_size=2)], MSE())
    model.layers[0].weights[...] = 7.0

    def killed(file, *args, **kwargs):
        file.write(b"PK partial")
        file.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    np.savez_compressed = killed
    save_model(model, sys.argv[1])
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX only")
def test_a_killed_save_keeps_the_previous_file_and_the_next_save_cleans_up(
    tmp_path: Path,
) -> None:
    model = Model([Dense(2, input_size=2)], MSE())
    path = save_model(model, tmp_path / "model")
    original = path.read_bytes()
    result = subprocess.run(
        [sys.executable, "-c", KILLED_SAVE, str(path)], env=dict(os.environ), timeout=120
    )
    assert result.returncode == -signal.SIGKILL
    assert path.read_bytes() == original  # the previous file is intact
    stale = [p.name for p in tmp_path.iterdir() if p != path]
    assert len(stale) == 1 and stale[0].startswith(".model.npz.") and stale[0].endswith(".tmp")
    assert_same_arrays(model_arrays(load_model(path)), model_arrays(model))
    save_model(model, tmp_path / "other")  # a save elsewhere leaves it alone
    assert (tmp_path / stale[0]).exists()
    save_model(model, path)  # the next save of the same file removes it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz", "other.npz"]


def test_a_temporary_of_a_live_save_is_not_removed(tmp_path: Path) -> None:
    model = Model([Dense(2, input_size=2)], MSE())
    busy = tmp_path / f".model.npz.{os.getpid()}.abc123.tmp"  # this very process: alive
    busy.write_bytes(b"in progress")
    save_model(model, tmp_path / "model")
    assert busy.exists()


# --------------------------------------- optimizer state after a divergence
@pytest.mark.parametrize("checkpoint", [True, False])
def test_a_divergence_in_epoch_one_leaves_no_nan_optimizer_state(
    checkpoint: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    set_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype(np.float32) * 3
    y = x @ rng.standard_normal((4, 2)).astype(np.float32)
    optimizer = SGD(learning_rate=10, momentum=0.9)
    model = Model([Dense(8, input_size=4), ReLU(), Dense(2)], MSE(), optimizer)
    history = model.train(x, y, epochs=3, batch_size=8, model_checkpoint=checkpoint)
    assert "TRAINING STOPPED" in capsys.readouterr().out
    assert len(history.history["loss"]) == 1  # diverged in the first epoch
    # the state of epoch 0 is no state at all
    assert optimizer.velocities == {}
    optimizer.learning_rate = 0.001
    history = model.train(x, y, epochs=2, batch_size=8, model_checkpoint=checkpoint)
    assert all(math.isfinite(v) for v in history.history["loss"])
    assert all(np.isfinite(v).all() for v in model_arrays(model).values())


def test_dropout_and_activations_hold_no_arrays() -> None:
    for layer in (Dropout(0.3), Flatten(), ReLU(), Softmax()):
        assert layer.array_shapes((3,)) == {}


@pytest.mark.parametrize(
    ("loss", "last"),
    [(BinaryCrossEntropy(), Sigmoid), (CategoricalCrossEntropy(temperature=2.0), Softmax)],
)
def test_a_network_ending_with_the_output_activation_round_trips(
    tmp_path: Path, loss: Any, last: Any
) -> None:
    # the Model drops the second copy (the output activation) and keeps the first
    model = Model([Dense(3, input_size=2), last(), last()], loss)
    assert [type(layer) for layer in model.layers] == [Dense, last]
    loaded = load_model(save_model(model, tmp_path / "m"))
    assert [type(layer) for layer in loaded.layers] == [Dense, last]
    x = np.array([[0.5, -1.0], [2.0, 0.25]], dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
