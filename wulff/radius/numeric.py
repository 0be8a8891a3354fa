"""The numeric pieces every radius engine shares, below all of them: rounding toward zero (one
multiplication by :func:`factor_below`, casts and products that never round a radius up), the checks
of rho, constant tables kept on a device (:class:`OnDevice`), the bucket locator of a sorted table
(:class:`Locator`) and the tangent table of a convex radius (:class:`TangentTable`).

Nothing here knows a distribution or an engine: the differential method, the level set method and the
uniform-noise theorems import these from below, never from one another (docs/design.md, "Layers").
"""
from __future__ import annotations

import math

import mpmath
import numpy as np
import sympy as sp
import torch

#: the variable of every certificate formula: a plain Symbol("rho"), so that users can substitute it
rho_symbol = sp.Symbol("rho")
#: unit roundoff of float64 (round to nearest)
UNIT_ROUNDOFF = 2.0 ** -53
#: products below this are flushed to 0 by the certificate: the relative rounding bound of
#: :func:`factor_below` holds for normal numbers only
SMALLEST_KEPT_RADIUS = 2.0 ** -1020
#: relative margin taken off every tabulated radius to absorb floating point rounding
ROUNDING_MARGIN = 1e-10


def min_max(arr: np.ndarray) -> tuple[float, float]:
    """(min, max) of a float64 array, NaN propagating: one pass of torch.aminmax on a zero-copy view of
    a large array (half the time of numpy's two reductions), numpy's min and max otherwise."""
    if arr.size >= 1 << 14 and arr.flags.writeable and arr.flags.c_contiguous:
        lo, hi = torch.aminmax(torch.from_numpy(arr))
        return float(lo), float(hi)
    return float(arr.min()), float(arr.max())


def rho_error(bad: list) -> ValueError:
    """The one error of a rho outside [0, 1] or NaN (numpy and torch alike)."""
    return ValueError(f"rho must lie in [0, 1] (and not be NaN); got {bad}")


def checked_rho(rho) -> tuple[np.ndarray, float]:
    """(rho as a float64 array checked to lie in [0, 1], its smallest value; 1.0 when empty).

    NaN propagates through min and max (:func:`min_max`), and fails both comparisons."""
    arr = np.asarray(rho, dtype=np.float64)
    if not arr.size:
        return arr, 1.0
    lo, hi = min_max(arr)
    if not (lo >= 0.0 and hi <= 1.0):
        raise rho_error(arr[np.isnan(arr) | (arr < 0) | (arr > 1)].ravel()[:3].tolist())
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


class OnDevice:
    """Constant float64 arrays copied to a torch device once (per device) and kept."""

    def __init__(self, **arrays: np.ndarray):
        #: the host copies (fresh contiguous float64 with positive strides: np.ascontiguousarray keeps
        #: a reversed view of one element as it is, stride -8, which torch cannot take)
        self.arrays = {name: np.array(value, dtype=np.float64, order="C", copy=True)
                       for name, value in arrays.items()}
        self._copies: dict = {}

    def on(self, device) -> dict:
        key = str(device)
        if key not in self._copies:
            self._copies[key] = {name: torch.as_tensor(value, device=device)
                                 for name, value in self.arrays.items()}
        return self._copies[key]


class Locator:
    """Fast np.searchsorted(a, p, side="left") for a fixed ascending a in (0, 1/2] and p in [0, 1/2].

    Buckets of equal width in log p give a first guess (never past the answer) and a few vectorized
    steps finish; 10^6 random queries cost a few array passes instead of a binary search each.
    """

    BUCKETS = 1 << 18

    def __init__(self, a: np.ndarray):
        self.a = np.ascontiguousarray(a, dtype=np.float64)
        self._padded = np.append(self.a, np.inf)
        if self.a.size == 0:
            self._steps = 0
            return
        self._lo = math.log(max(self.a[0], 1e-320))
        hi = math.log(max(self.a[-1], 1e-320)) + 1e-9
        self._scale = (self.BUCKETS - 1) / max(hi - self._lo, 1e-300)
        edges = np.exp(self._lo + np.arange(self.BUCKETS + 1) / self._scale)
        # one index of slack absorbs rounding in exp/log at the bucket edges
        self._start = np.maximum(np.searchsorted(self.a, edges[:-1], side="left") - 1, 0)
        per_bucket = np.diff(np.searchsorted(self.a, edges, side="left"))
        self._steps = int(per_bucket.max()) + 3

    def left(self, p: np.ndarray) -> np.ndarray:
        """#{a < p} for every p."""
        p = np.asarray(p, dtype=np.float64)
        if self.a.size == 0:
            return np.zeros(p.shape, dtype=np.int64)
        with np.errstate(divide="ignore"):
            bucket = (np.log(p) - self._lo) * self._scale
        j = self._start[np.clip(np.nan_to_num(bucket, neginf=0.0), 0, self.BUCKETS - 1).astype(np.int64)]
        for _ in range(self._steps):
            j += self._padded[j] < p
        return j


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
    import wulff.special as special  # the named special functions' mpmath code
    table = {name: getattr(special, name)._mpmath for name in special.__all__
             if hasattr(getattr(special, name), "_mpmath")}
    table.update({"loggamma": mpmath.loggamma, "gamma": mpmath.gamma})
    return sp.lambdify(rho_symbol, formula, modules=[table, "mpmath"])


def verified_value(formula: sp.Expr, rho: float, dps: int = 40) -> float:
    """A float64 lower bound on formula(rho), evaluated in mpmath (see
    :meth:`wulff.radius.certificate.Certificate.verified_radius` for the stated error bound). inf only
    at rho = 1."""
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
