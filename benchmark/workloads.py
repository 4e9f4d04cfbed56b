"""The benchmark workloads, described once and built for both frameworks.

Each workload is a :class:`Workload`: a list of layer specs (:class:`Spec`), the
input shape, the loss, the optimizer, the default sample count and batch size.
From that one description this module

* generates the data (float32, from a fixed-seed NumPy generator),
* builds the mpneuralnetwork ``Model`` and the equivalent PyTorch
  ``nn.Sequential`` with its optimizer and loss,
* runs one epoch in each framework,
* counts the matmul/convolution FLOPs of one training step analytically.

Nothing here imports ``torch`` or ``mpneuralnetwork`` at module level, so a child
process that benchmarks one framework never loads the other.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "WORKLOADS",
    "Spec",
    "Workload",
    "flops_per_sample",
    "make_data",
    "ours_build",
    "ours_epoch",
    "ours_predict",
    "torch_build",
    "torch_epoch",
    "torch_predict",
]


@dataclass(frozen=True)
class Spec:
    """One layer of a network, independent of the framework.

    Attributes:
        kind: ``dense``, ``conv``, ``relu``, ``sigmoid``, ``dropout``, ``bn``
            (BatchNormalization over features), ``bn2d`` (per channel),
            ``maxpool``, ``flatten``, ``lstm`` (an LSTM over (T, F) sequences
            that outputs its last hidden state), ``block`` (a ResNet basic block:
            two 3x3 "same" convolutions with batch normalization, a 1x1 projection
            with batch normalization as shortcut where the shape changes, ReLU after
            the addition), ``gap`` (global average pooling over H and W),
            ``embedding`` (token ids to vectors), ``position`` (a learned position
            vector added at each step), ``encoder`` (a pre-norm Transformer encoder
            block, GELU) or ``gap1d`` (the mean over the steps of (T, D) sequences).
        size: Output units (dense, lstm), output channels (conv, block), pool size
            (maxpool), vector size (embedding), feed-forward width (encoder).
        kernel: Kernel side of a convolution.
        p: Dropout probability.
        padding: Zeros added on each side of a convolution's input.
        stride: Stride of a block's first convolution and of its projection.
        heads: Attention heads of an encoder block.
    """

    kind: str
    size: int = 0
    kernel: int = 0
    p: float = 0.0
    padding: int = 0
    stride: int = 1
    heads: int = 0


@dataclass(frozen=True)
class Workload:
    """A network, its loss and optimizer, and the default data size.

    Attributes:
        name: Short name used on the command line.
        input_shape: Shape of one sample (no batch dimension).
        layers: The network, first layer first.
        task: ``classification`` (10 one-hot classes, cross-entropy on logits)
            or ``regression`` (one output, MSE).
        optimizer: ``adam`` (Adam with decoupled L2 decay, i.e. AdamW) or ``rmsprop``.
        learning_rate: The optimizer's learning rate.
        samples: Default number of training samples.
        batch_size: Default mini-batch size.
        vocabulary: For inputs of token ids, the number of ids (0 for float inputs).
    """

    name: str
    input_shape: tuple[int, ...]
    layers: tuple[Spec, ...]
    task: str
    optimizer: str
    learning_rate: float
    samples: int
    batch_size: int
    description: str = field(default="")
    vocabulary: int = 0


#: Weight decay of mpneuralnetwork's Adam and RMSprop defaults (L2).
WEIGHT_DECAY = 0.001
#: Classes of the classification workloads.
CLASSES = 10

WORKLOADS: dict[str, Workload] = {
    "mlp": Workload(
        name="mlp",
        input_shape=(784,),
        layers=(
            Spec("dense", 128),
            Spec("relu"),
            Spec("dropout", p=0.2),
            Spec("dense", 40),
            Spec("relu"),
            Spec("dropout", p=0.3),
            Spec("dense", CLASSES),
        ),
        task="classification",
        optimizer="adam",
        learning_rate=0.001,
        samples=20_000,
        batch_size=32,
        description="784-128-40-10 MLP with dropout, Adam, batch 32",
    ),
    "cnn": Workload(
        name="cnn",
        input_shape=(1, 28, 28),
        layers=(
            Spec("conv", 16, kernel=3),
            Spec("bn2d"),
            Spec("relu"),
            Spec("maxpool", 2),
            Spec("conv", 32, kernel=3),
            Spec("relu"),
            Spec("flatten"),
            Spec("dense", 128),
            Spec("relu"),
            Spec("dense", CLASSES),
        ),
        task="classification",
        optimizer="adam",
        learning_rate=0.005,
        samples=2_000,
        batch_size=32,
        description="conv16-bn-pool-conv32-128-10 CNN on 1x28x28, Adam(0.005), batch 32",
    ),
    "regression": Workload(
        name="regression",
        input_shape=(13,),
        layers=(
            Spec("dense", 64),
            Spec("bn"),
            Spec("relu"),
            Spec("dense", 128),
            Spec("relu"),
            Spec("dropout", p=0.2),
            Spec("dense", 64),
            Spec("relu"),
            Spec("dense", 32),
            Spec("sigmoid"),
            Spec("dense", 1),
        ),
        task="regression",
        optimizer="rmsprop",
        learning_rate=0.001,
        samples=20_000,
        batch_size=64,
        description="13-64(bn)-128-64-32-1 regressor, MSE, RMSprop, batch 64",
    ),
    "supercnn": Workload(
        name="supercnn",
        input_shape=(1, 28, 28),
        layers=(
            Spec("conv", 32, kernel=3),
            Spec("bn2d"),
            Spec("relu"),
            Spec("maxpool", 2),
            Spec("conv", 64, kernel=3),
            Spec("bn2d"),
            Spec("relu"),
            Spec("maxpool", 2),
            Spec("flatten"),
            Spec("dense", 128),
            Spec("bn"),
            Spec("relu"),
            Spec("dropout", p=0.5),
            Spec("dense", CLASSES),
        ),
        task="classification",
        optimizer="adam",
        learning_rate=0.001,
        samples=4_000,
        batch_size=64,
        description="the 1.1 'super CNN': conv32-bn-pool-conv64-bn-pool-128(bn)-10 on 1x28x28, "
        "Adam, batch 64",
    ),
    "cifar": Workload(
        name="cifar",
        input_shape=(3, 32, 32),
        layers=(
            Spec("conv", 32, kernel=3, padding=1),
            Spec("relu"),
            Spec("conv", 32, kernel=3, padding=1),
            Spec("bn2d"),
            Spec("relu"),
            Spec("maxpool", 2),
            Spec("conv", 64, kernel=3, padding=1),
            Spec("relu"),
            Spec("conv", 64, kernel=3, padding=1),
            Spec("bn2d"),
            Spec("relu"),
            Spec("maxpool", 2),
            Spec("flatten"),
            Spec("dense", 256),
            Spec("relu"),
            Spec("dropout", p=0.3),
            Spec("dense", CLASSES),
        ),
        task="classification",
        optimizer="adam",
        learning_rate=0.001,
        samples=2_000,
        batch_size=64,
        description="CIFAR-shaped CNN: 2x conv32, pool, 2x conv64 (3x3 'same'), pool, 256-10 "
        "on 3x32x32, Adam, batch 64",
    ),
    "resnet": Workload(
        name="resnet",
        input_shape=(3, 32, 32),
        layers=(
            Spec("conv", 16, kernel=3, padding=1),
            Spec("bn2d"),
            Spec("relu"),
            Spec("block", 16),
            Spec("block", 32, stride=2),
            Spec("block", 64, stride=2),
            Spec("gap"),
            Spec("dense", CLASSES),
        ),
        task="classification",
        optimizer="adam",
        learning_rate=0.001,
        samples=2_000,
        batch_size=64,
        description="ResNet: stem conv16-bn-relu, basic blocks of 16, 32 (stride 2) and 64 "
        "(stride 2) channels, global average pooling, Dense(10) on 3x32x32, Adam, batch 64",
    ),
    "lstm": Workload(
        name="lstm",
        input_shape=(28, 28),
        layers=(Spec("lstm", 128), Spec("dense", CLASSES)),
        task="classification",
        optimizer="adam",
        learning_rate=0.001,
        samples=8_192,
        batch_size=64,
        description="LSTM(128) over 28 steps of 28 features, Dense(10) on the last state, Adam",
    ),
    "transformer": Workload(
        name="transformer",
        input_shape=(32,),
        layers=(
            Spec("embedding", 64),
            Spec("position"),
            Spec("encoder", 128, heads=4, p=0.1),
            Spec("encoder", 128, heads=4, p=0.1),
            Spec("gap1d"),
            Spec("dense", CLASSES),
        ),
        task="classification",
        optimizer="adam",
        learning_rate=0.001,
        samples=4_096,
        batch_size=64,
        description="Transformer: 32 token ids (vocabulary 1,000), Embedding(64), learned "
        "positions, two pre-norm encoder blocks (4 heads, feed-forward 128, dropout 0.1), mean "
        "over the steps, Dense(10), Adam",
        vocabulary=1_000,
    ),
}

#: Workloads whose inference throughput (``predict`` on PREDICT_SAMPLES) is measured.
PREDICT_WORKLOADS = ("cnn", "supercnn", "cifar")
#: Samples of the inference measurement.
PREDICT_SAMPLES = 10_000
#: Batch of PyTorch's inference loop (ours: one ``Model.predict`` call on all samples).
TORCH_PREDICT_BATCH = 1000


# --------------------------------------------------------------------------- data


def make_data(workload: Workload, samples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Generate the inputs and one-hot (or real) targets of a workload, all float32.

    Args:
        workload: The workload.
        samples: Number of samples.
        seed: Seed of the NumPy generator.

    Returns:
        ``(X, y)``: X of shape ``(samples, *input_shape)`` (int64 token ids for a
        workload with a vocabulary); y of shape ``(samples, 10)`` one-hot for
        classification, ``(samples, 1)`` for regression.
    """
    rng = np.random.default_rng(seed)
    if workload.vocabulary:
        x = rng.integers(0, workload.vocabulary, (samples, *workload.input_shape))
    else:
        x = rng.standard_normal((samples, *workload.input_shape), dtype=np.float32)
    if workload.task == "classification":
        labels = rng.integers(0, CLASSES, samples)
        y = np.zeros((samples, CLASSES), dtype=np.float32)
        y[np.arange(samples), labels] = 1.0
    else:
        noise = rng.standard_normal(samples, dtype=np.float32)
        y = (2.0 * x[:, 0] + 0.5 * x[:, 1] + 0.1 * noise).astype(np.float32)[:, None]
    return x, y


