"""The Model: a stack of layers trained with a loss and an optimizer."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from ._errstate import quiet_floating_point
from .activations import Activation, PReLU, ReLU, Sigmoid, Softmax, Swish
from .backend import DTYPE, ArrayType, to_device, to_host, xp
from .callbacks import Callback
from .data import Loader
from .history import History
from .layers import BatchNormalization, Convolutional, Dense, Dropout, Layer
from .losses import MSE, BinaryCrossEntropy, CategoricalCrossEntropy, Loss
from .metrics import RMSE, Accuracy, F1Score, Metric, R2Score, _check_keys, _Scores
from .optimizers import SGD, Optimizer
from .training import fit
from .weights import get_model_weights, restore_model_weights

__all__ = ["Model"]

INFERENCE_CHUNK = 4096
"""Samples per forward pass at inference (bounds the memory of evaluate and predict)."""


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
        if isinstance(layers, Layer) or not isinstance(layers, Sequence) or not layers:
            raise ValueError(f"Model: layers must be a non-empty list of layers; got {layers!r}")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise ValueError(f"Model: layers[{i}] must be a Layer; got {layer!r}")
        if not isinstance(loss, Loss):
            raise ValueError(f"Model: loss must be a Loss such as MSE(); got {loss!r}")
        if optimizer is not None and not isinstance(optimizer, Optimizer):
            raise ValueError(
                f"Model: optimizer must be an Optimizer such as Adam(); got {optimizer!r}"
            )
        if metrics is not None and (
            not isinstance(metrics, Sequence) or not all(isinstance(m, Metric) for m in metrics)
        ):
            raise ValueError(f"Model: metrics must be a list of Metric objects; got {metrics!r}")

        self.layers: list[Layer] = list(layers)
        self.loss = loss
        self.optimizer: Optimizer = SGD() if optimizer is None else optimizer
        self._build_graph()
        self._smart_initialization()
        self.output_activation: Activation | None = self._output_activation()
        self._backward_layers = self._plan_backward()
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
    def _build_graph(self) -> None:
        first = self.layers[0]
        if first.input_shape is None:
            raise ValueError("Input layer does not define input size")
        first.build(first.input_shape)
        for previous, layer in zip(self.layers, self.layers[1:], strict=False):
            layer.build(previous._known("output_shape"))

    def _smart_initialization(self) -> None:
        """He before ReLU / PReLU / Swish, Xavier otherwise; no bias before a BatchNorm."""
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, (Dense, Convolutional)) or layer.initialization != "auto":
                continue
            method, no_bias = "xavier", layer.no_bias
            for following in self.layers[i + 1 :]:
                if isinstance(following, Dropout):
                    continue
                if isinstance(following, BatchNormalization):  # BatchNormalization2D too
                    no_bias = True
                    continue
                if isinstance(following, (ReLU, PReLU, Swish)):
                    method = "he"
                    break
                if isinstance(following, (Activation, Dense, Convolutional)):
                    break
            layer.init_weights(method, no_bias)

    def _output_activation(self) -> Activation | None:
        activation: Activation
        if isinstance(self.loss, BinaryCrossEntropy):
            activation = Sigmoid()
        elif isinstance(self.loss, CategoricalCrossEntropy):
            activation = Softmax(self.loss.temperature, self.loss.epsilon)
        else:
            return None
        if type(self.layers[-1]) is type(activation):
            self.layers.pop()  # the network outputs logits; the loss applies the activation
            if not self.layers:
                raise ValueError("Model: layers hold nothing but the output activation")
        return activation

    def _plan_backward(self) -> list[Layer]:
        """The layers backward visits, last first: none before the first one with parameters.

        Nothing before that layer learns, so the gradient with respect to its input
        is never used: during the Model's backward pass it is told not to compute it
        (``needs_input_gradient``; see `_backward`).
        """
        first = next((i for i, layer in enumerate(self.layers) if layer.params), 0)
        return self.layers[first:][::-1]

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

    def _check_x(self, x: Any, name: str) -> Any:
        if x is None:
            raise ValueError(
                f"{name} must be an array of shape (N, {_dims(self.input_shape)}); got None"
            )
        x = to_device(x)
        if x.dtype.kind not in "fiub":
            raise ValueError(f"{name} must hold numbers; got dtype {x.dtype}")
        if x.shape[1:] != self.input_shape or x.ndim < 2:
            raise ValueError(
                f"{name} must have shape (N, {_dims(self.input_shape)}) to match the first "
                f"layer; got {tuple(x.shape)}"
            )
        if x.shape[0] == 0:
            raise ValueError(f"{name} holds no samples")
        x = x.astype(DTYPE, copy=False)
        if not _all_finite(x):
            raise ValueError(f"{name} contains NaN or infinite values")
        return x

    def _check_xy(self, x: Any, y: Any, x_name: str, y_name: str) -> tuple[Any, Any]:
        x = self._check_x(x, x_name)
        if y is None:
            raise ValueError(f"{y_name} must be an array; got None")
        y = to_device(y)
        if y.dtype.kind not in "fiub":
            raise ValueError(f"{y_name} must hold numbers; got dtype {y.dtype}")
        if y.shape[0:1] != x.shape[0:1] or y.ndim == 0:
            raise ValueError(
                f"{x_name} and {y_name} must hold as many samples; got {x.shape[0]} and "
                f"{y.shape[0] if y.ndim else 'a scalar'}"
            )
        y = self._target_shape(y, y_name)
        y = y.astype(DTYPE, copy=False)
        if not _all_finite(y):
            raise ValueError(f"{y_name} contains NaN or infinite values")
        return x, y

    def _target_shape(self, y: Any, y_name: str) -> Any:
        """``y`` of shape (N, *output_shape); a 1-D y is read as one column for one output."""
        if y.ndim == 1 and self.output_shape == (1,):
            y = y.reshape(-1, 1)
        if y.shape[1:] != self.output_shape:
            hint = ""
            if y.ndim == 1 and isinstance(self.loss, CategoricalCrossEntropy):
                hint = " (one-hot encode class labels, e.g. numpy.eye(classes)[labels])"
            raise ValueError(
                f"{y_name} must have shape (N, {_dims(self.output_shape)}) to match the "
                f"network's output; got {tuple(y.shape)}{hint}"
            )
        return y

    def _check_batch(
        self, x: Any, y: Any, name: str, number: int, total: int, targets: bool
    ) -> tuple[Any, Any]:
        """Check the shapes of a loader's batch (the loader checked dtype and values).

        Args:
            x: Inputs (B, ...), device array in DTYPE.
            y: Targets (B, ...) or None.
            name: The argument the loader came in, for messages.
            number: 1-based number of the batch; ``total`` batches in the epoch.
            targets: Whether the batch must have targets.

        Returns:
            ``(x, y)``, with a 1-D ``y`` read as one column for a network with one output.
        """
        where = f"{name} (batch {number} of {total})"
        if x.shape[1:] != self.input_shape:
            raise ValueError(
                f"{where}: x must have shape (B, {_dims(self.input_shape)}) to match the "
                f"first layer; got {tuple(x.shape)}"
            )
        if y is None:
            if targets:
                raise ValueError(f"{where}: the loader gives no targets (y); they are needed")
            return x, None
        return x, self._target_shape(y, f"{where}: y")

    def _loader_logits(
        self, loader: Loader, training: bool, name: str, targets: bool
    ) -> tuple[Any, Any]:
        """One pass over ``loader`` in its order: the logits and (with ``targets``) targets.

        Returns:
            ``(logits, y)``: device arrays (N, *output_shape) of every batch, in order;
            ``y`` is None without ``targets``.
        """
        logits, ys = [], []
        with iter(loader) as batches:  # ends a reading thread whatever happens
            for number, (xb, yb) in enumerate(batches, 1):
                xb, yb = self._check_batch(xb, yb, name, number, len(loader), targets)
                logits.append(self._logits(xb, training))
                if targets:
                    ys.append(yb)
        return xp.concatenate(logits), (xp.concatenate(ys) if targets else None)

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
    def train(
        self,
        X_train: ArrayType | Loader,
        y_train: ArrayType | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
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
            y_train: Targets (N, *output_shape); one-hot for classification. None
                with a loader.
            epochs: The number of the last epoch, >= 0 (required): the run trains epochs
                ``initial_epoch + 1`` to ``epochs`` (all of them by default).
            batch_size: Samples per gradient step, >= 1 (the last batch may be
                smaller); required with arrays, None with a loader.
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
            self,
            X_train,
            y_train,
            epochs,
            batch_size,
            evaluation=evaluation,
            auto_evaluation=auto_evaluation,
            early_stopping=early_stopping,
            model_checkpoint=model_checkpoint,
            compute_train_metrics=compute_train_metrics,
            verbose=verbose,
            callbacks=callbacks,
            initial_epoch=initial_epoch,
        )

    # -------------------------------------------------------------- inference
    @quiet_floating_point
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
            y: Targets (N, *output_shape); None with a loader.
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
            _no_targets_beside(X, y, "evaluate", "X", "y")
            logits, y = self._loader_logits(X.in_order(), training, "X", targets=True)
        else:
            x, y = self._check_xy(X, y, "X", "y")
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
            _no_targets_beside(X_test, y_test, "test", "X_test", "y_test")
        _, scores = self.evaluate(X_test, y_test)
        print("Test results:")
        for key, value in scores.items():
            print(f"   {key} = {value:.4f}")
        return scores

    @quiet_floating_point
    def predict(self, X: ArrayType | Loader) -> Any:
        """Activated predictions (N, *output_shape) as a NumPy array, in inference mode.

        ``X`` may be a loader: its targets, if any, are ignored, and the predictions
        come in the loader's order, unshuffled (`DataLoader.in_order`).
        """
        if isinstance(X, Loader):
            logits, _ = self._loader_logits(X.in_order(), False, "X", targets=False)
            return to_host(self._activate(logits))
        x = self._check_x(X, "X")
        return to_host(self._activate(self._logits(x)))

    # ---------------------------------------------------------------- summary
    def summary(self) -> None:
        """Print a table of the layers: type, output shape and parameter count, with totals."""
        rows = [("Layer (type)", "Output shape", "Params")]
        trainable = state = 0
        for i, layer in enumerate(self.layers):
            count = sum(int(value.size) for value, _ in layer.params.values())
            trainable += count
            state += sum(int(value.size) for value in layer.state.values())
            rows.append((f"{i}: {type(layer).__name__}", str(layer.output_shape), f"{count:,}"))
        if self.output_activation is not None:
            name = type(self.output_activation).__name__
            rows.append((f"(output) {name}", str(self.output_shape), "0"))
        widths = [max(len(row[c]) for row in rows) for c in range(3)]
        rule = "=" * (sum(widths) + 6)
        lines = [rule]
        for j, row in enumerate(rows):
            lines.append(f"{row[0]:<{widths[0]}}   {row[1]:<{widths[1]}}   {row[2]:>{widths[2]}}")
            if j == 0:
                lines.append("-" * len(rule))
        lines += [
            rule,
            f"Trainable parameters: {trainable:,}",
            f"State values (non-trainable): {state:,}",
            f"Total: {trainable + state:,}",
        ]
        print("\n".join(lines))

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

    def __repr__(self) -> str:
        return (
            f"Model(layers={self.layers!r}, loss={self.loss!r}, optimizer={self.optimizer!r}, "
            f"metrics={self.metrics!r})"
        )


def _no_targets_beside(loader: Loader, y: Any, owner: str, x_name: str, y_name: str) -> None:
    """A loader gives its own targets: refuse a second ``y``."""
    if y is not None:
        raise ValueError(
            f"{owner}: {y_name} must be None when {x_name} is a {type(loader).__name__} "
            f"(the loader gives the targets); got {type(y).__name__}"
        )


def _all_finite(a: Any) -> bool:
    """No NaN or inf in ``a``; one fast reduction, the exact test only if the sum overflows."""
    return bool(xp.isfinite(a.sum())) or bool(xp.isfinite(a).all())


def _dims(shape: tuple[int, ...]) -> str:
    return ", ".join(map(str, shape))
