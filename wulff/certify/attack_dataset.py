"""Attack every k-th input of a dataset at several eps (:meth:`Smoothed.attack`) into a resumable
result file, like :func:`certify_dataset`, and compare attacks with certificates.

Layout (one row per input and eps, flushed and fsync'ed as it comes)::

    # wulff-attack {"adversary": "l2", "steps": 20, ...}
    index  label  eps  prediction  prediction_attacked  robust  seconds

``prediction`` and ``prediction_attacked`` are the Monte Carlo smoothed classifier's answers
(:meth:`Smoothed.predict`: ``n`` votes, a two-sided test at level ``alpha``, -1 for ABSTAIN) at x and
at the attacked point; ``robust`` is 1 when both equal the label. A rerun skips the (index, eps)
pairs already written, and refuses a file written with other settings or another model.

:func:`soundness_alarms` confronts an attack file with a certification file of the same model: an
input certified correct at radius r whose attack at eps <= r made the smoothed classifier answer
another class contradicts the certificate. Only comparable files are confronted
(:func:`incomparable`): the same weights, noise, data and model identity, radii of the attack's own
norm, and inputs in common; :func:`checked_pairs` counts the (input, eps) attacks a certificate
covers, so a report can say what was compared, or that nothing was. With probability at least
1 - alpha a certificate is true and a prediction is right, so a few such inputs (about
alpha_certify + alpha_attack of them) may occur by chance; more mean a bug.
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from wulff.certificate import check_adversary
from wulff.distributions.base import check_integer
from wulff.progress import tqdm

from .dataset import IDENTITY_KEY, input_generator, model_fingerprint, resumable_settings, shard_indices
from .results import Results, ResultWriter, read_results, settings_difference
from .smoothed import ABSTAIN, Smoothed
from .stats import check_alpha

ATTACK_MAGIC = "# wulff-attack "
ATTACK_COLUMNS = ["index", "label", "eps", "prediction", "prediction_attacked", "robust", "seconds"]


class AttackWriter(ResultWriter):
    """A :class:`ResultWriter` for attack rows, keyed by (index, eps)."""

    magic = ATTACK_MAGIC

    def __init__(self, path: str | os.PathLike, meta: dict):
        super().__init__(path, meta, columns=ATTACK_COLUMNS)

    @staticmethod
    def row_key(row: dict):
        return int(row["index"]), float(row["eps"])


def is_attack_file(path: str | os.PathLike) -> bool:
    """Whether the file starts like an attack result file."""
    with open(path, "rb") as fh:
        return fh.read(len(ATTACK_MAGIC)) == ATTACK_MAGIC.encode()


def read_attacks(path: str | os.PathLike) -> Results:
    return read_results(path, magic=ATTACK_MAGIC)


#: the largest attack budget: far beyond the diameter of any data range in input units, yet small
#: enough that the attack's float32 steps and their squared norms stay finite
MAX_EPS = 1e12


def check_eps(eps) -> list[float]:
    """The distinct attack budgets, sorted; each must lie in [0, :data:`MAX_EPS`]."""
    values = [float(e) for e in (eps if isinstance(eps, (list, tuple)) else [eps])]
    if not values or any(not 0 <= e <= MAX_EPS for e in values):  # NaN fails the comparison
        raise ValueError(f"eps must be one or more numbers in [0, {MAX_EPS:g}] (input units); got "
                         f"{', '.join(f'{e:g}' for e in values) or 'none'}")
    return sorted(set(values))


def attack_generator(device, seed: int, index: int, eps: float) -> torch.Generator:
    """The noise stream of one (input, eps) attack: the same whatever was done before a resume."""
    return torch.Generator(device=device).manual_seed(hash((int(seed), int(index), float(eps))) % (2 ** 63))


def attack_dataset(smoothed: Smoothed, dataset: Sequence, out: str | os.PathLike, *, eps, adversary: str,
                   steps: int = 20, samples: int = 16, n: int = 1000, alpha: float = 0.001,
                   batch_size: int = 1000, skip: int = 1, seed: int = 0, clamp: tuple[float, float] | None = None,
                   meta: dict | None = None, progress: bool = True, max_inputs: int | None = None) -> Results:
    """Attack inputs 0, skip, 2 skip, ... of ``dataset`` at every ``eps`` and write one row per
    (input, eps) to ``out`` (resumable; see the module docstring). ``samples`` noise draws per PGD
    step, ``steps`` steps; the smoothed classifier's answers use ``n`` votes at level ``alpha``.
    ``max_inputs`` (>= 1) stops after that many inputs with new rows. Returns the file's rows."""
    adversary = check_adversary(adversary)
    eps = check_eps(eps)
    steps = check_integer("steps", steps, minimum=1)
    samples = check_integer("samples", samples, minimum=1)
    n = check_integer("n", n, minimum=1)
    alpha = check_alpha(alpha)
    batch_size = check_integer("batch_size", batch_size, minimum=1)
    if max_inputs is not None:
        max_inputs = check_integer("max_inputs", max_inputs, minimum=1)
    q = smoothed.q
    settings = dict(meta or {})
    settings.update(distribution=settings.get("distribution", q.name), params=settings.get("params", q.params),
                    model_sha256=model_fingerprint(smoothed.model), d=q.d, lam=q.lam, adversary=adversary,
                    steps=steps, samples=samples, n=n, alpha=alpha, skip=skip, seed=seed,
                    clamp=None if clamp is None else list(clamp), dataset_size=len(dataset))
    settings = resumable_settings(out, settings, ATTACK_MAGIC)
    with AttackWriter(out, settings) as writer:
        todo = [i for i in shard_indices(len(dataset), skip, 0, 1)
                if any((i, e) not in writer.done for e in eps)]
        if max_inputs is not None:
            todo = todo[:max_inputs]
        bar = tqdm(total=len(todo), desc=f"attack {Path(out).name}", unit="input", disable=not progress,
                   leave=False)
        try:
            for index in todo:
                x, label = dataset[index]
                label = int(label)
                prediction = smoothed.predict(x, n, alpha, batch_size,
                                              generator=input_generator(smoothed.device, seed, index))
                for e in eps:
                    if (index, e) in writer.done:
                        continue
                    start = time.perf_counter()
                    generator = attack_generator(smoothed.device, seed, index, e)
                    attacked = smoothed.attack(x, label, e, adversary, steps=steps, samples=samples, clamp=clamp,
                                               generator=generator)
                    answer = smoothed.predict(attacked, n, alpha, batch_size, generator=generator)
                    writer.write({"index": index, "label": label, "eps": e, "prediction": prediction,
                                  "prediction_attacked": answer,
                                  "robust": int(prediction == label and answer == label),
                                  "seconds": time.perf_counter() - start})
                bar.update(1)
        finally:
            bar.close()
    return read_attacks(out)


