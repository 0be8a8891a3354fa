"""Every certificate formula is a sympy expression in a plain Symbol("rho") that evaluates to the
radius the certificate returns (which may only be shaved below it, never above)."""
from __future__ import annotations

import pytest
import sympy as sp

from wulff import distributions as D
from wulff.diffmethod import derive
from wulff.uniform import derive_uniform

RHO = sp.Symbol("rho")
CASES = [
    (derive, D.Gaussian(16, sigma=0.5), "l2"), (derive, D.Laplace(16, sigma=0.5), "l1"),
    (derive, D.ExpInf(16, sigma=0.5), "l1"), (derive, D.ExpInf(16, sigma=0.5), "linf"),
    (derive, D.Exp2(16, sigma=0.5), "l2"), (derive, D.ExpP(16, p=1.5, sigma=0.5), "l1"),
    (derive_uniform, D.UniformCube(16, sigma=0.5), "l1"), (derive_uniform, D.UniformCube(16, sigma=0.5), "linf"),
    (derive_uniform, D.UniformBall(16, sigma=0.5), "l2"),
]


@pytest.mark.parametrize("provider,q,adversary", CASES, ids=lambda v: getattr(v, "name", str(v)))
@pytest.mark.parametrize("rho", [0.6, 0.9, 0.999])
def test_formula_in_plain_rho_matches_radius(provider, q, adversary, rho):
    cert = provider(q, adversary)
    assert cert.formula is not None and cert.formula.free_symbols == {RHO}
    exact = float(cert.formula.subs(RHO, rho).evalf(30))
    radius = float(cert.radius(rho))
    assert radius == pytest.approx(exact, rel=1e-6)
    assert radius <= exact * (1 + 1e-12)
    assert isinstance(cert.latex(), str) and "rho" in cert.latex()
