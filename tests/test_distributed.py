"""Scale-out on CPU with the gloo backend: 2 processes train under DistributedDataParallel and
certify disjoint shards that merge into one result file (in-process spawn, then the CLI under torchrun)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from toys import join_process_group

import wulff.distributions as D
from wulff.certify import Smoothed, certify_dataset, merge_results, read_results, shard_path

WORLD = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out: str) -> None:
    join_process_group(rank, port, WORLD)
    import torch.distributed as dist

    from wulff.train import TrainConfig, build_model, load_dataset, setup, teardown, train_smoothed

    env = setup("cpu")
    try:
        train_set, info = load_dataset("digits", "train")
        q = D.Laplace(info.d, sigma=0.5)
        torch.manual_seed(rank)  # different initial weights: DDP must broadcast rank 0's
        model = build_model("mlp", info.input_shape, info.num_classes, info.mean, info.std)
        history = train_smoothed(model, q, train_set, TrainConfig(epochs=1, batch_size=64, lr=0.05), env=env,
                                 progress=False)
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        gathered = [torch.empty_like(flat) for _ in range(WORLD)]
        dist.all_gather(gathered, flat)
        torch.save({"params": gathered, "history": history}, os.path.join(out, f"rank{rank}.pt"))
        test_set, _ = load_dataset("digits", "test")
        smoothed = Smoothed(model.eval(), q, info.num_classes)
        certify_dataset(smoothed, test_set, shard_path(os.path.join(out, "r.tsv"), rank, WORLD), n0=16, n=200,
                        alpha=0.01, batch_size=200, adversaries=("l1",), skip=30, shard=rank, num_shards=WORLD,
                        progress=False)
        dist.barrier()
        if rank == 0:
            merge_results([shard_path(os.path.join(out, "r.tsv"), i, WORLD) for i in range(WORLD)],
                          os.path.join(out, "r.tsv"))
    finally:
        teardown()


def test_two_gloo_processes_train_in_sync_and_certify_shards(tmp_path):
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    states = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    params = states[0]["params"]
    torch.testing.assert_close(params[0], params[1], rtol=0, atol=0)  # replicas identical after DDP steps
    # each process saw half of the 1347 training images per epoch; the loss is averaged over both
    assert states[0]["history"][0]["loss"] == pytest.approx(states[1]["history"][0]["loss"])
    merged = read_results(tmp_path / "r.tsv")
    assert merged.columns["index"].tolist() == list(range(0, 450, 30))
    parts = [set(read_results(shard_path(tmp_path / "r.tsv", r, WORLD)).columns["index"].tolist())
             for r in range(WORLD)]
    assert not parts[0] & parts[1] and len(parts[0]) + len(parts[1]) == 15


def test_cli_under_torchrun_trains_and_certifies_with_two_processes(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={WORLD}",
                "-m", "wulff.cli"]
    run_dir = tmp_path / "run"
    train = subprocess.run(
        torchrun + ["train", "--noise", "Gaussian", "--sigma", "0.25", "--epochs", "2", "--batch-size", "64",
                    "--lr", "0.05", "--out", str(run_dir), "--device", "cpu", "--no-progress"],
        env=env, capture_output=True, text=True, timeout=240)
    assert train.returncode == 0, train.stderr[-3000:]
    assert train.stdout.count("trained mlp on digits") == 1  # only rank 0 reports and saves
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2 and len(state["history"]) == 2
    out = tmp_path / "certify.tsv"
    certify = subprocess.run(
        torchrun + ["certify", str(run_dir / "checkpoint.pt"), "--out", str(out), "--n0", "16",
                    "--num-samples", "300", "--alpha", "0.01", "--batch-size", "300", "--skip", "25",
                    "--adversaries", "l1", "l2", "--device", "cpu", "--no-progress"],
        env=env, capture_output=True, text=True, timeout=240)
    assert certify.returncode == 0, certify.stderr[-3000:]
    merged = read_results(out)
    assert merged.columns["index"].tolist() == list(range(0, 450, 25))
    assert merged.meta["num_shards"] == 1 and merged.meta["distribution"] == "Gaussian"
    assert np.mean(merged.correct) > 0.5
    for r in range(WORLD):
        assert shard_path(out, r, WORLD).exists()
