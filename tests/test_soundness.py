"""Soundness near rho = 1/2 and rho = 1, low-precision outputs, d = 1, and the verified mode.

Every expected value here comes from an independent mpmath computation (40 digits), never from the
code under test: the four defects of docs/soundness.md each have a test that failed before the fix.
"""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch

import wulff
from wulff import distributions as D
from wulff.certificate import Certificate, monotone_envelope
from wulff.diffmethod import derive
from wulff.uniform import derive_uniform

pytestmark = pytest.mark.usefixtures("private_cache")

ADVERSARIES = ("l1", "l2", "linf")
NEAR_HALF = [0.5 + 10.0 ** -k for k in range(15, 2, -1)]
NEAR_ONE = [1 - 10.0 ** -k for k in range(3, 16)] + [1 - 2.0 ** -52, 1 - 2.0 ** -53]
GRID = np.array(sorted(NEAR_HALF + [0.6, 0.9, 0.99] + NEAR_ONE))


def _families(d: int) -> list:
    return [D.Gaussian(d, lam=1), D.Laplace(d, lam=1), D.ExpP(d, 1.5, lam=1), D.Pareto(d, 3, lam=1),
            D.ExpInf(d, lam=1), D.Exp2(d, lam=1), D.Exp1(d, lam=1), D.PowerInf(d, d + 3, lam=1),
            D.Power2(d, d + 3, lam=1), D.UniformCube(d, lam=1), D.UniformBall(d, lam=1)]


def _direct_certificates(q, adversary):
    out = []
    for provider in (derive, derive_uniform):
        try:
            out.append(provider(q, adversary))
        except NotImplementedError:
            pass
    return out


def _mp_beta_inv(a, y, dps=40):
    """x with I_x(a, a) = y, by bisection in mpmath (independent of wulff.special)."""
    with mpmath.workdps(dps):
        lo, hi = mpmath.mpf(0), mpmath.mpf(1)
        for _ in range(4 * dps):
            mid = (lo + hi) / 2
            if mpmath.betainc(a, a, 0, mid, regularized=True) < y:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2


# -- defect 1: Exp2 in d = 2 certified an infinite radius near rho = 1 -------------------------------
@pytest.mark.parametrize("adversary", ADVERSARIES)
def test_exp2_d2_is_finite_and_below_the_exact_radius_near_one(adversary):
    # Theorem R.1 with a = 1/2: I_x(1/2, 1/2) = (2/pi) asin(sqrt x), so R = atanh(cos(pi (1 - rho)))
    cert = derive(D.Exp2(2, lam=1), "l2").converted(adversary)
    factor = {"l1": 1, "l2": 1, "linf": math.sqrt(2)}[adversary]
    for rho in [1 - 3e-9, 1 - 1e-9, 1 - 1e-12, 1 - 1e-15]:
        with mpmath.workdps(40):
            exact = mpmath.atanh(mpmath.cos(mpmath.pi * (1 - mpmath.mpf(rho)))) / factor
        value = float(cert.radius(rho))
        assert math.isfinite(value) and value <= exact and value >= 0.999 * exact


# -- defect 2: Theorem S.1 over-claimed near rho = 1/2 ------------------------------------------------
@pytest.mark.parametrize("d", [2, 1000])
def test_uniform_ball_below_mpmath_near_half(d):
    cert = derive_uniform(D.UniformBall(d, lam=1), "l2")
    for rho in [0.5 + 1e-15, 0.5 + 1e-13, 0.5 + 1e-12, 0.5 + 1e-9]:
        with mpmath.workdps(40):
            exact = 2 - 4 * _mp_beta_inv(mpmath.mpf(d + 1) / 2, mpmath.mpf(3) / 4 - mpmath.mpf(rho) / 2)
        value = float(cert.radius(rho))
        assert 0 < value <= exact and value >= (1 - 1e-6) * exact


# -- defect 3 (and issue 9 item 6): low-precision outputs rounded toward zero -----------------------
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_low_precision_radius_never_rounds_up(dtype):
    cert = derive(D.Gaussian(4, lam=1), "l2")
    rho = torch.linspace(0.5, 0.999, 4001, dtype=torch.float64).to(dtype)
    out = cert.radius(rho)
    assert out.dtype == dtype
    with mpmath.workdps(40):  # the exact radius of the tensor's exact values: sqrt(2) erfinv(2 rho - 1)
        exact = [mpmath.sqrt(2) * mpmath.erfinv(2 * mpmath.mpf(float(r)) - 1) for r in rho.double()]
    assert all(float(o) <= e for o, e in zip(out.double(), exact))
    finfo = torch.finfo(dtype)
    gap = [e - float(o) for o, e in zip(out.double(), exact) if e > 0]
    assert max(gap) <= (2 * finfo.eps + 2e-8) * max(float(e) for e in exact)  # one ulp + the closed-form margin


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_finite_radius_beyond_the_dtype_is_its_largest_value_not_inf(dtype):
    cert = derive(D.Gaussian(4, lam=1e6), "l2")  # radius ~ 2.3e6 at rho = 0.99: above fp16's 65504
    out = cert.radius(torch.tensor([0.75, 0.99], dtype=dtype))
    assert torch.isfinite(out).all()
    if dtype == torch.float16:
        assert float(out[1]) == torch.finfo(dtype).max


def test_numpy_and_integer_tensors_stay_float64():
    cert = derive(D.Laplace(3, lam=1), "l1")
    assert cert.radius(np.float32(0.9)).dtype == np.float64
    assert cert.radius(torch.tensor([1])).dtype == torch.float64


