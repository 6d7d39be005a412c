"""Drift, feedback and KPI routes under ``/v1`` (docs/drift.md).

    GET  /v1/drift/{name}              status, latest window (per-feature stats), reference
    GET  /v1/drift/{name}/history      evaluated windows, oldest first
    PUT  /v1/drift/{name}/config       per-model thresholds; unknown features are a 400
    PUT  /v1/drift/{name}/reference    an uploaded reference sample
    POST /v1/drift/{name}/evaluate     close the model's window now
    GET  /v1/drift/{name}/kpi-report   prediction shift vs a KPI, with lag
    POST /v1/feedback                  a label and/or reward for a request id
    GET  /v1/feedback                  stored feedback (rewards for the bandit)
    POST /v1/kpis                      KPI points

Handlers are thin: they translate and delegate to :mod:`appliance.drift`, running its
SQLite work on a worker thread.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import anyio.to_thread
import msgspec
import numpy as np
from litestar import Controller, get, post, put
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)
from litestar.params import FromPath, FromQuery, JSONBody, Parameter

from ..access.scopes import READ, WRITE
from ..drift import DriftMonitor
from ..drift.config import DriftConfig
from ..drift.kpi import kpi_report, parse_points
from ..drift.status import history, status
from ..errors import BadRequest, NotFound
from ..routing.feedback import join_feedback
from .auth import requires
from .registry_access import AnyRequest
from .state import services_of

T = TypeVar("T")
Scalar = int | float | str | bool


class ReferenceBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: rows of the reference sample, one value per feature (GET /v1/drift/{name} lists them)
    rows: list[list[float]]
    #: the model's prediction score for each row (optional)
    predictions: list[float] | None = None


class FeedbackBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: the `id` of the inference request (echoed in its response)
    request_id: str
    #: the true class (a list, one per row, for a request of several rows)
    label: Scalar | list[Scalar] | None = None
    #: a reward for the answer (the routing bandit reads them back)
    reward: float | None = None


_KPI_POINT = Schema(
    type=OpenAPIType.OBJECT, required=["name", "time", "value"],
    properties={"name": Schema(type=OpenAPIType.STRING, min_length=1, pattern=r"\S"),
                "time": Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE_TIME,
                               description="ISO 8601 with a timezone, e.g. "
                                           "2025-01-31T12:00:00Z"),
                "value": Schema(type=OpenAPIType.NUMBER, description="a finite number")})


@dataclass
class _KpiOperation(Operation):
    """POST /v1/kpis reads its body itself (to name a bad point's index and field):
    its body is documented here."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(required=True, content={
            "application/json": OpenAPIMediaType(schema=Schema(
                type=OpenAPIType.ARRAY, items=_KPI_POINT))})


