"""Train the digits MLP, then draw its learning curves with mpneuralnetwork.plot.plot_history.

Needs matplotlib: pip install ".[plot]" from the source tree (or pip install matplotlib)

Run it from the repository root:

    python examples/plot_learning_curves.py
    python examples/plot_learning_curves.py --output /tmp/curves.png --verbose 0

The documentation site draws its learning-curve figure with this script when it is built.
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
from mpneuralnetwork.layers import Dense, Dropout
from mpneuralnetwork.losses import CategoricalCrossEntropy
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import Adam


def main() -> None:
    parser = argparse.ArgumentParser(description="Learning curves of the digits MLP")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", type=Path, default=Path("learning_curves.png"))
    parser.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    args = parser.parse_args()

    # Check for matplotlib before spending time on training.
    try:
        import matplotlib
    except ImportError:
        sys.exit(
            "plot_learning_curves.py needs matplotlib, which is not installed.\n"
            'Install it with: pip install matplotlib (or the plot extra, pip install ".[plot]")'
        )
    matplotlib.use("Agg")  # write files only; no window needed
    from mpneuralnetwork.plot import plot_history

    mpnn.set_seed(args.seed)
    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[digits.target]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, random_state=args.seed, stratify=digits.target
    )
    model = Model(
        layers=[Dense(128, input_size=64), ReLU(), Dropout(0.2), Dense(10)],
        loss=CategoricalCrossEntropy(),
        optimizer=Adam(learning_rate=0.002),
    )
    history = model.train(
        X_train,
        y_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        verbose=args.verbose,
    )
    print(f"recorded per epoch: {', '.join(history.history)}")
    print(f"best epoch: {history.best_epoch}")
    _, metrics = model.evaluate(X_test, y_test)
    print(f"test accuracy: {metrics['accuracy']:.4f}")

    figure = plot_history(history)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.output, dpi=100, bbox_inches="tight")
    print(f"learning curves saved to {args.output}")


if __name__ == "__main__":
    main()
