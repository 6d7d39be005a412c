"""What operators do to alerts: list, acknowledge, silence, expire a silence.

Mixed into :class:`~appliance.alerts.engine.AlertEngine`. Every silence created or
expired is an audit record, appended through the data directory's
:class:`~appliance.audit.log.AuditLog` inside the same ``alerts.db`` transaction that
stores the change (an audit append that fails rolls the change back):

- ``alert.silence.create``, actor = its creator, body = the silence;
- ``alert.silence.expire``, actor = who expired it early, or ``appliance`` with
  ``reason = "ended"`` for one whose end passed (written at the next tick or listing).

A silence needs at least one matcher that does not match the empty string (as in
Alertmanager: otherwise it would silence every alert), a comment, and an end after
its start that has not passed.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import BadRequest, Conflict, NotFound
from .model import SEVERITIES, Matcher, Silence, matcher, parse_matcher
from .store import AlertStore
from .suppression import Inhibition, suppression

if TYPE_CHECKING:
    from ..audit.log import AuditLog

STATES = ("firing", "resolved")
SILENCE_STATES = ("active", "pending", "expired")
#: 9999-12-31T23:59:59Z, the last moment ISO 8601 times here can show
LATEST = 253402300799.0


def to_matcher(item: Matcher | str | dict[str, Any]) -> Matcher:
    """A matcher from its text (``model="fraud"``) or ``{name, op, value}``."""
    if isinstance(item, Matcher):
        return item
    if isinstance(item, str):
        return parse_matcher(item)
    if isinstance(item, dict) and {"name", "op", "value"} <= set(item):
        return matcher(str(item["name"]), str(item["op"]), str(item["value"]))
    raise BadRequest(f"matcher {item!r} is not understood: give {{\"name\": \"model\", "
                     "\"op\": \"=\", \"value\": \"fraud\"}} or the text model=\"fraud\"")


class Operations:
    """The operator-facing half of the engine (needs its store, clock, audit log)."""

    store: AlertStore
    clock: Callable[[], float]
    audit: AuditLog | None
    inhibitions: list[Inhibition]

    # -- alerts ---------------------------------------------------------------------
    def list_alerts(self, *, state: str | None = None, severity: str | None = None,
                    name: str | None = None, model: str | None = None,
                    matchers: list[str] | None = None,
                    alert_id: str | None = None) -> list[dict[str, Any]]:
        """Alerts as dicts (with ``silenced_by`` / ``inhibited_by``), filtered."""
        if state is not None and state not in STATES:
            raise BadRequest(f"state {state!r} is not known: use firing or resolved")
        if severity is not None and severity not in SEVERITIES:
            raise BadRequest(f"severity {severity!r} is not known: use info, warning or "
                             "critical")
        wanted = [parse_matcher(m) for m in matchers or []]
        now = self.clock()
        alerts = self.store.alerts()
        held = suppression(alerts, self.store.silences(), self.inhibitions, now)
        out = []
        for alert in alerts:
            if ((alert_id and alert.id != alert_id) or (state and alert.state != state)
                    or (severity and alert.severity != severity)
                    or (name and alert.name != name)
                    or (model and alert.labels.get("model") != model)
                    or not all(m.matches(alert.labels) for m in wanted)):
                continue
            out.append(alert.to_dict(silenced_by=held.silenced_by.get(alert.id),
                                     inhibited_by=held.inhibited_by.get(alert.id)))
        return out

    def get_alert(self, alert_id: str) -> dict[str, Any]:
        """One alert as a dict; NotFound naming how to list them."""
        for found in self.list_alerts():
            if found["id"] == alert_id:
                return found
        raise NotFound(f"no alert {alert_id!r}; `appliance alerts list` or GET /v1/alerts "
                       "shows the ids")

    def ack(self, alert_id: str, actor: str, comment: str = "") -> dict[str, Any]:
        """Acknowledge a firing alert: its escalation stops, repeats stop (idempotent)."""
        with self.store.transaction():
            alert = self.store.alert(alert_id)
            if alert is None:
                raise NotFound(f"no alert {alert_id!r}; `appliance alerts list` or GET "
                               "/v1/alerts shows the ids")
            if alert.state != "firing":
                raise Conflict(f"alert {alert_id} ({alert.name}) is already resolved; only "
                               "a firing alert can be acknowledged")
            if alert.acked_at is None:
                alert.acked_by, alert.acked_at = actor, self.clock()
                alert.ack_comment = comment
                self.store.save_alert(alert)
        return self.get_alert(alert_id)

    # -- silences -------------------------------------------------------------------
    def create_silence(self, matchers: list[Matcher | str | dict[str, Any]], *,
                       created_by: str, comment: str, starts_at: float | None = None,
                       ends_at: float | None = None, duration_s: float | None = None
                       ) -> Silence:
        """Store (and audit) a silence; BadRequest saying what to fix."""
        parsed = [to_matcher(m) for m in matchers]
        if not any(not m.matches({}) for m in parsed):
            raise BadRequest("a silence needs at least one matcher that does not match an "
                             'empty label, e.g. model="fraud" (it would silence everything)')
        if not comment or not comment.strip():
            raise BadRequest("a silence needs a comment saying why (e.g. \"maintenance\")")
        if not created_by or not created_by.strip():
            raise BadRequest("a silence needs its creator (created_by)")
        now = self.clock()
        start = now if starts_at is None else starts_at
        if (ends_at is None) == (duration_s is None):
            raise BadRequest("give the silence's end: either ends_at or duration_s "
                             "(e.g. 2h), not both")
        if duration_s is not None and duration_s <= 0:
            raise BadRequest(f"duration {duration_s}s is not positive; give e.g. 3600")
        end = ends_at if ends_at is not None else start + float(duration_s or 0)
        if end <= start:
            raise BadRequest("the silence ends before it starts: give an end after the "
                             "start")
        if end <= now:
            raise BadRequest("the silence's end has already passed: give a future end")
        if start < 0 or end > LATEST:
            raise BadRequest("the silence's times must lie between 1970 and 9999")
        silence = Silence(secrets.token_hex(8), parsed, start, end, created_by.strip(),
                          comment.strip(), now)
        with self.store.transaction():
            self.store.save_silence(silence)
            self._audit("alert.silence.create", silence.created_by, {
                "silence": silence.to_dict(now)})
        return silence

    def expire_silence(self, silence_id: str, actor: str) -> Silence:
        """End a silence now (and audit it); NotFound / Conflict when it cannot."""
        now = self.clock()
        with self.store.transaction():
            silence = self.store.silence(silence_id)
            if silence is None:
                raise NotFound(f"no silence {silence_id!r}; `appliance alerts silences` or "
                               "GET /v1/silences shows the ids")
            if silence.state(now) == "expired":
                raise Conflict(f"silence {silence_id} has already expired")
            silence.expired_at, silence.expired_by = now, actor
            self.store.save_silence(silence, expiry_audited=True)
            self._audit("alert.silence.expire", actor, {
                "silence": silence.to_dict(now), "reason": "expired early"})
        return silence

    def list_silences(self, state: str | None = None) -> list[dict[str, Any]]:
        """Silences as dicts (all, or of one state: active, pending, expired)."""
        if state is not None and state not in SILENCE_STATES:
            raise BadRequest(f"silence state {state!r} is not known: use active, pending "
                             "or expired")
        self.audit_ended_silences()
        now = self.clock()
        return [s.to_dict(now) for s in self.store.silences()
                if state is None or s.state(now) == state]

    def audit_ended_silences(self) -> int:
        """Audit the silences whose end passed since the last look; how many."""
        now = self.clock()
        count = 0
        with self.store.transaction():
            for silence in self.store.unaudited_expiries(now):
                self._audit("alert.silence.expire", "appliance", {
                    "silence": silence.to_dict(now), "reason": "ended"})
                self.store.mark_expiry_audited(silence.id)
                count += 1
        return count

    def _audit(self, kind: str, actor: str, body: dict[str, Any]) -> None:
        if self.audit is not None:
            self.audit.append(kind, actor, body)

