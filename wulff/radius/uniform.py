"""Certificates for uniform noise, derived from the overlap of the support with its shift.

Let q be uniform on a convex body K (scale lam = 1) and A the classifier's wrong-answer set, q(A) =
1 - rho. Shifting by v, the shifted density equals q on K ∩ (K + v) and vanishes off K + v, so the
shifted wrong mass is at most (1 - rho) + (1 - |K ∩ (K + v)| / |K|), with equality for the worst A.
The classifier is certified at v iff this is < 1/2, i.e. iff the overlap fraction exceeds 3/2 - rho.

* Cube [-1, 1]^d: overlap prod_i (1 - |v_i|/2).
  - l1 (Theorem N.3): prod_i (1 - |v_i|/2) >= 1 - ||v||_1 / 2 with equality on an axis, so
    R = 2 (rho - 1/2).
  - linf (Theorem N.6): the worst v is a corner, (1 - eps/2)^d > 3/2 - rho, so
    R = 2 (1 - (3/2 - rho)^(1/d)) (Table A.1 prints a square root: it is the d-th root).
* l2 ball (Theorem S.1): two unit balls eps apart overlap in two caps of height 1 - eps/2; by
  Lemma U.2 the overlap fraction is 2 BetaCDF(1/2 - eps/4; b, b), b = (d + 1)/2, so
  R = 2 - 4 BetaCDF^{-1}(3/4 - rho/2; b, b).

All three are exact (the worst A attains the bound), hence ``tight=True``.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import sympy as sp
import torch
from scipy import special

from wulff.distributions import Distribution, Uniform
from wulff.special import BetaIncInv

from .certificate import Certificate, check_adversary, rho_symbol
from .kernel import TABLE_P_GRID, FunctionKernel, Kernel, TangentTable
from .numeric import exact_scale, factor_below

#: relative shave for radii computed through special-function inverses (never round a radius up)
_SHAVE = 1e-12


def _cube_l1(rho, d):
    """(rho - 1/2), exact for rho in [1/4, 1]; times 2 it is Theorem N.3 (numpy or torch)."""
    return rho - 0.5


def _cube_linf(rho, d):
    """(3/2 - rho)^(1/d) - 1 = expm1(log1p(1/2 - rho) / d) <= 0, stable for d = 150528; times -2 it is
    Theorem N.6 (numpy or torch)."""
    xp = torch if isinstance(rho, torch.Tensor) else np
    out = xp.log1p(0.5 - rho)
    out /= d
    return xp.expm1(out)


class _Multiple(Kernel):
    """R = multiplier * base(rho), with the multiplier folded into the certificate's scale: one
    multiplication by a float rounded toward zero (:func:`~wulff.radius.numeric.factor_below`).

    Both bases lie between 2^-53 / d and 1 in magnitude on (1/2, 1], so the certificate need not
    look for NaN, infinities or underflow there (``finite_above_half``; it checks the scale)."""

    finite_above_half = True
    guarantee = "proved: exact formulas (Theorems N.3, N.6) in correctly rounded steps, shaved by 1e-12"

    def __init__(self, base, d: int, multiplier: float):
        self.base, self.d, self.multiplier = base, d, multiplier
        self._constants: dict = {}

    def _constant(self, factor) -> float:
        if factor not in self._constants:
            exact = sp.Float(abs(self.multiplier), 30) * exact_scale(factor)
            self._constants[factor] = math.copysign(factor_below(exact), self.multiplier)
        return self._constants[factor]

    def __call__(self, rho):
        return self.scaled(np.asarray(rho, dtype=float), 1)

    def unit(self, rho: np.ndarray) -> np.ndarray:
        return self(rho)

    def unit_torch(self, rho: torch.Tensor) -> torch.Tensor:
        return self.scaled(rho, 1)

    def scaled(self, rho, factor, lo=None):
        """multiplier * base(rho) * lam / C, one multiplication rounded toward zero (numpy or torch)."""
        out = self.base(rho, self.d)
        out *= self._constant(factor)
        return out

    def torch(self, rho: torch.Tensor) -> torch.Tensor:
        return self.scaled(rho, 1)


def _ball_l2(rho, d):
    """Theorem S.1 in floating point, sound near rho = 1/2.

    R(rho) = 2 - 4x, x = BetaCDF^{-1}(3/4 - rho/2; b, b), has R'(rho) = 2 / f(x), f the Beta(b, b)
    density; as rho grows x moves away from 1/2, where f (b >= 1) is largest, so R is convex and
    R(rho) >= 2 (rho - 1/2) / f(1/2) (the tangent at 1/2, exact to first order), with
    f(1/2) = 2^(2 - 2b) / B(b, b) computed in log space and rounded up. The formula itself is taken
    minus 2^11 u: scipy's ``betaincinv`` is accurate to a few ulps in absolute terms only (an
    estimate, not a proof), so 4 (1/2 - x) keeps an absolute, not a relative, accuracy near 1/2.
    The larger of the two is returned.
    """
    b = 0.5 * (d + 1)
    x = special.betaincinv(b, b, 0.75 - 0.5 * rho)
    formula = 4.0 * (0.5 - x) * (1 - _SHAVE) - _BETAINCINV_ALLOWANCE
    return np.maximum(formula, _ball_l2_tangent(rho, d))


#: the absolute error allowed for scipy's betaincinv in :func:`_ball_l2` (2^11 u, an estimate)
_BETAINCINV_ALLOWANCE = 2.0 ** 11 * np.finfo(float).eps / 2


def _ball_l2_tangent(rho, d):
    """The tangent of Theorem S.1 at rho = 1/2, 2 (rho - 1/2) / f(1/2) with f(1/2) rounded up
    (:func:`_ball_l2`); numpy or torch, the same operations (so the same floats) in both."""
    return 2.0 * (rho - 0.5) / _ball_l2_tangent_denominator(d)


@functools.lru_cache(maxsize=64)
def _ball_l2_tangent_denominator(d: int) -> float:
    """f(1/2) = 2^(2 - 2b) / B(b, b), b = (d + 1)/2, the Beta(b, b) density at 1/2, computed in log
    space and rounded up by 1e-10."""
    b = 0.5 * (d + 1)
    log_f_half = (2.0 - 2.0 * b) * np.log(2.0) - special.betaln(b, b)
    return float(np.exp(log_f_half) * (1 + 1e-10))


def _formula(name: str, d: int) -> sp.Expr:
    rho = rho_symbol
    if name == "cube-l1":
        return 2 * (rho - sp.Rational(1, 2))
    if name == "cube-linf":
        return 2 * (1 - (sp.Rational(3, 2) - rho) ** sp.Rational(1, d))
    b = sp.Rational(d + 1, 2)
    beta_inv = BetaIncInv(b, b, sp.Rational(3, 4) - rho / 2)
    return 2 - 4 * beta_inv


def _cube_l1_slope(rho, d):
    return rho * 0.0 + 2.0  # numpy or torch, rho's shape


def _cube_linf_slope(rho, d):
    """d/drho of 2 (1 - (3/2 - rho)^(1/d)) = (2 / d) (3/2 - rho)^(1/d - 1); numpy or torch."""
    xp = torch if isinstance(rho, torch.Tensor) else np
    return 2.0 / d * xp.exp((1.0 / d - 1.0) * xp.log1p(0.5 - rho))


def _ball_l2_slope(rho, d):
    """R'(rho) = 2 / f(x), f the Beta(b, b) density at x = BetaCDF^{-1}(3/4 - rho/2; b, b)."""
    b = 0.5 * (d + 1)
    x = special.betaincinv(b, b, 0.75 - 0.5 * rho)
    log_f = (b - 1) * (np.log(x) + np.log1p(-x)) - special.betaln(b, b)
    return 2.0 * np.exp(-log_f)


