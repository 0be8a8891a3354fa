"""A restricted parser for the text a user (or a cache file) hands to wulff: never ``eval``.

``sympy.sympify`` and ``parse_expr`` end in Python's ``eval``, so a string such as
``"__import__('os').system(...)"`` runs whatever it names. Text reaches wulff from the command line
(``wulff derive "abs(t)**3"``), from ``IID`` / ``Radial`` / ``Density`` given a string, and from the
disk cache (formulas stored as sympy ``srepr`` text). All of it goes through :func:`parse_expression`
or :func:`parse_srepr`, which read the text with :mod:`ast` (a parser, not an interpreter) and build
the sympy expression node by node from a whitelist:

* numbers (ints and decimal literals, read as exact integers and rationals), the arithmetic
  operators ``+ - * / **`` and unary minus (``^`` is read as ``**``, as sympy does);
* names from an explicit namespace: the caller's variables (``t``, ``r``, ``x``, ...), the elementary
  functions in :data:`USER_FUNCTIONS`, the constants in :data:`CONSTANTS`;
* calls of those functions with expression arguments and no keywords.

Attribute access, subscripts, lambdas, comprehensions, strings (except as the name or digits of a
sympy ``Symbol``/``Integer``/``Float``/``Rational`` in srepr text) and every other node are rejected
with a ValueError naming what was found. A power of two numbers with a huge exponent is rejected too
(``9**9**9`` would otherwise hang in exact integer arithmetic).
"""
from __future__ import annotations

import ast
import keyword
import operator
import re
from collections.abc import Callable, Mapping

import numpy as np
import sympy as sp
from sympy.functions.elementary.piecewise import ExprCondPair

from .errors import parse_number  # noqa: F401  (re-exported: numbers given as text)

#: elementary functions a user may call in a density (sympy functions; their arguments are built here)
USER_FUNCTIONS: dict[str, Callable] = {
    "abs": sp.Abs, "Abs": sp.Abs, "log": sp.log, "exp": sp.exp, "sqrt": sp.sqrt,
    "sin": sp.sin, "cos": sp.cos, "tan": sp.tan, "atan": sp.atan,
    "sinh": sp.sinh, "cosh": sp.cosh, "tanh": sp.tanh, "asinh": sp.asinh, "atanh": sp.atanh,
    "erf": sp.erf, "erfc": sp.erfc, "gamma": sp.gamma, "Max": sp.Max, "Min": sp.Min,
}
#: named constants: pi, e, infinity
CONSTANTS: dict[str, sp.Basic] = {"pi": sp.pi, "E": sp.E, "e": sp.E, "inf": sp.oo, "oo": sp.oo}

#: sympy classes whose ``srepr`` text the disk cache may hold (see :func:`parse_srepr`)
_SREPR_CLASSES = (
    sp.Add, sp.Mul, sp.Pow, sp.Piecewise, ExprCondPair, sp.Min, sp.Max, sp.Abs, sp.sign,
    sp.LessThan, sp.StrictLessThan, sp.GreaterThan, sp.StrictGreaterThan, sp.Eq, sp.Ne,
    sp.And, sp.Or, sp.Not, sp.exp, sp.log, sp.sin, sp.cos, sp.tan, sp.atan, sp.sinh, sp.cosh, sp.tanh,
    sp.asinh, sp.acosh, sp.atanh, sp.erf, sp.erfc, sp.erfinv, sp.erfcinv, sp.gamma, sp.loggamma,
    sp.lowergamma, sp.uppergamma, sp.beta, sp.digamma, sp.polygamma, sp.factorial, sp.binomial,
    sp.floor, sp.ceiling, sp.Heaviside, sp.LambertW,
)
#: constructors that take literal text or integers (a Symbol's name, a Float's digits): no other call does
_LITERAL_CONSTRUCTORS: dict[str, Callable] = {
    "Symbol": sp.Symbol, "Dummy": sp.Dummy, "Integer": sp.Integer, "Float": sp.Float, "Rational": sp.Rational,
}
_SREPR_CONSTANTS: dict[str, sp.Basic] = {
    "pi": sp.pi, "E": sp.E, "oo": sp.oo, "zoo": sp.zoo, "nan": sp.nan, "EulerGamma": sp.EulerGamma,
    "true": sp.true, "false": sp.false, "Half": sp.S.Half,
}
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*$")
#: |exponent| above which a power of two numbers is refused (exact arithmetic would not terminate in time)
MAX_NUMERIC_EXPONENT = 10_000


