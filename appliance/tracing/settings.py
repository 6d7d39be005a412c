"""``[tracing]`` settings: where spans go and how many requests are traced.

    [tracing]
    endpoint = "http://collector:4318/v1/traces"   # OTLP over HTTP (protobuf); "" = off
    sample_ratio = 0.001        # traced share of requests that arrive without a trace
    service_name = "appliance"  # the resource's service.name
    enabled = true              # false turns tracing off while keeping the endpoint
    max_queue_size = 2048       # finished spans waiting for export; past it they are dropped
    max_export_batch_size = 512
    schedule_delay_ms = 5000    # how long the exporter thread waits to fill a batch
    export_timeout_s = 10.0     # one export, its retries included (and the flush at exit)

Tracing is on when ``enabled``, an ``endpoint`` is set and the ``otel`` extra is
installed (``pip install 'appliance[otel]'``). This module imports nothing of
OpenTelemetry: without the extra, or with tracing off, none of it is ever imported.
"""

from __future__ import annotations

import importlib.util
from typing import Annotated

import msgspec

from ..errors import ConfigError

__all__ = ["TracingSettings", "otel_installed"]

Ratio = Annotated[float, msgspec.Meta(ge=0, le=1)]
Positive = Annotated[int, msgspec.Meta(gt=0)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]


def otel_installed() -> bool:
    """Whether the ``otel`` extra (the SDK and the OTLP HTTP exporter) is importable; the
    check imports nothing."""
    try:
        return (importlib.util.find_spec("opentelemetry.sdk") is not None and
                importlib.util.find_spec("opentelemetry.exporter.otlp.proto.http")
                is not None)
    except (ImportError, ValueError):  # a missing parent package, or one blocked
        return False


class TracingSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """OpenTelemetry tracing of inference requests (docs/monitoring.md, "Traces")."""

    enabled: bool = True
    #: the collector's OTLP/HTTP traces URL; empty means no tracing
    endpoint: str = ""
    #: share of requests without an incoming ``traceparent`` that are traced; a request
    #: that carries one follows its sampled flag (ParentBased sampler)
    sample_ratio: Ratio = 0.001
    service_name: str = "appliance"
    max_queue_size: Positive = 2048
    max_export_batch_size: Positive = 512
    schedule_delay_ms: Positive = 5000
    export_timeout_s: Seconds = 10.0

    def wanted(self) -> bool:
        """Whether the settings ask for tracing (``enabled`` and an endpoint)."""
        return self.enabled and bool(self.endpoint)

    def check(self) -> None:
        """ConfigError naming the first bad value."""
        if not self.endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"tracing.endpoint must be an http:// or https:// URL (OTLP over "
                              f"HTTP, e.g. http://collector:4318/v1/traces); got "
                              f"{self.endpoint!r}")
        if self.max_export_batch_size > self.max_queue_size:
            raise ConfigError("tracing.max_export_batch_size must not exceed "
                              "tracing.max_queue_size")
