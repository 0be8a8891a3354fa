"""The magnitude M = |h(R)| of gamma_u = S * h(R): its stop-loss transform E(M - t)_+, tail and mean.

Every row of the table "The laws of gamma_u" in docs/design.md factors gamma_u = S * h(R) with S a
symmetric "sign" independent of R (a Rademacher sign, the sparse sign of the linf radial law, a sum
of signs, a sphere coordinate) and h = g' the derivative of the profile (phi' for iid laws,
R = |X_1| then). Since S is symmetric, gamma has the law of S * |h(R)|, so only M = |h(R)| >= 0
matters.

:class:`ProfileMagnitude` integrates numerically over the radius law (Lemma U.3): the support is
cut into cells (quantiles of R, plus the critical points of h so that |h| is monotone on each cell)
and Gauss-Legendre quadrature in y = log r gives the mass and E[M; cell] of every cell. Then

    E(M - t)_+ = sum over the cells above t of (E[M; cell] - t P[cell]) + a partial cell,

with the crossing point located by bisection (|h| is monotone on a cell). Cells are halved until
the quadrature agrees with itself on the halves, and that difference is added as the cell's error
estimate. Mass beyond the outer cells is bounded by adaptive quadrature and added, so the stop-loss
values are upper bounds.
"""
from __future__ import annotations

import math
from functools import cached_property

import numpy as np
import sympy as sp
from scipy import integrate

from wulff.distributions import BallRadiusLaw, BetaPrimePowerLaw, GammaPowerLaw, RadiusLaw
from wulff.distributions import r as r_symbol
from wulff.expressions import as_expression
from wulff.special import lambdify_numpy

#: Gauss-Legendre rule used on every cell (exact for polynomials of degree 31)
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(16)
#: lines are placed only where the tail probability exceeds this (far above the lost mass)
P_FLOOR = 1e-200
#: a cell is halved while its two quadratures differ by more than this share of it
#: (:meth:`ProfileMagnitude._refined_cells`), at most MAX_REFINEMENTS times, up to MAX_CELLS cells
CELL_TOLERANCE = 1e-9
MAX_REFINEMENTS = 40
MAX_CELLS = 20000
#: an error estimate this small is never refined (underflowing densities are noise at 1e-308; the
#: lines stop at P_FLOOR, far above)
NEGLIGIBLE = 1e-250


