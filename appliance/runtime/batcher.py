"""Dynamic batching with Triton's semantics, attached to a loaded version.

Requests whose first dimension is the batch wait at most ``max_queue_delay_us`` to be
joined with others (up to ``max_batch_size`` rows, dispatching early at a preferred batch
size), run as one ``predict`` on one of ``instances`` worker threads, and are split back
in order: each caller gets exactly its own rows. The queue is bounded: past
``max_queue_size`` waiting requests a new one is refused with 503 and ``Retry-After``.
A request whose deadline has passed before its batch runs is answered 504 without
compute.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import BadRequest, GatewayTimeout, ServiceUnavailable
from .pool import InstancePool

Predict = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class BatchConfig:
    max_batch_size: int = 0  # 0 = batching off
    max_queue_delay_us: int = 500
    preferred_batch_sizes: list[int] = field(default_factory=list)
    max_queue_size: int = 1024
    instances: int = 1


@dataclass
class _Pending:
    inputs: Mapping[str, np.ndarray]
    rows: int
    future: asyncio.Future[dict[str, np.ndarray]]
    deadline: float | None  # time.monotonic() seconds
    enqueued: float
    timing: list[float] | None = None  # [1] gets the batch's compute seconds (metrics)


class DynamicBatcher:
    def __init__(self, name: str, predict: Predict, config: BatchConfig,
                 on_batch: Callable[[int, float], None] | None = None) -> None:
        self.name = name
        self.predict = predict
        self.config = config
        self.on_batch = on_batch  # (rows, compute seconds) for metrics and scaling
        self._queue: deque[_Pending] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._running = 0
        self._pool = InstancePool(config.instances, f"batch-{name}")

    # -- public --------------------------------------------------------------------
    async def submit(self, inputs: Mapping[str, np.ndarray], deadline: float | None = None,
                     timing: list[float] | None = None) -> dict[str, np.ndarray]:
        rows = _rows(inputs)
        if rows > self.config.max_batch_size:
            raise BadRequest(f"batch of {rows} rows exceeds max_batch_size "
                             f"{self.config.max_batch_size} of model {self.name}: split it")
        if len(self._queue) >= self.config.max_queue_size:
            raise ServiceUnavailable(
                f"model {self.name} queue is full ({self.config.max_queue_size} waiting); "
                "retry shortly", headers={"Retry-After": "1"})
        loop = asyncio.get_running_loop()
        self._ensure_task()
        pending = _Pending(inputs, rows, loop.create_future(), deadline, time.monotonic(),
                           timing)
        self._queue.append(pending)
        assert self._wakeup is not None
        self._wakeup.set()
        return await pending.future

    def resize(self, instances: int) -> None:
        """Change the number of concurrent executions (adaptive scaling)."""
        self.config.instances = max(1, instances)
        self._pool.resize(self.config.instances)

    def pending(self) -> int:
        """Requests waiting for a batch now."""
        return len(self._queue)

    def queued_rows(self) -> int:
        return sum(p.rows for p in self._queue) + self._running * self.config.max_batch_size

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for pending in self._queue:
            if not pending.future.done():
                pending.future.set_exception(ServiceUnavailable(
                    f"model {self.name} was unloaded", headers={"Retry-After": "1"}))
        self._queue.clear()
        self._pool.close()

    # -- the batching loop ----------------------------------------------------------
    def _ensure_task(self) -> None:
        if self._task is None or self._task.done():
            self._wakeup = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self._running >= self.config.instances:
                self._wakeup.clear()  # every instance is busy: wait for one to finish
                await self._wakeup.wait()
                continue
            await self._wait_for_batch()
            batch = self._take_batch()
            if batch:
                self._running += 1
                asyncio.get_running_loop().create_task(self._execute(batch))

    async def _wait_for_batch(self) -> None:
        """Wait until a full or preferred batch is queued or the oldest request has
        waited ``max_queue_delay_us``."""
        assert self._wakeup is not None
        cfg = self.config
        oldest = self._queue[0].enqueued
        while True:
            queued = sum(p.rows for p in self._queue)
            if queued >= cfg.max_batch_size or queued in cfg.preferred_batch_sizes:
                return
            remaining = oldest + cfg.max_queue_delay_us / 1e6 - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _take_batch(self) -> list[_Pending]:
        now = time.monotonic()
        batch: list[_Pending] = []
        rows = 0
        while self._queue:
            head = self._queue[0]
            if head.deadline is not None and head.deadline <= now:
                self._queue.popleft()
                if not head.future.done():
                    head.future.set_exception(GatewayTimeout(
                        f"request deadline passed after {(now - head.enqueued) * 1e3:.1f} ms "
                        f"in the queue of model {self.name}; nothing was computed"))
                continue
            if batch and (rows + head.rows > self.config.max_batch_size
                          or not _compatible(batch[0].inputs, head.inputs)):
                break
            batch.append(self._queue.popleft())
            rows += head.rows
        return batch

    async def _execute(self, batch: list[_Pending]) -> None:
        try:
            merged = _concat([p.inputs for p in batch])
            t0 = time.perf_counter()
            outputs = await asyncio.wrap_future(self._pool.submit(self.predict, merged))
            seconds = time.perf_counter() - t0
            if self.on_batch is not None:
                self.on_batch(sum(p.rows for p in batch), seconds)
            offset = 0
            for p in batch:  # split back in order: each caller gets its own rows
                part = {k: v[offset:offset + p.rows] for k, v in outputs.items()}
                offset += p.rows
                if p.timing is not None:
                    p.timing[1] = seconds
                if not p.future.done():
                    p.future.set_result(part)
        except Exception as exc:
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
        finally:
            self._running -= 1
            assert self._wakeup is not None
            self._wakeup.set()


def _rows(inputs: Mapping[str, np.ndarray]) -> int:
    shapes = {a.shape[0] if a.ndim else 1 for a in inputs.values()}
    if len(shapes) != 1:
        raise BadRequest("every input of a batched model must have the same first "
                         f"(batch) dimension; got {sorted(shapes)}")
    return shapes.pop()


def _compatible(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> bool:
    return all(a[k].shape[1:] == b[k].shape[1:] and a[k].dtype == b[k].dtype for k in a)


def _concat(parts: list[Mapping[str, np.ndarray]]) -> dict[str, Any]:
    if len(parts) == 1:
        return dict(parts[0])
    return {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}
