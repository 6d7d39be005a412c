"""Hostile clients against a real server, before and after the HTTP limits (issue 9, items
5 and 12): health latency with N idle connections under a 1,024-descriptor limit (the
systemd default), how long trickling clients are held, and the server's memory when one
64 MiB header line is sent.

    .venv/bin/python benchmarks/hostile_http_bench.py            # both protocols
    .venv/bin/python benchmarks/hostile_http_bench.py --only limited --idle 1000

"plain" is uvicorn's own httptools protocol (what ``serve`` used before); "limited" is
:class:`appliance.http_protocol.LimitedHttpProtocol` with the default ``[http]`` limits.
The server runs in a child process with ``RLIMIT_NOFILE`` = ``--nofile``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def run_server(kind: str, port: int, data_dir: str) -> None:
    """The child: the appliance app over uvicorn with the chosen protocol."""
    import uvicorn

    from appliance.api import create_app
    from appliance.http_protocol import LimitedHttpProtocol
    from appliance.listen import bind_socket
    from appliance.services import build_services, seed_demo_models
    from appliance.settings import load_settings

    settings = load_settings({"data_dir": data_dir, "port": port, "scheduler": False,
                              "signing_policy": {}}, environ={})
    services = build_services(settings)
    seed_demo_models(services)
    http = ("httptools" if kind == "plain"
            else LimitedHttpProtocol.with_limits(settings.http))
    sock = bind_socket("127.0.0.1", port)
    config = uvicorn.Config(create_app(services), loop="uvloop", http=http,
                            access_log=False, log_level="warning", lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def health(port: int, timeout: float = 2.0) -> float | None:
    """Seconds for GET /v2/health/live on a fresh connection, or None if it failed."""
    start = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = s.recv(4096)
    except OSError:
        return None
    return time.perf_counter() - start if data.startswith(b"HTTP/1.1 200") else None


def health_series(port: int, n: int = 10) -> dict[str, object]:
    times = [health(port) for _ in range(n)]
    ok = [t for t in times if t is not None]
    return {"ok": f"{len(ok)}/{n}",
            "median_ms": round(statistics.median(ok) * 1000, 2) if ok else None,
            "max_ms": round(max(ok) * 1000, 2) if ok else None}


def rss_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def scenario(kind: str, nofile: int, idle_n: int, trickle_n: int) -> dict[str, object]:
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix=f"hostile-{kind}-")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    env = {**os.environ}
    env.pop("APPLIANCE_DISABLE_PLUGIN_AUTOLOAD", None)
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--port", str(port),
                             "--data-dir", data_dir], preexec_fn=limit, env=env)
    out: dict[str, object] = {"protocol": kind, "nofile": nofile}
    try:
        deadline = time.monotonic() + 90
        while health(port) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.2)
        out["health_idle_0"] = health_series(port)
        out["rss_start_kib"] = rss_kib(proc.pid)

        # N idle connections that never send a byte
        idle, failed = [], 0
        for _ in range(idle_n):
            try:
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            except OSError:
                failed += 1
        time.sleep(1.5)
        out[f"health_idle_{idle_n}"] = health_series(port)
        states = {"open": 0, "answered": 0, "closed": 0}
        for s in idle:
            s.setblocking(False)
            try:
                states["answered" if s.recv(1) else "closed"] += 1
            except BlockingIOError:
                states["open"] += 1
            except OSError:
                states["closed"] += 1
        out["idle_connect_failures"] = failed
        out["idle_after_1.5s"] = states
        for s in idle:
            s.close()
        time.sleep(1.5)

        # trickling clients: a header byte a second
        tricklers = [socket.create_connection(("127.0.0.1", port), timeout=2)
                     for _ in range(trickle_n)]
        for s in tricklers:
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        start, open_at = time.monotonic(), trickle_n
        while time.monotonic() - start < 15 and open_at:
            open_at = 0
            for s in tricklers:
                try:
                    s.send(b"a")
                    open_at += 1
                except OSError:
                    pass
            time.sleep(1.0)
        out["tricklers_open_after_15s"] = open_at
        out["trickle_seconds_until_all_closed"] = (round(time.monotonic() - start, 1)
                                                   if not open_at else None)
        for s in tricklers:
            s.close()

        # one 64 MiB header line, health measured meanwhile
        before = rss_kib(proc.pid)
        latencies: list[float | None] = []
        stop = threading.Event()

        def probe() -> None:
            while not stop.is_set():
                latencies.append(health(port, timeout=5))
                time.sleep(0.05)

        prober = threading.Thread(target=probe)
        prober.start()
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            try:
                s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: ")
                chunk = b"a" * (1024 * 1024)
                for _ in range(64):
                    s.sendall(chunk)
                s.sendall(b"\r\n\r\n")
                answer = s.recv(200)
            except OSError as exc:
                answer = repr(exc).encode()
        out["big_header_answer"] = answer.split(b"\r\n", 1)[0].decode(errors="replace")
        out["big_header_seconds"] = round(time.monotonic() - t0, 2)
        time.sleep(0.5)
        stop.set()
        prober.join()
        after = rss_kib(proc.pid)
        out["big_header_rss_growth_kib"] = after["VmHWM"] - before["VmHWM"]
        ok = [t for t in latencies if t is not None]
        out["health_during_big_header"] = {
            "ok": f"{len(ok)}/{len(latencies)}",
            "max_ms": round(max(ok) * 1000, 1) if ok else None}
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", choices=["plain", "limited"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--data-dir")
    parser.add_argument("--only", choices=["plain", "limited"])
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--trickle", type=int, default=200)
    parser.add_argument("--nofile", type=int, default=1024)
    args = parser.parse_args()
    if args.serve:
        run_server(args.serve, args.port, args.data_dir)
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.idle + args.trickle + 256),
                                                hard))
    kinds = [args.only] if args.only else ["plain", "limited"]
    for kind in kinds:
        print(json.dumps(scenario(kind, args.nofile, args.idle, args.trickle)), flush=True)


if __name__ == "__main__":
    main()
