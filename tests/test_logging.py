"""Logging for operators: level, JSON lines, the access log, X-Request-Id echoed."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from helpers import make_services

from appliance.api import create_app
from appliance.api.access_log import AccessLog
from appliance.logging_setup import JsonFormatter, setup_logging
from appliance.services import seed_demo_models
from appliance.settings import load_settings
from appliance.testing.server import ServerThread

HEX32 = re.compile(r"^[0-9a-f]{32}$")
ROW = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 30],
                   "data": np.zeros(30).tolist()}]}


# -- settings ------------------------------------------------------------------------
def test_logging_section_layers_file_env_and_flags(tmp_path):
    cfg = tmp_path / "a.toml"
    cfg.write_text('[logging]\nlevel = "debug"\nformat = "json"\naccess_log = true\n')
    s = load_settings(config=cfg, environ={})
    assert (s.logging.level, s.logging.format, s.logging.access_log) == ("debug", "json", True)
    s = load_settings(config=cfg, environ={"APPLIANCE_LOG_LEVEL": "WARNING",
                                           "APPLIANCE_ACCESS_LOG": "false"})
    assert (s.logging.level, s.logging.format, s.logging.access_log) == ("warning", "json",
                                                                         False)
    s = load_settings({"logging": {"level": "error"}}, config=cfg, environ={})
    assert s.logging.level == s.log_level == "error"


def test_older_top_level_log_level_still_sets_the_level(tmp_path):
    cfg = tmp_path / "a.toml"
    cfg.write_text('log_level = "warning"\n')
    assert load_settings(config=cfg, environ={}).logging.level == "warning"
    assert load_settings(environ={}).logging.level == "info"


def test_json_format_has_time_level_logger_message_extra_and_exception():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("appliance.test.json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("loaded %s", "m", extra={"model": "m", "ms": 1.5})
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["level"] == "warning" and first["logger"] == "appliance.test.json"
    assert first["message"] == "loaded m" and first["model"] == "m" and first["ms"] == 1.5
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert "ValueError: boom" in second["exception"]


def test_setup_logging_applies_the_level_and_lets_access_lines_through():
    root, access = logging.getLogger(), logging.getLogger("appliance.access")
    saved = root.handlers[:], root.level, access.level
    stream = io.StringIO()
    try:
        setup_logging("warning", stream=stream, access_log=True)
        logging.getLogger("appliance.x").info("hidden")
        logging.getLogger("appliance.x").warning("shown")
        access.info("GET / 200")
    finally:
        root.handlers[:], access.level = saved[0], saved[2]
        root.setLevel(saved[1])
    text = stream.getvalue()
    assert "shown" in text and "GET / 200" in text and "hidden" not in text


# -- X-Request-Id ----------------------------------------------------------------------
def test_request_id_is_echoed_on_infer_and_on_an_admin_route(client):
    r = client.post("/v2/models/breast_cancer/infer", json=ROW,
                    headers={"X-Request-Id": "abc-123"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "abc-123"
    r = client.post("/v2/models/nope/infer", json=ROW, headers={"X-Request-Id": "e-1"})
    assert r.status_code == 404 and r.headers["x-request-id"] == "e-1"
    r = client.get("/v1/hardware", headers={"X-Request-Id": "adm-9"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "adm-9"
    r = client.get("/v2/no/such/route", headers={"X-Request-Id": "n-4"})
    assert r.status_code == 404 and r.headers["x-request-id"] == "n-4"


def test_without_request_id_and_access_log_none_is_generated(client):
    assert "x-request-id" not in client.post("/v2/models/breast_cancer/infer",
                                             json=ROW).headers
    assert "x-request-id" not in client.get("/v2/health/ready").headers


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "tab\there", "é"])
def test_invalid_request_id_is_replaced_by_a_fresh_one(client, bad):
    for r in (client.post("/v2/models/breast_cancer/infer", json=ROW,
                          headers={"X-Request-Id": bad.encode("utf-8")}),
              client.get("/v2/health/live", headers={"X-Request-Id": bad.encode("utf-8")})):
        assert HEX32.match(r.headers["x-request-id"]), r.headers


def test_access_log_logs_each_request_with_its_id(tmp_path, ort_plugin_manager, caplog):
    services = make_services(tmp_path / "var", ort_plugin_manager)
    seed_demo_models(services)
    caplog.set_level(logging.INFO, logger="appliance.access")
    with ServerThread(AccessLog(create_app(services, load_in_background=False))) as url, \
            httpx.Client(base_url=url) as http:
        given = http.post("/v2/models/breast_cancer/infer", json=ROW,
                          headers={"X-Request-Id": "given-1"})
        made = http.get("/v2/health/ready")
    assert given.headers["x-request-id"] == "given-1"
    assert HEX32.match(made.headers["x-request-id"])  # the access log gives every request one
    lines = {r.request_id: r for r in caplog.records if r.name == "appliance.access"}
    infer, ready = lines["given-1"], lines[made.headers["x-request-id"]]
    assert (infer.method, infer.path, infer.status) == ("POST",
                                                        "/v2/models/breast_cancer/infer", 200)
    assert infer.bytes == len(given.content) and infer.duration_ms > 0
    assert (ready.method, ready.status) == ("GET", 200)
    assert "POST /v2/models/breast_cancer/infer 200" in infer.getMessage()


# -- appliance serve ---------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_and_log(tmp_path: Path, *flags: str) -> tuple[str, list[httpx.Response]]:
    """Run ``appliance serve`` with ``flags``, make three requests, stop; (stderr, answers)."""
    port = free_port()
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(tmp_path / "var")}
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "serve", "--port",
                                 str(port), "--no-demo", *flags], env=env, stderr=log)
        url = f"http://127.0.0.1:{port}"
        answers = []
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, log_path.read_text()
                try:
                    if httpx.get(url + "/v2/health/live").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "server not up in 60 s"
                time.sleep(0.1)
            answers.append(httpx.get(url + "/v2/health/ready", headers={"X-Request-Id": "r1"}))
            answers.append(httpx.post(url + "/v2/models/nope/infer", json=ROW,
                                      headers={"X-Request-Id": "r2"}))
            answers.append(httpx.get(url + "/v1/hardware"))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
    return log_path.read_text(), answers


def test_serve_json_format_writes_one_object_per_line_with_access_lines(tmp_path):
    text, answers = serve_and_log(tmp_path, "--log-format", "json", "--access-log")
    records = [json.loads(line) for line in text.splitlines()]  # every line is JSON
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    assert any(r["logger"] == "appliance" and r["message"].startswith("serving on")
               for r in records)
    access = {r["request_id"]: r for r in records if r["logger"] == "appliance.access"}
    assert access["r1"]["path"] == "/v2/health/ready"
    assert (access["r2"]["method"], access["r2"]["status"]) == ("POST", 404)
    generated = answers[2].headers["x-request-id"]
    assert HEX32.match(generated) and access[generated]["path"] == "/v1/hardware"


def test_serve_at_warning_without_access_log_writes_neither(tmp_path):
    text, answers = serve_and_log(tmp_path, "--log-level", "warning")
    assert "serving on" not in text and "/v2/health/ready" not in text
    assert answers[0].headers["x-request-id"] == "r1"
    assert "x-request-id" not in answers[2].headers
