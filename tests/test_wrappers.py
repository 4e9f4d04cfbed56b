"""The scikit-learn estimators of mpneuralnetwork.wrappers, and pickling models.

scikit-learn's own conformance suite runs on both estimators (no expected failure),
then the behaviour it does not cover: labels of any type, templates that stay
untouched, random_state (bit-identical in this process after other draws and in a
fresh one, the caller's random stream untouched), partial_fit, nested optimizer
parameters in a grid search, and pickling (the archive bytes, nothing else).
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="mpneuralnetwork.wrappers needs scikit-learn")

from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from mpneuralnetwork import set_seed, to_host, xp  # noqa: E402
from mpneuralnetwork.activations import ReLU  # noqa: E402
from mpneuralnetwork.callbacks import EarlyStopping  # noqa: E402
from mpneuralnetwork.layers import Convolutional, Dense, Flatten  # noqa: E402
from mpneuralnetwork.losses import CategoricalCrossEntropy  # noqa: E402
from mpneuralnetwork.model import Model  # noqa: E402
from mpneuralnetwork.optimizers import SGD, Adam  # noqa: E402
from mpneuralnetwork.serialization import _unpickle_model, save_model  # noqa: E402
from mpneuralnetwork.wrappers import NeuralNetworkClassifier, NeuralNetworkRegressor  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def fast(cls: type, **overrides: Any) -> Any:
    """An estimator quick enough for the conformance suite, accurate enough for its
    accuracy checks (> 0.83 on blobs, R² > 0.5)."""
    params: dict[str, Any] = {
        "hidden_layers": [Dense(16), ReLU()],
        "optimizer": Adam(learning_rate=0.01),
        "epochs": 20,
        "random_state": 0,
    }
    return cls(**{**params, **overrides})


# ----------------------------------------------------------- sklearn's own checks
@parametrize_with_checks([fast(NeuralNetworkClassifier), fast(NeuralNetworkRegressor)])
def test_scikit_learn_conformance(estimator: Any, check: Any) -> None:
    check(estimator)


# ---------------------------------------------------------------------- data
@pytest.fixture
def blobs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centers = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
    labels = rng.integers(0, 3, 90)
    return centers[labels] + rng.normal(0, 0.5, (90, 2)), labels


def test_labels_of_any_type_come_back_as_given(blobs: Any) -> None:
    X, labels = blobs
    names = np.array(["cat", "dog", "owl"])[labels]
    model = fast(NeuralNetworkClassifier).fit(X, names)
    assert model.classes_.tolist() == ["cat", "dog", "owl"]
    predicted = model.predict(X)
    assert predicted.dtype == names.dtype and set(predicted) <= set(names)
    proba = model.predict_proba(X)
    assert proba.shape == (90, 3) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(predicted, model.classes_[proba.argmax(axis=1)])
    assert model.score(X, names) == np.mean(predicted == names) > 0.9
    assert model.n_features_in_ == 2
    assert isinstance(model.model_, Model) and isinstance(
        model.model_.loss, CategoricalCrossEntropy
    )
    assert model.model_.output_shape == (3,)
    assert len(model.history_) == 20


def test_binary_labels_train_two_outputs(blobs: Any) -> None:
    X, labels = blobs
    model = fast(NeuralNetworkClassifier).fit(X, labels == 0)
    assert model.classes_.tolist() == [False, True]
    assert model.model_.output_shape == (2,)
    assert model.predict_proba(X).shape == (90, 2)


def test_templates_are_copied_never_trained() -> None:
    X, y = np.random.default_rng(1).normal(size=(40, 5)), np.arange(40) % 2
    layers, optimizer, stop = [Dense(8), ReLU()], SGD(learning_rate=0.05), EarlyStopping("loss")
    before = [layer.get_config() for layer in layers]
    stop_state = stop.state
    model = NeuralNetworkClassifier(
        hidden_layers=layers, optimizer=optimizer, callbacks=[stop], epochs=2, random_state=0
    ).fit(X, y)
    assert [layer.get_config() for layer in layers] == before
    assert layers[0].input_shape is None and layers[0].weights is None  # never built
    assert optimizer.velocities == {}  # never stepped
    assert stop.state == stop_state  # a copy ran (and counted epochs), not the template
    assert model.model_.callbacks[0] is not stop
    built = model.model_.layers
    assert all(a is not b for a, b in zip(built, layers, strict=False))
    assert built[0].input_shape == (5,) and built[-1].output_shape == (2,)
    assert type(model.model_.optimizer) is SGD and model.model_.optimizer is not optimizer
    assert model.model_.optimizer.learning_rate == 0.05


def test_default_network_is_mlp_like() -> None:
    X, y = np.random.default_rng(2).normal(size=(30, 4)), np.arange(30) % 3
    model = NeuralNetworkClassifier(epochs=1, random_state=0).fit(X, y)
    kinds = [type(layer).__name__ for layer in model.model_.layers]
    assert kinds == ["Dense", "ReLU", "Dense"]
    assert model.model_.layers[0].output_shape == (100,)
    assert type(model.model_.optimizer) is Adam


def test_input_shape_reshapes_rows_for_a_cnn() -> None:
    rng = np.random.default_rng(3)
    X, y = rng.random((24, 36)), np.arange(24) % 2
    cnn = [Convolutional(2, 3), ReLU(), Flatten()]
    model = NeuralNetworkClassifier(
        hidden_layers=cnn, input_shape=(1, 6, 6), epochs=1, random_state=0
    ).fit(X, y)
    assert model.model_.input_shape == (1, 6, 6)
    assert model.predict(X).shape == (24,)
    with pytest.raises(ValueError, match=r"input_shape \(1, 5, 5\) holds 25 values .* 36"):
        clone(model).set_params(input_shape=(1, 5, 5)).fit(X, y)
    with pytest.raises(ValueError, match=r"first layer cannot take samples of shape \(36,\)"):
        clone(model).set_params(input_shape=None).fit(X, y)


def test_regression_one_and_several_outputs() -> None:
    rng = np.random.default_rng(4)
    X = rng.normal(size=(80, 3))
    y = X @ np.array([1.0, -2.0, 0.5])
    one = fast(NeuralNetworkRegressor, epochs=30).fit(X, y)
    assert one.predict(X).shape == (80,) and one.predict(X).dtype == np.float64
    assert one.score(X, y) > 0.9
    assert one.n_outputs_ == 1
    column = fast(NeuralNetworkRegressor, epochs=30).fit(X, y[:, None])
    assert column.predict(X).shape == (80, 1)
    two = fast(NeuralNetworkRegressor, epochs=30).fit(X, np.c_[y, -y])
    assert two.predict(X).shape == (80, 2) and two.n_outputs_ == 2
    with pytest.raises(ValueError, match="y has 1 outputs; the network was built for 2"):
        two.partial_fit(X, y)


# ----------------------------------------------------------------- parameters
def test_nested_optimizer_parameters_and_clone() -> None:
    model = NeuralNetworkClassifier(optimizer=SGD(momentum=0.5))
    params = model.get_params(deep=True)
    assert params["optimizer__momentum"] == 0.5 and params["optimizer__clipnorm"] is None
    model.set_params(optimizer__learning_rate=0.2)
    assert model.optimizer.learning_rate == 0.2
    twin = clone(model)
    assert twin.optimizer is not model.optimizer
    assert twin.optimizer.get_params() == model.optimizer.get_params()
    # The default optimizer (None) is Adam: a nested parameter searches it directly.
    default = NeuralNetworkClassifier().set_params(optimizer__learning_rate=0.01)
    assert type(default.optimizer) is Adam and default.optimizer.learning_rate == 0.01
    with pytest.raises(ValueError, match="momentum must be a number in"):
        model.set_params(optimizer__momentum=3.0)
    with pytest.raises(ValueError, match=r"unknown arguments \['beta1'\]"):
        model.set_params(optimizer__beta1=0.5)


def test_grid_search_over_the_optimizer_in_a_pipeline(blobs: Any) -> None:
    X, y = blobs
    pipeline = make_pipeline(StandardScaler(), fast(NeuralNetworkClassifier, epochs=5))
    grid = {"neuralnetworkclassifier__optimizer__learning_rate": [0.001, 0.05]}
    search = GridSearchCV(pipeline, grid, cv=3).fit(X, y)
    assert search.best_params_ == {"neuralnetworkclassifier__optimizer__learning_rate": 0.05}
    scores = search.cv_results_["mean_test_score"]
    assert scores[1] > scores[0]  # 5 epochs at 0.001 barely move


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"epochs": 0}, "NeuralNetworkClassifier: epochs must be"),
        ({"batch_size": 2.5}, "NeuralNetworkClassifier: batch_size must be"),
        ({"validation_fraction": 1.0}, r"validation_fraction must be a number in \[0.0, 1.0\)"),
        ({"verbose": 3}, "verbose must be 0, 1 or 2; got 3"),
        ({"random_state": -1}, "random_state must be None, an integer in"),
        ({"random_state": 1.5}, "random_state must be None, an integer in"),
    ],
)
def test_bad_parameters_are_refused_at_fit(params: dict[str, Any], message: str) -> None:
    model = NeuralNetworkClassifier(**params)  # stored as given, scikit-learn's rule
    with pytest.raises(ValueError, match=message):
        model.fit(np.zeros((4, 2)), [0, 1, 0, 1])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"hidden_layers": [Dense(4), "relu"]}, "hidden_layers must hold Layer instances"),
        ({"hidden_layers": Dense(4)}, "hidden_layers must be a list of layers or None"),
        ({"optimizer": "adam"}, "optimizer must be an Optimizer or None; got 'adam'"),
    ],
)
def test_bad_templates_are_type_errors(params: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        NeuralNetworkClassifier(**params).fit(np.zeros((4, 2)), [0, 1, 0, 1])


def test_one_class_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2 classes; got 1 class"):
        NeuralNetworkClassifier().fit(np.zeros((4, 2)), ["a"] * 4)


# ---------------------------------------------------------------- randomness
# Run in this process and in a fresh one: the same source, so the same network.
PROBABILITIES = textwrap.dedent(
    """
    import numpy as np
    from mpneuralnetwork.activations import ReLU
    from mpneuralnetwork.layers import Dense, Dropout
    from mpneuralnetwork.wrappers import NeuralNetworkClassifier

    def probabilities(random_state=7):
        X = np.random.default_rng(5).normal(size=(60, 4))
        y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
        model = NeuralNetworkClassifier(
            hidden_layers=[Dense(12), ReLU(), Dropout(0.3)],
            epochs=3,
            batch_size=8,
            validation_fraction=0.2,
            random_state=random_state,
        )
        return model.fit(X, y).predict_proba(X)
    """
)
_namespace: dict[str, Any] = {}
exec(PROBABILITIES, _namespace)
_probabilities = _namespace["probabilities"]


def _run(script: str) -> None:
    """Run ``script`` in a fresh interpreter that imports this library."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", script], check=True, env=environment, timeout=120)


