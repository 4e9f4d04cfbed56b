"""Saving and loading models, and flat dictionaries of their arrays.

`save_model` writes one compressed ``.npz`` archive (its layout is described in
`mpneuralnetwork.archive`); `load_model` reads it back into a new `Model`, with
the optimizer's state and the state of the saved callbacks.
`get_model_weights` and `restore_model_weights` work on flat dicts of arrays.

Loading never unpickles anything: a crafted file cannot run code.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from . import activations, callbacks, layers, losses, metrics, optimizers, schedules
from .archive import save_model
from .backend import xp
from .model import Model
from .weights import get_model_weights, restore_model_weights

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
_CALLBACKS = {
    **_registry(callbacks, callbacks.Callback),
    **_registry(schedules, callbacks.Callback),
}


_BASES: dict[str, type] = {
    "layer": layers.Layer,
    "loss": losses.Loss,
    "optimizer": optimizers.Optimizer,
    "metric": metrics.Metric,
    "callback": callbacks.Callback,
}


# ---------------------------------------------------------------------- load
def _registries(custom_objects: Mapping[str, type] | None) -> dict[str, dict[str, type]]:
    """The classes `load_model` may build, by kind: the library's, then the user's."""
    found = {
        "layer": dict(_LAYERS),
        "loss": dict(_LOSSES),
        "optimizer": dict(_OPTIMIZERS),
        "metric": dict(_METRICS),
        "callback": dict(_CALLBACKS),
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
                f"Optimizer, Metric or Callback; got {cls!r}"
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
            (activations included), `Loss`, `Optimizer`, `Metric` or `Callback`; a
            name of the library's own classes is replaced by yours.

    Raises:
        ValueError: The file is not a valid model archive: missing, extra or
            mis-shaped arrays, unknown classes, bad configs, or pickled content.
        TypeError: ``custom_objects`` is not a dict of such classes.
        FileNotFoundError: No such file.
    """
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
        with _random_state_kept():
            model = Model(layer_list, loss, optimizer, metric_list)
        if len(model.layers) != len(layer_list):
            raise ValueError("load_model: the architecture ends with the loss's output activation")
        weights = _read_arrays(archive, model, path)
    restore_model_weights(model.layers, weights, model.optimizer)
    _restore_globals(model.optimizer, config.get("optimizer_globals", {}))
    model.callbacks = _callbacks(config.get("callbacks", []), registries["callback"])
    return model


@contextlib.contextmanager
def _random_state_kept() -> Iterator[None]:
    """Put NumPy's global random state back after the block.

    Building the model draws initial weights that the archive then replaces; without
    this, loading would shift what the script draws next (shuffling, dropout), and a
    run resumed from a file would not repeat the run it continues. CuPy's generator
    has no state to read back: on CuPy loading still draws.
    """
    if xp is not np:
        yield
        return
    state = np.random.get_state()  # noqa: NPY002 - the global state is the spec's
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


def _callbacks(records: Any, registry: dict[str, type]) -> list[callbacks.Callback]:
    """The saved callbacks, rebuilt from their configs, with their state."""
    if not isinstance(records, list):
        raise ValueError("load_model: 'callbacks' must be a list")
    rebuilt = []
    for record in records:
        if not isinstance(record, dict) or not isinstance(record.get("state"), dict):
            raise ValueError(f"load_model: bad callback record {record!r}")
        callback = _build("callback", registry, record.get("config"))
        try:
            callback.state = record["state"]
        except ValueError as exc:
            raise ValueError(f"load_model: {exc}") from None
        rebuilt.append(callback)
    return rebuilt


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
