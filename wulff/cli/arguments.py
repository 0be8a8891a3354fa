"""The argument blocks the subcommands share, one per concern, and what each block's values build:

* :func:`add_param_argument` / :func:`parse_params` -- a distribution's shape parameters
  (``--param k=2``; derive, compare, demo, experiment, train);
* :func:`add_noise_arguments` / :func:`noise_from_arguments` -- the training noise (train), or the
  noise a model is evaluated with (certify, attack: :func:`evaluation_noise_from_arguments`);
* :func:`add_evaluation_arguments` / :func:`smoothed_from_arguments` -- a trained model (a wulff
  checkpoint or a model from elsewhere: :func:`add_model_arguments`) evaluated on a data split, one
  result file (certify, attack), through the library's :func:`wulff.certify.loading.read_model`;
* :func:`add_runtime_arguments` -- device, threads, mixed precision, progress bars (train, certify,
  attack; experiment without the precision options).

Only the standard library and :mod:`wulff.cli.checks` are imported at the top, so ``wulff --help``
stays light; what a block builds is imported when it is built.
"""
from __future__ import annotations

import argparse

from wulff.catalog import DATASETS, FAMILY_NAMES
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
#: what --noise and --sigma say when evaluating (their default is the checkpoint's own noise)
EVALUATION_NOISE = ("default: the checkpoint's own noise; required for a model from elsewhere, whose file records "
                    "none (e.g. --noise Gaussian --sigma 0.25); given for a wulff checkpoint, it replaces the "
                    "training noise and the result header records it")


def add_noise_arguments(p: argparse.ArgumentParser, default: str | None = "Gaussian") -> None:
    """--noise (``default``; None: the noise is optional, as when evaluating a checkpoint), --sigma,
    --lam, --quantization and --param."""
    p.add_argument("--noise", default=default, help="named distribution, any case: "
                   f"{', '.join(FAMILY_NAMES)} (see `wulff distributions`), or DSSN (derandomized splitting "
                   "noise: exact l1 certificates; takes --lam and --quantization instead of --sigma)" +
                   (f" (default {default})" if default else f" ({EVALUATION_NOISE}; Gaussian when only --sigma "
                                                            "is given)"))
    p.add_argument("--sigma", type=positive_float, default=None,
                   help="noise level sigma = sqrt(E||delta||^2 / d), a number > 0 (required with --noise, "
                   "except for DSSN)")
    p.add_argument("--lam", type=positive_float, default=None,
                   help="DSSN: half-width of the uniform noise, with 2 * LAM * QUANTIZATION an integer")
    p.add_argument("--quantization", type=positive_int, default=None, metavar="Q",
                   help="DSSN: the inputs are multiples of 1/Q (16 for digits, 255 for 8-bit images)")
    add_param_argument(p)


def noise_from_arguments(args: argparse.Namespace, d: int):
    """The training noise the arguments name: a named family at --sigma, or DSSN at --lam, --quantization."""
    from wulff.train.spec import DSSN, named_noise

    name = args.noise or "Gaussian"
    if args.sigma is None and str(name).strip().upper() != DSSN:
        raise UserError(f"--sigma is required for --noise {name} (a number > 0)")
    return named_noise(name, d, sigma=args.sigma, lam=args.lam, params=parse_params(args.param),
                       quantization=args.quantization)


def evaluation_noise_from_arguments(args: argparse.Namespace, d: int):
    """The noise the arguments of :func:`add_noise_arguments` (without a default) name, or None when
    none of them is given (the checkpoint's own noise)."""
    given = [key for key in ("noise", "sigma", "lam", "quantization") if getattr(args, key) is not None]
    return noise_from_arguments(args, d) if given or args.param else None


# -- a checkpoint evaluated on a data split ------------------------------------------------------
#: --format's choices (wulff.certify.loading.FORMATS) and what each reads
MODEL_FORMATS = {
    "auto": "recognize the file (default)",
    "wulff": "checkpoint.pt of `wulff train`",
    "cohen": "Cohen et al. (2019, locuslab/smoothing): {epoch, arch, state_dict, optimizer} with arch "
             "cifar_resnet20, cifar_resnet110 or resnet50",
    "rs4a": "Yang et al. (2020, tonyduan/rs4a): model_ckpt.torch of its ResNet (ResNet-110 for CIFAR-10, "
            "ResNet-50 for ImageNet) or WideResNet (40-2)",
    "state-dict": "weights (torch.save of a state_dict) of the network --arch builds",
    "torchscript": "a torch.jit.save archive (runs its TorchScript program: trust it like code)",
    "export": "a torch.export.save archive (runs its graph of torch operators, and torch may unpickle parts "
              "of it: trust it like code)",
}


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The model file and how to read it: --format, --arch, --dataset."""
    p.add_argument("checkpoint", metavar="MODEL",
                   help="checkpoint.pt written by `wulff train`, or a model trained elsewhere (see --format)")
    p.add_argument("--format", dest="model_format", default="auto", choices=tuple(MODEL_FORMATS),
                   help="how to read MODEL: " + "; ".join(f"{k}: {v}" for k, v in MODEL_FORMATS.items()) +
                   ". auto never loads a torchscript / export archive (name the format to load one); every "
                   "other file is read as tensors and plain data (weights_only=True), never as code; models "
                   "from elsewhere need --noise and --sigma")
    p.add_argument("--arch", default=None, metavar="PACKAGE.MODULE:FACTORY",
                   help="your own network for a state-dict MODEL: this imports PACKAGE.MODULE (your Python "
                   "code, run because you name it here) and calls FACTORY() to build the network, which takes "
                   "inputs in [0, 1] (normalize inside it); MODEL holds its weights")
    p.add_argument("--dataset", default=None, choices=DATASETS,
                   help="the data the model takes: required for state-dict, torchscript and export models, "
                   "implied by the others")


def add_evaluation_arguments(p: argparse.ArgumentParser, verb: str) -> None:
    """The model, the noise, the result file, the data and how the inputs are walked; ``verb``
    ("certify", "attack") words the help."""
    add_model_arguments(p)
    add_noise_arguments(p, default=None)
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
    :func:`add_runtime_arguments`: :func:`wulff.load` of the model on ``device``, smoothed by the command
    line's noise or its own, with the precision and memory-format options, the
    thread count applied, and the split it is evaluated on."""
    import torch

    from wulff.certify.loading import evaluation_data, from_checkpoint
    from wulff.train.threads import apply_threads

    autocast = getattr(torch, AUTOCAST[args.autocast]) if args.autocast else None
    smoothed = from_checkpoint(args.checkpoint, device, noise=lambda d: evaluation_noise_from_arguments(args, d),
                               autocast=autocast, channels_last=args.channels_last, format=args.model_format,
                               arch=args.arch, dataset=args.dataset)
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
