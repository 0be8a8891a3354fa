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

from .certificate import ADVERSARIES, Certificate, as_rho_array, check_adversary
from .distributions import Distribution, register_certificate_selector

#: providers "module:function", each (q, adversary) -> Certificate, raising NotImplementedError for a
#: pair it does not handle. Modules not yet present are skipped.
PROVIDERS = ("wulff.diffmethod:derive", "wulff.levelset:derive", "wulff.levelset:derive_uniform")


def _providers() -> list[Callable]:
    found = []
    for spec in PROVIDERS:
        module, name = spec.split(":")
        try:
            fn = getattr(importlib.import_module(module), name, None)
        except ImportError:
            fn = None
        if fn is not None:
            found.append(fn)
    return found


def all_certificates(q: Distribution, adversary: str) -> list[Certificate]:
    """Every certificate for q against ``adversary``, direct or through a norm conversion."""
    target = check_adversary(adversary)
    certs = []
    for provider in _providers():
        for source in ADVERSARIES:
            try:
                cert = provider(q, source)
            except NotImplementedError:
                continue
            certs.append(cert.converted(target))
    return certs


class BestCertificate(Certificate):
    """Pointwise maximum of several certificates; :meth:`winner` says which one gives each radius."""

    def __init__(self, certificates: list[Certificate], adversary: str, lam: float, d: int):
        if not certificates:
            raise NotImplementedError(f"no certificate is known against {adversary} for this distribution")
        self.certificates = certificates
        super().__init__(adversary=adversary, lam=lam, d=d, method="best of: " + "; ".join(
            c.method for c in certificates), radius_unit=self._max_unit,
            tight=False, source=certificates[0].source)
        if len(certificates) == 1:
            only = certificates[0]
            self.formula, self.Phi, self.tight = only.formula, only.Phi, only.tight

    def _all_radii(self, rho: np.ndarray) -> np.ndarray:
        return np.stack([c.radius(rho) for c in self.certificates])

    def _max_unit(self, rho: np.ndarray) -> np.ndarray:
        return self._all_radii(rho).max(axis=0) / self.lam

    def winner(self, rho) -> np.ndarray:
        """For each rho, the method of the certificate that gives the largest radius."""
        arr = as_rho_array(rho)
        idx = self._all_radii(arr).argmax(axis=0)
        return np.asarray([self.certificates[i].method for i in np.ravel(idx)], dtype=object).reshape(arr.shape)


def best_certificate(q: Distribution, adversary: str) -> BestCertificate:
    """The pointwise-best certificate for q against ``adversary`` (see the module docstring)."""
    adversary = check_adversary(adversary)
    return BestCertificate(all_certificates(q, adversary), adversary, q.lam, q.d)


def certified_radius(q: Distribution, rho, adversary: str):
    """The largest sound radius the library knows (numpy in -> numpy out; tensor in -> tensor out)."""
    return best_certificate(q, adversary).radius(rho)


register_certificate_selector(certified_radius)
