"""The paper's named smoothing distributions (Table A.1), each a thin constructor over
:class:`IID`, :class:`Radial` or :class:`Uniform`. Every one takes ``d`` and exactly one of
``lam=`` or ``sigma=`` (sigma^2 = E||delta||_2^2 / d)."""
from __future__ import annotations

import sympy as sp

from .base import check_dimension, check_real
from .structures import IID, Radial, Uniform
from .symbols import r, t


def _j_below_d(j, d: int) -> float:
    return check_real("j", j, high=d, rule=f"j < d = {d}")


def Gaussian(d: int, lam: float | None = None, sigma: float | None = None) -> IID:
    """q ∝ exp(-||x/lam||_2^2 / 2)."""
    return IID(t ** 2 / 2, d, lam=lam, sigma=sigma, name="Gaussian")


def Laplace(d: int, lam: float | None = None, sigma: float | None = None) -> IID:
    """q ∝ exp(-||x/lam||_1)."""
    return IID(sp.Abs(t), d, lam=lam, sigma=sigma, name="Laplace")


def ExpP(d: int, p: float, lam: float | None = None, sigma: float | None = None) -> IID:
    """q ∝ exp(-||x/lam||_p^p), iid coordinates, any p > 0 (Corollaries M.3, M.4)."""
    p = check_real("p", p, low=0.0, rule="p > 0")
    return IID(sp.Abs(t) ** sp.nsimplify(p), d, lam=lam, sigma=sigma, name="ExpP", params={"p": p})


def Pareto(d: int, a: float, lam: float | None = None, sigma: float | None = None) -> IID:
    """q ∝ prod_i (1 + |x_i|/lam)^-(a+1), a > 0 (Theorem Q.1); sigma finite for a > 2."""
    a = check_real("a", a, low=0.0, rule="a > 0")
    return IID((sp.nsimplify(a) + 1) * sp.log(1 + sp.Abs(t)), d, lam=lam, sigma=sigma,
               name="Pareto", params={"a": a}, sigma_condition="a > 2")


def _exp_radial(norm, name: str, d: int, k, j, lam, sigma) -> Radial:
    """q ∝ ||x/lam||^-j exp(-||x/lam||^k): R^k ~ Gamma((d - j)/k) (Lemma U.3)."""
    d = check_dimension(d)
    k = check_real("k", k, low=0.0, rule="k > 0")
    j = _j_below_d(j, d)
    g = r ** sp.nsimplify(k) + sp.nsimplify(j) * sp.log(r)
    return Radial(g, norm, d, lam=lam, sigma=sigma, name=name, params={"k": k, "j": j})


def ExpInf(d: int, k: float = 1, j: float = 0, lam: float | None = None, sigma: float | None = None) -> Radial:
    """q ∝ ||x/lam||_inf^-j exp(-||x/lam||_inf^k), k > 0, j < d (Theorems N.1, N.2, N.4, N.5)."""
    return _exp_radial("inf", "ExpInf", d, k, j, lam, sigma)


def Exp2(d: int, k: float = 1, j: float = 0, lam: float | None = None, sigma: float | None = None) -> Radial:
    """q ∝ ||x/lam||_2^-j exp(-||x/lam||_2^k), k > 0, j < d (Theorem R.1, Example T.2)."""
    return _exp_radial(2, "Exp2", d, k, j, lam, sigma)


def Exp1(d: int, k: float = 1, lam: float | None = None, sigma: float | None = None) -> Radial:
    """q ∝ exp(-||x/lam||_1^k), k > 0 (Theorems P.1, P.3)."""
    q = _exp_radial(1, "Exp1", d, k, 0, lam, sigma)
    q.params.pop("j")
    return q


def _power_radial(norm, name: str, d: int, a, k, lam, sigma) -> Radial:
    """q ∝ (1 + ||x/lam||^k)^-a: R^k ~ BetaPrime(d/k, a - d/k); a > d/k, finite sigma for a > (d+2)/k."""
    d = check_dimension(d)
    k = check_real("k", k, low=0.0, rule="k > 0")
    a = check_real("a", a, low=d / k, rule=f"a > d/k = {d / k:g} (normalizable)")
    params = {"a": a} if norm == "inf" else {"a": a, "k": k}
    return Radial(sp.nsimplify(a) * sp.log(1 + r ** sp.nsimplify(k)), norm, d, lam=lam, sigma=sigma,
                  name=name, params=params, sigma_condition=f"a > (d + 2)/k = {(d + 2) / k:g}")


def PowerInf(d: int, a: float, lam: float | None = None, sigma: float | None = None) -> Radial:
    """q ∝ (1 + ||x/lam||_inf)^-a, a > d; sigma finite for a > d + 2 (Theorems O.1, O.2)."""
    return _power_radial("inf", "PowerInf", d, a, 1, lam, sigma)


def Power2(d: int, a: float, k: float = 1, lam: float | None = None, sigma: float | None = None) -> Radial:
    """q ∝ (1 + ||x/lam||_2^k)^-a, a > d/k; sigma finite for a > (d + 2)/k (Example T.3)."""
    return _power_radial(2, "Power2", d, a, k, lam, sigma)


def UniformCube(d: int, lam: float | None = None, sigma: float | None = None) -> Uniform:
    """Uniform on [-lam, lam]^d (Theorems N.3, N.6)."""
    return Uniform("inf", d, lam=lam, sigma=sigma, name="UniformCube")


def UniformBall(d: int, lam: float | None = None, sigma: float | None = None) -> Uniform:
    """Uniform on the l2 ball of radius lam (Theorem S.1)."""
    return Uniform(2, d, lam=lam, sigma=sigma, name="UniformBall")


def _d_plus_10(d: int) -> int:
    """The default exponent a = d + 10 of PowerInf / Power2 (a > d + 2: finite sigma)."""
    return d + 10


#: every named family with the shape parameters the CLI and docs show by default
NAMED_FAMILIES = {
    "Gaussian": (Gaussian, {}),
    "Laplace": (Laplace, {}),
    "ExpP": (ExpP, {"p": 1.5}),
    "ExpInf": (ExpInf, {"k": 1, "j": 0}),
    "Exp2": (Exp2, {"k": 1, "j": 0}),
    "Exp1": (Exp1, {"k": 1}),
    "PowerInf": (PowerInf, {"a": _d_plus_10}),
    "Power2": (Power2, {"a": _d_plus_10, "k": 1}),
    "Pareto": (Pareto, {"a": 4}),
    "UniformCube": (UniformCube, {}),
    "UniformBall": (UniformBall, {}),
}


def default_parameters(name: str, d: int) -> dict[str, float]:
    """The default shape parameters of the named family ``name`` at dimension d (numbers only)."""
    _, defaults = NAMED_FAMILIES[name]
    return {k: float(v(d) if callable(v) else v) for k, v in defaults.items()}
