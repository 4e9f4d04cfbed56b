"""History, verbosity, Model.summary, plot_history and set_seed."""

from __future__ import annotations

import re
import sys
from typing import Any

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

import mpneuralnetwork
from helpers_model import assert_same_arrays, differs, model_arrays
from mpneuralnetwork.activations import ReLU, Softmax
from mpneuralnetwork.history import History
from mpneuralnetwork.layers import (
    BatchNormalization,
    BatchNormalization2D,
    Convolutional,
    Dense,
    Dropout,
    Flatten,
    MaxPooling2D,
)
from mpneuralnetwork.losses import MSE, CategoricalCrossEntropy
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import Adam
from mpneuralnetwork.plot import plot_history


def regression() -> tuple[Model, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-1.0], [2.0]], dtype=np.float32)
    model = Model([Dense(8, input_size=3), ReLU(), Dense(1)], MSE(), Adam(learning_rate=0.01))
    return model, x, y


def classification() -> tuple[Model, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((60, 4)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[(x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)]
    model = Model([Dense(6, input_size=4), ReLU(), Dense(3)], CategoricalCrossEntropy(), Adam())
    return model, x, y


# -------------------------------------------------------------------- history
def test_train_returns_a_history_of_plain_per_epoch_lists() -> None:
    model, x, y = regression()
    history = model.train(x, y, epochs=4, batch_size=16, verbose=0)
    assert isinstance(history, History)
    assert model.history is history
    assert type(history.history) is dict
    assert set(history.history) == {
        "loss",
        "val_loss",
        "val_rmse",
        "val_r2score",
        "learning_rate",
        "epoch_time",
    }
    for key, values in history.history.items():
        assert type(values) is list and len(values) == 4, key
        assert all(type(v) is float for v in values), key
    assert history.history["learning_rate"] == [0.01] * 4
    assert all(t > 0 for t in history.history["epoch_time"])
    np.testing.assert_allclose(
        history.history["val_rmse"], np.sqrt(history.history["val_loss"]), rtol=1e-6
    )
    assert history.best_epoch == int(np.argmin(history.history["val_loss"])) + 1
    assert history.best_loss == min(history.history["val_loss"])
    assert history["loss"] is history.history["loss"] and "val_loss" in history
    assert len(history) == 4 and history.epochs == [1, 2, 3, 4]


def test_classification_history_keys_with_training_metrics() -> None:
    model, x, y = classification()
    history = model.train(x, y, epochs=2, batch_size=16, verbose=0, compute_train_metrics=True)
    assert set(history.history) == {
        "loss",
        "accuracy",
        "f1score",
        "val_loss",
        "val_accuracy",
        "val_f1score",
        "learning_rate",
        "epoch_time",
    }
    assert all(len(v) == 2 for v in history.history.values())


def test_history_is_shorter_with_early_stopping() -> None:
    model, x, y = regression()
    # validation targets of the opposite sign: the validation loss can only get worse
    history = model.train(
        x, y, epochs=30, batch_size=16, evaluation=(x, -y), early_stopping=2, verbose=0
    )
    losses = history.history["val_loss"]
    assert history.stopped_early
    assert 3 <= len(losses) < 30
    assert all(len(v) == len(losses) for v in history.history.values())
    assert history.best_epoch == len(losses) - 2


# -------------------------------------------------------------------- verbose
def test_verbose_0_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    model, x, y = regression()
    model.train(x, y, epochs=3, batch_size=16, verbose=0, early_stopping=1)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_verbose_1_prints_one_line_per_epoch(capsys: pytest.CaptureFixture[str]) -> None:
    model, x, y = regression()
    model.train(x, y, epochs=3, batch_size=16, verbose=1)
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [line.split("   |")[0] for line in lines[:3]] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert len(lines) == 4 and lines[3].startswith("MODEL CHECKPOINT:")
    assert "batch" not in captured.err


def test_verbose_2_shows_a_tqdm_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")
    model, x, y = regression()
    model.train(x, y, epochs=2, batch_size=16, verbose=2)
    captured = capsys.readouterr()
    assert "batch" in captured.err
    assert "epoch 1/2" in captured.err
    assert len([line for line in captured.out.splitlines() if line.startswith("epoch")]) == 2


def test_verbose_2_without_tqdm_warns_and_falls_back(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    model, x, y = regression()
    with pytest.warns(RuntimeWarning, match="tqdm"):
        model.train(x, y, epochs=2, batch_size=16, verbose=2)
    captured = capsys.readouterr()
    assert len([line for line in captured.out.splitlines() if line.startswith("epoch")]) == 2
    assert "batch" not in captured.err


def test_bad_verbose_is_refused() -> None:
    model, x, y = regression()
    with pytest.raises(ValueError, match="verbose"):
        model.train(x, y, epochs=1, batch_size=16, verbose=3)


# -------------------------------------------------------------------- summary
def summary_rows(text: str) -> tuple[dict[int, tuple[str, int]], dict[str, int]]:
    """``({index: (class name, params)}, {"trainable"|"state"|"total": count})``."""
    rows = {}
    for match in re.finditer(r"^(\d+): (\w+)\b.*?([\d,]+)\s*$", text, flags=re.M):
        rows[int(match[1])] = (match[2], int(match[3].replace(",", "")))
    totals = {}
    for key, pattern in (
        ("trainable", r"^Trainable[^\d]*([\d,]+)\s*$"),
        ("state", r"^State[^\d]*([\d,]+)\s*$"),
        ("total", r"^Total[^\d]*([\d,]+)\s*$"),
    ):
        match = re.search(pattern, text, flags=re.M)
        assert match, f"no {key} line in:\n{text}"
        totals[key] = int(match[1].replace(",", ""))
    return rows, totals


def test_summary_counts_cnn(capsys: pytest.CaptureFixture[str]) -> None:
    model = Model(
        [
            Convolutional(4, 3, input_shape=(2, 8, 8)),  # no bias before BN2D: 4·2·3·3 = 72
            BatchNormalization2D(),  # gamma + beta: 2·4 = 8; state 2·4 = 8
            ReLU(),
            MaxPooling2D(2),  # (4, 3, 3)
            Flatten(),  # 36
            Dense(5),  # 36·5 + 5 = 185
            ReLU(),
            Dense(3),  # 5·3 + 3 = 18
            Softmax(),  # removed: the output activation
        ],
        CategoricalCrossEntropy(),
    )
    model.summary()
    text = capsys.readouterr().out
    rows, totals = summary_rows(text)
    assert rows == {
        0: ("Convolutional", 72),
        1: ("BatchNormalization2D", 8),
        2: ("ReLU", 0),
        3: ("MaxPooling2D", 0),
        4: ("Flatten", 0),
        5: ("Dense", 185),
        6: ("ReLU", 0),
        7: ("Dense", 18),
    }
    assert totals == {"trainable": 283, "state": 8, "total": 291}
    assert "(4, 3, 3)" in text and "(36,)" in text
    assert "Softmax" in text


def test_summary_counts_with_biases_and_thousands(capsys: pytest.CaptureFixture[str]) -> None:
    model = Model(
        [
            Convolutional(3, 2, input_shape=(1, 5, 5)),  # 3·1·2·2 + 3 = 15 -> (3, 4, 4)
            ReLU(),
            Flatten(),  # 48
            Dense(1000),  # 48·1000 + 1000 = 49,000
            BatchNormalization(),  # 2000 params, 2000 state; the Dense above loses its bias
            Dense(2),  # 1000·2 + 2 = 2002
        ],
        MSE(),
    )
    model.summary()
    rows, totals = summary_rows(capsys.readouterr().out)
    assert rows == {
        0: ("Convolutional", 15),
        1: ("ReLU", 0),
        2: ("Flatten", 0),
        3: ("Dense", 48_000),
        4: ("BatchNormalization", 2000),
        5: ("Dense", 2002),
    }
    assert totals == {"trainable": 52_017, "state": 2000, "total": 54_017}


# ----------------------------------------------------------------------- plot
def axis_labels(figure: Figure) -> list[list[str]]:
    return [axis.get_legend_handles_labels()[1] for axis in figure.axes]


def test_plot_history_draws_training_and_validation_curves() -> None:
    model, x, y = regression()
    history = model.train(x, y, epochs=3, batch_size=16, verbose=0)
    figure = plot_history(history)
    try:
        assert isinstance(figure, Figure)
        assert [axis.get_title() for axis in figure.axes] == ["loss", "rmse", "r2score"]
        assert axis_labels(figure) == [
            ["training loss", "validation loss", "best epoch"],
            ["validation rmse"],
            ["validation r2score"],
        ]
        loss_lines = figure.axes[0].get_lines()
        np.testing.assert_allclose(loss_lines[0].get_ydata(), history.history["loss"])
        np.testing.assert_allclose(loss_lines[1].get_ydata(), history.history["val_loss"])
        np.testing.assert_array_equal(loss_lines[0].get_xdata(), [1, 2, 3])
        assert list(loss_lines[2].get_xdata()) == [history.best_epoch] * 2
    finally:
        plt.close(figure)


def test_plot_history_of_a_dict_with_training_metrics_and_without_metrics() -> None:
    model, x, y = classification()
    history = model.train(
        x, y, epochs=2, batch_size=16, verbose=0, auto_evaluation=0, compute_train_metrics=True
    )
    figure = plot_history(history.history)
    try:
        assert axis_labels(figure) == [
            ["training loss"],
            ["training accuracy"],
            ["training f1score"],
        ]
    finally:
        plt.close(figure)
    figure = plot_history(history, metrics=False)
    try:
        assert len(figure.axes) == 1
        assert axis_labels(figure) == [["training loss", "best epoch"]]
    finally:
        plt.close(figure)


def test_plot_history_refuses_an_empty_history() -> None:
    with pytest.raises(ValueError, match="epoch"):
        plot_history(History())


def test_plot_history_without_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plot_history({"loss": [1.0, 0.5]})


# ----------------------------------------------------------------------- seed
def seeded_run(seed: int | None) -> dict[str, Any]:
    if seed is not None:
        mpneuralnetwork.set_seed(seed)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((50, 4)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[(x[:, 0] > 0).astype(int)]
    model = Model(
        [Dense(16, input_size=4), ReLU(), Dropout(0.5), Dense(2)], CategoricalCrossEntropy()
    )
    model.train(x, y, epochs=3, batch_size=8, auto_evaluation=0.2, verbose=0)
    return model_arrays(model)


def test_set_seed_makes_runs_identical() -> None:
    first = seeded_run(11)
    second = seeded_run(11)
    assert_same_arrays(second, first)
    assert differs(seeded_run(12), first)


def test_unseeded_runs_differ() -> None:
    mpneuralnetwork.set_seed(11)
    first = seeded_run(None)
    second = seeded_run(None)  # the global stream moved on
    assert differs(first, second)


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True])
def test_set_seed_refuses_bad_seeds(seed: Any) -> None:
    with pytest.raises(ValueError, match="seed"):
        mpneuralnetwork.set_seed(seed)
