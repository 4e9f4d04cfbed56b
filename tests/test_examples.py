"""Smoke tests of the example scripts: each one runs as a subprocess with few epochs."""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

pytest.importorskip("sklearn", reason="the examples load scikit-learn data sets")


def run_example(name: str, *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> str:
    """Run examples/<name> with the current interpreter; return stdout + stderr."""
    environment = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    environment.pop("MPNN_BACKEND", None)
    environment.update(env or {})
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, f"{name} exited with {completed.returncode}:\n{output}"
    return output


@pytest.mark.parametrize(
    ("name", "epochs", "expected"),
    [
        ("quickstart.py", "2", "test accuracy:"),
        ("regression_diabetes.py", "3", "test r2score:"),
        ("binary_breast_cancer.py", "3", "test f1score:"),
        ("resnet_digits.py", "1", "test accuracy:"),
        ("transformer_digits.py", "1", "test accuracy:"),
    ],
)
def test_training_example(name: str, epochs: str, expected: str) -> None:
    output = run_example(name, "--epochs", epochs)
    assert expected in output
    assert re.search(rf"epoch +1/{epochs} ", output), "no per-epoch line"
    assert "Traceback" not in output


def test_cnn_digits_trains_saves_and_reloads(tmp_path: Path) -> None:
    # The README's "main job": train, save, reload, same predictions.
    path = tmp_path / "cnn.npz"
    output = run_example("cnn_digits.py", "--epochs", "1", "--save", str(path))
    assert re.search(r"epoch +1/1 ", output)
    assert "test accuracy:" in output
    assert "reloaded model predicts the same: True" in output
    assert path.is_file()


def test_save_load_resume(tmp_path: Path) -> None:
    # A path without ".npz": save_model appends it, and the script must use the path
    # it returns.
    output = run_example("save_load_resume.py", "--epochs", "2", "--path", str(tmp_path / "model"))
    assert "predictions equal after load_model: True" in output
    assert "test accuracy after resuming:" in output
    assert f"saved to {tmp_path / 'model.npz'} (" in output
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


def test_gpu_example_falls_back_to_numpy(tmp_path: Path) -> None:
    # A stand-in 'cupy' that cannot be imported: the fallback is exercised even on a
    # machine where the real CuPy is installed.
    fake = tmp_path / "no_cupy" / "cupy"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("CuPy disabled for this test")\n')
    pythonpath = os.pathsep.join(filter(None, [str(fake.parent), os.environ.get("PYTHONPATH")]))
    output = run_example(
        "gpu.py",
        "--epochs",
        "1",
        env={"MPNN_BACKEND": "cupy", "PYTHONPATH": pythonpath},
    )
    assert "backend: numpy" in output
    assert "CuPy is not available" in output
    assert "test accuracy:" in output


def test_gpu_example_on_the_cupy_standin() -> None:
    # tests/fake_cupy imitates CuPy's strictness (no implicit NumPy conversion), so
    # the example's GPU branch is checked for host/device mix-ups without a GPU.
    standin = Path(__file__).resolve().parent / "fake_cupy"
    output = run_example(
        "gpu.py", "--epochs", "1", env={"MPNN_BACKEND": "cupy", "PYTHONPATH": str(standin)}
    )
    assert "backend: cupy" in output
    assert "test accuracy:" in output
    assert "predict() returns numpy.ndarray" in output


def test_plot_learning_curves(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    target = tmp_path / "curves.png"
    output = run_example("plot_learning_curves.py", "--epochs", "2", "--output", str(target))
    assert "learning curves saved to" in output
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_augmented_digits_trains_on_a_generator() -> None:
    output = run_example("augmented_digits.py", "--epochs", "1")
    for name in ("plain", "augmented"):
        assert re.search(rf"{name} CNN, 1 epochs: test accuracy: 0\.\d{{4}}", output), output
    assert "augmentation changes the accuracy on shifted digits by" in output
    assert "Traceback" not in output


def test_every_example_is_tested() -> None:
    tested = {
        "quickstart.py",
        "cnn_digits.py",
        "regression_diabetes.py",
        "binary_breast_cancer.py",
        "save_load_resume.py",
        "gpu.py",
        "plot_learning_curves.py",
        "augmented_digits.py",
        "plot_schedules.py",
        "cosine_digits.py",
        "export_onnx.py",
        "sweep_dask.py",
        "resnet_digits.py",
        "transformer_digits.py",
    }
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_every_default_output_of_the_examples_is_ignored_by_git() -> None:
    """An example run from the repository root leaves no untracked file behind."""
    patterns = [
        line.strip()
        for line in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    defaults = {
        name
        for script in EXAMPLES.glob("*.py")
        for name in re.findall(r'default=Path\("([^"/]+)"\)', script.read_text(encoding="utf-8"))
    }
    assert {"learning_curves.png", "schedules.png", "cnn_digits.npz"} <= defaults
    for name in sorted(defaults):
        assert any(fnmatch.fnmatch(name, pattern.removeprefix("/")) for pattern in patterns), (
            f"{name}, written to the working folder by default, is not in .gitignore"
        )


def test_plot_schedules_draws_every_schedule(tmp_path: Path) -> None:
    target = tmp_path / "schedules.png"
    output = run_example("plot_schedules.py", "--epochs", "12", "--output", str(target))
    assert target.read_bytes().startswith(b"\x89PNG")
    # StepDecay(10, gamma=0.5) from 0.01: epoch 12 trains at 0.005
    assert "StepDecay(10, gamma=0.5): epoch 1 0.01000, epoch 12 0.00500" in output
    assert "warmup_epochs=5): epoch 1 0.00200" in output


def test_cosine_digits_compares_two_schedules() -> None:
    output = run_example("cosine_digits.py", "--epochs", "1")
    assert re.search(r"test accuracy, constant rate: +0\.\d{4}", output)
    assert re.search(r"test accuracy, cosine annealing: +0\.\d{4}", output)


def test_export_onnx_serves_the_cnn_from_onnxruntime(tmp_path: Path) -> None:
    pytest.importorskip("onnx", reason="the onnx extra")
    pytest.importorskip("onnxruntime", reason="the example serves the file from onnxruntime")
    path = tmp_path / "digits.onnx"
    output = run_example("export_onnx.py", "--epochs", "1", "--repeats", "2", "--path", str(path))
    assert "onnxruntime predicts the same as model.predict: True" in output
    assert re.search(r"onnxruntime test accuracy: 0\.\d{4}", output)
    assert re.search(r"one sample: model.predict +[\d.]+ µs, onnxruntime +[\d.]+ µs", output)
    assert path.is_file()


def test_sweep_dask_matches_the_serial_search() -> None:
    pytest.importorskip("distributed", reason="the example starts a local Dask cluster")
    output = run_example("sweep_dask.py", "--epochs", "1", "--check")
    assert "workers: 2" in output
    settings = re.findall(r"hidden +\d+, learning rate [\d.]+ *: mean accuracy 0\.\d{4}", output)
    assert len(settings) == 8
    assert re.search(r"best: hidden \d+, learning rate [\d.]+; test accuracy 0\.\d{4}", output)
    assert "same scores as the serial search: True" in output


def test_transformer_digits_draws_the_attention_weights(tmp_path: Path) -> None:
    target = tmp_path / "attention.png"
    output = run_example(
        "transformer_digits.py", "--epochs", "1", "--verbose", "0", "--attention", str(target)
    )
    assert "test accuracy:" in output and "attention figure saved" in output
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
