"""Real processes for the fleet test: ``appliance hub serve`` and ``appliance serve`` boxes
on 127.0.0.1, each with its own port and data directory, started and killed by their own
process ids; and what the hub's and a box's SQLite files say about reports."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

CLI = [sys.executable, "-m", "appliance.cli"]


def process_env(**extra: str) -> dict[str, str]:
    """The environment of a served process: plugins autoload (the backends are real)."""
    env = {**os.environ, **extra}
    env.pop("APPLIANCE_DISABLE_PLUGIN_AUTOLOAD", None)
    return env


def wait_until(check: Callable[[], Any], what: str, timeout_s: float = 60.0,
               procs: tuple[Proc, ...] = ()) -> Any:
    """Poll ``check`` until it answers something true; fail naming ``what`` (and the log
    of any process that died meanwhile)."""
    deadline = time.monotonic() + timeout_s
    while True:
        for proc in procs:
            proc.assert_alive()
        try:
            answer = check()
        except (httpx.TransportError, sqlite3.Error, OSError, KeyError, IndexError):
            answer = None
        if answer:
            return answer
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:.0f} s"
        time.sleep(0.05)


@dataclass
class Proc:
    """One ``appliance`` process; output to ``log``."""

    name: str
    args: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=process_env)
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen([*CLI, *self.args], env=self.env, stdout=out,
                                          stderr=subprocess.STDOUT)
        return self

    def assert_alive(self) -> None:
        assert self.popen is not None and self.popen.poll() is None, (
            f"{self.name} exited:\n{self.log.read_text()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.popen is not None and self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)

    def stop(self) -> int | None:
        """SIGTERM and wait (what systemd does)."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        return self.popen.returncode


@dataclass
class BoxProc:
    """A box: its data directory, config file and served port."""

    name: str
    data_dir: Path
    config: Path
    port: int
    device_id: str = ""
    proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> BoxProc:
        self.proc = Proc(self.name, ["--config", str(self.config), "serve", "--port",
                                     str(self.port), "--no-demo"],
                         self.data_dir.parent / f"{self.name}.log").start()
        return self

    def ready(self) -> bool:
        return httpx.get(self.url + "/v2/health/ready", timeout=2).status_code == 200

    def infer(self, x: float = 1.0) -> tuple[str, float] | None:
        """(the version that answered, y[0]) for x = [x, x] on ``scale``; None if the
        model is not served."""
        answer = httpx.post(self.url + "/v2/models/scale/infer", timeout=5, json={
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [x, x]}]})
        if answer.status_code != 200:
            return None
        body = answer.json()
        return str(body.get("model_version")), float(body["outputs"][0]["data"][0])

    def health(self) -> dict[str, Any]:
        return dict(httpx.get(self.url + "/v1/health", timeout=5).json())

    def outbox(self) -> tuple[int, list[int]]:
        """(the last sequence number handed out, the seqs still waiting to be sent)."""
        path = self.data_dir / "sync" / "outbox.db"
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            last = conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
            pending = [r[0] for r in conn.execute("SELECT seq FROM entries ORDER BY seq")]
        finally:
            conn.close()
        return int(last[0]), pending


def hub_reports(hub_dir: Path) -> dict[str, dict[str, Any]]:
    """Per device: the report seqs the hub stored, its acked seq, lost ranges."""
    conn = sqlite3.connect(f"file:{hub_dir / 'hub.db'}?mode=ro", uri=True, timeout=5)
    try:
        out: dict[str, dict[str, Any]] = {}
        for device, acked in conn.execute("SELECT id, acked_seq FROM devices"):
            seqs = [r[0] for r in conn.execute(
                "SELECT seq FROM reports WHERE device_id = ? ORDER BY seq", (device,))]
            lost = conn.execute("SELECT first_seq, last_seq FROM lost_reports "
                                "WHERE device_id = ?", (device,)).fetchall()
            out[device] = {"seqs": seqs, "acked": int(acked), "lost": lost}
        return out
    finally:
        conn.close()
