"""Which alerts are not to be notified now: silenced or inhibited.

Both are computed from what is stored (the alerts and silences in ``alerts.db``) at the
moment of asking, never cached: after a restart an inhibiting ``ModelDown`` that is
still firing inhibits at once, and a silence holds until its end (the two Alertmanager
bugs the brief names, #4064 and #2229, came from that state living in memory).

Inhibition follows Alertmanager: a *target* alert is inhibited while some other
*firing* alert matches the rule's source matchers and has the same values of the
``equal`` labels (a label absent on both counts as equal). A silenced source still
inhibits.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import Alert, Matcher, Silence, matches_all, parse_matcher
from .settings import InhibitRule


@dataclass(frozen=True, slots=True)
class Inhibition:
    """An inhibit rule with its matchers parsed."""

    source: list[Matcher]
    target: list[Matcher]
    equal: list[str]

    @classmethod
    def from_settings(cls, rule: InhibitRule) -> Inhibition:
        return cls([parse_matcher(t) for t in rule.source],
                   [parse_matcher(t) for t in rule.target], list(rule.equal))


@dataclass(slots=True)
class Suppression:
    """Why each alert is held back: silence ids and inhibiting alert ids."""

    silenced_by: dict[str, list[str]]
    inhibited_by: dict[str, list[str]]

    def suppressed(self, alert_id: str) -> bool:
        return bool(self.silenced_by.get(alert_id) or self.inhibited_by.get(alert_id))


def suppression(alerts: list[Alert], silences: list[Silence], rules: list[Inhibition],
                now: float) -> Suppression:
    """Silences and inhibitions of the firing ``alerts`` at ``now``."""
    active = [s for s in silences if s.active(now)]
    firing = [a for a in alerts if a.state == "firing"]
    silenced: dict[str, list[str]] = {}
    inhibited: dict[str, list[str]] = {}
    for alert in firing:
        hits = [s.id for s in active if matches_all(s.matchers, alert.labels)]
        if hits:
            silenced[alert.id] = hits
        by: list[str] = []
        for rule in rules:
            if not matches_all(rule.target, alert.labels):
                continue
            by.extend(src.id for src in firing
                      if src.id != alert.id and matches_all(rule.source, src.labels)
                      and all(src.labels.get(k, "") == alert.labels.get(k, "")
                              for k in rule.equal) and src.id not in by)
        if by:
            inhibited[alert.id] = by
    return Suppression(silenced, inhibited)
