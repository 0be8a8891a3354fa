"""Result files of dataset certification: one tab-separated row per input, written as it comes.

Layout::

    # wulff-certify {"distribution": "Laplace", "sigma": 0.5, ...}      <- settings, one JSON line
    index  label  prediction  rho_lower  radius_l1  ...  correct  seconds
    0      3      3           0.99912    2.31       ...  1        0.0123

Every row is flushed and fsync'ed before the next input starts, so a crash loses at most the row in
flight; a torn last line is cut off when the file is reopened, and the indices already present are
skipped, so a rerun never loses or duplicates a row.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = "# wulff-certify "
#: settings that may differ between the shards of one certification run
SHARD_KEYS = ("shard", "num_shards")


def radius_column(adversary: str) -> str:
    return f"radius_{adversary}"


def columns_for(adversaries) -> list[str]:
    return ["index", "label", "prediction", "rho_lower",
            *(radius_column(a) for a in adversaries), "correct", "seconds"]


def shard_path(path: str | os.PathLike, shard: int, num_shards: int) -> Path:
    """results.tsv -> results.shard-0-of-2.tsv (the file one shard writes)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.shard-{shard}-of-{num_shards}{path.suffix}")


@dataclass
class Results:
    """The rows of one result file: ``meta`` (the settings) and one numpy array per column."""

    meta: dict
    columns: dict[str, np.ndarray]

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


def _parse_header(first: str, path) -> dict:
    if not first.startswith(MAGIC):
        raise ValueError(f"{path} is not a wulff certification result file (its first line should start "
                         f"with {MAGIC.strip()!r})")
    return json.loads(first[len(MAGIC):])


def _complete_text(path: Path, *, repair: bool) -> str:
    """The file's text up to its last newline; with ``repair`` a torn last line is cut off on disk."""
    data = path.read_bytes()
    cut = data.rfind(b"\n") + 1
    if cut < len(data) and repair:
        with open(path, "r+b") as fh:
            fh.truncate(cut)
            fh.flush()
            os.fsync(fh.fileno())
    return data[:cut].decode("utf-8")


def read_results(path: str | os.PathLike, *, repair: bool = False) -> Results:
    """Read a result file (a torn last line, from a crash mid-write, is ignored)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no result file at {path}")
    lines = _complete_text(path, repair=repair).splitlines()
    if len(lines) < 2:
        raise ValueError(f"{path} has no header (it was cut off before its first row); delete it and rerun")
    meta = _parse_header(lines[0], path)
    names = lines[1].split("\t")
    if names[0] != "index":
        raise ValueError(f"{path}: the second line must be the column names starting with 'index'")
    rows = [line.split("\t") for line in lines[2:] if line]
    for number, row in enumerate(rows, start=3):
        if len(row) != len(names):
            raise ValueError(f"{path}, line {number}: expected {len(names)} fields, got {len(row)}")
    table = np.array(rows, dtype=object).reshape(len(rows), len(names))
    columns = {}
    for j, name in enumerate(names):
        kind = np.int64 if name in ("index", "label", "prediction", "correct") else np.float64
        columns[name] = table[:, j].astype(kind) if len(rows) else np.zeros(0, dtype=kind)
    return Results(meta, columns)


class ResultWriter:
    """Appends rows to a result file, creating it with its header or resuming an existing one.

    Reopening an existing file checks that its settings match ``meta`` (a mismatch is an error, so
    runs with different settings are never mixed), cuts a torn last line, and exposes the indices
    already written in :attr:`done`.
    """

    def __init__(self, path: str | os.PathLike, meta: dict, adversaries):
        self.path = Path(path)
        self.columns = columns_for(adversaries)
        self.meta = json.loads(json.dumps(meta))  # normalized as it will read back
        self.done: set[int] = set()
        if self.path.exists() and len(_complete_text(self.path, repair=True).splitlines()) < 2:
            self.path.unlink()  # torn inside the header: nothing was certified yet, start over
        if self.path.exists():
            self._resume()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "w", encoding="utf-8") as fh:
                fh.write(MAGIC + json.dumps(self.meta, sort_keys=True) + "\n")
                fh.write("\t".join(self.columns) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        self._fh = open(self.path, "a", encoding="utf-8")

    def _resume(self) -> None:
        old = read_results(self.path)
        if old.meta != self.meta or list(old.columns) != self.columns:
            changed = sorted(k for k in set(old.meta) | set(self.meta) if old.meta.get(k) != self.meta.get(k))
            raise ValueError(f"{self.path} already holds results with other settings (differing: "
                             f"{', '.join(changed) or 'columns'}); choose another output file or delete it")
        self.done = {int(i) for i in old.columns["index"]}

    def write(self, row: dict) -> None:
        """Write one row and force it to disk before returning."""
        fields = []
        for name in self.columns:
            value = row[name]
            fields.append(repr(float(value)) if isinstance(value, float) else str(int(value)))
        self._fh.write("\t".join(fields) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.done.add(int(row["index"]))

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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
            raise ValueError(f"{path} was produced with other settings than {paths[0]}; cannot merge")
    names = list(parts[0].columns)
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
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(MAGIC + json.dumps(meta, sort_keys=True) + "\n")
        fh.write("\t".join(names) + "\n")
        for i in range(len(index)):
            fh.write("\t".join(repr(float(merged[n][i])) if merged[n].dtype.kind == "f"
                               else str(int(merged[n][i])) for n in names) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, out)
    return Results(meta, merged)
