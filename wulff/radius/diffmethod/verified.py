"""Verified mode of the envelope certificates: the same lines, their intercepts recomputed in mpmath.

The float certificate of :mod:`.envelope` is R(rho) = int_{1-rho}^{1/2} dp / min_i (c_i p + e_i) with
e_i an upper bound on the stop-loss E(gamma - c_i)_+ computed in float64 (Gauss-Legendre cells for a
profile magnitude). Any lines (c_i, e'_i) with e'_i >= E(gamma - c_i)_+ give a lower bound on the
radius (Theorem G.6 with the Rockafellar-Uryasev lines of Definition G.4), so the verified radius
keeps the float envelope's slopes c_i (exact doubles) and recomputes every e'_i in mpmath at
``dps`` >= 30 digits from the *exact* law, independently of the float code:

* the magnitude M = |h(R)| uses the exact sympy expressions h = g' and the radius density
  ∝ r^(d-1) exp(-g(r)) (Lemma U.3), normalised by quadrature, never the float radius-law classes;
* a constant magnitude whose exact value is not known (a float m) is rounded up one ulp
  (E(S m - c)_+ increases with m for c >= 0);
* the sign laws are exact: w (m - c)_+ for a sparse sign, the binomial sum of Theorem P.2, the
  sphere coordinate's E(S - a)_+ = (1 - a^2)^((d-1)/2) Gamma(d/2) / ((d-1) sqrt(pi) Gamma((d-1)/2))
  - a I_{(1-a)/2}((d-1)/2, (d-1)/2) (Lemma U.1), and m (phi(z) - z Q(z)) for a normal.

What is estimated, exactly: a quadrature's error is mpmath's own estimate (the difference between
the last two tanh-sinh levels, on pieces split at every kink of the integrand: the crossings
|h| = t and the critical points of h); the verified value adds ten times that estimate. Rounding in
the integrand adds at most 10^(8 - dps) times the integral of (|h| + t) over the same set, which is
added too. Every other step (sums, the exact integral of 1 / (c p + e), the final cast) is rounded
in the safe direction. The radius is then int dp / min_i (c_i p + e'_i) over the lines active in the
float envelope on [1 - rho, 1/2] and the line (sup gamma, 0) when sup gamma is known exactly (a
constant magnitude: :meth:`VerifiedStopLoss.sup`), evaluated exactly in mpmath and rounded down to
a double (any set of valid lines is valid).

Stated bound. Let R_lines be the exact radius of those lines with the exact intercepts
E(gamma - c_i)_+. Every intercept is widened by at most 10^(17 - dps) relative (the factor
1 + 10^(5 - dps); ten quadrature error estimates each below 10^(10 - dps) of their piece's
moments, which a difference E[M] - t P cancelling at most five digits turns into 10^(16 - dps) of
the intercept; the rounding term), and min_i (c_i p + e_i (1 + delta)) <= (1 + delta) min_i
(c_i p + e_i), so the verified radius is >= R_lines (1 - 10^(18 - dps)) >= R_lines (1 - 1e-9) for
dps >= 30, given mpmath's error estimates and refinements that reach their tolerance (a piece
whose refinement runs out of its budget keeps its larger estimate: the bound then loosens, never
the soundness; measured:
within 3e-16 at dps = 40, ``benchmarks/verified_ratio.py --exact``). For a discrete law or a
constant magnitude the lines sit at every kink, so R_lines is the exact radius of Theorem G.6 for
the certificate's law (Theorem P.2; the dominating law of a convex-order bound); for a profile
magnitude it lies below that radius by the float envelope's own discretization (Pareto against
l1, d = 2: up to 2.6e-6 near rho = 0.5015), which the float path shares.

Proved bracket (:meth:`VerifiedEnvelope.bracket_unit`, ``Certificate.verified_bracket``). How far
R_lines sits below the exact radius R is bounded by an upper bound on R, from the same kind of
estimates: every stop-loss S(c) = E(gamma - c)_+ also gets a lower bound (the sums with ten error
estimates subtracted, the rounding term subtracted, the normaliser taken high), at the envelope's
slopes, 0 and ``refine`` levels of midpoints. S is convex and nonincreasing, so on each interval
between samples it lies above the secants of the neighbouring intervals extended (slopes widened by
the sample bounds), above the next sample's lower bound and 0, and at c = 0 above the tangent of
slope -P(gamma > 0) (bounded by the sign law alone); the maximum g of those lines is convex on the
interval, so min_c (c p + g(c)) is attained at one of its vertices, and Phi_low(p) = min over all
vertices v of (v p + g(v)) <= min_c (c p + S(c)) = Phi(p) for every p <= 1/2 (for c < 0, c p + S(c)
is nonincreasing since P(gamma > c) >= 1/2 for a symmetric gamma). Phi_low is concave (a minimum of
lines), and R_upper = int_{1-rho}^{1/2} dp / Phi_low(p) is integrated exactly and rounded up: R <=
R_upper. The lower end is the radius of the upper-bound lines at every sample (>= the verified
radius). So the verified radius is proved within (R_upper - R_verified) / R_verified below the
exact radius; measured (``benchmarks/verified_ratio.py --bracket``, d = 2, refine = 4): Pareto
(a = 3, 4.7), ExpP (p = 0.7, 0.45) and log cosh against l1 within 3e-13 at rho = 1/2 + 1e-12,
up to 4.3e-6 at rho = 0.5015 (the float envelope's own gap, which these lines share), 5e-7 at 0.6
and 0.9 (refine = 1); the bracket itself within 3e-6 (ExpP p = 0.7 near rho = 0.5004; < 1e-6
elsewhere measured). Discrete laws and constant magnitudes: within 3e-16. A sphere coordinate
times a profile (Power2 against l2) has no lower stop-loss bound yet (NotImplementedError).

Cost and memory. A profile magnitude's stop-loss E(M - t)_+ is summed, on the pieces away from
the crossings M = t, from per-piece moments E[M; piece] and P(piece) memoized across thresholds
(those pieces are shared), and by the integrand (M - t) itself on a piece next to a crossing
where the difference would cancel more than five digits, so an envelope of n lines
costs O(n) quadratures of short pieces, not O(n^2): Pareto against l1 (d = 2) takes about 6 s
at rho = 0.6 and 25 s at 1 - 1e-12 (260 s at 0.6 before). A sphere coordinate times a profile
(Radial(g, 2) against l2, e.g. Power2) still costs a full quadrature per line, about a second
each. The quadrature never evaluates the integrand where the density is 0 (far nodes of an
infinite piece, where h(e^y) would need about e^y digits: the MemoryError of issue 25).
"""
from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import sympy as sp

