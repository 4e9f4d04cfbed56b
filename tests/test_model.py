"""Model: construction rules, training loop, checkpoints, inference and input checks."""

from __future__ import annotations

import functools
import math
import re
from typing import Any

import numpy as np
import pytest

from helpers_model import assert_same_arrays, differs, model_arrays, train_epoch_by_epoch
from mpneuralnetwork import set_seed, to_host
from mpneuralnetwork.activations import PReLU, ReLU, Sigmoid, Softmax, Swish, Tanh
from mpneuralnetwork.layers import (
    BatchNormalization,
    BatchNormalization2D,
    Convolutional,
    Dense,
    Dropout,
    Flatten,
    Layer,
)
from mpneuralnetwork.losses import MSE, BinaryCrossEntropy, CategoricalCrossEntropy
from mpneuralnetwork.metrics import MAE, RMSE, Accuracy, F1Score, R2Score
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import SGD, Adam, Optimizer

HE_1000 = math.sqrt(2 / 1000)
XAVIER_1000 = math.sqrt(1 / 1000)


def host_std(array: Any) -> float:
    return float(np.std(to_host(array).astype(np.float64)))


# ------------------------------------------------------ smart initialization
@pytest.mark.parametrize(
    ("following", "expected_std"),
    [
        ([ReLU()], HE_1000),
        ([PReLU()], HE_1000),
        ([Swish()], HE_1000),
        ([Dropout(0.3), ReLU()], HE_1000),  # Dropout is skipped in the look-ahead
        ([Dropout(0.3), Dropout(0.1), Swish()], HE_1000),
        ([BatchNormalization(), ReLU()], HE_1000),
        ([Sigmoid()], XAVIER_1000),
        ([Tanh()], XAVIER_1000),
        ([Dense(10)], XAVIER_1000),  # another Dense stops the look-ahead
        ([Dense(10), ReLU()], XAVIER_1000),
        ([Dropout(0.2), Tanh(), ReLU()], XAVIER_1000),
        ([], XAVIER_1000),  # nothing after it
    ],
    ids=lambda v: "-".join(type(layer).__name__ for layer in v) if isinstance(v, list) else "",
)
def test_dense_auto_initialization_statistics(following: list[Layer], expected_std: float) -> None:
    model = Model([Dense(1000, input_size=1000), *following], MSE())
    weights = to_host(model.layers[0].weights)
    assert weights.shape == (1000, 1000)
    assert weights.dtype == np.float32
    assert abs(host_std(weights) - expected_std) < 0.05 * expected_std
    assert abs(float(weights.mean())) < 0.05 * expected_std


@pytest.mark.parametrize(
    ("activation", "method"),
    [
        (ReLU(), "he"),
        (PReLU(0.2), "he"),
        (Swish(), "he"),
        (Sigmoid(), "xavier"),
        (Tanh(), "xavier"),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, str) else v,
)
def test_convolutional_auto_initialization_uses_fan_in_c_k_k(
    activation: Layer, method: str
) -> None:
    # fan-in = C·K·K = 32·3·3 = 288 (not the output depth, not K·K)
    model = Model([Convolutional(64, 3, input_shape=(32, 5, 5)), activation, Flatten()], MSE())
    expected = math.sqrt((2.0 if method == "he" else 1.0) / 288)
    kernels = model.layers[0].kernels
    assert tuple(kernels.shape) == (64, 32, 3, 3)
    assert abs(host_std(kernels) - expected) < 0.05 * expected


def test_biases_are_standard_normal() -> None:
    model = Model([Dense(5000, input_size=2), ReLU()], MSE())
    biases = to_host(model.layers[0].biases)
    assert biases.shape == (1, 5000)
    assert abs(host_std(biases) - 1.0) < 0.05


@pytest.mark.parametrize("initialization", ["he", "xavier"])
@pytest.mark.parametrize("activation", [ReLU, Sigmoid])
def test_explicit_initialization_is_left_alone(initialization: str, activation: type) -> None:
    set_seed(3)
    dense = Dense(1000, input_size=1000, initialization=initialization)  # type: ignore[arg-type]
    before = to_host(dense.weights).copy()
    model = Model([dense, activation(), BatchNormalization()], MSE())
    np.testing.assert_array_equal(to_host(model.layers[0].weights), before)
    expected = HE_1000 if initialization == "he" else XAVIER_1000
    assert abs(host_std(before) - expected) < 0.05 * expected


