"""DSSN (deterministic splitting noise, Levine & Feizi 2021) against randomized uniform noise
(UniformCube, Monte Carlo CERTIFY) on digits at matched half-width lam: certified l1 accuracy and
forward passes per input.

    PYTHONPATH=. python benchmarks/dssn.py [--lams 0.25 0.5 1.0] [--epochs 30] [--skip 5] [--n 100000]
                                           [--kinds DSSN UniformCube]

For each lam, two MLPs (the demo's model, seed 0) are trained for --epochs epochs (default 30, as
`wulff demo`): one on T(x, s) (the DSSN transform, digits' grid Q = 16, N = 2 lam Q offsets) and
one on x + uniform noise on [-lam, lam]^64. Both are certified on the same inputs, every --skip-th
test image (default 5: 90 of 450): DSSN exactly from its N offsets (no alpha); UniformCube by
Cohen et al.'s CERTIFY with n0 = 100, n = --n (default 100,000), alpha = 0.001, radius
2 lam (rho_lower - 1/2) (its best l1 certificate). Rows per lam, then the best over lam at each
radius (the paper's envelope). Torch runs on one thread (the machine is shared). Under the table,
per DSSN run: how many inputs certify their closed ball (every class tied for runner-up has a larger
index than the top class), and how many of those count at a radius of the table only because of it
(certified correctly at R = r exactly: an open ball would count them one column lower).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import wulff.distributions as D
from wulff.certify import DerandomizedSmoothed, Smoothed, certify_dataset
from wulff.certify.analysis import certified_accuracy
from wulff.splitting import SplittingNoise
from wulff.train import TrainConfig, build_model, load_dataset, train_smoothed

RADII = (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0)
N0, ALPHA, Q = 100, 0.001, 16
KINDS = ("DSSN", "UniformCube")


def trained(noise, train_set, info, epochs: int, seed: int) -> tuple[torch.nn.Module, float]:
    began = time.perf_counter()
    torch.manual_seed(seed)
    model = build_model("mlp", info.input_shape, info.num_classes, info.mean, info.std)
    train_smoothed(model, noise, train_set, TrainConfig(epochs=epochs, batch_size=64, lr=0.05, seed=seed),
                   progress=False)
    return model.eval(), time.perf_counter() - began


def row(name: str, results, seconds: float) -> tuple[str, np.ndarray, float, float]:
    accuracy = certified_accuracy(results, np.array(RADII), "l1")
    return name, accuracy, float(results.samples.mean()), seconds / len(results)


def closed_balls(name: str, results) -> str:
    """How many rows claim the closed ball, and how many of them gain a column of the table by it."""
    closed = results.columns.get("closed", np.zeros(len(results))) == 1
    radius = results.radius("l1")
    gained = closed & results.correct & (radius > 0) & np.isin(radius, RADII)
    return (f"{name}: closed ball certified for {int(closed.sum())} of {len(results)} inputs; "
            f"{int(gained.sum())} of them count at a radius of the table (R = r) only because of it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lams", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--skip", type=int, default=5)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS),
                        help="which noises to run (default both; DSSN alone takes a minute)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    train_set, info = load_dataset("digits", "train")
    test_set, _ = load_dataset("digits", "test")
    rows, timings, closed = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for lam in args.lams:
            dssn = SplittingNoise(info.d, lam, quantization=Q)
            cube = D.UniformCube(info.d, lam=lam)
            for kind, noise in ((k, {"DSSN": dssn, "UniformCube": cube}[k]) for k in args.kinds):
                model, train_seconds = trained(noise, train_set, info, args.epochs, args.seed)
                out = Path(tmp) / f"{kind}-{lam:g}.tsv"
                began = time.perf_counter()
                if kind == "DSSN":
                    results = certify_dataset(DerandomizedSmoothed(model, dssn, info.num_classes), test_set, out,
                                              batch_size=args.batch_size, adversaries=("l1",), skip=args.skip,
                                              progress=False)
                else:
                    results = certify_dataset(Smoothed(model, cube, info.num_classes), test_set, out, n0=N0,
                                              n=args.n, alpha=ALPHA, batch_size=args.batch_size,
                                              adversaries=("l1",), skip=args.skip, seed=args.seed,
                                              progress=False)
                seconds = time.perf_counter() - began
                rows.append(row(f"{kind} lam = {lam:g}", results, seconds))
                if kind == "DSSN":
                    closed.append(closed_balls(f"{kind} lam = {lam:g}", results))
                timings.append(f"{kind} lam = {lam:g}: trained in {train_seconds:.0f} s, certified "
                               f"{len(results)} inputs in {seconds:.1f} s")
                print(timings[-1], flush=True)
    for kind in args.kinds:
        members = [r for r in rows if r[0].startswith(kind + " ")]
        best = np.max(np.stack([r[1] for r in members]), axis=0)
        rows.append((f"{kind}, best over lam", best, float(np.mean([r[2] for r in members])),
                     float(np.mean([r[3] for r in members]))))
    header = "| noise | " + " | ".join(f"{r:g}" for r in RADII) + " | forward passes / input | s / input |"
    print(f"\ndigits, MLP trained {args.epochs} epochs; certified accuracy (%) at l1 radius; every "
          f"{args.skip}-th test input; UniformCube: CERTIFY n0 = {N0}, n = {args.n:,}, alpha = {ALPHA}; "
          f"DSSN: exact, Q = {Q}\n")
    print(header)
    print("|---|" + "---:|" * (len(RADII) + 2))
    for name, accuracy, passes, seconds in rows:
        print(f"| {name} | " + " | ".join(f"{100 * a:.1f}" for a in accuracy)
              + f" | {passes:,.0f} | {seconds:.4f} |")
    print("\n" + "\n".join(closed))


if __name__ == "__main__":
    main()
