"""Named smoothing distributions as plain data, so a checkpoint or a command line can rebuild them.
Thin wrappers over :mod:`wulff.distributions.registry`, the one place a family is built from its name,
and over :class:`wulff.splitting.SplittingNoise` for the non-additive DSSN noise ("DSSN": lam and the
input quantization instead of sigma). Training is strict: a shape parameter without a paper default
must be given."""
from __future__ import annotations

from wulff.distributions import Distribution, registry
from wulff.errors import UserError
from wulff.splitting import NAME as DSSN
from wulff.splitting import SplittingNoise


def shape_parameters(name: str) -> tuple[str, ...]:
    """The family's shape parameters besides d, lam and sigma."""
    return registry.shape_parameters(name)


def example_parameters(name: str, d: int) -> dict[str, float]:
    """Every shape parameter of the family at dimension d: its paper default, else its example value."""
    return registry.example_parameters(name, d)


def named_distribution(name: str, d: int, *, sigma: float | None = None, lam: float | None = None,
                       params: dict | None = None) -> Distribution:
    """A named family at dimension d and scale sigma (or lam), with shape parameters ``params``
    (unknown or missing ones are a :class:`~wulff.errors.ParameterError` naming them)."""
    return registry.build(name, d, sigma=sigma, lam=lam, **(params or {}))


def named_noise(name: str, d: int, *, sigma: float | None = None, lam: float | None = None,
                params: dict | None = None, quantization: int | None = None) -> Distribution | SplittingNoise:
    """:func:`named_distribution`, or for ``name`` "DSSN" (any case) the splitting noise of half-width
    ``lam`` on inputs quantized to multiples of 1/``quantization`` (both required; no sigma or params)."""
    if str(name).strip().upper() == DSSN:
        if lam is None or quantization is None or sigma is not None or params:
            raise UserError("DSSN noise takes --lam and --quantization (the inputs' number of levels, e.g. 16 "
                            "for digits, 255 for 8-bit images) and no --sigma or --param")
        return SplittingNoise(d, lam, quantization=quantization)
    if quantization is not None:
        raise UserError(f"--quantization is a setting of DSSN noise only; got it with --noise {name}")
    return named_distribution(name, d, sigma=sigma, lam=lam, params=params)


def distribution_spec(q: Distribution | SplittingNoise) -> dict:
    """The data that rebuilds q with :func:`distribution_from_spec` (named families and DSSN)."""
    return q.spec() if isinstance(q, SplittingNoise) else registry.spec(q)


def distribution_from_spec(spec: dict) -> Distribution | SplittingNoise:
    if isinstance(spec, dict) and spec.get("name") == DSSN:
        return SplittingNoise.from_spec(spec)
    return registry.from_spec(spec)
