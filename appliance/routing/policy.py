"""The routing interface and the default rule.

A :class:`RoutePolicy` turns a request (what the data plane knows of it: its parameters
and headers) into a :class:`RouteDecision`: the served version that answers and a route
label saying why (``production``, ``previous-production``, ``newest-registered``; later
``canary``, ``arm:<v>``, ``shadow-of``, ``test``). Policies are built off the request
path whenever the served versions change, and :meth:`RoutePolicy.decide` is on it, so it
must be O(1) and allocate nothing for the common case.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..registry.models import version_key
from ..runtime.served import ServedVersion

__all__ = ["DefaultRoute", "RouteDecision", "RoutePolicy", "default_route"]


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """The version that answers a request, and the route label that says why."""

    served: ServedVersion
    label: str


class RoutePolicy(Protocol):
    """One model's routing rule."""

    def decide(self, request: Mapping[str, Any] | None = None) -> RouteDecision:
        """The version for a request that names no version."""
        ...


class DefaultRoute:
    """Every request goes to one version, chosen when the served versions changed."""

    __slots__ = ("decision",)

    def __init__(self, decision: RouteDecision) -> None:
        self.decision = decision

    def decide(self, request: Mapping[str, Any] | None = None) -> RouteDecision:
        return self.decision


_LABELS = {"production": "production", "deprecated": "previous-production",
           "registered": "newest-registered"}


def default_route(versions: Mapping[str, ServedVersion]) -> DefaultRoute | None:
    """production if ready; else the most recently demoted ready deprecated version (the
    previous production, still safe); else the newest ready registered version. Shadow
    and canary versions are loaded but get no default traffic. None when no version
    qualifies (the repository then answers with the newest version's state)."""
    ready = [s for s in versions.values() if s.ready]
    for stage, label in _LABELS.items():
        found = [s for s in ready if s.record.stage == stage]
        if not found:
            continue
        if stage == "deprecated":
            chosen = max(found, key=lambda s: s.record.stage_changed_at or "")
        else:
            chosen = max(found, key=lambda s: version_key(s.record.version))
        return DefaultRoute(RouteDecision(chosen, label))
    return None
