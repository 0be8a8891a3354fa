"""Certification results written by the two reference codebases, read as data (nothing in them is run),
and wulff results written in the first one's format.

* **Cohen et al. (2019) certify log** (locuslab/smoothing ``code/certify.py``): tab-separated text, the
  header ``idx label predict radius correct time`` and one row per input: its index in the data set, its
  label, the prediction (-1 = abstain), the l2 radius of Gaussian smoothing printed with 3 significant
  digits (``{:.3}``), 1 when correct, and the wall time as ``str(datetime.timedelta)``. The log records
  neither sigma, n nor alpha (they were command-line arguments).
* **Yang et al. (2020) rs4a result folder** (tonyduan/rs4a ``src/test.py``): numpy arrays ``labels.npy``,
  ``preds.npy`` (per input the class frequencies of the n0 = ``--sample-size-pred`` selection draws; the
  prediction is their argmax), ``prob_lb.npy`` (the lower confidence bound on the top class's
  probability), ``radius_l1.npy``, ``radius_l2.npy`` and ``radius_linf.npy`` (and ``preds_nll.npy``,
  ``acc_train.npy``, not needed). Row i is input i x ``--dataset-skip``; the folder records neither the
  noise, sigma, n, alpha nor that skip.

Both are read into :class:`~wulff.certify.results.Results` with the columns of a wulff file (``index``,
``label``, ``prediction``, ``radius_<norm>``, ``correct``, and ``rho_lower`` / ``seconds`` / the radius as
printed (:func:`printed_column`) where known) and
a header naming the format (:data:`FORMAT_KEY`), so that ``wulff report`` tabulates each as its own row
and ``wulff certify --compare-with`` holds them against a new run. Soundness: a radius printed with k
significant digits is read as the least value that prints so (:func:`printed_lower_bound`: Cohen's
``{:.3}`` may have rounded up); a row whose probability bound is not above 1/2 certifies nothing and is
read as an abstention (radius 0), as ``CERTIFY`` abstains (Cohen et al. 2019, Theorem 1 needs
p_A > 1/2). Reading is bounded (:data:`MAX_TEXT_BYTES`, :data:`MAX_ROWS`, :data:`MAX_CLASSES`); arrays
are loaded with ``allow_pickle=False`` and the text is parsed field by field, never evaluated.
"""
from __future__ import annotations

import datetime
import math
import os
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np

from wulff.locking import OutputLock

from .results import MAGIC, Results, radius_column, read_results

#: the header key that names where a result set came from (absent in wulff's own files)
FORMAT_KEY = "foreign_format"
COHEN = "Cohen et al. (2019) certify log"
RS4A = "Yang et al. (2020) rs4a result folder"
#: Cohen's header line, exactly as its certify.py prints it
COHEN_COLUMNS = ("idx", "label", "predict", "radius", "correct", "time")
#: the significant digits of Cohen's radii (``"{:.3}".format(radius)``)
COHEN_DIGITS = 3
#: the arrays an rs4a result folder must hold
RS4A_ARRAYS = ("labels", "preds", "prob_lb", "radius_l1", "radius_l2", "radius_linf")
#: the largest Cohen log read (bytes), inputs per result set and classes per rs4a ``preds`` row
MAX_TEXT_BYTES = 256 * 2 ** 20
MAX_ROWS = 10_000_000
MAX_CLASSES = 100_000
#: the bound on the integers of a row (idx, label, predict), well inside int64
LARGEST_INT = 2 ** 62
#: significant digits from which a printed float64 is exact (the shortest round-trip form has at most 17)
EXACT_DIGITS = 17
NOT_RECORDED = "not recorded"
#: the header key of the significant digits the printed radii were rounded to (Cohen logs)
DIGITS_KEY = "radius_digits"
_RS4A_FILES = ", ".join(f"{name}.npy" for name in RS4A_ARRAYS)


