"""What an alert is: severities, the alert record, label matchers and silences.

An alert is identified by its **fingerprint**: a hash of its name and labels (the
``severity`` label excluded, so a rule that changes an alert's severity updates the same
alert). One fingerprint has one episode at a time: firing, then resolved; firing again
later starts a new episode (new ``starts_at``, escalation back at level 0, ack cleared).

Severities are ``info < warning < critical``. A model's business impact
(``[alerts.models.<name>] impact = "high"``) raises the severity of every alert
labelled ``model=<name>`` one level (critical stays critical); ``base_severity`` keeps
what the caller asked for.

Matchers are Alertmanager's: ``name=value``, ``name!=value``, ``name=~regex``,
``name!~regex``; a regex must match the whole value, and a label that is absent matches
as the empty string.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from ..errors import BadRequest

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")
State = Literal["firing", "resolved"]
OPERATORS = ("=", "!=", "=~", "!~")
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$')


def check_severity(severity: str) -> Severity:
    """``severity`` if it is one of info, warning, critical; else BadRequest."""
    if severity not in SEVERITIES:
        raise BadRequest(f"severity {severity!r} is not known: use info, warning or critical")
    return severity


def raised(severity: Severity, impact: str | None) -> Severity:
    """``severity`` one level higher when ``impact`` is "high" (critical stays)."""
    if (impact or "").lower() != "high":
        return severity
    return SEVERITIES[min(SEVERITIES.index(severity) + 1, len(SEVERITIES) - 1)]


def check_labels(labels: dict[str, Any], what: str = "label") -> dict[str, str]:
    """Labels as str -> str; BadRequest naming a label name that is not a valid name."""
    out: dict[str, str] = {}
    for name, value in labels.items():
        if not isinstance(name, str) or not _LABEL_NAME.match(name):
            raise BadRequest(f"{what} name {name!r} is not valid: use letters, digits and "
                             "underscores, not starting with a digit (e.g. model)")
        out[name] = str(value)
    return out


def fingerprint(name: str, labels: dict[str, str]) -> str:
    """The alert's id: 16 hex digits over its name and labels (``severity`` excluded)."""
    key = {k: v for k, v in labels.items() if k not in ("severity", "alertname")}
    text = json.dumps([name, sorted(key.items())], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def iso(moment: float | None) -> str | None:
    """An epoch time as ISO 8601 UTC (seconds precision kept to microseconds)."""
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="microseconds")


def parse_time(text: str, what: str) -> float:
    """An ISO 8601 time as epoch seconds (naive = UTC); BadRequest saying the format."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise BadRequest(f"{what} {text!r} is not an ISO 8601 time; write e.g. "
                         "2030-01-31T12:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher; build with :func:`matcher` or :func:`parse_matcher`."""

    name: str
    op: str
    value: str
    regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether ``labels`` satisfy this matcher (an absent label is "")."""
        have = labels.get(self.name, "")
        if self.op == "=":
            return have == self.value
        if self.op == "!=":
            return have != self.value
        assert self.regex is not None
        found = self.regex.fullmatch(have) is not None
        return found if self.op == "=~" else not found

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "op": self.op, "value": self.value}

    def __str__(self) -> str:
        return f"{self.name}{self.op}{json.dumps(self.value)}"


def matcher(name: str, op: str, value: str) -> Matcher:
    """A checked matcher; BadRequest for an unknown operator, name or a bad regex."""
    if op not in OPERATORS:
        raise BadRequest(f"matcher operator {op!r} is not known: use one of "
                         + ", ".join(OPERATORS) + ' (e.g. model="fraud" or alertname=~"Drift.*")')
    if not isinstance(name, str) or not _LABEL_NAME.match(name):
        raise BadRequest(f"matcher label name {name!r} is not valid: use letters, digits "
                         "and underscores (e.g. model)")
    regex = None
    if op in ("=~", "!~"):
        try:
            regex = re.compile(value)
        except re.error as exc:
            raise BadRequest(f"matcher {name}{op}{value!r}: the regular expression is "
                             f"invalid ({exc})") from None
    return Matcher(name, op, value, regex)


def parse_matcher(text: str) -> Matcher:
    """``name=value`` / ``name!=value`` / ``name=~re`` / ``name!~re`` (value optionally
    double-quoted); BadRequest saying the form."""
    found = _MATCHER.match(text)
    if not found:
        raise BadRequest(f"matcher {text!r} is not understood: write name=value, "
                         'name!=value, name=~regex or name!~regex (e.g. model="fraud")')
    name, op, value = found.groups()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return matcher(name, op, value)


def matches_all(matchers: list[Matcher], labels: dict[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


@dataclass(slots=True)
class Alert:
    """One alert episode as stored; ``labels`` include ``alertname`` and ``severity``."""

    id: str
    name: str
    labels: dict[str, str]
    annotations: dict[str, str]
    severity: Severity
    base_severity: Severity
    source: str
    state: State
    starts_at: float
    updated_at: float
    group_key: str
    ends_at: float | None = None
    acked_by: str | None = None
    acked_at: float | None = None
    ack_comment: str = ""
    #: escalation level reached (index into the escalation levels)
    level: int = 0
    #: what the sinks were last told: None (nothing), "firing" or "resolved"
    notified_state: str | None = None
    notified_level: int = -1

    def to_dict(self, *, silenced_by: list[str] | None = None,
                inhibited_by: list[str] | None = None) -> dict[str, Any]:
        """The alert as the API and CLI show it (times as ISO 8601)."""
        return {"id": self.id, "name": self.name, "labels": self.labels,
                "annotations": self.annotations, "severity": self.severity,
                "base_severity": self.base_severity, "source": self.source,
                "state": self.state, "starts_at": iso(self.starts_at),
                "ends_at": iso(self.ends_at), "updated_at": iso(self.updated_at),
                "acked_by": self.acked_by, "acked_at": iso(self.acked_at),
                "ack_comment": self.ack_comment, "level": self.level,
                "group_key": self.group_key, "silenced_by": silenced_by or [],
                "inhibited_by": inhibited_by or []}


@dataclass(slots=True)
class Silence:
    """A silence: alerts matching every matcher are not notified between its times."""

    id: str
    matchers: list[Matcher]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    created_at: float
    #: when it was expired early (``silence --expire``); None otherwise
    expired_at: float | None = None
    expired_by: str | None = None

    def state(self, now: float) -> str:
        """pending (not started), active, or expired."""
        end = min(self.ends_at, self.expired_at) if self.expired_at else self.ends_at
        if now >= end:
            return "expired"
        return "pending" if now < self.starts_at else "active"

    def active(self, now: float) -> bool:
        return self.state(now) == "active"

    def to_dict(self, now: float) -> dict[str, Any]:
        return {"id": self.id, "matchers": [m.to_dict() for m in self.matchers],
                "starts_at": iso(self.starts_at), "ends_at": iso(self.ends_at),
                "created_by": self.created_by, "comment": self.comment,
                "created_at": iso(self.created_at), "expired_at": iso(self.expired_at),
                "expired_by": self.expired_by, "state": self.state(now)}
