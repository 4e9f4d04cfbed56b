"""The table `Model.summary` prints: each layer's type, output shape and parameter count."""

from __future__ import annotations

from typing import Any

__all__ = ["summary_table"]


def summary_table(model: Any) -> str:
    """The summary of ``model`` as text: one row per layer, then the totals."""
    rows = [("Layer (type)", "Output shape", "Params")]
    trainable = state = 0
    for i, layer in enumerate(model.layers):
        count = sum(int(value.size) for value, _ in layer.params.values())
        trainable += count
        state += sum(int(value.size) for value in layer.state.values())
        rows.append((f"{i}: {type(layer).__name__}", str(layer.output_shape), f"{count:,}"))
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
