"""The digits CNN trained twice for the same epochs: at a constant rate, and with cosine annealing.

The same seed, data split and network; only the learning-rate schedule differs.

Run it from the repository root:

    python examples/cosine_digits.py
    python examples/cosine_digits.py --epochs 5
"""

from __future__ import annotations

import argparse

import numpy as np

# The network of examples/cnn_digits.py (this script's folder is on sys.path).
from cnn_digits import build_cnn
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import mpneuralnetwork as mpnn
from mpneuralnetwork.callbacks import Callback
from mpneuralnetwork.schedules import CosineAnnealing


def run(schedule: list[Callback], epochs: int, seed: int, verbose: int) -> float:
    """Train the digits CNN with these callbacks; return its test accuracy."""
    mpnn.set_seed(seed)
    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = np.eye(10, dtype=np.float32)[digits.target]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, random_state=seed, stratify=digits.target
    )
    model = build_cnn()
    model.train(X_train, y_train, epochs=epochs, batch_size=32, verbose=verbose, callbacks=schedule)
    _, metrics = model.evaluate(X_test, y_test)
    return metrics["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description="Constant rate vs cosine annealing")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--verbose", type=int, default=0, choices=(0, 1, 2))
    args = parser.parse_args()
    constant = run([], args.epochs, args.seed, args.verbose)
    cosine = run([CosineAnnealing(args.epochs, min_lr=1e-4)], args.epochs, args.seed, args.verbose)
    print(f"test accuracy, constant rate:     {constant:.4f}")
    print(f"test accuracy, cosine annealing:  {cosine:.4f}")


if __name__ == "__main__":
    main()
