"""Fixtures of the probe tests: a clock the test moves, and a real server serving a
model with a golden example through the ``answers`` test backend (``w``), the same as
a real ONNX package (``healthy``), and a package without golden examples (``plain``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import appliance_onnxruntime
import pytest
import wrong_backend
from helpers import make_services, serve
from helpers.clock import Clock
from probe_packages import DOUBLES, package

from appliance.packages import push_package
from appliance.plugins import get_plugin_manager
from appliance.probes.runner import ProbeRunner
from appliance.services import Services


@dataclass
class Probed:
    url: str
    services: Services
    runner: ProbeRunner
    clock: Clock


@pytest.fixture
def probe_pm():
    """Built-ins, ONNX Runtime and the ``answers`` test backend."""
    return get_plugin_manager(autoload=False, extra=(appliance_onnxruntime, wrong_backend))


@pytest.fixture
def probed(tmp_path, probe_pm) -> Iterator[Probed]:
    """The server; its probe thread never ticks by itself (``tick_s`` is an hour): the
    test calls ``runner.tick()`` after moving the clock."""
    wrong_backend.WRONG.clear()
    services = make_services(tmp_path / "var", probe_pm,
                             probes={"tick_s": 3600, "probe_interval_s": 60,
                                     "idle_interval_s": 15})
    for name, fmt, golden in (("w", "answers", [DOUBLES]), ("healthy", "onnx", [DOUBLES]),
                              ("plain", "onnx", [])):
        push_package(services.registry, services.catalog,
                     package(tmp_path / name, name=name, golden=golden, fmt=fmt), actor="t")
    assert services.probes is not None
    clock = Clock()
    services.probes.clock = clock
    server = serve(services)
    yield Probed(server.url, services, services.probes, clock)
    wrong_backend.WRONG.clear()
    server.stop()
