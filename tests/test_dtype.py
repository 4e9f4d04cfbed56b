"""Float32 end to end: whatever dtype the user passes, the network computes in float32."""

from __future__ import annotations

import numpy as np
import pytest

from mpneuralnetwork import DTYPE, to_device, to_host
from mpneuralnetwork.activations import ReLU, Sigmoid
from mpneuralnetwork.layers import (
    BatchNormalization,
    BatchNormalization2D,
    Convolutional,
    Dense,
    Dropout,
    Flatten,
    MaxPooling2D,
)
from mpneuralnetwork.losses import CategoricalCrossEntropy
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import SGD, Adam, RMSprop


def _network() -> list:
    return [
        Convolutional(3, 3, input_shape=(1, 6, 6), padding="same"),
        BatchNormalization2D(),
        ReLU(),
        MaxPooling2D(2),
        Flatten(),
        Dense(8),
        BatchNormalization(),
        Sigmoid(),
        Dropout(0.2),
        Dense(3),
    ]


@pytest.mark.parametrize("x_dtype", [np.float64, np.float16, np.int64, np.uint8])
@pytest.mark.parametrize("optimizer", [SGD, RMSprop, Adam])
def test_training_keeps_every_array_float32(x_dtype: type, optimizer: type) -> None:
    rng = np.random.default_rng(0)
    x = (rng.random((10, 1, 6, 6)) * 4).astype(x_dtype)
    y = np.eye(3)[rng.integers(0, 3, 10)]  # float64 targets
    model = Model(_network(), CategoricalCrossEntropy(), optimizer())
    model.train(x, y, epochs=2, batch_size=4, auto_evaluation=0.2, verbose=0)

    for layer in model.layers:
        for name, (value, gradient) in layer.params.items():
            assert value.dtype == DTYPE, f"{type(layer).__name__}.{name}"
            assert gradient.dtype == DTYPE, f"{type(layer).__name__}.{name} gradient"
        for name, value in layer.state.items():
            assert value.dtype == DTYPE, f"{type(layer).__name__}.{name}"
        assert layer.output.dtype == DTYPE, type(layer).__name__
    for state in model.optimizer.params.values():
        if isinstance(state, dict):
            assert state and all(v.dtype == DTYPE for v in state.values())
    assert model.predict(x).dtype == DTYPE
    predictions, _ = model.evaluate(x, y)
    assert to_host(predictions).dtype == DTYPE


@pytest.mark.parametrize(
    "layer, shape",
    [
        (Dense(4, input_size=5, initialization="he"), (3, 5)),
        (Convolutional(2, 3, input_shape=(2, 5, 5), initialization="he"), (3, 2, 5, 5)),
        (BatchNormalization(), (3, 5)),
        (BatchNormalization2D(), (3, 2, 4, 4)),
    ],
)
def test_layers_with_parameters_compute_in_their_parameter_dtype(layer, shape) -> None:
    x = to_device(np.random.default_rng(1).standard_normal(shape))  # float64
    out = layer.forward(x)
    grad = layer.backward(to_device(np.ones(out.shape)))  # float64 gradient in
    assert out.dtype == DTYPE and grad.dtype == DTYPE
    assert all(g.dtype == DTYPE for _, g in layer.params.values())
