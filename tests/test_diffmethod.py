"""derive() reproduces every differential-method row of Table A.1 (Appendix A).

Each reference below is written from the paper's statement (with the errata of docs/errata.md) and computed
independently of wulff.diffmethod: scipy / mpmath closed forms (rtol 1e-6) or scipy quadrature of the
paper's Phi (rtol 1e-4). Every derived radius must also lie below its reference (soundness).
"""
import math

import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import integrate, optimize, special, stats

import wulff.distributions as D
from wulff.diffmethod import derive

SETTINGS = settings(max_examples=15, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
lams = st.floats(0.1, 5.0)
rhos = st.lists(st.floats(0.5 + 1e-9, 1 - 1e-9), min_size=1, max_size=4)


@pytest.fixture(autouse=True)
def _no_disk_cache(monkeypatch):
    monkeypatch.setenv("WULFF_CACHE_DIR", "off")


def atanh_sphere_quantile(a, y):
    """atanh(1 - 2x) with I_x(a, a) = y, to 40 digits (mpmath): 1 - 2x keeps its digits as y -> 1/2."""
    with mpmath.workdps(40):
        a, y = mpmath.mpf(a), mpmath.mpf(y)
        start = mpmath.mpf(special.betaincinv(float(a), float(a), float(y)))
        x = mpmath.findroot(lambda x: mpmath.betainc(a, a, 0, x, regularized=True) - y, start)
        return float(mpmath.atanh(1 - 2 * x))


def assert_matches(cert, rho, reference, rtol):
    rho = np.asarray(rho, dtype=float)
    got = cert.radius(rho)
    ref = np.asarray(reference, dtype=float)
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=1e-300)
    assert np.all(got <= ref * (1 + 1e-13)), "a radius above the theorem's value is unsound"


# ---------------------------------------------------------------------------------------------
# closed-form rows (rtol 1e-6)
# ---------------------------------------------------------------------------------------------
@SETTINGS
@given(d=st.integers(1, 400), lam=lams, rho=rhos)
def test_gaussian_l2_theorem_h1_and_symmetry_rows(d, lam, rho):
    q = D.Gaussian(d, lam=lam)
    ref = lam * stats.norm.ppf(rho)
    assert_matches(derive(q, "l2"), rho, ref, 1e-6)
    assert_matches(derive(q, "l1"), rho, ref, 1e-6)  # Symmetry
    assert_matches(derive(q, "linf"), rho, ref / math.sqrt(d), 1e-6)  # Symmetry
    assert derive(q, "l2").tight


@SETTINGS
@given(d=st.integers(1, 400), lam=lams, rho=rhos)
def test_laplace_l1_theorem_i1(d, lam, rho):
    half_excess = 2 * np.asarray(rho) - 1  # exact in floating point
    assert_matches(derive(D.Laplace(d, lam=lam), "l1"), rho, -lam * np.log1p(-half_excess), 1e-6)


@SETTINGS
@given(d=st.integers(1, 400), p=st.floats(1.0, 4.0), lam=lams, rho=rhos)
def test_exp_lp_l1_corollary_m3(d, p, lam, rho):
    q = D.ExpP(d, p=p, lam=lam)
    ref = lam * special.gammaincinv(1 / q.params["p"], 2 * np.asarray(rho) - 1) ** (1 / q.params["p"])
    cert = derive(q, "l1")
    assert_matches(cert, rho, ref, 1e-6)
    assert cert.tight  # Theorem M.1: tight


@SETTINGS
@given(d=st.integers(2, 300), lam=lams, rho=rhos)
def test_exp_linf_l1_theorem_n1(d, lam, rho):
    r = np.asarray(rho)
    with np.errstate(divide="ignore"):
        ref = lam * np.where(r <= 1 - 1 / (2 * d), 2 * d * (r - 0.5), -np.log(2 * d * (1 - r)) + d - 1)
    assert_matches(derive(D.ExpInf(d, lam=lam), "l1"), rho, ref, 1e-6)


