"""The probe runner: replay each served version's golden examples on a schedule.

Every ``tick_s`` the probe thread looks at the served versions. A ready version whose
package declares golden examples is probed when it is first seen (a new or reloaded
version), then every ``probe_interval_s`` while it has production traffic, and every
``idle_interval_s`` while it has none since its last probe (nothing else would notice
it answering wrong). Production traffic is read off the production counters
(:mod:`appliance.monitoring.counters`) when metrics are on, else off the execution's
latency ring count (which the probes' own requests bump before the runner notes it).

A probe sends each example through the real data plane, ``DataPlane.infer(...,
traffic="synthetic")``: the request is decoded, validated and executed like any other,
the metrics count it as synthetic (never in Triton's production series) and drift
ignores it. The coroutine runs on the server's event loop (:meth:`ProbeRunner.attach`),
where the executions and batchers live; until a loop is attached nothing is probed.
The answer's outputs are compared with the expected ones (:func:`~.golden.compare`):
a model that answers 200 with wrong numbers fails its probe.

Results are kept in memory, the latest per version (:class:`ProbeResult`), and read by
``GET /v1/probes``, the metrics scrape (:mod:`.exposure`) and the alert engine. All
times come from the injectable ``clock`` (epoch seconds), so tests drive the schedule
by calling :meth:`ProbeRunner.tick`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ApplianceError
from .golden import compare
from .settings import ProbeSettings
from .wire import decode_answer, encode_example

if TYPE_CHECKING:
    from ..dataplane import DataPlane
    from ..runtime.repository import ModelRepository
    from ..runtime.served import ServedVersion

log = logging.getLogger(__name__)

__all__ = ["PROBE_CALLER", "ProbeResult", "ProbeRunner", "golden_of"]

#: the caller the audit log records for probe requests
PROBE_CALLER = "appliance-probe"
Key = tuple[str, str]
#: how often a probe waiting for its answer looks whether the runner is stopping
_POLL_S = 0.1


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The latest probe of one version: every example matched (``ok``) or why not."""

    model: str
    version: str
    ok: bool
    detail: str
    at: float  # clock() when the probe started
    duration_s: float
    examples: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _Schedule:
    served_id: int  # a reloaded version is a new ServedVersion: probe it at once
    last_at: float
    traffic_seen: int


