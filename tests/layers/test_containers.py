"""Container layers: Sequential, Residual and Concatenate, alone and inside a Model."""

from __future__ import annotations

import json
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers import check_gradients, to_float64
from mpneuralnetwork import set_seed, threads, to_device, to_host
from mpneuralnetwork.activations import ReLU, Tanh
from mpneuralnetwork.layers import (
    BatchNormalization,
    BatchNormalization2D,
    Concatenate,
    Container,
    Convolutional,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    GlobalAveragePooling2D,
    Layer,
    MaxPooling2D,
    Residual,
    Sequential,
)
from mpneuralnetwork.layers.containers import leaves, walk
from mpneuralnetwork.losses import MSE, CategoricalCrossEntropy
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import SGD, Adam
from mpneuralnetwork.serialization import get_model_weights, load_model, save_model
from mpneuralnetwork.weights import Snapshot


def built(container: Container, shape: tuple[int, ...]) -> Container:
    """``container`` built on ``shape``, every inner weight drawn, all in float64."""
    container.build(shape)
    for layer in walk([container]):
        if hasattr(layer, "init_weights"):
            layer.init_weights("he", layer.no_bias)
        to_float64(layer)
    return container


class Reseeding(Sequential):
    """Draws the same dropout masks at every forward pass (for finite differences)."""

    def forward(self, input_batch: Any, training: bool = True) -> Any:
        set_seed(11)
        return super().forward(input_batch, training)


def sample(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


# ------------------------------------------------------------------ gradients
def test_sequential_gradients() -> None:
    layer = built(Sequential([Dense(5), Tanh(), Dense(3)]), (4,))
    names = check_gradients(layer, sample((6, 4)))
    assert names == ["input", "0_weights", "0_biases", "2_weights", "2_biases"]


def test_residual_identity_gradients_with_batch_normalization() -> None:
    layer = built(Residual([Dense(4), BatchNormalization(), Tanh(), Dense(4)]), (4,))
    assert layer.shortcut == []
    check_gradients(layer, sample((5, 4)))


def test_residual_projection_gradients() -> None:
    layer = built(
        Residual(
            [
                Convolutional(3, 3, padding="same", stride=2),
                BatchNormalization2D(),
                Tanh(),
                Convolutional(3, 3, padding="same"),
            ],
            shortcut=[Convolutional(3, 1, stride=2), BatchNormalization2D()],
        ),
        (2, 5, 5),
    )
    assert layer.output_shape == (3, 3, 3)
    names = check_gradients(layer, sample((3, 2, 5, 5)))
    assert "4_kernels" in names and "5_gamma" in names  # the shortcut's arrays


@pytest.mark.parametrize(("axis", "out"), [(1, (6, 4, 4)), (-1, (2, 4, 8)), (2, (2, 8, 4))])
def test_concatenate_gradients(axis: int, out: tuple[int, ...]) -> None:
    branches: list[Any] = [
        [Convolutional(2, 3, padding="same"), Tanh()],
        Convolutional(2, 1),
        [MaxPooling2D(1)],  # a branch with no parameters passes its input through
    ]
    if axis != 1:
        branches = branches[:2]
    layer = built(Concatenate(branches, axis=axis), (2, 4, 4))
    assert layer.output_shape == out
    assert all(isinstance(b, Sequential) for b in layer.branches)
    check_gradients(layer, sample((3, 2, 4, 4)))


def test_three_deep_with_batch_normalization_and_dropout() -> None:
    inner = Concatenate([Dense(3), [Dense(2), Tanh()], Sequential([Dense(1)])])
    block = Residual([Sequential([Dense(6), BatchNormalization(), ReLU(), Dropout(0.3)]), inner])
    layer = built(Reseeding([block, Dense(2)]), (6,))
    assert [type(c).__name__ for c in walk([layer])][:4] == [
        "Reseeding",
        "Residual",
        "Sequential",
        "Dense",
    ]
    names = check_gradients(layer, sample((7, 6)))
    assert "0_0_0_weights" in names and "0_1_2_0_weights" in names and "0_0_1_gamma" in names
    assert len(names) == 1 + 2 + 2 + 2 + 2 + 2 + 2  # input, 5 Dense, 1 BatchNormalization


def test_dropout_and_batch_normalization_inside_follow_the_mode() -> None:
    layer = built(Sequential([Residual([Dense(4), BatchNormalization(), Dropout(0.5)])]), (4,))
    x = to_device(sample((8, 4)))
    inference = [to_host(layer.forward(x, training=False)) for _ in range(2)]
    np.testing.assert_array_equal(inference[0], inference[1])
    training = [to_host(layer.forward(x, training=True)) for _ in range(2)]
    assert not np.array_equal(training[0], training[1])  # new dropout masks
    bn = layer.layers[0].layers[1]
    assert not np.allclose(to_host(bn.cache_m), 0.0)  # running mean moved in training


# ------------------------------------------------- a ResNet block, transcribed
def conv_same(x: np.ndarray, kernels: np.ndarray, stride: int = 1) -> np.ndarray:
    """Cross-correlation with (K − 1)//2 zeros on each side, no bias."""
    k = kernels.shape[-1]
    p = (k - 1) // 2
    padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(2, 3))
    windows = windows[:, :, ::stride, ::stride]
    return np.einsum("nchwuv,ocuv->nohw", windows, kernels)


