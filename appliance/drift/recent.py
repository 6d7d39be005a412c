"""Recent request ids -> what was predicted, for feedback that arrives later.

The Open Inference Protocol request's ``id`` (echoed in its response) is the handle a
client sends back with ``POST /v1/feedback``. The map is bounded (``capacity`` entries,
oldest dropped first, O(1) per request) and entries expire ``ttl_s`` after the request;
it lives in memory only, so a restart forgets it (feedback for older requests is a 404
saying so).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import NotFound


@dataclass(frozen=True, slots=True)
class Answered:
    """One answered request: which model and version, what it predicted, when."""

    model: str
    version: str
    predicted: list[Any]
    at: float


class RecentRequests:
    def __init__(self, capacity: int, ttl_s: float, clock: Callable[[], float]) -> None:
        self.capacity = capacity
        self.ttl_s = ttl_s
        self.clock = clock
        self._items: OrderedDict[str, Answered] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def remember(self, request_id: str, answered: Answered) -> None:
        """Record an answer (a repeated id replaces the earlier one)."""
        with self._lock:
            items = self._items
            items[request_id] = answered
            items.move_to_end(request_id)
            if len(items) > self.capacity:
                items.popitem(last=False)

    def lookup(self, request_id: str) -> Answered:
        """The answer for ``request_id``; NotFound saying whether it is unknown or
        expired."""
        with self._lock:
            found = self._items.get(request_id)
        if found is None:
            raise NotFound(f"request id {request_id!r} is unknown: no request with that id "
                           f"was answered by this server among its last {self.capacity} "
                           "(send the `id` field of the inference request, echoed in its "
                           "response)")
        age = self.clock() - found.at
        if age > self.ttl_s:
            raise NotFound(f"request id {request_id!r} has expired: it was answered "
                           f"{age:.0f} s ago and feedback is taken for {self.ttl_s:.0f} s "
                           "(drift.feedback_ttl_s)")
        return found
