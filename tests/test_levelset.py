"""The level set method (Theorem T.1, Algorithms 1 and 2) for l2-radial densities.

References computed here, independently of wulff.levelset: the Gaussian radius lam Phi^{-1}(rho)
(Cohen et al.), Monte Carlo estimates of the Neyman-Pearson masses, Theorem R.1's closed form."""
import math

import numpy as np
import pytest
import sympy as sp
import torch
from references import theorem_r1
from scipy.stats import norm

import wulff.levelset.table as table_module
from wulff import cache
from wulff.distributions import Exp1, Exp2, ExpInf, Gaussian, Laplace, Power2, Radial, UniformBall, r
from wulff.levelset import certified_tail, derive, spherical_form
from wulff.levelset.shifts import GenericShift, LogPowerShift, PowerShift, shift_of
from wulff.levelset.table import GRID_RATIO, GrowthFunction, tangent_slope

pytestmark = pytest.mark.usefixtures("private_cache")



# ---------------------------------------------------------------------------------------------
# Gaussian: the table must reproduce lam * Phi^{-1}(rho)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("d", [3072, 12])
def test_gaussian_table_is_phi_inverse(d):
    lam = 0.37
    cert = derive(Gaussian(d, lam=lam), "l2")
    radii, p = cert.table["radii"], cert.table["p"]
    exact = norm.isf(p)  # the exact radius at rho = 1 - p_i
    assert np.max(np.abs(radii / exact - 1)) < 1e-4  # Algorithm 1 accuracy on the grid
    assert np.all(radii <= exact * (1 + 1e-9))  # sound
    assert np.all(np.diff(radii) > 0) and np.all(np.diff(p) <= 0)
    assert np.max(radii[1:] / radii[:-1]) <= GRID_RATIO * (1 + 1e-12)
    rho = np.concatenate([np.linspace(0.5, 0.9999, 4001), 0.5 + np.logspace(-12, -2, 41),
                          np.random.default_rng(0).uniform(0.5, 0.9999, 2000)])
    got, want = cert.radius(rho), lam * norm.ppf(rho)
    assert np.all(got <= want * (1 + 1e-9) + 1e-15)
    assert np.all(got >= want * (1 - 0.005))  # the lookup loses < 0.5 %
    assert cert.formula is None and "level-set" in cert.method


def test_lookup_is_algorithm_2():
    """Rounds rho down to the table, never extrapolates past its end, and is inf only at rho = 1."""
    cert = derive(Gaussian(3072, lam=1.0), "l2")
    radii, p, slope = cert.table["radii"], cert.table["p"], cert.table["slope"]
    i = np.arange(5, radii.size - 1, 97)
    for rho in (1 - p[i], 1 - 0.5 * (p[i] + p[i + 1])):  # on the grid, and between two grid points
        tail = 1 - rho  # exact in floating point; within an ulp of p_i (or of the midpoint)
        largest = np.array([np.nonzero(p >= t)[0].max() for t in tail])  # brute-force Algorithm 2
        assert np.all((largest == i) | (largest == i - 1))
        tangent = (rho - 0.5) / slope  # Theorem G.6 with Phi <= Phi(1/2), below the table near rho = 1/2
        np.testing.assert_array_equal(cert.radius(rho), np.maximum(radii[largest], tangent))
    beyond = cert.radius(np.array([1 - p[-1] / 10, np.nextafter(1.0, 0)]))
    np.testing.assert_array_equal(beyond, radii[-1])
    assert cert.radius(1.0) == np.inf  # full support: a null set stays null under every shift
    assert cert.radius(0.5) == 0 and cert.radius(0.3) == 0
    tiny = 0.5 + 1e-9
    assert cert.radius(tiny) == pytest.approx(norm.ppf(tiny), rel=1e-6)
    assert cert.radius(tiny) <= norm.ppf(tiny)


def test_tangent_slope_closed_forms():
    """Phi(1/2) = E[(u_1 g'(R))^+]: 1/sqrt(2 pi) for every Gaussian; E[u_1^+] for g = r."""
    for d in (2, 3, 10, 3072, 150528):
        law = spherical_form(Gaussian(d, lam=1.0)).radius_law
        assert tangent_slope(law, d) == pytest.approx(1 / math.sqrt(2 * math.pi), rel=1e-10)
        assert tangent_slope(law, d) >= 1 / math.sqrt(2 * math.pi)
        e_u_plus = math.exp(math.lgamma(d / 2) - math.lgamma((d + 1) / 2)) / (2 * math.sqrt(math.pi))
        assert tangent_slope(Exp2(d, k=1, lam=1.0).radius_law, d) == pytest.approx(e_u_plus, rel=1e-10)


# ---------------------------------------------------------------------------------------------
# Theorem T.1 against Monte Carlo
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("q", [Exp2(5, k=1.5, j=1.0, lam=1.0), Power2(4, a=7, k=1, lam=1.0),
                               Radial(r ** 2 / 2 + r, 2, 3, lam=1.0)])
