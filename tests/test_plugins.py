"""The plugin core: hook specs, entry-point loading, a third-party backend end to end."""

from __future__ import annotations

import inspect
import json
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from helpers import ROOT, make_services, serve

from appliance import hookspecs
from appliance.packages.importer import import_model
from appliance.plugins import get_plugin_manager, installed_backends

TOY_BACKEND = '''
"""A toy third-party backend: a .toy file is JSON {"scale": k}; it answers y = x * k."""
import json
import numpy as np
import appliance
from appliance.signature import TensorSpec


class ToyModel(appliance.LoadedModel):
    def __init__(self, scale):
        self.scale = scale
        self.inputs = [TensorSpec("x", "FP32", (-1,))]
        self.outputs = [TensorSpec("y", "FP32", (-1,))]

    def predict(self, inputs):
        return {"y": inputs["x"] * np.float32(self.scale)}

    def metadata(self):
        return {"backend": "toy", "device": "abacus"}


class ToyBackend(appliance.Backend):
    name = "toy"
    formats = ("toy",)
    suffixes = (".toy",)

    def load(self, source, *, options):
        try:
            return ToyModel(json.loads(source.read_bytes())["scale"])
        except Exception as exc:
            raise appliance.InvalidModelFile(f"{source.path.name} is not a toy model") from exc


@appliance.hookimpl
def appliance_backends():
    return [ToyBackend()]
'''


def install_fake_distribution(site: Path, module: str, source: str, entry: str) -> None:
    """Lay out a package plus a dist-info with entry points, as pip would."""
    (site / f"{module}.py").write_text(source)
    info = site / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[appliance]\n{entry} = {module}\n")


@pytest.fixture
def toy_site(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    install_fake_distribution(site, "toy_backend", textwrap.dedent(TOY_BACKEND), "toy")
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("toy_backend", None)


def test_third_party_backend_registers_through_entry_points_and_serves(tmp_path, toy_site):
    pm = get_plugin_manager(autoload=True)
    assert "toy" in [b.name for b in installed_backends(pm)]
    services = make_services(tmp_path / "var", pm)
    model = tmp_path / "triple.toy"
    model.write_text(json.dumps({"scale": 3}))
    import_model(services.registry, services.catalog, model, name="triple")
    server = serve(services)
    try:
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2, 3]}]}
        r = httpx.post(f"{server.url}/v2/models/triple/infer", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == [3.0, 6.0, 9.0]
        meta = httpx.get(f"{server.url}/v2/models/triple").json()
        assert meta["parameters"]["device"] == "abacus"
    finally:
        server.stop()


def test_autoload_off_skips_entry_points(toy_site):
    pm = get_plugin_manager(autoload=False)
    assert "toy" not in [b.name for b in installed_backends(pm)]


def test_disable_autoload_env_var_is_honoured(toy_site, monkeypatch):
    monkeypatch.setenv("APPLIANCE_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "toy" not in [b.name for b in installed_backends(get_plugin_manager())]


def test_plugin_that_raises_at_import_is_logged_and_others_keep_working(
        tmp_path, toy_site, caplog):
    install_fake_distribution(toy_site, "broken_plugin", "raise RuntimeError('boom')\n",
                              "broken")
    pm = get_plugin_manager(autoload=True)
    assert "toy" in [b.name for b in installed_backends(pm)]
    assert ("broken", "RuntimeError: boom") in pm.failed_plugins
    assert "plugin 'broken'" in caplog.text and "boom" in caplog.text


def test_model_no_backend_loads_names_installed_formats(tmp_path, ort_plugin_manager):
    services = make_services(tmp_path / "var", ort_plugin_manager)
    tfl = tmp_path / "m.tflite"
    tfl.write_bytes(b"\x00\x00\x00\x00TFL3" + b"\x00" * 32)
    from appliance.errors import InvalidModelFile
    with pytest.raises(InvalidModelFile, match="no installed backend loads 'tflite'.*onnx: "
                                               "onnxruntime"):
        import_model(services.registry, services.catalog, tfl, name="m")


def test_every_hookspec_has_a_docstring_and_a_docs_entry():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    specs = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
             if name.startswith("appliance_")]
    assert specs
    for name in specs:
        assert (getattr(hookspecs, name).__doc__ or "").strip(), f"{name} has no docstring"
        assert f"`{name}" in docs, f"{name} is not documented in docs/plugins.md"
