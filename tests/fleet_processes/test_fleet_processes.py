"""One hub and three boxes as real processes on 127.0.0.1, each with its own port and data
directory; the TUF repository is carried by Debian's nginx (the hub's ``repository_url``
names it, so enrolment tells the boxes), the hub's API sits behind a slow link (every
answer held 0.2 s) so a SIGKILL can land between "stored" and "acknowledged".

The story, in order: group A is moved to a new version and converges while B is
untouched; the hub and its static host go away and every box keeps serving, degraded
but ready; they come back, and while the backlog drains a box and then the hub are
SIGKILLed mid-upload; in the end every report each box queued is on the hub exactly once
or still in that box's outbox, none was declared lost, and the hub witnessed every box's
audit chain unbroken."""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fleet_procs import BoxProc, Proc, hub_reports, wait_until
from helpers.nginx import Nginx
from helpers.packages import signed_package
from helpers.slow_link import SlowLink

from appliance.hub.enrolment import issue_token
from appliance.hub.fleet import add_group, list_devices, trust_publisher
from appliance.hub.publish import publish
from appliance.hub.rollout import assign
from appliance.hub.services import init_hub, open_hub
from appliance.hub.settings import load_hub_settings
from appliance.registry import Registry
from appliance.security.trust import publishers
from appliance.settings import load_settings
from appliance.sync.enroll import enroll

pytestmark = pytest.mark.timeout(420)

BOXES = (("a1", "A"), ("a2", "A"), ("b1", "B"))
V1, V2 = 2.0, 3.0  # scale v1 answers 2x, v2 answers 3x


def list_devices_of(hub_dir: Path) -> list[dict]:
    hub = open_hub(load_hub_settings(hub_dir))
    try:
        return list_devices(hub)
    finally:
        hub.close()