# -- defect 4: d = 1 is valid -------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: D.Exp2(1, lam=1), lambda: D.Power2(1, 3, lam=1),
                                  lambda: D.UniformBall(1, lam=1), lambda: D.ExpInf(1, lam=1)])
def test_every_adversary_works_in_d1(make):
    q = make()
    rho = np.array([0.6, 0.9, 1 - 1e-12])
    values = [wulff.certified_radius(q, rho, adversary) for adversary in ADVERSARIES]
    for v in values:
        assert np.all(np.isfinite(v)) and np.all(v > 0)


def test_exp2_d1_l2_is_the_laplace_radius():
    # in d = 1, Exp2 is Laplace: R = log(1 / (2 (1 - rho))) (Theorem I.1)
    cert = derive(D.Exp2(1, lam=1), "l2")
    for rho in [0.6, 0.9, 1 - 1e-9]:
        exact = -mpmath.log(2 * (1 - mpmath.mpf(rho)))
        assert (1 - 1e-7) * exact <= float(cert.radius(rho)) <= exact


# -- guards ---------------------------------------------------------------------------------------------
def test_infinite_radius_below_one_raises():
    cert = Certificate(adversary="l2", method="broken", lam=1.0, d=2,
                       radius_unit=lambda r: np.full(r.shape, np.inf))
    with pytest.raises(ArithmeticError, match="infinite"):
        cert.radius(np.array([0.7]))


def test_a_radius_depends_on_its_own_rho_only_and_the_envelope_is_opt_in():
    wobbly = lambda r: np.where(np.abs(r - 0.7) < 1e-9, 5.0, r - 0.5)  # a spike at 0.7
    cert = Certificate(adversary="l2", method="wobbly", lam=1.0, d=2, radius_unit=wobbly)
    rho = np.array([0.9, 0.7, 0.8])
    out = cert.radius(rho)
    # batch-independent: the same value alone as in any batch
    assert [float(cert.radius(r)) for r in rho] == out.tolist() == wobbly(rho).tolist()
    envelope = monotone_envelope(rho, out)  # never increases a value, makes the batch monotone
    assert np.all(envelope <= out) and envelope[1] <= envelope[2] <= envelope[0]


def test_the_kernel_never_mutates_the_callers_rho():
    rho = np.array([0.6, 0.9])
    cert = Certificate(adversary="l2", method="identity", lam=0.3, d=2, radius_unit=lambda r: r)
    out = cert.radius(rho)
    assert rho.tolist() == [0.6, 0.9] and np.all(out <= 0.3 * rho) and np.all(out > 0.3 * rho * (1 - 1e-15))


# -- the grid: every direct certificate of every named family -----------------------------------------
@pytest.mark.parametrize("d", [1, 2, 3, 8])
def test_grid_finite_monotone_and_below_mpmath(d):
    for q in _families(d):
        for adversary in ADVERSARIES:
            for cert in _direct_certificates(q, adversary):
                values = cert.radius(GRID)
                assert np.all(np.isfinite(values)), (q.name, d, adversary)
                assert np.all(np.diff(values) >= 0), (q.name, d, adversary)
                # closed forms on the whole grid; envelopes (mpmath lines cost up to a second each,
                # thousands are active near rho = 1) near 1/2 here, line by line in test_verified.py
                grid = GRID if cert.verified_unit is None else GRID[GRID < 0.5 + 1e-3]
                verified = cert.verified_radius(grid)
                assert np.all(cert.radius(grid) <= verified), (q.name, d, adversary, cert.radius(grid) - verified)


def test_grid_at_d3072_finite_monotone_and_below_mpmath_at_three_points():
    # the full rho grid for finiteness and monotonicity; mpmath (slow inverses at d = 3072: ~15 s per
    # value) at one rho near 1/2, one in the bulk and one near 1; the whole grid in mpmath is
    # benchmarks/verified_ratio.py --dims 3072
    probe = np.array([0.5 + 1e-12, 0.9, 1 - 1e-12])
    for q in _families(3072):
        for adversary in ADVERSARIES:
            for cert in _direct_certificates(q, adversary):
                values = cert.radius(GRID)
                assert np.all(np.isfinite(values)) and np.all(np.diff(values) >= 0), (q.name, adversary)
                if cert.formula is not None and cert.verified_unit is None:
                    cheap = probe if "BetaIncInv" not in str(cert.formula) else probe[1:2]
                    assert np.all(cert.radius(cheap) <= cert.verified_radius(cheap)), (q.name, adversary)


# -- issue 25, item 1: the grid at d = 150528, a just above d, hugging rho = 1 ---------------------------
@pytest.mark.parametrize("b", [1, 40])
def test_grid_at_d150528_power_inf_direct_certificates_below_theorem_o2(b):
    """Every direct certificate of PowerInf(d, d + b) against every adversary, read against linf
    (the norm conversions of Table A.1), on the grid: finite, nondecreasing, and below the mpmath
    reference of Theorem O.2 at the rho next to 1 (tests/test_tail_soundness.py)."""
    from test_tail_soundness import power_inf_reference

    d = 150528
    q = D.PowerInf(d, d + b, lam=1)
    near = [r for r in GRID if r >= 1 - 1e-12]
    exact = np.array(power_inf_reference(d, d + b, near))
    for adversary in ADVERSARIES:
        for cert in _direct_certificates(q, adversary):
            linf = cert.converted("linf")
            values = linf.radius(GRID)
            assert np.all(np.isfinite(values)) and np.all(np.diff(values) >= 0), adversary
            at_the_top = linf.radius(np.array(near))
            assert np.all(at_the_top <= exact), (adversary, at_the_top / exact - 1)
