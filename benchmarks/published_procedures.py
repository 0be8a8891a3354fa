"""The published procedures for deciding certification with few samples, re-implemented for the benchmark
(benchmarks/certify_adaptive.py, issue 28), vectorized over a population of inputs whose class
probabilities are known (the votes are drawn from them; no model).

What was taken from where, and what was assumed:

* **Horvath et al. (ICLR 2022), "Boosting randomized smoothing with variance reduced classifiers",
  adaptive sampling for a predetermined radius** (the paper's description and its code,
  github.com/eth-sri/smoothing-ensembles, ``smooth_ensemble_adaptive.py`` and the README's command):
  s stages of n_i = 1,000, 10,000, 125,000 samples; every stage draws FRESH samples (n0 = 100 selection
  votes choose the class again, then n_i estimation votes); stage i certifies radius r when the
  Clopper-Pearson lower bound at alpha / s reaches rho_needed(r); before the last stage it gives up when
  the Clopper-Pearson upper bound at beta / (s - 1) (beta = 1e-4, their default; it only sets the cost)
  is below rho_needed(r); the last stage decides. Validity: the s lower bounds hold together with
  probability >= 1 - alpha (Bonferroni). Passes: n0 + n_i per stage reached.
  *Grid* (our extension, :func:`horvath`): the same stages, and at each stage every grid radius whose
  threshold the stage's lower bound reaches is certified (one bound per stage, so the union bound over
  the stages still covers every claim); the procedure stops once every grid radius is certified, or
  when the upper bound rules out the next grid radius above those certified. With one radius this is
  their procedure exactly.
* **Voracek (2024), "Treatment of statistical estimation problems in randomized smoothing for
  adversarial robustness"** (the paper's summary and its code, github.com/vvoracek/RS_conf_seq,
  ``thresholds.py`` and ``core.py``): a sequential test of H0: p <= t for the threshold t of one radius,
  decided after EVERY sample by precomputed count thresholds:

  - :func:`kt_thresholds` ("Voracek, mixture"; his ``get_thresholds``): certify at the first n where
    A_n >= t n and log of the likelihood ratio of the Krichevsky-Trofimov (Beta(1/2, 1/2)) mixture
    against Bin(n, t) exceeds log(2 / alpha); give up when the failures pass the same test for 1 - t
    (he spends alpha / 2 on each side; kept). Validity: the mixture ratio is a nonnegative martingale
    with mean 1 under p = t (Ville: it ever reaches 2 / alpha with probability <= alpha / 2); for p < t
    and A_n >= t n the ratio against p is at least the one against t (the binomial likelihood is
    unimodal with its mode at A_n / n), so H0 is rejected wrongly with probability <= alpha / 2.
  - :func:`union_thresholds` ("Voracek, union bound"; his ``get_thresholds_union_bound``): looks at
    n = floor(1.1^k) + 1 (k = 12, 13, ...; every n up to about 25, then geometric), at look j the
    level alpha_j = 5 alpha / ((j + 4)(j + 5)) (they sum to alpha), each an exact binomial test; he
    spends alpha on each side (kept). We use the RANDOMIZED exact test at each look
    (:func:`randomized_pvalue`; rejection <=> the randomized Clopper-Pearson lower bound at alpha_j is
    above t), with the uniform of each look drawn in advance, independently of the votes, and only at
    the looks where the deterministic test can reject at all (c < n below). Our restriction: the fully
    randomized test rejects on no evidence at the first looks (n = 3, 4, ...: all successes, the likeliest
    count whatever t, rejects with probability about alpha_j by the draw of u alone; valid, its size
    being alpha_j, but in a first run it certified r = 3.5 on 2 of 1000 synthetic inputs that Cohen
    certifies at 2, and over-claimed on 2.6 % of the validity check's slab cases, where every other
    procedure made none). Rejecting on a subset of a level-alpha_j region keeps the level.
  - Both: the thresholds are made nonincreasing from the right (his running minimum): since the counts
    only grow, a count above a LATER look's threshold will be above it at that look, so stopping at
    once claims nothing the unmodified test would not have claimed had it gone on.
  *Grid* (our extension, :func:`sequential_thresholds_run`): the grid radii are decided one after
  another on the same stream of votes (a fixed-sequence test of the nested hypotheses p <= t_1 < t_2 <
  ...): radius j is certified once the tests of radii 1..j have each crossed (at any time so far); the
  procedure stops when every radius is certified or the test of the next radius gives up. Each test
  being valid at every n at once (Ville, or the union bound over the looks), a wrong claim needs the
  test of the first false radius to cross, which happens with probability at most its level.
  *Selection*: his code tests the true label (known in an evaluation); we give every procedure the same
  n0 = 100 selection votes (the argmax is the class tested), so the passes compare like for like.
  *His randomized Clopper-Pearson bound* (:func:`randomized_clopper_pearson_lower`) is also used at a
  fixed n as CERTIFY's bound ("Cohen, randomized CP" in the benchmark), where the paper presents it as
  strictly stronger than Clopper-Pearson.

Everything here sees votes only and returns, per input, the number of grid radii certified (the
largest certified being grid[level - 1]), the class tested and the forward passes spent.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import betainc, betaincinv, betaln
from scipy.stats import binom

#: the selection votes of every procedure (Cohen et al.'s n0)
SELECTION = 100
#: Horvath et al.'s stages (their README's command: --N1 1000 --N2 10000 --N3 125000) and futility level
HORVATH_STAGES = (1_000, 10_000, 125_000)
HORVATH_BETA = 1e-4
#: Voracek's union-bound looks: n > 1.1^k for k from UNION_FIRST_K on (his beta = 1.1, kinit = 11)
UNION_RATIO, UNION_FIRST_K = 1.1, 11
#: the bisection's relative slack on alpha: the computed p-value must be below alpha (1 - slack), so
#: betainc's rounding (about 1e-15 relative) can only make the randomized bound smaller (safe side)
ALPHA_SLACK = 1e-9


# -- the randomized Clopper-Pearson bound -------------------------------------------------------------
def _at_least(j: np.ndarray, n: np.ndarray, p: np.ndarray) -> np.ndarray:
    """P(Bin(n, p) >= j), elementwise: 1 for j <= 0, 0 for j > n, I_p(j, n - j + 1) between."""
    j, n, p = np.broadcast_arrays(np.asarray(j, dtype=np.float64), np.asarray(n, dtype=np.float64),
                                  np.asarray(p, dtype=np.float64))
    inside = (j >= 1) & (j <= n)
    out = np.where(j <= 0, 1.0, 0.0)
    out[inside] = betainc(j[inside], n[inside] - j[inside] + 1, p[inside])
    return out


def randomized_pvalue(k, n, p, u) -> np.ndarray:
    """The randomized p-value of H0: "the success probability is at most p" after k successes in n:
    P_p(X > k) + u P_p(X = k), X ~ Bin(n, p), u ~ Uniform(0, 1) drawn independently of k. It is
    nondecreasing in p (each P_p(X >= j) is) and, at the true p, exactly Uniform(0, 1)."""
    k = np.asarray(k)
    u = np.asarray(u, dtype=np.float64)
    return (1.0 - u) * _at_least(k + 1, n, p) + u * _at_least(k, n, p)


def randomized_clopper_pearson_lower(k, n, alpha: float, u, iterations: int = 64) -> np.ndarray:
    """Voracek's randomized Clopper-Pearson lower confidence bound on a binomial p (elementwise).

    L = sup{p0 : pi(p0) <= alpha} with pi(p0) = P_p0(X > k) + u P_p0(X = k) (:func:`randomized_pvalue`).

    Guarantee: P(L <= p) >= 1 - alpha for every p, and = 1 - alpha up to ALPHA_SLACK (exact coverage),
    over k ~ Bin(n, p) and u ~ Uniform(0, 1) independent of k. Never below the Clopper-Pearson bound
    (which is the case u = 1), and strictly above it whenever u < 1 and 0 < k.

    Proof sketch. pi(p0) is nondecreasing in p0, so L > p implies pi(p) <= alpha. At the true p, pi(p) is
    uniform: with F the distribution function of X, P(pi(p) <= a) sums, over the k with
    P(X > k) <= a, the chance that X = k and u P(X = k) <= a - P(X > k); the values P(X > k) + [0, 1] P(X = k)
    tile [0, 1] as k runs from n down to 0, so the total is exactly a. Hence P(L > p) <= P(pi(p) <= alpha) =
    alpha. The bisection keeps pi(lo) <= alpha (1 - ALPHA_SLACK) and returns lo, below the exact root.
    """
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    u = np.asarray(u, dtype=np.float64)
    k, n, u = np.broadcast_arrays(k, n, u)
    target = alpha * (1.0 - ALPHA_SLACK)
    lo, hi = np.zeros(k.shape), np.ones(k.shape)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        below = randomized_pvalue(k, n, mid, u) <= target
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return lo


def randomized_clopper_pearson_upper(k, n, alpha: float, u) -> np.ndarray:
    """The upper bound by symmetry (failures n - k of 1 - p): P(U >= p) >= 1 - alpha."""
    return 1.0 - randomized_clopper_pearson_lower(np.asarray(n) - np.asarray(k), n, alpha, u)


def clopper_pearson_lower_array(k, n, alpha: float) -> np.ndarray:
    """Clopper-Pearson's lower bound, elementwise (0 at k = 0)."""
    k, n = np.broadcast_arrays(np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64))
    out = np.zeros(k.shape)
    some = k > 0
    out[some] = betaincinv(k[some], n[some] - k[some] + 1, alpha)
    return out


