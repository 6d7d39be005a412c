"""The rollout controller: each tick, every running rollout is advanced, halted or
completed by the evidence its boxes reported (:mod:`.rollout_progress`).

One tick of one rollout, in one write transaction that first claims the rollout
(:func:`~.store_rollouts.lock_rollout`: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so of
two hub processes one decides and the other skips it; each decision also moves the
rollout's ``revision`` by compare-and-set):

1. boxes taken in more than ``timeout_s`` ago and still pending fail as ``timed_out``;
2. **halt**: once ``abort.min_executed`` boxes are done (since the last resume), failures
   of the listed types reaching ``abort.threshold_pct`` % halt the rollout; the boxes not
   done yet and the failed ones are told their previous version again (a box outside the
   started waves was never told the new one); the evidence goes into ``reason`` and the
   hub's audit chain;
   a wave taken in whole that can no longer reach ``success.pct`` % even if every
   pending box succeeds halts too (``success_unreachable``), rather than wait forever;
3. boxes that enrolled into the target since the last tick are taken into the current
   wave up to its size (:func:`~.rollout_spec.wave_targets`);
4. **advance**: ``success.pct`` % of the boxes taken in succeeded and the wave is
   ``success.soak_s`` old: the next wave takes in its boxes (the lowest buckets first); after
   the last wave, the rollout **completes** and becomes each fully targeted group's
   assignment, so boxes enrolling later get the version too.

Desired states change in the same transaction (published before it commits, so a crash
in between leaves boxes told a version the database does not list yet; the next tick
takes the same boxes in, by bucket, and tells them the same).

A box's bucket is a hash of (rollout id, device id) in [0, 1): the target of a rollout
at ``percent`` is every box of its groups below ``percent/100``, and waves take boxes in
bucket order, so which boxes go first is fixed and differs between rollouts.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from . import store as db
from . import store_rollouts as rdb
from .audit_chain import append
from .rollout import publish_desired_in
from .rollout_spec import wave_targets
from .services import Hub

log = logging.getLogger("appliance.hub")

ACTOR = "rollout-controller"


def bucket(rollout_id: str, device_id: str) -> float:
    digest = hashlib.blake2b(f"{rollout_id}/{device_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0 ** 64


def targets(conn: Any, rollout: dict[str, Any]) -> list[tuple[float, str]]:
    """(bucket, device id) of every box the rollout targets now, lowest bucket first."""
    share = float(rollout["percent"]) / 100.0
    found = [(bucket(rollout["id"], d), d) for d in rdb.group_devices(conn, rollout["groups"])]
    return sorted(x for x in found if x[0] < share)


def take_in(conn: Any, rollout: dict[str, Any], at: str,
            target: list[tuple[float, str]] | None = None) -> list[str]:
    """Add boxes to the rollout's current wave up to its size; the ids added."""
    target = targets(conn, rollout) if target is None else target
    counts = wave_targets(rollout["plan"], len(target))
    wave = max(0, min(int(rollout["wave"]), len(counts) - 1))
    have = {m["device_id"] for m in rdb.members(conn, rollout["id"])}
    need = counts[wave] - len(have)
    new = [(b, d) for b, d in target if d not in have][:max(0, need)]
    rdb.add_members(conn, [{"rollout_id": rollout["id"], "device_id": d, "wave": wave,
                            "bucket": b, "state": "pending", "failure_type": None,
                            "detail": "", "desired": rdb.DESIRED_NEW, "included_at": at,
                            "updated_at": at} for b, d in new])
    return [d for _, d in new]


def summary(counts: dict[tuple[str, str | None], int]) -> dict[str, Any]:
    """Members by state, and failures by type."""
    by_state: dict[str, int] = {}
    failed_by: dict[str, int] = {}
    for (state, failure), n in counts.items():
        by_state[state] = by_state.get(state, 0) + n
        if state == "failed":
            failed_by[failure or "unknown"] = failed_by.get(failure or "unknown", 0) + n
    return {"members": sum(by_state.values()), "pending": by_state.get("pending", 0),
            "succeeded": by_state.get("succeeded", 0), "failed": by_state.get("failed", 0),
            "failed_by_type": dict(sorted(failed_by.items()))}


