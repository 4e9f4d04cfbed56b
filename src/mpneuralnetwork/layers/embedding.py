"""Embeddings: integer ids to learned vectors, and learned positions added to sequences."""

from __future__ import annotations

from typing import Any

from .. import _checks
from ..backend import DTYPE, ArrayType, xp
from .layer import Layer


class Embedding(Layer):
    """A lookup table: each integer id in [0, vocabulary_size) becomes a learned vector.

    The input holds integer ids (an integer array, or a float array of whole
    numbers); the ``Model`` passes them through uncast when an ``Embedding`` is its
    first layer. Ids have no gradient: ``backward`` stores the gradient of
    ``embeddings`` (the rows of repeated ids add up) and returns None.

    Args:
        vocabulary_size: Number of distinct ids.
        output_dim: Length of each vector.
        input_length: Ids per sample (T); needed when the layer comes first in a Model.

    Shapes:
        input (N, T) ids -> output (N, T, output_dim).
        ``embeddings`` (vocabulary_size, output_dim), drawn uniformly from
        [-0.05, 0.05] when the layer is built (at construction with
        ``input_length``, else at the first forward).
    """

    integer_input = True
    needs_input_gradient = False  # ids are not differentiable

    def __init__(
        self, vocabulary_size: int, output_dim: int, input_length: int | None = None
    ) -> None:
        self.vocabulary_size = _checks.positive_int("Embedding", "vocabulary_size", vocabulary_size)
        self.output_dim = _checks.positive_int("Embedding", "output_dim", output_dim)
        if input_length is not None:
            input_length = _checks.positive_int("Embedding", "input_length", input_length)
        super().__init__()
        self.embeddings: Any = None
        self.embeddings_gradient: Any = None
        if input_length is not None:
            self.build(input_length)

    def build(self, input_shape: int | tuple[int, ...]) -> None:
        """Set the number of ids per sample, (T,); the output shape is (T, output_dim)."""
        shape = _checks.shape("Embedding", "input_shape", input_shape)
        assert shape is not None
        if len(shape) != 1:
            raise ValueError(
                f"Embedding: input must be ids (N, T), so input_shape must be (T,); got {shape}"
            )
        self._check_declared(shape, "input_length")
        self.input_shape = shape
        self.output_shape = (shape[0], self.output_dim)
        if self.embeddings is None:
            self.init_weights()

    def init_weights(self) -> None:
        """Draw a new table, (vocabulary_size, output_dim), uniformly from [-0.05, 0.05]."""
        table = (self.vocabulary_size, self.output_dim)
        self.embeddings = xp.random.uniform(-0.05, 0.05, table).astype(DTYPE)
        self.embeddings_gradient = xp.zeros_like(self.embeddings)

    def array_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """``embeddings`` (vocabulary_size, output_dim), whatever the input shape."""
        return {"embeddings": (self.vocabulary_size, self.output_dim)}

    def forward(self, input_batch: ArrayType, training: bool = True) -> ArrayType:
        """(N, T) ids -> (N, T, output_dim) vectors."""
        ids = self._check_ids(input_batch)
        if self.embeddings is None:
            self.build(tuple(ids.shape[1:]))
        self.input = ids
        self.output = self.embeddings[ids]
        return self.output

    def backward(self, output_gradient_batch: ArrayType) -> None:
        """Store dL/d(embeddings): each id's row sums the gradients at its positions."""
        g = self._check_gradient(output_gradient_batch)
        dim = self.output_dim
        # One weighted bincount over (id, column) pairs: a scatter-add that NumPy and
        # CuPy both run in one call, summing in float64.
        cells = (self.input.reshape(-1, 1) * dim + xp.arange(dim)).reshape(-1)
        sums = xp.bincount(cells, weights=g.reshape(-1), minlength=self.vocabulary_size * dim)
        self.embeddings_gradient = sums.reshape(self.vocabulary_size, dim).astype(g.dtype)
        return None

    def _check_ids(self, input_batch: Any) -> Any:
        """The ids as an integer backend array, checked for shape, whole values and range."""
        x = input_batch if isinstance(input_batch, xp.ndarray) else xp.asarray(input_batch)
        expected = f"(N, {self.input_shape[0]})" if self.input_shape is not None else "(N, T)"
        if x.ndim != 2 or (self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape):
            raise ValueError(
                f"Embedding.forward: input_batch must have shape {expected}; got {tuple(x.shape)}"
            )
        if x.dtype.kind not in "iuf":
            raise ValueError(
                f"Embedding.forward: input_batch must hold integer ids; got dtype {x.dtype}"
            )
        if x.size == 0:
            return x.astype(xp.int64)
        if x.dtype.kind == "f":
            whole = xp.isfinite(x) & (x == xp.floor(x))
            if not bool(whole.all()):
                bad = x[~whole][0]
                raise ValueError(
                    f"Embedding.forward: input_batch must hold integer ids; got {float(bad)!r}"
                )
        low, high = int(x.min()), int(x.max())
        if low < 0 or high >= self.vocabulary_size:
            raise ValueError(
                f"Embedding.forward: ids must be in [0, {self.vocabulary_size}) "
                f"(vocabulary_size={self.vocabulary_size}); got values in [{low}, {high}]"
            )
        return x.astype(xp.int64, copy=False)

    @property
    def params(self) -> dict[str, tuple[ArrayType, ArrayType]]:
        return self._existing_params("embeddings")

    def get_config(self) -> dict[str, Any]:
        return {
            "type": "Embedding",
            "vocabulary_size": self.vocabulary_size,
            "output_dim": self.output_dim,
            "input_length": None if self.input_shape is None else self.input_shape[0],
        }


