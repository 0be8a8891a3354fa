"""Certificates: a sound certified radius R(rho) for one distribution against one adversary.

A :class:`Certificate` is what the differential method (``wulff.diffmethod``), the level set method
and the uniform-noise theorems (``wulff.levelset``) hand downstream. It carries

* ``radius(rho)``: vectorized and sound (never above the true bound of its theorem), scale lam included;
* ``formula``: the radius as a sympy expression in ``rho`` when one is known, else None;
* ``method``: how it was obtained ("closed-form", "quadrature", "level-set table", ...);
* ``Phi``: the function Phi(p) of Definition G.4 when the differential method produced it;
* ``tight``: whether the bound is known to be the exact robust radius.

Norm conversions (Table A.1): ||eta||_a <= d^max(0, 1/a - 1/b) ||eta||_b, so a radius R against the
l_a adversary is a radius R / d^max(0, 1/a - 1/b) against l_b (:meth:`Certificate.converted`).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import mpmath
import numpy as np
import sympy as sp
import torch

from .catalog import ADVERSARIES  # noqa: F401  (re-exported: the one list lives in wulff.catalog)

#: the variable of every certificate formula: a plain Symbol("rho"), so that users can substitute it
rho_symbol = sp.Symbol("rho")


def check_adversary(adversary) -> str:
    """The canonical adversary name: "l1", "l2" or "linf"."""
    key = str(adversary).lower().replace("_", "")
    aliases = {"1": "l1", "l1": "l1", "2": "l2", "l2": "l2", "inf": "linf", "linf": "linf", "infinity": "linf"}
    if key not in aliases:
        raise ValueError(f"adversary must be one of 'l1', 'l2', 'linf'; got {adversary!r}")
    return aliases[key]


def _conversion_exponent(source: str, target: str) -> sp.Rational:
    """max(0, 1/source - 1/target) as an exact rational (0, 1/2 or 1)."""
    inverse = {"l1": sp.Integer(1), "l2": sp.Rational(1, 2), "linf": sp.Integer(0)}
    return max(sp.Integer(0), inverse[check_adversary(source)] - inverse[check_adversary(target)])


def conversion_factor(source: str, target: str, d: int) -> float:
    """C with ||eta||_source <= C ||eta||_target on R^d: C = d^max(0, 1/source - 1/target).

    Hoelder's inequality; C is attained (by e_1 when the exponent is 0, by (1, ..., 1) otherwise), so
    no smaller constant is valid for every eta. A radius R against ``source`` is therefore a radius
    R / C against ``target``: ||eta||_target < R / C implies ||eta||_source < R.
    """
    return float(d) ** float(_conversion_exponent(source, target))


def as_rho_array(rho) -> np.ndarray:
    """rho as a float64 array, checked to lie in [0, 1] (NaN or outside is a ValueError)."""
    return checked_rho(rho)[0]


def _min_max(arr: np.ndarray) -> tuple[float, float]:
    """(min, max) of a float64 array, NaN propagating: one pass of torch.aminmax on a zero-copy view of
    a large array (half the time of numpy's two reductions), numpy's min and max otherwise."""
    if arr.size >= 1 << 14 and arr.flags.writeable and arr.flags.c_contiguous:
        lo, hi = torch.aminmax(torch.from_numpy(arr))
        return float(lo), float(hi)
    return float(arr.min()), float(arr.max())


def checked_rho(rho) -> tuple[np.ndarray, float]:
    """(rho as a float64 array checked to lie in [0, 1], its smallest value; 1.0 when empty).

    NaN propagates through min and max (:func:`_min_max`), and fails both comparisons."""
    arr = np.asarray(rho, dtype=np.float64)
    if not arr.size:
        return arr, 1.0
    lo, hi = _min_max(arr)
    if not (lo >= 0.0 and hi <= 1.0):
        bad = arr[np.isnan(arr) | (arr < 0) | (arr > 1)].ravel()[:3]
        raise ValueError(f"rho must lie in [0, 1] (and not be NaN); got {bad.tolist()}")
    return arr, lo


def cast_toward_zero(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """float64 radii cast to ``dtype`` rounding toward zero: where the nearest-rounded cast lies above
    the float64 value it is stepped one ulp toward 0 (torch.nextafter), so the result never exceeds
    the radius; a finite value beyond the dtype's range becomes its largest finite value (a finite
    radius never becomes inf), and inf stays inf."""
    values = values.to(torch.float64)
    cast = values.to(dtype)
    up = cast.to(torch.float64) > values
    if up.any():
        cast = torch.where(up, torch.nextafter(cast, torch.zeros_like(cast)), cast)
    overflow = torch.isinf(cast) & torch.isfinite(values)
    if overflow.any():
        cast = torch.where(overflow, torch.full_like(cast, torch.finfo(dtype).max), cast)
    return cast


def scale_toward_zero(unit: np.ndarray, lam: float) -> np.ndarray:
    """lam * unit for unit >= 0, rounded toward zero: the float64 product is rounded to nearest, so
    unless lam is a power of two (an exact product) it is stepped one ulp down; inf stays inf."""
    product = unit * lam
    if math.frexp(lam)[0] == 0.5:  # lam = 2^k: the product is exact
        return product
    return np.where(np.isfinite(product) & (product > 0), np.nextafter(product, 0.0), product)


#: unit roundoff of float64 (round to nearest)
UNIT_ROUNDOFF = 2.0 ** -53
#: products below this are flushed to 0 (:meth:`Certificate._scaled_radius`): the relative rounding
#: bound of :func:`factor_below` holds for normal numbers only
SMALLEST_KEPT_RADIUS = 2.0 ** -1020


def exact_scale(factor) -> sp.Expr:
    """The exact value of a kernel's ``factor`` argument: 1, or lam / C from the pair (lam, C)."""
    return sp.Integer(1) if factor == 1 else sp.Float(factor[0], 30) / factor[1]


