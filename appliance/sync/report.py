"""The state report a cycle queues in the outbox, in the hub's report format
(``appliance/hub/reports.py``; the outbox adds ``device_id``, ``seq``, ``kind`` and
``sent_at`` when it sends)::

    {"installed": {model: [{"version", "stage", "package_digest", "failure_reason"}]},
     "health":    {"status", "reasons", "stale_since": ISO | None, "outbox_pending"},
     "profile":   {...},                     # hardware facts and the matched profile
     "audit_checkpoints": [{"at", "size", "head_hash", "payload", "signature", "key_id"}],
     "audit_records": [{"seq", "at", "kind", "actor", "body", "prev_hash", "hash"}, ...],
     "metrics":   {"audit_head": {"seq", "hash"}, "audit_behind": n, "versions": n,
                   "requests": {model: {version: {"success", "failure"}}}},
     "sync":      {"last_success_at", "last_error", "last_refusal", "result": {...}},
     "rollouts":  [{"rollout", "model", "version", "state", "failure_type", "reason"}]}

The audit part is the log's head, its newest signed checkpoint, and **the records since
the last report** exactly as stored (``body`` the hashed JSON text), so the hub witnesses
the chain record by record (``appliance.hub.audit_witness``): a rewrite on the box after
the hub saw a record no longer extends what the hub holds. Which records went is the
outbox cursor ``audit`` (:meth:`~.outbox.Outbox.cursor`), moved in the same transaction
as the entry that carries them, so a record is queued once, and the outbox's delivery
(or its signed gap) covers it from there. One entry carries at most
``AUDIT_BATCH_RECORDS`` records and ``AUDIT_BATCH_BYTES`` bytes of them; a cycle queues
further ``audit`` entries up to ``[sync] audit_records_per_cycle`` (0: none, the head and
checkpoints only); ``metrics.audit_behind`` says how many are still to go. The rest of
the report is bounded too: lists are cut, and one still larger than ``MAX_REPORT_BYTES``
loses its hardware facts.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .box import Box
from .state import SyncState

__all__ = ["AUDIT_BATCH_BYTES", "AUDIT_BATCH_RECORDS", "AUDIT_CURSOR", "MAX_REPORT_BYTES",
           "audit_records_after", "audit_summary", "build_report", "iso"]

log = logging.getLogger("appliance.sync")

MAX_REPORT_BYTES = 256 * 1024
MAX_VERSIONS = 500
AUDIT_CURSOR = "audit"
AUDIT_BATCH_RECORDS = 500
AUDIT_BATCH_BYTES = 192 * 1024
_RECORD_FIELDS = ("seq", "at", "kind", "actor", "body", "prev_hash", "hash")


def audit_records_after(data_dir: Path, after: int, *, limit: int = AUDIT_BATCH_RECORDS,
                        max_bytes: int = AUDIT_BATCH_BYTES) -> tuple[list[dict[str, Any]], int]:
    """The records of ``<data_dir>/audit.db`` after seq ``after`` (at most ``limit``, and
    ``max_bytes`` of body text; at least one), and the log's head seq (0: none)."""
    path = Path(data_dir) / "audit.db"
    if not path.is_file() or limit <= 0:
        return [], 0
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return [], 0
    try:
        head = conn.execute("SELECT max(seq) FROM records").fetchone()[0] or 0
        rows = conn.execute("SELECT seq, at, kind, actor, body, prev_hash, hash FROM records "
                            "WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)).fetchall()
    except sqlite3.Error as exc:
        log.warning("sync report: audit log %s unreadable: %s", path, exc)
        return [], 0
    finally:
        conn.close()
    out: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        size += len(row[4]) + 300
        if out and size > max_bytes:
            break
        out.append(dict(zip(_RECORD_FIELDS, row)))
    return out, int(head)


def audit_summary(data_dir: Path) -> dict[str, Any] | None:
    """Head and newest checkpoint of ``<data_dir>/audit.db`` (read-only), or None."""
    path = Path(data_dir) / "audit.db"
    if not path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return None
    try:
        head = conn.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1"
                            ).fetchone()
        checkpoint = conn.execute(
            "SELECT at, size, head_hash, payload, signature, key_id FROM checkpoints "
            "WHERE kind = 'checkpoint' ORDER BY id DESC LIMIT 1").fetchone()
    except sqlite3.Error as exc:
        log.warning("sync report: audit log %s unreadable: %s", path, exc)
        return None
    finally:
        conn.close()
    out: dict[str, Any] = {"head": {"seq": head[0], "hash": head[1]} if head else None,
                           "checkpoint": None}
    if checkpoint:
        keys = ("at", "size", "head_hash", "payload", "signature", "key_id")
        out["checkpoint"] = dict(zip(keys, checkpoint))
    return out


def _safe(what: str, fn: Callable[[], dict[str, Any]] | None) -> dict[str, Any]:
    if fn is None:
        return {}
    try:
        return fn()
    except Exception as exc:  # a report goes out even when one part cannot be had
        log.warning("sync report: %s unavailable: %s", what, exc)
        return {"error": f"{type(exc).__name__}: {exc}"}


def iso(moment: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC (None stays None)."""
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="microseconds")


def build_report(box: Box, state: SyncState, result: dict[str, Any], *,
                 outbox_pending: int = 0, audit_records: list[dict[str, Any]] | None = None,
                 audit_behind: int = 0) -> dict[str, Any]:
    """The state report of ``box`` after a cycle whose outcome is ``result``, carrying
    ``audit_records`` (:func:`audit_records_after`)."""
    versions = [r for r in box.registry.versions() if r.stage != "archived"]
    installed: dict[str, list[dict[str, Any]]] = {}
    for r in versions[:MAX_VERSIONS]:
        installed.setdefault(r.model, []).append(
            {"version": r.version, "stage": r.stage, "package_digest": r.package_digest,
             "failure_reason": r.failure_reason})
    health = {**_safe("health", box.health), "stale_since": iso(state.stale_since),
              "outbox_pending": outbox_pending}
    audit = audit_summary(box.settings.data_dir) or {}
    checkpoint = audit.get("checkpoint")
    result = dict(result)
    report: dict[str, Any] = {
        "rollouts": list(result.pop("rollouts", None) or []),
        "installed": installed, "health": health,
        "profile": _safe("hardware", box.hardware),
        "audit_checkpoints": [checkpoint] if checkpoint else [], "audit_records": [],
        "metrics": {"audit_head": audit.get("head"), "versions": len(versions),
                    "audit_behind": audit_behind,
                    "requests": _safe("request counts", box.metrics)},
        "sync": {"last_success_at": iso(state.last_success_at),
                 "last_error": state.last_error, "last_refusal": state.last_refusal,
                 "result": result}}
    if len(versions) > MAX_VERSIONS:
        report["metrics"]["installed_truncated"] = True
    if len(json.dumps(report, default=str)) > MAX_REPORT_BYTES:
        report["profile"] = {"omitted": "the report was too large"}
        report["installed"] = dict(list(installed.items())[:50])
    report["audit_records"] = list(audit_records or [])
    return dict(json.loads(json.dumps(report, default=str)))  # plain JSON types only
