"""Small models and helpers shared by the certification and command-line tests."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch


class HalfSpace(torch.nn.Module):
    """Class 0 when x_1 < b, class 1 otherwise (logits b - x_1 and x_1 - b): under noise delta its
    top-class probability is P(delta_1 < b - x_1), known exactly for every family."""

    def __init__(self, b: float):
        super().__init__()
        self.b = b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = x.reshape(x.shape[0], -1)[:, 0]
        return torch.stack([self.b - first, first - self.b], dim=1)


class Slabs(torch.nn.Module):
    """Class 0 on x_1 < a, class 2 on a <= x_1 < b, class 1 on x_1 >= b: three classes whose
    probabilities under noise delta are known exactly from the law of delta_1."""

    def __init__(self, a: float, b: float):
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = x[:, 0]
        middle = (x1 >= self.a) & (x1 < self.b)
        return torch.stack([(x1 < self.a).float(), (x1 >= self.b).float(), middle.float()], dim=1)


def train_digits_mlp(folder: Path, q) -> Path:
    """A one-epoch MLP on 64 digits examples, smoothed by q; the checkpoint's path."""
    from wulff.train import TrainConfig, build_model, load_dataset, train_smoothed, training_meta

    train_set, info = load_dataset("digits", "train")
    torch.manual_seed(0)
    model = build_model("mlp", info.input_shape, info.num_classes, info.mean, info.std)
    checkpoint = folder / "checkpoint.pt"
    train_smoothed(model, q, torch.utils.data.Subset(train_set, range(64)),
                   TrainConfig(epochs=1, batch_size=64, lr=0.01), checkpoint=checkpoint,
                   meta=training_meta("mlp", info, q), progress=False)
    return checkpoint


def train_with_cli(run: Path) -> Path:
    """``wulff train`` of the default model (Gaussian, sigma 0.5, one epoch, one thread) into ``run``; the
    checkpoint's path."""
    from wulff.cli import main

    assert main(["train", "--sigma", "0.5", "--epochs", "1", "--out", str(run), "--batch-size", "512",
                 "--no-progress", "--threads", "1"]) == 0
    return run / "checkpoint.pt"


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``wulff ARGS`` run in-process (argparse exits included)."""
    from wulff.cli import main

    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse's own checks
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def fake_cifar10(root: Path, per_batch: int = 4) -> Path:
    """A CIFAR-10-shaped folder (root/cifar-10-batches-py, the python pickle format) of random images
    with labels 0, 1, 2, 9, ..., for the local-folder loader; returns the folder."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = [[0, 1, 2, 9][i % 4] for i in range(per_batch)]
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8), b"labels": labels}
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh)
    return folder


def join_process_group(rank: int, port: int, world: int) -> None:
    """The environment torchrun gives rank ``rank`` of ``world`` processes on this machine (one torch
    thread each), for tests that spawn their own DDP workers."""
    import os

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
