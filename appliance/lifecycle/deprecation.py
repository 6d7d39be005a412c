"""Deprecating a model version: dates, successor, consumer notices and response headers.

:func:`deprecate` stores the deprecation date, optional sunset date and successor on
the version and notifies every registered consumer of the model: a ``notices`` row each,
and an HTTP POST of a JSON notice to the consumer's webhook (5 s timeout). A webhook that
fails is recorded (``delivered = 0``, the error in ``detail``), never raised. It does not
change the version's stage: moving production → deprecated is a stage transition.

:func:`deprecation_headers` gives what inference responses of such a version carry:
``Deprecation`` (RFC 9745, ``@<unix seconds>``), ``Sunset`` (RFC 8594, an HTTP-date) and a
``Link`` to the successor version (``rel="successor-version"``).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from email.utils import format_datetime
from typing import Any

from ..errors import BadRequest
from ..registry import Registry
from ..registry.db import bump_generation, now, transaction
from .consumers import list_consumers
from .holds import record_event

WEBHOOK_TIMEOUT_S = 5.0


def parse_date(option: str, value: str | date | datetime) -> datetime:
    """An ISO 8601 date or date-time as an aware datetime (UTC when no offset is given)."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    else:
        try:
            parsed = datetime.fromisoformat(value.strip())
        except (ValueError, AttributeError):
            raise BadRequest(f"{option} {value!r} is not an ISO 8601 date, e.g. 2026-12-31 "
                             "or 2026-12-31T12:00:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def post_json(url: str, payload: dict[str, Any]) -> tuple[bool, str]:
    """POST ``payload`` to ``url``; (delivered, what happened). Never raises."""
    try:
        try:
            import httpx
        except ImportError:  # pragma: no cover - httpx is normally installed
            import urllib.request
            request = urllib.request.Request(
                url, data=json.dumps(payload).encode(), method="POST",
                headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:
                return True, f"HTTP {response.status}"
        response = httpx.post(url, json=payload, timeout=WEBHOOK_TIMEOUT_S)
        response.raise_for_status()
        return True, f"HTTP {response.status_code}"
    except Exception as exc:  # any failure is recorded on the notice, not raised
        return False, f"{type(exc).__name__}: {exc}"


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
    pending: list[tuple[int, Any]] = []
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
                      "pending": "webhook not called yet" if consumer.webhook
                      else f"no webhook: notify {consumer.contact}"}
            cur = db.execute("INSERT INTO notices (consumer, model, version, kind, at, "
                             "detail, delivered) VALUES (?, ?, ?, 'deprecation', ?, ?, 0)",
                             [consumer.name, model, version, at, json.dumps(detail)])
            pending.append((int(cur.lastrowid or 0), consumer))
        bump_generation(db)
    results = []
    for notice_id, consumer in pending:
        result = {"consumer": consumer.name, "contact": consumer.contact,
                  "webhook": consumer.webhook, "delivered": False}
        if consumer.webhook:  # outside the transaction: never hold the lock on the network
            delivered, outcome = post_json(consumer.webhook, {
                **notice, "consumer": consumer.name, "reads": consumer.reads})
            detail = {"message": text, "contact": consumer.contact,
                      "webhook": consumer.webhook,
                      ("result" if delivered else "error"): outcome}
            with transaction(registry.db) as db:
                db.execute("UPDATE notices SET delivered = ?, detail = ? WHERE id = ?",
                           [int(delivered), json.dumps(detail), notice_id])
            result.update({"delivered": delivered, ("result" if delivered else "error"): outcome})
        results.append(result)
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