def clopper_pearson_upper_array(k, n, alpha: float) -> np.ndarray:
    """Clopper-Pearson's upper bound, elementwise (1 at k = n)."""
    k, n = np.broadcast_arrays(np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64))
    out = np.ones(k.shape)
    some = k < n
    out[some] = betaincinv(k[some] + 1, n[some] - k[some], 1.0 - alpha)
    return out


# -- shared pieces --------------------------------------------------------------------------------------
@dataclass
class Decisions:
    """Per input: ``level`` grid radii certified (0: none; the class is then not claimed), the ``label``
    tested (-1 when nothing was certified), the forward ``passes`` spent and why it stopped."""

    level: np.ndarray
    label: np.ndarray
    passes: np.ndarray
    reason: np.ndarray

    def radius(self, grid: Sequence[float]) -> np.ndarray:
        """The largest certified grid radius (0 where nothing was certified)."""
        values = np.concatenate([[0.0], np.asarray(grid, dtype=np.float64)])
        return values[self.level]


def select(probs: np.ndarray, rng: np.random.Generator, n0: int = SELECTION) -> np.ndarray:
    """The class each input's n0 selection votes choose (their argmax; ties to the lower index)."""
    return np.argmax(rng.multinomial(n0, probs), axis=1)


def level_of(bound: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many grid thresholds (increasing) the lower bound reaches."""
    return np.searchsorted(np.asarray(thresholds), bound, side="right")


# -- Horvath et al. -------------------------------------------------------------------------------------
def horvath(probs: np.ndarray, thresholds: Sequence[float], alpha: float, rng: np.random.Generator,
            stages: Sequence[int] = HORVATH_STAGES, beta: float = HORVATH_BETA,
            n0: int = SELECTION) -> Decisions:
    """Horvath et al.'s adaptive sampling (module docstring), on a grid of thresholds (one for their
    fixed radius): fresh n0 + n_i votes per stage; Clopper-Pearson at alpha / s certifies; before the
    last stage, the upper bound at beta / (s - 1) below the next threshold gives up."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    size, s, G = len(probs), len(stages), len(thresholds)
    level = np.zeros(size, dtype=np.int64)
    label = np.full(size, -1)
    passes = np.zeros(size, dtype=np.int64)
    reason = np.full(size, "last stage", dtype=object)
    active = np.arange(size)
    for i, n in enumerate(stages):
        if active.size == 0:
            break
        candidate = select(probs[active], rng, n0)
        top = rng.binomial(n, probs[active, candidate])
        passes[active] += n0 + n
        reached = level_of(clopper_pearson_lower_array(top, n, alpha / s), thresholds)
        better = reached > level[active]
        level[active[better]] = reached[better]
        label[active[better]] = candidate[better]
        done = level[active] == G
        reason[active[done]] = "every grid radius certified"
        if i < s - 1:
            upper = clopper_pearson_upper_array(top, n, beta / (s - 1))
            futile = ~done & (upper < thresholds[np.minimum(level[active], G - 1)])
            reason[active[futile]] = "next grid radius out of reach"
            done |= futile
        active = active[~done]
    return Decisions(level, label, passes, reason)


