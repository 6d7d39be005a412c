"""Alerting API under ``/v1``: list and acknowledge alerts, create/list/expire silences.

    GET    /v1/alerts                 ?state=&severity=&name=&model=&id=&matcher=  (models:read)
    POST   /v1/alerts/{alert_id}/ack  {"comment": "..."}                        (models:write)
    GET    /v1/silences               ?state=active|pending|expired              (models:read)
    POST   /v1/silences               {"matchers": [...], "duration_s" | "ends_at", "comment"}
    DELETE /v1/silences/{silence_id}  expire it now                              (models:write)

Handlers are thin: each calls the server's :class:`~appliance.alerts.engine.AlertEngine`
on a worker thread (SQLite never runs on the event loop) and returns typed Structs, so
the OpenAPI document describes every body. Who acted is the caller's token subject
(:func:`appliance.api.auth.actor_of`); a body naming someone else is a 403, and only
while auth is off is a named actor recorded. Bad input is a 400 naming what to fix
(unknown matcher operator, an end before the start), an unknown id a 404.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import anyio.to_thread
import msgspec
from litestar import Controller, delete, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from ..access.scopes import READ, WRITE, Identity
from ..alerts.engine import AlertEngine
from ..alerts.model import parse_time
from ..errors import ServiceUnavailable
from .auth import actor_of, requires
from .registry_access import AnyRequest
from .state import services_of

T = TypeVar("T")


class MatcherBody(msgspec.Struct, kw_only=True):
    name: str
    op: Literal["=", "!=", "=~", "!~"]
    value: str


class SilenceBody(msgspec.Struct, kw_only=True):
    matchers: list[MatcherBody]
    #: why (shown with the silence and in the audit record)
    comment: str
    #: ISO 8601; default now
    starts_at: str | None = None
    #: ISO 8601; give this or duration_s
    ends_at: str | None = None
    duration_s: float | None = None
    #: who creates it: the token's subject; naming another is 403 (auth off: recorded)
    created_by: str | None = None


class AckBody(msgspec.Struct, kw_only=True):
    comment: str = ""
    #: who acknowledges: the token's subject (auth off: recorded when given)
    actor: str | None = None


class AlertOut(msgspec.Struct, kw_only=True):
    id: str
    name: str
    labels: dict[str, str]
    annotations: dict[str, str]
    severity: str
    base_severity: str
    source: str
    state: str
    starts_at: str
    ends_at: str | None
    updated_at: str
    acked_by: str | None
    acked_at: str | None
    ack_comment: str
    level: int
    group_key: str
    silenced_by: list[str]
    inhibited_by: list[str]


class MatcherOut(msgspec.Struct, kw_only=True):
    name: str
    op: str
    value: str


class SilenceOut(msgspec.Struct, kw_only=True):
    id: str
    matchers: list[MatcherOut]
    starts_at: str
    ends_at: str
    created_by: str
    comment: str
    created_at: str
    expired_at: str | None
    expired_by: str | None
    state: str


def _engine(request: AnyRequest) -> AlertEngine:
    engine = services_of(request).alerts
    if engine is None:
        raise ServiceUnavailable("alerting is off on this appliance: set [alerts] "
                                 "enabled = true in the configuration")
    return engine


async def _run(request: AnyRequest, fn: Callable[[AlertEngine], T]) -> T:
    engine = _engine(request)
    return await anyio.to_thread.run_sync(lambda: fn(engine))


def _actor(request: AnyRequest, claimed: str | None, default: str) -> str:
    identity = request.scope.get("user")
    if not isinstance(identity, Identity):
        return claimed or default
    return actor_of(identity, claimed, default)


def _alert(found: dict[str, Any]) -> AlertOut:
    return msgspec.convert(found, AlertOut)


class AlertController(Controller):
    path = "/v1/alerts"
    tags = ["alerts"]

    @get("/", summary="Alerts, firing and recently resolved, with silences/inhibitions",
         guards=[requires(READ)])
    async def alerts(self, request: AnyRequest,
                     status: Annotated[Literal["firing", "resolved"] | None,
                                       QueryParameter(name="state")] = None,
                     severity: FromQuery[Literal["info", "warning", "critical"] | None] = None,
                     name: FromQuery[str | None] = None, model: FromQuery[str | None] = None,
                     id: FromQuery[str | None] = None,
                     matcher: FromQuery[list[str] | None] = None) -> list[AlertOut]:
        found = await _run(request, lambda e: e.list_alerts(
            state=status, severity=severity, name=name, model=model, matchers=matcher,
            alert_id=id))
        return [_alert(a) for a in found]

    @post("/{alert_id:str}/ack", status_code=200, guards=[requires(WRITE)],
          summary="Acknowledge a firing alert: its escalation and repeats stop")
    async def ack(self, request: AnyRequest, alert_id: FromPath[str],
                  data: JSONBody[AckBody]) -> AlertOut:
        actor = _actor(request, data.actor, "anonymous")
        return _alert(await _run(request, lambda e: e.ack(alert_id, actor, data.comment)))


class SilenceController(Controller):
    path = "/v1/silences"
    tags = ["alerts"]

    @get("/", summary="Silences (all, or ?state=active|pending|expired)",
         guards=[requires(READ)])
    async def silences(self, request: AnyRequest,
                       status: Annotated[Literal["active", "pending", "expired"] | None,
                                         QueryParameter(name="state")] = None
                       ) -> list[SilenceOut]:
        found = await _run(request, lambda e: e.list_silences(status))
        return [msgspec.convert(s, SilenceOut) for s in found]

    @post("/", status_code=201, guards=[requires(WRITE)],
          summary="Silence the alerts matching every matcher for a while (audited)")
    async def create(self, request: AnyRequest, data: JSONBody[SilenceBody]) -> SilenceOut:
        created_by = _actor(request, data.created_by, "anonymous")
        starts = parse_time(data.starts_at, "starts_at") if data.starts_at else None
        ends = parse_time(data.ends_at, "ends_at") if data.ends_at else None
        matchers: list[Any] = [msgspec.structs.asdict(m) for m in data.matchers]

        def make(engine: AlertEngine) -> dict[str, Any]:
            silence = engine.create_silence(matchers, created_by=created_by,
                                            comment=data.comment, starts_at=starts,
                                            ends_at=ends, duration_s=data.duration_s)
            return silence.to_dict(engine.clock())

        return msgspec.convert(await _run(request, make), SilenceOut)

    @delete("/{silence_id:str}", status_code=200, guards=[requires(WRITE)],
            summary="Expire a silence now (audited)")
    async def expire(self, request: AnyRequest, silence_id: FromPath[str]) -> SilenceOut:
        actor = _actor(request, None, "anonymous")

        def end(engine: AlertEngine) -> dict[str, Any]:
            return engine.expire_silence(silence_id, actor).to_dict(engine.clock())

        return msgspec.convert(await _run(request, end), SilenceOut)


ALERT_ROUTES = [AlertController, SilenceController]
