"""The paper's experiments, reproduced as far as the data and machine allow (Section 6).

* ``table1``: Uniform (cube), Laplace and Gaussian noise against the l1 adversary (Table 1, Fig. 2).
* ``figure3``: Gaussian, uniform ball, Laplace and uniform cube against l2 and linf (Figure 3).

For each noise and each sigma of a sweep, a base classifier is trained on noisy inputs
(:func:`wulff.train.train_smoothed`), the test inputs are certified (:func:`wulff.certify.certify_dataset`,
adaptively by default), and the certified accuracy of each noise is the upper envelope over its sigmas
(:func:`wulff.certify.analysis.upper_envelopes`, the paper's Appendix D procedure). Every step resumes
from what is in the output folder: models (``models/<noise>-sigma<s>/checkpoint.pt``, shared by both
experiments) and result files (``<experiment>/<noise>-sigma<s>.tsv``).

Scaling to other data. The paper's CIFAR-10 sweep (Appendix D) is sigma in 0.15 ... 3.5 and its
Table 1 radii are 0.5 ... 4.0 in l1, for d = 3072. On data of dimension d the radii are scaled by
s = sqrt(d / 3072): with pixels in [0, 1], ||x||_2 grows like sqrt(d), so the noise level a classifier
tolerates (and every radius, which is sigma times a function of rho) grows like sqrt(d) too. The
radii compared with the paper's columns are therefore s * (0.5, ..., 4.0); the default sigma sweep
covers the scaled paper sweep and goes beyond it until no noise's envelope is set by its largest sigma
(the report says when that check fails).

The module imports only the standard library at the top (the command line reads :data:`EXPERIMENTS`
before it parses anything); numpy, torch and the rest load when an experiment runs.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: the paper's CIFAR-10 dimension, the reference of the radius scaling
CIFAR10_D = 3072
#: the paper's sigma sweep on CIFAR-10 (Appendix D; the values above 1.5 for cubic level sets)
PAPER_SIGMAS = (0.15, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0, 3.25, 3.5)
#: the default sweep on scikit-learn's digits (d = 64): the scaled paper sweep is 0.02 ... 0.5; it
#: goes on to 1.5 so that no envelope is set by the largest sigma
DIGITS_SIGMAS = (0.05, 0.12, 0.25, 0.5, 0.75, 1.0, 1.5)


@dataclass(frozen=True)
class PaperTable:
    """Certified accuracies (%) the paper reports at its radii (CIFAR-10)."""

    radii: tuple[float, ...]
    rows: dict[str, tuple[float, ...]]
    source: str


#: Table 1 of the paper, CIFAR-10 rows (Uniform: ours; Laplace: Teng et al. 2019, trained the same way)
TABLE1_CIFAR10 = PaperTable(
    radii=(0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0),
    rows={"UniformCube": (70, 59, 51, 43, 33, 27, 22, 18), "Laplace": (61, 39, 24, 16, 11, 7, 4, 3)},
    source="Table 1, CIFAR-10, ResNet-18, n = 100,000, alpha = 0.001")


@dataclass(frozen=True)
class Experiment:
    """One of the paper's experiments: the noises, the adversaries (the first drives adaptive
    certification), the paper's numbers where it printed them, and what the paper found."""

    name: str
    families: tuple[str, ...]
    adversaries: tuple[str, ...]
    paper: dict[str, PaperTable] = field(default_factory=dict)
    finding: dict[str, str] = field(default_factory=dict)
    #: per adversary, the noises the paper found on top (the verdict checks each radius against them)
    leaders: dict[str, tuple[str, ...]] = field(default_factory=dict)


EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    Experiment("table1", ("UniformCube", "Laplace", "Gaussian"), ("l1",), {"l1": TABLE1_CIFAR10},
               {"l1": "Uniform (cube) above Laplace and Gaussian at every l1 radius (Section 6.1)"},
               {"l1": ("UniformCube",)}),
    Experiment("figure3", ("Gaussian", "UniformBall", "Laplace", "UniformCube"), ("l2", "linf"), {},
               {"l2": "spherical noises (Gaussian, uniform ball) close together, none above the Gaussian "
                      "(Section 6.2)",
                "linf": "spherical level sets (Gaussian, uniform ball) above cubical and cross-polytope ones "
                        "(uniform cube, Laplace) (Section 6.3)"},
               {"l2": ("Gaussian",), "linf": ("Gaussian", "UniformBall")}),
)}


def radius_scale(d: int) -> float:
    """s = sqrt(d / 3072): the factor from the paper's CIFAR-10 radii to data of dimension d."""
    return math.sqrt(int(d) / CIFAR10_D)


def default_sigmas(dataset: str) -> tuple[float, ...]:
    """The paper's sweep for CIFAR-10 and ImageNet; :data:`DIGITS_SIGMAS` for digits."""
    return DIGITS_SIGMAS if dataset == "digits" else PAPER_SIGMAS


@dataclass
class Settings:
    """How an experiment runs. The defaults are the paper's where the machine allows (n = 100,000,
    alpha = 0.001) and small elsewhere (epochs); ``skip`` certifies every skip-th test input."""

    dataset: str = "digits"
    data_dir: str | None = None
    sigmas: tuple[float, ...] | None = None
    families: tuple[str, ...] | None = None
    model: str | None = None
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.05
    n0: int = 100
    n: int = 100_000
    alpha: float = 0.001
    skip: int = 1
    certify_batch: int = 10_000
    adaptive: bool = True
    seed: int = 0
    device: str | None = None
    threads: int | None = None
    radius_scale: float | None = None
    #: shape parameters by name, each given to every family that has it (``--param a=4`` for Pareto)
    params: dict | None = None


def run_name(family: str, sigma: float, params: dict | None = None) -> str:
    """The folder and file name of one (noise, sigma) run: ``Gaussian-sigma0.5``; shape parameters other
    than the paper's defaults are part of it (``Pareto-a4-sigma0.5``), so each setting keeps its own model."""
    from wulff.distributions import registry

    defaults = registry.default_parameters(family) if params else {}
    tag = "".join(f"-{k}{v:g}" for k, v in (params or {}).items() if defaults.get(k) != v)
    return f"{family}{tag}-sigma{sigma:g}"


def family_parameters(families: Sequence[str], d: int, given: dict | None) -> dict[str, dict]:
    """The shape parameters of each family (canonical names): those of ``given`` it has, the rest from the
    paper's defaults. Training is strict: a parameter without a default must be given (``--param``), and
    one that none of the families has is refused; both are a :class:`~wulff.errors.ParameterError`."""
    from wulff.distributions import registry
    from wulff.errors import ParameterError

    given = dict(given or {})
    unused = sorted(k for k in given if not any(k in registry.shape_parameters(f) for f in families))
    if unused:
        raise ParameterError(f"--param {', '.join(unused)}: none of {', '.join(families)} has this shape "
                             "parameter")
    shapes = {}
    for family in families:
        own = {k: v for k, v in given.items() if k in registry.shape_parameters(family)}
        missing = [k for k in registry.shape_parameters(family) if k not in own
                   and k not in registry.default_parameters(family)]
        if missing:
            example = registry.example_parameters(family, d)
            raise ParameterError(f"{family} needs its shape parameter {', '.join(missing)} (no paper default): "
                                 "pass it with --param, e.g. " + " ".join(f"--param {k}={example[k]:g}"
                                                                         for k in missing))
        shapes[family] = registry.check_parameters(family, d, own)
    return shapes


def _certify_meta(result: Path, meta: dict, epochs: int) -> dict:
    """``meta`` with the epochs the model was trained for; a result file begun before they were recorded
    keeps its header (so it still resumes)."""
    from wulff.certify import read_results

    if result.exists():
        try:
            if "epochs" not in read_results(result).meta:
                return meta
        except (ValueError, OSError):
            pass  # certify_dataset says what is wrong with the file
    return {**meta, "epochs": epochs}


