"""The request path's tracing: :class:`RequestTracer` decides, :class:`RequestTrace`
records.

The inference front calls :meth:`RequestTracer.begin` once per request. It returns None
for a request that is not sampled (the default 999 in 1000), and everything after is
``if trace is not None``: no span, context or attribute object is made for it.

A sampled request gets a :class:`RequestTrace`: its root (server) span is started at
once, so the response can carry its ``traceparent``; the phases are marked with
``perf_counter`` readings (the data plane's ``timing`` list already holds queue and
compute seconds, :mod:`appliance.monitoring.recorder`), and the child spans are made in
:meth:`RequestTrace.finish`, after the response is sent, with explicit start and end
times::

    POST /v2/models/{name}/infer     server span: method, route, status, model attributes
    ├── auth                         authenticate + authorize
    ├── route                        resolving the version that answers
    ├── decode                       decode and validate against the signature
    ├── queue                        waiting for an instance (pool) - not for inline models
    ├── batch                        a dynamically batched model: queue + its batch's run
    │   ├── queue
    │   └── compute
    ├── compute                      predict (unbatched models)
    └── encode                       select outputs, encode the response

Model attributes: ``appliance.model``, ``appliance.version``, ``appliance.stage``,
``appliance.traffic``; ``appliance.batch_size`` (the request's rows) on the batch span.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .sampling import DecidedTraceIds, RootDecision, incoming_sampled

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from ..runtime.execution import Execution
    from ..runtime.served import ServedVersion

__all__ = ["RequestTrace", "RequestTracer"]

ROUTES = {False: "/v2/models/{name}/infer",
          True: "/v2/models/{name}/versions/{version}/infer"}
_EMPTY = Context()  # a root span's parent: no ambient context leaks into a new trace


class RequestTracer:
    """Starts the trace of a sampled request; None for the others."""

    def __init__(self, tracer: Tracer, ids: DecidedTraceIds, sample_ratio: float,
                 shutdown: Callable[[], None]) -> None:
        self.tracer = tracer
        self.sample_ratio = sample_ratio
        self._ids = ids
        self._root = RootDecision(sample_ratio)
        self._propagator = TraceContextTextMapPropagator()
        self._shutdown = shutdown

    def begin(self, traceparent: str | None, tracestate: str | None, method: str,
              versioned: bool) -> RequestTrace | None:
        """The trace of one inference request, or None when it is not sampled: an
        incoming ``traceparent`` decides by its flag, else the ratio does."""
        if traceparent is not None:
            sampled = incoming_sampled(traceparent)
            if sampled is not None:
                if not sampled:
                    return None
                carrier = {"traceparent": traceparent}
                if tracestate is not None:
                    carrier["tracestate"] = tracestate
                return self._start(self._propagator.extract(carrier, _EMPTY), 0, method,
                                   versioned)
        trace_id = self._root.draw()
        if not trace_id:
            return None
        return self._start(_EMPTY, trace_id, method, versioned)

    def _start(self, parent: Context, trace_id: int, method: str,
               versioned: bool) -> RequestTrace | None:
        perf, now = time.perf_counter(), time.time_ns()
        if trace_id:
            self._ids.use(trace_id)
        route = ROUTES[versioned]
        span = self.tracer.start_span(
            f"{method} {route}", context=parent, kind=SpanKind.SERVER, start_time=now,
            attributes={"http.request.method": method, "http.route": route})
        if not span.is_recording():  # the SDK's sampler has the last word
            return None
        return RequestTrace(self.tracer, span, perf, now)

    def shutdown(self) -> None:
        """Export what is queued (bounded by ``export_timeout_s``) and stop the exporter."""
        self._shutdown()


class RequestTrace:
    """One sampled request: phase marks now, child spans at :meth:`finish`."""

    __slots__ = ("_attributes", "_auth_end", "_context", "_encoded", "_error", "_execution",
                 "_ns0", "_perf0", "_route", "_rows", "_timing", "_tracer", "span",
                 "traceparent")

    def __init__(self, tracer: Tracer, span: Span, perf0: float, ns0: int) -> None:
        self._tracer = tracer
        self.span = span
        self._context = set_span_in_context(span, _EMPTY)
        self._perf0, self._ns0 = perf0, ns0
        ctx = span.get_span_context()
        #: the response's ``traceparent``: how a client finds this trace
        self.traceparent = (f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-"
                            f"{int(ctx.trace_flags):02x}").encode()
        self._attributes: dict[str, Any] | None = None
        self._auth_end: float | None = None
        self._route: tuple[float, float] | None = None
        self._timing: list[float] | None = None
        self._execution: Execution | None = None
        self._rows = 0
        self._encoded = 0.0
        self._error: BaseException | None = None

    # -- marks, on the request path -------------------------------------------------
    def authenticated(self) -> None:
        """The caller is authenticated and authorized."""
        self._auth_end = time.perf_counter()

    def routed(self, served: ServedVersion, traffic: str, started: float) -> None:
        """The version that answers is known (the data plane began at ``started``)."""
        self._route = (started, time.perf_counter())
        record = served.record
        self._attributes = {"appliance.model": record.model,
                            "appliance.version": record.version,
                            "appliance.stage": record.stage, "appliance.traffic": traffic}

    def executed(self, execution: Execution, arrays: Mapping[str, Any],
                 timing: list[float]) -> None:
        """The response is encoded; ``timing`` is ``[queue_s, compute_s, started,
        before_execution]`` as the execution filled it."""
        self._encoded = time.perf_counter()
        self._execution, self._timing = execution, timing
        if execution.batcher is not None:
            first = next(iter(arrays.values()), None)
            self._rows = int(first.shape[0]) if first is not None and first.ndim else 1

    def failed(self, exc: BaseException) -> None:
        """The request failed with ``exc`` (its answer's status decides the span's)."""
        self._error = exc

    # -- after the response is sent -------------------------------------------------
    def finish(self, status: int) -> None:
        """Make the child spans and end the root span with the response ``status``."""
        end = time.perf_counter()
        attrs = self._attributes
        root = self.span
        if attrs is not None:
            root.set_attributes(attrs)
        root.set_attribute("http.response.status_code", status)
        self._child("auth", self._perf0, self._auth_end or end)
        if self._route is not None:
            self._child("route", *self._route, attrs)
        timing, execution = self._timing, self._execution
        if timing is not None and execution is not None and self._route is not None:
            queue, compute, _, before = timing
            run_end = before + queue + compute
            self._child("decode", self._route[1], before)
            parent = self._context
            if execution.batcher is not None:
                batch = self._child("batch", before, run_end,
                                    {**(attrs or {}), "appliance.batch_size": self._rows})
                parent = set_span_in_context(batch, _EMPTY)
            if not execution.inline:
                self._child("queue", before, before + queue, attrs, parent)
            self._child("compute", before + queue, run_end, attrs, parent)
            self._child("encode", run_end, self._encoded, attrs)
        if status >= 500:  # a client's error (4xx) is not the server span's error
            error = self._error
            root.set_attribute("error.type", type(error).__name__ if error else str(status))
            root.set_status(Status(StatusCode.ERROR, str(error) if error else None))
        root.end(end_time=self._ns(end))

    def _child(self, name: str, start: float, end: float,
               attributes: Mapping[str, Any] | None = None,
               parent: Context | None = None) -> Span:
        span = self._tracer.start_span(name, context=parent or self._context,
                                       start_time=self._ns(start), attributes=attributes)
        span.end(end_time=self._ns(max(start, end)))
        return span

    def _ns(self, perf: float) -> int:
        return self._ns0 + int((perf - self._perf0) * 1e9)