@SETTINGS
@given(d=st.integers(2, 300), lam=lams, rho=rhos)
def test_exp_linf_linf_theorem_n4(d, lam, rho):
    assert_matches(derive(D.ExpInf(d, lam=lam), "linf"), rho, -lam * np.log1p(1 - 2 * np.asarray(rho)), 1e-6)


@SETTINGS
@given(d=st.integers(3, 2000), k=st.floats(0.3, 5.0), jfrac=st.floats(0.0, 0.9), lam=lams,
       u=st.lists(st.floats(1e-9, 1.0), min_size=1, max_size=4))
def test_general_exp_linf_l1_theorem_n2(d, k, jfrac, lam, u):
    j = jfrac * (d - 1)  # 0 <= j < d - 1: g' >= 0 and E[1/R] finite
    q = D.ExpInf(d, k=k, j=j, lam=lam)
    k, j = q.params["k"], q.params["j"]
    rho = 0.5 + np.asarray(u) * (0.5 - 1 / (2 * d))  # the theorem's range (1/2, 1 - 1/(2d)]
    with mpmath.workdps(30):  # the Gamma ratio to full double precision (gammaln differences lose ~1e-12)
        ratio = float(mpmath.gamma(mpmath.mpf(d - j) / k) / mpmath.gamma(mpmath.mpf(d - 1 - j) / k))
    assert_matches(derive(q, "l1"), rho, 2 * d * lam / (d - 1) * ratio * (rho - 0.5), 1e-6)


def test_theorem_n2_with_negative_j_is_not_sound_and_derive_stays_below():
    """With j < 0, g'(r) = k r^(k-1) + j / r < 0 for small r, so Phi = E|g'(R)| / (2d) exceeds the
    E g'(R) / (2d) of the proof: the printed radius is too large. derive() stays strictly below it."""
    d, k, j = 10, 2.0, -5.0
    rho = np.array([0.6, 0.9])
    ratio = math.exp(special.gammaln((d - j) / k) - special.gammaln((d - 1 - j) / k))
    paper = 2 * d / (d - 1) * ratio * (rho - 0.5)
    got = derive(D.ExpInf(d, k=k, j=j, lam=1.0), "l1").radius(rho)
    assert np.all(got < paper * (1 - 1e-3))
    # and it equals the corrected bound with E|g'(R)|, computed here by quadrature over R^2 ~ Gamma(7.5)
    shape = (d - j) / k
    mean_abs = integrate.quad(lambda z: abs(k * z ** ((k - 1) / k) + j * z ** (-1 / k))
                              * stats.gamma.pdf(z, shape), 0, np.inf, limit=200)[0]
    np.testing.assert_allclose(got, 2 * d / mean_abs * (rho - 0.5), rtol=1e-6)


@SETTINGS
@given(d=st.integers(2, 2000), excess=st.floats(0.1, 50.0), lam=lams, u=st.lists(st.floats(1e-9, 1.0), min_size=1,
                                                                                   max_size=4))
def test_power_law_linf_l1_theorem_o1(d, excess, lam, u):
    a = d + excess
    q = D.PowerInf(d, a=a, lam=lam)
    rho = 0.5 + np.asarray(u) * (0.5 - 1 / (2 * d))
    assert_matches(derive(q, "l1"), rho, lam * 2 * d / (q.params["a"] - d) * (rho - 0.5), 1e-6)


@SETTINGS
@given(d=st.integers(2, 2000), lam=lams, rho=rhos)
def test_exp_l2_l2_theorem_r1_and_symmetry(d, lam, rho):
    ref = lam * (d - 1) * np.array([atanh_sphere_quantile((d - 1) / 2, 1 - x) for x in rho])
    cert = derive(D.Exp2(d, lam=lam), "l2")
    assert_matches(cert, rho, ref, 1e-6)
    assert_matches(cert.converted("l1"), rho, ref, 1e-6)  # Symmetry
    assert_matches(cert.converted("linf"), rho, ref / math.sqrt(d), 1e-6)  # Symmetry


