"""HTTP sinks: a JSON webhook, and Alertmanager's ``POST /api/v2/alerts``.

Both POST through :func:`appliance.lifecycle.webhooks.post_pinned`, the consumer
webhooks' sender: the destination's addresses are checked at send time (loopback,
private, link-local … refused unless ``[alerts.delivery] allow`` names them), the
request is pinned to the checked address, redirects are not followed. A refused
destination is a permanent failure (retrying cannot help); anything else is retried
by the outbox.

The Alertmanager sink sends the notification's alerts as Alertmanager's v2 API wants
them: a list of ``{labels, annotations, startsAt, endsAt, generatorURL}``. A firing
alert's ``endsAt`` lies two ``repeat_interval`` ahead, so Alertmanager keeps it firing
until the next repeat; a resolved alert's is when it resolved. That lets a site's
Alertmanager take over grouping, silencing and routing.
"""

from __future__ import annotations

from typing import Any, cast

from ..lifecycle.settings import WebhookSettings
from ..lifecycle.webhooks import post_pinned
from .sinks import Delivery

AM_FIELDS = ("labels", "annotations", "startsAt", "endsAt", "generatorURL")


class WebhookSink:
    """POST the notification as JSON (with ``receiver`` set to this sink's name)."""

    def __init__(self, name: str, url: str, http: WebhookSettings) -> None:
        self.name, self.url, self.http = name, url, http

    def send(self, notification: dict[str, Any], row_id: int) -> Delivery:
        payload = {**notification, "receiver": self.name, "notification_id": row_id}
        delivered, outcome, permanent = post_pinned(self.url, payload, self.http)
        return Delivery(delivered, outcome, permanent)


def alertmanager_alerts(notification: dict[str, Any]) -> list[dict[str, Any]]:
    """The notification's alerts in Alertmanager's ``PostableAlerts`` shape."""
    return [{key: alert[key] for key in AM_FIELDS} for alert in notification["alerts"]]


class AlertmanagerSink:
    """POST the alerts to ``<url>/api/v2/alerts``."""

    def __init__(self, name: str, url: str, http: WebhookSettings) -> None:
        self.name, self.http = name, http
        self.url = url.rstrip("/") + "/api/v2/alerts"

    def send(self, notification: dict[str, Any], row_id: int) -> Delivery:
        # post_pinned is typed for a JSON object but hands it to httpx's json=, which
        # encodes any JSON value: Alertmanager wants a bare list
        body = cast("dict[str, Any]", alertmanager_alerts(notification))
        delivered, outcome, permanent = post_pinned(self.url, body, self.http)
        return Delivery(delivered, outcome, permanent)