@functools.lru_cache(maxsize=16)
def _ball_l2_table(d: int) -> TangentTable:
    """Theorem S.1 tabulated, the torch kernel of the ball (torch has no Beta inverse): R is convex
    (see :func:`_ball_l2`), so the tangents of a table in p = 1 - rho bound it from below
    (:class:`~wulff.radius.kernel.TangentTable`). Between grid points it gives up to 1e-8
    relative, so numpy keeps the formula itself."""
    return TangentTable(lambda rho: _ball_l2(rho, d), lambda p: 1.0 / _ball_l2_slope(1.0 - p, d), TABLE_P_GRID)


#: what the torch table of the ball gives up so that it stays below the numpy formula: the table's
#: grid values carry the formula's betaincinv error (at most the allowance, by the same estimate)
#: and so does the formula at any other rho, so twice the allowance, doubled again for the
#: tangents' own roundings
_TABLE_BELOW_FORMULA = 4 * _BETAINCINV_ALLOWANCE


def _ball_l2_torch(rho: torch.Tensor, d: int) -> torch.Tensor:
    """The torch kernel of Theorem S.1: max(table - 4 * allowance, tangent at 1/2). Never above the
    numpy formula :func:`_ball_l2` (whose betaincinv error the allowance bounds, an estimate) and
    nondecreasing in rho: the table is (:class:`~wulff.radius.kernel.TangentTable`), a
    constant shift keeps it so, and the tangent at 1/2 is the very one numpy takes the maximum with."""
    return torch.maximum(_ball_l2_table(d).torch(rho) - _TABLE_BELOW_FORMULA, _ball_l2_tangent(rho, d))


#: (support norm, adversary) -> (name, unit radius, its slope dR/drho, theorem)
_CASES = {
    ("inf", "l1"): ("cube-l1", _cube_l1, _cube_l1_slope, "Theorem N.3"),
    ("inf", "linf"): ("cube-linf", _cube_linf, _cube_linf_slope, "Theorem N.6"),
    (2, "l2"): ("ball-l2", _ball_l2, _ball_l2_slope, "Theorem S.1"),
}


def derive_uniform(q: Distribution, adversary: str) -> Certificate:
    """The exact certificate of uniform noise: UniformCube vs l1 / linf, UniformBall vs l2.

    NotImplementedError for any other distribution or adversary (the other pairs follow by norm
    conversion, :meth:`Certificate.converted`).
    """
    adversary = check_adversary(adversary)
    if not isinstance(q, Uniform) or (q.norm, adversary) not in _CASES:
        raise NotImplementedError(f"no uniform-noise theorem for {q.name} against {adversary}")
    name, unit, slope, theorem = _CASES[(q.norm, adversary)]
    d = q.d
    if name == "ball-l2":
        kernel = FunctionKernel(lambda rho: unit(rho, d), lambda rho: _ball_l2_torch(rho, d),  # table on first use
                                guarantee="estimated: scipy's betaincinv within 2^11 u (Theorem S.1), "
                                          "the tangent at 1/2 below it proved")
    else:
        kernel = _Multiple(unit, d, 2.0 if name == "cube-l1" else -2.0 * (1 - _SHAVE))
    return Certificate(adversary=adversary, method=f"closed form ({theorem})", lam=q.lam, d=d,
                       radius_unit=kernel,
                       formula=q.lam * _formula(name, d),
                       Phi=None, tight=True, source=repr(q), theorem=theorem,
                       slope_unit=lambda rho: slope(rho, d),
                       # the ball's exact slope needs a Beta inverse, which torch lacks: host
                       slope_unit_torch=None if name == "ball-l2" else (lambda rho: slope(rho, d)))
