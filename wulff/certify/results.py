"""Result files of dataset certification: one tab-separated row per input, written as it comes.

Layout::

    # wulff-certify {"distribution": "Laplace", "sigma": 0.5, ...}      <- settings, one JSON line
    index  label  prediction  rho_lower  radius_l1  ...  correct  seconds  samples
    0      3      3           0.99912    2.31       ...  1        0.0123   100064

``samples`` is the number of noisy samples (forward-pass inputs) the input used, selection
included: n0 + n for ``certify``, fewer for adaptive runs (header ``"adaptive": true``). Files
written before that column existed still read (and resume, without it); :attr:`Results.samples`
then falls back to the header's n0 + n.

A run with the two-class form (header ``"two_class": true``) adds :func:`two_class_columns`: p_B's
bound ``rho_b_upper``, per adversary the form that gave the radius (``form_l1``: 0 = p_A, 1 = generic
two-class, 2 = differential two-class, 3 = Neyman-Pearson two-class) and the p_A form's radius of the same
bounds (``radius_l1_pA``).

Every row is flushed and fsync'ed before the next input starts, so a crash loses at most the row in
flight; a torn last line is cut off when the file is reopened, and the indices already present are
skipped, so a rerun never loses or duplicates a row.

One process writes a file at a time: :class:`ResultWriter` holds the file's
:class:`~wulff.locking.OutputLock` while it is open, so a second run on the same file stops at once
naming the first one's pid. A file that two runs wrote at once anyway (before that lock existed, or
on a file system without locks) holds some input twice: :func:`read_results` refuses it, naming the
input, and a rerun of the command that wrote it repairs it when the copies agree (in every column
but the wall-clock ``seconds``: the same input, settings and seed give the same row) and refuses,
naming the input, when they do not. A run that fails before its first row removes the file (and the
folders) it created, so a rejected command leaves nothing behind.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wulff.locking import OutputLock, missing_folders, remove_empty

MAGIC = "# wulff-certify "
#: columns read as integers (the rest are floats), in certification and attack files alike
INT_COLUMNS = ("index", "label", "prediction", "correct", "samples", "prediction_attacked", "robust",
               "form_l1", "form_l2", "form_linf")
#: settings that may differ between the shards of one certification run
SHARD_KEYS = ("shard", "num_shards")
#: columns that may differ between two copies of one row that still count as the same (wall clock)
TIMING_COLUMNS = ("seconds",)


def radius_column(adversary: str) -> str:
    return f"radius_{adversary}"


#: the two-class columns (runs with header ``"two_class": true`` only): the bound on p_B the radius used
RHO_B_COLUMN = "rho_b_upper"


def form_column(adversary: str) -> str:
    """The column of the form that gave the adversary's radius, coded as
    :data:`~wulff.certify.classifier.FORM_CODES` says."""
    return f"form_{adversary}"


def one_class_column(adversary: str) -> str:
    """The column of the p_A form's radius R(rho_lower) of the same bounds (what the two-class form adds to)."""
    return f"radius_{adversary}_pA"


def two_class_columns(adversaries) -> list[str]:
    """The columns a two-class run adds: p_B's bound, then per adversary the form and the p_A form's radius."""
    return [RHO_B_COLUMN, *(form_column(a) for a in adversaries), *(one_class_column(a) for a in adversaries)]


def columns_for(adversaries) -> list[str]:
    return ["index", "label", "prediction", "rho_lower",
            *(radius_column(a) for a in adversaries), "correct", "seconds", "samples"]


