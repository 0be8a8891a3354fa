"""``wulff derive``: the differential-method certificate of a named family or a hand-written profile.

    wulff derive ExpInf --d 16 --k 2 --j 1 --adversary l1
    wulff derive "abs(t)**3" --d 8 --adversary l1            # an iid profile phi(t)
    wulff derive "r**2/2" --norm 2 --d 8 --adversary l2       # a radial profile g(r)
    wulff derive "norm(x, 1)" --d 8                           # any psi that Density recognizes
    wulff derive Pareto --a 3 --d 2 --adversary l1 --rho 0.5001 0.51 --verify   # float vs mpmath

Prints the law of gamma_u, Phi (pretty and LaTeX), the radius formula (pretty and LaTeX) and the
certified radii at standard values of rho (``--verify``: beside the verified radius, and the pair's
level-set and uniform-noise certificates too, each checked by its own verified mode).
"""
from __future__ import annotations

import argparse
import math

from wulff.catalog import ADVERSARIES, FAMILIES, FAMILY_NAMES, canonical_family
from wulff.cli.arguments import add_param_argument, parse_params

STANDARD_RHO = (0.55, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 0.999999)
#: every shape parameter of some named family (each a --NAME option)
SHAPE_PARAMETERS = tuple(dict.fromkeys(k for info in FAMILIES.values() for k in info.shape))


def build_distribution(args: argparse.Namespace):
    """The distribution named by ``args.density``: a named family (any case; a shape parameter not
    given takes the paper's default, else its example value), or a profile / psi expression."""
    from wulff.distributions import IID, Density, Radial, registry
    from wulff.distributions import r as r_symbol
    from wulff.distributions.density import PSI_VARIABLES
    from wulff.expressions import parse_expression, parse_number

    scale = {"lam": args.lam} if args.sigma is None else {"sigma": args.sigma}
    if canonical_family(args.density) is not None:
        given = parse_params(getattr(args, "param", None))  # --param k=2, as for `wulff train`
        given.update({name: parse_number(getattr(args, name), what=f"--{name}")  # digits, never an expression
                      for name in SHAPE_PARAMETERS if getattr(args, name, None) is not None})
        return registry.build(args.density, args.d, **scale, examples=True, **given)
    expr = parse_expression(args.density, {**PSI_VARIABLES, "r": r_symbol}, what="density")
    names = {s.name for s in expr.free_symbols}
    if names == {"t"}:
        return IID(expr, args.d, **scale)
    if names == {"r"}:
        if args.norm is None:
            raise ValueError("a radial profile g(r) needs --norm (1, 2 or inf)")
        return Radial(expr, args.norm, args.d, **scale)
    return Density(expr, args.d, **scale)


def _show(label: str, expr) -> None:
    import sympy as sp

    print(f"{label}:")
    if expr is None:
        print("  (numeric only: no closed form)")
        return
    print("  " + sp.pretty(expr, use_unicode=True).replace("\n", "\n  "))
    print(f"  LaTeX: {sp.latex(expr)}")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from wulff.diffmethod import derive

    q = build_distribution(args)
    adversaries = ["l1", "l2", "linf"] if args.adversary == "all" else [args.adversary]
    print(f"distribution: {q!r}  ({q.structure()})")
    rho = np.array(args.rho if args.rho else STANDARD_RHO, dtype=float)
    for adversary in adversaries:
        print(f"\n== adversary {adversary} ==")
        try:
            cert = derive(q, adversary)
        except NotImplementedError as exc:
            print(f"not derived by the differential method: {exc}")
            continue
        print(f"gamma_u: {cert.gamma_law}")
        print(f"method: {cert.method}   ({cert.theorem}; tight: {cert.tight})")
        _show("Phi(p)" if cert.formula_rho_max is None
              else f"Phi(p) for p >= {1 - cert.formula_rho_max:.6g}", cert.Phi_formula)
        _show("certified radius R(rho)", cert.formula)
        if cert.formula_rho_max is not None:
            print(f"  (the formula holds for rho <= {cert.formula_rho_max:.12g}; beyond it the radii below "
                  "come from the sound quadrature bound)")
        _print_radii(cert, rho, args.verify)
        if args.verify:
            for other in _other_certificates(q, adversary):
                print(f"\nalso: {other.method}   ({other.theorem}; tight: {other.tight})")
                _print_radii(other, rho, verify=True)
    return 0


def _other_certificates(q, adversary: str) -> list:
    """The certificates of the pair from the level set method and the uniform-noise theorems, which
    ``--verify`` checks too (building a level-set table costs up to a minute, once: it is cached)."""
    from wulff.levelset import derive as derive_levelset
    from wulff.uniform import derive_uniform

    out = []
    for provider in (derive_uniform, derive_levelset):
        try:
            out.append(provider(q, adversary))
        except NotImplementedError:
            continue
    return out


def _print_radii(cert, rho, verify: bool) -> None:
    """The radii at rho; with ``verify``, beside the verified radius and the ratio."""
    from tqdm import tqdm

    radii = cert.radius(rho)
    if not verify:
        print("rho        radius")
        for x, value in zip(rho, radii):
            print(f"{x:<10.10g} {_number(value)}")
        return
    print(f"verified mode: {cert.verified_method}")
    print(f"{'rho':<10} {'radius (float)':<20} {'verified (mpmath)':<20} float / verified")
    for x, value in zip(rho, tqdm(radii, desc="verifying", leave=False, disable=None)):
        verified = float(cert.verified_radius(x))
        ratio = value / verified if verified > 0 and math.isfinite(verified) else float("nan")
        print(f"{x:<10.10g} {_number(value):<20} {_number(verified):<20} {ratio:.12f}")


def _number(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.12g}"


def register(sub) -> None:
    p = sub.add_parser("derive", help="derive Phi and the certified radius of a smoothing density",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("density", help="a named family (" + ", ".join(FAMILY_NAMES) + "; any case), an iid profile "
                                   "in t, a radial profile in r (with --norm), or psi in x with norm(x, p)")
    p.add_argument("--d", type=int, default=8, help="dimension (default 8)")
    p.add_argument("--adversary", default="all", choices=[*ADVERSARIES, "all"])
    p.add_argument("--norm", default=None, help="norm of a radial profile: 1, 2 or inf")
    scale = p.add_mutually_exclusive_group()
    scale.add_argument("--lam", type=float, default=1.0, help="scale lam (default 1)")
    scale.add_argument("--sigma", type=float, default=None, help="noise level sigma instead of lam")
    for name in SHAPE_PARAMETERS:
        p.add_argument(f"--{name}", default=None, help=f"shape parameter {name} of a named family (a number; "
                       "default: the paper's default, else an example value, see `wulff distributions`)")
    add_param_argument(p)
    p.add_argument("--rho", type=float, nargs="+", default=None,
                   help="rho values to tabulate (default: " + " ".join(map(str, STANDARD_RHO)) + ")")
    p.add_argument("--verify", action="store_true",
                   help="also print the verified radius (mpmath, a provable lower bound) and the ratio, and "
                        "check the pair's level-set (a few seconds per rho) and uniform-noise certificates too; "
                        "a quadrature certificate costs about half a second per envelope line (a few lines "
                        "near rho = 1/2, ~200 at 0.6, ~2000 near 1): choose --rho accordingly")
    p.set_defaults(handler=run)
