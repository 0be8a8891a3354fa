"""The differential method (Appendix G): the law of gamma_u = <u, grad psi(delta)>, Phi(p) and the
certified radius R(rho) = lam * integral_{1-rho}^{1/2} dp / Phi(p), derived automatically from the
structure of a declared density (never from its family name).

* :func:`derive` (q, adversary) -> :class:`wulff.certificate.Certificate` with ``radius(rho)`` (sound,
  vectorized, numpy or torch), ``formula`` (sympy in ``Symbol("rho")`` or None), ``method``
  ("closed-form", "quadrature", "exact (discrete law)", "convex-order bound ...", or "closed-form for
  rho <= ..., quadrature beyond"), ``Phi`` (numpy), ``Phi_formula``, ``latex()``, ``tight``,
  ``formula_rho_max``, ``theorem`` and ``gamma_law`` (a description of gamma_u).
* :func:`derive_symbolic` (profile, structure, adversary) -> :class:`ClosedForm` with d, lam and the
  profile's parameters left as symbols, e.g. ``derive_symbolic(r**k + j*log(r), "inf", "l1")``.

Modules: :mod:`.structure` (the law of gamma_u per structure and adversary), :mod:`.laws` and
:mod:`.magnitude` (gamma_u = S * |h(R)| and its stop-loss transform), :mod:`.envelope` (the sound
piecewise-linear upper bound on Phi and the exact integral), :mod:`.closed_forms` (Lemma G.7 rules),
:mod:`.derive` (assembly and caching).
"""
from .closed_forms import ClosedForm, p, rho
from .derive import cache_key, derive, derive_symbolic
from .envelope import Envelope
from .laws import GammaLaw
from .structure import gamma_law

__all__ = ["derive", "derive_symbolic", "cache_key", "gamma_law", "GammaLaw", "Envelope", "ClosedForm", "rho", "p"]
