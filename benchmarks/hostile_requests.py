"""Event-loop stall and memory cost of hostile inference requests (issue 9, high findings).

Starts ``appliance serve`` on a free loopback port with a fresh data dir, then for each
case sends the request once while a second thread polls ``GET /v2/health/live`` every
10 ms, and reports: the answer's status and time, the worst health-check latency during
it (the event-loop stall), and the server's peak RSS growth (VmHWM) over the case.

    .venv/bin/python benchmarks/hostile_requests.py [--json]

Run by hand; it asserts nothing. Cases are bounded (one request each) and loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

MODEL = "breast_cancer"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _reset_hwm(pid: int) -> None:
    # writing 5 to clear_refs resets the peak RSS counter (Linux >= 4.0)
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def _cases() -> list[tuple[str, bytes, dict[str, str]]]:
    names = {"outputs": [{"name": f"o{i}"} for i in range(50_000)],
             "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 30],
                         "data": [0.0] * 30}]}
    dims = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2**62] * 100_000,
                        "data": [1]}]}
    rank = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1] * 65, "data": [1]}]}
    nest = b'{"inputs":[{"name":"input","datatype":"FP32","shape":[1],"data":' + \
        b"[" * 1000 + b"1" + b"]" * 1000 + b"}]}"
    header = json.dumps({"inputs": [{"name": "input", "datatype": "BYTES",
                                     "shape": [268435456],
                                     "parameters": {"binary_data_size": 6}}]}).encode()
    binary = header + b"\x02\x00\x00\x00ab"
    json_h = {"Content-Type": "application/json"}
    return [
        ("50k output names (966 KiB)", json.dumps(names).encode(), json_h),
        ("100k dims of 2**62 (2 MiB)", json.dumps(dims).encode(), json_h),
        ("rank 65 shape", json.dumps(rank).encode(), json_h),
        ("1000-deep JSON nesting", nest, json_h),
        ("BYTES shape [2**28] in 119 bytes", binary,
         {"Content-Type": "application/octet-stream",
          "Inference-Header-Content-Length": str(len(header))}),
    ]


def _run_case(base: str, pid: int, body: bytes, headers: dict[str, str]) -> dict[str, object]:
    worst = [0.0]
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(base_url=base, timeout=60) as c:
            while not stop.is_set():
                t = time.perf_counter()
                c.get("/v2/health/live")
                worst[0] = max(worst[0], time.perf_counter() - t)
                time.sleep(0.01)

    _reset_hwm(pid)
    before = _hwm_kib(pid)
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    time.sleep(0.05)
    t0 = time.perf_counter()
    with httpx.Client(base_url=base, timeout=120) as c:
        r = c.post(f"/v2/models/{MODEL}/infer", content=body, headers=headers)
    elapsed = time.perf_counter() - t0
    time.sleep(0.05)
    stop.set()
    poller.join()
    return {"status": r.status_code, "answer_s": round(elapsed, 3),
            "worst_health_ms": round(worst[0] * 1000, 1),
            "peak_rss_growth_mib": round((_hwm_kib(pid) - before) / 1024, 1),
            "error": r.json().get("error", "")[:90] if r.headers.get(
                "content-type", "").startswith("application/json") else ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "APPLIANCE_DATA_DIR": tmp, "APPLIANCE_LOG_LEVEL": "warning"}
        proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "serve", "--port",
                                 str(port)], env=env, stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{base}/v2/models/{MODEL}/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            rows = []
            for label, body, headers in _cases():
                row = {"case": label, **_run_case(base, proc.pid, body, headers)}
                ok = httpx.post(f"{base}/v2/models/{MODEL}/infer", json={"inputs": [
                    {"name": "input", "datatype": "FP32", "shape": [1, 30],
                     "data": [0.0] * 30}]}).status_code
                row["normal_after"] = ok
                rows.append(row)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'case':36} {'status':>6} {'answer s':>9} {'worst health ms':>16} "
          f"{'peak RSS +MiB':>14} {'next ok':>8}")
    for r in rows:
        print(f"{r['case']:36} {r['status']:>6} {r['answer_s']:>9} {r['worst_health_ms']:>16} "
              f"{r['peak_rss_growth_mib']:>14} {r['normal_after']:>8}")
        if r["error"]:
            print(f"    {r['error']}")


if __name__ == "__main__":
    main()
