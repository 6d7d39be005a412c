"""Load one version: pick the variant (profile precision order) and the backend (profile
order, pinned backend, GPU fallback policy), then warm it up. Every fallback is logged
and noted on the served version; nothing falls back silently.

The same path serves the runtime (:class:`~appliance.runtime.repository.ModelRepository`)
and the CLI's promotion check (:func:`load_check`): load and warm up in a worker thread,
bounded by ``load_timeout_s`` (:func:`load_and_warm_up`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from typing import TypeVar

import psutil

from ..backend import Backend, LoadedModel, ModelSource
from ..errors import ApplianceError, InvalidModelFile, ServiceUnavailable
from ..registry import Registry, VersionRecord
from .catalog import BackendCatalog
from .placement import Placement, variant_order
from .served import ServedVersion
from .warmup import inputs_from_manifest, warm_up

log = logging.getLogger(__name__)
T = TypeVar("T")


class VersionLoader:
    """Loads the variants of one version with this box's placement."""

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
        backend, why = self.catalog.pinned(pin, source.format)
        if backend is not None:
            return backend, backend.load(source, options=options.get(backend.name, {}))
        if why:
            if self.placement.gpu_fallback != "cpu":
                raise InvalidModelFile(
                    f"{why}; profile {self.placement.profile} refuses to fall back "
                    "(gpu_fallback = 'refuse')")
            served.notes.append(f"{why}; falling back per profile {self.placement.profile}")
            log.warning("%s version %s: %s", served.record.model, served.record.version,
                        served.notes[-1])
        return self.catalog.load(source, options=options)


def reason(exc: BaseException) -> str:
    """An exception as one line for a served version's ``reason``."""
    return exc.message if isinstance(exc, ApplianceError) else f"{type(exc).__name__}: {exc}"


def within_timeout(fn: Callable[[], T], timeout_s: float, what: str) -> T:
    """``fn()`` in a daemon worker thread; ServiceUnavailable (503) naming ``what`` when
    it takes longer than ``timeout_s`` (the worker is abandoned, never joined: a hung
    backend must not keep the process from exiting)."""
    future: Future[T] = Future()

    def work() -> None:
        try:
            future.set_result(fn())
        except BaseException as exc:  # re-raised in the caller by future.result()
            future.set_exception(exc)

    threading.Thread(target=work, name="load", daemon=True).start()
    if not wait([future], timeout=timeout_s).done:
        raise ServiceUnavailable(f"{what} took longer than {timeout_s:g} s (load_timeout_s)")
    return future.result()


def load_and_warm_up(loader: VersionLoader, served: ServedVersion) -> tuple[Backend,
                                                                             LoadedModel]:
    """Load ``served`` with ``loader`` and warm it up on the package's declared inputs
    (or inputs generated from the signature); ``served.warmup`` gets the timings. A
    failing warm-up closes the model and is ServiceUnavailable."""
    record = served.record
    rss_before = _rss()
    t0 = time.perf_counter()
    backend, model = loader.load(served)
    t1 = time.perf_counter()
    try:
        served.warmup = warm_up(model, inputs=inputs_from_manifest(record.manifest))
    except Exception as exc:
        model.close()
        raise ServiceUnavailable(f"warm-up of {record.model} version {record.version} "
                                 f"failed: {reason(exc)}") from exc
    # for metrics and /v1/health: the resident-set growth is approximate (anything else
    # the process allocates meanwhile counts, arenas reused from an unloaded model do not)
    served.load_s, served.warmup_s = t1 - t0, time.perf_counter() - t1
    served.memory_bytes = max(0, _rss() - rss_before)
    return backend, model


def _rss() -> int:
    """This process's resident set size in bytes (0 where psutil cannot tell)."""
    try:
        return int(psutil.Process().memory_info().rss)
    except Exception:
        return 0


def load_check(registry: Registry, catalog: BackendCatalog, timeout_s: float,
               placement: Placement | None = None) -> Callable[[VersionRecord], None]:
    """A promotion's ``loader``: load and warm up the version in this process, the way
    the runtime does, within ``timeout_s``, then close it; raise when it does not load."""
    loader = VersionLoader(registry, catalog, placement or Placement())

    def check(record: VersionRecord) -> None:
        served = ServedVersion.for_record(record)

        def work() -> None:
            _, model = load_and_warm_up(loader, served)
            model.close()

        within_timeout(work, timeout_s,
                       f"loading {record.model} version {record.version} and its warm-up")

    return check
