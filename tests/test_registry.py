"""One registry of the named families: classes, names in any case, strict parameters, specs."""
import json
import pickle

import numpy as np
import pytest

import wulff
import wulff.distributions as D
from wulff.catalog import FAMILIES
from wulff.cli import main
from wulff.diffmethod import derive
from wulff.distributions import registry
from wulff.errors import ParameterError, UserError
from wulff.train import named_distribution

D_ = 6  # a dimension every example value suits


def example(name, d=D_, **scale):
    return registry.build(name, d, examples=True, **(scale or {"sigma": 0.5}))


@pytest.mark.parametrize("name", registry.family_names())
def test_every_name_in_any_case_builds_an_instance_of_its_class(name):
    cls = registry.family(name)
    assert cls is getattr(D, name) and cls.__name__ == name
    for spelling in (name, name.lower(), name.upper()):
        assert registry.family(spelling) is cls
        q = example(spelling)
        assert isinstance(q, cls) and isinstance(q, D.NamedFamily) and isinstance(q, D.Distribution)
        assert q.name == name
    structure = {"iid": D.IID, "radial": D.Radial, "uniform": D.Uniform}[FAMILIES[name].structure]
    assert isinstance(q, structure) and q.structural_class is structure


def test_isinstance_distinguishes_families():
    q = D.Laplace(3, lam=0.5)
    assert isinstance(q, D.Laplace) and isinstance(q, D.IID)
    assert not isinstance(q, D.Gaussian)
    assert isinstance(D.ExpInf(3, lam=1.0), D.ExpRadialFamily)
    assert isinstance(D.Power2(3, a=9, lam=1.0), D.PowerRadialFamily)
    assert not isinstance(D.IID("t**2/2", 3, lam=1.0), D.Gaussian)


@pytest.mark.parametrize("name", registry.family_names())
def test_repr_round_trips(name):
    q = example(name)
    back = eval(repr(q), vars(D))  # noqa: S307  (our own repr, in the distributions namespace)
    assert type(back) is type(q)
    assert (back.d, back.params, back.lam) == (q.d, q.params, q.lam)
    assert back.psi == q.psi
    assert repr(D.Laplace(d=3, lam=0.5)) == "Laplace(d=3, lam=0.5)"


@pytest.mark.parametrize("name", registry.family_names())
def test_spec_round_trip_gives_the_same_radii(name):
    q = example(name, d=3)
    data = registry.spec(q)
    data = json.loads(json.dumps(data))  # plain JSON-able values only
    back = registry.from_spec(data)
    assert type(back) is type(q) and back.params == q.params and back.lam == q.lam
    rho = np.array([0.6, 0.9, 0.99])
    compared = 0
    for adversary in ("l1", "l2", "linf"):
        try:
            expected = derive(q, adversary).radius(rho)
        except NotImplementedError:
            continue
        np.testing.assert_array_equal(derive(back, adversary).radius(rho), expected)
        compared += 1
    if not compared:  # uniform noise: the level-set certificate
        expected = wulff.certified_radius(q, rho, "l1")
        np.testing.assert_array_equal(wulff.certified_radius(back, rho, "l1"), expected)


def test_cache_keys_name_the_structure_not_the_family():
    from wulff.diffmethod.derive import cache_key

    assert cache_key(D.Gaussian(3, lam=1.0), "l1") == cache_key(D.IID("t**2/2", 3, lam=2.0), "l1")
    assert cache_key(D.ExpInf(3, lam=1.0), "l1")[2][0] == "radial"  # the structure key, not "ExpInf"
    assert cache_key(D.ExpInf(3, lam=1.0), "l1") == cache_key(D.Radial("r", "inf", 3, lam=0.5), "l1")


def test_pickle_keeps_the_class():
    q = D.ExpInf(4, k=2, j=1, sigma=0.3)
    back = pickle.loads(pickle.dumps(q))
    assert type(back) is D.ExpInf and back.params == q.params and back.lam == q.lam


