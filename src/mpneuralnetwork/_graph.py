"""Wiring a stack of layers into a network: shapes, smart initialization, output activation.

`Model` calls these once, at construction; they are the steps 1 to 3 of the 1.1
contract (see the Internals page "Smart initialization"). Container layers
(`Sequential`, `Residual`, `Concatenate`) build their inner layers themselves, and
smart initialization walks into them: each inner layer is initialized for the
activation that follows it inside its container.
"""

from __future__ import annotations

import inspect
import itertools

from .activations import ELU, Activation, LeakyReLU, PReLU, ReLU, Sigmoid, Softmax, Swish
from .layers import (
    BatchNormalization,
    Convolutional,
    Dense,
    Dropout,
    Layer,
    LayerNormalization,
    MultiHeadAttention,
    Recurrent,
)
from .layers.containers import Container, walk
from .losses import BinaryCrossEntropy, CategoricalCrossEntropy, Loss

__all__ = ["backward_plan", "build", "output_activation", "smart_initialization"]


def build(layers: list[Layer]) -> None:
    """Build each layer with the output shape of the one before it.

    Raises:
        ValueError: The first layer does not know its input shape, a layer object
            stands twice in the network, or a container cannot join its inner layers
            (the message names the container and its position).
    """
    _check_unique(layers)
    first = layers[0]
    if first.input_shape is None:
        raise ValueError(no_input_message(first))
    _build_one(0, first, first.input_shape)
    for i, (previous, layer) in enumerate(itertools.pairwise(layers), 1):
        _build_one(i, layer, previous._known("output_shape"))


def _build_one(i: int, layer: Layer, shape: tuple[int, ...]) -> None:
    if not isinstance(layer, Container):
        layer.build(shape)
        return
    try:
        layer.build(shape)
    except ValueError as error:
        raise ValueError(f"Model: {type(layer).__name__} at position {i}: {error}") from None


def _check_unique(layers: list[Layer]) -> None:
    """Refuse a layer object that stands twice: each use would overwrite the other's cache."""
    seen: set[int] = set()
    for layer in walk(layers):
        if id(layer) in seen:
            raise ValueError(
                f"Model: the same {type(layer).__name__} object is used twice in the network; "
                "weight sharing is not supported: create a separate layer for each place"
            )
        seen.add(id(layer))


#: The constructor arguments that declare a layer's input, with what to give each (value,
#: meaning): the message of a first layer without one, and what `load_model` sets aside.
INPUT_ARGUMENTS = {
    "input_size": ("F", "the number of features of one sample"),
    "input_length": ("T", "the number of ids of one sample"),
    "input_shape": ("(...)", "the shape of one sample, without the batch axis"),
}


def no_input_message(first: Layer) -> str:
    """Why a stack cannot be built from ``first``, and which argument to give it."""
    name = type(first).__name__
    message = f"Input layer does not define input size: the first layer (position 0), {name},"
    if isinstance(first, Container):
        return (
            f"{message} takes its input shape from its first inner layer, which declares "
            "none; give that layer its input argument (input_size=F, input_shape=...), or "
            "put first a layer that declares its input, such as Dense(..., input_shape=(T, F)) "
            "or Embedding(..., input_length=T)"
        )
    try:
        accepted = set(inspect.signature(type(first)).parameters)
    except ValueError:  # no signature to read
        accepted = set()
    argument = next((a for a in INPUT_ARGUMENTS if a in accepted), None)
    if argument is None:
        return (
            f"{message} takes no input argument; put first a layer that declares its input, "
            "such as Dense(..., input_size=F) or Convolutional(..., input_shape=(C, H, W))"
        )
    value, meaning = INPUT_ARGUMENTS[argument]
    if isinstance(first, Convolutional):
        value, meaning = "(C, H, W)", "the channels, height and width of one image"
    elif isinstance(first, Recurrent):
        value, meaning = "(T, F)", "the steps and features of one sequence"
    return f"{message} needs {argument}={value} in its constructor: {meaning}"


def smart_initialization(layers: list[Layer]) -> None:
    """He before ReLU, PReLU, Swish, LeakyReLU or ELU, else Xavier; no bias before a BatchNorm.

    This Xavier (std √(1/fan_in)) is LeCun normal, the initialization SELU wants: SELU
    ends the search with it, like any other activation.

    Only Dense and Convolutional layers with ``initialization="auto"`` are touched;
    Dropout is looked through, a batch normalization removes the bias and is looked
    through, and any other activation, Dense, Convolutional, MultiHeadAttention,
    LayerNormalization or container ends the search. Inside a container, each run of
    layers is searched on its own (the end of the run ends the search).
    """
    for i, layer in enumerate(layers):
        if isinstance(layer, Container):
            for run in layer.sequences:
                smart_initialization(run)
            continue
        if not isinstance(layer, (Dense, Convolutional)) or layer.initialization != "auto":
            continue
        method, no_bias = "xavier", layer.no_bias
        for following in layers[i + 1 :]:
            if isinstance(following, Dropout):
                continue
            if isinstance(following, BatchNormalization):  # BatchNormalization2D too
                no_bias = True
                continue
            if isinstance(following, (ReLU, PReLU, Swish, LeakyReLU, ELU)):
                method = "he"
                break
            # a layer with weights of its own ends the search as a Dense would
            if isinstance(
                following,
                (
                    Activation,
                    Dense,
                    Convolutional,
                    Container,
                    MultiHeadAttention,
                    LayerNormalization,
                ),
            ):
                break
        layer.init_weights(method, no_bias)


def output_activation(layers: list[Layer], loss: Loss) -> Activation | None:
    """The activation the loss implies (Sigmoid for BCE, Softmax for CCE), or None.

    A trailing copy of it is removed from ``layers``: the network outputs logits and
    the loss applies the activation itself.
    """
    activation: Activation
    if isinstance(loss, BinaryCrossEntropy):
        activation = Sigmoid()
    elif isinstance(loss, CategoricalCrossEntropy):
        activation = Softmax(loss.temperature, loss.epsilon)
    else:
        return None
    if type(layers[-1]) is type(activation):
        layers.pop()
        if not layers:
            raise ValueError("Model: layers hold nothing but the output activation")
    return activation


def backward_plan(layers: list[Layer]) -> list[Layer]:
    """The layers backward visits, last first: none before the first one with parameters.

    Nothing before that layer learns, so the gradient with respect to its input is
    never used: during the Model's backward pass it is told not to compute it
    (``needs_input_gradient``).
    """
    first = next((i for i, layer in enumerate(layers) if layer.params), 0)
    return layers[first:][::-1]