def _train_and_certify(exp: Experiment, settings: Settings, out: Path, family: str, sigma: float, data,
                       env, radii, progress: bool, log: Callable[[str], None], params: dict | None = None) -> Path:
    """Train (or resume, or reuse a longer-trained model: said in one line) the model of one (noise, sigma)
    and certify the test inputs (or resume); the result file's header records the epochs really trained."""
    import torch

    from wulff.certify import Smoothed, certify_dataset
    from wulff.certify.dataset import IDENTITY_KEY, model_identity
    from wulff.distributions import registry
    from wulff.train import TrainConfig, build_model, train_smoothed, training_meta
    from wulff.train.threads import apply_threads

    train_set, test_set, info, model_name = data
    q = registry.build(family, info.d, sigma=sigma, **(params or {}))
    torch.manual_seed(settings.seed)
    model = build_model(model_name, info.input_shape, info.num_classes, info.mean, info.std)
    apply_threads(settings.threads, model, info.input_shape, env.device)
    config = TrainConfig(epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr,
                         seed=settings.seed)
    name = run_name(family, sigma, params)
    checkpoint = out / "models" / name / "checkpoint.pt"
    began = time.perf_counter()
    history = train_smoothed(model, q, train_set, config, checkpoint=checkpoint, env=env,
                             meta=training_meta(model_name, info, q), progress=progress, log=log)
    trained = time.perf_counter()
    model.eval()
    epochs = int(history[-1]["epoch"]) if history else 0
    result = out / exp.name / f"{name}.tsv"
    results = certify_dataset(
        Smoothed(model, q, info.num_classes, device=env.device), test_set, result, n0=settings.n0,
        n=settings.n, alpha=settings.alpha, batch_size=settings.certify_batch, adversaries=exp.adversaries,
        skip=settings.skip, seed=settings.seed, progress=progress, adaptive=settings.adaptive,
        radii=radii if settings.adaptive else None,
        meta=_certify_meta(result, {"sigma": sigma, "model": model_name, "dataset": info.name, "split": "test",
                                    IDENTITY_KEY: model_identity(training_meta(model_name, info, q))}, epochs))
    seconds = float(results.columns["seconds"].sum())
    samples = results.samples
    rate = f", {float(samples.sum()) / seconds:,.0f} samples/s" if samples is not None and seconds > 0 else ""
    reused = f" (reused: more than the {settings.epochs} asked)" if epochs > settings.epochs else ""
    log(f"  {family:<12} sigma = {sigma:<5g} {epochs} epochs{reused}, loss "
        f"{history[-1]['loss'] if history else float('nan'):.3f}, "
        f"smoothed accuracy {100 * results.correct.mean():.1f}% ({trained - began:.0f} s training, "
        f"{time.perf_counter() - trained:.0f} s certifying{rate})")
    return result


