"""The README's quick start runs as written and its commands stay the documented ones."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_starts_with_the_main_job_and_the_test_command() -> None:
    commands = _blocks("bash")[:2]
    assert "examples/cnn_digits.py" in commands[0]
    assert "pytest" in commands[1]
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert commands[1].strip().replace(" -q", "") in ci.replace(" -q", "")


def test_quick_start_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("sklearn", reason="the quick start loads scikit-learn's digits")
    monkeypatch.chdir(tmp_path)
    (quick_start,) = [block for block in _blocks("python") if "Model(" in block]
    namespace: dict[str, object] = {}
    exec(compile(quick_start, str(README), "exec"), namespace)
    assert (tmp_path / "digits.npz").exists()


def test_quick_start_prints_the_same_figures_every_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It seeds the library itself: whatever the random state before, the run repeats."""
    pytest.importorskip("sklearn", reason="the quick start loads scikit-learn's digits")
    monkeypatch.chdir(tmp_path)
    (quick_start,) = [block for block in _blocks("python") if "Model(" in block]
    outputs = []
    for seed in (1, 2):
        np.random.seed(seed)  # noqa: NPY002 - a different global state before each run
        exec(compile(quick_start, str(README), "exec"), {})
        outputs.append(capsys.readouterr().out)
    assert "accuracy" in outputs[0]
    assert outputs[0] == outputs[1]
