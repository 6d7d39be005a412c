"""Open Inference Protocol v2 REST routes: thin translations to the data plane."""

from __future__ import annotations

from typing import Any

from litestar import Controller, get
from litestar.params import FromPath

from ..dataplane import DataPlane
from ..errors import ServiceUnavailable
from .auth import AUTHENTICATED, MODEL_ACCESS, requires
from .registry_access import AnyRequest


def _plane(request: AnyRequest) -> DataPlane:
    return request.app.state.dataplane  # type: ignore[no-any-return]


def _ready_body(request: AnyRequest, name: str, version: str | None) -> dict[str, Any]:
    """503 (with ``Retry-After`` while loading) unless the version is ready: the same
    check inference makes (``ModelRepository.ready_model``)."""
    served = _plane(request).model_ready(name, version)
    return {"name": name, "version": served.record.version, "ready": True}


class ServerController(Controller):
    path = "/v2"
    tags = ["server"]

    @get("/", summary="Server metadata", guards=[requires(AUTHENTICATED)])
    async def metadata(self, request: AnyRequest) -> dict[str, Any]:
        return _plane(request).server_metadata()

    @get("/health/live", summary="Liveness")
    async def live(self) -> dict[str, Any]:
        return {"live": True}

    @get("/health/ready", summary="Readiness: 200 once start-up model loading is done and "
         "no production model has failed")
    async def ready(self, request: AnyRequest) -> dict[str, Any]:
        why = _plane(request).not_ready_reason()
        if why is not None:
            raise ServiceUnavailable(why, headers={"Retry-After": "1"})
        return {"ready": True}


class ModelController(Controller):
    path = "/v2/models"
    tags = ["models"]

    @get("/{name:str}", summary="Model metadata (default version)",
         guards=[requires(MODEL_ACCESS)])
    async def metadata(self, request: AnyRequest, name: FromPath[str]) -> dict[str, Any]:
        return _plane(request).model_metadata(name, None)

    @get("/{name:str}/versions/{version:str}", summary="Model version metadata",
         guards=[requires(MODEL_ACCESS)])
    async def version_metadata(self, request: AnyRequest, name: FromPath[str],
                               version: FromPath[str]) -> dict[str, Any]:
        return _plane(request).model_metadata(name, version)

    @get("/{name:str}/ready", summary="Model readiness (default version)",
         guards=[requires(MODEL_ACCESS)])
    async def ready(self, request: AnyRequest, name: FromPath[str]) -> dict[str, Any]:
        return _ready_body(request, name, None)

    @get("/{name:str}/versions/{version:str}/ready", summary="Model version readiness",
         guards=[requires(MODEL_ACCESS)])
    async def version_ready(self, request: AnyRequest, name: FromPath[str],
                            version: FromPath[str]) -> dict[str, Any]:
        return _ready_body(request, name, version)
