"""Signing and writing the hub's TUF metadata: the one path every change takes.

``publish`` signs the changed targets-type roles (top-level targets, hash bins), then the
snapshot listing their versions and hashes, then the timestamp naming the snapshot — in
that order, each file atomic, so a web server never serves a timestamp that names a file
not yet written. ``write_root`` signs a root version and refuses one that would not
verify by its own keys (a threshold the signers cannot meet).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from securesystemslib.signer import Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, SuccinctRoles, Targets, Timestamp
from tuf.api.serialization.json import JSONSerializer

from appliance.errors import BadRequest, ConfigError
from appliance.hub.tuf_files import atomic_write
from appliance.hub.tuf_layout import RepoLayout, RepoState

DAY = 86_400.0
HASHES = ["sha256"]
_SERIALIZER = JSONSerializer(compact=True)

#: (role name, its metadata with the new version set, signers, lifetime in seconds)
RoleUpdate = tuple[str, Metadata[Targets], Sequence[Signer], float]


@dataclass(frozen=True)
class Expiries:
    """How long each role's metadata stays valid after it is signed, in seconds.

    The timestamp is short so a box notices a frozen mirror within a day; ``refresh``
    (the hub's scheduled job) re-signs it, and the snapshot and bins once half their
    life is gone. Root and targets are signed with offline keys: renew them with
    ``renew_offline_roles`` before they expire (``refresh`` warns a quarter-life ahead).
    """

    root_s: float = 365 * DAY
    targets_s: float = 90 * DAY
    bins_s: float = 90 * DAY
    snapshot_s: float = 7 * DAY
    timestamp_s: float = 1 * DAY


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """UTF-8 JSON with sorted keys and no whitespace: equal documents, equal bytes."""
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"the desired state is not plain JSON: {exc}") from exc
    return text.encode("utf-8")


def publish(
    state: RepoState,
    roles: Sequence[RoleUpdate],
    *,
    snapshot_signers: Sequence[Signer],
    timestamp_signers: Sequence[Signer],
    now: float,
    snapshot_s: float,
    timestamp_s: float,
    bump: bool = True,
    snapshot: bool = True,
) -> None:
    """Sign and write ``roles``, then (when ``snapshot`` or any role changed) a new
    snapshot, then a new timestamp; ``bump=False`` keeps the snapshot and timestamp
    versions as they are (a new repository's version 1)."""
    layout = state.layout
    snap = state.snapshot
    for name, md, signers, lifetime in roles:
        md.signed.expires = at(now + lifetime)
        data = sign(md, signers)
        atomic_write(layout.metadata_file(name, md.signed.version), data)
        snap.signed.meta[f"{name}.json"] = MetaFile.from_data(md.signed.version, data, HASHES)
    if snapshot or roles:
        snap.signed.version += 1 if bump else 0
        snap.signed.expires = at(now + snapshot_s)
        snap_data = sign(snap, snapshot_signers)
        atomic_write(layout.metadata_file(Snapshot.type, snap.signed.version), snap_data)
        state.timestamp.signed.snapshot_meta = MetaFile.from_data(
            snap.signed.version, snap_data, HASHES
        )
    ts = state.timestamp
    ts.signed.version += 1 if bump else 0
    ts.signed.expires = at(now + timestamp_s)
    atomic_write(layout.metadata_file(Timestamp.type), sign(ts, timestamp_signers),
                 new_mtime_second=True)


def sign(md: Metadata[Any], signers: Sequence[Signer]) -> bytes:
    """Replace ``md``'s signatures with one per signer; the compact JSON bytes."""
    md.signatures.clear()
    for signer in signers:
        md.sign(signer, append=True)
    return md.to_bytes(_SERIALIZER)


def write_root(layout: RepoLayout, md: Metadata[Root], signers: Sequence[Signer]) -> None:
    """Sign root, check that it verifies by its own keys, then write ``<v>.root.json``
    and the ``root.json`` copy."""
    data = sign(md, signers)
    try:
        md.signed.verify_delegate(Root.type, md.signed_bytes, md.signatures)
    except UnsignedMetadataError as exc:
        raise ConfigError(f"root v{md.signed.version} would not verify: {exc}") from exc
    atomic_write(layout.metadata_file(Root.type, md.signed.version), data)
    atomic_write(layout.metadata_file(Root.type), data)


def succinct(state: RepoState) -> SuccinctRoles:
    """The hash-bin delegation of top-level targets; ConfigError if there is none."""
    delegations = state.targets.signed.delegations
    if delegations is None or delegations.succinct_roles is None:
        raise ConfigError(
            f"{state.layout.repo_dir}: top-level targets delegate to no hash bins; the "
            "repository was not made by HubRepository.create"
        )
    return delegations.succinct_roles


def at(epoch_s: float) -> datetime:
    """Epoch seconds as the UTC datetime TUF metadata wants."""
    return datetime.fromtimestamp(epoch_s, tz=UTC)


def remaining(expires: datetime, now: float) -> float:
    """Seconds from ``now`` until ``expires`` (negative once expired)."""
    return expires.timestamp() - now
