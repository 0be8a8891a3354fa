"""derive(q, adversary): the differential-method certificate of a declared density (Theorem G.6).

1. Read the law of gamma_u = <u, grad psi(delta)> off q's structure (:mod:`.structure`), trying q
   and its equivalent structural forms (e.g. Gaussian iid = Radial(r^2/2, 2)).
2. If a rule of :mod:`.closed_forms` integrates R(rho) = lam int_{1-rho}^{1/2} dp / Phi(p)
   symbolically, use it (``method="closed-form"``).
3. Otherwise bound Phi above by the envelope of stop-loss lines and integrate exactly
   (:mod:`.envelope`, ``method="quadrature"``): sound by construction.

Results are cached (:func:`wulff.cache.cached`) at unit scale, keyed by structure, profile, d and
adversary; the cache holds plain data (sympy srepr strings read back by a restricted parser, line
tables as float arrays) and the Certificate is rebuilt from it. :func:`derive_symbolic` derives the
same closed forms with symbolic parameters.
"""
from __future__ import annotations

import functools
import math
import threading

import numpy as np
import sympy as sp
import torch

from wulff.cache import cached, check_not_above, definition_radius, spot_checks, spot_rows
from wulff.distributions import IID, Distribution
from wulff.distributions import r as r_symbol
from wulff.distributions import t as t_symbol
from wulff.distributions.profile import Profile, parse_profile
from wulff.distributions.symbols import norm_key
from wulff.expressions import as_expression, parse_srepr, srepr_namespace
from wulff.radius.certificate import Certificate, check_adversary
from wulff.radius.kernel import TABLE_P_GRID, FunctionKernel, Kernel, TangentTable
from wulff.radius.numeric import UNIT_ROUNDOFF, exact_scale, factor_below
from wulff.special import lambdify_numpy, lambdify_torch

from .closed_forms import ClosedForm, GammaSpec, closed_form, p, rho, symbolic_law
from .envelope import Envelope
from .structure import GammaCase, case_of, gamma_case, gamma_law, profile_derivative
from .verified import VerifiedEnvelope

#: the payload kinds :func:`_build_payload` writes
KINDS = ("closed-form", "closed-form+quadrature", "quadrature", "unsupported")
#: bump when the payload format or the mathematics changes (invalidates disk caches)
CACHE_VERSION = 7
#: relative margin taken off closed-form radii evaluated in floating point, on top of the
#: condition-number term of :func:`_guard_near_half` (an estimate; see there)
CLOSED_FORM_MARGIN = 1e-8
#: below rho = 1/2 + NEAR_HALF closed forms are replaced by their linear lower bound
NEAR_HALF = 1e-7

_units: dict = {}
_units_lock = threading.Lock()


# ---------------------------------------------------------------------------------------------
# symbolic description of gamma_u
# ---------------------------------------------------------------------------------------------
def spec_from_profile(case: GammaCase, profile: Profile, structure) -> GammaSpec | None:
    """The :class:`GammaSpec` of a parsed profile (phi on r > 0 for structure "iid", g for a radial
    structure) in the case :func:`~.structure.gamma_case` decided. None: no symbolic law."""
    if case.c is not None:
        return GammaSpec(("normal", None), m=sp.sqrt(2 * case.c * case.norm_u2))
    if case.bounded:  # IID x linf: a convex-order bound, no closed form
        return None
    h = profile_derivative(profile)
    # Theorem M.1: iid, phi convex (phi' >= 0 nondecreasing on t > 0), l1 adversary: tight
    tight = structure == "iid" and h.is_nonnegative is True and sp.diff(h, r_symbol).is_nonnegative is True
    if r_symbol not in h.free_symbols:
        return GammaSpec(case.sign, m=sp.Abs(h), tight=tight)
    return GammaSpec(case.sign, h=h, law=symbolic_law(profile, case.n), n=case.n, tight=tight)


