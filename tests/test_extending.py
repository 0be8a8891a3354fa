"""docs/extending.md runs as written (issue 26, section 4): its ```python blocks are executed in order in
one namespace, as a reader would paste them, and what they built is then checked against facts derived
here by hand (the hyperbolic secant law, Theorem G.6) or against the built-in pieces they mirror."""
from __future__ import annotations

import contextlib
import io
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.integrate import quad

import wulff
from wulff import catalog, selector
from wulff.certificate import Certificate
from wulff.distributions import registry
from wulff.train.objectives import build_objective

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
TEXT = GUIDE.read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, re.S)


def _forget() -> None:
    """Undo what the guide registered, whatever block it stopped at (the guide's last block does the
    same; this is for a run that failed before it)."""
    from wulff.train.objectives import unregister_objective

    if "hyperbolic secant" in selector.engine_names():
        selector.unregister_engine("hyperbolic secant")
    if "worst" in catalog.OBJECTIVES:
        unregister_objective("worst")
    if catalog.canonical_family("LogCosh") is not None:
        registry.unregister("LogCosh")


@pytest.fixture(scope="module")
def guide(tmp_path_factory):
    """The guide's namespace after every block ran, in a fresh folder and disk cache."""
    folder = tmp_path_factory.mktemp("guide")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("WULFF_CACHE_DIR", str(folder / "cache"))
        scope: dict = {"__name__": "extending_guide"}
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                for block in BLOCKS:
                    exec(compile(block, str(GUIDE), "exec"), scope)
        finally:
            _forget()
        yield scope | {"_folder": folder, "_printed": printed.getvalue()}


def test_the_guide_has_a_worked_example_per_extension():
    headings = re.findall(r"^## (.+)$", TEXT, re.M)
    assert headings[:3] == ["1. A noise family", "2. A training objective", "3. A certificate engine"]
    assert len(BLOCKS) >= 6


def test_the_guide_runs_and_removes_what_it_added(guide):
    assert catalog.canonical_family("LogCosh") is None and "worst" not in catalog.OBJECTIVES
    assert selector.engine_names() == ("differential method", "level set method", "uniform noise")


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


def test_the_command_line_lists_and_ranks_the_family(guide):
    """``wulff distributions`` lists it with its default b = 1; ``wulff compare`` ranks it, and after part 3
    names the new engine as the method of its winning radii."""
    lines = guide["_printed"].splitlines()
    assert any(line.split()[:2] == ["LogCosh", "b=1"] for line in lines)
    assert sum(line.startswith("LogCosh(b=1) ") for line in lines) == 2  # one row in each comparison
    assert "rho 0.9: LogCosh(b=1) by hyperbolic secant: closed form (hyperbolic secant)" in guide["_printed"]
    assert "b must satisfy b > 0; got b = 0" in lines


