"""Shadow copies: production requests replayed on shadow versions, off the request path.

The request path calls :meth:`ShadowRunner.offer` after the client's answer is made: an
O(1) hand-off into a bounded queue, or a counted shed. A copy is shed — never queued —
when the queue is full, when more than ``shadow_rate_per_s`` copies started in the last
second, or when ``shadow_busy_inflight`` production requests are in flight (the box is
busy: the shadow must not take the core production needs). One worker thread, at the
lowest CPU priority Linux gives a thread (nice 19), predicts each copy on each shadow
version directly (backends' ``predict`` is thread-safe) and hands the pair of outputs to
the version's :class:`~.compare.ShadowComparison`. A shadow's exception is counted
there; it never reaches a client, and the client's latency never waits on a shadow.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from .compare import ComparisonSettings, ShadowComparison
from .policies import StoredPolicy
from .settings import RoutingSettings

__all__ = ["ShadowRunner"]

log = logging.getLogger(__name__)

Copy = tuple[StoredPolicy, Mapping[str, Any], Mapping[str, Any], float]


def comparison_of(policy: StoredPolicy, version: str) -> ShadowComparison:
    """The route runtime's comparison for one shadow version (made on first use)."""
    comparisons = policy.runtime.shadow_comparisons
    found = comparisons.get(version)
    if found is None:
        with policy.runtime.lock:
            found = comparisons.get(version)
            if found is None:
                found = comparisons[version] = ShadowComparison(
                    ComparisonSettings(**policy.spec.compare))
    return found


class ShadowRunner:
    """The bounded queue and the worker thread (see the module docstring)."""

    def __init__(self, settings: RoutingSettings, inflight: Callable[[], int]) -> None:
        self.settings = settings
        self.inflight = inflight
        self._queue: queue.Queue[Copy | None] = queue.Queue(maxsize=settings.shadow_queue)
        self._second = 0
        self._started_this_second = 0
        self.offered = self.shed = self.done = 0
        self.shed_by: dict[str, int] = {"queue-full": 0, "rate": 0, "busy": 0}
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="routing-shadow",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
            thread.join(timeout=5)

    # -- the request path ------------------------------------------------------------
    def offer(self, policy: StoredPolicy, inputs: Mapping[str, Any],
              outputs: Mapping[str, Any], seconds: float, draw: float) -> bool:
        """Queue a copy of one answered production request (``draw``: a uniform number
        deciding ``shadow_percent``); False when it was not taken (shed or sampled out)."""
        if draw >= policy.shadow_share:
            return False
        self.offered += 1
        reason = None
        now = int(time.monotonic())
        if now != self._second:
            self._second, self._started_this_second = now, 0
        if self.inflight() >= self.settings.shadow_busy_inflight:
            reason = "busy"
        elif self._started_this_second >= self.settings.shadow_rate_per_s:
            reason = "rate"
        else:
            try:
                self._queue.put_nowait((policy, inputs, outputs, seconds))
                self._started_this_second += 1
                return True
            except queue.Full:
                reason = "queue-full"
        self.shed += 1
        self.shed_by[reason] += 1
        for served in policy.shadows:
            comparison_of(policy, served.record.version).add_shed()
        return False

    # -- the worker ------------------------------------------------------------------
    def _run(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # best effort: Linux threads
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self.replay(*item)
            except Exception:  # a comparison bug must not stop the worker
                log.exception("shadow comparison failed")
            self.done += 1

    @staticmethod
    def replay(policy: StoredPolicy, inputs: Mapping[str, Any], outputs: Mapping[str, Any],
               seconds: float) -> None:
        """Predict one copy on every shadow version of the route and compare."""
        for served in policy.shadows:
            comparison = comparison_of(policy, served.record.version)
            model = served.model
            if model is None or not served.ready:
                comparison.add_error(f"version {served.record.version} is {served.state}")
                continue
            started = time.perf_counter()
            try:
                answer = model.predict(inputs)
            except Exception as exc:
                comparison.add_error(f"{type(exc).__name__}: {exc}"[:200])
                continue
            comparison.add(outputs, answer, seconds, time.perf_counter() - started)

    def describe(self) -> dict[str, Any]:
        """Queue and shedding counters (for the shadow report and metrics)."""
        return {"queue_cap": self.settings.shadow_queue, "queued": self._queue.qsize(),
                "rate_cap_per_s": self.settings.shadow_rate_per_s,
                "busy_inflight": self.settings.shadow_busy_inflight,
                "offered": self.offered, "shed": self.shed, "shed_by": dict(self.shed_by),
                "done": self.done}
