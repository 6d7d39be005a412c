"""Send the outbox to the hub, one signed report per entry, and trim what it holds.

Each entry goes as its own ``POST /v1/reports`` (:func:`~.hub_api.post_reports`): the
body is the canonical JSON of the entry's body plus ``device_id``, ``seq``, ``kind`` and
``sent_at``, signed over exactly those bytes. The hub stores ``(device, seq)`` once and
answers the highest sequence up to which it holds everything (gap ranges count); the
outbox is trimmed up to that after every answer, so a cut connection or a killed box
resends at most what was not acknowledged, and the hub ignores a resend.

A send stops at the first failure: unreachable (tried again next cycle) or refused (401:
the hub does not know this box's key; re-enrol). A 413 is different: the hub will never
take that entry, so it is replaced by a signed gap entry naming its sequence number
(:meth:`~.outbox.Outbox.drop`) and the upload goes on with the next.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from .hub_api import HubRefused, HubUnreachable, post_reports
from .identity import DeviceIdentity
from .outbox import Entry, Outbox, canonical

__all__ = ["UploadResult", "report_bytes", "upload"]

log = logging.getLogger("appliance.sync")


@dataclass
class UploadResult:
    """What one upload did: entries sent, the hub's last ack, why it stopped early."""

    sent: int = 0
    acked: int = 0
    trimmed: int = 0
    error: str | None = None
    unreachable: bool = False

    def to_dict(self) -> dict[str, object]:
        return {"sent": self.sent, "acked": self.acked, "trimmed": self.trimmed,
                "error": self.error}


def report_bytes(entry: Entry, device_id: str, sent_at: str | None = None) -> bytes:
    """The exact bytes sent (and signed) for ``entry``."""
    body = {**entry.body, "device_id": device_id, "seq": entry.seq, "kind": entry.kind,
            "sent_at": sent_at or datetime.now(UTC).isoformat(timespec="microseconds")}
    return canonical(body)


def upload(outbox: Outbox, hub_url: str, device_id: str, identity: DeviceIdentity, *,
           timeout_s: float, batch: int = 100, rounds: int = 100) -> UploadResult:
    """Send pending entries (``batch`` per round, at most ``rounds`` rounds) until the
    outbox is empty, a send fails, or a round leaves entries the hub does not
    acknowledge (so a hub missing an earlier report is not sent the same ones again)."""
    result = UploadResult()
    for _ in range(rounds):
        entries = outbox.pending(batch)
        if not entries:
            break
        for entry in entries:
            try:
                answer = post_reports(hub_url, device_id, identity,
                                      report_bytes(entry, device_id), timeout_s)
            except HubUnreachable as exc:
                result.error, result.unreachable = exc.message, True
                return result
            except HubRefused as exc:
                if exc.status == 413:
                    log.warning("the hub refused report %d as too large (%s): it is dropped "
                                "from the outbox", entry.seq, exc.message)
                    outbox.drop(entry.seq, reason="hub-refused-too-large")
                    result.error = exc.message
                    continue
                result.error = exc.message
                return result
            result.sent += 1
            try:
                acked = int(answer.get("ack", 0))
            except (TypeError, ValueError):
                result.error = f"the hub's answer has no usable 'ack': {answer!r:.200}"
                return result
            if acked > result.acked:
                result.trimmed += outbox.ack(acked)
                result.acked = acked
        highest = max(e.seq for e in entries)
        if result.acked < highest:  # the hub holds a hole below: resending will not help
            result.error = (f"the hub acknowledges only through {result.acked}, below the "
                            f"{highest} sent; the rest is sent again next cycle")
            break
    return result
