"""Radius evaluation (issue 16): torch in gives the numpy values, gradients are dR/drho, a best
certificate chooses its candidates once and equals their pointwise maximum, the front door keeps
certificates per distribution value, and binomial sign sums stay O(d) in memory.

Reference slopes are written here from the paper's closed forms (Table A.1), not taken from the code.
"""
from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

import wulff
import wulff.distributions as D
from wulff import selector
from wulff.catalog import ADVERSARIES, FAMILY_NAMES
from wulff.diffmethod.laws import RademacherSum
from wulff.diffmethod.magnitude import ConstantMagnitude
from wulff.distributions import registry
from wulff.uniform import derive_uniform

pytestmark = pytest.mark.usefixtures("private_cache")

D_SMALL = 10
SIGMA = 0.5


def _gaussian_l2_slope(rho):  # R = sigma Phi^-1(rho)
    return SIGMA / stats.norm.pdf(stats.norm.ppf(rho))


def _laplace_l1_slope(rho):  # R = -lam log(2 (1 - rho)), lam = sigma / sqrt(2)
    return SIGMA / math.sqrt(2) / (1 - rho)


def _cube_l1_slope(rho):  # R = 2 lam (rho - 1/2), lam = sigma sqrt(3)
    return 2 * SIGMA * math.sqrt(3) + 0 * rho


def _cube_linf_slope(rho):  # R = 2 lam (1 - (3/2 - rho)^(1/d))
    return 2 * SIGMA * math.sqrt(3) / D_SMALL * (1.5 - rho) ** (1 / D_SMALL - 1)


#: (family, adversary) -> the slope dR/drho of its closed form
CLOSED_SLOPES = {
    ("Gaussian", "l2"): _gaussian_l2_slope,
    ("Laplace", "l1"): _laplace_l1_slope,
    ("UniformCube", "l1"): _cube_l1_slope,
    ("UniformCube", "linf"): _cube_linf_slope,
}
#: every adversary of a few families, including envelope (quadrature) and level-set certificates
PAIRS = [(name, adv) for name in ("Gaussian", "Laplace", "UniformCube", "UniformBall", "ExpInf")
         for adv in ("l1", "l2", "linf")]


def _q(name: str):
    return getattr(D, name)(D_SMALL, sigma=SIGMA)


#: torch kernels use torch's own special functions (a few ulps from scipy's), and the uniform
#: ball's torch kernel is its tangent table (1e-8 below the formula between grid points)
TORCH_AGREEMENT = {"UniformBall": 1e-8}


@settings(max_examples=25, deadline=None)
@given(pair=st.sampled_from(PAIRS), rho=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6))
def test_tensors_agree_with_the_numpy_radii_with_and_without_grad(pair, rho):
    q, adversary = _q(pair[0]), pair[1]
    expected = wulff.certified_radius(q, np.array(rho), adversary)
    plain = wulff.certified_radius(q, torch.tensor(rho, dtype=torch.float64), adversary)
    tracked = wulff.certified_radius(q, torch.tensor(rho, dtype=torch.float64, requires_grad=True), adversary)
    np.testing.assert_allclose(plain.numpy(), expected, rtol=TORCH_AGREEMENT.get(pair[0], 1e-12), atol=0)
    np.testing.assert_array_equal(tracked.detach().numpy(), plain.numpy())
    assert tracked.requires_grad and not plain.requires_grad


@settings(max_examples=25, deadline=None)
@given(pair=st.sampled_from(sorted(CLOSED_SLOPES)), rho=st.floats(0.51, 0.999))
def test_gradients_are_the_closed_form_slopes(pair, rho):
    x = torch.tensor([rho], dtype=torch.float64, requires_grad=True)
    wulff.certified_radius(_q(pair[0]), x, pair[1]).sum().backward()
    assert x.grad.item() == pytest.approx(CLOSED_SLOPES[pair](rho), rel=1e-6)


@pytest.mark.parametrize("pair", [("Laplace", "linf"), ("ExpInf", "l1"), ("UniformBall", "l2"),
                                  ("Gaussian", "l1")])
def test_gradients_match_central_differences(pair):
    """Envelope, best-of and converted certificates: the gradient is the slope of the float radius."""
    q, adversary = _q(pair[0]), pair[1]
    rho = np.array([0.55, 0.7, 0.9, 0.99])
    x = torch.tensor(rho, requires_grad=True)
    wulff.certified_radius(q, x, adversary).sum().backward()
    h = 1e-5
    up, down = wulff.certified_radius(q, rho + h, adversary), wulff.certified_radius(q, rho - h, adversary)
    numeric = (up - down) / (2 * h)
    np.testing.assert_allclose(x.grad.numpy(), numeric, rtol=2e-3)


