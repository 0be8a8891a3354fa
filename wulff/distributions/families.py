"""The paper's named smoothing distributions (Table A.1), each a thin subclass of :class:`IID`,
:class:`Radial` or :class:`Uniform`, so ``isinstance(q, Laplace)`` holds and ``repr(q)`` rebuilds q.
Every one takes ``d`` and exactly one of ``lam=`` or ``sigma=`` (sigma^2 = E||delta||_2^2 / d).

The names, shape parameters, defaults and example values live in the light table
:data:`wulff.catalog.FAMILIES`; :mod:`wulff.distributions.registry` builds a family from its name.
"""
from __future__ import annotations

import sympy as sp

from wulff.catalog import FAMILIES

from .base import check_dimension, check_real
from .structures import IID, Radial, Uniform
from .symbols import r, t


def _j_below_d(j, d: int) -> float:
    return check_real("j", j, high=d, rule=f"j < d = {d}")


class NamedFamily:
    """Marks a named family of Table A.1 (a mixin in front of IID, Radial or Uniform)."""

    #: the shape parameters besides d, lam and sigma, in constructor order
    shape_parameters: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        info = FAMILIES.get(cls.__name__)
        if info is not None:
            cls.shape_parameters = info.shape

    @property
    def structural_class(self) -> type:
        """IID, Radial or Uniform: the structure this family is a case of (cache keys use it)."""
        return next(c for c in type(self).__mro__ if not issubclass(c, NamedFamily))

    def _shape(self, **values) -> dict[str, float]:
        return {k: values[k] for k in self.shape_parameters}


class Gaussian(NamedFamily, IID):
    """q ∝ exp(-||x/lam||_2^2 / 2)."""

    def __init__(self, d: int, lam: float | None = None, sigma: float | None = None):
        IID.__init__(self, t ** 2 / 2, d, lam=lam, sigma=sigma, name="Gaussian")


class Laplace(NamedFamily, IID):
    """q ∝ exp(-||x/lam||_1)."""

    def __init__(self, d: int, lam: float | None = None, sigma: float | None = None):
        IID.__init__(self, sp.Abs(t), d, lam=lam, sigma=sigma, name="Laplace")


class ExpP(NamedFamily, IID):
    """q ∝ exp(-||x/lam||_p^p), iid coordinates, any p > 0 (Corollaries M.3, M.4)."""

    def __init__(self, d: int, p: float, lam: float | None = None, sigma: float | None = None):
        p = check_real("p", p, low=0.0, rule="p > 0")
        IID.__init__(self, sp.Abs(t) ** sp.nsimplify(p), d, lam=lam, sigma=sigma, name="ExpP", params={"p": p})


class Pareto(NamedFamily, IID):
    """q ∝ prod_i (1 + |x_i|/lam)^-(a+1), a > 0 (Theorem Q.1); sigma finite for a > 2."""

    def __init__(self, d: int, a: float, lam: float | None = None, sigma: float | None = None):
        a = check_real("a", a, low=0.0, rule="a > 0")
        IID.__init__(self, (sp.nsimplify(a) + 1) * sp.log(1 + sp.Abs(t)), d, lam=lam, sigma=sigma,
                     name="Pareto", params={"a": a}, sigma_condition="a > 2")


class ExpRadialFamily(NamedFamily, Radial):
    """q ∝ ||x/lam||^-j exp(-||x/lam||^k) in the norm ``NORM``: R^k ~ Gamma((d - j)/k) (Lemma U.3).
    Subclasses fix the norm (and may drop j, keeping j = 0)."""

    NORM: int | str = 2

    def __init__(self, d: int, k: float = 1, j: float = 0, lam: float | None = None, sigma: float | None = None):
        d = check_dimension(d)
        k = check_real("k", k, low=0.0, rule="k > 0")
        j = _j_below_d(j, d)
        g = r ** sp.nsimplify(k) + sp.nsimplify(j) * sp.log(r)
        Radial.__init__(self, g, self.NORM, d, lam=lam, sigma=sigma, name=type(self).__name__,
                        params=self._shape(k=k, j=j))


class ExpInf(ExpRadialFamily):
    """q ∝ ||x/lam||_inf^-j exp(-||x/lam||_inf^k), k > 0, j < d (Theorems N.1, N.2, N.4, N.5)."""

    NORM = "inf"


class Exp2(ExpRadialFamily):
    """q ∝ ||x/lam||_2^-j exp(-||x/lam||_2^k), k > 0, j < d (Theorem R.1, Example T.2)."""

    NORM = 2


class Exp1(ExpRadialFamily):
    """q ∝ exp(-||x/lam||_1^k), k > 0 (Theorems P.1, P.3)."""

    NORM = 1

    def __init__(self, d: int, k: float = 1, lam: float | None = None, sigma: float | None = None):
        super().__init__(d, k, 0, lam=lam, sigma=sigma)


class PowerRadialFamily(NamedFamily, Radial):
    """q ∝ (1 + ||x/lam||^k)^-a in the norm ``NORM``: R^k ~ BetaPrime(d/k, a - d/k); a > d/k, finite
    sigma for a > (d+2)/k. Subclasses fix the norm (and may fix k = 1)."""

    NORM: int | str = 2

    def __init__(self, d: int, a: float, k: float = 1, lam: float | None = None, sigma: float | None = None):
        d = check_dimension(d)
        k = check_real("k", k, low=0.0, rule="k > 0")
        a = check_real("a", a, low=d / k, rule=f"a > d/k = {d / k:g} (normalizable)")
        Radial.__init__(self, sp.nsimplify(a) * sp.log(1 + r ** sp.nsimplify(k)), self.NORM, d, lam=lam,
                        sigma=sigma, name=type(self).__name__, params=self._shape(a=a, k=k),
                        sigma_condition=f"a > (d + 2)/k = {(d + 2) / k:g}")


class PowerInf(PowerRadialFamily):
    """q ∝ (1 + ||x/lam||_inf)^-a, a > d; sigma finite for a > d + 2 (Theorems O.1, O.2)."""

    NORM = "inf"

    def __init__(self, d: int, a: float, lam: float | None = None, sigma: float | None = None):
        super().__init__(d, a, 1, lam=lam, sigma=sigma)


class Power2(PowerRadialFamily):
    """q ∝ (1 + ||x/lam||_2^k)^-a, a > d/k; sigma finite for a > (d + 2)/k (Example T.3)."""

    NORM = 2


class UniformCube(NamedFamily, Uniform):
    """Uniform on [-lam, lam]^d (Theorems N.3, N.6)."""

    def __init__(self, d: int, lam: float | None = None, sigma: float | None = None):
        Uniform.__init__(self, "inf", d, lam=lam, sigma=sigma, name="UniformCube")


class UniformBall(NamedFamily, Uniform):
    """Uniform on the l2 ball of radius lam (Theorem S.1)."""

    def __init__(self, d: int, lam: float | None = None, sigma: float | None = None):
        Uniform.__init__(self, 2, d, lam=lam, sigma=sigma, name="UniformBall")


#: the family classes by name (the order of :data:`wulff.catalog.FAMILIES`)
FAMILY_CLASSES: dict[str, type[NamedFamily]] = {name: globals()[name] for name in FAMILIES}

#: every named family with its example shape parameters (numbers, or functions of d): kept for
#: older code; :mod:`wulff.distributions.registry` is the interface
NAMED_FAMILIES = {name: (FAMILY_CLASSES[name], {**info.defaults, **info.examples})
                  for name, info in FAMILIES.items()}
