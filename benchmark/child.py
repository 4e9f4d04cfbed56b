"""One measurement in a fresh process: the entry point that ``run.py`` starts.

A child imports only the framework it measures, so its peak RSS and its BLAS
threads are its own. It is given a JSON job on the command line and writes a JSON
result to the path the job names (never to stdout, which the library under test
may print to).

Jobs (``mode``):

* ``probe``: versions, BLAS libraries (threadpoolctl), GPU availability.
* ``peak``: the best float32 1024x1024 @ 1024x1024 matmul rate of NumPy or torch.
* ``epoch``: build a workload, warm up on a small slice, then time one epoch.
* ``predict``: build a workload, warm up, then time inference on ``samples`` samples.

Exit code 3 with a message on stderr means the job cannot run here (no CUDA,
no CuPy, no ``Model`` yet).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
# Benchmark the working tree's library, whatever is installed.
sys.path.insert(0, str(SRC))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import workloads  # noqa: E402

#: Exit status of a job that cannot run on this machine.
UNAVAILABLE = 3


class Unavailable(RuntimeError):
    """The job needs something this machine or checkout does not have."""


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (Linux: ru_maxrss is KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024.0 if sys.platform != "darwin" else rss / 2**20


def cpu_seconds() -> float:
    """User + system CPU time of this process (all its threads), in seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def proc_stat() -> tuple[float, float] | None:
    """Machine-wide (busy, total) CPU seconds since boot from /proc/stat, or None."""
    try:
        with open("/proc/stat") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
    except OSError:
        return None
    hz = os.sysconf("SC_CLK_TCK")
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already inside user time
    return (total - idle) / hz, total / hz


def background(
    before: tuple[float, float] | None, after: tuple[float, float] | None, own_cpu: float
) -> float:
    """Share of the machine's CPU time that other processes used between two samples.

    Machine-wide busy time minus this process's own CPU time, over all CPUs' time.
    """
    if before is None or after is None or after[1] <= before[1]:
        return 0.0
    return max(0.0, ((after[0] - before[0]) - own_cpu) / (after[1] - before[1]))


def current_rss_mib() -> float:
    """Current resident set size in MiB (psutil, else /proc/self/statm)."""
    try:
        import psutil

        return float(psutil.Process().memory_info().rss) / 2**20
    except ImportError:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def blas_info() -> list[dict[str, Any]]:
    """The thread-pool libraries loaded in this process (threadpoolctl), or ``[]``."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keep = ("user_api", "internal_api", "version", "architecture", "threading_layer", "num_threads")
    return [{k: lib.get(k) for k in keep} for lib in threadpool_info()]


def setup_torch(threads: int, backend: str) -> tuple[Any, str, Callable[[], None] | None]:
    """Import torch, fix its thread count, and pick the device.

    Returns:
        ``(torch, device, sync)`` where ``sync`` waits for the GPU (None on the CPU).
    """
    import torch

    torch.set_num_threads(threads)
    if backend == "cupy":
        if not torch.cuda.is_available():
            raise Unavailable(
                f"--backend cupy: torch {torch.__version__} sees no CUDA device "
                "(a CPU build of torch, or no GPU on this machine)"
            )
        return torch, "cuda", torch.cuda.synchronize
    return torch, "cpu", None


def setup_ours(backend: str) -> tuple[Any, Callable[[], None] | None]:
    """Import mpneuralnetwork (the backend comes from MPNN_BACKEND) and check it.

    Returns:
        ``(xp, sync)`` where ``sync`` waits for the GPU (None on the CPU).
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        try:
            import mpneuralnetwork
        except RuntimeWarning as exc:  # the "falls back to NumPy" warning
            raise Unavailable(f"--backend cupy: {exc}") from exc
    xp = mpneuralnetwork.get_backend()
    if backend == "cupy":
        if xp.__name__ != "cupy":
            raise Unavailable("--backend cupy: mpneuralnetwork did not select CuPy")
        try:
            xp.cuda.runtime.getDeviceCount()
        except Exception as exc:
            raise Unavailable(f"--backend cupy: CuPy sees no CUDA device ({exc})") from exc
        return xp, xp.cuda.Device().synchronize
    return xp, None


