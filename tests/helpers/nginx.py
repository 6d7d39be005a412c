"""Debian's nginx serving a folder on 127.0.0.1 — the static host (CDN, object store) a
hub's TUF repository is published to — with an access log a test can read.

    server = Nginx(repo_dir, tmp_path / "nginx").start()
    server.url                     # http://127.0.0.1:<port>
    server.take_log()              # [Hit(path, status, bytes_sent, body_bytes)] since last call
    server.stop()                  # by its own process id

:func:`nginx_binary` installs the ``nginx`` package with apt-get when no nginx is on the
machine (CI machines start bare), once; it never starts the distribution's service.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SBIN = "/usr/sbin:/sbin"


def nginx_binary() -> str:
    """The nginx executable, installed from Debian's ``nginx`` package if missing."""
    path = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:{SBIN}")
    if path is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], check=True, capture_output=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "nginx"],
                       check=True, capture_output=True, env=env)
        path = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:{SBIN}")
    assert path is not None, "nginx is not installed after apt-get install nginx"
    return path


@dataclass(frozen=True)
class Hit:
    """One line of the access log."""

    path: str
    status: int
    bytes_sent: int  # headers and body, what went over the wire
    body_bytes: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_CONF = """\
daemon off;
master_process on;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
{user}
events {{ worker_connections 512; }}
http {{
    log_format fleet '$uri $status $bytes_sent $body_bytes_sent';
    access_log {work}/access.log fleet;
    client_body_temp_path {work}/tmp/body;
    proxy_temp_path {work}/tmp/proxy;
    fastcgi_temp_path {work}/tmp/fastcgi;
    uwsgi_temp_path {work}/tmp/uwsgi;
    scgi_temp_path {work}/tmp/scgi;
    types {{ application/json json; }}
    default_type application/octet-stream;
    server_tokens off;
    keepalive_timeout 30s;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        etag on;
        location / {{ try_files $uri =404; }}
    }}
}}
"""


class Nginx:
    """nginx serving ``root`` from ``work`` (its config, pid, logs and temp folders)."""

    def __init__(self, root: Path, work: Path, port: int | None = None) -> None:
        self.root = Path(root).resolve()
        self.work = Path(work)
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def start(self, timeout_s: float = 20.0) -> Nginx:
        (self.work / "tmp").mkdir(parents=True, exist_ok=True)
        user = "user root;" if os.geteuid() == 0 else ""  # workers read the test's files
        conf = self.work / "nginx.conf"
        conf.write_text(_CONF.format(work=self.work, root=self.root, port=self.port, user=user))
        (self.work / "access.log").touch()
        with (self.work / "stderr.log").open("wb") as stderr:
            self.proc = subprocess.Popen([nginx_binary(), "-p", str(self.work), "-c",
                                          str(conf)], stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("nginx exited at start: "
                                   f"{(self.work / 'stderr.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx did not listen in time") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGQUIT (graceful) to nginx's own master process, SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def take_log(self) -> list[Hit]:
        """The requests logged since the last call."""
        time.sleep(0.05)  # nginx writes the line once the response is sent
        with (self.work / "access.log").open("rb") as f:
            f.seek(self._log_offset)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._log_offset += len(complete)
        hits = []
        for line in complete.decode().splitlines():
            path, status, sent, body = line.rsplit(" ", 3)
            hits.append(Hit(path, int(status), int(sent), int(body)))
        return hits
