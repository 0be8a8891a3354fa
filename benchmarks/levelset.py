"""Benchmark of the level set method: table build time (Algorithm 1) and lookup throughput
(Algorithm 2) at low d (2, 3, 10: the quadrature is finest there), d = 3072 (CIFAR-10) and
d = 150528 (ImageNet).

    python benchmarks/levelset.py [--n 1000000] [--dims 2 3 10 3072 150528]

Build: cold, with a fresh temporary WULFF_CACHE_DIR (targets, issue 29: <= 3 s per table and no
low-d table slower than d = 3072's Exp2 k=1 in the same run), wall and CPU seconds of this process
(the CPU column is the one to compare on a shared machine), then the disk read-back after clearing
the memory cache. Progress bars are off, so that the rows print cleanly. Lookup: cert.radius on n
values of rho, reported as a ratio to a baseline in the same process: numpy.searchsorted of the same
rho into a sorted array of the table's length, the core operation of Algorithm 2.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def families(d: int):
    from wulff.distributions import Exp2, Gaussian, Power2
    rows = [("Gaussian", Gaussian(d, lam=1.0)), ("Exp2 k=1", Exp2(d, k=1, lam=1.0))]
    if d > 3:  # Exp2 needs j < d
        rows.append(("Exp2 k=2 j=3", Exp2(d, k=2, j=3, lam=1.0)))
    if d <= 10:  # the slow low-d cases (log terms j > 0)
        rows += [("Exp2 k=1 j=1", Exp2(d, k=1, j=1, lam=1.0)), ("Exp2 k=2 j=1", Exp2(d, k=2, j=1, lam=1.0))]
    return rows + [("Power2 a=d+10", Power2(d, a=d + 10, lam=1.0))]


def best_of(fn, *args, repeat: int = 5) -> float:
    """The fastest of ``repeat`` calls fn(*args), in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="rho values per lookup (default 10^6)")
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 3, 10, 3072, 150528])
    args = parser.parse_args()
    os.environ["WULFF_CACHE_DIR"] = tempfile.mkdtemp(prefix="wulff-bench-")
    from wulff import cache, progress
    from wulff.levelset import derive

    progress.set_enabled(False)

    rho = np.random.default_rng(0).uniform(0.5, 1.0, args.n)
    print(f"{'family':>16} {'d':>7} {'build s':>8} {'cpu s':>6} {'disk s':>7} {'radii':>6} {'lookup s':>9} "
          f"{'searchsorted s':>15} {'ratio':>6}")
    for d in args.dims:
        for name, q in families(d):
            cache.clear_memory()
            start, cpu = time.perf_counter(), time.process_time()
            cert = derive(q, "l2")
            build, cpu = time.perf_counter() - start, time.process_time() - cpu
            cache.clear_memory()
            start = time.perf_counter()
            cert = derive(q, "l2")
            disk = time.perf_counter() - start
            size = cert.table["radii"].size
            lookup = best_of(cert.radius, rho)
            grid = np.sort(np.random.default_rng(1).uniform(0.5, 1.0, size))
            baseline = best_of(np.searchsorted, grid, rho)
            print(f"{name:>16} {d:>7} {build:>8.2f} {cpu:>6.2f} {disk:>7.3f} {size:>6} {lookup:>9.4f} "
                  f"{baseline:>15.4f} {lookup / baseline:>6.1f}", flush=True)


if __name__ == "__main__":
    main()