@SETTINGS
@given(d=st.integers(1, 50), a=st.floats(0.2, 20.0), lam=lams, rho=rhos)
def test_pareto_l1_theorem_q1(d, a, lam, rho):
    q = D.Pareto(d, a=a, lam=lam)
    a = q.params["a"]
    x = 2 * np.asarray(rho) - 1
    ref = lam * x / a * special.hyp2f1(1, a / (a + 1), a / (a + 1) + 1, x ** (1 + 1 / a))
    assert_matches(derive(q, "l1"), rho, ref, 1e-6)


def _li(n, c):
    return mpmath.polylog(n, mpmath.exp(-c))


def _log(c):
    return mpmath.log(1 - mpmath.exp(-c))


@pytest.mark.parametrize("p, series", [
    (1 / 2, lambda c: 2 * (-c * _log(c) + _li(2, c))),
    (1 / 3, lambda c: 3 * (-c ** 2 * _log(c) + 2 * c * _li(2, c) + 2 * _li(3, c))),
    (1 / 4, lambda c: 4 * (-c ** 3 * _log(c) + 3 * c ** 2 * _li(2, c) + 6 * c * _li(3, c) + 6 * _li(4, c))),
])
def test_exp_lp_below_one_corollary_m4_closed_forms(p, series):
    """p = 1/2, 1/3, 1/4, with c = GammaCDF^{-1}(2 (1 - rho); 1/p) (Corollary M.4, docs/errata.md)."""
    lam, rho = 1.7, np.array([0.5 + 1e-9, 0.55, 0.7, 0.9, 0.99, 0.999999])
    c = special.gammainccinv(1 / p, 2 * rho - 1)  # = GammaCDF^{-1}(2 (1 - rho)), accurate as rho -> 1/2
    with mpmath.workdps(40):  # log(1 - e^-c) needs the digits
        ref = lam * np.array([float(series(mpmath.mpf(x))) for x in c])
    assert_matches(derive(D.ExpP(5, p=p, lam=lam), "l1"), rho, ref, 1e-6)


# ---------------------------------------------------------------------------------------------
# integral rows (rtol 1e-4 against scipy quadrature of the paper's Phi)
# ---------------------------------------------------------------------------------------------
def radius_from_phi(Phi, rho, breakpoints=()):
    """int_{1-rho}^{1/2} dp / Phi(p) by scipy quadrature, for each rho."""
    out = []
    for x in np.atleast_1d(rho):
        a = 1 - x
        pts = [b for b in breakpoints if a < b < 0.5]
        val, _ = integrate.quad(lambda pp: 1 / Phi(pp), a, 0.5, points=pts or None, limit=500, epsabs=0,
                                epsrel=1e-10)
        out.append(val)
    return np.array(out)


@SETTINGS
@given(d=st.integers(1, 30), p=st.floats(0.2, 0.95), lam=lams, rho=st.lists(st.floats(0.5 + 1e-6, 0.9999),
                                                                          min_size=1, max_size=3))
def test_exp_lp_below_one_theorem_m2_integral(d, p, lam, rho):
    q = D.ExpP(d, p=p, lam=lam)
    p = q.params["p"]
    ref = []
    with mpmath.workdps(30):
        for x in rho:  # int_{c0}^inf dc / (e^{c^p} - 1) with u = c^p, u0 = GammaCDF^{-1}(2 (1 - rho); 1/p)
            u0 = mpmath.mpf(special.gammainccinv(1 / p, 2 * x - 1))
            integrand = lambda u: u ** (1 / p - 1) / mpmath.expm1(u) / p  # noqa: E731
            ref.append(lam * float(mpmath.quad(integrand, [u0, u0 + 1, u0 + 10, u0 + 100, mpmath.inf])))
    assert_matches(derive(q, "l1"), rho, ref, 1e-4)