def test_the_launcher_script_runs_the_command_line_with_the_extensions(tmp_path):
    """The guide's ```text launcher, saved as a script beside a module holding the guide's family class,
    runs ``wulff distributions`` in a fresh interpreter that lists the family."""
    import subprocess
    import sys

    launcher = re.search(r"```text\n(.*?)```", TEXT, re.S).group(1)
    family = BLOCKS[0].split("\nq = ")[0]
    (tmp_path / "my_extensions.py").write_text(family, encoding="utf-8")
    (tmp_path / "mywulff.py").write_text(launcher, encoding="utf-8")
    env = {**os.environ, "WULFF_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "mywulff.py", "distributions", "--d", "4"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert any(line.split()[:2] == ["LogCosh", "b=1"] for line in done.stdout.splitlines())


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


# -- part 3: the engine ----------------------------------------------------------------------------------
def _secant_reference(lam: float, rho: float) -> float:
    """lam * integral of pi / sin(pi p) over [1 - rho, 1/2] (Theorem G.6 with Phi(p) = sin(pi p) / pi), by
    adaptive quadrature: independent of both the closed form and the differential method's engine."""
    return lam * quad(lambda p: math.pi / math.sin(math.pi * p), 1 - rho, 0.5, epsabs=0, epsrel=1e-13)[0]


def test_the_engine_is_a_sound_bound_of_theorem_g6(guide):
    q, rho = guide["q"], np.array([0.5 + 1e-9, 0.6, 0.9, 0.99, 0.999999])
    reference = np.array([_secant_reference(q.lam, r) for r in rho])
    radii = guide["hyperbolic_secant"](q, "l1").radius(rho)
    assert np.all(radii <= reference) and np.all(radii >= reference * (1 - 1e-9))
    np.testing.assert_allclose(guide["secant_radii"], reference[1:4], rtol=1e-9)
    assert np.all(guide["secant_radii"] <= reference[1:4])


def test_the_registered_engine_wins_where_it_is_larger(guide):
    """While registered it gave the radius (the quadrature of the differential method is a little lower)."""
    assert guide["secant_winner"].item() == "hyperbolic secant: closed form (hyperbolic secant)"
    differential = wulff.certified_radius(guide["q"], np.array([0.6, 0.9, 0.99]), "l1")   # engine removed
    assert np.all(guide["secant_radii"] >= differential) and np.all(differential > 0.999 * guide["secant_radii"])
    assert wulff.best_certificate(guide["q"], "l1").winner(0.9).item().startswith("differential method")


def test_the_engine_only_answers_what_it_handles(guide):
    engine, q = guide["hyperbolic_secant"], guide["q"]
    for args in ((q, "l2"), (guide["q2"], "l1"), (wulff.distributions.Laplace(8, sigma=0.5), "l1")):
        with pytest.raises(NotImplementedError):
            engine(*args)


def test_the_engine_runs_in_torch_with_the_slope_of_theorem_g6(guide):
    """The torch twin gives the numpy radii, and dR/drho = lam / Phi(1 - rho) = lam pi / sin(pi rho)."""
    q = guide["q"]
    certificate = guide["hyperbolic_secant"](q, "l1")
    rho = torch.tensor([0.4, 0.6, 0.9], dtype=torch.float64, requires_grad=True)
    radius = certificate.radius(rho)
    radius.sum().backward()
    np.testing.assert_allclose(radius.detach().numpy(), certificate.radius(rho.detach().numpy()), rtol=1e-15)
    expected = [0.0] + [q.lam * math.pi / math.sin(math.pi * r) for r in (0.6, 0.9)]
    np.testing.assert_allclose(rho.grad.numpy(), expected, rtol=1e-9)


# -- registering engines -----------------------------------------------------------------------------------
def _half_laplace(q, adversary):
    """Half the Laplace l1 radius, lam log(1 / (2 (1 - rho))) / 2: sound, never the winner."""
    if not (isinstance(q, wulff.distributions.Laplace) and adversary == "l1"):
        raise NotImplementedError
    return Certificate(adversary="l1", method="half", lam=q.lam, d=q.d,
                       radius_unit=lambda rho: -np.log(2 * (1 - rho)) / 2 * (1 - 1e-10))


def test_registering_an_engine_forgets_the_best_certificates_built_before():
    """Against l2 (no exact certificate there) the new engine's l1 radius joins, converted (/sqrt(d))."""
    q = wulff.distributions.Laplace(5, lam=1.0)
    before = wulff.best_certificate(q, "l2")
    selector.register_engine("half laplace", _half_laplace)
    try:
        after = wulff.best_certificate(q, "l2")
        assert after is not before and sum(label.startswith("half laplace: ") for label in after.labels) == 1
        assert not after.winner(0.9).item().startswith("half laplace")
    finally:
        selector.unregister_engine("half laplace")
    assert not any(label.startswith("half laplace") for label in wulff.best_certificate(q, "l2").labels)


@pytest.mark.parametrize("call,error,match", [
    (lambda: selector.register_engine("differential method", _half_laplace), ValueError, "already registered"),
    (lambda: selector.register_engine("", _half_laplace), ValueError, "engine's name"),
    (lambda: selector.register_engine(3, _half_laplace), ValueError, "engine's name"),
    (lambda: selector.register_engine("odd", "not a function"), TypeError, "engine must be a function"),
    (lambda: selector.unregister_engine("level set method"), ValueError, "built-in engine"),
    (lambda: selector.unregister_engine("nowhere"), ValueError, "no engine named 'nowhere'"),
])
def test_bad_engine_registrations_are_refused_with_a_reason(call, error, match):
    with pytest.raises(error, match=match):
        call()
    assert selector.engine_names() == ("differential method", "level set method", "uniform noise")
