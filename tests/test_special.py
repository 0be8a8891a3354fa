"""wulff.special: named inverse special functions evaluate like scipy / mpmath and print well."""
import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

from wulff.special import (
    BetaIncInv,
    BetaPrimeCDF,
    BetaPrimeCDFInv,
    GammaIncCInv,
    GammaIncInv,
    NormalQuantile,
    lambdify_numpy,
)

y = sp.Symbol("y")
shapes = st.floats(0.2, 30.0)
probs = st.floats(0.01, 0.99)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(a=shapes, b=shapes, u=probs)
def test_evalf_inverts_the_mpmath_distribution_functions(a, b, u):
    def mp(expr):
        return mpmath.mpf(str(expr.evalf(45)))
    # 40-digit arguments: with Python floats sympy evaluates the inverse at once, to 15 digits, and near
    # x = 1 (small b) the Beta inverse's 1 - x then keeps too few of them for a 1e-12 check
    A, B, U = (sp.Float(v, 40) for v in (a, b, u))
    with mpmath.workdps(50):
        lower = mpmath.gammainc(a, 0, mp(GammaIncInv(A, U)), regularized=True)
        upper = mpmath.gammainc(a, mp(GammaIncCInv(A, U)), mpmath.inf, regularized=True)
        beta = mpmath.betainc(a, b, 0, mp(BetaIncInv(A, B, U)), regularized=True)
    for value in (lower, upper, beta):
        assert float(value) == pytest.approx(u, rel=1e-12)
    assert float(BetaPrimeCDF(2.5, a, b).evalf()) == pytest.approx(stats.betaprime.cdf(2.5, a, b), rel=1e-9)
    assert float(BetaPrimeCDFInv(u, a, b).evalf()) == pytest.approx(stats.betaprime.ppf(u, a, b), rel=1e-7)
    assert float(NormalQuantile(u).evalf()) == pytest.approx(stats.norm.ppf(u), rel=1e-12, abs=1e-15)


def test_lambdify_maps_to_scipy_and_vectorizes():
    u = np.array([0.1, 0.5, 0.9])
    cases = [(NormalQuantile(y), special.ndtri(u)), (GammaIncInv(2.5, y), special.gammaincinv(2.5, u)),
             (GammaIncCInv(2.5, y), special.gammainccinv(2.5, u)),
             (BetaIncInv(3, 4, y), special.betaincinv(3, 4, u)),
             (BetaPrimeCDFInv(y, 3, 4), stats.betaprime.ppf(u, 3, 4)),
             (BetaPrimeCDF(y, 3, 4), stats.betaprime.cdf(u, 3, 4))]
    for expr, expected in cases:
        np.testing.assert_allclose(lambdify_numpy(y, expr)(u), expected, rtol=1e-10)


def test_special_values_and_printing():
    assert NormalQuantile(sp.Rational(1, 2)) == 0 and NormalQuantile(1) == sp.oo
    assert GammaIncInv(1, y) == -sp.log(1 - y)  # Exp(1): the Laplace radius
    assert BetaIncInv(3, 3, sp.Rational(1, 2)) == sp.Rational(1, 2)
    assert BetaPrimeCDF(0, 2, 3) == 0 and BetaPrimeCDFInv(1, 2, 3) == sp.oo
    assert sp.latex(NormalQuantile(y)) == r"\Phi^{-1}\left(y\right)"
    assert sp.latex(BetaIncInv(2, 3, y)) == r"\beta^{-1}\left(y; 2, 3\right)"
    assert sp.latex(BetaPrimeCDF(y, 2, 3)) == r"\Upsilon\left(y; 2, 3\right)"
    assert "GammaIncInv" in str(GammaIncInv(2, y)) and sp.pretty(GammaIncInv(2, y))
    assert sp.latex(NormalQuantile(y) ** 2).startswith(r"\left(\Phi^{-1}")


def test_high_precision_evaluation():
    with mpmath.workdps(50):
        exact = mpmath.sqrt(2) * mpmath.erfinv(mpmath.mpf("0.8"))
        got = NormalQuantile(sp.Rational(9, 10)).evalf(45)
        assert abs(mpmath.mpf(str(got)) - exact) < mpmath.mpf(10) ** -40
