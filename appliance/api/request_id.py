"""``X-Request-Id``: accepted from the caller and echoed on the response.

A caller's id is echoed when it is 1-128 visible ASCII characters (``!`` to ``~``: no
spaces, no control characters, nothing a log line could be forged with); any other value
is replaced by a fresh id (32 hex digits), so a response never carries what failed the
check. Without the header nothing is generated or echoed: the request path then pays one
dict lookup per header it already reads. With the access log on
(:mod:`appliance.api.access_log`) a request without an id gets a fresh one, which is
logged and echoed.

The inference front echoes the id on ``POST .../infer`` (its own answers, errors
included); :func:`echoing` does it for every route litestar answers. Answers the HTTP
protocol writes before a request reaches the application (the connection cap's 503,
431, 408) carry no id.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

HEADER = b"x-request-id"
MAX_LENGTH = 128
_VALID = re.compile(f"[!-~]{{1,{MAX_LENGTH}}}")

Send = Callable[[dict[str, Any]], Awaitable[None]]


def new_request_id() -> str:
    """A fresh id: 32 hex digits (128 random bits; cheaper than building a UUID)."""
    return os.urandom(16).hex()


def accepted_request_id(value: str) -> str:
    """``value`` if it is a valid id (see the module docstring), else a fresh one."""
    return value if _VALID.fullmatch(value) else new_request_id()


def find_request_id(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The raw ``X-Request-Id`` of a request's ASGI headers, or None."""
    for key, value in headers:
        if key == HEADER:
            return value.decode("latin-1")
    return None


def echoing(send: Send, request_id: str) -> Send:
    """``send`` with ``X-Request-Id: request_id`` added to the response head."""
    raw = (HEADER, request_id.encode("ascii"))

    async def echo(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = [h for h in message.get("headers", []) if h[0].lower() != HEADER]
            message = {**message, "headers": [*headers, raw]}
        await send(message)
    return echo
