"""The attack matrix: what a mirror, a network attacker or a stolen online key can serve a
box, each refused with its own ``SyncRefused.kind`` while the box's last verified desired
state and packages stay usable; and key rotation as a box that trusted root v1 sees it."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from static_server import StaticServer, endless
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, TargetFile, Timestamp
from tuf_forge import forge_publish, forge_root, mirror, online_signer, root_signer

from appliance.hub.tuf_layout import desired_path, store_target
from appliance.hub.tuf_publish import DAY, Expiries
from appliance.hub.tuf_repo import HubRepository
from appliance.sync.errors import SyncRefused
from appliance.sync.tuf_client import HubClient

DEVICE = "box-a"
PKG = "packages/resnet/1/model.onnx"
PKG2 = "packages/resnet/2/model.onnx"


def payload(seed: int, size: int = 32 * 1024) -> bytes:
    return random.Random(seed).randbytes(size)


def wants(version: str) -> dict[str, Any]:
    return {"resnet": {"version": version, "target": f"packages/resnet/{version}/model.onnx"}}


@pytest.fixture
def box(hub: HubRepository, server: StaticServer, make_box, tmp_path: Path) -> HubClient:
    """A box that has verified desired state v1 and downloaded package v1."""
    hub.add_target(PKG, payload(1))
    hub.set_desired(DEVICE, wants("1"))
    client = make_box()
    client.refresh([DEVICE])
    assert client.desired(DEVICE) == wants("1")
    client.download(PKG, tmp_path / "installed")
    server.take_log()
    return client


def refused(kind: str, call: Callable[[], object]) -> SyncRefused:
    with pytest.raises(SyncRefused) as caught:
        call()
    assert caught.value.kind == kind, caught.value.message
    return caught.value


def assert_last_verified_state_usable(
    box: HubClient, server: StaticServer, tmp_path: Path, desired: dict[str, Any] | None = None
) -> None:
    """The box still answers from what it verified, without asking the server."""
    server.take_log()
    assert box.desired(DEVICE) == (desired or wants("1"))
    assert box.download(PKG, tmp_path / "again").read_bytes() == payload(1)
    assert server.take_log() == []


def test_mirror_replaying_an_older_repository_state_is_refused_as_rollback(
    hub: HubRepository, server: StaticServer, box: HubClient, tmp_path: Path
):
    old_timestamp = hub.layout.metadata_file(Timestamp.type).read_bytes()
    hub.set_desired(DEVICE, wants("1") | {"extra": {"version": "9"}})
    box.refresh([DEVICE])
    box.desired(DEVICE)
    server.overrides["/metadata/timestamp.json"] = old_timestamp
    err = refused("rollback", lambda: box.refresh([DEVICE]))
    assert "older than what this box has already verified" in err.message
    newer = wants("1") | {"extra": {"version": "9"}}
    assert_last_verified_state_usable(box, server, tmp_path, newer)


def test_stolen_online_key_listing_an_older_targets_version_is_refused_as_rollback(
    hub: HubRepository, server: StaticServer, box: HubClient, tmp_path: Path
):
    old_targets = hub.state().snapshot.signed.meta["targets.json"]
    hub.add_target(PKG2, payload(2))
    box.refresh([DEVICE])
    attacker = mirror(hub, server, tmp_path / "mirror")
    state = attacker.read()
    state.snapshot.signed.meta["targets.json"] = MetaFile(
        old_targets.version, old_targets.length, old_targets.hashes
    )
    forge_publish(state, online_signer(hub))
    refused("rollback", lambda: box.refresh([DEVICE]))
    assert_last_verified_state_usable(box, server, tmp_path)


def test_expired_timestamp_is_refused_as_freeze_and_a_fresh_one_recovers(
    hub: HubRepository, hub_clock, server: StaticServer, box: HubClient, tmp_path: Path
):
    hub_clock.advance(-2 * DAY)  # what a frozen mirror serves: a timestamp past its expiry
    hub.refresh()
    err = refused("freeze", lambda: box.refresh([DEVICE]))
    assert "frozen" in err.message
    assert_last_verified_state_usable(box, server, tmp_path)
    hub_clock.advance(2 * DAY)
    hub.set_desired(DEVICE, wants("1") | {"extra": {"version": "2"}})
    box.refresh([DEVICE])
    assert box.desired(DEVICE) == wants("1") | {"extra": {"version": "2"}}


def test_bin_from_another_repository_state_is_refused_as_mix_and_match(
    hub: HubRepository, server: StaticServer, box: HubClient, tmp_path: Path
):
    name = hub.state().bin_for(desired_path(DEVICE))
    old = hub.state().snapshot.signed.meta[f"{name}.json"].version
    hub.set_desired(DEVICE, wants("2"))
    new = old + 1
    older_bin = hub.layout.metadata_file(name, old).read_bytes()
    server.overrides[f"/metadata/{new}.{name}.json"] = older_bin
    refused("mix-and-match", lambda: box.refresh([DEVICE]))
    assert_last_verified_state_usable(box, server, tmp_path)


def test_artifact_with_the_right_name_and_wrong_content_is_refused_as_bad_hash(
    hub: HubRepository, server: StaticServer, box: HubClient, tmp_path: Path
):
    info = hub.add_target(PKG2, payload(2))
    box.refresh([DEVICE])
    url = f"/targets/packages/resnet/2/{info['sha256']}.model.onnx"
    server.overrides[url] = payload(666)  # same length, other bytes
    refused("bad-hash", lambda: box.download(PKG2, tmp_path / "out"))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert not [p for p in box.cache_dir.iterdir() if "resnet%2F2" in p.name]
    assert_last_verified_state_usable(box, server, tmp_path)


def test_endless_target_data_is_refused_as_too_large(
    hub: HubRepository, server: StaticServer, box: HubClient, tmp_path: Path
):
    info = hub.add_target(PKG2, payload(2))
    box.refresh([DEVICE])
    server.overrides[f"/targets/packages/resnet/2/{info['sha256']}.model.onnx"] = endless()
    refused("too-large", lambda: box.download(PKG2, tmp_path / "out"))
    assert_last_verified_state_usable(box, server, tmp_path)


def test_endless_timestamp_is_refused_as_too_large(
    server: StaticServer, box: HubClient, tmp_path: Path
):
    server.overrides["/metadata/timestamp.json"] = endless()
    err = refused("too-large", lambda: box.refresh([DEVICE]))
    assert "more bytes than the signed metadata allows" in err.message
    assert_last_verified_state_usable(box, server, tmp_path)


def test_rotated_root_with_fewer_signatures_than_its_threshold_is_refused(
    hub: HubRepository, server: StaticServer, box: HubClient, tmp_path: Path
):
    from securesystemslib.signer import CryptoSigner

    attacker = mirror(hub, server, tmp_path / "mirror")
    root = Metadata[Root].from_bytes(hub.root_bytes())
    root.signed.version += 1
    root.signed.add_key(CryptoSigner.generate_ed25519().public_key, Root.type)
    root.signed.roles[Root.type].threshold = 2
    forge_root(attacker, root, [root_signer(hub)])  # one signature of the two required
    err = refused("bad-signature", lambda: box.refresh([DEVICE]))
    assert "not signed by enough trusted keys" in err.message
    assert box.trusted_root_version() == 1
    assert_last_verified_state_usable(box, server, tmp_path)


def test_tampered_target_file_on_the_static_server_is_refused_as_bad_hash(
    hub: HubRepository, server: StaticServer, box: HubClient, tmp_path: Path
):
    info = hub.add_target(PKG2, payload(2))
    box.refresh([DEVICE])
    stored = hub.layout.target_file(TargetFile(info["length"], {"sha256": info["sha256"]}, PKG2))
    data = bytearray(stored.read_bytes())
    data[100] ^= 0xFF
    stored.write_bytes(bytes(data))
    err = refused("bad-hash", lambda: box.download(PKG2, tmp_path / "out"))
    assert PKG2 in err.message
    assert_last_verified_state_usable(box, server, tmp_path)


def test_tampered_timestamp_on_the_static_server_is_refused_as_bad_signature(
    hub: HubRepository, server: StaticServer, box: HubClient, tmp_path: Path
):
    path = hub.layout.metadata_file(Timestamp.type)
    md = Metadata[Timestamp].from_bytes(path.read_bytes())
    md.signed.version += 5  # edited without the online key: the old signature stays
    server.overrides["/metadata/timestamp.json"] = md.to_bytes()
    refused("bad-signature", lambda: box.refresh([DEVICE]))
    assert_last_verified_state_usable(box, server, tmp_path)


def test_package_vouched_for_only_by_the_online_key_is_refused(
    hub: HubRepository, server: StaticServer, box: HubClient, tmp_path: Path
):
    evil = "packages/evil/1/model.onnx"
    attacker = mirror(hub, server, tmp_path / "mirror")
    state = attacker.read()
    name = state.bin_for(evil)
    md = state.bin(name)
    length, sha256 = store_target(attacker, evil, b"evil bytes")
    md.signed.targets[evil] = TargetFile(length, {"sha256": sha256}, evil)
    md.signed.version += 1
    forge_publish(state, online_signer(hub), [(name, md, [online_signer(hub)], 90 * DAY)])
    box.refresh([DEVICE])  # the metadata itself verifies: the online key did sign it
    server.take_log()
    err = refused("bad-signature", lambda: box.download(evil, tmp_path / "out"))
    assert "not signed by the hub's targets key" in err.message
    assert not [p for p, *_ in server.log if p.startswith("/targets/packages/evil/")]


def test_expired_bin_is_refused_as_expired(
    hub: HubRepository, hub_clock, server: StaticServer, box: HubClient, tmp_path: Path
):
    careless = HubRepository(hub.directory, hub_clock, expiries=Expiries(bins_s=-60))
    careless.set_desired(DEVICE, wants("2"))
    err = refused("expired", lambda: box.refresh([DEVICE]))
    assert "re-sign" in err.message
    assert_last_verified_state_usable(box, server, tmp_path)


def test_unreachable_hub_is_refused_as_unreachable(
    server: StaticServer, box: HubClient, tmp_path: Path
):
    server.stop()
    err = refused("unreachable", box.refresh)
    assert box.base_url in err.message
    assert box.desired(DEVICE) == wants("1")
    assert box.download(PKG, tmp_path / "again").read_bytes() == payload(1)


def test_online_key_revoked_and_root_rotated_twice_is_accepted_in_one_refresh(
    hub: HubRepository, server: StaticServer, box: HubClient, tmp_path: Path
):
    old_online, old_root = online_signer(hub), root_signer(hub)
    hub.rotate_online_key()
    hub.rotate_root()
    hub.set_desired(DEVICE, wants("1") | {"after": {"version": "rotation"}})
    assert hub.root_versions() == [1, 2, 3]
    box.refresh([DEVICE])
    fetched = [p for p, *_ in server.take_log()]
    assert fetched[:3] == [f"/metadata/{v}.root.json" for v in (2, 3, 4)]
    assert box.trusted_root_version() == 3
    assert box.desired(DEVICE) == wants("1") | {"after": {"version": "rotation"}}
    assert not list((hub.directory / "keys").glob(f"*{old_online.public_key.keyid}*"))

    attacker = mirror(hub, server, tmp_path / "mirror")
    forge_publish(attacker.read(), old_online, snapshot=False)
    refused("bad-signature", lambda: box.refresh([DEVICE]))

    attacker = mirror(hub, server, tmp_path / "mirror2")
    root = Metadata[Root].from_bytes(hub.root_bytes())
    root.signed.version += 1
    root.signed.roles[Timestamp.type].keyids = [old_online.public_key.keyid]
    root.signed.keys[old_online.public_key.keyid] = old_online.public_key
    forge_root(attacker, root, [old_root])
    refused("bad-signature", lambda: box.refresh([DEVICE]))
    assert box.trusted_root_version() == 3
    assert box.desired(DEVICE) == wants("1") | {"after": {"version": "rotation"}}


def test_box_refused_a_bad_bin_takes_the_good_one_once_the_mirror_is_fixed(
    hub: HubRepository, server: StaticServer, box: HubClient, make_box, tmp_path: Path
):
    name = hub.state().bin_for(desired_path(DEVICE))
    hub.set_desired(DEVICE, wants("2"))
    version = hub.state().snapshot.signed.meta[f"{name}.json"].version
    server.overrides[f"/metadata/{version}.{name}.json"] = b"{}"
    with pytest.raises(SyncRefused):
        box.refresh([DEVICE])
    server.overrides.clear()
    restarted = make_box()
    restarted.refresh([DEVICE])
    assert restarted.desired(DEVICE) == wants("2")
    snapshot = Metadata[Snapshot].from_file(str(restarted.metadata_dir / "snapshot.json"))
    assert snapshot.signed.meta[f"{name}.json"].version == version
