"""An experiment's assignments and their delayed rewards, in one SQLite file (WAL).

One row per routed request: ``request_id`` (primary key), model, arm, when it was assigned,
the arm's weight at that moment, a status and the reward::

    pending --reward()--> rewarded
       |  \\--expire(): older than the wait--> defaulted (the configured default reward)
       \\--record_error()--> error (no reward: errors are counted apart)

The request path only appends to an in-memory buffer (:meth:`RewardStore.assign`,
:meth:`RewardStore.record_error`: O(1), no disk I/O). Every write transaction begins by
writing that buffer, so :meth:`~RewardStore.flush` on a tick, a reward, an expiry or a prune
each see every assignment made before them; a reward joins its assignment once (the first
wins; a duplicate, an unknown id or one whose wait is over is reported, not applied).

:meth:`~RewardStore.arm_states` is one aggregate query over the committed rows (a covering
index answers it), and nothing else feeds the posterior, so after a crash or ``kill -9``
the reopened store gives exactly the posterior of what was committed; only the buffer of
the last tick is lost, as assignments that will never get a reward. Every write is one
``BEGIN IMMEDIATE`` transaction, so a crash leaves a whole flush or none. ``synchronous=
NORMAL``: in WAL mode a committed transaction survives the process dying; a power cut may
lose the last few commits, no more than the buffer a crash loses anyway. The schema version
is SQLite's ``user_version``; :data:`MIGRATIONS` bring an older file up.
"""

from __future__ import annotations

import math
import numbers
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from .bandit import ArmState

__all__ = ["MIGRATIONS", "Outcome", "RewardStore"]

#: what became of a reward or an error report
Outcome = Literal["accepted", "duplicate", "unknown", "expired", "errored"]

MIGRATIONS: tuple[str, ...] = ("""
CREATE TABLE assignments (request_id TEXT PRIMARY KEY, model TEXT NOT NULL,
    arm TEXT NOT NULL, assigned_at REAL NOT NULL, weight REAL NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'rewarded', 'defaulted', 'error')),
    reward REAL, rewarded_at REAL);
CREATE INDEX assignments_arm ON assignments (model, arm, status, reward);
CREATE INDEX assignments_pending ON assignments (status, assigned_at);
CREATE INDEX assignments_time ON assignments (assigned_at);
""",)

_Row = tuple[str, str, float, float]  # model, arm, assigned_at, weight


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {number}")
    return number


