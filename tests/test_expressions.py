"""User text is parsed, never evaluated (trust issue, item 2): wulff.expressions and every entry point
that accepts a formula string (IID, Radial, Density, derive_symbolic, ``wulff derive``)."""
import os
import subprocess
import sys

import pytest
import sympy as sp

import wulff.distributions as D
from wulff.cli import main
from wulff.diffmethod import derive_symbolic
from wulff.expressions import parse_expression, parse_number, parse_srepr


@pytest.fixture
def marker(tmp_path):
    """A file that only an executed payload would create."""
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a user string was executed as code"


def payloads(marker):
    m = str(marker)
    return [
        f"__import__('pathlib').Path({m!r}).write_text('x')",
        f"__import__('os').system('touch {m}') or abs(t)",
        f"abs(t) + (lambda: __import__('os').system('touch {m}'))()",
        f"().__class__.__base__.__subclasses__()[0]('{m}')",
        f"open({m!r}, 'w')",
        f"exp(\"__import__('os').system('touch {m}')\")",
        f"Symbol(\"x\")._eval_subs(__import__('os').system('touch {m}'), 1)",
        "[t for t in (1,)]",
        "t if t else t",
    ]


def test_parser_reads_the_documented_grammar():
    t, r = sp.Symbol("t"), sp.Symbol("r", positive=True)
    assert parse_expression("abs(t)^3 / 2", {"t": t}) == sp.Abs(t) ** 3 / 2
    assert parse_expression("2.5*log(1 + r**2) - E + pi", {"r": r}) == \
        sp.Rational(5, 2) * sp.log(1 + r ** 2) - sp.E + sp.pi
    assert parse_expression("sqrt(t**2 + 1e-3)", {"t": t}) == sp.sqrt(t ** 2 + sp.Rational(1, 1000))
    assert parse_expression("-t", {"t": t}) == -t


@pytest.mark.parametrize("text", ["t.real", "t[0]", "'t'", "t == 1", "t and t", "f(t)", "abs", "abs(t, x=1)",
                                  "9**9**9", "2**100000", "import os", "", "t +"])
def test_parser_rejects_everything_else(text):
    with pytest.raises(ValueError, match="phi"):
        parse_expression(text, {"t": sp.Symbol("t")}, what="phi")


def test_deep_nesting_is_a_value_error_not_a_crash():
    with pytest.raises(ValueError):
        parse_expression("(" * 900 + "t" + ")" * 900, {"t": sp.Symbol("t")}, max_length=10_000)


def test_constructors_never_execute_strings(marker):
    for text in payloads(marker):
        for build in (lambda s: D.IID(s, 4, lam=1.0), lambda s: D.Radial(s, 2, 4, lam=1.0),
                      lambda s: D.Density(s, 4, lam=1.0)):
            with pytest.raises((ValueError, TypeError)):
                build(text)
        with pytest.raises((ValueError, TypeError)):
            derive_symbolic(text, "iid", "l1")


def test_constructors_accept_formula_strings():
    assert D.IID("abs(t)**3", 4, lam=1.0).phi == sp.Abs(D.t) ** 3
    assert D.Radial("r**2/2 + r", 2, 4, lam=1.0).g == D.r ** 2 / 2 + D.r
    q = D.Density("norm(x, inf)**2", 4, lam=1.0)
    assert isinstance(q, D.Radial) and q.norm == "inf"
    assert isinstance(D.Density("coordinate_sum(abs(t)**3)", 4, lam=1.0), D.IID)


def test_cli_derive_never_executes_strings(marker, capsys, monkeypatch):
    monkeypatch.setenv("WULFF_CACHE_DIR", "off")
    for text in payloads(marker):
        assert main(["derive", text, "--d", "4", "--adversary", "l1"]) == 2
        assert "error" in capsys.readouterr().err
    for name in ("k", "j"):
        code = f"__import__('os').system('touch {marker}') or 2"
        assert main(["derive", "ExpInf", "--d", "4", f"--{name}", code, "--adversary", "l1"]) == 2
        assert f"--{name} must be a finite number" in capsys.readouterr().err


def test_shape_parameters_are_numbers():
    assert parse_number("2") == 2.0 and parse_number(" 1.5e-3 ") == 1.5e-3
    for bad in ("d + 10", "2*3", "nan", "inf", "", "0x10", "__import__('os')"):
        with pytest.raises(ValueError, match="k must be"):
            parse_number(bad, what="k")


