"""Benchmark mpneuralnetwork against the same networks in PyTorch, on demand.

Usage (from the repository root)::

    python benchmark/run.py [--rounds N] [--quick] [--workloads mlp,cnn,...] [--no-predict]
                            [--scaling | --scaling-only] [--json out.json]
                            [--backend numpy|cupy] [--no-native-blas] [--threads 2]

Every measurement runs in a fresh child process (``child.py``) that imports one
framework only, with ``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS``/``MKL_NUM_THREADS``
set to ``--threads`` (and ``torch.set_num_threads``). The two frameworks alternate
within each round, and the order flips from one round to the next, so slow drift
of the machine hits both alike. The report gives medians over the rounds.

This is never part of the test suite and asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import workloads  # noqa: E402
from child import proc_stat  # noqa: E402

FRAMEWORKS = ("ours", "torch")
#: Environment variables that the OpenBLAS note of this workplace sets on some CPUs.
BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
#: The scaling report: CNN batch sizes and MLP sample counts.
SCALING_CNN_BATCHES = (16, 32, 128, 256)
SCALING_MLP_SAMPLES = (5_000, 20_000, 80_000)
#: Share of the machine's CPU time used by other processes above which a run is suspect.
BUSY = 0.10


class ChildError(RuntimeError):
    """A child process failed; ``unavailable`` when it could not run here at all."""

    def __init__(self, message: str, unavailable: bool = False) -> None:
        super().__init__(message)
        self.unavailable = unavailable


@dataclass
class Settings:
    """What every child is started with."""

    threads: int
    backend: str
    native_blas: bool
    seed: int
    wait_idle: float = 0.0
    retries: int = 0

    def env(self, framework: str) -> dict[str, str]:
        """The child's environment: fixed thread counts, the backend, BLAS overrides."""
        env = dict(os.environ)
        for key in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[key] = str(self.threads)
        if self.native_blas:
            for key in BLAS_OVERRIDES:
                env.pop(key, None)
        if framework == "ours":
            env["MPNN_BACKEND"] = self.backend
        else:
            env.pop("MPNN_BACKEND", None)
        return env


