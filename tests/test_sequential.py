"""The anytime-valid confidence sequence (wulff.certify.sequential) and the adaptive procedure built on
it (issue 28, section 1): coverage at every sample size simultaneously, checked by simulation over
thousands of Bernoulli paths (vectorized counts, no model), against the binomial limit.

A path crosses when the lower bound exceeds the true p at SOME look. For a fixed n the lower bound is
nondecreasing in the count k, so each look has a critical count (the least k whose bound exceeds p)
and a path crosses iff its count reaches the critical count at some look: the library's bound is
evaluated once per (n, k) pair searched, the paths are plain cumulative binomial sums.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

import wulff
import wulff.distributions as D
from wulff.certify.adaptive import anytime_schedule, certify_sequential
from wulff.certify.sequential import cs_lower, cs_upper, log_mixture_ratio
from wulff.certify.stats import clopper_pearson_lower

pytestmark = pytest.mark.usefixtures("private_cache")

ALPHA = 0.05
PATHS = 4000
LOOKS = anytime_schedule(20_100)  # 100, 110, 121, ... 20,000: 57 looks


def binomial_limit(rate: float, runs: int) -> float:
    return rate + 3 * math.sqrt(rate * (1 - rate) / runs)


def critical_counts(bound, p: float, looks=LOOKS) -> np.ndarray:
    """For each look n, the least k with bound(k, n) > p (n + 1 when there is none)."""
    out = []
    for n in looks:
        lo, hi = 0, n + 1  # bound(lo) <= p (k = 0 gives 0), bound(hi) > p by convention
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if bound(mid, n) > p:
                hi = mid
            else:
                lo = mid
        out.append(hi)
    return np.array(out)


def crossing_rate(bound, p: float, seed: int, looks=LOOKS) -> float:
    rng = np.random.default_rng(seed)
    steps = np.diff(np.r_[0, looks])
    counts = np.cumsum(rng.binomial(steps, p, size=(PATHS, len(looks))), axis=1)
    return float(np.mean((counts >= critical_counts(bound, p, looks)).any(axis=1)))


@pytest.mark.parametrize("p", [0.3, 0.7, 0.95, 0.995])
def test_lower_bound_covers_at_every_look_simultaneously(p):
    rate = crossing_rate(lambda k, n: cs_lower(k, n, ALPHA), p, seed=int(p * 1000))
    assert rate <= binomial_limit(ALPHA, PATHS), f"the sequence excluded p = {p} on {rate:.3%} of the paths"


@pytest.mark.parametrize("p", [0.05, 0.6])
def test_upper_bound_covers_at_every_look_simultaneously(p):
    # the upper bound excludes p when cs_upper(k, n) < p, i.e. when 1 - cs_upper exceeds 1 - p for the failures
    rate = crossing_rate(lambda k, n: 1 - cs_upper(n - k, n, ALPHA), 1 - p, seed=int(p * 1000) + 1)
    assert rate <= binomial_limit(ALPHA, PATHS)


def test_clopper_pearson_at_every_look_is_not_a_confidence_sequence():
    """The check has teeth: Clopper-Pearson at level alpha looked at the same 57 times overshoots p on
    far more than alpha of the paths."""
    rate = crossing_rate(lambda k, n: clopper_pearson_lower(k, n, ALPHA), 0.7, seed=3)
    assert rate > binomial_limit(ALPHA, PATHS)


@pytest.mark.parametrize("k, n", [(0, 10), (7, 10), (10, 10), (990, 1000), (99_990, 100_000)])
def test_bounds_bracket_the_estimate_and_the_end_points_are_excluded(k, n):
    lower, upper = cs_lower(k, n, 0.001), cs_upper(k, n, 0.001)
    assert 0.0 <= lower <= k / n <= upper <= 1.0
    threshold = math.log(1 / 0.001)
    if k > 0:  # the returned end is excluded (sound: the true end of the interval lies above it)
        assert log_mixture_ratio(k, n, lower) >= threshold
        assert log_mixture_ratio(k, n, lower + 1e-6) < threshold + 1e-3 or lower + 1e-6 > k / n
    if k < n:
        assert log_mixture_ratio(k, n, upper) >= threshold
    assert cs_lower(k, n, 0.001) <= cs_lower(k, n, 0.01)  # a smaller alpha gives a wider interval


@pytest.mark.parametrize("kwargs, error, match", [
    ({"successes": 11}, ValueError, "successes"), ({"trials": 0}, ValueError, "trials"),
    ({"alpha": 1.0}, ValueError, "alpha"), ({"alpha": None}, TypeError, "alpha"),
    ({"successes": 2.5}, TypeError, "successes")])
def test_bad_arguments_are_refused(kwargs, error, match):
    args = {"successes": 3, "trials": 10, "alpha": 0.01} | kwargs
    for bound in (cs_lower, cs_upper):
        with pytest.raises(error, match=match):
            bound(args["successes"], args["trials"], args["alpha"])


@pytest.mark.parametrize("use_grid", [True, False], ids=["radii", "no-radii"])
def test_anytime_procedure_over_claims_at_most_at_rate_alpha(use_grid):
    """The whole procedure (method="anytime", two-class votes off: two classes) on a half-space under
    Gaussian noise (exact l2 radius sigma Phi^-1(p)), p just above the grid's thresholds, where a
    sequential test is most tempted to overshoot; 1500 runs at alpha = 0.05."""
    sigma, runs, grid = 0.25, 1500, (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
    cert = wulff.best_certificate(D.Gaussian(2, sigma=sigma), "l2")
    thresholds = [cert.inverse_radius(r) for r in grid]
    rng = np.random.default_rng(21 if use_grid else 22)
    wrong = certified = 0
    for i in range(runs):
        p = thresholds[i % len(grid)] + 1e-4
        probs = np.array([p, 1 - p])
        out = certify_sequential(lambda k, probs=probs: rng.multinomial(k, probs), 20_000, ALPHA, {"l2": cert},
                                 radii=grid if use_grid else None, method="anytime")
        assert out.method == "anytime" and out.n <= 20_000
        certified += not out.abstained
        wrong += not out.abstained and (out.candidate != 0 or out.radius["l2"] > sigma * norm.ppf(p))
    assert wrong / runs <= binomial_limit(ALPHA, runs)
    assert certified / runs > 0.9


def test_anytime_schedule_looks_often_and_ends_at_the_budget():
    looks = anytime_schedule(100_000)
    assert looks[0] == 100 and looks[-1] == 100_000 - 100 and list(looks) == sorted(set(looks))
    assert all(b <= math.ceil(1.1 * a) for a, b in zip(looks, looks[1:-1]))
    assert anytime_schedule(50) == (45,) and anytime_schedule(2) == (1,)
    with pytest.raises(ValueError, match="method"):
        certify_sequential(lambda k: np.array([k, 0]), 1000, 0.01, {"l2": None}, method="sprt")


@pytest.mark.parametrize("method", ["anytime", "bonferroni"])
def test_two_class_scores_bound_their_smaller_mean_at_rate_alpha(method):
    """The two-class procedure's bound m (the smaller of the two scores' lower bounds, each at level
    alpha: the intersection-union principle) exceeds what it certifies, (1 + p_A - max_C p_C) / 2, at
    rate at most alpha = 0.05 over 1200 runs. Tight cases: the runner-up B takes a share s of 1 - p_A
    and three other classes the rest, with s = 1/2 (both scores' means equal, the hardest case for the
    intersection-union argument) or s = 0.8 (the score against B binding); p_A such that the certified
    mean sits just above a grid threshold. And at every stop m is at least p_A's bound on the same votes."""
    cert = wulff.best_certificate(D.Gaussian(2, sigma=0.25), "l2")
    grid = (0.1, 0.2, 0.3)
    thresholds = [float(cert.inverse_radius(r)) for r in grid]
    rng, coins = np.random.default_rng(31), np.random.default_rng(32)
    runs, wrong, gained = 1200, 0, 0
    for i in range(runs):
        mean, share = thresholds[i % len(grid)] + 1e-4, (0.5, 0.8)[i % 2]
        p_a = (2 * mean - 1 + share) / (1 + share)  # (1 + p_A - share (1 - p_A)) / 2 = mean
        probs = np.array([p_a, share * (1 - p_a), *[(1 - share) * (1 - p_a) / 3] * 3])
        out = certify_sequential(lambda k, probs=probs: rng.multinomial(k, probs), 4000, ALPHA, {"l2": cert},
                                 radii=grid, method=method, coins=coins)
        assert out.score_lower >= out.rho_lower  # never below the p_A form on the same votes
        wrong += not out.abstained and (out.candidate != 0 or out.score_lower > mean)
        gained += out.score_lower > out.rho_lower
    assert wrong / runs <= binomial_limit(ALPHA, runs)
    assert gained > runs / 2


@pytest.mark.parametrize("prior", ["jeffreys", "selection"])
def test_the_lower_end_is_nondecreasing_in_the_count(prior):
    """What makes the two scores' bound at least p_A's on the same votes (adaptive.py, step 4): for a
    fixed n and prior the confidence sequence's lower end does not decrease when the count grows, at
    every count of small n and on a spread of counts of large n."""
    from wulff.certify.sequential import PRIOR, selection_prior
    shape = PRIOR if prior == "jeffreys" else selection_prior(93, 100)
    for n in (1, 2, 7, 40, 333, 20_000, 99_900):
        counts = np.unique(np.r_[np.arange(min(n, 60) + 1), np.linspace(0, n, 200).astype(int), n - np.arange(30)])
        counts = counts[(counts >= 0) & (counts <= n)]
        ends = [cs_lower(int(k), n, 0.001, shape) for k in counts]
        assert all(b >= a for a, b in zip(ends, ends[1:])), n
