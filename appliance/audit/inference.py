"""Inference audit records, written off the request path.

:meth:`InferenceAuditor.record` appends a tuple to a bounded deque and returns: no lock,
no I/O, no formatting (measured in ``benchmarks/audit_bench.py``). A writer thread drains
the deque every ``batch_window_ms`` (or at ``batch_size`` records) into one transaction.
Other records that arrive in floods (auth failures, :meth:`InferenceAuditor.record_event`)
share the deque and the writer: no thread per record. When the deque is full a record is
dropped and counted; the writer then writes a ``gap`` record saying how many were lost
(``reason``, ``records``: their kind) and between which times. A batch that fails to
commit is reported the same way; the pending counts are mirrored in ``audit.losses``
(:mod:`.losses`) so a stop while the disk is full does not lose them.

While it builds and hashes a batch the writer releases the GIL every ``yield_every``
records (a 1 µs sleep), so a request never waits a whole batch (or Python's 5 ms
switch interval) for it; while it is a batch or more behind it does not, so it catches up
(a busy thread leaves it the GIL only once per switch interval).

The writer brackets its life with ``writer-start`` and ``writer-stop`` records. If the
newest of them is a ``writer-start`` when a writer starts, the last one died without
stopping (a crash, SIGKILL, power loss): a ``gap`` record says that at most its last batch
window of inference records after the last committed record may be lost. One writer per
data directory is assumed.

The input digest and output summary come from :mod:`.digest`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from .digest import stored_inputs
from .log import YIELD_S, AuditLog
from .losses import Key, LossFile
from .queueing import AuditQueue, count_by_kind
from .records import Entry, Record, canonical_json
from .settings import ModelAudit

log = logging.getLogger(__name__)


_SECOND: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text


def _iso(t: float) -> str:
    """``t`` in the log's format (microseconds truncated); the date and time of the
    second are formatted once per second (this runs for every record)."""
    global _SECOND
    second, cached = int(t), _SECOND  # one read: another writer thread may replace it
    if cached[0] != second:
        cached = _SECOND = (second, datetime.fromtimestamp(second, UTC).strftime(
            "%Y-%m-%dT%H:%M:%S"))
    return f"{cached[1]}.{int((t - second) * 1e6):06d}+00:00"


def _gap_entries(pending: dict[Key, list[float]]) -> list[Entry]:
    return [Entry("gap", "appliance", {"reason": reason, "records": kind, "lost": int(count),
                                       "first_lost_at": _iso(first), "last_lost_at": _iso(last)})
            for (reason, kind), (count, first, last) in sorted(pending.items())]


class _Body(msgspec.Struct, omit_defaults=True):
    """An inference record's body; fields in code-point order, so with ``order="sorted"``
    the bytes are the canonical JSON of the same dict (cheaper than encoding a dict)."""

    input_digest: str | None
    latency_ms: float
    model: str
    output_summary: Any
    request_id: str | None
    version: str
    inputs: Any = None
    routing: Any = None


_encode_body = msgspec.json.Encoder(order="sorted").encode


class InferenceAuditor(AuditQueue):
    """Batches inference records (and queued events) into ``log`` from a writer thread."""

    def __init__(self, audit_log: AuditLog, *, batch_window_ms: int = 200,
                 batch_size: int = 1000, queue_max: int = 100_000,
                 per_model: Mapping[str, ModelAudit] | None = None,
                 yield_every: int = 32) -> None:
        super().__init__(batch_window_ms=batch_window_ms, batch_size=batch_size,
                         queue_max=queue_max, per_model=per_model)
        self.log = audit_log
        self.yield_every = yield_every
        self._pause = yield_every  # for this batch: 0 while the writer is behind
        self.writer_id = uuid.uuid4().hex[:12]
        self._loss_file: LossFile | None = None
        self._persisted = 0
        self._warned_at = -1e9
        self._started = False  # writer-start committed
        self._thread: threading.Thread | None = None
        #: called after each drain (the writer process reports its counts from it)
        self.after_drain: Callable[[], None] | None = None
        self.written = 0

    def extend(self, items: Iterable[Sequence[Any]]) -> None:
        """Queue records made elsewhere (the writer process's feeder), bounded like
        :meth:`record`; wakes the writer."""
        queue = self._queue
        for item in items:
            if len(queue) >= self.queue_max:
                count_by_kind([item], self._losses, "queue-full")
            else:
                queue.append(item)
        self._wake.set()

    def add_losses(self, pending: Iterable[Sequence[Any]]) -> None:
        """Count ``[reason, kind, count, first, last]`` losses made elsewhere."""
        for reason, kind, count, first, last in pending:
            self._losses.add(str(reason), int(count), float(first), float(last),
                             kind=str(kind))

    # -- the writer ------------------------------------------------------------------
    def start(self) -> None:
        """Report an unclean previous shutdown and losses a previous writer could not
        record, write ``writer-start``, start the thread.

        Never fails for the log itself: when it cannot be written (a full disk) this logs
        a warning, the thread starts anyway and records are counted as lost until a
        commit succeeds; the counts are kept in ``audit.losses`` meanwhile."""
        self._loss_file = LossFile(self.log.data_dir)
        carried = self._loss_file.read()
        if carried:
            self._losses.restore(carried)
        try:
            self._write([])
        except Exception as exc:
            log.warning("audit log %s cannot be written (%s): serving without it; records "
                        "are counted as lost and reported in a gap record once it can be",
                        self.log.path, exc)
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def _start_entries(self) -> list[Entry]:
        entries = []
        last = self.log.last_writer_record()
        if last is not None and last.kind == "writer-start":
            entries.append(self._crash_gap(last))
        entries.append(Entry("writer-start", "appliance", {
            "writer": self.writer_id, "pid": os.getpid(), "host": socket.gethostname(),
            "batch_window_ms": round(self.window_s * 1000), "batch_size": self.batch_size,
            "queue_max": self.queue_max}))
        return entries

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

    def _drain(self) -> None:
        queue = self._queue
        while True:
            batch, flushes = self._take()
            # behind by a batch or more: hold the GIL longer (the switch interval) to
            # catch up rather than yield after every chunk and fall further behind
            self._pause = 0 if len(queue) >= self.batch_size else self.yield_every
            if batch or self._losses.pending or not self._started:
                try:
                    self._write(batch)
                except Exception:  # disk full, database locked too long: counted
                    self._lost(batch)
            self._persist_losses()
            for event in flushes:
                event.set()
            if self.after_drain is not None:
                self.after_drain()
            if len(batch) < self.batch_size:
                return

    def _write(self, batch: list[tuple[Any, ...]], *, stop: bool = False) -> None:
        """Commit ``batch`` with the pending gap records (and writer-start first, until it
        is in); raises when the commit failed, with the losses put back."""
        losses = self._losses.take()
        try:
            self.log.ensure_open()
            head = [] if self._started else [(e.at, e.kind, e.actor,
                                              canonical_json(e.body).decode())
                                             for e in self._start_entries()]
            items, bad = self._items(batch)
            tail = [*_gap_entries(losses)]
            if stop:
                tail.append(Entry("writer-stop", "appliance", {
                    "writer": self.writer_id, "written": self.written + len(batch),
                    "dropped": self.dropped}))
            items = head + items + [(e.at, e.kind, e.actor, canonical_json(e.body).decode())
                                    for e in tail]
            self.log.write_encoded(items, yield_every=self._pause, records=False)
        except BaseException:
            self._losses.restore(losses)
            raise
        self._started = True
        self.written += len(batch) - len(bad)
        if bad:  # reported by the next gap record
            self._count(bad, "not-json")

    def _lost(self, batch: list[tuple[Any, ...]]) -> None:
        if not batch:
            return
        now = time.monotonic()
        if now - self._warned_at > 60:  # a full disk fails every batch: say it once a minute
            self._warned_at = now
            log.exception("audit writer: %d records lost (counted; a gap record follows "
                          "once the log can be written)", len(batch))
        self._count(batch, "write-failed")

    def _count(self, batch: list[tuple[Any, ...]], reason: str) -> None:
        count_by_kind(batch, self._losses, reason)

    def _persist_losses(self) -> None:
        """Mirror the pending counts into ``audit.losses`` when they changed."""
        changes = self._losses.changes
        if (self._loss_file is not None and changes != self._persisted
                and self._loss_file.write(self._losses.snapshot())):
            self._persisted = changes

    def _items(self, batch: list[tuple[Any, ...]]
               ) -> tuple[list[tuple[str | None, str, str, str]], list[tuple[Any, ...]]]:
        """(at, kind, actor, body JSON) per queued record, and the records that cannot be
        encoded (counted as ``not-json`` once the rest is committed). Yields the GIL
        every ``_pause`` records."""
        items, bad = [], []
        pause = self._pause or len(batch) + 1
        for i, item in enumerate(batch, 1):
            try:
                items.append(self._item(item))
            except (TypeError, ValueError, msgspec.EncodeError):
                bad.append(item)
            if i % pause == 0:
                time.sleep(YIELD_S)
        return items, bad

    def _item(self, item: tuple[Any, ...]) -> tuple[str | None, str, str, str]:
        if len(item) == 4:  # an event
            t, kind, actor, body = item
            return _iso(t), kind, actor, canonical_json(body).decode()
        (t, model, version, request_id, caller, digest, summary, latency_ms, routing,
         inputs) = item
        body = _Body(digest, round(float(latency_ms), 3), model, summary, request_id,
                     version, stored_inputs(inputs) if inputs is not None else None,
                     dict(routing) if routing else None)
        return _iso(t), "inference", caller or "anonymous", _encode_body(body).decode()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is committed (tests, shutdown)."""
        event = threading.Event()
        self._queue.append(event)
        self._wake.set()
        return event.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Drain, write ``writer-stop`` and stop the thread. When the log cannot be
        written, the loss counts are left in ``audit.losses`` for the next writer."""
        if self._thread is None:
            return
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        self._thread = None
        try:
            self._write([], stop=True)
        except Exception as exc:
            log.warning("audit writer-stop not written (%s): %d lost record(s) are kept in "
                        "%s for the next start", exc, sum(int(v[0]) for v in
                                                          self._losses.snapshot().values()),
                        self._loss_file.path if self._loss_file else "memory only")
        self._persist_losses()
        if self._loss_file is not None:
            self._loss_file.close()

    def stats(self) -> dict[str, int]:
        return {"queued": len(self._queue), "written": self.written, "dropped": self.dropped}
