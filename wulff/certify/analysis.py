"""Certified accuracy from result files, the upper envelope over a sweep of sigma (Section 6, Fig. 2),
a Table-1-style markdown table and a plot of certified accuracy against radius.

One table row is one noise and one way of training (:func:`row_key`: the model identity each header
records, :func:`wulff.certify.dataset.model_identity`), labelled so that rows of models trained
differently can be told apart (:func:`row_labels`). Which files a table combines is decided by
:func:`screen_runs`: complete, compatible files, one model per row and sigma, without the rows that
hold no valid number (:func:`checked_rows`, each named by file and line)."""
from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from wulff.certificate import check_adversary

from .classifier import FORM_CODES
from .dataset import IDENTITY_KEY
from .results import Results, form_column, one_class_column, radius_column, settings_difference
from .two_class import ONE_CLASS


def certified_accuracy(results: Results, radii, adversary: str) -> np.ndarray:
    """The fraction of inputs classified correctly with certified radius above r, for each r in radii.

    At r = 0 this is the smoothed classifier's (non-abstaining) accuracy. A radius R certifies every
    perturbation of norm strictly below R, so an input counts at r > 0 only when R > r, or R >= r
    for a row whose ``closed`` column (DSSN files) is 1: its closed ball of radius R is certified.
    """
    adversary = check_adversary(adversary)
    radii = np.atleast_1d(np.asarray(radii, dtype=np.float64))
    if len(results) == 0:
        raise ValueError("the result file has no rows yet")
    radius = results.radius(adversary)[None, :]
    r = radii[:, None]
    closed = results.columns.get("closed", np.zeros(len(results))) == 1  # absent (older files): open balls
    certified = results.correct[None, :] & ((radius > r) | (r == 0) | ((radius == r) & closed[None, :]))
    return certified.mean(axis=1)


@dataclass
class Curve:
    """Certified accuracy of one distribution at each radius: the upper envelope over its runs."""

    name: str
    radii: np.ndarray
    accuracy: np.ndarray
    best_sigma: np.ndarray  # the sigma whose model attains the envelope at each radius

    @property
    def sigmas(self) -> list[float]:
        return sorted(set(self.best_sigma.tolist()))


def _named(name, params: dict) -> str:
    """name(k=v, ...), numbers in their shortest form; just the name without parameters."""
    shape = ", ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}"
                      for k, v in (params or {}).items())
    return f"{name}({shape})" if shape else str(name)


def distribution_label(results: Results) -> str:
    """How a run is named in tables: its family plus any shape parameters."""
    return _named(results.meta.get("distribution", "?"), results.meta.get("params") or {})


def training_identity(run: Results) -> tuple[str, str, str] | None:
    """(architecture, training data, objective with its parameters) of the run's model as its header
    records them (:func:`wulff.certify.dataset.model_identity`); None for a file written before
    identities were recorded."""
    identity = run.meta.get(IDENTITY_KEY)
    if not isinstance(identity, dict):
        return None
    objective = identity.get("objective") if isinstance(identity.get("objective"), dict) else {}
    return (str(identity.get("architecture")), str(identity.get("training_data")),
            _named(objective.get("name", "?"), objective.get("params") or {}))


def row_key(run: Results) -> tuple:
    """The table row a run belongs to: its noise and how its model was trained. The runs of one row
    differ only in sigma (and their weights), and the row is their upper envelope."""
    return distribution_label(run), training_identity(run)


def _identity_part(position: int, value: str) -> str:
    return (value, f"trained on {value}", value)[position]


def row_labels(keys) -> dict[tuple, str]:
    """A label per row key (:func:`row_key`): the noise alone when every row's model was trained alike
    (or none records how), else the noise plus what tells the models apart, e.g. ``Gaussian
    [macer(m=16, ...)]`` and ``Gaussian [consistency(...)]`` (``training not recorded`` for files
    written before identities were recorded)."""
    keys = list(dict.fromkeys(keys))
    if len({identity for _, identity in keys}) <= 1:
        return {key: key[0] for key in keys}
    recorded = [identity for _, identity in keys if identity is not None]
    varying = [j for j in range(3) if len({identity[j] for identity in recorded}) > 1] or [2]
    return {(noise, identity): f"{noise} [" + ("training not recorded" if identity is None else
                                               ", ".join(_identity_part(j, identity[j]) for j in varying)) + "]"
            for noise, identity in keys}


