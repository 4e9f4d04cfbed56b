"""ONNX export: every layer kind, checked by onnx and run in onnxruntime against predict.

Each model has random parameters and running statistics (none left at its initial
zeros or ones, so that a swapped gate block or a missing bias shows), is exported,
passes ``onnx.checker.check_model(full_check=True)``, and onnxruntime's outputs at
batch sizes 1 and 7 equal ``model.predict`` within rtol 1e-5 and atol 1e-6 (the
outputs are of order 1: the atol only covers values near zero, where float32 sums
taken in another order differ by a few ulps of the terms).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mpneuralnetwork as mpnn
from mpneuralnetwork import activations as activation_module
from mpneuralnetwork import layers as layer_module
from mpneuralnetwork import to_device, to_host
from mpneuralnetwork.activations import (
    ELU,
    GELU,
    SELU,
    Activation,
    LeakyReLU,
    PReLU,
    ReLU,
    Sigmoid,
    Softmax,
    Softplus,
    Swish,
    Tanh,
)
from mpneuralnetwork.layers import (
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
    Recurrent,
    Reshape,
    Residual,
    Sequential,
    SimpleRNN,
    UpSampling2D,
)
from mpneuralnetwork.losses import MSE, BinaryCrossEntropy, CategoricalCrossEntropy
from mpneuralnetwork.model import Model
from mpneuralnetwork.onnx import CONVERTERS, MIN_OPSET, Graph, export, find_converter

onnx = pytest.importorskip("onnx", reason="the onnx extra: pip install '.[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime runs the exported files")

RTOL, ATOL = 1e-5, 1e-6


def randomize(model: Model, seed: int = 0) -> Model:
    """Random parameters (normal, std 0.5) and running statistics (variances in [0.5, 2])."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for value, _ in layer.params.values():
            value[...] = to_device(rng.normal(0.0, 0.5, value.shape).astype(np.float32))
        for name, value in layer.state.items():
            low, high = (0.5, 2.0) if name == "cache_v" else (-1.0, 1.0)
            value[...] = to_device(rng.uniform(low, high, value.shape).astype(np.float32))
    return model


def inputs(model: Model, n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    first = model.layers[0]
    if isinstance(first, Embedding):
        return rng.integers(0, first.vocabulary_size, (n, *model.input_shape)).astype(np.int64)
    return rng.normal(0.0, 1.0, (n, *model.input_shape)).astype(np.float32)


def check_export(model: Model, path: Path, opset: int | None = None) -> Any:
    """Export, check the file, compare onnxruntime with predict at batch 1 and 7; the proto."""
    written = export(model, path, opset=opset)
    assert written == path
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 7):
        x = inputs(model, n, seed=n)
        (actual,) = session.run(None, {"input": x})
        expected = model.predict(x)
        assert actual.dtype == np.float32
        assert actual.shape == expected.shape == (n, *model.output_shape)
        np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)
    return proto


def op_types(proto: Any) -> set[str]:
    return {node.op_type for node in proto.graph.node}


# --------------------------------------------------------------- the models
def mlp() -> Model:
    layers = [Dense(8, input_size=5), BatchNormalization(), ReLU(), Dropout(0.3), Dense(3)]
    return Model(layers, CategoricalCrossEntropy())


def mlp_no_bias_binary() -> Model:
    layers = [Dense(6, input_size=4, no_bias=True), Tanh(), Dense(1)]
    return Model(layers, BinaryCrossEntropy())


def activations() -> Model:
    layers = [
        Dense(6, input_size=4),
        PReLU(alpha=0.2),
        Dense(6),
        Swish(),
        Dense(6),
        Sigmoid(),
        Dense(6),
        Tanh(),
        Dense(6),
        ReLU(),
        Dense(4),
        Softmax(temperature=0.5, epsilon=1e-3),  # kept: the loss is MSE
    ]
    return Model(layers, MSE())


def tempered_softmax_output() -> Model:
    # The output activation the loss implies, with its temperature.
    loss = CategoricalCrossEntropy(temperature=3.0)
    return Model([Dense(5, input_size=4), PReLU(alpha=-0.4), Dense(4)], loss)


