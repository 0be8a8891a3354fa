"""The best sound certificate the library can build for a distribution and an adversary.

Every certificate provider (the differential method, the level set method, the uniform-noise
theorems) is asked for a certificate against every adversary; each is read against the requested
adversary through the norm inequalities (:meth:`Certificate.converted`), and the result is their
pointwise maximum: a maximum of sound lower bounds is a sound lower bound.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import torch

from wulff.distributions import Distribution

from .certificate import ADVERSARIES, CHOICE_GRID, MERGE_GAP, Certificate, Maximum, as_rho_array, check_adversary  # noqa: F401
from .diffmethod import derive as differential_method
from .levelset import derive as level_set_method
from .uniform import derive_uniform as uniform_noise

#: every certificate engine, (name, (q, adversary) -> Certificate raising NotImplementedError for a
#: pair it does not handle); the name labels :meth:`BestCertificate.winner`
PROVIDERS: tuple[tuple[str, Callable[[Distribution, str], Certificate]], ...] = (
    ("differential method", differential_method),
    ("level set method", level_set_method),
    ("uniform noise", uniform_noise),
)

#: the engines wulff builds in (:func:`register_engine` adds others after them)
BUILTIN_ENGINES: tuple[str, ...] = tuple(name for name, _ in PROVIDERS)


def engine_names() -> tuple[str, ...]:
    """The name of every engine the selector asks, built-in ones first."""
    return tuple(name for name, _ in PROVIDERS)


def register_engine(name: str, engine: Callable[[Distribution, str], Certificate]) -> None:
    """Add a certificate engine: ``engine(q, adversary)`` returns a sound :class:`Certificate` for q
    against ``adversary`` or raises NotImplementedError for a pair it does not handle; ``name`` labels
    its certificates (:meth:`BestCertificate.winner`). The best certificates built so far are
    forgotten, so every later radius considers it (docs/extending.md). A name already registered is
    a ValueError, an engine that is not callable a TypeError."""
    global PROVIDERS
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"an engine's name must be non-empty text (it labels its certificates); got {name!r}")
    if not callable(engine):
        raise TypeError(f"engine must be a function (q, adversary) -> Certificate; got {type(engine).__name__}")
    if name in engine_names():
        raise ValueError(f"an engine named {name!r} is already registered; choose another name")
    PROVIDERS = (*PROVIDERS, (name, engine))
    _forget_best_certificates()


def unregister_engine(name: str) -> None:
    """Remove an engine added by :func:`register_engine` and forget the best certificates built with
    it (a built-in engine, or a name not registered, is a ValueError)."""
    global PROVIDERS
    if name in BUILTIN_ENGINES:
        raise ValueError(f"{name} is a built-in engine and cannot be removed")
    if name not in engine_names():
        raise ValueError(f"no engine named {name!r} is registered; registered: {', '.join(engine_names())}")
    PROVIDERS = tuple(provider for provider in PROVIDERS if provider[0] != name)
    _forget_best_certificates()


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

    Its kernel is :class:`~wulff.radius.certificate.Maximum`, which chooses once which candidates can
    win in each cell of :data:`CHOICE_GRID` and evaluates each rho by its cell's candidates only.
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
            radius_unit=Maximum(certificates), source=certificates[0].source,
            formula=chosen.formula if chosen else None,
            formula_rho_max=chosen.formula_rho_max if chosen else None,
            Phi=chosen.Phi if chosen else None, Phi_formula=chosen.Phi_formula if chosen else None,
            tight=chosen.tight if chosen else False, theorem=chosen.theorem if chosen else theorems,
            gamma_law=chosen.gamma_law if chosen else "")

    @property
    def _members(self) -> np.ndarray:
        return self.kernel.members

    @property
    def _intervals(self) -> list:
        return self.kernel.intervals

    def radius(self, rho):
        """As :meth:`Certificate.radius`; a single candidate answers directly (its own guards)."""
        if len(self.certificates) == 1:
            return self.certificates[0].radius(rho)
        return super().radius(rho)

    def _all_radii(self, rho: np.ndarray) -> np.ndarray:
        return np.stack([c.radius(rho) for c in self.certificates])

    def _slope_inside(self, rho: np.ndarray) -> np.ndarray:
        """The slope of the candidate that gives each radius (the first one on ties): at a crossover,
        the one-sided slope of the winner there."""
        if len(self.certificates) == 1:
            return self.certificates[0]._slope_inside(rho)
        index = self._all_radii(rho).argmax(axis=0)
        out = np.zeros(rho.shape, dtype=np.float64)
        for i, certificate in enumerate(self.certificates):
            mask = index == i
            if mask.any():
                out[mask] = certificate._slope_inside(rho[mask])
        return out

    def _slope_torch(self, x: torch.Tensor) -> torch.Tensor | None:
        """The slope of the candidate giving each radius (the first on ties), on x's device; None
        when a candidate has no torch slope."""
        if len(self.certificates) == 1:
            return self.certificates[0]._slope_torch(x)
        slopes = [c._slope_torch(x) for c in self.certificates]
        if any(s is None for s in slopes):
            return None
        winner = torch.stack([c._guarded_radius(x) for c in self.certificates]).argmax(dim=0)
        return torch.stack(slopes).gather(0, winner.unsqueeze(0)).squeeze(0)

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


#: best certificates kept by :func:`best_certificate` (least recently used dropped first)
MEMO_SIZE = 128
_memo: OrderedDict[tuple, BestCertificate] = OrderedDict()
_memo_lock = threading.Lock()


def _forget_best_certificates() -> None:
    with _memo_lock:
        _memo.clear()


def _memo_key(q: Distribution, adversary: str) -> tuple | None:
    """The value of q (its class, name and structure key, scale included) and the adversary; None for
    a distribution without a structure key (never memoized)."""
    try:
        return (type(q).__module__, type(q).__qualname__, q.name, q.structure_key(), adversary)
    except NotImplementedError:
        return None


def _remembered(key: tuple | None) -> BestCertificate | None:
    if key is None:
        return None
    with _memo_lock:
        found = _memo.get(key)
        if found is not None:
            _memo.move_to_end(key)
        return found


def best_certificate(q: Distribution, adversary: str) -> BestCertificate:
    """The pointwise-best certificate for q against ``adversary`` (see the module docstring).

    ``best_certificate(q, adversary).winner(rho)`` says which certificate gives each radius.
    Distributions are values: the certificate is built once per (distribution, adversary) and kept
    (the last :data:`MEMO_SIZE` pairs), keyed by the distribution's value, not its identity.

    Uniform noise on the cube against l1 is certified by Theorem N.3, R = 2 lam (rho - 1/2):

    >>> from wulff import distributions as D
    >>> best = best_certificate(D.UniformCube(8, lam=1.0), "l1")
    >>> best.winner([0.4, 0.75]).tolist(), float(best.radius(0.75))
    ([None, 'uniform noise: closed form (Theorem N.3)'], 0.5)
    >>> gaussian = best_certificate(D.Gaussian(8, sigma=0.5), "l2")   # Cohen et al.'s radius, exact
    >>> gaussian.tight, gaussian.formula
    (True, 0.5*NormalQuantile(rho))
    """
    adversary = check_adversary(adversary)
    key = _memo_key(q, adversary)
    known = _remembered(key)
    if known is not None:
        return known
    found = labelled_certificates(q, adversary)
    best = BestCertificate([c for _, c in found], adversary, q.lam, q.d, labels=[lab for lab, _ in found])
    if key is not None:
        with _memo_lock:
            _memo[key] = best
            while len(_memo) > MEMO_SIZE:
                _memo.popitem(last=False)
    return best


def certified_radius(q: Distribution, rho, adversary: str):
    """The largest sound radius the library knows for q against ``adversary`` ("l1", "l2", "linf").

    ``rho`` is (a lower bound on) the top-class probability: numpy or a number in -> numpy float64
    out; a torch tensor in -> a tensor on its device and in its floating dtype (rounded toward zero).
    Radii include the scale lam and are 0 for rho <= 1/2. A tensor that requires grad gives a
    tensor whose gradient is dR/drho (:meth:`~wulff.certificate.Certificate.slope`: 0 below 1/2, the
    winning certificate's slope at a crossover), so the radius can be maximised by training.
    The best certificate is built on the first call for (q, adversary) and kept.

    Laplace noise against l1 has R = lam log(1 / (2 (1 - rho))), and 0 (abstain) for rho <= 1/2:

    >>> import numpy as np
    >>> import torch
    >>> from wulff import distributions as D
    >>> [round(float(v), 6) for v in certified_radius(D.Laplace(8, lam=1.0), np.array([0.4, 0.6, 0.99]), "l1")]
    [0.0, 0.223144, 3.912023]

    Gaussian noise against l2 has sigma Phi^-1(rho) (Cohen et al.), with slope sigma / phi(Phi^-1(rho)):

    >>> rho = torch.tensor([0.9], dtype=torch.float64, requires_grad=True)
    >>> radius = certified_radius(D.Gaussian(8, sigma=0.5), rho, "l2")
    >>> radius.sum().backward()
    >>> round(radius.item(), 6), round(rho.grad.item(), 6)
    (0.640776, 2.84903)
    """
    if not isinstance(q, Distribution):
        raise TypeError(f"q must be a wulff distribution; got {type(q).__name__}")
    known = _remembered(_memo_key(q, check_adversary(adversary)))
    if known is not None:
        return known.radius(rho)
    as_rho_array(rho.detach().cpu().double().numpy() if isinstance(rho, torch.Tensor) else rho)  # fail fast
    return best_certificate(q, adversary).radius(rho)