def batch_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


@pytest.mark.parametrize("projection", [False, True])
def test_basic_block_matches_a_numpy_transcription(projection: bool) -> None:
    stride, out = (2, 6) if projection else (1, 4)
    block = Residual(
        [
            Convolutional(out, 3, padding="same", stride=stride),
            BatchNormalization2D(),
            ReLU(),
            Convolutional(out, 3, padding="same"),
            BatchNormalization2D(),
        ],
        shortcut=[Convolutional(out, 1, stride=stride), BatchNormalization2D()]
        if projection
        else None,
    )
    set_seed(3)
    model = Model(
        [Convolutional(4, 3, input_shape=(2, 6, 6), padding="same"), block, ReLU()], MSE()
    )
    for leaf in walk(model.layers):
        for name in ("gamma", "beta"):  # away from 1 and 0, so that a mix-up shows
            if hasattr(leaf, name):
                value = getattr(leaf, name)
                value[...] = to_device(np.random.default_rng(1).uniform(0.5, 1.5, value.shape))
    x = sample((5, 2, 6, 6)).astype(np.float32)
    got = to_host(model._forward(to_device(x), training=True))

    def arrays(layer: Any) -> list[np.ndarray]:
        return [to_host(v).astype(np.float64) for v, _ in layer.params.values()]

    stem_k, stem_b = arrays(model.layers[0])
    h = conv_same(x.astype(np.float64), stem_k) + stem_b.reshape(1, -1, 1, 1)
    c1, bn1, _, c2, bn2, *shortcut = block.children
    f = batch_norm(conv_same(h, arrays(c1)[0], stride), *arrays(bn1), bn1.epsilon)
    f = batch_norm(conv_same(np.maximum(f, 0), arrays(c2)[0]), *arrays(bn2), bn2.epsilon)
    if projection:
        s_conv, s_bn = shortcut
        s = batch_norm(conv_same(h, arrays(s_conv)[0], stride), *arrays(s_bn), s_bn.epsilon)
    else:
        s = h
    expected = np.maximum(f + s, 0)
    assert got.shape == (5, out, 6 // stride, 6 // stride)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    # Smart initialization inside the block: no bias before a batch normalization.
    assert all(leaf.biases is None for leaf in block.children if isinstance(leaf, Convolutional))


# ----------------------------------------------------------------- the Model
def resnet_like(input_shape: tuple[int, ...] = (1, 8, 8)) -> list[Layer]:
    return [
        Convolutional(4, 3, input_shape=input_shape, padding="same"),
        BatchNormalization2D(),
        ReLU(),
        Residual(
            [
                Convolutional(4, 3, padding="same"),
                BatchNormalization2D(),
                ReLU(),
                Dropout(0.1),
                Convolutional(4, 3, padding="same"),
                BatchNormalization2D(),
            ]
        ),
        ReLU(),
        Residual(
            [Convolutional(6, 3, padding="same", stride=2), BatchNormalization2D(), ReLU()],
            shortcut=[Sequential([Convolutional(6, 1, stride=2), BatchNormalization2D()])],
        ),
        Concatenate([GlobalAveragePooling2D(), [MaxPooling2D(2), Flatten()]]),
        Dense(5),
    ]


def data(n: int = 24, shape: tuple[int, ...] = (1, 8, 8)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, *shape)).astype(np.float32)
    return x, np.eye(5, dtype=np.float32)[rng.integers(0, 5, n)]


