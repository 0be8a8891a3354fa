"""Deterministic l1 certification with derandomized splitting noise (DSSN; Levine & Feizi, 2021,
"Improved, Deterministic Smoothing for L1 Certified Robustness"): the smoothed classifier's class
probabilities are computed exactly from N = 2 lam Q forward passes (one per offset, the transform
of :mod:`wulff.splitting`), so the certificate has no Monte Carlo error and no alpha.

The theorem implemented (derived here; Levine & Feizi, 2021, Theorem 1 for SSN, whose offsets
"need not be independent", and its derandomization DSSN in their Section 4)
-----------------------------------------------------------------------------------------------
Let f be any base classifier, T the splitting transform of half-width lam (one offset
s ~ U[0, 2 lam) shared by all coordinates, each shifted by its fixed phase), p_c(x) =
P_s(f(T(x, s)) = c) for every real x, and g(x) the class of largest p_c(x), ties broken towards the
smallest class index. Fix x, write A = g(x) and
p_B = max_{c != A} p_c(x) (the runner-up, B its class).

(i) Lipschitz bound. For all real x, x': the class distributions of f(T(x, s)) and f(T(x', s))
    differ in total variation by at most P_s(T(x, s) != T(x', s)) <= sum_i min(1, |x_i - x'_i| / (2 lam))
    <= ||x - x'||_1 / (2 lam)  (a union bound over coordinates: each needs only its own offset s_i to
    be uniform on [0, 2 lam), so one shared s, shifted per coordinate, serves).
(ii) Certificate (top two classes). Let eps = ||x' - x||_1 / (2 lam). Moving mass eps can lower
    p_A by at most eps and raise any p_c by at most eps, so p_A(x') - p_c(x') >= p_A - p_c - 2 eps
    >= p_A - p_B - 2 eps. Hence for every real x' with ||x' - x||_1 < R = lam (p_A - p_B), g(x') = A
    and A is the unique top class at x'.
(ii') Closed ball. At ||x' - x||_1 = R, 2 eps = p_A - p_B, so p_A(x') - p_c(x') >= p_B - p_c: every
    class c with p_c < p_B still loses to A strictly, and a class with p_c = p_B can at worst tie
    with A. Ties go to the smallest index, so if every class c != A with p_c = p_B has an index
    above A's, g(x') = A on the *closed* ball ||x' - x||_1 <= R ("closed_ball"; it always holds
    when p_A = p_B, where R = 0 and A is the smallest tying index by definition of g). Otherwise
    only the open ball is certified: (v) shows a tie at distance R that the runner-up wins.
(iii) Top class only. With p_B <= 1 - p_A, R >= lam (2 p_A - 1) = 2 lam (p_A - 1/2), the uniform
    noise l1 radius (Yang et al., 2020, Table A; Lee et al., 2019). Probabilities computed exactly
    make the top-two radius free, so it is the one used (a Monte Carlo certificate would need a
    second confidence bound for p_B).
(iv) Quantized inputs. For x on the grid (1/Q) Z^d and N = 2 lam Q an integer, p_c(x) = n_c / N
    exactly, n_c the votes of the N offsets, so R = (n_A - n_B) / (2 Q). The bound (ii) covers
    *real-valued* perturbations x' (g is defined everywhere by the integral over s), not only those
    on the grid; a grid x' has ||x' - x||_1 in (1/Q) Z, so it is certified iff
    ||x' - x||_1 <= (ceil((n_A - n_B) / 2) - 1) / Q, or iff <= floor((n_A - n_B) / 2) / Q under
    (ii'): one grid step more when n_A - n_B is even.
(v) Tightness. R is the largest radius valid for every base classifier with these p_A, p_B: when
    the runner-up's offsets sit next to A's along one coordinate, the grid perturbation of l1 size R
    (n_A - n_B even) moves (n_A - n_B) / 2 offsets from A to B and ties them; the tie goes to B if
    its index is below A's (the ball is open), else to A, and one step further B wins (the closed
    ball is the largest certified set).
(vi) The input. The certificate is about the grid point k / Q an input tensor encodes: an input is
    accepted only when every entry *equals* its dtype's rounding of k_i / Q, with no other level
    rounding to the same value (:meth:`wulff.splitting.SplittingNoise.grid_levels`); an entry off
    the grid by any amount is refused, never snapped to its nearest level and certified as it.

Radii against l2 and linf follow from ||delta||_1 <= sqrt(d) ||delta||_2 <= d ||delta||_inf
(R / sqrt(d) and R / d; sound, loose; the closed l2 or linf ball of such a radius lies in the
closed l1 ball of R, so (ii') carries over). Every radius is rounded down to a float.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch

from wulff.certificate import check_adversary
from wulff.splitting import SplittingNoise

from .classifier import Certification, SmoothedClassifier, check_adversaries, positive_int
from .results import columns_for
from .smoothed import Smoothed

#: forward passes per batch when none is given
DEFAULT_BATCH = 1000
#: the result-file column of DSSN runs: 1 where the closed balls of the row's radii are certified
CLOSED_COLUMN = "closed"


@dataclass(frozen=True)
class DSSNCertification(Certification):
    """A :class:`Certification` from DSSN counts, with ``closed_ball``: True when g keeps the
    prediction on the closed balls ||x' - x|| <= radius too, not only on the open ones (part (ii')
    of the module's theorem: every class tied for runner-up has a larger index than the top class)."""

    closed_ball: bool = False


