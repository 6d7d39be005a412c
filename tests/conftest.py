"""Shared fixtures: a real registry, the ONNX Runtime plugin manager, the demo models on a
real HTTP server. Helpers that are not fixtures live in ``tests/helpers``."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

os.environ.setdefault("APPLIANCE_DISABLE_PLUGIN_AUTOLOAD", "1")

import appliance_onnxruntime  # noqa: E402
from helpers import make_services, serve  # noqa: E402

from appliance.plugins import get_plugin_manager  # noqa: E402
from appliance.registry import Registry  # noqa: E402
from appliance.runtime.catalog import BackendCatalog  # noqa: E402
from appliance.services import Services, seed_demo_models  # noqa: E402


@pytest.fixture
def registry(tmp_path) -> Iterator[Registry]:
    """A real registry (SQLite file and artifact store) in ``tmp_path / "var"``."""
    reg = Registry(tmp_path / "var")
    yield reg
    reg.close()


@pytest.fixture
def catalog(ort_plugin_manager) -> BackendCatalog:
    """The backend catalog of the ONNX Runtime-only plugin manager."""
    return BackendCatalog(ort_plugin_manager)


@pytest.fixture
def ort_plugin_manager():
    """A plugin manager with only the built-ins and the ONNX Runtime backend."""
    return get_plugin_manager(autoload=False, extra=(appliance_onnxruntime,))


@pytest.fixture
def demo_services(tmp_path, ort_plugin_manager) -> Services:
    services = make_services(tmp_path / "var", ort_plugin_manager)
    seed_demo_models(services)
    return services


@pytest.fixture
def demo_url(demo_services) -> Iterator[str]:
    server = serve(demo_services)
    yield server.url
    server.stop()


@pytest.fixture
def client(demo_url) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=demo_url, timeout=30) as c:
        yield c
