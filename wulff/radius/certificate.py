"""Certificates: a sound certified radius R(rho) for one distribution against one adversary.

A :class:`Certificate` is what the differential method (``wulff.diffmethod``), the level set method
(``wulff.levelset``) and the uniform-noise theorems (``wulff.uniform``) hand downstream: a radius
kernel (:class:`~wulff.radius.kernel.RadiusKernel`) and its declared metadata. It carries

* ``radius(rho)``: vectorized and sound (never above the true bound of its theorem), scale lam included;
  the checks of rho, the scale, the conversion, the output checks and the rounding are done here,
  once, for numpy and torch alike;
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

import numpy as np
import sympy as sp
import torch

from wulff.catalog import ADVERSARIES  # noqa: F401  (re-exported: the one list lives in wulff.catalog)

from .kernel import Factor, Kernel, RadiusKernel, as_kernel
from .numeric import (  # noqa: F401  (re-exported: public here before wulff.radius.numeric existed)
    SMALLEST_KEPT_RADIUS,
    UNIT_ROUNDOFF,
    IndexedMaximum,
    cast_toward_zero,
    checked_rho,
    exact_scale,
    factor_below,
    min_max,
    monotone_envelope,
    rho_error,
    rho_symbol,
    scale_toward_zero,
    verified_value,
)


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


class Certificate:
    """A sound certified radius R(rho) against one adversary (see the module docstring).

    Fields (all set at construction, present on every certificate, converted and best ones too):

    * ``adversary``, ``method`` (how the radius is computed), ``lam``, ``d``, ``source`` (the density);
    * ``formula``: R(rho) as a sympy expression in Symbol("rho") (scale included), or None;
    * ``formula_rho_max``: the formula holds for rho <= this (None: everywhere it is defined);
    * ``Phi`` (numpy function of p, Definition G.4) and ``Phi_formula`` (sympy in Symbol("p")), or None;
    * ``tight``: the radius is the exact robust radius (no sound certificate exceeds it);
    * ``theorem``: the paper's result behind it; ``gamma_law``: the law of gamma_u (differential method);
    * ``verified_unit``: the verified mode of an envelope certificate (:meth:`verified_radius`);
    * ``kernel``: the :class:`~wulff.radius.kernel.RadiusKernel` that evaluates the radius at unit
      scale (``radius_unit`` may be a kernel, or a numpy function with an optional torch twin
      ``radius_unit_torch``, wrapped in a :class:`~wulff.radius.kernel.FunctionKernel`).
    """

    #: set by certificates that prove R = inf at some rho < 1 (none today); otherwise an infinite
    #: radius below rho = 1 is a bug and :meth:`radius` raises ArithmeticError
    proves_infinite_below_one = False

    def __init__(self, *, adversary: str, method: str, lam: float, d: int,
                 radius_unit: RadiusKernel | Callable[[np.ndarray], np.ndarray], formula: sp.Expr | None = None,
                 formula_rho_max: float | None = None, Phi: Callable | None = None,
                 Phi_formula: sp.Expr | None = None, tight: bool = False, source: str = "",
                 theorem: str = "", gamma_law: str = "",
                 verified_unit: Callable[[float, int], float] | None = None,
                 slope_unit: Callable[[np.ndarray], np.ndarray] | None = None,
                 radius_unit_torch: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 slope_unit_torch: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 conversion: sp.Expr | int = 1):
        self.adversary: str = check_adversary(adversary)
        self.method: str = method
        self.lam: float = float(lam)
        self.d: int = int(d)
        #: evaluates the unit radius, numpy and torch (:class:`~wulff.radius.kernel.RadiusKernel`)
        self.kernel: RadiusKernel = as_kernel(radius_unit, radius_unit_torch)
        #: the exact norm-conversion constant C the unit radius is divided by (1: none)
        self.conversion: sp.Expr = sp.sympify(conversion)
        #: one multiplication by this float applies lam / C rounded toward zero (:func:`factor_below`)
        self._factor = factor_below(self.lam / self.conversion if self.conversion != 1 else self.lam)
        #: (lam, C), the exact scale the kernel applies (:meth:`RadiusKernel.scaled`)
        self._exact_factor: Factor = (self.lam, self.conversion)
        #: the kernel proves radii between 2^-53 / d and 2 in magnitude on (1/2, 1]
        #: (``finite_above_half``), and the scale keeps them above the flush threshold and finite: no
        #: output checks are needed there
        self._proved_finite = bool(self.kernel.finite_above_half) and \
            SMALLEST_KEPT_RADIUS * 2.0 ** 64 < self._factor * 2.0 ** -53 / max(self.d, 1) and self._factor < 1e300
        self.formula: sp.Expr | None = formula
        self.formula_rho_max: float | None = None if formula_rho_max is None else float(formula_rho_max)
        self.Phi: Callable | None = Phi
        self.Phi_formula: sp.Expr | None = Phi_formula
        self.tight: bool = bool(tight)
        self.source: str = source
        self.theorem: str = theorem
        self.gamma_law: str = gamma_law
        #: (rho, dps) -> a provable lower bound on the radius at lam = 1, where the float path is not
        #: a closed form (the envelope certificates' mpmath lines, :mod:`wulff.diffmethod.verified`)
        self.verified_unit: Callable[[float, int], float] | None = verified_unit
        #: rho -> dR/drho at lam = 1 for 1/2 < rho < 1 (see :meth:`slope`), or None: the kernel's, else
        #: derived from Phi when it is known, else a central difference of the float radius
        self.slope_unit = slope_unit or self.kernel.slope_unit or self._default_slope_unit()
        #: the torch twin of ``slope_unit``, or None: gradients then come from the numpy slope on the
        #: host (or, without one either, a central difference of the torch radius)
        self.slope_unit_torch = slope_unit_torch or self.kernel.slope_unit_torch

    @property
    def _radius_unit(self) -> RadiusKernel:
        """The kernel (the name of earlier versions)."""
        return self.kernel

    @_radius_unit.setter
    def _radius_unit(self, function: Callable[[np.ndarray], np.ndarray]) -> None:
        """Replace the numpy evaluation only (the torch one is kept)."""
        kernel = self.kernel
        self.kernel = as_kernel(function, (lambda x: kernel.scaled(x, 1)) if kernel.has_torch else None)

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
            values = (self._guarded_radius(safe + h) - self._guarded_radius(safe - h)) / (2 * h)
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

    def _guarded_radius(self, x, lo: float | None = None, hi: float | None = None):
        """The radii of checked float64 values of rho, a numpy array or a tensor (``lo``, ``hi``: their
        minimum and maximum, if known): 0 at or below 1/2, the kernel's scaled radius above, then the
        output checks (:meth:`_checked`). A fresh array (or tensor)."""
        on_device = isinstance(x, torch.Tensor)
        if lo is None:
            lo = float(x.min()) if (x.numel() if on_device else x.size) else 1.0
        if lo > 0.5:  # the common case: no mask, no copy
            out = self.kernel.scaled(x, self._exact_factor, lo)
        elif on_device:  # elementwise work is cheap on a device, gathering is not
            above = x > 0.5
            out = torch.where(above, self.kernel.scaled(torch.where(above, x, 0.75), self._exact_factor), 0.0)
        else:
            out = np.zeros(x.shape, dtype=np.float64)
            above = x > 0.5
            if above.any():
                out[above] = self.kernel.scaled(x[above], self._exact_factor)
        return self._checked(out, x, lo)

    def _checked(self, out, x, lo: float):
        """The output checks, numpy or torch: NaN and an unproved infinity below rho = 1 raise
        ArithmeticError, negative radii and radii below :data:`SMALLEST_KEPT_RADIUS` become 0 (the
        rounding bound of :func:`factor_below` needs normal numbers). None where the kernel proves
        its radii finite and normal and every rho lies above 1/2."""
        on_device = isinstance(out, torch.Tensor)
        if not (out.numel() if on_device else out.size) or (lo > 0.5 and self._proved_finite):
            return out
        low, top = (float(v) for v in torch.aminmax(out)) if on_device else min_max(out)  # NaN propagates
        if top != top or low != low:
            raise ArithmeticError(f"{self.method} certificate produced NaN radii; please report this")
        if top == math.inf and not self.proves_infinite_below_one and \
                bool((torch.isinf(out) & (x < 1.0)).any() if on_device else np.isinf(out[x < 1.0]).any()):
            raise ArithmeticError(f"{self.method} certificate produced an infinite radius at rho < 1; "
                                  "please report this")
        if low < SMALLEST_KEPT_RADIUS:
            if on_device:
                return torch.where(out < SMALLEST_KEPT_RADIUS, 0.0, out)
            out[out < SMALLEST_KEPT_RADIUS] = 0.0
        return out

    def _scalar_radius(self, rho: float) -> float:
        """One number: checked in plain Python (a scalar call's cost is its overhead), then the same
        guarded radius as an array."""
        if not 0.0 <= rho <= 1.0:  # also False for NaN
            raise rho_error([rho])
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
        return self.kernel.has_torch and rho.device.type != "mps"  # mps has no float64

    def _guarded_radius_torch(self, x: torch.Tensor) -> torch.Tensor:
        """The checks of rho on x's device (one reduction and its host sync), then
        :meth:`_guarded_radius`: the same kernel call, checks and rounding as numpy."""
        if not x.numel():
            return x.clone()
        lo, hi = (float(v) for v in torch.aminmax(x))
        if not (lo >= 0.0 and hi <= 1.0):
            raise rho_error(x[torch.isnan(x) | (x < 0) | (x > 1)].ravel()[:3].tolist())
        return self._guarded_radius(x, lo, hi)

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

    def verified_bracket(self, rho: float, dps: int = 40, refine: int = 1) -> tuple[float, float]:
        """(lower, upper) with lower <= R(rho) <= upper for an envelope certificate, R the exact
        radius of Theorem G.6 for the certificate's law: lower is :meth:`verified_radius`, upper
        integrates 1 / Phi_low for a proved lower bound Phi_low <= Phi (lower and upper stop-loss
        bounds at the envelope's slopes and ``refine`` levels of midpoints, convexity of the
        stop-loss; :meth:`wulff.diffmethod.verified.VerifiedEnvelope.bracket_unit`). So the verified
        radius is within (upper - lower) / lower of the exact one, given mpmath's quadrature error
        estimates. NotImplementedError where the certificate has no verified envelope below the
        float path (a closed form below its ``formula_rho_max``, a level-set table, a conversion)."""
        if dps < 30:
            raise ValueError(f"dps must be >= 30; got {dps}")
        rho = float(as_rho_array(rho))
        bracket = getattr(self.verified_unit, "bracket", None)
        if bracket is None or (self.formula is not None and
                               (self.formula_rho_max is None or rho <= self.formula_rho_max)):
            raise NotImplementedError(f"verified_bracket: no verified envelope for {self.method!r} "
                                      f"at rho = {rho!r}")
        low, high = bracket(rho, dps, refine)
        lower = float(scale_toward_zero(np.array(low), self.lam))
        upper = high * self.lam
        return lower, upper if math.isinf(upper) else math.nextafter(upper, math.inf)

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
            radius_unit=self.kernel, conversion=self.conversion * exact_c,
            formula=None if self.formula is None else self.formula / exact_c,
            formula_rho_max=self.formula_rho_max, Phi=None, Phi_formula=None, tight=False,
            source=self.source, theorem=self.theorem, gamma_law=self.gamma_law,
            verified_unit=None if verified is None else (verified if c == 1 else converted_verified),
            slope_unit=converted_slope, slope_unit_torch=converted_slope_torch)

    def __repr__(self) -> str:
        f = "" if self.formula is None else f", formula={self.formula}"
        return (f"Certificate({self.source or '?'} vs {self.adversary}, method={self.method!r}"
                f"{f}, tight={self.tight})")


#: where a pointwise maximum compares its candidates once (:class:`Maximum`): fine in the bulk,
#: geometric towards rho = 1/2 and rho = 1
CHOICE_GRID = np.unique(np.concatenate([
    np.linspace(0.5, 1.0, 2049)[1:-1], 0.5 + np.geomspace(1e-15, 0.25, 400),
    1.0 - np.geomspace(1e-16, 0.25, 800)]))


#: runs of a candidate's cells closer than this in rho are evaluated as one interval (a few more
#: values evaluated instead of one more mask over the batch)
MERGE_GAP = 0.05


def _runs(member: np.ndarray) -> list[tuple[float, float]]:
    """The cells a candidate is evaluated in (:meth:`Maximum._choose`), merged into rho
    intervals [a, b): cell 0 is (-inf, g_0), cell k is [g_{k-1}, g_k), the last [g_last, inf).
    Intervals less than :data:`MERGE_GAP` apart are joined (evaluating more is never wrong)."""
    edges = np.concatenate([[-np.inf], CHOICE_GRID, [np.inf]])
    padded = np.concatenate([[False], member, [False]])
    starts = np.flatnonzero(padded[1:] & ~padded[:-1])
    ends = np.flatnonzero(~padded[1:] & padded[:-1])  # one past the last member cell
    runs: list[tuple[float, float]] = []
    for a, b in ((float(edges[s]), float(edges[e])) for s, e in zip(starts, ends)):
        if runs and a - runs[-1][1] < MERGE_GAP:
            runs[-1] = (runs[-1][0], b)
        else:
            runs.append((a, b))
    return runs


def _inside(rho: np.ndarray, a: float, b: float) -> np.ndarray:
    """a <= rho < b, with one comparison where an end is infinite."""
    if a == -np.inf:
        return rho < b
    if b == np.inf:
        return rho >= a
    return (rho >= a) & (rho < b)


def _cell_reach(intervals: list[tuple[float, float]], anchor: np.ndarray,
                far: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inside, cut) per row of an indexed table (row 0: rho = 1; rows 1 .. n: u = 1 - rho in
    [far, anchor); the last row: rho <= 1/2, never read): whether the rho intervals [a, b) of a
    :class:`Maximum` candidate hold all of the row's rho, or some but maybe not all. The rho of a cell lie
    in [1 - anchor, 1 - far], widened here by one ulp each way."""
    lo = np.concatenate([[1.0], np.nextafter(1.0 - anchor, 0.0), [-np.inf]])
    hi = np.concatenate([[1.0], np.nextafter(1.0 - far, 2.0), [0.5]])
    inside, meets = np.zeros(lo.shape, dtype=bool), np.zeros(lo.shape, dtype=bool)
    for a, b in intervals:
        inside |= (a <= lo) & (hi < b)
        meets |= (hi >= a) & (lo < b)
    inside[-1], meets[-1] = False, False
    return inside, meets & ~inside


class Maximum(Kernel):
    """The kernel of a pointwise maximum of certificates (:class:`wulff.selector.BestCertificate`): a
    maximum of sound lower bounds is a sound lower bound. Each candidate's kernel is evaluated at the
    candidate's own scale (the ``factor`` argument is not used: the candidates carry theirs), and the
    certificate holding this kernel checks and rounds the maximum once.

    It chooses once: at construction every candidate is evaluated on :data:`CHOICE_GRID`, and each
    cell [g, g') between two grid points keeps the candidates that can win in it: as every radius is
    nondecreasing, candidate i can exceed the best radius somewhere in the cell only if
    R_i(g') >= max_j R_j(g). Away from crossovers that is one candidate; near one, both; the cells
    below the first and above the last grid point keep every candidate. A rho is then evaluated only
    by its cell's candidates, the largest taken: the pointwise maximum of all candidates, at the cost
    of (mostly) one.
    """

    guarantee = "the maximum of the candidates' radii; each as its own kernel states"

    def __init__(self, certificates: list[Certificate]):
        self.certificates = certificates
        self.members = self._choose()
        self.intervals = [_runs(member) for member in self.members]

    @property
    def has_torch(self) -> bool:
        return all(c.kernel.has_torch for c in self.certificates)

    @property
    def finite_above_half(self) -> bool:
        """Proved when every candidate's own proof holds at its own scale (each then gives finite
        radii above the flush threshold on (1/2, 1], and so does their maximum)."""
        return all(c._proved_finite for c in self.certificates)

    def _choose(self) -> np.ndarray:
        """members[i, k]: candidate i is evaluated in cell k (cell 0: rho < CHOICE_GRID[0]; cell k:
        CHOICE_GRID[k-1] <= rho < CHOICE_GRID[k]; the last: rho >= CHOICE_GRID[-1])."""
        count, cells = len(self.certificates), CHOICE_GRID.size + 1
        if count == 1:
            return np.ones((1, cells), dtype=bool)
        radii = np.stack([c.radius(CHOICE_GRID) for c in self.certificates])
        members = np.ones((count, cells), dtype=bool)
        # inner cell k = [g_{k-1}, g_k): R_i(rho) <= R_i(g_k) and max_j R_j(rho) >= max_j R_j(g_{k-1})
        members[:, 1:-1] = radii[:, 1:] >= radii.max(axis=0)[None, :-1]
        return members

    def unit(self, rho: np.ndarray) -> np.ndarray:
        return self.scaled(np.asarray(rho, dtype=np.float64), 1)

    def _plans(self, lo: float, hi: float) -> list[tuple[bool, Certificate, list]]:
        """(partial, candidate, its intervals meeting [lo, hi]) for the candidates that can win there,
        those covering the whole range first."""
        plans = []
        for certificate, intervals in zip(self.certificates, self.intervals):
            hits = [(a, b) for a, b in intervals if a <= hi and b > lo]
            if hits:
                plans.append((not any(a <= lo and b > hi for a, b in hits), certificate, hits))
        return sorted(plans, key=lambda plan: plan[0])

    def scaled(self, rho, factor, lo: float | None = None):
        """The largest radius among each rho's cell candidates (rho > 1/2), NaN and inf propagating.
        numpy (and a tensor on the host): read from the candidates' cells in one pass where they have
        them (:meth:`cells`), the rest as on a device. On a device (and without cells): a candidate
        whose intervals cover the batch's range is evaluated on all of it, one whose intervals miss the
        range not at all, any other on the rho inside its intervals only (numpy), or on the whole batch
        (torch: on a device, elementwise work is cheap and gathering is not)."""
        if isinstance(rho, torch.Tensor):
            if rho.device.type == "cpu" and self.cells() is not None:
                return torch.from_numpy(self.scaled(rho.detach().to(torch.float64).numpy(), factor, lo))
            return self._scaled_torch(rho, lo)
        cells = self.cells()
        if cells is None or not rho.size:
            return self._by_candidates(rho, lo)
        out, missing = cells(rho)
        if missing is not None:
            out.reshape(-1)[missing.where] = self._by_candidates(missing.rho)
        return out

    def cells(self) -> IndexedMaximum | None:
        """The candidates read in one pass (built at the first use), or None: one candidate with an
        indexed quadratic table (:meth:`~wulff.radius.kernel.Kernel.quadratic_cells`), at most one step
        function (:meth:`~wulff.radius.kernel.Kernel.step_cells`), any others left to their kernels in
        the cells their intervals reach (marked exact). In each cell a candidate is read where its
        intervals hold the whole cell, skipped (a zero row) where they miss it, and the cell is exact
        where they cut it: the same candidates at each rho as :meth:`_by_candidates`, the same float
        operations, so the same values, bit for bit."""
        if "_cells" not in self.__dict__:
            self._cells = self._build_cells()
        return self._cells

    def _build_cells(self) -> IndexedMaximum | None:
        quadratic = [(c, c.kernel.quadratic_cells()) for c, intervals in zip(self.certificates, self.intervals)
                     if intervals and callable(getattr(c.kernel, "quadratic_cells", None))]
        quadratic = [(c, table) for c, table in quadratic if table is not None]
        if not quadratic:
            return None
        def reach_on(table) -> tuple[np.ndarray, np.ndarray, dict]:
            anchor, far = table.cell_edges()
            return anchor, far, {id(c): _cell_reach(intervals, anchor, far)
                                 for c, intervals in zip(self.certificates, self.intervals)}

        anchor, far, reach = reach_on(quadratic[0][1])
        # the quadratic table read in one pass: the one whose intervals hold the most cells
        certificate, table = max(quadratic, key=lambda pair: int(reach[id(pair[0])][0].sum()))
        if table.rows != anchor.size + 2:  # another cell size: the cells are those of the chosen table
            anchor, far, reach = reach_on(table)
        scale = certificate.kernel.factor(certificate._exact_factor)
        inside, cut = reach[id(certificate)]
        exact, step = cut.copy(), None
        # the quadratic's smallest value on each cell: its anchor a (t >= 0), as the table scales it
        lowest = np.where(inside, table.a * scale if scale != 1.0 else table.a, 0.0)
        for other in self.certificates:
            if other is certificate:
                continue
            other_inside, other_cut = reach[id(other)]
            found = other.kernel.step_cells(anchor, far, other.kernel.factor(other._exact_factor)) \
                if step is None and callable(getattr(other.kernel, "step_cells", None)) else None
            if found is None:  # evaluated by its own kernel wherever it may win
                exact |= other_inside | other_cut
                continue
            step = found
            # a cell whose steps never exceed the quadratic reads no step (its value is kept: the cell
            # after it reads it as its step up, and here it is below the quadratic, so the maximum is
            # the same); outside the candidate's intervals its values must stay below the quadratic
            unused = ~other_inside | (step.top <= lowest) | self._steps_below(step, table, anchor, scale, lowest)
            step.threshold[unused] = -np.inf
            exact |= other_cut | (other_inside & ((step.exact & ~unused) | ~self._below_cells(
                step, table, anchor - far, inside, scale, np.maximum(lowest, step.value))))
            exact |= ~other_inside & (step.value > lowest)
        if exact.sum() > table.rows // 2:  # mostly left to the kernels: one pass would only add to them
            return None
        return IndexedMaximum(table, scale, inside, step, exact)

    @staticmethod
    def _steps_below(step, table, anchor: np.ndarray, scale: float, lowest: np.ndarray) -> np.ndarray:
        """Rows where no step exceeds the quadratic: the cell's first value at most the quadratic's
        smallest, and each step inside at most the quadratic's float value where it starts (t = m' - u
        exact; the table's own operations, :meth:`IndexedTaylorTable._value`, then the scale, as the pass
        does them; nondecreasing in t from there)."""
        inside = (step.edges >= 2.0 ** -53) & (step.edges < 0.5)  # no float rho < 1 has u below 2^-53
        edges, values = step.edges[inside], step.edge_values[inside]
        row = table._rows(edges)
        with np.errstate(invalid="ignore"):
            quadratic = table._value(table.a[row], table.b[row], table.c[row], anchor[row - 1] - edges)
            if scale != 1.0:
                quadratic *= scale
            above = ~(values <= quadratic)  # NaN (a flagged cell) counts as above
        rows_above = np.zeros(lowest.shape, dtype=bool)
        rows_above[row[above]] = True
        return (step.value <= lowest) & ~rows_above

    @staticmethod
    def _below_cells(step, table, width: np.ndarray, inside: np.ndarray, scale: float,
                     floor: np.ndarray) -> np.ndarray:
        """Rows where the step kernel's other terms (at most ceiling + ceiling_slope t) never exceed the
        cells' maximum: at most the smallest value ``floor`` on the whole cell, or at most the quadratic
        pointwise (its anchor and slope times the scale above the ceiling's, by a relative 2^-45 that
        covers the roundings of both evaluations; its t^2 term is >= 0)."""
        ceiling, rate = step.ceiling, step.ceiling_slope
        margin = 1.0 + 2.0 ** -45
        flat = ceiling + rate * np.concatenate([[0.0], width, [0.0]]) * margin <= floor
        with np.errstate(invalid="ignore"):
            pointwise = inside & (table.a * scale >= ceiling * margin) & (table.b * scale >= rate * margin)
        return flat | pointwise

    def _by_candidates(self, rho: np.ndarray, lo: float | None = None) -> np.ndarray:
        """:meth:`scaled` on a numpy rho by the candidates' own kernels."""
        if not rho.size:
            return np.zeros(rho.shape, dtype=np.float64)
        lo, hi = float(rho.min()) if lo is None else lo, float(rho.max())
        out = None
        for partial, certificate, hits in self._plans(lo, hi):
            if not partial:
                values = certificate.kernel.scaled(rho, certificate._exact_factor, lo)
                out = values if out is None else np.maximum(out, values, out=out)
                continue
            inside = _inside(rho, *hits[0])
            for a, b in hits[1:]:
                inside |= _inside(rho, a, b)
            where = np.flatnonzero(inside)
            if where.size:
                out = np.zeros(rho.shape, dtype=np.float64) if out is None else out
                flat = out.reshape(-1)
                flat[where] = np.maximum(flat[where], certificate.kernel.scaled(
                    rho.reshape(-1)[where], certificate._exact_factor))
        return np.zeros(rho.shape, dtype=np.float64) if out is None else out

    def _scaled_torch(self, x: torch.Tensor, lo: float | None) -> torch.Tensor:
        lo_x, hi = (float(v) for v in torch.aminmax(x))
        lo = lo_x if lo is None else lo
        out = None
        for _, certificate, _ in self._plans(lo, hi):
            values = certificate.kernel.scaled(x, certificate._exact_factor, lo)
            out = values if out is None else torch.maximum(out, values)  # NaN and inf propagate
        return torch.zeros_like(x) if out is None else out


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
