"""The notification outbox in ``alerts.db``: queued with the group state, sent later.

A group flush writes one row per sink in the same transaction that records what the
group told (so a crash between the two can neither lose a notification nor send it
twice from the state's point of view). :func:`deliver_due` runs in the engine's tick:
for each sink it sends that sink's due rows in order; the first failure stops that sink
for this round and pushes all its pending rows to ``now + backoff`` (``backoff_s``
doubling per attempt of the failed row, up to ``max_backoff_s``), so one sink that is
down costs at most one timeout per round, never reorders its notifications, and holds
them until it answers again. Rows are given up only on a permanent failure (a refused
destination) or, when ``max_attempts`` > 0, after that many attempts; the reason is
kept on the row. Times come from the engine's clock, like the rest of the engine.

The backoff rule is the consumer webhooks' (:mod:`appliance.lifecycle.webhooks`);
the table is separate because alert notifications are retried without limit by default
and ordered per sink.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from .settings import DeliverySettings
from .sinks import Delivery, Sink
from .store import AlertStore

log = logging.getLogger("appliance.alerts")


def enqueue(store: AlertStore, sink: str, notification: dict[str, Any], now: float) -> int:
    """Queue one notification for ``sink`` (joins the caller's transaction); it is due
    no earlier than the sink's backlog, so a sink backing off gets it in order."""
    with store.transaction() as conn:
        backlog = conn.execute("SELECT max(next_attempt_at) FROM outbox WHERE sink = ? AND "
                               "status = 'pending'", [sink]).fetchone()[0]
        cur = conn.execute("INSERT INTO outbox (sink, payload, created_at, next_attempt_at) "
                           "VALUES (?, ?, ?, ?)",
                           [sink, json.dumps(notification, sort_keys=True), now,
                            max(now, backlog or now)])
    return int(cur.lastrowid or 0)


def rows(store: AlertStore, status: str | None = None) -> list[dict[str, Any]]:
    """Outbox rows (all, or of one status), oldest first, payloads decoded."""
    where, args = ("WHERE status = ?", [status]) if status else ("", [])
    with store.transaction() as conn:
        cur = conn.execute("SELECT id, sink, payload, created_at, next_attempt_at, status, "
                           f"attempts, last_error, delivered_at FROM outbox {where} "
                           "ORDER BY id", args)
        cols = [c[0] for c in cur.description]
        found = [dict(zip(cols, row)) for row in cur.fetchall()]
    for row in found:
        row["payload"] = json.loads(row["payload"])
    return found


def backoff(attempts: int, settings: DeliverySettings) -> float:
    """Seconds before the next try after ``attempts`` failed ones."""
    return float(min(settings.backoff_s * 2 ** max(attempts - 1, 0), settings.max_backoff_s))


def _fail(store: AlertStore, row_id: int, sink: str, attempts: int, result: Delivery,
          now: float, settings: DeliverySettings) -> None:
    give_up = result.permanent or (settings.max_attempts and attempts >= settings.max_attempts)
    with store.transaction() as conn:
        if give_up:
            why = (f"not sent: {result.outcome}" if result.permanent
                   else f"gave up after {attempts} attempt(s): {result.outcome}")
            conn.execute("UPDATE outbox SET status = 'failed', attempts = ?, last_error = ? "
                         "WHERE id = ?", [attempts, why, row_id])
            log.warning("alert notification #%d to %s %s", row_id, sink, why)
            return
        retry = now + backoff(attempts, settings)
        conn.execute("UPDATE outbox SET attempts = ?, last_error = ? WHERE id = ?",
                     [attempts, result.outcome, row_id])
        conn.execute("UPDATE outbox SET next_attempt_at = max(next_attempt_at, ?) "
                     "WHERE sink = ? AND status = 'pending'", [retry, sink])


def deliver_due(store: AlertStore, sinks: dict[str, Sink], now: float,
                settings: DeliverySettings, *, limit: int = 100) -> int:
    """Send what is due at ``now``; the number of rows delivered."""
    with store.transaction() as conn:
        due = conn.execute("SELECT id, sink, payload, attempts FROM outbox WHERE status = "
                           "'pending' AND next_attempt_at <= ? ORDER BY id LIMIT ?",
                           [now, limit]).fetchall()
    stopped: set[str] = set()
    delivered = 0
    for row_id, name, payload, attempts in due:
        if name in stopped:
            continue
        sink = sinks.get(name)
        if sink is None:  # configured away: keep the row, say why, try again later
            result = Delivery(False, f"sink {name!r} is not configured in [alerts.sinks]")
        else:
            result = sink.send(json.loads(payload), row_id)
        if result.delivered:
            with store.transaction() as conn:
                conn.execute("UPDATE outbox SET status = 'delivered', attempts = ?, "
                             "delivered_at = ?, last_error = NULL WHERE id = ?",
                             [attempts + 1, now, row_id])
            delivered += 1
            continue
        stopped.add(name)
        _fail(store, row_id, name, attempts + 1, result, now, settings)
    return delivered
