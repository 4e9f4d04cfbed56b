"""Global average pooling: the mean over every position of a sequence or an image."""

from __future__ import annotations

import math
from typing import Any

from .. import _checks
from ..backend import ArrayType, xp
from .layer import Layer


class _GlobalAveragePooling(Layer):
    """The mean over the axes after the first of each sample; one value per feature (channel).

    Subclasses name the layout: ``feature_axis`` is the axis of a sample kept, every
    other axis of the sample is averaged.
    """

    #: The input layout, for error messages.
    layout: str = ""
    #: Axes of the per-sample shape; the one kept (0-based in the sample).
    sample_ndim: int = 0
    feature_axis: int = 0

    def build(self, input_shape: int | tuple[int, ...]) -> None:
        """Set the input shape; the output shape is (features,)."""
        name = type(self).__name__
        shape = _checks.shape(name, "input_shape", input_shape)
        assert shape is not None
        if len(shape) != self.sample_ndim:
            raise ValueError(
                f"{name}: input must be {self.layout}, so input_shape must have "
                f"{self.sample_ndim} dimensions; got {shape}"
            )
        self.input_shape = shape
        self.output_shape = (shape[self.feature_axis],)

    def _axes(self) -> tuple[int, ...]:
        """The batch axes averaged over (the sample axes but the feature axis)."""
        return tuple(a + 1 for a in range(self.sample_ndim) if a != self.feature_axis)

    def forward(self, input_batch: ArrayType, training: bool = True) -> ArrayType:
        x = self._check_input(input_batch, min_ndim=self.sample_ndim + 1)
        if self.input_shape is None:
            self.build(tuple(x.shape[1:]))
        self.input = x
        self.output = x.mean(axis=self._axes())
        return self.output

    def backward(self, output_gradient_batch: ArrayType) -> ArrayType:
        """Each position receives 1/count of its feature's gradient."""
        g = self._check_gradient(output_gradient_batch)
        axes = self._axes()
        count = math.prod(self.input.shape[a] for a in axes)
        share = g / count
        # In the input's memory order (channel-major after a convolution), so the
        # layer below keeps its order.
        d_input: Any = xp.empty_like(self.input, dtype=g.dtype)
        d_input[...] = xp.expand_dims(share, axis=axes)
        return d_input

    def get_config(self) -> dict[str, Any]:
        return {"type": type(self).__name__}


class GlobalAveragePooling1D(_GlobalAveragePooling):
    """The mean over the time steps of each sequence.

    Shapes:
        input (N, T, F) -> output (N, F); the gradient is shared equally by the T steps.
    """

    layout = "sequences (N, T, F)"
    sample_ndim = 2
    feature_axis = 1


class GlobalAveragePooling2D(_GlobalAveragePooling):
    """The mean over the positions of each channel of an image.

    Shapes:
        input (N, C, H, W) -> output (N, C); the gradient is shared equally by the
        H·W positions.
    """

    layout = "images (N, C, H, W)"
    sample_ndim = 3
    feature_axis = 0
