"""What a sync cycle works on: this box's registry, backends and how it switches versions.

Two ways to get one. In the serving process (:func:`box_of_services`) a promotion's load
check is the running repository's ``preload`` and a change is switched in by its
``refresh``: the safe switch of ``POST /v1/models/…/promote``, so the new version is
loaded and warm before default traffic moves and a failed load leaves the old one
serving. From the CLI (:func:`box_of_cli`) the version is loaded and warmed up in the
CLI process, the way ``appliance models promote`` checks it, and the server picks the
change up from the registry (its watcher) with the same switch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..alerts.engine import AlertEngine
    from ..lifecycle.promotion import Loader
    from ..registry import Registry
    from ..runtime.catalog import BackendCatalog
    from ..services import Services
    from ..settings import Settings

__all__ = ["Box", "box_of_cli", "box_of_services"]


def _quiet(line: str) -> None:
    """Progress that goes nowhere."""


@dataclass
class Box:
    """The box a cycle installs on and reports about."""

    settings: Settings
    registry: Registry
    catalog: BackendCatalog
    #: the promotion's loader: loads and warms up a version before the stage is written
    loader: Loader | None = None
    #: called once after a cycle changed the registry (the server re-reads it)
    on_change: Callable[[], None] | None = None
    #: a short health summary for reports ({"status", "reasons"})
    health: Callable[[], dict[str, Any]] | None = None
    #: the hardware facts and profile match for reports
    hardware: Callable[[], dict[str, Any]] | None = None
    #: production request counts per model and version, for reports
    metrics: Callable[[], dict[str, Any]] | None = None
    #: raise and resolve the sync alerts here when alerting is on
    alerts: AlertEngine | None = None
    #: one line per step (``appliance sync run`` prints them)
    progress: Callable[[str], None] = field(default=_quiet)


def box_of_services(services: Services) -> Box:
    """The serving process's box, on a registry connection of its own (the cycle runs
    in a scheduler thread); the caller closes ``box.registry``."""
    from ..registry.opener import connect_registry

    def health() -> dict[str, Any]:
        report = services.health.report() if services.health is not None else {}
        return {"status": report.get("status", "unknown"),
                "reasons": list(report.get("reasons", []))[:50]}

    monitor = services.dataplane.monitor
    return Box(settings=services.settings, registry=connect_registry(services.registry),
               catalog=services.catalog, loader=services.repository.preload,
               on_change=services.repository.refresh, health=health,
               hardware=services.hardware.report, alerts=services.alerts,
               metrics=monitor.summary if monitor is not None else None)


def box_of_cli(settings: Settings, registry: Registry,
               progress: Callable[[str], None] = _quiet) -> Box:
    """A box for a CLI process over the open ``registry``: the load check runs here."""
    from ..plugins import get_plugin_manager
    from ..runtime.catalog import BackendCatalog
    from ..runtime.loading import load_check

    pm = get_plugin_manager()
    catalog = BackendCatalog(pm)

    def hardware() -> dict[str, Any]:
        from ..services import discover_hardware

        return discover_hardware(settings, pm).report()

    def health() -> dict[str, Any]:
        failed = [f"{r.model} version {r.version} failed: {r.failure_reason}"
                  for r in registry.versions() if r.stage == "failed"]
        return {"status": "unknown", "source": "cli", "reasons": failed[:50]}

    return Box(settings=settings, registry=registry, catalog=catalog,
               loader=load_check(registry, catalog, settings.load_timeout_s),
               health=health, hardware=hardware, progress=progress)
