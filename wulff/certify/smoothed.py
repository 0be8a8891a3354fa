"""The smoothed classifier g(x) = argmax_c P(f(x + delta) = c), delta ~ q, and its Monte Carlo
certification (Cohen et al., 2019, Section 3.2; Yang et al., 2020, Section 6).

``certify`` returns, with probability at least 1 - alpha over the noise, either ABSTAIN or the class
g(x) together with radii such that g(x + eta) = g(x) for every eta with ||eta|| below the radius of
each requested norm. Radii come from the distribution's best certificate
(:func:`wulff.best_certificate`, built once per adversary) evaluated at the one-sided
Clopper-Pearson lower bound on P(f(x + delta) = g(x)).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import torch

from wulff.certificate import check_adversary
from wulff.distributions import Distribution
from wulff.distributions.base import check_integer
from wulff.errors import NonFiniteError
from wulff.selector import BestCertificate, best_certificate

from .adaptive import certify_sequential, check_radii
from .attack import pgd_smoothed
from .stats import check_alpha, clopper_pearson_lower, two_class_test_passes

#: the class label returned when the smoothed classifier declines to answer
ABSTAIN = -1


@dataclass(frozen=True)
class Certification:
    """The outcome of :meth:`Smoothed.certify` for one input.

    ``prediction`` is the certified class or :data:`ABSTAIN`; ``rho_lower`` the lower confidence bound
    on the top-class probability; ``radius`` maps each adversary ("l1", "l2", "linf") to its certified
    radius (0.0 on abstention); ``top_count`` of ``n`` noisy samples voted for the predicted class.
    From :meth:`Smoothed.certify_adaptive`, ``n`` counts every sample drawn, selection included, and
    ``top_count`` the votes among the estimation samples (``n`` minus the selection).
    From :class:`~wulff.certify.derandomized.DerandomizedSmoothed` (DSSN), ``rho_lower`` is the exact
    top-class probability, ``n`` the N = 2 lam Q offsets evaluated and ``top_count`` their votes for it.
    """

    prediction: int
    rho_lower: float
    radius: dict[str, float] = field(default_factory=dict)
    top_count: int = 0
    n: int = 0

    @property
    def abstained(self) -> bool:
        return self.prediction == ABSTAIN


def _positive_int(name: str, value) -> int:
    return check_integer(name, value, minimum=1)


def check_certify_arguments(n0, n, alpha, batch_size) -> tuple[int, int, float, int]:
    """n0, n and batch_size positive integers with n0 <= n; alpha in (0, 1)."""
    n0 = _positive_int("n0", n0)
    n = _positive_int("n", n)
    if n0 > n:
        raise ValueError(f"n0 (samples to choose the class) must not exceed n (samples to estimate it); "
                         f"got n0 = {n0}, n = {n}")
    return n0, n, check_alpha(alpha), _positive_int("batch_size", batch_size)


def one_input(x, d: int, device: torch.device) -> torch.Tensor:
    """x checked to be one input of d entries (any shape, no batch dimension), on ``device`` and
    floating point (float32 unless it already is floating)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor (one input, without a batch dimension); "
                        f"got {type(x).__name__}")
    if x.numel() != d:
        raise ValueError(f"x must be one input with prod(shape) = d = {d} of the noise "
                         f"distribution; got shape {tuple(x.shape)} ({x.numel()} entries)")
    dtype = x.dtype if x.is_floating_point() else torch.float32
    return x.to(device=device, dtype=dtype)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a stateless model)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


