"""``POST /v1/feedback`` for both consumers: the drift monitor and the routing rewards.

A reward is joined to the route's assignment of that request id (a bandit's arm, or a
weighted or sticky experiment's arm) once: a second reward for the same id is a
``duplicate`` and changes nothing, one after the route's ``reward_wait_s`` is
``expired`` (the default reward already counted). The drift monitor keeps the label
and reward beside the prediction. The id must be known to at least one of them; an id
neither knows is a 404 that says why.
"""

from __future__ import annotations

import math
from typing import Any

from ..drift.feedback import Label, record_feedback
from ..errors import BadRequest, NotFound

__all__ = ["join_feedback"]


def join_feedback(drift: Any, routing: Any, request_id: str, *,
                  label: Label | list[Label] | None = None,
                  reward: float | None = None) -> dict[str, Any]:
    """Record the feedback with the drift monitor and/or the routing controller (either
    may be None: turned off); the drift row plus ``"routing"``: the reward's outcome."""
    if not isinstance(request_id, str) or not request_id.strip():
        raise BadRequest("request_id must be the `id` of an answered inference request")
    if label is None and reward is None:
        raise BadRequest("send a `label` (the true class) or a `reward` (a number), or both")
    if reward is not None and (isinstance(reward, bool) or not isinstance(reward, (int, float))
                               or not math.isfinite(reward)):
        raise BadRequest(f"reward must be a finite number, got {reward!r}")
    joined = None
    if reward is not None and routing is not None:
        joined = routing.reward(request_id, float(reward))
    row: dict[str, Any] = {"request_id": request_id, "reward": reward, "label": label}
    if drift is not None and not (joined == "duplicate" and label is None):
        try:
            row = record_feedback(drift, request_id, label=label, reward=reward)
        except NotFound:
            if joined is None:
                raise
    elif drift is None and joined is None:
        raise NotFound(f"request {request_id!r} is not one this server routed to an "
                       "experiment, and drift detection (which keeps recent requests) is off")
    row["routing"] = joined
    return row
