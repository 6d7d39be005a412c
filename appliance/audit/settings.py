"""Audit settings, ``[audit]`` in the TOML file (``Settings.audit``).

    [audit]
    batch_window_ms = 200
    retention_years = 6
    checkpoint_minutes = 15
    checkpoint_grace_minutes = 5

    [[audit.forward]]
    host = "siem.example"
    port = 6514
    transport = "tls"
    ca_file = "/etc/appliance/siem-ca.pem"

    [audit.per_model.bc]
    summary = "argmax:probabilities"
"""

from __future__ import annotations

from typing import Literal

import msgspec

SUMMARY_KINDS = ("argmax", "value", "digest")


def check_summary(spec: str) -> None:
    """ValueError unless ``spec`` is "", "digest", "argmax:<output>" or "value:<output>"."""
    if not spec or spec == "digest":
        return
    kind, _, output = spec.partition(":")
    if kind not in ("argmax", "value") or not output:
        raise ValueError(f"summary {spec!r} is not understood: use '', 'digest', "
                         "'argmax:<output>' or 'value:<output>'")


class ForwardTarget(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A SIEM that gets every record live (syslog over UDP, TCP or TLS)."""

    host: str
    port: int = 514
    transport: Literal["udp", "tcp", "tls"] = "udp"
    format: Literal["rfc5424", "cef"] = "rfc5424"
    #: CA bundle that signed the SIEM's certificate (TLS); None = the system store
    ca_file: str | None = None
    #: records waiting while the SIEM is slow or down; beyond this they are dropped
    queue_max: int = 10_000


class ModelAudit(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What the audit record of one model's inferences holds besides the input digest."""

    #: store the input tensors themselves (base64), not only their digest
    store_inputs: bool = False
    #: "", "digest" (of the outputs), "argmax:<output>" or "value:<output>"
    summary: str = ""

    def __post_init__(self) -> None:
        check_summary(self.summary)


class AuditSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = True
    #: write an audit record for every inference (off: admin actions only)
    inferences: bool = True
    #: the inference writer commits at least this often ...
    batch_window_ms: int = 200
    #: ... or as soon as this many records wait
    batch_size: int = 1000
    #: records waiting beyond this are dropped, counted, and reported in a gap record
    queue_max: int = 100_000
    #: where records are built, hashed and inserted: "process" (a writer process beside
    #: the server, off its GIL) or "thread" (a thread of the server)
    writer: Literal["process", "thread"] = "process"
    #: audit records younger than this cannot be pruned
    retention_years: float = 6.0
    #: minutes between signed checkpoints (0 = only at start and clean stop, and
    #: ``audit verify`` then does not apply the cadence rule)
    checkpoint_minutes: int = 15
    #: ``audit verify``: a record older than checkpoint_minutes + this must be signed
    checkpoint_grace_minutes: float = 5.0
    forward: list[ForwardTarget] = msgspec.field(default_factory=list)
    per_model: dict[str, ModelAudit] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("batch_window_ms", "batch_size", "queue_max"):
            if getattr(self, name) < 1:
                raise ValueError(f"audit.{name} must be at least 1")
        if (self.retention_years < 0 or self.checkpoint_minutes < 0
                or self.checkpoint_grace_minutes < 0):
            raise ValueError("audit.retention_years, audit.checkpoint_minutes and "
                             "audit.checkpoint_grace_minutes must not be negative")
