"""One sync cycle: verified desired state in, installs and promotions, a report out.

    result = run_cycle(box)                      # the scheduled job, `appliance sync run`

1. A fresh TUF client (:class:`~appliance.sync.tuf_client.HubClient`) over the metadata
   cache, trusting the root stored at enrolment; ``refresh()``, then this device's
   desired state.
2. :func:`~.apply.apply_desired`: download what is missing, install and promote through
   the lifecycle (actor ``hub-sync``).
3. ``state.json``: a success clears ``stale_since``; a hub that cannot be reached, or
   metadata that expired (``SyncRefused`` of kind ``unreachable``/``expired``, or any
   other failure to get an answer), sets it (kept from the first failure on) and the box
   goes on serving what it verified. Any other ``SyncRefused`` is an attack refused
   (rollback, freeze, mix-and-match, bad hash, too large, bad signature): nothing is
   installed, and ONE registry event ``sync.refused`` {kind, message} records it (and
   the audit chain carries it), not one per cycle while the same refusal repeats.
4. A state report, with the audit records since the last one, is queued in the outbox
   (:mod:`.report`; more ``audit`` entries when the log ran ahead), then the outbox is
   sent (:mod:`.upload`) and trimmed by the hub's acknowledgements.
5. The sync alerts are fired or resolved (:mod:`.staleness`).

A cycle is never run twice at once in one data directory: an ``flock`` on
``sync/cycle.lock`` makes a second one (the server's job while the CLI runs one) wait.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import ApplianceError, ConfigError
from ..registry.db import transaction
from ..registry.events import record_event
from .apply import ACTOR, ApplyResult, Downloader, apply_desired
from .box import Box
from .identity import DeviceIdentity, load_identity, sync_dir
from .outbox import Outbox
from .report import AUDIT_BATCH_RECORDS, AUDIT_CURSOR, audit_records_after, build_report
from .staleness import update_alerts
from .state import (
    DOWNLOADS_DIR,
    METADATA_DIR,
    Enrollment,
    SyncState,
    enrollment_of,
    read_state,
    root_path,
    write_state,
)
from .upload import UploadResult, upload

__all__ = ["OFFLINE_KINDS", "Client", "ClientFactory", "CycleResult", "hub_client",
           "open_outbox", "require_enrollment", "run_cycle"]

log = logging.getLogger("appliance.sync")

#: refusals that mean "no fresh answer", not "an attack": the box is stale, not attacked
OFFLINE_KINDS = frozenset({"unreachable", "expired"})
LOCK_FILE = "cycle.lock"
#: verified packages copied out of the TUF cache, until they are installed
INCOMING = "incoming"


class Client(Downloader, Protocol):
    """What a cycle needs of the TUF client."""

    def refresh(self) -> None: ...

    def desired(self, device_id: str) -> dict[str, Any] | None: ...


ClientFactory = Callable[[Path, Enrollment, bytes], Client]


@dataclass
class CycleResult:
    """What one cycle did; ``status`` is ok | offline | refused | error."""

    status: str = "ok"
    applied: ApplyResult = field(default_factory=ApplyResult)
    upload: UploadResult | None = None
    error: str | None = None
    refusal: dict[str, str] | None = None
    stale_since: float | None = None
    duration_s: float = 0.0
    #: how the rollouts this box is in went (:mod:`.rollout_report`)
    rollouts: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, **self.applied.to_dict(), "rollouts": self.rollouts,
                "upload": self.upload.to_dict() if self.upload else None,
                "error": self.error, "refusal": self.refusal,
                "stale_since": self.stale_since, "duration_s": round(self.duration_s, 3)}


def require_enrollment(data_dir: Path) -> Enrollment:
    """The enrolment record; ConfigError saying how to enrol when there is none."""
    enrollment = enrollment_of(data_dir)
    if enrollment is None:
        raise ConfigError(f"this box ({data_dir}) is not enrolled with a hub: run "
                          "`appliance sync enroll HUB_URL TOKEN` first")
    return enrollment


def hub_client(data_dir: Path, enrollment: Enrollment, root: bytes, *,
               metadata_url: str | None = None, fetcher: Any = None) -> Client:
    """A fresh TUF client for this box: metadata cache ``sync/metadata``, verified
    targets ``sync/downloads``, trust anchored in the enrolment's root. With
    ``[sync] metadata_url`` set, targets are beside it; else where enrolment said."""
    from .tuf_client import HubClient

    sync = sync_dir(data_dir)
    targets = None if metadata_url else (enrollment.targets_url or None)
    client: Client = HubClient(sync / METADATA_DIR, metadata_url or enrollment.metadata_url,
                               sync / DOWNLOADS_DIR, bootstrap=root, fetcher=fetcher,
                               targets_url=targets)
    return client


def open_outbox(box: Box, identity: DeviceIdentity | None = None) -> Outbox:
    """The outbox of ``box``'s data directory with its ``[sync]`` bounds."""
    settings = box.settings.sync
    data_dir = Path(box.settings.data_dir)
    return Outbox(data_dir, max_rows=settings.outbox_max_rows,
                  max_bytes=settings.outbox_max_bytes,
                  identity=identity or (lambda: load_identity(
                      data_dir, box.registry.box_key_provider, create=False)))


