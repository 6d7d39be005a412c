"""``<data_dir>/alerts.db``: alerts, notification groups, silences and the outbox.

Everything the engine knows lives here, not in memory: a restarted server (or the CLI,
in another process) sees the same alerts, group timers, acknowledgements and silences,
so inhibition and silences hold across a restart and a group does not notify twice
for what it already sent. SQLite in WAL mode, ``synchronous=FULL``; every change is one
``BEGIN IMMEDIATE`` transaction (:meth:`AlertStore.transaction`), so a notification is
queued in the outbox in the same commit as the group state that says it was sent.
Times are epoch seconds from the engine's clock.

SQL here: owns every table of ``alerts.db`` (the outbox's delivery SQL is in
:mod:`appliance.alerts.outbox`, on this connection).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .model import Alert, Silence, matcher

ALERTS_DB = "alerts.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, labels TEXT NOT NULL,
    annotations TEXT NOT NULL, severity TEXT NOT NULL, base_severity TEXT NOT NULL,
    source TEXT NOT NULL, state TEXT NOT NULL, starts_at REAL NOT NULL,
    updated_at REAL NOT NULL, group_key TEXT NOT NULL, ends_at REAL,
    acked_by TEXT, acked_at REAL, ack_comment TEXT NOT NULL DEFAULT '',
    level INTEGER NOT NULL DEFAULT 0, notified_state TEXT,
    notified_level INTEGER NOT NULL DEFAULT -1);
CREATE INDEX IF NOT EXISTS alerts_group ON alerts (group_key);
CREATE TABLE IF NOT EXISTS groups (
    key TEXT PRIMARY KEY, labels TEXT NOT NULL, created_at REAL NOT NULL,
    next_flush_at REAL NOT NULL, last_notified_at REAL);
CREATE TABLE IF NOT EXISTS silences (
    id TEXT PRIMARY KEY, matchers TEXT NOT NULL, starts_at REAL NOT NULL,
    ends_at REAL NOT NULL, created_by TEXT NOT NULL, comment TEXT NOT NULL,
    created_at REAL NOT NULL, expired_at REAL, expired_by TEXT,
    expiry_audited INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, sink TEXT NOT NULL, payload TEXT NOT NULL,
    created_at REAL NOT NULL, next_attempt_at REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT, delivered_at REAL);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_at);
"""

_ALERT_COLS = ("id", "name", "labels", "annotations", "severity", "base_severity", "source",
               "state", "starts_at", "updated_at", "group_key", "ends_at", "acked_by",
               "acked_at", "ack_comment", "level", "notified_state", "notified_level")


class AlertStore:
    """One connection to ``alerts.db``, shared by the engine's threads under a lock."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / ALERTS_DB
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(self.path), check_same_thread=False,
                                    isolation_level=None, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.executescript(_SCHEMA)
        self._lock = threading.RLock()
        self._depth = 0

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write (re-entrant: an inner block joins the outer transaction)."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self.conn
                finally:
                    self._depth -= 1
                return
            self.conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            else:
                self.conn.execute("COMMIT")
            finally:
                self._depth = 0

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    # -- alerts ---------------------------------------------------------------------
    def alerts(self, where: str = "", args: tuple[Any, ...] = ()) -> list[Alert]:
        """Alerts (optionally ``WHERE ...``), oldest first."""
        with self._lock:
            rows = self.conn.execute(f"SELECT {', '.join(_ALERT_COLS)} FROM alerts "
                                     f"{'WHERE ' + where if where else ''} "
                                     "ORDER BY starts_at, id", args).fetchall()
        return [_alert(row) for row in rows]

    def alert(self, alert_id: str) -> Alert | None:
        found = self.alerts("id = ?", (alert_id,))
        return found[0] if found else None

    def save_alert(self, alert: Alert) -> None:
        values = [getattr(alert, c) for c in _ALERT_COLS]
        values[2], values[3] = json.dumps(alert.labels), json.dumps(alert.annotations)
        with self.transaction() as conn:
            conn.execute(f"INSERT OR REPLACE INTO alerts ({', '.join(_ALERT_COLS)}) VALUES "
                         f"({', '.join('?' for _ in _ALERT_COLS)})", values)

    def forget_resolved(self, before: float) -> None:
        """Drop resolved alerts that ended before ``before`` and need no notification."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM alerts WHERE state = 'resolved' AND ends_at < ? AND "
                         "(notified_state IS NULL OR notified_state = 'resolved')", [before])

    # -- groups ---------------------------------------------------------------------
    def ensure_group(self, key: str, labels: dict[str, str], now: float,
                     group_wait_s: float) -> None:
        """Create the group (first flush after ``group_wait_s``) unless it exists."""
        with self.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO groups (key, labels, created_at, "
                         "next_flush_at) VALUES (?, ?, ?, ?)",
                         [key, json.dumps(labels), now, now + group_wait_s])

    def groups(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self.conn.execute("SELECT key, labels, created_at, next_flush_at, "
                                     "last_notified_at FROM groups ORDER BY created_at"
                                     ).fetchall()
        return [{"key": k, "labels": json.loads(lb), "created_at": c, "next_flush_at": n,
                 "last_notified_at": last} for k, lb, c, n, last in rows]

    def update_group(self, key: str, **fields: Any) -> None:
        sets = ", ".join(f"{name} = ?" for name in fields)
        with self.transaction() as conn:
            conn.execute(f"UPDATE groups SET {sets} WHERE key = ?", [*fields.values(), key])

    def drop_group(self, key: str) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM groups WHERE key = ?", [key])

    # -- silences -------------------------------------------------------------------
    def save_silence(self, silence: Silence, *, expiry_audited: bool = False) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO silences (id, matchers, starts_at, ends_at, "
                         "created_by, comment, created_at, expired_at, expired_by, "
                         "expiry_audited) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         [silence.id, json.dumps([m.to_dict() for m in silence.matchers]),
                          silence.starts_at, silence.ends_at, silence.created_by,
                          silence.comment, silence.created_at, silence.expired_at,
                          silence.expired_by, int(expiry_audited)])

    def silences(self, where: str = "", args: tuple[Any, ...] = ()) -> list[Silence]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT id, matchers, starts_at, ends_at, created_by, comment, created_at, "
                f"expired_at, expired_by FROM silences {'WHERE ' + where if where else ''} "
                "ORDER BY created_at, id", args).fetchall()
        return [Silence(row[0], [matcher(m["name"], m["op"], m["value"])
                                 for m in json.loads(row[1])], *row[2:]) for row in rows]

    def silence(self, silence_id: str) -> Silence | None:
        found = self.silences("id = ?", (silence_id,))
        return found[0] if found else None

    def unaudited_expiries(self, now: float) -> list[Silence]:
        """Silences whose end has passed and whose expiry is not yet in the audit log."""
        return self.silences("expiry_audited = 0 AND min(ends_at, coalesce(expired_at, "
                             "ends_at)) <= ?", (now,))

    def mark_expiry_audited(self, silence_id: str) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE silences SET expiry_audited = 1 WHERE id = ?", [silence_id])


def _alert(row: tuple[Any, ...]) -> Alert:
    values = dict(zip(_ALERT_COLS, row))
    values["labels"] = json.loads(values["labels"])
    values["annotations"] = json.loads(values["annotations"])
    return Alert(**values)
