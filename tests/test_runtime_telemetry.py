"""The runtimes' telemetry is off: serving with a fresh $HOME leaves no analytics ids."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
from test_serve_process import free_port

ORT_IDS = ".cache/Microsoft/DeveloperTools/.onnxruntime"
OPENVINO_IDS = "intel"


def test_serving_with_a_fresh_home_writes_no_runtime_telemetry_ids(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    env = {**os.environ, "HOME": str(home), "APPLIANCE_DATA_DIR": str(tmp_path / "var")}
    env.pop("APPLIANCE_DISABLE_PLUGIN_AUTOLOAD", None)  # every backend, OpenVINO included
    env.pop("ORT_DISABLE_TELEMETRY", None)  # the appliance must set it itself
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "serve", "--port",
                             str(port)], env=env, stderr=log)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{base}/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server not ready in 60 s"
            time.sleep(0.1)
        r = httpx.post(f"{base}/v2/models/breast_cancer/infer", json={"inputs": [
            {"name": "input", "datatype": "FP32", "shape": [1, 30], "data": [0.0] * 30}]})
        assert r.status_code == 200
        backends = {httpx.get(f"{base}/v2/models/{m}").json()["parameters"]["backend"]
                    for m in ("breast_cancer", "magika")}
        assert "onnxruntime" in backends
        # OpenVINO was imported too: start-up asks it for its devices
        facts = httpx.get(f"{base}/v1/hardware").json()
        assert "openvino_devices" in str(facts), facts
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert not any(p.startswith((ORT_IDS, OPENVINO_IDS)) for p in written), written
