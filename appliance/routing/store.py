"""Stored routes: one row per model in the registry, changed only with the right ETag.

A route's ETag is ``"<revision>-<digest>"``: the revision counts the writes (a route
re-created after a delete goes on counting), the digest is of the spec as stored.
``PUT`` with ``If-Match`` set to anything else is refused with 412 (two operators
editing one route cannot silently overwrite each other); ``If-Match: *`` or none at
all (the CLI) writes whatever is there. Every write is one transaction
that also records a registry event (``route.set``, ``route.delete``, ``route.state``:
the audit bridge copies events into the audit chain) and bumps the generation, so the
serving process rebuilds its routes.

``route_state`` holds what a route changes by itself — a canary's step, a bandit's
weights — keyed by the revision it belongs to: a new spec starts from a fresh state.

SQL here: ``routes`` and ``route_state`` (migration 6 in registry/db.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from ..errors import ApplianceError, NotFound
from ..registry.db import bump_generation, now, transaction
from ..registry.events import record_event
from .spec import RouteSpec, decode_spec, encode_spec

__all__ = ["PreconditionFailed", "StoredRoute", "delete_route", "get_route", "routes",
           "save_state", "set_route", "state_of"]


class PreconditionFailed(ApplianceError):
    """``If-Match`` names another revision: someone changed the route meanwhile."""

    status = 412


@dataclass(frozen=True)
class StoredRoute:
    model: str
    spec: RouteSpec
    revision: int
    etag: str
    updated_at: str
    updated_by: str

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "route": encode_spec(self.spec),
                "revision": self.revision, "etag": self.etag,
                "updated_at": self.updated_at, "updated_by": self.updated_by}


def _etag(revision: int, text: str) -> str:
    return f'"{revision}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"'


def _row(row: Any) -> StoredRoute:
    model, text, revision, etag, at, by = row
    return StoredRoute(model, decode_spec(text.encode()), revision, etag, at, by)


_COLUMNS = "model, spec, revision, etag, updated_at, updated_by"


def get_route(db: sqlite_utils.Database, model: str) -> StoredRoute | None:
    """The model's stored route, or None (it has the default route)."""
    row = db.execute(f"SELECT {_COLUMNS} FROM routes WHERE model = ?", [model]).fetchone()
    return _row(row) if row else None


def routes(db: sqlite_utils.Database) -> dict[str, StoredRoute]:
    """Every stored route, by model."""
    return {r.model: r for r in map(_row, db.execute(
        f"SELECT {_COLUMNS} FROM routes ORDER BY model").fetchall())}


def _check_match(model: str, current: StoredRoute | None, if_match: str | None) -> None:
    if if_match is None or if_match.strip() == "*":
        return
    tags = {t.strip().removeprefix("W/") for t in if_match.split(",")}
    have = current.etag if current is not None else None
    if have not in tags:
        raise PreconditionFailed(
            f"the route of {model} changed: If-Match {if_match.strip()} but it is now "
            f"{have or 'absent'}; GET /v1/routes/{model} and apply your change to that")


def _last_revision(db: sqlite_utils.Database, model: str) -> int:
    """The highest revision the model's route ever had (0: none): a route re-created
    after a delete continues from it, so neither a stale ETag nor a server's runtime of
    the deleted route can be taken for the new one."""
    row = db.execute("SELECT MAX(CAST(json_extract(detail, '$.revision') AS INTEGER)) "
                     "FROM events WHERE model = ? AND action = 'route.set'", [model]).fetchone()
    return int(row[0] or 0)


def set_route(db: sqlite_utils.Database, model: str, spec: RouteSpec, *, actor: str,
              if_match: str | None = None, reason: str = "") -> StoredRoute:
    """Store ``spec`` (already checked: :func:`.spec.check_spec`) as the model's route."""
    text = json.dumps(encode_spec(spec), sort_keys=True)
    with transaction(db):
        current = get_route(db, model)
        _check_match(model, current, if_match)
        revision = (current.revision if current else _last_revision(db, model)) + 1
        etag, at = _etag(revision, text), now()
        db.execute("INSERT INTO routes (model, spec, revision, etag, updated_at, updated_by) "
                   "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (model) DO UPDATE SET "
                   "spec = excluded.spec, revision = excluded.revision, etag = excluded.etag, "
                   "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                   [model, text, revision, etag, at, actor])
        record_event(db, at=at, actor=actor, action="route.set", model=model, version=None,
                     detail={"route": json.loads(text), "revision": revision, "etag": etag,
                             "previous": current.etag if current else None,
                             "reason": reason})
        bump_generation(db)
    return StoredRoute(model, spec, revision, etag, at, actor)


def delete_route(db: sqlite_utils.Database, model: str, *, actor: str,
                 if_match: str | None = None, reason: str = "") -> StoredRoute:
    """Remove the model's route (it goes back to the default route); NotFound if none."""
    with transaction(db):
        current = get_route(db, model)
        if current is None:
            raise NotFound(f"{model} has no stored route (it uses the default route)")
        _check_match(model, current, if_match)
        db.execute("DELETE FROM routes WHERE model = ?", [model])
        db.execute("DELETE FROM route_state WHERE model = ?", [model])
        record_event(db, actor=actor, action="route.delete", model=model, version=None,
                     detail={"etag": current.etag, "reason": reason})
        bump_generation(db)
    return current


def state_of(db: sqlite_utils.Database, model: str, revision: int) -> dict[str, Any] | None:
    """The state a route's ``revision`` reached, or None (a fresh route)."""
    row = db.execute("SELECT revision, state FROM route_state WHERE model = ?",
                     [model]).fetchone()
    if row is None or row[0] != revision:
        return None
    return json.loads(row[1])  # type: ignore[no-any-return]


def save_state(db: sqlite_utils.Database, model: str, revision: int, state: dict[str, Any],
               *, actor: str, event: dict[str, Any] | None = None,
               replace: RouteSpec | None = None) -> StoredRoute | None:
    """Store a route's own progress (one transaction). ``event``: also record a
    ``route.state`` event with this detail (a canary step, a rollback's evidence).
    ``replace``: the route itself changes too (a rolled-back canary becomes a shadow);
    the new route is returned. A revision that is no longer current is not written."""
    text = json.dumps(state, sort_keys=True)
    with transaction(db):
        current = get_route(db, model)
        if current is None or current.revision != revision:
            return None
        at = now()
        db.execute("INSERT INTO route_state (model, revision, state, updated_at) VALUES "
                   "(?, ?, ?, ?) ON CONFLICT (model) DO UPDATE SET revision = "
                   "excluded.revision, state = excluded.state, updated_at = excluded.updated_at",
                   [model, revision, text, at])
        if event is not None:
            record_event(db, at=at, actor=actor, action="route.state", model=model,
                         version=None, detail={"revision": revision, **event})
        stored = None
        if replace is not None:
            spec_text = json.dumps(encode_spec(replace), sort_keys=True)
            stored = StoredRoute(model, replace, revision + 1,
                                 _etag(revision + 1, spec_text), at, actor)
            db.execute("UPDATE routes SET spec = ?, revision = ?, etag = ?, updated_at = ?, "
                       "updated_by = ? WHERE model = ?",
                       [spec_text, stored.revision, stored.etag, at, actor, model])
            record_event(db, at=at, actor=actor, action="route.set", model=model,
                         version=None, detail={"route": json.loads(spec_text),
                                               "revision": stored.revision,
                                               "etag": stored.etag, "previous": current.etag,
                                               "reason": event.get("reason", "") if event
                                               else ""})
        bump_generation(db)
    return stored
