"""Training objectives for base classifiers of smoothed classifiers. Each maps a batch (x, y), the
noise q and the model f to a scalar loss; the trainer minimizes it by SGD (:mod:`wulff.train.trainer`).

Notation: p(z) = softmax(f(z)); delta_1 .. delta_m are independent draws of q for each input; the soft
smoothed classifier is G(x) = (1/m) sum_j p(x + delta_j) (Salman et al., 2019, Section 3); CE(p, y) =
-log p_y; KL(a || b) = sum_c a_c log(a_c / b_c); H(a) = -sum_c a_c log a_c. Every loss is the mean over
the batch. All noisy copies of a batch go through the model in one forward pass, so a model wrapped in
DistributedDataParallel sees one forward per backward.

* ``noise`` -- noise augmentation (Cohen et al., 2019; the paper's Appendix D): CE(p(x + delta), y).
  No parameters. This is :func:`wulff.train.noisy_loss`, unchanged.
* ``stability`` -- stability training (Li et al., 2019), as in the reference code of Yang et al.
  (2020): two draws, CE(p(x + delta_1), y) + weight KL(p(x + delta_1) || p(x + delta_2)).
  ``weight`` = 6 (the reference code's value).
* ``smoothadv`` -- adversarial training of the smoothed classifier (Salman et al., 2019): x' maximizes
  CE(G(x'), y) over ||x' - x|| <= eps by ``steps`` PGD steps of size 2 eps / steps on fixed draws
  (:func:`wulff.smoothing.pgd_smoothed`, l1 with the sparse step of the reference code), then the
  loss is CE(G(x'), y) on the same draws. eps grows linearly over the first half of training:
  epoch e (from 0) of E uses eps min(1, (e + 1) / ceil(E / 2)). Defaults: ``m`` = 4 draws,
  ``steps`` = 20, ``eps`` = 0.5 (in the adversary's norm, input units), ``adversary`` = the noise's
  natural norm (:func:`natural_adversary`). The attack runs on the bare model in eval mode.
* ``direct`` -- the smoothed log-likelihood (the reference code of Yang et al., 2020):
  CE(G(x), y) with ``m`` = 16 draws.
* ``consistency`` -- Jeong & Shin (2020): with P = G(x) over ``m`` draws,
  (1/m) sum_j CE(p(x + delta_j), y) + lambda (1/m) sum_j KL(P || p(x + delta_j)) + eta H(P).
  Defaults from the paper: ``m`` = 2, ``lambda`` = 10, ``eta`` = 0.5.
* ``macer`` -- maximize the certified radius (Zhai et al., 2020, Algorithm 1):
  CE(G(x), y) + weight (1/B) sum over correctly classified inputs of max(0, gamma s / 2 - R(rho)),
  where rho = G_beta(x)_y is the soft smoothed probability of the label with inverse temperature beta
  (softmax(beta f)), "correct" means y = argmax G_beta(x), s is the noise's sigma (lam when sigma is
  infinite) and R = :func:`wulff.certified_radius` (q, rho, ``adversary``): the library's certificate
  of *any* family. For Gaussian noise and l2, R = sigma Phi^-1(rho) and this is MACER's term
  (sigma / 2) max(0, gamma - Phi^-1(rho) + Phi^-1(1 - rho)) with p_B = 1 - p_A. Inputs whose radius
  is infinite (rho = 1 for unbounded noise) or past the hinge contribute 0, as in MACER. A
  certificate is a function of rho that is 0 for rho <= 1/2, so the radius term only acts on inputs
  with rho > 1/2. Defaults from the paper: ``m`` = 16, ``beta`` = 16, ``gamma`` = 8,
  ``weight`` = 12 (MACER's lambda), ``adversary`` = the noise's natural norm. A NaN or infinite rho (from
  NaN or infinite logits) makes the loss NaN instead of reaching the certificate, so a diverging MACER
  run stops like any other (:func:`wulff.train.train_smoothed`: "training diverged in epoch N").

Each objective is declared once, in :data:`wulff.catalog.OBJECTIVES` (its parameters, their rules and
the line ``wulff train --help`` shows), and its loss is the function of :data:`LOSSES` under the same
name; :func:`register_objective` adds both for an objective defined elsewhere.

Every numeric parameter has a ceiling, declared with the objective (``OBJECTIVES[name].maximum``) and
named in the error that refuses a larger value: m <= 1024, steps <= 1000, the loss weights <= 1e6,
beta and gamma <= 1e4, eps <= 1e6.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from wulff import catalog
from wulff.catalog import (  # noqa: F401  (the objective declarations, importable from here as before)
    ADVERSARIES,
    MAX_DRAWS,
    MAX_EPS,
    MAX_SCALE,
    MAX_STEPS,
    MAX_WEIGHT,
    OBJECTIVES,
    ObjectiveInfo,
)
from wulff.distributions import Distribution
from wulff.errors import parse_number
from wulff.selector import certified_radius
from wulff.smoothing import draw_noise, full_precision, noisy_inputs, noisy_logits, pgd_smoothed, soft_log_probs
from wulff.splitting import SplittingNoise


class _DeclaredAdversaries(Mapping):
    """Family name -> the natural adversary its declaration gives (a live view of wulff.catalog.FAMILIES)."""

    def __getitem__(self, name: str) -> str:
        return catalog.FAMILIES[name].natural_adversary

    def __iter__(self) -> Iterator[str]:
        return iter(catalog.FAMILIES)

    def __len__(self) -> int:
        return len(catalog.FAMILIES)


#: the norm each named family is built for (the paper's pairing, declared with the family); others go
#: by their structure
NATURAL_ADVERSARY: Mapping[str, str] = _DeclaredAdversaries()


def natural_adversary(q: Distribution) -> str:
    """The norm q is meant for: the paper's pairing for named families (Gaussian l2, Laplace and the
    uniform cube l1, ExpInf linf, ...); for other densities the norm of a radial or uniform one, else l1."""
    if q.name in NATURAL_ADVERSARY:
        return NATURAL_ADVERSARY[q.name]
    return {1: "l1", 2: "l2", "inf": "linf"}.get(getattr(q, "norm", None), "l1")


def noise_scale(q: Distribution) -> float:
    """sigma of q, or lam when sigma is infinite (heavy tails)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sigma = float(q.sigma)
    return sigma if math.isfinite(sigma) else float(q.lam)


