"""Retention of the audit log: a minimum age before pruning, legal holds, tombstones.

:func:`prune` removes the oldest records only when all of these hold: they are older than
the minimum retention (default 6 years of 365.25 days), no legal hold is active, and the
chain verifies (pruning must not launder tampered evidence). The removed prefix is
replaced by a signed tombstone ``{at, hash_of_last_pruned, pruned_through_seq, reason}``
committed in the same transaction, and an ``audit.prune`` record is appended after it,
so verification starts from the tombstone and the chain continues unbroken.

Holds (``audit.hold`` / ``audit.release`` records) stop every prune until released.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import BadRequest, Conflict
from .checkpoints import verify
from .log import AuditLog
from .records import Entry, iso, now_iso
from .signing import store_signed

DEFAULT_RETENTION_YEARS = 6.0


def retention_period(years: float) -> timedelta:
    """``years`` of 365.25 days."""
    return timedelta(days=365.25 * years)


@dataclass
class AuditHold:
    id: int
    holder: str
    reason: str
    at: str
    released_at: str | None = None
    released_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PruneResult:
    pruned_through_seq: int
    hash_of_last_pruned: str
    records_pruned: int
    tombstone_id: int
    at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _required(what: str, value: str) -> str:
    if not value or not value.strip():
        raise BadRequest(f"{what} is required: holds and prunes are part of the audit trail")
    return value.strip()


def active_holds(log: AuditLog) -> list[AuditHold]:
    """Holds placed and not yet released."""
    with log.reader() as conn:
        rows = conn.execute("SELECT id, holder, reason, at, released_at, released_by FROM "
                            "holds WHERE released_at IS NULL ORDER BY id").fetchall()
    return [AuditHold(*row) for row in rows]


def place_hold(log: AuditLog, by: str, reason: str) -> AuditHold:
    """Place a legal hold on the whole audit log: nothing can be pruned until released."""
    by, reason = _required("who places the hold (--by)", by), _required("a reason", reason)
    at = now_iso()
    ids: list[int] = []

    def insert(conn: sqlite3.Connection, _seq: int, _head: str) -> None:
        cursor = conn.execute("INSERT INTO holds (holder, reason, at) VALUES (?, ?, ?)",
                              [by, reason, at])
        ids.append(int(cursor.lastrowid or 0))

    log.write([Entry("audit.hold", by, {"reason": reason}, at)], also=insert)
    return AuditHold(ids[0], by, reason, at)


def release_holds(log: AuditLog, by: str) -> list[AuditHold]:
    """Release every active hold; BadRequest when there is none."""
    by = _required("who releases the hold (--by)", by)
    at = now_iso()
    released: list[AuditHold] = []

    def update(conn: sqlite3.Connection, _seq: int, _head: str) -> None:
        rows = conn.execute("SELECT id, holder, reason, at FROM holds WHERE released_at IS "
                            "NULL ORDER BY id").fetchall()
        if not rows:
            raise BadRequest("the audit log has no active legal hold to release")
        conn.execute("UPDATE holds SET released_at = ?, released_by = ? WHERE released_at "
                     "IS NULL", [at, by])
        released.extend(AuditHold(row[0], row[1], row[2], row[3], at, by) for row in rows)

    log.write([Entry("audit.release", by, {}, at)], also=update)
    return released


def earliest_allowed(min_retention: timedelta, now: datetime | None = None) -> datetime:
    """Records at or after this moment may not be pruned."""
    return (now or datetime.now(UTC)) - min_retention


def prune(log: AuditLog, before: datetime, *, by: str, reason: str,
          min_retention: timedelta | None = None) -> PruneResult:
    """Remove the records older than ``before`` (the oldest contiguous run of them).

    Refused (Conflict) when ``before`` is younger than ``min_retention`` allows, while a
    legal hold is active, or when the chain does not verify."""
    by, reason = _required("who prunes (--by)", by), _required("a reason", reason)
    if before.tzinfo is None:
        before = before.replace(tzinfo=UTC)
    period = min_retention if min_retention is not None else retention_period(
        DEFAULT_RETENTION_YEARS)
    limit = earliest_allowed(period)
    if before > limit:
        raise Conflict(f"refusing to prune audit records younger than the minimum retention "
                       f"({period.days} days): --before may be at most {iso(limit)}")
    report = verify(log)
    if not report.ok:
        raise Conflict(f"refusing to prune: the audit log does not verify (first bad seq "
                       f"{report.first_bad_seq}); run `appliance audit verify` and "
                       "investigate before removing evidence")
    cutoff, results = iso(before), []

    def remove(conn: sqlite3.Connection, head_seq: int, _head: str) -> None:
        hold = conn.execute("SELECT holder, reason, at FROM holds WHERE released_at IS NULL "
                            "ORDER BY id LIMIT 1").fetchone()
        if hold:
            raise Conflict(f"refusing to prune: the audit log is under legal hold by "
                           f"{hold[0]} since {hold[2]}: {hold[1]!r} (`appliance audit "
                           "release` first)")
        first_kept = conn.execute("SELECT MIN(seq) FROM records WHERE at >= ?",
                                  [cutoff]).fetchone()[0]
        through = (first_kept - 1) if first_kept is not None else head_seq
        row = conn.execute("SELECT hash FROM records WHERE seq = ?", [through]).fetchone()
        if row is None:
            raise BadRequest(f"no audit records older than {cutoff} to prune")
        count = conn.execute("DELETE FROM records WHERE seq <= ?", [through]).rowcount
        at = now_iso()
        tid = store_signed(conn, log, "tombstone", through, row[0], {
            "pruned_through_seq": through, "hash_of_last_pruned": row[0], "at": at,
            "reason": reason})
        results.append(PruneResult(through, row[0], count, tid, at))
        body.update(pruned_through_seq=through, records_pruned=count, tombstone_id=tid)

    body: dict[str, Any] = {"before": cutoff, "reason": reason}
    log.write([Entry("audit.prune", by, body)], also=remove)
    return results[0]
