"""The report outbox: what the box has to tell its hub, kept on disk until acknowledged.

``<data_dir>/sync/outbox.db`` (SQLite, WAL, ``synchronous=FULL``) holds one row per
entry, ``(seq, kind, body, size, at)``, and a ``meta`` table whose ``last_seq`` is the
box's sequence: :meth:`Outbox.append` takes ``last_seq + 1`` and writes the row and the
new ``last_seq`` in one transaction, so a number is never handed out twice, across
restarts and ``kill -9`` alike (a committed entry is on disk; an uncommitted one never
had a number). :meth:`Outbox.ack` deletes every entry up to the sequence the hub
acknowledged (its highest contiguous one).

The outbox is bounded (``outbox_max_rows`` entries, ``outbox_max_bytes`` bytes). An
append that goes past a bound drops the oldest entries, down to nine tenths of it, and
writes ONE ``gap`` entry in the same transaction naming the range it dropped: the audit
log's rule (:mod:`appliance.audit.losses`), nothing is lost silently. The gap's body::

    {"seq": 1042, "first": 17, "last": 1031, "count": 1015, "reason": "outbox-full",
     "first_at": …, "last_at": …, "key_id": "<device key id>", "signature": "<base64>"}

``signature`` is the device key's Ed25519 signature over the canonical JSON (sorted
keys, no spaces) of the body without ``signature``, so a gap is verifiable on its own,
wherever it is stored. A gap that is itself among the oldest when the next overflow
comes is folded into the new gap's range (its ``first`` is kept), so the ranges always
cover every dropped sequence number. :meth:`Outbox.pending` lists gap entries first:
the hub then knows a range is lost before it sees the entries after it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BadRequest
from .identity import DeviceIdentity, sync_dir, verify

__all__ = ["GAP", "Entry", "Outbox", "OutboxStatus", "canonical", "verify_gap"]

log = logging.getLogger("appliance.sync")

OUTBOX_FILE = "outbox.db"
GAP = "gap"
BUSY_TIMEOUT_S = 30.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, body TEXT NOT NULL,
    size INTEGER NOT NULL, at REAL NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES
    ('last_seq', 0), ('acked', 0), ('dropped', 0), ('gaps', 0);
"""


def canonical(body: dict[str, Any]) -> bytes:
    """The bytes a signature covers: JSON with sorted keys and no spaces."""
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def verify_gap(body: dict[str, Any], public_b64: str) -> bool:
    """Whether the gap entry ``body`` carries a valid signature by ``public_b64``."""
    signed = {k: v for k, v in body.items() if k != "signature"}
    return verify(public_b64, canonical(signed), str(body.get("signature", "")))


@dataclass(frozen=True)
class Entry:
    """One outbox entry as it is sent: sequence, kind, time (epoch s) and body."""

    seq: int
    kind: str
    at: float
    body: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "at": self.at, "body": self.body}


@dataclass(frozen=True)
class OutboxStatus:
    """Depth and counters of the outbox."""

    depth: int
    bytes: int
    last_seq: int
    acked: int
    pending_gaps: int
    gaps_total: int
    dropped_total: int

    def to_dict(self) -> dict[str, int]:
        return {"depth": self.depth, "bytes": self.bytes, "last_seq": self.last_seq,
                "acked": self.acked, "pending_gaps": self.pending_gaps,
                "gaps_total": self.gaps_total, "dropped_total": self.dropped_total}


