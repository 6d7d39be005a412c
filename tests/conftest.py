"""Shared fixtures: real models built offline, a real registry, a real HTTP server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

os.environ.setdefault("APPLIANCE_DISABLE_PLUGIN_AUTOLOAD", "1")

import appliance_onnxruntime  # noqa: E402

from appliance.api import create_app  # noqa: E402
from appliance.plugins import get_plugin_manager  # noqa: E402
from appliance.registry import Registry  # noqa: E402
from appliance.runtime.catalog import BackendCatalog  # noqa: E402
from appliance.services import Services, build_services, seed_demo_models  # noqa: E402
from appliance.settings import load_settings  # noqa: E402
from appliance.testing.server import ServerThread  # noqa: E402

UNSIGNED_OK = "signing_policy = {}\n"


def unsigned_config(directory: Path) -> Path:
    """A config file for CLI subprocesses that promote unsigned test models."""
    path = directory / "unsigned-ok.toml"
    path.write_text(UNSIGNED_OK)
    return path


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


def make_services(data_dir: Path, pm, **overrides) -> Services:
    # unsigned toy models are promoted in most tests; signing has its own tests
    base = {"data_dir": data_dir, "scheduler": False, "signing_policy": {}}
    settings = load_settings({**base, **overrides}, environ={})
    return build_services(settings, pm=pm)


def serve(services: Services) -> ServerThread:
    """Start a real server and wait until start-up model loading is done."""
    server = ServerThread(create_app(services, load_in_background=False))
    server.start()
    return server


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
