"""The serving process's end of the audit writer process (:mod:`.writer_process`).

:class:`AuditFeeder` is an :class:`~.queueing.AuditQueue` (the same request-path calls as
the in-process writer) whose thread sends what is queued to the writer process every
``batch_window_ms``, or as soon as ``batch_size`` records wait: one msgpack frame per
batch, so the serving process spends about a microsecond per record on audit after the
request has been answered, instead of the writer's whole build, hash and insert.

Nothing is lost silently:

- a record that cannot be encoded is counted (``not-json``), as the writer would;
- a batch the writer process cannot take (it died) is counted (``writer-died``), a new
  writer is started, and its ``writer-start`` reports the unclean stop of the old one (a
  ``gap`` record, :mod:`.inference`); these counts travel with the next batch;
- :meth:`flush` answers False when the writer did not confirm the commit.

``written`` and ``dropped`` are the writer's counts as of its last report plus this
side's own losses; :meth:`stats` adds the records still queued on both sides.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import msgspec

from .digest import stored_inputs
from .queueing import AuditQueue, count_by_kind
from .settings import AuditSettings
from .writer_process import (
    BATCH,
    CONFIG,
    FLUSH,
    FLUSHED,
    LOG,
    READY,
    STATS,
    STOP,
    STOPPED,
    frame,
    read_frame,
)

log = logging.getLogger(__name__)
_encode = msgspec.msgpack.Encoder().encode
START_TIMEOUT_S = 60.0


class WriterUnavailable(RuntimeError):
    """The writer process could not be started."""


class _FlushMark(threading.Event):
    """A flush marker in the queue; ``ok`` once the writer confirmed the commit."""

    ok = False


class _Child:
    """One writer process and the thread reading its replies."""

    def __init__(self, data_dir: Path, settings: AuditSettings) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "appliance.audit.writer_main"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.ready = threading.Event()
        self.gone = threading.Event()
        self.flushes: dict[int, threading.Event] = {}
        #: batches sent and not yet confirmed committed: (seq, records)
        self.unconfirmed: collections.deque[tuple[int, list[Any]]] = collections.deque()
        self.written = self.dropped = self.queued = 0
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, name="audit-writer-replies",
                                       daemon=True)
        self.reader.start()
        try:
            self.send([CONFIG, str(data_dir), msgspec.to_builtins(settings),
                       logging.getLogger("appliance.audit").getEffectiveLevel()])
        except OSError:
            self.abandon()
            raise

    def send(self, message: list[Any] | bytes) -> None:
        """Raises OSError when the writer is gone."""
        data = message if isinstance(message, bytes) else frame(message)
        with self.lock:
            self.stdin.write(data)
            self.stdin.flush()

    def _read(self) -> None:
        try:
            while (message := read_frame(self.stdout)) is not None:
                kind = message[0]
                if kind == STATS:
                    self.written, self.dropped, self.queued = message[1:4]
                    self._confirm(message[4])
                elif kind == FLUSHED:
                    self.written, self.dropped = message[2:4]
                    self._confirm(message[4])
                    event = self.flushes.pop(message[1], None)
                    if isinstance(event, _FlushMark):
                        event.ok = True
                    if event is not None:
                        event.set()
                elif kind == LOG:
                    logging.getLogger(str(message[2])).log(int(message[1]), "%s", message[3])
                elif kind == READY:
                    self.ready.set()
                elif kind == STOPPED:
                    self.written, self.dropped = message[1:3]
                    self.stopped.set()
        finally:
            with contextlib.suppress(OSError):
                self.stdout.close()
            self.gone.set()
            self.ready.set()
            for event in list(self.flushes.values()):  # never confirmed: False
                event.set()

    def _confirm(self, seq: int) -> None:
        unconfirmed = self.unconfirmed
        while unconfirmed and unconfirmed[0][0] <= seq:
            unconfirmed.popleft()

    def abandon(self) -> None:
        """Stop a writer that did not come up, and let go of it."""
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.discard()
        self.reader.join(5)

    def discard(self) -> None:
        """Let go of a writer that died: its pipe closed, the process reaped."""
        with contextlib.suppress(OSError):
            self.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)

    @property
    def alive(self) -> bool:
        return not self.gone.is_set() and self.proc.poll() is None

    def close(self, timeout: float) -> None:
        with contextlib.suppress(OSError):
            self.send([STOP])
        self.stopped.wait(timeout)
        with contextlib.suppress(OSError):
            self.stdin.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("audit writer process %d did not stop in %.0f s: killed",
                        self.proc.pid, timeout)
            self.proc.kill()
            self.proc.wait()
        self.reader.join(timeout)


class AuditFeeder(AuditQueue):
    """Queues records on the request path and feeds them to a writer process."""

    def __init__(self, data_dir: Path, settings: AuditSettings) -> None:
        super().__init__(batch_window_ms=settings.batch_window_ms,
                         batch_size=settings.batch_size, queue_max=settings.queue_max,
                         per_model=settings.per_model)
        self.data_dir = Path(data_dir)
        self.settings = settings
        self._child: _Child | None = None
        self._retired_written = 0  # by writers that died
        self._retired_dropped = 0
        self._tokens = itertools.count(1)
        self._seqs = itertools.count(1)
        self._thread: threading.Thread | None = None

    @property
    def written(self) -> int:
        child = self._child
        return self._retired_written + (child.written if child else 0)

    @property
    def dropped(self) -> int:
        child = self._child
        return self._losses.total + self._retired_dropped + (child.dropped if child else 0)

    @property
    def pid(self) -> int | None:
        """The writer process's id (None before start)."""
        return self._child.proc.pid if self._child else None

    def start(self) -> None:
        """Start the writer process (its ``writer-start`` is written when this returns)
        and the feeding thread. WriterUnavailable when the process does not come up."""
        self._spawn()
        self._thread = threading.Thread(target=self._run, name="audit-feeder", daemon=True)
        self._thread.start()

    def _spawn(self) -> None:
        try:
            child = _Child(self.data_dir, self.settings)
        except OSError as exc:
            raise WriterUnavailable(f"audit writer process not started: {exc}") from exc
        if not child.ready.wait(START_TIMEOUT_S) or not child.alive:
            child.abandon()
            raise WriterUnavailable(
                f"audit writer process (pid {child.proc.pid}) did not start "
                f"(exit status {child.proc.poll()})")
        self._child = child

    def _drain(self) -> None:
        while True:
            batch, flushes = self._take()
            pending = self._losses.take()
            if batch or pending:
                self._send(batch, pending)
            for event in flushes:
                self._flush_marker(event)
            if len(batch) < self.batch_size:
                return

    def _encoded(self, seq: int, batch: list[Any],
                 pending: dict[tuple[str, str], list[float]]) -> bytes:
        items = [item if len(item) != 10 or item[9] is None
                 else (*item[:9], stored_inputs(item[9])) for item in batch]
        losses = [[reason, kind, *value] for (reason, kind), value in pending.items()]
        try:
            return frame([BATCH, seq, items, losses])
        except (TypeError, ValueError, msgspec.EncodeError):
            good = []
            for item in items:  # find the ones that cannot go: counted, as the writer does
                try:
                    _encode(item)
                    good.append(item)
                except (TypeError, ValueError, msgspec.EncodeError):
                    count_by_kind([item], self._losses, "not-json")
            return frame([BATCH, seq, good, losses])

    def _send(self, batch: list[Any], pending: dict[tuple[str, str], list[float]]) -> None:
        seq = next(self._seqs)
        if self._deliver(self._encoded(seq, batch, pending), batch=(seq, batch)) is None:
            self._losses.restore(pending)
            count_by_kind(batch, self._losses, "writer-died")

    def _deliver(self, data: bytes, *, batch: tuple[int, list[Any]] | None = None,
                 flush: tuple[int, threading.Event] | None = None) -> _Child | None:
        """Send ``data`` (a batch, or a flush marker) to the writer, starting a new one
        (once) when the current one is gone; the writer that took it, or None."""
        for _ in range(2):
            child = self._live_child()
            if child is None:
                return None
            if batch is not None:  # tracked until the writer confirms it
                child.unconfirmed.append(batch)
            if flush is not None:
                child.flushes[flush[0]] = flush[1]
            try:
                child.send(data)
                return child
            except OSError:  # died since the check: the next writer takes it
                if batch is not None:
                    child.unconfirmed.pop()  # never sent: not the dead writer's to lose
                if flush is not None:
                    child.flushes.pop(flush[0], None)
                self._retire(child)
        return None

    def _live_child(self) -> _Child | None:
        """The writer process, started again when it died (its next ``writer-start``
        reports the unclean stop)."""
        child = self._child
        if child is not None and child.alive:
            return child
        if child is not None:
            self._retire(child)
        if self._stopping:
            return None
        try:
            self._spawn()
        except WriterUnavailable as exc:
            log.warning("%s: records are counted as lost until it starts", exc)
            return None
        return self._child

    def _retire(self, child: _Child) -> None:
        if self._child is child:
            log.warning("audit writer process %d stopped (exit status %s): starting another",
                        child.proc.pid, child.proc.poll())
            self._retired_written += child.written
            self._retired_dropped += child.dropped
            self._child = None
            child.discard()
            # sent, never confirmed: counted; some may be in the log before the
            # unclean-shutdown gap the next writer records
            for _, batch in child.unconfirmed:
                count_by_kind(batch, self._losses, "writer-died")
            child.unconfirmed.clear()

    def _flush_marker(self, event: threading.Event) -> None:
        token = next(self._tokens)
        if self._deliver(frame([FLUSH, token]), flush=(token, event)) is None:
            event.set()  # not confirmed: flush() answers False

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is committed; False when the writer did
        not confirm it within ``timeout``."""
        mark = _FlushMark()
        self._queue.append(mark)
        self._wake.set()
        return mark.wait(timeout) and mark.ok

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued, stop the writer (``writer-stop``) and wait for it."""
        if self._thread is None:
            return
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        self._thread = None
        child = self._child
        if child is None:
            return
        pending = self._losses.take()
        if pending:  # losses counted after the last batch still go to the writer
            self._send([], pending)
        child.close(timeout)

    def stats(self) -> dict[str, int]:
        child = self._child
        queued = len(self._queue) + (child.queued if child else 0)
        return {"queued": queued, "written": self.written, "dropped": self.dropped}
