"""The public API of wulff.distributions: constructors, validation, sampling contract, recognition."""
from __future__ import annotations

import math

import pytest
import sympy as sp
import torch

from wulff import distributions as D
from wulff.distributions import coordinate_sum, norm, r, t, x

ALL = {
    "Gaussian": lambda d, **s: D.Gaussian(d, **s),
    "Laplace": lambda d, **s: D.Laplace(d, **s),
    "ExpP": lambda d, **s: D.ExpP(d, p=1.5, **s),
    "ExpInf": lambda d, **s: D.ExpInf(d, k=2, j=1, **s),
    "Exp2": lambda d, **s: D.Exp2(d, k=1, j=0, **s),
    "Exp1": lambda d, **s: D.Exp1(d, k=2, **s),
    "PowerInf": lambda d, **s: D.PowerInf(d, a=d + 10, **s),
    "Power2": lambda d, **s: D.Power2(d, a=d + 10, k=1, **s),
    "Pareto": lambda d, **s: D.Pareto(d, a=4, **s),
    "UniformCube": lambda d, **s: D.UniformCube(d, **s),
    "UniformBall": lambda d, **s: D.UniformBall(d, **s),
    "IID": lambda d, **s: D.IID(abs(t) ** 3, d, **s),
    "Radial": lambda d, **s: D.Radial(r ** 2 / 2, 2, d, **s),
}


@pytest.mark.parametrize("name", sorted(ALL))
def test_sample_contract(name):
    q = ALL[name](8, sigma=0.5)
    g = torch.Generator().manual_seed(3)
    a = q.sample(5, generator=g)
    assert a.shape == (5, 8) and a.dtype == torch.float32
    assert torch.isfinite(a).all()
    b = q.sample(5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b), "the same seed must give the same draws"
    c = q.sample(3, dtype=torch.float64, device="cpu")
    assert c.dtype == torch.float64 and c.shape == (3, 8)
    assert q.sample(0).shape == (0, 8)


@pytest.mark.parametrize("name", sorted(ALL))
def test_both_or_neither_scale_is_an_error(name):
    with pytest.raises(ValueError, match="exactly one of lam= or sigma="):
        ALL[name](4, lam=1.0, sigma=1.0)
    with pytest.raises(ValueError, match="exactly one of lam= or sigma="):
        ALL[name](4)


@pytest.mark.parametrize("bad", [0, -3])
def test_bad_dimension(bad):
    with pytest.raises(ValueError, match="d must be a positive integer"):
        D.Gaussian(bad, lam=1.0)


@pytest.mark.parametrize("bad", [2.5, "8", True, None])
def test_dimension_of_wrong_type(bad):
    with pytest.raises((ValueError, TypeError), match="d must be a positive integer"):
        D.Laplace(bad, lam=1.0)


@pytest.mark.parametrize("scale", ["lam", "sigma"])
@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_bad_scale(scale, bad):
    with pytest.raises(ValueError, match=f"{scale} must satisfy 0 < {scale} < inf"):
        D.Gaussian(4, **{scale: bad})
    with pytest.raises(TypeError, match=f"{scale} must be a real number"):
        D.Gaussian(4, **{scale: "1.0"})


@pytest.mark.parametrize("make,match", [
    (lambda: D.ExpP(4, p=0, lam=1), "p must satisfy p > 0"),
    (lambda: D.ExpP(4, p=-1, lam=1), "p must satisfy p > 0"),
    (lambda: D.ExpInf(4, k=0, lam=1), "k must satisfy k > 0"),
    (lambda: D.ExpInf(4, j=4, lam=1), "j must satisfy j < d = 4"),
    (lambda: D.Exp2(4, k=-2, lam=1), "k must satisfy k > 0"),
    (lambda: D.Exp2(4, j=5, lam=1), "j must satisfy j < d = 4"),
    (lambda: D.Exp1(4, k=0, lam=1), "k must satisfy k > 0"),
    (lambda: D.PowerInf(4, a=4, lam=1), "a must satisfy a > d/k = 4"),
    (lambda: D.Power2(4, a=2, k=2, lam=1), "a must satisfy a > d/k = 2"),
    (lambda: D.Power2(4, a=9, k=0, lam=1), "k must satisfy k > 0"),
    (lambda: D.Pareto(4, a=0, lam=1), "a must satisfy a > 0"),
    (lambda: D.Pareto(4, a=2, sigma=1), "sigma is infinite.*a > 2"),
    (lambda: D.PowerInf(4, a=6, sigma=1), "sigma is infinite.*a > \\(d \\+ 2\\)/k = 6"),
    (lambda: D.ExpP(4, p=math.nan, lam=1), "p must satisfy"),
])
def test_family_parameter_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("make,match", [
    (lambda: D.IID(t, 3, lam=1), "phi must be even"),
    (lambda: D.IID(sp.Integer(2), 3, lam=1), "phi must depend on t"),
    (lambda: D.IID(sp.log(1 + abs(t)), 3, lam=1), "normalizable"),
    (lambda: D.IID(-t ** 2, 3, lam=1), "not normalizable"),
    (lambda: D.IID(t ** 2 + sp.Symbol("y"), 3, lam=1), "may only depend on t"),
    (lambda: D.Radial(3 * sp.log(1 + r), 2, 3, lam=1), "a must be > d/k"),
    (lambda: D.Radial(2 * sp.log(r) + 1 / (1 + r), 2, 2, lam=1), "not normalizable"),
    (lambda: D.Radial(r, 3, 2, lam=1), "norm must be one of 1, 2, 'inf'"),
])
def test_declared_density_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_profile_symbols_by_name_are_accepted():
    q = D.IID(sp.Abs(sp.Symbol("t")) ** 3, 4, lam=1.0)
    assert q.phi == abs(t) ** 3
    q = D.Radial(sp.Symbol("r") ** 2, "linf", 4, lam=1.0)
    assert q.norm == "inf" and q.g == r ** 2


