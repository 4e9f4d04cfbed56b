"""Saving and loading models, and flat dictionaries of their arrays.

An archive is one compressed ``.npz`` file holding:

- ``architecture``: JSON list of the layer configs;
- ``model_config``: JSON with the ``loss`` and ``optimizer`` configs,
  ``optimizer_globals`` (scalar optimizer state such as Adam's ``t``) and ``metrics``;
- ``layer_{i}_{param}``, ``layer_{i}_state_{name}`` and
  ``optimizer_{state}_layer_{i}_{param}`` arrays (float32).

Loading never unpickles anything: a crafted file cannot run code.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import numpy as np

from . import _checks, activations, layers, losses, metrics, optimizers
from .backend import DTYPE, to_host, xp

if TYPE_CHECKING:
    from .model import Model

__all__ = ["get_model_weights", "load_model", "restore_model_weights", "save_model"]

_OPTIMIZER_KEY = re.compile(r"^optimizer_(?P<state>[A-Za-z0-9]+)_(?P<param>layer_\d+_\w+)$")


def _registry(module: Any, base: type) -> dict[str, type]:
    return {
        name: cls
        for name in module.__all__
        if isinstance(cls := getattr(module, name), type) and issubclass(cls, base)
    }


_LAYERS = {**_registry(layers, layers.Layer), **_registry(activations, activations.Activation)}
_LOSSES = _registry(losses, losses.Loss)
_OPTIMIZERS = _registry(optimizers, optimizers.Optimizer)
_METRICS = _registry(metrics, metrics.Metric)


# --------------------------------------------------------------- flat weights
def _collect(
    layer_list: Sequence[Any], optimizer_params: dict[str, Any] | None, copy: Callable[[Any], Any]
) -> dict[str, Any]:
    weights: dict[str, Any] = {}
    for i, layer in enumerate(layer_list):
        for name, (value, _) in layer.params.items():
            weights[f"layer_{i}_{name}"] = copy(value)
        for name, value in layer.state.items():
            weights[f"layer_{i}_state_{name}"] = copy(value)
    for state, per_param in (optimizer_params or {}).items():
        if isinstance(per_param, dict):
            for key, value in per_param.items():
                weights[f"optimizer_{state}_{key}"] = copy(value)
        else:  # a scalar such as Adam's step count t, as a 0-d array
            weights[f"optimizer_{state}"] = copy(xp.asarray(per_param))
    return weights


def get_model_weights(
    layers: Sequence[Any], optimizer_params: dict[str, Any] | None = None
) -> dict[str, np.ndarray]:
    """A flat dict of host float32 copies of every parameter, state and optimizer array.

    Args:
        layers: The model's layers.
        optimizer_params: An optimizer's ``params`` (its state), or None.

    Returns:
        ``{"layer_{i}_{param}": ..., "layer_{i}_state_{name}": ...,
        "optimizer_{state}_layer_{i}_{param}": ...}``, plus scalar optimizer state
        such as Adam's ``t`` as 0-d arrays named ``optimizer_{name}``.
    """
    return _collect(layers, optimizer_params, lambda a: np.array(to_host(a), dtype=np.float32))


def restore_model_weights(
    layers: Sequence[Any], weights: dict[str, Any], optimizer: optimizers.Optimizer | None = None
) -> None:
    """Write arrays named as by `get_model_weights` back into layers and optimizer.

    Parameters are copied into the existing arrays. With an ``optimizer``, its
    per-parameter state is replaced by the ``optimizer_*`` arrays.

    Raises:
        ValueError: An array of a layer is missing or has the wrong shape.
    """
    for i, layer in enumerate(layers):
        for kind, names in (("params", list(layer.params)), ("state", list(layer.state))):
            prefix = f"layer_{i}_" if kind == "params" else f"layer_{i}_state_"
            missing = [prefix + name for name in names if prefix + name not in weights]
            if missing:
                raise ValueError(f"restore_model_weights: weights lack {missing}")
            values = {name: weights[prefix + name] for name in names}
            if kind == "params":
                layer.load_params(values)
            else:
                layer.state = values
    if optimizer is not None:
        for state, per_param in optimizer.params.items():
            if not isinstance(per_param, dict):
                if f"optimizer_{state}" in weights:  # a scalar such as Adam's t
                    setattr(optimizer, state, type(per_param)(weights[f"optimizer_{state}"]))
                continue
            prefix = f"optimizer_{state}_"
            per_param.clear()
            for key, value in weights.items():
                if key.startswith(prefix):
                    per_param[key[len(prefix) :]] = xp.array(value, dtype=DTYPE)  # a copy


class Snapshot:
    """An on-device copy of the weights, layer state and optimizer state (checkpoints)."""

    def __init__(self, arrays: dict[str, Any]) -> None:
        self.arrays = arrays

    @classmethod
    def take(cls, layer_list: Sequence[Any], optimizer: optimizers.Optimizer) -> Snapshot:
        """Copy everything that training changes."""
        return cls(_collect(layer_list, optimizer.params, lambda a: a.copy()))

    def restore(self, layer_list: Sequence[Any], optimizer: optimizers.Optimizer) -> None:
        """Write the copy back (the snapshot stays usable)."""
        restore_model_weights(layer_list, self.arrays, optimizer)


# ---------------------------------------------------------------- save / load
def save_model(model: Model, filepath: str | os.PathLike[str]) -> Path:
    """Save a model to one compressed ``.npz`` archive (``.npz`` appended when missing).

    The archive is written to a temporary file in the same folder, then renamed over
    ``filepath`` in one step: a save that fails or is interrupted leaves any previous
    file intact. The temporary is removed when the save raises (KeyboardInterrupt
    included); a process killed while writing cannot remove it, so the next save of
    the same file removes the temporaries of processes that no longer run (POSIX).

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


