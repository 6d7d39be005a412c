"""The hub's TUF repository as boxes see it over a real HTTP server: layout, desired states
in hash bins, packages, cheap refreshes, key handling, and air-gapped bundles."""

from __future__ import annotations

import json
import random
import shutil
import stat
import threading
from pathlib import Path

import pytest
from static_server import StaticServer
from tuf.api.metadata import Metadata, Root

from appliance.errors import BadRequest, NotFound
from appliance.hub.tuf_keys import SigningKeyUnavailable
from appliance.hub.tuf_layout import desired_path
from appliance.hub.tuf_publish import DAY
from appliance.hub.tuf_repo import HubRepository, canonical_json
from appliance.sync.directory_fetcher import DirectoryFetcher
from appliance.sync.tuf_client import HubClient

PKG = "packages/resnet/1/model.onnx"


def payload(seed: int, size: int = 64 * 1024) -> bytes:
    return random.Random(seed).randbytes(size)


def desired_for(model: str, version: str, target: str) -> dict[str, object]:
    return {model: {"version": version, "stage": "production", "target": target}}


def two_devices_in_different_bins(hub: HubRepository) -> tuple[str, str]:
    state = hub.state()
    first = "box-a"
    for n in range(100):
        other = f"box-{n}"
        if state.bin_for(desired_path(other)) != state.bin_for(desired_path(first)):
            return first, other
    raise AssertionError("no two device ids in different bins")


def test_new_repository_has_consistent_snapshot_files_and_private_keys(hub: HubRepository):
    meta = hub.layout.metadata_dir
    names = {p.name for p in meta.iterdir()}
    top = {"1.root.json", "root.json", "timestamp.json", "1.snapshot.json", "1.targets.json"}
    assert top <= names
    assert {f"1.devices-{i:x}.json" for i in range(16)} <= names
    root = Metadata[Root].from_bytes(hub.root_bytes()).signed
    assert root.consistent_snapshot is True
    assert hub.root_versions() == [1]
    keys = sorted((hub.directory / "keys").glob("*.pem"))
    assert [k.name.split("-")[0] for k in keys] == ["online", "root", "targets"]
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_box_refreshes_gets_its_desired_state_and_downloads_a_package(
    hub: HubRepository, server: StaticServer, make_box, tmp_path: Path
):
    info = hub.add_target(PKG, payload(1), custom={"model": "resnet"})
    hub.set_desired("box-a", desired_for("resnet", "1", PKG))
    box = make_box()
    box.refresh(["box-a"])
    assert box.desired("box-a") == desired_for("resnet", "1", PKG)
    path = box.download(PKG, tmp_path / "out")
    assert path.read_bytes() == payload(1)
    served = [p for p, status, _ in server.log if p.startswith("/targets/packages/")]
    assert served == [f"/targets/packages/resnet/1/{info['sha256']}.model.onnx"]


def test_artifact_already_in_the_cache_is_not_downloaded_again(
    hub: HubRepository, server: StaticServer, make_box, tmp_path: Path
):
    hub.add_target(PKG, payload(1))
    box = make_box()
    box.download(PKG, tmp_path / "a")
    server.take_log()
    assert box.download(PKG, tmp_path / "b").read_bytes() == payload(1)
    restarted = make_box()  # same folders: a box after a restart
    restarted.refresh()
    server.take_log()
    restarted.download(PKG, tmp_path / "c")
    assert server.take_log() == []


def test_idle_refresh_and_one_of_five_updates_download_little(
    hub: HubRepository, server: StaticServer, make_box, tmp_path: Path
):
    paths = [f"packages/m{i}/1/model.onnx" for i in range(5)]
    for i, path in enumerate(paths):
        hub.add_target(path, payload(i))
    box = make_box()
    box.refresh()
    for path in paths:
        box.download(path, tmp_path / "out")
    first = server.body_bytes(server.take_log())

    hub.refresh()
    box.refresh()
    idle_log = server.take_log()
    idle = server.body_bytes(idle_log)

    hub.add_target(paths[2], payload(99))
    box.refresh()
    for path in paths:
        box.download(path, tmp_path / "out")
    update_log = server.take_log()
    update = server.body_bytes(update_log)
    print(f"\nfirst sync {first} B; idle refresh {idle} B {[p for p, *_ in idle_log]}; "
          f"one-of-five update {update} B {[p for p, *_ in update_log]}")

    assert {p for p, *_ in idle_log} == {"/metadata/timestamp.json", "/metadata/2.root.json"}
    assert idle < 1024
    fetched_targets = [p for p, *_ in update_log if p.startswith("/targets/")]
    assert len(fetched_targets) == 1 and fetched_targets[0].startswith("/targets/packages/m2/")
    assert update < len(payload(0)) + 8 * 1024
    assert (tmp_path / "out" / "model.onnx").read_bytes() == payload(4)


