"""Every hookspec, overridden by a plugin, with its effect observed (one test each).

``test_every_hookspec_has_an_override_test`` fails when a hookspec is added without a
``test_hook_<name>_...`` test here.
"""

from __future__ import annotations

import inspect
import logging
import secrets
import sys
from typing import Any

import appliance_onnxruntime
import appliance_openvino
from helpers import make_services
from helpers.models import scale_model

import appliance
from appliance import hookspecs
from appliance.hardware import collect_plugin_facts, discover
from appliance.packages.importer import import_model
from appliance.plugins import get_plugin_manager, installed_backends
from appliance.runtime.catalog import BackendCatalog
from appliance.security.crypto_store import is_encrypted


def test_every_hookspec_has_an_override_test():
    specs = [name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction)
             if name.startswith("appliance_")]
    tests = [name for name in dir(sys.modules[__name__]) if name.startswith("test_hook_")]
    for spec in specs:
        assert any(t.startswith(f"test_hook_{spec}_") for t in tests), f"no test for {spec}"


class _Echo(appliance.LoadedModel):
    inputs: list[appliance.TensorSpec] = []
    outputs: list[appliance.TensorSpec] = []

    def predict(self, inputs):
        return dict(inputs)


class _EchoBackend(appliance.Backend):
    name = "echo"
    formats = ("echo",)

    def load(self, source, *, options):
        return _Echo()


def test_hook_appliance_backends_adds_a_backend_to_the_catalog():
    class Plugin:
        @appliance.hookimpl
        def appliance_backends(self):
            return [_EchoBackend()]

    pm = get_plugin_manager(autoload=False, extra=(Plugin(),))
    assert "echo" in [b.name for b in installed_backends(pm)]
    assert BackendCatalog(pm).choose("echo").name == "echo"


def test_hook_appliance_select_backend_overrides_the_profile_order():
    chosen: list[str] = []

    class PreferOpenVINO:
        @appliance.hookimpl
        def appliance_select_backend(self, model_format, candidates):
            chosen.append(model_format)
            return next((b for b in candidates if b.name == "openvino"), None)

    pm = get_plugin_manager(autoload=False, extra=(appliance_onnxruntime, appliance_openvino,
                                                   PreferOpenVINO()))
    catalog = BackendCatalog(pm)
    assert [b.name for b in catalog.candidates("onnx")][0] == "onnxruntime"  # default order
    assert catalog.choose("onnx").name == "openvino"
    assert chosen == ["onnx"]
    # returning None falls through to the built-in choice (the profile order)
    assert catalog.choose("tflite").name in ("litert", "openvino")


def test_hook_appliance_hardware_facts_reaches_the_matched_facts():
    class Npu:
        @appliance.hookimpl
        def appliance_hardware_facts(self):
            return {"acme_npu": ["npu0"]}

    class Broken:
        @appliance.hookimpl
        def appliance_hardware_facts(self):
            raise RuntimeError("driver missing")

    pm = get_plugin_manager(autoload=False, extra=(Npu(), Broken()))
    facts = discover(collect_plugin_facts(pm))
    assert facts.accelerators.get("acme_npu") == ["npu0"]


def test_hook_appliance_startup_is_called_by_build_services(tmp_path, caplog):
    seen: list[tuple[Any, Any]] = []

    class Startup:
        @appliance.hookimpl
        def appliance_startup(self, settings, registry):
            seen.append((settings, registry))

    pm = get_plugin_manager(autoload=False, extra=(appliance_onnxruntime, Startup()))
    services = make_services(tmp_path / "var", pm)
    try:
        assert len(seen) == 1
        settings, registry = seen[0]
        assert settings is services.settings and registry is services.registry
    finally:
        services.close()


def test_hook_appliance_box_key_supplies_the_key_encryption_key(tmp_path):
    key = secrets.token_bytes(32)

    class Kms:
        @appliance.hookimpl
        def appliance_box_key(self, data_dir):
            assert data_dir == tmp_path / "var"
            return key

    pm = get_plugin_manager(autoload=False, extra=(appliance_onnxruntime, Kms()))
    services = make_services(tmp_path / "var", pm)
    try:
        record = import_model(services.registry, services.catalog,
                              scale_model(tmp_path / "s.onnx", 2), name="s")
        assert is_encrypted(services.registry.artifact_path(record))
        assert not (tmp_path / "var" / "keys" / "box.key").exists()
    finally:
        services.close()


def test_trace_hooks_env_var_logs_hook_calls(monkeypatch, caplog):
    monkeypatch.setenv("APPLIANCE_TRACE_HOOKS", "1")
    pm = get_plugin_manager(autoload=False, extra=(appliance_onnxruntime,))
    try:
        with caplog.at_level(logging.DEBUG, logger="appliance.plugins"):
            installed_backends(pm)
    finally:
        pm.trace.root.setwriter(None)  # type: ignore[arg-type]
    assert any("appliance_backends" in r.getMessage() for r in caplog.records)