def _float_below(value: Fraction) -> float:
    """The largest float <= value (value >= 0)."""
    out = float(value)
    return math.nextafter(out, 0.0) if Fraction(out) > value else out


def _float_below_root_ratio(value: Fraction, d: int) -> float:
    """The largest float r (found from below) with r <= value / sqrt(d)."""
    out = float(value) / math.sqrt(d)
    while out > 0 and Fraction(out) ** 2 * d > value ** 2:
        out = math.nextafter(out, 0.0)
    return out


def dssn_radius(counts, noise: SplittingNoise, adversary: str = "l1") -> float:
    """The certified radius of part (ii)/(iv) of the module's theorem from the exact vote counts of
    the N offsets: lam (p_A - p_B) = (n_A - n_B) / (2 Q) against l1 (A the top class, ties to the
    smallest index), R / sqrt(d) against l2 and R / d against linf; rounded down."""
    counts = _check_counts(counts, noise)
    top, second = _top_two(counts)
    l1 = Fraction(int(counts[top]) - int(counts[second]), 2 * noise.quantization)
    adversary = check_adversary(adversary)
    if adversary == "l1":
        return _float_below(l1)
    if adversary == "l2":
        return _float_below_root_ratio(l1, noise.d)
    return _float_below(l1 / noise.d)


def dssn_certification(counts, noise: SplittingNoise, adversaries=("l1", "l2", "linf")) -> DSSNCertification:
    """The :class:`Certification` of one input from its exact vote counts: the top class (ties to the
    smallest index; never ABSTAIN, since g is always defined), ``rho_lower`` = its exact probability
    n_A / N, the radii of :func:`dssn_radius`, ``top_count`` = n_A and ``n`` = N forward passes;
    ``closed_ball`` as :func:`closed_ball_certified` says."""
    counts = _check_counts(counts, noise)
    top, _ = _top_two(counts)
    adversaries = check_adversaries(adversaries)
    radius = {a: dssn_radius(counts, noise, a) for a in adversaries}
    return DSSNCertification(top, int(counts[top]) / noise.offsets, radius, int(counts[top]), noise.offsets,
                             closed_ball=closed_ball_certified(counts))


def closed_ball_certified(counts) -> bool:
    """Part (ii') of the module's theorem: whether the closed ball of radius R = (n_A - n_B) / (2 Q)
    is certified, i.e. every class c != A with the runner-up's count n_B has an index above A's
    (a tie at distance R then goes to A). ``counts``: the exact votes, one per class."""
    counts = _vote_array(counts)
    top, second = _top_two(counts)
    runners_up = np.flatnonzero(counts == counts[second])
    return bool(np.all(runners_up[runners_up != top] > top))


def result_columns(adversaries, out: str | os.PathLike) -> list[str]:
    """The columns of a DSSN result file: those of every run plus :data:`CLOSED_COLUMN` (1 where the
    closed ball of each radius is certified). An existing file written before that column existed
    resumes in its own layout: all its rows then count as open balls, which is sound."""
    columns = columns_for(adversaries) + [CLOSED_COLUMN]
    existing = _column_names(out)
    if existing is not None and CLOSED_COLUMN not in existing:
        return [c for c in columns if c != CLOSED_COLUMN]
    return columns


def _column_names(path: str | os.PathLike) -> list[str] | None:
    """The column names (second line) of an existing result file; None when there is none to read
    (:class:`~wulff.certify.results.ResultWriter` then says what is wrong with the file, if anything)."""
    try:
        with open(path, encoding="utf-8") as fh:
            fh.readline()
            names = fh.readline()
    except (OSError, UnicodeDecodeError):
        return None
    return names.rstrip("\n").split("\t") if names.endswith("\n") else None


def _top_two(counts: np.ndarray) -> tuple[int, int]:
    order = np.argsort(-counts, kind="stable")  # stable: among equal counts the smaller index first
    return int(order[0]), int(order[1])


def _vote_array(counts) -> np.ndarray:
    """``counts`` as a 1-D integer array of at least 2 entries >= 0, one per class (else ValueError)."""
    counts = np.asarray(counts)
    if counts.ndim != 1 or counts.size < 2 or not np.issubdtype(counts.dtype, np.integer):
        raise ValueError(f"counts must be a 1-D integer array with one entry per class (at least 2); "
                         f"got {counts!r}")
    if int(counts.min()) < 0:
        raise ValueError(f"counts must be >= 0 (votes); got {counts!r}")
    return counts