def printed_column(adversary: str) -> str:
    """The column of a result set read from text that holds its ``adversary`` radii as printed (their
    lower bounds are the ``radius_<norm>`` column); the header's :data:`DIGITS_KEY` says to how many
    significant digits they were rounded."""
    return f"printed_{radius_column(adversary)}"


def is_foreign(run: Results) -> bool:
    """Whether ``run`` was read from another codebase's format (:func:`read_cohen_log`,
    :func:`read_rs4a_folder`)."""
    return FORMAT_KEY in run.meta


def is_rs4a_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding every array of :data:`RS4A_ARRAYS`."""
    path = Path(path)
    return path.is_dir() and all((path / f"{name}.npy").is_file() for name in RS4A_ARRAYS)


def is_cohen_log(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file whose first line is Cohen's header :data:`COHEN_COLUMNS`."""
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as fh:
        first = fh.readline(200)
    return first.rstrip(b"\r\n") == "\t".join(COHEN_COLUMNS).encode()


# -- Cohen et al. (2019) ----------------------------------------------------------------------------
def printed_lower_bound(text: str, digits: int = 1) -> float:
    """The least float64 that ``text`` (a non-negative decimal number that a program printed rounded to
    ``digits`` significant digits, or to more if it shows more) can stand for: the value less half a
    unit of its last significant digit, rounded down. A text of :data:`EXACT_DIGITS` or more significant
    digits is exact (every float64 prints so exactly). Cohen's ``{:.3}`` drops trailing zeros, so its
    radii are read with ``digits=3``: "0.5" stands for at least 0.4995."""
    value = Decimal(text.strip())
    if not value.is_finite() or value < 0 or not math.isfinite(float(value)):
        raise ValueError(f"{text!r} is not a non-negative finite number")
    significant = max(len(value.as_tuple().digits), digits)
    if value == 0 or significant >= EXACT_DIGITS:
        return float(value)
    lower = max(value - Decimal(5).scaleb(value.adjusted() - significant), Decimal(0))
    result = float(lower)
    return math.nextafter(result, 0.0) if Decimal(result) > lower else result


_TIME = re.compile(r"(?:(\d+) days?, )?(\d+):([0-5]\d):([0-5]\d(?:\.\d+)?)")


def timedelta_seconds(text: str) -> float:
    """Seconds of a ``str(datetime.timedelta)`` text such as ``0:00:01.234567`` or ``1 day, 2:03:04``."""
    match = _TIME.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a time as H:MM:SS[.ffffff]")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400.0 + int(hours) * 3600.0 + int(minutes) * 60.0 + float(seconds)


def _cohen_row(fields: list[str]) -> tuple[int, int, int, float, int, float, float]:
    """(idx, label, predict, radius as its lower bound, correct, seconds, radius as printed)."""
    index, label, prediction, correct = int(fields[0]), int(fields[1]), int(fields[2]), int(fields[4])
    if not (0 <= index < LARGEST_INT and 0 <= label < LARGEST_INT and -1 <= prediction < LARGEST_INT
            and correct in (0, 1)):
        raise ValueError(f"idx and label must lie in 0 .. {LARGEST_INT - 1}, predict in -1 .. {LARGEST_INT - 1} "
                         "and correct be 0 or 1")
    if correct != int(prediction == label):
        relation = "==" if prediction == label else "!="
        raise ValueError(f"correct is {correct} but predict {prediction} {relation} label {label}")
    radius = printed_lower_bound(fields[3], COHEN_DIGITS)
    return index, label, prediction, radius, correct, timedelta_seconds(fields[5]), float(fields[3])


def _read_text(path: Path) -> str:
    size, limit = path.stat().st_size, MAX_TEXT_BYTES
    if size > limit:
        raise ValueError(f"{path}: {size:,} bytes, more than the {limit:,} a result log may have")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text, not a Cohen certify log") from None


