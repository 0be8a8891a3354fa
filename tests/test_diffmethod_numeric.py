"""Declared densities outside Table A.1, soundness against high-precision references, edge values of
rho, very large d, and the envelope machinery itself."""
import math

import mpmath
import numpy as np
import pytest
import sympy as sp
import torch
from scipy import integrate, optimize, special, stats

import wulff.distributions as D
from wulff.diffmethod import Envelope, derive, derive_symbolic, gamma_law
from wulff.distributions import r, t

EDGES = np.array([0.5, 0.5 + 1e-12, 0.75, 1 - 1e-12, 1.0])


@pytest.fixture(autouse=True)
def _no_disk_cache(monkeypatch):
    monkeypatch.setenv("WULFF_CACHE_DIR", "off")


def below(got, ref, rtol):
    got, ref = np.asarray(got, float), np.asarray(ref, float)
    np.testing.assert_allclose(got, ref, rtol=rtol)
    assert np.all(got <= ref * (1 + 1e-13)), "a radius above the reference is unsound"


# ---------------------------------------------------------------------------------------------
# declared densities outside Table A.1 (issue 3, "Tests")
# ---------------------------------------------------------------------------------------------
def test_iid_cubic_profile_is_the_coordinate_quantile_theorem_m1():
    """IID(|t|^3): lam * CDF^{-1}(rho), the CDF of e^{-|t|^3} computed here by quadrature + root finding."""
    lam, rho = 0.8, np.array([0.55, 0.7, 0.9, 0.99, 0.999999])
    norm = 2 * integrate.quad(lambda s: math.exp(-s ** 3), 0, np.inf, epsabs=0, epsrel=1e-13)[0]

    def cdf(x):
        return 0.5 + integrate.quad(lambda s: math.exp(-s ** 3), 0, x, epsabs=0, epsrel=1e-13)[0] / norm
    ref = [lam * optimize.brentq(lambda x, p=p: cdf(x) - p, 0, 10, xtol=1e-15, rtol=1e-15) for p in rho]
    cert = derive(D.IID(sp.Abs(t) ** 3, 8, lam=lam), "l1")
    below(cert.radius(rho), ref, 1e-6)
    assert cert.tight and cert.method == "closed-form"


def test_iid_square_root_profile_matches_theorem_m2():
    """IID(|t|^(1/2)): int_{c0}^inf dc / (e^{phi(c) - phi(0)} - 1), P(0 <= X <= c0) = 1 - rho.

    With s = v^2, int_0^c e^{-sqrt(s)} ds = 2 (1 - (1 + v) e^{-v}): P(0 <= X <= c) = GammaCDF(sqrt(c); 2) / 2,
    and the integral becomes int_{v0}^inf 2 v dv / (e^v - 1)."""
    lam, rho = 1.3, np.array([0.55, 0.8, 0.95, 0.999])
    ref = []
    with mpmath.workdps(30):
        for p in rho:
            v0 = mpmath.mpf(special.gammaincinv(2, 2 * (1 - p)))
            ref.append(lam * float(mpmath.quad(lambda v: 2 * v / mpmath.expm1(v), [v0, v0 + 10, mpmath.inf])))
    below(derive(D.IID(sp.sqrt(sp.Abs(t)), 8, lam=lam), "l1").radius(rho), ref, 1e-4)


def test_logistic_profile_gives_logit():
    lam, rho = 0.9, np.array([0.55, 0.7, 0.9, 0.99, 0.9999])
    q = D.IID(2 * sp.log(sp.cosh(t / 2)), 5, lam=lam)  # density ∝ 1 / cosh(t/2)^2: the logistic law
    below(derive(q, "l1").radius(rho), lam * special.logit(rho), 1e-4)


def test_radial_half_square_l2_recovers_the_gaussian():
    lam, rho = 1.7, np.array([0.5 + 1e-12, 0.6, 0.9, 0.999])
    cert = derive(D.Radial(r ** 2 / 2, 2, 12, lam=lam), "l2")
    below(cert.radius(rho), lam * stats.norm.ppf(rho), 1e-6)
    assert cert.method == "closed-form"


@pytest.mark.parametrize("adversary", ["l1", "linf"])
def test_radial_linf_profile_r_equals_expinf(adversary):
    rho = np.linspace(0.5, 1.0, 41)
    a = derive(D.Radial(r, "inf", 9, lam=2.0), adversary).radius(rho)
    b = derive(D.ExpInf(9, lam=2.0), adversary).radius(rho)
    np.testing.assert_array_equal(a, b)


