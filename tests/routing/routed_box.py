"""A real server on 127.0.0.1 serving model ``m`` in several versions, for the end-to-end
routing tests: ONNX Runtime toy models (:func:`helpers.models.scale_model`) and the
:mod:`routing_backend` plugin's broken ones, with the routing thread's clock in the
test's hands.

The routing thread itself sleeps (``[routing] tick_s`` is an hour): a test moves
:attr:`Box.clock` and calls :meth:`Box.tick`, which runs one tick of the real
:class:`~appliance.routing.controller.RoutingController` of the server.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import appliance_onnxruntime
import httpx
import numpy as np
import routing_backend
from helpers import make_services, serve
from helpers.clock import Clock
from helpers.models import scale_model

from appliance.lifecycle.promotion import promote
from appliance.packages.importer import import_model
from appliance.plugins import get_plugin_manager
from appliance.services import Services

MODEL = "m"
#: routing settings of every box: the thread never ticks on its own
QUIET = {"tick_s": 3600.0}


def onnx(directory: Path, factor: float) -> Path:
    """A version answering y = x * factor (ONNX Runtime)."""
    return scale_model(directory / f"scale-{factor:g}.onnx", factor)


def routed(directory: Path, mode: str, scale: float = 1.0) -> Path:
    """A :mod:`routing_backend` version: ``raise``, ``gate`` or ``cold``."""
    path = directory / f"{mode}-{scale:g}.routed"
    path.write_text(json.dumps({"scale": scale, "mode": mode}))
    return path


def body(x: Sequence[float], request_id: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2],
                                       "data": list(x)}]}
    if request_id is not None:
        out["id"] = request_id
    return out


@dataclass(frozen=True)
class Answer:
    """What a client saw of one inference request."""

    status: int
    version: str | None
    route: str | None
    sent: tuple[float, ...]
    y: tuple[float, ...] | None
    error: str | None

    @classmethod
    def of(cls, response: httpx.Response, x: Sequence[float]) -> Answer:
        data = response.json()
        y = tuple(data["outputs"][0]["data"]) if response.status_code == 200 else None
        return cls(response.status_code, response.headers.get("x-model-version"),
                   response.headers.get("x-route"), tuple(x), y, data.get("error"))

    def scaled_by(self, factor: float) -> bool:
        return self.y is not None and np.allclose(self.y, np.float32(self.sent) * factor)


@dataclass
class Box:
    """The server, its services, the routing clock and a client."""

    url: str
    services: Services
    clock: Clock
    http: httpx.Client
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(7))

    def x(self) -> tuple[float, ...]:
        """A fresh input: two values in [0.1, 1) (never zeros: see routing_backend)."""
        return tuple(float(v) for v in self.rng.uniform(0.1, 1.0, 2).astype(np.float32))

    def infer(self, x: Sequence[float] | None = None, *, model: str = MODEL,
              request_id: str | None = None, headers: Mapping[str, str] | None = None
              ) -> Answer:
        x = self.x() if x is None else x
        r = self.http.post(f"/v2/models/{model}/infer", json=body(x, request_id),
                           headers=dict(headers or {}))
        return Answer.of(r, x)

    def send(self, n: int, **kwargs: Any) -> list[Answer]:
        return [self.infer(**kwargs) for _ in range(n)]

    def tick(self, seconds: float = 0.0) -> None:
        """Move the routing clock, then run one routing tick."""
        self.clock.advance(seconds)
        self.services.routing.tick()

    def route(self) -> dict[str, Any]:
        r = self.http.get(f"/v1/routes/{MODEL}")
        assert r.status_code == 200, r.text
        return r.json()

    def put_route(self, spec: Mapping[str, Any], **headers: str) -> httpx.Response:
        return self.http.put(f"/v1/routes/{MODEL}", json=dict(spec), headers=headers)

    def shadow_report(self, copies: int = 0, timeout_s: float = 60.0) -> dict[str, Any]:
        """``GET /v1/routes/m/shadow-report`` once the shadow worker has compared
        ``copies`` copies in all (polled: the worker runs on its own thread)."""
        runner = self.services.dataplane.shadow
        deadline = time.monotonic() + timeout_s
        while runner.done < copies:
            assert time.monotonic() < deadline, runner.describe()
            time.sleep(0.01)
        r = self.http.get(f"/v1/routes/{MODEL}/shadow-report")
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def stage(self, version: str) -> str:
        return self.services.registry.version(MODEL, version).stage

    def events(self, action: str) -> list[dict[str, Any]]:
        """The registry events of ``action`` on ``m``, oldest first."""
        rows = self.services.registry.db.execute(
            "SELECT actor, version, detail FROM events WHERE action = ? AND model = ? "
            "ORDER BY id", [action, MODEL]).fetchall()
        return [{"actor": a, "version": v, "detail": json.loads(d)} for a, v, d in rows]


class Traffic(threading.Thread):
    """Requests sent back to back from another client until :meth:`finish`: what
    clients see while the routing thread acts."""

    def __init__(self, url: str) -> None:
        super().__init__(name="client-traffic", daemon=True)
        self.url = url
        self.answers: list[Answer] = []
        self._done = threading.Event()

    def run(self) -> None:
        rng = np.random.default_rng(11)
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._done.is_set():
                x = tuple(float(v) for v in rng.uniform(0.1, 1.0, 2).astype(np.float32))
                r = client.post(f"/v2/models/{MODEL}/infer", json=body(x))
                self.answers.append(Answer.of(r, x))

    def finish(self) -> list[Answer]:
        self._done.set()
        self.join(timeout=30)
        return self.answers


@contextmanager
def routed_box(tmp_path: Path, versions: Sequence[tuple[Path, str]], *,
               others: Mapping[str, Path] | None = None, routing: Mapping[str, Any] | None = None,
               headers: Mapping[str, str] | None = None, **settings: Any) -> Iterator[Box]:
    """A server over ``m`` with ``versions`` (file, stage) imported as versions 1, 2, …;
    ``others``: more models, one production version each; ``routing``: ``[routing]``
    settings; ``headers``: sent by the box's client on every request."""
    pm = get_plugin_manager(autoload=False, extra=(appliance_onnxruntime, routing_backend))
    services = make_services(tmp_path / "var", pm, routing={**QUIET, **(routing or {})},
                             **settings)
    models = [(MODEL, path, stage) for path, stage in versions] + [
        (name, path, "production") for name, path in (others or {}).items()]
    for name, path, stage in models:
        record = import_model(services.registry, services.catalog, path, name=name,
                              created_by="t")
        if stage != "registered":
            promote(services.registry, services.settings, name, record.version, stage,
                    actor="ops")
    server = serve(services)
    clock = Clock()
    routing_thread = services.routing
    routing_thread.clock = routing_thread.canaries.clock = clock
    try:
        with httpx.Client(base_url=server.url, timeout=30, headers=dict(headers or {})) as c:
            yield Box(server.url, services, clock, c)
    finally:
        routing_backend.GATE.set()  # nothing stays held past the test
        server.stop()