class Smoothed:
    """A base classifier ``model`` smoothed by the noise ``q`` over ``num_classes`` classes.

    The noise is added to the model's input space: put any input normalization inside ``model``.
    ``autocast`` (e.g. ``torch.bfloat16``) runs the forward passes under mixed precision;
    ``channels_last`` feeds 4-D batches in that memory format; ``seed`` makes runs reproducible
    (a ``generator=`` passed to a call takes precedence).
    """

    def __init__(self, model: torch.nn.Module, q: Distribution, num_classes: int, *,
                 device: torch.device | str | None = None, autocast: torch.dtype | None = None,
                 channels_last: bool = False, seed: int | None = None):
        if not callable(model):
            raise TypeError(f"model must be a torch.nn.Module (callable); got {type(model).__name__}")
        if not isinstance(q, Distribution):
            raise TypeError(f"q must be a wulff.distributions.Distribution; got {type(q).__name__}")
        self.model = model
        self.q = q
        self._certificates: dict[str, BestCertificate] = {}
        self.num_classes = _positive_int("num_classes", num_classes)
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2; got {num_classes}")
        self.device = torch.device(device) if device is not None else (
            model_device(model) if isinstance(model, torch.nn.Module) else torch.device("cpu"))
        if autocast is not None and autocast not in (torch.bfloat16, torch.float16):
            raise ValueError(f"autocast must be None, torch.bfloat16 or torch.float16; got {autocast!r}")
        self.autocast = autocast
        self.channels_last = bool(channels_last)
        self.generator = None
        if seed is not None:
            self.generator = torch.Generator(device=self.device).manual_seed(int(seed))

    # -- the two procedures of Cohen et al. (2019) ----------------------------------------------
    def predict(self, x: torch.Tensor, n: int, alpha: float, batch_size: int, *,
                generator: torch.Generator | None = None) -> int:
        """PREDICT: the top class of n noisy votes, or ABSTAIN unless a two-sided binomial test
        between the top two classes rejects equality at level alpha. With probability at least
        1 - alpha the returned class (when not ABSTAIN) is the smoothed classifier's class."""
        n = _positive_int("n", n)
        alpha = check_alpha(alpha)
        counts = self.count_predictions(x, n, batch_size, generator=generator)
        second, top = np.argsort(counts, kind="stable")[-2:]
        if not two_class_test_passes(int(counts[top]), int(counts[second]), alpha):
            return ABSTAIN
        return int(top)

    def certify(self, x: torch.Tensor, n0: int, n: int, alpha: float, batch_size: int,
                adversaries=("l1", "l2", "linf"), *,
                generator: torch.Generator | None = None) -> Certification:
        """CERTIFY: n0 noisy votes choose the class c; n fresh votes give the one-sided
        Clopper-Pearson lower bound rho_lower on P(f(x + delta) = c) at level alpha. If rho_lower <= 1/2
        the answer is ABSTAIN, else c with radius R_a(rho_lower) for each adversary a, R_a the best
        certificate of q against a (:meth:`certificate`, built once per adversary).
        With probability at least 1 - alpha, every returned radius is a true robustness radius."""
        n0, n, alpha, batch_size = check_certify_arguments(n0, n, alpha, batch_size)
        adversaries = self._check_adversaries(adversaries)
        selection = self.count_predictions(x, n0, batch_size, generator=generator)
        candidate = int(np.argmax(selection))
        counts = self.count_predictions(x, n, batch_size, generator=generator)
        top_count = int(counts[candidate])
        rho_lower = clopper_pearson_lower(top_count, n, alpha)
        if rho_lower <= 0.5:
            return Certification(ABSTAIN, rho_lower, {a: 0.0 for a in adversaries}, top_count, n)
        radius = {a: float(self.certificate(a).radius(rho_lower)) for a in adversaries}
        return Certification(candidate, rho_lower, radius, top_count, n)

    def certify_adaptive(self, x: torch.Tensor, n_max: int, alpha: float, batch_size: int,
                         adversaries=("l1", "l2", "linf"), *, radii=None,
                         generator: torch.Generator | None = None) -> Certification:
        """CERTIFY with a sequential test that stops as soon as the answer is decided
        (:mod:`wulff.certify.adaptive`): n0 = max(1, min(100, n_max // 10)) votes choose the class,
        then Clopper-Pearson bounds are looked at after 500, 1000, 2000, ... estimation samples
        (K looks, the last at n_max - n0, with half of alpha; the other half split over the rest).
        The same guarantee as :meth:`certify`: with probability at least 1 - alpha, the returned
        class (unless ABSTAIN) is the smoothed classifier's and every radius R_a(rho_lower) is a true
        robustness radius, wherever it stops.

        It stops early on abstention (class probability plausibly <= 1/2); with ``radii`` (increasing, against the
        first adversary listed) once the largest grid radius it can certify within n_max is decided;
        without, once going on to n_max could not raise the first adversary's radius by more than 1 %.
        ``n`` of the result counts every noisy sample drawn, selection included (at most n_max);
        ``top_count`` counts the estimation votes for the returned class.
        """
        n_max = _positive_int("n_max", n_max)
        if n_max < 2:
            raise ValueError(f"n_max must be at least 2 (selection plus estimation samples); got {n_max}")
        alpha = check_alpha(alpha)
        batch_size = _positive_int("batch_size", batch_size)
        adversaries = self._check_adversaries(adversaries)
        radii = check_radii(radii)
        x = self._check_input(x)
        certificates = {a: self.certificate(a) for a in adversaries}

        def draw(k: int) -> np.ndarray:
            return self.count_predictions(x, k, batch_size, generator=generator)

        out = certify_sequential(draw, n_max, alpha, certificates, radii)
        prediction = ABSTAIN if out.abstained else out.candidate
        return Certification(prediction, out.rho_lower, dict(out.radius), out.top_count, out.n)

    def attack(self, x: torch.Tensor, label: int, eps: float, adversary: str = "l2", *, steps: int = 20,
               samples: int = 16, step_size: float | None = None, clamp: tuple[float, float] | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """A point x' with ||x' - x|| <= eps (in ``adversary``'s norm) found by PGD on the soft smoothed
        classifier (mean softmax over ``samples`` fresh noise draws per step) to move it away from
        ``label`` (:func:`wulff.certify.attack.pgd_smoothed`); ``clamp`` keeps x' in a data range.
        Check the result with :meth:`predict`: an attack finds perturbations, it certifies nothing."""
        x = self._check_input(x)
        generator = generator if generator is not None else self.generator
        y = torch.tensor([int(label)], device=self.device)
        was_training = getattr(self.model, "training", False)
        if was_training:
            self.model.eval()
        try:
            with self._autocast():
                attacked = pgd_smoothed(self.model, self.q, x.unsqueeze(0), y, eps, adversary, steps=steps,
                                        samples=samples, step_size=step_size, clamp=clamp, generator=generator)
        finally:
            if was_training:
                self.model.train()
        return attacked[0]

    def certificate(self, adversary: str) -> BestCertificate:
        """q's best certificate against ``adversary``, built on first use and kept (not per input)."""
        adversary = check_adversary(adversary)
        if adversary not in self._certificates:
            self._certificates[adversary] = best_certificate(self.q, adversary)
        return self._certificates[adversary]

    # -- Monte Carlo votes ---------------------------------------------------------------------
    def count_predictions(self, x: torch.Tensor, num: int, batch_size: int, *,
                          generator: torch.Generator | None = None) -> np.ndarray:
        """Votes of the base classifier on num noisy copies x + delta, as an int64 array of length
        num_classes. Noise is drawn on the model's device; counting is one bincount per batch.
        Raises :class:`~wulff.errors.NonFiniteError` if any logit is NaN or infinite."""
        num = _positive_int("num", num)
        batch_size = _positive_int("batch_size", batch_size)
        x = self._check_input(x)
        generator = generator if generator is not None else self.generator
        counts = torch.zeros(self.num_classes, dtype=torch.int64, device=self.device)
        finite = torch.ones((), dtype=torch.bool, device=self.device)
        was_training = getattr(self.model, "training", False)
        if was_training:
            self.model.eval()
        try:
            with torch.inference_mode(), self._autocast():
                for start in range(0, num, batch_size):
                    size = min(batch_size, num - start)
                    counts += torch.bincount(self._classify_noisy(x, size, generator, finite),
                                             minlength=self.num_classes)
        finally:
            if was_training:
                self.model.train()
        if not bool(finite):
            raise NonFiniteError("the model returned NaN or infinite logits on noisy inputs: its votes mean "
                                 "nothing, so nothing is predicted or certified (did its training diverge?)")
        return counts.cpu().numpy()

    def _classify_noisy(self, x: torch.Tensor, size: int, generator, finite: torch.Tensor) -> torch.Tensor:
        """The base classifier's class for ``size`` noisy copies of x; clears ``finite`` (in place, no
        device sync) when any logit is NaN or infinite."""
        noise = self.q.sample(size, generator=generator, device=self.device, dtype=x.dtype)
        batch = noise.view(size, *x.shape).add_(x)
        if self.channels_last and batch.dim() == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        logits = self.model(batch)
        if logits.dim() != 2 or logits.shape != (size, self.num_classes):
            raise ValueError(f"the model must map a batch of {size} inputs to logits of shape "
                             f"({size}, num_classes = {self.num_classes}); got {tuple(logits.shape)}")
        finite &= torch.isfinite(logits).all()
        return logits.argmax(dim=1)

    # -- checks --------------------------------------------------------------------------------
    def _check_input(self, x) -> torch.Tensor:
        return one_input(x, self.q.d, self.device)

    @staticmethod
    def _check_adversaries(adversaries) -> tuple[str, ...]:
        if isinstance(adversaries, str):
            adversaries = (adversaries,)
        names = tuple(dict.fromkeys(check_adversary(a) for a in adversaries))
        if not names:
            raise ValueError("adversaries must name at least one of 'l1', 'l2', 'linf'")
        return names

    def _autocast(self):
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast)

    def __repr__(self) -> str:
        return f"Smoothed({type(self.model).__name__}, {self.q!r}, num_classes={self.num_classes})"