def _symbolic_spec(structure, profile: Profile, adversary: str, d) -> GammaSpec | None:
    try:
        case = gamma_case(structure, profile, adversary, d)
    except NotImplementedError:
        return None
    return spec_from_profile(case, profile, structure)


def derive_symbolic(profile, structure, adversary: str, d=None, lam=None) -> ClosedForm:
    """Closed-form Phi and radius with symbolic parameters.

    ``profile`` is phi(t) for ``structure="iid"`` or g(r) for a radial structure (1, 2 or "inf"),
    with t, r from :mod:`wulff.distributions`; its parameters may be sympy symbols (declare them
    ``positive=True`` so that the sign conditions of the rules can be decided). d and lam default to
    the symbols ``d`` and ``lam``. Returns a :class:`ClosedForm` whose ``radius`` includes lam.

    Example: ``derive_symbolic(r**k + j*log(r), "inf", "l1")`` gives
    ``2*d*lam*gamma((d - j)/k)*(rho - 1/2) / ((d - 1)*gamma((d - j - 1)/k))`` (Theorem N.2).
    Raises NotImplementedError when no rule applies (the numeric :func:`derive` may still work).
    """
    d = sp.Symbol("d", positive=True, integer=True) if d is None else as_expression(d, {}, what="d")
    lam = sp.Symbol("lam", positive=True) if lam is None else as_expression(lam, {}, what="lam")
    adversary = check_adversary(adversary)
    structure = structure if structure == "iid" else norm_key(structure)
    if structure == "iid":
        expr = as_expression(profile, {"t": t_symbol}, what="phi").subs(t_symbol, r_symbol)
    else:
        expr = as_expression(profile, {"r": r_symbol}, what="g")
    spec = _symbolic_spec(structure, parse_profile(expr, r_symbol), adversary, d)
    form = closed_form(spec, assume=True) if spec is not None else None
    if form is None:
        raise NotImplementedError(f"no closed form for profile {profile} ({structure}) against {adversary}")
    radius = _tidy(form.radius.doit())
    return ClosedForm(lam * radius, form.Phi, form.tight, form.rule, form.rho_max, form.assumptions)


def _tidy(expr: sp.Expr) -> sp.Expr:
    """Simplify the branches of a symbolic radius; Gamma ratios are kept unless they cancel out."""
    if isinstance(expr, sp.Piecewise):
        return sp.Piecewise(*[(sp.simplify(e), c) for e, c in expr.args])
    simpler = sp.gammasimp(expr)
    return simpler if len(simpler.atoms(sp.gamma)) < len(expr.atoms(sp.gamma)) else expr


# ---------------------------------------------------------------------------------------------
# building the cached payload
# ---------------------------------------------------------------------------------------------
def _closed_form_payload(q: Distribution, case: GammaCase) -> dict | None:
    structure = "iid" if isinstance(q, IID) else q.norm
    spec = spec_from_profile(case, q.profile.rationalized(), structure)
    form = closed_form(spec) if spec is not None else None
    if form is None:
        return None
    return {"radius": sp.srepr(form.radius), "Phi": sp.srepr(form.Phi), "tight": form.tight,
            "rule": form.rule, "rho_max": None if form.rho_max is None else float(form.rho_max)}


def _build_payload(q: Distribution, adversary: str) -> dict:
    """Everything a certificate needs, as picklable data (see the module docstring)."""
    cases, reasons = [], []
    for form in [q, *q.equivalent_forms()]:  # the case of each structural form, decided once
        try:
            cases.append((form, case_of(form, adversary)))
        except NotImplementedError as exc:
            reasons.append(str(exc))
    formulas = []
    for form, case in cases:  # a closed form from any equivalent structure wins
        formula = _closed_form_payload(form, case)
        formulas.append(formula)
        if formula is not None and formula["rho_max"] is None:
            law = gamma_law(form, adversary, case)
            return {"kind": "closed-form", "closed": formula, "envelope": None, "law": law.describe(),
                    "theorem": law.theorem, "structure": form.structure()}
    for (form, case), formula in zip(cases, formulas):
        try:
            law = gamma_law(form, adversary, case)
        except NotImplementedError as exc:
            reasons.append(str(exc))
            continue
        envelope = law.envelope()
        return {"kind": "closed-form+quadrature" if formula else "quadrature", "closed": formula,
                "envelope": envelope.to_payload(), "law": law.describe(), "theorem": law.theorem,
                "structure": form.structure(), "discrete": law.magnitude.is_constant, "exact": law.exact}
    return {"kind": "unsupported", "reason": "; ".join(dict.fromkeys(reasons))}