# --------------------------------------------------------------------------- FLOPs


def _shapes(workload: Workload) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(input shape, output shape) of every layer of the workload, batch excluded."""
    shape = workload.input_shape
    result = []
    for spec in workload.layers:
        if spec.kind == "dense":
            out: tuple[int, ...] = (spec.size,)
        elif spec.kind == "conv":
            c, h, w = shape
            pad = 2 * spec.padding - spec.kernel + 1
            out = (spec.size, h + pad, w + pad)
        elif spec.kind == "maxpool":
            c, h, w = shape
            out = (c, h // spec.size, w // spec.size)
        elif spec.kind == "flatten":
            out = (math.prod(shape),)
        elif spec.kind == "lstm":
            out = (spec.size,)
        elif spec.kind == "block":
            c, h, w = shape
            out = (spec.size, (h - 1) // spec.stride + 1, (w - 1) // spec.stride + 1)
        elif spec.kind == "gap":
            out = (shape[0],)
        elif spec.kind == "embedding":
            out = (*shape, spec.size)
        elif spec.kind == "gap1d":
            out = (shape[-1],)
        else:
            out = shape
        result.append((shape, out))
        shape = out
    return result


def conv_layers(workload: Workload) -> list[tuple[int, tuple[int, int, int], tuple[int, int, int]]]:
    """``(layer index, input shape, output shape)`` of each convolution, batch excluded."""
    return [
        (i, shapes[0], shapes[1])  # type: ignore[misc]
        for i, (spec, shapes) in enumerate(zip(workload.layers, _shapes(workload), strict=True))
        if spec.kind == "conv"
    ]


def conv_flops(shape_in: tuple[int, ...], shape_out: tuple[int, ...], kernel: int) -> float:
    """FLOPs of one sample's forward convolution, counted as its im2col matmul."""
    c_out, h_out, w_out = shape_out
    return 2.0 * h_out * w_out * c_out * shape_in[0] * kernel**2