MODELS: dict[str, Callable[[], Model]] = {
    "mlp": mlp,
    "mlp_no_bias_binary": mlp_no_bias_binary,
    "activations": activations,
    "tempered_softmax_output": tempered_softmax_output,
}


@pytest.mark.parametrize("name", MODELS)
def test_dense_models_and_activations(name: str, tmp_path: Path) -> None:
    model = randomize(MODELS[name]())
    proto = check_export(model, tmp_path / "model.onnx")
    assert proto.opset_import[0].version == MIN_OPSET
    assert "Dropout" not in op_types(proto)


def test_the_standard_operators_are_used(tmp_path: Path) -> None:
    proto = check_export(randomize(mlp()), tmp_path / "mlp.onnx")
    # The first Dense lost its bias to the batch normalization: a MatMul.
    assert op_types(proto) == {"MatMul", "BatchNormalization", "Relu", "Gemm", "Softmax"}
    proto = check_export(randomize(mlp_no_bias_binary()), tmp_path / "binary.onnx")
    assert op_types(proto) == {"MatMul", "Tanh", "Gemm", "Sigmoid"}
    proto = check_export(randomize(activations()), tmp_path / "activations.onnx")
    assert {"LeakyRelu", "Sigmoid", "Mul", "Tanh", "Relu", "Div", "Softmax"} <= op_types(proto)


@pytest.mark.parametrize(
    ("padding", "stride", "kernel", "normalize"),
    [
        ("valid", 1, 3, True),
        ("same", 1, 3, True),
        ("same", 2, 4, False),  # an even kernel: (K − 1)//2 = 1 zero each side
        (2, 2, 3, False),
        (1, 3, 2, True),  # a stride that does not divide the padded size
    ],
)
def test_convolution_paddings_and_strides(
    padding: str | int, stride: int, kernel: int, normalize: bool, tmp_path: Path
) -> None:
    layers: list[Layer] = [
        Convolutional(3, kernel, input_shape=(2, 9, 8), padding=padding, stride=stride)
    ]
    if normalize:  # the convolution then loses its bias (smart initialization)
        layers.append(BatchNormalization2D())
    layers += [ReLU(), Flatten(), Dense(4)]
    model = randomize(Model(layers, CategoricalCrossEntropy()))
    assert (layers[0].biases is None) == normalize
    proto = check_export(model, tmp_path / "conv.onnx")
    assert "Conv" in op_types(proto)


@pytest.mark.parametrize("pooling", [MaxPooling2D, AveragePooling2D])
@pytest.mark.parametrize(
    ("pool_size", "strides"),
    [(2, None), (3, 2), (2, 3), (3, 1)],  # exact, overlapping + a remainder, gaps, dense
)
def test_pooling(pooling: type, pool_size: int, strides: int | None, tmp_path: Path) -> None:
    layers = [
        Convolutional(3, 2, input_shape=(2, 10, 11)),
        pooling(pool_size, strides),
        Flatten(),
        Dense(3),
    ]
    model = randomize(Model(layers, MSE()))
    proto = check_export(model, tmp_path / "pool.onnx")
    assert pooling.__name__.replace("ing2D", "") in op_types(proto)  # MaxPool / AveragePool


@pytest.mark.parametrize("cls", [SimpleRNN, LSTM, GRU])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_recurrent(cls: type, return_sequences: bool, tmp_path: Path) -> None:
    layer = cls(5, input_shape=(6, 3), return_sequences=return_sequences)
    model = randomize(Model([layer], MSE()))  # every bias block random: a swap shows
    proto = check_export(model, tmp_path / "rnn.onnx")
    assert {"SimpleRNN": "RNN", "LSTM": "LSTM", "GRU": "GRU"}[cls.__name__] in op_types(proto)


@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_stacked_recurrent_layers_flattened(cls: type, tmp_path: Path) -> None:
    layers = [
        cls(4, input_shape=(5, 3), return_sequences=True),
        cls(3, return_sequences=True),
        Flatten(),
        Dense(2),
    ]
    check_export(randomize(Model(layers, CategoricalCrossEntropy())), tmp_path / "stack.onnx")