# -- Voracek: count thresholds after every sample --------------------------------------------------------
IMPOSSIBLE = np.iinfo(np.int64).max // 4


def running_min_from_right(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """values[..., n] -> min over n' >= n (the counts only grow: module docstring)."""
    flipped = np.flip(values, axis=axis)
    return np.flip(np.minimum.accumulate(flipped, axis=axis), axis=axis)


def kt_log_ratio(A: np.ndarray, N: np.ndarray, t: float) -> np.ndarray:
    """log of the Krichevsky-Trofimov (Beta(1/2, 1/2)) mixture's likelihood of A successes in N against
    Bin(N, t)'s (the sequence's, without the binomial coefficient, which cancels)."""
    return (betaln(A + 0.5, N - A + 0.5) - betaln(0.5, 0.5)
            - A * math.log(t) - (N - A) * math.log1p(-t))


def kt_thresholds(t: float, m: int, level: float) -> np.ndarray:
    """Voracek's mixture test of H0: p <= t: T[n] (n = 0..m) = the least A >= t n whose mixture ratio
    exceeds 1 / level (IMPOSSIBLE where none), then the running minimum from the right. The ratio is
    increasing in A on A >= t n (its A-derivative is log(A / (n - A)) - log(t / (1 - t)) up to O(1/A)),
    so the bisection's answer is the least such A and every larger count rejects too."""
    N = np.arange(m + 1, dtype=np.float64)
    bar = math.log(1.0 / level)
    lo = np.ceil(t * N)  # A >= t n
    hi = N.copy()
    possible = (N >= 1) & (kt_log_ratio(N, np.maximum(N, 1), t) > bar)
    # invariant: f(hi) > bar; find the least A in [lo, hi] with f(A) > bar
    lo = np.where(possible, lo, 0.0)
    while True:
        open_ = possible & (lo < hi)
        if not open_.any():
            break
        mid = np.floor((lo + hi) / 2)
        above = kt_log_ratio(mid, np.maximum(N, 1), t) > bar
        hi = np.where(open_ & above, mid, hi)
        lo = np.where(open_ & ~above, mid + 1, lo)
    out = np.where(possible, hi, IMPOSSIBLE).astype(np.int64)
    return running_min_from_right(out)


def union_looks(m: int) -> np.ndarray:
    """Voracek's looks: n (1..m) with n > 1.1^k for the current k, k then raised by one."""
    looks, k = [], UNION_FIRST_K
    for n in range(1, m + 1):
        if n > UNION_RATIO ** k:
            k += 1
            looks.append(n)
    return np.array(looks, dtype=np.int64)


def union_levels(alpha: float, count: int) -> np.ndarray:
    """alpha_j = 5 alpha / ((j + 4)(j + 5)), j = 1, 2, ...: they sum to alpha."""
    j = np.arange(1, count + 1, dtype=np.float64)
    return 5.0 * alpha / ((j + 4) * (j + 5))


def union_thresholds(thresholds: Sequence[float], m: int, alpha: float, u: np.ndarray | None) -> np.ndarray:
    """Certification count thresholds at the looks, shape (inputs or 1, looks, G): the exact binomial
    test of H0: p <= t_g at level alpha_j, randomized with the look's uniform u[input, look] (None: the
    deterministic test), then the running minimum from the right over the looks. At a look the randomized
    test rejects when A > c, or A = c and u < gamma (c the least count with P_t(X > c) <= alpha_j, gamma =
    (alpha_j - P_t(X > c)) / P_t(X = c)), i.e. when :func:`randomized_pvalue` <= alpha_j: its size is
    alpha_j exactly at p = t, less below. Where c = n (the deterministic test cannot reject) gamma is 0:
    no claim rests on u alone (module docstring)."""
    looks = union_looks(m)
    a = union_levels(alpha, len(looks))[:, None]
    t = np.asarray(thresholds, dtype=np.float64)[None, :]
    n = looks[:, None]
    c = binom.isf(a, n, t)  # least c with P(X > c) <= a
    tail = binom.sf(c, n, t)
    mass = binom.pmf(c, n, t)
    gamma = np.where((mass > 0) & (c < n), (a - tail) / np.where(mass > 0, mass, 1.0), 0.0) * (1.0 - ALPHA_SLACK)
    if u is None:
        counts = (c + 1)[None]
    else:
        counts = c[None] + (u[:, :, None] >= gamma[None]).astype(np.float64)
    counts = np.where(counts > n[None], IMPOSSIBLE, counts).astype(np.int64)
    return running_min_from_right(counts, axis=1)


def union_futility(thresholds: Sequence[float], m: int, alpha: float) -> np.ndarray:
    """His abstention side, deterministic: failures above the union-bound test of 1 - t_g, shape
    (looks, G), running minimum from the right (failures only grow too)."""
    flipped = [1.0 - t for t in thresholds]
    return union_thresholds(flipped, m, alpha, None)[0]


@dataclass
class StepThresholds:
    """Per-step count thresholds of a sequential test on a grid, for the active inputs ``rows`` and
    the steps ``steps`` (1-based sample counts): ``certify(rows, steps)`` -> (rows, steps, G) counts
    that certify; ``futile(rows, steps)`` -> (rows, steps, G) failure counts that give up."""

    certify: Callable[[np.ndarray, np.ndarray], np.ndarray]
    futile: Callable[[np.ndarray, np.ndarray], np.ndarray]


def sequential_thresholds_run(p: np.ndarray, G: int, m: int, rules: StepThresholds,
                              rng: np.random.Generator, block: int = 512) -> tuple[np.ndarray, ...]:
    """Run a per-sample sequential test on every input at once: the candidate's votes are Bernoulli(p)
    draws; radius j is certified once tests 1..j have each crossed; stop when all G are certified, when
    the next radius's futility threshold is crossed, or after m samples. Returns (level, used, reason)."""
    size = len(p)
    level = np.zeros(size, dtype=np.int64)
    used = np.full(size, m, dtype=np.int64)
    reason = np.full(size, "n_max", dtype=object)
    crossed = np.zeros((size, G), dtype=bool)
    successes = np.zeros(size, dtype=np.int64)
    active = np.arange(size)
    start = 0
    while active.size and start < m:
        width = int(min(m - start, max(block, start // 4), max(64, 4_000_000 // (active.size * G))))
        steps = np.arange(start + 1, start + width + 1)
        votes = rng.random((active.size, width)) < p[active, None]
        A = successes[active, None] + np.cumsum(votes, axis=1)
        F = steps[None, :] - A
        hits = A[:, :, None] >= rules.certify(active, steps)
        hits = np.logical_or.accumulate(hits, axis=1) | crossed[active, None, :]
        levels = np.cumprod(hits, axis=2).sum(axis=2)  # leading radii all crossed
        give_up = np.broadcast_to(rules.futile(active, steps), (active.size, width, G))
        nxt = np.minimum(levels, G - 1)
        futile = (levels < G) & (F >= np.take_along_axis(give_up, nxt[:, :, None], axis=2)[:, :, 0])
        stop = (levels == G) | futile
        first = np.where(stop.any(axis=1), stop.argmax(axis=1), width - 1)
        rows = np.arange(active.size)
        level[active] = levels[rows, first]
        stopped = stop[rows, first]
        successes[active] = A[rows, width - 1]
        crossed[active] = hits[:, width - 1, :]
        ends = active[stopped]
        used[ends] = steps[first[stopped]]
        reason[ends] = np.where(levels[rows, first][stopped] == G, "every grid radius certified",
                                "next grid radius out of reach")
        active = active[~stopped]
        start += width
    return level, used, reason


def voracek(probs: np.ndarray, thresholds: Sequence[float], alpha: float, rng: np.random.Generator,
            m: int, kind: str = "mixture", n0: int = SELECTION) -> Decisions:
    """Voracek's sequential procedure (module docstring) on a grid of thresholds, m estimation samples at
    most: ``kind`` "mixture" (the Krichevsky-Trofimov mixture, alpha / 2 a side) or "union" (the union
    bound over geometric looks with the randomized exact test, alpha a side)."""
    thresholds = [float(t) for t in thresholds]
    G = len(thresholds)
    candidate = select(probs, rng, n0)
    p = probs[np.arange(len(probs)), candidate]
    if kind == "mixture":
        up = np.stack([kt_thresholds(t, m, alpha / 2) for t in thresholds], axis=-1)  # (m + 1, G)
        down = np.stack([kt_thresholds(1.0 - t, m, alpha / 2) for t in thresholds], axis=-1)
        rules = StepThresholds(lambda rows, steps: up[steps][None], lambda rows, steps: down[steps][None])
    elif kind == "union":
        looks = union_looks(m)
        u = rng.random((len(probs), len(looks)))
        up = union_thresholds(thresholds, m, alpha, u)  # (inputs, looks, G)
        down = union_futility(thresholds, m, alpha)  # (looks, G)
        up = np.concatenate([up, np.full(up[:, :1].shape, IMPOSSIBLE)], axis=1)
        down = np.concatenate([down, np.full(down[:1].shape, IMPOSSIBLE)], axis=0)
        at = np.searchsorted(looks, np.arange(m + 1))  # the first look >= n (len(looks): none left)
        rules = StepThresholds(lambda rows, steps: up[rows][:, at[steps]],
                               lambda rows, steps: down[at[steps]][None])
    else:
        raise ValueError(f"kind must be 'mixture' or 'union'; got {kind!r}")
    level, used, reason = sequential_thresholds_run(p, G, m, rules, rng)
    label = np.where(level > 0, candidate, -1)
    return Decisions(level, label, n0 + used, reason)


def cohen_randomized(probs: np.ndarray, alpha: float, rng: np.random.Generator, n: int,
                     n0: int = SELECTION) -> tuple[np.ndarray, np.ndarray]:
    """CERTIFY at a fixed n with the randomized Clopper-Pearson bound: (class, rho_lower) per input."""
    candidate = select(probs, rng, n0)
    top = rng.binomial(n, probs[np.arange(len(probs)), candidate])
    return candidate, randomized_clopper_pearson_lower(top, n, alpha, rng.random(len(probs)))
