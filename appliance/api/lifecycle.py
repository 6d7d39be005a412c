"""Lifecycle API under ``/v1/models``: list, inspect, promote, approve, roll back.

Each handler runs in a worker thread on its own registry connection (SQLite in WAL
mode), so a slow load never blocks the event loop and never shares a transaction with
the server's connection. A promotion to a serving stage asks the server's repository to
``preload`` the version (load and warm it up without routing to it) and, once the
change is committed, to ``refresh`` routing in one step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio.to_thread
import msgspec
from litestar import Controller, get, post
from litestar.params import FromPath, JSONBody

from ..access.scopes import APPROVE, PROMOTE, READ
from ..lifecycle.gates import approvals, approve
from ..lifecycle.promotion import current_production, promote, rollback, stage_history
from ..registry import Registry
from .auth import actor_of, requires
from .registry_access import AnyRequest, with_registry
from .state import services_of

if TYPE_CHECKING:
    from ..services import Services


class PromoteBody(msgspec.Struct, kw_only=True):
    to: str
    reason: str = ""
    breaking: bool = False
    emergency_reason: str | None = None
    actor: str | None = None


class ApproveBody(msgspec.Struct, kw_only=True):
    approver: str
    reason: str


class RollbackBody(msgspec.Struct, kw_only=True):
    reason: str
    to_version: str | None = None
    force_reason: str | None = None
    actor: str | None = None


def _services(request: AnyRequest) -> Services:
    return services_of(request)


class LifecycleController(Controller):
    path = "/v1/models"
    tags = ["lifecycle"]

    @get("/", summary="Registered models, their versions and stages", guards=[requires(READ)])
    async def list_models(self, request: AnyRequest) -> list[dict[str, Any]]:
        def work(registry: Registry) -> list[dict[str, Any]]:
            out = []
            for m in registry.models():
                prod = current_production(registry, m.name)
                out.append({"name": m.name, "created_at": m.created_at,
                            "production": prod.version if prod else None,
                            "versions": [{"version": v.version, "stage": v.stage}
                                         for v in m.versions]})
            return out

        return await with_registry(request, work)

    @get("/{name:str}", summary="One model with every version", guards=[requires(READ)])
    async def model(self, request: AnyRequest, name: FromPath[str]) -> dict[str, Any]:
        return await with_registry(request, lambda r: r.model(name).to_dict())

    @get("/{name:str}/versions/{version:str}", guards=[requires(READ)],
         summary="One version with its stage history and approvals")
    async def version(self, request: AnyRequest, name: FromPath[str],
                      version: FromPath[str]) -> dict[str, Any]:
        def work(registry: Registry) -> dict[str, Any]:
            record = registry.version(name, version).to_dict()
            record["stage_history"] = stage_history(registry, name, version)
            record["approvals"] = approvals(registry, name, version)
            return record

        return await with_registry(request, work)

    @post("/{name:str}/versions/{version:str}/promote", status_code=200,
          guards=[requires(PROMOTE)],
          summary="Move a version to another stage, after its gates and a load check")
    async def promote_version(self, request: AnyRequest, name: FromPath[str],
                              version: FromPath[str],
                              data: JSONBody[PromoteBody]) -> dict[str, Any]:
        services = _services(request)
        summary = await with_registry(request, lambda r: promote(
            r, services.settings, name, version, data.to,
            actor=actor_of(request.user, data.actor, "api"),
            reason=data.reason, breaking=data.breaking,
            emergency_reason=data.emergency_reason, loader=services.repository.preload))
        await anyio.to_thread.run_sync(services.repository.refresh)
        return summary

    @post("/{name:str}/versions/{version:str}/approve", status_code=200,
          guards=[requires(APPROVE)],
          summary="Approve a version for production (not by its pusher)")
    async def approve_version(self, request: AnyRequest, name: FromPath[str],
                              version: FromPath[str],
                              data: JSONBody[ApproveBody]) -> dict[str, Any]:
        return await with_registry(
            request, lambda r: approve(r, name, version,
                                       actor_of(request.user, data.approver, data.approver),
                                       data.reason))

    @post("/{name:str}/rollback", status_code=200, guards=[requires(PROMOTE)],
          summary="Put an earlier production version back into production")
    async def rollback_model(self, request: AnyRequest, name: FromPath[str],
                       data: JSONBody[RollbackBody]) -> dict[str, Any]:
        services = _services(request)
        summary = await with_registry(request, lambda r: rollback(
            r, services.settings, name, to_version=data.to_version,
            actor=actor_of(request.user, data.actor, "api"), reason=data.reason,
            force_reason=data.force_reason,
            loader=services.repository.preload))
        await anyio.to_thread.run_sync(services.repository.refresh)
        return summary