def newest_served_report(hub_dir: Path, device_id: str) -> dict:
    """The newest state report the hub stored from ``device_id``'s server (a CLI cycle
    has no request counts)."""
    conn = sqlite3.connect(f"file:{hub_dir / 'hub.db'}?mode=ro", uri=True)
    try:
        for (body,) in conn.execute("SELECT body FROM reports WHERE device_id = ? "
                                    "ORDER BY seq DESC", (device_id,)):
            report = json.loads(body)
            if report["kind"] == "report" and report["metrics"].get("requests"):
                return dict(report)
    finally:
        conn.close()
    raise AssertionError(f"no report from {device_id}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def box_config(data_dir: Path) -> Path:
    path = data_dir.parent / f"{data_dir.name}.toml"
    path.write_text(f'data_dir = "{data_dir}"\ndemo_models = false\n\n[sync]\n'
                    'interval_s = 1.0\njitter = 0.0\ntimeout_s = 3.0\nupload_batch = 1\n')
    return path


class Fleet:
    """The hub directory, its processes and the boxes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.hub_dir = root / "hub"
        self.hub_port = free_port()
        self.nginx = Nginx(self.hub_dir / "repo", root / "nginx")
        self.link = SlowLink(self.hub_port, delay_s=0.2)
        self.hub: Proc | None = None
        self.boxes: dict[str, BoxProc] = {}
        self.publisher = Ed25519PrivateKey.generate()

    def set_up_hub(self) -> None:
        self.hub_dir.mkdir(parents=True)
        (self.hub_dir / "hub.toml").write_text(
            f'repository_url = "{self.nginx.url}"\nbins = 4\n')
        settings = load_hub_settings(self.hub_dir)
        init_hub(settings)
        hub = open_hub(settings)
        try:
            for group in ("A", "B"):
                add_group(hub, group, actor="ops")
            trust_publisher(hub, pem(self.publisher), "ci", actor="ops")
            ci = self.root / "ci"
            ci.mkdir()
            for version, factor in (("1", V1), ("2", V2)):
                publish(hub, signed_package(ci, self.publisher, version=version,
                                            factor=factor), actor="ci")
            for group in ("A", "B"):
                assign(hub, group, "scale", "1", "production", actor="ops")
            self.tokens = {name: issue_token(hub, group, actor="ops").token
                           for name, group in BOXES}
        finally:
            hub.close()

    def start_hub(self) -> None:
        self.hub = Proc("hub", ["hub", "serve", "--dir", str(self.hub_dir), "--port",
                                str(self.hub_port), "--log-level", "warning"],
                        self.root / "hub.log").start()
        wait_until(lambda: socket.create_connection(("127.0.0.1", self.hub_port), 1).close()
                   or True, "the hub listening", 30, (self.hub,))

    def enrol_boxes(self) -> None:
        for name, _ in BOXES:
            data_dir = self.root / name
            data_dir.mkdir()
            registry = Registry(data_dir)
            publishers(registry.keys.dir).add("ci", pem(self.publisher), "the CI key")
            registry.close()
            settings = load_settings({"data_dir": data_dir}, environ={})
            enrolled = enroll(settings, self.link.url, self.tokens[name],
                              hardware={"profile": "x86_64-test"})
            assert enrolled.metadata_url.startswith(self.nginx.url)
            self.boxes[name] = BoxProc(name, data_dir, box_config(data_dir), free_port(),
                                       enrolled.device_id)

    def box_procs(self) -> tuple[Proc, ...]:
        return tuple(b.proc for b in self.boxes.values() if b.proc is not None)

    def serving(self, name: str, factor: float) -> bool:
        answer = self.boxes[name].infer(1.0)
        return answer is not None and abs(answer[1] - factor) < 1e-6

    def stop(self) -> None:
        for box in self.boxes.values():
            if box.proc is not None:
                box.proc.stop()
        if self.hub is not None:
            self.hub.kill()
        self.nginx.stop()
        self.link.close()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    made = Fleet(tmp_path)
    try:
        made.set_up_hub()
        made.nginx.start()
        made.start_hub()
        made.enrol_boxes()
        for box in made.boxes.values():
            box.start()
        yield made
    finally:
        made.stop()


def test_fleet_converges_keeps_serving_without_its_hub_and_loses_no_report(fleet: Fleet):
    boxes = fleet.boxes
    for name in boxes:
        wait_until(lambda n=name: fleet.serving(n, V1), f"{name} serving scale 1", 120,
                   fleet.box_procs())

    # 1. group A moves to version 2 (the operator's command, run while the hub serves)
    assigned = Proc("assign", ["hub", "assign", "A", "scale", "2", "--stage", "production",
                               "--dir", str(fleet.hub_dir), "--by", "ops"],
                    fleet.root / "assign.log").start()
    assert assigned.popen is not None and assigned.popen.wait(timeout=60) == 0, (
        (fleet.root / "assign.log").read_text())
    started = time.monotonic()
    for name in ("a1", "a2"):
        wait_until(lambda n=name: fleet.serving(n, V2), f"{name} serving scale 2", 60,
                   fleet.box_procs())
    converged_s = time.monotonic() - started
    b1_seq = boxes["b1"].outbox()[0]
    wait_until(lambda: boxes["b1"].outbox()[0] >= b1_seq + 3, "b1 syncing three more times",
               30, fleet.box_procs())
    assert fleet.serving("b1", V1)  # group B untouched
    assert boxes["b1"].infer()[0] == "1"  # type: ignore[index]

    # 2. the hub and its static host go away: every box keeps serving, degraded but ready
    assert fleet.hub is not None
    fleet.hub.kill()
    fleet.nginx.stop()
    queued = {name: box.outbox()[0] for name, box in boxes.items()}
    for name, box in boxes.items():
        wait_until(lambda b=box, n=name: len(b.outbox()[1]) >= 4
                   and b.outbox()[0] >= queued[n] + 4, f"{name} queueing reports", 60,
                   fleet.box_procs())
        assert fleet.serving(name, V1 if name == "b1" else V2)
        assert box.ready()
        health = box.health()
        assert health["dependencies"]["hub_sync"]["stale_since"], health["dependencies"]

    # 3. they come back; a box and then the hub are SIGKILLed while the backlog drains
    fleet.nginx.start()
    fleet.start_hub()
    a1, a2 = boxes["a1"], boxes["a2"]
    backlog = len(a1.outbox()[1])

    def a1_half_sent() -> bool:
        stored = hub_reports(fleet.hub_dir)[a1.device_id]["seqs"]
        return len(a1.outbox()[1]) >= 2 and stored[-1] >= a1.outbox()[1][0]

    wait_until(a1_half_sent, "a1 part-way through its backlog", 60, (fleet.hub,))
    assert a1.proc is not None
    a1.proc.kill()

    def a2_half_sent() -> bool:
        stored = hub_reports(fleet.hub_dir)[a2.device_id]["seqs"]
        return bool(a2.outbox()[1]) and stored[-1] >= a2.outbox()[1][0]

    wait_until(a2_half_sent, "a2 part-way through its backlog", 60, (fleet.hub,))
    fleet.hub.kill()
    time.sleep(1.5)
    fleet.start_hub()
    a1.start()
    wait_until(lambda: fleet.serving("a1", V2), "a1 serving scale 2 after its SIGKILL", 120,
               fleet.box_procs())

    # 4. settled: every report a box queued is stored once or still queued, none lost
    def drained() -> bool:
        hub = hub_reports(fleet.hub_dir)
        return all(not box.outbox()[1] and hub[box.device_id]["acked"] == box.outbox()[0]
                   for box in boxes.values())

    wait_until(drained, "every outbox drained", 120, fleet.box_procs())
    for box in boxes.values():
        assert box.proc is not None
        box.proc.stop()
    hub = hub_reports(fleet.hub_dir)
    for name, box in boxes.items():  # a stop may land between "stored" and "acknowledged"
        last, pending = box.outbox()
        assert set(hub[box.device_id]["seqs"]) | set(pending) == set(range(1, last + 1)), name
    for name, box in boxes.items():  # one more cycle from the CLI: resends are ignored
        cycle = Proc(f"{name}-sync", ["--config", str(box.config), "sync", "run", "--json"],
                     fleet.root / f"{name}-sync.log").start()
        assert cycle.popen is not None and cycle.popen.wait(timeout=120) == 0, (
            (fleet.root / f"{name}-sync.log").read_text())
    hub = hub_reports(fleet.hub_dir)
    for name, box in boxes.items():
        last, pending = box.outbox()
        stored = hub[box.device_id]
        assert pending == [], name
        assert stored["lost"] == [], name
        assert stored["seqs"] == list(range(1, last + 1)), name
        assert stored["acked"] == last, name
    for device in list_devices_of(fleet.hub_dir):  # the hub witnessed each audit chain
        assert device["audit"]["status"] == "ok", device["audit"]
        assert device["audit"]["records"] > 0
    counts = newest_served_report(fleet.hub_dir, boxes["a2"].device_id)["metrics"]["requests"]
    assert counts["scale"]["2"]["success"] > 0  # a2 never restarted: it counted them all
    print(f"\nA converged on scale 2 in {converged_s:.1f} s (sync interval 1 s); a1 had "
          f"{backlog} reports queued when the hub came back; reports stored: "
          f"{ {n: len(hub[b.device_id]['seqs']) for n, b in boxes.items()} }")
