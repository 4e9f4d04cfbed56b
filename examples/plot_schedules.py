"""Draw the learning rate of every schedule of mpneuralnetwork.schedules, epoch by epoch.

Needs matplotlib: pip install matplotlib (or the plot extra, pip install ".[plot]")

Run it from the repository root:

    python examples/plot_schedules.py
    python examples/plot_schedules.py --output /tmp/schedules.png

The documentation site draws its schedules figure with this script when it is built.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mpneuralnetwork.schedules import CosineAnnealing, ExponentialDecay, Schedule, StepDecay

BASE = 0.01  # the optimizer's learning rate when training begins


def curve(schedule: Schedule, epochs: int) -> list[float]:
    """The rate of epochs 1..epochs (e = 0..epochs-1), computed as training computes it."""
    schedule.base_lr = BASE
    return [schedule.rate(e) for e in range(epochs)]


def main() -> None:
    parser = argparse.ArgumentParser(description="Learning-rate schedules")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--output", type=Path, default=Path("schedules.png"))
    args = parser.parse_args()
    try:
        import matplotlib
    except ImportError:
        sys.exit("plot_schedules.py needs matplotlib: pip install matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    schedules = {
        "StepDecay(10, gamma=0.5)": StepDecay(10, gamma=0.5),
        "ExponentialDecay(0.93)": ExponentialDecay(0.93),
        "CosineAnnealing(30, min_lr=1e-3)": CosineAnnealing(30, min_lr=1e-3),
        "CosineAnnealing(30, min_lr=1e-3, warmup_epochs=5)": CosineAnnealing(
            30, min_lr=1e-3, warmup_epochs=5
        ),
    }
    epochs = list(range(1, args.epochs + 1))
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for label, schedule in schedules.items():
        rates = curve(schedule, args.epochs)
        axes.plot(epochs, rates, marker=".", label=label)
        print(f"{label}: epoch 1 {rates[0]:.5f}, epoch {args.epochs} {rates[-1]:.5f}")
    axes.set_xlabel("epoch")
    axes.set_ylabel("learning rate")
    axes.set_title(f"Learning-rate schedules from a base rate of {BASE}")
    axes.grid(alpha=0.3)
    axes.legend()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.output, dpi=100, bbox_inches="tight")
    print(f"schedules saved to {args.output}")


if __name__ == "__main__":
    main()
