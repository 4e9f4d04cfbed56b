"""Dense, Dropout and BatchNormalization."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import check_gradients, random_projection, to_float64
from mpneuralnetwork import DTYPE, set_seed, to_device, to_host
from mpneuralnetwork.layers import BatchNormalization, Dense, Dropout


# ================================================================================== Dense
@pytest.mark.parametrize("no_bias", [False, True])
@pytest.mark.parametrize(("n", "n_in", "n_out"), [(1, 3, 2), (4, 5, 3), (3, 1, 1), (2, 6, 7)])
def test_dense_gradients(n, n_in, n_out, no_bias):
    layer = to_float64(Dense(n_out, n_in, "he", no_bias=no_bias))
    x = np.random.default_rng(n_in).standard_normal((n, n_in))
    expected = ["input", "weights"] if no_bias else ["input", "weights", "biases"]
    assert check_gradients(layer, x) == expected


def test_dense_forward_backward_exact():
    layer = Dense(3, 2)
    layer.weights = to_device(np.array([[1, 0, 2], [0, 1, 3]], dtype=np.float32))
    layer.biases = to_device(np.array([[1, 1, 1]], dtype=np.float32))
    x = np.array([[1, 2], [3, 4]], dtype=np.float32)
    out = to_host(layer.forward(to_device(x)))
    np.testing.assert_array_equal(out, [[2, 3, 9], [4, 5, 19]])
    assert out.dtype == DTYPE
    g = np.array([[1, 0, 0], [0, 1, 1]], dtype=np.float32)
    dx = to_host(layer.backward(to_device(g)))
    # dx = G Wᵀ: row 1 = W[:, 0]; row 2 = W[:, 1] + W[:, 2]
    np.testing.assert_array_equal(dx, [[1, 0], [2, 4]])
    # dW = Xᵀ G
    np.testing.assert_array_equal(to_host(layer.weights_gradient), [[1, 3, 3], [2, 4, 4]])
    np.testing.assert_array_equal(to_host(layer.biases_gradient), [[1, 1, 1]])
    assert set(layer.params) == {"weights", "biases"}
    assert layer.params["weights"][1] is layer.weights_gradient


def test_dense_params_are_the_arrays_the_layer_computes_with():
    layer = Dense(2, 2, "xavier")
    weights, _ = layer.params["weights"]
    weights[...] = to_device(np.eye(2, dtype=np.float32))  # an optimizer updates in place
    layer.params["biases"][0][...] = 0
    x = np.array([[3.0, -1.0]], dtype=np.float32)
    np.testing.assert_array_equal(to_host(layer.forward(to_device(x))), x)


def test_dense_shapes_and_initialization():
    layer = Dense(200, 100, "he")
    assert (layer.input_shape, layer.output_shape) == ((100,), (200,))
    assert (layer.input_size, layer.output_size) == (100, 200)
    weights = to_host(layer.weights)
    assert weights.shape == (100, 200) and weights.dtype == DTYPE
    assert to_host(layer.biases).shape == (1, 200)
    assert to_host(layer.weights_gradient).shape == (100, 200)
    assert not to_host(layer.weights_gradient).any()
    assert np.std(weights) == pytest.approx(np.sqrt(2 / 100), rel=0.05)
    assert np.std(to_host(layer.biases)) == pytest.approx(1.0, rel=0.2)
    assert np.std(to_host(Dense(200, 100, "xavier").weights)) == pytest.approx(0.1, rel=0.05)
    other = Dense(200, 400, "xavier")
    assert np.std(to_host(other.weights)) == pytest.approx(np.sqrt(1 / 400), rel=0.05)
    auto = Dense(5, 4)
    assert auto.weights is None and auto.params == {}
    auto.init_weights("plain", no_bias=True)
    assert auto.biases is None and set(auto.params) == {"weights"}
    lazy = Dense(300)  # "auto" outside a Model: Xavier at the first forward
    lazy.forward(to_device(np.ones((1, 300))))
    assert np.std(to_host(lazy.weights)) == pytest.approx(np.sqrt(1 / 300), rel=0.05)


def test_dense_builds_from_first_batch_and_uses_global_random_state():
    set_seed(7)
    first = Dense(3, initialization="he")
    first.build(4)
    set_seed(7)
    second = Dense(3, 4, "he")
    np.testing.assert_array_equal(to_host(first.weights), to_host(second.weights))
    lazy = Dense(3)
    out = lazy.forward(to_device(np.ones((2, 6))))
    assert lazy.input_shape == (6,) and to_host(out).shape == (2, 3)


# ================================================================================ Dropout
def test_dropout_training_mask_and_inference_identity():
    set_seed(0)
    p = 0.3
    layer = Dropout(p)
    x = np.random.default_rng(0).uniform(1.0, 2.0, (400, 500))
    out = to_host(layer.forward(to_device(x)))
    mask = to_host(layer.mask)
    assert mask.shape == x.shape
    values = np.unique(mask)
    np.testing.assert_allclose(values, [0.0, 1.0 / (1.0 - p)], rtol=1e-6)
    assert np.mean(mask > 0) == pytest.approx(1 - p, abs=0.005)
    np.testing.assert_allclose(out, x * mask, rtol=1e-6)
    g = np.random.default_rng(1).standard_normal(x.shape)
    np.testing.assert_allclose(to_host(layer.backward(to_device(g))), g * mask, rtol=1e-6)
    # inference: identity, and backward passes the gradient through
    np.testing.assert_array_equal(to_host(layer.forward(to_device(x), training=False)), x)
    np.testing.assert_array_equal(to_host(layer.backward(to_device(g))), g)


def test_dropout_gradient_with_fixed_mask_in_float64():
    layer = Dropout(0.5)
    x = np.random.default_rng(2).standard_normal((3, 4))
    out = to_host(layer.forward(to_device(x)))
    mask = to_host(layer.mask)
    assert set(np.unique(mask)) <= {0.0, 2.0}
    np.testing.assert_array_equal(out, x * mask)
    r = random_projection(out.shape)
    # L = sum(x * mask * R) is linear in x: dL/dx = R * mask exactly
    np.testing.assert_array_equal(to_host(layer.backward(to_device(r))), r * mask)
    assert layer.params == {}


def test_dropout_seeded_masks_repeat_and_zero_probability():
    x = np.ones((10, 10))
    set_seed(3)
    a = to_host(Dropout(0.5).forward(to_device(x)))
    set_seed(3)
    b = to_host(Dropout(0.5).forward(to_device(x)))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(to_host(Dropout(0.0).forward(to_device(x))), x)


def test_dropout_any_shape_and_scalars():
    layer = Dropout(0.25)
    assert to_host(layer.forward(to_device(np.ones((2, 3, 4, 5))))).shape == (2, 3, 4, 5)
    assert float(to_host(layer.forward(to_device(2.0), training=False))) == 2.0


# ===================================================================== BatchNormalization
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize(("n", "f"), [(4, 3), (2, 5), (7, 1)])
def test_batchnorm_gradients(n, f, training):
    layer = BatchNormalization(momentum=0.8)
    layer.build(f)
    rng = np.random.default_rng(n * f)
    layer.gamma = to_device(rng.uniform(0.5, 2.0, (1, f)))
    layer.beta = to_device(rng.standard_normal((1, f)))
    layer.cache_m = to_device(rng.standard_normal((1, f)))
    layer.cache_v = to_device(rng.uniform(0.5, 2.0, (1, f)))
    to_float64(layer)
    x = rng.standard_normal((n, f)) * 3 - 1
    assert check_gradients(layer, x, training=training) == ["input", "gamma", "beta"]


def test_batchnorm_hand_worked_batch_and_running_statistics():
    layer = BatchNormalization()  # momentum 0.9, epsilon 1e-8
    layer.build(2)
    assert to_host(layer.gamma).tolist() == [[1, 1]] and to_host(layer.beta).tolist() == [[0, 0]]
    assert to_host(layer.cache_m).tolist() == [[0, 0]]
    assert to_host(layer.cache_v).tolist() == [[1, 1]]
    x1 = np.array([[1, 2], [3, 6]], dtype=np.float32)  # mean [2, 4], var [1, 4]
    out = to_host(layer.forward(to_device(x1)))
    np.testing.assert_allclose(out, [[-1, -1], [1, 1]], rtol=1e-6)
    np.testing.assert_allclose(to_host(layer.cache_m), [[0.2, 0.4]], rtol=1e-6)
    np.testing.assert_allclose(to_host(layer.cache_v), [[1.0, 1.3]], rtol=1e-6)
    x2 = np.array([[0, 0], [2, 2]], dtype=np.float32)  # mean [1, 1], var [1, 1]
    layer.forward(to_device(x2))
    np.testing.assert_allclose(to_host(layer.cache_m), [[0.28, 0.46]], rtol=1e-6)
    np.testing.assert_allclose(to_host(layer.cache_v), [[1.0, 1.27]], rtol=1e-6)
    # inference normalizes with the running statistics and does not update them
    layer.gamma = to_device(np.array([[2, 1]], dtype=np.float32))
    layer.beta = to_device(np.array([[0, 1]], dtype=np.float32))
    inference = to_host(layer.forward(to_device(x1), training=False))
    expected = np.array([[2, 1]]) * (x1 - [[0.28, 0.46]]) / np.sqrt([[1.0, 1.27]]) + [[0, 1]]
    np.testing.assert_allclose(inference, expected, rtol=1e-5)
    np.testing.assert_allclose(to_host(layer.cache_m), [[0.28, 0.46]], rtol=1e-6)


def test_batchnorm_backward_hand_worked():
    # With G = x̂ the input gradient is inv_std·(x̂ − x̂·mean(x̂²)) = 0 (mean x̂² = 1),
    # dgamma = Σ x̂² = N, dbeta = Σ x̂ = 0.
    layer = to_float64(BatchNormalization(epsilon=1e-12))
    layer.build(1)
    to_float64(layer)
    x = np.array([[1.0], [3.0]])
    x_hat = to_host(layer.forward(to_device(x))).copy()
    np.testing.assert_allclose(x_hat, [[-1.0], [1.0]], rtol=1e-9)
    dx = to_host(layer.backward(to_device(x_hat)))
    np.testing.assert_allclose(dx, [[0.0], [0.0]], atol=1e-9)
    np.testing.assert_allclose(to_host(layer.gamma_gradient), [[2.0]], rtol=1e-9)
    np.testing.assert_allclose(to_host(layer.beta_gradient), [[0.0]], atol=1e-12)


def test_batchnorm_builds_on_first_forward():
    layer = BatchNormalization()
    layer.forward(to_device(np.random.default_rng(0).standard_normal((4, 3))))
    assert layer.input_shape == layer.output_shape == (3,)
    assert set(layer.params) == {"gamma", "beta"} and set(layer.state) == {"cache_m", "cache_v"}


# ============================================================================ bad input
@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: Dense(0), "output_size"),
        (lambda: Dense(-3), "output_size"),
        (lambda: Dense(2.0), "output_size"),
        (lambda: Dense(3, 0), "input_size"),
        (lambda: Dense(3, initialization="glorot"), "initialization"),
        (lambda: Dense(3, no_bias=1), "no_bias"),
        (lambda: Dense(3).build((2, 3, 4)), "input_shape"),  # (T, F) sequences are fine
        (lambda: Dense(3, 4).build(5), "input_size"),
        (lambda: Dropout(1.0), "probability"),
        (lambda: Dropout(-0.1), "probability"),
        (lambda: Dropout(1.5), "probability"),
        (lambda: Dropout(float("nan")), "probability"),
        (lambda: Dropout("0.5"), "probability"),
        (lambda: BatchNormalization(momentum=-0.1), "momentum"),
        (lambda: BatchNormalization(epsilon=0.0), "epsilon"),
        (lambda: BatchNormalization(epsilon=-1e-5), "epsilon"),
        (lambda: BatchNormalization().build((2, 3, 4)), "input_shape"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(make, name):
    with pytest.raises(ValueError, match=name):
        make()


@pytest.mark.parametrize(
    ("layer", "x"),
    [
        (Dense(3, 4, "he"), np.zeros((2, 5))),
        (Dense(3, 4, "he"), np.zeros((2, 4, 1))),
        (Dense(3, 4, "he"), np.zeros(4)),  # a single sample without batch axis
        (Dense(3), np.zeros(4)),
        (BatchNormalization(), np.zeros(4)),
    ],
)
def test_bad_input_batch(layer, x):
    with pytest.raises(ValueError, match="input_batch"):
        layer.forward(to_device(x))


def test_bad_input_batch_after_build():
    norm = BatchNormalization()
    norm.build(3)
    with pytest.raises(ValueError, match="input_batch"):
        norm.forward(to_device(np.zeros((2, 4))))
    drop = Dropout()
    drop.build((3,))
    with pytest.raises(ValueError, match="input_batch"):
        drop.forward(to_device(np.zeros((2, 4))))
    with pytest.raises(ValueError, match=r"input_shape.*Flatten"):  # (N, T, F) is a sequence
        Dense(3).forward(to_device(np.zeros((2, 4, 4, 4))))


@pytest.mark.parametrize(
    "layer", [Dense(3, 4, "he"), Dense(3, 4, "xavier", True), Dropout(0.5), BatchNormalization()]
)
@pytest.mark.parametrize("training", [True, False])
def test_backward_gradient_of_wrong_shape(layer, training):
    out = layer.forward(to_device(np.ones((5, 4), dtype=np.float32)), training=training)
    n, f = to_host(out).shape
    for bad in ((n, f + 1), (n + 1, f), (f,), (n, f, 1), (1, f)):
        with pytest.raises(ValueError, match="output_gradient_batch"):
            layer.backward(to_device(np.ones(bad, dtype=np.float32)))


@pytest.mark.parametrize("layer", [Dense(3, 4, "he"), Dropout(0.5), BatchNormalization()])
def test_backward_before_forward(layer):
    with pytest.raises(ValueError, match="forward"):
        layer.backward(to_device(np.ones((5, 3), dtype=np.float32)))


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_empty_batch(training):
    layer = BatchNormalization()
    layer.build(3)
    if training:  # no batch statistics: an error, and the running statistics stay clean
        with pytest.raises(ValueError, match="input_batch"):
            layer.forward(to_device(np.zeros((0, 3))))
        np.testing.assert_array_equal(to_host(layer.cache_m), np.zeros((1, 3)))
        np.testing.assert_array_equal(to_host(layer.cache_v), np.ones((1, 3)))
    else:
        assert to_host(layer.forward(to_device(np.zeros((0, 3))), training=False)).shape == (0, 3)


@pytest.mark.parametrize("make", [lambda: Dense(3, 4, "he"), lambda: Dense(3, 4, "he", True)])
def test_skipping_the_input_gradient_keeps_parameter_gradients(make):
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    g = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    full, lean = make(), make()
    lean.load_params({name: to_host(value) for name, (value, _) in full.params.items()})
    lean.needs_input_gradient = False
    full.forward(to_device(x))
    lean.forward(to_device(x))
    assert to_host(full.backward(to_device(g))).shape == (5, 4)
    assert lean.backward(to_device(g)) is None
    for name, (_, grad) in full.params.items():
        np.testing.assert_array_equal(to_host(lean.params[name][1]), to_host(grad))