def _build(kind: str, registry: dict[str, type], config: Any) -> Any:
    if not isinstance(config, dict) or not isinstance(config.get("type"), str):
        raise ValueError(
            f"load_model: a {kind} config must be an object with a 'type'; got {config!r}"
        )
    kwargs = dict(config)
    name = kwargs.pop("type")
    cls = registry.get(name)
    if cls is None:
        raise ValueError(f"load_model: unknown {kind} class {name!r}; known: {sorted(registry)}")
    if "input_shape" in kwargs and isinstance(kwargs["input_shape"], list):
        kwargs["input_shape"] = tuple(kwargs["input_shape"])
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"load_model: bad arguments for {name}: {exc}") from None


def _read_json(archive: Any, name: str, path: Path) -> Any:
    if name not in archive.files:
        raise ValueError(f"load_model: {path} is not a mpneuralnetwork model archive (no {name!r})")
    raw = archive[name]
    if raw.dtype.kind != "U" or raw.shape != ():
        raise ValueError(f"load_model: {name!r} in {path} must be a JSON string")
    try:
        return json.loads(str(raw))
    except json.JSONDecodeError as exc:
        raise ValueError(f"load_model: {name!r} in {path} is not valid JSON ({exc})") from None


def load_model(path: str | os.PathLike[str]) -> Model:
    """Load a model saved by `save_model`, ready to predict or to resume training.

    Every shape the architecture implies is compared with the arrays of the file
    before anything is allocated, so loading never allocates more than the file
    holds; no weight is initialized at random, and the global random state is left
    untouched (a resumed run draws exactly what it would have drawn).

    Args:
        path: The archive (``.npz`` appended when the given path does not exist).

    Raises:
        ValueError: The file is not a valid model archive: missing, extra,
            mis-shaped, non-finite or object arrays, unknown classes, bad configs.
        FileNotFoundError: No such file.
    """
    from .model import Model

    path = Path(path)
    if not path.exists() and path.suffix != ".npz" and path.with_name(path.name + ".npz").exists():
        path = path.with_name(path.name + ".npz")
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"load_model: {path} is not a readable .npz archive ({exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"load_model: {path} is a single array, not a model archive")
    with archive:
        headers = _headers(archive, path)
        architecture = _read_json(archive, "architecture", path)
        config = _read_json(archive, "model_config", path)
        if not isinstance(architecture, list) or not architecture:
            raise ValueError("load_model: 'architecture' must be a non-empty list of layer configs")
        if not isinstance(config, dict) or "loss" not in config or "optimizer" not in config:
            raise ValueError("load_model: 'model_config' must hold 'loss' and 'optimizer'")
        layer_list = [_build_layer(c) for c in architecture]
        loss = _build("loss", _LOSSES, config["loss"])
        optimizer = _build("optimizer", _OPTIMIZERS, config["optimizer"])
        metric_list = None
        if config.get("metrics") is not None:
            if not isinstance(config["metrics"], list):
                raise ValueError("load_model: 'metrics' must be a list of metric configs")
            metric_list = [_build("metric", _METRICS, c) for c in config["metrics"]]
        expected = _build_layers(layer_list, headers, path)
        _check_names(expected, headers, optimizer, path)
        weights = _read_arrays(archive, headers)
    _adopt(layer_list, weights)
    with _initialization_off(layer_list):
        model = Model(_with_output_activation(layer_list, loss), loss, optimizer, metric_list)
    restore_model_weights(model.layers, weights, model.optimizer)
    _restore_globals(model.optimizer, config.get("optimizer_globals", {}))
    return model