def test_explicit_initialization_keeps_its_bias_before_batch_normalization() -> None:
    model = Model([Dense(4, input_size=3, initialization="he"), BatchNormalization()], MSE())
    assert "biases" in model.layers[0].params


@pytest.mark.parametrize(
    "layers",
    [
        [Dense(4, input_size=3), BatchNormalization(), ReLU(), Dense(2)],
        [Dense(4, input_size=3), Dropout(0.5), BatchNormalization(), Dense(2)],
    ],
    ids=["dense-bn", "dense-dropout-bn"],
)
def test_no_bias_before_batch_normalization(layers: list[Layer]) -> None:
    model = Model(layers, MSE())
    first = model.layers[0]
    assert "biases" not in first.params
    assert first.biases is None and first.no_bias is True
    assert "biases" in model.layers[-1].params  # the last Dense keeps its biases
    out = model.predict(np.ones((2, 3), dtype=np.float32))
    assert out.shape == (2, 2)


def test_no_bias_before_batch_normalization_2d() -> None:
    model = Model(
        [
            Convolutional(4, 3, input_shape=(2, 6, 6)),
            BatchNormalization2D(),
            ReLU(),
            Convolutional(3, 3),
            ReLU(),
            Flatten(),
            Dense(2),
        ],
        MSE(),
    )
    conv = model.layers[0]
    assert "biases" not in conv.params and conv.biases is None
    assert set(conv.params) == {"kernels"}
    assert "biases" in model.layers[3].params  # not followed by a batch normalization
    # and it trains (gradients flow through the bias-less layer)
    x = np.random.default_rng(0).standard_normal((4, 2, 6, 6)).astype(np.float32)
    model.train(x, np.zeros((4, 2)), epochs=1, batch_size=2, auto_evaluation=0, verbose=0)


def test_he_before_batch_normalization_2d_and_relu() -> None:
    model = Model(
        [Convolutional(64, 3, input_shape=(32, 5, 5)), BatchNormalization2D(), ReLU()], MSE()
    )
    expected = math.sqrt(2 / 288)
    assert abs(host_std(model.layers[0].kernels) - expected) < 0.05 * expected


# ---------------------------------------------------------- output activation
def test_trailing_softmax_is_removed_and_gets_the_loss_temperature() -> None:
    model = Model([Dense(3, input_size=4), Softmax()], CategoricalCrossEntropy(temperature=2.5))
    assert len(model.layers) == 1 and isinstance(model.layers[0], Dense)
    assert isinstance(model.output_activation, Softmax)
    assert model.output_activation.temperature == 2.5
    # predictions are softmax(logits / T), computed here in float64
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    w = to_host(model.layers[0].weights).astype(np.float64)
    b = to_host(model.layers[0].biases).astype(np.float64)
    z = (x @ w + b) / (2.5 + 1e-8)
    expected = np.exp(z - z.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-5, atol=1e-6)


def test_softmax_added_when_absent() -> None:
    model = Model([Dense(3, input_size=4)], CategoricalCrossEntropy(temperature=0.5))
    assert len(model.layers) == 1
    assert isinstance(model.output_activation, Softmax)
    assert model.output_activation.temperature == 0.5


def test_trailing_sigmoid_is_removed_for_binary_cross_entropy() -> None:
    model = Model([Dense(4, input_size=2), ReLU(), Dense(1), Sigmoid()], BinaryCrossEntropy())
    assert len(model.layers) == 3 and isinstance(model.layers[-1], Dense)
    assert isinstance(model.output_activation, Sigmoid)


def test_activations_are_kept_for_mse_or_a_mismatched_loss() -> None:
    model = Model([Dense(1, input_size=2), Sigmoid()], MSE())
    assert len(model.layers) == 2 and model.output_activation is None
    model = Model([Dense(3, input_size=2), Sigmoid()], CategoricalCrossEntropy())
    assert len(model.layers) == 2 and isinstance(model.layers[-1], Sigmoid)
    assert isinstance(model.output_activation, Softmax)


