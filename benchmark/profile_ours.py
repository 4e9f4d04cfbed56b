"""Where mpneuralnetwork spends one epoch of each benchmark workload.

Usage (from the repository root)::

    python benchmark/profile_ours.py [--workloads mlp,cnn,regression,supercnn,cifar] [--top 15]
                                     [--threads 2] [--no-native-blas] [--no-cprofile]

For each workload, after a warm-up, three views of one epoch:

1. **Per layer**: every layer's ``forward`` and ``backward``, the loss and the
   optimizer step, timed with ``perf_counter`` wrappers, in microseconds per
   batch; "model loop" is the rest of the epoch (shuffling, batch gathering,
   ``Model.train`` itself).
2. **GEMM floor**: the same layers' matrix products (forward ``X @ W``, backward
   ``Xᵀ @ G`` and ``G @ Wᵀ``, the last one not for the first layer with
   parameters; convolutions as their im2col products) timed alone with NumPy at
   the batch shape. A layer's time minus its floor is what it spends outside
   BLAS: im2col copies, elementwise work, Python. For each convolution, its
   forward + backward time over its floor, and its GFLOP/s against the float32
   1024x1024 matmul peak measured in the same process.
3. **cProfile**: the top functions by own time (operators such as ``@`` count in
   the Python function that uses them).

Thread settings are applied before NumPy loads, as in the benchmark's children.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (parsed before NumPy is imported)."""
    parser = argparse.ArgumentParser(description="Profile one epoch of mpneuralnetwork.")
    parser.add_argument("--workloads", default="mlp,cnn,regression,lstm,supercnn,cifar")
    parser.add_argument("--samples", type=int, default=None, help="override the sample count")
    parser.add_argument("--top", type=int, default=15, help="cProfile rows per workload")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--native-blas", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--no-cprofile", dest="cprofile", action="store_false")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retries", type=int, default=4, help="reruns of a disturbed epoch")
    return parser.parse_args(argv)


def configure_env(threads: int, native_blas: bool) -> None:
    """Fix the BLAS/OpenMP thread counts (and unset the OpenBLAS overrides) for this process."""
    for key in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[key] = str(threads)
    if native_blas:
        for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
            os.environ.pop(key, None)


