"""Train a smoothed classifier on scikit-learn's digits and certify a few test inputs, in Python.

    python examples/certify_digits.py

The same steps as `wulff train` + `wulff certify`, with any distribution the library can certify:
here Laplace noise at sigma = 0.25 (noise is added before the model's Normalize layer).
"""
from __future__ import annotations

import torch

from wulff.certify import ABSTAIN, Smoothed
from wulff.distributions import Laplace
from wulff.train import TrainConfig, build_model, load_dataset, train_smoothed

torch.set_num_threads(1)
train_set, info = load_dataset("digits", "train")
test_set, _ = load_dataset("digits", "test")
q = Laplace(info.d, sigma=0.25)

torch.manual_seed(0)
model = build_model("mlp", info.input_shape, info.num_classes, info.mean, info.std)
train_smoothed(model, q, train_set, TrainConfig(epochs=20, batch_size=64, lr=0.05))

smoothed = Smoothed(model.eval(), q, info.num_classes, seed=0)
for index in range(5):
    x, label = test_set[index]
    cert = smoothed.certify(x, n0=64, n=10_000, alpha=0.001, batch_size=5_000, adversaries=("l1", "l2", "linf"))
    verdict = "abstain" if cert.prediction == ABSTAIN else f"class {cert.prediction}"
    radii = ", ".join(f"{a} {r:.3f}" for a, r in cert.radius.items())
    print(f"input {index} (label {int(label)}): {verdict}, rho_lower {cert.rho_lower:.4f}, radii: {radii}")
