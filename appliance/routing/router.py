"""The stored routes of this process, and each one's runtime state across rebuilds.

:class:`ModelRepository` asks :meth:`Router.policy_for` whenever it rebuilds its routes
(a version loaded, failed or changed stage; the registry's generation moved). The
stored specs are re-read from the registry by :meth:`reload` on those same occasions —
never on the request path. A route's :class:`~.policies.RouteRuntime` is kept while its
revision stays the same, so a canary's windows and weight survive a rebuild; a new
revision (someone changed the route) starts fresh, from its stored state.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import sqlite_utils

from ..runtime.served import ServedVersion
from .policies import RouteRuntime, StoredPolicy
from .policy import DefaultRoute, RoutePolicy
from .store import StoredRoute, routes, state_of

__all__ = ["Router"]

log = logging.getLogger(__name__)


def route_seed(base: int, model: str, revision: int) -> int:
    digest = hashlib.sha256(f"{base}\x00{model}\x00{revision}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


class Router:
    """Stored routes by model, and their runtimes."""

    def __init__(self, db: Callable[[], sqlite_utils.Database], seed: int = 0) -> None:
        self._db = db
        self.seed = seed
        self.stored: dict[str, StoredRoute] = {}
        self.runtimes: dict[str, RouteRuntime] = {}
        self.policies: dict[str, StoredPolicy] = {}
        #: called with each new runtime (the controller wires bandits' assignment sinks)
        self.on_runtime: Callable[[RouteRuntime, StoredRoute], None] | None = None
        #: a canary's latest analysis and state by model (set by the routing thread)
        self.canary_of: Callable[[str], dict[str, Any] | None] | None = None
        self._lock = threading.Lock()

    def reload(self) -> None:
        """Re-read the stored routes (off the request path)."""
        try:
            self.stored = routes(self._db())
        except Exception:  # keep the routes we have: a locked or broken read is retried
            log.exception("reading the stored routes failed; keeping the previous ones")

    def runtime(self, route: StoredRoute) -> RouteRuntime:
        """The route's runtime, fresh (from its stored state) for a new revision."""
        with self._lock:
            runtime = self.runtimes.get(route.model)
            if runtime is not None and runtime.revision == route.revision:
                return runtime
            runtime = RouteRuntime(route.model, route.revision,
                                   route_seed(self.seed, route.model, route.revision))
            state = self._state(route)
            if state:
                runtime.canary_weight = state.get("canary_weight")
            self.runtimes[route.model] = runtime
        if self.on_runtime is not None:
            self.on_runtime(runtime, route)
        return runtime

    def _state(self, route: StoredRoute) -> dict[str, Any] | None:
        try:
            return state_of(self._db(), route.model, route.revision)
        except Exception:
            log.exception("reading the state of %s's route failed; starting it fresh",
                          route.model)
            return None

    def policy_for(self, name: str, versions: Mapping[str, ServedVersion],
                   fallback: DefaultRoute | None) -> RoutePolicy | None:
        """The stored route of ``name`` over ``versions``, else ``fallback``."""
        route = self.stored.get(name)
        if route is None:
            self.policies.pop(name, None)
            return fallback
        policy = StoredPolicy(route, versions, self.runtime(route), fallback)
        self.policies[name] = policy
        return policy

    def forget_missing(self) -> None:
        """Drop runtimes of routes that were deleted."""
        with self._lock:
            for model in set(self.runtimes) - set(self.stored):
                del self.runtimes[model]
