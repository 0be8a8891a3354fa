"""``wulff demo``: the paper's Table 1 comparison in miniature, on CPU, in a few minutes.

On scikit-learn's digits it trains smoothed MLPs with Uniform (cube), Laplace and Gaussian noise at
matched sigma (a small sweep), certifies the whole test set against the l1 adversary, prints the
upper-envelope table and writes the plot. Every step resumes: a rerun after an interruption picks
up where it stopped. By default each input is certified by the sequential test of
``wulff.certify.adaptive`` (the same guarantee, at most n0 + n samples, stopping once the table's radii
are decided): the same table for fewer forward passes (printed under it); --no-adaptive spends all
n0 + n on every input. With --dssn it also trains
and certifies derandomized splitting noise at UniformCube's half-widths: exact l1 certificates from
2 lam Q forward passes per input, in the same table.
"""
from __future__ import annotations

import argparse
import time

from wulff.cli.arguments import add_param_argument, parse_params
from wulff.cli.checks import nonnegative_float, output_folder, positive_float, positive_int, probability
from wulff.errors import UserError

DISTRIBUTIONS = ("UniformCube", "Laplace", "Gaussian")
FULL = {"sigmas": [0.25, 0.5], "epochs": 30, "n0": 64, "n": 10_000, "skip": 1}
QUICK = {"sigmas": [0.5], "epochs": 2, "n0": 32, "n": 300, "skip": 15}
#: digits pixels are multiples of 1/16: the grid of --dssn
DIGITS_LEVELS = 16


def _has_certificate(q, adversary: str) -> str | None:
    """None if q can be certified against the adversary, else the reason it cannot."""
    from wulff.selector import certified_radius

    try:
        certified_radius(q, 0.9, adversary)
    except NotImplementedError as exc:
        return str(exc)
    return None


def run(args: argparse.Namespace) -> int:
    import torch

    from wulff.certify import certify_dataset, read_results, smoothed_classifier
    from wulff.certify.analysis import report
    from wulff.certify.dataset import IDENTITY_KEY, model_identity
    from wulff.distributions import registry
    from wulff.train import TrainConfig, build_model, load_dataset, train_smoothed, training_meta
    from wulff.train.threads import apply_threads

    if args.adaptive and any(b <= a for a, b in zip(args.radii, args.radii[1:])):
        radii = " ".join(f"{r:g}" for r in args.radii)
        raise UserError(f"--adaptive needs strictly increasing --radii; got {radii}")
    settings = dict(QUICK if args.quick else FULL)
    for key in settings:
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    out = output_folder(args.out or ("wulff-demo-quick" if args.quick else "wulff-demo"), "--out",
                        holds="one folder per run, the table and the plot")
    train_set, info = load_dataset("digits", "train")
    shape = registry.shared_parameters(args.distributions, info.d, parse_params(args.param))
    test_set, _ = load_dataset("digits", "test")
    adversary = "l1"
    print(f"wulff demo: {', '.join(args.distributions)} smoothing at sigma in {settings['sigmas']} on digits "
          f"({len(train_set)} train / {len(test_set)} test, d = {info.d}); certifying every "
          f"{settings['skip']}-th test input against {adversary} with n = {settings['n']}, alpha = {args.alpha}"
          + (f", adaptively (at most n0 + n samples per input, stopping once the radii "
             f"{' '.join(f'{r:g}' for r in args.radii)} are decided: fewer forward passes, same guarantee)"
             if args.adaptive else "") + f"; output in {out}/", flush=True)
    began = time.perf_counter()
    result_files = []
    runs = []  # (folder, name, sigma, noise): the families at each sigma, then DSSN if asked
    for name in args.distributions:
        for sigma in settings["sigmas"]:
            q = registry.build(name, info.d, sigma=sigma, **shape[registry.family(name).__name__])
            missing = _has_certificate(q, adversary)
            if missing:
                print(f"  skipping {name}: no {adversary} certificate is available ({missing})", flush=True)
                break
            runs.append((f"{name}-sigma{sigma:g}", name, sigma, q))
    if args.dssn:
        runs += [(f"DSSN-lam{q.lam:g}", "DSSN", q.sigma, q) for q in dssn_noises(settings["sigmas"], info.d)]
    for folder, name, sigma, q in runs:
        run_dir = out / folder
        step = time.perf_counter()
        torch.manual_seed(args.seed)
        model = build_model(args.model, info.input_shape, info.num_classes, info.mean, info.std)
        apply_threads(args.threads, model, info.input_shape)
        config = TrainConfig(epochs=settings["epochs"], batch_size=64, lr=args.lr, seed=args.seed)
        history = train_smoothed(model, q, train_set, config, checkpoint=run_dir / "checkpoint.pt",
                                 meta=training_meta(args.model, info, q), progress=not args.no_progress)
        model.eval()
        smoothed = smoothed_classifier(model, q, info.num_classes)
        exact = smoothed.deterministic  # DSSN: no sampling, nothing adaptive
        results = certify_dataset(
            smoothed, test_set, run_dir / f"certify_{adversary}.tsv", n0=settings["n0"], n=settings["n"],
            alpha=args.alpha, batch_size=args.batch_size, adversaries=(adversary,), skip=settings["skip"],
            seed=args.seed, meta={"sigma": sigma, "model": args.model, "dataset": "digits", "split": "test",
                                  IDENTITY_KEY: model_identity(training_meta(args.model, info, q))},
            progress=not args.no_progress, adaptive=args.adaptive and not exact,
            radii=args.radii if args.adaptive and not exact else None)
        result_files.append(run_dir / f"certify_{adversary}.tsv")
        accuracy = results.correct.mean()
        print(f"  {name:<12} sigma = {sigma:<5.3g} training loss {history[-1]['loss']:.3f}, smoothed accuracy "
              f"{100 * accuracy:.1f}%, median {adversary} radius of correct inputs "
              f"{_median(results.radius(adversary)[results.correct]):.3f}  "
              f"({time.perf_counter() - step:.0f} s)", flush=True)
    if not result_files:
        raise NotImplementedError("no distribution could be certified; nothing to report")
    plot = out / f"certified_accuracy_{adversary}.png"
    sigmas = ", ".join(f"{s:g}" for s in settings["sigmas"])
    title = f"digits: certified accuracy (%) against {adversary}, best over sigma in {{{sigmas}}}"
    table = report([read_results(f) for f in result_files], adversary, args.radii, plot=plot, title=title,
                   warn=lambda line: print(f"  warning: {line}", flush=True))
    (out / f"table_{adversary}.md").write_text(table + "\n", encoding="utf-8")
    print()
    print(table)
    print(f"\nplot: {plot}\ntable: {out / f'table_{adversary}.md'}\n"
          f"total time {time.perf_counter() - began:.0f} s")
    return 0


