"""Governance API under ``/v1``: consumers, lineage, legal holds, deletion, deprecation.

Like the lifecycle routes, each handler runs in a worker thread on a registry connection
of its own (SQLite in WAL mode): deprecation calls webhooks, which must not block the
event loop, and no handler shares a transaction with the server's connection. Refusals
come back as ``{"error": ...}`` with their status (409 naming the hold for a held
version).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.params import FromPath, FromQuery, JSONBody

from ..errors import BadRequest
from ..security.scopes import READ, WRITE
from .auth import requires
from .registry_access import with_registry


class ConsumerBody(msgspec.Struct, kw_only=True):
    name: str
    model: str
    reads: list[str]
    contact: str
    webhook: str | None = None


class HoldBody(msgspec.Struct, kw_only=True):
    holder: str
    reason: str


class ReleaseBody(msgspec.Struct, kw_only=True):
    by: str


class DeprecateBody(msgspec.Struct, kw_only=True):
    deprecation_date: str
    sunset_date: str | None = None
    successor: str | None = None
    actor: str | None = None


async def _fields(request: Request, *names: str) -> dict[str, str | None]:
    """``names`` from the JSON body (if any), else from the query string."""
    raw = await request.body()
    body: Any = {}
    if raw.strip():
        try:
            body = json.loads(raw)
        except ValueError:
            raise BadRequest("the body is not JSON; send e.g. "
                             '{"actor": "alice", "reason": "superseded"}') from None
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
    return {n: body.get(n) if body.get(n) is not None else request.query_params.get(n)
            for n in names}


class ConsumerController(Controller):
    path = "/v1/consumers"
    tags = ["governance"]

    @get("/", summary="Consumers of every model, or of ?model=", guards=[requires(READ)])
    async def consumers(self, request: Request,
                        model: FromQuery[str | None] = None) -> list[dict[str, Any]]:
        from ..lifecycle.consumers import list_consumers

        found = await with_registry(request, lambda r: list_consumers(r, model))
        return [c.to_dict() for c in found]

    @post("/", status_code=200, summary="Register a consumer of a model",
          guards=[requires(WRITE)])
    async def add(self, request: Request, data: JSONBody[ConsumerBody]) -> dict[str, Any]:
        from ..lifecycle.consumers import add_consumer

        consumer = await with_registry(request, lambda r: add_consumer(
            r, data.name, data.model, data.reads, data.contact, data.webhook))
        return consumer.to_dict()


class GovernanceController(Controller):
    path = "/v1/models"
    tags = ["governance"]

    @get("/{name:str}/versions/{version:str}/lineage", guards=[requires(READ)],
         summary="Training job, parents (recursively) and stage history of a version")
    async def lineage(self, request: Request, name: FromPath[str],
                      version: FromPath[str]) -> dict[str, Any]:
        from ..lifecycle.lineage import lineage

        return await with_registry(request, lambda r: lineage(r, name, version))

    @post("/{name:str}/versions/{version:str}/hold", status_code=200,
          guards=[requires(WRITE)],
          summary="Place a legal hold: no deletion until released")
    async def hold(self, request: Request, name: FromPath[str], version: FromPath[str],
                   data: JSONBody[HoldBody]) -> dict[str, Any]:
        from ..lifecycle.holds import place_hold

        hold = await with_registry(request, lambda r: place_hold(
            r, name, version, data.holder, data.reason))
        return hold.to_dict()

    @post("/{name:str}/versions/{version:str}/release", status_code=200,
          guards=[requires(WRITE)],
          summary="Release the legal holds on a version")
    async def release(self, request: Request, name: FromPath[str], version: FromPath[str],
                      data: JSONBody[ReleaseBody]) -> list[dict[str, Any]]:
        from ..lifecycle.holds import release_hold

        holds = await with_registry(request, lambda r: release_hold(r, name, version, data.by))
        return [h.to_dict() for h in holds]

    @post("/{name:str}/versions/{version:str}/deprecate", status_code=200,
          guards=[requires(WRITE)],
          summary="Record a deprecation (dates, successor) and notify the model's consumers")
    async def deprecate(self, request: Request, name: FromPath[str], version: FromPath[str],
                        data: JSONBody[DeprecateBody]) -> dict[str, Any]:
        from ..lifecycle.deprecation import deprecate

        return await with_registry(request, lambda r: deprecate(
            r, name, version, deprecation_date=data.deprecation_date,
            sunset_date=data.sunset_date, successor=data.successor,
            actor=data.actor or "api"))


@delete("/v1/models/{name:str}/versions/{version:str}", status_code=200, tags=["governance"],
        guards=[requires(WRITE)],
        summary="Delete an archived, failed or registered version (409 while held); "
                "actor and reason in the JSON body or the query string")
async def delete_model_version(request: Request, name: FromPath[str],
                               version: FromPath[str]) -> dict[str, Any]:
    """A plain handler, not a controller method: litestar refuses two controllers with a
    handler on the same path (each brings an OPTIONS handler), and ``GET`` on this path
    belongs to the lifecycle controller. Register it after that controller."""
    from ..lifecycle.deletion import delete_version

    given = await _fields(request, "actor", "reason")
    actor, reason = given["actor"] or "", given["reason"] or ""
    deletion = await with_registry(request, lambda r: delete_version(
        r, name, version, actor=actor, reason=reason))
    return deletion.to_dict()


#: register in this order, after ``LifecycleController`` (see :func:`delete_model_version`)
GOVERNANCE_ROUTES = [ConsumerController, GovernanceController, delete_model_version]