def test_gradient_is_zero_below_half_and_at_one_and_follows_the_dtype():
    q = _q("Gaussian")
    x = torch.tensor([0.2, 0.5, 0.8, 1.0], dtype=torch.float32, requires_grad=True)
    r = wulff.certified_radius(q, x, "l2")
    r.sum().backward()
    assert r.dtype == torch.float32 and x.grad.dtype == torch.float32
    assert x.grad[0] == 0 and x.grad[1] == 0 and x.grad[3] == 0 and x.grad[2] > 0
    # float32 radii keep rounding toward zero with grad on
    exact = wulff.certified_radius(q, np.float64(np.float32(0.8)), "l2")
    assert r[2].item() <= exact


def test_a_uniform_ball_slope_is_two_over_the_beta_density():
    q = _q("UniformBall")
    rho, b = 0.8, (D_SMALL + 1) / 2
    x = special.betaincinv(b, b, 0.75 - rho / 2)
    expected = q.lam * 2 / stats.beta.pdf(x, b, b)
    t = torch.tensor(rho, dtype=torch.float64, requires_grad=True)
    wulff.certified_radius(q, t, "l2").backward()
    assert t.grad.item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("pair", [("ExpInf", "l1"), ("ExpInf", "linf"), ("Exp2", "l2"), ("Laplace", "l2"),
                                  ("PowerInf", "linf"), ("Power2", "l2")])
def test_a_best_certificate_equals_the_pointwise_maximum_of_its_candidates(pair):
    best = _best(pair)
    rho = np.concatenate([np.random.default_rng(1).uniform(0.5, 1.0, 4000), selector.CHOICE_GRID[::7],
                          [0.5, 1 - 1e-17, 1.0]])
    pointwise = np.max([c.radius(rho) for c in best.certificates], axis=0)
    np.testing.assert_array_equal(best.radius(rho), pointwise)


def test_the_front_door_keeps_one_certificate_per_distribution_value():
    a, b = D.Laplace(7, sigma=0.5), D.Laplace(7, sigma=0.5)
    assert a is not b and wulff.best_certificate(a, "l1") is wulff.best_certificate(b, "l1")
    assert wulff.best_certificate(D.Laplace(7, sigma=0.25), "l1") is not wulff.best_certificate(a, "l1")
    assert wulff.best_certificate(a, "l2") is not wulff.best_certificate(a, "l1")
    for lam in np.linspace(0.1, 1, selector.MEMO_SIZE + 5):
        wulff.best_certificate(D.Gaussian(3, lam=float(lam)), "l2")
    assert len(selector._memo) <= selector.MEMO_SIZE


def test_scalar_calls_keep_their_guards():
    q = _q("Gaussian")
    assert wulff.certified_radius(q, 0.4, "l2") == 0.0
    assert wulff.certified_radius(q, 0.9, "l2") == wulff.certified_radius(q, np.array([0.9]), "l2")[0]
    assert np.isinf(wulff.certified_radius(q, 1.0, "l2"))
    for bad in (float("nan"), -0.1, 1.5):
        with pytest.raises(ValueError, match="rho must lie in"):
            wulff.certified_radius(q, bad, "l2")


def test_binomial_sign_sums_work_in_linear_memory():
    """Theorem P.2's sums at d = 10^6 (about 37,000 support points, as many kinks): a dense
    kinks x support matrix would take ~11 GB; the cumulative sums take a few MB."""
    law, M = RademacherSum(10 ** 6), ConstantMagnitude(1.0)
    c = np.concatenate([[0.0], law.kinks(M)])
    tracemalloc.start()
    try:
        values = law.stop_loss(M, c)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6 and values[0] > values[-1] >= 0
    # E|S| = E(S)_+ * 2 for the symmetric S: the value at c = 0 is E(S)_+, about sqrt(2 d / pi) / 2
    assert values[0] == pytest.approx(math.sqrt(2 * 10 ** 6 / math.pi) / 2, rel=1e-5)


# -- kernels: every named pair, numpy and torch, one rounding ------------------------------------------
ALL_PAIRS = [(name, adv) for name in FAMILY_NAMES for adv in ADVERSARIES]


def _named(name: str):
    return registry.build(name, D_SMALL, sigma=SIGMA, **registry.example_parameters(name, D_SMALL))


def _best(pair: tuple[str, str]):
    """The best certificate of a named pair, or None when the family has none against the adversary."""
    try:
        return wulff.best_certificate(_named(pair[0]), pair[1])
    except NotImplementedError:
        return None


