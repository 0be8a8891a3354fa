"""Level shifts of a radial profile, in log-radius coordinates and without cancellation.

For q(x) ∝ exp(-g(||x||_2)) with g increasing, the Neyman-Pearson sets of Theorem T.1 compare q at
two radii r and s whose profile values differ by a fixed amount t = log kappa:

    g(s) = g(r) + tau,   tau = +-t.

At high dimension r is large (sqrt(d) for the Gaussian) while s - r is tiny, so computing s from
g(r) + tau and then s^2 - r^2 loses every digit. We therefore work with eta = log(s / r) and the
profile in log-radius coordinates G(y) = g(e^y), and solve

    D(y, eta) := G(y + eta) - G(y) = tau

with D evaluated in a cancellation-free form: exactly for the two families with a standard radius
law (Lemma U.3), and by Gauss-Legendre quadrature of G' for a declared profile. ``shift`` returns
eta (-inf where g(r) + tau lies below inf g, i.e. no such s exists).
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..distributions import BetaPrimePowerLaw, GammaPowerLaw, Radial
from ..distributions.symbols import r as r_symbol

#: profiles g with sup |j| below this are treated as j = 0 (the law stores shape = (d - j)/k)
_J_ZERO = 1e-12
#: relative accuracy of eta = log(s / r); it moves the argument x of W_d by ~1e-14
_ETA_RTOL = 1e-14


class Profile:
    """G(y) = g(e^y) for an increasing radial profile g; subclasses solve G(y + eta) - G(y) = tau."""

    #: a hashable description of g up to an additive constant (the cache key)
    key: tuple

    def shift(self, y: np.ndarray, tau: np.ndarray) -> np.ndarray:
        """eta with G(y + eta) - G(y) = tau (broadcast), -inf where no such eta exists."""
        raise NotImplementedError


class PowerProfile(Profile):
    """g(r) = c r^k + j log r (+ const), c, k > 0, j >= 0: D = c r^k expm1(k eta) + j eta (Example T.2)."""

    def __init__(self, c: float, k: float, j: float):
        self.c, self.k, self.j = float(c), float(k), float(j)
        self.key = ("power", self.c, self.k, self.j)

    def shift(self, y, tau):
        a = self.c * np.exp(self.k * np.asarray(y, dtype=float))  # c r^k
        tau = np.asarray(tau, dtype=float)
        if self.j == 0.0:
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                z = tau / a
                return np.where(z > -1.0, np.log1p(np.maximum(z, -1.0)) / self.k, -np.inf)
        return self._newton(a, tau)

    def _newton(self, a, tau):
        """f(eta) = a expm1(k eta) + j eta - tau is increasing and convex: Newton from its tangent
        root at eta = 0 stays right of the root and converges monotonically."""
        k, j = self.k, self.j
        a, tau = np.broadcast_arrays(a, tau)
        eta = tau / (a * k + j)
        with np.errstate(over="ignore", invalid="ignore"):
            for _ in range(100):
                growth = a * np.exp(k * eta)
                step = (a * np.expm1(k * eta) + j * eta - tau) / (k * growth + j)
                step = np.where(np.isfinite(step), step, 0.0)
                eta = eta - step
                if np.all(np.abs(step) <= _ETA_RTOL * np.abs(eta)):
                    break
        return eta


class LogPowerProfile(Profile):
    """g(r) = a log(1 + c r^k) (+ const): D = a log1p(c r^k expm1(k eta) / (1 + c r^k)) (Example T.3)."""

    def __init__(self, a: float, c: float, k: float):
        self.a, self.c, self.k = float(a), float(c), float(k)
        self.key = ("logpower", self.a, self.c, self.k)

    def shift(self, y, tau):
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            inv = np.exp(-self.k * np.asarray(y, dtype=float)) / self.c  # 1 / (c r^k)
            z = np.expm1(np.asarray(tau, dtype=float) / self.a) * (1.0 + inv)
            eta = np.log1p(np.maximum(z, -1.0)) / self.k
            return np.where(z > -1.0, eta, -np.inf)


class GenericProfile(Profile):
    """Any increasing profile declared in sympy.

    D(y, eta) = eta * integral_0^1 G'(y + s eta) ds by 12-point Gauss-Legendre when |eta| <= 1/4
    (no cancellation), G(y + eta) - G(y) otherwise; the root is found by safeguarded Newton.
    """

    _NODES, _WEIGHTS = np.polynomial.legendre.leggauss(12)

    def __init__(self, g: sp.Expr):
        self.g = sp.sympify(g)
        y = sp.Symbol("y", real=True)
        G = self.g.subs(r_symbol, sp.exp(y))
        self._G = sp.lambdify(y, G, modules=["numpy", "scipy"])
        self._dG = sp.lambdify(y, sp.diff(G, y), modules=["numpy", "scipy"])
        self.G_at_zero = _limit_at_zero(self.g)
        self.key = ("generic", sp.srepr(self.g))

    def G(self, y):
        with np.errstate(all="ignore"):
            return np.asarray(self._G(np.asarray(y, dtype=float)), dtype=float) + 0.0 * np.asarray(y)

    def dG(self, y):
        with np.errstate(all="ignore"):
            return np.asarray(self._dG(np.asarray(y, dtype=float)), dtype=float) + 0.0 * np.asarray(y)

    def difference(self, y, eta):
        """G(y + eta) - G(y), accurately also for tiny eta."""
        y, eta = np.broadcast_arrays(np.asarray(y, float), np.asarray(eta, float))
        s = 0.5 * (self._NODES + 1.0)
        small = np.abs(eta) <= 0.25
        pts = y[..., None] + eta[..., None] * s
        quad = eta * (self.dG(pts) @ (0.5 * self._WEIGHTS))
        with np.errstate(invalid="ignore"):
            direct = self.G(y + eta) - self.G(y)
        return np.where(small, quad, direct)

    def shift(self, y, tau):
        y, tau = np.broadcast_arrays(np.asarray(y, float), np.asarray(tau, float))
        impossible = self.G(y) + tau <= self.G_at_zero
        lo = np.full(y.shape, -1.0)
        hi = np.full(y.shape, 1.0)
        for _ in range(200):  # bracket: D(lo) <= tau <= D(hi)
            d_lo = self.difference(y, lo)
            d_hi = self.difference(y, hi)
            bad_lo = (d_lo > tau) & ~impossible
            bad_hi = d_hi < tau
            if not (bad_lo.any() or bad_hi.any()):
                break
            lo = np.where(bad_lo, 2.0 * lo, lo)
            hi = np.where(bad_hi, 2.0 * hi, hi)
        eta = np.clip(tau / np.maximum(self.dG(y), 1e-300), lo, hi)
        for _ in range(100):
            f = self.difference(y, eta) - tau
            lo = np.where(f < 0, eta, lo)
            hi = np.where(f >= 0, eta, hi)
            newton = eta - f / np.maximum(self.dG(y + eta), 1e-300)
            inside = (newton >= lo) & (newton <= hi) & np.isfinite(newton)
            new = np.where(inside, newton, 0.5 * (lo + hi))
            done = (np.abs(new - eta) <= _ETA_RTOL * np.abs(eta)) | (f == 0) | (hi - lo <= _ETA_RTOL * np.abs(eta))
            eta = new
            if np.all(done | impossible):
                break
        return np.where(impossible, -np.inf, eta)


def _limit_at_zero(g: sp.Expr) -> float:
    """inf over r > 0 of an increasing g, i.e. g(0+) (may be -inf)."""
    try:
        value = sp.limit(g, r_symbol, 0, "+")
        if value.is_real or value in (sp.oo, -sp.oo):
            return float(value)
    except (NotImplementedError, TypeError, ValueError):
        pass
    with np.errstate(all="ignore"):
        return float(sp.lambdify(r_symbol, g, modules=["numpy", "scipy"])(1e-300))


def _is_increasing(radial: Radial, profile: Profile) -> bool:
    """g' > 0 on a wide logarithmic grid of radii (exact for the two standard families)."""
    if isinstance(profile, (PowerProfile, LogPowerProfile)):
        return True
    ys = np.linspace(-40.0, 40.0, 16001)
    with np.errstate(all="ignore"):
        slope = profile.dG(ys)
        value = profile.G(ys)
    ok = np.isfinite(value) & np.isfinite(slope)
    return bool(np.all(slope[ok] > 0)) and ok.sum() > ys.size // 4


def profile_of(radial: Radial) -> Profile:
    """The :class:`Profile` of an l2-radial distribution; NotImplementedError unless g is increasing
    (Theorem T.1 needs q-bar decreasing)."""
    law = radial.radius_law
    if isinstance(law, GammaPowerLaw):
        j = radial.d - law.k * law.shape
        j = 0.0 if abs(j) < _J_ZERO * max(1.0, radial.d) else j
        if j < 0:
            raise NotImplementedError(
                f"the level set method needs g increasing (Theorem T.1: q-bar decreasing); g = {radial.g} "
                f"has j = {j:g} < 0, so g decreases near r = 0 and the superlevel sets are not balls")
        return PowerProfile(law.c, law.k, j)
    if isinstance(law, BetaPrimePowerLaw):
        return LogPowerProfile(law.alpha + law.beta, law.c, law.k)
    profile = GenericProfile(radial.g)
    if not _is_increasing(radial, profile):
        raise NotImplementedError(
            f"the level set method needs g increasing (Theorem T.1: q-bar decreasing); g = {radial.g} "
            "is not increasing on (0, inf)")
    return profile


__all__ = ["Profile", "PowerProfile", "LogPowerProfile", "GenericProfile", "profile_of"]