# ---------------------------------------------------------------- metrics
def test_smart_metrics() -> None:
    mse = Model([Dense(1, input_size=2)], MSE())
    assert [type(m) for m in mse.metrics] == [RMSE, R2Score]
    for loss in (BinaryCrossEntropy(), CategoricalCrossEntropy()):
        model = Model([Dense(2, input_size=2)], loss)
        assert [type(m) for m in model.metrics] == [Accuracy, F1Score]
    given = [MAE()]
    model = Model([Dense(1, input_size=2)], MSE(), metrics=given)
    assert [type(m) for m in model.metrics] == [MAE]
    assert isinstance(Model([Dense(1, input_size=2)], MSE()).optimizer, SGD)


def test_input_layer_must_know_its_size() -> None:
    with pytest.raises(ValueError, match="Input layer does not define input size"):
        Model([Dense(3), ReLU()], MSE())
    with pytest.raises(ValueError, match="Input layer does not define input size"):
        Model([Convolutional(2, 3), Flatten(), Dense(1)], MSE())


def test_layers_are_built_in_sequence() -> None:
    model = Model(
        [Convolutional(3, 3, input_shape=(1, 8, 8), padding=1, stride=2), Flatten(), Dense(2)],
        MSE(),
    )
    assert model.layers[0].output_shape == (3, 4, 4)
    assert model.layers[1].output_shape == (48,)
    assert tuple(model.layers[2].weights.shape) == (48, 2)


# ------------------------------------------------------------ training data
def regression_data(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3)).astype(np.float32)
    return x, x @ np.array([[1.0], [-2.0], [0.5]], dtype=np.float32)


EPOCHS = 12


def checkpoint_setup(seed: int) -> tuple[Model, tuple[np.ndarray, ...]]:
    """A model whose validation loss (target halfway to the training one) dips then rises."""
    x, y = regression_data(40, seed=0)
    xv, yv = regression_data(20, seed=1)
    set_seed(seed)
    model = Model(
        [Dense(6, input_size=3), BatchNormalization(), Dense(1)], MSE(), Adam(learning_rate=0.05)
    )
    return model, (x, y, xv, 0.5 * yv)


def expected_stop(losses: list[float], patience: int) -> int:
    """The epoch (1-based) at which early stopping ends the run, by the rule of the spec."""
    best, waited = math.inf, 0
    for epoch, loss in enumerate(losses, start=1):
        if loss < best:
            best, waited = loss, 0
        else:
            waited += 1
        if waited >= patience:
            return epoch
    return len(losses)


@functools.cache
def checkpoint_reference() -> tuple[int, list[dict[str, Any]], list[float]]:
    """``(seed, states, val_losses)`` of an epoch-by-epoch run whose best epoch is neither
    the first nor the last and after which early stopping (patience 3) triggers.

    The first seed from 4 on that gives such a run is used, so that the tests keep their
    meaning if the numerics change slightly.
    """
    for seed in range(4, 30):
        model, (x, y, xv, yv) = checkpoint_setup(seed)
        states, values = train_epoch_by_epoch(model, x, y, EPOCHS, 8, evaluation=(xv, yv))
        losses = [v["val_loss"] for v in values]
        best = int(np.argmin(losses))
        if 0 < best < EPOCHS - 1 and expected_stop(losses, 3) < EPOCHS:
            assert differs(states[best], states[-1])
            return seed, states, losses
    raise AssertionError("no seed gives a validation loss that dips then rises")