def flops_per_sample(workload: Workload) -> dict[str, float]:
    """Matmul/convolution FLOPs of one sample's training step (forward + backward).

    Each matmul of an (m, k) by a (k, n) matrix counts 2·m·k·n; a convolution is
    counted as its im2col matmul. The backward pass counts twice the forward
    (the weight gradient and the input gradient), also for the first layer, so
    the total is 3 x forward. Elementwise work (activations, BatchNorm, pooling,
    dropout, the optimizer) is not counted: the figure is the useful dense
    arithmetic, the same for both frameworks.

    Returns:
        ``{"forward": ..., "train": ...}`` FLOPs per sample.
    """
    forward = 0.0
    for spec, (shape_in, shape_out) in zip(workload.layers, _shapes(workload), strict=True):
        if spec.kind == "dense":
            forward += 2.0 * math.prod(shape_in) * spec.size
        elif spec.kind == "conv":
            forward += conv_flops(shape_in, shape_out, spec.kernel)
        elif spec.kind == "block":  # two 3x3 convolutions, and the projection if any
            forward += conv_flops(shape_in, shape_out, 3)
            forward += conv_flops(shape_out, shape_out, 3)
            if shape_in != shape_out:
                forward += conv_flops(shape_in, shape_out, 1)
        elif spec.kind == "lstm":  # x_t W and h_{t-1} U for the four gates, every step
            steps, features = shape_in
            forward += 2.0 * steps * (features + spec.size) * 4 * spec.size
        elif spec.kind == "encoder":  # Q, K, V and output projections, scores, context, FFN
            steps, dim = shape_in
            forward += 2.0 * steps * dim * 4 * dim + 2.0 * 2 * steps * steps * dim
            forward += 2.0 * 2 * steps * dim * spec.size
    return {"forward": forward, "train": 3.0 * forward}


