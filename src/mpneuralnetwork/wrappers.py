"""scikit-learn estimators around a `Model`: pipelines, cross-validation and grid searches.

`NeuralNetworkClassifier` and `NeuralNetworkRegressor` follow scikit-learn's
conventions (``fit`` / ``predict`` / ``score``, parameters stored as given and
copied by ``sklearn.base.clone``), so they fit in a ``Pipeline``, in
``cross_val_score`` and in ``GridSearchCV``, serial or on a Dask cluster. Each
``fit`` builds a new `Model` from the estimator's parameters: copies of the template
layers and optimizer (`mpneuralnetwork.serialization.layer_from_config`), then the
output layer and the loss the task implies.

Randomness: with ``random_state`` set, ``fit`` seeds the backend's global random
state with it for its own duration and puts the caller's state back afterwards:
initialization, shuffling, the validation split and dropout all draw from it, so
the same ``random_state`` gives the same model whatever ran before, in this
process or another one (a sweep gives the same numbers on a laptop and on a
cluster), and the estimator leaves the caller's random stream as it found it.
``fit(X, y)`` with ``random_state=s`` trains exactly what ``set_seed(s)`` followed by
``Model.train`` trains. With ``random_state=None`` the global state is used as it
is, as by the rest of the library. Fits in threads of one process take turns (the
global state is the process's): run parallel fits in processes, such as Dask
workers of one thread each or joblib's default backend.

Needs scikit-learn (``pip install "mpneuralnetwork[sklearn]"``).
"""

from __future__ import annotations

import contextlib
import copy
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted
except ImportError as exc:  # pragma: no cover - the test extra installs scikit-learn
    raise ImportError(
        'mpneuralnetwork.wrappers needs scikit-learn >= 1.2: pip install "mpneuralnetwork[sklearn]"'
    ) from exc

try:  # scikit-learn >= 1.6: a function; before, a method of BaseEstimator
    from sklearn.utils.validation import validate_data as _sklearn_validate_data
except ImportError:  # pragma: no cover - exercised with scikit-learn < 1.6 only
    _sklearn_validate_data = None

from . import _checks
from .activations import ReLU
from .backend import set_seed, xp
from .callbacks import Callback
from .history import History
from .layers import Dense, Layer
from .losses import MSE, CategoricalCrossEntropy, Loss
from .model import Model
from .optimizers import Adam, Optimizer
from .serialization import _from_config, layer_from_config

__all__ = ["NeuralNetworkClassifier", "NeuralNetworkRegressor"]

_SEED_LIMIT = 2**32  # numpy.random.seed takes seeds below this

#: One fit at a time per process: a fit seeds the global random state (and the
#: library's thread pool serves one model call at a time), so fits in threads of one
#: process (joblib's threading backend, a Dask worker of several threads) take turns
#: and stay reproducible. Processes are what run fits side by side.
_FIT_LOCK = threading.Lock()


def _validate_data(estimator: Any, X: Any, y: Any = "no_validation", **kwargs: Any) -> Any:
    """scikit-learn's `validate_data` (>= 1.6), else the method it replaced."""
    if _sklearn_validate_data is not None:
        return _sklearn_validate_data(estimator, X, y, **kwargs)
    return estimator._validate_data(X, y, **kwargs)  # pragma: no cover


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Inside, the global random state is seeded with ``seed`` (`set_seed`); the
    caller's state is put back on exit. ``None`` leaves the global state alone."""
    if seed is None:
        yield
        return
    host = np.random.get_state()  # noqa: NPY002 (the spec's global random state)
    restore_device: Callable[[], None] | None = None
    if xp is not np:
        random = xp.random
        if hasattr(random, "get_random_state"):  # CuPy: one generator object per device
            saved = random.get_random_state()
            random.set_random_state(random.RandomState())  # seeded below, not `saved`
            restore_device = lambda: random.set_random_state(saved)  # noqa: E731
        else:
            state = random.get_state()
            restore_device = lambda: random.set_state(state)  # noqa: E731
    set_seed(seed)
    try:
        yield
    finally:
        if restore_device is not None:
            restore_device()
        np.random.set_state(host)  # noqa: NPY002


def _copy_layer(owner: str, template: Any) -> Layer:
    """An untrained copy of a template layer, by its config (the template is never used)."""
    if not isinstance(template, Layer):
        raise TypeError(
            f"{owner}: hidden_layers must hold Layer instances (templates); got {template!r}"
        )
    config = template.get_config()
    return layer_from_config(config, {config["type"]: type(template)})


def _copy_optimizer(owner: str, template: Any) -> Optimizer:
    """A fresh optimizer (no state) with the arguments of the template."""
    if not isinstance(template, Optimizer):
        raise TypeError(f"{owner}: optimizer must be an Optimizer or None; got {template!r}")
    config = template.get_config()
    optimizer: Optimizer = _from_config("optimizer", config, {config["type"]: type(template)})
    return optimizer


