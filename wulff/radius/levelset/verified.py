"""Verified mode of the level-set certificates: the Neyman-Pearson radius at one rho, in mpmath.

Theorem T.1 at unit scale (notation of :mod:`.table`): for a radius eps and a level t > 0,

    p0(eps, t) = E_R [1 - W_d(R, s0(R), eps)],   g(s0) = g(R) - t   (0 where no such s0 exists),
    p1(eps, t) = E_R W_d(R, s1(R), eps),          g(s1) = g(R) + t,

with W_d(r, s, eps) = I_x((d-1)/2, (d-1)/2), x = ((r + eps)^2 - s^2) / (4 eps r) clipped to [0, 1]
(Lemma U.1) and R from the radius law of Lemma U.3, density ∝ r^(d-1) exp(-g(r)). Both decrease
in t. If p1(eps, t) <= 1/2 and p0(eps, t) >= 1 - rho for one t, the worst set of mass 1 - rho is a
Neyman-Pearson set of level t' >= t, whose shifted mass is p1(eps, t') <= 1/2: eps is certified at
rho (Algorithm 1 read at one rho instead of a table; the float path rounds rho down to its table).

:class:`VerifiedLevelSet` computes, independently of the float table: the exact sympy profile g and
its derivative, s0 and s1 by safeguarded Newton steps in mpmath, the radius density normalised by
quadrature, and mpmath's regularized incomplete Beta function. It finds eps by secant steps on
log eps (each with an inner secant on log t for p1 = 1/2), backs eps off by a relative
:data:`BACKOFF`, and then checks both inequalities at ``dps`` digits with the quadrature error
added in the safe direction: the returned eps is certified by that check.

What is estimated, exactly: a quadrature's error is mpmath's own estimate (pieces split at the
quantiles of R and at every kink of the integrand: where x reaches 0 or 1 and where s0 stops
existing); the check adds ten times that estimate, and 10^(8 - dps) of the value for rounding in
the integrand. Stated bound: when the first check passes (the usual case) the value is within
:data:`BACKOFF` (1e-10) relative, plus the secant's stopping tolerance (1e-13), of the exact
Neyman-Pearson radius: well within 1e-9. A failed check backs off further (1e-9, 1e-8, 1e-7 relative);
if all fail, the float table's value is returned (sound by its own margins, :mod:`.table`).
"""
from __future__ import annotations

import functools
import math

import mpmath
import numpy as np
import sympy as sp

from wulff.distributions import Radial
from wulff.distributions.symbols import r as r_symbol

from .shifts import shift_of
from .table import GrowthFunction, initial_half_nodes, tangent_slope

#: the verified radius is the solved one times 1 - BACKOFF (slack for the final check)
BACKOFF = 1e-13
#: working precision of the search for eps and t (the final check runs at dps + 10)
SEARCH_DPS = 20
#: further relative back-offs tried when the final check fails
RETRIES = (1e-11, 1e-9, 1e-7)
#: probabilities of R whose quantiles split the quadrature (the bulk and the tails)
_SPLIT_PROBABILITIES = (1e-12, 1e-6, 1e-3, 0.05, 0.25, 0.5, 0.75, 0.95)
#: grid points (between the splits) on which the kinks of the integrand are looked for
_KINK_GRID = 48


def _round_down(x: mpmath.mpf) -> float:
    value = float(x)
    return math.nextafter(value, -math.inf) if mpmath.mpf(value) > x else value


