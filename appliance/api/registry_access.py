"""Admin handlers open a registry connection of their own, on a worker thread: SQLite
calls never run on the event loop, and never share the runtime's connection."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread
from litestar import Request

from ..registry import Registry

T = TypeVar("T")


async def with_registry(request: Request, fn: Callable[[Registry], T]) -> T:
    """Run ``fn`` with a fresh connection to the served registry; closed afterwards."""
    data_dir = request.app.state.services.registry.data_dir

    def work() -> T:
        registry = Registry(data_dir)
        try:
            return fn(registry)
        finally:
            registry.close()

    return await anyio.to_thread.run_sync(work)
