"""Saving and loading models, and flat dictionaries of their arrays.

`save_model` writes one compressed ``.npz`` archive (its layout is described in
`mpneuralnetwork.archive`); `load_model` reads it back into a new `Model`, with
the optimizer's state and the state of the saved callbacks.
`get_model_weights` and `restore_model_weights` work on flat dicts of arrays.

Loading never unpickles anything: a crafted file cannot run code.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, get_args

import numpy as np

from . import _checks, activations, callbacks, layers, losses, metrics, optimizers, schedules
from ._graph import INPUT_ARGUMENTS
from .archive import archive_bytes, save_model
from .backend import DTYPE, xp
from .layers.containers import Container, leaves, walk
from .model import Model
from .weights import get_model_weights, restore_model_weights

__all__ = [
    "get_model_weights",
    "layer_from_config",
    "load_model",
    "restore_model_weights",
    "save_model",
]

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


def _build(kind: str, registry: dict[str, type], config: Any, caller: str = "load_model") -> Any:
    if not isinstance(config, dict) or not isinstance(config.get("type"), str):
        raise ValueError(
            f"{caller}: a {kind} config must be an object with a 'type'; got {config!r}"
        )
    kwargs = dict(config)
    name = kwargs.pop("type")
    cls = registry.get(name)
    if cls is None:
        raise ValueError(
            f"{caller}: unknown {kind} class {name!r}; known: {sorted(registry)}. "
            f"Pass your own classes as {caller}({'path' if caller == 'load_model' else 'config'}, "
            f"custom_objects={{{name!r}: {name}}})"
        )
    if "input_shape" in kwargs and isinstance(kwargs["input_shape"], list):
        kwargs["input_shape"] = tuple(kwargs["input_shape"])
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"{caller}: bad arguments for {name}: {exc}") from None


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
    Every shape the architecture implies is compared with the arrays of the file
    before anything is allocated, so loading never allocates more than the file
    holds; no weight is initialized at random, and the global random state is left
    untouched (a resumed run draws exactly what it would have drawn).

    Args:
        path: The archive (``.npz`` appended when the given path does not exist).
        custom_objects: Your own classes, by the name their config holds (the class
            name, by default): ``{"Scale": Scale}``. Each must subclass `Layer`
            (activations included), `Loss`, `Optimizer`, `Metric` or `Callback`; a
            name of the library's own classes is replaced by yours.

    Raises:
        ValueError: The file is not a valid model archive: missing, extra,
            mis-shaped, non-finite or object arrays, unknown classes, bad configs.
        TypeError: ``custom_objects`` is not a dict of such classes.
        FileNotFoundError: No such file.
    """
    registries = _registries(custom_objects)
    path = Path(path)
    if not path.exists() and path.suffix != ".npz" and path.with_name(path.name + ".npz").exists():
        path = path.with_name(path.name + ".npz")
    with _open_archive(path, path) as archive:
        return _model_from_archive(archive, path, registries)


def _not_an_archive(path: Path) -> ValueError:
    return ValueError(f"load_model: {path} is not a mpneuralnetwork model archive")


def _open_archive(source: Path | io.BytesIO, path: Path) -> Any:
    """The ``.npz`` archive in ``source`` (a file, or bytes), or the library's own ValueError.

    Only a zip file reaches NumPy (a ``.npy`` array would be read whole, and NumPy's
    messages about other files advise ``allow_pickle``, never to be taken for a file
    of unknown origin); whatever it raises then is reported as the same ValueError.

    Args:
        source: The file's path, or the bytes of a pickled model.
        path: What errors call it.
    """
    if isinstance(source, Path) and not source.exists():
        raise FileNotFoundError(f"load_model: no such file: {path}")
    try:
        if zipfile.is_zipfile(source):
            archive = np.load(source, allow_pickle=False)
            if isinstance(archive, np.lib.npyio.NpzFile):
                return archive
    except (PermissionError, IsADirectoryError):
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        pass
    raise _not_an_archive(path) from None


