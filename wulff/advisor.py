"""Which noise to smooth with (``wulff.compare``): every family (and any declared density) at
matched sigma, against one adversary, ranked by certified radius.

    >>> c = compare("l1", d=3072, sigma=0.5, families=["UniformCube", "Laplace", "Gaussian"], rho=[0.6, 0.99])
    >>> c.winners()
    ['UniformCube', 'Laplace']

Each radius is ``wulff.best_certificate(q, adversary)`` at the given rho, so it is sound and its
winning certificate is named. Matched sigma means sigma^2 = E||delta||_2^2 / d for every noise (the
paper's Section 6 convention), so the comparison is at equal noise power.

Two bounds frame the table:

* :func:`reachable_rho`: with n samples and failure probability alpha, no input gets a lower
  confidence bound above alpha^(1/n) (all n votes for the class; the one-sided Clopper-Pearson
  bound of Cohen et al. 2019), so no radius above R(alpha^(1/n)) is ever certified.
* :func:`halfspace_bound`: the ceiling every sound rho-only certificate obeys for every noise that
  is symmetric about 0, whatever its shape (our computable form of the no-go result of Section 7,
  Theorem 7.3 and Corollary 7.4, and of the d^(1/2 - 1/p) rate of Kumar et al. 2020).
"""
from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from wulff.catalog import WULFF_CRYSTALS, canonical_family, crystal_families, family_names
from wulff.certificate import as_rho_array, check_adversary
from wulff.errors import UserError

#: the rho values tabulated when none are given
DEFAULT_RHO: tuple[float, ...] = (0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999)
#: the CSV header of :meth:`Comparison.write_csv`
CSV_COLUMNS: tuple[str, ...] = ("family", "parameters", "adversary", "d", "sigma", "rho", "radius", "method")


def wulff_crystal(adversary: str) -> tuple[str, tuple[str, ...]]:
    """The Wulff crystal of the adversary's unit ball (Section 5, Example 5.3) in words, and the named
    families whose level sets have that shape (or approximate it, for linf: Proposition K.8), read
    from each family's declared level sets (:data:`wulff.catalog.FAMILIES`)."""
    return WULFF_CRYSTALS[adversary][0], crystal_families(adversary)


class _Crystals(Mapping):
    """adversary -> :func:`wulff_crystal` (a live view: a registered family joins its crystal)."""

    def __getitem__(self, adversary: str) -> tuple[str, tuple[str, ...]]:
        return wulff_crystal(adversary)

    def __iter__(self):
        return iter(WULFF_CRYSTALS)

    def __len__(self) -> int:
        return len(WULFF_CRYSTALS)


#: the Wulff crystal of each adversary's unit ball and the named families whose level sets have that
#: shape: :func:`wulff_crystal` for every adversary
WULFF_CRYSTAL: Mapping[str, tuple[str, tuple[str, ...]]] = _Crystals()
_P = {"l1": 1.0, "l2": 2.0, "linf": math.inf}