def abort_breach(rollout: dict[str, Any], seen: dict[str, Any]) -> dict[str, Any] | None:
    """The evidence of a breach of the abort criteria, or None."""
    abort = rollout["abort"]
    base = (rollout["reason"] or {}).get("baseline") or {}
    types = set(abort["failure_types"])
    failures = sum(n for t, n in seen["failed_by_type"].items() if t in types)
    failures -= int(base.get("failures", 0))
    executed = seen["succeeded"] + seen["failed"] - int(base.get("executed", 0))
    if executed < int(abort["min_executed"]) or executed <= 0:
        return None
    pct = 100.0 * failures / executed
    if pct < float(abort["threshold_pct"]):
        return None
    return {"kind": "abort", "executed": executed, "failures": failures,
            "failure_pct": round(pct, 3), "threshold_pct": abort["threshold_pct"],
            "min_executed": abort["min_executed"], "failure_types": sorted(types),
            **seen}


def _sample(conn: Any, rollout_id: str) -> list[dict[str, Any]]:
    failed = [m for m in rdb.members(conn, rollout_id) if m["state"] == "failed"]
    return [{"device": m["device_id"], "type": m["failure_type"], "detail": m["detail"]}
            for m in failed[:10]]


def _accepted_failures(rollout: dict[str, Any]) -> int:
    """Failed boxes an operator accepted by resuming: out of the success share since."""
    return int(((rollout["reason"] or {}).get("baseline") or {}).get("failed", 0))


def success_unreachable(rollout: dict[str, Any], seen: dict[str, Any],
                        counts: list[int]) -> dict[str, Any] | None:
    """The evidence that the current wave, taken in whole, can no longer reach its
    success share even if every pending box succeeds (a small wave whose failures stay
    below ``abort.min_executed`` would otherwise wait forever), or None."""
    wave = max(0, min(int(rollout["wave"]), len(counts) - 1))
    members = seen["members"] - _accepted_failures(rollout)
    if seen["members"] < counts[wave] or members <= 0:
        return None
    best = seen["succeeded"] + seen["pending"]
    pct = float(rollout["success"]["pct"])
    if 100.0 * best >= pct * members:
        return None
    return {"kind": "success_unreachable", "success_pct": pct, "wave": wave,
            "best_pct": round(100.0 * best / members, 3), "executed":
            seen["succeeded"] + seen["failed"], "failures": seen["failed"],
            "failure_pct": round(100.0 * seen["failed"] / max(1, seen["succeeded"]
                                                              + seen["failed"]), 3),
            **seen}


def _halt(hub: Hub, conn: Any, rollout: dict[str, Any], evidence: dict[str, Any],
          at: str) -> str | None:
    """Halt: the evidence in ``reason`` and the audit chain; the boxes not done yet and
    the failed ones are told their previous version again."""
    rid = rollout["id"]
    evidence["sample"] = _sample(conn, rid)
    if not rdb.update_rollout(conn, rid, rollout["revision"], status="halted",
                              reason={**evidence, "at": at}, updated_at=at):
        return None
    told = rdb.set_desired_where(conn, rid, rdb.DESIRED_PREVIOUS,
                                 states=("pending", "failed"), at=at)
    publish_desired_in(hub, conn, told)
    append(conn, actor=ACTOR, action="rollout.halt", at=at,
           detail={"rollout": rid, "model": rollout["model"],
                   "version": rollout["version"], "wave": rollout["wave"],
                   "evidence": evidence, "reverted": len(told)})
    log.warning("rollout %s halted (%s): %s of %s finished boxes failed (%.1f%%)",
                rid, evidence["kind"], evidence["failures"], evidence["executed"],
                evidence["failure_pct"])
    return "halted"


