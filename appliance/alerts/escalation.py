"""The escalation hierarchy: who is told, and when to tell more people.

``[[alerts.escalation]]`` lists levels, each with ``after_s`` and the sinks told at that
level. An alert starts at the first level; once it has fired unacknowledged for a
level's ``after_s`` (counted from ``starts_at``), it reaches that level and its group is
notified at once, to the sinks of every level reached so far (levels are cumulative:
the first responders keep hearing about it). ``ack`` stops the climb: the alert stays at
the level it reached. Silenced and inhibited alerts do not escalate.
"""

from __future__ import annotations

from .model import Alert
from .settings import EscalationLevel


def target_level(alert: Alert, levels: list[EscalationLevel], now: float) -> int:
    """The level ``alert`` should be at ``now`` (its own level if acknowledged)."""
    if alert.acked_at is not None or alert.state != "firing":
        return alert.level
    reached = 0
    for index, level in enumerate(levels):
        if now - alert.starts_at >= level.after_s:
            reached = index
    return max(reached, alert.level)


def sinks_for(level: int, levels: list[EscalationLevel]) -> list[str]:
    """The sinks of levels 0..``level``, each once, in level order."""
    out: list[str] = []
    for entry in levels[:level + 1]:
        out.extend(s for s in entry.sinks if s not in out)
    return out
