"""OpenTelemetry traces of inference requests, behind the optional ``otel`` extra.

    settings.py   ``[tracing]`` (TracingSettings); imports nothing of OpenTelemetry
    sampling.py   the sampling decision, once per request, before any span exists
    spans.py      RequestTracer / RequestTrace: the request path's marks and spans
    provider.py   the SDK: provider, ParentBased(TraceIdRatioBased) sampler, OTLP/HTTP
                  exporter behind a bounded BatchSpanProcessor

Only :func:`start_tracing` imports the SDK, and only when tracing is on; without the
extra or an endpoint nothing of OpenTelemetry is imported. docs/monitoring.md ("Traces").
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .settings import TracingSettings, otel_installed

if TYPE_CHECKING:
    from .spans import RequestTracer

__all__ = ["TracingSettings", "start_tracing"]

log = logging.getLogger(__name__)


def start_tracing(settings: TracingSettings) -> RequestTracer | None:
    """The request tracer the settings ask for; None while tracing is off (no endpoint,
    ``enabled = false``, or the ``otel`` extra missing: that is logged, not an error, so
    a box without the extra keeps serving). A bad value is a ConfigError."""
    if not settings.wanted():
        return None
    settings.check()
    if not otel_installed():
        log.warning("[tracing] endpoint is set but the otel extra is not installed "
                    "(pip install 'appliance[otel]'): requests are not traced")
        return None
    from .provider import build_tracer

    tracer = build_tracer(settings)
    log.info("tracing: sample_ratio %g, spans to %s", settings.sample_ratio,
             settings.endpoint)
    return tracer