def test_model_checkpoint_restores_weights_state_and_optimizer_of_the_best_epoch(
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed, states, val_losses = checkpoint_reference()
    best = int(np.argmin(val_losses))  # 0-based
    capsys.readouterr()

    model, (x, y, xv, yv) = checkpoint_setup(seed)
    history = model.train(x, y, epochs=EPOCHS, batch_size=8, evaluation=(xv, yv))
    assert history.history["val_loss"] == val_losses
    assert history.best_epoch == best + 1
    restored = model_arrays(model)
    assert_same_arrays(restored, states[best])
    assert restored["optimizer/t"] == (best + 1) * 5  # 40 samples / batch 8
    assert any(k.startswith("state/1/") for k in restored)
    assert any(k.startswith("optimizer/momentums/") for k in restored)

    out = capsys.readouterr().out.splitlines()
    checkpoint_lines = [line for line in out if line.startswith("MODEL CHECKPOINT:")]
    assert len(checkpoint_lines) == 1
    assert f"{val_losses[best]:.4f}" in checkpoint_lines[0]
    assert out[-1] == checkpoint_lines[0]


def test_without_model_checkpoint_the_last_epoch_is_kept(
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed, states, _ = checkpoint_reference()
    capsys.readouterr()
    model, (x, y, xv, yv) = checkpoint_setup(seed)
    model.train(x, y, epochs=EPOCHS, batch_size=8, evaluation=(xv, yv), model_checkpoint=False)
    assert_same_arrays(model_arrays(model), states[-1])
    assert "MODEL CHECKPOINT" not in capsys.readouterr().out


def test_early_stopping(capsys: pytest.CaptureFixture[str]) -> None:
    seed, states, val_losses = checkpoint_reference()
    stop = expected_stop(val_losses, 3)
    capsys.readouterr()

    model, (x, y, xv, yv) = checkpoint_setup(seed)
    history = model.train(x, y, epochs=EPOCHS, batch_size=8, evaluation=(xv, yv), early_stopping=3)
    assert len(history.history["val_loss"]) == stop
    assert all(len(v) == stop for v in history.history.values())
    assert history.stopped_early
    out = capsys.readouterr().out
    assert sum("EARLY STOPPING" in line for line in out.splitlines()) == 1
    assert len(re.findall(r"^epoch ", out, flags=re.M)) == stop
    # the checkpoint still restores the best epoch
    assert_same_arrays(model_arrays(model), states[int(np.argmin(val_losses[:stop]))])


def test_early_stopping_monitors_the_training_loss_without_validation() -> None:
    x, y = regression_data()
    set_seed(0)
    model = Model([Dense(1, input_size=3)], MSE(), Optimizer(0.1, "L2", 0.0))  # never improves
    history = model.train(x, y, epochs=20, batch_size=8, auto_evaluation=0, early_stopping=2)
    assert len(history.history["loss"]) == 3 and "val_loss" not in history.history
    assert history.best_epoch == 1


def test_second_train_call_continues_weights_and_optimizer_state() -> None:
    x, y = regression_data(30)

    def make() -> Model:
        set_seed(7)
        return Model([Dense(5, input_size=3), ReLU(), Dense(1)], MSE(), Adam(learning_rate=0.01))

    once = make()
    once.train(x, y, epochs=3, batch_size=8, auto_evaluation=0, model_checkpoint=False, verbose=0)

    twice = make()
    twice.train(x, y, epochs=2, batch_size=8, auto_evaluation=0, model_checkpoint=False, verbose=0)
    assert twice.optimizer.t == 8  # ceil(30 / 8) = 4 steps per epoch
    twice.train(x, y, epochs=1, batch_size=8, auto_evaluation=0, model_checkpoint=False, verbose=0)
    assert twice.optimizer.t == 12
    assert_same_arrays(model_arrays(twice), model_arrays(once))


class Recorder(Layer):
    """An identity layer that records the training batches it sees."""

    def __init__(self, input_shape: int) -> None:
        super().__init__(input_shape=input_shape)
        self.batches: list[np.ndarray] = []

    def forward(self, input_batch: Any, training: bool = True) -> Any:
        if training:
            self.batches.append(to_host(input_batch).copy())
        self.input = self.output = input_batch
        return input_batch

    def backward(self, output_gradient_batch: Any) -> Any:
        return output_gradient_batch


def test_every_sample_is_used_each_epoch_including_the_last_partial_batch() -> None:
    n, batch = 10, 4
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    recorder = Recorder(2)
    model = Model([recorder, Dense(1)], MSE(), Adam())
    model.train(x, np.zeros(n), epochs=2, batch_size=batch, auto_evaluation=0, verbose=0)
    assert [len(b) for b in recorder.batches] == [4, 4, 2, 4, 4, 2]
    assert model.optimizer.t == 2 * math.ceil(n / batch)
    for epoch in range(2):
        seen = np.concatenate(recorder.batches[3 * epoch : 3 * epoch + 3])
        assert sorted(seen[:, 0].tolist()) == x[:, 0].tolist()
    # shuffled: the two epochs do not use the same order
    first = np.concatenate(recorder.batches[:3])[:, 0]
    second = np.concatenate(recorder.batches[3:])[:, 0]
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("batch_size", ["left out", None])
def test_batch_size_defaults_to_32(batch_size: Any) -> None:
    # As in Keras: 70 samples make batches of 32, 32 and 6, and the same weights as 32.
    n = 70
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2) / n
    y = x.sum(axis=1)
    options = {} if batch_size == "left out" else {"batch_size": batch_size}
    recorder = Recorder(2)
    set_seed(3)
    model = Model([recorder, Dense(1)], MSE(), Adam())
    model.train(x, y, epochs=1, auto_evaluation=0, verbose=0, **options)
    assert [len(b) for b in recorder.batches] == [32, 32, 6]
    set_seed(3)
    explicit = Model([Recorder(2), Dense(1)], MSE(), Adam())
    explicit.train(x, y, epochs=1, batch_size=32, auto_evaluation=0, verbose=0)
    assert_same_arrays(model_arrays(explicit), model_arrays(model))


def test_training_loss_is_the_sample_weighted_mean_over_all_batches() -> None:
    # the base Optimizer never moves the weights: the epoch loss is the full-data loss
    x, y = regression_data(10)
    model = Model([Dense(1, input_size=3)], MSE(), Optimizer(0.1, "L2", 0.0))
    history = model.train(x, y, epochs=1, batch_size=4, auto_evaluation=0, verbose=0)
    w = to_host(model.layers[0].weights).astype(np.float64)
    b = to_host(model.layers[0].biases).astype(np.float64)
    expected = float(np.mean(np.sum((x @ w + b - y) ** 2, axis=1)))
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-5)


