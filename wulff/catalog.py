"""Light, static facts the command line needs before it parses anything: one declaration per named
smoothing family and per training objective, the adversaries, datasets and models.

This module imports nothing beyond the standard library (no numpy, sympy, scipy or torch), so
``wulff --help`` stays fast; the heavy modules read their facts from here: the family constructors
their parameter rules and error messages (:mod:`wulff.distributions.families`), the registry its
names, defaults and example values (:mod:`wulff.distributions.registry`), training each family's
natural adversary and each objective's parameters (:mod:`wulff.train.objectives`), the advisor the
families whose level sets are a Wulff crystal (:mod:`wulff.advisor`), and ``wulff train --help`` the
objectives.

A family's parameter rules are data, as torch.distributions' ``arg_constraints``: a strict bound
``above`` / ``below`` written in arithmetic over d and the family's other parameters ("0", "d/k",
"d"), read with :mod:`ast` (numbers, names, + - * / and parentheses only; never evaluated as code).
"""
from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

#: the adversaries a certificate is computed against (kept equal to wulff.certificate.ADVERSARIES)
ADVERSARIES: tuple[str, ...] = ("l1", "l2", "linf")

#: the datasets of wulff.train.load_dataset
DATASETS: tuple[str, ...] = ("digits", "cifar10", "imagenet")

#: the built-in models of wulff.train.build_model (torchvision:<name> besides)
MODELS: tuple[str, ...] = ("mlp", "cnn", "resnet18")

#: the structural classes a family can be a case of (wulff.distributions.IID, Radial, Uniform)
STRUCTURES: tuple[str, ...] = ("iid", "radial", "uniform")

#: the norms of radial and uniform families, and of level sets
NORMS: tuple[int | str, ...] = (1, 2, "inf")

#: the names every family constructor takes besides its shape parameters
RESERVED: tuple[str, ...] = ("d", "lam", "sigma")


# -- arithmetic of declared bounds ------------------------------------------------------------------
_OPERATORS: dict[type, Callable[[float, float], float]] = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b,
}


def _parse_arithmetic(text: str) -> ast.expr:
    """The syntax tree of ``text`` if it is arithmetic over numbers and names, else a ValueError."""
    try:
        tree = ast.parse(str(text), mode="eval").body
    except SyntaxError as exc:
        raise ValueError(f"a declared bound must be arithmetic in d and the shape parameters; "
                         f"got {text!r}") from exc
    for node in ast.walk(tree):
        allowed = isinstance(node, (ast.BinOp, ast.Name, ast.Load, ast.UnaryOp, ast.USub, *_OPERATORS)) or (
            isinstance(node, ast.Constant) and type(node.value) in (int, float))
        if not allowed:
            raise ValueError(f"a declared bound may use numbers, names, + - * / and parentheses only; "
                             f"got {text!r}")
    return tree


def bound_names(text: str) -> set[str]:
    """The names a declared bound reads ("(d + 2)/k" -> {"d", "k"})."""
    return {node.id for node in ast.walk(_parse_arithmetic(text)) if isinstance(node, ast.Name)}


def evaluate_bound(text: str, values: Mapping[str, float]) -> float:
    """The value of a declared bound such as "d/k" at ``values`` (walked node by node; never eval)."""

    def value(node: ast.expr) -> float:
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id not in values:
                raise ValueError(f"the declared bound {text!r} needs {node.id}, which is not given")
            return float(values[node.id])
        if isinstance(node, ast.UnaryOp):
            return -value(node.operand)
        return _OPERATORS[type(node.op)](value(node.left), value(node.right))

    return value(_parse_arithmetic(text))