def trained(optimizer: Any = None) -> Model:
    set_seed(0)
    model = Model(resnet_like(), CategoricalCrossEntropy(), optimizer or Adam(clipnorm=1.0))
    x, y = data()
    model.train(x, y, epochs=2, batch_size=8, verbose=0)
    return model


def test_model_trains_through_containers_and_every_optimizer_reaches_inner_layers() -> None:
    for optimizer in (SGD(momentum=0.9), Adam(weight_decay=0.01, clipvalue=0.5)):
        set_seed(0)
        model = Model(resnet_like(), CategoricalCrossEntropy(), optimizer)
        before = get_model_weights(model.layers)
        x, y = data()
        history = model.train(x, y, epochs=3, batch_size=8, auto_evaluation=0, verbose=0)
        after = get_model_weights(model.layers)
        nested = [k for k in before if k.startswith(("layer_3_", "layer_5_")) and "state" not in k]
        assert nested and all(not np.array_equal(before[k], after[k]) for k in nested)
        assert history["loss"][-1] < history["loss"][0]
        state = optimizer.params
        key = "velocities" if isinstance(optimizer, SGD) else "momentums"
        assert "layer_5_3_0_kernels" in state[key]  # the projection inside the shortcut


def test_smart_initialization_looks_within_each_run() -> None:
    calls: dict[str, tuple[str, bool]] = {}
    layers = resnet_like()
    for path, leaf in leaves(layers):
        if hasattr(leaf, "init_weights"):

            def record(method: str, no_bias: bool, path: str = path, leaf: Any = leaf) -> None:
                calls[path] = (method, no_bias)
                type(leaf).init_weights(leaf, method, no_bias)

            leaf.init_weights = record
    Model(layers, CategoricalCrossEntropy())
    assert calls == {
        "0_": ("he", True),  # stem: BatchNormalization2D, then ReLU
        "3_0_": ("he", True),
        "3_4_": ("xavier", True),  # the end of the run ends the search
        "5_0_": ("he", True),
        "5_3_0_": ("xavier", True),  # the projection inside the shortcut
        "7_": ("xavier", False),
    }


def test_save_load_round_trip_compares_every_array_and_resumes_identically(
    tmp_path: Path,
) -> None:
    model = trained()
    path = save_model(model, tmp_path / "resnet")
    state = np.random.get_state()  # noqa: NPY002 - loading must leave it alone
    loaded = load_model(path)
    np.testing.assert_array_equal(np.random.get_state()[1], state[1])  # noqa: NPY002
    original = get_model_weights(model.layers, model.optimizer.params)
    again = get_model_weights(loaded.layers, loaded.optimizer.params)
    assert sorted(original) == sorted(again)
    assert "layer_5_3_1_state_cache_v" in original
    for name in original:
        np.testing.assert_array_equal(again[name], original[name], err_msg=name)
    assert [c.get_config() for c in loaded.layers] == [c.get_config() for c in model.layers]
    x, y = data(10)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    for m in (model, loaded):
        set_seed(5)
        m.train(x, y, epochs=3, batch_size=4, verbose=0, initial_epoch=2, callbacks=[])
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


class Scale(Layer):
    """A user's layer: one learnable factor per feature."""

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        self.a = to_device(np.full((1, *self.input_shape), 2.0, dtype=np.float32))
        self.a_gradient = self.a * 0

    def forward(self, input_batch: Any, training: bool = True) -> Any:
        self.input = input_batch
        return input_batch * self.a

    def backward(self, output_gradient_batch: Any) -> Any:
        self.a_gradient = (output_gradient_batch * self.input).sum(axis=0, keepdims=True)
        return output_gradient_batch * self.a

    @property
    def params(self) -> dict[str, Any]:
        return {"a": (self.a, self.a_gradient)}


