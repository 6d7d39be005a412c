"""Seconds from `appliance serve` to ready, and idle RSS with the demo models loaded.

    .venv/bin/python benchmarks/startup_rss.py [--runs 5]

Each run starts a fresh process on a fresh data directory (first start: registers the demo
models) and once more on the same directory (a restart), polls /v2/health/ready, then
reads the RSS of the whole process tree after 2 s idle.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import psutil


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_start(data_dir: str) -> tuple[float, float]:
    port = free_port()
    env = {**os.environ, "APPLIANCE_DATA_DIR": data_dir, "APPLIANCE_LOG_LEVEL": "warning"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "serve", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready") as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None:
                raise RuntimeError("appliance exited during start-up")
            time.sleep(0.02)
        ready = time.perf_counter() - t0
        time.sleep(2)
        p = psutil.Process(proc.pid)
        rss = sum(q.memory_info().rss for q in [p, *p.children(recursive=True)]) / 2**20
        return ready, rss
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    first, again, rss = [], [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as d:
            t, r = one_start(d)
            first.append(t)
            t2, r2 = one_start(d)
            again.append(t2)
            rss += [r, r2]
    print(f"first start to ready: median {statistics.median(first):.2f} s "
          f"(min {min(first):.2f}, max {max(first):.2f})")
    print(f"restart to ready:     median {statistics.median(again):.2f} s "
          f"(min {min(again):.2f}, max {max(again):.2f})")
    print(f"idle RSS, demo models loaded: median {statistics.median(rss):.0f} MiB "
          f"(max {max(rss):.0f})")


if __name__ == "__main__":
    main()
