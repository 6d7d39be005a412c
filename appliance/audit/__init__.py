"""The tamper-evident audit log: hash-chained records, signed checkpoints, SIEM forwarding.

- :mod:`.log`: ``AuditLog`` (``<data_dir>/audit.db``), the chain and its hash rule.
- :mod:`.inference`: ``InferenceAuditor``, inference records batched off the request path;
  :mod:`.digest`: ``tensor_digest`` and output summaries for them.
- :mod:`.checkpoints`: signed checkpoints, ``verify``.
- :mod:`.retention`: minimum retention, legal holds, ``prune`` with signed tombstones.
- :mod:`.export`, :mod:`.forward`: JSON lines, CEF and RFC 5424 files; live syslog.
- :mod:`.runtime`: ``open_audit(data_dir, AuditSettings)`` wires them for the server.

Record kinds are dotted lower-case names: ``inference``, ``gap``, ``writer-start``,
``writer-stop``, ``auth.failure``, ``model.load``, ``model.unload``, ``model.promote``,
``model.rollback``, ``model.approve``, ``model.hold``, ``model.release``,
``model.delete``, ``audit.export``, ``audit.hold``, ``audit.release``, ``audit.prune``,
``config.change``, ``admin.<action>``. The body says what was acted on and why.
"""

from .checkpoints import Checkpoint, Problem, VerifyReport, make_checkpoint, verify
from .digest import summarize, tensor_digest
from .export import FORMATS, export, to_cef, to_jsonl, to_syslog
from .forward import SyslogForwarder
from .inference import InferenceAuditor
from .log import GENESIS, AuditLog, Entry, Record, canonical_json, chain_hash
from .retention import (
    AuditHold,
    PruneResult,
    active_holds,
    place_hold,
    prune,
    release_holds,
    retention_period,
)
from .runtime import AuditRuntime, checkpoint_job, open_audit
from .settings import AuditSettings, ForwardTarget, ModelAudit

__all__ = [
    "AuditHold",
    "AuditLog",
    "AuditRuntime",
    "AuditSettings",
    "Checkpoint",
    "Entry",
    "FORMATS",
    "ForwardTarget",
    "GENESIS",
    "InferenceAuditor",
    "ModelAudit",
    "Problem",
    "PruneResult",
    "Record",
    "SyslogForwarder",
    "VerifyReport",
    "active_holds",
    "canonical_json",
    "chain_hash",
    "checkpoint_job",
    "export",
    "make_checkpoint",
    "open_audit",
    "place_hold",
    "prune",
    "release_holds",
    "retention_period",
    "summarize",
    "tensor_digest",
    "to_cef",
    "to_jsonl",
    "to_syslog",
    "verify",
]
