"""uvicorn 0.54's httptools protocol with the limits of :class:`~appliance.http_limits.
HttpLimits`: a connection cap answered with 503, a health reserve past it, header size and
count limits (431/414), a head deadline and a minimum body rate (408).

uvicorn itself has none of these: a connection that sends nothing, or a byte a second,
stays open forever, and one header line is buffered however long it is. Every refusal
here writes a short ``{"error": ...}`` answer, half-closes the connection and discards
what the client still sends for a moment before closing, so the client reads the answer
instead of a reset ("lingering close").

    config = uvicorn.Config(app, http=LimitedHttpProtocol.with_limits(settings.http), ...)
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, ClassVar

import httptools
import msgspec
from uvicorn.protocols.http.httptools_impl import (
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from .http_limits import FD_HEADROOM, HttpLimits, connection_cap

log = logging.getLogger("appliance.http")

#: paths a connection past the cap may still ask for (from the health reserve)
HEALTH_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})
#: seconds a connection in the health reserve has to send its request head
RESERVE_HEAD_S = 1.0
#: seconds a refused connection's leftover input is discarded before it is closed
LINGER_S = 1.0
#: past the cap and the reserve: the 503 lingers this long, and beyond this many refused
#: connections at once it is written and the connection closed at once (descriptors)
REFUSED_LINGER_S = 0.25
REFUSED_MAX = FD_HEADROOM // 4
#: seconds between two "connection cap reached" warnings
WARN_EVERY_S = 10.0
#: a ``http.response.start`` message key: the inference front made these headers itself
#: (lower-case names of its own, a ``content-length``, no ``connection`` or
#: ``transfer-encoding``); its value is the body's length. Other ASGI servers ignore it.
CHECKED_HEADERS = "appliance.checked_headers"


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; carries the answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def refusal_bytes(status: int, message: str) -> bytes:
    """A complete ``Connection: close`` HTTP/1.1 response with an ``{"error": ...}`` body
    (and ``Retry-After: 1`` on a 503)."""
    body = msgspec.json.encode({"error": message})
    retry = b"retry-after: 1\r\n" if status == 503 else b""
    return b"".join([STATUS_LINE[status], b"content-type: application/json\r\n", retry,
                     b"content-length: ", str(len(body)).encode(), b"\r\n",
                     b"connection: close\r\n\r\n", body])


class _CapWarning:
    """Rate-limited warning for refused connections (one line per WARN_EVERY_S)."""

    def __init__(self) -> None:
        self.refused = 0
        self.last = 0.0

    def note(self, open_now: int, cap: int, reserve: int) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self.last >= WARN_EVERY_S:
            log.warning("connection cap reached (%d open: cap %d, health reserve %d): %d "
                        "connection(s) refused or held to health checks since the last "
                        "warning; raise [http] max_connections and the descriptor limit "
                        "if this is real load", open_now, cap, reserve, self.refused)
            self.refused, self.last = 0, now


class _LingerOnClose:
    """The transport as a cycle sees it once it answered before the body was read:
    ``close()`` becomes the protocol's lingering close."""

    def __init__(self, transport: asyncio.Transport, protocol: LimitedHttpProtocol) -> None:
        self._transport, self._protocol = transport, protocol

    def close(self) -> None:
        self._protocol._linger()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Cycle(RequestResponseCycle):
    """uvicorn's request/response cycle: an answer sent before the request body was read
    (413 from Content-Length, 401 before the upload) says ``Connection: close``, and the
    connection is closed lingering, so the client neither reuses it nor gets a reset."""

    protocol: LimitedHttpProtocol

    async def send(self, message: Any) -> None:
        if message["type"] == "http.response.start" and not self.response_started:
            if self.more_body and not self.disconnected:
                self.keep_alive = False
                self.transport = _LingerOnClose(self.transport, self.protocol)  # type: ignore[assignment]
            elif (CHECKED_HEADERS in message and not self.disconnected
                  and not self.flow.write_paused and not self.access_log
                  and self._start_checked(message)):
                return
        await super().send(message)

    def _start_checked(self, message: Any) -> bool:
        """uvicorn's response start for headers the inference front made (see
        :data:`CHECKED_HEADERS`): one control-character check over all the values instead
        of two regular expressions and a lower-casing per header. False (nothing written)
        when a value fails it: uvicorn's own path then refuses the response."""
        headers = message["headers"]
        if HEADER_VALUE_RE.search(b"".join([v for _, v in headers])):
            return False
        self.response_started = True
        self.waiting_for_100_continue = False
        content = [STATUS_LINE[message["status"]]]
        for name, value in (*self.default_headers, *headers):
            content += (name, b": ", value, b"\r\n")
        if not self.keep_alive:
            content.append(b"connection: close\r\n")
        content.append(b"\r\n")
        self.expected_content_length = message[CHECKED_HEADERS]
        self.chunked_encoding = False
        self.transport.write(b"".join(content))
        return True


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with connection, head and body limits."""

    limits: ClassVar[HttpLimits] = HttpLimits()
    cap: ClassVar[int] = HttpLimits().max_connections
    _warning: ClassVar[_CapWarning] = _CapWarning()

    @classmethod
    def with_limits(cls, limits: HttpLimits, nofile: int | None = None
                    ) -> type[LimitedHttpProtocol]:
        """A subclass enforcing ``limits`` (pass it as ``uvicorn.Config(http=...)``); the
        cap is lowered to fit under the descriptor limit ``nofile`` (default: this
        process's)."""
        cap = connection_cap(limits, nofile)
        if cap < limits.max_connections:
            log.warning("[http] max_connections lowered from %d to %d to fit the descriptor "
                        "limit; raise LimitNOFILE / ulimit -n to allow more",
                        limits.max_connections, cap)
        return type(cls.__name__, (cls,), {"limits": limits, "cap": cap,
                                           "_warning": _CapWarning(),
                                           "__module__": cls.__module__})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout_keep_alive = self.limits.keep_alive_s  # type: ignore[assignment]
        self._timer: asyncio.TimerHandle | None = None
        self._in_head = False  # a request has begun and its head is not complete
        self._raw_head = 0  # bytes of chunks that arrived inside an unfinished head
        self._parsed_head = 0  # request line and headers as parsed so far
        self._header_count = 0
        self._begun_in_feed = False
        self._body_bytes = 0  # body bytes in the current rate window
        self._reserve = False  # admitted past the cap: health requests only
        self._lingering = False
        self._refusal: _Refused | None = None
        self._max_head_bytes = self.limits.max_header_bytes
        self._max_headers = self.limits.max_headers

    # ------------------------------------------------------------ connection
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        open_now = len(self.connections)
        if open_now > self.cap:
            reserve = self.limits.health_connections
            self._warning.note(open_now, self.cap, reserve)
            if open_now > self.cap + reserve:
                answer = refusal_bytes(503, "the server is at its connection limit; retry "
                                            "shortly")
                self.transport.write(answer)
                if open_now > self.cap + reserve + REFUSED_MAX:
                    self.transport.close()  # keep descriptors for the server itself
                else:
                    self._linger(REFUSED_LINGER_S)
                return
            self._reserve = True
        timeout = self.limits.header_timeout_s
        self._arm(min(timeout, RESERVE_HEAD_S) if self._reserve else timeout,
                  self._head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # the answer is sent; what the client still sends is dropped
        self._unset_keepalive_if_required()
        self._begun_in_feed = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self._refusal is not None:
                self._refuse(self._refusal.status, self._refusal.message)
            else:
                log.info("invalid HTTP request from %s", self._peer())
                self._refuse(400, "invalid HTTP request")
            return
        # deadlines are armed only when a request is left unfinished by this chunk, so a
        # request that arrives whole costs no timer
        if self._in_head:
            if self._timer is None:  # a partial head after a keep-alive pause
                self._arm(self.limits.header_timeout_s, self._head_timeout)
            # a head that began in an earlier chunk and is still unfinished: the whole chunk
            # is head (one long line is buffered by httptools until it ends, so count here)
            if not self._begun_in_feed:
                self._raw_head += len(data)
                if self._raw_head > self.limits.max_header_bytes:
                    self._refuse(431, self._too_large_message())
            return
        cycle = self.cycle
        if (cycle is not None and cycle.more_body and not cycle.response_complete
                and not cycle.disconnected):
            if self._timer is None:  # the body's first rate window starts now
                self._body_bytes = 0
                self._arm(self.limits.body_timeout_s, self._body_check)
            self._body_bytes += len(data)

    # ------------------------------------------------------------ parser callbacks
    def on_message_begin(self) -> None:
        self._in_head = self._begun_in_feed = True
        self._raw_head = self._parsed_head = self._header_count = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_header_bytes:
            self._refusal = _Refused(414, f"request URL over {self.limits.max_header_bytes} "
                                          "bytes")
            raise self._refusal

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._parsed_head += len(name) + len(value) + 4
        if self._parsed_head + len(self.url) <= self._max_head_bytes and (
                self._header_count <= self._max_headers):
            super().on_header(name, value)  # the common case: two comparisons
            return
        if self._header_count > self.limits.max_headers:
            self._refusal = _Refused(431, f"more than {self.limits.max_headers} request "
                                          "headers")
            raise self._refusal
        if self._parsed_head + len(self.url) > self.limits.max_header_bytes:
            self._refusal = _Refused(431, self._too_large_message())
            raise self._refusal
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel()
        self._in_head = False
        if self._reserve:
            path = httptools.parse_url(self.url).path.decode("latin-1")
            if self.parser.get_method() != b"GET" or path not in HEALTH_PATHS:
                self._refusal = _Refused(503, "the server is at its connection limit; "
                                              "retry shortly")
                raise self._refusal
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:  # not an upgrade
            # before its task first runs: an early answer closes the connection, and the
            # inference front's heads take the checked path (see _Cycle)
            cycle.__class__ = _Cycle
            cycle.protocol = self  # type: ignore[attr-defined]
            if self._reserve:
                cycle.keep_alive = False  # one answer per reserved slot

    def on_message_complete(self) -> None:
        self._cancel()
        self._raw_head = 0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self._lingering:  # answered before the body was read; closing (see _Cycle)
            self.server_state.total_requests += 1
            return
        super().on_response_complete()

    # ------------------------------------------------------------ deadlines
    def _arm(self, delay: float, callback: Any) -> None:
        self._cancel()
        self._timer = self.loop.call_later(delay, callback)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timeout(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # the application is still answering the previous request: not the client's
            # delay (uvicorn stops reading pipelined requests meanwhile)
            self._arm(self.limits.header_timeout_s, self._head_timeout)
            return
        if self._in_head:
            log.info("request head from %s not complete after %.1f s: 408", self._peer(),
                     self.limits.header_timeout_s)
            self._refuse(408, f"the request head did not arrive within "
                              f"{self.limits.header_timeout_s:g} s")
        else:  # nothing sent at all (a fresh or idle connection): just close
            self.transport.close()

    def _body_check(self) -> None:
        self._timer = None
        cycle = self.cycle
        if (cycle is None or not cycle.more_body or cycle.response_complete
                or self.transport.is_closing()):
            return
        window = self.limits.body_timeout_s
        stalled_by_us = self.flow.read_paused or cycle.waiting_for_100_continue
        if not stalled_by_us and self._body_bytes < self.limits.min_body_rate * window:
            log.info("request body from %s slower than %d bytes/s: 408", self._peer(),
                     self.limits.min_body_rate)
            cycle.disconnected = True  # the application's receive() gets http.disconnect
            cycle.message_event.set()
            if cycle.response_started:
                self.transport.close()
            else:
                self._refuse(408, f"the request body arrived slower than "
                                  f"{self.limits.min_body_rate} bytes/s")
            return
        self._body_bytes = 0
        self._arm(window, self._body_check)

    # ------------------------------------------------------------ refusing
    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` on the raw transport and close (lingering)."""
        if self.transport.is_closing():
            return
        self.transport.write(refusal_bytes(status, message))
        self._linger()

    def _linger(self, seconds: float = LINGER_S) -> None:
        self._lingering = True
        self._cancel()
        self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._timer = self.loop.call_later(seconds, self.transport.close)

    def eof_received(self) -> None:
        if self._lingering:
            self.transport.close()

    def _too_large_message(self) -> str:
        return (f"request headers over {self.limits.max_header_bytes} bytes; send fewer or "
                "shorter headers")

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "unknown client"
