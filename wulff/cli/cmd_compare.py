"""``wulff compare``: which noise certifies the largest radius against an adversary, at matched sigma.

    wulff compare --adversary l1 --d 3072 --sigma 0.5
    wulff compare --adversary linf --d 3072 --sigma 0.5 --families Gaussian Laplace UniformCube \\
                  --psi "abs(t)**3" --rho 0.6 0.9 0.99 --n 100000 --alpha 0.001 --csv l.csv --plot l.png

Every named family (shape parameters: the paper's defaults, else the example values of ``wulff
distributions``; override with --param NAME=VALUE) and every --psi density, at the same sigma
(sigma^2 = E||delta||^2 / d), certified by the best certificate the library has: the radius at each
rho with the method that won, the winner per rho, the halfspace (no-go) bound, and the reasoning of
the paper's Sections 5 and 7 with these numbers. --n/--alpha add the column rho = alpha^(1/n): the
largest radius any input can reach with n samples.
"""
from __future__ import annotations

import argparse

from wulff.catalog import ADVERSARIES, FAMILY_NAMES
from wulff.cli.arguments import add_param_argument, parse_params
from wulff.cli.checks import output_file, positive_float, positive_int, probability


def run(args: argparse.Namespace) -> int:
    from wulff.advisor import DEFAULT_RHO, compare
    from wulff.errors import UserError

    csv_path = output_file(args.csv, "--csv", example="compare.csv") if args.csv else None
    plot_path = output_file(args.plot, "--plot", example="compare.png") if args.plot else None
    if args.alpha is not None and args.n is None:
        raise UserError("--alpha goes with --n (the number of samples): give both")
    bad = [r for r in (args.rho or []) if not 0.5 < r < 1.0]
    if bad:
        raise UserError(f"--rho: every value must lie in the open interval (0.5, 1); got {bad[0]:g}")
    comparison = compare(args.adversary, args.d, args.sigma, families=args.families,
                         params=parse_params(args.param), psi=args.psi or (),
                         rho=args.rho or DEFAULT_RHO, n=args.n,
                         alpha=0.001 if args.alpha is None else args.alpha)
    print(comparison.table())
    print()
    print(comparison.story())
    if csv_path is not None:
        print(f"\ncsv: {comparison.write_csv(csv_path)}")
    if plot_path is not None:
        print(f"plot: {comparison.plot(plot_path)}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("compare", help="rank every noise by certified radius against an adversary (matched sigma)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--adversary", default="l1", choices=ADVERSARIES, help="the adversary's norm (default l1)")
    p.add_argument("--d", type=positive_int, default=3072, help="input dimension (default 3072, CIFAR-10)")
    p.add_argument("--sigma", type=positive_float, default=0.5,
                   help="noise level sigma = sqrt(E||delta||^2 / d) shared by every noise (default 0.5)")
    p.add_argument("--families", nargs="+", default=None, metavar="NAME",
                   help="named families to compare, any case (default: all of " + ", ".join(FAMILY_NAMES) + ")")
    add_param_argument(p)
    p.add_argument("--psi", action="extend", nargs="+", default=None, metavar="EXPR",
                   help='declared densities: an iid profile in t ("abs(t)**3") or psi in x with norm(x, p) '
                        '("norm(x, 2)**2 / 2"); read by a restricted parser, never evaluated')
    p.add_argument("--rho", type=float, nargs="+", default=None,
                   help="rho values in (0.5, 1) (default 0.6 0.7 0.8 0.9 0.95 0.99 0.999)")
    p.add_argument("--n", type=positive_int, default=None,
                   help="samples per input: adds the column rho = alpha^(1/n), the best any input can reach")
    p.add_argument("--alpha", type=probability, default=None, help="failure probability with --n (default 0.001)")
    p.add_argument("--csv", default=None, metavar="FILE",
                   help="write the radii as CSV (family, parameters, adversary, d, sigma, rho, radius, method)")
    p.add_argument("--plot", default=None, metavar="FILE", help="write the R(rho) curves as a PNG")
    p.set_defaults(handler=run)
