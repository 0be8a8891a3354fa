"""The differential method (Appendix G): the law of gamma_u = <u, grad psi(delta)>, Phi(p) and the
certified radius R(rho) = lam * integral_{1-rho}^{1/2} dp / Phi(p), derived automatically from the
structure of a declared density.

* :func:`derive` (q, adversary) -> :class:`wulff.certificate.Certificate`
* :func:`derive_symbolic` (profile, structure, adversary) -> closed forms with symbolic parameters
"""
from .closed_forms import ClosedForm, p, rho
from .derive import cache_key, derive, derive_symbolic
from .envelope import Envelope
from .laws import GammaLaw
from .structure import gamma_law

__all__ = ["derive", "derive_symbolic", "cache_key", "gamma_law", "GammaLaw", "Envelope", "ClosedForm", "rho", "p"]