def _kl(a_log: torch.Tensor, b_log: torch.Tensor) -> torch.Tensor:
    """KL(a || b) per row from log-probabilities."""
    return (a_log.exp() * (a_log - b_log)).sum(dim=-1)


def _radius(q: Distribution, rho: torch.Tensor, adversary: str) -> torch.Tensor:
    """The certified radius at soft probability rho, through :func:`wulff.certified_radius` (a torch
    tensor in, a tensor on its device out, carrying the gradient dR/drho)."""
    return certified_radius(q, rho, adversary)


def noisy_loss(model: torch.nn.Module, q: Distribution | SplittingNoise, x: torch.Tensor, y: torch.Tensor,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean of -log f(x + delta)_y over the batch, one fresh delta ~ q per example (DSSN: T(x, s));
    the objective ``noise``."""
    return F.cross_entropy(model(noisy_inputs(q, x, generator)), y)


# -- the losses, each from the noisy logits of one forward pass: shape (m, B, C) ------------------------
def stability_loss(logits: torch.Tensor, y: torch.Tensor, weight: float) -> torch.Tensor:
    first, second = (F.log_softmax(full_precision(z), dim=-1) for z in logits[:2])
    return F.nll_loss(first, y) + weight * _kl(first, second).mean()


def direct_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.nll_loss(soft_log_probs(logits), y)


def consistency_loss(logits: torch.Tensor, y: torch.Tensor, lam: float, eta: float) -> torch.Tensor:
    log_p = F.log_softmax(full_precision(logits), dim=-1)  # (m, B, C)
    log_mean = soft_log_probs(logits)  # (B, C)
    cross_entropy = F.nll_loss(log_p.flatten(0, 1), y.repeat(logits.shape[0]))
    consistency = _kl(log_mean.unsqueeze(0), log_p).mean()
    entropy = -(log_mean.exp() * log_mean).sum(dim=-1).mean()
    return cross_entropy + lam * consistency + eta * entropy


def macer_radius_term(logits: torch.Tensor, y: torch.Tensor, q: Distribution, adversary: str, beta: float,
                      gamma: float) -> torch.Tensor:
    """(1/B) sum over correctly classified inputs of max(0, gamma s / 2 - R(rho)) (see the module doc)."""
    soft = F.softmax(beta * full_precision(logits), dim=-1).mean(dim=0)  # (B, C)
    rho = soft.gather(1, y.view(-1, 1)).squeeze(1)
    correct = soft.argmax(dim=1) == y
    threshold = gamma * noise_scale(q) / 2
    if not bool(torch.isfinite(rho).all()):  # NaN/inf logits: no radius; the loss carries the NaN to the
        return rho.sum() * math.nan          # trainer, whose rule for a non-finite loss names the epoch
    with torch.no_grad():
        radius = _radius(q, rho.detach(), adversary)
    active = correct & torch.isfinite(radius) & (radius < threshold)
    if not bool(active.any()):
        return rho.sum() * 0.0
    return (threshold - _radius(q, rho[active], adversary)).sum() / len(y)


def macer_loss(logits: torch.Tensor, y: torch.Tensor, q: Distribution, adversary: str, beta: float,
               gamma: float, weight: float) -> torch.Tensor:
    return direct_loss(logits, y) + weight * macer_radius_term(logits, y, q, adversary, beta, gamma)


# -- the registry: each objective's declaration is in wulff.catalog.OBJECTIVES, its loss here ------------
@dataclass(frozen=True)
class Objective:
    """A named objective with its parameters (defaults filled in); :meth:`loss` evaluates it."""

    name: str
    params: dict = field(default_factory=dict)

    def spec(self) -> dict:
        """Plain data naming the objective and its parameters (part of a checkpoint's identity)."""
        return {"name": self.name, "params": dict(self.params)}

    def loss(self, model, q: Distribution, x: torch.Tensor, y: torch.Tensor,
             generator: torch.Generator | None = None, *, epoch: int = 0, epochs: int = 1,
             attack_model: Callable | None = None) -> torch.Tensor:
        """The loss on the batch (x, y): one forward pass of ``model``. ``epoch`` of ``epochs`` sets the
        eps warm-up of smoothadv, whose attack runs on ``attack_model`` (default ``model``; the trainer
        passes the model without its DistributedDataParallel wrapper)."""
        return _loss_function(self.name)(self, model, q, x, y, generator, epoch=epoch, epochs=epochs,
                                         attack_model=attack_model or model)

    def eps_at(self, epoch: int, epochs: int) -> float:
        """smoothadv's eps in epoch ``epoch`` (from 0) of ``epochs``: linear warm-up over the first half."""
        warmup = max(1, math.ceil(epochs / 2))
        return float(self.params["eps"]) * min(1.0, (epoch + 1) / warmup)

    def _smoothadv(self, model, q, x, y, generator, epoch, epochs, attack_model) -> torch.Tensor:
        p = self.params
        noise = draw_noise(q, int(p["m"]), x.shape[0], generator, x.device, x.dtype)
        was_training = getattr(attack_model, "training", False)
        if was_training:
            attack_model.eval()
        try:
            attacked = pgd_smoothed(attack_model, q, x, y, self.eps_at(epoch, epochs), p["adversary"],
                                    steps=int(p["steps"]), samples=int(p["m"]), noise=noise)
        finally:
            if was_training:
                attack_model.train()
        return direct_loss(noisy_logits(model, attacked, noise), y)


#: the signature of an objective's loss: (objective, model, q, x, y, generator, *, epoch, epochs,
#: attack_model) -> the scalar loss of the batch (x, y)
LossFunction = Callable[..., torch.Tensor]


def _noisy_logits(model, q: Distribution, x: torch.Tensor, generator, m: int) -> torch.Tensor:
    """The logits of m noisy copies of the batch in one forward pass: shape (m, B, C)."""
    return noisy_logits(model, x, draw_noise(q, m, x.shape[0], generator, x.device, x.dtype))


def _noise(objective, model, q, x, y, generator, **_) -> torch.Tensor:
    return noisy_loss(model, q, x, y, generator)


def _stability(objective, model, q, x, y, generator, **_) -> torch.Tensor:
    return stability_loss(_noisy_logits(model, q, x, generator, 2), y, objective.params["weight"])


def _smoothadv(objective, model, q, x, y, generator, *, epoch, epochs, attack_model) -> torch.Tensor:
    return objective._smoothadv(model, q, x, y, generator, epoch, epochs, attack_model)


def _direct(objective, model, q, x, y, generator, **_) -> torch.Tensor:
    return direct_loss(_noisy_logits(model, q, x, generator, int(objective.params["m"])), y)


def _consistency(objective, model, q, x, y, generator, **_) -> torch.Tensor:
    p = objective.params
    return consistency_loss(_noisy_logits(model, q, x, generator, int(p["m"])), y, p["lambda"], p["eta"])


def _macer(objective, model, q, x, y, generator, **_) -> torch.Tensor:
    p = objective.params
    logits = _noisy_logits(model, q, x, generator, int(p["m"]))
    return macer_loss(logits, y, q, p["adversary"], p["beta"], p["gamma"], p["weight"])


#: the loss of each objective of wulff.catalog.OBJECTIVES, by name
LOSSES: dict[str, LossFunction] = {"noise": _noise, "stability": _stability, "smoothadv": _smoothadv,
                                   "direct": _direct, "consistency": _consistency, "macer": _macer}


def _loss_function(name: str) -> LossFunction:
    if name not in LOSSES:
        raise ValueError(f"objective {name} is declared but has no loss; add it with "
                         "wulff.train.objectives.register_objective(name, info, loss)")
    return LOSSES[name]


def register_objective(name: str, info: ObjectiveInfo, loss: LossFunction) -> None:
    """Add a training objective: its declaration (parameters, rules, ``--help`` line) to
    :data:`wulff.catalog.OBJECTIVES` and its loss to :data:`LOSSES`; ``wulff train --objective`` then
    offers it. A name taken by another objective is a ValueError."""
    if not callable(loss):
        raise TypeError(f"objective {name}: loss must be a function; got {type(loss).__name__}")
    catalog.register_objective(name, info)
    LOSSES[name] = loss


def unregister_objective(name: str) -> None:
    """Remove an objective added by :func:`register_objective` (a built-in one is a ValueError)."""
    catalog.unregister_objective(name)
    LOSSES.pop(name, None)


def _value(name: str, key: str, value, info: ObjectiveInfo):
    if key == "adversary":
        if value not in ADVERSARIES:
            raise ValueError(f"objective {name}: adversary must be one of {', '.join(ADVERSARIES)}; got {value!r}")
        return value
    number = parse_number(value, what=f"objective {name}: parameter {key}")
    if key in info.integers:
        if not float(number).is_integer():
            raise ValueError(f"objective {name}: {key} must be an integer; got {value!r}")
        number = int(number)
    if number < 0 or (key in info.positive and number <= 0) or number > info.maximum.get(key, math.inf):
        rule = "> 0" if key in info.positive else ">= 0"
        if key in info.maximum:
            rule += f" and <= {info.maximum[key]:g}"
        raise ValueError(f"objective {name}: {key} must be {rule}; got {value!r}")
    return number


def build_objective(name: str = "noise", params: dict | None = None,
                    q: Distribution | SplittingNoise | None = None) -> Objective:
    """The objective ``name`` with ``params`` (numbers, or text from the command line; ``adversary`` is
    "l1", "l2" or "linf") over its defaults. An adversary left unset becomes q's natural one. An
    unknown name or parameter, or a value out of range, is a ValueError naming it and the valid ones."""
    key = str(name).lower()
    if key not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}; got {name!r}")
    info = OBJECTIVES[key]
    _loss_function(key)
    if key != "noise" and q is not None and not isinstance(q, Distribution):
        raise ValueError(f"objective {key} needs a noise distribution to draw from; {type(q).__name__} "
                         "(DSSN) trains with objective noise only")
    params = dict(params or {})
    unknown = sorted(set(params) - set(info.defaults))
    if unknown:
        valid = ", ".join(info.defaults) or "none"
        raise ValueError(f"objective {key} has no parameter {', '.join(unknown)} (its parameters: {valid})")
    values = {}
    for k, default in info.defaults.items():
        given = params.get(k, default)
        if given is None and k == "adversary":
            if q is None:
                raise ValueError(f"objective {key}: give adversary= (or the noise q, whose natural norm is "
                                 "the default)")
            given = natural_adversary(q)
        values[k] = _value(key, k, given, info)
    objective = Objective(key, values)
    if key == "macer" and q is not None:
        _radius(q, torch.tensor([0.75]), values["adversary"])  # fail now, not mid-training, without a certificate
    return objective


def parse_objective_params(items) -> dict:
    """["m=4", "adversary=l1"] -> {"m": "4", "adversary": "l1"} (values are checked by build_objective)."""
    params = {}
    for item in items or ():
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ValueError(f"an objective parameter must look like name=value; got {item!r}")
        params[key.strip()] = value.strip()
    return params
