"""Closed forms from the paper, written independently of the library, for tests to compare against."""
from __future__ import annotations

import numpy as np
from scipy import special


def theorem_r1(rho, d):
    """Theorem R.1 for exp(-||x||_2) (lam = 1): (d-1) arctanh(1 - 2 BetaCDF^{-1}(1 - rho); (d-1)/2, (d-1)/2),
    written (d-1)/2 log((1-x)/x) so that it stays finite for rho near 1."""
    a = (d - 1) / 2
    x = special.betaincinv(a, a, 1 - np.asarray(rho, float))
    return (d - 1) / 2 * np.log((1 - x) / x)