def run_experiment(name: str, out: str | Path, settings: Settings | None = None, *, progress: bool = True,
                   log: Callable[[str], None] = print) -> str:
    """Run (or resume) experiment ``name`` into the folder ``out`` and return its report (markdown),
    also written to ``out/<name>/report.md`` with the tables and plots beside it."""
    from wulff.distributions import registry
    from wulff.train import load_dataset
    from wulff.train.distributed import setup

    if name not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {', '.join(EXPERIMENTS)}; got {name!r}")
    exp = EXPERIMENTS[name]
    settings = settings or Settings()
    out = Path(out)
    families = tuple(registry.family(f).__name__ for f in (settings.families or exp.families))
    sigmas = tuple(sorted(set(settings.sigmas or default_sigmas(settings.dataset))))
    train_set, info = load_dataset(settings.dataset, "train", settings.data_dir)
    shapes = family_parameters(families, info.d, settings.params)
    test_set, _ = load_dataset(settings.dataset, "test", settings.data_dir)
    model_name = settings.model or ("mlp" if info.name == "digits" else "resnet18")
    env = setup(settings.device)
    scale = settings.radius_scale or radius_scale(info.d)
    paper = exp.paper.get(exp.adversaries[0])
    radii = None if paper is None else [0.0] + [scale * r for r in paper.radii]
    log(f"wulff experiment {name}: {', '.join(families)} on {info.name} (d = {info.d}, {len(train_set)} train, "
        f"{len(test_set)} test, every {settings.skip}-th certified), model {model_name} on {env.device}, "
        f"sigma in {{{', '.join(f'{s:g}' for s in sigmas)}}}, {settings.epochs} epochs, "
        f"{'adaptive n_max' if settings.adaptive else 'n0 + n'} = {settings.n0} + {settings.n}, "
        f"alpha = {settings.alpha}; radii scaled by {scale:.4g} from CIFAR-10; output in {out}/")
    began = time.perf_counter()
    files = [_train_and_certify(exp, settings, out, family, sigma, (train_set, test_set, info, model_name), env,
                                radii, progress, log, shapes[family])
             for family in families for sigma in sigmas]
    report = write_report(exp, files, out / exp.name, scale, sigmas, log=log, epochs=settings.epochs)
    log(f"total time {time.perf_counter() - began:.0f} s")
    return report


# -- the report ---------------------------------------------------------------------------------------
def capped(curves: dict, sigmas: Sequence[float]) -> list[str]:
    """The noises whose envelope is set by the largest sigma of the sweep at some radius with nonzero
    accuracy beyond 0 (a larger sigma might certify more there): one line each."""
    top = max(sigmas)
    lines = []
    for curve in curves.values():
        at = [r for r, a, s in zip(curve.radii, curve.accuracy, curve.best_sigma) if r > 0 and a > 0 and s == top]
        if at:
            lines.append(f"{curve.name}: the largest sigma ({top:g}) sets its envelope at radius "
                         f"{', '.join(f'{r:.3g}' for r in at)}; a wider sweep might certify more there")
    return lines


