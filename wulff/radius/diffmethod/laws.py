"""Laws of gamma_u = S * M (docs/design.md, "The differential method"), with S a symmetric sign law
independent of the magnitude M >= 0:

=========================  ==============================================  =======================
sign law S                 values                                          pairs
=========================  ==============================================  =======================
:class:`SymmetricSign`     +-1 w.p. w each, 0 w.p. 1 - 2w                  w = 1/2: Rademacher;
                                                                           w = 1/(2d): Radial(inf) x l1
:class:`RademacherSum`     zeta_1 + ... + zeta_d = 2 Bin(d, 1/2) - d       Radial(1) x linf, IID x linf
:class:`SphereCoordinate`  <u, V>, V uniform on S^{d-1}:                   Radial(2) x l2
                           2 Beta((d-1)/2, (d-1)/2) - 1 (Lemma U.1)
:class:`StandardNormal`    N(0, 1)                                         Gaussian, by rotation
=========================  ==============================================  =======================

A :class:`GammaLaw` supplies upper bounds on the stop-loss transform E(gamma - c)_+ and an
approximate tail P(gamma > c); :meth:`GammaLaw.envelope` turns them into the sound piecewise-linear
upper bound on Phi of :mod:`wulff.diffmethod.envelope`.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from scipy import special, stats

from .envelope import Envelope
from .magnitude import P_FLOOR, ConstantMagnitude, ProfileMagnitude

Magnitude = ConstantMagnitude | ProfileMagnitude

#: p-grid where lines are placed: fine in the bulk and the near tail, coarse in the far tail
_P_GRID = np.unique(np.concatenate([np.linspace(1e-4, 0.5, 1000), np.geomspace(1e-16, 0.5, 2000),
                                    np.geomspace(P_FLOOR, 1e-16, 200)]))
#: a coarser grid for the costly sums of signs times a non-constant magnitude (Theorem P.3)
_P_GRID_COARSE = np.unique(np.concatenate([np.linspace(1e-4, 0.5, 400), np.geomspace(1e-16, 0.5, 800),
                                           np.geomspace(P_FLOOR, 1e-16, 60)]))


def tabulated_quantile(tail, low: float, high: float, p: np.ndarray) -> np.ndarray:
    """Approximate c with tail(c) = p, tail decreasing, by interpolating log tail against log c on
    a geometric grid over [low, high]. Only used to place lines: its accuracy affects tightness,
    never soundness."""
    grid = np.geomspace(low, high, 1200)
    with np.errstate(divide="ignore"):
        log_tail = np.log(np.maximum(tail(grid), 1e-320))
    log_tail = np.minimum.accumulate(log_tail) - np.arange(grid.size) * 1e-9  # strictly decreasing
    return np.exp(np.interp(np.log(p), log_tail[::-1], np.log(grid)[::-1]))


class SymmetricSign:
    """S = +-1 with probability w each, 0 otherwise (w = 1/2: a Rademacher sign)."""

    def __init__(self, w: float):
        if not 0 < w <= 0.5:
            raise ValueError(f"w must lie in (0, 1/2]; got {w}")
        self.w = float(w)

    def describe(self) -> str:
        return "Rademacher" if self.w == 0.5 else f"+-1 w.p. {self.w:.6g} each, else 0"

    def stop_loss(self, M: Magnitude, c: np.ndarray) -> np.ndarray:
        """w E(M - c)_+; a constant M's (m - c) w is widened by 4 u for its two roundings."""
        return self.w * M.stop_loss(c) * (1 + 4 * 2.0 ** -53 if M.is_constant else 1.0)

    def tail(self, M: Magnitude, c: np.ndarray) -> np.ndarray:
        return self.w * M.sf(c)

    def sup(self, M: Magnitude) -> float:
        return M.sup

    def kinks(self, M: Magnitude) -> np.ndarray:
        return np.array([M.m]) if M.is_constant else np.array([])

    def quantile(self, M: Magnitude, p: np.ndarray) -> np.ndarray:
        """Approximate c with P(S M > c) = p for p < w (0 beyond)."""
        inside = p < self.w
        out = np.zeros_like(p)
        if inside.any():
            out[inside] = M.isf(p[inside] / self.w)
        return out


