"""``wulff train``: training of a base classifier (noise augmentation, Appendix D, or another objective
of :mod:`wulff.train.objectives`), optionally fine-tuned from a checkpoint; DDP under torchrun."""
from __future__ import annotations

import argparse

from wulff.catalog import DATASETS, MODELS, OBJECTIVES
from wulff.cli.arguments import add_noise_arguments, add_runtime_arguments, noise_from_arguments
from wulff.cli.checks import nonnegative_float, nonnegative_int, output_folder, positive_float, positive_int
from wulff.locking import claims_output


def objective_help() -> tuple[str, str]:
    """The help of --objective and --objective-param, from the declared objectives (wulff.catalog, read
    when the parser is built: a registered objective is offered too; no torch is imported)."""
    names = ", ".join(f"{name} ({info.summary})" if info.summary else name for name, info in OBJECTIVES.items())
    params = "; ".join(f"{name}: {', '.join(info.defaults)}" for name, info in OBJECTIVES.items() if info.defaults)
    return (f"training loss: {names}; see docs/objectives.md",
            "objective parameter, repeatable, e.g. --objective-param m=4 --objective-param adversary=l1 "
            f"({params})")


@claims_output("out", folder=True)  # one run per --out; a run that fails first leaves no empty folder
def run(args: argparse.Namespace) -> int:
    import torch

    from wulff.train import (
        TrainConfig,
        build_model,
        load_dataset,
        setup,
        teardown,
        train_smoothed,
        training_meta,
    )
    from wulff.train.finetune import init_from_checkpoint
    from wulff.train.objectives import build_objective, parse_objective_params
    from wulff.train.threads import apply_threads

    out = output_folder(args.out, "--out", holds="checkpoint.pt")
    env = setup(args.device)
    try:
        train_set, info = load_dataset(args.dataset, "train", args.data_dir)
        q = noise_from_arguments(args, info.d)
        objective = build_objective(args.objective, parse_objective_params(args.objective_param), q)
        torch.manual_seed(args.seed)
        model = build_model(args.model, info.input_shape, info.num_classes, info.mean, info.std)
        apply_threads(args.threads, model, info.input_shape, env.device)
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
                             weight_decay=args.weight_decay, seed=args.seed, num_workers=args.workers,
                             autocast=args.autocast, channels_last=args.channels_last)
        checkpoint = out / "checkpoint.pt"
        if args.init and (args.no_resume or not checkpoint.exists()):
            init_from_checkpoint(model, args.init, log=print if env.is_main else (lambda _line: None))
        history = train_smoothed(model, q, train_set, config, checkpoint=checkpoint, resume=not args.no_resume,
                                 meta=training_meta(args.model, info, q), env=env, progress=not args.no_progress,
                                 objective=objective)
        if env.is_main:
            last = history[-1] if history else {}
            reused = f" (reused: more than --epochs {args.epochs})" if last.get("epoch", 0) > args.epochs else ""
            print(f"trained {args.model} on {info.name} with {q!r} ({objective.name}): epoch "
                  f"{last.get('epoch', '-')}{reused}, training loss {last.get('loss', float('nan')):.4f}; "
                  f"checkpoint {checkpoint}")
    finally:
        teardown()
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="train a base classifier: noise augmentation or another objective "
                       "(resumable; torchrun-ready)",
                       description="Noise-augmented training (loss -log f(x + delta)_y), SGD momentum 0.9, "
                       "cosine learning rate, weight decay 1e-4 (Appendix D); --objective picks another loss. A "
                       "checkpoint is written to OUT/checkpoint.pt after every epoch and a rerun with the same "
                       "settings resumes from "
                       "it; a NaN/inf loss stops training with an error (that epoch is not saved). Run under "
                       "`torchrun --nproc-per-node N` for DistributedDataParallel.")
    p.add_argument("--dataset", default="digits", choices=DATASETS)
    p.add_argument("--data-dir", default=None, help="local folder of cifar10 / imagenet (never downloaded)")
    p.add_argument("--model", default="mlp", metavar="MODEL",
                   help=f"{', '.join(MODELS)} (32x32 inputs) or torchvision:<name>, e.g. torchvision:resnet50 "
                   "for ImageNet (needs torchvision); default mlp")
    add_noise_arguments(p)
    objective, objective_param = objective_help()
    p.add_argument("--objective", default="noise", choices=tuple(OBJECTIVES), help=objective)
    p.add_argument("--objective-param", action="append", default=[], metavar="KEY=VALUE", help=objective_param)
    p.add_argument("--init", default=None, metavar="CHECKPOINT",
                   help="fine-tune: start from this checkpoint's weights (same --model; a head with another "
                   "number of classes is re-initialised); ignored when OUT/checkpoint.pt is resumed")
    p.add_argument("--epochs", type=positive_int, default=30,
                   help="total epochs (default 30); rerunning with a larger value extends a finished run "
                   "(the cosine schedule then spans the new total: epoch e uses lr (1 + cos(pi e / EPOCHS)) / 2)")
    p.add_argument("--batch-size", type=positive_int, default=128, help="per process")
    p.add_argument("--lr", type=positive_float, default=0.1)
    p.add_argument("--momentum", type=nonnegative_float, default=0.9)
    p.add_argument("--weight-decay", type=nonnegative_float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=nonnegative_int, default=0, help="data loader workers (folder datasets)")
    p.add_argument("--out", required=True, help="output folder (holds checkpoint.pt)")
    p.add_argument("--no-resume", action="store_true",
                   help="start over even if OUT/checkpoint.pt exists (it is replaced); without it a rerun "
                   "resumes, and refuses if the model, data, noise, objective or optimizer settings differ")
    add_runtime_arguments(p)
    p.set_defaults(handler=run)
