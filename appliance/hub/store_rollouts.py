"""The hub's data access for staged rollouts (the rest is :mod:`.store`): every query
the rollout commands, the controller and report handling make, through SQLAlchemy Core.

Rows are plain dicts with the JSON columns decoded. :func:`lock_rollout` is how a
controller tick claims a rollout: ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
two hub processes never decide for one rollout at once (the second skips it this tick);
on SQLite the write transaction (``BEGIN IMMEDIATE``) already serialises them. Every
decision also moves ``revision`` by compare-and-set (:func:`update_rollout`), so a
decision made on a stale read changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
from sqlalchemy import Connection, func, insert, select, update

from .schema import devices, rollout_devices, rollouts
from .store import dump_json

_JSON = ("groups", "plan", "success", "abort", "previous", "reason")
#: statuses in which a rollout still holds its model in its groups
ACTIVE = ("awaiting_approval", "running", "paused", "halted")
#: rollout_devices.desired: the box is told the new version / its previous one / neither
DESIRED_NEW, DESIRED_PREVIOUS, DESIRED_NONE = 1, 0, -1


def _rollout(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    for name in _JSON:
        if isinstance(out.get(name), str):
            out[name] = msgspec.json.decode(out[name])
    return out


def add_rollout(conn: Connection, **values: Any) -> None:
    for name in _JSON:
        if name in values:
            values[name] = dump_json(values[name])
    conn.execute(insert(rollouts).values(**values))


def get_rollout(conn: Connection, rollout_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(rollouts).where(rollouts.c.id == rollout_id)).first()
    return _rollout(row) if row is not None else None


def lock_rollout(conn: Connection, rollout_id: str) -> dict[str, Any] | None:
    """The rollout, locked for this transaction; None when another process holds it (or
    it does not exist)."""
    query = select(rollouts).where(rollouts.c.id == rollout_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    row = conn.execute(query).first()
    return _rollout(row) if row is not None else None


def list_rollouts(conn: Connection, *, model: str | None = None,
                  statuses: Iterable[str] | None = None) -> list[dict[str, Any]]:
    query = select(rollouts).order_by(rollouts.c.created_at)
    if model is not None:
        query = query.where(rollouts.c.model == model)
    if statuses is not None:
        query = query.where(rollouts.c.status.in_(list(statuses)))
    return [_rollout(r) for r in conn.execute(query)]


def update_rollout(conn: Connection, rollout_id: str, revision: int, **values: Any) -> bool:
    """Set columns of the rollout at ``revision`` and move it on by one; False (nothing
    changed) when another decision moved it first."""
    for name in _JSON:
        if name in values:
            values[name] = dump_json(values[name])
    result = conn.execute(update(rollouts).where(
        rollouts.c.id == rollout_id, rollouts.c.revision == revision)
        .values(revision=revision + 1, **values))
    return result.rowcount == 1


def count_ignored(conn: Connection, rollout_id: str) -> None:
    conn.execute(update(rollouts).where(rollouts.c.id == rollout_id)
                 .values(ignored_reports=rollouts.c.ignored_reports + 1))


# -- the boxes a rollout took in ---------------------------------------------------------

def group_devices(conn: Connection, groups: Iterable[str]) -> list[str]:
    return list(conn.execute(select(devices.c.id).where(
        devices.c.group_name.in_(list(groups))).order_by(devices.c.id)).scalars())


def add_members(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(rollout_devices), rows)


def members(conn: Connection, rollout_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(select(rollout_devices).where(
        rollout_devices.c.rollout_id == rollout_id).order_by(rollout_devices.c.bucket))
    return [dict(r._mapping) for r in rows]


def get_member(conn: Connection, rollout_id: str, device_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(rollout_devices).where(
        rollout_devices.c.rollout_id == rollout_id,
        rollout_devices.c.device_id == device_id)).first()
    return dict(row._mapping) if row is not None else None


def update_member(conn: Connection, rollout_id: str, device_id: str, **values: Any) -> None:
    conn.execute(update(rollout_devices).where(
        rollout_devices.c.rollout_id == rollout_id,
        rollout_devices.c.device_id == device_id).values(**values))


def set_desired_where(conn: Connection, rollout_id: str, desired: int, *,
                      states: Iterable[str] | None = None, at: str) -> list[str]:
    """Tell the members (in ``states``) ``desired``; the device ids whose value changed."""
    query = select(rollout_devices.c.device_id).where(
        rollout_devices.c.rollout_id == rollout_id, rollout_devices.c.desired != desired)
    if states is not None:
        query = query.where(rollout_devices.c.state.in_(list(states)))
    changed = list(conn.execute(query).scalars())
    if changed:
        conn.execute(update(rollout_devices).where(
            rollout_devices.c.rollout_id == rollout_id,
            rollout_devices.c.device_id.in_(changed)).values(desired=desired, updated_at=at))
    return changed


def state_counts(conn: Connection, rollout_id: str) -> dict[tuple[str, str | None], int]:
    """``(state, failure_type) → count`` over the members."""
    rows = conn.execute(select(rollout_devices.c.state, rollout_devices.c.failure_type,
                               func.count()).where(rollout_devices.c.rollout_id == rollout_id)
                        .group_by(rollout_devices.c.state, rollout_devices.c.failure_type))
    return {(str(s), t): int(n) for s, t, n in rows}


def overrides_for(conn: Connection, device_id: str) -> list[dict[str, Any]]:
    """For each model, the newest rollout row that tells ``device_id`` something, with
    its rollout's model, version, stage and previous assignments."""
    rows = conn.execute(
        select(rollout_devices.c.rollout_id, rollout_devices.c.desired, rollouts.c.model,
               rollouts.c.version, rollouts.c.stage, rollouts.c.previous,
               rollouts.c.created_at)
        .join(rollouts, rollouts.c.id == rollout_devices.c.rollout_id)
        .where(rollout_devices.c.device_id == device_id,
               rollout_devices.c.desired != DESIRED_NONE)
        .order_by(rollouts.c.created_at))
    newest: dict[str, dict[str, Any]] = {}
    for row in rows:
        out = _rollout(row)
        newest[out["model"]] = out
    return list(newest.values())


def clear_overrides(conn: Connection, model: str, device_ids: Iterable[str], *,
                    at: str) -> None:
    """A new assignment of ``model`` supersedes what finished rollouts told these boxes."""
    ids = list(device_ids)
    finished = select(rollouts.c.id).where(rollouts.c.model == model,
                                           rollouts.c.status.not_in(ACTIVE))
    for start in range(0, len(ids), 500):
        conn.execute(update(rollout_devices).where(
            rollout_devices.c.rollout_id.in_(finished),
            rollout_devices.c.device_id.in_(ids[start:start + 500]))
            .values(desired=DESIRED_NONE, updated_at=at))