#: support points of a binomial sign sum with a smaller probability are left out (and bounded)
DROPPED_PROBABILITY = 1e-300


class RademacherSum:
    """S = zeta_1 + ... + zeta_d, zeta_i independent Rademacher signs: 2 Bin(d, 1/2) - d (Theorem P.2).

    Memory is O(d) whatever the number of points c asked for: a constant magnitude goes through
    cumulative sums over the support (:meth:`stop_loss`), a profile magnitude through chunks of at
    most :data:`CHUNK_ELEMENTS` (c, s) pairs."""

    #: the largest (points c) x (support s) block a profile magnitude's sums work on at once
    CHUNK_ELEMENTS = 1 << 20

    def __init__(self, d: int):
        self.d = int(d)
        i = np.arange(self.d // 2 + 1, self.d + 1)  # heads giving s = 2i - d > 0
        logpmf = stats.binom.logpmf(i, self.d, 0.5)
        keep = logpmf > math.log(DROPPED_PROBABILITY)
        self.s = (2 * i - self.d)[keep].astype(float)
        self.prob = np.exp(logpmf[keep])
        #: relative error bound of the probabilities: logpmf = lgamma(d+1) - lgamma(i+1) - lgamma(d-i+1)
        #: - d log 2 is a difference of terms up to lgamma(d+1) + d log 2, each good to a few ulps,
        #: and exp turns its absolute error into a relative one (measured: 5.9e-12 at d = 3072)
        self.prob_error = 16 * 2.0 ** -53 * (math.lgamma(self.d + 1) + self.d * math.log(2) + 1)
        #: upper bound on the probability of the support points left out (each below 1e-300)
        self.dropped_mass = float(np.count_nonzero(~keep)) * DROPPED_PROBABILITY
        # the support from the top down, with P_j = P(S >= s_j) (nonnegative partial sums)
        self._s_down = self.s[::-1].copy()
        self._mass_down = np.cumsum(self.prob[::-1])

    def describe(self) -> str:
        return f"2 Bin({self.d}, 1/2) - {self.d}"

    def _chunks(self, c: np.ndarray):
        step = max(1, self.CHUNK_ELEMENTS // max(1, self.s.size))
        for start in range(0, c.size, step):
            yield slice(start, start + step)

    def _above(self, M: ConstantMagnitude, c: np.ndarray) -> np.ndarray:
        """For each c, how many support values s have s m > c (they come first in ``_s_down``)."""
        values_up = self.s * M.m
        return self.s.size - np.searchsorted(values_up, c, side="right")

    def stop_loss(self, M: Magnitude, c: np.ndarray) -> np.ndarray:
        """sum_s P(S = s) E(s M - c)_+.

        Constant M = m, support s_1 > s_2 > ... from the top, P_j = P(S >= s_j): for
        s_{j+1} m <= c < s_j m the sum is U_j + P_j (s_j m - c) with U_j = sum_{k<j} P_k (s_k - s_{k+1}) m,
        a cumulative sum of nonnegative terms (no cancellation): with P_j's own j roundings, the
        relative error is below (2n + 8) u for n support points; widened by that and by
        ``prob_error`` for the probabilities (exp of scipy's binomial log-pmf). A profile M: the
        direct sum of n nonnegative terms, widened by (n + 8) u + ``prob_error``, in chunks. Both add
        the left-out support points' share, at most ``dropped_mass`` d E M (S <= d).
        """
        c = np.asarray(c, dtype=float)
        n = self.s.size
        dropped = self.dropped_mass * self.d * M.mean * 1.01
        if M.is_constant:
            widen = 1 + (2 * n + 8) * 2.0 ** -53 + self.prob_error
            gaps = (self._s_down[:-1] - self._s_down[1:]) * M.m
            below = np.concatenate([[0.0], np.cumsum(self._mass_down[:-1] * gaps)])  # U_j
            above = self._above(M, c)
            j = np.maximum(above - 1, 0)
            last = np.maximum(self._s_down[j] * M.m - c, 0.0)
            return np.where(above > 0, below[j] + self._mass_down[j] * last, 0.0) * widen + dropped
        widen = 1 + (n + 8) * 2.0 ** -53 + self.prob_error
        out = np.empty(c.shape)
        flat, result = c.ravel(), out.ravel()
        for part in self._chunks(flat):
            t = flat[part, None] / self.s[None, :]
            sl = M.stop_loss(t.ravel()).reshape(t.shape)
            result[part] = (self.prob[None, :] * self.s[None, :] * sl).sum(axis=1) * widen + dropped
        return out

    def tail(self, M: Magnitude, c: np.ndarray) -> np.ndarray:
        c = np.asarray(c, dtype=float)
        if M.is_constant:
            above = self._above(M, c)
            return np.where(above > 0, self._mass_down[np.maximum(above - 1, 0)], 0.0)
        out = np.empty(c.shape)
        flat, result = c.ravel(), out.ravel()
        for part in self._chunks(flat):
            t = flat[part, None] / self.s[None, :]
            result[part] = (self.prob[None, :] * M.sf(t.ravel()).reshape(t.shape)).sum(axis=1)
        return out

    def sup(self, M: Magnitude) -> float:
        top = self.d * M.sup  # rounded up: the line (sup, 0) needs sup >= the exact d M.sup
        if not math.isfinite(top) or Fraction(top) >= self.d * Fraction(M.sup):
            return top
        return math.nextafter(top, math.inf)

    def kinks(self, M: Magnitude) -> np.ndarray:
        return self.s * M.m if M.is_constant else np.array([])

    def quantile(self, M: Magnitude, p: np.ndarray) -> np.ndarray:
        low, high = M.value_range
        return tabulated_quantile(lambda c: self.tail(M, c), low * self.s.min() * 1e-3, high * self.s.max(), p)


class SphereCoordinate:
    """S = <u, V> for V uniform on the unit sphere of R^d: 2 Beta((d-1)/2, (d-1)/2) - 1 (Lemma U.1)."""

    def __init__(self, d: int):
        if d < 2:
            raise ValueError("a sphere coordinate needs d >= 2 (use SymmetricSign(1/2) for d = 1)")
        self.d = int(d)
        self.alpha = (d - 1) / 2.0
        # log of 1 / ((d - 1) 2^(d-2) B(alpha, alpha)) = log of Gamma(d/2) / ((d-1) sqrt(pi) Gamma((d-1)/2))
        self._log_top = (special.gammaln(d / 2.0) - special.gammaln(self.alpha) - 0.5 * math.log(math.pi)
                         - math.log(d - 1))

    def describe(self) -> str:
        return f"2 Beta({self.alpha:g}, {self.alpha:g}) - 1"

    def unit_stop_loss(self, a: np.ndarray) -> np.ndarray:
        """E(S - a)_+ for a in [0, 1]: E[S; S > a] - a P(S > a), E[S; S > a] = (1 - a^2)^((d-1)/2) R/(d-1)."""
        a = np.clip(np.asarray(a, dtype=float), 0.0, 1.0)
        with np.errstate(divide="ignore"):
            top = np.exp(self._log_top + self.alpha * np.log1p(-a * a))
        return np.maximum(top - a * special.betainc(self.alpha, self.alpha, (1 - a) / 2), 0.0)

    def stop_loss(self, M: Magnitude, c: np.ndarray) -> np.ndarray:
        if M.is_constant:
            return M.m * self.unit_stop_loss(c / M.m) * (1 + 1e-12)
        # E(S M - c)_+ is convex in M, so a law dominating M in the convex order bounds it above
        values, probs = M.two_point_atoms()
        total = np.zeros_like(c)
        c = np.asarray(c, dtype=float)
        for chunk in range(0, len(c), 64):
            cc = c[chunk:chunk + 64, None]
            with np.errstate(over="ignore"):  # c / tiny atom = inf: that atom's stop-loss term is 0
                ratio = cc / values[None, :]
            total[chunk:chunk + 64] = (probs[None, :] * values[None, :]
                                       * self.unit_stop_loss(ratio)).sum(axis=1)
        return (total + M.lost_moment) * (1 + 1e-12)

    def tail(self, M: Magnitude, c: np.ndarray) -> np.ndarray:
        if M.is_constant:
            return special.betainc(self.alpha, self.alpha, np.clip((1 - c / M.m) / 2, 0, 1))
        values, probs = M.two_point_atoms()
        with np.errstate(over="ignore"):  # c / tiny atom = inf: clipped to a zero tail below
            ratio = c[:, None] / values[None, :]
        return (probs[None, :] * special.betainc(self.alpha, self.alpha, np.clip((1 - ratio) / 2, 0, 1))).sum(1)

    def sup(self, M: Magnitude) -> float:
        return M.sup

    def kinks(self, M: Magnitude) -> np.ndarray:
        return np.array([])

    def quantile(self, M: Magnitude, p: np.ndarray) -> np.ndarray:
        if M.is_constant:
            return M.m * (1 - 2 * special.betaincinv(self.alpha, self.alpha, p))
        low, high = M.value_range
        return tabulated_quantile(lambda c: self.tail(M, c), low * 1e-6, high, p)


class StandardNormal:
    """S ~ N(0, 1) (the Gaussian, by rotation invariance: <u, X> ~ N(0, ||u||_2^2 / (2c)))."""

    def describe(self) -> str:
        return "N(0, 1)"

    def stop_loss(self, M: ConstantMagnitude, c: np.ndarray) -> np.ndarray:
        z = c / M.m
        return M.m * (stats.norm.pdf(z) - z * stats.norm.sf(z)) * (1 + 1e-12)

    def tail(self, M: ConstantMagnitude, c: np.ndarray) -> np.ndarray:
        return stats.norm.sf(c / M.m)

    def sup(self, M: ConstantMagnitude) -> float:
        return math.inf

    def kinks(self, M: ConstantMagnitude) -> np.ndarray:
        return np.array([])

    def quantile(self, M: ConstantMagnitude, p: np.ndarray) -> np.ndarray:
        return M.m * stats.norm.isf(p)


class GammaLaw:
    """gamma_u = S * M with S a sign law and M >= 0 independent (see the module docstring)."""

    def __init__(self, sign, magnitude: Magnitude, theorem: str = "", exact: bool = True):
        self.sign = sign
        self.magnitude = magnitude
        self.theorem = theorem
        #: False when S * M only dominates gamma_u in the convex order (a sound, looser law)
        self.exact = exact

    def describe(self) -> str:
        m = self.magnitude
        mag = f"{m.m:.6g}" if m.is_constant else f"|{m.expr}|(R), R ~ {m.law.describe()}"
        return f"gamma = S * M, S ~ {self.sign.describe()}, M = {mag}"

    def stop_loss(self, c) -> np.ndarray:
        """Upper bound on E(gamma - c)_+ for c >= 0."""
        return self.sign.stop_loss(self.magnitude, np.asarray(c, dtype=float))

    def envelope(self) -> Envelope:
        """The sound upper bound Phi_up on Phi (lines at the kinks and at approximate quantiles)."""
        sign, M = self.sign, self.magnitude
        kinks = sign.kinks(M)
        if kinks.size and sign.__class__ is not StandardNormal and M.is_constant:
            c = np.concatenate([[0.0], kinks])
        else:
            grid = _P_GRID_COARSE if isinstance(sign, RademacherSum) else _P_GRID
            c = np.concatenate([[0.0], sign.quantile(M, grid)])
        c = np.unique(c[np.isfinite(c) & (c >= 0)])
        e = self.stop_loss(c)
        top = sign.sup(M)
        if math.isfinite(top):  # gamma <= top: the line c = top, e = 0 makes Phi_up(0) = 0
            c, e = np.append(c, top), np.append(e, 0.0)
        # |S| <= s_max gives Phi_gamma(p) <= s_max Phi_M(p / w)-type bounds, so gamma's tail integral
        # diverges with M's (see ProfileMagnitude.tail_integral_diverges)
        return Envelope(c, e, infinite_at_one=bool(M.tail_integral_diverges))
