"""Routing and experiment routes under ``/v1`` (docs/routing.md).

    GET    /v1/routes                        every stored route
    GET    /v1/routes/{name}                 the route, its state, what it does now; ETag
    PUT    /v1/routes/{name}                 set it (If-Match: the ETag read; stale → 412)
    DELETE /v1/routes/{name}                 back to the default route (If-Match too)
    GET    /v1/routes/{name}/shadow-report   shadow agreement, differences, PSI, latency
    GET    /v1/routes/{name}/decisions       a dry-run route's logged decisions
    GET    /v1/experiments/{name}            per arm: counts, rewards, intervals, decision

Handlers translate and delegate to :mod:`appliance.routing.operations` on a worker
thread; a change is applied to this server's routes before the answer is sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio.to_thread
from litestar import Controller, Response, delete, get, put
from litestar.params import FromPath

from ..access.scopes import READ, ROUTES_WRITE
from ..errors import NotFound
from ..registry import Registry
from ..routing import operations
from ..routing.experiment import experiment_report
from .auth import actor_of, requires
from .registry_access import AnyRequest, with_registry
from .state import services_of

if TYPE_CHECKING:
    from ..services import Services


def _ready(services: Services, name: str) -> set[str]:
    try:
        versions = services.repository.versions(name)
    except Exception:
        return set()
    return {v for v, served in versions.items() if served.ready}


def _answer(body: dict[str, Any]) -> Response[dict[str, Any]]:
    etag = body.get("etag")
    return Response(body, headers={"ETag": etag} if etag else {})


class RoutesController(Controller):
    path = "/v1/routes"
    tags = ["routing"]

    @get("/", guards=[requires(READ)], summary="Every stored route")
    async def list_routes(self, request: AnyRequest) -> list[dict[str, Any]]:
        return await with_registry(request, operations.list_routes)

    @get("/{name:str}", guards=[requires(READ)],
         summary="A model's route, its state and what it does now (with its ETag)")
    async def route(self, request: AnyRequest, name: FromPath[str]
                    ) -> Response[dict[str, Any]]:
        router = services_of(request).repository.router
        return _answer(await with_registry(
            request, lambda r: operations.describe(r, name, router)))

    @put("/{name:str}", guards=[requires(ROUTES_WRITE)], status_code=200,
         summary="Set a model's route; send If-Match with the ETag you read")
    async def set_route(self, request: AnyRequest, name: FromPath[str]
                        ) -> Response[dict[str, Any]]:
        services = services_of(request)
        body = await request.body()
        actor = actor_of(request.user, None, "api")
        if_match = request.headers.get("if-match")
        ready = _ready(services, name)
        stored = await with_registry(request, lambda r: operations.put(
            r, name, body, actor=actor, if_match=if_match, ready=ready))
        await anyio.to_thread.run_sync(services.repository.refresh)
        return _answer(stored.to_dict())

    @delete("/{name:str}", guards=[requires(ROUTES_WRITE)], status_code=200,
            summary="Remove a model's route (back to the default route)")
    async def delete_route(self, request: AnyRequest, name: FromPath[str]
                           ) -> dict[str, Any]:
        services = services_of(request)
        actor = actor_of(request.user, None, "api")
        if_match = request.headers.get("if-match")
        removed = await with_registry(request, lambda r: operations.remove(
            r, name, actor=actor, if_match=if_match))
        await anyio.to_thread.run_sync(services.repository.refresh)
        return {"model": name, "deleted": removed.to_dict()}

    @get("/{name:str}/shadow-report", guards=[requires(READ)],
         summary="Per shadow version: agreement, max and mean difference, PSI, latency")
    async def shadow_report(self, request: AnyRequest, name: FromPath[str]
                            ) -> dict[str, Any]:
        services = services_of(request)
        return await with_registry(request, lambda r: operations.shadow_report(
            r, name, services.repository.router, services.dataplane.shadow))

    @get("/{name:str}/decisions", guards=[requires(READ)],
         summary="A dry-run route's decisions (what it would have done), newest last")
    async def decisions(self, request: AnyRequest, name: FromPath[str]) -> dict[str, Any]:
        router = services_of(request).repository.router
        runtime = router.runtimes.get(name) if router is not None else None
        if runtime is None:
            return {"model": name, "decisions": [], "counts": {}}
        return {"model": name, "decisions": list(runtime.dry_log),
                "counts": dict(runtime.dry_counts)}


class ExperimentsController(Controller):
    path = "/v1/experiments"
    tags = ["routing"]

    @get("/{name:str}", guards=[requires(READ)],
         summary="Per arm: counts, mean reward with interval, and a sequential decision")
    async def report(self, request: AnyRequest, name: FromPath[str]) -> dict[str, Any]:
        routing = services_of(request).routing
        if routing is None:
            raise NotFound("routing is not running on this server yet (models still "
                           "loading): try again shortly")

        def run(registry: Registry) -> dict[str, Any]:
            routing.rewards.flush()
            return experiment_report(registry, routing.rewards, name)

        return await with_registry(request, run)
