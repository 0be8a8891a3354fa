"""Two-class certificates: a radius from a lower bound on p_A and an upper bound on p_B (the
runner-up) instead of p_B = 1 - p_A. The proofs are in docs/soundness.md ("Two-class certificates").

Every wulff certificate R (one class: the smoothed probability of A stays above 1/2 within R(rho)
when it is at least rho at x) holds for every soft base classifier F: R^d -> [0, 1], not only for
indicator functions: Theorem G.6 is stated for such F, the Neyman-Pearson lemma behind the
level-set tables (Theorem T.1) and the overlap bound of uniform noise (Theorems N.3, N.6, S.1) hold
for randomized tests. Three forms follow, each sound for every certificate it is applied to:

* **generic form** (every certificate; Theorem 2C.1 of docs/soundness.md): with p_A >= a and
  p_B <= b, b <= 1 - a, the radius R((1 + a - b) / 2). Proof: F = 1 on A, 0 on B, 1/2 on the other
  classes has E F = p_A + (1 - p_A - p_B) / 2 >= (1 + a - b) / 2; within R of that, E F > 1/2 at
  x + eta, i.e. P_eta(A) > P_eta(B). For uniform noise this is the overlap-volume bound (P(A) drops
  by at most the non-overlap mass m(eta), P(B) rises by at most m(eta), the one-class radius being
  the largest eta with m(eta) < rho - 1/2). It reduces to R(a) at b = 1 - a.
* **differential form** (certificates of the differential method, i.e. with a ``gamma_law``;
  Theorem 2C.2): (R(a) + R(1 - b)) / 2. Proof: along a unit path of the adversary's norm, Theorem G.6
  bounds the rate of change of the probability P of any output set by Phi(P); the norm's ball being
  symmetric, also along the reversed path, so |dP/dt| <= Phi(P), and applied to the complement,
  <= Phi(1 - P); Phi~ >= Phi on [0, 1/2] (the certificate's R = lam int_{1-rho}^{1/2} dp / Phi~ (p))
  bounds both by Phi~(min(P, 1 - P)). With G(P) = lam int_{1/2}^{P} dp / Phi~(min(p, 1 - p))
  (antisymmetric: G(1 - P) = -G(P), and G = R above 1/2), G(P_t(A)) >= G(a) - t and
  G(P_t(B)) <= G(b) + t, so P_t(A) > P_t(B) for t < (G(a) - G(b)) / 2 = (R(a) + R(1 - b)) / 2. No
  symmetry of the noise is needed. For the Gaussian against l2 it is Cohen et al.'s Theorem 1,
  sigma / 2 (Phi^-1(p_A) - Phi^-1(p_B)); it is at least the generic form (R is convex, Remark G.5).
* **Neyman-Pearson form** (level-set tables, Theorem T.1; Theorem 2C.3): the largest radius eps of
  the table's grid with G_eps(1 - a) + G_eps(b) < 1, G_eps the growth function (the largest shifted
  mass of a set of q-mass p, given by the Neyman-Pearson sets). Proof: P_eta(A) >= 1 - G(1 - p_A) >=
  1 - G(1 - a) and P_eta(C) <= G(p_C) <= G(b) for every class C other than A. It is the exact
  two-class radius up to the table's grid and quadrature bounds
  (:mod:`wulff.radius.levelset.two_class`); it is at least the generic form (G is concave in p), at
  b = 1 - a it is the table's own condition G(1 - a) < 1/2 (the form is then not computed: R(a)), and
  for the Gaussian it is Cohen et al.'s Theorem 1 rounded down to the grid.
* a norm conversion (radius / C) carries over: every form divides by the same C.

Rounding: the float radii R(.) are lower bounds of their theorems' values; (1 + a - b) / 2 and
(R(a) + R(1 - b)) / 2 are computed exactly (fractions) and rounded down; the Neyman-Pearson form's unit
radius is a grid radius whose condition was checked on upper bounds of G, times lam / C rounded down;
so every two-class radius is a lower bound. The best two-class radius is the largest over the candidates
and forms, and never below the one-class R(a).
"""
from __future__ import annotations

import math
import warnings
from fractions import Fraction

from wulff.certificate import SMALLEST_KEPT_RADIUS, Certificate, factor_below
from wulff.radius.levelset.two_class import two_class_table

#: the form that gave a radius (``Certification.form``)
ONE_CLASS, GENERIC, DIFFERENTIAL = "p_A", "two-class", "two-class (differential)"
NEYMAN_PEARSON = "two-class (Neyman-Pearson)"


def round_down(value: Fraction) -> float:
    """The largest float <= ``value``."""
    out = float(value)
    return math.nextafter(out, -math.inf) if Fraction(out) > value else out


