"""Train a small classifier on scikit-learn's bundled 8x8 digits (1,797 images, shipped inside
the scikit-learn wheel: no download) with Keras 3 on the JAX backend, on the CPU, in seconds.
Each epoch's weights are saved and recorded in the run's lock by cairn's Keras callback.

    cairn lock --output metrics.json --seed 0 -- python train.py

Deterministic: one seed for Python, NumPy and Keras (CAIRN_SEED when cairn sets it with
--seed), and XLA on one CPU thread, so `cairn rebuild --run` gives the same bytes.
"""

import os

# Before keras or jax is imported: the JAX backend, on the CPU, on one thread.
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import json  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from cairn.keras import CairnCallback  # noqa: E402

EPOCHS = int(os.environ.get("EPOCHS", "3"))
seed = int(os.environ.get("CAIRN_SEED", "0"))
keras.utils.set_random_seed(seed)

digits = load_digits()
x = (digits.data / 16.0).astype("float32")
y = digits.target.astype("int32")
order = np.random.default_rng(seed).permutation(len(x))
x, y = x[order], y[order]
split = int(0.8 * len(x))

model = keras.Sequential(
    [
        keras.Input(shape=(64,)),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ]
)
model.compile(
    optimizer=keras.optimizers.Adam(1e-2),
    loss="sparse_categorical_crossentropy",
    metrics=["accuracy"],
)
history = model.fit(
    x[:split],
    y[:split],
    validation_data=(x[split:], y[split:]),
    epochs=EPOCHS,
    batch_size=64,
    shuffle=True,
    verbose=2,
    callbacks=[CairnCallback("ckpt/epoch-{epoch:02d}.weights.h5")],
)
with open("metrics.json", "w") as f:
    json.dump({k: [float(v) for v in vs] for k, vs in history.history.items()}, f, indent=1)
    f.write("\n")
