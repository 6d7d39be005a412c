"""Promotion gates: signature compatibility, approvals and freeze windows.

Each gate either passes or raises an :class:`~appliance.errors.ApplianceError` whose
message says what blocked the promotion and how to get past it:

* **signature** — the candidate must accept every input the current production version
  accepts (same names, no new input, same datatype, every dimension still accepted) and
  keep every output a registered consumer reads (same datatype). Breaking changes need
  ``breaking=True`` *and* ``approvals_required`` approvals.
* **approvals** — a version tagged ``impact=high`` needs ``approvals_required`` distinct
  approvers, none of them its pusher.
* **freeze** — no promotion to production inside a freeze window unless an emergency
  reason is given.

SQL here: owns the ``approvals`` table (an approval is a gate's input) and reads
``consumers``; events go through :mod:`appliance.registry.events`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..errors import BadRequest, ConfigError, Conflict, Forbidden
from ..registry import Registry, VersionRecord
from ..registry.db import now as db_now
from ..registry.db import parse_time, transaction
from ..registry.events import record_event
from ..settings import FreezeWindow, Settings
from ..signature import TensorSpec


class BreakingChange(Conflict):
    """A breaking signature change was refused; ``diff`` is the structured diff."""

    def __init__(self, message: str, diff: SignatureDiff) -> None:
        super().__init__(message)
        self.diff = diff


@dataclass
class SignatureDiff:
    """What changed between two signatures: ``breaking`` lines block, ``notes`` do not."""

    old_version: str
    new_version: str
    breaking: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def is_breaking(self) -> bool:
        return bool(self.breaking)

    def to_dict(self) -> dict[str, Any]:
        return {"old_version": self.old_version, "new_version": self.new_version,
                "breaking": self.breaking, "notes": self.notes}

    def describe(self) -> str:
        return "; ".join(self.breaking) or "no breaking change"


def consumers(registry: Registry, model: str) -> list[dict[str, Any]]:
    """Registered consumers of ``model``: name, reads (output names), contact."""
    rows = registry.db.execute("SELECT name, reads, contact FROM consumers WHERE model = ? "
                               "ORDER BY name", [model]).fetchall()
    return [{"name": n, "reads": json.loads(reads or "[]"), "contact": c} for n, reads, c in rows]


def _shape_accepts(old: tuple[int, ...], new: tuple[int, ...]) -> bool:
    """True when every shape ``old`` accepted is accepted by ``new``."""
    if len(old) != len(new):
        return False
    return all(n < 0 if o < 0 else n < 0 or n == o for o, n in zip(old, new))


def signature_diff(old: VersionRecord, new: VersionRecord,
                   readers: list[dict[str, Any]]) -> SignatureDiff:
    """Compare ``new`` (the candidate) with ``old`` (the current production version)."""
    diff = SignatureDiff(old.version, new.version)
    old_in = {s.name: s for s in old.inputs}
    new_in = {s.name: s for s in new.inputs}
    for name, spec in old_in.items():
        cand = new_in.get(name)
        if cand is None:
            diff.breaking.append(f"input {name!r} removed")
        elif cand.datatype != spec.datatype:
            diff.breaking.append(f"input {name!r} datatype {spec.datatype} -> {cand.datatype}")
        elif not _shape_accepts(spec.shape, cand.shape):
            diff.breaking.append(f"input {name!r} shape {list(spec.shape)} -> "
                                 f"{list(cand.shape)} no longer accepts every old shape")
        elif cand.shape != spec.shape:
            diff.notes.append(f"input {name!r} shape {list(spec.shape)} -> {list(cand.shape)}")
    for name in new_in.keys() - old_in.keys():
        diff.breaking.append(f"new required input {name!r}")
    read_by: dict[str, list[str]] = {}
    for consumer in readers:
        for output in consumer["reads"]:
            read_by.setdefault(output, []).append(consumer["name"])
    new_out = {s.name: s for s in new.outputs}
    for spec in old.outputs:
        readers_of = ", ".join(read_by.get(spec.name, []))
        cand_out: TensorSpec | None = new_out.get(spec.name)
        if cand_out is None:
            (diff.breaking if readers_of else diff.notes).append(
                f"output {spec.name!r} removed"
                + (f" (read by {readers_of})" if readers_of else " (no consumer reads it)"))
        elif cand_out.datatype != spec.datatype:
            (diff.breaking if readers_of else diff.notes).append(
                f"output {spec.name!r} datatype {spec.datatype} -> {cand_out.datatype}"
                + (f" (read by {readers_of})" if readers_of else ""))
        elif cand_out.shape != spec.shape:
            diff.notes.append(f"output {spec.name!r} shape {list(spec.shape)} -> "
                              f"{list(cand_out.shape)}")
    old_names = {s.name for s in old.outputs}
    diff.notes.extend(f"new output {s.name!r}" for s in new.outputs if s.name not in old_names)
    return diff


# -- approvals ---------------------------------------------------------------------------
def needs_approval(record: VersionRecord) -> bool:
    """True when the version's manifest tags it ``impact=high``."""
    tags = record.manifest.get("tags") or {}
    if isinstance(tags, dict):
        return str(tags.get("impact", "")).lower() == "high"
    return "impact=high" in [str(t).lower() for t in tags]


