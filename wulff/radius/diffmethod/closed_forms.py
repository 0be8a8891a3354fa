"""Closed forms of Phi and R(rho) where the change of variables of Lemma G.7 integrates symbolically.

A :class:`GammaSpec` describes gamma_u = S * M symbolically (parameters may be sympy symbols):
the sign law S, and M either a constant m or |h(R)| with R from the :class:`SymbolicLaw` of the profile.
Each rule below is one step of Appendix G; it returns None when its hypotheses fail, and the
numeric envelope (:mod:`wulff.diffmethod.envelope`) takes over.

* constant M, any sign law with a known Lemma G.7 integral:
    S Rademacher:   Phi = m p,  R = log(1 / (2 (1 - rho))) / m                  (I.1, N.4)
    S sparse (w):   Phi = m min(p, w), R linear up to rho = 1 - w, then a log   (N.1)
    S sphere:       |phi'(c)| / bar-phi(c) = (d - 1) / (1 - c^2), R = (d-1) atanh(c) / m  (R.1),
                    written log(I^{-1}(rho) / I^{-1}(1 - rho)) / 2, stable near rho = 1
    S normal:       |phi'(c)| / bar-phi(c) = 1, R = Phi^{-1}(rho) / m           (H.1)
* S sparse (w < 1/2), M = g'(R) >= 0: Phi = w E g'(R) on [w, 1/2], and integration by parts
  (Lemma U.4) gives E g'(R) = (d - 1) E[1 / R]: R(rho) = (rho - 1/2) / (w E g'(R)) for
  rho <= 1 - w (N.2, O.1).
* S Rademacher, d = 1 (iid coordinate), h = phi' >= 0 nondecreasing: T(x) = E[phi'(X); X > x] = f(x)
  (fundamental theorem of calculus), so the Lemma G.7 integrand f / T is 1 and R(rho) is the
  quantile of |X| at 2 rho - 1 (Theorem M.1, Corollary M.3).
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from wulff.distributions import r as r_symbol
from wulff.distributions.profile import LogPowerProfile, PowerProfile, Profile
from wulff.special import BetaIncInv, BetaPrimeCDFInv, GammaIncInv, NormalQuantile

#: the variable of every radius formula (plain, so that ``formula.subs(Symbol("rho"), 0.9)`` works)
rho = sp.Symbol("rho")
#: the variable of every Phi formula
p = sp.Symbol("p")


class SymbolicLaw:
    """Law of R with density ∝ r^(n-1) exp(-g(r)), from a parsed profile (Lemma U.3).

    kind "gamma": g = c r^k + j log r (+ const), c R^k ~ Gamma((n - j) / k);
    kind "betaprime": g = a log(1 + c r^k), c R^k ~ BetaPrime(n / k, a - n / k).
    """

    def __init__(self, kind: str, c: sp.Expr, k: sp.Expr, **shape: sp.Expr):
        self.kind, self.c, self.k, self.shape = kind, c, k, shape

    def moment(self, s) -> sp.Expr:
        """E[R^s] (unevaluated Gamma functions, so that huge d stays printable and exact)."""
        m = sp.Integer(s) / self.k
        G = lambda x: sp.gamma(sp.factor_terms(sp.together(x)), evaluate=False)
        if self.kind == "gamma":
            a = self.shape["a"]
            return self.c ** (-m) * G(a + m) / G(a)
        alpha, beta = self.shape["alpha"], self.shape["beta"]
        return self.c ** (-m) * G(alpha + m) * G(beta - m) / (G(alpha) * G(beta))

    def inverse_moment_condition(self) -> sp.Expr:
        """E[1/R] < inf iff this expression is positive (shape - 1/k > 0)."""
        first = self.shape["a"] if self.kind == "gamma" else self.shape["alpha"]
        return sp.simplify(first - 1 / self.k)

    def quantile(self, u) -> sp.Expr:
        """The u-quantile of R."""
        if self.kind == "gamma":
            return (GammaIncInv(self.shape["a"], u) / self.c) ** (1 / self.k)
        return (BetaPrimeCDFInv(u, self.shape["alpha"], self.shape["beta"]) / self.c) ** (1 / self.k)

    def density(self, x) -> sp.Expr:
        """The density of R at x."""
        k, c = self.k, self.c
        if self.kind == "gamma":
            a = self.shape["a"]
            return k * c ** a * x ** (k * a - 1) * sp.exp(-c * x ** k) / sp.gamma(a)
        alpha, beta = self.shape["alpha"], self.shape["beta"]
        z = c * x ** k
        return k * z ** alpha / (x * (1 + z) ** (alpha + beta) * sp.beta(alpha, beta))


def symbolic_law(profile: Profile, n) -> SymbolicLaw | None:
    """The :class:`SymbolicLaw` of a parsed profile in dimension n (a power or log-power profile), or None."""
    if isinstance(profile, PowerProfile):
        return SymbolicLaw("gamma", profile.c, profile.k, a=(n - profile.j) / profile.k)
    if isinstance(profile, LogPowerProfile):
        return SymbolicLaw("betaprime", profile.c, profile.k, alpha=n / profile.k, beta=profile.a - n / profile.k)
    return None


@dataclass
class GammaSpec:
    """gamma_u = S * M, symbolically. sign: ("sparse", w) | ("sum", d) | ("sphere", d) | ("normal", None).
    M: the constant ``m``, or |h(R)| with ``h`` in r and R ~ ``law`` in dimension ``n``."""

    sign: tuple
    m: sp.Expr | None = None
    h: sp.Expr | None = None
    law: SymbolicLaw | None = None
    n: object = None
    tight: bool = False  # the pair's bound is known to be tight (Theorem M.1: iid, phi convex, l1)


@dataclass
class ClosedForm:
    """A closed-form radius at lam = 1 (in :data:`rho`) and Phi (in :data:`p`)."""

    radius: sp.Expr
    Phi: sp.Expr
    tight: bool
    rule: str
    rho_max: sp.Expr | None = None  # the formula holds for rho <= rho_max (None: all of (1/2, 1])
    assumptions: tuple = ()  # conditions sympy could not decide, assumed by derive_symbolic


def _is_true(expr) -> bool:
    return bool(expr is True or expr == sp.true)


class _Hypotheses:
    """Checks the hypotheses of a rule: decided by sympy, or (when ``assume``) recorded as assumed."""

    def __init__(self, assume: bool):
        self.assume, self.assumed = assume, []

    def holds(self, decided, statement: str) -> bool:
        if decided is True:
            return True
        if decided is None and self.assume:
            self.assumed.append(statement)
            return True
        return False


def closed_form(spec: GammaSpec, assume: bool = False) -> ClosedForm | None:
    """The first rule of the module docstring that applies to ``spec``, or None.

    With ``assume=True`` (symbolic parameters), hypotheses sympy cannot decide are assumed and
    listed in :attr:`ClosedForm.assumptions`; otherwise they must be proved.
    """
    form = _first_rule(spec, assume)
    if form is not None and spec.tight:
        form.tight = True
    return form


def _first_rule(spec: GammaSpec, assume: bool) -> ClosedForm | None:
    kind, value = spec.sign
    if spec.m is not None:
        return _constant_magnitude(kind, value, spec.m)
    if spec.h is None or spec.law is None:
        return None
    hyp = _Hypotheses(assume)
    h = spec.h
    if kind == "sparse" and value != sp.Rational(1, 2):
        law = spec.law
        if not (hyp.holds(h.is_nonnegative, f"{h} >= 0")
                and hyp.holds(law.inverse_moment_condition().is_positive,
                              f"{law.inverse_moment_condition()} > 0 (E[1/R] finite)")):
            return None
        w = value
        mean = (spec.n - 1) * law.moment(-1)  # E g'(R) = (n - 1) E[1/R] (Lemma U.4, by parts)
        return ClosedForm((rho - sp.Rational(1, 2)) / (w * mean), w * mean, False,
                          "Phi = w E g'(R) = w (d-1) E[1/R] on [w, 1/2] (Theorems N.2, O.1)", rho_max=1 - w,
                          assumptions=tuple(hyp.assumed))
    if kind == "sparse" and spec.n == 1 and spec.law.kind == "gamma":
        if not (hyp.holds(h.is_nonnegative, f"{h} >= 0")
                and hyp.holds(sp.diff(h, r_symbol).is_nonnegative, f"{h} nondecreasing")):
            return None
        x = spec.law.quantile(1 - 2 * p)
        return ClosedForm(spec.law.quantile(2 * rho - 1), spec.law.density(x) / 2, True,
                          "iid, phi convex: Lemma G.7 integrand f/T = 1, R = CDF^{-1}(rho) (Theorem M.1)",
                          assumptions=tuple(hyp.assumed))
    return None


def _constant_magnitude(kind: str, value, m: sp.Expr) -> ClosedForm | None:
    """Rules for gamma = m S: Phi = m Phi_S and R = R_S / m, with the Lemma G.7 integral of S."""
    if kind == "normal":
        z = NormalQuantile(1 - p)
        return ClosedForm(NormalQuantile(rho) / m, m * sp.exp(-z ** 2 / 2) / sp.sqrt(2 * sp.pi), True,
                          "gamma Gaussian: Lemma G.7 integrand 1 (Theorem H.1)")
    if kind == "sparse" and value == sp.Rational(1, 2):
        return ClosedForm(sp.log(1 / (2 * (1 - rho))) / m, m * p, False,
                          "gamma = +-m Rademacher: Phi = m p (Theorems I.1, N.4)")
    if kind == "sparse":
        w = value
        radius = sp.Piecewise(((rho - sp.Rational(1, 2)) / (w * m), rho <= 1 - w),
                              ((sp.Rational(1, 2) - w) / (w * m) + sp.log(w / (1 - rho)) / m, True))
        return ClosedForm(radius, m * sp.Min(p, w), False,
                          "gamma = +-m w.p. w, else 0: Phi = m min(p, w) (Theorem N.1)")
    if kind == "sphere":
        d = value
        a = (d - 1) / 2
        # 1 - c^2 = 4 x - 4 x^2, c = 1 - 2x, x = I^{-1}(a, a, p): no cancellation as p -> 0 (c -> 1);
        # an Add, so that sympy keeps 4^a (~10^924 at d = 3072) inside the power
        x = BetaIncInv(a, a, p)
        ratio = sp.gamma(d / 2, evaluate=False) / sp.gamma(a, evaluate=False)  # unevaluated: d may be huge
        Phi = m * ratio / ((d - 1) * sp.sqrt(sp.pi)) * (4 * x - 4 * x ** 2) ** a
        # atanh(1 - 2x) = log((1 - x) / x) / 2 and 1 - I^{-1}(a, a, y) = I^{-1}(a, a, 1 - y) (symmetry of
        # Beta(a, a)): no 1 - 2x that rounds to 0 near rho = 1 (x ~ (1 - rho)^(1/a) underflows 1 - 2x)
        radius = (d - 1) / m * sp.log(BetaIncInv(a, a, rho) / BetaIncInv(a, a, 1 - rho)) / 2
        return ClosedForm(radius, Phi, False,
                          "gamma = m (2 Beta((d-1)/2, (d-1)/2) - 1): integrand (d-1)/(1-c^2) (Theorem R.1)")
    return None
