"""Legal holds: a held version cannot be deleted, by any path, until every hold is released.

A hold names its holder (on whose behalf it is kept, e.g. ``legal-dept``), who placed it
(``placed_by``: the caller's token subject on the API, so nobody places a hold in
another's name) and why; releasing records who released it and when. Rows are
never removed, so the ``holds`` table is the full history; every placement and release is
also written to the append-only ``events`` log.

SQL here: owns the ``holds`` table; events go through :mod:`appliance.registry.events`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import sqlite_utils

from ..errors import BadRequest, NotFound
from ..registry import Registry
from ..registry.db import now, transaction
from ..registry.events import record_event

_COLUMNS = "id, model, version, holder, reason, at, released_at, released_by, placed_by"


@dataclass
class Hold:
    """One legal hold on a model version; active while ``released_at`` is None."""

    id: int
    model: str
    version: str
    holder: str
    reason: str
    at: str
    released_at: str | None = None
    released_by: str | None = None
    #: who placed it (an older registry's rows: the holder)
    placed_by: str | None = None

    @property
    def active(self) -> bool:
        return self.released_at is None

    def describe(self) -> str:
        """``held by legal since 2026-…: "litigation 42"`` — used in refusals."""
        placer = (f" (placed by {self.placed_by})"
                  if self.placed_by and self.placed_by != self.holder else "")
        return f"held by {self.holder}{placer} since {self.at}: {self.reason!r}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "active": self.active}


def _required(kind: str, value: str | None) -> str:
    if not value or not value.strip():
        raise BadRequest(f"{kind} is required (who and why are part of the audit trail)")
    return value.strip()


def holds_in(db: sqlite_utils.Database, model: str, version: str | None = None, *,
             active_only: bool = True) -> list[Hold]:
    """Holds read on ``db`` directly, so a caller can check them inside its transaction."""
    sql, args = f"SELECT {_COLUMNS} FROM holds WHERE model = ?", [model]
    if version is not None:
        sql, args = sql + " AND version = ?", [*args, version]
    if active_only:
        sql += " AND released_at IS NULL"
    return [Hold(*row) for row in db.execute(sql + " ORDER BY id", args).fetchall()]


def active_holds(registry: Registry, model: str | None = None,
                 version: str | None = None) -> list[Hold]:
    """Active holds, of every model or of one model (and version)."""
    if model is not None:
        return holds_in(registry.db, model, version)
    rows = registry.db.execute(f"SELECT {_COLUMNS} FROM holds WHERE released_at IS NULL "
                               "ORDER BY model, version, id").fetchall()
    return [Hold(*row) for row in rows]


def place_hold(registry: Registry, model: str, version: str, holder: str,
               reason: str, *, placed_by: str | None = None) -> Hold:
    """Hold ``model`` ``version`` for ``holder``, placed by ``placed_by`` (default: the
    holder); placing the same holder's hold again returns it unchanged."""
    holder, reason = _required("holder (--by)", holder), _required("reason", reason)
    placed_by = (placed_by or "").strip() or holder
    registry.version(model, version)  # NotFound naming what exists
    at = now()
    with transaction(registry.db) as db:
        for hold in holds_in(db, model, version):
            if hold.holder == holder:
                return hold
        cur = db.execute("INSERT INTO holds (model, version, holder, reason, at, placed_by) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         [model, version, holder, reason, at, placed_by])
        record_event(db, at=at, actor=placed_by, action="hold", model=model, version=version,
                     detail={"hold_id": cur.lastrowid, "reason": reason, "holder": holder})
    return Hold(int(cur.lastrowid or 0), model, version, holder, reason, at,
                placed_by=placed_by)


def release_hold(registry: Registry, model: str, version: str, released_by: str, *,
                 holder: str | None = None) -> list[Hold]:
    """Release the active holds on a version (only ``holder``'s when given); NotFound if none."""
    released_by = _required("who releases (--by)", released_by)
    registry.version(model, version)
    at = now()
    with transaction(registry.db) as db:
        holds = [h for h in holds_in(db, model, version) if holder in (None, h.holder)]
        if not holds:
            whose = f" by {holder}" if holder else ""
            raise NotFound(f"{model} version {version} has no active hold{whose} to release")
        for hold in holds:
            db.execute("UPDATE holds SET released_at = ?, released_by = ? WHERE id = ?",
                       [at, released_by, hold.id])
            record_event(db, at=at, actor=released_by, action="release", model=model,
                         version=version, detail={"hold_id": hold.id, "holder": hold.holder,
                                                  "reason": hold.reason})
            hold.released_at, hold.released_by = at, released_by
    return holds
