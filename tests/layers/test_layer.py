"""The Layer base class and what every layer shares: config, params, state, shapes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mpneuralnetwork import to_device, to_host
from mpneuralnetwork.activations import GELU, PReLU, ReLU, Sigmoid, Softmax, Swish, Tanh
from mpneuralnetwork.layers import (
    LSTM,
    AveragePooling2D,
    BatchNormalization,
    BatchNormalization2D,
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
    UpSampling2D,
)


# ============================================================================== the base
def test_base_layer_defaults():
    layer = Layer()
    assert layer.params == {}
    assert layer.state == {}
    assert layer.get_config() == {"type": "Layer"}
    assert layer.input_shape is None and layer.output_shape is None
    assert layer.input is None and layer.output is None
    assert type(layer)(**{k: v for k, v in layer.get_config().items() if k != "type"}).params == {}


def test_base_layer_int_shapes_are_1_tuples_and_sizes():
    layer = Layer(3, 4)
    assert (layer.output_shape, layer.input_shape) == ((3,), (4,))
    assert (layer.input_size, layer.output_size) == (4, 3)
    shaped = Layer(output_shape=(2, 3, 4), input_shape=(5, 6))
    assert (shaped.input_size, shaped.output_size) == (30, 24)


def test_base_layer_build():
    layer = Layer()
    layer.build(5)
    assert layer.input_shape == (5,) and layer.output_shape == (5,)
    layer = Layer(output_shape=2)
    layer.build((3, 4))
    assert layer.input_shape == (3, 4) and layer.output_shape == (2,)


def test_base_layer_sizes_need_shapes():
    with pytest.raises(ValueError, match="input_shape"):
        _ = Layer().input_size
    with pytest.raises(ValueError, match="output_shape"):
        _ = Layer().output_size


def test_base_layer_forward_backward_not_implemented():
    with pytest.raises(NotImplementedError):
        Layer().forward(to_device(np.zeros((1, 2))))
    with pytest.raises(NotImplementedError):
        Layer().backward(to_device(np.zeros((1, 2))))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"output_shape": 0}, "output_shape"),
        ({"input_shape": -1}, "input_shape"),
        ({"input_shape": (2, 0)}, "input_shape"),
        ({"input_shape": ()}, "input_shape"),
        ({"output_shape": 2.5}, "output_shape"),
        ({"output_shape": "3"}, "output_shape"),
        ({"input_shape": (2, True)}, "input_shape"),
    ],
)
def test_base_layer_bad_shapes(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Layer(**kwargs)


# ==================================================================== every layer's config
def _examples():
    """(layer factory, input shape to build with or None)."""
    return [
        (lambda: Dense(3, 4, "he"), None),
        (lambda: Dense(3), (4,)),
        (lambda: Dense(2, 5, "xavier", no_bias=True), None),
        (lambda: Dense(2, initialization="he", no_bias=True), (6,)),
        (lambda: Dropout(0.25), (3, 4)),
        (lambda: Dropout(), (5,)),
        (lambda: BatchNormalization(0.8, 1e-5), (5,)),
        (lambda: BatchNormalization2D(0.95, 1e-3), (2, 4, 5)),
        (lambda: Convolutional(4, 3, (2, 7, 9), "he"), None),
        (lambda: Convolutional(4, 3, (2, 7, 9), "xavier", True, "same", 2), None),
        (lambda: Convolutional(2, 5, initialization="he", padding=2, stride=3), (1, 8, 6)),
        (lambda: Convolutional(2, 2, padding=1), (3, 4, 4)),
        (lambda: MaxPooling2D(3, strides=1), (2, 7, 9)),
        (lambda: MaxPooling2D(), (2, 7, 9)),
        (lambda: AveragePooling2D(3), (2, 7, 9)),
        (lambda: AveragePooling2D(2, strides=3), (2, 7, 9)),
        (lambda: Flatten(), (2, 3, 4)),
        (lambda: Reshape((4, -1)), (2, 3, 4)),
        (lambda: Reshape([6, 4], input_shape=(2, 3, 4)), None),
        (lambda: UpSampling2D(), (2, 3, 4)),
        (lambda: UpSampling2D((3, 1)), (2, 3, 4)),
        (lambda: Tanh(), (4,)),
        (lambda: Sigmoid(), (4,)),
        (lambda: ReLU(), (2, 3)),
        (lambda: PReLU(0.2), (4,)),
        (lambda: PReLU(), (4,)),
        (lambda: Swish(), (4,)),
        (lambda: Softmax(2.0, 1e-6), (5,)),
        (lambda: Softmax(), (5,)),
        (lambda: Layer(), (3,)),
        (lambda: Dense(3, input_shape=(4, 5), initialization="he"), None),
        (lambda: Dense(3), (4, 5)),
        (lambda: LayerNormalization(1e-3), (4, 5)),
        (lambda: MultiHeadAttention(2, causal=True, dropout=0.25), (3, 4)),
        (lambda: PositionEmbedding(6), (3, 4)),
        (lambda: GlobalAveragePooling1D(), (3, 4)),
        (lambda: GlobalAveragePooling2D(), (2, 3, 4)),
        (lambda: GELU("tanh"), (4,)),
    ]


EXAMPLES = _examples()
IDS = [repr(make()) for make, _ in EXAMPLES]


def _build(layer, input_shape):
    if input_shape is not None:
        layer.build(input_shape)
    return layer


@pytest.mark.parametrize(("make", "input_shape"), EXAMPLES, ids=IDS)
@pytest.mark.parametrize("through_json", [False, True])
def test_config_round_trip(make, input_shape, through_json):
    layer = _build(make(), input_shape)
    config = layer.get_config()
    assert config["type"] == type(layer).__name__
    if through_json:  # what save_model stores
        config = json.loads(json.dumps(config))
    rebuilt = type(layer)(**{k: v for k, v in config.items() if k != "type"})
    if input_shape is not None:
        rebuilt.build(input_shape)
    assert rebuilt.get_config() == layer.get_config()
    assert rebuilt.input_shape == layer.input_shape
    assert rebuilt.output_shape == layer.output_shape
    assert set(rebuilt.params) == set(layer.params)
    for name, (value, grad) in layer.params.items():
        assert rebuilt.params[name][0].shape == value.shape
        assert rebuilt.params[name][1].shape == grad.shape
    assert {k: v.shape for k, v in rebuilt.state.items()} == {
        k: v.shape for k, v in layer.state.items()
    }


def test_config_keys():
    assert Dense(3, 4, "he", True).get_config() == {
        "type": "Dense",
        "output_size": 3,
        "input_size": 4,
        "initialization": "he",
        "no_bias": True,
    }
    assert Dense(3).get_config()["input_size"] is None
    assert Convolutional(4, 3, (2, 7, 9), "xavier", True, "same", 2).get_config() == {
        "type": "Convolutional",
        "output_depth": 4,
        "kernel_size": 3,
        "input_shape": (2, 7, 9),
        "initialization": "xavier",
        "no_bias": True,
        "stride": 2,
        "padding": "same",
    }
    assert Dropout(0.25).get_config() == {"type": "Dropout", "probability": 0.25}
    assert BatchNormalization(0.8, 1e-5).get_config() == {
        "type": "BatchNormalization",
        "momentum": 0.8,
        "epsilon": 1e-5,
    }
    assert BatchNormalization2D().get_config() == {
        "type": "BatchNormalization2D",
        "momentum": 0.9,
        "epsilon": 1e-8,
    }
    assert Flatten().get_config() == {"type": "Flatten"}
    assert PReLU(0.2).get_config() == {"type": "PReLU", "alpha": 0.2}
    assert Softmax(2.0, 1e-6).get_config() == {
        "type": "Softmax",
        "temperature": 2.0,
        "epsilon": 1e-6,
    }
    for cls in (Tanh, Sigmoid, ReLU, Swish):
        assert cls().get_config() == {"type": cls.__name__}


# ============================================================================ params / state
PARAMETRIC = [
    (lambda: Dense(3, 4, "he"), None),
    (lambda: Dense(3, 4, "he", no_bias=True), None),
    (lambda: Convolutional(2, 3, (2, 5, 5), "he"), None),
    (lambda: Convolutional(2, 3, (2, 5, 5), "he", no_bias=True), None),
    (lambda: BatchNormalization(), 4),
    (lambda: BatchNormalization2D(), (3, 4, 4)),
]


@pytest.mark.parametrize(("make", "input_shape"), PARAMETRIC)
def test_load_params_keeps_array_identity(make, input_shape):
    layer = _build(make(), input_shape)
    before = {name: value for name, (value, _) in layer.params.items()}
    assert before
    rng = np.random.default_rng(0)
    new = {name: rng.standard_normal(v.shape).astype(np.float32) for name, v in before.items()}
    layer.load_params(new)
    for name, value in before.items():
        assert layer.params[name][0] is value
        np.testing.assert_array_equal(to_host(layer.params[name][0]), new[name])
    # the values were copied: changing the source later changes nothing
    saved = {name: array.copy() for name, array in new.items()}
    for array in new.values():
        array += 1
    for name in before:
        np.testing.assert_array_equal(to_host(layer.params[name][0]), saved[name])


@pytest.mark.parametrize(("make", "input_shape"), PARAMETRIC)
def test_load_params_rejects_unknown_names_and_shapes(make, input_shape):
    layer = _build(make(), input_shape)
    name, (value, _) = next(iter(layer.params.items()))
    with pytest.raises(ValueError, match="nonsense"):
        layer.load_params({"nonsense": np.zeros(value.shape)})
    with pytest.raises(ValueError, match=name):
        layer.load_params({name: np.zeros((*value.shape, 2))})


@pytest.mark.parametrize("cls", [BatchNormalization, BatchNormalization2D])
def test_state_setter_copies(cls):
    layer = cls()
    layer.build(4 if cls is BatchNormalization else (4, 2, 2))
    shape = tuple(layer.cache_m.shape)
    old_m, old_v = layer.cache_m, layer.cache_v
    m = np.full(shape, 3.0, dtype=np.float32)
    v = np.full(shape, 5.0, dtype=np.float32)
    layer.state = {"cache_m": m, "cache_v": v}
    m += 1
    v += 1
    assert layer.cache_m is old_m and layer.cache_v is old_v
    assert layer.state["cache_m"] is old_m
    np.testing.assert_array_equal(to_host(layer.cache_m), np.full(shape, 3.0))
    np.testing.assert_array_equal(to_host(layer.cache_v), np.full(shape, 5.0))
    snapshot = {k: to_host(v).copy() for k, v in layer.state.items()}
    layer.forward(to_device(np.random.default_rng(0).standard_normal((3, *layer.input_shape))))
    assert not np.array_equal(to_host(layer.cache_m), snapshot["cache_m"])
    with pytest.raises(ValueError, match="cache_v"):
        layer.state = {"cache_v": np.zeros((*shape, 1))}
    with pytest.raises(ValueError, match="gamma"):
        layer.state = {"gamma": np.zeros(shape)}


def test_layers_without_state_or_params():
    for layer in (
        Dropout(),
        Flatten(),
        MaxPooling2D(),
        AveragePooling2D(),
        ReLU(),
        Softmax(),
        Reshape((-1,)),
        UpSampling2D(),
    ):
        assert layer.params == {} and layer.state == {}


def test_params_hold_the_gradients_after_backward():
    layer = Convolutional(2, 3, (1, 4, 4), "he")
    out = layer.forward(to_device(np.ones((2, 1, 4, 4))))
    layer.backward(out)
    assert layer.params["kernels"][1] is layer.kernels_gradient
    assert layer.params["biases"][1] is layer.biases_gradient
    norm = BatchNormalization2D()
    out = norm.forward(to_device(np.random.default_rng(0).standard_normal((2, 1, 4, 4))))
    norm.backward(out)
    assert norm.params["gamma"][1] is norm.gamma_gradient
    assert norm.params["beta"][1] is norm.beta_gradient


def test_input_and_output_sizes():
    conv = Convolutional(3, 3, (2, 7, 9))
    assert (conv.input_size, conv.output_size) == (2 * 7 * 9, 3 * 5 * 7)
    dense = Dense(5, 7)
    assert (dense.input_size, dense.output_size) == (7, 5)
    pool = MaxPooling2D(2)
    pool.build((3, 7, 9))
    assert (pool.input_size, pool.output_size) == (3 * 7 * 9, 3 * 3 * 4)
    flat = Flatten()
    flat.build((3, 4, 5))
    assert flat.output_size == 60
    drop = Dropout()
    drop.build(6)
    assert drop.input_shape == drop.output_shape == (6,)


def test_forward_caches_input_and_output():
    layer = Dense(2, 3, "he")
    x = to_device(np.ones((4, 3), dtype=np.float32))
    out = layer.forward(x)
    assert layer.output is out
    np.testing.assert_array_equal(to_host(layer.input), np.ones((4, 3)))


@pytest.mark.parametrize(
    ("make", "built_on", "message"),
    [
        (
            lambda: Dense(4, input_size=6),
            (5,),
            "Dense: input_size=6 was given, but the previous layer outputs (5,)",
        ),
        (
            lambda: Convolutional(2, 3, (1, 8, 8)),
            (3, 8, 8),
            "Convolutional: input_shape=(1, 8, 8) was given, "
            "but the previous layer outputs (3, 8, 8)",
        ),
        (
            lambda: LSTM(3, input_shape=(7, 2)),
            (7, 4),
            "LSTM: input_shape=(7, 2) was given, but the previous layer outputs (7, 4)",
        ),
        (
            lambda: Embedding(10, 3, input_length=5),
            (6,),
            "Embedding: input_length=5 was given, but the previous layer outputs (6,)",
        ),
    ],
)
def test_a_declared_input_shape_that_the_previous_layer_contradicts_is_refused(
    make, built_on, message
):
    layer = make()
    with pytest.raises(ValueError) as error:
        layer.build(built_on)
    assert str(error.value) == message