def test_embedding_takes_int64_ids(tmp_path: Path) -> None:
    layers = [Embedding(11, 4, input_length=5), LSTM(3), Dense(2)]
    model = randomize(Model(layers, CategoricalCrossEntropy()))
    proto = check_export(model, tmp_path / "embedding.onnx")
    (graph_input,) = proto.graph.input
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert "Gather" in op_types(proto)
    assert "Cast" not in op_types(proto)


def test_embedding_after_another_layer_casts_the_ids(tmp_path: Path) -> None:
    # Not first: the model casts its input to float32, and Embedding reads whole floats.
    first = Dropout(0.5)
    first.input_shape = (5,)
    model = randomize(Model([first, Embedding(7, 3), Flatten(), Dense(2)], MSE()))
    session_path = export(model, tmp_path / "cast.onnx")
    proto = onnx.load(str(session_path))
    onnx.checker.check_model(proto, full_check=True)
    assert "Cast" in op_types(proto)
    x = np.random.default_rng(0).integers(0, 7, (7, 5)).astype(np.float32)
    session = ort.InferenceSession(str(session_path), providers=["CPUExecutionProvider"])
    (actual,) = session.run(None, {"input": x})
    np.testing.assert_allclose(actual, model.predict(x), rtol=RTOL, atol=ATOL)


def test_a_trained_cnn(tmp_path: Path) -> None:
    # A few real training steps: batch statistics, dropout masks and Adam updates applied.
    mpnn.set_seed(3)
    layers = [
        Convolutional(4, 3, input_shape=(1, 8, 8), padding="same"),
        BatchNormalization2D(),
        ReLU(),
        MaxPooling2D(2),
        Flatten(),
        Dense(8),
        BatchNormalization(),
        Swish(),
        Dropout(0.3),
        Dense(3),
    ]
    model = Model(layers, CategoricalCrossEntropy())
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1.0, (48, 1, 8, 8)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 48)]
    model.train(x, y, epochs=2, batch_size=16, auto_evaluation=0.0, verbose=0)
    assert not np.allclose(to_host(layers[1].cache_m), 0.0)
    check_export(model, tmp_path / "cnn.onnx")


def test_inputs_and_outputs_are_named_and_the_batch_is_free(tmp_path: Path) -> None:
    proto = check_export(randomize(mlp()), tmp_path / "model.onnx")
    (graph_input,), (graph_output,) = proto.graph.input, proto.graph.output
    assert (graph_input.name, graph_output.name) == ("input", "output")
    for value, size in [(graph_input, 5), (graph_output, 3)]:
        tensor = value.type.tensor_type
        assert tensor.elem_type == onnx.TensorProto.FLOAT
        assert [d.dim_param or d.dim_value for d in tensor.shape.dim] == ["batch", size]
    names = [node.name for node in proto.graph.node]
    assert len(names) == len(set(names))
    assert {init.name for init in proto.graph.initializer}.isdisjoint({"input", "output"})


def test_dense_on_sequences_is_matmul_and_add(tmp_path: Path) -> None:
    model = randomize(Model([Dense(4, input_shape=(5, 3)), Tanh(), Dense(2)], MSE()))
    proto = check_export(model, tmp_path / "dense3d.onnx")
    assert op_types(proto) == {"MatMul", "Add", "Tanh"}
    assert proto.opset_import[0].version == MIN_OPSET


# ------------------------------------------------------------------- opsets
def sequence_softmax() -> Model:
    layers = [LSTM(4, input_shape=(3, 2), return_sequences=True), Softmax()]
    return Model(layers, MSE())  # a softmax over axis 1 of (N, T, units): opset 13


def test_the_default_opset_is_the_lowest_that_covers_the_layers(tmp_path: Path) -> None:
    proto = check_export(randomize(sequence_softmax()), tmp_path / "model.onnx")
    assert proto.opset_import[0].version == 13
    assert "Squeeze" in op_types(proto)  # its axes as an input from opset 13 on


@pytest.mark.parametrize("name", ["mlp", "activations"])
def test_newer_opsets(name: str, tmp_path: Path) -> None:
    model = randomize(MODELS[name]())
    for opset in (13, onnx.defs.onnx_opset_version()):
        proto = check_export(model, tmp_path / "model.onnx", opset=opset)
        assert proto.opset_import[0].version == opset