def test_inputs_are_cast_to_float32() -> None:
    x64 = np.random.default_rng(0).standard_normal((8, 3))  # float64
    labels = np.eye(2, dtype=np.int64)[[0, 1] * 4]  # integer one-hot
    model = Model([Dense(4, input_size=3), ReLU(), Dense(2)], CategoricalCrossEntropy(), Adam())
    model.train(x64.tolist(), labels, epochs=2, batch_size=3, evaluation=(x64, labels), verbose=0)
    arrays = model_arrays(model)
    assert all(v.dtype == np.float32 for v in arrays.values() if isinstance(v, np.ndarray))
    assert model.predict(x64).dtype == np.float32
    predictions, scores = model.evaluate(x64, labels)
    assert type(scores["loss"]) is float and to_host(predictions).dtype == np.float32


def test_fewer_samples_than_batch_size() -> None:
    x, y = regression_data(5)
    model = Model([Dense(2, input_size=3), ReLU(), Dense(1)], MSE(), Adam())
    history = model.train(x, y, epochs=3, batch_size=32, auto_evaluation=0, verbose=0)
    assert model.optimizer.t == 3
    assert len(history.history["loss"]) == 3
    assert all(math.isfinite(v) for v in history.history["loss"])


def test_auto_evaluation_holds_out_a_fraction() -> None:
    n = 50
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2) / 100
    recorder = Recorder(2)
    model = Model([recorder, Dense(1)], MSE(), Adam())
    history = model.train(x, np.zeros(n), epochs=1, batch_size=100, auto_evaluation=0.2, verbose=0)
    assert [len(b) for b in recorder.batches] == [40]
    assert "val_loss" in history.history and "val_rmse" in history.history


# ----------------------------------------------------------------- printing
EPOCH_LINE = re.compile(
    r"^epoch +(?P<epoch>\d+)/(?P<total>\d+)   \|   \[training\]   loss = (?P<loss>\d+\.\d{4})"
    r"   \|   \[evaluation\]   loss = (?P<val_loss>\d+\.\d{4})"
    r"   accuracy = (?P<acc>\d\.\d{4})   f1score = (?P<f1>\d\.\d{4})$"
)


