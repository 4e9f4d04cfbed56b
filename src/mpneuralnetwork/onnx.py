"""Export a trained `Model` to ONNX, for inference in onnxruntime and other runtimes.

The file holds the inference graph of ``model.predict``: the layers in inference mode
(Dropout left out, batch normalizations with their running statistics), then the
output activation the loss implies, in float32, with the weights as initializers.

How a layer becomes ONNX nodes (the protocol, for adding a layer):

- `CONVERTERS` maps a layer class (the exact class, not its subclasses: a subclass
  may compute something else) to its converter, a function
  ``converter(layer, x, graph) -> y``: ``x`` is the name of the input tensor (the
  batch, shape (N, *layer.input_shape)), ``graph`` the `Graph` being built, and ``y``
  the name of the output tensor (N, *layer.output_shape). Register one with
  ``@converter(MyLayer)``.
- A converter adds its weights with ``graph.constant(hint, array)`` and its nodes
  with ``graph.node(op_type, inputs, ...)``; both return unique tensor names made from
  the hint inside the layer's scope (``"3_dense/weights"``). It reads the target
  opset from ``graph.opset`` and calls ``graph.require(opset, why)`` for the lowest
  opset its nodes need: `export` then picks the lowest opset that covers every layer
  or refuses an explicit opset that is too low, naming the layer.
- A container layer converts its inner layers with ``graph.convert(inner, x, label)``
  on sub-scopes (``label`` is the inner layer's position): the same checks (no
  converter, opset too low) then name the inner layer and where it sits.
"""

from __future__ import annotations

import copy
import importlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, _checks
from .activations import PReLU, ReLU, Sigmoid, Softmax, Swish, Tanh
from .archive import write_atomically
from .backend import to_host
from .layers import (
    GRU,
    LSTM,
    AveragePooling2D,
    BatchNormalization,
    BatchNormalization2D,
    Convolutional,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    Layer,
    MaxPooling2D,
    SimpleRNN,
)

__all__ = ["export"]

#: The lowest opset an export uses: Add and Mul broadcast from opset 7 on, and
#: onnxruntime runs no older opset.
MIN_OPSET = 7

Converter = Callable[[Any, str, "Graph"], str]
#: ``{layer class: converter}``; see the module docstring for the protocol.
CONVERTERS: dict[type, Converter] = {}


def converter(*classes: type) -> Callable[[Converter], Converter]:
    """Register the decorated function as the converter of ``classes``."""

    def register(function: Converter) -> Converter:
        for cls in classes:
            CONVERTERS[cls] = function
        return function

    return register


def _import_onnx() -> Any:
    try:
        return importlib.import_module("onnx")
    except ImportError as error:
        raise ImportError(
            "mpneuralnetwork.onnx.export needs the onnx package: "
            'pip install "mpneuralnetwork[onnx]" (or pip install onnx)'
        ) from error