def test_theorem_t1_by_sampling(q):
    g = sp.lambdify(r, spherical_form(q).g, "numpy")
    growth = GrowthFunction(shift_of(q), q.radius_law, q.d, 1024)
    eps, log_t = np.array([0.3, 1.2]), np.log(np.array([0.05, 0.7]))
    p1 = growth.p1_upper(eps, log_t)
    p0, err0 = growth.p0_lower(eps, log_t)
    n = 400_000
    w = q.sample(n, generator=torch.Generator().manual_seed(3), dtype=torch.float64).numpy()
    norm_w = np.linalg.norm(w, axis=1)
    for i, (e, t) in enumerate(zip(eps, np.exp(log_t))):
        v = np.zeros(q.d)
        v[0] = e
        in_np = g(np.linalg.norm(w - v, axis=1)) <= g(norm_w) - t  # q(w - v) >= kappa q(w)
        shifted_in_np = g(np.linalg.norm(w + v, axis=1)) >= g(norm_w) + t  # w + v in NP
        for mc, ours in ((in_np.mean(), p0[i] + err0[i]), (shifted_in_np.mean(), p1[i])):
            se = math.sqrt(max(mc * (1 - mc), 1e-6) / n)
            assert abs(mc - ours) < 5 * se


# ---------------------------------------------------------------------------------------------
# profiles: closed-form shifts agree with the generic solver
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("closed,expr", [
    (PowerShift(0.5, 2.0, 0.0), r ** 2 / 2), (PowerShift(1.0, 1.0, 2.0), r + 2 * sp.log(r)),
    (PowerShift(1.0, 0.5, 3.0), sp.sqrt(r) + 3 * sp.log(r)),
    (LogPowerShift(7.0, 1.0, 2.0), 7 * sp.log(1 + r ** 2))])
def test_profile_shift_matches_generic(closed, expr):
    rng = np.random.default_rng(5)
    y = rng.uniform(-3, 5, (1, 200))
    tau = np.concatenate([np.logspace(-14, 1, 8), -np.logspace(-14, 0, 8)])[:, None]
    a, b = closed.shift(y, tau), GenericShift(expr).shift(y, tau)
    assert np.array_equal(np.isinf(a), np.isinf(b))
    fin = np.isfinite(a)
    np.testing.assert_allclose(a[fin], b[fin], rtol=1e-9, atol=0)
    # the defining equation holds: G(y + eta) - G(y) = tau, without cancellation for tiny tau
    G = sp.lambdify(r, expr, "mpmath")
    for (i, j) in [(0, 0), (3, 17), (8, 40), (12, 99)]:
        if np.isfinite(a[i, j]):
            import mpmath
            with mpmath.workdps(40):
                rr = mpmath.e ** mpmath.mpf(y[0, j])
                diff = G(rr * mpmath.e ** mpmath.mpf(a[i, j])) - G(rr)
            assert float(diff) == pytest.approx(tau[i, 0], rel=1e-9)


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("q,adversary", [
    (Gaussian(8, lam=1.0), "l1"), (Gaussian(8, lam=1.0), "linf"), (Laplace(8, lam=1.0), "l2"),
    (Exp2(8, k=1, j=-2, lam=1.0), "l2"), (ExpInf(8, lam=1.0), "l2"), (Exp1(8, lam=1.0), "l2"),
    (UniformBall(8, lam=1.0), "l2"), (Radial((r - 1) ** 2, 2, 8, lam=1.0), "l2")])
def test_not_implemented(q, adversary):
    with pytest.raises(NotImplementedError):
        derive(q, adversary)


def test_bad_rho_and_radius_inputs():
    cert = derive(Gaussian(3072, lam=1.0), "l2")
    for bad in (np.nan, 1.01, -0.5):
        with pytest.raises(ValueError, match="rho"):
            cert.radius(bad)
    with pytest.raises(ValueError, match="adversary"):
        derive(Gaussian(3, lam=1.0), "l5")
    with pytest.raises(ValueError, match="radii"):
        certified_tail(Gaussian(3, lam=1.0), [1.0, -1.0])
    out = cert.radius(torch.tensor([0.4, 0.9], dtype=torch.float32))
    assert out.dtype == torch.float32 and float(out[0]) == 0
    assert float(out[1]) == pytest.approx(norm.ppf(0.9), rel=0.005)


def test_tables_are_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("WULFF_CACHE_DIR", str(tmp_path))
    q = Exp2(3000, k=1, lam=1.0)
    first = derive(q, "l2").table
    assert derive(Exp2(3000, k=1, lam=5.0), "l2").table is first  # unit scale: lam is not in the key
    assert len(list(tmp_path.glob("*.npz"))) == 1
    cache.clear_memory()

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the table was rebuilt instead of read from disk")

    monkeypatch.setattr(table_module, "build_table", no_rebuild)
    import wulff.levelset.spherical as spherical
    monkeypatch.setattr(spherical, "build_table", no_rebuild)
    again = derive(q, "l2").table
    np.testing.assert_array_equal(again["radii"], first["radii"])
    np.testing.assert_array_equal(again["p"], first["p"])


