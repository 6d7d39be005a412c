"""The litestar application: routes, error mapping, OpenAPI at ``/schema``.

Models load in a background thread after start-up, so ``/v2/health/live`` answers at
once and ``/v2/health/ready`` turns 200 when loading is done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin
from litestar.openapi import OpenAPIConfig

from .. import __version__
from ..access.auth_settings import auth_enabled
from ..services import Services, load_models
from .admin import HardwareController
from .alerts import ALERT_ROUTES
from .drift import DRIFT_ROUTES
from .errors import EXCEPTION_HANDLERS
from .export import ExportController
from .governance import GOVERNANCE_ROUTES
from .health import HealthController
from .infer_route import InferenceFront, document_infer_routes
from .lifecycle import LifecycleController
from .metrics import MetricsController
from .openapi import complete_document
from .probes import PROBE_ROUTES
from .repository import RepositoryController
from .routes import ExperimentsController, RoutesController
from .v2 import ModelController, ServerController

log = logging.getLogger(__name__)


def create_app(services: Services, *, load_in_background: bool = True) -> InferenceFront:
    """A litestar app serving ``services``; it owns them and closes them on shutdown."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.services = services
        app.state.dataplane = services.dataplane
        # the generated document is a dict litestar caches and serves: finish it in place
        document = app.plugins.get(OpenAPIPlugin).provide_openapi_schema()
        document_infer_routes(document)
        complete_document(document, auth_required=auth_enabled(services.settings.auth,
                                                               services.settings.host))
        if services.probes is not None:  # probe requests run where the executions live
            services.probes.attach(asyncio.get_running_loop())
        if load_in_background:
            import threading
            threading.Thread(target=load_models, args=(services,), name="model-loader",
                             daemon=True).start()
        else:
            await anyio.to_thread.run_sync(load_models, services)
        try:
            yield
        finally:
            services.close()

    app = Litestar(
        # the governance DELETE shares a path with LifecycleController: it must come after
        route_handlers=[ServerController, ModelController, RepositoryController,
                        HardwareController, LifecycleController, ExportController,
                        HealthController, RoutesController, ExperimentsController,
                        *GOVERNANCE_ROUTES,
                        *DRIFT_ROUTES, *ALERT_ROUTES, *PROBE_ROUTES,
                        *([MetricsController] if services.settings.metrics.enabled else [])],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        request_max_body_size=services.settings.max_body_bytes,
        openapi_config=OpenAPIConfig(title="appliance", version=__version__, path="/schema"),
        debug=False,
        logging_config=None,  # the CLI configures logging; keep one format
    )
    return InferenceFront(app, services)