def run_child(settings: Settings, job: dict[str, Any], timeout: float = 1800.0) -> dict[str, Any]:
    """Run one job in a fresh ``child.py`` process and return its JSON result.

    An ``epoch`` result carries ``background``: the share of the machine's CPU
    time that other processes used during the timed epoch (machine-wide busy time
    from /proc/stat minus the child's own CPU time). Above ``BUSY`` the timing is
    suspect.

    Raises:
        ChildError: The child failed (``unavailable`` set for exit status 3).
    """
    with tempfile.TemporaryDirectory(prefix="mpnn-bench-") as tmp:
        out = Path(tmp) / "result.json"
        full = {
            **job,
            "out": str(out),
            "threads": settings.threads,
            "backend": settings.backend,
            "seed": settings.seed,
        }
        proc = subprocess.run(
            [sys.executable, str(HERE / "child.py"), json.dumps(full)],
            env=settings.env(job["framework"]),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            what = f"{job['framework']} {job['mode']} {job.get('workload', '')}".strip()
            tail = proc.stderr.strip().splitlines()[-15:]
            raise ChildError(f"{what}: " + "\n".join(tail), unavailable=proc.returncode == 3)
        result: dict[str, Any] = json.loads(out.read_text())
        return result


# --------------------------------------------------------------------------- measuring


def background_load(interval: float = 0.5) -> float:
    """Busy share of the machine's CPUs over ``interval`` seconds, while no child runs."""
    stat0 = proc_stat()
    time.sleep(interval)
    stat1 = proc_stat()
    if stat0 is None or stat1 is None or stat1[1] <= stat0[1]:
        return 0.0
    return (stat1[0] - stat0[0]) / (stat1[1] - stat0[1])


def wait_until_quiet(max_wait: float, threshold: float = BUSY) -> float:
    """Wait (at most ``max_wait`` seconds) until other processes use < ``threshold`` of the CPUs.

    Returns:
        The last background load seen (0 when ``max_wait`` is 0).
    """
    if max_wait <= 0:
        return 0.0
    deadline = time.monotonic() + max_wait
    load = background_load()
    while load >= threshold and time.monotonic() < deadline:
        load = background_load(1.0)
    return load


def run_quiet(settings: Settings, job: dict[str, Any], title: str) -> dict[str, Any]:
    """Run a measuring job on a quiet machine, again when other processes disturbed it.

    Waits for the machine to be idle (``--wait-idle``), runs the job, and reruns it
    up to ``--retries`` times while its ``background`` share exceeds ``BUSY``.
    Prints one progress line per attempt on stderr. The kept result gains
    ``attempts``.
    """
    label = job.get("label") or job.get("workload") or f"{job['mode']} matmul"
    for attempt in range(settings.retries + 1):
        wait_until_quiet(settings.wait_idle)
        res = run_child(settings, job)
        busy = res["background"] >= BUSY
        figure = f"{res['seconds']:8.3f} s"
        if "cpu_wall" in res:
            figure += f"  cpu/wall {res['cpu_wall']:.2f}"
        retry = "  (busy machine: retrying)" if busy and attempt < settings.retries else ""
        print(
            f"  [{title}] {label:<18} {job['framework']:<5} {figure}  "
            f"background {100 * res['background']:3.0f}%{retry}",
            file=sys.stderr,
            flush=True,
        )
        if not busy:
            break
    res["attempts"] = attempt + 1
    return res


@dataclass
class Case:
    """One (workload, samples, batch size) point, measured in both frameworks."""

    workload: str
    samples: int
    batch_size: int
    label: str = ""
    mode: str = "epoch"

    def job(self, framework: str) -> dict[str, Any]:
        """The child job of this case for one framework."""
        return {
            "mode": self.mode,
            "framework": framework,
            "workload": self.workload,
            "samples": self.samples,
            "batch_size": self.batch_size,
            "label": self.label,
        }


def measure(
    settings: Settings, cases: list[Case], rounds: int, frameworks: tuple[str, ...], title: str
) -> list[dict[str, Any]]:
    """Time every case in every framework over ``rounds`` interleaved rounds.

    Returns:
        One record per case with the raw runs of each framework.
    """
    records: list[dict[str, Any]] = [
        {"case": case, "runs": {fw: [] for fw in frameworks}} for case in cases
    ]
    for r in range(rounds):
        order = frameworks if r % 2 == 0 else tuple(reversed(frameworks))
        for record in records:
            case: Case = record["case"]
            for fw in order:
                res = run_quiet(settings, case.job(fw), f"{title} round {r + 1}/{rounds}")
                record["runs"][fw].append(res)
    return records


def summarize(
    records: list[dict[str, Any]], frameworks: tuple[str, ...], peak_flops: float | None
) -> list[dict[str, Any]]:
    """Medians, ratio, FLOP/s and memory of each measured case."""
    rows = []
    for record in records:
        case: Case = record["case"]
        wl = workloads.WORKLOADS[case.workload]
        flops = workloads.flops_per_sample(wl)["train"] * case.samples
        row: dict[str, Any] = {
            "workload": case.workload,
            "label": case.label or case.workload,
            "samples": case.samples,
            "batch_size": case.batch_size,
            "flops_per_epoch": flops,
        }
        for fw in frameworks:
            runs = record["runs"][fw]
            times = [run["seconds"] for run in runs]
            med = statistics.median(times)
            row[fw] = {
                "seconds": times,
                "median_s": med,
                "min_s": min(times),
                "max_s": max(times),
                "us_per_sample": med / case.samples * 1e6,
                "gflops": flops / med / 1e9,
                "peak_fraction": (flops / med / peak_flops) if peak_flops else None,
                "peak_rss_mib": statistics.median(run["peak_rss_mib"] for run in runs),
                "rss_base_mib": statistics.median(run["rss_base_mib"] for run in runs),
                "gpu_peak_mib": runs[-1].get("gpu_peak_mib"),
                "cpu_wall": statistics.median(run["cpu_wall"] for run in runs),
                "max_background": max(run["background"] for run in runs),
            }
        if "ours" in row and "torch" in row:
            row["ratio"] = row["ours"]["median_s"] / row["torch"]["median_s"]
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- printing


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain-text table, first column left-aligned, the others right-aligned."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        parts = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts)

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def describe_blas(libs: list[dict[str, Any]]) -> str:
    """One line per loaded BLAS/OpenMP library, as threadpoolctl reports it."""
    if not libs:
        return "(threadpoolctl not installed: unknown)"
    parts = []
    for lib in libs:
        arch = f" kernel={lib['architecture']}" if lib.get("architecture") else ""
        parts.append(
            f"{lib['internal_api']} {lib.get('version') or ''}{arch} "
            f"threads={lib['num_threads']}".replace("  ", " ")
        )
    return "; ".join(parts)


def print_main(rows: list[dict[str, Any]], frameworks: tuple[str, ...], rounds: int) -> None:
    """The main table: time, ratio, FLOP/s, memory."""
    both = len(frameworks) == 2
    headers = ["workload", "samples", "batch"]
    for fw in frameworks:
        headers += [f"{fw} s (min-max)"]
    if both:
        headers += ["ours/torch"]
    for fw in frameworks:
        headers += [f"{fw} GFLOP/s (%peak)"]
    for fw in frameworks:
        headers += [f"{fw} RSS MiB (+train)"]
    body = []
    for row in rows:
        cells = [row["label"], f"{row['samples']:,}", str(row["batch_size"])]
        for fw in frameworks:
            s = row[fw]
            cells.append(f"{s['median_s']:.3f} ({s['min_s']:.3f}-{s['max_s']:.3f})")
        if both:
            cells.append(f"{row['ratio']:.2f}x")
        for fw in frameworks:
            s = row[fw]
            pct = f" ({100 * s['peak_fraction']:.0f}%)" if s["peak_fraction"] else ""
            cells.append(f"{s['gflops']:.1f}{pct}")
        for fw in frameworks:
            s = row[fw]
            if s["gpu_peak_mib"] is not None:
                cells.append(f"GPU {s['gpu_peak_mib']:.0f}")
            else:
                delta = s["peak_rss_mib"] - s["rss_base_mib"]
                cells.append(f"{s['peak_rss_mib']:.0f} (+{max(delta, 0):.0f})")
        body.append(cells)
    print(f"\nOne epoch, median of {rounds} rounds")
    print(table(headers, body))
    print_busy_note(rows, frameworks)


def print_busy_note(rows: list[dict[str, Any]], frameworks: tuple[str, ...]) -> None:
    """Warn about cases where other processes loaded the machine during a kept run."""
    busy = [
        f"{row['label']} ({fw}: {100 * row[fw]['max_background']:.0f}%)"
        for row in rows
        for fw in frameworks
        if row[fw]["max_background"] >= BUSY
    ]
    if busy:
        print(
            "  note: other processes used the CPUs during some kept runs, so these "
            "figures are suspect: " + ", ".join(busy)
        )


def print_predict(rows: list[dict[str, Any]], frameworks: tuple[str, ...], rounds: int) -> None:
    """The inference table: samples per second of ``predict``, and peak memory."""
    both = len(frameworks) == 2
    headers = ["workload", "samples"] + [f"{fw} samples/s" for fw in frameworks]
    headers += ["ours/torch time"] if both else []
    headers += [f"{fw} RSS MiB (+predict)" for fw in frameworks]
    body = []
    for row in rows:
        cells = [row["label"], f"{row['samples']:,}"]
        cells += [f"{row['samples'] / row[fw]['median_s']:,.0f}" for fw in frameworks]
        if both:
            cells.append(f"{row['ratio']:.2f}x")
        for fw in frameworks:
            s = row[fw]
            delta = s["peak_rss_mib"] - s["rss_base_mib"]
            cells.append(f"{s['peak_rss_mib']:.0f} (+{max(delta, 0):.0f})")
        body.append(cells)
    print(
        f"\nInference: predict on {workloads.PREDICT_SAMPLES:,} samples "
        f"(torch in batches of {workloads.TORCH_PREDICT_BATCH}), median of {rounds} rounds"
    )
    print(table(headers, body))
    print_busy_note(rows, frameworks)


def print_scaling(rows: list[dict[str, Any]], frameworks: tuple[str, ...], rounds: int) -> None:
    """The scaling table: time per sample as batch size or data size grows."""
    both = len(frameworks) == 2
    headers = ["case", "samples", "batch"] + [f"{fw} us/sample" for fw in frameworks]
    headers += ["ours/torch"] if both else []
    body = []
    for row in rows:
        cells = [row["label"], f"{row['samples']:,}", str(row["batch_size"])]
        cells += [f"{row[fw]['us_per_sample']:.1f}" for fw in frameworks]
        if both:
            cells.append(f"{row['ratio']:.2f}x")
        body.append(cells)
    print(f"\nScaling: time per sample, median of {rounds} rounds")
    print(table(headers, body))
    print_busy_note(rows, frameworks)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description="Benchmark mpneuralnetwork against PyTorch (one epoch per workload)."
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2 rounds on a quarter of the data: a smoke run, not for reporting",
    )
    parser.add_argument(
        "--workloads",
        default=",".join(workloads.WORKLOADS),
        help="comma-separated subset of: " + ", ".join(workloads.WORKLOADS),
    )
    parser.add_argument(
        "--predict",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time predict on 10,000 samples for the CNN workloads (default: on)",
    )
    parser.add_argument(
        "--frameworks", default="ours,torch", help="comma-separated subset of: ours, torch"
    )
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="also run the scaling report (CNN batch 16/32/128/256, MLP 5k/20k/80k samples)",
    )
    parser.add_argument("--scaling-only", action="store_true", help="run the scaling report alone")
    parser.add_argument(
        "--scaling-rounds",
        type=int,
        default=None,
        help="rounds of the scaling report (default: min(--rounds, 3))",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write all results here")
    parser.add_argument(
        "--backend",
        choices=("numpy", "cupy"),
        default="numpy",
        help="cupy: ours with MPNN_BACKEND=cupy and torch on CUDA (fails clearly without a GPU)",
    )
    parser.add_argument("--threads", type=int, default=2, help="BLAS/OpenMP threads (default 2)")
    parser.add_argument(
        "--native-blas",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE in the children so that "
        "OpenBLAS picks its own kernel for this CPU (default: on)",
    )
    parser.add_argument("--seed", type=int, default=0, help="data and initialization seed")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=60.0,
        help="before each run, wait up to this many seconds for other processes to leave "
        "the CPUs idle (<10%% busy) (default 60, 0 to skip)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=4,
        help="rerun a measurement up to this many times when other processes used more "
        "than 10%% of the CPUs while it ran (default 4)",
    )
    args = parser.parse_args(argv)
    args.workload_list = [w for w in args.workloads.split(",") if w]
    unknown = [w for w in args.workload_list if w not in workloads.WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(unknown)}")
    args.framework_list = tuple(f for f in FRAMEWORKS if f in args.frameworks.split(","))
    if not args.framework_list:
        parser.error("--frameworks must name ours and/or torch")
    if args.quick:
        args.rounds = min(args.rounds, 2)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.scaling_rounds is None:
        args.scaling_rounds = min(args.rounds, 3)
    return args


