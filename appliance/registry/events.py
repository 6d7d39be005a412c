"""The append-only ``events`` log of the registry: who did what to which version, when.

Every module that records an event calls :func:`record_event` inside its own write
transaction, so the event and the change it describes commit together.
"""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from .db import now


def record_event(db: sqlite_utils.Database, *, actor: str, action: str, model: str | None,
                 version: str | None, detail: dict[str, Any], at: str | None = None) -> None:
    """Append one row to ``events`` (call inside the write's transaction); ``at``
    defaults to now. ``detail`` is stored as JSON with sorted keys."""
    db.execute("INSERT INTO events (at, actor, action, model, version, detail) "
               "VALUES (?, ?, ?, ?, ?, ?)",
               [at or now(), actor, action, model, version, json.dumps(detail, sort_keys=True)])


def record_stage_change(db: sqlite_utils.Database, *, model: str, version: str,
                        from_stage: str | None, to_stage: str, at: str, actor: str,
                        reason: str) -> None:
    """Append one row to ``stage_history`` (call inside the transition's transaction)."""
    db.execute("INSERT INTO stage_history (model, version, from_stage, to_stage, at, actor, "
               "reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
               [model, version, from_stage, to_stage, at, actor, reason])


def stage_changes(db: sqlite_utils.Database, model: str,
                  version: str | None = None) -> list[dict[str, Any]]:
    """The ``stage_history`` rows of a model (or one version) in the order written:
    ``id, version, from_stage, to_stage, at, actor, reason``."""
    where, args = ("model = ? AND version = ?", [model, version]) if version else (
        "model = ?", [model])
    cur = db.execute("SELECT id, version, from_stage, to_stage, at, actor, reason FROM "
                     f"stage_history WHERE {where} ORDER BY id", args)
    keys = ("id", "version", "from_stage", "to_stage", "at", "actor", "reason")
    return [dict(zip(keys, row)) for row in cur.fetchall()]
