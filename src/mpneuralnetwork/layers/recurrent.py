"""Recurrent layers on (N, T, F) sequences: SimpleRNN, LSTM and GRU.

`Recurrent` runs the loop over time and backpropagation through time for all
three; each subclass is a cell, the computation of one time step and its
backward pass. The parameters follow PyTorch's layout and equations, with the
gate pre-activations of a step in the blocks of ``x_t W + h_{t-1} U + b``:

- ``input_weights`` W (F, G·units), ``recurrent_weights`` U (units, G·units),
  ``biases`` b (G·units,), and for GRU ``recurrent_biases`` c (3·units,);
  G = 1 (SimpleRNN), 4 (LSTM: gates i, f, g, o), 3 (GRU: gates r, z, n).

How the work is laid out (see the Internals page on backpropagation through time):

- everything is computed transposed, feature-major: a gate of a step is one
  contiguous (units, N) block of a (T, G, units, N) buffer;
- step t multiplies its operand block [h_t; 1; x_t] (units + 1 + F, N) by a copy of
  the weights stacked as ``[U; b; W]`` (made once per batch): one product gives all
  gates, input projection and bias included (GRU, whose n block needs h U_n apart,
  projects the inputs of all steps first);
- the cells keep their gates in an internal block order chosen so that the
  sigmoid gates are contiguous, and compute σ(z) = 1 / (1 + exp(−z)) and
  tanh(z) = 2 / (1 + exp(−2z)) − 1, the factors −1 and −2 folded into the stacked
  weights (an exp is about twice as fast as a tanh in NumPy);
- backward runs the steps in reverse in chunks of a few: the factors that do not
  depend on the incoming gradient for a whole chunk first, then one product per
  step, then one product over the chunk for ``[dL/dU; dL/db; dL/dW]`` and one for
  dL/dx, while the chunk's arrays are still in the cache.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, ClassVar, get_args

from .. import _checks, threads
from ..backend import DTYPE, ArrayType, xp
from .layer import Layer
from .layer1d import Lit_W

_INITIALIZATIONS: tuple[str, ...] = get_args(Lit_W)


class Recurrent(Layer):
    """Base of the recurrent layers: parameters, the loop over time and its backward pass.

    Args:
        units: Size of the hidden state.
        input_shape: ``(T, F)``: steps and features of one sequence; when given the
            layer builds at once.
        return_sequences: False: output the last hidden state (N, units); True:
            every hidden state (N, T, units), so that recurrent layers stack.
        initialization: How ``input_weights`` are drawn: ``"auto"`` Glorot
            (Xavier) uniform, limit sqrt(6 / (F + G·units)); ``"xavier"`` normal
            with std sqrt(1/F); ``"he"`` normal with std sqrt(2/F). Every gate
            block of ``recurrent_weights`` is orthogonal, the biases are zero.

    Shapes:
        input (N, T, F) -> output (N, units), or (N, T, units) with ``return_sequences``.
        The initial state is zero.
    """

    #: Gates per step (G): the parameters hold G blocks of ``units`` columns.
    gates: ClassVar[int] = 1
    #: The parameter blocks in the cell's internal order.
    _order: ClassVar[tuple[int, ...]] = (0,)
    #: The factor of each internal block in the step's weights: a step computes σ(z)
    #: from exp(−z) (factor −1) and tanh(z) = 2σ(2z) − 1 from exp(−2z) (factor −2).
    _block_scales: ClassVar[tuple[float, ...]] = (-2.0,)
    #: The parameter names, in the order of ``params``.
    _param_names: ClassVar[tuple[str, ...]] = ("input_weights", "recurrent_weights", "biases")

    input_weights: Any
    recurrent_weights: Any
    biases: Any

    def __init__(
        self,
        units: int,
        input_shape: tuple[int, int] | None = None,
        return_sequences: bool = False,
        initialization: Lit_W = "auto",
    ) -> None:
        name = type(self).__name__
        self.units = _checks.positive_int(name, "units", units)
        self.return_sequences = _checks.boolean(name, "return_sequences", return_sequences)
        self.initialization = _checks.choice(
            name, "initialization", initialization, _INITIALIZATIONS
        )
        super().__init__(input_shape=input_shape)
        self.input_shape = None  # set by build, which checks it
        for param in self._param_names:
            setattr(self, param, None)
            setattr(self, f"{param}_gradient", None)
        if input_shape is not None:
            self.build(input_shape)

    # ----------------------------------------------------------------- building
    def build(self, input_shape: int | tuple[int, ...]) -> None:
        """Set the input shape (T, F) and draw the weights when F is new.

        Args:
            input_shape: ``(T, F)``, the shape of one sequence.
        """
        name = type(self).__name__
        shape = _checks.shape(name, "input_shape", input_shape)
        assert shape is not None
        if len(shape) != 2:
            raise ValueError(
                f"{name}: input must be sequences (N, T, F), so input_shape must be (T, F); "
                f"got {shape}"
            )
        self._check_declared(shape)
        steps, features = shape
        self.input_shape = shape
        self.output_shape = (steps, self.units) if self.return_sequences else (self.units,)
        weights = self.input_weights
        if weights is None or weights.shape[0] != features:
            self.init_weights(self.initialization)

    def array_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """The parameters' shapes for an input shape (T, F), allocating nothing."""
        if len(input_shape) != 2:
            raise ValueError(
                f"{type(self).__name__}: input_shape must be (T, F); got {input_shape}"
            )
        width = self.gates * self.units
        shapes = {
            "input_weights": (input_shape[1], width),
            "recurrent_weights": (self.units, width),
            "biases": (width,),
        }
        if "recurrent_biases" in self._param_names:
            shapes["recurrent_biases"] = (width,)
        return shapes

    def init_weights(self, method: str) -> None:
        """Draw new parameters: input weights by ``method``, orthogonal recurrent blocks.

        Args:
            method: ``"auto"`` (Glorot uniform), ``"xavier"`` or ``"he"`` (normal).
        """
        features, units, gates = self._known("input_shape")[1], self.units, self.gates
        shape = (features, gates * units)
        if method == "he" or method == "xavier":
            std = math.sqrt((2.0 if method == "he" else 1.0) / features)
            weights = xp.random.normal(0.0, std, shape)
        else:
            limit = math.sqrt(6.0 / (features + gates * units))
            weights = xp.random.uniform(-limit, limit, shape)
        blocks = [_orthogonal(units) for _ in range(gates)]
        values = {
            "input_weights": weights,
            "recurrent_weights": xp.concatenate(blocks, axis=1),
            "biases": self._initial_biases(),
        }
        if "recurrent_biases" in self._param_names:
            values["recurrent_biases"] = xp.zeros(gates * units)
        for name, value in values.items():
            value = value.astype(DTYPE)
            setattr(self, name, value)
            setattr(self, f"{name}_gradient", xp.zeros_like(value))

    def _initial_biases(self) -> Any:
        return xp.zeros(self.gates * self.units)

    # ------------------------------------------------------------ computation
    def forward(self, input_batch: ArrayType, training: bool = True) -> ArrayType:
        """(N, T, F) -> (N, units), or (N, T, units) with ``return_sequences``."""
        x = self._check_input(input_batch)
        if x.ndim != 3:
            raise ValueError(
                f"{type(self).__name__}.forward: input_batch must have shape (N, T, F); "
                f"got {tuple(x.shape)}"
            )
        if self.input_shape is None:
            self.build(tuple(x.shape[1:]))
        dtype = self.input_weights.dtype
        if x.dtype != dtype:
            x = x.astype(dtype)
        self.input = x
        n, steps, features = x.shape
        units = self.units
        self._prepare_weights()
        # The operands of every step, (T + 1, units + 1 + F, N): block t is the contiguous
        # [h_t; 1; x_t] (h_0 = 0) that step t multiplies, and step t writes h_{t+1} into
        # block t + 1; the backward pass contracts them with the gradients.
        operands = self._buffer("operands", (steps + 1, units + 1 + features, n), dtype)
        operands[0, :units] = 0.0
        operands[:, units] = 1.0
        operands[:steps, units + 1 :] = x.transpose(1, 2, 0)
        pre = self._buffer("gates", (steps, self.gates, units, n), dtype)
        self._begin(operands, pre)
        # Many small products: BLAS's own threads beat splitting them (see `threads`).
        with _overflow_to_zero(), threads.blas_threads():
            for t in range(steps):
                self._step(t, operands[t], pre[t], operands[t + 1, :units])
        if self.return_sequences:
            out = operands[1:, :units].transpose(2, 0, 1).copy()
        else:
            out = operands[steps, :units].T.copy()
        self.output = out
        return out

    def backward(self, output_gradient_batch: ArrayType) -> ArrayType | None:
        """Backpropagation through time: store every parameter gradient, return dL/dx."""
        with threads.blas_threads():  # many small products, as in `forward`
            return self._backward(output_gradient_batch)

    def _backward(self, output_gradient_batch: ArrayType) -> ArrayType | None:
        g = self._check_gradient(output_gradient_batch)
        n, steps, features = self.input.shape
        dtype = self.output.dtype
        units, width = self.units, self.gates * self.units
        operands = self._buffer("operands", (steps + 1, units + 1 + features, n), dtype)
        d_in = self._buffer("d_in", (steps, self.gates, units, n), dtype)
        d_rec = self._recurrent_gradient_buffer(d_in)
        self._begin_backward(operands, steps)
        dh = self._buffer("dh", (units, n), dtype)
        step_g = xp.ascontiguousarray(g.transpose(1, 2, 0)) if self.return_sequences else None
        u_back = self._reorder(self.recurrent_weights, self._order)  # (units, G·units)
        # ``[U; b; W]``-shaped sums (and for GRU the input side's ``[b; W]`` apart).
        rows = units + 1 + features if d_rec is d_in else units + 1
        grads = self._buffer("grads", (rows, width), dtype)
        input_grads = self._buffer("input_grads", (1 + features, width), dtype)
        dx = None
        if self.needs_input_gradient:
            dx = xp.empty((n, steps, features), dtype=dtype)
            w_back = self._reorder(self.input_weights, self._order)  # (F, G·units)
        # The steps go backwards in chunks of a few: a chunk's step-independent factors
        # are computed just before its steps and its gradient products just after, while
        # its arrays are still in the cache.
        chunks = -(-steps // _CHUNK_STEPS)
        size = -(-steps // chunks)
        for hi in range(steps, 0, -size):
            lo = max(0, hi - size)
            self._chunk_factors(operands, lo, hi)
            for t in range(hi - 1, lo - 1, -1):
                if t == steps - 1:
                    dh[...] = step_g[t] if step_g is not None else g.T
                else:
                    xp.matmul(u_back, d_rec[t + 1].reshape(width, n), out=dh)
                    self._carry(dh)
                    if step_g is not None:
                        dh += step_g[t]
                self._step_backward(t, dh, d_in[t], d_rec[t])
            # The operand rows [h; 1; x] of the chunk's steps against their gradients,
            # each copied side by side to (rows, steps·N) while still in the cache, add to
            # dL/dU, the bias gradient and dL/dW, already in the parameters' layouts.
            z = self._columns("z_cols", operands[lo:hi])
            d_cols = self._columns("d_cols", d_in[lo:hi].reshape(hi - lo, width, n))
            first = hi == steps
            if d_rec is d_in:
                _accumulate(z, d_cols, grads, first, self._buffer("product", grads.shape, dtype))
            else:
                d_rec_cols = self._columns("d_rec_cols", d_rec[lo:hi].reshape(hi - lo, width, n))
                product = self._buffer("product", grads.shape, dtype)
                _accumulate(z[: units + 1], d_rec_cols, grads, first, product)
                product = self._buffer("input_product", input_grads.shape, dtype)
                _accumulate(z[units:], d_cols, input_grads, first, product)
            if dx is not None:
                dx[:, lo:hi] = (w_back @ d_cols).reshape(features, hi - lo, n).transpose(2, 1, 0)
        self._store("recurrent_weights", grads[:units])
        if d_rec is d_in:
            self._store("biases", grads[units])
            self._store("input_weights", grads[units + 1 :])
        else:
            self._store("recurrent_biases", grads[units])
            self._store("biases", input_grads[0])
            self._store("input_weights", input_grads[1:])
        return dx

    # ------------------------------------------------------- hooks of the cells
    def _begin(self, operands: Any, pre: Any) -> None:
        """Allocate the cell's buffers before the first step.

        Args:
            operands: (T + 1, units + 1 + F, N), block t = [h_t; 1; x_t].
            pre: (T, G, units, N), the gate buffer the steps fill.
        """

    def _step(self, t: int, operands: Any, pre: Any, h: Any) -> None:
        """One step: from ``operands`` [h_t; 1; x_t] (units + 1 + F, N), fill the gates
        ``pre`` (G, units, N) and write the new state ``h`` (units, N)."""
        raise NotImplementedError

    def _begin_backward(self, operands: Any, steps: int) -> None:
        """Allocate the cell's backward buffers before the last step."""

    def _chunk_factors(self, operands: Any, lo: int, hi: int) -> None:
        """Compute the step-independent factors of steps ``lo`` to ``hi − 1`` at once."""

    def _recurrent_gradient_buffer(self, d_in: Any) -> Any:
        """The buffer of the gradients that multiply U; the input side's by default."""
        return d_in

    def _carry(self, dh: Any) -> None:
        """Add to ``dh`` the part of dL/dh_t that does not go through U (GRU)."""

    def _step_backward(self, t: int, dh: Any, d_in: Any, d_rec: Any) -> None:
        """Fill the pre-activation gradients (G, units, N) of step t from dL/dh_t (units, N)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- helpers
    def _reorder(self, a: Any, order: tuple[int, ...]) -> Any:
        """A copy of ``a`` (…, G·units) with its gate blocks taken in ``order``.

        Whole blocks move (contiguous runs of ``units`` values), which is far
        cheaper than gathering G·units separate columns.
        """
        if order == tuple(range(self.gates)):
            return a
        blocks = a.reshape(*a.shape[:-1], self.gates, self.units)
        return xp.concatenate([blocks[..., k, :] for k in order], axis=-1)

    def _stack(self, name: str, parts: list[Any]) -> Any:
        """``parts`` (rows × G·units each) stacked into a kept buffer, gate blocks in the
        internal order and scaled by ``_block_scales``: the transpose of a step's weights."""
        rows = sum(part.shape[0] for part in parts)
        width = self.gates * self.units
        stacked = self._buffer(name, (rows, width), parts[0].dtype)
        blocks = stacked.reshape(rows, self.gates, self.units)
        order = list(self._order)
        start = 0
        for part in parts:
            part_blocks = part.reshape(part.shape[0], self.gates, self.units)
            if order == sorted(order):
                blocks[start : start + part.shape[0]] = part_blocks
            else:
                blocks[start : start + part.shape[0]] = part_blocks[:, order]
            start += part.shape[0]
        scales = xp.asarray(self._block_scales, dtype=stacked.dtype).reshape(-1, 1)
        blocks *= scales
        return stacked

    def _prepare_weights(self) -> None:
        """``[U; b; W]`` (units + 1 + F, G·units), which a step's operands [h; 1; x]
        meet: its transpose (a view, which BLAS reads as such) is the step's matrix."""
        biases = self.biases.reshape(1, -1)
        stacked = self._stack("step_weights", [self.recurrent_weights, biases, self.input_weights])
        self._step_weights = stacked.T

    def _columns(self, name: str, per_step: Any) -> Any:
        """(T, rows, N) per-step blocks copied side by side into a kept (rows, T·N)."""
        steps, rows, n = per_step.shape
        columns = self._buffer(f"{name}{steps}", (rows, steps, n), per_step.dtype)
        columns[...] = per_step.transpose(1, 0, 2)
        return columns.reshape(rows, steps * n)

    def _store(self, name: str, internal: Any) -> None:
        """Write a gradient computed in the internal block order into ``{name}_gradient``."""
        if self._order != tuple(range(self.gates)):
            inverse = tuple(self._order.index(block) for block in range(self.gates))
            internal = self._reorder(internal, inverse)
        gradient = getattr(self, f"{name}_gradient")
        if gradient is None or gradient.shape != internal.shape or gradient.dtype != internal.dtype:
            setattr(self, f"{name}_gradient", xp.ascontiguousarray(internal))
        else:
            gradient[...] = internal

    # ------------------------------------------------------------- parameters
    @property
    def params(self) -> dict[str, tuple[ArrayType, ArrayType]]:
        return self._existing_params(*self._param_names)

    def get_config(self) -> dict[str, Any]:
        return {
            "type": type(self).__name__,
            "units": self.units,
            "input_shape": self.input_shape,
            "return_sequences": self.return_sequences,
            "initialization": self.initialization,
        }


#: The backward pass handles at most this many steps at a time (see `Recurrent.backward`).
_CHUNK_STEPS = 8


def _accumulate(z: Any, d_cols: Any, total: Any, first: bool, product: Any) -> None:
    """``total ← z d_colsᵀ`` when ``first``, else ``total += z d_colsᵀ`` (through ``product``)."""
    if first:
        xp.matmul(z, d_cols.T, out=total)
    else:
        xp.matmul(z, d_cols.T, out=product)
        total += product


def _overflow_to_zero() -> Any:
    """NumPy's overflow warnings off: exp(−z) = inf for z < −88 gives σ(z) = 1/inf = 0, exactly
    the limit (CuPy never warns)."""
    errstate = getattr(xp, "errstate", None)
    return errstate(over="ignore") if errstate is not None else contextlib.nullcontext()


def _sigmoid_of_negated(a: Any) -> None:
    """``a ← 1 / (1 + exp(a))`` in place: σ(z) of the negated pre-activations a = −z."""
    xp.exp(a, out=a)
    a += 1.0
    xp.divide(1.0, a, out=a)  # faster than xp.reciprocal in NumPy


def _tanh_of_scaled(a: Any, out: Any, one: Any = 1.0, two: Any = 2.0) -> None:
    """``out ← 2 / (1 + exp(a)) − 1``: tanh(z) of a = −2z, through ``a`` (overwritten).

    NumPy's float32 exp costs about half its tanh, and the extra passes are cheap.
    ``one`` and ``two`` may be 0-d arrays of the dtype of ``a`` (see `_constants`).
    """
    xp.exp(a, out=a)
    xp.add(a, one, out=a)
    xp.divide(two, a, out=a)
    xp.subtract(a, one, out=out)


def _constants(dtype: Any, *values: float) -> tuple[Any, ...]:
    """``values`` as 0-d arrays of ``dtype``: NumPy takes them about 0.3 µs faster per call
    than Python floats, which counts in the step loop's dozen calls on small blocks."""
    return tuple(xp.asarray(value, dtype=dtype) for value in values)


def _orthogonal(size: int) -> Any:
    """A (size, size) orthogonal matrix: Q of the QR of a normal draw, signs fixed by R."""
    q, r = xp.linalg.qr(xp.random.standard_normal((size, size)))
    signs = xp.where(xp.diagonal(r) < 0, -1.0, 1.0)
    return q * signs


class SimpleRNN(Recurrent):
    """Fully recurrent layer: ``h_t = tanh(x_t W + h_{t-1} U + b)``.

    Parameters: ``input_weights`` (F, units), ``recurrent_weights`` (units, units),
    ``biases`` (units,). See `Recurrent` for the arguments.
    """

    def _step(self, t: int, operands: Any, pre: Any, h: Any) -> None:
        z = pre[0]
        xp.matmul(self._step_weights, operands, out=z)
        _tanh_of_scaled(z, h)

    def _chunk_factors(self, operands: Any, lo: int, hi: int) -> None:
        # tanh' = 1 − h_t² (h_t is block t + 1 of the operands).
        hidden = operands[lo + 1 : hi + 1, : self.units]
        slope = self._slope = self._buffer(f"slope{hi - lo}", hidden.shape, hidden.dtype)
        xp.multiply(hidden, hidden, out=slope)
        xp.subtract(1.0, slope, out=slope)
        self._lo = lo

    def _step_backward(self, t: int, dh: Any, d_in: Any, d_rec: Any) -> None:
        xp.multiply(dh, self._slope[t - self._lo], out=d_in[0])


class LSTM(Recurrent):
    """Long short-term memory layer (PyTorch's equations, gate blocks i, f, g, o).

    With the blocks of ``x_t W + h_{t-1} U + b``: i, f, o = σ(·), g = tanh(·);
    ``c_t = f ⊙ c_{t-1} + i ⊙ g`` and ``h_t = o ⊙ tanh(c_t)``.

    Parameters: ``input_weights`` (F, 4·units), ``recurrent_weights`` (units,
    4·units), ``biases`` (4·units,), initialized with the forget-gate biases at 1.
    See `Recurrent` for the arguments.
    """

    gates = 4
    # Internal order o, i, f, g: the sigmoid gates o, i, f are contiguous in the
    # forward pass, and i, f, g (the gates scaled by dL/dc) are in the backward pass.
    _order = (3, 0, 1, 2)
    # g = tanh(z) = 2σ(2z) − 1: with −2 folded into its block, all four gates go
    # through one exp over the whole contiguous (4, units, N) step.
    _block_scales = (-1.0, -1.0, -1.0, -2.0)

    def _initial_biases(self) -> Any:
        biases = xp.zeros(4 * self.units)
        biases[self.units : 2 * self.units] = 1.0  # forget gate: remember by default
        return biases

    def _begin(self, operands: Any, pre: Any) -> None:
        steps, _, units, n = pre.shape
        self._gates_flat = pre.reshape(steps, 4 * units, n)
        self._cells = self._buffer("cells", (steps + 1, units, n), pre.dtype)
        self._cells[0] = 0.0
        self._tanh_cells = self._buffer("tanh_cells", (steps, units, n), pre.dtype)
        self._scratch = self._buffer("scratch", (units, n), pre.dtype)
        self._one, self._two, self._minus_two = _constants(pre.dtype, 1.0, 2.0, -2.0)

    def _step(self, t: int, operands: Any, pre: Any, h: Any) -> None:
        units, one, two = self.units, self._one, self._two
        if t:
            xp.matmul(self._step_weights, operands, out=self._gates_flat[t])
        else:  # h_0 = 0: only the rows [1; x_0] count
            xp.matmul(self._step_weights[:, units:], operands[units:], out=self._gates_flat[t])
        xp.exp(pre, out=pre)
        xp.add(pre, one, out=pre)
        sigmoids, g = pre[:3], pre[3]
        xp.divide(one, sigmoids, out=sigmoids)  # o, i, f = σ(z)
        xp.divide(two, g, out=g)
        xp.subtract(g, one, out=g)  # g = 2σ(2z) − 1 = tanh(z)
        c, scratch = self._cells[t + 1], self._scratch
        xp.multiply(pre[2], self._cells[t], out=c)
        xp.multiply(pre[1], g, out=scratch)
        xp.add(c, scratch, out=c)
        tanh_c = self._tanh_cells[t]
        xp.multiply(c, self._minus_two, out=tanh_c)
        _tanh_of_scaled(tanh_c, tanh_c, one, two)
        xp.multiply(pre[0], tanh_c, out=h)

    def _begin_backward(self, operands: Any, steps: int) -> None:
        units = self.units
        n, dtype = self.input.shape[0], self.output.dtype
        self._gates = self._buffer("gates", (steps, 4, units, n), dtype)
        self._cells = self._buffer("cells", (steps + 1, units, n), dtype)
        self._tanh_cells = self._buffer("tanh_cells", (steps, units, n), dtype)
        self._scratch = self._buffer("scratch", (units, n), dtype)
        self._dc = self._buffer("dc", (units, n), dtype)  # dL/dc_t, carried backwards
        self._dc[...] = 0.0

    def _chunk_factors(self, operands: Any, lo: int, hi: int) -> None:
        # The factors that do not depend on the incoming gradient, for several steps at
        # once (a few larger passes instead of many small ones): with the blocks o, i, f, g,
        # k_o = tanh(c)·o(1−o) = h(1−o), k_i = g·i(1−i), k_f = c_{t−1}·f(1−f),
        # k_g = i·(1−g²), and k_c = o·(1 − tanh²(c)) = o − h·tanh(c), the path from h_t
        # to c_t (h_t = o·tanh(c_t) is in the operands of step t + 1).
        gates, tanh_c = self._gates[lo:hi], self._tanh_cells[lo:hi]
        hidden = operands[lo + 1 : hi + 1, : self.units]
        k = self._k = self._buffer(f"k{hi - lo}", (hi - lo, 5, *gates.shape[2:]), gates.dtype)
        self._lo = lo
        xp.subtract(1.0, gates[:, :3], out=k[:, :3])
        k[:, 0] *= hidden
        k[:, 1:3] *= gates[:, 1:3]
        k[:, 1] *= gates[:, 3]
        k[:, 2] *= self._cells[lo:hi]
        k_g = k[:, 3]
        xp.multiply(gates[:, 3], gates[:, 3], out=k_g)
        xp.subtract(1.0, k_g, out=k_g)
        k_g *= gates[:, 1]
        k_c = k[:, 4]
        xp.multiply(hidden, tanh_c, out=k_c)
        xp.subtract(gates[:, 0], k_c, out=k_c)

    def _step_backward(self, t: int, dh: Any, d_in: Any, d_rec: Any) -> None:
        # dL/dpre = [dh·k_o, dc·k_i, dc·k_f, dc·k_g] with dc = dc_{t+1}·f_{t+1} + dh·k_c.
        k, scratch, dc = self._k[t - self._lo], self._scratch, self._dc
        xp.multiply(dh, k[0], out=d_in[0])
        xp.multiply(dh, k[4], out=scratch)
        dc += scratch
        xp.multiply(dc, k[1:4], out=d_in[1:])
        dc *= self._gates[t, 2]


class GRU(Recurrent):
    """Gated recurrent unit (PyTorch's equations, gate blocks r, z, n).

    ``r = σ(x W_r + b_r + h U_r + c_r)``, ``z = σ(x W_z + b_z + h U_z + c_z)``,
    ``n = tanh(x W_n + b_n + r ⊙ (h U_n + c_n))``, ``h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}``,
    with b the ``biases`` blocks and c the ``recurrent_biases`` blocks.

    Parameters: ``input_weights`` (F, 3·units), ``recurrent_weights`` (units,
    3·units), ``biases`` (3·units,), ``recurrent_biases`` (3·units,).
    See `Recurrent` for the arguments.
    """

    gates = 3
    _order = (0, 1, 2)
    _block_scales = (-1.0, -1.0, 1.0)
    _param_names = ("input_weights", "recurrent_weights", "biases", "recurrent_biases")

    recurrent_biases: Any

    def _prepare_weights(self) -> None:
        # The n block needs h U_n + c_n apart from the input side, so the two sides are
        # two products: ``[b; W]ᵀ`` on [1; x_t] for all steps before the loop, and
        # ``[U; c]ᵀ`` on [h_t; 1] each step (r and z negated for the exp of the sigmoid).
        biases = self.biases.reshape(1, -1)
        recurrent_biases = self.recurrent_biases.reshape(1, -1)
        self._input_weights_t = self._stack("input_weights_t", [biases, self.input_weights]).T
        self._step_weights = self._stack(
            "step_weights", [self.recurrent_weights, recurrent_biases]
        ).T

    def _begin(self, operands: Any, pre: Any) -> None:
        steps, _, units, n = pre.shape
        xp.matmul(
            self._input_weights_t,
            operands[:steps, units:],
            out=pre.reshape(steps, 3 * units, n),
        )
        # (h U + c)ᵀ of every step: its n block is kept for the backward pass.
        self._products = self._buffer("products", pre.shape, pre.dtype)
        self._scratch = self._buffer("scratch", (units, n), pre.dtype)

    def _step(self, t: int, operands: Any, pre: Any, h: Any) -> None:
        units = self.units
        product = self._products[t]
        xp.matmul(self._step_weights, operands[: units + 1], out=product.reshape(-1, h.shape[1]))
        pre[:2] += product[:2]
        _sigmoid_of_negated(pre[:2])
        r, z, n = pre
        xp.multiply(r, product[2], out=self._scratch)
        n += self._scratch
        n *= -2.0
        _tanh_of_scaled(n, n)
        xp.subtract(operands[:units], n, out=h)
        h *= z
        h += n

    def _begin_backward(self, operands: Any, steps: int) -> None:
        units = self.units
        n, dtype = self.input.shape[0], self.output.dtype
        self._gates = self._buffer("gates", (steps, 3, units, n), dtype)
        self._products = self._buffer("products", (steps, 3, units, n), dtype)
        self._through_z = self._buffer("through_z", (units, n), dtype)

    def _chunk_factors(self, operands: Any, lo: int, hi: int) -> None:
        # Step-independent factors of several steps at once: with the blocks r, z, n,
        # k_r = (h U_n + c_n)·r(1−r), k_z = (h_{t−1} − n)·z(1−z), k_n = (1−z)(1−n²).
        gates = self._gates[lo:hi]
        k = self._k = self._buffer(f"k{hi - lo}", gates.shape, gates.dtype)
        self._lo = lo
        xp.subtract(1.0, gates[:, :2], out=k[:, :2])
        k[:, :2] *= gates[:, :2]
        k[:, 0] *= self._products[lo:hi, 2]
        k_z = k[:, 1]
        scratch = self._buffer(f"h_minus_n{hi - lo}", k_z.shape, k.dtype)
        xp.subtract(operands[lo:hi, : self.units], gates[:, 2], out=scratch)
        k_z *= scratch
        k_n = k[:, 2]
        xp.multiply(gates[:, 2], gates[:, 2], out=k_n)
        xp.subtract(1.0, k_n, out=k_n)
        xp.subtract(1.0, gates[:, 1], out=scratch)
        k_n *= scratch

    def _recurrent_gradient_buffer(self, d_in: Any) -> Any:
        # The n block of the product h U differs from the input side's: it is scaled by r.
        return self._buffer("d_rec", d_in.shape, d_in.dtype)

    def _carry(self, dh: Any) -> None:
        dh += self._through_z

    def _step_backward(self, t: int, dh: Any, d_in: Any, d_rec: Any) -> None:
        # dL/dn_pre = dh·k_n, dL/dz_pre = dh·k_z, dL/dr_pre = dL/dn_pre·k_r; the
        # recurrent side's n block is dL/dn_pre·r.
        k, gates = self._k[t - self._lo], self._gates[t]
        xp.multiply(dh, k[1:], out=d_in[1:])
        xp.multiply(d_in[2], k[0], out=d_in[0])
        d_rec[:2] = d_in[:2]
        xp.multiply(d_in[2], gates[0], out=d_rec[2])
        xp.multiply(dh, gates[1], out=self._through_z)  # h_{t-1} -> h_t through z
