"""Admin API under ``/v1``: what the box is and what it serves."""

from __future__ import annotations

from typing import Any

from litestar import Controller, get

from ..access.scopes import READ
from .auth import requires
from .registry_access import AnyRequest
from .state import services_of


class HardwareController(Controller):
    path = "/v1/hardware"
    tags = ["admin"]

    @get("/", summary="Hardware facts, the matched profile and why",
         guards=[requires(READ)])
    async def hardware(self, request: AnyRequest) -> dict[str, Any]:
        return services_of(request).hardware.report()
