"""A small memory + disk cache for derived artefacts (certificate tables, formulas).

Entries are keyed by a tuple of plain values (structure, parameters, d, adversary, ...) and hold a
payload of plain data: dicts with string keys, lists, tuples, strings, numbers, booleans, None and
numeric numpy arrays. Nothing on disk is ever unpickled or evaluated: a cache directory can be
shared or planted by someone else, so an entry must not be able to run code, and it must not be able
to change a radius either (docs/security.md states the threat model).

On disk each entry is one numpy ``.npz`` archive ``<sha256 of key>.npz`` under ``$WULFF_CACHE_DIR``
(default ``~/.cache/wulff``), read with ``allow_pickle=False``. It holds the JSON text of
(format version, key, payload with every array replaced by a reference) and the arrays themselves,
plus an HMAC-SHA256 over both, keyed by a per-user secret kept *outside* the cache directory
(:func:`key_path`: ``$WULFF_CACHE_KEY``, else ``$XDG_CONFIG_HOME/wulff/cache.key``, else
``~/.config/wulff/cache.key``; created 0600 on first use, refused when others may read it):

* writers are safe to run concurrently: a file is written to a temporary name and renamed atomically;
* an entry that fails to load, has another key, another version or a wrong HMAC is rebuilt, never
  trusted: whoever can write the cache directory but not read the key cannot forge an entry;
* an entry that authenticates is still checked by its owner (``validate``): formulas are read back
  with the bounded restricted parser of :mod:`wulff.expressions` (never ``eval``), and certificates
  are re-checked at a few points against their own definition (:func:`definition_radius`,
  :func:`check_not_above`, :func:`spot_checks`); anything that fails is rebuilt with a one-line
  :class:`CacheEntryWarning`;
* ``WULFF_CACHE_DIR=off`` disables the disk layer; an unwritable directory only disables it too, and
  so does an unusable key (with a warning naming the file and the fix).
"""
from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import secrets
import stat
import tempfile
import threading
import warnings
import zipfile
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 4  # 4: entries authenticated by an HMAC keyed by the user's secret (3: unkeyed sha256)
SUFFIX = ".npz"
#: the environment variable naming the key file (tests, or a key kept elsewhere)
KEY_ENV = "WULFF_CACHE_KEY"
#: bytes of secret in a key file (written as hex, one line)
KEY_BYTES = 32
_memory: dict[Hashable, Any] = {}
_lock = threading.Lock()
_warned: set[str] = set()


class CacheEntryWarning(UserWarning):
    """A disk cache entry (or the cache's key) was refused; the artefact is rebuilt."""


class CacheKeyError(ValueError):
    """The cache's secret key cannot be used (unsafe permissions, another owner, bad content)."""


def cache_dir() -> Path | None:
    """The disk cache directory, or None when disabled (WULFF_CACHE_DIR=off)."""
    env = os.environ.get("WULFF_CACHE_DIR")
    if env is not None and env.strip().lower() in ("off", "none", "0", ""):
        return None
    return Path(env) if env else Path.home() / ".cache" / "wulff"


def key_path() -> Path:
    """Where the per-user secret that authenticates cache entries lives: ``$WULFF_CACHE_KEY``, else
    ``$XDG_CONFIG_HOME/wulff/cache.key``, else ``~/.config/wulff/cache.key`` (outside the cache)."""
    env = os.environ.get(KEY_ENV)
    if env:
        return Path(env)
    config = os.environ.get("XDG_CONFIG_HOME")
    return (Path(config) if config else Path.home() / ".config") / "wulff" / "cache.key"


def _digest(key: Hashable) -> str:
    return hashlib.sha256(repr(key).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# the per-user secret
# ---------------------------------------------------------------------------------------------
def _check_key_file(path: Path, info: os.stat_result) -> None:
    """Refuse a key that is not a regular file of ours that nobody else may read or write."""
    if not stat.S_ISREG(info.st_mode):
        raise CacheKeyError(f"the cache key {path} is not a regular file")
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        raise CacheKeyError(f"the cache key {path} belongs to another user (uid {info.st_uid}); "
                            f"remove it and a new one is created")
    if info.st_mode & 0o077:
        raise CacheKeyError(f"the cache key {path} is readable or writable by others "
                            f"(mode {stat.S_IMODE(info.st_mode):o}); run: chmod 600 {path}")


def _read_key(path: Path) -> bytes:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)  # a symlink planted in its place is refused
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if path.is_symlink():
            raise CacheKeyError(f"the cache key {path} is a symbolic link") from exc
        raise
    with os.fdopen(fd, "rb") as fh:
        _check_key_file(path, os.fstat(fh.fileno()))
        text = fh.read(4 * KEY_BYTES).decode("ascii", "replace").strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) != KEY_BYTES:
        raise CacheKeyError(f"the cache key {path} is not {2 * KEY_BYTES} hex digits; remove it and a new "
                            f"one is created (existing cache entries are then rebuilt)")
    return secret


