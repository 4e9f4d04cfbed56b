"""Loss functions. The cross-entropy losses take logits, never probabilities."""

from __future__ import annotations

from typing import Any

from . import _checks
from ._labels import class_ids, one_hot
from .activations import sigmoid, softmax
from .backend import ArrayType, xp

__all__ = [
    "MSE",
    "BinaryCrossEntropy",
    "CategoricalCrossEntropy",
    "Loss",
    "SparseCategoricalCrossEntropy",
]


class Loss:
    """Base of the losses: ``direct`` gives the value, ``prime`` the gradient w.r.t. ``output``.

    ``output`` and ``expected`` have the same shape (N, features).
    """

    def direct(self, output: ArrayType, expected: ArrayType) -> float:
        """The loss value as a Python float."""
        return float(self._value(*self._check(output, expected)))

    def prime(self, output: ArrayType, expected: ArrayType) -> ArrayType:
        """dLoss/doutput, same shape as ``output``."""
        return self._gradient(*self._check(output, expected))

    def value_and_gradient(self, output: ArrayType, expected: ArrayType) -> tuple[Any, ArrayType]:
        """The loss as a 0-d backend array (no device sync) and its gradient, in one pass."""
        output, expected = self._check(output, expected)
        return self._value(output, expected), self._gradient(output, expected)

    # A subclass implements either the private pair or the public pair (direct, prime),
    # as a user's own loss does; the training loop calls value_and_gradient either way.
    def _value(self, output: Any, expected: Any) -> Any:
        if type(self).direct is Loss.direct:
            raise NotImplementedError(f"{type(self).__name__} does not implement direct")
        return self.direct(output, expected)

    def _gradient(self, output: Any, expected: Any) -> Any:
        if type(self).prime is Loss.prime:
            raise NotImplementedError(f"{type(self).__name__} does not implement prime")
        return self.prime(output, expected)

    def _check(self, output: Any, expected: Any) -> tuple[Any, Any]:
        output = output if isinstance(output, xp.ndarray) else xp.asarray(output)
        expected = expected if isinstance(expected, xp.ndarray) else xp.asarray(expected)
        if output.shape != expected.shape or output.ndim == 0:
            raise ValueError(
                f"{type(self).__name__}: output and expected must have the same shape "
                f"(N, features); got output {tuple(output.shape)} and expected "
                f"{tuple(expected.shape)}"
            )
        if output.shape[0] == 0:
            raise ValueError(f"{type(self).__name__}: output and expected hold no sample")
        if expected.dtype != output.dtype:
            expected = expected.astype(output.dtype)
        return output, expected

    def get_config(self) -> dict[str, Any]:
        """``{"type": class name, **constructor arguments}``."""
        return {"type": type(self).__name__}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "type")
        return f"{type(self).__name__}({args})"


class MSE(Loss):
    """Mean over the batch of Σ_features (y − ŷ)²; gradient 2(ŷ − y)/N."""

    def _value(self, output: Any, expected: Any) -> Any:
        diff = output - expected
        return (diff * diff).sum() / output.shape[0]

    def _gradient(self, output: Any, expected: Any) -> Any:
        return (2.0 / output.shape[0]) * (output - expected)


class BinaryCrossEntropy(Loss):
    """Sigmoid cross-entropy on logits z: mean over the batch of
    Σ_features [max(z, 0) − z·y + log(1 + e^−|z|)]; gradient (σ(z) − y)/N.
    """

    def _value(self, output: Any, expected: Any) -> Any:
        z = output
        terms = xp.maximum(z, 0.0) - z * expected + xp.log1p(xp.exp(-xp.abs(z)))
        return terms.sum() / z.shape[0]

    def _gradient(self, output: Any, expected: Any) -> Any:
        return (sigmoid(output) - expected) / output.shape[0]