class RewardStore:
    """Assignments buffered in memory, written with their rewards in one SQLite file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._closed = False
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False,
                                     isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            self._conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version={number};\n"
                                     "COMMIT;")
        self._db_lock = threading.Lock()
        self._buffer_lock = threading.Lock()
        self._buffer: dict[str, _Row] = {}
        self._errors: list[str] = []

    # -- the request path: memory only -------------------------------------------------
    def assign(self, request_id: str, model: str, arm: str, weight: float,
               now: float) -> None:
        """Buffer one assignment (``weight``: the arm's weight when it was chosen); the
        first assignment of a request id wins. No disk I/O: the next write stores it."""
        with self._buffer_lock:
            self._buffer.setdefault(request_id, (model, arm, now, weight))

    def record_error(self, request_id: str) -> None:
        """Buffer that the request failed: at the next write its pending assignment becomes
        an error (no reward, counted in ``errors``); an id with an outcome is left alone."""
        with self._buffer_lock:
            self._errors.append(request_id)

    def buffered(self) -> int:
        """Assignments not yet written."""
        with self._buffer_lock:
            return len(self._buffer)

    # -- writes: one transaction each, the buffer first ---------------------------------
    @contextmanager
    def _transaction(self) -> Iterator[tuple[sqlite3.Connection, int]]:
        with self._db_lock:
            with self._buffer_lock:
                rows, self._buffer = self._buffer, {}
                errors, self._errors = self._errors, []
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT OR IGNORE INTO assignments (request_id, model, arm, assigned_at, "
                    "weight, status) VALUES (?, ?, ?, ?, ?, 'pending')",
                    [(rid, *row) for rid, row in rows.items()])
                self._conn.executemany(
                    "UPDATE assignments SET status = 'error' WHERE request_id = ? AND "
                    "status = 'pending'", [(rid,) for rid in errors])
                yield self._conn, len(rows)
            except BaseException:
                self._conn.execute("ROLLBACK")
                with self._buffer_lock:  # nothing was written: keep it for the next try
                    self._buffer = {**rows, **self._buffer}
                    self._errors = errors + self._errors
                raise
            self._conn.execute("COMMIT")

    def flush(self) -> int:
        """Write the buffered assignments and errors in one transaction; how many rows."""
        with self._transaction() as (_, written):
            return written

    def reward(self, request_id: str, value: float, now: float, *,
               wait_s: float | None = None) -> Outcome:
        """Join one reward to its assignment (see :meth:`rewards`)."""
        return self.rewards([(request_id, value)], now, wait_s=wait_s)[0]

    def rewards(self, items: Iterable[tuple[str, float]], now: float, *,
                wait_s: float | None = None) -> list[Outcome]:
        """Join rewards to their pending assignments in one transaction: "accepted";
        "duplicate" (already rewarded), "unknown" (no such id), "expired" (defaulted, or
        older than ``wait_s`` when given), "errored" (the request failed). A value that is
        not a finite number raises ValueError before anything is written."""
        batch = [(str(rid), _finite(f"reward for {rid!r}", value)) for rid, value in items]
        outcomes: list[Outcome] = []
        with self._transaction() as (db, _):
            for request_id, value in batch:
                found = db.execute("SELECT status, assigned_at FROM assignments WHERE "
                                   "request_id = ?", (request_id,)).fetchone()
                outcome = _outcome(found, now, wait_s)
                if outcome == "accepted":
                    db.execute("UPDATE assignments SET status = 'rewarded', reward = ?, "
                               "rewarded_at = ? WHERE request_id = ?",
                               (value, now, request_id))
                outcomes.append(outcome)
        return outcomes

    def expire(self, now: float, wait_s: float, default_reward: float, *,
               model: str | None = None) -> int:
        """Give pending assignments older than ``wait_s`` (of ``model``, or all) the default
        reward, status defaulted, in one transaction; how many."""
        wait = _finite("wait_s", wait_s)
        default = _finite("default_reward", default_reward)
        if wait < 0:
            raise ValueError(f"wait_s must be >= 0, got {wait}")
        sql = ("UPDATE assignments SET status = 'defaulted', reward = ?, rewarded_at = ? "
               "WHERE status = 'pending' AND assigned_at < ?")
        args: tuple[object, ...] = (default, now, now - wait)
        if model is not None:
            sql, args = sql + " AND model = ?", (*args, model)
        with self._transaction() as (db, _):
            return db.execute(sql, args).rowcount

    def prune(self, before: float) -> int:
        """Delete assignments made before ``before`` (retention), whatever their status; the
        posterior then covers what is left. How many rows went."""
        with self._transaction() as (db, _):
            return db.execute("DELETE FROM assignments WHERE assigned_at < ?",
                              (before,)).rowcount

    # -- reads: committed rows only -----------------------------------------------------
    def arm_states(self, model: str, arms: Iterable[str] = ()) -> dict[str, ArmState]:
        """Each arm's counts from the committed rows (the buffer is not included); ``arms``
        that have no row yet are included with zero counts."""
        with self._db_lock:
            rows = self._conn.execute(
                "SELECT arm, COUNT(*), COUNT(reward), TOTAL(reward), TOTAL(reward * reward), "
                "SUM(status = 'error') FROM assignments WHERE model = ? GROUP BY arm "
                "ORDER BY arm", (model,)).fetchall()
        states = {arm: ArmState() for arm in arms}
        for arm, n, rewarded, total, squares, errors in rows:
            states[arm] = ArmState(int(n), int(rewarded), float(total), float(squares),
                                   int(errors))
        return dict(sorted(states.items()))

    def span(self, model: str) -> tuple[int, float | None, float | None]:
        """How many committed assignments ``model`` has, and the first and last time one
        was made (None, None without any): the traffic rate an experiment report uses."""
        with self._db_lock:
            row = self._conn.execute("SELECT COUNT(*), MIN(assigned_at), MAX(assigned_at) "
                                     "FROM assignments WHERE model = ?", (model,)).fetchone()
        return int(row[0]), row[1], row[2]

    def close(self) -> None:
        """Write what is buffered, then close the file (a second call does nothing)."""
        if self._closed:
            return
        self.flush()
        with self._db_lock:
            self._conn.close()
            self._closed = True

    def __enter__(self) -> RewardStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _outcome(found: tuple[str, float] | None, now: float, wait_s: float | None) -> Outcome:
    if found is None:
        return "unknown"
    status, assigned_at = found
    if status == "rewarded":
        return "duplicate"
    if status == "defaulted":
        return "expired"
    if status == "error":
        return "errored"
    if wait_s is not None and now - assigned_at > wait_s:
        return "expired"
    return "accepted"