RHO = st.floats(0.0, 1.0) | st.sampled_from([0.5, 0.5 + 2 ** -52, 0.5 + 1e-9, 0.5 + 1e-7, 1 - 2 ** -53, 1.0])


@settings(max_examples=60, deadline=None)
@given(pair=st.sampled_from(ALL_PAIRS), rho=st.lists(RHO, min_size=1, max_size=5))
def test_every_named_pair_numpy_and_torch_agree_and_stay_below_mpmath(pair, rho):
    best, arr = _best(pair), np.array(rho)
    if best is None:
        return
    numpy_values = best.radius(arr)
    torch_values = best.radius(torch.tensor(arr)).numpy()
    np.testing.assert_allclose(torch_values, numpy_values, rtol=TORCH_AGREEMENT.get(pair[0], 1e-12), atol=0)
    assert np.all((numpy_values == 0) == (arr <= 0.5))
    for candidate in best.certificates:  # mpmath where the candidate is a closed form
        if candidate.verified_method != "mpmath closed form" or "Inv" in str(candidate.formula):
            continue
        reference = candidate.verified_radius(arr)
        assert np.all(candidate.radius(arr) <= reference), (candidate.method, arr)
        assert np.all(candidate.radius(torch.tensor(arr)).numpy() <= reference), (candidate.method, arr)


@settings(max_examples=40, deadline=None)
@given(pair=st.sampled_from(ALL_PAIRS), rho=st.lists(RHO, min_size=2, max_size=8))
def test_a_radius_does_not_depend_on_the_rest_of_the_batch(pair, rho):
    best = _best(pair)
    if best is None:
        return
    batch = best.radius(np.array(rho))
    alone = [float(best.radius(r)) for r in rho]
    assert batch.tolist() == alone


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("pair", [("Gaussian", "l2"), ("Laplace", "linf"), ("UniformCube", "l1"), ("Exp2", "l2")])
def test_narrow_dtypes_get_the_float64_radius_rounded_toward_zero(dtype, pair):
    q = _named(pair[0])
    rho = torch.linspace(0.4, 0.999, 301).to(dtype)
    exact = torch.as_tensor(wulff.certified_radius(q, rho.to(torch.float64).numpy(), pair[1]))  # numpy path
    got = wulff.certified_radius(q, rho, pair[1])
    assert got.dtype == dtype
    assert torch.all(got.to(torch.float64) <= exact)
    # at most one step of the dtype below the float64 value (torch's float64 kernel may sit an ulp lower)
    below = torch.nextafter(got, torch.full_like(got, math.inf)).to(torch.float64)
    assert torch.all((below > exact * (1 - 1e-12)) | (exact == 0) | torch.isinf(exact))


def test_a_tensor_never_goes_through_the_numpy_kernel():
    """Every certificate of a closed form, an envelope, a level set and a uniform theorem evaluates a
    tensor with its torch kernel: the numpy kernels are replaced by a trap here."""
    def trap(rho):
        raise AssertionError("a tensor went through the numpy kernel")

    for name, adversary in [("Gaussian", "l2"), ("Laplace", "linf"), ("Exp2", "l2"), ("UniformCube", "l2"),
                            ("UniformBall", "l2"), ("PowerInf", "l1"), ("Pareto", "l1")]:
        best = selector.BestCertificate(selector.all_certificates(_named(name), adversary), adversary,
                                        _named(name).lam, D_SMALL)
        expected = best.radius(np.array([0.3, 0.6, 0.9, 0.999]))
        for candidate in best.certificates:
            candidate._radius_unit = trap
        x = torch.tensor([0.3, 0.6, 0.9, 0.999], dtype=torch.float64, requires_grad=True)
        got = best.radius(x)
        got.sum().backward()
        np.testing.assert_allclose(got.detach().numpy(), expected, rtol=TORCH_AGREEMENT.get(name, 1e-12))
        assert torch.all(torch.isfinite(x.grad))


@settings(max_examples=200, deadline=None)
@given(scale=st.floats(1e-300, 1e300), x=st.floats(2.0 ** -1000, 1e300))
def test_one_multiplication_by_factor_below_never_rounds_up(scale, x):
    from fractions import Fraction

    from wulff.certificate import factor_below
    f = factor_below(scale)
    product = x * f
    if math.isfinite(product) and product >= 2.0 ** -1020:
        assert Fraction(product) <= Fraction(x) * Fraction(scale)


@settings(max_examples=30, deadline=None)
@given(pair=st.sampled_from([("Gaussian", "l2"), ("Laplace", "l1"), ("ExpInf", "linf"), ("Exp1", "l1"),
                             ("Gaussian", "linf")]),
       rho=st.lists(st.floats(0.5, 1.0, exclude_min=True), min_size=1, max_size=20))
