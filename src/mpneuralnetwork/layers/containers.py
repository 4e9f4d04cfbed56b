"""Container layers: layers that hold layers, for networks that are not one straight stack.

A container is a `Layer`, so it nests anywhere a layer goes (in a `Model`, in another
container). Three shapes of network cover ResNets, Inception-style branches and
Transformer blocks:

- `Sequential`: its layers in order, as a block of its own;
- `Residual`: output = F(x) + S(x), a skip connection around F;
- `Concatenate`: several branches on the same input, their outputs joined.

Parameters and state stay on the inner layers, under the names they have there. The
container shows them, as everything else that walks layers sees them (optimizers,
checkpoints, `save_model`), under the inner layer's position: parameter ``kernels`` of
the inner layer ``j`` is ``"{j}_kernels"`` (``"{j}_{k}_kernels"`` one level deeper), so
a model's array ``layer_3_1_kernels`` is the kernels of the second layer of its fourth
layer.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..backend import ArrayType, xp
from .layer import Layer

__all__ = ["Concatenate", "Container", "Residual", "Sequential"]

#: Called with each layer that is not a container before a container builds it:
#: ``(path prefix of its arrays such as "1_0_", the layer, its input shape)``.
BuildHook = Callable[[str, Layer, tuple[int, ...]], None]


def _layer_list(owner: str, argument: str, layers: Any, allow_empty: bool = False) -> list[Layer]:
    """``layers`` as a list of layers, or a ValueError naming the container and argument."""
    if isinstance(layers, Layer) or not isinstance(layers, Sequence) or isinstance(layers, str):
        raise TypeError(
            f"{owner}: {argument} must be a list of layers; got {type(layers).__name__}"
        )
    for j, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(f"{owner}: {argument}[{j}] must be a Layer; got {type(layer).__name__}")
    if not layers and not allow_empty:
        raise ValueError(f"{owner}: {argument} must hold at least one layer; got []")
    return list(layers)


class Container(Layer):
    """Base of the layers that hold layers; it runs them and shows their parameters.

    A subclass lists its inner layers as ``sequences``: the runs of layers in which
    each layer feeds the next (smart initialization looks for the activation that
    follows a layer within its run). Its ``children`` are those layers, in order;
    their positions name their arrays.
    """

    def __init__(self) -> None:
        super().__init__()
        children = self.children
        first = self.sequences[0][0] if self.sequences and self.sequences[0] else None
        # A container starting with a layer that declares its input declares it too.
        if first is not None and first.input_shape is not None:
            self.input_shape = first.input_shape
        self.integer_input = first is not None and first.integer_input
        self.splits_work = any(child.splits_work for child in children)

    # ------------------------------------------------------------------ layout
    @property
    def sequences(self) -> list[list[Layer]]:
        """The runs of inner layers, each layer feeding the next within its run."""
        raise NotImplementedError

    @property
    def children(self) -> list[Layer]:
        """The inner layers, in order: child ``j``'s arrays are named ``"{j}_..."``."""
        return [layer for run in self.sequences for layer in run]

    # ---------------------------------------------------------------- building
    def build(self, input_shape: int | tuple[int, ...]) -> None:
        """Build every inner layer on the shape it receives, then check the joins."""
        self.build_checked(input_shape, None)

    def build_checked(self, input_shape: int | tuple[int, ...], hook: BuildHook | None) -> None:
        """`build`, calling ``hook`` with each inner non-container layer before building it.

        `load_model` uses the hook to compare a layer's arrays in the file with the
        shapes its configuration implies before the layer allocates anything.
        """
        super().build(input_shape)
        self.output_shape = self._build_children(self._known("input_shape"), hook)

    def _build_children(self, shape: tuple[int, ...], hook: BuildHook | None) -> tuple[int, ...]:
        raise NotImplementedError

    def _build_run(
        self, run: Sequence[Layer], first: int, shape: tuple[int, ...], hook: BuildHook | None
    ) -> tuple[int, ...]:
        """Build ``run`` (children ``first``, ``first + 1``, ...) on ``shape``; its output shape."""
        for j, layer in enumerate(run, first):
            try:
                if isinstance(layer, Container):
                    nested = None if hook is None else _prefixed(hook, f"{j}_")
                    layer.build_checked(shape, nested)
                else:
                    if hook is not None:
                        hook(f"{j}_", layer, shape)
                    layer.build(shape)
            except ValueError as error:
                raise ValueError(f"{type(layer).__name__} at position {j}: {error}") from None
            shape = layer._known("output_shape")
        return shape

    # ------------------------------------------------------------- computation
    @staticmethod
    def _forward_run(run: Sequence[Layer], x: Any, training: bool) -> Any:
        for layer in run:
            x = layer.forward(x, training)
        return x

    @staticmethod
    def _backward_run(run: Sequence[Layer], gradient: Any) -> Any:
        for layer in reversed(run):
            gradient = layer.backward(gradient)
            if gradient is None:  # a layer whose input is not differentiable (Embedding)
                return None
        return gradient

    def _checked(self, input_batch: Any) -> Any:
        """The input as a backend array (integer ids kept), checked against input_shape."""
        x = input_batch if isinstance(input_batch, xp.ndarray) else xp.asarray(input_batch)
        if self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"{type(self).__name__}.forward: input_batch must have shape "
                f"(N, {', '.join(map(str, self.input_shape))}); got {tuple(x.shape)}"
            )
        return x

    # -------------------------------------------------------------- parameters
    @property
    def params(self) -> dict[str, tuple[ArrayType, ArrayType]]:
        """The inner layers' parameters, named ``"{position}_{name}"``: the very arrays."""
        return {
            f"{j}_{name}": pair
            for j, layer in enumerate(self.children)
            for name, pair in layer.params.items()
        }

    @property
    def state(self) -> dict[str, ArrayType]:
        """The inner layers' state arrays, named ``"{position}_{name}"``."""
        return {
            f"{j}_{name}": value
            for j, layer in enumerate(self.children)
            for name, value in layer.state.items()
        }

    @state.setter
    def state(self, values: dict[str, Any]) -> None:
        for _, layer, part in self._split(values, "state"):
            layer.state = part

    def load_params(self, params: dict[str, Any]) -> None:
        """Copy ``{"{position}_{name}": value}`` into the inner layers' parameters."""
        for _, layer, part in self._split(params, "parameter"):
            layer.load_params(part)

    def _split(self, values: dict[str, Any], kind: str) -> Iterator[tuple[int, Layer, dict]]:
        """``values`` by inner layer: ``(position, layer, {name: value})``."""
        children = self.children
        parts: dict[int, dict[str, Any]] = {}
        for key, value in values.items():
            head, _, name = key.partition("_")
            if not head.isdigit() or int(head) >= len(children) or not name:
                raise ValueError(
                    f"{type(self).__name__}: unknown {kind} {key!r}; expected "
                    f"'<position>_<name>' with a position below {len(children)}"
                )
            parts.setdefault(int(head), {})[name] = value
        for j, part in sorted(parts.items()):
            yield j, children[j], part

    def array_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]] | None:
        """The arrays of every inner layer, named as in `params` and `state`.

        The inner layers are built to know the shapes between them; `load_model`
        checks each one before it is built (`build_checked`) instead.
        """
        shapes: dict[str, tuple[int, ...]] = {}

        def collect(prefix: str, layer: Layer, shape: tuple[int, ...]) -> None:
            found = layer.array_shapes(shape)
            if found is None:
                raise _Unknown
            shapes.update({prefix + name: s for name, s in found.items()})

        try:
            self.build_checked(input_shape, collect)
        except _Unknown:
            return None
        return shapes

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict[str, Any]:
        """``{"type": ..., "layers": [inner configs], ...}``: configs nest."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict[str, Any], build: Callable[[Any], Layer]) -> Container:
        """Rebuild a container from `get_config`'s dict, ``build`` making each inner layer.

        Args:
            config: The config, without its ``"type"``.
            build: Makes a layer from a layer config (`load_model` passes its own,
                which knows the user's classes).
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.children!r})"


