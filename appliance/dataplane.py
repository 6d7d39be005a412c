"""The Open Inference Protocol data plane, independent of HTTP.

The REST layer hands it bytes and headers; it decodes, validates against the model's
signature, predicts (inline for models measured cheap, in a worker thread otherwise)
and encodes the response. Nothing here touches the registry database or the disk.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import BadRequest, UnsupportedMediaType
from .monitoring.counters import PRODUCTION, TEST, check_traffic
from .monitoring.readiness import failing_production
from .monitoring.recorder import RequestMonitor
from .protocol.codec import (
    decode_header,
    decode_raw_binary,
    decode_tensors,
    encode_response,
    requested_outputs,
)
from .protocol.types import InferenceRequest, RequestInput
from .registry.models import version_key
from .routing.policies import RouteContext
from .routing.policy import RouteDecision, RoutePolicy
from .runtime.repository import ModelRepository
from .runtime.served import ServedVersion
from .validation import check_declared_inputs, check_requested_outputs

if TYPE_CHECKING:
    from .tracing.spans import RequestTrace

EXTENSIONS = ["binary_tensor_data", "model_repository"]
ACCEPTED_CONTENT_TYPES = ("", "application/json", "application/octet-stream")


def _version_list(repo: ModelRepository, name: str) -> list[str]:
    return sorted(repo.versions(name), key=version_key)


class DataPlane:
    def __init__(self, repository: ModelRepository, auditor: Any = None,
                 monitor: RequestMonitor | None = None) -> None:
        self.repository = repository
        self.auditor = auditor  # audit.InferenceAuditor: a non-blocking hand-off
        #: metrics, Server-Timing and the failing-version rule (appliance/monitoring/)
        self.monitor = monitor
        self.drift: Any = None  # drift.DriftMonitor: O(1) sampling, set by build_services
        self.started = False
        #: production requests in flight (the shadow runner sheds while the box is busy)
        self.inflight = 0
        #: routing.shadow.ShadowRunner: copies to shadow versions; set by build_services
        self.shadow: Any = None

    # -- server ----------------------------------------------------------------------
    def server_metadata(self) -> dict[str, Any]:
        return {"name": "appliance", "version": __version__, "extensions": EXTENSIONS}

    def ready(self) -> bool:
        return self.not_ready_reason() is None

    def not_ready_reason(self) -> str | None:
        """Why ``/v2/health/ready`` answers 503: still loading, or a production version
        failed (to load, or at inference: docs/monitoring.md); None when ready."""
        if not self.started:
            return "the appliance is still loading its models"
        if self.monitor is None:
            return None
        failing = failing_production(self.repository, self.monitor)
        return "production model failing: " + "; ".join(failing) if failing else None

    # -- models ----------------------------------------------------------------------
    def model_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        served = self.repository.find(name, version)
        record = served.record
        return {
            "name": name,
            "versions": _version_list(self.repository, name),
            "platform": f"{served.backend or 'unassigned'}_{record.format}",
            "inputs": [s.to_dict() for s in record.inputs],
            "outputs": [s.to_dict() for s in record.outputs],
            "parameters": {"version": record.version, "stage": record.stage,
                           "digest": record.digest, **served.describe()},
        }

    def model_ready(self, name: str, version: str | None) -> ServedVersion:
        """The version if it is ready; else ServiceUnavailable (503) saying why, with
        ``Retry-After`` while it loads."""
        return self.repository.ready_model(name, version)

    # -- inference -------------------------------------------------------------------
    async def infer(self, name: str, version: str | None, body: bytes, *,
                    content_type: str = "", header_length: str | None = None,
                    timeout_ms: str | None = None, caller: str | None = None,
                    traffic: str = PRODUCTION, trace: RequestTrace | None = None,
                    headers_in: Sequence[tuple[bytes, bytes]] = (),
                    subject: str | None = None) -> tuple[bytes, dict[str, str]]:
        """Run one inference request; return the encoded body and response headers.
        ``traffic`` is the request's class (production, test or synthetic): tagged
        traffic is kept out of the production metrics. ``trace``: a sampled request's
        trace (appliance/tracing/), None for every other request. ``headers_in`` and
        ``subject`` (the token's, None while auth is off) are what a sticky route
        keys on."""
        started = time.perf_counter()
        if traffic != PRODUCTION:
            traffic = check_traffic(traffic)
        media = content_type.split(";", 1)[0].strip().lower()
        if media not in ACCEPTED_CONTENT_TYPES:
            raise UnsupportedMediaType(
                f"content type {media!r} is not accepted: send application/json, or "
                "application/octet-stream with an Inference-Header-Content-Length header "
                "for the binary tensor extension")
        length = _header_length(header_length)
        decoded = None  # (request, binary part) when a route needed the parameters first
        policy = self.repository.route_of(name) if version is None else None
        if policy is not None:
            if policy.stored and policy.needs_parameters and length != 0:
                decoded = decode_header(body, length)
            decision = _decide(policy, traffic, headers_in, subject,
                               decoded[0].parameters if decoded else None)
            served, label = decision.served, decision.label
            if not served.ready:
                served = self.repository.ready_model(name, served.record.version)
        else:
            served = self.repository.ready_model(name, version)
            label = "test" if traffic == TEST else "requested"
            policy = None
        if policy is not None and not policy.stored:
            policy = None  # the default route records nothing
        if trace is not None:
            trace.routed(served, traffic, started)
        monitor = self.monitor
        arrays = None
        executing = False
        request_id: str | None = None  # decoded: a failed request's reward is "errored"
        self.inflight += 1
        try:
            if length == 0:
                request, arrays = _raw_binary_request(served, body)
            else:
                # what the request declares is checked against the signature before any
                # tensor data is decoded: nothing proportional to a hostile shape is
                # computed
                request, binary_part = decoded or decode_header(body, length)
                check_declared_inputs(name, served.inputs, request.inputs)
                check_requested_outputs(name, served.outputs, request.outputs)
                arrays = decode_tensors(request, binary_part, length)
            request_id = request.id
            names, binary = requested_outputs(request)
            execution = served.execution
            assert execution is not None  # ready_model answers only ready versions
            deadline = execution.deadline(timeout_ms, request.parameters)
            # [queue, compute] filled by the execution, then started, before execution
            timing = None
            if monitor is not None and monitor.timed:
                if served.metrics is None and monitor.metrics:
                    monitor.stats_of(served)  # before its first batch: executions count
                timing = [0.0, 0.0, started, time.perf_counter()]
            elif trace is not None:  # a traced request is timed for its spans
                timing = [0.0, 0.0, started, time.perf_counter()]
            executing = True
            outputs = await execution.run(arrays, deadline, timing)
            executing = False
            all_outputs = outputs
            if names is not None:
                outputs = {n: outputs[n] for n in names}
            body, headers = encode_response(name, served.record.version, outputs,
                                            request_id=request.id,
                                            parameters=request.parameters,
                                            binary_outputs=binary)
            if trace is not None:
                assert timing is not None
                trace.executed(execution, arrays, timing)
        except BaseException as exc:
            with contextlib.suppress(AttributeError):  # says who failed (api/infer_route.py)
                exc.answered_by = (served.record.version, label)  # type: ignore[attr-defined]
            if monitor is not None:
                monitor.failed(served, traffic, exc, executing, arrays)
            if policy is not None and policy.observes and traffic == PRODUCTION and (
                    executing or getattr(exc, "status", 500) >= 500):
                policy.observe(decision, False, time.perf_counter() - started, None,
                               request_id)
            raise
        finally:
            self.inflight -= 1
        headers["X-Model-Version"] = served.record.version
        headers["X-Route"] = label
        if served.headers:
            headers.update(served.headers)
        if timing is not None and monitor is not None:  # a no-op unless monitor.timed
            monitor.succeeded(served, traffic, arrays, timing, headers)
        seconds = time.perf_counter() - started
        if self.auditor is not None:
            routing: dict[str, Any] = {"backend": served.backend, "inline": execution.inline}
            if traffic != PRODUCTION:
                routing["traffic"] = traffic
            if policy is not None:
                routing["route"] = label
            self.auditor.observe(name, served.record.version, request.id, caller, arrays,
                                 all_outputs, seconds * 1000, routing)
        if self.drift is not None and traffic == PRODUCTION:
            self.drift.observe(name, served.record.version, request.id, arrays, all_outputs)
        if policy is not None and traffic == PRODUCTION:
            if policy.observes:
                policy.observe(decision, True, seconds, all_outputs, request.id)
            if policy.shadows and self.shadow is not None:
                self.shadow.offer(policy, arrays, all_outputs, seconds, random.random())
        return body, headers


def _decide(policy: RoutePolicy, traffic: str, headers: Sequence[tuple[bytes, bytes]],
            subject: str | None, parameters: Any) -> RouteDecision:
    """The route's decision for a request that names no version: test traffic goes to
    the route's test version (or the default), production traffic through the policy."""
    if traffic == TEST:
        found = policy.decide_test()
        return RouteDecision((found or policy.primary()).served, "test")
    if not policy.stored:
        return policy.decide()
    return policy.decide(RouteContext(headers, subject, parameters) if policy.keyed else None)


def _raw_binary_request(served: ServedVersion, body: bytes
                        ) -> tuple[InferenceRequest, dict[str, Any]]:
    """Triton's raw binary form: the whole body is the model's single input."""
    if len(served.inputs) != 1:
        raise BadRequest(
            f"a raw binary request (Inference-Header-Content-Length: 0) needs a model with "
            f"one input; {served.record.model!r} has {len(served.inputs)}: send a JSON header")
    spec = next(iter(served.inputs.values()))
    array = decode_raw_binary(body, spec)
    request = InferenceRequest(inputs=[RequestInput(name=spec.name, shape=list(array.shape),
                                                    datatype=spec.datatype)])
    return request, {spec.name: array}


def _header_length(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        raise BadRequest(f"Inference-Header-Content-Length must be an integer, "
                         f"got {value!r}") from None
    if length < 0:
        raise BadRequest("Inference-Header-Content-Length must not be negative")
    return length