def reachable_rho(n: int, alpha: float) -> float:
    """The largest lower confidence bound on rho that n samples can give at failure probability alpha:
    alpha^(1/n), the one-sided Clopper-Pearson bound when all n votes go to the class (it solves
    p^n = alpha). No input is certified beyond R(alpha^(1/n)) with these n and alpha."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer (the number of samples); got {n!r}")
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must lie in the open interval (0, 1); got {alpha!r}")
    return float(alpha) ** (1.0 / int(n))


def halfspace_bound(rho, adversary: str, d: int, sigma: float) -> np.ndarray:
    """An upper bound on every sound certified radius that uses only rho, for any noise symmetric about
    0 with sigma^2 = E||delta||_2^2 / d: sigma sqrt(rho / (1 - rho)) min(1, d^(1/p - 1/2)).

    Proof. Let Sigma = E[delta delta^T]; tr Sigma = d sigma^2. Averaged over the 2^d sign vectors s,
    Var<delta, s / sqrt d> = s^T Sigma s / d averages tr Sigma / d = sigma^2, so some s has
    Z = <delta, u> (u = s / sqrt d) of variance <= sigma^2 (likewise some coordinate e_i). Take the
    binary classifier "class A iff <x, u> <= c": at x = 0 its smoothed probability is P(Z <= c); with
    c the rho-quantile of Z, Cantelli's inequality P(Z > sigma k) <= 1 / (1 + k^2) gives
    c <= sigma sqrt(rho / (1 - rho)). Moved by t u with t > c, the probability of A is
    P(Z < c - t) <= P(Z < 0) <= 1/2 (Z is symmetric), so A is no longer certified: a sound radius
    is at most c ||u||_p, and ||s / sqrt d||_p = d^(1/p - 1/2) (||e_i||_p = 1).

    For l_p with p > 2 the bound falls like d^(1/p - 1/2): the rate of Kumar et al. (2020) and of
    Corollary 7.4 (kappa = Omega(d^(1/2 - 1/p))); for linf it is sigma sqrt(rho / (1 - rho)) / sqrt d,
    so at any sigma that keeps accuracy, no noise certifies linf radius beyond O(1/sqrt d) unless rho
    is near 1 (Section 7). Gaussian noise attains the same rate: its linf radius is
    sigma Phi^-1(rho) / sqrt d (the halfspace is its worst case).
    """
    adversary = check_adversary(adversary)
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d must be a positive integer; got {d!r}")
    if not (math.isfinite(float(sigma)) and float(sigma) > 0):
        raise ValueError(f"sigma must be a finite number > 0; got {sigma!r}")
    rho = as_rho_array(rho)
    factor = min(1.0, float(d) ** (1.0 / _P[adversary] - 0.5))
    with np.errstate(divide="ignore"):
        return float(sigma) * np.sqrt(rho / (1.0 - rho)) * factor


@dataclass(frozen=True)
class Entry:
    """One noise in a comparison: its radius and winning certificate at each rho, or why it has none."""

    family: str
    parameters: str
    radius: np.ndarray | None = None
    method: tuple | None = None
    missing: str | None = None
    distribution: object = field(default=None, repr=False, compare=False)
    certificate: object = field(default=None, repr=False, compare=False)

    @property
    def label(self) -> str:
        return f"{self.family}({self.parameters})" if self.parameters else self.family


@dataclass(frozen=True)
class Comparison:
    """The result of :func:`compare`: entries in order, at the rho values ``rho`` (sorted, with the
    reachable rho of (n, alpha) included when n was given)."""

    adversary: str
    d: int
    sigma: float
    rho: np.ndarray
    entries: list[Entry]
    n: int | None = None
    alpha: float | None = None

    @property
    def reachable(self) -> float | None:
        """alpha^(1/n), the largest rho the given n and alpha can certify (None without n)."""
        return None if self.n is None else reachable_rho(self.n, self.alpha)

    @property
    def certified(self) -> list[Entry]:
        return [e for e in self.entries if e.radius is not None]

    def winners(self) -> list[str | None]:
        """For each rho, the label of the noise with the largest radius (first on ties; None when
        no radius is positive)."""
        found = self.certified
        if not found:
            return [None] * len(self.rho)
        radii = np.stack([e.radius for e in found])
        best = radii.argmax(axis=0)
        return [found[i].label if radii[i, k] > 0 else None for k, i in enumerate(best)]

    def bound(self) -> np.ndarray:
        """:func:`halfspace_bound` at each rho of the table."""
        return halfspace_bound(self.rho, self.adversary, self.d, self.sigma)

    # -- output ---------------------------------------------------------------------------------
    def rows(self) -> list[dict]:
        """One dict per (noise, rho) with the :data:`CSV_COLUMNS` (radius None without a certificate)."""
        out = []
        for e in self.entries:
            for k, rho in enumerate(self.rho):
                radius = None if e.radius is None else float(e.radius[k])
                method = (e.missing if e.radius is None
                          else e.method[k] or "abstain (rho <= 1/2)")
                out.append({"family": e.family, "parameters": e.parameters, "adversary": self.adversary,
                            "d": self.d, "sigma": self.sigma, "rho": float(rho), "radius": radius,
                            "method": method})
        return out

    def write_csv(self, path: str | os.PathLike) -> str:
        """Write :meth:`rows` as CSV (columns :data:`CSV_COLUMNS`; radius empty without a certificate)."""
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            for row in self.rows():
                writer.writerow({**row, "radius": "" if row["radius"] is None else repr(row["radius"])})
        return str(path)

    def table(self) -> str:
        """A text table: one line per noise, one column per rho, the winner's radius starred."""
        winners = self.winners()
        heads = [f"{r:.6g}" + ("*" if self.reachable is not None and r == self.reachable else "")
                 for r in self.rho]
        width = max([len(e.label) for e in self.entries] + [10])
        lines = [f"certified {self.adversary} radius at d = {self.d}, sigma = {self.sigma:g} "
                 f"(sigma^2 = E||delta||^2 / d); [w] marks the winner",
                 f"{'rho':<{width}}  " + "  ".join(f"{h:>13}" for h in heads)]
        for e in self.entries:
            if e.radius is None:
                lines.append(f"{e.label:<{width}}  not compared: {e.missing}")
                continue
            cells = [_number(v) + (" [w]" if w == e.label else "    ") for v, w in zip(e.radius, winners)]
            lines.append(f"{e.label:<{width}}  " + "  ".join(f"{c:>13}" for c in cells))
        lines.append(f"{'halfspace bound':<{width}}  " + "  ".join(f"{_number(v) + '    ':>13}"
                                                                  for v in self.bound()))
        if self.reachable is not None:
            lines.append(f"* rho = alpha^(1/n) = {self.reachable:.6g}: the largest lower bound n = {self.n} "
                         f"samples give at alpha = {self.alpha:g} (all votes for the class); no input is "
                         "certified beyond this column")
        lines.append("methods of the winners: " + "; ".join(
            f"rho {r:.6g}: {w} by {self._method_of(w, k)}" for k, (r, w) in enumerate(zip(self.rho, winners))
            if w is not None))
        return "\n".join(lines)

    def _method_of(self, label: str, k: int) -> str:
        entry = next(e for e in self.certified if e.label == label)
        return str(entry.method[k])

    def story(self) -> str:
        """The paper's reasoning in plain words, with this comparison's numbers (see :func:`story`)."""
        return story(self)

    def plot(self, path: str | os.PathLike, points: int = 200) -> str:
        """R(rho) of every certified noise on one PNG (rho on a logit axis from just above 1/2 to the
        table's largest rho; radii on a log axis), with the halfspace bound for l2 and linf."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        top = float(self.rho.max())
        grid = np.unique(np.concatenate([1.0 - np.geomspace(0.5 - 1e-3, 1.0 - top, points), self.rho]))
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
        styles = ("-", "--", "-.", ":")
        colors = plt.get_cmap("tab10").colors
        for k, e in enumerate(self.certified):
            ax.plot(grid, e.certificate.radius(grid), label=e.label, linewidth=1.6,
                    color=colors[k % len(colors)], linestyle=styles[(k // len(colors)) % len(styles)])
        if self.adversary != "l1":
            ax.plot(grid, halfspace_bound(grid, self.adversary, self.d, self.sigma), "k", linewidth=2.5, alpha=0.4,
                    label="halfspace bound (any symmetric noise)")
        if self.reachable is not None:
            ax.axvline(self.reachable, color="grey", linestyle=":", label=f"alpha^(1/n), n = {self.n}")
        ax.set_xscale("logit")
        ax.set_yscale("log")
        ax.set_xlabel("rho (lower bound on the top-class probability)")
        ax.set_ylabel(f"certified {self.adversary} radius")
        ax.set_title(f"{self.adversary} adversary, d = {self.d}, sigma = {self.sigma:g}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return str(path)


def _number(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.4g}"


# -- building the comparison ----------------------------------------------------------------------
def declared_distribution(text: str, d: int, sigma: float):
    """A density declared as text (read by the restricted parser, never evaluated): an iid profile
    phi(t) such as "abs(t)**3", or psi(x) such as "norm(x, 2)**2 / 2" (see wulff.distributions.Density)."""
    from wulff.distributions import IID, Density
    from wulff.distributions.density import PSI_VARIABLES
    from wulff.expressions import parse_expression

    expr = parse_expression(text, PSI_VARIABLES, what="psi")
    if {s.name for s in expr.free_symbols} == {"t"}:
        return IID(expr, d, sigma=sigma)
    return Density(expr, d, sigma=sigma)


def _entry(family: str, parameters: str, build, adversary: str, rho: np.ndarray) -> Entry:
    """The entry of one noise: built by ``build()``; a noise with no certificate (or no finite sigma)
    is recorded with the reason instead of raising."""
    from wulff.selector import best_certificate

    try:
        q = build()
    except ValueError as exc:
        if "sigma is infinite" not in str(exc):
            raise
        return Entry(family, parameters, missing="no finite sigma to match: " + " ".join(str(exc).split()))
    try:
        cert = best_certificate(q, adversary)
    except NotImplementedError as exc:
        reason = " ".join(str(exc).split())
        return Entry(family, parameters, missing=f"no certificate against {adversary}: {reason}", distribution=q)
    return Entry(family, parameters, radius=np.asarray(cert.radius(rho), dtype=np.float64),
                 method=tuple(cert.winner(rho).tolist()), distribution=q, certificate=cert)


def compare(adversary: str, d: int, sigma: float, *, families: Sequence[str] | None = None,
            params: Mapping[str, object] | None = None, psi: Sequence[str] = (), rho=DEFAULT_RHO,
            n: int | None = None, alpha: float = 0.001) -> Comparison:
    """Every named family in ``families`` (default: all of them, in the catalog's order) and every
    density in ``psi``, at noise level ``sigma`` in dimension ``d``, certified against ``adversary``
    at each ``rho`` by :func:`wulff.best_certificate`.

    ``params`` overrides shape parameters by name (``{"p": 1.2}`` applies to every listed family
    with a p); the others take the paper's defaults, else their example values. With ``n`` the
    column rho = alpha^(1/n) (:func:`reachable_rho`) is added. A family with no certificate against
    the adversary is listed with the reason, never raised.

    Against l1 the cube (the Wulff crystal, Section 5) wins hard inputs, R = 2 lam (rho - 1/2)
    (Theorem N.3), and Laplace noise the easy ones, R = lam log(1 / (2 (1 - rho))); at sigma = 0.5
    lam is sqrt(3)/2 and 1/(2 sqrt(2)):

    >>> c = compare("l1", d=64, sigma=0.5, families=["UniformCube", "Laplace"], rho=[0.6, 0.99])
    >>> c.winners()
    ['UniformCube', 'Laplace']
    >>> [(e.family, [round(float(v), 4) for v in e.radius]) for e in c.entries]
    [('UniformCube', [0.1732, 0.8487]), ('Laplace', [0.0789, 1.3831])]
    """
    from wulff.distributions import registry

    adversary = check_adversary(adversary)
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d must be a positive integer; got {d!r}")
    if not (math.isfinite(float(sigma)) and float(sigma) > 0):
        raise ValueError(f"sigma must be a finite number > 0; got {sigma!r}")
    rho = as_rho_array(rho).ravel()
    if rho.size == 0 or rho.min() <= 0.5 or rho.max() >= 1.0:
        raise ValueError(f"rho must lie in the open interval (1/2, 1); got {rho.tolist()}")
    if n is not None:
        rho = np.append(rho, reachable_rho(n, alpha))
    rho = np.unique(rho)
    names = list(family_names() if families is None else families)
    unknown = [f for f in names if canonical_family(f) is None]
    if unknown:
        known = ", ".join(family_names())
        raise UserError(f"families: unknown {', '.join(map(str, unknown))}; choose from {known}")
    names = list(dict.fromkeys(canonical_family(f) for f in names))
    shape = registry.shared_parameters(names, int(d), params)
    entries = [_entry(name, ", ".join(f"{k}={v:g}" for k, v in shape[name].items()),
                      lambda name=name: registry.build(name, int(d), sigma=float(sigma), **shape[name]),
                      adversary, rho) for name in names]
    entries += [_entry(f"psi: {text}", "", lambda text=text: declared_distribution(text, int(d), float(sigma)),
                       adversary, rho) for text in psi]
    return Comparison(adversary, int(d), float(sigma), rho, entries, n=n,
                      alpha=None if n is None else float(alpha))


# -- the story --------------------------------------------------------------------------------------
#: what the paper's experiments found for each adversary, and the command that measures it here
_EXPERIMENT = {
    "l1": "(the paper's Table 1 finds the cube ahead at every l1 radius on CIFAR-10 with sigma up to 3.5; "
          "`wulff experiment table1` measures it on the data at hand).",
    "l2": "(the paper's Figure 3, left: spherical noises close to the Gaussian, none above it; "
          "`wulff experiment figure3`).",
    "linf": "(the paper's Figure 3, right: spherical level sets ahead of cubical and cross-polytope ones; "
            "`wulff experiment figure3`).",
}
#: rho just above 1/2 at which the "hard input" slope R(rho) / (rho - 1/2) is read
HARD_RHO = 0.5 + 1e-4


def _ranked(entries: list[Entry], values: np.ndarray, count: int = 4) -> str:
    order = np.argsort(-values, kind="stable")[:count]
    return ", ".join(f"{entries[i].label} {_number(values[i])}" for i in order)


def story(c: Comparison) -> str:
    """The reasoning of Sections 5 and 7 in plain words with this comparison's numbers: the Wulff
    crystal of the adversary's ball, the slope at rho = 1/2 that it maximizes (Theorem 5.4), where the
    winner changes, and the halfspace (no-go) bound of :func:`halfspace_bound`."""
    found = c.certified
    crystal, shaped = wulff_crystal(c.adversary)
    lines = [f"Why (Section 5): the Wulff crystal of the {c.adversary} ball is {crystal}. Among noises whose "
             "level sets have the same volumes, the one with Wulff-crystal level sets certifies the largest "
             "radius for hard inputs, those with rho just above 1/2 (Theorem 5.4). Families with that shape "
             f"here: {', '.join(f for f in shaped if any(e.family == f for e in found)) or 'none listed'}."]
    if found:
        slope = np.array([float(e.certificate.radius(HARD_RHO)) / (HARD_RHO - 0.5) for e in found])
        lines.append(f"Radius per unit of margin rho - 1/2 for hard inputs (R(rho) / (rho - 1/2) at rho = "
                     f"{HARD_RHO}): {_ranked(found, slope)}.")
        lines += _caps(found)
        winners = c.winners()
        changes = [f"{w} at rho {r:.6g}" for k, (r, w) in enumerate(zip(c.rho, winners))
                   if w is not None and (k == 0 or winners[k - 1] != w)]
        lines.append("Winner by rho: " + ", then ".join(changes) + "." + (
            " So at one sigma the winner depends on how confident the base classifier is. With training, "
            "each sigma gives each input its own rho, and the upper envelope over a wide sigma sweep decides "
            + _EXPERIMENT[c.adversary]
            if len(changes) > 1 else ""))
    lines.append(_no_go(c))
    return "\n".join(lines)


def is_bounded(q) -> bool:
    """Whether the noise q has bounded support: only uniform noise (the cube, the l2 ball) does; every
    density exp(-psi) with psi finite everywhere, however light or heavy its tails, is unbounded."""
    from wulff.distributions import Uniform

    return isinstance(q, Uniform)


def _caps(found: list[Entry]) -> list[str]:
    """What each radius does as rho -> 1: a bounded (uniform) noise caps it (Theorems N.3, N.6, S.1); an
    unbounded noise's certificate may stay finite too (its integral of 1 / Phi converges at p = 0), or grow
    without bound. Each with its value at rho = 1."""
    at_one = [(e, float(e.certificate.radius(1.0))) for e in found]
    bounded = [f"{e.label} {_number(v)}" for e, v in at_one if is_bounded(e.distribution)]
    finite = [f"{e.label} {_number(v)}" for e, v in at_one if not is_bounded(e.distribution) and math.isfinite(v)]
    growing = len(found) - len(bounded) - len(finite)
    lines = []
    if bounded:
        lines.append("A bounded (uniform) noise's radius is capped however confident the classifier is (its value "
                     f"at rho = 1): {', '.join(bounded[:4])}.")
    if finite:
        lines.append("These noises are unbounded, yet their certificates stay finite as rho -> 1 (the value at "
                     f"rho = 1): {', '.join(finite[:4])}.")
    if (bounded or finite) and growing:
        lines.append("The other noises' radii keep growing as rho -> 1.")
    return lines


def _no_go(c: Comparison) -> str:
    """The halfspace bound of Section 7 / Kumar et al. (2020) with this d and sigma."""
    p = _P[c.adversary]
    rate = min(1.0, float(c.d) ** (1.0 / p - 0.5))
    bound = c.bound()
    above = [e.label for e in c.certified if np.any(e.radius > bound * (1 + 1e-12))]
    check = ("every radius above is below it" if not above
             else f"EXCEEDED by {', '.join(above)}: such a radius cannot be sound")
    head = (f"No-go bound (Section 7, Theorem 7.3 and Corollary 7.4; Kumar et al. 2020): for any noise "
            f"symmetric about 0 at this sigma, a certificate that uses only rho cannot exceed "
            f"sigma sqrt(rho / (1 - rho)) * min(1, d^(1/p - 1/2)) (a halfspace classifier breaks it); "
            f"here min(1, d^(1/p - 1/2)) = {rate:.4g} for p = {c.adversary[1:]}, so the bound is "
            + ", ".join(f"{_number(b)} at rho {r:.6g}" for r, b in zip(c.rho, bound)) + f"; {check}.")
    if c.adversary == "l1":
        return head + " Against l1 the bound does not shrink with d, so shape matters more than dimension."
    if c.adversary == "l2":
        return head + (" Against l2 it does not shrink with d either, and the Gaussian (spherical level sets) "
                       "reaches its rate: sigma Phi^-1(rho).")
    return head + (f" Against linf it shrinks like 1/sqrt(d) = {c.d ** -0.5:.4g} (the paper: no nontrivial "
                   f"certified accuracy at linf radius Omega(d^-1/2)); sigma / sqrt(d) = "
                   f"{c.sigma * c.d ** -0.5:.4g}. Gaussian noise attains this rate (sigma Phi^-1(rho) / sqrt d), "
                   "so up to a constant no shape does better: the only way up is a larger rho, i.e. more "
                   "samples and a more confident base classifier.")


__all__ = ["DEFAULT_RHO", "CSV_COLUMNS", "Entry", "Comparison", "compare", "reachable_rho", "halfspace_bound",
           "declared_distribution", "story", "is_bounded", "wulff_crystal", "WULFF_CRYSTAL"]
