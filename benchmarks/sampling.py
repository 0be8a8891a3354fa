"""Sampling speed of every family against torch.randn of the same shape, in the same process.

    python benchmarks/sampling.py [--d 3072] [--n 10000] [--repeats 5]

Targets (issue 2): Gaussian, Laplace, UniformCube within 1.5x of torch.randn; every other family within 5x.
"""
from __future__ import annotations

import argparse
import time

import torch

from wulff import distributions as D


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, lazily built tables)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def families(d: int) -> dict:
    return {
        "Gaussian": D.Gaussian(d, sigma=1.0), "Laplace": D.Laplace(d, sigma=1.0),
        "UniformCube": D.UniformCube(d, sigma=1.0), "ExpP(p=1.5)": D.ExpP(d, p=1.5, sigma=1.0),
        "ExpP(p=0.5)": D.ExpP(d, p=0.5, sigma=1.0), "Pareto(a=4)": D.Pareto(d, a=4, sigma=1.0),
        "ExpInf(k=1)": D.ExpInf(d, sigma=1.0), "ExpInf(k=2,j=1)": D.ExpInf(d, k=2, j=1, sigma=1.0),
        "Exp2(k=1)": D.Exp2(d, sigma=1.0), "Exp1(k=1)": D.Exp1(d, sigma=1.0),
        "PowerInf(a=d+10)": D.PowerInf(d, a=d + 10, sigma=1.0),
        "Power2(a=d+10)": D.Power2(d, a=d + 10, sigma=1.0), "UniformBall": D.UniformBall(d, sigma=1.0),
        "IID(|t|^3)": D.IID(abs(D.t) ** 3, d, sigma=1.0),
        "Radial(numeric)": D.Radial(D.r ** 2 / 2 + D.r, 2, d, sigma=1.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int, default=3072)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    base = best_time(lambda: torch.randn(args.n, args.d, generator=g), args.repeats)
    print(f"d = {args.d}, n = {args.n}, torch threads = {torch.get_num_threads()}")
    print(f"torch.randn baseline: {base * 1e3:.1f} ms\n")
    print(f"| {'family':<18} | {'ms':>8} | {'x randn':>7} | target |")
    print(f"|{'-' * 20}|{'-' * 10}|{'-' * 9}|--------|")
    for name, q in families(args.d).items():
        t = best_time(lambda q=q: q.sample(args.n, generator=g), args.repeats)
        target = 1.5 if name in ("Gaussian", "Laplace", "UniformCube") else 5.0
        ok = "ok" if t / base <= target else "MISS"
        print(f"| {name:<18} | {t * 1e3:8.1f} | {t / base:7.2f} | {target:>4}x {ok} |")


if __name__ == "__main__":
    main()
