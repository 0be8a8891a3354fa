"""One registry of the named families: build any of them from its name (any case) and plain
parameters, list them, and turn one into plain data and back (checkpoints).

    >>> build("laplace", 3, lam=0.5)
    Laplace(d=3, lam=0.5)
    >>> build("ExpP", 8, sigma=1.0, p="1.5").params
    {'p': 1.5}

Every place that makes a family from its name (the command line, training, checkpoints) goes
through :func:`build`. Shape parameters given as strings are read with ``float()`` (never evaluated).
A shape parameter the paper gives no default for is required, except with ``examples=True`` (for
``wulff derive``, ``wulff distributions`` and the demo), which fills in the documented example
value of :data:`wulff.catalog.FAMILIES` (e.g. ExpP p = 1.5, Pareto a = 4, PowerInf a = d + 10).

Every fact comes from the family's one declaration (:class:`wulff.catalog.FamilyInfo`); a family
class defined elsewhere with its own ``declaration`` is registered when its class is defined, and
:func:`unregister` removes it again.
"""
from __future__ import annotations

import numbers

from wulff.catalog import FAMILIES, FamilyInfo, canonical_family, unregister_family
from wulff.catalog import family_names as _catalog_names
from wulff.errors import ParameterError, parse_number


def _info(name) -> FamilyInfo:
    canonical = canonical_family(name)
    if canonical is None:
        raise ParameterError(f"unknown distribution {name!r}; choose one of {', '.join(_catalog_names())} "
                             "(any case)")
    return FAMILIES[canonical]


def family_names() -> tuple[str, ...]:
    """The names of the named families (built-in and registered), as their classes spell them."""
    return _catalog_names()


def family(name: str) -> type:
    """The class of the named family ``name``, matched in any case ("laplace", "LAPLACE" -> Laplace)."""
    from . import families

    info = _info(name)
    if info.name not in families.FAMILY_CLASSES:
        raise ParameterError(f"the family {info.name} is declared but has no class (define a NamedFamily "
                             f"subclass named {info.name})")
    return families.FAMILY_CLASSES[info.name]


def unregister(name: str) -> None:
    """Forget a registered family (its declaration and class); a built-in family is a ValueError."""
    from . import families

    known = canonical_family(name)
    unregister_family(name)
    families.FAMILY_CLASSES.pop(known, None)


def shape_parameters(name: str) -> tuple[str, ...]:
    """The family's shape parameters besides d, lam and sigma: ("p",) for ExpP, ("k", "j") for Exp2."""
    return _info(name).shape


def default_parameters(name: str) -> dict[str, float]:
    """The shape parameters the paper gives a default for (ExpInf: k = 1, j = 0); the others are required."""
    return dict(_info(name).defaults)


def example_parameters(name: str, d: int) -> dict[str, float]:
    """Every shape parameter of the family at dimension d: its default, else its documented example."""
    info = _info(name)
    return {key: info.example(key, d) for key in info.shape}


def _number(family_name: str, key: str, value):
    """A shape parameter as a number: a string through float() (digits only; nothing is evaluated)."""
    if isinstance(value, str):
        return parse_number(value, what=f"{family_name}: shape parameter {key}", error=ParameterError)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ParameterError(f"{family_name}: shape parameter {key} must be a real number; "
                             f"got {value!r} of type {type(value).__name__}")
    return value


def check_parameters(name: str, d: int, params: dict | None = None, *, examples: bool = False) -> dict:
    """The family's shape parameters as numbers: ``params`` (strings read with float()) plus defaults
    (and example values with ``examples=True``). A :class:`~wulff.errors.ParameterError` names an
    unknown parameter or a missing one, with the valid ones."""
    info = _info(name)
    params = dict(params or {})
    has = ", ".join(info.shape) or "none"
    unknown = sorted(set(params) - set(info.shape))
    if unknown:
        raise ParameterError(f"{info.name} has no shape parameter {', '.join(map(str, unknown))} "
                             f"(its shape parameters: {has})")
    values = {}
    for key in info.shape:
        if key in params:
            values[key] = _number(info.name, key, params[key])
        elif key in info.defaults:
            values[key] = info.defaults[key]
        elif examples:
            values[key] = info.example(key, d)
    missing = [k for k in info.shape if k not in values]
    if missing:
        hint = " ".join(f"{k}={info.example(k, d):g}" if isinstance(d, int) and d > 0 else f"{k}=VALUE"
                        for k in missing)
        raise ParameterError(f"{info.name} needs its shape parameter {', '.join(missing)} "
                             f"(its shape parameters: {has}); pass e.g. {hint}")
    return values


def shared_parameters(names, d: int, given: dict | None = None) -> dict[str, dict]:
    """Shape parameters for several families at once (a comparison, the demo), keyed by canonical
    family name: each takes the parameters of ``given`` it has, the rest from the paper's defaults,
    else their example values. A parameter that none of the families has is a ParameterError."""
    given = dict(given or {})
    params = {_info(name).name: check_parameters(name, d, {k: v for k, v in given.items()
                                                           if k in shape_parameters(name)}, examples=True)
              for name in names}
    unused = sorted(k for k in given if not any(k in shape_parameters(n) for n in names))
    if unused:
        raise ParameterError(f"shape parameter {', '.join(map(str, unused))}: none of {', '.join(params)} has it")
    return params


def build(name: str, d: int, *, lam: float | None = None, sigma: float | None = None, examples: bool = False,
          **params):
    """The named family ``name`` (any case) at dimension d and scale lam or sigma, with shape
    parameters ``params`` (numbers, or strings read with float()). Missing parameters take the paper's
    defaults; one without a default is an error unless ``examples=True`` fills in its example value."""
    values = check_parameters(name, d, params, examples=examples)
    return family(name)(d, **values, lam=lam, sigma=sigma)


def spec(q) -> dict:
    """Plain JSON-able data that rebuilds the named family q with :func:`from_spec`:
    ``{"name", "d", "lam", "params"}``. A distribution that is not a named family is a ParameterError."""
    from .families import NamedFamily

    if not isinstance(q, NamedFamily):
        raise ParameterError(f"only a named family ({', '.join(_catalog_names())}) can be saved as a spec; "
                             f"got {q!r}")
    return {"name": q.name, "params": {k: float(v) for k, v in q.params.items()}, "d": int(q.d),
            "lam": float(q.lam)}


def from_spec(data: dict):
    """The distribution a :func:`spec` describes (unknown keys or parameters are a ParameterError)."""
    if not isinstance(data, dict):
        raise ParameterError(f"a distribution spec must be a dict; got {type(data).__name__}")
    extra = sorted(set(data) - {"name", "params", "d", "lam"})
    missing = sorted({"name", "d", "lam"} - set(data))
    if extra or missing:
        wrong = f"unknown {', '.join(map(str, extra))}" if extra else f"missing {', '.join(missing)}"
        raise ParameterError(f"a distribution spec has the keys name, d, lam and params; {wrong}")
    params = data.get("params") or {}
    if not isinstance(params, dict):
        raise ParameterError(f"the params of a distribution spec must be a dict; got {type(params).__name__}")
    d = data["d"]
    if isinstance(d, bool) or not isinstance(d, numbers.Integral):
        raise ParameterError(f"the d of a distribution spec must be an integer; got {d!r}")
    return build(data["name"], int(d), lam=_number("spec", "lam", data["lam"]), **params)


__all__ = ["family", "family_names", "unregister", "shape_parameters", "default_parameters", "example_parameters",
           "check_parameters", "build", "spec", "from_spec"]
