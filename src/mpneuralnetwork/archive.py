"""Writing model archives: one compressed ``.npz`` file, replaced atomically.

An archive holds:

- ``architecture``: JSON list of the layer configs;
- ``model_config``: JSON with the ``loss`` and ``optimizer`` configs,
  ``optimizer_globals`` (scalar optimizer state such as Adam's ``t``), ``metrics``
  and ``callbacks`` (each saveable callback's config and state);
- ``layer_{i}_{param}``, ``layer_{i}_state_{name}`` and
  ``optimizer_{state}_layer_{i}_{param}`` arrays (float32).

`mpneuralnetwork.serialization` reads them back. This module knows nothing of
``Model`` beyond its attributes, so callbacks can save models without an import cycle.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .weights import get_model_weights

__all__ = ["save_model"]


def save_model(model: Any, filepath: str | os.PathLike[str]) -> Path:
    """Save a model to one compressed ``.npz`` archive (``.npz`` appended when missing).

    The archive is written to a temporary file in the same folder, then renamed over
    ``filepath`` in one step: a save that fails or is interrupted leaves any previous
    file intact. The temporary is removed when the save raises (KeyboardInterrupt
    included); a process killed while writing cannot remove it, so the next save of
    the same file removes the temporaries of processes that no longer run (POSIX).

    Args:
        model: The `Model` to save, with its optimizer state and the state of its
            callbacks (those whose configuration is plain data; a callback holding
            a function, such as `LambdaCallback`, is left out with a warning).
        filepath: Where to write.

    Returns:
        The path written.
    """
    path = Path(filepath)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    params = model.optimizer.params
    architecture = [layer.get_config() for layer in model.layers]
    config = {
        "loss": model.loss.get_config(),
        "optimizer": model.optimizer.get_config(),
        "optimizer_globals": {k: v for k, v in params.items() if not isinstance(v, dict)},
        "metrics": [metric.get_config() for metric in model.metrics],
        "callbacks": callback_records(getattr(model, "callbacks", [])),
    }
    arrays = get_model_weights(model.layers, params)
    for name in config["optimizer_globals"]:  # kept in the JSON config instead
        del arrays[f"optimizer_{name}"]
    arrays["architecture"] = np.array(json.dumps(architecture))
    arrays["model_config"] = np.array(json.dumps(config))
    folder = path.parent if str(path.parent) else Path(".")
    _remove_stale_temporaries(folder, path.name)
    handle, temporary = tempfile.mkstemp(
        dir=folder, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez_compressed(file, **arrays)  # type: ignore[arg-type]
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _remove_stale_temporaries(folder: Path, name: str) -> None:
    """Remove ``.{name}.{pid}.*.tmp`` files left by killed saves (their process is gone).

    The temporary of a save still running (in this or another live process) is kept.
    Elsewhere than on POSIX, liveness cannot be asked cheaply: nothing is removed.
    """
    if os.name != "posix":
        return
    prefix = f".{name}."
    for candidate in folder.glob(f"{glob.escape(prefix)}*.tmp"):
        pid = candidate.name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _running(int(pid)):
            candidate.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def callback_records(callbacks: list[Any]) -> list[dict[str, Any]]:
    """``[{"config": ..., "state": ...}]`` for every callback that can be written as JSON."""
    records = []
    for callback in callbacks:
        record = {"config": callback.get_config(), "state": callback.state}
        try:
            json.dumps(record)
        except (TypeError, ValueError):
            warnings.warn(
                f"save_model: {type(callback).__name__} holds Python code and is not saved; "
                "pass it again to train after load_model",
                RuntimeWarning,
                stacklevel=3,
            )
            continue
        records.append(record)
    return records
