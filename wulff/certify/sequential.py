"""An anytime-valid confidence sequence for a Bernoulli mean: bounds valid at every sample size at once.

Theorem (beta-binomial mixture martingale; Ville's inequality). Let X_1, X_2, ... be i.i.d.
Bernoulli(p), S_n = X_1 + ... + X_n, and pi a probability law on [0, 1] (the prior). For a
candidate value p0 in (0, 1) put

    M_n(p0) = int_0^1 theta^S_n (1 - theta)^(n - S_n) dpi(theta) / (p0^S_n (1 - p0)^(n - S_n)),

the likelihood ratio of the pi-mixture of Bernoulli laws against Bernoulli(p0); for pi a mixture of
Beta(a_i, b_i) with weights w_i, the integral is sum_i w_i B(a_i + S_n, b_i + n - S_n) / B(a_i, b_i). Then
P(exists n >= 1: M_n(p) >= 1 / alpha) <= alpha at the true p.

Proof. Under Bernoulli(p), each ratio theta^S_n (1 - theta)^(n - S_n) / (p^S_n (1 - p)^(n - S_n)) is a
nonnegative martingale with mean 1 (E[(theta / p)^X (1 - theta)^(1 - X) / (1 - p)^(1 - X)] = theta + 1 - theta
= 1 per step); a mixture over theta with a prior fixed in advance (Tonelli) is one too, M_0 = 1. Ville's
inequality (the maximal inequality for nonnegative supermartingales) gives P(sup_n M_n >= 1 / alpha)
<= alpha. Conditions: the X_i are independent with the same mean p given the past (the noise draws
are i.i.d.); the prior does not depend on the data (it may depend on anything drawn independently
of the X_i, e.g. the selection votes); any stopping rule, any looks. Hence

    C_n = {p0 : M_n(p0) < 1 / alpha}  contains p at every n simultaneously with probability >= 1 - alpha,

and so does the running intersection. log M_n(p0) is convex in p0 (minus a log-likelihood plus a
constant), and M_n(S_n / n) <= 1 (a mixture of likelihoods is below their maximum), so C_n is an
interval [L_n, U_n] around S_n / n, found by bisection on each side. The bisection keeps a point
where log M_n exceeds log(1 / alpha) by a margin (1e-9 relative, far above the float error of the
few terms) and returns it: the returned L_n is below the true end point (sound), likewise U_n above.

The price of looking at every n: at n = S_n (all votes for one class) the lower bound is about
1 - (log(1 / alpha) + log(sqrt(pi n))) / n under the Jeffreys prior a = b = 1/2 (the default),
against 1 - log(1 / alpha) / n for Clopper-Pearson at one fixed n.
"""
from __future__ import annotations

import math

from scipy.special import betaln

from .stats import check_alpha, check_counts

#: a prior: components (weight, a, b) of a mixture of Beta(a, b) laws, weights summing to 1;
#: the default is the Jeffreys prior Beta(1/2, 1/2)
Prior = tuple[tuple[float, float, float], ...]
PRIOR: Prior = ((1.0, 0.5, 0.5),)


def selection_prior(successes: int, trials: int) -> Prior:
    """Half Jeffreys, half Beta(1 + k0, 1 + n0 - k0): the posterior of a uniform prior after the n0
    selection votes (k0 for the class). Drawn independently of the estimation votes, they may shape
    the prior (the theorem's condition): the mixture concentrates near the selection's estimate, which
    shortens the bound when it is right and costs at most log 2 (the Jeffreys half) when it is not."""
    return ((0.5, 0.5, 0.5), (0.5, 1.0 + successes, 1.0 + trials - successes))


def mirrored(prior: Prior) -> Prior:
    """The prior of the failures X -> 1 - X (each Beta(a, b) becomes Beta(b, a))."""
    return tuple((w, b, a) for w, a, b in prior)
#: a candidate is excluded only when log M exceeds log(1/alpha) by this relative margin
MARGIN = 1e-9


def log_mixture_ratio(successes: int, trials: int, p0: float, prior: Prior = PRIOR) -> float:
    """log M_n(p0) of the module docstring (+inf at p0 = 0 with successes > 0, and so on)."""
    return _log_ratio(successes, trials, p0, log_mixture(successes, trials, prior))


def log_mixture(successes: int, trials: int, prior: Prior) -> float:
    """log of the mixture likelihood: log sum_i w_i B(a_i + S_n, b_i + n - S_n) / B(a_i, b_i)."""
    terms = [math.log(w) + float(betaln(a + successes, b + trials - successes) - betaln(a, b))
             for w, a, b in prior]
    top = max(terms)
    return top + math.log(sum(math.exp(t - top) for t in terms))


def _log_ratio(successes: int, trials: int, p0: float, log_mix: float) -> float:
    log_lik = 0.0
    if successes:
        log_lik += successes * math.log(p0) if p0 > 0 else -math.inf
    if trials - successes:
        log_lik += (trials - successes) * math.log1p(-p0) if p0 < 1 else -math.inf
    return log_mix - log_lik


def _excluded_end(successes: int, trials: int, alpha: float, prior: Prior) -> float:
    """The lower end L_n: bisection between an excluded point (log M >= threshold with margin) and
    the estimate S_n / n (inside C_n); returns the excluded point, which lies below the true end."""
    threshold = math.log(1.0 / alpha) * (1.0 + MARGIN) + MARGIN
    log_mix = log_mixture(successes, trials, prior)
    lo, hi = 0.0, successes / trials
    for _ in range(64):
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi or hi - lo <= 1e-15:
            break
        if _log_ratio(successes, trials, mid, log_mix) >= threshold:
            lo = mid
        else:
            hi = mid
    return lo


def cs_lower(successes: int, trials: int, alpha: float, prior: Prior = PRIOR) -> float:
    """L_n: P(p >= L_n for every n) >= 1 - alpha (module docstring); 0 when successes = 0."""
    k, n = check_counts(successes, trials)
    alpha = check_alpha(alpha)
    if k == 0:
        return 0.0
    return _excluded_end(k, n, alpha, prior)


def cs_upper(successes: int, trials: int, alpha: float, prior: Prior = PRIOR) -> float:
    """U_n: P(p <= U_n for every n) >= 1 - alpha; 1 when successes = trials. By the mirror X -> 1 - X
    (the mixture with the prior's parameters swapped), U_n = 1 - L_n of the failures, rounded up."""
    k, n = check_counts(successes, trials)
    alpha = check_alpha(alpha)
    if k == n:
        return 1.0
    lower = _excluded_end(n - k, n, alpha, mirrored(prior))
    upper = 1.0 - lower
    return min(1.0, math.nextafter(upper, math.inf))
