"""The sampling decision, made once per request before any span object exists.

The SDK's sampler is ``ParentBased(root=TraceIdRatioBased(ratio))``; asking it costs a
trace id, a ``SamplingResult`` and, for a request that is then dropped, a non-recording
span: a few microseconds on every request. :class:`RootDecision` reaches the same answer
from 64 random bits (``TraceIdRatioBased`` samples a trace id whose low 64 bits are below
its bound), so an unsampled request costs one ``getrandbits`` and a comparison. For a
sampled one the trace id the decision was made on is handed to the SDK through
:class:`DecidedTraceIds`, and the SDK's own sampler, consulted again when the root span
starts, agrees.

An incoming W3C ``traceparent`` decides by its sampled flag (:func:`incoming_sampled`);
a malformed one is ignored, as the W3C recommendation says, and the ratio decides.
"""

from __future__ import annotations

import re
import threading
from random import getrandbits

from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

__all__ = ["DecidedTraceIds", "RootDecision", "incoming_sampled"]

#: version-traceid-parentid-flags; a later version may append fields after a dash
_TRACEPARENT = re.compile(
    r"[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^ \t]*)?[ \t]*\Z")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def incoming_sampled(traceparent: str) -> bool | None:
    """The sampled flag of a ``traceparent`` header; None when the header is not valid
    (then it is ignored and the request is a new trace)."""
    match = _TRACEPARENT.match(traceparent)
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if (version == "ff" or (version == "00" and rest) or trace_id == _ZERO_TRACE
            or span_id == _ZERO_SPAN):
        return None
    return bool(int(flags, 16) & 1)


class RootDecision:
    """``TraceIdRatioBased(ratio)`` for a request that starts a trace, without a trace id
    for the requests it drops.

    The low 64 bits of the trace id are drawn as two halves, the upper one first: it alone
    decides unless it equals the bound's upper half, so a dropped request costs one
    ``getrandbits(32)`` (a small int; 64 bits take the slower arbitrary-size path)."""

    __slots__ = ("bound", "bound_high")

    def __init__(self, ratio: float) -> None:
        self.bound = TraceIdRatioBased.get_bound_for_rate(ratio)
        self.bound_high = self.bound >> 32

    def draw(self) -> int:
        """A trace id the ratio samples, or 0 when this request is not sampled."""
        high = getrandbits(32)
        if high > self.bound_high:
            return 0
        low = high << 32 | getrandbits(32)
        if low >= self.bound:
            return 0
        return (getrandbits(64) or 1) << 64 | low  # a trace id is never 0


class DecidedTraceIds(RandomIdGenerator):
    """The provider's id generator: the next root span in this thread gets the trace id
    its sampling decision was drawn on (:meth:`use`); every other id is random."""

    def __init__(self) -> None:
        self._next = threading.local()

    def use(self, trace_id: int) -> None:
        """Give ``trace_id`` to the next root span started in this thread."""
        self._next.trace_id = trace_id

    def generate_trace_id(self) -> int:
        trace_id: int = getattr(self._next, "trace_id", 0)
        if trace_id:
            self._next.trace_id = 0
            return trace_id
        return super().generate_trace_id()
