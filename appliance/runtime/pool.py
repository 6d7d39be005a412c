"""A resizable pool of instance threads for one served version.

``concurrent.futures.ThreadPoolExecutor`` can neither shrink nor change its limit
without touching its private ``_max_workers``; the autoscaler needs both. Here each
instance is one thread taking work from a shared queue: :meth:`InstancePool.resize`
starts threads, or queues one stop marker per thread to retire (a retiring thread
finishes the work queued before its marker, so nothing in flight is dropped).
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["InstancePool"]

_STOP = None


class InstancePool:
    """``size`` worker threads named ``<prefix>-<n>``; :meth:`submit` returns a Future."""

    def __init__(self, size: int, prefix: str) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._prefix = prefix
        self._started = 0
        self.size = 0
        self._closed = False
        self.resize(size)

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        """Run ``fn(*args)`` on the next free instance thread."""
        if self._closed:
            raise RuntimeError(f"instance pool {self._prefix} is closed")
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put((future, fn, args))
        return future

    def resize(self, size: int) -> None:
        """Run ``size`` (at least 1) threads from now on; extra ones retire when idle."""
        size = max(1, size)
        with self._lock:
            if self._closed:
                return
            for _ in range(size - self.size):
                self._started += 1
                threading.Thread(target=self._work, name=f"{self._prefix}-{self._started}",
                                 daemon=True).start()
            for _ in range(self.size - size):
                self._queue.put(_STOP)
            self.size = size

    def threads(self) -> int:
        """Instance threads alive now (retiring ones included until they exit)."""
        return sum(1 for t in threading.enumerate() if t.name.startswith(self._prefix + "-"))

    def close(self) -> None:
        """Stop every thread once the work queued so far is done; refuse new work."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in range(self.size):
                self._queue.put(_STOP)
            self.size = 0

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to the awaiting request
                future.set_exception(exc)
