"""The smoothed-classifier interface: a base classifier f with a noise, voting over noisy (or
transformed) copies of one input. Two implementations:

* :class:`~wulff.certify.smoothed.Smoothed` -- Monte Carlo votes over x + delta, delta ~ q, with the
  Clopper-Pearson certificate (Cohen et al., 2019; Yang et al., 2020, Section 6);
* :class:`~wulff.certify.derandomized.DerandomizedSmoothed` -- the exact votes of the N = 2 lam Q
  offsets of derandomized splitting noise (Levine & Feizi, 2021), without sampling.

Both share the constructor checks, the one voting loop (eval mode, inference mode, autocast,
channels_last, one bincount per batch, a NaN / inf check without device syncs) and the hooks that
:func:`wulff.certify.certify_dataset` calls (:meth:`SmoothedClassifier.check_sampling`,
:meth:`SmoothedClassifier.certify_input`, :meth:`SmoothedClassifier.result_columns`,
:meth:`SmoothedClassifier.row_extras`); a subclass provides the copies
(:meth:`SmoothedClassifier._copies`) and its own certificate.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from wulff.certificate import check_adversary
from wulff.distributions.base import check_integer
from wulff.errors import NonFiniteError

from .two_class import DIFFERENTIAL, GENERIC, NEYMAN_PEARSON, ONE_CLASS

#: the class label returned when the smoothed classifier declines to answer
ABSTAIN = -1
#: how a result file codes the form that gave a radius (its ``form_<adversary>`` columns); an abstention is 0
FORM_CODES = {ONE_CLASS: 0, GENERIC: 1, DIFFERENTIAL: 2, NEYMAN_PEARSON: 3}


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
    ``rho_b_upper`` is the upper bound on the runner-up's probability p_B the radius used (None: p_B
    was not bounded, the p_A form 1 - rho_lower); ``form`` maps each adversary to the form that gave
    its radius: "p_A", "two-class", "two-class (differential)" or "two-class (Neyman-Pearson)"
    (:mod:`wulff.certify.two_class`).
    """

    prediction: int
    rho_lower: float
    radius: dict[str, float] = field(default_factory=dict)
    top_count: int = 0
    n: int = 0
    rho_b_upper: float | None = None
    form: dict[str, str] = field(default_factory=dict)

    @property
    def abstained(self) -> bool:
        return self.prediction == ABSTAIN


def positive_int(name: str, value) -> int:
    """``value`` as an integer >= 1 (a ParameterError or ValueError naming ``name`` otherwise)."""
    return check_integer(name, value, minimum=1)


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


def check_adversaries(adversaries) -> tuple[str, ...]:
    """One adversary name or several, checked, without repeats, in the order given (at least one)."""
    if isinstance(adversaries, str):
        adversaries = (adversaries,)
    names = tuple(dict.fromkeys(check_adversary(a) for a in adversaries))
    if not names:
        raise ValueError("adversaries must name at least one of 'l1', 'l2', 'linf'")
    return names


