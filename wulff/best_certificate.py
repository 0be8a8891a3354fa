"""The best sound certificate the library can build for a distribution and an adversary.

Every certificate provider (the differential method, the level set method, the uniform-noise
theorems) is asked for a certificate against every adversary; each is read against the requested
adversary through the norm inequalities (:meth:`Certificate.converted`), and the result is their
pointwise maximum: a maximum of sound lower bounds is a sound lower bound.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np
import torch

from .certificate import ADVERSARIES, Certificate, as_rho_array, check_adversary
from .distributions import Distribution, register_certificate_selector

#: providers "module:function", each (q, adversary) -> Certificate, raising NotImplementedError for a
#: pair it does not handle. Modules not yet present are skipped.
PROVIDERS = ("wulff.diffmethod:derive", "wulff.levelset:derive", "wulff.levelset:derive_uniform")
#: how :meth:`BestCertificate.winner` names each provider
PROVIDER_NAMES = {"wulff.diffmethod:derive": "differential method",
                  "wulff.levelset:derive": "level set method",
                  "wulff.levelset:derive_uniform": "uniform noise"}


def _providers() -> list[tuple[str, Callable]]:
    found = []
    for spec in PROVIDERS:
        module, name = spec.split(":")
        try:
            fn = getattr(importlib.import_module(module), name, None)
        except ModuleNotFoundError as exc:  # a provider not written yet; a broken one still raises
            if exc.name != module:
                raise
            fn = None
        if fn is not None:
            found.append((PROVIDER_NAMES.get(spec, spec), fn))
    return found


def labelled_certificates(q: Distribution, adversary: str) -> list[tuple[str, Certificate]]:
    """(label, certificate) for every certificate for q against ``adversary``, direct or through a
    norm conversion; the label names the provider and the method ("level set method: ...").

    When a provider returns an exact (``tight``) certificate against ``adversary`` itself, only the
    exact ones are returned: every sound radius lies below an exact one.
    """
    target = check_adversary(adversary)
    providers = _providers()
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
        super().__init__(adversary=adversary, lam=lam, d=d, method="best of: " + "; ".join(self.labels),
                         radius_unit=self._max_unit, tight=False, source=certificates[0].source)
        exact = [c for c in certificates if c.tight]
        if len(certificates) == 1 or exact:
            chosen = (exact or certificates)[0]
            self.formula, self.Phi, self.tight = chosen.formula, chosen.Phi, chosen.tight

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
    """The largest sound radius the library knows (numpy in -> numpy out; tensor in -> tensor out)."""
    as_rho_array(rho.detach().cpu().double().numpy() if isinstance(rho, torch.Tensor) else rho)  # fail fast
    return best_certificate(q, adversary).radius(rho)


register_certificate_selector(certified_radius)
_providers()  # import the providers now, so that ``import wulff`` makes wulff.levelset etc. available
