"""The access log: one line per HTTP request, logger ``appliance.access``.

:class:`AccessLog` wraps the whole ASGI application only when ``[logging] access_log``
is on, so with it off the request path has no wrapper, no clock read and no log call.
Each line names the client, method, path (without the query string, which may carry
secrets), status, response bytes, duration and request id; the JSON format carries the
same as fields (``client``, ``method``, ``path``, ``status``, ``bytes``,
``duration_ms``, ``request_id``). A request without ``X-Request-Id`` is given one here,
so every logged line can be matched to the response that echoed it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..logging_setup import ACCESS_LOGGER
from .request_id import HEADER, find_request_id, new_request_id

log = logging.getLogger(ACCESS_LOGGER)

Scope = dict[str, Any]
ASGIApp = Any


class AccessLog:
    """ASGI middleware logging every HTTP request after its response is sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        if find_request_id(scope["headers"]) is None:
            scope = {**scope, "headers": [*scope["headers"],
                                          (HEADER, new_request_id().encode())]}
        answer: dict[str, Any] = {"status": 500, "bytes": 0, "request_id": ""}

        async def observed(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                for key, value in message.get("headers", []):
                    if key == HEADER:
                        answer["request_id"] = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                answer["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            client = scope.get("client")
            raw_path = scope.get("raw_path")  # not percent-decoded: no newline forged in
            fields = {"client": f"{client[0]}:{client[1]}" if client else "-",
                      "method": scope["method"],
                      "path": raw_path.decode("latin-1") if raw_path else scope["path"],
                      "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                      **answer}
            log.info("%(client)s %(method)s %(path)s %(status)d %(bytes)dB "
                     "%(duration_ms).3fms id=%(request_id)s", fields, extra=fields)
