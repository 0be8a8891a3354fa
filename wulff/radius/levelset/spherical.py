"""The level set certificate for densities with spherical level sets against the l2 adversary
(Section 4.1, Appendix T: Theorem T.1, Examples T.2 and T.3, Algorithms 1 and 2)."""
from __future__ import annotations

import numpy as np
import torch

from wulff.cache import cached, check_not_above, spot_rows
from wulff.distributions import Distribution, Radial
from wulff.radius.certificate import Certificate, check_adversary
from wulff.radius.kernel import Kernel
from wulff.radius.numeric import Locator, StepCells

from .shifts import shift_of
from .table import (
    GRID_RATIO,
    LOW_D_RADIUS_MARGIN,
    MAX_HALF_NODES,
    SMOOTH_SPHERE_D,
    TABLE_VERSION,
    build_table,
    initial_half_nodes,
    lookup,
    table_on,
    tail_bound,
    tangent_slope,
)
from .verified import LevelSetVerifier


class TableLookup(Kernel):
    """The radius kernel of a level-set table: Algorithm 2's lookup (:func:`~.table.lookup`), inf at
    rho = 1, numpy or on a device (the table copied there once)."""

    guarantee = ("proved given the table: rho rounded down to the grid (Algorithm 2); the table's p_i are "
                 "quadratures with their error bounds subtracted (Algorithm 1)")

    def __init__(self, table: dict):
        self.table = table
        self._on_device: dict = {}
        self._locator = Locator(np.ascontiguousarray(np.asarray(table["p"], dtype=np.float64)[::-1]))

    def unit(self, rho: np.ndarray) -> np.ndarray:
        return np.where(rho >= 1.0, np.inf, lookup(self.table, rho, self._locator))

    def step_cells(self, anchor: np.ndarray, far: np.ndarray, scale: float) -> StepCells:
        """Algorithm 2's lookup on the cells u = 1 - rho in [far, anchor) (:meth:`Kernel.step_cells
        <wulff.radius.kernel.Kernel.step_cells>`), each value times ``scale`` as :meth:`scaled` does.

        With c(u) = #{p_i >= u}, the table's value is radii[c(u) - 1] (0 when c(u) = 0), nonincreasing in
        u. On a cell it is radii[c(anchor) - 1] above the largest p_i of the cell and one row up at or
        below it: that p_i is the cell's threshold, and one row up is the value of the cell before
        (whose anchor is this cell's far end); radii[c(far) - 1] is the largest. Exact (left to the
        caller) are the cells holding two p_i or more, and the first cell if it holds one (the row before
        is rho = 1). The lookup's other term, the tangent bound (rho - 1/2) / slope (next to rho = 1/2), is
        (1/2 - anchor + t) / slope at rho = 1 - anchor + t (rho - 1/2 is exact in floats, the division
        and the scale round it by an ulp each): the ceiling, with a relative 2^-49 for those roundings."""
        p_ascending, radii = self._locator.a, np.asarray(self.table["radii"], dtype=np.float64)
        n = p_ascending.size

        def steps(count: np.ndarray) -> np.ndarray:  # radii[count - 1], 0 for count = 0, at the scale
            unit = np.where(count > 0, radii[np.maximum(count - 1, 0)], 0.0)
            return unit * scale if scale != 1.0 else unit  # as Kernel.scaled multiplies

        above_anchor = n - np.searchsorted(p_ascending, anchor, side="left")  # c(anchor)
        above_far = n - np.searchsorted(p_ascending, far, side="left")  # c(far)
        inside = above_far - above_anchor
        threshold = np.where(inside == 1, p_ascending[np.clip(n - above_anchor - 1, 0, n - 1)], -np.inf)
        rate = scale / float(self.table["slope"]) * (1.0 + 2.0 ** -49)
        exact = inside >= 2
        exact[0] |= inside[0] >= 1
        # row 0: rho = 1 (inf); the last row: rho <= 1/2 (never read: a certificate answers 0 there)
        return StepCells(value=np.concatenate([[np.inf], steps(above_anchor), [0.0]]),
                         threshold=np.concatenate([[-np.inf], threshold, [-np.inf]]),
                         top=np.concatenate([[np.inf], steps(above_far), [0.0]]),
                         ceiling=np.concatenate([[0.0], (0.5 - anchor) * rate, [0.0]]),
                         ceiling_slope=np.concatenate([[0.0], np.full(anchor.shape, rate), [0.0]]),
                         exact=np.concatenate([[False], exact, [False]]),
                         edges=p_ascending, edge_values=steps(n - np.searchsorted(p_ascending, p_ascending)))

    def unit_torch(self, rho: torch.Tensor) -> torch.Tensor:
        key = str(rho.device)
        if key not in self._on_device:
            self._on_device[key] = table_on(self.table, rho.device)
        return torch.where(rho >= 1.0, torch.inf, lookup(self._on_device[key], rho))

METHOD = "level-set table (Theorem T.1, Algorithms 1-2)"


def spherical_form(q: Distribution) -> Radial:
    """q itself or an equivalent form of it that is radial in l2 (Gaussian: Radial(r**2/2, 2))."""
    for form in [q, *q.equivalent_forms()]:
        if isinstance(form, Radial) and form.norm == 2:
            return form
    raise NotImplementedError(f"the level set method needs spherical level sets (a Radial(g, 2) form); "
                              f"{q.name} is {q.structure()}")


