"""One epoch of our workloads with two checkouts of the library, side by side.

Usage (from the repository root)::

    git worktree add /tmp/before <commit>
    python benchmark/compare_trees.py /tmp/before . [--workloads cnn,supercnn,cifar] [--rounds 3]

Each measurement is a fresh ``child.py`` process of the tree it measures (its own
``src/`` first on the path), with the threads and BLAS settings of ``run.py``; the
two trees alternate within a round and the order flips every round. The report
gives the median epoch of each tree and the ratio after/before.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import Settings  # noqa: E402
from workloads import WORKLOADS  # noqa: E402


def epoch(tree: Path, workload: str, settings: Settings) -> dict[str, float]:
    """Time one epoch of ``workload`` with the library of ``tree``."""
    spec = WORKLOADS[workload]
    with tempfile.TemporaryDirectory(prefix="mpnn-compare-") as tmp:
        out = Path(tmp) / "result.json"
        job = {
            "mode": "epoch",
            "framework": "ours",
            "workload": workload,
            "samples": spec.samples,
            "batch_size": spec.batch_size,
            "out": str(out),
            "threads": settings.threads,
            "backend": settings.backend,
            "seed": settings.seed,
        }
        subprocess.run(
            [sys.executable, str(tree / "benchmark" / "child.py"), json.dumps(job)],
            env=settings.env("ours"),
            check=True,
        )
        result: dict[str, float] = json.loads(out.read_text())
        return result


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, measure, print the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path, help="checkout measured first (the reference)")
    parser.add_argument("after", type=Path, help="checkout compared with it")
    parser.add_argument("--workloads", default="cnn,supercnn,cifar")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    names = args.workloads.split(",")
    settings = Settings(threads=2, backend="numpy", native_blas=True, seed=0)
    seconds: dict[tuple[str, str], list[float]] = {(t, w): [] for t in trees for w in names}
    for round_ in range(args.rounds):
        order = list(trees) if round_ % 2 == 0 else list(reversed(list(trees)))
        for workload in names:
            for tree in order:
                result = epoch(trees[tree], workload, settings)
                seconds[(tree, workload)].append(result["seconds"])
                print(
                    f"  [round {round_ + 1}/{args.rounds}] {workload:10s} {tree:6s} "
                    f"{result['seconds']:.3f} s  background {result['background']:.0%}",
                    file=sys.stderr,
                )
    print(f"before: {trees['before']}\nafter:  {trees['after']}\n")
    print(f"{'workload':10s} {'before s':>9s} {'after s':>9s} {'after/before':>13s}")
    for workload in names:
        before = statistics.median(seconds[("before", workload)])
        after = statistics.median(seconds[("after", workload)])
        print(f"{workload:10s} {before:9.3f} {after:9.3f} {after / before:12.2f}x")


if __name__ == "__main__":
    main()
