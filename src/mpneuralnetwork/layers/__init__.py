"""Layers: the building blocks of a `Model`."""

from .containers import Concatenate, Container, Residual, Sequential
from .embedding import Embedding
from .global_pooling import GlobalAveragePooling1D, GlobalAveragePooling2D
from .layer import Layer
from .layer1d import BatchNormalization, Dense, Dropout, Lit_W
from .layer2d import (
    AveragePooling2D,
    BatchNormalization2D,
    Convolutional,
    Flatten,
    MaxPooling2D,
    Reshape,
    UpSampling2D,
)
from .recurrent import GRU, LSTM, Recurrent, SimpleRNN
from .utils import col2im, im2col

__all__ = [
    "GRU",
    "LSTM",
    "AveragePooling2D",
    "BatchNormalization",
    "BatchNormalization2D",
    "Concatenate",
    "Container",
    "Convolutional",
    "Dense",
    "Dropout",
    "Embedding",
    "Flatten",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "Layer",
    "Lit_W",
    "MaxPooling2D",
    "Recurrent",
    "Reshape",
    "Residual",
    "Sequential",
    "SimpleRNN",
    "UpSampling2D",
    "col2im",
    "im2col",
]
