"""Export the digits CNN to ONNX and serve it from onnxruntime.

Trains the CNN of examples/cnn_digits.py briefly, exports it with
`mpneuralnetwork.onnx.export`, checks that onnxruntime predicts what
``model.predict`` does, and prints the prediction time per sample of both, for
the whole test set in one batch and for one sample at a time.

Needs the onnx extra and onnxruntime (``pip install ".[onnx]" onnxruntime``).
Run it from the repository root:

    python examples/export_onnx.py
    python examples/export_onnx.py --epochs 3 --path /tmp/digits.onnx
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

# The network of examples/cnn_digits.py (this script's folder is on sys.path).
from cnn_digits import build_cnn
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import mpneuralnetwork as mpnn
from mpneuralnetwork.onnx import export


def seconds_per_call(function: Callable[[], Any], repeats: int) -> float:
    """The best time of ``repeats`` calls (after one warm-up call)."""
    function()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description="Export the digits CNN to ONNX")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    parser.add_argument("--path", type=Path, default=Path("digits_cnn.onnx"), help="ONNX file")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls (best is kept)")
    args = parser.parse_args()

    mpnn.set_seed(args.seed)
    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)[:, None, :, :]  # (1797, 1, 8, 8)
    y = np.eye(10, dtype=np.float32)[digits.target]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, random_state=args.seed, stratify=digits.target
    )
    model = build_cnn()
    model.train(
        X_train, y_train, epochs=args.epochs, batch_size=args.batch_size, verbose=args.verbose
    )

    path = export(model, args.path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(None, {"input": X_test})
    expected = model.predict(X_test)
    same = np.allclose(probabilities, expected, rtol=1e-5, atol=1e-6)
    accuracy = float((probabilities.argmax(axis=1) == y_test.argmax(axis=1)).mean())
    print(f"exported to {path} ({path.stat().st_size / 1024:.1f} KiB)")
    print(f"onnxruntime test accuracy: {accuracy:.4f}")
    print(f"onnxruntime predicts the same as model.predict: {same}")
    print(f"largest difference: {np.abs(probabilities - expected).max():.2e}")
    if not same:
        sys.exit("onnxruntime predicts differently")

    n = len(X_test)
    one = X_test[:1]
    timings = {
        f"batch of {n}": (
            seconds_per_call(lambda: model.predict(X_test), args.repeats) / n,
            seconds_per_call(lambda: session.run(None, {"input": X_test}), args.repeats) / n,
        ),
        "one sample": (
            seconds_per_call(lambda: model.predict(one), args.repeats),
            seconds_per_call(lambda: session.run(None, {"input": one}), args.repeats),
        ),
    }
    print("prediction time per sample (best of", args.repeats, "calls):")
    for case, (ours, runtime) in timings.items():
        print(
            f"  {case:>13}: model.predict {ours * 1e6:8.1f} µs, "
            f"onnxruntime {runtime * 1e6:8.1f} µs (ratio {ours / runtime:.1f})"
        )


if __name__ == "__main__":
    main()
