"""A grid search over a network's settings on a Dask cluster, with scikit-learn.

Eight settings (learning rate x hidden width) of a `NeuralNetworkClassifier` on the
digits, 3-fold cross-validated: scikit-learn's `GridSearchCV` hands the 24 fits to
joblib, and joblib's "dask" backend to the workers of the cluster. Each fit seeds
its own random state from ``random_state``, so the scores are those of a serial
search, bit for bit (``--check`` runs one to show it).

Run it from the repository root (needs the ``dask`` extra):

    python examples/sweep_dask.py                                # a local cluster of 2 workers
    python examples/sweep_dask.py --epochs 2 --check             # quick, and compared with serial
    python examples/sweep_dask.py --scheduler tcp://scheduler:8786   # a running cluster
"""

from __future__ import annotations

import argparse
import time

import joblib
import numpy as np
from distributed import Client, LocalCluster
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split

from mpneuralnetwork.activations import ReLU
from mpneuralnetwork.layers import Dense
from mpneuralnetwork.optimizers import Adam
from mpneuralnetwork.wrappers import NeuralNetworkClassifier


def search(epochs: int, n_jobs: int) -> GridSearchCV:
    """The grid search, not yet fitted: 8 settings, 3 folds."""
    estimator = NeuralNetworkClassifier(optimizer=Adam(), epochs=epochs, random_state=0)
    grid = {
        "optimizer__learning_rate": [0.0003, 0.001, 0.003, 0.01],
        "hidden_layers": [[Dense(32), ReLU()], [Dense(128), ReLU()]],
    }
    return GridSearchCV(estimator, grid, cv=3, n_jobs=n_jobs)


def main() -> None:
    parser = argparse.ArgumentParser(description="Grid search on a Dask cluster")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="workers of the local cluster")
    parser.add_argument("--scheduler", help="address of a running scheduler (no local cluster)")
    parser.add_argument("--check", action="store_true", help="also search serially, compare")
    args = parser.parse_args()

    X, y = load_digits(return_X_y=True)
    X = X / 16.0  # pixels in [0, 1]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)

    # One thread per worker: the workers share the machine's cores between them
    # (Dask's nanny sets OMP_NUM_THREADS=1, which BLAS and mpneuralnetwork follow).
    if args.scheduler:
        client = Client(args.scheduler)
    else:
        cluster = LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        client = Client(cluster)
    with client:
        print(f"workers: {len(client.scheduler_info()['workers'])}")
        start = time.perf_counter()
        with joblib.parallel_backend("dask"):
            parallel = search(args.epochs, n_jobs=-1).fit(X_train, y_train)
        print(f"grid search on the cluster: {time.perf_counter() - start:.1f} s")
    if not args.scheduler:
        cluster.close()

    results = parallel.cv_results_
    for params, score in zip(results["params"], results["mean_test_score"], strict=True):
        width = params["hidden_layers"][0].output_size
        rate = params["optimizer__learning_rate"]
        print(f"  hidden {width:3d}, learning rate {rate:<6}: mean accuracy {score:.4f}")
    best = parallel.best_params_
    print(
        f"best: hidden {best['hidden_layers'][0].output_size}, learning rate "
        f"{best['optimizer__learning_rate']}; test accuracy "
        f"{parallel.score(X_test, y_test):.4f}"
    )
    if args.check:
        start = time.perf_counter()
        serial = search(args.epochs, n_jobs=1).fit(X_train, y_train)
        print(f"grid search serially: {time.perf_counter() - start:.1f} s")
        same = np.array_equal(serial.cv_results_["mean_test_score"], results["mean_test_score"])
        print(f"same scores as the serial search: {same}")


if __name__ == "__main__":  # required: the local cluster starts worker processes
    main()