@pytest.mark.parametrize("cls", [SimpleRNN, LSTM, GRU])
def test_recurrent_at_the_newest_opset(cls: type, tmp_path: Path) -> None:
    model = randomize(Model([cls(3, input_shape=(4, 2), return_sequences=True)], MSE()))
    check_export(model, tmp_path / "rnn.onnx", opset=onnx.defs.onnx_opset_version())


def test_an_opset_too_low_for_a_layer_names_it(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    with pytest.raises(ValueError, match=r"layer 1 \(Softmax\) needs opset 13.*target opset is 12"):
        export(randomize(sequence_softmax()), path, opset=12)
    assert not path.exists()


@pytest.mark.parametrize("opset", [MIN_OPSET - 1, 10_000, 13.0, True, "13"])
def test_an_invalid_opset_is_refused(opset: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="opset must be an integer in"):
        export(randomize(mlp()), tmp_path / "model.onnx", opset=opset)


# ------------------------------------------------------------------- errors
class Double(Layer):
    """A user's own layer: 2·x."""

    def forward(self, input_batch: Any, training: bool = True) -> Any:
        self.input = self._check_input(input_batch)
        self.output = 2 * self.input
        return self.output


class MyDense(Dense):
    """A subclass may compute something else: it does not inherit Dense's converter."""


@pytest.mark.parametrize(
    ("layer", "name"),
    [
        (Activation(lambda x: x * x, lambda x: 2 * x), "Activation"),
        (Double(), "Double"),
        (MyDense(4), "MyDense"),
    ],
)
def test_a_layer_without_converter_is_refused_before_writing(
    layer: Layer, name: str, tmp_path: Path
) -> None:
    model = Model([Dense(4, input_size=3), layer, Dense(2)], MSE())
    path = tmp_path / "model.onnx"
    path.write_bytes(b"previous")
    with pytest.raises(ValueError, match=rf"no ONNX converter for {name} at layer 1 \({name}\)"):
        export(model, path)
    assert path.read_bytes() == b"previous"  # untouched, and no temporary left behind
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_an_export_overwrites_atomically(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"previous")
    path.chmod(0o640)
    export(randomize(mlp()), path)
    onnx.checker.check_model(onnx.load(str(path)))
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_without_onnx_export_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "mpneuralnetwork\[onnx\]"'):
        export(mlp(), "never-written.onnx")
    assert not Path("never-written.onnx").exists()


def test_the_module_imports_without_onnx() -> None:
    code = (
        "import sys; sys.modules['onnx'] = None\n"
        "import mpneuralnetwork, mpneuralnetwork.onnx\n"
        "assert 'onnx' not in {m for m, v in sys.modules.items() if v is not None}\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ------------------------------------------------------- the converter protocol
class Chain(Layer):
    """A container (as Sequential will be): its inner layers one after the other."""

    def __init__(self, layers: list[Layer]) -> None:
        super().__init__()
        self.layers = layers

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        shape = self.input_shape
        for layer in self.layers:
            layer.build(shape)
            shape = layer.output_shape
        self.output_shape = shape

    def forward(self, input_batch: Any, training: bool = True) -> Any:
        for layer in self.layers:
            input_batch = layer.forward(input_batch, training)
        self.output = input_batch
        return input_batch


def chain_to_onnx(layer: Chain, x: str, graph: Graph) -> str:
    for i, inner in enumerate(layer.layers):
        x = graph.convert(inner, x, str(i))
    return x


def test_a_container_converts_its_inner_layers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(CONVERTERS, Chain, chain_to_onnx)
    inner = [Dense(4, initialization="xavier"), Tanh(), Dense(4, initialization="xavier")]
    model = randomize(Model([Dense(4, input_size=3), Chain(inner), Chain([ReLU()])], MSE()))
    proto = check_export(model, tmp_path / "chain.onnx")
    # Each layer's tensors are named inside its scope: no clash between the two Dense.
    weights = sorted(init.name for init in proto.graph.initializer if "weights" in init.name)
    assert weights == ["0_dense/weights", "1_chain/0_dense/weights", "1_chain/2_dense/weights"]

    square = Activation(lambda x: x * x, lambda x: 2 * x)
    model = Model([Dense(4, input_size=3), Chain([Tanh(), square])], MSE())
    match = r"no ONNX converter for Activation at layer 1 \(Chain\) > layer 1 \(Activation\)"
    with pytest.raises(ValueError, match=match):
        export(model, tmp_path / "refused.onnx")


# ------------------------------------------------------------ the containers
def test_containers_nested_three_deep(tmp_path: Path) -> None:
    inner = Sequential([Dense(5), Tanh()])  # depth 3: Sequential > Concatenate > Residual > it
    block = Sequential(
        [
            Dense(6),
            Concatenate(
                [
                    [Dense(3), ELU()],
                    Residual([Dense(6), inner, Dense(6)], shortcut=[Dense(6)]),
                    Residual([Dense(6), ReLU()]),  # the identity shortcut
                ],
                axis=-1,
            ),
            Dropout(0.2),
        ]
    )
    model = randomize(Model([Dense(6, input_size=4), block, Dense(3)], CategoricalCrossEntropy()))
    proto = check_export(model, tmp_path / "nested.onnx")
    assert {"Concat", "Add"} <= op_types(proto)
    (concat,) = [node for node in proto.graph.node if node.op_type == "Concat"]
    assert onnx.helper.get_attribute_value(concat.attribute[0]) == 1  # -1 of (N, F)
    names = {init.name for init in proto.graph.initializer}
    assert "1_sequential/1_concatenate/1_sequential/0_residual/1_sequential/0_dense/weights" in (
        names
    )


def test_a_resnet_like_model(tmp_path: Path) -> None:
    layers = [
        Convolutional(4, 3, input_shape=(2, 8, 8), padding="same"),
        BatchNormalization2D(),
        ReLU(),
        Residual(  # (4, 8, 8) -> (6, 4, 4): a projection shortcut
            [
                Convolutional(6, 3, stride=2, padding=1),
                BatchNormalization2D(),
                ReLU(),
                Convolutional(6, 3, padding="same"),
                BatchNormalization2D(),
            ],
            shortcut=[Convolutional(6, 1, stride=2), BatchNormalization2D()],
        ),
        ReLU(),
        Residual([Convolutional(6, 3, padding="same"), BatchNormalization2D()]),
        ReLU(),
        GlobalAveragePooling2D(),
        Dense(3),
    ]
    model = randomize(Model(layers, CategoricalCrossEntropy()))
    proto = check_export(model, tmp_path / "resnet.onnx")
    assert {"Conv", "BatchNormalization", "Add", "GlobalAveragePool"} <= op_types(proto)
    assert proto.opset_import[0].version == MIN_OPSET


def test_an_inception_like_concatenate(tmp_path: Path) -> None:
    inception = Concatenate(
        [
            [Convolutional(2, 1), ReLU()],
            [Convolutional(2, 1), ReLU(), Convolutional(3, 3, padding="same"), ReLU()],
            [Convolutional(1, 5, padding="same"), LeakyReLU(0.1)],
            Dropout(0.1),  # the input itself, a branch of one layer
        ],
        axis=1,
    )
    layers = [Convolutional(3, 3, input_shape=(2, 7, 7), padding="same"), inception]
    layers += [BatchNormalization2D(), MaxPooling2D(2), Flatten(), Dense(4)]
    model = randomize(Model(layers, CategoricalCrossEntropy()))
    assert model.layers[1].output_shape == (9, 7, 7)
    proto = check_export(model, tmp_path / "inception.onnx")
    assert "Concat" in op_types(proto)


class Block(Sequential):
    """A user's container: a Sequential that builds its own layers."""

    def __init__(self, units: int) -> None:
        super().__init__([Dense(units), GELU(), Dense(units)])


def test_a_container_subclass_converts_through_its_base(tmp_path: Path) -> None:
    assert Block not in CONVERTERS and find_converter(Block) is CONVERTERS[Sequential]
    assert find_converter(MyDense) is None  # a leaf's subclass: no fallback
    model = randomize(Model([Dense(5, input_size=3), Block(5), Block(4), Dense(2)], MSE()))
    proto = check_export(model, tmp_path / "block.onnx")
    assert any(init.name.startswith("1_block/2_dense/") for init in proto.graph.initializer)

    class Holder(Container):  # a container of the user's own: no converter to fall to
        def __init__(self, layers: list[Layer]) -> None:
            self.layers = layers
            super().__init__()

        @property
        def sequences(self) -> list[list[Layer]]:
            return [self.layers]

    assert find_converter(Holder) is None


# ---------------------------------------------------- pooling and shapes
@pytest.mark.parametrize("opset", [None, 18])  # ReduceMean's axes: an attribute, an input
def test_global_average_pooling_1d(opset: int | None, tmp_path: Path) -> None:
    layers = [Dense(4, input_shape=(6, 3)), GlobalAveragePooling1D(), Dense(2)]
    model = randomize(Model(layers, CategoricalCrossEntropy()))
    proto = check_export(model, tmp_path / "gap1d.onnx", opset=opset)
    assert "ReduceMean" in op_types(proto)
    assert proto.opset_import[0].version == (opset or MIN_OPSET)


@pytest.mark.parametrize("target", [(3, -1, 2), (-1,), (2, 2, 3)])
def test_reshape(target: tuple[int, ...], tmp_path: Path) -> None:
    # Reshape last: the output's shape is checked.
    layers = [Dense(12, input_size=5), Reshape(target), Tanh()]
    proto = check_export(randomize(Model(layers, MSE())), tmp_path / "reshape.onnx")
    assert "Reshape" in op_types(proto)
    # Images for a convolution, whose result depends on the layout.
    layers = [Dense(12, input_size=5), Reshape((1, 3, -1)), Convolutional(2, 2), Flatten()]
    check_export(randomize(Model([*layers, Dense(3)], MSE())), tmp_path / "images.onnx")


@pytest.mark.parametrize("size", [2, (2, 3), (1, 2), 1])
def test_up_sampling_2d_is_exact(size: Any, tmp_path: Path) -> None:
    model = Model([Reshape((2, 3, 4), input_shape=(24,)), UpSampling2D(size)], MSE())
    path = export(model, tmp_path / "up.onnx")
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 7):
        x = inputs(model, n, seed=n)
        (actual,) = session.run(None, {"input": x})
        np.testing.assert_array_equal(actual, model.predict(x))  # copies: exactly equal
    # Then in a CNN, with random parameters, up to the usual rounding.
    layers = [Convolutional(2, 3, input_shape=(1, 5, 4)), UpSampling2D(size), ReLU()]
    layers += [Convolutional(2, 2), Flatten(), Dense(3)]
    check_export(randomize(Model(layers, MSE())), tmp_path / "up-cnn.onnx")


# ------------------------------------------------------------ the activations
def more_activations() -> Model:
    layers: list[Layer] = [Dense(6, input_size=4)]
    for activation in [
        LeakyReLU(0.1),
        LeakyReLU(-0.3),
        ELU(0.7),
        SELU(),
        Softplus(),
        Softplus(beta=2.0, threshold=1.5),  # beta·x > threshold for about a quarter
        Softplus(beta=0.5, threshold=100.0),
        GELU(),
        GELU(approximate="tanh"),
    ]:
        layers += [activation, Dense(6)]
    return Model(layers, MSE())


def test_leaky_relu_elu_selu_softplus_gelu(tmp_path: Path) -> None:
    model = randomize(more_activations())
    proto = check_export(model, tmp_path / "default.onnx")
    assert proto.opset_import[0].version == 9  # Erf and Where
    assert {"LeakyRelu", "Elu", "Selu", "Softplus", "Where", "Erf", "Tanh"} <= op_types(proto)
    assert "Gelu" not in op_types(proto)
    for opset in (13, 19, 20, onnx.defs.onnx_opset_version()):
        proto = check_export(model, tmp_path / f"{opset}.onnx", opset=opset)
        assert ("Gelu" in op_types(proto)) == (opset >= 20)
    with pytest.raises(
        ValueError, match=r"layer 9 \(Softplus\) needs opset 9 or newer \(Where\).*is 8"
    ):
        export(model, tmp_path / "8.onnx", opset=8)


def test_gelu_tanh_alone_needs_no_newer_opset(tmp_path: Path) -> None:
    model = randomize(Model([Dense(5, input_size=3), GELU("tanh"), Dense(2)], MSE()))
    proto = check_export(model, tmp_path / "gelu.onnx")
    assert proto.opset_import[0].version == MIN_OPSET


# ------------------------------------------------- sequences and attention
def test_layer_normalization_needs_opset_17(tmp_path: Path) -> None:
    layers = [Dense(6, input_shape=(4, 3)), LayerNormalization(epsilon=1e-3), Dense(2)]
    model = randomize(Model(layers, MSE()))
    proto = check_export(model, tmp_path / "ln.onnx")
    assert proto.opset_import[0].version == 17
    assert "LayerNormalization" in op_types(proto)
    path = tmp_path / "ln16.onnx"
    match = r"layer 1 \(LayerNormalization\) needs opset 17.*target opset is 16"
    with pytest.raises(ValueError, match=match):
        export(model, path, opset=16)
    assert not path.exists()
    flat = randomize(Model([Dense(6, input_size=3), LayerNormalization(), Dense(2)], MSE()))
    check_export(flat, tmp_path / "flat.onnx")


def test_position_embedding_adds_the_first_rows(tmp_path: Path) -> None:
    layers = [Dense(4, input_shape=(5, 3)), PositionEmbedding(9), Flatten(), Dense(2)]
    model = randomize(Model(layers, MSE()))
    proto = check_export(model, tmp_path / "positions.onnx")
    (table,) = [init for init in proto.graph.initializer if "embeddings" in init.name]
    np.testing.assert_array_equal(
        onnx.numpy_helper.to_array(table), to_host(layers[1].embeddings)[:5]
    )


@pytest.mark.parametrize(
    ("heads", "causal", "steps"),
    [(1, False, 6), (4, False, 6), (2, True, 6), (4, True, 5), (1, True, 1), (4, False, 1)],
)
def test_multi_head_attention(heads: int, causal: bool, steps: int, tmp_path: Path) -> None:
    attention = MultiHeadAttention(heads, causal=causal, dropout=0.3)
    model = randomize(Model([Dense(8, input_shape=(steps, 3)), attention], MSE()))
    proto = check_export(model, tmp_path / "attention.onnx")
    assert {"MatMul", "Reshape", "Transpose", "Softmax"} <= op_types(proto)
    assert "Dropout" not in op_types(proto)
    assert proto.opset_import[0].version == MIN_OPSET


def test_a_transformer_encoder_stack(tmp_path: Path) -> None:
    layers = [
        Embedding(20, 16, input_length=6),
        PositionEmbedding(10),
        Residual([LayerNormalization(), MultiHeadAttention(4), Dropout(0.1)]),
        Residual([LayerNormalization(), Dense(32), GELU(), Dropout(0.1), Dense(16), Dropout(0.1)]),
        GlobalAveragePooling1D(),
        Dense(10),
    ]
    model = randomize(Model(layers, CategoricalCrossEntropy()))
    proto = check_export(model, tmp_path / "encoder.onnx")
    assert proto.opset_import[0].version == 17
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    proto = check_export(model, tmp_path / "encoder-new.onnx", opset=onnx.defs.onnx_opset_version())
    assert {"Gelu", "LayerNormalization", "Softmax", "ReduceMean"} <= op_types(proto)


# ------------------------------------------------------------- completeness
#: The public classes that have no converter on purpose: bases, and the plain
#: Activation whose functions are Python code.
REFUSED = {Layer, Activation, Container, Recurrent}


def public_layer_classes() -> list[type]:
    found = []
    for module in (layer_module, activation_module):
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, type) and issubclass(value, Layer):
                found.append(value)
    return found


@pytest.mark.parametrize("cls", public_layer_classes(), ids=lambda cls: cls.__name__)
def test_every_public_layer_converts_or_is_refused_on_purpose(cls: type) -> None:
    assert (find_converter(cls) is None) == (cls in REFUSED), (
        f"{cls.__name__}: add an ONNX converter to mpneuralnetwork.onnx (or list it as refused)"
    )
