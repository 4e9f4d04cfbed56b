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

import json
import os
import re
import secrets
import stat
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import activations, layers, losses, metrics, optimizers
from .backend import DTYPE, to_host, xp

if TYPE_CHECKING:
    from .model import Model

__all__ = ["get_model_weights", "load_model", "restore_model_weights", "save_model"]

#: Windows opens files in text mode unless asked; elsewhere the flag does not exist.
_O_BINARY = getattr(os, "O_BINARY", 0)

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

    The file is written to a temporary file in the same folder and then renamed,
    so a failed save leaves any previous file intact. A new file gets the
    permissions of any file the program writes (0o666 less the umask); an
    overwritten file keeps its permissions.

    Args:
        model: The model to save.
        filepath: Where to write (a str or a path).

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
    handle, temporary = _create_temporary(path)
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez_compressed(file, **arrays)  # type: ignore[arg-type]
            file.flush()
            os.fsync(file.fileno())
        if path.exists():  # an overwrite keeps the file's permissions
            os.chmod(temporary, stat.S_IMODE(path.stat().st_mode))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _create_temporary(path: Path) -> tuple[int, str]:
    """A new, empty file next to ``path``, open for writing, and its name.

    It is created with mode 0o666 so that the umask (and a default ACL) apply, as for
    any file a program writes; `tempfile.mkstemp` would force 0o600.
    """
    folder = path.parent if str(path.parent) else Path(".")
    for _ in range(100):
        name = str(folder / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666), name
        except FileExistsError:
            continue
    raise FileExistsError(f"save_model: no free temporary file name next to {path}")


_BASES: dict[str, type] = {
    "layer": layers.Layer,
    "loss": losses.Loss,
    "optimizer": optimizers.Optimizer,
    "metric": metrics.Metric,
}


def _registries(custom_objects: Mapping[str, type] | None) -> dict[str, dict[str, type]]:
    """The classes `load_model` may build, by kind: the library's, then the user's."""
    found = {
        "layer": dict(_LAYERS),
        "loss": dict(_LOSSES),
        "optimizer": dict(_OPTIMIZERS),
        "metric": dict(_METRICS),
    }
    if custom_objects is None:
        return found
    if not isinstance(custom_objects, Mapping):
        raise TypeError(
            "load_model: custom_objects must be a dict {class name: class}; got "
            f"{type(custom_objects).__name__}"
        )
    for name, cls in custom_objects.items():
        if not isinstance(name, str):
            raise TypeError(f"load_model: custom_objects keys must be class names; got {name!r}")
        kind = next(
            (k for k, base in _BASES.items() if isinstance(cls, type) and issubclass(cls, base)),
            None,
        )
        if kind is None:
            raise TypeError(
                f"load_model: custom_objects[{name!r}] must be a subclass of Layer, Loss, "
                f"Optimizer or Metric; got {cls!r}"
            )
        found[kind][name] = cls
    return found


def _build(kind: str, registry: dict[str, type], config: Any) -> Any:
    if not isinstance(config, dict) or not isinstance(config.get("type"), str):
        raise ValueError(
            f"load_model: a {kind} config must be an object with a 'type'; got {config!r}"
        )
    kwargs = dict(config)
    name = kwargs.pop("type")
    cls = registry.get(name)
    if cls is None:
        raise ValueError(
            f"load_model: unknown {kind} class {name!r}; known: {sorted(registry)}. "
            f"Pass your own classes as load_model(path, custom_objects={{{name!r}: {name}}})"
        )
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


