"""Vectorized torch samplers for the elementary laws the distributions are built from.

Every function takes ``shape``, a ``generator`` (or None), ``device`` and ``dtype`` and draws the
whole batch with vectorized tensor operations: no Python loop over samples. Element-wise samplers
run over the output in cache-sized chunks (:func:`fill_in_chunks`): a few passes over 1 MB instead
of over the whole batch, which is what keeps Laplace noise close to the cost of torch.randn.
"""
from __future__ import annotations

import torch


def _uniform(shape, generator, device, dtype) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device, dtype=dtype)


def open_unit_uniform(shape, generator=None, device=None, dtype=torch.float32) -> torch.Tensor:
    """U(0, 1) that never returns 0 (torch.rand may): shifted by half a grid step of torch.rand."""
    half_step = torch.finfo(dtype).eps / 4
    return _uniform(shape, generator, device, dtype).add_(half_step)


def symmetric_uniform(shape, generator=None, device=None, dtype=torch.float32) -> torch.Tensor:
    """U(-1/2, 1/2) on a grid symmetric about 0 that contains neither 0 nor +-1/2.

    torch.rand returns k * 2^-m (k = 0, ..., 2^m - 1); subtracting 1/2 - 2^-(m+1) maps that grid onto
    the symmetric set (k - 2^(m-1) + 1/2) 2^-m, exactly representable in ``dtype``.
    """
    shift = 0.5 - torch.finfo(dtype).eps / 4
    return _uniform(shape, generator, device, dtype).sub_(shift)


#: elements per chunk of :func:`fill_in_chunks` on the CPU (1 MiB of float32)
CPU_CHUNK = 2 ** 18


def fill_in_chunks(shape, fill, device=None, dtype=torch.float32) -> torch.Tensor:
    """A new tensor whose flat chunks are each filled in place by ``fill(chunk)``.

    On the CPU the chunks are cache-sized, so the several element-wise passes of a sampler stay in
    cache and its temporaries are small; on an accelerator the whole tensor is one chunk.
    """
    out = torch.empty(shape, device=device, dtype=dtype)
    flat = out.view(-1)
    chunk = CPU_CHUNK if flat.device.type == "cpu" else max(flat.numel(), 1)
    for part in flat.split(chunk):
        fill(part)
    return out


def _fill_symmetric_uniform(part: torch.Tensor, generator) -> torch.Tensor:
    """In place: U(-1/2, 1/2) on the symmetric grid of :func:`symmetric_uniform`."""
    return part.uniform_(generator=generator).sub_(0.5 - torch.finfo(part.dtype).eps / 4)


def laplace(shape, generator=None, device=None, dtype=torch.float32) -> torch.Tensor:
    """Standard Laplace (density e^{-|t|}/2) by inversion: sign(u) * |log(2|u|)|, u ~ U(-1/2, 1/2).

    2|u| ~ U(0, 1) is independent of sign(u), so |log(2|u|)| ~ Exp(1) carries an independent sign.
    """
    def fill(part):
        u = _fill_symmetric_uniform(part, generator)
        part.copy_(u.abs().mul_(2.0).log_().copysign_(u))

    return fill_in_chunks(shape, fill, device, dtype)


def random_signs(shape, generator=None, device=None, dtype=torch.float32) -> torch.Tensor:
    """Independent Rademacher signs +-1."""
    return torch.randint(0, 2, shape, generator=generator, device=device, dtype=dtype).mul_(2).sub_(1)


def standard_gamma(shape, concentration: float, generator=None, device=None,
                   dtype=torch.float32) -> torch.Tensor:
    """Gamma(concentration, 1) draws by torch's own sampler (the primitive behind
    torch.distributions.Gamma, which itself takes no generator). Drawn in float64, so that small
    concentrations do not underflow to 0, then cast to ``dtype``."""
    if not concentration > 0:
        raise ValueError(f"concentration must be > 0, got {concentration}")
    alpha = torch.full(tuple(shape), float(concentration), dtype=torch.float64, device=device)
    return torch._standard_gamma(alpha, generator=generator).to(dtype)


def interpolate_inverse_cdf(u: torch.Tensor, cdf_grid: torch.Tensor, x_grid: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear inverse of a tabulated CDF: x with CDF(x) = u, for u in [0, 1]."""
    idx = torch.searchsorted(cdf_grid, u).clamp_(1, cdf_grid.numel() - 1)
    c0, c1 = cdf_grid[idx - 1], cdf_grid[idx]
    x0, x1 = x_grid[idx - 1], x_grid[idx]
    w = ((u - c0) / (c1 - c0).clamp_min(torch.finfo(u.dtype).tiny)).clamp_(0, 1)
    return x0 + w * (x1 - x0)


class SymmetricQuantileTable:
    """Fast draws of S * Y (S a random sign) from the quantile function Q of a law on (0, inf).

    Q is tabulated on the uniform grid v_i = i / M, so a draw costs one uniform, one table index and
    one linear interpolation (no search). Every cell keeps its exact mass 1/M, so the sampled law is
    within Kolmogorov distance 1/M of the exact one (and its total-variation distance is O(M^-2) where
    the density is smooth). The last cell, where Q -> inf, is sampled exactly: a draw that lands there
    gets a fresh float64 uniform inside the cell and the law's own inverse survival function.
    """

    def __init__(self, ppf, isf, cells: int = 2 ** 16):
        import numpy as np

        self.isf = isf
        self.m = int(cells)
        v = np.arange(self.m + 1) / self.m
        q = np.where(v <= 0.5, ppf(np.minimum(v, 0.5)), isf(np.minimum(1 - v, 0.5)))
        q[-1] = q[-2]  # the last cell is resampled exactly
        self._start = np.asarray(q[:-1], dtype=np.float64)
        self._slope = np.asarray(np.diff(q), dtype=np.float64)
        self._tensors: dict = {}

    def _table(self, device, dtype):
        key = (str(device), dtype)
        if key not in self._tensors:
            self._tensors[key] = (torch.as_tensor(self._start, dtype=dtype, device=device),
                                  torch.as_tensor(self._slope, dtype=dtype, device=device))
        return self._tensors[key]

    def sample_symmetric(self, shape, generator=None, device=None, dtype=torch.float32) -> torch.Tensor:
        work = torch.float64 if dtype == torch.float64 else torch.float32
        start, slope = self._table(device, work)

        def fill(part):
            u = _fill_symmetric_uniform(part, generator)  # 2|u| ~ U(0, 1), independent of sign(u)
            w = u.abs().mul_(2 * self.m)
            idx = w.long().clamp_(max=self.m - 1)
            frac = w.sub_(idx.to(work))
            y = slope.take(idx).mul_(frac).add_(start.take(idx))
            tail = (idx == self.m - 1).nonzero().squeeze(1)
            if tail.numel():
                fresh = torch.rand(tail.numel(), generator=generator, device=part.device, dtype=torch.float64)
                exact = self.isf(fresh.cpu().numpy() / self.m)
                y[tail] = torch.as_tensor(exact, dtype=work, device=part.device)
            part.copy_(y.copysign_(u))

        return fill_in_chunks(shape, fill, device, work).to(dtype)
