"""Writes the model files of tests/data with mpneuralnetwork 1.2.0 (commit ebf77e8), flat models.

Run from a checkout of 1.2.0: PYTHONPATH=src python tests/data/write_1_2_0_files.py tests/data
"""

import sys

import numpy as np

import mpneuralnetwork as mpnn
from mpneuralnetwork.activations import ReLU, Tanh
from mpneuralnetwork.layers import (
    LSTM,
    BatchNormalization,
    BatchNormalization2D,
    Convolutional,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    MaxPooling2D,
)
from mpneuralnetwork.losses import MSE, CategoricalCrossEntropy
from mpneuralnetwork.model import Model
from mpneuralnetwork.optimizers import Adam, RMSprop
from mpneuralnetwork.serialization import save_model

out = sys.argv[1]
mpnn.set_seed(0)
rng = np.random.default_rng(0)
x = rng.standard_normal((16, 1, 6, 6)).astype(np.float32)
y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 16)]
cnn = Model(
    [
        Convolutional(4, 3, input_shape=(1, 6, 6), padding="same"),
        BatchNormalization2D(),
        ReLU(),
        MaxPooling2D(2),
        Flatten(),
        Dense(8),
        BatchNormalization(),
        Tanh(),
        Dropout(0.2),
        Dense(3),
    ],
    CategoricalCrossEntropy(),
    Adam(learning_rate=0.01),
)
cnn.train(x, y, epochs=2, batch_size=8, verbose=0)
save_model(cnn, f"{out}/cnn-1.2.0.npz")
ids = rng.integers(0, 20, (16, 5))
t = rng.standard_normal((16, 2)).astype(np.float32)
seq = Model([Embedding(20, 4, input_length=5), LSTM(6), Dense(2)], MSE(), RMSprop())
seq.train(ids, t, epochs=2, batch_size=8, verbose=0)
save_model(seq, f"{out}/lstm-1.2.0.npz")
np.savez(
    f"{out}/expected-1.2.0.npz", cnn_x=x, cnn_y=cnn.predict(x), lstm_x=ids, lstm_y=seq.predict(ids)
)
