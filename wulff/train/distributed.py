"""One process per device under ``torchrun`` (DistributedDataParallel); a single process otherwise.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; :func:`setup` reads them, joins the process group
(NCCL on GPUs, gloo on CPUs) and picks this process's device.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from wulff.errors import UserError


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str | torch.device | None = None) -> DistEnv:
    """The process's place in the run, joining the process group when WORLD_SIZE > 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    device = resolve_device(device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return DistEnv(rank, world_size, local_rank, device)


def resolve_device(device: str | torch.device | None, local_rank: int = 0) -> torch.device:
    """The torch device for ``--device``: None -> this rank's GPU if there is one, else the CPU;
    "cuda" (no index) -> "cuda:<local rank>"; "cuda:N" must name an existing GPU. Anything else that
    cannot run here is a :class:`~wulff.errors.UserError` naming the valid choices."""
    if device is None:
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise UserError(f"--device must be cpu, cuda or cuda:N (a GPU index); got {device!r}") from None
    if chosen.type == "cpu":
        return chosen
    if chosen.type != "cuda":
        raise UserError(f"--device must be cpu, cuda or cuda:N (a GPU index); got {device!r}")
    if not torch.cuda.is_available():
        raise UserError(f"--device {device}: this machine has no CUDA device (torch.cuda.is_available() is "
                        "False); use --device cpu")
    index = local_rank if chosen.index is None else chosen.index
    count = torch.cuda.device_count()
    if not 0 <= index < count:
        raise UserError(f"--device {device}: this machine has {count} CUDA device(s), cuda:0 .. cuda:{count - 1}; "
                        f"got index {index}")
    return torch.device("cuda", index)


def barrier(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.barrier()


def mean_over_processes(value: float, env: DistEnv) -> float:
    if not (env.distributed and dist.is_initialized()):
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64,
                     device=env.device if env.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return float(t.item()) / env.world_size


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