def classification_data(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    labels = (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 1).astype(int)
    return x, np.eye(3, dtype=np.float32)[labels]


def test_epoch_line_format(capsys: pytest.CaptureFixture[str]) -> None:
    x, y = classification_data()
    xv, yv = classification_data(30, seed=1)
    model = Model([Dense(8, input_size=4), ReLU(), Dense(3)], CategoricalCrossEntropy(), Adam())
    history = model.train(x, y, epochs=20, batch_size=16, evaluation=(xv, yv))
    lines = capsys.readouterr().out.splitlines()
    epoch_lines = [line for line in lines if line.startswith("epoch")]
    assert len(epoch_lines) == 20
    for i, line in enumerate(epoch_lines, start=1):
        match = EPOCH_LINE.match(line)
        assert match, line
        assert int(match["epoch"]) == i and match["total"] == "20"
        assert match["loss"] == f"{history.history['loss'][i - 1]:.4f}"
        assert match["val_loss"] == f"{history.history['val_loss'][i - 1]:.4f}"
        assert match["acc"] == f"{history.history['val_accuracy'][i - 1]:.4f}"
        assert match["f1"] == f"{history.history['val_f1score'][i - 1]:.4f}"
    assert epoch_lines[2].startswith("epoch  3/20   |   [training]   loss = ")
    assert epoch_lines[19].startswith("epoch 20/20   |   [training]   loss = ")


def test_epoch_line_with_training_metrics_and_without_validation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    x, y = classification_data()
    model = Model([Dense(3, input_size=4)], CategoricalCrossEntropy(), Adam())
    model.train(x, y, epochs=2, batch_size=16, auto_evaluation=0, compute_train_metrics=True)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch")]
    pattern = re.compile(
        r"^epoch [12]/2   \|   \[training\]   loss = \d+\.\d{4}   accuracy = \d\.\d{4}"
        r"   f1score = \d\.\d{4}$"
    )
    assert len(lines) == 2 and all(pattern.match(line) for line in lines), lines


def test_training_metrics_match_the_seen_batches() -> None:
    # with the base Optimizer the weights stay fixed: train metrics = full-data metrics
    x, y = classification_data()
    model = Model([Dense(3, input_size=4)], CategoricalCrossEntropy(), Optimizer(0.1, "L2", 0))
    history = model.train(
        x, y, epochs=1, batch_size=16, auto_evaluation=0, compute_train_metrics=True, verbose=0
    )
    _, scores = model.evaluate(x, y)
    assert history.history["accuracy"][0] == pytest.approx(scores["accuracy"])
    assert history.history["f1score"][0] == pytest.approx(scores["f1score"])


def test_a_layer_keeps_its_input_gradient_after_serving_in_a_model() -> None:
    dense = Dense(3, input_size=4)
    first = Model([dense, ReLU(), Dense(2)], MSE())
    x, y = np.ones((6, 4), dtype=np.float32), np.zeros((6, 2), dtype=np.float32)
    first.train(x, y, epochs=1, batch_size=3, auto_evaluation=0, verbose=0)
    # used alone, backward still returns G Wᵀ
    dense.forward(x[:2])
    g = np.arange(6, dtype=np.float32).reshape(2, 3)
    expected = g.astype(np.float64) @ to_host(dense.weights).astype(np.float64).T
    np.testing.assert_allclose(to_host(dense.backward(g)), expected, rtol=1e-5)
    # reused inside another model, gradients flow through it to the layers before it
    second = Model([Dense(4, input_size=5), ReLU(), dense, ReLU(), Dense(2)], MSE(), Adam())
    before = to_host(second.layers[0].weights).copy()
    xs = np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32)
    history = second.train(xs, y + 1, epochs=2, batch_size=3, auto_evaluation=0, verbose=0)
    assert all(math.isfinite(v) for v in history.history["loss"])
    assert not np.array_equal(to_host(second.layers[0].weights), before)


class Interrupter(Recorder):
    """Raises KeyboardInterrupt at the n-th training batch (as Ctrl-C would)."""

    def __init__(self, input_shape: int, at_batch: int) -> None:
        super().__init__(input_shape)
        self.at_batch = at_batch

    def forward(self, input_batch: Any, training: bool = True) -> Any:
        if training and len(self.batches) + 1 == self.at_batch:
            raise KeyboardInterrupt
        return super().forward(input_batch, training)


def test_keyboard_interrupt_restores_the_best_weights_and_reraises(
    capsys: pytest.CaptureFixture[str],
) -> None:
    x, y = regression_data(20)

    def make(layer: Layer) -> Model:
        set_seed(5)
        return Model([layer, Dense(4), ReLU(), Dense(1)], MSE(), Adam(learning_rate=0.01))

    reference = make(Recorder(3))
    states, values = train_epoch_by_epoch(reference, x, y, 3, 5, auto_evaluation=0)
    best = int(np.argmin([v["loss"] for v in values]))
    model = make(Interrupter(3, at_batch=4 * 3 + 2))  # during epoch 4, 4 batches per epoch
    with pytest.raises(KeyboardInterrupt):
        model.train(x, y, epochs=10, batch_size=5, auto_evaluation=0)
    assert "TRAINING INTERRUPTED" in capsys.readouterr().out
    assert_same_arrays(model_arrays(model), states[best])


