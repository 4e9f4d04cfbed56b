"""A small residual network (ResNet) on the scikit-learn digits, as (N, 1, 8, 8) images.

A stem convolution, then two basic blocks: each is two 3x3 convolutions with batch
normalization inside a `Residual`, whose output is added to the block's input (the
skip connection) before a ReLU. The second block halves the image with stride 2, so
its shortcut is a projection (a 1x1 convolution with stride 2 and batch
normalization) that gives the input the same shape. Global average pooling and a
Dense layer make the logits.

Run it from the repository root:

    python examples/resnet_digits.py
    python examples/resnet_digits.py --epochs 3 --channels 8
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import mpneuralnetwork as mpnn
from mpneuralnetwork.activations import ReLU
from mpneuralnetwork.layers import (
    BatchNormalization2D,
    Convolutional,
    Dense,
    GlobalAveragePooling2D,
    Residual,
)
from mpneuralnetwork.losses import CategoricalCrossEntropy
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import Adam


def basic_block(channels: int, stride: int = 1) -> Residual:
    """Two 3x3 convolutions with batch normalization, added to the block's input.

    Where the block changes the shape (``stride`` > 1), the shortcut projects the
    input with a 1x1 convolution of the same stride; elsewhere it is the identity.
    """
    layers = [
        Convolutional(channels, 3, padding="same", stride=stride),
        BatchNormalization2D(),
        ReLU(),
        Convolutional(channels, 3, padding="same"),
        BatchNormalization2D(),
    ]
    shortcut = None
    if stride != 1:
        shortcut = [Convolutional(channels, 1, stride=stride), BatchNormalization2D()]
    return Residual(layers, shortcut=shortcut)


def build_resnet(channels: int = 8) -> Model:
    """Stem, a block at full size, a block at half size, global pooling, logits."""
    layers = [
        Convolutional(channels, 3, input_shape=(1, 8, 8), padding="same"),  # the stem
        BatchNormalization2D(),
        ReLU(),
        basic_block(channels),  # (C, 8, 8) -> (C, 8, 8), identity shortcut
        ReLU(),  # after the addition
        basic_block(2 * channels, stride=2),  # -> (2C, 4, 4), projection shortcut
        ReLU(),
        GlobalAveragePooling2D(),  # -> (2C,)
        Dense(10),  # logits; the loss brings the Softmax
    ]
    return Model(layers, CategoricalCrossEntropy(), Adam(learning_rate=0.005))


def main() -> None:
    parser = argparse.ArgumentParser(description="Digits ResNet")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    args = parser.parse_args()

    mpnn.set_seed(args.seed)
    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)[:, None, :, :]  # (1797, 1, 8, 8)
    y = np.eye(10, dtype=np.float32)[digits.target]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=0, stratify=digits.target
    )

    model = build_resnet(args.channels)
    model.summary()
    model.train(
        X_train, y_train, epochs=args.epochs, batch_size=32, auto_evaluation=0,
        verbose=args.verbose,
    )  # fmt: skip
    _, metrics = model.evaluate(X_test, y_test)
    print(f"test accuracy: {metrics['accuracy']:.4f}")


if __name__ == "__main__":
    main()