def _check_counts(counts, noise: SplittingNoise) -> np.ndarray:
    if not isinstance(noise, SplittingNoise):
        raise TypeError(f"noise must be a wulff.splitting.SplittingNoise; got {type(noise).__name__}")
    counts = _vote_array(counts)
    if int(counts.sum()) != noise.offsets:
        raise ValueError(f"counts must be >= 0 and sum to N = 2 lam Q = {noise.offsets} (one vote per "
                         f"offset); got sum {int(counts.sum())}")
    return counts


class DerandomizedSmoothed(SmoothedClassifier):
    """A base classifier ``model`` smoothed by DSSN ``noise`` (:class:`wulff.splitting.SplittingNoise`)
    over ``num_classes`` classes: exact class probabilities from N = 2 lam Q forward passes per
    input, and the deterministic certificate of this module's theorem. The derandomized
    implementation of :class:`~wulff.certify.classifier.SmoothedClassifier`.

    Inputs must lie on the noise's grid (multiples of 1/Q, e.g. raw pixel levels / Q); put any
    normalization inside ``model``. ``autocast`` and ``channels_last`` as for :class:`Smoothed`.
    :func:`wulff.certify.certify_dataset` takes it in place of a :class:`Smoothed`.
    """

    #: no sampling: certify_dataset records n = N, n0 = 0 and alpha = 0 for it
    deterministic = True
    copies_name = "transformed inputs"

    def __init__(self, model: torch.nn.Module, noise: SplittingNoise, num_classes: int, *,
                 device: torch.device | str | None = None, autocast: torch.dtype | None = None,
                 channels_last: bool = False):
        super().__init__(model, noise, num_classes, device=device, autocast=autocast, channels_last=channels_last)

    def class_counts(self, x: torch.Tensor, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        """The base classifier's votes over the N offsets of one grid input x (int64, length
        num_classes): p_c(x) = counts[c] / N exactly. NonFiniteError on NaN/inf logits."""
        batch_size = positive_int("batch_size", batch_size)
        x = self._check_input(x)
        self.q.grid_levels(x)  # off the grid: a ValueError before any forward pass
        return self._vote(x, self.q.offsets, batch_size)

    def _copies(self, x: torch.Tensor, start: int, size: int, generator) -> torch.Tensor:
        """T(x, s_j) for the offsets j = start .. start + size - 1, transformed a batch at a time."""
        offsets = torch.arange(start, start + size, device=self.device)
        return self.q.transform(x.unsqueeze(0).expand(size, *x.shape), offsets)

    def predict(self, x: torch.Tensor, batch_size: int = DEFAULT_BATCH) -> int:
        """g(x): the class with the most offsets' votes (ties to the smallest index). Exact."""
        return _top_two(self.class_counts(x, batch_size))[0]

    def certify(self, x: torch.Tensor, adversaries=("l1", "l2", "linf"), *,
                batch_size: int = DEFAULT_BATCH) -> Certification:
        """g(x) with its exact top-class probability and the radii of this module's theorem
        (:func:`dssn_certification`); ``n`` of the result is N = 2 lam Q, the forward passes used."""
        return dssn_certification(self.class_counts(x, batch_size), self.q, adversaries)

    # -- the hooks of certify_dataset ------------------------------------------------------------
    @staticmethod
    def _check_noise(noise) -> None:
        if not isinstance(noise, SplittingNoise):
            raise TypeError(f"noise must be a wulff.splitting.SplittingNoise; got {type(noise).__name__}")

    def check_sampling(self, n0, n, alpha, batch_size, adaptive: bool) -> tuple[int, int, float, int]:
        """Every offset is evaluated: no selection, no estimation sample size, no alpha (n0 = 0,
        n = N, alpha = 0; n0, n and alpha given are ignored); adaptive certification is refused."""
        if adaptive:
            raise ValueError("adaptive certification is a sequential test on noisy samples; DSSN certifies "
                             "exactly from its N offsets: leave adaptive=False")
        return 0, self.q.offsets, 0.0, positive_int("batch_size", batch_size)

    def certify_input(self, x: torch.Tensor, n0: int, n: int, alpha: float, batch_size: int,
                      adversaries: tuple[str, ...], *, adaptive: bool = False, radii=None,
                      generator: torch.Generator | None = None) -> tuple[DSSNCertification, int]:
        """:meth:`certify` (exact; the sampling settings and the generator play no part)."""
        result = self.certify(x, adversaries, batch_size=batch_size)
        return result, result.n

    def result_columns(self, adversaries, out: str | os.PathLike) -> list[str]:
        """:func:`result_columns`: the default columns plus the closed-ball flag."""
        return result_columns(adversaries, out)

    def row_extras(self, result: DSSNCertification) -> dict:
        return {CLOSED_COLUMN: int(result.closed_ball)}


def smoothed_classifier(model: torch.nn.Module, noise, num_classes: int, **options):
    """:class:`DerandomizedSmoothed` for DSSN noise, else :class:`Smoothed` (``options``: device,
    autocast, channels_last; ``seed`` applies to :class:`Smoothed` only)."""
    if isinstance(noise, SplittingNoise):
        options.pop("seed", None)
        return DerandomizedSmoothed(model, noise, num_classes, **options)
    return Smoothed(model, noise, num_classes, **options)
