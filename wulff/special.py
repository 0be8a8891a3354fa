"""Named sympy functions for the inverse special functions sympy lacks.

Certified radii are often written with inverse distribution functions (Table A.1): the Gaussian
quantile, the inverse regularized incomplete gamma and beta functions, the Beta Prime CDF and its
inverse. Each appears here as a sympy ``Function`` that

* prints as the paper writes it (``str``, pretty and LaTeX);
* evaluates numerically to any precision with ``evalf`` (mpmath);
* lambdifies to a vectorized scipy routine: pass :data:`NUMPY_FUNCTIONS` first in ``modules``
  (:func:`lambdify_numpy` does this); :func:`lambdify_torch` gives the torch twin where torch has
  the function (``NormalQuantile`` is ``torch.special.ndtri``; the iterative inverses have none).

=============================  =======================================  ==========================
function                       meaning                                  scipy
=============================  =======================================  ==========================
``NormalQuantile(y)``          Phi^{-1}(y), standard normal             ``ndtri``
``GammaIncInv(a, y)``          x with P(a, x) = y (regularized lower)    ``gammaincinv``
``GammaIncCInv(a, y)``         x with Q(a, x) = y (regularized upper)    ``gammainccinv``
``BetaIncInv(a, b, y)``        x with I_x(a, b) = y                     ``betaincinv``
``BetaPrimeCDF(x, a, b)``      I_{x/(1+x)}(a, b)                        ``betainc``
``BetaPrimeCDFInv(y, a, b)``   x with BetaPrimeCDF(x, a, b) = y         ``betaincinv``
=============================  =======================================  ==========================
"""
from __future__ import annotations

import math

import mpmath
import numpy as np
import sympy as sp
import torch
from scipy import special as sc
from sympy.printing.lambdarepr import LambdaPrinter

__all__ = ["NormalQuantile", "GammaIncInv", "GammaIncCInv", "BetaIncInv", "BetaPrimeCDF", "BetaPrimeCDFInv",
           "NUMPY_FUNCTIONS", "TORCH_FUNCTIONS", "float_coefficients", "lambdify_numpy",
           "lambdify_torch"]


def _mp_args(fn: sp.Function, prec: int) -> list | None:
    """The arguments as mpmath numbers, or None if one is not numeric."""
    out = []
    for a in fn.args:
        v = a.evalf(prec)
        if not v.is_number or v.free_symbols:
            return None
        try:
            out.append(mpmath.mpf(sp.Float(v, prec)._mpf_))
        except (TypeError, AttributeError):
            return None
    return out


class _NamedSpecial(sp.Function):
    """Common machinery: numeric evaluation through mpmath at the requested precision."""

    latex_name = ""
    pretty_name = ""

    def _pretty(self, printer):
        unicode = getattr(printer, "_use_unicode", True)
        name = (self.pretty_name if unicode else "") or type(self).__name__
        return printer._print_Function(self, func_name=name)

    @classmethod
    def _mpmath(cls, *args):
        raise NotImplementedError

    def _eval_evalf(self, prec):
        args = _mp_args(self, prec + 10)
        if args is None:
            return None
        try:
            with mpmath.workprec(prec + 10):
                value = self._mpmath(*args)
            return sp.Float(value, sp.core.evalf.prec_to_dps(prec))
        except (mpmath.libmp.NoConvergence, ValueError, ZeroDivisionError, OverflowError):
            # huge shape parameters (d = 150528) defeat mpmath's series: fall back to scipy's doubles
            value = NUMPY_FUNCTIONS[type(self).__name__](*[float(a) for a in args])
            return sp.Float(float(value), 15)

    def _latex(self, printer, exp=None):
        body = self._latex_body(printer)
        return body if exp is None else r"\left(%s\right)^{%s}" % (body, exp)

    def _latex_body(self, printer):
        return r"%s\left(%s\right)" % (self.latex_name, ", ".join(printer._print(a) for a in self.args))


class NormalQuantile(_NamedSpecial):
    """Phi^{-1}(y): the standard normal quantile (Theorem H.1)."""

    nargs = 1
    latex_name = r"\Phi^{-1}"
    pretty_name = "Φ⁻¹"

    @classmethod
    def eval(cls, y):
        if y == sp.Rational(1, 2):
            return sp.Integer(0)
        if y == 1:
            return sp.oo
        if y == 0:
            return -sp.oo

    @classmethod
    def _mpmath(cls, y):
        return mpmath.sqrt(2) * mpmath.erfinv(2 * y - 1)