class _Builder:
    """Builds a sympy expression from an :mod:`ast` tree, admitting only whitelisted nodes."""

    def __init__(self, namespace: Mapping[str, object], what: str, max_nodes: int):
        self.namespace = namespace
        self.what = what
        self.budget = max_nodes

    def reject(self, message: str) -> ValueError:
        return ValueError(f"{self.what}: {message}")

    def build(self, node: ast.AST):
        self.budget -= 1
        if self.budget < 0:
            raise self.reject("expression too large")
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is None:
            raise self.reject(f"{type(node).__name__} is not allowed (only numbers, the names "
                              f"{self.allowed_names()}, arithmetic and calls of those functions)")
        return method(node)

    def allowed_names(self) -> str:
        return ", ".join(sorted(self.namespace))

    def visit_Expression(self, node: ast.Expression):
        return self.build(node.body)

    def visit_Constant(self, node: ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.reject(f"the literal {value!r} is not allowed (numbers only)")
        return sp.Integer(value) if isinstance(value, int) else sp.Rational(repr(value))

    def visit_Name(self, node: ast.Name):
        if node.id not in self.namespace:
            raise self.reject(f"unknown name {node.id!r}; allowed: {self.allowed_names()}")
        return self.namespace[node.id]

    def visit_UnaryOp(self, node: ast.UnaryOp):
        op = _UNARY.get(type(node.op))
        if op is None:
            raise self.reject(f"the operator {type(node.op).__name__} is not allowed")
        return op(self.expression(node.operand))

    def visit_BinOp(self, node: ast.BinOp):
        op = _BINARY.get(type(node.op))
        if op is None:
            raise self.reject(f"the operator {type(node.op).__name__} is not allowed")
        left, right = self.expression(node.left), self.expression(node.right)
        if op is operator.pow and left.is_number and right.is_number and abs(right) > MAX_NUMERIC_EXPONENT:
            raise self.reject(f"the numeric exponent {right} is too large (at most {MAX_NUMERIC_EXPONENT})")
        return op(left, right)

    def visit_Call(self, node: ast.Call):
        if not isinstance(node.func, ast.Name):
            raise self.reject("only plain function names may be called")
        name = node.func.id
        if name in _LITERAL_CONSTRUCTORS and name in self.namespace:
            return self.literal(name, node)
        func = self.namespace.get(name)
        if not callable(func) or isinstance(func, sp.Basic):
            raise self.reject(f"{name!r} is not a function that may be called here; "
                              f"allowed: {self.allowed_names()}")
        if node.keywords:
            raise self.reject(f"{name}(...) takes no keyword arguments here")
        return func(*[self.build(arg) for arg in node.args])

    def literal(self, name: str, node: ast.Call):
        """Symbol('rho', positive=True), Integer(2), Rational(1, 2), Float('0.5', precision=53)."""
        args = [self.plain_constant(a, allow_str=True) for a in node.args]
        kwargs = {k.arg: self.plain_constant(k.value, allow_str=False) for k in node.keywords}
        if None in kwargs:
            raise self.reject(f"{name}(**...) is not allowed")
        if name in ("Symbol", "Dummy") and not (args and isinstance(args[0], str) and _NAME.match(args[0])):
            raise self.reject(f"{name} needs a plain name; got {args!r}")
        if name not in ("Symbol", "Dummy") and any(isinstance(a, str) and not _is_number_text(a) for a in args):
            raise self.reject(f"{name} needs digits; got {args!r}")
        return _LITERAL_CONSTRUCTORS[name](*args, **kwargs)

    def plain_constant(self, node: ast.AST, *, allow_str: bool):
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            value = self.plain_constant(node.operand, allow_str=False)
            return -value
        if isinstance(node, ast.Constant) and (isinstance(node.value, (bool, int))
                                               or (allow_str and isinstance(node.value, str))):
            return node.value
        raise self.reject("literal arguments must be plain names, integers or booleans")

    def expression(self, node: ast.AST) -> sp.Expr:
        value = self.build(node)
        if not isinstance(value, sp.Basic):
            raise self.reject(f"{ast.unparse(node)!r} is a function, not a value")
        return value


def _is_number_text(text: str) -> bool:
    return bool(re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?\d+/\d+", text))


def _parse(text: str, namespace: Mapping[str, object], what: str, max_length: int):
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a string; got {type(text).__name__}")
    if len(text) > max_length:
        raise ValueError(f"{what}: the text is longer than {max_length} characters")
    try:
        tree = ast.parse(text.strip().replace("^", "**"), mode="eval")  # x^2 means a power, as in sympy
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ValueError(f"{what}: cannot parse {text!r} as a formula ({type(exc).__name__})") from exc
    try:
        return _Builder(namespace, what, max_nodes=max_length).build(tree)
    except RecursionError as exc:
        raise ValueError(f"{what}: the expression is nested too deeply") from exc


def parse_expression(text: str, variables: Mapping[str, object], *, what: str = "expression",
                     max_length: int = 2000) -> sp.Expr:
    """The sympy expression written in ``text``, in the given ``variables`` (name -> sympy object or
    function, e.g. ``{"t": t}`` or ``{"x": x, "norm": norm}``), the :data:`USER_FUNCTIONS` and the
    :data:`CONSTANTS`. Anything else is a ValueError naming ``what``; nothing is evaluated as Python.

    >>> parse_expression("abs(t)^3 / 2", {"t": sp.Symbol("t")})
    Abs(t)**3/2
    """
    for name in variables:
        if not _NAME.match(name) or keyword.iskeyword(name):
            raise ValueError(f"invalid variable name {name!r}")
    namespace = {**CONSTANTS, **USER_FUNCTIONS,
                 **{k: sp.sympify(v) if isinstance(v, (int, float)) else v for k, v in variables.items()}}
    value = _parse(text, namespace, what, max_length)
    if not isinstance(value, sp.Basic):
        raise ValueError(f"{what}: {text!r} is a function, not an expression")
    return value


def srepr_namespace(extra: Mapping[str, Callable] | None = None) -> dict[str, object]:
    """The names :func:`parse_srepr` admits: sympy's core, elementary and special-function classes,
    the literal constructors, constants, and ``extra`` (e.g. wulff's own special functions)."""
    namespace: dict[str, object] = {cls.__name__: cls for cls in _SREPR_CLASSES}
    namespace.update({**_LITERAL_CONSTRUCTORS, **_SREPR_CONSTANTS, **(extra or {})})
    return namespace


def parse_srepr(text: str, namespace: Mapping[str, object] | None = None, *,
                what: str = "cached formula") -> sp.Basic:
    """Rebuild a sympy expression from its ``sympy.srepr`` text, admitting only the constructors in
    ``namespace`` (default :func:`srepr_namespace`): a planted cache file cannot run code."""
    return _parse(text, srepr_namespace() if namespace is None else namespace, what, max_length=1_000_000)


def as_expression(value, variables: Mapping[str, object], *, what: str) -> sp.Basic:
    """A sympy object from a user's value: sympy objects and numbers as they are, strings through
    :func:`parse_expression` (never ``sympify``, which evaluates Python)."""
    if isinstance(value, str):
        return parse_expression(value, variables, what=what)
    if isinstance(value, sp.Basic):
        return value
    if isinstance(value, np.number):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a sympy expression, a number or a formula string; "
                        f"got {type(value).__name__}")
    return sp.sympify(value)


__all__ = ["parse_expression", "parse_number", "parse_srepr", "srepr_namespace", "as_expression",
           "USER_FUNCTIONS", "CONSTANTS", "MAX_NUMERIC_EXPONENT"]
