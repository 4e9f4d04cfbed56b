"""Optimizers: they update, in place, the parameters that layers expose through ``params``.

Per-parameter state (velocities, caches, moments, accumulators) is one array per parameter,
created on first use and keyed ``layer_{i}_{name}``, ``i`` being the layer's index
in the list given to `Optimizer.step`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Iterator
from typing import Any, Literal, get_args

import numpy

from . import _checks, threads
from .backend import ArrayType, xp

__all__ = ["SGD", "Adagrad", "Adam", "Lit_R", "Optimizer", "RMSprop"]

Lit_R = Literal["L1", "L2"]
"""The regularizations: L1 adds ``weight_decay · sign(w)``, L2 adds ``weight_decay · w``."""
_NOT_REGULARIZED = ("bias", "beta", "gamma")

BLOCK = 131072 if xp is numpy else None
"""Elements per block of an update on the CPU (None on a GPU: no blocks).

An update is a dozen passes over the parameter, its gradient and its state; cut into
blocks, each block's arrays stay in the CPU caches between passes (Adam on a
3872x128 weight: 1.03 ms instead of 1.43 ms on the benchmark machine). Smaller
parameters gain nothing and are updated whole; on a GPU each pass is one kernel over
the whole array. The result is the same, bit for bit, since updates are element-wise.
"""


def _average_square(average: Any, gradient: Any, rate: float, buffer: Any) -> None:
    """``average ← rate·average + (1 − rate)·gradient²``, in place through ``buffer``."""
    xp.multiply(gradient, gradient, out=buffer)
    buffer *= 1.0 - rate
    average *= rate
    average += buffer


def _descend(
    value: Any, direction: Any, mean_square: Any, epsilon: float, step: float, buffer: Any
) -> None:
    """``value ← value − step · direction / (√mean_square + epsilon)``, through ``buffer``."""
    xp.sqrt(mean_square, out=buffer)
    buffer += epsilon
    xp.divide(direction, buffer, out=buffer)
    buffer *= step
    value -= buffer


class Optimizer:
    """Base of the optimizers; ``step`` only clips the gradients here.

    Gradient clipping happens at the start of every step, before the
    regularization term is added: with ``clipvalue`` every gradient value is
    clipped to ``[-clipvalue, clipvalue]``; then with ``clipnorm``, when the global
    norm ``‖g‖ = √(Σ over all parameters of the step of Σ g²)`` exceeds
    ``clipnorm``, every gradient is multiplied by ``clipnorm / ‖g‖``. The layers'
    gradient arrays are changed in place.

    Args:
        learning_rate: Step size, > 0.
        regularization: ``"L1"`` or ``"L2"``.
        weight_decay: Regularization strength, >= 0 (0 disables it).
        clipnorm: The largest global gradient norm, > 0, or None.
        clipvalue: The largest absolute gradient value, > 0, or None.
    """

    def __init__(
        self,
        learning_rate: float,
        regularization: Lit_R,
        weight_decay: float,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
    ) -> None:
        name = type(self).__name__
        self.learning_rate = _checks.number_in(
            name, "learning_rate", learning_rate, 0.0, math.inf, low_open=True
        )
        self.regularization = _checks.choice(
            name, "regularization", regularization, get_args(Lit_R)
        )
        self.weight_decay = _checks.number_in(name, "weight_decay", weight_decay, 0.0, math.inf)
        self.clipnorm = _optional_positive(name, "clipnorm", clipnorm)
        self.clipvalue = _optional_positive(name, "clipvalue", clipvalue)
        self._buffers: dict[str, Any] = {}  # scratch space per parameter, not state

    def step(self, layers: Iterable[Any]) -> None:
        """Update in place the parameters of every object in ``layers`` that has ``params``."""
        parameters = list(self._parameters(layers))
        self._clip([gradient for *_, gradient in parameters])
        for key, name, value, gradient in parameters:
            arrays = (value, gradient, *self._slots(key, value), self._scratch(key, value))
            if (
                BLOCK is None
                or value.size <= BLOCK
                or not all(a.flags.c_contiguous for a in arrays)
            ):
                self._update(name, *arrays)
            else:
                self._update_blocks(name, [a.reshape(-1) for a in arrays])  # views

    def _update_blocks(self, name: str, flat: list[Any]) -> None:
        """`_update` block by block over flat views; with `threads` active, the blocks
        (independent: the update is element-wise) split across the cores."""
        size = flat[0].size
        step = BLOCK or size
        blocks = range(0, size, step)

        def share(first: int, last: int) -> None:
            for start in blocks[first:last]:
                self._update(name, *(a[start : start + step] for a in flat))

        threads.run(share, len(blocks), 100 * size)

    def _clip(self, gradients: list[ArrayType]) -> None:
        """Clip the gradients in place, by value then by global norm."""
        if self.clipvalue is not None:
            for gradient in gradients:
                xp.clip(gradient, -self.clipvalue, self.clipvalue, out=gradient)
        if self.clipnorm is not None and gradients:
            # One reduction per parameter, summed on the device: a single transfer.
            squares = sum(xp.vdot(g.ravel(), g.ravel()) for g in gradients)
            norm = math.sqrt(float(squares))
            if norm > self.clipnorm:
                for gradient in gradients:
                    gradient *= self.clipnorm / norm

    def _slots(self, key: str, value: ArrayType) -> tuple[ArrayType, ...]:
        """The per-parameter state arrays of ``key`` (none for the base class)."""
        return ()

    def _update(self, name: str, value: ArrayType, gradient: ArrayType, *arrays: Any) -> None:
        """Update ``value`` in place; ``arrays`` are its state slots, then a scratch buffer.

        The arrays may be matching blocks of the whole ones: the update is element-wise.
        """

    @staticmethod
    def _parameters(layers: Iterable[Any]) -> Iterator[tuple[str, str, ArrayType, ArrayType]]:
        for i, layer in enumerate(layers):
            params = getattr(layer, "params", None)
            if not params:
                continue
            for name, (value, gradient) in params.items():
                if gradient is not None:
                    yield f"layer_{i}_{name}", name, value, gradient

    def apply_regularization(self, name: str, param: ArrayType) -> ArrayType | float:
        """The regularization term of a parameter: 0 for biases, beta and gamma.

        Args:
            name: The parameter's name in its layer's ``params``.
            param: Its value.

        Returns:
            ``weight_decay · param`` (L2), ``weight_decay · sign(param)`` (L1), or 0.
        """
        if self.weight_decay == 0.0 or any(word in name for word in _NOT_REGULARIZED):
            return 0
        if self.regularization == "L1":
            return self.weight_decay * xp.sign(param)
        return self.weight_decay * param

    def _state(self, store: dict[str, Any], key: str, like: ArrayType) -> Any:
        """The state array ``store[key]``, created as zeros shaped like the parameter."""
        state = store.get(key)
        if state is None or state.shape != like.shape:
            state = store[key] = xp.zeros_like(like)
        return state

    def _scratch(self, key: str, like: ArrayType) -> Any:
        """A reusable work buffer shaped like the parameter, so updates allocate nothing."""
        buffer = self._buffers.get(key)
        if buffer is None or buffer.shape != like.shape or buffer.dtype != like.dtype:
            buffer = self._buffers[key] = xp.empty_like(like)
        return buffer

    def _decays(self, name: str) -> bool:
        return self.weight_decay != 0.0 and not any(word in name for word in _NOT_REGULARIZED)

    def _add_regularization(
        self, name: str, value: ArrayType, gradient: ArrayType, buffer: ArrayType
    ) -> None:
        """``gradient += apply_regularization(name, value)``, in place through ``buffer``."""
        if not self._decays(name):
            return
        if self.regularization == "L1":
            xp.sign(value, out=buffer)
            buffer *= self.weight_decay
        else:
            xp.multiply(value, self.weight_decay, out=buffer)
        gradient += buffer

    @property
    def params(self) -> dict[str, Any]:
        """The optimizer's own state, e.g. ``{"velocities": {key: array}}``; ``{}`` here."""
        return {}

    def get_config(self) -> dict[str, Any]:
        """``{"type", "learning_rate", "regularization", "weight_decay"}`` + subclass arguments.

        ``clipnorm`` and ``clipvalue`` are included when set.
        """
        config = {
            "type": type(self).__name__,
            "learning_rate": self.learning_rate,
            "regularization": self.regularization,
            "weight_decay": self.weight_decay,
        }
        for name in ("clipnorm", "clipvalue"):
            if getattr(self, name) is not None:
                config[name] = getattr(self, name)
        return config

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor arguments, scikit-learn style: `get_config` less ``"type"``.

        An argument that `get_config` leaves out (``clipnorm=None``) gets its default.
        With this and `set_params`, an optimizer given to an estimator of
        `mpneuralnetwork.wrappers` is cloned by ``sklearn.base.clone`` and searched
        over as ``optimizer__learning_rate``.

        Args:
            deep: Accepted for scikit-learn; an optimizer holds no nested estimator.
        """
        config = self.get_config()
        params = {}
        for name, parameter in inspect.signature(type(self)).parameters.items():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            if name in config:
                params[name] = config[name]
            elif parameter.default is not parameter.empty:
                params[name] = parameter.default
            else:
                params[name] = getattr(self, name)
        return params

    def set_params(self, **params: Any) -> Optimizer:
        """Change constructor arguments in place (checked as the constructor checks them).

        The optimizer's state (moments, step count) is kept.

        Raises:
            ValueError: An unknown argument, or a value the constructor refuses.
        """
        current = self.get_params()
        unknown = sorted(set(params) - set(current))
        if unknown:
            raise ValueError(
                f"{type(self).__name__}.set_params: unknown arguments {unknown}; "
                f"expected some of {sorted(current)}"
            )
        checked = type(self)(**{**current, **params})
        for name in params:
            setattr(self, name, getattr(checked, name))
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "type")
        return f"{type(self).__name__}({args})"


def _optional_positive(owner: str, name: str, value: Any) -> float | None:
    if value is None:
        return None
    return _checks.number_in(owner, name, value, 0.0, math.inf, low_open=True)


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, optionally Nesterov's.

    ``g ← g + r; v ← momentum·v − lr·g; w ← w + v`` (r the regularization term). With
    ``nesterov=True`` the step looks ahead along the new velocity:
    ``w ← w + momentum·v − lr·g``, which at a constant rate is PyTorch's
    ``SGD(momentum=momentum, nesterov=True)`` (dampening 0).

    Args:
        learning_rate: Step size.
        regularization: ``"L1"`` or ``"L2"``.
        weight_decay: Regularization strength.
        momentum: Fraction of the previous velocity kept, in [0, 1].
        clipnorm: Clip the global gradient norm to this (see `Optimizer`), or None.
        clipvalue: Clip every gradient value to ±this, or None.
        nesterov: Nesterov momentum; in ``get_config`` only when True.
    """

    def __init__(
        self,
        learning_rate: float = 0.01,
        regularization: Lit_R = "L2",
        weight_decay: float = 0.001,
        momentum: float = 0.1,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        nesterov: bool = False,
    ) -> None:
        super().__init__(learning_rate, regularization, weight_decay, clipnorm, clipvalue)
        self.momentum = _checks.number_in("SGD", "momentum", momentum, 0.0, 1.0)
        self.nesterov = _checks.boolean("SGD", "nesterov", nesterov)
        self.velocities: dict[str, Any] = {}

    def _slots(self, key: str, value: ArrayType) -> tuple[ArrayType, ...]:
        return (self._state(self.velocities, key, value),)

    def _update(self, name: str, value: ArrayType, gradient: ArrayType, *arrays: Any) -> None:
        velocity, buffer = arrays
        self._add_regularization(name, value, gradient, buffer)
        velocity *= self.momentum
        xp.multiply(gradient, self.learning_rate, out=buffer)
        velocity -= buffer
        if self.nesterov:  # w ← w − lr·g + momentum·v
            value -= buffer
            xp.multiply(velocity, self.momentum, out=buffer)
            value += buffer
        else:
            value += velocity

    @property
    def params(self) -> dict[str, Any]:
        return {"velocities": self.velocities}

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), "momentum": self.momentum}
        if self.nesterov:  # absent when False: the 1.1 configuration, unchanged
            config["nesterov"] = True
        return config


