"""Law-level checks of every sampler: a KS test of a statistic whose law is known independently
(scipy), on fixed seeds. A wrong radius law, a wrong direction law or a wrong scale fails them."""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch
from scipy import integrate, stats

from wulff import distributions as D

N = 20_000
P_MIN = 1e-4  # deterministic seeds: a correct sampler passes, a wrong one lands far below


def draw(q, n=N, seed=1) -> np.ndarray:
    return q.sample(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).numpy()


def assert_law(sample: np.ndarray, cdf) -> None:
    p = stats.kstest(np.ravel(sample), cdf).pvalue
    assert p > P_MIN, f"KS p-value {p:.2e}"


# -- iid families: the coordinate marginal --------------------------------------------------------
IID_CASES = [
    (lambda: D.Gaussian(6, lam=0.7), stats.norm(scale=0.7).cdf),
    (lambda: D.Laplace(6, lam=1.9), stats.laplace(scale=1.9).cdf),
    (lambda: D.ExpP(6, p=0.5, lam=0.3), stats.gennorm(0.5, scale=0.3).cdf),
    (lambda: D.ExpP(6, p=3.7, lam=1.1), stats.gennorm(3.7, scale=1.1).cdf),
    (lambda: D.IID(abs(D.t) ** 3, 5, lam=2.0), stats.gennorm(3, scale=2.0).cdf),
    (lambda: D.IID(D.t + 2 * sp.log(1 + sp.exp(-D.t)), 4, lam=0.5), stats.logistic(scale=0.5).cdf),
    (lambda: D.UniformCube(6, lam=1.5), stats.uniform(-1.5, 3.0).cdf),
]


@pytest.mark.parametrize("make,cdf", IID_CASES)
def test_iid_coordinate_marginal(make, cdf):
    x = draw(make(), n=4000)
    assert_law(x[:, 0], cdf)
    assert_law(x[:, -1], cdf)
    assert abs(np.corrcoef(x[:, 0], x[:, 1])[0, 1]) < 0.06  # coordinates are independent


def test_pareto_coordinate_marginal():
    a, lam = 3.5, 0.8
    x = draw(D.Pareto(5, a=a, lam=lam), n=4000)
    assert_law(np.abs(x[:, 2]), stats.lomax(a, scale=lam).cdf)  # (1 + |t|/lam)^-(a+1) density
    assert abs(np.mean(np.sign(x[:, 2]))) < 0.05


# -- radial families: radius law and direction law ------------------------------------------------
def norm_of(x, p):
    return np.linalg.norm(x, ord={"inf": np.inf}.get(p, p), axis=1)


@pytest.mark.parametrize("d,k,j", [(1, 1, 0), (7, 1, 0), (7, 2, 1), (30, 0.5, -3), (200, 3, 5)])
def test_exp_inf_radius_law(d, k, j):
    lam = 1.7
    x = draw(D.ExpInf(d, k=k, j=j, lam=lam))
    assert_law((norm_of(x, "inf") / lam) ** k, stats.gamma((d - j) / k).cdf)


@pytest.mark.parametrize("d,k,j", [(2, 1, 0), (9, 2, 0), (40, 0.7, 3)])
def test_exp2_radius_law(d, k, j):
    x = draw(D.Exp2(d, k=k, j=j, lam=0.6))
    assert_law((norm_of(x, 2) / 0.6) ** k, stats.gamma((d - j) / k).cdf)


@pytest.mark.parametrize("d,k", [(3, 1), (12, 2.5)])
def test_exp1_radius_law(d, k):
    x = draw(D.Exp1(d, k=k, lam=2.0))
    assert_law((norm_of(x, 1) / 2.0) ** k, stats.gamma(d / k).cdf)


@pytest.mark.parametrize("d,a", [(3, 5.5), (20, 40)])
def test_power_inf_radius_law(d, a):
    x = draw(D.PowerInf(d, a=a, lam=1.0))
    assert_law(norm_of(x, "inf"), stats.betaprime(d, a - d).cdf)


@pytest.mark.parametrize("d,a,k", [(4, 9, 1), (10, 8, 2)])
def test_power2_radius_law(d, a, k):
    x = draw(D.Power2(d, a=a, k=k, lam=3.0))
    assert_law((norm_of(x, 2) / 3.0) ** k, stats.betaprime(d / k, a - d / k).cdf)


