"""The best certificate read in one pass (issue 29, part b): a :class:`Maximum` whose candidates have
cells (an envelope's or a slow closed form's indexed Taylor table, a level-set table's steps) reads them
together (:class:`~wulff.radius.numeric.IndexedMaximum`) and returns the same values, bit for bit, as
evaluating each candidate by its own kernel and taking the largest (:meth:`Maximum._by_candidates`, the
path of the earlier versions): on random rho, on every cell edge of the indexed table and of the level-set
table with the floats either side, next to 1/2 and next to 1; on numpy arrays and host tensors.

References: each candidate's own kernel (each tested against its own exact radius elsewhere); the
level-set lookup written out here (Algorithm 2: the largest eps_i with p_i >= 1 - rho, and the tangent
bound (rho - 1/2) / slope).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import wulff
from wulff.distributions import registry
from wulff.radius.numeric import IndexedMaximum

pytestmark = pytest.mark.usefixtures("private_cache")

#: best certificates whose maximum has cells: a level-set table with a closed form (Exp2) or an envelope
#: (Power2), and envelopes with closed forms next to 1/2 and 1 (Laplace, Exp1, Pareto vs linf, PowerInf)
CASES = [("Exp2", "l2", 3072), ("Exp2", "l1", 3072), ("Power2", "l2", 3072), ("Power2", "linf", 3072),
         ("Power2", "l2", 3), ("Exp2", "l2", 10), ("Laplace", "linf", 3072), ("Exp1", "linf", 100),
         ("Pareto", "linf", 3072), ("PowerInf", "linf", 3072), ("ExpP", "l2", 3072),
         ("Pareto", "linf", 1), ("Power2", "l2", 2), ("Laplace", "linf", 150528)]


def _best(name: str, adversary: str, d: int):
    q = registry.build(name, d, sigma=0.5, **registry.example_parameters(name, d))
    return wulff.best_certificate(q, adversary)


def _around(values: np.ndarray) -> np.ndarray:
    """values and the two floats either side of each."""
    return np.concatenate([values, np.nextafter(values, 0.0), np.nextafter(values, 2.0),
                           np.nextafter(np.nextafter(values, 2.0), 2.0)])


def _probe_rho(best, cells: IndexedMaximum) -> np.ndarray:
    """rho at random, at every cell edge of the indexed table (u = 1 - rho from 2^-40 to 1/2), at every
    p_i of a level-set candidate, geometric runs to 1/2 and 1, and 1, with their neighbouring floats."""
    rng = np.random.default_rng(7)
    keys = np.arange(cells.rows - 1, dtype=np.int64) + cells._offset + 1
    edges = (keys << cells._shift).view(np.float64)
    edges = edges[edges >= 2.0 ** -40]
    rho = [rng.uniform(0.5, 1.0, 60000), 1.0 - edges[rng.choice(edges.size, 40000, replace=False)],
           0.5 + np.geomspace(2.0 ** -52, 0.25, 3000), 1.0 - np.geomspace(2.0 ** -53, 0.25, 3000), [1.0]]
    for candidate in best.kernel.certificates:
        table = getattr(candidate.kernel, "table", None)
        if isinstance(table, dict):  # a level-set table: its rows' p_i
            rho.append(1.0 - np.asarray(table["p"], dtype=np.float64))
    rho = np.unique(_around(np.concatenate(rho)))
    return rho[(rho > 0.5) & (rho <= 1.0)]


@pytest.mark.parametrize("name, adversary, d", CASES)
def test_one_pass_gives_the_candidates_maximum_bit_for_bit(name, adversary, d):
    best = _best(name, adversary, d)
    cells = best.kernel.cells()
    assert isinstance(cells, IndexedMaximum)
    rho = _probe_rho(best, cells)
    by_candidates = best.kernel._by_candidates(rho)
    np.testing.assert_array_equal(best.kernel.scaled(rho, 1), by_candidates)
    # a host tensor takes the same pass; the certificate's radius is that maximum, checked and scaled
    np.testing.assert_array_equal(best.kernel.scaled(torch.from_numpy(rho), 1).numpy(), by_candidates)
    np.testing.assert_array_equal(best.radius(rho), best.radius(torch.from_numpy(rho)).numpy())
    shuffled = np.random.default_rng(1).permutation(rho.size)
    np.testing.assert_array_equal(best.kernel.scaled(rho[shuffled], 1), by_candidates[shuffled])


@pytest.mark.parametrize("name, d", [("Exp2", 3072), ("Power2", 3072), ("Power2", 3)])
def test_the_table_and_the_quadratic_are_read_in_one_pass_with_few_values_left_to_the_kernels(name, d):
    best = _best(name, "l2", d)
    cells = best.kernel.cells()
    rho = np.random.default_rng(2).uniform(0.5, 0.999, 200000)
    _, missing = cells(rho)
    left = 0 if missing is None else missing.where.size / rho.size
    assert left < 0.08, left
    assert {type(c.kernel).__name__ for c in best.kernel.certificates} >= {"TableLookup"}


def _lookup(table: dict, rho: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Algorithm 2's step, the tangent bound) at unit scale, written out: radii[#{p_i >= 1 - rho} - 1]
    (0 if none) and (rho - 1/2) / slope."""
    p, radii = np.asarray(table["p"]), np.asarray(table["radii"])
    count = np.array([(p >= 1.0 - r).sum() for r in rho])
    step = np.where(count > 0, radii[np.maximum(count - 1, 0)], 0.0)
    return step, (rho - 0.5) / table["slope"]