def test_custom_objects_inside_containers(tmp_path: Path) -> None:
    set_seed(0)
    model = Model(
        [Dense(4, input_size=3), Residual([Scale(), Tanh()]), Sequential([Dense(2)])], MSE()
    )
    x = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32)
    model.train(x, x[:, :2], epochs=1, batch_size=3, verbose=0)
    path = save_model(model, tmp_path / "custom")
    with pytest.raises(ValueError, match="unknown layer class 'Scale'"):
        load_model(path)
    loaded = load_model(path, custom_objects={"Scale": Scale})
    np.testing.assert_array_equal(
        to_host(loaded.layers[1].layers[0].a), to_host(model.layers[1].layers[0].a)
    )
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def _rewrite(path: Path, change: Any) -> Path:
    """A copy of the archive at ``path`` whose architecture ``change`` edits."""
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    architecture = json.loads(str(arrays["architecture"]))
    change(architecture)
    arrays["architecture"] = np.array(json.dumps(architecture))
    crafted = path.with_name("crafted.npz")
    np.savez(crafted, **arrays)  # type: ignore[arg-type]
    return crafted


def test_a_crafted_inner_layer_is_refused_before_anything_is_allocated(tmp_path: Path) -> None:
    set_seed(0)
    model = Model(
        [Dense(4, input_size=3), Sequential([Dense(3), BatchNormalization()]), Dense(2)], MSE()
    )
    path = save_model(model, tmp_path / "small")

    def huge(architecture: list[Any]) -> None:
        architecture[1]["layers"][0]["output_size"] = 50_000_000  # then 4 x 200 MB of BN

    crafted = _rewrite(path, huge)
    state = np.random.get_state()  # noqa: NPY002
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"layer_1_0_weights.*\(4, 50000000\)"):
            load_model(crafted)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6, f"the loader allocated {peak / 1e6:.0f} MB before refusing"
    np.testing.assert_array_equal(np.random.get_state()[1], state[1])  # noqa: NPY002


