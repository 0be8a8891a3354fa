"""Sound numeric Phi and radius: the envelope of stop-loss lines.

For any real c, E gamma^(p) <= c p + E(gamma - c)_+ (the top-p mean of gamma, Definition G.4, is
the minimum over c of these lines, with equality at c = Q(1 - p); Rockafellar-Uryasev). So any
finite family of lines (c_i, e_i) with e_i >= E(gamma - c_i)_+ gives an *upper* bound

    Phi_up(p) = min_i (c_i p + e_i) >= Phi(p),

whatever the c_i are, and hence a *lower* bound on the radius of Theorem G.6,

    R(rho) = int_{1-rho}^{1/2} dp / Phi(p) >= int_{1-rho}^{1/2} dp / Phi_up(p),

which is integrated exactly: Phi_up is piecewise linear, and int dp / (c p + e) is a logarithm.
The c_i only decide how tight the bound is (exact for a discrete law with a line at every atom,
second order in the spacing of the lines otherwise). docs/soundness.md.
"""
from __future__ import annotations

import math

import numpy as np
import torch

#: relative margin taken off every tabulated radius to absorb floating point rounding
ROUNDING_MARGIN = 1e-10


def _log1p_ratio(x: np.ndarray) -> np.ndarray:
    """log(1 + x) / x for x >= 0 (1 at x = 0)."""
    small = x < 1e-8
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log1p(x) / x
    if small.any():
        out[small] = 1.0 - 0.5 * x[small]
    return out