def shard_path(path: str | os.PathLike, shard: int, num_shards: int) -> Path:
    """results.tsv -> results.shard-0-of-2.tsv (the file one shard writes)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.shard-{shard}-of-{num_shards}{path.suffix}")


@dataclass
class Results:
    """The rows of one result file: ``meta`` (the settings) and one numpy array per column."""

    meta: dict
    columns: dict[str, np.ndarray]
    path: str | None = None  #: the file it was read from
    torn: bool = False  #: the file ended in a partial row (ignored), as after a crash mid-write

    @property
    def complete(self) -> bool:
        """Whether the file holds every input of its run (one shard's file never does)."""
        total = self.meta.get("indices_total")
        return total is not None and int(self.meta.get("num_shards", 1)) == 1 and len(self) == int(total)

    def __len__(self) -> int:
        return len(self.columns["index"])

    @property
    def adversaries(self) -> list[str]:
        return list(self.meta.get("adversaries", []))

    def radius(self, adversary: str) -> np.ndarray:
        key = radius_column(adversary)
        if key not in self.columns:
            raise ValueError(f"this result file has no {adversary} radii (it has {self.adversaries})")
        return self.columns[key]

    @property
    def correct(self) -> np.ndarray:
        return self.columns["correct"].astype(bool)

    @property
    def samples(self) -> np.ndarray | None:
        """Noisy samples (forward-pass inputs) used per input, selection included: the ``samples``
        column, or for files written before it existed the header's n0 + n; None when unknown."""
        if "samples" in self.columns:
            return self.columns["samples"]
        n0, n = self.meta.get("n0"), self.meta.get("n")
        if isinstance(n0, int) and isinstance(n, int) and not self.meta.get("adaptive"):
            return np.full(len(self), n0 + n, dtype=np.int64)
        return None


def _parse_header(first: str, path, magic: str = MAGIC) -> dict:
    if not first.startswith(magic):
        raise ValueError(f"{path} is not a wulff {'certification' if magic == MAGIC else 'attack'} result file "
                         f"(its first line should start with {magic.strip()!r})")
    try:
        meta = json.loads(first[len(magic):])
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}, line 1: the settings are not valid JSON ({exc.msg}, column "
                         f"{exc.colno})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}, line 1: the settings must be a JSON object")
    return meta


def _complete_text(path: Path, *, repair: bool) -> tuple[str, bool]:
    """(the file's text up to its last newline, whether a torn last line followed); with ``repair``
    the torn line is cut off on disk."""
    if path.is_dir():
        raise IsADirectoryError(21, "is a folder, not a result file", str(path))
    data = path.read_bytes()
    cut = data.rfind(b"\n") + 1
    if cut < len(data) and repair:
        with open(path, "r+b") as fh:
            fh.truncate(cut)
            fh.flush()
            os.fsync(fh.fileno())
    try:
        return data[:cut].decode("utf-8"), cut < len(data)
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ValueError(f"{path}, line {line}: not UTF-8 text; not a wulff certification result file") from None


def _parse_column(values: list[str], kind, name: str, path) -> np.ndarray:
    try:
        return np.array(values, dtype=object).astype(kind) if values else np.zeros(0, dtype=kind)
    except (ValueError, TypeError, OverflowError):
        for number, value in enumerate(values, start=3):
            try:
                kind(value)
            except (ValueError, TypeError, OverflowError):
                raise ValueError(f"{path}, line {number}: column {name} holds {value!r}, which is not "
                                 f"{'an integer' if kind is np.int64 else 'a number'}") from None
        raise


def _read(path: Path, *, repair: bool, magic: str) -> tuple[Results, list[str]]:
    """(the file's rows, its complete lines) without the duplicate check of :func:`read_results`."""
    if not path.exists():
        raise FileNotFoundError(f"no result file at {path}")
    text, torn = _complete_text(path, repair=repair)
    lines = text.splitlines()
    if len(lines) < 2:
        raise ValueError(f"{path} has no header (it was cut off before its first row); delete it and rerun")
    meta = _parse_header(lines[0], path, magic)
    names = lines[1].split("\t")
    if names[0] != "index":
        raise ValueError(f"{path}: the second line must be the column names starting with 'index'")
    rows = []
    for number, line in enumerate(lines[2:], start=3):
        row = line.split("\t")
        if len(row) != len(names):
            raise ValueError(f"{path}, line {number}: expected {len(names)} tab-separated fields, got {len(row)}")
        rows.append(row)
    columns = {}
    for j, name in enumerate(names):
        kind = np.int64 if name in INT_COLUMNS else np.float64
        columns[name] = _parse_column([row[j] for row in rows], kind, name, path)
    return Results(meta, columns, str(path), torn and not repair), lines


def natural_key(row: dict):
    """What identifies a row of a file read back: its index, and its eps in attack files."""
    return (int(row["index"]), float(row["eps"])) if "eps" in row else int(row["index"])


def describe_key(key) -> str:
    """A row key as the user knows it: "input 5", or "input 5 at eps 0.25"."""
    return f"input {key[0]} at eps {key[1]:g}" if isinstance(key, tuple) else f"input {key}"


def duplicate_rows(results: Results, key=natural_key) -> dict:
    """The keys that occur more than once, each with its rows (0-based positions; line = position + 3)."""
    names = list(results.columns)
    positions: dict = {}
    for i in range(len(results)):
        positions.setdefault(key({name: results.columns[name][i] for name in names}), []).append(i)
    return {k: rows for k, rows in positions.items() if len(rows) > 1}


