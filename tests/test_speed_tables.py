"""Issue 29: the level-set tables at low d: a level shift that converges at every level, and the
table's kappa found in a few evaluations a row at the fine quadrature with the table's values kept."""
from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest

import wulff.distributions as D
from wulff.radius.levelset import table as table_module
from wulff.radius.levelset.shifts import PowerShift, shift_of
from wulff.radius.levelset.spherical import spherical_form
from wulff.radius.levelset.table import (
    GRID_RATIO,
    LOW_D_RADIUS_MARGIN,
    P_RTOL,
    SMOOTH_SPHERE_D,
    build_table,
    tail_bound,
)


def _exact_shift(c: float, k: float, j: float, y: float, tau: float) -> float:
    """eta with c r^k expm1(k eta) + j eta = tau, r = e^y, by bisection in 50 digits."""
    with mp.workdps(50):
        a = mp.mpf(c) * mp.e ** (k * mp.mpf(y))
        f = lambda eta: a * mp.expm1(k * eta) + j * eta - mp.mpf(tau)  # noqa: E731
        lo, hi = mp.mpf(-1), mp.mpf(1)
        while f(lo) > 0:
            lo *= 2
        while f(hi) < 0:
            hi *= 2
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
        return float((lo + hi) / 2)


@pytest.mark.parametrize("c, k, j", [(1.0, 1.0, 1.0), (1.0, 2.0, 1.0), (0.5, 0.5, 3.0), (2.0, 3.0, 0.01)])
def test_power_shift_with_a_log_term_converges_at_every_level(c, k, j):
    """g(r) = c r^k + j log r: the shift solves its equation to rounding also where tau is far larger
    than c r^k (the bracketing of Algorithm 1 asks for such shifts; Newton from the tangent at 0
    used to stop after 100 steps at eta ~ tau / j, which understates p1 and overstates p0)."""
    y = np.array([0.0, -5.0, 2.0, 0.0, 1.0, -3.0, 3.0])
    tau = np.array([1000.0, 200.0, -30.0, 300.0, -1e4, 1e-9, 2e5])
    eta = PowerShift(c, k, j).shift(y, tau)
    exact = np.array([_exact_shift(c, k, j, yi, ti) for yi, ti in zip(y, tau)])
    np.testing.assert_allclose(eta, exact, rtol=1e-13, atol=0.0)


def _build_counting(radial):
    """(shift, the table of radial, the rows each quadrature size evaluated while building it)."""
    shift = shift_of(radial)
    work: dict[int, int] = {}
    original = table_module.GrowthFunction._mean_over_rows

    def counted(self, eps, log_t, sign):
        nodes = self.quad.r.size
        work[nodes] = work.get(nodes, 0) + eps.size
        return original(self, eps, log_t, sign)

    table_module.GrowthFunction._mean_over_rows = counted
    try:
        table = build_table(shift, radial.radius_law, radial.d)
    finally:
        table_module.GrowthFunction._mean_over_rows = original
    return shift, table, work


@pytest.fixture(scope="module")
def low_d_table():
    """The d = 3 table of Exp2(k=1), built once, with the rows each quadrature size evaluated."""
    radial = spherical_form(D.Exp2(3, k=1, lam=1.0))
    return (radial, *_build_counting(radial))


def test_low_d_table_solves_each_row_in_a_few_evaluations_and_keeps_its_values(low_d_table):
    """At d = 3 the quadrature is refined to 2 * 4096 + 1 nodes; the table's kappa are found with a
    rough quadrature first and finished at the fine one in under 5 evaluations a row on average
    (bracketing and the Illinois method from the coarse walk took 8 or more). The rows keep their
    values: every p is at most the sound p of Theorem T.1 recomputed at the table's quadrature
    (tail_bound, solved to 1e-14) and below it by no more than the accuracy target P_RTOL of
    min(p, 1/2 - p)."""
    radial, shift, table, work = low_d_table
    finest = max(work)
    assert table["half_nodes"] == (finest - 1) // 2
    radii, p = table["radii"], table["p"]
    assert work[finest] < 5 * radii.size
    assert np.allclose(radii[1:] / radii[:-1], GRID_RATIO, rtol=1e-9, atol=0.0)
    rows = np.unique(np.linspace(0, radii.size - 1, 40).round().astype(int))
    solved = radii / (1.0 - LOW_D_RADIUS_MARGIN) if radial.d < SMOOTH_SPHERE_D else radii  # the rows as solved
    reference = tail_bound(shift, radial.radius_law, radial.d, solved[rows], table["half_nodes"])
    assert np.all(p[rows] <= reference * (1 + 1e-6))
    assert np.all(reference - p[rows] <= P_RTOL * np.minimum(reference, 0.5 - reference) + 1e-12)


