"""Light, static facts the command line needs before it parses anything: the named smoothing
families with their shape parameters, the adversaries, datasets and models.

This module imports nothing beyond the standard library (no numpy, sympy, scipy or torch), so
``wulff --help`` stays fast; the heavy modules take their name lists from here
(:mod:`wulff.distributions.registry`, :mod:`wulff.train.data`, :mod:`wulff.train.models`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FamilyInfo:
    """A named family of Table A.1: its structure, shape parameters (besides d, lam, sigma), the
    defaults the paper gives, and example values for the parameters without one.

    ``examples`` maps a parameter to a number or to a function of d (e.g. a = d + 10): values valid
    at every dimension, used only when asked for (``wulff derive``, ``wulff distributions``, the demo).
    """

    name: str
    structure: str  # "iid", "radial" or "uniform"
    shape: tuple[str, ...] = ()
    defaults: dict[str, float] = field(default_factory=dict)
    examples: dict[str, float | Callable[[int], float]] = field(default_factory=dict)
    summary: str = ""

    def example(self, key: str, d: int) -> float:
        """The example value of shape parameter ``key`` at dimension d (a default if it has one)."""
        if key in self.defaults:
            return float(self.defaults[key])
        value = self.examples[key]
        return float(value(d) if callable(value) else value)


def _d_plus_10(d: int) -> int:
    """The example exponent a = d + 10 of PowerInf / Power2: a > d + 2, so sigma is finite."""
    return d + 10


#: every named family, in the order the docs and ``wulff distributions`` list them
FAMILIES: dict[str, FamilyInfo] = {f.name: f for f in (
    FamilyInfo("Gaussian", "iid", summary="exp(-||x/lam||_2^2 / 2)"),
    FamilyInfo("Laplace", "iid", summary="exp(-||x/lam||_1)"),
    FamilyInfo("ExpP", "iid", ("p",), examples={"p": 1.5}, summary="exp(-||x/lam||_p^p), p > 0"),
    FamilyInfo("ExpInf", "radial", ("k", "j"), defaults={"k": 1.0, "j": 0.0},
               summary="||x/lam||_inf^-j exp(-||x/lam||_inf^k), k > 0, j < d"),
    FamilyInfo("Exp2", "radial", ("k", "j"), defaults={"k": 1.0, "j": 0.0},
               summary="||x/lam||_2^-j exp(-||x/lam||_2^k), k > 0, j < d"),
    FamilyInfo("Exp1", "radial", ("k",), defaults={"k": 1.0}, summary="exp(-||x/lam||_1^k), k > 0"),
    FamilyInfo("PowerInf", "radial", ("a",), examples={"a": _d_plus_10},
               summary="(1 + ||x/lam||_inf)^-a, a > d"),
    FamilyInfo("Power2", "radial", ("a", "k"), defaults={"k": 1.0}, examples={"a": _d_plus_10},
               summary="(1 + ||x/lam||_2^k)^-a, a > d/k"),
    FamilyInfo("Pareto", "iid", ("a",), examples={"a": 4.0}, summary="prod_i (1 + |x_i|/lam)^-(a+1), a > 0"),
    FamilyInfo("UniformCube", "uniform", summary="uniform on [-lam, lam]^d"),
    FamilyInfo("UniformBall", "uniform", summary="uniform on the l2 ball of radius lam"),
)}

#: the family names, as the classes spell them
FAMILY_NAMES: tuple[str, ...] = tuple(FAMILIES)

#: the adversaries a certificate is computed against (kept equal to wulff.certificate.ADVERSARIES)
ADVERSARIES: tuple[str, ...] = ("l1", "l2", "linf")

#: the datasets of wulff.train.load_dataset
DATASETS: tuple[str, ...] = ("digits", "cifar10", "imagenet")

#: the built-in models of wulff.train.build_model (torchvision:<name> besides)
MODELS: tuple[str, ...] = ("mlp", "cnn", "resnet18")


def canonical_family(name) -> str | None:
    """The family's name as its class spells it, for any case ("laplace" -> "Laplace"); None if unknown."""
    return _LOWER.get(str(name).lower())


_LOWER = {n.lower(): n for n in FAMILIES}

__all__ = ["FamilyInfo", "FAMILIES", "FAMILY_NAMES", "ADVERSARIES", "DATASETS", "MODELS", "canonical_family"]