class Graph:
    """An ONNX graph under construction: nodes, initializers, unique names, the opset.

    Args:
        onnx: The ``onnx`` module.
        opset: The target opset of the ``ai.onnx`` domain.

    Attributes:
        opset: The target opset; converters may emit other nodes for newer opsets.
        needed: The highest opset a `require` call asked for so far.
        integer: Names of the tensors holding int64 ids (the model input before an
            `Embedding`).
    """

    def __init__(self, onnx: Any, opset: int) -> None:
        self.onnx = onnx
        self.opset = opset
        self.needed = MIN_OPSET
        self.integer: set[str] = set()
        self.nodes: list[Any] = []
        self.initializers: dict[str, np.ndarray] = {}
        self._names: set[str] = {"input", "output"}
        self._scopes: list[str] = []  # the scope of each layer being converted, outermost first
        self._where: list[str] = []  # "layer 3 (Dense)", ... for the messages

    # --------------------------------------------------------------- names
    def name(self, hint: str) -> str:
        """A new tensor or node name: ``hint`` inside the current scope, made unique."""
        base = "/".join([*self._scopes, hint])
        name, count = base, 1
        while name in self._names:
            name, count = f"{base}_{count}", count + 1
        self._names.add(name)
        return name

    @property
    def where(self) -> str:
        """The layer being converted, for messages: ``"layer 3 (Residual) > layer 0 (Dense)"``."""
        return " > ".join(self._where) or "the model"

    # ------------------------------------------------------------- building
    def constant(self, hint: str, value: Any, dtype: Any = np.float32) -> str:
        """Add an initializer (a backend array or a number, stored as ``dtype``); its name."""
        name = self.name(hint)
        self.initializers[name] = np.ascontiguousarray(to_host(value), dtype=dtype)
        return name

    def node(
        self,
        op_type: str,
        inputs: Sequence[str],
        outputs: str | Sequence[str | None] | None = None,
        **attributes: Any,
    ) -> Any:
        """Add a node; return the name of its output (or the list of their names).

        Args:
            op_type: The ONNX operator (``"Gemm"``).
            inputs: The input tensor names; ``""`` for an optional input left out.
            outputs: A name hint for the one output (default: the operator's name in
                lower case), or a list of hints with None for optional outputs left out.
            attributes: The node's attributes.

        Returns:
            The output name for a single hint, else the list of names (``""`` for those
            left out).
        """
        if outputs is None or isinstance(outputs, str):
            names, single = [self.name(outputs or op_type.lower())], True
        else:
            names, single = ["" if hint is None else self.name(hint) for hint in outputs], False
        helper = self.onnx.helper
        node_name = self.name(op_type)
        self.nodes.append(helper.make_node(op_type, list(inputs), names, node_name, **attributes))
        return names[0] if single else names

    def require(self, opset: int, why: str) -> None:
        """Record that the current layer needs ``opset``; refuse a lower target opset."""
        self.needed = max(self.needed, opset)
        if opset > self.opset:
            raise ValueError(
                f"mpneuralnetwork.onnx.export: {self.where} needs opset {opset} or newer "
                f"({why}); the target opset is {self.opset}"
            )

    def convert(self, layer: Layer, x: str, label: str) -> str:
        """Convert ``layer`` on the tensor ``x`` inside a new scope named after ``label``.

        Args:
            layer: The layer (built: its input and output shapes are known).
            x: The input tensor's name.
            label: Its position (``"3"``) or role (``"output activation"``), for the
                tensor names and the messages.

        Returns:
            The output tensor's name.

        Raises:
            ValueError: No converter is registered for the layer's class.
        """
        cls = type(layer)
        self._where.append(f"{'layer ' if label.isdigit() else ''}{label} ({cls.__name__})")
        self._scopes.append(f"{label.replace(' ', '_')}_{cls.__name__.lower()}")
        try:
            function = CONVERTERS.get(cls)
            if function is None:
                raise ValueError(
                    f"mpneuralnetwork.onnx.export: no ONNX converter for {cls.__name__} at "
                    f"{self.where}; the layers that export are "
                    f"{', '.join(sorted(c.__name__ for c in CONVERTERS))}"
                )
            return function(layer, x, self)
        finally:
            self._where.pop()
            self._scopes.pop()

    # ------------------------------------------------------------ helpers
    def squeeze(self, x: str, axes: list[int]) -> str:
        """Remove size-1 ``axes``: an attribute before opset 13, an input from 13 on."""
        if self.opset >= 13:
            return self.node("Squeeze", [x, self.constant("axes", axes, np.int64)], "squeezed")
        return self.node("Squeeze", [x], "squeezed", axes=axes)


# --------------------------------------------------------------- the layers
@converter(Dense)
def _dense(layer: Dense, x: str, graph: Graph) -> str:
    weights = graph.constant("weights", layer.weights)  # (F, units): Y = X W + b
    if layer.biases is None:
        return graph.node("MatMul", [x, weights])
    biases = graph.constant("biases", layer.biases.reshape(-1))
    if len(layer._known("input_shape")) == 1:
        return graph.node("Gemm", [x, weights, biases])
    return graph.node("Add", [graph.node("MatMul", [x, weights]), biases])


@converter(Convolutional)
def _convolutional(layer: Convolutional, x: str, graph: Graph) -> str:
    inputs = [x, graph.constant("kernels", layer.kernels)]  # (O, C, K, K), as ONNX's W
    if layer.biases is not None:
        inputs.append(graph.constant("biases", layer.biases))
    k, s, p = layer.kernel_size, layer.stride, layer.padding
    return graph.node("Conv", inputs, kernel_shape=[k, k], strides=[s, s], pads=[p, p, p, p])


@converter(MaxPooling2D, AveragePooling2D)
def _pooling(layer: MaxPooling2D | AveragePooling2D, x: str, graph: Graph) -> str:
    # No padding and the floor rule (ceil_mode 0, the default): the windows that fit.
    op = "MaxPool" if isinstance(layer, MaxPooling2D) else "AveragePool"
    k, s = layer.pool_size, layer.stride
    return graph.node(op, [x], kernel_shape=[k, k], strides=[s, s])


@converter(Flatten)
def _flatten(layer: Flatten, x: str, graph: Graph) -> str:
    return graph.node("Flatten", [x], axis=1)


@converter(Dropout)
def _dropout(layer: Dropout, x: str, graph: Graph) -> str:
    return x  # the identity at inference


