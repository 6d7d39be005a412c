"""Carry the registry's ``events`` rows (every lifecycle action, from any process: the
CLI, the API, the scheduler) into the hash-chained audit log, and record auth failures.

The registry writes its append-only ``events`` row in the same transaction as the
change it describes; the serving process copies new rows into the audit chain on its
registry-watcher tick (and at start-up), remembering the last event id it copied in the
records themselves (``body.event_id``), so a restart neither skips nor repeats one.
Between the change and the next tick (about a second) the event is in the registry only.

Auth failures go through the writer's bounded queue (:func:`record_auth_failure`).

SQL: this module reads the registry's append-only ``events`` table (read-only, by id)
and the audit log's own ``records``; it writes registry tables never.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from typing import Any

from .log import AuditLog
from .records import Entry

log = logging.getLogger(__name__)
_LOCK = threading.Lock()
_WARNED = [-1e9]
_MAX_TEXT = 512  # reason and path come from the request: bound what a record keeps


def _last_bridged(audit: AuditLog) -> int:
    # the partial index records_model_events: O(log n) however many inference records
    # came after the last registry event (a LIKE scan here cost ~6 % of a core under load)
    with audit.reader() as conn:
        for (body,) in conn.execute(
                "SELECT body FROM records WHERE kind >= 'model.' AND kind < 'model/' "
                "ORDER BY seq DESC"):
            event_id = json.loads(body).get("event_id")
            if event_id is not None:
                return int(event_id)
    return 0


def bridge_events(registry_db: Any, audit: AuditLog, *, limit: int = 5000) -> int:
    """Append registry events newer than the last one bridged; return how many. While
    the audit log cannot be written (a full disk) the events wait in the registry: 0,
    with a warning at most once a minute."""
    with _LOCK:
        try:
            return _bridge(registry_db, audit, limit)
        except (OSError, sqlite3.OperationalError) as exc:
            now = time.monotonic()
            if now - _WARNED[0] > 60:
                _WARNED[0] = now
                log.warning("registry events not copied into the audit log (%s); they wait "
                            "in the registry until it can be written", exc)
            return 0


def _bridge(registry_db: Any, audit: AuditLog, limit: int) -> int:
    after = _last_bridged(audit)
    rows = registry_db.execute(
        "SELECT id, at, actor, action, model, version, detail FROM events WHERE id > ? "
        "ORDER BY id LIMIT ?", [after, limit]).fetchall()
    if not rows:
        return 0
    entries = [Entry(f"model.{action}", actor or "unknown",
                     {"event_id": id_, "model": model, "version": version,
                      "registry_at": at, "detail": _detail(detail)})
               for id_, at, actor, action, model, version, detail in rows]
    audit.append_many(entries)
    return len(entries)


def _detail(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text


def record_auth_failure(audit: Any, reason: str, client: str | None, path: str) -> bool:
    """Queue an ``auth.failure`` record on the runtime's one bounded queue and writer
    (``audit``: an :class:`~appliance.audit.runtime.AuditRuntime`, or None when audit is
    off). O(1), no thread, no I/O: a flood of bad tokens cannot multiply threads; a record
    the full queue drops is counted in a gap record. False when not queued."""
    writer = getattr(audit, "writer", None)
    if writer is None:
        return False
    return bool(writer.record_event("auth.failure", client or "unknown",
                                    {"reason": reason[:_MAX_TEXT], "path": path[:_MAX_TEXT]}))
