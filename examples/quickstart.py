"""Quick start: a multi-layer perceptron on the scikit-learn digits (8x8 images, 10 classes).

Run it from the repository root:

    python examples/quickstart.py
    python examples/quickstart.py --epochs 5 --verbose 2   # a tqdm progress bar
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import mpneuralnetwork as mpnn
from mpneuralnetwork.activations import ReLU
from mpneuralnetwork.layers import Dense, Dropout
from mpneuralnetwork.losses import CategoricalCrossEntropy
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import Adam


def main() -> None:
    parser = argparse.ArgumentParser(description="Digits MLP quick start")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    args = parser.parse_args()

    mpnn.set_seed(args.seed)  # weights, dropout masks, shuffling, validation split

    # Data: N-first float32 arrays, one-hot targets.
    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)  # (1797, 64), pixels in [0, 1]
    y = np.eye(10, dtype=np.float32)[digits.target]  # (1797, 10) one-hot
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, random_state=args.seed, stratify=digits.target
    )

    # The network ends with Dense(10): the loss adds the Softmax (the model outputs logits).
    model = Model(
        layers=[Dense(128, input_size=64), ReLU(), Dropout(0.2), Dense(10)],
        loss=CategoricalCrossEntropy(),
        optimizer=Adam(learning_rate=0.002),
    )
    model.summary()

    # 20 % of the training set is held out for validation (auto_evaluation=0.2).
    history = model.train(
        X_train, y_train, epochs=args.epochs, batch_size=args.batch_size, verbose=args.verbose
    )
    print(f"best epoch: {history.best_epoch}")

    model.test(X_test, y_test)
    _, metrics = model.evaluate(X_test, y_test)
    print(f"test accuracy: {metrics['accuracy']:.4f}")

    probabilities = model.predict(X_test[:5])  # NumPy (5, 10), rows sum to 1
    print("predicted:", probabilities.argmax(axis=1), "true:", y_test[:5].argmax(axis=1))


if __name__ == "__main__":
    main()
