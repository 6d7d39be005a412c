"""``GET /v1/health`` and ``GET /v1/health/models/{name}``: ok | degraded | failing with
reasons, per model and per dependency (appliance/monitoring/health.py). These answer 200
whatever the status says: liveness and readiness stay ``/v2/health/live`` and
``/v2/health/ready``, which a degraded box never fails."""

from __future__ import annotations

from typing import Any

from litestar import Controller, get
from litestar.params import FromPath

from ..access.scopes import METRICS_READ
from .auth import requires
from .registry_access import AnyRequest
from .state import services_of


class HealthController(Controller):
    path = "/v1/health"
    tags = ["monitoring"]

    @get("/", summary="Health: ok, degraded or failing, with reasons",
         guards=[requires(METRICS_READ)])
    async def health(self, request: AnyRequest) -> dict[str, Any]:
        return services_of(request).health.report()

    @get("/models/{name:str}", summary="Health of one model's served versions",
         guards=[requires(METRICS_READ)])
    async def model_health(self, request: AnyRequest, name: FromPath[str]) -> dict[str, Any]:
        return services_of(request).health.model_report(name)