class CategoricalCrossEntropy(Loss):
    """Softmax cross-entropy on logits z: with p = softmax(z/(T + ε)),
    mean over the batch of −Σ y·log(p + ε); gradient (p − y)/(T + ε)/N.

    Args:
        temperature: T, the softmax temperature (the Model's output Softmax uses it too).
        epsilon: ε, keeps the logarithm and the division finite. With ε = 0 the loss is
            the exact cross-entropy −Σ y·log softmax(z/T), computed as a log-softmax so
            that it stays finite however confident the logits are (T must then be > 0).
    """

    def __init__(self, temperature: float = 1.0, epsilon: float = 1e-8) -> None:
        name = type(self).__name__
        self.temperature = _checks.number_in(name, "temperature", temperature, 0.0, float("inf"))
        self.epsilon = _checks.number_in(name, "epsilon", epsilon, 0.0, float("inf"))
        if self.temperature + self.epsilon <= 0:
            raise ValueError(
                f"{name}: temperature + epsilon must be > 0 (it divides the "
                "logits); got temperature=0.0 and epsilon=0.0"
            )

    def _check(self, output: Any, expected: Any) -> tuple[Any, Any]:
        output, expected = super()._check(output, expected)
        if output.ndim != 2:
            raise ValueError(
                f"{type(self).__name__}: output and expected must have the shape "
                f"(N, classes); got {tuple(output.shape)}"
            )
        return output, expected

    def _value(self, output: Any, expected: Any) -> Any:
        return self._cross_entropy(output, expected, None)

    def _cross_entropy(self, output: Any, expected: Any, p: Any) -> Any:
        """Mean over the batch of −Σ y·log(p + ε); ``p`` the softmax when already known."""
        if self.epsilon == 0.0:
            # log softmax(z) = z − max − log Σ e^(z − max): finite where log(p) underflows.
            z = output / self.temperature
            z = z - z.max(axis=1, keepdims=True)
            log_p = z - xp.log(xp.exp(z).sum(axis=1, keepdims=True))
            return -(expected * log_p).sum() / output.shape[0]
        if p is None:
            p = softmax(output, self.temperature, self.epsilon)
        return -(expected * xp.log(p + self.epsilon)).sum() / output.shape[0]

    def _gradient(self, output: Any, expected: Any) -> Any:
        p = softmax(output, self.temperature, self.epsilon)
        return (p - expected) / ((self.temperature + self.epsilon) * output.shape[0])

    def value_and_gradient(self, output: ArrayType, expected: ArrayType) -> tuple[Any, ArrayType]:
        output, expected = self._check(output, expected)
        p = softmax(output, self.temperature, self.epsilon)
        value = self._cross_entropy(output, expected, p)
        p -= expected
        p /= (self.temperature + self.epsilon) * output.shape[0]
        return value, p

    def get_config(self) -> dict[str, Any]:
        return {
            "type": type(self).__name__,
            "temperature": self.temperature,
            "epsilon": self.epsilon,
        }


class SparseCategoricalCrossEntropy(CategoricalCrossEntropy):
    """`CategoricalCrossEntropy` with integer class labels (class ids) as targets.

    As Keras's ``SparseCategoricalCrossEntropy(from_logits=True)`` and PyTorch's
    ``cross_entropy(logits, labels)``: ``expected`` holds the class of each sample,
    shape (N,) (or (N, 1)), instead of one-hot rows (N, classes). The value and the
    gradient are those of `CategoricalCrossEntropy` on the one-hot rows of the labels,
    bit for bit (the labels are one-hot encoded, then the same code runs), and the
    `Model` adds the same output `Softmax`.

    Labels are integers or floats holding whole numbers (a `Model` hands its targets
    over in `DTYPE`), each in [0, classes).

    Args:
        temperature: T, the softmax temperature (the Model's output Softmax uses it too).
        epsilon: ε, as in `CategoricalCrossEntropy`.

    Raises:
        ValueError: For a label that is not a whole number in [0, classes), naming its
            value and its position.
    """

    def _check(self, output: Any, expected: Any) -> tuple[Any, Any]:
        name = type(self).__name__
        output = output if isinstance(output, xp.ndarray) else xp.asarray(output)
        expected = expected if isinstance(expected, xp.ndarray) else xp.asarray(expected)
        n = output.shape[0] if output.ndim else -1
        if output.ndim != 2 or tuple(expected.shape) not in ((n,), (n, 1)):
            raise ValueError(
                f"{name}: output must have the shape (N, classes) and expected (N,), one "
                f"class id per sample; got output {tuple(output.shape)} and expected "
                f"{tuple(expected.shape)}"
            )
        if n == 0:
            raise ValueError(f"{name}: output and expected hold no sample")
        classes = output.shape[1]
        ids = class_ids(expected, classes, f"{name}: expected")
        return output, one_hot(ids, classes, output.dtype)
