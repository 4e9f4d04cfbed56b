"""Integer class labels: SparseCategoricalCrossEntropy, the metrics and the Model on class ids."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import numerical_gradient
from mpneuralnetwork import set_seed, to_device, to_host
from mpneuralnetwork.activations import ReLU, Softmax
from mpneuralnetwork.callbacks import EarlyStopping
from mpneuralnetwork.data import DataLoader
from mpneuralnetwork.layers import Dense
from mpneuralnetwork.losses import CategoricalCrossEntropy, SparseCategoricalCrossEntropy
from mpneuralnetwork.metrics import Accuracy, F1Score, Precision, Recall, TopKAccuracy
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import Adam
from mpneuralnetwork.serialization import load_model, save_model

LABELS = np.array([0, 3, 1, 2, 3, 0])


def _logits(n: int = 6, classes: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, classes)) * 2


# ================================================================================== the loss
def test_hand_worked_value_and_gradient():
    z = np.array([[0.0, 0.0], [np.log(3.0), 0.0]])  # softmax rows (1/2, 1/2) and (3/4, 1/4)
    y = np.array([1, 0])
    loss = SparseCategoricalCrossEntropy(epsilon=0.0)
    # mean of −log(1/2) and −log(3/4)
    assert loss.direct(z, y) == pytest.approx((np.log(2.0) + np.log(4 / 3)) / 2, rel=1e-12)
    # (p − onehot)/N
    np.testing.assert_allclose(
        to_host(loss.prime(z, y)), [[0.25, -0.25], [-0.125, 0.125]], rtol=1e-12, atol=1e-15
    )


@pytest.mark.parametrize("kwargs", [{}, {"temperature": 2.0}, {"epsilon": 0.0}])
@pytest.mark.parametrize("labels", [LABELS, LABELS.astype(np.float32), LABELS.reshape(-1, 1)])
def test_equal_to_categorical_cross_entropy_on_one_hot_bit_for_bit(kwargs, labels):
    z = to_device(_logits())
    one_hot = to_device(np.eye(4)[LABELS])
    sparse, dense = SparseCategoricalCrossEntropy(**kwargs), CategoricalCrossEntropy(**kwargs)
    assert sparse.direct(z, to_device(labels)) == dense.direct(z, one_hot)
    np.testing.assert_array_equal(
        to_host(sparse.prime(z, to_device(labels))), to_host(dense.prime(z, one_hot))
    )
    value, gradient = sparse.value_and_gradient(z, to_device(labels))
    dense_value, dense_gradient = dense.value_and_gradient(z, one_hot)
    assert float(value) == float(dense_value)
    np.testing.assert_array_equal(to_host(gradient), to_host(dense_gradient))


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_gradient_matches_finite_differences(temperature):
    loss = SparseCategoricalCrossEntropy(temperature, epsilon=0.0)
    z = to_device(_logits(seed=1))
    y = to_device(LABELS)
    numeric = numerical_gradient(lambda: loss.direct(z, y), z)
    np.testing.assert_allclose(to_host(loss.prime(z, y)), numeric, rtol=1e-6, atol=1e-9)


def test_matches_torch_cross_entropy():
    torch = pytest.importorskip("torch", reason="the comparison against PyTorch needs torch")
    z = _logits(seed=2)
    zt = torch.from_numpy(z).requires_grad_(True)
    expected = torch.nn.functional.cross_entropy(zt, torch.from_numpy(LABELS))
    expected.backward()
    loss = SparseCategoricalCrossEntropy(epsilon=0.0)
    assert loss.direct(to_device(z), to_device(LABELS)) == pytest.approx(
        float(expected.detach()), rel=1e-12
    )
    np.testing.assert_allclose(
        to_host(loss.prime(to_device(z), to_device(LABELS))), zt.grad.numpy(), rtol=1e-10
    )


@pytest.mark.parametrize(
    ("labels", "value", "position"),
    [
        ([0, 1, 4, 2], "4", 2),
        ([0, -1, 2, 2], "-1", 1),
        ([0.0, 1.0, 2.5, 1.0], "2.5", 2),
        ([0.0, 1.0, 2.0, np.nan], "nan", 3),
        ([0.0, np.inf, 2.0, 1.0], "inf", 1),
    ],
)
def test_bad_labels_are_named(labels, value, position):
    z = to_device(_logits(4, 3))
    pattern = (
        rf"SparseCategoricalCrossEntropy: expected must hold class ids, whole numbers in "
        rf"\[0, 3\); got -?{value}(\.0)? at position {position}"
    )
    with pytest.raises(ValueError, match=pattern):
        SparseCategoricalCrossEntropy().direct(z, to_device(np.array(labels)))
    with pytest.raises(ValueError, match=pattern):
        SparseCategoricalCrossEntropy().value_and_gradient(z, to_device(np.array(labels)))


@pytest.mark.parametrize(
    ("out_shape", "y_shape"), [((4, 3), (4, 3)), ((4, 3), (3,)), ((4,), (4,)), ((4, 3), (4, 2))]
)
def test_bad_shapes(out_shape, y_shape):
    with pytest.raises(ValueError, match=r"output must have the shape \(N, classes\)"):
        SparseCategoricalCrossEntropy().direct(np.zeros(out_shape), np.zeros(y_shape))


def test_empty_batch_and_bad_arguments():
    with pytest.raises(ValueError, match="no sample"):
        SparseCategoricalCrossEntropy().direct(np.zeros((0, 3)), np.zeros(0))
    with pytest.raises(ValueError, match="SparseCategoricalCrossEntropy: temperature"):
        SparseCategoricalCrossEntropy(temperature=-1.0)


def test_config():
    loss = SparseCategoricalCrossEntropy(2.0, 1e-6)
    config = loss.get_config()
    assert config == {"type": "SparseCategoricalCrossEntropy", "temperature": 2.0, "epsilon": 1e-6}
    rebuilt = SparseCategoricalCrossEntropy(**{k: v for k, v in config.items() if k != "type"})
    assert rebuilt.get_config() == config
    assert repr(loss) == "SparseCategoricalCrossEntropy(temperature=2.0, epsilon=1e-06)"


# =============================================================================== the metrics
CLASS_METRICS = [Accuracy, F1Score, Precision, Recall, lambda: TopKAccuracy(2)]


@pytest.mark.parametrize("make", CLASS_METRICS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_on_labels_equal_those_on_one_hot(make, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, 30)
    probabilities = rng.dirichlet(np.ones(5), 30)
    metric = make()
    expected = metric(to_device(np.eye(5)[labels]), to_device(probabilities))
    for form in (labels, labels.astype(np.float32), labels.reshape(-1, 1)):
        assert metric(to_device(form), to_device(probabilities)) == expected


def test_metrics_on_labels_hand_worked():
    labels = np.array([0, 1, 2, 2])
    # predicted classes 0, 2, 2, 1
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.2, 0.6], [0.1, 0.5, 0.4]])
    assert Accuracy()(labels, probabilities) == 0.5
    # precision per class: 1/1, 0/1, 1/2 -> 0.5; recall: 1/1, 0/1, 1/2 -> 0.5
    assert Precision(0.0)(labels, probabilities) == 0.5
    assert Recall(0.0)(labels, probabilities) == 0.5
    assert F1Score(0.0)(labels, probabilities) == 0.5
    # second-highest scores: classes 1, 1, 0 or 1 (tie), 2: sample 1 has its class 1 there
    assert TopKAccuracy(2)(labels, probabilities) == 1.0
    assert TopKAccuracy(1)(labels, probabilities) == 0.5


@pytest.mark.parametrize("make", CLASS_METRICS)
@pytest.mark.parametrize(
    ("bad", "value", "position"), [(3, "3", 2), (-1, "-1", 2), (1.5, "1.5", 2)]
)
def test_metrics_name_bad_labels(make, bad, value, position):
    metric = make()
    labels = np.array([0.0, 1.0, bad, 2.0])
    with pytest.raises(ValueError, match=rf"y_true must hold class ids.*got {value}"):
        metric(labels, np.full((4, 3), 1 / 3))
    with pytest.raises(ValueError, match=rf"at position {position}"):
        metric(labels, np.full((4, 3), 1 / 3))


# ================================================================================= the Model
def _digits() -> tuple[np.ndarray, np.ndarray]:
    datasets = pytest.importorskip("sklearn.datasets", reason="load_digits needs scikit-learn")
    x, y = datasets.load_digits(return_X_y=True)
    return x[:600] / 16.0, y[:600]


def _train(loss, y, x, **kwargs):
    set_seed(0)
    model = Model(
        [Dense(16, 64), ReLU(), Dense(10)], loss, Adam(0.01), metrics=[Accuracy(), TopKAccuracy(3)]
    )
    history = model.train(x, y, epochs=3, verbose=0, callbacks=[EarlyStopping()], **kwargs)
    return model, history


@pytest.mark.parametrize("loader", [False, True])
def test_training_on_labels_gives_the_weights_of_one_hot_bit_for_bit(loader):
    x, labels = _digits()

    def data(y):
        if loader:
            return {"X_train": DataLoader(x, y, batch_size=32, shuffle=True)}
        return {"X_train": x, "y_train": y, "batch_size": 32}

    def train(loss, y):
        set_seed(0)
        model = Model(
            [Dense(16, 64), ReLU(), Dense(10)],
            loss,
            Adam(0.01),
            metrics=[Accuracy(), TopKAccuracy(3)],
        )
        history = model.train(**data(y), epochs=3, verbose=0, callbacks=[EarlyStopping()])
        return model, history

    dense, dense_history = train(CategoricalCrossEntropy(), np.eye(10)[labels])
    sparse, sparse_history = train(SparseCategoricalCrossEntropy(), labels)
    assert isinstance(sparse.output_activation, Softmax)
    for a, b in zip(dense.layers, sparse.layers, strict=True):
        for name, (value, _) in a.params.items():
            np.testing.assert_array_equal(to_host(value), to_host(b.params[name][0]))
    for key in ("loss", "val_loss", "val_accuracy", "val_top3accuracy"):
        assert dense_history.history[key] == sparse_history.history[key]
    assert sparse_history.history["val_accuracy"][-1] > 0.5  # it learns
    _, dense_scores = dense.evaluate(x, np.eye(10)[labels])
    _, sparse_scores = sparse.evaluate(x, labels)
    assert dense_scores == sparse_scores
    assert sparse.evaluate(DataLoader(x, labels, batch_size=50))[1] == sparse_scores
    assert sparse.test(x, labels) == sparse_scores


def test_default_metrics_and_validation_arrays():
    x, labels = _digits()
    set_seed(0)
    model = Model([Dense(10, 64)], SparseCategoricalCrossEntropy())
    assert [m.key for m in model.metrics] == ["accuracy", "f1score"]
    stop = EarlyStopping(monitor="val_accuracy", patience=0, restore_best_weights=True)
    history = model.train(
        x[:500], labels[:500], epochs=4, evaluation=(x[500:], labels[500:]), verbose=0,
        compute_train_metrics=True, callbacks=[stop], model_checkpoint=False,
    )  # fmt: skip
    assert set(history.history) >= {"accuracy", "f1score", "val_accuracy", "val_f1score"}
    # the monitored metric is the accuracy on the labels, as evaluate computes it
    best = max(history.history["val_accuracy"])
    assert model.evaluate(x[500:], labels[500:])[1]["accuracy"] == best


def test_model_refuses_bad_targets():
    x, labels = _digits()
    model = Model([Dense(10, 64)], SparseCategoricalCrossEntropy())
    bad = labels.copy()
    bad[7] = 10
    with pytest.raises(ValueError, match=r"y_train must hold class ids.*got 10 at position 7"):
        model.train(x, bad, epochs=1, batch_size=32, verbose=0)
    with pytest.raises(ValueError, match=r"y must hold class ids.*\[0, 10\).*position 7"):
        model.evaluate(x, bad)
    with pytest.raises(ValueError, match=r"batch 1 of 2\): y must hold class ids"):
        model.evaluate(DataLoader(x[:20], bad[:20], batch_size=10))
    with pytest.raises(ValueError, match=r"one-hot targets go with CategoricalCrossEntropy"):
        model.train(x, np.eye(10)[labels], epochs=1, batch_size=32, verbose=0)
    dense = Model([Dense(10, 64)], CategoricalCrossEntropy())
    with pytest.raises(ValueError, match=r"or use SparseCategoricalCrossEntropy"):
        dense.train(x, labels, epochs=1, batch_size=32, verbose=0)


def test_save_load_round_trip(tmp_path):
    x, labels = _digits()
    model, _ = _train(SparseCategoricalCrossEntropy(2.0), labels, x, batch_size=64)
    path = tmp_path / "model.npz"
    save_model(model, path)
    loaded = load_model(path)
    assert loaded.loss.get_config() == model.loss.get_config()
    assert isinstance(loaded.loss, SparseCategoricalCrossEntropy)
    assert isinstance(loaded.output_activation, Softmax)
    assert loaded.output_activation.temperature == 2.0
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.evaluate(x, labels)[1] == model.evaluate(x, labels)[1]
    assert json.loads(json.dumps(model.loss.get_config()))["type"] == (
        "SparseCategoricalCrossEntropy"
    )
