"""Uniform noise: the cube against l1 (Theorem N.3) and linf (Theorem N.6), the l2 ball against l2
(Theorem S.1). Checked against formulas re-derived here, Monte Carlo overlaps of the support with
its shift, and the k -> infinity limit of ExpInf (docs/design.md, "The level set method and uniform
noise")."""
import math

import mpmath
import numpy as np
import pytest
import torch
from scipy import special

from wulff import diffmethod
from wulff.certificate import rho_symbol
from wulff.distributions import Exp2, ExpInf, Gaussian, UniformBall, UniformCube
from wulff.uniform import derive_uniform

RHOS = np.array([0.5, 0.5001, 0.6, 0.75, 0.9, 0.99, 0.9999, 1.0])


def cube_linf_mp(rho, d):
    """2 (1 - (3/2 - rho)^(1/d)) in 50-digit arithmetic (Table A.1 prints a square root: a typo)."""
    with mpmath.workdps(50):
        return float(2 * (1 - mpmath.power(mpmath.mpf(1.5) - mpmath.mpf(rho), mpmath.mpf(1) / d)))


def ball_overlap_mp(eps, d):
    """Fraction of a unit ball inside its shift by eps: two caps of height 1 - eps/2, each a
    Beta((d+1)/2, (d+1)/2) tail (Lemma U.2), evaluated by mpmath in 30 digits."""
    b = mpmath.mpf(d + 1) / 2
    with mpmath.workdps(30):
        x = (1 - mpmath.mpf(eps) / 2) / 2
        return float(2 * mpmath.betainc(b, b, 0, x, regularized=True))


@pytest.mark.parametrize("d", [1, 3, 100, 150528])
def test_cube_l1_theorem_n3(d):
    cert = derive_uniform(UniformCube(d, lam=1.7), "l1")
    np.testing.assert_allclose(cert.radius(RHOS), 1.7 * 2 * np.maximum(RHOS - 0.5, 0), rtol=1e-15, atol=0)
    assert cert.tight and "N.3" in cert.method
    assert float(cert.formula.subs(rho_symbol, 0.8)) == pytest.approx(1.7 * 0.6)


@pytest.mark.parametrize("d", [1, 3, 100, 3072, 150528])
def test_cube_linf_theorem_n6(d):
    cert = derive_uniform(UniformCube(d, lam=0.5), "linf")
    got = cert.radius(RHOS)
    want = np.array([0.5 * cube_linf_mp(r, d) if r > 0.5 else 0.0 for r in RHOS])
    np.testing.assert_allclose(got, want, rtol=1e-11)
    assert np.all(got <= want * (1 + 1e-15))
    assert float(cert.formula.subs(rho_symbol, 0.9)) == pytest.approx(0.5 * cube_linf_mp(0.9, d), rel=1e-12)


@pytest.mark.parametrize("d", [1, 2, 5, 64, 3072])
def test_ball_l2_theorem_s1(d):
    cert = derive_uniform(UniformBall(d, lam=1.0), "l2")
    for rho in [0.5001, 0.7, 0.9, 0.999, 1.0]:
        radius = float(cert.radius(rho))
        # at the certified radius the overlap of the ball with its shift is exactly 3/2 - rho
        assert ball_overlap_mp(radius, d) == pytest.approx(1.5 - rho, rel=1e-9, abs=1e-12)
        assert ball_overlap_mp(radius, d) >= 1.5 - rho - 1e-12