def test_an_archive_missing_an_inner_array_is_refused(tmp_path: Path) -> None:
    path = save_model(trained(), tmp_path / "model")
    with zipfile.ZipFile(path) as archive:
        entries = {i.filename: archive.read(i) for i in archive.infolist()}
    del entries["layer_5_3_1_gamma.npy"]
    broken = tmp_path / "broken.npz"
    with zipfile.ZipFile(broken, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    with pytest.raises(ValueError, match=r"missing arrays \['layer_5_3_1_gamma'\]"):
        load_model(broken)


def test_bad_container_configs_are_refused(tmp_path: Path) -> None:
    path = save_model(trained(), tmp_path / "model")

    def not_a_list(architecture: list[Any]) -> None:
        architecture[3]["layers"] = {"type": "Dense"}

    with pytest.raises(ValueError, match="Residual"):
        load_model(_rewrite(path, not_a_list))


def test_snapshots_restore_inner_layers() -> None:
    model = trained()
    snapshot = Snapshot.take(model.layers, model.optimizer)
    conv = model.layers[5].shortcut[0].layers[0]
    kept = to_host(conv.kernels).copy()
    conv.kernels[...] = 0
    snapshot.restore(model.layers, model.optimizer)
    np.testing.assert_array_equal(to_host(conv.kernels), kept)


def test_containers_split_work_and_the_model_enters_the_thread_pool(monkeypatch: Any) -> None:
    entered = []
    original = threads.parallel

    def parallel(*args: Any, **kwargs: Any) -> Any:
        entered.append(True)
        return original(*args, **kwargs)

    monkeypatch.setattr(threads, "parallel", parallel)
    model = Model([Flatten(input_shape=(1, 4, 4)), Dense(2)], MSE())
    model.predict(np.zeros((2, 1, 4, 4), np.float32))
    assert entered == []
    block = Sequential([Residual([Convolutional(1, 3, padding="same")])])
    assert block.splits_work
    model = Model([Flatten(input_shape=(1, 4, 4)), Dense(16), Tanh(), Dense(16)], MSE())
    model = Model([Sequential([Convolutional(1, 3, input_shape=(1, 4, 4))]), Flatten()], MSE())
    model.predict(np.zeros((2, 1, 4, 4), np.float32))
    assert entered == [True]


def test_summary_shows_inner_layers_indented(capsys: Any) -> None:
    model = Model(resnet_like(), CategoricalCrossEntropy())
    model.summary()
    text = capsys.readouterr().out
    assert "\n3: Residual" in text and "\n    0: Convolutional" in text
    assert "    4: (shortcut) Sequential" not in text  # 3 layers, so the shortcut is child 3
    assert "\n    3: (shortcut) Sequential" in text and "\n        0: Convolutional" in text
    total = sum(int(v.size) for layer in model.layers for v, _ in layer.params.values())
    assert f"Trainable parameters: {total:,}" in text
    block = model.layers[5]
    counted = sum(
        int(v.size)
        for leaf in walk([block])
        for v, _ in leaf.params.values()
        if not isinstance(leaf, Container)
    )
    assert f"{counted:,}" in text.split("\n5: Residual")[1].splitlines()[0]


def test_a_container_first_declares_the_input_and_keeps_integer_ids() -> None:
    model = Model([Sequential([Dense(4, input_size=3), ReLU()]), Dense(2)], MSE())
    assert model.input_shape == (3,)
    ids = Model(
        [Sequential([Embedding(10, 4, input_length=5), Flatten()]), Dense(2)], MSE(), Adam()
    )
    assert ids.layers[0].integer_input
    x = np.random.default_rng(0).integers(0, 10, (8, 5))
    ids.train(x, np.zeros((8, 2), np.float32), epochs=1, batch_size=4, verbose=0)
    assert not np.allclose(to_host(ids.layers[0].layers[0].embeddings_gradient), 0)


# -------------------------------------------------------------------- errors
def test_residual_shapes_must_agree_and_the_error_names_the_container() -> None:
    with pytest.raises(ValueError, match=r"Residual at position 1: .*\(8, 6, 6\) vs \(4, 6, 6\)"):
        Model(
            [
                Convolutional(4, 3, input_shape=(1, 6, 6), padding="same"),
                Residual([Convolutional(8, 3, padding="same")]),
            ],
            MSE(),
        )
    nested = Sequential([Dense(3), Residual([Dense(2)], shortcut=[Dense(5)])])
    with pytest.raises(
        ValueError,
        match=r"Sequential at position 1: Residual at position 1: "
        r".*\(2,\) vs \(5,\)",
    ):
        Model([Dense(4, input_size=2), nested], MSE())


def test_concatenate_shapes_must_agree_off_the_axis() -> None:
    with pytest.raises(
        ValueError, match=r"Concatenate at position 1: .*\(2, 4, 4\) vs \(2, 2, 2\)"
    ):
        Model(
            [
                Convolutional(2, 1, input_shape=(1, 4, 4)),
                Concatenate([Convolutional(2, 1), MaxPooling2D(2)], axis=1),
            ],
            MSE(),
        )
    with pytest.raises(ValueError, match=r"axis=3 does not exist"):
        Model([Dense(2, input_size=2), Concatenate([Dense(2), Dense(3)], axis=3)], MSE())
    with pytest.raises(ValueError, match="batch axis"):
        Concatenate([Dense(2)], axis=0)


def test_empty_and_malformed_layer_lists_are_refused() -> None:
    for make in (lambda: Sequential([]), lambda: Residual([]), lambda: Concatenate([])):
        with pytest.raises(ValueError, match=r"at least one|non-empty"):
            make()
    with pytest.raises(TypeError, match=r"Sequential: layers\[1\] must be a Layer; got str"):
        Sequential([Dense(2), "relu"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="must be a list of layers"):
        Residual(Dense(2))  # type: ignore[arg-type]


def test_a_layer_used_twice_is_refused() -> None:
    dense = Dense(3)
    for layers in (
        [Dense(3, input_size=3), dense, ReLU(), dense],
        [Dense(3, input_size=3), Residual([dense, ReLU()]), Sequential([dense])],
    ):
        with pytest.raises(ValueError, match=r"same Dense object is used twice.*weight sharing"):
            Model(layers, MSE())
    relu = ReLU()
    with pytest.raises(ValueError, match="same ReLU object"):
        Model([Dense(3, input_size=3), relu, Residual([Dense(3), relu])], MSE())


def test_forward_checks_the_input_shape_of_a_built_container() -> None:
    layer = Sequential([Dense(2)])
    layer.build((3,))
    with pytest.raises(
        ValueError, match=r"Sequential.forward: input_batch must have shape \(N, 3\)"
    ):
        layer.forward(np.zeros((2, 4)))
    assert repr(layer).startswith("Sequential([Dense(")


def test_a_first_container_without_a_declared_input_says_what_to_give() -> None:
    with pytest.raises(
        ValueError,
        match=r"^Input layer does not define input size: .*Sequential.*"
        r"first inner layer.*input_shape=\(T, F\)",
    ):
        Model([Sequential([Dense(3), ReLU()]), Dense(2)], MSE())
