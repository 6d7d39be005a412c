"""Notification groups and their timers, as Alertmanager has them.

Alerts with the same values of the ``group_by`` labels form one group and are notified
together. The timeline of a group:

- the first alert creates it; its first notification waits ``group_wait`` (so a burst
  of alerts, e.g. drift on a hundred features, goes out as one message);
- afterwards the group is looked at every ``group_interval``: if it changed (a new
  firing alert, one resolved, one escalated to a higher level) a notification goes out;
- if it did not change but still fires, the notification is repeated once
  ``repeat_interval`` has passed since the last one (unless every firing alert in it is
  acknowledged: someone is on it);
- a group with nothing firing and nothing left to tell is dropped; the next alert
  starts a new one (with ``group_wait`` again).

Silenced and inhibited alerts are left out of a notification; an alert that was
notified firing and is then silenced is not notified resolved either.
:func:`plan` is pure: the engine supplies the stored state and applies the result.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .model import Alert


def group_labels(labels: dict[str, str], group_by: list[str]) -> dict[str, str]:
    """The labels that name an alert's group."""
    return {name: labels.get(name, "") for name in group_by}


def group_key(labels: dict[str, str], group_by: list[str]) -> str:
    """A short stable key of the group ``labels`` belong to."""
    text = json.dumps(sorted(group_labels(labels, group_by).items()), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(slots=True)
class Flush:
    """What one look at a group decided."""

    #: the alerts to notify (firing ones first), empty when nothing is sent
    firing: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)
    #: nothing fires and nothing is owed: drop the group
    drop: bool = False

    @property
    def notify(self) -> bool:
        return bool(self.firing or self.resolved)


def plan(group: dict[str, Any], members: list[Alert], suppressed: set[str], now: float,
         repeat_interval_s: float) -> Flush:
    """Decide a due group's flush (``group["next_flush_at"] <= now``)."""
    firing = [a for a in members if a.state == "firing" and a.id not in suppressed]
    resolved = [a for a in members if a.state == "resolved" and a.notified_state == "firing"]
    changed = bool(resolved) or any(a.notified_state != "firing" or a.notified_level < a.level
                                    for a in firing)
    last = group.get("last_notified_at")
    repeat = (last is not None and now - last >= repeat_interval_s
              and any(a.acked_at is None for a in firing))
    still_firing = any(a.state == "firing" for a in members)
    if not (changed or repeat):
        return Flush(drop=not still_firing and not resolved)
    return Flush(firing=firing, resolved=resolved)
