"""Assemble the appliance from settings: plugins, registry, backends, loaded models."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pluggy

from .dataplane import DataPlane
from .plugins import get_plugin_manager
from .registry import Registry
from .runtime.catalog import BackendCatalog
from .runtime.importer import import_model
from .runtime.repository import ModelRepository
from .settings import Settings

log = logging.getLogger(__name__)

DEMO_ACTOR = "appliance-demo-seed"


@dataclass
class Services:
    settings: Settings
    pm: pluggy.PluginManager
    registry: Registry
    catalog: BackendCatalog
    repository: ModelRepository
    dataplane: DataPlane

    def close(self) -> None:
        self.repository.close()
        self.registry.close()


def build_services(settings: Settings, *, pm: pluggy.PluginManager | None = None,
                   prefer: dict[str, list[str]] | None = None,
                   backend_options: dict[str, dict[str, Any]] | None = None) -> Services:
    """Open the registry and plugins; nothing is loaded yet (see :func:`load_models`)."""
    pm = pm or get_plugin_manager()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    registry = Registry(settings.data_dir)
    registry.store.clean_staging()
    catalog = BackendCatalog(pm, prefer)
    repository = ModelRepository(registry, catalog,
                                 inline_threshold_us=settings.inline_threshold_us,
                                 backend_options=backend_options)
    pm.hook.appliance_startup(settings=settings, registry=registry)
    return Services(settings, pm, registry, catalog, repository, DataPlane(repository))


def seed_demo_models(services: Services) -> list[str]:
    """Register the bundled demo models when the registry holds no model at all."""
    from .demo import demo_models

    if services.registry.models():
        return []
    added = []
    for name, path in demo_models():
        try:
            import_model(services.registry, services.catalog, path, name=name,
                         created_by=DEMO_ACTOR)
            added.append(name)
        except Exception as exc:  # a demo that cannot load must not stop the appliance
            log.warning("demo model %s not registered: %s", name, exc)
    return added


def load_models(services: Services) -> None:
    """Load every registered version (failures are isolated), then mark ready."""
    services.repository.load_all()
    services.dataplane.started = True
