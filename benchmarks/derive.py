"""Benchmark of wulff.diffmethod.derive: cold / warm derivation for every differential-method pair of
Table A.1 at d = 3072, and radius() on 10^6 values of rho.

    python benchmarks/derive.py [--d 3072] [--n 1000000]

Cold: empty memory and disk caches (a fresh temporary WULFF_CACHE_DIR). Warm: the same call again
(memory). Disk: memory cleared, entry read back from disk. radius() times are also given as a ratio
to a baseline in the same process: scipy.special.ndtri on the same 10^6 values (the Gaussian radius
computed by hand). Targets (issue 3): cold <= 2 s per pair, <= 30 s in all; radius <= 0.1 s.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from scipy import special


def pairs(d: int):
    import wulff.distributions as D
    return [
        ("Gaussian", "l2", "H.1", D.Gaussian(d, lam=1.0)),
        ("Gaussian", "l1", "Symmetry", D.Gaussian(d, lam=1.0)),
        ("Gaussian", "linf", "Symmetry", D.Gaussian(d, lam=1.0)),
        ("Laplace", "l1", "I.1", D.Laplace(d, lam=1.0)),
        ("Laplace", "linf", "P.2", D.Laplace(d, lam=1.0)),
        ("ExpP p=1.5", "l1", "M.1/M.3", D.ExpP(d, p=1.5, lam=1.0)),
        ("ExpP p=0.5", "l1", "M.2/M.4", D.ExpP(d, p=0.5, lam=1.0)),
        ("Pareto a=4", "l1", "Q.1", D.Pareto(d, a=4, lam=1.0)),
        ("ExpInf", "l1", "N.1", D.ExpInf(d, lam=1.0)),
        ("ExpInf", "linf", "N.4", D.ExpInf(d, lam=1.0)),
        ("ExpInf k=2 j=1", "l1", "N.2", D.ExpInf(d, k=2, j=1, lam=1.0)),
        ("ExpInf k=2", "linf", "N.5", D.ExpInf(d, k=2, lam=1.0)),
        ("Exp2", "l2", "R.1", D.Exp2(d, lam=1.0)),
        ("Exp1 k=2", "l1", "P.1", D.Exp1(d, k=2, lam=1.0)),
        ("Exp1 k=2", "linf", "P.3", D.Exp1(d, k=2, lam=1.0)),
        ("PowerInf a=d+10", "l1", "O.1", D.PowerInf(d, a=d + 10, lam=1.0)),
        ("PowerInf a=d+10", "linf", "O.2", D.PowerInf(d, a=d + 10, lam=1.0)),
    ]


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d", type=int, default=3072)
    parser.add_argument("--n", type=int, default=1_000_000)
    args = parser.parse_args()
    os.environ["WULFF_CACHE_DIR"] = tempfile.mkdtemp(prefix="wulff-bench-")
    from wulff import cache
    from wulff.diffmethod import derive
    from wulff.diffmethod.derive import _units

    rho = np.random.default_rng(0).uniform(0.5, 1.0, args.n)
    baseline, _ = timed(lambda: special.ndtri(rho), repeat=5)
    rows, total_cold = [], 0.0
    derive(pairs(8)[0][3], "l2")  # import and first-use costs outside the table
    for name, adversary, theorem, q in pairs(args.d):
        cache.clear_memory()
        _units.clear()
        cold, cert = timed(lambda q=q, a=adversary: derive(q, a))
        warm, _ = timed(lambda q=q, a=adversary: derive(q, a), repeat=3)
        cache.clear_memory()
        _units.clear()
        disk, _ = timed(lambda q=q, a=adversary: derive(q, a))
        cert.radius(rho[:1000])
        radius, _ = timed(lambda cert=cert: cert.radius(rho), repeat=3)
        total_cold += cold
        method = cert.method.split(",")[0][:34]
        rows.append((f"{name} vs {adversary}", theorem, method, cold, warm, disk, radius, radius / baseline))
    print(f"d = {args.d}; radius() on {args.n:,} rho values; "
          f"baseline scipy.special.ndtri: {baseline * 1e3:.1f} ms")
    head = ("pair", "paper", "method", "cold s", "warm ms", "disk ms", "radius ms", "x ndtri")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for pair, theorem, method, cold, warm, disk, radius, ratio in rows:
        print(f"| {pair} | {theorem} | {method} | {cold:.3f} | {warm * 1e3:.2f} | {disk * 1e3:.1f} | "
              f"{radius * 1e3:.1f} | {ratio:.1f} |")
    print(f"\ncold total: {total_cold:.2f} s over {len(rows)} pairs (target <= 30 s); "
          f"max cold: {max(r[3] for r in rows):.2f} s (target <= 2 s); "
          f"max radius(): {max(r[6] for r in rows) * 1e3:.0f} ms (target <= 100 ms)")


if __name__ == "__main__":
    main()