def test_desired_state_of_one_device_does_not_leak_into_another(
    hub: HubRepository, server: StaticServer, make_box
):
    a, b = two_devices_in_different_bins(hub)
    hub.set_desired(a, {"resnet": {"version": "1"}})
    box_b = make_box("box-b")
    box_b.refresh([b])
    assert box_b.desired(b) is None
    hub.set_desired(b, {"yolo": {"version": "7"}})
    box_b.refresh([b])
    assert box_b.desired(b) == {"yolo": {"version": "7"}}
    state = hub.state()
    bin_a = state.bin_for(desired_path(a))
    assert not [p for p, *_ in server.log if bin_a in p or f"/devices/{a}/" in p]
    box_a = make_box("box-a")
    assert box_a.desired(a) == {"resnet": {"version": "1"}}


def test_desired_state_is_published_as_canonical_json_and_unchanged_state_is_a_no_op(
    hub: HubRepository,
):
    first = hub.set_desired("box-a", {"b": 1, "a": {"z": True, "y": None}})
    version = hub.state().timestamp.signed.version
    again = hub.set_desired("box-a", {"a": {"y": None, "z": True}, "b": 1})
    assert again == first and hub.state().timestamp.signed.version == version
    stored = hub.layout.target_file(hub.state().find_target(first["path"]))
    assert stored.read_bytes() == b'{"a":{"y":null,"z":true},"b":1}'
    assert canonical_json({"é": 1}) == '{"é":1}'.encode()
    with pytest.raises(BadRequest, match="not plain JSON"):
        hub.set_desired("box-a", {"x": float("nan")})
    with pytest.raises(BadRequest, match="device id"):
        hub.set_desired("../etc", {})
    with pytest.raises(BadRequest, match="set_desired"):
        hub.add_target("devices/box-a/desired.json", b"{}")


def test_reopened_repository_continues_from_its_published_versions(
    hub: HubRepository, hub_clock
):
    hub.set_desired("box-a", {"m": {"version": "1"}})
    before = hub.state()
    reopened = HubRepository(hub.directory, hub_clock)
    reopened.set_desired("box-a", {"m": {"version": "2"}})
    after = reopened.state()
    assert after.snapshot.signed.version == before.snapshot.signed.version + 1
    assert after.timestamp.signed.version == before.timestamp.signed.version + 1


def test_refresh_resigns_timestamp_and_renews_snapshot_and_bins_past_half_life(
    hub: HubRepository, hub_clock
):
    snap = hub.state().snapshot.signed.version
    report = hub.refresh()
    assert report["snapshot"] == snap and report["renewed_bins"] == [] and not report["warnings"]
    hub_clock.advance(4 * DAY)  # snapshot (7 days) past half its life
    assert hub.refresh()["snapshot"] == snap + 1
    hub_clock.advance(46 * DAY)  # bins (90 days) past half theirs
    report = hub.refresh()
    assert len(report["renewed_bins"]) == 16
    hub_clock.advance(25 * DAY)  # targets (90 days) within a quarter of expiry
    assert any("targets metadata expires" in w for w in hub.refresh()["warnings"])
    hub.renew_offline_roles()
    assert not hub.refresh()["warnings"]


def test_concurrent_writers_do_not_interleave(
    hub: HubRepository, server: StaticServer, make_box
):
    devices = [f"box-{i}" for i in range(12)]
    errors: list[BaseException] = []

    def publish(device: str) -> None:
        try:
            hub.set_desired(device, {"m": {"version": device}})
            hub.refresh()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(d,)) for d in devices]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    box = make_box()
    box.refresh(devices)
    assert [box.desired(d) for d in devices] == [{"m": {"version": d}} for d in devices]
    assert hub.state().timestamp.signed.version == 1 + 2 * len(devices)


def test_offline_root_and_targets_keys_block_packages_but_not_desired_states(
    hub: HubRepository, hub_clock, tmp_path: Path, make_box
):
    usb = tmp_path / "usb"
    usb.mkdir()
    for key in (hub.directory / "keys").glob("*.pem"):
        if not key.name.startswith("online-"):
            shutil.move(key, usb / key.name)
    with pytest.raises(SigningKeyUnavailable, match="copy targets-.*pem from the offline medium"):
        hub.add_target(PKG, payload(1))
    with pytest.raises(SigningKeyUnavailable, match="root"):
        hub.rotate_online_key()
    hub.set_desired("box-a", {"m": {"version": "1"}})
    hub.refresh()
    with_usb = HubRepository(hub.directory, hub_clock, offline_keys=usb)
    with_usb.add_target(PKG, payload(1))
    with_usb.rotate_online_key()
    box = make_box()
    assert box.desired("box-a") == {"m": {"version": "1"}}
    assert box.trusted_root_version() == 2


