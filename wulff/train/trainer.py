"""Noise-augmented training of a base classifier (Cohen et al., 2019; Appendix D):
minimize -log f(x + delta)_y with delta ~ q, by SGD with momentum 0.9, weight decay 1e-4 and a
cosine-annealed learning rate. A checkpoint is written after every epoch; a rerun resumes from it.
Under torchrun the model is wrapped in DistributedDataParallel and each process sees its own part of
every epoch (DistributedSampler) and its own noise stream.

Learning-rate schedule: epoch e (counted from 0) of a run with ``epochs = E`` uses
``lr * (1 + cos(pi * e / E)) / 2`` (:func:`cosine_lr`). It depends on e and E only, so resuming with
the same E reproduces an uninterrupted run exactly, and resuming with a larger E (extending a finished
run) continues on the cosine of length E from epoch e on: the learning rate steps up to that curve.

Other objectives than noise augmentation (stability, smoothadv, direct, consistency, macer) are in
:mod:`wulff.train.objectives`. Resuming requires the checkpoint's settings (model, dataset, noise, sigma,
objective and its parameters, and the optimizer settings of :data:`RESUME_KEYS`); anything else is
refused with a message naming what changed, so old weights are never continued under new settings.
A loss or weight that becomes NaN or infinite stops training
with an error naming the epoch; that epoch is never saved.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

from wulff.distributions import Distribution
from wulff.errors import NonFiniteError, UserError
from wulff.progress import tqdm
from wulff.splitting import SplittingNoise

from .checkpoint import plain, read_checkpoint
from .distributed import DistEnv, barrier, mean_over_processes
from .objectives import Objective, build_objective, noisy_inputs, noisy_loss  # noqa: F401 - public here

#: TrainConfig settings a resumed run must share with its checkpoint (the others set only speed or length)
RESUME_KEYS = ("batch_size", "lr", "momentum", "weight_decay", "seed")


@dataclass
class TrainConfig:
    """Hyper-parameters; the defaults are the paper's (Appendix D) except the number of epochs."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    seed: int = 0
    num_workers: int = 0
    autocast: str | None = None  # "bf16" or "fp16"
    channels_last: bool = False

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer; got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive; got {self.lr}")
        if self.autocast not in (None, "bf16", "fp16"):
            raise ValueError(f"autocast must be None, 'bf16' or 'fp16'; got {self.autocast!r}")


def autocast_dtype(name: str | None) -> torch.dtype | None:
    return {None: None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def noise_seed(seed: int, rank: int, epoch: int) -> int:
    """The noise stream of one process in one epoch, so a resumed run draws the same noise."""
    return (int(seed) * 1_000_003 + int(epoch) * 10_007 + int(rank)) % (2 ** 63)


def epoch_batches(dataset: Dataset, batch_size: int, epoch: int, config: TrainConfig, env: DistEnv):
    """This process's shuffled mini-batches of one epoch (tensors indexed directly when possible)."""
    sampler = DistributedSampler(dataset, num_replicas=env.world_size, rank=env.rank, shuffle=True,
                                 seed=config.seed)
    sampler.set_epoch(epoch)
    if isinstance(dataset, TensorDataset):
        order = torch.tensor(list(sampler), dtype=torch.long)
        for chunk in order.split(batch_size):
            yield tuple(t[chunk] for t in dataset.tensors)
    else:
        yield from DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=config.num_workers,
                              pin_memory=env.device.type == "cuda")


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write atomically: a crash mid-save leaves the previous checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def cosine_lr(config: TrainConfig, epoch: int) -> float:
    """The learning rate of epoch ``epoch`` (from 0): ``lr * (1 + cos(pi * epoch / epochs)) / 2``."""
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / config.epochs))


def _show(value) -> str:
    if isinstance(value, dict) and "name" in value:
        params = ", ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}"
                           for k, v in (value.get("params") or {}).items())
        return f"{value['name']}({params})"
    return repr(value)


def settings_changes(state: dict, meta: dict | None, config: TrainConfig) -> list[str]:
    """What differs between a checkpoint's settings and this run's, as "name: old -> new" items."""
    old_meta, new_meta = state.get("meta") or {}, plain(meta or {})
    old_config, new_config = state.get("config") or {}, asdict(config)
    changes = [f"{k}: {_show(old_meta.get(k))} -> {_show(new_meta.get(k))}"
               for k in sorted(set(old_meta) | set(new_meta)) if old_meta.get(k) != new_meta.get(k)]
    changes += [f"{k}: {old_config.get(k)!r} -> {new_config[k]!r}"
                for k in RESUME_KEYS if k in old_config and old_config[k] != new_config[k]]
    return changes


def _resume_state(checkpoint: Path, device: torch.device, meta: dict | None, config: TrainConfig) -> dict:
    state = read_checkpoint(checkpoint, device)
    for key in ("optimizer", "history"):
        if key not in state:
            raise UserError(f"{checkpoint} cannot be resumed (it lacks {key}); pass --no-resume to start over")
    changes = settings_changes(state, meta, config)
    if changes:
        raise UserError(f"{checkpoint} was trained with other settings ({'; '.join(changes)}); rerun with its "
                        "settings to resume it, or pass --no-resume (resume=False) to start over and replace it")
    return state