def test_random_state_gives_identical_models_whatever_ran_before() -> None:
    first = _probabilities()
    np.random.random(1000)  # noqa: NPY002 (unrelated draws from the global state)
    set_seed(99)
    xp.random.random(17)
    np.testing.assert_array_equal(_probabilities(), first)
    assert not np.array_equal(_probabilities(8), first)


def test_random_state_leaves_the_callers_stream_untouched() -> None:
    set_seed(3)
    expected = xp.random.random(5).tolist()
    set_seed(3)
    _probabilities()
    assert xp.random.random(5).tolist() == expected
    # random_state=None draws from the global state, as the library does.
    set_seed(3)
    _probabilities(None)
    assert xp.random.random(5).tolist() != expected


def test_random_state_equals_set_seed_then_train() -> None:
    # The documented equivalence: fit with random_state=s trains what set_seed(s)
    # then Model.train trains.
    X = np.random.default_rng(6).normal(size=(50, 3))
    y = np.arange(50) % 2
    layers = [Dense(6), ReLU()]
    estimator = NeuralNetworkClassifier(hidden_layers=layers, epochs=2, random_state=11).fit(X, y)
    set_seed(11)
    model = Model([Dense(6, input_size=3), ReLU(), Dense(2)], CategoricalCrossEntropy(), Adam())
    targets = np.eye(2)[y]
    model.train(X, targets, epochs=2, batch_size=32, auto_evaluation=0.0, verbose=0)
    for ours, theirs in zip(estimator.model_.layers, model.layers, strict=True):
        for name, (value, _) in theirs.params.items():
            np.testing.assert_array_equal(to_host(ours.params[name][0]), to_host(value))


