"""``wulff certify``: certify every k-th test input of a trained model into a resumable result file;
shardable by torchrun ranks or --shard/--num-shards (join shard files with ``wulff merge``)."""
from __future__ import annotations

import argparse
from pathlib import Path

from wulff.catalog import ADVERSARIES
from wulff.cli.arguments import add_evaluation_arguments, add_runtime_arguments, smoothed_from_arguments
from wulff.cli.checks import nonnegative_float, nonnegative_int, output_file, positive_int, probability
from wulff.errors import UserError
from wulff.locking import OutputLock, removed_on_failure


def check_adaptive_arguments(args: argparse.Namespace) -> None:
    """--radii needs --adaptive and must be strictly increasing (each >= 0 is checked by argparse)."""
    if args.radii is not None and not args.adaptive:
        raise UserError("--radii is a setting of adaptive certification: add --adaptive")
    if args.radii is not None and any(b <= a for a, b in zip(args.radii, args.radii[1:])):
        raise UserError(f"--radii must be strictly increasing; got {' '.join(f'{r:g}' for r in args.radii)}")


#: the Monte Carlo settings and their defaults (None on the command line means: not given)
SAMPLING_DEFAULTS = {"n0": 64, "n": 100_000, "alpha": 0.001}


def check_deterministic_arguments(args: argparse.Namespace, smoothed) -> None:
    """A DSSN model is certified exactly from its offsets: --adaptive, --n0, --n, --alpha and
    --two-class, which set up sampling, are refused when given (never silently ignored)."""
    if not smoothed.deterministic:
        return
    given = [f"--{name}" for name in SAMPLING_DEFAULTS if getattr(args, name) is not None]
    given += ["--adaptive"] if args.adaptive else []
    given += [] if args.two_class is None else ["--two-class" if args.two_class else "--no-two-class"]
    if given:
        raise UserError(f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to a DSSN model: it "
                        "is certified exactly from its 2 lam Q offsets, without sampling (drop "
                        f"{'it' if len(given) == 1 else 'them'})")


def sampling_arguments(args: argparse.Namespace) -> dict:
    """n0, n and alpha as given, or their defaults."""
    return {name: default if getattr(args, name) is None else getattr(args, name)
            for name, default in SAMPLING_DEFAULTS.items()}


def run(args: argparse.Namespace) -> int:
    check_adaptive_arguments(args)
    if args.shard >= args.num_shards:
        raise UserError(f"--shard must lie in 0 .. --num-shards - 1 = {args.num_shards - 1}; got {args.shard}")
    with removed_on_failure(Path(str(args.out)).parent):  # a run that fails before its first row leaves nothing
        return certify(args)