def _shown(value: float) -> str:
    """A bound's value in an error message: integers in full (d = 150528), others in 6 digits."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def _is_number(text: str) -> bool:
    return not bound_names(text)


# -- families ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Parameter:
    """A shape parameter of a family (besides d, lam, sigma) and its rule, declared as data.

    ``above`` / ``below``: strict bounds, arithmetic text in d and the family's other parameters
    (e.g. ``above="d/k"``); ``why`` is added to the rule in errors ("normalizable"). ``default``: the
    paper's value, else the parameter is required. ``example``: a value valid at every d, used only
    when asked for (``wulff derive``, ``wulff distributions``, the demo): a number, arithmetic in d
    ("d + 10") or a function of d.
    """

    name: str
    above: str | None = None
    below: str | None = None
    default: float | None = None
    example: float | str | Callable[[int], float] | None = None
    why: str = ""

    def __post_init__(self):
        if not self.name.isidentifier() or self.name in RESERVED:
            raise ValueError(f"a shape parameter's name must be an identifier other than {', '.join(RESERVED)}; "
                             f"got {self.name!r}")
        for bound in (self.above, self.below):
            if bound is not None:
                _parse_arithmetic(bound)

    def reads(self) -> set[str]:
        """The names the rule reads besides the parameter itself (d, other parameters)."""
        return set().union(*(bound_names(b) for b in (self.above, self.below) if b is not None))

    def limits(self, values: Mapping[str, float]) -> tuple[float, float]:
        """(low, high): the open interval the rule allows at ``values`` (d and the other parameters)."""
        low = -math.inf if self.above is None else evaluate_bound(self.above, values)
        high = math.inf if self.below is None else evaluate_bound(self.below, values)
        return low, high

    def statement(self) -> str:
        """The rule without values, as docs and help state it: "p > 0", "a > d/k", "j < d"."""
        parts = [f"{self.name} {op} {bound}" for op, bound in ((">", self.above), ("<", self.below))
                 if bound is not None]
        return " and ".join(parts)

    def rule(self, values: Mapping[str, float]) -> str:
        """The rule as errors state it: "p > 0", "j < d = 4", "a > d/k = 4 (normalizable)"."""
        parts = [_comparison(self.name, op, bound, values)
                 for op, bound in ((">", self.above), ("<", self.below)) if bound is not None]
        text = " and ".join(parts) or f"{self.name} finite"
        return f"{text} ({self.why})" if self.why else text

    def example_at(self, d: int) -> float:
        """The default, else the example value at dimension d; a KeyError when there is neither."""
        if self.default is not None:
            return float(self.default)
        if self.example is None:
            raise KeyError(self.name)
        if callable(self.example):
            return float(self.example(d))
        if isinstance(self.example, str):
            return evaluate_bound(self.example, {"d": d})
        return float(self.example)


def _comparison(name: str, op: str, bound: str, values: Mapping[str, float]) -> str:
    """ "a > d/k = 4": the bound's text, and its value at ``values`` unless it is a plain number."""
    if _is_number(bound):
        return f"{name} {op} {bound}"
    return f"{name} {op} {bound} = {_shown(evaluate_bound(bound, values))}"


