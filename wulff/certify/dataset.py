"""Certify every k-th input of a dataset (Cohen et al., 2019, Section 4), writing one row per input
as it comes, resumable, and shardable across processes or GPUs.

Each input i gets its own noise stream seeded by (seed, i), so the numbers do not depend on how the
inputs are split into shards or on where an interrupted run resumed.

The result file's header records the model by a SHA-256 of its weights (``model_sha256``) next to
the noise (distribution, params, d, lam): a rerun resumes only for the same weights and noise, under
whatever path the checkpoint is found, and shards certified on different machines merge. How the
model was trained (architecture, training data, objective and its parameters: :func:`model_identity`)
is recorded under ``model_identity`` when ``meta`` carries it (:func:`evaluation_meta`, as ``wulff
certify`` and ``wulff attack`` pass it), so ``wulff report`` keeps distinct models apart; a file
written before that key existed resumes without it (:func:`resumable_settings`).

With ``adaptive=True`` each input is certified by :meth:`Smoothed.certify_adaptive` with the same
budget n_max = n0 + n (it chooses its own selection size and stops early when the answer is
decided); the header then records ``"adaptive": true`` and ``radii``, so a file is never resumed
with other adaptive settings. Every row records the noisy samples it used (column ``samples``).

``two_class`` (:mod:`wulff.certify.two_class`) is off by default without ``adaptive`` (CERTIFY then
matches Cohen et al.'s input for input) and on with it (wulff's own procedure). A sampling run
records the choice in the header (``"two_class": true`` or ``false``); a two-class run's rows add p_B's
bound, the form of each radius and the p_A form's radius
(:func:`~wulff.certify.results.two_class_columns`). A file written before the key existed holds
p_A-form rows: it resumes in its own layout with the p_A form, unless ``two_class=True`` is asked for
(then it is refused, as for any other setting).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from wulff.distributions.base import check_integer
from wulff.progress import tqdm

from .adaptive import check_radii
from .classifier import SmoothedClassifier, check_adversaries
from .results import MAGIC, Results, ResultWriter, columns_for, read_results, two_class_columns


def shard_indices(dataset_size: int, skip: int, shard: int, num_shards: int) -> range:
    """The inputs shard ``shard`` of ``num_shards`` certifies: every skip-th one, dealt round-robin."""
    if skip < 1:
        raise ValueError(f"skip must be a positive integer; got {skip}")
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise ValueError(f"need 0 <= shard < num_shards; got shard = {shard}, num_shards = {num_shards}")
    return range(shard * skip, dataset_size, skip * num_shards)


def model_fingerprint(model) -> str:
    """SHA-256 (hex) of a model's state: every parameter and buffer, by name, dtype, shape and value
    (in logical element order, so memory format and device do not matter). Models that are not
    ``torch.nn.Module`` (a plain function) hash to the digest of their qualified name."""
    digest = hashlib.sha256()
    if not isinstance(model, torch.nn.Module):
        name = getattr(model, "__qualname__", type(model).__qualname__)
        digest.update(f"{type(model).__module__}.{name}".encode())
        return digest.hexdigest()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


#: the header key of the model's identity (:func:`model_identity`); files written before it lack it
IDENTITY_KEY = "model_identity"


def model_identity(checkpoint_meta: Mapping, noise=None) -> dict:
    """How a model came to be, beyond its noise and weights (``model_sha256``): its ``architecture``,
    the data set it was trained on (``training_data``) and the training ``objective`` with its
    parameters, read from the meta of a checkpoint written by :func:`wulff.train.train_smoothed`
    (which records an objective only when it is not noise augmentation). A model from elsewhere
    (:func:`wulff.certify.loading.read_model`) adds its file ``format``; ``noise`` (a noise that is not
    the checkpoint's own: an override, or the command line's noise for a file that records none) adds
    ``noise``, its name, parameters and sigma. Plain data for a result file's header, where ``wulff
    report`` tells models apart by it."""
    objective = checkpoint_meta.get("objective") or {"name": "noise", "params": {}}
    identity = {"architecture": checkpoint_meta.get("model"), "training_data": checkpoint_meta.get("dataset"),
                "objective": {"name": objective.get("name"), "params": dict(objective.get("params") or {})}}
    if checkpoint_meta.get("format") not in (None, "wulff"):
        identity["format"] = checkpoint_meta["format"]
    if noise is not None:
        identity["noise"] = {"name": noise.name, "params": dict(noise.params), "sigma": _sigma_of(noise)}
    return identity


def _sigma_of(noise) -> float:
    """sigma of a noise as a float (inf where the family has no second moment)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(noise.sigma)


