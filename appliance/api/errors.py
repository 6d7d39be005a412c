"""One place that turns exceptions into ``{"error": "..."}`` responses."""

from __future__ import annotations

import logging

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException

from ..errors import ApplianceError

log = logging.getLogger(__name__)

HINTS = {
    404: "; see GET /v2/models/{name} for a model, or GET /schema for the API",
    405: "; see GET /schema for the methods each route accepts",
    413: "; send a smaller body or raise max_body_bytes in the configuration",
}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response({"error": message}, status_code=status, headers=headers,
                    media_type=MediaType.JSON)


def appliance_error(_: Request, exc: ApplianceError) -> Response:
    if exc.status == 500:  # 503/504 are load or readiness answers, not faults
        log.error("%s: %s", type(exc).__name__, exc.message)
    return _error(exc.status, exc.message, exc.headers)


def http_error(request: Request, exc: HTTPException) -> Response:
    detail = exc.detail or "request failed"
    if exc.status_code == 413:
        detail = "request body too large"
    elif exc.status_code == 404 and detail == "Not Found":
        detail = f"no route for {request.method} {request.url.path}"
    message = detail + HINTS.get(exc.status_code, "")
    if exc.status_code == 400 and getattr(exc, "extra", None):
        message += f": {exc.extra}"
    return _error(exc.status_code, message, dict(exc.headers or {}))


def internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _error(500, f"internal server error ({type(exc).__name__}); the server log has "
                       "the details")


EXCEPTION_HANDLERS = {
    ApplianceError: appliance_error,
    HTTPException: http_error,
    Exception: internal_error,
}
