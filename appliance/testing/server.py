"""Run a real appliance HTTP server on 127.0.0.1 in a background thread (for tests).

    with ServerThread(create_app(services)) as url:
        httpx.get(url + "/v2/health/ready")
"""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from ..http_limits import HttpLimits
from ..http_protocol import LimitedHttpProtocol
from ..listen import bind_socket


class ServerThread:
    """uvicorn on a free loopback port; ``url`` is set once it accepts connections.

    It speaks through the same protocol and limits as ``appliance serve``: ``limits``
    (default: the app's ``services.settings.http``, else the defaults)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *,
                 limits: HttpLimits | None = None) -> None:
        if limits is None:
            settings = getattr(getattr(app, "services", None), "settings", None)
            limits = getattr(settings, "http", None) or HttpLimits()
        self.sock = bind_socket(host, port)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.protocol = LimitedHttpProtocol.with_limits(limits)
        config = uvicorn.Config(app, loop="asyncio", http=self.protocol, access_log=False,
                                log_level="warning", lifespan="on",
                                timeout_keep_alive=int(limits.keep_alive_s))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run,
                                       kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self, timeout: float = 30.0) -> str:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the test server exited during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError("the test server did not start in time")
            time.sleep(0.01)
        return self.url

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