class _Unknown(Exception):
    """An inner layer cannot tell its array shapes without being built."""


def _prefixed(hook: BuildHook, prefix: str) -> BuildHook:
    return lambda name, layer, shape: hook(prefix + name, layer, shape)


def _configs(layers: Sequence[Layer]) -> list[dict[str, Any]]:
    return [layer.get_config() for layer in layers]


def _rebuilt(owner: str, argument: str, configs: Any, build: Callable[[Any], Layer]) -> list:
    if not isinstance(configs, list):
        raise ValueError(f"{owner}: {argument} must be a list of layer configs; got {configs!r}")
    return [build(config) for config in configs]


class Sequential(Container):
    """Its layers in order, as one layer: a block that nests in a Model or a container.

    Args:
        layers: The layers, at least one. A layer inside a container needs no input
            shape: it is built on the output shape of the layer before it (the first
            on the container's input shape).

    Attributes:
        layers: The inner layers.
    """

    def __init__(self, layers: Sequence[Layer]) -> None:
        self.layers = _layer_list("Sequential", "layers", layers)
        super().__init__()

    @property
    def sequences(self) -> list[list[Layer]]:
        return [self.layers]

    def _build_children(self, shape: tuple[int, ...], hook: BuildHook | None) -> tuple[int, ...]:
        return self._build_run(self.layers, 0, shape, hook)

    def forward(self, input_batch: ArrayType, training: bool = True) -> ArrayType:
        """(N, *input_shape) → (N, *output_shape) through each layer in turn."""
        self.input = self._checked(input_batch)
        self.output = self._forward_run(self.layers, self.input, training)
        return self.output

    def backward(self, output_gradient_batch: ArrayType) -> ArrayType | None:
        """The gradient through each layer in reverse order."""
        return self._backward_run(self.layers, self._check_gradient(output_gradient_batch))

    def get_config(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "layers": _configs(self.layers)}

    @classmethod
    def from_config(cls, config: dict[str, Any], build: Callable[[Any], Layer]) -> Container:
        return cls(_rebuilt(cls.__name__, "layers", config.get("layers"), build))


