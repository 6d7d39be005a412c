"""Alerting: alerts fired by drift, health, probes and metrics rules, grouped, inhibited,
silenced, escalated and delivered to webhooks, syslog and Alertmanager (docs/alerts.md).

- :mod:`.model`: severities, :class:`Alert`, matchers, :class:`Silence`;
  :mod:`.settings`: ``[alerts]``; :mod:`.rules`: declarative rules over a snapshot.
- :mod:`.store`: ``<data_dir>/alerts.db``; :mod:`.grouping`, :mod:`.suppression`,
  :mod:`.escalation`: the pure decisions; :mod:`.outbox`: persistent delivery.
- :mod:`.sinks` (+ ``sinks_http``, ``sinks_syslog``): where notifications go.
- :mod:`.engine`: :class:`AlertEngine`, the entry point (``fire``, ``resolve``,
  ``evaluate``, ``tick``; ``ack`` and silences from :mod:`.operations`);
  :mod:`.ticker`: the server's clock thread.

This package's ``__init__`` imports only the settings and model types:
:mod:`appliance.settings` imports :mod:`.settings`, and the engine pulls in the audit
and webhook modules. Import the engine from :mod:`appliance.alerts.engine`.
"""

from .model import SEVERITIES, Alert, Matcher, Severity, Silence, parse_matcher
from .settings import AlertSettings

__all__ = [
    "SEVERITIES",
    "Alert",
    "AlertSettings",
    "Matcher",
    "Severity",
    "Silence",
    "parse_matcher",
]