def factor_below(exact) -> float:
    """A float64 f such that fl(x f) <= exact * x for every x >= 0 (exact > 0 a number or sympy
    expression, such as lam / d^(1/2)): the exact value itself when it is a power of two (the
    product is then exact), else exact (1 - 2u) rounded down, for which
    fl(x f) <= x f (1 + u) <= x exact (1 - 2u)(1 + u) < x exact whenever fl(x f) is a normal
    number (smaller products are flushed to 0 by the caller, :data:`SMALLEST_KEPT_RADIUS`).
    One multiplication by f replaces a product and a step toward zero (np.nextafter, which costs
    as much as a logarithm)."""
    with mpmath.workdps(60):
        value = mpmath.mpf(sp.N(sp.sympify(exact), 60)) if not isinstance(exact, float) else mpmath.mpf(exact)
        if value <= 0:
            raise ValueError(f"a scale factor must be positive; got {exact}")
        mantissa, _ = mpmath.frexp(value)
        if mantissa == 0.5:
            return float(value)
        target = value * (1 - mpmath.mpf(2) ** -52)
        f = float(target)
        if mpmath.mpf(f) > target:
            f = math.nextafter(f, 0.0)
        return f


def monotone_envelope(rho: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """radius made nondecreasing in rho over the batch: each value replaced by the smallest radius at
    any rho' >= rho in the batch. Never increases a value; returns ``radius`` itself when it is
    already monotone (the common case costs one sort)."""
    flat_rho, flat_r = rho.ravel(), radius.ravel()
    if flat_r.size < 2:
        return radius
    if np.all(flat_rho[1:] >= flat_rho[:-1]):  # rho already sorted (a grid, a plot): no sort needed
        if np.all(flat_r[1:] >= flat_r[:-1]):
            return radius
        return np.minimum.accumulate(flat_r[::-1])[::-1].reshape(radius.shape)
    # equal rho give equal radii (R is a function), so any order among ties will do
    order = np.argsort(flat_rho)
    sorted_r = flat_r[order]
    if np.all(sorted_r[1:] >= sorted_r[:-1]):
        return radius
    envelope = np.minimum.accumulate(sorted_r[::-1])[::-1]
    out = np.empty_like(flat_r)
    out[order] = envelope
    return out.reshape(radius.shape)


def _mp_formula(formula: sp.Expr):
    """formula as an mpmath function of rho (the named special functions by their mpmath code)."""
    from . import special
    table = {name: getattr(special, name)._mpmath for name in special.__all__
             if hasattr(getattr(special, name), "_mpmath")}
    table.update({"loggamma": mpmath.loggamma, "gamma": mpmath.gamma})
    return sp.lambdify(rho_symbol, formula, modules=[table, "mpmath"])


def verified_value(formula: sp.Expr, rho: float, dps: int = 40) -> float:
    """A float64 lower bound on formula(rho), evaluated in mpmath (see
    :meth:`Certificate.verified_radius` for the stated error bound). inf only at rho = 1."""
    if rho >= 1.0 and formula.subs(rho_symbol, 1) in (sp.oo, sp.zoo):
        return math.inf
    f = _mp_formula(formula)
    digits = dps
    while digits <= 640:
        with mpmath.workdps(digits):
            low = f(mpmath.mpf(rho))
        with mpmath.workdps(digits + 20):
            high = f(mpmath.mpf(rho))
            if not (mpmath.isfinite(low) and mpmath.isfinite(high)):
                raise ArithmeticError(f"verified mode: {formula} is not finite at rho = {rho!r}")
            diff = abs(high - low)
            if diff == 0 and mpmath.mpf(float(high)) == high:
                return max(float(high), 0.0)  # the same double at both precisions: exact (2 (rho - 1/2))
            if diff <= mpmath.mpf(10) ** -12 * abs(high) + mpmath.mpf(10) ** -(digits - 10):
                bound = high - diff - mpmath.mpf(10) ** (10 - digits) * (abs(high) + 1e-300)
                value = float(bound)  # nearest; step down if it rounded up
                if mpmath.mpf(value) > bound:
                    value = math.nextafter(value, -math.inf)
                return max(value, 0.0)
        digits *= 2
    raise ArithmeticError(f"verified mode: {formula} did not converge at rho = {rho!r}")


class Certificate:
    """A sound certified radius R(rho) against one adversary (see the module docstring).

    Fields (all set at construction, present on every certificate, converted and best ones too):

    * ``adversary``, ``method`` (how the radius is computed), ``lam``, ``d``, ``source`` (the density);
    * ``formula``: R(rho) as a sympy expression in Symbol("rho") (scale included), or None;
    * ``formula_rho_max``: the formula holds for rho <= this (None: everywhere it is defined);
    * ``Phi`` (numpy function of p, Definition G.4) and ``Phi_formula`` (sympy in Symbol("p")), or None;
    * ``tight``: the radius is the exact robust radius (no sound certificate exceeds it);
    * ``theorem``: the paper's result behind it; ``gamma_law``: the law of gamma_u (differential method);
    * ``verified_unit``: the verified mode of an envelope certificate (:meth:`verified_radius`).
    """

    def __init__(self, *, adversary: str, method: str, lam: float, d: int,
                 radius_unit: Callable[[np.ndarray], np.ndarray], formula: sp.Expr | None = None,
                 formula_rho_max: float | None = None, Phi: Callable | None = None,
                 Phi_formula: sp.Expr | None = None, tight: bool = False, source: str = "",
                 theorem: str = "", gamma_law: str = "",
                 verified_unit: Callable[[float, int], float] | None = None,
                 slope_unit: Callable[[np.ndarray], np.ndarray] | None = None,
                 radius_unit_torch: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 slope_unit_torch: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 conversion: sp.Expr | int = 1):
        self.adversary = check_adversary(adversary)
        self.method = method
        self.lam = float(lam)
        self.d = int(d)
        self._radius_unit = radius_unit
        #: the torch twin of ``radius_unit`` (float64 tensor of rho > 1/2 in, on its device), or None:
        #: tensors then go through the numpy kernel on the host
        self._radius_unit_torch = radius_unit_torch
        #: the exact norm-conversion constant C the unit radius is divided by (1: none)
        self.conversion = sp.sympify(conversion)
        #: one multiplication by this float applies lam / C rounded toward zero (:func:`factor_below`)
        self._factor = factor_below(self.lam / self.conversion if self.conversion != 1 else self.lam)
        #: (lam, C) for a kernel that applies the scale itself (``radius_unit.scaled``)
        self._exact_factor = (self.lam, self.conversion)
        #: the kernel declares radii between 2^-53 / d and 2 in magnitude on (1/2, 1]
        #: (``finite_above_half``), and the scale keeps them above the flush threshold and finite: no
        #: output checks are needed there
        self._proved_finite = bool(getattr(radius_unit, "finite_above_half", False)) and \
            SMALLEST_KEPT_RADIUS * 2.0 ** 64 < self._factor * 2.0 ** -53 / max(self.d, 1) and self._factor < 1e300
        self.formula = formula
        self.formula_rho_max = None if formula_rho_max is None else float(formula_rho_max)
        self.Phi = Phi
        self.Phi_formula = Phi_formula
        self.tight = bool(tight)
        self.source = source
        self.theorem = theorem
        self.gamma_law = gamma_law
        #: (rho, dps) -> a provable lower bound on the radius at lam = 1, where the float path is not
        #: a closed form (the envelope certificates' mpmath lines, :mod:`wulff.diffmethod.verified`)
        self.verified_unit = verified_unit
        #: rho -> dR/drho at lam = 1 for 1/2 < rho < 1 (see :meth:`slope`), or None: derived from Phi
        #: when it is known, else a central difference of the float radius
        self.slope_unit = slope_unit or self._default_slope_unit()
        #: the torch twin of ``slope_unit``, or None: gradients then come from the numpy slope on the
        #: host (or, without one either, a central difference of the torch radius)
        self.slope_unit_torch = slope_unit_torch

    def _default_slope_unit(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """dR/drho at lam = 1 from Phi when it is known: 1 / Phi(1 - rho), by Theorem G.6
        (R = int_{1-rho}^{1/2} dp / Phi(p)); else None."""
        if self.Phi is None:
            return None
        Phi = self.Phi
        return lambda rho: 1.0 / np.asarray(Phi(1.0 - rho), dtype=np.float64)

    def slope(self, rho) -> np.ndarray:
        """dR/drho (scale lam included), numpy float64 out: the gradient :meth:`radius` gives a torch
        tensor that requires grad. 0 for rho <= 1/2 (the radius is 0 there) and where R is infinite
        (rho = 1). From ``slope_unit`` (given, or 1 / Phi(1 - rho) by Theorem G.6); a certificate
        without one (a level-set table) uses the central difference of its
        radius over a step h = min(1e-4, (rho - 1/2) / 2, (1 - rho) / 2), the slope of the table read
        as a continuous curve. Not part of any guarantee: it steers training, it certifies nothing."""
        arr = as_rho_array(rho)
        out = np.zeros(arr.shape, dtype=np.float64)
        inside = (arr > 0.5) & (arr < 1.0)
        if inside.any():
            out[inside] = self._slope_inside(arr[inside])
        out[~np.isfinite(out)] = 0.0
        return out

    def _slope_torch(self, x: torch.Tensor) -> torch.Tensor | None:
        """:meth:`slope` on x's device (float64 in and out); None where only a numpy slope exists.
        A certificate without any slope function takes the same central difference as
        :meth:`slope`, of its torch radius."""
        inside = (x > 0.5) & (x < 1.0)
        if self.slope_unit_torch is not None:
            values = self.lam * torch.clamp(self.slope_unit_torch(torch.where(inside, x, 0.75)), min=0.0)
        elif self.slope_unit is None:
            h = torch.clamp(torch.minimum(x - 0.5, 1.0 - x) / 2, max=1e-4)
            safe = torch.where(inside, x, 0.75)
            h = torch.where(inside, h, 1e-4)
            values = (self._guarded_radius_torch(safe + h) - self._guarded_radius_torch(safe - h)) / (2 * h)
        else:
            return None
        return torch.where(inside & torch.isfinite(values), values, 0.0)

    def _slope_inside(self, rho: np.ndarray) -> np.ndarray:
        if self.slope_unit is not None:
            with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
                return self.lam * np.maximum(np.asarray(self.slope_unit(rho), dtype=np.float64), 0.0)
        h = np.minimum(1e-4, np.minimum(rho - 0.5, 1.0 - rho) / 2)
        with np.errstate(invalid="ignore"):
            return (self.radius(rho + h) - self.radius(rho - h)) / (2 * h)

    #: set by certificates that prove R = inf at some rho < 1 (none today); otherwise an infinite
    #: radius below rho = 1 is a bug and :meth:`radius` raises ArithmeticError
    proves_infinite_below_one = False

    def radius(self, rho):
        """R(rho), scale lam included; 0 for rho <= 1/2.

        numpy (or a Python number) in -> numpy float64 out, same shape; a torch tensor in -> a tensor
        on the same device (float64 unless the input is floating, then its dtype).

        Guards on every radius that leaves the library:

        * the radius is computed in float64 from the tensor's exact value (every fp16 / bf16 / fp32
          number is exactly a float64), then cast to the tensor's dtype rounding toward zero, never
          to nearest; a finite radius too large for the dtype becomes the dtype's largest finite
          value, never inf (see :func:`cast_toward_zero`);
        * an infinite radius at rho < 1 raises ArithmeticError (unless the certificate proves it);
          so does NaN.

        Each value depends on its own rho only (not on the rest of the batch), and a tensor on a
        device is evaluated there when the certificate has a torch kernel. The true radius is
        nondecreasing in rho; the float values follow it up to their rounding margins (a few ulps
        to 1e-8 relative), so two rho a few ulps apart can give radii in the other order, both
        sound. :func:`monotone_envelope` makes a batch exactly monotone where a plot needs it.
        """
        if isinstance(rho, torch.Tensor):
            if rho.requires_grad and torch.is_grad_enabled():
                return _RadiusOfRho.apply(rho, self)
            return self._tensor_radius(rho)
        if isinstance(rho, (float, int, np.floating, np.integer)) and not isinstance(rho, bool):
            return np.array(self._scalar_radius(float(rho)))  # a 0-d array, as for any other input
        arr, lo = checked_rho(rho)
        if not arr.ndim:  # a 0-d array: the kernels' batch path, so that it equals the same rho in a batch
            return self._guarded_radius(arr.reshape(1), lo).reshape(())
        return self._guarded_radius(arr, lo)

    def _guarded_radius(self, arr: np.ndarray, lo: float | None = None) -> np.ndarray:
        """The radii of checked float64 values of rho (``lo``: their minimum, if known): 0 at or below
        1/2, NaN and an unproved infinity below rho = 1 raise ArithmeticError. A fresh array."""
        if lo is None:
            lo = float(arr.min()) if arr.size else 1.0
        if lo > 0.5:  # the common case: no mask, no copy
            out = self._scaled_radius(arr, lo)
        else:
            out = np.zeros(arr.shape, dtype=np.float64)
            above = arr > 0.5
            if above.any():
                out[above] = self._scaled_radius(arr[above])
        if out.size and self._needs_output_checks(lo):
            low, top = _min_max(out)  # NaN propagates
            if np.isnan(top):
                raise ArithmeticError(f"{self.method} certificate produced NaN radii; please report this")
            if top == np.inf and not self.proves_infinite_below_one and np.isinf(out[arr < 1.0]).any():
                raise ArithmeticError(f"{self.method} certificate produced an infinite radius at rho < 1; "
                                      "please report this")
            if low < SMALLEST_KEPT_RADIUS:  # negative, or too small for the rounding bound: 0
                out[out < SMALLEST_KEPT_RADIUS] = 0.0
        return out

    def _needs_output_checks(self, lo: float) -> bool:
        """Whether :meth:`_guarded_radius` must look for NaN, infinities and underflow: not for a
        kernel that proves its radii finite and normal on (1/2, 1] when every rho lies there."""
        return not (lo > 0.5 and self._proved_finite)

    def _scalar_radius(self, rho: float) -> float:
        """One number: checked in plain Python (a scalar call's cost is its overhead), then the same
        guarded radius as an array."""
        if not 0.0 <= rho <= 1.0:  # also False for NaN
            raise ValueError(f"rho must lie in [0, 1] (and not be NaN); got {[rho]}")
        if rho <= 0.5:
            return 0.0
        return float(self._guarded_radius(np.array([rho]), rho)[0])

    def _tensor_radius(self, rho: torch.Tensor) -> torch.Tensor:
        """The radius of a tensor, cast toward zero to rho's dtype on rho's device: computed there in
        float64 when the certificate has a torch kernel, else on the host through numpy."""
        if self._torch_kernel_ready(rho):
            values = self._guarded_radius_torch(rho.detach().to(torch.float64))
        else:
            host = self.radius(rho.detach().to("cpu", torch.float64).numpy())
            values = torch.as_tensor(host, dtype=torch.float64).to(rho.device)
        if not rho.is_floating_point() or rho.dtype == torch.float64:
            return values
        return cast_toward_zero(values, rho.dtype)

    def _torch_kernel_ready(self, rho: torch.Tensor) -> bool:
        return self._radius_unit_torch is not None and rho.device.type != "mps"  # mps has no float64

    def _guarded_radius_torch(self, x: torch.Tensor, bounds: tuple[float, float] | None = None) -> torch.Tensor:
        """:meth:`_guarded_radius` on x's device (float64): the same checks, the same rounding; two
        reductions (of rho, unless its ``bounds`` are given, and of the radii) and their host syncs."""
        if not x.numel():
            return x.clone()
        lo, hi = bounds if bounds is not None else (float(v) for v in torch.aminmax(x))
        if not (lo >= 0.0 and hi <= 1.0):
            bad = x[torch.isnan(x) | (x < 0) | (x > 1)].ravel()[:3].tolist()
            raise ValueError(f"rho must lie in [0, 1] (and not be NaN); got {bad}")
        if lo > 0.5:
            out = self._scaled_radius_torch(x, lo, hi)
        else:
            above = x > 0.5
            out = torch.where(above, self._scaled_radius_torch(torch.where(above, x, 0.75), hi=hi), 0.0)
        return self._checked_torch(out, x)

    def _checked_torch(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The output checks of :meth:`_guarded_radius_torch`: one reduction of the radii."""
        low, top = (float(v) for v in torch.aminmax(out))
        if low != low:  # NaN propagates through the reduction
            raise ArithmeticError(f"{self.method} certificate produced NaN radii; please report this")
        if top == math.inf and not self.proves_infinite_below_one and bool((torch.isinf(out) & (x < 1.0)).any()):
            raise ArithmeticError(f"{self.method} certificate produced an infinite radius at rho < 1; "
                                  "please report this")
        if low < SMALLEST_KEPT_RADIUS:
            out = torch.where(out < SMALLEST_KEPT_RADIUS, 0.0, out)
        return out

    def _scaled_radius_torch(self, x: torch.Tensor, lo: float | None = None, hi: float | None = None
                             ) -> torch.Tensor:
        """The torch twin of :meth:`_scaled_radius` (before the flush); ``lo``, ``hi``: bounds on x
        when known."""
        fused = getattr(self._radius_unit, "scaled_torch", None)
        if fused is not None:
            return fused(x, self._exact_factor, lo)
        unit = self._radius_unit_torch(x).to(torch.float64)
        return unit * self._factor if self._factor != 1.0 else unit

    def inverse_radius(self, r, points: int = 64) -> float:
        """rho_needed(r): the smallest rho (to float64 resolution) with R(rho) >= r, the numeric
        inverse of the monotone radius, for deciding "is the radius at least r" as rho >= rho_needed.

        Sound direction: the returned value always satisfies ``radius(value) >= r`` (it is checked by
        evaluating R there), so it may sit a few ulps above the exact inverse, never below it.
        Returns 0.0 for r <= 0 (R(0) = 0 >= r) and ``math.inf`` when even R(1) < r (no rho
        certifies r). Search: R is evaluated on ``points`` interior points of the bracket
        [lo, hi] with R(lo) < r <= R(hi), which is narrowed to the two grid points around the
        first one reaching r, until lo and hi are adjacent floats (about 9 rounds for 64 points).
        A value in a batch equals the value alone (each radius depends on its own rho), so hi found
        in a batch also passes the single check below. Deciding "rho >= value" is sound even where
        the float radius wobbles by rounding: the true R is nondecreasing, and
        R(rho) >= R(value) >= radius(value) >= r.
        """
        r = float(r)
        if math.isnan(r):
            raise ValueError("r must be a number (got NaN)")
        if r <= 0.0:
            return 0.0
        lo, hi = 0.5, 1.0  # R(1/2) = 0 < r
        if float(self.radius(hi)) < r:
            return math.inf
        while True:
            grid = np.unique(np.linspace(lo, hi, int(points) + 2)[1:-1])
            grid = grid[(grid > lo) & (grid < hi)]
            if grid.size == 0:
                break
            above = self.radius(grid) >= r
            if above.any():
                first = int(np.argmax(above))
                hi, lo = float(grid[first]), (float(grid[first - 1]) if first > 0 else lo)
            else:
                lo = float(grid[-1])
        if float(self.radius(hi)) < r:  # never taken when R is deterministic; kept as the guard
            return 1.0  # R(1) >= r was checked above
        return hi

    def _scaled_radius(self, rho: np.ndarray, lo: float | None = None) -> np.ndarray:
        """lam R_unit(rho) / C for rho > 1/2, rounded toward zero (a fresh array; negative values and
        values below :data:`SMALLEST_KEPT_RADIUS` are zeroed by :meth:`_guarded_radius`). A kernel with a
        ``scaled(rho, (lam, C), lo)`` method folds the scale into its own arithmetic."""
        fused = getattr(self._radius_unit, "scaled", None)
        if fused is not None and rho.ndim:
            return fused(rho, self._exact_factor, lo)
        unit = np.asarray(self._radius_unit(rho), dtype=np.float64)
        if unit.shape != rho.shape:  # a kernel that returns 1-d for a 0-d rho, or a constant
            unit = np.array(unit.reshape(rho.shape) if unit.size == rho.size else np.broadcast_to(unit, rho.shape))
        return self._scale(unit, owned=unit.base is None and unit.flags.writeable
                           and not np.may_share_memory(unit, rho))

    def _scale(self, unit: np.ndarray, owned: bool) -> np.ndarray:
        """unit * lam / C rounded toward zero, in place when ``unit`` is ``owned`` (a fresh array): one
        multiplication by :func:`factor_below`'s factor."""
        if self._factor != 1.0:
            unit = np.multiply(unit, self._factor, out=unit if owned else None)
        elif not owned:
            unit = unit.copy()
        return unit

    def verified_radius(self, rho, dps: int = 40) -> np.ndarray:
        """A provable lower bound on R(rho), evaluated in mpmath at ``dps`` >= 30 digits (float64 out).

        * A closed form (``formula`` not None, e.g. Theorems H.1, I.1, N.1, R.1, S.1): the formula
          is evaluated in mpmath at ``dps`` and at ``dps + 20`` digits, with rho the exact value of
          the float given; the stated error bound is |difference| + 10^(10 - dps) |value| (mpmath
          rounds each elementary operation correctly at its working precision, and the special
          function inverses of :mod:`wulff.special` bisect to the working precision), and the value
          minus the bound is rounded down to a float64. If the two evaluations disagree by more than
          10^(-12) relative, the precision is doubled (up to 640 digits), else ArithmeticError.
          A value that both precisions give as the same float64 number is taken as exact (rational
          formulas such as 2 (rho - 1/2), Theorem N.3, evaluate without rounding).
        * An envelope of stop-loss lines (quadrature, discrete laws, and the part of a closed form
          beyond its ``formula_rho_max``): the same lines with every intercept recomputed in mpmath
          from the exact law, and the radius integrated exactly (:mod:`wulff.diffmethod.verified`
          states what is bounded and what is estimated: mpmath's quadrature error estimate, times
          ten). Cost: one mpmath stop-loss per line active on [1 - rho, 1/2] (a few near rho = 1/2,
          about 200 at rho = 0.6, about 2000 near rho = 1), each from microseconds (discrete laws)
          to about a second (a sphere coordinate times a profile); lines are memoized.
        * A level-set table (``verified_unit`` a :class:`wulff.levelset.verified.LevelSetVerifier`):
          the Neyman-Pearson radius of Theorem T.1 solved in mpmath at the given rho and checked at
          ``dps`` digits, within 1e-9 relative of the exact radius (:mod:`wulff.levelset.verified`
          states what is estimated). Otherwise (a table built without its radial form): the float
          path's value. :attr:`verified_method` says which case applies.
        """
        if dps < 30:
            raise ValueError(f"dps must be >= 30; got {dps}")
        arr = as_rho_array(rho)
        if self.formula is None and self.verified_unit is None:
            return self.radius(arr)
        out = np.zeros(arr.shape, dtype=np.float64)
        rho_max = self.formula_rho_max  # the formula holds for rho <= rho_max only
        for idx in np.ndindex(arr.shape):
            if arr[idx] <= 0.5:
                continue
            if self.formula is not None and (rho_max is None or arr[idx] <= rho_max):
                out[idx] = verified_value(self.formula, float(arr[idx]), dps)
            elif self.verified_unit is not None:
                out[idx] = float(scale_toward_zero(np.array(self.verified_unit(float(arr[idx]), dps)), self.lam))
            else:
                out[idx] = float(self.radius(arr[idx]))
        return out

    @property
    def verified_method(self) -> str:
        """How :meth:`verified_radius` evaluates this certificate."""
        if self.formula is not None:
            return "mpmath closed form" + (", mpmath envelope beyond" if self.verified_unit else "")
        if self.verified_unit is None:
            return "float path (level-set table)"
        return getattr(self.verified_unit, "method", "mpmath envelope lines")

    def latex(self) -> str:
        """The radius formula in LaTeX (a description when there is no formula)."""
        if self.formula is None:
            return r"\text{%s}" % self.method
        return sp.latex(self.formula)

    def converted(self, adversary: str) -> Certificate:
        """The same bound read against another adversary through a norm inequality."""
        target = check_adversary(adversary)
        if target == self.adversary:
            return self
        exponent = _conversion_exponent(self.adversary, target)
        c = conversion_factor(self.adversary, target, self.d)
        exact_c = sp.Integer(self.d) ** exponent

        slope, slope_torch = self.slope_unit, self.slope_unit_torch
        converted_slope = None if slope is None else (lambda rho: np.asarray(slope(rho), dtype=np.float64) / c)
        converted_slope_torch = None if slope_torch is None else (lambda x: slope_torch(x) / c)
        verified = self.verified_unit
        factor = factor_below(1 / exact_c) if exact_c != 1 else 1.0

        def converted_verified(rho, dps):  # R / C rounded toward 0 (never up); inf stays inf
            value = float(verified(rho, dps)) * factor
            return value if value >= SMALLEST_KEPT_RADIUS else 0.0  # factor_below's bound needs normals
        converted_verified.method = getattr(verified, "method", "mpmath envelope lines")

        return Certificate(
            adversary=target, lam=self.lam, d=self.d,
            method=f"{self.method}, {self.adversary} -> {target} norm conversion"
                   + ("" if c == 1 else f" (/{exact_c})"),
            radius_unit=self._radius_unit, radius_unit_torch=self._radius_unit_torch,
            conversion=self.conversion * exact_c,
            formula=None if self.formula is None else self.formula / exact_c,
            formula_rho_max=self.formula_rho_max, Phi=None, Phi_formula=None, tight=False,
            source=self.source, theorem=self.theorem, gamma_law=self.gamma_law,
            verified_unit=None if verified is None else (verified if c == 1 else converted_verified),
            slope_unit=converted_slope, slope_unit_torch=converted_slope_torch)

    def __repr__(self) -> str:
        f = "" if self.formula is None else f", formula={self.formula}"
        return (f"Certificate({self.source or '?'} vs {self.adversary}, method={self.method!r}"
                f"{f}, tight={self.tight})")


class _RadiusOfRho(torch.autograd.Function):
    """R(rho) for a tensor that requires grad: the sound value of :meth:`Certificate.radius` forward,
    dR/drho (:meth:`Certificate.slope`, on the tensor's device when the certificate has a torch
    slope) times the incoming gradient backward."""

    @staticmethod
    def forward(ctx, rho: torch.Tensor, certificate: Certificate) -> torch.Tensor:
        ctx.certificate = certificate
        ctx.save_for_backward(rho)
        return certificate._tensor_radius(rho)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (rho,) = ctx.saved_tensors
        certificate = ctx.certificate
        slope = certificate._slope_torch(rho.detach().to(torch.float64)) \
            if certificate._torch_kernel_ready(rho) else None
        if slope is None:  # no torch slope: the numpy one, on the host
            slope = torch.as_tensor(certificate.slope(rho.detach().to("cpu", torch.float64).numpy()))
        return grad * slope.to(dtype=grad.dtype, device=grad.device), None