def test_shape_and_default_parameters():
    assert registry.shape_parameters("expp") == ("p",)
    assert registry.shape_parameters("Exp2") == ("k", "j")
    assert registry.shape_parameters("Gaussian") == ()
    assert registry.default_parameters("ExpInf") == {"k": 1.0, "j": 0.0}
    assert registry.default_parameters("PowerInf") == {}
    assert D.ExpInf(5, lam=1.0).params == registry.build("expinf", 5, lam=1.0).params == {"k": 1.0, "j": 0.0}


def test_a_missing_parameter_without_default_is_named():
    with pytest.raises(ParameterError, match="PowerInf needs its shape parameter a") as info:
        named_distribution("PowerInf", 10, sigma=1.0)
    assert isinstance(info.value, ValueError) and isinstance(info.value, UserError)
    for name, key in (("ExpP", "p"), ("Pareto", "a"), ("power2", "a")):
        with pytest.raises(ParameterError, match=f"needs its shape parameter {key}"):
            registry.build(name, 4, sigma=1.0)


def test_examples_fill_every_missing_parameter_at_any_dimension():
    for d in (1, 2, 7, 100):
        for name in registry.family_names():
            q = registry.build(name, d, sigma=1.0, examples=True)  # sigma finite: sound examples
            assert set(q.params) == set(registry.shape_parameters(name))
    assert registry.build("ExpP", 3, lam=1.0, examples=True).params == {"p": 1.5}
    assert registry.build("PowerInf", 3, lam=1.0, examples=True).params == {"a": 13.0}
    assert registry.build("Pareto", 3, lam=1.0, examples=True, a=3).params == {"a": 3.0}  # given wins


def test_unknown_parameters_and_names_are_rejected():
    with pytest.raises(ParameterError, match="Laplace has no shape parameter k.*none"):
        registry.build("laplace", 3, lam=1.0, k=2)
    with pytest.raises(ParameterError, match="no shape parameter zz.*k, j"):
        registry.build("ExpInf", 3, lam=1.0, zz=1)
    with pytest.raises(ParameterError, match="unknown distribution 'Cauchy'.*Gaussian"):
        registry.family("Cauchy")
    with pytest.raises(ParameterError, match="only a named family"):
        registry.spec(D.IID("t**4", 3, lam=1.0))
    with pytest.raises(ParameterError, match="unknown extra"):
        registry.from_spec({"name": "Gaussian", "d": 3, "lam": 1.0, "extra": 1})


def test_string_parameters_are_read_as_numbers_never_evaluated():
    q = registry.build("Power2", 5, sigma=0.5, a="20", k="2")
    assert q.params == {"a": 20.0, "k": 2.0}
    assert q.params == D.Power2(5, a=20, k=2, sigma=0.5).params
    for bad in ("2*3", "d + 10", "nan", "inf", "__import__('os')"):
        with pytest.raises(ParameterError, match="shape parameter a must be a finite number"):
            registry.build("Pareto", 3, lam=1.0, a=bad)
    with pytest.raises(ParameterError, match="real number"):
        registry.build("Pareto", 3, lam=1.0, a=[3])


def test_cli_derive_takes_a_family_name_in_any_case(capsys):
    assert main(["derive", "laplace", "--d", "3", "--adversary", "l1"]) == 0
    out = capsys.readouterr().out
    assert "distribution: Laplace(d=3, lam=1)" in out and "closed-form" in out
    assert main(["derive", "POWERINF", "--d", "3", "--a", "9", "--adversary", "l1"]) == 0
    assert "PowerInf(d=3, a=9, lam=1)" in capsys.readouterr().out
    assert main(["derive", "exp2", "--d", "3", "--param", "k=2", "--adversary", "l2"]) == 0  # as `wulff train`
    assert "Exp2(d=3, k=2, j=0, lam=1)" in capsys.readouterr().out
    assert main(["derive", "gaussian", "--d", "3", "--j", "1"]) == 2
    assert "Gaussian has no shape parameter j" in capsys.readouterr().err
