"""The smoothed classifier g(x) = argmax_c P(f(x + delta) = c), delta ~ q, and its Monte Carlo
certification (Cohen et al., 2019, Section 3.2; Yang et al., 2020, Section 6).

``certify`` returns, with probability at least 1 - alpha over the noise, either ABSTAIN or the class
g(x) together with radii such that g(x + eta) = g(x) for every eta with ||eta|| below the radius of
each requested norm. Radii come from the distribution's best certificate
(:func:`wulff.best_certificate`, built once per adversary) evaluated at the one-sided
Clopper-Pearson lower bound on P(f(x + delta) = g(x)): input for input Cohen et al.'s CERTIFY.
``certify(two_class=True)`` and ``certify_adaptive`` (wulff's own procedure, two-class by default)
may bound the runner-up's probability too (:mod:`wulff.certify.two_class`).
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch

from wulff.certificate import check_adversary
from wulff.distributions import Distribution
from wulff.selector import BestCertificate, best_certificate

from .adaptive import (
    DEFAULT_METHOD,
    certify_counts,
    certify_sequential,
    check_method,
    check_radii,
    default_method,
)
from .attack import pgd_smoothed
from .classifier import ABSTAIN, FORM_CODES, Certification, SmoothedClassifier, positive_int
from .results import RHO_B_COLUMN, form_column, one_class_column
from .stats import check_alpha, two_class_test_passes
from .two_class import ONE_CLASS, round_up

__all__ = ["ABSTAIN", "Certification", "Smoothed", "check_certify_arguments"]


def check_certify_arguments(n0, n, alpha, batch_size) -> tuple[int, int, float, int]:
    """n0, n and batch_size positive integers with n0 <= n; alpha in (0, 1)."""
    n0 = positive_int("n0", n0)
    n = positive_int("n", n)
    if n0 > n:
        raise ValueError(f"n0 (samples to choose the class) must not exceed n (samples to estimate it); "
                         f"got n0 = {n0}, n = {n}")
    return n0, n, check_alpha(alpha), positive_int("batch_size", batch_size)


def coin_generator(generator: torch.Generator | None) -> np.random.Generator:
    """The numpy generator of the two-class scores' fair coins, seeded by one draw of ``generator`` (torch's
    global generator when None), so that a seeded run is reproducible and the coins stay independent of
    the votes."""
    device = generator.device if generator is not None else "cpu"
    seed = torch.randint(0, 2 ** 62, (1,), generator=generator, device=device)
    return np.random.default_rng(int(seed.item()))


class Smoothed(SmoothedClassifier):
    """A base classifier ``model`` smoothed by the noise ``q`` over ``num_classes`` classes: the
    Monte Carlo implementation of :class:`~wulff.certify.classifier.SmoothedClassifier`.

    The noise is added to the model's input space: put any input normalization inside ``model``.
    ``autocast`` (e.g. ``torch.bfloat16``) runs the forward passes under mixed precision;
    ``channels_last`` feeds 4-D batches in that memory format; ``seed`` makes runs reproducible
    (a ``generator=`` passed to a call takes precedence).
    """

    def __init__(self, model: torch.nn.Module, q: Distribution, num_classes: int, *,
                 device: torch.device | str | None = None, autocast: torch.dtype | None = None,
                 channels_last: bool = False, seed: int | None = None):
        super().__init__(model, q, num_classes, device=device, autocast=autocast, channels_last=channels_last)
        self._certificates: dict[str, BestCertificate] = {}
        self.generator = None
        if seed is not None:
            self.generator = torch.Generator(device=self.device).manual_seed(int(seed))

    # -- the two procedures of Cohen et al. (2019) ----------------------------------------------
    def predict(self, x: torch.Tensor, n: int, alpha: float, batch_size: int, *,
                generator: torch.Generator | None = None) -> int:
        """PREDICT: the top class of n noisy votes, or ABSTAIN unless a two-sided binomial test
        between the top two classes rejects equality at level alpha. With probability at least
        1 - alpha the returned class (when not ABSTAIN) is the smoothed classifier's class."""
        n = positive_int("n", n)
        alpha = check_alpha(alpha)
        counts = self.count_predictions(x, n, batch_size, generator=generator)
        second, top = np.argsort(counts, kind="stable")[-2:]
        if not two_class_test_passes(int(counts[top]), int(counts[second]), alpha):
            return ABSTAIN
        return int(top)

    def certify(self, x: torch.Tensor, n0: int, n: int, alpha: float, batch_size: int,
                adversaries=("l1", "l2", "linf"), *, two_class: bool = False,
                generator: torch.Generator | None = None) -> Certification:
        """CERTIFY: n0 noisy votes choose the class c; n fresh votes give the one-sided
        Clopper-Pearson lower bound rho_lower on P(f(x + delta) = c) at level alpha. If rho_lower <= 1/2
        the answer is ABSTAIN, else c with radius R_a(rho_lower) for each adversary a, R_a the best
        certificate of q against a (:meth:`certificate`, built once per adversary).
        With probability at least 1 - alpha, every returned radius is a true robustness radius.

        By default this is Cohen et al.'s CERTIFY input for input (p_A bounded at level alpha, the radius
        from p_A alone: ``form`` "p_A", ``rho_b_upper`` None). With ``two_class=True``, when the n0 votes
        name three or more classes, the runner-up's probability p_B is bounded too and the radius is the
        two-class one (Cohen et al.'s Theorem 1 in full for the Gaussian; :mod:`wulff.certify.two_class`
        for every certificate); the result records p_B's bound and the form that gave each radius."""
        n0, n, alpha, batch_size = check_certify_arguments(n0, n, alpha, batch_size)
        adversaries = self._check_adversaries(adversaries)
        selection = self.count_predictions(x, n0, batch_size, generator=generator)
        counts = self.count_predictions(x, n, batch_size, generator=generator)
        out = certify_counts(selection, counts, alpha, {a: self.certificate(a) for a in adversaries}, two_class)
        prediction = ABSTAIN if out.abstained else out.candidate
        return Certification(prediction, out.rho_lower, out.radius, int(counts[out.candidate]), n, out.rho_b_upper,
                             out.form)

    def certify_adaptive(self, x: torch.Tensor, n_max: int, alpha: float, batch_size: int,
                         adversaries=("l1", "l2", "linf"), *, radii=None, method: str | None = DEFAULT_METHOD,
                         two_class: bool = True, generator: torch.Generator | None = None) -> Certification:
        """CERTIFY with a sequential test that stops as soon as the answer is decided
        (:mod:`wulff.certify.adaptive`): n0 = max(1, min(100, n_max // 10)) votes choose the class,
        then, with ``method="anytime"`` (the default with ``radii``), a confidence sequence valid at every sample
        size at once (:mod:`wulff.certify.sequential`, half of alpha) is looked at after 100, 110, 121,
        ... estimation samples and Clopper-Pearson (the other half) at the last look, n_max - n0;
        ``method="bonferroni"`` (the default without ``radii``) looks at Clopper-Pearson bounds after
        500, 1000, 2000, ... samples (half of alpha on the last look, the other half split over the
        rest). With ``two_class`` (the default) the radius comes from two scores that count the other
        classes' votes too (:mod:`wulff.certify.adaptive`, step 4; their fair coins are seeded from
        ``generator``): never below the p_A form's radius on the same votes, at the same level.
        The same guarantee as :meth:`certify`: with probability at least 1 - alpha, the returned
        class (unless ABSTAIN) is the smoothed classifier's and every radius R_a(rho_lower) is a true
        robustness radius, wherever it stops.

        It stops early on abstention (class probability plausibly <= 1/2); with ``radii`` (increasing, against the
        first adversary listed) once the largest grid radius it can certify within n_max is decided;
        without, once going on to n_max could not raise the first adversary's radius by more than 1 %.
        ``n`` of the result counts every noisy sample drawn, selection included (at most n_max);
        ``top_count`` counts the estimation votes for the returned class.
        """
        n_max = positive_int("n_max", n_max)
        if n_max < 2:
            raise ValueError(f"n_max must be at least 2 (selection plus estimation samples); got {n_max}")
        alpha = check_alpha(alpha)
        batch_size = positive_int("batch_size", batch_size)
        adversaries = self._check_adversaries(adversaries)
        radii = check_radii(radii)
        method = check_method(default_method(radii) if method is None else method)
        x = self._check_input(x)
        certificates = {a: self.certificate(a) for a in adversaries}

        def draw(k: int) -> np.ndarray:
            return self.count_predictions(x, k, batch_size, generator=generator)

        coins = coin_generator(generator if generator is not None else self.generator) if two_class else None
        out = certify_sequential(draw, n_max, alpha, certificates, radii, method=method, two_class=two_class,
                                 coins=coins)
        prediction = ABSTAIN if out.abstained else out.candidate
        rho_b = None if out.rho_b_upper == 1.0 - out.rho_lower else out.rho_b_upper
        return Certification(prediction, out.rho_lower, dict(out.radius), out.top_count, out.n, rho_b,
                             {} if out.abstained else dict(out.form))

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
        with self._evaluation(), self._autocast():
            attacked = pgd_smoothed(self.model, self.q, x.unsqueeze(0), y, eps, adversary, steps=steps,
                                    samples=samples, step_size=step_size, clamp=clamp, generator=generator)
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
        num = positive_int("num", num)
        batch_size = positive_int("batch_size", batch_size)
        x = self._check_input(x)
        generator = generator if generator is not None else self.generator
        return self._vote(x, num, batch_size, generator)

    def _copies(self, x: torch.Tensor, start: int, size: int, generator) -> torch.Tensor:
        """``size`` noisy copies x + delta, delta ~ q drawn on the model's device."""
        noise = self.q.sample(size, generator=generator, device=self.device, dtype=x.dtype)
        return noise.view(size, *x.shape).add_(x)

    # -- the hooks of certify_dataset ------------------------------------------------------------
    @staticmethod
    def _check_noise(noise) -> None:
        if not isinstance(noise, Distribution):
            raise TypeError(f"q must be a wulff.distributions.Distribution; got {type(noise).__name__}")

    def check_sampling(self, n0, n, alpha, batch_size, adaptive: bool) -> tuple[int, int, float, int]:
        """n0, n and batch_size positive integers with n0 <= n; alpha in (0, 1)."""
        return check_certify_arguments(n0, n, alpha, batch_size)

    def certify_input(self, x: torch.Tensor, n0: int, n: int, alpha: float, batch_size: int,
                      adversaries: tuple[str, ...], *, adaptive: bool = False, radii=None,
                      two_class: bool | None = None,
                      generator: torch.Generator | None = None) -> tuple[Certification, int]:
        """:meth:`certify_adaptive` within n0 + n samples when ``adaptive``, else :meth:`certify`;
        ``two_class`` None: each one's default (on for the adaptive procedure, off for CERTIFY)."""
        if adaptive:
            result = self.certify_adaptive(x, n0 + n, alpha, batch_size, adversaries, radii=radii,
                                           two_class=True if two_class is None else two_class, generator=generator)
            return result, result.n
        return self.certify(x, n0, n, alpha, batch_size, adversaries, two_class=bool(two_class),
                            generator=generator), n0 + n

    def row_extras(self, result: Certification) -> dict:
        """The two-class columns (:func:`~wulff.certify.results.two_class_columns`; written only by runs
        that used the two-class form): p_B's bound (1 - rho_lower rounded up where p_B was not bounded),
        the form of each radius (:data:`~wulff.certify.classifier.FORM_CODES`) and the p_A form's radius
        R(rho_lower) of the same bounds."""
        row = {RHO_B_COLUMN: result.rho_b_upper if result.rho_b_upper is not None else round_up(
            1 - Fraction(result.rho_lower))}
        for adversary, radius in result.radius.items():
            form = result.form.get(adversary, ONE_CLASS)
            row[form_column(adversary)] = FORM_CODES[form]
            row[one_class_column(adversary)] = radius if form == ONE_CLASS or result.abstained else \
                float(self.certificate(adversary).radius(result.rho_lower))
        return row
