"""``GET /metrics``: the Prometheus text exposition of this process.

The handler is async, so the collector (appliance/monitoring/collector.py) reads the
request-path counters on the event loop, their only writer: one scrape is one consistent
state. The route exists only while ``[metrics] enabled = true``.
"""

from __future__ import annotations

from litestar import Controller, Response, get
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from ..access.scopes import METRICS_READ
from .auth import requires
from .registry_access import AnyRequest
from .state import services_of


class MetricsController(Controller):
    path = "/metrics"
    tags = ["monitoring"]

    @get("/", summary="Prometheus metrics (Triton's names; docs/monitoring.md)",
         guards=[requires(METRICS_READ)], media_type=CONTENT_TYPE_LATEST)
    async def metrics(self, request: AnyRequest) -> Response[bytes]:
        registry = services_of(request).metrics_registry
        assert registry is not None  # the route exists only with metrics on
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