def test_srepr_parser_admits_only_sympy_constructors(marker):
    rho = sp.Symbol("rho", positive=True)
    expr = sp.Piecewise((sp.gamma(sp.Rational(3, 2)) * (rho - sp.Float(0.5)), rho <= 0.7), (sp.oo, True))
    assert parse_srepr(sp.srepr(expr)) == expr
    m = str(marker)
    for text in [f"__import__('os').system('touch {m}')", f"exp(\"__import__('os').system('touch {m}')\")",
                 "Symbol('a b')", "Integer('__import__')", "sympify('1')", "Symbol('x', **{})",
                 f"Add(Symbol('x'), Function('f')(Symbol('x')), evaluate=__import__('os').system('touch {m}'))"]:
        with pytest.raises(ValueError):
            parse_srepr(text)


def test_cli_derive_in_a_subprocess(marker, tmp_path):
    """The whole command line, as a user runs it: the payload does not run and the exit code is 2."""
    env = {**os.environ, "WULFF_CACHE_DIR": "off"}
    code = f"__import__('pathlib').Path({str(marker)!r}).write_text('x')"
    proc = subprocess.run([sys.executable, "-m", "wulff.cli", "derive", code, "--d", "4"], env=env,
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "error" in proc.stderr


# ---------------------------------------------------------------------------------------------
# issue 24, item 8: undefined formulas; item 3: bounded reading of cached formulas
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "why"), [("abs(t)/0", "undefined"), ("log(0) + abs(t)", "undefined"),
                                           ("abs(t) + 0/0", "undefined"), ("abs(t)**3 + sqrt(-1)", "not real"),
                                           ("abs(t) * log(-1)", "not real")])
def test_undefined_or_complex_formulas_are_refused(text, why):
    with pytest.raises(ValueError, match=f"phi: .* is {why}"):
        parse_expression(text, {"t": sp.Symbol("t")}, what="phi")


@pytest.mark.parametrize("command", [["derive", "abs(t)/0", "--d", "2"],
                                     ["compare", "--d", "8", "--psi", "abs(t)/0", "--families", "Laplace",
                                      "--adversary", "l1"]])
def test_cli_undefined_formula_is_a_one_line_error(command, capsys, monkeypatch):
    """`wulff derive "abs(t)/0"` and `wulff compare --psi "abs(t)/0"` ended in KeyError 'ComplexInfinity'."""
    monkeypatch.setenv("WULFF_CACHE_DIR", "off")
    assert main(command) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "undefined" in err and "abs(t)/0" in err


def test_exact_arithmetic_in_user_text_is_bounded():
    t = sp.Symbol("t")
    for text, message in [("abs(t) * (10**9999)**9999", "too large"), ("abs(t) * gamma(10**9)", "gamma of"),
                          ("abs(t) + 9**99999", "exponent")]:
        with pytest.raises(ValueError, match=message):
            parse_expression(text, {"t": t}, what="phi")
    assert parse_expression("abs(t)**3 / gamma(200)", {"t": t}) == sp.Abs(t) ** 3 / sp.factorial(199)


RHO_TEXT = "Symbol('rho', positive=True)"


@pytest.mark.parametrize(("text", "message"), [
    ("Pow(Integer(9), Integer(99999999))", "exponent"),
    ("Pow(Pow(Integer(2), Integer(10000)), Integer(10000))", "too large"),
    ("factorial(Integer(100000000))", "factorial of"),
    ("gamma(Integer(100000000))", "gamma of"),
    ("lowergamma(Integer(100000), Integer(1))", "lowergamma of"),
    ("polygamma(Integer(300), Integer(300))", "polygamma of"),
    ("Integer(" + "9" * 1001 + ")", "digits"),
    ("floor(Float('1e100000000', precision=53))", "decimal exponent"),
    ("Float('1.5', precision=1000000000)", "precision"),
    ("Symbol('lambda')", "'lambda' is not an allowed symbol name"),
    ("Symbol('exp')", "'exp' is not an allowed symbol name"),
    ("Symbol('print')", "'print' is not an allowed symbol name"),
    ("Symbol('__class__')", "not an allowed symbol name"),
    ("Symbol('rho', evaluate=False)", "keyword 'evaluate'"),
    ("Mul(Symbol('x'), " + RHO_TEXT + ")", "unexpected symbol 'x'"),
    ("Add(" + ", ".join([RHO_TEXT] * 30_000) + ")", "longer than"),
])
def test_cached_formulas_are_read_with_bounds(text, message):
    """What the restricted parser admits from a cache file can neither hang it (exact arithmetic) nor
    break the code sympy generates from it (symbol names), and it answers at once."""
    with pytest.raises(ValueError, match=message):
        parse_srepr(text, symbols=("rho", "p"))


def test_cached_formulas_within_the_bounds_still_read():
    rho = sp.Symbol("rho", positive=True)
    expr = (sp.Rational(150527, 2) * sp.gamma(sp.Rational(3, 2)) * (rho - sp.Rational(1, 2)) ** 2
            + 2 ** sp.Rational(7, 2) * sp.log(2 * rho - 1) + sp.Float("0.25", 53))
    assert parse_srepr(sp.srepr(expr), symbols=("rho", "p")) == expr