@converter(BatchNormalization, BatchNormalization2D)
def _batch_normalization(layer: BatchNormalization, x: str, graph: Graph) -> str:
    # This library's inference: gamma·(x − cache_m)/sqrt(cache_v + ε) + beta, per feature
    # (axis 1), which is ONNX's (X − mean)/sqrt(var + ε)·scale + B.
    inputs = [x] + [
        graph.constant(hint, value.reshape(-1))
        for hint, value in [
            ("gamma", layer.gamma),
            ("beta", layer.beta),
            ("running_mean", layer.cache_m),
            ("running_variance", layer.cache_v),
        ]
    ]
    return graph.node("BatchNormalization", inputs, epsilon=float(layer.epsilon))


@converter(Embedding)
def _embedding(layer: Embedding, x: str, graph: Graph) -> str:
    ids = x if x in graph.integer else graph.node("Cast", [x], "ids", to=7)  # 7: INT64
    return graph.node("Gather", [graph.constant("embeddings", layer.embeddings), ids], axis=0)


def _recurrent(layer: Any, x: str, graph: Graph, op: str, order: tuple[int, ...]) -> str:
    """An RNN, LSTM or GRU node on batch-first (N, T, F) sequences.

    The library keeps PyTorch's layout: ``input_weights`` (F, G·units) and
    ``recurrent_weights`` (units, G·units) multiply from the right, with the gate
    blocks in its order. ONNX wants W (1, G·units, F), R (1, G·units, units) and
    B (1, 2·G·units) = [input biases, recurrent biases], blocks in ONNX's order:
    ``order[k]`` is the library's block that goes to ONNX's block k.
    """
    units, gates = layer.units, layer.gates

    def onnx_blocks(a: Any) -> Any:
        a = to_host(a)
        blocks = a.reshape(*a.shape[:-1], gates, units)[..., list(order), :]
        return blocks.reshape(*a.shape[:-1], gates * units)

    recurrent_biases = getattr(layer, "recurrent_biases", None)
    if recurrent_biases is None:
        recurrent_biases = np.zeros(gates * units, dtype=np.float32)
    inputs = [
        graph.node("Transpose", [x], "time_major", perm=[1, 0, 2]),  # (T, N, F)
        graph.constant("W", onnx_blocks(layer.input_weights).T[None]),
        graph.constant("R", onnx_blocks(layer.recurrent_weights).T[None]),
        graph.constant(
            "B", np.concatenate([onnx_blocks(layer.biases), onnx_blocks(recurrent_biases)])[None]
        ),
    ]
    # No `layout=1` (batch-first, opset 14): onnxruntime refuses it, so Transposes instead.
    attributes: dict[str, Any] = {"hidden_size": units}
    if op == "GRU":  # r ⊙ (h U_n + c_n), as PyTorch and this library compute it
        attributes["linear_before_reset"] = 1
    if layer.return_sequences:
        y = graph.node(op, inputs, ["sequence"], **attributes)[0]  # (T, 1, N, units)
        return graph.node("Transpose", [graph.squeeze(y, [1])], "sequences", perm=[1, 0, 2])
    last = graph.node(op, inputs, [None, "last_state"], **attributes)[1]  # (1, N, units)
    return graph.squeeze(last, [0])


@converter(SimpleRNN)
def _simple_rnn(layer: SimpleRNN, x: str, graph: Graph) -> str:
    return _recurrent(layer, x, graph, "RNN", (0,))  # tanh, ONNX's default


@converter(LSTM)
def _lstm(layer: LSTM, x: str, graph: Graph) -> str:
    return _recurrent(layer, x, graph, "LSTM", (0, 3, 1, 2))  # i, f, g, o -> i, o, f, c


@converter(GRU)
def _gru(layer: GRU, x: str, graph: Graph) -> str:
    return _recurrent(layer, x, graph, "GRU", (1, 0, 2))  # r, z, n -> z, r, h


# ---------------------------------------------------------- the activations
@converter(ReLU)
def _relu(layer: ReLU, x: str, graph: Graph) -> str:
    return graph.node("Relu", [x])


@converter(Sigmoid)
def _sigmoid(layer: Sigmoid, x: str, graph: Graph) -> str:
    return graph.node("Sigmoid", [x])


@converter(Tanh)
def _tanh(layer: Tanh, x: str, graph: Graph) -> str:
    return graph.node("Tanh", [x])


@converter(PReLU)
def _prelu(layer: PReLU, x: str, graph: Graph) -> str:
    # A fixed slope (a hyper-parameter): LeakyRelu, x if x >= 0 else alpha·x.
    return graph.node("LeakyRelu", [x], alpha=float(layer.alpha))


@converter(Swish)
def _swish(layer: Swish, x: str, graph: Graph) -> str:
    return graph.node("Mul", [x, graph.node("Sigmoid", [x])], "swish")


