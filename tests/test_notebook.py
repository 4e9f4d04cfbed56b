"""The quick-start notebook: stored without outputs, and it runs from top to bottom."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"

nbformat = pytest.importorskip("nbformat")


def test_notebook_is_stored_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code_cells
    for cell in code_cells:
        assert cell.outputs == [], "clear the notebook outputs before committing"
        assert cell.execution_count is None


def test_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    # The kernel inherits this environment: few epochs, no display, NumPy backend.
    monkeypatch.setenv("MPNN_EPOCHS", "2")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("MPNN_BACKEND", raising=False)
    src = Path(__file__).resolve().parents[1] / "src"
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))
    )

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    errors = [
        output
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert errors == []
    assert (tmp_path / "quickstart_model.npz").is_file()
    text = "".join(
        output.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream"
    )
    assert "test accuracy:" in text
    assert "identical predictions" in text
    # the schedule cell: CosineAnnealing(T_max=2, min_lr=1e-4) from 0.005
    assert "learning rates: [0.005, 0.00255] ..." in text
    assert "test accuracy with the schedule:" in text
