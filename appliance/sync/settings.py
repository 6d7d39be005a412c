"""``[sync]`` settings: how this box talks to its fleet hub (``Settings.sync``).

    [sync]
    enabled = true               # run the scheduled sync when the box is enrolled
    hub_url = "https://hub.example:8443"  # the hub's API; default: the one enrolled with
    metadata_url = "https://cdn.example/fleet/"  # TUF metadata/targets; default: enrolled
    interval_s = 300.0           # seconds between scheduled syncs
    jitter = 0.1                 # each interval moves by up to ±10 % (no thundering herd)
    timeout_s = 30.0             # one HTTP exchange with the hub (enrol, report upload)
    outbox_max_rows = 10000      # reports kept while the hub is away ...
    outbox_max_bytes = 67108864  # ... and their bytes; past either, the oldest are
                                 # dropped and a signed gap record names them
    upload_batch = 100           # outbox rows sent per POST /v1/reports
    stale_alert_after_s = 900.0  # hub unreachable this long: the HubSyncStale alert fires
    audit_records_per_cycle = 10000  # audit records reported per cycle (0: head and
                                 # checkpoints only, the records stay on the box)

The box is *enrolled* when ``<data_dir>/sync/enrollment.json`` exists
(``appliance sync enroll``); a box that is not enrolled never syncs, whatever is set
here. Kept free of sync imports: :mod:`appliance.settings` imports this module.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

import msgspec

__all__ = ["SyncSettings", "check_hub_url"]


def check_hub_url(url: str, what: str = "hub_url") -> str:
    """``url`` without a trailing slash; ValueError unless it is an http(s) URL with a
    host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"sync {what} {url!r} is not an http:// or https:// URL with a host "
                         "(e.g. https://hub.example:8443)")
    return url.rstrip("/")


class SyncSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fleet sync with a hub (docs: appliance/sync/)."""

    enabled: bool = True
    #: the hub's API (enrolment, reports); None: the URL the box enrolled with
    hub_url: str | None = None
    #: where the TUF metadata and targets are served; None: what enrolment returned
    metadata_url: str | None = None
    interval_s: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    jitter: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.1
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    outbox_max_rows: Annotated[int, msgspec.Meta(ge=2)] = 10_000
    outbox_max_bytes: Annotated[int, msgspec.Meta(ge=4096)] = 64 * 1024 * 1024
    upload_batch: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    stale_alert_after_s: Annotated[float, msgspec.Meta(ge=0)] = 900.0
    audit_records_per_cycle: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 10_000

    def __post_init__(self) -> None:
        if self.hub_url is not None:
            self.hub_url = check_hub_url(self.hub_url)
        if self.metadata_url is not None:
            self.metadata_url = check_hub_url(self.metadata_url, "metadata_url")
