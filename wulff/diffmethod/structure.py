"""The law of gamma_u = <u, grad psi(delta)> from the structure of q (DESIGN.md's table).

Nothing here looks at a family's name: the law is read off the structural class (IID profile phi,
or Radial profile g with its norm) and the adversary's vertices u.

=================  =========  ===========================================  ====================
structure          adversary  gamma_u                                      paper
=================  =========  ===========================================  ====================
IID(phi)           l1         sign * phi'(|X|), |X| the coordinate law      M.1, M.2, Q.1
IID(c t^2)         any        N(0, 2c ||u||_2^2) by rotation invariance     H.1, Symmetry
IID(phi), |phi'|   linf       sum_i phi'(X_i) <=_cx L (2 Bin(d, 1/2) - d)   P.2 (exact: Laplace)
  <= L
Radial(g, inf)     l1         S g'(R), S = +-1 w.p. 1/(2d), else 0          N.1, N.2, O.1
Radial(g, inf)     linf       zeta g'(R)                                    N.4, N.5, O.2
Radial(g, 1)       l1         zeta g'(R)                                    I.1, P.1
Radial(g, 1)       linf       (zeta_1 + ... + zeta_d) g'(R)                 P.2, P.3
Radial(g, 2)       l2         B g'(R), B = 2 Beta((d-1)/2, (d-1)/2) - 1    R.1
=================  =========  ===========================================  ====================

For IID x linf with |phi'| <= L, each phi'(X_i) is symmetric and bounded by L, hence dominated in
the convex order by L zeta_i; the convex order is preserved by independent sums, and the top-p mean
E gamma^(p) is monotone in it, so Phi (and the radius) of L (2 Bin(d, 1/2) - d) is sound.
"""
from __future__ import annotations

import math

import sympy as sp

from wulff.distributions import IID, Distribution, Radial, Uniform
from wulff.distributions import r as r_symbol
from wulff.distributions import t as t_symbol

from .laws import GammaLaw, RademacherSum, SphereCoordinate, StandardNormal, SymmetricSign
from .magnitude import ConstantMagnitude, ProfileMagnitude


def profile_derivative(q: IID | Radial) -> sp.Expr:
    """h(r) = phi'(r) (IID, r > 0) or g'(r) (Radial), simplified, in the symbol r (positive)."""
    if isinstance(q, IID):
        expr = sp.diff(q.phi, t_symbol).subs(t_symbol, r_symbol)
    else:
        expr = sp.diff(q.g, r_symbol)
    return sp.simplify(expr)


def magnitude_of(h: sp.Expr, law) -> ConstantMagnitude | ProfileMagnitude:
    """M = |h(R)|: a constant when h does not depend on r, else the numeric profile magnitude."""
    if r_symbol not in h.free_symbols:
        return ConstantMagnitude(abs(float(h)), sp.Abs(h))
    return ProfileMagnitude(h, law)


def quadratic_coefficient(phi: sp.Expr) -> float | None:
    """c when phi = c t^2 + const with c > 0, else None."""
    poly = sp.Poly(phi, t_symbol) if phi.is_polynomial(t_symbol) else None
    if poly is None or poly.degree() != 2 or not poly.coeff_monomial(t_symbol).is_zero:
        return None
    c = float(poly.coeff_monomial(t_symbol ** 2))
    return c if c > 0 else None


def bounded_slope(phi: sp.Expr) -> sp.Expr | None:
    """L = sup_t |phi'(t)| when finite (it is attained as t -> 0+ or t -> inf, or inside), exact
    (a sympy number), else None."""
    h = sp.diff(phi, t_symbol).subs(t_symbol, r_symbol)
    candidates = []
    for point, side in ((0, "+"), (sp.oo, "-")):
        try:
            end = sp.limit(sp.Abs(h), r_symbol, point, side)
            if not math.isfinite(float(end)):
                return None
        except (NotImplementedError, ValueError, TypeError):
            return None
        candidates.append(end)
    slope = sp.simplify(sp.diff(h, r_symbol))
    try:
        roots = [] if slope == 0 else _positive_roots(slope)
        candidates += [sp.Abs(h.subs(r_symbol, s)) for s in roots]
        values = [float(v) for v in candidates]
    except (TypeError, ValueError):
        return None
    return candidates[values.index(max(values))]