def test_radial_l2_nonconstant_slope_is_sound_against_the_rotation_formula():
    """Radial(r^2/2, 2) forced through the sphere-coordinate law B * R (no equivalent form): below and
    close to the Gaussian radius."""
    q = D.Radial(r ** 2 / 2, 2, 6, lam=1.0)
    envelope = gamma_law(q, "l2").envelope()
    rho = np.array([0.6, 0.9, 0.99])
    below(envelope.radius_unit(rho), stats.norm.ppf(rho), 2e-3)


# ---------------------------------------------------------------------------------------------
# soundness against high-precision references
# ---------------------------------------------------------------------------------------------
def mp_radius(Phi, rho):
    with mpmath.workdps(30):
        return [float(mpmath.quad(lambda p: 1 / Phi(p), [1 - mpmath.mpf(x), 0.5])) for x in rho]


def test_general_exp_l1_l1_below_mpmath_reference():
    d, k = 6, 2.5
    a, b = mpmath.mpf(d) / k, mpmath.mpf(d + k - 1) / k
    R = 2 * mpmath.gamma(a) / (k * mpmath.gamma(b))

    def Phi(p):  # Theorem P.1, k >= 1: Psi(p) / R with Psi = 1 - P(b, P^{-1}(a, 1 - 2p))
        x = mpmath.mpf(special.gammainccinv(float(a), float(2 * p)))
        return mpmath.gammainc(b, x, mpmath.inf, regularized=True) / R
    rho = [0.6, 0.9, 0.99]
    below(derive(D.Exp1(d, k=k, lam=1.0), "l1").radius(np.array(rho)), mp_radius(Phi, rho), 1e-4)


def test_pareto_below_mpmath_hypergeometric():
    a, rho = mpmath.mpf(2.5), [0.6, 0.9, 0.999, 0.999999]
    with mpmath.workdps(30):
        excess = [2 * mpmath.mpf(x) - 1 for x in rho]
        ref = [float(z / a * mpmath.hyp2f1(1, a / (a + 1), a / (a + 1) + 1, z ** (1 + 1 / a))) for z in excess]
    below(derive(D.Pareto(4, a=2.5, lam=1.0), "l1").radius(np.array(rho)), ref, 1e-6)


# ---------------------------------------------------------------------------------------------
# edge values of rho, types, monotonicity, large d
# ---------------------------------------------------------------------------------------------
PAIRS = [(D.Gaussian(5, lam=1), "l2"), (D.Laplace(5, lam=1), "l1"), (D.Laplace(5, lam=1), "linf"),
         (D.ExpInf(5, lam=1), "l1"), (D.ExpInf(5, k=2, lam=1), "linf"), (D.ExpInf(5, k=2, j=1, lam=1), "l1"),
         (D.Exp2(5, lam=1), "l2"), (D.Exp1(5, k=2, lam=1), "l1"), (D.Exp1(5, k=2, lam=1), "linf"),
         (D.PowerInf(5, a=9, lam=1), "linf"), (D.Pareto(5, a=3, lam=1), "l1"), (D.ExpP(5, p=0.5, lam=1), "l1")]


@pytest.mark.parametrize("q, adversary", PAIRS, ids=[f"{q.name}-{a}" for q, a in PAIRS])
def test_edge_rho_and_monotone(q, adversary):
    cert = derive(q, adversary)
    got = cert.radius(EDGES)
    assert got[0] == 0.0 and 0 < got[1] < 1e-9 and np.all(np.isfinite(got[1:4]))
    assert got[4] >= got[3]  # rho = 1: the finite limit or inf
    rho = np.sort(np.concatenate([np.linspace(0.5, 1, 2001), 1 - np.geomspace(1e-15, 0.5, 500)]))
    values = cert.radius(rho)
    assert np.all(np.diff(values) >= -1e-12 * np.abs(values[1:]))


def test_rho_one_is_infinite_exactly_when_the_mathematics_says():
    one = np.array([1.0])
    assert derive(D.Gaussian(3, lam=1), "l2").radius(one)[0] == np.inf
    assert derive(D.Exp1(4, k=2, lam=1), "l1").radius(one)[0] == np.inf  # g' -> inf with r: diverges
    assert derive(D.PowerInf(4, a=7, lam=1), "linf").radius(one)[0] == np.inf  # bounded gamma
    finite = derive(D.ExpP(3, p=0.5, lam=1), "l1").radius(one)[0]  # Theorem M.2 at c0 = 0: finite
    with mpmath.workdps(20):
        ref = float(mpmath.quad(lambda c: 1 / mpmath.expm1(mpmath.sqrt(c)), [0, 1, mpmath.inf]))
    assert finite == pytest.approx(ref, rel=1e-4) and finite <= ref


