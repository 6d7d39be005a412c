"""What the alerting engine and the health report watch, from the running services.

The alert rules (:mod:`appliance.alerts.rules`) read a snapshot of sections; this module
builds the sections the server knows about, every alert tick:

- ``health``: ``{model: "down" | "up"}``, "down" when a production version of the model
  failed to load or is failing at inference (the rule of :mod:`.readiness`), so
  ``ModelDown`` fires exactly when ``/v2/health/ready`` says why it is 503;
- ``drift``: ``{model: {"status": "critical" | "warning" | "ok"}}`` from the latest
  evaluated window (:mod:`appliance.drift`): a window that drifted is critical, one with
  warnings only is a warning, anything else (no drift, too few rows) resolves;
- ``metrics.latency_p95_ms``: the p95 of each production version's recent requests, from
  its latency window (None below 20 samples: no judgement on too little traffic).

Probes add their own section (:mod:`appliance.probes`). :func:`drift_reasons` gives the
health report its ``degraded`` reasons for drift.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .readiness import failing_versions

if TYPE_CHECKING:
    from ..drift import DriftMonitor
    from ..services import Services

__all__ = ["drift_reasons", "drift_section", "health_section", "latency_section",
           "watch_services"]

_DRIFT_LEVEL = {"drift": "critical", "warning": "warning"}


def health_section(services: Services) -> dict[str, str]:
    """``{model: "down" | "up"}`` over the production versions served here."""
    failing = {served.record.model for served, _ in
               failing_versions(services.repository, services.dataplane.monitor)}
    return {s.record.model: "down" if s.record.model in failing else "up"
            for s in services.repository.index() if s.record.stage == "production"}

def drift_section(drift: DriftMonitor) -> dict[str, dict[str, Any]]:
    """``{model: {"status", "features"}}`` from each model's latest window."""
    out: dict[str, dict[str, Any]] = {}
    for model in drift.store.monitored_models():
        latest = drift.latest(model)
        if latest is None:
            continue
        out[model] = {"status": _DRIFT_LEVEL.get(latest["status"], "ok"),
                      "features": list(latest.get("drifted", []))}
    return out


def latency_section(services: Services) -> dict[str, float]:
    """``{model: p95 ms}`` of the production versions with enough recent samples."""
    out: dict[str, float] = {}
    for served in services.repository.index():
        execution = served.execution
        if served.record.stage != "production" or execution is None:
            continue
        p95 = execution.latencies.percentile_ms(95)
        if p95 is not None:
            out[served.record.model] = max(p95, out.get(served.record.model, 0.0))
    return out


def drift_reasons(drift: DriftMonitor) -> Iterator[tuple[str, str]]:
    """(model, reason) for each model whose latest window drifted or warned."""
    for breach in drift.breaches():
        features = ", ".join(breach["features"][:5]) or "the prediction"
        yield breach["model"], f"input drift ({breach['status']}): {features}"


def watch_services(services: Services) -> None:
    """Register the sections with the alerting engine, and drift with the health report
    (each read from ``services`` at every tick, so a monitor replaced later counts)."""
    engine = services.alerts
    if engine is not None:
        def snapshot() -> dict[str, Any]:
            out: dict[str, Any] = {"health": health_section(services),
                                   "metrics": {"latency_p95_ms": latency_section(services)}}
            if services.drift is not None:
                out["drift"] = drift_section(services.drift)
            return out
        engine.add_source(snapshot)
    health = getattr(services, "health", None)
    if health is not None:
        health.add_health_source(
            lambda: drift_reasons(services.drift) if services.drift is not None else ())
