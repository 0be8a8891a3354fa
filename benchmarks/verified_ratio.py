"""Float path against the verified mode, and both against exact references.

    python3 benchmarks/verified_ratio.py --exact [--dims 1 2 3 8]   # the table of issue 25
    python3 benchmarks/verified_ratio.py [--dims 1 2 3 8 3072]     # float / verified, every family
    python3 benchmarks/verified_ratio.py --bracket [--refine 1 4] [--rho 0.51 0.6]  # proved widths

``--exact``: for every certificate that tests/test_verified_property.py covers (the same
independent 40-digit references: Gaussian, Laplace l1 / linf, UniformCube l1, Pareto linf, the
Gaussian level set, log cosh l1 near 1/2), the worst relative gap radius / exact - 1 of the float
path and of the verified mode over rho within 1e-15 ... 1e-12 of 1/2, on (1/2, 1) and within
1e-15 ... 1e-12 of 1 (log cosh: near 1/2 only, where the reference is a proved bracket; its gap is
taken against the bracket's lower end). A gap above 0 would be an over-claim.

``--bracket``: for the profile envelopes that tests/test_verified_property.py brackets (Pareto,
ExpP with p < 1 and log cosh against l1, d = 2, the same exact references), Certificate.verified_bracket
at each ``--refine`` level: whether verified <= lower <= exact <= upper, the proved widths
(upper - verified) / verified and (upper - lower) / lower, the true gap exact / verified - 1, seconds.

Without ``--exact``: the worst ratio radius / verified radius of every direct certificate of every
named family (a ratio <= 1 everywhere is the soundness check; close to 1 is tightness). Closed
forms are checked on rho grids hugging 1/2 and 1; envelope certificates (quadrature, discrete
laws) near rho = 1/2, where few envelope lines are active; discrete laws also at rho = 0.9 and 0.99.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

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


#: rho for the exact table: near 1/2, inside, near 1
EXACT_GRID = {"half": [0.5 + 10.0 ** -k for k in (15, 14, 13, 12)],
              "mid": [0.55, 0.6, 0.75, 0.9, 0.99],
              "one": [1 - 10.0 ** -k for k in (12, 13, 14, 15)]}


def exact_table(dims: list) -> None:
    """Worst float and verified gaps to the property test's references (see the module): for each,
    the range (lowest .. highest) of radius / exact - 1 over the cases."""
    import mpmath

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_verified_property import CASES, DPS

    print(f"{'certificate':22} {'method':40} {'cases':>5} {'float / exact - 1':>21} "
          f"{'verified / exact - 1':>21} {'s':>6}")
    for name, (make, kinds) in CASES.items():
        dims_here = [12] if "level set" in name else dims
        shapes = [3.0, 5.39] if name.startswith("Pareto") else [3.0]
        float_gaps, verified_gaps, method = [], [], ""
        start = time.perf_counter()
        for d in dims_here:
            for shape in shapes:
                for rho in (x for kind in kinds for x in EXACT_GRID[kind]):
                    with mpmath.workdps(DPS):
                        cert, reference = make(d, 1.0, rho, shape)
                        exact = reference[0] if isinstance(reference, tuple) else reference
                        float_gaps.append(float(float(cert.radius(rho)) / exact - 1))
                        verified_gaps.append(float(float(cert.verified_radius(rho)) / exact - 1))
                    method = cert.method
        print(f"{name:22} {method[:40]:40} {len(float_gaps):>5} "
              f"{min(float_gaps):>+10.1e}..{max(float_gaps):<+9.1e} "
              f"{min(verified_gaps):>+10.1e}..{max(verified_gaps):<+9.1e} "
              f"{time.perf_counter() - start:6.1f}", flush=True)


BRACKET_GRID = [0.5 + 1e-12, 0.5 + 1e-6, 0.5015, 0.51, 0.6, 0.9]


def bracket_table(refines: list, grid: list) -> None:
    """Proved widths of the verified bracket on profile envelopes (see the module)."""
    import mpmath

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_verified_property import DPS, PROFILE_SHAPES, _profile_case

    print(f"{'certificate':12} {'shape':>6} {'rho':>14} {'refine':>6} {'holds':>5} {'verified width':>14} "
          f"{'bracket width':>13} {'exact/verified-1':>16} {'s':>6}")
    for name, shapes in PROFILE_SHAPES.items():
        for shape in shapes:
            cert, reference = _profile_case(name, 2, shape)
            for rho in grid:
                with mpmath.workdps(DPS):
                    exact = reference(rho)
                    verified = float(cert.verified_radius(rho))
                    for refine in refines:
                        start = time.perf_counter()
                        lower, upper = cert.verified_bracket(rho, DPS, refine)
                        holds = verified <= lower <= exact <= upper
                        print(f"{name:12} {float(shape):6.3g} {rho:14.12g} {refine:>6} {str(holds):>5} "
                              f"{(upper - verified) / verified:14.2e} {(upper - lower) / lower:13.2e} "
                              f"{float(exact / verified - 1):16.2e} {time.perf_counter() - start:6.1f}",
                              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", type=int, nargs="+", default=[1, 2, 3, 8])
    parser.add_argument("--exact", action="store_true", help="the gaps to exact references (see above)")
    parser.add_argument("--bracket", action="store_true", help="the verified bracket's widths (see above)")
    parser.add_argument("--refine", type=int, nargs="+", default=[1, 4], help="--bracket's midpoint levels")
    parser.add_argument("--rho", type=float, nargs="+", default=BRACKET_GRID, help="--bracket's rho values")
    args = parser.parse_args()
    if args.bracket:
        bracket_table(args.refine, args.rho)
        return
    if args.exact:
        exact_table(args.dims)
        return
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
