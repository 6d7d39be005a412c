"""``[routing]`` settings: what marks test traffic, and how hard the routing thread works.

    [routing]
    test_header = "X-Appliance-Traffic"  # a site's own marker: a request with this header
    test_value = "test"                  # ... set to this value is test traffic
    tick_s = 1.0                      # how often canaries, bandits and rewards are looked at
    shadow_queue = 64                 # shadow copies waiting; a full queue sheds (counted)
    shadow_rate_per_s = 200.0         # shadow copies started per second at most
    shadow_busy_inflight = 4          # production requests in flight at which copies shed
    reward_seed = 0                   # seeds the bandits' posterior draws (replayable)

Route specs themselves (weighted, canary, shadow, bandit, sticky) live in the registry,
set with ``PUT /v1/routes/{model}`` or ``appliance routes set`` (docs/routing.md).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["RoutingSettings"]


class RoutingSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Test-traffic marking and the routing thread's limits (docs/routing.md)."""

    test_header: Annotated[str, msgspec.Meta(min_length=1, pattern=r"^[A-Za-z0-9-]+$")] = (
        "X-Appliance-Traffic")
    test_value: Annotated[str, msgspec.Meta(min_length=1)] = "test"
    tick_s: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    shadow_queue: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 64
    shadow_rate_per_s: Annotated[float, msgspec.Meta(gt=0)] = 200.0
    shadow_busy_inflight: Annotated[int, msgspec.Meta(ge=1)] = 4
    reward_seed: int = 0
