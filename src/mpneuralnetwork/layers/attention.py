"""Multi-head self-attention on sequences (N, T, D)."""

from __future__ import annotations

import math
from typing import Any

from .. import _checks, threads
from ..backend import DTYPE, ArrayType, xp
from .layer import Layer


class MultiHeadAttention(Layer):
    """Multi-head scaled dot-product self-attention (PyTorch's ``MultiheadAttention``).

    Each step of the input sequence attends to every step (to itself and the earlier
    ones with ``causal=True``)::

        Q, K, V = X·W_q + b_q, X·W_k + b_k, X·W_v + b_v     (N, T, D) each
        per head h (d = D / num_heads columns each):
            A_h = softmax(Q_h·K_hᵀ / √d)                      (N, T, T), over the keys
            C_h = A_h·V_h                                     (N, T, d)
        Y = concat_h(C_h)·W_o + b_o                           (N, T, D)

    The heads are a reshape (N, T, H, d) → (N, H, T, d), so every head of every
    sample goes through one batched matrix product.

    Args:
        num_heads: H, the number of heads; it must divide the model dimension D.
        causal: True to mask every key after the query (a step sees only the steps
            up to itself), as PyTorch's ``attn_mask = triu(ones(T, T), 1)``.
        dropout: Probability of zeroing an attention weight while training (inverted
            dropout, from the global random state), in [0, 1).

    Shapes:
        input (N, T, D) -> output (N, T, D).
        ``input_weights`` (D, 3·D): the query, key and value projections as column
        blocks, in that order (PyTorch's ``in_proj_weight.T``); ``input_biases``
        (3·D,); ``output_weights`` (D, D) (``out_proj.weight.T``); ``output_biases``
        (D,). The weights are drawn from Glorot's uniform distribution,
        U(±√(6/(fan_in + fan_out))), ``input_weights`` as one (D, 3·D) matrix as
        PyTorch does; the biases start at zero.

    Out of scope: padding masks (sequences of different lengths in one batch),
    cross-attention (queries from another sequence), and key/value caches.
    """

    splits_work = True  # samples split across threads: products, softmax (see `threads`)

    def __init__(self, num_heads: int, causal: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads = _checks.positive_int("MultiHeadAttention", "num_heads", num_heads)
        self.causal = _checks.boolean("MultiHeadAttention", "causal", causal)
        self.dropout = _checks.number_in(
            "MultiHeadAttention", "dropout", dropout, 0.0, 1.0, high_open=True
        )
        self.input_weights: Any = None
        self.input_biases: Any = None
        self.output_weights: Any = None
        self.output_biases: Any = None
        self.input_weights_gradient: Any = None
        self.input_biases_gradient: Any = None
        self.output_weights_gradient: Any = None
        self.output_biases_gradient: Any = None
        self.mask: Any = None  # the last dropout mask on the attention weights, scaled
        self._cache: dict[str, Any] = {}  # what backward reads from the last forward

    # ----------------------------------------------------------------- building
    def _model_dim(self, input_shape: tuple[int, ...]) -> int:
        """D, checked: the input is (T, D) and num_heads divides D."""
        if len(input_shape) != 2:
            raise ValueError(
                "MultiHeadAttention: input must be sequences (N, T, D), so input_shape must "
                f"be (T, D); got {input_shape}"
            )
        dim = input_shape[1]
        if dim % self.num_heads:
            raise ValueError(
                f"MultiHeadAttention: the model dimension D={dim} must be divisible by "
                f"num_heads={self.num_heads}"
            )
        return dim

    def array_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """The four parameters, from D (the last size of ``input_shape``)."""
        dim = self._model_dim(input_shape)
        return {
            "input_weights": (dim, 3 * dim),
            "input_biases": (3 * dim,),
            "output_weights": (dim, dim),
            "output_biases": (dim,),
        }

    def build(self, input_shape: int | tuple[int, ...]) -> None:
        """Check (T, D) and draw the parameters (once: a rebuild on D keeps them)."""
        shape = _checks.shape("MultiHeadAttention", "input_shape", input_shape)
        assert shape is not None
        dim = self._model_dim(shape)
        self.input_shape = self.output_shape = shape
        if self.input_weights is not None and self.input_weights.shape[0] == dim:
            return
        self.input_weights = _glorot_uniform(dim, 3 * dim)
        self.output_weights = _glorot_uniform(dim, dim)
        self.input_biases = xp.zeros((3 * dim,), dtype=DTYPE)
        self.output_biases = xp.zeros((dim,), dtype=DTYPE)
        for name in ("input_weights", "input_biases", "output_weights", "output_biases"):
            setattr(self, f"{name}_gradient", xp.zeros_like(getattr(self, name)))

    # ------------------------------------------------------------ computation
    def forward(self, input_batch: ArrayType, training: bool = True) -> ArrayType:
        """(N, T, D) -> (N, T, D)."""
        x = self._check_input(input_batch, min_ndim=3)
        if self.input_weights is None:
            self.build(tuple(x.shape[1:]))
        dtype = self.input_weights.dtype
        if x.dtype != dtype:
            x = x.astype(dtype)
        self.input = x
        n, steps, dim = x.shape
        heads, head_dim = self.num_heads, dim // self.num_heads
        projected = threads.matmul(x.reshape(n * steps, dim), self.input_weights)
        projected += self.input_biases
        # (N·T, 3·D) -> (3, N, H, T, d): Q, K and V with the heads as a batch axis
        qkv = xp.ascontiguousarray(
            projected.reshape(n, steps, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)
        )
        qkv[0] *= 1.0 / math.sqrt(head_dim)  # scaled queries: the scores need no pass
        queries, keys, values = qkv
        weights = xp.empty((n, heads, steps, steps), dtype=dtype)
        context = xp.empty((n, heads, steps, head_dim), dtype=dtype)
        self.mask = None
        if training and self.dropout > 0.0:  # drawn whole: the same mask for any split
            keep = xp.random.random_sample(weights.shape) >= self.dropout
            self.mask = keep.astype(dtype)
            self.mask *= 1.0 / (1.0 - self.dropout)
        used = weights if self.mask is None else xp.empty_like(weights)
        causal = self._causal_mask(steps, dtype) if self.causal else None

        def share(first: int, last: int) -> None:  # samples first to last − 1
            f = slice(first, last)
            scores = xp.matmul(queries[f], keys[f].swapaxes(-1, -2), out=weights[f])
            if causal is not None:
                scores += causal
            # softmax over the keys, in place, the row maximum subtracted first
            scores -= scores.max(axis=-1, keepdims=True)
            xp.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            if self.mask is not None:
                xp.multiply(scores, self.mask[f], out=used[f])
            xp.matmul(used[f], values[f], out=context[f])

        # every sample's heads are independent: the samples split across threads
        threads.run(share, n, 4 * n * heads * steps * steps * head_dim)
        merged = xp.ascontiguousarray(context.transpose(0, 2, 1, 3)).reshape(n * steps, dim)
        out = threads.matmul(merged, self.output_weights)
        out += self.output_biases
        self._cache = {"qkv": qkv, "weights": weights, "used": used, "merged": merged}
        self.output = out.reshape(n, steps, dim)
        return self.output

    def backward(self, output_gradient_batch: ArrayType) -> ArrayType | None:
        """Store the four parameter gradients; return dL/dX (N, T, D).

        With P the attention weights (after dropout: P̃ = P ⊙ mask) and G_C the
        gradient of the context: dV = P̃ᵀ·G_C, dP = (G_C·Vᵀ) ⊙ mask, then per row of
        the softmax dS = P ⊙ (dP − Σ_keys dP ⊙ P); dQ = dS·K/√d and dK = dSᵀ·Q/√d.
        See the Internals page "Attention".
        """
        g = self._check_gradient(output_gradient_batch)
        n, steps, dim = g.shape
        heads, head_dim = self.num_heads, dim // self.num_heads
        cache = self._cache
        qkv, weights, used = cache["qkv"], cache["weights"], cache["used"]
        queries, keys, values = qkv
        rows = g.reshape(n * steps, dim)
        self.output_weights_gradient = threads.matmul(cache["merged"].T, rows)
        self.output_biases_gradient = rows.sum(axis=0)
        d_context = threads.matmul(rows, self.output_weights.T)
        d_context = d_context.reshape(n, steps, heads, head_dim).transpose(0, 2, 1, 3)
        # the gradients of Q, K and V, written in the (N, T, 3, H, d) layout of the
        # projection, so that they are the (N·T, 3·D) rows of its gradient
        d_projected = xp.empty((n, steps, 3, heads, head_dim), dtype=g.dtype)
        d_qkv = d_projected.transpose(2, 0, 3, 1, 4)
        scale = 1.0 / math.sqrt(head_dim)

        def share(first: int, last: int) -> None:  # samples first to last − 1
            f = slice(first, last)
            d_c, p = d_context[f], weights[f]
            d_qkv[2, f] = xp.matmul(used[f].swapaxes(-1, -2), d_c)
            d_scores = xp.matmul(d_c, values[f].swapaxes(-1, -2))  # dP̃, then dS in place
            if self.mask is not None:
                d_scores *= self.mask[f]
            d_scores -= xp.einsum("...k,...k->...", d_scores, p)[..., None]
            d_scores *= p
            d_queries = xp.matmul(d_scores, keys[f])
            d_queries *= scale
            d_qkv[0, f] = d_queries
            d_qkv[1, f] = xp.matmul(d_scores.swapaxes(-1, -2), queries[f])  # scaled queries

        threads.run(share, n, 8 * n * heads * steps * steps * head_dim)
        d_rows = d_projected.reshape(n * steps, 3 * dim)
        x_rows = self.input.reshape(n * steps, dim)
        self.input_weights_gradient = threads.matmul(x_rows.T, d_rows)
        self.input_biases_gradient = d_rows.sum(axis=0)
        if not self.needs_input_gradient:
            return None
        return threads.matmul(d_rows, self.input_weights.T).reshape(n, steps, dim)

    @property
    def attention_weights(self) -> ArrayType | None:
        """The softmax weights A of the last forward pass, (N, H, T, T), or None before one.

        Row ``[n, h, t]`` is how much step ``t`` of sample ``n`` attends to each key in
        head ``h`` (it sums to 1); dropout, if any, is not applied to it. The array is
        the layer's own buffer: the next forward pass overwrites it (copy it to keep).
        """
        return self._cache.get("weights")

    def _causal_mask(self, steps: int, dtype: Any) -> Any:
        """(T, T): 0 on and below the diagonal, −inf above it (the keys after the query)."""
        mask = self._buffers.get("causal")
        if mask is None or mask.shape[0] != steps or mask.dtype != dtype:
            above = xp.triu(xp.ones((steps, steps), dtype=bool), k=1)
            mask = xp.where(above, -xp.inf, 0.0).astype(dtype)
            self._buffers["causal"] = mask
        return mask

    # ------------------------------------------------------------- parameters
    @property
    def params(self) -> dict[str, tuple[ArrayType, ArrayType]]:
        return self._existing_params(
            "input_weights", "input_biases", "output_weights", "output_biases"
        )

    def get_config(self) -> dict[str, Any]:
        return {
            "type": "MultiHeadAttention",
            "num_heads": self.num_heads,
            "causal": self.causal,
            "dropout": self.dropout,
        }


def _glorot_uniform(fan_in: int, fan_out: int) -> Any:
    """(fan_in, fan_out) weights from U(±√(6/(fan_in + fan_out))), the global random state."""
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return xp.random.uniform(-bound, bound, (fan_in, fan_out)).astype(DTYPE)
