"""Benchmark of wulff.diffmethod.derive: cold / warm derivation for every differential-method pair of
Table A.1 at d = 3072 (or each of --dims), and radius() on 10^6 values of rho.

    python benchmarks/derive.py [--d 3072 | --dims 1 2 3 10 3072 150528] [--n 1000000]

Cold: empty memory and disk caches (a fresh temporary WULFF_CACHE_DIR). Warm: the same call again
(memory). Disk: memory cleared, entry read back from disk. radius() times are also given as a ratio
to a baseline in the same process: scipy.special.ndtri on the same 10^6 values (the Gaussian radius
computed by hand). Targets (issue 3): cold <= 2 s per pair, <= 30 s in all; radius <= 0.1 s; issue 29:
cold <= 2 s for every pair at every d in {1, 2, 3, 10, 3072, 150528} (pairs whose shape parameters are
invalid at a d, e.g. j >= d, are left out there).
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
    specs = [
        ("Gaussian", "l2", "H.1", D.Gaussian, {}),
        ("Gaussian", "l1", "Symmetry", D.Gaussian, {}),
        ("Gaussian", "linf", "Symmetry", D.Gaussian, {}),
        ("Laplace", "l1", "I.1", D.Laplace, {}),
        ("Laplace", "linf", "P.2", D.Laplace, {}),
        ("ExpP p=1.5", "l1", "M.1/M.3", D.ExpP, {"p": 1.5}),
        ("ExpP p=0.5", "l1", "M.2/M.4", D.ExpP, {"p": 0.5}),
        ("Pareto a=4", "l1", "Q.1", D.Pareto, {"a": 4}),
        ("ExpInf", "l1", "N.1", D.ExpInf, {}),
        ("ExpInf", "linf", "N.4", D.ExpInf, {}),
        ("ExpInf k=2 j=1", "l1", "N.2", D.ExpInf, {"k": 2, "j": 1}),
        ("ExpInf k=2", "linf", "N.5", D.ExpInf, {"k": 2}),
        ("Exp2", "l2", "R.1", D.Exp2, {}),
        ("Exp1 k=2", "l1", "P.1", D.Exp1, {"k": 2}),
        ("Exp1 k=2", "linf", "P.3", D.Exp1, {"k": 2}),
        ("PowerInf a=d+10", "l1", "O.1", D.PowerInf, {"a": d + 10}),
        ("PowerInf a=d+10", "linf", "O.2", D.PowerInf, {"a": d + 10}),
    ]
    out = []
    for name, adversary, theorem, family, shape in specs:
        try:
            out.append((name, adversary, theorem, family(d, lam=1.0, **shape)))
        except ValueError:  # a shape parameter invalid at this d (e.g. j >= d)
            continue
    return out


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
    parser.add_argument("--dims", type=int, nargs="+", help="several d, one table each (overrides --d)")
    parser.add_argument("--n", type=int, default=1_000_000)
    args = parser.parse_args()
    os.environ["WULFF_CACHE_DIR"] = tempfile.mkdtemp(prefix="wulff-bench-")
    from wulff import cache
    from wulff.radius.diffmethod import derive
    from wulff.radius.diffmethod.derive import _units

    rho = np.random.default_rng(0).uniform(0.5, 1.0, args.n)
    baseline, _ = timed(lambda: special.ndtri(rho), repeat=5)
    derive(pairs(8)[0][3], "l2")  # import and first-use costs outside the table
    for d in args.dims or [args.d]:
        rows, total_cold = [], 0.0
        for name, adversary, theorem, q in pairs(d):
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
        report(d, args.n, baseline, rows, total_cold)


def report(d: int, n: int, baseline: float, rows: list, total_cold: float) -> None:
    print(f"d = {d}; radius() on {n:,} rho values; "
          f"baseline scipy.special.ndtri: {baseline * 1e3:.1f} ms")
    head = ("pair", "paper", "method", "cold s", "warm ms", "disk ms", "radius ms", "x ndtri")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for pair, theorem, method, cold, warm, disk, radius, ratio in rows:
        print(f"| {pair} | {theorem} | {method} | {cold:.3f} | {warm * 1e3:.2f} | {disk * 1e3:.1f} | "
              f"{radius * 1e3:.1f} | {ratio:.1f} |")
    print(f"\ncold total: {total_cold:.2f} s over {len(rows)} pairs (target <= 30 s); "
          f"max cold: {max(r[3] for r in rows):.2f} s (target <= 2 s); "
          f"max radius(): {max(r[6] for r in rows) * 1e3:.0f} ms (target <= 100 ms)\n", flush=True)

if __name__ == "__main__":
    main()
