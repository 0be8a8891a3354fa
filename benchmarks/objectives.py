"""Training objectives (issue 17) on digits: certified accuracy, ACR, clean accuracy, empirical robust
accuracy and training time per epoch, each objective against noise augmentation (the baseline, in the
same process, same seed, same epochs).

    PYTHONPATH=. python benchmarks/objectives.py [--epochs 20] [--skip 5] [--n 10000] [--steps 10]

Setting: digits (1347 train / 450 test images, d = 64), the MLP of `wulff demo`, sigma = 0.5, SGD
lr 0.05, batch 64, the same epochs for every objective; two noises, each against its own norm:
Gaussian vs l2 and UniformCube vs l1. Certification: adaptive (:meth:`Smoothed.certify_adaptive`,
n_max = n0 + n, alpha = 0.001) on every --skip-th test input. Attack: PGD on the soft smoothed
classifier (--steps steps, 16 draws per step) at two eps per norm, answers by 1000 votes at
alpha = 0.001. smoothadv trains with --train-steps PGD steps (default 4, not the paper's 20, to keep
the run short; stated in the table) at eps = the larger attack eps. ACR = mean over inputs of the
certified radius (0 when wrong or abstaining); alarms = inputs certified correct at radius r >= eps
whose attack at eps was answered with another class (:func:`soundness_alarms`; expected about 0).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import wulff.distributions as D
from wulff.certify import Smoothed, certify_dataset
from wulff.certify.analysis import certified_accuracy
from wulff.certify.attack_dataset import attack_dataset, robust_accuracy, soundness_alarms
from wulff.certify.summary import average_certified_radius
from wulff.train import TrainConfig, build_model, load_dataset, train_smoothed
from wulff.train.objectives import build_objective

SIGMA = 0.5
SETTINGS = {"Gaussian": ("l2", (0.25, 0.5), (0.0, 0.25, 0.5, 0.75, 1.0)),
            "UniformCube": ("l1", (0.5, 1.0), (0.0, 0.25, 0.5, 0.75, 1.0))}


def objective_params(name: str, args, eps: float) -> dict:
    return {"smoothadv": {"steps": args.train_steps, "eps": eps}}.get(name, {})


def run_one(name, family, args, train_set, test_set, info, folder: Path) -> dict:
    adversary, eps_pair, radii = SETTINGS[family]
    q = {"Gaussian": D.Gaussian, "UniformCube": D.UniformCube}[family](info.d, sigma=SIGMA)
    objective = build_objective(name, objective_params(name, args, eps_pair[-1]), q)
    torch.manual_seed(0)
    model = build_model("mlp", info.input_shape, info.num_classes, info.mean, info.std)
    history = train_smoothed(model, q, train_set, TrainConfig(epochs=args.epochs, batch_size=64, lr=0.05),
                             objective=objective, progress=False)
    seconds = float(np.mean([h["seconds"] for h in history]))
    smoothed = Smoothed(model.eval(), q, info.num_classes)
    cert = certify_dataset(smoothed, test_set, folder / f"{family}-{name}.tsv", n0=100, n=args.n, alpha=0.001,
                           batch_size=2000, adversaries=(adversary,), skip=args.skip, adaptive=True,
                           progress=False)
    attacks = attack_dataset(smoothed, test_set, folder / f"{family}-{name}.attack.tsv", eps=list(eps_pair),
                             adversary=adversary, steps=args.steps, samples=16, n=1000, alpha=0.001,
                             batch_size=1000, skip=args.skip, clamp=(0.0, 1.0), progress=False)
    return {"objective": name, "family": family, "adversary": adversary, "seconds": seconds,
            "certified": certified_accuracy(cert, radii, adversary), "radii": radii,
            "acr": average_certified_radius(cert, adversary), "clean": float(cert.correct.mean()),
            "robust": robust_accuracy(attacks), "loss": history[-1]["loss"],
            "alarms": sum(len(a.indices) for a in soundness_alarms(attacks, cert))}


def table(rows: list[dict]) -> str:
    first = rows[0]
    radii = " | ".join(f"r={r:g}" for r in first["radii"])
    eps = " | ".join(f"emp. eps={e:g}" for e in first["robust"])
    lines = [f"| objective | {radii} | ACR | clean | {eps} | alarms | s/epoch (x noise) |",
             "|---|" + "---:|" * (len(first["radii"]) + 4 + len(first["robust"]))]
    base = next(r for r in rows if r["objective"] == "noise")
    for r in rows:
        cells = " | ".join(f"{100 * a:.1f}" for a in r["certified"])
        emp = " | ".join(f"{100 * v:.1f}" for v in r["robust"].values())
        lines.append(f"| {r['objective']} | {cells} | {r['acr']:.3f} | {100 * r['clean']:.1f} | {emp} | "
                     f"{r['alarms']} | "
                     f"{r['seconds']:.2f} ({r['seconds'] / base['seconds']:.1f}x) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--skip", type=int, default=5, help="certify and attack every SKIP-th test input")
    parser.add_argument("--n", type=int, default=10_000, help="adaptive budget n_max = 100 + n")
    parser.add_argument("--steps", type=int, default=10, help="PGD steps of the evaluation attack")
    parser.add_argument("--train-steps", type=int, default=4, help="PGD steps of smoothadv training")
    parser.add_argument("--objectives", nargs="+", default=["noise", "stability", "smoothadv", "direct",
                                                            "consistency", "macer"])
    parser.add_argument("--families", nargs="+", default=list(SETTINGS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    train_set, info = load_dataset("digits", "train")
    test_set, _ = load_dataset("digits", "test")
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families:
            rows = [run_one(name, family, args, train_set, test_set, info, Path(tmp)) for name in args.objectives]
            adversary = SETTINGS[family][0]
            print(f"\n{family}(sigma = {SIGMA}) against {adversary}: certified accuracy (%) at radius, ACR, "
                  f"clean accuracy (%), empirical robust accuracy (%), training time")
            print(table(rows), flush=True)
    print(f"\n{args.epochs} epochs, every {args.skip}-th test input, adaptive n_max = {100 + args.n}, "
          f"attack {args.steps} steps; smoothadv trained with {args.train_steps} PGD steps; "
          f"wall time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