def test_root_with_two_of_two_keys_is_accepted_by_a_box(hub: HubRepository, make_box):
    box = make_box()
    box.refresh()
    new_ids = hub.rotate_root(keys=2, threshold=2)
    box.refresh()
    root = Metadata[Root].from_bytes(hub.root_bytes()).signed
    assert box.trusted_root_version() == 2
    assert root.roles["root"].threshold == 2
    assert sorted(root.roles["root"].keyids) == sorted(new_ids)
    assert len(list((hub.directory / "keys").glob("root-*.pem"))) == 2


def test_static_server_answers_a_matching_if_none_match_with_304(
    hub: HubRepository, server: StaticServer
):
    import http.client

    conn = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=5)
    try:
        conn.request("GET", "/metadata/timestamp.json")
        first = conn.getresponse()
        etag, body = first.getheader("ETag"), first.read()
        conn.close()
        conn.request("GET", "/metadata/timestamp.json", headers={"If-None-Match": etag})
        again = conn.getresponse()
        again.read()
    finally:
        conn.close()
    assert body and again.status == 304


def test_bundle_is_verified_offline_and_the_box_then_continues_online(
    hub: HubRepository, tmp_path: Path
):
    hub.add_target(PKG, payload(1))
    hub.add_target("packages/other/1/model.onnx", payload(2))
    hub.set_desired("box-a", desired_for("resnet", "1", PKG))
    root_v1 = hub.root_bytes()
    hub.rotate_online_key()  # the bundle carries the root chain too
    bundle = tmp_path / "usb"
    summary = hub.export(bundle, ["box-a"])
    assert summary["targets"] == [desired_path("box-a"), PKG]

    box_dir = tmp_path / "box"
    offline = HubClient(
        box_dir / "metadata", "bundle:", box_dir / "cache",
        bootstrap=root_v1, fetcher=DirectoryFetcher(bundle),
    )
    offline.refresh(["box-a"])  # no server is running yet
    assert offline.desired("box-a") == desired_for("resnet", "1", PKG)
    assert offline.download(PKG, tmp_path / "out").read_bytes() == payload(1)
    assert offline.trusted_root_version() == 2

    later = desired_for("resnet", "1", PKG) | {"extra": {"version": "2"}}
    hub.set_desired("box-a", later)
    server = StaticServer(hub.layout.repo_dir)
    online = HubClient(box_dir / "metadata", server.url, box_dir / "cache")
    try:
        online.refresh(["box-a"])
        assert online.desired("box-a") == later
        online.download(PKG, tmp_path / "out2")
        assert not [p for p, *_ in server.log if p.startswith("/targets/packages/")]
        assert not [p for p, *_ in server.log if p.endswith(".root.json") and "/3." not in p]
    finally:
        online.close()
        server.stop()


def test_export_refuses_a_device_without_a_desired_state(hub: HubRepository, tmp_path: Path):
    with pytest.raises(NotFound, match="no desired state"):
        hub.export(tmp_path / "usb", ["box-zz"])


def test_unknown_device_has_no_desired_state(hub: HubRepository, make_box):
    assert make_box().desired("box-nobody") is None


def test_desired_state_naming_a_model_version_exports_its_packages(
    hub: HubRepository, tmp_path: Path
):
    hub.add_target("packages/resnet/3/model.onnx", payload(3))
    hub.add_target("packages/resnet/3/labels.txt", b"cat\ndog\n")
    hub.add_target("packages/resnet/4/model.onnx", payload(4))
    hub.set_desired("box-a", {"models": {"resnet": {"version": 3, "stage": "canary"}}})
    summary = hub.export(tmp_path / "usb", ["box-a"])
    assert summary["targets"] == [
        desired_path("box-a"), "packages/resnet/3/labels.txt", "packages/resnet/3/model.onnx"
    ]
    desired = json.loads((tmp_path / "usb" / "metadata" / "root.json").read_bytes())
    assert desired["signed"]["_type"] == "root"


def test_box_accepts_the_metadata_url_itself_as_its_base_url(
    hub: HubRepository, server: StaticServer, tmp_path: Path
):
    hub.add_target(PKG, payload(1))
    with HubClient(
        tmp_path / "m", f"{server.url}/metadata/", tmp_path / "c", bootstrap=hub.root_bytes()
    ) as box:
        assert box.download(PKG, tmp_path / "out").read_bytes() == payload(1)


def test_bundle_fetcher_refuses_paths_outside_its_folder(tmp_path: Path):
    from tuf.api.exceptions import DownloadError, DownloadHTTPError

    (tmp_path / "secret").write_text("key")
    fetcher = DirectoryFetcher(tmp_path / "usb")
    with pytest.raises(DownloadError, match="outside the bundle"):
        fetcher.download_bytes("bundle:/../secret", 100)
    with pytest.raises(DownloadHTTPError) as missing:
        fetcher.download_bytes("bundle:/metadata/2.root.json", 100)
    assert missing.value.status_code == 404