def probe(job: dict[str, Any]) -> dict[str, Any]:
    """Versions and BLAS of one framework's process."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "processor": _cpu_model(),
        "env": {k: os.environ.get(k) for k in _ENV_KEYS},
    }
    if job["framework"] == "torch":
        torch, device, _ = setup_torch(job["threads"], job["backend"])
        info.update(
            torch=torch.__version__,
            device=device,
            torch_threads=torch.get_num_threads(),
            mkldnn=bool(torch.backends.mkldnn.is_available()),
            cuda=torch.cuda.get_device_name(0) if device == "cuda" else None,
        )
    else:
        xp, _ = setup_ours(job["backend"])
        import mpneuralnetwork

        info.update(mpneuralnetwork=mpneuralnetwork.__version__, xp=xp.__name__)
        try:
            from mpneuralnetwork.model import Model

            info["model_ready"] = hasattr(Model, "train")
        except ImportError as exc:
            info["model_ready"] = False
            info["model_error"] = str(exc)
    info["blas"] = blas_info()
    return info


def peak(job: dict[str, Any]) -> dict[str, Any]:
    """Best float32 square-matmul rate, in FLOP/s."""
    n, repeats = job.get("size", 1024), job.get("repeats", 10)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    if job["framework"] == "torch":
        torch, device, sync = setup_torch(job["threads"], job["backend"])
        ta, tb = torch.from_numpy(a).to(device), torch.from_numpy(b).to(device)

        def matmul() -> None:
            torch.matmul(ta, tb)
            if sync is not None:
                sync()
    else:
        if job["backend"] == "cupy":
            xp, sync = setup_ours(job["backend"])
            a, b = xp.asarray(a), xp.asarray(b)
        else:
            sync = None

        def matmul() -> None:
            a @ b
            if sync is not None:
                sync()

    matmul()  # warm-up
    best = float("inf")
    stat0, c0 = proc_stat(), cpu_seconds()
    for _ in range(repeats):
        t0 = time.perf_counter()
        matmul()
        best = min(best, time.perf_counter() - t0)
    cpu, stat1 = cpu_seconds() - c0, proc_stat()
    return {
        "flops": 2.0 * n**3 / best,
        "seconds": best,
        "size": n,
        "background": background(stat0, stat1, cpu),
        "blas": blas_info(),
    }


def epoch(job: dict[str, Any]) -> dict[str, Any]:
    """Warm up, then time one epoch of one workload in one framework."""
    wl = workloads.WORKLOADS[job["workload"]]
    samples, batch, seed = job["samples"], job["batch_size"], job["seed"]
    backend, framework = job["backend"], job["framework"]
    t_import = time.perf_counter()
    if framework == "torch":
        torch, device, sync = setup_torch(job["threads"], backend)
    else:
        xp, sync = setup_ours(backend)
        try:
            from mpneuralnetwork.model import Model  # noqa: F401
        except ImportError as exc:
            raise Unavailable(f"mpneuralnetwork.model.Model is not available yet ({exc})") from exc
    t_import = time.perf_counter() - t_import

    x, y = workloads.make_data(wl, samples, seed)
    warm = min(samples, job.get("warmup_samples", 8 * batch))
    if framework == "torch":
        torch.manual_seed(seed)
        model, optimizer, loss_fn = workloads.torch_build(wl, device)
        tx = torch.from_numpy(x).to(device)
        ty = workloads.torch_targets(wl, y, device)
        rss_base = current_rss_mib()
        workloads.torch_epoch(model, optimizer, loss_fn, tx[:warm], ty[:warm], batch, sync)
        stat0, c0, t0 = proc_stat(), cpu_seconds(), time.perf_counter()
        workloads.torch_epoch(model, optimizer, loss_fn, tx, ty, batch, sync)
        seconds = time.perf_counter() - t0
        cpu, stat1 = cpu_seconds() - c0, proc_stat()
        gpu_peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    else:
        xp.random.seed(seed)  # the library draws from the global random state
        model = workloads.ours_build(wl)
        ox, oy = (xp.asarray(x), xp.asarray(y)) if backend == "cupy" else (x, y)
        rss_base = current_rss_mib()
        workloads.ours_epoch(model, ox[:warm], oy[:warm], batch)
        if sync is not None:
            sync()
        stat0, c0, t0 = proc_stat(), cpu_seconds(), time.perf_counter()
        workloads.ours_epoch(model, ox, oy, batch)
        if sync is not None:
            sync()
        seconds = time.perf_counter() - t0
        cpu, stat1 = cpu_seconds() - c0, proc_stat()
        gpu_peak = xp.get_default_memory_pool().total_bytes() / 2**20 if backend == "cupy" else None
    return {
        "seconds": seconds,
        "cpu_wall": cpu / seconds,
        "background": background(stat0, stat1, cpu),
        "import_seconds": t_import,
        "rss_base_mib": rss_base,
        "peak_rss_mib": peak_rss_mib(),
        "gpu_peak_mib": gpu_peak,
        "blas": blas_info(),
    }


def predict(job: dict[str, Any]) -> dict[str, Any]:
    """Warm up, then time inference (``predict``) on ``samples`` samples of one workload."""
    wl = workloads.WORKLOADS[job["workload"]]
    samples, seed = job["samples"], job["seed"]
    backend, framework = job["backend"], job["framework"]
    if framework == "torch":
        torch, device, sync = setup_torch(job["threads"], backend)
    else:
        xp, sync = setup_ours(backend)
    x, _ = workloads.make_data(wl, samples, seed)
    warm = min(samples, 256)
    if framework == "torch":
        torch.manual_seed(seed)
        model, _, _ = workloads.torch_build(wl, device)
        tx = torch.from_numpy(x).to(device)
        rss_base = current_rss_mib()
        workloads.torch_predict(model, tx[:warm], sync=sync)

        def run() -> None:
            workloads.torch_predict(model, tx, sync=sync)
    else:
        xp.random.seed(seed)
        model = workloads.ours_build(wl)
        ox = xp.asarray(x) if backend == "cupy" else x
        rss_base = current_rss_mib()
        workloads.ours_predict(model, ox[:warm])

        def run() -> None:
            workloads.ours_predict(model, ox)
            if sync is not None:
                sync()

    stat0, c0, t0 = proc_stat(), cpu_seconds(), time.perf_counter()
    run()
    seconds = time.perf_counter() - t0
    cpu, stat1 = cpu_seconds() - c0, proc_stat()
    return {
        "seconds": seconds,
        "cpu_wall": cpu / seconds,
        "background": background(stat0, stat1, cpu),
        "rss_base_mib": rss_base,
        "peak_rss_mib": peak_rss_mib(),
        "gpu_peak_mib": None,
        "blas": blas_info(),
    }


def _cpu_model() -> str:
    """The processor's model name (Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


_ENV_KEYS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "MPNN_BACKEND",
)

MODES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "probe": probe,
    "peak": peak,
    "epoch": epoch,
    "predict": predict,
}


def main(argv: list[str]) -> int:
    """Run the JSON job ``argv[0]`` and write its JSON result to ``job["out"]``."""
    job = json.loads(argv[0])
    try:
        result = MODES[job["mode"]](job)
    except Unavailable as exc:
        print(str(exc), file=sys.stderr)
        return UNAVAILABLE
    Path(job["out"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