def upper_envelopes(runs: list[Results], radii, adversary: str) -> dict[str, Curve]:
    """Per table row (:func:`row_key`: one noise, one way of training), the pointwise maximum over its
    runs (one per sigma) of certified accuracy (the paper's Fig. 2 / Table 1 procedure, Appendix D),
    keyed by the row's label (:func:`row_labels`)."""
    radii = np.atleast_1d(np.asarray(radii, dtype=np.float64))
    groups: dict[tuple, list[Results]] = defaultdict(list)
    for run in runs:
        groups[row_key(run)].append(run)
    labels = row_labels(groups)
    curves = {}
    for key, members in groups.items():
        table = np.stack([certified_accuracy(m, radii, adversary) for m in members])
        best = table.argmax(axis=0)
        sigma = np.array([float(m.meta.get("sigma", math.nan)) for m in members])
        curves[labels[key]] = Curve(labels[key], radii, table.max(axis=0), sigma[best])
    return curves


def markdown_table(curves: dict[str, Curve], adversary: str, *, caption: str | None = None) -> str:
    """Table 1 of the paper: certified accuracy (%) per distribution at each radius, best in bold."""
    adversary = check_adversary(adversary)
    if not curves:
        raise ValueError("no results to tabulate")
    radii = next(iter(curves.values())).radii
    best = np.max(np.stack([c.accuracy for c in curves.values()]), axis=0)
    head = f"| {adversary} radius | " + " | ".join(f"{r:g}" for r in radii) + " |"
    rule = "|---|" + "---:|" * len(radii)
    lines = ([caption, ""] if caption else []) + [head, rule]
    for curve in curves.values():
        cells = [(f"**{100 * a:.1f}**" if a == b and b > 0 else f"{100 * a:.1f}")
                 for a, b in zip(curve.accuracy, best)]
        lines.append(f"| {curve.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(curves: dict[str, Curve], adversary: str, path: str | os.PathLike, *,
                title: str | None = None) -> str:
    """Write a PNG of certified accuracy against radius, one curve per distribution."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    adversary = check_adversary(adversary)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for curve in curves.values():
        ax.plot(curve.radii, 100 * curve.accuracy, label=curve.name, linewidth=2)
    ax.set_xlabel(f"{adversary} radius")
    ax.set_ylabel("certified accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def radius_grid(curves_or_runs, adversary: str, points: int = 8) -> np.ndarray:
    """A round grid of radii from 0 to about the largest certified radius in the runs."""
    largest = max((float(np.max(r.radius(adversary), initial=0.0)) for r in curves_or_runs), default=0.0)
    if largest <= 0:
        return np.array([0.0])
    raw = largest / (points - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), default=raw)
    return np.round(np.arange(points) * step, 10)


#: a file whose presence makes a folder an rs4a result folder (:mod:`wulff.certify.foreign`)
RS4A_MARKER = "prob_lb.npy"


def collect_result_files(paths) -> list[str]:
    """Result files named directly, plus every *.tsv below named folders (shard files excluded) and
    every folder below them holding an rs4a result (``prob_lb.npy``, :mod:`wulff.certify.foreign`); a
    named folder that is an rs4a result is itself one."""
    from pathlib import Path

    found = []
    for p in map(Path, paths):
        if p.is_dir() and (p / RS4A_MARKER).is_file():
            found.append(str(p))
        elif p.is_dir():
            found += sorted([str(f) for f in p.rglob("*.tsv") if ".shard-" not in f.name]
                            + [str(f.parent) for f in p.rglob(RS4A_MARKER)])
        elif p.exists():
            found.append(str(p))
        else:
            raise FileNotFoundError(f"no result file or folder at {p}")
    if not found:
        raise FileNotFoundError(f"no result files (*.tsv, or rs4a folders) in {', '.join(map(str, paths))}")
    return found


#: settings that must agree between the files of one table (same statistics, same inputs)
COMPATIBLE_KEYS = ("n", "alpha", "dataset", "dataset_size", "skip")


def _name(run: Results) -> str:
    return run.path or f"a {distribution_label(run)} run"


#: the line of a result file that holds its first row (line 1: the settings, line 2: the column names)
FIRST_ROW_LINE = 3
#: integer columns that are flags: a valid row holds 0 or 1 there
FLAG_COLUMNS = ("correct", "robust", "closed")
#: invalid rows named one by one per file; more are counted
NAMED_INVALID_ROWS = 10


@dataclass
class CheckedResults(Results):
    """A result file's rows less its invalid ones (:func:`invalid_rows`), whose line numbers it keeps."""

    invalid_lines: tuple[int, ...] = ()

    @property
    def rows_in_file(self) -> int:
        """The rows the file holds, invalid ones included (what its coverage is judged by)."""
        return len(self) + len(self.invalid_lines)

    @property
    def complete(self) -> bool:
        total = self.meta.get("indices_total")
        return total is not None and int(self.meta.get("num_shards", 1)) == 1 and self.rows_in_file == int(total)