# ---------------------------------------------------------------------------------------------
# certificates from payloads
# ---------------------------------------------------------------------------------------------
def _float_constants(expr: sp.Basic) -> sp.Basic:
    """expr with every constant subexpression evaluated by mpmath (so Gamma(75264) never overflows),
    keeping the structure: no distribution of constants over sums, which would cancel digits
    (c (rho - 1/2) must not become c rho - c/2)."""
    if not expr.args:
        return expr
    if not expr.free_symbols and isinstance(expr, sp.Expr):
        value = expr.evalf(30)
        return value if value.is_number else expr
    if isinstance(expr, (sp.Mul, sp.Add)):  # the constant factors / terms together: 1e-326 * 1e333 is fine
        constant = [a for a in expr.args if not a.free_symbols]
        varying = [_float_constants(a) for a in expr.args if a.free_symbols]
        if constant:
            varying.insert(0, expr.func(*constant).evalf(30))
        return expr.func(*varying, evaluate=False)
    args = [_float_constants(a) for a in expr.args]
    try:
        return expr.func(*args, evaluate=False)
    except TypeError:
        return expr.func(*args)


def _closed_form_function(expr: sp.Expr, var: sp.Symbol):
    """A vectorized float function of var: constants evaluated by mpmath (no overflow), then scipy.
    It returns a fresh array (never var itself, never a broadcast view), which callers may
    overwrite."""
    f = lambdify_numpy(var, _float_constants(expr))

    def evaluate(x):
        x = np.asarray(x, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            out = np.asarray(f(x), dtype=float)
        if out.shape != x.shape or out.base is not None or np.may_share_memory(out, x):
            out = np.array(np.broadcast_to(out, x.shape))
        return out
    return evaluate


def _closed_form_torch(expr: sp.Expr, var: sp.Symbol):
    """The torch twin of :func:`_closed_form_function`, or None (a function torch lacks)."""
    f = lambdify_torch(var, _float_constants(expr))
    if f is None:
        return None
    return lambda x: torch.as_tensor(f(x), dtype=torch.float64, device=x.device).expand(x.shape)


#: rho where :class:`GuardedClosedForm` compares the formula with its tangent at 1/2
_THRESHOLD_GRID = np.unique(np.concatenate([0.5 + np.geomspace(NEAR_HALF, 0.25, 3000),
                                            1.0 - np.geomspace(1e-15, 0.25, 3000)]))


def _evaluation_form(expr: sp.Expr) -> sp.Expr:
    """expr with log(1 / u) written -log(u): one operation fewer, and no rounding of the reciprocal."""
    return expr.replace(lambda e: isinstance(e, sp.log) and e.args[0].is_Pow and e.args[0].exp == -1,
                        lambda e: -sp.log(e.args[0].base))


class GuardedClosedForm(Kernel):
    """Sound float evaluation of a closed form R(rho) (Theorem G.6), numpy and torch.

    * The tangent at 1/2, L(rho) = (rho - 1/2) / Phi(1/2), is a lower bound for every rho, because
      R'(rho) = 1 / Phi(1 - rho) >= 1 / Phi(1/2) (Phi increases on [0, 1/2], Remark G.5); it is exact
      to O(rho - 1/2) and replaces the formula below rho = 1/2 + NEAR_HALF.
    * Elsewhere the formula is taken as S(rho) = R (1 - CLOSED_FORM_MARGIN) - 2^9 u / Phi(1/2),
      u = 2^-53. The absolute term bounds the digits a formula loses to its argument: the condition
      number of R in p = 1 - rho is kappa = p / (Phi(p) R), so an error of a few u in p costs
      2^10 u p / Phi(p), and p / Phi(p) <= (1/2) / Phi(1/2) because Phi(p) / p, the mean of the top
      p of gamma's quantiles, decreases in p. This is an *estimate* of the floating point error
      (scipy's special functions are accurate to a few ulps, not proved), not a bound;
      :meth:`Certificate.verified_radius` gives the provable value.
    * The radius is max(S, L) (both are lower bounds). S - L is convex (R is convex, Remark G.5) and
      negative at 1/2, so it is negative below one point and positive above it: the radius is L
      below that point and S above. The construction finds it (``threshold``) on a grid, and each
      rho is then evaluated by one of the two, never both, and without a mask where the batch lies
      on one side. (The crossing is refined by bisection; within rounding of it either value may be
      taken, both being lower bounds.)
    * The scale lam / C and the formula's leading constant are applied by one multiplication
      (:meth:`scaled`), rounded as :func:`~wulff.radius.numeric.factor_below` says.
    The formulas are written in stable forms near rho = 1 (closed_forms: Theorem R.1 in log form).
    """

    guarantee = ("proved below the formula: the tangent at 1/2 (Remark G.5); estimated: the formula's float "
                 "error (scipy within 2^9 u / Phi(1/2)); verified_radius proves it")

    def __init__(self, radius_expr: sp.Expr, phi_formula):
        coefficient, rest = _evaluation_form(_float_constants(radius_expr)).as_coeff_Mul()
        if not coefficient.is_number or coefficient == 0:
            coefficient, rest = sp.Integer(1), radius_expr
        self.coefficient = sp.Float(coefficient, 30)  # may be negative: f(x) < 0 then
        self._formula = _closed_form_function(rest, rho)  # R / coefficient
        self._formula_torch = _closed_form_torch(rest, rho)
        phi_half = float(phi_formula(np.array(0.5)))
        self.tangent_slope = 1.0 / (phi_half * (1.0 + 1e-12))  # Phi(1/2) rounded up: a smaller slope
        self.absolute = 512 * UNIT_ROUNDOFF / (phi_half * (1.0 - 1e-12))
        self.keep = 1.0 - CLOSED_FORM_MARGIN - 4 * UNIT_ROUNDOFF
        self._constants: dict = {}
        self.threshold = self._threshold()

    def _scaled_constants(self, factor) -> tuple[float, float, float]:
        """(k, a, t): f(x) k - a is the scaled formula, (x - 1/2) t the scaled tangent, rounded down."""
        key = factor  # 1, or (lam, C) from the certificate (hashable)
        if key not in self._constants:
            exact = exact_scale(factor)
            k = math.copysign(factor_below(exact * abs(self.coefficient) * sp.Float(self.keep, 30)),
                              float(self.coefficient))
            a = float(sp.N(exact * sp.Float(self.absolute, 30), 30)) * (1 + 2.0 ** -50)  # rounded up
            t = factor_below(exact * sp.Float(self.tangent_slope, 30))
            self._constants[key] = (k, a, t)
        return self._constants[key]

    def _shaved(self, x, k: float, a: float):
        """f(x) k - a, numpy (fresh array, in place) or torch; inf stays inf."""
        if isinstance(x, torch.Tensor):
            return self._formula_torch(x).mul(k).sub_(a)
        out = self._formula(x)
        out *= k
        out -= a
        return out

    def _threshold(self) -> float:
        """Where the shaved formula starts to beat the tangent for good: the grid point after the last
        one where it loses, refined by bisection against the one before (2.0: nowhere)."""
        x = _THRESHOLD_GRID
        k, a, t = self._scaled_constants(1)
        with np.errstate(invalid="ignore"):
            wins = self._shaved(x, k, a) > (x - 0.5) * t
        if not wins[-1]:
            return 2.0
        losing = np.flatnonzero(~wins)
        if not losing.size:
            return float(x[0])
        lose, win = float(x[losing[-1]]), float(x[losing[-1] + 1])
        for _ in range(64):  # the crossing, refined by bisection to float resolution
            mid = 0.5 * (lose + win)
            if not lose < mid < win:
                break
            point = np.array([mid])
            with np.errstate(invalid="ignore"):
                if self._shaved(point, k, a)[0] > (mid - 0.5) * t:
                    win = mid
                else:
                    lose = mid
        return max(win, 0.5 + NEAR_HALF)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The radius at lam = 1 for rho > 1/2."""
        return self.scaled(np.asarray(x, dtype=float), 1)

    def unit(self, x: np.ndarray) -> np.ndarray:
        return self(x)

    def unit_torch(self, x: torch.Tensor) -> torch.Tensor:
        return self.scaled_torch(x, 1)

    def scaled(self, x, factor, lo: float | None = None):
        """lam R(x) / C for rho > 1/2, rounded down, a fresh array (a tensor on x's device for a
        tensor); ``factor`` is (lam, C) or 1, ``lo`` min(x) when the caller knows it."""
        if isinstance(x, torch.Tensor):
            return self.scaled_torch(x, factor, lo)
        k, a, t = self._scaled_constants(factor)
        if self.threshold > 1.0:  # the tangent everywhere
            out = x - 0.5
            out *= t
            return out
        lo = float(x.min()) if lo is None and x.size else (1.0 if lo is None else lo)
        if lo >= self.threshold:
            return self._shaved(x, k, a)
        flat = x.reshape(-1)
        below = flat < self.threshold
        count = int(np.count_nonzero(below))
        if count == flat.size:
            out = flat - 0.5
            out *= t
        elif 2 * count <= flat.size:  # mostly the formula: the few tangent values gathered
            out = self._shaved(flat, k, a)
            where = np.flatnonzero(below)
            out[where] = (flat[where] - 0.5) * t
        else:  # mostly the tangent: the few formula values gathered
            out = flat - 0.5
            out *= t
            where = np.flatnonzero(~below)
            out[where] = self._shaved(flat[where], k, a)
        return out.reshape(x.shape)

    def scaled_torch(self, x: torch.Tensor, factor, lo: float | None = None) -> torch.Tensor:
        """:meth:`scaled` on x's device."""
        k, a, t = self._scaled_constants(factor)
        if self.threshold > 1.0:  # the tangent everywhere
            return (x - 0.5).mul_(t)
        if (float(x.min()) if lo is None else lo) >= self.threshold:
            return self._shaved(x, k, a)
        where = torch.nonzero((x < self.threshold).reshape(-1)).squeeze(1)  # one scan, one host sync
        if where.numel() == x.numel():
            return (x - 0.5).mul_(t)
        out = self._shaved(x, k, a)
        flat = out.reshape(-1)
        flat[where] = (x.reshape(-1)[where] - 0.5).mul_(t)
        return out

    def torch(self, x: torch.Tensor) -> torch.Tensor:
        """The radius at lam = 1 on x's device."""
        return self.scaled_torch(x, 1)

    def _careful(self, x: np.ndarray) -> np.ndarray:
        """max(S, L) on every x, with L below 1/2 + NEAR_HALF: the definition the kernel follows."""
        k, a, t = self._scaled_constants(1)
        tangent = (x - 0.5) * t
        with np.errstate(invalid="ignore"):
            return np.where(x - 0.5 < NEAR_HALF, tangent, np.maximum(self._shaved(x, k, a), tangent))

    @property
    def has_torch(self) -> bool:
        return self._formula_torch is not None


def _guard_near_half(radius_expr: sp.Expr, phi_formula) -> GuardedClosedForm:
    """The sound float evaluation of a closed form (:class:`GuardedClosedForm`)."""
    return GuardedClosedForm(radius_expr, phi_formula)


def _unit_functions(payload: dict):
    """(the radius kernel, Phi, the slope dR/drho in torch or None where torch lacks a function)."""
    closed, table = payload["closed"], payload["envelope"]
    envelope = Envelope.from_payload(table) if table is not None else None
    if closed is None:
        return envelope, envelope.Phi, _slope_from(envelope.Phi_torch)
    radius_expr, phi_expr = eval_srepr(closed["radius"]), eval_srepr(closed["Phi"])
    phi_formula, phi_torch = _closed_form_function(phi_expr, p), _closed_form_torch(phi_expr, p)
    guarded = _guard_near_half(radius_expr, phi_formula)
    if envelope is None:
        if _is_slow(closed["radius"]):
            table = TangentTable(guarded, phi_formula, TABLE_P_GRID, concave_Phi=True)  # Phi of Definition G.4
            return table, phi_formula, table.slope_torch
        return guarded, phi_formula, _slope_from(phi_torch)
    rho_max = closed["rho_max"]

    def radius_unit(x):
        x = np.asarray(x, dtype=float)
        inside = x <= rho_max
        out = np.empty(x.shape)
        out[inside] = guarded(x[inside])
        out[~inside] = envelope.unit(x[~inside])  # the envelope's kernel (its table) beyond rho_max only
        return out

    def radius_unit_torch(x):
        return torch.where(x <= rho_max, guarded.torch(x), envelope.unit_torch(x))

    def Phi(x):
        x = np.asarray(x, dtype=float)
        return np.where(x >= 1 - rho_max, phi_formula(x), envelope.Phi(x))

    def Phi_torch(x):
        return torch.where(x >= 1 - rho_max, phi_torch(x), envelope.Phi_torch(x))
    kernel = FunctionKernel(radius_unit, radius_unit_torch if guarded.has_torch else None,
                            guarantee="the closed form's kernel for rho <= rho_max, the envelope's beyond")
    return kernel, Phi, _slope_from(Phi_torch) if phi_torch is not None else None


def _slope_from(Phi_torch):
    """dR/drho = 1 / Phi(1 - rho) (Theorem G.6) in torch, or None without a torch Phi."""
    return None if Phi_torch is None else (lambda x: 1.0 / Phi_torch(1.0 - x))


def _is_slow(text: str) -> bool:
    """Whether a formula uses an iterative inverse (scipy's are slow on 10^6 values)."""
    return any(name in text for name in ("BetaIncInv", "GammaIncInv", "GammaIncCInv", "BetaPrimeCDFInv"))


def eval_srepr(text: str) -> sp.Expr:
    """Rebuild a sympy expression from its srepr (a cached formula) with the restricted parser of
    :mod:`wulff.expressions`: only sympy's expression classes and wulff's special functions are
    admitted, so a planted cache entry cannot run code. Nothing is passed to ``eval``."""
    return parse_srepr(text, _srepr_names(), symbols=("rho", "p"))


@functools.cache
def _srepr_names() -> dict:
    import wulff.special as special
    names = srepr_namespace({name: getattr(special, name) for name in special.__all__
                             if isinstance(getattr(special, name), type)})
    names["gamma"] = lambda x: sp.gamma(x, evaluate=False)  # Gamma(75264) stays a symbol, not 10^350000
    return names


def _check_payload(payload: dict) -> None:
    """Raise unless a payload read from disk has the expected shape and parseable formulas."""
    if not isinstance(payload, dict) or payload.get("kind") not in KINDS:
        raise ValueError("not a differential-method payload")
    closed = payload.get("closed")
    if closed is not None:
        eval_srepr(closed["radius"])
        eval_srepr(closed["Phi"])


#: relative tolerance of the re-check of a payload read from disk (:func:`_check_loaded`); the reference
#: quadrature is within 4e-3 of the exact radius for every named family, d = 1 ... 3072
LOADED_RTOL = 1e-2
#: rho where a payload read from disk is re-checked, besides random ones (:func:`wulff.cache.spot_checks`)
_CHECK_RHO = (0.5 + 1e-6, 0.51, 0.6, 0.75, 0.9, 0.99, 0.999, 0.99999, 1 - 1e-9)


def _phi_upper(law, p: np.ndarray) -> np.ndarray:
    """An upper bound on Phi(p) = min_c (c p + E(gamma - c)_+) (Definition G.4): the minimum over c at
    the law's approximate quantile, the atoms next to it and the top of the support."""
    sign, M = law.sign, law.magnitude
    c = np.maximum(np.asarray(sign.quantile(M, p), dtype=float), 0.0)
    candidates = [c]
    kinks = np.sort(sign.kinks(M))
    if kinks.size:
        i = np.searchsorted(kinks, c)
        candidates += [kinks[np.clip(i + k, 0, kinks.size - 1)] for k in (-1, 0, 1)]
    values = [x * p + law.stop_loss(x) for x in candidates]
    top = sign.sup(M)
    if math.isfinite(top):
        values.append(top * p)
    return np.min(values, axis=0)


def _check_loaded(payload: dict, q: Distribution, adversary: str) -> None:
    """Re-check a payload read from disk against its own definition before it is used (wulff.cache):
    formulas in rho and p only, envelope lines (the first, the last, evenly spaced and random ones) on
    or above the stop-loss of the law of gamma rebuilt from q (Definition G.4), the radius at fixed
    and random rho within LOADED_RTOL of
    R(rho) = int_{1-rho}^{1/2} dp / Phi(p) (Theorem G.6), and Phi (which sets the tangent at 1/2) not
    below the law's at p = 1/2 and at the rho <= 0.99 among those. Raises on any disagreement."""
    _check_payload(payload)
    if payload["kind"] == "unsupported":
        return
    form = next(f for f in [q, *q.equivalent_forms()] if f.structure() == payload["structure"])
    law = gamma_law(form, adversary)
    lines = payload["envelope"]
    if lines is not None:
        rows = spot_rows(np.size(lines["c"]), 32)
        c = np.maximum(np.asarray(lines["c"], dtype=float)[rows], 0.0)
        needed = np.where(c >= law.sign.sup(law.magnitude), 0.0, law.stop_loss(c))  # gamma <= sup
        check_not_above(needed, np.asarray(lines["e"], dtype=float)[rows], rtol=1e-9,
                        what="the stop-loss under an envelope line")
        if lines["infinite_at_one"] and not law.magnitude.tail_integral_diverges:
            raise ValueError("the envelope claims an infinite radius at rho = 1; the law's tail does not diverge")
    radius_unit, Phi_unit = _unit_functions(payload)[:2]
    rho_points = spot_checks(_CHECK_RHO, 0.5 + 1e-6, 1 - 1e-9, 4)
    p_points = np.append(1 - rho_points[rho_points <= 0.99], 0.5)  # where the law's quantiles are accurate
    at_points = {}

    def phi(x):  # one pass of the law's (costly) quantiles over the quadrature nodes and p_points
        values = _phi_upper(law, np.concatenate([x, p_points]))
        at_points["Phi"] = values[x.size:]
        return values[:x.size]
    reference = definition_radius(phi, rho_points)
    check_not_above(radius_unit(rho_points), reference, what="a cached radius", rtol=LOADED_RTOL)
    check_not_above(at_points["Phi"] * (1 - LOADED_RTOL), Phi_unit(p_points), what="the law's Phi", rtol=0.0)


def _method(payload: dict) -> str:
    kind = payload["kind"]
    if kind == "closed-form":
        return "closed-form"
    if kind == "closed-form+quadrature":
        return f"closed-form for rho <= {payload['closed']['rho_max']:.12g}, quadrature beyond"
    if not payload.get("exact", True):
        return "convex-order bound (discrete dominating law)"
    return "exact (discrete law)" if payload.get("discrete") else "quadrature"


def _verified_unit(payload: dict, q: Distribution, adversary: str):
    """(rho, dps) -> the verified radius at lam = 1 of an envelope payload (None without one): the
    law is rebuilt on first use, the lines are the payload's (:mod:`.verified`)."""
    if payload["envelope"] is None:
        return None
    engines: dict[int, VerifiedEnvelope] = {}

    def unit(rho: float, dps: int) -> float:
        return engine(dps).radius_unit(rho)

    def engine(dps: int) -> VerifiedEnvelope:
        if dps not in engines:
            law = None
            for form in [q, *q.equivalent_forms()]:
                try:
                    law = gamma_law(form, adversary)
                    break
                except NotImplementedError:
                    continue
            engines[dps] = VerifiedEnvelope(law, Envelope.from_payload(payload["envelope"]), dps)
        return engines[dps]
    unit.bracket = lambda rho, dps, refine=1: engine(dps).bracket_unit(rho, refine)
    return unit


def _certificate(payload: dict, q: Distribution, adversary: str, key) -> Certificate:
    if payload["kind"] == "unsupported":
        raise NotImplementedError(f"differential method, {q.structure()} vs {adversary}: {payload['reason']}")
    with _units_lock:
        units = _units.get(key)
    if units is None:
        units = _unit_functions(payload)
        with _units_lock:
            _units[key] = units
    kernel, Phi_unit, slope_unit_torch = units
    closed = payload["closed"]
    formula = None
    if closed is not None:
        unit_formula = eval_srepr(closed["radius"])
        formula = unit_formula if q.lam == 1 else sp.Float(q.lam) * unit_formula
    tight = bool(closed and closed["tight"] and payload["kind"] == "closed-form")
    cert = Certificate(adversary=adversary, method=_method(payload), lam=q.lam, d=q.d, radius_unit=kernel,
                       slope_unit_torch=slope_unit_torch,
                       formula=formula, formula_rho_max=closed["rho_max"] if closed is not None else None,
                       Phi=Phi_unit, Phi_formula=eval_srepr(closed["Phi"]) if closed is not None else None,
                       tight=tight, theorem=payload["theorem"], gamma_law=payload["law"],
                       source=f"{q.name}: {payload['structure']}",
                       verified_unit=_verified_unit(payload, q, adversary))
    return cert


def cache_key(q: Distribution, adversary: str) -> tuple:
    """The cache key of q's unit-scale certificate against ``adversary``: q's structure key without
    lam (the payload is at unit scale; lam is applied by the certificate)."""
    return ("wulff.diffmethod", CACHE_VERSION, q.structure_key(scale=False), adversary)


def derive(q: Distribution, adversary: str, *, cache: bool = True) -> Certificate:
    """The differential-method certificate of q against ``adversary`` ("l1", "l2" or "linf").

    ``cert.radius(rho)`` is sound (lam included, 0 for rho <= 1/2); ``cert.formula`` is a sympy
    expression in Symbol("rho") or None; ``cert.method`` is "closed-form", "quadrature",
    "exact (discrete law)" or "closed-form for rho <= ..., quadrature beyond". Extra attributes:
    ``Phi`` (numpy function of p), ``Phi_formula``, ``tight``, ``theorem``, ``gamma_law``.
    Raises NotImplementedError for a pair the engine cannot handle (uniform noise: wulff.uniform).
    """
    if not isinstance(q, Distribution):
        raise TypeError(f"q must be a wulff distribution; got {type(q).__name__}")
    adversary = check_adversary(adversary)
    key = cache_key(q, adversary)
    payload = cached(key, lambda: _build_payload(q, adversary), disk=cache,
                     validate=lambda loaded: _check_loaded(loaded, q, adversary)) \
        if cache else _build_payload(q, adversary)
    return _certificate(payload, q, adversary, key)


__all__ = ["derive", "derive_symbolic", "spec_from_profile", "cache_key", "eval_srepr"]
