"""Per result set: clean accuracy, average certified radius (ACR), empirical robust accuracy from
attack files, and the soundness alarm (:mod:`wulff.certify.attack_dataset`).

ACR (Zhai et al., 2020) is the mean over inputs of the certified radius, counted 0 for a wrong or
abstaining answer. It is one number, but a biased one: an input far from every decision boundary
can add a radius many times the typical one, so a classifier that is very robust on easy inputs and
wrong on hard ones can beat one that is moderately robust everywhere (Xia et al., 2024). Certified
accuracy as a function of the radius shows where robustness is gained or lost, which is why the
tables and plots stay the primary view and ACR is printed beside them.
"""
from __future__ import annotations

import numpy as np

from .analysis import _name, distribution_label, report, screen_runs
from .attack_dataset import matches, robust_accuracy, soundness_alarms
from .results import Results

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
    """One markdown row per result set: its noise, sigma, inputs, clean accuracy and ACR."""
    lines = [f"| result set | noise | sigma | inputs | clean accuracy (%) | ACR ({adversary}) |",
             "|---|---|---:|---:|---:|---:|"]
    for run in runs:
        sigma = run.meta.get("sigma")
        lines.append(f"| {_name(run)} | {distribution_label(run)} | "
                     f"{sigma if not isinstance(sigma, float) else f'{sigma:g}'} | {len(run)} | "
                     f"{100 * clean_accuracy(run):.1f} | {average_certified_radius(run, adversary):.3f} |")
    return "\n".join(lines)


def attack_report(attacks: list[Results], runs: list[Results]) -> tuple[str, list[str]]:
    """(markdown lines on empirical robust accuracy per attack file, the soundness alarms as lines).
    Each attack file is confronted with every certification run of the same model and noise."""
    lines, alarms = [], []
    for attack in attacks:
        accuracy = ", ".join(f"{100 * v:.1f} % at eps {e:g}" for e, v in robust_accuracy(attack).items())
        lines.append(f"- {_name(attack)} ({attack.meta.get('adversary')}, {attack.meta.get('steps')} PGD steps, "
                     f"{attack.meta.get('samples')} draws per step): empirical robust accuracy {accuracy}")
        for run in runs:
            if matches(attack, run):
                alarms += [f"{_name(attack)} vs {_name(run)}: {alarm}" for alarm in soundness_alarms(attack, run)]
    return "\n".join(lines), alarms


def report_with_summary(runs: list[Results], adversary: str, radii=None, *, attacks=(), alarm=None,
                        allow_mixed: bool = False, **options) -> str:
    """:func:`wulff.certify.analysis.report` (``options`` go to it), then the clean accuracy and ACR of
    each file it tabulates, with :data:`ACR_NOTE`; for ``attacks`` (attack files) the empirical robust
    accuracy and the soundness alarms, each alarm also given to ``alarm`` (a callable taking a line)."""
    text = report(runs, adversary, radii, allow_mixed=allow_mixed, **options)
    kept, _ = screen_runs(runs, adversary, allow_mixed=allow_mixed)
    text += "\n\n" + summary_table(kept, adversary) + "\n\n" + ACR_NOTE
    if attacks:
        lines, alarms = attack_report(list(attacks), runs)
        text += "\n\nempirical robust accuracy (PGD on the soft smoothed classifier):\n" + lines
        for line in alarms:
            (alarm or (lambda _line: None))(line)
        text += "\n\n" + ("\n".join(f"**{line}**" for line in alarms) if alarms else
                          "no certificate was broken by an attack (no soundness alarm)")
    return text
