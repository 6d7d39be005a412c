"""Where notifications go: the sink interface, and sinks built from ``[alerts.sinks]``.

A notification (built by the engine, stored in the outbox as JSON) says which group it
is about and lists its alerts, each already in Alertmanager's field names::

    {"version": "1", "receiver": "oncall", "status": "firing", "group_key": "…",
     "group_labels": {"alertname": "DriftWarning"}, "level": 0, "sent_at": "…",
     "alerts": [{"id": "…", "status": "firing", "labels": {…}, "annotations": {…},
                 "startsAt": "…", "endsAt": "…", "generatorURL": "…",
                 "severity": "warning", "source": "drift", "acked_by": null}]}

A sink renders it for its destination and sends it once: :meth:`Sink.send` returns a
:class:`Delivery` (delivered, what happened, whether retrying is pointless) and never
raises; the outbox (:mod:`appliance.alerts.outbox`) retries what failed. Sinks:
``webhook`` and ``alertmanager`` (:mod:`.sinks_http`), ``syslog`` (:mod:`.sinks_syslog`).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from ..errors import ConfigError
from .settings import AlertSettings


class Delivery(NamedTuple):
    delivered: bool
    outcome: str
    permanent: bool = False


class Sink(Protocol):
    """A destination for notifications."""

    name: str

    def send(self, notification: dict[str, Any], row_id: int) -> Delivery:
        """Deliver ``notification`` (outbox row ``row_id``) once; never raise."""
        raise NotImplementedError("a sink sends one notification and says how it went")


def build_sinks(settings: AlertSettings) -> dict[str, Sink]:
    """One sink per ``[alerts.sinks.<name>]``."""
    from ..lifecycle.settings import WebhookSettings
    from .sinks_http import AlertmanagerSink, WebhookSink
    from .sinks_syslog import SyslogSink

    http = WebhookSettings(allow=list(settings.delivery.allow),
                           timeout_s=settings.delivery.timeout_s)
    sinks: dict[str, Sink] = {}
    for name, spec in settings.sinks.items():
        if spec.type == "webhook":
            sinks[name] = WebhookSink(name, spec.url, http)
        elif spec.type == "alertmanager":
            sinks[name] = AlertmanagerSink(name, spec.url, http)
        elif spec.type == "syslog":
            sinks[name] = SyslogSink(name, spec.host, spec.port, spec.transport,
                                     ca_file=spec.ca_file, facility=spec.facility,
                                     timeout_s=settings.delivery.timeout_s)
        else:  # pragma: no cover - the settings type admits no other value
            raise ConfigError(f"alerts sink {name!r}: unknown type {spec.type!r}")
    return sinks
