"""Norm conversions between adversaries (docs/design.md, "Certificates and norm conversions";
Table A.1 "Symmetry" rows): Hoelder's
inequality ||eta||_a <= d^max(0, 1/a - 1/b) ||eta||_b, checked on random and extremal vectors."""
import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wulff.certificate import ADVERSARIES, Certificate, conversion_factor, rho_symbol

NORM_ORDER = {"l1": 1, "l2": 2, "linf": np.inf}
#: by hand: ||.||_2 <= ||.||_1 <= sqrt(d) ||.||_2 and ||.||_inf <= ||.||_2 <= sqrt(d) ||.||_inf
EXPECTED = {("l1", "l1"): lambda d: 1.0, ("l1", "l2"): np.sqrt, ("l1", "linf"): lambda d: float(d),
            ("l2", "l1"): lambda d: 1.0, ("l2", "l2"): lambda d: 1.0, ("l2", "linf"): np.sqrt,
            ("linf", "l1"): lambda d: 1.0, ("linf", "l2"): lambda d: 1.0, ("linf", "linf"): lambda d: 1.0}


@pytest.mark.parametrize("source,target", list(EXPECTED))
@pytest.mark.parametrize("d", [1, 2, 7, 3072, 150528])
def test_factor_table(source, target, d):
    assert conversion_factor(source, target, d) == pytest.approx(EXPECTED[(source, target)](d), rel=1e-15)


@settings(max_examples=60, deadline=None)
@given(d=st.integers(1, 50), seed=st.integers(0, 2 ** 31))
def test_factor_is_a_valid_and_attained_constant(d, seed):
    rng = np.random.default_rng(seed)
    etas = np.concatenate([rng.standard_normal((20, d)), rng.standard_cauchy((20, d)),
                           np.eye(d)[:1], np.ones((1, d))])
    for source in ADVERSARIES:
        for target in ADVERSARIES:
            c = conversion_factor(source, target, d)
            ns = np.linalg.norm(etas, NORM_ORDER[source], axis=1)
            nt = np.linalg.norm(etas, NORM_ORDER[target], axis=1)
            assert np.all(ns <= c * nt * (1 + 1e-12))
            assert np.max(ns / nt) == pytest.approx(c, rel=1e-12)  # e_1 or (1, ..., 1) attains it


def _linear_cert(adversary="l2", d=16, lam=2.0):
    return Certificate(adversary=adversary, method="test line", lam=lam, d=d,
                       radius_unit=lambda rho: 3.0 * (rho - 0.5),
                       formula=lam * 3 * (rho_symbol - sp.Rational(1, 2)))  # formulas include lam


@pytest.mark.parametrize("source", ADVERSARIES)
@pytest.mark.parametrize("target", ADVERSARIES)
def test_converted_certificate(source, target):
    d, lam = 16, 2.0
    base = _linear_cert(source, d, lam)
    conv = base.converted(target)
    rho = np.linspace(0.4, 1.0, 13)
    c = EXPECTED[(source, target)](d)
    np.testing.assert_allclose(conv.radius(rho), base.radius(rho) / c, rtol=1e-15)
    assert np.all(conv.radius(rho) <= base.radius(rho) / c)  # rounded toward zero
    assert conv.adversary == target
    if source == target:
        assert conv is base
        return
    assert f"{source} -> {target} norm conversion" in conv.method and "test line" in conv.method
    assert not conv.tight and conv.Phi is None
    value = float(conv.formula.subs(rho_symbol, sp.Rational(9, 10)))
    assert value == pytest.approx(lam * 3 * 0.4 / c, rel=1e-14)


def test_converted_soundness_on_random_perturbations():
    """||eta||_target < converted radius implies ||eta||_source < source radius."""
    d = 9
    rng = np.random.default_rng(1)
    for source in ADVERSARIES:
        base = _linear_cert(source, d, 1.0)
        r_source = float(base.radius(0.8))
        for target in ADVERSARIES:
            r_target = float(base.converted(target).radius(0.8))
            etas = rng.standard_normal((500, d))
            etas[0], etas[1] = np.eye(d)[0], np.ones(d)
            etas *= (r_target * 0.999999) / np.linalg.norm(etas, NORM_ORDER[target], axis=1, keepdims=True)
            assert np.all(np.linalg.norm(etas, NORM_ORDER[source], axis=1) < r_source)


def test_converted_keeps_inf_torch_and_validation():
    cert = Certificate(adversary="l2", method="inf at one", lam=1.0, d=4,
                       radius_unit=lambda rho: np.where(rho >= 1, np.inf, rho - 0.5))
    conv = cert.converted("linf")
    assert conv.radius(1.0) == np.inf
    assert conv.radius(0.9) == pytest.approx(0.2, rel=1e-15)
    t = conv.radius(torch.tensor([0.3, 0.9], dtype=torch.float32))
    assert t.dtype == torch.float32 and float(t[0]) == 0.0
    with pytest.raises(ValueError, match="rho"):
        conv.radius(np.nan)
    with pytest.raises(ValueError, match="adversary"):
        cert.converted("l3")
