"""docs/extending.md runs as written (issue 26, section 4): its ```python blocks are executed in order in
one namespace, as a reader would paste them, and what they built is then checked against facts derived
here by hand (the hyperbolic secant law, Theorem G.6) or against the built-in pieces they mirror."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import wulff
from wulff import catalog
from wulff.distributions import registry
from wulff.train.objectives import build_objective

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
TEXT = GUIDE.read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, re.S)


def _forget(scope: dict) -> None:
    """Undo what the guide registered, whatever block it stopped at (the guide's last block does the
    same; this is for a run that failed before it)."""
    from wulff.train.objectives import unregister_objective

    if catalog.canonical_family("LogCosh") is not None:
        registry.unregister("LogCosh")
    if "worst" in catalog.OBJECTIVES:
        unregister_objective("worst")
    for cleanup in scope.get("_test_cleanups", ()):
        cleanup()


@pytest.fixture(scope="module")
def guide(tmp_path_factory):
    """The guide's namespace after every block ran, in a fresh folder and disk cache."""
    folder = tmp_path_factory.mktemp("guide")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("WULFF_CACHE_DIR", str(folder / "cache"))
        scope: dict = {"__name__": "extending_guide"}
        try:
            for block in BLOCKS:
                exec(compile(block, str(GUIDE), "exec"), scope)
        finally:
            _forget(scope)
        yield scope | {"_folder": folder}


def test_the_guide_has_a_worked_example_per_extension():
    headings = re.findall(r"^## (.+)$", TEXT, re.M)
    assert headings[:3] == ["1. A noise family", "2. A training objective", "3. A certificate engine"]
    assert len(BLOCKS) >= 6


def test_the_guide_runs_and_removes_what_it_added(guide):
    assert catalog.canonical_family("LogCosh") is None and "worst" not in catalog.OBJECTIVES


# -- part 1: the family ----------------------------------------------------------------------------------
def test_the_family_has_the_hyperbolic_secant_scale(guide):
    """b = 1: X with density sech(x) / pi has E X^2 = pi^2 / 4, so sigma = lam pi / 2."""
    q = guide["q"]
    assert q.params == {"b": 1.0} and q.d == 8
    assert q.lam == pytest.approx(2 * 0.5 / math.pi, rel=1e-9)


def test_the_family_radius_has_the_slope_of_theorem_g6(guide):
    """Theorem G.6: R'(rho) = lam / Phi(1 - rho); at rho = 1/2, Phi(1/2) = E[gamma_+] with gamma =
    tanh(X) (b = 1, against l1 the worst direction is a coordinate) and E|tanh X| = 2/pi for X ~ sech / pi,
    so R'(1/2) = lam pi. The chord over [1/2, 1/2 + 1e-4] is that slope to 1e-3 (R is smooth there)."""
    q = guide["q"]
    eps = 1e-4
    chord = float(wulff.certified_radius(q, 0.5 + eps, "l1")) / eps
    assert chord == pytest.approx(q.lam * math.pi, rel=1e-3)
    radii = guide["radii"]
    assert np.all(np.diff(radii) > 0) and radii[0] > 0


def test_the_family_radius_respects_the_no_go_bound(guide):
    """Theorem 7.3: no certificate from rho alone exceeds sigma sqrt(rho / (1 - rho)) against l1."""
    rho = np.array([0.6, 0.9, 0.99])
    assert np.all(guide["radii"] < 0.5 * np.sqrt(rho / (1 - rho)))


def test_the_family_rule_is_checked_as_declared(guide):
    with pytest.raises(ValueError, match=r"^b must satisfy b > 0; got b = 0"):
        guide["LogCosh"](8, b=0, sigma=0.5)
    assert guide["q2"].params == {"b": 2.0} and type(guide["q2"]) is guide["LogCosh"]


# -- part 2: the objective -------------------------------------------------------------------------------
def _objective_guide_parts(guide):
    from wulff.train.objectives import register_objective, unregister_objective

    info = guide["worst_of_m"]
    register_objective("worst", catalog.ObjectiveInfo({"m": 4}, ("m",), ("m",), {"m": 64}), info)
    return unregister_objective


def test_the_objective_with_one_copy_is_noise_augmentation(guide):
    """m = 1: the worst of one noisy copy is the plain noisy cross-entropy of the built-in ``noise``."""
    unregister = _objective_guide_parts(guide)
    try:
        q = guide["q"]
        torch.manual_seed(0)
        model = torch.nn.Linear(8, 3)
        x, y = torch.rand(6, 8), torch.tensor([0, 1, 2, 0, 1, 2])
        worst = build_objective("worst", {"m": 1}, q).loss(model, q, x, y, torch.Generator().manual_seed(3))
        plain = build_objective("noise", {}, q).loss(model, q, x, y, torch.Generator().manual_seed(3))
        assert torch.allclose(worst, plain, rtol=1e-6, atol=0)
        three = build_objective("worst", {"m": "3"}, q).loss(model, q, x, y, torch.Generator().manual_seed(4))
        noise = q.sample(18, generator=torch.Generator().manual_seed(4)).view(3, 6, 8)
        by_hand = torch.stack([F.cross_entropy(model(x + noise[j]), y, reduction="none") for j in range(3)])
        assert torch.allclose(three, by_hand.max(dim=0).values.mean(), rtol=1e-6, atol=0)
        for bad in ("0", "1.5", "100"):
            with pytest.raises(ValueError, match="objective worst: m must"):
                build_objective("worst", {"m": bad}, q)
    finally:
        unregister("worst")


def test_the_run_trained_with_the_family_and_the_objective(guide):
    meta = torch.load(guide["_folder"] / "runs" / "logcosh-worst" / "checkpoint.pt", weights_only=True)["meta"]
    assert meta["objective"] == {"name": "worst", "params": {"m": 2}}
    assert meta["distribution"]["name"] == "LogCosh" and meta["distribution"]["params"] == {"b": 2.0}
    smoothed = guide["smoothed"]
    assert smoothed.q.params == {"b": 2.0} and smoothed.q.d == 64
    # b = 2: cosh(x/2)^-2 is the logistic density, variance pi^2 / 3, so sigma = lam pi / sqrt(3)
    assert smoothed.q.lam == pytest.approx(0.5 * math.sqrt(3) / math.pi, rel=1e-9)