def _mp_inverse(f, target, lo, hi):
    """x in (lo, hi) with the increasing function f(x) = target, by bisection then Newton-free refinement."""
    lo, hi = mpmath.mpf(lo), mpmath.mpf(hi)
    for _ in range(mpmath.mp.prec + 20):
        mid = (lo + hi) / 2 if hi < mpmath.inf else lo * 2 + 1
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
        if hi < mpmath.inf and hi - lo <= mpmath.eps * abs(mid):
            break
    return (lo + hi) / 2


class GammaIncInv(_NamedSpecial):
    """x with P(a, x) = y, P the regularized lower incomplete gamma function (GammaCDF^{-1}(y; a))."""

    nargs = 2
    latex_name = r"P^{-1}"
    pretty_name = "P⁻¹"

    @classmethod
    def eval(cls, a, y):
        if y == 0:
            return sp.Integer(0)
        if y == 1:
            return sp.oo
        if a == 1:
            return -sp.log(1 - y)

    @classmethod
    def _mpmath(cls, a, y):
        return _mp_inverse(lambda x: mpmath.gammainc(a, 0, x, regularized=True), y, 0, mpmath.inf)


class GammaIncCInv(_NamedSpecial):
    """x with Q(a, x) = y, Q the regularized upper incomplete gamma function."""

    nargs = 2
    latex_name = r"Q^{-1}"
    pretty_name = "Q⁻¹"

    @classmethod
    def eval(cls, a, y):
        if y == 1:
            return sp.Integer(0)
        if y == 0:
            return sp.oo
        if a == 1:
            return -sp.log(y)

    @classmethod
    def _mpmath(cls, a, y):
        return _mp_inverse(lambda x: -mpmath.gammainc(a, x, mpmath.inf, regularized=True), -y, 0, mpmath.inf)


class BetaIncInv(_NamedSpecial):
    """x with I_x(a, b) = y: the inverse regularized incomplete beta function (BetaCDF^{-1}(y; a, b))."""

    nargs = 3
    latex_name = r"I^{-1}"
    pretty_name = "I⁻¹"

    @classmethod
    def eval(cls, a, b, y):
        if y == 0:
            return sp.Integer(0)
        if y == 1:
            return sp.Integer(1)
        if y == sp.Rational(1, 2) and a == b:
            return sp.Rational(1, 2)

    @classmethod
    def _mpmath(cls, a, b, y):
        return _mp_inverse(lambda x: mpmath.betainc(a, b, 0, x, regularized=True), y, 0, 1)

    def _latex_body(self, printer):
        a, b, y = (printer._print(v) for v in self.args)
        return r"\beta^{-1}\left(%s; %s, %s\right)" % (y, a, b)


class BetaPrimeCDF(_NamedSpecial):
    """Upsilon(x; a, b) = I_{x/(1+x)}(a, b): the Beta Prime CDF (Theorem O.2)."""

    nargs = 3
    latex_name = r"\Upsilon"
    pretty_name = "Υ"

    @classmethod
    def eval(cls, x, a, b):
        if x == 0:
            return sp.Integer(0)
        if x == sp.oo:
            return sp.Integer(1)

    @classmethod
    def _mpmath(cls, x, a, b):
        return mpmath.betainc(a, b, 0, x / (1 + x), regularized=True)

    def _latex_body(self, printer):
        x, a, b = (printer._print(v) for v in self.args)
        return r"\Upsilon\left(%s; %s, %s\right)" % (x, a, b)


class BetaPrimeCDFInv(_NamedSpecial):
    """Upsilon^{-1}(y; a, b): the inverse Beta Prime CDF."""

    nargs = 3
    latex_name = r"\Upsilon^{-1}"
    pretty_name = "Υ⁻¹"

    @classmethod
    def eval(cls, y, a, b):
        if y == 0:
            return sp.Integer(0)
        if y == 1:
            return sp.oo

    @classmethod
    def _mpmath(cls, y, a, b):
        u = BetaIncInv._mpmath(a, b, y)
        return u / (1 - u)

    def _latex_body(self, printer):
        y, a, b = (printer._print(v) for v in self.args)
        return r"\Upsilon^{-1}\left(%s; %s, %s\right)" % (y, a, b)


def _beta_prime_cdf(x, a, b):
    x = np.asarray(x, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.isposinf(x), 1.0, sc.betainc(a, b, x / (1.0 + x)))