def _check_unique(path, index: np.ndarray, first_line: int) -> None:
    """A ValueError naming the first input that appears twice (rows from ``first_line`` on)."""
    values, counts = np.unique(index, return_counts=True)
    if (counts > 1).any():
        value = int(values[counts > 1][0])
        lines = ", ".join(str(i + first_line) for i in np.flatnonzero(index == value)[:5])
        raise ValueError(f"{path}, lines {lines}: input {value} appears {int(counts[counts > 1][0])} times")


def read_cohen_log(path: str | os.PathLike) -> Results:
    """A certify log of Cohen et al. (2019) (module docstring): columns index, label, prediction,
    radius_l2 (each printed radius read as its lower bound, :func:`printed_lower_bound`), correct and
    seconds. A line that is not such a row is a ValueError naming the file and line; a torn last line
    (no newline) is ignored, as in wulff's own files."""
    path = Path(path)
    text = _read_text(path)
    torn = bool(text) and not text.endswith("\n")
    lines = text.splitlines()[: -1 if torn else None]
    if not lines or lines[0].rstrip("\r") != "\t".join(COHEN_COLUMNS):
        raise ValueError(f"{path} is not a Cohen certify log (its first line should be "
                         f"{' '.join(COHEN_COLUMNS)!r}, tab-separated)")
    if len(lines) - 1 > MAX_ROWS:
        raise ValueError(f"{path}: more than {MAX_ROWS:,} rows")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.rstrip("\r").split("\t")
        try:
            if len(fields) != len(COHEN_COLUMNS):
                raise ValueError(f"expected {len(COHEN_COLUMNS)} tab-separated fields, got {len(fields)}")
            rows.append(_cohen_row(fields))
        except (ValueError, InvalidOperation) as exc:
            raise ValueError(f"{path}, line {number}: not a row of a Cohen certify log ({exc})") from None
    table = list(zip(*rows)) or [()] * (len(COHEN_COLUMNS) + 1)
    ints = [np.array(table[j], dtype=np.int64) for j in (0, 1, 2, 4)]
    columns = {"index": ints[0], "label": ints[1], "prediction": ints[2],
               radius_column("l2"): np.array(table[3], dtype=np.float64), "correct": ints[3],
               "seconds": np.array(table[5], dtype=np.float64),
               printed_column("l2"): np.array(table[6], dtype=np.float64)}
    _check_unique(path, columns["index"], first_line=2)
    meta = {FORMAT_KEY: COHEN, "adversaries": ["l2"], DIGITS_KEY: COHEN_DIGITS}
    return Results(meta, columns, str(path), torn)


def cohen_lines(run: Results) -> list[str]:
    """``run`` (a wulff certification result with l2 radii) as the lines of a Cohen certify log, rows in
    index order. Radii are written with 18 significant digits, which :func:`printed_lower_bound` reads
    back exactly; Cohen's own analysis reads them as any float."""
    if radius_column("l2") not in run.columns:
        raise ValueError(f"{run.path or 'the result set'} has no l2 radii (it has {run.adversaries or 'none'}); "
                         "Cohen's format holds one l2 radius per input")
    order = np.argsort(run.columns["index"], kind="stable")
    seconds = run.columns.get("seconds", np.zeros(len(run)))
    lines = ["\t".join(COHEN_COLUMNS)]
    for i in order.tolist():
        radius = float(run.columns[radius_column("l2")][i])
        lines.append(f"{int(run.columns['index'][i])}\t{int(run.columns['label'][i])}\t"
                     f"{int(run.columns['prediction'][i])}\t{radius:.17e}\t{int(run.columns['correct'][i])}\t"
                     f"{datetime.timedelta(seconds=max(float(seconds[i]), 0.0))}")
    return lines


