"""Alerting settings, ``[alerts]`` in the TOML file (``Settings.alerts``); see
docs/alerts.md for a full example.

Kept free of engine imports: :mod:`appliance.settings` imports this module, and a bad
value (an unknown sink type, an escalation level naming no sink, a matcher that does not
parse) is a settings error at load time, named.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from ..errors import BadRequest


class SinkSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One place notifications go: ``[alerts.sinks.<name>]``."""

    type: Literal["webhook", "alertmanager", "syslog"]
    #: webhook: the URL POSTed to; alertmanager: its base URL (…/api/v2/alerts is added)
    url: str = ""
    #: syslog: the collector
    host: str = ""
    port: int = 514
    transport: Literal["udp", "tcp", "tls"] = "udp"
    ca_file: str | None = None
    #: syslog facility (1 = user-level; the audit forwarder uses 13, log audit)
    facility: int = 1

    def __post_init__(self) -> None:
        if self.type in ("webhook", "alertmanager") and not self.url:
            raise ValueError(f"alerts sink of type {self.type} needs url = \"https://…\"")
        if self.type == "syslog" and not self.host:
            raise ValueError("alerts sink of type syslog needs host = \"siem.example\"")
        if not 0 <= self.facility <= 23:
            raise ValueError("alerts sink facility must be 0..23")


class EscalationLevel(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[[alerts.escalation]]``: once an alert is unacknowledged for ``after_s`` seconds
    (since it started firing), these sinks are told too (levels are cumulative)."""

    after_s: float = 0.0
    sinks: list[str] = msgspec.field(default_factory=list)


class InhibitRule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[[alerts.inhibit]]``: while an alert matching ``source`` fires, alerts matching
    ``target`` with the same values of the ``equal`` labels are not notified."""

    source: list[str]
    target: list[str]
    equal: list[str] = msgspec.field(default_factory=list)


class ModelAlerting(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[alerts.models.<name>]``: ``impact = "high"`` raises the model's alerts a level."""

    impact: Literal["low", "normal", "high"] = "normal"


class RuleOverride(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[alerts.rules.<RuleName>]``: change a built-in rule's threshold or severity."""

    value: Any = None
    severity: Literal["info", "warning", "critical"] | None = None
    enabled: bool = True


class RuleSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[[alerts.custom_rules]]``: a rule of one's own (see :mod:`appliance.alerts.rules`)."""

    name: str
    path: str
    op: Literal["==", "!=", ">", ">=", "<", "<="]
    value: Any
    severity: Literal["info", "warning", "critical"] = "warning"
    field: str | None = None
    summary: str = ""


class DeliverySettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How the notification outbox delivers: ``[alerts.delivery]``."""

    #: loopback/private destinations allowed for webhook and alertmanager sinks (as
    #: lifecycle.webhooks.allow: addresses or CIDR networks)
    allow: list[str] = msgspec.field(default_factory=list)
    timeout_s: float = 5.0
    backoff_s: float = 10.0
    max_backoff_s: float = 600.0
    #: 0: retry for ever (a sink that is down gets everything when it is back)
    max_attempts: int = 0

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.backoff_s < 0 or self.max_backoff_s < self.backoff_s:
            raise ValueError("alerts.delivery: timeout_s > 0 and 0 <= backoff_s <= "
                             "max_backoff_s")


def _default_inhibit() -> list[InhibitRule]:
    return [InhibitRule(source=['alertname="ModelDown"'],
                        target=['alertname=~"Drift.*|ProbeFailed|LatencySLOBreach"'],
                        equal=["model"])]


class AlertSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The alerting engine: grouping, timers, sinks, escalation, inhibition."""

    enabled: bool = True
    #: where operators reach this appliance: the ``generatorURL`` of each alert sent to
    #: an Alertmanager is ``<external_url>/v1/alerts?id=<id>``
    external_url: str = "http://localhost:8000"
    #: seconds between the server's evaluation/notification ticks
    tick_s: float = 5.0
    group_by: list[str] = msgspec.field(default_factory=lambda: ["alertname"])
    group_wait_s: float = 30.0
    group_interval_s: float = 300.0
    repeat_interval_s: float = 14400.0
    #: resolved alerts are listed this long after they were notified, then forgotten
    resolved_retention_s: float = 86400.0
    sinks: dict[str, SinkSettings] = msgspec.field(default_factory=dict)
    #: empty: one level, at once, to every sink
    escalation: list[EscalationLevel] = msgspec.field(default_factory=list)
    inhibit: list[InhibitRule] = msgspec.field(default_factory=_default_inhibit)
    models: dict[str, ModelAlerting] = msgspec.field(default_factory=dict)
    rules: dict[str, RuleOverride] = msgspec.field(default_factory=dict)
    custom_rules: list[RuleSpec] = msgspec.field(default_factory=list)
    delivery: DeliverySettings = msgspec.field(default_factory=DeliverySettings)

    def __post_init__(self) -> None:
        from .model import parse_matcher

        if self.tick_s <= 0 or min(self.group_wait_s, self.group_interval_s,
                                   self.repeat_interval_s) < 0:
            raise ValueError("alerts: tick_s must be > 0 and the group timers >= 0")
        for level in self.escalation:
            for sink in level.sinks:
                if sink not in self.sinks:
                    raise ValueError(f"alerts.escalation names sink {sink!r}, which is not "
                                     f"in [alerts.sinks] (known: {sorted(self.sinks)})")
        for rule in self.inhibit:
            for text in [*rule.source, *rule.target]:
                try:
                    parse_matcher(text)
                except BadRequest as exc:
                    raise ValueError(f"alerts.inhibit: {exc.message}") from None

    def levels(self) -> list[EscalationLevel]:
        """The escalation levels, ordered by ``after_s``; without any, one level telling
        every sink at once."""
        if not self.escalation:
            return [EscalationLevel(after_s=0.0, sinks=sorted(self.sinks))]
        return sorted(self.escalation, key=lambda level: level.after_s)

    def impact_of(self, model: str | None) -> str | None:
        return self.models[model].impact if model and model in self.models else None