def evaluation_meta(checkpoint_meta: Mapping, split: str, noise=None) -> dict:
    """The header settings of a certify or attack file of the checkpoint whose meta is
    ``checkpoint_meta``, evaluated on ``split``: sigma, architecture, data set and the model's
    identity (:func:`model_identity`). ``noise`` is the noise it is evaluated with: where it is not the
    one the checkpoint records (an override, or a model from elsewhere, which records none), the header's
    sigma is that noise's and the identity records it."""
    other = noise is not None and not _same_noise(noise, checkpoint_meta.get("distribution"))
    sigma = _sigma_of(noise) if other else checkpoint_meta.get("sigma")
    return {"sigma": sigma, "model": checkpoint_meta.get("model"),
            "dataset": checkpoint_meta.get("dataset"), "split": split,
            IDENTITY_KEY: model_identity(checkpoint_meta, noise if other else None)}


def _same_noise(noise, spec) -> bool:
    """``noise`` is the one the distribution spec ``spec`` (a checkpoint's) describes."""
    from wulff.train.spec import distribution_spec

    try:
        return isinstance(spec, Mapping) and json.loads(json.dumps(distribution_spec(noise))) == \
            json.loads(json.dumps(spec))
    except (TypeError, ValueError):
        return False


def resumable_settings(out: str | os.PathLike, settings: dict, magic: str = MAGIC,
                       optional=(IDENTITY_KEY,)) -> dict:
    """``settings``, less those of its ``optional`` keys (default: the model's identity) that ``out``'s
    header lacks, when ``out`` is a file written before those keys were recorded whose header otherwise
    holds exactly these settings: such a file resumes as it was."""
    path = Path(out)
    if not any(key in settings for key in optional) or not path.is_file():
        return settings
    with open(path, "rb") as fh:
        first = fh.readline().decode("utf-8", errors="replace")
    try:
        old = json.loads(first[len(magic):]) if first.startswith(magic) else None
    except json.JSONDecodeError:
        return settings
    if not isinstance(old, dict):
        return settings
    legacy = {k: v for k, v in settings.items() if k in old or k not in optional}
    return legacy if old == json.loads(json.dumps(legacy)) else settings


def input_generator(device: torch.device, seed: int, index: int) -> torch.Generator:
    """The noise stream of input ``index``: independent of sharding and resumption."""
    return torch.Generator(device=device).manual_seed((int(seed) * 1_000_003 + int(index)) % (2 ** 63))