def _create_key(path: Path) -> None:
    """Write a fresh secret to ``path`` atomically, mode 0600 from the start; a concurrent creator wins."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(KEY_BYTES) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # never replaces a key another process created meanwhile
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)


def secret_key() -> bytes:
    """The per-user secret that keys the cache's HMAC, created on first use (see :func:`key_path`).

    Raises :class:`CacheKeyError` when the key file is unsafe (another owner, readable or writable by
    group or others, a symlink, inside the cache directory) or damaged, and OSError when it cannot be
    read or created."""
    path = key_path()
    directory = cache_dir()
    if directory is not None and _is_within(path, directory):
        raise CacheKeyError(f"the cache key {path} lies inside the cache directory {directory}; whoever "
                            f"can write the cache could replace it: set {KEY_ENV} to a path outside it")
    if not os.path.lexists(path):
        _create_key(path)
    return _read_key(path)


def _is_within(path: Path, directory: Path) -> bool:
    try:
        path.resolve().relative_to(directory.resolve())
    except (ValueError, OSError):
        return False
    return True


def _warn(message: str, *, once: bool = False) -> None:
    """One line (a :class:`CacheEntryWarning`); ``once``: only the first time in this process."""
    if once and message in _warned:
        return
    _warned.add(message)
    # no source line under it (a user sees one line); every refusal is shown, not once per call site
    warnings.warn_explicit(message, CacheEntryWarning, filename="wulff.cache", lineno=0, module="wulff.cache")


def _usable_secret() -> bytes | None:
    """The key, or None (with a warning, once) when the disk layer must stay off without it."""
    try:
        return secret_key()
    except (OSError, CacheKeyError) as exc:
        _warn(f"wulff cache: {exc}; the disk cache is off", once=True)
        return None


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


def _mac(secret: bytes, text: str, arrays: dict[str, np.ndarray]) -> str:
    """HMAC-SHA256 of the entry's JSON text and arrays (names, dtypes, shapes and bytes), keyed by ``secret``."""
    mac = hmac.new(secret, text.encode(), hashlib.sha256)
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        mac.update(f"|{name}|{a.dtype.str}|{a.shape}|".encode())
        mac.update(a.tobytes())
    return mac.hexdigest()


def _load(path: Path, key: Hashable, secret: bytes) -> Any:
    """The payload stored at ``path`` for ``key``; raises on any inconsistency."""
    with np.load(path, allow_pickle=False) as archive:
        files = {name: archive[name] for name in archive.files}
    if "__meta__" not in files or "__mac__" not in files:
        raise ValueError("no HMAC (written by an older wulff, or not by wulff)")
    text = str(files.pop("__meta__"))
    mac = str(files.pop("__mac__"))
    if not hmac.compare_digest(_mac(secret, text, files), mac):
        raise ValueError("wrong HMAC: forged, damaged, or written with another key")
    version, stored_key, tree = json.loads(text)
    if version != FORMAT_VERSION or stored_key != repr(key):
        raise ValueError("stale entry (another format version or key)")
    return decode(tree, files)


def _store(path: Path, key: Hashable, payload: Any, secret: bytes) -> None:
    arrays: dict[str, np.ndarray] = {}
    text = json.dumps([FORMAT_VERSION, repr(key), encode(payload, arrays)])
    buffer = io.BytesIO()
    np.savez(buffer, __meta__=np.array(text), __mac__=np.array(_mac(secret, text, arrays)), **arrays)
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
_MISSING = object()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _trusted_entry(path: Path, key: Hashable, secret: bytes, validate: Callable[[Any], None] | None) -> Any:
    """The authenticated, validated payload at ``path``, or _MISSING (with a warning) when refused."""
    try:
        payload = _load(path, key, secret)
    except _UNREADABLE as exc:
        _warn(f"wulff cache: {path} refused ({_one_line(exc)}); rebuilt")
        return _MISSING
    if validate is not None:
        try:
            validate(payload)
        except Exception as exc:  # whatever a refused payload raises, it is rebuilt, never used
            _warn(f"wulff cache: {path} failed its check ({_one_line(exc)}); rebuilt")
            return _MISSING
    return payload


