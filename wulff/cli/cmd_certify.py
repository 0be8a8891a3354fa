"""``wulff certify``: certify every k-th test input of a trained model into a resumable result file;
shardable by torchrun ranks or --shard/--num-shards (join shard files with ``wulff merge``)."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from wulff.certify import Smoothed, certify_dataset, merge_results, shard_path
from wulff.cli.cmd_train import add_runtime_arguments
from wulff.train import load_dataset, load_trained, setup, teardown
from wulff.train.distributed import barrier


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    env = setup(args.device)
    try:
        shard, num_shards = (env.rank, env.world_size) if env.distributed else (args.shard, args.num_shards)
        model, q, meta = load_trained(args.checkpoint, env.device)
        test_set, info = load_dataset(meta["dataset"], args.split, args.data_dir)
        if args.channels_last:
            model.to(memory_format=torch.channels_last)
        amp = {"bf16": torch.bfloat16, "fp16": torch.float16, None: None}[args.autocast]
        smoothed = Smoothed(model, q, info.num_classes, autocast=amp, channels_last=args.channels_last)
        out = Path(args.out)
        target = out if num_shards == 1 else shard_path(out, shard, num_shards)
        results = certify_dataset(
            smoothed, test_set, target, n0=args.n0, n=args.n, alpha=args.alpha, batch_size=args.batch_size,
            adversaries=args.adversaries, skip=args.skip, shard=shard, num_shards=num_shards, seed=args.seed,
            meta={"sigma": meta.get("sigma"), "checkpoint": str(args.checkpoint), "split": args.split},
            progress=not args.no_progress, max_inputs=args.max_inputs)
        print(f"{target}: {len(results)} rows")
        barrier(env)
        if env.distributed and env.is_main:
            merged = merge_results([shard_path(out, i, num_shards) for i in range(num_shards)], out,
                                   allow_partial=args.max_inputs is not None)
            print(f"merged {num_shards} shards into {out}: {len(merged)} rows")
    finally:
        teardown()
    return 0


def register(sub) -> None:
    p = sub.add_parser("certify", help="certify a trained smoothed model on a test set (resumable, shardable)",
                       description="Cohen et al. (2019) CERTIFY on every SKIP-th test input: n0 samples pick "
                       "the class, n samples bound its probability (one-sided Clopper-Pearson at level "
                       "alpha), radii from the noise's best certificate. One row per input is written as "
                       "it comes; a rerun resumes. Under torchrun each rank certifies its share and rank 0 "
                       "merges; with --shard i --num-shards n a shard writes OUT.shard-i-of-n.tsv.")
    p.add_argument("checkpoint", help="checkpoint.pt written by `wulff train`")
    p.add_argument("--out", required=True, help="result file (.tsv)")
    p.add_argument("--data-dir", default=None, help="local folder of cifar10 / imagenet")
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--n0", type=int, default=64, help="samples that choose the class (default 64)")
    p.add_argument("--n", "--num-samples", dest="n", type=int, default=100_000,
                   help="samples that estimate it (default 100000); under torchrun spell it --num-samples "
                   "(torchrun's own parser mistakes a bare --n for its options)")
    p.add_argument("--alpha", type=float, default=0.001, help="failure probability (default 0.001)")
    p.add_argument("--batch-size", type=int, default=1000, help="noisy copies per forward pass")
    p.add_argument("--skip", type=int, default=1, help="certify every SKIP-th input (default 1)")
    p.add_argument("--adversaries", nargs="+", default=["l1", "l2", "linf"], choices=("l1", "l2", "linf"))
    p.add_argument("--shard", type=int, default=0)
    p.add_argument("--num-shards", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="noise seed (each input gets its own stream)")
    p.add_argument("--max-inputs", type=int, default=None, help="stop after this many new rows")
    add_runtime_arguments(p)
    p.set_defaults(handler=run)