class ConstantMagnitude:
    """M = m almost surely (h constant: Laplace, Exp l_inf / l_1 / l_2 with k = 1)."""

    def __init__(self, m: float, expr: sp.Expr | None = None):
        if not (m > 0 and math.isfinite(m)):
            raise ValueError(f"the magnitude |h| must be a positive finite constant; got {m}")
        self.m = float(m)
        self.expr = sp.sympify(m) if expr is None else expr

    is_constant = True

    @property
    def sup(self) -> float:
        """m, rounded up when the float m is below the exact value (the line (sup, 0) needs >=)."""
        exact = self.expr
        if exact.has(sp.Float) or not exact.is_number or bool(sp.Rational(self.m) < exact):
            return math.nextafter(self.m, math.inf)
        return self.m

    @property
    def mean(self) -> float:
        return self.m

    def stop_loss(self, t) -> np.ndarray:
        return np.maximum(self.m - np.asarray(t, dtype=float), 0.0)

    def sf(self, t) -> np.ndarray:
        return (np.asarray(t, dtype=float) < self.m).astype(float)

    def isf(self, q) -> np.ndarray:
        return np.full(np.shape(q), self.m)

    tail_integral_diverges = True  # Phi_M(q) = m q

    @property
    def value_range(self) -> tuple[float, float]:
        return self.m, self.m

    def two_point_atoms(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array([self.m]), np.array([1.0])


def _tail_quantiles(tail, u: np.ndarray, guess: np.ndarray, upper: bool) -> np.ndarray:
    """x with tail(x) = u (tail = cdf for the lower tail, sf for the upper), where the law's own
    quantile ``guess`` is off by more than a factor 2 in probability (an inverse that rounds 1 - u to
    1 far in a tail, e.g. the inverse Beta of a BetaPrime with d = 150528): those are found again by
    bisection in log x on ``tail`` itself. Only cell boundaries: accuracy affects tightness, not
    soundness (the cells' quadrature is checked by :meth:`ProfileMagnitude._refined_cells`)."""
    x = np.array(guess, dtype=float)
    with np.errstate(all="ignore"):
        found = np.asarray(tail(x), dtype=float)
        bad = ~(np.isfinite(x) & (x > 0) & (np.abs(np.log(found / u)) <= math.log(2.0)))
    if not bad.any():
        return x
    lo, hi = np.full(int(bad.sum()), -_LOG_X_LIMIT), np.full(int(bad.sum()), _LOG_X_LIMIT)
    target = u[bad]
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        with np.errstate(all="ignore"):
            beyond = np.asarray(tail(np.exp(mid)), dtype=float) > target  # cdf above u: x is too big
        if upper:  # sf above u: x is too small
            lo, hi = np.where(beyond, mid, lo), np.where(beyond, hi, mid)
        else:
            lo, hi = np.where(beyond, lo, mid), np.where(beyond, mid, hi)
    x[bad] = np.exp(0.5 * (lo + hi))
    return x


#: |log x| bracket and steps of :func:`_tail_quantiles` (a resolution of 1400 / 2^64 in log x)
_LOG_X_LIMIT, _BISECTION_STEPS = 700.0, 64


def _quantile_boundaries(law: RadiusLaw) -> np.ndarray:
    """Cell boundaries of R: quantiles fine in the bulk and the near tails, coarse in the far tails."""
    if isinstance(law, (GammaPowerLaw, BetaPrimePowerLaw)):
        u = np.unique(np.concatenate([np.geomspace(1e-300, 1e-16, 71)[:-1], np.geomspace(1e-16, 0.5, 301),
                                      np.linspace(0.01, 0.5, 50)]))
        x = np.concatenate([_tail_quantiles(law.cdf, u, law.ppf(u), upper=False),
                            _tail_quantiles(law.sf, u, law.isf(u), upper=True)])
    elif isinstance(law, BallRadiusLaw):
        x = np.asarray(law.ppf(np.linspace(0.0, 1.0, 801)[1:]), dtype=float)
    else:  # numeric law: its tabulated window holds all but ~e^-60 of the mass
        y, cdf = law._table
        u = np.concatenate([np.geomspace(1e-25, 0.5, 300), 1 - np.geomspace(1e-25, 0.5, 300)])
        x = np.exp(np.concatenate([np.linspace(y[0], y[-1], 200), np.interp(u, cdf, y)]))
    x = x[np.isfinite(x) & (x > 0)]
    return np.unique(x)


class ProfileMagnitude:
    """M = |h(R)| for a sympy expression h in r and a radius law of R (see the module docstring)."""

    is_constant = False

    def __init__(self, h: sp.Expr, law: RadiusLaw):
        self.expr = as_expression(h, {"r": r_symbol}, what="h")  # a string through the restricted parser
        self.law = law
        self._signed = lambdify_numpy(r_symbol, self.expr)
        self._dh = lambdify_numpy(r_symbol, sp.diff(self.expr, r_symbol))
        self._build_cells()

    # -- construction ----------------------------------------------------------------------------
    def h(self, x) -> np.ndarray:
        """|h(x)| (numpy)."""
        x = np.asarray(x, dtype=float)
        with np.errstate(all="ignore"):
            return np.abs(np.broadcast_to(np.asarray(self._signed(x), dtype=float), x.shape))

    def _density_y(self, y) -> np.ndarray:
        """Density of log R at y: f(e^y) e^y."""
        y = np.asarray(y, dtype=float)
        with np.errstate(all="ignore"):
            out = np.exp(self.law.logpdf(np.exp(y)) + y)
        return np.where(np.isfinite(out), out, 0.0)

    def _sign_changes(self, fn, probe: np.ndarray) -> list[float]:
        """Roots of fn between consecutive probe points where it changes sign (bisection)."""
        roots = []
        with np.errstate(all="ignore"):  # fn may overflow at extreme radii: only its sign matters
            values = np.broadcast_to(np.asarray(fn(probe), dtype=float), probe.shape)
            s = np.sign(values)
            for i in np.nonzero((s[:-1] * s[1:]) < 0)[0]:
                lo, hi, slo = probe[i], probe[i + 1], s[i]
                for _ in range(100):
                    mid = 0.5 * (lo + hi)
                    if np.sign(float(fn(mid))) == slo:
                        lo = mid
                    else:
                        hi = mid
                roots.append(0.5 * (lo + hi))
        return roots

    def _build_cells(self) -> None:
        x = _quantile_boundaries(self.law)
        probe = np.sort(np.concatenate([x, np.sqrt(x[:-1]) * np.sqrt(x[1:])]))  # geometric means, no overflow
        critical = self._sign_changes(self._dh, probe) + self._sign_changes(self._signed, probe)
        x = np.unique(np.concatenate([x, critical]))
        self.y, self.mass, self.moment, self.error = self._refined_cells(np.log(x))
        self.values = self.h(np.exp(self.y))  # |h| at the boundaries; monotone on each cell
        self.lost_mass, self.lost_moment = self._outer_tails(self.y[0], self.y[-1])
        if not math.isfinite(self.lost_moment) or not math.isfinite(self.moment.sum()):
            raise NotImplementedError(f"E|h(R)| is infinite for h = {self.expr} under {self.law.describe()}")
        self._runs = self._monotone_runs()

    def _cell_integrals(self, ya: np.ndarray, yb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(P[cell], E[M; cell]) of the cells [ya, yb] in y = log r, by 16-node Gauss-Legendre."""
        mid, half = 0.5 * (yb + ya), 0.5 * (yb - ya)
        nodes = mid[:, None] + half[:, None] * _NODES[None, :]
        dens = self._density_y(nodes) * (half[:, None] * _WEIGHTS[None, :])
        return dens.sum(axis=1), (dens * self.h(np.exp(nodes))).sum(axis=1)

    def _refined_cells(self, y: np.ndarray) -> tuple[np.ndarray, ...]:
        """(boundaries, masses, moments, error estimates) of cells on which 16-node Gauss-Legendre
        agrees with the same rule on the two halves: a cell where they differ by more than
        :data:`CELL_TOLERANCE` of its share (plus :data:`NEGLIGIBLE`) is halved, and so on (at most
        :data:`MAX_REFINEMENTS` rounds, until :data:`MAX_CELLS`; the tolerance sits above the noise of
        a density whose logarithm is a difference of terms near 10^6 at d = 150528). The halves' values
        are kept; the error estimate of a cell is
        |Delta moment| + sup|h| |Delta mass| (what a stop-loss term E[M - t; cell], t <= sup|h|,
        can be off by), and :meth:`stop_loss` adds it. A cell boundary set too coarse where the
        density is sharp (a radius law at d = 150528 puts all its mass in a few percent of r) can
        no longer hide mass from the quadrature."""
        for refinement in range(MAX_REFINEMENTS + 1):
            ya, yb = y[:-1], y[1:]
            mid = 0.5 * (ya + yb)
            coarse_mass, coarse_moment = self._cell_integrals(ya, yb)
            left_mass, left_moment = self._cell_integrals(ya, mid)
            right_mass, right_moment = self._cell_integrals(mid, yb)
            mass, moment = left_mass + right_mass, left_moment + right_moment
            with np.errstate(all="ignore"):
                top = np.nan_to_num(np.maximum(self.h(np.exp(ya)), self.h(np.exp(yb))), posinf=0.0)
                error = np.abs(coarse_moment - moment) + top * np.abs(coarse_mass - mass)
                coarse = error > CELL_TOLERANCE * (moment + top * mass) + NEGLIGIBLE
            if refinement == MAX_REFINEMENTS or not coarse.any() or y.size > MAX_CELLS:
                break
            y = np.unique(np.concatenate([y, mid[coarse]]))
        return y, mass, moment, error

    def _outer_tails(self, y_lo: float, y_hi: float) -> tuple[float, float]:
        """Upper bounds on P and E[M; .] outside [e^y_lo, e^y_hi], by adaptive quadrature + its error."""
        def mass_density(y):
            v = float(self._density_y(y))
            return v if math.isfinite(v) else 0.0

        def moment_density(y):
            density = mass_density(y)
            if density == 0.0:
                return 0.0
            with np.errstate(over="ignore"):
                v = density * float(self.h(np.exp(y)))
            return v if math.isfinite(v) else 0.0

        totals = []
        for fn in (mass_density, moment_density):
            total = 0.0
            for a, b in ((-np.inf, y_lo), (y_hi, np.inf)):
                val, err = integrate.quad(fn, a, b, limit=200)
                total += abs(val) + abs(err)
            totals.append(total)
        return totals[0], totals[1]

    def _monotone_runs(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Maximal runs of cells on which |h| is monotone, oriented so that |h| increases with index.

        Each run: (boundary values v, y-boundaries, suffix masses, suffix moments).
        """
        step = np.sign(np.diff(self.values))
        direction = np.where(step == 0, 1.0, step)  # flat cells join increasing runs
        cuts = np.concatenate([[0], np.nonzero(np.diff(direction) != 0)[0] + 1, [len(step)]])
        runs, self._run_errors = [], []
        for a, b in zip(cuts[:-1], cuts[1:]):
            vb, yb = self.values[a:b + 1], self.y[a:b + 1]
            mass, mom, err = self.mass[a:b], self.moment[a:b], self.error[a:b]
            if direction[a] < 0:
                vb, yb, mass, mom, err = vb[::-1], yb[::-1], mass[::-1], mom[::-1], err[::-1]
            suffix_mass = np.concatenate([np.cumsum(mass[::-1])[::-1], [0.0]])
            suffix_mom = np.concatenate([np.cumsum(mom[::-1])[::-1], [0.0]])
            runs.append((np.maximum.accumulate(vb), yb, suffix_mass, suffix_mom))
            self._run_errors.append((err, np.concatenate([np.cumsum(err[::-1])[::-1], [0.0]])))
        return runs

    # -- summaries ----------------------------------------------------------------------------------
    @cached_property
    def sup(self) -> float:
        """ess sup M: finite when |h| has finite limits at both ends of the support."""
        ends = []
        for point, side in ((0, "+"), (sp.oo, "-")):
            try:
                lim = sp.limit(sp.Abs(self.expr), r_symbol, point, side)
                ends.append(float(lim))  # an AccumBounds (oscillation) or a symbol fails here
            except (NotImplementedError, ValueError, TypeError):
                return math.inf
            if not math.isfinite(ends[-1]):
                return math.inf
        return float(max(np.max(self.values), *ends))

    @cached_property
    def tail_integral_diverges(self) -> bool:
        """Whether int_0 dq / Phi_M(q) = inf (so the radius is infinite at rho = 1), proved here when
        M is bounded, or when |h| = h = g' grows to its supremum as r -> inf and either the law is
        one-dimensional (T(x) = E[g'(R); R > x] = f(x), so the Lemma G.7 integrand f/T is 1) or
        its hazard rate times x stays bounded below (Gamma and Beta Prime power laws), since then
        f/T >= 1 / (1 + (d - 1) sf(x) / (x f(x))) is bounded below as x -> inf."""
        if math.isfinite(self.sup):
            return True
        try:  # |h| must stay bounded as r -> 0+, so that the top of M comes from r -> inf only
            near_zero = sp.limit(sp.Abs(self.expr), r_symbol, 0, "+")
            far = sp.limit(self.expr, r_symbol, sp.oo, "-")
        except (NotImplementedError, ValueError, TypeError):
            return False
        if near_zero.is_finite is not True or far != sp.oo:
            return False
        return self.law.d == 1 or isinstance(self.law, (GammaPowerLaw, BetaPrimePowerLaw))

    @property
    def mean(self) -> float:
        """Upper bound on E M (quadrature + outer tails)."""
        return float(self.moment.sum() + self.lost_moment)

    # -- stop-loss and tail ---------------------------------------------------------------------------
    def _partial(self, ya, yb, t) -> np.ndarray:
        """int over [ya, yb] (in y) of (|h| - t) f, by Gauss-Legendre."""
        mid, half = 0.5 * (ya + yb), 0.5 * (yb - ya)
        nodes = mid[:, None] + half[:, None] * _NODES[None, :]
        w = self._density_y(nodes) * (half[:, None] * _WEIGHTS[None, :])
        return np.maximum((w * (self.h(np.exp(nodes)) - t[:, None])).sum(axis=1), 0.0)

    def _crossing(self, ya, yb, t) -> np.ndarray:
        """y between ya and yb with |h(e^y)| = t, |h| monotone there, |h(ya)| <= t (vectorized bisection)."""
        lo, hi = ya.copy(), yb.copy()
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            above = self.h(np.exp(mid)) > t
            hi = np.where(above, mid, hi)
            lo = np.where(above, lo, mid)
        return 0.5 * (lo + hi)

    def stop_loss(self, t) -> np.ndarray:
        """Upper bound on E(M - t)_+ for t >= 0 (vectorized).

        The value is (sums of full cells) - t (their mass) + (the partial cell), which cancels when
        t is close to the top of |h| on the cells it covers (a line far in the tail). Its float64
        rounding error is at most (n + 32) u S, S = (the same sums with + instead of -, and the
        crossing cell's moment and mass), n the number of cells, u = 2^-53 (sums of n nonnegative
        terms, each node value a few ulps off); that is added, together with a relative 1e-12.
        The Gauss-Legendre error of each cell (16 nodes on cells between quantiles of R in log r)
        is *estimated*, not bounded: the difference from the same rule on the cell's halves
        (:meth:`_refined_cells`), added for every cell the sum covers; the verified mode
        (:mod:`.verified`) recomputes the lines in mpmath.
        """
        t = np.asarray(t, dtype=float)
        flat = t.ravel()
        out = np.zeros_like(flat)
        scale = np.zeros_like(flat)
        quadrature = np.zeros_like(flat)  # the cells' quadrature error estimates (_refined_cells)
        for (v, yb, smass, smom), (err, serr) in zip(self._runs, self._run_errors):
            k = np.searchsorted(v, flat, side="right") - 1  # v[k] <= t < v[k+1]: cell k crosses t
            full = np.where(k < 0, 0, np.clip(k + 1, 0, len(v) - 1))
            out += smom[full] - flat * smass[full]
            cross = (k >= 0) & (k < len(v) - 1)
            cell = np.clip(k, 0, len(v) - 2)
            quadrature += serr[full] + np.where(cross, err[cell], 0.0)
            scale += smom[full] + flat * smass[full] + np.where(
                cross, (smom[cell] - smom[cell + 1]) + flat * (smass[cell] - smass[cell + 1]), 0.0)
            if cross.any():
                idx, kk, tt = np.nonzero(cross)[0], k[cross], flat[cross]
                y_star = self._crossing(yb[kk], yb[kk + 1], tt)  # |h| grows from yb[kk] to yb[kk+1]
                a, b = np.minimum(y_star, yb[kk + 1]), np.maximum(y_star, yb[kk + 1])
                out[idx] += self._partial(a, b, tt)
        out += self.lost_moment  # mass beyond the outer cells, counted fully
        rounding = (len(self.mass) + 32) * 2.0 ** -53 * scale
        return (np.maximum(out, 0.0) * (1 + 1e-12) + rounding + quadrature).reshape(t.shape)

    def sf(self, t) -> np.ndarray:
        """Approximate P(M > t) (for placing lines; soundness does not depend on it)."""
        t = np.asarray(t, dtype=float)
        flat = t.ravel()
        out = np.zeros_like(flat)
        for v, _yb, smass, _smom in self._runs:
            k = np.searchsorted(v, flat, side="right") - 1
            kk = np.clip(k, 0, len(v) - 2)
            with np.errstate(over="ignore", invalid="ignore"):  # a huge ratio is clipped to 1 anyway
                frac = np.clip((v[kk + 1] - flat) / np.maximum(v[kk + 1] - v[kk], 1e-300), 0.0, 1.0)
            cell = smass[kk] - smass[kk + 1]
            out += np.where(k < 0, smass[0], np.where(k >= len(v) - 1, 0.0, smass[kk + 1] + frac * cell))
        return out.reshape(t.shape)

    @property
    def value_range(self) -> tuple[float, float]:
        """The smallest positive and the largest value of |h| on the cell boundaries."""
        positive = self.values[self.values > 0]
        return float(positive.min()), float(positive.max())

    def isf(self, q) -> np.ndarray:
        """Approximate t with P(M > t) = q (bisection on :meth:`sf` in log t)."""
        q = np.asarray(q, dtype=float)
        low, high = self.value_range
        lo = np.full_like(q, math.log(low))
        hi = np.full_like(q, math.log(high))
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            above = self.sf(np.exp(mid)) > q
            lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
        return np.exp(0.5 * (lo + hi))

    def two_point_atoms(self, max_cells: int = 300) -> tuple[np.ndarray, np.ndarray]:
        """A discrete law dominating M (restricted to the cells) in the convex order: the mass of a
        cell is split between the smallest and largest value of |h| on it keeping the cell's mean (a
        mean-preserving spread). Consecutive cells of a monotone run are merged down to about
        ``max_cells``. The outer tails are left out: callers add :attr:`lost_moment`."""
        group = max(1, int(math.ceil(len(self.mass) / max_cells)))
        step = np.sign(np.diff(self.values))
        run_start = np.nonzero(np.diff(np.where(step == 0, 1.0, step)) != 0)[0] + 1
        starts = np.unique(np.concatenate([np.arange(0, len(self.mass), group), run_start]))
        ends = np.append(starts[1:], len(self.mass))
        mass = np.add.reduceat(self.mass, starts)
        moment = np.add.reduceat(self.moment, starts)
        lo = np.minimum(self.values[starts], self.values[ends])
        hi = np.maximum(self.values[starts], self.values[ends])
        mean = np.clip(moment / np.maximum(mass, 1e-300), lo, hi)
        width = hi - lo
        w_hi = np.where(width > 0, mass * (mean - lo) / np.where(width > 0, width, 1.0), 0.0)
        values = np.concatenate([lo, hi])
        probs = np.concatenate([mass - w_hi, w_hi])
        keep = probs > 0
        return values[keep], probs[keep]