# -------------------------------------------------------------- inference
def test_predict_in_chunks_matches_the_hand_computation() -> None:
    x = np.random.default_rng(3).standard_normal((9000, 2)).astype(np.float32)
    model = Model([Dense(3, input_size=2), BatchNormalization(), Dense(2)], MSE())
    model.train(x[:200], x[:200] * 2, epochs=1, batch_size=50, auto_evaluation=0, verbose=0)
    first, bn, last = model.layers
    h = x @ to_host(first.weights).astype(np.float64)
    mean, var = to_host(bn.cache_m).astype(np.float64), to_host(bn.cache_v).astype(np.float64)
    h = to_host(bn.gamma) * (h - mean) / np.sqrt(var + bn.epsilon) + to_host(bn.beta)
    expected = h @ to_host(last.weights).astype(np.float64) + to_host(last.biases)
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-4, atol=1e-5)


def binary_model() -> tuple[Model, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((7, 3)).astype(np.float32)
    y = (x[:, :1] > 0).astype(np.float32)
    model = Model([Dense(1, input_size=3), Dropout(0.5), Sigmoid()], BinaryCrossEntropy())
    return model, x, y


def hand_logits(model: Model, x: np.ndarray) -> np.ndarray:
    dense = model.layers[0]
    return x @ to_host(dense.weights).astype(np.float64) + to_host(dense.biases).astype(np.float64)


def test_predict_returns_activated_numpy_in_inference_mode() -> None:
    model, x, _ = binary_model()
    out = model.predict(x)
    assert type(out) is np.ndarray and out.shape == (7, 1)
    expected = 1 / (1 + np.exp(-hand_logits(model, x)))  # no dropout at inference
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    np.testing.assert_array_equal(model.predict(x), out)  # deterministic


def test_evaluate_returns_activated_predictions_and_hand_computed_scores() -> None:
    model, x, y = binary_model()
    predictions, scores = model.evaluate(x, y)
    z = hand_logits(model, x)
    p = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(to_host(predictions), p, rtol=1e-5)
    bce = float(np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))))
    assert set(scores) == {"loss", "accuracy", "f1score"}
    assert scores["loss"] == pytest.approx(bce, rel=1e-5)
    assert scores["accuracy"] == pytest.approx(float(np.mean((p >= 0.5) == (y >= 0.5))))
    _, only_loss = model.evaluate(x, y, compute_metrics=False)
    assert set(only_loss) == {"loss"}


def test_evaluate_in_training_mode_returns_logits() -> None:
    model, x, y = binary_model()
    model.layers[1].probability = 0.0  # keep the training pass deterministic
    logits, _ = model.evaluate(x, y, training=True)
    np.testing.assert_allclose(to_host(logits), hand_logits(model, x), rtol=1e-5, atol=1e-6)


def test_evaluate_rmse_comes_from_the_mse_loss() -> None:
    x, y = regression_data(12)
    model = Model([Dense(1, input_size=3)], MSE())
    _, scores = model.evaluate(x, y)
    assert scores["rmse"] == pytest.approx(math.sqrt(scores["loss"]))
    w = to_host(model.layers[0].weights).astype(np.float64)
    b = to_host(model.layers[0].biases).astype(np.float64)
    residual = x @ w + b - y
    assert scores["loss"] == pytest.approx(float(np.mean(residual**2)), rel=1e-5)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    assert scores["r2score"] == pytest.approx(1 - float(np.sum(residual**2)) / ss_tot, rel=1e-4)


def test_test_prints_a_results_block(capsys: pytest.CaptureFixture[str]) -> None:
    model, x, y = binary_model()
    scores = model.test(x, y)
    out = capsys.readouterr().out
    assert "Test results:" in out
    for key in ("loss", "accuracy", "f1score"):
        assert re.search(rf"{key} = {scores[key]:.4f}", out), key


def test_deprecated_weight_accessors_warn_and_work() -> None:
    model, x, _ = binary_model()
    before = model.predict(x)
    with pytest.warns(DeprecationWarning):
        weights = model.get_weights()
    assert set(weights) == {"layer_0_weights", "layer_0_biases"}
    model.layers[0].weights[...] = 0
    assert not np.allclose(model.predict(x), before)
    with pytest.warns(DeprecationWarning):
        model.restore_weights(weights)
    np.testing.assert_array_equal(model.predict(x), before)