def invalid_rows(run: Results) -> list[tuple[int, str]]:
    """(position, why) of each row no figure may use: a number that is not finite (NaN or inf, as a
    hand edit or a torn write leaves), a radius or eps below 0, a flag other than 0 and 1, or a form
    code (``form_<adversary>``) that is none of :data:`~wulff.certify.classifier.FORM_CODES`."""
    bad: dict[int, str] = {}
    with np.errstate(invalid="ignore"):
        for name, column in run.columns.items():
            if column.dtype.kind == "f":
                size = name.startswith("radius_") or name == "eps"
                wrong = ~np.isfinite(column) | ((column < 0) if size else False)
            elif name in FLAG_COLUMNS:
                wrong = (column != 0) & (column != 1)
            elif name.startswith("form_"):
                wrong = ~np.isin(column, list(FORM_CODES.values()))
            else:
                continue
            for position in np.flatnonzero(wrong).tolist():
                bad.setdefault(position, f"{name} = {column[position]!r}")
    return sorted(bad.items())


def checked_rows(run: Results) -> tuple[CheckedResults, list[str]]:
    """(``run`` without its invalid rows (:func:`invalid_rows`), warnings naming each by file and line);
    a run already checked comes back as it is, without warnings."""
    if isinstance(run, CheckedResults):
        return run, []
    bad = invalid_rows(run)
    keep = np.ones(len(run), dtype=bool)
    keep[np.array([position for position, _ in bad], dtype=np.int64)] = False
    lines = tuple(position + FIRST_ROW_LINE for position, _ in bad)
    checked = CheckedResults(run.meta, {name: column[keep] for name, column in run.columns.items()}, run.path,
                             run.torn, lines)
    warnings_ = [f"{_name(run)}, line {line}: {why}: not a valid row, left out of every figure"
                 for line, (_, why) in list(zip(lines, bad))[:NAMED_INVALID_ROWS]]
    if len(bad) > NAMED_INVALID_ROWS:
        warnings_.append(f"{_name(run)}: {len(bad) - NAMED_INVALID_ROWS} more invalid rows left out of every "
                         f"figure (lines {', '.join(map(str, lines[NAMED_INVALID_ROWS:][:20]))}"
                         f"{', ...' if len(bad) > NAMED_INVALID_ROWS + 20 else ''})")
    return checked, warnings_


def _rows_in_file(run: Results) -> int:
    return run.rows_in_file if isinstance(run, CheckedResults) else len(run)


