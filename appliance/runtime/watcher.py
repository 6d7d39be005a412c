"""Pick up registry changes made by other processes (the CLI, a scheduled promotion).

Every write that changes what should be served bumps ``registry_state.generation`` in
the same transaction; this thread reads that one row every ``interval`` seconds on its
own connection and calls :meth:`ModelRepository.refresh` when it moved. Nothing here is
on the request path.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..registry.db import generation, open_database
from .repository import ModelRepository

log = logging.getLogger(__name__)


class RegistryWatcher:
    def __init__(self, db_path: Path, repository: ModelRepository, interval: float,
                 on_tick: Callable[[Any], object] | None = None) -> None:
        self.db_path = db_path
        self.on_tick = on_tick  # e.g. copy registry events into the audit chain
        self.repository = repository
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="registry-watcher", daemon=True)
        self.seen = -1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        db = open_database(self.db_path)
        try:
            self.seen = generation(db)
            self._tick_extra(db)
            while not self._stop.wait(self.interval):
                self._tick_extra(db)
                try:
                    current = generation(db)
                    if current != self.seen:
                        log.info("registry changed (generation %d -> %d): refreshing",
                                 self.seen, current)
                        self.repository.refresh()
                        self.seen = current
                except Exception:  # keep watching: a failed refresh is retried next tick
                    log.exception("registry refresh failed")
        finally:
            db.conn.close()

    def _tick_extra(self, db: Any) -> None:
        if self.on_tick is None:
            return
        try:
            self.on_tick(db)
        except Exception:  # never stop watching the registry because of a side task
            log.exception("registry watcher side task failed")
