"""Splitting noise (SSN) and its derandomized form (DSSN) for l1 smoothing on a grid of inputs
(Levine & Feizi, 2021, "Improved, Deterministic Smoothing for L1 Certified Robustness", Sections 3-4).

The transform
-------------
Inputs live on the grid (1/Q) Z^d (images with Q intensity levels: Q = 255 for 8-bit images,
Q = 16 for scikit-learn's digits). Uniform noise of half-width ``lam`` is replaced by a *split* of
each coordinate's line into intervals of length 2 lam, cut at s_i + 2 lam Z:

    T_i(x, s) = 2 lam * ceil((x_i - s_i) / (2 lam)) + (floor(s_i Q) + 1/2) / Q - lam,
    s_i = (s + v_i / Q) mod 2 lam,   s ~ U[0, 2 lam) shared by all coordinates,

with v_i in {0, .., N-1} a fixed pseudo-random phase per coordinate (:func:`phases`, from
``phase_seed``; part of the smoothing's definition, so training and certification agree). T depends
on x_i only through the interval holding x_i, so two inputs give the same T unless some
coordinate's cut falls between x_i and x'_i; for each coordinate that happens with probability
min(1, |x_i - x'_i| / (2 lam)) over s, because each s_i alone is uniform on [0, 2 lam), however the
s_i depend on each other (here they are one s, shifted). The phases keep the coordinates from
moving in lockstep: with v = 0 every pixel of one level would get the same noise, for 2 lam >= 1
every image in [0, 1]^d would be cut into at most two levels, and for 2 lam = 2 half of the offsets
would show a blank image (an MLP on digits then certifies almost nothing at lam = 1).
The second term, the centre of the 1/Q-cell holding s_i, makes T piecewise constant in s.

With N = 2 lam Q a positive integer and x on the grid (x_i = a_i / Q, a_i integers), s in the cell
[j/Q, (j+1)/Q) puts s_i in the cell j_i = (j + v_i) mod N, and

    T_i(x, s) = x_i + (((j + v_i - a_i) mod N) + 1/2 - N/2) / Q,

so over j = 0 .. N-1 each coordinate's noise T_i - x_i runs once through the N cell centres of
[-lam, lam]: marginally it is the uniform noise of half-width lam, discretized to the grid. The
smoothed probabilities p_c(x) = P_s(f(T(x, s)) = c) are therefore exactly the fraction of the N
offsets j whose transformed input the base classifier puts in class c: N evaluations, no sampling.

This module holds the pure transform (used alike by training and by certification); the
certificate is :mod:`wulff.certify.derandomized`.
"""
from __future__ import annotations

import math
import numbers
from fractions import Fraction

import torch

from wulff.errors import ParameterError

#: the name a checkpoint or result file records for this noise
NAME = "DSSN"
_MASK = (1 << 64) - 1


