"""Laws of the radius R = ||delta / lam|| of a radial density, and of |X| for an iid profile.

Lemma U.3: if q(x) ∝ exp(-g(||x||)) on R^d, then R = ||x|| has density ∝ r^(d-1) exp(-g(r)) on
(0, inf), whatever the norm, and x = R * V with V drawn from the cone measure of the unit sphere.
An iid profile phi is the case d = 1: |X| has density ∝ exp(-phi(s)) on (0, inf).

:func:`radius_law` reads the parsed profile (:mod:`.profile`): a standard profile has a closed-form
law, any other normalizable profile a numeric law (tabulated CDF, quadrature moments):

=============================  =======================================
profile g(r)                   law
=============================  =======================================
c r^k + j log r                c R^k ~ Gamma((d - j) / k)
a log(1 + c r^k)               c R^k ~ BetaPrime(d / k, a - d / k)
0 on (0, 1] (uniform ball)     R^d ~ Uniform(0, 1)
anything else normalizable     numeric inverse CDF
=============================  =======================================
"""
from __future__ import annotations

import math
from functools import cached_property

import numpy as np
import sympy as sp
import torch
from scipy import integrate, optimize, special

from ..expressions import as_expression
from .profile import LogPowerProfile, PowerProfile, Profile, parse_profile
from .sampling import (
    SymmetricQuantileTable,
    interpolate_inverse_cdf,
    laplace,
    open_unit_uniform,
    random_signs,
    standard_gamma,
)
from .symbols import r as r_symbol

LOG_R_RANGE = 700.0  # |log r| beyond which numeric laws are truncated (exp overflows near 709)


class RadiusLaw:
    """Law of R > 0 with density ∝ r^(d-1) exp(-g(r)) (Lemma U.3). Subclasses supply the law."""

    def __init__(self, g: sp.Expr, d: int):
        self.g = as_expression(g, {"r": r_symbol}, what="g")
        self.d = int(d)

    # -- moments -----------------------------------------------------------------------------
    def log_moment(self, s: float) -> float:
        """log E[R^s]; +inf when the moment diverges."""
        raise NotImplementedError

    def moment(self, s: float) -> float:
        """E[R^s] (may be inf)."""
        return math.exp(self.log_moment(s)) if self.log_moment(s) < 709 else math.inf

    # -- distribution functions (numpy, vectorized) ------------------------------------------
    def cdf(self, x):
        raise NotImplementedError

    def sf(self, x):
        return 1.0 - self.cdf(x)

    def ppf(self, u):
        raise NotImplementedError

    def isf(self, u):
        return self.ppf(1.0 - np.asarray(u, dtype=float))

    def logpdf(self, x):
        """Normalized log density (numpy)."""
        raise NotImplementedError

    # -- sampling ------------------------------------------------------------------------------
    def sample(self, shape, generator=None, device=None, dtype=torch.float32) -> torch.Tensor:
        """Independent draws of R."""
        u = open_unit_uniform(shape, generator, device, torch.float64)
        return torch.as_tensor(self.ppf(u.cpu().numpy()), dtype=dtype, device=device)

    def sample_symmetric(self, shape, generator=None, device=None, dtype=torch.float32) -> torch.Tensor:
        """Draws of S * R with S an independent random sign (an iid coordinate when d = 1)."""
        return self._quantile_table.sample_symmetric(shape, generator, device, dtype)

    @cached_property
    def _quantile_table(self) -> SymmetricQuantileTable:
        return SymmetricQuantileTable(self.ppf, self.isf)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()}, d={self.d})"

    def describe(self) -> str:
        return f"density ∝ r^(d-1) exp(-({self.g}))"


