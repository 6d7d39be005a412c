"""The request path's side of the audit writer: a bounded, lock-free hand-off queue.

:class:`AuditQueue` is what the data plane and the authenticator call. ``record`` appends
a tuple to a deque and returns: no lock, no I/O, no formatting. Whoever drains the deque
(the in-process writer, :class:`~.inference.InferenceAuditor`, or the feeder of the writer
process, :class:`~.feeder.AuditFeeder`) takes it from there. When the deque is full a
record is dropped and counted (:mod:`.losses`); a ``gap`` record reports the count later.

Queued items are tuples: an inference record has ten fields ``(at, model, version,
request_id, caller, input_digest, output_summary, latency_ms, routing, inputs)``, any other
record four ``(at, kind, actor, body)``; a :class:`threading.Event` is a flush marker.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from .digest import summarize, tensor_digest
from .losses import Losses
from .records import KIND_PATTERN
from .settings import ModelAudit

_NO_AUDIT = ModelAudit()


def count_by_kind(batch: list[Any], losses: Losses, reason: str) -> None:
    """Add the queued records of ``batch`` to ``losses`` under ``reason``, by kind."""
    by_kind: dict[str, list[float]] = {}
    for item in batch:
        kind = "inference" if len(item) == 10 else item[1]
        entry = by_kind.setdefault(kind, [0, item[0], item[0]])
        entry[0] += 1
        entry[1], entry[2] = min(entry[1], item[0]), max(entry[2], item[0])
    for kind, (count, first, last) in by_kind.items():
        losses.add(reason, int(count), first, last, kind=kind)


class AuditQueue:
    """The bounded queue of records waiting for the writer, and the request-path calls."""

    def __init__(self, *, batch_window_ms: int = 200, batch_size: int = 1000,
                 queue_max: int = 100_000,
                 per_model: Mapping[str, ModelAudit] | None = None) -> None:
        self.window_s = batch_window_ms / 1000
        self.batch_size = batch_size
        self.queue_max = queue_max
        self.per_model = dict(per_model or {})
        self._queue: collections.deque[Any] = collections.deque()
        self._losses = Losses()
        self._wake = threading.Event()
        self._stopping = False

    @property
    def dropped(self) -> int:
        """Records lost so far by this queue (full) and its writer."""
        return self._losses.total

    # -- the request path ------------------------------------------------------------
    def record(self, model: str, version: str, request_id: str | None, caller: str | None,
               input_digest: str | None, output_summary: Any, latency_ms: float,
               routing: Mapping[str, Any] | None = None, *,
               inputs: Mapping[str, np.ndarray] | None = None) -> bool:
        """Queue one inference record; never blocks. False when it was dropped.

        ``inputs`` are kept (by reference) only for a model with ``store_inputs``."""
        queue = self._queue
        if len(queue) >= self.queue_max:
            now = time.time()
            self._losses.add("queue-full", 1, now, now)
            return False
        queue.append((time.time(), model, version, request_id, caller, input_digest,
                      output_summary, latency_ms, routing, inputs))
        if len(queue) >= self.batch_size and not self._wake.is_set():
            self._wake.set()
        return True

    def record_event(self, kind: str, actor: str, body: Mapping[str, Any]) -> bool:
        """Queue one record of ``kind`` (an auth failure) in the same bounded queue;
        never blocks, starts no thread. False when dropped (counted for a gap record)."""
        now = time.time()
        if len(self._queue) >= self.queue_max or not KIND_PATTERN.match(kind):
            self._losses.add("queue-full", 1, now, now, kind=kind if KIND_PATTERN.match(kind)
                             else "invalid")
            return False
        self._queue.append((now, kind, actor or "unknown", body))
        if len(self._queue) >= self.batch_size and not self._wake.is_set():
            self._wake.set()
        return True

    def observe(self, model: str, version: str, request_id: str | None, caller: str | None,
                inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray],
                latency_ms: float, routing: Mapping[str, Any] | None = None) -> bool:
        """:meth:`record` with the digest and summary made per the model's settings.

        Never raises: a request must not fail for its audit record. A record that cannot
        be made is counted and reported in a gap record (reason ``observe-failed``)."""
        audit = self.per_model.get(model, _NO_AUDIT)
        try:
            digest = tensor_digest(inputs)
            summary = summarize(audit.summary, outputs) if audit.summary else None
        except Exception:
            now = time.time()
            self._losses.add("observe-failed", 1, now, now)
            return False
        return self.record(model, version, request_id, caller, digest, summary, latency_ms,
                           routing, inputs=inputs if audit.store_inputs else None)

    # -- the drain side --------------------------------------------------------------
    def _run(self) -> None:
        """The drain thread: every ``window_s`` (or when woken), then once more at stop."""
        while not self._stopping:
            self._wake.wait(self.window_s)
            self._wake.clear()
            self._drain()
        self._drain()

    def _drain(self) -> None:
        raise NotImplementedError

    def _take(self) -> tuple[list[Any], list[threading.Event]]:
        """Up to ``batch_size`` queued records, and the flush markers among them."""
        queue = self._queue
        batch: list[Any] = []
        flushes: list[threading.Event] = []
        while len(batch) < self.batch_size:
            try:
                item = queue.popleft()
            except IndexError:
                break
            if isinstance(item, threading.Event):
                flushes.append(item)
            else:
                batch.append(item)
        return batch, flushes
