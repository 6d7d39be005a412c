"""Scrape-time aggregation: a ``prometheus_client`` Collector over the request-path
counters, the served versions and the audit writer, on a private registry.

Nothing is pushed into ``prometheus_client`` objects on the request path: at each scrape
:meth:`ApplianceCollector.collect` walks the served versions, reads their
:class:`~.counters.VersionStats` (and, for what is not counted per request, the
executions, batcher queues and the audit writer's ``stats()``) and builds the metric
families. Label strings are made here, once per scrape.

Triton's names (``nv_inference_*``) carry production traffic only and Triton's labels
(``model``, ``version``) plus ``stage``; they are exposed as ``untyped`` because
``prometheus_client`` appends ``_total`` to every counter, and Triton's dashboards use
the names without it (PromQL's ``rate`` does not care about the type). The appliance's
own families (``appliance_*``) have a ``traffic`` label. See docs/monitoring.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from .counters import REASONS, RequestStats, VersionStats
from .recorder import RequestMonitor

if TYPE_CHECKING:
    from ..runtime.repository import ModelRepository
    from ..runtime.served import ServedVersion

__all__ = ["TRITON_COUNTERS", "ApplianceCollector", "metrics_registry"]

VERSION_LABELS = ["model", "version", "stage"]
TRAFFIC_LABELS = [*VERSION_LABELS, "traffic"]
#: Triton's cumulative counters: name → (help, what of RequestStats, scale)
TRITON_COUNTERS: dict[str, tuple[str, str, float]] = {
    "nv_inference_request_success": ("Number of successful inference requests", "ok", 1),
    "nv_inference_count": ("Number of inferences performed (batch rows)", "inferences", 1),
    "nv_inference_request_duration_us": (
        "Cumulative inference request duration in microseconds", "request_s", 1e6),
    "nv_inference_queue_duration_us": (
        "Cumulative inference queuing duration in microseconds", "queue_s", 1e6),
    "nv_inference_compute_input_duration_us": (
        "Cumulative compute input duration in microseconds", "input_s", 1e6),
    "nv_inference_compute_infer_duration_us": (
        "Cumulative compute inference duration in microseconds", "infer_s", 1e6),
    "nv_inference_compute_output_duration_us": (
        "Cumulative inference compute output duration in microseconds", "output_s", 1e6),
}
HISTOGRAMS = (("appliance_request_duration_seconds", "request_b", "request_s",
               "Inference request duration (decode to encoded response), successes"),
              ("appliance_queue_duration_seconds", "queue_b", "queue_s",
               "Time waiting for an instance or a batch, successes"),
              ("appliance_compute_duration_seconds", "compute_b", "infer_s",
               "Model predict duration (a batch's for each of its requests), successes"))

AuditorOf = Callable[[], Any]


def _untyped(name: str, doc: str) -> Metric:
    return Metric(name, doc + " (a counter, Triton's name: exposed untyped)", "unknown")


def _buckets(counts: Any, bounds: tuple[float, ...]) -> list[tuple[str, float]]:
    out, running = [], 0
    for bound, count in zip(bounds, counts, strict=False):
        running += count
        out.append((repr(float(bound)), float(running)))
    out.append(("+Inf", float(running + counts[len(bounds)])))
    return out


class ApplianceCollector(Collector):
    def __init__(self, repository: ModelRepository, monitor: RequestMonitor,
                 auditor_of: AuditorOf | None = None) -> None:
        self.repository = repository
        self.monitor = monitor
        self.auditor_of = auditor_of or (lambda: None)
        #: more families built at scrape time by other subsystems (the probes)
        self.sources: list[Callable[[], Iterable[Metric]]] = []

    def add_families(self, source: Callable[[], Iterable[Metric]]) -> None:
        """Yield ``source()``'s families at every scrape (probe_success, ...)."""
        self.sources.append(source)

    def _versions(self) -> list[tuple[ServedVersion, list[str], VersionStats | None]]:
        out = []
        for served in self.repository.index():
            record = served.record
            stats = self.monitor.versions.get((record.model, record.version))
            if stats is not None:
                stats.fold()  # the raw samples since the last scrape
            out.append((served, [record.model, record.version, record.stage], stats))
        return out

    def collect(self) -> Iterator[Metric]:
        versions = self._versions()
        yield from self._triton(versions)
        yield from self._histograms(versions)
        yield from self._models(versions)
        yield from self._audit()
        for source in self.sources:
            yield from source()

    def _triton(self, versions: list[tuple[ServedVersion, list[str], VersionStats | None]]
                ) -> Iterator[Metric]:
        empty = RequestStats(())
        for name, (doc, field, scale) in TRITON_COUNTERS.items():
            family = _untyped(name, doc)
            for _, labels, stats in versions:
                value = getattr(stats.production if stats else empty, field)
                family.add_sample(name, dict(zip(VERSION_LABELS, labels, strict=True)),
                                  value * scale)
            yield family
        failure = _untyped("nv_inference_request_failure",
                           "Number of failed inference requests, by reason")
        execs = _untyped("nv_inference_exec_count",
                         "Number of model executions (a dynamic batch is one), all traffic")
        pending = GaugeMetricFamily("nv_inference_pending_request_count",
                                    "Requests waiting for an instance or a batch",
                                    labels=VERSION_LABELS)
        for served, labels, stats in versions:
            named = dict(zip(VERSION_LABELS, labels, strict=True))
            failed = stats.production.failed if stats else empty.failed
            for i, reason in enumerate(REASONS):
                failure.add_sample(failure.name, {**named, "reason": reason}, failed[i])
            execs.add_sample(execs.name, named, stats.executions if stats else 0)
            execution = served.execution
            pending.add_metric(labels, execution.pending() if execution else 0)
        yield from (failure, execs, pending)

    def _histograms(self, versions: list[tuple[ServedVersion, list[str], VersionStats | None]]
                    ) -> Iterator[Metric]:
        failures = CounterMetricFamily("appliance_request_failures",
                                       "Failed inference requests by traffic class and "
                                       "reason", labels=[*TRAFFIC_LABELS, "reason"])
        for name, buckets_of, sum_of, doc in HISTOGRAMS:
            family = HistogramMetricFamily(name, doc, labels=TRAFFIC_LABELS)
            for _, labels, stats in versions:
                if stats is None:
                    continue
                for traffic, rs in stats.by_traffic.items():
                    family.add_metric([*labels, traffic],
                                      _buckets(getattr(rs, buckets_of), rs.bounds),
                                      getattr(rs, sum_of))
            yield family
        batch = HistogramMetricFamily("appliance_batch_size",
                                      "Rows per model execution (a dynamic batch is one)",
                                      labels=VERSION_LABELS)
        for _, labels, stats in versions:
            if stats is None:
                continue
            batch.add_metric(labels, _buckets(stats.batch_b, tuple(
                float(b) for b in stats.batch_bounds)), stats.rows_total)
            for traffic, rs in stats.by_traffic.items():
                for i, reason in enumerate(REASONS):
                    failures.add_metric([*labels, traffic, reason], rs.failed[i])
        yield from (batch, failures)

    def _models(self, versions: list[tuple[ServedVersion, list[str], VersionStats | None]]
                ) -> Iterator[Metric]:
        up = GaugeMetricFamily("appliance_model_up", "1 while the version is ready and not "
                               "failing at inference, else 0", labels=VERSION_LABELS)
        load = GaugeMetricFamily("appliance_model_load_seconds",
                                 "Seconds the version took to load", labels=VERSION_LABELS)
        warm = GaugeMetricFamily("appliance_model_warmup_seconds",
                                 "Seconds the version's warm-up took", labels=VERSION_LABELS)
        memory = GaugeMetricFamily("appliance_model_memory_bytes",
                                   "Resident-set growth of the process while the version "
                                   "loaded and warmed up (approximate)", labels=VERSION_LABELS)
        ready = 0
        for served, labels, _ in versions:
            is_up = served.ready and not self.monitor.failing(served)
            ready += served.ready
            up.add_metric(labels, 1 if is_up else 0)
            if served.ready:
                load.add_metric(labels, served.load_s)
                warm.add_metric(labels, served.warmup_s)
                memory.add_metric(labels, served.memory_bytes)
        loaded = GaugeMetricFamily("appliance_models_loaded",
                                   "Versions loaded and ready in this process", value=ready)
        yield from (up, load, warm, memory, loaded)

    def _audit(self) -> Iterator[Metric]:
        auditor = self.auditor_of()
        if auditor is None:
            return
        stats = auditor.stats()
        yield GaugeMetricFamily("appliance_audit_queue_depth",
                                "Inference audit records waiting for the writer",
                                value=stats["queued"])
        yield CounterMetricFamily("appliance_audit_written",
                                  "Inference audit records written", value=stats["written"])
        yield CounterMetricFamily("appliance_audit_dropped",
                                  "Inference audit records lost (queue full, failed commit)",
                                  value=stats["dropped"])


def metrics_registry(collector: ApplianceCollector) -> CollectorRegistry:
    """A private registry holding only ``collector`` (never the global default one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
