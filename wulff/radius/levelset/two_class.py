"""The exact two-class Neyman-Pearson radius of a level-set table (Theorem 2C.3 of docs/soundness.md).

Setting of :mod:`.table`: unit scale, q(x) ∝ exp(-g(||x||_2)) with g increasing, a shift v of l2 norm
eps. The growth function (eq. (2) of the paper) G_eps(p) is the largest mass q(U - v) of a set U with
q(U) = p; the Neyman-Pearson lemma gives it on the sets NP_T = {w : q(w - v) >= e^T q(w)}:
G_eps(P0(T)) = P1(T) with P0(T) = q(NP_T), P1(T) = q(NP_T - v) (Theorem T.1), both decreasing in T.

With p_A >= a and every other class at most b (b < 1 - a), the shifted classifier keeps A on top as
long as the worst case of A, 1 - G_eps(1 - a), stays above the worst case of any other class, G_eps(b):

    G_eps(1 - a) + G_eps(b) < 1.                                                    (2C.3)

At b = 1 - a this is Algorithm 1's G_eps(1 - a) < 1/2; for the Gaussian, G_eps(p) = Phi(Phi^-1(p) + eps)
and (2C.3) is eps < (Phi^-1(a) - Phi^-1(b)) / 2, Cohen et al.'s Theorem 1. A radius eps covers every
shift of norm <= eps: G_eps(p) is nondecreasing in eps for every density that decreases with ||x||
(Lemma 2C.4 of docs/soundness.md, a reflection argument; Algorithm 2's one-class table needs it too).

Signed levels. The table's levels are t = T > 0 (p1 = 1/2 needs T > 0); here the mass 1 - a may be
close to 1/2 and its level negative. The reflection w -> v - w maps the complement of NP_{-t} onto
NP_t (up to a null set), so P0(-t) = 1 - p1(t) and P1(-t) = 1 - p0(t): every signed level is
evaluated by the table's own quadrature (:class:`~.table.GrowthFunction`) at |T|.

Soundness of each number (the same bounds as the table's rows):

* for a target mass p, a level T with P0_lower(T) >= p is found (bracketing from the Gaussian level,
  then the Illinois method on log(P0_lower / p), the feasible end kept; NaN is never feasible; masses
  below :data:`MASS_FLOOR` are raised to it); G_eps being nondecreasing in p, G_eps(p) <=
  G_eps(P0(T)) = P1(T) <= P1_upper(T): quadrature estimates with their error bounds (half-step rule,
  lost mass, rounding floor) added in the safe direction, 1 - x rounded outward;
* (2C.3) is checked on these upper bounds in floats (round to nearest is monotone, so a float sum
  below 1 is an exact sum below 1);
* eps runs over the table's own grid (Algorithm 2's rounding, <= 0.4 % of a radius), found by a
  galloping search from the Gaussian guess (R(a) + R(1 - b)) / 2 and bisection (above a radius the
  caller already has, if given); the largest grid radius whose check passed is returned (the lower
  end), 0 when none did;
* below d = SMOOTH_SPHERE_D the check runs at the table's unshrunk radius and the shrunk one is
  returned (:data:`~.table.LOW_D_RADIUS_MARGIN`, the table's empirical margin for the half-step
  estimate's shortfall at low d).
"""
from __future__ import annotations

import math
import weakref

import numpy as np
from scipy import special

from wulff.distributions import Radial
from wulff.radius.certificate import Certificate

from .shifts import shift_of
from .spherical import TableLookup
from .table import LOW_D_RADIUS_MARGIN, SMOOTH_SPHERE_D, GrowthFunction, lookup

#: a level is solved until P0_lower is within LEVEL_TOLERANCE (relative to the target mass) plus
#: LEVEL_FLOOR above the target, or its bracket is within LEVEL_BRACKET_RTOL of itself: it moves G by
#: ~kappa times that, far below the change of G over one grid step of the table
LEVEL_TOLERANCE = 1e-10
#: the quadrature's own error floor on P0 is above 1e-16 (RadiusQuadrature.mean), so no level is known
#: closer than this to its mass
LEVEL_FLOOR = 1e-16
#: positive masses below this are raised to it (G is nondecreasing, so G(MASS_FLOOR) bounds G(p) above):
#: P0_lower cannot resolve smaller masses (its error floor), and their levels only cost iterations
MASS_FLOOR = 1e-17
LEVEL_BRACKET_RTOL = 1e-13
#: iteration caps (the bracket doubles its width per expansion; Illinois converges superlinearly)
MAX_EXPANSIONS = 200
MAX_ILLINOIS_STEPS = 100


