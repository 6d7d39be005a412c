"""Who is calling, and may they: one ``authenticate`` for litestar guards and the raw
inference front, route guards, and the table of what each route requires.

A request proves who it is with ``Authorization: Bearer <JWT>`` or, over mutual TLS,
with a client certificate whose subject is in ``auth.mtls_subjects``; a Bearer header
that is present decides (a bad token is refused even with a good certificate). While
auth is off every request is :data:`OPEN_IDENTITY`. The identity is left in
``scope["user"]`` (``request.user`` in a handler).

Refusals: 401 with ``WWW-Authenticate: Bearer realm="appliance"`` (plus
``error="invalid_token", error_description=...`` when a token was sent), 403 naming the
missing scope (RFC 6750).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from ..access.scopes import (
    ADMIN,
    APPROVE,
    AUDIT_READ,
    EXPORT,
    INFER,
    METRICS_READ,
    OPEN_DENIED,
    PROMOTE,
    READ,
    ROUTES_WRITE,
    WRITE,
    Identity,
    can_infer,
    require,
    require_infer,
)
from ..audit.bridge import record_auth_failure
from ..errors import Forbidden, Unauthorized
from .state import services_of

if TYPE_CHECKING:
    from ..services import Services

OPEN = "open"
AUTHENTICATED = "authenticated"
#: models:read, or inference rights on the model in the path (clients read a model's
#: metadata and readiness before they infer on it)
MODEL_ACCESS = f"{READ} | {INFER}:{{name}}"
INFER_ON_MODEL = f"{INFER}:{{name}}"

#: (method, path, requirement) for every route; a test checks each litestar route's
#: guard against it. Routes marked "planned" do not exist yet.
ROUTE_SCOPES: tuple[tuple[str, str, str], ...] = (
    ("GET", "/v2/health/live", OPEN),  # probes carry no credentials
    ("GET", "/v2/health/ready", OPEN),
    ("GET", "/schema/*", OPEN),  # the OpenAPI document
    ("GET", "/v2", AUTHENTICATED),  # server metadata: any valid identity
    ("GET", "/v2/models/{name}", MODEL_ACCESS),
    ("GET", "/v2/models/{name}/versions/{version}", MODEL_ACCESS),
    ("GET", "/v2/models/{name}/ready", MODEL_ACCESS),
    ("GET", "/v2/models/{name}/versions/{version}/ready", MODEL_ACCESS),
    ("POST", "/v2/models/{name}/infer", INFER_ON_MODEL),  # the inference front
    ("POST", "/v2/models/{name}/versions/{version}/infer", INFER_ON_MODEL),
    ("POST", "/v2/repository/index", READ),
    ("POST", "/v2/repository/models/{name}/load", ADMIN),
    ("POST", "/v2/repository/models/{name}/unload", ADMIN),
    ("GET", "/v1/hardware", READ),
    ("GET", "/v1/models", READ),
    ("GET", "/v1/models/{name}", READ),
    ("GET", "/v1/models/{name}/versions/{version}", READ),
    ("POST", "/v1/models/{name}/versions/{version}/promote", PROMOTE),
    ("POST", "/v1/models/{name}/versions/{version}/approve", APPROVE),
    ("POST", "/v1/models/{name}/rollback", PROMOTE),
    ("GET", "/v1/consumers", READ),
    ("POST", "/v1/consumers", WRITE),
    ("GET", "/v1/models/{name}/versions/{version}/lineage", READ),
    ("POST", "/v1/models/{name}/versions/{version}/hold", WRITE),
    ("POST", "/v1/models/{name}/versions/{version}/release", WRITE),
    ("POST", "/v1/models/{name}/versions/{version}/deprecate", WRITE),
    ("DELETE", "/v1/models/{name}/versions/{version}", WRITE),
    # a token (or client certificate) with models:export even while auth is off
    ("GET", "/v1/models/{name}/versions/{version}/export", EXPORT),
    ("GET", "/v1/audit", AUDIT_READ),  # planned
    ("GET", "/metrics", METRICS_READ),  # absent while [metrics] enabled = false
    ("GET", "/v1/health", METRICS_READ),
    ("GET", "/v1/health/models/{name}", METRICS_READ),
    ("GET", "/v1/probes", READ),  # synthetic probes (api/probes.py)
    ("GET", "/v1/alerts", READ),
    ("POST", "/v1/alerts/{alert_id}/ack", WRITE),
    ("GET", "/v1/silences", READ),
    ("POST", "/v1/silences", WRITE),
    ("DELETE", "/v1/silences/{silence_id}", WRITE),
    # drift, feedback and KPIs (api/drift.py)
    ("GET", "/v1/drift/{name}", READ),
    ("GET", "/v1/drift/{name}/history", READ),
    ("GET", "/v1/drift/{name}/kpi-report", READ),
    ("PUT", "/v1/drift/{name}/config", WRITE),
    ("PUT", "/v1/drift/{name}/reference", WRITE),
    ("POST", "/v1/drift/{name}/evaluate", WRITE),
    ("POST", "/v1/feedback", WRITE),
    ("GET", "/v1/feedback", READ),
    ("POST", "/v1/kpis", WRITE),
    # routing and experiments (api/routes.py)
    ("GET", "/v1/routes", READ),
    ("GET", "/v1/routes/{name}", READ),
    ("PUT", "/v1/routes/{name}", ROUTES_WRITE),
    ("DELETE", "/v1/routes/{name}", ROUTES_WRITE),
    ("GET", "/v1/routes/{name}/shadow-report", READ),
    ("GET", "/v1/routes/{name}/decisions", READ),
    ("GET", "/v1/experiments/{name}", READ),
)


def _authorization(headers: Mapping[str, str] | Sequence[tuple[bytes, bytes]]) -> str | None:
    if isinstance(headers, Mapping):
        return headers.get("authorization")
    for key, value in headers:
        if key == b"authorization":
            return value.decode("latin-1")
    return None


async def authenticate(headers: Mapping[str, str] | Sequence[tuple[bytes, bytes]],
                       scope: Any, services: Services, *, always: bool = False) -> Identity:
    """The caller's identity from its headers (litestar's, or raw ASGI pairs with
    lower-case names) and its TLS client certificate; Unauthorized with a challenge.
    ``always``: require credentials even while auth is off. The identity is stored in
    ``scope["user"]``."""
    identity = scope.get("user")
    if isinstance(identity, Identity) and not (always and identity.via == "open"):
        return identity
    try:
        identity = await services.authenticator.identify(_authorization(headers), scope,
                                                         always=always)
    except Unauthorized as exc:
        client = scope.get("client")
        record_auth_failure(services.audit, exc.message,
                            client[0] if client else None, scope.get("path", ""))
        raise
    scope["user"] = identity
    return identity


def requirement_of(method: str, path: str) -> str:
    """The requirement :data:`ROUTE_SCOPES` names for a route (its path template)."""
    for route_method, route_path, requirement in ROUTE_SCOPES:
        if route_method == method and route_path == path:
            return requirement
    raise KeyError(f"{method} {path} is not in ROUTE_SCOPES")


def authorize(identity: Identity, requirement: str, name: str = "") -> None:
    """Forbidden unless ``identity`` meets a :data:`ROUTE_SCOPES` requirement; ``name`` is
    the model in the path, for the per-model requirements."""
    if requirement in (OPEN, AUTHENTICATED):
        return
    if requirement == MODEL_ACCESS:
        if can_infer(identity, name):
            return
        require(identity, READ)
        return
    if requirement == INFER_ON_MODEL:
        require_infer(identity, name)
        return
    require(identity, requirement)


class ScopeGuard:
    """A litestar guard: the caller must hold ``requirement`` (see :data:`ROUTE_SCOPES`)."""

    def __init__(self, requirement: str) -> None:
        self.requirement = requirement

    async def __call__(self, connection: ASGIConnection[Any, Any, Any, Any],
                       _: BaseRouteHandler | None = None
                       ) -> None:
        identity = await authenticate(connection.headers, connection.scope,
                                      services_of(connection),
                                      always=self.requirement in OPEN_DENIED)
        authorize(identity, self.requirement, connection.path_params.get("name", ""))

    def __repr__(self) -> str:
        return f"requires({self.requirement!r})"


def requires(scope_name: str) -> ScopeGuard:
    """Guard for a route handler: ``guards=[requires("models:read")]``."""
    return ScopeGuard(scope_name)


def actor_of(identity: Identity, claimed: str | None, default: str) -> str:
    """Who to record as acting: the authenticated subject; a ``claimed`` actor (from a
    request body) only while auth is off. Forbidden when a token holder names someone
    else, so nobody approves in another's name."""
    if identity.via == "open":
        return claimed or default
    if claimed and claimed != identity.subject:
        raise Forbidden(f"{identity.subject} may not act as {claimed!r}; leave the actor out "
                        "(the token's subject is recorded)")
    return identity.subject
