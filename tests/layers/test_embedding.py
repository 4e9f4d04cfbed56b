"""Embedding: lookup, gradients of repeated ids, id checks, configs, and Models fed with ids."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import check_gradients, numerical_gradient, random_projection, to_float64
from mpneuralnetwork import DTYPE, to_device, to_host
from mpneuralnetwork.layers import LSTM, Dense, Embedding, Flatten, PositionEmbedding
from mpneuralnetwork.losses import MSE, BinaryCrossEntropy
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import Adam
from mpneuralnetwork.serialization import load_model, save_model


def test_lookup_and_repeated_ids_add_up_exactly():
    layer = Embedding(4, 2, input_length=3)
    table = np.arange(8, dtype=np.float32).reshape(4, 2)
    layer.embeddings = to_device(table)
    ids = np.array([[0, 3, 3], [1, 3, 0]])
    out = to_host(layer.forward(to_device(ids)))
    np.testing.assert_array_equal(out, table[ids])
    assert out.shape == (2, 3, 2) and out.dtype == DTYPE
    g = np.arange(12, dtype=np.float32).reshape(2, 3, 2)
    assert layer.backward(to_device(g)) is None  # ids have no gradient
    # id 0: positions (0,0) and (1,2); id 1: (1,0); id 2: none; id 3: (0,1), (0,2), (1,1)
    expected = np.array([[0 + 10, 1 + 11], [6, 7], [0, 0], [2 + 4 + 8, 3 + 5 + 9]])
    np.testing.assert_array_equal(to_host(layer.embeddings_gradient), expected)
    # a second backward replaces the gradient, it does not accumulate
    layer.backward(to_device(g))
    np.testing.assert_array_equal(to_host(layer.embeddings_gradient), expected)


def test_embedding_gradient_finite_differences_in_float64():
    layer = to_float64(Embedding(5, 3, input_length=4))
    ids = to_device(np.array([[1, 1, 4, 0], [4, 1, 2, 2]]))
    out = to_host(layer.forward(ids))
    assert out.dtype == np.float64
    r = random_projection(out.shape)
    layer.backward(to_device(r))
    analytic = to_host(layer.embeddings_gradient).copy()
    assert analytic.dtype == np.float64

    def loss() -> float:
        return float(np.sum(to_host(layer.forward(ids)) * r))

    np.testing.assert_allclose(analytic, numerical_gradient(loss, layer.embeddings), rtol=1e-6)
    assert not analytic[3].any()  # id 3 never appears


def test_whole_float_ids_are_accepted_and_shapes_are_set():
    layer = Embedding(10, 4)
    assert layer.input_shape is None and layer.output_shape is None
    assert layer.params == {}  # built (and drawn) at the first forward
    out = layer.forward(to_device(np.array([[1.0, 9.0]])))
    np.testing.assert_array_equal(to_host(out), to_host(layer.embeddings)[[[1, 9]]])
    fixed = Embedding(10, 4, input_length=6)
    assert fixed.input_shape == (6,) and fixed.output_shape == (6, 4)
    init = to_host(fixed.embeddings)
    assert init.shape == (10, 4) and init.dtype == DTYPE and np.abs(init).max() <= 0.05
    assert set(fixed.params) == {"embeddings"}


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (np.array([[0, 5]]), r"\[0, 5\).*got values in \[0, 5\]"),
        (np.array([[-1, 2]]), r"\[0, 5\).*got values in \[-1, 2\]"),
        (np.array([[0.5, 2.0]]), "integer ids; got 0.5"),
        (np.array([[np.nan, 2.0]]), "integer ids; got nan"),
        (np.array([[True, False]]), "integer ids; got dtype bool"),
        (np.array([1, 2]), r"shape \(N, T\)"),
        (np.zeros((2, 3, 1), dtype=int), r"shape \(N, T\)"),
    ],
)
def test_bad_ids(ids, message):
    with pytest.raises(ValueError, match=message):
        Embedding(5, 2).forward(to_device(ids))


def test_bad_arguments_and_lengths():
    for make, name in (
        (lambda: Embedding(0, 2), "vocabulary_size"),
        (lambda: Embedding(3, 0), "output_dim"),
        (lambda: Embedding(3, 2, input_length=0), "input_length"),
        (lambda: Embedding(3, 2, input_length=2.5), "input_length"),
        (lambda: Embedding(3, 2).build((2, 3)), "input_shape"),
        (lambda: Embedding(3, 2, input_length=4).build(5), "input_length"),
    ):
        with pytest.raises(ValueError, match=name):
            make()
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        Embedding(3, 2, input_length=4).forward(to_device(np.zeros((2, 5), dtype=int)))
    layer = Embedding(3, 2, input_length=4)
    with pytest.raises(ValueError, match="forward"):
        layer.backward(to_device(np.zeros((1, 4, 2))))
    layer.forward(to_device(np.zeros((1, 4), dtype=int)))
    with pytest.raises(ValueError, match="output_gradient_batch"):
        layer.backward(to_device(np.zeros((1, 4, 3))))


def test_config_round_trip():
    layer = Embedding(7, 3, input_length=5)
    config = layer.get_config()
    assert config == {"type": "Embedding", "vocabulary_size": 7, "output_dim": 3, "input_length": 5}
    rebuilt = Embedding(**{k: v for k, v in config.items() if k != "type"})
    assert rebuilt.get_config() == config
    assert Embedding(7, 3).get_config()["input_length"] is None


def token_model() -> Model:
    return Model(
        [Embedding(6, 4, input_length=5), LSTM(3, return_sequences=True), Flatten(), Dense(1)],
        BinaryCrossEntropy(),
        Adam(learning_rate=0.02),
    )


def test_model_feeds_integer_ids_trains_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, (48, 5))
    y = (x[:, 0] > x[:, -1]).astype(np.float32).reshape(-1, 1)
    model = token_model()
    seen = []
    original = model.layers[0].forward

    def spy(batch, training=True):
        seen.append(batch.dtype.kind)
        return original(batch, training)

    model.layers[0].forward = spy
    before = model.evaluate(x, y)[1]["loss"]
    model.train(x, y, epochs=10, batch_size=16, auto_evaluation=0, verbose=0)
    assert model.evaluate(x, y)[1]["loss"] < before
    assert set(seen) == {"i"}  # the ids were never cast to float
    del model.layers[0].forward
    loaded = load_model(save_model(model, tmp_path / "tokens"))
    np.testing.assert_array_equal(
        to_host(loaded.layers[0].embeddings), to_host(model.layers[0].embeddings)
    )
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    np.testing.assert_array_equal(model.predict(x.astype(np.float32)), model.predict(x))
    with pytest.raises(ValueError, match=r"ids must be in \[0, 6\)"):
        model.predict(x + 1)


def test_array_shapes_match_the_parameters():
    layer = Embedding(7, 3, input_length=5)
    assert (
        layer.array_shapes((5,))
        == {"embeddings": (7, 3)}
        == {name: tuple(value.shape) for name, (value, _) in layer.params.items()}
    )


# ====================================================================== PositionEmbedding
def test_position_embedding_adds_the_first_rows():
    layer = PositionEmbedding(6)
    layer.build((4, 3))
    table = np.arange(18, dtype=np.float32).reshape(6, 3)
    layer.embeddings = to_device(table)
    x = np.ones((2, 4, 3), dtype=np.float32)
    out = to_host(layer.forward(to_device(x)))
    np.testing.assert_array_equal(out, x + table[:4])
    g = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
    dx = to_host(layer.backward(to_device(g)))
    np.testing.assert_array_equal(dx, g)
    expected = np.zeros((6, 3), dtype=np.float32)
    expected[:4] = g.sum(axis=0)
    np.testing.assert_array_equal(to_host(layer.embeddings_gradient), expected)


@pytest.mark.parametrize("steps", [1, 3, 5])
def test_position_embedding_gradients(steps):
    layer = PositionEmbedding(5)
    layer.build((steps, 2))
    to_float64(layer)
    x = np.random.default_rng(0).standard_normal((3, steps, 2))
    assert check_gradients(layer, x) == ["input", "embeddings"]


def test_position_embedding_initialization_config_and_shapes():
    layer = PositionEmbedding(200)
    assert layer.params == {} and layer.array_shapes((10, 64)) == {"embeddings": (200, 64)}
    layer.build((10, 64))
    table = to_host(layer.embeddings)
    assert table.shape == (200, 64) and table.dtype == DTYPE
    assert float(np.std(table)) == pytest.approx(0.02, rel=0.05)
    assert layer.output_shape == (10, 64)
    assert layer.get_config() == {"type": "PositionEmbedding", "max_length": 200}
    rebuilt = PositionEmbedding(**{k: v for k, v in layer.get_config().items() if k != "type"})
    assert rebuilt.max_length == 200


def test_position_embedding_errors():
    with pytest.raises(ValueError, match=r"T=7 steps are longer than max_length=5"):
        PositionEmbedding(5).build((7, 3))
    with pytest.raises(ValueError, match=r"T=7 steps are longer than max_length=5"):
        PositionEmbedding(5).forward(to_device(np.zeros((2, 7, 3))))
    with pytest.raises(ValueError, match=r"T=7 steps are longer than max_length=5"):
        PositionEmbedding(5).array_shapes((7, 3))
    with pytest.raises(ValueError, match=r"T=6 steps are longer than max_length=5"):
        Model([Embedding(4, 3, input_length=6), PositionEmbedding(5)], MSE())
    with pytest.raises(ValueError, match=r"input_shape must be \(T, D\)"):
        PositionEmbedding(5).build((3,))
    with pytest.raises(ValueError, match="PositionEmbedding: max_length"):
        PositionEmbedding(0)
    layer = PositionEmbedding(5)
    layer.build((3, 2))
    with pytest.raises(ValueError, match=r"shape \(N, 3, 2\)"):
        layer.forward(to_device(np.zeros((1, 4, 2))))
