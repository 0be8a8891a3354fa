"""Named smoothing distributions as plain data, so a checkpoint or a command line can rebuild them."""
from __future__ import annotations

import inspect
import math
import re

from wulff.distributions import NAMED_FAMILIES, Distribution
from wulff.errors import UserError

#: constructor arguments that are not shape parameters
SCALE_ARGUMENTS = ("d", "lam", "sigma")


def family_constructor(name: str):
    """The constructor of a named family, matched case-insensitively ("laplace" -> Laplace)."""
    lookup = {k.lower(): v[0] for k, v in NAMED_FAMILIES.items()}
    make = lookup.get(str(name).lower())
    if make is None:
        raise UserError(f"unknown distribution {name!r}; choose one of {', '.join(NAMED_FAMILIES)}")
    return make


def canonical_name(name: str) -> str:
    """The family's name as NAMED_FAMILIES spells it ("laplace" -> "Laplace")."""
    lookup = {k.lower(): k for k in NAMED_FAMILIES}
    family_constructor(name)
    return lookup[str(name).lower()]


def shape_parameters(name: str) -> dict[str, object]:
    """The family's shape parameters: name -> default (``inspect.Parameter.empty`` when required)."""
    signature = inspect.signature(family_constructor(name))
    return {p.name: p.default for p in signature.parameters.values() if p.name not in SCALE_ARGUMENTS}


def example_parameters(name: str, d: int) -> dict[str, float]:
    """The example shape parameters NAMED_FAMILIES lists for the family, as numbers at dimension d
    ("d + 10" -> d + 10); entries in any other form are left out."""
    examples = {}
    for key, value in NAMED_FAMILIES[canonical_name(name)][1].items():
        if isinstance(value, (int, float)):
            examples[key] = float(value)
        else:
            match = re.fullmatch(r"\s*d\s*\+\s*(\d+(?:\.\d*)?)\s*", str(value))
            if match:
                examples[key] = float(d) + float(match.group(1))
    return examples


def check_params(name: str, d: int, params: dict | None) -> dict:
    """``params`` if they are exactly shape parameters of the family with every required one present;
    else a :class:`~wulff.errors.UserError` naming the unknown or missing ones."""
    params = dict(params or {})
    known = shape_parameters(name)
    family = canonical_name(name)
    unknown = sorted(set(params) - set(known))
    if unknown:
        has = ", ".join(known) or "none"
        raise UserError(f"{family} has no shape parameter {', '.join(unknown)} (its shape parameters: {has})")
    missing = [k for k, default in known.items() if default is inspect.Parameter.empty and k not in params]
    if missing:
        examples = example_parameters(family, d)
        hint = " ".join(f"--param {k}={examples[k]:g}" if k in examples else f"--param {k}=VALUE" for k in missing)
        raise UserError(f"{family} needs its shape parameter {', '.join(missing)}: pass e.g. {hint}")
    return params


def named_distribution(name: str, d: int, *, sigma: float | None = None, lam: float | None = None,
                       params: dict | None = None) -> Distribution:
    """A named family at dimension d and scale sigma (or lam), with shape parameters ``params``
    (unknown or missing ones are a :class:`~wulff.errors.UserError` naming them)."""
    return family_constructor(name)(d, **check_params(name, d, params), sigma=sigma, lam=lam)


def distribution_spec(q: Distribution) -> dict:
    """The data that rebuilds q with :func:`distribution_from_spec` (named families only)."""
    family_constructor(q.name)  # fails early for a custom density
    return {"name": q.name, "params": dict(q.params), "d": q.d, "lam": q.lam}


def distribution_from_spec(spec: dict) -> Distribution:
    return named_distribution(spec["name"], int(spec["d"]), lam=float(spec["lam"]), params=spec.get("params"))


def parse_params(items) -> dict:
    """["k=2", "j=0"] -> {"k": 2.0, "j": 0.0} (command-line shape parameters)."""
    params = {}
    for item in items or ():
        key, sep, value = str(item).partition("=")
        if not sep or not key:
            raise UserError(f"a distribution parameter must look like name=value; got {item!r}")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise UserError(f"parameter {key.strip()} must be a finite number (digits only, e.g. "
                            f"{key.strip()}=2); got {value!r}")
        params[key.strip()] = number
    return params
