"""The hub's TUF repository carried by Debian's nginx instead of the hub process: what a
CDN or an object store does. Boxes verify it all the same; an idle poll is a 304 well
under 1 KB on the wire (headers included, from nginx's own ``$bytes_sent``); a target
tampered with on the static host is refused."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.nginx import Nginx
from tuf.api.metadata import TargetFile

from appliance.hub.tuf_repo import HubRepository
from appliance.sync.errors import SyncRefused
from appliance.sync.tuf_client import HubClient

DEVICE = "box-a"


def payload(seed: int, size: int = 64 * 1024) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture
def nginx(hub: HubRepository, tmp_path: Path) -> Iterator[Nginx]:
    server = Nginx(hub.layout.repo_dir, tmp_path / "nginx").start()
    yield server
    server.stop()


@pytest.fixture
def box(hub: HubRepository, nginx: Nginx, tmp_path: Path) -> Iterator[HubClient]:
    clients: list[HubClient] = []

    def make() -> HubClient:  # the same folders each time: the box's next cycle
        clients.append(HubClient(tmp_path / "box" / "metadata", nginx.url,
                                 tmp_path / "box" / "cache", bootstrap=hub.root_bytes()))
        return clients[-1]
    yield make  # type: ignore[misc]
    for client in clients:
        client.close()


def test_box_syncs_from_nginx_and_an_idle_poll_is_a_304_under_1_kb(
    hub: HubRepository, nginx: Nginx, box, tmp_path: Path
):
    paths = [f"packages/m{i}/1/model.onnx" for i in range(5)]
    for i, path in enumerate(paths):
        hub.add_target(path, payload(i))
    hub.set_desired(DEVICE, {"m0": {"version": "1", "target": paths[0]}})
    first = box()
    first.refresh([DEVICE])
    for path in paths:
        assert first.download(path, tmp_path / "out").read_bytes() == payload(
            paths.index(path))
    first_sync = nginx.take_log()

    box().refresh([DEVICE])
    idle = nginx.take_log()

    hub.add_target(paths[2], payload(99))
    update_client = box()
    update_client.refresh([DEVICE])
    for path in paths:
        update_client.download(path, tmp_path / "out")
    update = nginx.take_log()

    wire = {name: sum(h.bytes_sent for h in hits)
            for name, hits in (("first", first_sync), ("idle", idle), ("update", update))}
    print(f"\nnginx bytes on the wire: first sync {wire['first']}, idle poll {wire['idle']} "
          f"{[(h.path, h.status) for h in idle]}, one-of-five update {wire['update']}")
    assert ("/metadata/timestamp.json", 304) in {(h.path, h.status) for h in idle}
    assert all(h.status in (304, 404) for h in idle)  # the 404 is the next-root probe
    assert wire["idle"] < 1024
    fetched = [h.path for h in update if h.path.startswith("/targets/")]
    assert len(fetched) == 1 and fetched[0].startswith("/targets/packages/m2/")
    assert wire["update"] < len(payload(0)) + 8 * 1024
    assert (tmp_path / "out" / "model.onnx").read_bytes() == payload(4)


def test_target_tampered_with_on_nginx_is_refused_and_the_old_one_still_serves(
    hub: HubRepository, nginx: Nginx, box, tmp_path: Path
):
    hub.add_target("packages/m/1/model.onnx", payload(1))
    client = box()
    client.refresh([DEVICE])
    client.download("packages/m/1/model.onnx", tmp_path / "v1")
    info = hub.add_target("packages/m/2/model.onnx", payload(2))
    stored = hub.layout.target_file(TargetFile(info["length"], {"sha256": info["sha256"]},
                                               "packages/m/2/model.onnx"))
    data = bytearray(stored.read_bytes())
    data[100] ^= 0xFF
    stored.write_bytes(bytes(data))

    again = box()
    again.refresh([DEVICE])
    with pytest.raises(SyncRefused) as caught:
        again.download("packages/m/2/model.onnx", tmp_path / "v2")

    assert caught.value.kind == "bad-hash"
    assert again.download("packages/m/1/model.onnx", tmp_path / "v1").read_bytes() == payload(1)
    assert not (tmp_path / "v2").exists() or not any((tmp_path / "v2").iterdir())
