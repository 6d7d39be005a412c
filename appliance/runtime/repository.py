"""What this process serves: each registered version, loaded (or failed, with why).

Loading one version never affects another: a failure marks only that version
``failed`` with its reason, and the rest keep serving.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from ..backend import LoadedModel, ModelSource
from ..errors import ApplianceError, NotFound, ServiceUnavailable
from ..registry import Registry, VersionRecord
from ..registry.models import _version_key
from ..signature import TensorSpec
from .catalog import BackendCatalog
from .warmup import warm_up

log = logging.getLogger(__name__)


@dataclass
class ServedVersion:
    record: VersionRecord
    state: str = "loading"  # loading | ready | failed | unloaded
    reason: str = ""
    model: LoadedModel | None = None
    backend: str = ""
    inline: bool = False
    warmup: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, TensorSpec] = field(default_factory=dict)
    outputs: dict[str, TensorSpec] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"state": self.state, "backend": self.backend,
                                "inline": self.inline}
        if self.reason:
            info["reason"] = self.reason
        if self.model is not None:
            info.update(self.model.metadata())
        if self.warmup:
            info["warmup"] = self.warmup
        return info


class ModelRepository:
    def __init__(self, registry: Registry, catalog: BackendCatalog, *,
                 inline_threshold_us: int = 500, profile: Any = None,
                 backend_options: dict[str, dict[str, Any]] | None = None) -> None:
        self.registry = registry
        self.catalog = catalog
        self.inline_threshold_us = inline_threshold_us
        self.profile = profile
        self.backend_options = backend_options or {}
        self._models: dict[str, dict[str, ServedVersion]] = {}
        self._lock = threading.Lock()

    # -- loading ---------------------------------------------------------------------
    def load_all(self) -> list[ServedVersion]:
        """Load every registered version; return them (check ``state`` for failures)."""
        return [self.load(record) for record in self.registry.versions()]

    def load(self, record: VersionRecord) -> ServedVersion:
        served = ServedVersion(record, inputs={s.name: s for s in record.inputs},
                               outputs={s.name: s for s in record.outputs})
        with self._lock:
            self._models.setdefault(record.model, {})[record.version] = served
        try:
            source = ModelSource(self.registry.artifact_path(record), record.format)
            backend, model = self.catalog.load(source, profile=self.profile,
                                               options=self.backend_options)
            served.backend = backend.name
            served.warmup = warm_up(model)
            served.model = model
            served.inline = served.warmup["median_us"] < self.inline_threshold_us
            served.state = "ready"
            log.info("loaded %s version %s on %s (warm-up %.0f us, %s)", record.model,
                     record.version, backend.name, served.warmup["median_us"],
                     "inline" if served.inline else "thread pool")
        except Exception as exc:
            served.state = "failed"
            served.reason = exc.message if isinstance(exc, ApplianceError) else (
                f"{type(exc).__name__}: {exc}")
            log.error("model %s version %s failed to load: %s", record.model, record.version,
                      served.reason)
        return served

    def close(self) -> None:
        with self._lock:
            for versions in self._models.values():
                for served in versions.values():
                    if served.model is not None:
                        served.model.close()
                    served.state = "unloaded"
            self._models.clear()

    # -- lookup ----------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self._models)

    def versions(self, name: str) -> dict[str, ServedVersion]:
        try:
            return self._models[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise NotFound(f"unknown model {name!r}; models served here: {known}") from None

    def default_version(self, name: str) -> ServedVersion:
        """The newest ready version (by number), else the newest of any state."""
        versions = self.versions(name)
        ordered = sorted(versions.values(), key=lambda s: _version_key(s.record.version))
        ready = [s for s in ordered if s.ready]
        return (ready or ordered)[-1]

    def find(self, name: str, version: str | None) -> ServedVersion:
        if version is None:
            return self.default_version(name)
        versions = self.versions(name)
        try:
            return versions[version]
        except KeyError:
            raise NotFound(f"model {name!r} has no version {version!r}; versions: "
                           f"{', '.join(sorted(versions, key=_version_key))}") from None

    def ready_model(self, name: str, version: str | None) -> ServedVersion:
        served = self.find(name, version)
        if not served.ready:
            why = f": {served.reason}" if served.reason else ""
            raise ServiceUnavailable(
                f"model {name!r} version {served.record.version} is {served.state}{why}",
                headers={"Retry-After": "5"} if served.state == "loading" else None)
        return served
