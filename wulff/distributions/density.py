"""Recognition of hand-written exponents psi: ``Density(psi, d, lam|sigma)``."""
from __future__ import annotations

import sympy as sp

from ..expressions import as_expression
from .base import Distribution, ParameterError
from .structures import IID, Radial
from .symbols import Norm, coordinate_sum, norm, norm_key, r, t, x

SUPPORTED_FORMS = """supported forms of psi (q(x) ∝ exp(-psi(x / lam))):
  iid:     a * coordinate_sum(phi) + b      e.g. coordinate_sum(abs(t)**3)   -> IID(a*phi, d)
  radial:  g(norm(x, p)), p in {1, 2, 'inf'}  e.g. norm(x, 2)**2 / 2           -> Radial(g, p, d)
(with t, x, norm and coordinate_sum from wulff.distributions)"""

#: the names a psi written as a string may use (read by the restricted parser of wulff.expressions)
PSI_VARIABLES = {"x": x, "t": t, "norm": norm, "coordinate_sum": coordinate_sum}


def _as_iid_profile(psi: sp.Expr) -> sp.Expr | None:
    """a * sum_i f(x_i) + b  ->  a * f(t); None if psi has another shape."""
    sums = list(psi.atoms(sp.Sum))
    if len(sums) != 1:
        return None
    (s,) = sums
    term, (idx, *_bounds) = s.function, s.limits[0]
    slot = sp.Dummy("S")
    outer = psi.subs(s, slot)
    if outer.free_symbols - {slot} or not outer.is_polynomial(slot) or sp.degree(outer, slot) != 1:
        return None
    a = outer.coeff(slot, 1)
    indexed = [e for e in term.atoms(sp.Indexed) if e.base == x]
    if not indexed or any(e.indices != (idx,) for e in indexed):
        return None
    phi = (a * term).subs(x[idx], t)
    return None if phi.free_symbols - {t} else phi


def _as_radial_profile(psi: sp.Expr) -> tuple[sp.Expr, object] | None:
    """g(||x||_p)  ->  (g(r), p); None if psi involves x otherwise or two different norms."""
    norms = list(psi.atoms(Norm))
    if len(norms) != 1 or norms[0].args[0] != x:
        return None
    (nx,) = norms
    g = psi.subs(nx, r)
    if g.has(x) or g.free_symbols - {r}:
        return None
    return g, norm_key(nx.args[1])


def Density(psi, d: int, lam: float | None = None, sigma: float | None = None, **kwargs) -> Distribution:
    """The distribution q(x) ∝ exp(-psi(x / lam)) for a hand-written sympy ``psi`` (or a string such as
    ``"norm(x, 2)**2 / 2"``, read by :func:`wulff.expressions.parse_expression` with x, t, norm and
    coordinate_sum in scope; never evaluated as Python).

    Returns the equivalent :class:`IID` or :class:`Radial` object; other forms raise
    NotImplementedError listing the supported ones.
    """
    try:
        psi = as_expression(psi, PSI_VARIABLES, what="psi")
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"psi must be a sympy expression; {exc}") from exc
    phi = _as_iid_profile(psi)
    if phi is not None:
        return IID(phi, d, lam=lam, sigma=sigma, **kwargs)
    radial = _as_radial_profile(psi)
    if radial is not None:
        g, p = radial
        return Radial(g, p, d, lam=lam, sigma=sigma, **kwargs)
    raise NotImplementedError(f"cannot recognize the structure of psi = {psi}.\n{SUPPORTED_FORMS}")
