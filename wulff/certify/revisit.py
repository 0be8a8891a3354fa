"""A new certification beside an old one of the same model and inputs (``wulff certify --compare-with``).

The old result set may be a wulff result file, a Cohen et al. (2019) certify log or an rs4a result
folder of Yang et al. (2020) (:func:`wulff.certify.foreign.read_any_results`); inputs are matched by
their index in the data set. Per input in both: the old and new prediction and radius against one norm
both certify (:func:`common_adversary`). The summary counts the inputs whose answer changed class (an
abstention, -1, counts as an answer), and among those with the same answer the ones whose radius grew,
shrank or stayed the same. An input with another label in the old set is not the same input (other
data or another order): it is counted apart and in no other figure.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from wulff.locking import OutputLock

from .foreign import DIGITS_KEY, FORMAT_KEY, is_foreign, printed_column
from .results import Results, radius_column


@dataclass(frozen=True)
class InputChange:
    """One input certified in both result sets."""

    index: int
    label: int
    old_prediction: int
    new_prediction: int
    old_radius: float  #: as the old set records it (as printed, for a Cohen log)
    new_radius: float
    digits: int | None = None  #: significant digits the old radius was printed with (None: exact)

    @property
    def change(self) -> str:
        """"changed class", "grew", "shrank" or "same"; against a radius printed to k significant
        digits the new one is compared rounded alike (what is the same to the old file's precision is
        "same")."""
        if self.old_prediction != self.new_prediction:
            return "changed class"
        new = self.new_radius if self.digits is None else float(f"{self.new_radius:.{self.digits}g}")
        if new > self.old_radius:
            return "grew"
        return "shrank" if new < self.old_radius else "same"


#: the kinds of :attr:`InputChange.change`, in the order a summary names them
CHANGES = ("grew", "shrank", "same", "changed class")


@dataclass
class Comparison:
    """Inputs of two result sets matched by index (:func:`compare_results`)."""

    adversary: str
    inputs: list[InputChange]
    only_old: int  #: inputs of the old set the new one lacks
    only_new: int  #: inputs of the new set the old one lacks
    other_label: list[int] = field(default_factory=list)  #: indices whose labels differ (not the same input)
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Inputs per kind of change (:data:`CHANGES`)."""
        found = [change.change for change in self.inputs]
        return {kind: found.count(kind) for kind in CHANGES}

    def summary(self, old_name: str) -> str:
        """The lines printed after the run: the counts, the inputs not in both and any notes."""
        counts = self.counts()
        lines = [f"compared with {old_name} ({self.adversary} radii): {len(self.inputs)} inputs in both: "
                 f"radius grew on {counts['grew']}, shrank on {counts['shrank']}, same on {counts['same']}; "
                 f"changed class on {counts['changed class']}"]
        if self.only_old or self.only_new:
            lines.append(f"  {self.only_new} inputs only in the new run, {self.only_old} only in {old_name}")
        if self.other_label:
            shown = ", ".join(map(str, self.other_label[:10])) + (", ..." if len(self.other_label) > 10 else "")
            lines.append(f"  {len(self.other_label)} inputs have another label in {old_name} (indices {shown}): "
                         "not the same inputs (other data or order), left out of the counts")
        return "\n".join(lines + [f"  note: {note}" for note in self.notes])

    def table(self, limit: int | None = None) -> str:
        """A markdown table, one row per input in both (the first ``limit`` when given)."""
        lines = [f"| index | label | old prediction | new prediction | old {self.adversary} radius | "
                 f"new {self.adversary} radius | change |", "|---:|---:|---:|---:|---:|---:|---|"]
        for c in self.inputs[:limit]:
            lines.append(f"| {c.index} | {c.label} | {c.old_prediction} | {c.new_prediction} | "
                         f"{c.old_radius:.6g} | {c.new_radius:.6g} | {c.change} |")
        return "\n".join(lines)


def common_adversary(old: Results, new: Results) -> str:
    """The first norm of ``new`` (in its order) that ``old`` has radii against (a ValueError if none)."""
    for adversary in new.adversaries:
        if radius_column(adversary) in old.columns:
            return adversary
    raise ValueError(f"{old.path or 'the old result set'} has no radii against a norm of the new run (it has "
                     f"{', '.join(old.adversaries) or 'none'}; the new run {', '.join(new.adversaries)})")


