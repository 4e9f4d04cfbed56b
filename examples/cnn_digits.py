"""A small convolutional network on the scikit-learn digits, as (N, 1, 8, 8) images.

Trains the CNN, tests it, saves it to one .npz file, loads it back and checks that
the loaded model predicts exactly the same.

Run it from the repository root:

    python examples/cnn_digits.py
    python examples/cnn_digits.py --epochs 3 --save /tmp/cnn_digits.npz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import mpneuralnetwork as mpnn
from mpneuralnetwork.activations import ReLU
from mpneuralnetwork.layers import (
    BatchNormalization2D,
    Convolutional,
    Dense,
    Dropout,
    Flatten,
    MaxPooling2D,
)
from mpneuralnetwork.losses import CategoricalCrossEntropy
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import Adam
from mpneuralnetwork.serialization import load_model, save_model


def build_cnn() -> Model:
    """Conv -> BN -> ReLU -> MaxPool, twice, then a small dense head."""
    layers = [
        # (1, 8, 8) -> (16, 8, 8): "same" padding keeps the image size.
        Convolutional(16, 3, input_shape=(1, 8, 8), padding="same"),
        BatchNormalization2D(),  # the convolution before it loses its bias
        ReLU(),  # ... and gets He initialization
        MaxPooling2D(2),  # -> (16, 4, 4)
        Convolutional(32, 3, padding="same"),  # -> (32, 4, 4)
        BatchNormalization2D(),
        ReLU(),
        MaxPooling2D(2),  # -> (32, 2, 2)
        Flatten(),  # -> (128,)
        Dense(64),
        ReLU(),
        Dropout(0.3),
        Dense(10),  # logits; the loss brings the Softmax
    ]
    return Model(layers, CategoricalCrossEntropy(), Adam(learning_rate=0.003))


def main() -> None:
    parser = argparse.ArgumentParser(description="Digits CNN")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    parser.add_argument("--save", type=Path, default=Path("cnn_digits.npz"), help="model file")
    args = parser.parse_args()

    mpnn.set_seed(args.seed)
    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)[:, None, :, :]  # (1797, 1, 8, 8): N, C, H, W
    y = np.eye(10, dtype=np.float32)[digits.target]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, random_state=args.seed, stratify=digits.target
    )

    model = build_cnn()
    model.summary()
    model.train(
        X_train,
        y_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        verbose=args.verbose,
    )
    model.test(X_test, y_test)
    _, metrics = model.evaluate(X_test, y_test)
    print(f"test accuracy: {metrics['accuracy']:.4f}")

    # Save, reload, and check that the reloaded model predicts the same.
    path = save_model(model, args.save)
    restored = load_model(path)
    same = np.array_equal(model.predict(X_test), restored.predict(X_test))
    print(f"saved to {path}; reloaded model predicts the same: {same}")
    if not same:
        sys.exit("the reloaded model predicts differently")


if __name__ == "__main__":
    main()
