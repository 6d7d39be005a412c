"""The OpenTelemetry SDK wiring: provider, sampler, exporter, batch processor.

Imported only when tracing is on (:func:`appliance.tracing.start_tracing`). Spans are
exported by the :class:`~opentelemetry.sdk.trace.export.BatchSpanProcessor`'s own
thread, so the request path only appends a finished span to a bounded queue: with no
collector reachable, inference never waits (past ``max_queue_size`` spans are dropped,
with a warning), and one export with its retries gives up after ``export_timeout_s``.
No global tracer provider is set: the appliance's spans go to its own provider only.
"""

from __future__ import annotations

import threading

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from .. import __version__
from .sampling import DecidedTraceIds
from .settings import TracingSettings
from .spans import RequestTracer

__all__ = ["build_tracer"]


def build_tracer(settings: TracingSettings) -> RequestTracer:
    """A tracer exporting to ``settings.endpoint`` over OTLP/HTTP (protobuf)."""
    ids = DecidedTraceIds()
    provider = TracerProvider(
        sampler=ParentBased(root=TraceIdRatioBased(settings.sample_ratio)),
        resource=Resource.create({SERVICE_NAME: settings.service_name,
                                  SERVICE_VERSION: __version__}),
        id_generator=ids,
        shutdown_on_exit=False)  # Services.close flushes, within export_timeout_s
    exporter = OTLPSpanExporter(endpoint=settings.endpoint,
                                timeout=settings.export_timeout_s)
    timeout_ms = settings.export_timeout_s * 1000
    processor = BatchSpanProcessor(exporter, max_queue_size=settings.max_queue_size,
                                   schedule_delay_millis=settings.schedule_delay_ms,
                                   max_export_batch_size=settings.max_export_batch_size,
                                   export_timeout_millis=timeout_ms)
    provider.add_span_processor(processor)

    def shutdown() -> None:
        # the SDK's shutdown exports what is queued, batch by batch, and waits up to 30 s
        # for it: a daemon thread bounds the wait by export_timeout_s
        flusher = threading.Thread(target=provider.shutdown, name="tracing-shutdown",
                                   daemon=True)
        flusher.start()
        flusher.join(settings.export_timeout_s)

    return RequestTracer(provider.get_tracer("appliance", __version__), ids,
                         settings.sample_ratio, shutdown)
