"""A small Transformer encoder on the scikit-learn digits, read as 8 rows of 8 pixels.

Each image is a sequence of 8 steps (its rows) of 8 features (the pixels of a row). A
Dense layer projects every row to D = 32 features, a learned position embedding tells
the rows apart, and two pre-norm `TransformerEncoder` blocks (4 attention heads, a
feed-forward layer of 64, dropout 0.1) let each row look at every other. The mean over
the rows and a Dense layer make the logits. The same network in PyTorch reaches
0.967-0.976 test accuracy.

Run it from the repository root:

    python examples/transformer_digits.py
    python examples/transformer_digits.py --epochs 5 --heads 2
    python examples/transformer_digits.py --attention attention.png   # draws a figure
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import mpneuralnetwork as mpnn
from mpneuralnetwork.layers import (
    Dense,
    GlobalAveragePooling1D,
    PositionEmbedding,
    TransformerEncoder,
)
from mpneuralnetwork.losses import CategoricalCrossEntropy
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import Adam


def build_transformer(dim: int = 32, heads: int = 4, feedforward: int = 64) -> Model:
    """Rows projected to ``dim``, positions added, two encoder blocks, mean, logits."""
    layers = [
        Dense(dim, input_shape=(8, 8)),  # (8, 8) -> (8, D): every row projected
        PositionEmbedding(8),  # + a learned vector per row position
        TransformerEncoder(heads, feedforward),  # (8, D) -> (8, D)
        TransformerEncoder(heads, feedforward),
        GlobalAveragePooling1D(),  # -> (D,): the mean over the rows
        Dense(10),  # logits; the loss brings the Softmax
    ]
    return Model(layers, CategoricalCrossEntropy(), Adam(learning_rate=0.001))


def draw_attention(model: Model, image: np.ndarray, output: str) -> None:
    """The first block's attention weights on one image, a heat map per head, saved."""
    import matplotlib.pyplot as plt

    model.predict(image[None])  # one forward pass; the attention keeps its weights
    attention = model.layers[2].layers[0].layers[1]  # block 0, its Residual 0, the MHA
    weights = mpnn.to_host(attention.attention_weights)[0]  # (H, T, T)
    heads = weights.shape[0]
    figure, axes = plt.subplots(1, heads + 1, figsize=(2.4 * (heads + 1), 2.6))
    axes[0].imshow(image, cmap="gray_r")
    axes[0].set_title("input (8 rows)")
    for h, ax in enumerate(axes[1:]):
        ax.imshow(weights[h], cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_title(f"head {h}")
        ax.set_xlabel("key row")
    axes[1].set_ylabel("query row")
    figure.tight_layout()
    figure.savefig(output, dpi=100, bbox_inches="tight")
    print(f"attention figure saved to {output}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Digits Transformer")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    parser.add_argument("--attention", help="save the attention weights of a test digit here")
    args = parser.parse_args()

    mpnn.set_seed(args.seed)
    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)  # (1797, 8, 8): 8 rows of 8 pixels
    y = np.eye(10, dtype=np.float32)[digits.target]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=0, stratify=digits.target
    )

    model = build_transformer(heads=args.heads)
    if args.verbose:
        model.summary()
    model.train(
        X_train, y_train, epochs=args.epochs, batch_size=32, auto_evaluation=0,
        verbose=args.verbose,
    )  # fmt: skip
    _, metrics = model.evaluate(X_test, y_test)
    print(f"test accuracy: {metrics['accuracy']:.4f}")
    if args.attention:
        draw_attention(model, X_test[0], args.attention)


if __name__ == "__main__":
    main()
