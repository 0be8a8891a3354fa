"""What training and certification share about the smoothed classifier's forward pass: noisy copies
of a batch, the base classifier's logits on them, the soft smoothed classifier

    G(x)_c = E_delta softmax(f(x + delta))_c,   estimated by the mean over m noise draws

(Salman et al., 2019, Section 3), and projected gradient ascent (PGD) on it. It sits beside the
noises (:mod:`wulff.distributions`, :mod:`wulff.splitting`) and below both :mod:`wulff.certify` (the
attack, :mod:`wulff.certify.attack`) and :mod:`wulff.train` (the objectives, SmoothAdv's inner attack),
so neither imports the other for it.

PGD maximizes -log G(x')_y over ||x' - x||_p <= eps for p in {1, 2, inf}. Each step moves by
``step_size`` (default 2 eps / steps, as in the reference code of Yang et al., 2020) along

* linf: sign(grad);
* l2: grad / ||grad||_2;
* l1: the sign of the largest 1/16 of the gradient's coordinates (those with |grad_i| at or above its
  (15 d / 16)-th smallest magnitude), scaled to l1 norm 1 -- the sparse step of the reference code,
  since the plain l1-steepest step moves one coordinate at a time;

then projects the perturbation back onto the eps-ball (l1: the sorting projection of Duchi et al.,
2008, Fig. 1) and, when ``clamp`` is given, the point onto the data range. An attack only shows that a
radius is *not* larger than some value: it certifies nothing.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from wulff.certificate import check_adversary
from wulff.distributions import Distribution
from wulff.splitting import SplittingNoise


def noisy_inputs(q: Distribution | SplittingNoise, x: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """x + delta with one fresh delta ~ q per example; for DSSN noise the splitting transform
    T(x, s) at one uniform offset per example (:meth:`wulff.splitting.SplittingNoise.random_offsets`),
    the distribution its certificate averages over."""
    if isinstance(q, SplittingNoise):  # the one non-additive noise: a transform, not x + delta
        return q.random_offsets(x, generator)
    noise = q.sample(x.shape[0], generator=generator, device=x.device, dtype=x.dtype)
    return x + noise.view_as(x)


def draw_noise(q: Distribution, samples: int, batch: int, generator: torch.Generator | None,
               device, dtype) -> torch.Tensor:
    """``samples`` noise draws for each of ``batch`` inputs, shape (samples, batch, d)."""
    noise = q.sample(samples * batch, generator=generator, device=device, dtype=dtype)
    return noise.view(samples, batch, q.d)


def noisy_logits(model, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Logits of f(x + delta_j) for every draw j, shape (m, B, C), from one forward pass of m B inputs
    (one pass, so a DistributedDataParallel model sees one forward per backward)."""
    m, batch = noise.shape[:2]
    inputs = (x.unsqueeze(0) + noise.view(m, *x.shape)).reshape(m * batch, *x.shape[1:])
    logits = model(inputs)
    return logits.view(m, batch, -1)