# --------------------------------------------------------------------------- ours


def ours_build(workload: Workload) -> Any:
    """Build the mpneuralnetwork ``Model`` of a workload (imports the library lazily)."""
    from mpneuralnetwork import activations, layers, losses, optimizers
    from mpneuralnetwork.model import Model

    net: list[Any] = []
    first = True
    for spec, (shape_in, _) in zip(workload.layers, _shapes(workload), strict=True):
        if spec.kind == "dense":
            kwargs: dict[str, Any] = {"input_size": workload.input_shape[0]} if first else {}
            net.append(layers.Dense(spec.size, **kwargs))
        elif spec.kind == "conv":
            kwargs = {"input_shape": workload.input_shape} if first else {}
            kwargs["padding"] = spec.padding
            net.append(layers.Convolutional(spec.size, spec.kernel, **kwargs))
        elif spec.kind == "relu":
            net.append(activations.ReLU())
        elif spec.kind == "sigmoid":
            net.append(activations.Sigmoid())
        elif spec.kind == "dropout":
            net.append(layers.Dropout(spec.p))
        elif spec.kind == "bn":
            net.append(layers.BatchNormalization())
        elif spec.kind == "bn2d":
            net.append(layers.BatchNormalization2D())
        elif spec.kind == "maxpool":
            net.append(layers.MaxPooling2D(spec.size, spec.size))
        elif spec.kind == "flatten":
            net.append(layers.Flatten())
        elif spec.kind == "lstm":
            kwargs = {"input_shape": workload.input_shape} if first else {}
            net.append(layers.LSTM(spec.size, **kwargs))
        elif spec.kind == "block":
            net += [_ours_block(layers, activations, spec, shape_in), activations.ReLU()]
        elif spec.kind == "gap":
            net.append(layers.GlobalAveragePooling2D())
        elif spec.kind == "embedding":
            kwargs = {"input_length": workload.input_shape[0]} if first else {}
            net.append(layers.Embedding(workload.vocabulary, spec.size, **kwargs))
        elif spec.kind == "position":
            net.append(layers.PositionEmbedding(shape_in[0]))
        elif spec.kind == "encoder":
            net.append(layers.TransformerEncoder(spec.heads, spec.size, dropout=spec.p))
        elif spec.kind == "gap1d":
            net.append(layers.GlobalAveragePooling1D())
        else:  # pragma: no cover - a typo in WORKLOADS
            raise ValueError(f"unknown layer kind {spec.kind!r}")
        first = False
    if workload.task == "classification":
        loss: Any = losses.CategoricalCrossEntropy()
    else:
        loss = losses.MSE()
    if workload.optimizer == "adam":
        optimizer: Any = optimizers.Adam(learning_rate=workload.learning_rate)
    else:
        optimizer = optimizers.RMSprop(learning_rate=workload.learning_rate)
    return Model(net, loss, optimizer)


