"""The paper's named smoothing distributions (Table A.1), each a thin subclass of :class:`IID`,
:class:`Radial` or :class:`Uniform`, so ``isinstance(q, Laplace)`` holds and ``repr(q)`` rebuilds q.
Every one takes ``d`` and exactly one of ``lam=`` or ``sigma=`` (sigma^2 = E||delta||_2^2 / d).

A family is one declaration plus one class. The declaration (:class:`wulff.catalog.FamilyInfo`:
structure, norm, shape parameters with their rules, defaults and examples, natural adversary, level
sets) lives in the light table :data:`wulff.catalog.FAMILIES`, where ``wulff --help`` reads it
without sympy; a family defined outside wulff may carry it as the class attribute ``declaration``,
which registers it. The class writes only the profile formula (:meth:`NamedFamily.profile_formula`);
:class:`NamedFamily` reads the declaration for the constructor's signature, its parameter checks and
error messages, and the structural class's arguments. :mod:`wulff.distributions.registry` builds a
family from its name.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import ClassVar

import sympy as sp

from wulff.catalog import FAMILIES, FamilyInfo, register_family

from .base import check_dimension, check_real
from .structures import IID, Radial, Uniform
from .symbols import r, t

#: the family classes by name, in catalog order (a registered family's class is added when defined)
FAMILY_CLASSES: dict[str, type[NamedFamily]] = {}


def _signature(info: FamilyInfo) -> inspect.Signature:
    """(d, <shape parameters in order, with their defaults>, lam=None, sigma=None), from the declaration."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    shape = [inspect.Parameter(p.name, kind, annotation=float,
                               default=inspect.Parameter.empty if p.default is None else p.default)
             for p in info.parameters]
    return inspect.Signature([inspect.Parameter("d", kind, annotation=int), *shape,
                              inspect.Parameter("lam", kind, default=None, annotation=float | None),
                              inspect.Parameter("sigma", kind, default=None, annotation=float | None)])


def checked_shape(info: FamilyInfo, d: int, values: Mapping[str, object]) -> dict[str, float]:
    """The shape parameters as floats, each checked against its declared rule (a ValueError "a must
    satisfy a > d/k = 4 (normalizable); got a = 4"), in the order the rules read one another."""
    context: dict[str, float] = {"d": d, **info.fixed}
    for parameter in info.validation_order():
        low, high = parameter.limits(context)
        context[parameter.name] = check_real(parameter.name, values[parameter.name], low=low, high=high,
                                             rule=parameter.rule(context))
    return {key: context[key] for key in info.shape}


def _structural_class(cls: type) -> type:
    """IID, Radial or Uniform: the first class of the MRO that is not a named family."""
    return next(c for c in cls.__mro__ if not issubclass(c, NamedFamily))


class NamedFamily:
    """Marks a named family of Table A.1 (a mixin in front of IID, Radial or Uniform) and builds it
    from its declaration: ``Family(d, <shape parameters>, lam=None, sigma=None)``."""

    #: the family's declaration (from :data:`wulff.catalog.FAMILIES`, or given by the class itself)
    declaration: ClassVar[FamilyInfo | None] = None
    #: the shape parameters besides d, lam and sigma, in constructor order
    shape_parameters: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("declaration")
        info = own if own is not None else FAMILIES.get(cls.__name__)
        if info is None:  # an intermediate class (ExpRadialFamily): no family of its own
            return
        structural = _structural_class(cls)
        if not isinstance(info, FamilyInfo) or info.name != cls.__name__ or info.structure != structural.kind:
            raise ValueError(f"family class {cls.__name__} ({structural.__name__}) does not match its declaration "
                             f"{info!r}")
        if own is not None:
            register_family(own)
        cls.declaration = info
        cls.shape_parameters = info.shape
        cls.__signature__ = _signature(info)
        FAMILY_CLASSES[info.name] = cls

    def __init__(self, *args, **kwargs):
        info = type(self).declaration
        if info is None:
            raise TypeError(f"{type(self).__name__} is not a declared family; instantiate one of its subclasses")
        try:
            given = type(self).__signature__.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{info.name}{type(self).__signature__}: {exc}") from None
        given.apply_defaults()
        values = dict(given.arguments)
        d = check_dimension(values["d"])
        shape = checked_shape(info, d, values)
        exact = {key: sp.nsimplify(value) for key, value in {**info.fixed, **shape}.items()}
        common = {"lam": values["lam"], "sigma": values["sigma"], "name": info.name, "params": shape,
                  "sigma_condition": info.sigma_condition({"d": d, **info.fixed, **shape})}
        structural = self.structural_class
        if structural is Uniform:
            Uniform.__init__(self, info.norm, d, **common)
        elif structural is Radial:
            Radial.__init__(self, self.profile_formula(**exact), info.norm, d, **common)
        else:
            IID.__init__(self, self.profile_formula(**exact), d, **common)

    @staticmethod
    def profile_formula(**shape) -> sp.Expr:
        """The profile at unit scale in the exact shape (and fixed) parameters: phi(t) for an iid
        family, g(r) for a radial one (a uniform family has none)."""
        raise NotImplementedError

    @property
    def structural_class(self) -> type:
        """IID, Radial or Uniform: the structure this family is a case of (cache keys use it)."""
        return _structural_class(type(self))


class Gaussian(NamedFamily, IID):
    """q ∝ exp(-||x/lam||_2^2 / 2).

    >>> Gaussian(3, sigma=0.5)                   # unit variance per coordinate at lam = 1: lam = sigma
    Gaussian(d=3, lam=0.5)
    """

    @staticmethod
    def profile_formula() -> sp.Expr:
        return t ** 2 / 2