def _overlap_fraction(q, shift, n=400_000, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = q.sample(n, generator=g, dtype=torch.float64) + torch.as_tensor(shift, dtype=torch.float64)
    if q.norm == "inf":
        inside = x.abs().amax(dim=1) <= q.lam
    else:
        inside = x.norm(dim=1) <= q.lam
    return inside.double().mean().item(), n


@pytest.mark.parametrize("make,adversary,direction", [
    (UniformCube, "l1", "axis"), (UniformCube, "linf", "corner"), (UniformBall, "l2", "axis")])
@pytest.mark.parametrize("rho", [0.6, 0.9, 0.99])
def test_worst_shift_by_sampling(make, adversary, direction, rho):
    """Shifting by the certified radius in the worst direction leaves overlap 3/2 - rho (the bound is
    tight: a wrong-answer set of mass 1 - rho placed in the overlap then reaches 1/2)."""
    d, lam = 6, 1.3
    q = make(d, lam=lam)
    radius = float(derive_uniform(q, adversary).radius(rho))
    shift = np.eye(d)[0] * radius if direction == "axis" else np.ones(d) * radius
    frac, n = _overlap_fraction(q, shift)
    se = math.sqrt(frac * (1 - frac) / n)
    assert abs(frac - (1.5 - rho)) < 5 * se


def test_expinf_large_k_tends_to_the_cube():
    """ExpInf(k) vs l1 (Theorem N.2, re-derived: R = 2d/(d-1) Gamma(d/k)/Gamma((d-1)/k) (rho - 1/2))
    tends to Theorem N.3 as k -> inf; ExpInf(k) vs linf (Theorem N.5: Phi -> d/2, so R -> 2(rho-1/2)/d)
    lies below Theorem N.6 and meets it as rho -> 1/2."""
    d = 50
    rho = np.array([0.51, 0.7, 0.95])
    cube_l1 = derive_uniform(UniformCube(d, lam=1.0), "l1").radius(rho)
    for k, tol in [(1e3, 0.01), (1e5, 1e-4)]:
        n2 = 2 * d / (d - 1) * np.exp(special.gammaln(d / k) - special.gammaln((d - 1) / k)) * (rho - 0.5)
        np.testing.assert_allclose(n2, cube_l1, rtol=tol)
    cube_linf = derive_uniform(UniformCube(d, lam=1.0), "linf").radius(rho)
    limit_linf = 2 * (rho - 0.5) / d
    assert np.all(cube_linf >= limit_linf)
    near = derive_uniform(UniformCube(d, lam=1.0), "linf").radius(0.5 + 1e-6)
    assert near == pytest.approx(2e-6 / d, rel=1e-5)


def test_expinf_large_k_with_the_differential_method():
    d = 20
    rho = np.array([0.6, 0.9])
    cert = diffmethod.derive(ExpInf(d, k=2000, lam=1.0), "l1")
    np.testing.assert_allclose(cert.radius(rho), derive_uniform(UniformCube(d, lam=1.0), "l1").radius(rho),
                               rtol=0.01)


@pytest.mark.parametrize("q,adversary", [
    (UniformCube(4, lam=1.0), "l2"), (UniformBall(4, lam=1.0), "l1"), (UniformBall(4, lam=1.0), "linf"),
    (Gaussian(4, lam=1.0), "l2"), (Exp2(4, lam=1.0), "l2")])
def test_other_pairs_not_implemented(q, adversary):
    with pytest.raises(NotImplementedError):
        derive_uniform(q, adversary)


def test_vectorized_torch_monotone_and_validation():
    cert = derive_uniform(UniformCube(3072, lam=0.25), "linf")
    rho = np.linspace(0.5, 1.0, 1001)
    radius = cert.radius(rho)
    assert np.all(np.diff(radius) >= 0) and radius[0] == 0 and np.isfinite(radius).all()
    t = cert.radius(torch.tensor([0.9, 0.4], dtype=torch.float64))
    assert isinstance(t, torch.Tensor) and float(t[1]) == 0.0
    assert float(t[0]) == pytest.approx(float(cert.radius(0.9)))
    for bad in (np.nan, 1.5, -0.1):
        with pytest.raises(ValueError):
            cert.radius(bad)
    with pytest.raises(ValueError):
        derive_uniform(UniformCube(3, lam=1.0), "l7")