def test_types_and_devices():
    cert = derive(D.ExpInf(4, k=2, lam=2.0), "linf")
    out = cert.radius(np.array([[0.6, 0.7], [0.8, 0.9]], dtype=np.float32))
    assert out.dtype == np.float64 and out.shape == (2, 2)
    tensor = torch.tensor([0.6, 0.9], dtype=torch.float32)
    got = cert.radius(tensor)
    assert isinstance(got, torch.Tensor) and got.device == tensor.device and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), cert.radius(np.array([0.6, 0.9])), rtol=1e-6)
    assert isinstance(cert.radius(0.75), np.ndarray)


@pytest.mark.parametrize("q, adversary", [
    (D.Gaussian(150528, lam=0.5), "linf"), (D.ExpInf(150528, k=2, j=1, lam=1), "l1"),
    (D.ExpInf(150528, lam=1), "linf"), (D.Exp2(150528, lam=1), "l2"), (D.PowerInf(150528, a=150600, lam=1), "l1"),
    (D.Laplace(150528, lam=1), "linf")])
def test_imagenet_dimension_without_overflow(q, adversary):
    cert = derive(q, adversary)
    got = cert.radius(np.array([0.6, 0.9, 0.999]))
    assert np.all(np.isfinite(got)) and np.all(got > 0) and np.all(np.diff(got) > 0)
    if cert.formula is not None:
        assert math.isfinite(float(cert.formula.subs(sp.Symbol("rho"), 0.9)))


def test_imagenet_expinf_l1_formula_in_log_space():
    d = 150528
    cert = derive(D.ExpInf(d, k=2, j=1, lam=1), "l1")
    ratio = math.exp(special.gammaln((d - 1) / 2) - special.gammaln((d - 2) / 2))
    below(cert.radius(np.array([0.7])), 2 * d / (d - 1) * ratio * 0.2, 1e-6)


# ---------------------------------------------------------------------------------------------
# the envelope: sound for any lines, exact for a discrete law
# ---------------------------------------------------------------------------------------------
def test_envelope_with_arbitrary_lines_never_exceeds_the_exact_radius():
    rng = np.random.default_rng(0)
    rho = np.linspace(0.5, 1 - 1e-9, 301)
    exact = stats.norm.ppf(rho)
    for _ in range(20):
        c = np.sort(rng.exponential(2.0, rng.integers(2, 60)))
        e = stats.norm.pdf(c) - c * stats.norm.sf(c)  # E(Z - c)_+
        got = Envelope(np.append(c, 0.0), np.append(e, stats.norm.pdf(0))).radius_unit(rho)
        assert np.all(got <= exact * (1 + 1e-12) + 1e-300)


def test_envelope_is_exact_for_a_discrete_law():
    # gamma = 2 w.p. 0.1, 1 w.p. 0.2, 0 w.p. 0.4, -1 w.p. 0.2, -2 w.p. 0.1: Phi piecewise linear
    env = Envelope([0.0, 1.0, 2.0], [0.4, 0.1, 0.0])  # E(gamma - c)_+ at c = 0, 1, 2
    Phi = lambda p: np.where(p <= 0.1, 2 * p, np.where(p <= 0.3, 0.2 + (p - 0.1), 0.4))  # noqa: E731
    rho = np.array([0.55, 0.75, 0.8, 0.95, 0.999])
    ref = [integrate.quad(lambda p: 1 / Phi(p), 1 - x, 0.5, points=[0.1, 0.3])[0] for x in rho]
    np.testing.assert_allclose(env.radius_unit(rho), ref, rtol=1e-9)


