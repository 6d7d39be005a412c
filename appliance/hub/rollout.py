"""Assignments and the desired state each box is told through TUF.

An operator assigns ``(model, version, stage)`` to a group; every device of the group
then gets, as its ``devices/<id>/desired.json`` target (online-signed hash bins, see
:mod:`.tuf_repo`), one entry per model currently assigned to its group::

    {"scale": {"version": "2", "stage": "production",
               "target": "packages/scale/2/scale-2.tar.enc",   # the TUF target to fetch
               "sha256": "<hex of the encrypted target>", "length": 12345,
               "package_sha256": "<hex of the plaintext package .tar>",
               "package_size": 12000, "publisher_key_id": "<hex>",
               "key": {"alg": "X25519-HKDF-SHA256-A256GCM", "kid": "<box key id>",
                       "epk": "…", "nonce": "…", "key": "…"}}}

``key`` is the package's data key wrapped to this box's X25519 key (see
:mod:`.publish` for why per box): the box reads the target's encryption header, puts
``key`` in as its ``wrap`` and unwraps with its private key
(``appliance.security.keywrap.unwrap_with_private``). A wrap is made once per (device,
package) and kept, so recomputing a desired state gives the same bytes.

The current assignment of a ``(group, model)`` is its newest row (the history stays in
the table); a staged rollout (:mod:`.rollouts`) overrides it for the boxes it took in,
and tags their entry ``"rollout": "<id>"`` so the box reports how it went.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from sqlalchemy import Connection

from ..audit.records import now_iso
from ..errors import BadRequest, Conflict, NotFound
from ..security.crypto_store import Header
from ..security.keywrap import unwrap_with_box, wrap_for_recipient
from . import store as db
from . import store_rollouts as rdb
from .audit_chain import append
from .services import Hub

#: the stages a hub may ask a box to put a version in
ASSIGNABLE_STAGES = ("registered", "shadow", "canary", "production")


def header_of(package: dict[str, Any]) -> Header:
    """The encryption header stored with a published package."""
    doc = msgspec.json.decode(package["header"])
    return Header(dict(doc["content"]), dict(doc["wrap"]), 0)


def _wrap_for(hub: Hub, conn: Connection, device: dict[str, Any],
              package: dict[str, Any]) -> dict[str, Any]:
    stored = db.get_package_key(conn, device["id"], package["model"], package["version"])
    if stored is not None:
        return dict(msgspec.json.decode(stored))
    header = header_of(package)
    data_key = unwrap_with_box(header, hub.package_key(), package["target_path"])
    public = serialization.load_pem_public_key(device["encryption_key"].encode())
    if not isinstance(public, X25519PublicKey):
        raise BadRequest(f"device {device['id']}'s encryption key is not X25519")
    wrap = wrap_for_recipient(header, data_key, public, device["encryption_key_id"])
    db.add_package_key(conn, device_id=device["id"], model=package["model"],
                       version=package["version"], wrap=wrap, at=now_iso())
    return wrap


def _entry(hub: Hub, conn: Connection, device: dict[str, Any], model: str, version: str,
           stage: str) -> dict[str, Any] | None:
    package = db.get_package(conn, model, version)
    if package is None:  # assign and rollouts refuse this; a row removed by hand is skipped
        return None
    return {"version": package["version"], "stage": stage,
            "target": package["target_path"], "sha256": package["target_sha256"],
            "length": package["target_size"], "package_sha256": package["package_sha256"],
            "package_size": package["package_size"],
            "publisher_key_id": package["publisher_key_id"],
            "key": _wrap_for(hub, conn, device, package)}


def desired_for(hub: Hub, conn: Connection, device: dict[str, Any]) -> dict[str, Any]:
    """The desired state of ``device``: its group's current assignments, overridden per
    model by the newest rollout that took the box in (:mod:`.rollouts`): the rollout's
    version, tagged ``"rollout": id``, or the group's assignment from before it (a
    halted or rolled-back rollout's box; none: the model is left out)."""
    wanted: dict[str, tuple[str, str, str | None]] = {
        a["model"]: (a["version"], a["stage"], None)
        for a in db.current_assignments(conn, device["group_name"])}
    for override in rdb.overrides_for(conn, device["id"]):
        model = override["model"]
        if override["desired"] == rdb.DESIRED_NEW:
            wanted[model] = (override["version"], override["stage"], override["rollout_id"])
            continue
        before = (override["previous"] or {}).get(device["group_name"])
        if before:
            wanted[model] = (before["version"], before["stage"], None)
        else:
            wanted.pop(model, None)
    desired: dict[str, Any] = {}
    for model in sorted(wanted):
        version, stage, rollout_id = wanted[model]
        entry = _entry(hub, conn, device, model, version, stage)
        if entry is not None:
            if rollout_id is not None:
                entry["rollout"] = rollout_id
            desired[model] = entry
    return desired


def publish_desired_in(hub: Hub, conn: Connection, device_ids: Iterable[str]) -> int:
    """Recompute the desired state of each device in the transaction ``conn`` and
    publish them together (one snapshot and timestamp); how many devices were set."""
    docs: dict[str, dict[str, Any]] = {}
    for device_id in device_ids:
        device = db.get_device(conn, device_id)
        if device is not None:
            docs[device_id] = desired_for(hub, conn, device)
    if docs:
        hub.repository.set_desired_many(docs)
    return len(docs)


def publish_desired(hub: Hub, device_ids: Iterable[str]) -> int:
    """Recompute and publish the desired state of each device; how many were set."""
    with hub.store.write() as conn:
        return publish_desired_in(hub, conn, list(device_ids))


def assign(hub: Hub, group: str, model: str, version: str, stage: str, *,
           actor: str) -> dict[str, Any]:
    """Assign ``model`` ``version`` in ``stage`` to ``group`` and publish the desired
    state of every device in it (devices of other groups are not touched). NotFound for
    an unknown group or a version the hub does not hold; BadRequest for a stage."""
    if stage not in ASSIGNABLE_STAGES:
        raise BadRequest(f"stage {stage!r} cannot be assigned; use one of "
                         f"{', '.join(ASSIGNABLE_STAGES)}")
    at = now_iso()
    with hub.store.write() as conn:
        if db.get_group(conn, group) is None:
            raise NotFound(f"no group {group!r} on this hub: create it with `appliance hub "
                           f"groups add {group}`")
        if db.get_package(conn, model, version) is None:
            held = [p["version"] for p in db.list_packages(conn, model)]
            raise NotFound(f"the hub holds no package of {model} version {version} "
                           f"(held: {', '.join(held) or 'none'}); publish it first with "
                           "`appliance hub publish PKG`")
        active = [r["id"] for r in rdb.list_rollouts(conn, model=model, statuses=rdb.ACTIVE)
                  if group in r["groups"]]
        if active:
            raise Conflict(f"rollout {active[0]} of {model} to group {group!r} is not "
                           "finished: stop or roll it back first (`appliance hub rollout "
                           f"stop {active[0]}`), or let it complete")
        db.add_assignment(conn, group=group, model=model, version=version, stage=stage,
                          by=actor, at=at)
        append(conn, actor=actor, action="assignment.set", at=at,
               detail={"group": group, "model": model, "version": version, "stage": stage})
        members = db.device_ids(conn, group)
        rdb.clear_overrides(conn, model, members, at=at)
        published = publish_desired_in(hub, conn, members)
    return {"group": group, "model": model, "version": version, "stage": stage,
            "assigned_by": actor, "at": at, "devices": published}
