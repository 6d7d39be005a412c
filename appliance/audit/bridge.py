"""Carry the registry's ``events`` rows (every lifecycle action, from any process: the
CLI, the API, the scheduler) into the hash-chained audit log, and record auth failures.

The registry writes its append-only ``events`` row in the same transaction as the
change it describes; the serving process copies new rows into the audit chain on its
registry-watcher tick (and at start-up), remembering the last event id it copied in the
records themselves (``body.event_id``), so a restart neither skips nor repeats one.
Between the change and the next tick (about a second) the event is in the registry only.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from .log import AuditLog, Entry

log = logging.getLogger(__name__)
_LOCK = threading.Lock()


def _last_bridged(audit: AuditLog) -> int:
    with audit.reader() as conn:
        row = conn.execute(
            "SELECT body FROM records WHERE kind LIKE 'model.%' AND body LIKE '%\"event_id\"%' "
            "ORDER BY seq DESC LIMIT 1").fetchone()
    return int(json.loads(row[0])["event_id"]) if row else 0


def bridge_events(registry_db: Any, audit: AuditLog, *, limit: int = 5000) -> int:
    """Append registry events newer than the last one bridged; return how many."""
    with _LOCK:
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


def record_auth_failure(audit: AuditLog | None, reason: str, client: str | None,
                        path: str) -> None:
    """An auth failure, written on a worker thread so a flood cannot stall the loop."""
    if audit is None:
        return

    def write() -> None:
        try:
            audit.append("auth.failure", client or "unknown", {"reason": reason, "path": path})
        except Exception:  # the audit log must never break request handling
            log.exception("could not record an auth failure in the audit log")

    threading.Thread(target=write, name="audit-auth", daemon=True).start()
