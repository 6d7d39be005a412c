"""The hub's own HTTP API: enrolments, reports and operator commands, nothing else
(metadata and targets are static files under ``/repo`` or on a CDN).

    POST /v1/enroll           open: the one-time token in the body        (201)
    POST /v1/reports          device-signed (X-Device-Id, X-Device-Signature)  (200)
    GET  /v1/health/live      open
    GET  /v1/devices          hub:read      ?group=G
    GET  /v1/groups           hub:read
    POST /v1/groups           hub:operate   {"name", "description"}
    POST /v1/enroll-tokens    hub:operate   {"group", "ttl_s"}
    POST /v1/assignments      hub:operate   {"group", "model", "version", "stage"}
    GET  /v1/packages         hub:read      ?model=M
    POST /v1/publish          hub:publish   the package .tar as the body
    GET  /v1/audit/verify     hub:read

Operators and CI publishers are Bearer-token principals checked by the appliance's own
:class:`~appliance.access.authenticator.Authenticator` (always on here: the hub has no
open mode); boxes prove themselves with their device key instead. The token's subject is
the actor recorded in the audit chain. Handlers only translate: the work is in
:mod:`.enrolment`, :mod:`.reports`, :mod:`.publish`, :mod:`.rollout`, :mod:`.fleet`.
"""

from __future__ import annotations

import base64
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any, cast

import anyio.to_thread
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.params import FromQuery, JSONBody

from ..access.authenticator import Authenticator
from ..access.scopes import HUB_OPERATE, HUB_PUBLISH, HUB_READ, Identity, require
from ..errors import BadRequest, PayloadTooLarge
from . import enrolment, fleet, publish, reports, rollout
from .audit_chain import verify_chain
from .services import Hub

_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
#: the routes without a Bearer guard (a test checks every other route has one): boxes
#: prove themselves with the enrolment token or their device key instead
OPEN_ROUTES = frozenset({("POST", "/v1/enroll"), ("POST", "/v1/reports"),
                         ("GET", "/v1/health/live")})


class EnrollRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    token: str
    signing_key: str
    encryption_key: str
    hardware: dict[str, Any] = msgspec.field(default_factory=dict)


class GroupRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: _Name
    description: Annotated[str, msgspec.Meta(max_length=1000)] = ""


class TokenRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    group: _Name
    ttl_s: Annotated[int, msgspec.Meta(ge=1)] | None = None


class AssignmentRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    group: _Name
    model: _Name
    version: _Name
    stage: _Name


def hub_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Hub:
    return cast(Hub, connection.app.state.hub)


class HubScope:
    """A guard: a Bearer token (or mapped client certificate) holding ``scope``."""

    def __init__(self, scope: str) -> None:
        self.scope = scope

    async def __call__(self, connection: ASGIConnection[Any, Any, Any, Any],
                       _: BaseRouteHandler | None = None) -> None:
        authenticator = cast(Authenticator, connection.app.state.authenticator)
        identity = await authenticator.identify(connection.headers.get("authorization"),
                                                connection.scope, always=True)
        require(identity, self.scope)
        connection.scope["user"] = identity

    def __repr__(self) -> str:
        return f"requires({self.scope!r})"


def actor_of(request: Request[Any, Any, Any]) -> str:
    """Who the audit chain records: the authenticated subject."""
    return cast(Identity, request.scope["user"]).subject


