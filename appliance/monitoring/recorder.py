"""The data plane's one entry into monitoring: :class:`RequestMonitor`.

:meth:`RequestMonitor.succeeded` runs after a response is encoded, :meth:`failed` when
a request fails after its version was resolved. The data plane passes a four-slot list
``timing`` = ``[queue_s, compute_s, started, before_execution]`` (perf_counter seconds);
the execution fills the first two (:meth:`Execution.run`), so the breakdown costs two
``perf_counter`` calls and no allocation past that list. The data plane makes no list
at all (``timed`` is false) when both metrics and Server-Timing are off: then the
request path pays nothing but an attribute test.

A version's :class:`~.counters.VersionStats` is kept by (model, version), so it outlives
a reload of that version; the served version caches it (``ServedVersion.metrics``) so
the request path finds it with one attribute read.

Where the durations come from (Triton's names):
``compute_input`` started → before execution (decode, validation);
``queue`` waiting for an instance or a batch (0 for an inline model);
``compute_infer`` the model's ``predict`` (a batch's time for each of its requests);
``compute_output`` end of compute → response encoded (split, select, encode);
``request`` started → response encoded.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .counters import BACKEND, VersionStats, failure_reason
from .settings import MetricsSettings

if TYPE_CHECKING:
    from ..runtime.served import ServedVersion

__all__ = ["RequestMonitor"]

#: "0.000" … "0.999": Server-Timing durations under a millisecond, formatted once
_MS = [f"0.{us:03d}" for us in range(1000)]


class RequestMonitor:
    """Records requests into :class:`VersionStats`; ``metrics`` off records only failures
    (for the failing-version rule)."""

    def __init__(self, settings: MetricsSettings | None = None) -> None:
        self.settings = settings or MetricsSettings()
        self.metrics = self.settings.enabled
        self.server_timing = self.settings.server_timing
        #: whether the data plane measures the breakdown at all
        self.timed = self.metrics or self.server_timing
        self.versions: dict[tuple[str, str], VersionStats] = {}

    def stats_of(self, served: ServedVersion) -> VersionStats:
        """The version's stats, made on its first request and bound to its execution."""
        stats = served.metrics
        if stats is not None:
            return stats  # type: ignore[no-any-return]
        record = served.record
        key = (record.model, record.version)
        stats = self.versions.get(key)
        if stats is None:
            stats = VersionStats(record.model, record.version,
                                 self.settings.bounds_s(record.model),
                                 tuple(self.settings.batch_buckets))
            self.versions[key] = stats
        stats.streak, stats.last_fail_count = 0, -1  # a new execution counts from 0
        inputs = list(served.inputs.values())
        stats.rows_input = inputs[0].name if inputs and inputs[0].shape and all(
            s.shape and s.shape[0] < 0 for s in inputs) else None
        execution = served.execution
        stats.batched = execution is not None and execution.batcher is not None
        if stats.batched and self.metrics:
            assert execution is not None
            execution.on_execution = stats.executed
        served.metrics = stats
        return stats

    def succeeded(self, served: ServedVersion, traffic: str,
                  arrays: Mapping[str, np.ndarray], timing: list[float],
                  headers: dict[str, str]) -> None:
        """Record one successful request and add its Server-Timing header."""
        end = time.perf_counter()
        queue, compute, started, before = timing
        if self.server_timing:  # sub-millisecond values from a table: no float formatting
            q, c = int(queue * 1e6), int(compute * 1e6)
            headers["Server-Timing"] = (
                f"queue;dur={_MS[q] if q < 1000 else q / 1000}, "
                f"compute;dur={_MS[c] if c < 1000 else c / 1000}")
        if self.metrics:
            stats = served.metrics or self.stats_of(served)
            stats.succeeded(traffic, arrays, started, before, queue, compute, end)

    def failed(self, served: ServedVersion, traffic: str, exc: BaseException,
               executing: bool, arrays: Mapping[str, Any] | None = None) -> None:
        """Record one failed request (``executing``: it failed inside the execution)."""
        reason = failure_reason(exc, executing)
        stats = served.metrics or self.stats_of(served)
        if reason == BACKEND and served.execution is not None:
            stats.backend_error(served.execution.latencies.count,
                                f"{type(exc).__name__}: {exc}"[:500])
        if self.metrics:
            stats.request_failed(traffic, reason, stats.rows(arrays) if arrays else 1)

    def failing(self, served: ServedVersion) -> bool:
        """Whether ``served`` is failing at inference (see :mod:`.counters`)."""
        stats = served.metrics
        execution = served.execution
        if stats is None or execution is None:
            return False
        return bool(stats.failing(execution.latencies.count,
                                  self.settings.failing_after_errors))

    def summary(self, limit: int = 200) -> dict[str, dict[str, dict[str, int]]]:
        """Production request counts since start, ``{model: {version: {"success",
        "failure"}}}`` (at most ``limit`` versions): what a fleet report carries. Plain
        integer reads, safe from another thread (a count may be one request behind)."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        for (model, version), stats in list(self.versions.items())[:limit]:
            production = stats.production
            out.setdefault(model, {})[version] = {
                "success": int(production.ok), "failure": int(sum(production.failed))}
        return out

    def describe(self, served: ServedVersion) -> dict[str, Any]:
        stats = self.versions.get((served.record.model, served.record.version))
        return stats.describe() if stats is not None else {
            "last_error": None, "last_error_at": None, "last_success_at": None,
            "consecutive_backend_errors": 0}