def _model_notes(old: Results, new: Results) -> list[str]:
    if is_foreign(old):
        return [f"{old.path} is a {old.meta[FORMAT_KEY]}: it does not record the model, so that it is the same "
                "model and the same inputs is taken on trust"]
    mine, theirs = old.meta.get("model_sha256"), new.meta.get("model_sha256")
    if mine != theirs:
        return [f"{old.path} certified other model weights ({str(mine)[:12]}... vs {str(theirs)[:12]}...)"]
    return []


def compare_results(old: Results, new: Results, adversary: str | None = None) -> Comparison:
    """``new`` beside ``old`` input by input (matched by index) against ``adversary`` (default:
    :func:`common_adversary`)."""
    adversary = adversary or common_adversary(old, new)
    old_rows = {int(i): k for k, i in enumerate(old.columns["index"])}
    new_rows = {int(i): k for k, i in enumerate(new.columns["index"])}
    digits = old.meta.get(DIGITS_KEY) if printed_column(adversary) in old.columns else None
    old_radius = old.columns[printed_column(adversary)] if digits else old.radius(adversary)
    inputs, other_label = [], []
    for index in sorted(set(old_rows) & set(new_rows)):
        i, j = old_rows[index], new_rows[index]
        if int(old.columns["label"][i]) != int(new.columns["label"][j]):
            other_label.append(index)
            continue
        inputs.append(InputChange(index, int(new.columns["label"][j]), int(old.columns["prediction"][i]),
                                  int(new.columns["prediction"][j]), float(old_radius[i]),
                                  float(new.radius(adversary)[j]), digits))
    return Comparison(adversary, inputs, len(set(old_rows) - set(new_rows)), len(set(new_rows) - set(old_rows)),
                      other_label, _model_notes(old, new))


def comparison_path(out: str | os.PathLike) -> Path:
    """Where the per-input comparison of the result file ``out`` goes: certify.tsv -> certify.compare.md."""
    out = Path(out)
    return out.with_name(f"{out.stem}.compare.md")


def write_comparison(comparison: Comparison, old_name: str, path: str | os.PathLike) -> Path:
    """The summary and the full per-input table as markdown in ``path`` (replaced atomically, locked)."""
    path = Path(path)
    with OutputLock(path):
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(comparison.summary(old_name) + "\n\n" + comparison.table() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    return path


#: per-input rows printed after a run (all of them go to the comparison file)
PRINTED_INPUTS = 20


def read_for_comparison(path: str | os.PathLike, skip: int = 1, adversaries=None) -> Results:
    """The old result set of ``wulff certify --compare-with PATH``, read before any work (a wrong path,
    or one without radii against any of ``adversaries``, fails at once): a wulff result file, a Cohen log
    or an rs4a folder, whose row i is taken as input i x ``skip`` (rs4a's ``--dataset-skip`` is not
    recorded; it must equal this run's ``--skip``)."""
    from .foreign import read_any_results

    try:
        old = read_any_results(path, rs4a_skip=skip)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--compare-with: {exc}") from None
    if adversaries is not None and not any(radius_column(a) in old.columns for a in adversaries):
        raise ValueError(f"--compare-with: {path} has no radii against {', '.join(adversaries)} (it has "
                         f"{', '.join(old.adversaries) or 'none'}): add one of them to --adversaries")
    return old


def report_comparison(old: Results, new: Results, out: str | os.PathLike) -> str:
    """The text printed after ``wulff certify --compare-with``: the summary, the first
    :data:`PRINTED_INPUTS` inputs, and where the whole per-input table was written
    (:func:`comparison_path` of the result file ``out``)."""
    comparison = compare_results(old, new)
    name = str(old.path)
    path = write_comparison(comparison, name, comparison_path(out))
    more = len(comparison.inputs) - PRINTED_INPUTS
    return (comparison.summary(name) + "\n" + comparison.table(PRINTED_INPUTS)
            + (f"\n... {more} more inputs" if more > 0 else "") + f"\nper-input comparison: {path}")
