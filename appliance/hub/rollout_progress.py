"""What a box's report says about the rollouts it is in.

A box whose desired state names a rollout (``"rollout": id`` in the entry) reports each
one in its reports (``appliance.sync.rollout_report``)::

    "rollouts": [{"rollout": "r-…", "model": "scale", "version": "2",
                  "state": "pending" | "succeeded" | "failed",
                  "failure_type": "install_failed" | "warmup_failed" | "drift" | None,
                  "reason": "…"}]

and its production request counts per model and version (``metrics.requests``). For
each entry, in the report's transaction, the box's row in ``rollout_devices`` moves:
pending → succeeded or failed; succeeded → failed when the box later reports a failure
or the version's error share reaches ``abort.max_error_rate`` over at least
``abort.min_requests`` requests (``error_rate``). A failed box stays failed. An entry
for a rollout the box is not in, or one the hub does not know, is ignored and counted
(``rollouts.ignored_reports``, and the ``ignored`` count returned); a finished rollout
changes no more.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from . import store_rollouts as rdb

_LIVE = ("running", "paused", "halted")
_BOX_FAILURES = ("install_failed", "warmup_failed", "drift")
_MAX_ENTRIES = 100
_MAX_DETAIL = 500


def _error_share(metrics: Any, model: str, version: str) -> tuple[float, int] | None:
    requests = metrics.get("requests") if isinstance(metrics, dict) else None
    counts = (requests or {}).get(model, {}).get(version) if isinstance(requests, dict) else None
    if not isinstance(counts, dict):
        return None
    try:
        ok, bad = int(counts.get("success", 0)), int(counts.get("failure", 0))
    except (TypeError, ValueError):
        return None
    total = ok + bad
    return (bad / total, total) if total > 0 else None


def _outcome(entry: dict[str, Any], rollout: dict[str, Any],
             metrics: Any) -> tuple[str, str | None, str]:
    state = entry.get("state")
    if state == "failed":
        kind = entry.get("failure_type")
        kind = kind if kind in _BOX_FAILURES else "install_failed"
        return "failed", kind, str(entry.get("reason") or "")[:_MAX_DETAIL]
    if state != "succeeded":
        return "pending", None, ""
    abort = rollout["abort"]
    share = _error_share(metrics, rollout["model"], rollout["version"])
    if share is not None and share[1] >= int(abort["min_requests"]) and (
            share[0] >= float(abort["max_error_rate"])):
        return "failed", "error_rate", (f"{share[0]:.1%} of {share[1]} production requests "
                                        f"failed (max_error_rate {abort['max_error_rate']})")
    return "succeeded", None, ""


def observe(conn: Connection, device_id: str, entries: Any, metrics: Any,
            at: str) -> dict[str, int]:
    """Apply one report's ``rollouts`` entries; ``{"updated", "ignored"}``."""
    updated = ignored = 0
    if not isinstance(entries, list):
        return {"updated": 0, "ignored": 0}
    for entry in entries[:_MAX_ENTRIES]:
        rollout_id = entry.get("rollout") if isinstance(entry, dict) else None
        rollout = rdb.get_rollout(conn, rollout_id) if isinstance(rollout_id, str) else None
        member = (rdb.get_member(conn, rollout["id"], device_id)
                  if rollout is not None else None)
        if (rollout is None or member is None or entry.get("model") != rollout["model"]
                or str(entry.get("version")) != rollout["version"]):
            if rollout is not None:
                rdb.count_ignored(conn, rollout["id"])
            ignored += 1
            continue
        if rollout["status"] not in _LIVE or member["state"] == "failed":
            continue
        state, failure, detail = _outcome(entry, rollout, metrics)
        if state == member["state"] or (state == "pending" and member["state"] != "pending"):
            continue
        rdb.update_member(conn, rollout["id"], device_id, state=state,
                          failure_type=failure, detail=detail, updated_at=at)
        updated += 1
    return {"updated": updated, "ignored": ignored}
