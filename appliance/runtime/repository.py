"""What this process serves: each registered version, loaded (or failed, with why).

Loading one version never affects another: a failure marks only that version
``failed`` with its reason, and the rest keep serving.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from ..backend import Backend, LoadedModel, ModelSource
from ..errors import ApplianceError, InvalidModelFile, NotFound, ServiceUnavailable
from ..registry import Registry, VersionRecord
from ..registry.models import _version_key
from ..signature import TensorSpec
from .catalog import BackendCatalog
from .placement import Placement, variant_order
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
    variant: str = ""
    notes: list[str] = field(default_factory=list)
    warmup: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, TensorSpec] = field(default_factory=dict)
    outputs: dict[str, TensorSpec] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"state": self.state, "backend": self.backend,
                                "variant": self.variant, "inline": self.inline}
        if self.notes:
            info["notes"] = self.notes
        if self.reason:
            info["reason"] = self.reason
        if self.model is not None:
            info.update(self.model.metadata())
        if self.warmup:
            info["warmup"] = self.warmup
        return info


class ModelRepository:
    def __init__(self, registry: Registry, catalog: BackendCatalog, *,
                 inline_threshold_us: int = 500, placement: Placement | None = None) -> None:
        self.registry = registry
        self.catalog = catalog
        self.inline_threshold_us = inline_threshold_us
        self.placement = placement or Placement()
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
            backend, model = self._load_best_variant(served)
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

    def _load_best_variant(self, served: ServedVersion) -> tuple[Backend, LoadedModel]:
        """Try the version's variants in the profile's precision order; the first that
        loads serves. Every skipped variant is logged and noted in the metadata."""
        record = served.record
        variants = {v.precision: v for v in record.all_variants()}
        order = variant_order(list(variants), self.placement.precision)
        errors: list[str] = []
        for precision in order:
            variant = variants[precision]
            source = ModelSource(self.registry.artifact_path(variant), variant.format)
            try:
                backend, model = self._load_variant(served, source)
            except InvalidModelFile as exc:
                errors.append(f"{precision} ({variant.format}): {exc.message}")
                log.warning("%s version %s: variant %s did not load: %s", record.model,
                            record.version, precision, exc.message)
                continue
            served.variant = f"{precision}/{variant.format}"
            if errors or (len(variants) > 1 and precision != self.placement.precision[0]):
                note = (f"serving variant {precision}: profile {self.placement.profile} "
                        f"prefers {', '.join(self.placement.precision)}")
                served.notes.append(note + (f"; skipped: {'; '.join(errors)}" if errors else ""))
                log.info("%s version %s: %s", record.model, record.version, served.notes[-1])
            return backend, model
        raise InvalidModelFile("no variant loads: " + "; ".join(errors))

    def _load_variant(self, served: ServedVersion,
                      source: ModelSource) -> tuple[Backend, LoadedModel]:
        pin = served.record.backend
        options = self.placement.options
        if pin:
            backend = self.catalog.by_name(pin)
            if backend is not None and source.format in backend.formats:
                availability = self.catalog.availability(backend)
                if availability.available:
                    return backend, backend.load(source, options=options.get(pin, {}))
                why = f"backend {pin} is unavailable here: {availability.reason}"
                if self.placement.gpu_fallback != "cpu":
                    raise InvalidModelFile(
                        f"{why}; profile {self.placement.profile} refuses to fall back "
                        "(gpu_fallback = 'refuse')")
                served.notes.append(f"{why}; falling back per profile {self.placement.profile}")
                log.warning("%s version %s: %s", served.record.model, served.record.version,
                            served.notes[-1])
        return self.catalog.load(source, options=options)

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