class GammaPowerLaw(RadiusLaw):
    """c R^k ~ Gamma(shape): the law of profiles g = c r^k + j log r, shape = (d - j) / k."""

    def __init__(self, g, d, c: float, k: float, shape: float):
        super().__init__(g, d)
        self.c, self.k, self.shape = float(c), float(k), float(shape)

    def describe(self) -> str:
        return f"{self.c:g}·R^{self.k:g} ~ Gamma({self.shape:g})"

    def log_moment(self, s: float) -> float:
        a = self.shape + s / self.k
        if a <= 0:
            return math.inf
        return special.gammaln(a) - special.gammaln(self.shape) - (s / self.k) * math.log(self.c)

    def _to_gamma(self, x):
        return self.c * np.power(np.maximum(np.asarray(x, dtype=float), 0.0), self.k)

    def _from_gamma(self, z):
        return np.power(np.asarray(z, dtype=float) / self.c, 1.0 / self.k)

    def cdf(self, x):
        return special.gammainc(self.shape, self._to_gamma(x))

    def sf(self, x):
        return special.gammaincc(self.shape, self._to_gamma(x))

    def ppf(self, u):
        return self._from_gamma(special.gammaincinv(self.shape, u))

    def isf(self, u):
        return self._from_gamma(special.gammainccinv(self.shape, u))

    def logpdf(self, x):
        x = np.asarray(x, dtype=float)
        with np.errstate(divide="ignore"):
            z = self._to_gamma(x)
            return (math.log(self.k) + (self.k * self.shape) * np.log(x) + self.shape * math.log(self.c)
                    - z - np.log(x) - special.gammaln(self.shape))

    def sample(self, shape, generator=None, device=None, dtype=torch.float32):
        z = standard_gamma(shape, self.shape, generator, device, dtype)
        return z.div_(self.c).pow_(1.0 / self.k)

    def sample_symmetric(self, shape, generator=None, device=None, dtype=torch.float32):
        if self.shape == 1.0 / self.k and self.k == 2.0:  # Gaussian coordinate: e^{-c t^2}
            return torch.randn(shape, generator=generator, device=device, dtype=dtype).mul_((2 * self.c) ** -0.5)
        if self.shape == 1.0 / self.k and self.k == 1.0:  # Laplace coordinate: e^{-c |t|}
            return laplace(shape, generator, device, dtype).div_(self.c)
        return super().sample_symmetric(shape, generator, device, dtype)


class BetaPrimePowerLaw(RadiusLaw):
    """c R^k ~ BetaPrime(alpha, beta): the law of profiles g = a log(1 + c r^k), alpha = d/k, beta = a - d/k."""

    def __init__(self, g, d, c: float, k: float, alpha: float, beta: float):
        super().__init__(g, d)
        self.c, self.k, self.alpha, self.beta = float(c), float(k), float(alpha), float(beta)

    def describe(self) -> str:
        return f"{self.c:g}·R^{self.k:g} ~ BetaPrime({self.alpha:g}, {self.beta:g})"

    def log_moment(self, s: float) -> float:
        m = s / self.k
        if not (-self.alpha < m < self.beta):
            return math.inf
        return (special.betaln(self.alpha + m, self.beta - m) - special.betaln(self.alpha, self.beta)
                - m * math.log(self.c))

    def _to_beta(self, x):
        z = self.c * np.power(np.maximum(np.asarray(x, dtype=float), 0.0), self.k)
        return z / (1.0 + z), 1.0 / (1.0 + z)

    def _from_beta(self, b, one_minus_b):
        with np.errstate(divide="ignore", over="ignore"):  # b -> 1 is the quantile at infinity
            return np.power(np.asarray(b) / np.asarray(one_minus_b) / self.c, 1.0 / self.k)

    def cdf(self, x):
        b, _ = self._to_beta(x)
        return special.betainc(self.alpha, self.beta, b)

    def sf(self, x):
        _, b1 = self._to_beta(x)
        return special.betainc(self.beta, self.alpha, b1)

    # B = cR^k/(1 + cR^k) ~ Beta(alpha, beta) and 1 - B ~ Beta(beta, alpha): each of B and 1 - B is inverted
    # from its own tail probability (betainccinv for the upper one), never from 1 - u, which rounds to 1
    # for u < 2^-53 and would put the far tail at the wrong end.
    def ppf(self, u):
        return self._from_beta(special.betaincinv(self.alpha, self.beta, u),
                               special.betainccinv(self.beta, self.alpha, u))

    def isf(self, u):
        return self._from_beta(special.betainccinv(self.alpha, self.beta, u),
                               special.betaincinv(self.beta, self.alpha, u))

    def logpdf(self, x):
        x = np.asarray(x, dtype=float)
        with np.errstate(divide="ignore"):
            z = self.c * np.power(x, self.k)
            return (math.log(self.k) + self.alpha * math.log(self.c) + (self.k * self.alpha - 1) * np.log(x)
                    - (self.alpha + self.beta) * np.log1p(z) - special.betaln(self.alpha, self.beta))

    def sample(self, shape, generator=None, device=None, dtype=torch.float32):
        if self.alpha == 1.0:  # closed-form inverse survival function: (1 + z)^-beta = u
            z = open_unit_uniform(shape, generator, device, dtype).pow_(-1.0 / self.beta).sub_(1.0)
        else:
            z = standard_gamma(shape, self.alpha, generator, device, dtype)
            z.div_(standard_gamma(shape, self.beta, generator, device, dtype))
        return z.div_(self.c).pow_(1.0 / self.k)

    def sample_symmetric(self, shape, generator=None, device=None, dtype=torch.float32):
        if self.alpha == 1.0:  # closed-form inversion beats the table
            return self.sample(shape, generator, device, dtype).mul_(random_signs(shape, generator, device, dtype))
        return super().sample_symmetric(shape, generator, device, dtype)


