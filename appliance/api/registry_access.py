"""Admin handlers open a registry connection of their own, on a worker thread: SQLite
calls never run on the event loop, and never share the runtime's connection.

The connection is opened by :func:`~appliance.registry.opener.open_registry` from the
server's registry, so it gets the same box-key provider (the ``appliance_box_key``
hook) and encryption setting, and a full disk comes back as a 507 saying so
(:mod:`appliance.registry.diskspace`), not as a bare 500."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from litestar import Request

from ..lifecycle.webhooks import remember
from ..registry import Registry
from ..registry.diskspace import mapping_disk_full
from ..registry.opener import open_registry
from .state import services_of

#: litestar's Request with its parameters left open (user, auth, state)
AnyRequest = Request[Any, Any, Any]

T = TypeVar("T")


async def with_registry(request: AnyRequest, fn: Callable[[Registry], T]) -> T:
    """Run ``fn`` with a fresh connection to the served registry; closed afterwards."""
    services = services_of(request)
    served: Registry = services.registry
    data_dir = served.data_dir
    webhooks = services.settings.lifecycle.webhooks

    def work() -> T:
        remember(data_dir, webhooks)  # the outbox poller then delivers with these settings
        with mapping_disk_full(data_dir), open_registry(served) as registry:
            return fn(registry)

    return await anyio.to_thread.run_sync(work)
