"""Train with another objective than noise augmentation, then certify and attack a few test digits.

    python examples/objectives_digits.py

Consistency regularization (Jeong & Shin, 2020) with uniform noise on the cube, certified against l1;
the same PGD attack `wulff attack` runs checks that no input certified at radius r is broken at eps <= r.
"""
from __future__ import annotations

import torch

from wulff.certify import ABSTAIN, Smoothed
from wulff.distributions import UniformCube
from wulff.train import TrainConfig, build_model, load_dataset, train_smoothed
from wulff.train.objectives import build_objective

torch.set_num_threads(1)
train_set, info = load_dataset("digits", "train")
test_set, _ = load_dataset("digits", "test")
q = UniformCube(info.d, sigma=0.5)
objective = build_objective("consistency", {"m": 2, "lambda": 10, "eta": 0.5}, q)

torch.manual_seed(0)
model = build_model("mlp", info.input_shape, info.num_classes, info.mean, info.std)
train_smoothed(model, q, train_set, TrainConfig(epochs=3, batch_size=64, lr=0.05), objective=objective,
               progress=False)

smoothed = Smoothed(model.eval(), q, info.num_classes, seed=0)
for index in range(3):
    x, label = test_set[index]
    cert = smoothed.certify(x, n0=64, n=2_000, alpha=0.001, batch_size=2_000, adversaries=("l1",))
    radius = cert.radius["l1"]
    eps = max(radius, 0.5)
    attacked = smoothed.attack(x, int(label), eps, "l1", steps=10, samples=8, clamp=(0.0, 1.0))
    answer = smoothed.predict(attacked, 1_000, 0.001, 1_000)
    verdict = "abstain" if cert.prediction == ABSTAIN else f"class {cert.prediction}, l1 radius {radius:.3f}"
    print(f"input {index} (label {int(label)}): {verdict}; attacked at l1 eps {eps:.3f}: "
          f"{'abstain' if answer == ABSTAIN else f'class {answer}'}")