class LevelSetCertificate(Certificate):
    """A :class:`Certificate` backed by a Neyman-Pearson radius table.

    ``table["radii"]`` (unit scale, increasing) and ``table["p"]`` (non-increasing): eps_i is certified
    whenever 1 - rho <= p_i. Between grid points rho is rounded down (Algorithm 2); the tangent bound
    (rho - 1/2) / Phi(1/2) covers rho closer to 1/2 than the first grid point; past the last grid
    point the last radius is returned, and rho = 1 gives inf (q has full support, so a set of
    q-measure zero has measure zero under every shift). ``radial`` (the Radial(g, 2) form, as
    :func:`derive` passes it) gives the certificate its verified mode: the Neyman-Pearson radius
    recomputed in mpmath at the given rho (:mod:`.verified`).
    """

    def __init__(self, table: dict, *, lam: float, d: int, source: str, radial: Radial | None = None):
        self.table = table
        verified = None if radial is None else LevelSetVerifier(radial, self._unit_at)
        super().__init__(adversary="l2", method=METHOD, lam=lam, d=d, radius_unit=TableLookup(table),
                         formula=None, Phi=None, tight=False, source=source,
                         theorem="Theorem T.1, Algorithms 1 and 2", verified_unit=verified)

    def _unit_at(self, rho: float) -> float:
        return float(self.kernel.unit(np.array([rho]))[0])


def table_for(radial: Radial) -> dict:
    """The (cached) unit-scale table of a Radial(g, 2) with increasing g."""
    shift = shift_of(radial)
    key = ("wulff.levelset.table", TABLE_VERSION, radial.structure_key(scale=False))
    return cached(key, lambda: build_table(shift, radial.radius_law, radial.d),
                  validate=lambda table: _check_loaded_table(table, shift, radial))


def _check_loaded_table(table: dict, shift, radial: Radial) -> None:
    """Re-check a table read from disk (wulff.cache) against Algorithm 1 before it is used: radii on
    the geometric grid, p non-increasing in (0, 1/2], the law's tangent slope, a quadrature size
    build_table could have chosen, and at fixed and random rows p_i at most the sound p of
    Theorem T.1 recomputed (:func:`tail_bound`) at the radius it was computed for: eps_i itself, or below
    SMOOTH_SPHERE_D eps_i / (1 - LOW_D_RADIUS_MARGIN), the radius before build_table's margin (recomputed
    at eps_i, a quadrature's p in a far tail can fall short of the p at a radius 1e-4 larger by more than
    the tolerance: Power2(2, a=12), up to 1.2e-3 of p). Raises on any disagreement."""
    radii, p = np.asarray(table["radii"], dtype=float), np.asarray(table["p"], dtype=float)
    if radii.ndim != 1 or radii.shape != p.shape or not radii.size:
        raise ValueError("a level-set table needs radii and p of one length")
    if not (np.all(radii > 0) and np.all(np.isfinite(radii))
            and np.allclose(radii[1:] / radii[:-1], GRID_RATIO, rtol=1e-9, atol=0.0)):
        raise ValueError("the table's radii are not the geometric grid of Algorithm 1")
    if not (np.all(p > 0) and np.all(p <= 0.5) and np.all(np.diff(p) <= 0)):
        raise ValueError("the table's p are not non-increasing in (0, 1/2]")
    check_not_above(tangent_slope(radial.radius_law, radial.d), table["slope"], what="the tangent slope",
                    rtol=1e-12)
    half_nodes = int(table["half_nodes"])
    if not initial_half_nodes(radial.d) <= half_nodes <= MAX_HALF_NODES:
        raise ValueError(f"the table's quadrature size {half_nodes} is not one build_table chooses")
    rows = spot_rows(radii.size, 24)
    computed_at = radii[rows] / (1.0 - LOW_D_RADIUS_MARGIN) if radial.d < SMOOTH_SPHERE_D else radii[rows]
    check_not_above(p[rows], tail_bound(shift, radial.radius_law, radial.d, computed_at, half_nodes),
                    what="a cached p_i", rtol=1e-6)


def derive(q: Distribution, adversary: str = "l2") -> LevelSetCertificate:
    """The level set certificate of q against ``adversary`` (Theorem T.1).

    Only the l2 adversary and densities q(x) ∝ exp(-g(||x/lam||_2)) with g increasing are handled
    (NotImplementedError otherwise): Gaussian, Exp2 with j >= 0, Power2, declared profiles.
    """
    if check_adversary(adversary) != "l2":
        raise NotImplementedError(f"the level set method certifies against l2 only, not {adversary}")
    radial = spherical_form(q)
    if radial.d < 2:  # W_d has no spread in d = 1 (Lemma U.1): the quadrature's error bound cannot close
        raise NotImplementedError("the level set tables need d >= 2; in d = 1 the differential method's "
                                  "certificates (Theorem M.1) apply")
    return LevelSetCertificate(table_for(radial), lam=q.lam, d=q.d, source=repr(q), radial=radial)


def certified_tail(q: Distribution, radius, *, half_nodes: int | None = None) -> np.ndarray:
    """Algorithm 1's p for given l2 radii (lam included): the largest 1 - rho at which the level set
    method certifies ``radius``, as a sound lower bound (no table, no rounding). ``half_nodes`` sets
    the quadrature size (default: the table's starting size; more is tighter at very low d)."""
    radial = spherical_form(q)
    radii = np.asarray(radius, dtype=float)
    law = radial.radius_law
    return tail_bound(shift_of(radial), law, radial.d, radii / q.lam, half_nodes).reshape(radii.shape)
