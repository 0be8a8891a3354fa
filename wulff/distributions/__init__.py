"""Smoothing distributions q(x) ∝ exp(-psi(x / lam)) on R^d, declared symbolically.

Three structural classes (:class:`IID`, :class:`Radial`, :class:`Uniform`) carry the machinery:
their scale (lam <-> sigma, from radius-law moments, Lemmas U.3 and U.4) and their vectorized torch
samplers. The paper's named families are thin subclasses of them, one declaration
(:data:`wulff.catalog.FAMILIES`) and one class each, built by name through
:mod:`~wulff.distributions.registry`; :func:`Density` recognizes a hand-written psi.
"""
from wulff.errors import ParameterError

from .base import Distribution
from .density import Density
from .families import (
    FAMILY_CLASSES,
    NAMED_FAMILIES,
    Exp1,
    Exp2,
    ExpInf,
    ExpP,
    ExpRadialFamily,
    Gaussian,
    Laplace,
    NamedFamily,
    Pareto,
    Power2,
    PowerInf,
    PowerRadialFamily,
    UniformBall,
    UniformCube,
)
from .profile import GenericProfile, LogPowerProfile, PowerProfile, Profile, parse_profile
from .radius_law import (
    BallRadiusLaw,
    BetaPrimePowerLaw,
    GammaPowerLaw,
    NumericRadiusLaw,
    RadiusLaw,
    radius_law,
)
from .registry import (
    build,
    default_parameters,
    example_parameters,
    family,
    family_names,
    from_spec,
    shape_parameters,
    spec,
    unregister,
)
from .structures import IID, Radial, Uniform
from .symbols import coordinate_sum, norm, r, t, x

__all__ = [
    "Distribution", "ParameterError", "Density", "NAMED_FAMILIES",
    "default_parameters", "example_parameters", "family", "family_names", "shape_parameters", "build", "spec",
    "from_spec", "unregister", "FAMILY_CLASSES", "NamedFamily", "ExpRadialFamily", "PowerRadialFamily",
    "Gaussian", "Laplace", "ExpP", "ExpInf", "Exp2", "Exp1", "PowerInf", "Power2", "Pareto",
    "UniformCube", "UniformBall", "IID", "Radial", "Uniform", "RadiusLaw", "GammaPowerLaw",
    "BetaPrimePowerLaw", "BallRadiusLaw", "NumericRadiusLaw", "radius_law", "coordinate_sum",
    "norm", "r", "t", "x", "Profile", "PowerProfile", "LogPowerProfile", "GenericProfile", "parse_profile",
]
__all__ += [name for name in FAMILY_CLASSES if name not in __all__]  # a family class added to families.py


def __getattr__(name: str) -> type:
    """A family class not imported above (one added to families.py, or registered from outside) by name."""
    if name in FAMILY_CLASSES:
        return FAMILY_CLASSES[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