@contextmanager
def _cycle_lock(data_dir: Path) -> Iterator[None]:
    fd = os.open(sync_dir(data_dir) / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _default_factory(box: Box) -> ClientFactory:
    def make(data_dir: Path, enrollment: Enrollment, root: bytes) -> Client:
        return hub_client(data_dir, enrollment, root,
                          metadata_url=box.settings.sync.metadata_url)
    return make


def _refused(box: Box, state: SyncState, kind: str, message: str) -> None:
    """One registry event per refusal (not one per cycle while it repeats)."""
    line = f"{kind}: {message}"
    log.error("hub sync refused an update (%s): nothing installed, current versions keep "
              "serving", line)
    if state.last_refusal == line:
        return
    with transaction(box.registry.db):
        record_event(box.registry.db, actor=ACTOR, action="sync.refused", model=None,
                     version=None, detail={"kind": kind, "message": message})
    state.last_refusal = line


def _fetch_and_apply(box: Box, client_factory: ClientFactory, enrollment: Enrollment,
                     identity: DeviceIdentity, state: SyncState, result: CycleResult,
                     offline_kinds: frozenset[str]) -> None:
    """Steps 1 and 2, with the outcome in ``state`` and ``result``."""
    from .errors import SyncRefused
    from .rollout_report import rollout_outcomes

    data_dir = Path(box.settings.data_dir)
    now = time.time()
    client: Client | None = None
    try:
        client = client_factory(data_dir, enrollment, root_path(data_dir).read_bytes())
        box.progress("refreshing the hub's metadata")
        client.refresh()
        desired = client.desired(enrollment.device_id) or {}
        box.progress(f"desired state: {len(desired)} model(s)")
        result.applied = apply_desired(box, client, desired, sync_dir(data_dir) / INCOMING,
                                       identity.encryption_key,
                                       cache_dir=sync_dir(data_dir) / DOWNLOADS_DIR)
        result.rollouts = rollout_outcomes(box, desired, result.applied)
    except SyncRefused as exc:
        kind, message = str(exc.kind), str(getattr(exc, "message", exc))
        result.error = f"{kind}: {message}"
        if kind in offline_kinds:
            result.status = "offline"
        else:
            result.status, result.refusal = "refused", {"kind": kind, "message": message}
            _refused(box, state, kind, message)
    except (ApplianceError, OSError) as exc:
        result.status = "error"
        result.error = exc.message if isinstance(exc, ApplianceError) else (
            f"{type(exc).__name__}: {exc}")
    finally:
        close = getattr(client, "close", None)
        if callable(close):
            close()  # the HTTP pools it opened
    if result.status == "ok":
        state.stale_since, state.last_success_at = None, now
        state.last_error = state.last_refusal = None
        return
    if state.stale_since is None:
        state.stale_since = now
    state.last_error = result.error
    log.warning("hub sync: %s; stale since %s, serving the versions verified last",
                result.error, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(
                    state.stale_since)))


