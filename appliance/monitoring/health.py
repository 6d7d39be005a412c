"""``GET /v1/health``: ok | degraded | failing, with the reasons and the facts behind them.

    failing   the box cannot do its job: not ready (still loading, or a production
              version failed: :mod:`.readiness`), the registry is not writable, or the
              data directory's disk has less than ``disk_free_min_mb`` free
    degraded  it serves, but something needs a look: a version outside production failed
              or is failing, the scheduler or the audit writer is not running while
              configured, the audit writer dropped records, a health source (drift,
              SLO alerts: :meth:`HealthReport.add_health_source`) reported a reason,
              or a dependency did (the hub sync: :meth:`HealthReport.add_dependency`)
    ok        none of the above

Degraded never touches liveness or readiness; only what :mod:`.readiness` names turns
``/v2/health/ready`` 503. The report is computed when asked (a few ``os`` calls and a walk
over the served versions); nothing here runs on the request path.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..errors import NotFound
from .recorder import RequestMonitor

if TYPE_CHECKING:
    from ..runtime.served import ServedVersion
    from ..services import Services

__all__ = ["DependencySource", "HealthReport", "HealthSource"]

#: a contributor of degraded reasons: each item is a reason, or (model, reason)
HealthSource = Callable[[], Iterable[str | tuple[str, str]]]
#: a dependency of the box (the hub sync): its facts, and the degraded reasons it adds
DependencySource = Callable[[], tuple[dict[str, Any], Iterable[str]]]
#: the distributions whose versions the report names, when installed
BACKEND_LIBRARIES = ("onnxruntime", "onnxruntime-gpu", "openvino", "ai-edge-litert",
                     "numpy")


def _library_versions() -> dict[str, str]:
    out = {}
    for name in BACKEND_LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


class HealthReport:
    """Builds health answers from the services; sources add degraded reasons."""

    def __init__(self, services: Services, monitor: RequestMonitor) -> None:
        self.services = services
        self.monitor = monitor
        self.sources: list[HealthSource] = []
        self.dependency_sources: dict[str, DependencySource] = {}
        self._libraries: dict[str, str] | None = None

    def add_health_source(self, source: HealthSource) -> None:
        """Let ``source`` (drift, alerts) contribute degraded reasons to every report. A
        source that raises is itself reported as a degraded reason."""
        self.sources.append(source)

    def add_dependency(self, name: str, source: DependencySource) -> None:
        """Report ``source()``'s facts under ``dependencies[name]`` and add its reasons
        as degraded (never failing: a dependency does not make the box unready). A
        source that raises is itself a degraded reason."""
        self.dependency_sources[name] = source

    # -- the report --------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        failing: list[str] = []
        degraded: list[str] = []
        why = self.services.dataplane.not_ready_reason()
        if why is not None:
            failing.append(f"not ready: {why}")
        dependencies = self._dependencies(failing, degraded)
        models = []
        for served in self.services.repository.index():
            entry = self._model(served)
            models.append(entry)
            if served.record.stage != "production" and entry["reasons"]:
                degraded += [f"{served.record.model} version {served.record.version}: {r}"
                             for r in entry["reasons"]]
        by_model = {m["name"]: m for m in models}
        for model, reason in self._source_reasons():
            degraded.append(f"{model}: {reason}" if model else reason)
            if model in by_model:
                by_model[model]["reasons"].append(reason)
        status = "failing" if failing else "degraded" if degraded else "ok"
        return {"status": status, "reasons": failing + degraded, "models": models,
                "dependencies": dependencies}

    def model_report(self, name: str) -> dict[str, Any]:
        """The report's entries for one model (NotFound when it is not served here)."""
        versions = self.services.repository.versions(name)
        models = [self._model(s) for s in versions.values()]
        for model, reason in self._source_reasons():
            if model == name:
                for entry in models:
                    entry["reasons"].append(reason)
        if not models:
            raise NotFound(f"model {name!r} is not served here")
        worst = ("failing" if any(m["state"] == "failed" or m["failing"] for m in models
                                  if m["stage"] == "production")
                 else "degraded" if any(m["reasons"] for m in models) else "ok")
        return {"name": name, "status": worst, "versions": models}

    def _model(self, served: ServedVersion) -> dict[str, Any]:
        record = served.record
        failing = served.ready and self.monitor.failing(served)
        reasons = []
        if served.state == "failed":
            reasons.append(f"failed to load: {served.reason}")
        elif failing:
            reasons.append("failing at inference: "
                           f"{self.monitor.describe(served)['last_error']}")
        return {"name": record.model, "version": record.version, "stage": record.stage,
                "state": served.state, "backend": served.backend, "failing": failing,
                "load_s": round(served.load_s, 6), "warmup_s": round(served.warmup_s, 6),
                "memory_bytes": served.memory_bytes, **self.monitor.describe(served),
                "reasons": reasons}

    def _source_reasons(self) -> list[tuple[str, str]]:
        out = []
        for source in self.sources:
            try:
                for item in source():
                    out.append(item if isinstance(item, tuple) else ("", item))
            except Exception as exc:
                out.append(("", f"health source {getattr(source, '__name__', source)!r} "
                                f"failed: {type(exc).__name__}: {exc}"))
        return out

    def _dependencies(self, failing: list[str], degraded: list[str]) -> dict[str, Any]:
        services = self.services
        settings = services.settings
        data_dir = settings.data_dir
        registry_path = settings.registry_path
        writable = os.access(data_dir, os.W_OK) and (
            not registry_path.exists() or os.access(registry_path, os.W_OK))
        if not writable:
            failing.append(f"registry {registry_path} is not writable by uid {os.getuid()}")
        free = shutil.disk_usage(data_dir).free
        minimum = self.monitor.settings.disk_free_min_mb * 1024 * 1024
        if free < minimum:
            failing.append(f"disk holding {data_dir} has {free // 2**20} MiB free "
                           f"(disk_free_min_mb {minimum // 2**20})")
        scheduler = services.scheduler
        running = bool(getattr(scheduler, "running", False))
        if settings.scheduler and not running and services.dataplane.started:
            degraded.append("the scheduler is not running")
        audit: dict[str, Any] = {"enabled": services.audit is not None}
        auditor = services.audit.auditor if services.audit is not None else None
        if auditor is not None:
            thread = getattr(auditor, "_thread", None)
            alive = thread is not None and thread.is_alive()
            audit.update(alive=alive, **auditor.stats())
            if not alive:
                degraded.append("the audit writer is not running")
            if audit["dropped"]:
                degraded.append(f"the audit writer dropped {audit['dropped']} record(s)")
        if self._libraries is None:
            self._libraries = _library_versions()
        out = {"registry": {"path": str(registry_path), "writable": writable},
               "disk": {"free_bytes": free, "min_free_bytes": minimum},
               "scheduler": {"enabled": settings.scheduler, "running": running},
               "audit_writer": audit, "backend_libraries": self._libraries}
        for name, source in self.dependency_sources.items():
            try:
                facts, reasons = source()
                degraded.extend(reasons)
            except Exception as exc:
                facts = {"error": f"{type(exc).__name__}: {exc}"}
                degraded.append(f"dependency {name!r} could not be checked: {facts['error']}")
            out[name] = facts
        return out
