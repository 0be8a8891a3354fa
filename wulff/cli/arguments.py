"""The argument blocks the subcommands share, one per concern, and what each block's values build:

* :func:`add_param_argument` / :func:`parse_params` -- a distribution's shape parameters
  (``--param k=2``; derive, compare, demo, experiment, train);
* :func:`add_noise_arguments` / :func:`noise_from_arguments` -- the training noise (train);
* :func:`add_evaluation_arguments` / :func:`smoothed_from_arguments` -- a trained checkpoint evaluated
  on a data split, one result file (certify, attack), through the library's :func:`wulff.load`;
* :func:`add_runtime_arguments` -- device, threads, mixed precision, progress bars (train, certify,
  attack; experiment without the precision options).

Only the standard library and :mod:`wulff.cli.checks` are imported at the top, so ``wulff --help``
stays light; what a block builds is imported when it is built.
"""
from __future__ import annotations

import argparse

from wulff.catalog import FAMILY_NAMES
from wulff.cli.checks import positive_float, positive_int
from wulff.errors import UserError, parse_number


# -- shape parameters ----------------------------------------------------------------------------
def add_param_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="shape parameter of the distribution, a plain number, e.g. --param k=2 (repeatable)")


def parse_params(items) -> dict:
    """["k=2", "j=0"] -> {"k": 2.0, "j": 0.0} (command-line shape parameters)."""
    params = {}
    for item in items or ():
        key, sep, value = str(item).partition("=")
        if not sep or not key:
            raise UserError(f"a distribution parameter must look like name=value; got {item!r}")
        params[key.strip()] = parse_number(value, what=f"parameter {key.strip()}", error=UserError)
    return params


# -- the training noise --------------------------------------------------------------------------
def add_noise_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--noise", default="Gaussian", help="named distribution, any case: "
                   f"{', '.join(FAMILY_NAMES)} (see `wulff distributions`), or DSSN (derandomized splitting "
                   "noise: exact l1 certificates; takes --lam and --quantization instead of --sigma)")
    p.add_argument("--sigma", type=positive_float, default=None,
                   help="noise level sigma = sqrt(E||delta||^2 / d), a number > 0 (required, except for DSSN)")
    p.add_argument("--lam", type=positive_float, default=None,
                   help="DSSN: half-width of the uniform noise, with 2 * LAM * QUANTIZATION an integer")
    p.add_argument("--quantization", type=positive_int, default=None, metavar="Q",
                   help="DSSN: the inputs are multiples of 1/Q (16 for digits, 255 for 8-bit images)")
    add_param_argument(p)


def noise_from_arguments(args: argparse.Namespace, d: int):
    """The training noise the arguments name: a named family at --sigma, or DSSN at --lam, --quantization."""
    from wulff.train.spec import DSSN, named_noise

    if args.sigma is None and str(args.noise).strip().upper() != DSSN:
        raise UserError(f"--sigma is required for --noise {args.noise} (a number > 0)")
    return named_noise(args.noise, d, sigma=args.sigma, lam=args.lam, params=parse_params(args.param),
                       quantization=args.quantization)


# -- a checkpoint evaluated on a data split ------------------------------------------------------
def add_evaluation_arguments(p: argparse.ArgumentParser, verb: str) -> None:
    """The checkpoint, the result file, the data and how the inputs are walked; ``verb`` ("certify",
    "attack") words the help."""
    p.add_argument("checkpoint", help="checkpoint.pt written by `wulff train`")
    p.add_argument("--out", required=True, help="result file (.tsv)")
    p.add_argument("--data-dir", default=None, help="local folder of cifar10 / imagenet")
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--batch-size", type=positive_int, default=1000, help="noisy copies per forward pass")
    p.add_argument("--skip", type=positive_int, default=1, help=f"{verb} every SKIP-th input (default 1)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (each input gets its own stream)")
    p.add_argument("--max-inputs", type=positive_int, default=None, help="stop after this many new inputs (>= 1)")


#: --autocast's choices and the dtypes they name
AUTOCAST = {"bf16": "bfloat16", "fp16": "float16"}


def smoothed_from_arguments(args: argparse.Namespace, device):
    """(smoothed classifier, data split) for the arguments of :func:`add_evaluation_arguments` and
    :func:`add_runtime_arguments`: :func:`wulff.load` of the checkpoint on ``device`` with the precision
    and memory-format options, the thread count applied, and the split it is evaluated on."""
    import torch

    from wulff.certify.loading import evaluation_data, from_checkpoint
    from wulff.train.threads import apply_threads

    autocast = getattr(torch, AUTOCAST[args.autocast]) if args.autocast else None
    smoothed = from_checkpoint(args.checkpoint, device, autocast=autocast, channels_last=args.channels_last)
    apply_threads(args.threads, smoothed.model, smoothed.meta["input_shape"], device)
    test_set, _ = evaluation_data(smoothed, args.split, args.data_dir)
    return smoothed, test_set


# -- runtime -------------------------------------------------------------------------------------
def add_runtime_arguments(p: argparse.ArgumentParser, *, precision: bool = True) -> None:
    """--device, --threads, --no-progress; with ``precision`` also --autocast and --channels-last."""
    p.add_argument("--device", default=None, help="cpu, cuda (this rank's GPU), cuda:N (default: this rank's "
                   "GPU if there is one, else cpu)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (default: 1 for models under 10 M multiply-adds per input, which "
                   "run fastest on one thread, else torch's default)")
    if precision:
        p.add_argument("--autocast", choices=tuple(AUTOCAST), default=None, help="mixed-precision forward passes")
        p.add_argument("--channels-last", action="store_true", help="channels_last memory format for images")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
