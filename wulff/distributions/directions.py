"""Directions V drawn from the cone measure of the unit sphere of the l1, l2 or linf norm.

With R drawn from the radius law, R * V has density ∝ exp(-g(||x||)) (Lemma U.3).

* l2: a normalized standard Gaussian vector;
* l1: random signs times Dirichlet(1, ..., 1) (normalized standard exponentials);
* linf: one uniformly chosen coordinate set to +-1, the others U[-1, 1].
"""
from __future__ import annotations

import torch

from .sampling import random_signs, symmetric_uniform


def sample_direction(norm, n: int, d: int, generator=None, device=None, dtype=torch.float32) -> torch.Tensor:
    """n directions in R^d from the cone measure of the unit sphere of ``norm`` (1, 2 or "inf")."""
    if norm == 2:
        v = torch.randn((n, d), generator=generator, device=device, dtype=dtype)
        return v.div_(torch.linalg.vector_norm(v, dim=1, keepdim=True).clamp_min(torch.finfo(dtype).tiny))
    if norm == 1:
        u = symmetric_uniform((n, d), generator, device, dtype)  # |2u| ~ U(0,1) independent of sign(u)
        e = u.abs().mul_(2.0).log_().neg_()  # standard exponentials
        return e.div_(e.sum(dim=1, keepdim=True)).copysign_(u)
    if norm == "inf":
        v = symmetric_uniform((n, d), generator, device, dtype).mul_(2.0)
        face = torch.randint(0, d, (n, 1), generator=generator, device=device)
        v.scatter_(1, face, random_signs((n, 1), generator, device, dtype))
        return v
    raise ValueError(f"norm must be one of 1, 2, 'inf'; got {norm!r}")


def mean_squared_l2(norm, d: int) -> float:
    """E ||V||_2^2 for V from the cone measure of the unit ``norm`` sphere in R^d.

    l2: 1. l1: d E[W_1^2] = 2 / (d + 1) for W ~ Dirichlet(1, ..., 1). linf: 1 + (d - 1) / 3.
    """
    if norm == 2:
        return 1.0
    if norm == 1:
        return 2.0 / (d + 1)
    if norm == "inf":
        return 1.0 + (d - 1) / 3.0
    raise ValueError(f"norm must be one of 1, 2, 'inf'; got {norm!r}")
