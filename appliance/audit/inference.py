"""Inference audit records, written off the request path.

:meth:`InferenceAuditor.record` appends a tuple to a bounded deque and returns: no lock,
no I/O, no formatting (measured in ``benchmarks/audit_bench.py``). A writer thread drains
the deque every ``batch_window_ms`` (or at ``batch_size`` records) into one transaction.
When the deque is full a record is dropped and counted; the writer then writes a ``gap``
record saying how many were lost and between which times. A batch that fails to commit
is reported the same way.

The writer brackets its life with ``writer-start`` and ``writer-stop`` records. If the
newest of them is a ``writer-start`` when a writer starts, the last one died without
stopping (a crash, SIGKILL, power loss): a ``gap`` record says that at most its last batch
window of inference records after the last committed record may be lost. One writer per
data directory is assumed.

The input digest and output summary come from :mod:`.digest`.
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

from .digest import stored_inputs, summarize, tensor_digest
from .log import AuditLog, Entry, Record, canonical_json
from .settings import ModelAudit

log = logging.getLogger(__name__)

_NO_AUDIT = ModelAudit()


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds")


class _Losses:
    """Records lost since the last gap record, by reason (touched only when losing)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: dict[str, list[float]] = {}  # reason -> [count, first_at, last_at]
        self.total = 0

    def add(self, reason: str, count: int, first: float, last: float, *,
            new: bool = True) -> None:
        with self.lock:
            if new:
                self.total += count
            entry = self.pending.get(reason)
            if entry is None:
                self.pending[reason] = [count, first, last]
            else:
                entry[0] += count
                entry[1], entry[2] = min(entry[1], first), max(entry[2], last)

    def take(self) -> dict[str, list[float]]:
        with self.lock:
            pending, self.pending = self.pending, {}
        return pending

    def restore(self, pending: dict[str, list[float]]) -> None:
        """Put back losses whose gap record could not be written."""
        for reason, (count, first, last) in pending.items():
            self.add(reason, int(count), first, last, new=False)


def _gap_entries(pending: dict[str, list[float]]) -> list[Entry]:
    return [Entry("gap", "appliance", {"reason": reason, "lost": int(count),
                                       "first_lost_at": _iso(first), "last_lost_at": _iso(last)})
            for reason, (count, first, last) in sorted(pending.items())]


class InferenceAuditor:
    """Batches inference records into ``log`` from a writer thread."""

    def __init__(self, audit_log: AuditLog, *, batch_window_ms: int = 200,
                 batch_size: int = 1000, queue_max: int = 100_000,
                 per_model: Mapping[str, ModelAudit] | None = None) -> None:
        self.log = audit_log
        self.window_s = batch_window_ms / 1000
        self.batch_size = batch_size
        self.queue_max = queue_max
        self.per_model = dict(per_model or {})
        self.writer_id = uuid.uuid4().hex[:12]
        self._queue: collections.deque[Any] = collections.deque()
        self._losses = _Losses()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.written = 0

    @property
    def dropped(self) -> int:
        """Records lost so far (queue full or a failed commit)."""
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

    # -- the writer ------------------------------------------------------------------
    def start(self) -> None:
        """Report an unclean previous shutdown, write ``writer-start``, start the thread."""
        entries = []
        last = self.log.last_writer_record()
        if last is not None and last.kind == "writer-start":
            entries.append(self._crash_gap(last))
        entries.append(Entry("writer-start", "appliance", {
            "writer": self.writer_id, "pid": os.getpid(), "host": socket.gethostname(),
            "batch_window_ms": round(self.window_s * 1000), "batch_size": self.batch_size,
            "queue_max": self.queue_max}))
        self.log.append_many(entries)
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def _crash_gap(self, start: Record) -> Entry:
        head = self.log.last()
        assert head is not None  # the writer-start itself is a record
        info = start.data()
        window = info.get("batch_window_ms")
        return Entry("gap", "appliance", {
            "reason": "unclean-shutdown", "writer": info.get("writer"),
            "writer_started_seq": start.seq, "after_seq": head.seq, "after_at": head.at,
            "max_lost_window_ms": window,
            "detail": f"writer {info.get('writer')} (pid {info.get('pid')}) stopped without "
                      f"writer-stop: a crash may have lost at most its last batch window "
                      f"({window} ms) of inference records after seq {head.seq} "
                      f"({head.at}); more only if it was behind (its queue held at most "
                      f"{info.get('queue_max')})"})

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.window_s)
            self._wake.clear()
            self._drain()
        self._drain()

    def _drain(self) -> None:
        queue = self._queue
        while True:
            batch, flushes = [], []
            while len(batch) < self.batch_size:
                try:
                    item = queue.popleft()
                except IndexError:
                    break
                if isinstance(item, threading.Event):
                    flushes.append(item)
                else:
                    batch.append(item)
            if batch or self._losses.pending:
                self._write(batch)
            for event in flushes:
                event.set()
            if len(batch) < self.batch_size:
                return

    def _write(self, batch: list[tuple[Any, ...]]) -> None:
        losses = self._losses.take()
        try:
            try:
                self.log.append_many([*map(self._entry, batch), *_gap_entries(losses)])
            except TypeError:  # a summary or routing that is not JSON: drop that record
                batch = self._encodable(batch)
                self._losses.restore(losses)
                losses = self._losses.take()
                self.log.append_many([*map(self._entry, batch), *_gap_entries(losses)])
            self.written += len(batch)
        except Exception:  # disk full, database locked too long: count them, carry on
            log.exception("audit writer: %d inference records lost", len(batch))
            self._losses.restore(losses)
            if batch:
                self._losses.add("write-failed", len(batch), batch[0][0], batch[-1][0])

    def _encodable(self, batch: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """The batch without records whose summary or routing is not JSON (counted)."""
        good = []
        for item in batch:
            try:
                canonical_json(item[6:9])
                good.append(item)
            except (TypeError, ValueError):
                self._losses.add("not-json", 1, item[0], item[0])
        return good

    def _entry(self, item: tuple[Any, ...]) -> Entry:
        (t, model, version, request_id, caller, digest, summary, latency_ms, routing,
         inputs) = item
        body: dict[str, Any] = {"model": model, "version": version, "request_id": request_id,
                                "input_digest": digest, "output_summary": summary,
                                "latency_ms": round(float(latency_ms), 3)}
        if routing:
            body["routing"] = dict(routing)
        if inputs is not None:
            body["inputs"] = stored_inputs(inputs)
        return Entry("inference", caller or "anonymous", body, _iso(t))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is committed (tests, shutdown)."""
        event = threading.Event()
        self._queue.append(event)
        self._wake.set()
        return event.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Drain, write ``writer-stop`` and stop the thread."""
        if self._thread is None:
            return
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        self._thread = None
        self.log.append("writer-stop", "appliance", {"writer": self.writer_id,
                                                     "written": self.written,
                                                     "dropped": self.dropped})

    def stats(self) -> dict[str, int]:
        return {"queued": len(self._queue), "written": self.written, "dropped": self.dropped}