class Outbox:
    """The outbox of one data directory. ``identity`` signs gap entries (needed only
    when a bound is hit; a closure so the keys load lazily)."""

    def __init__(self, data_dir: Path, *, max_rows: int = 10_000,
                 max_bytes: int = 64 * 1024 * 1024,
                 identity: DeviceIdentity | Callable[[], DeviceIdentity] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if max_rows < 2 or max_bytes < 4096:
            raise ValueError("the outbox needs max_rows >= 2 and max_bytes >= 4096")
        self.path = sync_dir(data_dir) / OUTBOX_FILE
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self._identity = identity
        self.clock = clock
        self._lock = threading.RLock()  # one connection, shared by the threads that use it
        self._conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                     check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)
        self.path.chmod(0o600)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken before anything is read (BEGIN IMMEDIATE)."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _meta(self, conn: sqlite3.Connection, key: str) -> int:
        return int(conn.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()[0])

    def _set(self, conn: sqlite3.Connection, key: str, value: int) -> None:
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", [value, key])

    # -- writing -------------------------------------------------------------------------
    def cursor(self, name: str) -> int:
        """A position kept beside the entries (0 until set), e.g. the last audit record
        queued: it moves in the same transaction as the entry that carries the data."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?",
                                     [f"cursor:{name}"]).fetchone()
        return int(row[0]) if row else 0

    def append(self, kind: str, body: dict[str, Any],
               cursor: tuple[str, int] | None = None) -> int:
        """Queue ``body`` (a JSON object) as an entry of ``kind``; its sequence number.
        ``cursor`` ``(name, value)`` is set in the same transaction (:meth:`cursor`).
        An entry larger than a quarter of ``max_bytes`` is refused (BadRequest)."""
        if not kind or kind == GAP:
            raise BadRequest(f"outbox entry kind {kind!r} is reserved or empty")
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        size = len(text.encode())
        if size > self.max_bytes // 4:
            raise BadRequest(f"outbox entry of kind {kind!r} is {size} bytes, over a quarter "
                             f"of [sync] outbox_max_bytes ({self.max_bytes}); send less "
                             "per report")
        with self._write() as conn:
            seq = self._meta(conn, "last_seq") + 1
            conn.execute("INSERT INTO entries (seq, kind, body, size, at) VALUES "
                         "(?, ?, ?, ?, ?)", [seq, kind, text, size, self.clock()])
            self._set(conn, "last_seq", seq)
            if cursor is not None:
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                             [f"cursor:{cursor[0]}", int(cursor[1])])
            self._bound(conn)
        return seq

    def _bound(self, conn: sqlite3.Connection) -> None:
        """Inside append's transaction: past a bound, drop the oldest down to nine
        tenths of it and write one gap entry naming what went."""
        rows, total = conn.execute("SELECT count(*), coalesce(sum(size), 0) FROM entries"
                                   ).fetchone()
        if rows <= self.max_rows and total <= self.max_bytes:
            return
        low_rows = max(2, self.max_rows - max(1, self.max_rows // 10))
        low_bytes = self.max_bytes - self.max_bytes // 10 - 1024  # room for the gap entry
        newest = self._meta(conn, "last_seq")
        first = last = None
        first_at = last_at = 0.0
        dropped = folded = 0
        cur = conn.execute("SELECT seq, kind, body, size, at FROM entries WHERE seq < ? "
                           "ORDER BY seq", [newest])
        for seq, kind, text, size, at in cur.fetchall():
            if rows + 1 <= low_rows and total <= low_bytes:
                break
            if kind == GAP:  # an older gap: its range joins the new one
                older = json.loads(text)
                start, folded = int(older["first"]), folded + int(older.get("count", 0))
            else:
                start, dropped = seq, dropped + 1
            first = start if first is None else min(first, start)
            first_at = at if last is None else min(first_at, at)
            last, last_at = seq, max(last_at, at)
            rows, total = rows - 1, total - size
        if first is None or last is None:
            return
        conn.execute("DELETE FROM entries WHERE seq >= ? AND seq <= ?", [first, last])
        gap_seq = self._gap(conn, first, last, dropped, first_at, last_at, "outbox-full",
                            folded=folded)
        log.warning("sync outbox full (%d entries, %d bytes at most): dropped %d entries, "
                    "sequence %d..%d; gap entry %d tells the hub", self.max_rows,
                    self.max_bytes, dropped, first, last, gap_seq)

    def _gap(self, conn: sqlite3.Connection, first: int, last: int, count: int,
             first_at: float, last_at: float, reason: str, *, folded: int = 0) -> int:
        """Inside a write: append the signed gap entry for ``first..last`` (``count``
        entries dropped now, ``folded`` by older gaps it replaces); its seq."""
        gap_seq = self._meta(conn, "last_seq") + 1
        body: dict[str, Any] = {"seq": gap_seq, "first": first, "last": last,
                                "count": count + folded, "reason": reason,
                                "first_at": first_at, "last_at": last_at}
        identity = self._identity() if callable(self._identity) else self._identity
        if identity is not None:
            body["key_id"] = identity.key_id
            body["signature"] = identity.sign(canonical(body))
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        conn.execute("INSERT INTO entries (seq, kind, body, size, at) VALUES (?, ?, ?, ?, ?)",
                     [gap_seq, GAP, text, len(text.encode()), self.clock()])
        self._set(conn, "last_seq", gap_seq)
        self._set(conn, "dropped", self._meta(conn, "dropped") + count)
        self._set(conn, "gaps", self._meta(conn, "gaps") + 1)
        return gap_seq

    def drop(self, seq: int, *, reason: str) -> int | None:
        """Replace entry ``seq`` (one the hub will never take) by a signed gap entry
        naming it; the gap's seq, or None when there is no such entry."""
        with self._write() as conn:
            row = conn.execute("SELECT kind, body, at FROM entries WHERE seq = ?",
                               [seq]).fetchone()
            if row is None:
                return None
            kind, text, at = row
            older = json.loads(text) if kind == GAP else {"first": seq, "count": 0}
            conn.execute("DELETE FROM entries WHERE seq = ?", [seq])
            return self._gap(conn, int(older["first"]), seq, 0 if kind == GAP else 1,
                             float(at), float(at), reason, folded=int(older["count"]))

    def ack(self, seq: int) -> int:
        """The hub holds every entry up to ``seq``: delete them; how many went. An ack
        past the last sequence handed out is clamped to it (and logged)."""
        with self._write() as conn:
            last = self._meta(conn, "last_seq")
            if seq > last:
                log.warning("the hub acknowledged sequence %d, but this box only reached "
                            "%d (a hub holding another box's reports, or a restored data "
                            "directory?)", seq, last)
                seq = last
            removed = conn.execute("DELETE FROM entries WHERE seq <= ?", [seq]).rowcount
            self._set(conn, "acked", max(self._meta(conn, "acked"), seq))
        return int(removed)

    # -- reading -------------------------------------------------------------------------
    def pending(self, limit: int = 100) -> list[Entry]:
        """Up to ``limit`` unacknowledged entries: gap entries first, then by sequence."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, kind, at, body FROM entries ORDER BY kind != ?, seq LIMIT ?",
                [GAP, max(0, limit)]).fetchall()
        return [Entry(int(seq), kind, float(at), json.loads(body))
                for seq, kind, at, body in rows]

    def status(self) -> OutboxStatus:
        """Depth, bytes and counters (one consistent read)."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN")  # one snapshot for the three reads
            try:
                rows, total = conn.execute(
                    "SELECT count(*), coalesce(sum(size), 0) FROM entries").fetchone()
                gaps = conn.execute("SELECT count(*) FROM entries WHERE kind = ?",
                                    [GAP]).fetchone()[0]
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            finally:
                conn.execute("COMMIT")
        return OutboxStatus(depth=int(rows), bytes=int(total), last_seq=int(meta["last_seq"]),
                            acked=int(meta["acked"]), pending_gaps=int(gaps),
                            gaps_total=int(meta["gaps"]), dropped_total=int(meta["dropped"]))
