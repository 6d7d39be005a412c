"""How a box that cannot sync says so: health, alerts, never readiness.

- :func:`hub_sync_dependency` is the ``hub_sync`` entry of ``/v1/health``'s
  ``dependencies`` and its degraded reasons: stale since when and why, and a refused
  update naming the attack. A box that is stale keeps serving what it verified, so this
  degrades the report and never touches liveness or readiness.
- :func:`update_alerts` fires ``HubSyncStale`` (warning) once the box has been stale for
  ``[sync] stale_alert_after_s``, and ``HubSyncRefused`` (critical) on a refused update;
  a successful cycle resolves both. Only where alerting is on (``services.alerts``).

Both read ``state.json`` (:mod:`.state`), the file the cycle writes, so a cycle run from
the CLI shows in the server's health too.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .report import iso
from .state import SyncState, enrollment_of, read_state

if TYPE_CHECKING:
    from ..alerts.engine import AlertEngine
    from .settings import SyncSettings

__all__ = ["REFUSED_ALERT", "STALE_ALERT", "hub_sync_dependency", "update_alerts"]

STALE_ALERT = "HubSyncStale"
REFUSED_ALERT = "HubSyncRefused"


def _reasons(state: SyncState, now: float) -> list[str]:
    out = []
    if state.stale_since is not None:
        ago = max(0.0, now - state.stale_since)
        out.append(f"hub sync: stale since {iso(state.stale_since)} ({ago:.0f} s; serving "
                   f"the versions verified last): {state.last_error or 'no answer'}")
    if state.last_refusal is not None:
        out.append(f"hub sync: update refused ({state.last_refusal}): nothing was "
                   "installed; the current versions keep serving")
    return out


def hub_sync_dependency(data_dir: Path, now: float | None = None
                        ) -> tuple[dict[str, Any], list[str]]:
    """(the ``hub_sync`` facts, degraded reasons) for the health report."""
    enrollment = enrollment_of(data_dir)
    if enrollment is None:
        return {"enrolled": False, "status": "off"}, []
    state = read_state(data_dir)
    reasons = _reasons(state, time.time() if now is None else now)
    facts = {"enrolled": True, "device_id": enrollment.device_id, "hub": enrollment.hub_url,
             "group": enrollment.group, "status": "degraded" if reasons else "ok",
             "last_attempt_at": iso(state.last_attempt_at),
             "last_success_at": iso(state.last_success_at),
             "stale_since": iso(state.stale_since), "last_error": state.last_error,
             "last_refusal": state.last_refusal}
    return facts, reasons


def update_alerts(alerts: AlertEngine | None, state: SyncState, settings: SyncSettings,
                  device_id: str, now: float | None = None) -> None:
    """Fire or resolve the sync alerts for ``state`` (nothing without an engine)."""
    if alerts is None:
        return
    now = time.time() if now is None else now
    labels = {"device": device_id}
    stale_for = None if state.stale_since is None else now - state.stale_since
    if stale_for is not None and stale_for >= settings.stale_alert_after_s:
        alerts.fire(STALE_ALERT, "warning", labels, {
            "summary": f"hub sync stale since {iso(state.stale_since)}: the box serves "
                       "the versions it verified last",
            "error": state.last_error or ""}, source="sync")
    elif stale_for is None:
        alerts.resolve(STALE_ALERT, labels)
    if state.last_refusal is not None:
        alerts.fire(REFUSED_ALERT, "critical", labels, {
            "summary": f"a hub update was refused: {state.last_refusal}"}, source="sync")
    else:
        alerts.resolve(REFUSED_ALERT, labels)