class _NeuralNetwork(BaseEstimator):
    """What the classifier and the regressor share: parameters, model building, training.

    Subclasses give the loss (`_loss`) and turn targets into the network's
    (`_targets`) and outputs into predictions.
    """

    def __init__(
        self,
        hidden_layers: Sequence[Layer] | None = None,
        optimizer: Optimizer | None = None,
        epochs: int = 20,
        batch_size: int = 32,
        input_shape: tuple[int, ...] | None = None,
        validation_fraction: float = 0.0,
        callbacks: Sequence[Callback] | None = None,
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
    ) -> None:
        # scikit-learn's rule: store the parameters as given; `fit` checks them. The
        # fitted attributes (model_, history_, ...) exist only after fit.
        self.hidden_layers = hidden_layers
        self.optimizer = optimizer
        self.epochs = epochs
        self.batch_size = batch_size
        self.input_shape = input_shape
        self.validation_fraction = validation_fraction
        self.callbacks = callbacks
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------- parameters
    def set_params(self, **params: Any) -> _NeuralNetwork:
        """Set parameters, ``optimizer__learning_rate`` included (see `get_params`).

        With ``optimizer=None``, a nested ``optimizer__...`` parameter first puts the
        default ``Adam()`` in its place, so a grid can search it directly.
        """
        nested = any(key.startswith("optimizer__") for key in params)
        if nested and "optimizer" not in params and self.optimizer is None:
            self.optimizer = Adam()
        super().set_params(**params)
        return self

    model_: Model
    history_: History
    _seed: int | None

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    def _check_parameters(self) -> None:
        name = type(self).__name__
        _checks.positive_int(name, "epochs", self.epochs)
        _checks.positive_int(name, "batch_size", self.batch_size)
        _checks.number_in(
            name, "validation_fraction", self.validation_fraction, 0.0, 1.0, high_open=True
        )
        if self.verbose not in (0, 1, 2) or isinstance(self.verbose, bool):
            raise ValueError(f"{name}: verbose must be 0, 1 or 2; got {self.verbose!r}")
        if self.hidden_layers is not None and not isinstance(self.hidden_layers, (list, tuple)):
            raise TypeError(
                f"{name}: hidden_layers must be a list of layers or None; "
                f"got {type(self.hidden_layers).__name__}"
            )
        if self.callbacks is not None and not isinstance(self.callbacks, (list, tuple)):
            raise TypeError(
                f"{name}: callbacks must be a list of callbacks or None; "
                f"got {type(self.callbacks).__name__}"
            )

    def _base_seed(self) -> int | None:
        """The seed of this fit: ``random_state`` itself, one drawn from a
        `numpy.random.RandomState`, or None (the global state as it is)."""
        state = self.random_state
        if state is None:
            return None
        if isinstance(state, np.random.RandomState):
            return int(state.randint(0, np.iinfo(np.int32).max))
        if _checks.is_int(state) and 0 <= state < _SEED_LIMIT:
            return int(state)
        raise ValueError(
            f"{type(self).__name__}: random_state must be None, an integer in [0, 2**32) "
            f"or a numpy.random.RandomState; got {state!r}"
        )

    # --------------------------------------------------------------- building
    def _sample_shape(self, n_features: int) -> tuple[int, ...]:
        """The shape each row of X is given: ``input_shape``, else ``(n_features,)``."""
        name = type(self).__name__
        if self.input_shape is None:
            return (n_features,)
        shape = _checks.shape(name, "input_shape", self.input_shape)
        assert shape is not None
        if math.prod(shape) != n_features:
            raise ValueError(
                f"{name}: input_shape {shape} holds {math.prod(shape)} values per sample; "
                f"X has {n_features} features"
            )
        return shape

    def _new_model(self, n_features: int, n_outputs: int) -> Model:
        """The network: copies of the templates, then ``Dense(n_outputs)``, with the loss."""
        name = type(self).__name__
        shape = self._sample_shape(n_features)
        templates = [Dense(100), ReLU()] if self.hidden_layers is None else self.hidden_layers
        layers = [_copy_layer(name, template) for template in templates]
        layers.append(Dense(n_outputs))
        try:  # the first layer learns its input shape from X (its copy, not the template)
            layers[0].build(shape)
        except ValueError as exc:
            raise ValueError(
                f"{name}: the first layer cannot take samples of shape {shape} "
                f"(set input_shape to reshape the rows of X): {exc}"
            ) from None
        optimizer = Adam() if self.optimizer is None else _copy_optimizer(name, self.optimizer)
        return Model(layers, self._loss(), optimizer)

    def _train(self, X: np.ndarray, targets: np.ndarray, first_epoch: int, last: int) -> History:
        """Train ``self.model_`` for epochs ``first_epoch + 1`` to ``last``."""
        assert self.model_ is not None
        callbacks = None
        if first_epoch == 0:  # copies: the templates stay untouched, as the layers do
            callbacks = [copy.deepcopy(c) for c in self.callbacks or []]
        return self.model_.train(
            X.reshape(X.shape[0], *self.model_.input_shape),
            targets,
            epochs=last,
            batch_size=self.batch_size,
            auto_evaluation=self.validation_fraction,
            # With a validation split, keep the weights of the best validation loss
            # (as MLPClassifier's early_stopping); without one, the last weights.
            model_checkpoint=self.validation_fraction > 0,
            verbose=self.verbose,
            callbacks=callbacks,
            initial_epoch=first_epoch,
        )

    def _fit(self, X: Any, y: Any, partial: bool, classes: Any = None) -> _NeuralNetwork:
        self._check_parameters()
        first = not (partial and self.__sklearn_is_fitted__())
        X, y = _validate_data(self, X, y, reset=first, dtype=np.float32, **self._y_options())
        targets = self._targets(y, first, partial, classes)
        if first:
            self._seed = self._base_seed()
            done = 0
        else:
            done = self.history_.epochs[-1] if self.history_.epochs else 0
        epochs = 1 if partial else self.epochs
        seed = self._seed
        if seed is not None and done:  # a later partial_fit: its own stream, as reproducible
            seed = int(np.random.SeedSequence([seed, done]).generate_state(1)[0])
        with _FIT_LOCK, _seeded(seed):
            if first:
                self.model_ = self._new_model(X.shape[1], targets.shape[1])
            history = self._train(X, targets, done, done + epochs)
        if first:
            self.history_ = history
        else:  # partial_fit: one history of all the epochs
            for i, epoch in enumerate(history.epochs):
                self.history_.append(epoch, {k: v[i] for k, v in history.history.items()})
        return self

    def fit(self, X: Any, y: Any) -> _NeuralNetwork:
        """Build a new network and train it for ``epochs`` epochs.

        Args:
            X: Samples (N, F); each row is reshaped to ``input_shape`` when given.
            y: Targets: labels (N,) for the classifier; values (N,) or (N, outputs)
                for the regressor.

        Returns:
            The estimator, fitted: ``model_`` (the trained `Model`), ``history_`` (its
            `History`), ``n_features_in_``.
        """
        return self._fit(X, y, partial=False)

    def _predict_outputs(self, X: Any) -> np.ndarray:
        """The network's activated outputs (N, outputs) for X, as float64."""
        check_is_fitted(self)
        X = _validate_data(self, X, reset=False, dtype=np.float32)
        outputs = self.model_.predict(X.reshape(X.shape[0], *self.model_.input_shape))
        return np.asarray(outputs, dtype=np.float64)

    # ------------------------------------------------------- subclass hooks
    def _loss(self) -> Loss:
        raise NotImplementedError

    def _y_options(self) -> dict[str, Any]:
        return {}

    def _targets(self, y: np.ndarray, first: bool, partial: bool, classes: Any) -> np.ndarray:
        """The network's targets (N, outputs) for y; on the first call, learn their kind."""
        raise NotImplementedError


