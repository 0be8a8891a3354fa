"""Adaptive certification: Cohen et al.'s CERTIFY with a sequential test that stops early.

The procedure (:func:`certify_sequential`) only sees a callback ``draw(k)`` returning the votes of k
fresh noisy samples (an int array of length num_classes); it knows nothing of models or devices.

1. Selection: n0 = max(1, min(100, n_max // 10)) votes choose the candidate class c (their argmax)
   and the runner-up b (the argmax of the others). They are not reused for the estimate; being
   independent of it, they may shape the confidence sequence's prior.
2. Estimation: the m = n_max - n0 remaining samples are looked at on a schedule: "anytime" (the
   default with a radius grid, :func:`anytime_schedule`) after 100 samples and then every 10 % more,
   up to m; "bonferroni" (the default without a grid, :func:`schedule`) after 500, 1000, 2000, ...
   and m. No run uses more than n_max.
3. Bounds, each valid at every look simultaneously (:class:`SequentialBound`):
   * "anytime": the beta-binomial mixture confidence sequence (:mod:`wulff.certify.sequential`;
     Ville's inequality) at (1 - FINAL_SHARE) of the level at every look, and at the last look also
     Clopper-Pearson at FINAL_SHARE of it (so an input that needs all m samples loses little against
     ``certify``); the better of the two holds on the intersection of their events;
   * "bonferroni": Clopper-Pearson at look j at level alpha_j (:func:`look_levels`: half on the
     last look, the rest split over the earlier ones), a union bound over the K looks.
   Each bound is at level alpha.
4. Two-class (the default): instead of p_A, two scores are bounded. For a class C, the score of a
   vote is 1 for the candidate c, 0 for C and 1/2 for any other class; its mean is
   (1 + p_c - p_C) / 2. By the generic two-class theorem (:mod:`wulff.certify.two_class`: F = 1 on c,
   0 on C, 1/2 elsewhere is a soft classifier; Theorem 2C.1 of docs/soundness.md), if that mean is at
   least m > 1/2, then P(c) > P(C) at every x + eta with eta within R(m) of x. Two scores cover every
   C != c: s_B against the runner-up B (chosen by the selection), and s_R against the rest (1 for c,
   1/2 for B, 0 for every other class), whose mean (1 + p_c - p_rest) / 2 is at most
   (1 + p_c - p_C) / 2 for each C in the rest. Each 1/2 is rounded by an independent fair coin, so each
   score is a Bernoulli stream with the same mean and the bounds of step 3 apply as they are.
   m = min(lower bound of s_B, lower bound of s_R), each at level alpha: the intersection-union
   principle, no split of alpha, since min(E s_B, E s_R) < m needs the bound of the smaller mean to
   fail (probability <= alpha). The radius is R(m) for every adversary, the answer c when m > 1/2.
   At every look m is at least p_A's bound on the same votes: each score counts at least the
   candidate's votes, and every bound here is nondecreasing in its count (so is its running best,
   the scores using p_A's prior).

Validity (the same guarantee as ``certify``). With probability at least 1 - alpha over the noise
(and the coins) the bound the radius comes from holds at every look simultaneously (step 3; for the
two scores, the one of the smaller mean, step 4). On that event, whichever look the procedure stops
at, the returned radius (R_a(rho_lower), or R_a(m) of the two scores) is a true robustness radius for
every adversary a, and when that bound is > 1/2 the class c is the smoothed classifier's. So ANY
data-dependent stopping rule keeps the guarantee: the rules below change the cost, never the
validity. (Looking K times at level alpha with a fixed-n bound would not be valid: the chance that
some look overshoots p grows with K.)

Which procedure is the default was chosen by measurement (benchmarks/certify_adaptive.py,
docs/compare.md): with a radius grid the anytime one with the two scores and the value rule of (b)
spends 1.46x to 4.5x fewer forward passes than issue 12's procedure (Bonferroni, p_A alone) on the
benchmark's populations and the digits model, certifying as many or more inputs at every radius
wherever a third class holds mass (on two plausible classes only, up to 1.6 points fewer);
without a grid the anytime one spends more (:func:`default_method`), so there the Bonferroni one
stays the default.

The stopping rules judge what more samples could still achieve by "hopeful" bounds: Clopper-Pearson
at DECISION_LEVEL = 0.05 from above on p_A (or on each score). A stop never costs validity (an
abstention is always a valid answer; a stop returns a valid radius), only, with probability about
0.05 per decision, a grid radius that going on to n_max would have certified. With r(.) the radius
of the bounds (R of the smallest; no answer when it is <= 1/2), checked at every look but the last,
which always stops:

(a) abstention: the hopeful bound is <= 1/2, or even the reachable final bound (the last look's
    Clopper-Pearson bound at m fed the hopeful frequency) is <= 1/2; the answer is ABSTAIN. The
    anytime procedure confirms it with its confidence sequence's upper bound at DECISION_LEVEL (valid
    at every look: looking ten times as often then costs no more wrong abstentions).
(b) with ``radii`` (an increasing grid of radii against the first adversary listed): stop when the
    current radius reaches the largest grid radius, or when the next grid radius above it exceeds the
    reachable radius (the final bounds at m fed the hopeful frequencies), or, once a grid radius is
    certified, when the next one is not worth its samples: the chance of certifying it by n_max
    (:func:`success_chance`: the Jeffreys posterior's mass above the frequency the last look needs) is
    below max(DECISION_LEVEL, VALUE_PRICE x the unspent share of the budget). An input is then given
    up only when its chance is small against what it would still cost: each give-up costs, in
    expectation, at most that chance of one certified input at that radius (measured trade-off in
    docs/compare.md).
(c) without ``radii``: stop when the optimistic final radius (the final bounds at m fed the current
    frequencies) is at most 1.01 times the current radius of the first adversary (going on to n_max
    could not raise it by more than 1 % unless the frequencies themselves move).

Whatever the rule, the returned radius of every adversary is the one of the bounds at the look where
the procedure stopped (not a grid value); the answer is ABSTAIN when that bound is <= 1/2.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from scipy.special import betainc

from wulff.certificate import Certificate

from .sequential import PRIOR, Prior, cs_lower, cs_upper, selection_prior
from .stats import check_alpha, clopper_pearson_lower, clopper_pearson_upper
from .two_class import GENERIC, ONE_CLASS, round_up, two_class_radius

#: at most this many selection votes (n0 = max(1, min(MAX_SELECTION, n_max // 10)))
MAX_SELECTION = 100
#: the first look of the anytime procedure (estimation samples; LOOK_RATIO more at each look)
FIRST_LOOK = 100
#: the anytime procedure looks again once the estimation samples have grown by this factor
LOOK_RATIO = 1.1
#: the first look of the Bonferroni schedule (doubling from there)
BONFERRONI_FIRST_LOOK = 500
#: the procedures: a confidence sequence, or Clopper-Pearson on a doubling schedule with alpha split
METHODS = ("anytime", "bonferroni")
#: the default procedure, chosen by measurement (benchmarks/certify_adaptive.py, docs/compare.md):
#: "anytime" with a radius grid, "bonferroni" without (:func:`default_method`)
DEFAULT_METHOD = None
#: the anytime procedure's mixture prior is shaped by the selection votes (sequential.selection_prior)
SELECTION_PRIOR = True
#: the share of alpha spent on p_B's bounds (runner-up and the rest, half each) when the selection
#: shows three or more plausible classes; p_A's bound gets the rest
TWO_CLASS_SHARE = 0.1
#: the share of alpha spent on the last look (the rest is split over the earlier ones)
FINAL_SHARE = 0.5
#: rule (c): stop when the optimistic final radius is at most (1 + RELATIVE_GAIN) x the current one
RELATIVE_GAIN = 0.01
#: level of the upper bound the stopping rules (a) and (b) use; it sets the cost, never the validity
DECISION_LEVEL = 0.05
#: rule (b), second part: once a grid radius is certified, the next one is given up when the chance of
#: certifying it by n_max is below max(DECISION_LEVEL, VALUE_PRICE x the share of the estimation budget
#: still unspent); chosen by measurement (benchmarks/certify_adaptive.py), it sets the cost, never the
#: validity; 0 turns this part off (the procedure of issue 12)
VALUE_PRICE = 0.2


def selection_size(n_max: int) -> int:
    """n0 = max(1, min(100, n_max // 10)): the votes that choose the candidate class."""
    return max(1, min(MAX_SELECTION, int(n_max) // 10))


def schedule(n_max: int) -> tuple[int, ...]:
    """The cumulative estimation sample sizes at the looks: 500, 1000, ... (doubling while below
    m = n_max - n0), then m; just (m,) when m <= 500. Needs n_max >= 2."""
    return _looks(n_max, BONFERRONI_FIRST_LOOK, lambda n: 2 * n)


def _looks(n_max: int, first: int, grow: Callable[[int], int]) -> tuple[int, ...]:
    """The cumulative estimation sample sizes: ``first``, then ``grow(n)`` while below m = n_max - n0,
    then m; just (m,) when m <= ``first``. Needs n_max >= 2."""
    m = int(n_max) - selection_size(n_max)
    if m < 1:
        raise ValueError(f"n_max must be at least 2 (selection plus estimation); got n_max = {n_max}")
    looks, n = [], min(first, m)
    while n < m:
        looks.append(n)
        n = grow(n)
    looks.append(m)
    return tuple(looks)


def look_levels(alpha: float, looks: int) -> tuple[float, ...]:
    """The level of each look: FINAL_SHARE alpha on the last, the rest split evenly over the earlier
    ones (alpha for a single look). They sum to alpha: the union bound of the module docstring."""
    if looks == 1:
        return (alpha,)
    early = alpha * (1 - FINAL_SHARE) / (looks - 1)
    return (early,) * (looks - 1) + (alpha * FINAL_SHARE,)


@dataclass(frozen=True)
class SequentialOutcome:
    """The result of :func:`certify_sequential`.

    ``candidate`` is the selected class; ``abstained`` says whether the answer is ABSTAIN;
    ``rho_lower`` / ``rho_upper`` are the bounds on p_A at the last look taken (each at level alpha);
    ``score_lower`` the bound m the radius came from (the two scores' smaller lower bound, or
    ``rho_lower`` in the p_A form); ``rho_b_upper`` 1 - rho_lower in the p_A form, else the bound on every
    other class's probability the scores imply (:func:`implied_runner_up_bound`, reported only);
    ``radius`` maps each adversary to its radius (0.0 on abstention) and ``form`` to the form that
    gave it (:func:`wulff.certify.two_class.two_class_radius`); ``top_count`` of ``n_estimation``
    estimation votes went to the candidate; ``n`` counts every sample drawn, selection included;
    ``looks`` is the number of looks taken; ``reason`` why it stopped; ``method`` the procedure.
    """

    candidate: int
    abstained: bool
    rho_lower: float
    rho_upper: float
    radius: dict[str, float]
    top_count: int
    n_estimation: int
    n: int
    looks: int
    reason: str
    rho_b_upper: float = 1.0
    form: dict[str, str] = field(default_factory=dict)
    method: str = "anytime"
    score_lower: float | None = None


def anytime_schedule(n_max: int) -> tuple[int, ...]:
    """The looks of the anytime procedure: FIRST_LOOK estimation samples, then LOOK_RATIO times more
    at each look (rounded up), then m = n_max - n0 (just (m,) when m <= FIRST_LOOK). Needs n_max >= 2."""
    return _looks(n_max, FIRST_LOOK, lambda n: max(n + 1, math.ceil(n * LOOK_RATIO)))


def looks_of(method: str, n_max: int) -> tuple[int, ...]:
    """The cumulative estimation sample sizes at which ``method`` looks."""
    return anytime_schedule(n_max) if check_method(method) == "anytime" else schedule(n_max)


def default_method(radii) -> str:
    """The measured choice: with a grid the anytime procedure decides the grid radii with fewer samples;
    without one, rule (c) compares the current bound with the last look's Clopper-Pearson bound, which
    the confidence sequence stays further below, so the anytime procedure runs longer (1.2x the
    Bonferroni one's samples on the benchmark's populations)."""
    return "bonferroni" if radii is None else "anytime"


def check_method(method) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}; got {method!r}")
    return method


class SequentialBound:
    """One side ("lower" or "upper") of one Bernoulli mean, valid at every look of ``method`` at once
    with probability at least 1 - ``level``.

    * "bonferroni": Clopper-Pearson at look j at level alpha_j (:func:`look_levels`; union bound), the
      best so far (all looks' bounds hold together).
    * "anytime": the confidence sequence of :mod:`wulff.certify.sequential` at level
      (1 - FINAL_SHARE) level at every look (its running best: the running intersection of a
      confidence sequence keeps its coverage), and at the last look also Clopper-Pearson at
      FINAL_SHARE level; both hold together with probability >= 1 - level (union bound over the
      two events), so the better of the two is returned there. With one look: Clopper-Pearson at level.
    """

    def __init__(self, method: str, side: str, level: float, looks: int, prior: Prior = PRIOR):
        self.method, self.side, self.looks, self.prior = check_method(method), side, looks, prior
        self.final = level if looks == 1 else level * FINAL_SHARE
        self.sequence_level = level - self.final
        self.levels = look_levels(level, looks)
        self.best = 0.0 if side == "lower" else 1.0

    def _better(self, a: float, b: float) -> float:
        return max(a, b) if self.side == "lower" else min(a, b)

    def at(self, successes: int, trials: int, look: int) -> float:
        """The bound after ``trials`` samples with ``successes`` at look ``look`` (0-based)."""
        fixed = clopper_pearson_lower if self.side == "lower" else clopper_pearson_upper
        if self.method == "bonferroni":  # every look's bound holds at once: keep the best so far
            self.best = self._better(self.best, fixed(successes, trials, self.levels[look]))
            return self.best
        last = look == self.looks - 1
        if self.sequence_level > 0:
            sequence = cs_lower if self.side == "lower" else cs_upper
            self.best = self._better(self.best, sequence(successes, trials, self.sequence_level, self.prior))
        return self._better(self.best, fixed(successes, trials, self.final)) if last else self.best



def check_radii(radii) -> tuple[float, ...] | None:
    """None, or a nonempty strictly increasing sequence of finite radii (as floats)."""
    if radii is None:
        return None
    if isinstance(radii, (str, bytes)) or not isinstance(radii, (Sequence, np.ndarray)):
        raise TypeError(f"radii must be None or a sequence of numbers; got {type(radii).__name__}")
    try:
        values = tuple(float(r) for r in radii)
    except (TypeError, ValueError) as err:
        raise TypeError(f"radii must be numbers; got {list(radii)!r}") from err
    if not values:
        raise ValueError("radii must name at least one radius (or be None)")
    if not all(math.isfinite(r) for r in values):
        raise ValueError(f"radii must be finite; got {list(values)}")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"radii must be strictly increasing; got {list(values)}")
    return values


def grid_thresholds(certificate: Certificate, radii: Sequence[float]) -> np.ndarray:
    """t_i: grid radius r_i is certified when rho_lower >= t_i (t_i = rho_needed(r_i), and just
    above 1/2 for r_i <= 0 so that a certified answer is never an abstention)."""
    return np.array(_thresholds(certificate, tuple(float(r) for r in radii)))


@functools.lru_cache(maxsize=64)
def _thresholds(certificate: Certificate, radii: tuple[float, ...]) -> tuple[float, ...]:
    """The thresholds of one grid, computed once per certificate (inputs of a data set share them)."""
    above_half = math.nextafter(0.5, 1.0)
    return tuple(max(certificate.inverse_radius(r), above_half) for r in radii)


def plural(selection: np.ndarray, candidate: int) -> bool:
    """Three or more plausible classes: the selection votes name at least two classes besides the
    candidate. Only then are p_B's bounds paid for (the selection is independent of the estimation,
    so deciding on it costs no validity)."""
    others = np.delete(np.asarray(selection), candidate)
    return int(np.count_nonzero(others)) >= 2


@dataclass(frozen=True)
class FixedOutcome:
    """CERTIFY's answer from fixed counts (:func:`certify_counts`): ``rho_b_upper`` is None when only
    p_A was bounded; ``radius`` and ``form`` map each adversary to its radius and form."""

    candidate: int
    abstained: bool
    rho_lower: float
    rho_b_upper: float | None
    radius: dict[str, float]
    form: dict[str, str]


def certify_counts(selection: np.ndarray, counts: np.ndarray, alpha: float,
                   certificates: Mapping[str, Certificate], two_class: bool = False) -> FixedOutcome:
    """Cohen et al.'s CERTIFY from the n0 ``selection`` votes (they choose the candidate c) and the n
    estimation ``counts``: the p_A form at level alpha (R(rho_lower), rho_lower the Clopper-Pearson
    bound on p_A; the default, Cohen et al.'s input for input), or, with ``two_class`` and three or more
    plausible classes in the selection
    (:func:`plural`), p_A's bound at (1 - TWO_CLASS_SHARE) alpha and p_B <= max(p_runner-up, p_rest),
    each bounded at TWO_CLASS_SHARE alpha / 2 (union bound: all hold with probability >= 1 - alpha),
    with the two-class radius (:func:`wulff.certify.two_class.two_class_radius`)."""
    selection, counts = np.asarray(selection), np.asarray(counts)
    candidate = int(np.argmax(selection))
    n, top = int(counts.sum()), int(counts[candidate])
    both = bool(two_class) and plural(selection, candidate)
    rho_lower = clopper_pearson_lower(top, n, alpha * (1 - TWO_CLASS_SHARE) if both else alpha)
    if rho_lower <= 0.5:
        return FixedOutcome(candidate, True, rho_lower, None, {a: 0.0 for a in certificates}, {})
    if not both:
        return FixedOutcome(candidate, False, rho_lower, None,
                            {a: float(c.radius(rho_lower)) for a, c in certificates.items()},
                            {a: ONE_CLASS for a in certificates})
    runner = int(np.delete(counts, candidate)[int(np.argmax(np.delete(selection, candidate)))])
    level = alpha * TWO_CLASS_SHARE / 2
    rho_b = max(clopper_pearson_upper(runner, n, level), clopper_pearson_upper(n - top - runner, n, level))
    radius, form = {}, {}
    for a, c in certificates.items():
        radius[a], form[a] = two_class_radius(c, rho_lower, rho_b)
    return FixedOutcome(candidate, False, rho_lower, rho_b, radius, form)


def radius_of(certificate: Certificate, rho: float) -> float:
    """The radius R(rho) of a lower bound rho (on p_A or on the scores' means), -1 when rho <= 1/2 (no answer)."""
    return -1.0 if rho <= 0.5 else float(certificate.radius(rho))


@dataclass
class Votes:
    """The estimation votes so far: how many, and how many for the candidate; with ``coins``, the heads
    of a fair coin tossed for each vote of the runner-up (chosen by the selection) and of the rest (the
    two-class scores, :meth:`successes`)."""

    top: int = 0
    used: int = 0
    heads_second: int = 0
    heads_rest: int = 0

    def add(self, votes: np.ndarray, candidate: int, runner: int,
            coins: np.random.Generator | None = None) -> None:
        top, second, used = int(votes[candidate]), int(votes[runner]), int(np.sum(votes))
        self.top, self.used = self.top + top, self.used + used
        if coins is not None:
            self.heads_second += int(coins.binomial(second, 0.5))
            self.heads_rest += int(coins.binomial(used - top - second, 0.5))

    def successes(self, two_class: bool) -> tuple[int, ...]:
        """The successes of each bounded stream: the candidate's votes (p_A form), or the two scores of
        the module docstring: against the runner-up (the candidate's votes plus the heads among the
        rest's) and against the rest (plus the heads among the runner-up's). Each is at least ``top``."""
        return (self.top + self.heads_rest, self.top + self.heads_second) if two_class else (self.top,)


def certify_sequential(draw: Callable[[int], np.ndarray], n_max: int, alpha: float,
                       certificates: Mapping[str, Certificate], radii=None, *,
                       method: str | None = DEFAULT_METHOD, two_class: bool = True,
                       coins: np.random.Generator | None = None) -> SequentialOutcome:
    """The sequential CERTIFY of the module docstring.

    ``draw(k)`` returns the votes (counts per class) of k fresh noisy samples; ``certificates`` maps
    each adversary to its (best) certificate, the first one being the adversary of ``radii`` and of
    rule (c). ``method`` is "anytime" (a confidence sequence looked at after every look of
    :func:`anytime_schedule`), "bonferroni" (Clopper-Pearson on :func:`schedule`, alpha split over
    the looks) or None (:func:`default_method`: anytime with ``radii``, bonferroni without). With
    ``two_class`` the radius comes from the two scores' bounds (module docstring: never below the p_A
    form's on the same votes), their fair coins tossed by ``coins`` (a fresh generator when None:
    they must be independent of the votes).
    With probability at least 1 - alpha every bound used holds at every look, so the returned class
    (when not abstaining) and every returned radius are valid, whatever look it stops at.
    """
    alpha = check_alpha(alpha)
    radii = check_radii(radii)
    method = check_method(default_method(radii) if method is None else method)
    if not certificates:
        raise ValueError("certificates must name at least one adversary")
    looks = looks_of(method, n_max)
    n0, m, count = selection_size(n_max), looks[-1], len(looks)
    first = next(iter(certificates.values()))
    two_class = bool(two_class)
    if two_class and coins is None:
        coins = np.random.default_rng()

    selection = np.asarray(draw(n0))
    candidate = int(np.argmax(selection))
    runner = int(np.argmax(np.where(np.arange(len(selection)) == candidate, -1, selection)))
    prior = selection_prior(int(selection[candidate]), n0) if SELECTION_PRIOR else PRIOR
    a_lower = SequentialBound(method, "lower", alpha, count, prior)
    # the bounds the radius comes from: p_A's, or the two scores' (each at alpha: module docstring)
    lowers = tuple(SequentialBound(method, "lower", alpha, count, prior) for _ in range(2)) if two_class \
        else (a_lower,)
    votes = Votes()
    rho_a, lower, reason = 0.0, 0.0, "n_max"
    for j, n in enumerate(looks):
        votes.add(np.asarray(draw(n - votes.used)), candidate, runner, coins if two_class else None)
        successes = votes.successes(two_class)
        rho_a = a_lower.at(votes.top, n, j)
        lower = min(bound.at(k, n, j) for bound, k in zip(lowers, successes)) if two_class else rho_a
        if j == count - 1:
            break
        now = radius_of(first, lower)
        if radii is not None and now >= radii[-1]:
            reason = "every grid radius certified"
            break
        sure = None if method == "bonferroni" else \
            (lambda: min(cs_upper(k, votes.used, DECISION_LEVEL, prior) for k in votes.successes(two_class)))
        why = futile(first, successes, n, m, a_lower.final, now, radii, sure)
        if why:
            reason = why
            break
    upper = SequentialBound(method, "upper", alpha, count, prior).at(votes.top, votes.used, j)  # reported only
    abstained = lower <= 0.5
    gained = two_class and lower > rho_a
    radius = {a: 0.0 if abstained else float(c.radius(lower)) for a, c in certificates.items()}
    form = {a: GENERIC if gained and not abstained else ONE_CLASS for a in certificates}
    rho_b = implied_runner_up_bound(lower, upper) if gained else 1.0 - rho_a
    return SequentialOutcome(candidate, abstained, rho_a, upper, radius, votes.top, votes.used, n0 + votes.used,
                             j + 1, reason, min(rho_b, 1.0), form, method, lower)


def implied_runner_up_bound(score_lower: float, rho_upper: float) -> float:
    """1 + rho_upper - 2 m, rounded up: every class but the candidate has probability at most this when
    both scores' means are at least m and p_A <= rho_upper (E score = (1 + p_A - p_C) / 2); reported
    only (the radius is R(m)), valid where both bounds hold (level 2 alpha)."""
    return min(1.0, max(0.0, round_up(1 + Fraction(rho_upper) - 2 * Fraction(score_lower))))


@functools.lru_cache(maxsize=1024)
def final_frequency(threshold: float, m: int, level: float) -> float:
    """The least frequency k / m whose last-look Clopper-Pearson bound (at ``level``, m samples) reaches
    ``threshold`` (above 1 when none does)."""
    lo, hi = -1, m + 1  # bound(lo) < threshold, bound(hi) >= threshold by convention
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if clopper_pearson_lower(mid, m, level) >= threshold:
            hi = mid
        else:
            lo = mid
    return hi / m


def success_chance(successes: int, trials: int, needed: float) -> float:
    """P(p >= needed) under the Jeffreys posterior Beta(k + 1/2, n - k + 1/2) of the votes so far: the
    chance (a heuristic of the stopping rules, never of the bounds) that the stream's mean is high
    enough for the last look to certify."""
    if needed > 1:
        return 0.0
    return float(1.0 - betainc(successes + 0.5, trials - successes + 0.5, needed))


def futile(first: Certificate, successes: tuple[int, ...], n: int, m: int, a_final: float, now: float, radii,
           sure_upper: Callable[[], float] | None = None) -> str:
    """Why going on to m estimation samples is not worth it (rules (a) to (c)), or "" to go on.

    ``successes`` are the counts of the bounded streams after n samples (the radius is R of the
    smallest lower bound). The "hopeful" bounds are Clopper-Pearson at DECISION_LEVEL from above; a
    reachable final bound is the last look's bound at m fed the hopeful frequency, the optimistic one
    (rule (c)) fed the current frequency. An abstention is confirmed by ``sure_upper()`` when given (the
    anytime procedure's confidence sequence at DECISION_LEVEL: its many looks then misjudge an input
    just above 1/2 no more often than the Bonferroni procedure's few)."""
    hopeful = min(clopper_pearson_upper(k, n, DECISION_LEVEL) for k in successes)

    def reachable(upper: float) -> float:
        return clopper_pearson_lower(min(m, math.ceil(upper * m)), m, a_final)

    if hopeful <= 0.5 or reachable(hopeful) <= 0.5:
        sure = hopeful if sure_upper is None else sure_upper()
        return "abstain: certification out of reach" if sure <= 0.5 or reachable(sure) <= 0.5 else ""
    reach = radius_of(first, min(reachable(clopper_pearson_upper(k, n, DECISION_LEVEL)) for k in successes))
    if radii is not None:
        following = next(r for r in radii if r > now)
        if following > reach:
            return "next grid radius out of reach"
        if now < radii[0] or not VALUE_PRICE:
            return ""
        needed = final_frequency(float(grid_thresholds(first, (following,))[0]), m, a_final)
        chance = min(success_chance(k, n, needed) for k in successes)
        worth = max(DECISION_LEVEL, VALUE_PRICE * (m - n) / m)
        return "next grid radius not worth its samples" if chance < worth else ""
    if now < 0:
        return ""
    optimistic = radius_of(first, min(clopper_pearson_lower(round(k / n * m), m, a_final) for k in successes))
    return "at most 1 % gain by n_max" if optimistic <= (1.0 + RELATIVE_GAIN) * now else ""
