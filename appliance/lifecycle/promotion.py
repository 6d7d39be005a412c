"""Promote a version through its stages, and roll a model back to an earlier production.

Order of :func:`promote`: look the version up (404), check the transition (409 listing
the legal ones), run the gates when the target is ``production`` (approvals, freeze
window, signature compatibility), then — for a serving stage — let ``loader`` load and
warm the version up. Only then is the change written, in one transaction: the stage,
the demotion of the previous production version to ``deprecated``, stage history and
events, and the generation bump the server watches. A loader failure marks the version
``failed`` (with why) and leaves the current production version serving.

SQL here: the stage columns of ``versions`` (``stage``, ``stage_changed_at``,
``failure_reason``): a stage transition is this package's job, written with its gate
checks in one transaction; history and events go through :mod:`appliance.registry.events`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..errors import ApplianceError, Conflict
from ..registry import Registry, VersionRecord
from ..registry.db import bump_generation, transaction
from ..registry.events import record_event, record_stage_change, stage_changes
from ..security.signing import check_signing
from ..security.trust import publishers
from ..settings import Settings
from .gates import check_approvals, check_freeze, check_signature, consumers, needs_approval
from .stages import SERVING, check_transition

Loader = Callable[[VersionRecord], None]


class PromotionFailed(ApplianceError):
    """The version did not load or warm up; it is now ``failed`` and nothing else changed."""

    status = 409


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def stage_history(registry: Registry, model: str,
                  version: str | None = None) -> list[dict[str, Any]]:
    """Stage changes of a model (or one version), oldest first."""
    return [{"version": r["version"], "from": r["from_stage"], "to": r["to_stage"],
             "at": r["at"], "actor": r["actor"], "reason": r["reason"]}
            for r in stage_changes(registry.db, model, version)]


def current_production(registry: Registry, model: str) -> VersionRecord | None:
    """The model's production version, if it has one."""
    found = [v for v in registry.versions(model) if v.stage == "production"]
    return max(found, key=lambda v: v.stage_changed_at or "") if found else None


def _write_stage(registry: Registry, record: VersionRecord, to: str, at: str, actor: str,
                 reason: str, action: str, detail: dict[str, Any],
                 failure: str | None = None) -> None:
    """Inside a transaction: one version's stage, its history row and its event."""
    registry.db.execute("UPDATE versions SET stage = ?, stage_changed_at = ?, "
                        "failure_reason = ? WHERE model = ? AND version = ?",
                        [to, at, failure, record.model, record.version])
    record_stage_change(registry.db, model=record.model, version=record.version,
                        from_stage=record.stage, to_stage=to, at=at, actor=actor, reason=reason)
    record_event(registry.db, at=at, actor=actor, action=action, model=record.model,
                 version=record.version,
                 detail={"from": record.stage, "to": to, "reason": reason, **detail})


def _mark_failed(registry: Registry, record: VersionRecord, actor: str, why: str) -> None:
    """Record a load or warm-up failure (a fact, so no transition check)."""
    at = _iso(datetime.now(UTC))
    with transaction(registry.db):
        _write_stage(registry, record, "failed", at, actor, f"load or warm-up failed: {why}",
                     "failed", {}, failure=why)
        bump_generation(registry.db)


def promote(registry: Registry, settings: Settings, model: str, version: str, to: str, *,
            actor: str, reason: str = "", breaking: bool = False,
            emergency_reason: str | None = None, now: datetime | None = None,
            loader: Loader | None = None) -> dict[str, Any]:
    """Move ``model`` ``version`` to stage ``to``; return what changed (``from``, ``to``,
    ``demoted``: the previous production version, or None).

    ``now`` is when the gates are judged and the change recorded (default: the current
    time). ``loader`` loads and warms the version up before anything is written.
    """
    return _promote(registry, settings, model, version, to, actor=actor, reason=reason,
                    breaking=breaking, emergency_reason=emergency_reason, now=now,
                    loader=loader, _rollback=False)


