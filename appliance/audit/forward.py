"""Live forwarding of audit records to a SIEM over syslog (UDP, TCP or TLS).

A :class:`SyslogForwarder` is an :class:`~appliance.audit.log.AuditLog` sink: called
after each commit, it only appends the records to its own bounded queue. Its thread
formats (RFC 5424 or CEF) and sends them: one datagram per record over UDP, RFC 6587
octet-counting frames (``LEN SP MSG``) over TCP and TLS. When the SIEM is down it
reconnects with exponential backoff; records beyond ``queue_max`` are dropped and counted
(``stats()``), and the appliance never waits. The sequence numbers in each message let
the SIEM see any gap; the log itself keeps every record.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from typing import Literal

from ..errors import ConfigError
from .export import to_cef, to_syslog
from .records import Record

log = logging.getLogger(__name__)

Transport = Literal["udp", "tcp", "tls"]
Format = Literal["rfc5424", "cef"]
_BATCH = 256


class SyslogForwarder:
    """Send every record it is given to ``host:port``; never blocks its caller."""

    def __init__(self, host: str, port: int, transport: Transport = "udp",
                 format: Format = "rfc5424", ca_file: str | None = None, *,
                 queue_max: int = 10_000, timeout_s: float = 5.0,
                 backoff_s: tuple[float, float] = (0.2, 30.0)) -> None:
        if transport not in ("udp", "tcp", "tls"):
            raise ConfigError(f"forward transport {transport!r}: use udp, tcp or tls")
        if format not in ("rfc5424", "cef"):
            raise ConfigError(f"forward format {format!r}: use rfc5424 or cef")
        self.host, self.port, self.transport, self.format = host, port, transport, format
        self.queue_max = queue_max
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        try:
            self._tls = (ssl.create_default_context(cafile=ca_file) if transport == "tls"
                         else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"forward to {host}:{port}: CA file {ca_file!r} cannot be "
                              f"used ({exc}); give a readable PEM bundle") from None
        self._hostname = socket.gethostname()
        self._procid = str(os.getpid())
        self._queue: collections.deque[Record] = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._count = threading.Lock()
        self._sock: socket.socket | None = None
        self._in_flight = 0
        self.sent = self.dropped = self.errors = 0
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"audit-forward-{host}:{port}")
        self._thread.start()

    # -- the sink (called by the appender) -----------------------------------------------
    def __call__(self, records: Sequence[Record]) -> None:
        room = max(self.queue_max - len(self._queue), 0)
        if room < len(records):
            self._drop(len(records) - room)
            records = records[:room]
        self._queue.extend(records)
        self._wake.set()

    # -- the sender thread --------------------------------------------------------------
    def _format(self, record: Record) -> bytes:
        if self.format == "cef":
            line = to_cef(record)
        else:
            line = to_syslog(record, hostname=self._hostname, procid=self._procid)
        data = line.encode()
        if self.transport == "udp":
            return data
        return f"{len(data)} ".encode() + data  # RFC 6587 octet counting

    def _connect(self) -> socket.socket:
        if self.transport == "udp":
            sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET,
                                 socket.SOCK_DGRAM)
            sock.connect((self.host, self.port))
            return sock
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        if self._tls is not None:
            try:
                sock = self._tls.wrap_socket(sock, server_hostname=self.host)
            except BaseException:
                sock.close()
                raise
        return sock

    def _peer_closed(self, sock: socket.socket) -> bool:
        """A stream the SIEM closed: sending would vanish into the buffer, so reconnect."""
        if self.transport == "udp":
            return False
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        sock.setblocking(False)  # TLS: what is readable may be a session ticket, not data
        try:
            return sock.recv(1, 0 if self._tls else socket.MSG_PEEK) == b""
        except (ssl.SSLWantReadError, BlockingIOError):
            return False
        except OSError:
            return True
        finally:
            sock.settimeout(self.timeout_s)

    def _frames(self, batch: list[Record]) -> list[bytes | None]:
        """Formatted messages; None for a record that cannot be formatted (counted as
        dropped: retrying it would stall everything behind it)."""
        frames: list[bytes | None] = []
        for record in batch:
            try:
                frames.append(self._format(record))
            except Exception:
                log.exception("audit record %s cannot be formatted for forwarding", record.seq)
                frames.append(None)
        return frames

    def _send(self, batch: list[Record]) -> None:
        frames = self._frames(batch)
        if self._sock is None or self._peer_closed(self._sock):
            self._disconnect()
            self._sock = self._connect()
        if self.transport == "udp":
            for frame in frames:
                if frame is None:
                    self._drop(1)
                else:
                    try:
                        self._sock.send(frame)
                        self.sent += 1
                    except OSError as exc:
                        if exc.errno != errno.EMSGSIZE:
                            raise
                        self._drop(1)  # too big for a datagram: a retry cannot help
                self._queue.popleft()
            return
        # a failure part-way resends the batch after reconnecting: delivery is at least
        # once, and a duplicate carries the same seq and hash
        self._sock.sendall(b"".join(f for f in frames if f is not None))
        for _ in batch:
            self._queue.popleft()
        lost = frames.count(None)
        self.sent += len(batch) - lost
        self._drop(lost)

    def _drop(self, count: int) -> None:
        if count:
            with self._count:
                self.dropped += count

    def _disconnect(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def _run(self) -> None:
        delay = self.backoff_s[0]
        while not self._stop.is_set():
            if not self._queue:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            batch = [self._queue[i] for i in range(min(_BATCH, len(self._queue)))]
            self._in_flight = len(batch)
            try:
                self._send(batch)
                delay = self.backoff_s[0]
            except (OSError, ValueError) as exc:  # SIEM down, refused, TLS failure
                self.errors += 1
                log.warning("audit forwarding to %s:%s (%s) failed: %s; retrying in %.1fs",
                            self.host, self.port, self.transport, exc, delay)
                self._disconnect()
                self._stop.wait(delay)
                delay = min(delay * 2, self.backoff_s[1])
            finally:
                self._in_flight = 0
        self._disconnect()

    # -- control -----------------------------------------------------------------------
    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the queue is sent (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue or self._in_flight:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued within ``timeout``, then stop."""
        self.flush(timeout)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def stats(self) -> dict[str, int]:
        return {"queued": len(self._queue), "sent": self.sent, "dropped": self.dropped,
                "errors": self.errors}
