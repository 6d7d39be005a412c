"""The data directory must be writable by the process that opens it: say so up front.

SQLite reports a data directory this user cannot write as ``unable to open database
file`` (or ``attempt to write a readonly database``) deep inside start-up. The CLI calls
:func:`check_data_dir` before it opens anything, and :func:`permission_error` maps a
refusal that still happens later (a file inside owned by another user) to the same
answer: which directory, who we are, who owns it, and the command that fixes it.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import sqlite3
import stat
from pathlib import Path

from .errors import ApplianceError

#: what the registry, the audit log and the key store write at the top of the directory
WRITTEN = ("registry.db", "registry.db-wal", "registry.db-shm", "audit.db", "audit.db-wal",
           "audit.db-shm", "audit.losses", "keys", "artifacts", "cache")
_DENIED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
_SQLITE_DENIED = ("unable to open database file", "readonly database")


class DataDirError(ApplianceError):
    """The data directory cannot be created or written by this user."""

    status = 500


def _user(uid: int) -> str:
    try:
        return f"{uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return f"{gid} ({grp.getgrgid(gid).gr_name})"
    except KeyError:
        return str(gid)


def _owner(path: Path) -> str:
    st = path.stat()
    return (f"owned by uid {_user(st.st_uid)}, gid {_group(st.st_gid)}, "
            f"mode {stat.S_IMODE(st.st_mode):04o}")


def _refusal(directory: Path, what: Path, problem: str, fix: str) -> DataDirError:
    uid, gid = os.getuid(), os.getgid()
    try:
        owner = _owner(what)
    except OSError:
        owner = "of unknown owner"
    subject = "it is" if what == directory else f"{what} is"
    return DataDirError(
        f"data directory {directory} {problem} by uid {_user(uid)}, gid {_group(gid)}: "
        f"{subject} {owner}; fix: {fix}, or set APPLIANCE_DATA_DIR (or --data-dir) to a "
        "directory this user can write")


def _writable(path: Path) -> bool:
    # effective ids and capabilities: what this process's writes will be checked against
    mode = os.W_OK | os.X_OK if path.is_dir() else os.W_OK
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


def check_data_dir(path: Path) -> None:
    """Raise :class:`DataDirError` unless ``path`` is a directory this user can write,
    with writable files at its top, or can be created (it is not created here)."""
    directory = Path(os.path.abspath(path))
    uid, gid = os.getuid(), os.getgid()
    chown = f"chown -R {uid}:{gid} {directory}"
    if directory.exists():
        if not directory.is_dir():
            raise DataDirError(f"data directory {directory} exists and is not a directory; "
                               "set APPLIANCE_DATA_DIR (or --data-dir) to a directory")
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            raise DataDirError(f"data directory {directory} is on a read-only file system; "
                               "mount it read-write (systemd: ProtectSystem=strict allows "
                               "only StateDirectory=/ReadWritePaths=), or set "
                               "APPLIANCE_DATA_DIR (or --data-dir) to a writable directory")
        if not _writable(directory):
            raise _refusal(directory, directory, "is not writable", chown)
        for name in WRITTEN:
            entry = directory / name
            if entry.exists() and not _writable(entry):
                raise _refusal(directory, entry, "holds files not writable", chown)
        return
    parent = directory.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not _writable(parent):
        raise _refusal(directory, parent, "does not exist and cannot be created",
                       f"install -d -o {uid} -g {gid} {directory}")


def permission_error(exc: BaseException, data_dir: Path) -> DataDirError | None:
    """The :class:`DataDirError` for ``exc`` if it is a permission refusal under
    ``data_dir`` (an ``OSError`` or SQLite's words for one), else None."""
    if isinstance(exc, OSError) and exc.errno in _DENIED:
        pass
    elif not (isinstance(exc, sqlite3.OperationalError)
              and any(words in str(exc) for words in _SQLITE_DENIED)):
        return None
    try:
        check_data_dir(data_dir)
    except DataDirError as found:
        return found
    filename = getattr(exc, "filename", None)
    directory = Path(os.path.abspath(data_dir))
    if filename and Path(os.path.abspath(filename)).is_relative_to(directory):
        # deeper than the top of the directory: name that file
        return _refusal(directory, Path(filename), "holds files not writable",
                        f"chown -R {os.getuid()}:{os.getgid()} {directory}")
    return None
