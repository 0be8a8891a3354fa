"""The common interface of every smoothing distribution q(x) ∝ exp(-psi(x / lam)) on R^d.

A distribution knows its structure, its scale and how to sample; it knows nothing about
certification: ``wulff.certified_radius(q, rho, adversary)`` (:mod:`wulff.selector`) asks the
certificate engines, which import this layer, never the other way round.
"""
from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable

import sympy as sp
import torch

from wulff.errors import ParameterError

#: signature of a sampling hook: (n, generator, device, dtype) -> Tensor of shape (n, d), full scale
Sampler = Callable[..., torch.Tensor]

def check_integer(name: str, value, minimum: int = 0) -> int:
    """An integer >= minimum (a bool or a float is refused): a "positive" or "non-negative" integer."""
    kind = "positive" if minimum == 1 else "non-negative" if minimum == 0 else f">= {minimum}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ParameterError(f"{name} must be a {kind} integer; got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be a {kind} integer ({name} >= {minimum}); got {name} = {value}")
    return int(value)


def check_dimension(d) -> int:
    """d must be a positive integer."""
    return check_integer("d", d, minimum=1)


def check_real(name: str, value, *, low: float = -math.inf, high: float = math.inf,
               low_open: bool = True, rule: str | None = None) -> float:
    """A finite real number in the interval (low, high) (or [low, high) when low_open is False)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, sp.Number)):
        raise ParameterError(f"{name} must be a real number; got {value!r} of type {type(value).__name__}")
    v = float(value)
    below = v <= low if low_open else v < low
    if not math.isfinite(v) or below or v >= high:
        bracket = "(" if low_open else "["
        rule = rule or f"{name} in {bracket}{low:g}, {high:g})"
        raise ValueError(f"{name} must satisfy {rule}; got {name} = {value!r}")
    return v


class Distribution:
    """q(x) ∝ exp(-psi(x / lam)) on R^d. Subclasses: IID, Radial, Uniform.

    Attributes: ``d``, ``lam``, ``sigma`` (sigma^2 = E||delta||_2^2 / d), ``psi`` (sympy, unit scale),
    ``name`` and ``params`` (the family and its shape parameters), ``sampler`` (optional hook).
    """

    #: phrase for the error raised when sigma is requested but infinite (families refine it)
    sigma_condition: str = "a finite second moment"
    #: the structural class ("iid", "radial", "uniform"), its norm and its parsed profile (subclasses)
    kind: str = ""
    norm = None
    profile = None

    def __init__(self, d: int, lam: float | None = None, sigma: float | None = None, *,
                 name: str | None = None, params: dict | None = None, sampler: Sampler | None = None,
                 sigma_condition: str | None = None):
        self.d = check_dimension(d)
        if sigma_condition is not None:
            self.sigma_condition = sigma_condition
        self.name = name or type(self).__name__
        self.params = dict(params or {})
        self.sampler = sampler
        self._lam = self._resolve_scale(lam, sigma)

    # -- structure, supplied by subclasses -----------------------------------------------------
    @property
    def psi(self) -> sp.Expr:
        """The exponent at unit scale: q(x) ∝ exp(-psi(x / lam))."""
        raise NotImplementedError

    def unit_second_moment(self) -> float:
        """E ||delta||_2^2 / d at lam = 1 (may be inf), derived from the structure."""
        raise NotImplementedError

    def _sample_unit(self, n: int, generator, device, dtype) -> torch.Tensor:
        raise NotImplementedError

    def equivalent_forms(self) -> list[Distribution]:
        """Other structural descriptions of the same density (e.g. Gaussian iid = Gaussian radial l2)."""
        return []

    def structure(self) -> str:
        """A human-readable description of the structure (display only; see :meth:`structure_key`)."""
        raise NotImplementedError

    def structure_key(self, *, scale: bool = True) -> tuple:
        """A hashable description of q built from plain strings and numbers: (kind, norm, d,
        profile key, lam). Equal keys mean the same density. ``scale=False`` leaves lam out (the key
        of unit-scale artefacts, e.g. the differential method's cached payload)."""
        if not self.kind:
            raise NotImplementedError(f"{type(self).__name__} has no structure key")
        profile = None if self.profile is None else self.profile.key
        key = (self.kind, None if self.norm is None else str(self.norm), self.d, profile)
        return (*key, self._lam) if scale else key

    # -- scale ---------------------------------------------------------------------------------
    def _resolve_scale(self, lam, sigma) -> float:
        if (lam is None) == (sigma is None):
            raise ValueError(f"{self.name}: give exactly one of lam= or sigma= "
                             f"(got lam={lam!r}, sigma={sigma!r})")
        if lam is not None:
            return check_real("lam", lam, low=0.0, rule="0 < lam < inf")
        sigma = check_real("sigma", sigma, low=0.0, rule="0 < sigma < inf")
        unit = self._unit_sigma()
        if not math.isfinite(unit):
            raise ValueError(f"{self.name}: sigma is infinite for these parameters (E||delta||^2 diverges; "
                             f"it needs {self.sigma_condition}); build it from lam= instead")
        return sigma / unit

    def _unit_sigma(self) -> float:
        m = self.unit_second_moment()
        return math.sqrt(m) if math.isfinite(m) else math.inf

    @property
    def lam(self) -> float:
        """The scale lam: q(x) ∝ exp(-psi(x / lam))."""
        return self._lam

    @property
    def sigma(self) -> float:
        """sigma = sqrt(E ||delta||_2^2 / d); inf (with a warning) when the second moment diverges."""
        unit = self._unit_sigma()
        if not math.isfinite(unit):
            warnings.warn(f"{self.name}: sigma is infinite (E||delta||^2 diverges; it needs "
                          f"{self.sigma_condition})", RuntimeWarning, stacklevel=2)
            return math.inf
        return self._lam * unit

    # -- sampling ------------------------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None, device=None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """n independent draws of delta ~ q, as a tensor of shape (n, d)."""
        n = check_integer("n", n)
        if generator is not None and device is None:
            device = generator.device
        if self.sampler is not None:
            out = self.sampler(n, generator=generator, device=device, dtype=dtype)
            if not isinstance(out, torch.Tensor) or tuple(out.shape) != (n, self.d):
                raise ValueError(f"the sampling hook of {self.name} must return a tensor of shape "
                                 f"({n}, {self.d}); got {getattr(out, 'shape', type(out))}")
            return out.to(device=device, dtype=dtype)
        return self._sample_unit(n, generator, device, dtype).mul_(self._lam)

    def with_sampler(self, sampler: Sampler | None) -> Distribution:
        """Install a sampling hook ``sampler(n, generator=, device=, dtype=) -> (n, d) tensor``; returns self."""
        if sampler is not None and not callable(sampler):
            raise ParameterError(f"sampler must be callable; got {sampler!r}")
        self.sampler = sampler
        return self

    def perturb(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x + delta for a batch x of shape (batch, *input_shape) with prod(input_shape) = d.

        A single input (x.numel() == d) is perturbed once. Noise is drawn on x's device and dtype.
        """
        if not isinstance(x, torch.Tensor):
            raise ParameterError(f"x must be a torch.Tensor; got {type(x).__name__}")
        if x.numel() == self.d:
            noise = self.sample(1, generator=generator, device=x.device, dtype=x.dtype)
            return x + noise.reshape(x.shape)
        if x.dim() < 1 or x.shape[0] == 0 or x[0].numel() != self.d:
            raise ValueError(f"x must have shape (batch, *input_shape) with prod(input_shape) = d = {self.d}; "
                             f"got {tuple(x.shape)}")
        noise = self.sample(x.shape[0], generator=generator, device=x.device, dtype=x.dtype)
        return x + noise.reshape(x.shape)

    # -- presentation --------------------------------------------------------------------------
    def __repr__(self) -> str:
        """``Name(d=..., <shape parameters>, lam=...)``: for a named family, ``eval`` of it in the
        namespace of :mod:`wulff.distributions` rebuilds an equal distribution (numbers round-trip)."""
        shape = "".join(f", {k}={_number(v)}" for k, v in self.params.items())
        return f"{self.name}(d={self.d}{shape}, lam={_number(self._lam)})"


def _number(v) -> str:
    """v in 6 significant digits when that reads back as the same float, else in full (round trip)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    short = f"{v:.6g}"
    return short if float(short) == v else repr(float(v))
