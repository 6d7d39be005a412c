"""The attacker's tools for the fleet tests: a mirror that serves a copy of the hub's
repository, and metadata forged with keys the attacker holds (the Metadata API itself)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from securesystemslib.signer import Signer
from static_server import StaticServer
from tuf.api.metadata import Metadata, Root, Timestamp

from appliance.hub.tuf_keys import ONLINE, ROOT
from appliance.hub.tuf_layout import RepoLayout, RepoState
from appliance.hub.tuf_publish import DAY, RoleUpdate, publish, sign
from appliance.hub.tuf_repo import HubRepository


def online_signer(hub: HubRepository) -> Signer:
    """The hub's current online key (what an attacker who stole it signs with)."""
    root = hub.state().root.signed
    return hub.keys.signer(ONLINE, root.keys[root.roles[Timestamp.type].keyids[0]])


def root_signer(hub: HubRepository) -> Signer:
    """The hub's current (first) root key."""
    root = hub.state().root.signed
    return hub.keys.signer(ROOT, root.keys[root.roles[Root.type].keyids[0]])


def mirror(hub: HubRepository, server: StaticServer, where: Path) -> RepoLayout:
    """Copy the hub's repository to ``where`` and make ``server`` serve the copy."""
    shutil.rmtree(where, ignore_errors=True)
    shutil.copytree(hub.layout.repo_dir, where)
    server.root = where.resolve()
    return RepoLayout(where)


def forge_publish(
    state: RepoState,
    signer: Signer,
    roles: list[RoleUpdate] | None = None,
    *,
    snapshot: bool = True,
    timestamp_s: float = DAY,
) -> None:
    """Publish (in the mirror ``state`` was read from) new snapshot and timestamp
    versions signed by ``signer``, with ``roles`` changed first."""
    publish(
        state,
        roles or [],
        snapshot_signers=[signer],
        timestamp_signers=[signer],
        now=time.time(),
        snapshot_s=7 * DAY,
        timestamp_s=timestamp_s,
        snapshot=snapshot,
    )


def forge_root(layout: RepoLayout, root: Metadata[Root], signers: list[Signer]) -> bytes:
    """Write ``root`` as its versioned file, signed by ``signers`` only — no check that
    they meet its threshold (that is what the box must do)."""
    data = sign(root, signers)
    layout.metadata_file(Root.type, root.signed.version).write_bytes(data)
    return data
