"""Which backend loads which format on this box.

Availability is checked lazily, per format, the first time a model of that format is
loaded: a box that never loads a ``.tflite`` never imports LiteRT.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pluggy

from ..backend import Availability, Backend, LoadedModel, ModelSource
from ..errors import BadRequest, InvalidModelFile
from ..plugins import installed_backends

log = logging.getLogger(__name__)


#: backend order per format when no hardware profile says otherwise
DEFAULT_PREFER: dict[str, list[str]] = {
    "onnx": ["onnxruntime-cuda", "onnxruntime", "openvino"],
    "openvino": ["openvino"],
    "tflite": ["litert", "openvino"],
}


class BackendCatalog:
    """The installed backends, their (cached) availability and the profile's order."""

    def __init__(self, pm: pluggy.PluginManager,
                 prefer: Mapping[str, list[str]] | None = None, profile: Any = None) -> None:
        self.pm = pm
        self.profile = profile
        self.backends: list[Backend] = installed_backends(pm)
        self.prefer = {**DEFAULT_PREFER, **dict(prefer or {})}
        self._availability: dict[str, Availability] = {}

    def availability(self, backend: Backend) -> Availability:
        """``backend.availability()``, checked once and logged; a raising check is
        "unavailable" with the exception as the reason."""
        if backend.name not in self._availability:
            try:
                self._availability[backend.name] = backend.availability()
            except Exception as exc:  # a broken runtime must not break the others
                self._availability[backend.name] = Availability(
                    False, f"availability check raised {type(exc).__name__}: {exc}")
            result = self._availability[backend.name]
            log.info("backend %s: %s%s", backend.name,
                     "available" if result.available else "unavailable",
                     f" ({result.reason})" if result.reason else "")
        return self._availability[backend.name]

    def by_name(self, name: str) -> Backend | None:
        """The installed backend called ``name``, or None."""
        return next((b for b in self.backends if b.name == name), None)

    def require(self, name: str) -> Backend:
        """The installed backend ``name`` (a version pinned to it); BadRequest naming
        the installed backends when there is none."""
        backend = self.by_name(name)
        if backend is None:
            raise BadRequest(f"backend {name!r} is not installed; installed backends: "
                             f"{', '.join(b.name for b in self.backends)}")
        return backend

    def pinned(self, name: str | None, fmt: str) -> tuple[Backend | None, str]:
        """The pinned backend ``name`` for a ``fmt`` file, if it can load it here.

        ``(backend, "")`` when it is installed, claims ``fmt`` and is available;
        ``(None, why)`` when it claims ``fmt`` but is unavailable on this box (the
        caller's fallback policy decides); ``(None, "")`` when there is no pin, or the
        pinned backend does not claim ``fmt`` (the profile's choice applies).
        """
        backend = self.by_name(name) if name else None
        if backend is None or fmt not in backend.formats:
            return None, ""
        availability = self.availability(backend)
        if availability.available:
            return backend, ""
        return None, f"backend {name} is unavailable here: {availability.reason}"

    def formats(self) -> dict[str, list[str]]:
        """format -> names of installed backends that claim it."""
        out: dict[str, list[str]] = {}
        for b in self.backends:
            for fmt in b.formats:
                out.setdefault(fmt, []).append(b.name)
        return out

    def suffixes(self) -> dict[str, str]:
        """Extra file suffixes that installed backends claim, mapped to their format."""
        return {sfx.lower(): b.formats[0] for b in self.backends for sfx in b.suffixes
                if b.formats}

    def candidates(self, fmt: str) -> list[Backend]:
        """Available backends for ``fmt``, the profile's preferred order first."""
        order = self.prefer.get(fmt, [])
        rank = {name: i for i, name in enumerate(order)}
        claimed = [b for b in self.backends if fmt in b.formats]
        claimed.sort(key=lambda b: rank.get(b.name, len(rank)))
        return [b for b in claimed if self.availability(b).available]

    def choose(self, fmt: str, *, profile: Any = None) -> Backend:
        """The backend for ``fmt``; InvalidModelFile names what is installed when none fits."""
        return self.ranked(fmt, profile=profile)[0]

    def ranked(self, fmt: str, *, profile: Any = None) -> list[Backend]:
        """The chosen backend first, then the other candidates as fallbacks."""
        candidates = self.candidates(fmt)
        chosen = self.pm.hook.appliance_select_backend(
            model_format=fmt, candidates=candidates, profile=profile or self.profile)
        if chosen is not None:
            return [chosen] + [b for b in candidates if b is not chosen]
        installed = self.formats()
        listing = "; ".join(f"{f}: {', '.join(n)}" for f, n in sorted(installed.items()))
        unavailable = [f"{b.name} ({self.availability(b).reason})"
                       for b in self.backends if fmt in b.formats
                       and not self.availability(b).available]
        extra = f"; installed but unavailable: {', '.join(unavailable)}" if unavailable else ""
        raise InvalidModelFile(
            f"no installed backend loads {fmt!r} models (installed formats and backends: "
            f"{listing or 'none'}{extra})")

    def load(self, source: ModelSource, *, profile: Any = None,
             options: Mapping[str, Mapping[str, Any]] | None = None
             ) -> tuple[Backend, LoadedModel]:
        """Load with the chosen backend; if it refuses the file, try the next candidate
        (logged), so one runtime's missing operator does not fail the model."""
        errors: list[str] = []
        for backend in self.ranked(source.format, profile=profile):
            try:
                model = backend.load(source, options=(options or {}).get(backend.name, {}))
            except InvalidModelFile as exc:
                errors.append(f"{backend.name}: {exc.message}")
                log.warning("backend %s cannot load %s: %s", backend.name, source.path.name,
                            exc.message)
                continue
            if errors:
                log.warning("%s loaded by fallback backend %s", source.path.name, backend.name)
            return backend, model
        raise InvalidModelFile("; ".join(errors))
