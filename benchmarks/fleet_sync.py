"""Fleet sync costs, measured in one run: the time of a box's sync cycle (first install,
idle, one new version) and the hub's CPU per 1,000 polls, its own ``/repo`` against
Debian's nginx serving the same files, and per 1,000 signed reports.

    .venv/bin/python benchmarks/fleet_sync.py [--polls 1000] [--cycles 10]

A hub process (``appliance hub serve``) and nginx run on 127.0.0.1; the box is this
process (``box_of_cli``: real registry, ONNX Runtime load check, outbox). Polls are what
an idle box sends every cycle: ``GET timestamp.json`` with the ``If-None-Match`` of its
kept copy (304), one keep-alive connection; "plain" is the same GET without it. CPU is
the server process's user+system time (psutil) over the run, nginx's master and worker
together. Numbers vary with the machine; the ratios between rows of one run do not much.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
import psutil  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from helpers.nginx import Nginx  # noqa: E402
from helpers.packages import signed_package  # noqa: E402

from appliance.hub.enrolment import issue_token  # noqa: E402
from appliance.hub.fleet import add_group, trust_publisher  # noqa: E402
from appliance.hub.publish import publish  # noqa: E402
from appliance.hub.rollout import assign  # noqa: E402
from appliance.hub.services import init_hub, open_hub  # noqa: E402
from appliance.hub.settings import load_hub_settings  # noqa: E402
from appliance.registry import Registry  # noqa: E402
from appliance.security.trust import publishers  # noqa: E402
from appliance.settings import load_settings  # noqa: E402
from appliance.sync.box import box_of_cli  # noqa: E402
from appliance.sync.cycle import open_outbox, run_cycle  # noqa: E402
from appliance.sync.enroll import enroll  # noqa: E402
from appliance.sync.hub_api import post_reports  # noqa: E402
from appliance.sync.identity import load_identity  # noqa: E402
from appliance.sync.outbox import canonical  # noqa: E402

os.environ.pop("APPLIANCE_DISABLE_PLUGIN_AUTOLOAD", None)  # tests/helpers sets it: real backends


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_s(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        times = proc.cpu_times()
        total += times.user + times.system
    return total


def polls(url: str, procs: list[psutil.Process], n: int, conditional: bool
          ) -> tuple[float, float, int]:
    """(server CPU ms per 1,000, wall s, response bytes incl. headers per poll)."""
    with httpx.Client(timeout=10) as client:
        first = client.get(url)
        headers = {"If-None-Match": first.headers["ETag"]} if conditional else {}
        for _ in range(50):
            client.get(url, headers=headers)  # warm
        before, started, size = cpu_s(procs), time.perf_counter(), 0
        for _ in range(n):
            answer = client.get(url, headers=headers)
            size = len(answer.content) + sum(len(k) + len(v) + 4
                                             for k, v in answer.headers.items()) + 17
        wall = time.perf_counter() - started
        used = cpu_s(procs) - before
    return used * 1000 * 1000 / n, wall, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--polls", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    hub_dir, port = work / "hub", free_port()
    publisher = Ed25519PrivateKey.generate()
    pem = publisher.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    settings = load_hub_settings(hub_dir, {"bins": 16})
    init_hub(settings)
    hub = open_hub(settings)
    add_group(hub, "lab", actor="bench")
    trust_publisher(hub, pem, "ci", actor="bench")
    (work / "ci").mkdir()
    for version, factor in (("1", 2.0), ("2", 3.0)):
        publish(hub, signed_package(work / "ci", publisher, version=version, factor=factor),
                actor="ci")
    assign(hub, "lab", "scale", "1", "production", actor="bench")
    token = issue_token(hub, "lab", actor="bench").token

    env = {k: v for k, v in os.environ.items() if k != "APPLIANCE_DISABLE_PLUGIN_AUTOLOAD"}
    log = (work / "hub.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "hub", "serve", "--dir",
                             str(hub_dir), "--port", str(port), "--log-level", "warning"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    nginx = Nginx(hub_dir / "repo", work / "nginx").start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/v1/health/live", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, (work / "hub.log").read_text()
                time.sleep(0.1)

        data_dir = work / "box"
        registry = Registry(data_dir)
        publishers(registry.keys.dir).add("ci", pem, "bench")
        box_settings = load_settings({"data_dir": data_dir, "scheduler": False}, environ={})
        enrolled = enroll(box_settings, url, token, hardware={"profile": "bench"})
        box = box_of_cli(box_settings, registry)

        def timed() -> tuple[float, str]:
            started = time.perf_counter()
            result = run_cycle(box)
            assert result.status == "ok" and not result.applied.failed, result.to_dict()
            return time.perf_counter() - started, result.status

        first, _ = timed()
        assert registry.version("scale", "1").stage == "production"
        idle = [timed()[0] for _ in range(args.cycles)]
        assign(hub, "lab", "scale", "2", "production", actor="bench")
        update, _ = timed()
        assert registry.version("scale", "2").stage == "production"
        print(f"sync cycle (box in this process, hub on 127.0.0.1): first install "
              f"{first * 1000:.0f} ms, idle median {statistics.median(idle) * 1000:.0f} ms "
              f"(min {min(idle) * 1000:.0f}), one new version {update * 1000:.0f} ms")

        hub_proc = [psutil.Process(proc.pid)]
        nginx_master = psutil.Process(nginx.proc.pid)  # type: ignore[union-attr]
        nginx_procs = [nginx_master, *nginx_master.children()]
        ts = "/metadata/timestamp.json"
        rows = [("hub /repo, If-None-Match (304)", url + "/repo" + ts, hub_proc, True),
                ("nginx, If-None-Match (304)", nginx.url + ts, nginx_procs, True),
                ("hub /repo, plain GET (200)", url + "/repo" + ts, hub_proc, False),
                ("nginx, plain GET (200)", nginx.url + ts, nginx_procs, False)]
        results = {}
        print(f"\n{args.polls} polls of timestamp.json, one keep-alive connection:")
        for name, target, procs, conditional in rows:
            ms, wall, size = polls(target, procs, args.polls, conditional)
            results[name] = ms
            print(f"  {name:34s} server CPU {ms:7.1f} ms per 1,000   "
                  f"{args.polls / wall:6.0f} polls/s   ~{size} B per answer")
        base = results["nginx, If-None-Match (304)"]
        hub_ms = results["hub /repo, If-None-Match (304)"]
        print(f"  hub/nginx CPU, conditional: {hub_ms / base:.1f}x")

        identity = load_identity(data_dir, registry.box_key_provider, create=False)
        body = {"device_id": enrolled.device_id, "kind": "report", "installed": {},
                "health": {"status": "ok"}, "audit_records": [], "metrics": {}}
        with open_outbox(box) as outbox:  # continue the box's own sequence (no hole)
            seq0 = outbox.status().last_seq + 1
        before, started = cpu_s(hub_proc), time.perf_counter()
        for i in range(args.polls):
            post_reports(url, enrolled.device_id, identity,
                         canonical({**body, "seq": seq0 + i}), 10)
        wall = time.perf_counter() - started
        used = cpu_s(hub_proc) - before
        print(f"\n{args.polls} signed reports (POST /v1/reports, SQLite): hub CPU "
              f"{used * 1000 * 1000 / args.polls:.0f} ms per 1,000, "
              f"{args.polls / wall:.0f} reports/s")
        registry.close()
    finally:
        nginx.stop()
        proc.terminate()
        proc.wait(timeout=20)
        hub.close()


if __name__ == "__main__":
    main()
