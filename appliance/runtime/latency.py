"""Per-version request latencies: a preallocated ring of the newest samples plus totals.

:meth:`LatencyWindow.record` is on the request path of every model, inline ones included:
one store into a fixed ``array('d')`` and two additions, no allocation and no lock (the
event loop is the only writer; readers tolerate a sample being overwritten while they
copy). Readers (the autoscaler, metadata, later the metrics scrape) aggregate at their
own pace from :meth:`since` and the running totals.

The ring is a flat buffer of doubles and the totals are two numbers, so a later
multi-process mode can put the same layout in a ``multiprocessing.shared_memory`` block
(one per worker, summed at read time) without changing the readers.
"""

from __future__ import annotations

from array import array

import numpy as np

__all__ = ["LatencyWindow"]


class LatencyWindow:
    """The newest ``size`` latencies (seconds) of one served version, and totals."""

    __slots__ = ("_mask", "_ring", "count", "total_s")

    def __init__(self, size: int = 1024) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError(f"window size must be a power of two, got {size}")
        self._ring = array("d", bytes(8 * size))
        self._mask = size - 1
        #: requests recorded since start (monotonic; wraps only past 2**63)
        self.count = 0
        #: their summed latency in seconds
        self.total_s = 0.0

    def record(self, seconds: float) -> None:
        """Add one request's latency (O(1), no allocation)."""
        self._ring[self.count & self._mask] = seconds
        self.count += 1
        self.total_s += seconds

    def __len__(self) -> int:
        return min(self.count, self._mask + 1)

    def since(self, count: int) -> np.ndarray:
        """The samples recorded after the first ``count`` (at most the window), oldest
        first; a copy, so the caller may sort it."""
        total = self.count
        new = min(max(0, total - count), self._mask + 1)
        if new == 0:
            return np.empty(0)
        ring = np.frombuffer(self._ring, dtype=np.float64)
        start, end = (total - new) & self._mask, total & self._mask
        if start < end:
            return ring[start:end].copy()
        return np.concatenate((ring[start:], ring[:end]))

    def recent(self) -> np.ndarray:
        """Every sample still in the window, oldest first."""
        return self.since(0)

    def percentile_ms(self, q: float, *, minimum: int = 20) -> float | None:
        """The q-th percentile of the window in milliseconds; None below ``minimum``
        samples (too few to judge)."""
        samples = self.recent()
        if len(samples) < minimum:
            return None
        return float(np.percentile(samples, q) * 1000)