def _defects(run: Results) -> list[str]:
    """Why a file should not enter a table on its own merits (empty when it is complete and clean)."""
    defects = []
    if run.torn:
        defects.append("torn (its last row was cut off mid-write; rerun `wulff certify` to finish it)")
    total = run.meta.get("indices_total")
    if int(run.meta.get("num_shards", 1)) != 1:
        defects.append(f"one shard of {run.meta.get('num_shards')} (merge the shards with `wulff merge`)")
    elif total is None:
        defects.append("of unknown coverage (its header lacks indices_total)")
    elif _rows_in_file(run) != int(total):
        defects.append(f"partial ({_rows_in_file(run)} of {int(total)} inputs; rerun `wulff certify` to "
                       "finish it)")
    if run.meta.get("split", "test") != "test":
        defects.append(f"certified on the {run.meta.get('split')} split, not the test split")
    return defects


#: settings of the Monte Carlo statistics, which a deterministic (DSSN) run does not have
STATISTICAL_KEYS = ("n", "alpha")


def _setting(run: Results) -> tuple:
    """The run's :data:`COMPATIBLE_KEYS`; a deterministic run's statistical ones are None (any)."""
    exact = bool(run.meta.get("deterministic"))
    return tuple(None if exact and k in STATISTICAL_KEYS else _hashable(run.meta.get(k)) for k in COMPATIBLE_KEYS)


def _compatible(setting: tuple, reference: tuple | None) -> bool:
    return reference is not None and all(
        mine is None and key in STATISTICAL_KEYS or mine == theirs
        for key, mine, theirs in zip(COMPATIBLE_KEYS, setting, reference))


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


def screen_runs(runs: list[Results], adversary: str, *, allow_mixed: bool = False
                ) -> tuple[list[Results], list[str]]:
    """(the runs one table may combine, one warning per file left out or doubtful, naming it).

    A table combines complete, untorn, test-split files that share :data:`COMPATIBLE_KEYS` (the
    setting most files share wins; deterministic DSSN files, which have no n or alpha of their own,
    match on the others). Others are left out with a warning; with ``allow_mixed`` they are
    tabulated anyway (still with the warning). Files without ``adversary`` radii are always left out.
    Invalid rows (:func:`checked_rows`) are left out of the kept runs, each named in a warning; files
    of two different models of one table row and sigma (:func:`model_conflicts`) are left out too.
    """
    adversary = check_adversary(adversary)
    warnings_: list[str] = []
    usable = []
    for run in runs:
        run, invalid = checked_rows(run)
        warnings_ += invalid
        if not len(run):
            warnings_.append(f"{_name(run)}: left out: "
                             + ("every row is invalid" if run.invalid_lines else "it has no rows yet"))
        elif adversary not in run.adversaries:
            warnings_.append(f"{_name(run)}: left out: it has no {adversary} radii")
        else:
            usable.append(run)
    clean = [run for run in usable if not _defects(run)]
    sampled = [run for run in clean if not run.meta.get("deterministic")]  # they fix n and alpha
    common = Counter(_setting(r) for r in (sampled or clean)).most_common(1)
    reference = common[0][0] if common else None
    action = "included anyway (--allow-mixed)" if allow_mixed else "left out"
    problems_of = {}
    for run in usable:
        problems = _defects(run)
        if not problems and not _compatible(_setting(run), reference):
            problems = ["certified with other settings than the table's other files (" + ", ".join(
                f"{k} = {run.meta.get(k)} vs {v}" for k, v in zip(COMPATIBLE_KEYS, reference)
                if _hashable(run.meta.get(k)) != v) + ")"]
        problems_of[id(run)] = problems
    conflicts = model_conflicts([run for run in usable if not problems_of[id(run)]])
    kept = []
    for run in usable:
        problems = problems_of[id(run)] or conflicts.get(id(run), [])
        if problems:
            warnings_.append(f"{_name(run)}: {action}: " + "; ".join(problems))
        if allow_mixed or not problems:
            kept.append(run)
    return kept, warnings_


def _weights_difference(mine, theirs) -> str:
    return settings_difference({"model_sha256": mine}, {"model_sha256": theirs})