class Timer:
    """Accumulates seconds and call counts under names."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` timed under ``name``."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
                self.calls[name] = self.calls.get(name, 0) + 1

        return timed

    def reset(self) -> None:
        """Forget everything measured so far."""
        self.seconds.clear()
        self.calls.clear()


def _leaves(model: Any) -> list[tuple[str, Any]]:
    """``(label, layer)`` of every layer that is not a container, by its path ("3.0")."""
    from mpneuralnetwork.layers.containers import leaves

    return [(path.rstrip("_").replace("_", "."), layer) for path, layer in leaves(model.layers)]


def instrument(model: Any, timer: Timer) -> list[str]:
    """Wrap each layer's forward/backward, the loss and the optimizer step; return the names.

    The layers inside containers are timed one by one (a container's own work, such as
    a residual addition, counts in "model loop (rest)").
    """
    names = []
    for path, layer in _leaves(model):
        label = f"{path:>5} {type(layer).__name__}"
        layer.forward = timer.wrap(f"{label}.forward", layer.forward)
        layer.backward = timer.wrap(f"{label}.backward", layer.backward)
        names += [f"{label}.forward", f"{label}.backward"]
    for method in ("value_and_gradient", "direct", "prime"):
        if hasattr(model.loss, method):
            setattr(model.loss, method, timer.wrap(f"loss.{method}", getattr(model.loss, method)))
            names.append(f"loss.{method}")
    model.optimizer.step = timer.wrap("optimizer.step", model.optimizer.step)
    return [*names, "optimizer.step"]


def quiet_run(
    fn: Callable[[], Any], retries: int, before: Callable[[], Any] | None = None
) -> tuple[float, float]:
    """Time ``fn`` on a quiet machine: rerun it while other processes disturb it.

    Waits for an idle machine first, and after each disturbed run (other processes
    above ``BUSY`` of the CPUs), up to ``retries`` reruns.

    Returns:
        ``(seconds, background share)`` of the kept run.
    """
    from child import background, cpu_seconds, proc_stat
    from run import BUSY, wait_until_quiet

    for _ in range(retries + 1):
        wait_until_quiet(60.0)
        if before is not None:
            before()
        stat0, c0, t0 = proc_stat(), cpu_seconds(), time.perf_counter()
        fn()
        seconds = time.perf_counter() - t0
        busy = background(stat0, proc_stat(), cpu_seconds() - c0)
        if busy < BUSY:
            break
    return seconds, busy


def best_of(fn: Callable[[], Any], repeats: int = 50) -> float:
    """Best wall time of ``fn`` over ``repeats`` calls, after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def gemm_floor(model: Any, batch: int) -> dict[str, float]:
    """Seconds of each Dense/Convolutional layer's GEMMs alone, per batch of ``batch``.

    Three products per layer (``X @ W``, ``Xᵀ @ G``, ``G @ Wᵀ``); two for the first
    layer with parameters, whose input gradient the model never computes. Keyed by
    the layer's path (`_leaves`).
    """
    import numpy as np

    from mpneuralnetwork.layers import Convolutional, Dense

    rng = np.random.default_rng(0)
    floors: dict[str, float] = {}
    first = True
    for path, layer in _leaves(model):
        if isinstance(layer, Dense):  # on sequences (T, F), one (N·T, F) product
            steps = math.prod(layer.input_shape[:-1])
            m, k, n = batch * steps, layer.input_shape[-1], layer.output_shape[-1]
        elif isinstance(layer, Convolutional):
            c, _, _ = layer.input_shape
            o, ho, wo = layer.output_shape
            m, k, n = batch * ho * wo, c * layer.kernel_size**2, o
        else:
            continue
        x = rng.standard_normal((m, k), dtype=np.float32)
        w = rng.standard_normal((k, n), dtype=np.float32)
        g = rng.standard_normal((m, n), dtype=np.float32)

        def gemms(x: Any = x, w: Any = w, g: Any = g, first: bool = first) -> None:
            x @ w, x.T @ g
            if not first:
                g @ w.T

        floors[path] = best_of(gemms, repeats=10)
        first = False
    return floors


