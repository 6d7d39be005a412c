"""The hub's litestar application: its API, error mapping, the optional static ``/repo``,
and the re-signing scheduler for as long as the app runs.

    hub = open_hub(load_hub_settings(Path("hub")))
    app = create_hub_app(hub)          # owns ``hub`` and closes it on shutdown

Errors are ``{"error": "..."}`` with the status each :class:`~appliance.errors.ApplianceError`
carries, through the same handlers as the appliance's own API.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.static_files import create_static_files_router

from .. import __version__
from ..access.authenticator import Authenticator
from ..api.errors import EXCEPTION_HANDLERS, http_error
from .api import DeviceController, OperatorController
from .api_rollouts import RolloutController
from .polled import timestamp_json
from .services import Hub

log = logging.getLogger("appliance.hub")


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if exc.status_code in (404, 405):  # the appliance's hints name its own routes
        return Response({"error": f"no route for {request.method} {request.url.path}; see "
                                  "GET /schema for the hub's API"},
                        status_code=exc.status_code)
    return http_error(request, exc)


def create_hub_app(hub: Hub) -> Litestar:
    """A litestar app serving ``hub``; it starts the refresh scheduler (when
    ``settings.scheduler``) and closes the hub on shutdown."""
    settings = hub.settings
    authenticator = Authenticator(settings.auth, settings.host, settings.data_dir)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.hub = hub
        app.state.authenticator = authenticator
        scheduler = None
        if settings.scheduler:
            from .scheduler import start_scheduler

            scheduler = start_scheduler(hub)
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.shutdown(wait=False)
            hub.close()

    handlers: list[Any] = [DeviceController, OperatorController, RolloutController]
    if settings.serve_repository:
        handlers.append(timestamp_json)  # the polled file: 304 on a matching ETag
        handlers.append(create_static_files_router(
            path="/repo", directories=[settings.repo_dir], include_in_schema=False))
    return Litestar(
        route_handlers=handlers,
        lifespan=[lifespan],
        exception_handlers={**EXCEPTION_HANDLERS, HTTPException: _http_error},  # type: ignore[dict-item]
        # the largest body any route takes; each route enforces its own, smaller, limit
        request_max_body_size=settings.publish_max_bytes,
        openapi_config=OpenAPIConfig(title="appliance hub", version=__version__,
                                     path="/schema"),
        debug=False,
        logging_config=None,
    )