class TwoClassTable:
    """Theorem 2C.3 on the grid of one level-set table of a Radial(g, 2) form (module docstring)."""

    def __init__(self, table: dict, radial: Radial):
        self.table = table
        self.d = int(radial.d)
        self.growth = GrowthFunction(shift_of(radial), radial.radius_law, self.d, int(table["half_nodes"]))
        self.radii = np.asarray(table["radii"], dtype=float)
        low_d = self.d < SMOOTH_SPHERE_D
        self.checked_radii = self.radii / (1.0 - LOW_D_RADIUS_MARGIN) if low_d else self.radii
        slope = float(table["slope"])
        #: eps times this is eps in the Gaussian's units (same Phi(1/2) = E gamma^+ as the Gaussian)
        self.gaussian_units = math.sqrt(2.0 * math.pi) * slope if math.isfinite(slope) else 1.0

    # -- P0 and P1 at signed levels -----------------------------------------------------------------
    def p0_lower(self, eps: np.ndarray, level: np.ndarray) -> np.ndarray:
        """Lower bounds on P0(T) = q(NP_T) at signed levels T (rows)."""
        return self._signed(eps, level, lower_p0=True)

    def p1_upper(self, eps: np.ndarray, level: np.ndarray) -> np.ndarray:
        """Upper bounds on P1(T) = q(NP_T - v) at signed levels T (rows), at most 1."""
        return np.minimum(self._signed(eps, level, lower_p0=False), 1.0)

    def _signed(self, eps, level, lower_p0: bool) -> np.ndarray:
        """T > 0: the table's p0_lower / p1_upper at log t = log T; T <= 0: 1 - p1_upper / 1 - p0_lower
        at t = -T (P0(-t) = 1 - p1(t), P1(-t) = 1 - p0(t)), the subtraction rounded outward."""
        out = np.empty(level.shape)
        positive = level > 0
        with np.errstate(divide="ignore"):
            log_t = np.log(np.abs(level))  # -inf at T = 0: t = 0
        growth = self.growth
        if positive.any():
            e, u = eps[positive], log_t[positive]
            out[positive] = growth.p0_lower(e, u)[0] if lower_p0 else growth.p1_upper(e, u)
        if (~positive).any():
            e, u = eps[~positive], log_t[~positive]
            mirrored = growth.p1_upper(e, u) if lower_p0 else growth.p0_lower(e, u)[0]
            out[~positive] = np.nextafter(1.0 - mirrored, -np.inf if lower_p0 else np.inf)
        return out

    # -- G_eps(p) from above ------------------------------------------------------------------------
    def growth_upper(self, eps: float, masses: np.ndarray) -> np.ndarray:
        """Upper bounds on G_eps(p) for masses p in [0, 1/2] (0 at p = 0: q has full support, so a null
        set stays null under every shift)."""
        masses = np.asarray(masses, dtype=float)
        out = np.zeros(masses.shape)
        rows = np.nonzero(masses > 0)[0]
        if rows.size:
            e, raised = np.full(rows.size, float(eps)), np.maximum(masses[rows], MASS_FLOOR)
            out[rows] = self.p1_upper(e, self.feasible_levels(e, raised))
        return out

    def gaussian_level(self, eps: np.ndarray, masses: np.ndarray) -> np.ndarray:
        """The Gaussian's level of mass p: NP_T = {w_1 >= c}, c = Phi^-1(1 - p), T = eps c - eps^2 / 2
        (in the Gaussian's units): exact for the Gaussian profile, a starting point otherwise."""
        e = eps * self.gaussian_units
        return e * -special.ndtri(masses) - 0.5 * e * e

    def feasible_levels(self, eps: np.ndarray, masses: np.ndarray) -> np.ndarray:
        """Per row a signed level T with P0_lower(eps, T) >= p (p > 0), as large as the solver gets it:
        bracketed around :meth:`gaussian_level`, then the Illinois method on log(P0_lower / p) (nearly
        linear in T in the tails; -inf where the bound is 0, and the method bisects); the feasible end
        is kept."""
        log_mass = np.log(masses)

        def f(rows, level):  # decreasing in the level; >= 0 exactly where P0_lower >= p
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.log(np.maximum(self.p0_lower(eps[rows], level), 0.0)) - log_mass[rows]

        guess = self.gaussian_level(eps, masses)
        scale = eps * self.gaussian_units  # a change of T by this moves the Gaussian's P0 by ~0.4 at most
        width = 0.05 * scale + 0.01 * np.abs(guess)
        lo, hi = guess - width, guess + width
        every = np.arange(eps.size)
        f_lo, f_hi = f(every, lo), f(every, hi)
        for _ in range(MAX_EXPANSIONS):  # until f(lo) >= 0 > f(hi) (NaN counts as neither)
            bad_lo = np.nonzero(~(f_lo >= 0))[0]  # the level of mass p lies left of lo: lo becomes hi
            bad_hi = np.nonzero(~(f_hi < 0) & (f_lo >= 0))[0]  # ... right of hi: hi becomes lo
            if not (bad_lo.size or bad_hi.size):
                break
            width[bad_lo] *= 2.0
            width[bad_hi] *= 2.0
            hi[bad_lo], f_hi[bad_lo] = lo[bad_lo], f_lo[bad_lo]
            lo[bad_lo] = lo[bad_lo] - width[bad_lo]
            f_lo[bad_lo] = f(bad_lo, lo[bad_lo])
            lo[bad_hi], f_lo[bad_hi] = hi[bad_hi], f_hi[bad_hi]
            hi[bad_hi] = hi[bad_hi] + width[bad_hi]
            f_hi[bad_hi] = f(bad_hi, hi[bad_hi])
        else:
            raise ArithmeticError("two-class level set radius: could not bracket a level; please report this")
        return self._illinois(f, lo, hi, f_lo, f_hi, masses, scale)

    @staticmethod
    def _illinois(f, lo, hi, f_lo, f_hi, masses, scale) -> np.ndarray:
        """The Illinois method on a decreasing f = log(P0_lower / p) with f(lo) >= 0 > f(hi); returns the
        lo ends, each with f(lo) >= 0 (``f_lo`` and ``f_hi`` are scaled by the method, ``excess`` keeps
        f(lo) itself)."""
        excess = f_lo.copy()
        side = np.zeros(lo.size, dtype=int)
        active = np.arange(lo.size)
        for _ in range(MAX_ILLINOIS_STEPS):
            narrow = hi[active] - lo[active] <= LEVEL_BRACKET_RTOL * np.maximum(np.abs(lo[active]), scale[active])
            close = excess[active] <= np.log1p(LEVEL_TOLERANCE + LEVEL_FLOOR / masses[active])
            active = active[~(close | narrow)]
            if not active.size:
                break
            a, b, fa, fb = lo[active], hi[active], f_lo[active], f_hi[active]
            with np.errstate(invalid="ignore", divide="ignore"):  # an end at -inf (P0_lower = 0): bisect
                c = b - fb * (b - a) / (fb - fa)
            c = np.where((c > a) & (c < b) & np.isfinite(c), c, 0.5 * (a + b))
            fc = f(active, c)
            feasible = fc >= 0
            same = side[active] == np.where(feasible, -1, 1)  # the same end moved twice: halve the other's f
            lo[active], hi[active] = np.where(feasible, c, a), np.where(feasible, b, c)
            f_lo[active] = np.where(feasible, fc, np.where(same, 0.5 * fa, fa))
            f_hi[active] = np.where(feasible, np.where(same, 0.5 * fb, fb), fc)
            excess[active] = np.where(feasible, fc, excess[active])
            side[active] = np.where(feasible, -1, 1)
        return lo

    # -- the radius ---------------------------------------------------------------------------------
    def certifies(self, index: int, rho_a: float, rho_b: float) -> bool:
        """(2C.3) at the table's grid radius ``index`` from upper bounds on both growth values."""
        eps = float(self.checked_radii[index])
        g_a, g_b = self.growth_upper(eps, np.array([1.0 - rho_a, rho_b]))  # 1 - rho_a exact for rho_a >= 1/2
        return bool(g_a + g_b < 1.0)

    def unit_radius(self, rho_a: float, rho_b: float, above: float = 0.0) -> float:
        """The largest grid radius of the table at which (2C.3) holds for p_A >= rho_a > 1/2 and
        p_B <= rho_b < 1 - rho_a (unit scale, l2), searched only above ``above`` (a radius another form
        already gives: one failed check there settles that this form adds nothing); 0.0 if none. Never
        above the exact two-class Neyman-Pearson radius (module docstring)."""
        n = self.radii.size
        low = int(np.searchsorted(self.radii, above, side="right"))  # the first grid radius above ``above``
        if low >= n:
            return 0.0
        guess = float(np.mean(lookup(self.table, np.array([rho_a, 1.0 - rho_b]))))  # (R(a) + R(1 - b)) / 2
        start = int(np.clip(np.searchsorted(self.radii, guess, side="right") - 1, low, n - 1))
        index = largest_passing(lambda i: self.certifies(i, rho_a, rho_b), start, n, low)
        return float(self.radii[index]) if index >= low else 0.0