def dssn_noises(sigmas, d: int) -> list:
    """DSSN on digits' grid (Q = 16) at the half-widths of the demo's UniformCube runs, lam = sqrt(3)
    sigma, rounded to the nearest multiple of 1/(2Q) that DSSN allows (at least 1/(2Q))."""
    import math

    from wulff.splitting import SplittingNoise

    offsets = sorted({max(1, round(2 * math.sqrt(3) * sigma * DIGITS_LEVELS)) for sigma in sigmas})
    return [SplittingNoise(d, offsets=n, quantization=DIGITS_LEVELS) for n in offsets]


def _median(values) -> float:
    import numpy as np

    return float(np.median(values)) if len(values) else 0.0


def register(sub) -> None:
    p = sub.add_parser("demo", help="train and certify Uniform, Laplace, Gaussian smoothing on digits (CPU)",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("--out", default=None, help="output folder (default ./wulff-demo, or "
                   "./wulff-demo-quick with --quick)")
    p.add_argument("--quick", action="store_true", help="a smoke run of a few seconds (tiny n, few inputs)")
    p.add_argument("--distributions", nargs="+", default=list(DISTRIBUTIONS), metavar="NAME",
                   help="named families (see `wulff distributions`); shape parameters default to their "
                   "examples there (e.g. Pareto a=4), or give them with --param")
    add_param_argument(p)
    p.add_argument("--sigmas", type=positive_float, nargs="+", default=None,
                   help="noise levels (default 0.25 0.5)")
    p.add_argument("--epochs", type=positive_int, default=None, help="training epochs per model (default 30)")
    p.add_argument("--n0", type=positive_int, default=None, help="selection samples (default 64)")
    p.add_argument("--n", type=positive_int, default=None, help="estimation samples (default 10000)")
    p.add_argument("--skip", type=positive_int, default=None, help="certify every SKIP-th test input (default 1)")
    p.add_argument("--alpha", type=probability, default=0.001)
    p.add_argument("--batch-size", type=positive_int, default=5000)
    p.add_argument("--radii", type=nonnegative_float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0])
    p.add_argument("--adaptive", action=argparse.BooleanOptionalAction, default=True,
                   help="adaptive certification, the default (same guarantee, stops each input once --radii "
                   "are decided; the forward passes are printed under the table); --no-adaptive spends n0 + n "
                   "samples on every input")
    p.add_argument("--dssn", action="store_true",
                   help="also train and certify derandomized splitting noise (DSSN: exact l1 certificates from "
                   "2 lam Q forward passes per input) at UniformCube's half-widths lam = sqrt(3) sigma, rounded "
                   "to multiples of 1/32 (digits' grid Q = 16)")
    p.add_argument("--model", default="mlp", choices=("mlp", "cnn"))
    p.add_argument("--lr", type=positive_float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: 1 for these "
                   "small models, the fastest; see `wulff train --help`)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run)