from wulff.distributions import r as r_symbol

from .envelope import Envelope
from .laws import GammaLaw, RademacherSum, SphereCoordinate, StandardNormal, SymmetricSign
from .magnitude import ConstantMagnitude, ProfileMagnitude

#: the most quadratures one piece's refinement may take (:meth:`_ProfileIntegrals._refined`)
_REFINE_BUDGET = 128
#: a piece's E[|h|] - t P below this fraction of E[|h|] is integrated as E[|h| - t] instead
_CANCELLATION = mpmath.mpf(10) ** -5
#: how many of the float magnitude's cell boundaries become quadrature breakpoints (the bulk shape)
_BREAKPOINTS = 16


def _exact(value: float) -> mpmath.mpf:
    """The simple rational a float parameter was computed from (1 / (2d), (d - 1) / 2, ...)."""
    fraction = Fraction(value).limit_denominator(10 ** 9)
    if abs(float(fraction) - value) > 4 * math.ulp(value):
        raise ValueError(f"verified mode: the parameter {value!r} is not a simple rational")
    return mpmath.mpf(fraction.numerator) / fraction.denominator


def _round_down(x: mpmath.mpf) -> float:
    value = float(x)
    return math.nextafter(value, -math.inf) if mpmath.mpf(value) > x else value


