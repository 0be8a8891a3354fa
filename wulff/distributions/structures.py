"""The three structural classes of smoothing densities (docs/design.md, "Distributions"):

* :class:`IID`     psi(x) = sum_i phi(x_i)          coordinates iid with density ∝ exp(-phi)
* :class:`Radial`  psi(x) = g(||x||_norm)           R * V with R from the radius law (Lemma U.3)
* :class:`Uniform` uniform on the unit ball of a norm (cube for linf, ball for l2)

All sizes are at unit scale; the Distribution base class multiplies by lam.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..expressions import as_expression
from .base import Distribution, ParameterError, check_dimension
from .directions import mean_squared_l2, sample_direction
from .profile import PowerProfile, Profile, parse_profile
from .radius_law import BallRadiusLaw, RadiusLaw, radius_law
from .sampling import symmetric_uniform
from .symbols import coordinate_sum, norm, norm_key, r, t, x


def _read_expression(expr, var: sp.Symbol, what: str) -> sp.Expr:
    """Read a profile (a string through the restricted parser, never sympify) and rename any free
    symbol spelled like ``var`` to ``var`` itself."""
    try:
        expr = as_expression(expr, {var.name: var}, what=what)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"{what} must be a sympy expression in {var}; {exc}") from exc
    if not isinstance(expr, sp.Expr):
        raise ParameterError(f"{what} must be a sympy expression in {var}; got {expr!r}")
    expr = expr.subs({s: var for s in expr.free_symbols if s.name == var.name and s != var})
    extra = expr.free_symbols - {var}
    if extra:
        raise ValueError(f"{what} may only depend on {var}; it also has {sorted(map(str, extra))}")
    if var not in expr.free_symbols:
        raise ValueError(f"{what} must depend on {var}; got the constant {expr}")
    return expr


def _is_even(phi: sp.Expr) -> bool:
    """phi(-t) == phi(t), symbolically or, failing that, at a spread of points."""
    if sp.simplify(phi.subs(t, -t) - phi) == 0:
        return True
    f = sp.lambdify(t, phi, modules=["numpy", "scipy"])
    pts = np.array([0.137, 0.71, 1.3, 2.9, 5.3, 11.7])
    with np.errstate(all="ignore"):
        a, b = np.asarray(f(pts), dtype=float), np.asarray(f(-pts), dtype=float)
    return bool(np.allclose(a, b, rtol=1e-10, atol=1e-12, equal_nan=True))


class IID(Distribution):
    """psi(x) = sum_i phi(x_i / lam): independent coordinates with density ∝ exp(-phi(t)).

    ``phi`` is a sympy expression in :data:`wulff.distributions.t` and must be even; it is parsed once
    into :attr:`profile`, the profile phi(r) on r > 0 (:mod:`.profile`), and |X| follows the radius
    law of that profile in dimension 1 (:attr:`coordinate_law`).

    >>> q = IID(abs(t) ** 3, 8, lam=1.0)         # E x_i^2 = lam^2 Gamma(3/3) / Gamma(1/3)
    >>> round(q.sigma, 6)
    0.610968
    """

    kind = "iid"
    norm = None

    def __init__(self, phi, d: int, lam: float | None = None, sigma: float | None = None, **kwargs):
        phi = _read_expression(phi, t, "phi")
        if not _is_even(phi):
            raise ValueError(f"phi must be even (phi(-t) = phi(t)) for an iid smoothing density; got {phi}")
        self.phi = phi
        self.profile: Profile = parse_profile(phi.subs(t, r), r)
        self.coordinate_law: RadiusLaw = radius_law(self.profile, 1)
        super().__init__(d, lam, sigma, **kwargs)

    @property
    def psi(self) -> sp.Expr:
        return coordinate_sum(self.phi).subs(sp.Symbol("d", positive=True, integer=True), self.d)

    def structure(self) -> str:
        return f"iid, phi(t) = {self.phi}"

    def unit_second_moment(self) -> float:
        return self.coordinate_law.moment(2)

    def _sample_unit(self, n, generator, device, dtype):
        return self.coordinate_law.sample_symmetric((n, self.d), generator, device, dtype)

    def equivalent_forms(self) -> list[Distribution]:
        """c |t|^k with k in {1, 2} is also radial: c ||x||_k^k."""
        p = self.profile
        if isinstance(p, PowerProfile) and p.standard and p.k in (1, 2) and p.j == 0:
            k = int(p.k)
            return [Radial(p.c * r ** k, k, self.d, lam=self.lam, name=self.name, params=self.params)]
        return []


class Radial(Distribution):
    """psi(x) = g(||x / lam||_norm), norm in {1, 2, "inf"}: delta = lam R V (Lemma U.3).

    ``g`` is a sympy expression in :data:`wulff.distributions.r` (r > 0); R has density
    ∝ r^(d-1) exp(-g(r)) (:attr:`radius_law`, read off :attr:`profile`, g parsed once) and V the
    cone measure of the unit sphere.

    >>> q = Radial(r ** 2 / 2, 2, 5, sigma=0.5)  # the Gaussian as a profile: E R^2 = d, so lam = sigma
    >>> q.lam, q.norm
    (0.5, 2)
    """

    kind = "radial"

    def __init__(self, g, norm, d: int, lam: float | None = None, sigma: float | None = None, **kwargs):
        self.g = _read_expression(g, r, "g")
        self.norm = norm_key(norm)
        self.profile: Profile = parse_profile(self.g, r)
        self.radius_law: RadiusLaw = radius_law(self.profile, check_dimension(d))
        super().__init__(d, lam, sigma, **kwargs)

    @property
    def psi(self) -> sp.Expr:
        return self.g.subs(r, norm(x, self.norm))

    def structure(self) -> str:
        return f"radial in l{self.norm}, g(r) = {self.g}"

    def unit_second_moment(self) -> float:
        return self.radius_law.moment(2) * mean_squared_l2(self.norm, self.d) / self.d

    def _sample_unit(self, n, generator, device, dtype):
        radius = self.radius_law.sample((n, 1), generator, device, dtype)
        return sample_direction(self.norm, n, self.d, generator, device, dtype).mul_(radius)

    def equivalent_forms(self) -> list[Distribution]:
        """c ||x||_k^k with k in {1, 2} is also iid: sum_i c |x_i|^k."""
        p = self.profile
        if self.norm in (1, 2) and isinstance(p, PowerProfile) and p.standard and p.k == self.norm and p.j == 0:
            phi = p.c * (sp.Abs(t) ** self.norm if self.norm == 1 else t ** 2)
            return [IID(phi, self.d, lam=self.lam, name=self.name, params=self.params)]
        return []


class Uniform(Distribution):
    """Uniform on the ball {||x||_norm <= lam}: the cube [-lam, lam]^d for linf, the l2 ball for 2.

    >>> round(Uniform("inf", 4, lam=2.0).sigma, 6)   # the cube: E x_i^2 = lam^2 / 3
    1.154701
    """

    kind = "uniform"
    profile = None

    def __init__(self, norm, d: int, lam: float | None = None, sigma: float | None = None, **kwargs):
        self.norm = norm_key(norm)
        self.radius_law = BallRadiusLaw(check_dimension(d))
        super().__init__(d, lam, sigma, **kwargs)

    @property
    def psi(self) -> sp.Expr:
        return sp.Piecewise((sp.Integer(0), norm(x, self.norm) <= 1), (sp.oo, True))

    def structure(self) -> str:
        return f"uniform on the unit l{self.norm} ball"

    def unit_second_moment(self) -> float:
        return self.radius_law.moment(2) * mean_squared_l2(self.norm, self.d) / self.d

    def _sample_unit(self, n, generator, device, dtype):
        if self.norm == "inf":  # the cube: iid U(-1, 1) coordinates
            return symmetric_uniform((n, self.d), generator, device, dtype).mul_(2.0)
        radius = self.radius_law.sample((n, 1), generator, device, dtype)
        return sample_direction(self.norm, n, self.d, generator, device, dtype).mul_(radius)


__all__ = ["IID", "Radial", "Uniform"]
