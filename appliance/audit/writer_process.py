"""The audit writer as a process of its own: ``python -m appliance.audit.writer_main``.

Building, hashing and inserting records costs the writer about 15 µs of CPU per record,
most of it Python holding the GIL; in the serving process that time is taken from the
event loop (and every hand-over of the GIL is a context switch on a shared core). In its
own process the same :class:`~.inference.InferenceAuditor` runs beside the server instead
of inside it; the serving process keeps only the hand-off queue and a feeder thread that
sends a batch at a time (:class:`~.feeder.AuditFeeder`). Nothing about the log changes:
records, gap records, ``writer-start``/``writer-stop``, the loss file and the SIEM
forwarders are the in-process writer's, run here.

The two talk over the child's stdin and stdout in frames: a 4-byte little-endian length,
then a msgpack array whose first element says what it is (:data:`BATCH` ...). The child
answers ``READY`` once its ``writer-start`` is written (or failed and was counted), then
``STATS`` after each drain, ``FLUSHED`` for each flush and ``STOPPED`` at the end; each
``STATS`` and ``FLUSHED`` names the last batch whose records are all committed (or counted
as lost), so the feeder knows which batches a writer that dies took with it. Its
log lines travel as ``LOG`` frames, so they appear in the server's own log format.

The child ignores SIGINT and SIGTERM (a terminal's Ctrl-C or systemd's stop reaches the
whole group): it stops when told, or when its stdin closes. A stdin that closes without
``STOP`` means the serving process died: a ``gap`` record says that the records it still
held (at most a batch window) may be lost, then the child stops cleanly.
"""

from __future__ import annotations

import logging
import signal
import struct
import sys
import threading
from pathlib import Path
from typing import IO, Any

import msgspec

_LEN = struct.Struct("<I")
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode

# serving process -> writer
CONFIG, BATCH, FLUSH, STOP = "config", "batch", "flush", "stop"
# writer -> serving process
READY, STATS, FLUSHED, STOPPED, LOG = "ready", "stats", "flushed", "stopped", "log"


def frame(message: list[Any]) -> bytes:
    """``message`` framed for the pipe."""
    payload = _encode(message)
    return _LEN.pack(len(payload)) + payload


def read_frame(stream: IO[bytes]) -> list[Any] | None:
    """The next message, or None at the end of the stream (or a torn last frame)."""
    head = stream.read(_LEN.size)
    if len(head) < _LEN.size:
        return None
    (size,) = _LEN.unpack(head)
    payload = stream.read(size)
    if len(payload) < size:
        return None
    message = _decode(payload)
    return message if isinstance(message, list) and message else None


class _Replies:
    """Frames to the serving process, from any thread of the child."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def send(self, message: list[Any]) -> None:
        data = frame(message)
        with self.lock:
            try:
                self.stream.write(data)
                self.stream.flush()
            except (OSError, ValueError):  # the serving process is gone: nobody to tell
                pass


class _LogFrames(logging.Handler):
    def __init__(self, replies: _Replies) -> None:
        super().__init__()
        self.replies = replies

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            self.replies.send([LOG, record.levelno, record.name, text])
        except Exception:  # logging must never take the writer down
            self.handleError(record)


def run(stdin: IO[bytes], stdout: IO[bytes]) -> int:
    """Serve one feeder until it says stop or goes away; the exit status."""
    from .forward import SyslogForwarder
    from .inference import InferenceAuditor
    from .log import AuditLog
    from .settings import AuditSettings

    replies = _Replies(stdout)
    root = logging.getLogger()
    root.handlers[:] = [_LogFrames(replies)]
    first = read_frame(stdin)
    if first is None or first[0] != CONFIG:
        return 2
    _, data_dir, raw_settings, level = first
    root.setLevel(int(level))
    settings = msgspec.convert(raw_settings, AuditSettings)
    audit_log = AuditLog(Path(data_dir), defer_errors=True)  # writes only: nothing to sign
    forwarders = [SyslogForwarder(t.host, t.port, t.transport, t.format, t.ca_file,
                                  queue_max=t.queue_max) for t in settings.forward]
    for forwarder in forwarders:
        audit_log.add_sink(forwarder)
    writer = InferenceAuditor(audit_log, batch_window_ms=settings.batch_window_ms,
                              batch_size=settings.batch_size, queue_max=settings.queue_max)

    # the last batch taken in, and the last one known committed (or counted as lost):
    # every batch up to ``received`` once the queue is seen empty after a drain
    seqs = {"received": 0, "confirmed": 0}

    def report() -> None:
        received = seqs["received"]  # read before the queue: batches up to it were queued
        if not writer._queue:
            seqs["confirmed"] = received
        replies.send([STATS, writer.written, writer.dropped, len(writer._queue),
                      seqs["confirmed"]])

    writer.after_drain = report
    writer.start()
    replies.send([READY, writer.writer_id])
    told_to_stop = False
    while (message := read_frame(stdin)) is not None:
        kind = message[0]
        if kind == BATCH:
            _, seq, items, losses = message
            if losses:
                writer.add_losses(losses)
            writer.extend(items)
            seqs["received"] = seq
        elif kind == FLUSH:
            received = seqs["received"]
            if writer.flush(timeout=60):
                seqs["confirmed"] = max(seqs["confirmed"], received)
            replies.send([FLUSHED, message[1], writer.written, writer.dropped,
                          seqs["confirmed"]])
        elif kind == STOP:
            told_to_stop = True
            break
    if not told_to_stop:
        writer.record_event("gap", "appliance", {
            "reason": "feeder-vanished", "writer": writer.writer_id,
            "detail": "the serving process stopped without stopping its audit writer (a "
                      "crash or SIGKILL): the inference records it still held, at most "
                      f"its last batch window ({settings.batch_window_ms} ms), may be lost",
            "max_lost_window_ms": settings.batch_window_ms})
    writer.close()
    for forwarder in forwarders:
        forwarder.close()
    audit_log.close(checkpoint=False)
    replies.send([STOPPED, writer.written, writer.dropped])
    return 0


def main() -> int:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    return run(sys.stdin.buffer, sys.stdout.buffer)