def cached(key: Hashable, build: Callable[[], Any], *, disk: bool = True,
           validate: Callable[[Any], None] | None = None) -> Any:
    """The payload for ``key``: from memory, else from disk, else ``build()`` (then stored in both).

    ``validate(payload)`` is called on an entry read from disk (after its HMAC): if it raises (e.g. a
    formula the restricted parser refuses, or a certificate that disagrees with its own definition at
    the spot checks), the entry is rebuilt with a one-line :class:`CacheEntryWarning`, like any entry
    that fails to load or authenticate."""
    with _lock:
        if key in _memory:
            return _memory[key]
    directory = cache_dir() if disk else None
    secret = _usable_secret() if directory is not None else None
    path = directory / f"{_digest(key)}{SUFFIX}" if secret is not None else None
    if path is not None and path.exists():
        payload = _trusted_entry(path, key, secret, validate)
        if payload is not _MISSING:
            with _lock:
                _memory[key] = payload
            return payload
    payload = build()
    if path is not None:
        try:
            _store(path, key, payload, secret)
        except OSError:
            pass  # a read-only or full disk only costs a rebuild next time
    with _lock:
        _memory[key] = payload
    return payload


# ---------------------------------------------------------------------------------------------
# re-checking a loaded certificate against its own definition (owners pass these in ``validate``)
# ---------------------------------------------------------------------------------------------
def spot_checks(fixed, low: float, high: float, count: int) -> np.ndarray:
    """The sorted points where a loaded artefact is re-checked: ``fixed`` plus ``count`` points drawn
    uniformly from [low, high] with fresh OS entropy, so whoever wrote the entry cannot know them."""
    rng = np.random.default_rng(secrets.randbits(128))
    return np.unique(np.concatenate([np.asarray(fixed, dtype=float), rng.uniform(low, high, count)]))


def spot_rows(size: int, count: int) -> np.ndarray:
    """Row indices of a table of ``size`` rows to re-check: the first, the last, ``count`` evenly spaced
    and ``count`` drawn with fresh OS entropy (see :func:`spot_checks`)."""
    if size <= 0:
        return np.zeros(0, dtype=int)
    rng = np.random.default_rng(secrets.randbits(128))
    rows = np.concatenate([np.linspace(0, size - 1, count + 2).round(), rng.integers(0, size, count)])
    return np.unique(rows.astype(int))


#: Gauss-Legendre nodes and weights on [-1, 1] for each panel of :func:`definition_radius`
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(16)


def definition_radius(Phi: Callable[[np.ndarray], np.ndarray], rho) -> np.ndarray:
    """R(rho) = int_{1-rho}^{1/2} dp / Phi(p) at unit scale (Theorem G.6), for rho in (1/2, 1).

    ``Phi`` is a vectorized function of p (an upper bound on Phi gives a lower bound on R), called
    once on all nodes. The integral is taken in s = log p, where p / Phi(p) = 1 / E[gamma | top p of
    gamma] is smooth, by 16-point Gauss-Legendre panels of width at most 1 shared by all rho: a
    reference for spot checks (measured within 4e-3 of the exact radius from p = 1e-9 to 1/2,
    across the kinks of discrete laws too), not a bound."""
    rho = np.asarray(rho, dtype=float)
    starts = np.log1p(-rho.ravel())  # log(1 - rho), exact near 1/2
    top = np.log(0.5)
    edges = np.unique(np.concatenate([starts, np.arange(top, starts.min(), -1.0), [top]]))
    half, middle = 0.5 * np.diff(edges)[:, None], 0.5 * (edges[1:] + edges[:-1])[:, None]
    p = np.exp(middle + half * _GL_NODES[None, :])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        values = p / np.asarray(Phi(p.ravel()), dtype=float).reshape(p.shape)
    panels = (half[:, 0] * (values * _GL_WEIGHTS[None, :]).sum(axis=1))
    from_edge = np.concatenate([np.cumsum(panels[::-1])[::-1], [0.0]])  # the integral from each edge to 1/2
    return from_edge[np.searchsorted(edges, starts)].reshape(rho.shape)


def check_not_above(claimed, reference, *, what: str, rtol: float, atol: float = 0.0) -> None:
    """Raise ValueError unless every ``claimed`` value is at most ``reference`` (1 + rtol) + atol
    (a NaN on either side fails): a loaded certificate may not claim more than its definition gives."""
    claimed, reference = np.asarray(claimed, dtype=float), np.asarray(reference, dtype=float)
    with np.errstate(invalid="ignore"):
        bad = ~(claimed <= reference * (1 + rtol) + atol)
    if np.any(bad):
        i = int(np.flatnonzero(bad.ravel())[0])
        raise ValueError(f"{what}: {claimed.ravel()[i]!r} where its definition gives {reference.ravel()[i]!r}")


def clear_memory() -> None:
    """Forget the in-memory layer (the disk layer stays)."""
    with _lock:
        _memory.clear()
