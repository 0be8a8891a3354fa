"""Declare a smoothing density by its exponent psi and get its certified radius, as a formula.

    python examples/declare_density.py

q(x) ∝ exp(-psi(x / lam)): the library reads the structure off psi (i.i.d. coordinates, or a
function of one norm), derives the law of gamma_u, Phi and the radius R(rho) by the differential
method (Theorem G.6), in closed form where sympy can and by a sound numeric envelope where it cannot,
and picks the best certificate over every method and norm conversion.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

import wulff
from wulff.distributions import Density, coordinate_sum, norm, t, x

D_ = 64
RHOS = np.array([0.6, 0.9, 0.99])

# an i.i.d. density: psi(x) = sum_i |x_i|^3, a sum over coordinates of a function of one coordinate t
cubic = Density(coordinate_sum(sp.Abs(t) ** 3), D_, sigma=0.5)
# a radial density in l2: psi(x) = ||x||_2^4 (a string is read by a restricted parser, never eval'd)
quartic = Density(norm(x, 2) ** 4, D_, sigma=0.5)
laplace_like = Density("norm(x, 1)", D_, sigma=0.5)

for q in (cubic, quartic, laplace_like):
    print(f"{q.structure()}")
    for adversary in ("l1", "l2", "linf"):
        best = wulff.best_certificate(q, adversary)
        radii = wulff.certified_radius(q, RHOS, adversary)
        formula = best.formula if best.formula is not None else "(numeric: " + best.method + ")"
        print(f"  vs {adversary:4s} R(rho) at rho = {RHOS.tolist()}: {np.round(radii, 4).tolist()}")
        print(f"           formula: {formula}")
        print(f"           from: {best.winner(0.9)}")
