"""Adaptive scaling: steer a model's instances and batch delay towards its p95 target.

Every ``interval`` seconds the controller looks at the latencies observed since the last
tick. Above ``1.2 × target`` for two ticks in a row it adds an instance (or, at the
instance limit, halves the batch delay); below ``0.5 × target`` for three ticks it removes
one (or doubles the delay while traffic is high, for bigger batches). After any change it
waits two ticks before the next one. The dead band between the thresholds and the
cool-down keep it from flapping. Every decision is logged and kept on the model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .execution import Execution

log = logging.getLogger(__name__)

HIGH, LOW = 1.2, 0.5
UP_TICKS, DOWN_TICKS, COOLDOWN_TICKS = 2, 3, 2


@dataclass
class ScaleState:
    instances: int
    delay_us: int
    above: int = 0
    below: int = 0
    cooldown: int = 0
    decisions: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=20))


@dataclass
class Bounds:
    target_ms: float
    min_instances: int = 1
    max_instances: int = 4
    min_delay_us: int = 100
    max_delay_us: int = 10000
    batching: bool = False


def decide(state: ScaleState, p95_ms: float | None, rate: float, bounds: Bounds) -> str | None:
    """Update ``state`` from one tick's observations; return what changed, if anything."""
    if state.cooldown > 0:
        state.cooldown -= 1
        return None
    if p95_ms is None:  # too few samples to judge
        state.above = state.below = 0
        return None
    state.above = state.above + 1 if p95_ms > HIGH * bounds.target_ms else 0
    state.below = state.below + 1 if p95_ms < LOW * bounds.target_ms else 0
    action = None
    if state.above >= UP_TICKS:
        if state.instances < bounds.max_instances:
            state.instances += 1
            action = f"instances -> {state.instances}"
        elif bounds.batching and state.delay_us > bounds.min_delay_us:
            state.delay_us = max(bounds.min_delay_us, state.delay_us // 2)
            action = f"max_queue_delay_us -> {state.delay_us}"
    elif state.below >= DOWN_TICKS:
        busy = rate > 50 * state.instances
        if bounds.batching and busy and state.delay_us < bounds.max_delay_us:
            state.delay_us = min(bounds.max_delay_us, state.delay_us * 2)
            action = f"max_queue_delay_us -> {state.delay_us}"
        elif state.instances > bounds.min_instances:
            state.instances -= 1
            action = f"instances -> {state.instances}"
    if action is not None:
        state.above = state.below = 0
        state.cooldown = COOLDOWN_TICKS
        state.decisions.append({"at": time.time(), "action": action,
                                "p95_ms": round(p95_ms, 3), "rate": round(rate, 1)})
    return action


class ScalingController:
    """Runs :func:`decide` for every autoscaled model of a repository on a thread."""

    def __init__(self, repository: Any, interval: float = 2.0) -> None:
        self.repository = repository
        self.interval = interval
        self.states: dict[tuple[str, str], ScaleState] = {}
        self._seen: dict[tuple[str, str], int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="autoscaler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:  # the controller must never take the server down
                log.exception("autoscaler tick failed")

    def tick(self) -> None:
        for served in self.repository.index():
            execution = served.execution
            if execution is None or not execution.serving.autoscale:
                continue
            key = (served.record.model, served.record.version)
            cfg = execution.serving
            batcher = execution.batcher
            state = self.states.setdefault(key, ScaleState(
                execution.instances, batcher.config.max_queue_delay_us if batcher else 0))
            samples = self._new_samples(key, execution)
            p95 = float(np.percentile(samples, 95) * 1000) if len(samples) >= 20 else None
            bounds = Bounds(cfg.p95_target_ms, cfg.min_instances, cfg.max_instances,
                            cfg.min_queue_delay_us, cfg.max_queue_delay_us_limit,
                            batching=batcher is not None)
            action = decide(state, p95, len(samples) / self.interval, bounds)
            if action is None:
                continue
            execution.resize(state.instances)
            if batcher is not None:
                batcher.config.max_queue_delay_us = state.delay_us
            execution.decisions = state.decisions
            log.info("autoscale %s version %s: %s (p95 %.1f ms, target %.1f ms)", key[0],
                     key[1], action, p95 or 0, cfg.p95_target_ms)

    def _new_samples(self, key: tuple[str, str], execution: Execution) -> np.ndarray:
        """The latencies recorded since the last tick (at most the window)."""
        window = execution.latencies
        total = window.count
        samples = window.since(self._seen.get(key, 0))
        self._seen[key] = total
        return samples
