"""Train, save, load, check the predictions, and resume training from the saved state.

The archive holds the architecture, the loss and optimizer configurations, every
weight, the BatchNorm running statistics and the optimizer state (Adam's moments
and step count), so training resumes exactly where it stopped.

Run it from the repository root:

    python examples/save_load_resume.py
    python examples/save_load_resume.py --epochs 2 --path /tmp/digits_mlp.npz
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import mpneuralnetwork as mpnn
from mpneuralnetwork.activations import ReLU
from mpneuralnetwork.layers import BatchNormalization, Dense, Dropout
from mpneuralnetwork.losses import CategoricalCrossEntropy
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import Adam
from mpneuralnetwork.serialization import load_model, save_model


def main() -> None:
    parser = argparse.ArgumentParser(description="Save, load and resume")
    parser.add_argument("--epochs", type=int, default=10, help="epochs before and after saving")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--path", type=Path, default=None, help="where to save (default: a temporary directory)"
    )
    parser.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    args = parser.parse_args()

    mpnn.set_seed(args.seed)
    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[digits.target]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, random_state=args.seed, stratify=digits.target
    )
    # A fixed validation set: both train() calls monitor the same samples (the
    # automatic split would draw a new random one at each call).
    X_train, X_val, y_train, y_val = train_test_split(
        X_train, y_train, test_size=0.2, random_state=args.seed
    )

    model = Model(
        layers=[Dense(64, input_size=64), BatchNormalization(), ReLU(), Dropout(0.2), Dense(10)],
        loss=CategoricalCrossEntropy(),
        optimizer=Adam(learning_rate=0.002),
    )
    print(f"--- training {args.epochs} epochs")
    model.train(
        X_train,
        y_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        evaluation=(X_val, y_val),
        verbose=args.verbose,
    )
    _, before = model.evaluate(X_test, y_test)
    print(f"test accuracy before saving: {before['accuracy']:.4f}")

    with tempfile.TemporaryDirectory() as tmp:
        target = args.path if args.path is not None else Path(tmp) / "digits_mlp.npz"
        path = save_model(model, target)  # the path written: ".npz" appended when missing
        print(f"saved to {path} ({path.stat().st_size / 1024:.1f} KiB)")

        restored = load_model(path)  # a new Model: layers, loss, optimizer, every array

    same = np.array_equal(model.predict(X_test), restored.predict(X_test))
    print(f"predictions equal after load_model: {same}")
    optimizer = restored.optimizer
    print(f"optimizer restored: {type(optimizer).__name__}, step t = {optimizer.t}")
    if not same:
        sys.exit("the loaded model predicts differently from the saved one")

    # A second train() continues from the loaded weights and Adam state.
    print(f"--- resuming for {args.epochs} more epochs")
    restored.train(
        X_train,
        y_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        evaluation=(X_val, y_val),
        verbose=args.verbose,
    )
    _, after = restored.evaluate(X_test, y_test)
    print(f"test accuracy after resuming: {after['accuracy']:.4f}")


if __name__ == "__main__":
    main()