def test_the_rough_solve_refines_each_row_from_the_rows_before_it(low_d_table):
    """The rough first solve of the table's kappa (a start for the fine quadrature) refines the rows a
    block at a time from the coarse walk's log t and the rows solved before (refine_half): under 4
    evaluations a row at the rough quadrature on average (bracketing and the Illinois method took about
    10, and cost half of a d = 10 table, where W_d is a Beta function). The previous test checks the
    values."""
    _, _, table, work = low_d_table
    assert work[2 * table_module.ROUGH_HALF_NODES + 1] < 4 * table["radii"].size


def test_a_table_at_the_rough_quadrature_solves_each_row_in_a_few_evaluations_and_keeps_its_values():
    """At d >= 64 the table's own quadrature is the rough one (2 * 64 + 1 nodes): its kappa are refined
    from the coarse walk and the rows solved before in under 5 evaluations a row on average (bracketing
    and the Illinois method took 9 here, and nearly all of a d = 3072 table's time), and every p is at most the
    sound p of Theorem T.1 (tail_bound, solved to 1e-14) and below it by no more than P_RTOL of
    min(p, 1/2 - p)."""
    radial = spherical_form(D.Exp2(100, k=1, lam=1.0))
    shift, table, work = _build_counting(radial)
    radii, p = table["radii"], table["p"]
    assert table["half_nodes"] == table_module.ROUGH_HALF_NODES and list(work) == [2 * table["half_nodes"] + 1]
    assert work[2 * table["half_nodes"] + 1] < 5 * radii.size
    rows = np.unique(np.linspace(0, radii.size - 1, 30).round().astype(int))
    reference = tail_bound(shift, radial.radius_law, radial.d, radii[rows], table["half_nodes"])
    assert np.all(p[rows] <= reference * (1 + 1e-6))
    assert np.all(reference - p[rows] <= P_RTOL * np.minimum(reference, 0.5 - reference) + 1e-12)


# ---------------------------------------------------------------------------------------------
# warm starts (the rows of a table are solved a chunk at a time, each level shift started from a
# nearby row's) and the guard on the secant steps
# ---------------------------------------------------------------------------------------------
#: (y, tau) pairs where one term of f dominates or both are comparable: tau >> c r^k (the log term
#: decides), tau << -c r^k, tiny levels at large and at tiny radii, and levels near the crossover
_HARD_POINTS = [(0.0, 1000.0), (-5.0, 200.0), (2.0, -30.0), (1.0, -1e4), (-3.0, 1e-9), (3.0, 2e5),
                (-30.0, 1e-12), (-30.0, -50.0), (4.0, 1e-14), (0.0, 1.0), (0.0, -0.5)]


@pytest.mark.parametrize("c, k, j", [(1.0, 1.0, 1.0), (1.0, 2.0, 1.0), (0.5, 0.5, 3.0), (2.0, 3.0, 0.01)])
def test_warm_shift_solves_from_any_start_to_the_mpmath_root(c, k, j):
    """PowerShift.shift_near (Newton from a given start, with a cold solve for any element it leaves
    unconverged or not finite) returns the root of c r^k expm1(k eta) + j eta = tau to 1e-13 relative
    (50-digit bisection), whether the start is a rounding away, 1e-6 or 1e-2 off, a factor 2 off,
    far on either side, or not finite."""
    y = np.array([p[0] for p in _HARD_POINTS])
    tau = np.array([p[1] for p in _HARD_POINTS])
    exact = np.array([_exact_shift(c, k, j, yi, ti) for yi, ti in zip(y, tau)])
    shift = PowerShift(c, k, j)
    starts = [exact * (1 + 1e-15), exact * (1 + 1e-6), exact * (1 - 1e-2), exact * 2.0, exact / 2.0,
              exact - 50.0, exact + 50.0, np.full(y.size, np.nan), np.full(y.size, np.inf), np.zeros(y.size)]
    for start in starts:
        near = start.copy()
        eta = shift.shift_near(y, tau, near)
        np.testing.assert_allclose(eta, exact, rtol=1e-13, atol=0.0)
        np.testing.assert_array_equal(near, start)  # the start is not overwritten
    # rows x nodes broadcast as the tables call it: the same roots
    grid = shift.shift_near(y[None, :], tau[:, None], np.ones((tau.size, y.size)))
    np.testing.assert_allclose(np.diag(grid), exact, rtol=1e-13, atol=0.0)


