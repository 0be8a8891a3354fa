"""A small memory + disk cache for derived artefacts (certificate tables, formulas).

Entries are keyed by a tuple of plain values (structure, parameters, d, adversary, ...) and hold a
payload of plain data: dicts with string keys, lists, tuples, strings, numbers, booleans, None and
numeric numpy arrays. Nothing on disk is ever unpickled or evaluated: a cache directory can be
shared or planted by someone else, so an entry must not be able to run code.

On disk each entry is one numpy ``.npz`` archive ``<sha256 of key>.npz`` under ``$WULFF_CACHE_DIR``
(default ``~/.cache/wulff``), read with ``allow_pickle=False``. It holds the JSON text of
(format version, key, payload with every array replaced by a reference) and the arrays themselves,
plus a checksum over both:

* writers are safe to run concurrently: a file is written to a temporary name and renamed atomically;
* an entry that fails to load, has another key, another version or a wrong checksum is rebuilt,
  never trusted; formulas inside a payload are read back by their owners with the restricted parser
  of :mod:`wulff.expressions`, never ``eval``;
* ``WULFF_CACHE_DIR=off`` disables the disk layer; an unwritable directory only disables it too.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import threading
import zipfile
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 3  # 3: derived artefacts keyed by Distribution.structure_key(), not a display string
SUFFIX = ".npz"
_memory: dict[Hashable, Any] = {}
_lock = threading.Lock()


def cache_dir() -> Path | None:
    """The disk cache directory, or None when disabled (WULFF_CACHE_DIR=off)."""
    env = os.environ.get("WULFF_CACHE_DIR")
    if env is not None and env.strip().lower() in ("off", "none", "0", ""):
        return None
    return Path(env) if env else Path.home() / ".cache" / "wulff"


def _digest(key: Hashable) -> str:
    return hashlib.sha256(repr(key).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# plain data <-> (JSON tree, arrays)
# ---------------------------------------------------------------------------------------------
def encode(payload: Any, arrays: dict[str, np.ndarray]) -> Any:
    """``payload`` as a JSON-able tree; numpy arrays are moved into ``arrays`` and referenced by name.
    Anything that is not plain data is a TypeError (it could not be stored without pickling)."""
    if payload is None or isinstance(payload, (bool, str)):
        return payload
    if isinstance(payload, (int, float, np.integer, np.floating, np.bool_)):
        return payload.item() if isinstance(payload, np.generic) else payload
    if isinstance(payload, np.ndarray):
        if payload.dtype.kind not in "biuf":
            raise TypeError(f"only numeric arrays can be cached; got dtype {payload.dtype}")
        name = f"a{len(arrays)}"
        arrays[name] = payload
        return {"__array__": name}
    if isinstance(payload, (list, tuple)):
        items = [encode(v, arrays) for v in payload]
        return {"__tuple__": items} if isinstance(payload, tuple) else items
    if isinstance(payload, dict):
        if not all(isinstance(k, str) for k in payload):
            raise TypeError("cached dicts need string keys")
        if any(k.startswith("__") for k in payload):
            raise TypeError("cached dict keys may not start with '__' (reserved for references)")
        return {k: encode(v, arrays) for k, v in payload.items()}
    raise TypeError(f"{type(payload).__name__} is not plain data and cannot be cached")


def decode(tree: Any, arrays: dict[str, np.ndarray]) -> Any:
    """The inverse of :func:`encode`."""
    if isinstance(tree, list):
        return [decode(v, arrays) for v in tree]
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            return arrays[tree["__array__"]]
        if set(tree) == {"__tuple__"}:
            return tuple(decode(v, arrays) for v in tree["__tuple__"])
        return {k: decode(v, arrays) for k, v in tree.items()}
    return tree


def _checksum(text: str, arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(text.encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"|{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _load(path: Path, key: Hashable) -> Any:
    """The payload stored at ``path`` for ``key``; raises on any inconsistency."""
    with np.load(path, allow_pickle=False) as archive:
        files = {name: archive[name] for name in archive.files}
    text = str(files.pop("__meta__"))
    checksum = str(files.pop("__checksum__"))
    if _checksum(text, files) != checksum:
        raise ValueError("corrupted cache entry")
    version, stored_key, tree = json.loads(text)
    if version != FORMAT_VERSION or stored_key != repr(key):
        raise ValueError("stale cache entry")
    return decode(tree, files)


def _store(path: Path, key: Hashable, payload: Any) -> None:
    arrays: dict[str, np.ndarray] = {}
    text = json.dumps([FORMAT_VERSION, repr(key), encode(payload, arrays)])
    buffer = io.BytesIO()
    np.savez(buffer, __meta__=np.array(text), __checksum__=np.array(_checksum(text, arrays)), **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=SUFFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(buffer.getvalue())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_UNREADABLE = (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, json.JSONDecodeError)


def cached(key: Hashable, build: Callable[[], Any], *, disk: bool = True,
           validate: Callable[[Any], None] | None = None) -> Any:
    """The payload for ``key``: from memory, else from disk, else ``build()`` (then stored in both).

    ``validate(payload)`` is called on an entry read from disk; if it raises (e.g. a formula the
    restricted parser refuses), the entry is rebuilt like any other corrupted one."""
    with _lock:
        if key in _memory:
            return _memory[key]
    directory = cache_dir() if disk else None
    path = directory / f"{_digest(key)}{SUFFIX}" if directory is not None else None
    if path is not None and path.exists():
        try:
            payload = _load(path, key)
            if validate is not None:
                validate(payload)
        except _UNREADABLE:  # any unreadable entry is rebuilt, never trusted
            payload = None
        else:
            with _lock:
                _memory[key] = payload
            return payload
    payload = build()
    if path is not None:
        try:
            _store(path, key, payload)
        except OSError:
            pass  # a read-only or full disk only costs a rebuild next time
    with _lock:
        _memory[key] = payload
    return payload


def clear_memory() -> None:
    """Forget the in-memory layer (the disk layer stays)."""
    with _lock:
        _memory.clear()
