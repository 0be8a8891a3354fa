"""The level set radius is the exact Neyman-Pearson radius, so it dominates the differential method
(Theorem G.6) for every spherical density; in high dimension the two agree (Appendix B)."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from references import theorem_r1

from wulff import diffmethod
from wulff.distributions import Exp2, Power2
from wulff.levelset import certified_tail, derive

pytestmark = pytest.mark.usefixtures("private_cache")



def _decimal(draw, low, high, places=2):
    """A float with a few decimals (kept short so that the hypothesis search stays fast)."""
    return round(draw(st.floats(low, high)), places)


@st.composite
def spherical_densities(draw):
    d = draw(st.integers(2, 200))
    k = draw(st.integers(2, 12)) / 4
    if draw(st.booleans()):
        j = _decimal(draw, 0.0, 0.5 * (d - 1)) if draw(st.booleans()) else 0.0
        return Exp2(d, k=k, j=j, lam=1.0)
    return Power2(d, a=round(d / k + _decimal(draw, 0.5, 20.0), 2), k=k, lam=1.0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(q=spherical_densities())
def test_level_set_dominates_the_differential_method(q):
    """At R = R_diff(rho), the level set method certifies R - 1e-9: 1 - rho <= p(R - 1e-9)."""
    rho = np.array([0.6, 0.9, 0.99])
    r_diff = diffmethod.derive(q, "l2").radius(rho)
    assert np.all(r_diff > 0)
    # below d = 8 the caps' kinks make the default quadrature's error bound (~1e-5) exceed the gap
    p = certified_tail(q, np.maximum(r_diff - 1e-9, 1e-12), half_nodes=2 ** 14 if q.d < 8 else None)
    # where both methods are exact (k = 2, j = 0 is a Gaussian) the gap is the differential radius's
    # 1e-8 margin, and the tail, a lower bound, gives up its own error bound (about 1e-5 relative)
    assert np.all(p >= (1 - rho) * (1 - 1e-5)), (q, r_diff, p)


def test_appendix_b_agreement_at_d_1024():
    """exp(-||x||_2 sqrt(d)): level set and differential radii within 1 % at d = 1024, and the
    differential radius equals Theorem R.1 (computed here)."""
    d = 1024
    q = Exp2(d, k=1, lam=1 / np.sqrt(d))
    rho = np.linspace(0.5, 0.9999, 2001)[1:]
    level_set = derive(q, "l2").radius(rho)
    differential = diffmethod.derive(q, "l2").radius(rho)
    np.testing.assert_allclose(differential, theorem_r1(rho, d) / np.sqrt(d), rtol=1e-6)
    np.testing.assert_allclose(level_set, differential, rtol=0.01)


@pytest.mark.parametrize("q", [Exp2(3072, k=1, lam=1.0), Exp2(3072, k=2, j=3, lam=0.1)])
def test_lookup_loses_under_half_a_percent_at_d_3072(q):
    """R_diff <= R_exact, so radius(rho) >= 0.995 R_diff(rho) bounds the lookup's loss."""
    rho = np.concatenate([np.linspace(0.5, 0.9999, 3001)[1:], 0.5 + np.logspace(-9, -3, 25)])
    level_set = derive(q, "l2").radius(rho)
    differential = diffmethod.derive(q, "l2").radius(rho)
    assert np.all(level_set >= 0.995 * differential)


def test_declared_profile_table_dominates_the_differential_method():
    """A profile with no standard radius law (numeric law, generic level shifts): on the table's grid
    the level set radius is at least the differential one."""
    from wulff.distributions import Radial, r
    q = Radial(r ** 2 / 2 + r, 2, 64, lam=1.0)
    cert = derive(q, "l2")
    radii, p = cert.table["radii"], cert.table["p"]
    assert np.all(np.diff(radii) > 0) and np.all(np.diff(p) <= 0)
    inside = p > 1e-15  # 1 - p is representable
    r_diff = diffmethod.derive(q, "l2").radius(1 - p[inside])
    assert np.all(radii[inside] >= r_diff - 1e-9)
    assert np.max(radii[inside] / r_diff) < 1.01  # and close to it at d = 64