@pytest.mark.parametrize("psi,kind,profile", [
    (coordinate_sum(abs(t) ** 3), D.IID, abs(t) ** 3),
    (3 * coordinate_sum(t ** 2) + 7, D.IID, 3 * t ** 2),
    (norm(x, 2) ** 2 / 2, D.Radial, r ** 2 / 2),
    (norm(x, "inf") ** 2 + 2 * sp.log(norm(x, "inf")), D.Radial, r ** 2 + 2 * sp.log(r)),
    ("norm(x, 1)", D.Radial, r),
])
def test_density_recognition(psi, kind, profile):
    q = D.Density(psi, 6, lam=1.0)
    assert isinstance(q, kind)
    got = q.phi if kind is D.IID else q.g
    assert sp.simplify(got - profile) == 0


def test_density_recognition_matches_named_family():
    q = D.Density(norm(x, 2) ** 2 / 2, 6, sigma=0.4)
    assert q.lam == pytest.approx(D.Gaussian(6, sigma=0.4).lam)
    q = D.Density(coordinate_sum(abs(t)), 6, sigma=0.4)
    assert q.lam == pytest.approx(D.Laplace(6, sigma=0.4).lam)


@pytest.mark.parametrize("psi", [x[1] ** 2 + x[2] ** 2, norm(x, 1) + norm(x, 2), sp.sin(sp.Symbol("y"))])
def test_unrecognized_density_lists_forms(psi):
    with pytest.raises(NotImplementedError, match="supported forms"):
        D.Density(psi, 3, lam=1.0)


def test_psi_is_symbolic():
    assert D.Gaussian(3, lam=1).psi == sp.Sum(x[sp.Idx("i")] ** 2 / 2, (sp.Idx("i"), 1, 3))
    assert D.ExpInf(3, k=1, lam=1).psi == norm(x, "inf")


def test_sampler_hook_is_used_everywhere():
    calls = []

    def hook(n, generator=None, device=None, dtype=torch.float32):
        calls.append(n)
        return torch.full((n, 4), 0.25, dtype=dtype, device=device)

    q = D.Laplace(4, lam=1.0).with_sampler(hook)
    assert torch.equal(q.sample(3), torch.full((3, 4), 0.25))
    assert torch.allclose(q.perturb(torch.zeros(2, 2, 2)), torch.full((2, 2, 2), 0.25))
    assert calls == [3, 2]
    q.sampler = lambda n, **kw: torch.zeros(n, 5)
    with pytest.raises(ValueError, match="must return a tensor of shape"):
        q.sample(2)


def test_perturb_shapes():
    q = D.Gaussian(12, lam=0.1)
    img = torch.zeros(5, 3, 2, 2, dtype=torch.float64)
    out = q.perturb(img, generator=torch.Generator().manual_seed(0))
    assert out.shape == img.shape and out.dtype == torch.float64 and out.std() > 0
    single = q.perturb(torch.ones(3, 2, 2))
    assert single.shape == (3, 2, 2)
    with pytest.raises(ValueError, match="prod\\(input_shape\\) = d = 12"):
        q.perturb(torch.zeros(5, 7))
    with pytest.raises(TypeError):
        q.perturb([0.0] * 12)


def test_bad_sample_count():
    with pytest.raises(ValueError, match="n must be a non-negative integer"):
        D.Gaussian(3, lam=1).sample(-1)
    with pytest.raises(TypeError, match="n must be a non-negative integer"):
        D.Gaussian(3, lam=1).sample(2.5)


def test_large_dimension_scale_has_no_overflow():
    d = 150528
    for q in (D.ExpInf(d, k=1, lam=1.0), D.Exp2(d, k=2, j=3, lam=1.0), D.Power2(d, a=d + 10, lam=1.0),
              D.Exp1(d, k=1, lam=1.0), D.UniformBall(d, lam=1.0)):
        assert math.isfinite(q.sigma) and q.sigma > 0
        assert q.sample(2).shape == (2, d)
