"""The recovery probe: re-try failing versions off the request path.

A version failing at inference takes the box out of readiness, so a load balancer stops
sending it traffic, and no real request could show that it recovered. Every
``retry_failing_s`` this thread predicts once on each failing version with the inputs
of its warm-up (the package's declared ones, else zeros from the signature); a success
ends the failing streak (:meth:`VersionStats.recovered`), a failure keeps it and becomes
the version's last error. Versions that are not failing are never touched.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from ..runtime.warmup import inputs_from_manifest, inputs_from_signature
from .recorder import RequestMonitor

if TYPE_CHECKING:
    from ..runtime.repository import ModelRepository
    from ..runtime.served import ServedVersion

log = logging.getLogger(__name__)

__all__ = ["RecoveryProbe"]


class RecoveryProbe:
    def __init__(self, repository: ModelRepository, monitor: RequestMonitor) -> None:
        self.repository = repository
        self.monitor = monitor
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="recovery-probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.monitor.settings.retry_failing_s):
            self.probe_once()

    def probe_once(self) -> int:
        """Probe every failing version now; return how many recovered."""
        recovered = 0
        for served in self.repository.index():
            if served.ready and self.monitor.failing(served) and self._probe(served):
                recovered += 1
        return recovered

    def _probe(self, served: ServedVersion) -> bool:
        model, stats, record = served.model, served.metrics, served.record
        if model is None or stats is None:
            return False
        try:
            inputs = inputs_from_manifest(record.manifest) or inputs_from_signature(
                model.inputs)
            model.predict(inputs)
        except Exception as exc:
            stats.last_error = f"recovery probe: {type(exc).__name__}: {exc}"[:500]
            return False
        stats.recovered()
        log.warning("%s version %s recovered: the probe predicted successfully",
                    record.model, record.version)
        return True
