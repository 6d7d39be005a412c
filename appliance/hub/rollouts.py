"""Staged rollouts: the operator's commands (``appliance hub rollout …``,
``/v1/hub/rollouts``). The controller that moves a running rollout is
:mod:`.rollout_controller`; what boxes report, :mod:`.rollout_progress`; the request
format and its checks, :mod:`.rollout_spec`.

Statuses::

    awaiting_approval --approve--> running <--pause/resume--> paused
    running --(abort criteria)--> halted --resume--> running
    running --(last wave succeeded)--> completed
    any but completed/rolled_back --stop--> stopped        (emergency stop)
    any but rolled_back --rollback--> rolled_back

``stop`` keeps boxes that succeeded on the new version and tells every other box its
previous one; ``rollback`` tells every box of the rollout its previous version (and,
after completion, makes the previous version the groups' assignment again). ``resume``
of a halted rollout counts failures afresh from that moment (the evidence of the halt
stays in the audit chain). Every command is an audit record with the actor; the
controller's own decisions are recorded as ``rollout-controller`` with their evidence.
"""

from __future__ import annotations

import secrets
from typing import Any

from ..audit.records import now_iso
from ..errors import Conflict, Forbidden, NotFound
from . import store as db
from . import store_rollouts as rdb
from .audit_chain import append
from .rollout import publish_desired_in
from .rollout_controller import start, summary, targets
from .rollout_spec import RolloutSpec, check_spec, wave_targets
from .services import Hub

TERMINAL = ("stopped", "completed", "rolled_back")


def _require(conn: Any, rollout_id: str) -> dict[str, Any]:
    rollout = rdb.get_rollout(conn, rollout_id)
    if rollout is None:
        raise NotFound(f"no rollout {rollout_id[:128]!r} on this hub: `appliance hub rollout "
                       "list` shows them")
    return rollout


def create(hub: Hub, spec: RolloutSpec, *, actor: str) -> dict[str, Any]:
    """Create (and, without ``approval``, start) a rollout. 400 for values out of range,
    404 for an unknown group or a version the hub does not hold, 409 when a rollout of the
    model to one of the groups is not finished."""
    check_spec(spec)
    at = now_iso()
    rollout_id = f"r-{secrets.token_hex(6)}"
    with hub.store.write() as conn:
        for group in spec.groups:
            if db.get_group(conn, group) is None:
                raise NotFound(f"no group {group!r} on this hub")
        if db.get_package(conn, spec.model, spec.version) is None:
            held = [p["version"] for p in db.list_packages(conn, spec.model)]
            raise NotFound(f"the hub holds no package of {spec.model} version "
                           f"{spec.version} (held: {', '.join(held) or 'none'}); publish "
                           "it first with `appliance hub publish PKG`")
        for other in rdb.list_rollouts(conn, model=spec.model, statuses=rdb.ACTIVE):
            shared = sorted(set(other["groups"]) & set(spec.groups))
            if shared:
                raise Conflict(f"rollout {other['id']} of {spec.model} to "
                               f"{', '.join(shared)} is {other['status']}: stop, roll back "
                               "or finish it first")
        previous = {}
        for group in spec.groups:
            now = {a["model"]: a for a in db.current_assignments(conn, group)}.get(spec.model)
            previous[group] = ({"version": now["version"], "stage": now["stage"]}
                               if now else None)
        status = "awaiting_approval" if spec.approval else "running"
        rdb.add_rollout(conn, id=rollout_id, model=spec.model, version=spec.version,
                        stage=spec.stage, groups=spec.groups, percent=spec.percent,
                        plan=spec.plan(), success=spec.success(),
                        abort=_abort(spec), timeout_s=spec.timeout_s, status=status,
                        wave=0, wave_started_at=at if status == "running" else None,
                        previous=previous, reason={}, requires_approval=int(spec.approval),
                        created_by=actor, created_at=at, updated_at=at,
                        ignored_reports=0, revision=0)
        rollout = _require(conn, rollout_id)
        append(conn, actor=actor, action="rollout.create", at=at,
               detail={"rollout": rollout_id, "model": spec.model, "version": spec.version,
                       "stage": spec.stage, "groups": spec.groups, "percent": spec.percent,
                       "plan": rollout["plan"], "success": rollout["success"],
                       "abort": rollout["abort"], "timeout_s": spec.timeout_s,
                       "previous": previous, "status": status})
        if status == "running":
            start(hub, conn, rollout, at)
        return _view(conn, _require(conn, rollout_id))


def _abort(spec: RolloutSpec) -> dict[str, Any]:
    a = spec.abort
    return {"min_executed": a.min_executed, "threshold_pct": a.threshold_pct,
            "failure_types": sorted(set(a.failure_types)), "max_error_rate": a.max_error_rate,
            "min_requests": a.min_requests}


