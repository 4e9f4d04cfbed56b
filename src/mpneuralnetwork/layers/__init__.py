"""Layers: the building blocks of a `Model`."""

from .layer import Layer
from .layer1d import BatchNormalization, Dense, Dropout, Lit_W
from .layer2d import (
    AveragePooling2D,
    BatchNormalization2D,
    Convolutional,
    Flatten,
    MaxPooling2D,
)
from .utils import col2im, im2col

__all__ = [
    "AveragePooling2D",
    "BatchNormalization",
    "BatchNormalization2D",
    "Convolutional",
    "Dense",
    "Dropout",
    "Flatten",
    "Layer",
    "Lit_W",
    "MaxPooling2D",
    "col2im",
    "im2col",
]
