"""Appendix B, Figure B.1: the level set method vs the differential method.

For q(x) ∝ exp(-||x||_2 sqrt(d)) (Exp2 with k = 1 and lam = 1/sqrt(d), so each coordinate has size
Theta(1)), plot the certified l2 radius R(rho) from the level set table (Theorem T.1, exact up to the
table's resolution) and from the differential method (Theorem R.1) at d = 2, 4, 32 and 1024. The
differential method is slightly loose at d = 2 and 4; at d = 32 and 1024 the curves coincide.

    python examples/levelset_vs_diffmethod.py [output.png] [--dimensions 2 4 32 1024]

(Building the low-dimensional tables takes ~15 s each the first time; they are cached afterwards.)
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import wulff.diffmethod  # noqa: E402
import wulff.levelset  # noqa: E402
from wulff.distributions import Exp2  # noqa: E402

DIMENSIONS = (2, 4, 32, 1024)


def radii(d: int, rho: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(level set, differential) radii for exp(-||x||_2 sqrt(d))."""
    q = Exp2(d, k=1, lam=1 / math.sqrt(d))
    return wulff.levelset.derive(q, "l2").radius(rho), wulff.diffmethod.derive(q, "l2").radius(rho)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", nargs="?", default="levelset_vs_diffmethod.png", type=Path,
                        help="where to write the PNG (default: %(default)s)")
    parser.add_argument("--dimensions", type=int, nargs="+", default=list(DIMENSIONS),
                        help="the panels' dimensions (default: %(default)s, as Figure B.1)")
    args = parser.parse_args(argv)
    rho = np.linspace(0.5, 0.999, 400)
    fig, axes = plt.subplots(1, len(args.dimensions), figsize=(4 * len(args.dimensions), 3.6), squeeze=False)
    axes = axes[0]
    for ax, d in zip(axes, args.dimensions):
        level_set, differential = radii(d, rho)
        ax.plot(rho, level_set, label="level set (Thm T.1)", lw=2.5, alpha=0.6)
        ax.plot(rho, differential, "--", label="differential (Thm R.1)", lw=1.5, color="k")
        gap = np.max((level_set - differential)[rho > 0.55] / differential[rho > 0.55])
        ax.set_title(f"d = {d}  (max gap {100 * gap:.2g} %)")
        ax.set_xlabel(r"$\rho$")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(r"certified $\ell_2$ radius $R(\rho)$")
    axes[0].legend(loc="upper left")
    fig.suptitle(r"$q(x) \propto \exp(-\|x\|_2\sqrt{d})$: level set vs differential method (Fig. B.1)")
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=120)
    print(f"wrote {args.output}")
    return args.output


if __name__ == "__main__":
    main()
