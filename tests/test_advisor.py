"""``wulff.compare`` / ``wulff compare``: the radii are the library's certified radii, the ranking at
d = 3072, sigma = 0.5 follows the closed forms (written out here independently), the files are
written, and the halfspace (no-go) bound holds and has the paper's rate."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from scipy import stats
from toys import run_cli

import wulff
from wulff.advisor import CSV_COLUMNS, halfspace_bound, reachable_rho
from wulff.catalog import FAMILY_NAMES
from wulff.distributions import IID, registry, t

D, SIGMA = 3072, 0.5
RHO = np.array([0.6, 0.7, 0.9, 0.95, 0.99, 0.999])


@pytest.fixture(autouse=True)
def _cache(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("WULFF_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "wulff-cache"))


# -- independent references (Table A.1 with the errata of docs/errata.md; sigma^2 = E||delta||^2 / d) --
def cube_l1(rho, sigma):  # Theorem N.3: 2 lam (rho - 1/2), lam = sigma sqrt 3
    return 2 * sigma * math.sqrt(3) * (rho - 0.5)


def laplace_l1(rho, sigma):  # lam log(1 / (2 (1 - rho))), lam = sigma / sqrt 2 (Var Laplace(lam) = 2 lam^2)
    return sigma / math.sqrt(2) * np.log(1 / (2 * (1 - rho)))


def gaussian_l2(rho, sigma):  # Cohen et al. 2019: sigma Phi^-1(rho)
    return sigma * stats.norm.ppf(rho)


def cube_linf(rho, sigma, d):  # Theorem N.6 (d-th root): 2 lam (1 - (3/2 - rho)^(1/d))
    return 2 * sigma * math.sqrt(3) * (1 - (1.5 - rho) ** (1 / d))


@pytest.fixture(scope="module")
def comparisons():
    return {adv: wulff.compare(adv, D, SIGMA, rho=RHO) for adv in ("l1", "l2", "linf")}


@pytest.mark.parametrize("adversary", ["l1", "l2", "linf"])
def test_radii_are_the_certified_radii_of_every_family(comparisons, adversary):
    c = comparisons[adversary]
    assert [e.family for e in c.entries] == list(FAMILY_NAMES)
    for entry in c.entries:
        q = registry.build(entry.family, D, sigma=SIGMA, examples=True)
        assert q.sigma == pytest.approx(SIGMA)
        np.testing.assert_array_equal(entry.radius, wulff.certified_radius(q, RHO, adversary))
        assert all(isinstance(m, str) and m for m in entry.method)


def test_l1_ranking_follows_the_closed_forms(comparisons):
    c = comparisons["l1"]
    got = {e.family: e.radius for e in c.entries}
    expected = {"UniformCube": cube_l1(RHO, SIGMA), "Laplace": laplace_l1(RHO, SIGMA),
                "Gaussian": gaussian_l2(RHO, SIGMA)}  # l1 ball inside the l2 ball: the l2 radius
    for name, ref in expected.items():
        np.testing.assert_allclose(got[name], ref, rtol=1e-6)
        assert np.all(got[name] <= ref * (1 + 1e-12))  # never above the exact radius
    best = [max(expected, key=lambda n: expected[n][k]) for k in range(len(RHO))]
    # the cube wins the hard inputs; near rho = 0.95 the Gaussian edges ahead, then Laplace's log grows fastest
    assert best == ["UniformCube"] * 3 + ["Gaussian"] + ["Laplace"] * 2
    trio = wulff.compare("l1", D, SIGMA, families=list(expected), rho=RHO)
    assert trio.winners() == best
    # and the cube is the best of every family for the hardest inputs (Theorem 5.4)
    assert c.winners()[0] == "UniformCube"


def test_l2_ranking_follows_the_closed_forms(comparisons):
    c = comparisons["l2"]
    got = {e.family: e.radius for e in c.entries}
    np.testing.assert_allclose(got["Gaussian"], gaussian_l2(RHO, SIGMA), rtol=1e-6)
    # cube and Laplace: at least their l1 radius read through ||x||_1 <= sqrt(d) ||x||_2 (equal for the
    # cube; Laplace's linf certificate is a little larger at small rho), far below the Gaussian
    np.testing.assert_allclose(got["UniformCube"], cube_l1(RHO, SIGMA) / math.sqrt(D), rtol=1e-6)
    assert np.all(got["Laplace"] >= laplace_l1(RHO, SIGMA) / math.sqrt(D) * (1 - 1e-6))
    winners = c.winners()
    assert all(w in ("Gaussian", "Exp2(k=1, j=0)") for w in winners)  # spherical level sets win
    assert got["Gaussian"][0] > 10 * max(got["UniformCube"][0], got["Laplace"][0])


def test_linf_ranking_follows_the_closed_forms(comparisons):
    c = comparisons["linf"]
    got = {e.family: e.radius for e in c.entries}
    np.testing.assert_allclose(got["Gaussian"], gaussian_l2(RHO, SIGMA) / math.sqrt(D), rtol=1e-6)
    np.testing.assert_allclose(got["UniformCube"], cube_linf(RHO, SIGMA, D), rtol=1e-6)
    assert np.all(got["Gaussian"] > 20 * got["UniformCube"])
    assert np.all(got["Gaussian"] > got["Laplace"])
    assert all(w in ("Gaussian", "Exp2(k=1, j=0)") for w in c.winners())


def test_declared_density_and_parameter_override():
    c = wulff.compare("l1", 16, 1.0, families=["ExpP"], params={"p": 3.0}, psi=["abs(t)**3"], rho=[0.8, 0.9])
    expp, declared = c.entries
    assert expp.parameters == "p=3"
    np.testing.assert_array_equal(declared.radius, wulff.certified_radius(IID(abs(t) ** 3, 16, sigma=1.0),
                                                                         [0.8, 0.9], "l1"))
    np.testing.assert_allclose(expp.radius, declared.radius, rtol=1e-6)  # the same density twice


def test_a_noise_without_certificate_is_listed_not_raised(monkeypatch):
    import wulff.selector as selector

    real = selector.best_certificate

    def no_laplace(q, adversary):
        if q.name == "Laplace":
            raise NotImplementedError("none for this test")
        return real(q, adversary)

    monkeypatch.setattr(selector, "best_certificate", no_laplace)
    c = wulff.compare("l1", 8, 1.0, families=["Laplace", "Gaussian"], psi=["log(1 + abs(t)) * 2"], rho=[0.9])
    laplace, gaussian, heavy = c.entries
    assert laplace.radius is None and "no certificate against l1" in laplace.missing
    assert heavy.radius is None and "sigma" in heavy.missing  # Cauchy-like tails: no sigma to match
    assert gaussian.radius is not None and c.winners() == ["Gaussian"]
    assert "not compared: no certificate against l1" in c.table()
    rows = [r for r in c.rows() if r["family"] == "Laplace"]
    assert rows[0]["radius"] is None and rows[0]["method"].startswith("no certificate")


def test_reachable_rho_is_the_clopper_pearson_bound_of_n_out_of_n():
    for n, alpha in [(100, 0.05), (100_000, 0.001)]:
        assert reachable_rho(n, alpha) == pytest.approx(stats.beta.ppf(alpha, n, 1), rel=1e-12)
    c = wulff.compare("l2", 8, 1.0, families=["Gaussian"], rho=[0.9], n=100_000, alpha=0.001)
    assert c.rho[-1] == pytest.approx(0.001 ** 1e-5) and len(c.rho) == 2
    with pytest.raises(ValueError, match="n must be a positive integer"):
        reachable_rho(0, 0.001)


# -- the no-go bound (Section 7) ---------------------------------------------------------------------
def test_no_go_bound_has_the_papers_rate():
    rho = np.array([0.6, 0.9, 0.99])
    for d in (64, 3072):
        # Corollary 7.4 / Kumar et al. 2020: a factor d^(1/p - 1/2); linf: 1 / sqrt(d); l1, l2: none
        np.testing.assert_allclose(halfspace_bound(rho, "linf", d, SIGMA),
                                   SIGMA * np.sqrt(rho / (1 - rho)) / math.sqrt(d), rtol=1e-12)
        np.testing.assert_allclose(halfspace_bound(rho, "l2", d, SIGMA), SIGMA * np.sqrt(rho / (1 - rho)))
        np.testing.assert_allclose(halfspace_bound(rho, "l1", d, SIGMA), SIGMA * np.sqrt(rho / (1 - rho)))
    ratio = halfspace_bound(rho, "linf", 4 * 3072, SIGMA) / halfspace_bound(rho, "linf", 3072, SIGMA)
    np.testing.assert_allclose(ratio, 0.5)  # quadrupling d halves the linf ceiling: Omega(d^-1/2) is the wall


@pytest.mark.parametrize("adversary", ["l1", "l2", "linf"])
def test_every_certified_radius_is_below_the_no_go_bound(comparisons, adversary):
    c = comparisons[adversary]
    bound = halfspace_bound(RHO, adversary, D, SIGMA)
    for entry in c.entries:
        assert np.all(entry.radius <= bound), entry.label
    assert "every radius above is below it" in c.story()


def test_no_go_bound_is_attained_by_a_halfspace_in_one_dimension():
    """In d = 1 the halfspace is the whole story: the exact radius of the uniform noise is its
    rho-quantile 2 lam (rho - 1/2), which the Cantelli bound must dominate; the Gaussian's is
    sigma Phi^-1(rho) (Phi^-1(rho) <= sqrt(rho / (1 - rho)) is Cantelli for the normal law)."""
    rho = np.linspace(0.51, 0.9999, 50)
    cube = wulff.certified_radius(registry.build("UniformCube", 1, sigma=SIGMA), rho, "linf")
    np.testing.assert_allclose(cube, cube_l1(rho, SIGMA), rtol=1e-6)
    assert np.all(cube <= halfspace_bound(rho, "linf", 1, SIGMA))
    assert np.all(gaussian_l2(rho, SIGMA) <= halfspace_bound(rho, "l2", 1, SIGMA))


def test_story_names_the_crystal_and_the_numbers(comparisons):
    l1 = comparisons["l1"].story()
    assert "cube" in l1 and "UniformCube 1.732" in l1  # 2 lam = 2 sqrt(3) * 0.5
    linf = comparisons["linf"].story()
    assert f"{D ** -0.5:.4g}" in linf and f"{SIGMA * D ** -0.5:.4g}" in linf


# -- the command line ---------------------------------------------------------------------------------
def test_cli_writes_table_csv_and_plot(capsys, tmp_path):
    out_csv, out_png = tmp_path / "c.csv", tmp_path / "sub" / "c.png"
    code, out, err = run_cli(capsys, "compare", "--adversary", "l1", "--d", D, "--sigma", SIGMA,
                             "--families", "uniformcube", "Laplace", "Gaussian", "--psi", "abs(t)**3",
                             "--rho", 0.6, 0.9, 0.99, "--n", 100000, "--alpha", 0.001,
                             "--csv", out_csv, "--plot", out_png)
    assert code == 0, err
    assert "UniformCube" in out and "Wulff crystal" in out and "alpha^(1/n)" in out
    with open(out_csv, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 4 * 4  # 3 families + 1 psi, at 3 rho + alpha^(1/n)
    cube = [r for r in rows if r["family"] == "UniformCube"]
    expected = cube_l1(np.array([0.6, 0.9, 0.99, 0.001 ** 1e-5]), SIGMA)
    np.testing.assert_allclose([float(r["radius"]) for r in cube], expected, rtol=1e-6)
    assert {r["adversary"] for r in rows} == {"l1"} and {r["d"] for r in rows} == {str(D)}
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, message", [
    (["--rho", "0.4"], "--rho"),
    (["--psi", "__import__('os')"], "psi"),
    (["--param", "zz=1"], "zz"),
    (["--alpha", "0.01"], "--alpha goes with --n"),
    (["--sigma", "-1"], "--sigma"),
])
def test_cli_bad_input_is_one_line(capsys, args, message):
    code, out, err = run_cli(capsys, "compare", "--d", 8, "--families", "Gaussian", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_cotype_as_printed_cannot_give_the_papers_rate():
    """Definition 7.2 (docs/errata.md): with x_j = e_j in l_inf^d, E||sum sigma_j e_j||_inf^2 = 1 and
    sum ||e_j||^2 = d. The corrected inequality (sum ||x_j||^2)^(1/2) <= C (E||sum sigma_j x_j||^2)^(1/2)
    forces C_2 >= sqrt(d), the Omega(d^(1/2)) of Section 7; the printed one only C >= d^(-1/2)."""
    import itertools

    d = 8
    signs = np.array(list(itertools.product([-1.0, 1.0], repeat=d)))  # sum_j sigma_j e_j = sigma
    mean_sq = float(np.mean(np.max(np.abs(signs), axis=1) ** 2))
    assert mean_sq == 1.0
    corrected = math.sqrt(d) / math.sqrt(mean_sq)  # the least C the corrected inequality allows
    printed = mean_sq / math.sqrt(d)  # the least C the printed inequality allows
    assert corrected == pytest.approx(d ** 0.5) and printed == pytest.approx(d ** -0.5)
    ratio = halfspace_bound(0.9, "linf", d, 1.0) / halfspace_bound(0.9, "l2", d, 1.0)
    assert float(ratio) == pytest.approx(1 / corrected)  # the no-go ceiling falls by exactly that factor