def _kpi_points(raw: bytes) -> list[tuple[Any, Any, Any]]:
    """(name, time, value) of each point of a JSON body; BadRequest naming the point."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise BadRequest("the body is not JSON; send a list of points like "
                         '[{"name": "revenue", "time": "2025-01-31T12:00:00Z", '
                         '"value": 3.5}]') from None
    if not isinstance(body, list):
        raise BadRequest("the body must be a JSON list of KPI points")
    out = []
    for i, point in enumerate(body):
        if not isinstance(point, dict):
            raise BadRequest(f"point {i}: must be an object with name, time and value")
        missing = [k for k in ("name", "time", "value") if k not in point]
        unknown = sorted(set(point) - {"name", "time", "value"})
        if missing or unknown:
            what = (f"missing {', '.join(missing)}" if missing
                    else f"unknown field(s) {', '.join(unknown)}")
            raise BadRequest(f"point {i}: {what}; a point has name, time and value")
        for field in ("name", "time"):
            if not isinstance(point[field], str):
                raise BadRequest(f"point {i}: {field} must be a string")
        out.append((point["name"], point["time"], point["value"]))
    return out


def _monitor(request: AnyRequest) -> DriftMonitor:
    monitor = services_of(request).drift
    if monitor is None:
        raise NotFound("drift detection is off on this server ([drift] enabled = false)")
    return monitor


async def _off_loop(fn: Callable[[], T]) -> T:
    return await anyio.to_thread.run_sync(fn)


def _matrix(rows: list[list[float]]) -> Any:
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        raise BadRequest(f"rows: every row needs the same number of values; got widths "
                         f"{sorted(widths)[:5]}")
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), widths.pop() if widths else 0)


class DriftController(Controller):
    path = "/v1/drift"
    tags = ["drift"]

    @get("/{name:str}", guards=[requires(READ)],
         summary="Drift status, the latest window's per-feature KS/PSI and the reference")
    async def status(self, request: AnyRequest, name: FromPath[str]) -> dict[str, Any]:
        monitor = _monitor(request)
        return await _off_loop(lambda: status(monitor, name))

    @get("/{name:str}/history", guards=[requires(READ)],
         summary="Evaluated windows of a model, oldest first, with realised accuracy")
    async def history(self, request: AnyRequest, name: FromPath[str],
                      limit: Annotated[int, Parameter(ge=1, le=10_000)] = 100
                      ) -> list[dict[str, Any]]:
        monitor = _monitor(request)
        return await _off_loop(lambda: history(monitor.store, name, limit))

    @put("/{name:str}/config", guards=[requires(WRITE)],
         summary="Set a model's drift thresholds (unknown features are refused)")
    async def config(self, request: AnyRequest, name: FromPath[str],
                     data: JSONBody[DriftConfig]) -> dict[str, Any]:
        monitor = _monitor(request)
        stored = await _off_loop(lambda: monitor.set_config(name, data))
        return {"model": name, "config": msgspec.to_builtins(stored)}

    @put("/{name:str}/reference", guards=[requires(WRITE)],
         summary="Upload a model's reference sample (rows of feature values)")
    async def reference(self, request: AnyRequest, name: FromPath[str],
                        data: JSONBody[ReferenceBody]) -> dict[str, Any]:
        monitor = _monitor(request)
        rows = _matrix(data.rows)
        predictions = np.asarray(data.predictions or [], dtype=np.float64)
        stored = await _off_loop(lambda: monitor.set_reference(name, rows, predictions))
        return {"model": name, "reference": stored.describe()}

    @post("/{name:str}/evaluate", status_code=200, guards=[requires(WRITE)],
          summary="Close the model's current window and evaluate it now")
    async def evaluate(self, request: AnyRequest, name: FromPath[str]) -> dict[str, Any]:
        monitor = _monitor(request)
        await _off_loop(lambda: monitor.tick([name]))
        return await _off_loop(lambda: status(monitor, name))

    @get("/{name:str}/kpi-report", guards=[requires(READ)],
         summary="Correlate prediction shift with a KPI over aligned windows, with lag")
    async def kpi_report(self, request: AnyRequest, name: FromPath[str],
                         kpi: Annotated[str, Parameter(min_length=1)],
                         max_lag: Annotated[int, Parameter(ge=0, le=50)] = 3
                         ) -> dict[str, Any]:
        monitor = _monitor(request)
        return await _off_loop(lambda: kpi_report(monitor.store, name, kpi, max_lag=max_lag))


class FeedbackController(Controller):
    path = "/v1"
    tags = ["drift"]

    @post("/feedback", status_code=200, guards=[requires(WRITE)],
          summary="A label and/or reward for an answered request, by its request id")
    async def feedback(self, request: AnyRequest, data: JSONBody[FeedbackBody]
                       ) -> dict[str, Any]:
        services = services_of(request)
        drift, routing = services.drift, services.routing
        return await _off_loop(lambda: join_feedback(
            drift, routing, data.request_id, label=data.label, reward=data.reward))

    @get("/feedback", guards=[requires(READ)],
         summary="Stored feedback (labels, rewards), newest first")
    async def feedback_list(self, request: AnyRequest, model: FromQuery[str | None] = None,
                            request_id: FromQuery[str | None] = None,
                            limit: Annotated[int, Parameter(ge=1, le=10_000)] = 100
                            ) -> list[dict[str, Any]]:
        monitor = _monitor(request)
        return await _off_loop(lambda: monitor.store.feedback(
            model=model, request_id=request_id, limit=limit))

    @post("/kpis", status_code=200, guards=[requires(WRITE)], operation_class=_KpiOperation,
          summary="Store business KPI points (name, ISO 8601 time with timezone, value)")
    async def kpis(self, request: AnyRequest) -> dict[str, Any]:
        monitor = _monitor(request)
        points = parse_points(_kpi_points(await request.body()))
        await _off_loop(lambda: monitor.store.add_kpis(points))
        return {"stored": len(points)}


DRIFT_ROUTES = [DriftController, FeedbackController]
