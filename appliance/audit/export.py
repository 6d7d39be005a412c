"""Audit records as JSON lines, ArcSight CEF or RFC 5424 syslog.

CEF (one line per record)::

    CEF:0|appliance|appliance|<version>|<kind>|<name>|<severity>|rt=<epoch ms>
        externalId=<seq> suser=<actor> cat=<kind> cs1Label=hash cs1=<hash>
        cs2Label=prevHash cs2=<prev_hash> msg=<body JSON>

Header fields escape ``\\`` and ``|`` with a backslash (line breaks become spaces: the
header is one line); extension values escape ``\\`` and ``=`` and write line breaks as
``\\n`` / ``\\r``.

RFC 5424 (one line per record; facility 13, "log audit")::

    <PRI>1 <at> <hostname> appliance <procid> <kind> [audit@32473 seq="N" hash=".."
        prevHash=".." actor=".."] <body JSON>

SD-PARAM values escape ``"``, ``\\`` and ``]`` with a backslash. ``32473`` is the private
enterprise number reserved for documentation (RFC 5612); pass ``sd_id`` to use your own.
The MSG is the body's canonical JSON (no BOM).
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from .. import __version__
from ..errors import BadRequest
from .log import AuditLog
from .records import Record, iso

FORMATS = ("jsonl", "cef", "syslog")
FACILITY_LOG_AUDIT = 13
SD_ID = "audit@32473"

# kind prefix -> (CEF severity 0-10, syslog severity 0-7, CEF event name); first match wins
_CLASSES: list[tuple[str, int, int, str]] = [
    ("gap", 7, 4, "audit records lost"),
    ("auth.", 7, 4, "authentication or authorization failure"),
    ("audit.prune", 6, 5, "audit records pruned"),
    ("model.delete", 6, 5, "model version deleted"),
    ("audit.", 5, 5, "audit log administration"),
    ("config.", 5, 5, "configuration changed"),
    ("inference", 1, 6, "inference"),
    ("writer-", 1, 6, "audit writer lifecycle"),
]


def classify(kind: str) -> tuple[int, int, str]:
    """(CEF severity, syslog severity, event name) of a record kind."""
    for prefix, cef, syslog, name in _CLASSES:
        if kind.startswith(prefix):
            return cef, syslog, name
    return 3, 5, kind.replace(".", " ").replace("-", " ")


# -- JSON lines -------------------------------------------------------------------------
def to_jsonl(record: Record) -> str:
    """The record as one JSON object (body as an object, hashes included)."""
    return json.dumps(record.to_dict(), ensure_ascii=False, separators=(",", ":"))


# -- CEF ---------------------------------------------------------------------------------
def cef_header(value: str) -> str:
    return (value.replace("\\", "\\\\").replace("|", "\\|")
            .replace("\r\n", " ").replace("\n", " ").replace("\r", " "))


def cef_value(value: str) -> str:
    return (value.replace("\\", "\\\\").replace("=", "\\=")
            .replace("\r", "\\r").replace("\n", "\\n"))


def _epoch_ms(at: str) -> int:
    return int(datetime.fromisoformat(at).timestamp() * 1000)


def to_cef(record: Record, *, version: str = __version__) -> str:
    """The record as an ArcSight CEF line."""
    severity, _, name = classify(record.kind)
    header = "|".join(cef_header(v) for v in ("appliance", "appliance", version, record.kind,
                                               name))
    ext = [("rt", str(_epoch_ms(record.at))), ("externalId", str(record.seq)),
           ("suser", record.actor), ("cat", record.kind),
           ("cs1Label", "hash"), ("cs1", record.hash),
           ("cs2Label", "prevHash"), ("cs2", record.prev_hash), ("msg", record.body)]
    return (f"CEF:0|{header}|{severity}|"
            + " ".join(f"{key}={cef_value(value)}" for key, value in ext))


# -- RFC 5424 ----------------------------------------------------------------------------
_NOT_PRINTABLE = re.compile(r"[^\x21-\x7e]")


def _token(value: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, at most ``limit``, else '-'."""
    value = _NOT_PRINTABLE.sub("_", value)[:limit]
    return value or "-"


def sd_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def to_syslog(record: Record, *, hostname: str | None = None, app_name: str = "appliance",
              procid: str = "-", sd_id: str = SD_ID) -> str:
    """The record as an RFC 5424 message (one line)."""
    _, severity, _ = classify(record.kind)
    pri = FACILITY_LOG_AUDIT * 8 + severity
    stamp = record.at.replace("+00:00", "Z")
    params = [("seq", str(record.seq)), ("hash", record.hash), ("prevHash", record.prev_hash),
              ("actor", record.actor)]
    sd = f"[{sd_id} " + " ".join(f'{k}="{sd_value(v)}"' for k, v in params) + "]"
    return (f"<{pri}>1 {stamp} {_token(hostname or socket.gethostname(), 255)} "
            f"{_token(app_name, 48)} {_token(procid, 128)} {_token(record.kind, 32)} "
            f"{sd} {record.body}")


FORMATTERS: dict[str, Callable[[Record], str]] = {
    "jsonl": to_jsonl, "cef": to_cef, "syslog": to_syslog, "rfc5424": to_syslog}


def export(log: AuditLog, since: datetime | None = None, until: datetime | None = None,
           format: str = "jsonl", **options: Any) -> Iterator[str]:
    """Lines (without newline) for the records with ``since <= at < until``."""
    if format not in FORMATTERS:
        raise BadRequest(f"export format {format!r} is not known: use one of "
                         + ", ".join(FORMATS))
    formatter = FORMATTERS[format]
    for record in log.records(since=iso(since) if since else None,
                              until=iso(until) if until else None):
        yield formatter(record, **options)
