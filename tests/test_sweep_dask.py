"""A grid search on a local Dask cluster gives the scores of the serial one.

Two worker processes with one thread each, as on a real cluster: the estimators are
pickled to them, each fit seeds its own random state from ``random_state``, and
each worker keeps to one thread (Dask's nanny sets ``OMP_NUM_THREADS=1``, which BLAS
and the library's pool follow). Tiny grid and data: the test takes a few seconds,
most of it starting the cluster.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the sweep runs scikit-learn's GridSearchCV")
distributed = pytest.importorskip("distributed", reason="the sweep runs on a Dask cluster")
joblib = pytest.importorskip("joblib")

from sklearn.model_selection import GridSearchCV  # noqa: E402

from mpneuralnetwork import xp  # noqa: E402
from mpneuralnetwork.activations import ReLU  # noqa: E402
from mpneuralnetwork.layers import Dense  # noqa: E402
from mpneuralnetwork.optimizers import Adam  # noqa: E402
from mpneuralnetwork.wrappers import NeuralNetworkClassifier  # noqa: E402

pytestmark = pytest.mark.skipif(
    xp.__name__ != "numpy", reason="the workers run the NumPy backend (a GPU per worker is not)"
)


def _worker_threads() -> tuple[int, list[int]]:
    """On a worker: the library's thread count and each BLAS library's."""
    from threadpoolctl import threadpool_info

    from mpneuralnetwork import threads

    return threads.thread_count(), [info["num_threads"] for info in threadpool_info()]


def _search(n_jobs: int) -> Any:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    estimator = NeuralNetworkClassifier(
        hidden_layers=[Dense(8), ReLU()], optimizer=Adam(), epochs=3, random_state=0
    )
    grid = {"optimizer__learning_rate": [0.001, 0.03], "batch_size": [8, 32]}
    return GridSearchCV(estimator, grid, cv=3, n_jobs=n_jobs).fit(X, y)


def test_grid_search_on_a_dask_cluster_matches_the_serial_one() -> None:
    serial = _search(n_jobs=1)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        with joblib.parallel_backend("dask"):
            parallel = _search(n_jobs=-1)
        workers = client.run(_worker_threads)
        pids = client.run(os.getpid)
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
    for count, blas in workers.values():  # no oversubscription: one thread per worker
        assert count == 1 and set(blas) <= {1}
    for key in ["mean_test_score", *(f"split{i}_test_score" for i in range(3))]:
        np.testing.assert_array_equal(parallel.cv_results_[key], serial.cv_results_[key])
    assert parallel.best_params_ == serial.best_params_
    np.testing.assert_array_equal(
        parallel.best_estimator_.predict_proba(np.eye(4)),
        serial.best_estimator_.predict_proba(np.eye(4)),
    )


def test_joblib_process_workers_keep_to_their_share_of_threads() -> None:
    # joblib's default backend (loky) gives each worker OMP_NUM_THREADS =
    # inner_max_num_threads; the library's pool follows it as BLAS does.
    from mpneuralnetwork import threads

    with joblib.parallel_config(backend="loky", inner_max_num_threads=1):
        counts = joblib.Parallel(n_jobs=2)(joblib.delayed(threads.thread_count)() for _ in range(2))
    assert counts == [1, 1]