class Residual(Container):
    """A skip connection: output = F(x) + S(x).

    F runs ``layers`` in order; S is the identity when ``shortcut`` is None, or runs
    the ``shortcut`` layers (a projection where F changes the shape, e.g.
    ``[Convolutional(64, 1, stride=2), BatchNormalization2D()]``). Backward, the
    output gradient G flows through both, and the input gradient is their sum:
    dL/dx = F′ᵀG + S′ᵀG (just F′ᵀG + G through the identity).

    Args:
        layers: The layers of F, at least one.
        shortcut: The layers of S, or None (or ``[]``) for the identity.

    Attributes:
        layers: The layers of F.
        shortcut: The layers of S; empty for the identity.
    """

    def __init__(self, layers: Sequence[Layer], shortcut: Sequence[Layer] | None = None) -> None:
        self.layers = _layer_list("Residual", "layers", layers)
        self.shortcut = (
            [] if shortcut is None else _layer_list("Residual", "shortcut", shortcut, True)
        )
        super().__init__()

    @property
    def sequences(self) -> list[list[Layer]]:
        return [self.layers, self.shortcut]

    def _build_children(self, shape: tuple[int, ...], hook: BuildHook | None) -> tuple[int, ...]:
        branch = self._build_run(self.layers, 0, shape, hook)
        skip = self._build_run(self.shortcut, len(self.layers), shape, hook)
        if branch != skip:
            what = "shortcut" if self.shortcut else "input (identity shortcut)"
            raise ValueError(
                f"the layers output {branch} but the {what} gives {skip}: "
                f"{branch} vs {skip}; F(x) + S(x) needs equal shapes"
                + ("" if self.shortcut else " (give a projection as shortcut=[...])")
            )
        return branch

    def forward(self, input_batch: ArrayType, training: bool = True) -> ArrayType:
        """F(x) + S(x), both (N, *output_shape)."""
        x = self.input = self._checked(input_batch)
        branch = self._forward_run(self.layers, x, training)
        skip = self._forward_run(self.shortcut, x, training)
        # A new array: ``branch`` may be an inner layer's cached output.
        self.output = branch + skip
        return self.output

    def backward(self, output_gradient_batch: ArrayType) -> ArrayType | None:
        """F′ᵀG + S′ᵀG: the gradient reaching x along both paths."""
        g = self._check_gradient(output_gradient_batch)
        through_branch = self._backward_run(self.layers, g)
        through_skip = self._backward_run(self.shortcut, g)
        if through_branch is None or through_skip is None:
            return None
        return through_branch + through_skip

    def get_config(self) -> dict[str, Any]:
        return {
            "type": type(self).__name__,
            "layers": _configs(self.layers),
            "shortcut": _configs(self.shortcut) if self.shortcut else None,
        }

    def __repr__(self) -> str:
        return f"Residual({self.layers!r}, shortcut={self.shortcut or None!r})"

    @classmethod
    def from_config(cls, config: dict[str, Any], build: Callable[[Any], Layer]) -> Container:
        shortcut = config.get("shortcut")
        return cls(
            _rebuilt(cls.__name__, "layers", config.get("layers"), build),
            None if shortcut is None else _rebuilt(cls.__name__, "shortcut", shortcut, build),
        )


