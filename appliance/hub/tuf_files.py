"""Crash-safe file writes and the repository lock used by the hub's TUF repository.

Every file the hub publishes is written to a temporary file in the same folder, fsynced,
renamed over its final name with ``os.replace`` and the folder fsynced: a web server or a
crash sees the old file or the new one, never a part. ``RepoLock`` serialises writers:
a ``threading.RLock`` per repository inside one process and an ``flock`` on
``<directory>/.lock`` between processes (several hub workers on one machine).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import threading
from pathlib import Path

_CHUNK = 1 << 20


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename inside it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _later_second(path: Path) -> int | None:
    """A whole-second mtime after ``path``'s current one (and not before now), or None
    when ``path`` does not exist yet."""
    import time

    try:
        before = int(path.stat().st_mtime)
    except FileNotFoundError:
        return None
    return max(int(time.time()), before + 1)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644,
                 new_mtime_second: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, ``os.replace``, fsync of
    the folder), creating missing parent folders; the file gets permission ``mode``.

    ``new_mtime_second``: the new file's mtime is a later whole second than the old
    one's. nginx's ``ETag`` is ``mtime-size`` in seconds, and a re-signed
    ``timestamp.json`` keeps its size: two writes in one second would share an ETag, and
    a box that polled between them would be answered 304 until the next change."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        later = _later_second(path) if new_mtime_second else None
        if later is not None:
            os.utime(tmp, (later, later))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_copy(src: Path, dest: Path, *, mode: int = 0o644) -> tuple[int, str]:
    """Copy ``src`` to ``dest`` atomically, streaming; returns (length, sha256 hex) of
    the bytes written, so a caller can check them against what it expected."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    digest, length = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as out, src.open("rb") as inp:
            while chunk := inp.read(_CHUNK):
                digest.update(chunk)
                length += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(dest.parent)
    return length, digest.hexdigest()


def file_digest(path: Path) -> tuple[int, str]:
    """(length, sha256 hex) of a file, read in chunks."""
    digest, length = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            length += len(chunk)
    return length, digest.hexdigest()


class _PathLock:
    """The lock state of one repository folder, shared by every ``RepoLock`` on it."""

    def __init__(self) -> None:
        self.rlock = threading.RLock()
        self.depth = 0
        self.fd: int | None = None


_PATH_LOCKS: dict[Path, _PathLock] = {}
_PATH_LOCKS_GUARD = threading.Lock()


class RepoLock:
    """Exclusive access to one repository folder, reentrant within a thread.

    ``with lock:`` takes the process-wide ``RLock`` for the folder, then (outermost
    level only) an exclusive ``flock`` on ``<directory>/.lock``. Two ``RepoLock`` objects
    on the same folder share their state, so nesting them in one thread cannot deadlock.
    """

    def __init__(self, directory: Path) -> None:
        self._path = Path(directory).resolve() / ".lock"
        with _PATH_LOCKS_GUARD:
            self._state = _PATH_LOCKS.setdefault(self._path, _PathLock())

    def __enter__(self) -> RepoLock:
        state = self._state
        state.rlock.acquire()
        try:
            if state.depth == 0:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
                state.fd = fd
            state.depth += 1
        except BaseException:
            state.rlock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        state = self._state
        state.depth -= 1
        if state.depth == 0 and state.fd is not None:
            fcntl.flock(state.fd, fcntl.LOCK_UN)
            os.close(state.fd)
            state.fd = None
        state.rlock.release()
