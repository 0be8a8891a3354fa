"""The radius-kernel contract: what a certificate engine hands to :class:`~wulff.radius.certificate.Certificate`.

A kernel evaluates one radius R(rho) of Theorem G.6 (differential method), Theorem T.1 (level sets)
or Theorems N.3, N.6, S.1 (uniform noise) on rho in (1/2, 1], numpy and torch alike, and declares
what the certificate may rely on. The certificate does everything else once: the checks of rho, the
abstention at rho <= 1/2, the scale lam and the norm conversion C, the output checks, the flush of
subnormal radii and the cast of a tensor toward zero.

Kernels: :class:`FunctionKernel` (plain functions), :class:`TangentTable` (a convex closed form
tabulated, here because two engines use it), ``GuardedClosedForm`` (``wulff.radius.diffmethod.derive``),
``Envelope`` (``wulff.radius.diffmethod.envelope``), ``Multiple`` (``wulff.radius.uniform``),
``TableLookup`` (``wulff.radius.levelset.spherical``) and the pointwise maximum of certificates
(``wulff.radius.certificate.Maximum``).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
import sympy as sp
import torch

from .numeric import ROUNDING_MARGIN, IndexedTaylorTable, Locator, OnDevice, StepCells, exact_scale, factor_below

#: the scale a kernel applies: 1 (none), or the pair (lam, C) of the exact scale lam and the exact
#: norm-conversion constant C (the radius is lam R_unit / C)
Factor = int | tuple[float, sp.Expr]


@runtime_checkable
class RadiusKernel(Protocol):
    """The contract of a radius kernel (see the module docstring).

    * ``unit(rho)``: the radius at unit scale (lam = 1, C = 1) of a float64 array of rho in (1/2, 1];
    * ``scaled(rho, factor, lo)``: lam R_unit(rho) / C rounded toward zero, a fresh float64 array for
      a numpy rho and a float64 tensor on rho's device for a tensor (``lo``: min(rho), when known);
      values below 2^-1020 and negative ones are the certificate's to flush;
    * ``has_torch``: whether ``scaled`` evaluates a tensor on its device (else the host is used);
    * ``finite_above_half``: *proved*: every unit radius on (1/2, 1] lies between 2^-53 / d and 2 in
      magnitude, so the certificate skips its output checks there (NaN, inf, underflow);
    * ``guarantee``: what is proved and what is estimated about the float values (one line);
    * ``slope_unit`` / ``slope_unit_torch``: dR/drho at unit scale, or None (the certificate then
      derives it from Phi, Theorem G.6, or takes a central difference).
    """

    finite_above_half: bool
    guarantee: str
    slope_unit: Callable | None
    slope_unit_torch: Callable | None

    @property
    def has_torch(self) -> bool: ...

    def unit(self, rho: np.ndarray) -> np.ndarray: ...

    def scaled(self, rho, factor: Factor, lo: float | None = None): ...


class Kernel:
    """The common part of the kernels: ``scaled`` as the unit radius times :func:`factor_below` of the
    exact scale (one multiplication, rounded toward zero), from ``unit`` and ``unit_torch``. Kernels
    that fold the scale into their own arithmetic override ``scaled``."""

    finite_above_half = False
    guarantee = "estimated: float64 evaluation of the radius (no stated bound)"
    slope_unit: Callable | None = None
    slope_unit_torch: Callable | None = None

    def unit(self, rho: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def quadratic_cells(self) -> IndexedTaylorTable | None:
        """The :class:`~wulff.radius.numeric.IndexedTaylorTable` this kernel's ``scaled`` reads (its values
        times the scale, its flagged cells evaluated otherwise), or None. A pointwise maximum reads it
        together with the other candidates (:class:`~wulff.radius.certificate.Maximum`)."""
        return None

    def step_cells(self, anchor: np.ndarray, far: np.ndarray, scale: float) -> StepCells | None:
        """This kernel's ``scaled`` radius, when it is a step function of rho (and terms bounded on each
        cell), on the cells u in [far, anchor) of an indexed table (rows 1 .. n; row 0 is rho = 1, the last
        row rho <= 1/2): a :class:`~wulff.radius.numeric.StepCells`; None: not a step function."""
        return None

    def __call__(self, rho) -> np.ndarray:
        """The unit radius of rho (any array-like)."""
        return self.unit(np.asarray(rho, dtype=np.float64))

    def unit_torch(self, rho: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no torch evaluation")

    @property
    def has_torch(self) -> bool:
        return type(self).unit_torch is not Kernel.unit_torch

    def factor(self, factor: Factor) -> float:
        """The float of :func:`factor_below` for ``factor`` (kept per factor)."""
        known = self.__dict__.setdefault("_factors", {})
        if factor not in known:
            known[factor] = factor_below(exact_scale(factor))
        return known[factor]

    def scaled(self, rho, factor: Factor, lo: float | None = None):
        f = self.factor(factor)
        if isinstance(rho, torch.Tensor):
            unit = self.unit_torch(rho).to(torch.float64)
            return unit * f if f != 1.0 else unit
        unit = np.asarray(self.unit(rho), dtype=np.float64)
        if unit.shape != rho.shape:  # a function that returns 1-d for a 0-d rho, or a constant
            unit = np.array(unit.reshape(rho.shape) if unit.size == rho.size else np.broadcast_to(unit, rho.shape))
        elif unit.base is not None or not unit.flags.writeable or np.may_share_memory(unit, rho):
            return unit * f if f != 1.0 else unit.copy()
        if f != 1.0:
            unit *= f
        return unit


class FunctionKernel(Kernel):
    """A kernel from plain functions: ``unit`` (numpy) and, optionally, ``unit_torch``."""

    def __init__(self, unit: Callable[[np.ndarray], np.ndarray],
                 unit_torch: Callable[[torch.Tensor], torch.Tensor] | None = None, *,
                 slope_unit: Callable | None = None, slope_unit_torch: Callable | None = None,
                 guarantee: str | None = None):
        self._unit, self._unit_torch = unit, unit_torch
        self.slope_unit, self.slope_unit_torch = slope_unit, slope_unit_torch
        if guarantee is not None:
            self.guarantee = guarantee

    def unit(self, rho: np.ndarray) -> np.ndarray:
        return self._unit(rho)

    def unit_torch(self, rho: torch.Tensor) -> torch.Tensor:
        if self._unit_torch is None:
            return super().unit_torch(rho)
        return self._unit_torch(rho)

    @property
    def has_torch(self) -> bool:
        return self._unit_torch is not None


def as_kernel(radius_unit, radius_unit_torch=None) -> Kernel:
    """``radius_unit`` itself when it is a kernel (and no separate torch function is given), else the
    two functions as a :class:`FunctionKernel`."""
    if radius_unit_torch is None and isinstance(radius_unit, RadiusKernel):
        return radius_unit
    return FunctionKernel(radius_unit, radius_unit_torch)


#: mantissa bits of the indexed table of a :class:`TangentTable` with a concave Phi (each of its
#: 52 * 2^12 cells evaluates the slow formula three times when the table is built: 0.1-0.4 s, once;
#: with 11 bits, cells of ExpP's table beyond rho = 0.51 lost more than the stated loss)
TANGENT_TABLE_BITS = 12
#: a curvature from secants of Phi is taken times 1 - this (it absorbs Phi's float error, amplified by
#: the difference of two close values; the curvature term is at most ~1e-7 of the radius)
SECANT_MARGIN = 1e-6

#: p = 1 - rho where slow closed forms are tabulated (:class:`TangentTable`)
TABLE_P_GRID = np.unique(np.concatenate([np.linspace(1e-3, 0.5, 3000), np.geomspace(1e-14, 0.5, 16000),
                                         np.geomspace(1e-300, 1e-14, 300)]))


class TangentTable(Kernel):
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

    With ``concave_Phi`` (Phi of Definition G.4 is concave: Phi' is the quantile of gamma, nonincreasing
    in p) the radius is read from an :class:`~wulff.radius.numeric.IndexedTaylorTable` of the formula
    (:attr:`indexed`, built at the first evaluation; no search), whose curvature R'' = Phi' / Phi^2 is
    bounded below on a cell [m, m'] of p by the secant of Phi over the next cell [m', m''] (by concavity
    it is at most Phi'(m') <= Phi'(p)) over Phi(m')^2; its flagged cells (next to rho = 1/2) are the
    tangents above, clipped. Within 1e-9 of the formula elsewhere; like the tangents, it may lie above
    the formula's shaved float value where that is far below R (the guard's tangent at 1/2 just below
    its threshold), never above R given the formula's value at the anchors and Phi.
    """

    guarantee = ("proved below the tabulated formula (tangents, or Taylor bounds by concavity of Phi, of a "
                 "convex radius); the formula's own float error as its kernel states")

    def __init__(self, radius_unit, Phi, p_grid: np.ndarray, *, concave_Phi: bool = False):
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
        self._Phi, self.concave_Phi = Phi, bool(concave_Phi)

    @property
    def indexed(self) -> IndexedTaylorTable | None:
        """The indexed Taylor table of the formula (with ``concave_Phi``; built once, at the first use)."""
        if self.concave_Phi and self.__dict__.get("_indexed") is None:
            self._indexed = IndexedTaylorTable(self._shaved_formula, self._lower_derivatives,
                                               bits=TANGENT_TABLE_BITS)
        return self.__dict__.get("_indexed")

    def _shaved_formula(self, rho: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(self._formula(rho), dtype=float) * (1.0 - ROUNDING_MARGIN)

    def _lower_derivatives(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(R', a lower bound on R'' on each cell) at the cells' anchors p (ascending, the last 1/2): R' =
        1 / Phi(p) and the secant of the concave Phi to the next anchor over Phi(p)^2 (0 at p = 1/2),
        with the margins of the tabulated values."""
        with np.errstate(divide="ignore", invalid="ignore"):
            phi = np.asarray(self._Phi(p), dtype=float)
            secant = np.append(np.diff(phi) / np.diff(p), 0.0)
            keep = 1.0 - ROUNDING_MARGIN
            return keep / phi, np.maximum(secant, 0.0) * (keep * (1.0 - SECANT_MARGIN)) / (phi * phi)

    def __call__(self, rho) -> np.ndarray:
        rho = np.asarray(rho, dtype=float)
        return self._on_grid(rho) if self.indexed is None else self._tabulated(rho)

    def _tabulated(self, rho, scale: float = 1.0):
        """The indexed table at rho (numpy or torch) times ``scale``, the grid tangents in its flagged
        cells."""
        out, missing = self.indexed(rho, scale)
        if missing is None:
            return out
        grid = self._on_grid_torch if isinstance(rho, torch.Tensor) else self._on_grid
        return self.indexed.settle(out, missing, grid(missing.rho), scale)

    def quadratic_cells(self) -> IndexedTaylorTable | None:
        return self.indexed

    def scaled(self, rho, factor: Factor, lo: float | None = None):
        """:meth:`Kernel.scaled`; with the indexed table, the multiplication done in the table's pass."""
        if self.indexed is None:
            return super().scaled(rho, factor, lo)
        return self._tabulated(rho, self.factor(factor))

    def _on_grid(self, rho: np.ndarray) -> np.ndarray:
        """The tangents of the grid at rho (the formula outside the grid)."""
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

    def unit(self, rho: np.ndarray) -> np.ndarray:
        return self(rho)

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
        return self._on_grid_torch(rho) if self.indexed is None else self._tabulated(rho)

    def _on_grid_torch(self, rho: torch.Tensor) -> torch.Tensor:
        """:meth:`_on_grid` on rho's device."""
        table = self._device.on(rho.device)
        p0 = 1.0 - rho
        j = torch.searchsorted(table["p"], p0, side="left")
        inside = (j > 0) & (j < self.p.size)
        out = self._between(torch.clamp(j, 1, self.p.size - 1), p0, table)
        if not bool(inside.all()):
            host = self(rho[~inside].cpu().numpy())
            out[~inside] = torch.as_tensor(host, dtype=torch.float64, device=rho.device)
        return out

    def unit_torch(self, rho: torch.Tensor) -> torch.Tensor:
        return self.torch(rho)
