"""The hub's TUF repository: model packages and each box's desired state as signed targets.

Roles and keys (the Uptane split, see ``tuf_keys`` for the key files):

* root — threshold of ``root`` keys (offline); names the keys of every top-level role.
* targets — the ``targets`` key (offline); lists the packages ``packages/<model>/<version>/
  <file>`` and delegates every other path to ``2**k`` succinct hash bins ``devices-<hex>``.
* bins, snapshot, timestamp — the ``online`` key; a bin lists the ``devices/<id>/
  desired.json`` targets whose paths hash into it, so setting one box's desired state
  re-signs one small bin, the snapshot and the timestamp.

A box verifies packages against top-level targets only (``appliance.sync.tuf_client``),
so a stolen online key can redirect desired states but cannot ship an artifact.
Consistent snapshots are on: metadata is written as ``<version>.<role>.json`` and targets
as ``<sha256>.<basename>``, and nothing published is rewritten except ``timestamp.json``
and the ``root.json`` convenience copy (see ``tuf_layout``). Every write is atomic, and
every operation holds ``RepoLock`` so concurrent calls (threads or processes) never
interleave.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from securesystemslib.signer import Key, Signer
from tuf.api.metadata import (
    Delegations,
    Metadata,
    Root,
    Snapshot,
    SuccinctRoles,
    TargetFile,
    Targets,
    Timestamp,
)

from appliance.errors import BadRequest, ConfigError, Conflict
from appliance.hub.tuf_files import RepoLock
from appliance.hub.tuf_keys import ONLINE, ROOT, TARGETS, KeyStore
from appliance.hub.tuf_layout import (
    BIN_PREFIX,
    DEVICES_PREFIX,
    RepoLayout,
    RepoState,
    check_target_path,
    desired_path,
    store_target,
)
from appliance.hub.tuf_publish import (
    HASHES,
    Expiries,
    RoleUpdate,
    at,
    canonical_json,
    publish,
    remaining,
    succinct,
    write_root,
)

__all__ = ["Expiries", "HubRepository", "canonical_json"]


class HubRepository:
    """An existing repository in ``directory`` (``repo/`` is what the web server serves,
    ``keys/`` the private keys). ConfigError if the folder holds no repository."""

    def __init__(
        self,
        directory: Path,
        clock: Callable[[], float] = time.time,
        *,
        expiries: Expiries | None = None,
        offline_keys: Path | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.layout = RepoLayout(self.directory / "repo")
        self.keys = KeyStore(self.directory / "keys", offline_keys)
        self.expiries = expiries or Expiries()
        self._clock = clock
        self._lock = RepoLock(self.directory)
        if not self.layout.metadata_file(Root.type).is_file():
            raise ConfigError(
                f"{self.directory} holds no hub repository (no repo/metadata/root.json): "
                "create one with HubRepository.create or point to the right folder"
            )

    @classmethod
    def create(
        cls,
        directory: Path,
        *,
        bins: int = 16,
        clock: Callable[[], float] = time.time,
        expiries: Expiries | None = None,
        root_keys: int = 1,
        root_threshold: int = 1,
    ) -> HubRepository:
        """Make keys and version-1 metadata for a new repository in ``directory``:
        ``root_keys`` root keys (``root_threshold`` of them must sign), one targets key,
        one online key, and ``bins`` hash bins (a power of two, 2 to 2**16).
        Conflict if a repository is already there."""
        if bins < 2 or bins > 2**16 or bins & (bins - 1):
            raise BadRequest(f"bins must be a power of two from 2 to 65536, not {bins}")
        if not 1 <= root_threshold <= root_keys:
            raise BadRequest(
                f"root_threshold must be between 1 and root_keys ({root_keys}), "
                f"not {root_threshold}"
            )
        directory = Path(directory)
        layout = RepoLayout(directory / "repo")
        exp = expiries or Expiries()
        with RepoLock(directory):
            if layout.metadata_file(Root.type).exists():
                raise Conflict(f"{directory} already holds a hub repository: open it instead")
            keys = KeyStore(directory / "keys")
            root_signers = [keys.generate(ROOT) for _ in range(root_keys)]
            targets_signer = keys.generate(TARGETS)
            online = keys.generate(ONLINE)
            now = clock()
            root = Root(expires=at(now + exp.root_s), consistent_snapshot=True)
            for signer in root_signers:
                root.add_key(signer.public_key, Root.type)
            root.roles[Root.type].threshold = root_threshold
            root.add_key(targets_signer.public_key, Targets.type)
            for role in (Snapshot.type, Timestamp.type):
                root.add_key(online.public_key, role)
            online_id = online.public_key.keyid
            bin_roles = SuccinctRoles([online_id], 1, int(math.log2(bins)), BIN_PREFIX)
            delegations = Delegations({online_id: online.public_key}, None, bin_roles)
            state = RepoState(
                layout,
                Metadata(root),
                Metadata(Timestamp(expires=at(now))),
                Metadata(Snapshot(expires=at(now), meta={})),
                Metadata(Targets(expires=at(now), delegations=delegations)),
            )
            write_root(layout, state.root, root_signers)
            roles = [(Targets.type, state.targets, [targets_signer], exp.targets_s)]
            for name in bin_roles.get_roles():
                state.bins[name] = Metadata(Targets(expires=at(now)))
                roles.append((name, state.bins[name], [online], exp.bins_s))
            repo = cls(directory, clock, expiries=exp)
            repo._publish(state, roles, bump=False)
        return repo

    # -- publishing -------------------------------------------------------------------

    def add_target(
        self, target_path: str, data: bytes | Path, custom: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Store a package file as ``target_path`` (``packages/<model>/<version>/<file>``)
        and sign it into top-level targets with the targets key; ``custom`` is kept as the
        target's custom metadata. Returns {"path", "length", "sha256"}. Needs the offline
        targets key (SigningKeyUnavailable otherwise); unchanged content is a no-op."""
        check_target_path(target_path)
        if target_path.startswith(DEVICES_PREFIX):
            raise BadRequest(
                f"{target_path!r}: paths under {DEVICES_PREFIX} hold desired states; "
                "use set_desired for them"
            )
        with self._lock:
            state = self.layout.read()
            signers = self._role_signers(state, Targets.type)
            self._role_signers(state, Snapshot.type)
            length, sha256 = store_target(self.layout, target_path, data)
            fields = {"custom": dict(custom)} if custom is not None else None
            info = TargetFile(length, {"sha256": sha256}, target_path, fields)
            if state.targets.signed.targets.get(target_path) != info:
                state.targets.signed.targets[target_path] = info
                state.targets.signed.version += 1
                update = (Targets.type, state.targets, signers, self.expiries.targets_s)
                self._publish(state, [update])
        return {"path": target_path, "length": length, "sha256": sha256}

    def set_desired(self, device_id: str, desired: Mapping[str, Any]) -> dict[str, Any]:
        """Publish ``desired`` (canonical JSON) as ``devices/<device_id>/desired.json`` in
        the hash bin the path falls into, signed with the online key; bumps that bin, the
        snapshot and the timestamp. Returns {"path", "length", "sha256", "role"}."""
        path = desired_path(device_id)
        data = canonical_json(desired)
        with self._lock:
            state = self.layout.read()
            name = state.bin_for(path)
            md = state.bin(name)
            signers = self._role_signers(state, name)
            info = TargetFile.from_data(path, data, HASHES)
            if md.signed.targets.get(path) != info:
                store_target(self.layout, path, data)
                md.signed.targets[path] = info
                md.signed.version += 1
                self._publish(state, [(name, md, signers, self.expiries.bins_s)])
        return {"path": path, "length": info.length, "sha256": info.hashes["sha256"], "role": name}

    def set_desired_many(self, desired: Mapping[str, Mapping[str, Any]]) -> int:
        """:meth:`set_desired` for many devices at once: every bin they touch is signed
        once, then one snapshot and one timestamp (a rollout wave of a thousand boxes is
        one publication, not a thousand). Returns how many desired states changed."""
        changed = 0
        with self._lock:
            state = self.layout.read()
            touched: dict[str, Any] = {}
            for device_id, doc in desired.items():
                path = desired_path(device_id)
                data = canonical_json(doc)
                name = state.bin_for(path)
                md = touched.get(name) or state.bin(name)
                info = TargetFile.from_data(path, data, HASHES)
                if md.signed.targets.get(path) != info:
                    store_target(self.layout, path, data)
                    md.signed.targets[path] = info
                    touched[name] = md
                    changed += 1
            if touched:
                updates = []
                for name, md in touched.items():
                    md.signed.version += 1
                    updates.append((name, md, self._role_signers(state, name),
                                    self.expiries.bins_s))
                self._publish(state, updates)
        return changed

    def refresh(
        self, *, expire_timestamp_s: float | None = None, expire_snapshot_s: float | None = None
    ) -> dict[str, Any]:
        """Re-sign the timestamp (always) and, with the online key, the snapshot and bins
        that are past half their life (the snapshot always when ``expire_snapshot_s`` is
        given). The hub's scheduler calls this well within the timestamp's life.
        Returns {"timestamp", "snapshot", "renewed_bins", "expires", "warnings"}, where
        warnings name offline-signed roles (root, targets) within a quarter-life of expiry."""
        ts_s = self.expiries.timestamp_s if expire_timestamp_s is None else expire_timestamp_s
        with self._lock:
            state = self.layout.read()
            now = self._clock()
            renewed = []
            for name in state.bin_names():
                md = state.bin(name)
                if remaining(md.signed.expires, now) < self.expiries.bins_s / 2:
                    md.signed.version += 1
                    signers = self._role_signers(state, name)
                    renewed.append((name, md, signers, self.expiries.bins_s))
            snap_s = self.expiries.snapshot_s if expire_snapshot_s is None else expire_snapshot_s
            resign_snapshot = (
                bool(renewed)
                or expire_snapshot_s is not None
                or remaining(state.snapshot.signed.expires, now) < self.expiries.snapshot_s / 2
            )
            self._publish(
                state, renewed, snapshot=resign_snapshot, snapshot_s=snap_s, timestamp_s=ts_s
            )
            warnings = []
            for role, md_signed, life in (
                (Root.type, state.root.signed, self.expiries.root_s),
                (Targets.type, state.targets.signed, self.expiries.targets_s),
            ):
                if remaining(md_signed.expires, now) < life / 4:
                    warnings.append(
                        f"{role} metadata expires {md_signed.expires.isoformat()}: renew it "
                        "with the offline keys (HubRepository.renew_offline_roles)"
                    )
        return {
            "timestamp": state.timestamp.signed.version,
            "snapshot": state.snapshot.signed.version,
            "renewed_bins": [name for name, *_ in renewed],
            "expires": {
                "root": state.root.signed.expires.isoformat(),
                "targets": state.targets.signed.expires.isoformat(),
                "snapshot": state.snapshot.signed.expires.isoformat(),
                "timestamp": state.timestamp.signed.expires.isoformat(),
            },
            "warnings": warnings,
        }

    # -- keys ---------------------------------------------------------------------------

    def rotate_online_key(self) -> str:
        """Replace the online key: a new root version (signed by the root keys) names the
        new key for snapshot and timestamp, top-level targets (targets key) delegate the
        bins to it, and the bins, snapshot and timestamp are re-signed with it; the old
        key's file is deleted. Needs the offline root and targets keys. Returns the new
        key id."""
        with self._lock:
            state = self.layout.read()
            root = state.root.signed
            root_signers = self._root_signers(state)
            targets_signers = self._role_signers(state, Targets.type)
            bins = succinct(state)
            old_ids = set(root.roles[Timestamp.type].keyids)
            old_ids |= set(root.roles[Snapshot.type].keyids) | set(bins.keyids)
            new = self.keys.generate(ONLINE)
            for role in (Timestamp.type, Snapshot.type):
                for keyid in list(root.roles[role].keyids):
                    root.revoke_key(keyid, role)
                root.add_key(new.public_key, role)
            self._bump_root(state, root_signers)
            delegations = state.targets.signed.delegations
            assert delegations is not None  # _succinct checked it
            delegations.keys = {new.public_key.keyid: new.public_key}
            bins.keyids = [new.public_key.keyid]
            state.targets.signed.version += 1
            roles = [(Targets.type, state.targets, targets_signers, self.expiries.targets_s)]
            for name in state.bin_names():
                md = state.bin(name)
                md.signed.version += 1
                roles.append((name, md, [new], self.expiries.bins_s))
            self._publish(state, roles)
            for keyid in old_ids - {new.public_key.keyid}:
                self.keys.discard(ONLINE, keyid)
        return new.public_key.keyid

    def rotate_root(self, *, keys: int = 1, threshold: int = 1) -> list[str]:
        """Replace the root keys with ``keys`` new ones of which ``threshold`` must sign:
        the new root version is signed by a threshold of the old keys and by all new ones,
        and the old keys' files are deleted. Returns the new key ids."""
        if not 1 <= threshold <= keys:
            raise BadRequest(f"threshold must be between 1 and keys ({keys}), not {threshold}")
        with self._lock:
            state = self.layout.read()
            root = state.root.signed
            old_signers = self._root_signers(state)
            old_ids = list(root.roles[Root.type].keyids)
            new_signers = [self.keys.generate(ROOT) for _ in range(keys)]
            for keyid in old_ids:
                root.revoke_key(keyid, Root.type)
            for signer in new_signers:
                root.add_key(signer.public_key, Root.type)
            root.roles[Root.type].threshold = threshold
            self._bump_root(state, [*old_signers, *new_signers])
            new_ids = [s.public_key.keyid for s in new_signers]
            for keyid in set(old_ids) - set(new_ids):
                self.keys.discard(ROOT, keyid)
        return new_ids

    def renew_offline_roles(self) -> None:
        """Re-sign root (a new version, same keys) and top-level targets with fresh expiry;
        needs the offline root and targets keys."""
        with self._lock:
            state = self.layout.read()
            self._bump_root(state, self._root_signers(state))
            signers = self._role_signers(state, Targets.type)
            state.targets.signed.version += 1
            self._publish(state, [(Targets.type, state.targets, signers, self.expiries.targets_s)])

    # -- reading ------------------------------------------------------------------------

    def root_bytes(self) -> bytes:
        """The current root metadata, what enrolment hands a box as its trust anchor."""
        return self.layout.metadata_file(Root.type).read_bytes()

    def root_versions(self) -> list[int]:
        """Every root version published, ascending."""
        return self.layout.root_versions()

    def state(self) -> RepoState:
        """The current metadata (read under the lock, so never half-written)."""
        with self._lock:
            return self.layout.read()

    def export(
        self, out_dir: Path, device_ids: Iterable[str], *, expire_s: float | None = None
    ) -> dict[str, Any]:
        """Write an air-gapped bundle for ``device_ids`` to ``out_dir``; see
        ``appliance.hub.tuf_export.export_bundle``."""
        from appliance.hub.tuf_export import export_bundle

        with self._lock:
            if expire_s is not None:
                self.refresh(expire_timestamp_s=expire_s, expire_snapshot_s=expire_s)
            return export_bundle(self.layout.read(), Path(out_dir), device_ids)

    # -- internals ----------------------------------------------------------------------

    def _role_signers(self, state: RepoState, role: str) -> list[Signer]:
        """Signers for a top-level role (from root) or a bin (from the delegation)."""
        if role in state.root.signed.roles:
            spec = state.root.signed.roles[role]
            keys: dict[str, Key] = state.root.signed.keys
        else:
            spec = succinct(state)
            delegations = state.targets.signed.delegations
            assert delegations is not None  # _succinct checked it
            keys = delegations.keys
        kind = {Root.type: ROOT, Targets.type: TARGETS}.get(role, ONLINE)
        found = self.keys.signers(
            kind, [keys[k] for k in spec.keyids], spec.threshold, role=role
        )
        return list(found)

    def _root_signers(self, state: RepoState) -> list[Signer]:
        return self._role_signers(state, Root.type)

    def _bump_root(self, state: RepoState, signers: Sequence[Signer]) -> None:
        state.root.signed.version += 1
        state.root.signed.expires = at(self._clock() + self.expiries.root_s)
        write_root(self.layout, state.root, signers)

    def _publish(
        self,
        state: RepoState,
        roles: Sequence[RoleUpdate],
        *,
        bump: bool = True,
        snapshot: bool = True,
        snapshot_s: float | None = None,
        timestamp_s: float | None = None,
    ) -> None:
        publish(
            state,
            roles,
            snapshot_signers=self._role_signers(state, Snapshot.type),
            timestamp_signers=self._role_signers(state, Timestamp.type),
            now=self._clock(),
            snapshot_s=self.expiries.snapshot_s if snapshot_s is None else snapshot_s,
            timestamp_s=self.expiries.timestamp_s if timestamp_s is None else timestamp_s,
            bump=bump,
            snapshot=snapshot,
        )
