"""Load one version: pick the variant (profile precision order) and the backend (profile
order, pinned backend, GPU fallback policy), then warm it up. Every fallback is logged
and noted on the served version; nothing falls back silently."""

from __future__ import annotations

import logging

from ..backend import Backend, LoadedModel, ModelSource
from ..errors import InvalidModelFile
from ..registry import Registry
from .catalog import BackendCatalog
from .placement import Placement, variant_order
from .served import ServedVersion

log = logging.getLogger(__name__)


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
