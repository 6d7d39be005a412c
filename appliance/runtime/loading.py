"""Load one version: pick the variant (profile precision order) and the backend (profile
order, pinned backend, GPU fallback policy), then warm it up. Every fallback is logged
and noted on the served version; nothing falls back silently."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ..backend import Backend, LoadedModel, ModelSource
from ..errors import InvalidModelFile
from ..registry import Registry, VersionRecord
from ..signature import TensorSpec
from .catalog import BackendCatalog
from .placement import Placement, variant_order

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
    #: response headers for every answer of this version (Deprecation, Sunset, Link)
    headers: dict[str, str] = field(default_factory=dict)
    execution: Any = None  # runtime.execution.Execution once ready

    @classmethod
    def for_record(cls, record: VersionRecord) -> ServedVersion:
        return cls(record, inputs={s.name: s for s in record.inputs},
                   outputs={s.name: s for s in record.outputs})

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
        if self.execution is not None:
            info.update(self.execution.describe())
        return info

    def release(self) -> None:
        """Stop executing and free the runtime (unload)."""
        if self.execution is not None:
            self.execution.close()
            self.execution = None
        if self.model is not None:
            self.model.close()
            self.model = None


class VersionLoader:
    def __init__(self, registry: Registry, catalog: BackendCatalog,
                 placement: Placement) -> None:
        self.registry = registry
        self.catalog = catalog
        self.placement = placement

    def load(self, served: ServedVersion) -> tuple[Backend, LoadedModel]:
        """Try the version's variants in the profile's precision order; the first that
        loads serves. Every skipped variant is logged and noted in the metadata."""
        record = served.record
        variants = {v.precision: v for v in record.all_variants()}
        order = variant_order(list(variants), self.placement.precision)
        errors: list[str] = []
        for precision in order:
            variant = variants[precision]
            try:
                source = self.registry.model_source(variant)
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
