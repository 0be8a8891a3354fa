"""The benchmark's published procedures (benchmarks/published_procedures.py, issue 28): Voracek's randomized
Clopper-Pearson bound (exact coverage, never below Clopper-Pearson), his count thresholds against a
brute-force reference, the decisions of Horvath et al.'s and Voracek's procedures on toy populations and
their over-claim rate at the boundary; the frontier's DECISION_LEVEL patch (benchmarks/certify_adaptive.py)."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import betabinom, binom

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import published_procedures as published  # noqa: E402

pytestmark = pytest.mark.usefixtures("private_cache")

ALPHA = 0.05


def three_sigma(alpha: float, runs: int) -> float:
    return 3 * math.sqrt(alpha * (1 - alpha) / runs)


# -- the randomized Clopper-Pearson bound ---------------------------------------------------------------
@pytest.mark.parametrize("p, n", [(0.7, 20), (0.5, 7), (0.95, 60)])
def test_randomized_cp_has_exact_coverage(p, n):
    """P(L > p) = alpha exactly: summed over k with the binomial weights, the share of a fine grid of u
    where the bound exceeds p (the grid's resolution bounds the error)."""
    k = np.arange(n + 1)
    u = (np.arange(2000) + 0.5) / 2000
    bound = published.randomized_clopper_pearson_lower(k[:, None], n, ALPHA, u[None, :])
    miss = np.sum(binom.pmf(k, n, p) * np.mean(bound > p, axis=1))
    assert abs(miss - ALPHA) < 2e-3


def test_randomized_cp_coverage_by_simulation():
    rng = np.random.default_rng(0)
    runs, p, n = 3000, 0.8, 40
    k = rng.binomial(n, p, runs)
    randomized = published.randomized_clopper_pearson_lower(k, n, ALPHA, rng.random(runs))
    plain = published.clopper_pearson_lower_array(k, n, ALPHA)
    assert abs(np.mean(randomized > p) - ALPHA) < three_sigma(ALPHA, runs)
    assert np.mean(plain > p) < ALPHA  # Clopper-Pearson is conservative here: the randomized one gains


def test_randomized_cp_solves_its_equation_and_is_above_clopper_pearson():
    """At the bound, P_L(X > k) + u P_L(X = k) = alpha (scipy's binomial law, not the module's betainc);
    u = 1 gives Clopper-Pearson's bound; u < 1 and k > 0 a larger one."""
    k, n = np.array([1, 5, 17, 30]), 30
    u = np.array([0.1, 0.5, 0.9, 0.3])
    bound = published.randomized_clopper_pearson_lower(k, n, ALPHA, u)
    pvalue = binom.sf(k, n, bound) + u * binom.pmf(k, n, bound)
    assert np.allclose(pvalue, ALPHA, rtol=1e-6)
    assert np.all(pvalue <= ALPHA)  # the safe side
    plain = published.clopper_pearson_lower_array(k, n, ALPHA)
    assert np.allclose(published.randomized_clopper_pearson_lower(k, n, ALPHA, np.ones(4)), plain, rtol=1e-9)
    assert np.all(bound > plain)
    upper = published.randomized_clopper_pearson_upper(k, n, ALPHA, u)  # k = n, u > alpha: the bound is 1
    assert np.allclose(binom.cdf(k - 1, n, upper) + u * binom.pmf(k, n, upper), [ALPHA] * 3 + [u[3]], rtol=1e-6)


def test_randomized_cp_at_the_edges():
    """k = 0: the bound is 0 unless u < alpha; k = n with u = 1: alpha^(1/n)."""
    assert published.randomized_clopper_pearson_lower(0, 10, ALPHA, 0.5) == 0.0
    assert published.randomized_clopper_pearson_lower(0, 10, ALPHA, 0.01) > 0.0
    assert published.randomized_clopper_pearson_lower(10, 10, ALPHA, 1.0) == pytest.approx(ALPHA ** 0.1)


# -- Voracek's thresholds --------------------------------------------------------------------------------
def test_mixture_thresholds_match_brute_force():
    """T[n] = min over n' >= n of the least A >= t n' whose Krichevsky-Trofimov mixture ratio against
    Bin(n', t) exceeds 1 / level; the ratio from scipy's beta-binomial and binomial laws."""
    t, m, level = 0.8, 150, 0.01
    reference = np.full(m + 1, np.iinfo(np.int64).max)
    for n in range(1, m + 1):
        A = np.arange(n + 1)
        ratio = betabinom.logpmf(A, n, 0.5, 0.5) - binom.logpmf(A, n, t)
        ok = (A >= t * n) & (ratio > math.log(1 / level))
        if ok.any():
            reference[n] = A[ok].min()
    reference = np.minimum.accumulate(reference[::-1])[::-1]
    found = published.kt_thresholds(t, m, level)
    possible = reference < np.iinfo(np.int64).max
    assert np.array_equal(found[possible], reference[possible])
    assert np.all(found[~possible] > m)


def test_union_thresholds_have_the_looks_levels():
    """Deterministic thresholds: P_t(X >= T) <= alpha_j at every look, P_t(X >= T - 1) > alpha_j (the least);
    randomized ones reject with probability alpha_j exactly at p = t (averaged over u)."""
    t, m, alpha = 0.7, 400, 0.05
    looks = published.union_looks(m)
    levels = published.union_levels(alpha, len(looks))
    assert levels.sum() < alpha
    c = published.union_thresholds([t], m, alpha, None)[0, :, 0]
    raw = binom.isf(levels, looks, t) + 1  # before the running minimum
    assert np.all(c <= np.where(raw > looks, np.iinfo(np.int64).max, raw))
    u = (np.arange(4000) + 0.5)[:, None] / 4000 * np.ones((1, len(looks)))
    randomized = published.union_thresholds([t], m, alpha, u)[:, :, 0]  # running minimum included
    last = len(looks) - 1  # the last look has no later one: its threshold is the test's own
    size = np.mean(binom.sf(randomized[:, last] - 1, looks[last], t))
    assert size == pytest.approx(levels[last], rel=2e-3)


# -- decisions on toy populations ------------------------------------------------------------------------
def toy(p: float, size: int) -> np.ndarray:
    """Inputs with class probabilities (p, (1 - p) / 2, (1 - p) / 2)."""
    return np.tile([p, (1 - p) / 2, (1 - p) / 2], (size, 1))


@pytest.mark.parametrize("kind", ["mixture", "union"])
def test_voracek_decides_easy_and_hopeless_inputs_early(kind):
    rng = np.random.default_rng(1)
    thresholds = [0.6, 0.9]
    sure = published.voracek(toy(0.999, 200), thresholds, 0.001, rng, 20_000, kind)
    assert np.all(sure.level == 2) and np.all(sure.label == 0)
    assert sure.passes.max() < 2_000 and set(sure.reason) == {"every grid radius certified"}
    hopeless = published.voracek(toy(0.3, 200), thresholds, 0.001, rng, 20_000, kind)
    assert np.all(hopeless.level == 0) and np.all(hopeless.label == -1)
    assert hopeless.passes.max() < 1_000 and set(hopeless.reason) == {"next grid radius out of reach"}
    middle = published.voracek(toy(0.75, 200), thresholds, 0.001, rng, 20_000, kind)
    assert np.all(middle.level == 1) and np.all(middle.radius([0.5, 1.0]) == 0.5)


def test_horvath_stages():
    """Fresh n0 + n_i votes a stage: a sure input is certified at the first stage, a hopeless one gives up
    there, an input at the threshold goes through every stage."""
    rng = np.random.default_rng(2)
    n0, stages = published.SELECTION, published.HORVATH_STAGES
    sure = published.horvath(toy(0.999, 100), [0.9], 0.001, rng)
    assert np.all(sure.level == 1) and np.all(sure.passes == n0 + stages[0])
    hopeless = published.horvath(toy(0.6, 100), [0.9], 0.001, rng)
    assert np.all(hopeless.level == 0) and np.all(hopeless.passes == n0 + stages[0])
    edge = published.horvath(toy(0.9, 100), [0.9], 0.001, rng)
    assert np.all(edge.passes == sum(n0 + n for n in stages))


@pytest.mark.parametrize("name", ["horvath", "mixture", "union"])
def test_overclaims_at_the_boundary_stay_within_alpha(name):
    """p a hair below the threshold of the only radius: certifying it is a wrong claim; over 1500 inputs
    the rate stays below alpha plus three standard deviations."""
    rng = np.random.default_rng(3)
    runs, t = 1500, 0.8
    population = toy(t - 1e-6, runs)
    if name == "horvath":
        decided = published.horvath(population, [t], ALPHA, rng, stages=(100, 1_000, 4_000))
    else:
        decided = published.voracek(population, [t], ALPHA, rng, 4_000, name)
    assert np.mean(decided.level > 0) <= ALPHA + three_sigma(ALPHA, runs)


def test_voracek_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="kind must be"):
        published.voracek(toy(0.9, 2), [0.8], ALPHA, np.random.default_rng(0), 100, "bayes")