def members(certificate: Certificate) -> tuple[Certificate, ...]:
    """The candidates a (best) certificate takes the maximum over; itself when it is a single one."""
    return tuple(getattr(certificate, "certificates", None) or (certificate,))


def is_differential(certificate: Certificate) -> bool:
    """A certificate of the differential method (Theorem G.6), maybe read through a norm conversion."""
    return bool(certificate.gamma_law)


def round_up(value: Fraction) -> float:
    """The smallest float >= ``value``."""
    out = float(value)
    return math.nextafter(out, math.inf) if Fraction(out) < value else out


def check_bounds(rho_a: float, rho_b: float) -> tuple[float, float]:
    """0 <= rho_a, rho_b <= 1; rho_b is capped at 1 - rho_a (rounded up: p_B <= 1 - p_A always holds)."""
    for name, value in (("rho_a", rho_a), ("rho_b", rho_b)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"{name} must be a probability bound in [0, 1]; got {value!r}")
    return float(rho_a), min(float(rho_b), round_up(1 - Fraction(float(rho_a))))


def generic_rho(rho_a: float, rho_b: float) -> float:
    """(1 + rho_a - rho_b) / 2 rounded down: the probability of the soft classifier of Theorem 2C.1."""
    return round_down((1 + Fraction(rho_a) - Fraction(rho_b)) / 2)


def member_radius(certificate: Certificate, rho_a: float, rho_b: float, above: float = 0.0) -> tuple[float, str]:
    """The two-class radius of one certificate and its form (the larger of the forms that apply); the
    Neyman-Pearson form is searched only above ``above`` and the other forms' radii (it is the costly one)."""
    best = (float(certificate.radius(rho_a)), ONE_CLASS)
    generic = float(certificate.radius(generic_rho(rho_a, rho_b)))
    if generic > best[0]:
        best = (generic, GENERIC)
    if is_differential(certificate) and rho_a > 0.5:
        mirrored = float(certificate.radius(round_down(1 - Fraction(rho_b))))
        differential = round_down((Fraction(float(certificate.radius(rho_a))) + Fraction(mirrored)) / 2)
        if differential > best[0]:
            best = (differential, DIFFERENTIAL)
    neyman_pearson = neyman_pearson_radius(certificate, rho_a, rho_b, above=max(best[0], above))
    if neyman_pearson > best[0]:
        best = (neyman_pearson, NEYMAN_PEARSON)
    return best


def neyman_pearson_radius(certificate: Certificate, rho_a: float, rho_b: float, above: float = 0.0) -> float:
    """Theorem 2C.3 for a level-set certificate (0.0 for any other, and unless 1/2 < rho_a and
    rho_b < 1 - rho_a): the table's unit radius (:mod:`wulff.radius.levelset.two_class`) times
    lam / C rounded down (:func:`~wulff.certificate.factor_below`, C the norm conversion's constant).
    Only radii above ``above`` (a radius already given by another form) are searched; 0.0 if none."""
    if not (rho_a > 0.5 and Fraction(rho_b) < 1 - Fraction(rho_a)):
        return 0.0
    table = two_class_table(certificate)
    if table is None:
        return 0.0
    scale = certificate.lam / certificate.conversion if certificate.conversion != 1 else certificate.lam
    factor = factor_below(scale)
    try:
        unit = table.unit_radius(rho_a, rho_b, above=above / factor)
    except ArithmeticError as exc:  # the other forms stand (sound); say so rather than lose the input
        warnings.warn(f"two-class Neyman-Pearson form skipped at rho_a={rho_a!r}, rho_b={rho_b!r}: {exc}",
                      RuntimeWarning, stacklevel=2)
        return 0.0
    radius = unit * factor
    return radius if radius >= SMALLEST_KEPT_RADIUS else 0.0


def two_class_radius(certificate: Certificate, rho_a: float, rho_b: float) -> tuple[float, str]:
    """The certified radius when p_A >= ``rho_a`` and p_B <= ``rho_b`` (p_B the largest probability of
    any class other than A), with the form that gave it: :data:`ONE_CLASS` (R(rho_a), the p_A form),
    :data:`GENERIC`, :data:`DIFFERENTIAL` or :data:`NEYMAN_PEARSON` (module docstring). 0.0 unless
    rho_a > 1/2 (abstain, as CERTIFY). Never below R(rho_a); at rho_b = 1 - rho_a it is R(rho_a) (up to
    rounding down)."""
    rho_a, rho_b = check_bounds(rho_a, rho_b)
    if rho_a <= 0.5:
        return 0.0, ONE_CLASS
    best = (0.0, ONE_CLASS)
    for member in members(certificate):  # the largest, the first of equals
        radius_form = member_radius(member, rho_a, rho_b, above=best[0])
        if radius_form[0] > best[0]:
            best = radius_form
    return best
