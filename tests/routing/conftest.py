"""Fixtures of the routing tests: model ``m`` in a real registry, three real ONNX
versions (y = 2x, 3x, 4x), and the in-process serving stack a route runs in (the
repository that loads them, its router and the data plane), no HTTP server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from helpers.models import scale_model

from appliance.dataplane import DataPlane
from appliance.lifecycle.promotion import promote
from appliance.packages.importer import import_model
from appliance.registry import Registry
from appliance.routing.policy import RoutePolicy
from appliance.routing.router import Router
from appliance.runtime.catalog import BackendCatalog
from appliance.runtime.repository import ModelRepository
from appliance.settings import Settings, load_settings

#: the factor each version of ``m`` multiplies its input by
FACTORS = {"1": 2.0, "2": 3.0, "3": 4.0}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings over the registry fixture's data directory; unsigned toy models may be
    promoted, and the routes' draws are seeded with 7 (not the default 0)."""
    return load_settings({"data_dir": tmp_path / "var", "signing_policy": {},
                          "routing": {"reward_seed": 7}}, environ={})


@pytest.fixture
def model(registry: Registry, catalog: BackendCatalog, settings: Settings,
          tmp_path: Path) -> Registry:
    """``m``: version 1 production, 2 canary, 3 registered; the registry it is in."""
    for version, factor in FACTORS.items():
        import_model(registry, catalog, scale_model(tmp_path / f"m{version}.onnx", factor),
                     name="m", created_by="t")
    promote(registry, settings, "m", "1", "production", actor="ops")
    promote(registry, settings, "m", "2", "canary", actor="ops")
    return registry


class Stack:
    """One serving process in miniature: repository (real ONNX sessions), router, data
    plane, over its own registry connection."""

    def __init__(self, data_dir: Path, catalog: BackendCatalog, seed: int) -> None:
        self.registry = Registry(data_dir)
        self.router = Router(lambda: self.registry.db, seed=seed)
        self.repository = ModelRepository(self.registry, catalog, router=self.router)
        self.repository.load_all()
        self.dataplane = DataPlane(self.repository)

    def route(self) -> RoutePolicy:
        """``m``'s route after re-reading the registry (what the registry watcher does
        when a route or a stage changes)."""
        self.repository.refresh()
        policy = self.repository.route_of("m")
        assert policy is not None
        return policy

    def infer(self, headers: Sequence[tuple[bytes, bytes]] = (), *, subject: str | None = None,
              traffic: str = "production") -> tuple[list[float], dict[str, str]]:
        """One request to ``m`` naming no version, x = [1, 1]: its y and its headers."""
        body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2],
                                       "data": [1.0, 1.0]}]}).encode()
        answer, out = asyncio.run(self.dataplane.infer(
            "m", None, body, content_type="application/json", headers_in=headers,
            subject=subject, traffic=traffic))
        return json.loads(answer)["outputs"][0]["data"], out

    def close(self) -> None:
        self.repository.close()
        self.registry.close()


@pytest.fixture
def start(model: Registry, catalog: BackendCatalog, settings: Settings
          ) -> Iterator[Callable[[], Stack]]:
    """Start a serving stack on ``m``'s registry file (call again: a restart)."""
    started: list[Stack] = []

    def start_one() -> Stack:
        stack = Stack(settings.data_dir, catalog, settings.routing.reward_seed)
        started.append(stack)
        return stack

    yield start_one
    for stack in started:
        stack.close()
