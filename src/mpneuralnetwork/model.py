"""The Model: a stack of layers trained with a loss and an optimizer."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from . import _graph as graph
from . import _inputs as inputs
from . import threads
from ._errstate import quiet_floating_point
from ._summary import summary_table
from .activations import Activation
from .backend import ArrayType, to_host, xp
from .callbacks import Callback
from .data import Loader
from .history import History
from .layers import Layer
from .losses import MSE, Loss
from .metrics import RMSE, Accuracy, F1Score, Metric, R2Score, _check_keys, _Scores
from .optimizers import SGD, Optimizer
from .training import DEFAULT_BATCH_SIZE, fit
from .weights import get_model_weights, restore_model_weights

__all__ = ["Model"]

INFERENCE_CHUNK = 128
"""Samples per forward pass at inference (bounds the memory of evaluate and predict).

Activations of a chunk this size stay in the cache from one layer to the next: predict
on 10,000 samples of the CIFAR-shaped benchmark network took 10.0 s in chunks of 128
against 11.3 s in chunks of 512 (chunks of 4096 peaked at 18.9 GiB), the super CNN
2.4 s against 3.3 s, with a quarter of the memory."""

F = TypeVar("F", bound=Callable[..., Any])


def _in_parallel(method: F) -> F:
    """Run a Model method inside `threads.parallel` when a layer splits its work."""

    @functools.wraps(method)
    def wrapper(self: Model, *args: Any, **kwargs: Any) -> Any:
        if not any(layer.splits_work for layer in self.layers):
            return method(self, *args, **kwargs)
        with threads.parallel():
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class Model:
    """A feed-forward network: layers, a loss on logits, an optimizer and metrics.

    At construction the layers are built one after the other, Dense and
    Convolutional layers with ``initialization="auto"`` get He or Xavier weights
    (and no bias before a batch normalization), the output activation is derived
    from the loss (Sigmoid for BinaryCrossEntropy, Softmax for
    CategoricalCrossEntropy; a trailing copy of it in ``layers`` is removed, the
    network outputs logits), and default metrics are chosen when none are given.

    Args:
        layers: The layers, in order; the first must know its input shape.
        loss: The loss, computed on the logits.
        optimizer: Defaults to ``SGD()``.
        metrics: Defaults to ``[RMSE(), R2Score()]`` for MSE and
            ``[Accuracy(), F1Score()]`` otherwise.

    Attributes:
        layers: The layers (without the output activation).
        output_activation: The activation applied to the logits for predictions, or None.
    """

    def __init__(
        self,
        layers: Sequence[Layer],
        loss: Loss,
        optimizer: Optimizer | None = None,
        metrics: Sequence[Metric] | None = None,
    ) -> None:
        inputs.check_model_arguments(layers, loss, optimizer, metrics)
        self.layers: list[Layer] = list(layers)
        self.loss = loss
        self.optimizer: Optimizer = SGD() if optimizer is None else optimizer
        graph.build(self.layers)
        graph.smart_initialization(self.layers)
        self.output_activation: Activation | None = graph.output_activation(self.layers, loss)
        self._backward_layers = graph.backward_plan(self.layers)
        self.metrics: list[Metric] = (
            list(metrics) if metrics is not None else self._default_metrics()
        )
        _check_keys(self.metrics)
        self.history: History | None = None
        #: The callbacks of the last ``train`` call (or of the loaded file).
        self.callbacks: list[Callback] = []
        #: Set to True by a callback to end training after the current epoch.
        self.stop_training = False

    # ------------------------------------------------------------ construction
    def _default_metrics(self) -> list[Metric]:
        if isinstance(self.loss, MSE):
            return [RMSE(), R2Score()]
        return [Accuracy(), F1Score()]

    # ------------------------------------------------------------------ shapes
    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample."""
        return self.layers[0]._known("input_shape")

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of one output sample."""
        return self.layers[-1]._known("output_shape")

    # ------------------------------------------------------------- computation
    def _forward(self, x: Any, training: bool) -> Any:
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def _backward(self, gradient: Any) -> None:
        # The first learning layer skips its unused input gradient only inside this pass:
        # a persistent flag would break the layer when reused alone or in another model.
        first = self._backward_layers[-1]
        previous, first.needs_input_gradient = first.needs_input_gradient, False
        try:
            for layer in self._backward_layers:
                gradient = layer.backward(gradient)
        finally:
            first.needs_input_gradient = previous

    def _activate(self, logits: Any) -> Any:
        if self.output_activation is None:
            return logits
        return self.output_activation.forward(logits, training=False)

    def _logits(self, x: Any, training: bool = False) -> Any:
        """Forward pass; at inference in chunks of INFERENCE_CHUNK samples."""
        if training or x.shape[0] <= INFERENCE_CHUNK:
            return self._forward(x, training)
        parts = [
            self._forward(x[i : i + INFERENCE_CHUNK], False)
            for i in range(0, x.shape[0], INFERENCE_CHUNK)
        ]
        return xp.concatenate(parts)

    def _scores(self, y: Any, logits: Any, loss: float) -> dict[str, float]:
        predictions = self._activate(logits)
        scores = {"loss": loss}
        for metric in self.metrics:
            if isinstance(metric, RMSE) and isinstance(self.loss, MSE):
                scores[metric.key] = RMSE.from_mse(loss)
            else:
                scores[metric.key] = metric(y, predictions)
        return _Scores(scores, self.metrics)

    # ---------------------------------------------------------------- training
    @quiet_floating_point
    @_in_parallel
    def train(
        self,
        X_train: ArrayType | Loader,
        y_train: ArrayType | None = None,
        epochs: int | None = None,
        batch_size: int | None = DEFAULT_BATCH_SIZE,
        evaluation: tuple[ArrayType, ArrayType] | Loader | None = None,
        auto_evaluation: float = 0.2,
        early_stopping: int | None = None,
        model_checkpoint: bool = True,
        compute_train_metrics: bool = False,
        verbose: int = 1,
        callbacks: Sequence[Callback] | None = None,
        initial_epoch: int = 0,
    ) -> History:
        """Train with mini-batch gradient descent (the loop is in `mpneuralnetwork.training`).

        Args:
            X_train: Inputs (N, *input_shape): an array, a memory-mapped array (read
                batch by batch, never whole), or a `DataLoader` / `GeneratorLoader`
                (`mpneuralnetwork.data`), which then gives the targets and the batches.
            y_train: Targets (N, *output_shape); one-hot for classification, or class
                ids (N,) with `SparseCategoricalCrossEntropy`. None with a loader.
            epochs: The number of the last epoch, >= 0 (required): the run trains epochs
                ``initial_epoch + 1`` to ``epochs`` (all of them by default).
            batch_size: Samples per gradient step, >= 1 (the last batch may be
                smaller): 32 by default (`mpneuralnetwork.training.DEFAULT_BATCH_SIZE`;
                None too), as in Keras. A loader has its own
                batch size: leave it out (or pass None or the same value); another value
                is a ValueError.
            evaluation: ``(X_val, y_val)`` or a loader; wins over ``auto_evaluation``.
            auto_evaluation: Fraction of the samples held out at random for
                validation when ``evaluation`` is None, in [0, 1) (0: none). They are
                held out by index: the data set is not copied.
            early_stopping: Stop after this many epochs without improvement of the
                monitored loss (the validation loss, else the training loss); a
                shortcut for an `EarlyStopping` callback.
            model_checkpoint: Keep the best weights, layer state and optimizer
                state, and restore them at the end; a shortcut for an in-memory
                `ModelCheckpoint` callback.
            compute_train_metrics: Also report the metrics on the training batches.
            verbose: 0 silent, 1 one line per epoch, 2 also a progress bar per epoch (tqdm).
            callbacks: `Callback` objects called during training. The model keeps
                them (``model.callbacks``, saved by ``save_model``): None reuses
                those of the previous call or of the loaded file, ``[]`` trains without.
            initial_epoch: Epochs already trained (when resuming): callbacks and
                schedules continue from their state instead of starting afresh.

        Returns:
            The `History` of the run (also kept as ``model.history``).
        """
        return fit(
            self, X_train, y_train, epochs, batch_size, evaluation, auto_evaluation,
            early_stopping, model_checkpoint, compute_train_metrics, verbose, callbacks,
            initial_epoch,
        )  # fmt: skip

    # -------------------------------------------------------------- inference
    @quiet_floating_point
    @_in_parallel
    def evaluate(
        self,
        X: ArrayType | Loader,
        y: ArrayType | None = None,
        training: bool = False,
        compute_metrics: bool = True,
    ) -> tuple[ArrayType, dict[str, float]]:
        """Loss and metrics of the model on ``(X, y)``.

        Args:
            X: Inputs (N, *input_shape), or a loader giving inputs and targets (read
                once, unshuffled, batch by batch).
            y: Targets (N, *output_shape), or class ids (N,) with
                `SparseCategoricalCrossEntropy`; None with a loader.
            training: Run the layers in training mode (dropout, batch statistics;
                computed per batch with a loader).
            compute_metrics: Also compute every metric.

        Returns:
            ``(predictions, metrics)``: predictions are the logits when ``training``
            is True and the activated outputs otherwise (backend arrays, in the
            loader's order); ``metrics`` holds ``"loss"`` and each metric's key. With
            exactly one `TopKAccuracy`, its value is also readable under its 1.1 key,
            ``metrics["topkaccuracy"]`` (not listed among the keys).
        """
        if isinstance(X, Loader):
            inputs.no_targets_beside(X, y, "evaluate", "X", "y")
            logits, y = inputs.loader_logits(self, X.in_order(), training, "X", targets=True)
        else:
            x, y = inputs.check_xy(self, X, y, "X", "y")
            logits = self._logits(x, training)
        loss = self.loss.direct(logits, y)
        scores = self._scores(y, logits, loss) if compute_metrics else {"loss": loss}
        return (logits if training else self._activate(logits)), scores

    @quiet_floating_point
    def test(self, X_test: ArrayType | Loader, y_test: ArrayType | None = None) -> dict[str, float]:
        """Print a ``Test results:`` block with the loss and every metric, and return them.

        ``X_test`` may be a loader (then ``y_test`` is None), as in `evaluate`.
        """
        if isinstance(X_test, Loader):
            inputs.no_targets_beside(X_test, y_test, "test", "X_test", "y_test")
        _, scores = self.evaluate(X_test, y_test)
        print("Test results:")
        for key, value in scores.items():
            print(f"   {key} = {value:.4f}")
        return scores

    @quiet_floating_point
    @_in_parallel
    def predict(self, X: ArrayType | Loader) -> Any:
        """Activated predictions (N, *output_shape) as a NumPy array, in inference mode.

        ``X`` may be a loader: its targets, if any, are ignored, and the predictions
        come in the loader's order, unshuffled (`DataLoader.in_order`).
        """
        if isinstance(X, Loader):
            logits, _ = inputs.loader_logits(self, X.in_order(), False, "X", targets=False)
            return to_host(self._activate(logits))
        x = inputs.check_x(self, X, "X")
        return to_host(self._activate(self._logits(x)))

    # ---------------------------------------------------------------- summary
    def summary(self) -> None:
        """Print a table of the layers: type, output shape and parameter count, with totals."""
        print(summary_table(self))

    # ------------------------------------------------------------- deprecated
    def get_weights(self, optimizer_params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Deprecated: use `mpneuralnetwork.serialization.get_model_weights`."""
        warnings.warn(
            "Model.get_weights is deprecated; use "
            "mpneuralnetwork.serialization.get_model_weights(model.layers, ...)",
            DeprecationWarning,
            stacklevel=2,
        )
        return get_model_weights(self.layers, optimizer_params)

    def restore_weights(self, weights: dict[str, Any], optimizer: Optimizer | None = None) -> None:
        """Deprecated: use `mpneuralnetwork.serialization.restore_model_weights`."""
        warnings.warn(
            "Model.restore_weights is deprecated; use "
            "mpneuralnetwork.serialization.restore_model_weights(model.layers, ...)",
            DeprecationWarning,
            stacklevel=2,
        )
        restore_model_weights(self.layers, weights, optimizer)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickle as the archive `save_model` writes (arrays and JSON, never code).

        Unpickling reads it back with `load_model`'s checks: the model predicts and
        resumes training exactly as before (``history`` is not kept). ``copy.copy``
        and ``copy.deepcopy`` make such a copy too.
        """
        from .serialization import _pickled_model  # it imports this module

        return _pickled_model(self)

    def __repr__(self) -> str:
        return (
            f"Model(layers={self.layers!r}, loss={self.loss!r}, optimizer={self.optimizer!r}, "
            f"metrics={self.metrics!r})"
        )