@SETTINGS
@given(d=st.integers(2, 60), k=st.floats(1.0, 4.0), lam=lams, rho=st.lists(st.floats(0.5 + 1e-6, 0.9999),
                                                                         min_size=1, max_size=3))
def test_general_exp_linf_linf_theorem_n5(d, k, lam, rho):
    """Eq. (20) with the erratum: Phi(p) = (k/2) GammaSF(c*; (d+k-1)/k) Gamma((d+k-1)/k) / Gamma(d/k)."""
    q = D.ExpInf(d, k=k, lam=lam)
    k = q.params["k"]
    a, b = d / k, (d + k - 1) / k
    log_ratio = special.gammaln(b) - special.gammaln(a)

    def Phi(pp):
        c_star = special.gammaincinv(a, 1 - 2 * pp)
        return k / 2 * special.gammaincc(b, c_star) * math.exp(log_ratio)
    assert_matches(derive(q, "linf"), rho, lam * radius_from_phi(Phi, rho), 1e-4)


@SETTINGS
@given(d=st.integers(2, 60), excess=st.floats(0.5, 30.0), lam=lams,
       rho=st.lists(st.floats(0.5 + 1e-6, 0.9999), min_size=1, max_size=3))
def test_power_law_linf_linf_theorem_o2(d, excess, lam, rho):
    q = D.PowerInf(d, a=d + excess, lam=lam)
    a = q.params["a"]

    def Phi(pp):  # (a - d)/2 * Upsilon(Upsilon^{-1}(2p; d, a - d); d, a + 1 - d)
        c = stats.betaprime.ppf(2 * pp, d, a - d)
        return (a - d) / 2 * stats.betaprime.cdf(c, d, a + 1 - d)
    assert_matches(derive(q, "linf"), rho, lam * radius_from_phi(Phi, rho), 1e-4)


@SETTINGS
@given(d=st.integers(1, 60), k=st.floats(0.3, 4.0), lam=lams,
       rho=st.lists(st.floats(0.5 + 1e-6, 0.9999), min_size=1, max_size=3))
def test_general_exp_l1_l1_theorem_p1(d, k, lam, rho):
    q = D.Exp1(d, k=k, lam=lam)
    k = q.params["k"]
    a, b = d / k, (d + k - 1) / k
    R = 2 * math.exp(special.gammaln(a) - special.gammaln(b)) / k

    def Psi(pp):
        if k >= 1:
            return 1 - special.gammainc(b, special.gammaincinv(a, 1 - 2 * pp))
        return special.gammainc(b, special.gammaincinv(a, 2 * pp))
    if k == 1:  # Psi = 2p: the Laplace-like closed form
        ref = lam * R / 2 * np.log(1 / (2 * (1 - np.asarray(rho))))
    else:
        ref = lam * radius_from_phi(lambda pp: Psi(pp) / R, rho)
    assert_matches(derive(q, "l1"), rho, ref, 1e-4)


def binomial_phi(d):
    """Phi of gamma = 2 Bin(d, 1/2) - d (Theorem P.2): exact top-p mean from the pmf, and its kinks."""
    s = 2 * np.arange(d, -1, -1) - d  # values, descending
    pmf = stats.binom.pmf(np.arange(d, -1, -1), d, 0.5)
    cum_p = np.concatenate([[0.0], np.cumsum(pmf)])
    cum_m = np.concatenate([[0.0], np.cumsum(pmf * s)])

    def Phi(pp):
        i = min(np.searchsorted(cum_p, pp, side="right") - 1, d)
        return cum_m[i] + s[i] * (pp - cum_p[i])
    return Phi, cum_p