def _beta_prime_cdf_inv(y, a, b):
    u = sc.betaincinv(a, b, y)
    # 1 - u loses digits near 1: take it from the complementary inverse instead
    one_minus_u = sc.betaincinv(b, a, 1.0 - np.asarray(y, dtype=float))
    with np.errstate(divide="ignore"):
        return u / one_minus_u


#: numpy implementations for sympy.lambdify (put first in ``modules``)
NUMPY_FUNCTIONS = {
    "NormalQuantile": sc.ndtri,
    "GammaIncInv": sc.gammaincinv,
    "GammaIncCInv": sc.gammainccinv,
    "BetaIncInv": sc.betaincinv,
    "BetaPrimeCDF": _beta_prime_cdf,
    "BetaPrimeCDFInv": _beta_prime_cdf_inv,
    "atanh": np.arctanh,
    "loggamma": sc.gammaln,
}


def float_coefficients(expr: sp.Expr, digits: int = 20) -> sp.Expr:
    """expr with every non-integer rational, and every integer beyond 2^53, replaced by a Float.

    Profiles built from floats (k = 1.2436338547524 becomes 124363385475241/100000000000000) would
    otherwise lambdify to exact Python integer arithmetic, which can overflow ("int too large to
    convert to float") long before the float value does.
    """
    big = 2 ** 53
    swap = {n: sp.Float(n, digits) for n in expr.atoms(sp.Rational)
            if not n.is_Integer or abs(int(n)) > big}
    return expr.xreplace(swap) if swap else expr


def lambdify_numpy(args, expr: sp.Expr):
    """sympy.lambdify with the named special functions mapped to scipy and float coefficients."""
    return sp.lambdify(args, float_coefficients(sp.sympify(expr)), modules=[NUMPY_FUNCTIONS, "scipy", "numpy"])


def _torch_extremum(pick, clamp_key):
    def extremum(*args):
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        numbers = [float(a) for a in args if not isinstance(a, torch.Tensor)]
        out = tensors[0] if tensors else torch.tensor(pick(numbers), dtype=torch.float64)
        for t in tensors[1:]:
            out = torch.minimum(out, t) if pick is min else torch.maximum(out, t)
        return torch.clamp(out, **{clamp_key: pick(numbers)}) if tensors and numbers else out
    return extremum


#: torch implementations for :func:`lambdify_torch` (names as sympy's LambdaPrinter writes them)
TORCH_FUNCTIONS = {
    "NormalQuantile": torch.special.ndtri, "log": torch.log, "exp": torch.exp, "sqrt": torch.sqrt,
    "atanh": torch.atanh, "loggamma": torch.lgamma, "Abs": torch.abs, "log1p": torch.log1p,
    "expm1": torch.expm1, "where": torch.where, "pi": math.pi, "E": math.e,
    "minimum": _torch_extremum(min, "max"), "maximum": _torch_extremum(max, "min"),
}


class _TorchPrinter(LambdaPrinter):
    """LambdaPrinter whose Piecewise is a chain of ``where`` (a tensor has no Python ``if``)."""

    def _print_Min(self, expr):
        return "minimum(%s)" % ", ".join(self._print(a) for a in expr.args)

    def _print_Max(self, expr):
        return "maximum(%s)" % ", ".join(self._print(a) for a in expr.args)

    def _print_Piecewise(self, expr):
        *pieces, (last, last_cond) = expr.args
        if last_cond != sp.true:
            raise TypeError("a Piecewise without an otherwise branch has no torch form")
        out = self._print(last)
        for value, cond in reversed(pieces):
            out = f"where({self._print(cond)}, {self._print(value)}, {out})"
        return out


def lambdify_torch(args, expr: sp.Expr):
    """The torch twin of :func:`lambdify_numpy` (float64 tensors in and out, on their device), or
    None when the formula uses a function torch lacks (the iterative inverses)."""
    expr = float_coefficients(sp.sympify(expr))
    known = set(TORCH_FUNCTIONS) | {"Piecewise", "Min", "Max"}
    if any(type(f).__name__ not in known for f in expr.atoms(sp.Function)):
        return None
    printer = _TorchPrinter({"fully_qualified_modules": False, "inline": True, "allow_unknown_functions": True,
                             "user_functions": {name: name for name in TORCH_FUNCTIONS}})
    return sp.lambdify(args, expr, modules=[TORCH_FUNCTIONS], printer=printer)