def _queue_reports(box: Box, state: SyncState, summary: dict[str, Any],
                   outbox: Outbox) -> None:
    """Step 4's queueing: the state report with the first audit records since the last
    one, then ``audit`` entries with more, up to ``[sync] audit_records_per_cycle``."""
    data_dir = Path(box.settings.data_dir)
    budget = box.settings.sync.audit_records_per_cycle
    after = outbox.cursor(AUDIT_CURSOR)
    records, head = audit_records_after(data_dir, after, limit=min(budget,
                                                                   AUDIT_BATCH_RECORDS))
    if head < after:  # a new audit log (restored, re-created): start it from its beginning
        log.warning("hub sync: the audit log's head %d is below the %d already reported; "
                    "reporting it from its first record", head, after)
        after = 0
        records, head = audit_records_after(data_dir, 0, limit=min(budget,
                                                                   AUDIT_BATCH_RECORDS))

    def cursor() -> tuple[str, int] | None:
        return (AUDIT_CURSOR, int(records[-1]["seq"])) if records else None

    def behind() -> int:
        return max(0, head - (int(records[-1]["seq"]) if records else after))

    pending = outbox.status().depth
    outbox.append("report", build_report(box, state, summary, outbox_pending=pending + 1,
                                         audit_records=records, audit_behind=behind()),
                  cursor=cursor())
    sent = len(records)
    while records and sent < budget and behind() > 0:
        records, head = audit_records_after(data_dir, int(records[-1]["seq"]),
                                            limit=min(budget - sent, AUDIT_BATCH_RECORDS))
        if not records:
            break
        outbox.append("audit", {"audit_records": records,
                                "metrics": {"audit_behind": behind()}}, cursor=cursor())
        sent += len(records)


def run_cycle(box: Box, *, client_factory: ClientFactory | None = None,
              send: bool = True, offline_kinds: frozenset[str] = OFFLINE_KINDS
              ) -> CycleResult:
    """Run one cycle on ``box`` (module docstring). ``client_factory`` builds the TUF
    client (default: over HTTP from the enrolled metadata URL; a bundle passes one over
    its directory); ``send=False`` queues the report without sending it;
    ``offline_kinds`` are the refusals that mean "stale", not "attacked" (a bundle has
    none: an expired bundle is refused)."""
    data_dir = Path(box.settings.data_dir)
    enrollment = require_enrollment(data_dir)
    started = time.monotonic()
    with _cycle_lock(data_dir):
        identity = load_identity(data_dir, box.registry.box_key_provider, create=False)
        state = read_state(data_dir)
        state.last_attempt_at = time.time()
        result = CycleResult()
        _fetch_and_apply(box, client_factory or _default_factory(box), enrollment, identity,
                         state, result, offline_kinds)
        result.stale_since = state.stale_since
        with open_outbox(box, identity) as outbox:
            summary = {k: v for k, v in result.to_dict().items() if k != "upload"}
            _queue_reports(box, state, summary, outbox)
            if send:
                box.progress(f"sending {outbox.status().depth} outbox entries to "
                             f"{enrollment.hub_url}")
                result.upload = upload(outbox, box.settings.sync.hub_url or enrollment.hub_url,
                                       enrollment.device_id, identity,
                                       timeout_s=box.settings.sync.timeout_s,
                                       batch=box.settings.sync.upload_batch)
        state.last_result = result.to_dict()
        write_state(data_dir, state)
    try:
        update_alerts(box.alerts, state, box.settings.sync, enrollment.device_id)
    except Exception:  # alerting must not fail a cycle that worked
        log.exception("hub sync: the sync alerts could not be updated")
    result.duration_s = time.monotonic() - started
    return result