def write_cohen_log(run: Results, out: str | os.PathLike) -> Path:
    """Write ``run`` in Cohen's format (:func:`cohen_lines`) to ``out``, atomically and under its
    :class:`~wulff.locking.OutputLock`; an existing ``out`` is refused (never overwritten)."""
    out = Path(out)
    text = "\n".join(cohen_lines(run)) + "\n"
    with OutputLock(out):
        if out.exists():
            raise FileExistsError(17, "exists already; remove it or choose another folder", str(out))
        tmp = out.with_name(out.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    return out


# -- Yang et al. (2020), rs4a ----------------------------------------------------------------------
def _load_array(folder: Path, name: str) -> np.ndarray:
    path = folder / f"{name}.npy"
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a numeric numpy array ({exc})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
        raise ValueError(f"{path}: not a numeric numpy array (dtype {getattr(array, 'dtype', '?')})")
    return array


def _rs4a_arrays(folder: Path) -> dict[str, np.ndarray]:
    arrays = {name: _load_array(folder, name) for name in RS4A_ARRAYS}
    rows = len(arrays["labels"]) if arrays["labels"].ndim == 1 else -1
    if not 0 <= rows <= MAX_ROWS:
        raise ValueError(f"{folder}/labels.npy: expected one label per input (at most {MAX_ROWS:,}); got shape "
                         f"{arrays['labels'].shape}")
    for name, array in arrays.items():
        preds = name == "preds" and array.ndim == 2
        if array.shape[:1] != (rows,) or array.ndim != (2 if preds else 1) or preds and not (
                0 < array.shape[1] <= MAX_CLASSES):
            raise ValueError(f"{folder}/{name}.npy: shape {array.shape} does not fit {rows} inputs (labels.npy)")
    return arrays


def _class_numbers(values: np.ndarray, what: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)) or np.any(values != np.round(values)) or np.any(values < 0) \
            or np.any(values >= LARGEST_INT):
        raise ValueError(f"{what} must hold class numbers (integers in 0 .. {LARGEST_INT - 1})")
    return values.astype(np.int64)


def _rs4a_predictions(preds: np.ndarray, folder: Path) -> np.ndarray:
    if preds.ndim == 1:
        return _class_numbers(preds, f"{folder}/preds.npy")
    return np.concatenate([np.asarray(preds[i:i + 65536]).argmax(axis=1) for i in range(0, len(preds), 65536)]
                          ).astype(np.int64) if len(preds) else np.zeros(0, dtype=np.int64)


def read_rs4a_folder(path: str | os.PathLike, skip: int = 1) -> Results:
    """An rs4a result folder of Yang et al. (2020) (module docstring): index = row x ``skip`` (rs4a's
    ``--dataset-skip``, which the folder does not record), label, prediction (argmax of ``preds``),
    rho_lower (``prob_lb``), radius_l1, radius_l2, radius_linf and correct. A row with ``prob_lb`` <= 1/2
    certifies nothing and is read as an abstention: prediction -1, radii 0, not correct."""
    folder = Path(path)
    if not isinstance(skip, int) or isinstance(skip, bool) or skip < 1:
        raise ValueError(f"skip must be an integer >= 1; got {skip!r}")
    if not is_rs4a_folder(folder):
        raise ValueError(f"{folder} is not an rs4a result folder (it needs {_RS4A_FILES})")
    arrays = _rs4a_arrays(folder)
    labels = _class_numbers(arrays["labels"], f"{folder}/labels.npy")
    bound = np.asarray(arrays["prob_lb"], dtype=np.float64)
    certified = bound > 0.5
    prediction = np.where(certified, _rs4a_predictions(arrays["preds"], folder), -1)
    columns = {"index": np.arange(len(labels), dtype=np.int64) * skip, "label": labels, "prediction": prediction,
               "rho_lower": bound}
    for norm in ("l1", "l2", "linf"):
        columns[radius_column(norm)] = np.where(certified, np.asarray(arrays[f"radius_{norm}"], np.float64), 0.0)
    columns["correct"] = (prediction == labels).astype(np.int64)
    meta = {FORMAT_KEY: RS4A, "adversaries": ["l1", "l2", "linf"]}
    return Results(meta, columns, str(folder))


