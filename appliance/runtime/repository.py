"""What this process serves: every version in a serving stage, loaded (or failed, with
why). Which version answers a request that names none is the model's routing policy
(:mod:`appliance.routing`), rebuilt here whenever the served versions change.

Loading one version never affects another. A promotion loads and warms the new version
first (:meth:`preload`); only then does :meth:`refresh` re-read the stages and switch the
default route in one assignment, so requests see the old version or the new one, never
neither.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import ApplianceError, NotFound, ServiceUnavailable
from ..lifecycle.stages import SERVING
from ..registry import Registry, VersionRecord
from ..registry.models import version_key
from ..routing.policy import RoutePolicy, default_route

if TYPE_CHECKING:
    from ..routing.router import Router
from ..settings import ModelServing
from .catalog import BackendCatalog
from .execution import Execution
from .loading import VersionLoader, load_and_warm_up, reason, within_timeout
from .placement import Placement
from .served import ServedVersion

log = logging.getLogger(__name__)

#: computes response headers for a version (deprecation); set by the lifecycle module
HeadersFor = Callable[[VersionRecord], dict[str, str]]


class ModelRepository:
    def __init__(self, registry: Registry, catalog: BackendCatalog, *,
                 inline_threshold_us: int = 500, placement: Placement | None = None,
                 load_timeout_s: float = 120.0, load_attempts: int = 3,
                 headers_for: HeadersFor | None = None,
                 serving: dict[str, ModelServing] | None = None,
                 router: Router | None = None) -> None:
        self.registry = registry
        self.catalog = catalog
        self.placement = placement or Placement()
        self.loader = VersionLoader(registry, catalog, self.placement)
        self.inline_threshold_us = inline_threshold_us
        self.load_timeout_s = load_timeout_s
        self.load_attempts = load_attempts
        self.headers_for = headers_for or (lambda record: {})
        self.serving = serving or {}
        #: stored routes (appliance/routing/router.py); None: every model routes by default
        self.router = router
        self._models: dict[str, dict[str, ServedVersion]] = {}
        self._routes: dict[str, RoutePolicy] = {}
        self._lock = threading.RLock()
        self._refresh_lock = threading.Lock()  # the watcher and the admin API both refresh

    # -- loading ---------------------------------------------------------------------
    def load_all(self) -> list[ServedVersion]:
        """Load every version in a serving stage (failures are isolated)."""
        loaded = [self.load(r) for r in self.registry.versions() if r.stage in SERVING]
        if self.router is not None:
            self.router.reload()
        self._reroute()
        return loaded

    def load(self, record: VersionRecord) -> ServedVersion:
        """Load, warm up and add one version; on failure it is kept as ``failed``."""
        served = ServedVersion.for_record(record)
        served.headers = self.headers_for(record)
        with self._lock:
            self._models.setdefault(record.model, {})[record.version] = served
        try:
            self._load_with_retries(served)
        except Exception as exc:
            served.state, served.reason = "failed", reason(exc)
            log.error("model %s version %s failed to load: %s", record.model, record.version,
                      served.reason)
        return served

    def _load_with_retries(self, served: ServedVersion) -> None:
        """Up to ``load_attempts`` tries with exponential backoff (0.5 s, 1 s, …), each
        bounded by the load timeout."""
        delay = 0.5
        last: Exception | None = None
        for attempt in range(1, self.load_attempts + 1):
            try:
                self._load_once(served)
                return
            except ServiceUnavailable:  # timed out: retrying would time out again
                raise
            except Exception as exc:  # runtime hiccup (out of memory, driver): retry
                if isinstance(exc, ApplianceError) and exc.status < 500:
                    raise  # a bad file stays bad: no retry
                last = exc
                log.warning("%s version %s: load attempt %d failed: %s; retrying in %.1f s",
                            served.record.model, served.record.version, attempt,
                            reason(exc), delay)
            time.sleep(delay)
            delay *= 2
        assert last is not None
        raise last

    def _load_once(self, served: ServedVersion) -> None:
        within_timeout(lambda: self._load_and_warm(served), self.load_timeout_s,
                       f"loading {served.record.model} version {served.record.version}")

    def _load_and_warm(self, served: ServedVersion) -> None:
        record = served.record
        backend, model = load_and_warm_up(self.loader, served)
        served.backend, served.model = backend.name, model
        cheap = served.warmup["median_us"] < self.inline_threshold_us
        served.execution = Execution(record.model, model,
                                     self.serving.get(record.model, ModelServing()),
                                     inline=cheap, default_instances=self.placement.instances)
        served.inline = served.execution.inline
        served.state, served.reason = "ready", ""
        log.info("loaded %s version %s on %s (warm-up %.0f us, %s)", record.model,
                 record.version, backend.name, served.warmup["median_us"],
                 "inline" if served.inline else "thread pool")

    def preload(self, record: VersionRecord) -> None:
        """Make ``record`` ready without routing default traffic to it; raise on failure."""
        current = self._models.get(record.model, {}).get(record.version)
        if current is not None and current.ready:
            return
        served = self.load(record)
        if not served.ready:
            raise ServiceUnavailable(f"{record.model} version {record.version} did not load: "
                                     f"{served.reason}")

    def refresh(self) -> None:
        """Re-read the registry: pick up stage changes, load versions that entered a
        serving stage, unload those that left, then switch routes in one step."""
        with self._refresh_lock:
            self._refresh()

    def _refresh(self) -> None:
        records = {(r.model, r.version): r for r in self.registry.versions()}
        with self._lock:
            for name, versions in list(self._models.items()):
                for version, served in list(versions.items()):
                    record = records.get((name, version))
                    if record is not None:
                        served.record = record
                        served.headers = self.headers_for(record)
        for (name, version), record in records.items():
            known = self._models.get(name, {}).get(version)
            if record.stage in SERVING and (known is None or known.state == "unloaded"):
                self.load(record)
        if self.router is not None:
            self.router.reload()
            self.router.forget_missing()
        self._reroute()
        with self._lock:
            for name, versions in list(self._models.items()):
                for version in list(versions):
                    record = records.get((name, version))
                    if record is None or record.stage not in SERVING:
                        self._drop(name, version)

    def _drop(self, name: str, version: str) -> None:
        served = self._models[name].pop(version)
        if not self._models[name]:
            del self._models[name]
        served.release()
        served.state = "unloaded"
        log.info("unloaded %s version %s", name, version)

    def _reroute(self) -> None:
        with self._lock:
            routes: dict[str, RoutePolicy] = {}
            router = self.router
            for name, versions in self._models.items():
                policy: RoutePolicy | None = default_route(versions)
                if router is not None:
                    policy = router.policy_for(name, versions, policy)  # type: ignore[arg-type]
                if policy is not None:
                    routes[name] = policy
            self._routes = routes  # one assignment: readers see old or new, never half

    # -- repository extension ---------------------------------------------------------
    def unload_model(self, name: str) -> None:
        for served in list(self.versions(name).values()):
            served.release()
            served.state = "unloaded"
            served.reason = "unloaded through the repository API"
        self._reroute()

    def load_model(self, name: str) -> list[ServedVersion]:
        records = [r for r in self.registry.versions(name) if r.stage in SERVING]
        if not records:
            raise NotFound(f"model {name!r} has no version in a serving stage in the registry")
        loaded = [self.load(r) for r in records
                  if not (self._models.get(name, {}).get(r.version) or
                          ServedVersion.for_record(r)).ready]
        self._reroute()
        return loaded

    def index(self) -> list[ServedVersion]:
        return [s for name in self.names() for s in self._models[name].values()]

    def close(self) -> None:
        with self._lock:
            for versions in self._models.values():
                for served in versions.values():
                    served.release()
                    served.state = "unloaded"
            self._models.clear()
            self._routes = {}

    # -- lookup (hot path: dict reads only) ----------------------------------------------
    def names(self) -> list[str]:
        return sorted(self._models)

    def versions(self, name: str) -> dict[str, ServedVersion]:
        try:
            return self._models[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise NotFound(f"unknown model {name!r}; models served here: {known}") from None

    def route_of(self, name: str) -> RoutePolicy | None:
        """The model's routing policy (None: no ready version to route to)."""
        return self._routes.get(name)

    def default_version(self, name: str) -> ServedVersion:
        route = self._routes.get(name)
        if route is not None:
            return route.primary().served
        versions = self.versions(name)
        return max(versions.values(), key=lambda s: version_key(s.record.version))

    def find(self, name: str, version: str | None) -> ServedVersion:
        if version is None:
            return self.default_version(name)
        versions = self.versions(name)
        try:
            return versions[version]
        except KeyError:
            raise NotFound(f"model {name!r} has no version {version!r}; versions: "
                           f"{', '.join(sorted(versions, key=version_key))}") from None

    def ready_model(self, name: str, version: str | None) -> ServedVersion:
        served = self.find(name, version)
        if not served.ready:
            why = f": {served.reason}" if served.reason else ""
            raise ServiceUnavailable(
                f"model {name!r} version {served.record.version} is {served.state}{why}",
                headers={"Retry-After": "5"} if served.state == "loading" else None)
        return served
