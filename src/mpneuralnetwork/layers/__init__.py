"""Layers: the building blocks of a `Model`."""

from .attention import MultiHeadAttention
from .containers import Concatenate, Container, Residual, Sequential
from .embedding import Embedding, PositionEmbedding
from .global_pooling import GlobalAveragePooling1D, GlobalAveragePooling2D
from .layer import Layer
from .layer1d import BatchNormalization, Dense, Dropout, LayerNormalization, Lit_W
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
from .transformer import TransformerEncoder
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
    "LayerNormalization",
    "Lit_W",
    "MaxPooling2D",
    "MultiHeadAttention",
    "PositionEmbedding",
    "Recurrent",
    "Reshape",
    "Residual",
    "Sequential",
    "SimpleRNN",
    "TransformerEncoder",
    "UpSampling2D",
    "col2im",
    "im2col",
]
