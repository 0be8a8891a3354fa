"""A small memory + disk cache for derived artefacts (certificate tables, formulas).

Entries are keyed by a tuple of plain values (structure, parameters, d, adversary, ...) and hold a
picklable payload. On disk each entry is one file ``<sha256 of key>.pkl`` under
``$WULFF_CACHE_DIR`` (default ``~/.cache/wulff``) holding (version, key, payload, checksum):

* writers are safe to run concurrently: a file is written to a temporary name and renamed atomically;
* an entry that fails to load, has another key, another version or a wrong checksum is rebuilt,
  never trusted;
* ``WULFF_CACHE_DIR=off`` disables the disk layer; an unwritable directory only disables it too.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import threading
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
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


def _checksum(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def _load(path: Path, key: Hashable) -> Any:
    """The payload stored at ``path`` for ``key``; raises on any inconsistency."""
    with open(path, "rb") as fh:
        version, stored_key, blob, checksum = pickle.load(fh)
    if version != FORMAT_VERSION or stored_key != repr(key) or _checksum(blob) != checksum:
        raise ValueError("stale or corrupted cache entry")
    return pickle.loads(blob)


def _store(path: Path, key: Hashable, payload: Any) -> None:
    blob = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pkl")
    try:
        with os.fdopen(fd, "wb") as fh:
            pickle.dump((FORMAT_VERSION, repr(key), blob, _checksum(blob)), fh)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def cached(key: Hashable, build: Callable[[], Any], *, disk: bool = True) -> Any:
    """The payload for ``key``: from memory, else from disk, else ``build()`` (then stored in both)."""
    with _lock:
        if key in _memory:
            return _memory[key]
    directory = cache_dir() if disk else None
    path = directory / f"{_digest(key)}.pkl" if directory is not None else None
    if path is not None and path.exists():
        try:
            payload = _load(path, key)
        except Exception:  # noqa: BLE001 - any unreadable entry is rebuilt
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
