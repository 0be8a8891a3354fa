"""``wulff experiment``: the paper's Table 1 (l1) and Figure 3 (l2, linf), trained and certified here.

    wulff experiment table1 --out runs                                   # digits, CPU, the defaults
    wulff experiment table1 --out runs --sigmas 0.25 0.5 1 --epochs 10 --skip 2 --n 10000
    wulff experiment figure3 --out runs                                  # reuses table1's models
    wulff experiment table1 --dataset cifar10 --data-dir ~/data/cifar-10-batches-py --device cuda --skip 20

For each noise and sigma: a noise-augmented model (resumed from OUT/models/), adaptive certification
of every SKIP-th test input (resumed from OUT/<experiment>/), then the upper envelope over sigma,
the paper's numbers beside ours (radii scaled by sqrt(d / 3072) from CIFAR-10), which noise leads,
and whether any envelope is set by the largest sigma. Rerun the same command to resume.
"""
from __future__ import annotations

import argparse

from wulff.catalog import DATASETS
from wulff.cli.arguments import add_param_argument, add_runtime_arguments, parse_params
from wulff.cli.checks import output_folder, positive_float, positive_int, probability
from wulff.locking import claims_output


@claims_output("out", folder=True)  # one run per --out; a run that fails first leaves no empty folder
def run(args: argparse.Namespace) -> int:
    from wulff.experiment import EXPERIMENTS, Settings, run_experiment
    from wulff.train.threads import apply_threads  # noqa: F401  (fail fast if torch is missing)

    out = output_folder(args.out, "--out", holds="the models, the result files, the tables and the plots")
    settings = Settings(
        dataset=args.dataset, data_dir=args.data_dir, sigmas=tuple(args.sigmas) if args.sigmas else None,
        families=tuple(args.families) if args.families else None, model=args.model, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, n0=args.n0, n=args.n, alpha=args.alpha, skip=args.skip,
        certify_batch=args.certify_batch, adaptive=not args.no_adaptive, seed=args.seed, device=args.device,
        threads=args.threads, radius_scale=args.radius_scale, params=parse_params(args.param))
    names = list(EXPERIMENTS) if args.experiment == "all" else [args.experiment]
    for name in names:
        run_experiment(name, out, settings, progress=not args.no_progress,
                       log=lambda line: print(line, flush=True))
    return 0


def register(sub) -> None:
    from wulff.experiment import EXPERIMENTS

    p = sub.add_parser("experiment", help="reproduce the paper's Table 1 / Figure 3 (train, certify, compare)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", choices=[*EXPERIMENTS, "all"], help="table1 (l1), figure3 (l2, linf) or all")
    p.add_argument("--out", default="wulff-experiments", help="output folder (default ./wulff-experiments)")
    p.add_argument("--dataset", default="digits", choices=DATASETS, help="digits (embedded, default), or a local "
                   "cifar10 / imagenet folder given with --data-dir")
    p.add_argument("--data-dir", default=None, help="the dataset folder (CIFAR-10: its python batches)")
    p.add_argument("--sigmas", type=positive_float, nargs="+", default=None,
                   help="noise levels (default: digits 0.05 0.12 0.25 0.5 0.75 1 1.5; else the paper's "
                        "0.15 ... 3.5)")
    p.add_argument("--families", nargs="+", default=None, metavar="NAME",
                   help="named families instead of the experiment's (shape parameters: the paper's defaults, "
                   "or --param)")
    add_param_argument(p)
    p.add_argument("--model", default=None, choices=("mlp", "cnn", "resnet18"),
                   help="base classifier (default: mlp on digits, resnet18 otherwise)")
    p.add_argument("--epochs", type=positive_int, default=30, help="training epochs per model (default 30)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="training batch size (default 64)")
    p.add_argument("--lr", type=positive_float, default=0.05, help="learning rate (default 0.05)")
    p.add_argument("--n0", type=positive_int, default=100, help="selection samples (default 100)")
    p.add_argument("--n", type=positive_int, default=100_000,
                   help="estimation samples (default 100000, the paper's; adaptive: n_max = n0 + n)")
    p.add_argument("--alpha", type=probability, default=0.001, help="failure probability (default 0.001)")
    p.add_argument("--skip", type=positive_int, default=1, help="certify every SKIP-th test input (default 1)")
    p.add_argument("--certify-batch", type=positive_int, default=10_000, help="noisy samples per forward pass")
    p.add_argument("--no-adaptive", action="store_true", help="certify with exactly n0 + n samples per input")
    p.add_argument("--radius-scale", type=positive_float, default=None,
                   help="factor from the paper's CIFAR-10 radii to this data (default sqrt(d / 3072))")
    p.add_argument("--seed", type=int, default=0)
    add_runtime_arguments(p, precision=False)
    p.set_defaults(handler=run)
