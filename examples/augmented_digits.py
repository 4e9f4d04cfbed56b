"""The digits CNN trained on randomly shifted digits made on the fly by a generator.

Data augmentation through a `GeneratorLoader`: each batch is drawn from the training
images and every image is shifted by up to one pixel in each direction, so the
network never sees the same batch twice. The same CNN trained on the plain images
for the same number of epochs is the reference. Both are tested on the test images
as they are, and shifted the same way.

Run it from the repository root:

    python examples/augmented_digits.py
    python examples/augmented_digits.py --epochs 3
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import numpy as np

# The same network as examples/cnn_digits.py (this script's folder is on sys.path).
from cnn_digits import build_cnn
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import mpneuralnetwork as mpnn
from mpneuralnetwork.data import DataLoader, GeneratorLoader


def shift(images: np.ndarray, rng: np.random.Generator, most: int = 1) -> np.ndarray:
    """Shift each (1, 8, 8) image by up to ``most`` pixels down/up and right/left.

    Pixels shifted in are 0 (background); the result has the shape of ``images``.
    """
    n, _, h, w = images.shape
    pad = np.pad(images, ((0, 0), (0, 0), (most, most), (most, most)))
    dy, dx = rng.integers(-most, most + 1, (2, n))
    out = np.empty_like(images)
    for i in range(n):  # 32 small copies per batch: cheap beside the network
        top, left = most - dy[i], most - dx[i]
        out[i] = pad[i, :, top : top + h, left : left + w]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Digits CNN with on-the-fly augmentation")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)[:, None, :, :]  # (1797, 1, 8, 8)
    y = np.eye(10, dtype=np.float32)[digits.target]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, random_state=args.seed, stratify=digits.target
    )
    X_shifted = shift(X_test, np.random.default_rng(args.seed + 1))  # a fixed shifted test set

    # The generator has its own random generator: with prefetching it runs in a
    # background thread, and the global state is the one dropout draws from.
    augment_rng = np.random.default_rng(args.seed)

    def shifted_batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        while True:
            index = augment_rng.integers(0, len(X_train), args.batch_size)
            yield shift(X_train[index], augment_rng), y_train[index]

    batches_per_epoch = -(-len(X_train) // args.batch_size)  # as many samples as one epoch
    validation = DataLoader(X_test, y_test, batch_size=256, shuffle=False)
    # Both train on every training image and keep their last weights: no sample is
    # held out, and the test set must not choose the epoch.
    options = {"auto_evaluation": 0, "model_checkpoint": False, "verbose": 0}
    results = {}
    for name in ("plain", "augmented"):
        mpnn.set_seed(args.seed)  # the same initial weights
        model = build_cnn()
        if name == "plain":
            model.train(X_train, y_train, args.epochs, args.batch_size, **options)
        else:
            loader = GeneratorLoader(shifted_batches, batches_per_epoch, prefetch=2)
            model.train(loader, epochs=args.epochs, **options)
        _, plain_scores = model.evaluate(validation)
        _, shifted_scores = model.evaluate(X_shifted, y_test)
        results[name] = (plain_scores["accuracy"], shifted_scores["accuracy"])
        print(
            f"{name:>9} CNN, {args.epochs} epochs: test accuracy: {plain_scores['accuracy']:.4f}"
            f"   on shifted test digits: {shifted_scores['accuracy']:.4f}"
        )
    gain = results["augmented"][1] - results["plain"][1]
    print(f"augmentation changes the accuracy on shifted digits by {gain:+.4f}")


if __name__ == "__main__":
    main()