def _decide(hub: Hub, conn: Any, rollout: dict[str, Any], now: datetime) -> str | None:
    at = now.isoformat(timespec="microseconds")
    rid = rollout["id"]
    cutoff = (now - timedelta(seconds=int(rollout["timeout_s"]))).isoformat(
        timespec="microseconds")
    for member in rdb.members(conn, rid):
        if member["state"] == "pending" and member["included_at"] < cutoff:
            rdb.update_member(conn, rid, member["device_id"], state="failed",
                              failure_type="timed_out", updated_at=at,
                              detail=f"not installed and healthy within "
                                     f"{rollout['timeout_s']} s")
    seen = summary(rdb.state_counts(conn, rid))
    breach = abort_breach(rollout, seen)
    if breach is not None:
        return _halt(hub, conn, rollout, breach, at)
    target = targets(conn, rollout)
    counts = wave_targets(rollout["plan"], len(target))
    stuck = success_unreachable(rollout, seen, counts)
    if stuck is not None:
        return _halt(hub, conn, rollout, stuck, at)
    added = take_in(conn, rollout, at, target)
    members = seen["members"] + len(added) - _accepted_failures(rollout)
    succeeded = seen["succeeded"]
    soak = float(rollout["success"].get("soak_s", 0))
    started = datetime.fromisoformat(rollout["wave_started_at"] or at)
    ready = (members > 0 and 100.0 * succeeded >= float(rollout["success"]["pct"]) * members
             and (now - started).total_seconds() >= soak)
    decision: str | None = None
    if ready and rollout["wave"] >= len(counts) - 1 and members >= len(target):
        if not rdb.update_rollout(conn, rid, rollout["revision"], status="completed",
                                  updated_at=at):
            return None
        groups = _complete(conn, rollout, at)
        append(conn, actor=ACTOR, action="rollout.complete", at=at,
               detail={"rollout": rid, "model": rollout["model"],
                       "version": rollout["version"], "assigned_groups": groups,
                       "evidence": seen})
        decision = "completed"
    elif ready and rollout["wave"] < len(counts) - 1:
        wave = int(rollout["wave"]) + 1
        if not rdb.update_rollout(conn, rid, rollout["revision"], wave=wave,
                                  wave_started_at=at, updated_at=at):
            return None
        added += take_in(conn, {**rollout, "wave": wave}, at, target)
        append(conn, actor=ACTOR, action="rollout.advance", at=at,
               detail={"rollout": rid, "wave": wave, "boxes": counts[wave],
                       "evidence": seen})
        decision = f"wave {wave}"
    if added:
        publish_desired_in(hub, conn, added)
    return decision


def _complete(conn: Any, rollout: dict[str, Any], at: str) -> list[str]:
    """Make the version the assignment of each group the rollout targeted whole."""
    if float(rollout["percent"]) < 100:
        return []
    for group in rollout["groups"]:
        db.add_assignment(conn, group=group, model=rollout["model"],
                          version=rollout["version"], stage=rollout["stage"],
                          by=f"rollout:{rollout['id']}", at=at)
    return list(rollout["groups"])


def tick_one(hub: Hub, rollout_id: str, now: datetime | None = None) -> str | None:
    """One controller step for one rollout; what was decided (None: nothing, or another
    process holds it)."""
    now = now or datetime.now(UTC)
    with hub.store.write() as conn:
        rollout = rdb.lock_rollout(conn, rollout_id)
        if rollout is None or rollout["status"] != "running":
            return None
        return _decide(hub, conn, rollout, now)


def tick(hub: Hub, now: datetime | None = None) -> dict[str, str]:
    """One controller step for every running rollout: ``{id: decision}`` of those that
    moved. A rollout whose step fails is logged and tried again next tick."""
    with hub.store.read() as conn:
        running = [r["id"] for r in rdb.list_rollouts(conn, statuses=("running",))]
    decided: dict[str, str] = {}
    for rollout_id in running:
        try:
            decision = tick_one(hub, rollout_id, now)
        except Exception:
            log.exception("rollout %s: the controller step failed; retrying next tick",
                          rollout_id)
            continue
        if decision is not None:
            decided[rollout_id] = decision
    return decided


def start(hub: Hub, conn: Any, rollout: dict[str, Any], at: str) -> list[str]:
    """Take in and tell the first wave's boxes (a rollout that just began running)."""
    added = take_in(conn, {**rollout, "wave": 0}, at)
    publish_desired_in(hub, conn, added)
    return added


__all__ = ["ACTOR", "abort_breach", "bucket", "start", "summary", "take_in", "targets",
           "tick", "tick_one"]