class _ProfileIntegrals:
    """E[(|h(R)| - t)_+ k(|h(R)|)]-type integrals over the exact radius law, in y = log R."""

    def __init__(self, M: ProfileMagnitude, dps: int):
        self.M, self.dps = M, dps
        law = M.law
        with mpmath.workdps(dps + 10):
            self._h = sp.lambdify(r_symbol, M.expr, "mpmath")
            g = sp.lambdify(r_symbol, law.g, "mpmath")
            d = law.d
            ys = [mpmath.mpf(float(y)) for y in M.y]
            shift = max(d * y - g(mpmath.exp(y)) for y in ys)
            self._log_density = lambda y: d * y - g(mpmath.exp(y)) - shift
            step = max(1, len(ys) // _BREAKPOINTS)
            kinks = [mpmath.mpf(float(yb[0])) for _, yb, _, _ in M._runs]
            self._points = sorted(set(ys[::step] + [ys[-1]] + kinks))
            self._moments: dict = {}
            self._stop_losses: dict = {}
            [(self._norm, self._norm_err)] = self._quad([lambda y: mpmath.mpf(1)], [])

    def abs_h(self, y) -> mpmath.mpf:
        return abs(self._h(mpmath.exp(y)))

    def _density(self, y):
        """The density of log R at y (relative to its peak); 0 where it is below e^(-10^5) (a far
        tail node of an infinite piece, where exp would need astronomically many digits)."""
        if abs(y) > 10 ** 4:  # e^y itself is beyond any useful radius: the density is negligible there
            return mpmath.mpf(0)
        log_density = self._log_density(y)
        return mpmath.exp(log_density) if log_density > -10 ** 5 else mpmath.mpf(0)

    def _weighted(self, weight, y) -> mpmath.mpf:
        """weight(y) times the density of log R at y; the weight is not evaluated where the density
        is 0 (a far node of an infinite piece, where e^y, and tanh(e^y) with it, would need a number
        of digits proportional to e^y: mpmath then runs out of memory)."""
        density = self._density(y)
        return density * weight(y) if density else density

    def _pieces(self, extra_points, above=None) -> list:
        """The pieces between consecutive breakpoints (the fixed ones and ``extra_points``), those
        where |h| > above only when given (|h| is monotone between breakpoints once the crossings
        are among them)."""
        points = sorted(set(self._points + list(extra_points)))
        grid = [mpmath.ninf] + points + [mpmath.inf]
        pieces = []
        for a, b in zip(grid[:-1], grid[1:]):
            inside = (a + b) / 2 if mpmath.isfinite(a) and mpmath.isfinite(b) else \
                (b - 1 if mpmath.isfinite(b) else a + 1)
            if above is None or self.abs_h(inside) > above:
                pieces.append((a, b))
        return pieces

    def _quad(self, weights, extra_points, above=None) -> list:
        """[(int of w(y) * density over y, summed error estimate) for w in weights], restricted to
        |h| > above when given (:meth:`_pieces`); a piece whose error estimate exceeds its share of
        10^(10 - dps) of the total is refined."""
        pieces = self._pieces(extra_points, above)
        sums = []
        for weight in weights:
            f = (lambda y, w=weight: self._weighted(w, y))
            first = [self._scaled_quad(f, a, b) for a, b in pieces]
            tol = sum(abs(v) for v, _ in first) * mpmath.mpf(10) ** (10 - self.dps) / max(len(pieces), 1)
            value = error = mpmath.mpf(0)
            for (a, b), (v, e) in zip(pieces, first):
                if e > tol:
                    v, e = self._refined(f, a, b, tol)
                value, error = value + v, error + e
            sums.append((value, error))
        return sums

    def _piece_moments(self, a, b) -> tuple:
        """(int |h| density, its error, int density, its error) over one piece, memoized: the pieces
        away from a threshold's crossings are the same for every threshold, so the stop-loss lines
        of an envelope share them (one quadrature per piece, not one per piece and line). A piece
        is refined until each error estimate is below 10^(10 - dps) of its own value."""
        key = (a, b)
        if key not in self._moments:
            row = []
            for weight in (self.abs_h, lambda y: mpmath.mpf(1)):
                f = (lambda y, w=weight: self._weighted(w, y))
                v, e = self._scaled_quad(f, a, b)
                tol = abs(v) * mpmath.mpf(10) ** (10 - self.dps)
                if e > tol:
                    v, e = self._refined(f, a, b, tol)
                row += [v, e]
            self._moments[key] = tuple(row)
        return self._moments[key]

    def stop_loss(self, t: mpmath.mpf) -> mpmath.mpf:
        """An upper bound on E(|h(R)| - t)_+ (:meth:`stop_loss_bounds`)."""
        return self.stop_loss_bounds(t)[1]

    def stop_loss_bounds(self, t: mpmath.mpf) -> tuple:
        """(lower, upper) bounds on E(|h(R)| - t)_+, memoized per threshold: on each piece above t
        as E[|h|; piece] - t P(piece) from the memoized piece moments, unless the piece is next to a
        crossing (an end among the crossings or the float cells near them) and the difference
        cancels more than five digits: then by the integrand (|h| - t) itself. The upper bound is
        (sum + 10 error) / (norm - 10 error), times 1 + 10^(8 - dps), plus 10^(8 - dps)
        E[|h| + t; |h| > t] for rounding in the integrand (as :meth:`with_rounding`); the lower
        bound is (sum - 10 error) / (norm + 10 error), times 1 - 10^(8 - dps), minus that term."""
        key = mpmath.mpf(t)
        if key not in self._stop_losses:
            self._stop_losses[key] = self._stop_loss_bounds(key)
        return self._stop_losses[key]

    def _stop_loss_bounds(self, t: mpmath.mpf) -> tuple:
        crossings = self.crossings(float(t))
        near = crossings + self._boundaries_near(crossings)
        pieces = self._pieces(near, above=float(t))
        if not pieces:
            return mpmath.mpf(0), mpmath.mpf(0)
        moved = set(near)
        value = error = moment = moment_err = mass = mass_err = mpmath.mpf(0)
        for a, b in pieces:
            A, eA, B, eB = self._piece_moments(a, b)
            moment, moment_err, mass, mass_err = moment + A, moment_err + eA, mass + B, mass_err + eB
            v, e = A - t * B, eA + t * eB
            if (a in moved or b in moved) and v < A * _CANCELLATION:
                f = (lambda y: self._weighted(lambda x: self.abs_h(x) - t, y))
                v, e = self._scaled_quad(f, a, b)
                tol = abs(v) * mpmath.mpf(10) ** (10 - self.dps)
                if e > tol:
                    v, e = self._refined(f, a, b, tol)
            value, error = value + v, error + e
        norm_low, norm_high = self._norm - 10 * self._norm_err, self._norm + 10 * self._norm_err
        widen = mpmath.mpf(10) ** (8 - self.dps)
        upper_moment, upper_mass = (moment + 10 * moment_err) / norm_low, (mass + 10 * mass_err) / norm_low
        rounding = (upper_moment + t * upper_mass) * widen
        upper = max((value + 10 * error) / norm_low * (1 + widen), mpmath.mpf(0)) + rounding
        lower = max((value - 10 * error) / norm_high * (1 - widen) - rounding, mpmath.mpf(0))
        return lower, upper

    @staticmethod
    def _scaled_quad(f, a, b):
        """mpmath.quad of f over [a, b] with its error estimate, f first scaled to order 1 (mpmath's
        estimate has an absolute floor: 10^-200 times a smooth function would get a relative error
        estimate of 10^-3)."""
        probes = [x for x in (a, (a + b) / 2, b, a + 1, b - 1) if mpmath.isfinite(x) and a <= x <= b]
        scale = max((abs(f(x)) for x in probes), default=mpmath.mpf(0))
        if scale == 0:
            scale = mpmath.mpf(1)
        v, e = mpmath.quad(lambda y: f(y) / scale, [a, b], error=True)
        return v * scale, e * scale

    def _refined(self, f, a, b, tol, depth: int = 0, budget: list | None = None):
        """mpmath.quad of f over [a, b], the piece halved (an infinite one cut one unit from its
        finite end) until the error estimate is below tol (halved with each cut), at most 12 levels
        and :data:`_REFINE_BUDGET` quadratures in all (a piece where the estimate does not fall, such
        as the far tail next to a crossing just below sup |h|, once took 25,000); past either limit
        the estimate stands, and it is added like any other."""
        budget = [_REFINE_BUDGET] if budget is None else budget
        if mpmath.isfinite(a) and mpmath.isfinite(b):
            mid = (a + b) / 2
        elif mpmath.isfinite(a):
            mid = a + 1
        elif mpmath.isfinite(b):
            mid = b - 1
        else:
            mid = mpmath.mpf(0)
        total = [mpmath.mpf(0), mpmath.mpf(0)]
        for lo, hi in ((a, mid), (mid, b)):
            v, e = self._scaled_quad(f, lo, hi)
            budget[0] -= 1
            if e > tol / 2 and depth < 12 and budget[0] > 0:
                v, e = self._refined(f, lo, hi, tol / 2, depth + 1, budget)
            total[0] += v
            total[1] += e
        return total[0], total[1]

    def crossings(self, t: float) -> list:
        """The y where |h(e^y)| = t, from the float cell boundaries refined by mpmath bisection."""
        values = self.M.values
        ys = self.M.y
        above = values > t
        out = []
        for i in np.nonzero(above[:-1] != above[1:])[0]:
            lo, hi = mpmath.mpf(float(ys[i])), mpmath.mpf(float(ys[i + 1]))
            low_above = self.abs_h(lo) > t
            for _ in range(int(3.4 * self.dps) + 10):  # to the working precision
                mid = (lo + hi) / 2
                if (self.abs_h(mid) > t) == low_above:
                    lo = mid
                else:
                    hi = mid
            out.append((lo + hi) / 2)
        return out

    def _boundaries_near(self, ys: list, count: int = 8) -> list:
        """The float cells' boundaries next to each y (the cells follow the quantiles of R, so they
        resolve the density where a crossing lies, e.g. far in a light tail)."""
        out = []
        for y in ys:
            i = int(np.searchsorted(self.M.y, float(y)))
            out += [mpmath.mpf(float(b)) for b in self.M.y[max(i - count, 0):i + count]]
        return out

    def upper_expectations(self, weights, t: float) -> list:
        """Upper bounds on E[w(R); |h(R)| > t] for each weight w >= 0: (value + 10 error) / (norm -
        10 error), times 1 + 10^(8 - dps) (see the module). Exactly 0 when |h| <= t everywhere."""
        crossings = self.crossings(t)
        sums = self._quad(weights, crossings + self._boundaries_near(crossings), above=t)
        norm = self._norm - 10 * self._norm_err
        widen = 1 + mpmath.mpf(10) ** (8 - self.dps)
        return [mpmath.mpf(0) if v == 0 and e == 0 else (v + 10 * e) / norm * widen for v, e in sums]

    def with_rounding(self, weight, t: mpmath.mpf) -> mpmath.mpf:
        """An upper bound on E[weight(R); |h(R)| > t] for an integrand whose evaluation errs by at
        most 10^(-dps - 8) (|h| + t): the bound adds 10^(8 - dps) E[|h| + t; |h| > t]."""
        main, moment, mass = self.upper_expectations([weight, self.abs_h, lambda y: mpmath.mpf(1)], float(t))
        return main + (moment + t * mass) * mpmath.mpf(10) ** (8 - self.dps)


def _profile_stop_loss(P: _ProfileIntegrals, t: mpmath.mpf, lower: bool = False) -> mpmath.mpf:
    """Upper (or, with ``lower``, lower) bound on E(M - t)_+ for the profile magnitude M."""
    if t < 0:
        raise ValueError("stop-loss thresholds must be >= 0")
    return P.stop_loss_bounds(t)[0 if lower else 1]


def _sphere_unit_stop_loss(alpha: mpmath.mpf, d: int, a: mpmath.mpf) -> mpmath.mpf:
    """E(S - a)_+ for the sphere coordinate S of Lemma U.1, 0 <= a."""
    if a >= 1:
        return mpmath.mpf(0)
    top = (1 - a * a) ** alpha * mpmath.gamma(mpmath.mpf(d) / 2) / (
        (d - 1) * mpmath.sqrt(mpmath.pi) * mpmath.gamma(alpha))
    return max(top - a * mpmath.betainc(alpha, alpha, 0, (1 - a) / 2, regularized=True), mpmath.mpf(0))


class VerifiedStopLoss:
    """Upper bounds on E(gamma - c)_+ in mpmath for one :class:`GammaLaw` (see the module)."""

    def __init__(self, law: GammaLaw, dps: int = 40):
        if dps < 30:
            raise ValueError(f"dps must be >= 30; got {dps}")
        self.law, self.dps = law, dps
        M = law.magnitude
        with mpmath.workdps(dps + 10):
            if isinstance(M, ConstantMagnitude):
                exact = M.expr if M.expr.is_number and not M.expr.has(sp.Float) else None
                self._m = mpmath.mpf(sp.N(exact, dps + 10)) if exact is not None else \
                    mpmath.mpf(math.nextafter(M.m, math.inf))
                self._m_low = self._m if exact is not None else mpmath.mpf(math.nextafter(M.m, -math.inf))
                self._profile = None
            else:
                self._m = None
                self._profile = _ProfileIntegrals(M, dps)

    def sup(self) -> mpmath.mpf | None:
        """The exact sup of gamma when the magnitude is a constant m (at the working precision, m
        itself exact or rounded up): m for a sparse sign or a sphere coordinate, d m for a sum of d
        signs; None for a normal sign or a profile magnitude. The line (sup, 0) is then valid, and
        it is what keeps the verified radius tight near rho = 1: the float envelope's steepest line
        has a float slope, which can lie a few ulps below the exact sup (Pareto against linf,
        m = a + 1 not a dyadic rational: 2 m = 12.78 in d = 2), where its exact intercept is
        positive; at 1 - rho = 2^-53 that intercept costs 0.3 % of the radius."""
        sign = self.law.sign
        if self._m is None or isinstance(sign, StandardNormal):
            return None
        if isinstance(sign, RademacherSum):
            return sign.d * self._m
        if isinstance(sign, (SymmetricSign, SphereCoordinate)):
            return self._m
        return None

    def _magnitude_stop_loss(self, t: mpmath.mpf, lower: bool = False) -> mpmath.mpf:
        if self._m is not None:
            return max((self._m_low if lower else self._m) - t, mpmath.mpf(0))
        return _profile_stop_loss(self._profile, t, lower)

    def __call__(self, c: float) -> mpmath.mpf:
        """An upper bound on E(gamma - c)_+ for c >= 0 (c a double, taken exactly)."""
        return self._bound(c, lower=False)

    def lower(self, c: float) -> mpmath.mpf:
        """A lower bound on E(gamma - c)_+ for c >= 0 (c a double, taken exactly): the same sums
        with every estimate taken on its low side (:meth:`_ProfileIntegrals.stop_loss_bounds`)."""
        return self._bound(c, lower=True)

    def _bound(self, c: float, lower: bool) -> mpmath.mpf:
        sign = self.law.sign
        with mpmath.workdps(self.dps + 10):
            c = mpmath.mpf(float(c))
            if isinstance(sign, SymmetricSign):
                value = _exact(sign.w) * self._magnitude_stop_loss(c, lower)
            elif isinstance(sign, RademacherSum):
                value = self._binomial(sign.d, c, lower)
            elif isinstance(sign, SphereCoordinate):
                if lower and self._m is None:
                    raise NotImplementedError("verified bracket: no lower stop-loss bound for a sphere "
                                              "coordinate times a profile magnitude")
                value = self._sphere(sign.d, c)
            elif isinstance(sign, StandardNormal):
                m = self._m_low if lower else self._m
                z = c / m
                value = m * (mpmath.npdf(z) - z * mpmath.ncdf(-z))
            else:
                raise NotImplementedError(f"verified mode has no exact form for the sign law {sign.describe()}")
            return value * (1 + (-1 if lower else 1) * mpmath.mpf(10) ** (5 - self.dps))

    def positive_mass(self) -> mpmath.mpf:
        """An upper bound on P(gamma > 0) = -dE(gamma - c)_+/dc at c = 0+, from the sign law alone:
        w for a sparse sign, P(Bin(d, 1/2) > d/2) for a sum of d signs, 1/2 for a sphere coordinate
        or a normal (the slope of the stop-loss at 0 that :meth:`VerifiedEnvelope.bracket_unit` needs)."""
        sign = self.law.sign
        if isinstance(sign, SymmetricSign):
            return _exact(sign.w)
        if isinstance(sign, RademacherSum):
            return mpmath.fsum(mpmath.binomial(sign.d, i) for i in range(sign.d // 2 + 1, sign.d + 1)) \
                / mpmath.mpf(2) ** sign.d
        return mpmath.mpf(1) / 2

    def _binomial(self, d: int, c: mpmath.mpf, lower: bool = False) -> mpmath.mpf:
        """sum over s = 2i - d > 0 of P(Bin(d, 1/2) = i) s E(M - c / s)_+ (Theorem P.2)."""
        total = mpmath.mpf(0)
        scale = mpmath.mpf(2) ** -d
        for i in range(d // 2 + 1, d + 1):
            s = 2 * i - d
            total += mpmath.binomial(d, i) * scale * s * self._magnitude_stop_loss(c / s, lower)
        return total

    def _sphere(self, d: int, c: mpmath.mpf) -> mpmath.mpf:
        """E(S M - c)_+ = E[M u(c / M)], u(a) = E(S - a)_+ of the sphere coordinate (Lemma U.1)."""
        alpha = mpmath.mpf(d - 1) / 2
        if self._m is not None:
            return self._m * _sphere_unit_stop_loss(alpha, d, c / self._m)
        P = self._profile

        def weight(y):
            m = P.abs_h(y)
            return m * _sphere_unit_stop_loss(alpha, d, c / m)
        return P.with_rounding(weight, c)


def _round_up(x: mpmath.mpf) -> float:
    value = float(x)
    return math.nextafter(value, math.inf) if mpmath.mpf(value) < x else value


def _convex_minorant_vertices(lines: list, a: mpmath.mpf, b) -> list:
    """[(c, max_j l_j(c))] at a, b (when finite) and every pairwise crossing of the lines
    l_j(c) = v_j + s_j (c - x_j) inside (a, b): the vertices of their maximum on [a, b], among which
    c p + max_j l_j(c) (convex in c) takes its minimum over [a, b] for every p."""
    def value(c):
        return max(v + slope * (c - x) for x, v, slope in lines)
    points = [a] + ([b] if mpmath.isfinite(b) else [])
    for i, (x0, v0, s0) in enumerate(lines):
        for x1, v1, s1 in lines[i + 1:]:
            if s0 != s1:
                c = (v1 - s1 * x1 - v0 + s0 * x0) / (s0 - s1)
                if a < c < b:
                    points.append(c)
    return [(c, value(c)) for c in points]


def _phi_lower_lines(samples: list, positive_mass: mpmath.mpf) -> list:
    """Lines (c, g(c)) whose minimum is a lower bound on Phi(p) = min_c (c p + E(gamma - c)_+) for
    every p in [0, 1/2], from samples (c_k, lo_k, hi_k) with lo_k <= S(c_k) <= hi_k of the convex,
    nonincreasing stop-loss S(c) = E(gamma - c)_+ (c_0 = 0 first, c_k increasing).

    On [c_k, c_{k+1}] S lies above: 0; lo_{k+1} (S is nonincreasing); the secant through c_{k-1},
    c_k extended to the right and the secant through c_{k+1}, c_{k+2} extended to the left
    (convexity), their slopes widened by the sample bounds; at c_0 = 0 the tangent of slope
    -P(gamma > 0) >= -``positive_mass``; beyond the last sample, 0 and the last secant. The
    maximum g of those lines is a convex minorant of S on each interval, so c p + g(c) takes its
    minimum there at a vertex (:func:`_convex_minorant_vertices`); for c < 0, c p + S(c) is
    nonincreasing when p <= 1/2 (S' = -P(gamma > c) <= -1/2 for a symmetric gamma). Hence the
    minimum of the vertex lines is <= Phi(p)."""
    n = len(samples)
    zero = mpmath.mpf(0)
    out = []
    for k in range(n):
        c, lo, _ = samples[k]
        lines = [(c, zero, zero)]
        if k == 0:
            lines.append((c, lo, -positive_mass))
        else:
            c0, _, hi0 = samples[k - 1]
            lines.append((c, lo, (lo - hi0) / (c - c0)))
        if k + 1 < n:
            c1, lo1, _ = samples[k + 1]
            lines.append((c1, lo1, zero))
            if k + 2 < n:
                c2, _, hi2 = samples[k + 2]
                lines.append((c1, lo1, (hi2 - lo1) / (c2 - c1)))
            out += _convex_minorant_vertices(lines, c, c1)
        else:
            out += _convex_minorant_vertices(lines, c, mpmath.inf)
    return out


def _lower_envelope(lines: list) -> tuple[list, list]:
    """Active lines of min_i (c_i p + e_i) on [0, 1/2] (sorted by slope) and the breaks between them."""
    kept, breaks = [], []
    for c, e in sorted(lines):
        while kept:
            c0, e0 = kept[-1]
            if e >= e0:
                break
            cross = (e0 - e) / (c - c0)
            if cross >= 0.5 or (breaks and cross >= breaks[-1]):
                kept.pop()
                if breaks:
                    breaks.pop()
                continue
            break
        if kept and e >= kept[-1][1]:
            continue
        if kept:
            breaks.append((kept[-1][1] - e) / (c - kept[-1][0]))
        kept.append((c, e))
    return kept, breaks


def _integral(lines: list, p0: mpmath.mpf) -> mpmath.mpf:
    """int_{p0}^{1/2} dp / min_i (c_i p + e_i), exactly (a logarithm per active piece)."""
    kept, breaks = _lower_envelope(lines)
    upper = [mpmath.mpf(1) / 2] + breaks
    lower = breaks + [mpmath.mpf(0)]
    total = mpmath.mpf(0)
    for (c, e), b, a in zip(kept, upper, lower):
        a = max(a, p0)
        if a >= b:
            continue
        if c == 0:
            total += (b - a) / e
        elif c * a + e == 0:
            return mpmath.inf
        else:
            total += mpmath.log((c * b + e) / (c * a + e)) / c
    return total


class VerifiedEnvelope:
    """The verified radius of an envelope certificate (see the module); lines memoized per slope."""

    def __init__(self, law: GammaLaw, envelope: Envelope, dps: int = 40):
        self.envelope = envelope
        self.stop_loss = VerifiedStopLoss(law, dps)
        self.dps = dps
        self._intercepts: dict[float, mpmath.mpf] = {}

    def intercept(self, c: float) -> mpmath.mpf:
        if c not in self._intercepts:
            self._intercepts[c] = self.stop_loss(c)
        return self._intercepts[c]

    def bracket_unit(self, rho: float, refine: int = 1) -> tuple[float, float]:
        """(lower, upper) with lower <= R(rho) <= upper at lam = 1, R the exact radius of Theorem G.6
        for the certificate's law. Samples: the float envelope's slopes active on [1 - rho, 1/2],
        two more beyond, 0, and ``refine`` (0..4) levels of midpoints between consecutive slopes,
        each with a lower and an upper bound on its stop-loss. lower is the larger of
        :meth:`radius_unit` and the radius of the upper-bound lines at every sample (any valid
        lines give a lower bound); upper integrates 1 / Phi_low for the lower bound
        Phi_low <= Phi of :func:`_phi_lower_lines`. Both are proved given mpmath's quadrature error
        estimates (see the module), so R lies within (upper - lower) / lower above lower and
        radius_unit within (upper - radius_unit) / radius_unit below R."""
        if not 0 <= refine <= 4:
            raise ValueError(f"refine must be in 0..4; got {refine}")
        verified = self.radius_unit(rho)
        rho = float(rho)
        if rho <= 0.5 or math.isinf(verified):
            return verified, verified
        p0 = max(1.0 - rho, 0.0)
        active = int(self.envelope._piece(np.array([p0]))[0])
        slopes = sorted({0.0} | {float(c) for c in self.envelope.c[:active + 3] if c >= 0})
        for _ in range(refine):
            slopes = sorted(set(slopes) | {(a + b) / 2 for a, b in zip(slopes[:-1], slopes[1:])})
        with mpmath.workdps(self.dps + 10):
            samples = [(mpmath.mpf(c), self.stop_loss.lower(c), self.intercept(c)) for c in slopes]
            top = self.stop_loss.sup()
            if top is not None and top > samples[-1][0]:
                samples.append((top, mpmath.mpf(0), mpmath.mpf(0)))
            p = mpmath.mpf(p0)
            margin = mpmath.mpf(10) ** (5 - self.dps)
            refined = _integral([(c, hi) for c, _, hi in samples], p)
            lower = max(verified, _round_down(refined * (1 - margin))) if mpmath.isfinite(refined) else verified
            lines = _phi_lower_lines(samples, self.stop_loss.positive_mass())
            if min(c * p + g for c, g in lines) <= 0:
                return lower, math.inf
            return lower, _round_up(_integral(lines, p) * (1 + margin))

    def radius_unit(self, rho: float) -> float:
        """A provable lower bound on the radius at lam = 1 (0 for rho <= 1/2)."""
        rho = float(rho)
        if rho <= 0.5:
            return 0.0
        p0 = max(1.0 - rho, 0.0)
        if p0 == 0.0 and self.envelope.infinite_at_one:
            return math.inf
        active = int(self.envelope._piece(np.array([p0]))[0])  # lines 0..active cover [p0, 1/2]
        slopes = self.envelope.c[:active + 1]
        with mpmath.workdps(self.dps + 10):
            lines = [(mpmath.mpf(float(c)), self.intercept(float(c))) for c in slopes]
            top = self.stop_loss.sup()
            if top is not None:  # gamma <= top: E(gamma - top)_+ = 0 exactly
                lines.append((top, mpmath.mpf(0)))
            value = _integral(lines, mpmath.mpf(p0))
            if not mpmath.isfinite(value):  # only at p0 = 0 (a line through the origin)
                return math.inf
            return max(_round_down(value * (1 - mpmath.mpf(10) ** (5 - self.dps))), 0.0)
