"""``wulff attack``: PGD on the soft smoothed classifier at one or more eps, every k-th test input,
into a resumable result file that ``wulff report`` reads beside certification files."""
from __future__ import annotations

import argparse
from pathlib import Path

from wulff.catalog import ADVERSARIES
from wulff.cli.arguments import add_evaluation_arguments, add_runtime_arguments, smoothed_from_arguments
from wulff.cli.checks import nonnegative_float, output_file, positive_int, probability
from wulff.errors import UserError
from wulff.locking import OutputLock, removed_on_failure


def run(args: argparse.Namespace) -> int:
    from wulff.certify.attack_dataset import check_eps

    check_eps(args.eps)  # every setting is checked before a file or folder is made
    with removed_on_failure(Path(str(args.out)).parent):  # a run that fails before its first row leaves nothing
        return attack(args)


def attack(args: argparse.Namespace) -> int:
    from wulff.certify.attack_dataset import attack_dataset, robust_accuracy
    from wulff.certify.dataset import evaluation_meta
    from wulff.train import setup, teardown
    from wulff.train.objectives import natural_adversary

    out = output_file(args.out, "--out", example="attack.tsv")
    env = setup(args.device)
    try:
        if env.distributed:
            raise UserError("wulff attack runs in one process (every rank would write the same file); run it "
                            "without torchrun, or split the inputs over runs with --skip and separate --out files")
        with OutputLock(out):  # before any work: a second run on this file stops here
            smoothed, test_set = smoothed_from_arguments(args, env.device)
            if smoothed.deterministic:  # its transform T(x, s) has no gradient to ascend
                raise UserError(f"wulff attack needs a model smoothed by a noise distribution; {args.checkpoint} "
                                f"was trained with {type(smoothed.q).__name__} (DSSN), which it does not attack")
            adversary = args.adversary or natural_adversary(smoothed.q)
            results = attack_dataset(
                smoothed, test_set, out, eps=args.eps, adversary=adversary, steps=args.steps,
                samples=args.samples, n=args.n, alpha=args.alpha, batch_size=args.batch_size, skip=args.skip,
                seed=args.seed, clamp=(0.0, 1.0),
                meta=evaluation_meta(smoothed.meta, args.split, noise=smoothed.q),
                progress=not args.no_progress, max_inputs=args.max_inputs)
        accuracy = ", ".join(f"{100 * v:.1f} % at eps {e:g}" for e, v in robust_accuracy(results).items())
        print(f"{out}: {len(results)} rows ({adversary}); empirical robust accuracy {accuracy}")
    finally:
        teardown()
    return 0


def register(sub) -> None:
    p = sub.add_parser("attack", help="PGD attack on a trained smoothed model (empirical robust accuracy; "
                       "resumable)",
                       description="Projected gradient ascent on the soft smoothed classifier (mean softmax over "
                       "SAMPLES noise draws, fresh at every step) within an eps-ball of l1, l2 or linf, inputs "
                       "kept in [0, 1]; the smoothed classifier's answer at x and at the attacked point comes "
                       "from N votes (Cohen et al.'s PREDICT at level ALPHA). One row per input and eps, "
                       "resumable. `wulff report` prints the empirical robust accuracy and raises a soundness "
                       "alarm if an input certified correct at radius r >= eps was broken. One run writes a "
                       "file at a time: a second one on the same file stops at once. MODEL may come from "
                       "elsewhere (see --format), smoothed by --noise / --sigma.")
    add_evaluation_arguments(p, "attack")
    p.add_argument("--eps", type=nonnegative_float, nargs="+", required=True,
                   help="attack budgets (numbers in [0, 1e12]) in the adversary's norm, input units")
    p.add_argument("--adversary", default=None, choices=ADVERSARIES,
                   help="norm of the attack (default: the noise's natural one, e.g. l2 for Gaussian)")
    p.add_argument("--steps", type=positive_int, default=20, help="PGD steps of size 2 eps / steps (default 20)")
    p.add_argument("--samples", type=positive_int, default=16,
                   help="noise draws per step for the soft smoothed classifier (default 16)")
    p.add_argument("--n", type=positive_int, default=1000,
                   help="votes for the smoothed classifier's answers (default 1000)")
    p.add_argument("--alpha", type=probability, default=0.001, help="level of PREDICT's test (default 0.001)")
    add_runtime_arguments(p)
    p.set_defaults(handler=run)
