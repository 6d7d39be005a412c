"""A full disk is an answer, not a crash: turn ENOSPC and friends into a clear 507.

``ENOSPC`` (no space left), ``EDQUOT`` (quota exceeded) and ``EFBIG`` (a file-size limit,
``RLIMIT_FSIZE`` or the file system's maximum) all mean "this write does not fit"; SQLite
reports the same as ``database or disk is full``. :func:`storage_error` maps any of
them to :class:`~appliance.errors.InsufficientStorage` saying where, how much is free
and how much the operation needed; :func:`check_free` refuses an operation up front
when it would leave less than the configured reserve.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from ..errors import InsufficientStorage

T = TypeVar("T")

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def free_bytes(path: Path) -> int:
    """Free bytes on the file system holding ``path`` (its nearest existing parent)."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` means a write did not fit (see the module docstring)."""
    if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
        return True
    return isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc)


def storage_error(exc: BaseException, where: Path, *,
                  needed: int | None = None) -> InsufficientStorage:
    """The 507 for a write under ``where`` that failed with ``exc``."""
    try:
        free = _mib(free_bytes(where))
    except OSError:
        free = "unknown"
    need = f"; it needs at least {_mib(needed)} free" if needed else ""
    return InsufficientStorage(
        f"the disk holding {where} is full ({getattr(exc, 'strerror', None) or exc}; "
        f"{free} free){need}: free space there (or raise the quota / file-size limit) "
        "and try again; nothing was recorded")


def check_free(where: Path, needed: int, reserve: int) -> None:
    """InsufficientStorage unless writing ``needed`` bytes under ``where`` leaves at least
    ``reserve`` bytes free."""
    free = free_bytes(where)
    if free - needed < reserve:
        raise InsufficientStorage(
            f"not enough free space on the disk holding {where}: the package needs "
            f"{_mib(needed)} and {_mib(reserve)} must stay free "
            f"(lifecycle.packages.free_reserve_bytes), but only {_mib(free)} is free; "
            f"free at least {_mib(needed + reserve - free)} and try again")


@contextmanager
def mapping_disk_full(where: Path, *, needed: int | None = None) -> Iterator[None]:
    """Re-raise a disk-full error from the block as InsufficientStorage."""
    try:
        yield
    except (OSError, sqlite3.OperationalError) as exc:
        if is_disk_full(exc):
            raise storage_error(exc, where, needed=needed) from None
        raise


def call_mapping_disk_full(where: Path, fn: Callable[[], T]) -> T:
    """``fn()``, with a disk-full error turned into InsufficientStorage."""
    with mapping_disk_full(where):
        return fn()
