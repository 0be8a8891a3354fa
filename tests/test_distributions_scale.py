"""sigma <-> lam from the structure, against Table A.2 (with the errata of docs/errata.md) and sampling."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import gammaln

from wulff import distributions as D

FAST = settings(max_examples=12, deadline=None, derandomize=True)


def _ratio(log_num: float, log_den: float) -> float:
    return math.exp(log_num - log_den)


# lam / sigma from Table A.2, corrected where docs/errata.md lists an erratum; each entry is written
# independently of the library, from the paper's closed forms.
def table_a2(name: str, d: int, **p) -> float:
    if name == "Gaussian":
        return 1.0
    if name == "Laplace":
        return 1 / math.sqrt(2)
    if name == "ExpP":
        return math.sqrt(_ratio(gammaln(1 / p["p"]), gammaln(3 / p["p"])))
    cube = (d - 1) / 3 + 1
    if name == "ExpInf":
        k, j = p["k"], p["j"]
        return math.sqrt(d / cube * _ratio(gammaln((d - j) / k), gammaln((d + 2 - j) / k)))
    if name == "Exp2":
        k, j = p["k"], p["j"]
        return math.sqrt(d * _ratio(gammaln((d - j) / k), gammaln((d + 2 - j) / k)))
    if name == "Exp1":
        k = p["k"]
        return math.sqrt(d * (d + 1) / 2 * _ratio(gammaln(d / k), gammaln((d + 2) / k)))
    if name == "PowerInf":
        a = p["a"]
        return math.sqrt((a - d - 1) * (a - d - 2) / ((d + 1) * cube))
    if name == "Power2":  # erratum: Table A.2's constant holds for k = 1 only
        assert p["k"] == 1
        a = p["a"]
        return math.sqrt((a - d - 1) * (a - d - 2) / (d + 1))
    if name == "Pareto":
        a = p["a"]
        return math.sqrt((a - 1) * (a - 2) / 2)
    if name == "UniformCube":
        return math.sqrt(3)
    if name == "UniformBall":  # erratum: sqrt(d + 2), not sqrt(1 / (d + 2))
        return math.sqrt(d + 2)
    raise KeyError(name)


TABLE_CASES = [
    ("Gaussian", {}), ("Laplace", {}), ("ExpP", {"p": 0.5}), ("ExpP", {"p": 1.5}), ("ExpP", {"p": 4.0}),
    ("ExpInf", {"k": 1, "j": 0}), ("ExpInf", {"k": 2, "j": 1}), ("ExpInf", {"k": 0.5, "j": -2}),
    ("Exp2", {"k": 1, "j": 0}), ("Exp2", {"k": 2, "j": 0}), ("Exp2", {"k": 3, "j": 2.5}),
    ("Exp1", {"k": 1}), ("Exp1", {"k": 2}), ("PowerInf", {"a": "d+3"}), ("PowerInf", {"a": "d+10"}),
    ("Power2", {"a": "d+3", "k": 1}), ("Power2", {"a": "d+7.5", "k": 1}), ("Pareto", {"a": 2.5}),
    ("Pareto", {"a": 6}), ("UniformCube", {}), ("UniformBall", {}),
]


def _params(p: dict, d: int) -> dict:
    return {k: (d + float(v[2:]) if isinstance(v, str) else v) for k, v in p.items()}


@pytest.mark.parametrize("d", [1, 2, 7, 64, 3072])
@pytest.mark.parametrize("name,shape", TABLE_CASES)
def test_sigma_matches_table_a2(name, shape, d):
    params = _params(shape, d)
    if params.get("j", 0) >= d:  # outside the family: must be refused
        with pytest.raises(ValueError, match="j must satisfy j < d"):
            getattr(D, name)(d, lam=1.0, **params)
        return
    q = getattr(D, name)(d, lam=1.0, **params)
    assert q.lam / q.sigma == pytest.approx(table_a2(name, d, **params), rel=1e-9)


def test_power2_general_k_from_beta_prime_moments():
    # R^k ~ BetaPrime(d/k, a - d/k): E R^2 = B(d/k + 2/k, a - d/k - 2/k) / B(d/k, a - d/k)
    d, a, k = 10, 9.0, 2.0
    al, be = d / k, a - d / k
    er2 = math.exp(gammaln(al + 2 / k) + gammaln(be - 2 / k) - gammaln(al) - gammaln(be))
    q = D.Power2(d, a=a, k=k, lam=1.0)
    assert q.sigma ** 2 == pytest.approx(er2 / d, rel=1e-9)


@pytest.mark.parametrize("name,shape", TABLE_CASES)
def test_lam_sigma_round_trip(name, shape):
    d = 5
    params = _params(shape, d)
    make = getattr(D, name)
    q = make(d, sigma=0.37, **params)
    assert q.sigma == pytest.approx(0.37, rel=1e-12)
    assert make(d, lam=q.lam, **params).sigma == pytest.approx(0.37, rel=1e-12)
    assert isinstance(q.lam, float) and isinstance(q.sigma, float) and isinstance(q.d, int)


def _empirical_check(q, n=40_000, seed=0):
    """E ||delta||^2 / d from samples within 6 standard errors of q.sigma^2."""
    g = torch.Generator().manual_seed(seed)
    x = q.sample(n, generator=g, dtype=torch.float64)
    s = (x ** 2).sum(1).numpy() / q.d
    err = s.std() / math.sqrt(n)
    assert abs(s.mean() - q.sigma ** 2) < 6 * err + 1e-12, (q, s.mean(), q.sigma ** 2, err)


# families with a finite fourth moment, so that the sample mean obeys the CLT used above
FAMILY_STRATEGIES = {
    "Gaussian": st.just({}),
    "Laplace": st.just({}),
    "ExpP": st.fixed_dictionaries({"p": st.floats(0.4, 6)}),
    "ExpInf": st.fixed_dictionaries({"k": st.floats(0.5, 4), "j": st.floats(-3, 0.9)}),
    "Exp2": st.fixed_dictionaries({"k": st.floats(0.5, 4), "j": st.floats(-3, 0.9)}),
    "Exp1": st.fixed_dictionaries({"k": st.floats(0.5, 4)}),
    "PowerInf": st.fixed_dictionaries({"a": st.floats(5, 20)}),  # a - d
    "Power2": st.fixed_dictionaries({"a": st.floats(5, 20), "k": st.just(1)}),
    "Pareto": st.fixed_dictionaries({"a": st.floats(4.5, 20)}),
    "UniformCube": st.just({}),
    "UniformBall": st.just({}),
}


@pytest.mark.parametrize("name", sorted(FAMILY_STRATEGIES))
@settings(max_examples=8, deadline=None, derandomize=True)
@given(data=st.data())
def test_empirical_second_moment(name, data):
    d = data.draw(st.integers(1, 40), label="d")
    params = data.draw(FAMILY_STRATEGIES[name], label="params")
    if "a" in params and name != "Pareto":
        params = {**params, "a": params["a"] + d}
    sigma = data.draw(st.floats(0.05, 5), label="sigma")
    _empirical_check(getattr(D, name)(d, sigma=sigma, **params))


def test_declared_profiles_second_moment():
    t, r = D.t, D.r
    _empirical_check(D.IID(abs(t) ** 3, 6, lam=0.7))
    _empirical_check(D.IID(t + 2 * __import__("sympy").log(1 + __import__("sympy").exp(-t)), 3, lam=1.3))
    _empirical_check(D.Radial(r ** 2 / 2 + r, 2, 5, lam=2.0))
    _empirical_check(D.Radial(r ** 3, "inf", 4, sigma=1.0))


def test_infinite_sigma_builds_from_lam_and_says_so():
    q = D.Pareto(4, a=2, lam=1.0)
    with pytest.warns(RuntimeWarning, match="a > 2"):
        assert math.isinf(q.sigma)
    with pytest.raises(ValueError, match="sigma is infinite"):
        D.Pareto(4, a=1.5, sigma=1.0)
    with pytest.raises(ValueError, match="a > \\(d \\+ 2\\)/k"):
        D.PowerInf(4, a=5.5, sigma=1.0)
    assert np.isfinite(D.PowerInf(4, a=5.5, lam=1.0).lam)


def test_equivalent_forms_share_scale():
    for q in (D.Gaussian(9, sigma=0.8), D.Laplace(9, sigma=0.8)):
        (other,) = q.equivalent_forms()
        assert other.sigma == pytest.approx(q.sigma, rel=1e-12)
        assert type(other) is not type(q)