class VerifiedLevelSet:
    """The Neyman-Pearson radius of a Radial(g, 2) form at one rho, in mpmath (see the module)."""

    def __init__(self, radial: Radial, fallback, dps: int = 40):
        if dps < 30:
            raise ValueError(f"dps must be >= 30; got {dps}")
        self.d, self.dps, self._fallback = int(radial.d), dps, fallback
        self._alpha = mpmath.mpf(self.d - 1) / 2
        self._g = sp.lambdify(r_symbol, radial.g, "mpmath")
        self._dg = sp.lambdify(r_symbol, sp.diff(radial.g, r_symbol), "mpmath")
        self._inverse = _closed_inverse(radial.g)
        self._method = "tanh-sinh"  # mpmath.quad's rule (its error estimate is what the check adds)
        self._growth = GrowthFunction(shift_of(radial), radial.radius_law, self.d, initial_half_nodes(self.d))
        self._slope = tangent_slope(radial.radius_law, self.d)
        law = radial.radius_law
        quantiles = [float(law.ppf(u)) for u in _SPLIT_PROBABILITIES] + \
            [float(law.isf(u)) for u in _SPLIT_PROBABILITIES[:4]]
        self._splits = sorted({math.log(q) for q in quantiles if q > 0 and math.isfinite(q)})
        with mpmath.workdps(dps + 10):
            self._g0 = self._g(mpmath.mpf(10) ** -(dps + 20))  # g(0+) up to the working precision
            ys = [mpmath.mpf(y) for y in self._splits]
            self._shift = max(self.d * y - self._g(mpmath.exp(y)) for y in ys)
            self._norm = self._integral(lambda y: mpmath.mpf(1), [])

    # -- the integrands -----------------------------------------------------------------------------
    def _density(self, y):
        """Density of Y = log R relative to its peak (0 far out, where exp would need huge numbers)."""
        if abs(y) > 10 ** 4:
            return mpmath.mpf(0)
        value = self.d * y - self._g(mpmath.exp(y)) - self._shift
        return mpmath.exp(value) if value > -10 ** 5 else mpmath.mpf(0)

    def _level(self, r, target):
        """s > 0 with g(s) = target (g increasing), or None when target <= g(0+): the inverse of g
        when sympy finds it in closed form (checked at the working precision), else Newton steps."""
        if target <= self._g0:
            return None
        if self._inverse is not None:
            s = self._inverse(target)
            if mpmath.isfinite(s) and s > 0 and abs(self._g(s) - target) <= \
                    mpmath.mpf(2) ** (-mpmath.mp.prec + 16) * (abs(target) + 1):
                return s
        return self._newton(r, target)

    def _newton(self, r, target):
        """s with g(s) = target by Newton steps from the tangent at r, safeguarded by bisection."""
        lo, hi = mpmath.mpf(0), r
        while self._g(hi) < target:
            lo, hi = hi, 2 * hi
        slope = self._dg(r)
        first = r + (target - self._g(r)) / slope if slope > 0 else hi  # the tangent step from r
        s = first if lo < first < hi else (lo + hi) / 2
        tol = mpmath.mpf(2) ** (-mpmath.mp.prec + 8)
        for _ in range(200):
            f = self._g(s) - target
            if f > 0:
                hi = s
            else:
                lo = s
            slope = self._dg(s)
            step = f / slope if slope > 0 else None
            new = s - step if step is not None and lo < s - step < hi else (lo + hi) / 2
            if abs(new - s) <= tol * s or hi - lo <= tol * hi:
                return new
            s = new
        return s

    def _argument(self, r, eps, t, sign):
        """x of W_d for s1 (sign +1) or s0 (sign -1), unclipped; None where s0 does not exist."""
        s = self._level(r, self._g(r) + sign * t)
        return None if s is None else ((r + eps) ** 2 - s * s) / (4 * eps * r)

    def _state(self, y, eps, t, sign) -> int:
        """Which piece of the integrand y is on: 0 no s, 1 x <= 0, 2 inside, 3 x >= 1."""
        x = self._argument(mpmath.exp(y), eps, t, sign)
        return 0 if x is None else 1 if x <= 0 else 3 if x >= 1 else 2

    def _value(self, y, eps, t, sign):
        """W_d(r, s1) for sign +1, 1 - W_d(r, s0) for sign -1 (I_{1-x} by the symmetry of Beta(a, a))."""
        x = self._argument(mpmath.exp(y), eps, t, sign)
        if x is None:
            return mpmath.mpf(0)
        x = x if sign > 0 else 1 - x
        if x <= 0:
            return mpmath.mpf(0)
        if x >= 1:
            return mpmath.mpf(1)
        return mpmath.betainc(self._alpha, self._alpha, 0, x, regularized=True)

    # -- quadrature ---------------------------------------------------------------------------------
    def _kinks(self, eps, t, sign) -> list:
        """The y where the integrand's piece changes (bisection to the working precision)."""
        lo, hi = self._splits[0] - 4.0, self._splits[-1] + 4.0
        grid = [mpmath.mpf(y) for y in np.linspace(lo, hi, _KINK_GRID)]
        states = [self._state(y, eps, t, sign) for y in grid]
        out = []
        for a, b, sa, sb in zip(grid[:-1], grid[1:], states[:-1], states[1:]):
            if sa == sb:
                continue
            for _ in range(int(3.4 * mpmath.mp.dps) + 10):
                mid = (a + b) / 2
                if self._state(mid, eps, t, sign) == sa:
                    a = mid
                else:
                    b = mid
            out.append((a + b) / 2)
        return out

    def _integral(self, weight, kinks):
        """(int weight(y) density(y) dy, mpmath's error estimate) over the real line, in pieces."""
        points = sorted({mpmath.mpf(y) for y in self._splits} | set(kinks))
        grid = [mpmath.ninf] + points + [mpmath.inf]
        value = error = mpmath.mpf(0)
        for a, b in zip(grid[:-1], grid[1:]):
            v, e = mpmath.quad(lambda y: self._weighted(weight, y), [a, b], error=True, method=self._method)
            value, error = value + v, error + e
        return value, error

    def _weighted(self, weight, y):
        density = self._density(y)
        return density * weight(y) if density else density

    def probability(self, eps, t, sign, bound: int = 0):
        """p1 (sign +1) or p0 (sign -1) at (eps, t): the estimate (bound 0), an upper bound (+1) or a
        lower bound (-1) with ten times the quadrature's error estimates and 10^(8 - dps) rounding."""
        value, error = self._integral(lambda y: self._value(y, eps, t, sign), self._kinks(eps, t, sign))
        norm, norm_error = self._norm
        if bound == 0:
            return value / norm
        widen = mpmath.mpf(10) ** (8 - self.dps)
        if bound > 0:
            return (value + 10 * error) / (norm - 10 * norm_error) * (1 + widen) + widen
        return max((value - 10 * error) / (norm + 10 * norm_error) * (1 - widen) - widen, mpmath.mpf(0))

    # -- the search ---------------------------------------------------------------------------------
    def _level_for(self, eps):
        """log t with p1(eps, t) = 1/2 by secant steps (p1 decreases in t), started from the float
        table's solver (:meth:`.table.GrowthFunction.solve_half`: a guess only)."""
        guess = float(self._growth.solve_half(np.array([float(eps)]), np.array([self._guess(float(eps))]))[0])
        f = lambda v: self.probability(eps, mpmath.exp(v), +1) - mpmath.mpf(1) / 2
        u = mpmath.mpf(guess)
        return _secant(f, u, u + mpmath.mpf(1e-7) * max(1, abs(guess)), 1e-15)

    def _guess(self, eps: float) -> float:
        slope = self._slope
        return 2 * math.log(eps) + (math.log(math.pi * slope ** 2) if math.isfinite(slope) else 0.0)

    def _searched(self, solve, lost: int):
        """solve() at the search precision with Gauss-Legendre quadrature (fast on the smooth pieces;
        the search needs no error estimate: the final check decides)."""
        with mpmath.workdps(SEARCH_DPS + lost):
            self._method = "gauss-legendre"
            try:
                return solve()
            finally:
                self._method = "tanh-sinh"

    def radius_unit(self, rho: float, dps: int | None = None) -> float:
        """A lower bound on the Neyman-Pearson radius at lam = 1 (0 for rho <= 1/2, inf at 1)."""
        rho = float(rho)
        if rho <= 0.5:
            return 0.0
        if rho >= 1.0:
            return math.inf  # full support: a q-null set is null under every shift
        dps = self.dps if dps is None else max(int(dps), self.dps)
        start = float(self._fallback(rho))
        # g(R) + t and the argument x of W_d cancel about 2 log10(1 / eps) digits for a small eps
        lost = 2 * max(0, math.ceil(-math.log10(rho - 0.5)))
        with mpmath.workdps(dps + 10 + lost):
            tail = 1 - mpmath.mpf(rho)

            def excess(log_eps):  # log p0 - log(1 - rho) at the level where p1 = 1/2: decreasing
                eps = mpmath.exp(log_eps)
                t = mpmath.exp(self._level_for(eps))
                return mpmath.log(self.probability(eps, t, -1)) - mpmath.log(tail)

            log_eps = self._searched(lambda: _secant(excess, mpmath.log(start), mpmath.log(start)
                                                     + mpmath.mpf("0.004"), 1e-15), lost)
            for backoff in (BACKOFF, *RETRIES):
                eps = mpmath.exp(log_eps) * (1 - mpmath.mpf(backoff))
                u = self._searched(functools.partial(self._level_for, eps), lost) + mpmath.mpf(backoff) / 100
                t = mpmath.exp(u)
                if self.probability(eps, t, +1, +1) <= mpmath.mpf(1) / 2 and \
                        self.probability(eps, t, -1, -1) >= tail:
                    return _round_down(eps)
        return start