async def read_body(request: Request[Any, Any, Any], limit: int, what: str) -> bytes:
    """The request body, refused with 413 once it passes ``limit`` bytes (at once when
    Content-Length says so, before anything is read)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"{what} is {declared} bytes, more than this hub accepts "
                              f"({limit})")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"{what} is more than the {limit} bytes this hub accepts")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(body: bytes, kind: type[Any], what: str) -> Any:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.DecodeError as exc:  # ValidationError included
        raise BadRequest(f"{what}: {exc}") from None


class DeviceController(Controller):
    """The two calls a box makes."""

    path = "/v1"

    @post("/enroll", status_code=201)
    async def enroll(self, request: Request[Any, Any, Any]) -> dict[str, Any]:
        hub = hub_of(request)
        body = await read_body(request, hub.settings.enroll_max_bytes, "the enrolment")
        data = _decode(body, EnrollRequest, "the enrolment body")
        done = await anyio.to_thread.run_sync(
            lambda: enrolment.enroll(hub, data.token, data.signing_key, data.encryption_key,
                                     data.hardware))
        base = (hub.settings.repository_url or "repo").rstrip("/")
        return {"device_id": done.device_id, "group": done.group,
                "root": base64.b64encode(done.root).decode(),
                "metadata_url": f"{base}/metadata/", "targets_url": f"{base}/targets/"}

    @post("/reports", status_code=200)
    async def report(self, request: Request[Any, Any, Any]) -> dict[str, Any]:
        hub = hub_of(request)
        body = await read_body(request, hub.settings.report_max_bytes, "the report")
        device_id = request.headers.get("x-device-id")
        signature = request.headers.get("x-device-signature")
        return await anyio.to_thread.run_sync(
            lambda: reports.receive_report(hub, body, device_id, signature))

    @get("/health/live")
    async def live(self) -> dict[str, str]:
        return {"status": "live"}


class OperatorController(Controller):
    """Operator and publisher commands; every change is in the audit chain."""

    path = "/v1"

    @get("/devices", guards=[HubScope(HUB_READ)], sync_to_thread=True)
    def devices(self, request: Request[Any, Any, Any],
                group: FromQuery[str | None] = None) -> list[dict[str, Any]]:
        return fleet.list_devices(hub_of(request), group)

    @get("/groups", guards=[HubScope(HUB_READ)], sync_to_thread=True)
    def groups(self, request: Request[Any, Any, Any]) -> list[dict[str, Any]]:
        return fleet.list_groups(hub_of(request))

    @post("/groups", guards=[HubScope(HUB_OPERATE)], status_code=201, sync_to_thread=True)
    def add_group(self, request: Request[Any, Any, Any],
                  data: JSONBody[GroupRequest]) -> dict[str, Any]:
        return fleet.add_group(hub_of(request), data.name, data.description,
                               actor=actor_of(request))

    @post("/enroll-tokens", guards=[HubScope(HUB_OPERATE)], status_code=201,
          sync_to_thread=True)
    def enroll_token(self, request: Request[Any, Any, Any],
                     data: JSONBody[TokenRequest]) -> dict[str, str]:
        return enrolment.issue_token(hub_of(request), data.group, data.ttl_s,
                                     actor=actor_of(request)).to_dict()

    @post("/assignments", guards=[HubScope(HUB_OPERATE)], status_code=201,
          sync_to_thread=True)
    def assign(self, request: Request[Any, Any, Any],
               data: JSONBody[AssignmentRequest]) -> dict[str, Any]:
        return rollout.assign(hub_of(request), data.group, data.model, data.version,
                              data.stage, actor=actor_of(request))

    @get("/packages", guards=[HubScope(HUB_READ)], sync_to_thread=True)
    def packages(self, request: Request[Any, Any, Any],
                 model: FromQuery[str | None] = None) -> list[dict[str, Any]]:
        return publish.list_packages(hub_of(request), model)

    @post("/publish", guards=[HubScope(HUB_PUBLISH)])
    async def publish(self, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        hub = hub_of(request)
        path = await _upload(request, hub)
        try:
            record = await anyio.to_thread.run_sync(
                lambda: publish.publish(hub, path, actor=actor_of(request)))
        finally:
            path.unlink(missing_ok=True)
        return Response(record, status_code=201 if record["published"] else 200)

    @get("/audit/verify", guards=[HubScope(HUB_READ)], sync_to_thread=True)
    def verify(self, request: Request[Any, Any, Any]) -> dict[str, Any]:
        return verify_chain(hub_of(request).store)


async def _upload(request: Request[Any, Any, Any], hub: Hub) -> Path:
    """The request body streamed into a file under the hub's tmp/ (413 past
    ``publish_max_bytes``)."""
    limit = hub.settings.publish_max_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the package is {declared} bytes, more than publish_max_bytes "
                              f"({limit})")
    fd, name = tempfile.mkstemp(prefix="upload-", suffix=".tar", dir=hub.tmp_dir)
    path, size = Path(name), 0
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"the package is more than publish_max_bytes "
                                          f"({limit})")
                await anyio.to_thread.run_sync(out.write, chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if size == 0:
        path.unlink(missing_ok=True)
        raise BadRequest("POST /v1/publish takes the package .tar as its body; the body "
                         "was empty")
    return path