class Laplace(NamedFamily, IID):
    """q ∝ exp(-||x/lam||_1).

    >>> round(Laplace(4, sigma=1.0).lam, 6)      # E x_i^2 = 2 lam^2
    0.707107
    """

    @staticmethod
    def profile_formula() -> sp.Expr:
        return sp.Abs(t)


class ExpP(NamedFamily, IID):
    """q ∝ exp(-||x/lam||_p^p), iid coordinates, any p > 0 (Corollaries M.3, M.4).

    >>> q = ExpP(4, p=2, sigma=1.0)              # E x_i^2 = lam^2 Gamma(3/p) / Gamma(1/p) = lam^2 / 2
    >>> q.params, round(q.lam, 6)
    ({'p': 2.0}, 1.414214)
    >>> ExpP(4, p=0, lam=1.0)
    Traceback (most recent call last):
    ...
    ValueError: p must satisfy p > 0; got p = 0
    """

    @staticmethod
    def profile_formula(p) -> sp.Expr:
        return sp.Abs(t) ** p


class Pareto(NamedFamily, IID):
    """q ∝ prod_i (1 + |x_i|/lam)^-(a+1), a > 0 (Theorem Q.1); sigma finite for a > 2.

    >>> round(Pareto(3, a=4, sigma=1.0).lam, 6)  # E x_i^2 = 2 lam^2 / ((a - 1)(a - 2)) = lam^2 / 3
    1.732051
    """

    @staticmethod
    def profile_formula(a) -> sp.Expr:
        return (a + 1) * sp.log(1 + sp.Abs(t))


class ExpRadialFamily(NamedFamily, Radial):
    """q ∝ ||x/lam||^-j exp(-||x/lam||^k) in the declared norm: R^k ~ Gamma((d - j)/k) (Lemma U.3).
    Subclasses fix the norm (and may fix j = 0)."""

    @staticmethod
    def profile_formula(k, j) -> sp.Expr:
        return r ** k + j * sp.log(r)


class ExpInf(ExpRadialFamily):
    """q ∝ ||x/lam||_inf^-j exp(-||x/lam||_inf^k), k > 0, j < d (Theorems N.1, N.2, N.4, N.5).

    >>> ExpInf(2, sigma=1.0)                     # R ~ Gamma(2), E R^2 = 6; E||u||_2^2 = 4/3 on the cube
    ExpInf(d=2, k=1, j=0, lam=0.5)
    """


class Exp2(ExpRadialFamily):
    """q ∝ ||x/lam||_2^-j exp(-||x/lam||_2^k), k > 0, j < d (Theorem R.1, Example T.2).

    >>> Exp2(3, sigma=1.0)                       # R ~ Gamma(d): sigma^2 = lam^2 E R^2 / d = lam^2 (d + 1)
    Exp2(d=3, k=1, j=0, lam=0.5)
    """


class Exp1(ExpRadialFamily):
    """q ∝ exp(-||x/lam||_1^k), k > 0 (Theorems P.1, P.3).

    >>> round(Exp1(5, sigma=1.0).lam, 6)         # k = 1 is the Laplace density: lam = sigma / sqrt(2)
    0.707107
    """


class PowerRadialFamily(NamedFamily, Radial):
    """q ∝ (1 + ||x/lam||^k)^-a in the declared norm: R^k ~ BetaPrime(d/k, a - d/k); a > d/k, finite
    sigma for a > (d+2)/k. Subclasses fix the norm (and may fix k = 1)."""

    @staticmethod
    def profile_formula(a, k) -> sp.Expr:
        return a * sp.log(1 + r ** k)


class PowerInf(PowerRadialFamily):
    """q ∝ (1 + ||x/lam||_inf)^-a, a > d; sigma finite for a > d + 2 (Theorems O.1, O.2).

    >>> round(PowerInf(2, a=6, sigma=1.0).lam, 6)  # R ~ BetaPrime(2, 4): E R^2 = 1; E||u||_2^2 = 4/3
    1.224745
    >>> PowerInf(2, a=2, lam=1.0)
    Traceback (most recent call last):
    ...
    ValueError: a must satisfy a > d/k = 2 (normalizable); got a = 2
    """


class Power2(PowerRadialFamily):
    """q ∝ (1 + ||x/lam||_2^k)^-a, a > d/k; sigma finite for a > (d + 2)/k (Example T.3).

    >>> round(Power2(2, a=6, sigma=1.0).lam, 6)  # R ~ BetaPrime(2, 4): sigma^2 = lam^2 E R^2 / d = lam^2 / 2
    1.414214
    """


class UniformCube(NamedFamily, Uniform):
    """Uniform on [-lam, lam]^d (Theorems N.3, N.6).

    >>> round(UniformCube(3, sigma=1.0).lam, 6)  # E x_i^2 = lam^2 / 3
    1.732051
    """


class UniformBall(NamedFamily, Uniform):
    """Uniform on the l2 ball of radius lam (Theorem S.1).

    >>> UniformBall(2, sigma=1.0)                # E||x||_2^2 = lam^2 d / (d + 2)
    UniformBall(d=2, lam=2)
    """


#: every named family with its example shape parameters (numbers, or functions of d): kept for
#: older code; :mod:`wulff.distributions.registry` is the interface
NAMED_FAMILIES = {name: (FAMILY_CLASSES[name], {**info.defaults, **info.examples})
                  for name, info in FAMILIES.items()}
