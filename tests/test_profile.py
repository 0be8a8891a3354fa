"""The profile model (wulff.distributions.profile): phi / g parsed once into a typed profile."""
import pytest
import sympy as sp

from wulff.diffmethod.derive import cache_key
from wulff.distributions import (
    IID,
    Density,
    Exp1,
    Exp2,
    ExpInf,
    ExpP,
    Gaussian,
    GenericProfile,
    Laplace,
    LogPowerProfile,
    Pareto,
    Power2,
    PowerInf,
    PowerProfile,
    Radial,
    UniformCube,
    parse_profile,
    r,
    t,
)

R = sp.Rational


def fields(profile):
    if isinstance(profile, PowerProfile):
        return (profile.c, profile.k, profile.j)
    return (profile.a, profile.c, profile.k)


@pytest.mark.parametrize("q, kind, want", [
    (Gaussian(4, lam=1.0), PowerProfile, (R(1, 2), 2, 0)),
    (Laplace(4, lam=1.0), PowerProfile, (1, 1, 0)),
    (ExpP(4, p=1.5, lam=1.0), PowerProfile, (1, R(3, 2), 0)),
    (ExpInf(4, k=2, j=1, lam=1.0), PowerProfile, (1, 2, 1)),
    (Exp2(4, k=R(1, 2), j=R(5, 2), lam=1.0), PowerProfile, (1, R(1, 2), R(5, 2))),
    (Exp1(4, k=3, lam=1.0), PowerProfile, (1, 3, 0)),
    (PowerInf(4, a=14, lam=1.0), LogPowerProfile, (14, 1, 1)),
    (Power2(4, a=7, k=2, lam=1.0), LogPowerProfile, (7, 1, 2)),
    (Pareto(4, a=4, lam=1.0), LogPowerProfile, (5, 1, 1)),
])
def test_named_families_parse_to_their_profile(q, kind, want):
    assert type(q.profile) is kind
    got = fields(q.profile)
    assert got == tuple(sp.sympify(w) for w in want)
    assert all(isinstance(v, sp.Rational) for v in got)  # exact, not floats
    assert q.profile.key == (kind.kind, *map(str, got))


def test_key_of_the_gaussian():
    assert Gaussian(3, lam=1.0).profile.key == ("power", "1/2", "2", "0")


def test_equal_profiles_have_equal_keys_and_others_differ():
    assert parse_profile(r ** 2 / 2) == parse_profile(r ** 2 / 2 + 7)  # up to an additive constant
    assert parse_profile(r ** 2 / 2).key == parse_profile((r ** 2 + 1) / 2).key
    assert parse_profile(sp.log(r ** 3) + r).key == parse_profile(r + 3 * sp.log(r)).key
    keys = {parse_profile(g).key for g in [r ** 2 / 2, r ** 2, r ** 3 / 2, r ** 2 / 2 + sp.log(r),
                                            3 * sp.log(1 + r), 3 * sp.log(1 + r ** 2), r ** 3 + r ** 2]}
    assert len(keys) == 7
    # a Float field is kept apart from the Rational (its derivative rounds differently) but agrees
    # with it once rationalized
    half = parse_profile(sp.Float(0.5) * r ** 2)
    assert half.key != parse_profile(r ** 2 / 2).key
    assert half.rationalized().key == parse_profile(r ** 2 / 2).key


def test_generic_fallback_keeps_the_expression():
    phi = sp.Abs(t) ** 3 + t ** 2
    q = IID(phi, 3, lam=1.0)
    assert isinstance(q.profile, GenericProfile)
    assert q.profile.expr == r ** 3 + r ** 2
    assert q.profile.key[0] == "generic"
    for g in [sp.exp(r), r ** 2 + r, sp.log(1 + r) + r, 2 * sp.log(1 + r) + 3 * sp.log(2 + r)]:
        assert isinstance(parse_profile(g), GenericProfile), g


def test_strings_are_not_parsed_here():
    with pytest.raises(TypeError):
        parse_profile("r**2")
    with pytest.raises(ValueError):  # a field given as text goes through the restricted parser
        PowerProfile("__import__('os')", 2)


