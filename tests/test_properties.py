"""Property-based tests: random layer stacks, data and settings, valid or not.

Every generated case goes through the calls a user makes: build the layers, the loss,
the optimizer and the Model, then ``train``, ``evaluate``, ``test``, ``predict`` and a
``save_model`` / ``load_model`` round trip. Each call either works, or raises the
library's own ValueError or TypeError, from library code, with a message naming the
argument at fault. Nothing else may happen: no other exception, and no warning at all
(warnings are errors here; the library's own report of a divergence is printed, with
``verbose=1``). After any ``train``, every weight and every optimizer state is finite;
a saved and reloaded model holds the same arrays and predicts exactly what the
original predicts, and loading leaves the global random state alone.

The examples are derandomized (the same cases on every run, so CI is reproducible);
on failure hypothesis prints the smallest failing case and a reproduction blob.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mpneuralnetwork
from helpers_model import assert_same_arrays, model_arrays
from mpneuralnetwork import activations, layers, losses, optimizers, set_seed
from mpneuralnetwork.model import Model
from mpneuralnetwork.serialization import load_model, save_model

LIBRARY = str(Path(mpneuralnetwork.__file__).resolve().parent)

SETTINGS = settings(
    max_examples=300,
    deadline=None,  # a case trains a model: timings vary too much on shared CI machines
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,  # the suite's autouse seeding fixture
    ],
)

# ------------------------------------------------------------------ strategies
Spec = tuple[str, dict[str, Any]]


def spec(name: str, **arguments: st.SearchStrategy[Any]) -> st.SearchStrategy[Spec]:
    return st.fixed_dictionaries(arguments).map(lambda kwargs: (name, kwargs))


def usually(valid: Any, *invalid: Any) -> st.SearchStrategy[Any]:
    """Valid values (a strategy, or a list to sample), and now and then an invalid one."""
    valid = valid if isinstance(valid, st.SearchStrategy) else st.sampled_from(valid)
    return st.integers(0, 24).flatmap(lambda k: st.sampled_from(invalid) if k == 24 else valid)


DENSE = spec(
    "Dense",
    output_size=usually(st.integers(1, 4), 0, -1, 2.5),
    initialization=usually(["auto", "he", "xavier"], "zeros"),
    no_bias=usually(st.booleans(), "yes"),
)
ACTIVATIONS = st.one_of(
    spec("Tanh"),
    spec("Sigmoid"),
    spec("ReLU"),
    spec("PReLU", alpha=usually([0.01, 0.3, -1.0], float("nan"))),
    spec("Swish"),
    spec(
        "Softmax",
        temperature=usually([0.5, 1.0], -1.0),
        epsilon=usually([1e-8, 0.0], -1e-8),
    ),
)
DROPOUT = spec("Dropout", probability=usually([0.0, 0.3, 0.9], 1.0, -0.1))
FLAT_LAYERS = st.one_of(
    DENSE,
    ACTIVATIONS,
    DROPOUT,
    spec(
        "BatchNormalization",
        momentum=usually([0.0, 0.9, 1.0], 1.5),
        epsilon=usually([1e-5, 1e-3], 0.0),
    ),
)
IMAGE_LAYERS = st.one_of(
    spec(
        "Convolutional",
        output_depth=usually(st.integers(1, 3), 0),
        kernel_size=usually(st.integers(1, 4), 0),
        padding=usually(["valid", "same", 0, 1, 2], -1, "full"),
        stride=usually(st.integers(1, 3), 0),
        initialization=usually(["auto", "he", "xavier"], "zeros"),
        no_bias=st.booleans(),
    ),
    spec(
        "MaxPooling2D",
        pool_size=usually(st.integers(1, 3), 0),
        strides=usually([None, 1, 2, 3], 0),
    ),
    spec(
        "AveragePooling2D",
        pool_size=usually(st.integers(1, 3), 0),
        strides=usually([None, 1, 2, 3], 0),
    ),
    spec("BatchNormalization2D", momentum=usually([0.5, 0.9], -0.5)),
    ACTIVATIONS,
    DROPOUT,
)
#: Any layer anywhere: mostly invalid stacks (a pooling layer on flat samples, ...).
ANY_LAYER = st.one_of(FLAT_LAYERS, IMAGE_LAYERS, spec("Flatten"))


def stack_of(matching: st.SearchStrategy[Spec], size: int) -> st.SearchStrategy[list[Spec]]:
    """Layers that fit the samples they get, and now and then any layer."""
    return st.lists(st.one_of(matching, matching, matching, ANY_LAYER), max_size=size)


LOSSES = st.one_of(
    spec("MSE"),
    spec("BinaryCrossEntropy"),
    spec(
        "CategoricalCrossEntropy",
        temperature=usually([0.5, 1.0, 2.0], -1.0),
        epsilon=usually([1e-8, 0.0], -1.0),
    ),
)

COMMON = {
    # up to divergence: 10 and more diverge within an epoch on most stacks
    "learning_rate": usually([1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0, 1e3, 1e6], 0.0, -1.0),
    "regularization": usually(["L1", "L2"], "L3"),
    "weight_decay": usually([0.0, 1e-3, 0.1], -1.0),
}
OPTIMIZERS = st.one_of(
    spec("SGD", momentum=usually([0.0, 0.9], 2.0), **COMMON),
    spec("RMSprop", decay_rate=usually([0.0, 0.9], 1.0), **COMMON),
    spec("Adam", beta1=usually([0.0, 0.9], 1.0), **COMMON),
)


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    image = draw(st.booleans())
    if image:
        input_shape = (
            draw(st.integers(1, 2)),
            draw(st.integers(1, 6)),
            draw(st.integers(1, 6)),
        )
        first = draw(
            spec(
                "Convolutional",
                output_depth=st.integers(1, 3),
                kernel_size=st.integers(1, 3),
                padding=st.sampled_from(["valid", "same", 1]),
                stride=st.integers(1, 2),
                input_shape=st.just(input_shape),
            )
        )
        # a flat output for the classification losses, most of the time
        hidden = draw(stack_of(IMAGE_LAYERS, 3))
        hidden += draw(st.sampled_from([[("Flatten", {}), ("Dense", {"output_size": 2})], []]))
    else:
        input_shape = (draw(st.integers(1, 4)),)
        first = draw(
            spec("Dense", output_size=st.integers(1, 4), input_size=st.just(input_shape[0]))
        )
        hidden = draw(stack_of(FLAT_LAYERS, 4))
    n = draw(st.integers(1, 10))
    return {
        "input_shape": input_shape,
        # one time in 25 a first layer without an input shape
        "layers": [first] * draw(usually([1], 0)) + hidden,
        "loss": draw(LOSSES),
        "optimizer": draw(OPTIMIZERS),
        "n": n,
        "dtype": draw(usually(["float32", "float64", "float16", "int32", "bool"], "str")),
        "as_list": draw(st.booleans()),
        "nan": draw(usually([False], True)),
        "wrong_width": draw(usually([False], True)),
        "epochs": draw(usually([0, 1, 2], -1)),
        "batch_size": draw(usually([1, 2, 3, n, n + 5], 0, -2, 2.5)),
        "auto_evaluation": draw(usually([0.0, 0.3], 1.0)),
        "model_checkpoint": draw(st.booleans()),
        "early_stopping": draw(usually([None, 1], 0)),
        "seed": draw(st.integers(0, 2**16)),
    }


# ---------------------------------------------------------------------- oracle
class Refused(Exception):
    """A call refused its arguments the right way; the case ends there."""


def user_call(call: Callable[[], Any], names: set[str]) -> Any:
    """Run one user call: it works, or raises the library's error naming an argument."""
    try:
        return call()
    except (ValueError, TypeError) as exc:
        origin = traceback.extract_tb(exc.__traceback__)[-1].filename
        assert str(Path(origin).resolve()).startswith(LIBRARY), (
            f"{type(exc).__name__} raised outside the library ({origin}): {exc}"
        )
        message = str(exc).lower()
        assert any(name.lower() in message for name in names), (
            f"the message names none of {sorted(names)}: {exc}"
        )
        raise Refused(str(exc)) from None