def test_the_closed_form_fast_path_equals_the_careful_form(pair, rho):
    """A closed form evaluates the tangent below its threshold and the shaved formula above it: never
    above their maximum, and equal to it up to rounding (the crossing is refined by bisection)."""
    from wulff.diffmethod.derive import GuardedClosedForm
    cert = next(c for c in wulff.best_certificate(_named(pair[0]), pair[1]).certificates
                if isinstance(c._radius_unit, GuardedClosedForm))
    kernel = cert._radius_unit
    x = np.array(rho)
    fast, careful = kernel(x), kernel._careful(x)
    assert np.all(fast <= careful)
    np.testing.assert_allclose(fast, careful, rtol=1e-12, atol=0)


@settings(max_examples=40, deadline=None)
@given(pair=st.sampled_from(ALL_PAIRS), rho=st.floats(0.55, 0.99))
def test_every_named_pair_has_the_central_difference_as_its_gradient_where_smooth(pair, rho):
    """The autograd gradient (computed on the tensor's device where the certificate has a torch
    slope) against a central difference of the numpy radius, away from kinks (a change of winner)
    and level-set tables (a step function, whose slope is itself a central difference)."""
    best = _best(pair)
    if best is None:
        return
    name, adversary = pair
    h = 1e-6
    winners = set(best.winner(np.array([rho - h, rho, rho + h])).tolist()) if len(best.certificates) > 1 \
        else {best.method}
    if len(winners) > 1 or any("level-set" in w for w in winners):
        return
    x = torch.tensor([rho], dtype=torch.float64, requires_grad=True)
    wulff.certified_radius(_named(name), x, adversary).sum().backward()
    numeric = (best.radius(rho + h) - best.radius(rho - h)) / (2 * h)
    assert x.grad.item() == pytest.approx(float(numeric), rel=2e-3)


# -- small d: every named family and a declared iid density, every kind of input (issue 25, item 2) ----
#: a declared iid density with a bounded, non-constant phi' (the convex-order IID x linf row)
LOG_COSH = "IID(log cosh)"
SMALL_D_PAIRS = [(name, d, adv) for name in (*FAMILY_NAMES, LOG_COSH) for d in (1, 2, 3) for adv in ADVERSARIES]
SMALL_D_RHO = np.array([0.3, 0.5, 0.5 + 1e-9, 0.6, 0.9, 0.999, 1 - 1e-12, 1 - 2 ** -52])


def _small(name: str, d: int):
    if name == LOG_COSH:
        return D.IID(sp.log(sp.cosh(D.t)), d, lam=1.0)
    return registry.build(name, d, lam=1.0, **registry.example_parameters(name, d))


@pytest.mark.parametrize("name, d, adversary", SMALL_D_PAIRS)
def test_small_d_every_input_kind_gives_the_batch_radius(name, d, adversary):
    """Python floats, 0-d arrays and 0-d tensors, float64 / float32 tensors with and without grad: the
    radius of the numpy batch (torch's own special functions within TORCH_AGREEMENT, a narrow dtype
    rounded toward zero), no crash at d = 2 or 3 (a one-line envelope's reversed, single-element break
    array reached torch with a negative stride)."""
    q = _small(name, d)
    try:
        best = wulff.best_certificate(q, adversary)
    except NotImplementedError:
        return
    batch = wulff.certified_radius(q, SMALL_D_RHO, adversary)
    rtol = TORCH_AGREEMENT.get(name, 1e-12)
    for r, value in zip(SMALL_D_RHO.tolist(), batch):
        assert float(wulff.certified_radius(q, r, adversary)) == value
        zero_d = wulff.certified_radius(q, np.array(r), adversary)
        assert zero_d.shape == () and float(zero_d) == value
        assert float(wulff.certified_radius(q, torch.tensor(r, dtype=torch.float64), adversary)) == \
            pytest.approx(value, rel=rtol, abs=0)
        assert best.winner(r).shape == () and (best.winner(r).item() is None) == (value == 0)
    tensor = wulff.certified_radius(q, torch.tensor(SMALL_D_RHO), adversary)
    np.testing.assert_allclose(tensor.numpy(), batch, rtol=rtol, atol=0)
    narrow = torch.tensor(SMALL_D_RHO, dtype=torch.float32)
    got = wulff.certified_radius(q, narrow, adversary)
    assert got.dtype == torch.float32
    assert torch.all(got.double() <= wulff.certified_radius(q, narrow.double(), adversary))
    x = torch.tensor(SMALL_D_RHO, requires_grad=True)
    y = wulff.certified_radius(q, x, adversary)
    y.sum().backward()
    np.testing.assert_allclose(y.detach().numpy(), tensor.numpy(), rtol=0, atol=0)
    assert torch.all(torch.isfinite(x.grad))


