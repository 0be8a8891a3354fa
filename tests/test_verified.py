"""The verified mode checks the float path: closed forms over random (family, d, lam, rho), envelope
lines one by one, and the regression the first property run found.

Expected values come from mpmath (the verified mode, itself checked against independent closed
forms in tests/test_soundness.py), never from the float code under test.
"""
from __future__ import annotations

import functools
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wulff import distributions as D
from wulff.diffmethod import derive
from wulff.diffmethod.structure import gamma_law
from wulff.diffmethod.verified import VerifiedStopLoss
from wulff.uniform import derive_uniform

pytestmark = pytest.mark.usefixtures("private_cache")

DIMENSIONS = (1, 2, 3, 8, 64, 3072)
#: closed-form families: name -> constructor at (d, lam)
CLOSED = {
    "Gaussian": lambda d, lam: D.Gaussian(d, lam=lam),
    "Laplace": lambda d, lam: D.Laplace(d, lam=lam),
    "ExpInf": lambda d, lam: D.ExpInf(d, lam=lam),
    "Exp2": lambda d, lam: D.Exp2(d, lam=lam),
    "Exp1": lambda d, lam: D.Exp1(d, lam=lam),
    "UniformCube": lambda d, lam: D.UniformCube(d, lam=lam),
    "UniformBall": lambda d, lam: D.UniformBall(d, lam=lam),
}


def _rho(kind: str, exponent: float) -> float:
    gap = 10.0 ** -exponent
    return {"half": 0.5 + gap, "one": 1.0 - gap, "mid": 0.5 + 0.5 * (1 - gap)}[kind]


def _closed_certificates(q, adversary):
    out = []
    for provider in (derive, derive_uniform):
        try:
            cert = provider(q, adversary)
        except NotImplementedError:
            continue
        if cert.formula is not None:
            out.append(cert)
    return out


def test_lam_scaling_rounds_toward_zero():
    # found by the property test below: unit radius 0.875 times this lam rounded up by one ulp
    lam = 4.989379534754323
    cert = derive_uniform(D.UniformCube(1, lam=lam), "l1")  # R = 2 lam (rho - 1/2), Theorem N.3
    with mpmath.workdps(40):
        exact = 2 * mpmath.mpf(lam) * (mpmath.mpf(0.9375) - mpmath.mpf(1) / 2)
    assert float(cert.radius(0.9375)) <= exact
    assert float(cert.radius(np.array([0.9375]))[0]) <= exact


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(CLOSED)), d=st.sampled_from(DIMENSIONS),
       lam=st.floats(0.1, 10.0), adversary=st.sampled_from(["l1", "l2", "linf"]),
       kind=st.sampled_from(["half", "one", "mid"]), exponent=st.floats(1.0, 15.0))
def test_closed_forms_never_exceed_their_verified_value(name, d, lam, adversary, kind, exponent):
    rho = _rho(kind, exponent)
    for cert in _closed_certificates(CLOSED[name](d, lam), adversary):
        value = float(cert.radius(rho))
        verified = float(cert.verified_radius(rho))
        assert value <= verified, (name, d, lam, adversary, rho, value, verified)
        assert value >= verified * (1 - 1e-6) - 1e-300, "the float path should stay tight"


#: envelope certificates (quadrature, discrete laws, convex-order bounds) at small d
ENVELOPES = {
    "Pareto l1": (lambda: D.Pareto(2, 3, lam=1), "l1"),
    "ExpP(1.5) l1": (lambda: D.ExpP(3, 1.5, lam=1), "l1"),
    "PowerInf linf": (lambda: D.PowerInf(2, 5, lam=1), "linf"),
    "PowerInf l1": (lambda: D.PowerInf(3, 6, lam=1), "l1"),
    "Laplace linf": (lambda: D.Laplace(5, lam=1), "linf"),
    "Pareto linf": (lambda: D.Pareto(3, 3, lam=1), "linf"),
    "Exp1(k=2) linf": (lambda: D.Exp1(3, k=2, lam=1), "linf"),
    "Power2 l2": (lambda: D.Power2(3, 6, lam=1), "l2"),
}


@functools.cache
def _lines(name: str):
    make, adversary = ENVELOPES[name]
    law = gamma_law(make(), adversary)
    envelope = law.envelope()
    return envelope, VerifiedStopLoss(law, 40)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(ENVELOPES)), position=st.floats(0.0, 1.0))