def certify(args: argparse.Namespace) -> int:
    from wulff.certify import certify_dataset, merge_results, shard_path
    from wulff.certify.dataset import evaluation_meta
    from wulff.certify.revisit import read_for_comparison, report_comparison
    from wulff.train import setup, teardown
    from wulff.train.distributed import barrier

    out = output_file(args.out, "--out", example="certify.tsv")
    env = setup(args.device)
    try:
        shard, num_shards = (env.rank, env.world_size) if env.distributed else (args.shard, args.num_shards)
        target = out if num_shards == 1 else shard_path(out, shard, num_shards)
        old = read_for_comparison(args.compare_with, args.skip, args.adversaries) if args.compare_with else None
        with OutputLock(target):  # before any work: a second run on this file stops here
            smoothed, test_set = smoothed_from_arguments(args, env.device)
            check_deterministic_arguments(args, smoothed)
            sampling = {} if smoothed.deterministic else sampling_arguments(args)
            # the model is identified by its weights (model_sha256, added by certify_dataset), never by the
            # checkpoint's path: a retrained model is refused, the same one under another path resumes
            results = certify_dataset(
                smoothed, test_set, target, **sampling, batch_size=args.batch_size,
                adversaries=args.adversaries, skip=args.skip, shard=shard, num_shards=num_shards, seed=args.seed,
                meta=evaluation_meta(smoothed.meta, args.split, noise=smoothed.q),
                progress=not args.no_progress, max_inputs=args.max_inputs, adaptive=args.adaptive,
                radii=args.radii, **({} if smoothed.deterministic else {"two_class": args.two_class}))
        print(f"{target}: {len(results)} rows")
        if old is not None:
            print(report_comparison(old, results, target))
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
                       "it comes; a rerun resumes (only with the same model weights, noise and settings). "
                       "Under torchrun each rank certifies its share and rank 0 merges; with --shard i "
                       "--num-shards n a shard writes OUT.shard-i-of-n.tsv. --adaptive stops each input as "
                       "soon as a sequential test (valid at every look, same guarantee) has decided, within "
                       "the same "
                       "budget n0 + n; the column `samples` records the noisy samples each input used. "
                       "--two-class (default with --adaptive; without it the default --no-two-class keeps "
                       "CERTIFY Cohen et al.'s input for input) also bounds the runner-up's probability where the "
                       "selection names three or more classes; the header records the choice and the rows the "
                       "runner-up's bound, the form of each radius and the p_A form's radius (`wulff report` "
                       "counts the gain). "
                       "A model trained with DSSN noise is certified exactly from its 2 lam Q offsets "
                       "(no sampling: --n0, --n, --alpha, --adaptive and --two-class do not apply and are "
                       "refused). "
                       "One run writes a file at a time: a second one on the same file stops at once. "
                       "MODEL may come from elsewhere (Cohen et al.'s or rs4a's checkpoints, your own --arch with "
                       "a weights file, TorchScript or torch.export archives: see --format), smoothed by "
                       "--noise / --sigma, which the result header records.")
    add_evaluation_arguments(p, "certify")
    p.add_argument("--n0", type=positive_int, default=None, help="samples that choose the class (default 64)")
    p.add_argument("--n", "--num-samples", dest="n", type=positive_int, default=None,
                   help="samples that estimate it (default 100000); under torchrun spell it --num-samples "
                   "(torchrun's own parser mistakes a bare --n for its options)")
    p.add_argument("--alpha", type=probability, default=None,
                   help="failure probability in (0, 1) (default 0.001)")
    p.add_argument("--adversaries", nargs="+", default=list(ADVERSARIES), choices=ADVERSARIES)
    p.add_argument("--shard", type=nonnegative_int, default=0, help="this shard, 0 .. NUM_SHARDS - 1")
    p.add_argument("--num-shards", type=positive_int, default=1)
    p.add_argument("--adaptive", action="store_true",
                   help="adaptive certification (wulff.certify.adaptive): at most n0 + n samples per input, "
                   "stopping early once decided; same guarantee as CERTIFY")
    p.add_argument("--radii", type=nonnegative_float, nargs="+", default=None,
                   help="with --adaptive: increasing radii (>= 0) of interest against the first of "
                   "--adversaries; an input stops once the largest one it can certify is decided "
                   "(default: stop when going on could raise its radius by at most 1 %%)")
    p.add_argument("--two-class", action=argparse.BooleanOptionalAction, default=None,
                   help="two-class certificates: use the runner-up class's probability p_B too, not p_B = 1 - p_A "
                   "(wulff.certify.two_class; with --adaptive by two scores each bounded at alpha, never below "
                   "p_A alone; without, where the n0 votes name three or more classes, by bounds on p_A and p_B); "
                   "default: on with --adaptive, off without (CERTIFY as Cohen et al.'s, p_A alone)")
    p.add_argument("--compare-with", default=None, metavar="FILE",
                   help="an earlier certification of the same model and inputs (a wulff result file, a Cohen "
                   "et al. certify log or an rs4a result folder, whose row i is input i x --skip): after the "
                   "run, per input the old and new prediction and radius side by side in OUT.compare.md, and "
                   "how many radii grew, shrank or changed class")
    add_runtime_arguments(p)
    p.set_defaults(handler=run)