def _ours_block(layers: Any, activations: Any, spec: Spec, shape_in: tuple[int, ...]) -> Any:
    """A basic block as a ``Residual`` (the ReLU after the addition comes after it)."""
    convolution = [
        layers.Convolutional(spec.size, 3, padding="same", stride=spec.stride),
        layers.BatchNormalization2D(),
        activations.ReLU(),
        layers.Convolutional(spec.size, 3, padding="same"),
        layers.BatchNormalization2D(),
    ]
    shortcut = None
    if spec.stride != 1 or shape_in[0] != spec.size:
        shortcut = [
            layers.Convolutional(spec.size, 1, stride=spec.stride),
            layers.BatchNormalization2D(),
        ]
    return layers.Residual(convolution, shortcut=shortcut)


def _train_kwargs(model: Any) -> dict[str, Any]:
    """The keyword arguments that make ``Model.train`` silent and side-effect free."""
    kwargs: dict[str, Any] = {"auto_evaluation": 0.0, "model_checkpoint": False}
    if "verbose" in inspect.signature(model.train).parameters:
        kwargs["verbose"] = 0
    return kwargs


def ours_epoch(model: Any, x: Any, y: Any, batch_size: int) -> None:
    """Train an mpneuralnetwork model for one epoch, silently.

    ``verbose=0`` is passed when ``Model.train`` knows it; anything printed anyway
    is swallowed so that it cannot disturb the benchmark's own output.
    """
    with contextlib.redirect_stdout(io.StringIO()):
        model.train(x, y, epochs=1, batch_size=batch_size, **_train_kwargs(model))


def ours_predict(model: Any, x: Any) -> Any:
    """Inference on all of ``x`` with one ``Model.predict`` call (it chunks the data itself)."""
    return model.predict(x)


# --------------------------------------------------------------------------- torch