@converter(Softmax)
def _softmax(layer: Softmax, x: str, graph: Graph) -> str:
    scale = np.float32(layer.temperature + layer.epsilon)  # divided in float32, as forward
    if scale != 1.0:
        x = graph.node("Div", [x, graph.constant("temperature", scale)], "scaled")
    if len(layer._known("input_shape")) > 1:
        # Before opset 13, Softmax flattens the axes from `axis` on into one.
        graph.require(13, "Softmax over axis 1 of more than 2 dimensions")
    return graph.node("Softmax", [x], axis=1)


# ------------------------------------------------------------------ export
def _build(model: Any, onnx: Any, opset: int) -> Graph:
    """Convert every layer of ``model`` for ``opset``; the graph, not yet a model."""
    graph = Graph(onnx, opset)
    x = "input"
    if model.layers[0].integer_input:
        graph.integer.add(x)
    for i, layer in enumerate(model.layers):
        x = graph.convert(layer, x, str(i))
    if model.output_activation is not None:
        activation = copy.copy(model.output_activation)  # built here, the model's left alone
        activation.build(model.output_shape)
        x = graph.convert(activation, x, "output activation")
    _name_output(graph, x)
    return graph


def _name_output(graph: Graph, x: str) -> None:
    """Make the last tensor the graph's ``output``: rename it, or add an Identity."""
    producers = [node for node in graph.nodes if x in node.output]
    if not producers:  # the input itself, or a weight
        graph.nodes.append(graph.onnx.helper.make_node("Identity", [x], ["output"], "output"))
        return
    for node in graph.nodes:
        for field in (node.input, node.output):
            for i, name in enumerate(field):
                if name == x:
                    field[i] = "output"


def _model_proto(model: Any, graph: Graph) -> Any:
    onnx = graph.onnx
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    element = onnx.TensorProto.INT64 if "input" in graph.integer else onnx.TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("input", element, ["batch", *model.input_shape])]
    outputs = [
        helper.make_tensor_value_info(
            "output", onnx.TensorProto.FLOAT, ["batch", *model.output_shape]
        )
    ]
    initializers = [numpy_helper.from_array(a, name) for name, a in graph.initializers.items()]
    body = helper.make_graph(graph.nodes, "mpneuralnetwork", inputs, outputs, initializers)
    opsets = [helper.make_opsetid("", graph.opset)]
    return helper.make_model(
        body,
        opset_imports=opsets,
        # The oldest IR version that holds the opset, so that older runtimes read the
        # file too; at least 4, where initializers need not be listed as graph inputs.
        ir_version=max(4, helper.find_min_ir_version_for(opsets)),
        producer_name="mpneuralnetwork",
        producer_version=__version__,
    )


def export(model: Any, path: str | os.PathLike[str], opset: int | None = None) -> Path:
    """Write the inference graph of ``model`` to an ONNX file.

    The file computes what ``model.predict`` does, output activation included, in
    float32: one input ``input`` (batch, *model.input_shape), float32, or int64 ids
    when the first layer is an `Embedding`; one output ``output``
    (batch, *model.output_shape); the batch size is free. The file is written to a
    temporary first and renamed in one step (as `save_model` does): an export that
    fails leaves any previous file intact.

    Args:
        model: The `Model` to export. Every layer must have a converter: the layers
            and activations of this library do, ``Activation(f, f_prime)`` and your
            own layer classes do not.
        path: Where to write (written as given; ``.onnx`` is the usual suffix).
        opset: The ``ai.onnx`` opset of the file. None: the lowest that covers every
            layer (7 for most models), at most the newest the installed ``onnx`` knows.

    Returns:
        The path written.

    Raises:
        ImportError: The ``onnx`` package is not installed
            (``pip install "mpneuralnetwork[onnx]"``).
        ValueError: A layer has no converter, or needs a newer opset than ``opset``
            (both name the layer and its position); nothing is written then.
    """
    onnx = _import_onnx()
    latest = int(onnx.defs.onnx_opset_version())
    if opset is None:
        opset = max(MIN_OPSET, _build(model, onnx, latest).needed)
    else:
        if not _checks.is_int(opset) or not MIN_OPSET <= opset <= latest:
            raise ValueError(
                f"mpneuralnetwork.onnx.export: opset must be an integer in [{MIN_OPSET}, "
                f"{latest}] (the installed onnx {onnx.__version__} knows up to {latest}); "
                f"got {opset!r}"
            )
        opset = int(opset)
    proto = _model_proto(model, _build(model, onnx, opset))
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    target = Path(path)
    write_atomically(target, lambda file: file.write(data), "export")
    return target
