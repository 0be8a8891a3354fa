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
with a ValueError naming what was found. A formula that is undefined (a division by zero, ``log(0)``:
sympy's ``zoo`` and ``nan``) or complex (``sqrt(-1)``) is refused too.

Exact arithmetic is bounded, because sympy evaluates numbers as it builds: ``9**9**9``,
``Pow(Integer(9), Integer(99999999))`` or ``factorial(Integer(10**8))`` would not terminate. Before
any constructor runs on numbers, the parser refuses

* a numeric exponent above :data:`MAX_NUMERIC_EXPONENT` in absolute value, and any operation whose
  exact result may need more than :data:`MAX_EXACT_BITS` bits (a power, a product or sum of fractions);
* a factorial-like function (gamma, loggamma, factorial, binomial above :data:`MAX_EXACT_ARGUMENT`;
  digamma, polygamma and the incomplete gammas above 100) of a rational number, which sympy expands
  exactly;
* and a parse gives up after :data:`MAX_PARSE_SECONDS` in all (each step being bounded, this bounds
  the whole).

Text read back from the disk cache (:func:`parse_srepr`) is bounded further: at most
:data:`MAX_SREPR_LENGTH` characters, integers of at most :data:`MAX_LITERAL_DIGITS` digits, floats with
a decimal exponent and precision below :data:`MAX_FLOAT_EXPONENT` / :data:`MAX_FLOAT_PRECISION`, and
symbol names that are Python identifiers, not keywords, builtins or constructor names (and, when the
caller says which, only the symbols it expects), so that the code sympy generates from a formula can
never name something else.
"""
from __future__ import annotations

import ast
import builtins
import keyword
import operator
import re
import time
from collections.abc import Callable, Collection, Mapping

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
#: the most bits an exact rational built from numbers may need (10**9999 has 33,216)
MAX_EXACT_BITS = 1 << 17
#: the largest |rational argument| of the functions that sympy evaluates exactly at rationals, at a cost
#: that grows with the argument (gamma(n) = (n-1)!; digamma, polygamma and the incomplete gammas expand
#: into sums, ~0.1 s at 100 and minutes at 10^5)
MAX_EXACT_ARGUMENT = 10_000
_EXACT_ARGUMENT_BOUNDS = {sp.gamma: MAX_EXACT_ARGUMENT, sp.loggamma: MAX_EXACT_ARGUMENT,
                          sp.factorial: MAX_EXACT_ARGUMENT, sp.binomial: MAX_EXACT_ARGUMENT,
                          sp.digamma: 100, sp.polygamma: 100, sp.lowergamma: 100, sp.uppergamma: 100}
#: wall-clock seconds after which a parse gives up (each step is bounded above; this bounds their sum)
MAX_PARSE_SECONDS = 5.0
#: bounds on text read back from the disk cache (:func:`parse_srepr`)
MAX_SREPR_LENGTH = 100_000
MAX_LITERAL_DIGITS = 1000
MAX_FLOAT_EXPONENT = 10_000
MAX_FLOAT_PRECISION = 10_000
#: keyword arguments the literal constructors accept in srepr text
_SYMBOL_ASSUMPTIONS = frozenset({
    "positive", "negative", "nonnegative", "nonpositive", "real", "extended_real", "integer", "finite",
    "nonzero", "zero", "rational", "odd", "even", "prime", "commutative", "complex", "imaginary",
    "extended_positive", "extended_negative", "extended_nonnegative", "extended_nonpositive"})
_LITERAL_KEYWORDS = {"Symbol": _SYMBOL_ASSUMPTIONS, "Dummy": _SYMBOL_ASSUMPTIONS | {"dummy_index"},
                     "Float": frozenset({"precision"}), "Integer": frozenset(), "Rational": frozenset()}


def _exact_bits(value) -> int:
    """Bits of an exact rational's numerator and denominator (0 for anything else)."""
    if isinstance(value, sp.Rational):
        return int(value.p).bit_length() + int(value.q).bit_length()
    return 0


def check_exact_size(func, args, reject: Callable[[str], ValueError]) -> None:
    """Raise ``reject(message)`` when building ``func(*args)`` could run exact arithmetic beyond the
    bounds of the module docstring (a huge power, a huge product of fractions, (10**8)!)."""
    if func in (sp.Pow, operator.pow) and len(args) == 2 and all(isinstance(a, sp.Basic) for a in args):
        base, exponent = args
        if base.is_number and exponent.is_number:
            if exponent.is_comparable and abs(exponent) > MAX_NUMERIC_EXPONENT:
                raise reject(f"the numeric exponent {exponent} is too large (at most {MAX_NUMERIC_EXPONENT})")
            if exponent.is_Rational and abs(int(exponent.p)) * _exact_bits(base) > MAX_EXACT_BITS:
                raise reject(f"the power of a {_exact_bits(base)}-bit number to {exponent} is too large "
                             f"(at most {MAX_EXACT_BITS} bits)")
        return
    if sum(_exact_bits(a) for a in args) > MAX_EXACT_BITS:
        raise reject(f"the numbers are too large (at most {MAX_EXACT_BITS} bits together)")
    bound = _EXACT_ARGUMENT_BOUNDS.get(func) if isinstance(func, type) else None
    for a in args if bound is not None else ():
        if isinstance(a, sp.Rational) and abs(a) > bound:
            raise reject(f"{func.__name__} of {a} is too large to evaluate exactly (arguments at most {bound})")


class _Builder:
    """Builds a sympy expression from an :mod:`ast` tree, admitting only whitelisted nodes."""

    def __init__(self, namespace: Mapping[str, object], what: str, max_nodes: int,
                 symbols: Collection[str] | None = None):
        self.namespace = namespace
        self.what = what
        self.budget = max_nodes
        self.symbols = None if symbols is None else frozenset(symbols)
        self.deadline = time.monotonic() + MAX_PARSE_SECONDS

    def reject(self, message: str) -> ValueError:
        return ValueError(f"{self.what}: {message}")

    def build(self, node: ast.AST):
        self.budget -= 1
        if self.budget < 0:
            raise self.reject("expression too large")
        if time.monotonic() > self.deadline:
            raise self.reject(f"gave up after {MAX_PARSE_SECONDS:g} s (too much exact arithmetic)")
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
        check_exact_size(op, (left, right), self.reject)
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
        args = [self.build(arg) for arg in node.args]
        check_exact_size(func, args, self.reject)
        return func(*args)

    def literal(self, name: str, node: ast.Call):
        """Symbol('rho', positive=True), Integer(2), Rational(1, 2), Float('0.5', precision=53)."""
        args = [self.plain_constant(a, allow_str=True) for a in node.args]
        kwargs = {k.arg: self.plain_constant(k.value, allow_str=False) for k in node.keywords}
        if None in kwargs:
            raise self.reject(f"{name}(**...) is not allowed")
        unknown = set(kwargs) - _LITERAL_KEYWORDS[name]
        if unknown:
            raise self.reject(f"{name} takes no keyword {sorted(unknown)[0]!r} here")
        if name in ("Symbol", "Dummy"):
            if len(args) != 1 or not isinstance(args[0], str):
                raise self.reject(f"{name} needs one plain name; got {args!r}")
            self.check_symbol_name(args[0])
        elif any(isinstance(a, str) and not _is_number_text(a) for a in args):
            raise self.reject(f"{name} needs digits; got {args!r}")
        self.check_literal_size(name, args, kwargs)
        return _LITERAL_CONSTRUCTORS[name](*args, **kwargs)

    def check_symbol_name(self, name: str) -> None:
        """A symbol's name becomes a variable in the code sympy generates (lambdify): it must be an
        identifier that shadows nothing (no keyword, builtin, constructor or private name) and, when
        the caller says which symbols it expects, one of those."""
        if (not _NAME.match(name) or keyword.iskeyword(name) or name.startswith("_")
                or hasattr(builtins, name) or name in self.namespace):
            raise self.reject(f"{name!r} is not an allowed symbol name")
        if self.symbols is not None and name not in self.symbols:
            raise self.reject(f"unexpected symbol {name!r}; expected {', '.join(sorted(self.symbols))}")

    def check_literal_size(self, name: str, args: list, kwargs: dict) -> None:
        """Numbers in srepr text stay small: digits, a float's decimal exponent and precision."""
        for a in args:
            if isinstance(a, bool) or isinstance(a, str) and name in ("Symbol", "Dummy"):
                continue
            text = str(abs(a)) if isinstance(a, int) else a
            digits = len(re.sub(r"[eE].*", "", text).replace(".", "").replace("/", "").lstrip("+-"))
            if digits > MAX_LITERAL_DIGITS:
                raise self.reject(f"{name} with {digits} digits is too large (at most {MAX_LITERAL_DIGITS})")
            exponent = re.search(r"[eE]([+-]?\d+)$", text)
            if exponent and abs(int(exponent.group(1))) > MAX_FLOAT_EXPONENT:
                raise self.reject(f"{name}({text!r}) is too large (decimal exponent at most {MAX_FLOAT_EXPONENT})")
        for key, value in kwargs.items():
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_FLOAT_PRECISION:
                raise self.reject(f"{name}({key}={value}) is too large (at most {MAX_FLOAT_PRECISION})")

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


def _parse(text: str, namespace: Mapping[str, object], what: str, max_length: int,
           symbols: Collection[str] | None = None):
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a string; got {type(text).__name__}")
    if len(text) > max_length:
        raise ValueError(f"{what}: the text is longer than {max_length} characters")
    try:
        tree = ast.parse(text.strip().replace("^", "**"), mode="eval")  # x^2 means a power, as in sympy
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ValueError(f"{what}: cannot parse {text!r} as a formula ({type(exc).__name__})") from exc
    try:
        return _Builder(namespace, what, max_nodes=max_length, symbols=symbols).build(tree)
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
    if value.has(sp.zoo, sp.nan):
        raise ValueError(f"{what}: {text!r} is undefined (a division by zero or a pole such as log(0))")
    if value.has(sp.I):
        raise ValueError(f"{what}: {text!r} is not real (it contains the imaginary unit)")
    return value


def srepr_namespace(extra: Mapping[str, Callable] | None = None) -> dict[str, object]:
    """The names :func:`parse_srepr` admits: sympy's core, elementary and special-function classes,
    the literal constructors, constants, and ``extra`` (e.g. wulff's own special functions)."""
    namespace: dict[str, object] = {cls.__name__: cls for cls in _SREPR_CLASSES}
    namespace.update({**_LITERAL_CONSTRUCTORS, **_SREPR_CONSTANTS, **(extra or {})})
    return namespace


def parse_srepr(text: str, namespace: Mapping[str, object] | None = None, *,
                what: str = "cached formula", symbols: Collection[str] | None = None) -> sp.Basic:
    """Rebuild a sympy expression from its ``sympy.srepr`` text, admitting only the constructors in
    ``namespace`` (default :func:`srepr_namespace`): a planted cache file cannot run code. The text
    is bounded as the module docstring says (length, numbers, exact arithmetic, symbol names; with
    ``symbols``, only those names), so it cannot hang the parser or break the generated code either."""
    return _parse(text, srepr_namespace() if namespace is None else namespace, what,
                  max_length=MAX_SREPR_LENGTH, symbols=symbols)


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
           "check_exact_size", "USER_FUNCTIONS", "CONSTANTS", "MAX_NUMERIC_EXPONENT", "MAX_EXACT_BITS",
           "MAX_EXACT_ARGUMENT", "MAX_SREPR_LENGTH"]
