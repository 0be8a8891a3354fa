"""Two-class certificates (wulff.certify.two_class; issue 28, section 2): the radius from a lower bound
on p_A and an upper bound on p_B reduces to R(p_A) at p_B = 1 - p_A, is Cohen et al.'s Theorem 1 for
the Gaussian against l2, and is never above the exact robust radius of toy classifiers whose class
probabilities are known exactly (half-spaces and three-class slabs, where the two-class
Neyman-Pearson sets are half-spaces: the toy's radius along e_1 is the exact two-class radius).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from scipy.stats import laplace, norm, uniform
from toys import Slabs

import wulff
import wulff.distributions as D
from wulff.certify import Smoothed
from wulff.certify.adaptive import certify_sequential
from wulff.certify.two_class import DIFFERENTIAL, GENERIC, ONE_CLASS, two_class_radius

pytestmark = pytest.mark.usefixtures("one_torch_thread", "private_cache")

CASES = [("Gaussian", "l2"), ("Laplace", "l1"), ("Laplace", "l2"), ("Laplace", "linf"), ("UniformCube", "l1"),
         ("UniformCube", "l2"), ("UniformBall", "l2"), ("Exp1", "l1")]


def noise(name: str, d: int = 3):
    return getattr(D, name)(d, sigma=0.5)


@pytest.fixture(scope="module")
def certificates():
    return {case: wulff.best_certificate(noise(case[0]), case[1]) for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(c))
def test_reduces_to_the_one_class_radius_at_pb_equal_one_minus_pa(certificates, case):
    cert = certificates[case]
    for rho in (0.5001, 0.6, 0.75, 0.9, 0.99, 0.9999):
        radius, form = two_class_radius(cert, rho, 1 - rho)
        assert radius == pytest.approx(float(cert.radius(rho)), rel=1e-12, abs=1e-15)
        assert radius >= float(cert.radius(rho))  # never below the p_A form
    assert two_class_radius(cert, 0.5, 0.1) == (0.0, ONE_CLASS)  # abstain, as CERTIFY


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(c))
def test_a_smaller_runner_up_certifies_more(certificates, case):
    cert = certificates[case]
    radius, form = two_class_radius(cert, 0.8, 0.05)
    assert radius > float(cert.radius(0.8)) and form in (GENERIC, DIFFERENTIAL)
    assert two_class_radius(cert, 0.8, 0.01)[0] >= radius


@pytest.mark.parametrize("sigma", [0.25, 1.0])
def test_gaussian_l2_is_cohens_theorem_1(sigma):
    cert = wulff.best_certificate(D.Gaussian(4, sigma=sigma), "l2")
    for a, b in [(0.9, 0.05), (0.6, 0.3), (0.999, 1e-5), (0.75, 0.2)]:
        radius, form = two_class_radius(cert, a, b)
        cohen = sigma / 2 * (norm.ppf(a) - norm.ppf(b))
        assert form == DIFFERENTIAL and radius == pytest.approx(cohen, rel=1e-7) and radius <= cohen


def slab_radius(cdf, a: float, b: float) -> float:
    """The exact radius of the toy with class A on x_1 < a, C on a <= x_1 < b, B on x_1 >= b (a < b)
    shifted along e_1 (noise coordinate 1 with CDF ``cdf``): the first shift t where A stops beating
    both B and C."""
    def margin(t):
        p_a, p_b = cdf(a - t), 1 - cdf(b - t)
        return p_a - max(p_b, 1 - p_a - p_b)
    return brentq(margin, 0.0, b + 50.0, xtol=1e-13)


TOYS = [  # (family, d, adversary, scipy law of one noise coordinate)
    ("Gaussian", 2, "l2", lambda s: norm(scale=s)),
    ("Laplace", 1, "l1", lambda s: laplace(scale=s / math.sqrt(2))),
    ("Laplace", 2, "l1", lambda s: laplace(scale=s / math.sqrt(2))),
    ("UniformCube", 1, "l1", lambda s: uniform(loc=-s * math.sqrt(3), scale=2 * s * math.sqrt(3))),
]


@pytest.mark.parametrize("family, d, adversary, law", TOYS, ids=[f"{t[0]}-d{t[1]}-{t[2]}" for t in TOYS])
def test_never_above_the_exact_radius_of_half_space_and_three_class_toys(family, d, adversary, law):
    sigma = 0.5
    cert = wulff.best_certificate(getattr(D, family)(d, sigma=sigma), adversary)
    cdf = law(sigma).cdf
    rng = np.random.default_rng(0)
    scale = 3 * sigma
    for _ in range(40):
        a = rng.uniform(0.05, 1.0) * scale
        b = a + rng.uniform(0.0, 2.0) * scale
        p_a, p_b = cdf(a), max(1 - cdf(b), cdf(b) - cdf(a))  # p_B: the largest other class
        exact = slab_radius(cdf, a, b)  # three classes (two when b = a)
        radius, _ = two_class_radius(cert, float(p_a), float(p_b))
        assert radius <= exact * (1 + 1e-9) + 1e-12, (a, b, radius, exact)
        half_space = brentq(lambda t, a=a: cdf(a - t) - 0.5, 0.0, a + 50.0, xtol=1e-13)  # p_B = 1 - p_A
        assert two_class_radius(cert, float(p_a), float(1 - p_a))[0] <= half_space * (1 + 1e-9) + 1e-12
    if family in ("Gaussian", "Laplace") and d == 1 or family == "Gaussian":
        a, b = 0.4, 0.5  # the differential form is the exact two-class radius here (Neyman-Pearson sets)
        assert two_class_radius(cert, float(cdf(a)), float(1 - cdf(b)))[0] == pytest.approx((a + b) / 2, rel=1e-6)


@pytest.mark.parametrize("rho_a, rho_b, match", [(1.5, 0.1, "rho_a"), (0.9, -0.1, "rho_b"),
                                                 (float("nan"), 0.1, "rho_a"), (0.9, "0.1", "rho_b")])
def test_bad_bounds_are_refused(certificates, rho_a, rho_b, match):
    with pytest.raises(ValueError, match=match):
        two_class_radius(certificates[("Gaussian", "l2")], rho_a, rho_b)


def test_certify_records_the_runner_up_bound_and_the_form():
    sigma, a, b = 0.5, 0.5, 0.7
    s = Smoothed(Slabs(a, b), D.Gaussian(2, sigma=sigma), 3, seed=0)
    res = s.certify(torch.zeros(2), 100, 20_000, 0.001, 5000, adversaries=("l2",), two_class=True)
    assert res.prediction == 0 and res.rho_b_upper is not None and res.form == {"l2": DIFFERENTIAL}
    assert res.rho_b_upper >= 1 - norm.cdf(b / sigma) and res.rho_b_upper < 1 - res.rho_lower
    one_class = float(s.certificate("l2").radius(res.rho_lower))
    assert one_class < res.radius["l2"] <= (a + b) / 2  # more than p_A alone, below the exact radius
    adaptive = s.certify_adaptive(torch.zeros(2), 20_100, 0.001, 5000, adversaries=("l2",))
    assert adaptive.rho_b_upper is not None and adaptive.form == {"l2": GENERIC}  # the two scores' bound
    assert float(s.certificate("l2").radius(adaptive.rho_lower)) < adaptive.radius["l2"] <= (a + b) / 2
    plain = s.certify(torch.zeros(2), 100, 20_000, 0.001, 5000, adversaries=("l2",), two_class=False)
    assert plain.rho_b_upper is None and plain.form == {"l2": ONE_CLASS}


def test_two_class_procedure_over_claims_at_most_at_rate_alpha():
    """Thousands of sequential runs on three-class slabs under Gaussian noise (exact radius (a + b) / 2,
    Cohen's Theorem 1 being tight there), votes drawn as multinomial counts: the rate of radii above
    the exact one stays within the binomial limit of alpha = 0.05."""
    sigma, alpha, runs = 0.5, 0.05, 1200
    cert = wulff.best_certificate(D.Gaussian(2, sigma=sigma), "l2")
    rng = np.random.default_rng(5)
    wrong = two = 0
    for i in range(runs):
        a = 0.3 + 0.1 * (i % 5)
        b = a + 0.05
        probs = np.array([norm.cdf(a / sigma), 1 - norm.cdf(b / sigma), 0.0])
        probs[2] = 1 - probs[0] - probs[1]
        out = certify_sequential(lambda k, probs=probs: rng.multinomial(k, probs), 2000, alpha, {"l2": cert},
                                 radii=(0.2, 0.3, 0.4, 0.5, 0.6, 0.7))
        two += out.form.get("l2") == GENERIC
        wrong += not out.abstained and (out.candidate != 0 or out.radius["l2"] > (a + b) / 2)
    assert wrong / runs <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)
    assert two > runs / 2  # the two-class form was used
