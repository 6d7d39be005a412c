"""How the rollouts this box is in went, for its reports (the hub's side is
``appliance/hub/rollout_progress.py``).

An entry of the desired state tagged ``"rollout": id`` is this box's part in a staged
rollout. After each cycle, one outcome per tagged entry::

    {"rollout": id, "model": m, "version": v, "state": "pending" | "succeeded" | "failed",
     "failure_type": "install_failed" | "warmup_failed" | "drift" | None, "reason": "…"}

- ``failed``/``install_failed``: this cycle's download, decryption or install refused it;
- ``failed``/``warmup_failed``: its promotion failed (the load or warm-up of the
  load-first switch, or a lifecycle gate), or the version is ``failed`` here; the box
  keeps serving what it served (the switch never happened);
- ``failed``/``drift``: it is in the desired stage and the health report names a
  critical input drift on the model;
- ``succeeded``: it is in the desired stage; else ``pending``.

The hub adds the error-rate check from the report's request counts.
"""

from __future__ import annotations

from typing import Any

from .apply import ApplyResult
from .box import Box

__all__ = ["rollout_outcomes"]

_REASON = 300


def _drifted(box: Box, model: str) -> str | None:
    try:
        reasons = (box.health() if box.health is not None else {}).get("reasons", [])
    except Exception:  # a report goes out even when health cannot be had
        return None
    prefix = f"{model}: input drift (drift)"
    return next((str(r) for r in reasons if str(r).startswith(prefix)), None)


def rollout_outcomes(box: Box, desired: dict[str, Any],
                     applied: ApplyResult) -> list[dict[str, Any]]:
    """One outcome per rollout-tagged entry of ``desired`` (module docstring)."""
    failed = {(f["model"], f["version"]): f for f in applied.failed}
    out: list[dict[str, Any]] = []
    for model in sorted(desired):
        entry = desired[model]
        if not isinstance(entry, dict) or not isinstance(entry.get("rollout"), str):
            continue
        version, stage = str(entry.get("version")), str(entry.get("stage") or "registered")
        outcome: dict[str, Any] = {"rollout": entry["rollout"], "model": model,
                                   "version": version, "state": "pending",
                                   "failure_type": None, "reason": ""}
        try:
            record = box.registry.version(model, version)
        except Exception:
            record = None
        fail = failed.get((model, version))
        if fail is not None:
            kind = "install_failed" if fail.get("phase") == "install" else "warmup_failed"
            outcome.update(state="failed", failure_type=kind,
                           reason=str(fail.get("reason"))[:_REASON])
        elif record is not None and record.stage == "failed":
            outcome.update(state="failed", failure_type="warmup_failed",
                           reason=str(record.failure_reason)[:_REASON])
        elif record is not None and record.stage == stage:
            drift = _drifted(box, model) if stage == "production" else None
            if drift is not None:
                outcome.update(state="failed", failure_type="drift", reason=drift[:_REASON])
            else:
                outcome["state"] = "succeeded"
        out.append(outcome)
    return out
