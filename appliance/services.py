"""Assemble the appliance from settings: plugins, registry, backends, loaded models."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pluggy

from .access.authenticator import Authenticator
from .alerts.engine import AlertEngine
from .audit.bridge import bridge_events
from .audit.runtime import AuditRuntime, open_audit
from .dataplane import DataPlane
from .drift import DriftMonitor
from .hardware import (
    HardwareFacts,
    Match,
    collect_plugin_facts,
    discover,
    hardware_report,
    load_profiles,
    match_profile,
)
from .lifecycle.deprecation import deprecation_headers
from .monitoring.alert_sources import watch_services
from .monitoring.collector import ApplianceCollector, metrics_registry
from .monitoring.health import HealthReport
from .monitoring.probe import RecoveryProbe
from .monitoring.recorder import RequestMonitor
from .packages.importer import import_model
from .plugins import get_plugin_manager
from .probes.exposure import connect_probes
from .probes.runner import ProbeRunner
from .registry import Registry
from .registry.opener import connect_registry
from .routing.router import Router
from .routing.shadow import ShadowRunner
from .runtime.catalog import BackendCatalog
from .runtime.placement import placement_for
from .runtime.repository import ModelRepository
from .runtime.scaling import ScalingController
from .runtime.watcher import RegistryWatcher
from .settings import Settings
from .sync.scheduler import start_sync, watch_sync
from .tracing import start_tracing

if TYPE_CHECKING:
    from .tracing.spans import RequestTracer

log = logging.getLogger(__name__)

DEMO_ACTOR = "appliance-demo-seed"


@dataclass
class Hardware:
    facts: HardwareFacts
    match: Match

    def report(self) -> dict[str, Any]:
        return hardware_report(self.facts, self.match)


def discover_hardware(settings: Settings, pm: pluggy.PluginManager) -> Hardware:
    """Facts (with what plugins see) and the matching profile; a broken explicit profile
    is a ConfigError, a broken bundled one is skipped with a warning."""
    facts = discover(collect_plugin_facts(pm))
    profiles = load_profiles(strict_paths=settings.profile_dirs)
    return Hardware(facts, match_profile(facts, profiles, override=settings.profile))


@dataclass
class Services:
    settings: Settings
    pm: pluggy.PluginManager
    registry: Registry
    catalog: BackendCatalog
    repository: ModelRepository
    dataplane: DataPlane
    hardware: Hardware

    #: who is calling (the ``[auth]`` checks), built with the services so a bad setting
    #: fails at start-up
    authenticator: Authenticator

    watcher: RegistryWatcher | None = None
    scheduler: Any = None
    audit: AuditRuntime | None = None
    autoscaler: ScalingController | None = None
    #: monitoring (appliance/monitoring/): set by build_services
    health: HealthReport = None  # type: ignore[assignment]
    metrics_registry: Any = None  # a private prometheus CollectorRegistry; None: off
    probe: RecoveryProbe | None = None
    #: drift sampling and evaluation (appliance/drift/); None while [drift] enabled = false
    drift: DriftMonitor | None = None
    #: the alerting engine (appliance/alerts/); None while [alerts] enabled = false
    alerts: AlertEngine | None = None
    #: synthetic probes of golden examples (appliance/probes/); None while [probes] is off
    probes: ProbeRunner | None = None
    #: traces of inference requests (appliance/tracing/); None while [tracing] is off
    tracing: RequestTracer | None = None
    #: canaries, bandits and rewards (appliance/routing/controller.py); set at load time
    routing: Any = None

    def close(self) -> None:
        if self.tracing is not None:  # flushes within [tracing] export_timeout_s
            self.tracing.shutdown()
        if self.probes is not None:
            self.probes.stop()
        if self.routing is not None:
            self.routing.stop()
        if self.dataplane.shadow is not None:
            self.dataplane.shadow.stop()
        if self.alerts is not None:
            self.alerts.close()
        if self.drift is not None:
            self.drift.close()
        if self.probe is not None:
            self.probe.stop()
        if self.autoscaler is not None:
            self.autoscaler.stop()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        if self.watcher is not None:
            self.watcher.stop()
        self.repository.close()
        if self.audit is not None:
            self.audit.close()
        self.repository.registry.close()
        self.registry.close()


def build_services(settings: Settings, *, pm: pluggy.PluginManager | None = None,
                   hardware: Hardware | None = None) -> Services:
    """Discover the box, open the registry and plugins; nothing is loaded yet (see
    :func:`load_models`)."""
    # first: a bad [auth] setting fails before anything is opened
    authenticator = Authenticator(settings.auth, settings.host, settings.data_dir)
    pm = pm or get_plugin_manager()
    hardware = hardware or discover_hardware(settings, pm)
    placement = placement_for(hardware.match, hardware.facts, settings.data_dir)
    for line in hardware.match.reasons:
        log.info("hardware: %s", line)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    registry = connect_registry(settings, pm=pm)
    registry.store.clean_staging()
    catalog = BackendCatalog(pm, placement.prefer, profile=hardware.match.profile)
    # the runtime reads the registry from loader and watcher threads: its own connection
    runtime_registry = connect_registry(registry)
    router = Router(lambda: runtime_registry.db, seed=settings.routing.reward_seed)
    repository = ModelRepository(runtime_registry, catalog,
                                 inline_threshold_us=settings.inline_threshold_us,
                                 placement=placement, load_timeout_s=settings.load_timeout_s,
                                 headers_for=deprecation_headers,
                                 serving=settings.models, router=router)
    pm.hook.appliance_startup(settings=settings, registry=registry)
    audit = open_audit(settings.data_dir, settings.audit,
                       box_key_provider=registry.box_key_provider)
    settings.metrics.check()
    monitor = RequestMonitor(settings.metrics)
    dataplane = DataPlane(repository, auditor=audit.auditor if audit else None,
                          monitor=monitor)
    dataplane.shadow = ShadowRunner(settings.routing, lambda: dataplane.inflight)
    services = Services(settings, pm, registry, catalog, repository, dataplane, hardware,
                        authenticator, audit=audit)
    services.health = HealthReport(services, monitor)
    if settings.alerts.enabled:
        services.alerts = AlertEngine(settings.data_dir, settings.alerts,
                                      audit=audit.log if audit else None)
    if settings.drift.enabled:
        services.drift = dataplane.drift = DriftMonitor(
            settings.drift, settings.data_dir, signature_of=_signature_of(repository))
    collector = None
    if settings.metrics.enabled:
        collector = ApplianceCollector(
            repository, monitor, lambda: services.audit.auditor if services.audit else None)
        services.metrics_registry = metrics_registry(collector)
    if settings.probes.enabled:
        services.probes = ProbeRunner(repository, dataplane, settings.probes)
        connect_probes(services.probes, collector=collector, alerts=services.alerts,
                       health=services.health)
    watch_services(services)  # health, drift and latency into the alert rules
    watch_sync(services)  # the hub sync as a health dependency (degraded, never unready)
    services.tracing = start_tracing(settings.tracing)
    return services


def _signature_of(repository: ModelRepository) -> Any:
    """(inputs, outputs) of a served version (None: the default one) for drift."""
    def signature_of(model: str, version: str | None) -> tuple[list[Any], list[Any]]:
        served = repository.find(model, version)
        return list(served.inputs.values()), list(served.outputs.values())
    return signature_of


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


def load_models(services: Services, *, watch: bool = True) -> None:
    """Load every version in a serving stage (failures are isolated), mark the server
    ready, then watch the registry for changes made by other processes."""
    services.repository.load_all()
    services.dataplane.started = True
    monitor = services.dataplane.monitor
    if services.probe is None and monitor is not None:
        services.probe = RecoveryProbe(services.repository, monitor)
        services.probe.start()
    if services.drift is not None:
        services.drift.start()
    if services.probes is not None:
        services.probes.start()
    if services.dataplane.shadow is not None:
        services.dataplane.shadow.start()
    if services.routing is None and services.repository.router is not None:
        services.routing = start_routing(services)
    if watch and services.watcher is None:
        audit = services.audit
        on_tick = (lambda db: bridge_events(db, audit.log)) if audit is not None else None
        services.watcher = RegistryWatcher(services.settings.registry_path, services.repository,
                                           services.settings.registry_poll_s, on_tick=on_tick)
        services.watcher.start()
    if services.autoscaler is None and any(m.autoscale for m in
                                           services.settings.models.values()):
        services.autoscaler = ScalingController(services.repository)
        services.autoscaler.start()
    if services.alerts is not None and services.settings.scheduler:
        services.alerts.start()  # one process per data directory ticks, as scheduling
    if services.settings.scheduler and services.scheduler is None:
        services.scheduler = start_scheduler(services.settings)
        start_sync(services)  # the scheduled hub sync, when the box is enrolled


def start_routing(services: Services) -> Any:
    """The routing thread (appliance/routing/controller.py) on its own registry
    connection; it ticks canaries, bandits and rewards."""
    from .routing.controller import RoutingController

    assert services.repository.router is not None
    controller = RoutingController(
        services.repository.router, services.settings.routing, services.settings.data_dir,
        registry=connect_registry(services.registry), repository=services.repository,
        app_settings=services.settings, alerts=services.alerts)
    for policy in list(services.repository.router.policies.values()):  # built before it
        controller.wire(policy.runtime, policy.route)
    controller.start()
    return controller


def start_scheduler(settings: Settings) -> Any:
    """APScheduler with the persistent job store in the registry database: scheduled
    promotions (added by the CLI or API) and the daily retention run."""
    from .lifecycle.retention import apply_retention_job
    from .lifecycle.schedule import make_scheduler

    scheduler = make_scheduler(settings.data_dir, poll_s=settings.registry_poll_s,
                               webhooks=settings.lifecycle.webhooks)
    scheduler.start()
    # audit checkpoints are signed by the audit runtime's own thread (audit/runtime.py);
    # a job stored by an earlier release would sign them twice
    if scheduler.get_job("audit-checkpoint") is not None:
        scheduler.remove_job("audit-checkpoint")
    scheduler.add_job(apply_retention_job, "interval", hours=24, id="retention",
                      args=[str(settings.data_dir.resolve())], replace_existing=True)
    return scheduler

