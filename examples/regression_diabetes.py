"""Regression on the scikit-learn diabetes data: standardized features and target, MSE loss.

Run it from the repository root:

    python examples/regression_diabetes.py
    python examples/regression_diabetes.py --epochs 5
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split

import mpneuralnetwork as mpnn
from mpneuralnetwork.activations import ReLU
from mpneuralnetwork.layers import Dense, Dropout
from mpneuralnetwork.losses import MSE
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import Adam


def main() -> None:
    parser = argparse.ArgumentParser(description="Diabetes regression")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    args = parser.parse_args()

    mpnn.set_seed(args.seed)
    X, y = load_diabetes(return_X_y=True)  # (442, 10), (442,)
    y = y.reshape(-1, 1)  # targets are 2-D: (N, 1)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=args.seed)

    # Standardize with the training statistics only (no peeking at the test set).
    x_mean, x_std = X_train.mean(axis=0), X_train.std(axis=0)
    y_mean, y_std = y_train.mean(), y_train.std()
    X_train, X_test = [((a - x_mean) / x_std).astype(np.float32) for a in (X_train, X_test)]
    y_train, y_test = [((a - y_mean) / y_std).astype(np.float32) for a in (y_train, y_test)]

    # MSE: no output activation; the default metrics are RMSE and R2Score.
    model = Model(
        layers=[Dense(32, input_size=10), ReLU(), Dropout(0.1), Dense(1)],
        loss=MSE(),
        optimizer=Adam(learning_rate=0.001, weight_decay=0.01),
    )
    model.summary()
    history = model.train(
        X_train,
        y_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        early_stopping=20,
        verbose=args.verbose,
    )
    print(f"best epoch: {history.best_epoch}")

    model.test(X_test, y_test)
    _, metrics = model.evaluate(X_test, y_test)
    print(f"test rmse (standardized): {metrics['rmse']:.4f}")
    print(f"test rmse (disease progression units): {metrics['rmse'] * y_std:.1f}")
    print(f"test r2score: {metrics['r2score']:.4f}")


if __name__ == "__main__":
    main()