class RMSprop(Optimizer):
    """RMSprop: ``g ← g + r; c ← decay·c + (1 − decay)·g²; w ← w − lr·g/(√c + ε)``.

    Args:
        learning_rate: Step size.
        regularization: ``"L1"`` or ``"L2"``.
        weight_decay: Regularization strength.
        decay_rate: Weight of the old squared-gradient average, in [0, 1).
        epsilon: Keeps the division finite.
        clipnorm: Clip the global gradient norm to this (see `Optimizer`), or None.
        clipvalue: Clip every gradient value to ±this, or None.
    """

    def __init__(
        self,
        learning_rate: float = 0.001,
        regularization: Lit_R = "L2",
        weight_decay: float = 0.001,
        decay_rate: float = 0.9,
        epsilon: float = 1e-8,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
    ) -> None:
        super().__init__(learning_rate, regularization, weight_decay, clipnorm, clipvalue)
        self.decay_rate = _checks.number_in(
            "RMSprop", "decay_rate", decay_rate, 0.0, 1.0, high_open=True
        )
        self.epsilon = _checks.number_in(
            "RMSprop", "epsilon", epsilon, 0.0, math.inf, low_open=True
        )
        self.cache: dict[str, Any] = {}

    def _slots(self, key: str, value: ArrayType) -> tuple[ArrayType, ...]:
        return (self._state(self.cache, key, value),)

    def _update(self, name: str, value: ArrayType, gradient: ArrayType, *arrays: Any) -> None:
        cache, buffer = arrays
        self._add_regularization(name, value, gradient, buffer)
        _average_square(cache, gradient, self.decay_rate, buffer)
        _descend(value, gradient, cache, self.epsilon, self.learning_rate, buffer)

    @property
    def params(self) -> dict[str, Any]:
        return {"cache": self.cache}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "decay_rate": self.decay_rate, "epsilon": self.epsilon}