class BallRadiusLaw(RadiusLaw):
    """R^d ~ Uniform(0, 1): the radius of the uniform law on a unit ball (density ∝ r^(d-1) on (0, 1])."""

    def __init__(self, d: int):
        super().__init__(sp.Integer(0), d)

    def describe(self) -> str:
        return "R^d ~ Uniform(0, 1)"

    def log_moment(self, s: float) -> float:
        return math.log(self.d / (self.d + s)) if self.d + s > 0 else math.inf

    def cdf(self, x):
        return np.power(np.clip(np.asarray(x, dtype=float), 0.0, 1.0), self.d)

    def ppf(self, u):
        return np.power(np.asarray(u, dtype=float), 1.0 / self.d)

    def logpdf(self, x):
        x = np.asarray(x, dtype=float)
        with np.errstate(divide="ignore"):
            return np.where((x > 0) & (x <= 1), math.log(self.d) + (self.d - 1) * np.log(x), -np.inf)

    def sample(self, shape, generator=None, device=None, dtype=torch.float32):
        return open_unit_uniform(shape, generator, device, dtype).pow_(1.0 / self.d)


class NumericRadiusLaw(RadiusLaw):
    """Any normalizable profile: log density integrated numerically in y = log r.

    In y the density is ∝ exp(h(y)), h(y) = d y - g(e^y). Moments come from adaptive quadrature of
    exp(h(y) + s y); the CDF is tabulated on a grid around the mode and inverted by interpolation.
    """

    GRID = 8193

    def __init__(self, g, d):
        super().__init__(g, d)
        self._g = sp.lambdify(r_symbol, self.g, modules=["numpy", "scipy"])

    def describe(self) -> str:
        return f"numeric law, density ∝ r^{self.d - 1} exp(-({self.g}))"

    def h(self, y):
        """d y - g(e^y), with -inf where g overflows or is undefined."""
        y = np.asarray(y, dtype=float)
        with np.errstate(all="ignore"):
            val = self.d * y - np.asarray(self._g(np.exp(y)), dtype=float)
        return np.where(np.isnan(val), -np.inf, val)

    def _window(self, s: float = 0.0) -> tuple[float, float, float]:
        """(y_lo, y_hi, top) of h(y) + s y: outside [y_lo, y_hi] it lies below top - 60."""
        coarse = np.linspace(-LOG_R_RANGE, LOG_R_RANGE, 28001)
        hc = self.h(coarse) + s * coarse
        peak = int(np.argmax(hc))
        step = coarse[1] - coarse[0]
        refined = optimize.minimize_scalar(lambda y: -(float(self.h(y)) + s * y), method="bounded",
                                           bounds=(coarse[peak] - step, coarse[peak] + step))
        top = max(float(hc[peak]), -float(refined.fun))
        inside = np.nonzero(hc > top - 60)[0]
        lo = coarse[max(inside[0] - 1, 0)]
        hi = coarse[min(inside[-1] + 1, coarse.size - 1)]
        return float(lo), float(hi), top

    def _log_integral(self, s: float) -> float:
        """log of the integral of exp(h(y) + s y) dy."""
        lo, hi, top = self._window(s)
        if hi >= LOG_R_RANGE:  # mass escapes to r = inf: the moment diverges
            return math.inf
        val, _ = integrate.quad(lambda y: math.exp(float(self.h(y)) + s * y - top), lo, hi, limit=500)
        return math.log(val) + top

    def log_moment(self, s: float) -> float:
        return self._log_integral(s) - self._log_integral(0.0)

    @cached_property
    def _table(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi, h_max = self._window()
        y = np.linspace(lo, hi, self.GRID)
        w = np.exp(self.h(y) - h_max)
        cdf = np.concatenate([[0.0], np.cumsum((w[1:] + w[:-1]) * np.diff(y) / 2)])
        cdf /= cdf[-1]
        return y, cdf

    def cdf(self, x):
        y, cdf = self._table
        with np.errstate(divide="ignore"):
            return np.interp(np.log(np.asarray(x, dtype=float)), y, cdf, left=0.0, right=1.0)

    def ppf(self, u):
        y, cdf = self._table
        return np.exp(np.interp(np.asarray(u, dtype=float), cdf, y))

    def logpdf(self, x):
        x = np.asarray(x, dtype=float)
        log_norm = self._log_integral(0.0)
        with np.errstate(divide="ignore"):
            return self.h(np.log(x)) - np.log(x) - log_norm

    def sample(self, shape, generator=None, device=None, dtype=torch.float32):
        y, cdf = self._table
        work = torch.float64
        u = open_unit_uniform(shape, generator, device, work)
        grid_c = torch.as_tensor(cdf, dtype=work, device=device)
        grid_y = torch.as_tensor(y, dtype=work, device=device)
        return interpolate_inverse_cdf(u, grid_c, grid_y).exp_().to(dtype)


def is_normalizable(g: sp.Expr, d: int) -> bool:
    """Whether r^(d-1) e^(-g(r)) is integrable on (0, inf): h(y) = d y - g(e^y) must fall at both ends."""
    law = NumericRadiusLaw(g, d)
    ends = np.array([-2 * LOG_R_RANGE / 3, -LOG_R_RANGE / 3, LOG_R_RANGE / 3, 2 * LOG_R_RANGE / 3])
    h = law.h(ends)
    if np.any(np.isposinf(h)):
        return False
    falls_left = h[0] == -np.inf or (h[1] - h[0]) / (ends[1] - ends[0]) > 1e-3
    falls_right = h[3] == -np.inf or (h[3] - h[2]) / (ends[3] - ends[2]) < -1e-3
    return bool(falls_left and falls_right)


def radius_law(profile, d: int) -> RadiusLaw:
    """The law of R with density ∝ r^(d-1) exp(-g(r)), read off the profile of g (a
    :class:`~wulff.distributions.profile.Profile`, or an expression or formula string that is parsed
    into one): closed form for a standard power or log-power profile, numeric otherwise.

    Raises ValueError when the density is not normalizable.
    """
    if not isinstance(profile, Profile):
        g = as_expression(profile, {"r": r_symbol}, what="g")
        if g.free_symbols - {r_symbol}:
            raise ValueError(f"profile {g} has free symbols other than r: {g.free_symbols - {r_symbol}}")
        profile = parse_profile(g, r_symbol)
    g = profile.expr
    if isinstance(profile, PowerProfile) and profile.standard:
        c, k, j = float(profile.c), float(profile.k), float(profile.j)
        if not j < d:
            raise ValueError(f"j must be < d = {d} for r^(d-1) e^(-g) to be normalizable; got j = {j:g}")
        return GammaPowerLaw(g, d, c, k, (d - j) / k)
    if isinstance(profile, LogPowerProfile) and profile.standard:
        a, c, k = float(profile.a), float(profile.c), float(profile.k)
        if not a > d / k:
            raise ValueError(f"a must be > d/k = {d / k:g} for (1 + r^k)^(-a) to be normalizable in "
                             f"dimension d = {d}; got a = {a:g}")
        return BetaPrimePowerLaw(g, d, c, k, d / k, a - d / k)
    if not is_normalizable(g, d):
        raise ValueError(f"exp(-g(r)) with g = {g} is not normalizable in dimension d = {d}: "
                         "r^(d-1) exp(-g(r)) must be integrable on (0, inf)")
    return NumericRadiusLaw(g, d)