def _model_from_archive(archive: Any, path: Path, registries: dict[str, dict[str, type]]) -> Model:
    """The model of an open archive (a file's, or the bytes of a pickled model)."""
    headers = _headers(archive, path)
    architecture = _read_json(archive, "architecture", path)
    config = _read_json(archive, "model_config", path)
    if not isinstance(architecture, list) or not architecture:
        raise ValueError("load_model: 'architecture' must be a non-empty list of layer configs")
    if not isinstance(config, dict) or "loss" not in config or "optimizer" not in config:
        raise ValueError("load_model: 'model_config' must hold 'loss' and 'optimizer'")
    layer_list = [_build_layer(c, registries["layer"]) for c in architecture]
    loss = _build("loss", registries["loss"], config["loss"])
    optimizer = _build("optimizer", registries["optimizer"], config["optimizer"])
    metric_list = None
    if config.get("metrics") is not None:
        if not isinstance(config["metrics"], list):
            raise ValueError("load_model: 'metrics' must be a list of metric configs")
        metric_list = [_build("metric", registries["metric"], c) for c in config["metrics"]]
    with _initialization_off(layer_list):  # the file's arrays are the weights
        expected = _build_layers(layer_list, headers, path)
        _check_names(expected, headers, optimizer, path)
        weights = _read_arrays(archive, headers)
        _adopt(layer_list, weights)
        layer_list = _with_output_activation(layer_list, loss)
        model = Model(layer_list, loss, optimizer, metric_list)
    restore_model_weights(model.layers, weights, model.optimizer)
    _restore_globals(model.optimizer, config.get("optimizer_globals", {}))
    model.callbacks = _callbacks(config.get("callbacks", []), registries["callback"])
    return model


# ------------------------------------------------------------------ pickling
def _pickled_model(model: Model) -> tuple[Any, tuple[Any, ...]]:
    """What `Model.__reduce__` returns: `_unpickle_model` and the model's archive as bytes.

    The bytes are the archive `save_model` writes (arrays and JSON configs). Classes
    other than the library's (your own layers, losses...) travel beside them, by
    reference (their module and name, as pickle writes any class), never their code.
    """
    custom = _custom_classes(model)
    data = archive_bytes(model)
    return (_unpickle_model, (data, custom) if custom else (data,))


def _custom_classes(model: Model) -> dict[str, type]:
    """``{config type: class}`` of the model's objects that the registries do not hold."""
    owned: list[tuple[str, Any]] = [
        *(("layer", layer) for layer in walk(model.layers)),
        ("loss", model.loss),
        ("optimizer", model.optimizer),
        *(("metric", metric) for metric in model.metrics),
        *(("callback", callback) for callback in model.callbacks),
    ]
    registries = _registries(None)
    custom = {}
    for kind, item in owned:
        name = item.get_config().get("type", type(item).__name__)
        if registries[kind].get(name) is not type(item):
            custom[name] = type(item)
    return custom


def _unpickle_model(data: bytes, custom_objects: Mapping[str, type] | None = None) -> Model:
    """A `Model` from the bytes of `_pickled_model`, read with `load_model`'s checks."""
    if not isinstance(data, bytes):
        raise TypeError(f"load_model: a pickled model holds bytes; got {type(data).__name__}")
    label = Path("<pickled model>")
    with _open_archive(io.BytesIO(data), label) as archive:
        return _model_from_archive(archive, label, _registries(custom_objects))


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
        if not member.endswith(".npy"):  # a zip, but not an .npz
            raise _not_an_archive(path)
        name = member[: -len(".npy")]
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


def layer_from_config(
    config: Mapping[str, Any], custom_objects: Mapping[str, type] | None = None
) -> layers.Layer:
    """A new layer (activations included) from a config such as ``layer.get_config()``.

    The way `load_model` rebuilds the layers of a file: ``cls(**config)``, the class
    found by the config's ``"type"`` among the library's layers and activations, plus
    those in ``custom_objects``. Nothing is drawn at random: a layer with weights gets
    them when it is built (by a `Model`). Copying a layer this way gives an untrained
    twin of it (the scikit-learn estimators copy their template layers so).

    Args:
        config: ``{"type": class name, **constructor arguments}``.
        custom_objects: Your own classes by the name their config holds, as for
            `load_model`.

    Returns:
        The layer, not built unless its config gives its input shape.

    Raises:
        ValueError: Unknown class or bad arguments.
        TypeError: ``custom_objects`` is not a dict of classes.
    """
    registry = _registries(custom_objects)["layer"]
    return _build_layer(dict(config), registry, "layer_from_config", for_file=False)


def _from_config(
    kind: str, config: Mapping[str, Any], custom_objects: Mapping[str, type] | None = None
) -> Any:
    """A loss, optimizer, metric or callback from its config, as `load_model` builds it."""
    name = f"{kind}_from_config"
    return _build(kind, _registries(custom_objects)[kind], dict(config), caller=name)