def _promote(registry: Registry, settings: Settings, model: str, version: str, to: str, *,
             actor: str, reason: str, breaking: bool, emergency_reason: str | None,
             now: datetime | None, loader: Loader | None, _rollback: bool) -> dict[str, Any]:
    at_dt = now or datetime.now(UTC)
    record = registry.version(model, version)
    check_transition(model, version, record.stage, to)
    if not _rollback:
        check_signing(record, to, settings.signing_policy,
                      trusted_key_ids=set(publishers(registry.keys.dir).by_id()))
    current = current_production(registry, model) if to == "production" else None
    detail: dict[str, Any] = {}
    if to == "production" and not _rollback:
        if needs_approval(record):
            check_approvals(registry, settings, record)
        window = check_freeze(settings, at_dt, emergency_reason)
        if window is not None:
            detail["freeze_window"] = {"start": window.start, "end": window.end,
                                       "reason": window.reason}
            detail["emergency_reason"] = emergency_reason
            reason = (f"{reason}; " if reason else "") + (
                f"emergency override of freeze {window.start}..{window.end}: {emergency_reason}")
        if current is not None:
            diff = check_signature(registry, settings, record, current, breaking=breaking)
            detail["signature"] = diff.to_dict()
    if to in SERVING and loader is not None:
        try:
            loader(record)
        except Exception as exc:
            why = exc.message if isinstance(exc, ApplianceError) else (
                f"{type(exc).__name__}: {exc}")
            _mark_failed(registry, record, actor, why)
            keeps = (f"; version {current.version} keeps serving as production"
                     if current is not None else "; the previous version keeps serving")
            raise PromotionFailed(f"{model} version {version}: load or warm-up failed: "
                                  f"{why}; it is now marked failed{keeps}") from exc
    at = _iso(at_dt)
    with transaction(registry.db):
        fresh = registry.version(model, version)
        latest = current_production(registry, model) if to == "production" else None
        if fresh.stage != record.stage or (
                (latest and latest.version) != (current and current.version)):
            raise Conflict(f"{model} changed while {version} was being promoted (now "
                           f"{fresh.stage}); check with appliance models show {model} and retry")
        _write_stage(registry, record, to, at, actor, reason,
                     "rollback" if _rollback else "promote", detail)
        if current is not None:
            _write_stage(registry, current, "deprecated", at, actor,
                         f"superseded by version {version}" + (f": {reason}" if reason else ""),
                         "demote", {"successor": version})
        bump_generation(registry.db)
    return {"model": model, "version": version, "from": record.stage, "to": to,
            "demoted": current.version if current is not None else None, "at": at,
            "actor": actor, "reason": reason, **detail}


def _previous_production(registry: Registry, model: str, current: str | None) -> str | None:
    for row in reversed(stage_history(registry, model)):
        if row["to"] == "production" and row["version"] != current:
            return str(row["version"])
    return None


def rollback(registry: Registry, settings: Settings, model: str, *,
             to_version: str | None = None, actor: str, reason: str,
             force_reason: str | None = None, loader: Loader | None = None,
             now: datetime | None = None) -> dict[str, Any]:
    """Put an earlier production version back into production.

    The target is ``to_version`` or the production version before the current one. It
    must have been in production before; approvals, freeze windows and the signature
    gate are not re-run (it was vetted then), but it is refused when it lacks an output
    a registered consumer reads, unless ``force_reason`` is given.
    """
    registry.model(model)
    current = current_production(registry, model)
    target = to_version or _previous_production(registry, model,
                                                current.version if current else None)
    if target is None:
        raise Conflict(f"{model} has no earlier production version to roll back to; name one "
                       "with --to VERSION")
    record = registry.version(model, target)
    if current is not None and current.version == target:
        raise Conflict(f"{model} version {target} is already in production")
    if not any(r["to"] == "production" for r in stage_history(registry, model, target)):
        raise Conflict(f"{model} version {target} was never in production, so this is not a "
                       f"rollback; promote it instead: appliance models promote {model} "
                       f"{target} --to production")
    outputs = {s.name for s in record.outputs}
    missing = [(c["name"], sorted(set(c["reads"]) - outputs)) for c in consumers(registry, model)]
    missing = [(name, outs) for name, outs in missing if outs]
    if missing and not (force_reason or "").strip():
        listing = "; ".join(f"{name} reads {', '.join(outs)}" for name, outs in missing)
        raise Conflict(f"{model} version {target} lacks outputs that consumers read ({listing}); "
                       "to roll back anyway pass --force REASON (force_reason)")
    why = reason + (f"; forced: {force_reason}" if missing else "")
    summary = _promote(registry, settings, model, target, "production", actor=actor,
                       reason=why, breaking=False, emergency_reason=None, now=now,
                       loader=loader, _rollback=True)
    summary["rolled_back_from"] = current.version if current is not None else None
    if missing:
        summary["forced"] = {"reason": force_reason,
                             "missing": {name: outs for name, outs in missing}}
    return summary