def main(argv: list[str] | None = None) -> int:
    """Probe, measure the matmul peak, run the workloads, print (and save) the report."""
    args = parse_args(argv)
    settings = Settings(
        args.threads, args.backend, args.native_blas, args.seed, args.wait_idle, args.retries
    )
    frameworks: tuple[str, ...] = args.framework_list
    scale = 4 if args.quick else 1
    report: dict[str, Any] = {"settings": vars(settings) | {"rounds": args.rounds}}

    # Probe both frameworks first: a missing GPU or Model fails here, clearly.
    probes: dict[str, dict[str, Any]] = {}
    try:
        for fw in frameworks:
            probes[fw] = run_child(settings, {"mode": "probe", "framework": fw})
        if "ours" in frameworks and not probes["ours"].get("model_ready"):
            raise ChildError(
                "mpneuralnetwork.model.Model is not available yet "
                f"({probes['ours'].get('model_error', 'no train method')}); "
                "run with --frameworks torch meanwhile",
                unavailable=True,
            )
        peaks = {
            fw: run_quiet(settings, {"mode": "peak", "framework": fw}, "peak") for fw in frameworks
        }
    except ChildError as exc:
        print(f"benchmark: {exc}", file=sys.stderr)
        return 2
    report["probes"], report["matmul_peak"] = probes, peaks
    peak_flops = peaks["ours"]["flops"] if "ours" in peaks else None

    first = probes[frameworks[0]]
    print("mpneuralnetwork benchmark")
    print(f"  machine   : {first['processor']} ({os.cpu_count()} cpus), {platform.system()}")
    print(f"  python    : {first['python']}, numpy {first['numpy']}", end="")
    print(f", torch {probes['torch']['torch']}" if "torch" in probes else "")
    print(f"  backend   : {args.backend}; threads per child: {args.threads}")
    child_env = probes[frameworks[0]]["env"]
    parent = ", ".join(f"{k}={os.environ.get(k)}" for k in BLAS_OVERRIDES)
    child = ", ".join(f"{k}={child_env[k]}" for k in BLAS_OVERRIDES)
    native = "on" if args.native_blas else "off"
    print(f"  native BLAS: {native} (parent has {parent}; children get {child})")
    for fw in frameworks:
        print(f"  {fw:<5} BLAS: {describe_blas(probes[fw]['blas'])}")
    if "ours" in peaks:
        print(f"  NumPy float32 1024^3 matmul peak: {peaks['ours']['flops'] / 1e9:.1f} GFLOP/s")
    if "torch" in peaks:
        print(f"  torch float32 1024^3 matmul peak: {peaks['torch']['flops'] / 1e9:.1f} GFLOP/s")
    sys.stdout.flush()

    try:
        if not args.scaling_only and args.workload_list:
            cases = [
                Case(name, wl.samples // scale, wl.batch_size)
                for name, wl in workloads.WORKLOADS.items()
                if name in args.workload_list
            ]
            records = measure(settings, cases, args.rounds, frameworks, "main")
            rows = summarize(records, frameworks, peak_flops)
            report["main"] = rows
            print_main(rows, frameworks, args.rounds)
        predicting = [w for w in workloads.PREDICT_WORKLOADS if w in args.workload_list]
        if args.predict and not args.scaling_only and predicting:
            cases = [
                Case(name, workloads.PREDICT_SAMPLES // scale, 0, mode="predict")
                for name in predicting
            ]
            records = measure(settings, cases, args.rounds, frameworks, "predict")
            rows = summarize(records, frameworks, None)
            report["predict"] = rows
            print_predict(rows, frameworks, args.rounds)
        if args.scaling or args.scaling_only:
            cnn, mlp = workloads.WORKLOADS["cnn"], workloads.WORKLOADS["mlp"]
            cases = [
                Case("cnn", cnn.samples // scale, b, f"cnn batch {b}") for b in SCALING_CNN_BATCHES
            ] + [
                Case("mlp", n // scale, mlp.batch_size, f"mlp {n / scale / 1000:g}k samples")
                for n in SCALING_MLP_SAMPLES
            ]
            records = measure(settings, cases, args.scaling_rounds, frameworks, "scaling")
            rows = summarize(records, frameworks, peak_flops)
            report["scaling"] = rows
            print_scaling(rows, frameworks, args.scaling_rounds)
    except ChildError as exc:
        print(f"benchmark: {exc}", file=sys.stderr)
        return 2

    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))
        print(f"\nresults written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