def full_precision(logits: torch.Tensor) -> torch.Tensor:
    """Logits in float32 at least (half-precision ones from autocast are promoted; float64 stays)."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def soft_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """log G = log of the mean over draws (dim 0) of softmax(logits), computed stably, shape (B, C)."""
    return torch.logsumexp(F.log_softmax(full_precision(logits), dim=-1), dim=0) - math.log(logits.shape[0])


def ascent_direction(grad: torch.Tensor, adversary: str) -> torch.Tensor:
    """The step direction for a batch of flattened gradients (B, d), of unit norm in the adversary's
    norm (zero where the gradient is zero)."""
    if adversary == "linf":
        return grad.sign()
    if adversary == "l2":
        return grad / (grad.norm(dim=1, keepdim=True) + 1e-12)
    d = grad.shape[1]
    k = max(1, (d * 15) // 16)
    threshold = grad.abs().kthvalue(k, dim=1, keepdim=True).values
    sparse = torch.where(grad.abs() >= threshold, grad.sign(), torch.zeros_like(grad))
    return sparse / sparse.abs().sum(dim=1, keepdim=True).clamp_min(1.0)


def project(delta: torch.Tensor, eps: torch.Tensor, adversary: str) -> torch.Tensor:
    """Euclidean projection of each row of ``delta`` (B, d) onto the ball of radius eps (B, 1) of the
    adversary's norm; l1 by the sorting algorithm of Duchi et al. (2008, Fig. 1)."""
    if adversary == "linf":
        return torch.maximum(torch.minimum(delta, eps), -eps)
    if adversary == "l2":
        norm = delta.norm(dim=1, keepdim=True)
        return delta * torch.where(norm > eps, eps / norm.clamp_min(1e-30), torch.ones_like(norm))
    magnitude = delta.abs()
    inside = magnitude.sum(dim=1, keepdim=True) <= eps
    mu = magnitude.sort(dim=1, descending=True).values
    cumsum = mu.cumsum(dim=1)
    arange = torch.arange(1, delta.shape[1] + 1, device=delta.device, dtype=delta.dtype)
    count = ((mu * arange > cumsum - eps) * arange).amax(dim=1, keepdim=True).clamp_min(1)
    theta = (cumsum.gather(1, count.long() - 1) - eps) / count
    projected = (magnitude - theta).clamp_min(0) * delta.sign()
    return torch.where(inside, delta, projected)


def pgd_smoothed(model, q: Distribution, x: torch.Tensor, y: torch.Tensor, eps, adversary: str, *,
                 steps: int = 20, samples: int = 16, step_size: float | None = None,
                 clamp: tuple[float, float] | None = None, generator: torch.Generator | None = None,
                 noise: torch.Tensor | None = None) -> torch.Tensor:
    """The attacked batch x' (detached), ||x' - x|| <= eps in the adversary's norm, found by ``steps``
    PGD steps on -log G(x')_y with G the soft smoothed classifier over ``samples`` noise draws.

    ``eps`` is a number or a tensor with one value per input. New noise is drawn at every step (an
    expectation-over-transformation attack) unless ``noise`` (shape (samples, B, d), from
    :func:`draw_noise`) is given: then those draws serve every step (as SmoothAdv training does).
    Only input gradients are taken: the model's parameter gradients are left untouched.
    """
    adversary = check_adversary(adversary)
    steps = int(steps)
    if steps < 1 or int(samples) < 1:
        raise ValueError(f"steps and samples must be positive integers; got steps = {steps}, samples = {samples}")
    batch = x.shape[0]
    eps_column = torch.as_tensor(eps, dtype=torch.float32, device=x.device).reshape(-1, 1).expand(batch, 1)
    if bool((eps_column < 0).any()) or not bool(torch.isfinite(eps_column).all()):
        raise ValueError(f"eps must be finite and >= 0; got {eps}")
    x = x.detach()
    if bool((eps_column == 0).all()):
        return x.clone()
    eps_column = eps_column.to(x.dtype)
    step = eps_column * 2.0 / steps if step_size is None else torch.full_like(eps_column, float(step_size))
    flat_x = x.reshape(batch, -1)
    delta = torch.zeros_like(flat_x)
    for _ in range(steps):
        draws = noise if noise is not None else draw_noise(q, int(samples), batch, generator, x.device, x.dtype)
        delta.requires_grad_(True)
        with torch.enable_grad():
            point = (flat_x + delta).view_as(x)
            loss = F.nll_loss(soft_log_probs(noisy_logits(model, point, draws)), y, reduction="sum")
            grad, = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta = project(delta + step * ascent_direction(grad.to(x.dtype), adversary),
                            eps_column, adversary)
            if clamp is not None:
                delta = (flat_x + delta).clamp(*clamp) - flat_x
    return (flat_x + delta.detach()).view_as(x)
