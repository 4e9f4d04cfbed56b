"""Export a trained `Model` to ONNX, for inference in onnxruntime and other runtimes.

The file holds the inference graph of ``model.predict``: the layers in inference mode
(Dropout left out, batch normalizations with their running statistics), then the
output activation the loss implies, in float32, with the weights as initializers.

How a layer becomes ONNX nodes (the protocol, for adding a layer):

- `CONVERTERS` maps a layer class (the exact class, not its subclasses: a subclass
  may compute something else; only a container's subclass falls back, see
  `find_converter`) to its converter, a function
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
  converter, opset too low) then name the inner layer and where it sits. `Sequential`
  chains its layers' subgraphs, `Residual` adds F's subgraph to the shortcut's (or to
  its input), `Concatenate` joins its branches' subgraphs with a ``Concat``.
- A converter that emits other operators at other opsets must require the same
  opset at every target: the default opset is the ``needed`` of a trial conversion at
  the newest opset (GELU: ``Gelu`` from opset 20, ``Erf`` arithmetic before, opset 9
  required for both).

Every public layer and activation has a converter but the bases (`Layer`,
`Container`, `Recurrent`) and the plain ``Activation(f, f_prime)``, whose functions
are Python code; ``tests/test_onnx.py`` enumerates the ``__all__`` lists to keep it so.
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
from .activations import (
    ELU,
    GELU,
    SELU,
    LeakyReLU,
    PReLU,
    ReLU,
    Sigmoid,
    Softmax,
    Softplus,
    Swish,
    Tanh,
)
from .archive import write_atomically
from .backend import to_host
from .layers import (
    GRU,
    LSTM,
    AveragePooling2D,
    BatchNormalization,
    BatchNormalization2D,
    Concatenate,
    Container,
    Convolutional,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    Layer,
    LayerNormalization,
    MaxPooling2D,
    MultiHeadAttention,
    PositionEmbedding,
    Reshape,
    Residual,
    Sequential,
    SimpleRNN,
    UpSampling2D,
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


def find_converter(cls: type) -> Converter | None:
    """The converter of the layer class ``cls``, or None.

    A leaf layer needs a converter for its exact class: a subclass may compute
    something else. A container's subclass (a ``TransformerEncoder(Sequential)``) holds
    its layers as its base does and computes what its base computes on them: it
    converts through the converter of its nearest registered container base.
    """
    function = CONVERTERS.get(cls)
    if function is None and issubclass(cls, Container):
        for base in cls.__mro__[1:]:
            if base in CONVERTERS and issubclass(base, Container):
                return CONVERTERS[base]
    return function


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
            function = find_converter(cls)
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

    def reshape(self, x: str, shape: Sequence[int], hint: str = "reshaped") -> str:
        """Reshape ``x`` to ``shape`` (0: the input's size on that axis, -1: inferred)."""
        return self.node("Reshape", [x, self.constant("shape", list(shape), np.int64)], hint)

    def reduce_mean(self, x: str, axes: list[int]) -> str:
        """The mean over ``axes``, dropped: an attribute before opset 18, an input from 18 on."""
        if self.opset >= 18:
            axes_name = self.constant("axes", axes, np.int64)
            return self.node("ReduceMean", [x, axes_name], "mean", keepdims=0)
        return self.node("ReduceMean", [x], "mean", axes=axes, keepdims=0)


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


@converter(GlobalAveragePooling1D)
def _global_average_pooling_1d(layer: GlobalAveragePooling1D, x: str, graph: Graph) -> str:
    return graph.reduce_mean(x, [1])  # (N, T, F) -> (N, F)


@converter(GlobalAveragePooling2D)
def _global_average_pooling_2d(layer: GlobalAveragePooling2D, x: str, graph: Graph) -> str:
    pooled = graph.node("GlobalAveragePool", [x], "pooled")  # (N, C, 1, 1)
    return graph.node("Flatten", [pooled], axis=1)


@converter(Reshape)
def _reshape(layer: Reshape, x: str, graph: Graph) -> str:
    # The resolved shape (its -1 inferred at build); 0 keeps the batch size.
    return graph.reshape(x, [0, *layer._known("output_shape")])


@converter(UpSampling2D)
def _up_sampling_2d(layer: UpSampling2D, x: str, graph: Graph) -> str:
    # out[n, c, i, j] = x[n, c, i // sh, j // sw], exactly: (N, C, H, 1, W, 1) broadcast
    # by Expand to (N, C, H, sh, W, sw), then merged to (N, C, H·sh, W·sw).
    graph.require(8, "Expand")
    c, h, w = layer._known("input_shape")
    sh, sw = layer._factors
    blocks = graph.reshape(x, [0, c, h, 1, w, 1], "pixels")
    factors = graph.constant("factors", [1, 1, 1, sh, 1, sw], np.int64)
    expanded = graph.node("Expand", [blocks, factors], "blocks")
    return graph.reshape(expanded, [0, c, h * sh, w * sw], "upsampled")


@converter(LayerNormalization)
def _layer_normalization(layer: LayerNormalization, x: str, graph: Graph) -> str:
    graph.require(17, "LayerNormalization")
    scale = graph.constant("gamma", layer.gamma.reshape(-1))
    bias = graph.constant("beta", layer.beta.reshape(-1))
    return graph.node("LayerNormalization", [x, scale, bias], axis=-1, epsilon=float(layer.epsilon))


@converter(PositionEmbedding)
def _position_embedding(layer: PositionEmbedding, x: str, graph: Graph) -> str:
    # T is fixed when the layer is built: rows 0..T-1 of the table, as an initializer.
    steps = layer._known("input_shape")[0]
    table = graph.constant("embeddings", to_host(layer.embeddings)[:steps])
    return graph.node("Add", [x, table], "positioned")


@converter(MultiHeadAttention)
def _multi_head_attention(layer: MultiHeadAttention, x: str, graph: Graph) -> str:
    """Self-attention from standard operators (dropout is the identity at inference).

    Q, K, V = X·W + b per column block, each split into heads (N, H, T, d) by Reshape
    and Transpose (K straight to (N, H, d, T)); Q scaled by 1/√d as the layer does;
    softmax(Q·Kᵀ [+ causal mask]) over the keys (the last axis, which every opset's
    Softmax takes as such); the context merged back to (N, T, D) and projected.
    """
    steps, dim = layer._known("input_shape")
    heads = layer.num_heads
    head_dim = dim // heads
    weights, biases = to_host(layer.input_weights), to_host(layer.input_biases).reshape(-1)
    blocks = []
    for k, (role, perm) in enumerate(
        [("query", [0, 2, 1, 3]), ("key", [0, 2, 3, 1]), ("value", [0, 2, 1, 3])]
    ):
        columns = slice(k * dim, (k + 1) * dim)
        projected = graph.node(
            "MatMul", [x, graph.constant(f"{role}_weights", weights[:, columns])], role
        )
        projected = graph.node(
            "Add", [projected, graph.constant(f"{role}_biases", biases[columns])], role
        )
        split = graph.reshape(projected, [0, steps, heads, head_dim], f"{role}_heads")
        blocks.append(graph.node("Transpose", [split], f"{role}_heads", perm=perm))
    queries, keys, values = blocks
    scale = graph.constant("scale", np.float32(1.0 / np.sqrt(head_dim)))
    queries = graph.node("Mul", [queries, scale], "scaled_queries")
    scores = graph.node("MatMul", [queries, keys], "scores")  # (N, H, T, T)
    if layer.causal:  # −inf on the keys after each query: their weights are 0
        above = np.triu(np.ones((steps, steps), dtype=bool), 1)
        mask = graph.constant("causal_mask", np.where(above, -np.inf, 0.0))
        scores = graph.node("Add", [scores, mask], "masked_scores")
    attention = graph.node("Softmax", [scores], "attention", axis=3)
    context = graph.node("MatMul", [attention, values], "context")  # (N, H, T, d)
    merged = graph.node("Transpose", [context], "merged", perm=[0, 2, 1, 3])
    merged = graph.reshape(merged, [0, steps, dim], "merged")
    out = graph.node("MatMul", [merged, graph.constant("output_weights", layer.output_weights)])
    biases_out = graph.constant("output_biases", to_host(layer.output_biases).reshape(-1))
    return graph.node("Add", [out, biases_out], "attended")


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


# ------------------------------------------------------------- the containers
@converter(Sequential)
def _sequential(layer: Sequential, x: str, graph: Graph) -> str:
    for j, inner in enumerate(layer.layers):
        x = graph.convert(inner, x, str(j))
    return x


@converter(Residual)
def _residual(layer: Residual, x: str, graph: Graph) -> str:
    # F(x) + S(x); the inner positions as the layer numbers them (shortcut after F).
    branch = skip = x
    for j, inner in enumerate(layer.layers):
        branch = graph.convert(inner, branch, str(j))
    for j, inner in enumerate(layer.shortcut, start=len(layer.layers)):
        skip = graph.convert(inner, skip, str(j))
    return graph.node("Add", [branch, skip], "sum")


@converter(Concatenate)
def _concatenate(layer: Concatenate, x: str, graph: Graph) -> str:
    outputs = [graph.convert(branch, x, str(j)) for j, branch in enumerate(layer.branches)]
    ndim = len(layer._known("output_shape")) + 1  # the batch axis included
    axis = layer.axis if layer.axis > 0 else ndim + layer.axis  # negative from opset 11 only
    return graph.node("Concat", outputs, "joined", axis=axis)


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


@converter(LeakyReLU)
def _leaky_relu(layer: LeakyReLU, x: str, graph: Graph) -> str:
    return graph.node("LeakyRelu", [x], alpha=float(layer.negative_slope))


@converter(ELU)
def _elu(layer: ELU, x: str, graph: Graph) -> str:
    return graph.node("Elu", [x], alpha=float(layer.alpha))


@converter(SELU)
def _selu(layer: SELU, x: str, graph: Graph) -> str:
    return graph.node("Selu", [x], alpha=float(SELU.ALPHA), gamma=float(SELU.SCALE))


@converter(Softplus)
def _softplus(layer: Softplus, x: str, graph: Graph) -> str:
    # ONNX's Softplus has no beta nor threshold: Where(beta·x > threshold, x,
    # Softplus(beta·x)/beta), beta·x and the division in float32 as the layer computes.
    graph.require(9, "Where")
    beta = np.float32(layer.beta)
    z = x if beta == 1 else graph.node("Mul", [x, graph.constant("beta", beta)], "beta_x")
    soft = graph.node("Softplus", [z], "soft")
    if beta != 1:
        soft = graph.node("Div", [soft, graph.constant("beta", beta)], "soft")
    linear = graph.node("Greater", [z, graph.constant("threshold", layer.threshold)], "linear")
    return graph.node("Where", [linear, x, soft], "softplus")


@converter(GELU)
def _gelu(layer: GELU, x: str, graph: Graph) -> str:
    # The Gelu operator from opset 20 on; before, the same function from Erf or Tanh.
    # The exact form requires opset 9 (Erf) at any target, so the default opset (chosen
    # by a trial at the newest) stays the lowest that builds.
    exact = layer.approximate == "none"
    if exact:
        graph.require(9, "Erf")
    if graph.opset >= 20:
        return graph.node("Gelu", [x], "gelu", approximate=layer.approximate)
    if exact:  # x·Φ(x), Φ(x) = ½·(1 + erf(x/√2))
        scaled = graph.node("Mul", [x, graph.constant("inv_sqrt2", np.sqrt(0.5))], "scaled")
        plus_one = graph.node("Add", [graph.node("Erf", [scaled]), graph.constant("one", 1.0)])
    else:  # ½·x·(1 + tanh(u)), u = √(2/π)·(x + 0.044715·x³)
        cube = graph.node("Mul", [graph.node("Mul", [x, x], "square"), x], "cube")
        cubic = graph.node("Mul", [cube, graph.constant("c", 0.044715)], "cubic")
        inner = graph.node("Add", [x, cubic], "inner")
        u = graph.node("Mul", [inner, graph.constant("sqrt_2_over_pi", np.sqrt(2 / np.pi))], "u")
        plus_one = graph.node("Add", [graph.node("Tanh", [u]), graph.constant("one", 1.0)])
    cdf = graph.node("Mul", [plus_one, graph.constant("half", 0.5)], "cdf")
    return graph.node("Mul", [x, cdf], "gelu")


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
            and activations of this library do (containers too, and your subclasses
            of them), ``Activation(f, f_prime)`` and your own layer classes do not.
        path: Where to write (written as given; ``.onnx`` is the usual suffix).
        opset: The ``ai.onnx`` opset of the file. None: the lowest that covers every
            layer (7 for most models; 8 with UpSampling2D, 9 with Softplus or the exact
            GELU, 13 with a Softmax over sequences, 17 with LayerNormalization), at
            most the newest the installed ``onnx`` knows.

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