def _build_layer(
    config: Any, registry: dict[str, type], caller: str = "load_model", for_file: bool = True
) -> Any:
    """A layer from its config, not initialized: its weights are drawn when a Model builds it.

    A container's config holds its inner layers' configs: they are built the same way.

    Args:
        config: ``{"type": class name, **constructor arguments}``.
        registry: The layer classes by name.
        caller: The public function, named in errors.
        for_file: `load_model`'s case (`_adopt` then fills the parameters from the
            file): the declared input of a layer that can tell its arrays' shapes
            (`array_shapes`) is kept from the constructor and set as its
            ``input_shape``, so that `_build_layers` builds it only after the file's
            arrays were found to have those shapes; a crafted size (an Embedding of
            50 000 000 ids, an LSTM of a million units) is refused before anything is
            allocated or drawn.
    """
    name = config.get("type") if isinstance(config, dict) else None
    cls = registry.get(name) if isinstance(name, str) else None
    if isinstance(cls, type) and issubclass(cls, Container):
        kwargs = {k: v for k, v in config.items() if k != "type"}
        try:
            return cls.from_config(
                kwargs, lambda inner: _build_layer(inner, registry, caller, for_file)
            )
        except (TypeError, ValueError) as exc:
            if str(exc).startswith(f"{caller}:"):
                raise
            raise ValueError(f"{caller}: bad {name} config: {exc}") from None
    if not isinstance(config, dict):
        return _build("layer", registry, config, caller)
    deferred = {}
    if (
        for_file
        and isinstance(cls, type)
        and issubclass(cls, layers.Layer)
        and cls.array_shapes is not layers.Layer.array_shapes
    ):
        deferred = {k: config[k] for k in INPUT_ARGUMENTS if config.get(k) is not None}
    kwargs = {**config, **dict.fromkeys(deferred)}
    if "initialization" in config:
        kwargs["initialization"] = "auto"
    layer = _build("layer", registry, kwargs, caller)
    if "initialization" in config:
        layer.initialization = _checks.choice(
            type(layer).__name__, "initialization", config["initialization"], get_args(layers.Lit_W)
        )
    for argument, value in deferred.items():
        layer.input_shape = _checks.shape(f"{caller}: {type(layer).__name__}", argument, value)
    return layer


def _build_layers(
    layer_list: Sequence[Any], headers: dict[str, Any], path: Path
) -> dict[str, tuple[int, ...]]:
    """Build the layers in order, each after its arrays in the file were found as expected.

    Inside a container, each inner layer is checked the same way before it is built.

    Returns:
        ``{"layer_{i}_{name}": shape}`` of every layer array.
    """
    shape = layer_list[0].input_shape
    if shape is None:
        raise ValueError("load_model: the first layer of the architecture has no input shape")
    expected: dict[str, tuple[int, ...]] = {}
    for i, layer in enumerate(layer_list):

        def expect(prefix: str, leaf: Any, leaf_shape: tuple[int, ...], i: int = i) -> None:
            expected.update(
                _expected_arrays(f"layer_{i}_{prefix}", leaf, leaf_shape, headers, path)
            )

        try:
            if isinstance(layer, Container):
                layer.build_checked(shape, expect)
            else:
                expect("", layer, shape)
                layer.build(shape)
        except ValueError as exc:
            if str(exc).startswith("load_model:"):
                raise
            raise ValueError(
                f"load_model: layer {i} cannot take inputs of shape {shape}: {exc}"
            ) from None
        shape = layer._known("output_shape")
    return expected


def _expected_arrays(
    prefix: str, layer: Any, shape: tuple[int, ...], headers: dict[str, Any], path: Path
) -> dict[str, tuple[int, ...]]:
    """The arrays ``layer`` holds on ``shape``, found in the file with those shapes."""
    shapes = layer.array_shapes(shape)
    if shapes is None:  # a layer that cannot tell: built (and allocated) first
        layer.build(shape)
        shapes = {name: tuple(v.shape) for name, (v, _) in layer.params.items()}
        shapes.update({f"state_{n}": tuple(v.shape) for n, v in layer.state.items()})
    names = {f"{prefix}{name}": tuple(s) for name, s in shapes.items()}
    missing = sorted(set(names) - set(headers))
    if missing:
        raise ValueError(
            f"load_model: {path} does not match its architecture: missing arrays {missing}"
        )
    for name, wanted in names.items():
        _check_header(name, headers[name], wanted)
    return names


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
    for prefix, layer in leaves(layer_list, "layer_"):
        held = set(layer.params) | {f"state_{name}" for name in layer.state}
        for key, value in weights.items():
            name = key[len(prefix) :]
            if key.startswith(prefix) and not name.startswith("state_") and name not in held:
                array = xp.array(value, dtype=DTYPE)
                setattr(layer, name, array)
                setattr(layer, f"{name}_gradient", xp.zeros_like(array))


@contextmanager
def _initialization_off(layer_list: Sequence[Any]) -> Iterator[None]:
    """Inside, ``init_weights`` draws nothing: building a layer and the Model would.

    The arrays then come from the file (`_adopt`), never from a random draw.
    """
    patched: list[Any] = [
        layer for layer in walk(layer_list) if callable(getattr(layer, "init_weights", None))
    ]
    for layer in patched:
        layer.init_weights = _keep_weights
    try:
        yield
    finally:
        for layer in patched:
            del layer.init_weights


def _keep_weights(*_args: Any) -> None:
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
