"""Retention: how many deprecated versions to keep, and when archived ones are deleted.

A policy applies to one model (``scope='model'``, ``target='bc'``) or to every model with
a version whose manifest tags match (``scope='tag'``, ``target='sensitivity=pii'``).
When several match, the model's own policy wins field by field; between tag policies the
most conservative value wins (more deprecated versions kept, archived ones kept longer).

:func:`apply_retention` is a plain function for a scheduler: older deprecated versions
beyond the last N are archived (a recorded stage transition), and archived versions older
than D days are deleted through :func:`~appliance.lifecycle.deletion.delete_version`, so
legal holds block them; a blocked deletion is reported, never raised.

SQL here: owns the ``retention_policies`` table, and archives versions (a
``versions.stage`` transition guarded by the stage it expects, as in
:mod:`.promotion`); history and events go through :mod:`appliance.registry.events`.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..errors import BadRequest, Conflict, NotFound
from ..registry import Registry, VersionRecord
from ..registry.db import bump_generation, parse_time, transaction
from ..registry.db import now as now_iso
from ..registry.events import record_event, record_stage_change
from ..registry.models import check_name
from ..registry.opener import open_registry
from .deletion import delete_version
from .stages import check_transition

log = logging.getLogger(__name__)

SCOPES = ("model", "tag")


@dataclass
class Policy:
    scope: str
    target: str
    keep_deprecated: int | None
    delete_archived_after_days: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_count(option: str, value: int | None) -> int | None:
    if value is not None and value < 0:
        raise BadRequest(f"{option} must be 0 or more, not {value}")
    return value


def set_policy(registry: Registry, scope: str, target: str, keep_deprecated: int | None = None,
               delete_archived_after_days: int | None = None) -> Policy:
    """Create or update the policy for (scope, target); a value left None keeps the old one."""
    if scope not in SCOPES:
        raise BadRequest(f"retention scope {scope!r} is not known; use 'model' or 'tag'")
    if scope == "model":
        check_name("model name", target)
    elif not target.partition("=")[0] or "=" not in target:
        raise BadRequest(f"tag {target!r}: write key=value, e.g. sensitivity=pii")
    _check_count("keep_deprecated", keep_deprecated)
    _check_count("delete_archived_after_days", delete_archived_after_days)
    if keep_deprecated is None and delete_archived_after_days is None:
        raise BadRequest("give --keep-deprecated N and/or --delete-archived-after-days D")
    with transaction(registry.db) as db:
        db.execute(
            "INSERT INTO retention_policies (scope, target, keep_deprecated, "
            "delete_archived_after_days, created_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(scope, target) DO UPDATE SET "
            "keep_deprecated = coalesce(excluded.keep_deprecated, keep_deprecated), "
            "delete_archived_after_days = coalesce(excluded.delete_archived_after_days, "
            "delete_archived_after_days)",
            [scope, target, keep_deprecated, delete_archived_after_days, now_iso()])
    return next(p for p in list_policies(registry) if (p.scope, p.target) == (scope, target))


def list_policies(registry: Registry) -> list[Policy]:
    rows = registry.db.execute("SELECT scope, target, keep_deprecated, "
                               "delete_archived_after_days FROM retention_policies "
                               "ORDER BY scope, target").fetchall()
    return [Policy(*r) for r in rows]


def _tags_match(versions: list[VersionRecord], target: str) -> bool:
    key, _, value = target.partition("=")
    tagged = [v.manifest.get("tags") or {} for v in versions]
    return any(key in tags and str(tags[key]) == value for tags in tagged)


def effective_policy(policies: list[Policy], model: str,
                     versions: list[VersionRecord]) -> tuple[int | None, int | None]:
    """(keep_deprecated, delete_archived_after_days) for one model; None: no limit."""
    own = [p for p in policies if p.scope == "model" and p.target == model]
    tagged = [p for p in policies if p.scope == "tag" and _tags_match(versions, p.target)]
    result: list[int | None] = []
    for field in ("keep_deprecated", "delete_archived_after_days"):
        mine = [getattr(p, field) for p in own if getattr(p, field) is not None]
        theirs = [getattr(p, field) for p in tagged if getattr(p, field) is not None]
        result.append(mine[0] if mine else max(theirs) if theirs else None)
    return result[0], result[1]


def _archive(registry: Registry, record: VersionRecord, actor: str, reason: str) -> bool:
    """deprecated → archived, recorded; False when the stage changed under us."""
    check_transition(record.model, record.version, "deprecated", "archived")
    at = now_iso()
    with transaction(registry.db) as db:
        cur = db.execute("UPDATE versions SET stage = 'archived', stage_changed_at = ? "
                         "WHERE model = ? AND version = ? AND stage = 'deprecated'",
                         [at, record.model, record.version])
        if cur.rowcount != 1:
            return False
        record_stage_change(db, model=record.model, version=record.version,
                            from_stage="deprecated", to_stage="archived", at=at, actor=actor,
                            reason=reason)
        record_event(db, at=at, actor=actor, action="archive", model=record.model,
                     version=record.version,
                     detail={"from": "deprecated", "to": "archived", "reason": reason})
        bump_generation(db)
    return True


def apply_retention(registry: Registry, *, now: datetime | None = None,
                    actor: str = "retention") -> list[dict[str, Any]]:
    """Apply every policy once; return the actions taken (``archive``, ``delete``,
    ``blocked``), each with model, version and reason."""
    when = now or datetime.now(UTC)
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    policies = list_policies(registry)
    actions: list[dict[str, Any]] = []
    for model in registry.models():
        keep, days = effective_policy(policies, model.name, model.versions)
        if keep is not None:
            deprecated = [v for v in model.versions if v.stage == "deprecated"]
            for record in deprecated[:max(len(deprecated) - keep, 0)]:
                reason = f"retention: keep the last {keep} deprecated version(s)"
                if _archive(registry, record, actor, reason):
                    record.stage, record.stage_changed_at = "archived", now_iso()
                    actions.append({"action": "archive", "model": model.name,
                                    "version": record.version, "reason": reason})
        if days is None:
            continue
        cutoff = when - timedelta(days=days)
        for record in model.versions:
            changed = record.stage_changed_at or record.created_at
            if record.stage != "archived" or parse_time(changed) >= cutoff:
                continue
            reason = f"retention: archived since {changed}, more than {days} day(s)"
            try:
                delete_version(registry, model.name, record.version, actor=actor,
                               reason=reason)
            except (Conflict, NotFound) as exc:  # held, or gone meanwhile
                actions.append({"action": "blocked", "model": model.name,
                                "version": record.version, "reason": exc.message})
                continue
            actions.append({"action": "delete", "model": model.name,
                            "version": record.version, "reason": reason})
    return actions


def apply_retention_job(data_dir: str) -> list[dict[str, Any]]:
    """The scheduled job: open the registry of ``data_dir`` and apply every policy."""
    with open_registry(Path(data_dir)) as registry:
        actions = apply_retention(registry)
    for action in actions:
        log.info("retention: %s", action)
    return actions