# ---------------------------------------------------------------------------------------------
# against Theorem R.1 (closed form, computed here) and heavy tails
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("d", [3, 40])
def test_exp2_k1_at_least_theorem_r1(d):
    """The level set radius is the exact Neyman-Pearson radius, so it dominates Theorem R.1."""
    rho = np.array([0.55, 0.7, 0.9, 0.99, 0.9999])
    radius = theorem_r1(rho, d)
    p = certified_tail(Exp2(d, k=1, lam=1.0), radius)
    assert np.all(1 - p <= rho + 1e-12)


def test_power2_heavy_tail_table_is_monotone_and_covers_the_tail():
    cert = derive(Power2(64, a=66, k=1, lam=1.0), "l2")  # BetaPrime(64, 2): a tail ~ r^-2
    radii, p = cert.table["radii"], cert.table["p"]
    assert np.all(np.diff(radii) > 0) and np.all(np.diff(p) <= 0) and np.all(p > 0)
    assert p[-1] < 1e-4  # rho = 0.9999 is inside the table
    rho = np.linspace(0.5, 1 - p[-1], 500)
    assert np.all(np.diff(cert.radius(rho)) >= 0)


def test_numeric_radius_law_path_reproduces_the_gaussian():
    """The log-radius rule used for numeric laws (quantiles only interpolated): with the Gaussian
    profile's law built numerically, Algorithm 1 still gives p(eps) = 1 - Phi(eps)."""
    from wulff.distributions import NumericRadiusLaw
    from wulff.levelset.table import tail_bound
    d = 50
    law = NumericRadiusLaw(r ** 2 / 2, d)
    eps = np.array([1e-3, 0.3, 1.0, 2.5, 4.0])
    p = tail_bound(PowerShift(0.5, 2.0, 0.0), law, d, eps)
    np.testing.assert_allclose(p, norm.sf(eps), rtol=1e-6)
    assert np.all(p <= norm.sf(eps) * (1 + 1e-9))


# ---------------------------------------------------------------------------------------------
# verified mode (issue 25): the Neyman-Pearson radius recomputed in mpmath at the given rho
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rho", [0.6, 1 - 1e-12])
def test_verified_level_set_radius_is_the_gaussian_radius(rho):
    """Within 1e-9 of lam Phi^{-1}(rho) (mpmath, 40 digits), never above it, never below the table:
    also past the table's end (rho > 1 - 1e-10), where the float path returns its last radius."""
    import mpmath

    lam = 0.37
    cert = derive(Gaussian(12, lam=lam), "l2")
    assert "Neyman-Pearson" in cert.verified_method
    with mpmath.workdps(40):
        exact = lam * mpmath.sqrt(2) * mpmath.erfinv(2 * mpmath.mpf(rho) - 1)
    verified = float(cert.verified_radius(rho))
    assert exact * (1 - 1e-9) <= verified <= exact
    assert float(cert.radius(rho)) <= verified


def test_cli_derive_verify_covers_the_level_set_certificate(capsys):
    from wulff.cli import main

    assert main(["derive", "Gaussian", "--d", "12", "--lam", "0.37", "--adversary", "l2",
                 "--rho", "0.9", "--verify"]) == 0
    out = capsys.readouterr().out
    assert "verified mode: mpmath Neyman-Pearson radius (Theorem T.1)" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("0.9 ")]
    assert len(rows) == 2  # the closed form of the differential method, then the level-set table
    exact = 0.37 * norm.ppf(0.9)
    for _rho, value, verified, ratio in rows:
        assert float(value) <= float(verified) and float(ratio) <= 1.0
        assert abs(float(verified) / exact - 1) < 1e-9


@pytest.mark.parametrize("d", [2, 3, 4, 5, 12])
def test_every_row_of_a_low_d_table_is_below_the_exact_gaussian_radius(d):
    """Row by row (rho = 1 - p_i exactly, where the lookup returns eps_i), the table of the Gaussian
    profile g = r^2 / 2 never claims more than the exact radius Phi^-1(1 - p_i) (lam = 1). Without the
    low-d margin, d = 2..5 exceeded it at hundreds of rows (by up to 4.2e-6 relative at d = 2)."""
    from scipy.special import ndtri

    from wulff.radius.levelset.spherical import table_for

    table = table_for(Radial(r ** 2 / 2, 2, d, lam=1.0))
    radii, p = np.asarray(table["radii"]), np.asarray(table["p"])
    exact = -ndtri(p)
    assert np.all(radii <= exact), (d, int((radii > exact).sum()), float(np.max(radii / exact - 1)))
