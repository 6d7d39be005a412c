"""What a canary's analysis reads: per version, requests, errors, latencies and scores.

Each :class:`ArmWindow` is fixed memory: two counters and two rings of
:data:`SAMPLES` doubles (the latest latencies and output scores), written from the
request path in O(1) and copied by the routing thread at analysis time. A score is the
number the canary's output-shift check compares across versions: the largest value of
the first floating-point output's first row (the top-class probability of a classifier,
the value of a regressor); a model with no floating output has none.

Tagged test and synthetic traffic never reaches a window (the data plane only reports
production requests).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["SAMPLES", "ArmWindow", "score_of"]

SAMPLES = 4096


def score_of(outputs: Mapping[str, Any]) -> float | None:
    """The score of one answer (see the module docstring), or None."""
    for array in outputs.values():
        kind = getattr(array, "dtype", None)
        if kind is None or kind.kind != "f" or array.size == 0:
            continue
        if array.ndim == 0:
            return float(array)
        row = array[0] if array.ndim > 1 else array
        if row.ndim == 1 and row.shape[0] <= 64:  # a few classes: cheaper in Python
            values = row.tolist()
            return float("nan") if any(v != v for v in values) else float(max(values))
        return float(row.max())
    return None


class ArmWindow:
    """One version's requests since the window was last reset."""

    __slots__ = ("errors", "latencies", "lock", "requests", "scores", "_n_lat", "_n_score")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.latencies = np.zeros(SAMPLES)
        self.scores = np.zeros(SAMPLES)
        self._n_lat = 0
        self._n_score = 0
        self.lock = threading.Lock()  # the routing thread's reset against a snapshot

    def observe(self, ok: bool, seconds: float, score: float | None) -> None:
        """One production request answered by this version (O(1), no allocation)."""
        self.requests += 1
        if not ok:
            self.errors += 1
            return
        self.latencies[self._n_lat % SAMPLES] = seconds
        self._n_lat += 1
        if score is not None:
            self.scores[self._n_score % SAMPLES] = score
            self._n_score += 1

    def snapshot(self) -> dict[str, Any]:
        """Counts and copies of the kept samples (for the analysis)."""
        with self.lock:
            return {"requests": self.requests, "errors": self.errors,
                    "latencies": self.latencies[:min(self._n_lat, SAMPLES)].copy(),
                    "scores": self.scores[:min(self._n_score, SAMPLES)].copy()}

    def reset(self) -> None:
        """Start a new window (a canary's next step)."""
        with self.lock:
            self.requests = self.errors = self._n_lat = self._n_score = 0