@dataclass(frozen=True)
class FamilyInfo:
    """The one declaration of a named family (Table A.1): everything the library knows about it
    besides its profile formula (which the family's class in :mod:`wulff.distributions.families`
    writes in sympy).

    ``structure``: "iid", "radial" or "uniform"; ``norm``: the norm of a radial or uniform family
    (1, 2 or "inf"); ``parameters``: its shape parameters with their rules, defaults and examples,
    in constructor order; ``fixed``: profile parameters held fixed (PowerInf is Power2 with k = 1);
    ``sigma_finite``: (parameter, bound) when sigma is finite only for parameter > bound;
    ``natural_adversary``: the norm the paper pairs it with; ``level_sets``: the norm whose balls
    are its level sets (1, 2, "inf"; None when they are no norm ball), which the Wulff-crystal
    analysis of Section 5 reads; ``summary``: the density in one line (its rules are added by
    :meth:`description`).
    """

    name: str
    structure: str
    parameters: tuple[Parameter, ...] = ()
    summary: str = ""
    norm: int | str | None = None
    fixed: Mapping[str, float] = field(default_factory=dict)
    sigma_finite: tuple[str, str] | None = None
    natural_adversary: str = "l1"
    level_sets: int | str | None = None

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ValueError(f"a family's name must be an identifier (its class's name); got {self.name!r}")
        if self.structure not in STRUCTURES:
            raise ValueError(f"family {self.name}: structure must be one of {', '.join(STRUCTURES)}; "
                             f"got {self.structure!r}")
        if (self.norm is None) != (self.structure == "iid") or self.norm not in NORMS + (None,):
            raise ValueError(f"family {self.name}: a radial or uniform family declares its norm (1, 2 or 'inf'), "
                             f"an iid one none; got {self.structure} with norm {self.norm!r}")
        if self.level_sets not in NORMS + (None,):
            raise ValueError(f"family {self.name}: level_sets must be 1, 2, 'inf' or None; "
                             f"got {self.level_sets!r}")
        if self.natural_adversary not in ADVERSARIES:
            raise ValueError(f"family {self.name}: natural_adversary must be one of {', '.join(ADVERSARIES)}; "
                             f"got {self.natural_adversary!r}")
        names = [p.name for p in self.parameters]
        if len(set(names)) != len(names) or set(names) & set(self.fixed):
            raise ValueError(f"family {self.name}: shape parameters must be distinct and not fixed; got "
                             f"{', '.join(names)} (fixed: {', '.join(self.fixed) or 'none'})")
        known = {"d", *names, *self.fixed}
        for parameter in self.parameters:
            if parameter.default is None and parameter.example is None:
                raise ValueError(f"family {self.name}: shape parameter {parameter.name} needs a default or an "
                                 "example value valid at every d (wulff distributions and the demo build every "
                                 "family)")
            if parameter.reads() - known:
                raise ValueError(f"family {self.name}: the rule of {parameter.name} reads "
                                 f"{', '.join(sorted(parameter.reads() - known))}, which is not d or a parameter")

    @property
    def shape(self) -> tuple[str, ...]:
        """The shape parameters besides d, lam and sigma, in constructor order."""
        return tuple(p.name for p in self.parameters)

    @property
    def defaults(self) -> dict[str, float]:
        """The shape parameters the paper gives a default for."""
        return {p.name: float(p.default) for p in self.parameters if p.default is not None}

    @property
    def examples(self) -> dict[str, float | str | Callable[[int], float]]:
        """The example values of the parameters without a default (numbers, text in d or functions of d)."""
        return {p.name: p.example for p in self.parameters if p.default is None and p.example is not None}

    def description(self) -> str:
        """The density and its parameters' rules in one line, e.g. "exp(-||x/lam||_p^p), p > 0"."""
        rules = [p.statement() for p in self.parameters if p.statement()]
        read = set().union(*(p.reads() for p in self.parameters))
        rules += [f"{key} = {value:g}" for key, value in self.fixed.items() if key in read]
        return ", ".join([self.summary or self.name, *rules])

    def parameter(self, key: str) -> Parameter:
        return next(p for p in self.parameters if p.name == key)

    def example(self, key: str, d: int) -> float:
        """The example value of shape parameter ``key`` at dimension d (a default if it has one)."""
        return self.parameter(key).example_at(d)

    def validation_order(self) -> tuple[Parameter, ...]:
        """The parameters in the order their rules can be checked: those whose rule reads another
        shape parameter (Power2: a > d/k) after the ones it reads."""
        return tuple(sorted(self.parameters, key=lambda p: bool(p.reads() & set(self.shape))))

    def sigma_condition(self, values: Mapping[str, float]) -> str | None:
        """When sigma is finite, as the error for an infinite one says it ("a > (d + 2)/k = 6")."""
        if self.sigma_finite is None:
            return None
        key, bound = self.sigma_finite
        return _comparison(key, ">", bound, values)


def _example_d_plus_10(d: int) -> int:
    """The example exponent a = d + 10 of PowerInf / Power2: a > d + 2, so sigma is finite."""
    return d + 10


_POSITIVE_K = Parameter("k", above="0", default=1.0)
_J_BELOW_D = Parameter("j", below="d", default=0.0)
_POWER_A = Parameter("a", above="d/k", example=_example_d_plus_10, why="normalizable")

