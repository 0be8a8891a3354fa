"""One writer per output, and nothing left behind by a run that failed before its first result.

A run that writes a result file or an output folder holds an exclusive lock on it for as long as it
writes: an advisory ``fcntl.flock`` on a lock file, ``<name>.lock`` beside a result file (beside it,
as the file may be rewritten by ``os.replace`` under the lock) and ``.wulff.lock`` inside an output
folder (nothing is written outside the folder the user named). The lock file holds
``"<pid> <host>"`` of the holder, so a second process stops at once with a one-line
:class:`OutputInUseError` naming that pid.

A stale lock cannot block anyone: the kernel drops a flock when its holder dies (even by SIGKILL),
so the lock file a dead process left behind is simply locked again (and its contents replaced). The
holder removes the lock file when it is done; a process that locks one checks afterwards that the
path still names the file it locked (else it locked a removed one and tries again).

Locks are re-entrant within a process (a command locks its output early, the writer it calls locks
it again) and not inherited by forked children. Where the file system has no locks (some network
mounts) the run goes on with a warning.
"""
from __future__ import annotations

import errno
import functools
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from wulff.errors import UserError

try:
    import fcntl
except ImportError:  # not a POSIX system: no locks (see _take)
    fcntl = None

#: errors of flock that mean "this file system does not lock", not "someone else holds it"
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class OutputInUseError(UserError):
    """Another process is writing the same result file or output folder."""


@dataclass
class _Held:
    pid: int
    fd: int | None  #: None where the file system has no locks
    depth: int


_held: dict[str, _Held] = {}
_guard = threading.Lock()


#: the lock file inside a locked output folder
FOLDER_LOCK = ".wulff.lock"


def sidecar(target: str | os.PathLike, *, folder: bool = False) -> Path:
    """The lock file of an output: ``res/c.tsv`` -> ``res/c.tsv.lock``; with ``folder``, ``runs/a`` ->
    ``runs/a/.wulff.lock`` (of the real path, so every spelling of one output shares one lock)."""
    real = Path(target).resolve()
    if folder:
        return real / FOLDER_LOCK
    if not real.name:
        raise ValueError(f"cannot lock {target}: give a file below the file system's root")
    return real.with_name(real.name + ".lock")


def _holder(fd: int) -> str:
    """Who holds the lock, as its sidecar says ("pid 123" or "pid 123 on host h")."""
    text = ""
    for _ in range(20):  # the holder writes its pid just after locking: wait a moment for it
        text = os.pread(fd, 256, 0).decode("utf-8", "replace").strip()
        if text:
            break
        time.sleep(0.01)
    pid, _, host = text.partition(" ")
    if not pid.isdigit():
        return "pid unknown"
    return f"pid {pid}" if host in ("", socket.gethostname()) else f"pid {pid} on host {host}"


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _take(path: Path, target: Path) -> int | None:
    """Open and flock the lock file ``path`` of ``target`` and write our pid in it; raise
    :class:`OutputInUseError` if another process holds it. None where nothing can be locked."""
    if fcntl is None:
        warnings.warn(f"cannot lock {target} on this system: make sure no other process writes it", stacklevel=3)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _holder(fd) if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN) else None
            os.close(fd)
            if holder is not None:
                raise OutputInUseError(f"{target} is in use by another process ({holder}); wait until it "
                                       "has finished, or write to another output") from None
            if exc.errno in _NO_LOCKS:
                warnings.warn(f"cannot lock {target} (the file system has no locks: {exc.strerror}); make "
                              "sure no other process writes it", stacklevel=3)
                return None
            raise
        if not _same_file(fd, path):  # its previous holder removed it after we opened it: start over
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        return fd
    raise OutputInUseError(f"{target}: its lock {path} keeps being replaced by other processes; try again")


class OutputLock:
    """An exclusive lock on one output, a result file or (``folder``) a folder, which is created if
    missing; for ``with`` or acquire/release.

    Re-entrant within a process: a second OutputLock of the same output in the same process shares
    the first one's lock, which is released when the last of them is."""

    def __init__(self, target: str | os.PathLike, *, folder: bool = False):
        self.target = Path(target)
        self.path = sidecar(target, folder=folder)
        self._acquired = False

    def acquire(self) -> OutputLock:
        if self._acquired:
            return self
        key = str(self.path)
        with _guard:
            held = _held.get(key)
            if held is not None and held.pid == os.getpid():
                held.depth += 1
            else:  # none, or one inherited through fork (the parent's, not ours)
                _held[key] = _Held(os.getpid(), _take(self.path, self.target), 1)
        self._acquired = True
        return self

    def release(self) -> None:
        if not self._acquired:
            return
        self._acquired = False
        with _guard:
            held = _held[str(self.path)]
            held.depth -= 1
            if held.depth > 0:
                return
            del _held[str(self.path)]
            if held.fd is not None:
                if _same_file(held.fd, self.path):
                    self.path.unlink(missing_ok=True)  # while still locked: a waiter re-checks the path
                os.close(held.fd)

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def missing_folders(folder: str | os.PathLike) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    folder = Path(os.path.abspath(folder))
    return [path for path in (folder, *folder.parents) if not os.path.lexists(path)]


def remove_empty(folders: list[Path]) -> None:
    """Remove each folder (deepest first) that is still empty; stop at the first that is not."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


@contextmanager
def removed_on_failure(folder: str | os.PathLike) -> Iterator[None]:
    """If the block raises, the folders on the way to ``folder`` (itself included) that it created are
    removed again, as long as they are empty: a folder that held anything is never touched."""
    created = missing_folders(folder)
    try:
        yield
    except BaseException:
        remove_empty(created)
        raise


def claims_output(attribute: str, *, folder: bool) -> Callable:
    """Decorator of a command's ``run(args)`` whose output is ``args.<attribute>`` (a folder when
    ``folder``, else a file): the run holds the output's :class:`OutputLock` throughout, and if it
    fails, the folders it created for it are removed while empty. Under torchrun only rank 0 claims
    the output (the other ranks write nothing there)."""

    def decorate(run: Callable) -> Callable:
        @functools.wraps(run)
        def claimed(args):
            target = str(getattr(args, attribute) or "")
            misnamed = not target or (folder and os.path.exists(target) and not os.path.isdir(target))
            if misnamed or int(os.environ.get("RANK", "0")) != 0:
                return run(args)  # a misnamed output is the command's own error
            with removed_on_failure(target if folder else Path(target).parent), OutputLock(target, folder=folder):
                return run(args)

        return claimed

    return decorate


__all__ = ["OutputInUseError", "OutputLock", "claims_output", "missing_folders", "remove_empty",
           "removed_on_failure", "sidecar"]
