"""Issue 24, section 3: messages that say what to do (a first layer without its input, a
misspelt monitored key, an activation that cannot be saved)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers_model import assert_same_arrays, model_arrays
from mpneuralnetwork import activations, layers, xp
from mpneuralnetwork.activations import Activation, PReLU, ReLU, Softmax, Tanh
from mpneuralnetwork.callbacks import EarlyStopping, ModelCheckpoint, ReduceLROnPlateau
from mpneuralnetwork.layers import (
    GRU,
    LSTM,
    BatchNormalization,
    Convolutional,
    Dense,
    Embedding,
    Flatten,
    Layer,
    SimpleRNN,
)
from mpneuralnetwork.losses import MSE
from mpneuralnetwork.model import Model
from mpneuralnetwork.serialization import load_model, save_model

OLD = "Input layer does not define input size"


# ------------------------------------------------------ the first layer's input
@pytest.mark.parametrize(
    ("first", "argument"),
    [
        (Dense(3), "input_size=F"),
        (Convolutional(2, 3), "input_shape=(C, H, W)"),
        (SimpleRNN(2), "input_shape=(T, F)"),
        (LSTM(2), "input_shape=(T, F)"),
        (GRU(2), "input_shape=(T, F)"),
        (Embedding(10, 2), "input_length=T"),
        (Flatten(), "input_shape=(...)"),
    ],
)
def test_a_first_layer_without_its_input_is_named_with_the_argument_to_give(
    first: Layer, argument: str
) -> None:
    name = type(first).__name__
    with pytest.raises(ValueError, match=OLD) as caught:
        Model([first, Flatten(), Dense(1)], MSE())
    message = str(caught.value)
    assert f"first layer (position 0), {name}," in message
    assert f"needs {argument} in its constructor" in message


@pytest.mark.parametrize("first", [ReLU(), BatchNormalization()])
def test_a_first_layer_that_cannot_declare_its_input_says_what_to_put_first(first: Layer) -> None:
    with pytest.raises(ValueError, match=OLD) as caught:
        Model([first, Dense(1)], MSE())
    message = str(caught.value)
    assert f"(position 0), {type(first).__name__}, takes no input argument" in message
    assert "Dense(..., input_size=F)" in message


# ------------------------------------------------------ monitored keys
MONITORS: list[Any] = [
    lambda key: EarlyStopping(key),
    lambda key: ModelCheckpoint(monitor=key),
    lambda key: ReduceLROnPlateau(key),
]


def regression() -> tuple[Model, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 3)).astype(np.float32)
    return Model([Dense(1, input_size=3)], MSE()), x, x.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("make", MONITORS, ids=["EarlyStopping", "ModelCheckpoint", "Plateau"])
def test_a_misspelt_monitor_lists_the_keys_whatever_the_mode(make: Any) -> None:
    model, x, y = regression()
    callback = make("val_acuracy")  # mode="auto": the name tells no direction
    with pytest.raises(ValueError) as caught:
        model.train(x, y, 1, 16, evaluation=(x, y), verbose=0, callbacks=[callback])
    message = str(caught.value)
    assert "monitor='val_acuracy' is not a key of the logs" in message
    assert "'val_loss'" in message and "cannot tell" not in message


@pytest.mark.parametrize("make", MONITORS, ids=["EarlyStopping", "ModelCheckpoint", "Plateau"])
def test_a_key_without_a_direction_is_refused_once_found_in_the_logs(make: Any) -> None:
    model, x, y = regression()
    with pytest.raises(ValueError, match="cannot tell whether 'epoch_time' should go down or up"):
        model.train(x, y, 1, 16, verbose=0, callbacks=[make("epoch_time")])
    callback = make("epoch_time")  # outside train: at the first epoch's logs
    callback.set_params({"epochs": 1, "initial_epoch": 0, "verbose": 0})
    callback.on_train_begin()
    with pytest.raises(ValueError, match=r"monitor='epoch_time'.*\['val_loss'\]"):
        callback.on_epoch_end(0, {"val_loss": 1.0})
    with pytest.raises(ValueError, match="cannot tell"):
        callback.on_epoch_end(0, {"epoch_time": 1.0})


# ------------------------------------------------------ activations and saving
def softplus(x: Any) -> Any:
    return xp.logaddexp(0.0, x)


def softplus_prime(x: Any) -> Any:
    return 1.0 / (1.0 + xp.exp(-x))


class Softplus(Activation):
    def __init__(self) -> None:
        super().__init__(softplus, softplus_prime)


class Scaled(Activation):
    """A subclass with its own argument, written by its config."""

    def __init__(self, scale: float = 2.0) -> None:
        super().__init__(lambda x: scale * xp.tanh(x), lambda x: scale / xp.cosh(x) ** 2)
        self.scale = scale

    def get_config(self) -> dict[str, Any]:
        return {"type": "Scaled", "scale": self.scale}


class Forgetful(Activation):
    """A subclass with an argument its config leaves out."""

    def __init__(self, scale: float) -> None:
        super().__init__(lambda x: scale * x, lambda x: scale + 0 * x)


def _model(activation: Layer) -> Model:
    return Model([Dense(3, input_size=2), activation, Dense(1)], MSE())


def test_a_plain_activation_warns_at_save_with_what_to_do(tmp_path: Path) -> None:
    model = _model(Activation(softplus, softplus_prime))
    with pytest.warns(RuntimeWarning) as caught:
        path = save_model(model, tmp_path / "plain")
    assert len(caught) == 1 and caught[0].filename == __file__  # the user's line
    message = str(caught[0].message)
    assert "layer 1 (Activation)" in message and "load_model will refuse this file" in message
    assert "subclass Activation with a constructor that takes no argument" in message
    assert "custom_objects" in message
    with pytest.raises(ValueError, match="bad arguments for Activation"):
        load_model(path)  # what the warning announced


def test_a_subclass_missing_an_argument_in_its_config_warns(tmp_path: Path) -> None:
    with pytest.warns(RuntimeWarning, match=r"make Forgetful.get_config return every argument"):
        save_model(_model(Forgetful(3.0)), tmp_path / "forgetful")


@pytest.mark.parametrize(
    ("activation", "custom"),
    [
        (Softplus(), {"Softplus": Softplus}),
        (Scaled(3.0), {"Scaled": Scaled}),
        (PReLU(alpha=0.2), None),
        (Softmax(temperature=2.0), None),
        (Tanh(), None),
    ],
)
def test_activations_that_their_config_rebuilds_save_silently_and_load(
    tmp_path: Path, activation: Layer, custom: Any
) -> None:
    model = _model(activation)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = save_model(model, tmp_path / "model")
    loaded = load_model(path, custom_objects=custom)
    assert type(loaded.layers[1]) is type(activation)
    assert loaded.layers[1].get_config() == activation.get_config()
    assert_same_arrays(model_arrays(loaded), model_arrays(model))
    x = np.random.default_rng(0).standard_normal((4, 2)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


# ------------------------------------------------------ the home page's lists
def test_the_home_pages_layer_list_names_every_layer_and_activation() -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "index.md").read_text()
    (item,) = re.findall(r"^- \*\*Layers\*\*:(.*?)(?=^- )", page, re.S | re.M)
    listed = set(re.findall(r"`(\w+)`", item))
    bases = {"Layer", "Recurrent", "Activation", "Container"}  # what you subclass, not use
    expected = {
        name
        for module in (layers, activations)
        for name in module.__all__
        if isinstance(getattr(module, name), type) and name not in bases
    }
    assert expected - listed == set(), "add them to the Layers item of docs/index.md"


# ------------------------------------------------------ the pages speak to users
ROOT = Path(__file__).resolve().parents[1]
USER_PAGES = [
    ROOT / "README.md",
    *sorted(p for p in (ROOT / "docs").rglob("*.md") if "api" not in p.parts),
]


def test_no_page_speaks_of_the_projects_own_machines() -> None:
    for page in USER_PAGES:
        text = page.read_text(encoding="utf-8")
        for word in ("/work/", "workplace", "flock "):
            assert word not in text, f"{page.relative_to(ROOT)} mentions {word!r}"


def test_every_text_block_showing_figures_is_checked() -> None:
    """A ```text block with a figure of 3 decimals or more carries the output marker."""
    for page in USER_PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        previous = ""
        for number, line in enumerate(lines):
            if line.startswith("```text"):
                end = lines.index("```", number + 1)
                block = "\n".join(lines[number + 1 : end])
                if re.search(r"\d\.\d{3,}", block):
                    assert previous == "<!-- docs-test: output -->", (
                        f"{page.relative_to(ROOT)}:{number + 1}: results shown unchecked"
                    )
            if line.strip():
                previous = line.strip()