def make(module: Any, item: Spec) -> Any:
    name, kwargs = item
    return user_call(lambda: getattr(module, name)(**kwargs), {name, *kwargs})


def inputs(case: dict[str, Any], rng: np.random.Generator, n: int | None = None) -> Any:
    shape = list(case["input_shape"])
    if case["wrong_width"]:
        shape[-1] += 1
    x = rng.standard_normal((case["n"] if n is None else n, *shape))
    if case["nan"]:
        x.flat[rng.integers(x.size)] = np.nan
    if case["dtype"] == "str":
        x = x.astype(str)
    elif case["dtype"] in ("int32", "bool"):
        x = (x > 0).astype(case["dtype"]) if not case["nan"] else x.astype(np.float32)
    else:
        x = x.astype(case["dtype"])
    return x.tolist() if case["as_list"] else x


def targets(model: Model, n: int, rng: np.random.Generator) -> np.ndarray:
    shape = (n, *model.output_shape)
    if isinstance(model.loss, losses.BinaryCrossEntropy):
        return (rng.random(shape) > 0.5).astype(np.float32)
    if isinstance(model.loss, losses.CategoricalCrossEntropy) and len(shape) == 2:
        return np.eye(shape[1], dtype=np.float32)[rng.integers(0, shape[1], n)]
    return rng.standard_normal(shape).astype(np.float32)


