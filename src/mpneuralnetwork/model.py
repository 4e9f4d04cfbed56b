"""The Model: a stack of layers trained with a loss and an optimizer."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from . import _checks
from ._errstate import quiet_floating_point
from .activations import Activation, PReLU, ReLU, Sigmoid, Softmax, Swish
from .backend import DTYPE, ArrayType, to_device, to_host, xp
from .history import History
from .layers import BatchNormalization, Convolutional, Dense, Dropout, Layer
from .losses import MSE, BinaryCrossEntropy, CategoricalCrossEntropy, Loss
from .metrics import RMSE, Accuracy, F1Score, Metric, R2Score
from .optimizers import SGD, Optimizer
from .serialization import Snapshot, get_model_weights, restore_model_weights

__all__ = ["Model"]

#: Samples per forward pass at inference (bounds the memory of evaluate/predict).
INFERENCE_CHUNK = 4096


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
        self.history: History | None = None

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
        y = y.astype(DTYPE, copy=False)
        if not _all_finite(y):
            raise ValueError(f"{y_name} contains NaN or infinite values")
        return x, y

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
        return scores

    # ---------------------------------------------------------------- training
    @quiet_floating_point
    def train(
        self,
        X_train: ArrayType,
        y_train: ArrayType,
        epochs: int,
        batch_size: int,
        evaluation: tuple[ArrayType, ArrayType] | None = None,
        auto_evaluation: float = 0.2,
        early_stopping: int | None = None,
        model_checkpoint: bool = True,
        compute_train_metrics: bool = False,
        verbose: int = 1,
    ) -> History:
        """Train with mini-batch gradient descent.

        Args:
            X_train: Inputs (N, *input_shape).
            y_train: Targets (N, *output_shape); one-hot for classification.
            epochs: Number of passes over the data, >= 0.
            batch_size: Samples per gradient step, >= 1 (the last batch may be smaller).
            evaluation: ``(X_val, y_val)``; wins over ``auto_evaluation``.
            auto_evaluation: Fraction of the data held out at random for
                validation when ``evaluation`` is None, in [0, 1) (0: none).
            early_stopping: Stop after this many epochs without improvement of the
                monitored loss (the validation loss, else the training loss).
            model_checkpoint: Keep the best weights, layer state and optimizer
                state, and restore them at the end.
            compute_train_metrics: Also report the metrics on the training batches.
            verbose: 0 silent, 1 one line per epoch, 2 a progress bar per epoch (tqdm).

        Returns:
            The `History` of the run (also kept as
            ``model.history``).
        """
        epochs = _checks.non_negative_int("train", "epochs", epochs)
        batch_size = _checks.positive_int("train", "batch_size", batch_size)
        auto_evaluation = _checks.number_in(
            "train", "auto_evaluation", auto_evaluation, 0.0, 1.0, high_open=True
        )
        if early_stopping is not None:
            early_stopping = _checks.positive_int("train", "early_stopping", early_stopping)
        model_checkpoint = _checks.boolean("train", "model_checkpoint", model_checkpoint)
        compute_train_metrics = _checks.boolean(
            "train", "compute_train_metrics", compute_train_metrics
        )
        if verbose not in (0, 1, 2):
            raise ValueError(f"train: verbose must be 0, 1 or 2; got {verbose!r}")
        x, y = self._check_xy(X_train, y_train, "X_train", "y_train")
        x, y, x_val, y_val = self._validation_split(x, y, evaluation, auto_evaluation)
        progress = _progress_factory(verbose)

        history = self.history = History()
        # `safe` is what an interruption or a divergence falls back to: the best epoch
        # with checkpointing, else the last finite one.
        safe, safe_epoch = Snapshot.take(self.layers, self.optimizer), 0
        best_loss, waited = math.inf, 0
        try:
            for epoch in range(1, epochs + 1):
                start = time.perf_counter()
                train_loss, train_logits, y_seen = self._run_epoch(
                    x, y, batch_size, compute_train_metrics, progress, epoch, epochs
                )
                values: dict[str, float] = {"loss": train_loss}
                if compute_train_metrics:
                    values.update(_drop_loss(self._scores(y_seen, train_logits, train_loss)))
                monitored = train_loss
                if x_val is not None:
                    val_logits = self._logits(x_val)
                    val_loss = self.loss.direct(val_logits, y_val)
                    val_scores = self._scores(y_val, val_logits, val_loss)
                    values.update({f"val_{k}": v for k, v in val_scores.items()})
                    monitored = val_loss
                values["learning_rate"] = self.optimizer.learning_rate
                values["epoch_time"] = time.perf_counter() - start
                history.append(epoch, values)
                if verbose:
                    print(_epoch_line(epoch, epochs, values))
                if not math.isfinite(monitored) or not math.isfinite(train_loss):
                    safe.restore(self.layers, self.optimizer)
                    _report(
                        verbose,
                        f"TRAINING STOPPED: the loss became {monitored} at epoch {epoch} "
                        f"(diverging; try a smaller learning rate). Restored the weights of "
                        f"epoch {safe_epoch}.",
                    )
                    break
                improved = monitored < best_loss
                if improved:
                    best_loss, waited = monitored, 0
                    history.best_epoch, history.best_loss = epoch, monitored
                else:
                    waited += 1
                if improved or not model_checkpoint:
                    safe, safe_epoch = Snapshot.take(self.layers, self.optimizer), epoch
                if early_stopping is not None and waited >= early_stopping:
                    history.stopped_early = True
                    if verbose:
                        print(
                            f"EARLY STOPPING: no improvement for {early_stopping} epochs "
                            f"(best loss = {best_loss:.4f} at epoch {history.best_epoch})"
                        )
                    break
        except KeyboardInterrupt:
            safe.restore(self.layers, self.optimizer)
            _report(verbose, f"TRAINING INTERRUPTED: restored the weights of epoch {safe_epoch}.")
            raise
        if model_checkpoint and history.best_epoch is not None:
            safe.restore(self.layers, self.optimizer)
            if verbose:
                print(
                    f"MODEL CHECKPOINT: restored the weights of epoch {history.best_epoch} "
                    f"(best loss = {best_loss:.4f})"
                )
        return history

    def _validation_split(
        self, x: Any, y: Any, evaluation: Any, auto_evaluation: float
    ) -> tuple[Any, Any, Any, Any]:
        """``(x_train, y_train, x_val, y_val)``; the validation pair is None without one."""
        if evaluation is not None:
            if not isinstance(evaluation, (tuple, list)) or len(evaluation) != 2:
                received = type(evaluation).__name__
                if isinstance(evaluation, (tuple, list)):
                    received += f" of length {len(evaluation)}"
                raise ValueError(
                    f"train: evaluation must be a tuple (X_val, y_val); got {received}"
                )
            x_val, y_val = self._check_xy(
                evaluation[0], evaluation[1], "evaluation[0]", "evaluation[1]"
            )
            return x, y, x_val, y_val
        n = x.shape[0]
        n_val = int(n * auto_evaluation)
        if n_val == 0:
            return x, y, None, None
        if n_val >= n:
            raise ValueError(f"train: auto_evaluation={auto_evaluation} leaves no training sample")
        order = xp.random.permutation(n)
        val_idx, train_idx = order[:n_val], order[n_val:]
        return x[train_idx], y[train_idx], x[val_idx], y[val_idx]

    def _run_epoch(
        self,
        x: Any,
        y: Any,
        batch_size: int,
        keep_logits: bool,
        progress: Any,
        epoch: int,
        epochs: int,
    ) -> tuple[float, Any, Any]:
        """One pass over shuffled mini-batches.

        Returns:
            The mean training loss, and with ``keep_logits`` the training-mode logits
            and the targets in the order they were seen (else None, None).
        """
        n = x.shape[0]
        order = xp.random.permutation(n)
        total: Any = 0.0
        kept, seen = [], []
        batches: Any = _batches(n, batch_size)
        if progress is not None:
            batches = progress(batches, total=-(-n // batch_size), desc=f"epoch {epoch}/{epochs}")
        for start, stop in batches:
            # Gathering per batch keeps no shuffled copy of the whole data set in memory.
            index = order[start:stop]
            xb, yb = x[index], y[index]
            logits = self._forward(xb, True)
            value, gradient = self.loss.value_and_gradient(logits, yb)
            total = total + value * (stop - start)
            if keep_logits:
                kept.append(logits.copy())
                seen.append(yb)
            self._backward(gradient)
            self.optimizer.step(self.layers)
            if progress is not None:
                batches.set_postfix(loss=f"{float(total) / stop:.4f}", refresh=False)
        if not keep_logits:
            return float(total) / n, None, None
        return float(total) / n, xp.concatenate(kept), xp.concatenate(seen)

    # -------------------------------------------------------------- inference
    @quiet_floating_point
    def evaluate(
        self,
        X: ArrayType,
        y: ArrayType,
        training: bool = False,
        compute_metrics: bool = True,
    ) -> tuple[ArrayType, dict[str, float]]:
        """Loss and metrics of the model on ``(X, y)``.

        Args:
            X: Inputs (N, *input_shape).
            y: Targets (N, *output_shape).
            training: Run the layers in training mode (dropout, batch statistics).
            compute_metrics: Also compute every metric.

        Returns:
            ``(predictions, metrics)``: predictions are the logits when ``training``
            is True and the activated outputs otherwise (backend arrays);
            ``metrics`` holds ``"loss"`` and each metric's key.
        """
        x, y = self._check_xy(X, y, "X", "y")
        logits = self._logits(x, training)
        loss = self.loss.direct(logits, y)
        scores = self._scores(y, logits, loss) if compute_metrics else {"loss": loss}
        return (logits if training else self._activate(logits)), scores

    @quiet_floating_point
    def test(self, X_test: ArrayType, y_test: ArrayType) -> dict[str, float]:
        """Print a ``Test results:`` block with the loss and every metric, and return them."""
        _, scores = self.evaluate(X_test, y_test)
        print("Test results:")
        for key, value in scores.items():
            print(f"   {key} = {value:.4f}")
        return scores

    @quiet_floating_point
    def predict(self, X: ArrayType) -> Any:
        """Activated predictions (N, *output_shape) as a NumPy array, in inference mode."""
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


def _report(verbose: int, message: str) -> None:
    """Print an event of training; when silent, still warn, since it changed the weights."""
    if verbose:
        print(message)
    else:
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def _all_finite(a: Any) -> bool:
    """No NaN or inf in ``a``; one fast reduction, the exact test only if the sum overflows."""
    return bool(xp.isfinite(a.sum())) or bool(xp.isfinite(a).all())


def _dims(shape: tuple[int, ...]) -> str:
    return ", ".join(map(str, shape))


def _batches(n: int, batch_size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, batch_size):
        yield start, min(start + batch_size, n)


def _drop_loss(scores: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in scores.items() if k != "loss"}


def _epoch_line(epoch: int, epochs: int, values: dict[str, float]) -> str:
    width = len(str(epochs))
    train = [f"loss = {values['loss']:.4f}"] + [
        f"{k} = {v:.4f}"
        for k, v in values.items()
        if k not in ("loss", "learning_rate", "epoch_time") and not k.startswith("val_")
    ]
    line = f"epoch {epoch:>{width}}/{epochs}   |   [training]   " + "   ".join(train)
    val = [f"{k[4:]} = {v:.4f}" for k, v in values.items() if k.startswith("val_")]
    if val:
        line += "   |   [evaluation]   " + "   ".join(val)
    return line


def _progress_factory(verbose: int) -> Any:
    """tqdm (the notebook widget in Jupyter) for verbose=2, else None."""
    if verbose != 2:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        warnings.warn(
            "train(verbose=2) needs tqdm for the progress bar (pip install tqdm); "
            "showing one line per epoch instead.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None

    def progress(batches: Iterator[tuple[int, int]], total: int, desc: str) -> Any:
        return tqdm(batches, total=total, desc=desc, unit="batch", leave=False)

    return progress
