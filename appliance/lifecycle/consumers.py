"""Consumers: who reads which outputs of a model, and how to reach them.

Deprecation notices go to every consumer of a model (see
:mod:`appliance.lifecycle.deprecation`); a webhook must point at an allowed destination
(:func:`appliance.lifecycle.webhooks.check_destination`). A consumer is registered once
per model; the outputs it reads are checked against the model's production version when
there is one.

SQL here: owns the ``consumers`` table (lifecycle data, created by registry migration
3); events go through :mod:`appliance.registry.events`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import BadRequest, Conflict, NotFound
from ..registry import Registry
from ..registry.db import now, transaction
from ..registry.events import record_event
from ..registry.models import check_name
from .settings import WebhookSettings
from .webhooks import check_destination

_COLUMNS = "name, model, reads, contact, webhook, created_at"


@dataclass
class Consumer:
    """One consumer of one model."""

    name: str
    model: str
    reads: list[str]
    contact: str
    webhook: str | None
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _row(row: tuple[Any, ...]) -> Consumer:
    name, model, reads, contact, webhook, created_at = row
    return Consumer(name, model, json.loads(reads or "[]"), contact, webhook, created_at)


def _check_webhook(url: str | None, settings: WebhookSettings | None) -> str | None:
    if not url:
        return None
    check_destination(url, settings or WebhookSettings())  # BadRequest: not http(s), private
    return url


def _check_reads(registry: Registry, model: str, reads: list[str]) -> list[str]:
    reads = [r.strip() for r in reads if r and r.strip()]
    if not reads:
        raise BadRequest("a consumer must read at least one output (--reads out1,out2)")
    production = [v for v in registry.model(model).versions if v.stage == "production"]
    if production:
        current = production[-1]
        known = [s.name for s in current.outputs]
        unknown = [r for r in reads if r not in known]
        if unknown:
            raise BadRequest(f"{model} version {current.version} (production) has no output(s) "
                             f"{', '.join(unknown)}; its outputs are: {', '.join(known)}")
    return list(dict.fromkeys(reads))


def add_consumer(registry: Registry, name: str, model: str, reads: list[str], contact: str,
                 webhook: str | None = None, *, actor: str | None = None,
                 webhooks: WebhookSettings | None = None) -> Consumer:
    """Register ``name`` as a consumer of ``model`` reading ``reads``.

    NotFound when the model is unknown; BadRequest naming outputs the production version
    lacks, or a webhook that is not http(s) or reaches a loopback, private or link-local
    address that ``webhooks.allow`` does not name; Conflict when the consumer is already
    registered for this model.
    """
    check_name("consumer name", name)
    registry.model(model)  # NotFound listing the registered models
    reads = _check_reads(registry, model, reads)
    if not contact or not contact.strip():
        raise BadRequest("a consumer needs a --contact (an email or team to notify)")
    webhook = _check_webhook(webhook, webhooks)
    consumer = Consumer(name, model, reads, contact.strip(), webhook, now())
    with transaction(registry.db) as db:
        if db.execute("SELECT 1 FROM consumers WHERE name = ? AND model = ?",
                      [name, model]).fetchone():
            raise Conflict(f"consumer {name!r} is already registered for {model}; remove it "
                           "first to change what it reads")
        db.execute("INSERT INTO consumers (name, model, reads, contact, webhook, created_at) "
                   "VALUES (?, ?, ?, ?, ?, ?)", [name, model, json.dumps(reads),
                                                 consumer.contact, webhook, consumer.created_at])
        record_event(db, at=consumer.created_at, actor=actor or name, action="consumer-add",
                     model=model, version=None,
                     detail={"consumer": name, "reads": reads, "contact": consumer.contact,
                             "webhook": webhook})
    return consumer


def list_consumers(registry: Registry, model: str | None = None) -> list[Consumer]:
    """Every consumer, or those of one model, ordered by model then name."""
    where, args = ("WHERE model = ?", [model]) if model else ("", [])
    rows = registry.db.execute(f"SELECT {_COLUMNS} FROM consumers {where} "
                               "ORDER BY model, name", args).fetchall()
    return [_row(r) for r in rows]


def remove_consumer(registry: Registry, name: str, model: str, *,
                    actor: str | None = None) -> Consumer:
    """Unregister a consumer of a model; NotFound when it is not registered."""
    with transaction(registry.db) as db:
        row = db.execute(f"SELECT {_COLUMNS} FROM consumers WHERE name = ? AND model = ?",
                         [name, model]).fetchone()
        if row is None:
            known = [c.name for c in list_consumers(registry, model)]
            raise NotFound(f"{name!r} is not a consumer of {model} (consumers: "
                           f"{', '.join(known) or 'none'})")
        db.execute("DELETE FROM consumers WHERE name = ? AND model = ?", [name, model])
        record_event(db, at=now(), actor=actor or name, action="consumer-remove", model=model,
                     version=None, detail={"consumer": name})
    return _row(row)
