"""Direct tests of the registry watcher: a generation change refreshes the repository,
side tasks run each tick, and neither a failing refresh nor a failing side task stops it."""

from __future__ import annotations

import threading
import time
from typing import Any

from appliance.registry import Registry
from appliance.registry.db import bump_generation, transaction
from appliance.runtime.watcher import RegistryWatcher


class Repo:
    def __init__(self, fail_first: bool = False) -> None:
        self.refreshes = 0
        self.fail_first = fail_first
        self.changed = threading.Event()

    def refresh(self) -> None:
        self.refreshes += 1
        if self.fail_first and self.refreshes == 1:
            raise RuntimeError("disk hiccup")
        self.changed.set()


def wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def bump(registry: Registry) -> None:
    with transaction(registry.db):
        bump_generation(registry.db)


def test_a_generation_change_refreshes_once(registry: Registry):
    repo = Repo()
    watcher = RegistryWatcher(registry.data_dir / "registry.db", repo, 0.02)  # type: ignore[arg-type]
    watcher.start()
    try:
        assert wait_for(lambda: watcher.seen >= 0)
        time.sleep(0.1)
        assert repo.refreshes == 0  # nothing changed yet
        bump(registry)
        assert repo.changed.wait(5)
        time.sleep(0.1)
        assert repo.refreshes == 1
    finally:
        watcher.stop()


def test_a_failed_refresh_is_retried_on_the_next_tick(registry: Registry, caplog):
    repo = Repo(fail_first=True)
    watcher = RegistryWatcher(registry.data_dir / "registry.db", repo, 0.02)  # type: ignore[arg-type]
    watcher.start()
    try:
        assert wait_for(lambda: watcher.seen >= 0)
        bump(registry)
        assert repo.changed.wait(5)
        assert repo.refreshes == 2
        assert any("registry refresh failed" in r.getMessage() for r in caplog.records)
    finally:
        watcher.stop()


def test_side_tasks_run_every_tick_and_their_failures_are_logged(registry: Registry, caplog):
    ticks: list[int] = []

    def side(db: Any) -> None:
        ticks.append(1)
        if len(ticks) == 2:
            raise ValueError("side task broke")

    watcher = RegistryWatcher(registry.data_dir / "registry.db", Repo(), 0.02,  # type: ignore[arg-type]
                              on_tick=side)
    watcher.start()
    try:
        assert wait_for(lambda: len(ticks) >= 5)
    finally:
        watcher.stop()
    assert any("side task failed" in r.getMessage() for r in caplog.records)
