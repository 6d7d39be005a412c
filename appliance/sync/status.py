"""``appliance sync status``: where this box stands with its hub, from its files alone
(enrolment, ``state.json``, the outbox), so it answers with the server up or down."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .outbox import OUTBOX_FILE, Outbox
from .report import iso
from .state import enrollment_of, read_state

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["sync_status"]


def sync_status(settings: Settings) -> dict[str, Any]:
    """Device id, hub, group, last attempt and success, ``stale_since``, the last error
    and refusal, and the outbox: depth, bytes, gaps."""
    data_dir = Path(settings.data_dir)
    enrollment = enrollment_of(data_dir)
    state = read_state(data_dir)
    out: dict[str, Any] = {
        "enrolled": enrollment is not None,
        "device_id": enrollment.device_id if enrollment else None,
        "hub_url": (settings.sync.hub_url or enrollment.hub_url) if enrollment else None,
        "metadata_url": (settings.sync.metadata_url or enrollment.metadata_url)
        if enrollment else None,
        "group": enrollment.group if enrollment else None,
        "enabled": settings.sync.enabled, "interval_s": settings.sync.interval_s,
        "last_attempt_at": iso(state.last_attempt_at),
        "last_success_at": iso(state.last_success_at),
        "stale_since": iso(state.stale_since), "last_error": state.last_error,
        "last_refusal": state.last_refusal,
        "last_status": state.last_result.get("status"), "outbox": None}
    if (data_dir / "sync" / OUTBOX_FILE).exists():
        with Outbox(data_dir, max_rows=settings.sync.outbox_max_rows,
                    max_bytes=settings.sync.outbox_max_bytes) as outbox:
            out["outbox"] = outbox.status().to_dict()
    return out
