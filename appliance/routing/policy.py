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
    """One model's routing rule.

    ``stored``: a route from the registry (False for the default rule, which records
    nothing); ``needs_parameters``: the decision reads the request's parameters (a sticky
    route keyed on one), so the header is decoded first; ``observes``: answered requests
    are reported back through :meth:`observe`; ``shadows``: the versions that get a copy.
    """

    stored: bool
    #: the decision reads a key (sticky): ``decide`` gets a RouteContext, else None
    keyed: bool
    needs_parameters: bool
    observes: bool
    shadows: tuple[ServedVersion, ...]

    def decide(self, request: Any = None) -> RouteDecision:
        """The version for a request that names no version (``request``: what the route
        may read of it, a :class:`~.policies.RouteContext`)."""
        ...

    def primary(self) -> RouteDecision:
        """The version that speaks for the model where no request decides (metadata):
        no draw, nothing recorded."""
        ...

    def decide_test(self) -> RouteDecision | None:
        """Where test traffic that names no version goes (None: :meth:`primary`)."""
        ...

    def observe(self, decision: RouteDecision, ok: bool, seconds: float,
                outputs: Mapping[str, Any] | None, request_id: str | None) -> None:
        """A production request this policy decided was answered (``ok``) or failed."""
        ...


class DefaultRoute:
    """Every request goes to one version, chosen when the served versions changed."""

    __slots__ = ("decision",)

    def __init__(self, decision: RouteDecision) -> None:
        self.decision = decision

    stored = False
    keyed = False
    needs_parameters = False
    observes = False
    shadows: tuple[ServedVersion, ...] = ()

    def decide(self, request: Any = None) -> RouteDecision:
        return self.decision

    def primary(self) -> RouteDecision:
        return self.decision

    def decide_test(self) -> RouteDecision | None:
        return None

    def observe(self, decision: RouteDecision, ok: bool, seconds: float,
                outputs: Mapping[str, Any] | None, request_id: str | None) -> None:
        return None


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
