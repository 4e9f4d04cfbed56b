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
import inspect
import io
import json
import os
import secrets
import stat
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .weights import get_model_weights

__all__ = ["save_model"]

#: Windows opens files in text mode unless asked; elsewhere the flag does not exist.
_O_BINARY = getattr(os, "O_BINARY", 0)


def save_model(model: Any, filepath: str | os.PathLike[str]) -> Path:
    """Save a model to one compressed ``.npz`` archive (``.npz`` appended when missing).

    The archive is written to a temporary file in the same folder, then renamed over
    ``filepath`` in one step: a save that fails or is interrupted leaves any previous
    file intact. The temporary is removed when the save raises (KeyboardInterrupt
    included); a process killed while writing cannot remove it, so the next save of
    the same file removes the temporaries of processes that no longer run (POSIX).
    A new file gets the permissions of any file the program writes (0o666 less the
    umask); an overwritten file keeps its permissions.

    Args:
        model: The `Model` to save, with its optimizer state and the state of its
            callbacks (those whose configuration is plain data; a callback holding
            a function, such as `LambdaCallback`, is left out with a warning). A
            layer whose config cannot rebuild it (a plain ``Activation(f, f_prime)``:
            its functions are code) is saved with a warning, since `load_model`
            cannot rebuild it.
        filepath: Where to write.

    Returns:
        The path written.
    """
    path = Path(filepath)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    arrays = archive_arrays(model)
    write_atomically(
        path,
        lambda file: np.savez_compressed(file, **arrays),  # type: ignore[arg-type]
        "save_model",
    )
    return path


def archive_arrays(model: Any) -> dict[str, np.ndarray]:
    """The entries of a model's archive: its arrays and its two JSON configs."""
    params = model.optimizer.params
    architecture = layer_configs(model.layers)
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
    return arrays


def archive_bytes(model: Any) -> bytes:
    """The archive `save_model` would write for ``model``, as bytes (what pickling a
    `Model` stores: `mpneuralnetwork.serialization` reads it back with `load_model`'s checks).
    """
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **archive_arrays(model))  # type: ignore[arg-type]
    return buffer.getvalue()


def write_atomically(path: Path, write: Callable[[BinaryIO], Any], owner: str) -> None:
    """Write a file through ``write(file)`` into a temporary, then rename it over ``path``.

    A write that fails or is interrupted leaves any previous file intact; the
    temporary is removed when ``write`` raises (KeyboardInterrupt included), and the
    temporaries of killed processes are removed by the next write of the same file
    (POSIX). A new file gets the permissions of any file the program writes (0o666
    less the umask); an overwritten file keeps its permissions.

    Args:
        path: The file to write.
        write: Writes the whole content into the binary file it is given.
        owner: The public function writing, named in errors (``"save_model"``).
    """
    folder = path.parent if str(path.parent) else Path(".")
    _remove_stale_temporaries(folder, path.name)
    handle, temporary = _create_temporary(folder, path.name, owner)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        if path.exists():  # an overwrite keeps the file's permissions
            os.chmod(temporary, stat.S_IMODE(path.stat().st_mode))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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


def _create_temporary(folder: Path, name: str, owner: str) -> tuple[int, str]:
    """A new, empty ``.{name}.{pid}.{random}.tmp`` in ``folder``, open for writing.

    It is created with mode 0o666 so that the umask (and a default ACL) apply, as for
    any file a program writes; `tempfile.mkstemp` would force 0o600.
    """
    for _ in range(100):
        temporary = str(folder / f".{name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY
            return os.open(temporary, flags, 0o666), temporary
        except FileExistsError:
            continue
    raise FileExistsError(f"{owner}: no free temporary file name in {folder}")


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
                stacklevel=4,  # the caller of save_model
            )
            continue
        records.append(record)
    return records


def layer_configs(layers: list[Any]) -> list[dict[str, Any]]:
    """The layers' configs; a RuntimeWarning for each that ``cls(**config)`` cannot rebuild.

    Such a layer (a plain ``Activation(f, f_prime)``, or a class whose constructor
    needs an argument its `get_config` leaves out) is still written, so that its
    arrays are saved, but `load_model` would refuse the file.
    """
    configs = []
    for index, layer in enumerate(layers):
        config = layer.get_config()
        arguments = {k: v for k, v in config.items() if k != "type"}
        try:
            inspect.signature(type(layer)).bind(**arguments)
        except TypeError as exc:
            warnings.warn(
                f"save_model: layer {index} ({type(layer).__name__}) cannot be rebuilt from "
                f"its config ({exc}), so load_model will refuse this file; "
                + _rebuild_advice(type(layer).__name__),
                RuntimeWarning,
                stacklevel=4,  # the caller of save_model
            )
        except ValueError:  # a class without a readable signature: nothing to tell
            pass
        configs.append(config)
    return configs


def _rebuild_advice(name: str) -> str:
    if name == "Activation":  # the functions are code: a class must stand for them
        return (
            "subclass Activation with a constructor that takes no argument "
            "(class MyActivation(Activation) whose __init__(self) calls "
            "super().__init__(f, f_prime)) and pass it to "
            "load_model(path, custom_objects={'MyActivation': MyActivation})"
        )
    return (
        f"make {name}.get_config return every argument its constructor needs "
        f"and pass load_model(path, custom_objects={{{name!r}: {name}}})"
    )