#: every named family, in the order the docs and ``wulff distributions`` list them (registered
#: families are added at the end: :func:`register_family`)
FAMILIES: dict[str, FamilyInfo] = {f.name: f for f in (
    FamilyInfo("Gaussian", "iid", summary="exp(-||x/lam||_2^2 / 2)", natural_adversary="l2", level_sets=2),
    FamilyInfo("Laplace", "iid", summary="exp(-||x/lam||_1)", natural_adversary="l1", level_sets=1),
    FamilyInfo("ExpP", "iid", (Parameter("p", above="0", example=1.5),), summary="exp(-||x/lam||_p^p)",
               natural_adversary="l1"),
    FamilyInfo("ExpInf", "radial", (_POSITIVE_K, _J_BELOW_D), norm="inf",
               summary="||x/lam||_inf^-j exp(-||x/lam||_inf^k)", natural_adversary="linf",
               level_sets="inf"),
    FamilyInfo("Exp2", "radial", (_POSITIVE_K, _J_BELOW_D), norm=2,
               summary="||x/lam||_2^-j exp(-||x/lam||_2^k)", natural_adversary="l2", level_sets=2),
    FamilyInfo("Exp1", "radial", (_POSITIVE_K,), norm=1, fixed={"j": 0.0}, summary="exp(-||x/lam||_1^k)",
               natural_adversary="l1", level_sets=1),
    FamilyInfo("PowerInf", "radial", (_POWER_A,), norm="inf", fixed={"k": 1.0}, sigma_finite=("a", "(d + 2)/k"),
               summary="(1 + ||x/lam||_inf)^-a", natural_adversary="linf", level_sets="inf"),
    FamilyInfo("Power2", "radial", (_POWER_A, _POSITIVE_K), norm=2, sigma_finite=("a", "(d + 2)/k"),
               summary="(1 + ||x/lam||_2^k)^-a", natural_adversary="l2", level_sets=2),
    FamilyInfo("Pareto", "iid", (Parameter("a", above="0", example=4.0),), sigma_finite=("a", "2"),
               summary="prod_i (1 + |x_i|/lam)^-(a+1)", natural_adversary="l1"),
    FamilyInfo("UniformCube", "uniform", norm="inf", summary="uniform on [-lam, lam]^d", natural_adversary="l1",
               level_sets="inf"),
    FamilyInfo("UniformBall", "uniform", norm=2, summary="uniform on the l2 ball of radius lam",
               natural_adversary="l2", level_sets=2),
)}

#: the built-in family names, as the classes spell them (:func:`family_names` adds registered ones)
FAMILY_NAMES: tuple[str, ...] = tuple(FAMILIES)


def family_names() -> tuple[str, ...]:
    """Every family name, built-in and registered, in catalog order."""
    return tuple(FAMILIES)


def canonical_family(name) -> str | None:
    """The family's name as its class spells it, for any case ("laplace" -> "Laplace"); None if unknown."""
    wanted = str(name).lower()
    return next((known for known in FAMILIES if known.lower() == wanted), None)


def register_family(info: FamilyInfo) -> FamilyInfo:
    """Add a family's declaration to the catalog (a family class that carries its own ``declaration``
    does this when it is defined). A name taken in any case by another declaration is a ValueError."""
    if not isinstance(info, FamilyInfo):
        raise TypeError(f"a family declaration must be a FamilyInfo; got {type(info).__name__}")
    taken = canonical_family(info.name)
    if taken is not None and FAMILIES[taken] != info:
        raise ValueError(f"a family named {taken!r} is already declared; choose another name")
    FAMILIES[info.name] = info
    return info


def unregister_family(name: str) -> None:
    """Remove a registered family (a built-in one is refused with a ValueError)."""
    known = canonical_family(name)
    if known in FAMILY_NAMES:
        raise ValueError(f"{known} is a built-in family and cannot be removed")
    FAMILIES.pop(known, None)


#: the Wulff crystal of each adversary's unit ball (Section 5, Example 5.3) and the norm whose balls
#: are that crystal, or approximate it (linf: Proposition K.8)
WULFF_CRYSTALS: dict[str, tuple[str, int | str]] = {
    "l1": ("the cube (the linf ball)", "inf"),
    "l2": ("the l2 ball itself", 2),
    "linf": ("the zonotope of the vectors {-1, 1}^d, within a constant factor of the l2 ball "
             "(Proposition K.8)", 2),
}


def crystal_families(adversary: str) -> tuple[str, ...]:
    """The families whose level sets have the Wulff-crystal shape for ``adversary`` (declared
    ``level_sets``), in catalog order."""
    shape = WULFF_CRYSTALS[adversary][1]
    return tuple(name for name, info in FAMILIES.items() if info.level_sets == shape)


def natural_adversary_of(name: str) -> str | None:
    """The declared natural adversary of the family ``name`` (any case); None when it is not declared."""
    known = canonical_family(name)
    return None if known is None else FAMILIES[known].natural_adversary