def golden_of(served: ServedVersion) -> list[dict[str, Any]]:
    """The version's golden examples (from its package manifest; none for ``models add``)."""
    golden = (served.record.manifest or {}).get("golden") or []
    return list(golden)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class ProbeRunner:
    """Probes the served versions of ``repository`` through ``dataplane``."""

    def __init__(self, repository: ModelRepository, dataplane: DataPlane,
                 settings: ProbeSettings | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.repository = repository
        self.dataplane = dataplane
        self.settings = settings or ProbeSettings()
        self.clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick_lock = threading.Lock()  # held across probes: never on the event loop
        self._lock = threading.Lock()  # results and schedule: held for a copy, no longer
        self._results: dict[Key, ProbeResult] = {}
        self._schedule: dict[Key, _Schedule] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life ----------------------------------------------------------------------------
    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run probe requests on ``loop``, the server's event loop."""
        self._loop = loop

    @property
    def attached(self) -> bool:
        return self._loop is not None and not self._loop.is_closed()

    def start(self) -> None:
        """Tick every ``tick_s`` from a daemon thread."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="probe-runner",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.timeout_s + 5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.settings.tick_s):
            try:
                self.tick()
            except Exception:  # a broken tick must not end the probes
                log.exception("probe tick failed; the next one retries")

    # -- the schedule --------------------------------------------------------------------
    def tick(self) -> list[ProbeResult]:
        """Probe every version that is due now; the results of this tick."""
        if not self.attached:
            return []
        if _running_loop() is self._loop:
            raise RuntimeError("ProbeRunner.tick blocks on the event loop's answers: call "
                               "it from a thread, never from the loop itself")
        with self._tick_lock:
            done: list[ProbeResult] = []
            live: set[Key] = set()
            for served in self.repository.index():
                golden = golden_of(served)
                if not served.ready or not golden:
                    continue
                key = (served.record.model, served.record.version)
                live.add(key)
                now = self.clock()
                if not self._due(key, served, now):
                    continue
                result = self._probe(served, golden, now)
                if result is None:
                    break
                self._note(key, result)
                with self._lock:
                    self._schedule[key] = _Schedule(id(served), now, self.traffic(served))
                done.append(result)
            with self._lock:
                for key in set(self._schedule) - live:
                    self._schedule.pop(key, None)
                    self._results.pop(key, None)
            return done

    def _due(self, key: Key, served: ServedVersion, now: float) -> bool:
        schedule = self._schedule.get(key)
        if schedule is None or schedule.served_id != id(served):
            return True
        return now >= schedule.last_at + self.interval(served, schedule)

    def interval(self, served: ServedVersion, schedule: _Schedule) -> float:
        """``probe_interval_s`` after production traffic, else ``idle_interval_s``."""
        busy = self.traffic(served) != schedule.traffic_seen
        return self.settings.probe_interval_s if busy else self.settings.idle_interval_s

    def traffic(self, served: ServedVersion) -> int:
        """A count that grows with the version's production requests (see the module)."""
        monitor = self.dataplane.monitor
        if monitor is not None and monitor.metrics:
            stats = monitor.versions.get((served.record.model, served.record.version))
            if stats is not None:
                return int(stats.production.ok + sum(stats.production.failed))
        execution = served.execution
        return execution.latencies.count if execution is not None else 0

    def next_at(self, model: str, version: str) -> float | None:
        """When the version's next probe is due (None: at the next tick)."""
        key = (model, version)
        schedule = self._schedule.get(key)
        served = next((s for s in self.repository.index()
                       if (s.record.model, s.record.version) == key), None)
        if schedule is None or served is None or schedule.served_id != id(served):
            return None
        return schedule.last_at + self.interval(served, schedule)

    # -- one probe -----------------------------------------------------------------------
    def _probe(self, served: ServedVersion, golden: Sequence[Mapping[str, Any]],
               now: float) -> ProbeResult | None:
        """Replay ``golden`` on the event loop and wait; None when stopped meanwhile
        (shutdown closes the services on the loop itself: waiting on would hang it)."""
        record = served.record
        started = time.perf_counter()
        limit = started + self.settings.timeout_s * len(golden) + 1
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(self._replay(served, golden), self._loop)
        while not concurrent.futures.wait([future], timeout=_POLL_S).done:
            if self._stop.is_set() or time.perf_counter() >= limit:
                future.cancel()
                if self._stop.is_set():
                    return None
                why: str | None = (f"no answer within {self.settings.timeout_s:g} s per "
                                   "example ([probes] timeout_s)")
                break
        else:
            try:
                why = future.result()
            except Exception as exc:  # the event loop went away, or the task was cancelled
                why = f"the probe could not run: {type(exc).__name__}: {exc}"
        return ProbeResult(record.model, record.version, why is None,
                           why or f"{len(golden)} golden example(s) matched", now,
                           time.perf_counter() - started, len(golden))

    async def _replay(self, served: ServedVersion,
                      golden: Sequence[Mapping[str, Any]]) -> str | None:
        """Why the version fails its golden examples; None when every one matches."""
        record, settings = served.record, self.settings
        for i, example in enumerate(golden):
            try:
                body, length = encode_example(example["inputs"], f"probe-{i}")
                answer, headers = await self.dataplane.infer(
                    record.model, record.version, body,
                    content_type="application/octet-stream", header_length=str(length),
                    timeout_ms=f"{settings.timeout_s * 1000:.0f}", caller=PROBE_CALLER,
                    traffic="synthetic")
                outputs = decode_answer(answer, headers)
            except ApplianceError as exc:
                return f"golden[{i}]: the request failed ({exc.status}): {exc.message}"
            except Exception as exc:  # the backend raised: that is what probes are for
                return f"golden[{i}]: the request failed: {type(exc).__name__}: {exc}"
            atol = settings.atol if example.get("atol") is None else float(example["atol"])
            for tensor in example["outputs"]:
                got, datatype = outputs.get(tensor["name"], (None, None))
                why = compare(tensor, got, datatype, atol, settings.rtol)
                if why is not None:
                    return f"golden[{i}]: {why}"
        return None

    def _note(self, key: Key, result: ProbeResult) -> None:
        with self._lock:
            before = self._results.get(key)
            self._results[key] = result
        if not result.ok and (before is None or before.ok):
            log.warning("probe of %s version %s failed: %s", *key, result.detail)
        elif result.ok and before is not None and not before.ok:
            log.info("probe of %s version %s passes again", *key)

    # -- what others read ----------------------------------------------------------------
    def results(self) -> list[ProbeResult]:
        """The latest result of every probed version."""
        with self._lock:
            return list(self._results.values())

    def result(self, model: str, version: str) -> ProbeResult | None:
        with self._lock:
            return self._results.get((model, version))
