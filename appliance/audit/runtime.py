"""The audit log as the server runs it: log, inference writer and SIEM forwarders.

:func:`open_audit` builds them from :class:`~appliance.audit.settings.AuditSettings`;
:meth:`AuditRuntime.close` stops them in reverse (the ``writer-stop`` record still reaches
the forwarders) and signs a final checkpoint. :func:`checkpoint_job` is the scheduler's entry point.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .checkpoints import make_checkpoint
from .forward import SyslogForwarder
from .inference import InferenceAuditor
from .log import AuditLog
from .settings import AuditSettings

log = logging.getLogger(__name__)


@dataclass
class AuditRuntime:
    log: AuditLog
    auditor: InferenceAuditor | None = None
    forwarders: list[SyslogForwarder] = field(default_factory=list)

    def close(self) -> None:
        """Stop the writer (``writer-stop``), sign the final head, flush the forwarders."""
        if self.auditor is not None:
            self.auditor.close()
        try:  # a signed head at shutdown: truncation after a clean stop is then visible
            make_checkpoint(self.log)
        except Exception:
            log.exception("final audit checkpoint failed")
        for forwarder in self.forwarders:
            forwarder.close()
        self.log.close()


def open_audit(data_dir: Path, settings: AuditSettings,
               signing_key: Ed25519PrivateKey | None = None) -> AuditRuntime | None:
    """Open the log, attach forwarders, start the inference writer; None when disabled."""
    if not settings.enabled:
        return None
    runtime = AuditRuntime(AuditLog(data_dir, signing_key))
    try:
        for target in settings.forward:
            forwarder = SyslogForwarder(target.host, target.port, target.transport,
                                        target.format, target.ca_file,
                                        queue_max=target.queue_max)
            runtime.forwarders.append(forwarder)
            runtime.log.add_sink(forwarder)
        if settings.inferences:
            runtime.auditor = InferenceAuditor(
                runtime.log, batch_window_ms=settings.batch_window_ms,
                batch_size=settings.batch_size, queue_max=settings.queue_max,
                per_model=settings.per_model)
            runtime.auditor.start()
    except BaseException:
        runtime.close()
        raise
    return runtime


def checkpoint_job(data_dir: str) -> None:
    """Sign the head of ``<data_dir>/audit.db`` (APScheduler job; arguments must pickle)."""
    with AuditLog(Path(data_dir)) as log:
        make_checkpoint(log)