def all_finite(model: Model) -> bool:
    return all(
        np.isfinite(value).all()
        for value in model_arrays(model).values()
        if isinstance(value, np.ndarray)
    )


def assert_same_random_state(actual: Any, expected: Any) -> None:
    assert actual[0] == expected[0] and actual[2:] == expected[2:]
    np.testing.assert_array_equal(actual[1], expected[1])


TRAIN_NAMES = {
    "X_train", "y_train", "epochs", "batch_size", "auto_evaluation", "early_stopping",
}  # fmt: skip


def run_case(case: dict[str, Any]) -> None:
    set_seed(case["seed"])
    rng = np.random.default_rng(case["seed"])
    stack = [make(layers if hasattr(layers, s[0]) else activations, s) for s in case["layers"]]
    loss = make(losses, case["loss"])
    optimizer = make(optimizers, case["optimizer"])
    kinds = {type(layer).__name__ for layer in stack}
    model = user_call(
        lambda: Model(stack, loss, optimizer),
        {"Model", "Input layer", "input_shape", "input", *kinds},
    )
    x, y = inputs(case, rng), targets(model, case["n"], rng)
    loss_name = type(loss).__name__  # a loss that cannot take the network's output
    try:
        user_call(
            lambda: model.train(
                x,
                y,
                epochs=case["epochs"],
                batch_size=case["batch_size"],
                auto_evaluation=case["auto_evaluation"],
                model_checkpoint=case["model_checkpoint"],
                early_stopping=case["early_stopping"],
                verbose=1,
            ),
            {*TRAIN_NAMES, loss_name},
        )
    except Refused:
        pass
    assert all_finite(model), "train left non-finite weights or optimizer state"
    for call in (lambda: model.evaluate(x, y), lambda: model.test(x, y)):
        with contextlib.suppress(Refused):
            user_call(call, {"X", "y", loss_name})
    with contextlib.suppress(Refused):
        user_call(lambda: model.predict(x), {"X"})

    clean = rng.standard_normal((3, *case["input_shape"])).astype(np.float32)
    before = model.predict(clean)
    with tempfile.TemporaryDirectory() as folder:
        path = save_model(model, Path(folder) / "model")
        random_state = np.random.get_state()  # noqa: NPY002 - loading must not draw
        loaded = load_model(path)
        assert_same_random_state(np.random.get_state(), random_state)  # noqa: NPY002
    assert_same_arrays(model_arrays(loaded), model_arrays(model))
    np.testing.assert_array_equal(loaded.predict(clean), before)


@SETTINGS
@given(case=cases())
def test_every_call_works_or_is_refused_by_the_library(case: dict[str, Any]) -> None:
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("error")
        with contextlib.suppress(Refused):
            run_case(case)