# -- the frontier's patch --------------------------------------------------------------------------------
def test_stopping_rules_patch_is_restored(monkeypatch):
    from benchmarks import certify_adaptive as bench
    from wulff.certify import adaptive

    monkeypatch.setattr(adaptive, "VALUE_PRICE", 0.2, raising=False)
    before = adaptive.DECISION_LEVEL
    with bench.stopping_rules(0.4, 0.0):
        assert adaptive.DECISION_LEVEL == 0.4 and adaptive.VALUE_PRICE == 0.0
    assert adaptive.DECISION_LEVEL == before and adaptive.VALUE_PRICE == 0.2
    with pytest.raises(KeyError), bench.stopping_rules(1e-4):
        raise KeyError("the patch is undone on the way out")
    assert adaptive.DECISION_LEVEL == before
    assert bench.value_prices() == (0.0, 0.2)
    monkeypatch.delattr(adaptive, "VALUE_PRICE")
    assert bench.value_prices() == (0.0,)
    with bench.stopping_rules(0.2, 0.0):  # no such rule: nothing to turn off
        assert adaptive.DECISION_LEVEL == 0.2
    with pytest.raises(RuntimeError, match="VALUE_PRICE"), bench.stopping_rules(0.2, 0.3):
        pass
    monkeypatch.delattr(adaptive, "DECISION_LEVEL")
    with pytest.raises(RuntimeError, match="DECISION_LEVEL"), bench.stopping_rules(0.2):
        pass