def model_conflicts(runs: list[Results]) -> dict[int, list[str]]:
    """Per run (by ``id``), why it cannot share its table row: another run of the same row
    (:func:`row_key`) and sigma is a different model (other weights, or weights not recorded). A row
    takes the best of one model per sigma; over two models of one sigma it would pick the luckier one."""
    slots: dict[tuple, list[Results]] = defaultdict(list)
    for run in runs:
        slots[(row_key(run), _hashable(run.meta.get("sigma")))].append(run)
    conflicts: dict[int, list[str]] = {}
    for members in slots.values():
        if len({m.meta.get("model_sha256") for m in members}) < 2:
            continue
        for run in members:
            mine = run.meta.get("model_sha256")
            others = "; ".join(f"{_name(o)}: " + _weights_difference(mine, o.meta.get("model_sha256"))
                               for o in members if o.meta.get("model_sha256") != mine)
            conflicts[id(run)] = [f"another model of the same noise, sigma and training ({others}); one table row "
                                  "takes the best model per sigma and would pick the luckier of them: report "
                                  "these files separately"]
    return conflicts


def describe_runs(runs: list[Results]) -> str:
    """The line printed under a table: n, alpha and the number of inputs of its files."""
    def values(key, fmt="{}"):
        found = sorted({run.meta.get(key) for run in runs},
                       key=lambda v: (v is None, v if isinstance(v, (int, float)) else math.inf, str(v)))
        return ", ".join("?" if v is None else fmt.format(v) for v in found)

    inputs = ", ".join(str(v) for v in sorted({len(run) for run in runs}))
    return (f"n = {values('n')}, alpha = {values('alpha', '{:g}')}, {inputs} inputs per file "
            f"({len(runs)} result file{'s' if len(runs) != 1 else ''})")


def describe_cost(runs: list[Results]) -> str:
    """Lines on the certification cost: the total forward passes (noisy samples, the sum of the
    ``samples`` column; for older files without it, n0 + n per input) and, per file, the mean
    samples per input (marked adaptive for ``--adaptive`` runs; "?" when unknown)."""
    known = [run.samples for run in runs if run.samples is not None]
    unknown = len(runs) - len(known)
    total = int(sum(int(s.sum()) for s in known))
    lines = [f"forward passes (noisy samples): {total:,} in all"
             + (f" (+ {unknown} file{'s' if unknown != 1 else ''} that do not record them)" if unknown else "")]
    for run in runs:
        samples = run.samples
        mean = "?" if samples is None or not len(samples) else f"{float(samples.mean()):,.0f}"
        kind = "adaptive, " if run.meta.get("adaptive") else ""
        how = (f"deterministic: the 2 lam Q = {run.meta.get('n', '?')} offsets" if run.meta.get("deterministic")
               else f"{kind}n0 + n = {run.meta.get('n0', '?')} + {run.meta.get('n', '?')}")
        lines.append(f"- {_name(run)}: {mean} samples per input ({how})")
    return "\n".join(lines)


def two_class_gain(run: Results, radii, adversary: str) -> tuple[int, int, np.ndarray] | None:
    """(answered inputs whose ``adversary`` radius the two-class form gave, answered inputs, for each r in
    ``radii`` how many more inputs are certified correct at r than with the p_A form's radius R(rho_lower)
    of the same bounds) for a run with the two-class columns; None for one without them."""
    form, one_class = form_column(adversary), one_class_column(adversary)
    if form not in run.columns or one_class not in run.columns or not len(run):
        return None
    answered = run.columns["prediction"] != -1
    two_class = int(np.count_nonzero(answered & (run.columns[form] != FORM_CODES[ONE_CLASS])))
    p_a_only = Results(run.meta, {**run.columns, radius_column(adversary): run.columns[one_class]}, run.path)
    gain = np.rint((certified_accuracy(run, radii, adversary) - certified_accuracy(p_a_only, radii, adversary))
                   * len(run)).astype(np.int64)
    return two_class, int(np.count_nonzero(answered)), gain


