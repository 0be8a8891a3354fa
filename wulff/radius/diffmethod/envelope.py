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

As a radius kernel the envelope is evaluated through an :class:`~wulff.radius.numeric.IndexedTaylorTable`
of this exact integral (one lookup by the float bits of 1 - rho, one multiply-add chain): its radius is
convex (R' = 1 / Phi_up(1 - rho), R'' = c / Phi_up^2 >= 0 with c the active slope), within
:data:`~wulff.radius.numeric.TABLE_LOSS` (relative) below the integral, the integral itself where a
cell would lose more.
"""
from __future__ import annotations

import numpy as np
import torch

from wulff.radius.kernel import TABLE_P_GRID, Kernel, TangentTable  # noqa: F401  (TABLE_P_GRID, TangentTable: their old home)
from wulff.radius.numeric import ROUNDING_MARGIN, IndexedTaylorTable, Locator, OnDevice  # noqa: F401  (Locator: its old home)


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


class Envelope(Kernel):
    """Phi_up(p) = min_i (c_i p + e_i) on [0, 1/2] and the exact radius int dp / Phi_up.

    As a radius kernel (:class:`~wulff.radius.kernel.RadiusKernel`): ``unit`` and ``unit_torch`` are
    :attr:`table`, the indexed Taylor table of :meth:`radius_unit` (built at the first evaluation), with
    :meth:`radius_unit` or :meth:`radius_unit_torch` in its flagged cells.

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

    guarantee = ("proved given the lines: exact integral of an upper bound on Phi (Theorem G.6), less a "
                 "1e-10 rounding margin, read through a table of Taylor lower bounds of that convex integral "
                 "(at most 1e-9 lower, measured per cell); the lines' intercepts are float quadratures "
                 "(verified_radius recomputes them in mpmath)")

    @property
    def table(self) -> IndexedTaylorTable:
        """The indexed Taylor table of :meth:`radius_unit` (built once, at the first use)."""
        if self.__dict__.get("_table") is None:
            self._table = IndexedTaylorTable(self.radius_unit, self._lower_derivatives)
        return self._table

    def quadratic_cells(self) -> IndexedTaylorTable:
        return self.table

    def _lower_derivatives(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """At rho = 1 - p: (dR/drho, a lower bound on d2R/drho2 for every rho >= 1 - p), R = radius_unit.

        R = (1 - margin) int_{1-rho}^{1/2} dp / Phi_up, so R' = (1 - margin) / Phi_up(1 - rho) and
        R'' = (1 - margin) c(1 - rho) / Phi_up(1 - rho)^2 with c the active slope. c is nonincreasing in
        p and Phi_up nondecreasing, so at p' <= p, R'' is at least its value with the line active just
        below p (``_piece``: the number of breaks >= p) and Phi_up(p)."""
        piece = self._piece(p)
        phi = self.c[piece] * p + self.e[piece]
        keep = 1.0 - ROUNDING_MARGIN
        with np.errstate(divide="ignore"):
            return keep / phi, keep * self.c[piece] / (phi * phi)

    def _tabulated(self, rho, scale: float = 1.0):
        """The table at rho (numpy or torch) times ``scale``, :meth:`radius_unit` (or its torch twin) in
        the table's flagged cells."""
        out, missing = self.table(rho, scale)
        if missing is None:
            return out
        exact = self.radius_unit_torch if isinstance(rho, torch.Tensor) else self.radius_unit
        return self.table.settle(out, missing, exact(missing.rho), scale)

    def unit(self, rho: np.ndarray) -> np.ndarray:
        return self._tabulated(rho)

    def unit_torch(self, rho: torch.Tensor) -> torch.Tensor:
        return self._tabulated(rho)

    def scaled(self, rho, factor, lo: float | None = None):
        """The unit radius times :func:`~wulff.radius.numeric.factor_below` of the scale, as
        :meth:`Kernel.scaled <wulff.radius.kernel.Kernel.scaled>`, the multiplication done in the
        table's pass."""
        return self._tabulated(rho, self.factor(factor))

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
