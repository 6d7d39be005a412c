"""How one loaded version executes requests: inline, on its instance pool, or through
its dynamic batcher; with deadlines, admission control and latency statistics.

:meth:`Execution.run` is the one place that decides. The inline path (cheap models, no
batching, one instance) costs a function call: no thread hop, no queue. Everything else
goes through a bounded number of worker threads (``instances``), so a slow model cannot
take every thread of the process. Every request's latency, inline ones included, goes
into the version's :class:`~.latency.LatencyWindow`. A caller that passes ``timing`` (a
list whose first two slots this fills) gets the request's queue and compute seconds back
for metrics and Server-Timing (appliance/monitoring/recorder.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..backend import LoadedModel
from ..errors import BadRequest, GatewayTimeout, ServiceUnavailable
from ..settings import ModelServing
from .batcher import BatchConfig, DynamicBatcher
from .latency import LatencyWindow
from .pool import InstancePool


class Execution:
    def __init__(self, name: str, model: LoadedModel, serving: ModelServing, *,
                 inline: bool, default_instances: int = 1) -> None:
        self.name = name
        self.model = model
        self.serving = serving
        self.instances = serving.instances or default_instances
        self.latencies = LatencyWindow()  # seconds, end to end, every request
        self.compute_s = 0.0  # moving average of one predict (or one batch), seconds
        self.decisions: Any = ()  # the autoscaler's recent decisions
        self.inflight = 0
        #: called with the rows of each dynamic batch executed (metrics), when set
        self.on_execution: Callable[[int], None] | None = None
        self.batcher: DynamicBatcher | None = None
        self._pool: InstancePool | None = None
        if serving.max_batch_size > 1:
            self.batcher = DynamicBatcher(name, model.predict, BatchConfig(
                max_batch_size=serving.max_batch_size,
                max_queue_delay_us=serving.max_queue_delay_us,
                preferred_batch_sizes=list(serving.preferred_batch_sizes),
                max_queue_size=serving.max_queue_size, instances=self.instances),
                on_batch=self._on_batch)
        self.inline = inline and self.batcher is None and self.instances <= 1
        if not self.inline and self.batcher is None:
            self._pool = InstancePool(self.instances, f"infer-{name}")

    def deadline(self, header_ms: str | None, parameters: Mapping[str, Any] | None) -> float | None:
        """The request's deadline (monotonic seconds) from the header, the request's
        ``timeout_ms`` parameter, or the model's default; None when there is none."""
        raw: Any = header_ms
        if raw is None and parameters:
            raw = parameters.get("timeout_ms")
        if raw is None:
            raw = self.serving.timeout_ms or None
        if raw is None:
            return None
        try:
            ms = float(raw)
        except (TypeError, ValueError):
            raise BadRequest(f"request timeout must be a number of milliseconds, got {raw!r}"
                             ) from None
        if not ms > 0 or ms == float("inf"):  # NaN fails the first test
            raise BadRequest("request timeout must be a positive, finite number of "
                             "milliseconds")
        return time.monotonic() + ms / 1000

    async def run(self, inputs: Mapping[str, np.ndarray], deadline: float | None = None,
                  timing: list[float] | None = None) -> dict[str, np.ndarray]:
        """Predict ``inputs`` inline, on the pool or through the batcher; the latency of
        every call (failed ones too) is recorded. ``timing[0]``, ``timing[1]`` get the
        queue and compute seconds of a successful call."""
        start = time.perf_counter()
        if self.inline:  # computed now, so a deadline cannot pass before compute
            try:
                outputs = self.model.predict(inputs)
            except BaseException:
                self.latencies.record(time.perf_counter() - start)
                raise
            elapsed = time.perf_counter() - start
            self.latencies.record(elapsed)
            if timing is not None:
                timing[1] = elapsed
            return outputs
        try:
            if self.batcher is not None:
                cfg = self.batcher.config
                self.shed_if_hopeless(self.batcher.queued_rows() / cfg.max_batch_size, deadline)
                outputs = await self.batcher.submit(inputs, deadline, timing)
            else:
                outputs = await self._on_pool(inputs, deadline, timing)
            if timing is not None:  # the rest of the wait was for an instance or a batch
                timing[0] = max(0.0, time.perf_counter() - start - timing[1])
            return outputs
        finally:
            self.latencies.record(time.perf_counter() - start)

    def pending(self) -> int:
        """Requests waiting for an instance or a batch now (for metrics): the batcher's
        queue, or the pool's requests beyond its instances (an approximation: the pool
        does not track how many of its requests are executing)."""
        if self.batcher is not None:
            return self.batcher.pending()
        return max(0, self.inflight - self.instances)

    def shed_if_hopeless(self, waiting: float, deadline: float | None) -> None:
        """Admission control: refuse now (503 + Retry-After) a request that would wait
        for ``waiting`` units of work ahead of it and still miss its deadline, rather
        than queue it and blow every deadline behind it."""
        if deadline is None or self.compute_s <= 0:
            return
        expected = time.monotonic() + (waiting / max(1, self.instances) + 1) * self.compute_s
        if expected > deadline:
            raise ServiceUnavailable(
                f"model {self.name} is overloaded: the expected wait "
                f"({(expected - time.monotonic()) * 1e3:.1f} ms) exceeds the request's "
                "deadline; retry shortly", headers={"Retry-After": "1"})

    def _on_batch(self, rows: int, seconds: float) -> None:
        self._observe(seconds)
        if self.on_execution is not None:
            self.on_execution(rows)

    def _observe(self, seconds: float) -> None:
        self.compute_s = seconds if self.compute_s == 0 else 0.8 * self.compute_s + 0.2 * seconds

    async def _on_pool(self, inputs: Mapping[str, np.ndarray], deadline: float | None,
                       timing: list[float] | None = None) -> dict[str, np.ndarray]:
        self.shed_if_hopeless(self.inflight, deadline)
        if self.inflight >= self.serving.max_queue_size:
            raise ServiceUnavailable(
                f"model {self.name} has {self.inflight} requests waiting "
                f"(max_queue_size {self.serving.max_queue_size}); retry shortly",
                headers={"Retry-After": "1"})
        self.inflight += 1
        try:
            assert self._pool is not None
            return await asyncio.wrap_future(self._pool.submit(self._predict_before, inputs,
                                                               deadline, timing))
        finally:
            self.inflight -= 1

    def _predict_before(self, inputs: Mapping[str, np.ndarray], deadline: float | None,
                        timing: list[float] | None = None) -> dict[str, np.ndarray]:
        if deadline is not None and time.monotonic() >= deadline:
            raise GatewayTimeout(f"request deadline passed while waiting for a free instance "
                                 f"of model {self.name}; nothing was computed")
        t0 = time.perf_counter()
        outputs = self.model.predict(inputs)
        seconds = time.perf_counter() - t0
        self._observe(seconds)
        if timing is not None:  # read by the event loop once the future is done
            timing[1] = seconds
        return outputs

    def resize(self, instances: int) -> None:
        self.instances = max(1, instances)
        if self.batcher is not None:
            self.batcher.resize(self.instances)
        elif self._pool is not None:
            self._pool.resize(self.instances)  # extra threads retire once idle

    def p95_ms(self) -> float | None:
        return self.latencies.percentile_ms(95)

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"instances": self.instances, "inline": self.inline}
        if self.batcher is not None:
            cfg = self.batcher.config
            info["dynamic_batching"] = {"max_batch_size": cfg.max_batch_size,
                                        "max_queue_delay_us": cfg.max_queue_delay_us,
                                        "preferred_batch_sizes": cfg.preferred_batch_sizes,
                                        "max_queue_size": cfg.max_queue_size}
        p95 = self.p95_ms()
        if p95 is not None:
            info["p95_ms"] = round(p95, 3)
        if self.serving.autoscale:
            info["autoscale"] = {"p95_target_ms": self.serving.p95_target_ms,
                                 "decisions": list(self.decisions)}
        return info

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        if self._pool is not None:
            self._pool.close()