def _splitmix64(z: int) -> int:
    """One step of the SplitMix64 mixer (a fixed integer hash: the phases never depend on a library's
    random stream)."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def phases(d: int, offsets: int, seed: int) -> list[int]:
    """The fixed phases v_0, .., v_{d-1} in {0, .., offsets - 1}: SplitMix64 of (seed, i)."""
    return [_splitmix64(((seed & 0xFFFFFFFF) << 32) | i) % offsets for i in range(d)]


#: the tolerance of an earlier grid test (|x Q - k| <= 1e-4); kept for compatibility, no longer used:
#: an input is on the grid iff it *equals* its dtype's rounding of k / Q (:meth:`SplittingNoise.grid_levels`)
GRID_TOLERANCE = 1e-4


def _positive_integer(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)) \
            or float(value) != int(value) or int(value) < 1:
        raise ParameterError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


class SplittingNoise:
    """DSSN smoothing of half-width ``lam`` on the input grid (1/``quantization``) Z^d, in dimension d.

    ``lam`` must make N = 2 lam Q a positive integer (the number of offsets, i.e. forward passes per
    certified input); it may be given as ``lam`` or, exactly, as ``offsets`` = N. Attributes mirror
    :class:`wulff.distributions.Distribution` where they mean the same: ``name`` ("DSSN"), ``params``
    ({"quantization": Q}), ``d``, ``lam``, and ``sigma`` (the root mean square of each coordinate's
    noise T_i - x_i: sqrt((N^2 - 1) / 12) / Q). ``phase_seed`` (an integer in [0, 2^32)) picks the
    fixed per-coordinate phases v (:func:`phases`); it is recorded with the noise.
    """

    name = NAME

    def __init__(self, d: int, lam: float | None = None, *, quantization: int, offsets: int | None = None,
                 phase_seed: int = 0):
        self.d = _positive_integer("d", d)
        self.quantization = _positive_integer("quantization", quantization)
        if (lam is None) == (offsets is None):
            raise ParameterError(f"DSSN: give exactly one of lam= or offsets= "
                                 f"(got lam={lam!r}, offsets={offsets!r})")
        if offsets is None:
            if isinstance(lam, bool) or not isinstance(lam, numbers.Real) or not (math.isfinite(lam) and lam > 0):
                raise ParameterError(f"DSSN: lam must be a finite number > 0; got {lam!r}")
            exact = 2 * float(lam) * self.quantization
            offsets = round(exact)
            if offsets < 1 or abs(exact - offsets) > 1e-9 * max(1.0, exact):
                raise ParameterError(
                    f"DSSN: 2 * lam * quantization must be a positive integer (lam a multiple of 1 / (2 Q) = "
                    f"{1 / (2 * self.quantization):g}); got lam = {lam!r}, quantization = {self.quantization} "
                    f"(2 lam Q = {exact:g})")
        self.offsets = _positive_integer("offsets", offsets)
        if isinstance(phase_seed, bool) or not isinstance(phase_seed, numbers.Integral) \
                or not 0 <= phase_seed < 2 ** 32:
            raise ParameterError(f"DSSN: phase_seed must be an integer in [0, 2^32); got {phase_seed!r}")
        self.phase_seed = int(phase_seed)
        self._phases = torch.tensor(phases(self.d, self.offsets, self.phase_seed), dtype=torch.float64)

    # -- what the rest of the library reads ------------------------------------------------------
    @property
    def lam_exact(self) -> Fraction:
        """lam as the exact fraction N / (2 Q)."""
        return Fraction(self.offsets, 2 * self.quantization)

    @property
    def lam(self) -> float:
        return float(self.lam_exact)

    @property
    def params(self) -> dict[str, int]:
        return {"quantization": self.quantization, "phase_seed": self.phase_seed}

    @property
    def sigma(self) -> float:
        """Root mean square of one coordinate's noise: the N cell centres of [-lam, lam]."""
        return math.sqrt((self.offsets ** 2 - 1) / 12.0) / self.quantization

    def spec(self) -> dict:
        """Plain data that rebuilds this noise with :meth:`from_spec` (checkpoints, result files)."""
        return {"name": NAME, "params": self.params, "d": self.d, "lam": self.lam}

    @classmethod
    def from_spec(cls, data: dict) -> SplittingNoise:
        if not isinstance(data, dict) or data.get("name") != NAME:
            raise ParameterError(f"not a {NAME} spec: {data!r}")
        extra = sorted(set(data) - {"name", "params", "d", "lam"})
        params = data.get("params") or {}
        if extra or not isinstance(params, dict) or set(params) != {"quantization", "phase_seed"}:
            raise ParameterError(f"a {NAME} spec has the keys name, d, lam and params = {{quantization, "
                                 f"phase_seed}}; got {data!r}")
        return cls(data.get("d"), data.get("lam"), quantization=params["quantization"],
                   phase_seed=params["phase_seed"])

    def __eq__(self, other) -> bool:
        return isinstance(other, SplittingNoise) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash((NAME, *self._key()))

    def _key(self) -> tuple[int, int, int, int]:
        return self.d, self.quantization, self.offsets, self.phase_seed

    def __repr__(self) -> str:
        seed = f", phase_seed={self.phase_seed}" if self.phase_seed else ""
        return f"DSSN(d={self.d}, lam={self.lam:g}, quantization={self.quantization}{seed})"

    # -- the transform -------------------------------------------------------------------------
    def grid_levels(self, x: torch.Tensor) -> torch.Tensor:
        """The integers k = x Q of inputs on the grid (any shape, as float64). An entry is on the grid
        iff it equals its own dtype's rounding of k / Q for the nearest integer k, and no other level
        (k - 1 or k + 1) rounds to the same value; anything else is a ValueError (nothing within some
        tolerance is snapped: the certificate is about the grid point k / Q an input encodes)."""
        if not bool(torch.isfinite(x).all()):
            raise ValueError("x must be finite to be smoothed by DSSN")
        x = x.detach()
        dtype = str(x.dtype).removeprefix("torch.")
        levels = torch.round(x.to(torch.float64) * self.quantization)
        encodes = self._encoding(levels, x.dtype) == x  # k / Q in float64 is exact enough to round once more
        if not bool(encodes.all()):
            value = float(x[~encodes][0])
            level = int(levels[~encodes][0])
            raise ValueError(f"DSSN needs inputs on the grid of multiples of 1/quantization = "
                             f"1/{self.quantization}, each exactly its {dtype} rounding of some "
                             f"k/{self.quantization}; the entry "
                             f"{value!r} is not (nearest level k = {level}, which is "
                             f"{float(self._encoding(torch.tensor(float(level)), x.dtype))!r}; is quantization "
                             f"the data's number of levels, and were the inputs made as k / quantization?)")
        ambiguous = (self._encoding(levels - 1, x.dtype) == x) | (self._encoding(levels + 1, x.dtype) == x)
        if bool(ambiguous.any()):
            raise ValueError(f"{dtype} cannot tell the levels k/{self.quantization} of the grid apart near "
                             f"{float(x[ambiguous][0])!r} (neighbouring levels round to the same value): pass "
                             f"the inputs in a wider dtype (float32 or float64)")
        return levels

    def _encoding(self, levels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The values k / Q of the integers ``levels`` (float64) rounded to ``dtype``. The float64
        quotient is correctly rounded; for Q < 2^28 it also lies on the same side of every midpoint of a
        float32 (or narrower float) as k / Q does, so rounding it once more gives the correctly rounded
        k / Q in that dtype too."""
        return (levels / self.quantization).to(dtype)

    def transform(self, x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """T(x, s_j) for grid inputs ``x`` of shape (B, ...) and one offset index j in 0 .. N-1 per
        input (``offsets``, shape (B,), integers): x_i + (((j + v_i - a_i) mod N) + 1/2 - N/2) / Q,
        computed in float64 from the integers and returned in x's dtype. Each input has d entries."""
        if offsets.dim() != 1 or offsets.shape[0] != x.shape[0]:
            raise ValueError(f"offsets must hold one offset index per input: shape ({x.shape[0]},); "
                             f"got {tuple(offsets.shape)}")
        if x[0].numel() != self.d:
            raise ValueError(f"each input must have d = {self.d} entries; got shape {tuple(x.shape[1:])}")
        levels = self.grid_levels(x)
        j = offsets.to(device=x.device, dtype=torch.float64).view(-1, *([1] * (x.dim() - 1)))
        v = self._phases.to(x.device).view(1, *x.shape[1:])
        shift = torch.remainder(j + v - levels, self.offsets)
        out = (levels + shift + 0.5 - self.offsets / 2.0) / self.quantization
        return out.to(x.dtype)

    def all_offsets(self, x: torch.Tensor) -> torch.Tensor:
        """The N transformed copies T(x, s_0), ..., T(x, s_{N-1}) of one grid input x (shape (N, ...))."""
        batch = x.unsqueeze(0).expand(self.offsets, *x.shape)
        return self.transform(batch, torch.arange(self.offsets, device=x.device))

    def random_offsets(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """T(x, s) with one uniform offset index per input of the batch ``x`` (training: the same
        distribution the certificate averages over)."""
        j = torch.randint(self.offsets, (x.shape[0],), generator=generator,
                          device=generator.device if generator is not None else x.device)
        return self.transform(x, j.to(x.device))
