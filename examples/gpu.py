"""The digits CNN on the GPU through CuPy, falling back to the CPU when CuPy is missing.

The backend is chosen once, when mpneuralnetwork is first imported, from the
environment variable MPNN_BACKEND: this script sets it before the import. Without
CuPy (or without a working CUDA setup) the library warns and uses NumPy.

Install the GPU extra first, from the source tree: pip install ".[gpu]"

Run it from the repository root:

    python examples/gpu.py
    python examples/gpu.py --epochs 3
"""

from __future__ import annotations

import os

os.environ["MPNN_BACKEND"] = "cupy"  # must come before the first mpneuralnetwork import

import argparse
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import mpneuralnetwork as mpnn

# The same network as examples/cnn_digits.py (this script's folder is on sys.path).
from cnn_digits import build_cnn


def main() -> None:
    parser = argparse.ArgumentParser(description="Digits CNN on the GPU")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    args = parser.parse_args()

    backend = mpnn.get_backend().__name__
    if backend == "cupy":
        print("backend: cupy -- training on the GPU")
    else:
        reasons = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        print("backend: numpy -- CuPy is not available, so this example runs on the CPU.")
        for reason in reasons:
            print(f"  (reason: {reason})")
        print('  To use a GPU: pip install ".[gpu]" from the source tree, on a machine with CUDA.')

    mpnn.set_seed(args.seed)
    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = np.eye(10, dtype=np.float32)[digits.target]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, random_state=args.seed, stratify=digits.target
    )

    # train() moves NumPy inputs to the device itself; moving them once up front
    # avoids repeated host-to-device copies when the same data is used many times.
    X_train_d, y_train_d = mpnn.to_device(X_train), mpnn.to_device(y_train)
    X_test_d, y_test_d = mpnn.to_device(X_test), mpnn.to_device(y_test)
    print(f"training data lives in {type(X_train_d).__module__}.{type(X_train_d).__name__}")

    model = build_cnn()
    start = time.perf_counter()
    model.train(
        X_train_d,
        y_train_d,
        epochs=args.epochs,
        batch_size=args.batch_size,
        verbose=args.verbose,
    )
    print(f"training time: {time.perf_counter() - start:.1f} s on {backend}")

    _, metrics = model.evaluate(X_test_d, y_test_d)
    print(f"test accuracy: {metrics['accuracy']:.4f}")
    predictions = model.predict(X_test_d[:5])  # always a NumPy array on the host
    print(f"predict() returns {type(predictions).__module__}.{type(predictions).__name__}")
    first_kernel = mpnn.to_host(model.layers[0].kernels)[0, 0]  # device -> host explicitly
    print("first 3x3 kernel:\n", np.round(first_kernel, 3))


if __name__ == "__main__":
    main()