def test_every_float_line_lies_above_its_mpmath_stop_loss(name, position):
    envelope, stop_loss = _lines(name)
    i = int(position * (envelope.c.size - 1))
    c, e = float(envelope.c[i]), float(envelope.e[i])
    assert e >= stop_loss(c), (name, i, c, e, float(stop_loss(c)))


@pytest.mark.parametrize("name", ["Pareto l1", "Laplace linf", "PowerInf linf"])
def test_verified_radius_of_an_envelope_bounds_the_float_one(name):
    make, adversary = ENVELOPES[name]
    cert = derive(make(), adversary)
    assert cert.formula is None and cert.verified_method == "mpmath envelope lines"
    rho = np.array([0.5 + 1e-12, 0.5 + 1e-6, 0.5015])  # a few active lines each
    value, verified = cert.radius(rho), cert.verified_radius(rho)
    assert np.all(value <= verified) and np.all(value >= verified * (1 - 1e-8))


def test_verified_radius_passes_through_norm_conversions():
    cert = derive(D.Pareto(2, 3, lam=2.5), "l1")
    converted = cert.converted("linf")  # ||v||_1 <= 2 ||v||_inf in d = 2: R / 2
    rho = 0.5 + 1e-5
    assert float(converted.verified_radius(rho)) <= float(cert.verified_radius(rho)) / 2
    assert float(converted.radius(rho)) <= float(converted.verified_radius(rho))


def test_verified_mode_rejects_low_precision():
    with pytest.raises(ValueError, match="dps"):
        derive(D.Pareto(2, 3, lam=1), "l1").verified_radius(0.6, dps=20)


def test_cli_derive_verify_prints_float_verified_and_ratio(capsys):
    from wulff.cli import main
    assert main(["derive", "Pareto", "--a", "3", "--d", "2", "--adversary", "l1",
                 "--rho", "0.5001", "0.501", "--verify"]) == 0
    out = capsys.readouterr().out
    assert "verified mode: mpmath envelope lines" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("0.50")]
    assert len(rows) == 2
    for _rho, value, verified, ratio in rows:
        assert float(value) <= float(verified) and 0.999999 < float(ratio) <= 1.0


