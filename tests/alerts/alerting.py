"""Fixtures for the alerting tests: a clock the test moves, an HTTP receiver (webhook or
Alertmanager API) and a UDP syslog listener on 127.0.0.1, engines over a real data dir."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
import pytest
from helpers.clock import Clock

from appliance.alerts.engine import AlertEngine
from appliance.alerts.settings import AlertSettings
from appliance.audit.log import AuditLog


class Receiver:
    """A real HTTP server recording each POST (path and JSON body)."""

    def __init__(self, port: int = 0) -> None:
        self.posts: list[tuple[str, Any]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                received.append((self.path, json.loads(self.rfile.read(length))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def bodies(self, path: str | None = None) -> list[Any]:
        return [body for p, body in self.posts if path is None or p == path]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def udp_listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def alert_settings(**fields: Any) -> AlertSettings:
    """AlertSettings from plain TOML-like values (validated as the config file is)."""
    fields.setdefault("delivery", {"allow": ["127.0.0.1"], "backoff_s": 10,
                                   "max_backoff_s": 80, "timeout_s": 2})
    return msgspec.convert(fields, AlertSettings)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture
def make_engine(data_dir: Path, clock: Clock) -> Iterator[Callable[..., AlertEngine]]:
    """``make_engine(**settings)``: an engine on the test's data dir, clock and audit
    log; a second call is the same box after a restart."""
    made: list[AlertEngine] = []
    logs: list[AuditLog] = []

    def make(**fields: Any) -> AlertEngine:
        for engine in made:
            engine.close()
        log = AuditLog(data_dir)
        logs.append(log)
        engine = AlertEngine(data_dir, alert_settings(**fields), clock=clock, audit=log)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.store.conn.close()
    for log in logs:
        log.close(checkpoint=False)