def robust_accuracy(attacks: Results) -> dict[float, float]:
    """Empirical robust accuracy at each eps: the fraction of attacked inputs whose smoothed prediction
    stayed correct at x and at the attacked point."""
    eps = attacks.columns["eps"]
    robust = attacks.columns["robust"].astype(bool)
    return {float(e): float(robust[eps == e].mean()) for e in np.unique(eps)}


@dataclass(frozen=True)
class Alarm:
    """Inputs whose certificate an attack contradicted: certified correct at a radius r >= eps, yet the
    smoothed classifier answered another class at the point the attack found within eps."""

    eps: float
    indices: list[int]
    certified: int  #: inputs certified correct at radius >= eps among the attacked ones
    expected: float  #: (alpha_certify + alpha_attack) * certified: how many chance alone may explain

    def __str__(self) -> str:
        return (f"SOUNDNESS ALARM: at eps = {self.eps:g}, {len(self.indices)} of {self.certified} inputs "
                f"certified correct at radius >= eps were broken by the attack (indices "
                f"{self.indices[:10]}); chance "
                f"explains about {self.expected:.2g} at most")


#: what an attack file and a certification file must share to be compared: the same model (weights),
#: noise and data (the model's identity, :data:`~wulff.certify.dataset.IDENTITY_KEY`, too where both record it)
SAME_MODEL_KEYS = ("model_sha256", "distribution", "params", "d", "dataset", "split")


def incomparable(attacks: Results, run: Results) -> str | None:
    """Why the certificates of ``run`` cannot be held against the attacks of ``attacks`` (None when they
    can): another model, noise or data set, no radii of the attack's norm, or no input in common."""
    keys = SAME_MODEL_KEYS + ((IDENTITY_KEY,) if IDENTITY_KEY in attacks.meta and IDENTITY_KEY in run.meta else ())
    old = {k: run.meta.get(k) for k in keys}
    new = {k: attacks.meta.get(k) for k in keys}
    if old != new:
        return f"another model, noise or data ({settings_difference(old, new)})"
    adversary = attacks.meta.get("adversary")
    if adversary not in run.adversaries:
        return f"it has no {adversary} radii (only {', '.join(run.adversaries) or 'none'})"
    if not len(common_inputs(attacks, run)):
        return "no input in common with the attack"
    return None


def matches(attacks: Results, run: Results) -> bool:
    """Whether a certification run can be held against an attack file (:func:`incomparable`)."""
    return incomparable(attacks, run) is None


def common_inputs(attacks: Results, run: Results) -> np.ndarray:
    """The input indices both files hold."""
    return np.intersect1d(attacks.columns["index"], run.columns["index"])


def _covered_rows(attacks: Results, run: Results) -> dict[float, list[int]]:
    """Per eps > 0, the attack rows whose input ``run`` certified correct at radius r >= eps against the
    attack's adversary: the rows where the attack is checked against a certificate."""
    index = run.columns["index"].tolist()
    radius = dict(zip(index, run.radius(attacks.meta["adversary"]).tolist()))
    correct = dict(zip(index, run.correct.tolist()))
    cols = attacks.columns
    return {float(e): [i for i in np.flatnonzero(cols["eps"] == e)
                       if correct.get(int(cols["index"][i])) and radius[int(cols["index"][i])] >= e]
            for e in np.unique(cols["eps"]) if e > 0}


def checked_pairs(attacks: Results, run: Results) -> int:
    """How many (input, eps) attacks ``run`` certifies to fail: certified correct at radius >= eps > 0."""
    return sum(len(rows) for rows in _covered_rows(attacks, run).values())


def soundness_alarms(attacks: Results, run: Results) -> list[Alarm]:
    """One :class:`Alarm` per eps at which some input certified correct by ``run`` at radius r >= eps
    (against the attack's adversary) was moved by the attack to an answer that is another class (an
    ABSTAIN does not contradict a certificate). Empty when every certificate held."""
    alpha = float(attacks.meta.get("alpha", 0.0)) + float(run.meta.get("alpha", 0.0))
    cols = attacks.columns
    alarms = []
    for e, covered in _covered_rows(attacks, run).items():
        broken = [int(cols["index"][i]) for i in covered
                  if cols["prediction_attacked"][i] not in (cols["label"][i], ABSTAIN)]
        if broken:
            alarms.append(Alarm(e, broken, len(covered), alpha * len(covered)))
    return alarms
