"""The inference routes, answered by a small ASGI front before the litestar app.

A litestar ``@post`` handler costs ~40-50 µs per request in routing, signature parsing,
request and response objects (measured: 173-219 µs of server CPU per request against
91-121 µs for a bare litestar handler returning a constant); for a model that predicts
in 8 µs that decides the race. The front matches ``POST /v2/models/{name}[/versions/{v}]
/infer``, reads the body and four headers straight from the ASGI scope, calls the data
plane and sends the bytes, with the same ``{"error": ...}`` answers as the rest of the
API. Every other route, and lifespan, is litestar's. The routes are added to the OpenAPI
document by hand (:func:`document_infer_routes`).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

import msgspec
from litestar import Litestar

from ..access.scopes import OPEN_DENIED, TRAFFIC_TEST
from ..errors import ApplianceError, PayloadTooLarge
from ..http_protocol import CHECKED_HEADERS
from ..monitoring.counters import TEST
from .auth import authenticate, authorize, requirement_of
from .errors import TOO_LARGE_HINT, error_answer
from .request_id import accepted_request_id, echoing, find_request_id

if TYPE_CHECKING:
    from ..services import Services
    from ..tracing.spans import RequestTracer

#: raw ASGI: the front sits below litestar, so its scopes and messages are plain dicts
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

INFER_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer/?$")
#: what the two inference routes require, from the one access table (api/auth.py)
_REQUIRES = {False: requirement_of("POST", "/v2/models/{name}/infer"),
             True: requirement_of("POST", "/v2/models/{name}/versions/{version}/infer")}


class MethodNotAllowed(ApplianceError):
    status = 405

#: the headers the front reads (one dict lookup per request header); X-Request-Id is echoed
_WANTED = {b"content-type": "content_type",
           b"inference-header-content-length": "header_length",
           b"x-request-timeout-ms": "timeout_ms",
           b"x-appliance-traffic": "traffic",
           b"x-request-id": "request_id"}
#: read as well while tracing is on (W3C Trace Context); without tracing they are ignored
_TRACE_HEADERS = {b"traceparent": "traceparent", b"tracestate": "tracestate"}


def _check_declared_length(headers: Iterable[tuple[bytes, bytes]], limit: int) -> None:
    """413 from ``Content-Length`` alone: a body declared too large is never read."""
    for key, value in headers:
        if key == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                return  # httptools refuses a malformed length before we get here
            if declared > limit:
                raise PayloadTooLarge(
                    f"request body too large ({declared} bytes declared, the limit is "
                    f"{limit}); {TOO_LARGE_HINT}")
            return


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk: bytes = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body too large (over {limit} bytes); "
                                      + TOO_LARGE_HINT)
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _shared_paths(app: Litestar) -> list[tuple[re.Pattern[str], bytes]]:
    """Routes with several handlers, each path's ``Allow`` answer: where handlers for one
    path come from several controllers (the governance DELETE on a version path), the
    OPTIONS answer litestar generates names only one controller's methods."""
    out = []
    for route in app.routes:
        methods = getattr(route, "methods", None)
        handlers = getattr(route, "route_handlers", [])
        options = [h for h in handlers if h.http_methods == {"OPTIONS"}]
        if not methods or not options or len(handlers) < 3:  # OPTIONS + two others
            continue
        pattern = re.escape(route.path_format)
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", pattern)
        out.append((re.compile(f"^{pattern}/?$"), ", ".join(sorted(methods)).encode()))
    return out