def test_random_state_gives_identical_models_in_a_fresh_process(tmp_path: Path) -> None:
    target = tmp_path / "fresh.npy"
    _run(f"{PROBABILITIES}\nnp.save({str(target)!r}, probabilities())")
    np.testing.assert_array_equal(np.load(target), _probabilities())


def test_a_random_state_object_draws_a_seed_per_fit() -> None:
    a = _probabilities(np.random.RandomState(0))
    np.testing.assert_array_equal(_probabilities(np.random.RandomState(0)), a)
    state = np.random.RandomState(0)
    assert not np.array_equal(_probabilities(state), _probabilities(state))


# ---------------------------------------------------------------- partial_fit
def test_partial_fit_continues_the_same_network(blobs: Any) -> None:
    X, y = blobs
    model = fast(NeuralNetworkClassifier)
    with pytest.raises(ValueError, match="pass classes"):
        model.partial_fit(X, y)
    model.partial_fit(X[y != 2], y[y != 2], classes=[0, 1, 2])
    network = model.model_
    weights = to_host(network.layers[0].weights).copy()
    model.partial_fit(X, y)
    assert model.model_ is network and not np.array_equal(
        to_host(network.layers[0].weights), weights
    )
    assert model.history_.epochs == [1, 2]
    assert model.classes_.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match=r"labels \[7\] that are not in classes_"):
        model.partial_fit(X[:3], [0, 1, 7])
    with pytest.raises(ValueError, match="features"):
        model.partial_fit(X[:, :1], y)
    # Reproducible too: the same calls give the same network.
    again = fast(NeuralNetworkClassifier)
    again.partial_fit(X[y != 2], y[y != 2], classes=[0, 1, 2]).partial_fit(X, y)
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))
    # fit starts afresh
    assert model.fit(X, y).model_ is not network and model.history_.epochs[-1] == 20


