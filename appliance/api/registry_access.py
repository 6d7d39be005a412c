"""Admin handlers open a registry connection of their own, on a worker thread: SQLite
calls never run on the event loop, and never share the runtime's connection.

The connection gets the server registry's box-key provider (the ``appliance_box_key``
hook) and encryption setting, and a full disk comes back as a 507 saying so
(:mod:`appliance.registry.diskspace`), not as a bare 500."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread
from litestar import Request

from ..lifecycle.webhooks import remember
from ..registry import Registry
from ..registry.diskspace import mapping_disk_full

T = TypeVar("T")


async def with_registry(request: Request, fn: Callable[[Registry], T]) -> T:
    """Run ``fn`` with a fresh connection to the served registry; closed afterwards."""
    services = request.app.state.services
    served = services.registry
    data_dir = served.data_dir
    lifecycle = getattr(getattr(services, "settings", None), "lifecycle", None)
    provider = getattr(served, "box_key_provider", None)
    encrypt = bool(getattr(getattr(served, "store", None), "encrypt", True))

    def work() -> T:
        if lifecycle is not None:  # the outbox poller then delivers with these settings
            remember(data_dir, lifecycle.webhooks)
        with mapping_disk_full(data_dir):
            registry = Registry(data_dir, box_key_provider=provider, encrypt_artifacts=encrypt)
            try:
                return fn(registry)
            finally:
                registry.close()

    return await anyio.to_thread.run_sync(work)
