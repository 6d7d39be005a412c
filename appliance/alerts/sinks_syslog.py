"""The syslog sink: one RFC 5424 message per alert of a notification.

The line is made by the audit export's formatter (:func:`appliance.audit.export.to_syslog`,
the one the SIEM forwarder uses), from a :class:`~appliance.audit.records.Record` that
carries the alert: MSGID ``alert.firing`` / ``alert.resolved``, structured data
``[alert@32473 seq="<outbox row>" hash="<alert id>" prevHash="<group key>"
actor="<source>"]``, MSG the alert's canonical JSON. Only the PRI differs from an audit
record's: the sink's facility (default 1, user-level) with the alert's severity
(critical → 2 crit, warning → 4 warning, info → 6 informational, resolved → 5 notice).

Framing is the forwarder's too: one datagram per message over UDP, RFC 6587 octet
counting over TCP and TLS. The message is sent synchronously from the outbox's delivery
round, so a TCP/TLS collector that is down leaves the notification in the outbox.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from ..audit.export import to_syslog
from ..audit.records import Record, canonical_json
from .sinks import Delivery

SD_ID = "alert@32473"
_SEVERITY = {"critical": 2, "warning": 4, "info": 6}
_RESOLVED = 5


def alert_line(alert: dict[str, Any], *, row_id: int, group_key: str, at: str,
               facility: int = 1, hostname: str | None = None) -> str:
    """One alert as an RFC 5424 message (see the module docstring)."""
    record = Record(seq=row_id, at=at, kind=f"alert.{alert['status']}",
                    actor=str(alert.get("source") or "appliance"),
                    body=canonical_json(alert).decode(), prev_hash=group_key,
                    hash=str(alert["id"]), )
    line = to_syslog(record, hostname=hostname, sd_id=SD_ID)
    severity = (_RESOLVED if alert["status"] == "resolved"
                else _SEVERITY.get(str(alert.get("severity")), 5))
    return f"<{facility * 8 + severity}>" + line.split(">", 1)[1]


class SyslogSink:
    """Send each alert of a notification to ``host:port`` (udp, tcp or tls)."""

    def __init__(self, name: str, host: str, port: int, transport: str = "udp", *,
                 ca_file: str | None = None, facility: int = 1,
                 timeout_s: float = 5.0) -> None:
        self.name, self.host, self.port, self.transport = name, host, port, transport
        self.facility, self.timeout_s = facility, timeout_s
        self.ca_file = ca_file

    def _frames(self, notification: dict[str, Any], row_id: int) -> list[bytes]:
        frames = []
        for alert in notification["alerts"]:
            data = alert_line(alert, row_id=row_id, group_key=notification["group_key"],
                              at=notification["sent_at"], facility=self.facility).encode()
            frames.append(data if self.transport == "udp" else f"{len(data)} ".encode() + data)
        return frames

    def send(self, notification: dict[str, Any], row_id: int) -> Delivery:
        try:
            frames = self._frames(notification, row_id)
            if self.transport == "udp":
                family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
                with socket.socket(family, socket.SOCK_DGRAM) as sock:
                    sock.connect((self.host, self.port))
                    for frame in frames:
                        sock.send(frame)
            else:
                with socket.create_connection((self.host, self.port),
                                              timeout=self.timeout_s) as raw:
                    if self.transport == "tls":
                        context = ssl.create_default_context(cafile=self.ca_file)
                        with context.wrap_socket(raw, server_hostname=self.host) as tls:
                            tls.sendall(b"".join(frames))
                    else:
                        raw.sendall(b"".join(frames))
        except (OSError, ValueError) as exc:  # collector down, refused, TLS failure
            return Delivery(False, f"{type(exc).__name__}: {exc}")
        return Delivery(True, f"{len(frames)} message(s) to {self.host}:{self.port} "
                              f"({self.transport})")