def test_uniform_ball_radius_and_coordinate():
    d, lam = 9, 2.0
    x = draw(D.UniformBall(d, lam=lam))
    assert_law(norm_of(x, 2) / lam, lambda s: np.clip(s, 0, 1) ** d)
    # Lemma U.2: (1 + x_1 / lam) / 2 ~ Beta((d + 1)/2, (d + 1)/2)
    assert_law((1 + x[:, 0] / lam) / 2, stats.beta((d + 1) / 2, (d + 1) / 2).cdf)


@pytest.mark.parametrize("make", [lambda: D.Exp2(11, k=1, lam=1.0), lambda: D.Power2(11, a=20, lam=1.0),
                                  lambda: D.Radial(D.r ** 2 / 2 + D.r, 2, 11, lam=1.0)])
def test_l2_direction_law(make):
    """Lemma U.1: for V uniform on the sphere, (1 + V_1) / 2 ~ Beta((d - 1)/2, (d - 1)/2)."""
    x = draw(make())
    v1 = x[:, 3] / norm_of(x, 2)
    assert_law((1 + v1) / 2, stats.beta(5, 5).cdf)


def test_l1_direction_law():
    """Cone measure of the l1 sphere: |V_1| ~ Beta(1, d - 1), signs symmetric."""
    d = 8
    x = draw(D.Exp1(d, k=1, lam=1.0))
    v = x / norm_of(x, 1)[:, None]
    assert_law(np.abs(v[:, 0]), stats.beta(1, d - 1).cdf)
    assert abs(np.mean(np.sign(v[:, 0]))) < 0.03


def test_linf_direction_law():
    """Cone measure of the linf sphere: one coordinate at +-1, the others U[-1, 1]."""
    d = 6
    x = draw(D.ExpInf(d, k=1, lam=1.0))
    v = x / norm_of(x, "inf")[:, None]
    top = np.argmax(np.abs(v), axis=1)
    assert stats.chisquare(np.bincount(top, minlength=d)).pvalue > P_MIN
    others = np.abs(v[np.arange(len(v)), (top + 1) % d])
    assert_law(others, stats.uniform(0, 1).cdf)


def test_numeric_radius_law_against_quadrature():
    """A profile no closed form covers: the sampled radius against a CDF by quadrature here."""
    d, g = 5, lambda s: s ** 2 / 2 + s + 0.3 * np.sin(s)
    q = D.Radial(D.r ** 2 / 2 + D.r + sp.Rational(3, 10) * sp.sin(D.r), 2, d, lam=1.0)
    assert isinstance(q.radius_law, D.NumericRadiusLaw)
    dens = lambda s: s ** (d - 1) * np.exp(-g(s))
    z = integrate.quad(dens, 0, np.inf)[0]
    grid = np.linspace(0, 12, 1201)
    cdf_vals = np.array([integrate.quad(dens, 0, s)[0] for s in grid]) / z
    assert_law(norm_of(draw(q), 2), lambda s: np.interp(s, grid, cdf_vals))


def test_radial_gaussian_matches_iid_gaussian():
    """Radial(r^2/2, 2) is the Gaussian: its coordinates are N(0, lam^2)."""
    x = draw(D.Radial(D.r ** 2 / 2, 2, 10, lam=1.3))
    assert_law(x[:, 4], stats.norm(scale=1.3).cdf)


@pytest.mark.parametrize("d,a,u", [(150528, 150568.0, 1e-17), (150528, 150568.0, 1e-300), (3072, 3112.0, 1e-20),
                                   (4, 9.0, 1e-18)])
def test_beta_prime_quantiles_far_in_both_tails(d, a, u):
    """ppf and isf of the BetaPrime radius law invert the CDF and the survival function even where
    1 - u rounds to 1 (once, ppf(1e-17) at d = 150528 came back as 0.99 instead of ~1250)."""
    import mpmath as mp

    law = D.PowerInf(d, a=a, lam=1.0).radius_law
    mp.mp.dps = 40

    def cdf(x):  # R ~ BetaPrime(d, a - d): P(R <= x) = I_{x / (1 + x)}(d, a - d), computed independently
        return mp.betainc(d, a - d, 0, mp.mpf(x) / (1 + mp.mpf(x)), regularized=True)

    def sf(x):  # P(R > x) = P(1 - B < 1 / (1 + x)) with 1 - B ~ Beta(a - d, d) (1 - cdf cannot resolve 1e-300)
        return mp.betainc(a - d, d, 0, 1 / (1 + mp.mpf(x)), regularized=True)

    lower, upper = float(law.ppf(u)), float(law.isf(u))
    assert 0 < lower < upper
    assert abs(cdf(lower) / u - 1) < 1e-6
    assert abs(sf(upper) / u - 1) < 1e-6
