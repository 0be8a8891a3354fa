"""Adaptive certification (issue 12) against Cohen et al.'s CERTIFY: forward passes and certified
accuracy at every reported radius.

    PYTHONPATH=. python benchmarks/certify_adaptive.py [--inputs 2000] [--digits-skip 3] [--epochs 2] [--no-digits]

Both sides use n0 = 100, n = 100,000, alpha = 0.001; adaptive gets the same budget n_max = n0 + n and
radii = the reported radius grid (:func:`wulff.certify.analysis.radius_grid` of the certify run, i.e.
the columns `wulff report` prints). Forward passes = noisy samples drawn (selection included).

1. Synthetic population (no model): 10 classes; the true class has top-class probability p, a
   rival class 60 % of the rest, the other 8 share it evenly. 20 % of the inputs are misclassified
   (p ~ U[0, 0.5]); 80 % have p = 1 - 10^U(-3, -1), i.e. between 0.9 and 0.999 (log-uniform
   margin). Votes come from a multinomial (the callback of :func:`certify_sequential`);
   CERTIFY's estimate is one Binomial(n, p_candidate) draw. Laplace noise in d = 64, sigma = 0.5,
   against l1.
2. Digits (the demo's data and MLP): a Laplace(sigma = 0.5) smoothed MLP trained for --epochs epochs
   (default 30, as `wulff demo`; ~15 s on 2 CPU cores), both procedures through certify_dataset on
   every k-th test input (k = --digits-skip, default 3: 150 of 450 inputs, ~1 min for certify).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import wulff.distributions as D
from wulff import best_certificate
from wulff.certify.adaptive import certify_sequential
from wulff.certify.analysis import certified_accuracy, radius_grid
from wulff.certify.results import Results
from wulff.certify.stats import clopper_pearson_lower

N0, N, ALPHA, ADVERSARY = 100, 100_000, 0.001, "l1"
CLASSES = 10


def population(size: int, rng: np.random.Generator) -> np.ndarray:
    """Class probabilities (size x CLASSES); class 0 is the true one."""
    wrong = rng.random(size) < 0.2
    p = np.where(wrong, rng.uniform(0.0, 0.5, size), 1.0 - 10.0 ** rng.uniform(-3.0, -1.0, size))
    probs = np.empty((size, CLASSES))
    probs[:, 0] = p
    probs[:, 1] = 0.6 * (1 - p)
    probs[:, 2:] = (0.4 * (1 - p) / (CLASSES - 2))[:, None]
    return probs


def as_results(prediction, radius, samples, label=None) -> Results:
    label = np.zeros(len(prediction), dtype=np.int64) if label is None else label
    columns = {"index": np.arange(len(prediction)), "label": label, "prediction": np.asarray(prediction),
               "correct": (np.asarray(prediction) == label).astype(np.int64),
               f"radius_{ADVERSARY}": np.asarray(radius, dtype=np.float64), "samples": np.asarray(samples)}
    return Results({"adversaries": [ADVERSARY]}, columns)


def synthetic(size: int, seed: int) -> tuple[Results, Results, np.ndarray, tuple[float, float]]:
    began = time.perf_counter()
    rng = np.random.default_rng(seed)
    cert = best_certificate(D.Laplace(64, sigma=0.5), ADVERSARY)
    probs = population(size, rng)
    # CERTIFY: n0 votes choose the class, n fresh votes bound its probability
    candidate = np.array([int(np.argmax(rng.multinomial(N0, row))) for row in probs])
    counts = rng.binomial(N, probs[np.arange(size), candidate])
    rho = np.array([clopper_pearson_lower(int(k), N, ALPHA) for k in counts])
    prediction = np.where(rho > 0.5, candidate, -1)
    radius = np.where(rho > 0.5, cert.radius(np.clip(rho, 0.5, 1.0)), 0.0)
    plain = as_results(prediction, radius, np.full(size, N0 + N))
    grid = radius_grid([plain], ADVERSARY)
    middle = time.perf_counter()
    pred, rad, used = [], [], []
    for row in probs:
        out = certify_sequential(lambda k, row=row: rng.multinomial(k, row), N0 + N, ALPHA, {ADVERSARY: cert},
                                 radii=grid)
        pred.append(-1 if out.abstained else out.candidate)
        rad.append(out.radius[ADVERSARY])
        used.append(out.n)
    seconds = (middle - began, time.perf_counter() - middle)
    return plain, as_results(pred, rad, used), grid, seconds


def digits(skip: int, epochs: int, seed: int, batch_size: int) -> tuple[Results, Results, np.ndarray, float]:
    import torch

    from wulff.certify import Smoothed, certify_dataset, read_results
    from wulff.train import TrainConfig, build_model, load_dataset, named_distribution, train_smoothed

    torch.set_num_threads(max(1, torch.get_num_threads()))
    train_set, info = load_dataset("digits", "train")
    test_set, _ = load_dataset("digits", "test")
    q = named_distribution("Laplace", info.d, sigma=0.5)
    torch.manual_seed(seed)
    model = build_model("mlp", info.input_shape, info.num_classes, info.mean, info.std)
    began = time.perf_counter()
    train_smoothed(model, q, train_set, TrainConfig(epochs=epochs, batch_size=64, lr=0.05, seed=seed),
                   progress=False, log=lambda *_: None)
    trained = time.perf_counter() - began
    model.eval()
    smoothed = Smoothed(model, q, info.num_classes)
    with tempfile.TemporaryDirectory() as tmp:
        common = dict(n0=N0, n=N, alpha=ALPHA, batch_size=batch_size, adversaries=(ADVERSARY,), skip=skip,
                      seed=seed, progress=False)
        certify_dataset(smoothed, test_set, Path(tmp) / "certify.tsv", **common)
        plain = read_results(Path(tmp) / "certify.tsv")
        grid = radius_grid([plain], ADVERSARY)
        certify_dataset(smoothed, test_set, Path(tmp) / "adaptive.tsv", adaptive=True, radii=list(grid), **common)
        adaptive = read_results(Path(tmp) / "adaptive.tsv")
    return plain, adaptive, grid, trained


def table(title: str, plain: Results, adaptive: Results, grid, seconds: tuple[float, float]) -> str:
    a = certified_accuracy(plain, grid, ADVERSARY)
    b = certified_accuracy(adaptive, grid, ADVERSARY)
    passes = int(plain.samples.sum()), int(adaptive.samples.sum())
    lines = [f"## {title} ({len(plain)} inputs)", "",
             f"| {ADVERSARY} radius | certified acc. certify (%) | certified acc. adaptive (%) | difference |",
             "|---:|---:|---:|---:|"]
    lines += [f"| {r:g} | {100 * x:.1f} | {100 * y:.1f} | {100 * (y - x):+.1f} |" for r, x, y in zip(grid, a, b)]
    lines += ["", f"forward passes: certify {passes[0]:,}, adaptive {passes[1]:,} "
              f"({passes[0] / passes[1]:.1f}x fewer; mean {passes[1] / len(adaptive):,.0f} per input); "
              f"time: certify {seconds[0]:.1f} s, adaptive {seconds[1]:.1f} s"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=2000, help="synthetic population size (default 2000)")
    parser.add_argument("--digits-skip", type=int, default=3, help="certify every k-th digits test input")
    parser.add_argument("--epochs", type=int, default=30, help="digits training epochs (default 30, as the demo)")
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--no-digits", action="store_true", help="only the synthetic population")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"n0 = {N0}, n = {N:,}, alpha = {ALPHA}; adaptive: n_max = n0 + n, radii = the reported grid\n")
    began = time.perf_counter()
    plain, adaptive, grid, seconds = synthetic(args.inputs, args.seed)
    print(table("synthetic population (Laplace d = 64, sigma = 0.5, l1)", plain, adaptive, grid, seconds)
          + "\n", flush=True)
    if not args.no_digits:
        plain, adaptive, grid, trained = digits(args.digits_skip, args.epochs, args.seed, args.batch_size)
        title = (f"digits, Laplace sigma = 0.5 MLP trained {args.epochs} epoch(s) in {trained:.0f} s, "
                 f"every k-th test input, k = {args.digits_skip}")
        print(table(title, plain, adaptive, grid,
                    (float(plain.columns["seconds"].sum()), float(adaptive.columns["seconds"].sum()))))
    print(f"\ntotal time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
