"""The radius-kernel contract (issue 26, section 1): every engine hands the certificate a
:class:`~wulff.radius.kernel.RadiusKernel`; the certificate does validation, scale, conversion, checks
and rounding once, for numpy and torch alike; following rho from ``wulff.certified_radius`` to a number
stays inside wulff/radius/ and never returns to a file it left.

Expected values are written here from the contract (lam R_unit / C rounded toward zero, 0 at or below
1/2, flush below 2^-1020, NaN an error), not read from the code under test.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import wulff
import wulff.distributions as D

pytestmark = pytest.mark.usefixtures("private_cache")

ROOT = Path(wulff.__file__).parent
RHO = np.array([0.3, 0.5, 0.5000001, 0.6, 0.9, 0.999, 1.0])

#: (distribution, adversary): a closed form, an envelope beside a conversion (several candidates),
#: a uniform-noise theorem, a level-set table beside a closed form
PAIRS = [(lambda: D.Gaussian(d=8, sigma=0.5), "l2"), (lambda: D.Laplace(d=8, sigma=0.5), "linf"),
         (lambda: D.UniformCube(d=8, sigma=0.5), "l1"), (lambda: D.Exp2(d=8, sigma=0.5), "l2")]


def _wulff_files_of_the_deepest_call(run) -> list[str]:
    """The wulff source files on the deepest call stack reached while ``run()`` runs, outermost first."""
    deepest: list[str] = []

    def profile(frame, event, arg):
        nonlocal deepest
        if event != "call":
            return
        files = []
        while frame is not None:
            if frame.f_code.co_filename.startswith(str(ROOT)):
                files.append(frame.f_code.co_filename)
            frame = frame.f_back
        if len(files) > len(deepest):
            deepest = files[::-1]

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return deepest


@pytest.mark.parametrize("pair", range(len(PAIRS)))
@pytest.mark.parametrize("as_tensor", [False, True])
def test_walking_rho_to_a_number_stays_in_one_folder_and_never_returns(pair, as_tensor):
    make, adversary = PAIRS[pair]
    q = make()
    rho = np.linspace(0.3, 0.999, 64)
    wulff.certified_radius(q, rho, adversary)  # built and memoized: the walk is the evaluation only
    x = torch.tensor(rho) if as_tensor else rho
    files = _wulff_files_of_the_deepest_call(lambda: wulff.certified_radius(q, x, adversary))
    walk = [f for i, f in enumerate(files) if i == 0 or files[i - 1] != f]  # one entry per file visited
    names = [str(Path(f).relative_to(ROOT)) for f in walk]
    outside = [n for n in names if not n.startswith("radius/")]
    assert not outside, f"the walk leaves wulff/radius/: {' -> '.join(names)}"
    assert len(set(walk)) == len(walk), f"the walk returns to a file it left: {' -> '.join(names)}"


def _candidates():
    for make, adversary in PAIRS:
        yield from wulff.best_certificate(make(), adversary).certificates


def test_every_engine_hands_over_a_kernel_that_declares_the_contract():
    from wulff.radius.kernel import RadiusKernel

    for cert in _candidates():
        kernel = cert.kernel
        assert isinstance(kernel, RadiusKernel), cert.method
        assert isinstance(kernel.finite_above_half, bool) and isinstance(kernel.has_torch, bool)
        assert kernel.guarantee.strip(), f"{cert.method}: no statement of what is proved"
        rho = np.array([0.6, 0.9, 0.99])
        unit = np.asarray(kernel.unit(rho), dtype=float)
        # the certificate is lam R_unit / C rounded toward zero: below, and within a few ulps
        expected = unit * cert.lam / float(cert.conversion)
        got = cert.radius(rho)
        assert np.all(got <= expected) and np.allclose(got, expected, rtol=1e-12, atol=0), cert.method


class _Recorder:
    """A kernel written from the contract alone: R_unit(rho) = values(rho), recording what it is asked."""

    finite_above_half = False
    guarantee = "test kernel"
    slope_unit = None
    slope_unit_torch = None
    has_torch = True

    def __init__(self, values):
        self.values, self.calls = values, []

    def unit(self, rho):
        return self.values(np.asarray(rho, dtype=float))

    def scaled(self, rho, factor, lo=None):
        self.calls.append((type(rho).__name__, factor))
        lam, c = (1.0, 1) if factor == 1 else factor
        if isinstance(rho, torch.Tensor):
            return torch.as_tensor(self.values(rho.cpu().numpy()) * lam / float(c), dtype=torch.float64)
        return self.values(rho) * lam / float(c)


def test_the_certificate_applies_scale_conversion_and_checks_once_for_numpy_and_torch():
    from wulff.certificate import Certificate

    kernel = _Recorder(lambda rho: 2.0 * (rho - 0.5))
    cert = Certificate(adversary="l1", method="recorder", lam=2.0, d=4, radius_unit=kernel)
    assert cert.kernel is kernel
    expected = np.where(RHO > 0.5, 2.0 * 2.0 * (RHO - 0.5), 0.0)
    np.testing.assert_allclose(cert.radius(RHO), expected, rtol=1e-15)
    np.testing.assert_allclose(cert.radius(torch.tensor(RHO)).numpy(), expected, rtol=1e-15)
    # the tensor reached the kernel as a tensor (no trip through numpy), with the same (lam, C)
    assert {call[0] for call in kernel.calls} == {"ndarray", "Tensor"}
    assert {call[1] for call in kernel.calls} == {(2.0, 1)}
    # a conversion l1 -> l2 divides by C = d^(1/2) = 2, passed to the kernel exactly
    converted = cert.converted("l2")
    assert converted.kernel is kernel
    np.testing.assert_allclose(converted.radius(torch.tensor(RHO)).numpy(), expected / 2, rtol=1e-15)
    assert kernel.calls[-1][1][1] == 2


def test_the_output_checks_are_the_same_for_numpy_and_torch():
    """The same checks on the same values, whichever array library the kernel computed them in (a
    tensor's radii are checked where the kernel computed them, not after a trip through numpy)."""
    from wulff.certificate import Certificate

    def evaluate(values, rho, as_tensor):
        kernel = _Recorder(values)
        cert = Certificate(adversary="l2", method="bad", lam=1.0, d=2, radius_unit=kernel)
        try:
            out = cert.radius(torch.tensor(rho) if as_tensor else np.asarray(rho))
        finally:  # the kernel saw the caller's array type
            assert {call[0] for call in kernel.calls} <= {"Tensor" if as_tensor else "ndarray"}
        return out.numpy() if as_tensor else out

    for as_tensor in (False, True):
        with pytest.raises(ArithmeticError, match="NaN"):
            evaluate(lambda rho: np.full(rho.shape, np.nan), [0.7], as_tensor)
        with pytest.raises(ArithmeticError, match="infinite radius at rho < 1"):
            evaluate(lambda rho: np.full(rho.shape, np.inf), [0.7], as_tensor)
        assert evaluate(lambda rho: np.full(rho.shape, 1e-310), [0.7, 0.8], as_tensor).tolist() == [0.0, 0.0]
        assert evaluate(lambda rho: np.full(rho.shape, -1.0), [0.7], as_tensor).tolist() == [0.0]
        assert evaluate(lambda rho: np.where(rho >= 1.0, np.inf, 1.0), [0.4, 1.0], as_tensor).tolist() == \
            [0.0, math.inf]
        with pytest.raises(ValueError, match="rho must lie in"):
            evaluate(lambda rho: rho, [0.7, 1.5], as_tensor)


def test_the_engines_share_their_numeric_pieces_from_below():
    """One TangentTable, one OnDevice, one factor_below: the engines import them from wulff.radius."""
    import wulff.certificate
    import wulff.diffmethod.envelope as envelope
    import wulff.uniform
    from wulff.radius import kernel, numeric

    assert envelope.TangentTable is kernel.TangentTable and wulff.uniform.TangentTable is kernel.TangentTable
    assert envelope.OnDevice is numeric.OnDevice and envelope.Locator is numeric.Locator
    assert wulff.certificate.factor_below is numeric.factor_below
