"""One declaration per family and per objective (issue 26, section 3): the constructors, the registry,
training, the advisor, ``wulff distributions`` and ``wulff train --help`` all read the declarations of
wulff.catalog, so a family or objective declared once (here: outside wulff) appears everywhere."""
from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch
import torch.nn.functional as F

import wulff
import wulff.distributions as D
from wulff import catalog
from wulff.advisor import compare, wulff_crystal
from wulff.catalog import FamilyInfo, ObjectiveInfo, Parameter, evaluate_bound
from wulff.cli import build_parser, main
from wulff.distributions import registry
from wulff.errors import ParameterError
from wulff.train.objectives import build_objective, natural_adversary, register_objective, unregister_objective

D_ = 4


def _example_values(info: FamilyInfo, d: int) -> dict[str, float]:
    return {p.name: p.example_at(d) for p in info.parameters}


@pytest.mark.parametrize("name", catalog.FAMILY_NAMES)
def test_constructors_check_each_declared_rule_with_its_declared_message(name):
    """At its declared bound each parameter is refused with the rule the declaration states (a number
    just inside the bound is accepted); the rule's value is the declared arithmetic at d and the others."""
    info = catalog.FAMILIES[name]
    cls = registry.family(name)
    for parameter in info.parameters:
        values = _example_values(info, D_)
        context = {"d": D_, **info.fixed, **values}
        for op, bound in ((">", parameter.above), ("<", parameter.below)):
            if bound is None:
                continue
            limit = evaluate_bound(bound, context)
            with pytest.raises(ValueError) as error:
                cls(D_, lam=1.0, **{**values, parameter.name: limit})
            assert str(error.value) == f"{parameter.name} must satisfy {parameter.rule(context)}; " \
                                       f"got {parameter.name} = {limit!r}"
            assert f"{parameter.name} {op} {bound}" in str(error.value)
            inside = limit + (1.0 if op == ">" else -1.0)
            assert cls(D_, lam=1.0, **{**values, parameter.name: inside}).params[parameter.name] == inside


@pytest.mark.parametrize("name", catalog.FAMILY_NAMES)
def test_descriptions_state_the_declared_rules(name):
    info = catalog.FAMILIES[name]
    text = info.description()
    assert text.startswith(info.summary)
    for parameter in info.parameters:
        assert parameter.statement() in text.split(", ")
    assert "p > 0" in catalog.FAMILIES["ExpP"].description().split(", ")
    assert {"a > d/k", "k = 1"} <= set(catalog.FAMILIES["PowerInf"].description().split(", "))  # a > d


def test_a_changed_declaration_changes_the_constructor(monkeypatch):
    stricter = FamilyInfo("Pareto", "iid", (Parameter("a", above="d/2", example=4.0),), sigma_finite=("a", "2"))
    monkeypatch.setattr(D.Pareto, "declaration", stricter)
    with pytest.raises(ValueError, match=r"a must satisfy a > d/2 = 3; got a = 2.5"):
        D.Pareto(6, a=2.5, lam=1.0)
    assert D.Pareto(6, a=3.5, lam=1.0).params == {"a": 3.5}