# -- training objectives ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectiveInfo:
    """An objective's parameters: defaults (None: filled in from the noise), their rules, and the largest
    value each numeric one may take (``maximum``: far above any published setting, low enough that a
    typo such as m=1e9 is refused before it tries to allocate terabytes); ``summary``: what
    ``wulff train --help`` says of it."""

    defaults: dict[str, float | int | str | None]
    integers: tuple[str, ...] = ()
    positive: tuple[str, ...] = ()
    maximum: dict[str, float] = field(default_factory=dict)
    summary: str = ""


#: the bounds shared by the objectives: m noisy copies per input (memory and time grow as m x batch x d;
#: the papers use 1 to 16), PGD steps (SmoothAdv uses up to 10), loss weights and MACER's beta, gamma
#: (the papers use at most 20), and smoothadv's eps (input units)
MAX_DRAWS, MAX_STEPS, MAX_WEIGHT, MAX_SCALE, MAX_EPS = 1024, 1000, 1e6, 1e4, 1e6

#: every training objective by name (its loss: :mod:`wulff.train.objectives`); ``wulff train
#: --objective`` offers exactly these
OBJECTIVES: dict[str, ObjectiveInfo] = {
    "noise": ObjectiveInfo({}, summary="augmentation, the default"),
    "stability": ObjectiveInfo({"weight": 6.0}, maximum={"weight": MAX_WEIGHT}, summary="Li et al. 2019"),
    "smoothadv": ObjectiveInfo({"m": 4, "steps": 20, "eps": 0.5, "adversary": None}, ("m", "steps"),
                               ("m", "steps"), {"m": MAX_DRAWS, "steps": MAX_STEPS, "eps": MAX_EPS},
                               summary="Salman et al. 2019"),
    "direct": ObjectiveInfo({"m": 16}, ("m",), ("m",), {"m": MAX_DRAWS}, summary="smoothed log-likelihood"),
    "consistency": ObjectiveInfo({"m": 2, "lambda": 10.0, "eta": 0.5}, ("m",), ("m",),
                                 {"m": MAX_DRAWS, "lambda": MAX_WEIGHT, "eta": MAX_WEIGHT},
                                 summary="Jeong & Shin 2020"),
    "macer": ObjectiveInfo({"m": 16, "beta": 16.0, "gamma": 8.0, "weight": 12.0, "adversary": None},
                           ("m",), ("m", "beta"),
                           {"m": MAX_DRAWS, "beta": MAX_SCALE, "gamma": MAX_SCALE, "weight": MAX_WEIGHT},
                           summary="Zhai et al. 2020, with this noise's own certified radius"),
}

#: the built-in objectives
OBJECTIVE_NAMES: tuple[str, ...] = tuple(OBJECTIVES)


def register_objective(name: str, info: ObjectiveInfo) -> None:
    """Declare a training objective (its loss goes with :func:`wulff.train.objectives.register_objective`);
    a name already declared otherwise, or not a lower-case identifier, is a ValueError."""
    if not isinstance(info, ObjectiveInfo):
        raise TypeError(f"an objective declaration must be an ObjectiveInfo; got {type(info).__name__}")
    if not (isinstance(name, str) and name.isidentifier() and name == name.lower()):
        raise ValueError(f"an objective's name must be a lower-case identifier; got {name!r}")
    if name in OBJECTIVES and OBJECTIVES[name] != info:
        raise ValueError(f"an objective named {name!r} is already declared; choose another name")
    OBJECTIVES[name] = info


def unregister_objective(name: str) -> None:
    """Remove a registered objective (a built-in one is refused with a ValueError)."""
    if name in OBJECTIVE_NAMES:
        raise ValueError(f"{name} is a built-in objective and cannot be removed")
    OBJECTIVES.pop(name, None)


__all__ = ["Parameter", "FamilyInfo", "FAMILIES", "FAMILY_NAMES", "family_names", "canonical_family",
           "register_family", "unregister_family", "WULFF_CRYSTALS", "crystal_families", "natural_adversary_of",
           "ObjectiveInfo", "OBJECTIVES", "OBJECTIVE_NAMES", "register_objective", "unregister_objective",
           "ADVERSARIES", "DATASETS", "MODELS", "STRUCTURES", "NORMS", "RESERVED", "evaluate_bound", "bound_names"]