def test_symbolic_expinf_l1_matches_the_issue():
    k, j = sp.symbols("k j", positive=True)
    d, lam, rho = sp.symbols("d lam rho")
    form = derive_symbolic(r ** k + j * sp.log(r), "inf", "l1")
    plain = form.radius.subs({s: sp.Symbol(s.name) for s in form.radius.free_symbols})
    K, J = sp.symbols("k j")
    half = sp.Rational(1, 2)
    expected = 2 * d * lam * sp.gamma((d - J) / K) / ((d - 1) * sp.gamma((d - 1 - J) / K)) * (rho - half)
    assert sp.simplify(plain - expected) == 0
    assert form.rho_max is not None  # valid for rho <= 1 - 1/(2d)
    a = sp.Symbol("a", positive=True)
    power = derive_symbolic(a * sp.log(1 + r), "inf", "l1").radius
    assert sp.simplify(power - sp.Symbol("d", positive=True, integer=True) * sp.Symbol("lam", positive=True)
                       * (2 * sp.Symbol("rho") - 1) / (a - sp.Symbol("d", positive=True, integer=True))) == 0
    with pytest.raises(NotImplementedError):
        derive_symbolic(r ** 3, 1, "linf")


def test_iid_linf_with_bounded_slope_uses_the_convex_order_bound():
    """|phi'| <= L: sum_i phi'(X_i) <=_cx L (2 Bin(d, 1/2) - d), so the radius is the Laplace one over L."""
    rho = np.array([0.6, 0.9, 0.99])
    logistic = derive(D.IID(2 * sp.log(sp.cosh(t / 2)), 7, lam=1.5), "linf")  # |phi'| = |tanh(t/2)| <= 1
    pareto = derive(D.Pareto(7, a=3, lam=1.5), "linf")  # |phi'| = 4 / (1 + |t|) <= 4
    laplace = derive(D.Laplace(7, lam=1.5), "linf")
    assert laplace.method == "exact (discrete law)" and logistic.method.startswith("convex-order bound")
    np.testing.assert_allclose(logistic.radius(rho), laplace.radius(rho), rtol=1e-12)
    np.testing.assert_allclose(pareto.radius(rho), laplace.radius(rho) / 4, rtol=1e-12)


@pytest.mark.parametrize("make", [
    lambda: D.Radial(r + sp.sin(r) / 2, "inf", 5, lam=1), lambda: D.Radial(sp.exp(r), "inf", 5, lam=1),
    lambda: D.IID(sp.cosh(t) - 1, 5, lam=1), lambda: D.IID(sp.Abs(t) + t ** 2, 5, lam=1),
    lambda: D.Radial(r ** 2 - 3 * sp.log(r), 1, 5, lam=1), lambda: D.Radial(20 * sp.log(1 + r ** 2), 2, 5, lam=1)])
def test_unusual_profiles_give_a_certificate_or_not_implemented(make):
    q = make()
    for adversary in ("l1", "l2", "linf"):
        try:
            cert = derive(q, adversary)
        except NotImplementedError:
            continue
        got = cert.radius(np.array([0.5, 0.7, 0.99, 1.0]))
        assert got[0] == 0 and np.all(np.diff(got) >= 0) and np.all(got[1:3] > 0)


def test_iid_neither_log_concave_nor_log_convex_against_an_independent_stop_loss_minimum():
    """phi = 3 log(1 + t^2): phi'(t) = 6 t / (1 + t^2) rises then falls. Phi(p) = min_c [c p + E(gamma - c)_+]
    (Rockafellar-Uryasev), with E(gamma - c)_+ = E(|phi'(X)| - c)_+ / 2, each by scipy quadrature here."""
    phi_prime = lambda x: 6 * x / (1 + x * x)  # noqa: E731
    norm = integrate.quad(lambda x: (1 + x * x) ** -3, 0, np.inf)[0]

    def excess(c):  # E(|phi'(|X|)| - c)_+ over |X| with density (1 + x^2)^-3 / norm on (0, inf)
        if c >= 3:
            return 0.0
        lo, hi = sorted(np.roots([c, -6, c]).real) if c > 0 else (0.0, np.inf)
        return integrate.quad(lambda x: (phi_prime(x) - c) * (1 + x * x) ** -3, lo, hi, epsabs=0,
                              epsrel=1e-12)[0] / norm

    def Phi(p):
        res = optimize.minimize_scalar(lambda c: c * p + excess(c) / 2, bounds=(0, 3), method="bounded",
                                       options={"xatol": 1e-12})
        return res.fun
    rho = np.array([0.6, 0.9])
    ref = [integrate.quad(lambda p: 1 / Phi(p), 1 - x, 0.5, epsrel=1e-9)[0] for x in rho]
    below(derive(D.IID(3 * sp.log(1 + t ** 2), 4, lam=1.0), "l1").radius(rho), ref, 1e-4)