def approvals(registry: Registry, model: str, version: str) -> list[dict[str, Any]]:
    """The approvals of one version, oldest first."""
    rows = registry.db.execute("SELECT approver, at, reason FROM approvals WHERE model = ? "
                               "AND version = ? ORDER BY id", [model, version]).fetchall()
    return [{"approver": a, "at": at, "reason": r} for a, at, r in rows]


def approve(registry: Registry, model: str, version: str, approver: str,
            reason: str) -> dict[str, Any]:
    """Record ``approver``'s approval (idempotent); the pusher may not approve their own."""
    record = registry.version(model, version)
    if not approver.strip():
        raise BadRequest("an approval needs an approver (--by NAME)")
    if approver == record.created_by:
        raise Forbidden(f"{approver} pushed {model} version {version} and cannot approve it; "
                        "ask someone else to approve")
    with transaction(registry.db):
        cur = registry.db.execute(
            "INSERT OR IGNORE INTO approvals (model, version, approver, at, reason) "
            "VALUES (?, ?, ?, ?, ?)", [model, version, approver, db_now(), reason])
        if cur.rowcount:
            record_event(registry.db, actor=approver, action="approve", model=model,
                         version=version, detail={"reason": reason})
    given = approvals(registry, model, version)
    mine = next(a for a in given if a["approver"] == approver)
    return {"model": model, "version": version, **mine, "approvals": given}


def check_approvals(registry: Registry, settings: Settings, record: VersionRecord,
                    why: str = "is tagged impact=high") -> None:
    """Conflict unless the version has ``approvals_required`` distinct approvals."""
    given = approvals(registry, record.model, record.version)
    if len(given) >= settings.approvals_required:
        return
    names = ", ".join(a["approver"] for a in given) or "none"
    raise Conflict(f"{record.model} version {record.version} {why} and needs "
                   f"{settings.approvals_required} approvals before production; it has "
                   f"{len(given)} ({names}). Approve with: appliance models approve "
                   f"{record.model} {record.version} --by NAME --reason WHY")


def check_signature(registry: Registry, settings: Settings, candidate: VersionRecord,
                    current: VersionRecord, *, breaking: bool) -> SignatureDiff:
    """The diff; BreakingChange unless it is compatible or accepted and approved."""
    diff = signature_diff(current, candidate, consumers(registry, candidate.model))
    if not diff.is_breaking:
        return diff
    head = (f"{candidate.model} version {candidate.version} breaks the signature of "
            f"production version {current.version}: {diff.describe()}")
    if not breaking:
        raise BreakingChange(f"{head}; to accept it pass --breaking (breaking=true) and get "
                             f"{settings.approvals_required} approvals", diff)
    given = approvals(registry, candidate.model, candidate.version)
    if len(given) < settings.approvals_required:
        raise BreakingChange(f"{head}; an accepted breaking change needs "
                             f"{settings.approvals_required} approvals, it has {len(given)}",
                             diff)
    return diff


# -- freeze windows ----------------------------------------------------------------------
def _parse(value: str, window: FreezeWindow) -> datetime:
    try:
        return parse_time(value)
    except ValueError:
        raise ConfigError(f"freeze window {window.start}..{window.end}: {value!r} is not an "
                          "ISO 8601 time (e.g. 2025-12-20T00:00:00+00:00)") from None


def active_freeze(settings: Settings, at: datetime) -> FreezeWindow | None:
    """The freeze window containing ``at`` (start inclusive, end exclusive), if any."""
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    for window in settings.freeze_windows:
        if _parse(window.start, window) <= at < _parse(window.end, window):
            return window
    return None


def check_freeze(settings: Settings, at: datetime,
                 emergency_reason: str | None) -> FreezeWindow | None:
    """Conflict inside a freeze window unless ``emergency_reason``; the window overridden."""
    window = active_freeze(settings, at)
    if window is not None and not (emergency_reason or "").strip():
        why = f" ({window.reason})" if window.reason else ""
        raise Conflict(f"promotions to production are frozen from {window.start} to "
                       f"{window.end}{why}; for an emergency pass --emergency REASON "
                       "(emergency_reason)")
    return window
