"""Gradient clipping on every optimizer: by value, by global norm, saved with the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mpneuralnetwork.layers import Dense
from mpneuralnetwork.losses import MSE
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import SGD, Adam, Optimizer, RMSprop
from mpneuralnetwork.serialization import load_model, save_model
from test_optimizers import FakeLayer

OPTIMIZERS = [SGD, RMSprop, Adam]


def test_clipvalue_clips_each_gradient_value_before_the_step() -> None:
    layer = FakeLayer(weights=[1.0, 1.0, 1.0])
    layer.set_gradient("weights", [2.0, -0.1, -3.0])
    SGD(learning_rate=1.0, weight_decay=0.0, momentum=0.0, clipvalue=0.5).step([layer])
    np.testing.assert_array_equal(layer.gradient("weights"), [0.5, -0.1, -0.5])
    np.testing.assert_array_equal(layer.value("weights"), [0.5, 1.1, 1.5])


def test_clipnorm_scales_all_gradients_by_the_global_norm() -> None:
    a, b = FakeLayer(weights=[0.0, 0.0]), FakeLayer(biases=[0.0])
    a.set_gradient("weights", [3.0, 0.0])
    b.set_gradient("biases", [-4.0])  # global norm sqrt(9 + 16) = 5
    SGD(learning_rate=1.0, weight_decay=0.0, momentum=0.0, clipnorm=1.0).step([a, b])
    np.testing.assert_allclose(a.gradient("weights"), [0.6, 0.0], rtol=1e-12)
    np.testing.assert_allclose(b.gradient("biases"), [-0.8], rtol=1e-12)
    np.testing.assert_allclose(a.value("weights"), [-0.6, 0.0], rtol=1e-12)
    np.testing.assert_allclose(b.value("biases"), [0.8], rtol=1e-12)


def test_a_norm_below_clipnorm_is_left_alone_and_value_clipping_comes_first() -> None:
    layer = FakeLayer(weights=[0.0, 0.0])
    layer.set_gradient("weights", [0.3, 0.4])
    SGD(learning_rate=1.0, weight_decay=0.0, momentum=0.0, clipnorm=0.5).step([layer])
    np.testing.assert_allclose(layer.gradient("weights"), [0.3, 0.4], rtol=1e-12)
    layer.set_gradient("weights", [6.0, 8.0])
    # clipvalue 4 gives [4, 4] (norm 4·√2), then clipnorm 2 scales it to [√2, √2]
    SGD(learning_rate=1.0, weight_decay=0.0, momentum=0.0, clipnorm=2.0, clipvalue=4.0).step(
        [layer]
    )
    np.testing.assert_allclose(layer.gradient("weights"), [2**0.5, 2**0.5], rtol=1e-12)


def test_regularization_is_added_after_clipping() -> None:
    layer = FakeLayer(weights=[2.0])
    layer.set_gradient("weights", [10.0])
    SGD(learning_rate=1.0, weight_decay=0.5, momentum=0.0, clipvalue=1.0).step([layer])
    np.testing.assert_allclose(layer.gradient("weights"), [1.0 + 0.5 * 2.0], rtol=1e-12)


@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_every_optimizer_clips_and_keeps_it_in_its_config(cls: Any, tmp_path: Path) -> None:
    optimizer = cls(clipnorm=1.5, clipvalue=0.25)
    config = optimizer.get_config()
    assert config["clipnorm"] == 1.5 and config["clipvalue"] == 0.25
    assert "clipnorm" not in cls().get_config()
    assert cls(**{k: v for k, v in config.items() if k != "type"}).get_config() == config
    model = Model([Dense(2, input_size=3)], MSE(), optimizer)
    loaded = load_model(save_model(model, tmp_path / "m"))
    assert loaded.optimizer.get_config() == config
    # and clipping is applied during a real step
    layer = FakeLayer(weights=[0.0])
    layer.set_gradient("weights", [5.0])
    cls(weight_decay=0.0, clipvalue=0.25).step([layer])
    assert layer.gradient("weights")[0] == 0.25


@pytest.mark.parametrize("name", ["clipnorm", "clipvalue"])
@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "1", True])
def test_bad_clipping_values_are_refused(name: str, bad: Any) -> None:
    for cls in OPTIMIZERS:
        with pytest.raises(ValueError, match=f"{cls.__name__}: {name} must be a number in"):
            cls(**{name: bad})
    with pytest.raises(ValueError, match=name):
        Optimizer(0.1, "L2", 0.0, **{name: bad})
