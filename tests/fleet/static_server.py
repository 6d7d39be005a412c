"""A real static-file HTTP server on 127.0.0.1 for a hub's ``repo/`` folder — what nginx or
a CDN would be — that records every response and lets a test play the attacker.

``server.log`` holds ``(path, status, body bytes)`` per request; ``server.overrides``
maps a URL path to bytes (or to a callable yielding chunks, for endless data) served
instead of the file. Files carry an ``ETag`` (their sha256) and ``If-None-Match`` is
answered with 304, as nginx does.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

Body = bytes | Callable[[], Iterator[bytes]]


class StaticServer:
    """Serve ``root`` on an ephemeral port; ``url`` is ``http://127.0.0.1:<port>``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.log: list[tuple[str, int, int]] = []
        self.overrides: dict[str, Body] = {}
        self.in_flight = 0
        self._idle = threading.Condition()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until no request is being answered (an endless body ends when the client
        hangs up, a moment after the client has given up)."""
        with self._idle:
            self._idle.wait_for(lambda: self.in_flight == 0, timeout)

    def take_log(self) -> list[tuple[str, int, int]]:
        """The requests since the last call (once none is in flight); a new log starts."""
        self.settle()
        taken, self.log[:] = list(self.log), []
        return taken

    def body_bytes(self, entries: list[tuple[str, int, int]] | None = None) -> int:
        return sum(n for _, _, n in (self.log if entries is None else entries))


def _handler(server: StaticServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  (http.server's naming)
            with server._idle:
                server.in_flight += 1
            try:
                self._answer()
            finally:
                with server._idle:
                    server.in_flight -= 1
                    server._idle.notify_all()

        def _answer(self) -> None:
            path = unquote(urlsplit(self.path).path)
            override = server.overrides.get(path)
            if override is not None:
                self._send_override(path, override)
                return
            file = (server.root / path.lstrip("/")).resolve()
            if not file.is_relative_to(server.root) or not file.is_file():
                self._send(path, 404, b"not found\n")
                return
            data = file.read_bytes()
            etag = f'"{hashlib.sha256(data).hexdigest()}"'
            if self.headers.get("If-None-Match") == etag:
                self._send(path, 304, b"", etag=etag)
                return
            self._send(path, 200, data, etag=etag)

        def _send(self, path: str, status: int, body: bytes, *, etag: str | None = None) -> None:
            self.send_response(status)
            if etag:
                self.send_header("ETag", etag)
            if status != 304:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            server.log.append((path, status, len(body)))

        def _send_override(self, path: str, body: Body) -> None:
            if isinstance(body, bytes):
                self._send(path, 200, body)
                return
            self.send_response(200)
            self.end_headers()  # no length: the body ends when the connection does
            sent = 0
            try:
                for chunk in body():
                    self.wfile.write(chunk)
                    sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
            server.log.append((path, 200, sent))

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    return Handler


def endless(chunk: bytes = b"\0" * 65536, limit: int = 64 << 20) -> Callable[[], Iterator[bytes]]:
    """A body that never ends (capped at ``limit`` bytes so a broken client cannot hang
    the test run)."""

    def body() -> Iterator[bytes]:
        sent = 0
        while sent < limit:
            yield chunk
            sent += len(chunk)

    return body
