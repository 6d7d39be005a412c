"""What the probe results look like to the outside: metrics, alerts, health, the API.

    probe_success{model,version}           1 when every golden example matched, else 0
    probe_duration_seconds{model,version}  how long the last probe took (all examples)

(the names of Prometheus' blackbox exporter, so its dashboards and alert rules apply).
Only probed versions have series: a version without golden examples is not probed, and
``GET /v1/probes`` (:func:`probe_status`) says so. The alert engine reads
:func:`alert_snapshot`'s ``"probes"`` section, where the built-in ``ProbeFailed`` rule
fires per model (``appliance/alerts/rules.py``); the health report reads
:func:`health_reasons` (a failing probe makes the box degraded, never unready).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily, Metric

from .runner import ProbeRunner, golden_of

if TYPE_CHECKING:
    from ..alerts.engine import AlertEngine
    from ..monitoring.collector import ApplianceCollector
    from ..monitoring.health import HealthReport
    from ..runtime.repository import ModelRepository

__all__ = ["alert_snapshot", "connect_probes", "health_reasons", "metric_families",
           "probe_status"]

LABELS = ["model", "version"]
NO_GOLDEN = ("not probed: its package declares no golden examples (add [[golden]] "
             "inputs and expected outputs to model.toml)")
OFF = "not probed: [probes] enabled = false"


def metric_families(runner: ProbeRunner) -> Iterator[Metric]:
    """``probe_success`` and ``probe_duration_seconds``, one series per probed version."""
    success = GaugeMetricFamily("probe_success", "1 when the last synthetic probe's golden "
                                "examples all matched, else 0", labels=LABELS)
    duration = GaugeMetricFamily("probe_duration_seconds",
                                 "Seconds the last synthetic probe took", labels=LABELS)
    for result in runner.results():
        labels = [result.model, result.version]
        success.add_metric(labels, 1 if result.ok else 0)
        duration.add_metric(labels, result.duration_s)
    yield from (success, duration)


def alert_snapshot(runner: ProbeRunner) -> dict[str, Any]:
    """``{"probes": {model: {"ok": bool, "detail": str}}}`` over every probed model: a
    model is ok when each of its probed versions is."""
    section: dict[str, dict[str, Any]] = {}
    for result in sorted(runner.results(), key=lambda r: (r.model, r.version)):
        entry = section.setdefault(result.model, {"ok": True, "detail": ""})
        if not result.ok:
            failed = f"version {result.version}: {result.detail}"
            entry["detail"] = failed if entry["ok"] else f"{entry['detail']}; {failed}"
            entry["ok"] = False
        elif entry["ok"]:
            entry["detail"] = f"version {result.version}: {result.detail}"
    return {"probes": section}


def health_reasons(runner: ProbeRunner) -> Iterator[tuple[str, str]]:
    """(model, reason) for every version whose last probe failed."""
    for result in runner.results():
        if not result.ok:
            yield result.model, f"version {result.version} failed its probe: {result.detail}"


def probe_status(repository: ModelRepository, runner: ProbeRunner | None
                 ) -> list[dict[str, Any]]:
    """Every served version: its last probe, or why it is not probed."""
    out = []
    for served in repository.index():
        record = served.record
        entry: dict[str, Any] = {"model": record.model, "version": record.version,
                                 "stage": record.stage, "examples": len(golden_of(served)),
                                 "probed": False, "ok": None, "detail": "", "at": None,
                                 "duration_s": None, "next_at": None}
        result = runner.result(record.model, record.version) if runner else None
        if runner is None:
            entry["detail"] = OFF
        elif not entry["examples"]:
            entry["detail"] = NO_GOLDEN
        elif not served.ready:
            entry["detail"] = f"not probed while the version is {served.state}"
        elif result is None:
            entry["detail"] = ("not probed yet: the first probe runs at the next tick"
                               if runner.attached else
                               "not probed yet: the server is starting")
        else:
            entry.update(probed=True, ok=result.ok, detail=result.detail, at=result.at,
                         duration_s=result.duration_s,
                         next_at=runner.next_at(record.model, record.version))
        out.append(entry)
    return out


def connect_probes(runner: ProbeRunner, *, collector: ApplianceCollector | None = None,
                   alerts: AlertEngine | None = None,
                   health: HealthReport | None = None) -> None:
    """Expose ``runner``'s results on /metrics, to the alert rules and in the health
    report (each only when that subsystem is on)."""
    if collector is not None:
        collector.add_families(lambda: metric_families(runner))
    if alerts is not None:
        alerts.add_source(lambda: alert_snapshot(runner))
    if health is not None:
        health.add_health_source(lambda: health_reasons(runner))
