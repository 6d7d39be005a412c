"""The tamper-evident audit log: hash-chained records, signed checkpoints, SIEM forwarding.

- :mod:`.log`: ``AuditLog`` (``<data_dir>/audit.db``), the chain and its hash rule.
- :mod:`.inference`: ``InferenceAuditor``, inference records batched off the request path;
  :mod:`.digest`: ``tensor_digest`` and output summaries for them.
- :mod:`.checkpoints`: signed, chained checkpoints, ``verify`` (chain, checkpoint links,
  cadence); :mod:`.witness`: checkpoints kept off the box, ``verify --witness``;
  :mod:`.keys`: the signing key (file, or derived from a plugin's box key).
- :mod:`.losses`: loss counts for gap records, kept in ``audit.losses`` across a stop.
- :mod:`.retention`: minimum retention, legal holds, ``prune`` with signed tombstones.
- :mod:`.export`, :mod:`.forward`: JSON lines, CEF and RFC 5424 files; live syslog.
- :mod:`.runtime`: ``open_audit(data_dir, AuditSettings)`` wires them for the server.
- :mod:`.bridge`: registry events into the chain; auth failures onto the writer's queue.

Record kinds are dotted lower-case names: ``inference``, ``gap``, ``writer-start``,
``writer-stop``, ``auth.failure``, ``model.load``, ``model.unload``, ``model.promote``,
``model.rollback``, ``model.approve``, ``model.hold``, ``model.release``,
``model.delete``, ``audit.export``, ``audit.hold``, ``audit.release``, ``audit.prune``,
``config.change``, ``admin.<action>``. The body says what was acted on and why.
Forwarders also get ``audit.checkpoint`` messages: signed checkpoints, not stored records.
"""

from .checkpoints import Problem, VerifyReport, verify
from .digest import summarize, tensor_digest
from .export import FORMATS, export, to_cef, to_jsonl, to_syslog
from .forward import SyslogForwarder
from .inference import InferenceAuditor
from .keys import audit_keys, derive_signing_key, open_log
from .log import AuditLog
from .records import Entry, Record, canonical_json, chain_hash
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
from .signing import GENESIS, Checkpoint, make_checkpoint
from .witness import Witnessed, checkpoints_after, parse_witness, read_witness

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
    "Witnessed",
    "active_holds",
    "audit_keys",
    "canonical_json",
    "chain_hash",
    "checkpoint_job",
    "checkpoints_after",
    "derive_signing_key",
    "export",
    "make_checkpoint",
    "open_audit",
    "open_log",
    "parse_witness",
    "place_hold",
    "prune",
    "read_witness",
    "release_holds",
    "retention_period",
    "summarize",
    "tensor_digest",
    "to_cef",
    "to_jsonl",
    "to_syslog",
    "verify",
]