def test_a_float_rho_next_to_one_works_for_power_inf_at_d150528():
    """winner and certified_radius with a plain float (a 0-d array reached the envelope, which
    answered with a 1-d array: a shape mismatch)."""
    q = D.PowerInf(150528, a=150568.0, lam=1.0)
    best = wulff.best_certificate(q, "linf")
    rho = 1 - 2 ** -52
    value = float(wulff.certified_radius(q, rho, "linf"))
    assert value == float(best.radius(np.array([rho]))[0]) > 0
    assert best.winner(rho).item() in best.labels
    assert best.winner(np.array(rho)).item() in best.labels


# -- the uniform ball's torch table (issue 25, item 4) ------------------------------------------------
def _dense_rho() -> np.ndarray:
    near = 1 - 1e-14 + np.arange(-2000, 2000) * 2.0 ** -53  # adjacent floats around 1 - 1e-14
    rho = np.concatenate([np.linspace(0.5, 1.0, 100001), 0.5 + np.geomspace(1e-16, 0.5, 20000),
                          1 - np.geomspace(1e-16, 0.5, 20000), near])
    rho = np.unique(rho)
    return rho[(rho > 0.5) & (rho <= 1.0)]


@pytest.mark.parametrize("d", [2, 10, 3072, 150528])
def test_the_ball_torch_table_is_below_the_formula_and_nondecreasing(d):
    cert = derive_uniform(D.UniformBall(d, lam=1.0), "l2")
    rho = _dense_rho()
    formula = cert.radius(rho)
    table = cert.radius(torch.tensor(rho)).numpy()
    assert np.all(table <= formula), (rho[table > formula], (table / formula - 1)[table > formula])
    assert np.all(np.diff(table) >= 0), rho[1:][np.diff(table) < 0]
    assert np.all(table >= formula * (1 - 2e-7))  # the table stays close (tangents between grid points)


def _sorted_entries(shape: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if shape == "uniform":
        a = rng.uniform(0, 0.5, n)
    elif shape == "crowded next to 1/2":
        a = 0.5 - 10.0 ** rng.uniform(-12, -0.31, n)
    elif shape == "spread over 300 decades":
        a = 10.0 ** rng.uniform(-300, -0.31, n)
    elif shape == "mixed":
        a = np.r_[rng.uniform(0.4999, 0.5, n // 2), 10.0 ** rng.uniform(-20, -1, n - n // 2)]
    else:  # a level-set table's rows (geometric towards 1/2), 1/4 and 1/2 themselves, repeated entries
        a = np.r_[0.5 - 1e-5 * 1.004 ** np.arange(n), [0.25, 0.5, 0.5, 0.25 + 2.0 ** -54] * (n > 4)]
    return np.sort(a[a > 0])


@pytest.mark.parametrize("shape", ["uniform", "crowded next to 1/2", "spread over 300 decades", "mixed",
                                   "level-set rows"])
def test_the_locator_is_searchsorted_exactly(shape):
    """numeric.Locator (cells by the float bits of p, a few steps; in dense cells, the bits of 1/2 - p
    above 1/4 and searchsorted below) gives np.searchsorted(a, p, "left") exactly: random p, every entry
    of a and its two float neighbours, 0, -0, 1/4, 1/2, subnormals, and any array shape."""
    from wulff.radius.numeric import Locator
    rng = np.random.default_rng(len(shape))
    for n in (0, 1, 5, 3000):
        a = _sorted_entries(shape, n, rng)
        edges = [0.0, -0.0, 0.5, 0.25, np.nextafter(0.25, 0), np.nextafter(0.25, 1), 1e-320, 5e-324]
        p = np.r_[rng.uniform(0, 0.5, 2000), a, np.nextafter(a, 0), np.nextafter(a, 1), edges]
        p = p[p <= 0.5]
        locator = Locator(a)
        if shape in ("crowded next to 1/2", "level-set rows") and n == 3000:
            assert locator._near is not None  # the dense cells next to 1/2 are counted from 1/2
        assert np.array_equal(locator.left(p), np.searchsorted(a, p, side="left"))
        block = p[:6].reshape(2, 3)
        assert np.array_equal(locator.left(block), np.searchsorted(a, block.ravel(), side="left").reshape(2, 3))
        assert locator.left(np.float64(0.25)).shape == ()