class SmoothedClassifier:
    """A base classifier ``model`` smoothed by ``noise`` over ``num_classes`` classes.

    The noise acts in the model's input space: put any input normalization inside ``model``.
    ``autocast`` (``torch.bfloat16`` or ``torch.float16``) runs the forward passes under mixed
    precision; ``channels_last`` feeds 4-D batches in that memory format. ``meta`` holds plain data on
    where the model came from (a checkpoint's training metadata, see :func:`wulff.load`) and ``source``
    the checkpoint's path; {} and None when the classifier is built directly.
    """

    #: True when votes are exact (no sampling, no confidence level): certify_dataset then records
    #: n = N, n0 = 0 and alpha = 0
    deterministic: ClassVar[bool] = False
    #: what the copies the model votes on are called in error messages
    copies_name: ClassVar[str] = "noisy inputs"

    def __init__(self, model: torch.nn.Module, noise, num_classes: int, *,
                 device: torch.device | str | None = None, autocast: torch.dtype | None = None,
                 channels_last: bool = False):
        if not callable(model):
            raise TypeError(f"model must be a torch.nn.Module (callable); got {type(model).__name__}")
        self._check_noise(noise)
        self.model = model
        self.q = noise
        self.num_classes = positive_int("num_classes", num_classes)
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2; got {num_classes}")
        self.device = torch.device(device) if device is not None else (
            model_device(model) if isinstance(model, torch.nn.Module) else torch.device("cpu"))
        if autocast is not None and autocast not in (torch.bfloat16, torch.float16):
            raise ValueError(f"autocast must be None, torch.bfloat16 or torch.float16; got {autocast!r}")
        self.autocast = autocast
        self.channels_last = bool(channels_last)
        self.meta: dict = {}
        self.source: str | None = None

    # -- what an implementation provides --------------------------------------------------------
    @staticmethod
    def _check_noise(noise) -> None:
        """A TypeError unless ``noise`` is the kind this classifier smooths with."""
        raise NotImplementedError

    def _copies(self, x: torch.Tensor, start: int, size: int, generator) -> torch.Tensor:
        """Copies ``start`` .. ``start + size - 1`` of the one input x that the model votes on, as a
        batch of shape (size, *x.shape)."""
        raise NotImplementedError

    def certify_input(self, x: torch.Tensor, n0: int, n: int, alpha: float, batch_size: int,
                      adversaries: tuple[str, ...], *, adaptive: bool = False, radii=None,
                      generator: torch.Generator | None = None) -> tuple[Certification, int]:
        """The certification of one input with settings from :meth:`check_sampling`, and the number of
        forward passes it used (the result file's ``samples``). A sampling (not ``deterministic``)
        implementation also takes ``two_class`` (True or False: whether p_B may be bounded), which
        :func:`~wulff.certify.certify_dataset` always passes to it."""
        raise NotImplementedError

    def check_sampling(self, n0, n, alpha, batch_size, adaptive: bool) -> tuple[int, int, float, int]:
        """(n0, n, alpha, batch_size) as :func:`wulff.certify.certify_dataset` records them."""
        raise NotImplementedError

    def result_columns(self, adversaries, out: str | os.PathLike) -> list[str] | None:
        """The result file's columns (None: the default ones)."""
        return None

    def row_extras(self, result: Certification) -> dict:
        """Columns of a result row beyond the default ones (a row may hold more than the file's columns:
        the writer takes the ones it has)."""
        return {}

    # -- the one voting loop ---------------------------------------------------------------------
    def _vote(self, x: torch.Tensor, total: int, batch_size: int, generator=None) -> np.ndarray:
        """The model's votes on copies 0 .. total - 1 of the one checked input x, ``batch_size`` per
        forward pass, as an int64 array of length num_classes (one bincount per batch, on the device).
        Raises :class:`~wulff.errors.NonFiniteError` if any logit is NaN or infinite."""
        counts = torch.zeros(self.num_classes, dtype=torch.int64, device=self.device)
        finite = torch.ones((), dtype=torch.bool, device=self.device)
        with self._evaluation(), torch.inference_mode(), self._autocast():
            for start in range(0, total, batch_size):
                batch = self._copies(x, start, min(batch_size, total - start), generator)
                counts += torch.bincount(self._classify(batch, finite), minlength=self.num_classes)
        if not bool(finite):
            raise NonFiniteError(f"the model returned NaN or infinite logits on {self.copies_name}: its votes "
                                 "mean nothing, so nothing is predicted or certified (did its training diverge?)")
        return counts.cpu().numpy()

    def _classify(self, batch: torch.Tensor, finite: torch.Tensor) -> torch.Tensor:
        """The base classifier's class for each input of ``batch``; clears ``finite`` (in place, no
        device sync) when any logit is NaN or infinite."""
        if self.channels_last and batch.dim() == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        logits = self.model(batch)
        size = batch.shape[0]
        if logits.dim() != 2 or logits.shape != (size, self.num_classes):
            raise ValueError(f"the model must map a batch of {size} inputs to logits of shape "
                             f"({size}, num_classes = {self.num_classes}); got {tuple(logits.shape)}")
        finite &= torch.isfinite(logits).all()
        return logits.argmax(dim=1)

    @contextlib.contextmanager
    def _evaluation(self) -> Iterator[None]:
        """The model in eval mode for the duration (its training mode restored afterwards)."""
        was_training = getattr(self.model, "training", False)
        if was_training:
            self.model.eval()
        try:
            yield
        finally:
            if was_training:
                self.model.train()

    def _autocast(self):
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast)

    # -- checks ----------------------------------------------------------------------------------
    def _check_input(self, x) -> torch.Tensor:
        return one_input(x, self.q.d, self.device)

    @staticmethod
    def _check_adversaries(adversaries) -> tuple[str, ...]:
        return check_adversaries(adversaries)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.model).__name__}, {self.q!r}, num_classes={self.num_classes})"
