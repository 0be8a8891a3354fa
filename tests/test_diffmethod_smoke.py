"""First checks of wulff.diffmethod.derive against Table A.1 closed forms written out here."""
import numpy as np
import pytest
from scipy import special, stats

import wulff.distributions as D
from wulff.diffmethod import derive

RHO = np.array([0.5, 0.5 + 1e-12, 0.55, 0.7, 0.9, 0.99, 0.999, 1 - 1e-9])


@pytest.fixture(autouse=True)
def _no_disk_cache(monkeypatch):
    monkeypatch.setenv("WULFF_CACHE_DIR", "off")


def _check(cert, reference, rtol=1e-6):
    got = cert.radius(RHO)
    assert got.dtype == np.float64 and got.shape == RHO.shape
    assert got[0] == 0.0
    np.testing.assert_allclose(got[1:], reference(RHO[1:]), rtol=rtol, atol=1e-12)
    assert np.all(got[1:] <= reference(RHO[1:]) * (1 + 1e-14) + 1e-15)  # never above the theorem


def test_gaussian_l2_theorem_h1():
    _check(derive(D.Gaussian(7, lam=1.3), "l2"), lambda r: 1.3 * stats.norm.ppf(r))


def test_laplace_l1_theorem_i1():
    _check(derive(D.Laplace(7, lam=0.7), "l1"), lambda r: -0.7 * np.log(2 * (1 - r)))


def test_expinf_l1_theorem_n1():
    d, lam = 9, 0.4
    _check(derive(D.ExpInf(d, lam=lam), "l1"), lambda r: lam * np.where(
        r <= 1 - 1 / (2 * d), 2 * d * (r - 0.5), np.log(1 / (2 * d * np.maximum(1 - r, 1e-300))) + d - 1))


def test_exp2_l2_theorem_r1():
    d, lam = 11, 2.0
    _check(derive(D.Exp2(d, lam=lam), "l2"),
           lambda r: lam * (d - 1) * np.arctanh(1 - 2 * special.betaincinv((d - 1) / 2, (d - 1) / 2, 1 - r)))


def test_uniform_is_not_ours():
    with pytest.raises(NotImplementedError):
        derive(D.UniformCube(3, lam=1), "l1")
