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


#: where a best certificate compares its candidates once (:class:`BestCertificate`): fine in the bulk,
#: geometric towards rho = 1/2 and rho = 1
CHOICE_GRID = np.unique(np.concatenate([
    np.linspace(0.5, 1.0, 2049)[1:-1], 0.5 + np.geomspace(1e-15, 0.25, 400),
    1.0 - np.geomspace(1e-16, 0.25, 800)]))


#: runs of a candidate's cells closer than this in rho are evaluated as one interval (a few more
#: values evaluated instead of one more mask over the batch)
MERGE_GAP = 0.05


def _runs(member: np.ndarray) -> list[tuple[float, float]]:
    """The cells a candidate is evaluated in (:meth:`BestCertificate._choose`), merged into rho
    intervals [a, b): cell 0 is (-inf, g_0), cell k is [g_{k-1}, g_k), the last [g_last, inf).
    Intervals less than :data:`MERGE_GAP` apart are joined (evaluating more is never wrong)."""
    edges = np.concatenate([[-np.inf], CHOICE_GRID, [np.inf]])
    padded = np.concatenate([[False], member, [False]])
    starts = np.flatnonzero(padded[1:] & ~padded[:-1])
    ends = np.flatnonzero(~padded[1:] & padded[:-1])  # one past the last member cell
    runs: list[tuple[float, float]] = []
    for a, b in ((float(edges[s]), float(edges[e])) for s, e in zip(starts, ends)):
        if runs and a - runs[-1][1] < MERGE_GAP:
            runs[-1] = (runs[-1][0], b)
        else:
            runs.append((a, b))
    return runs


def _inside(rho: np.ndarray, a: float, b: float) -> np.ndarray:
    """a <= rho < b, with one comparison where an end is infinite."""
    if a == -np.inf:
        return rho < b
    if b == np.inf:
        return rho >= a
    return (rho >= a) & (rho < b)


