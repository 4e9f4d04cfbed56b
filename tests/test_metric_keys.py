"""Metric keys: unique per model, TopKAccuracy's holds k, the 1.1 key still reads a lone top-k."""

from __future__ import annotations

import numpy as np
import pytest

from mpneuralnetwork import to_device, to_host
from mpneuralnetwork.layers import Dense
from mpneuralnetwork.losses import CategoricalCrossEntropy
from mpneuralnetwork.metrics import Accuracy, F1Score, Metric, TopKAccuracy
from mpneuralnetwork.model import Model

# Logits = inputs (identity weights, no bias). True classes 0, 1, 2, 3.
# Sample 0: class 0 is the highest score            -> in top 1 and top 2.
# Sample 1: class 1 is the second highest            -> in top 2 only.
# Sample 2: class 2 is the third highest             -> in neither.
# Sample 3: class 3 is the highest                   -> in top 1 and top 2.
SCORES = np.array(
    [
        [4.0, 1.0, 0.0, 2.0],
        [3.0, 2.0, 0.0, 1.0],
        [3.0, 2.0, 1.0, 0.0],
        [0.0, 1.0, 2.0, 3.0],
    ],
    dtype=np.float32,
)
TARGETS = np.eye(4, dtype=np.float32)


def identity_model(metrics: list[Metric]) -> Model:
    model = Model([Dense(4, input_size=4, no_bias=True)], CategoricalCrossEntropy(), None, metrics)
    model.layers[0].weights[...] = to_device(np.eye(4, dtype=np.float32))
    return model


def test_topk_key_holds_k() -> None:
    assert TopKAccuracy(1).key == "top1accuracy"
    assert TopKAccuracy(5).key == "top5accuracy"
    assert Accuracy().key == "accuracy"


def test_two_topk_metrics_are_both_reported() -> None:
    model = identity_model([TopKAccuracy(1), TopKAccuracy(2)])
    _, scores = model.evaluate(SCORES, TARGETS)
    assert list(scores) == ["loss", "top1accuracy", "top2accuracy"]
    assert scores["top1accuracy"] == 0.5
    assert scores["top2accuracy"] == 0.75
    with pytest.raises(KeyError):  # ambiguous: no 1.1 alias with two top-k metrics
        scores["topkaccuracy"]


def test_history_and_epoch_line_hold_both(capsys: pytest.CaptureFixture[str]) -> None:
    model = identity_model([TopKAccuracy(1), TopKAccuracy(2)])
    history = model.train(SCORES, TARGETS, epochs=1, batch_size=4, evaluation=(SCORES, TARGETS))
    _, scores = model.evaluate(SCORES, TARGETS)  # the weights of epoch 1, the only one
    assert history["val_top1accuracy"] == [scores["top1accuracy"]]
    assert history["val_top2accuracy"] == [scores["top2accuracy"]]
    line = capsys.readouterr().out.splitlines()[0]
    assert f"top1accuracy = {scores['top1accuracy']:.4f}" in line
    assert f"top2accuracy = {scores['top2accuracy']:.4f}" in line


def test_a_lone_topk_answers_to_its_1_1_key(capsys: pytest.CaptureFixture[str]) -> None:
    model = identity_model([Accuracy(), TopKAccuracy(2)])
    _, scores = model.evaluate(SCORES, TARGETS)
    assert scores["topkaccuracy"] == scores["top2accuracy"] == 0.75
    assert "topkaccuracy" not in list(scores)  # an alias for reading, not a second entry
    returned = model.test(SCORES, TARGETS)
    assert returned["topkaccuracy"] == 0.75
    assert "topkaccuracy" not in capsys.readouterr().out
    with pytest.raises(KeyError):
        scores["f1score"]  # other missing keys still raise


@pytest.mark.parametrize(
    "metrics",
    [
        [Accuracy(), Accuracy()],
        [TopKAccuracy(3), F1Score(), TopKAccuracy(3)],
    ],
)
def test_two_metrics_with_one_key_are_refused(metrics: list[Metric]) -> None:
    key = metrics[0].key
    with pytest.raises(ValueError, match=f"same key '{key}'"):
        identity_model(metrics)


def test_a_metric_named_loss_is_refused() -> None:
    class Loss(Metric):  # its key, "loss", would hide the loss value
        def __call__(self, y_true: object, y_pred: object) -> float:
            return 0.0

    with pytest.raises(ValueError, match="key 'loss'"):
        identity_model([Loss()])


def test_predictions_unchanged_by_identity_setup() -> None:
    # The fixture above relies on predict() ranking classes as the raw scores do.
    model = identity_model([Accuracy()])
    ranks = np.argsort(-to_host(model.predict(SCORES)), axis=1)
    np.testing.assert_array_equal(ranks, np.argsort(-SCORES, axis=1))