class Adam(Optimizer):
    """Adam with bias correction; with L2 the weight decay is decoupled (AdamW).

    Per step: ``t ← t + 1``; with L1, ``g ← g + r``; ``m ← β1·m + (1 − β1)·g``;
    ``v ← β2·v + (1 − β2)·g²``; ``w ← w − lr/(1 − β1^t) · m / (√v/√(1 − β2^t) + ε)``;
    with L2, then ``w ← w − lr·r`` (r computed from w before the step). With
    ``no_bias_correction=True`` the moments are used as they are:
    ``w ← w − lr · m / (√v + ε)``: the early steps are then off by
    (1 − β1^t)/√(1 − β2^t) (about 3.2 at t = 1 with the default betas).

    Args:
        learning_rate: Step size.
        regularization: ``"L1"`` or ``"L2"``.
        weight_decay: Regularization strength.
        beta1: Decay of the first moment, in [0, 1).
        beta2: Decay of the second moment, in [0, 1).
        epsilon: Keeps the division finite.
        clipnorm: Clip the global gradient norm to this (see `Optimizer`), or None.
        clipvalue: Clip every gradient value to ±this, or None.
        no_bias_correction: Leave out the 1/(1 − β^t) divisors; in ``get_config`` only
            when True.
    """

    def __init__(
        self,
        learning_rate: float = 0.001,
        regularization: Lit_R = "L2",
        weight_decay: float = 0.001,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        no_bias_correction: bool = False,
    ) -> None:
        super().__init__(learning_rate, regularization, weight_decay, clipnorm, clipvalue)
        self.beta1 = _checks.number_in("Adam", "beta1", beta1, 0.0, 1.0, high_open=True)
        self.beta2 = _checks.number_in("Adam", "beta2", beta2, 0.0, 1.0, high_open=True)
        self.epsilon = _checks.number_in("Adam", "epsilon", epsilon, 0.0, math.inf, low_open=True)
        self.no_bias_correction = _checks.boolean("Adam", "no_bias_correction", no_bias_correction)
        self.t = 0
        self.momentums: dict[str, Any] = {}
        self.velocities: dict[str, Any] = {}

    def step(self, layers: Iterable[Any]) -> None:
        """Advance ``t`` once, then update every parameter."""
        self.t += 1
        t = self.t
        if self.no_bias_correction:  # lr · m / (√v + ε)
            self._scaled_step, self._scaled_epsilon = self.learning_rate, self.epsilon
        else:
            # lr/(1 − β1^t) · m / (√v/√(1 − β2^t) + ε) is computed as
            # scaled_step · m / (√v + scaled_epsilon), both scales multiplied by √(1 − β2^t).
            root = math.sqrt(1.0 - self.beta2**t)
            self._scaled_step = self.learning_rate * root / (1.0 - self.beta1**t)
            self._scaled_epsilon = self.epsilon * root
        super().step(layers)

    def _slots(self, key: str, value: ArrayType) -> tuple[ArrayType, ...]:
        return self._state(self.momentums, key, value), self._state(self.velocities, key, value)

    def _update(self, name: str, value: ArrayType, gradient: ArrayType, *arrays: Any) -> None:
        m, v, buffer = arrays
        if self.regularization == "L1":
            self._add_regularization(name, value, gradient, buffer)
        elif self._decays(name):
            # Decoupled decay w ← w − lr·wd·w, applied first so that it uses the old w.
            value *= 1.0 - self.learning_rate * self.weight_decay
        xp.multiply(gradient, 1.0 - self.beta1, out=buffer)  # m ← β1·m + (1 − β1)·g
        m *= self.beta1
        m += buffer
        _average_square(v, gradient, self.beta2, buffer)
        _descend(value, m, v, self._scaled_epsilon, self._scaled_step, buffer)

    @property
    def params(self) -> dict[str, Any]:
        return {"t": self.t, "momentums": self.momentums, "velocities": self.velocities}

    def get_config(self) -> dict[str, Any]:
        config = {
            **super().get_config(),
            "beta1": self.beta1,
            "beta2": self.beta2,
            "epsilon": self.epsilon,
        }
        if self.no_bias_correction:  # absent when False: the 1.1 configuration, unchanged
            config["no_bias_correction"] = True
        return config


