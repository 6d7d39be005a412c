"""A clock for timelines: epoch seconds that move only when the test says so."""

from __future__ import annotations

T0 = 1_900_000_000.0  # 2030-03-17: a fixed start for every timeline


class Clock:
    """Epoch seconds that only move when the test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now