def test_signatures_come_from_the_declarations():
    import inspect

    assert list(inspect.signature(D.Power2).parameters) == ["d", "a", "k", "lam", "sigma"]
    assert inspect.signature(D.Power2).parameters["k"].default == 1.0
    assert list(inspect.signature(D.Exp1).parameters) == ["d", "k", "lam", "sigma"]
    assert D.Power2(5, 20, 2, None, 0.5).params == {"a": 20.0, "k": 2.0}  # positional, as before
    with pytest.raises(TypeError, match=r"ExpP\(d: int, p: float.*missing a required argument: 'p'"):
        D.ExpP(4, lam=1.0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'q'"):
        D.ExpP(4, p=1.0, q=2.0, lam=1.0)


def test_bounds_are_arithmetic_only():
    assert evaluate_bound("(d + 2)/k", {"d": 4, "k": 2}) == 3.0
    assert evaluate_bound("-d * 2 - 1", {"d": 3}) == -7.0
    assert catalog.bound_names("(d + 2)/k") == {"d", "k"}
    for text in ("__import__('os')", "d.real", "d ** 2", "[d]", "d if d else 1", "'d'", "lam(d)"):
        with pytest.raises(ValueError, match="declared bound"):
            evaluate_bound(text, {"d": 1.0})
    with pytest.raises(ValueError, match="needs k"):
        evaluate_bound("d/k", {"d": 4})


@pytest.mark.parametrize("make,match", [
    (lambda: FamilyInfo("Odd", "lattice"), "structure must be one of iid, radial, uniform"),
    (lambda: FamilyInfo("Odd", "iid", natural_adversary="l3"), "natural_adversary must be one of l1, l2, linf"),
    (lambda: FamilyInfo("Odd", "radial"), "a radial or uniform family declares its norm"),
    (lambda: FamilyInfo("Odd", "iid", norm=2), "an iid one none"),
    (lambda: FamilyInfo("Odd", "uniform", norm=3), "declares its norm"),
    (lambda: FamilyInfo("Odd", "iid", level_sets="l2"), "level_sets must be 1, 2, 'inf' or None"),
    (lambda: FamilyInfo("Odd", "iid", (Parameter("a", above="b", example=1),)), "rule of a reads b"),
    (lambda: FamilyInfo("Odd", "iid", (Parameter("a", default=1), Parameter("a", default=1))), "must be distinct"),
    (lambda: FamilyInfo("Odd", "iid", (Parameter("a", above="0"),)), "a needs a default or an example value"),
    (lambda: Parameter("lam"), "other than d, lam, sigma"),
    (lambda: Parameter("a", above="import os"), "declared bound"),
    (lambda: catalog.register_family(FamilyInfo("gaussian", "iid")), "'Gaussian' is already declared"),
    (lambda: catalog.unregister_family("Laplace"), "built-in family"),
    (lambda: catalog.register_objective("macer", ObjectiveInfo({})), "'macer' is already declared"),
    (lambda: catalog.register_objective("Bad-Name", ObjectiveInfo({})), "lower-case identifier"),
])
def test_bad_declarations_are_refused_with_a_reason(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_the_paper_pairings_are_declared():
    """docs/objectives.md (the natural norm of each noise) and Section 5 (the Wulff crystals)."""
    natural = {"l2": {"Gaussian", "Exp2", "Power2", "UniformBall"},
               "l1": {"Laplace", "Exp1", "ExpP", "Pareto", "UniformCube"}, "linf": {"ExpInf", "PowerInf"}}
    for adversary, names in natural.items():
        assert {n for n in catalog.FAMILY_NAMES if catalog.natural_adversary_of(n) == adversary} == names
    assert catalog.natural_adversary_of("gaussian") == "l2" and catalog.natural_adversary_of("Cauchy") is None
    assert set(wulff_crystal("l1")[1]) == {"UniformCube", "ExpInf", "PowerInf"}
    assert set(wulff_crystal("l2")[1]) == set(wulff_crystal("linf")[1]) == {"UniformBall", "Gaussian", "Exp2",
                                                                             "Power2"}


# -- a family declared outside wulff ---------------------------------------------------------------------
@pytest.fixture()
def cubed():
    """q ∝ exp(-||x/lam||_inf^c): a radial linf family declared by its class alone."""

    class Cubed(D.NamedFamily, D.Radial):
        """q ∝ exp(-||x/lam||_inf^c), c > 0 (ExpInf with k = c, j = 0)."""

        declaration = FamilyInfo("Cubed", "radial", (Parameter("c", above="0", default=3.0),), norm="inf",
                                 summary="exp(-||x/lam||_inf^c)", natural_adversary="l1", level_sets="inf")

        @staticmethod
        def profile_formula(c) -> sp.Expr:
            return D.r ** c

    yield Cubed
    registry.unregister("Cubed")
    assert "Cubed" not in registry.family_names() and "Cubed" not in catalog.FAMILIES


def test_a_declared_family_is_built_checked_and_listed_everywhere(cubed, capsys):
    assert registry.family("CUBED") is cubed is D.Cubed
    assert registry.family_names()[-1] == "Cubed" and registry.shape_parameters("cubed") == ("c",)
    q = registry.build("cubed", 5, sigma=0.5, c="2")
    assert isinstance(q, D.Radial) and q.structural_class is D.Radial and q.params == {"c": 2.0}
    assert q.structure_key(scale=False) == D.ExpInf(5, k=2, lam=1.0).structure_key(scale=False)
    assert registry.from_spec(registry.spec(q)).params == q.params
    with pytest.raises(ValueError, match=r"c must satisfy c > 0; got c = 0"):
        cubed(5, c=0, lam=1.0)
    with pytest.raises(ParameterError, match="Cubed has no shape parameter k"):
        registry.build("cubed", 5, lam=1.0, k=2)
    assert natural_adversary(q) == "l1"  # declared: a plain linf radial density would get linf
    assert natural_adversary(D.Radial(D.r ** 2, "inf", 5, lam=1.0)) == "linf"
    rho = np.array([0.7, 0.9])
    np.testing.assert_allclose(wulff.certified_radius(q, rho, "l1"),
                               wulff.certified_radius(D.ExpInf(5, k=2, sigma=0.5), rho, "l1"), rtol=1e-9)
    assert "Cubed" in wulff_crystal("l1")[1]
    c = compare("l1", 5, 0.5, families=["cubed", "laplace"], rho=(0.7,))
    assert [e.family for e in c.entries] == ["Cubed", "Laplace"] and c.entries[0].radius[0] > 0
    assert "Families with that shape here: Cubed." in c.story()
    assert main(["distributions", "--d", "5"]) == 0
    assert any(line.startswith("Cubed ") and "c=3" in line for line in capsys.readouterr().out.splitlines())


def test_a_family_class_must_match_its_declaration():
    with pytest.raises(ValueError, match="does not match its declaration"):
        class Wrong(D.NamedFamily, D.IID):
            declaration = FamilyInfo("Wrong", "radial", norm=2)
    with pytest.raises(ParameterError, match="unknown distribution 'Wrong'"):
        registry.family("Wrong")


# -- an objective declared outside wulff -----------------------------------------------------------------
def _smoothed_nll(objective, model, q, x, y, generator, **_):
    """CE of the mean of m noisy softmaxes (the ``direct`` loss, written here as an extension would)."""
    m = int(objective.params["m"])
    noisy = torch.stack([model(q.perturb(x, generator=generator)) for _ in range(m)])
    return F.nll_loss(torch.log(F.softmax(noisy, dim=-1).mean(dim=0)), y)


@pytest.fixture()
def toy_objective():
    register_objective("toy", ObjectiveInfo({"m": 3}, ("m",), ("m",), {"m": 8}, summary="a toy smoothed loss"),
                       _smoothed_nll)
    yield "toy"
    unregister_objective("toy")
    assert "toy" not in catalog.OBJECTIVES


def _train_parser_action(dest: str):
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return next(a for a in sub.choices["train"]._actions if a.dest == dest)


def test_a_declared_objective_is_offered_by_wulff_train(toy_objective):
    choices = _train_parser_action("objective")
    assert "toy" in choices.choices and "toy (a toy smoothed loss)" in choices.help
    assert "toy: m" in _train_parser_action("objective_param").help
    args = build_parser().parse_args(["train", "--sigma", "1", "--out", "o", "--objective", "toy"])
    assert args.objective == "toy"


def test_a_declared_objective_is_built_checked_and_trains(toy_objective):
    q = D.Laplace(6, sigma=0.5)
    objective = build_objective("TOY", {"m": "2"}, q)
    assert objective.spec() == {"name": "toy", "params": {"m": 2}}
    with pytest.raises(ValueError, match=r"objective toy: m must be > 0 and <= 8; got '9'"):
        build_objective("toy", {"m": "9"}, q)
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3)
    x, y = torch.rand(5, 6), torch.tensor([0, 1, 2, 1, 0])
    loss = objective.loss(model, q, x, y, torch.Generator().manual_seed(1))
    expected = _smoothed_nll(objective, model, q, x, y, torch.Generator().manual_seed(1))
    assert math.isfinite(float(loss.detach())) and torch.equal(loss, expected)
    loss.backward()
    assert model.weight.grad is not None


def test_a_declared_objective_without_a_loss_is_named():
    catalog.register_objective("lossless", ObjectiveInfo({}))
    try:
        with pytest.raises(ValueError, match="objective lossless is declared but has no loss"):
            build_objective("lossless")
    finally:
        catalog.unregister_objective("lossless")
    with pytest.raises(ValueError, match="built-in objective"):
        unregister_objective("noise")


def test_wulff_train_takes_a_declared_family_and_objective(cubed, toy_objective, tmp_path, capsys):
    from toys import run_cli

    code, out, err = run_cli(capsys, "train", "--noise", "cubed", "--param", "c=2", "--sigma", "0.5", "--epochs",
                             "1", "--batch-size", "512", "--objective", "toy", "--objective-param", "m=2",
                             "--out", tmp_path / "run", "--no-progress", "--threads", "1")
    assert code == 0, err
    meta = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["meta"]
    assert meta["objective"] == {"name": "toy", "params": {"m": 2}}
    assert meta["distribution"]["name"] == "Cubed" and meta["distribution"]["params"] == {"c": 2.0}
