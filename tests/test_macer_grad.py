"""MACER's radius term is differentiable through wulff.certified_radius (a torch tensor rho in, a
radius carrying dR/drho out): the derivative against the closed forms, and the term's gradient in the
logits against central differences."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm

import wulff.distributions as D
from wulff.train.objectives import _radius, macer_radius_term

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("family, adversary, derivative", [
    ("Gaussian", "l2", lambda rho, q: q.lam / norm.pdf(norm.ppf(rho))),   # R = lam Phi^-1(rho)
    ("UniformCube", "l1", lambda rho, q: 2 * q.lam + 0 * rho),             # R = 2 lam (rho - 1/2)
    ("Laplace", "l1", lambda rho, q: q.lam / (1 - rho)),                   # R = -lam log(2 (1 - rho))
])
def test_the_radius_used_by_macer_has_the_derivative_of_the_certified_radius(family, adversary, derivative):
    q = getattr(D, family)(6, sigma=0.5)
    rho = torch.tensor([0.6, 0.8, 0.95], dtype=torch.float64, requires_grad=True)
    radius = _radius(q, rho, adversary)
    assert radius.requires_grad
    radius.sum().backward()
    np.testing.assert_allclose(rho.grad.numpy(), derivative(rho.detach().numpy(), q), rtol=1e-3)


@pytest.mark.parametrize("family, adversary", [("Gaussian", "l2"), ("UniformCube", "l1"), ("Laplace", "l1")])
def test_macer_radius_term_gradient_matches_finite_differences(family, adversary):
    q = getattr(D, family)(6, sigma=0.5)
    logits = torch.tensor([[[2.0, 0.0, 0.0], [1.0, 0.5, 0.0]]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 0])
    term = macer_radius_term(logits, y, q, adversary, beta=1.0, gamma=8.0)
    grad, = torch.autograd.grad(term, logits)
    assert grad.abs().sum() > 0  # the radius itself pushes the logits, not only the cross-entropy
    h = 1e-5
    for index in [(0, 0, 0), (0, 1, 1)]:
        bumped = logits.detach().clone()
        bumped[index] += h
        lower = logits.detach().clone()
        lower[index] -= h
        numeric = (float(macer_radius_term(bumped, y, q, adversary, 1.0, 8.0))
                   - float(macer_radius_term(lower, y, q, adversary, 1.0, 8.0))) / (2 * h)
        assert float(grad[index]) == pytest.approx(numeric, rel=1e-3, abs=1e-6)
