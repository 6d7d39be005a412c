"""The audit log as the server runs it: log, writer, checkpointer and SIEM forwarders.

:func:`open_audit` builds them from :class:`~appliance.audit.settings.AuditSettings`.
The writer (:class:`~appliance.audit.inference.InferenceAuditor`) always runs: it also
carries auth failures; ``runtime.auditor`` is that writer only while inference records
are on. Signed checkpoints are made at start, every ``checkpoint_minutes`` (a thread of
the runtime, so the forwarders see each one) and at a clean stop; each is forwarded to
every SIEM as an ``audit.checkpoint`` record (:mod:`.witness`).

Start-up never fails for the log itself: on a full or read-only disk it logs why, the
server serves, and records are counted as lost until the log can be written again.
:meth:`AuditRuntime.close` stops everything in reverse (the ``writer-stop`` record still
reaches the forwarders). :func:`checkpoint_job` is the scheduler's entry point.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .feeder import AuditFeeder, WriterUnavailable
from .forward import SyslogForwarder
from .inference import InferenceAuditor
from .keys import BoxKeyProvider, audit_keys, open_log, plugin_provider
from .log import AuditLog
from .settings import AuditSettings
from .signing import Checkpoint, make_checkpoint
from .witness import as_record, checkpoints_after

log = logging.getLogger(__name__)

#: runtimes open in this process, by resolved data directory (for checkpoint_job)
_RUNNING: dict[str, AuditRuntime] = {}


@dataclass
class AuditRuntime:
    log: AuditLog
    #: the writer when inference records are on (what the data plane calls)
    auditor: InferenceAuditor | AuditFeeder | None = None
    forwarders: list[SyslogForwarder] = field(default_factory=list)
    #: the bounded queue and its writer (a process, or a thread) for every queued record
    writer: InferenceAuditor | AuditFeeder | None = None
    checkpoint_minutes: float = 0
    _sent_id: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def checkpoint(self) -> Checkpoint | None:
        """Sign the head and forward every checkpoint not yet forwarded; None (logged)
        when the log cannot be written now."""
        with self._lock:
            try:
                made = make_checkpoint(self.log)
                fresh = checkpoints_after(self.log, self._sent_id)
            except Exception as exc:
                log.warning("audit checkpoint not signed (%s); the next one will cover these "
                            "records", exc)
                return None
            if fresh:
                self._sent_id = int(fresh[-1]["id"])
                records = [as_record(cp) for cp in fresh]
                for forwarder in self.forwarders:
                    forwarder(records)
            return made

    def _every(self) -> None:
        while not self._stop.wait(self.checkpoint_minutes * 60):
            self.checkpoint()

    def start_checkpoints(self) -> None:
        """Sign now, then every ``checkpoint_minutes`` (0: only at start and stop)."""
        try:
            with self.log.reader() as conn:
                row = conn.execute("SELECT MAX(id) FROM checkpoints WHERE kind = 'checkpoint'"
                                   ).fetchone()
            self._sent_id = max(int(row[0] or 0) - 1, 0)  # the last one is forwarded again
        except Exception as exc:  # unreadable: forward whatever is there later
            log.debug("audit checkpoints unreadable at start: %s", exc)
        self.checkpoint()
        if self.checkpoint_minutes > 0:
            self._thread = threading.Thread(target=self._every, daemon=True,
                                            name="audit-checkpoints")
            self._thread.start()

    def close(self) -> None:
        """Stop the writer (``writer-stop``), sign and forward the final head, flush the
        forwarders."""
        _RUNNING.pop(str(self.log.data_dir.resolve()), None)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.writer is not None:
            self.writer.close()
        # a signed head at shutdown: truncation after a clean stop is then visible
        self.checkpoint()
        for forwarder in self.forwarders:
            forwarder.close()
        self.log.close(checkpoint=False)


def _log_for(data_dir: Path, signing_key: Ed25519PrivateKey | None,
             box_key_provider: BoxKeyProvider | None) -> AuditLog:
    if signing_key is not None:
        return AuditLog(data_dir, signing_key, defer_errors=True)
    try:
        signing, older = audit_keys(data_dir, box_key_provider or plugin_provider(data_dir))
    except OSError as exc:  # no key yet and no room to write one: signing waits
        log.warning("audit signing key unavailable (%s): checkpoints wait until it is", exc)
        return AuditLog(data_dir, defer_errors=True)
    return AuditLog(data_dir, signing, defer_errors=True, verify_keys=older)


def open_audit(data_dir: Path, settings: AuditSettings,
               signing_key: Ed25519PrivateKey | None = None, *,
               box_key_provider: BoxKeyProvider | None = None) -> AuditRuntime | None:
    """Open the log, attach forwarders, start the writer and checkpoints; None when
    disabled. ``box_key_provider``: the ``appliance_box_key`` hook (default: the
    installed plugins'), from which the signing key is derived when it gives a key."""
    if not settings.enabled:
        return None
    audit_log = _log_for(Path(data_dir), signing_key, box_key_provider)
    if audit_log.open_error is not None:
        log.warning("audit log %s cannot be opened for writing (%s): the appliance serves "
                    "anyway; audit records are counted as lost (kept in audit.losses) and a "
                    "gap record reports them once the log can be written: free disk space",
                    audit_log.path, audit_log.open_error)
    runtime = AuditRuntime(audit_log, checkpoint_minutes=settings.checkpoint_minutes)
    try:
        for target in settings.forward:
            forwarder = SyslogForwarder(target.host, target.port, target.transport,
                                        target.format, target.ca_file,
                                        queue_max=target.queue_max)
            runtime.forwarders.append(forwarder)
            runtime.log.add_sink(forwarder)
        runtime.writer = _start_writer(runtime.log, settings)
        if settings.inferences:
            runtime.auditor = runtime.writer
        runtime.start_checkpoints()
    except BaseException:
        runtime.close()
        raise
    _RUNNING[str(runtime.log.data_dir.resolve())] = runtime
    return runtime


def _start_writer(audit_log: AuditLog, settings: AuditSettings
                  ) -> InferenceAuditor | AuditFeeder:
    """The writer process (``[audit] writer = "process"``, the default) or thread; a
    process that cannot start falls back to the thread, with a warning."""
    if settings.writer == "process":
        feeder = AuditFeeder(audit_log.data_dir, settings)
        try:
            feeder.start()
            return feeder
        except WriterUnavailable as exc:
            log.warning("%s: writing audit records from a thread of the server instead",
                        exc)
    writer = InferenceAuditor(audit_log, batch_window_ms=settings.batch_window_ms,
                              batch_size=settings.batch_size, queue_max=settings.queue_max,
                              per_model=settings.per_model)
    writer.start()
    return writer


def checkpoint_job(data_dir: str) -> None:
    """Sign the head of ``<data_dir>/audit.db`` (APScheduler job; arguments must pickle).
    In the serving process the runtime's checkpointer does it (and forwards it)."""
    running = _RUNNING.get(str(Path(data_dir).resolve()))
    if running is not None:
        running.checkpoint()
        return
    audit_log = open_log(Path(data_dir), plugin_provider(Path(data_dir)))
    try:
        make_checkpoint(audit_log)
    finally:
        audit_log.close(checkpoint=False)
