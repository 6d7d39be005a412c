"""Operator commands on the fleet: groups, the device list, trusted publishers, bundles
for air-gapped sites, and online-key rotation. Each command that changes something is
recorded in the audit chain with ``actor``, in the transaction that makes the change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..audit.records import now_iso
from ..errors import BadRequest, Conflict, NotFound
from ..registry.models import check_name
from ..security.trust import publishers
from . import store as db
from .audit_chain import append
from .services import Hub


def add_group(hub: Hub, name: str, description: str = "", *, actor: str) -> dict[str, Any]:
    """Create the group ``name``; Conflict if it exists."""
    check_name("group name", name)
    if len(description) > 1000:
        raise BadRequest("description: at most 1000 characters")
    at = now_iso()
    with hub.store.write() as conn:
        if db.get_group(conn, name) is not None:
            raise Conflict(f"group {name!r} already exists")
        db.add_group(conn, name=name, description=description, at=at, by=actor)
        append(conn, actor=actor, action="group.add", at=at,
               detail={"group": name, "description": description})
    return {"name": name, "description": description, "created_at": at,
            "created_by": actor, "devices": 0}


def list_groups(hub: Hub) -> list[dict[str, Any]]:
    """Every group with its device count and current assignments."""
    with hub.store.read() as conn:
        found = db.list_groups(conn)
        for group in found:
            group["assignments"] = [
                {k: a[k] for k in ("model", "version", "stage", "assigned_by", "at")}
                for a in db.current_assignments(conn, group["name"])]
    return found


def _device_view(device: dict[str, Any]) -> dict[str, Any]:
    acked, last = int(device["acked_seq"]), int(device["last_seq"])
    above = int(device["stored_above_ack"])
    health = device["health"] if isinstance(device["health"], dict) else {}
    hardware = device["hardware"] if isinstance(device["hardware"], dict) else {}
    return {
        "id": device["id"], "group": device["group_name"],
        "enrolled_at": device["enrolled_at"], "last_seen": device["last_seen"],
        "profile": hardware.get("profile"), "installed": device["installed"],
        "health": health, "stale_since": device["stale_since"],
        "reports": {"acked_through": acked, "highest": last,
                    # sequence numbers below the highest not stored yet (in flight or
                    # still in the box's outbox)
                    "missing": max(0, last - acked - above),
                    "pending_on_box": health.get("outbox_pending")},
        "audit": _audit_view(device.get("audit_witness")),
        "signing_key_id": device["signing_key_id"],
    }


def _audit_view(witnessed: Any) -> dict[str, Any]:
    """What the hub witnessed of the box's audit chain (see :mod:`.audit_witness`)."""
    if not isinstance(witnessed, dict) or not witnessed:
        return {"status": "none", "seq": None, "records": 0, "problems": []}
    return {"status": witnessed.get("status"), "seq": witnessed.get("seq"),
            "records": witnessed.get("records", 0),
            "problems": list(witnessed.get("problems", []))[:5]}


def list_devices(hub: Hub, group: str | None = None) -> list[dict[str, Any]]:
    """Every device (of ``group``): last seen, installed versions and stages, health,
    hardware profile, and where its reports stand."""
    with hub.store.read() as conn:
        if group is not None and db.get_group(conn, group) is None:
            raise NotFound(f"no group {group!r} on this hub")
        return [_device_view(d) for d in db.list_devices(conn, group)]


def trust_publisher(hub: Hub, pem: bytes, name: str, *, actor: str,
                    where: str = "the key") -> dict[str, str]:
    """Trust the Ed25519 public key ``pem`` as publisher ``name``: packages it signs may
    be published (``keys/trusted/<name>.pem``)."""
    entry = publishers(hub.settings.keys_dir).add(name, pem, where)
    with hub.store.write() as conn:
        append(conn, actor=actor, action="publisher.trust",
               detail={"name": entry.name, "key_id": entry.key_id})
    return entry.to_dict()


def export_bundle(hub: Hub, group: str, out_dir: Path, *, actor: str) -> dict[str, Any]:
    """Write the metadata and targets the devices of ``group`` need to ``out_dir`` (an
    air-gapped site's USB stick)."""
    with hub.store.read() as conn:
        if db.get_group(conn, group) is None:
            raise NotFound(f"no group {group!r} on this hub")
        members = db.device_ids(conn, group)
    if not members:
        raise BadRequest(f"group {group!r} has no devices: enrol its boxes first (a bundle "
                         "carries each box's own desired state)")
    result = hub.repository.export(out_dir, members)
    with hub.store.write() as conn:
        append(conn, actor=actor, action="bundle.export",
               detail={"group": group, "devices": len(members), "directory": str(out_dir)})
    return {"group": group, "devices": members, "directory": str(out_dir),
            "export": result}


def rotate_online_key(hub: Hub, *, actor: str) -> dict[str, Any]:
    """Replace the online signing key (timestamp, snapshot, desired-state bins): a new
    root version names it, so this needs the offline root and targets keys here."""
    key_id = hub.repository.rotate_online_key()
    with hub.store.write() as conn:
        append(conn, actor=actor, action="online-key.rotate", detail={"key_id": key_id})
    return {"rotated": True, "key_id": key_id,
            "root_version": hub.repository.root_versions()[-1]}