def torch_build(workload: Workload, device: str = "cpu") -> tuple[Any, Any, Any]:
    """Build the PyTorch network, optimizer and loss of a workload.

    Mirrors mpneuralnetwork's choices: no bias on a layer followed by BatchNorm,
    LayerNorm's eps 1e-5 (as ours in TransformerEncoder),
    BatchNorm with ``momentum=0.1`` (ours keeps 0.9 of the old statistics) and
    ``eps=1e-8``; AdamW (decoupled decay 0.001, eps 1e-8) or RMSprop
    (``alpha=0.9``, eps 1e-8, L2 0.001 added to the gradient), each with weight
    decay only on weights/kernels, none on biases and BatchNorm parameters.

    Returns:
        ``(model, optimizer, loss_fn)``.
    """
    import torch
    from torch import nn

    class LastState(nn.Module):
        """``nn.LSTM`` on batch-first sequences, returning the last hidden state."""

        def __init__(self, features: int, units: int) -> None:
            super().__init__()
            self.lstm = nn.LSTM(features, units, batch_first=True)

        def forward(self, x: Any) -> Any:
            out, _ = self.lstm(x)
            return out[:, -1]

    class BasicBlock(nn.Module):
        """torchvision's BasicBlock: conv-bn-relu-conv-bn, plus the shortcut, then ReLU."""

        def __init__(self, channels_in: int, channels: int, stride: int) -> None:
            super().__init__()
            self.convolution = nn.Sequential(
                nn.Conv2d(channels_in, channels, 3, stride, padding=1, bias=False),
                nn.BatchNorm2d(channels, eps=1e-8, momentum=0.1),
                nn.ReLU(),
                nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels, eps=1e-8, momentum=0.1),
            )
            self.shortcut = nn.Identity()
            if stride != 1 or channels_in != channels:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(channels_in, channels, 1, stride, bias=False),
                    nn.BatchNorm2d(channels, eps=1e-8, momentum=0.1),
                )

        def forward(self, x: Any) -> Any:
            return torch.relu(self.convolution(x) + self.shortcut(x))

    class Positions(nn.Module):
        """A learned (T, D) table added to every sequence (ours: PositionEmbedding)."""

        def __init__(self, steps: int, dim: int) -> None:
            super().__init__()
            self.embeddings = nn.Parameter(0.02 * torch.randn(steps, dim))

        def forward(self, x: Any) -> Any:
            return x + self.embeddings

    class StepMean(nn.Module):
        """The mean over the steps of (N, T, D) sequences (ours: GlobalAveragePooling1D)."""

        def forward(self, x: Any) -> Any:
            return x.mean(dim=1)

    modules: list[Any] = []
    shapes = _shapes(workload)
    for i, (spec, (shape_in, _)) in enumerate(zip(workload.layers, shapes, strict=True)):
        nxt = workload.layers[i + 1].kind if i + 1 < len(workload.layers) else ""
        if spec.kind == "dense":
            modules.append(nn.Linear(math.prod(shape_in), spec.size, bias=nxt != "bn"))
        elif spec.kind == "conv":
            modules.append(
                nn.Conv2d(
                    shape_in[0], spec.size, spec.kernel, padding=spec.padding, bias=nxt != "bn2d"
                )
            )
        elif spec.kind == "relu":
            modules.append(nn.ReLU())
        elif spec.kind == "sigmoid":
            modules.append(nn.Sigmoid())
        elif spec.kind == "dropout":
            modules.append(nn.Dropout(spec.p))
        elif spec.kind == "bn":
            modules.append(nn.BatchNorm1d(shape_in[0], eps=1e-8, momentum=0.1))
        elif spec.kind == "bn2d":
            modules.append(nn.BatchNorm2d(shape_in[0], eps=1e-8, momentum=0.1))
        elif spec.kind == "maxpool":
            modules.append(nn.MaxPool2d(spec.size, spec.size))
        elif spec.kind == "flatten":
            modules.append(nn.Flatten())
        elif spec.kind == "lstm":
            modules.append(LastState(shape_in[1], spec.size))
        elif spec.kind == "block":
            modules.append(BasicBlock(shape_in[0], spec.size, spec.stride))
        elif spec.kind == "gap":
            modules += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        elif spec.kind == "embedding":
            modules.append(nn.Embedding(workload.vocabulary, spec.size))
        elif spec.kind == "position":
            modules.append(Positions(*shape_in))
        elif spec.kind == "encoder":
            layer = nn.TransformerEncoderLayer(
                d_model=shape_in[-1],
                nhead=spec.heads,
                dim_feedforward=spec.size,
                dropout=spec.p,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            modules.append(nn.TransformerEncoder(layer, 1, enable_nested_tensor=False))
        elif spec.kind == "gap1d":
            modules.append(StepMean())
        else:  # pragma: no cover - a typo in WORKLOADS
            raise ValueError(f"unknown layer kind {spec.kind!r}")
    model = nn.Sequential(*modules).to(device)

    decay: list[Any] = []
    no_decay: list[Any] = []
    for module in model.modules():
        is_norm = isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm))
        for name, param in module.named_parameters(recurse=False):
            (no_decay if is_norm or "bias" in name else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": WEIGHT_DECAY},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    lr = workload.learning_rate
    if workload.optimizer == "adam":
        optimizer: Any = torch.optim.AdamW(groups, lr=lr, eps=1e-8)
    else:
        optimizer = torch.optim.RMSprop(groups, lr=lr, alpha=0.9, eps=1e-8)
    loss_fn: Any = nn.CrossEntropyLoss() if workload.task == "classification" else nn.MSELoss()
    return model, optimizer, loss_fn


def torch_targets(workload: Workload, y: np.ndarray, device: str = "cpu") -> Any:
    """The PyTorch targets: class indices for classification, the float column otherwise."""
    import torch

    if workload.task == "classification":
        return torch.from_numpy(y.argmax(axis=1)).to(device)
    return torch.from_numpy(y).to(device)


def torch_epoch(
    model: Any,
    optimizer: Any,
    loss_fn: Any,
    x: Any,
    y: Any,
    batch_size: int,
    sync: Callable[[], None] | None = None,
) -> float:
    """One epoch of the ordinary PyTorch loop; returns the summed batch losses.

    randperm, index, forward, loss, zero_grad, backward, step, ``loss.item()``.
    """
    import torch

    model.train()
    n = x.shape[0]
    perm = torch.randperm(n, device=x.device)
    total = 0.0
    for start in range(0, n, batch_size):
        idx = perm[start : start + batch_size]
        out = model(x[idx])
        loss = loss_fn(out, y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item()
    if sync is not None:
        sync()
    return total


def torch_predict(
    model: Any,
    x: Any,
    batch_size: int = TORCH_PREDICT_BATCH,
    sync: Callable[[], None] | None = None,
) -> Any:
    """Inference in the ordinary PyTorch way: eval mode, no autograd, batches, softmax."""
    import torch

    model.eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            outputs.append(torch.softmax(model(x[start : start + batch_size]), dim=1))
        result = torch.cat(outputs).cpu().numpy()
    if sync is not None:
        sync()
    return result