def _secant(f, x0, x1, tol: float, steps: int = 40):
    """A root of f by secant steps from x0, x1 (stops when a step is below tol relative)."""
    f0, f1 = f(x0), f(x1)
    for _ in range(steps):
        if f1 == f0:
            break
        x2 = x1 - f1 * (x1 - x0) / (f1 - f0)
        if abs(x2 - x1) <= tol * max(abs(x2), 1):
            return x2
        x0, f0, x1, f1 = x1, f1, x2, f(x2)
    return x1


def _closed_inverse(g: sp.Expr):
    """g^(-1) as an mpmath function when sympy solves g(r) = v for one positive branch, else None."""
    value = sp.Symbol("v", positive=True)
    radius = sp.Symbol("r", positive=True)
    try:
        roots = sp.solve(sp.Eq(g.subs(r_symbol, radius), value), radius)
    except (NotImplementedError, ValueError, TypeError):
        return None
    return sp.lambdify(value, roots[0], "mpmath") if len(roots) == 1 else None


class LevelSetVerifier:
    """The ``verified_unit`` of a level-set certificate: ``(rho, dps) -> a lower bound on the unit
    Neyman-Pearson radius``, building its :class:`VerifiedLevelSet` on the first call (the float
    path never pays for it). ``fallback(rho)`` is the float table's unit radius."""

    method = "mpmath Neyman-Pearson radius (Theorem T.1)"

    def __init__(self, radial: Radial, fallback):
        self.radial, self.fallback = radial, fallback
        self._verified: dict[int, VerifiedLevelSet] = {}

    def __call__(self, rho: float, dps: int = 40) -> float:
        if dps not in self._verified:
            self._verified[dps] = VerifiedLevelSet(self.radial, self.fallback, dps)
        return self._verified[dps].radius_unit(rho)
