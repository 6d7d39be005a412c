"""`appliance serve` as an operator runs it: a real process on 127.0.0.1, demo models."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import tritonclient.http as triton
from sklearn.datasets import load_breast_cancer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_registers_demo_models_and_answers_tritonclient(tmp_path):
    port = free_port()
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(tmp_path / "var")}
    env.pop("APPLIANCE_DISABLE_PLUGIN_AUTOLOAD", None)
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "serve", "--port",
                             str(port)], env=env, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server not ready in 60 s"
            time.sleep(0.1)
        assert (tmp_path / "var" / "registry.db").exists()
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        assert client.is_model_ready("breast_cancer") and client.is_model_ready("magika")
        X, y = load_breast_cancer(return_X_y=True)
        inp = triton.InferInput("input", [8, 30], "FP32")
        inp.set_data_from_numpy(X[:8].astype(np.float32), binary_data=False)
        result = client.infer("breast_cancer", [inp], outputs=[
            triton.InferRequestedOutput("label", binary_data=False)])
        assert (result.as_numpy("label") == y[:8]).mean() >= 0.75
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()
    # uvicorn shuts down gracefully, then re-raises SIGTERM (systemd counts that as clean)
    assert proc.returncode in (0, -signal.SIGTERM)
    assert "registered demo models: breast_cancer, magika" in (tmp_path / "serve.log").read_text()
