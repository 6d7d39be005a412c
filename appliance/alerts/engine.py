"""The alerting engine: the one entry point other subsystems call.

    engine = AlertEngine(data_dir, settings.alerts, audit=audit_log)
    engine.fire("DriftWarning", "warning", {"model": "fraud", "feature": "amount"},
                {"summary": "PSI 0.31"}, source="drift")
    engine.resolve("DriftWarning", {"model": "fraud", "feature": "amount"})
    engine.evaluate({"health": {"fraud": "down"}})     # the declarative rules
    engine.tick()                                       # timers, escalation, delivery

``fire`` / ``resolve`` / ``evaluate`` only record state (one transaction each, cheap,
no I/O beyond ``alerts.db``); ``tick`` does everything time-driven: it evaluates the
registered snapshot sources, audits silences that ended, escalates what stayed
unacknowledged, flushes the groups that are due (:mod:`.grouping`) into the outbox, and
delivers the outbox (:mod:`.outbox`). All of it reads the injectable ``clock`` (epoch
seconds), so tests drive the timeline; the server ticks every ``alerts.tick_s`` from a
thread (:mod:`.ticker`). No state is kept in memory between calls: a new engine on the
same data directory (a restart, or the CLI) carries on where the last one stopped.

Silences and acknowledgements are in :mod:`.operations`, which this class mixes in.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BadRequest
from .escalation import sinks_for, target_level
from .grouping import Flush, group_key, group_labels, plan
from .model import Alert, check_labels, check_severity, fingerprint, iso, raised
from .operations import Operations
from .outbox import deliver_due, enqueue
from .rules import configured_rules, evaluate
from .settings import AlertSettings
from .sinks import Sink, build_sinks
from .store import AlertStore
from .suppression import Inhibition, suppression
from .ticker import AlertTicker

if TYPE_CHECKING:
    from ..audit.log import AuditLog

log = logging.getLogger("appliance.alerts")

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_:.-]{0,127}$")
Snapshot = dict[str, Any]


@dataclass(slots=True)
class TickReport:
    """What one tick did."""

    escalated: int = 0
    notifications: int = 0
    delivered: int = 0
    silences_ended: int = 0


class AlertEngine(Operations):
    """Alerts of one data directory (``alerts.db``), notified through ``sinks``."""

    def __init__(self, data_dir: Path, settings: AlertSettings, *,
                 clock: Callable[[], float] = time.time, audit: AuditLog | None = None,
                 sinks: dict[str, Sink] | None = None) -> None:
        self.settings = settings
        self.store = AlertStore(Path(data_dir))
        self.clock = clock
        self.audit = audit
        self.sinks = build_sinks(settings) if sinks is None else sinks
        self.levels = settings.levels()
        self.inhibitions = [Inhibition.from_settings(r) for r in settings.inhibit]
        self.rules = configured_rules(settings)
        self._sources: list[Callable[[], Snapshot]] = []
        self._tick_lock = threading.Lock()
        self._ticker: AlertTicker | None = None

    def start(self, every_s: float | None = None) -> None:
        """Tick every ``every_s`` (default ``tick_s``) seconds from a daemon thread."""
        if self._ticker is None:
            self._ticker = AlertTicker(self.tick, every_s or self.settings.tick_s)
            self._ticker.start()

    def close(self) -> None:
        """Stop ticking, close ``alerts.db``."""
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None
        with self._tick_lock:
            self.store.close()

    # -- recording ------------------------------------------------------------------
    def fire(self, name: str, severity: str = "warning",
             labels: dict[str, Any] | None = None,
             annotations: dict[str, Any] | None = None, source: str = "api") -> Alert:
        """Record that alert ``name{labels}`` fires (again); returns the stored alert.
        The model's impact setting may raise ``severity`` a level."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise BadRequest(f"alert name {name!r} is not valid: use letters, digits, "
                             "'_', ':', '.', '-', starting with a letter (e.g. ModelDown)")
        base = check_severity(severity)
        given = check_labels({k: v for k, v in (labels or {}).items()
                              if k not in ("alertname", "severity")})
        effective = raised(base, self.settings.impact_of(given.get("model")))
        full = {**given, "alertname": name, "severity": effective}
        now = self.clock()
        alert_id = fingerprint(name, full)
        notes = {str(k): str(v) for k, v in (annotations or {}).items()}
        with self.store.transaction():
            old = self.store.alert(alert_id)
            if old is not None and old.state == "firing":
                old.labels, old.annotations, old.severity = full, notes, effective
                old.base_severity, old.source, old.updated_at = base, source, now
                alert = old
            else:
                key = group_key(full, self.settings.group_by)
                alert = Alert(alert_id, name, full, notes, effective, base, source, "firing",
                              now, now, key)
                if old is not None and old.notified_state == "firing":
                    # fired again before its resolution went out: the sinks never saw a gap
                    alert.notified_state, alert.notified_level = "firing", old.notified_level
                self.store.ensure_group(key, group_labels(full, self.settings.group_by),
                                        now, self.settings.group_wait_s)
            self.store.save_alert(alert)
        return alert

    def resolve(self, name: str, labels: dict[str, Any] | None = None) -> Alert | None:
        """Record that ``name{labels}`` no longer fires; the alert, or None when it was
        not firing."""
        given = check_labels({k: v for k, v in (labels or {}).items()
                              if k not in ("alertname", "severity")})
        alert_id = fingerprint(name, {**given, "alertname": name})
        now = self.clock()
        with self.store.transaction():
            alert = self.store.alert(alert_id)
            if alert is None or alert.state != "firing":
                return None
            alert.state, alert.ends_at, alert.updated_at = "resolved", now, now
            self.store.save_alert(alert)
            self.store.ensure_group(alert.group_key,
                                    group_labels(alert.labels, self.settings.group_by),
                                    now, self.settings.group_wait_s)
        return alert

    def add_source(self, source: Callable[[], Snapshot]) -> None:
        """Evaluate the rules over ``source()`` at every tick (health, drift, probes,
        metrics register theirs)."""
        self._sources.append(source)

    def evaluate(self, snapshot: Snapshot) -> list[Alert]:
        """Apply the rules to ``snapshot``: fire what holds, resolve what no longer does
        (and what a present section no longer lists); the alerts that changed."""
        changed: list[Alert] = []
        seen: dict[str, set[str]] = defaultdict(set)
        for outcome in evaluate(self.rules, snapshot):
            seen[outcome.rule.name].add(outcome.model)
            if outcome.holds:
                changed.append(self.fire(outcome.rule.name, outcome.rule.severity,
                                         outcome.labels, outcome.annotations, source="rule"))
            elif (gone := self.resolve(outcome.rule.name, outcome.labels)) is not None:
                changed.append(gone)
        decided = {rule.name for rule in self.rules if _has(snapshot, rule.path)}
        for alert in self.store.alerts("state = 'firing' AND source = 'rule'"):
            model = alert.labels.get("model", "")
            if (alert.name in decided and model not in seen[alert.name]
                    and (gone := self.resolve(alert.name, {"model": model})) is not None):
                changed.append(gone)
        return changed

    # -- the clock's work -------------------------------------------------------------
    def tick(self) -> TickReport:
        """Sources, ended silences, escalation, due groups, delivery (see the module)."""
        with self._tick_lock:
            for source in self._sources:
                try:
                    self.evaluate(source())
                except Exception:  # one broken source must not stop notifications
                    log.exception("alert snapshot source %r failed", source)
            report = TickReport(silences_ended=self.audit_ended_silences())
            now = self.clock()
            with self.store.transaction():
                alerts = self.store.alerts()
                held = suppression(alerts, self.store.silences(), self.inhibitions, now)
                report.escalated = self._escalate(alerts, held.suppressed, now)
                members: dict[str, list[Alert]] = defaultdict(list)
                for alert in alerts:
                    members[alert.group_key].append(alert)
                suppressed = set(held.silenced_by) | set(held.inhibited_by)
                for group in self.store.groups():
                    if group["next_flush_at"] <= now:
                        report.notifications += self._flush(group, members[group["key"]],
                                                            suppressed, now)
            report.delivered = deliver_due(self.store, self.sinks, now,
                                           self.settings.delivery)
            self.store.forget_resolved(now - self.settings.resolved_retention_s)
            return report

    def _escalate(self, alerts: list[Alert], suppressed: Callable[[str], bool],
                  now: float) -> int:
        count = 0
        for alert in alerts:
            if alert.state != "firing" or suppressed(alert.id):
                continue
            level = target_level(alert, self.levels, now)
            if level > alert.level:
                alert.level = level
                self.store.save_alert(alert)
                self.store.update_group(alert.group_key, next_flush_at=now)  # tell now
                log.info("alert %s %s escalated to level %d", alert.name, alert.id, level)
                count += 1
        return count

    def _flush(self, group: dict[str, Any], members: list[Alert], suppressed: set[str],
               now: float) -> int:
        """Flush one due group (inside the tick's transaction); notifications queued."""
        flush = plan(group, members, suppressed, now, self.settings.repeat_interval_s)
        if flush.drop:
            self.store.drop_group(group["key"])
            return 0
        next_at = now + self.settings.group_interval_s
        if not flush.notify:
            self.store.update_group(group["key"], next_flush_at=next_at)
            return 0
        level = max(a.level for a in [*flush.firing, *flush.resolved])
        notification = self._notification(group, flush, level, now)
        for sink in sinks_for(level, self.levels):
            enqueue(self.store, sink, notification, now)
        for alert in flush.firing:
            alert.notified_state, alert.notified_level = "firing", alert.level
            self.store.save_alert(alert)
        for alert in flush.resolved:
            alert.notified_state = "resolved"
            self.store.save_alert(alert)
        self.store.update_group(group["key"], next_flush_at=next_at, last_notified_at=now)
        return 1

    def _notification(self, group: dict[str, Any], flush: Flush, level: int,
                      now: float) -> dict[str, Any]:
        """The sink-neutral notification (see :mod:`appliance.alerts.sinks`)."""
        ends = now + 2 * self.settings.repeat_interval_s
        base = self.settings.external_url.rstrip("/")

        def wire(alert: Alert) -> dict[str, Any]:
            firing = alert.state == "firing"
            return {"id": alert.id, "status": alert.state, "labels": alert.labels,
                    "annotations": alert.annotations, "startsAt": iso(alert.starts_at),
                    "endsAt": iso(ends if firing else alert.ends_at),
                    "generatorURL": f"{base}/v1/alerts?id={alert.id}",
                    "severity": alert.severity, "source": alert.source,
                    "acked_by": alert.acked_by, "level": alert.level}

        alerts = [*flush.firing, *flush.resolved]
        common = {k: v for k, v in alerts[0].labels.items()
                  if all(a.labels.get(k) == v for a in alerts)}
        return {"version": "1", "status": "firing" if flush.firing else "resolved",
                "group_key": group["key"], "group_labels": group["labels"],
                "common_labels": common, "level": level, "sent_at": iso(now),
                "alerts": [wire(a) for a in alerts]}


def _has(snapshot: Snapshot, path: str) -> bool:
    value: Any = snapshot
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return isinstance(value, dict)