# -------------------------------------------------------------------- pickling
TRAINED_MODEL = textwrap.dedent(
    """
    import numpy as np
    from mpneuralnetwork import set_seed
    from mpneuralnetwork.activations import ReLU
    from mpneuralnetwork.layers import Dense
    from mpneuralnetwork.losses import CategoricalCrossEntropy
    from mpneuralnetwork.model import Model
    from mpneuralnetwork.optimizers import Adam

    def trained_model():
        rng = np.random.default_rng(8)
        X = rng.normal(size=(40, 4)).astype(np.float32)
        y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 40)]
        set_seed(21)
        model = Model([Dense(8, input_size=4), ReLU(), Dense(3)], CategoricalCrossEntropy(), Adam())
        model.train(X, y, epochs=2, batch_size=8, verbose=0)
        return model, X, y
    """
)
exec(TRAINED_MODEL, _namespace)
_trained_model = _namespace["trained_model"]


def test_a_pickled_model_is_the_archive_and_nothing_else() -> None:
    model, X, _ = _trained_model()
    data = pickle.dumps(model)
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(data)]
    strings = [arg for name, arg in ops if name.endswith("UNICODE")]
    payloads = [arg for name, arg in ops if "BYTES" in name]
    assert strings == ["mpneuralnetwork.serialization", "_unpickle_model"]
    assert len(payloads) == 1
    with np.load(io.BytesIO(payloads[0]), allow_pickle=False) as archive:
        assert {"architecture", "model_config", "layer_0_weights"} <= set(archive.files)

    class OnlyTheLoader(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            assert (module, name) == ("mpneuralnetwork.serialization", "_unpickle_model")
            return _unpickle_model

    restored = OnlyTheLoader(io.BytesIO(data)).load()
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))