def paper_comparison(curves: dict, paper: PaperTable, scale: float, adversary: str) -> str:
    """The paper's rows beside ours at the scaled radii (markdown), ours with the sigma that won."""
    head = f"| {adversary} radius, paper (CIFAR-10) | " + " | ".join(f"{r:g}" for r in paper.radii) + " |"
    here = f"| radius here (x {scale:.4g}) | " + " | ".join(f"{scale * r:.3g}" for r in paper.radii) + " |"
    lines = [head, "|---|" + "---:|" * len(paper.radii), here]
    for family, values in paper.rows.items():
        lines.append(f"| paper: {family} | " + " | ".join(f"{v:g}" for v in values) + " |")
    for curve in curves.values():
        cells = [f"{100 * a:.1f} (sigma {s:g})" for a, s in zip(curve.accuracy[1:], curve.best_sigma[1:])]
        lines.append(f"| here: {curve.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(curves: dict, adversary: str, finding: str, expected: Sequence[str] = ()) -> str:
    """Which noise leads at each radius (ties listed), set against what the paper found: with
    ``expected`` (the noises the paper found on top), the radii where one of them leads or ties
    (agrees) and those where another noise is strictly ahead (disagrees)."""
    import numpy as np

    names = list(curves)
    acc = np.stack([curves[n].accuracy for n in names])
    radii = next(iter(curves.values())).radii
    leaders, agree, disagree = [], [], []
    for k, r in enumerate(radii):
        if acc[:, k].max() <= 0:
            continue
        best = [names[i] for i in range(len(names)) if acc[i, k] == acc[:, k].max()]
        leaders.append(f"{r:.3g}: {' = '.join(best)}")
        (agree if any(name in expected for name in best) else disagree).append(f"{r:.3g}")
    text = (f"The paper found: {finding}. Here, the leader at each {adversary} radius: "
            + ("; ".join(leaders) or "none (nothing certified)") + ".")
    if expected and leaders:
        text += (f" Agrees with the paper at radius {', '.join(agree) or 'none'}; "
                 f"disagrees at {', '.join(disagree) or 'none'}.")
    return text


def trained_epochs(runs, asked: int | None = None) -> str:
    """One line on how long the models were trained, read from the result files' headers: "Models trained
    for E epochs." (E = ``asked``, else the first file's count), naming each model trained for another
    number (one reused from an earlier, longer run); "" when no header records it."""
    counted = [(run, run.meta["epochs"]) for run in runs if isinstance(run.meta.get("epochs"), int)]
    if not counted:
        return ""
    usual = asked if asked is not None else counted[0][1]
    other = [f"{run.meta.get('distribution')} sigma {run.meta.get('sigma')}: {epochs}" for run, epochs in counted
             if epochs != usual]
    if not other:
        return f"Models trained for {usual} epochs."
    return (f"Models trained for {usual} epochs, except {'; '.join(other)} epochs (reused from earlier, longer "
            "runs in models/).")


def write_report(exp: Experiment, files: Sequence[Path], folder: Path, scale: float, sigmas: Sequence[float], *,
                 log: Callable[[str], None] = print, epochs: int | None = None) -> str:
    """Tables (upper envelopes over sigma), plots, the paper's numbers beside ours and the checks; the
    epochs each model was trained for (``epochs``: the number asked, to name models reused from longer runs)."""
    import numpy as np

    from wulff.certify import read_results
    from wulff.certify.analysis import markdown_table, radius_grid, report, screen_runs, upper_envelopes

    runs = [read_results(f) for f in files]
    sections = []
    for adversary in exp.adversaries:
        kept, _ = screen_runs(runs, adversary)
        paper = exp.paper.get(adversary)
        radii = (np.array([0.0] + [scale * r for r in paper.radii]) if paper is not None
                 else radius_grid(kept or runs, adversary))
        plot = folder / f"certified_accuracy_{adversary}.png"
        title = (f"{runs[0].meta.get('dataset', '?')}: certified accuracy (%) against {adversary}\n"
                 f"best over sigma in {{{', '.join(f'{s:g}' for s in sigmas)}}}")
        table = report(runs, adversary, radii, plot=plot, title=title, warn=lambda line: log(f"  warning: {line}"))
        curves = upper_envelopes(kept, radii, adversary)
        parts = [f"## {exp.name}: {adversary}", "", table, ""]
        if paper is not None:
            parts += [f"Beside the paper ({paper.source}); radii scaled by {scale:.4g} = sqrt(d / 3072):", "",
                      paper_comparison(curves, paper, scale, adversary), ""]
            if kept:
                grid = radius_grid(kept, adversary)
                caption = "Over the whole range of radii the data reach:"
                if any(run.meta.get("adaptive") for run in kept):
                    caption += (f" (adaptive certification stops an input once radius {radii[-1]:.3g} is "
                                "certified, so beyond it these numbers and the plot are lower bounds)")
                parts += [markdown_table(upper_envelopes(kept, grid, adversary), adversary, caption=caption), ""]
        parts += [verdict(curves, adversary, exp.finding[adversary], exp.leaders.get(adversary, ())), ""]
        limits = capped(curves, sigmas)
        parts += ["Sweep check: " + ("no noise's envelope is set by its largest sigma." if not limits
                                     else "; ".join(limits) + "."), "", f"plot: {plot}", ""]
        sections.append("\n".join(parts))
    note = trained_epochs(runs, epochs)
    text = "\n".join(sections) + (f"\n{note}\n" if note else "")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.md").write_text(text, encoding="utf-8")
    log("\n" + text)
    return text


__all__ = ["EXPERIMENTS", "Experiment", "PaperTable", "TABLE1_CIFAR10", "PAPER_SIGMAS", "DIGITS_SIGMAS",
           "Settings", "run_experiment", "radius_scale", "default_sigmas", "write_report", "capped",
           "paper_comparison", "verdict", "family_parameters", "trained_epochs"]