def _piece_integral(c: np.ndarray, e: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """int_a^b dp / (c p + e) = (b - a) / (c a + e) * log(1 + x) / x, x = c (b - a) / (c a + e)
    (0 when a >= b; inf when c a + e = 0 < b - a). The broadcast shape of the inputs, 0-d included."""
    shape = np.broadcast(c, e, a, b).shape
    width = np.atleast_1d(np.maximum(b - a, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = width / (c * a + e)
        out = scaled * _log1p_ratio(c * scaled)
    bad = np.isnan(out)
    if bad.any():  # 0/0 (empty piece) or inf * 0
        out[bad] = np.where(np.broadcast_to(width, out.shape)[bad] == 0, 0.0, np.inf)
    return out.reshape(shape)


def _piece_integral_torch(c, e, a, b):
    """:func:`_piece_integral` on tensors (the same formula and branches)."""
    width = torch.clamp(b - a, min=0.0)
    scaled = width / (c * a + e)
    x = c * scaled
    ratio = torch.where(x < 1e-8, 1.0 - 0.5 * x, torch.log1p(x) / x)
    out = scaled * ratio
    return torch.where(torch.isnan(out), torch.where(width == 0, 0.0, torch.inf), out)


class OnDevice:
    """Constant float64 arrays copied to a torch device once (per device) and kept."""

    def __init__(self, **arrays: np.ndarray):
        #: the host copies (fresh contiguous float64 with positive strides: np.ascontiguousarray keeps
        #: a reversed view of one element as it is, stride -8, which torch cannot take)
        self.arrays = {name: np.array(value, dtype=np.float64, order="C", copy=True)
                       for name, value in arrays.items()}
        self._copies: dict = {}

    def on(self, device) -> dict:
        key = str(device)
        if key not in self._copies:
            self._copies[key] = {name: torch.as_tensor(value, device=device)
                                 for name, value in self.arrays.items()}
        return self._copies[key]


class Locator:
    """Fast np.searchsorted(a, p, side="left") for a fixed ascending a in (0, 1/2] and p in [0, 1/2].

    Buckets of equal width in log p give a first guess (never past the answer) and a few vectorized
    steps finish; 10^6 random queries cost a few array passes instead of a binary search each.
    """

    BUCKETS = 1 << 18

    def __init__(self, a: np.ndarray):
        self.a = np.ascontiguousarray(a, dtype=np.float64)
        self._padded = np.append(self.a, np.inf)
        if self.a.size == 0:
            self._steps = 0
            return
        self._lo = math.log(max(self.a[0], 1e-320))
        hi = math.log(max(self.a[-1], 1e-320)) + 1e-9
        self._scale = (self.BUCKETS - 1) / max(hi - self._lo, 1e-300)
        edges = np.exp(self._lo + np.arange(self.BUCKETS + 1) / self._scale)
        # one index of slack absorbs rounding in exp/log at the bucket edges
        self._start = np.maximum(np.searchsorted(self.a, edges[:-1], side="left") - 1, 0)
        per_bucket = np.diff(np.searchsorted(self.a, edges, side="left"))
        self._steps = int(per_bucket.max()) + 3

    def left(self, p: np.ndarray) -> np.ndarray:
        """#{a < p} for every p."""
        p = np.asarray(p, dtype=np.float64)
        if self.a.size == 0:
            return np.zeros(p.shape, dtype=np.int64)
        with np.errstate(divide="ignore"):
            bucket = (np.log(p) - self._lo) * self._scale
        j = self._start[np.clip(np.nan_to_num(bucket, neginf=0.0), 0, self.BUCKETS - 1).astype(np.int64)]
        for _ in range(self._steps):
            j += self._padded[j] < p
        return j


class Envelope:
    """Phi_up(p) = min_i (c_i p + e_i) on [0, 1/2] and the exact radius int dp / Phi_up.

    ``c`` must be >= 0 and ``e`` >= E(gamma - c)_+ (rounded up); lines that are never the minimum on
    [0, 1/2] are dropped. :attr:`breaks` are the p where the active line changes (descending).
    """

    def __init__(self, c, e, infinite_at_one: bool = False):
        self.infinite_at_one = bool(infinite_at_one)
        c = np.asarray(c, dtype=np.float64).ravel()
        e = np.asarray(e, dtype=np.float64).ravel()
        ok = np.isfinite(c) & np.isfinite(e) & (c >= 0) & (e >= 0)
        if not ok.any():
            raise ValueError("the envelope needs at least one finite line c >= 0, e >= 0")
        c, e = c[ok], e[ok]
        order = np.lexsort((e, c))  # by slope, then intercept
        self.c, self.e, self.breaks = self._lower_envelope(c[order], e[order])
        self._cumulative = self._cumulative_integrals()
        upper = np.concatenate([[0.5], self.breaks])  # right end of each line's active piece
        # one row per active line: slope, intercept, right end, J at the right end (one gather)
        self._rows = np.ascontiguousarray(np.stack([self.c, self.e, upper, self._cumulative], axis=1))
        self._locator = Locator(self.breaks[::-1])
        self._device = OnDevice(rows=self._rows, ascending=self.breaks[::-1])

    @staticmethod
    def _lower_envelope(c, e):
        """Active lines of min_i (c_i p + e_i) on [0, 1/2], from p = 1/2 (small slope) to p = 0.

        Lines come sorted by slope. A steeper line with a larger intercept is above the last kept
        one everywhere on p >= 0; otherwise it takes over below their crossing, and kept lines whose
        active interval becomes empty (or lies beyond p = 1/2) are dropped.
        """
        keep_c, keep_e, breaks = [], [], []
        for ci, ei in zip(c, e):
            while keep_c:
                if ei >= keep_e[-1]:
                    break
                cross = (keep_e[-1] - ei) / (ci - keep_c[-1])
                if cross >= 0.5 or (breaks and cross >= breaks[-1]):
                    keep_c.pop(), keep_e.pop()
                    if breaks:
                        breaks.pop()
                    continue
                break
            if keep_c and ei >= keep_e[-1]:
                continue
            if keep_c:
                breaks.append((keep_e[-1] - ei) / (ci - keep_c[-1]))
            keep_c.append(ci), keep_e.append(ei)
        return np.array(keep_c), np.array(keep_e), np.array(breaks)

    def _cumulative_integrals(self) -> np.ndarray:
        """J at the breaks: J_k = int_{breaks[k]}^{1/2} dp / Phi_up (J_{-1} = 0 at p = 1/2)."""
        upper = np.concatenate([[0.5], self.breaks])
        pieces = _piece_integral(self.c[:-1], self.e[:-1], self.breaks, upper[:-1]) if self.breaks.size else []
        return np.concatenate([[0.0], np.cumsum(pieces)])

    def Phi(self, p) -> np.ndarray:
        """Phi_up(p), an upper bound on Phi(p) of Definition G.4 (numpy, vectorized)."""
        p = np.asarray(p, dtype=np.float64)
        return np.min(self.c[:, None] * p.ravel()[None, :] + self.e[:, None], axis=0).reshape(p.shape) \
            if self.c.size < 64 else self._phi_by_piece(p)

    def _phi_by_piece(self, p):
        k = self._piece(p)
        return self.c[k] * p + self.e[k]

    def _piece(self, p: np.ndarray) -> np.ndarray:
        """Index of the active line at p (breaks are descending)."""
        if p.size <= 4:  # a few values (a scalar call): a binary search each beats the bucket setup
            return self.breaks.size - np.searchsorted(self._device.arrays["ascending"], p, side="left")
        return self.breaks.size - self._locator.left(p)  # #{breaks >= p}

    def integral(self, p0) -> np.ndarray:
        """int_{p0}^{1/2} dp / Phi_up(p) for p0 in [0, 1/2] (inf when Phi_up(0) = 0 and p0 = 0)."""
        p0 = np.asarray(p0, dtype=np.float64)
        c, e, upper, cumulative = self._rows[self._piece(p0)].T
        return cumulative + _piece_integral(c, e, p0, upper)

    def radius_unit(self, rho) -> np.ndarray:
        """The sound radius at lam = 1 for rho in (1/2, 1] (Theorem G.6 with Phi_up)."""
        rho = np.asarray(rho, dtype=np.float64)
        p0 = np.clip(1.0 - rho, 0.0, 0.5)
        out = self.integral(p0) * (1.0 - ROUNDING_MARGIN)
        if self.infinite_at_one:  # proved divergent at p0 = 0 (the lines only see p >= P_FLOOR)
            out = np.where(p0 == 0.0, np.inf, out)
        return out

    def Phi_torch(self, p: torch.Tensor) -> torch.Tensor:
        """:meth:`Phi` on p's device: the active line at each p."""
        const = self._device.on(p.device)
        piece = self.breaks.size - torch.searchsorted(const["ascending"], p, side="left")
        c, e = const["rows"][piece][..., 0], const["rows"][piece][..., 1]
        return c * p + e

    def radius_unit_torch(self, rho: torch.Tensor) -> torch.Tensor:
        """:meth:`radius_unit` on rho's device: the active piece by ``torch.searchsorted``."""
        const = self._device.on(rho.device)
        p0 = torch.clamp(1.0 - rho, 0.0, 0.5)
        piece = self.breaks.size - torch.searchsorted(const["ascending"], p0, side="left")
        c, e, upper, cumulative = const["rows"][piece].unbind(-1)
        out = (cumulative + _piece_integral_torch(c, e, p0, upper)) * (1.0 - ROUNDING_MARGIN)
        if self.infinite_at_one:
            out = torch.where(p0 == 0.0, torch.inf, out)
        return out

    def to_payload(self) -> dict:
        return {"c": self.c, "e": self.e, "infinite_at_one": self.infinite_at_one}

    @classmethod
    def from_payload(cls, payload: dict) -> Envelope:
        return cls(payload["c"], payload["e"], payload.get("infinite_at_one", False))


#: p = 1 - rho where slow closed forms are tabulated (:class:`TangentTable`)
TABLE_P_GRID = np.unique(np.concatenate([np.linspace(1e-3, 0.5, 3000), np.geomspace(1e-14, 0.5, 16000),
                                         np.geomspace(1e-300, 1e-14, 300)]))


class TangentTable:
    """A sound fast evaluation of a closed-form radius R(rho) whose formula is slow to evaluate.

    R is convex in rho: R'(rho) = 1 / Phi(1 - rho) increases with rho because Phi is nondecreasing on
    [0, 1/2] (Remark G.5). So every tangent lies below R, and between grid points rho_i < rho_{i+1}

        R(rho) >= max(R_i + R'_i (rho - rho_i), R_{i+1} - R'_{i+1} (rho_{i+1} - rho)),

    with R_i rounded down and the slopes rounded toward the safe side (Algorithm 2's "round rho down",
    refined by the slope). Outside the grid the formula itself is used. Tabulated in p = 1 - rho.

    Monotone in rho, rounding included: the tabulated values are made nonincreasing in p (each
    replaced by the smallest value at a smaller p, which only lowers them: the true R decreases in p,
    and a formula's last-digit noise need not), and between the grid rhos 1 - p[j] < 1 - p[j-1] the
    larger tangent is capped at values[j-1]. Each tangent is a chain of correctly rounded monotone
    operations in p0, so the table is nondecreasing within a cell, lies in [values[j], values[j-1]]
    there, and is hence nondecreasing across cells too.
    """

    def __init__(self, radius_unit, Phi, p_grid: np.ndarray):
        p = np.unique(np.asarray(p_grid, dtype=float))  # ascending p = descending rho
        p = np.unique(1.0 - (1.0 - p))  # p exactly 1 - rho for a float rho (as the queries will be)
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.asarray(radius_unit(1.0 - p), dtype=float) * (1.0 - ROUNDING_MARGIN)
            slope = 1.0 / np.asarray(Phi(p), dtype=float)
        ok = np.isfinite(values) & np.isfinite(slope) & (slope > 0)
        self.p, self.values, self.slope = p[ok], np.minimum.accumulate(values[ok]), slope[ok]
        self._locator = Locator(self.p)
        self._formula = radius_unit
        self._device = OnDevice(p=self.p, values=self.values, slope=self.slope)

    def __call__(self, rho) -> np.ndarray:
        rho = np.asarray(rho, dtype=float)
        p0 = 1.0 - rho
        # p[j-1] < p0 <= p[j]: rho between the grid rhos 1 - p[j] <= rho < 1 - p[j-1]
        j = np.searchsorted(self.p, p0, side="left") if p0.size <= 4 else self._locator.left(p0)
        inside = (j > 0) & (j < self.p.size)
        if inside.all():
            return self._between(j, p0)
        out = np.empty(rho.shape)
        out[~inside] = np.asarray(self._formula(rho[~inside]), dtype=float) * (1.0 - ROUNDING_MARGIN)
        out[inside] = self._between(j[inside], p0[inside])
        return out

    def _tangents(self, j, p0, table=None):
        """(left, right, their slopes): the tangents at the left grid rho (p[j]) and the right grid rho
        (p[j-1]) at p0, slopes rounded to the safe side; numpy, or torch with ``table`` the tensors
        of p, values and slope."""
        p, values, slope = (self.p, self.values, self.slope) if table is None else \
            (table["p"], table["values"], table["slope"])
        left_slope, right_slope = slope[j] * (1.0 - ROUNDING_MARGIN), slope[j - 1] * (1.0 + ROUNDING_MARGIN)
        return values[j] + left_slope * (p[j] - p0), values[j - 1] - right_slope * (p0 - p[j - 1]), \
            left_slope, right_slope

    def _between(self, j, p0, table=None):
        """The larger of the two tangents, capped at the value of the larger grid rho (numpy, or
        torch with ``table``)."""
        left, right, _, _ = self._tangents(j, p0, table)
        if table is None:
            return np.minimum(np.maximum(left, right), self.values[j - 1])
        return torch.minimum(torch.maximum(left, right), table["values"][j - 1])

    def slope_torch(self, rho: torch.Tensor) -> torch.Tensor:
        """d/drho of the tabulated radius on rho's device: the slope of the tangent that wins."""
        table = self._device.on(rho.device)
        p0 = 1.0 - rho
        j = torch.clamp(torch.searchsorted(table["p"], p0, side="left"), 1, self.p.size - 1)
        left, right, left_slope, right_slope = self._tangents(j, p0, table)
        return torch.where(left >= right, left_slope, right_slope)

    def torch(self, rho: torch.Tensor) -> torch.Tensor:
        """The table on rho's device; the few rho outside it (next to 1) by the formula on the host."""
        table = self._device.on(rho.device)
        p0 = 1.0 - rho
        j = torch.searchsorted(table["p"], p0, side="left")
        inside = (j > 0) & (j < self.p.size)
        out = self._between(torch.clamp(j, 1, self.p.size - 1), p0, table)
        if not bool(inside.all()):
            host = self(rho[~inside].cpu().numpy())
            out[~inside] = torch.as_tensor(host, dtype=torch.float64, device=rho.device)
        return out
