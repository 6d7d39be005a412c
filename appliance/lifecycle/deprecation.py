"""Deprecating a model version: dates, successor, consumer notices and response headers.

:func:`deprecate` stores the deprecation date, optional sunset date and successor on
the version and notifies every registered consumer of the model: a ``notices`` row each
and, for a consumer with a webhook, a ``webhook_outbox`` row in the same transaction. It
sends nothing itself: the serving process delivers the outbox off the request path, with
retries (:mod:`appliance.lifecycle.webhooks`), and copies each outcome onto the notice.
It does not change the version's stage: moving production → deprecated is a stage
transition.

:func:`deprecation_headers` gives what inference responses of such a version carry:
``Deprecation`` (RFC 9745, ``@<unix seconds>``), ``Sunset`` (RFC 8594, an HTTP-date) and a
``Link`` to the successor version (``rel="successor-version"``).

SQL here: owns the ``notices`` table and the deprecation columns of ``versions``
(``deprecation_date``, ``sunset_date``, ``successor``), written with the notices in
one transaction; events go through :mod:`appliance.registry.events`.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from email.utils import format_datetime
from typing import Any

from ..errors import BadRequest
from ..registry import Registry
from ..registry.db import bump_generation, now, parse_time, transaction
from ..registry.events import record_event
from .consumers import list_consumers
from .webhooks import enqueue


def parse_date(option: str, value: str | date | datetime) -> datetime:
    """An ISO 8601 date or date-time as an aware datetime (UTC when no offset is given)."""
    try:
        return parse_time(value)
    except ValueError:
        raise BadRequest(f"{option} {value!r} is not an ISO 8601 date, e.g. 2026-12-31 "
                         "or 2026-12-31T12:00:00Z") from None


def _message(model: str, version: str, deprecated: datetime, sunset: datetime | None,
             successor: str | None) -> str:
    text = f"{model} version {version} is deprecated as of {deprecated.isoformat()}"
    if sunset:
        text += f" and stops serving at {sunset.isoformat()}"
    if successor:
        text += f"; move to version {successor}"
    return text


def deprecate(registry: Registry, model: str, version: str, *,
              deprecation_date: str | date | datetime,
              sunset_date: str | date | datetime | None = None, successor: str | None = None,
              actor: str) -> dict[str, Any]:
    """Record the deprecation of ``model`` ``version`` and notify its consumers."""
    registry.version(model, version)  # NotFound
    deprecated = parse_date("deprecation date", deprecation_date)
    sunset = parse_date("sunset date", sunset_date) if sunset_date else None
    if sunset and sunset < deprecated:
        raise BadRequest(f"sunset date {sunset.isoformat()} is before the deprecation date "
                         f"{deprecated.isoformat()}")
    if successor is not None:
        if successor == version:
            raise BadRequest(f"version {version} cannot be its own successor")
        registry.version(model, successor)  # NotFound naming the model
    actor = actor or "cli"
    at = now()
    text = _message(model, version, deprecated, sunset, successor)
    consumers = list_consumers(registry, model)
    notice = {"kind": "deprecation", "model": model, "version": version,
              "deprecation_date": deprecated.isoformat(),
              "sunset_date": sunset.isoformat() if sunset else None,
              "successor": successor, "message": text}
    results = []
    with transaction(registry.db) as db:
        db.execute("UPDATE versions SET deprecation_date = ?, sunset_date = ?, successor = ? "
                   "WHERE model = ? AND version = ?",
                   [notice["deprecation_date"], notice["sunset_date"], successor, model,
                    version])
        record_event(db, at=at, actor=actor, action="deprecate", model=model, version=version,
                     detail={k: notice[k] for k in ("deprecation_date", "sunset_date",
                                                    "successor")})
        for consumer in consumers:
            detail = {"message": text, "contact": consumer.contact,
                      "webhook": consumer.webhook,
                      "pending": "webhook queued for delivery" if consumer.webhook
                      else f"no webhook: notify {consumer.contact}"}
            cur = db.execute("INSERT INTO notices (consumer, model, version, kind, at, "
                             "detail, delivered) VALUES (?, ?, ?, 'deprecation', ?, ?, 0)",
                             [consumer.name, model, version, at, json.dumps(detail)])
            notice_id = int(cur.lastrowid or 0)
            result: dict[str, Any] = {"consumer": consumer.name, "contact": consumer.contact,
                                      "webhook": consumer.webhook, "delivered": False,
                                      "notice_id": notice_id, "outbox_id": None}
            if consumer.webhook:
                result["outbox_id"] = enqueue(
                    db, notice_id=notice_id, consumer=consumer.name, model=model,
                    url=consumer.webhook, at=at,
                    payload={**notice, "consumer": consumer.name, "reads": consumer.reads})
            results.append(result)
        bump_generation(db)
    return {**notice, "actor": actor, "at": at, "notices": results}


def deprecation_headers(record: Any, base_url: str = "") -> dict[str, str]:
    """Response headers for a version (a VersionRecord); ``{}`` when it is not deprecated.

    ``base_url`` (e.g. ``https://box:8000``) prefixes the successor link; without it the
    link is a path, which HTTP resolves against the request URL.
    """
    when = getattr(record, "deprecation_date", None)
    if not when and getattr(record, "stage", None) == "deprecated":
        when = getattr(record, "stage_changed_at", None)
    if not when:
        return {}
    try:  # a header must never fail an inference: skip what does not parse
        headers = {"Deprecation": f"@{int(parse_date('deprecation date', when).timestamp())}"}
        if getattr(record, "sunset_date", None):
            sunset = parse_date("sunset date", record.sunset_date).astimezone(UTC)
            headers["Sunset"] = format_datetime(sunset, usegmt=True)
    except BadRequest:
        return {}
    if getattr(record, "successor", None):
        headers["Link"] = (f"<{base_url.rstrip('/')}/v2/models/{record.model}/versions/"
                           f"{record.successor}>; rel=\"successor-version\"")
    return headers
