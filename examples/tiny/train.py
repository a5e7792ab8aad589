"""A tiny, deterministic training run for trying cairn: fits y = w1*x1 + w2*x2 + b by
gradient descent on data/train, evaluates on data/val, and writes a checkpoint and metrics.
Pure Python, no packages needed."""
import csv
import glob
import json
import os
import random
import sys

seed = int(os.environ.get("SEED", "0"))
epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 200


def load(pattern):
    rows = []
    for path in sorted(glob.glob(pattern)):
        with open(path, newline="") as f:
            rows += [tuple(float(v) for v in r) for r in list(csv.reader(f))[1:]]
    return rows


train, val = load("data/train/*.csv"), load("data/val/*.csv")
rng = random.Random(seed)
w1, w2, b = rng.uniform(-1, 1), rng.uniform(-1, 1), 0.0
lr = 0.1
for epoch in range(epochs):
    g1 = g2 = gb = 0.0
    for x1, x2, y in train:
        err = w1 * x1 + w2 * x2 + b - y
        g1, g2, gb = g1 + err * x1, g2 + err * x2, gb + err
    n = len(train)
    w1, w2, b = w1 - lr * g1 / n, w2 - lr * g2 / n, b - lr * gb / n

mse = sum((w1 * x1 + w2 * x2 + b - y) ** 2 for x1, x2, y in val) / len(val)
os.makedirs("runs", exist_ok=True)
with open("runs/model.json", "w") as f:
    json.dump({"w1": round(w1, 10), "w2": round(w2, 10), "b": round(b, 10)}, f, sort_keys=True)
    f.write("\n")
with open("runs/metrics.json", "w") as f:
    json.dump({"val_mse": round(mse, 10), "epochs": epochs, "seed": seed}, f, sort_keys=True)
    f.write("\n")
print(f"trained {epochs} epochs: w1={w1:.3f} w2={w2:.3f} b={b:.3f} val_mse={mse:.5f}")
