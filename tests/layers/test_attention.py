"""MultiHeadAttention: equations, gradients, PyTorch, masks, dropout, configs, save/load."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from helpers import check_gradients, random_projection, to_float64
from helpers_model import assert_same_arrays, model_arrays
from mpneuralnetwork import DTYPE, set_seed, to_device, to_host
from mpneuralnetwork.activations import GELU
from mpneuralnetwork.layers import (
    Dense,
    Embedding,
    GlobalAveragePooling1D,
    LayerNormalization,
    MultiHeadAttention,
    PositionEmbedding,
)
from mpneuralnetwork.losses import MSE, BinaryCrossEntropy
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import Adam
from mpneuralnetwork.serialization import load_model, save_model

PARAMETERS = ("input_weights", "input_biases", "output_weights", "output_biases")


def _attention(
    num_heads: int, dim: int, steps: int, causal: bool = False, dropout: float = 0.0, seed=0
) -> MultiHeadAttention:
    """A float64 layer with random parameters (biases too, so their use is checked)."""
    layer = MultiHeadAttention(num_heads, causal=causal, dropout=dropout)
    layer.build((steps, dim))
    rng = np.random.default_rng(seed)
    for name in PARAMETERS:
        shape = tuple(getattr(layer, name).shape)
        setattr(layer, name, to_device(rng.standard_normal(shape) * 0.5))
    return to_float64(layer)


def reference(layer: MultiHeadAttention, x: np.ndarray, mask=None) -> np.ndarray:
    """The equations step by step: loops over samples, heads, queries and keys."""
    w_in, b_in = to_host(layer.input_weights), to_host(layer.input_biases)
    w_out, b_out = to_host(layer.output_weights), to_host(layer.output_biases)
    n, steps, dim = x.shape
    heads = layer.num_heads
    d = dim // heads
    out = np.zeros_like(x)
    for s in range(n):
        q = x[s] @ w_in[:, :dim] + b_in[:dim]
        k = x[s] @ w_in[:, dim : 2 * dim] + b_in[dim : 2 * dim]
        v = x[s] @ w_in[:, 2 * dim :] + b_in[2 * dim :]
        concat = np.zeros((steps, dim))
        for h in range(heads):
            cols = slice(h * d, (h + 1) * d)
            for i in range(steps):
                keys = range(i + 1) if layer.causal else range(steps)
                scores = [q[i, cols] @ k[j, cols] / math.sqrt(d) for j in keys]
                top = max(scores)
                weights = [math.exp(sc - top) for sc in scores]
                total = sum(weights)
                for j, weight in zip(keys, weights, strict=True):
                    p = weight / total
                    if mask is not None:
                        p *= mask[s, h, i, j]
                    concat[i, cols] += p * v[j, cols]
        out[s] = concat @ w_out + b_out
    return out


# =============================================================== forward: the equations
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("heads", "dim", "steps"), [(1, 4, 3), (2, 4, 5), (3, 6, 4), (2, 4, 1)])
def test_forward_matches_the_equations(heads, dim, steps, causal):
    layer = _attention(heads, dim, steps, causal)
    x = np.random.default_rng(1).standard_normal((2, steps, dim))
    out = to_host(layer.forward(to_device(x)))
    assert out.shape == (2, steps, dim) and out.dtype == np.float64
    np.testing.assert_allclose(out, reference(layer, x), rtol=1e-12, atol=1e-12)


def test_single_step_attends_to_itself_only():
    # T = 1: the softmax of one score is 1, so Y = (X W_v + b_v) W_o + b_o
    layer = _attention(2, 4, 1)
    x = np.random.default_rng(2).standard_normal((3, 1, 4))
    w_in, b_in = to_host(layer.input_weights), to_host(layer.input_biases)
    values = x @ w_in[:, 8:] + b_in[8:]
    expected = values @ to_host(layer.output_weights) + to_host(layer.output_biases)
    np.testing.assert_allclose(to_host(layer.forward(to_device(x))), expected, rtol=1e-12)


def test_causal_outputs_ignore_later_steps():
    layer = _attention(2, 4, 5, causal=True)
    x = np.random.default_rng(3).standard_normal((2, 5, 4))
    before = to_host(layer.forward(to_device(x))).copy()
    x[:, 3:] += 10.0
    after = to_host(layer.forward(to_device(x)))
    np.testing.assert_array_equal(after[:, :3], before[:, :3])
    assert not np.allclose(after[:, 3:], before[:, 3:])


def test_large_scores_stay_finite():
    layer = _attention(2, 4, 3, causal=True)
    x = np.random.default_rng(4).standard_normal((2, 3, 4)).astype(np.float32) * 1e3
    layer.input_weights = layer.input_weights.astype(np.float32)
    for name in PARAMETERS[1:]:
        setattr(layer, name, getattr(layer, name).astype(np.float32))
    with np.errstate(all="raise", under="ignore"):
        out = layer.forward(to_device(x))
        dx = layer.backward(to_device(np.ones((2, 3, 4), dtype=np.float32)))
    assert np.isfinite(to_host(out)).all() and np.isfinite(to_host(dx)).all()


# ========================================================================== gradients
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("heads", "dim", "steps"), [(1, 4, 3), (2, 4, 3), (4, 4, 2), (2, 4, 1)])
def test_gradients(heads, dim, steps, causal):
    layer = _attention(heads, dim, steps, causal)
    x = np.random.default_rng(5).standard_normal((2, steps, dim))
    assert check_gradients(layer, x) == ["input", *PARAMETERS]


def _reseeded(layer: MultiHeadAttention, seed: int) -> MultiHeadAttention:
    """Every forward draws the same dropout mask: the loss is then a fixed function."""
    forward = layer.forward

    def fixed_mask_forward(x, training=True):
        set_seed(seed)
        return forward(x, training)

    layer.forward = fixed_mask_forward  # type: ignore[method-assign]
    return layer


@pytest.mark.parametrize("causal", [False, True])
def test_gradients_with_dropout_and_a_fixed_mask(causal):
    layer = _reseeded(_attention(2, 4, 4, causal, dropout=0.4), seed=11)
    x = np.random.default_rng(6).standard_normal((2, 4, 4))
    assert check_gradients(layer, x) == ["input", *PARAMETERS]
    mask = to_host(layer.mask)
    assert (mask == 0).any() and (mask > 0).any()  # the mask did drop some weights


def test_dropout_forward_uses_the_mask_on_the_weights():
    layer = _attention(2, 4, 4, dropout=0.5)
    x = np.random.default_rng(7).standard_normal((3, 4, 4))
    set_seed(3)
    out = to_host(layer.forward(to_device(x)))
    mask = to_host(layer.mask)
    assert mask.shape == (3, 2, 4, 4)
    assert set(np.unique(mask)) <= {0.0, 2.0}  # kept weights are scaled by 1/(1 − p)
    np.testing.assert_allclose(out, reference(layer, x, mask), rtol=1e-12, atol=1e-12)
    set_seed(3)
    np.testing.assert_array_equal(to_host(layer.forward(to_device(x))), out)  # same seed
    inference = to_host(layer.forward(to_device(x), training=False))
    assert layer.mask is None
    np.testing.assert_allclose(inference, reference(layer, x), rtol=1e-12, atol=1e-12)


# ============================================================================ PyTorch
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("heads", "dim", "steps"), [(1, 6, 4), (3, 6, 5), (2, 8, 1)])
def test_against_pytorch_multihead_attention(heads, dim, steps, causal):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference implementation")
    layer = _attention(heads, dim, steps, causal, seed=8)
    x = np.random.default_rng(9).standard_normal((3, steps, dim))
    g = random_projection((3, steps, dim), seed=10)
    mha = torch.nn.MultiheadAttention(dim, heads, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.tensor(to_host(layer.input_weights).T))
        mha.in_proj_bias.copy_(torch.tensor(to_host(layer.input_biases)))
        mha.out_proj.weight.copy_(torch.tensor(to_host(layer.output_weights).T))
        mha.out_proj.bias.copy_(torch.tensor(to_host(layer.output_biases)))
    xt = torch.tensor(x, requires_grad=True)
    attn_mask = torch.triu(torch.ones(steps, steps, dtype=torch.bool), 1) if causal else None
    yt, _ = mha(xt, xt, xt, attn_mask=attn_mask, need_weights=False)
    yt.backward(torch.tensor(g))
    out = to_host(layer.forward(to_device(x)))
    dx = to_host(layer.backward(to_device(g)))
    tolerance = {"rtol": 1e-11, "atol": 1e-12}
    np.testing.assert_allclose(out, yt.detach().numpy(), **tolerance)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tolerance)
    theirs = {
        "input_weights": mha.in_proj_weight.grad.numpy().T,
        "input_biases": mha.in_proj_bias.grad.numpy(),
        "output_weights": mha.out_proj.weight.grad.numpy().T,
        "output_biases": mha.out_proj.bias.grad.numpy(),
    }
    for name, expected in theirs.items():
        np.testing.assert_allclose(
            to_host(getattr(layer, f"{name}_gradient")), expected, **tolerance
        )


# ================================================================ building and errors
def test_initialization_is_glorot_uniform_with_zero_biases():
    layer = MultiHeadAttention(4)
    layer.build((10, 64))
    w_in, w_out = to_host(layer.input_weights), to_host(layer.output_weights)
    assert w_in.shape == (64, 192) and w_out.shape == (64, 64) and w_in.dtype == DTYPE
    bound_in, bound_out = math.sqrt(6 / (64 + 192)), math.sqrt(6 / 128)
    assert np.abs(w_in).max() <= bound_in and np.abs(w_in).max() > 0.95 * bound_in
    assert np.abs(w_out).max() <= bound_out and np.abs(w_out).max() > 0.95 * bound_out
    assert np.std(w_in) == pytest.approx(bound_in / math.sqrt(3), rel=0.05)
    assert not to_host(layer.input_biases).any() and not to_host(layer.output_biases).any()
    assert to_host(layer.input_biases).shape == (192,)
    assert to_host(layer.output_biases).shape == (64,)
    drawn = to_host(layer.input_weights).copy()
    layer.build((12, 64))  # another length, same D: the parameters stay
    np.testing.assert_array_equal(to_host(layer.input_weights), drawn)


def test_heads_must_divide_the_model_dimension_at_model_construction():
    with pytest.raises(ValueError, match=r"D=6 must be divisible by num_heads=4"):
        Model([Embedding(5, 6, input_length=3), MultiHeadAttention(4)], MSE())
    with pytest.raises(ValueError, match=r"D=6 must be divisible by num_heads=4"):
        MultiHeadAttention(4).array_shapes((3, 6))


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: MultiHeadAttention(0), "num_heads"),
        (lambda: MultiHeadAttention(2.0), "num_heads"),
        (lambda: MultiHeadAttention(2, causal=1), "causal"),
        (lambda: MultiHeadAttention(2, dropout=1.0), "dropout"),
        (lambda: MultiHeadAttention(2, dropout=-0.1), "dropout"),
        (lambda: MultiHeadAttention(2).build((4,)), "input_shape"),
        (lambda: MultiHeadAttention(2).build((2, 3, 4)), "input_shape"),
    ],
)
def test_bad_arguments(make, name):
    with pytest.raises(ValueError, match=f"MultiHeadAttention.*{name}"):
        make()


def test_bad_inputs():
    layer = MultiHeadAttention(2)
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        layer.forward(to_device(np.zeros((2, 4))))
    layer.build((3, 4))
    with pytest.raises(ValueError, match=r"shape \(N, 3, 4\)"):
        layer.forward(to_device(np.zeros((2, 5, 4))))
    with pytest.raises(ValueError, match="call forward before backward"):
        MultiHeadAttention(2).backward(to_device(np.zeros((1, 3, 4))))


def test_config_array_shapes_and_float32():
    layer = MultiHeadAttention(2, causal=True, dropout=0.1)
    config = json.loads(json.dumps(layer.get_config()))
    assert config == {"type": "MultiHeadAttention", "num_heads": 2, "causal": True, "dropout": 0.1}
    rebuilt = MultiHeadAttention(**{k: v for k, v in config.items() if k != "type"})
    assert rebuilt.get_config() == layer.get_config()
    assert layer.params == {}
    shapes = layer.array_shapes((5, 8))
    assert not layer.params  # nothing allocated
    layer.build((5, 8))
    assert {n: tuple(v.shape) for n, (v, _) in layer.params.items()} == shapes
    x = np.random.default_rng(0).standard_normal((2, 5, 8)).astype(np.float32)
    out = layer.forward(to_device(x), training=False)
    assert out.dtype == DTYPE
    assert layer.backward(to_device(np.ones((2, 5, 8), dtype=np.float32))).dtype == DTYPE
    for name, (_, gradient) in layer.params.items():
        assert gradient.dtype == DTYPE, name


def test_save_load_round_trip_restores_every_array(tmp_path):
    model = Model(
        [
            Embedding(7, 8, input_length=5),
            MultiHeadAttention(2, causal=True),
            GlobalAveragePooling1D(),
            Dense(1),
        ],
        MSE(),
    )
    x = np.random.default_rng(1).integers(0, 7, (16, 5))
    y = np.random.default_rng(2).standard_normal((16, 1)).astype(np.float32)
    model.train(x, y, epochs=1, batch_size=8, auto_evaluation=0, verbose=0)
    loaded = load_model(save_model(model, tmp_path / "attention"))
    attention = loaded.layers[1]
    assert isinstance(attention, MultiHeadAttention) and attention.causal
    for mine, theirs in zip(model.layers, loaded.layers, strict=True):
        assert mine.get_config() == theirs.get_config()
        assert set(mine.params) == set(theirs.params)
        for name, (value, _) in mine.params.items():
            np.testing.assert_array_equal(to_host(theirs.params[name][0]), to_host(value))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_smart_initialization_leaves_attention_alone():
    set_seed(0)
    attention = MultiHeadAttention(2)
    attention.build((5, 8))
    drawn = {name: to_host(value).copy() for name, (value, _) in attention.params.items()}
    Model([Embedding(7, 8, input_length=5), attention, GlobalAveragePooling1D(), Dense(1)], MSE())
    for name, (value, _) in attention.params.items():
        np.testing.assert_array_equal(to_host(value), drawn[name])


# ============================================================================== a model
def test_a_small_attention_model_trains_and_summarizes(tmp_path, capsys):
    # class 1 when token 1 comes before token 2 in the sequence: order matters, so the
    # positions (PositionEmbedding) and attention between steps are both needed
    rng = np.random.default_rng(0)
    x = rng.integers(3, 8, (96, 6))
    for row in x:
        first, second = rng.choice(6, 2, replace=False)
        row[first], row[second] = 1, 2
    y = (np.argmax(x == 1, axis=1) < np.argmax(x == 2, axis=1)).astype(np.float32)[:, None]
    set_seed(1)
    model = Model(
        [
            Embedding(8, 8, input_length=6),
            PositionEmbedding(10),
            MultiHeadAttention(2, dropout=0.1),
            LayerNormalization(),
            GlobalAveragePooling1D(),
            Dense(8),
            GELU(),
            Dense(1),
        ],
        BinaryCrossEntropy(),
        Adam(learning_rate=0.01),
    )
    before = model.evaluate(x, y)[1]["loss"]
    model.train(x, y, epochs=30, batch_size=16, auto_evaluation=0, verbose=0)
    assert model.evaluate(x, y)[1]["loss"] < 0.9 * before
    model.summary()
    printed = capsys.readouterr().out
    for name in ("PositionEmbedding", "MultiHeadAttention", "LayerNormalization", "GELU"):
        assert name in printed
    assert "(6, 8)" in printed  # the sequence shapes
    # parameters: 8·8 + 10·8 + (8·24 + 24 + 8·8 + 8) + 2·8 + (8·8 + 8) + (8 + 1)
    assert model.layers[2].params["input_weights"][0].shape == (8, 24)
    total = sum(int(v.size) for layer in model.layers for v, _ in layer.params.values())
    assert total == 64 + 80 + 288 + 16 + 72 + 9
    assert f"{total:,}" in printed or str(total) in printed
    loaded = load_model(save_model(model, tmp_path / "transformer"))
    # every parameter and every optimizer state array, bit for bit
    assert_same_arrays(model_arrays(loaded), model_arrays(model))
    assert len(model_arrays(model)) > 3 * 10  # the 10 parameter arrays and Adam's states
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


# ============================================================================ threads
class _FakeBlas:
    """Stands for a threadpoolctl controller, so that `parallel` runs on any machine."""

    num_threads = 4

    def set_num_threads(self, count: int) -> None:
        self.num_threads = count


@pytest.mark.parametrize("causal", [False, True])
def test_samples_split_across_threads_give_the_same_values(causal, monkeypatch):
    from mpneuralnetwork import threads

    layer = _reseeded(_attention(2, 4, 3, causal, dropout=0.3), seed=5)
    x = np.random.default_rng(12).standard_normal((5, 3, 4))  # shares of 3 and 2 samples
    g = random_projection((5, 3, 4), seed=13)
    whole = to_host(layer.forward(to_device(x)))
    d_whole = to_host(layer.backward(to_device(g)))
    grads = {name: to_host(grad).copy() for name, (_, grad) in layer.params.items()}
    monkeypatch.setenv("MPNN_NUM_THREADS", "2")
    monkeypatch.setattr(threads, "_libraries", [_FakeBlas()])
    monkeypatch.setattr(threads, "MIN_WORK", 0)
    with threads.parallel():
        assert threads.active() == (threads.xp.__name__ == "numpy")
        split = to_host(layer.forward(to_device(x)))
        d_split = to_host(layer.backward(to_device(g)))
        split_grads = {name: to_host(grad).copy() for name, (_, grad) in layer.params.items()}
        assert check_gradients(layer, x) == ["input", *PARAMETERS]
    np.testing.assert_allclose(split, whole, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(d_split, d_whole, rtol=1e-13, atol=1e-14)
    for name, grad in grads.items():
        np.testing.assert_allclose(split_grads[name], grad, rtol=1e-12, atol=1e-13)
    assert MultiHeadAttention.splits_work  # a Model with attention trains in `parallel`
