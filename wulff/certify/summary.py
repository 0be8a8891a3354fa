"""Per result set: clean accuracy, average certified radius (ACR), empirical robust accuracy from
attack files, and the soundness alarm (:mod:`wulff.certify.attack_dataset`).

ACR (Zhai et al., 2020) is the mean over inputs of the certified radius, counted 0 for a wrong or
abstaining answer. It is one number, but a biased one: an input far from every decision boundary
can add a radius many times the typical one, so a classifier that is very robust on easy inputs and
wrong on hard ones can beat one that is moderately robust everywhere (Xia et al., 2024). Certified
accuracy as a function of the radius shows where robustness is gained or lost, which is why the
tables and plots stay the primary view and ACR is printed beside them.

Result sets of the reference codebases (a Cohen et al. 2019 certify log, an rs4a result folder of Yang
et al. 2020: :mod:`wulff.certify.foreign`) are rows of their own, labelled by path and format, never
combined with anything; what they record (and do not) is listed under the table
(:func:`foreign_lines`).

A report compares like with like: files that are no wulff result file are named and left out
(:func:`read_report_files`), so are rows that hold no valid number (named by file and line:
:func:`~wulff.certify.analysis.checked_rows`); each attack is held only against certificates of the
same model, norm and inputs, and the report says which ones, or that nothing was comparable
(:func:`compare_attacks`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .analysis import _name, checked_rows, report, row_key, row_labels, screen_runs
from .attack_dataset import (
    checked_pairs,
    common_inputs,
    incomparable,
    is_attack_file,
    read_attacks,
    robust_accuracy,
    soundness_alarms,
)
from .foreign import COHEN, FORMAT_KEY, NOT_RECORDED, is_cohen_log, is_foreign, known_settings, read_any_results
from .results import Results, read_results

#: the line printed under the summary table
ACR_NOTE = ("ACR = mean certified radius (0 when wrong or abstaining). Read the certified-accuracy curve "
            "first: ACR rewards inputs that are already easy with very large radii, so it can rank a "
            "classifier that is robust on easy inputs and wrong on hard ones above one that is "
            "moderately robust everywhere (Xia et al., 2024).")


def average_certified_radius(run: Results, adversary: str) -> float:
    """The mean over the run's inputs of the certified radius against ``adversary``, 0 where the
    answer is wrong or ABSTAIN."""
    return float(np.mean(np.where(run.correct, run.radius(adversary), 0.0))) if len(run) else float("nan")


def clean_accuracy(run: Results) -> float:
    """The fraction of inputs the smoothed classifier answers correctly (certified at radius 0)."""
    return float(run.correct.mean()) if len(run) else float("nan")


def summary_table(runs: list[Results], adversary: str) -> str:
    """One markdown row per result set: its noise (labelled as its table row, :func:`row_labels`),
    sigma, inputs, clean accuracy and ACR; a result set of another codebase (:func:`foreign_label`)
    shows what its format records ("not recorded" otherwise)."""
    lines = [f"| result set | noise | sigma | inputs | clean accuracy (%) | ACR ({adversary}) |",
             "|---|---|---:|---:|---:|---:|"]
    labels = row_labels(row_key(run) for run in runs if not is_foreign(run))
    for run in runs:
        noise = labels[row_key(run)] if not is_foreign(run) else _foreign_noise(run)
        sigma = run.meta.get("sigma", NOT_RECORDED if is_foreign(run) else None)
        lines.append(f"| {_name(run)} | {noise} | "
                     f"{sigma if not isinstance(sigma, float) else f'{sigma:g}'} | {len(run)} | "
                     f"{100 * clean_accuracy(run):.1f} | {average_certified_radius(run, adversary):.3f} |")
    return "\n".join(lines)


def _foreign_noise(run: Results) -> str:
    return f"{NOT_RECORDED} (Gaussian in Cohen's codebase)" if run.meta.get(FORMAT_KEY) == COHEN else NOT_RECORDED


def foreign_label(run: Results) -> str:
    """The table row of a result set of another codebase: its path and format."""
    short = "Cohen log" if run.meta.get(FORMAT_KEY) == COHEN else "rs4a folder"
    return f"{run.path} [{short}]"


def foreign_lines(runs: list[Results]) -> str:
    """Under the table: per result set of another codebase, what its format records
    (:func:`~wulff.certify.foreign.known_settings`)."""
    return ("results from elsewhere (each its own row, not combined with any other):\n"
            + "\n".join(f"- {run.path}: {known_settings(run)}" for run in runs))


@dataclass
class AttackComparison:
    """What :func:`compare_attacks` found: markdown lines per attack file (its empirical robust
    accuracy, then each certification file it was held against, or why nothing was comparable), the
    soundness alarms as lines, and how many certified (input, eps) pairs were checked in all."""

    lines: list[str]
    alarms: list[str]
    checked: int

    def verdict(self) -> str:
        """The closing line: the alarms, else that no certificate was broken (and how many were
        checked), else that nothing was comparable."""
        if self.alarms:
            return "\n".join(f"**{line}**" for line in self.alarms)
        if self.checked:
            return (f"no certificate was broken by an attack (no soundness alarm): {self.checked} certified "
                    f"(input, eps) pair{'s' if self.checked != 1 else ''} checked")
        return ("nothing comparable: no attack met a certificate of the same model, norm and inputs at a "
                "radius >= its eps, so no certificate was tested (see above)")


def _sha(run: Results) -> str:
    sha = run.meta.get("model_sha256")
    return f"{sha[:12]}..." if isinstance(sha, str) else "not recorded"


def compare_attacks(attacks: list[Results], runs: list[Results]) -> AttackComparison:
    """Hold each attack file against every certification file of the same model, noise, data and norm
    with inputs in common (:func:`~wulff.certify.attack_dataset.incomparable`): eps in the attack's
    norm against the certified radius of that same norm, input by input."""
    lines, alarms, checked = [], [], 0
    for attack in attacks:
        adversary = attack.meta.get("adversary")
        accuracy = ", ".join(f"{100 * v:.1f} % at eps {e:g}" for e, v in robust_accuracy(attack).items())
        lines.append(f"- {_name(attack)} ({adversary}, {attack.meta.get('steps')} PGD steps, "
                     f"{attack.meta.get('samples')} draws per step): empirical robust accuracy "
                     f"{accuracy or 'unknown (no valid rows)'}")
        reasons = {}
        for run in runs:
            reason = incomparable(attack, run)
            if reason is not None:
                reasons[_name(run)] = (run.meta.get("model_sha256") == attack.meta.get("model_sha256"), reason)
                continue
            pairs = checked_pairs(attack, run)
            checked += pairs
            lines.append(f"  - compared with {_name(run)}: {adversary} eps against its {adversary} radii, same "
                         f"model (weights {_sha(run)}), noise and data, {len(common_inputs(attack, run))} inputs "
                         f"in common: {pairs} certified (input, eps) pair{'s' if pairs != 1 else ''} checked")
            alarms += [f"{_name(attack)} vs {_name(run)}: {alarm}" for alarm in soundness_alarms(attack, run)]
        if len(reasons) == len(runs):
            same = [f"{name}: {reason}" for name, (same_model, reason) in reasons.items() if same_model]
            lines.append("  - nothing comparable: " + ("; ".join(same) if same else
                         f"no certification file read is of its model (weights {_sha(attack)}), noise and data"))
    return AttackComparison(lines, alarms, checked)


def attack_report(attacks: list[Results], runs: list[Results]) -> tuple[str, list[str]]:
    """(markdown lines on empirical robust accuracy per attack file and what it was compared with, the
    soundness alarms as lines): :func:`compare_attacks`."""
    comparison = compare_attacks(attacks, runs)
    return "\n".join(comparison.lines), comparison.alarms


def read_report_files(paths, warn=None) -> tuple[list[Results], list[Results]]:
    """(certification files, attack files) read from ``paths``; a Cohen certify log or an rs4a result
    folder (:mod:`wulff.certify.foreign`) counts as a certification file. A path that is none of these
    (notes, an empty or binary file, a bad header, a folder named *.tsv, an unreadable file) is named in
    a warning given to ``warn`` (a callable taking one line) and left out."""
    runs, attacks = [], []
    for path in paths:
        try:
            if Path(path).is_dir() or is_cohen_log(path):
                runs.append(read_any_results(path))
                continue
            attack = is_attack_file(path)
            (attacks if attack else runs).append(read_attacks(path) if attack else read_results(path))
        except (OSError, ValueError) as exc:
            (warn or (lambda _line: None))(f"{path}: left out: {_why_unreadable(path, exc)}")
    return runs, attacks


def _why_unreadable(path, exc: Exception) -> str:
    if isinstance(exc, OSError):
        return f"cannot be read ({exc.strerror or exc})"
    if Path(path).is_file() and Path(path).stat().st_size == 0:
        return "it is empty, not a wulff result file"
    text = str(exc)
    for prefix in (f"{path}, ", f"{path}: ", f"{path} "):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


def _checked(runs, warn) -> list[Results]:
    """The runs without their invalid rows, each such row named through ``warn``."""
    checked = []
    for run in runs:
        run, warnings_ = checked_rows(run)
        for line in warnings_:
            warn(line)
        checked.append(run)
    return checked


def report_with_summary(runs: list[Results], adversary: str, radii=None, *, attacks=(), alarm=None,
                        allow_mixed: bool = False, **options) -> str:
    """:func:`wulff.certify.analysis.report` (``options`` go to it), then the clean accuracy and ACR of
    each file it tabulates, with :data:`ACR_NOTE`; result sets of other codebases are rows of their own
    (:func:`foreign_label`), with what they record (:func:`foreign_lines`); for ``attacks`` (attack
    files) the empirical robust accuracy, what each was compared with (:func:`compare_attacks`) and the
    soundness alarms, each alarm also given to ``alarm`` (a callable taking a line). Invalid rows of any
    file are named through ``options["warn"]`` and left out of every figure."""
    warn = options.get("warn") or (lambda _line: None)
    foreign = {foreign_label(run): run for run in _checked([run for run in runs if is_foreign(run)], warn)}
    runs, attacks = _checked([run for run in runs if not is_foreign(run)], warn), _checked(attacks, warn)
    text = report(runs, adversary, radii, allow_mixed=allow_mixed, separate=foreign, **options)
    kept, _ = screen_runs(runs, adversary, allow_mixed=allow_mixed) if runs else ([], [])
    shown = [run for run in foreign.values() if len(run) and adversary in run.adversaries]
    text += "\n\n" + summary_table(kept + shown, adversary) + "\n\n" + ACR_NOTE
    if shown:
        text += "\n\n" + foreign_lines(shown)
    if attacks:
        comparison = compare_attacks(attacks, runs)
        text += ("\n\nempirical robust accuracy (PGD on the soft smoothed classifier), each attack held against "
                 "the certificates of the same model, norm and inputs:\n" + "\n".join(comparison.lines))
        for line in comparison.alarms:
            (alarm or (lambda _line: None))(line)
        text += "\n\n" + comparison.verdict()
    return text