@pytest.mark.parametrize("name, d", [("Exp2", 3072), ("Power2", 3)])
def test_the_level_set_steps_on_the_cells_are_algorithm_2(name, d):
    """StepCells of a level-set table against the lookup written out: the value (one step up at or
    below the threshold) wherever the cell is not exact, and the tangent bound below the ceiling."""
    best = _best(name, "l2", d)
    table_cert = next(c for c in best.kernel.certificates if type(c.kernel).__name__ == "TableLookup")
    quadratic = next(c for c in best.kernel.certificates if c is not table_cert).kernel.quadratic_cells()
    anchor, far = quadratic.cell_edges()
    scale = 0.37
    steps = table_cert.kernel.step_cells(anchor, far, scale)
    p = np.asarray(table_cert.kernel.table["p"])
    rng = np.random.default_rng(5)
    rho = np.unique(_around(np.concatenate([1.0 - p[rng.choice(p.size, 400)], rng.uniform(0.5, 1.0, 3000),
                                            0.5 + np.geomspace(1e-9, 0.1, 400)])))
    rho = rho[(rho > 0.5) & (rho < 1.0)]
    u = 1.0 - rho
    row = (u.view(np.int64) >> quadratic._shift) - quadratic._offset
    up = u <= steps.threshold[row]
    read = steps.value[row - up]
    step, tangent = _lookup(table_cert.kernel.table, rho)
    fine = ~steps.exact[row]
    assert fine.mean() > 0.5
    np.testing.assert_array_equal(read[fine], step[fine] * scale)
    assert np.all(steps.top[row][fine] >= read[fine])
    t = anchor[row - 1] - u
    assert np.all(tangent * scale <= steps.ceiling[row] + steps.ceiling_slope[row] * t)


def test_any_shape_and_a_single_value_read_the_same_pass():
    best = _best("Exp2", "l2", 3072)
    rho = np.random.default_rng(4).uniform(0.5, 1.0, 24)
    flat = best.radius(rho)
    np.testing.assert_array_equal(best.radius(rho.reshape(2, 3, 4)), flat.reshape(2, 3, 4))
    np.testing.assert_array_equal(best.radius(rho[::-2]), flat[::-2])  # a strided view
    assert [float(best.radius(float(r))) for r in rho[:5]] == flat[:5].tolist()
    assert best.radius(np.zeros((0, 3))).shape == (0, 3)
