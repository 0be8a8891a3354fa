"""The profile of an iid or radial density, parsed once.

IID(phi) and Radial(g) are read through one profile: g(r) on r > 0 (for IID, phi(|t|), an even phi
being determined by it). :func:`parse_profile` recognizes, up to an additive constant,

==================  ===============================  ===========================================
profile             g(r)                             where it is used
==================  ===============================  ===========================================
:class:`PowerProfile`     c r^k + j log r            c R^k ~ Gamma((d - j)/k) (Lemma U.3); quadratic
                                                     phi (k = 2, j = 0) is the Gaussian (Theorem H.1)
:class:`LogPowerProfile`  a log(1 + c r^k)           c R^k ~ BetaPrime(d/k, a - d/k)
:class:`GenericProfile`   anything else              numeric laws, quadrature
==================  ===============================  ===========================================

The fields are exact sympy numbers as written (an integer, a Rational, a Float) or, for
:func:`wulff.diffmethod.derive_symbolic`, sympy symbols. The radius law, the law of gamma and the
level-set shifts read these fields; nothing downstream re-recognizes the expression. This module
takes sympy expressions only: user strings are parsed by :mod:`wulff.expressions` before they get here.
"""
from __future__ import annotations

import functools

import sympy as sp

from ..expressions import as_expression
from .symbols import r as r_symbol


def _key_field(value: sp.Expr) -> str:
    """A canonical, exact text for one field: "1/2" for a Rational, "float 0.5" for a 53-bit Float
    (an exact decimal round trip, and distinct from the Rational: their derivatives round differently),
    sympy's srepr for anything else (symbols, sqrt(2), Floats of other precisions)."""
    if isinstance(value, sp.Rational):
        return str(value)
    if isinstance(value, sp.Float) and value._prec == 53:
        return f"float {float(value)!r}"
    return sp.srepr(value)


def _field(value, what: str) -> sp.Expr:
    """A field given as a sympy object or a Python number (a string goes through the restricted parser)."""
    return as_expression(value, {}, what=what)


def _rational(value: sp.Expr) -> sp.Expr:
    return sp.nsimplify(value, rational=True) if value.has(sp.Float) else value


def _is_positive(value: sp.Expr) -> bool:
    return value.is_positive is True


class Profile:
    """g(r) on r > 0 up to an additive constant. ``expr`` is the profile as a sympy expression in
    ``symbol``; ``key`` a hashable tuple of plain strings, equal for equal profiles (cache keys)."""

    kind: str = ""
    expr: sp.Expr
    symbol: sp.Symbol

    @property
    def key(self) -> tuple:
        raise NotImplementedError

    def rationalized(self) -> Profile:
        """The same profile with every Float field replaced by a Rational (sympy's nsimplify), the form
        in which closed forms are derived; ``self`` when there is no Float."""
        return self

    def __eq__(self, other) -> bool:
        return isinstance(other, Profile) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.expr})"


class ParametricProfile(Profile):
    """A profile given by named fields (:attr:`fields`): its key lists the fields, and
    :meth:`rationalized` rebuilds it from the rationalized fields."""

    fields: tuple[str, ...] = ()

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self.fields)

    @functools.cached_property
    def key(self) -> tuple:  # computed once: profiles are immutable
        return (self.kind, *(_key_field(v) for v in self._values()))

    def rationalized(self) -> ParametricProfile:
        values = self._values()
        if not any(v.has(sp.Float) for v in values):
            return self
        return type(self)(*(_rational(v) for v in values), self.symbol)


class PowerProfile(ParametricProfile):
    """g(r) = c r^k + j log r (+ const). :attr:`standard` when c, k > 0 (then c R^k ~ Gamma((d - j)/k))."""

    kind = "power"
    fields = ("c", "k", "j")

    def __init__(self, c, k, j=0, symbol: sp.Symbol = r_symbol):
        self.c, self.k, self.j = _field(c, "c"), _field(k, "k"), _field(j, "j")
        self.symbol = symbol
        self.expr = self.c * symbol ** self.k + self.j * sp.log(symbol)

    @property
    def standard(self) -> bool:
        return _is_positive(self.c) and _is_positive(self.k)

    @property
    def quadratic(self) -> bool:
        """g = c r^2 (+ const), c > 0 (or a symbol not known to be <= 0): for an even phi,
        phi(t) = c t^2 + const (the Gaussian)."""
        return self.k == 2 and self.j == 0 and self.c.is_positive is not False


class LogPowerProfile(ParametricProfile):
    """g(r) = a log(1 + c r^k) (+ const). :attr:`standard` when a, c, k > 0 (c R^k ~ BetaPrime(d/k, a - d/k))."""

    kind = "logpower"
    fields = ("a", "c", "k")

    def __init__(self, a, c, k, symbol: sp.Symbol = r_symbol):
        self.a, self.c, self.k = _field(a, "a"), _field(c, "c"), _field(k, "k")
        self.symbol = symbol
        self.expr = self.a * sp.log(1 + self.c * symbol ** self.k)

    @property
    def standard(self) -> bool:
        return _is_positive(self.a) and _is_positive(self.c) and _is_positive(self.k)


class GenericProfile(Profile):
    """Any other profile; it keeps the expression (numeric laws and quadrature work from it)."""

    kind = "generic"
    standard = False

    def __init__(self, expr: sp.Expr, symbol: sp.Symbol = r_symbol):
        self.expr, self.symbol = expr, symbol

    @functools.cached_property
    def key(self) -> tuple:  # computed once: profiles are immutable
        return ("generic", sp.srepr(self.expr))

    def rationalized(self) -> GenericProfile:
        return GenericProfile(sp.nsimplify(self.expr, rational=True), self.symbol) if self.expr.has(sp.Float) \
            else self


def parse_profile(expr: sp.Expr, symbol: sp.Symbol = r_symbol) -> Profile:
    """The :class:`Profile` of g(symbol) (a sympy expression; parameters may be other symbols).

    g is expanded (logarithms split, ``expand_log(force=True)``) and read term by term; terms free
    of ``symbol`` are the additive constant. Anything that is not one power term plus multiples of
    log(symbol), or one multiple of log(1 + c symbol^k), is a :class:`GenericProfile`.
    """
    if not isinstance(expr, sp.Expr):
        raise TypeError(f"a profile must be a sympy expression (parse strings with wulff.expressions); "
                        f"got {type(expr).__name__}")
    power, logs, j = None, [], sp.Integer(0)
    for term in sp.Add.make_args(sp.expand(sp.expand_log(expr, force=True))):
        if symbol not in term.free_symbols:
            continue
        coeff, rest = term.as_independent(symbol, as_Add=False)
        if rest == sp.log(symbol):
            j += coeff
        elif isinstance(rest, sp.log):
            logs.append((coeff, rest.args[0]))
        else:
            base, expo = rest.as_base_exp()
            if base != symbol or power is not None or symbol in expo.free_symbols:
                return GenericProfile(expr, symbol)
            power = (coeff, expo)
    if logs:
        if len(logs) != 1 or power is not None or j != 0:
            return GenericProfile(expr, symbol)
        a, inner = logs[0]
        c, rest = sp.expand(inner - 1).as_independent(symbol, as_Add=False)
        base, k = rest.as_base_exp()
        if base != symbol or symbol in k.free_symbols:
            return GenericProfile(expr, symbol)
        return LogPowerProfile(a, c, k, symbol)
    if power is None:
        return GenericProfile(expr, symbol)
    return PowerProfile(power[0], power[1], j, symbol)


__all__ = ["Profile", "PowerProfile", "LogPowerProfile", "GenericProfile", "parse_profile"]
