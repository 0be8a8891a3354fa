"""wulff.certify.Smoothed: Cohen et al.'s PREDICT and CERTIFY, checked against closed forms.

The main check uses a linear half-space base classifier f(x) = [x_1 < b] under iid noise. Then
rho = P(delta_1 < b) is known exactly and the robust l1 (and l2) radius of the smoothed classifier
at x = 0 is exactly b (moving x_1 by b flips it; the certificates of Theorems H.1, I.1 and N.3 are
tight here): certify() must stay below b except with probability alpha, and reach within 5% of it at
n = 100,000.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom
from scipy.stats import norm as normal
from toys import HalfSpace

import wulff.distributions as D
from wulff.certify import ABSTAIN, Certification, Smoothed, clopper_pearson_lower

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# distribution, adversary, b -> exact rho = P(delta_1 < b), written independently of the library
HALF_SPACES = {
    "Laplace-l1": (lambda d: D.Laplace(d, lam=0.7), "l1", lambda b, lam: 1 - 0.5 * math.exp(-b / lam)),
    "Gaussian-l2": (lambda d: D.Gaussian(d, sigma=0.7), "l2", lambda b, lam: normal.cdf(b / lam)),
    "Gaussian-l1": (lambda d: D.Gaussian(d, sigma=0.7), "l1", lambda b, lam: normal.cdf(b / lam)),
    "UniformCube-l1": (lambda d: D.UniformCube(d, lam=1.4), "l1", lambda b, lam: (b + lam) / (2 * lam)),
}


@pytest.mark.parametrize("case", sorted(HALF_SPACES))
def test_half_space_radius_is_tight_at_large_n(case):
    make, adversary, rho_of = HALF_SPACES[case]
    d, b = 4, 0.9
    q = make(d)
    rho = rho_of(b, q.lam)
    assert 0.8 < rho < 0.95
    smoothed = Smoothed(HalfSpace(b), q, num_classes=2, seed=1)
    cert = smoothed.certify(torch.zeros(d), 64, 100_000, 0.001, 20_000, adversaries=(adversary,))
    assert cert.prediction == 0
    assert cert.rho_lower <= rho
    assert 0.95 * b <= cert.radius[adversary] <= b


@pytest.mark.parametrize("case", ["Laplace-l1", "Gaussian-l2", "UniformCube-l1"])
def test_half_space_radius_exceeds_truth_at_most_at_rate_alpha(case):
    make, adversary, _ = HALF_SPACES[case]
    d, b, alpha, runs = 4, 0.5, 0.05, 300
    q = make(d)
    smoothed = Smoothed(HalfSpace(b), q, num_classes=2, seed=2024)
    certs = [smoothed.certify(torch.zeros(d), 16, 500, alpha, 500, adversaries=(adversary,)) for _ in range(runs)]
    radii = np.array([c.radius[adversary] for c in certs])
    too_large = int((radii > b).sum())
    # P(too_large > limit) < 1e-4 when the guarantee holds; a point estimate would exceed b half the time
    limit = binom.ppf(1 - 1e-4, runs, alpha)
    assert too_large <= limit, f"{too_large} of {runs} radii exceed the true radius {b}"
    assert (radii > 0).mean() > 0.9  # the test has power: most runs certify something


def test_smoke_api_as_documented():
    d = 4
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(d, 3))
    s = Smoothed(model, D.Gaussian(d, sigma=0.5), num_classes=3)
    cert = s.certify(torch.zeros(d), 16, 64, 0.001, 32, adversaries=("l1", "l2", "linf"))
    assert isinstance(cert, Certification)
    assert set(cert.radius) == {"l1", "l2", "linf"}
    assert cert.prediction in (ABSTAIN, 0, 1, 2)
    assert all(r >= 0 for r in cert.radius.values())
    assert s.predict(torch.zeros(d), 64, 0.001, 32) in (ABSTAIN, 0, 1, 2)


def test_certain_input_gets_radius_of_rho_alpha_to_the_one_over_n():
    """All n votes agree: rho_lower = alpha^(1/n) and the Gaussian l2 radius is sigma Phi^-1 of it."""
    d, n, alpha = 4, 2000, 0.001
    q = D.Gaussian(d, sigma=0.25)
    model = HalfSpace(b=1e6)
    cert = Smoothed(model, q, 2, seed=0).certify(torch.zeros(d), 10, n, alpha, 512)
    assert cert.prediction == 0 and cert.top_count == n
    assert cert.rho_lower == pytest.approx(alpha ** (1 / n), rel=1e-12)
    assert cert.radius["l2"] == pytest.approx(0.25 * normal.ppf(alpha ** (1 / n)), rel=1e-6)
    assert cert.radius["linf"] <= cert.radius["l2"] <= cert.radius["l1"] + 1e-12


def test_coin_flip_abstains():
    d = 3
    s = Smoothed(HalfSpace(0.0), D.Laplace(d, lam=1.0), 2, seed=5)
    cert = s.certify(torch.zeros(d), 32, 2000, 0.001, 1000)
    assert cert.prediction == ABSTAIN and cert.abstained
    assert cert.rho_lower <= 0.5
    assert cert.radius == {"l1": 0.0, "l2": 0.0, "linf": 0.0}
    assert cert.top_count <= 1000 + 3 * math.sqrt(2000)
    assert s.predict(torch.zeros(d), 2000, 0.001, 1000) == ABSTAIN


def test_predict_matches_independent_two_sided_binomial_test():
    """PREDICT answers iff the exact two-sided p-value 2 P(Bin(m, 1/2) >= top) is at most alpha."""
    d, n, alpha = 3, 400, 0.01
    for b, seed in ((0.05, 3), (0.3, 4), (1.5, 5)):
        s = Smoothed(HalfSpace(b), D.Laplace(d, lam=1.0), 2, seed=seed)
        counts = s.count_predictions(torch.zeros(d), n, 128, generator=torch.Generator().manual_seed(seed))
        top = int(counts.max())
        p_value = min(1.0, 2 * binom.sf(top - 1, n, 0.5))
        answer = s.predict(torch.zeros(d), n, alpha, 128, generator=torch.Generator().manual_seed(seed))
        assert answer == (int(counts.argmax()) if p_value <= alpha else ABSTAIN)


def test_counts_cover_every_sample_with_ragged_batches():
    d = 4
    s = Smoothed(HalfSpace(0.2), D.Gaussian(d, sigma=1.0), 2, seed=0)
    counts = s.count_predictions(torch.zeros(d), 1001, 97)
    assert counts.dtype == np.int64 and counts.sum() == 1001 and counts.shape == (2,)


def test_seed_makes_runs_reproducible_and_generator_overrides_it():
    d = 4
    x = torch.zeros(d)
    runs = [Smoothed(HalfSpace(0.3), D.Laplace(d, lam=1.0), 2, seed=11).certify(x, 16, 3000, 0.01, 700, "l1")
            for _ in range(2)]
    assert runs[0] == runs[1]
    s = Smoothed(HalfSpace(0.3), D.Laplace(d, lam=1.0), 2)
    a = s.certify(x, 16, 3000, 0.01, 700, "l1", generator=torch.Generator().manual_seed(9))
    b = s.certify(x, 16, 3000, 0.01, 700, "l1", generator=torch.Generator().manual_seed(9))
    assert a == b


def test_mixed_precision_and_channels_last_paths_agree_on_an_easy_input():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 64, 3))
    with torch.no_grad():
        model[2].bias.copy_(torch.tensor([50.0, 0.0, 0.0]))  # class 0 wins by a wide margin
    q = D.Laplace(3 * 8 * 8, sigma=0.1)
    x = torch.zeros(3, 8, 8)
    plain = Smoothed(model, q, 3, seed=0).certify(x, 8, 256, 0.01, 128, adversaries="l1")
    fast = Smoothed(model, q, 3, seed=0, autocast=torch.bfloat16, channels_last=True).certify(
        x, 8, 256, 0.01, 128, adversaries="l1")
    assert plain.prediction == fast.prediction == 0
    assert plain.rho_lower == pytest.approx(fast.rho_lower)


def test_model_left_in_its_training_mode():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    model.train()
    Smoothed(model, D.Gaussian(4, sigma=1.0), 2).predict(torch.zeros(4), 10, 0.1, 10)
    assert model.training


# -- Clopper-Pearson -----------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 5000), frac=st.floats(0, 1), alpha=st.floats(1e-6, 0.5))
def test_clopper_pearson_solves_the_binomial_tail_equation(n, frac, alpha):
    """L is the p at which P(Bin(n, p) >= k) = alpha (0 for k = 0): checked with scipy.stats.binom."""
    k = int(round(frac * n))
    lower = clopper_pearson_lower(k, n, alpha)
    assert 0.0 <= lower <= k / n
    if k == 0:
        assert lower == 0.0
    else:
        assert binom.sf(k - 1, n, lower) == pytest.approx(alpha, rel=1e-6, abs=1e-12)


def test_clopper_pearson_edge_counts():
    assert clopper_pearson_lower(0, 10, 0.05) == 0.0
    assert clopper_pearson_lower(10, 10, 0.05) == pytest.approx(0.05 ** (1 / 10), rel=1e-12)
    assert clopper_pearson_lower(100_000, 100_000, 0.001) < 1.0


def test_clopper_pearson_coverage_by_simulation():
    rng = np.random.default_rng(0)
    p, n, alpha = 0.83, 200, 0.05
    ks = rng.binomial(n, p, size=4000)
    lowers = np.array([clopper_pearson_lower(int(k), n, alpha) for k in ks])
    assert (lowers > p).mean() <= alpha


@pytest.mark.parametrize("k, n, alpha", [(-1, 10, 0.1), (11, 10, 0.1), (0, 0, 0.1), (3, 10, 0.0),
                                         (3, 10, 1.0), (3, 10, float("nan"))])
def test_clopper_pearson_rejects_bad_arguments(k, n, alpha):
    with pytest.raises(ValueError):
        clopper_pearson_lower(k, n, alpha)


# -- bad input -----------------------------------------------------------------------------------
@pytest.fixture
def smoothed():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 3))
    return Smoothed(model, D.Gaussian(6, sigma=0.5), num_classes=3)


@pytest.mark.parametrize("kwargs, match", [
    ({"x": torch.zeros(5)}, "d = 6"),
    ({"x": torch.zeros(2, 6)}, "d = 6"),
    ({"n0": 65, "n": 64}, "n0"),
    ({"n0": 0}, "n0"),
    ({"n": -3}, "n"),
    ({"alpha": 0.0}, "alpha"),
    ({"alpha": 1.0}, "alpha"),
    ({"alpha": 1.5}, "alpha"),
    ({"alpha": -0.1}, "alpha"),
    ({"batch_size": 0}, "batch_size"),
    ({"adversaries": ("l3",)}, "adversary"),
    ({"adversaries": ()}, "adversaries"),
])
def test_certify_rejects_bad_input_with_a_clear_error(smoothed, kwargs, match):
    args = {"x": torch.zeros(6), "n0": 16, "n": 64, "alpha": 0.001, "batch_size": 32,
            "adversaries": ("l1", "l2")} | kwargs
    with pytest.raises(ValueError, match=match):
        smoothed.certify(args["x"], args["n0"], args["n"], args["alpha"], args["batch_size"],
                         adversaries=args["adversaries"])


def test_num_classes_mismatch_is_a_clear_error():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 3))
    s = Smoothed(model, D.Gaussian(6, sigma=0.5), num_classes=5)
    with pytest.raises(ValueError, match="num_classes = 5"):
        s.predict(torch.zeros(6), 64, 0.001, 32)


@pytest.mark.parametrize("kwargs, error", [
    ({"num_classes": 1}, ValueError), ({"num_classes": 2.5}, TypeError), ({"q": "gaussian"}, TypeError),
    ({"model": 3}, TypeError), ({"autocast": torch.float64}, ValueError),
])
def test_constructor_rejects_bad_arguments(kwargs, error):
    args = {"model": torch.nn.Linear(6, 3), "q": D.Gaussian(6, sigma=0.5), "num_classes": 3} | kwargs
    extra = {"autocast": args.pop("autocast")} if "autocast" in args else {}
    with pytest.raises(error):
        Smoothed(args["model"], args["q"], args["num_classes"], **extra)


def test_non_tensor_input_is_a_type_error(smoothed):
    with pytest.raises(TypeError, match="torch.Tensor"):
        smoothed.predict(np.zeros(6), 64, 0.001, 32)