# -- any of them ---------------------------------------------------------------------------------
def read_any_results(path: str | os.PathLike, *, rs4a_skip: int = 1) -> Results:
    """A certification result set from ``path``: an rs4a folder (row i = input i x ``rs4a_skip``), a
    Cohen log, or a wulff result file; anything else is a ValueError saying what was expected."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no result file or folder at {path}")
    if path.is_dir():
        if is_rs4a_folder(path):
            return read_rs4a_folder(path, rs4a_skip)
        raise ValueError(f"{path} is a folder but not an rs4a result folder (it needs {_RS4A_FILES})")
    if is_cohen_log(path):
        return read_cohen_log(path)
    with open(path, "rb") as fh:
        first = fh.readline(len(MAGIC))
    if first.decode("utf-8", "replace") != MAGIC:
        raise ValueError(f"{path} is neither a wulff certification result file, a Cohen certify log (first "
                         f"line {' '.join(COHEN_COLUMNS)!r}) nor an rs4a result folder")
    return read_results(path)


def known_settings(run: Results) -> str:
    """What the result set records about how it was certified: its format, noise, sigma, n, alpha and
    inputs, each "not recorded" where the format does not hold it."""
    meta = run.meta

    def setting(key: str) -> str:
        value = meta.get(key)
        return NOT_RECORDED if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    noise = ("not recorded (Cohen's codebase smooths with Gaussian noise; radii against l2)"
             if meta.get(FORMAT_KEY) == COHEN else setting("distribution"))
    index = run.columns["index"]
    inputs = f"{len(run)} inputs" + (f" (indices {int(index.min())} .. {int(index.max())})" if len(run) else "")
    if meta.get(FORMAT_KEY) == RS4A:
        inputs += " (the folder records no indices: rs4a's --dataset-skip is not recorded)"
    return (f"{meta.get(FORMAT_KEY, 'wulff result file')}: noise {noise}, sigma {setting('sigma')}, "
            f"n {setting('n')}, alpha {setting('alpha')}, {inputs}")


#: the name of the Cohen log exported from a wulff result file ``NAME.tsv``
COHEN_SUFFIX = ".cohen.log"


def export_cohen_logs(runs: list[Results], folder: str | os.PathLike | None = None, warn=None) -> list[Path]:
    """Write each wulff certification result of ``runs`` as a Cohen certify log (:func:`write_cohen_log`)
    named ``NAME.cohen.log`` after its file ``NAME.tsv``, in ``folder`` (default: beside it). Rows
    holding no valid number are left out (:func:`~wulff.certify.analysis.checked_rows`), as are result
    sets of other codebases and files without l2 radii, each named through ``warn``. Before anything is
    written, a target that exists or that two files would share is refused (FileExistsError). Returns
    the files written."""
    from .analysis import checked_rows

    warn = warn or (lambda _line: None)
    planned: dict[Path, Results] = {}
    for run in runs:
        if is_foreign(run):
            warn(f"{run.path}: not exported: it is a {run.meta[FORMAT_KEY]} already")
        elif radius_column("l2") not in run.columns:
            warn(f"{run.path}: not exported: it has no l2 radii (it has {', '.join(run.adversaries)}); Cohen's "
                 "format holds l2 radii")
        else:
            source = Path(run.path)
            target = (Path(folder) if folder is not None else source.parent) / (source.stem + COHEN_SUFFIX)
            if target in planned or target.exists():
                raise FileExistsError(17, "exists already" if target.exists() else
                                      f"would be written for both {planned[target].path} and {run.path} (drop "
                                      "--export-dir to write each beside its file)", str(target))
            planned[target] = run
    written = []
    for target, run in planned.items():
        run, invalid = checked_rows(run)
        for line in invalid:
            warn(line.replace("left out of every figure", "not exported"))
        written.append(write_cohen_log(run, target))
    return written
