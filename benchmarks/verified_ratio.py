"""Float path vs verified mode: the worst ratio radius / verified radius of every direct certificate
of every named family (a ratio <= 1 everywhere is the soundness check; close to 1 is tightness).

    python3 benchmarks/verified_ratio.py [--dims 1 2 3 8 3072]

Closed forms are checked on rho grids hugging 1/2 and 1; envelope certificates (quadrature, discrete
laws) near rho = 1/2, where few envelope lines are active (the verified mode costs up to a second per
line); discrete laws also at rho = 0.9 and 0.99.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from wulff import distributions as D
from wulff.diffmethod import derive
from wulff.levelset import derive as derive_levelset
from wulff.uniform import derive_uniform

NEAR_HALF = [0.5 + 10.0 ** -k for k in range(15, 2, -1)]
NEAR_ONE = [1 - 10.0 ** -k for k in range(3, 16)]
CLOSED_GRID = np.array(sorted(NEAR_HALF + [0.6, 0.9, 0.99] + NEAR_ONE))
ENVELOPE_GRID = np.array([0.5 + 1e-12, 0.5 + 1e-6, 0.5015])
DISCRETE_GRID = np.array([0.5 + 1e-12, 0.5015, 0.9, 0.99])


def families(d: int) -> list:
    return [D.Gaussian(d, lam=1), D.Laplace(d, lam=1), D.ExpP(d, 1.5, lam=1), D.Pareto(d, 3, lam=1),
            D.ExpInf(d, lam=1), D.Exp2(d, lam=1), D.Exp1(d, lam=1), D.PowerInf(d, d + 3, lam=1),
            D.Power2(d, d + 3, lam=1), D.UniformCube(d, lam=1), D.UniformBall(d, lam=1)]


def certificates(q, adversary):
    for provider in (derive, derive_uniform, derive_levelset):
        try:
            yield provider(q, adversary)
        except (NotImplementedError, ValueError):
            continue


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", type=int, nargs="+", default=[1, 2, 3, 8])
    args = parser.parse_args()
    print(f"{'family':12} {'d':>5} {'adv':5} {'method':42} {'verified by':30} {'worst ratio':>18} {'s':>6}")
    for d in args.dims:
        for q in families(d):
            for adversary in ("l1", "l2", "linf"):
                for cert in certificates(q, adversary):
                    if cert.verified_method.startswith("float path"):
                        label = "(float path: level set)"
                        print(f"{q.name:12} {d:>5} {adversary:5} {cert.method[:42]:42} {label:30}")
                        continue
                    grid = CLOSED_GRID if cert.formula is not None and cert.verified_unit is None else \
                        DISCRETE_GRID if "discrete" in cert.method else ENVELOPE_GRID
                    start = time.perf_counter()
                    value, verified = cert.radius(grid), cert.verified_radius(grid)
                    ok = verified > 0
                    ratio = np.max(value[ok] / verified[ok])
                    print(f"{q.name:12} {d:>5} {adversary:5} {cert.method[:42]:42} {cert.verified_method[:30]:30} "
                          f"{ratio:18.15f} {time.perf_counter() - start:6.1f}", flush=True)


if __name__ == "__main__":
    main()
