"""The symbols in which smoothing densities are declared.

A density on R^d is written q(x) ∝ exp(-psi(x / lam)). Two shapes cover the paper:

* iid:    psi(x) = sum_i phi(x_i), with ``phi`` a sympy expression in :data:`t`;
* radial: psi(x) = g(||x||), with ``g`` a sympy expression in :data:`r` (r > 0).

For hand-written psi (see :func:`wulff.distributions.Density`) the vector variable is :data:`x`,
``norm(x, p)`` stands for ||x||_p and ``coordinate_sum(phi)`` for sum_i phi(x_i).
"""
from __future__ import annotations

import sympy as sp

#: the coordinate variable of an iid profile phi(t)
t = sp.Symbol("t", real=True)
#: the radius variable of a radial profile g(r), r > 0
r = sp.Symbol("r", positive=True)
#: the input vector, as an indexed base: x[i] is its i-th coordinate
x = sp.IndexedBase("x", real=True)
#: coordinate index and dimension used in symbolic sums
i = sp.Idx("i")
d_symbol = sp.Symbol("d", positive=True, integer=True)

#: the norms a radial density may use; "inf" is the max norm
NORMS = (1, 2, "inf")


class Norm(sp.Function):
    """Unevaluated ||x||_p, printed as such. Built by :func:`norm`."""

    nargs = 2
    is_real = True
    is_nonnegative = True

    def _latex(self, printer):  # noqa: D401 - sympy printer hook
        vec, p = self.args
        sub = r"\infty" if p == sp.oo else printer._print(p)
        return r"\left\|%s\right\|_{%s}" % (printer._print(vec), sub)

    def _sympystr(self, printer):
        vec, p = self.args
        return "||%s||_%s" % (printer._print(vec), "inf" if p == sp.oo else printer._print(p))


def norm_key(p: object) -> int | str:
    """Canonical name of a norm: 1, 2 or "inf" (accepts 1, 2, "inf", "linf", float('inf'), sympy oo)."""
    if isinstance(p, str):
        key = p.lower().removeprefix("l")
        if key in ("inf", "infinity", "oo"):
            return "inf"
        if key in ("1", "2"):
            return int(key)
    elif p in (sp.oo, float("inf")):
        return "inf"
    elif p in (1, 2):
        return int(p)
    raise ValueError(f"norm must be one of 1, 2, 'inf'; got {p!r}")


def norm(vec: sp.Basic, p: object) -> sp.Expr:
    """The symbolic norm ||vec||_p for p in {1, 2, "inf"}."""
    key = norm_key(p)
    return Norm(vec, sp.oo if key == "inf" else sp.Integer(key))


def coordinate_sum(phi: sp.Expr, var: sp.Symbol = t) -> sp.Expr:
    """The symbolic coordinate sum sum_{i=1}^{d} phi(x_i) of a profile ``phi`` in ``var``."""
    if not isinstance(phi, sp.Basic):
        phi = sp.sympify(phi) if isinstance(phi, (int, float)) else None
    if phi is None:
        raise TypeError("coordinate_sum needs a sympy expression in t (a string goes through Density)")
    return sp.Sum(phi.subs(var, x[i]), (i, 1, d_symbol))
