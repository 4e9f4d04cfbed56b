"""Wall time of a grid search: serial against a local Dask cluster.

A 3-fold `GridSearchCV` of 8 settings (learning rate x hidden width) of a
`NeuralNetworkClassifier` on the digits (1,797 x 64, 10 classes): 24 fits, run
serially (``n_jobs=1``, one process using the machine's BLAS threads) and on a
`LocalCluster` of ``--workers`` processes of one thread each (joblib's "dask"
backend). The cluster's start is timed apart from the search; the scores of the
two searches are compared (they must be equal, bit for bit).

    python benchmark/sweep.py                    # 2 workers, 20 epochs, 3 rounds
    python benchmark/sweep.py --workers 4 --rounds 5

Not part of the test suite; nothing asserts a time.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import joblib
import numpy as np
from distributed import Client, LocalCluster
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV

from mpneuralnetwork.activations import ReLU
from mpneuralnetwork.layers import Dense
from mpneuralnetwork.optimizers import Adam
from mpneuralnetwork.wrappers import NeuralNetworkClassifier


def search(epochs: int, n_jobs: int) -> GridSearchCV:
    estimator = NeuralNetworkClassifier(optimizer=Adam(), epochs=epochs, random_state=0)
    grid = {
        "optimizer__learning_rate": [0.0003, 0.001, 0.003, 0.01],
        "hidden_layers": [[Dense(32), ReLU()], [Dense(128), ReLU()]],
    }
    return GridSearchCV(estimator, grid, cv=3, n_jobs=n_jobs)


def timed(run: object) -> tuple[float, GridSearchCV]:
    start = time.perf_counter()
    result = run()  # type: ignore[operator]
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{platform.processor() or platform.machine()}, {cpus} CPUs; digits {X.shape}")
    print(f"grid: 8 settings x 3 folds = 24 fits of {args.epochs} epochs")

    serial_times, cluster_times = [], []
    start = time.perf_counter()
    cluster = LocalCluster(
        n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    client = Client(cluster)
    client.wait_for_workers(args.workers)
    startup = time.perf_counter() - start
    try:
        for _ in range(args.rounds):  # interleaved, so that both see the same machine load
            seconds, serial = timed(lambda: search(args.epochs, 1).fit(X, y))
            serial_times.append(seconds)
            with joblib.parallel_backend("dask"):
                seconds, parallel = timed(lambda: search(args.epochs, -1).fit(X, y))
            cluster_times.append(seconds)
            same = np.array_equal(
                serial.cv_results_["mean_test_score"], parallel.cv_results_["mean_test_score"]
            )
            assert same, "the cluster's scores differ from the serial ones"
    finally:
        client.close()
        cluster.close()
    best = serial.best_params_
    print(
        f"best: hidden {best['hidden_layers'][0].output_size}, learning rate "
        f"{best['optimizer__learning_rate']}, mean accuracy {serial.best_score_:.4f} "
        "(the same on the cluster)"
    )
    serial_median = statistics.median(serial_times)
    cluster_median = statistics.median(cluster_times)
    print(f"cluster start ({args.workers} workers): {startup:.1f} s")
    print(f"serial:  median {serial_median:.1f} s  {[round(t, 1) for t in serial_times]}")
    print(f"cluster: median {cluster_median:.1f} s  {[round(t, 1) for t in cluster_times]}")
    print(f"speed-up {serial_median / cluster_median:.2f}x (start excluded)")


if __name__ == "__main__":  # required: the local cluster starts worker processes
    main()