@SETTINGS
@given(d=st.integers(1, 60), lam=lams, rho=st.lists(st.floats(0.5 + 1e-6, 0.9999), min_size=1, max_size=3))
def test_laplace_linf_theorem_p2(d, lam, rho):
    Phi, kinks = binomial_phi(d)
    ref = lam * radius_from_phi(Phi, rho, breakpoints=kinks)
    cert = derive(D.Laplace(d, lam=lam), "linf")
    assert_matches(cert, rho, ref, 1e-6)


def test_laplace_linf_approaches_gaussian_for_large_d():
    d, rho = 3000, np.array([0.6, 0.8, 0.95])
    got = derive(D.Laplace(d, lam=1.0), "linf").radius(rho)
    np.testing.assert_allclose(got, stats.norm.ppf(rho) / math.sqrt(d), rtol=0.03)


@pytest.mark.parametrize("d, k", [(2, 2.0), (5, 1.5), (8, 3.0)])
def test_general_exp_l1_linf_theorem_p3(d, k):
    """gamma = (zeta_1 + ... + zeta_d) k xi^((k-1)/k), xi ~ Gamma(d/k): Phi by root finding + Gamma tails."""
    lam, rho = 1.3, np.array([0.55, 0.8, 0.99])
    a, e = d / k, (k - 1) / k
    s = 2 * np.arange(d // 2 + 1, d + 1) - d
    s = s[s > 0].astype(float)
    pi = stats.binom.pmf((s + d) / 2, d, 0.5)
    moment = math.exp(special.gammaln(a + e) - special.gammaln(a))

    def tail(c):  # P(gamma > c), c > 0: xi > (c / (s k))^(1/e)
        return float(np.sum(pi * special.gammaincc(a, (c / (s * k)) ** (1 / e))))

    def stop_loss_mean(c):  # E[gamma; gamma > c]
        t = (c / (s * k)) ** (1 / e)
        return float(np.sum(pi * s * k * moment * special.gammaincc(a + e, t)))

    def Phi(pp):
        if pp >= tail(0.0):  # past the atom at 0: gamma^(p) adds zeros (Definition G.4)
            return stop_loss_mean(0.0)
        c = optimize.brentq(lambda x: tail(x) - pp, 1e-300, 1e6, xtol=1e-300, rtol=1e-14)
        return stop_loss_mean(c) + c * (pp - tail(c))
    ref = lam * radius_from_phi(Phi, rho)
    assert_matches(derive(D.Exp1(d, k=k, lam=lam), "linf"), rho, ref, 1e-4)


# ---------------------------------------------------------------------------------------------
# the API contract
# ---------------------------------------------------------------------------------------------
def test_formula_uses_a_plain_rho_symbol_and_evaluates():
    import sympy as sp
    cert = derive(D.Gaussian(4, lam=2.0), "l2")
    (sym,) = cert.formula.free_symbols
    assert sym.name == "rho"
    assert float(cert.formula.subs(sp.Symbol("rho"), 0.9)) == pytest.approx(2 * stats.norm.ppf(0.9), rel=1e-12)
    assert cert.method == "closed-form"
    assert "Phi" in cert.latex() or "rho" in cert.latex()


def test_unsupported_pairs_raise_not_implemented():
    with pytest.raises(NotImplementedError):
        derive(D.UniformBall(3, lam=1), "l2")
    with pytest.raises(NotImplementedError, match="linf"):
        derive(D.IID(D.t ** 4, 3, lam=1), "linf")  # phi' unbounded: no sound law of the sum
    with pytest.raises(NotImplementedError):
        derive(D.Exp2(3, lam=1), "linf")


def test_bad_input_is_rejected():
    cert = derive(D.Laplace(3, lam=1), "l1")
    for bad in (np.nan, -0.1, 1.5):
        with pytest.raises(ValueError):
            cert.radius(np.array([0.7, bad]))
    with pytest.raises(ValueError, match="adversary"):
        derive(D.Laplace(3, lam=1), "l3")
    with pytest.raises(TypeError):
        derive("Laplace", "l1")