# ------------------------------------------------------------- bad input
def small_model() -> Model:
    return Model([Dense(2, input_size=3)], CategoricalCrossEntropy())


X3 = np.zeros((6, 3), dtype=np.float32)
Y2 = np.eye(2, dtype=np.float32)[[0, 1, 0, 1, 0, 1]]
X_NAN = X3.copy()
X_NAN[2, 1] = np.nan
Y_INF = Y2.copy()
Y_INF[0, 0] = np.inf


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"X_train": X3[:5]}, "X_train"),  # lengths differ
        ({"X_train": np.zeros((6, 4), dtype=np.float32)}, "X_train"),  # sample shape
        ({"X_train": np.zeros((6, 3, 1), dtype=np.float32)}, "X_train"),
        ({"y_train": np.zeros((6, 3), dtype=np.float32)}, "y_train"),  # output size
        ({"y_train": np.zeros(6, dtype=np.float32)}, "y_train"),
        ({"X_train": X_NAN}, "X_train"),
        ({"y_train": Y_INF}, "y_train"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": -3}, "batch_size"),
        ({"epochs": -1}, "epochs"),
        ({"auto_evaluation": 1.0}, "auto_evaluation"),
        ({"auto_evaluation": -0.1}, "auto_evaluation"),
        ({"evaluation": (X3,)}, "evaluation"),
        ({"evaluation": (X3, Y2, Y2)}, "evaluation"),
        ({"evaluation": X3}, "evaluation"),
        ({"evaluation": (np.zeros((6, 5)), Y2)}, "evaluation"),
        ({"evaluation": (X3, np.zeros((6, 7)))}, "evaluation"),
        ({"evaluation": (X_NAN, Y2)}, "evaluation"),
        ({"early_stopping": 0}, "early_stopping"),
    ],
)
def test_train_rejects_bad_input_naming_the_argument(kwargs: dict[str, Any], argument: str) -> None:
    args: dict[str, Any] = {"X_train": X3, "y_train": Y2, "epochs": 1, "batch_size": 2}
    args.update(kwargs)
    model = small_model()
    before = model_arrays(model)
    with pytest.raises(ValueError, match=argument):
        model.train(**args)
    assert_same_arrays(model_arrays(model), before)  # nothing was trained


def test_epochs_zero_does_nothing() -> None:
    model = small_model()
    before = model_arrays(model)
    history = model.train(X3, Y2, epochs=0, batch_size=2)
    assert len(history.history.get("loss", [])) == 0
    assert_same_arrays(model_arrays(model), before)


def test_inference_rejects_bad_input() -> None:
    model = small_model()
    with pytest.raises(ValueError, match="X"):
        model.predict(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        model.predict(X_NAN)
    with pytest.raises(ValueError, match="y"):
        model.evaluate(X3, np.zeros((6, 3)))
    with pytest.raises(ValueError, match="y"):
        model.evaluate(X3, Y2[:4])


# --------------------------------------------------------------- divergence
def diverging_model() -> Model:
    set_seed(0)
    return Model(
        [Dense(1, input_size=3)], MSE(), SGD(learning_rate=0.3, momentum=0, weight_decay=0)
    )


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("checkpoint", [True, False])
def test_divergence_stops_and_restores_the_last_good_weights(
    checkpoint: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    x, y = regression_data(40)
    x = 3 * x
    reference = diverging_model()
    states, values = train_epoch_by_epoch(reference, x, y, 10, 4, auto_evaluation=0)
    losses = [v["loss"] for v in values]
    first_bad = next(i for i, loss in enumerate(losses) if not math.isfinite(loss))
    assert first_bad >= 2, "precondition: a few finite epochs before the divergence"
    capsys.readouterr()

    model = diverging_model()
    history = model.train(
        x, y, epochs=10, batch_size=4, auto_evaluation=0, model_checkpoint=checkpoint
    )
    out = capsys.readouterr().out
    assert "TRAINING STOPPED" in out and "learning rate" in out
    assert len(history.history["loss"]) == first_bad + 1  # stopped at the diverging epoch
    arrays = model_arrays(model)
    assert all(np.isfinite(v).all() for v in arrays.values() if isinstance(v, np.ndarray))
    # checkpointing keeps the best epoch (the first: the loss only grows), else the last good one
    expected = states[int(np.argmin(losses[:first_bad]))] if checkpoint else states[first_bad - 1]
    assert_same_arrays(arrays, expected)