class NeuralNetworkClassifier(ClassifierMixin, _NeuralNetwork):
    """A classifier: hidden layers, then ``Dense(n_classes)``, trained with cross-entropy.

    Labels may be of any type (ints, strings): ``classes_`` holds them sorted, and
    the network has one output per class (two for a binary task), trained with
    `CategoricalCrossEntropy` (softmax outputs).

    Args:
        hidden_layers: Template layers, copied by their configs at each ``fit`` (never
            trained themselves); the first learns its input shape from X. None
            means ``[Dense(100), ReLU()]``, like ``MLPClassifier``.
        optimizer: Template optimizer, copied at each ``fit``; None means ``Adam()``.
            Its arguments are nested parameters: ``optimizer__learning_rate``.
        epochs: Epochs per ``fit``, >= 1.
        batch_size: Samples per gradient step, >= 1.
        input_shape: Reshape each row of X to this shape, e.g. ``(1, 8, 8)`` for a
            CNN; None keeps the rows flat.
        validation_fraction: Fraction of the samples held out to score each epoch,
            in [0, 1); with a split, the weights of the best validation loss are kept.
        callbacks: Template callbacks, copied at each ``fit`` (``EarlyStopping``...).
        random_state: Seed of initialization, shuffling, the validation split and
            dropout (see the module's notes): an int, a
            `numpy.random.RandomState`, or None for the global random state.
        verbose: 0 silent, 1 a line per epoch, 2 also a progress bar.

    Attributes:
        classes_: The labels, sorted (n_classes,).
        model_: The trained `Model`.
        history_: Its `History` (all epochs, across ``partial_fit`` calls).
        n_features_in_: Features of X at ``fit``.
    """

    def _loss(self) -> Loss:
        return CategoricalCrossEntropy()

    def _targets(self, y: np.ndarray, first: bool, partial: bool, classes: Any) -> np.ndarray:
        name = type(self).__name__
        check_classification_targets(y)
        if first:
            if partial and classes is None:
                raise ValueError(
                    f"{name}.partial_fit: pass classes (every label) on the first call"
                )
            labels = np.unique(y) if classes is None else np.unique(np.asarray(classes))
            if len(labels) < 2:
                raise ValueError(
                    f"{name}: needs samples of at least 2 classes; got 1 class ({labels[0]!r})"
                )
            self.classes_ = labels
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if unknown.size:
            raise ValueError(
                f"{name}: y holds labels {unknown.tolist()} that are not in classes_ "
                f"{self.classes_.tolist()}"
            )
        one_hot = np.zeros((len(y), len(self.classes_)), dtype=np.float32)
        one_hot[np.arange(len(y)), np.searchsorted(self.classes_, y)] = 1.0
        return one_hot

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> NeuralNetworkClassifier:
        """Train one more epoch on the same network; the first call builds it.

        Args:
            X: Samples (N, F).
            y: Labels (N,).
            classes: Every label the calls will see: required on the first call
                (scikit-learn's rule), ignored after.

        Returns:
            The estimator.
        """
        self._fit(X, y, partial=True, classes=classes)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities (N, n_classes), columns in the order of ``classes_`` (rows sum to 1)."""
        proba = self._predict_outputs(X)
        proba /= proba.sum(axis=1, keepdims=True)  # exactly 1 in float64, not only float32
        return proba

    def predict(self, X: Any) -> np.ndarray:
        """The most probable label of each sample (N,), from ``classes_``."""
        outputs = self._predict_outputs(X)  # first: it checks that fit was called
        return np.asarray(self.classes_[np.argmax(outputs, axis=1)])


class NeuralNetworkRegressor(RegressorMixin, _NeuralNetwork):
    """A regressor: hidden layers, then ``Dense(n_outputs)``, trained with `MSE`.

    ``y`` may have one column (1-D ``y`` gives 1-D predictions) or several
    (multi-output regression). The targets are used as they are: scale them (e.g.
    ``TransformedTargetRegressor`` with a ``StandardScaler``) when they are large.

    Args:
        hidden_layers: Template layers, copied by their configs at each ``fit``; None
            means ``[Dense(100), ReLU()]``, like ``MLPRegressor``.
        optimizer: Template optimizer; None means ``Adam()``.
        epochs: Epochs per ``fit``, >= 1.
        batch_size: Samples per gradient step, >= 1.
        input_shape: Reshape each row of X to this shape; None keeps the rows flat.
        validation_fraction: Fraction held out to score each epoch, in [0, 1).
        callbacks: Template callbacks, copied at each ``fit``.
        random_state: Seed (see `NeuralNetworkClassifier`).
        verbose: 0 silent, 1 a line per epoch, 2 also a progress bar.

    Attributes:
        n_outputs_: Columns of y.
        model_: The trained `Model`.
        history_: Its `History`.
        n_features_in_: Features of X at ``fit``.
    """

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    def _more_tags(self) -> dict[str, Any]:  # scikit-learn < 1.6
        return {"multioutput": True}

    def _loss(self) -> Loss:
        return MSE()

    def _y_options(self) -> dict[str, Any]:
        return {"multi_output": True, "y_numeric": True}

    def _targets(self, y: np.ndarray, first: bool, partial: bool, classes: Any) -> np.ndarray:
        targets = np.asarray(y, dtype=np.float32)
        if targets.ndim == 1:
            targets = targets.reshape(-1, 1)
        if first:
            self.n_outputs_ = targets.shape[1]
            self._one_column = np.ndim(y) == 1
        elif targets.shape[1] != self.n_outputs_:
            raise ValueError(
                f"{type(self).__name__}: y has {targets.shape[1]} outputs; the network "
                f"was built for {self.n_outputs_}"
            )
        return targets

    def partial_fit(self, X: Any, y: Any) -> NeuralNetworkRegressor:
        """Train one more epoch on the same network; the first call builds it.

        Returns:
            The estimator.
        """
        self._fit(X, y, partial=True)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predictions (N,) for a 1-D ``y`` at fit, else (N, n_outputs), float64."""
        outputs = self._predict_outputs(X)
        return outputs.ravel() if self._one_column else outputs
