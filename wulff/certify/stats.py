"""The two statistical steps of Cohen et al. (2019): a one-sided Clopper-Pearson lower confidence
bound on the top-class probability (CERTIFY) and a two-sided binomial test between the two most
frequent classes (PREDICT)."""
from __future__ import annotations

import numbers

from scipy.special import betaincinv
from scipy.stats import binomtest


def check_alpha(alpha) -> float:
    """alpha must be a real number in the open interval (0, 1)."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"alpha must be a real number in (0, 1); got {alpha!r}")
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must lie in the open interval (0, 1); got alpha = {alpha!r}")
    return float(alpha)


def check_counts(successes, trials) -> tuple[int, int]:
    for name, v in (("successes", successes), ("trials", trials)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name} must be an integer; got {v!r}")
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials >= 1; got successes = {successes}, "
                         f"trials = {trials}")
    return int(successes), int(trials)


def clopper_pearson_lower(successes: int, trials: int, alpha: float) -> float:
    """One-sided Clopper-Pearson lower bound: P(p >= bound) >= 1 - alpha for k ~ Bin(trials, p).

    The bound L solves P(Bin(trials, L) >= successes) = alpha, i.e. L = BetaPPF(alpha; k, n - k + 1);
    it is 0 for k = 0 and alpha^(1/n) for k = n.
    """
    k, n = check_counts(successes, trials)
    alpha = check_alpha(alpha)
    if k == 0:
        return 0.0
    return float(betaincinv(k, n - k + 1, alpha))  # beta.ppf(alpha, k, n - k + 1), without its overhead


def clopper_pearson_upper(successes: int, trials: int, alpha: float) -> float:
    """One-sided Clopper-Pearson upper bound: P(p <= bound) >= 1 - alpha for k ~ Bin(trials, p).

    The bound U solves P(Bin(trials, U) <= successes) = alpha, i.e. U = BetaPPF(1 - alpha; k + 1, n - k);
    it is 1 for k = n and 1 - alpha^(1/n) for k = 0.
    """
    k, n = check_counts(successes, trials)
    alpha = check_alpha(alpha)
    if k == n:
        return 1.0
    return float(betaincinv(k + 1, n - k, 1.0 - alpha))  # beta.ppf(1 - alpha, k + 1, n - k)


def two_class_test_passes(count_top: int, count_second: int, alpha: float) -> bool:
    """True when the two-sided binomial test rejects "the top two classes are equally likely" at alpha."""
    alpha = check_alpha(alpha)
    total = int(count_top) + int(count_second)
    if total == 0:
        return False
    return binomtest(int(count_top), total, 0.5).pvalue <= alpha
