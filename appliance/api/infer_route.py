"""The inference routes, answered by a small ASGI front before the litestar app.

A litestar ``@post`` handler costs ~40-50 µs per request in routing, signature parsing,
request and response objects (measured: 173-219 µs of server CPU per request against
91-121 µs for a bare litestar handler returning a constant); for a model that predicts
in 8 µs that decides the race. The front matches ``POST /v2/models/{name}[/versions/{v}]
/infer``, reads the body and three headers straight from the ASGI scope, calls the data
plane and sends the bytes, with the same ``{"error": ...}`` answers as the rest of the
API. Every other route, and lifespan, is litestar's. The routes are added to the OpenAPI
document by hand (:func:`document_infer_routes`).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import msgspec
from litestar import Litestar
from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    Parameter,
    PathItem,
    RequestBody,
    Schema,
)
from litestar.types import Receive, Scope, Send

from ..errors import ApplianceError, PayloadTooLarge
from ..security.scopes import require_infer
from .auth import authenticate

log = logging.getLogger(__name__)
INFER_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer/?$")


class MethodNotAllowed(ApplianceError):
    status = 405

_WANTED = {b"content-type": "content_type",
           b"inference-header-content-length": "header_length",
           b"x-request-timeout-ms": "timeout_ms"}


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body too large (over {limit} bytes); send a "
                                      "smaller body or raise max_body_bytes in the configuration")
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class InferenceFront:
    """An ASGI app in front of the litestar app: ``POST .../infer`` is answered here,
    everything else (and lifespan) goes to litestar."""

    def __init__(self, app: Litestar, services: Any) -> None:
        self.litestar = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            match = INFER_PATH.match(scope["path"])
            if match is not None:
                await self._infer(scope, receive, send, match.group(1), match.group(2))
                return
        await self.litestar(scope, receive, send)

    async def _infer(self, scope: Scope, receive: Receive, send: Send, name: str,
                     version: str | None) -> None:
        try:
            if scope["method"] != "POST":
                raise MethodNotAllowed(f"{scope['method']} is not allowed on "
                                       f"{scope['path']}: inference takes POST",
                                       headers={"Allow": "POST"})
            # before the body is read: a refused caller costs no upload
            identity = await authenticate(scope["headers"], scope, self.services)
            require_infer(identity, name)
            kwargs: dict[str, Any] = {}
            for key, value in scope["headers"]:
                field = _WANTED.get(key)
                if field is not None:
                    kwargs[field] = value.decode("latin-1")
            body = await _read_body(receive, self.services.settings.max_body_bytes)
            client = scope.get("client")
            caller = identity.subject if identity.via != "open" else (
                f"open:{client[0]}" if client else "open")
            content, headers = await self.services.dataplane.infer(name, version, body,
                                                                   caller=caller, **kwargs)
            status = 200
        except ApplianceError as exc:
            if exc.status == 500:
                log.error("%s on %s: %s", type(exc).__name__, scope["path"], exc.message)
            status, headers = exc.status, dict(exc.headers)
            content = msgspec.json.encode({"error": exc.message})
        except Exception as exc:  # a real server fault: details in the log, not the answer
            log.exception("unhandled error on POST %s", scope["path"])
            status, headers = 500, {}
            content = msgspec.json.encode({"error": f"internal server error "
                                                    f"({type(exc).__name__}); the server log "
                                                    "has the details"})
        media = headers.pop("Content-Type", "application/json")
        raw = [(b"content-type", media.encode()),
               (b"content-length", str(len(content)).encode())]
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": content})


def _operation(with_version: bool) -> Operation:
    params = [Parameter(name="name", param_in="path", required=True,  # type: ignore[arg-type]
                        schema=Schema(type="string"))]  # type: ignore[arg-type]
    if with_version:
        params.append(Parameter(name="version", param_in="path",  # type: ignore[arg-type]
                                required=True, schema=Schema(type="string")))  # type: ignore[arg-type]
    params.append(Parameter(name="X-Request-Timeout-Ms", param_in="header",  # type: ignore[arg-type]
                            required=False, schema=Schema(type="number")))  # type: ignore[arg-type]
    json_body = {"application/json": OpenAPIMediaType(schema=Schema(type="object")),
                 "application/octet-stream": OpenAPIMediaType(schema=Schema(type="string",
                                                                     format="binary"))}
    error = {"application/json": OpenAPIMediaType(schema=Schema(type="object"))}
    return Operation(
        tags=["models"], summary="Inference" + (" on a version" if with_version else ""),
        description="Open Inference Protocol v2 inference request (JSON, or Triton's binary "
                    "tensor extension with Inference-Header-Content-Length). See docs/api.md.",
        parameters=params,  # type: ignore[arg-type]
        request_body=RequestBody(content=json_body, required=True),
        responses={
            "200": OpenAPIResponse(description="Inference response", content=json_body),
            "400": OpenAPIResponse(description="Bad request (names what to fix)", content=error),
            "404": OpenAPIResponse(description="Unknown model or version", content=error),
            "413": OpenAPIResponse(description="Body too large", content=error),
            "415": OpenAPIResponse(description="Unsupported content type", content=error),
            "503": OpenAPIResponse(description="Not ready or queue full", content=error),
            "504": OpenAPIResponse(description="Deadline passed", content=error),
        })


def document_infer_routes(schema: OpenAPI) -> None:
    paths = schema.paths if schema.paths is not None else {}
    paths["/v2/models/{name}/infer"] = PathItem(post=_operation(False))
    paths["/v2/models/{name}/versions/{version}/infer"] = PathItem(post=_operation(True))
    schema.paths = paths  # type: ignore[assignment]