class Concatenate(Container):
    """Branches on the same input, their outputs joined along one axis.

    Backward, the output gradient is split back along the axis, each branch takes
    its part, and the input gradient is the sum of the branches' input gradients.

    Args:
        branches: One entry per branch (at least one): a list of layers run in order,
            or a single layer.
        axis: The axis of the whole array (NumPy's numbering, the batch being axis 0)
            along which the outputs are joined: 1 for the channels of (N, C, H, W) or
            the features of (N, F), -1 for the features of sequences (N, T, F). The
            batch axis is refused; the branches' outputs must agree on every other axis.

    Attributes:
        branches: One `Sequential` per branch (each with ``.layers``).
        axis: The axis, as given.
    """

    def __init__(self, branches: Sequence[Sequence[Layer] | Layer], axis: int = 1) -> None:
        if isinstance(branches, Layer) or not isinstance(branches, Sequence) or not branches:
            raise ValueError(
                "Concatenate: branches must be a non-empty list of branches (each a list of "
                f"layers or one layer); got {branches!r}"
            )
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise TypeError(f"Concatenate: axis must be an int; got {axis!r}")
        if axis == 0:
            raise ValueError(
                "Concatenate: axis must not be 0, the batch axis (1 joins the first axis of "
                "each sample, -1 the last); got 0"
            )
        self.axis = axis
        self.branches = [
            branch
            if isinstance(branch, Sequential)
            else Sequential([branch] if isinstance(branch, Layer) else branch)
            for branch in branches
        ]
        self._sizes: list[int] = []  # each branch's extent along the axis, last forward
        super().__init__()

    @property
    def sequences(self) -> list[list[Layer]]:
        return [[branch] for branch in self.branches]

    def _sample_axis(self, ndim: int) -> int:
        """The axis within one sample of ``ndim`` dimensions (the batch axis excluded)."""
        if not (-ndim <= self.axis <= ndim):
            raise ValueError(
                f"axis={self.axis} does not exist for outputs of {ndim} dimension(s) per "
                f"sample (batch included: {ndim + 1}); use 1..{ndim} or -{ndim}..-1"
            )
        return self.axis - 1 if self.axis > 0 else ndim + self.axis

    def _build_children(self, shape: tuple[int, ...], hook: BuildHook | None) -> tuple[int, ...]:
        shapes = [
            self._build_run([branch], j, shape, hook) for j, branch in enumerate(self.branches)
        ]
        ndims = {len(s) for s in shapes}
        if len(ndims) > 1:
            raise ValueError(f"the branches' outputs have different ranks: {shapes}")
        axis = self._sample_axis(len(shapes[0]))
        others = {s[:axis] + s[axis + 1 :] for s in shapes}
        if len(others) > 1:
            raise ValueError(
                f"the branches' outputs {' vs '.join(map(str, shapes))} differ on an axis "
                f"other than axis={self.axis}"
            )
        joined = list(shapes[0])
        joined[axis] = sum(s[axis] for s in shapes)
        return tuple(joined)

    def forward(self, input_batch: ArrayType, training: bool = True) -> ArrayType:
        """Each branch on the same input, outputs joined along ``axis``."""
        x = self.input = self._checked(input_batch)
        outputs = [branch.forward(x, training) for branch in self.branches]
        self._sizes = [out.shape[self.axis] for out in outputs]
        self.output = xp.concatenate(outputs, axis=self.axis)
        return self.output

    def backward(self, output_gradient_batch: ArrayType) -> ArrayType | None:
        """The gradient split back along ``axis``; the branches' input gradients summed."""
        g = self._check_gradient(output_gradient_batch)
        bounds = [0, *itertools.accumulate(self._sizes)]
        total = None
        for branch, first, last in zip(self.branches, bounds, bounds[1:], strict=False):
            index = [slice(None)] * g.ndim
            index[self.axis] = slice(first, last)
            part = branch.backward(xp.ascontiguousarray(g[tuple(index)]))
            if part is None:
                return None
            total = part if total is None else total + part
        return total

    def get_config(self) -> dict[str, Any]:
        return {
            "type": type(self).__name__,
            "branches": [_configs(branch.layers) for branch in self.branches],
            "axis": self.axis,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], build: Callable[[Any], Layer]) -> Container:
        branches = config.get("branches")
        if not isinstance(branches, list):
            raise ValueError(f"{cls.__name__}: branches must be a list; got {branches!r}")
        return cls(
            [_rebuilt(cls.__name__, "branches", b, build) for b in branches],
            config.get("axis", 1),
        )

    def __repr__(self) -> str:
        inner = ", ".join(repr(branch.layers) for branch in self.branches)
        return f"Concatenate([{inner}], axis={self.axis})"


def walk(layers: Sequence[Layer]) -> Iterator[Layer]:
    """Every layer of ``layers``, containers and the layers inside them, depth first."""
    for layer in layers:
        yield layer
        if isinstance(layer, Container):
            yield from walk(layer.children)


def leaves(layers: Sequence[Layer], prefix: str = "") -> Iterator[tuple[str, Layer]]:
    """Every layer that is not a container, with the prefix of its arrays' names.

    With ``prefix="layer_"`` on a model's layers: ``("layer_3_1_", layer)`` for the
    second inner layer of the model's fourth layer, ``("layer_0_", layer)`` for a
    first layer that is not a container.
    """
    for j, layer in enumerate(layers):
        if isinstance(layer, Container):
            yield from leaves(layer.children, f"{prefix}{j}_")
        else:
            yield f"{prefix}{j}_", layer