def _transition(hub: Hub, rollout_id: str, action: str, allowed: tuple[str, ...],
                status: str, *, actor: str, extra: dict[str, Any] | None = None
                ) -> dict[str, Any]:
    at = now_iso()
    with hub.store.write() as conn:
        rollout = _require(conn, rollout_id)
        if rollout["status"] not in allowed:
            raise Conflict(f"rollout {rollout_id} is {rollout['status']}: {action} needs "
                           f"one of {', '.join(allowed)}")
        values: dict[str, Any] = {"status": status, "updated_at": at, **(extra or {})}
        told: list[str] = []
        if action == "approve":
            if actor == rollout["created_by"]:
                raise Forbidden(f"{actor} created rollout {rollout_id}: another principal "
                                "must approve it")
            values.update(approved_by=actor, approved_at=at, wave_started_at=at)
        if action == "resume":
            seen = summary(rdb.state_counts(conn, rollout_id))
            types = set(rollout["abort"]["failure_types"])
            values["reason"] = {**(rollout["reason"] or {}), "resumed_at": at,
                                "baseline": {"executed": seen["succeeded"] + seen["failed"],
                             "failed": seen["failed"],
                                             "failures": sum(
                                                 n for t, n in seen["failed_by_type"].items()
                                                 if t in types)}}
        if not rdb.update_rollout(conn, rollout_id, rollout["revision"], **values):
            raise Conflict(f"rollout {rollout_id} changed meanwhile: try again")
        if action == "resume":  # the boxes the halt turned back, if it did
            told = rdb.set_desired_where(conn, rollout_id, rdb.DESIRED_NEW,
                                         states=("pending",), at=at)
        elif action == "stop":
            told = rdb.set_desired_where(conn, rollout_id, rdb.DESIRED_PREVIOUS,
                                         states=("pending", "failed"), at=at)
        elif action == "rollback":
            told = rdb.set_desired_where(conn, rollout_id, rdb.DESIRED_PREVIOUS, at=at)
            if rollout["status"] == "completed":
                _restore_assignments(conn, rollout, at)
                told = sorted(set(told) | set(rdb.group_devices(conn, rollout["groups"])))
        append(conn, actor=actor, action=f"rollout.{action}", at=at,
               detail={"rollout": rollout_id, "from": rollout["status"], "to": status,
                       "told_previous" if action != "resume" else "told_new": len(told),
                       "evidence": summary(rdb.state_counts(conn, rollout_id))})
        if action == "approve":
            start(hub, conn, {**rollout, **values}, at)
        elif told:
            publish_desired_in(hub, conn, told)
        return _view(conn, _require(conn, rollout_id))


def _restore_assignments(conn: Any, rollout: dict[str, Any], at: str) -> None:
    for group, before in (rollout["previous"] or {}).items():
        if before:
            db.add_assignment(conn, group=group, model=rollout["model"],
                              version=before["version"], stage=before["stage"],
                              by=f"rollback:{rollout['id']}", at=at)


def approve(hub: Hub, rollout_id: str, *, actor: str) -> dict[str, Any]:
    return _transition(hub, rollout_id, "approve", ("awaiting_approval",), "running",
                       actor=actor)


def pause(hub: Hub, rollout_id: str, *, actor: str) -> dict[str, Any]:
    return _transition(hub, rollout_id, "pause", ("running",), "paused", actor=actor)


def resume(hub: Hub, rollout_id: str, *, actor: str) -> dict[str, Any]:
    return _transition(hub, rollout_id, "resume", ("paused", "halted"), "running",
                       actor=actor)


def stop(hub: Hub, rollout_id: str, *, actor: str) -> dict[str, Any]:
    return _transition(hub, rollout_id, "stop", rdb.ACTIVE, "stopped", actor=actor)


def rollback(hub: Hub, rollout_id: str, *, actor: str) -> dict[str, Any]:
    return _transition(hub, rollout_id, "rollback", (*rdb.ACTIVE, "stopped", "completed"),
                       "rolled_back", actor=actor)


def _view(conn: Any, rollout: dict[str, Any]) -> dict[str, Any]:
    seen = summary(rdb.state_counts(conn, rollout["id"]))
    target = targets(conn, rollout)
    counts = wave_targets(rollout["plan"], len(target))
    per_wave: dict[int, dict[str, int]] = {}
    for member in rdb.members(conn, rollout["id"]):
        row = per_wave.setdefault(int(member["wave"]),
                                  {"pending": 0, "succeeded": 0, "failed": 0})
        row[member["state"]] = row.get(member["state"], 0) + 1
    waves = [{"wave": i, "boxes": n, "started": i <= int(rollout["wave"])
              and rollout["status"] != "awaiting_approval", **per_wave.get(i, {})}
             for i, n in enumerate(counts)]
    keys = ("id", "model", "version", "stage", "groups", "percent", "plan", "success",
            "abort", "timeout_s", "status", "wave", "wave_started_at", "previous",
            "reason", "approved_by", "approved_at", "created_by", "created_at",
            "updated_at", "ignored_reports")
    return {**{k: rollout[k] for k in keys}, "target": len(target), "counts": seen,
            "waves": waves}


def status(hub: Hub, rollout_id: str) -> dict[str, Any]:
    """Waves, counts, failures by type, and why it halted."""
    with hub.store.read() as conn:
        return _view(conn, _require(conn, rollout_id))


def list_rollouts(hub: Hub, model: str | None = None) -> list[dict[str, Any]]:
    with hub.store.read() as conn:
        return [{k: r[k] for k in ("id", "model", "version", "groups", "percent", "status",
                                   "wave", "created_by", "created_at", "updated_at")}
                for r in rdb.list_rollouts(conn, model=model)]