def certify_dataset(smoothed: SmoothedClassifier, dataset: Sequence, out: str | os.PathLike, *,
                    n0: int | None = None, n: int | None = None, alpha: float | None = None, batch_size: int,
                    adversaries=("l1", "l2", "linf"), skip: int = 1,
                    shard: int = 0, num_shards: int = 1, seed: int = 0, meta: dict | None = None,
                    progress: bool = True, max_inputs: int | None = None, adaptive: bool = False,
                    radii=None, two_class: bool | None = None) -> Results:
    """Certify inputs 0, skip, 2 skip, ... of ``dataset`` (items ``(x, label)``) into the file ``out``.

    Rows already present in ``out`` are kept and skipped (resume); each new row is on disk before
    the next input starts. ``shard``/``num_shards`` select this process's part of the inputs;
    ``meta`` adds descriptive settings (e.g. the distribution and sigma) to the file's header, which
    also records ``model_sha256`` (:func:`model_fingerprint`), so a file is only resumed by the same
    model. ``max_inputs`` (>= 1) stops after that many new rows. Returns the file's rows.

    ``adaptive=True`` certifies each input with :meth:`Smoothed.certify_adaptive` at
    n_max = n0 + n (the budget of ``certify``), with the grid ``radii`` (increasing, >= 0, against
    the first adversary; None: stop at 1 % radius gain); ``radii`` needs ``adaptive``. The column
    ``samples`` records the noisy samples each input used (n0 + n without ``adaptive``).

    ``two_class`` (None: on with ``adaptive``, off without, so that ``certify`` is Cohen et al.'s
    CERTIFY input for input) lets the runner-up's probability be bounded too (module docstring); the
    header records it, and a two-class run's rows add p_B's bound, the form of each radius and the p_A
    form's radius of the same bounds.

    A :class:`~wulff.certify.derandomized.DerandomizedSmoothed` (DSSN) is certified exactly from its
    N = 2 lam Q offsets: ``n0``, ``n`` and ``alpha`` do not apply (omit them; given, they are ignored),
    ``adaptive`` and ``two_class`` must stay unset, and the header records ``deterministic: true``,
    n0 = 0, n = N and alpha = 0 (a certificate without failure probability); its rows add a ``closed``
    column (1 where the closed ball of the radius is certified:
    :func:`~wulff.certify.derandomized.closed_ball_certified`).
    """
    n0, n, alpha, batch_size = smoothed.check_sampling(n0, n, alpha, batch_size, adaptive)
    if not isinstance(adaptive, bool):
        raise TypeError(f"adaptive must be True or False; got {adaptive!r}")
    radii = check_radii(radii)
    if radii is not None and not adaptive:
        raise ValueError("radii is a setting of adaptive certification: pass adaptive=True too")
    if radii is not None and radii[0] < 0:
        raise ValueError(f"radii must be >= 0; got {list(radii)}")
    if two_class is not None and not isinstance(two_class, bool):
        raise TypeError(f"two_class must be True, False or None (on with adaptive, off without); "
                        f"got {two_class!r}")
    if two_class is not None and smoothed.deterministic:
        raise ValueError("two_class is a setting of Monte Carlo certification; a deterministic classifier (DSSN) "
                         "is certified exactly from its votes: leave two_class unset")
    if max_inputs is not None:
        max_inputs = check_integer("max_inputs", max_inputs, minimum=1)
    adversaries = check_adversaries(adversaries)
    indices = shard_indices(len(dataset), skip, shard, num_shards)
    q = smoothed.q
    settings = dict(meta or {})
    settings.update(
        distribution=settings.get("distribution", q.name), params=settings.get("params", q.params),
        model_sha256=model_fingerprint(smoothed.model), d=q.d, lam=q.lam, n0=n0, n=n,
        alpha=alpha, adversaries=list(adversaries), skip=skip, seed=seed,
        dataset_size=len(dataset), indices_total=len(range(0, len(dataset), skip)),
        shard=shard, num_shards=num_shards)
    if smoothed.deterministic:  # absent for Monte Carlo runs, so their older files still resume
        settings.update(deterministic=True)
    else:
        settings.update(two_class=adaptive if two_class is None else two_class)
    if adaptive:  # absent for certify, so files written before adaptive existed still resume
        settings.update(adaptive=True, radii=None if radii is None else list(radii))
    if "sigma" not in settings:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            settings["sigma"] = q.sigma
    # a file written before two_class was recorded holds p_A-form rows: it resumes so, unless two_class=True
    legacy_keys = (IDENTITY_KEY,) if two_class is True else (IDENTITY_KEY, "two_class")
    settings = resumable_settings(out, settings, optional=legacy_keys)
    options = {} if smoothed.deterministic else {"two_class": settings.get("two_class", False)}
    columns = smoothed.result_columns(adversaries, out)  # DSSN: + the closed-ball flag
    if options.get("two_class"):
        columns = (columns or columns_for(adversaries)) + two_class_columns(adversaries)
    with ResultWriter(out, settings, adversaries, columns=columns) as writer:
        todo = [i for i in indices if i not in writer.done]
        already = len(indices) - len(todo)
        if max_inputs is not None:
            todo = todo[:max_inputs]
        bar = tqdm(total=len(indices), initial=already,
                   desc=f"certify {Path(out).parent.name}/{Path(out).name}", unit="input",
                   disable=not progress, leave=False)
        try:
            for index in todo:
                x, label = dataset[index]
                start = time.perf_counter()
                generator = input_generator(smoothed.device, seed, index)
                result, samples = smoothed.certify_input(x, n0, n, alpha, batch_size, adversaries,
                                                         adaptive=adaptive, radii=radii, generator=generator,
                                                         **options)
                seconds = time.perf_counter() - start
                label = int(label)
                writer.write({"index": index, "label": label, "prediction": result.prediction,
                              "rho_lower": result.rho_lower, "correct": int(result.prediction == label),
                              "seconds": seconds, "samples": samples,
                              **{f"radius_{a}": r for a, r in result.radius.items()},
                              **smoothed.row_extras(result)})
                bar.update(1)
        finally:
            bar.close()
    return read_results(out)
