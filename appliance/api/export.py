"""``GET /v1/models/{name}/versions/{version}/export?recipient=NAME``: a version's package,
still encrypted, with each file's data key sealed to a registered recipient.

This is the only route that returns model bytes, and it never returns plaintext. The
``models:export`` token is always required, even where the loopback default runs open:
its guard (``requires(EXPORT)``; EXPORT is in ``OPEN_DENIED``) runs before the handler, so a
missing token is a 401 before any model or recipient is looked up. ``recipient`` is read
inside the handler, not declared as a parameter, for the same reason: a missing one must
not be answered (400) before the token is checked.
"""

from __future__ import annotations

import anyio.to_thread
from litestar import Controller, get
from litestar.params import FromPath
from litestar.response import Stream

from ..access.scopes import EXPORT, Identity
from ..errors import BadRequest
from ..registry.opener import open_registry
from ..security.export import ExportPlan, plan_export
from .auth import requires
from .registry_access import AnyRequest
from .state import services_of


def _actor(request: AnyRequest) -> str:
    user = request.scope.get("user")
    return user.subject if isinstance(user, Identity) else "api"


class ExportController(Controller):
    path = "/v1/models"
    tags = ["security"]

    @get("/{name:str}/versions/{version:str}/export",
         summary="The version's package, encrypted for a registered recipient (models:export)",
         media_type="application/x-tar",
         # fail closed: a token with models:export, always, before anything is looked up
         guards=[requires(EXPORT)])
    async def export(self, request: AnyRequest, name: FromPath[str],
                     version: FromPath[str]) -> Stream:
        recipient = request.query_params.get("recipient")
        if not recipient:
            raise BadRequest("name the recipient: ?recipient=NAME (registered with "
                             "`appliance keys add-recipient NAME PUBKEY.pem`)")
        server_registry = services_of(request).registry
        actor = _actor(request)

        def plan() -> ExportPlan:
            # a registry connection of this worker thread's own (SQLite, WAL mode)
            with open_registry(server_registry) as registry:
                return plan_export(registry, registry.version(name, version), recipient,
                                   actor=actor)

        export = await anyio.to_thread.run_sync(plan)
        return Stream(export.stream(), media_type="application/x-tar", headers={
            "Content-Disposition": f'attachment; filename="{export.filename}"',
            "Content-Length": str(export.size)})