def matmul_peak() -> float:
    """Best float32 1024x1024 @ 1024x1024 rate of NumPy in this process, FLOP/s."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((1024, 1024), dtype=np.float32)
    return 2.0 * 1024**3 / best_of(lambda: a @ a, repeats=10)


def print_conv_layers(
    model: Any, timer: Timer, batches: int, batch: int, floors: dict[str, float], peak: float
) -> None:
    """Per convolution: forward + backward time, its GEMM floor, GFLOP/s and % of peak."""
    import workloads

    from mpneuralnetwork.layers import Convolutional

    print(f"\nconvolutions (sgemm peak {peak / 1e9:.0f} GFLOP/s, 1024^3 in this process)")
    print(
        f"{'layer':<30}{'f+b us/batch':>13}{'GEMM floor':>12}{'x floor':>9}"
        f"{'GFLOP/s':>9}{'% peak':>8}{'floor GFLOP/s':>15}"
    )
    first = next(iter(floors))
    for path, layer in _leaves(model):
        if not isinstance(layer, Convolutional):
            continue
        label = f"{path:>5} Convolutional.forward"
        seconds = timer.seconds.get(label, 0.0)
        seconds += timer.seconds.get(label.replace(".forward", ".backward"), 0.0)
        per_batch = seconds / batches
        products = 2 if path == first else 3
        shape_in, shape_out = layer.input_shape, layer.output_shape
        flops = workloads.conv_flops(shape_in, shape_out, layer.kernel_size) * batch * products
        size = f"{shape_in[0]}->{shape_out[0]} @{shape_out[1]}x{shape_out[2]}"
        name = f"{path:>5} conv{layer.kernel_size} {size}"
        print(
            f"{name:<30}{per_batch * 1e6:>13.0f}{floors[path] * 1e6:>12.0f}"
            f"{per_batch / floors[path]:>9.2f}{flops / per_batch / 1e9:>9.1f}"
            f"{100 * flops / per_batch / peak:>7.0f}%{flops / floors[path] / 1e9:>15.1f}"
        )


def profile_workload(name: str, args: argparse.Namespace) -> None:
    """Print the three views of one epoch of one workload."""
    import cProfile
    import pstats

    import numpy as np
    import workloads
    from run import BUSY

    wl = workloads.WORKLOADS[name]
    samples = args.samples or wl.samples
    batches = -(-samples // wl.batch_size)
    x, y = workloads.make_data(wl, samples, args.seed)
    np.random.seed(args.seed)  # noqa: NPY002 - the library draws from the global state
    model = workloads.ours_build(wl)
    workloads.ours_epoch(model, x[: 8 * wl.batch_size], y[: 8 * wl.batch_size], wl.batch_size)

    def epoch_once() -> None:
        workloads.ours_epoch(model, x, y, wl.batch_size)

    plain, busy = quiet_run(epoch_once, args.retries)
    timer = Timer()
    names = instrument(model, timer)
    epoch, busy_instrumented = quiet_run(epoch_once, args.retries, before=timer.reset)
    busy = max(busy, busy_instrumented)

    print(f"\n=== {name}: {wl.description}; {samples:,} samples, {batches} batches")
    print(
        f"epoch {plain * 1e3:.0f} ms uninstrumented ({plain / batches * 1e6:.0f} us/batch); "
        f"{epoch * 1e3:.0f} ms instrumented; other processes used up to {100 * busy:.0f}% "
        "of the CPUs meanwhile" + (" (DISTURBED: rerun on a quiet machine)" if busy >= BUSY else "")
    )
    floors = gemm_floor(model, wl.batch_size)
    peak = matmul_peak()
    print(f"\n{'component':<32}{'us/batch':>10}{'share':>8}{'GEMM floor':>12}{'outside':>10}")
    accounted = 0.0
    for key in names:
        sec = timer.seconds.get(key, 0.0)
        accounted += sec
        if sec / epoch < 0.005:
            continue
        floor = ""
        outside = ""
        path = key.split()[0]
        if key.endswith(".forward") and path in floors:
            floor = f"{floors[path] * 1e6:.0f} (f+b)"
            both = sec + timer.seconds.get(key.replace(".forward", ".backward"), 0.0)
            outside = f"{(both / batches - floors[path]) * 1e6:.0f}"
        share = f"{100 * sec / epoch:.1f}%"
        print(f"{key:<32}{sec / batches * 1e6:>10.1f}{share:>8}{floor:>12}{outside:>10}")
    rest = epoch - accounted
    share = f"{100 * rest / epoch:.1f}%"
    print(f"{'model loop (rest)':<32}{rest / batches * 1e6:>10.1f}{share:>8}")
    total_floor = sum(floors.values()) * batches
    print(
        f"GEMM floor of the epoch: {total_floor * 1e3:.0f} ms = "
        f"{100 * total_floor / plain:.0f}% of the uninstrumented epoch"
    )

    if floors:
        print_conv_layers(model, timer, batches, wl.batch_size, floors, peak)

    if args.cprofile:
        model = workloads.ours_build(wl)
        workloads.ours_epoch(model, x[: 8 * wl.batch_size], y[: 8 * wl.batch_size], wl.batch_size)
        profiler = cProfile.Profile()

        def profiled() -> None:
            profiler.enable()
            workloads.ours_epoch(model, x, y, wl.batch_size)
            profiler.disable()

        quiet_run(profiled, args.retries, before=profiler.clear)
        print(f"\ncProfile, top {args.top} by own time (profiling inflates Python-heavy code):")
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.strip_dirs().sort_stats("tottime").print_stats(args.top)


def main(argv: list[str] | None = None) -> int:
    """Profile each requested workload."""
    args = parse_args(argv)
    configure_env(args.threads, args.native_blas)
    import workloads

    for name in args.workloads.split(","):
        if name not in workloads.WORKLOADS:
            print(f"unknown workload {name!r}", file=sys.stderr)
            return 2
        profile_workload(name, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