def _all_finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _diverged(epoch: int, loss: float, checkpoint, objective: Objective) -> NonFiniteError:
    """The error of a run whose loss (of any objective, including what it feeds to the certified radius)
    or weights became NaN or infinite in epoch ``epoch`` (from 0); that epoch is never saved."""
    kept = f"{checkpoint} still holds epoch {epoch}" if checkpoint is not None and epoch else "nothing was saved"
    what = "noisy training loss" if objective.name == "noise" else f"{objective.name} training loss"
    return NonFiniteError(f"training diverged in epoch {epoch + 1}: the {what} became {loss} (or a weight "
                          f"became NaN/inf); {kept}. Lower the learning rate (--lr), the noise level or the "
                          "objective's weights and retrain")


def train_smoothed(model: torch.nn.Module, q: Distribution | SplittingNoise, train_set: Dataset,
                   config: TrainConfig, *,
                   checkpoint: str | os.PathLike | None = None, resume: bool = True, meta: dict | None = None,
                   env: DistEnv | None = None, progress: bool = True, max_steps: int | None = None,
                   log=print, objective: Objective | None = None) -> list[dict]:
    """Train ``model`` in place on noisy copies of ``train_set``; returns the per-epoch history.

    With ``checkpoint``, the state (model, optimizer, noise stream, history, ``meta``, config) is
    saved there after each epoch, and an existing checkpoint is resumed from when ``resume`` (refused,
    with :class:`~wulff.errors.UserError` naming the change, if its meta or :data:`RESUME_KEYS`
    differ). ``max_steps`` stops after that many optimizer steps in total (for quick checks); an
    epoch cut short by it is not recorded in the history or the checkpoint. A non-finite loss or
    weight raises :class:`~wulff.errors.NonFiniteError` naming the epoch, which is not saved.

    ``objective`` (:func:`wulff.train.objectives.build_objective`; default noise augmentation) is the
    loss minimized; any other than ``noise`` is recorded in the checkpoint's meta, so a resume with
    another objective or other parameters is refused like one with other noise.

    A checkpoint that already holds more epochs than ``config.epochs`` is reused as it is (nothing is
    trained or cut back), said in one line through ``log``; the history returned then ends at its epoch.
    """
    env = env or DistEnv()
    objective = objective or build_objective("noise")
    if objective.name != "noise":
        meta = {**(meta or {}), "objective": objective.spec()}
    model.to(env.device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    generator = torch.Generator(device=env.device)
    history: list[dict] = []
    start_epoch = 0
    if checkpoint is not None and resume and Path(checkpoint).exists():
        state = _resume_state(Path(checkpoint), env.device, meta, config)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = list(state["history"])
        start_epoch = int(state["epoch"])
        if env.is_main and start_epoch < config.epochs:
            old = (state.get("config") or {}).get("epochs", config.epochs)
            longer = f"; the cosine schedule now spans {config.epochs} epochs (was {old})" \
                if old != config.epochs else ""
            log(f"resuming {checkpoint} after epoch {start_epoch}{longer}")
        if env.is_main and start_epoch > config.epochs:
            log(f"{checkpoint} already holds {start_epoch} epochs, more than the {config.epochs} asked: reused "
                f"as it is ({start_epoch} epochs; not cut back). Start over (--no-resume, resume=False) to train "
                f"{config.epochs} epochs")
    net = DistributedDataParallel(model, device_ids=[env.device] if env.device.type == "cuda" else None) \
        if env.distributed else model
    amp = autocast_dtype(config.autocast)
    steps = 0
    bar = tqdm(total=config.epochs, initial=start_epoch, desc=f"train {q.name}", unit="epoch",
               disable=not (progress and env.is_main), leave=False)
    try:
        for epoch in range(start_epoch, config.epochs):
            net.train()
            lr = cosine_lr(config, epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            generator.manual_seed(noise_seed(config.seed, env.rank, epoch))
            began, total, count, interrupted = time.perf_counter(), 0.0, 0, True
            for x, y in epoch_batches(train_set, config.batch_size, epoch, config, env):
                x = x.to(env.device, non_blocking=True)
                y = y.to(env.device, non_blocking=True)
                if config.channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                with (torch.autocast(env.device.type, dtype=amp) if amp else contextlib.nullcontext()):
                    loss = objective.loss(net, q, x, y, generator, epoch=epoch, epochs=config.epochs,
                                          attack_model=_unwrap(net))
                value = float(loss.detach())
                if not math.isfinite(value) and not env.distributed:  # stop before the step spoils the weights
                    raise _diverged(epoch, value, checkpoint, objective)  # (DDP: all ranks stop at epoch end)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += value * len(y)
                count += len(y)
                steps += 1
                if max_steps is not None and steps >= max_steps:
                    break
            else:
                interrupted = False
            if interrupted:  # stopped by max_steps inside the epoch: it is not recorded (a resume redoes it)
                break
            record = {"epoch": epoch + 1, "loss": mean_over_processes(total / max(count, 1), env), "lr": lr,
                      "seconds": time.perf_counter() - began}
            if not (math.isfinite(record["loss"]) and _all_finite(_unwrap(net))):
                raise _diverged(epoch, record["loss"], checkpoint, objective)
            history.append(record)
            if checkpoint is not None and env.is_main:
                save_checkpoint(checkpoint, {"model": _unwrap(net).state_dict(),
                                             "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                                             "history": plain(history), "meta": plain(meta or {}),
                                             "config": plain(asdict(config))})
            barrier(env)
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.3f}")
    finally:
        bar.close()
    return history