class InferenceFront:
    """An ASGI app in front of the litestar app: ``POST .../infer`` is answered here,
    everything else (and lifespan) goes to litestar."""

    def __init__(self, app: Litestar, services: Services) -> None:
        self.litestar = app
        self.services = services
        self._shared = _shared_paths(app)
        #: None while tracing is off; else it decides per request (appliance/tracing/)
        self.tracer: RequestTracer | None = services.tracing
        wanted = _WANTED if self.tracer is None else {**_WANTED, **_TRACE_HEADERS}
        routing = services.settings.routing  # a site's own test-traffic marker, if any
        marker = routing.test_header.lower().encode()
        self._wanted = wanted if marker in wanted else {**wanted, marker: "traffic_class"}
        self._test_value = routing.test_value.strip().lower()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            match = INFER_PATH.match(scope["path"])
            if match is not None:
                await self._infer(scope, receive, send, match.group(1), match.group(2))
                return
            if scope["method"] == "OPTIONS":
                send = self._allow_fixer(scope["path"], send)
            request_id = find_request_id(scope["headers"])
            if request_id is not None:
                send = echoing(send, accepted_request_id(request_id))
        await self.litestar(cast(Any, scope), cast(Any, receive), cast(Any, send))

    def _allow_fixer(self, path: str, send: Send) -> Send:
        allow = next((a for pattern, a in self._shared if pattern.match(path)), None)
        if allow is None:
            return send

        async def fixed(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [
                    (k, allow if k.lower() == b"allow" else v) for k, v in
                    message.get("headers", [])]}
            await send(message)
        return fixed

    async def _infer(self, scope: Scope, receive: Receive, send: Send, name: str,
                     version: str | None) -> None:
        kwargs: dict[str, Any] = {}
        wanted = self._wanted
        for key, value in scope["headers"]:
            field = wanted.get(key)
            if field is not None:
                kwargs[field] = value.decode("latin-1")
        request_id = kwargs.pop("request_id", None)
        marked = kwargs.pop("traffic_class", None)
        if marked is not None and marked.strip().lower() == self._test_value:
            kwargs["traffic"] = TEST
        trace = None  # a sampled request's trace: spans are made for it only
        if self.tracer is not None:
            trace = self.tracer.begin(kwargs.pop("traceparent", None),
                                      kwargs.pop("tracestate", None), scope["method"],
                                      version is not None)
        try:
            if scope["method"] != "POST":
                raise MethodNotAllowed(f"{scope['method']} is not allowed on "
                                       f"{scope['path']}: inference takes POST",
                                       headers={"Allow": "POST"})
            # before the body is read: a refused caller costs no upload
            requirement = _REQUIRES[version is not None]
            headers_in: list[tuple[bytes, bytes]] = scope["headers"]
            identity = await authenticate(headers_in, scope, self.services,
                                          always=requirement in OPEN_DENIED)
            authorize(identity, requirement, name)
            if TRAFFIC_TEST in identity.scopes:  # granted by name: admin does not imply it
                kwargs["traffic"] = TEST
            if trace is not None:
                trace.authenticated()
                kwargs["trace"] = trace
            limit = self.services.settings.max_body_bytes
            _check_declared_length(scope["headers"], limit)
            body = await _read_body(receive, limit)
            client = scope.get("client")
            caller = identity.subject if identity.via != "open" else (
                f"open:{client[0]}" if client else "open")
            content, headers = await self.services.dataplane.infer(
                name, version, body, caller=caller, headers_in=headers_in,
                subject=identity.subject if identity.via != "open" else None, **kwargs)
            status = 200
        except Exception as exc:  # the same answers as every other route (api/errors.py)
            status, message, headers = error_answer(exc, f"{scope['method']} {scope['path']}")
            content = msgspec.json.encode({"error": message})
            answered = getattr(exc, "answered_by", None)  # the data plane's (version, route)
            if answered is not None:
                headers = {**headers, "X-Model-Version": answered[0], "X-Route": answered[1]}
            if trace is not None:
                trace.failed(exc)
        media = headers.pop("Content-Type", "application/json")
        raw = [(b"content-type", media.encode()),
               (b"content-length", str(len(content)).encode())]
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        if request_id is not None:
            raw.append((b"x-request-id", accepted_request_id(request_id).encode()))
        if trace is not None:  # how the client finds its trace
            raw.append((b"traceparent", trace.traceparent))
        # every name is the front's own and every value is checked once by the protocol
        await send({"type": "http.response.start", "status": status, "headers": raw,
                    CHECKED_HEADERS: len(content)})
        await send({"type": "http.response.body", "body": content})
        if trace is not None:
            trace.finish(status)


def _operation(with_version: bool) -> dict[str, Any]:
    """The OpenAPI operation of one inference route (Open Inference Protocol schemas)."""
    params: list[dict[str, Any]] = [{"name": "name", "in": "path", "required": True,
                                     "schema": {"type": "string"}}]
    if with_version:
        params.append({"name": "version", "in": "path", "required": True,
                       "schema": {"type": "string"}})
    params += [
        {"name": "X-Request-Timeout-Ms", "in": "header", "required": False,
         "description": "deadline for this request in ms (overrides the model's timeout_ms)",
         "schema": {"type": "integer", "minimum": 0}},
        {"name": "X-Request-Id", "in": "header", "required": False,
         "description": "echoed on the response: 1-128 visible ASCII characters, any other "
                        "value is replaced by a fresh id (docs/operations.md)",
         "schema": {"type": "string", "maxLength": 128}},
        {"name": "X-Appliance-Traffic", "in": "header", "required": False,
         "description": "traffic class: production (default), test or synthetic; test "
                        "and synthetic requests are kept out of the production metrics "
                        "(docs/monitoring.md)",
         "schema": {"type": "string", "enum": ["production", "test", "synthetic"]}},
        {"name": "traceparent", "in": "header", "required": False,
         "description": "W3C Trace Context, read while tracing is on: a sampled flag (-01) "
                        "traces the request in the caller's trace, -00 never; a traced "
                        "response carries its own traceparent (docs/monitoring.md)",
         "schema": {"type": "string"}},
        {"name": "tracestate", "in": "header", "required": False,
         "description": "W3C Trace Context vendor state, kept with the traceparent",
         "schema": {"type": "string"}},
        {"name": "Inference-Header-Content-Length", "in": "header", "required": False,
         "description": "binary tensor extension: length of the JSON header at the start "
                        "of an application/octet-stream body",
         "schema": {"type": "integer", "minimum": 0}}]
    binary = {"schema": {"type": "string", "format": "binary"}}
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    return {
        "tags": ["models"],
        "operationId": "ModelVersionInfer" if with_version else "ModelInfer",
        "summary": "Inference" + (" on a version" if with_version else ""),
        "description": "Open Inference Protocol v2 inference request (JSON, or Triton's "
                       "binary tensor extension with Inference-Header-Content-Length). "
                       "See docs/api.md.",
        "parameters": params,
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}},
            "application/octet-stream": binary}},
        "responses": {
            "200": {"description": "Inference response", "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/InferenceResponse"}},
                "application/octet-stream": binary}},
            "415": {"description": "Unsupported content type", "content": error},
            "504": {"description": "Deadline passed", "content": error},
        }}


def document_infer_routes(schema: dict[str, Any]) -> None:
    """Add the inference routes to litestar's generated document (a JSON dict)."""
    paths = schema.setdefault("paths", {})
    paths["/v2/models/{name}/infer"] = {"post": _operation(False)}
    paths["/v2/models/{name}/versions/{version}/infer"] = {"post": _operation(True)}
