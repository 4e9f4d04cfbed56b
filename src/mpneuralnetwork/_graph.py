"""Wiring a stack of layers into a network: shapes, smart initialization, output activation.

`Model` calls these once, at construction; they are the steps 1 to 3 of the 1.1
contract (see the Internals page "Smart initialization").
"""

from __future__ import annotations

import itertools

from .activations import ELU, Activation, LeakyReLU, PReLU, ReLU, Sigmoid, Softmax, Swish
from .layers import BatchNormalization, Convolutional, Dense, Dropout, Layer
from .losses import BinaryCrossEntropy, CategoricalCrossEntropy, Loss

__all__ = ["backward_plan", "build", "output_activation", "smart_initialization"]


def build(layers: list[Layer]) -> None:
    """Build each layer with the output shape of the one before it.

    Raises:
        ValueError: The first layer does not know its input shape.
    """
    first = layers[0]
    if first.input_shape is None:
        raise ValueError("Input layer does not define input size")
    first.build(first.input_shape)
    for previous, layer in itertools.pairwise(layers):
        layer.build(previous._known("output_shape"))


def smart_initialization(layers: list[Layer]) -> None:
    """He before ReLU, PReLU, Swish, LeakyReLU or ELU, else Xavier; no bias before a BatchNorm.

    This Xavier (std √(1/fan_in)) is LeCun normal, the initialization SELU wants: SELU
    ends the search with it, like any other activation.

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
            if isinstance(following, (ReLU, PReLU, Swish, LeakyReLU, ELU)):
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
