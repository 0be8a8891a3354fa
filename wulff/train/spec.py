"""Named smoothing distributions as plain data, so a checkpoint or a command line can rebuild them."""
from __future__ import annotations

from wulff.distributions import NAMED_FAMILIES, Distribution


def family_constructor(name: str):
    """The constructor of a named family, matched case-insensitively ("laplace" -> Laplace)."""
    lookup = {k.lower(): v[0] for k, v in NAMED_FAMILIES.items()}
    make = lookup.get(str(name).lower())
    if make is None:
        raise ValueError(f"unknown distribution {name!r}; choose one of {', '.join(NAMED_FAMILIES)}")
    return make


def named_distribution(name: str, d: int, *, sigma: float | None = None, lam: float | None = None,
                       params: dict | None = None) -> Distribution:
    """A named family at dimension d and scale sigma (or lam), with shape parameters ``params``."""
    return family_constructor(name)(d, **(params or {}), sigma=sigma, lam=lam)


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
            raise ValueError(f"a distribution parameter must look like name=value; got {item!r}")
        try:
            params[key.strip()] = float(value)
        except ValueError as exc:
            raise ValueError(f"parameter {key} must be a number; got {value!r}") from exc
    return params