def _lines_of(rows: list[int]) -> str:
    return ", ".join(str(i + 3) for i in rows[:5]) + (", ..." if len(rows) > 5 else "")


def read_results(path: str | os.PathLike, *, repair: bool = False, magic: str = MAGIC) -> Results:
    """Read a result file (a torn last line, from a crash mid-write, is ignored); ``magic`` is the
    start of its first line (attack files, :mod:`wulff.certify.attack_dataset`, have their own).
    A file holding some input twice (two runs wrote it at once) is refused, naming the input."""
    path = Path(path)
    results, _ = _read(path, repair=repair, magic=magic)
    duplicates = duplicate_rows(results)
    if duplicates:
        key, rows = next(iter(duplicates.items()))
        raise ValueError(f"{path}, lines {_lines_of(rows)}: {describe_key(key)} appears {len(rows)} times (two "
                         f"runs wrote this file at once; {len(duplicates)} input(s) affected); rerun the command "
                         "that wrote it: it removes copies that agree and names those that do not")
    return results


class ResultWriter:
    """Appends rows to a result file, creating it with its header or resuming an existing one.

    While open it holds the file's :class:`~wulff.locking.OutputLock` (another process writing the
    same file raises :class:`~wulff.locking.OutputInUseError`). Reopening an existing file checks that
    its settings match ``meta`` (a mismatch is an error, so runs with different settings are never
    mixed), cuts a torn last line, removes duplicate rows whose copies agree (others are refused,
    naming the input), and exposes the indices already written in :attr:`done`. Left by an
    exception before its first row, it removes the file and folders it created. A file written
    before the ``samples`` column existed resumes in its own layout (without that column).
    Subclasses set :attr:`magic`, their ``columns`` and the key :meth:`row_key` that identifies a
    row (the index here).
    """

    magic = MAGIC

    def __init__(self, path: str | os.PathLike, meta: dict, adversaries=(), *, columns: list[str] | None = None):
        self.path = Path(path)
        self.columns = list(columns) if columns is not None else columns_for(adversaries)
        self.meta = json.loads(json.dumps(meta))  # normalized as it will read back
        self.done: set = set()
        self.repaired = 0  #: duplicate rows removed when the file was reopened
        self._written = 0
        self._created = False
        self._fh = None
        self._created_folders = missing_folders(self.path.parent)
        self._lock = OutputLock(self.path)
        try:
            self._lock.acquire()  # one writer at a time (OutputInUseError otherwise)
            self._open()
        except BaseException:
            self._abandon()
            raise

    def _open(self) -> None:
        if self.path.exists() and len(_complete_text(self.path, repair=True)[0].splitlines()) < 2:
            self.path.unlink()  # torn inside the header: nothing was certified yet, start over
        if self.path.exists():
            self._resume()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._created = True
            with open(self.path, "w", encoding="utf-8") as fh:
                fh.write(self.magic + json.dumps(self.meta, sort_keys=True) + "\n")
                fh.write("\t".join(self.columns) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        self._fh = open(self.path, "a", encoding="utf-8")

    def _resume(self) -> None:
        old, lines = _read(self.path, repair=False, magic=self.magic)
        legacy = [c for c in self.columns if c != "samples"]
        if old.meta == self.meta and list(old.columns) == legacy:
            self.columns = legacy  # an older file without the samples column: keep its layout
        if old.meta != self.meta or list(old.columns) != self.columns:
            raise ValueError(f"{self.path} already holds results with other settings (differing: "
                             f"{settings_difference(old.meta, self.meta) or 'columns'}); choose another "
                             "output file or delete it")
        duplicates = duplicate_rows(old, self.row_key)
        if duplicates:
            self._remove_duplicates(lines, duplicates)
        self.done = {self.row_key({name: old.columns[name][i] for name in self.columns}) for i in range(len(old))}

    def _remove_duplicates(self, lines: list[str], duplicates: dict) -> None:
        """Rewrite the file without the later copies of rows written twice, if every copy agrees with
        the first in all columns but :data:`TIMING_COLUMNS`; else refuse, naming the input."""
        compared = [j for j, name in enumerate(self.columns) if name not in TIMING_COLUMNS]
        for key, rows in duplicates.items():
            fields = [[lines[i + 2].split("\t")[j] for j in compared] for i in rows]
            if any(other != fields[0] for other in fields[1:]):
                raise ValueError(f"{self.path}, lines {_lines_of(rows)}: {describe_key(key)} has {len(rows)} rows "
                                 "that disagree (two runs wrote this file at once, with different results); "
                                 "delete all but the right one, or the file, and rerun")
        later = {i + 2 for rows in duplicates.values() for i in rows[1:]}
        kept = [line for number, line in enumerate(lines) if number not in later]
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("\n".join(kept) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self.repaired = len(later)
        warnings.warn(f"{self.path}: removed {len(later)} duplicate row(s) of "
                      f"{', '.join(describe_key(k) for k in list(duplicates)[:5])}"
                      f"{', ...' if len(duplicates) > 5 else ''} (identical copies written by two runs at once)",
                      stacklevel=5)  # the code that opened the writer

    @staticmethod
    def row_key(row: dict):
        """What identifies a row (resumption skips the keys in :attr:`done`): its index."""
        return int(row["index"])

    def write(self, row: dict) -> None:
        """Write one row and force it to disk before returning."""
        fields = []
        for name in self.columns:
            if name not in row:
                raise KeyError(f"a result row needs the column {name!r}; got {sorted(row)}")
            value = row[name]
            fields.append(repr(float(value)) if isinstance(value, float) else str(int(value)))
        self._fh.write("\t".join(fields) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._written += 1
        self.done.add(self.row_key(row))

    def close(self) -> None:
        """Close the file and release its lock."""
        if self._fh is not None:
            self._fh.close()
        self._lock.release()

    def _abandon(self) -> None:
        """Close after a failure: a file this writer created and wrote no row to is removed, with the
        folders created for it while they are empty (a file or folder that existed is kept)."""
        if self._fh is not None:
            self._fh.close()
        if self._created and self._written == 0:
            self.path.unlink(missing_ok=True)
        self._lock.release()
        if self._written == 0:
            remove_empty(self._created_folders)

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abandon()


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text[:12] + "..." if isinstance(value, str) and len(value) == 64 else text[:60]


def settings_difference(old: dict, new: dict, ignore=()) -> str:
    """The differing settings as "key old -> new; ..." (model_sha256 means: other model weights)."""
    items = []
    for key in sorted(set(old) | set(new)):
        if key in ignore or old.get(key) == new.get(key):
            continue
        what = f"{key} (other model weights)" if key == "model_sha256" else key
        items.append(f"{what} {_short(old.get(key))} -> {_short(new.get(key))}")
    return "; ".join(items)


def merge_results(paths, out: str | os.PathLike, *, allow_partial: bool = False) -> Results:
    """Join the shard files of one run into ``out`` (sorted by index, written atomically).

    The shards must share their settings (apart from the shard number) and no index may appear
    twice; unless ``allow_partial``, every input of the run must be present.
    """
    parts = [read_results(p) for p in paths]
    if not parts:
        raise ValueError("merge needs at least one result file")
    base = {k: v for k, v in parts[0].meta.items() if k not in SHARD_KEYS}
    for path, part in zip(paths, parts):
        other = {k: v for k, v in part.meta.items() if k not in SHARD_KEYS}
        if other != base:
            raise ValueError(f"{path} was produced with other settings than {paths[0]} (differing: "
                             f"{settings_difference(base, other)}); cannot merge")
    names = [name for name in parts[0].columns if all(name in p.columns for p in parts)]
    merged = {name: np.concatenate([p.columns[name] for p in parts]) for name in names}
    order = np.argsort(merged["index"], kind="stable")
    merged = {name: col[order] for name, col in merged.items()}
    index = merged["index"]
    if len(index) and (np.diff(index) == 0).any():
        dup = index[1:][np.diff(index) == 0][:5].tolist()
        raise ValueError(f"the shard files overlap: index {dup} appears more than once")
    expected = base.get("indices_total")
    if expected is not None and len(index) != expected and not allow_partial:
        raise ValueError(f"the shards hold {len(index)} of the run's {expected} inputs; finish the missing "
                         "shards (rerun them: they resume) or pass allow_partial")
    meta = dict(base, shard=0, num_shards=1)
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    with OutputLock(out):  # the merged file has one writer too
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(MAGIC + json.dumps(meta, sort_keys=True) + "\n")
            fh.write("\t".join(names) + "\n")
            for i in range(len(index)):
                fh.write("\t".join(repr(float(merged[n][i])) if merged[n].dtype.kind == "f"
                                   else str(int(merged[n][i])) for n in names) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    return Results(meta, merged, str(out))