def describe_two_class(runs: list[Results], radii, adversary: str) -> str:
    """Lines on what the two-class form added, one per file that records it (:func:`two_class_gain`;
    "" when none does): "two-class form: N of M certified radii; at r = ...: +k inputs over the p_A form"."""
    radii = np.atleast_1d(np.asarray(radii, dtype=np.float64))
    lines = []
    for run in runs:
        found = two_class_gain(run, radii, adversary)
        if found is None:
            continue
        two_class, answered, gain = found
        at = ", ".join(f"{r:g}: {k:+d}" for r, k in zip(radii.tolist(), gain.tolist()))
        lines.append(f"- {_name(run)}: two-class form: {two_class} of {answered} certified {adversary} radii; "
                     f"inputs certified over the p_A form of the same bounds at r = {at}")
    return "\n".join(lines)


def screen_separate(runs: dict[str, Results], adversary: str) -> tuple[dict[str, Results], list[str]]:
    """(the result sets of ``runs`` (label -> run) a table can show as rows of their own, one warning
    per set left out): each without its invalid rows (:func:`checked_rows`), left out when it has no
    valid row or no ``adversary`` radii."""
    kept, warnings_ = {}, []
    for label, run in runs.items():
        run, invalid = checked_rows(run)
        warnings_ += invalid
        if not len(run):
            warnings_.append(f"{_name(run)}: left out: " + ("every row is invalid" if run.invalid_lines
                                                            else "it has no rows"))
        elif adversary not in run.adversaries:
            warnings_.append(f"{_name(run)}: left out: it has no {adversary} radii (it has "
                             f"{', '.join(run.adversaries)}: pass --adversary {run.adversaries[0]})")
        else:
            kept[label] = run
    return kept, warnings_


def report(runs: list[Results], adversary: str, radii=None, *, plot: str | os.PathLike | None = None,
           title: str | None = None, allow_mixed: bool = False, warn=None, separate=None) -> str:
    """The Table-1-style comparison (upper envelope over each distribution's sigmas) as markdown,
    followed by a line with n, alpha and the number of inputs and the forward passes spent
    (:func:`describe_cost`), and for files of two-class runs what that form added
    (:func:`describe_two_class`); with ``plot`` also the PNG of
    certified accuracy against radius. Only the files :func:`screen_runs` keeps are combined; its
    warnings go to ``warn`` (a callable taking one line; default: ignored). ``separate`` (label ->
    result set, e.g. results of other codebases) are rows of their own under their label, each its
    certified accuracy as it is (never combined, never screened for settings: :func:`screen_separate`)."""
    adversary = check_adversary(adversary)
    runs, warnings_ = screen_runs(runs, adversary, allow_mixed=allow_mixed)
    others, more = screen_separate(separate or {}, adversary)
    for line in warnings_ + more:
        (warn or (lambda _line: None))(line)
    if not runs and not others:
        raise ValueError(f"no complete, compatible test-split result file with {adversary} radii to tabulate"
                         + ("" if allow_mixed else " (pass --allow-mixed to tabulate the files left out)"))
    shown = runs + list(others.values())
    table_radii = radius_grid(shown, adversary) if radii is None else np.asarray(radii, dtype=np.float64)
    table = markdown_table(_curves(runs, others, table_radii, adversary), adversary, caption=title)
    if plot is not None:
        largest = max(float(np.max(r.radius(adversary), initial=0.0)) for r in shown)
        fine = np.linspace(0.0, max(largest, float(table_radii[-1])) * 1.05 or 1.0, 400)
        plot_curves(_curves(runs, others, fine, adversary), adversary, plot, title=title)
    gains = describe_two_class(runs, table_radii, adversary)
    return table + ("\n\n" + describe_runs(runs) + "\n\n" + describe_cost(runs) if runs else "") + \
        ("\n\n" + gains if gains else "")


def _curves(runs: list[Results], separate: dict[str, Results], radii, adversary: str) -> dict[str, Curve]:
    """The upper envelopes of ``runs`` (:func:`upper_envelopes`), then one curve per separate result set."""
    curves = upper_envelopes(runs, radii, adversary) if runs else {}
    radii = np.atleast_1d(np.asarray(radii, dtype=np.float64))
    for label, run in separate.items():
        curves[label] = Curve(label, radii, certified_accuracy(run, radii, adversary),
                              np.full(len(radii), math.nan))
    return curves
