"""``wulff distributions``: every named family with its psi, d, lam and sigma."""
from __future__ import annotations

import argparse
import math


def run(args: argparse.Namespace) -> int:
    import warnings

    from wulff.distributions import registry

    rows = []
    for name in registry.family_names():
        params = registry.example_parameters(name, args.d)
        scale = {"sigma": args.sigma} if args.lam is None else {"lam": args.lam}
        q = registry.build(name, args.d, **params, **scale)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sigma = q.sigma
        shape = ", ".join(f"{k}={v:g}" for k, v in params.items())
        rows.append((name, shape, q.structure(), str(q.psi), q.d, q.lam, sigma))
    head = ("family", "parameters", "structure", "psi(x)", "d", "lam", "sigma")
    widths = [max(len(str(h)), *(len(_fmt(row[i])) for row in rows)) for i, h in enumerate(head)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(_fmt(v).ljust(w) for v, w in zip(row, widths)))
    return 0


def _fmt(v) -> str:
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.6g}"
    return str(v)


def register(sub) -> None:
    p = sub.add_parser("distributions", help="list the named smoothing distributions with their psi and scale",
                       description="Every named family at dimension d, with its shape parameters (the paper's "
                       "defaults, else example values: pass others to `wulff derive` or `wulff train --param`).")
    p.add_argument("--d", type=int, default=8, help="dimension (default 8)")
    scale = p.add_mutually_exclusive_group()
    scale.add_argument("--sigma", type=float, default=1.0, help="noise level sigma (default 1)")
    scale.add_argument("--lam", type=float, default=None, help="scale lam instead of sigma")
    p.set_defaults(handler=run)
