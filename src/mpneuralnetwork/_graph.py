"""Wiring a stack of layers into a network: shapes, smart initialization, output activation.

`Model` calls these once, at construction; they are the steps 1 to 3 of the 1.1
contract (see the Internals page "Smart initialization").
"""

from __future__ import annotations

import inspect
import itertools

from .activations import Activation, PReLU, ReLU, Sigmoid, Softmax, Swish
from .layers import BatchNormalization, Convolutional, Dense, Dropout, Layer, Recurrent
from .losses import BinaryCrossEntropy, CategoricalCrossEntropy, Loss

__all__ = ["backward_plan", "build", "output_activation", "smart_initialization"]


def build(layers: list[Layer]) -> None:
    """Build each layer with the output shape of the one before it.

    Raises:
        ValueError: The first layer does not know its input shape.
    """
    first = layers[0]
    if first.input_shape is None:
        raise ValueError(no_input_message(first))
    first.build(first.input_shape)
    for previous, layer in itertools.pairwise(layers):
        layer.build(previous._known("output_shape"))


#: The constructor arguments that declare a first layer's input: (value, meaning).
_INPUT_ARGUMENTS = {
    "input_size": ("F", "the number of features of one sample"),
    "input_length": ("T", "the number of ids of one sample"),
    "input_shape": ("(...)", "the shape of one sample, without the batch axis"),
}


def no_input_message(first: Layer) -> str:
    """Why a stack cannot be built from ``first``, and which argument to give it."""
    name = type(first).__name__
    message = f"Input layer does not define input size: the first layer (position 0), {name},"
    try:
        accepted = set(inspect.signature(type(first)).parameters)
    except ValueError:  # no signature to read
        accepted = set()
    argument = next((a for a in _INPUT_ARGUMENTS if a in accepted), None)
    if argument is None:
        return (
            f"{message} takes no input argument; put first a layer that declares its input, "
            "such as Dense(..., input_size=F) or Convolutional(..., input_shape=(C, H, W))"
        )
    value, meaning = _INPUT_ARGUMENTS[argument]
    if isinstance(first, Convolutional):
        value, meaning = "(C, H, W)", "the channels, height and width of one image"
    elif isinstance(first, Recurrent):
        value, meaning = "(T, F)", "the steps and features of one sequence"
    return f"{message} needs {argument}={value} in its constructor: {meaning}"


def smart_initialization(layers: list[Layer]) -> None:
    """He before ReLU / PReLU / Swish, Xavier otherwise; no bias before a BatchNorm.

    Only Dense and Convolutional layers with ``initialization="auto"`` are touched;
    Dropout is looked through, a batch normalization removes the bias and is looked
    through, and any other activation, Dense or Convolutional ends the search.
    """
    for i, layer in enumerate(layers):
        if not isinstance(layer, (Dense, Convolutional)) or layer.initialization != "auto":
            continue
        method, no_bias = "xavier", layer.no_bias
        for following in layers[i + 1 :]:
            if isinstance(following, Dropout):
                continue
            if isinstance(following, BatchNormalization):  # BatchNormalization2D too
                no_bias = True
                continue
            if isinstance(following, (ReLU, PReLU, Swish)):
                method = "he"
                break
            if isinstance(following, (Activation, Dense, Convolutional)):
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