class Adagrad(Optimizer):
    """Adagrad: ``g ← g + r; s ← s + g²; w ← w − lr·g/(√s + ε)``.

    PyTorch's ``Adagrad`` with a zero initial accumulator and no learning-rate decay
    (its ``weight_decay`` is this L2). The accumulated squares only grow, so every
    parameter's steps shrink as its gradients add up.

    Args:
        learning_rate: Step size.
        regularization: ``"L1"`` or ``"L2"``.
        weight_decay: Regularization strength.
        epsilon: Keeps the division finite, > 0.
        clipnorm: Clip the global gradient norm to this (see `Optimizer`), or None.
        clipvalue: Clip every gradient value to ±this, or None.
    """

    def __init__(
        self,
        learning_rate: float = 0.01,
        regularization: Lit_R = "L2",
        weight_decay: float = 0.001,
        epsilon: float = 1e-10,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
    ) -> None:
        super().__init__(learning_rate, regularization, weight_decay, clipnorm, clipvalue)
        self.epsilon = _checks.number_in(
            "Adagrad", "epsilon", epsilon, 0.0, math.inf, low_open=True
        )
        self.accumulators: dict[str, Any] = {}

    def _slots(self, key: str, value: ArrayType) -> tuple[ArrayType, ...]:
        return (self._state(self.accumulators, key, value),)

    def _update(self, name: str, value: ArrayType, gradient: ArrayType, *arrays: Any) -> None:
        accumulator, buffer = arrays
        self._add_regularization(name, value, gradient, buffer)
        xp.multiply(gradient, gradient, out=buffer)
        accumulator += buffer
        _descend(value, gradient, accumulator, self.epsilon, self.learning_rate, buffer)

    @property
    def params(self) -> dict[str, Any]:
        return {"accumulators": self.accumulators}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "epsilon": self.epsilon}
