"""The best sound certificate the library can build for a distribution and an adversary.

Every certificate provider (the differential method, the level set method, the uniform-noise
theorems) is asked for a certificate against every adversary; each is read against the requested
adversary through the norm inequalities (:meth:`Certificate.converted`), and the result is their
pointwise maximum: a maximum of sound lower bounds is a sound lower bound.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .certificate import ADVERSARIES, Certificate, as_rho_array, check_adversary
from .diffmethod import derive as differential_method
from .distributions import Distribution
from .levelset import derive as level_set_method
from .uniform import derive_uniform as uniform_noise

#: every certificate engine, (name, (q, adversary) -> Certificate raising NotImplementedError for a
#: pair it does not handle); the name labels :meth:`BestCertificate.winner`
PROVIDERS: tuple[tuple[str, Callable[[Distribution, str], Certificate]], ...] = (
    ("differential method", differential_method),
    ("level set method", level_set_method),
    ("uniform noise", uniform_noise),
)


def labelled_certificates(q: Distribution, adversary: str) -> list[tuple[str, Certificate]]:
    """(label, certificate) for every certificate for q against ``adversary``, direct or through a
    norm conversion; the label names the provider and the method ("level set method: ...").

    When a provider returns an exact (``tight``) certificate against ``adversary`` itself, only the
    exact ones are returned: every sound radius lies below an exact one.
    """
    target = check_adversary(adversary)
    providers = PROVIDERS
    direct = []
    for found in _ask(providers, q, [target], target):
        if found[1].tight:  # an exact radius bounds every sound one: nothing else can win
            return [found]
        direct.append(found)
    return direct + list(_ask(providers, q, [s for s in ADVERSARIES if s != target], target))


def _ask(providers, q: Distribution, sources: list[str], target: str):
    """Yield (label, certificate converted to ``target``) lazily, provider by provider."""
    for provider_name, provider in providers:
        for source in sources:
            try:
                cert = provider(q, source)
            except NotImplementedError:
                continue
            converted = cert.converted(target)
            yield f"{provider_name}: {converted.method}", converted


def all_certificates(q: Distribution, adversary: str) -> list[Certificate]:
    """Every certificate for q against ``adversary``, direct or through a norm conversion."""
    return [cert for _, cert in labelled_certificates(q, adversary)]


class BestCertificate(Certificate):
    """Pointwise maximum of several certificates; :meth:`winner` says which one gives each radius.

    A certificate marked tight is the exact robust radius, so every sound one lies below it: the
    maximum is then tight too and takes that certificate's formula.
    """

    def __init__(self, certificates: list[Certificate], adversary: str, lam: float, d: int,
                 labels: list[str] | None = None):
        if not certificates:
            raise NotImplementedError(f"no certificate is known against {adversary} for this distribution")
        self.certificates = certificates
        self.labels = list(labels) if labels is not None else [c.method for c in certificates]
        if len(self.labels) != len(certificates):
            raise ValueError(f"labels must match certificates one to one; got {len(self.labels)} labels "
                             f"for {len(certificates)} certificates")
        exact = [c for c in certificates if c.tight]
        chosen = (exact or certificates)[0] if len(certificates) == 1 or exact else None
        theorems = "; ".join(dict.fromkeys(c.theorem for c in certificates if c.theorem))
        super().__init__(
            adversary=adversary, lam=lam, d=d, method="best of: " + "; ".join(self.labels),
            radius_unit=self._max_unit, source=certificates[0].source,
            formula=chosen.formula if chosen else None,
            formula_rho_max=chosen.formula_rho_max if chosen else None,
            Phi=chosen.Phi if chosen else None, Phi_formula=chosen.Phi_formula if chosen else None,
            tight=chosen.tight if chosen else False, theorem=chosen.theorem if chosen else theorems,
            gamma_law=chosen.gamma_law if chosen else "")

    def _all_radii(self, rho: np.ndarray) -> np.ndarray:
        return np.stack([c.radius(rho) for c in self.certificates])

    def _max_unit(self, rho: np.ndarray) -> np.ndarray:
        return self._all_radii(rho).max(axis=0) / self.lam

    def _scaled_radius(self, rho: np.ndarray) -> np.ndarray:
        """The maximum of the certificates' radii, as they are (each already sound and scaled)."""
        return self._all_radii(rho).max(axis=0)

    def verified_radius(self, rho, dps: int = 40) -> np.ndarray:
        """The maximum of the certificates' verified radii (a maximum of lower bounds is one)."""
        return np.max([c.verified_radius(rho, dps) for c in self.certificates], axis=0)

    @property
    def verified_method(self) -> str:
        return "maximum of: " + "; ".join(c.verified_method for c in self.certificates)

    def winner(self, rho) -> np.ndarray:
        """For each rho, the label of the certificate that gives the largest radius (the first one on
        ties), or None where every radius is 0 (rho <= 1/2: abstain)."""
        arr = as_rho_array(rho)
        radii = self._all_radii(arr).reshape(len(self.certificates), -1)
        idx = radii.argmax(axis=0)
        names = [self.labels[i] if radii[i, n] > 0 else None for n, i in enumerate(idx)]
        return np.asarray(names, dtype=object).reshape(arr.shape)


def best_certificate(q: Distribution, adversary: str) -> BestCertificate:
    """The pointwise-best certificate for q against ``adversary`` (see the module docstring).

    ``best_certificate(q, adversary).winner(rho)`` says which certificate gives each radius.
    """
    adversary = check_adversary(adversary)
    found = labelled_certificates(q, adversary)
    return BestCertificate([c for _, c in found], adversary, q.lam, q.d, labels=[lab for lab, _ in found])


def certified_radius(q: Distribution, rho, adversary: str):
    """The largest sound radius the library knows for q against ``adversary`` ("l1", "l2", "linf").

    ``rho`` is (a lower bound on) the top-class probability: numpy or a number in -> numpy float64
    out; a torch tensor in -> a tensor on its device and in its floating dtype (rounded toward zero).
    Radii include the scale lam and are 0 for rho <= 1/2.
    """
    if not isinstance(q, Distribution):
        raise TypeError(f"q must be a wulff distribution; got {type(q).__name__}")
    as_rho_array(rho.detach().cpu().double().numpy() if isinstance(rho, torch.Tensor) else rho)  # fail fast
    return best_certificate(q, adversary).radius(rho)