def test_frontier_table_on_a_small_population(monkeypatch):
    """The frontier on 40 synthetic inputs at two levels and two prices: a row per procedure, level and
    price in both tables, the stop groups as columns (an unknown reason gets its own), the verdicts."""
    import wulff.distributions as D
    from benchmarks import certify_adaptive as bench
    from wulff import best_certificate
    from wulff.certify import adaptive

    monkeypatch.setattr(bench, "DECISION_LEVELS", (0.05, 0.4))
    monkeypatch.setattr(adaptive, "VALUE_PRICE", 0.2, raising=False)
    cert = best_certificate(D.Laplace(64, sigma=0.5), bench.ADVERSARY)
    population = bench.synthetic(40, np.random.default_rng(4))
    text = bench.frontier_section("toy", population, cert, (0.0, 0.5, 1.0), seed=0)
    for group in bench.STOP_GROUPS:
        assert group in text
    for row in ("| anytime | 0.4 | 0.2 |", "| bonferroni | 0.05 | 0 |", "| bonferroni | 0.4 | 0.2 |"):
        assert text.count(row) == 2
    assert "bonferroni (VALUE_PRICE = 0)" in text and "anytime (VALUE_PRICE = 0.2)" in text
    assert text.count("x cheaper than the reference") == 4


def test_floor_bound_arithmetic():
    """One input of three ran to n_max (100 of 120 passes); the others at their floors (5 each) would cost
    110 in all, everyone at the floor 30: against a reference of 240, 2.18x and 8.00x."""
    from benchmarks import certify_adaptive as bench

    results = (np.zeros(3), np.ones(3, dtype=bool), np.array([100, 10, 10]))
    reason = np.array(["n_max", "next grid radius out of reach", "abstain ..."], dtype=object)
    reference = (np.zeros(3), np.ones(3, dtype=bool), np.array([80, 80, 80]))
    text = bench.floor_bound(("anytime", 0.05, 0.0), results, reason, np.array([20.0, 5.0, 5.0]), reference)
    assert "33.3% of the inputs" in text and "83% of the passes" in text
    assert "2.18x cheaper" in text and "8.00x with the n_max inputs" in text


def test_union_test_claims_nothing_on_the_uniform_alone():
    """Up to n = 30 no count can reject p <= 0.999 at any look's level (all successes are the likeliest
    outcome): the randomized test must not certify on the draw of u alone."""
    rng = np.random.default_rng(5)
    decided = published.voracek(toy(0.95, 2000), [0.999], ALPHA, rng, 30, "union")
    assert not np.any(decided.level > 0)


def test_reasons_table_gives_an_unknown_reason_its_column():
    from benchmarks import certify_adaptive as bench

    results = (np.zeros(2), np.ones(2, dtype=bool), np.array([300, 100]))
    reason = np.array(["n_max", "a reason of a later rule"], dtype=object)
    lines = bench.reasons_table({("anytime", 0.05, 0.0): (results, reason)}, np.array([50.0, 10.0]))
    assert lines[2].endswith("| a reason of a later rule |")
    assert lines[4] == "| anytime | 0.05 | 0 | 75 % / 300 / 50 / 1 | - | - | - | 25 % / 100 / 10 / 1 |"
