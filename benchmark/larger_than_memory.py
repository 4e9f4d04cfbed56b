"""Training on a data set larger than memory: a memory-mapped .npy through a DataLoader.

Writes the MLP workload's data (784 float32 features, 10 one-hot classes) to a
temporary ``.npy`` file of at least 4 GiB, then trains one epoch of the MLP on it in
three ways, each in a fresh process, interleaved over the rounds:

* ``memory``: the whole array loaded into memory (``numpy.load``), ``train(X, y)``;
* ``mmap+prefetch``: ``DataLoader.from_npy(..., prefetch=2)``;
* ``mmap``: the same with ``prefetch=0`` (reading in the training thread).

Each child samples its private memory (``RssAnon`` in ``/proc/self/status``) every
20 ms during the epoch and reports the epoch time (``history["epoch_time"]``). The page
cache is warmed (the file read once) before the timed rounds, so the ratios compare
computation plus memory-map access, not the disk. The temporary directory is removed
whatever happens (an error, Ctrl-C).

Usage (serialize with the other benchmarks on a shared machine)::

    flock /work/bench.lock .venv/bin/python benchmark/larger_than_memory.py
    .venv/bin/python benchmark/larger_than_memory.py --gib 0.1 --rounds 1   # a quick check

Linux only (``/proc``). Nothing here is part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
FEATURES, CLASSES = 784, 10
CASES = ("memory", "mmap+prefetch", "mmap")


# ------------------------------------------------------------------------- parent
def write_data(directory: Path, samples: int, chunk: int = 65_536) -> tuple[Path, Path]:
    """Write x (samples, 784) float32 and one-hot y (samples, 10) chunk by chunk."""
    rng = np.random.default_rng(0)
    x_path, y_path = directory / "x.npy", directory / "y.npy"
    x = np.lib.format.open_memmap(x_path, "w+", np.float32, (samples, FEATURES))
    y = np.lib.format.open_memmap(y_path, "w+", np.float32, (samples, CLASSES))
    for start in range(0, samples, chunk):
        stop = min(start + chunk, samples)
        x[start:stop] = rng.standard_normal((stop - start, FEATURES), dtype=np.float32)
        labels = rng.integers(0, CLASSES, stop - start)
        y[start:stop] = np.eye(CLASSES, dtype=np.float32)[labels]
    x.flush()
    y.flush()
    del x, y
    return x_path, y_path


def warm(path: Path, block: int = 64 * 2**20) -> None:
    """Read the file once so that the timed epochs find it in the page cache."""
    with open(path, "rb") as fh:
        while fh.read(block):
            pass


def mem_available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def run_child(case: str, x_path: Path, y_path: Path, threads: int) -> dict[str, Any]:
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[key] = str(threads)
    env.pop("MPNN_BACKEND", None)
    job = json.dumps({"case": case, "x": str(x_path), "y": str(y_path)})
    done = subprocess.run(
        [sys.executable, __file__, "--child", job], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {case} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gib", type=float, default=4.0, help="size of x.npy (default 4 GiB)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    # One BLAS thread: batch-32 products are too small to share, and a second thread
    # leaves the prefetching thread no core on a 2-core machine.
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads of each child")
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary dir goes")
    args = parser.parse_args()

    samples = -(-int(args.gib * 2**30) // (FEATURES * 4))
    need = 2 * samples * FEATURES * 4 / 2**30 + 1  # page cache + the in-memory copy
    if mem_available_gib() < need:
        sys.exit(f"needs about {need:.1f} GiB of available memory; {mem_available_gib():.1f}")
    directory = Path(tempfile.mkdtemp(prefix="mpnn-larger-than-memory-", dir=args.dir))
    try:
        start = time.perf_counter()
        x_path, y_path = write_data(directory, samples)
        size = x_path.stat().st_size / 2**30
        print(
            f"wrote {x_path} ({samples:,} x {FEATURES} float32, {size:.2f} GiB) in "
            f"{time.perf_counter() - start:.0f} s; y.npy {y_path.stat().st_size / 2**20:.0f} "
            f"MiB",
            flush=True,
        )
        warm(x_path)
        warm(y_path)
        results: dict[str, list[dict[str, Any]]] = {case: [] for case in CASES}
        for r in range(args.rounds):
            order = CASES if r % 2 == 0 else CASES[::-1]
            for case in order:
                result = run_child(case, x_path, y_path, args.threads)
                results[case].append(result)
                print(
                    f"round {r + 1} {case:>14}: epoch {result['epoch_s']:7.1f} s, "
                    f"RssAnon max {result['rss_anon_max_mib']:7.0f} MiB "
                    f"(before the epoch {result['rss_anon_before_mib']:.0f}), "
                    f"RssFile max {result['rss_file_max_mib']:.0f} MiB, "
                    f"loss {result['loss']:.4f}",
                    flush=True,
                )
        report(results)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        print(f"removed {directory}: {not directory.exists()}")


def report(results: dict[str, list[dict[str, Any]]]) -> None:
    base = statistics.median(r["epoch_s"] for r in results["memory"])
    print("\ncase            epoch s (median, all)          / memory   RssAnon max MiB")
    for case, runs in results.items():
        times = [r["epoch_s"] for r in runs]
        median = statistics.median(times)
        rss = max(r["rss_anon_max_mib"] for r in runs)
        shown = ", ".join(f"{t:.1f}" for t in times)
        print(f"{case:<15} {median:7.1f} ({shown:<20})  {median / base:8.3f}   {rss:10.0f}")
    same = len({r["loss"] for runs in results.values() for r in runs}) == 1
    print(f"same training loss in every run (same seed, same batches): {same}")


# -------------------------------------------------------------------------- child
def status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Sampler(threading.Thread):
    """The maxima of RssAnon and RssFile, sampled every ``period`` seconds."""

    def __init__(self, period: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.period, self.stop = period, threading.Event()
        self.anon = self.file = 0.0

    def run(self) -> None:
        while not self.stop.is_set():
            self.anon = max(self.anon, status_mib("RssAnon"))
            self.file = max(self.file, status_mib("RssFile"))
            self.stop.wait(self.period)


def child(job: dict[str, Any]) -> None:
    sys.path.insert(0, str(SRC))
    sys.path.insert(0, str(HERE))
    import contextlib
    import io

    import workloads

    from mpneuralnetwork import set_seed
    from mpneuralnetwork.data import DataLoader

    workload = workloads.WORKLOADS["mlp"]
    set_seed(0)
    model = workloads.ours_build(workload)
    batch = workload.batch_size
    if job["case"] == "memory":
        data: Any = np.load(job["x"])
        targets: Any = np.load(job["y"])
        size: int | None = batch
    else:
        prefetch = 2 if job["case"] == "mmap+prefetch" else 0
        data = DataLoader.from_npy(job["x"], job["y"], batch_size=batch, prefetch=prefetch)
        targets = size = None
    before = status_mib("RssAnon")
    sampler = Sampler()
    sampler.start()
    set_seed(1)
    with contextlib.redirect_stdout(io.StringIO()):
        history = model.train(
            data,
            targets,
            epochs=1,
            batch_size=size,
            auto_evaluation=0.0,
            model_checkpoint=False,
            verbose=0,
        )
    sampler.stop.set()
    sampler.join()
    print(
        json.dumps(
            {
                "epoch_s": history.history["epoch_time"][0],
                "loss": history.history["loss"][0],
                "rss_anon_before_mib": before,
                "rss_anon_max_mib": sampler.anon,
                "rss_file_max_mib": sampler.file,
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
    else:
        main()
