"""Box reports: signed by the device key, stored exactly once, acknowledged by sequence.

    POST /v1/reports
    X-Device-Id: box-…
    X-Device-Signature: base64(Ed25519 signature over the exact body bytes)

    {"device_id": "box-…", "seq": 42, "sent_at": "…", "installed": {…}, "health": {…},
     "profile": …, "audit_checkpoints": […], "audit_records": […], "metrics": {…}}

Checks, in order, each before anything proportional to the body is done: the size
(over ``report_max_bytes``: 413, unread), the two headers and a known device (401), the
signature over the exact bytes (401), then the JSON (400). ``(device_id, seq)`` is the
table's primary key: a replayed report answers 200 with ``"duplicate": true`` and
changes nothing. The answer's ``ack`` is the highest sequence number up to which every
report is stored, so the box can trim its outbox up to it; ``seq`` echoes this report's.

A box whose outbox overflowed sends a gap entry in the sequence, ``{"kind": "gap",
"first": a, "last": b, …}`` (the box's own signed record of the dropped range, see
``appliance.sync.outbox``): the range counts as accounted for, so ``ack`` moves past it.

A report's ``audit_records`` (the box's audit records since the last report, in order)
are checked against the chain the hub witnessed for the device
(:mod:`.audit_witness`); a rewrite shows as ``audit.status = "broken"`` in ``hub
devices``.

The newest report (highest ``seq``) is the device's state: ``installed``, ``health``,
``profile`` and ``health.stale_since`` update the device row; an older one arriving
late is stored but does not roll that state back. Its ``rollouts`` entries move the
box's place in the staged rollouts it is in (:mod:`.rollout_progress`).
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection

from ..audit.records import now_iso
from ..errors import BadRequest, PayloadTooLarge, Unauthorized
from . import store as db
from .audit_witness import witness
from .rollout_progress import observe
from .services import Hub

GAP = "gap"
_MAX_SIGNATURE = 200


class ReportBody(msgspec.Struct, kw_only=True):
    """The fields the hub reads from a report; others are kept in the stored body."""

    device_id: str
    seq: Annotated[int, msgspec.Meta(ge=1)]
    kind: str = "report"
    sent_at: str | None = None
    installed: dict[str, Any] | None = None
    health: dict[str, Any] | None = None
    profile: Any = None
    audit_checkpoints: list[Any] = msgspec.field(default_factory=list)
    audit_records: list[Any] = msgspec.field(default_factory=list)
    metrics: dict[str, Any] | None = None
    #: how the rollouts the box is in went (:mod:`.rollout_progress`)
    rollouts: list[Any] | None = None
    #: a gap entry: the range of sequence numbers the box dropped
    first: Annotated[int, msgspec.Meta(ge=1)] | None = None
    last: Annotated[int, msgspec.Meta(ge=1)] | None = None


def check_size(length: int, limit: int) -> None:
    """PayloadTooLarge (413) for a report of ``length`` bytes over ``limit``."""
    if length > limit:
        raise PayloadTooLarge(f"the report is {length} bytes, more than the hub's "
                              f"report_max_bytes ({limit}): send fewer audit records per "
                              "report")


def _verify(device: dict[str, Any], body: bytes, signature: str) -> None:
    key = serialization.load_pem_public_key(device["signing_key"].encode())
    try:
        if len(signature) > _MAX_SIGNATURE or not isinstance(key, Ed25519PublicKey):
            raise ValueError("malformed")
        key.verify(base64.b64decode(signature, validate=True), body)
    except (InvalidSignature, ValueError, binascii.Error):
        raise Unauthorized(f"the report's X-Device-Signature does not verify with device "
                           f"{device['id']}'s key: sign the exact body bytes with the "
                           "device key (base64 Ed25519)") from None


def _parse(body: bytes, device_id: str) -> ReportBody:
    try:
        report = msgspec.json.decode(body, type=ReportBody)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"the report does not fit the report format: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the report is not JSON: {exc}") from None
    if report.device_id != device_id:
        raise BadRequest(f"the report names device {report.device_id!r} but X-Device-Id is "
                         f"{device_id!r}: a box reports for itself only")
    if report.kind == GAP and (report.first is None or report.last is None
                               or not report.first <= report.last < report.seq):
        raise BadRequest("a gap report needs first <= last < seq: the range the box dropped "
                         "before this report")
    return report


def contiguous(conn: Connection, device_id: str, acked: int) -> int:
    """The highest seq up to which every report of ``device_id`` is stored or declared
    lost, starting from the known ``acked``."""
    lost = db.lost_after(conn, device_id, acked)
    while True:
        before = acked
        for first, last in lost:
            if first <= acked + 1 and last > acked:
                acked = last
        for seq in db.report_seqs_after(conn, device_id, acked):
            if seq != acked + 1:
                break
            acked = seq
        if acked == before:
            return acked


def _state(device: dict[str, Any], report: ReportBody) -> dict[str, Any]:
    """The device columns a newest report sets."""
    values: dict[str, Any] = {"last_seq": report.seq}
    if report.installed is not None:
        values["installed"] = report.installed
    if report.health is not None:
        values["health"] = report.health
        stale = report.health.get("stale_since")
        values["stale_since"] = stale if isinstance(stale, str) else None
    if isinstance(report.profile, dict):
        values["hardware"] = report.profile
    elif isinstance(report.profile, str):
        hardware = device["hardware"] if isinstance(device["hardware"], dict) else {}
        values["hardware"] = {**hardware, "profile": report.profile}
    return values


def receive_report(hub: Hub, body: bytes, device_id: str | None,
                   signature: str | None) -> dict[str, Any]:
    """Check and store one report; ``{"ack", "seq", "duplicate"}``. 413 oversized, 401
    unsigned, unknown device or bad signature, 400 a body that is not a report."""
    check_size(len(body), hub.settings.report_max_bytes)
    if not device_id or not signature:
        raise Unauthorized("reports must be signed: send X-Device-Id and X-Device-Signature "
                           "(base64 Ed25519 signature over the exact body bytes)")
    with hub.store.read() as conn:
        device = db.get_device(conn, device_id)
    if device is None:
        raise Unauthorized(f"unknown device {device_id[:128]!r}: this hub enrolled no such "
                           "box; enrol it with `appliance sync enroll HUB_URL TOKEN`")
    _verify(device, body, signature)
    report = _parse(body, device_id)
    now = now_iso()
    with hub.store.write() as conn:
        device = db.get_device(conn, device_id) or device
        stored = db.insert_report(conn, device_id=device_id, seq=report.seq, received_at=now,
                                  sent_at=report.sent_at or now, body=body,
                                  signature=signature)
        values: dict[str, Any] = {"last_seen": now}
        acked = int(device["acked_seq"])
        if stored:
            if report.kind == GAP and report.first is not None and report.last is not None:
                db.add_lost(conn, device_id=device_id, first=report.first, last=report.last,
                            declared_in=report.seq)
            if report.seq > int(device["last_seq"]):
                values.update(_state(device, report))
                if report.rollouts:
                    observe(conn, device_id, report.rollouts, report.metrics, now)
            if report.audit_records:
                values["audit_witness"] = witness(device["audit_witness"],
                                                  report.audit_records)
            if report.kind != GAP and report.seq == acked + 1 and (
                    report.seq > int(device["last_seq"])):
                acked = report.seq  # the usual case: the next one, nothing stored above
            else:
                acked = contiguous(conn, device_id, acked)
            values["acked_seq"] = acked
        db.update_device(conn, device_id, **values)
    return {"ack": acked, "seq": report.seq, "duplicate": not stored}
