"""Binary classification on the scikit-learn breast cancer data with BinaryCrossEntropy.

Run it from the repository root:

    python examples/binary_breast_cancer.py
    python examples/binary_breast_cancer.py --epochs 5
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

import mpneuralnetwork as mpnn
from mpneuralnetwork.activations import ReLU
from mpneuralnetwork.layers import Dense, Dropout
from mpneuralnetwork.losses import BinaryCrossEntropy
from mpneuralnetwork.metrics import Accuracy, F1Score, Precision, Recall
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import Adam


def main() -> None:
    parser = argparse.ArgumentParser(description="Breast cancer binary classification")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    args = parser.parse_args()

    mpnn.set_seed(args.seed)
    X, y = load_breast_cancer(return_X_y=True)  # (569, 30); 1 = benign, 0 = malignant
    y = y.reshape(-1, 1).astype(np.float32)  # one column of 0/1 targets: (N, 1)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, random_state=args.seed, stratify=y.ravel()
    )
    mean, std = X_train.mean(axis=0), X_train.std(axis=0)
    X_train, X_test = [((a - mean) / std).astype(np.float32) for a in (X_train, X_test)]

    # One output unit, no Sigmoid: BinaryCrossEntropy works on the logit and the
    # model applies the Sigmoid in predict / evaluate.
    model = Model(
        layers=[Dense(16, input_size=30), ReLU(), Dropout(0.2), Dense(1)],
        loss=BinaryCrossEntropy(),
        optimizer=Adam(learning_rate=0.001),
        metrics=[Accuracy(), Precision(), Recall(), F1Score()],
    )
    model.summary()
    model.train(
        X_train, y_train, epochs=args.epochs, batch_size=args.batch_size, verbose=args.verbose
    )

    model.test(X_test, y_test)
    probabilities = model.predict(X_test)  # (N, 1) NumPy array in [0, 1]
    predicted = (probabilities >= 0.5).astype(np.float32)
    print(f"{int((predicted == y_test).sum())}/{len(y_test)} test samples classified correctly")
    _, metrics = model.evaluate(X_test, y_test)
    print(f"test accuracy: {metrics['accuracy']:.4f}")
    print(f"test f1score: {metrics['f1score']:.4f}")


if __name__ == "__main__":
    main()
