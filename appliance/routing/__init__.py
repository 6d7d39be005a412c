"""Which version answers a request: one routing policy per model.

Today every model has the :class:`~.policy.DefaultRoute` (production, else the previous
production, else the newest registered version; see :func:`~.policy.default_route`).
The routing issue adds weighted, canary, shadow, bandit and sticky policies behind the
same :class:`~.policy.RoutePolicy` interface.
"""

from .policy import DefaultRoute, RouteDecision, RoutePolicy, default_route

__all__ = ["DefaultRoute", "RouteDecision", "RoutePolicy", "default_route"]
