"""Audit records lost before they reached the chain, counted so a ``gap`` record can say so.

:class:`Losses` holds the counts in memory: ``(reason, kind) -> [count, first, last]``
(times as epoch seconds), touched only when something is lost. :class:`LossFile` keeps a
copy of them in ``<data_dir>/audit.losses`` so a count survives a stop while the log
cannot be written (a full disk): the next writer that can write reports it.

The file is reserved once, at 8 KiB of zeros, while the disk still has room; after that
it is only overwritten in place (``os.pwrite`` into blocks already allocated), which needs
no free space on ext4, XFS and tmpfs. (On copy-on-write filesystems, btrfs and ZFS, an
overwrite needs free blocks too: there the reservation does not help.) It holds two
4 KiB slots written alternately, each ``crc32 (4 bytes, big-endian) | JSON padded with
spaces``, ``{"gen": N, "pending": [[reason, kind, count, first, last], ...]}``; the valid
slot with the highest ``gen`` wins, so a write torn by a crash leaves the previous one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import zlib
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LOSS_FILE = "audit.losses"
SLOT = 4096
SIZE = 2 * SLOT

Key = tuple[str, str]  # (reason, record kind)


class Losses:
    """Records lost since the last gap record, by reason and kind."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: dict[Key, list[float]] = {}  # key -> [count, first_at, last_at]
        self.total = 0  # lost by this process (stats), carried-over counts excluded
        self.changes = 0  # bumped on every change: the writer persists when it moved

    def add(self, reason: str, count: int, first: float, last: float, *,
            kind: str = "inference", new: bool = True) -> None:
        with self.lock:
            if new:
                self.total += count
            self.changes += 1
            entry = self.pending.get((reason, kind))
            if entry is None:
                self.pending[(reason, kind)] = [count, first, last]
            else:
                entry[0] += count
                entry[1], entry[2] = min(entry[1], first), max(entry[2], last)

    def take(self) -> dict[Key, list[float]]:
        with self.lock:
            pending, self.pending = self.pending, {}
            if pending:
                self.changes += 1
        return pending

    def restore(self, pending: dict[Key, list[float]]) -> None:
        """Put back losses whose gap record could not be written."""
        for (reason, kind), (count, first, last) in pending.items():
            self.add(reason, int(count), first, last, kind=kind, new=False)

    def snapshot(self) -> dict[Key, list[float]]:
        with self.lock:
            return {key: list(value) for key, value in self.pending.items()}


class LossFile:
    """``<data_dir>/audit.losses``: the pending loss counts, kept across a stop."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOSS_FILE
        self._fd: int | None = None
        self._gen = 0
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            log.warning("audit loss counts cannot be kept in %s (%s): a loss while the log "
                        "cannot be written is then only reported if this process survives",
                        self.path, exc)
            return
        try:
            if os.fstat(fd).st_size < SIZE:
                os.pwrite(fd, bytes(SIZE), 0)  # reserve the blocks while there is room
                os.fsync(fd)
        except OSError as exc:
            log.warning("audit loss file %s cannot be reserved (%s)", self.path, exc)
        self._fd = fd

    def read(self) -> dict[Key, list[float]]:
        """The counts a previous writer left (empty when none or unreadable)."""
        if self._fd is None:
            return {}
        best: tuple[int, list[Any]] | None = None
        for slot in range(2):
            try:
                raw = os.pread(self._fd, SLOT, slot * SLOT)
            except OSError:
                continue
            if len(raw) < 8 or int.from_bytes(raw[:4], "big") != zlib.crc32(raw[4:]):
                continue
            try:
                doc = json.loads(raw[4:].decode())
                gen, pending = int(doc["gen"]), list(doc["pending"])
            except (ValueError, KeyError, TypeError):
                continue
            if best is None or gen > best[0]:
                best = (gen, pending)
        if best is None:
            return {}
        self._gen = best[0]
        found: dict[Key, list[float]] = {}
        for reason, kind, count, first, last in best[1]:
            if int(count) > 0:
                found[(str(reason), str(kind))] = [int(count), float(first), float(last)]
        return found

    def write(self, pending: dict[Key, list[float]]) -> bool:
        """Overwrite the older slot with ``pending``; False when that failed."""
        if self._fd is None:
            return False
        rows: list[list[Any]] = [[reason, kind, int(c), first, last]
                for (reason, kind), (c, first, last) in sorted(pending.items())]
        body = json.dumps({"gen": self._gen + 1, "pending": rows}).encode()
        if len(body) > SLOT - 4:  # cannot happen with the fixed reasons; keep the total
            total = sum(int(r[2]) for r in rows)
            first = min(r[3] for r in rows)
            last = max(r[4] for r in rows)
            body = json.dumps({"gen": self._gen + 1, "pending": [
                ["various", "various", total, first, last]]}).encode()
        body = body.ljust(SLOT - 4)
        data = zlib.crc32(body).to_bytes(4, "big") + body
        try:
            os.pwrite(self._fd, data, ((self._gen + 1) % 2) * SLOT)
            os.fdatasync(self._fd)
        except OSError as exc:
            log.warning("audit loss file %s cannot be written: %s", self.path, exc)
            return False
        self._gen += 1
        return True

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
