"""wulff.certified_radius(q, rho, adversary): the pointwise maximum over every sound certificate the library
builds (differential method, level set method, uniform-noise theorems, all norm conversions), and
BestCertificate.winner, which says which certificate gives each radius."""
import numpy as np
import pytest
import torch
from scipy.stats import norm

from wulff import certified_radius
from wulff.certificate import Certificate
from wulff.distributions import Gaussian, Laplace, Power2, UniformBall, UniformCube
from wulff.selector import BestCertificate, all_certificates, best_certificate, labelled_certificates

RHO = np.array([0.3, 0.5, 0.5001, 0.6, 0.8, 0.95, 0.99, 0.9999])


pytestmark = pytest.mark.usefixtures("private_cache")


def _line(slope, name, tight=False):
    return Certificate(adversary="l2", method=name, lam=2.0, d=4, tight=tight,
                       radius_unit=lambda rho: slope(np.asarray(rho)))


def test_pointwise_maximum_and_winner_on_crossing_certificates():
    a = _line(lambda rho: 4 * (rho - 0.5), "steep start")
    b = _line(lambda rho: 8 * (rho - 0.5) ** 2 + 1.0 * (rho - 0.5), "steep end")
    best = BestCertificate([a, b], "l2", 2.0, 4)
    rho = np.array([0.2, 0.6, 0.8, 0.95])
    np.testing.assert_array_equal(best.radius(rho), np.maximum(a.radius(rho), b.radius(rho)))
    # 4x = 8x^2 + x at x = 3/8: a wins below rho = 0.875, b above
    assert list(best.winner(rho)) == [None, "steep start", "steep start", "steep end"]
    assert best.winner(0.9) == "steep end" and not best.tight
    with pytest.raises(NotImplementedError):
        BestCertificate([], "l2", 1.0, 4)
    with pytest.raises(ValueError, match="labels"):
        BestCertificate([a, b], "l2", 2.0, 4, labels=["only one"])


def test_gaussian_l2_is_phi_inverse_and_each_certificate_is_below():
    q = Gaussian(3072, sigma=0.25)
    best = best_certificate(q, "l2")
    labels = [label for label, _ in labelled_certificates(q, "l2")]
    assert labels == ["differential method: closed-form"] and best.tight  # exact: no other is asked
    got = certified_radius(q, RHO, "l2")
    np.testing.assert_array_equal(got, best.radius(RHO))
    np.testing.assert_allclose(got, 0.25 * np.maximum(norm.ppf(RHO), 0), rtol=1e-7, atol=1e-15)
    assert np.all(got <= 0.25 * np.maximum(norm.ppf(RHO), 0) * (1 + 1e-12))
    from wulff.levelset import derive
    for cert in all_certificates(q, "l2") + [derive(q, "l2"), derive(q, "l2").converted("l2")]:
        assert np.all(cert.radius(RHO) <= got * (1 + 1e-12))
    # the winner's own radius is the best radius
    for rho, label in zip(RHO, best.winner(RHO)):
        if rho <= 0.5:
            assert label is None
            continue
        cert = dict(labelled_certificates(q, "l2"))[label]
        assert cert.radius(rho) == best.radius(rho)


def test_uniform_cube_l2_comes_only_through_conversions():
    """The cube has no l2 theorem: max(Theorem N.3 / sqrt(d), Theorem N.6) (||.||_inf <= ||.||_2)."""
    d, lam = 3072, 0.5
    q = UniformCube(d, lam=lam)
    rho = RHO[RHO > 0.5]
    via_l1 = lam * 2 * (rho - 0.5) / np.sqrt(d)
    via_linf = lam * 2 * (1 - (1.5 - rho) ** (1 / d))
    np.testing.assert_allclose(certified_radius(q, rho, "l2"), np.maximum(via_l1, via_linf), rtol=1e-11)
    winners = best_certificate(q, "l2").winner(rho)
    assert all("Theorem N.3" in w and "l1 -> l2 norm conversion" in w for w in winners)


def test_exact_certificates_make_the_best_tight():
    best = best_certificate(UniformCube(10, lam=1.0), "l1")
    assert best.tight and best.formula is not None
    np.testing.assert_allclose(best.radius(RHO), 2 * np.maximum(RHO - 0.5, 0), rtol=1e-15)
    assert best_certificate(UniformBall(10, lam=1.0), "l2").tight


def test_level_set_wins_where_the_differential_method_is_loose():
    """Power law with spherical level sets (Example T.3): the level set table beats Theorem G.6."""
    q = Power2(64, a=80, k=1, lam=1.0)
    best = best_certificate(q, "l2")
    winners = best.winner(np.array([0.9, 0.99]))
    assert all(w.startswith("level set method") for w in winners)
    from wulff.levelset import derive
    rho = np.array([0.9, 0.99])
    np.testing.assert_array_equal(best.radius(rho), derive(q, "l2").radius(rho))


@pytest.mark.parametrize("adversary", ["l1", "l2", "linf"])
def test_laplace_every_adversary_and_torch(adversary):
    q = Laplace(32, lam=0.7)
    best = best_certificate(q, adversary)
    radii = best.radius(RHO)
    for cert in all_certificates(q, adversary):
        assert np.all(cert.radius(RHO) <= radii)
    rho32 = torch.tensor(RHO, dtype=torch.float32)
    t = certified_radius(q, rho32, adversary)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), best.radius(rho32.double().numpy()).astype(np.float32), rtol=1e-6)


def test_bad_inputs():
    q = Gaussian(4, lam=1.0)
    with pytest.raises(ValueError, match="adversary"):
        certified_radius(q, 0.9, "l3")
    with pytest.raises(ValueError, match="rho"):
        certified_radius(q, np.nan, "l2")
