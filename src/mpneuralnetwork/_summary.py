"""The table `Model.summary` prints: each layer's type, output shape and parameter count.

The layers inside a container follow it, indented, with their own rows; the
container's row counts everything inside it, and the totals count each array once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .layers.containers import Container, Residual

__all__ = ["summary_table"]


def _count(layer: Any) -> int:
    return sum(int(value.size) for value, _ in layer.params.values())


def _rows(
    layers: Sequence[Any], depth: int, first: int = 0, label: str = ""
) -> list[tuple[str, str, str]]:
    """One row per layer, numbered from ``first``, each container followed by its layers."""
    rows = []
    for j, layer in enumerate(layers, first):
        name = f"{'    ' * depth}{j}: {label}{type(layer).__name__}"
        rows.append((name, str(layer.output_shape), f"{_count(layer):,}"))
        if isinstance(layer, Residual):
            # The shortcut's positions continue those of the layers (its arrays' names).
            rows += _rows(layer.layers, depth + 1)
            rows += _rows(layer.shortcut, depth + 1, len(layer.layers), "(shortcut) ")
        elif isinstance(layer, Container):
            rows += _rows(layer.children, depth + 1)
    return rows


def summary_table(model: Any) -> str:
    """The summary of ``model`` as text: one row per layer, then the totals."""
    rows = [("Layer (type)", "Output shape", "Params"), *_rows(model.layers, 0)]
    trainable = sum(_count(layer) for layer in model.layers)
    state = sum(int(value.size) for layer in model.layers for value in layer.state.values())
    if model.output_activation is not None:
        name = type(model.output_activation).__name__
        rows.append((f"(output) {name}", str(model.output_shape), "0"))
    widths = [max(len(row[c]) for row in rows) for c in range(3)]
    rule = "=" * (sum(widths) + 6)
    lines = [rule]
    for j, row in enumerate(rows):
        lines.append(f"{row[0]:<{widths[0]}}   {row[1]:<{widths[1]}}   {row[2]:>{widths[2]}}")
        if j == 0:
            lines.append("-" * len(rule))
    lines += [
        rule,
        f"Trainable parameters: {trainable:,}",
        f"State values (non-trainable): {state:,}",
        f"Total: {trainable + state:,}",
    ]
    return "\n".join(lines)