def largest_passing(check, start: int, n: int, low: int = 0) -> int:
    """The largest i in [low, n) whose ``check(i)`` passed, for a check that passes up to some index and
    fails beyond: galloping from ``start`` (in [low, n)), then bisection; low - 1 when none passed. Only
    indices whose check passed are returned (a check that is not monotone still never yields a failed
    index)."""
    if check(start):
        lo, step = start, 1
        hi = min(lo + step, n)
        while hi < n and check(hi):
            lo, step = hi, 2 * step
            hi = min(lo + step, n)
    else:
        hi, step = start, 1
        lo = max(hi - step, low - 1)
        while lo >= low and not check(lo):
            hi, step = lo, 2 * step
            lo = max(hi - step, low - 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if check(mid):
            lo = mid
        else:
            hi = mid
    return lo


_SOLVERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def two_class_table(certificate: Certificate) -> TwoClassTable | None:
    """The :class:`TwoClassTable` of a level-set certificate (a table lookup whose verified mode knows
    its Radial(g, 2) form: the certificate itself or a conversion by C = 1), built once per table;
    None for any other certificate."""
    kernel, radial = certificate.kernel, getattr(certificate.verified_unit, "radial", None)
    if not isinstance(kernel, TableLookup) or not isinstance(radial, Radial):
        return None
    solver = _SOLVERS.get(kernel)
    if solver is None:
        solver = _SOLVERS[kernel] = TwoClassTable(kernel.table, radial)
    return solver


__all__ = ["TwoClassTable", "two_class_table", "largest_passing"]