def _with_output_activation(layer_list: list[Any], loss: losses.Loss) -> list[Any]:
    """The layers, plus a copy of the loss's output activation for the Model to drop.

    The Model drops a trailing copy of that activation from the layers it is given;
    a saved network whose own last layer is one (``[..., Sigmoid(), Sigmoid()]`` was
    saved as ``[..., Sigmoid()]``) keeps it this way.
    """
    if isinstance(loss, losses.BinaryCrossEntropy):
        return [*layer_list, activations.Sigmoid()]
    if isinstance(loss, losses.CategoricalCrossEntropy):
        return [*layer_list, activations.Softmax()]
    return layer_list


def _headers(archive: Any, path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype[Any]]]:
    """``{name: (shape, dtype)}`` of every entry, from the ``.npy`` headers alone.

    Refuses object arrays (they need pickle) and entries declaring more data than
    they hold, before any array is read.
    """
    headers = {}
    for info in archive.zip.infolist():
        member = info.filename
        name = member[: -len(".npy")] if member.endswith(".npy") else member
        try:
            with archive.zip.open(member) as file:
                version = np.lib.format.read_magic(file)
                read = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read(file)
        except Exception as exc:  # a corrupt member: zipfile, header and format errors
            raise ValueError(
                f"load_model: entry {name!r} of {path} is not a readable array ({exc})"
            ) from None
        if dtype.hasobject:
            raise ValueError(
                f"load_model: entry {name!r} of {path} is an object array ({dtype}); a model "
                "archive holds only numbers and JSON strings, and loading never unpickles"
            )
        if math.prod(shape) * dtype.itemsize > info.file_size:
            raise ValueError(
                f"load_model: entry {name!r} of {path} declares shape {shape} of {dtype} "
                f"but holds only {info.file_size} bytes"
            )
        headers[name] = (tuple(shape), dtype)
    return headers


def _build_layer(config: Any) -> Any:
    """A layer from its config, without initializing it (`_adopt` fills its parameters)."""
    if not isinstance(config, dict) or "initialization" not in config:
        return _build("layer", _LAYERS, config)
    layer = _build("layer", _LAYERS, {**config, "initialization": "auto"})
    name = type(layer).__name__
    layer.initialization = _checks.choice(
        name, "initialization", config["initialization"], get_args(layers.Lit_W)
    )
    return layer


def _build_layers(
    layer_list: Sequence[Any], headers: dict[str, Any], path: Path
) -> dict[str, tuple[int, ...]]:
    """Build the layers in order, each after its arrays in the file were found as expected.

    Returns:
        ``{"layer_{i}_{name}": shape}`` of every layer array.
    """
    shape = layer_list[0].input_shape
    if shape is None:
        raise ValueError("load_model: the first layer of the architecture has no input shape")
    expected: dict[str, tuple[int, ...]] = {}
    for i, layer in enumerate(layer_list):
        try:
            shapes = layer.array_shapes(shape)
            if shapes is None:  # a layer that cannot tell: built (and allocated) first
                layer.build(shape)
                shapes = {name: tuple(v.shape) for name, (v, _) in layer.params.items()}
                shapes.update({f"state_{n}": tuple(v.shape) for n, v in layer.state.items()})
        except ValueError as exc:
            raise ValueError(
                f"load_model: layer {i} cannot take inputs of shape {shape}: {exc}"
            ) from None
        names = {f"layer_{i}_{name}": tuple(s) for name, s in shapes.items()}
        missing = sorted(set(names) - set(headers))
        if missing:
            raise ValueError(
                f"load_model: {path} does not match its architecture: missing arrays {missing}"
            )
        for name, wanted in names.items():
            _check_header(name, headers[name], wanted)
        expected.update(names)
        try:
            layer.build(shape)
        except ValueError as exc:
            raise ValueError(
                f"load_model: layer {i} cannot take inputs of shape {shape}: {exc}"
            ) from None
        shape = layer._known("output_shape")
    return expected


