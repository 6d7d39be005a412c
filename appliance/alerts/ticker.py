"""The server's alert clock: a daemon thread calling ``AlertEngine.tick`` every
``alerts.tick_s`` seconds until stopped.

A plain thread rather than an APScheduler job: the scheduler's job store is persistent
(pickled references in the registry database) and its jobs are for work that must
survive a restart; the tick is stateless, since everything it acts on is in
``alerts.db``. One process per data directory ticks (the one that runs the scheduler).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("appliance.alerts")


class AlertTicker(threading.Thread):
    """Calls ``tick`` every ``every_s`` seconds; a failing tick is logged, not fatal."""

    def __init__(self, tick: Callable[[], object], every_s: float) -> None:
        super().__init__(name="alert-ticker", daemon=True)
        self.tick, self.every_s = tick, every_s
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.every_s):
            try:
                self.tick()
            except Exception:
                log.exception("alert tick failed; the next one retries")

    def stop(self, timeout: float = 5.0) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)
