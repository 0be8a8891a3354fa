"""Certificates: a sound certified radius R(rho) for one distribution against one adversary.

A :class:`Certificate` is what the differential method (``wulff.diffmethod``), the level set method
and the uniform-noise theorems (``wulff.levelset``) hand downstream. It carries

* ``radius(rho)``: vectorized and sound (never above the true bound of its theorem), scale lam included;
* ``formula``: the radius as a sympy expression in ``rho`` when one is known, else None;
* ``method``: how it was obtained ("closed-form", "quadrature", "level-set table", ...);
* ``Phi``: the function Phi(p) of Definition G.4 when the differential method produced it;
* ``tight``: whether the bound is known to be the exact robust radius.

Norm conversions (DESIGN.md): ||eta||_a <= d^max(0, 1/a - 1/b) ||eta||_b, so a radius R against the
l_a adversary is a radius R / d^max(0, 1/a - 1/b) against l_b (:meth:`Certificate.converted`).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import sympy as sp
import torch

ADVERSARIES = ("l1", "l2", "linf")
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
    arr = np.asarray(rho, dtype=np.float64)
    if arr.size and (np.isnan(arr).any() or arr.min() < 0.0 or arr.max() > 1.0):
        bad = arr[np.isnan(arr) | (arr < 0) | (arr > 1)].ravel()[:3]
        raise ValueError(f"rho must lie in [0, 1] (and not be NaN); got {bad.tolist()}")
    return arr


class Certificate:
    """A sound certified radius R(rho) against one adversary (see the module docstring)."""

    def __init__(self, *, adversary: str, method: str, lam: float, d: int,
                 radius_unit: Callable[[np.ndarray], np.ndarray], formula: sp.Expr | None = None,
                 Phi: Callable | None = None, tight: bool = False,
                 rho_range: tuple[float, float] = (0.5, 1.0), source: str = ""):
        self.adversary = check_adversary(adversary)
        self.method = method
        self.lam = float(lam)
        self.d = int(d)
        self._radius_unit = radius_unit
        self.formula = formula
        self.Phi = Phi
        self.tight = bool(tight)
        self.rho_range = rho_range
        self.source = source

    def radius(self, rho):
        """R(rho), scale lam included; 0 for rho <= 1/2.

        numpy (or a Python number) in -> numpy float64 out, same shape; a torch tensor in -> a tensor
        on the same device (float64 unless the input is floating, then its dtype).
        """
        if isinstance(rho, torch.Tensor):
            values = self.radius(rho.detach().to("cpu", torch.float64).numpy())
            dtype = rho.dtype if rho.is_floating_point() else torch.float64
            return torch.as_tensor(values, dtype=dtype).to(rho.device)
        arr = as_rho_array(rho)
        out = np.zeros(arr.shape, dtype=np.float64)
        above = arr > 0.5
        if above.any():
            unit = np.asarray(self._radius_unit(arr[above]), dtype=np.float64)
            out[above] = np.maximum(unit, 0.0) * self.lam
        if np.isnan(out).any():
            raise ArithmeticError(f"{self.method} certificate produced NaN radii; please report this")
        return out

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
        unit = self._radius_unit

        def converted_unit(rho):  # R / C, rounded toward 0 (never up); inf stays inf
            scaled = np.asarray(unit(rho), dtype=np.float64) / c
            return np.where(np.isfinite(scaled), np.nextafter(scaled, 0.0), scaled)

        return Certificate(
            adversary=target, lam=self.lam, d=self.d,
            method=f"{self.method}, {self.adversary} -> {target} norm conversion"
                   + ("" if c == 1 else f" (/{exact_c})"),
            radius_unit=unit if c == 1 else converted_unit,
            formula=None if self.formula is None else self.formula / exact_c,
            Phi=None, tight=False, rho_range=self.rho_range, source=self.source)

    def __repr__(self) -> str:
        f = "" if self.formula is None else f", formula={self.formula}"
        return (f"Certificate({self.source or '?'} vs {self.adversary}, method={self.method!r}"
                f"{f}, tight={self.tight})")
