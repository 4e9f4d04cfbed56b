"""The Transformer encoder block: pre-norm self-attention and feed-forward, each residual."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _checks
from .attention import MultiHeadAttention
from .containers import BuildHook, Residual, Sequential
from .layer import Layer
from .layer1d import Dense, Dropout, LayerNormalization

__all__ = ["TransformerEncoder"]

#: The feed-forward activations: the name, then how PyTorch's layer is given it.
_ACTIVATIONS = ("gelu", "gelu_tanh", "relu")


def _activation(name: str) -> Layer:
    # imported here: activations imports the layers package
    from ..activations import GELU, ReLU

    if name == "relu":
        return ReLU()
    return GELU("tanh" if name == "gelu_tanh" else "none")


class TransformerEncoder(Sequential):
    """One pre-norm Transformer encoder block on sequences (N, T, D)::

        h = x + Dropout(MultiHeadAttention(LayerNorm(x)))
        y = h + Dropout(Dense_D(Dropout(act(Dense_ff(LayerNorm(h))))))

    PyTorch's ``nn.TransformerEncoderLayer(d_model=D, nhead=num_heads,
    dim_feedforward=feedforward_dim, dropout=dropout, activation=..., batch_first=True,
    norm_first=True)``: the same function, with the same dropout on the attention
    weights and at the same three places, and LayerNorm's epsilon 1e-5.

    It is a `Sequential` of two `Residual` blocks; its leaf layers, in order (the
    positions name their arrays, ``"0_1_input_weights"`` for the attention's):
    LayerNormalization, MultiHeadAttention, Dropout | LayerNormalization, Dense,
    activation, Dropout, Dense, Dropout. The model dimension D is the input's last
    size: the last Dense gets its width when the block is built.

    Args:
        num_heads: The attention heads; they must divide D.
        feedforward_dim: The width of the hidden feed-forward layer.
        dropout: Probability in [0, 1) of every dropout, the attention weights' too.
        causal: True for causal attention (a step sees only itself and earlier steps).
        activation: ``"gelu"`` (exact), ``"gelu_tanh"`` (tanh approximation) or
            ``"relu"``, between the two feed-forward Dense layers.

    Shapes:
        input (N, T, D) -> output (N, T, D).

    Attributes:
        layers: The two `Residual` blocks.
    """

    def __init__(
        self,
        num_heads: int,
        feedforward_dim: int,
        dropout: float = 0.1,
        causal: bool = False,
        activation: str = "gelu",
    ) -> None:
        name = "TransformerEncoder"
        self.num_heads = _checks.positive_int(name, "num_heads", num_heads)
        self.feedforward_dim = _checks.positive_int(name, "feedforward_dim", feedforward_dim)
        self.dropout = _checks.number_in(name, "dropout", dropout, 0.0, 1.0, high_open=True)
        self.causal = _checks.boolean(name, "causal", causal)
        self.activation = _checks.choice(name, "activation", activation, _ACTIVATIONS)
        # Its width is D, unknown until the block is built (`_build_children`).
        self._projection = Dense(1)
        attention = Residual(
            [
                LayerNormalization(1e-5),
                MultiHeadAttention(self.num_heads, self.causal, self.dropout),
                Dropout(self.dropout),
            ]
        )
        feedforward = Residual(
            [
                LayerNormalization(1e-5),
                Dense(self.feedforward_dim),
                _activation(self.activation),
                Dropout(self.dropout),
                self._projection,
                Dropout(self.dropout),
            ]
        )
        super().__init__([attention, feedforward])

    def _build_children(self, shape: tuple[int, ...], hook: BuildHook | None) -> tuple[int, ...]:
        """The last Dense takes the width D of the input, then the blocks are built."""
        if len(shape) != 2:
            raise ValueError(
                "TransformerEncoder: input must be sequences (N, T, D), so input_shape must "
                f"be (T, D); got {shape}"
            )
        dim = shape[-1]
        projection = self._projection
        if projection.units != dim:  # a new width: weights drawn anew
            projection.units = dim
            projection.weights = projection.biases = None
            projection.weights_gradient = projection.biases_gradient = None
        return super()._build_children(shape, hook)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments: the inner layers follow from them."""
        return {
            "type": type(self).__name__,
            "num_heads": self.num_heads,
            "feedforward_dim": self.feedforward_dim,
            "dropout": self.dropout,
            "causal": self.causal,
            "activation": self.activation,
        }

    @classmethod
    def from_config(
        cls, config: dict[str, Any], build: Callable[[Any], Layer]
    ) -> TransformerEncoder:
        """``cls(**config)``: the config holds no inner configs (``build`` is unused)."""
        return cls(**config)

    def __repr__(self) -> str:
        arguments = {k: v for k, v in self.get_config().items() if k != "type"}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in arguments.items())})"