@pytest.mark.parametrize("d", [3072])
def test_binomial_sign_sum_lines_hold_at_large_d_and_in_the_far_tail(d):
    """Laplace vs linf (Theorem P.2): the float lines at large d, where scipy's binomial
    probabilities carry ~1e-11 relative error and support points below 1e-300 are left out, still lie
    above the exact stop-loss, in the bulk and at the top kinks where the stop-loss is ~1e-300."""
    law = gamma_law(D.Laplace(d, lam=1.0), "linf")
    envelope, stop_loss = law.envelope(), VerifiedStopLoss(law, 40)
    finite = np.flatnonzero(envelope.e > 0)
    picks = np.unique(np.concatenate([finite[:2], finite[len(finite) // 2: len(finite) // 2 + 2], finite[-3:]]))
    for i in picks:
        c, e = float(envelope.c[i]), float(envelope.e[i])
        assert e >= stop_loss(c), (d, i, c, e, float(stop_loss(c)))


def discrete_sign_sum_radius(m, d: int, rho: float, dps: int = 40):
    """Theorem G.6 for gamma = m (2 Bin(d, 1/2) - d), written here independently of the library:
    Phi(p) = m E[S; top p] is piecewise linear (one piece per support value of S, from the top), and
    int_{1 - rho}^{1/2} dp / Phi(p) is a sum of logarithms. ``m`` an mpmath number or a rational."""
    with mpmath.workdps(dps + 10):
        m, p0 = mpmath.mpf(m), 1 - mpmath.mpf(rho)
        half, total, below, head = mpmath.mpf(1) / 2, mpmath.mpf(0), mpmath.mpf(0), mpmath.mpf(0)
        for heads in range(d, -1, -1):  # s = 2 heads - d from the top; Phi(below) = head
            s = 2 * heads - d
            top = min(below + mpmath.binomial(d, heads) / mpmath.mpf(2) ** d, half)
            lo = max(below, p0)
            if top > lo:
                at_lo, at_top = head + m * s * (lo - below), head + m * s * (top - below)
                total += mpmath.log(at_top / at_lo) / (m * s) if s else (top - lo) / head
            head, below = head + m * s * (top - below), top
            if below >= half:
                return total
    raise AssertionError("the support of S reaches p = 1/2")


def test_verified_iid_profile_near_half_finishes():
    """Found by the soundness audit (issue 25): log cosh against l1 near rho = 1/2 ran mpmath out of
    memory (tanh(e^y) at a far node y of an infinite quadrature piece needs ~e^y digits). The exact
    radius is bracketed without the library: gamma = +-tanh|X|, X ~ sech(x) / pi, so
    Phi(1/2) = E gamma_+ = 1 / pi and |Phi'| <= sup |gamma| = 1 give
    pi delta <= R <= -log(1 - pi delta) for delta = rho - 1/2 (Theorem G.6)."""
    from sympy import cosh, log

    rho = 0.5 + 1.9e-13
    cert = derive(D.IID(log(cosh(D.t)), 8, lam=1.0), "l1")
    verified = float(cert.verified_radius(rho))
    with mpmath.workdps(40):
        delta = mpmath.mpf(rho) - mpmath.mpf(1) / 2
        low, high = mpmath.pi * delta, -mpmath.log(1 - mpmath.pi * delta)
    assert verified <= high
    assert verified >= low * (1 - 1e-9)
    assert float(cert.radius(rho)) <= verified * (1 + 1e-9)


def test_verified_pareto_linf_is_tight_near_one():
    """Found by the audit (issue 25): Pareto against linf with a + 1 not dyadic (a = 5.39, d = 2)
    gave a verified radius 0.3 % below the float one at rho = 1 - 2^-53. The certificate is Theorem
    G.6 for the dominating law (a + 1)(2 Bin(d, 1/2) - d), whose radius is computed here exactly."""
    rho = 1 - 2.0 ** -53
    cert = derive(D.Pareto(2, 5.39, lam=1.0), "linf")
    exact = discrete_sign_sum_radius(mpmath.mpf(639) / 100, 2, rho)
    verified = float(cert.verified_radius(rho))
    assert verified <= exact
    assert verified >= exact * (1 - 1e-9)
    assert float(cert.radius(rho)) <= verified * (1 + 1e-9)


def test_phi_lower_lines_lie_below_phi_and_close_to_it():
    """The lower bound on Phi of the verified bracket (convexity of the stop-loss, Theorem G.6's
    Phi(p) = min_c (c p + E(gamma - c)_+)), on a law written here: gamma = +-M, M ~ Exp(1), so
    E(gamma - c)_+ = e^-c / 2 and Phi(p) = p (1 - log 2p) (the top 2p of M lie above -log 2p). The
    samples carry a relative uncertainty of 1e-12 either side."""
    from wulff.diffmethod.verified import _phi_lower_lines

    with mpmath.workdps(40):
        slack = mpmath.mpf(10) ** -12
        slopes = [mpmath.mpf(k) / 8 for k in range(0, 41)]
        samples = [(c, mpmath.exp(-c) / 2 * (1 - slack), mpmath.exp(-c) / 2 * (1 + slack)) for c in slopes]
        lines = _phi_lower_lines(samples, mpmath.mpf(1) / 2)
        for p in mpmath.linspace(mpmath.mpf(10) ** -2, mpmath.mpf(1) / 2, 60):
            phi = p * (1 - mpmath.log(2 * p))
            low = min(c * p + g for c, g in lines)
            assert low <= phi, (p, low, phi)
            assert low >= phi * (1 - 1e-2), (p, low, phi)


@pytest.mark.parametrize("family, m, d, rho", [("Laplace", Fraction(1), 3, 0.9),
                                               ("Pareto", Fraction(639, 100), 2, 1 - 2.0 ** -53)])
def test_verified_bracket_of_a_discrete_law_is_tight(family, m, d, rho):
    """Discrete sign sums against linf (Theorem P.2): the bracket holds the exact radius of Theorem
    G.6 (computed here) within 1e-12 relative."""
    q = D.Laplace(d, lam=1.0) if family == "Laplace" else D.Pareto(d, 5.39, lam=1.0)
    lower, upper = derive(q, "linf").verified_bracket(rho)
    exact = discrete_sign_sum_radius(mpmath.mpf(m.numerator) / m.denominator, d, rho)
    assert lower <= exact <= upper
    assert (upper - lower) / lower < 1e-12


def test_verified_bracket_refuses_what_it_cannot_bound():
    cert = derive(D.Pareto(2, 3.0, lam=1.0), "l1")
    with pytest.raises(ValueError, match="refine"):
        cert.verified_bracket(0.6, refine=9)
    with pytest.raises(ValueError, match="dps"):
        cert.verified_bracket(0.6, dps=20)
    with pytest.raises(NotImplementedError, match="verified_bracket"):
        derive(D.Laplace(2, lam=1.0), "l1").verified_bracket(0.6)  # a closed form: verified_radius
