"""The base class of every layer (activations included)."""

from __future__ import annotations

import inspect
import math
from typing import Any

from .. import _checks
from ..backend import DTYPE, ArrayType, xp


class Layer:
    """Base of every layer: shapes, building, and the forward / backward protocol.

    Shapes never include the batch dimension. A layer is usable on its own; the
    `Model` builds each layer after the first with the
    output shape of the layer before it.

    Args:
        output_shape: Shape of one output sample (an int means a 1-tuple), or None.
        input_shape: Shape of one input sample (an int means a 1-tuple), or None.

    Attributes:
        input_shape: The per-sample input shape, once known.
        output_shape: The per-sample output shape, once known.
        input: The last input batch, cached by ``forward`` for ``backward``.
        output: The last output batch.
        needs_input_gradient: When False, ``backward`` may skip the gradient with
            respect to its input and return None. The Model clears it on its first
            layer with parameters during its own backward pass only, since nothing
            uses that gradient.
        integer_input: True for a layer that reads integer ids (`Embedding`): a
            Model whose first layer it is passes its input on without casting it
            to float.
        splits_work: True for a layer that splits its large work across the
            threads of `mpneuralnetwork.threads` (`Convolutional`,
            `MultiHeadAttention`): a Model with such a layer trains and predicts
            inside `threads.parallel`.
    """

    needs_input_gradient: bool = True
    splits_work: bool = False
    integer_input: bool = False

    def __init__(
        self,
        output_shape: int | tuple[int, ...] | None = None,
        input_shape: int | tuple[int, ...] | None = None,
    ) -> None:
        name = type(self).__name__
        self.output_shape: tuple[int, ...] | None = _checks.shape(
            name, "output_shape", output_shape
        )
        self.input_shape: tuple[int, ...] | None = _checks.shape(name, "input_shape", input_shape)
        self._declared_input_shape = self.input_shape  # kept in the config (see get_config)
        self.input: Any = None
        self.output: Any = None
        self._buffers: dict[str, Any] = {}  # work arrays kept between calls (`_buffer`)

    # ----------------------------------------------------------------- building
    def build(self, input_shape: int | tuple[int, ...]) -> None:
        """Store the per-sample input shape; the output shape defaults to it.

        Args:
            input_shape: Shape of one input sample (an int means a 1-tuple).
        """
        self.input_shape = _checks.shape(type(self).__name__, "input_shape", input_shape)
        if self.output_shape is None:
            self.output_shape = self.input_shape

    @property
    def input_size(self) -> int:
        """Number of values in one input sample."""
        return math.prod(self._known("input_shape"))

    @property
    def output_size(self) -> int:
        """Number of values in one output sample."""
        return math.prod(self._known("output_shape"))

    def _check_declared(self, shape: tuple[int, ...], argument: str = "input_shape") -> None:
        """Refuse to build on ``shape`` when another input shape was given at construction.

        Args:
            shape: The input shape the layer is being built on.
            argument: The constructor argument that declared it; a one-number argument
                (``input_size``, ``input_length``) is reported as that number.
        """
        if self.input_shape is None or self.input_shape == shape:
            return
        declared: Any = self.input_shape if argument == "input_shape" else self.input_shape[0]
        raise ValueError(
            f"{type(self).__name__}: {argument}={declared} was given, but the previous layer "
            f"outputs {shape}"
        )

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: Any) -> Any:
        """A work array kept between calls (same shape and dtype: no new allocation).

        Reusing large arrays from batch to batch spares the operating system zeroing
        fresh pages each time (tens of megabytes for a convolution's windows).
        """
        buffer = self._buffers.get(name)
        if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
            buffer = self._buffers[name] = xp.empty(shape, dtype=dtype)
        return buffer

    def _known(self, attribute: str) -> tuple[int, ...]:
        value = getattr(self, attribute)
        if value is None:
            raise ValueError(f"{type(self).__name__}: {attribute} is not known yet; call build")
        return value

    # ------------------------------------------------------------ computation
    def forward(self, input_batch: ArrayType, training: bool = True) -> ArrayType:
        """Compute the output batch (N, *output_shape) of an input batch (N, *input_shape).

        Args:
            input_batch: Array of shape (N, *input_shape).
            training: True while training (dropout active, batch statistics used).

        Returns:
            The output batch.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, output_gradient_batch: ArrayType) -> ArrayType | None:
        """Return dLoss/dinput (N, *input_shape) and store the parameter gradients.

        Returns None instead of the input gradient only when ``needs_input_gradient``
        is False and the layer skips that work.

        Args:
            output_gradient_batch: dLoss/doutput, shape (N, *output_shape).
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    # ------------------------------------------------------------- parameters
    @property
    def params(self) -> dict[str, tuple[ArrayType, ArrayType]]:
        """``{name: (value, gradient)}``: the very arrays the layer computes with."""
        return {}

    def _existing_params(self, *names: str) -> dict[str, tuple[ArrayType, ArrayType]]:
        """``{name: (value, value_gradient)}`` for the named parameters that exist."""
        return {
            name: (getattr(self, name), getattr(self, f"{name}_gradient"))
            for name in names
            if getattr(self, name) is not None
        }

    def array_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]] | None:
        """The arrays the layer holds once built on ``input_shape`` and initialized.

        Computed from the configuration alone, allocating nothing: `load_model` compares
        these shapes with the arrays of a file before it allocates any. Layers with
        parameters or state override it; None means "unknown" (a custom layer), and the
        loader then builds the layer before comparing.

        Args:
            input_shape: Shape of one input sample.

        Returns:
            ``{name: shape}``: each parameter under its ``params`` name, each state
            array as ``"state_" + name``; ``{}`` for a layer that overrides neither
            `params` nor `state` (it holds no array).
        """
        cls = type(self)
        if cls.params is Layer.params and cls.state is Layer.state:
            return {}  # it overrides neither, so it holds nothing
        return None

    def load_params(self, params: dict[str, Any]) -> None:
        """Copy values into the existing parameter arrays (their identity is kept).

        Args:
            params: ``{name: array}`` with the shapes of `params`.
        """
        self._copy_into("parameter", params)

    @property
    def state(self) -> dict[str, ArrayType]:
        """Non-trainable arrays (running statistics); ``{}`` by default."""
        return {}

    @state.setter
    def state(self, values: dict[str, Any]) -> None:
        self._copy_into("state", values)

    def _copy_into(self, kind: str, values: dict[str, Any]) -> None:
        owner = type(self).__name__
        current = (
            {name: value for name, (value, _) in self.params.items()}
            if kind == "parameter"
            else self.state
        )
        for name, value in values.items():
            if name not in current:
                raise ValueError(
                    f"{owner}: unknown {kind} {name!r}; expected one of {sorted(current)}"
                )
            target = current[name]
            value = xp.asarray(value)
            if value.shape != target.shape:
                raise ValueError(
                    f"{owner}: {kind} {name!r} must have shape {target.shape}; got {value.shape}"
                )
            target[...] = value

    # ---------------------------------------------------------------- config
    def get_config(self) -> dict[str, Any]:
        """Return ``{"type": class name, **constructor arguments}``.

        A layer given ``input_shape`` at construction (``Flatten(input_shape=...)`` as a
        model's first layer) keeps it in its config, so that `load_model` can rebuild
        the model from it.
        """
        config: dict[str, Any] = {"type": type(self).__name__}
        declared = getattr(self, "_declared_input_shape", None)
        if declared is not None and "input_shape" in inspect.signature(type(self)).parameters:
            config["input_shape"] = declared
        return config

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "type")
        return f"{type(self).__name__}({args})"

    # ---------------------------------------------------------------- checks
    def _check_input(self, input_batch: Any, min_ndim: int = 0) -> Any:
        """Return the input as a floating backend array, checked against ``input_shape``."""
        x = input_batch if isinstance(input_batch, xp.ndarray) else xp.asarray(input_batch)
        if x.dtype.kind != "f":
            x = x.astype(DTYPE)
        shape = self.input_shape
        if shape is not None:
            if x.shape[1:] != shape:
                raise ValueError(
                    f"{type(self).__name__}.forward: input_batch must have shape "
                    f"(N, {', '.join(map(str, shape))}); got {tuple(x.shape)}"
                )
        elif x.ndim < min_ndim:
            raise ValueError(
                f"{type(self).__name__}.forward: input_batch must have at least {min_ndim} "
                f"dimensions; got shape {tuple(x.shape)}"
            )
        return x

    def _check_gradient(self, output_gradient_batch: Any) -> Any:
        """Return the gradient as a backend array with the shape of the last output."""
        if self.output is None:
            raise ValueError(f"{type(self).__name__}.backward: call forward before backward")
        g = (
            output_gradient_batch
            if isinstance(output_gradient_batch, xp.ndarray)
            else xp.asarray(output_gradient_batch, dtype=self.output.dtype)
        )
        if g.shape != self.output.shape:
            raise ValueError(
                f"{type(self).__name__}.backward: output_gradient_batch must have the shape "
                f"of the last output {tuple(self.output.shape)}; got {tuple(g.shape)}"
            )
        if g.dtype != self.output.dtype:  # gradients flow in the layer's own dtype
            g = g.astype(self.output.dtype)
        return g
