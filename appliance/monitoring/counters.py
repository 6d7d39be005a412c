"""What the request path records: plain counters and bucket arrays, no locks, no labels.

Every request of a served version lands in the :class:`RequestStats` of its traffic
class (``X-Appliance-Traffic``: production, test or synthetic). A success costs one
counter and five stores into a preallocated list, a ring of raw samples (request,
queue, compute and input seconds, rows); no bisection, no allocation. The ring is folded
into the float sums and the three ``array('Q')`` histograms with numpy (``searchsorted``
and ``bincount`` over the whole block) when it is full, about 30 µs per
:data:`RING` requests, and before every scrape (:meth:`VersionStats.fold`). Nothing here
knows Prometheus; the scrape-time collector (:mod:`.collector`) turns these numbers into
metric families, so the label strings are built once per scrape, never per request.

The event loop is the only writer (the pool and the batcher hand their timings back to
it), and the scrape runs on the event loop too, so a scrape sees one consistent state.

:class:`VersionStats` also carries the failing-version rule that readiness uses (it
costs nothing on a successful request): a version is *failing* after
``failing_after_errors`` consecutive executions that ended in a backend error, and
stops failing at the next execution that does not (a real request or the recovery probe
of :mod:`.probe`). "Consecutive" is read off the version's latency ring count
(``Execution.latencies.count``), which every execution bumps: a failure right after the
previous failure extends the streak, anything in between resets it.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from bisect import bisect_left
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import ApplianceError, BadRequest, GatewayTimeout, ServiceUnavailable

__all__ = ["REASONS", "RING", "TRAFFIC_CLASSES", "RequestStats", "VersionStats", "check_traffic",
           "failure_reason"]

PRODUCTION = "production"
TEST = "test"
TRAFFIC_CLASSES = (PRODUCTION, TEST, "synthetic")
#: Triton's ``nv_inference_request_failure`` reasons, in index order
REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")
REJECTED, CANCELED, BACKEND, OTHER = range(4)


def check_traffic(value: str) -> str:
    """The traffic class named by an ``X-Appliance-Traffic`` header; BadRequest (400)
    for anything but production, test or synthetic."""
    traffic = value.strip().lower()
    if traffic not in TRAFFIC_CLASSES:
        raise BadRequest(f"X-Appliance-Traffic must be one of {', '.join(TRAFFIC_CLASSES)} "
                         f"(default production); got {value[:64]!r}")
    return traffic


def failure_reason(exc: BaseException, executing: bool) -> int:
    """Triton's reason for a failed request: REJECTED (queue full, shed by admission
    control, deadline passed before compute), CANCELED (the request task was cancelled),
    BACKEND (the model's execution raised), OTHER (a bad request, and everything else)."""
    if isinstance(exc, asyncio.CancelledError):
        return CANCELED
    if isinstance(exc, ServiceUnavailable | GatewayTimeout):
        return REJECTED
    if isinstance(exc, ApplianceError) and exc.status < 500:
        return OTHER  # the batcher refuses a batch too large: the caller's mistake
    return BACKEND if executing else OTHER


#: raw samples a ring holds before it is folded into the sums and histograms
RING = 1024
_FIELDS = 5  # request, queue, compute, input seconds; rows


def _add_counts(hist: array[int], bounds: np.ndarray, values: np.ndarray) -> None:
    """Count ``values`` into ``hist`` as ``bisect_left(bounds, v)`` would, one per value."""
    counts = np.bincount(np.searchsorted(bounds, values, side="left"),
                         minlength=len(bounds) + 1)
    for i in np.flatnonzero(counts).tolist():
        hist[i] += int(counts[i])


def _hist(bounds: tuple[float, ...]) -> array[int]:
    """Bucket counts (not cumulative): one per bound plus +Inf."""
    return array("Q", bytes(8 * (len(bounds) + 1)))


class RequestStats:
    """One version's requests of one traffic class: counts, duration sums (seconds) and
    request, queue and compute histograms over ``bounds`` (seconds), written by
    :meth:`VersionStats.succeeded` (through the ring: read them after
    :meth:`VersionStats.fold`) and :meth:`VersionStats.request_failed`. ``ok`` and
    ``failed`` are exact at any time."""

    __slots__ = ("bounds", "compute_b", "failed", "infer_s", "inferences", "input_s", "n",
                 "np_bounds", "ok", "output_s", "queue_b", "queue_s", "request_b",
                 "request_s", "ring")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.np_bounds = np.asarray(bounds, dtype=np.float64)
        self.ok = 0
        self.failed = array("Q", bytes(8 * len(REASONS)))
        self.inferences = 0  # rows (Triton: inferences = batch size summed over requests)
        self.request_s = self.queue_s = self.input_s = self.infer_s = self.output_s = 0.0
        self.request_b, self.queue_b, self.compute_b = _hist(bounds), _hist(bounds), _hist(
            bounds)
        # a list, not an array('d'): storing into an array parses each float through
        # PyArg_Parse, a list store is a pointer swap
        self.ring: list[float] = [0.0] * (_FIELDS * RING)
        self.n = 0  # samples in the ring

    def fold(self) -> np.ndarray | None:
        """Add the ring's samples to the sums and histograms and empty it; the rows
        column of what was folded (None when the ring was empty)."""
        n = self.n
        if not n:
            return None
        block = np.array(self.ring[:_FIELDS * n], dtype=np.float64).reshape(n, _FIELDS)
        self.n = 0
        total, queue, compute, inputs, rows = block.T
        self.inferences += int(rows.sum())
        self.request_s += float(total.sum())
        self.queue_s += float(queue.sum())
        self.infer_s += float(compute.sum())
        self.input_s += float(inputs.sum())
        self.output_s += float((total - inputs - queue - compute).sum())
        for hist, values in ((self.request_b, total), (self.queue_b, queue),
                             (self.compute_b, compute)):
            _add_counts(hist, self.np_bounds, values)
        return rows


class VersionStats:
    """One served version (model, version): its traffic classes, its executions (batch
    sizes), and the health facts the failing-version rule and ``/v1/health`` read."""

    __slots__ = ("batch_b", "batch_bounds", "batched", "by_traffic", "executions",
                 "last_error", "last_error_at", "last_fail_count", "last_success_pc",
                 "model", "production", "rows_input", "rows_total", "streak", "version")

    def __init__(self, model: str, version: str, bounds: tuple[float, ...],
                 batch_bounds: tuple[int, ...]) -> None:
        self.model, self.version = model, version
        self.production = RequestStats(bounds)
        self.by_traffic = {PRODUCTION: self.production, "test": RequestStats(bounds),
                           "synthetic": RequestStats(bounds)}
        self.batch_bounds = batch_bounds
        self.batch_b = _hist(tuple(float(b) for b in batch_bounds))
        self.executions = 0
        self.rows_total = 0  # rows over all executions (the batch histogram's sum)
        self.batched = False
        #: the input whose first dimension is the batch (None: one inference a request)
        self.rows_input: str | None = None
        self.streak = 0
        self.last_fail_count = -1
        self.last_error = ""
        self.last_error_at = 0.0  # time.time()
        self.last_success_pc = 0.0  # time.perf_counter() of the last success; 0 = none

    def rows(self, arrays: Mapping[str, np.ndarray]) -> int:
        """Inferences in one request: its batch dimension, or 1."""
        name = self.rows_input
        if name is None:
            return 1
        array_ = arrays[name]
        return int(array_.shape[0]) if array_.ndim else 1

    def executed(self, rows: int) -> None:
        """Count one execution (a predict call: one request, or one dynamic batch)."""
        self.executions += 1
        self.rows_total += rows
        self.batch_b[bisect_left(self.batch_bounds, rows)] += 1

    def succeeded(self, traffic: str, arrays: Mapping[str, np.ndarray], started: float,
                  before: float, queue: float, compute: float, end: float) -> None:
        """Count one successful request of ``traffic`` (perf_counter seconds: ``started``,
        ``before`` execution, ``end`` encoded; ``queue`` and ``compute`` durations): one
        counter and five stores into the ring. One flat function: this is the request
        path's whole cost."""
        rs = self.production if traffic == PRODUCTION else self.by_traffic[traffic]
        name = self.rows_input
        rs.ok += 1
        n = rs.n
        ring, i = rs.ring, n * 5
        ring[i] = end - started
        ring[i + 1] = queue
        ring[i + 2] = compute
        ring[i + 3] = before - started
        ring[i + 4] = 1 if name is None else (
            arrays[name].shape[0] if arrays[name].ndim else 1)
        self.last_success_pc = end
        rs.n = n + 1
        if n + 1 == RING:
            self._fold(rs)

    def fold(self) -> None:
        """Fold every ring (the scrape does this first, on the event loop: the rings'
        only writer)."""
        for rs in self.by_traffic.values():
            self._fold(rs)

    def _fold(self, rs: RequestStats) -> None:
        rows = rs.fold()
        if rows is not None and not self.batched:  # each request was one execution
            self.executions += len(rows)
            self.rows_total += int(rows.sum())
            _add_counts(self.batch_b, np.asarray(self.batch_bounds, dtype=np.float64), rows)

    def request_failed(self, traffic: str, reason: int, rows: int) -> None:
        """Count one failed request of ``traffic`` with a :data:`REASONS` index."""
        self.by_traffic[traffic].failed[reason] += 1
        if reason == BACKEND and not self.batched:
            self.executed(rows)

    # -- the failing-version rule ------------------------------------------------------
    def backend_error(self, execution_count: int, message: str) -> None:
        """A backend error ended execution number ``execution_count`` (the ring count)."""
        self.streak = self.streak + 1 if execution_count - self.last_fail_count == 1 else 1
        self.last_fail_count = execution_count
        self.last_error = message
        self.last_error_at = time.time()

    def failing(self, execution_count: int, threshold: int) -> bool:
        """``threshold`` backend errors in a row and no execution since the last one."""
        return self.streak >= threshold and execution_count == self.last_fail_count

    def recovered(self) -> None:
        """The recovery probe predicted successfully: the streak is over."""
        self.streak = 0

    def last_success_at(self) -> float | None:
        """Wall-clock time of the last successful request (None: none recorded)."""
        if not self.last_success_pc:
            return None
        return time.time() - (time.perf_counter() - self.last_success_pc)

    def describe(self) -> dict[str, Any]:
        """The health facts, for ``/v1/health``."""
        return {"last_error": self.last_error or None,
                "last_error_at": self.last_error_at or None,
                "last_success_at": self.last_success_at(),
                "consecutive_backend_errors": self.streak}