def test_rows_evaluated_again_start_from_their_previous_shifts(monkeypatch):
    """A GrowthFunction evaluating the same rows (or a chunk's neighbours) at nearby levels solves the
    level shifts from the previous ones: the cold solver is not called again, and p1 and p0 equal those
    of a fresh GrowthFunction (cold starts everywhere) to rounding."""
    radial = spherical_form(D.Exp2(2, k=1, j=1, lam=1.0))
    shift = shift_of(radial)
    eps = np.geomspace(1e-3, 3.0, 8)
    log_t = 2 * np.log(eps) + 0.3
    growth = table_module.GrowthFunction(shift, radial.radius_law, radial.d, 256)
    growth.p1_upper(eps, log_t)
    growth.p0_lower(eps, log_t)
    cold = []
    original = PowerShift._newton


    def counted(self, a, tau):
        cold.append(np.broadcast(np.asarray(a), np.asarray(tau)).size)  # elements solved cold
        return original(self, a, tau)

    monkeypatch.setattr(PowerShift, "_newton", counted)
    moved = log_t + 1e-6
    p1 = growth.p1_upper(eps[2:], moved[2:])  # a subset of the rows, at nearby levels
    p0, err0 = growth.p0_lower(eps * 1.004, moved)  # the table's next rows
    assert sum(cold) <= 0.001 * eps.size * growth.quad.r.size
    fresh = table_module.GrowthFunction(shift, radial.radius_law, radial.d, 256)
    np.testing.assert_allclose(p1, fresh.p1_upper(eps[2:], moved[2:]), rtol=0, atol=1e-15)
    fresh_p0, fresh_err0 = fresh.p0_lower(eps * 1.004, moved)
    np.testing.assert_allclose(p0, fresh_p0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(err0, fresh_err0, rtol=1e-9, atol=1e-15)


def test_refine_half_survives_a_wrong_slope():
    """A slope estimate far too small (or of the wrong sign) must not send kappa to infinity: the secant
    steps are capped and the rows still end with p1_upper <= 1/2 within the tolerance."""
    radial = spherical_form(D.Exp2(3, k=1, j=1, lam=1.0))
    growth = table_module.GrowthFunction(shift_of(radial), radial.radius_law, radial.d, 256)
    eps = np.geomspace(1e-2, 2.0, 6)
    exact = growth.solve_half(eps, 2 * np.log(eps), tolerance=1e-13)
    for slope in (-1e-300, 0.0, 1e-3, -1e300):
        u = growth.refine_half(eps, exact + 1e-3, np.full(eps.size, slope), 1e-12)
        f = growth.p1_upper(eps, u) - 0.5
        assert np.all(f <= 0)
        assert np.all((f >= -1e-12) | (np.abs(u - exact) <= 1e-6))


def test_a_table_whose_rough_slope_vanishes_still_builds():
    """Exp2(2, k=0.5, j=1): the rough quadrature's forward-difference slope is 0 at some rows, and a
    secant step of -f / 0 used to send kappa to infinity (ArithmeticError from the level shift). The
    table builds, and its rows keep their values: at most the sound p of Theorem T.1 recomputed at the
    table's quadrature, and below it by no more than the accuracy target."""
    radial = spherical_form(D.Exp2(2, k=0.5, j=1, lam=1.0))
    shift = shift_of(radial)
    table = build_table(shift, radial.radius_law, radial.d)
    radii, p = table["radii"], table["p"]
    assert np.all(np.diff(radii) > 0) and np.all(np.diff(p) <= 0) and np.all(p > 0)
    rows = np.unique(np.linspace(0, radii.size - 1, 12).round().astype(int))
    reference = tail_bound(shift, radial.radius_law, radial.d, radii[rows] / (1.0 - LOW_D_RADIUS_MARGIN),
                           table["half_nodes"])
    assert np.all(p[rows] <= reference * (1 + 1e-6))
    assert np.all(reference - p[rows] <= P_RTOL * np.minimum(reference, 0.5 - reference) + 1e-12)


def _warm_solve_inputs(c: float, k: float, j: float):
    """A table's warm level-shift solve (rows x nodes, issue 29's d = 2 case): 8193 log radii of a radius
    law, 7 levels, and the shifts of levels 1e-3 away scaled to these levels as the starts."""
    y = np.sort(np.log(np.random.default_rng(0).gamma(3.0, size=8193)))
    tau = np.geomspace(1e-3, 3.0, 7)[:, None]
    before = PowerShift(c, k, j).shift(y, tau * (1 + 1e-3))
    return y, tau, before / (1 + 1e-3)


@pytest.mark.parametrize("k", [1.0, 2.0])
def test_warm_shift_solves_give_the_cold_roots(k):
    """The warm shift solve of a table chunk (Newton on the whole array while many elements move) finds
    the roots of the cold solve to 1e-13 (its cost is measured in benchmarks/levelset.py, not here)."""
    y, tau, start = _warm_solve_inputs(1.0, k, 1.0)
    shift = PowerShift(1.0, k, 1.0)
    np.testing.assert_allclose(shift.shift_near(y, tau, start.copy()), shift.shift(y, tau), rtol=1e-13, atol=0)


@pytest.mark.parametrize("k", [1.0, 2.0])
def test_whole_array_and_gathered_newton_steps_agree_bitwise(monkeypatch, k):
    """Every element of the level-shift solver sees the same operations whether its steps are taken on
    the whole array (masked) or on the gathered elements still moving: the results agree to the bit
    (the tables' values do not depend on where the solver switches), from warm starts and cold ones."""
    y, tau, start = _warm_solve_inputs(1.0, k, 1.0)
    results = []
    for gather_below in (0.0, 0.3, 2.0):  # gather at once, the default, never
        monkeypatch.setattr(PowerShift, "GATHER_BELOW", gather_below)
        shift = PowerShift(1.0, k, 1.0)
        results.append((shift.shift_near(y, tau, start.copy()), shift.shift(y, -tau),
                        shift.shift_near(y, tau, np.where(np.arange(y.size) % 3 == 0, start, 2.0 * start))))
    for other in results[1:]:
        for got, first in zip(other, results[0]):
            np.testing.assert_array_equal(got, first)


def _solved_widths(monkeypatch) -> list[int]:
    """Records the number of nodes (the last axis) of every level-shift solve of a PowerShift."""
    widths: list[int] = []
    original_shift, original_near = PowerShift.shift, PowerShift.shift_near

    def shift(self, y, tau):
        widths.append(np.shape(y)[-1])
        return original_shift(self, y, tau)

    def shift_near(self, y, tau, near, *, overwrite=False):
        widths.append(np.shape(y)[-1])
        return original_near(self, y, tau, near, overwrite=overwrite)

    monkeypatch.setattr(PowerShift, "shift", shift)
    monkeypatch.setattr(PowerShift, "shift_near", shift_near)
    return widths


def _evaluations(growth, eps, log_t):
    """p1 and p0 (with its error) at two nearby levels, as refine_half and p0_lower call them."""
    return [growth.p1_upper(eps, log_t), growth.p1_upper(eps, log_t + 1e-6),
            *growth.p0_lower(eps, log_t), *growth.p0_lower(eps * GRID_RATIO, log_t + 1e-6)]


def _every_node_and_a_fresh_growth(monkeypatch):
    """(the evaluations of Exp2(2, k=1, j=1) rows with the skip turned off, their eps and log t, a fresh
    GrowthFunction, the widths of the level-shift solves it will make)."""
    radial = spherical_form(D.Exp2(2, k=1, j=1, lam=1.0))
    eps = 0.5 * GRID_RATIO ** np.arange(12)
    log_t = np.log(eps) + 0.5

    def growth():
        return table_module.GrowthFunction(shift_of(radial), radial.radius_law, radial.d, 256)

    every = growth()
    every._window_start = lambda sign: 0
    expected = _evaluations(every, eps, log_t)
    return expected, eps, log_t, growth(), _solved_widths(monkeypatch)


def test_a_chunk_skips_the_nodes_its_rows_clip_and_keeps_every_value(monkeypatch):
    """The nodes with r + s(r) <= eps (x >= 1: the sphere outside the ball) are a prefix: after a first
    evaluation, the next ones solve no level shifts there, and p1, p0 and its error are bit for bit
    those of evaluating every node (the same calls with the skip turned off)."""
    expected, eps, log_t, skipping, widths = _every_node_and_a_fresh_growth(monkeypatch)
    got = _evaluations(skipping, eps, log_t)
    nodes = skipping.quad.r.size
    assert len(widths) == 4 and widths[0] == widths[2] == nodes  # the first p1 and p0 calls: every node
    assert max(widths[1], widths[3]) < 0.8 * nodes
    for value, reference in zip(got, expected):
        assert np.array_equal(value, reference)


def test_a_window_past_the_clipped_nodes_is_evaluated_again_from_the_first_node(monkeypatch):
    """A window that starts where some row's sphere still meets the ball fails its check and the chunk is
    evaluated again from the first node, from the shifts the failed window started from: the same values."""
    expected, eps, log_t, too_far, widths = _every_node_and_a_fresh_growth(monkeypatch)
    nodes = too_far.quad.r.size
    too_far._window_start = lambda sign: nodes // 2  # the median radius: the sphere meets the ball
    got = _evaluations(too_far, eps, log_t)
    assert widths == [nodes - nodes // 2, nodes] * 4
    for value, reference in zip(got, expected):
        assert np.array_equal(value, reference)