def test_a_pickled_model_holds_what_save_model_writes(tmp_path: Path) -> None:
    model, _, _ = _trained_model()
    (payload,) = [
        arg for op, arg, _ in pickletools.genops(pickle.dumps(model)) if "BYTES" in op.name
    ]
    with (
        np.load(io.BytesIO(payload)) as pickled,
        np.load(save_model(model, tmp_path / "m")) as saved,
    ):
        assert sorted(pickled.files) == sorted(saved.files)
        for name in saved.files:
            np.testing.assert_array_equal(pickled[name], saved[name])


def test_unpickling_resumes_training_exactly() -> None:
    model, X, y = _trained_model()
    twin = pickle.loads(pickle.dumps(model))
    assert twin.optimizer.t == model.optimizer.t
    for m in (model, twin):
        set_seed(5)
        m.train(X, y, epochs=4, batch_size=8, verbose=0, initial_epoch=2)
    for a, b in zip(model.layers, twin.layers, strict=True):
        for name, (value, _) in a.params.items():
            np.testing.assert_array_equal(to_host(value), to_host(b.params[name][0]))
    np.testing.assert_array_equal(twin.predict(X), model.predict(X))


def test_unpickling_checks_the_bytes_as_load_model_checks_a_file() -> None:
    with pytest.raises(ValueError, match=r"<pickled model> is not a mpneuralnetwork model archive"):
        _unpickle_model(b"not an archive")
    with pytest.raises(TypeError, match="holds bytes"):
        _unpickle_model("text")  # type: ignore[arg-type]
    buffer = io.BytesIO()
    np.savez(buffer, architecture=np.array("[]"), model_config=np.array("{}"))
    with pytest.raises(ValueError, match="'architecture' must be a non-empty list"):
        _unpickle_model(buffer.getvalue())


def test_a_model_pickled_in_another_process_predicts_identically(tmp_path: Path) -> None:
    target = tmp_path / "model.pkl"
    _run(
        f"{TRAINED_MODEL}\nimport pickle\nmodel, X, _ = trained_model()\n"
        f"pickle.dump((model, model.predict(X)), open({str(target)!r}, 'wb'))"
    )
    with open(target, "rb") as file:
        model, predictions = pickle.load(file)
    twin, X, _ = _trained_model()  # and the same network as this process trains
    np.testing.assert_array_equal(model.predict(X), predictions)
    np.testing.assert_array_equal(twin.predict(X), predictions)


@pytest.mark.parametrize("cls", [NeuralNetworkClassifier, NeuralNetworkRegressor])
def test_estimators_pickle_and_keep_training(cls: type, blobs: Any) -> None:
    X, y = blobs
    model = fast(cls, epochs=3).fit(X, y)
    twin = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(twin.predict(X), model.predict(X))
    assert twin.get_params()["hidden_layers"][0].get_config() == Dense(16).get_config()
    assert twin.history_.epochs == [1, 2, 3]
    for m in (model, twin):
        m.partial_fit(X, y)
    np.testing.assert_array_equal(twin.predict(X), model.predict(X))


def test_the_module_names_the_extra_without_scikit_learn() -> None:
    script = (
        "import sys; sys.modules['sklearn'] = None\n"
        "try:\n    import mpneuralnetwork.wrappers\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    output = subprocess.run(
        [sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=60
    ).stdout
    assert 'pip install "mpneuralnetwork[sklearn]"' in output


def test_fits_in_threads_take_turns_and_stay_reproducible() -> None:
    from concurrent.futures import ThreadPoolExecutor

    expected = _probabilities()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: _probabilities(), range(4)))
    for result in results:
        np.testing.assert_array_equal(result, expected)