class PositionEmbedding(Layer):
    """Learned position embeddings: row t of a table is added to step t of each sequence.

    Args:
        max_length: The longest sequence the table covers (its number of rows).

    Shapes:
        input (N, T, D) -> output (N, T, D), T <= max_length; rows 0 … T−1 are used.
        ``embeddings`` (max_length, D), drawn from a normal distribution of std 0.02
        (as GPT-2's) with the global random state when the layer is built.
    """

    def __init__(self, max_length: int) -> None:
        self.max_length = _checks.positive_int("PositionEmbedding", "max_length", max_length)
        super().__init__()
        self.embeddings: Any = None
        self.embeddings_gradient: Any = None

    def _check_shape(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """(T, D), checked against ``max_length``."""
        if len(shape) != 2:
            raise ValueError(
                "PositionEmbedding: input must be sequences (N, T, D), so input_shape must be "
                f"(T, D); got {shape}"
            )
        if shape[0] > self.max_length:
            raise ValueError(
                f"PositionEmbedding: sequences of T={shape[0]} steps are longer than "
                f"max_length={self.max_length}"
            )
        return shape[0], shape[1]

    def array_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """``embeddings`` (max_length, D)."""
        _, dim = self._check_shape(input_shape)
        return {"embeddings": (self.max_length, dim)}

    def build(self, input_shape: int | tuple[int, ...]) -> None:
        """Check (T, D) and draw the table (once: a rebuild on the same D keeps it)."""
        shape = _checks.shape("PositionEmbedding", "input_shape", input_shape)
        assert shape is not None
        _, dim = self._check_shape(shape)
        self.input_shape = self.output_shape = shape
        if self.embeddings is None or self.embeddings.shape[1] != dim:
            table = (self.max_length, dim)
            self.embeddings = xp.random.normal(0.0, 0.02, table).astype(DTYPE)
            self.embeddings_gradient = xp.zeros_like(self.embeddings)

    def forward(self, input_batch: ArrayType, training: bool = True) -> ArrayType:
        """(N, T, D) -> (N, T, D): x + embeddings[:T]."""
        x = self._check_input(input_batch, min_ndim=3)
        if self.embeddings is None:
            self.build(tuple(x.shape[1:]))
        self._check_shape(tuple(x.shape[1:]))
        self.input = x
        self.output = x + self.embeddings[: x.shape[1]]
        return self.output

    def backward(self, output_gradient_batch: ArrayType) -> ArrayType:
        """Rows 0 … T−1 of dL/d(embeddings) sum G over the batch; dL/dx is G itself."""
        g = self._check_gradient(output_gradient_batch)
        gradient = xp.zeros_like(self.embeddings, dtype=g.dtype)
        gradient[: g.shape[1]] = g.sum(axis=0)
        self.embeddings_gradient = gradient
        return g

    @property
    def params(self) -> dict[str, tuple[ArrayType, ArrayType]]:
        return self._existing_params("embeddings")

    def get_config(self) -> dict[str, Any]:
        return {"type": "PositionEmbedding", "max_length": self.max_length}