def _check_header(name: str, header: Any, wanted: tuple[int, ...]) -> None:
    shape, dtype = header
    if dtype.kind != "f":
        raise ValueError(f"load_model: array {name!r} must be floating; got {dtype}")
    if shape != wanted:
        raise ValueError(f"load_model: array {name!r} must have shape {wanted}; got {shape}")


def _check_names(
    expected: dict[str, tuple[int, ...]],
    headers: dict[str, Any],
    optimizer: optimizers.Optimizer,
    path: Path,
) -> None:
    """Every other entry must be optimizer state of a parameter, all or nothing."""
    param_shapes = {k: v for k, v in expected.items() if "_state_" not in k}
    states = {k for k, v in optimizer.params.items() if isinstance(v, dict)}
    extra = []
    covered: dict[str, set[str]] = {}
    for name in headers:
        if name in expected or name in ("architecture", "model_config"):
            continue
        match = _OPTIMIZER_KEY.match(name)
        if match and match["state"] in states and match["param"] in param_shapes:
            _check_header(name, headers[name], param_shapes[match["param"]])
            covered.setdefault(match["state"], set()).add(match["param"])
        else:
            extra.append(name)
    # Optimizer state is all or nothing: a fresh model has none, a trained one has an
    # array per parameter for each state (a partial set would resume from zeros silently).
    missing = []
    if covered:
        missing = [
            f"optimizer_{state}_{param}"
            for state in sorted(states)
            for param in sorted(set(param_shapes) - covered.get(state, set()))
        ]
    if missing or extra:
        raise ValueError(
            f"load_model: {path} does not match its architecture: "
            f"missing arrays {missing}, unexpected arrays {sorted(extra)}"
        )


def _read_arrays(archive: Any, headers: dict[str, Any]) -> dict[str, np.ndarray]:
    """The (checked) arrays of the archive; NaN or infinite values are refused."""
    weights = {}
    for name in headers:
        if name in ("architecture", "model_config"):
            continue
        value = archive[name]
        if not np.isfinite(value).all():
            raise ValueError(f"load_model: array {name!r} holds NaN or infinite values")
        weights[name] = value
    return weights


def _adopt(layer_list: Sequence[Any], weights: dict[str, np.ndarray]) -> None:
    """Give the parameters that the layers have not allocated yet their stored values.

    Dense and Convolutional create theirs only when initialized: here they are made
    from the file instead (with zero gradients), so that no random draw happens.
    """
    for i, layer in enumerate(layer_list):
        prefix = f"layer_{i}_"
        held = set(layer.params) | {f"state_{name}" for name in layer.state}
        for key, value in weights.items():
            name = key[len(prefix) :]
            if key.startswith(prefix) and not name.startswith("state_") and name not in held:
                array = xp.array(value, dtype=DTYPE)
                setattr(layer, name, array)
                setattr(layer, f"{name}_gradient", xp.zeros_like(array))


@contextmanager
def _initialization_off(layer_list: Sequence[Any]) -> Iterator[None]:
    """Inside, ``init_weights`` keeps the arrays the layers hold (the Model would redraw them)."""
    patched = [layer for layer in layer_list if callable(getattr(layer, "init_weights", None))]
    for layer in patched:
        layer.init_weights = _keep_weights
    try:
        yield
    finally:
        for layer in patched:
            del layer.init_weights


def _keep_weights(method: str, no_bias: bool) -> None:
    """Stands in for ``init_weights`` while a loaded model is assembled."""


def _restore_globals(optimizer: optimizers.Optimizer, values: Any) -> None:
    if not isinstance(values, dict):
        raise ValueError("load_model: 'optimizer_globals' must be an object")
    known = optimizer.params
    for name, value in values.items():
        if name not in known or isinstance(known[name], dict):
            raise ValueError(f"load_model: unknown optimizer global {name!r}")
        if not isinstance(value, type(known[name])) or isinstance(value, bool):
            raise ValueError(
                f"load_model: optimizer global {name!r} must be {type(known[name]).__name__}; "
                f"got {value!r}"
            )
        if isinstance(value, int) and value < 0:  # step counters such as Adam's t
            raise ValueError(f"load_model: optimizer global {name!r} must be >= 0; got {value}")
        setattr(optimizer, name, value)