class BestCertificate(Certificate):
    """Pointwise maximum of several certificates; :meth:`winner` says which one gives each radius.

    A certificate marked tight is the exact robust radius, so every sound one lies below it: the
    maximum is then tight too and takes that certificate's formula.

    It chooses once: at construction every candidate is evaluated on :data:`CHOICE_GRID`, and each
    cell [g, g') between two grid points keeps the candidates that can win in it: as every radius is
    nondecreasing, candidate i can exceed the best radius somewhere in the cell only if
    R_i(g') >= max_j R_j(g). Away from crossovers that is one candidate; near one, both; the cells
    below the first and above the last grid point keep every candidate. A rho is then evaluated only
    by its cell's candidates, the largest taken: the pointwise maximum of all candidates, at the cost
    of (mostly) one.
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
        self._members = self._choose()
        self._intervals = [_runs(member) for member in self._members]

    def _choose(self) -> np.ndarray:
        """members[i, k]: candidate i is evaluated in cell k (cell 0: rho < CHOICE_GRID[0]; cell k:
        CHOICE_GRID[k-1] <= rho < CHOICE_GRID[k]; the last: rho >= CHOICE_GRID[-1])."""
        count, cells = len(self.certificates), CHOICE_GRID.size + 1
        if count == 1:
            return np.ones((1, cells), dtype=bool)
        radii = np.stack([c.radius(CHOICE_GRID) for c in self.certificates])
        members = np.ones((count, cells), dtype=bool)
        # inner cell k = [g_{k-1}, g_k): R_i(rho) <= R_i(g_k) and max_j R_j(rho) >= max_j R_j(g_{k-1})
        members[:, 1:-1] = radii[:, 1:] >= radii.max(axis=0)[None, :-1]
        return members

    def radius(self, rho):
        """As :meth:`Certificate.radius`; a single candidate answers directly (its own guards)."""
        if len(self.certificates) == 1:
            return self.certificates[0].radius(rho)
        return super().radius(rho)

    def _all_radii(self, rho: np.ndarray) -> np.ndarray:
        return np.stack([c.radius(rho) for c in self.certificates])

    def _max_unit(self, rho: np.ndarray) -> np.ndarray:
        return self._scaled_radius(rho) / self.lam

    def _scaled_radius(self, rho: np.ndarray, lo: float | None = None) -> np.ndarray:
        """The largest radius among each rho's cell candidates, as they are (each already sound and
        scaled, with its guards). A candidate whose rho intervals cover the batch's range is
        evaluated on all of it, one whose intervals miss the range not at all, any other on the
        rho inside its intervals only."""
        if len(self.certificates) == 1:
            return self.certificates[0]._guarded_radius(rho)
        if not rho.size:
            return np.zeros(rho.shape, dtype=np.float64)
        lo, hi = float(rho.min()) if lo is None else lo, float(rho.max())
        plans = []
        for certificate, intervals in zip(self.certificates, self._intervals):
            hits = [(a, b) for a, b in intervals if a <= hi and b > lo]
            if hits:
                covers = any(a <= lo and b > hi for a, b in hits)
                plans.append((not covers, certificate, hits))
        out = None
        for partial, certificate, hits in sorted(plans, key=lambda plan: plan[0]):  # whole batches first
            if not partial:
                values = certificate._guarded_radius(rho, lo)
                out = values if out is None else np.maximum(out, values, out=out)
                continue
            inside = _inside(rho, *hits[0])
            for a, b in hits[1:]:
                inside |= _inside(rho, a, b)
            where = np.flatnonzero(inside)
            if where.size:
                out = np.zeros(rho.shape, dtype=np.float64) if out is None else out
                flat = out.reshape(-1)
                flat[where] = np.maximum(flat[where], certificate._guarded_radius(rho.reshape(-1)[where]))
        return np.zeros(rho.shape, dtype=np.float64) if out is None else out

    def _torch_kernel_ready(self, rho: torch.Tensor) -> bool:
        return all(c._torch_kernel_ready(rho) for c in self.certificates)

    def _needs_output_checks(self, lo: float) -> bool:
        """Each candidate has checked its own radii (:meth:`_scaled_radius` takes them guarded); their
        maximum needs no second look."""
        return False

    def _guarded_radius_torch(self, x: torch.Tensor, bounds: tuple[float, float] | None = None) -> torch.Tensor:
        """The maximum of the candidates' radii on x's device (each with its own guards); a candidate
        whose rho intervals miss the batch's range is skipped."""
        if len(self.certificates) == 1 or not x.numel():
            return self.certificates[0]._guarded_radius_torch(x, bounds)
        lo, hi = bounds if bounds is not None else (float(v) for v in torch.aminmax(x))
        if lo != lo:  # NaN: the first candidate raises the error
            return self.certificates[0]._guarded_radius_torch(x)
        if lo <= 0.5 or not (lo >= 0.0 and hi <= 1.0):  # abstentions or bad input: each candidate checks
            out = None
            for certificate in self.certificates:
                values = certificate._guarded_radius_torch(x, (lo, hi))
                out = values if out is None else torch.maximum(out, values)
            return out
        out = None
        for certificate, intervals in zip(self.certificates, self._intervals):
            # a candidate that can win somewhere in [lo, hi] is evaluated on the whole batch: on a
            # device, elementwise work is cheap and gathering the rho of its intervals is not
            if any(a <= hi and b > lo for a, b in intervals):
                values = certificate._scaled_radius_torch(x, lo, hi)
                out = values if out is None else torch.maximum(out, values)  # NaN and inf propagate
        return self._checked_torch(torch.zeros_like(x) if out is None else out, x)

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
        winner = torch.stack([c._guarded_radius_torch(x) for c in self.certificates]).argmax(dim=0)
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
    """
    if not isinstance(q, Distribution):
        raise TypeError(f"q must be a wulff distribution; got {type(q).__name__}")
    known = _remembered(_memo_key(q, check_adversary(adversary)))
    if known is not None:
        return known.radius(rho)
    as_rho_array(rho.detach().cpu().double().numpy() if isinstance(rho, torch.Tensor) else rho)  # fail fast
    return best_certificate(q, adversary).radius(rho)