def _positive_roots(expr: sp.Expr) -> list:
    """The roots of expr on r > 0; raises ValueError when sympy cannot list them (then the supremum
    of |phi'| is not known and no bound is claimed)."""
    try:
        sol = sp.solveset(expr, r_symbol, sp.Interval.open(0, sp.oo))
    except (NotImplementedError, TypeError) as exc:
        raise ValueError("roots of phi'' unknown") from exc
    if sol is sp.S.EmptySet:
        return []
    if not isinstance(sol, sp.FiniteSet):
        raise ValueError("roots of phi'' unknown")
    return list(sol)


def gamma_law(q: Distribution, adversary: str) -> GammaLaw:
    """The law of gamma_u for q against ``adversary`` (see the module docstring).

    Raises NotImplementedError naming the pair when the engine has no sound law for it.
    """
    if isinstance(q, Uniform):
        raise NotImplementedError(f"{q.structure()} is not a regular density: its certificates are "
                                  "geometric (wulff.levelset), not the differential method")
    if isinstance(q, IID):
        return _iid_law(q, adversary)
    if isinstance(q, Radial):
        return _radial_law(q, adversary)
    raise NotImplementedError(f"the differential method does not know the structure of {q!r}")


def _iid_law(q: IID, adversary: str) -> GammaLaw:
    c = quadratic_coefficient(q.phi)
    if c is not None:  # <u, grad psi> = 2c <u, X> ~ N(0, 2c ||u||_2^2); ||u||_2^2 = 1 (l1, l2) or d (linf)
        norm_u2 = q.d if adversary == "linf" else 1
        return GammaLaw(StandardNormal(), ConstantMagnitude(math.sqrt(2 * c * norm_u2)),
                        theorem="Theorem H.1 (Gaussian, by rotation)")
    if adversary == "l1":
        h = profile_derivative(q)
        return GammaLaw(SymmetricSign(0.5), magnitude_of(h, q.coordinate_law), theorem="Theorems M.1 / M.2")
    if adversary == "linf":
        L = bounded_slope(q.phi)
        if L is None:
            raise NotImplementedError(f"IID x linf needs |phi'| bounded (or phi quadratic) for a sound law of "
                                      f"the sum; phi = {q.phi} has an unbounded derivative")
        exact = r_symbol not in profile_derivative(q).free_symbols  # |phi'| = L a.s. (Laplace)
        return GammaLaw(RademacherSum(q.d), ConstantMagnitude(float(L), L), exact=exact,
                        theorem="Theorem P.2" if exact else "Theorem P.2 with the convex-order bound "
                                                            "sum_i phi'(X_i) <=_cx L (2 Bin(d, 1/2) - d)")
    raise NotImplementedError(f"IID x {adversary} is only derived for quadratic phi (Gaussian); "
                              f"phi = {q.phi}. Use the l1 or l2 certificate with a norm conversion.")


#: (norm of the radial profile, adversary) -> (sign law of S, paper). d may be a sympy symbol.
RADIAL_SIGNS = {
    ("inf", "l1"): (lambda d: ("sparse", sp.Rational(1, 2) / d), "Theorems N.1 / N.2 / O.1"),
    ("inf", "linf"): (lambda d: ("sparse", sp.Rational(1, 2)), "Theorems N.4 / N.5 / O.2"),
    (1, "l1"): (lambda d: ("sparse", sp.Rational(1, 2)), "Theorems I.1 / P.1"),
    (1, "linf"): (lambda d: ("sum", d), "Theorems P.2 / P.3"),
    # in d = 1 the "sphere" is {-1, +1}: B = u_1 is a Rademacher sign (Theorem R.1's Beta((d-1)/2,
    # (d-1)/2) degenerates, and its Gamma((d-1)/2) has a pole)
    (2, "l2"): (lambda d: ("sparse", sp.Rational(1, 2)) if d == 1 else ("sphere", d), "Theorem R.1"),
}


def sign_law(spec: tuple):
    """The numeric sign law of a (kind, parameter) spec from :data:`RADIAL_SIGNS`."""
    kind, value = spec
    if kind == "sparse":
        return SymmetricSign(float(value))
    if kind == "sum":
        return RademacherSum(int(value))
    return SphereCoordinate(int(value)) if int(value) >= 2 else SymmetricSign(0.5)


def _radial_law(q: Radial, adversary: str) -> GammaLaw:
    entry = RADIAL_SIGNS.get((q.norm, adversary))
    if entry is None:
        raise NotImplementedError(f"the differential method has no law for a radial l{q.norm} density against "
                                  f"{adversary} (use a norm conversion)")
    make_spec, theorem = entry
    return GammaLaw(sign_law(make_spec(q.d)), magnitude_of(profile_derivative(q), q.radius_law), theorem=theorem)