def test_structure_key_changes_with_lam_profile_norm_and_d():
    base = Radial(r ** 2 / 2, 2, 4, lam=1.0)
    assert base.structure_key() == ("radial", "2", 4, ("power", "1/2", "2", "0"), 1.0)
    assert Radial(r ** 2 / 2, 2, 4, lam=1.0).structure_key() == base.structure_key()
    others = [Radial(r ** 2 / 2, 2, 4, lam=2.0), Radial(r ** 2, 2, 4, lam=1.0),
              Radial(r ** 2 / 2, "inf", 4, lam=1.0), Radial(r ** 2 / 2, 2, 5, lam=1.0),
              IID(t ** 2 / 2, 4, lam=1.0)]
    assert len({base.structure_key(), *(q.structure_key() for q in others)}) == 6
    assert UniformCube(4, lam=1.0).structure_key() == ("uniform", "inf", 4, None, 1.0)


def test_diffmethod_cache_key_follows_the_profile_not_the_scale():
    """The differential method caches unit-scale payloads: lam is applied afterwards."""
    assert cache_key(Gaussian(4, lam=1.0), "l2") == cache_key(Gaussian(4, lam=3.0), "l2")
    assert cache_key(Gaussian(4, lam=1.0), "l2") == cache_key(IID(t ** 2 / 2 + 1, 4, lam=1.0), "l2")
    assert cache_key(Gaussian(4, lam=1.0), "l2") != cache_key(IID(t ** 2, 4, lam=1.0), "l2")
    assert cache_key(Exp2(4, k=1, j=0, lam=1.0), "l2") != cache_key(Exp2(4, k=1, j=1, lam=1.0), "l2")


@pytest.mark.parametrize("text, named", [
    ("coordinate_sum(t**2/2)", Gaussian(3, lam=1.0)),
    ("coordinate_sum(abs(t))", Laplace(3, lam=1.0)),
    ("coordinate_sum(abs(t)**(3/2))", ExpP(3, p=1.5, lam=1.0)),
    ("norm(x, 2)", Exp2(3, k=1, j=0, lam=1.0)),
    ("norm(x, inf)**2 + log(norm(x, inf))", ExpInf(3, k=2, j=1, lam=1.0)),
    ("13*log(1 + norm(x, inf))", PowerInf(3, a=13, lam=1.0)),
])
def test_declared_density_gets_the_named_profile(text, named):
    q = Density(text, 3, lam=1.0)
    assert type(q.profile) is type(named.profile)
    assert q.profile.key == named.profile.key
    assert q.structure_key() == named.structure_key()


def test_profile_fields_drive_the_laws():
    q = Exp2(5, k=2, j=1, lam=1.0)
    law = q.radius_law
    assert (law.c, law.k, law.shape) == (1.0, 2.0, (5 - 1) / 2)
    p = Power2(5, a=9, k=2, lam=1.0).radius_law
    assert (p.c, p.k, p.alpha, p.beta) == (1.0, 2.0, 2.5, 6.5)
    # a quadratic profile is the Gaussian case of the differential method, in any coefficient
    assert parse_profile(3 * r ** 2).quadratic and not parse_profile(r ** 2 + sp.log(r)).quadratic


def test_level_set_reads_the_exact_fields():
    """The level-set shift takes j from the profile, not back from the Gamma shape (d - j)/k."""
    from wulff.levelset.shifts import GenericShift, LogPowerShift, PowerShift, shift_of
    s = shift_of(Exp2(7, k=R(1, 3), j=R(13, 10), lam=1.0))
    assert isinstance(s, PowerShift) and (s.c, s.k, s.j) == (1.0, 1 / 3, 1.3)
    s = shift_of(Power2(7, a=9, k=2, lam=1.0))
    assert isinstance(s, LogPowerShift) and (s.a, s.c, s.k) == (9.0, 1.0, 2.0)
    assert isinstance(shift_of(Radial(r ** 3 + r ** 2, 2, 3, lam=1.0)), GenericShift)
    with pytest.raises(NotImplementedError, match="j = -1"):
        shift_of(Exp2(3, k=1, j=-1, lam=1.0))


def test_symbolic_quadratic_needs_no_sign_assumption():
    from wulff.diffmethod import derive_symbolic
    c = sp.Symbol("c")
    form = derive_symbolic(c * t ** 2, "iid", "l2")
    assert "Theorem H.1" in form.rule
