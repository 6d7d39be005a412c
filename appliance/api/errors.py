"""One place that turns exceptions into ``{"error": "..."}`` responses.

:func:`error_answer` is the rule for every transport: the litestar handlers below and the
raw inference front (``infer_route.py``) both call it. An :class:`ApplianceError` answers
with its own status, message and headers; only a 500 is logged as an error (503 and 504
are load or readiness answers, not faults); any other exception is a real fault: a 500
naming its type, with the traceback in the log only.

Client mistakes that litestar reports in its own words (a missing body, a body that fails
a route's schema, JSON nested deeper than the decoder's recursion limit) become 400s that
say what to send.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException

from ..errors import ApplianceError

log = logging.getLogger(__name__)

#: how to fix a body over ``max_body_bytes`` (every 413 ends with it)
TOO_LARGE_HINT = "send a smaller body or raise max_body_bytes in the configuration"
HINTS = {
    404: "; see GET /v2/models/{name} for a model, or GET /schema for the API",
    405: "; see GET /schema for the methods each route accepts",
    413: "; " + TOO_LARGE_HINT,
}


def error_answer(exc: BaseException, where: str) -> tuple[int, str, dict[str, str]]:
    """Status, message and headers for ``exc`` raised while answering ``where`` (e.g.
    ``"POST /v2/models/m/infer"``); logs faults. Call it inside the ``except`` block."""
    if isinstance(exc, ApplianceError):
        if exc.status == 500:
            log.error("%s on %s: %s", type(exc).__name__, where, exc.message)
        return exc.status, exc.message, dict(exc.headers)
    log.error("unhandled error on %s", where, exc_info=exc)
    return 500, (f"internal server error ({type(exc).__name__}); the server log has the "
                 "details"), {}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response({"error": message}, status_code=status, headers=headers,
                    media_type=MediaType.JSON)


def _where(request: Request[Any, Any, Any]) -> str:
    return f"{request.method} {request.url.path}"


def appliance_error(request: Request[Any, Any, Any], exc: ApplianceError) -> Response[Any]:
    return _error(*error_answer(exc, _where(request)))


def _has_body(request: Request[Any, Any, Any]) -> bool:
    headers = request.headers
    return (headers.get("content-length", "0") != "0"
            or "chunked" in headers.get("transfer-encoding", "").lower())


def _validation_message(request: Request[Any, Any, Any], exc: ValidationException) -> str:
    where = f"{request.method} {request.url.path}"
    extra = exc.extra if isinstance(exc.extra, list) else []
    if request.method in ("POST", "PUT", "PATCH") and not _has_body(request) and any(
            isinstance(e, dict) and e.get("source") == "body" for e in extra):
        return (f"the request needs a JSON body: {where} takes a JSON object; see GET "
                "/schema/openapi.json for its fields")
    problems = []
    for item in extra:
        if isinstance(item, dict):
            key = item.get("key")
            place = "body" if key == "data" else f"{item.get('source') or 'parameter'} {key}"
            problems.append(f"{place}: {item.get('message')}")
    if not problems:
        return f"invalid request to {where}: {exc.detail}"
    return f"invalid request to {where}: " + "; ".join(problems)


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    detail = exc.detail or "request failed"
    if isinstance(exc, ValidationException) and exc.status_code == 400:
        return _error(400, _validation_message(request, exc), dict(exc.headers or {}))
    if isinstance(exc.__cause__, SerializationException):  # the body's JSON did not parse
        detail = (f"the request body of {request.method} {request.url.path} is not valid "
                  f"JSON: {detail}" if _has_body(request) else
                  f"the request needs a JSON body: {request.method} {request.url.path} "
                  "takes a JSON object")
    if exc.status_code == 413:
        detail = "request body too large"
    elif exc.status_code == 404 and detail == "Not Found":
        detail = f"no route for {request.method} {request.url.path}"
    message = detail + HINTS.get(exc.status_code, "")
    if exc.status_code == 400 and getattr(exc, "extra", None):
        message += f": {exc.extra}"
    return _error(exc.status_code, message, dict(exc.headers or {}))


def nesting_error(request: Request[Any, Any, Any], exc: RecursionError) -> Response[Any]:
    """JSON nested past the decoder's recursion limit is the client's mistake, not ours."""
    if "deserializ" not in str(exc) and "decod" not in str(exc):
        return internal_error(request, exc)
    return _error(400, f"the JSON body of {request.method} {request.url.path} is nested too "
                       "deeply; send a flatter document")


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    return _error(*error_answer(exc, _where(request)))


EXCEPTION_HANDLERS = {
    ApplianceError: appliance_error,
    HTTPException: http_error,
    RecursionError: nesting_error,
    Exception: internal_error,
}
