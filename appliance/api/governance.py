"""Governance API under ``/v1``: consumers, lineage, legal holds, deletion, deprecation.

Like the lifecycle routes, each handler runs in a worker thread on a registry connection
of its own (SQLite in WAL mode), and no handler shares a transaction with the server's
connection. A deprecation only queues its webhooks (the outbox); this process's outbox
worker sends them afterwards, never in the request. Refusals come back as
``{"error": ...}`` with their status (409 naming the hold for a held version).

Who acted is the caller's token subject, as for promote and approve
(:func:`appliance.api.auth.actor_of`): a body or query naming someone else (``actor``,
``by``, ``placed_by``) is a 403; only while auth is off is the named actor recorded. The
``holder`` of a legal hold is on whose behalf it is kept, a field apart from who placed
it.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from litestar import Controller, delete, get, post
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.types import ControllerRouterHandler

from ..access.scopes import READ, WRITE, Identity
from ..errors import BadRequest
from ..lifecycle.settings import WebhookSettings
from .auth import actor_of, requires
from .registry_access import AnyRequest, with_registry
from .state import services_of


class ConsumerBody(msgspec.Struct, kw_only=True):
    name: str
    model: str
    reads: list[str]
    contact: str
    webhook: str | None = None


class HoldBody(msgspec.Struct, kw_only=True):
    #: on whose behalf the hold is kept (e.g. legal-dept)
    holder: str
    reason: str
    #: who places it: the token's subject; naming another is 403 (with auth off: recorded)
    placed_by: str | None = None


class ReleaseBody(msgspec.Struct, kw_only=True):
    #: who releases: the token's subject; naming another is 403 (with auth off: required)
    by: str | None = None


class DeprecateBody(msgspec.Struct, kw_only=True):
    deprecation_date: str
    sunset_date: str | None = None
    successor: str | None = None
    actor: str | None = None


def _actor(request: AnyRequest, claimed: str | None, default: str) -> str:
    """The token's subject (Forbidden when ``claimed`` names someone else); with auth
    off, ``claimed`` or ``default``."""
    identity = request.scope.get("user")
    if not isinstance(identity, Identity):
        return claimed or default
    return actor_of(identity, claimed, default)


def _webhooks(request: AnyRequest) -> WebhookSettings:
    return services_of(request).settings.lifecycle.webhooks


async def _fields(request: AnyRequest, *names: str) -> dict[str, str | None]:
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
    async def consumers(self, request: AnyRequest,
                        model: FromQuery[str | None] = None) -> list[dict[str, Any]]:
        from ..lifecycle.consumers import list_consumers

        found = await with_registry(request, lambda r: list_consumers(r, model))
        return [c.to_dict() for c in found]

    @post("/", status_code=200, summary="Register a consumer of a model",
          guards=[requires(WRITE)])
    async def add(self, request: AnyRequest, data: JSONBody[ConsumerBody]) -> dict[str, Any]:
        from ..lifecycle.consumers import add_consumer

        actor = _actor(request, None, data.name)
        webhooks = _webhooks(request)
        consumer = await with_registry(request, lambda r: add_consumer(
            r, data.name, data.model, data.reads, data.contact, data.webhook, actor=actor,
            webhooks=webhooks))
        return consumer.to_dict()


class GovernanceController(Controller):
    path = "/v1/models"
    tags = ["governance"]

    @get("/{name:str}/versions/{version:str}/lineage", guards=[requires(READ)],
         summary="Training job, parents (recursively) and stage history of a version")
    async def lineage(self, request: AnyRequest, name: FromPath[str],
                      version: FromPath[str]) -> dict[str, Any]:
        from ..lifecycle.lineage import lineage

        return await with_registry(request, lambda r: lineage(r, name, version))

    @post("/{name:str}/versions/{version:str}/hold", status_code=200,
          guards=[requires(WRITE)],
          summary="Place a legal hold: no deletion until released")
    async def hold(self, request: AnyRequest, name: FromPath[str], version: FromPath[str],
                   data: JSONBody[HoldBody]) -> dict[str, Any]:
        from ..lifecycle.holds import place_hold

        placed_by = _actor(request, data.placed_by, data.holder)
        hold = await with_registry(request, lambda r: place_hold(
            r, name, version, data.holder, data.reason, placed_by=placed_by))
        return hold.to_dict()

    @post("/{name:str}/versions/{version:str}/release", status_code=200,
          guards=[requires(WRITE)],
          summary="Release the legal holds on a version")
    async def release(self, request: AnyRequest, name: FromPath[str], version: FromPath[str],
                      data: JSONBody[ReleaseBody]) -> list[dict[str, Any]]:
        from ..lifecycle.holds import release_hold

        by = _actor(request, data.by, "")
        holds = await with_registry(request, lambda r: release_hold(r, name, version, by))
        return [h.to_dict() for h in holds]

    @post("/{name:str}/versions/{version:str}/deprecate", status_code=200,
          guards=[requires(WRITE)],
          summary="Record a deprecation (dates, successor) and notify the model's consumers")
    async def deprecate(self, request: AnyRequest, name: FromPath[str], version: FromPath[str],
                        data: JSONBody[DeprecateBody]) -> dict[str, Any]:
        from ..lifecycle.deprecation import deprecate
        from ..lifecycle.webhooks import kick

        actor = _actor(request, data.actor, "api")
        result = await with_registry(request, lambda r: deprecate(
            r, name, version, deprecation_date=data.deprecation_date,
            sunset_date=data.sunset_date, successor=data.successor, actor=actor))
        if any(n["outbox_id"] for n in result["notices"]):
            kick(services_of(request).registry.data_dir, _webhooks(request))
        return result


@delete("/v1/models/{name:str}/versions/{version:str}", status_code=200, tags=["governance"],
        guards=[requires(WRITE)],
        summary="Delete an archived, failed or registered version (409 while held); "
                "actor and reason in the JSON body or the query string")
async def delete_model_version(request: AnyRequest, name: FromPath[str],
                               version: FromPath[str]) -> dict[str, Any]:
    """A plain handler, not a controller method: litestar refuses two controllers with a
    handler on the same path (each brings an OPTIONS handler), and ``GET`` on this path
    belongs to the lifecycle controller. Register it after that controller."""
    from ..lifecycle.deletion import delete_version

    given = await _fields(request, "actor", "reason")
    actor, reason = _actor(request, given["actor"], ""), given["reason"] or ""
    deletion = await with_registry(request, lambda r: delete_version(
        r, name, version, actor=actor, reason=reason))
    return deletion.to_dict()


#: register in this order, after ``LifecycleController`` (see :func:`delete_model_version`)
GOVERNANCE_ROUTES: list[ControllerRouterHandler] = [ConsumerController, GovernanceController,
                                                  delete_model_version]