def load_model(
    path: str | os.PathLike[str], custom_objects: Mapping[str, type] | None = None
) -> Model:
    """Load a model saved by `save_model`, ready to predict or to resume training.

    Every class is rebuilt from its JSON config as ``cls(**config)``; nothing is
    unpickled. Only the library's classes are known, plus those in ``custom_objects``.

    Args:
        path: The archive (``.npz`` appended when the given path does not exist).
        custom_objects: Your own classes, by the name their config holds (the class
            name, by default): ``{"Scale": Scale}``. Each must subclass `Layer`
            (activations included), `Loss`, `Optimizer` or `Metric`; a name of the
            library's own classes is replaced by yours.

    Raises:
        ValueError: The file is not a valid model archive: missing, extra or
            mis-shaped arrays, unknown classes, bad configs, or pickled content.
        TypeError: ``custom_objects`` is not a dict of such classes.
        FileNotFoundError: No such file.
    """
    from .model import Model

    registries = _registries(custom_objects)
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
        architecture = _read_json(archive, "architecture", path)
        config = _read_json(archive, "model_config", path)
        if not isinstance(architecture, list) or not architecture:
            raise ValueError("load_model: 'architecture' must be a non-empty list of layer configs")
        if not isinstance(config, dict) or "loss" not in config or "optimizer" not in config:
            raise ValueError("load_model: 'model_config' must hold 'loss' and 'optimizer'")
        layer_list = [_build("layer", registries["layer"], c) for c in architecture]
        loss = _build("loss", registries["loss"], config["loss"])
        optimizer = _build("optimizer", registries["optimizer"], config["optimizer"])
        metric_list = None
        if config.get("metrics") is not None:
            if not isinstance(config["metrics"], list):
                raise ValueError("load_model: 'metrics' must be a list of metric configs")
            metric_list = [_build("metric", registries["metric"], c) for c in config["metrics"]]
        model = Model(layer_list, loss, optimizer, metric_list)
        if len(model.layers) != len(layer_list):
            raise ValueError("load_model: the architecture ends with the loss's output activation")
        weights = _read_arrays(archive, model, path)
    restore_model_weights(model.layers, weights, model.optimizer)
    _restore_globals(model.optimizer, config.get("optimizer_globals", {}))
    return model


def _read_arrays(archive: Any, model: Model, path: Path) -> dict[str, np.ndarray]:
    """Every array of the archive, checked against the model's own names and shapes."""
    expected = {name: tuple(value.shape) for name, value in get_model_weights(model.layers).items()}
    param_shapes = {
        f"layer_{i}_{name}": tuple(value.shape)
        for i, layer in enumerate(model.layers)
        for name, (value, _) in layer.params.items()
    }
    states = {k for k, v in model.optimizer.params.items() if isinstance(v, dict)}
    names = [n for n in archive.files if n not in ("architecture", "model_config")]
    extra = []
    weights: dict[str, np.ndarray] = {}
    for name in names:
        match = _OPTIMIZER_KEY.match(name)
        if name in expected:
            shape = expected[name]
        elif match and match["state"] in states and match["param"] in param_shapes:
            shape = param_shapes[match["param"]]
        else:
            extra.append(name)
            continue
        try:
            value = archive[name]
        except ValueError as exc:  # object arrays need pickle, which is refused
            raise ValueError(f"load_model: array {name!r} cannot be read safely ({exc})") from None
        if value.dtype.kind != "f":
            raise ValueError(f"load_model: array {name!r} must be floating; got {value.dtype}")
        if tuple(value.shape) != shape:
            raise ValueError(
                f"load_model: array {name!r} must have shape {shape}; got {tuple(value.shape)}"
            )
        weights[name] = value
    missing = sorted(set(expected) - set(weights))
    # Optimizer state is all or nothing: a fresh model has none, a trained one has an
    # array per parameter for each state (a partial set would resume from zeros silently).
    covered: dict[str, set[str]] = {}
    for name in weights:
        match = _OPTIMIZER_KEY.match(name)
        if match and name not in expected:
            covered.setdefault(match["state"], set()).add(match["param"])
    if covered:
        missing += [
            f"optimizer_{state}_{param}"
            for state in sorted(states)
            for param in sorted(set(param_shapes) - covered.get(state, set()))
        ]
    if missing or extra:
        raise ValueError(
            f"load_model: {path} does not match its architecture: "
            f"missing arrays {missing}, unexpected arrays {sorted(extra)}"
        )
    return weights


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
