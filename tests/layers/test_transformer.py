"""TransformerEncoder: gradients, PyTorch's encoder layer, saving, initialization, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers import check_gradients, random_projection, to_float64
from mpneuralnetwork import set_seed, to_device, to_host
from mpneuralnetwork.activations import GELU, ReLU
from mpneuralnetwork.layers import (
    Dense,
    Dropout,
    Embedding,
    GlobalAveragePooling1D,
    LayerNormalization,
    MultiHeadAttention,
    PositionEmbedding,
    Residual,
    Sequential,
    TransformerEncoder,
)
from mpneuralnetwork.layers.containers import leaves, walk
from mpneuralnetwork.losses import MSE, CategoricalCrossEntropy
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import Adam
from mpneuralnetwork.serialization import (
    get_model_weights,
    layer_from_config,
    load_model,
    save_model,
)

ACTIVATIONS = ["gelu", "gelu_tanh", "relu"]


class ReseedingEncoder(TransformerEncoder):
    """Draws the same dropout masks at every forward pass (for finite differences)."""

    def forward(self, input_batch: Any, training: bool = True) -> Any:
        set_seed(11)
        return super().forward(input_batch, training)


def encoder(
    heads: int, dim: int, steps: int, seed: int = 0, cls: type = TransformerEncoder, **kwargs: Any
) -> TransformerEncoder:
    """A built float64 encoder whose every parameter (biases, gamma, beta too) is random."""
    layer = cls(heads, kwargs.pop("feedforward_dim", 6), **kwargs)
    layer.build((steps, dim))
    for leaf in walk([layer]):
        if hasattr(leaf, "init_weights"):
            leaf.init_weights("xavier", False)
        to_float64(leaf)
    rng = np.random.default_rng(seed)
    for value, _ in layer.params.values():
        value[...] = to_device(rng.normal(0.0, 0.5, tuple(value.shape)))
    return layer


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


def sample(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


# ====================================================================== structure
def test_leaf_layers_in_order_and_parameter_names() -> None:
    layer = encoder(2, 4, 3)
    kinds = [type(leaf).__name__ for _, leaf in leaves([layer])]
    assert kinds == [
        "LayerNormalization",
        "MultiHeadAttention",
        "Dropout",
        "LayerNormalization",
        "Dense",
        "GELU",
        "Dropout",
        "Dense",
        "Dropout",
    ]
    assert isinstance(layer, Sequential)
    assert all(isinstance(block, Residual) for block in layer.layers)
    assert sorted(layer.params) == sorted(
        [
            "0_0_gamma",
            "0_0_beta",
            "0_1_input_weights",
            "0_1_input_biases",
            "0_1_output_weights",
            "0_1_output_biases",
            "1_0_gamma",
            "1_0_beta",
            "1_1_weights",
            "1_1_biases",
            "1_4_weights",
            "1_4_biases",
        ]
    )
    assert layer.params["1_1_weights"][0].shape == (4, 6)
    assert layer.params["1_4_weights"][0].shape == (6, 4)  # the width D, known at build
    assert layer.output_shape == (3, 4)
    norms = [leaf for leaf in walk([layer]) if isinstance(leaf, LayerNormalization)]
    assert [n.epsilon for n in norms] == [1e-5, 1e-5]


@pytest.mark.parametrize(
    ("activation", "kind", "approximate"),
    [("gelu", GELU, "none"), ("gelu_tanh", GELU, "tanh"), ("relu", ReLU, None)],
)
def test_the_activation_and_dropouts_follow_the_arguments(
    activation: str, kind: type, approximate: str | None
) -> None:
    layer = TransformerEncoder(2, 8, dropout=0.25, causal=True, activation=activation)
    act = layer.layers[1].layers[2]
    assert type(act) is kind
    if approximate is not None:
        assert act.approximate == approximate
    attention = layer.layers[0].layers[1]
    assert isinstance(attention, MultiHeadAttention)
    assert attention.causal and attention.dropout == 0.25 and attention.num_heads == 2
    dropouts = [leaf for leaf in walk([layer]) if isinstance(leaf, Dropout)]
    assert [d.probability for d in dropouts] == [0.25, 0.25, 0.25]


# ====================================================================== gradients
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("heads", "dim", "steps"), [(1, 4, 3), (2, 4, 3), (4, 8, 2), (2, 4, 1)])
def test_gradients(heads: int, dim: int, steps: int, causal: bool, activation: str) -> None:
    layer = encoder(heads, dim, steps, dropout=0.0, causal=causal, activation=activation)
    names = check_gradients(layer, sample((2, steps, dim)))
    assert names == ["input", *layer.params] and len(names) == 13


@pytest.mark.parametrize("causal", [False, True])
def test_gradients_with_dropout_and_a_fixed_mask(causal: bool) -> None:
    layer = encoder(2, 4, 3, cls=ReseedingEncoder, dropout=0.3, causal=causal)
    check_gradients(layer, sample((2, 3, 4)))
    masks = [leaf.mask for leaf in walk([layer]) if isinstance(leaf, Dropout)]
    assert all(m is not None and (to_host(m) == 0).any() for m in masks)  # dropout at work


def test_inference_ignores_dropout() -> None:
    layer = encoder(2, 4, 3, dropout=0.5)
    x = to_device(sample((3, 3, 4)))
    once, again = (to_host(layer.forward(x, training=False)) for _ in range(2))
    np.testing.assert_array_equal(once, again)
    same = encoder(2, 4, 3, dropout=0.0)
    np.testing.assert_allclose(once, to_host(same.forward(x, training=True)), rtol=1e-12)


# ======================================================================== PyTorch
def torch_twin(layer: TransformerEncoder, dim: int, activation: str) -> Any:
    """PyTorch's pre-norm encoder layer in float64, holding ``layer``'s weights."""
    torch = pytest.importorskip("torch", reason="PyTorch is the reference implementation")
    functional = {
        "gelu": "gelu",
        "relu": "relu",
        "gelu_tanh": lambda x: torch.nn.functional.gelu(x, approximate="tanh"),
    }[activation]
    twin = torch.nn.TransformerEncoderLayer(
        d_model=dim,
        nhead=layer.num_heads,
        dim_feedforward=layer.feedforward_dim,
        dropout=0.0,
        activation=functional,
        batch_first=True,
        norm_first=True,
        dtype=torch.float64,
    )
    p = {name: to_host(value) for name, (value, _) in layer.params.items()}
    copies = {
        "norm1.weight": p["0_0_gamma"],
        "norm1.bias": p["0_0_beta"],
        "self_attn.in_proj_weight": p["0_1_input_weights"].T,
        "self_attn.in_proj_bias": p["0_1_input_biases"],
        "self_attn.out_proj.weight": p["0_1_output_weights"].T,
        "self_attn.out_proj.bias": p["0_1_output_biases"],
        "norm2.weight": p["1_0_gamma"],
        "norm2.bias": p["1_0_beta"],
        "linear1.weight": p["1_1_weights"].T,
        "linear1.bias": p["1_1_biases"][0],
        "linear2.weight": p["1_4_weights"].T,
        "linear2.bias": p["1_4_biases"][0],
    }
    with torch.no_grad():
        for name, parameter in twin.named_parameters():
            parameter.copy_(torch.tensor(copies[name]))
    return twin.eval()


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("heads", "dim", "steps"), [(1, 6, 4), (3, 6, 5), (2, 8, 1)])
def test_against_pytorch_encoder_layer(
    heads: int, dim: int, steps: int, causal: bool, activation: str
) -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is the reference implementation")
    layer = encoder(
        heads, dim, steps, seed=3, feedforward_dim=10, dropout=0.0, causal=causal,
        activation=activation,
    )  # fmt: skip
    twin = torch_twin(layer, dim, activation)
    x = sample((3, steps, dim), seed=4)
    g = random_projection((3, steps, dim), seed=5)
    xt = torch.tensor(x, requires_grad=True)
    mask = torch.triu(torch.ones(steps, steps, dtype=torch.bool), 1) if causal else None
    yt = twin(xt, src_mask=mask)
    yt.backward(torch.tensor(g))
    out = to_host(layer.forward(to_device(x), training=False))
    dx = to_host(layer.backward(to_device(g)))
    tolerance = {"rtol": 1e-10, "atol": 1e-11}
    np.testing.assert_allclose(out, yt.detach().numpy(), **tolerance)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tolerance)
    grads = {name: to_host(gradient) for name, (_, gradient) in layer.params.items()}
    theirs = {name: p.grad.numpy() for name, p in twin.named_parameters()}
    pairs = {
        "0_0_gamma": theirs["norm1.weight"],
        "0_0_beta": theirs["norm1.bias"],
        "0_1_input_weights": theirs["self_attn.in_proj_weight"].T,
        "0_1_input_biases": theirs["self_attn.in_proj_bias"],
        "0_1_output_weights": theirs["self_attn.out_proj.weight"].T,
        "0_1_output_biases": theirs["self_attn.out_proj.bias"],
        "1_0_gamma": theirs["norm2.weight"],
        "1_0_beta": theirs["norm2.bias"],
        "1_1_weights": theirs["linear1.weight"].T,
        "1_1_biases": theirs["linear1.bias"][None],
        "1_4_weights": theirs["linear2.weight"].T,
        "1_4_biases": theirs["linear2.bias"][None],
    }
    assert sorted(pairs) == sorted(grads)
    for name, expected in pairs.items():
        np.testing.assert_allclose(
            grads[name].reshape(expected.shape), expected, err_msg=name, **tolerance
        )


# ===================================================================== in a Model
def small_model(**kwargs: Any) -> Model:
    set_seed(2)
    return Model(
        [
            Embedding(11, 8, input_length=5),
            PositionEmbedding(5),
            TransformerEncoder(2, 12, **kwargs),
            TransformerEncoder(4, 6, causal=True, activation="relu"),
            GlobalAveragePooling1D(),
            Dense(3),
        ],
        CategoricalCrossEntropy(),
        Adam(learning_rate=0.01),
    )


def ids_and_labels(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 11, (n, 5))
    return x, np.eye(3)[x[:, 0] % 3]


def test_save_load_round_trip_restores_every_array(tmp_path: Path) -> None:
    model = small_model(dropout=0.2)
    x, y = ids_and_labels(24)
    model.train(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[])
    loaded = load_model(save_model(model, tmp_path / "encoder"))
    original = get_model_weights(model.layers, model.optimizer.params)
    again = get_model_weights(loaded.layers, loaded.optimizer.params)
    assert sorted(original) == sorted(again)
    assert "layer_2_1_4_weights" in original and "layer_3_0_1_input_weights" in original
    assert any(name.startswith("optimizer_") and "layer_3_1_4_" in name for name in original)
    for name in original:
        np.testing.assert_array_equal(again[name], original[name], err_msg=name)
    assert [c.get_config() for c in loaded.layers] == [c.get_config() for c in model.layers]
    assert loaded.layers[2].get_config() == {
        "type": "TransformerEncoder",
        "num_heads": 2,
        "feedforward_dim": 12,
        "dropout": 0.2,
        "causal": False,
        "activation": "gelu",
    }
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_a_crafted_width_is_refused_before_anything_is_allocated(tmp_path: Path) -> None:
    path = save_model(small_model(), tmp_path / "encoder")

    def huge(architecture: list[Any]) -> None:
        architecture[2]["feedforward_dim"] = 50_000_000

    with pytest.raises(ValueError, match=r"layer_2_1_1_weights.*\(8, 50000000\)"):
        load_model(_rewrite(path, huge))


def test_config_rebuilds_the_layer() -> None:
    layer = TransformerEncoder(4, 32, dropout=0.0, causal=True, activation="relu")
    config = layer.get_config()
    twin = type(layer)(**{k: v for k, v in config.items() if k != "type"})
    assert twin.get_config() == config
    assert layer_from_config(config).get_config() == config
    assert repr(layer) == (
        "TransformerEncoder(num_heads=4, feedforward_dim=32, dropout=0.0, causal=True, "
        "activation='relu')"
    )


def test_array_shapes_know_the_last_width() -> None:
    layer = TransformerEncoder(2, 12)
    shapes = layer.array_shapes((5, 8))
    assert shapes is not None
    assert shapes["1_4_weights"] == (12, 8) and shapes["0_1_input_weights"] == (8, 24)
    assert shapes["1_4_biases"] == (1, 8)


def test_summary_lists_the_inner_layers(capsys: Any) -> None:
    small_model().summary()
    text = capsys.readouterr().out
    assert "TransformerEncoder" in text and "MultiHeadAttention" in text and "GELU" in text
    assert "(5, 12)" in text  # the hidden feed-forward width


def test_model_trains_and_the_loss_falls() -> None:
    model = small_model(dropout=0.0)
    x, y = ids_and_labels(64)
    before = model.evaluate(x, y)[1]["loss"]
    model.train(x, y, epochs=15, batch_size=16, verbose=0, callbacks=[])
    after = model.evaluate(x, y)[1]["loss"]
    assert after < 0.25 * before


# ============================================================= smart initialization
def recorded_initializations(layers: list[Any], loss: Any) -> dict[str, str]:
    calls: dict[str, str] = {}
    for path, leaf in leaves(layers):
        if hasattr(leaf, "init_weights"):

            def record(method: str, no_bias: bool, path: str = path, leaf: Any = leaf) -> None:
                calls[path] = method
                type(leaf).init_weights(leaf, method, no_bias)

            leaf.init_weights = record
    Model(layers, loss)
    return calls


@pytest.mark.parametrize(("activation", "method"), [("gelu", "xavier"), ("relu", "he")])
def test_smart_initialization_inside_the_encoder(activation: str, method: str) -> None:
    layers = [
        Dense(8, input_shape=(5, 4)),
        TransformerEncoder(2, 12, activation=activation),
        GlobalAveragePooling1D(),
        Dense(2),
    ]
    assert recorded_initializations(layers, MSE()) == {
        "0_": "xavier",
        "1_1_1_": method,  # the Dense before the activation
        "1_1_4_": "xavier",  # the last Dense: the end of its run
        "3_": "xavier",
    }


@pytest.mark.parametrize(
    "stop", [lambda: MultiHeadAttention(2), lambda: LayerNormalization()], ids=["mha", "ln"]
)
def test_smart_initialization_stops_at_attention_and_layer_normalization(stop: Any) -> None:
    layers = [Dense(8, input_shape=(5, 4)), stop(), ReLU(), GlobalAveragePooling1D(), Dense(2)]
    assert recorded_initializations(layers, MSE())["0_"] == "xavier"
    layers = [Dense(8, input_shape=(5, 4)), Dropout(0.1), ReLU(), GlobalAveragePooling1D()]
    assert recorded_initializations([*layers, Dense(2)], MSE())["0_"] == "he"  # still looks on


# ========================================================================== errors
def test_heads_must_divide_the_width_at_model_construction() -> None:
    with pytest.raises(
        ValueError,
        match=r"Model: TransformerEncoder at position 1: Residual at position 0: "
        r"MultiHeadAttention at position 1: .*D=6 must be divisible by num_heads=4",
    ):
        Model([Dense(6, input_shape=(3, 2)), TransformerEncoder(4, 8)], MSE())


def test_input_must_be_sequences() -> None:
    with pytest.raises(ValueError, match=r"TransformerEncoder: .*\(T, D\); got \(6,\)"):
        Model([Dense(6, input_size=3), TransformerEncoder(2, 8)], MSE())


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"activation": "tanh"}, r"activation must be one of \('gelu', 'gelu_tanh', 'relu'\)"),
        ({"num_heads": 0}, "num_heads"),
        ({"feedforward_dim": -1}, "feedforward_dim"),
        ({"dropout": 1.0}, "dropout"),
        ({"causal": "yes"}, "causal"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], pattern: str) -> None:
    arguments = {"num_heads": 2, "feedforward_dim": 8, **kwargs}
    with pytest.raises((ValueError, TypeError), match=f"TransformerEncoder: {pattern}"):
        TransformerEncoder(**arguments)


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="bad TransformerEncoder config"):
        layer_from_config({"type": "TransformerEncoder", "num_heads": 2, "layers": []})


def test_attention_weights_of_the_last_forward_are_kept() -> None:
    layer = encoder(2, 4, 3, causal=True, dropout=0.0)
    attention = layer.layers[0].layers[1]
    assert attention.attention_weights is None
    layer.forward(to_device(sample((5, 3, 4))), training=False)
    weights = to_host(attention.attention_weights)
    assert weights.shape == (5, 2, 3, 3)
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(np.triu(weights, 1), 0.0)  # causal: no later key
